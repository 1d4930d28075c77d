/* strutil.c: string helpers (see strutil.h). */
#include "util/strutil.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ms_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *ms_strndup(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (!r)
        return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *ms_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *r = NULL;
    int n = vasprintf(&r, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : r;
}

size_t ms_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    /* optimal string alignment: a swap of two neighbours is one edit */
    size_t prev2[65], prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
#define LC(x) tolower((unsigned char)(x))
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        size_t rowmin = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = LC(a[i - 1]) == LC(b[j - 1]) ? 0 : 1;
            size_t v = prev[j - 1] + cost;
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (cur[j - 1] + 1 < v)
                v = cur[j - 1] + 1;
            if (i > 1 && j > 1 && LC(a[i - 1]) == LC(b[j - 2]) && LC(a[i - 2]) == LC(b[j - 1]) &&
                prev2[j - 2] + 1 < v)
                v = prev2[j - 2] + 1;
            cur[j] = v;
            if (v < rowmin)
                rowmin = v;
        }
        if (rowmin > cap)
            return cap + 1;
        memcpy(prev2, prev, (lb + 1) * sizeof cur[0]);
        memcpy(prev, cur, (lb + 1) * sizeof cur[0]);
    }
#undef LC
    return prev[lb];
}

const char *ms_nearest(const char *word, const char *const *candidates)
{
    size_t len = strlen(word);
    size_t cap = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = cap + 1;
    for (size_t i = 0; candidates[i]; i++) {
        size_t d = ms_edit_distance(word, candidates[i], cap);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

bool ms_parse_duration(const char *text, uint64_t *ms_out)
{
    const char *p = text;
    if (!isdigit((unsigned char)*p))
        return false;
    uint64_t whole = 0;
    while (isdigit((unsigned char)*p)) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > 100000000ULL)
            return false;
        p++;
    }
    uint64_t frac = 0, frac_div = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p)) {
            if (frac_div < 1000000) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                frac_div *= 10;
            }
            p++;
        }
    }
    uint64_t unit;
    if (strcmp(p, "ms") == 0)
        unit = 1;
    else if (strcmp(p, "s") == 0)
        unit = 1000;
    else if (strcmp(p, "m") == 0)
        unit = 60000;
    else if (strcmp(p, "h") == 0)
        unit = 3600000;
    else
        return false;
    uint64_t ms = whole * unit + frac * unit / frac_div;
    if (ms > 24ULL * 3600000ULL)
        return false;
    *ms_out = ms;
    return true;
}

bool ms_valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!(isalnum(c) || c == '-' || c == '_') || c >= 0x80)
            return false;
    }
    return n >= 1 && n <= 64;
}

bool ms_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}
