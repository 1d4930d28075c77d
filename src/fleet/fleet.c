/* fleet.c: the supervisor's state machine (see fleet.h). Everything here
 * runs on the control loop. A process moves
 *   WAITING -> STARTING -> READY -> (exit) -> BACKOFF -> STARTING ...
 * with DONE/FAILED/SKIPPED for jobs and dependencies, and STOPPING ->
 * STOPPED when Mothership stops it. Launch order comes from depends_on;
 * shutdown goes dependents-first. An upstream ([[mothership.upstreams]])
 * is not a process of ours: WAITING -> READY when its turn comes, and it
 * stays so (no spawn, no stop, no restart). */
#include "fleet/fleet.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fleet/ports.h"
#include "fleet/process.h"
#include "fleet/roll.h"
#include "fleet/shim.h"
#include "util/cron.h"
#include "util/strutil.h"

#define PROBE_RETRY_FIRST_MS 50
#define PROBE_RETRY_MAX_MS 500
#define PROBE_TIMEOUT_MS 1000
#define HOLD_LOG_EVERY_MS 2000
#define REAP_EVERY_MS 5000
#define PORT_LEFTOVER_MS 1000
#define PORT_RECHECK_MS 50

static void schedule(ms_fleet *f);
static void reap_orphans(ms_fleet *f);
static void continue_shutdown(ms_fleet *f);
static void start_proc(ms_proc *p);
static void stop_proc(ms_proc *p);
static void health_tick(uv_timer_t *t);
static void stop_retired(ms_fleet *f);

const char *ms_pstate_name(ms_pstate s)
{
    static const char *const names[] = { "waiting", "starting", "ready", "backoff", "done",
                                         "failed", "skipped", "stopping", "stopped", "scheduled" };
    return names[s];
}

const char *ms_breaker_name(ms_breaker b)
{
    static const char *const names[] = { "closed", "open", "half-open" };
    return names[b];
}

static const char *kind_word(const ms_proc *p)
{
    if (p->ship->kind == MS_UPSTREAM)
        return "upstream";
    return p->ship->kind == MS_BAY ? "bay" : p->ship->oneshot ? "job" : "ship";
}

static void set_ready_flag(ms_proc *p, int v)
{
    __atomic_store_n(&p->ready_flag, v, __ATOMIC_RELEASE);
}

static void set_healthy(ms_proc *p, int v)
{
    __atomic_store_n(&p->healthy, v, __ATOMIC_RELEASE);
}

static void set_breaker(ms_proc *p, ms_breaker b)
{
    __atomic_store_n(&p->breaker, (int)b, __ATOMIC_RELEASE);
}

static bool running(const ms_proc *p)
{
    return p->pid > 0;
}

/* Where p listens: the ship's bind, or bind_alt for a surge process. */
static const ms_addr *proc_bind(const ms_proc *p)
{
    return p->parity && p->ship->has_bind_alt ? &p->ship->bind_alt : &p->ship->bind;
}

/* p is an entry's twin that is not its process now (a surge that is
 * starting, or the old one after the swap): the roll owns it; it is
 * never restarted by policy, nor does it stop the fleet. */
static bool spare(const ms_proc *p)
{
    const ms_fleet *f = p->fleet;
    return p->twin && !p->retired && (p->index >= f->n || f->procs[p->index] != p);
}

/* Walks an entry's processes: for (p = f->procs[i]; p; p = pair_next(f->procs[i], p)) sees it and its twin. */
static ms_proc *pair_next(const ms_proc *first, const ms_proc *cur)
{
    return cur == first ? first->twin : NULL;
}

/* The pid users see: the ship's own process; the shim's only if the shim
 * never got as far as starting it. */
static int shown_pid(ms_proc *p)
{
    int pid = ms_process_ship_pid(p);
    return pid > 0 ? pid : p->pid;
}

static void mark_ready(ms_proc *p, const char *how);

/* "started (pid N)" once per run, as soon as the shim's report of the pid is
 * in, and before anything else is said about the run; a readiness that came
 * first goes on from here. */
void ms_fleet_on_ship_pid(ms_proc *p)
{
    if (!running(p))
        return;
    int pid = ms_process_ship_pid(p);
    if (!p->started_logged && pid > 0) {
        p->started_logged = true;
        ms_log_field pf = ms_log_num("pid", pid);
        ms_log_event_fields(p->fleet->log, MS_INFO, p->ship->name, "started", &pf, 1, "%s \"%s\" started (pid %d)",
                            kind_word(p), p->ship->name, pid);
    }
    if (pid >= 0 && p->ready_deferred)
        mark_ready(p, p->ready_how);
}

/* The signal that stops p: its stop_signal, SIGTERM unless set. */
static int stop_signal_of(const ms_proc *p)
{
    const ms_ship *s = p->stop_as ? p->stop_as : p->ship;
    return s->stop_signal > 0 ? s->stop_signal : SIGTERM;
}

/* "SIGINT" for 2. */
static const char *signal_name(int sig, char *buf, size_t cap)
{
    const char *abbrev = sig > 0 && sig < NSIG ? sigabbrev_np(sig) : NULL;
    if (abbrev)
        snprintf(buf, cap, "SIG%s", abbrev);
    else
        snprintf(buf, cap, "signal %d", sig);
    return buf;
}

