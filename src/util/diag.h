/* diag.h: a bounded list of user-facing diagnostics ("file:line:col: msg").
 * Loaders and validators append every problem they find so a user sees all
 * of them in one run; the CLI prints them in order. */
#ifndef MS_DIAG_H
#define MS_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MS_DIAG_MAX 200  /* more than this and the rest are only counted */

typedef struct ms_diag {
    int line, col;       /* 0 when the problem has no single place */
    char *msg;
} ms_diag;

typedef struct ms_diags {
    const char *file;    /* path as the user gave it; not owned */
    ms_diag *items;
    size_t len, cap;
    size_t dropped;      /* beyond MS_DIAG_MAX */
} ms_diags;

void ms_diags_init(ms_diags *d, const char *file);
void ms_diags_free(ms_diags *d);
/* Append a formatted message at line:col. Never fails: on OOM the problem is
 * counted in `dropped` (an error count stays correct). */
void ms_diag_add(ms_diags *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
size_t ms_diags_count(const ms_diags *d);
/* Sort by position (stable) and print "file:line:col: msg" lines. */
void ms_diags_print(ms_diags *d, FILE *out);

#endif
