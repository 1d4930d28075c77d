/* ctl.c: the control socket's libuv glue and its handlers (see ctl.h).
 *
 * Each connection owns a pipe handle and a timer, a fixed read buffer and
 * one ms_ctl_session. States:
 *   READING    bytes go to the session; each complete request is acted on
 *              and answered at once;
 *   WAITING    a drain is in progress: reading paused until it is answered;
 *   FOLLOWING  a log stream: chunks go out as lines come, input is ignored;
 *   LINGER     after an answer that ends the connection: EOF sent with
 *              uv_shutdown, input discarded until EOF or a short timer;
 *   CLOSING    both handles being closed; freed when the last one is.
 * The timer closes a connection idle for MS_CTL_IDLE_TIMEOUT_MS (never a
 * waiting or following one) and bounds the linger. */
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "cli/ctl_proto.h"
#include "cli/reload.h"
#include "cli/run.h"
#include "fleet/roll.h"
#include "ms_config.h"
#include "tui/tui_impl.h"
#include "util/strutil.h"

#define READ_BUF_SIZE 4096u
#define LINGER_MS 2000u
#define FOLLOW_BACKLOG_MAX ((size_t)4 << 20) /* a follower this far behind is dropped */
#define WRITE_QUEUE_MAX ((size_t)256 << 10) /* answers not taken: stop reading requests */
#define MEMBER_MAX (MS_CTL_MAX_CONNECTIONS / 2) /* control_group members together; the rest is root's and ours */
#define TURNED_AWAY_MAX 32u                      /* refused peers answered at once; beyond, closed unanswered */
#define REFUSED_LOG_WINDOW_MS 5000u              /* control_refused lines: at most REFUSED_LOG_BURST a window */
#define REFUSED_LOG_BURST 3u

typedef enum conn_state { C_READING, C_WAITING, C_FOLLOWING, C_LINGER, C_CLOSING } conn_state;

typedef struct restart_wait restart_wait;

typedef struct ctl_conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    ms_ctl *ctl;
    struct ctl_conn *prev, *next;
    conn_state state;
    int open_handles;
    size_t writes;                     /* uv_writes in flight */
    bool end_after_writes;             /* linger once the writes are done */
    bool keep_alive;                   /* of the request being answered */
    bool paused;                       /* READING, but not read from until its answers are taken */
    char follow[MS_CTL_MAX_NAME];      /* FOLLOWING: the entry, "" for all */
    char who[64];                      /* "uid 1000 pid 4242" */
    restart_wait *wait;                /* WAITING for rolls (a restart), or NULL */
    bool counted;                      /* holds one of the MS_CTL_MAX_CONNECTIONS slots */
    bool member;                       /* ... and one of the MEMBER_MAX of control_group members */
    size_t rpos, rlen;
    ms_ctl_session sess;
    ms_ctl_response resp;
    uv_shutdown_t sreq;
    char rbuf[READ_BUF_SIZE];
} ctl_conn;

struct ms_ctl {
    ms_run *r;
    uv_loop_t *loop;
    uv_pipe_t listener;
    bool listener_open;
    int live;                          /* handles not yet closed: listener + 2 per connection */
    bool closing;
    bool drain_pending;                /* ms_dataplane_drain has not called back yet */
    bool drained;
    ctl_conn *conns;
    size_t nconns;                     /* every connection, refused ones too */
    size_t nactive;                    /* allowed connections (the slots) */
    size_t nmembers;                   /* allowed connections of control_group members, not root nor us */
    uint64_t refused_window_start;     /* the control_refused log's rate limit */
    unsigned refused_logged;           /* lines in this window */
    size_t refused_unlogged;           /* refusals not logged since the last line */
    char *path;
    ino_t ino;                         /* of the socket file we made */
    uid_t own_uid;
    bool has_group;
    gid_t group;
};

typedef struct ctl_write {
    uv_write_t req;
    ctl_conn *c;
    char data[];
} ctl_write;

static void conn_close(ctl_conn *c);
static void process(ctl_conn *c);

/* ---------------------------------------------------------------- teardown */
static void maybe_free(ms_ctl *ctl)
{
    if (!ctl->closing || ctl->live > 0 || ctl->drain_pending)
        return;
    free(ctl->path);
    free(ctl);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    ctl_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    ms_ctl *ctl = c->ctl;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ctl->nconns--;
    if (c->counted)
        ctl->nactive--;
    if (c->member)
        ctl->nmembers--;
    ms_ctl_session_free(&c->sess);
    ms_ctl_response_free(&c->resp);
    free(c);
    ctl->live--;
    maybe_free(ctl);
}

static void wait_detach(restart_wait *w);

