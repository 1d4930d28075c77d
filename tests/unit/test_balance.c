/* test_balance.c: a route over several instances, on an inline worker with
 * hand-made fleet processes and real upstream sockets (Unix, served by the
 * test itself): round robin, least_conn, draining instances, a surge
 * replacement at the second address with its own pool, passive health
 * (a refused instance is ejected and counted), retries of idempotent
 * requests on another instance (a POST gets its 502), requests held for a
 * ship restarting in place, and in-flight counts that come back to where
 * they were. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "http/dataplane.h"
#include "router/table.h"

#define NB 4                       /* backends: app0, app1, app2, and app0's second address */
#define MAX_UP 64

typedef struct upconn {
    int fd;
    int backend;
    char buf[8192];
    size_t len;
} upconn;

typedef struct bed {
    char dir[64];
    char path[NB][128];
    int lfd[NB];
    unsigned hits[NB];             /* requests each backend answered */
    unsigned accepts[NB];          /* connections each backend accepted */
    bool mute[NB];                 /* reads requests, does not answer them (yet) */
    int base_inflight[3];          /* what a test set the counts to */
    upconn up[MAX_UP];
    ms_proc *procs[3];
    ms_proc *twin;
    ms_dataplane *dp;
} bed;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 64), 0);
    return fd;
}

/* Backend i stops listening: connections to it are refused. */
static void backend_down(bed *b, int i)
{
    close(b->lfd[i]);
    unlink(b->path[i]);
    b->lfd[i] = -1;
}

/* One request of c's buffer answered, if it is whole: 200 with the
 * backend's number as the body, kept alive. */
static void serve_one(bed *b, upconn *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return;
    size_t head = (size_t)(end + 4 - c->buf), body = 0;
    const char *cl = memmem(c->buf, head, "Content-Length: ", 16);
    if (cl)
        body = strtoul(cl + 16, NULL, 10);
    if (c->len < head + body || b->mute[c->backend])
        return;
    char resp[128];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", c->backend);
    assert_int_equal(write(c->fd, resp, (size_t)n), n);
    b->hits[c->backend]++;
    memmove(c->buf, c->buf + head + body, c->len - head - body);
    c->len -= head + body;
}

/* One turn of everything: the worker's loop, then the backends. */
static void pump(bed *b)
{
    uv_run(ms_dataplane_inline_loop(b->dp), UV_RUN_NOWAIT);
    for (int i = 0; i < NB; i++) {
        int fd;
        while (b->lfd[i] >= 0 && (fd = accept4(b->lfd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            int k = 0;
            while (k < MAX_UP && b->up[k].fd >= 0)
                k++;
            assert_true(k < MAX_UP);
            b->up[k].fd = fd;
            b->up[k].backend = i;
            b->up[k].len = 0;
            b->accepts[i]++;
        }
    }
    for (int k = 0; k < MAX_UP; k++) {
        upconn *c = &b->up[k];
        if (c->fd < 0)
            continue;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            close(c->fd);
            c->fd = -1;
            continue;
        }
        if (r > 0)
            c->len += (size_t)r;
        serve_one(b, c);
    }
}

static const char *manifest_text(char *out, size_t n, const char *dir, const char *cooldown)
{
    snprintf(out, n,
             "[mothership.http]\neject_cooldown = \"%s\"\n"
             "[mothership.bind]\nhttp = \"unix://%s/front.sock\"\n"
             "[[fleet.web]]\nname = \"app0\"\ncommand = \"true\"\nbind = \"unix://%s/b0.sock\"\n"
             "routes = [\"http:/.*\"]\nready_timeout = \"300ms\"\ndrain_timeout = \"200ms\"\n"
             "[[fleet.web]]\nname = \"app1\"\ncommand = \"true\"\nbind = \"unix://%s/b1.sock\"\n"
             "[[fleet.web]]\nname = \"app2\"\ncommand = \"true\"\nbind = \"unix://%s/b2.sock\"\n",
             cooldown, dir, dir, dir, dir);
    return out;
}

/* app0..app2 as the instances of app0's route (what the loader makes of
 * `instances = 3`), each process ready; app0 has a second address. */
static void bed_open(bed *b, const char *cooldown, ms_balance balance)
{
    memset(b, 0, sizeof *b);
    for (int k = 0; k < MAX_UP; k++)
        b->up[k].fd = -1;
    snprintf(b->dir, sizeof b->dir, "/tmp/ms-test-bal-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    for (int i = 0; i < NB; i++) {
        if (i < 3)
            snprintf(b->path[i], sizeof b->path[i], "%s/b%d.sock", b->dir, i);
        else
            snprintf(b->path[i], sizeof b->path[i], "%s/alt.sock", b->dir);
        b->lfd[i] = listen_unix(b->path[i]);
    }
    char text[2048];
    manifest_text(text, sizeof text, b->dir, cooldown);
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "test.toml", b->dir, &d);
    if (!m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(m);
    assert_int_equal(m->nships, 3);
    assert_int_equal(m->ships[0].nroutes, 1);
    m->ships[0].routes[0].ntargets = 3;
    m->ships[0].balance = balance;
    char alt[200], why[200];
    snprintf(alt, sizeof alt, "unix://%s", b->path[3]);
    assert_true(ms_addr_parse(alt, &m->ships[0].bind_alt, why, sizeof why));
    m->ships[0].has_bind_alt = true;
    for (int i = 0; i < 3; i++) {
        b->procs[i] = calloc(1, sizeof *b->procs[i]);
        assert_non_null(b->procs[i]);
        b->procs[i]->ready_flag = 1;
    }
    b->twin = calloc(1, sizeof *b->twin);
    assert_non_null(b->twin);
    b->twin->parity = 1;
    ms_route_table *rt = ms_route_table_build(m);
    assert_non_null(rt);
    ms_dp_config cfg = { .m = m, .routes = rt, .procs = b->procs, .inline_worker = true };
    b->dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    if (!b->dp)
        fail_msg("start: %s", why);
    ms_manifest_free(m);
}

static void bed_close(bed *b)
{
    ms_dataplane_inline_stop(b->dp);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b->procs[i]->inflight, b->base_inflight[i]);
    assert_int_equal(b->twin->inflight, 0);
    for (int k = 0; k < MAX_UP; k++)
        if (b->up[k].fd >= 0)
            close(b->up[k].fd);
    for (int i = 0; i < NB; i++) {
        if (b->lfd[i] >= 0)
            close(b->lfd[i]);
        unlink(b->path[i]);
    }
    for (int i = 0; i < 3; i++)
        free(b->procs[i]);
    free(b->twin);
    char front[128];
    snprintf(front, sizeof front, "%s/front.sock", b->dir);
    unlink(front);
    rmdir(b->dir);
}

