/* test_dataplane.c: the data plane's lifecycle with real worker threads and
 * listeners: a worker thread that cannot start makes ms_dataplane_start fail
 * with nothing left behind (threads joined, listeners closed, the Unix
 * socket removed, the control loop untouched), a Unix listener that got
 * descriptor 0 is closed and removed like any other, and a reload on an
 * inline worker: the next request on a kept-alive connection sees the new
 * routes, a request in flight finishes on the old ones, and the counters
 * of a label set go on across it; a drain closes the listeners; a burst of
 * connections is accepted 64 per turn of the loop, and a connection whose
 * allocation failed is accepted at the next turn; ACME http-01 challenges
 * on a plain bind are answered from the board before static files, a
 * catch-all route and redirect_to_https, and the path is not special
 * without a board; a connection whose handshake answered a tls-alpn-01
 * challenge serves nothing else. uv_thread_create and
 * calloc are wrapped at link time (-Wl,--wrap) so that calls can be made
 * to fail. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "acme/board.h"
#include "http/dataplane.h"
#include "http/http_impl.h"
#include "router/table.h"
#include "tls/tls.h"
#include "cert_helpers.h"

/* ---- uv_thread_create, failing on call number fail_on (1-based; 0: never) */
int __real_uv_thread_create(uv_thread_t *tid, uv_thread_cb entry, void *arg);
int __wrap_uv_thread_create(uv_thread_t *tid, uv_thread_cb entry, void *arg);
int __real_uv_thread_join(uv_thread_t *tid);
int __wrap_uv_thread_join(uv_thread_t *tid);

static unsigned creates, fail_on, joins;

/* ---- calloc of the data plane's code, failing the next fail_callocs calls */
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

static unsigned fail_callocs;

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_callocs > 0) {
        fail_callocs--;
        return NULL;
    }
    return __real_calloc(n, size);
}

int __wrap_uv_thread_create(uv_thread_t *tid, uv_thread_cb entry, void *arg)
{
    if (++creates == fail_on)
        return UV_EAGAIN;
    return __real_uv_thread_create(tid, entry, arg);
}

int __wrap_uv_thread_join(uv_thread_t *tid)
{
    joins++;
    return __real_uv_thread_join(tid);
}

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

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void on_stopped(void *arg)
{
    *(bool *)arg = true;
}

/* The second of three worker threads cannot start: the start fails with a
 * reason, the first thread is stopped and joined, and every listener of
 * every worker is closed, so nothing accepts connections nobody serves. */
static void test_worker_thread_failure_fails_the_start(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 3);
    int fds_before = open_fds();
    creates = joins = 0;
    fail_on = 2;
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 3 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    fail_on = 0;
    assert_null(dp);
    assert_non_null(strstr(why, "cannot start worker thread 2 of 3"));
    assert_int_equal(creates, 2);
    assert_int_equal(joins, 1);
    assert_int_equal(open_fds(), fds_before);
    struct stat st;
    assert_int_equal(lstat(f.sock, &st), -1); /* the Unix socket is gone with its listener */
    assert_int_equal(uv_loop_alive(&f.control), 0);
    fixture_close(&f);
}

/* When every thread starts, a stop joins them all and calls back once. */
static void test_start_and_stop(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 2);
    int fds_before = open_fds();
    creates = joins = 0;
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 2 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    f.routes = NULL; /* the data plane's now */
    assert_int_equal(creates, 2);
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    assert_int_equal(joins, 2);
    ms_dataplane_free(dp);
    assert_int_equal(open_fds(), fds_before);
    struct stat st;
    assert_int_equal(lstat(f.sock, &st), -1);
    fixture_close(&f);
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
    f.routes = NULL; /* the data plane's now */
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

/* The abandoned-response and tunnel series are rendered, at zero, for a
 * route to a ship, and not for requests that matched nothing. */
