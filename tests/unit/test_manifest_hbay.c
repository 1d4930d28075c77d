/* test_manifest_hbay.c: unit tests of [[bays.http]] and
 * [[mothership.upstreams]] in the manifest model: defaults, keys, ranges,
 * the keys of the other bay type, protocols, binds, file_roots, names
 * shared with ships and bays, and [base.bay] over both bay types. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "manifest_helpers.h"

#define HTTP_BIND "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\n"

static void test_http_bay_defaults(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load(HTTP_BIND "[[bays.http]]\nname = \"app\"\ncommand = \"python3\"\n"
                          "routes = [\"http:/.*\"]\n", &d);
    assert_non_null(m);
    assert_int_equal(m->nships, 1);
    const ms_ship *s = &m->ships[0];
    assert_int_equal(s->kind, MS_BAY);
    assert_string_equal(s->group, "http");
    assert_true(s->http_bay);
    assert_true(ms_ship_speaks_v3(s));
    assert_int_equal(s->bay_workers, 0);
    assert_int_equal(s->bay_threads, 4);
    assert_int_equal(s->request_timeout_ms, 60000);
    assert_int_equal(s->max_queue, 1024);
    assert_int_equal(s->file_roots.len, 0);
    assert_false(s->has_bind);
    assert_int_equal(s->nroutes, 1);
    assert_int_equal(s->routes[0].target, 0);
    assert_string_equal(ms_ship_kind_word(s), "bay");
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_http_bay_keys(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[[bays.http]]\nname = \"app\"\ncommand = \"x\"\nworkers = 3\nthreads = 16\n"
                          "request_timeout = \"1500ms\"\nmax_queue = 7\nconfig = { a = \"1\" }\n"
                          "[[bays.websocket]]\nname = \"ws\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    const ms_ship *s = &m->ships[0];
    assert_int_equal(s->bay_workers, 3);
    assert_int_equal(s->bay_threads, 16);
    assert_int_equal(s->request_timeout_ms, 1500);
    assert_int_equal(s->max_queue, 7);
    assert_string_equal(ms_strmap_get(&s->config, "a"), "1");
    assert_false(m->ships[1].http_bay);
    assert_false(ms_ship_speaks_v3(&m->ships[1]));
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_http_bay_errors(void **state)
{
    (void)state;
#define HB "[[bays.http]]\nname = \"app\"\ncommand = \"x\"\n"
    expect_error(HB "workers = 257\n", 4, 11, "bay \"app\": \"workers\" must be from 0 to 256, not 257");
    expect_error(HB "threads = 0\n", 4, 11, "bay \"app\": \"threads\" must be from 1 to 1024, not 0");
    expect_error(HB "threads = 1025\n", 4, 11, "bay \"app\": \"threads\" must be from 1 to 1024, not 1025");
    expect_error(HB "max_queue = 0\n", 4, 13, "bay \"app\": \"max_queue\" must be from 1 to 65536, not 0");
    expect_error(HB "request_timeout = \"0s\"\n", 4, 19, "bay \"app\": \"request_timeout\" must be more than 0");
    expect_error(HB "request_timeout = 5\n", 4, 19,
                 "bay \"app\": \"request_timeout\" must be a duration string like \"250ms\", \"5s\" or \"1m\", "
                 "not an integer");
    expect_error(HB "file_roots = \"public\"\n", 4, 14,
                 "bay \"app\": \"file_roots\" must be an array of strings, not a string");
    expect_error(HB "thread = 2\n", 4, 1, "bay \"app\": unknown key \"thread\" (did you mean \"threads\"?)");
    expect_error(HB "subprotocols = [\"chat\"]\n", 4, 1,
                 "bay \"app\": unknown key \"subprotocols\" (\"subprotocols\" is only for [[bays.websocket]])");
    expect_error(HB "bind = \"127.0.0.1:3000\"\n", 4, 1,
                 "bay \"app\": unknown key \"bind\" (\"bind\" is only for ships; a bay docks over the Unix "
                 "socket in MS_SOCKET_PATH)");
    expect_error("[[bays.websocket]]\nname = \"ws\"\ncommand = \"x\"\nthreads = 2\n", 4, 1,
                 "bay \"ws\": unknown key \"threads\" (\"threads\" is only for [[bays.http]])");
    expect_error("[[fleet.web]]\nname = \"a\"\ncommand = \"x\"\nmax_queue = 2\n", 4, 1,
                 "ship \"a\": unknown key \"max_queue\" (\"max_queue\" is only for [[bays.http]])");
    expect_error("[[bays.htp]]\nname = \"a\"\ncommand = \"x\"\n", 1, 8,
                 "unknown bay type \"htp\" (supported: websocket, http)");
    expect_error("[[bays.http]]\nname = \"a\"\n", 1, 1, "bay \"a\": missing required key \"command\"");
#undef HB
}

/* file_roots: resolved against the manifest's directory, must be
 * directories, kept as real paths. */
