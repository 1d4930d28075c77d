/* diag.c: the bounded diagnostic list (see diag.h). */
#include "util/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void ms_diags_init(ms_diags *d, const char *file)
{
    memset(d, 0, sizeof *d);
    d->file = file;
}

void ms_diags_free(ms_diags *d)
{
    for (size_t i = 0; i < d->len; i++)
        free(d->items[i].msg);
    free(d->items);
    d->items = NULL;
    d->len = d->cap = 0;
    d->dropped = 0;
}

void ms_diag_add(ms_diags *d, int line, int col, const char *fmt, ...)
{
    if (d->len >= MS_DIAG_MAX) {
        d->dropped++;
        return;
    }
    if (d->len == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 16;
        ms_diag *n = realloc(d->items, ncap * sizeof *n);
        if (!n) {
            d->dropped++;
            return;
        }
        d->items = n;
        d->cap = ncap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0) {
        d->dropped++;
        return;
    }
    d->items[d->len++] = (ms_diag){ .line = line, .col = col, .msg = msg };
}

size_t ms_diags_count(const ms_diags *d)
{
    return d->len + d->dropped;
}

void ms_diags_print(ms_diags *d, FILE *out)
{
    /* insertion sort by position: stable, and the list is short */
    for (size_t i = 1; i < d->len; i++) {
        ms_diag t = d->items[i];
        size_t j = i;
        while (j > 0 && (d->items[j - 1].line > t.line ||
                         (d->items[j - 1].line == t.line && d->items[j - 1].col > t.col))) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = t;
    }
    const char *file = d->file ? d->file : "ship-manifest.toml";
    for (size_t i = 0; i < d->len; i++) {
        if (d->items[i].line > 0)
            fprintf(out, "%s:%d:%d: %s\n", file, d->items[i].line, d->items[i].col, d->items[i].msg);
        else
            fprintf(out, "%s: %s\n", file, d->items[i].msg);
    }
    if (d->dropped)
        fprintf(out, "%s: ... and %zu more problems\n", file, d->dropped);
}