/* Describe an exit: "exited with status 3", "was killed by SIGKILL". */
static void exit_words(int64_t status, int sig, char *out, size_t cap)
{
    if (sig)
        snprintf(out, cap, "was killed by signal %d (%s)", sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    else
        snprintf(out, cap, "exited with status %lld", (long long)status);
}

/* ---------------------------------------------------------------- timers and probes */
static void cancel_activity(ms_proc *p)
{
    p->ready_deferred = false;
    if (p->timers_open) {
        uv_timer_stop(&p->timer);
        uv_timer_stop(&p->deadline);
        uv_timer_stop(&p->health_timer);
    }
    ms_probe_cancel(p->probe);
    p->probe = NULL;
    ms_probe_cancel(p->health_probe);
    p->health_probe = NULL;
}

/* ---------------------------------------------------------------- readiness */
static void mark_ready(ms_proc *p, const char *how)
{
    ms_fleet *f = p->fleet;
    if (p->state != MS_P_STARTING)
        return;
    if (ms_process_ship_pid(p) < 0) {
        /* "started (pid N)" comes first: ready once the shim's report is in */
        snprintf(p->ready_how, sizeof p->ready_how, "%s", how);
        p->ready_deferred = true;
        return;
    }
    p->ready_deferred = false;
    ms_fleet_on_ship_pid(p);
    p->state = MS_P_READY;
    p->settled = true;
    p->ready_at = uv_now(f->loop);
    uv_timer_stop(&p->deadline);
    set_ready_flag(p, 1);
    ms_log_field rf = ms_log_num("ms", (int64_t)(p->ready_at - p->started_at));
    ms_log_event_fields(f->log, MS_INFO, p->ship->name, "ready", &rf, 1, "%s \"%s\" ready in %llums (%s)", kind_word(p),
                        p->ship->name, (unsigned long long)(p->ready_at - p->started_at), how);
    if (p->ship->health.enabled) {
        /* the readiness probe was a passing health check */
        set_healthy(p, 1);
        set_breaker(p, MS_BREAKER_CLOSED);
        p->health_fail_run = 0;
        p->health_ok_run = 1;
        uv_timer_start(&p->health_timer, health_tick, p->ship->health.interval_ms, p->ship->health.interval_ms);
    }
    schedule(f);
}

static void ready_probe_start(ms_proc *p);

/* Where the healthcheck goes: its own address, else the bind. */
static const char *check_address(const ms_proc *p)
{
    const ms_health *h = &p->ship->health;
    if (p->parity && p->ship->has_bind_alt)
        return h->has_address && h->has_address_alt ? h->address_alt.text : proc_bind(p)->text;
    return h->has_address ? h->address.text : proc_bind(p)->text;
}

static void on_probe_retry(uv_timer_t *t)
{
    ready_probe_start(t->data);
}

/* "127.0.0.1:3000", "[::1]:3000". */
static const char *host_port(const ms_addr *a, char *buf, size_t cap)
{
    snprintf(buf, cap, strchr(a->host, ':') ? "[%.100s]:%u" : "%.100s:%u", a->host, (unsigned)a->port);
    return buf;
}

/* A probe of a ship's TCP bind reached a listener: is it the ship's? One
 * held by a process that was there before the ship started, outside its
 * tree, is a stranger's (the ship will fail to bind). A process started
 * after the ship, outside its tree, is taken for a proxy it asked for (the
 * docker-proxy of `docker run -p`); none seen in /proc: as before. */
static bool answered_by_stranger(ms_proc *p, char *why, size_t why_len)
{
    if (p->ship->kind != MS_SHIP || !p->ship->has_bind || proc_bind(p)->kind != MS_ADDR_TCP || p->target.is_unix)
        return false;
    ms_port_holder h;
    if (ms_port_owner_of(&p->target.sa, p->pid, &h) != MS_PORT_OWNER_STRANGER)
        return false;
    char where[128];
    snprintf(why, why_len, "%s is answered by pid %d (%.120s), not by the %s's own processes",
             host_port(proc_bind(p), where, sizeof where), h.pid, h.command, kind_word(p));
    if (!p->stranger_logged) {
        p->stranger_logged = true;
        ms_log_event(p->fleet->log, MS_WARN, p->ship->name, "port_stranger", "%s \"%s\": %s; not ready", kind_word(p),
                     p->ship->name, why);
    }
    return true;
}

static void on_ready_probe(void *arg, bool ok, int status, const char *error)
{
    ms_proc *p = arg;
    p->probe = NULL;
    if (p->state != MS_P_STARTING)
        return;
    char stranger[sizeof p->last_health_error];
    if (ok && answered_by_stranger(p, stranger, sizeof stranger)) {
        ok = false;
        error = stranger;
    }
    if (ok) {
        char how[512]; /* the error may be a stranger's description (320 bytes) */
        if (p->ship->health.enabled && p->ship->health.protocol == MS_HEALTH_HTTP)
            snprintf(how, sizeof how, "GET %s answered %d", p->ship->health.path, status);
        else if (p->ship->health.enabled)
            snprintf(how, sizeof how, "%s check on %s passed: %s", ms_health_protocol_name(p->ship->health.protocol),
                     check_address(p), error ? error : "ok");
        else if (p->ship->kind == MS_BAY)
            snprintf(how, sizeof how, "its socket %s accepts connections", p->socket_path);
        else
            snprintf(how, sizeof how, "%s accepts connections", proc_bind(p)->text);
        mark_ready(p, how);
        return;
    }
    snprintf(p->last_health_error, sizeof p->last_health_error, "%s", error ? error : "not ready");
    /* retry with a gentle backoff: 50ms, 100ms, ... 500ms */
    uint64_t since = uv_now(p->fleet->loop) - p->started_at;
    uint64_t delay = since < 1000 ? PROBE_RETRY_FIRST_MS : since < 5000 ? 200 : PROBE_RETRY_MAX_MS;
    uv_timer_start(&p->timer, on_probe_retry, delay, 0);
}

static void ready_probe_start(ms_proc *p)
{
    if (p->state != MS_P_STARTING || p->probe)
        return;
    const ms_health *check = p->ship->kind == MS_SHIP && p->ship->health.enabled ? &p->ship->health : NULL;
    uint64_t timeout = check ? check->timeout_ms : PROBE_TIMEOUT_MS;
    p->probe = ms_probe_start(p->fleet->loop, &p->target, check, timeout, on_ready_probe, p);
    if (!p->probe)
        uv_timer_start(&p->timer, on_probe_retry, PROBE_RETRY_MAX_MS, 0);
}

static void on_worker_grace(uv_timer_t *t)
{
    ms_proc *p = t->data;
    char how[64];
    snprintf(how, sizeof how, "up for %llums", (unsigned long long)p->ship->ready_after_ms);
    mark_ready(p, how);
}

static const char *awaited(const ms_proc *p, char *buf, size_t cap)
{
    if (p->ship->oneshot)
        snprintf(buf, cap, "waiting for it to exit");
    else if (p->ship->health.enabled && p->ship->health.protocol == MS_HEALTH_HTTP)
        snprintf(buf, cap, "waiting for GET %s on %s to answer 2xx/3xx; last: %s", p->ship->health.path,
                 check_address(p), p->last_health_error[0] ? p->last_health_error : "no answer");
    else if (p->ship->health.enabled)
        snprintf(buf, cap, "waiting for the %s check on %s to pass; last: %s",
                 ms_health_protocol_name(p->ship->health.protocol), check_address(p),
                 p->last_health_error[0] ? p->last_health_error : "no answer");
    else if (p->ship->kind == MS_BAY && p->fleet->bay_started)
        snprintf(buf, cap, "waiting for it to dock on %s; last: %s", p->socket_path,
                 p->last_health_error[0] ? p->last_health_error : "no connection yet");
    else if (p->ship->kind == MS_BAY)
        snprintf(buf, cap, "waiting for its socket %s to accept connections; last: %s", p->socket_path,
                 p->last_health_error[0] ? p->last_health_error : "no answer");
    else if (p->ship->has_bind)
        snprintf(buf, cap, "waiting for %s to accept connections; last: %s", proc_bind(p)->text,
                 p->last_health_error[0] ? p->last_health_error : "no answer");
    else
        snprintf(buf, cap, "waiting for it to stay up %llums", (unsigned long long)p->ship->ready_after_ms);
    return buf;
}

static void on_ready_timeout(uv_timer_t *t)
{
    ms_proc *p = t->data;
    ms_fleet *f = p->fleet;
    if (p->state != MS_P_STARTING)
        return;
    char what[400];
    ms_log_event(f->log, MS_ERROR, p->ship->name, "ready_timeout", "%s \"%s\" not ready after %llums (%s)",
                 kind_word(p), p->ship->name, (unsigned long long)p->ship->ready_timeout_ms,
                 awaited(p, what, sizeof what));
    cancel_activity(p);
    if (p->ship->critical && !spare(p)) {
        char why[200];
        snprintf(why, sizeof why, "%s \"%s\" did not become ready", kind_word(p), p->ship->name);
        ms_fleet_shutdown(f, 1, why);
    } else {
        /* treated as a crash: killed, then restarted with backoff */
        ms_process_signal(p, SIGKILL);
    }
}

/* ---------------------------------------------------------------- health checks */

static void on_health(void *arg, bool ok, int status, const char *error)
{
    ms_proc *p = arg;
    ms_fleet *f = p->fleet;
    (void)status;
    p->health_probe = NULL;
    if (p->state != MS_P_READY)
        return;
    const ms_health *h = &p->ship->health;
    uint64_t now = uv_now(f->loop);
    p->health_checks++;
    if (ok) {
        p->health_fail_run = 0;
        p->health_ok_run++;
        p->last_health_error[0] = '\0';
        if (p->breaker == MS_BREAKER_OPEN)
            return; /* an open breaker waits out its cooldown, then half-opens */
        if (p->health_ok_run >= h->successes && (p->healthy != 1 || p->breaker != MS_BREAKER_CLOSED)) {
            bool was_unhealthy = p->healthy == 0;
            set_healthy(p, 1);
            set_breaker(p, MS_BREAKER_CLOSED);
            if (was_unhealthy)
                ms_log_event(f->log, MS_INFO, p->ship->name, "healthy",
                             "ship \"%s\" is healthy again; circuit closed", p->ship->name);
        }
        return;
    }
    p->health_failures++;
    snprintf(p->last_health_error, sizeof p->last_health_error, "%s", error ? error : "failed");
    if (now - p->started_at < h->grace_ms)
        return; /* start-up grace: failures do not count yet */
    p->health_ok_run = 0;
    p->health_fail_run++;
    if (p->breaker == MS_BREAKER_HALF_OPEN) {
        set_breaker(p, MS_BREAKER_OPEN);
        p->breaker_opened_at = now;
        ms_log_event(f->log, MS_WARN, p->ship->name, "breaker_open",
                     "ship \"%s\" still failing its health check (%s); circuit open again", p->ship->name,
                     p->last_health_error);
        return;
    }
    if (p->health_fail_run >= h->failures && p->healthy != 0) {
        set_healthy(p, 0);
        set_breaker(p, MS_BREAKER_OPEN);
        p->breaker_opened_at = now;
        char check[160];
        if (h->protocol == MS_HEALTH_HTTP)
            snprintf(check, sizeof check, "GET %s", h->path);
        else
            snprintf(check, sizeof check, "the %s check on %s", ms_health_protocol_name(h->protocol),
                     check_address(p));
        ms_log_event(f->log, MS_WARN, p->ship->name, "unhealthy",
                     "ship \"%s\" is unhealthy: %s failed %u times in a row (%s); circuit open",
                     p->ship->name, check, p->health_fail_run, p->last_health_error);
        if (h->restart && !spare(p)) {
            ms_log_event(f->log, MS_WARN, p->ship->name, "restart", "restarting ship \"%s\" (healthcheck.restart)",
                         p->ship->name);
            ms_fleet_restart_proc(f, p->index);
        }
    }
}

static void health_tick(uv_timer_t *t)
{
    ms_proc *p = t->data;
    ms_fleet *f = p->fleet;
    if (p->state != MS_P_READY || p->health_probe)
        return;
    const ms_health *h = &p->ship->health;
    uint64_t now = uv_now(f->loop);
    if (p->breaker == MS_BREAKER_OPEN && now - p->breaker_opened_at >= h->cooldown_ms) {
        set_breaker(p, MS_BREAKER_HALF_OPEN);
        ms_log_event(f->log, MS_INFO, p->ship->name, "breaker_half_open", "ship \"%s\": circuit half-open",
                     p->ship->name);
    }
    p->health_probe = ms_probe_start(f->loop, &p->target, h, h->timeout_ms, on_health, p);
}

/* ---------------------------------------------------------------- start */
/* Before a restart: the last run's processes got SIGKILL, but one that
 * held the listener may take a moment more to be gone. Wait for the port
 * up to PORT_LEFTOVER_MS; then start_proc says who holds it. */
static bool port_settled(ms_proc *p)
{
    const ms_ship *s = p->ship;
    if (s->kind != MS_SHIP || !s->has_bind || proc_bind(p)->kind != MS_ADDR_TCP ||
        ms_port_free(proc_bind(p), &p->target.sa, NULL)) {
        p->port_wait_since = 0;
        return true;
    }
    uint64_t now = uv_now(p->fleet->loop);
    if (p->port_wait_since == 0)
        p->port_wait_since = now;
    if (now - p->port_wait_since < PORT_LEFTOVER_MS)
        return false;
    p->port_wait_since = 0;
    return true;
}

static void on_backoff_done(uv_timer_t *t)
{
    ms_proc *p = t->data;
    if (p->state != MS_P_BACKOFF)
        return;
    if (p->process_open) { /* the last run's handle is still closing */
        uv_timer_start(&p->timer, on_backoff_done, 10, 0);
        return;
    }
    if (!port_settled(p)) {
        uv_timer_start(&p->timer, on_backoff_done, PORT_RECHECK_MS, 0);
        return;
    }
    if (!p->reload_restart)
        p->restarts++;
    p->reload_restart = false;
    p->loop_paused = false;
    start_proc(p);
}

static void record_crash_and_backoff(ms_proc *p, const char *what)
{
    ms_fleet *f = p->fleet;
    const ms_restart *r = &p->ship->restart;
    uint64_t now = uv_now(f->loop);
    if (p->started_at && now - p->started_at >= r->reset_after_ms)
        p->crashes_in_row = 0;
    /* crash-loop breaker: loop_limit crashes within loop_window */
    size_t cap = sizeof p->crash_times / sizeof p->crash_times[0];
    p->crash_times[(p->crash_head + p->crash_count) % cap] = now;
    if (p->crash_count < cap)
        p->crash_count++;
    else
        p->crash_head = (p->crash_head + 1) % cap;
    size_t recent = 0;
    for (size_t i = 0; i < p->crash_count; i++)
        if (now - p->crash_times[(p->crash_head + i) % cap] <= r->loop_window_ms)
            recent++;
    uint64_t delay;
    if (recent >= r->loop_limit) {
        delay = r->loop_pause_ms;
        p->loop_paused = true;
        p->crash_count = 0;
        p->crashes_in_row = 0;
        ms_log_field cf[] = { ms_log_num("crashes", (int64_t)recent), ms_log_num("pause_ms", (int64_t)delay) };
        ms_log_event_fields(f->log, MS_ERROR, p->ship->name, "crash_loop", cf, 2,
                            "%s \"%s\" %s: %zu crashes within %llums; crash loop: pausing restarts for %llums",
                            kind_word(p), p->ship->name, what, recent, (unsigned long long)r->loop_window_ms,
                            (unsigned long long)delay);
    } else {
        delay = r->backoff_ms;
        for (unsigned i = 0; i < p->crashes_in_row && delay < r->max_backoff_ms; i++)
            delay *= 2;
        if (delay > r->max_backoff_ms)
            delay = r->max_backoff_ms;
        /* jitter: +-20% so that ships crashing together do not restart together */
        if (delay >= 10) {
            uint64_t span = delay / 5;
            delay = delay - span + (uint64_t)rand() % (2 * span + 1);
        }
        p->crashes_in_row++;
        ms_log_field bf[] = { ms_log_num("delay_ms", (int64_t)delay), ms_log_num("attempt", p->restarts + 1) };
        ms_log_event_fields(f->log, MS_WARN, p->ship->name, "backoff", bf, 2,
                            "%s \"%s\" %s; restarting in %llums (attempt %u)", kind_word(p), p->ship->name, what,
                            (unsigned long long)delay, p->restarts + 1);
    }
    p->state = MS_P_BACKOFF;
    p->settled = true; /* gave up once: it no longer holds the launch */
    p->backoff_until = now + delay;
    uv_timer_start(&p->timer, on_backoff_done, delay, 0);
}

/* A ship whose TCP port another process listens on would fail to bind
 * while the other one answers in its place: not started, like a command
 * that is not found. */
static bool port_free(ms_proc *p, char *why, size_t why_len)
{
    const ms_ship *s = p->ship;
    if (s->kind != MS_SHIP || !s->has_bind || proc_bind(p)->kind != MS_ADDR_TCP)
        return true;
    ms_port_holder h;
    if (ms_port_free(proc_bind(p), &p->target.sa, &h))
        return true;
    char where[128];
    host_port(proc_bind(p), where, sizeof where);
    if (h.pid > 0)
        snprintf(why, why_len, "%s is already in use by pid %d (%.120s)", where, h.pid, h.command);
    else
        snprintf(why, why_len, "%s is already in use by another process", where);
    return false;
}

/* ---------------------------------------------------------------- schedules */
int64_t ms_fleet_wall_ms(const ms_fleet *f)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t real = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (f->clock_scale <= 1)
        return real;
    return f->clock_base_ms + (real - f->clock_base_ms) * (int64_t)f->clock_scale;
}

/* $MS_TEST_TIME_SCALE (tests only, see clock_scale): a whole number from
 * 1 to 3600, said aloud when it speeds schedules up; anything else is
 * ignored, with a warning, rather than read as some other speed. */
static unsigned clock_scale_from_env(ms_log *log)
{
    const char *s = getenv("MS_TEST_TIME_SCALE");
    if (!s || !*s)
        return 0;
    unsigned v = 0;
    size_t n = 0;
    while (n < 5 && s[n] >= '0' && s[n] <= '9')
        v = v * 10 + (unsigned)(s[n++] - '0');
    if (s[n] || v < 1 || v > 3600) {
        ms_log_event(log, MS_WARN, NULL, "schedule", "MS_TEST_TIME_SCALE \"%.20s\" ignored (a test-only whole "
                     "number from 1 to 3600): schedules follow real time", s);
        return 0;
    }
    if (v > 1)
        ms_log_event(log, MS_WARN, NULL, "schedule", "schedules run %u times faster than real time "
                     "(MS_TEST_TIME_SCALE, for tests only)", v);
    return v;
}

/* "2026-03-10 04:05 CET" */
static void local_minute(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M %Z", &tm))
        snprintf(buf, cap, "@%lld", (long long)t);
}

static void on_cron(uv_timer_t *t);

/* Set p's timer for its schedule's next match after now; next_run 0 when
 * it has none. */