static void test_traffic_series_for_routes_to_ships(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 1);
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 1 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    f.routes = NULL; /* the data plane's now */
    ms_buf out;
    ms_buf_init(&out, 0);
    ms_dataplane_render_metrics(dp, &out);
    assert_false(ms_buf_failed(&out));
    const char *text = out.data;
    static const char *const want[] = {
        "# TYPE mothership_responses_abandoned_total counter\n",
        "mothership_responses_abandoned_total{bind=\"http\",route=\"/.*\",target=\"app\",code=\"2xx\"} 0\n",
        "mothership_tunnel_bytes_total{bind=\"http\",route=\"/.*\",target=\"app\",direction=\"client_to_ship\"} 0\n",
        "mothership_tunnel_bytes_total{bind=\"http\",route=\"/.*\",target=\"app\",direction=\"ship_to_client\"} 0\n",
        "mothership_tunnels_closed_total{bind=\"http\",route=\"/.*\",target=\"app\"} 0\n",
        "mothership_tunnel_seconds_total{bind=\"http\",route=\"/.*\",target=\"app\"} 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("missing: %s", want[i]);
    assert_null(strstr(text, "mothership_responses_abandoned_total{bind=\"http\",route=\"\",target=\"none\""));
    assert_null(strstr(text, "mothership_tunnels_closed_total{bind=\"http\",route=\"\",target=\"none\""));
    ms_buf_free(&out);
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    ms_dataplane_free(dp);
    fixture_close(&f);
}


static ms_manifest *load_text(const char *text, const char *dir);

static bool unix_accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    bool ok = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
    close(fd);
    return ok;
}

/* Binds by name on running workers: an added one listens as soon as the
 * reload returns, a removed one is closed and its socket file removed, a
 * kept one is not touched; a bind that cannot be opened fails the reload
 * and nothing changes. */
static void test_reload_adds_and_removes_binds(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 2);
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 2 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    f.routes = NULL; /* the data plane's now */
    assert_true(unix_accepts(f.sock));
    char admin[160], text[1024], blocker[160];
    snprintf(admin, sizeof admin, "%s/admin.sock", f.dir);
    snprintf(blocker, sizeof blocker, "%s/file", f.dir);
    /* a bind on a path that is a plain file: refused, nothing changes */
    FILE *fp = fopen(blocker, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(text, sizeof text,
             "[mothership]\nworkers = 2\n[mothership.bind]\nhttp = \"unix://%s\"\nbad = \"unix://%s\"\n", f.sock,
             blocker);
    ms_manifest *m = load_text(text, f.dir);
    ms_route_table *rt = ms_route_table_build(m);
    ms_dp_config bad = { .m = m, .routes = rt, .workers = 2 };
    assert_false(ms_dataplane_reload(dp, &bad, why, sizeof why));
    assert_non_null(strstr(why, "bind \"bad\""));
    ms_route_table_free(rt);
    ms_manifest_free(m);
    assert_true(unix_accepts(f.sock));
    /* one added */
    snprintf(text, sizeof text,
             "[mothership]\nworkers = 2\n[mothership.bind]\nhttp = \"unix://%s\"\nadmin = \"unix://%s\"\n", f.sock,
             admin);
    m = load_text(text, f.dir);
    rt = ms_route_table_build(m);
    ms_dp_config two = { .m = m, .routes = rt, .workers = 2 };
    assert_true(ms_dataplane_reload(dp, &two, why, sizeof why));
    ms_manifest_free(m);
    assert_true(unix_accepts(admin));
    assert_true(unix_accepts(f.sock));
    /* the first removed */
    snprintf(text, sizeof text, "[mothership]\nworkers = 2\n[mothership.bind]\nadmin = \"unix://%s\"\n", admin);
    m = load_text(text, f.dir);
    rt = ms_route_table_build(m);
    ms_dp_config one = { .m = m, .routes = rt, .workers = 2 };
    assert_true(ms_dataplane_reload(dp, &one, why, sizeof why));
    ms_manifest_free(m);
    struct stat st;
    assert_int_equal(lstat(f.sock, &st), -1);
    assert_true(unix_accepts(admin));
    for (int i = 0; i < 50; i++)
        uv_run(&f.control, UV_RUN_NOWAIT); /* older generations given back are freed here */
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    ms_dataplane_free(dp);
    assert_int_equal(lstat(admin, &st), -1);
    unlink(blocker);
    fixture_close(&f);
}