static void conn_close(ctl_conn *c)
{
    if (c->state == C_CLOSING)
        return;
    if (c->wait)
        wait_detach(c->wait);
    c->state = C_CLOSING;
    uv_close((uv_handle_t *)&c->pipe, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void on_timer(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Act on the requests already read, then read on (reading was stopped). */
static void resume(ctl_conn *c)
{
    process(c);
    if (c->state == C_READING && !c->paused && !c->end_after_writes &&
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
        conn_close(c);
}

/* The answer was the last: send EOF, then wait briefly for the client's. */
static void linger(ctl_conn *c)
{
    if (c->state == C_CLOSING || c->state == C_LINGER)
        return;
    c->state = C_LINGER;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0 && c->state == C_LINGER)
        conn_close(c);
}

/* ---------------------------------------------------------------- writing */
static void on_written(uv_write_t *req, int status)
{
    ctl_write *w = (ctl_write *)req;
    ctl_conn *c = w->c;
    free(w);
    c->writes--;
    if (status < 0)
        conn_close(c);
    else if (c->end_after_writes && c->writes == 0)
        linger(c);
    else if (c->paused && c->state == C_READING &&
             uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <= WRITE_QUEUE_MAX / 2) {
        c->paused = false;
        resume(c);
    }
}

static bool conn_write(ctl_conn *c, const char *data, size_t len)
{
    if (c->state == C_CLOSING || c->state == C_LINGER || len == 0)
        return false;
    ctl_write *w = malloc(sizeof *w + len);
    if (!w) {
        conn_close(c);
        return false;
    }
    w->c = c;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
        free(w);
        conn_close(c);
        return false;
    }
    c->writes++;
    return true;
}

/* Send c->resp; an answer that closes ends the connection after it. */
static void send_resp(ctl_conn *c)
{
    if (c->resp.close) {
        c->end_after_writes = true;
        uv_read_stop((uv_stream_t *)&c->pipe);
    }
    if (c->resp.out.len > 0)
        conn_write(c, c->resp.out.data, c->resp.out.len);
    if (c->end_after_writes && c->writes == 0)
        linger(c);
}

static void answer(ctl_conn *c, int status, json_t *body)
{
    ms_ctl_respond(&c->resp, status, body, !c->keep_alive);
    send_resp(c);
}

static void answer_error(ctl_conn *c, int status, const char *text)
{
    answer(c, status, json_pack("{s:s}", "error", text));
}

/* ---------------------------------------------------------------- status */
static const char *phase_name(const ms_fleet *f)
{
    if (!f)
        return "preflight";
    switch (f->phase) {
    case MS_FLEET_LAUNCHING: return "launching";
    case MS_FLEET_RUNNING: return "running";
    case MS_FLEET_STOPPING: return "stopping";
    case MS_FLEET_DONE: return "done";
    }
    return "?";
}

static const char *kind_name(const ms_ship *s)
{
    if (s->kind == MS_UPSTREAM)
        return "upstream";
    return s->kind == MS_BAY ? "bay" : s->oneshot ? "job" : "ship";
}

static json_t *strlist_json(const ms_strlist *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->len; i++)
        json_array_append_new(a, json_string(l->items[i]));
    return a;
}

/* A scheduled job: its schedule, its next run (local time, RFC 3339 with
 * the offset; null when none is set) and the runs skipped because the
 * last one was still going. */
static void schedule_json(const ms_proc *p, json_t *e)
{
    json_t *next = json_null();
    time_t t = (time_t)p->next_run;
    struct tm tm;
    char buf[40];
    if (p->next_run > 0 && localtime_r(&t, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm) == 24) {
        memmove(buf + 23, buf + 22, 3); /* +0100 -> +01:00 */
        buf[22] = ':';
        next = json_string(buf);
    }
    json_object_set_new(e, "schedule", json_string(p->ship->schedule));
    json_object_set_new(e, "next_run", next);
    json_object_set_new(e, "runs_skipped", json_integer(p->runs_skipped));
}

static json_t *entry_json(const ms_fleet *f, const ms_proc *p)
{
    const ms_ship *s = p->ship;
    bool run = ms_fleet_proc_running(p);
    int pid = run ? (p->ship_pid > 0 ? p->ship_pid : p->pid) : 0;
    double uptime = run ? (double)(uv_now(f->loop) - p->started_at) / 1000.0 : 0;
    int healthy = __atomic_load_n(&p->healthy, __ATOMIC_ACQUIRE);
    const char *health = !s->health.enabled ? "none" : healthy > 0 ? "healthy" : healthy == 0 ? "unhealthy"
                                                                                             : "unknown";
    json_t *last_exit = json_null();
    if (p->last_exit_status >= 0 || p->last_term_signal > 0) {
        last_exit = json_object();
        if (p->last_term_signal > 0) {
            const char *abbrev = sigabbrev_np(p->last_term_signal);
            char name[32];
            snprintf(name, sizeof name, "SIG%s", abbrev ? abbrev : "?");
            json_object_set_new(last_exit, "signal", json_string(name));
        } else {
            json_object_set_new(last_exit, "code", json_integer(p->last_exit_status));
        }
    }
    json_t *cpu = json_null(), *rss = json_null();
    uint64_t ticks, rss_bytes;
    if (run && p->pid > 0 && ms_tui_proc_tree_stat(p->pid, &ticks, &rss_bytes)) {
        long hz = sysconf(_SC_CLK_TCK);
        if (hz > 0 && uptime > 0)
            cpu = json_real((double)ticks / (double)hz / uptime * 100.0);
        rss = json_integer((json_int_t)rss_bytes);
    }
    json_t *e = json_pack("{s:s, s:s, s:s?, s:o, s:s, s:b, s:i, s:f, s:I, s:s, s:s, s:o, s:o, s:o, s:i}",
                     "name", s->name, "kind", kind_name(s), "group", s->group, "tags", strlist_json(&s->tags),
                     "state", ms_pstate_name(p->state), "selected", p->selected, "pid", pid, "uptime_s", uptime,
                     "restarts", (json_int_t)p->restarts, "health", health,
                     "breaker", ms_breaker_name((ms_breaker)__atomic_load_n(&p->breaker, __ATOMIC_ACQUIRE)),
                     "last_exit", last_exit, "cpu_percent", cpu, "rss_bytes", rss, "instances",
                     (int)(s->instances ? s->instances : 1));
    if (e && s->schedule)
        schedule_json(p, e);
    if (e && p->cgroup)
        json_object_set_new(e, "cgroup", json_string(p->cgroup));
    return e;
}

/* Replicas and rolls: the ship's name as written and which instance this
 * entry is, whether a roll is replacing it, and whether it is draining
 * (no new requests). */
static json_t *entry_roll_json(const ms_proc *p, json_t *e)
{
    const ms_ship *s = p->ship;
    json_object_set_new(e, "ship", json_string(ms_ship_base(s)));
    json_object_set_new(e, "instance", json_integer(s->instance));
    json_object_set_new(e, "rolling", json_boolean(p->roll || (p->twin && p->twin->roll)));
    json_object_set_new(e, "draining", json_boolean(__atomic_load_n(&p->draining, __ATOMIC_ACQUIRE) != 0));
    return e;
}

static json_t *status_json(ms_ctl *ctl)
{
    ms_run *r = ctl->r;
    const ms_fleet *f = r->fleet;
    char *real = realpath(r->o->manifest, NULL);
    json_t *fleet = json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:{s:I, s:I}}", "phase", phase_name(f), "pid",
                              (int)getpid(), "version", MS_VERSION, "manifest", real ? real : r->o->manifest,
                              "socket", ctl->path, "drained", ctl->drained, "reloads", "success",
                              (json_int_t)r->reloads[0], "failure", (json_int_t)r->reloads[1]);
    free(real);
    json_object_set_new(fleet, "uptime_s", json_real(f ? (double)(uv_now(f->loop) - f->started_at) / 1000.0 : 0));
    json_object_set_new(fleet, "ready", json_boolean(f && ms_fleet_ready(f)));
    json_object_set_new(fleet, "last_reload", r->last_reload_ok > 0 ? json_real(r->last_reload_ok) : json_null());
    json_t *entries = json_array();
    for (size_t i = 0; f && i < f->n; i++) {
        json_t *e = entry_roll_json(f->procs[i], entry_json(f, f->procs[i]));
        const ms_ship *s = f->procs[i]->ship;
        if (s->kind == MS_UPSTREAM) { /* where it is reached, and how */
            json_object_set_new(e, "bind", json_string(s->bind.text));
            json_object_set_new(e, "protocol", json_string(s->upstream_protocol == MS_UPSTREAM_DOCKING ? "docking"
                                                                                                       : "http"));
        }
        json_array_append_new(entries, e);
    }
    return json_pack("{s:o, s:o}", "fleet", fleet, "entries", entries);
}

