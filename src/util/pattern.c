/* pattern.c: whole-path PCRE2 patterns (see pattern.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "util/pattern.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *ms_pattern_compile(const char *pattern, char *why, size_t why_len)
{
    size_t n = strlen(pattern);
    /* errors are reported against the pattern as written, not the wrapper */
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *bare = pcre2_compile((PCRE2_SPTR)pattern, n, 0, &errcode, &erroff, NULL);
    if (!bare) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        snprintf(why, why_len, "%s at offset %zu", (char *)msg, (size_t)erroff);
        return NULL;
    }
    pcre2_code_free(bare);
    char *wrapped = malloc(n + 8);
    if (!wrapped) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    memcpy(wrapped, "(?:", 3);
    memcpy(wrapped + 3, pattern, n);
    memcpy(wrapped + 3 + n, ")\\z", 4);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)wrapped, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &errcode,
                                   &erroff, NULL);
    free(wrapped);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        size_t off = erroff >= 3 ? erroff - 3 : 0;
        if (off > n)
            off = n;
        snprintf(why, why_len, "%s at offset %zu", (char *)msg, off);
        return NULL;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD); /* optional speed-up */
    return re;
}

void ms_pattern_free(void *re)
{
    pcre2_code_free(re);
}

static int run(void *re, const char *s, size_t len, void *md_in, uint32_t opts)
{
    pcre2_match_data *md = md_in ? md_in : pcre2_match_data_create(1, NULL);
    if (!md)
        return PCRE2_ERROR_NOMEMORY;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, opts, md, NULL);
    if (!md_in)
        pcre2_match_data_free(md);
    return rc;
}

bool ms_pattern_match(void *re, const char *s, size_t len, void *md)
{
    return run(re, s, len, md, 0) >= 0;
}

bool ms_pattern_allows_prefix(void *re, const char *prefix, size_t len)
{
    int rc = run(re, prefix, len, NULL, PCRE2_PARTIAL_HARD);
    return rc >= 0 || rc == PCRE2_ERROR_PARTIAL;
}

void *ms_pattern_match_data_new(void)
{
    return pcre2_match_data_create(1, NULL);
}

void ms_pattern_match_data_free(void *md)
{
    pcre2_match_data_free(md);
}
