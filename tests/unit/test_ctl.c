/* test_ctl.c: unit tests of the control socket's request core
 * (src/cli/ctl_proto.c): routing, body and query checks, limits, keep-alive,
 * signal names and entry/@tag resolution, without sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ctl_proto.h"

typedef struct fed {
    ms_ctl_action action;
    ms_ctl_request req;
    bool keep_alive;
    size_t consumed;
    int status;
    char body[2048];
} fed;

static fed feed(const char *bytes)
{
    ms_ctl_session s;
    ms_ctl_response r;
    ms_ctl_session_init(&s);
    ms_ctl_response_init(&r);
    fed f;
    memset(&f, 0, sizeof f);
    f.action = ms_ctl_session_feed(&s, bytes, strlen(bytes), &f.consumed, &f.req, &f.keep_alive, &r);
    f.status = r.status;
    if (f.action == MS_CTL_ANSWER) {
        const char *b = memmem(r.out.data, r.out.len, "\r\n\r\n", 4);
        assert_non_null(b);
        snprintf(f.body, sizeof f.body, "%.*s", (int)(r.out.len - (size_t)(b + 4 - r.out.data)), b + 4);
    }
    ms_ctl_response_free(&r);
    ms_ctl_session_free(&s);
    return f;
}

static char *post(const char *path, const char *json)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", path, strlen(json),
             json);
    return buf;
}

static void test_status(void **st)
{
    (void)st;
    fed f = feed("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_int_equal(f.req.op, MS_CTL_STATUS);
    assert_true(f.keep_alive);
    f = feed("GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_false(f.keep_alive);
}

static void test_routes_and_methods(void **st)
{
    (void)st;
    fed f = feed("GET /v2/status HTTP/1.1\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_ANSWER);
    assert_int_equal(f.status, 404);
    assert_non_null(strstr(f.body, "no such endpoint"));
    f = feed("POST /v1/status HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(f.status, 405);
    f = feed("GET /v1/entries/restart HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 405);
    assert_non_null(strstr(f.body, "takes POST"));
    /* bytes that are not UTF-8 in the path still give a JSON error */
    f = feed("GET /v1/\xb9x HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 404);
    assert_non_null(strstr(f.body, "{\"error\":\"no such endpoint: /v1/?x"));
}

static void test_entries(void **st)
{
    (void)st;
    fed f = feed(post("/v1/entries/restart", "{\"names\": [\"web\", \"@front\"]}"));
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_int_equal(f.req.op, MS_CTL_RESTART);
    assert_int_equal(json_array_size(f.req.names), 2);
    assert_string_equal(json_string_value(json_array_get(f.req.names, 1)), "@front");
    ms_ctl_request_clear(&f.req);

    f = feed(post("/v1/entries/stop", "{}"));
    assert_int_equal(f.status, 400);
    assert_non_null(strstr(f.body, "no entry named"));
    f = feed(post("/v1/entries/stop", "{\"names\": []}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/start", "{\"names\": \"web\"}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/start", "{\"names\": [1]}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/start", "{\"names\": [\"a\\u0000b\"]}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/start", "[\"web\"]"));
    assert_int_equal(f.status, 400);
    assert_non_null(strstr(f.body, "JSON object"));
    f = feed(post("/v1/entries/start", "{\"names\": [\"web\"]"));
    assert_int_equal(f.status, 400);
    assert_non_null(strstr(f.body, "not JSON"));
}

static void test_signal(void **st)
{
    (void)st;
    fed f = feed(post("/v1/entries/signal", "{\"name\": \"web\", \"signal\": \"HUP\"}"));
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_int_equal(f.req.signo, SIGHUP);
    assert_string_equal(f.req.name, "web");
    f = feed(post("/v1/entries/signal", "{\"name\": \"web\", \"signal\": 10}"));
    assert_int_equal(f.req.signo, 10);
    f = feed(post("/v1/entries/signal", "{\"name\": \"web\", \"signal\": \"NOPE\"}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/signal", "{\"name\": \"web\", \"signal\": 65}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/entries/signal", "{\"signal\": 1}"));
    assert_int_equal(f.status, 400);
    assert_int_equal(ms_ctl_signal_number("sigusr1"), SIGUSR1);
    assert_int_equal(ms_ctl_signal_number("SIGTERM"), SIGTERM);
    assert_int_equal(ms_ctl_signal_number("9"), 9);
    assert_int_equal(ms_ctl_signal_number("9x"), 0);
    assert_int_equal(ms_ctl_signal_number("0"), 0);
    assert_int_equal(ms_ctl_signal_number(""), 0);
}

