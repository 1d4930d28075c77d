/* pattern.h: whole-path regular expressions. Route and module patterns must
 * match the whole request path; they are compiled once, as "(?:P)\z"
 * anchored at the start, which also allows partial matching (used to ask
 * "can a path starting with this prefix match?"). */
#ifndef MS_PATTERN_H
#define MS_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a pcre2_code * (as void *), JIT-compiled when possible, or NULL
 * with a message ("missing closing parenthesis at offset 6") in why. */
void *ms_pattern_compile(const char *pattern, char *why, size_t why_len);
void ms_pattern_free(void *re);
/* Whole-path match. md: a pcre2_match_data * kept by the caller, or NULL. */
bool ms_pattern_match(void *re, const char *s, size_t len, void *md);
/* Can some path that starts with prefix match the pattern as a whole? */
bool ms_pattern_allows_prefix(void *re, const char *prefix, size_t len);

/* A match-data block for ms_pattern_match (one per thread). */
void *ms_pattern_match_data_new(void);
void ms_pattern_match_data_free(void *md);

#endif
