/* test_redirect.c: the Location of redirect_to_https. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/redirect.h"

static void expect_loc(const char *host, uint16_t port, const char *target, const char *want)
{
    char out[256];
    size_t n = ms_redirect_location(host, host ? strlen(host) : 0, port, target, strlen(target), out, sizeof out);
    if (!want) {
        assert_int_equal(n, 0);
        return;
    }
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_host_and_port(void **state)
{
    (void)state;
    expect_loc("example.com", 443, "/a?b=1", "https://example.com/a?b=1");
    expect_loc("example.com:8080", 443, "/", "https://example.com/");
    expect_loc("example.com", 8443, "/x", "https://example.com:8443/x");
    expect_loc("127.0.0.1:80", 8443, "/x", "https://127.0.0.1:8443/x");
    expect_loc("[::1]:80", 8443, "/x", "https://[::1]:8443/x");
    expect_loc("[::1]", 443, "/x", "https://[::1]/x");
    expect_loc("Ex-am_ple.COM", 443, "/", "https://Ex-am_ple.COM/");
}

static void test_hostile_hosts(void **state)
{
    (void)state;
    expect_loc(NULL, 443, "/", NULL);
    expect_loc("", 443, "/", NULL);
    expect_loc(":80", 443, "/", NULL);
    expect_loc("evil.com/path", 443, "/", NULL);
    expect_loc("evil.com@good.com", 443, "/", NULL);
    expect_loc("a b", 443, "/", NULL);
    expect_loc("a\r\nSet-Cookie: x", 443, "/", NULL);
    expect_loc("example.com:", 443, "/", NULL);
    expect_loc("example.com:80x", 443, "/", NULL);
    expect_loc("example.com:123456", 443, "/", NULL);
    expect_loc("[::1", 443, "/", NULL);
    expect_loc("[]", 443, "/", NULL);
    expect_loc("[::g]", 443, "/", NULL);
    expect_loc("[::1]x", 443, "/", NULL);
    expect_loc("example.com", 443, "//evil", "https://example.com//evil");
    expect_loc("example.com", 443, "x", NULL);
    expect_loc("example.com", 443, "", NULL);
}

static void test_does_not_fit(void **state)
{
    (void)state;
    char out[20];
    assert_int_equal(ms_redirect_location("example.com", 11, 443, "/", 1, out, sizeof out), 20);
    assert_int_equal(ms_redirect_location("example.com", 11, 443, "/a", 2, out, sizeof out), 0);
}

static void test_https_port(void **state)
{
    (void)state;
    ms_bind b[3];
    memset(b, 0, sizeof b);
    b[0].addr.kind = MS_ADDR_TCP;
    b[0].addr.port = 80;
    b[1].addr.kind = MS_ADDR_UNIX;
    b[1].tls = true;
    b[2].addr.kind = MS_ADDR_TCP;
    b[2].addr.port = 8443;
    b[2].tls = true;
    ms_global g;
    memset(&g, 0, sizeof g);
    g.binds = b;
    g.nbinds = 2;
    assert_int_equal(ms_redirect_https_port(&g), 0);
    g.nbinds = 3;
    assert_int_equal(ms_redirect_https_port(&g), 8443);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_and_port),
        cmocka_unit_test(test_hostile_hosts),
        cmocka_unit_test(test_does_not_fit),
        cmocka_unit_test(test_https_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