/* ---------------------------------------------------------------- actions */
static bool fleet_usable(ctl_conn *c)
{
    ms_fleet *f = c->ctl->r->fleet;
    if (!f) {
        answer_error(c, 409, "the fleet is not launched yet (its uplinks are being checked)");
        return false;
    }
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) {
        answer_error(c, 409, "the fleet is stopping");
        return false;
    }
    return true;
}

/* A restart that rolls ships: the answer waits until every roll is over. */
typedef struct roll_ref {
    restart_wait *w;
    ms_roll *r;                        /* NULL once it is over */
} roll_ref;

struct restart_wait {
    ctl_conn *c;                       /* NULL once the connection is gone */
    json_t *done, *failed;
    size_t pending;                    /* rolls not over */
    size_t nrefs;
    roll_ref refs[];
};

static void answer_entries(ctl_conn *c, ms_ctl_op op, json_t *done, json_t *failed)
{
    bool ok = json_array_size(failed) == 0;
    json_t *body = json_pack("{s:s, s:o, s:o}", "action", ms_ctl_op_name(op), "entries", done, "failed", failed);
    if (!ok)
        json_object_set_new(body, "error", json_copy(json_object_get(json_array_get(failed, 0), "error")));
    answer(c, ok ? 200 : 409, body);
}

static void wait_free(restart_wait *w)
{
    json_decref(w->done);
    json_decref(w->failed);
    free(w);
}

static void wait_detach(restart_wait *w)
{
    for (size_t k = 0; k < w->nrefs; k++)
        if (w->refs[k].r)
            ms_roll_detach(w->refs[k].r);
    w->c->wait = NULL;
    wait_free(w);
}

static void on_roll_done(void *arg, const ms_roll_outcome *o)
{
    roll_ref *ref = arg;
    restart_wait *w = ref->w;
    ref->r = NULL;
    for (size_t k = 0; k < o->nrolled; k++)
        json_array_append_new(w->done, json_string(o->rolled[k]));
    if (!o->ok) {
        char why[600];
        snprintf(why, sizeof why, "%s: %s; the roll stopped there (%zu of %zu replaced)", o->failed, o->why,
                 o->nrolled, o->n);
        json_array_append_new(w->failed, json_pack("{s:s, s:s}", "name", o->failed, "error", why));
    }
    if (--w->pending > 0)
        return;
    ctl_conn *c = w->c;
    c->wait = NULL;
    c->state = C_READING;
    answer_entries(c, MS_CTL_RESTART, json_incref(w->done), json_incref(w->failed));
    wait_free(w);
    if (c->state == C_READING) {
        uv_timer_again(&c->timer);
        resume(c);
    }
}

