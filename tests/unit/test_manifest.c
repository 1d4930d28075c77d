/* test_manifest.c: unit tests of the manifest model: defaults, base
 * template merging, route forms, request body keys, addresses, uplink
 * URLs, durations, name rules, "did you mean" hints and the diagnostics
 * list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "manifest_helpers.h"
#include "util/strutil.h"

/* handover_timeout: a bay's, 30 s unless set; a ship is told it is a bay key. */
static void test_bay_handover_timeout(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[bays.websocket]]\nname = \"a\"\ncommand = \"x\"\n"
                          "[[bays.websocket]]\nname = \"b\"\ncommand = \"x\"\nhandover_timeout = \"5s\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->ships[0].handover_timeout_ms, 30000);
    assert_int_equal(m->ships[1].handover_timeout_ms, 5000);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nhandover_timeout = \"5s\"\n", 4, 1,
                 "ship \"a\": unknown key \"handover_timeout\" (\"handover_timeout\" is only for bays)");
    expect_error("[[bays.websocket]]\nname = \"a\"\ncommand = \"x\"\nhandover_timeout = 5\n", 4, 20,
                 "bay \"a\": \"handover_timeout\" must be a duration string like \"250ms\", \"5s\" or \"1m\", "
                 "not an integer");
}

static void test_defaults(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->nships, 1);
    ms_ship *s = &m->ships[0];
    assert_string_equal(s->group, "web");
    assert_true(s->critical);
    assert_false(s->oneshot);
    assert_false(s->has_bind);
    assert_null(s->health.path);
    assert_int_equal(s->health.interval_ms, 5000);
    assert_int_equal(s->health.failures, 3);
    assert_int_equal(m->global.metrics_port, 0);
    assert_string_equal(m->global.metrics_bind, "127.0.0.1");
    assert_false(m->global.compression);
    assert_int_equal(m->global.shutdown_timeout_ms, 10000);
    assert_int_equal(m->global.workers, 1);
    assert_string_equal(ms_ship_kind_word(s), "worker");
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_stop_signal(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[base.bay]\nstop_signal = \"quit\"\n"
                          "[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\n"
                          "[[fleet.web]]\nname = \"b\"\ncommand = \"x\"\nstop_signal = \"SIGINT\"\n"
                          "[[fleet.web]]\nname = \"c\"\ncommand = \"x\"\nstop_signal = 1\n"
                          "[[bays.websocket]]\nname = \"d\"\ncommand = \"x\"\n",
                          &d);
    assert_non_null(m);
    assert_int_equal(m->ships[0].stop_signal, SIGTERM);
    assert_int_equal(m->ships[1].stop_signal, SIGINT);
    assert_int_equal(m->ships[2].stop_signal, SIGHUP);
    assert_int_equal(m->ships[3].stop_signal, SIGQUIT);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nstop_signal = \"SIGTEMR\"\n", 4, 15,
                 "ship \"a\": \"stop_signal\" \"SIGTEMR\" is not a signal name (did you mean \"SIGTERM\"?)");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nstop_signal = \"CHLD\"\n", 4, 15,
                 "ship \"a\": \"stop_signal\" SIGCHLD is not a signal that stops a process; use one of SIGTERM, "
                 "SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nstop_signal = -3\n", 4, 15,
                 "ship \"a\": \"stop_signal\" -3 is not a signal that stops a process; use one of SIGTERM, "
                 "SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nstop_signal = \"SIGINTERRUPTIONS!\"\n", 4, 15,
                 "ship \"a\": \"stop_signal\" \"SIGINTERRUPTIONS!\" is not a signal name; use one of SIGTERM, "
                 "SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nstop_signal = \"\"\n", 4, 15,
                 "ship \"a\": \"stop_signal\" \"\" is not a signal name; use one of SIGTERM, "
                 "SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL");
}