static void test_logs_query(void **st)
{
    (void)st;
    fed f = feed("GET /v1/logs HTTP/1.1\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_int_equal(f.req.op, MS_CTL_LOGS);
    assert_int_equal(f.req.n, 100);
    assert_false(f.req.follow);
    assert_string_equal(f.req.name, "");
    f = feed("GET /v1/logs?name=w%65b&n=5&follow=1 HTTP/1.1\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_string_equal(f.req.name, "web");
    assert_int_equal(f.req.n, 5);
    assert_true(f.req.follow);
    f = feed("GET /v1/logs?n=-1 HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 400);
    f = feed("GET /v1/logs?n=100001 HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 400);
    f = feed("GET /v1/logs?name=a%00b HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 400);
    f = feed("GET /v1/logs?name=%zz HTTP/1.1\r\n\r\n");
    assert_int_equal(f.status, 400);
}

static void test_reload_drain(void **st)
{
    (void)st;
    fed f = feed(post("/v1/reload", "{\"check\": true}"));
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_true(f.req.check);
    f = feed(post("/v1/reload", ""));
    assert_int_equal(f.action, MS_CTL_REQUEST);
    assert_false(f.req.check);
    f = feed(post("/v1/reload", "{\"check\": \"yes\"}"));
    assert_int_equal(f.status, 400);
    f = feed(post("/v1/drain", ""));
    assert_int_equal(f.req.op, MS_CTL_DRAIN);
}

static void test_limits(void **st)
{
    (void)st;
    fed f = feed("POST /v1/reload HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
    assert_int_equal(f.action, MS_CTL_ANSWER);
    assert_int_equal(f.status, 413);
    char *big = malloc(MS_CTL_MAX_HEAD + 100);
    strcpy(big, "GET /v1/status HTTP/1.1\r\nX: ");
    memset(big + strlen(big), 'a', MS_CTL_MAX_HEAD);
    big[MS_CTL_MAX_HEAD + 20] = '\0';
    f = feed(big);
    assert_int_equal(f.status, 431);
    free(big);
    f = feed("NOT HTTP\r\n\r\n");
    assert_int_equal(f.status, 400);
    f = feed("GET /v1/status HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    assert_int_equal(f.status, 400);
}

/* Two requests on one connection: each answered in turn; after an error
 * that closes, nothing more is read. */
static void test_pipelined(void **st)
{
    (void)st;
    const char *two = "GET /v1/status HTTP/1.1\r\n\r\nPOST /v1/drain HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    ms_ctl_session s;
    ms_ctl_response r;
    ms_ctl_request q;
    bool ka;
    size_t used, off = 0;
    ms_ctl_session_init(&s);
    ms_ctl_response_init(&r);
    assert_int_equal(ms_ctl_session_feed(&s, two, strlen(two), &used, &q, &ka, &r), MS_CTL_REQUEST);
    assert_int_equal(q.op, MS_CTL_STATUS);
    off += used;
    assert_int_equal(ms_ctl_session_feed(&s, two + off, strlen(two) - off, &used, &q, &ka, &r), MS_CTL_REQUEST);
    assert_int_equal(q.op, MS_CTL_DRAIN);
    off += used;
    assert_int_equal(off, strlen(two));
    const char *bad = "BAD\r\n\r\n";
    assert_int_equal(ms_ctl_session_feed(&s, bad, strlen(bad), &used, &q, &ka, &r), MS_CTL_ANSWER);
    assert_true(r.close);
    assert_int_equal(ms_ctl_session_feed(&s, two, strlen(two), &used, &q, &ka, &r), MS_CTL_ANSWER);
    assert_int_equal(used, 0);
    ms_ctl_response_free(&r);
    ms_ctl_session_free(&s);
}

static void test_resolve(void **st)
{
    (void)st;
    const char *text = "[[fleet.web]]\nname = \"web\"\ncommand = \"true\"\ntags = [\"front\"]\n"
                       "[[fleet.web]]\nname = \"api\"\ncommand = \"true\"\ntags = [\"front\", \"back\"]\n"
                       "[[fleet.jobs]]\nname = \"db\"\ncommand = \"true\"\n";
    ms_diags d;
    ms_diags_init(&d, "t.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "t.toml", "/nonexistent-dir", &d);
    assert_non_null(m);
    bool pick[3] = { 0 };
    json_t *err;
    json_t *names = json_pack("[s]", "@front");
    assert_true(ms_ctl_resolve(m, names, pick, &err));
    assert_true(pick[0] && pick[1] && !pick[2]);
    json_decref(names);
    names = json_pack("[s, s]", "db", "nope");
    assert_false(ms_ctl_resolve(m, names, pick, &err));
    assert_string_equal(json_string_value(json_object_get(err, "error")), "no entry is named \"nope\"");
    assert_int_equal(json_array_size(json_object_get(err, "known")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(err, "tags"), 1)), "back");
    json_decref(err);
    json_decref(names);
    names = json_pack("[s]", "@none");
    assert_false(ms_ctl_resolve(m, names, pick, &err));
    assert_string_equal(json_string_value(json_object_get(err, "error")), "no entry has the tag \"none\"");
    json_decref(err);
    json_decref(names);
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_respond(void **st)
{
    (void)st;
    ms_ctl_response r;
    ms_ctl_response_init(&r);
    ms_ctl_respond(&r, 422, json_pack("{s:s}", "result", "refused"), true);
    const char *want = "HTTP/1.1 422 Unprocessable Content\r\nContent-Type: application/json\r\n"
                       "Content-Length: 21\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
                       "{\"result\":\"refused\"}\n";
    assert_int_equal(r.out.len, strlen(want));
    assert_memory_equal(r.out.data, want, strlen(want));
    ms_buf_reset(&r.out);
    ms_ctl_chunk(&r.out, "abc\n", 4);
    ms_ctl_chunk(&r.out, "", 0);
    assert_int_equal(r.out.len, strlen("4\r\nabc\n\r\n0\r\n\r\n"));
    assert_memory_equal(r.out.data, "4\r\nabc\n\r\n0\r\n\r\n", r.out.len);
    ms_ctl_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),   cmocka_unit_test(test_routes_and_methods),
        cmocka_unit_test(test_entries),  cmocka_unit_test(test_signal),
        cmocka_unit_test(test_logs_query), cmocka_unit_test(test_reload_drain),
        cmocka_unit_test(test_limits),   cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_resolve),  cmocka_unit_test(test_respond),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