static void cron_arm(ms_proc *p)
{
    ms_fleet *f = p->fleet;
    ms_cron c;
    char why[200];
    p->next_run = 0;
    if (!p->timers_open)
        return;
    uv_timer_stop(&p->health_timer);
    if (!p->ship->schedule || !ms_cron_parse(p->ship->schedule, &c, why, sizeof why))
        return; /* the manifest was checked: not a schedule any more */
    int64_t now = ms_fleet_wall_ms(f);
    time_t next = ms_cron_next(&c, (time_t)(now / 1000));
    if (next < 0) {
        ms_log_event(f->log, MS_WARN, p->ship->name, "schedule", "job \"%s\": \"%s\" matches no time in the "
                     "next ten years", p->ship->name, p->ship->schedule);
        return;
    }
    p->next_run = (int64_t)next;
    int64_t scale = f->clock_scale > 1 ? f->clock_scale : 1;
    int64_t delay = ((int64_t)next * 1000 - now + scale - 1) / scale;
    uv_timer_start(&p->health_timer, on_cron, delay > 0 ? (uint64_t)delay : 1, 0);
}

/* p waits for its schedule's next match: scheduled, settled, its timer
 * set. when (if not NULL) gets that match in words, "never" if none. */
static void cron_wait(ms_proc *p, char *when, size_t cap)
{
    p->state = MS_P_SCHEDULED;
    p->settled = true;
    cron_arm(p);
    if (!when)
        return;
    if (p->next_run)
        local_minute(p->next_run, when, cap);
    else
        snprintf(when, cap, "never");
}

static void on_cron(uv_timer_t *t)
{
    ms_proc *p = t->data;
    ms_fleet *f = p->fleet;
    if ((f->phase != MS_FLEET_LAUNCHING && f->phase != MS_FLEET_RUNNING) || !p->selected || !p->ship->schedule)
        return;
    int64_t now = ms_fleet_wall_ms(f);
    if (now < p->next_run * 1000) { /* early by a rounding: wait for the minute */
        int64_t scale = f->clock_scale > 1 ? f->clock_scale : 1;
        uv_timer_start(&p->health_timer, on_cron, (uint64_t)((p->next_run * 1000 - now + scale - 1) / scale), 0);
        return;
    }
    char when[64];
    local_minute(p->next_run, when, sizeof when);
    if (p->state == MS_P_SCHEDULED) {
        ms_log_event(f->log, MS_INFO, p->ship->name, "schedule", "job \"%s\": its %s run", p->ship->name, when);
        start_proc(p); /* sets the timer for the next match */
        return;
    }
    if (running(p) || p->state == MS_P_BACKOFF) {
        p->runs_skipped++;
        ms_log_event(f->log, MS_WARN, p->ship->name, "schedule_skipped", "job \"%s\" is still running at its %s "
                     "run: skipped (%u so far)", p->ship->name, when, p->runs_skipped);
    }
    cron_arm(p); /* stopped by the user: no run, but the next time is known */
}

/* A scheduled job is due: it waits for its first match instead of starting. */
static void cron_begin(ms_proc *p)
{
    char when[64];
    cron_wait(p, when, sizeof when);
    ms_log_event(p->fleet->log, MS_INFO, p->ship->name, "scheduled", "job \"%s\" scheduled (\"%s\"): next run %s",
                 p->ship->name, p->ship->schedule, when);
}

/* After a reload: a changed schedule takes effect at once, a job that
 * gains one waits for it, one that loses it is done. */
static void cron_reloaded(ms_proc *p)
{
    if (!p->selected || p->retired)
        return;
    if (p->state == MS_P_SCHEDULED && !p->ship->schedule) {
        uv_timer_stop(&p->health_timer);
        p->next_run = 0;
        p->state = MS_P_DONE;
    } else if (p->state == MS_P_SCHEDULED || (running(p) && p->ship->schedule)) {
        cron_arm(p);
    } else if (p->ship->schedule && p->ship->oneshot && (p->state == MS_P_DONE || p->state == MS_P_FAILED)) {
        cron_begin(p);
    } else if (running(p) && p->ship->oneshot && !p->ship->schedule) {
        uv_timer_stop(&p->health_timer);
        p->next_run = 0;
    }
}

/* An upstream runs without us: it is ready as soon as it is "started". */
static void upstream_alongside(ms_proc *p)
{
    ms_fleet *f = p->fleet;
    assert(p->ship->kind == MS_UPSTREAM && !running(p));
    p->state = MS_P_READY;
    p->settled = true;
    p->started_at = p->ready_at = uv_now(f->loop);
    set_healthy(p, -1);
    set_breaker(p, MS_BREAKER_CLOSED);
    set_ready_flag(p, 1);
    ms_log_event(f->log, MS_INFO, p->ship->name, "ready", "upstream \"%s\" ready: reached at %s (%s; not started "
                 "by Mothership)", p->ship->name, p->ship->bind.text,
                 p->ship->upstream_protocol == MS_UPSTREAM_DOCKING ? "docking" : "http");
}

static void start_proc(ms_proc *p)
{
    ms_fleet *f = p->fleet;
    char why[512];
    if (p->ship->kind == MS_UPSTREAM) {
        upstream_alongside(p);
        return;
    }
    p->state = MS_P_STARTING;
    p->spawns++;
    p->started_at = uv_now(f->loop);
    p->last_health_error[0] = '\0';
    p->stop_requested = false;
    p->kill_sent = false;
    set_healthy(p, -1);
    set_breaker(p, MS_BREAKER_CLOSED);
    p->health_fail_run = p->health_ok_run = 0;
    p->stranger_logged = false;
    if (p->ship->kind == MS_BAY)
        unlink(p->socket_path); /* a stale socket would look ready */
    const char *event = "spawn_failed";
    bool started = port_free(p, why, sizeof why);
    if (!started)
        event = "port_in_use";
    else
        started = ms_process_spawn(p, why, sizeof why);
    if (!started) {
        ms_log_event(f->log, MS_ERROR, p->ship->name, event, "%s \"%s\": %s", kind_word(p), p->ship->name, why);
        p->state = MS_P_FAILED;
        if (spare(p))
            return; /* the roll that started it gives up */
        if (p->ship->schedule) { /* a failed run: the next match tries again */
            cron_wait(p, NULL, 0);
            return;
        }
        if (p->ship->critical) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s \"%s\" could not be started", kind_word(p), p->ship->name);
            ms_fleet_shutdown(f, 1, msg);
        } else {
            record_crash_and_backoff(p, "could not be started");
        }
        return;
    }
    p->started_logged = false;
    p->ready_deferred = false;
    ms_fleet_on_ship_pid(p); /* if the report is in already; else when it comes */
    if (p->ship->schedule)
        cron_arm(p); /* a match during the run is seen, and skipped */
    if (p->ship->oneshot)
        return;
    uv_timer_start(&p->deadline, on_ready_timeout, p->ship->ready_timeout_ms, 0);
    if (p->ship->kind == MS_BAY && f->bay_started)
        f->bay_started(f->bay_arg, p);
    else if (p->has_target)
        ready_probe_start(p);
    else
        uv_timer_start(&p->timer, on_worker_grace, p->ship->ready_after_ms, 0);
}

/* ---------------------------------------------------------------- scheduling */
static bool dep_ready(const ms_proc *d)
{
    return d->state == MS_P_READY || d->state == MS_P_DONE;
}

static bool dep_dead(const ms_proc *d)
{
    return d->state == MS_P_FAILED || d->state == MS_P_SKIPPED;
}

/* Every entry has settled: the fleet runs, possibly with entries that are
 * down (named in the log; /health lists them). */
static void end_launch(ms_fleet *f, size_t total)
{
    f->phase = MS_FLEET_RUNNING;
    f->launched = true;
    f->launched_at = uv_now(f->loop);
    char down[512];
    size_t n = 0;
    down[0] = '\0';
    for (size_t i = 0; i < f->n && n < sizeof down; i++) {
        const ms_proc *p = f->procs[i];
        if (p->selected && !ms_fleet_entry_up(p))
            n += (size_t)snprintf(down + n, sizeof down - n, "%s%s (%s)", n ? ", " : "", p->ship->name,
                                  ms_pstate_name(p->state));
    }
    ms_log_field ff[] = { ms_log_num("entries", (int64_t)total),
                          ms_log_num("ms", (int64_t)(f->launched_at - f->started_at)) };
    ms_log_event_fields(f->log, down[0] ? MS_WARN : MS_INFO, NULL, "fleet_ready", ff, 2,
                        "fleet ready: %zu %s in %llums%s%s", total, total == 1 ? "entry" : "entries",
                        (unsigned long long)(f->launched_at - f->started_at), down[0] ? "; not up: " : "", down);
    if (f->phase_changed)
        f->phase_changed(f, f->phase_arg);
}

static void schedule(ms_fleet *f)
{
    if (f->phase != MS_FLEET_LAUNCHING && f->phase != MS_FLEET_RUNNING)
        return;
    bool again = true;
    while (again) {
        again = false;
        for (size_t i = 0; i < f->n; i++) {
            ms_proc *p = f->procs[i];
            if (!p->selected || p->state != MS_P_WAITING)
                continue;
            bool all_ready = true;
            const ms_proc *dead = NULL;
            for (size_t k = 0; k < p->ndeps; k++) {
                const ms_proc *d = f->procs[p->deps[k]];
                if (dep_dead(d))
                    dead = d;
                if (!dep_ready(d))
                    all_ready = false;
            }
            if (dead) {
                p->state = MS_P_SKIPPED;
                ms_log_field df = ms_log_str("depends_on", dead->ship->name);
                ms_log_event_fields(f->log, MS_WARN, p->ship->name, "skipped", &df, 1,
                                    "%s \"%s\" skipped: it depends on %s \"%s\", which %s", kind_word(p),
                                    p->ship->name, kind_word(dead), dead->ship->name,
                                    dead->state == MS_P_FAILED ? "failed" : "was skipped");
                again = true;
            } else if (all_ready && p->ship->schedule && p->ship->kind == MS_SHIP) {
                cron_begin(p);
            } else if (all_ready) {
                start_proc(p);
                if (f->phase != MS_FLEET_LAUNCHING && f->phase != MS_FLEET_RUNNING)
                    return;
                again |= p->state == MS_P_READY; /* an upstream: its dependents may start */
            }
        }
    }
    if (f->phase == MS_FLEET_LAUNCHING) {
        size_t pending = 0, total = 0;
        for (size_t i = 0; i < f->n; i++) {
            const ms_proc *p = f->procs[i];
            if (!p->selected)
                continue;
            total++;
            pending += ms_fleet_holds_launch(f, p);
        }
        if (pending == 0)
            end_launch(f, total);
    }
}

/* ---------------------------------------------------------------- exits */
/* Its run is over: whatever is left in its cgroup dies, and the cgroup
 * goes (kept for a later try while its last processes are dying). */
static void release_cgroup(ms_proc *p)
{
    if (p->cgroup && ms_cgroup_release(&p->fleet->cgroups, p->cgroup)) {
        free(p->cgroup);
        p->cgroup = NULL;
    }
}
static void maybe_finish(ms_fleet *f);

void ms_fleet_on_output_closed(ms_proc *p)
{
    if (p->retired && !running(p))
        ms_ring_free(&p->ring); /* the lines that came after its exit */
    maybe_finish(p->fleet);
}

/* An exit's fields in a JSON log line: pid, exit_code or signal, uptime_ms. */
static size_t exit_fields(ms_log_field *out, int pid, int64_t status, int sig, uint64_t up, char *sname,
                          size_t sname_cap)
{
    out[0] = ms_log_num("pid", pid);
    out[1] = sig ? ms_log_str("signal", signal_name(sig, sname, sname_cap)) : ms_log_num("exit_code", status);
    out[2] = ms_log_num("uptime_ms", (int64_t)up);
    return 3;
}

