/* test_resp_head.c: the response head written to a client (http/resp_head.c):
 * hop-by-hop lines removed, framing from the caller never from the ship (a
 * Connection header naming Content-Length removes nothing), compression
 * lines, payload edits, and the bound: the head fits in what
 * ms_resp_head_bound says and is refused, never cut, with one byte less. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/resp_head.h"

#define F(n, v) { n, sizeof n - 1, v, sizeof v - 1 }
#define DATE "Date: Sun, 06 Dec 2026 05:00:00 GMT\r\n"

static ms_resp_head base(const ms_field *f, size_t n)
{
    return (ms_resp_head){ .status = 200, .reason = "OK", .reason_len = 2, .fields = f, .nfields = n,
                           .date = DATE, .date_len = sizeof DATE - 1 };
}

/* Writes h with exactly its bound, checks that one byte less is refused,
 * and returns the head (static storage). */
static const char *write_head(const ms_resp_head *h)
{
    static char out[70000];
    size_t bound = ms_resp_head_bound(h);
    assert_true(bound < sizeof out);
    size_t n = ms_resp_head_write(h, out, bound);
    assert_true(n > 0 && n <= bound);
    out[n] = '\0';
    char again[70000];
    assert_int_equal(ms_resp_head_write(h, again, n - 1), 0);
    assert_int_equal(ms_resp_head_write(h, again, n), n);
    return out;
}

static void test_framing_is_never_the_ships(void **state)
{
    (void)state;
    static const ms_field f[] = {
        F("Content-Type", "text/plain"), F("Content-Length", "5"), F("Connection", "Content-Length, X-Hop, Host"),
        F("X-Hop", "1"), F("Keep-Alive", "timeout=5"), F("Transfer-Encoding", "chunked"), F("Trailer", "X"),
        F("Proxy-Connection", "keep-alive"), F("Host", "kept"), F("Upgrade", "h2c"), F("X-End", "e"),
    };
    ms_resp_head h = base(f, sizeof f / sizeof f[0]);
    h.has_length = true;
    h.length = 5;
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nHost: kept\r\nX-End: e\r\n" DATE
                                        "Content-Length: 5\r\n\r\n");
    h.has_length = false;
    h.chunked = true;
    h.connection = "close";
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nHost: kept\r\nX-End: e\r\n" DATE
                                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
}

/* Fields named in Connection are dropped whatever the spelling of the list:
 * two Connection fields, tabs and empty elements, any case, and more tokens
 * than resp_head.c gathers once per head (then it searches the values). */
static void test_named_in_connection(void **state)
{
    (void)state;
    static const ms_field f[] = {
        F("Connection", " ,x-a,\tX-B ,, "), F("X-A", "1"), F("x-b", "2"), F("X-AB", "kept"),
        F("connection", "x-c"), F("X-C", "3"), F("X-D", "kept"),
    };
    ms_resp_head h = base(f, sizeof f / sizeof f[0]);
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nX-AB: kept\r\nX-D: kept\r\n" DATE "\r\n");
    static const ms_field g[] = {
        F("Connection", "t1, t2, t3, t4, t5, t6, t7, t8"), F("Connection", "t9, x-late"), F("X-Late", "gone"),
        F("T1", "gone"), F("T10", "kept"), F("Content-Length", "5"),
    };
    h = base(g, sizeof g / sizeof g[0]);
    h.has_length = true;
    h.length = 5;
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nT10: kept\r\n" DATE "Content-Length: 5\r\n\r\n");
}

static void test_no_length_where_there_is_no_body(void **state)
{
    (void)state;
    static const ms_field f[] = { F("Content-Length", "0"), F("Date", "Sun, 06 Dec 2026 04:00:00 GMT") };
    ms_resp_head h = base(f, 2);
    h.has_length = true;
    h.status = 204;
    h.reason = "No Content";
    h.reason_len = 10;
    assert_string_equal(write_head(&h), "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Dec 2026 04:00:00 GMT\r\n\r\n");
    h.status = 304; /* a 304 keeps the length it describes */
    h.length = 42;
    h.reason = "Not Modified";
    h.reason_len = 12;
    assert_string_equal(write_head(&h), "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Dec 2026 04:00:00 GMT\r\n"
                                        "Content-Length: 42\r\n\r\n");
}

