/* test_fleet_reload.c: a fleet taking new manifests (ms_fleet_prepare and
 * ms_fleet_commit) keeps what it holds bounded: a thousand reloads of an
 * unchanged entry leave the heap where a hundred left it. The entry is not
 * selected, so no process is started. */
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "fleet/fleet.h"
#include "fleet/logs.h"

static ms_manifest *load(const char *dir)
{
    char text[512];
    snprintf(text, sizeof text, "[mothership]\nsocket_dir = \"%s\"\n[[fleet.web]]\nname = \"a\"\ncommand = \"sleep\"\n"
             "args = [\"100\"]\n", dir);
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "test.toml", dir, &d);
    if (!m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

static void reload(ms_fleet *f, const char *dir)
{
    ms_manifest *m = load(dir);
    bool selected[1] = { false };
    ms_fleet_change changes[1] = { { .old = 0, .restart = false } };
    char why[256] = "";
    ms_fleet_next *nx = ms_fleet_prepare(f, m, selected, changes, why, sizeof why);
    if (!nx)
        fail_msg("prepare: %s", why);
    ms_fleet_commit(nx);
    ms_manifest_free(m); /* the fleet holds its own reference */
}

static void test_reloads_keep_the_heap_bounded(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-fr-XXXXXX");
    assert_non_null(mkdtemp(dir));
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    ms_log *log = ms_log_open(null, true, false);
    assert_non_null(log);
    ms_manifest *m = load(dir);
    bool selected[1] = { false };
    char why[256] = "";
    ms_fleet *f = ms_fleet_new(&loop, m, selected, log, why, sizeof why);
    if (!f)
        fail_msg("fleet: %s", why);
    ms_fleet_start(f, NULL, NULL);
    reload(f, dir);
    ms_manifest_free(m); /* as `run` does: the first commit took a reference on it */
    for (int i = 0; i < 100; i++)
        reload(f, dir);
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 1000; i++)
        reload(f, dir);
    size_t after = mallinfo2().uordblks;
    /* a leak of even 16 bytes a reload would show as 16000 */
    assert_true(after < before + 8192);
    ms_fleet_shutdown(f, 0, "test");
    uv_run(&loop, UV_RUN_DEFAULT); /* the fleet closes its handles once it is done */
    assert_int_equal(uv_loop_close(&loop), 0);
    ms_fleet_free(f);
    ms_log_close(log);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reloads_keep_the_heap_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