/* A client connection with one request sent. */
static int send_request(bed *b, const char *req)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    assert_int_equal(ms_dataplane_inline_adopt(b->dp, sv[0], 0), 0);
    size_t n = strlen(req);
    assert_int_equal(write(sv[1], req, n), (ssize_t)n);
    return sv[1];
}

/* The response on fd within ms (its status; *body: its first body byte),
 * or 0 when none came by then. Closes fd once answered. */
static int wait_response(bed *b, int fd, uint64_t ms, char *body)
{
    char buf[4096];
    size_t len = 0;
    uint64_t end = now_ms() + ms;
    while (now_ms() < end) {
        pump(b);
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r > 0)
            len += (size_t)r;
        buf[len] = '\0';
        char *h = strstr(buf, "\r\n\r\n");
        if (h) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t blen = cl ? strtoul(cl + 16, NULL, 10) : 0;
            if (len >= (size_t)(h + 4 - buf) + blen) {
                if (body)
                    *body = blen ? h[4] : '\0';
                close(fd);
                return atoi(buf + 9);
            }
        }
        if (r <= 0)
            usleep(200);
    }
    return 0;
}

/* GET /, answered by backend *which ('0'..'3'); returns the status. */
static int get(bed *b, char *which)
{
    int fd = send_request(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    int st = wait_response(b, fd, 5000, which);
    if (st == 0)
        fail_msg("no response");
    return st;
}

static uint64_t metric(bed *b, const char *series)
{
    ms_buf out;
    ms_buf_init(&out, 0);
    ms_dataplane_render_metrics(b->dp, &out);
    assert_false(ms_buf_failed(&out));
    const char *at = strstr(out.data, series);
    uint64_t v = at ? strtoull(at + strlen(series), NULL, 10) : UINT64_MAX;
    ms_buf_free(&out);
    return v;
}

static int inflight(const ms_proc *p)
{
    return __atomic_load_n(&p->inflight, __ATOMIC_ACQUIRE);
}

/* ---- tests */

/* Round robin: each instance in turn, none twice before the others. */
static void test_round_robin_over_instances(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    char seen[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(get(&b, &seen[i]), 200);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b.hits[i], 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen[i], seen[i + 3]);
    assert_true(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
    assert_int_equal(b.hits[3], 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(inflight(b.procs[i]), 0);
    bed_close(&b);
}

/* least_conn: the instance with the fewest requests in flight. */
static void test_least_conn_picks_the_idle_one(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_LEAST_CONN);
    b.procs[0]->inflight = b.base_inflight[0] = 4; /* as if busy elsewhere */
    b.procs[2]->inflight = b.base_inflight[2] = 2;
    char w;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(get(&b, &w), 200);
        assert_int_equal(w, '1');
    }
    /* counted once each: back where they were */
    assert_int_equal(inflight(b.procs[0]), 4);
    assert_int_equal(inflight(b.procs[1]), 0);
    assert_int_equal(inflight(b.procs[2]), 2);
    bed_close(&b);
}

/* A request is counted on its process while it is there, until its
 * response is done (bed_close checks that every count is back to 0 once
 * the data plane has stopped, whatever ended the exchanges). */
static void test_inflight_counts_a_request_while_there(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    __atomic_store_n(&b.procs[0]->ready_flag, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[2]->ready_flag, 0, __ATOMIC_RELEASE);
    b.mute[1] = true;
    int fd = send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(wait_response(&b, fd, 100, NULL), 0);
    assert_int_equal(inflight(b.procs[1]), 1);
    b.mute[1] = false;
    char w;
    assert_int_equal(wait_response(&b, fd, 5000, &w), 200);
    assert_int_equal(w, '1');
    assert_int_equal(inflight(b.procs[1]), 0);
    /* one left hanging: the stop ends it */
    b.mute[1] = true;
    fd = send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(wait_response(&b, fd, 100, NULL), 0);
    assert_int_equal(inflight(b.procs[1]), 1);
    close(fd);
    bed_close(&b);
}

/* Draining and not-ready instances get no new request. */
static void test_draining_instance_gets_nothing(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    __atomic_store_n(&b.procs[1]->draining, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[2]->ready_flag, 0, __ATOMIC_RELEASE);
    char w;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(get(&b, &w), 200);
        assert_int_equal(w, '0');
    }
    /* every one out: 503 saying why */
    __atomic_store_n(&b.procs[0]->draining, 1, __ATOMIC_RELEASE);
    assert_int_equal(get(&b, &w), 503);
    bed_close(&b);
}