static void test_tunnel_keeps_its_upgrade_lines(void **state)
{
    (void)state;
    static const ms_field f[] = { F("Upgrade", "websocket"), F("Connection", "Upgrade"),
                                  F("Sec-WebSocket-Accept", "abc") };
    ms_resp_head h = base(f, 3);
    h.status = 101;
    h.reason = "Switching Protocols";
    h.reason_len = 19;
    h.tunnel = true;
    assert_string_equal(write_head(&h), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                        "Sec-WebSocket-Accept: abc\r\n" DATE "\r\n");
}

static void test_compression_lines(void **state)
{
    (void)state;
    static const ms_field f[] = { F("ETag", "\"v1\""), F("Vary", "Cookie"), F("Content-Length", "9000") };
    ms_resp_head h = base(f, 3);
    h.encoding = "br";
    h.chunked = true;
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\nContent-Encoding: br\r\n"
                                        "Vary: Cookie, Accept-Encoding\r\n" DATE "Transfer-Encoding: chunked\r\n\r\n");
    static const ms_field g[] = { F("ETag", "W/\"v1\"") };
    h = base(g, 1);
    h.encoding = "gzip";
    h.connection = "close";
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\nContent-Encoding: gzip\r\n"
                                        "Vary: Accept-Encoding\r\n" DATE "Connection: close\r\n\r\n");
}

static bool keep_no_server(const void *arg, const char *name, size_t len)
{
    (void)arg;
    return !(len == 6 && strncasecmp(name, "server", 6) == 0);
}

static bool add_two(const void *arg, size_t i, ms_field *out)
{
    (void)arg;
    static const ms_field f[] = { F("X-Added", "1"), F("X-Skipped", "no") };
    if (i == 1)
        return false; /* undone by a later edit */
    *out = f[i];
    return true;
}

static void test_payload_edits(void **state)
{
    (void)state;
    static const ms_field f[] = { F("Server", "ship"), F("X-Kept", "k") };
    ms_resp_head h = base(f, 2);
    h.keep = keep_no_server;
    h.added = add_two;
    h.nadded = 2;
    assert_string_equal(write_head(&h), "HTTP/1.1 200 OK\r\nX-Kept: k\r\nX-Added: 1\r\n" DATE "\r\n");
}

static void test_bound_holds_for_big_heads(void **state)
{
    (void)state;
    static char vals[100][200];
    static ms_field f[100];
    for (int i = 0; i < 100; i++) {
        memset(vals[i], 'a' + i % 26, sizeof vals[i]);
        f[i] = (ms_field){ i == 0 ? "ETag" : i == 1 ? "Vary" : "X-Fill", i < 2 ? 4 : 6, vals[i], sizeof vals[i] };
    }
    vals[0][0] = '"';
    char reason[300];
    memset(reason, 'r', sizeof reason);
    ms_resp_head h = base(f, 100);
    h.reason = reason;
    h.reason_len = sizeof reason; /* cut to 120 */
    h.encoding = "deflate";
    h.has_length = true;
    h.length = UINT64_MAX;
    h.connection = "keep-alive";
    h.status = 999;
    const char *out = write_head(&h);
    assert_int_equal(strchr(out, '\r') - out, 13 + 120);
    h.encoding = NULL;
    out = write_head(&h);
    assert_non_null(strstr(out, "Content-Length: 18446744073709551615\r\nConnection: keep-alive\r\n\r\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_is_never_the_ships),
        cmocka_unit_test(test_named_in_connection),
        cmocka_unit_test(test_no_length_where_there_is_no_body),
        cmocka_unit_test(test_tunnel_keeps_its_upgrade_lines),
        cmocka_unit_test(test_compression_lines),
        cmocka_unit_test(test_payload_edits),
        cmocka_unit_test(test_bound_holds_for_big_heads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
