/* manifest_helpers.h: loading a manifest from a string and checking the
 * error it gives, for the manifest unit tests. */
#ifndef MS_TEST_MANIFEST_HELPERS_H
#define MS_TEST_MANIFEST_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "manifest/manifest.h"

/* Loads text as "t.toml" in dir; d is initialised (the caller frees it). */
static inline ms_manifest *load_in(const char *text, const char *dir, ms_diags *d)
{
    ms_diags_init(d, "t.toml");
    return ms_manifest_load_buffer(text, strlen(text), "t.toml", dir, d);
}

/* load_in a directory that does not exist. */
static inline ms_manifest *load(const char *text, ms_diags *d)
{
    return load_in(text, "/nonexistent-dir", d);
}

/* text does not load, and one of its errors is msg at line:col. */
static inline void expect_error(const char *text, int line, int col, const char *msg)
{
    ms_diags d;
    ms_manifest *m = load(text, &d);
    assert_null(m);
    bool found = false;
    for (size_t i = 0; i < d.len; i++)
        if (d.items[i].line == line && d.items[i].col == col && strcmp(d.items[i].msg, msg) == 0)
            found = true;
    if (!found) {
        for (size_t i = 0; i < d.len; i++)
            fprintf(stderr, "  got %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
        fail_msg("expected %d:%d: %s", line, col, msg);
    }
    ms_diags_free(&d);
}

#endif