void ms_fleet_on_exit(ms_proc *p, int64_t status, int sig)
{
    ms_fleet *f = p->fleet;
    char words[96];
    exit_words(status, sig, words, sizeof words);
    p->ready_deferred = false; /* it did not live to be ready */
    p->stop_deferred = false;
    ms_fleet_on_ship_pid(p);
    int pid = shown_pid(p);
    p->pid = 0;
    p->ship_pid = 0;
    p->last_exit_status = (int)status;
    p->last_term_signal = sig;
    set_ready_flag(p, 0);
    set_healthy(p, -1);
    cancel_activity(p);
    ms_process_close(p);
    reap_orphans(f); /* what escaped the shim's group, before any restart */
    release_cgroup(p);
    if (p->ship->kind == MS_BAY && f->bay_exited)
        f->bay_exited(f->bay_arg, p);
    uint64_t up = uv_now(f->loop) - p->started_at;
    ms_log_field xf[3];
    char sname[32];
    size_t nxf = exit_fields(xf, pid, status, sig, up, sname, sizeof sname);

    if (p->state == MS_P_STOPPING || p->retired || f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) {
        p->state = MS_P_STOPPED;
        char name[32];
        if (sig == stop_signal_of(p) || sig == SIGKILL)
            snprintf(words, sizeof words, "(%s)", signal_name(sig, name, sizeof name));
        else
            snprintf(words, sizeof words, "(exit %lld)", (long long)status);
        uint64_t took = uv_now(f->loop) - (p->stop_sent_at ? p->stop_sent_at : uv_now(f->loop));
        ms_log_event_fields(f->log, MS_INFO, p->ship->name, "stopped", xf, nxf,
                            "%s \"%s\" (pid %d) stopped %s in %llums", kind_word(p), p->ship->name, pid, words,
                            (unsigned long long)took);
        p->stop_as = NULL;
        if (f->phase == MS_FLEET_STOPPING && !f->draining)
            continue_shutdown(f);
        else if (p->retired) {
            ms_ring_free(&p->ring); /* nothing shows a retired process's history */
            stop_retired(f);
        }
        else if (p->restart_requested) {
            /* start again once the old process handle has closed */
            p->restart_requested = false;
            p->state = MS_P_BACKOFF;
            p->backoff_until = uv_now(f->loop);
            uv_timer_start(&p->timer, on_backoff_done, 0, 0);
        }
        return;
    }
    /* it ended on its own: a stop it was waiting for (a reload's restart
     * behind retired dependents) is moot, and its old definition with it */
    p->restart_requested = false;
    p->stop_as = NULL;
    if (spare(p)) { /* a surge process: the roll that started it decides */
        p->state = MS_P_FAILED;
        ms_log_event_fields(f->log, MS_WARN, p->ship->name, "exited", xf, nxf,
                            "%s \"%s\" (pid %d, surge) %s after %llums", kind_word(p), p->ship->name, pid, words,
                            (unsigned long long)up);
        return;
    }
    if (p->ship->oneshot && p->ship->schedule) {
        bool ok = status == 0 && !sig;
        char when[64];
        cron_wait(p, when, sizeof when);
        if (ok)
            ms_log_event_fields(f->log, MS_INFO, p->ship->name, "done", xf, nxf,
                                "job \"%s\" finished in %llums (exit 0); next run %s", p->ship->name,
                                (unsigned long long)up, when);
        else
            ms_log_event_fields(f->log, MS_ERROR, p->ship->name, "failed", xf, nxf,
                                "job \"%s\" failed: it %s; next run %s", p->ship->name, words, when);
        return;
    }
    if (p->ship->oneshot) {
        if (status == 0 && !sig) {
            p->state = MS_P_DONE;
            ms_log_event_fields(f->log, MS_INFO, p->ship->name, "done", xf, nxf,
                                "job \"%s\" finished in %llums (exit 0)", p->ship->name, (unsigned long long)up);
            schedule(f);
            return;
        }
        p->state = MS_P_FAILED;
        ms_log_event_fields(f->log, MS_ERROR, p->ship->name, "failed", xf, nxf, "job \"%s\" failed: it %s",
                            p->ship->name, words);
        if (p->ship->critical) {
            char why[300];
            snprintf(why, sizeof why, "job \"%s\" %s", p->ship->name, words);
            ms_fleet_shutdown(f, 1, why);
        } else {
            schedule(f); /* its dependents are skipped */
        }
        return;
    }
    if (p->ship->critical) {
        p->state = MS_P_FAILED;
        char why[300];
        snprintf(why, sizeof why, "critical %s \"%s\" %s", kind_word(p), p->ship->name, words);
        ms_log_event_fields(f->log, MS_ERROR, p->ship->name, "exited", xf, nxf,
                            "%s \"%s\" (pid %d) %s after %llums; it is critical", kind_word(p), p->ship->name, pid,
                            words, (unsigned long long)up);
        ms_fleet_shutdown(f, 1, why);
        return;
    }
    ms_log_event_fields(f->log, MS_WARN, p->ship->name, "exited", xf, nxf, "%s \"%s\" (pid %d) %s after %llums",
                        kind_word(p), p->ship->name, pid, words, (unsigned long long)up);
    record_crash_and_backoff(p, words);
    schedule(f);
}

/* ---------------------------------------------------------------- stopping */
static void on_stop_grace(uv_timer_t *t)
{
    ms_proc *p = t->data;
    ms_fleet *f = p->fleet;
    if (!running(p) || p->kill_sent)
        return;
    ms_log_field kf = ms_log_num("pid", shown_pid(p));
    ms_log_event_fields(f->log, MS_WARN, p->ship->name, "kill", &kf, 1,
                        "%s \"%s\" (pid %d) did not stop within %llums: SIGKILL", kind_word(p), p->ship->name,
                        shown_pid(p), (unsigned long long)p->stop_grace_ms);
    p->kill_sent = true;
    ms_process_signal(p, SIGKILL);
}

/* The grace between a process's stop signal and SIGKILL. Outside a fleet
 * shutdown it is its shutdown_timeout. In a shutdown, shutdown_timeout
 * counts from the moment the shutdown began, so the data plane's drain
 * (which ends within the global shutdown_timeout) and the stop share one
 * budget; a process still gets at least MS_STOP_GRACE_FLOOR_MS (or its
 * whole shutdown_timeout, if that is shorter) to act on its signal. */
#define MS_STOP_GRACE_FLOOR_MS 1000

static uint64_t stop_grace(const ms_proc *p)
{
    const ms_fleet *f = p->fleet;
    uint64_t own = (p->stop_as ? p->stop_as : p->ship)->shutdown_timeout_ms;
    if (f->phase != MS_FLEET_STOPPING)
        return own;
    uint64_t spent = uv_now(f->loop) - f->shutdown_began_at;
    uint64_t left = spent < own ? own - spent : 0;
    uint64_t floor = own < MS_STOP_GRACE_FLOOR_MS ? own : MS_STOP_GRACE_FLOOR_MS;
    return left > floor ? left : floor;
}

static void stop_proc(ms_proc *p)
{
    ms_fleet *f = p->fleet;
    cancel_activity(p);
    set_ready_flag(p, 0);
    p->state = MS_P_STOPPING;
    p->stop_sent_at = uv_now(f->loop);
    p->stop_grace_ms = stop_grace(p);
    ms_fleet_on_ship_pid(p);
    char name[32];
    ms_log_field sf[] = { ms_log_num("pid", shown_pid(p)),
                          ms_log_str("signal", signal_name(stop_signal_of(p), name, sizeof name)),
                          ms_log_num("grace_ms", (int64_t)p->stop_grace_ms) };
    if (p->stop_grace_ms + 100 <= p->ship->shutdown_timeout_ms) /* the drain took a noticeable part */
        ms_log_event_fields(f->log, MS_INFO, p->ship->name, "stopping", sf, 3,
                            "stopping %s \"%s\" (pid %d): %s, SIGKILL in %llums "
                            "(what is left of shutdown_timeout after the drain)", kind_word(p), p->ship->name,
                            shown_pid(p), name, (unsigned long long)p->stop_grace_ms);
    else
        ms_log_event_fields(f->log, MS_INFO, p->ship->name, "stopping", sf, 3, "stopping %s \"%s\" (pid %d): %s",
                            kind_word(p), p->ship->name, shown_pid(p), name);
    ms_process_signal(p, stop_signal_of(p));
    if (p->stop_grace_ms == 0)
        on_stop_grace(&p->deadline);
    else
        uv_timer_start(&p->deadline, on_stop_grace, p->stop_grace_ms, 0);
}

static bool held_by_retired(const ms_fleet *f, const ms_proc *p);

/* A running process that depends on procs[idx]: an entry of the manifest,
 * or a retired one (known by name: its indexes were an older manifest's). */
static bool has_running_dependent(const ms_fleet *f, size_t idx)
{
    if (held_by_retired(f, f->procs[idx]))
        return true;
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *q = f->procs[i];
        if (!running(q))
            continue;
        for (size_t k = 0; k < q->ndeps; k++)
            if (q->deps[k] == idx)
                return true;
    }
    return false;
}

static void continue_shutdown(ms_fleet *f)
{
    bool any = false;
    for (size_t i = 0; i < f->nall; i++)
        for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
            if (!running(p))
                continue;
            any = true;
            if (p->state != MS_P_STOPPING && !has_running_dependent(f, i))
                stop_proc(p);
        }
    if (!any)
        maybe_finish(f);
}

static void on_hold(uv_timer_t *t)
{
    ms_fleet *f = t->data;
    uint64_t now = uv_now(f->loop);
    char list[1024];
    size_t n = 0;
    list[0] = '\0';
    for (size_t i = 0; i < f->nall && n < sizeof list - 100; i++)
        for (ms_proc *p = f->procs[i]; p && n < sizeof list - 100; p = pair_next(f->procs[i], p)) {
            if (!running(p))
                continue;
            if (p->state == MS_P_STOPPING)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s (pid %d, %llums)", n ? ", " : "", p->ship->name,
                                      shown_pid(p), (unsigned long long)(now - p->stop_sent_at));
        }
    if (n)
        ms_log_event(f->log, MS_INFO, NULL, "waiting", "shutdown waiting for %s", list);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ms_fleet *f = h->data;
    f->signals_seen++;
    if (f->phase == MS_FLEET_STOPPING && signum == SIGINT) {
        ms_log_event(f->log, MS_WARN, NULL, "kill_all", "second SIGINT: killing everything now");
        for (size_t i = 0; i < f->nall; i++)
            for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
                if (running(p)) {
                    p->kill_sent = true;
                    p->state = MS_P_STOPPING;
                    ms_process_signal(p, SIGKILL);
                }
            }
        return;
    }
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        return;
    char why[64];
    snprintf(why, sizeof why, "%s received",
             signum == SIGINT ? "SIGINT" : signum == SIGQUIT ? "SIGQUIT" : "SIGTERM");
    ms_fleet_shutdown(f, 0, why);
}

void ms_fleet_shutdown(ms_fleet *f, int exit_code, const char *why)
{
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        return;
    f->phase = MS_FLEET_STOPPING;
    f->shutdown_began_at = uv_now(f->loop);
    f->exit_code = exit_code;
    ms_log_event(f->log, exit_code ? MS_ERROR : MS_INFO, NULL, "shutdown", "stopping the fleet: %s", why);
    if (f->phase_changed)
        f->phase_changed(f, f->phase_arg);
    ms_roll_cancel_all(f, "the fleet is stopping");
    for (size_t i = 0; i < f->nall; i++)
        for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
            if (running(p))
                continue;
            cancel_activity(p);
            if (p->state == MS_P_WAITING || p->state == MS_P_BACKOFF)
                p->state = MS_P_STOPPED;
        }
    uv_timer_start(&f->hold_timer, on_hold, HOLD_LOG_EVERY_MS, HOLD_LOG_EVERY_MS);
    if (f->drain) {
        f->draining = true;
        f->drain(f, f->drain_arg);
        return;
    }
    continue_shutdown(f);
}

void ms_fleet_drained(ms_fleet *f)
{
    if (!f->draining)
        return;
    f->draining = false;
    continue_shutdown(f);
}

/* ---------------------------------------------------------------- orphans */
/* Mothership is a child subreaper (and may be PID 1): processes orphaned in
 * a ship's subtree end up as its children. A shim is the subreaper of its
 * own subtree while it lives, so such a child is what a shim left behind
 * when it died (of a SIGKILL it could not act on): a daemon of the ship in
 * a session of its own, or a process whose parent died with the shim. It
 * is killed, with its group. Not every child is that, though:
 * - one it had before it started any ship (`sidecar & exec mothership
 *   run`): listed at the start, it is only reaped;
 * - as PID 1, one `docker exec` hands over: only reaped, unless it has the
 *   MS_FLEET_PID=<our pid> every shim gets in its environment (a ship's
 *   daemon that rewrote its environment, as setproctitle does, is then
 *   left to the end of the container). */
