/* test_manifest_instances.c: unit tests of replicas in the manifest:
 * `instances = N` expanded into web#0 .. web#N-1, the templates of bind,
 * bind_alt and healthcheck address, route targets, depends_on naming every
 * instance, ms_ship_expand, the replica keys and their errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "manifest_helpers.h"
#include "util/strutil.h"

static ms_manifest *load_ok(const char *text)
{
    ms_diags d;
    ms_manifest *m = load(text, &d);
    if (!m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

#define BINDS "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\n\n"
#define WEB3 "[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nbind = \"tcp://127.0.0.1:{port}\"\nport = 3000\n" \
             "instances = 3\nroutes = [\"http:/.*\"]\nargs = [\"--port\", \"{port}\"]\n"

static void test_expansion(void **state)
{
    (void)state;
    ms_manifest *m = load_ok(BINDS "[[fleet.db]]\nname = \"db\"\ncommand = \"x\"\n\n" WEB3
                             "depends_on = [\"db\"]\n\n"
                             "[[fleet.w]]\nname = \"after\"\ncommand = \"x\"\ndepends_on = [\"web\", \"db\"]\n"
                             "[[fleet.w]]\nname = \"one\"\ncommand = \"x\"\ndepends_on = [\"web#1\"]\n");
    assert_int_equal(m->nships, 6);
    const char *names[] = { "db", "web#0", "web#1", "web#2", "after", "one" };
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(m->ships[i].name, names[i]);
    assert_null(m->ships[0].base);
    assert_string_equal(ms_ship_base(&m->ships[0]), "db");
    for (unsigned i = 0; i < 3; i++) {
        ms_ship *s = &m->ships[1 + i];
        char want[64];
        assert_string_equal(s->base, "web");
        assert_string_equal(ms_ship_base(s), "web");
        assert_int_equal(s->instance, i);
        assert_int_equal(s->instances, 3);
        assert_int_equal(s->port, 3000);
        assert_true(s->has_bind);
        snprintf(want, sizeof want, "tcp://127.0.0.1:%u", 3000 + i);
        assert_string_equal(s->bind.text, want);
        assert_true(s->has_bind_alt);
        snprintf(want, sizeof want, "tcp://127.0.0.1:%u", 3003 + i);
        assert_string_equal(s->bind_alt.text, want);
        assert_int_equal(s->args.len, 2);
        assert_string_equal(s->args.items[1], "{port}"); /* templated at spawn */
        assert_int_equal(s->depends_on.len, 1);
        assert_string_equal(s->depends_on.items[0], "db");
        assert_int_equal(s->drain_timeout_ms, 30000);
        assert_int_equal(s->balance, MS_BALANCE_ROUND_ROBIN);
        /* the routes live on instance 0 and name every instance */
        assert_int_equal(s->nroutes, i == 0 ? 1 : 0);
    }
    assert_int_equal(m->ships[1].routes[0].target, 1);
    assert_int_equal(m->ships[1].routes[0].ntargets, 3);
    ms_ship *after = &m->ships[4];
    assert_int_equal(after->depends_on.len, 4);
    assert_string_equal(after->depends_on.items[0], "web#0");
    assert_string_equal(after->depends_on.items[1], "web#1");
    assert_string_equal(after->depends_on.items[2], "web#2");
    assert_string_equal(after->depends_on.items[3], "db");
    assert_int_equal(after->depends_pos[2].line, after->depends_pos[0].line);
    assert_int_equal(m->ships[5].depends_on.len, 1);
    assert_string_equal(m->ships[5].depends_on.items[0], "web#1");
    assert_int_equal(m->ships[0].nroutes, 0);
    assert_false(m->ships[0].has_bind_alt);
    assert_non_null(ms_manifest_find_ship(m, "web#2"));
    assert_null(ms_manifest_find_ship(m, "web"));
    ms_manifest_free(m);
}

/* Unix sockets per instance, {gen} for one instance, keys from a base
 * template, a healthcheck address per instance. */