static void test_base_merge(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[base.ship]\n"
                          "env = { A = \"base\", B = \"base\" }\n"
                          "tags = [\"ruby\", \"web\"]\n"
                          "critical = false\n"
                          "[[fleet.web]]\n"
                          "name = \"app\"\n"
                          "command = \"ruby\"\n"
                          "env = { B = \"mine\", C = 3 }\n"
                          "tags = [\"web\", \"api\"]\n"
                          "critical = true\n"
                          "[[bays.websocket]]\n"
                          "name = \"cast\"\n"
                          "command = \"./cast\"\n",
                          &d);
    assert_non_null(m);
    ms_ship *s = ms_manifest_find_ship(m, "app");
    assert_non_null(s);
    assert_string_equal(ms_strmap_get(&s->env, "A"), "base");
    assert_string_equal(ms_strmap_get(&s->env, "B"), "mine");
    assert_string_equal(ms_strmap_get(&s->env, "C"), "3");
    assert_int_equal(s->tags.len, 3);
    assert_string_equal(s->tags.items[0], "ruby");
    assert_string_equal(s->tags.items[1], "web");
    assert_string_equal(s->tags.items[2], "api");
    assert_true(s->critical);
    ms_ship *b = ms_manifest_find_ship(m, "cast");
    assert_non_null(b);
    assert_int_equal(b->kind, MS_BAY);
    assert_int_equal(b->tags.len, 0); /* [base.ship] does not apply to bays */
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_routes_and_order(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[mothership.bind]\nhttp = \"8080\"\nws = \"8081\"\n"
                          "[[fleet.b]]\nname = \"api\"\ncommand = \"x\"\nbind = \"3001\"\n"
                          "routes = [\"http:/api/.*\", { bind = \"http\", pattern = \"/v2/.*\", strip_prefix = \"/v2\", "
                          "raw_path = true }]\n"
                          "[[bays.websocket]]\nname = \"cast\"\ncommand = \"y\"\nroutes = [\"ws:/ws\"]\n"
                          "[[fleet.a]]\nname = \"web\"\ncommand = \"x\"\nbind = \"unix:///tmp/w.sock\"\n",
                          &d);
    if (!m)
        ms_diags_print(&d, stderr);
    assert_non_null(m);
    assert_int_equal(m->nships, 3);
    /* manifest order, across groups and bays */
    assert_string_equal(m->ships[0].name, "api");
    assert_string_equal(m->ships[1].name, "cast");
    assert_string_equal(m->ships[2].name, "web");
    ms_ship *api = &m->ships[0];
    assert_int_equal(api->nroutes, 2);
    assert_string_equal(api->routes[0].bind, "http");
    assert_string_equal(api->routes[0].pattern, "/api/.*");
    assert_null(api->routes[0].strip_prefix);
    assert_string_equal(api->routes[1].strip_prefix, "/v2");
    assert_false(api->routes[0].raw_path);
    assert_true(api->routes[1].raw_path);
    assert_string_equal(api->bind.text, "tcp://127.0.0.1:3001");
    assert_string_equal(m->ships[2].bind.path, "/tmp/w.sock");
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[[fleet.web]]\nname = \"app\"\ncomand = \"x\"\n", 3, 1,
                 "ship \"app\": unknown key \"comand\" (did you mean \"command\"?)");
    expect_error("[[fleet.web]]\nname = \"app\"\n", 1, 1, "ship \"app\": missing required key \"command\"");
    expect_error("[mothership.bind]\nhttp = \"8080\"\n[[fleet.web]]\nname = \"app\"\ncommand = \"x\"\nbind = \"3000\"\n"
                 "routes = [{ bind = \"http\", pattern = \"/f/.*\", raw_path = \"yes\" }]\n", 7, 58,
                 "ship \"app\": \"raw_path\" must be a boolean (true or false), not a string");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\ndepends_on = [\"b\"]\n"
                 "[[fleet.web]]\nname = \"b\"\ncommand = \"x\"\ndepends_on = [\"c\"]\n"
                 "[[fleet.web]]\nname = \"c\"\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
                 12, 15, "ship \"c\": dependency cycle: a -> b -> c -> a");
    expect_error("[mothership]\nshutdown_timeout = \"5 s\"\n", 2, 20,
                 "[mothership]: \"shutdown_timeout\": invalid duration \"5 s\" (use a number and ms, s, m or h, "
                 "like \"250ms\", \"5s\" or \"1m\"; at most 24h)");
    expect_error("a = [1,\n", 2, 1, "expected a value, found end of input");
}