/* True when pid's environment has MS_FLEET_PID=<our pid>. */
static bool from_a_ship(pid_t pid)
{
    char needle[48];
    int nl = snprintf(needle, sizeof needle, "%c%s=%d%c", '\0', MS_FLEET_PID_ENV, (int)getpid(), '\0');
    if (nl <= 0 || (size_t)nl >= sizeof needle)
        return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* Each entry ends with a NUL; one is put in front of the first, and
     * the tail of each chunk is kept for a match across two reads. */
    char buf[4096 + sizeof needle];
    size_t keep = 1;
    buf[0] = '\0';
    bool found = false;
    for (;;) {
        ssize_t r = read(fd, buf + keep, sizeof buf - keep);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t len = keep + (size_t)r;
        if (memmem(buf, len, needle, (size_t)nl)) {
            found = true;
            break;
        }
        keep = (size_t)nl - 1 < len ? (size_t)nl - 1 : len;
        memmove(buf, buf + len - keep, keep);
    }
    close(fd);
    return found;
}

static bool inherited(const ms_fleet *f, int pid)
{
    for (size_t i = 0; i < f->ninherited; i++)
        if (f->inherited[i] == pid)
            return true;
    return false;
}

static void forget_inherited(ms_fleet *f, int pid)
{
    for (size_t i = 0; i < f->ninherited; i++)
        if (f->inherited[i] == pid)
            f->inherited[i] = f->inherited[--f->ninherited];
}

/* Call fn for every child of every thread of ours. */
static void each_child(void (*fn)(ms_fleet *f, int pid), ms_fleet *f)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", de->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        long pid;
        while (fscanf(fp, "%ld", &pid) == 1)
            if (pid > 0 && pid <= INT_MAX)
                fn(f, (int)pid);
        fclose(fp);
    }
    closedir(d);
}

static void note_inherited(ms_fleet *f, int pid)
{
    int *more = realloc(f->inherited, (f->ninherited + 1) * sizeof *more);
    if (!more)
        return; /* then it is treated as any other child */
    f->inherited = more;
    f->inherited[f->ninherited++] = pid;
}

static void sweep_child(ms_fleet *f, int pid)
{
    for (size_t i = 0; i < f->nall; i++)
        for (const ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p))
            if (p->pid == pid || (p->process_open && p->process.pid == pid))
                return; /* a shim: libuv collects it */
    int st;
    pid_t r = waitpid((pid_t)pid, &st, WNOHANG);
    if (r != 0) {
        if (r == pid)
            forget_inherited(f, pid);
        return;
    }
    /* our own child, alive, until we reap it: its pid cannot have been reused */
    if (inherited(f, pid) || (getpid() == 1 && !from_a_ship((pid_t)pid)))
        return;
    kill(-(pid_t)pid, SIGKILL); /* its group, if it leads one */
    kill((pid_t)pid, SIGKILL);
}

static void reap_orphans(ms_fleet *f)
{
    each_child(sweep_child, f);
}

static void on_sigchld(uv_signal_t *h, int signum)
{
    (void)signum;
    reap_orphans(h->data);
}

static void on_reap_timer(uv_timer_t *t)
{
    reap_orphans(t->data);
    ms_fleet_free_retired(t->data);
}

/* ---------------------------------------------------------------- finishing */
static void on_fleet_handle_closed(uv_handle_t *h)
{
    ms_fleet *f = h->data;
    f->open_handles--;
    maybe_finish(f);
}

static void close_h(ms_fleet *f, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = f;
        f->open_handles++;
        uv_close(h, on_fleet_handle_closed);
    }
}

static void maybe_finish(ms_fleet *f)
{
    if (f->draining)
        return; /* the data plane is still draining: ms_fleet_drained comes back here */
    if (f->phase == MS_FLEET_STOPPING) {
        for (size_t i = 0; i < f->nall; i++)
            for (const ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p))
                if (running(p))
                    return;
        f->phase = MS_FLEET_DONE;
        ms_log_field ef = ms_log_num("exit_code", f->exit_code);
        ms_log_event_fields(f->log, f->exit_code ? MS_ERROR : MS_INFO, NULL, "stopped", &ef, 1,
                            "fleet stopped (exit %d)", f->exit_code);
        close_h(f, (uv_handle_t *)&f->sigint);
        close_h(f, (uv_handle_t *)&f->sigterm);
        close_h(f, (uv_handle_t *)&f->sigquit);
        close_h(f, (uv_handle_t *)&f->sigchld);
        close_h(f, (uv_handle_t *)&f->hold_timer);
        close_h(f, (uv_handle_t *)&f->reap_timer);
        for (size_t i = 0; i < f->nall; i++)
            for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
                cancel_activity(p);
                if (p->timers_open) {
                    close_h(f, (uv_handle_t *)&p->timer);
                    close_h(f, (uv_handle_t *)&p->deadline);
                    close_h(f, (uv_handle_t *)&p->health_timer);
                    p->timers_open = false;
                }
                ms_process_close_pipes(p); /* a stray grandchild may still hold one */
                if (!running(p))
                    release_cgroup(p);
            }
        reap_orphans(f);
    }
    if (f->phase != MS_FLEET_DONE || f->open_handles > 0)
        return;
    for (size_t i = 0; i < f->nall; i++)
        for (const ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p))
            if (p->process_open || p->open_pipes > 0)
                return;
    if (f->on_done) {
        void (*cb)(ms_fleet *, void *) = f->on_done;
        f->on_done = NULL;
        cb(f, f->on_done_arg);
    }
}

/* ---------------------------------------------------------------- bays */
static ms_proc *proc_in_slot(const ms_fleet *f, size_t slot)
{
    for (size_t i = 0; i < f->nall; i++)
        for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p))
            if (p->slot == slot)
                return p;
    return NULL;
}

void ms_fleet_bay_docked(ms_fleet *f, size_t slot, const char *how)
{
    ms_proc *p = proc_in_slot(f, slot);
    if (p)
        mark_ready(p, how);
}

/* A bay whose link is lost is killed, but not at once: a bay that closed
 * its link because it is exiting on its own gets this long to do so, so
 * that its exit is reported with its own status, not as our SIGKILL. */
#define MS_BAY_LOST_GRACE_MS 1000

static void kill_lost_bay(ms_proc *p)
{
    if (!running(p) || p->state == MS_P_STOPPING)
        return;
    ms_log_event(p->fleet->log, MS_WARN, p->ship->name, "kill", "bay \"%s\" (pid %d) is still running without its "
                 "link after %ums: SIGKILL", p->ship->name, shown_pid(p), (unsigned)MS_BAY_LOST_GRACE_MS);
    ms_process_signal(p, SIGKILL); /* its exit is handled like a crash: restart per policy, or stop if critical */
}

static void on_bay_lost_grace(uv_timer_t *t)
{
    kill_lost_bay(t->data);
}

void ms_fleet_bay_lost(ms_fleet *f, size_t slot, const char *why)
{
    ms_proc *p = proc_in_slot(f, slot);
    if (!p || !running(p) || p->state == MS_P_STOPPING)
        return;
    set_ready_flag(p, 0);
    ms_log_event(f->log, MS_ERROR, p->ship->name, "link_failed", "bay \"%s\" (pid %d): %s; killing it unless it "
                 "exits within %ums", p->ship->name, shown_pid(p), why, (unsigned)MS_BAY_LOST_GRACE_MS);
    cancel_activity(p); /* its exit stops the grace timer (ms_fleet_on_exit) */
    if (p->timers_open)
        uv_timer_start(&p->deadline, on_bay_lost_grace, MS_BAY_LOST_GRACE_MS, 0);
    else
        kill_lost_bay(p);
}

/* ---------------------------------------------------------------- dashboard controls */
void ms_fleet_restart_proc(ms_fleet *f, size_t i)
{
    if (i >= f->n || f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        return;
    ms_proc *p = f->procs[i];
    if (p->ship->kind == MS_UPSTREAM)
        return; /* not ours to restart */
    if (running(p)) {
        p->restart_requested = true;
        stop_proc(p);
    } else if (p->state != MS_P_WAITING && p->state != MS_P_SKIPPED) {
        cancel_activity(p);
        p->state = MS_P_BACKOFF;
        p->backoff_until = uv_now(f->loop);
        uv_timer_start(&p->timer, on_backoff_done, 0, 0);
    }
}

/* ---------------------------------------------------------------- control actions */
bool ms_fleet_proc_running(const ms_proc *p)
{
    return running(p);
}

const char *ms_fleet_action_name(ms_fleet_action a)
{
    switch (a) {
    case MS_FLEET_ACT_RESTART: return "restart";
    case MS_FLEET_ACT_STOP: return "stop";
    case MS_FLEET_ACT_START: return "start";
    case MS_FLEET_ACT_SIGNAL: return "signal";
    }
    return "?";
}

/* Stop p and keep it stopped (no restart): a pending restart is cancelled. */
static void stop_for_good(ms_proc *p)
{
    if (running(p)) {
        p->stop_requested = true;
        p->restart_requested = p->stop_deferred = false; /* a restart under way (a reload's) gives way */
        if (p->state != MS_P_STOPPING)
            stop_proc(p);
    } else if (p->state == MS_P_BACKOFF || p->state == MS_P_SCHEDULED) {
        cancel_activity(p);
        p->next_run = 0;
        p->stop_requested = true;
        p->state = MS_P_STOPPED;
    }
}

static void start_now(ms_proc *p)
{
    cancel_activity(p);
    p->state = MS_P_BACKOFF;
    p->backoff_until = uv_now(p->fleet->loop);
    uv_timer_start(&p->timer, on_backoff_done, 0, 0);
}

static bool control(ms_fleet *f, size_t i, ms_fleet_action a, int signo, const char *who, char *why,
                    size_t why_len);

bool ms_fleet_control(ms_fleet *f, size_t i, ms_fleet_action a, int signo, const char *who, char *why,
                      size_t why_len)
{
    bool ok = control(f, i, a, signo, who, why, why_len);
    if (!ok)
        ms_log_event(f->log, MS_WARN, f->procs[i]->ship->name, "control", "%s: cannot %s: %s", who,
                     ms_fleet_action_name(a), why);
    return ok;
}

static bool control(ms_fleet *f, size_t i, ms_fleet_action a, int signo, const char *who, char *why,
                    size_t why_len)
{
    assert(i < f->n);
    ms_proc *p = f->procs[i];
    char sname[32] = "";
    if (a == MS_FLEET_ACT_SIGNAL)
        signal_name(signo, sname, sizeof sname);
    ms_log_event(f->log, MS_INFO, p->ship->name, "control", "%s: %s%s%s %s \"%s\"", who, ms_fleet_action_name(a),
                 *sname ? " " : "", sname, kind_word(p), p->ship->name);
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) {
        snprintf(why, why_len, "the fleet is stopping");
        return false;
    }
    if (!p->selected) {
        snprintf(why, why_len, "%s \"%s\" is left out of this run (--only/--except)", kind_word(p), p->ship->name);
        return false;
    }
    if (p->ship->kind == MS_UPSTREAM) {
        snprintf(why, why_len, "upstream \"%s\" is an app Mothership did not start (reached at %s): it cannot be "
                 "%s by Mothership", p->ship->name, p->ship->bind.text,
                 a == MS_FLEET_ACT_RESTART ? "restarted" : a == MS_FLEET_ACT_STOP ? "stopped"
                 : a == MS_FLEET_ACT_START ? "started" : "signalled");
        return false;
    }
    switch (a) {
    case MS_FLEET_ACT_RESTART:
        if (p->state == MS_P_WAITING || p->state == MS_P_SKIPPED) {
            snprintf(why, why_len, "%s \"%s\" has not started: it waits for its dependencies", kind_word(p),
                     p->ship->name);
            return false;
        }
        ms_fleet_restart_proc(f, i);
        return true;
    case MS_FLEET_ACT_STOP:
        stop_for_good(p);
        return true;
    case MS_FLEET_ACT_START:
        if (p->state == MS_P_WAITING || p->state == MS_P_SKIPPED) {
            snprintf(why, why_len, "%s \"%s\" has not started: it waits for its dependencies", kind_word(p),
                     p->ship->name);
            return false;
        }
        if (!running(p) && p->state != MS_P_STOPPING)
            start_now(p);
        return true;
    case MS_FLEET_ACT_SIGNAL:
        if (!running(p) || p->pid <= 0) {
            snprintf(why, why_len, "%s \"%s\" is not running", kind_word(p), p->ship->name);
            return false;
        }
        ms_process_signal(p, signo);
        return true;
    }
    snprintf(why, why_len, "unknown action");
    return false;
}