static void test_templates(void **state)
{
    (void)state;
    ms_manifest *m = load_ok("[base.ship]\nbalance = \"least_conn\"\ndrain_timeout = \"5s\"\n\n"
                             "[[fleet.web]]\nname = \"api\"\ncommand = \"x\"\ninstances = 2\n"
                             "bind = \"unix:///tmp/api-{instance}.sock\"\n"
                             "[[fleet.web]]\nname = \"one\"\ncommand = \"x\"\nbind = \"unix:///tmp/one-{gen}.sock\"\n"
                             "[[fleet.web]]\nname = \"hc\"\ncommand = \"x\"\ninstances = 2\nport = 4000\n"
                             "bind = \"127.0.0.1:{port}\"\n"
                             "healthcheck = { protocol = \"tcp\", address = \"127.0.0.1:{port}\" }\n"
                             "[[bays.websocket]]\nname = \"chat\"\ncommand = \"x\"\nhandover_timeout = \"10s\"\n");
    assert_int_equal(m->nships, 6);
    assert_string_equal(m->ships[0].name, "api#0");
    assert_string_equal(m->ships[0].bind.path, "/tmp/api-0.sock");
    assert_string_equal(m->ships[1].bind.path, "/tmp/api-1.sock");
    assert_false(m->ships[0].has_bind_alt); /* no {port} or {gen}: a roll stops the old one first */
    assert_int_equal(m->ships[1].balance, MS_BALANCE_LEAST_CONN);
    assert_int_equal(m->ships[1].drain_timeout_ms, 5000);
    ms_ship *one = &m->ships[2];
    assert_string_equal(one->name, "one");
    assert_null(one->base);
    assert_int_equal(one->instances, 1);
    assert_string_equal(one->bind.path, "/tmp/one-0.sock");
    assert_true(one->has_bind_alt);
    assert_string_equal(one->bind_alt.path, "/tmp/one-1.sock");
    assert_string_equal(m->ships[3].health.address.text, "tcp://127.0.0.1:4000");
    assert_string_equal(m->ships[4].health.address.text, "tcp://127.0.0.1:4001");
    assert_string_equal(m->ships[4].health.address_template, "127.0.0.1:{port}");
    assert_true(m->ships[4].health.has_address_alt);
    assert_string_equal(m->ships[4].health.address_alt.text, "tcp://127.0.0.1:4003");
    assert_string_equal(m->ships[4].bind_alt.text, "tcp://127.0.0.1:4003");
    assert_string_equal(m->ships[5].name, "chat");
    assert_int_equal(m->ships[5].handover_timeout_ms, 10000);
    assert_int_equal(m->ships[5].drain_timeout_ms, 30000);
    ms_manifest_free(m);
}

