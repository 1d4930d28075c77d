/* test_hbay_params.c: the HAIL a request to an HTTP bay becomes
 * (http/hbay_params.c): the exact CGI params, read back with the v3
 * codec's own parser; repeated headers joined, Cookie with "; ", hop-by-hop
 * and underscore names left out, X-Forwarded-* and the request id as for
 * ships, binary-safe values, Host with and without a port, payload edits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dock/protocol.h"
#include "http/hbay_params.h"

#define F(n, v) { n, sizeof n - 1, v, sizeof v - 1 }

static ms_hbay_req base(const ms_field *h, size_t n)
{
    return (ms_hbay_req){ .method = "GET", .path = "/x", .path_len = 2, .query = "", .headers = h, .nheaders = n,
                          .bind_host = "127.0.0.1", .bind_port = "8080", .protocol = "HTTP/1.1",
                          .software = "mothership/test", .peer = "10.1.2.3", .peer_port = 5555,
                          .reqid = "rid1", .reqid_len = 4 };
}

/* Encodes r and parses the frame back (the params are borrowed from buf). */
static void hail(const ms_hbay_req *r, ms_dock_buf *buf, ms_dock_hail *out)
{
    memset(buf, 0, sizeof *buf);
    assert_int_equal(ms_hbay_encode_hail(r, buf), 0);
    assert_true(buf->len > MS_DOCK_HEADER_LEN);
    assert_int_equal(buf->data[0], MS_DOCK_HAIL);
    char err[160];
    assert_int_equal(ms_dock_parse_hail(buf->data + MS_DOCK_HEADER_LEN, buf->len - MS_DOCK_HEADER_LEN, out, 0, err,
                                        sizeof err),
                     0);
    assert_int_equal(out->request_id, 0);
}

/* The value of name, or NULL; a name given twice fails the test. */
static const ms_dock_param *get(const ms_dock_hail *h, const char *name)
{
    const ms_dock_param *found = NULL;
    for (size_t i = 0; i < h->n_params; i++)
        if (h->params[i].name_len == strlen(name) && memcmp(h->params[i].name, name, h->params[i].name_len) == 0) {
            assert_null(found);
            found = &h->params[i];
        }
    return found;
}

static void expect(const ms_dock_hail *h, const char *name, const char *value)
{
    const ms_dock_param *p = get(h, name);
    if (!p)
        fail_msg("%s missing", name);
    if (p->value_len != strlen(value) || memcmp(p->value, value, p->value_len) != 0)
        fail_msg("%s = \"%.*s\", want \"%s\"", name, (int)p->value_len, p->value, value);
}