/* ---------------------------------------------------------------- liveness and readiness */
bool ms_fleet_entry_up(const ms_proc *p)
{
    if (p->state == MS_P_DONE || p->state == MS_P_SCHEDULED)
        return true;
    return p->state == MS_P_READY && __atomic_load_n(&p->healthy, __ATOMIC_ACQUIRE) != 0;
}

bool ms_fleet_holds_launch(const ms_fleet *f, const ms_proc *p)
{
    if (!p->selected || p->settled)
        return false;
    if (p->state == MS_P_STARTING)
        return true;
    /* stopping to start again (a restart asked for, or a reload's new
     * definition): not a failure, it is on its way up */
    if ((p->state == MS_P_STOPPING && p->restart_requested) || (p->state == MS_P_BACKOFF && p->reload_restart))
        return true;
    if (p->state != MS_P_WAITING)
        return false; /* done, failed, skipped, stopped */
    /* depends_on has no cycles (the manifest is checked), so this ends */
    for (size_t k = 0; k < p->ndeps; k++) {
        const ms_proc *d = f->procs[p->deps[k]];
        if (!dep_ready(d) && !ms_fleet_holds_launch(f, d))
            return false; /* waits behind one that gave up */
    }
    return true;
}

static bool critical_up(const ms_fleet *f)
{
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *p = f->procs[i];
        if (p->selected && p->ship->critical && !ms_fleet_entry_up(p))
            return false;
    }
    return true;
}

bool ms_fleet_live(const ms_fleet *f)
{
    bool serving = f->phase == MS_FLEET_RUNNING || (f->phase == MS_FLEET_STOPPING && f->draining);
    return f->launched && serving && critical_up(f);
}

bool ms_fleet_ready(const ms_fleet *f)
{
    return f->phase == MS_FLEET_RUNNING && critical_up(f);
}

/* ---------------------------------------------------------------- setup */
extern const unsigned char ms_shim_blob[];
extern const size_t ms_shim_blob_len;

/* Put the embedded shim in a sealed memfd; children exec it by its
 * /proc/self/fd path. On any failure the binary itself serves as the shim
 * (same behaviour, more memory per ship). */
static void prepare_shim(ms_fleet *f)
{
    f->shim_fd = -1;
    int fd = memfd_create("mothership-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return;
    size_t off = 0;
    while (off < ms_shim_blob_len) {
        ssize_t w = write(fd, ms_shim_blob + off, ms_shim_blob_len - off);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            close(fd);
            return;
        }
        off += (size_t)w;
    }
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    char *path = ms_asprintf("/proc/self/fd/%d", fd);
    if (!path || fchmod(fd, 0500) != 0) {
        free(path);
        close(fd);
        return;
    }
    f->shim_fd = fd;
    f->shim_path = path;
}

char *ms_fleet_socket_dir(const ms_manifest *m)
{
    if (m && m->global.socket_dir)
        return ms_strdup(m->global.socket_dir);
    const char *e = getenv("MS_SOCKET_DIR");
    if (e && *e)
        return ms_strdup(e);
    e = getenv("XDG_RUNTIME_DIR");
    if (e && *e)
        return ms_asprintf("%s/mothership", e);
    return ms_strdup("/tmp/mothership");
}

static bool mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof tmp)
        return false;
    strcpy(tmp, path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return false;
            *s = '/';
        }
    }
    return mkdir(tmp, 0700) == 0 || errno == EEXIST;
}

/* Where s listens, for its probes: a bay's socket in the socket directory,
 * else its healthcheck's own address or its bind (none: has_target false).
 * *socket_path is set for bays (the caller frees it). */
static bool proc_where(const ms_fleet *f, const ms_ship *s, unsigned parity, ms_target *t, bool *has_target,
                       char **socket_path, char *why, size_t why_len)
{
    memset(t, 0, sizeof *t);
    *has_target = false;
    *socket_path = NULL;
    if (s->kind == MS_BAY) {
        *socket_path = ms_asprintf("%s/%s.sock", f->socket_dir, s->name);
        if (!*socket_path || strlen(*socket_path) >= sizeof t->path) {
            snprintf(why, why_len, "bay \"%s\": socket path %s/%s.sock is too long", s->name, f->socket_dir, s->name);
            free(*socket_path);
            *socket_path = NULL;
            return false;
        }
        t->is_unix = true;
        strcpy(t->path, *socket_path);
        strcpy(t->host_header, "localhost");
        *has_target = true;
    } else if (s->has_bind || s->health.has_address) {
        /* the probes' target: the healthcheck's own address, else the bind;
         * a surge process (parity 1) at the healthcheck's address for
         * parity 1 when it has one, else at its bind_alt */
        const ms_addr *at = s->health.has_address ? &s->health.address : &s->bind;
        if (parity && s->has_bind_alt)
            at = s->health.has_address && s->health.has_address_alt ? &s->health.address_alt : &s->bind_alt;
        if (!ms_target_from_addr(at, t, why, why_len)) {
            char tmp[200];
            snprintf(tmp, sizeof tmp, "%s", why);
            snprintf(why, why_len, "ship \"%s\": %s %s: %s", s->name,
                     at == &s->bind || at == &s->bind_alt ? "bind" : "healthcheck address", at->text, tmp);
            return false;
        }
        *has_target = true;
    }
    return true;
}

/* The indexes in m of what s depends on; NULL on OOM. */
static size_t *deps_of(const ms_manifest *m, const ms_ship *s, size_t *ndeps)
{
    size_t *deps = calloc(s->depends_on.len ? s->depends_on.len : 1, sizeof *deps);
    *ndeps = 0;
    if (!deps)
        return NULL;
    for (size_t k = 0; k < s->depends_on.len; k++) {
        const ms_ship *d = ms_manifest_find_ship(m, s->depends_on.items[k]);
        if (d)
            deps[(*ndeps)++] = (size_t)(d - m->ships);
    }
    return deps;
}

static void proc_free(ms_proc *p)
{
    if (!p)
        return;
    free(p->cgroup);
    free(p->deps);
    free(p->socket_path);
    ms_ring_free(&p->ring);
    free(p);
}

/* The process of m->ships[i] in slot `slot` (nothing started, no handle). */
static ms_proc *proc_new(ms_fleet *f, const ms_manifest *m, size_t i, size_t slot, bool selected, char *why,
                         size_t why_len)
{
    ms_proc *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    const ms_ship *s = &m->ships[i];
    p->fleet = f;
    p->ship = s;
    p->index = i;
    p->slot = slot;
    p->id = f->next_id++;
    p->colour = (unsigned)p->id;
    p->selected = selected;
    p->state = p->selected ? MS_P_WAITING : MS_P_SKIPPED;
    p->last_exit_status = -1;
    p->healthy = -1;
    ms_ring_init(&p->ring);
    p->deps = deps_of(m, s, &p->ndeps);
    if (!p->deps) {
        snprintf(why, why_len, "out of memory");
        free(p);
        return NULL;
    }
    if (!proc_where(f, s, 0, &p->target, &p->has_target, &p->socket_path, why, why_len)) {
        proc_free(p);
        return NULL;
    }
    return p;
}

ms_fleet *ms_fleet_new(uv_loop_t *loop, const ms_manifest *m, const bool *selected, ms_log *log, char *why,
                       size_t why_len)
{
    ms_fleet *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    f->shim_fd = -1;
    f->loop = loop;
    f->clock_base_ms = ms_fleet_wall_ms(f); /* real time: no scale yet */
    f->m = m;
    f->log = log;
    f->clock_scale = clock_scale_from_env(log);
    f->n = m->nships;
    f->procs = calloc(f->n ? f->n : 1, sizeof *f->procs);
    char exe[PATH_MAX];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el > 0) {
        exe[el] = '\0';
        f->self_exe = ms_strdup(exe);
    }
    f->socket_dir = ms_fleet_socket_dir(m);
    prepare_shim(f);
    if (!f->procs || !f->self_exe || !f->socket_dir) {
        snprintf(why, why_len, el <= 0 ? "cannot find my own executable (/proc/self/exe)" : "out of memory");
        ms_fleet_free(f);
        return NULL;
    }
    bool any_bay = false;
    for (size_t i = 0; i < f->n; i++) {
        ms_proc *p = f->procs[i] = proc_new(f, m, i, i, selected ? selected[i] : true, why, why_len);
        if (!p) {
            ms_fleet_free(f);
            return NULL;
        }
        f->nall = i + 1;
        any_bay |= p->ship->kind == MS_BAY;
    }
    if (any_bay && !mkdir_p(f->socket_dir)) {
        snprintf(why, why_len, "cannot create the socket directory %s: %s", f->socket_dir, strerror(errno));
        ms_fleet_free(f);
        return NULL;
    }
    return f;
}

static void open_timers(ms_proc *p)
{
    ms_fleet *f = p->fleet;
    uv_timer_init(f->loop, &p->timer);
    uv_timer_init(f->loop, &p->deadline);
    uv_timer_init(f->loop, &p->health_timer);
    p->timer.data = p->deadline.data = p->health_timer.data = p;
    p->timers_open = true;
}

/* The limit keys of an entry that want a controller in mask. */
static void limit_keys(const ms_ship *s, unsigned mask, char *buf, size_t cap)
{
    const char *keys[3];
    size_t n = 0;
    if ((mask & MS_CG_MEMORY) && s->memory_max)
        keys[n++] = "memory_max";
    if ((mask & MS_CG_CPU) && s->cpu_max_milli)
        keys[n++] = "cpu_max";
    if ((mask & MS_CG_PIDS) && s->pids_max)
        keys[n++] = "pids_max";
    buf[0] = '\0';
    for (size_t i = 0, len = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", keys[i]);
}

/* The limits of s its cgroup cannot apply: their controllers are not
 * enabled, or there are no cgroups at all. */
static unsigned limits_lacking(const ms_fleet *f, const ms_ship *s)
{
    if (s->kind == MS_UPSTREAM)
        return 0;
    return ms_cgroup_needs(s) & (f->cgroups.usable ? ~f->cgroups.controllers : ~0u);
}

/* The entries named in a warning about limits not applied: "web
 * (memory_max), hot (cpu_max)", and the controllers they lack. */
typedef struct unapplied {
    char names[1024];
    size_t len;
    unsigned missing;
} unapplied;

static void unapplied_add(unapplied *u, const ms_ship *s, unsigned lack)
{
    if (!lack || u->len + 1 >= sizeof u->names)
        return;
    char keys[64];
    limit_keys(s, lack, keys, sizeof keys);
    u->len += (size_t)snprintf(u->names + u->len, sizeof u->names - u->len, "%s%s (%s)", u->len ? ", " : "",
                               s->name, keys);
    u->missing |= lack;
    if (u->len >= sizeof u->names)
        snprintf(u->names + sizeof u->names - 5, 5, "...");
}

static void unapplied_warn(ms_fleet *f, const unapplied *u)
{
    const ms_cgroups *cg = &f->cgroups;
    unsigned missing = u->missing;
    if (!u->names[0])
        return;
    if (!cg->usable)
        ms_log_event(f->log, MS_WARN, NULL, "limits_not_applied", "resource limits not applied to %s: %s",
                     u->names, cg->why);
    else
        ms_log_event(f->log, MS_WARN, NULL, "limits_not_applied", "resource limits not applied to %s: the %s%s%s%s%s "
                     "controller%s not available in %s", u->names, missing & MS_CG_MEMORY ? "memory" : "",
                     (missing & MS_CG_MEMORY) && (missing & (MS_CG_CPU | MS_CG_PIDS)) ? ", " : "",
                     missing & MS_CG_CPU ? "cpu" : "", (missing & MS_CG_CPU) && (missing & MS_CG_PIDS) ? ", " : "",
                     missing & MS_CG_PIDS ? "pids" : "", (missing & (missing - 1)) ? "s are" : " is", cg->dir);
}

/* Each entry in a cgroup of its own when Mothership's is delegated; the
 * entries whose limits cannot apply are named once, with the reason. */
static void start_cgroups(ms_fleet *f)
{
    ms_cgroups *cg = &f->cgroups;
    ms_cgroups_init(cg, getenv("MS_CGROUP_ROOT"));
    unapplied u = { .len = 0 };
    for (size_t i = 0; i < f->n; i++)
        if (f->procs[i]->selected)
            unapplied_add(&u, f->procs[i]->ship, limits_lacking(f, f->procs[i]->ship));
    if (!cg->usable) {
        unapplied_warn(f, &u);
        return;
    }
    char on[32] = "";
    snprintf(on, sizeof on, "%s%s%s", cg->controllers & MS_CG_MEMORY ? " memory" : "",
             cg->controllers & MS_CG_CPU ? " cpu" : "", cg->controllers & MS_CG_PIDS ? " pids" : "");
    ms_log_event(f->log, MS_INFO, NULL, "cgroups", "each entry in its own cgroup under %s (controllers:%s)", cg->dir,
                 on[0] ? on : " none");
    unapplied_warn(f, &u);
}

void ms_fleet_start(ms_fleet *f, void (*on_done)(ms_fleet *f, void *arg), void *arg)
{
    f->on_done = on_done;
    f->on_done_arg = arg;
    f->started_at = uv_now(f->loop);
    f->phase = MS_FLEET_LAUNCHING;
    srand((unsigned)(getpid() ^ (unsigned)uv_hrtime()));
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    each_child(note_inherited, f); /* before any ship is started */
    uv_signal_init(f->loop, &f->sigint);
    uv_signal_init(f->loop, &f->sigterm);
    uv_signal_init(f->loop, &f->sigquit);
    uv_signal_init(f->loop, &f->sigchld);
    uv_timer_init(f->loop, &f->hold_timer);
    uv_timer_init(f->loop, &f->reap_timer);
    f->sigint.data = f->sigterm.data = f->sigquit.data = f->sigchld.data = f;
    f->hold_timer.data = f->reap_timer.data = f;
    uv_signal_start(&f->sigint, on_signal, SIGINT);
    uv_signal_start(&f->sigterm, on_signal, SIGTERM);
    uv_signal_start(&f->sigquit, on_signal, SIGQUIT); /* a graceful stop, as SIGTERM */
    uv_signal_start(&f->sigchld, on_sigchld, SIGCHLD);
    uv_timer_start(&f->reap_timer, on_reap_timer, REAP_EVERY_MS, REAP_EVERY_MS);
    uv_unref((uv_handle_t *)&f->reap_timer);
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++) {
        n += f->procs[i]->selected;
        open_timers(f->procs[i]);
    }
    f->started = true;
    ms_log_field lf[] = { ms_log_num("entries", (int64_t)n), ms_log_num("total", (int64_t)f->n) };
    ms_log_event_fields(f->log, MS_INFO, NULL, "launch", lf, 2, "launching %zu of %zu entries from %s", n, f->n,
                        f->m->path);
    start_cgroups(f);
    schedule(f);
}

