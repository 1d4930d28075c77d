/* strutil.h: small string helpers shared by the control plane: checked
 * duplication and formatting, edit distance for "did you mean" hints,
 * duration parsing ("250ms", "5s", "1m") and name checks. */
#ifndef MS_STRUTIL_H
#define MS_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return a heap copy or NULL on OOM. */
char *ms_strdup(const char *s);
char *ms_strndup(const char *s, size_t n);
/* printf into a new heap string; NULL on OOM. */
char *ms_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Levenshtein distance, capped: returns cap+1 as soon as it is exceeded. */
size_t ms_edit_distance(const char *a, const char *b, size_t cap);
/* The candidate nearest to word (NULL-terminated list), or NULL when none is
 * close enough to be a plausible typo. */
const char *ms_nearest(const char *word, const char *const *candidates);

/* Parse a duration: an integer or decimal followed by ms, s, m or h
 * ("250ms", "1.5s", "5s", "1m", "2h"). Result in milliseconds. Returns false
 * for anything else, negative values, or more than 24h. */
bool ms_parse_duration(const char *text, uint64_t *ms_out);

/* A fleet/module name: 1..64 of ASCII letters, digits, '-' and '_'. */
bool ms_valid_name(const char *s);

bool ms_starts_with(const char *s, const char *prefix);

#endif