/* Roll the picked ships with a bind, one roll per ship (its instances in
 * order); pick[i] is cleared for each entry taken here. */
static void start_rolls(ctl_conn *c, ms_fleet *f, bool *pick, json_t *failed)
{
    size_t *idx = calloc(f->n ? f->n : 1, sizeof *idx);
    restart_wait *w = calloc(1, sizeof *w + (f->n ? f->n : 1) * sizeof(roll_ref));
    if (!idx || !w) {
        free(idx);
        free(w);
        return; /* restarted in place, as before */
    }
    w->c = c;
    w->done = json_array();
    w->failed = json_array();
    char why[256];
    for (size_t i = 0; i < f->n; i++) {
        if (!pick[i] || !ms_roll_applies(f->procs[i]))
            continue;
        const char *base = ms_ship_base(f->procs[i]->ship);
        size_t n = 0;
        for (size_t j = i; j < f->n; j++)
            if (pick[j] && ms_roll_applies(f->procs[j]) && strcmp(ms_ship_base(f->procs[j]->ship), base) == 0) {
                idx[n++] = j;
                pick[j] = false;
            }
        for (size_t k = 0; k < n; k++)
            ms_log_event(f->log, MS_INFO, f->procs[idx[k]]->ship->name, "control", "%s: restart ship \"%s\"", c->who,
                         f->procs[idx[k]]->ship->name);
        roll_ref *ref = &w->refs[w->nrefs];
        ref->w = w;
        ref->r = ms_roll_start(f, idx, n, c->who, on_roll_done, ref, why, sizeof why);
        if (!ref->r) {
            ms_log_event(f->log, MS_WARN, f->procs[i]->ship->name, "control", "%s: cannot restart: %s", c->who, why);
            for (size_t k = 0; k < n; k++)
                json_array_append_new(failed, json_pack("{s:s, s:s}", "name", f->procs[idx[k]]->ship->name,
                                                        "error", why));
            continue;
        }
        w->nrefs++;
        w->pending++;
    }
    free(idx);
    if (w->pending == 0) {
        wait_free(w);
        return;
    }
    c->wait = w;
}

static void do_entries(ctl_conn *c, const ms_ctl_request *q)
{
    if (!fleet_usable(c))
        return;
    ms_fleet *f = c->ctl->r->fleet;
    bool *pick = calloc(f->n ? f->n : 1, sizeof *pick);
    if (!pick) {
        answer_error(c, 500, "out of memory");
        return;
    }
    json_t *err;
    if (!ms_ctl_resolve(f->m, q->names, pick, &err)) {
        ms_log_event(f->log, MS_WARN, NULL, "control", "%s: %s: %s", c->who, ms_ctl_op_name(q->op),
                     json_string_value(json_object_get(err, "error")));
        free(pick);
        answer(c, 404, err);
        return;
    }
    ms_fleet_action a = q->op == MS_CTL_RESTART ? MS_FLEET_ACT_RESTART
                      : q->op == MS_CTL_STOP    ? MS_FLEET_ACT_STOP
                                                : MS_FLEET_ACT_START;
    json_t *done = json_array();
    json_t *failed = json_array();
    if (a == MS_FLEET_ACT_RESTART)
        start_rolls(c, f, pick, failed);
    char why[256];
    for (size_t i = 0; i < f->n; i++) {
        if (!pick[i])
            continue;
        if (ms_fleet_control(f, i, a, 0, c->who, why, sizeof why))
            json_array_append_new(done, json_string(f->procs[i]->ship->name));
        else
            json_array_append_new(failed, json_pack("{s:s, s:s}", "name", f->procs[i]->ship->name, "error", why));
    }
    free(pick);
    if (c->wait) { /* answered once the rolls are over */
        json_array_extend(c->wait->done, done);
        json_array_extend(c->wait->failed, failed);
        json_decref(done);
        json_decref(failed);
        c->state = C_WAITING;
        uv_read_stop((uv_stream_t *)&c->pipe);
        return;
    }
    answer_entries(c, q->op, done, failed);
}

static bool find_entry(ctl_conn *c, const char *name, size_t *idx)
{
    ms_fleet *f = c->ctl->r->fleet;
    for (size_t i = 0; f && i < f->n; i++)
        if (strcmp(f->procs[i]->ship->name, name) == 0) {
            *idx = i;
            return true;
        }
    json_t *names = json_pack("[s]", name);
    bool *pick = calloc(f && f->n ? f->n : 1, sizeof *pick);
    json_t *err = NULL;
    if (f && pick && !ms_ctl_resolve(f->m, names, pick, &err))
        answer(c, 404, err);
    else
        answer_error(c, 404, "no such entry");
    free(pick);
    json_decref(names);
    return false;
}