/* A reload that renames a Unix bind (same path) and adds one that cannot
 * be opened is refused, and the bind that was running still takes
 * connections at its path; the same rename alone goes through with no
 * moment where the path refuses connections. */
static void test_refused_reload_keeps_a_renamed_unix_bind(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 2);
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 2 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    f.routes = NULL; /* the data plane's now */
    char blocker[160], text[1024];
    snprintf(blocker, sizeof blocker, "%s/file", f.dir);
    FILE *fp = fopen(blocker, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(text, sizeof text,
             "[mothership]\nworkers = 2\n[mothership.bind]\nfront = \"unix://%s\"\nbad = \"unix://%s\"\n", f.sock,
             blocker);
    ms_manifest *m = load_text(text, f.dir);
    ms_route_table *rt = ms_route_table_build(m);
    ms_dp_config bad = { .m = m, .routes = rt, .workers = 2 };
    assert_false(ms_dataplane_reload(dp, &bad, why, sizeof why));
    ms_route_table_free(rt);
    ms_manifest_free(m);
    assert_true(unix_accepts(f.sock));
    snprintf(text, sizeof text, "[mothership]\nworkers = 2\n[mothership.bind]\nfront = \"unix://%s\"\n", f.sock);
    m = load_text(text, f.dir);
    rt = ms_route_table_build(m);
    ms_dp_config renamed = { .m = m, .routes = rt, .workers = 2 };
    assert_true(ms_dataplane_reload(dp, &renamed, why, sizeof why));
    ms_manifest_free(m);
    for (int i = 0; i < 50; i++) {
        assert_true(unix_accepts(f.sock));
        uv_run(&f.control, UV_RUN_NOWAIT);
    }
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    ms_dataplane_free(dp);
    unlink(blocker);
    fixture_close(&f);
}

/* A drain closes every listener (the Unix socket file is removed), calls
 * back once no connection is left, and leaves the workers running until
 * the stop. */
static void test_drain_closes_the_listeners(void **state)
{
    (void)state;
    fixture f;
    fixture_open(&f, 2);
    ms_dp_config cfg = { .m = f.m, .routes = f.routes, .workers = 2 };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(&f.control, &cfg, why, sizeof why);
    assert_non_null(dp);
    f.routes = NULL; /* the data plane's now */
    assert_true(unix_accepts(f.sock));
    bool drained = false;
    ms_dataplane_drain(dp, 5000, on_stopped, &drained);
    for (int i = 0; i < 100000 && !drained; i++)
        uv_run(&f.control, UV_RUN_ONCE);
    assert_true(drained);
    assert_false(unix_accepts(f.sock));
    struct stat st;
    assert_int_equal(lstat(f.sock, &st), -1);
    bool stopped = false;
    ms_dataplane_stop(dp, 1000, on_stopped, &stopped);
    uv_run(&f.control, UV_RUN_DEFAULT);
    assert_true(stopped);
    ms_dataplane_free(dp);
    fixture_close(&f);
}

/* ---- an inline worker and a client on a socketpair */
static ms_manifest *load_text(const char *text, const char *dir)
{
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "test.toml", dir, &d);
    if (!m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

/* A manifest whose bind "http" routes pattern (or nothing: NULL) to ship app. */
static ms_manifest *routes_manifest(const char *dir, const char *pattern)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[mothership.bind]\nhttp = \"unix://%s/front.sock\"\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/app.sock\"\n%s%s%s",
             dir, dir, pattern ? "routes = [\"http:" : "", pattern ? pattern : "", pattern ? "\"]\n" : "");
    return load_text(text, dir);
}

static bool reload_to(ms_dataplane *dp, ms_manifest *m)
{
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    bool ok = ms_dataplane_reload(dp, &cfg, why, sizeof why);
    if (!ok) {
        ms_route_table_free(rt);
        fail_msg("reload: %s", why);
    }
    ms_manifest_free(m); /* the data plane holds its own reference */
    return ok;
}

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