static void test_request_bodies(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    assert_true(m->global.http.request_buffering);
    assert_int_equal(m->global.http.request_buffer_size, 65536);
    assert_int_equal(m->global.http.body_timeout_ms, 60000);
    ms_manifest_free(m);
    ms_diags_free(&d);
    m = load("[mothership.http]\nrequest_buffering = false\nrequest_buffer_size = \"1MiB\"\nbody_timeout = \"5s\"\n"
             "[mothership.bind]\nhttp = \"8080\"\n"
             "[[fleet.b]]\nname = \"api\"\ncommand = \"x\"\nbind = \"3001\"\n"
             "routes = [\"http:/a/.*\", { bind = \"http\", pattern = \"/up/.*\", request_buffering = true }]\n",
             &d);
    if (!m)
        ms_diags_print(&d, stderr);
    assert_non_null(m);
    assert_false(m->global.http.request_buffering);
    assert_int_equal(m->global.http.request_buffer_size, 1 << 20);
    assert_int_equal(m->global.http.body_timeout_ms, 5000);
    assert_false(m->ships[0].routes[0].request_buffering_set);
    assert_true(m->ships[0].routes[1].request_buffering_set);
    assert_true(m->ships[0].routes[1].request_buffering);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[mothership.http]\nbody_timeout = \"0s\"\n", 2, 16,
                 "[mothership.http]: \"body_timeout\" must be above 0");
    expect_error("[mothership.http]\nrequest_buffer_size = 100\n", 2, 23,
                 "[mothership.http]: \"request_buffer_size\" must be at least 1024");
    expect_error("[mothership.http]\nrequest_buffer_size = \"65MiB\"\n", 2, 23,
                 "[mothership.http]: \"request_buffer_size\" must be at most 64MiB (it is held in memory per "
                 "request; larger bodies go to a temporary file)");
    expect_error("[mothership.http]\nrequest_buffering = \"yes\"\n", 2, 21,
                 "[mothership.http]: \"request_buffering\" must be a boolean (true or false), not a string");
}

static void test_h2_limits(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    const ms_http_limits *h = &m->global.http;
    assert_int_equal(h->h2_max_concurrent_streams, 128);
    assert_int_equal(h->h2_max_header_list_size, 32768);
    assert_int_equal(h->h2_header_table_size, 4096);
    assert_int_equal(h->h2_rapid_reset_max, 200);
    assert_int_equal(h->h2_rapid_reset_window_ms, 10000);
    assert_int_equal(h->h2_max_control_frames, 1000);
    assert_int_equal(h->h2_stall_timeout_ms, 60000);
    ms_manifest_free(m);
    ms_diags_free(&d);
    m = load("[mothership.http]\nh2_max_concurrent_streams = 16\nh2_max_header_list_size = \"8KiB\"\n"
             "h2_header_table_size = 0\nh2_rapid_reset_max = 5\nh2_rapid_reset_window = \"2s\"\n"
             "h2_max_control_frames = 10\nh2_stall_timeout = \"0s\"\n", &d);
    if (!m)
        ms_diags_print(&d, stderr);
    assert_non_null(m);
    h = &m->global.http;
    assert_int_equal(h->h2_max_concurrent_streams, 16);
    assert_int_equal(h->h2_max_header_list_size, 8192);
    assert_int_equal(h->h2_header_table_size, 0);
    assert_int_equal(h->h2_rapid_reset_max, 5);
    assert_int_equal(h->h2_rapid_reset_window_ms, 2000);
    assert_int_equal(h->h2_max_control_frames, 10);
    assert_int_equal(h->h2_stall_timeout_ms, 0);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[mothership.http]\nh2_max_concurrent_streams = 0\n", 2, 29,
                 "[mothership.http]: \"h2_max_concurrent_streams\" must be from 1 to 10000, not 0");
    expect_error("[mothership.http]\nh2_max_header_list_size = \"2MiB\"\n", 2, 27,
                 "[mothership.http]: \"h2_max_header_list_size\" must be at most 1MiB");
    expect_error("[mothership.http]\nh2_rapid_reset_window = \"0s\"\n", 2, 25,
                 "[mothership.http]: \"h2_rapid_reset_window\" must be above 0");
    expect_error("[mothership.http]\nh2_max_concurent_streams = 1\n", 2, 1,
                 "[mothership.http]: unknown key \"h2_max_concurent_streams\" (did you mean "
                 "\"h2_max_concurrent_streams\"?)");
}

static void test_response_header_size(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->global.http.max_response_header_size, 16384);
    ms_manifest_free(m);
    ms_diags_free(&d);
    m = load("[mothership.http]\nmax_response_header_size = \"32KiB\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->global.http.max_response_header_size, 32768);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[mothership.http]\nmax_response_header_size = 512\n", 2, 28,
                 "[mothership.http]: \"max_response_header_size\" must be at least 1024");
    expect_error("[mothership.http]\nmax_response_header_size = \"65KiB\"\n", 2, 28,
                 "[mothership.http]: \"max_response_header_size\" must be at most 64KiB (a response head is "
                 "forwarded whole, rewritten, and at most 64KiB)");
}