static void do_signal(ctl_conn *c, const ms_ctl_request *q)
{
    if (!fleet_usable(c))
        return;
    size_t i;
    if (!find_entry(c, q->name, &i))
        return;
    ms_fleet *f = c->ctl->r->fleet;
    char why[256];
    if (!ms_fleet_control(f, i, MS_FLEET_ACT_SIGNAL, q->signo, c->who, why, sizeof why)) {
        answer_error(c, 409, why);
        return;
    }
    const ms_proc *p = f->procs[i];
    answer(c, 200, json_pack("{s:s, s:s, s:i, s:i}", "action", "signal", "name", p->ship->name, "signal", q->signo,
                             "pid", p->ship_pid > 0 ? p->ship_pid : p->pid));
}

static void do_reload(ctl_conn *c, const ms_ctl_request *q)
{
    ms_run *r = c->ctl->r;
    if (!fleet_usable(c))
        return;
    ms_log_event(r->log, MS_INFO, NULL, "control", "%s: reload%s", c->who, q->check ? " --check" : "");
    json_t *result = NULL;
    bool ok = ms_run_reload(r, q->check, c->who, &result);
    if (!result)
        result = json_pack("{s:s}", "result", ok ? (q->check ? "checked" : "applied") : "refused");
    answer(c, ok ? 200 : 422, result);
}

static void on_drained(void *arg)
{
    ms_ctl *ctl = arg;
    ctl->drain_pending = false;
    ctl->drained = true;
    if (!ctl->closing)
        ms_log_event(ctl->r->log, MS_INFO, NULL, "drained", "drain: listeners closed, requests in flight finished");
    for (ctl_conn *c = ctl->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_WAITING) {
            c->state = C_READING;
            answer(c, 200, json_pack("{s:s, s:b}", "action", "drain", "drained", true));
            if (c->state == C_READING) {
                uv_timer_again(&c->timer);
                resume(c);
            }
        }
    }
    maybe_free(ctl);
}

static void do_drain(ctl_conn *c)
{
    ms_ctl *ctl = c->ctl;
    ms_run *r = ctl->r;
    if (!fleet_usable(c))
        return;
    if (ctl->drained || !r->dp) {
        if (!ctl->drained)
            ms_log_event(r->log, MS_INFO, NULL, "control", "%s: drain (no binds: nothing to drain)", c->who);
        ctl->drained = true;
        r->view.drained = true;
        answer(c, 200, json_pack("{s:s, s:b}", "action", "drain", "drained", true));
        return;
    }
    c->state = C_WAITING;
    uv_read_stop((uv_stream_t *)&c->pipe);
    if (ctl->drain_pending)
        return;
    ms_log_event(r->log, MS_INFO, NULL, "control", "%s: drain: closing the listeners", c->who);
    ctl->drain_pending = true;
    r->view.drained = true; /* /ready says 503 from now on */
    ms_dataplane_drain(r->dp, r->m->global.shutdown_timeout_ms, on_drained, ctl);
}

/* ---------------------------------------------------------------- logs */
static void put_line(ms_buf *out, const char *name, const ms_ring_line *l)
{
    json_t *text = json_stringn(l->text, l->len);
    if (!text) { /* not UTF-8: keep what is printable ASCII */
        char *copy = malloc(l->len + 1);
        if (copy) {
            for (size_t i = 0; i < l->len; i++)
                copy[i] = (unsigned char)l->text[i] < 0x80 && l->text[i] != '\0' ? l->text[i] : '?';
            text = json_stringn(copy, l->len);
            free(copy);
        }
    }
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:o?}", "seq", (json_int_t)l->seq, "time_ms", (json_int_t)l->time_ms,
                          "name", name, "stream", l->stream == MS_STDERR ? "stderr" : "stdout", "line", text);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(o);
    if (!s)
        return;
    size_t len = strlen(s);
    s[len] = '\n'; /* json_dumps leaves room only for the NUL: write it as a chunk of len + 1 */
    ms_ctl_chunk(out, s, len + 1);
    free(s);
}

typedef struct line_ref {
    const char *name;
    const ms_ring_line *l;
} line_ref;

static int by_seq(const void *a, const void *b)
{
    const line_ref *x = a, *y = b;
    return x->l->seq < y->l->seq ? -1 : x->l->seq > y->l->seq;
}

static void do_logs(ctl_conn *c, const ms_ctl_request *q)
{
    ms_fleet *f = c->ctl->r->fleet;
    size_t only = SIZE_MAX;
    if (q->name[0] && !find_entry(c, q->name, &only))
        return;
    size_t total = 0;
    for (size_t i = 0; f && i < f->n; i++)
        if (only == SIZE_MAX || only == i)
            total += f->procs[i]->ring.count;
    line_ref *refs = calloc(total ? total : 1, sizeof *refs);
    if (!refs) {
        answer_error(c, 500, "out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; f && i < f->n; i++) {
        if (only != SIZE_MAX && only != i)
            continue;
        const ms_ring *ring = &f->procs[i]->ring;
        for (size_t j = 0; j < ring->count; j++)
            refs[k++] = (line_ref){ f->procs[i]->ship->name, ms_ring_at(ring, j) };
    }
    qsort(refs, k, sizeof *refs, by_seq);
    size_t from = k > q->n ? k - q->n : 0;
    ms_ctl_respond_stream(&c->resp);
    for (size_t i = from; i < k; i++)
        put_line(&c->resp.out, refs[i].name, refs[i].l);
    free(refs);
    if (!q->follow || !f || f->phase == MS_FLEET_DONE) {
        ms_ctl_chunk(&c->resp.out, "", 0);
        send_resp(c);
        return;
    }
    snprintf(c->follow, sizeof c->follow, "%s", q->name);
    c->state = C_FOLLOWING;
    c->resp.close = false;
    send_resp(c);
}

static void on_line_added(void *arg, ms_proc *p, const ms_ring_line *l)
{
    ms_ctl *ctl = arg;
    ms_buf out;
    bool made = false;
    for (ctl_conn *c = ctl->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != C_FOLLOWING || (c->follow[0] && strcmp(c->follow, p->ship->name) != 0))
            continue;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > FOLLOW_BACKLOG_MAX) {
            ms_log_event(ctl->r->log, MS_WARN, NULL, "control", "%s: log follower disconnected: it is more than "
                         "%zu MiB behind", c->who, FOLLOW_BACKLOG_MAX >> 20);
            conn_close(c); /* it does not read: drop it rather than hold its lines */
            continue;
        }
        if (!made) {
            ms_buf_init(&out, MS_LOG_LINE_MAX * 8);
            put_line(&out, p->ship->name, l);
            made = true;
        }
        if (!ms_buf_failed(&out))
            conn_write(c, out.data, out.len);
    }
    if (made)
        ms_buf_free(&out);
}

