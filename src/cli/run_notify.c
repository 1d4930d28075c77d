/* run_notify.c: `mothership run` and the service manager (see
 * run_notify.h). */
#include "cli/run_notify.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/run.h"
#include "util/sdnotify.h"

#define STATUS_EVERY_MS 2000

struct ms_run_notify {
    ms_run *r;
    ms_sdnotify sd;
    uv_timer_t watchdog, status;
    int open_timers;
    bool ready_sent; /* READY=1 said once: the fleet was ready */
    bool stopping_sent;
    bool reloading;
    bool failure_logged; /* a send failed and was logged (once: the socket may be gone for good) */
    char last_status[192];
    uint64_t last_requests; /* for req/s: the total at the last status tick */
    uint64_t last_tick;     /* uv_now of that tick; 0 before the first */
    uint64_t rate;          /* req/s over the last tick */
};

static uint64_t requests_total(const ms_run *r)
{
    return r->dp ? ms_dataplane_requests_total(r->dp) : 0;
}

/* "launching: 1/3 up", "3/3 up, 1 bind, 12 req/s", "stopping", ... */
static void summary(ms_run_notify *n, char *out, size_t len)
{
    const ms_run *r = n->r;
    const ms_fleet *f = r->fleet;
    size_t up = 0, total = 0;
    for (size_t i = 0; f && i < f->n; i++) {
        if (!f->procs[i]->selected)
            continue;
        total++;
        up += ms_fleet_entry_up(f->procs[i]);
    }
    size_t binds = r->m ? r->m->global.nbinds : 0;
    const char *phase = "";
    if (!f || f->phase == MS_FLEET_LAUNCHING)
        phase = "launching: ";
    else if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        phase = "stopping: ";
    else if (n->reloading)
        phase = "reloading: ";
    snprintf(out, len, "%s%zu/%zu up, %zu bind%s, %llu req/s", phase, up, total, binds, binds == 1 ? "" : "s",
             (unsigned long long)n->rate);
}

/* msg (may be empty) plus the current STATUS= line, in one datagram. */
static void send_with_status(ms_run_notify *n, const char *msg)
{
    char status[sizeof n->last_status];
    summary(n, status, sizeof status);
    char buf[512];
    snprintf(buf, sizeof buf, "%sSTATUS=%s", msg, status);
    snprintf(n->last_status, sizeof n->last_status, "%s", status);
    int rc = ms_sdnotify_send(&n->sd, buf);
    if (rc < 0 && !n->failure_logged) {
        n->failure_logged = true;
        ms_log_event(n->r->log, MS_WARN, NULL, "notify_failed",
                     "cannot notify the service manager: %s (not logged again)", uv_strerror(rc));
    }
}

static void on_watchdog(uv_timer_t *t)
{
    ms_run_notify *n = t->data;
    (void)ms_sdnotify_send(&n->sd, "WATCHDOG=1");
}

static void send_ready(ms_run_notify *n)
{
    char msg[64];
    snprintf(msg, sizeof msg, "READY=1\nMAINPID=%ld\n", (long)getpid());
    n->ready_sent = true;
    send_with_status(n, msg);
}

static void on_status(uv_timer_t *t)
{
    ms_run_notify *n = t->data;
    uint64_t now = uv_now(n->r->loop), total = requests_total(n->r);
    if (n->last_tick && now > n->last_tick) /* a slot given to a new entry starts again from 0 */
        n->rate = total >= n->last_requests ? (total - n->last_requests) * 1000 / (now - n->last_tick) : 0;
    n->last_tick = now;
    n->last_requests = total;
    if (!n->ready_sent && n->r->fleet && ms_fleet_ready(n->r->fleet)) {
        send_ready(n); /* ready later than the launch's end (a critical entry came up since) */
        return;
    }
    char status[sizeof n->last_status];
    summary(n, status, sizeof status);
    if (strcmp(status, n->last_status) != 0)
        send_with_status(n, "");
}

ms_run_notify *ms_run_notify_start(ms_run *r)
{
    ms_sdnotify sd;
    char why[256];
    if (!ms_sdnotify_open(&sd, why, sizeof why)) {
        if (why[0])
            ms_log_event(r->log, MS_WARN, NULL, "notify_failed", "%s; the service manager is not told anything", why);
        return NULL;
    }
    ms_run_notify *n = calloc(1, sizeof *n);
    if (!n) {
        ms_sdnotify_close(&sd);
        return NULL;
    }
    n->r = r;
    n->sd = sd;
    uv_timer_init(r->loop, &n->status);
    n->status.data = n;
    uv_timer_start(&n->status, on_status, STATUS_EVERY_MS, STATUS_EVERY_MS);
    uv_unref((uv_handle_t *)&n->status);
    n->open_timers = 1;
    if (sd.watchdog_usec) {
        uint64_t every_ms = sd.watchdog_usec / 2000;
        uv_timer_init(r->loop, &n->watchdog);
        n->watchdog.data = n;
        uv_timer_start(&n->watchdog, on_watchdog, 0, every_ms ? every_ms : 1);
        uv_unref((uv_handle_t *)&n->watchdog);
        n->open_timers++;
    }
    send_with_status(n, "");
    return n;
}

void ms_run_notify_fleet(ms_run_notify *n)
{
    if (!n || !n->r->fleet)
        return;
    const ms_fleet *f = n->r->fleet;
    if ((f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) && !n->stopping_sent) {
        n->stopping_sent = true;
        send_with_status(n, "STOPPING=1\n");
    } else if (!n->ready_sent && ms_fleet_ready(f)) {
        send_ready(n);
    }
}

void ms_run_notify_reloading(ms_run_notify *n)
{
    if (!n || !n->ready_sent || n->stopping_sent || n->reloading)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock systemd compares it with */
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\n",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull);
    n->reloading = true;
    send_with_status(n, msg);
}

void ms_run_notify_reloaded(ms_run_notify *n)
{
    if (!n || !n->reloading)
        return;
    n->reloading = false;
    if (!n->stopping_sent)
        send_with_status(n, "READY=1\n");
}

static void on_timer_closed(uv_handle_t *h)
{
    ms_run_notify *n = h->data;
    assert(n->open_timers > 0);
    if (--n->open_timers == 0)
        free(n);
}

void ms_run_notify_close(ms_run_notify *n)
{
    if (!n)
        return;
    ms_sdnotify_close(&n->sd);
    if (n->sd.watchdog_usec)
        uv_close((uv_handle_t *)&n->watchdog, on_timer_closed);
    uv_close((uv_handle_t *)&n->status, on_timer_closed);
}