static void test_http_bay_file_roots(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ms-hbay-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/public", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    ms_diags d;
    ms_manifest *m = load_in("[[bays.http]]\nname = \"app\"\ncommand = \"x\"\n"
                             "file_roots = [\"public\", \"./public/../public\"]\n", dir, &d);
    assert_non_null(m);
    char *real = realpath(sub, NULL);
    assert_non_null(real);
    assert_int_equal(m->ships[0].file_roots.len, 2);
    assert_string_equal(m->ships[0].file_roots.items[0], real);
    assert_string_equal(m->ships[0].file_roots.items[1], real);
    free(real);
    ms_manifest_free(m);
    ms_diags_free(&d);

    const char *text = "[[bays.http]]\nname = \"app\"\ncommand = \"x\"\nfile_roots = [\"missing\"]\n";
    m = load_in(text, dir, &d);
    assert_null(m);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "bay \"app\": file_roots: \"%s/missing\" is not a directory", dir);
    assert_int_equal(d.len, 1);
    assert_string_equal(d.items[0].msg, want);
    ms_diags_free(&d);
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* [base.bay] may carry keys of both types; each bay keeps its own. */
static void test_base_bay_both_types(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load("[base.bay]\nthreads = 8\nsubprotocols = [\"chat\"]\nenv = { A = \"1\" }\n"
                          "[[bays.http]]\nname = \"h\"\ncommand = \"x\"\n"
                          "[[bays.websocket]]\nname = \"w\"\ncommand = \"x\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->ships[0].bay_threads, 8);
    assert_int_equal(m->ships[0].subprotocols.len, 0);
    assert_string_equal(ms_strmap_get(&m->ships[0].env, "A"), "1");
    assert_int_equal(m->ships[1].bay_threads, 4);
    assert_int_equal(m->ships[1].subprotocols.len, 1);
    ms_manifest_free(m);
    ms_diags_free(&d);
    expect_error("[base.bay]\nthreads = 0\n[[bays.http]]\nname = \"h\"\ncommand = \"x\"\n", 2, 11,
                 "[base.bay]: \"threads\" must be from 1 to 1024, not 0");
}

static void test_upstreams(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load(HTTP_BIND
                          "[[mothership.upstreams]]\nname = \"rack\"\nbind = \"unix:///run/rack.sock\"\n"
                          "routes = [\"http:/rack/.*\"]\ntags = [\"ext\"]\n"
                          "[[mothership.upstreams]]\nname = \"legacy\"\nbind = \"127.0.0.1:9000\"\n"
                          "protocol = \"http\"\nroutes = [{ bind = \"http\", pattern = \"/old/.*\", "
                          "strip_prefix = \"/old\" }]\n"
                          "[[mothership.upstreams]]\nname = \"tuned\"\nbind = \"unix://rel.sock\"\n"
                          "protocol = \"docking\"\nrequest_timeout = \"2s\"\nmax_queue = 3\n"
                          "[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ndepends_on = [\"rack\"]\n", &d);
    if (!m)
        for (size_t i = 0; i < d.len; i++)
            fprintf(stderr, "  got %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_non_null(m);
    assert_int_equal(m->nships, 4);
    const ms_ship *r = ms_manifest_find_ship(m, "rack");
    assert_non_null(r);
    assert_int_equal(r->kind, MS_UPSTREAM);
    assert_int_equal(r->upstream_protocol, MS_UPSTREAM_DOCKING);
    assert_true(r->http_bay);
    assert_true(ms_ship_speaks_v3(r));
    assert_null(r->command);
    assert_true(r->has_bind);
    assert_string_equal(r->bind.text, "unix:///run/rack.sock");
    assert_int_equal(r->request_timeout_ms, 60000);
    assert_int_equal(r->max_queue, 1024);
    assert_int_equal(r->nroutes, 1);
    assert_ptr_equal(&m->ships[r->routes[0].target], r);
    assert_int_equal(r->tags.len, 1);
    assert_string_equal(ms_ship_kind_word(r), "upstream");
    const ms_ship *l = ms_manifest_find_ship(m, "legacy");
    assert_non_null(l);
    assert_int_equal(l->kind, MS_UPSTREAM);
    assert_int_equal(l->upstream_protocol, MS_UPSTREAM_HTTP);
    assert_false(ms_ship_speaks_v3(l));
    assert_int_equal(l->bind.kind, MS_ADDR_TCP);
    assert_string_equal(l->routes[0].strip_prefix, "/old");
    const ms_ship *t = ms_manifest_find_ship(m, "tuned");
    assert_non_null(t);
    assert_string_equal(t->bind.path, "/nonexistent-dir/rel.sock");
    assert_int_equal(t->request_timeout_ms, 2000);
    assert_int_equal(t->max_queue, 3);
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_upstream_errors(void **state)
{
    (void)state;
#define UP "[[mothership.upstreams]]\nname = \"u\"\n"
    expect_error(UP "protocol = \"http\"\n", 1, 1,
                 "upstream \"u\": missing required key \"bind\" (where the app listens: \"unix:///path\" for "
                 "docking, or a TCP address for protocol = \"http\")");
    expect_error(UP "bind = \"127.0.0.1:9000\"\n", 3, 8,
                 "upstream \"u\": bind \"tcp://127.0.0.1:9000\": protocol \"docking\" links go over a Unix socket: "
                 "write bind = \"unix:///path/app.sock\" (or protocol = \"http\" for an HTTP server)");
    expect_error(UP "bind = \"unix:///a.sock\"\nprotocol = \"htp\"\n", 4, 12,
                 "upstream \"u\": unknown protocol \"htp\" (did you mean \"http\"?) (\"docking\" or \"http\")");
    expect_error(UP "bind = \"unix:///a.sock\"\nprotocol = \"http\"\nmax_queue = 4\n", 5, 1,
                 "upstream \"u\": \"max_queue\" is only for protocol = \"docking\" (an HTTP upstream is proxied "
                 "like a ship: see [mothership.http] upstream_timeout)");
    expect_error(UP "bind = \"unix:///a.sock\"\ncommand = \"x\"\n", 4, 1,
                 "upstream \"u\": unknown key \"command\" (an upstream is an app Mothership does not start or "
                 "supervise: it has no \"command\"; write a [[fleet.<group>]] ship or a [[bays.http]] bay for that)");
    expect_error(UP "bind = \"unix:///a.sock\"\nroute = []\n", 4, 1,
                 "upstream \"u\": unknown key \"route\" (did you mean \"routes\"?)");
    expect_error(UP "bind = \"unix:///a-{instance}.sock\"\n", 3, 8,
                 "upstream \"u\": bind \"unix:///a-{instance}.sock\": an upstream's address is written out whole "
                 "({instance}, {port} and {gen} are for ships with instances)");
    expect_error("[[mothership.upstreams]]\nbind = \"unix:///a.sock\"\n", 1, 1,
                 "upstream #1 in [[mothership.upstreams]]: missing required key \"name\"");
    expect_error("[mothership]\nupstreams = 3\n", 2, 1,
                 "mothership.upstreams must be an array of tables: write [[mothership.upstreams]]");
    /* one namespace for ships, bays and upstreams */
    expect_error("[[fleet.web]]\nname = \"app\"\ncommand = \"x\"\n"
                 UP "bind = \"unix:///a.sock\"\n[[bays.http]]\nname = \"u\"\ncommand = \"x\"\n", 8, 8,
                 "bay \"u\": the name is already used by the upstream at line 5 (names are unique across ships, "
                 "bays, upstreams and modules)");
    /* an upstream and a ship cannot both be at one address */
    expect_error(UP "bind = \"unix:///a.sock\"\n[[fleet.web]]\nname = \"w\"\ncommand = \"x\"\n"
                 "bind = \"unix:///a.sock\"\n", 7, 8,
                 "ship \"w\": address unix:///a.sock collides with upstream \"u\" (unix:///a.sock, line 3)");
    /* routes like a ship's */
    expect_error(UP "bind = \"unix:///a.sock\"\nroutes = [\"nope:/x\"]\n", 4, 11,
                 "upstream \"u\": route 1: bind \"nope\" is not defined (there is no [mothership.bind] table)");
#undef UP
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_bay_defaults),
        cmocka_unit_test(test_http_bay_keys),
        cmocka_unit_test(test_http_bay_errors),
        cmocka_unit_test(test_http_bay_file_roots),
        cmocka_unit_test(test_base_bay_both_types),
        cmocka_unit_test(test_upstreams),
        cmocka_unit_test(test_upstream_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