/* ---------------------------------------------------------------- requests */
static void handle(ctl_conn *c, const ms_ctl_request *q)
{
    switch (q->op) {
    case MS_CTL_STATUS:
        answer(c, 200, status_json(c->ctl));
        break;
    case MS_CTL_RESTART:
    case MS_CTL_STOP:
    case MS_CTL_START:
        do_entries(c, q);
        break;
    case MS_CTL_SIGNAL:
        do_signal(c, q);
        break;
    case MS_CTL_LOGS:
        do_logs(c, q);
        break;
    case MS_CTL_RELOAD:
        do_reload(c, q);
        break;
    case MS_CTL_DRAIN:
        do_drain(c);
        break;
    }
}

static void process(ctl_conn *c)
{
    while (c->state == C_READING && !c->end_after_writes && c->rpos < c->rlen) {
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > WRITE_QUEUE_MAX) {
            /* it sends requests and does not take the answers: wait for it */
            c->paused = true;
            uv_read_stop((uv_stream_t *)&c->pipe);
            return;
        }
        size_t used = 0;
        ms_ctl_request q;
        memset(&q, 0, sizeof q);
        ms_ctl_action a = ms_ctl_session_feed(&c->sess, c->rbuf + c->rpos, c->rlen - c->rpos, &used, &q,
                                              &c->keep_alive, &c->resp);
        c->rpos += used;
        if (a == MS_CTL_NEED_MORE)
            break;
        uv_timer_again(&c->timer);
        if (a == MS_CTL_ANSWER) {
            send_resp(c);
            continue;
        }
        handle(c, &q);
        ms_ctl_request_clear(&q);
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ctl_conn *c = h->data;
    (void)suggested;
    if (c->state == C_LINGER) {
        *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
        return;
    }
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(sizeof c->rbuf - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ctl_conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->state == C_FOLLOWING || c->state == C_LINGER)
        return; /* input is ignored */
    c->rlen += (size_t)nread;
    process(c);
}

static void on_timer(uv_timer_t *t)
{
    ctl_conn *c = t->data;
    if (c->state == C_WAITING || c->state == C_FOLLOWING)
        return;
    conn_close(c);
}

/* ---------------------------------------------------------------- peers */
/* Was the peer in group when it connected? The kernel keeps the peer's
 * groups as they were at connect() (SO_PEERGROUPS): /proc/<pid> would be
 * another process's once the peer is gone and its pid reused. */
static bool peer_in_group(int fd, const struct ucred *cr, gid_t group)
{
    if (cr->gid == group)
        return true;
    gid_t some[64];
    gid_t *groups = some;
    socklen_t len = sizeof some;
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    if (rc != 0 && errno == ERANGE && len > 0 && len <= 65536 * sizeof(gid_t)) {
        groups = malloc(len);
        if (!groups)
            return false;
        rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    }
    bool found = false;
    for (size_t i = 0; rc == 0 && i < len / sizeof(gid_t); i++)
        found |= groups[i] == group;
    if (groups != some)
        free(groups);
    return found;
}

typedef enum peer_kind { PEER_REFUSED, PEER_OWNER, PEER_MEMBER } peer_kind;

/* Who is this peer, and may it use the socket? who gets "uid U pid P". */
static peer_kind peer_check(ms_ctl *ctl, ctl_conn *c)
{
    uv_os_fd_t fd;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        snprintf(c->who, sizeof c->who, "an unknown peer");
        return PEER_REFUSED;
    }
    snprintf(c->who, sizeof c->who, "uid %u pid %d", (unsigned)cr.uid, (int)cr.pid);
    if (cr.uid == 0 || cr.uid == ctl->own_uid)
        return PEER_OWNER;
    return ctl->has_group && peer_in_group(fd, &cr, ctl->group) ? PEER_MEMBER : PEER_REFUSED;
}

/* A refused peer is logged, but a flood of them is not: REFUSED_LOG_BURST
 * lines a window, the next line says how many were left out. */
