/* reqpath.h: what a request target becomes before anything looks at it,
 * without socket code. The raw bytes are checked first, then the path part
 * is normalised so that static dirs, payloads, routes, strip_prefix and the
 * ship all see one and the same path; the query is left byte for byte.
 *
 * The target (raw bytes between the method and the version):
 * - any byte < 0x21 or 0x7f: refused; a '#' anywhere: refused;
 * - it must start with '/' (origin-form); "*" is accepted as it is when the
 *   caller says the method is OPTIONS; absolute-form and authority-form are
 *   refused;
 * - bytes >= 0x80 are left as they are.
 *
 * The path (the target up to the first '?'), in this order:
 * 1. percent-encodings of unreserved characters (A-Z a-z 0-9 - . _ ~) are
 *    decoded; every other one is kept with its hex digits upper-cased; a
 *    '%' not followed by two hex digits: refused;
 * 2. ambiguous forms are flagged (not refused here): %2F, %5C, %00, a
 *    literal '\' and a ';'. They are kept as they are (an encoded '/' is
 *    not a separator); the caller refuses them unless the route opted out;
 * 3. repeated slashes are merged;
 * 4. dot segments are removed (RFC 3986 5.2.4), after the decoding, so
 *    "%2e%2e" is "..": "/a/." -> "/a/", "/a/b/.." -> "/a/"; a ".." above
 *    the root: refused.
 * The result is never longer than the input, and normalising it again gives
 * it back unchanged. */
#ifndef MS_HTTP_REQPATH_H
#define MS_HTTP_REQPATH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ms_reqpath {
    int status;              /* 0: accepted; 400: refused */
    const char *why;         /* refused: why, for the error body (a static string) */
    const char *ambiguous;   /* NULL, or the first ambiguous form found in the path */
    size_t len;              /* the target's length afterwards (path + query) */
    size_t path_len;         /* the path part's length afterwards */
} ms_reqpath;

/* Every byte of a raw target: NULL when it may be parsed further, else why
 * it is refused (a control byte or space, a '#'). */
const char *ms_reqpath_check_bytes(const char *target, size_t len);

/* Normalise the path in[0..len) (no query) into out, which has room for len
 * bytes and may be in itself. r->path_len and r->len are set to the length
 * written; r->status is 400 with r->why when it is refused (then out holds
 * nothing useful). Does not check for control bytes or '#': see
 * ms_reqpath_check_bytes. */
void ms_reqpath_normalize(const char *in, size_t len, char *out, ms_reqpath *r);

/* A whole target, in place: its bytes checked, its path normalised, the
 * query moved up behind the new path (target[0..r->len) afterwards).
 * asterisk: the method is OPTIONS, so "*" is accepted unchanged. */
void ms_reqpath_target(char *target, size_t len, bool asterisk, ms_reqpath *r);

#endif