static void test_the_cgi_basics(void **state)
{
    (void)state;
    ms_field h[] = { F("Host", "example.com:8443"), F("Accept", "*/*") };
    ms_hbay_req r = base(h, 2);
    r.method = "POST";
    r.script = "/api";
    r.script_len = 4;
    r.path = "/a%20b";
    r.path_len = 6;
    r.query = "q=1&r";
    r.query_len = 5;
    r.has_length = true;
    r.content_length = r.body_len = 12;
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    assert_int_equal(m.content_length, 12);
    expect(&m, "REQUEST_METHOD", "POST");
    expect(&m, "SCRIPT_NAME", "/api");
    expect(&m, "PATH_INFO", "/a%20b");
    expect(&m, "QUERY_STRING", "q=1&r");
    expect(&m, "SERVER_NAME", "example.com");
    expect(&m, "SERVER_PORT", "8443");
    expect(&m, "SERVER_PROTOCOL", "HTTP/1.1");
    expect(&m, "SERVER_SOFTWARE", "mothership/test");
    expect(&m, "REMOTE_ADDR", "10.1.2.3");
    expect(&m, "REMOTE_PORT", "5555");
    expect(&m, "CONTENT_LENGTH", "12");
    expect(&m, "HTTP_HOST", "example.com:8443");
    expect(&m, "HTTP_ACCEPT", "*/*");
    expect(&m, "HTTP_X_FORWARDED_FOR", "10.1.2.3");
    expect(&m, "HTTP_X_FORWARDED_PROTO", "http");
    expect(&m, "HTTP_X_FORWARDED_HOST", "example.com:8443");
    expect(&m, "HTTP_X_REQUEST_ID", "rid1");
    assert_null(get(&m, "HTTPS"));
    assert_null(get(&m, "CONTENT_TYPE"));
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_no_host_no_body_and_tls(void **state)
{
    (void)state;
    ms_hbay_req r = base(NULL, 0);
    r.secure = true;
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    assert_int_equal(m.content_length, 0);
    expect(&m, "SERVER_NAME", "127.0.0.1");
    expect(&m, "SERVER_PORT", "8080");
    expect(&m, "QUERY_STRING", "");
    expect(&m, "SCRIPT_NAME", "");
    expect(&m, "HTTPS", "on");
    expect(&m, "HTTP_X_FORWARDED_PROTO", "https");
    assert_null(get(&m, "CONTENT_LENGTH"));
    assert_null(get(&m, "HTTP_X_FORWARDED_HOST"));
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_host_forms(void **state)
{
    (void)state;
    ms_field v6[] = { F("Host", "[::1]:99") };
    ms_field bare[] = { F("Host", "site") };
    ms_hbay_req r = base(v6, 1);
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    expect(&m, "SERVER_NAME", "[::1]");
    expect(&m, "SERVER_PORT", "99");
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
    r = base(bare, 1);
    r.secure = true;
    hail(&r, &buf, &m);
    expect(&m, "SERVER_NAME", "site");
    expect(&m, "SERVER_PORT", "443");
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_headers_joined_and_left_out(void **state)
{
    (void)state;
    ms_field h[] = {
        F("Accept", "a"),           F("X-Trace", "1"),         F("accept", "b"),
        F("Cookie", "x=1"),         F("cookie", "y=2"),        F("X_Evil", "spoof"),
        F("Connection", "x-hop, keep-alive"), F("X-Hop", "gone"), F("Keep-Alive", "5"),
        F("TE", "trailers"),        F("Transfer-Encoding", "chunked"), F("Upgrade", "h2c"),
        F("Proxy-Authorization", "secret"), F("Expect", "100-continue"), F("Content-Length", "3"),
        F("Content-Type", "text/plain"), F("X-Forwarded-For", "1.1.1.1"), F("X-Forwarded-Proto", "https"),
        F("X-Request-Id", "client-chosen"), F("X-Request-Start", "t=1"), F("X-Forwarded-Host", "evil"),
    };
    ms_hbay_req r = base(h, sizeof h / sizeof h[0]);
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    expect(&m, "HTTP_ACCEPT", "a, b");
    expect(&m, "HTTP_COOKIE", "x=1; y=2");
    expect(&m, "HTTP_X_TRACE", "1");
    expect(&m, "CONTENT_TYPE", "text/plain");
    expect(&m, "HTTP_X_FORWARDED_FOR", "1.1.1.1, 10.1.2.3");
    expect(&m, "HTTP_X_FORWARDED_PROTO", "http");
    expect(&m, "HTTP_X_REQUEST_ID", "rid1");
    static const char *const gone[] = { "HTTP_X_EVIL", "HTTP_CONNECTION", "HTTP_X_HOP", "HTTP_KEEP_ALIVE",
                                        "HTTP_TE", "HTTP_TRANSFER_ENCODING", "HTTP_UPGRADE",
                                        "HTTP_PROXY_AUTHORIZATION", "HTTP_EXPECT", "HTTP_CONTENT_LENGTH",
                                        "HTTP_CONTENT_TYPE", "HTTP_X_REQUEST_START", "CONTENT_LENGTH",
                                        "HTTP_X_FORWARDED_HOST" };
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (get(&m, gone[i]))
            fail_msg("%s should be left out", gone[i]);
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_an_upgrade_keeps_connection_and_upgrade(void **state)
{
    (void)state;
    ms_field h[] = { F("Connection", "Upgrade"), F("Upgrade", "websocket") };
    ms_hbay_req r = base(h, 2);
    r.upgrade = true;
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    expect(&m, "HTTP_CONNECTION", "Upgrade");
    expect(&m, "HTTP_UPGRADE", "websocket");
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_values_are_binary_safe(void **state)
{
    (void)state;
    ms_field h[] = { { "X-Bin", 5, "a\xff\x00z", 4 } };
    ms_hbay_req r = base(h, 1);
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    const ms_dock_param *p = get(&m, "HTTP_X_BIN");
    assert_non_null(p);
    assert_int_equal(p->value_len, 4);
    assert_memory_equal(p->value, "a\xff\x00z", 4);
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static bool keep_no_secret(const void *arg, const char *name, size_t len)
{
    (void)arg;
    return !(len == 8 && strncasecmp(name, "x-secret", 8) == 0);
}

static void test_payload_edits(void **state)
{
    (void)state;
    ms_field h[] = { F("X-Secret", "s"), F("X-Keep", "k") };
    ms_field add[] = { F("X-User", "alice") };
    ms_hbay_req r = base(h, 2);
    r.keep = keep_no_secret;
    r.added = add;
    r.nadded = 1;
    ms_dock_buf buf;
    ms_dock_hail m;
    hail(&r, &buf, &m);
    assert_null(get(&m, "HTTP_X_SECRET"));
    expect(&m, "HTTP_X_KEEP", "k");
    expect(&m, "HTTP_X_USER", "alice");
    ms_dock_hail_free(&m);
    ms_dock_buf_free(&buf);
}

static void test_a_head_too_large_for_a_frame_is_refused(void **state)
{
    (void)state;
    static char big[600 * 1024];
    memset(big, 'v', sizeof big);
    ms_field h[] = { { "X-A", 3, big, sizeof big }, { "X-B", 3, big, sizeof big } };
    ms_hbay_req r = base(h, 2);
    ms_dock_buf buf = { 0 };
    assert_int_not_equal(ms_hbay_encode_hail(&r, &buf), 0);
    assert_int_equal(buf.len, 0);
    ms_dock_buf_free(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_cgi_basics),
        cmocka_unit_test(test_no_host_no_body_and_tls),
        cmocka_unit_test(test_host_forms),
        cmocka_unit_test(test_headers_joined_and_left_out),
        cmocka_unit_test(test_an_upgrade_keeps_connection_and_upgrade),
        cmocka_unit_test(test_values_are_binary_safe),
        cmocka_unit_test(test_payload_edits),
        cmocka_unit_test(test_a_head_too_large_for_a_frame_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