static void log_refused(ms_ctl *ctl, ctl_conn *c, const char *grp)
{
    uint64_t now = uv_now(ctl->loop);
    if (now - ctl->refused_window_start >= REFUSED_LOG_WINDOW_MS) {
        ctl->refused_window_start = now;
        ctl->refused_logged = 0;
    }
    if (ctl->refused_logged >= REFUSED_LOG_BURST) {
        ctl->refused_unlogged++;
        return;
    }
    ctl->refused_logged++;
    char more[96] = "";
    if (ctl->refused_unlogged > 0)
        snprintf(more, sizeof more, " (%zu more refused connection%s not logged before this one)",
                 ctl->refused_unlogged, ctl->refused_unlogged == 1 ? "" : "s");
    ctl->refused_unlogged = 0;
    ms_log_event(ctl->r->log, MS_WARN, NULL, "control_refused", "control socket: refused %s: only root, uid %u%s "
                 "may use it%s", c->who, (unsigned)ctl->own_uid, grp, more);
}

/* Answer a connection that may not stay, and end it. It holds no slot; when
 * many are being turned away at once the answer is skipped. */
static void turn_away(ms_ctl *ctl, ctl_conn *c)
{
    if (ctl->nconns - ctl->nactive > TURNED_AWAY_MAX) {
        conn_close(c);
        return;
    }
    send_resp(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    ms_ctl *ctl = server->data;
    if (status < 0 || ctl->closing)
        return;
    ctl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->ctl = ctl;
    uv_pipe_init(ctl->loop, &c->pipe, 0);
    uv_timer_init(ctl->loop, &c->timer);
    c->pipe.data = c->timer.data = c;
    c->open_handles = 2;
    ctl->live += 1; /* the connection counts once, freed when both handles are */
    ms_ctl_session_init(&c->sess);
    ms_ctl_response_init(&c->resp);
    c->next = ctl->conns;
    if (c->next)
        c->next->prev = c;
    ctl->conns = c;
    ctl->nconns++;
    c->state = C_READING;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, MS_CTL_IDLE_TIMEOUT_MS, MS_CTL_IDLE_TIMEOUT_MS);
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    peer_kind kind = peer_check(ctl, c);
    if (kind == PEER_REFUSED) {
        char grp[300] = "";
        if (ctl->has_group) {
            struct group *g = getgrgid(ctl->group);
            snprintf(grp, sizeof grp, ", members of group %s", g ? g->gr_name : "?");
        }
        log_refused(ctl, c, grp);
        ms_ctl_respond_error(&c->resp, 403, true, "refused: only root, uid %u%s may use this control socket",
                             (unsigned)ctl->own_uid, grp);
        turn_away(ctl, c);
        return;
    }
    if (ctl->nactive >= MS_CTL_MAX_CONNECTIONS || (kind == PEER_MEMBER && ctl->nmembers >= MEMBER_MAX)) {
        ms_ctl_respond_error(&c->resp, 503, true, "too many control connections (at most %d%s)",
                             kind == PEER_MEMBER ? MEMBER_MAX : MS_CTL_MAX_CONNECTIONS,
                             kind == PEER_MEMBER ? " from members of control_group" : "");
        turn_away(ctl, c);
        return;
    }
    c->counted = true;
    ctl->nactive++;
    if (kind == PEER_MEMBER) {
        c->member = true;
        ctl->nmembers++;
    }
}

