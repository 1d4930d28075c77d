/* test_dataplane.c: the data plane's lifecycle with real worker threads and
 * listeners: a Unix listener that got descriptor 0 is closed and removed
 * like any other. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "http/dataplane.h"
#include "router/table.h"

/* ---- a manifest with one Unix bind, in a fresh directory */
typedef struct fixture {
    char dir[64];
    char sock[128];
    ms_manifest *m;
    ms_route_table *routes;
    uv_loop_t control;
} fixture;

static void fixture_open(fixture *f, unsigned workers)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/front.sock", f->dir);
    char text[1024];
    snprintf(text, sizeof text,
             "[mothership]\nworkers = %u\n"
             "[mothership.bind]\nhttp = \"unix://%s\"\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/app.sock\"\n"
             "routes = [\"http:/.*\"]\n",
             workers, f->sock, f->dir);
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    f->m = ms_manifest_load_buffer(text, strlen(text), "test.toml", f->dir, &d);
    if (!f->m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(f->m);
    f->routes = ms_route_table_build(f->m);
    assert_non_null(f->routes);
    assert_int_equal(uv_loop_init(&f->control), 0);
}

static void fixture_close(fixture *f)
{
    assert_int_equal(uv_loop_close(&f->control), 0);
    ms_route_table_free(f->routes);
    ms_manifest_free(f->m);
    unlink(f->sock);
    rmdir(f->dir);
}

static void on_stopped(void *arg)
{
    *(bool *)arg = true;
}

/* With stdin closed, the Unix listener is descriptor 0: it is still closed
 * and its socket file removed when the data plane is freed. */
static void test_unix_listener_on_descriptor_0(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 1);
    close(0);
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 1 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    struct stat st;
    assert_int_equal(fstat(0, &st), 0);
    assert_true(S_ISSOCK(st.st_mode)); /* the listening socket took the lowest free descriptor */
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    ms_dataplane_free(dp);
    errno = 0;
    assert_int_equal(fcntl(0, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(lstat(f.sock, &st), -1);
    fixture_close(&f);
}

int main(void)
{
    if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0) /* the last test closes stdin itself */
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_listener_on_descriptor_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