/* Runs the worker's loop until a whole response head has arrived on fd;
 * returns its status code. */
static int read_status(ms_dataplane *dp, int fd)
{
    char buf[8192];
    size_t len = 0;
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    for (int round = 0; round < 100000; round++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r > 0)
            len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + body) {
                int status = atoi(buf + 9);
                assert_true(strncmp(buf, "HTTP/1.1 ", 9) == 0);
                return status;
            }
        }
    }
    fail_msg("no response");
    return -1;
}

static uint64_t metric(ms_dataplane *dp, const char *series)
{
    ms_buf out;
    ms_buf_init(&out, 0);
    ms_dataplane_render_metrics(dp, &out);
    assert_false(ms_buf_failed(&out));
    const char *at = strstr(out.data, series);
    uint64_t v = at ? strtoull(at + strlen(series), NULL, 10) : UINT64_MAX;
    ms_buf_free(&out);
    return v;
}

/* The series' value once the worker's loop has counted it (a response is
 * counted when its last write completes, which can come after the client
 * has read it). */
static uint64_t metric_settled(ms_dataplane *dp, const char *series, uint64_t want)
{
    uint64_t v = metric(dp, series);
    for (int i = 0; i < 10000 && v != want; i++) {
        uv_run(ms_dataplane_inline_loop(dp), UV_RUN_NOWAIT);
        v = metric(dp, series);
    }
    return v;
}

/* Between two requests on one kept-alive connection the routes change:
 * the second is routed by the new table; the counters of the label set
 * both tables have go on, those of a new route start at 0. */
