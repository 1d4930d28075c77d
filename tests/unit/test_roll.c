/* test_roll.c: the surge roll with real processes on a real loop. One
 * ship listens on port A, its surge address (bind_alt, set here by hand)
 * is port B; the ship's program takes A, else B. A roll starts the twin at
 * B, swaps it in once it accepts connections, drains the old process (it
 * waits for the requests the data plane says are in flight) and stops it;
 * a twin that exits before it is ready stops the roll and leaves the old
 * process serving. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "fleet/fleet.h"
#include "fleet/logs.h"
#include "fleet/roll.h"

typedef struct rig {
    char dir[64];
    uv_loop_t loop;
    ms_log *log;
    ms_manifest *m;
    ms_fleet *f;
    int a, b;               /* the bind's port, bind_alt's port */
    bool done;
    bool ok;
    char why[256];
} rig;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* strict: a run that finds port A taken exits 3 instead of taking B. */
static void rig_up(rig *r, bool strict)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/ms-test-roll-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    assert_int_equal(uv_loop_init(&r->loop), 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(null >= 0);
    r->log = ms_log_open(null, true, false);
    assert_non_null(r->log);
    r->a = free_port();
    do
        r->b = free_port();
    while (r->b == r->a);
    char script[600];
    snprintf(script, sizeof script,
             "import socket, sys\\n"
             "s = socket.socket()\\n"
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n"
             "for p in (%d, %d):\\n"
             "    try:\\n"
             "        s.bind(('127.0.0.1', p))\\n"
             "        break\\n"
             "    except OSError:\\n"
             "        %s\\n"
             "s.listen(16)\\n"
             "while True:\\n"
             "    s.accept()[0].close()\\n",
             r->a, r->b, strict ? "sys.exit(3)" : "pass");
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership]\nsocket_dir = \"%s\"\n[[fleet.web]]\nname = \"web\"\ncommand = \"python3\"\n"
             "args = [\"-c\", \"%s\"]\nbind = \"tcp://127.0.0.1:%d\"\ncritical = true\n"
             "restart = { backoff = \"10s\" }\nready_timeout = \"5s\"\n",
             r->dir, script, r->a);
    ms_diags d;
    ms_diags_init(&d, "test.toml");
    r->m = ms_manifest_load_buffer(text, strlen(text), "test.toml", r->dir, &d);
    if (!r->m)
        ms_diags_print(&d, stderr);
    ms_diags_free(&d);
    assert_non_null(r->m);
    ms_ship *s = &r->m->ships[0];
    char alt[64], why[128];
    snprintf(alt, sizeof alt, "tcp://127.0.0.1:%d", r->b);
    assert_true(ms_addr_parse(alt, &s->bind_alt, why, sizeof why));
    s->has_bind_alt = true;
    s->drain_timeout_ms = 5000;
    r->f = ms_fleet_new(&r->loop, r->m, NULL, r->log, why, sizeof why);
    if (!r->f)
        fail_msg("fleet: %s", why);
    ms_fleet_start(r->f, NULL, NULL);
}

static void rig_down(rig *r)
{
    ms_fleet_shutdown(r->f, 0, "test");
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    ms_fleet_free(r->f);
    ms_manifest_free(r->m);
    ms_log_close(r->log);
    rmdir(r->dir);
}

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until pred(r) holds; fail after ms. */
static void run_until(rig *r, bool (*pred)(const rig *r), uint64_t ms, const char *what)
{
    uv_timer_t t;
    uv_timer_init(&r->loop, &t);
    uv_timer_start(&t, on_wake, 10, 10);
    uint64_t end = uv_now(&r->loop) + ms;
    while (!pred(r) && uv_now(&r->loop) < end)
        uv_run(&r->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&r->loop, UV_RUN_NOWAIT);
    if (!pred(r))
        fail_msg("timed out waiting for %s", what);
}

static bool web_ready(const rig *r)
{
    return r->f->procs[0]->state == MS_P_READY && r->f->procs[0]->ship_pid > 0;
}

static bool roll_over(const rig *r)
{
    return r->done;
}

static void on_done(void *arg, const ms_roll_outcome *o)
{
    rig *r = arg;
    r->done = true;
    r->ok = o->ok;
    snprintf(r->why, sizeof r->why, "%s", o->why);
}