static void test_addresses(void **state)
{
    (void)state;
    char why[160];
    ms_addr a;
    assert_true(ms_addr_parse("3000", &a, why, sizeof why));
    assert_string_equal(a.text, "tcp://127.0.0.1:3000");
    ms_addr_free(&a);
    assert_true(ms_addr_parse("tcp://0.0.0.0:80", &a, why, sizeof why));
    assert_int_equal(a.port, 80);
    ms_addr b;
    assert_true(ms_addr_parse("127.0.0.1:80", &b, why, sizeof why));
    assert_true(ms_addr_collide(&a, &b)); /* wildcard takes every address */
    ms_addr_free(&b);
    assert_true(ms_addr_parse("[::1]:8080", &b, why, sizeof why));
    assert_string_equal(b.text, "tcp://[::1]:8080");
    assert_false(ms_addr_collide(&a, &b));
    ms_addr_free(&a);
    ms_addr_free(&b);
    assert_true(ms_addr_parse("unix:///run/a.sock", &a, why, sizeof why));
    assert_int_equal(a.kind, MS_ADDR_UNIX);
    assert_string_equal(a.path, "/run/a.sock");
    ms_addr_free(&a);
    assert_false(ms_addr_parse("70000", &a, why, sizeof why));
    assert_string_equal(why, "port must be a number from 1 to 65535");
    assert_false(ms_addr_parse("::1:80", &a, why, sizeof why));
    assert_false(ms_addr_parse("http://x:1", &a, why, sizeof why));
    assert_false(ms_addr_parse("unix://", &a, why, sizeof why));
    assert_false(ms_addr_parse("host", &a, why, sizeof why));
    assert_string_equal(why, "missing port");
}

static void test_uplink_urls(void **state)
{
    (void)state;
    char why[200];
    ms_uplink u;
    memset(&u, 0, sizeof u);
    assert_true(ms_uplink_url_parse("postgresql://user:p@ss@db.internal/app", &u, why, sizeof why));
    assert_string_equal(u.scheme, "postgres");
    assert_string_equal(u.host, "db.internal");
    assert_int_equal(u.port, 5432);
    assert_true(ms_uplink_url_parse("https://example.com?x=1", &u, why, sizeof why));
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/?x=1");
    assert_true(ms_uplink_url_parse("REDIS://cache:6380/0", &u, why, sizeof why));
    assert_string_equal(u.scheme, "redis");
    assert_int_equal(u.port, 6380);
    assert_true(ms_uplink_url_parse("neo4j://g", &u, why, sizeof why));
    assert_int_equal(u.port, 7687);
    assert_false(ms_uplink_url_parse("tcp://host", &u, why, sizeof why));
    assert_string_equal(why, "missing port");
    assert_false(ms_uplink_url_parse("ftp://host", &u, why, sizeof why));
    assert_false(ms_uplink_url_parse("localhost:5432", &u, why, sizeof why));
    free(u.scheme);
    free(u.host);
    free(u.path);
}

static void test_strutil(void **state)
{
    (void)state;
    uint64_t ms;
    assert_true(ms_parse_duration("250ms", &ms));
    assert_int_equal(ms, 250);
    assert_true(ms_parse_duration("1.5s", &ms));
    assert_int_equal(ms, 1500);
    assert_true(ms_parse_duration("2m", &ms));
    assert_int_equal(ms, 120000);
    assert_true(ms_parse_duration("0s", &ms));
    assert_false(ms_parse_duration("5", &ms));
    assert_false(ms_parse_duration("-1s", &ms));
    assert_false(ms_parse_duration("25h", &ms));
    assert_false(ms_parse_duration("1.s", &ms));
    assert_true(ms_valid_name("web-1_a"));
    assert_false(ms_valid_name("web 1"));
    assert_false(ms_valid_name(""));
    assert_false(ms_valid_name("caf\xc3\xa9"));
    static const char *const keys[] = { "command", "critical", "config", NULL };
    assert_string_equal(ms_nearest("comand", keys), "command");
    assert_string_equal(ms_nearest("CRITICAL", keys), "critical");
    assert_null(ms_nearest("zzzzzz", keys));
    assert_int_equal(ms_edit_distance("kitten", "sitting", 5), 3);
}