static void test_reload_between_requests_on_one_connection(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ms_manifest *m = routes_manifest(dir, NULL);
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    assert_non_null(dp);
    ms_manifest_free(m);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(dp, sv[0], 0), 0);
    send_all(sv[1], "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, sv[1]), 404); /* no route */
    const char *nomatch = "mothership_responses_total{bind=\"http\",route=\"\",target=\"none\",code=\"4xx\"} ";
    assert_int_equal(metric_settled(dp, nomatch, 1), 1);
    reload_to(dp, routes_manifest(dir, "/b.*"));
    send_all(sv[1], "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, sv[1]), 502); /* routed to app, whose socket is not there */
    send_all(sv[1], "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, sv[1]), 404);
    assert_int_equal(metric_settled(dp, nomatch, 2), 2); /* cumulative across the reload */
    assert_int_equal(
        metric_settled(dp, "mothership_responses_total{bind=\"http\",route=\"/b.*\",target=\"app\",code=\"5xx\"} ", 1),
        1);
    close(sv[1]);
    ms_dataplane_inline_stop(dp);
    rmdir(dir);
}

/* A burst of connections waiting on a listener is accepted MS_ACCEPT_BURST
 * (64) at a time, one batch per turn of the loop, so that the requests of
 * connections already open are read in between; a request that is ready in
 * the same turn is answered in that turn; every connection of the burst is
 * accepted and served in the following turns. */
static void test_accept_burst_is_bounded_per_turn(void **state)
{
    (void)state;
    enum { N = 200 };
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ms_manifest *m = routes_manifest(dir, "/app/.*"); /* "/" is not routed: a 404 of the worker's own */
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    assert_non_null(dp);
    ms_manifest_free(m);
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/burst.sock", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1024), 0);
    assert_int_equal(ms_dataplane_inline_listen(dp, lfd, 0), 0);

    int open_one[2]; /* a connection already open, its request ready in the burst's turn */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, open_one), 0);
    fcntl(open_one[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(dp, open_one[0], 0), 0);
    int cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(cl[i] >= 0);
        assert_int_equal(connect(cl[i], (struct sockaddr *)&sa, sizeof sa), 0); /* into the backlog */
        fcntl(cl[i], F_SETFL, O_NONBLOCK);
    }
    send_all(open_one[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n");

    uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(metric(dp, "\nmothership_http_connections_total "), 64);
    char buf[256];
    ssize_t r = read(open_one[1], buf, sizeof buf - 1);
    assert_true(r > 12);
    assert_true(strncmp(buf, "HTTP/1.1 404", 12) == 0);

    for (int i = 0; i < 100 && metric(dp, "\nmothership_http_connections_total ") < N; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(metric(dp, "\nmothership_http_connections_total "), N);
    for (int i = 0; i < N; i++) {
        send_all(cl[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(read_status(dp, cl[i]), 404);
        close(cl[i]);
    }
    close(open_one[1]);
    ms_dataplane_inline_stop(dp);
    unlink(sa.sun_path);
    rmdir(dir);
}

/* The allocation of an accepted connection fails (out of memory): the
 * connection waits with libuv, and the listener, which libuv stops
 * watching until it is taken, takes it at the next turn: it is served, and
 * the listener goes on accepting. */
static void test_listener_survives_a_failed_accept(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ms_manifest *m = routes_manifest(dir, "/app/.*");
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    assert_non_null(dp);
    ms_manifest_free(m);
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/oom.sock", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(ms_dataplane_inline_listen(dp, lfd, 0), 0);
    uv_run(loop, UV_RUN_NOWAIT); /* idle: nothing to accept */

    int a = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(a, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(a, F_SETFL, O_NONBLOCK);
    fail_callocs = 1; /* the connection's own allocation: the first of the accept */
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(fail_callocs, 0);
    assert_int_equal(metric(dp, "\nmothership_http_connections_total "), 0);
    send_all(a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, a), 404);
    assert_int_equal(metric(dp, "\nmothership_http_connections_total "), 1);
    int b = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); /* and the listener goes on */
    assert_int_equal(connect(b, (struct sockaddr *)&sa, sizeof sa), 0);
    fcntl(b, F_SETFL, O_NONBLOCK);
    send_all(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, b), 404);
    close(a);
    close(b);
    ms_dataplane_inline_stop(dp);
    unlink(sa.sun_path);
    rmdir(dir);
}

/* A request whose body is still coming when the routes change finishes
 * on the table it started with (here: routed to app, refused: 502); the
 * next one on the connection sees the new table (no route: 404). Under
 * ASan the old generation is freed only once that request has ended. */
static void test_request_in_flight_finishes_on_its_generation(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ms_manifest *m = routes_manifest(dir, "/up.*");
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    assert_non_null(dp);
    ms_manifest_free(m);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(dp, sv[0], 0), 0);
    send_all(sv[1], "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    for (int i = 0; i < 100; i++)
        uv_run(loop, UV_RUN_NOWAIT); /* the head is read; the body is being buffered */
    reload_to(dp, routes_manifest(dir, NULL));
    reload_to(dp, routes_manifest(dir, NULL)); /* a second one while the first is still held */
    send_all(sv[1], "67890");
    assert_int_equal(read_status(dp, sv[1]), 502);
    send_all(sv[1], "GET /up HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_status(dp, sv[1]), 404);
    close(sv[1]);
    ms_dataplane_inline_stop(dp);
    rmdir(dir);
}

/* Runs the worker's loop until a whole response is on fd (head: the
 * answer to a HEAD, no body); the response into buf; returns its status. */
static int read_response(ms_dataplane *dp, int fd, bool head, char *buf, size_t cap)
{
    size_t len = 0;
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    for (int round = 0; round < 100000; round++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r > 0)
            len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t body = cl && !head ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + body) {
                assert_true(strncmp(buf, "HTTP/1.1 ", 9) == 0);
                return atoi(buf + 9);
            }
        }
    }
    fail_msg("no whole response: %s", buf);
    return -1;
}

/* A plain bind with a static dir at "/" holding a file where the CA asks,
 * and a catch-all route to app (whose socket is not there: 502). */
static ms_manifest *acme_manifest(const char *dir)
{
    char path[256], text[1024];
    const char *parts[] = { "public", "public/.well-known", "public/.well-known/acme-challenge" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, parts[i]);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    snprintf(path, sizeof path, "%s/public/.well-known/acme-challenge/tok1", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("from the static dir", f);
    fclose(f);
    snprintf(text, sizeof text,
             "[mothership.bind]\nhttp = \"unix://%s/front.sock\"\n"
             "[[mothership.static_dirs]]\npath = \"%s/public\"\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/app.sock\"\n"
             "routes = [\"http:/.*\"]\n",
             dir, dir, dir);
    return load_text(text, dir);
}

static ms_dataplane *acme_dataplane(ms_manifest *m, ms_acme_board *board, int *client)
{
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true, .board = board };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    if (!dp)
        fail_msg("start: %s", why);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(dp, sv[0], 0), 0);
    *client = sv[1];
    return dp;
}