/* A surge: app0's replacement (its twin, at the second address) takes the
 * traffic once app0 drains; the kept-alive connections to app0 are not
 * used for it (each address has its own pool). */
static void test_surge_twin_has_its_own_address_and_pool(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    __atomic_store_n(&b.procs[1]->ready_flag, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[2]->ready_flag, 0, __ATOMIC_RELEASE);
    char w;
    assert_int_equal(get(&b, &w), 200);
    assert_int_equal(w, '0'); /* a kept-alive connection to app0 is pooled */
    b.twin->twin = b.procs[0];
    __atomic_store_n(&b.twin->ready_flag, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[0]->twin, b.twin, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[0]->draining, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(&b, &w), 200);
        assert_int_equal(w, '3');
    }
    assert_int_equal(b.hits[0], 1);
    assert_int_equal(b.accepts[3], 1); /* pooled for the second address too */
    assert_int_equal(inflight(b.twin), 0);
    /* both serve: round robin over app0 and its replacement */
    __atomic_store_n(&b.procs[0]->draining, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++)
        assert_int_equal(get(&b, &w), 200);
    assert_int_equal(b.hits[0], 3);
    assert_int_equal(b.hits[3], 5);
    assert_int_equal(b.accepts[0], 1);
    bed_close(&b);
}

/* An instance that refuses: the GET goes to another one and succeeds;
 * the refusing one is ejected (counted) and skipped for the cooldown. */
