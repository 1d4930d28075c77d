/* fuzz_reqpath.c: libFuzzer target for request targets (ms_reqpath_target
 * and ms_reqpath_normalize in src/http/reqpath.c), which see the raw bytes
 * of every request line.
 *
 * Role: the input is a target (the first byte, when odd, says the method is
 * OPTIONS). It is normalised in place in an exactly sized heap copy (ASan
 * sees any access past it). Accepted: the result is never longer than the
 * input; the query after the path is the input's, byte for byte; the path
 * starts with '/' and holds no "//", no "/./" or "/../" (nor a trailing
 * "/." or "/.."), no control byte, space, '#' or '?', and no
 * percent-encoding that is not '%' and two upper-case hex digits of a
 * reserved byte; a separate output buffer gives the same bytes; and
 * normalising the path again gives it back, with no new ambiguity.
 * Refused: the status is 400 with a reason. Seed corpus:
 * tests/fuzz/corpus/reqpath/. Run with e.g.
 *   fuzz_reqpath -max_total_time=60 -max_len=16384 tests/fuzz/corpus/reqpath
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/reqpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int hexup(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned v)
{
    return (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-' || v == '.' ||
           v == '_' || v == '~';
}

static void check_path(const char *p, size_t n)
{
    check(n >= 1 && p[0] == '/');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        check(c >= 0x21 && c != 0x7f && c != '#' && c != '?');
        if (c == '/') {
            size_t rest = n - i - 1;
            const char *s = p + i + 1;
            check(!(rest >= 1 && s[0] == '/'));
            check(!(rest == 1 && s[0] == '.') && !(rest >= 2 && s[0] == '.' && s[1] == '/'));
            check(!(rest == 2 && s[0] == '.' && s[1] == '.') &&
                  !(rest >= 3 && s[0] == '.' && s[1] == '.' && s[2] == '/'));
        }
        if (c == '%') {
            check(i + 2 < n);
            int h = hexup((unsigned char)p[i + 1]), l = hexup((unsigned char)p[i + 2]);
            check(h >= 0 && l >= 0);
            check(!unreserved((unsigned)(h << 4 | l)));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    bool asterisk = data[0] & 1;
    data++;
    size--;
    char *t = malloc(size ? size : 1);
    if (!t)
        return 0;
    memcpy(t, data, size);
    ms_reqpath r;
    ms_reqpath_target(t, size, asterisk, &r);
    if (r.status != 0) {
        check(r.status == 400 && r.why && r.why[0]);
        free(t);
        return 0;
    }
    check(r.len <= size && r.path_len <= r.len);
    if (asterisk && size == 1 && data[0] == '*') {
        check(r.len == 1 && t[0] == '*');
        free(t);
        return 0;
    }
    /* the query, byte for byte */
    const uint8_t *q = memchr(data, '?', size);
    size_t qlen = q ? size - (size_t)(q - data) : 0;
    check(r.len - r.path_len == qlen);
    check(qlen == 0 || memcmp(t + r.path_len, q, qlen) == 0);
    check_path(t, r.path_len);

    /* the same from a separate buffer */
    size_t plen = size - qlen;
    char *out = malloc(plen);
    ms_reqpath r2;
    if (out) {
        ms_reqpath_normalize((const char *)data, plen, out, &r2);
        check(r2.status == 0 && r2.path_len == r.path_len && memcmp(out, t, r.path_len) == 0);
        check((r2.ambiguous != NULL) == (r.ambiguous != NULL));
    }

    /* idempotent */
    char *again = malloc(r.path_len);
    if (again) {
        ms_reqpath r3;
        ms_reqpath_normalize(t, r.path_len, again, &r3);
        check(r3.status == 0 && r3.path_len == r.path_len && memcmp(again, t, r.path_len) == 0);
        check(r.ambiguous || !r3.ambiguous);
        /* in place too */
        ms_reqpath_normalize(again, r.path_len, again, &r3);
        check(r3.status == 0 && r3.path_len == r.path_len && memcmp(again, t, r.path_len) == 0);
    }
    free(again);
    free(out);
    free(t);
    return 0;
}