void ms_fleet_free(ms_fleet *f)
{
    if (!f)
        return;
    free(f->inherited);
    for (size_t i = 0; f->procs && i < f->nall; i++) {
        if (f->procs[i])
            proc_free(f->procs[i]->twin);
        proc_free(f->procs[i]);
    }
    free(f->procs);
    for (size_t i = 0; i < f->nheld; i++)
        ms_manifest_free(f->held[i]);
    free(f->held);
    free(f->self_exe);
    free(f->shim_path);
    if (f->shim_fd >= 0)
        close(f->shim_fd);
    free(f->socket_dir);
    ms_cgroups_free(&f->cgroups);
    free(f);
}

/* ---------------------------------------------------------------- reload */
/* What a new definition changes for an entry that keeps its process. */
typedef struct next_entry {
    ms_proc *p;              /* its process: an existing one, or a new one (not yet visible) */
    bool is_new;
    bool restart;
    size_t *deps;            /* in the new manifest */
    size_t ndeps;
    ms_target target;        /* where it listens under the new definition */
    bool has_target;
    char *socket_path;
} next_entry;

struct ms_fleet_next {
    ms_fleet *f;
    ms_manifest *m;
    const bool *selected;
    next_entry *e;           /* per entry of m */
    size_t n;
    ms_proc **procs;         /* m's entries in m's order, then every retired process */
    size_t nall;
    size_t nretiring;        /* procs[n..n + nretiring): retired by this reload */
};

static void next_free(ms_fleet_next *nx, bool drop_new)
{
    if (!nx)
        return;
    for (size_t i = 0; nx->e && i < nx->n; i++) {
        next_entry *e = &nx->e[i];
        free(e->deps);
        free(e->socket_path);
        if (drop_new && e->is_new)
            proc_free(e->p);
    }
    free(nx->e);
    if (drop_new)
        free(nx->procs);
    free(nx);
}

static bool name_in(const ms_strlist *l, const char *name)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], name) == 0)
            return true;
    return false;
}

/* A running retired process that depended on p. */
static bool held_by_retired(const ms_fleet *f, const ms_proc *p)
{
    for (size_t k = f->n; k < f->nall; k++) {
        const ms_proc *q = f->procs[k];
        assert(q); /* every slot up to nall holds a process (only twins may be NULL) */
        if (q != p && running(q) && name_in(&q->ship->depends_on, p->ship->name))
            return true;
    }
    return false;
}

/* Retired processes stop dependents first: one stops once no retired
 * process that depended on it is still running; so does a changed entry
 * that waits to restart. */
static void stop_retired(ms_fleet *f)
{
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        return; /* the shutdown stops them */
    for (size_t i = 0; i < f->nall; i++)
        for (ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
            if (!running(p) || p->state == MS_P_STOPPING || (i < f->n && !p->stop_deferred))
                continue;
            if (held_by_retired(f, p))
                continue;
            p->stop_deferred = false;
            stop_proc(p);
        }
}

ms_fleet_next *ms_fleet_prepare(ms_fleet *f, ms_manifest *m, const bool *selected, const ms_fleet_change *changes,
                                char *why, size_t why_len)
{
    if (!f->started || f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) {
        snprintf(why, why_len, "the fleet is %s", f->started ? "stopping" : "not launched yet");
        return NULL;
    }
    assert(!f->preparing);
    ms_fleet_free_retired(f); /* their slots, for the new entries */
    ms_fleet_next *nx = calloc(1, sizeof *nx);
    if (!nx) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    nx->f = f;
    nx->m = m;
    nx->selected = selected;
    nx->n = m->nships;
    nx->e = calloc(nx->n ? nx->n : 1, sizeof *nx->e);
    bool *kept = calloc(f->n ? f->n : 1, sizeof *kept);
    if (!nx->e || !kept)
        goto oom;
    /* which running entries go on, and how many slots the new ones take */
    size_t nnew = 0;
    for (size_t i = 0; i < nx->n; i++) {
        size_t o = changes[i].old;
        if (o != MS_FLEET_NEW) {
            assert(o < f->n && !kept[o] && strcmp(f->procs[o]->ship->name, m->ships[i].name) == 0);
            if (f->procs[o]->ship->kind == m->ships[i].kind) {
                kept[o] = true;
                continue;
            }
        }
        nnew++; /* new, or it changed kind: a new process in a new slot */
    }
    /* the free slots, lowest first (taken for good at the commit) */
    bool taken[MS_FLEET_MAX_SLOTS] = { false };
    size_t ntwins = 0;
    for (size_t i = 0; i < f->nall; i++)
        for (const ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
            taken[p->slot] = true;
            ntwins += p != f->procs[i];
        }
    if (f->nall + ntwins + nnew > MS_FLEET_MAX_SLOTS) {
        snprintf(why, why_len, "no slot is free: the fleet has %zu entries (%zu removed ones still stopping, "
                 "%zu surge processes), %zu new ones come, and it takes at most %d at once", f->n, f->nall - f->n,
                 ntwins, nnew, MS_FLEET_MAX_SLOTS);
        goto fail;
    }
    size_t nretiring = 0;
    for (size_t o = 0; o < f->n; o++)
        nretiring += !kept[o];
    nx->nretiring = nretiring;
    nx->nall = nx->n + nretiring + (f->nall - f->n);
    nx->procs = calloc(nx->nall ? nx->nall : 1, sizeof *nx->procs);
    if (!nx->procs)
        goto oom;
    size_t slot = 0;
    for (size_t i = 0; i < nx->n; i++) {
        next_entry *e = &nx->e[i];
        size_t o = changes[i].old;
        bool sel = selected ? selected[i] : true;
        if (o != MS_FLEET_NEW && kept[o]) {
            e->p = f->procs[o];
            e->restart = changes[i].restart;
            e->deps = deps_of(m, &m->ships[i], &e->ndeps);
            if (!e->deps)
                goto oom;
            if (!proc_where(f, &m->ships[i], e->p->parity, &e->target, &e->has_target, &e->socket_path, why,
                            why_len))
                goto fail;
        } else {
            e->is_new = true;
            while (taken[slot])
                slot++;
            assert(slot < MS_FLEET_MAX_SLOTS);
            e->p = proc_new(f, m, i, slot++, sel, why, why_len);
            if (!e->p)
                goto fail;
        }
        nx->procs[i] = e->p;
    }
    size_t k = nx->n;
    for (size_t o = 0; o < f->n; o++)
        if (!kept[o])
            nx->procs[k++] = f->procs[o];
    for (size_t r = f->n; r < f->nall; r++)
        nx->procs[k++] = f->procs[r];
    assert(k == nx->nall);
    /* room to hold two more manifests */
    ms_manifest **held = realloc(f->held, (f->nheld + 2) * sizeof *held);
    if (!held)
        goto oom;
    f->held = held;
    free(kept);
    f->preparing = true;
    return nx;
oom:
    snprintf(why, why_len, "out of memory");
fail:
    free(kept);
    next_free(nx, true);
    return NULL;
}

ms_proc *const *ms_fleet_next_procs(const ms_fleet_next *nx)
{
    return nx->procs;
}

void ms_fleet_abandon(ms_fleet_next *nx)
{
    nx->f->preparing = false;
    next_free(nx, true);
}

static bool holds(const ms_fleet *f, const ms_manifest *m)
{
    for (size_t i = 0; i < f->nheld; i++)
        if (f->held[i] == m)
            return true;
    return false;
}

/* Does any process still point into m? */
static bool in_use(const ms_fleet *f, const ms_manifest *m)
{
    if (m == f->m)
        return true;
    for (size_t i = 0; i < f->nall; i++)
        for (const ms_proc *p = f->procs[i]; p; p = pair_next(f->procs[i], p)) {
            if ((p->ship >= m->ships && p->ship < m->ships + m->nships) ||
                (p->stop_as && p->stop_as >= m->ships && p->stop_as < m->ships + m->nships))
                return true;
        }
    return false;
}

/* Drop the manifests no process points into any more. */
static void release_manifests(ms_fleet *f)
{
    for (size_t i = 0; i < f->nheld;) {
        if (in_use(f, f->held[i])) {
            i++;
            continue;
        }
        ms_manifest_free(f->held[i]);
        f->held[i] = f->held[--f->nheld];
    }
}

static void on_freed_timer_closed(uv_handle_t *h)
{
    ms_proc *p = h->data;
    ms_fleet *f = p->fleet;
    assert(p->closing > 0);
    if (--p->closing > 0)
        return;
    proc_free(p);
    f->open_handles--;
    maybe_finish(f);
}

/* Nothing of p's runs any more, and nothing else points at it. */
static bool retired_unused(const ms_fleet *f, const ms_proc *p)
{
    assert(p->retired);
    if (running(p) || p->process_open || p->open_pipes > 0 || p->report || p->probe || p->health_probe)
        return false;
    if (f->proc_held && f->proc_held(f->proc_held_arg, p))
        return false;
    return !(f->bay_held && f->bay_held(f->bay_arg, p));
}

/* Give back p's slot and free it (once its timers have closed). */
static void release_retired(ms_fleet *f, ms_proc *p)
{
    if (f->slot_freed)
        f->slot_freed(f->bay_arg, p->slot);
    if (!p->timers_open) {
        proc_free(p);
        return;
    }
    /* freed once its timers have closed; its slot is free at once */
    p->timers_open = false;
    p->closing = 3;
    p->timer.data = p->deadline.data = p->health_timer.data = p;
    f->open_handles++;
    uv_close((uv_handle_t *)&p->timer, on_freed_timer_closed);
    uv_close((uv_handle_t *)&p->deadline, on_freed_timer_closed);
    uv_close((uv_handle_t *)&p->health_timer, on_freed_timer_closed);
}

void ms_fleet_free_retired(ms_fleet *f)
{
    if (!f->started || f->preparing || f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE)
        return; /* a shutdown keeps them until the fleet is freed */
    size_t k = f->n, freed = 0;
    for (size_t i = f->n; i < f->nall; i++) {
        ms_proc *p = f->procs[i];
        if (!retired_unused(f, p) || (p->twin && !retired_unused(f, p->twin))) {
            f->procs[k++] = p;
            continue;
        }
        freed++;
        if (p->twin) /* an entry's twin goes with it */
            release_retired(f, p->twin);
        release_retired(f, p);
    }
    f->nall = k;
    if (freed)
        release_manifests(f);
}