static void roll(rig *r)
{
    size_t idx[1] = { 0 };
    char why[256];
    r->done = false;
    assert_non_null(ms_roll_start(r->f, idx, 1, "test", on_done, r, why, sizeof why));
    /* a second one while it runs is refused */
    assert_null(ms_roll_start(r->f, idx, 1, "test", on_done, r, why, sizeof why));
    assert_string_equal(why, "ship \"web\" is already rolling");
}

static void test_a_surge_swaps_in_the_twin_and_stops_the_old_one(void **state)
{
    (void)state;
    rig r;
    rig_up(&r, false);
    run_until(&r, web_ready, 10000, "web ready");
    ms_proc *old = r.f->procs[0];
    int old_pid = old->ship_pid;
    assert_int_equal(old->parity, 0);
    roll(&r);
    run_until(&r, roll_over, 15000, "the roll");
    assert_true(r.ok);
    ms_proc *nu = r.f->procs[0];
    assert_ptr_not_equal(nu, old);
    assert_ptr_equal(nu->twin, old);
    assert_ptr_equal(old->twin, nu);
    assert_int_equal(nu->parity, 1);
    assert_int_equal(nu->state, MS_P_READY);
    assert_true(nu->ship_pid > 0 && nu->ship_pid != old_pid);
    assert_int_equal(old->pid, 0);
    assert_int_equal(old->state, MS_P_STOPPED);
    assert_int_equal(old->draining, 0);
    assert_int_equal(nu->restarts, 1);
    /* and back: the first process struct takes parity 0 again */
    int second_pid = nu->ship_pid;
    roll(&r);
    run_until(&r, roll_over, 15000, "the second roll");
    assert_true(r.ok);
    assert_ptr_equal(r.f->procs[0], old);
    assert_int_equal(old->parity, 0);
    assert_int_equal(old->state, MS_P_READY);
    assert_true(old->ship_pid > 0 && old->ship_pid != second_pid && old->ship_pid != old_pid);
    assert_int_equal(nu->pid, 0);
    assert_int_equal(r.f->phase, MS_FLEET_RUNNING);
    rig_down(&r);
}

static bool swapped(const rig *r)
{
    return r->f->procs[0]->parity == 1;
}

static void test_the_old_process_stops_once_its_requests_are_done(void **state)
{
    (void)state;
    rig r;
    rig_up(&r, false);
    run_until(&r, web_ready, 10000, "web ready");
    ms_proc *old = r.f->procs[0];
    __atomic_store_n(&old->inflight, 1, __ATOMIC_RELEASE); /* as the data plane does */
    roll(&r);
    run_until(&r, swapped, 10000, "the swap");
    assert_int_equal(__atomic_load_n(&old->draining, __ATOMIC_ACQUIRE), 1);
    /* it still serves what it has: a few ticks of the roll later it runs */
    uint64_t until = uv_now(&r.loop) + 200;
    while (uv_now(&r.loop) < until)
        uv_run(&r.loop, UV_RUN_ONCE);
    assert_true(old->pid > 0);
    assert_false(r.done);
    __atomic_store_n(&old->inflight, 0, __ATOMIC_RELEASE);
    run_until(&r, roll_over, 10000, "the roll");
    assert_true(r.ok);
    assert_int_equal(old->pid, 0);
    assert_int_equal(old->draining, 0);
    rig_down(&r);
}

static void test_a_twin_that_fails_leaves_the_old_one_serving(void **state)
{
    (void)state;
    rig r;
    rig_up(&r, true); /* critical too: a failed surge must not stop the fleet */
    run_until(&r, web_ready, 10000, "web ready");
    ms_proc *old = r.f->procs[0];
    int old_pid = old->ship_pid;
    roll(&r);
    run_until(&r, roll_over, 15000, "the roll");
    assert_false(r.ok);
    assert_string_equal(r.why, "the new process exited with status 3 before it was ready");
    assert_ptr_equal(r.f->procs[0], old);
    assert_int_equal(old->state, MS_P_READY);
    assert_int_equal(old->ship_pid, old_pid);
    assert_int_equal(old->draining, 0);
    assert_int_equal(old->ready_flag, 1);
    assert_non_null(old->twin);
    assert_int_equal(old->twin->pid, 0);
    assert_int_equal(r.f->phase, MS_FLEET_RUNNING);
    /* the twin was not restarted by policy: after its backoff it is still down */
    rig_down(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_surge_swaps_in_the_twin_and_stops_the_old_one),
        cmocka_unit_test(test_the_old_process_stops_once_its_requests_are_done),
        cmocka_unit_test(test_a_twin_that_fails_leaves_the_old_one_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
