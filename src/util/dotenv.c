/* dotenv.c: the dotenv parser (see dotenv.h). One pass over the buffer:
 *
 *   line   := blank | '#' comment | ['export' ws] KEY ws? '=' ws? value
 *   KEY    := [A-Za-z_][A-Za-z0-9_]*
 *   value  := unquoted     to the end of the line or a " #" comment, trimmed
 *           | '...'        literal, may span lines
 *           | "..."        may span lines; \n \r \t \" \\ \$ are escapes
 *
 * After a closing quote only blanks and a comment may follow. `$VAR`,
 * `$(...)` and backquotes are kept as written: nothing is expanded or run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dotenv.h"

typedef struct dp {
    const char *s, *end;
    int line;
    char *why;
    size_t why_len;
} dp;

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void skip_blanks(dp *d)
{
    while (d->s < d->end && blank(*d->s))
        d->s++;
}

static bool fail(dp *d, const char *msg)
{
    snprintf(d->why, d->why_len, "%s", msg);
    return false;
}

/* The rest of a line after a value: blanks, then a comment or the end. */
static bool line_end(dp *d)
{
    skip_blanks(d);
    if (d->s < d->end && *d->s == '\r')
        d->s++;
    if (d->s < d->end && *d->s == '#')
        while (d->s < d->end && *d->s != '\n')
            d->s++;
    if (d->s < d->end && *d->s != '\n')
        return fail(d, "unexpected text after the closing quote");
    if (d->s < d->end) {
        d->s++;
        d->line++;
    }
    return true;
}

/* A quoted value into out (room for the rest of the buffer); the opening
 * quote is at d->s. */
static bool quoted(dp *d, char *out)
{
    char q = *d->s++;
    int start = d->line;
    size_t n = 0;
    while (d->s < d->end && *d->s != q) {
        char ch = *d->s++;
        if (ch == '\n')
            d->line++;
        if (ch == '\\' && q == '"') {
            if (d->s >= d->end)
                break;
            char e = *d->s++;
            switch (e) {
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case '"': case '\\': case '$': ch = e; break;
            case '\n': d->line++; continue; /* a line continuation */
            default: return fail(d, "unknown escape in a double-quoted value (\\n \\r \\t \\\" \\\\ \\$)");
            }
        }
        out[n++] = ch;
    }
    if (d->s >= d->end) {
        d->line = start;
        return fail(d, q == '"' ? "unterminated double-quoted value" : "unterminated single-quoted value");
    }
    d->s++;
    out[n] = '\0';
    return true;
}

/* An unquoted value: to the end of the line or a comment after a blank
 * (spaced: blanks came between the '=' and the value). */
static void unquoted(dp *d, char *out, bool spaced)
{
    size_t n = 0;
    while (d->s < d->end && *d->s != '\n') {
        if (*d->s == '#' && (n > 0 ? blank(out[n - 1]) : spaced))
            break;
        out[n++] = *d->s++;
    }
    while (n > 0 && (blank(out[n - 1]) || out[n - 1] == '\r'))
        n--;
    out[n] = '\0';
    while (d->s < d->end && *d->s != '\n')
        d->s++;
    if (d->s < d->end) {
        d->s++;
        d->line++;
    }
}

bool ms_dotenv_parse(const char *data, size_t len, ms_dotenv_cb cb, void *ud, int *err_line, char *why,
                     size_t why_len)
{
    dp d = { data, data + len, 1, why, why_len };
    *err_line = 0;
    if (memchr(data, '\0', len)) {
        const char *z = memchr(data, '\0', len);
        for (const char *p = data; p < z; p++)
            *err_line += *p == '\n';
        *err_line += 1;
        snprintf(why, why_len, "a NUL byte (not a text file?)");
        return false;
    }
    char *buf = malloc(len + 1); /* the longest value or key fits */
    char *key = malloc(len + 1);
    if (!buf || !key) {
        free(buf);
        free(key);
        snprintf(why, why_len, "out of memory");
        return false;
    }
    bool ok = true;
    while (ok && d.s < d.end) {
        int line = d.line;
        skip_blanks(&d);
        if (d.s < d.end && *d.s == '\r')
            d.s++;
        if (d.s >= d.end)
            break;
        if (*d.s == '\n' || *d.s == '#') {
            while (d.s < d.end && *d.s != '\n')
                d.s++;
            if (d.s < d.end) {
                d.s++;
                d.line++;
            }
            continue;
        }
        if ((size_t)(d.end - d.s) > 7 && memcmp(d.s, "export", 6) == 0 && blank(d.s[6])) {
            d.s += 6;
            skip_blanks(&d);
        }
        size_t kl = 0;
        while (d.s < d.end && (*d.s == '_' || (*d.s >= 'A' && *d.s <= 'Z') || (*d.s >= 'a' && *d.s <= 'z') ||
                               (kl > 0 && *d.s >= '0' && *d.s <= '9')))
            key[kl++] = *d.s++;
        key[kl] = '\0';
        skip_blanks(&d);
        if (kl == 0 || d.s >= d.end || *d.s != '=') {
            ok = fail(&d, kl == 0 ? "expected KEY=VALUE (a key is letters, digits and '_', not starting "
                                    "with a digit)"
                                  : "expected '=' after the key");
            *err_line = line;
            break;
        }
        d.s++;
        const char *value_at = d.s;
        skip_blanks(&d);
        if (d.s < d.end && (*d.s == '"' || *d.s == '\'')) {
            ok = quoted(&d, buf) && line_end(&d);
            if (!ok) {
                *err_line = d.line;
                break;
            }
        } else
            unquoted(&d, buf, d.s > value_at);
        if (!cb(ud, key, buf)) {
            snprintf(why, why_len, "out of memory");
            ok = false;
        }
    }
    free(buf);
    free(key);
    return ok;
}