/* A kept process takes its new definition. */
static void take_definition(ms_proc *p, next_entry *e, const ms_ship *s, size_t index)
{
    ms_proc *tw = p->twin;
    if (tw) { /* the twin follows; a running one stops as its definition says */
        char why[256];
        if (running(tw) && !tw->stop_as)
            tw->stop_as = tw->ship;
        tw->ship = s;
        tw->index = index;
        char *unused = NULL;
        ms_target t;
        bool has;
        if (proc_where(p->fleet, s, tw->parity, &t, &has, &unused, why, sizeof why)) {
            tw->target = t;
            tw->has_target = has;
        }
        free(unused);
    }
    p->ship = s;
    p->index = index;
    free(p->deps);
    p->deps = e->deps;
    p->ndeps = e->ndeps;
    e->deps = NULL;
    p->target = e->target;
    p->has_target = e->has_target;
    free(p->socket_path);
    p->socket_path = e->socket_path;
    e->socket_path = NULL;
}

/* A changed entry: stopped with its old definition (its stop signal and
 * timeout), started again with the new one as a fresh start. */
static void restart_changed(ms_proc *p, next_entry *e, const ms_ship *s, size_t index)
{
    ms_fleet *f = p->fleet;
    p->restarts = 0;
    p->crashes_in_row = 0;
    p->crash_count = p->crash_head = 0;
    p->loop_paused = false;
    if (running(p)) {
        p->restart_requested = true;
        p->reload_restart = true;
        p->stop_requested = false;
        if (p->state != MS_P_STOPPING && held_by_retired(f, p)) {
            /* stopped by stop_retired() once the retired ones that depend on it are gone */
            p->stop_deferred = true;
            if (!p->stop_as) /* a restart already waiting keeps the definition its process runs with */
                p->stop_as = p->ship;
        } else if (p->state != MS_P_STOPPING) {
            stop_proc(p);
        }
        take_definition(p, e, s, index);
        return;
    }
    take_definition(p, e, s, index);
    /* READY without a process: it was an upstream, and is not any more */
    if (p->state == MS_P_BACKOFF || p->state == MS_P_FAILED || p->state == MS_P_DONE || p->state == MS_P_READY) {
        cancel_activity(p);
        set_ready_flag(p, 0);
        p->reload_restart = true;
        p->state = MS_P_BACKOFF;
        p->backoff_until = uv_now(f->loop);
        uv_timer_start(&p->timer, on_backoff_done, 0, 0);
    }
    /* waiting: started by schedule(); stopped by the user or skipped: left so */
}

/* A changed entry that a roll replaces: a ship with a bind, ready, at
 * the same address under both definitions (the data plane's next
 * configuration points at the new one), not rolling already, not held by
 * a retired dependent that must stop first. */
static bool rolls_on_reload(const ms_proc *p, const ms_ship *s, bool sel)
{
    const ms_ship *o = p->ship;
    if (!sel || !p->selected || !running(p) || p->state != MS_P_READY || p->roll || (p->twin && p->twin->roll))
        return false;
    if (!ms_roll_applies(p) || s->kind != MS_SHIP || s->oneshot || !s->has_bind)
        return false;
    if (strcmp(o->bind.text, s->bind.text) != 0 || o->has_bind_alt != s->has_bind_alt ||
        (s->has_bind_alt && strcmp(o->bind_alt.text, s->bind_alt.text) != 0))
        return false;
    return !held_by_retired(p->fleet, p);
}

/* An unchanged entry whose process listens at bind_alt (it came from a
 * surge) while the new definition moves bind_alt (a change of instances:
 * port + i + N): it would no longer be reached there, and the address it
 * holds may be a new instance's. A roll moves it back to its bind, which
 * has not moved. */
static bool alt_moves_away(const ms_proc *p, const ms_ship *s, bool sel)
{
    const ms_ship *o = p->ship;
    if (!p->parity || !o->has_bind_alt || !s->has_bind_alt || strcmp(o->bind_alt.text, s->bind_alt.text) == 0)
        return false;
    if (!sel || !p->selected || !running(p) || p->state != MS_P_READY || p->roll || (p->twin && p->twin->roll))
        return false;
    if (!ms_roll_applies(p) || s->kind != MS_SHIP || s->oneshot || !s->has_bind ||
        strcmp(o->bind.text, s->bind.text) != 0)
        return false;
    return !held_by_retired(p->fleet, p);
}

void ms_fleet_commit(ms_fleet_next *nx)
{
    ms_fleet *f = nx->f;
    ms_manifest *m = nx->m;
    f->preparing = false;
    /* the fleet's references: the manifest it ran on until now, the new one */
    if (!holds(f, f->m))
        f->held[f->nheld++] = ms_manifest_ref((ms_manifest *)f->m);
    f->held[f->nheld++] = ms_manifest_ref(m);
    size_t nretiring = nx->nretiring;
    bool *roll = NULL; /* changed entries replaced by a roll */
    /* retired first, so that a changed entry sees which retired ones depend on it */
    for (size_t k = nx->n; k < nx->n + nretiring; k++) {
        for (ms_proc *p = nx->procs[k]; p; p = pair_next(nx->procs[k], p)) {
            p->retired = true;
            p->selected = false;
            p->restart_requested = p->reload_restart = p->stop_deferred = false;
            p->ndeps = 0; /* its indexes were the old manifest's */
            if (!running(p)) {
                cancel_activity(p);
                set_ready_flag(p, 0); /* an upstream removed */
                p->state = MS_P_STOPPED;
                ms_ring_free(&p->ring);
            } else if (p->state != MS_P_STOPPING) {
                cancel_activity(p);
                set_ready_flag(p, 0);
            }
        }
    }
    free(f->procs); /* the data plane has its own copy of it */
    f->procs = nx->procs;
    f->n = nx->n;
    f->nall = nx->nall;
    f->m = m;
    unapplied unapplied_now = { .len = 0 };
    for (size_t i = 0; i < nx->n; i++) {
        next_entry *e = &nx->e[i];
        ms_proc *p = e->p;
        bool sel = nx->selected ? nx->selected[i] : true;
        if (e->is_new) {
            open_timers(p);
            if (sel)
                unapplied_add(&unapplied_now, &m->ships[i], limits_lacking(f, &m->ships[i]));
            continue;
        }
        unsigned lacked = p->selected ? limits_lacking(f, p->ship) : 0; /* named already */
        if ((e->restart && rolls_on_reload(p, &m->ships[i], sel)) ||
            (!e->restart && alt_moves_away(p, &m->ships[i], sel))) {
            /* replaced by a roll once the new definition is in: until then it
             * serves, and it stops as its old definition says */
            p->stop_as = p->ship;
            p->restarts = 0;
            p->crashes_in_row = 0;
            p->crash_count = p->crash_head = 0;
            take_definition(p, e, &m->ships[i], i);
            if (!roll) {
                roll = calloc(nx->n, sizeof *roll);
                if (!roll)
                    restart_changed(p, e, &m->ships[i], i);
            }
            if (roll)
                roll[i] = true;
        } else if (e->restart) {
            restart_changed(p, e, &m->ships[i], i);
        } else {
            take_definition(p, e, &m->ships[i], i);
        }
        if (p->selected && !sel) { /* no longer selected: stopped and left so */
            p->selected = false;
            p->restart_requested = p->reload_restart = p->stop_deferred = false;
            if (running(p) && p->state != MS_P_STOPPING) {
                p->stop_requested = true;
                stop_proc(p);
            } else if (!running(p)) {
                cancel_activity(p);
                set_ready_flag(p, 0); /* an upstream left out */
                p->state = MS_P_SKIPPED;
            }
        } else if (!p->selected && sel) {
            p->selected = true;
            if (!running(p) && p->state == MS_P_SKIPPED)
                p->state = MS_P_WAITING;
        }
        cron_reloaded(p);
        if (p->cgroup && running(p)) { /* limits: into the running cgroup */
            char why[300];
            if (!ms_cgroup_apply(&f->cgroups, p->cgroup, p->ship, why, sizeof why))
                ms_log_event(f->log, MS_WARN, p->ship->name, "cgroup", "%s \"%s\": %s", kind_word(p),
                             p->ship->name, why);
        }
        unsigned lack = limits_lacking(f, &m->ships[i]);
        if (sel && (lack & ~lacked))
            unapplied_add(&unapplied_now, &m->ships[i], lack);
    }
    unapplied_warn(f, &unapplied_now); /* limits a reload added that cannot apply */
    release_manifests(f);
    /* skipped for a dependency that failed: another chance once none of its
     * dependencies has failed (one that changed is starting again) */
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < f->n; i++) {
            ms_proc *p = f->procs[i];
            if (!p->selected || p->state != MS_P_SKIPPED || running(p))
                continue;
            bool dead = false;
            for (size_t k = 0; k < p->ndeps && !dead; k++)
                dead = dep_dead(f->procs[p->deps[k]]);
            if (!dead) {
                p->state = MS_P_WAITING;
                again = true;
            }
        }
    }
    next_free(nx, false);
    stop_retired(f);
    schedule(f);
    if (roll)
        ms_roll_ships(f, roll, "reload");
    free(roll);
}

/* ---------------------------------------------------------------- rolls */
void ms_fleet_stop_kept(ms_proc *p)
{
    stop_for_good(p);
}

ms_proc *ms_fleet_twin_start(ms_fleet *f, size_t i, char *why, size_t why_len)
{
    assert(i < f->n);
    ms_proc *p = f->procs[i];
    ms_proc *tw = p->twin;
    if (!tw) {
        bool taken[MS_FLEET_MAX_SLOTS] = { false };
        for (size_t k = 0; k < f->nall; k++)
            for (const ms_proc *q = f->procs[k]; q; q = pair_next(f->procs[k], q))
                taken[q->slot] = true;
        size_t slot = 0;
        while (slot < MS_FLEET_MAX_SLOTS && taken[slot])
            slot++;
        if (slot == MS_FLEET_MAX_SLOTS) {
            snprintf(why, why_len, "no slot is free for a surge process (at most %d processes at once)",
                     MS_FLEET_MAX_SLOTS);
            return NULL;
        }
        tw = proc_new(f, f->m, i, slot, true, why, why_len);
        if (!tw)
            return NULL;
        tw->parity = p->parity ? 0 : 1;
        if (!proc_where(f, p->ship, tw->parity, &tw->target, &tw->has_target, &tw->socket_path, why, why_len)) {
            proc_free(tw);
            return NULL;
        }
        open_timers(tw);
        tw->twin = p;
        __atomic_store_n(&p->twin, tw, __ATOMIC_RELEASE);
    } else if (running(tw) || tw->process_open) {
        snprintf(why, why_len, "its previous process (pid %d) has not stopped yet", shown_pid(tw));
        return NULL;
    }
    /* the entry's definition now, at the other parity */
    tw->ship = p->ship;
    tw->index = i;
    tw->stop_as = NULL;
    if (!proc_where(f, p->ship, tw->parity, &tw->target, &tw->has_target, &tw->socket_path, why, why_len))
        return NULL;
    cancel_activity(tw);
    tw->colour = p->colour;
    tw->selected = true;
    tw->settled = true;
    tw->stop_requested = tw->restart_requested = tw->reload_restart = tw->stop_deferred = false;
    tw->loop_paused = false;
    tw->crashes_in_row = 0;
    tw->crash_count = tw->crash_head = 0;
    tw->restarts = p->restarts;
    __atomic_store_n(&tw->draining, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&tw->holding, 0, __ATOMIC_RELEASE);
    start_proc(tw);
    return tw;
}

void ms_fleet_twin_swap(ms_fleet *f, size_t i)
{
    assert(i < f->n && f->procs[i]->twin);
    ms_proc *p = f->procs[i], *tw = p->twin;
    tw->selected = p->selected;
    /* the entry's CPU counter goes on from what the old process counted
     * (the twin's own figures are those of an earlier roll, if any) */
    tw->cpu_carried = p->cpu_carried + p->cpu_seen;
    tw->cpu_seen = 0;
    tw->cpu_pid = 0;
    f->procs[i] = tw;
}