static void test_diags_sorted_and_bounded(void **state)
{
    (void)state;
    ms_diags d;
    ms_diags_init(&d, "f.toml");
    for (int i = 0; i < MS_DIAG_MAX + 5; i++)
        ms_diag_add(&d, MS_DIAG_MAX + 5 - i, 1, "problem %d", i);
    assert_int_equal(d.len, MS_DIAG_MAX);
    assert_int_equal(ms_diags_count(&d), MS_DIAG_MAX + 5);
    FILE *f = tmpfile();
    assert_non_null(f);
    ms_diags_print(&d, f);
    rewind(f);
    char line[128];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "f.toml:6:1: problem 199\n");
    fclose(f);
    ms_diags_free(&d);
}

static void test_healthcheck_protocols(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[base.ship]\n"
                          "healthcheck = { path = \"/up\", interval = \"1s\" }\n"
                          "[[fleet.data]]\nname = \"db\"\ncommand = \"postgres\"\nbind = \"0.0.0.0:5432\"\n"
                          "healthcheck = { protocol = \"postgres\", port = 5433 }\n"
                          "[[fleet.data]]\nname = \"cache\"\ncommand = \"redis-server\"\n"
                          "healthcheck = { protocol = \"redis\", address = \"unix:///run/redis.sock\" }\n"
                          "[[fleet.web]]\nname = \"app\"\ncommand = \"x\"\nbind = \"3000\"\n"
                          "[[fleet.workers]]\nname = \"q\"\ncommand = \"x\"\nhealthcheck = { protocol = \"tcp\", port = 9 }\n",
                          &d);
    assert_non_null(m);
    /* the entry's healthcheck replaces the base's as a whole */
    ms_health *h = &m->ships[0].health;
    assert_true(h->enabled);
    assert_int_equal(h->protocol, MS_HEALTH_POSTGRES);
    assert_null(h->path);
    assert_int_equal(h->interval_ms, 5000);
    assert_true(h->has_address);
    assert_string_equal(h->address.text, "tcp://0.0.0.0:5433"); /* the bind's host */
    h = &m->ships[1].health;
    assert_int_equal(h->protocol, MS_HEALTH_REDIS);
    assert_string_equal(h->address.text, "unix:///run/redis.sock");
    h = &m->ships[2].health; /* the base's */
    assert_true(h->enabled);
    assert_int_equal(h->protocol, MS_HEALTH_HTTP);
    assert_string_equal(h->path, "/up");
    assert_int_equal(h->interval_ms, 1000);
    assert_false(h->has_address);
    h = &m->ships[3].health; /* a worker: 127.0.0.1 */
    assert_int_equal(h->protocol, MS_HEALTH_TCP);
    assert_string_equal(h->address.text, "tcp://127.0.0.1:9");
    assert_string_equal(ms_health_protocol_name(MS_HEALTH_MYSQL), "mysql");
    ms_manifest_free(m);
    ms_diags_free(&d);

    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nbind = \"1\"\nhealthcheck = { protocol = \"http\" }\n",
                 5, 15, "ship \"a\": healthcheck: missing required key \"path\"");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nbind = \"1\"\nhealthcheck = { protocol = 5 }\n",
                 5, 28, "ship \"a\": \"protocol\" must be one of \"http\", \"tcp\", \"postgres\", \"mysql\", \"redis\", not an integer");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nhealthcheck = { protocol = \"redis\", address = \"udp://x:1\" }\n",
                 4, 47, "ship \"a\": healthcheck: invalid address \"udp://x:1\": unknown scheme (use tcp://host:port, host:port, port or unix:///path)");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nhealthcheck = { protocol = \"tcp\", port = 0 }\n",
                 4, 42, "ship \"a\": \"port\" must be from 1 to 65535, not 0");
}

/* The TLS keys as the data plane reads them from ms_bind and ms_global
 * (file contents are tls/'s to check: any readable file passes here). */
