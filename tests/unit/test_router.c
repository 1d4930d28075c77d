/* test_router.c: unit tests of the routing table: whole-path matching,
 * manifest order, static dir order and bind restriction, prefix coverage,
 * modules that apply, shadowed routes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "router/table.h"

static const char manifest_text[] =
    "[mothership.bind]\nhttp = \"8080\"\nadmin = \"8081\"\n"
    "[[mothership.static_dirs]]\npath = \"/tmp\"\nprefix = \"/\"\nbind = \"http\"\n"
    "[[mothership.static_dirs]]\npath = \"/tmp\"\nprefix = \"/assets/img\"\n"
    "[[mothership.static_dirs]]\npath = \"/tmp\"\nprefix = \"/assets\"\n"
    "[[fleet.web]]\nname = \"api\"\ncommand = \"x\"\nbind = \"3001\"\n"
    "routes = [\"http:/api/v[0-9]+/.*\", \"admin:/.*\"]\n"
    "[[fleet.web]]\nname = \"app\"\ncommand = \"x\"\nbind = \"3002\"\n"
    "routes = [\"http:/.*\", \"http:/late/.*\"]\n"
    "[[modules]]\nname = \"auth\"\nwasm = \"/tmp/ms-test-router.wasm\"\nroutes = [\"/api/.*\"]\n";

static const char *match(ms_route_table *t, size_t bind, const char *path)
{
    const ms_rt_route *r = ms_route_match(t, bind, path, strlen(path), NULL);
    return r ? r->target->name : NULL;
}

static void test_table(void **state)
{
    (void)state;
    ms_diags d;
    FILE *f = fopen("/tmp/ms-test-router.wasm", "w");
    assert_non_null(f);
    fclose(f);
    ms_diags_init(&d, "t.toml");
    ms_manifest *m = ms_manifest_load_buffer(manifest_text, strlen(manifest_text), "t.toml", "/", &d);
    if (!m)
        ms_diags_print(&d, stderr);
    assert_non_null(m);
    ms_route_table *t = ms_route_table_build(m);
    assert_non_null(t);
    assert_int_equal(t->nbinds, 2);
    /* statics: longest prefix first; the bind-restricted "/" only on http */
    assert_int_equal(t->binds[0].nstatics, 3);
    assert_string_equal(t->binds[0].statics[0]->prefix, "/assets/img");
    assert_string_equal(t->binds[0].statics[1]->prefix, "/assets");
    assert_string_equal(t->binds[0].statics[2]->prefix, "/");
    assert_int_equal(t->binds[1].nstatics, 2);
    /* whole-path matching, manifest order */
    assert_string_equal(match(t, 0, "/api/v2/users"), "api");
    assert_string_equal(match(t, 0, "/api/vx/users"), "app");
    assert_string_equal(match(t, 0, "/"), "app");
    assert_string_equal(match(t, 1, "/anything"), "api");
    assert_null(match(t, 1, ""));
    assert_null(match(t, 5, "/"));
    /* modules: the /.* route may meet /api/ paths, so auth may apply */
    assert_int_equal(t->binds[0].routes[0].nmodules, 1);
    assert_true(ms_module_applies(t, 0, "/api/x", 6, NULL));
    assert_false(ms_module_applies(t, 0, "/apix", 5, NULL));
    /* /late/.* comes after /.*: shadowed */
    assert_int_equal(t->binds[0].nroutes, 3);
    assert_null(t->binds[0].routes[0].shadowed_by);
    assert_null(t->binds[0].routes[1].shadowed_by);
    assert_ptr_equal(t->binds[0].routes[2].shadowed_by, &t->binds[0].routes[1]);
    assert_true(t->binds[0].catch_all);
    ms_route_table_free(t);
    ms_manifest_free(m);
    ms_diags_free(&d);
    remove("/tmp/ms-test-router.wasm");
}

static void test_prefix_covers(void **state)
{
    (void)state;
    assert_true(ms_static_prefix_covers("/", "/x", 2));
    assert_true(ms_static_prefix_covers("/assets", "/assets", 7));
    assert_true(ms_static_prefix_covers("/assets", "/assets/a.css", 13));
    assert_true(ms_static_prefix_covers("/assets/", "/assets/a.css", 13));
    assert_false(ms_static_prefix_covers("/assets", "/assetsx", 8));
    assert_false(ms_static_prefix_covers("/assets", "/asset", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_prefix_covers),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