/* ---------------------------------------------------------------- setup */
char *ms_ctl_socket_path(const ms_manifest *m)
{
    if (m && m->global.control_socket) {
        const char *p = m->global.control_socket;
        char cwd[4096];
        if (p[0] == '/' || !getcwd(cwd, sizeof cwd))
            return ms_strdup(p);
        return ms_asprintf("%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p); /* the same file from any cwd */
    }
    char *dir = ms_fleet_socket_dir(m);
    if (!dir)
        return NULL;
    char *p = ms_asprintf("%s/%s", dir, MS_CTL_SOCKET_NAME);
    free(dir);
    return p;
}

/* Is a server answering at path? (ENOENT / ECONNREFUSED: no.) */
static bool answers(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* May the control socket live in dir? Not when another user owns it, nor
 * when others may write to it without the sticky bit: they could replace
 * the socket with their own, and the CLI would talk to them. own_dir: the
 * default socket dir, which must also not be a symbolic link. */
static bool dir_is_safe(const char *dir, bool own_dir, char *why, size_t why_len)
{
    struct stat st;
    if ((own_dir ? lstat(dir, &st) : stat(dir, &st)) != 0) {
        snprintf(why, why_len, "%s: %s", dir, strerror(errno));
        return false;
    }
    if (S_ISLNK(st.st_mode)) {
        snprintf(why, why_len, "%s is a symbolic link: the control socket's dir must be a directory of its own", dir);
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, why_len, "%s is not a directory", dir);
        return false;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(why, why_len, "%s belongs to uid %u: another user could replace the control socket there "
                 "(remove it, or set socket_dir or control_socket)", dir, (unsigned)st.st_uid);
        return false;
    }
    /* group-writable is fine when the group is our own (umask 002 with a
     * group per user) */
    mode_t others = S_IWOTH | (st.st_gid != getegid() ? S_IWGRP : 0);
    if ((st.st_mode & others) && !(st.st_mode & S_ISVTX)) {
        snprintf(why, why_len, "%s: others may write to it (mode %04o, not sticky): another user could replace "
                 "the control socket there", dir, (unsigned)(st.st_mode & 07777));
        return false;
    }
    return true;
}

static void on_listener_closed(uv_handle_t *h)
{
    ms_ctl *ctl = h->data;
    ctl->live--;
    maybe_free(ctl);
}

ms_ctl *ms_ctl_start(ms_run *r, char *why, size_t why_len)
{
    ms_ctl *ctl = calloc(1, sizeof *ctl);
    if (!ctl || !(ctl->path = ms_ctl_socket_path(r->m))) {
        free(ctl);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    ctl->r = r;
    ctl->loop = r->loop;
    ctl->own_uid = geteuid();
    int lock = -1;
    if (r->m->global.control_group) {
        struct group *g = getgrnam(r->m->global.control_group);
        if (!g) {
            snprintf(why, why_len, "control_group \"%s\": no such group", r->m->global.control_group);
            goto fail;
        }
        ctl->has_group = true;
        ctl->group = g->gr_gid;
    }
    if (strlen(ctl->path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
        snprintf(why, why_len, "%s: the path is too long for a Unix socket (at most %zu bytes)", ctl->path,
                 sizeof ((struct sockaddr_un *)0)->sun_path - 1);
        goto fail;
    }
    /* the default socket dir may not exist yet (the fleet makes it later) */
    if (!r->m->global.control_socket) {
        char *dir = ms_fleet_socket_dir(r->m);
        if (dir && mkdir(dir, 0700) != 0 && errno != EEXIST) {
            snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
            free(dir);
            goto fail;
        }
        free(dir);
    }
    char *dir = ms_strdup(ctl->path);
    if (!dir) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0';
    bool safe = dir_is_safe(slash ? dir : ".", !r->m->global.control_socket, why, why_len);
    /* the dir's lock: two runs starting at once do not both take a stale
     * socket for theirs (held until this one listens) */
    lock = safe ? open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    free(dir);
    if (!safe)
        goto fail;
    if (lock >= 0)
        flock(lock, LOCK_EX); /* without it (ENOLCK), as before: the check below still holds mostly */
    struct stat st;
    if (lstat(ctl->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(why, why_len, "%s exists and is not a socket", ctl->path);
            goto fail;
        }
        if (answers(ctl->path)) {
            snprintf(why, why_len, "another Mothership is running on the control socket %s", ctl->path);
            goto fail;
        }
        unlink(ctl->path); /* stale: its Mothership is gone */
    }
    uv_pipe_init(r->loop, &ctl->listener, 0);
    ctl->listener.data = ctl;
    ctl->listener_open = true;
    ctl->live = 1;
    mode_t old = umask(0177); /* born 0600: no window where others may connect */
    int rc = uv_pipe_bind(&ctl->listener, ctl->path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ctl->listener, SOMAXCONN, on_connection);
    if (rc != 0) {
        snprintf(why, why_len, "control socket %s: %s", ctl->path, uv_strerror(rc));
        if (lock >= 0)
            close(lock);
        ctl->closing = true;
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
        return NULL;
    }
    if (ctl->has_group && (chown(ctl->path, (uid_t)-1, ctl->group) != 0 || chmod(ctl->path, 0660) != 0)) {
        snprintf(why, why_len, "control socket %s: cannot give it to group %s: %s", ctl->path,
                 r->m->global.control_group, strerror(errno));
        unlink(ctl->path);
        if (lock >= 0)
            close(lock);
        ctl->closing = true;
        uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
        return NULL;
    }
    if (lock >= 0)
        close(lock); /* the socket answers now: the next run sees it does */
    if (stat(ctl->path, &st) == 0)
        ctl->ino = st.st_ino;
    return ctl;
fail:
    if (lock >= 0)
        close(lock);
    free(ctl->path);
    free(ctl);
    return NULL;
}

void ms_ctl_attach_fleet(ms_ctl *ctl)
{
    if (!ctl || !ctl->r->fleet)
        return;
    ctl->r->fleet->line_added = on_line_added;
    ctl->r->fleet->line_added_arg = ctl;
}

const char *ms_ctl_path(const ms_ctl *ctl)
{
    return ctl->path;
}

void ms_ctl_close(ms_ctl *ctl)
{
    if (!ctl || ctl->closing)
        return;
    ctl->closing = true;
    if (ctl->r->fleet && ctl->r->fleet->line_added_arg == ctl) {
        ctl->r->fleet->line_added = NULL;
        ctl->r->fleet->line_added_arg = NULL;
    }
    struct stat st;
    if (stat(ctl->path, &st) == 0 && st.st_ino == ctl->ino)
        unlink(ctl->path); /* only our own file, not a successor's */
    uv_close((uv_handle_t *)&ctl->listener, on_listener_closed);
    for (ctl_conn *c = ctl->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_FOLLOWING) { /* end the stream cleanly; the timer bounds a client that does not read */
            c->state = C_READING;
            ms_buf_reset(&c->resp.out);
            ms_ctl_chunk(&c->resp.out, "", 0);
            c->resp.close = true;
            send_resp(c);
            uv_timer_start(&c->timer, on_timer, 1000, 0);
        } else if (c->state == C_WAITING) {
            c->state = C_READING;
            answer_error(c, 503, "Mothership is stopping");
        } else if (c->state == C_READING || c->state == C_LINGER) {
            conn_close(c);
        }
    }
}