static void test_tls_keys(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[mothership]\nstate_dir = \"/var/lib/ms\"\n"
                          "[mothership.bind]\n"
                          "https = \"0.0.0.0:8443\"\n"
                          "dev = { address = \"127.0.0.1:9443\", tls = \"self-signed\", h2 = false }\n"
                          "own = { address = \"127.0.0.1:9444\", tls = { cert = \"/etc/passwd\", "
                          "key = \"/etc/passwd\", hosts = [\"Own.Example\"] } }\n"
                          "http = { address = \"0.0.0.0:8080\", h2c = true, redirect_to_https = true }\n"
                          "off = { address = \"127.0.0.1:9445\", tls = false }\n"
                          "[mothership.tls]\ncert = \"/etc/passwd\"\nkey = \"/etc/group\"\n"
                          "ticket_key_rotation = \"30m\"\n"
                          "[[mothership.tls.certs]]\ncert = \"/etc/group\"\nkey = \"/etc/passwd\"\n"
                          "hosts = [\"*.Example.com\", \"example.com\"]\n", &d);
    if (!m)
        for (size_t i = 0; i < d.len; i++)
            fprintf(stderr, "  %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_non_null(m);
    const ms_global *g = &m->global;
    assert_int_equal(g->nbinds, 5);
    const ms_bind *https = &g->binds[0], *dev = &g->binds[1], *own = &g->binds[2], *http = &g->binds[3],
                  *off = &g->binds[4];
    assert_true(https->tls && https->h2 && !https->self_signed && !https->h2c && !https->cert);
    assert_true(dev->tls && dev->self_signed && !dev->h2);
    assert_true(own->tls && own->h2 && own->cert);
    assert_string_equal(own->cert->cert, "/etc/passwd");
    assert_int_equal(own->cert->hosts.len, 1);
    assert_string_equal(own->cert->hosts.items[0], "own.example");
    assert_true(!http->tls && !http->h2 && http->h2c && http->redirect_to_https);
    assert_true(!off->tls && !off->h2 && !off->h2c);
    /* the default certificate first, then [[mothership.tls.certs]] */
    assert_int_equal(g->ntls_certs, 2);
    assert_string_equal(g->tls_certs[0].cert, "/etc/passwd");
    assert_string_equal(g->tls_certs[0].key, "/etc/group");
    assert_int_equal(g->tls_certs[0].hosts.len, 0);
    assert_string_equal(g->tls_certs[1].cert, "/etc/group");
    assert_int_equal(g->tls_certs[1].hosts.len, 2);
    assert_string_equal(g->tls_certs[1].hosts.items[0], "*.example.com");
    assert_true(g->tls_session_tickets);
    assert_int_equal(g->tls_ticket_rotation_ms, 30 * 60 * 1000);
    assert_string_equal(g->state_dir, "/var/lib/ms");
    ms_manifest_free(m);
    ms_diags_free(&d);

    /* defaults without [mothership.tls]; certificates only in the array */
    m = load("[mothership.tls]\n[[mothership.tls.certs]]\ncert = \"/etc/passwd\"\nkey = \"/etc/passwd\"\n", &d);
    assert_non_null(m);
    assert_null(m->global.tls_cert);
    assert_int_equal(m->global.ntls_certs, 1);
    assert_true(m->global.tls_session_tickets);
    assert_int_equal(m->global.tls_ticket_rotation_ms, 12 * 3600 * 1000);
    assert_null(m->global.state_dir);
    ms_manifest_free(m);
    ms_diags_free(&d);

    expect_error("[mothership.bind]\nweb = { address = \"127.0.0.1:8443\", tls = \"self-signd\" }\n", 2, 43,
                 "bind \"web\": \"tls\" must be true, false, \"self-signed\" or a table { cert, key, hosts } "
                 "or { acme = [names] }, not \"self-signd\"");
    /* tls = "acme": the two ways to write it */
    expect_error("[mothership.bind]\nweb = { address = \"127.0.0.1:8443\", tls = \"acme\" }\n", 2, 43,
                 "bind \"web\": \"tls\" must be true, false, \"self-signed\" or a table { cert, key, hosts } "
                 "or { acme = [names] }, not \"acme\" (tls = true serves every name of [mothership.acme]; "
                 "tls = { acme = [\"example.com\"] } only those)");
    expect_error("[mothership.bind]\nweb = { address = \"127.0.0.1:8443\", tls = { cert = \"/etc/passwd\" } }\n",
                 2, 43, "bind \"web\": missing required key \"key\"");
    expect_error("[mothership.bind]\nweb = { address = \"127.0.0.1:8443\", tls = { crt = \"a\", key = \"b\" } }\n",
                 2, 45, "bind \"web\": unknown key \"crt\" (did you mean \"cert\"?)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bay_handover_timeout),
        cmocka_unit_test(test_stop_signal),
        cmocka_unit_test(test_base_merge),
        cmocka_unit_test(test_routes_and_order),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_request_bodies),
        cmocka_unit_test(test_response_header_size),
        cmocka_unit_test(test_h2_limits),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_uplink_urls),
        cmocka_unit_test(test_strutil),
        cmocka_unit_test(test_diags_sorted_and_bounded),
        cmocka_unit_test(test_healthcheck_protocols),
        cmocka_unit_test(test_tls_keys),
    };
    return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
