/* test_reqpath.c: request targets checked and normalised (http/reqpath.c):
 * the rows of the table in docs/proxy.md, the raw-byte checks, edge cases
 * (empty path, "/", trailing dots, malformed escapes, ".." above the root,
 * long runs of slashes, an 8 KiB path), in place against a separate buffer,
 * and idempotence over generated paths. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/reqpath.h"

/* Run a whole target (len bytes, may hold NUL) through ms_reqpath_target in
 * place; out gets the result NUL-terminated. */
static ms_reqpath run_n(const char *target, size_t len, bool asterisk, char *out, size_t cap)
{
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    memcpy(buf, target, len);
    ms_reqpath r;
    ms_reqpath_target(buf, len, asterisk, &r);
    if (r.status == 0) {
        assert_true(r.len <= len);
        assert_true(r.path_len <= r.len);
        assert_true(r.len < cap);
        memcpy(out, buf, r.len);
        out[r.len] = '\0';
    } else {
        assert_int_equal(r.status, 400);
        assert_non_null(r.why);
        out[0] = '\0';
    }
    free(buf);
    return r;
}

static ms_reqpath run(const char *target, char *out, size_t cap)
{
    return run_n(target, strlen(target), false, out, cap);
}

/* target -> expected (NULL: 400), and whether the path is ambiguous */
static void expect(const char *target, const char *want, bool ambiguous)
{
    char out[512];
    ms_reqpath r = run(target, out, sizeof out);
    if (!want) {
        if (r.status != 400)
            fail_msg("%s: expected 400, got \"%s\"", target, out);
        return;
    }
    if (r.status != 0)
        fail_msg("%s: expected \"%s\", got 400 (%s)", target, want, r.why);
    if (strcmp(out, want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", target, want, out);
    if ((r.ambiguous != NULL) != ambiguous)
        fail_msg("%s: ambiguous should be %d", target, ambiguous);
    /* idempotent: the result normalised again is itself */
    char again[512];
    ms_reqpath r2 = run(out, again, sizeof again);
    assert_int_equal(r2.status, 0);
    assert_string_equal(again, out);
}

static void test_table(void **state)
{
    (void)state;
    expect("/%61dmin", "/admin", false);
    expect("/x/../admin", "/admin", false);
    expect("//admin", "/admin", false);
    expect("/%2e%2e/admin", NULL, false);
    expect("/a/%2e%2e/admin", "/admin", false);
    expect("/admin;x", "/admin;x", true);
    expect("/x#/../admin", NULL, false);
    expect("/a%2fb", "/a%2Fb", true);
    expect("/a\\b", "/a\\b", true);
    expect("/%7Euser/caf%c3%a9?q=%2e%2E", "/~user/caf%C3%A9?q=%2e%2E", false);
    expect("/app/admin\t", NULL, false);
}

static void test_more_rows(void **state)
{
    (void)state;
    expect("/a/./b", "/a/b", false);
    expect("/a/.", "/a/", false);
    expect("/a/b/..", "/a/", false);
    expect("/a//b", "/a/b", false);
    expect("/a/b/", "/a/b/", false);
    expect("/a/b//", "/a/b/", false);
    expect("/%2E%2E/x", NULL, false);
    expect("/%2e./x", NULL, false);
    expect("/.%2e/x", NULL, false);
    expect("/a/%2E/b", "/a/b", false);
    expect("/%41%5A%30%39%2D%2E%5F%7E", "/AZ09-._~", false);
    expect("/%41%5a%7e%7E", "/AZ~~", false);
    expect("/%20%21%2a%3a%40", "/%20%21%2A%3A%40", false);
    expect("/%25", "/%25", false);
    expect("/%2561", "/%2561", false);       /* not decoded twice */
    expect("/%3B", "/%3B", false);           /* an encoded ';' is data, not a parameter */
    expect("/a%2Fb", "/a%2Fb", true);
    expect("/a%5cb", "/a%5Cb", true);
    expect("/a%5Cb", "/a%5Cb", true);
    expect("/a%00b", "/a%00b", true);
    expect("/a%2F..%2Fb", "/a%2F..%2Fb", true); /* %2F is not a separator */
    expect("/a;b/../c", "/c", true);            /* flagged as received */
    expect("/x?a=%zz&b=..//", "/x?a=%zz&b=..//", false);
    expect("//?//", "/?//", false);
    expect("/?", "/?", false);
    expect("/a/..?q", "/?q", false);
    expect("/caf\xc3\xa9", "/caf\xc3\xa9", false); /* bytes >= 0x80 as they are */
    expect("/\xff/..", "/", false);
    expect("/...", "/...", false);
    expect("/a/.../b", "/a/.../b", false);
    expect("/.a/..b/b..", "/.a/..b/b..", false);
    expect("/a/b/c/../../d", "/a/d", false);
    expect("/a/b/../../../x", NULL, false);
}

static void test_edges(void **state)
{
    (void)state;
    expect("/", "/", false);
    expect("/.", "/", false);
    expect("/./", "/", false);
    expect("/..", NULL, false);
    expect("/../", NULL, false);
    expect("/a/../..", NULL, false);
    expect("/%", NULL, false);
    expect("/a%", NULL, false);
    expect("/a%4", NULL, false);
    expect("/a%4?x", NULL, false);
    expect("/%zz", NULL, false);
    expect("/%g0", NULL, false);
    expect("/%0g", NULL, false);
    expect("/a%", NULL, false);
    expect("", NULL, false);
    expect("?x", NULL, false);
    expect("a/b", NULL, false);
    expect("http://h/admin", NULL, false);
    expect("h:80", NULL, false);
    expect("*", NULL, false);

    char out[16];
    ms_reqpath r = run_n("*", 1, true, out, sizeof out); /* OPTIONS * */
    assert_int_equal(r.status, 0);
    assert_string_equal(out, "*");
    r = run_n("*x", 2, true, out, sizeof out);
    assert_int_equal(r.status, 400);

    /* the path alone: empty is refused */
    char p[4] = "";
    ms_reqpath_normalize(p, 0, p, &r);
    assert_int_equal(r.status, 400);
}

/* Every byte < 0x21 and 0x7f, anywhere in the target (query included), is
 * refused, as is '#'; the other bytes are not refused for themselves. */
static void test_bytes(void **state)
{
    (void)state;
    char out[64];
    for (int c = 0; c < 256; c++) {
        char t[16];
        size_t n = (size_t)snprintf(t, sizeof t, "/app/admin");
        t[n++] = (char)c;
        ms_reqpath r1 = run_n(t, n, false, out, sizeof out);
        char q[16];
        size_t m = (size_t)snprintf(q, sizeof q, "/a?x=");
        q[m++] = (char)c;
        ms_reqpath r2 = run_n(q, m, false, out, sizeof out);
        bool bad = c < 0x21 || c == 0x7f || c == '#';
        assert_int_equal(r2.status, bad ? 400 : 0);
        if (bad)
            assert_int_equal(r1.status, 400);
        else if (c != '%')
            assert_int_equal(r1.status, 0);
    }
    assert_non_null(ms_reqpath_check_bytes("/a\tb", 4));
    assert_non_null(ms_reqpath_check_bytes("/a\0b", 4));
    assert_non_null(ms_reqpath_check_bytes("/a\x0b", 3));
    assert_non_null(ms_reqpath_check_bytes("/a\x0c", 3));
    assert_non_null(ms_reqpath_check_bytes("/a\x7f", 3));
    assert_non_null(ms_reqpath_check_bytes("/a b", 4));
    assert_null(ms_reqpath_check_bytes("/a\x80\xff", 4));
}

static void test_long_slash_runs_and_8k_path(void **state)
{
    (void)state;
    enum { N = 8192 };
    char *t = malloc(N + 8), *out = malloc(N + 8);
    assert_non_null(t);
    assert_non_null(out);
    memset(t, '/', N);
    memcpy(t + N - 2, "ab", 2);
    ms_reqpath r = run_n(t, N, false, out, N + 8);
    assert_int_equal(r.status, 0);
    assert_string_equal(out, "/ab");

    /* 8 KiB of "a/./b/../" steps: each one leaves "a/" behind */
    size_t n = 0;
    t[n++] = '/';
    while (n + 9 <= N) {
        memcpy(t + n, "a/./b/../", 9);
        n += 9;
    }
    r = run_n(t, n, false, out, N + 8);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.path_len, 1 + 2 * ((n - 1) / 9));
    for (size_t i = 1; i < r.path_len; i += 2)
        assert_memory_equal(out + i, "a/", 2);

    /* 8 KiB of encoded unreserved characters: a third of the length */
    n = 0;
    t[n++] = '/';
    while (n + 3 <= N) {
        memcpy(t + n, "%7a", 3);
        n += 3;
    }
    r = run_n(t, n, false, out, N + 8);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.path_len, 1 + (n - 1) / 3);
    assert_int_equal(out[r.path_len - 1], 'z');

    /* as many ".." as segments: back at the root, one more: refused */
    n = 0;
    for (int k = 0; k < 500; k++)
        n += (size_t)sprintf(t + n, "/s%d", k);
    for (int k = 0; k < 500; k++)
        n += (size_t)sprintf(t + n, "/..");
    r = run_n(t, n, false, out, N + 8);
    assert_int_equal(r.status, 0);
    assert_string_equal(out, "/");
    memcpy(t + n, "/..", 3);
    r = run_n(t, n + 3, false, out, N + 8);
    assert_int_equal(r.status, 400);
    free(t);
    free(out);
}