static void test_ship_expand(void **state)
{
    (void)state;
    ms_manifest *m = load_ok(BINDS WEB3 "[[fleet.w]]\nname = \"plain\"\ncommand = \"x\"\n"
                             "[[fleet.w]]\nname = \"p\"\ncommand = \"x\"\nport = 5000\n"
                             "[[fleet.w]]\nname = \"u\"\ncommand = \"x\"\nbind = \"unix:///t/u-{instance}.sock\"\n");
    const char *text = "a{instance}-{port}-{gen}-{other}{port";
    struct { size_t ship; unsigned parity; const char *want; } cases[] = {
        { 0, 0, "a0-3000-0-{other}{port" },
        { 2, 0, "a2-3002-0-{other}{port" },
        { 2, 1, "a2-3005-1-{other}{port" },
        { 3, 0, "a{instance}-{port}-{gen}-{other}{port" }, /* not templated: as written */
        { 4, 0, "a0-5000-0-{other}{port" },
        { 4, 1, "a0-5001-1-{other}{port" },
        { 5, 0, "a0-{port}-0-{other}{port" }, /* its bind names {instance}: so may its args */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = ms_ship_expand(&m->ships[cases[i].ship], text, cases[i].parity);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    char *empty = ms_ship_expand(&m->ships[0], "", 1);
    assert_string_equal(empty, "");
    free(empty);
    ms_manifest_free(m);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\n", 4, 13,
                 "ship \"web\": instances = 2 needs a \"bind\": each instance listens at its own address "
                 "(bind = \"tcp://127.0.0.1:{port}\" with port = 3000, or \"unix:///run/app-{instance}.sock\")");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nbind = \"127.0.0.1:3000\"\n", 5, 8,
                 "ship \"web\": bind \"tcp://127.0.0.1:3000\" is the same for all 2 instances: put {port} "
                 "(port + instance) or {instance} in it");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nbind = \"unix:///t/a-{gen}.sock\"\n",
                 5, 8, "ship \"web\": bind \"unix:///t/a-{gen}.sock\" is the same for all 2 instances: put {port} "
                 "(port + instance) or {instance} in it");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nbind = \"127.0.0.1:{port}\"\n", 4, 8,
                 "ship \"web\": bind \"127.0.0.1:{port}\" uses {port} but the ship has no \"port\" "
                 "(add port = 3000: {port} is port + instance)");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nbind = \"127.0.0.1:{prot}\"\nport = 1\n", 4, 8,
                 "ship \"web\": bind \"127.0.0.1:{prot}\": unknown placeholder \"{prot}\" (use {instance}, {port} "
                 "or {gen})");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 65\n", 4, 13,
                 "ship \"web\": \"instances\" must be from 1 to 64, not 65");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nport = 65530\ninstances = 4\n"
                 "bind = \"127.0.0.1:{port}\"\n", 4, 8,
                 "ship \"web\": port 65530 with 4 instances goes past 65535 (instance i listens at port + i, its "
                 "replacement at port + i + 4)");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nbalance = \"least_con\"\n", 4, 11,
                 "ship \"web\": unknown balance \"least_con\" (did you mean \"least_conn\"?) (round_robin or least_conn)");
    expect_error("[[fleet.web]]\nname = \"web#1\"\ncommand = \"x\"\n", 2, 8,
                 "ship \"web#1\": names must be 1 to 64 ASCII letters, digits, '-' or '_' ('#' is reserved: "
                 "\"web#1\" names instance 1 of a ship with instances)");
    expect_error("[[fleet.web]]\nname = \"job\"\ncommand = \"x\"\noneshot = true\ninstances = 2\n", 5, 1,
                 "ship \"job\": a oneshot job cannot have \"instances\" (it runs once and serves nothing)");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nport = 3000\n"
                 "bind = \"127.0.0.1:{port}\"\nhealthcheck = { protocol = \"tcp\", port = 9000 }\n", 7, 15,
                 "ship \"web\": healthcheck: \"port\" 9000 is the same for all 2 instances: use address = "
                 "\"tcp://127.0.0.1:{port}\" (or leave both out to check each instance's bind)");
    expect_error("[[fleet.web]]\nname = \"job\"\ncommand = \"x\"\noneshot = true\nbind = \"127.0.0.1:{port}\"\n", 5, 8,
                 "ship \"job\": bind \"127.0.0.1:{port}\" uses {port} but the ship has no \"port\" "
                 "(add port = 3000: {port} is port + instance)");
    expect_error("[[bays.websocket]]\nname = \"chat\"\ncommand = \"x\"\ninstances = 2\n", 4, 1,
                 "bay \"chat\": unknown key \"instances\" (\"instances\" is only for ships)");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nhandover_timeout = \"1s\"\n", 4, 1,
                 "ship \"web\": unknown key \"handover_timeout\" (\"handover_timeout\" is only for bays)");
    /* names: the ship's name is taken whole */
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nport = 3000\n"
                 "bind = \"127.0.0.1:{port}\"\n[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\n", 8, 8,
                 "ship \"web\": the name is already used by the ship at line 2 (names are unique across ships, "
                 "bays, upstreams and modules)");
    /* depends_on */
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nport = 3000\n"
                 "bind = \"127.0.0.1:{port}\"\ndepends_on = [\"web\"]\n", 7, 15, "ship \"web\": depends on itself");
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nport = 3000\n"
                 "bind = \"127.0.0.1:{port}\"\n[[fleet.w]]\nname = \"a\"\ncommand = \"x\"\ndepends_on = [\"web#2\"]\n",
                 10, 15, "ship \"a\": depends_on \"web#2\", but ship \"web\" has 2 instances (web#0 to web#1)");
    /* a cycle through a ship with instances is said once */
    ms_diags d;
    ms_manifest *m = load("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\nbind = \"127.0.0.1:{port}\"\nport = 3000\n"
                          "instances = 3\ndepends_on = [\"api\"]\n[[fleet.w]]\nname = \"api\"\ncommand = \"x\"\n"
                          "depends_on = [\"web\"]\n", &d);
    assert_null(m);
    if (d.len != 1)
        ms_diags_print(&d, stderr);
    assert_int_equal(d.len, 1);
    assert_int_equal(d.items[0].line, 11);
    assert_string_equal(d.items[0].msg, "ship \"api\": dependency cycle: web -> api -> web");
    ms_diags_free(&d);
    /* every instance's address, and its replacement's, against every listener */
    expect_error("[[fleet.web]]\nname = \"web\"\ncommand = \"x\"\ninstances = 2\nport = 3000\n"
                 "bind = \"127.0.0.1:{port}\"\n[[fleet.w]]\nname = \"db\"\ncommand = \"x\"\nbind = \"127.0.0.1:3003\"\n",
                 10, 8, "ship \"db\": address tcp://127.0.0.1:3003 collides with ship \"web#1\" (its replacement's "
                 "address) (tcp://127.0.0.1:3003, line 6)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_ship_expand),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