static void test_refused_instance_is_ejected_and_get_retried(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    backend_down(&b, 1);
    char w;
    for (int i = 0; i < 9; i++) {
        assert_int_equal(get(&b, &w), 200);
        assert_true(w == '0' || w == '2');
    }
    assert_int_equal(b.procs[1]->ejections, 1);
    assert_int_equal(metric(&b, "mothership_upstream_ejections_total{ship=\"app1\",instance=\"0\"} "), 1);
    assert_int_equal(metric(&b, "mothership_upstream_ejections_total{ship=\"app0\",instance=\"0\"} "), 0);
    assert_int_equal(metric(&b, "mothership_upstream_retries_total{ship=\"app0\"} "), 1);
    assert_int_equal(metric(&b, "mothership_upstream_errors_total{kind=\"refused\"} "), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(inflight(b.procs[i]), 0);
    bed_close(&b);
}

/* Without ejection (cooldown 0) the refusing instance comes round again:
 * a GET is retried each time, a POST with a body is not (502), a PUT
 * whose body was read whole and never sent is. */
static void test_post_with_body_is_not_retried(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "0s", MS_BALANCE_ROUND_ROBIN);
    backend_down(&b, 0);
    backend_down(&b, 2);
    unsigned ok = 0, bad = 0;
    for (int i = 0; i < 3; i++) {
        int fd = send_request(&b, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        int st = wait_response(&b, fd, 5000, NULL);
        ok += st == 200;
        bad += st == 502;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(bad, 2);
    assert_int_equal(b.hits[1], 1);
    for (int i = 0; i < 3; i++) {
        int fd = send_request(&b, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        char w;
        assert_int_equal(wait_response(&b, fd, 5000, &w), 200);
        assert_int_equal(w, '1');
    }
    char w;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(&b, &w), 200);
        assert_int_equal(w, '1');
    }
    assert_int_equal(b.procs[0]->ejections, 0); /* off */
    assert_int_equal(metric(&b, "mothership_upstream_errors_total{kind=\"refused\"} "), 2);
    bed_close(&b);
}

/* Every instance out but one restarting in place: the request waits and
 * goes as soon as one is ready; one that waits longer than drain_timeout
 * + ready_timeout gets 503; without a hold, 503 at once. */
static void test_held_request_goes_once_ready(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    for (int i = 0; i < 3; i++)
        __atomic_store_n(&b.procs[i]->ready_flag, 0, __ATOMIC_RELEASE);
    char w;
    assert_int_equal(get(&b, &w), 503); /* nothing holds */
    __atomic_store_n(&b.procs[2]->holding, 1, __ATOMIC_RELEASE);
    int fd = send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(wait_response(&b, fd, 100, &w), 0); /* waits */
    assert_int_equal(b.hits[2], 0);
    __atomic_store_n(&b.procs[2]->ready_flag, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[2]->holding, 0, __ATOMIC_RELEASE);
    assert_int_equal(wait_response(&b, fd, 5000, &w), 200);
    assert_int_equal(w, '2');
    assert_int_equal(metric(&b, "\nmothership_requests_held_total "), 1);
    /* too long: drain_timeout + ready_timeout is 500ms */
    __atomic_store_n(&b.procs[2]->ready_flag, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[2]->holding, 1, __ATOMIC_RELEASE);
    fd = send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(wait_response(&b, fd, 5000, &w), 503);
    assert_int_equal(metric(&b, "\nmothership_requests_held_expired_total "), 1);
    /* a held client that goes away leaves nothing behind */
    fd = send_request(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(wait_response(&b, fd, 50, &w), 0);
    close(fd);
    for (int i = 0; i < 20; i++)
        pump(&b);
    bed_close(&b);
}

/* A held request with a body (read whole before it is sent, the default)
 * goes once the ship is ready, body and all: the body that arrived while
 * it waited is read from the connection's buffer then. */
static void test_held_request_with_a_body_goes_once_ready(void **state)
{
    (void)state;
    bed b;
    bed_open(&b, "5s", MS_BALANCE_ROUND_ROBIN);
    for (int i = 0; i < 3; i++)
        __atomic_store_n(&b.procs[i]->ready_flag, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[1]->holding, 1, __ATOMIC_RELEASE);
    int fd = send_request(&b, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    char w;
    assert_int_equal(wait_response(&b, fd, 100, &w), 0); /* waits */
    __atomic_store_n(&b.procs[1]->ready_flag, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&b.procs[1]->holding, 0, __ATOMIC_RELEASE);
    assert_int_equal(wait_response(&b, fd, 5000, &w), 200); /* the backend answers a whole body only */
    assert_int_equal(w, '1');
    assert_int_equal(b.hits[1], 1);
    assert_int_equal(metric(&b, "\nmothership_requests_held_total "), 1);
    bed_close(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the binary does: a client gone is a write error */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_over_instances),
        cmocka_unit_test(test_least_conn_picks_the_idle_one),
        cmocka_unit_test(test_inflight_counts_a_request_while_there),
        cmocka_unit_test(test_draining_instance_gets_nothing),
        cmocka_unit_test(test_surge_twin_has_its_own_address_and_pool),
        cmocka_unit_test(test_refused_instance_is_ejected_and_get_retried),
        cmocka_unit_test(test_post_with_body_is_not_retried),
        cmocka_unit_test(test_held_request_goes_once_ready),
        cmocka_unit_test(test_held_request_with_a_body_goes_once_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