/* What a normalised path never holds (see reqpath.h). */
static void check_normal(const char *p, size_t n)
{
    assert_true(n >= 1 && p[0] == '/');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '/') {
            assert_false(i + 1 < n && p[i + 1] == '/');
            bool dot1 = i + 1 < n && p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/');
            bool dot2 = i + 2 < n && p[i + 1] == '.' && p[i + 2] == '.' && (i + 3 == n || p[i + 3] == '/');
            assert_false(dot1 || dot2);
        }
        if (p[i] == '%') {
            assert_true(i + 2 < n);
            const char *hex = "0123456789ABCDEF";
            const char *h = memchr(hex, p[i + 1], 16), *l = memchr(hex, p[i + 2], 16);
            assert_true(h && l && p[i + 1] && p[i + 2]);
            unsigned v = (unsigned)((h - hex) << 4 | (l - hex));
            bool unres = (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') ||
                         v == '-' || v == '.' || v == '_' || v == '~';
            assert_false(unres);
        }
    }
}

/* Generated paths over an alphabet rich in slashes, dots and escapes: in
 * place equals a separate buffer, accepted results are normal, never
 * longer, and normalising them again changes nothing. */
static void test_generated_idempotent(void **state)
{
    (void)state;
    static const char alpha[] = "//..%%2eE5cfF0aA~;\\x\x80";
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    char in[64], sep[64], inplace[64], again[64];
    int accepted = 0;
    for (int k = 0; k < 200000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = 1 + (size_t)(x % 40);
        in[0] = '/';
        uint64_t y = x;
        for (size_t i = 1; i < n; i++) {
            y = y * 6364136223846793005ULL + 1442695040888963407ULL;
            in[i] = alpha[(y >> 33) % (sizeof alpha - 1)];
        }
        ms_reqpath r1, r2, r3;
        ms_reqpath_normalize(in, n, sep, &r1);
        memcpy(inplace, in, n);
        ms_reqpath_normalize(inplace, n, inplace, &r2);
        assert_int_equal(r1.status, r2.status);
        if (r1.status)
            continue;
        accepted++;
        assert_int_equal(r1.path_len, r2.path_len);
        assert_memory_equal(sep, inplace, r1.path_len);
        assert_true(r1.path_len <= n);
        check_normal(sep, r1.path_len);
        ms_reqpath_normalize(sep, r1.path_len, again, &r3);
        assert_int_equal(r3.status, 0);
        assert_int_equal(r3.path_len, r1.path_len);
        assert_memory_equal(again, sep, r1.path_len);
        if (!r1.ambiguous)
            assert_null(r3.ambiguous);
    }
    assert_true(accepted > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_more_rows),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_long_slash_runs_and_8k_path),
        cmocka_unit_test(test_generated_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