static void test_acme_http01_before_everything(void **state)
{
    (void)state;
    char dir[64], buf[4096], path[256];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    ms_manifest *m = acme_manifest(dir);
    int fd;

    /* no board: the path is not special (here: the static file) */
    ms_dataplane *dp = acme_dataplane(m, NULL, &fd);
    send_all(fd, "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\r\n\r\nfrom the static dir"));
    close(fd);
    ms_dataplane_inline_stop(dp);

    ms_acme_board *board = ms_acme_board_new();
    assert_non_null(board);
    assert_true(ms_acme_board_put_http(board, "tok1", "tok1.thumbprint"));
    dp = acme_dataplane(m, board, &fd);
    /* the key authorization, before the static dir and the route */
    send_all(fd, "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\r\nContent-Type: text/plain\r\n"));
    assert_non_null(strstr(buf, "\r\nContent-Length: 15\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\ntok1.thumbprint"));
    assert_null(strstr(buf, "Connection: close"));
    send_all(fd, "HEAD /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, true, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\r\nContent-Length: 15\r\n"));
    assert_null(strstr(buf, "tok1.thumbprint"));
    /* an unknown token: 404, not the route (which would be a 502) */
    send_all(fd, "GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 404);
    send_all(fd, "GET /.well-known/acme-challenge/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 404);
    /* other methods: 405 */
    send_all(fd, "POST /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 405);
    assert_non_null(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));
    /* everything else as before */
    send_all(fd, "GET /.well-known/acme-challengeX HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 502);
    /* counted like the bind's other local answers */
    const char *series = "mothership_responses_total{bind=\"http\",route=\"\",target=\"none\",code=\"%s\"} ";
    char s2[160], s4[160];
    snprintf(s2, sizeof s2, series, "2xx");
    snprintf(s4, sizeof s4, series, "4xx");
    assert_int_equal(metric_settled(dp, s2, 2), 2);
    assert_int_equal(metric_settled(dp, s4, 3), 3);
    /* withdrawn: 404 */
    ms_acme_board_drop_http(board, "tok1");
    send_all(fd, "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 404);
    close(fd);
    ms_dataplane_inline_stop(dp);

    /* a bind that redirects everything to https still answers the CA */
    assert_true(ms_acme_board_put_http(board, "tok1", "tok1.thumbprint"));
    m->global.binds[0].redirect_to_https = true;
    dp = acme_dataplane(m, board, &fd);
    send_all(fd, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 308);
    send_all(fd, "GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_response(dp, fd, false, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\r\n\r\ntok1.thumbprint"));
    close(fd);
    ms_dataplane_inline_stop(dp);

    ms_acme_board_free(board);
    ms_manifest_free(m);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

/* RFC 8737 §3: after a tls-alpn-01 handshake (ALPN acme-tls/1) nothing
 * else is served on that connection: a request sent on it gets no answer,
 * the connection ends. */
static void test_acme_tls_alpn_connection_serves_nothing(void **state)
{
    (void)state;
    char dir[64], text[1024], cmd[128];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(text, sizeof text,
             "[mothership]\nstate_dir = \"%s/state\"\n"
             "[mothership.bind]\nhttps = { address = \"127.0.0.1:1\", tls = \"self-signed\" }\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/app.sock\"\n"
             "routes = [\"https:/.*\"]\n",
             dir, dir);
    /* an earlier test closed descriptor 0: keep the loop's own off it */
    int null_fd = fcntl(0, F_GETFD) < 0 ? open("/dev/null", O_RDONLY) : -1;
    ms_manifest *m = load_text(text, dir);
    char why[512] = "";
    ms_tls_server *tls = ms_tls_server_new(m, why, sizeof why);
    if (!tls)
        fail_msg("tls: %s", why);
    ms_acme_board *board = ms_acme_board_new();
    assert_non_null(board);
    ms_tls_server_set_acme_board(tls, board);
    EVP_PKEY *k;
    X509 *x = self_signed("a.example", NULL, -3600, 3600, &k); /* the tls-alpn-01 certificate's stand-in */
    assert_true(ms_acme_board_put_alpn(board, "a.example", x, k));
    X509_free(x);
    EVP_PKEY_free(k);

    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true, .tls = tls, .board = board };
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    if (!dp)
        fail_msg("start: %s", why);
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);

    for (int round = 0; round < 2; round++) {
        /* round 0: acme-tls/1 alone; round 1: next to http/1.1 */
        static const unsigned char alpn0[] = "\x0a" "acme-tls/1";
        static const unsigned char alpn1[] = "\x08" "http/1.1" "\x0a" "acme-tls/1";
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
        assert_int_equal(ms_dataplane_inline_adopt(dp, sv[0], 0), 0);
        SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
        assert_non_null(cctx);
        SSL *c = SSL_new(cctx);
        assert_non_null(c);
        SSL_set_fd(c, sv[1]);
        SSL_set_connect_state(c);
        SSL_set_tlsext_host_name(c, "a.example");
        if (round == 0)
            SSL_set_alpn_protos(c, alpn0, sizeof alpn0 - 1);
        else
            SSL_set_alpn_protos(c, alpn1, sizeof alpn1 - 1);
        int rc = 0;
        for (int i = 0; i < 100000 && rc != 1; i++) {
            uv_run(loop, UV_RUN_NOWAIT);
            rc = SSL_do_handshake(c);
            if (rc != 1) {
                int e = SSL_get_error(c, rc);
                assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            }
        }
        assert_int_equal(rc, 1);
        const unsigned char *p;
        unsigned len;
        SSL_get0_alpn_selected(c, &p, &len);
        assert_int_equal(len, 10);
        assert_memory_equal(p, "acme-tls/1", 10);
        X509 *peer = SSL_get1_peer_certificate(c);
        assert_non_null(peer);
        char cn[64] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
        assert_string_equal(cn, "a.example");
        X509_free(peer);

        /* a request after it: no answer, the connection ends */
        const char req[] = "GET /anything HTTP/1.1\r\nHost: a.example\r\n\r\n";
        (void)SSL_write(c, req, (int)sizeof req - 1);
        char buf[4096];
        size_t got = 0;
        bool ended = false;
        for (int i = 0; i < 100000 && !ended; i++) {
            uv_run(loop, UV_RUN_NOWAIT);
            ERR_clear_error();
            int r = SSL_read(c, buf + got, (int)(sizeof buf - 1 - got));
            if (r > 0) {
                got += (size_t)r;
                continue;
            }
            int e = SSL_get_error(c, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                ended = true;
        }
        buf[got] = '\0';
        if (got)
            fail_msg("answered after an acme-tls/1 handshake: %s", buf);
        assert_true(ended);
        SSL_free(c);
        SSL_CTX_free(cctx);
        close(sv[1]);
    }
    ms_dataplane_inline_stop(dp);
    ms_acme_board_free(board);
    ms_manifest_free(m);
    if (null_fd >= 0)
        close(null_fd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* An HTTP/2 connection (h2c) on a bind that a reload removes gets a
 * GOAWAY and ends, like the HTTP/1.1 connections of that bind: it does
 * not go on serving (and holding) the old configuration. */
static void test_reload_ends_h2_connections_of_a_removed_bind(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/ms-test-dp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char text[1024];
    snprintf(text, sizeof text, "[mothership.bind]\ngrpc = { address = \"unix://%s/grpc.sock\", h2c = true }\n", dir);
    ms_manifest *m = load_text(text, dir);
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .inline_worker = true };
    char why[256] = "";
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    assert_non_null(dp);
    ms_manifest_free(m);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(dp, sv[0], 0), 0);
    /* the preface and an empty SETTINGS frame */
    static const char hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    assert_int_equal(write(sv[1], hello, sizeof hello - 1), (ssize_t)(sizeof hello - 1));
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    unsigned char buf[4096];
    size_t len = 0;
    for (int i = 0; i < 100000 && len < 9; i++) { /* the server's SETTINGS */
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = read(sv[1], buf + len, sizeof buf - len);
        if (r > 0)
            len += (size_t)r;
    }
    assert_true(len >= 9);
    snprintf(text, sizeof text, "[mothership.bind]\nhttp = \"unix://%s/front.sock\"\n", dir);
    reload_to(dp, load_text(text, dir));
    /* frames until a GOAWAY (type 7) or the end of the connection */
    bool goaway = false, eof = false;
    size_t at = 0;
    for (int i = 0; i < 200000 && !goaway && !eof; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = read(sv[1], buf + len, sizeof buf - len);
        if (r > 0)
            len += (size_t)r;
        else if (r == 0)
            eof = true;
        while (len - at >= 9) {
            size_t flen = ((size_t)buf[at] << 16) | ((size_t)buf[at + 1] << 8) | buf[at + 2];
            if (len - at < 9 + flen)
                break;
            goaway |= buf[at + 3] == 7;
            at += 9 + flen;
        }
    }
    assert_true(goaway);
    close(sv[1]);
    ms_dataplane_inline_stop(dp);
    rmdir(dir);
}

/* ms_u64_dec writes Content-Length and X-Request-Start values: every
 * digit count, the pairs table's edges, the largest value. */
static void test_u64_dec(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *s;
    } cases[] = {
        { 0, "0" },       { 7, "7" },        { 9, "9" },        { 10, "10" },     { 42, "42" },
        { 99, "99" },     { 100, "100" },    { 101, "101" },    { 999, "999" },   { 1000, "1000" },
        { 10009, "10009" }, { 1765061234567890ULL, "1765061234567890" },
        { 18446744073709551615ULL, "18446744073709551615" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[24];
        size_t n = ms_u64_dec(cases[i].v, out);
        assert_int_equal(n, strlen(cases[i].s));
        assert_memory_equal(out, cases[i].s, n);
    }
    char want[24], out[24];
    for (uint64_t v = 0; v < 100000; v += 7) {
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
        assert_int_equal(ms_u64_dec(v, out), (size_t)wn);
        assert_memory_equal(out, want, (size_t)wn);
    }
}

int main(void)
{
    if (fcntl(0, F_GETFD) < 0 && open("/dev/null", O_RDONLY) != 0) /* the last test closes stdin itself */
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_thread_failure_fails_the_start),
        cmocka_unit_test(test_start_and_stop),
        cmocka_unit_test(test_traffic_series_for_routes_to_ships),
        cmocka_unit_test(test_reload_between_requests_on_one_connection),
        cmocka_unit_test(test_accept_burst_is_bounded_per_turn),
        cmocka_unit_test(test_listener_survives_a_failed_accept),
        cmocka_unit_test(test_request_in_flight_finishes_on_its_generation),
        cmocka_unit_test(test_reload_ends_h2_connections_of_a_removed_bind),
        cmocka_unit_test(test_reload_adds_and_removes_binds),
        cmocka_unit_test(test_refused_reload_keeps_a_renamed_unix_bind),
        cmocka_unit_test(test_drain_closes_the_listeners),
        cmocka_unit_test(test_unix_listener_on_descriptor_0),
        cmocka_unit_test(test_u64_dec),
        cmocka_unit_test(test_acme_http01_before_everything),
        cmocka_unit_test(test_acme_tls_alpn_connection_serves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
