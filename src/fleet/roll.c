/* roll.c: rolling restarts (see roll.h). Each roll is a small state
 * machine driven by a short timer while it runs:
 *   NEXT -> (surge)  TWIN_STARTING -> OLD_DRAINING -> OLD_STOPPING -> NEXT
 *        -> (place)  DRAINING -> RESTARTING -> NEXT
 * and DONE once every entry is replaced or one failed. Entries are known by
 * name: a reload may move or remove them while a roll runs. */
#include "fleet/roll.h"

#include <assert.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

#define ROLL_TICK_MS 20
#define ROLL_STOP_MARGIN_MS 5000 /* on top of shutdown_timeout: how long a stop may take */

typedef enum roll_step {
    R_NEXT,          /* about to replace names[k] */
    R_TWIN_STARTING, /* surge: the new process starts next to the old one */
    R_OLD_DRAINING,  /* surge: the old one gets no new request; waiting for those in flight */
    R_OLD_STOPPING,  /* surge: the old one is stopping */
    R_DRAINING,      /* in place: the old run drains (or requests are held) */
    R_RESTARTING,    /* in place: stopped, starting again, waiting for ready */
    R_DONE,
} roll_step;

struct ms_roll {
    ms_fleet *f;
    ms_roll *next;
    char **names;        /* the entries, in order */
    bool *stopped0;      /* names[k] was stopped by a user when the roll began */
    size_t n, k;         /* names[k] is the one being replaced */
    roll_step step;
    uint64_t since;      /* uv_now when the step began */
    unsigned spawns0;    /* the entry's spawns when its restart was asked for */
    ms_proc *old, *nu;   /* surge: the old process and the new one */
    bool hold;           /* in place with one instance: requests are held */
    bool reload;         /* replaces entries a reload changed */
    uv_timer_t timer;
    ms_roll_done_fn done;
    void *arg;
    char who[64];
};

static const char *step_name(roll_step s)
{
    static const char *const names[] = { "next", "surge", "drain", "stop", "drain", "restart", "done" };
    return names[s];
}

bool ms_roll_applies(const ms_proc *p)
{
    const ms_ship *s = p->ship;
    return s->kind == MS_SHIP && !s->oneshot && s->has_bind;
}

static uint64_t now_ms(const ms_roll *r)
{
    return uv_now(r->f->loop);
}

static void set_int(int *at, int v)
{
    __atomic_store_n(at, v, __ATOMIC_RELEASE);
}

static int get_int(const int *at)
{
    return __atomic_load_n(at, __ATOMIC_ACQUIRE);
}

static void roll_log(const ms_roll *r, ms_level level, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void roll_log(const ms_roll *r, ms_level level, const char *name, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ms_log_event(r->f->log, level, name, "roll", "roll %zu/%zu: %s \"%s\": %s", r->k + 1, r->n, step_name(r->step),
                 name, msg);
}

/* The entry names[k] in the fleet's current manifest. */
static bool find_entry(const ms_roll *r, size_t *idx)
{
    const ms_fleet *f = r->f;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->procs[i]->ship->name, r->names[r->k]) == 0) {
            *idx = i;
            return true;
        }
    return false;
}

static void on_timer_closed(uv_handle_t *h)
{
    ms_roll *r = h->data;
    for (size_t i = 0; i < r->n; i++)
        free(r->names[i]);
    free(r->names);
    free(r->stopped0);
    free(r);
}

static void unlink_roll(ms_roll *r)
{
    for (ms_roll **at = &r->f->rolls; *at; at = &(*at)->next)
        if (*at == r) {
            *at = r->next;
            return;
        }
}

/* Let go of the procs this roll marked. One it held requests for stops
 * holding: whatever ended the roll (a reload that removed the entry, the
 * fleet stopping), no new process of this roll is coming for them. */
static void release_procs(ms_roll *r)
{
    ms_fleet *f = r->f;
    for (size_t i = 0; i < f->nall; i++) { /* retired ones too: a reload may have removed an entry */
        ms_proc *p = f->procs[i];
        if (p->roll == r) {
            p->roll = NULL;
            set_int(&p->holding, 0);
        }
        if (p->twin && p->twin->roll == r)
            p->twin->roll = NULL;
    }
}

/* The roll ends: ok, or stopped at names[k] for why. */
static void finish(ms_roll *r, bool ok, const char *why)
{
    assert(r->step != R_DONE);
    r->step = R_DONE;
    uv_timer_stop(&r->timer);
    unlink_roll(r);
    release_procs(r);
    if (ok)
        ms_log_event(r->f->log, MS_INFO, NULL, "roll", "roll done: %zu %s replaced", r->n,
                     r->n == 1 ? "entry" : "entries");
    else
        ms_log_event(r->f->log, MS_ERROR, r->names[r->k], "roll_failed",
                     "roll stopped at \"%s\" (%zu of %zu replaced): %s", r->names[r->k], r->k, r->n, why);
    if (r->done) {
        ms_roll_outcome o = { .ok = ok, .failed = ok ? NULL : r->names[r->k], .why = ok ? "" : why,
                              .rolled = r->names, .nrolled = ok ? r->n : r->k, .n = r->n };
        r->done(r->arg, &o);
    }
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

/* "it exited with status 3", "not ready within 5000ms (ready_timeout)". */
static void failure_words(const ms_proc *p, char *out, size_t cap)
{
    if (p->last_term_signal == SIGKILL)
        snprintf(out, cap, "the new process was not ready within %llums (ready_timeout)",
                 (unsigned long long)p->ship->ready_timeout_ms);
    else if (p->last_term_signal > 0)
        snprintf(out, cap, "the new process was killed by signal %d before it was ready", p->last_term_signal);
    else if (p->last_exit_status >= 0)
        snprintf(out, cap, "the new process exited with status %d before it was ready", p->last_exit_status);
    else
        snprintf(out, cap, "the new process could not be started (%s)", ms_pstate_name(p->state));
}

static void next_entry(ms_roll *r)
{
    r->k++;
    r->step = R_NEXT;
    r->old = r->nu = NULL;
    if (r->k == r->n) {
        r->k = r->n - 1; /* for the log */
        finish(r, true, "");
    }
}

/* A user stopped names[k] (p) since the roll began: the roll must not
 * start it again. */
static bool stopped_meanwhile(const ms_roll *r, const ms_proc *p)
{
    return p->stop_requested && !r->stopped0[r->k];
}

/* Begin replacing names[k]. */
static void begin(ms_roll *r, size_t i)
{
    ms_fleet *f = r->f;
    ms_proc *p = f->procs[i];
    r->since = now_ms(r);
    p->roll = r;
    if (stopped_meanwhile(r, p)) {
        finish(r, false, "it was stopped meanwhile");
        return;
    }
    if (p->ship->has_bind_alt && ms_fleet_proc_running(p) && p->state == MS_P_READY) {
        char why[300];
        r->old = p;
        r->nu = ms_fleet_twin_start(f, i, why, sizeof why);
        r->step = R_TWIN_STARTING;
        if (!r->nu) {
            finish(r, false, why);
            return;
        }
        r->nu->roll = r;
        roll_log(r, MS_INFO, p->ship->name, "starting a new process at %s next to pid %d",
                 r->nu->parity ? p->ship->bind_alt.text : p->ship->bind.text, p->ship_pid > 0 ? p->ship_pid : p->pid);
        return;
    }
    r->hold = p->ship->instances <= 1;
    r->step = R_DRAINING;
    if (ms_fleet_proc_running(p)) {
        set_int(&p->draining, 1);
        if (r->hold)
            set_int(&p->holding, 1);
        roll_log(r, MS_INFO, p->ship->name, "no new requests to pid %d%s; waiting for %d in flight (up to %llums)",
                 p->ship_pid > 0 ? p->ship_pid : p->pid, r->hold ? " (held until the new one is ready)" : "",
                 get_int(&p->inflight), (unsigned long long)p->ship->drain_timeout_ms);
    }
}

/* The in-place run is over (ready or not). */
static void end_in_place(ms_proc *p)
{
    set_int(&p->draining, 0);
    set_int(&p->holding, 0);
}

static void tick_entry(ms_roll *r, size_t i)
{
    ms_fleet *f = r->f;
    ms_proc *p = f->procs[i];
    uint64_t now = now_ms(r);
    uint64_t stop_budget = p->ship->shutdown_timeout_ms + ROLL_STOP_MARGIN_MS;
    switch (r->step) {
    case R_NEXT:
        begin(r, i);
        return;
    case R_DRAINING:
        if (stopped_meanwhile(r, p)) {
            end_in_place(p);
            finish(r, false, "it was stopped meanwhile");
            return;
        }
        if (ms_fleet_proc_running(p) && get_int(&p->inflight) > 0 && now - r->since < p->ship->drain_timeout_ms)
            return;
        if (ms_fleet_proc_running(p) && get_int(&p->inflight) > 0)
            roll_log(r, MS_WARN, p->ship->name, "%d requests still in flight after drain_timeout (%llums): stopping",
                     get_int(&p->inflight), (unsigned long long)p->ship->drain_timeout_ms);
        r->spawns0 = p->spawns;
        r->step = R_RESTARTING;
        r->since = now;
        roll_log(r, MS_INFO, p->ship->name, "restarting in place");
        ms_fleet_restart_proc(f, i);
        if (r->reload)
            p->reload_restart = true; /* a new definition: not counted as a restart */
        return;
    case R_RESTARTING:
        if (p->spawns == r->spawns0) {
            bool gone = !ms_fleet_proc_running(p) && p->state != MS_P_BACKOFF; /* stopped meanwhile (a user's stop) */
            if (!gone && now - r->since < stop_budget)
                return;
            end_in_place(p);
            finish(r, false, gone ? "it was stopped meanwhile" : "it did not start again");
            return;
        }
        if (p->state == MS_P_STARTING)
            return;
        end_in_place(p);
        if (p->state == MS_P_READY) {
            roll_log(r, MS_INFO, p->ship->name, "pid %d ready", p->ship_pid > 0 ? p->ship_pid : p->pid);
            next_entry(r);
            return;
        }
        char words[200];
        failure_words(p, words, sizeof words);
        finish(r, false, words);
        return;
    case R_TWIN_STARTING: {
        ms_proc *nu = r->nu, *old = r->old;
        if (p != old && p != nu) {
            finish(r, false, "its process was replaced meanwhile");
            return;
        }
        if (nu->state == MS_P_STARTING)
            return;
        if (nu->state != MS_P_READY) {
            char why[200];
            failure_words(nu, why, sizeof why);
            ms_fleet_stop_kept(nu);
            finish(r, false, why);
            return;
        }
        ms_fleet_twin_swap(f, i);
        if (!r->reload)
            nu->restarts++;
        set_int(&old->draining, 1);
        r->step = R_OLD_DRAINING;
        r->since = now;
        roll_log(r, MS_INFO, old->ship->name, "pid %d ready and serving; no new requests to pid %d, waiting for %d in "
                 "flight (up to %llums)", nu->ship_pid > 0 ? nu->ship_pid : nu->pid,
                 old->ship_pid > 0 ? old->ship_pid : old->pid, get_int(&old->inflight),
                 (unsigned long long)old->ship->drain_timeout_ms);
        return;
    }
    case R_OLD_DRAINING: {
        ms_proc *old = r->old;
        if (ms_fleet_proc_running(old) && get_int(&old->inflight) > 0 &&
            now - r->since < old->ship->drain_timeout_ms)
            return;
        if (ms_fleet_proc_running(old) && get_int(&old->inflight) > 0)
            roll_log(r, MS_WARN, old->ship->name, "%d requests still in flight after drain_timeout (%llums): stopping",
                     get_int(&old->inflight), (unsigned long long)old->ship->drain_timeout_ms);
        r->step = R_OLD_STOPPING;
        r->since = now;
        ms_fleet_stop_kept(old);
        return;
    }
    case R_OLD_STOPPING:
        if ((ms_fleet_proc_running(r->old) || r->old->process_open) && now - r->since < stop_budget)
            return;
        set_int(&r->old->draining, 0);
        next_entry(r);
        return;
    case R_DONE:
        return;
    }
}

static void on_tick(uv_timer_t *t)
{
    ms_roll *r = t->data;
    if (r->step == R_DONE)
        return;
    size_t i;
    if (!find_entry(r, &i)) {
        finish(r, false, "it left the manifest in a reload");
        return;
    }
    tick_entry(r, i);
}

static bool rolling(const ms_proc *p)
{
    return p->roll || (p->twin && p->twin->roll);
}

ms_roll *ms_roll_start(ms_fleet *f, const size_t *idx, size_t n, const char *who, ms_roll_done_fn done, void *arg,
                       char *why, size_t why_len)
{
    assert(n > 0);
    if (f->phase == MS_FLEET_STOPPING || f->phase == MS_FLEET_DONE) {
        snprintf(why, why_len, "the fleet is stopping");
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        const ms_proc *p = f->procs[idx[k]];
        assert(ms_roll_applies(p));
        if (rolling(p)) {
            snprintf(why, why_len, "ship \"%s\" is already rolling", p->ship->name);
            return NULL;
        }
        if (!p->selected) {
            snprintf(why, why_len, "ship \"%s\" is left out of this run (--only/--except)", p->ship->name);
            return NULL;
        }
        if (p->state == MS_P_WAITING || p->state == MS_P_SKIPPED) {
            snprintf(why, why_len, "ship \"%s\" has not started: it waits for its dependencies", p->ship->name);
            return NULL;
        }
    }
    ms_roll *r = calloc(1, sizeof *r);
    if (r) {
        r->names = calloc(n, sizeof *r->names);
        r->stopped0 = calloc(n, sizeof *r->stopped0);
    }
    if (!r || !r->names || !r->stopped0) {
        if (r) {
            free(r->names);
            free(r->stopped0);
        }
        free(r);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        r->names[k] = ms_strdup(f->procs[idx[k]]->ship->name);
        if (!r->names[k]) {
            for (size_t j = 0; j < k; j++)
                free(r->names[j]);
            free(r->names);
            free(r->stopped0);
            free(r);
            snprintf(why, why_len, "out of memory");
            return NULL;
        }
        r->stopped0[k] = f->procs[idx[k]]->stop_requested;
        f->procs[idx[k]]->roll = r; /* taken: a second roll of it is refused */
    }
    r->f = f;
    r->n = n;
    r->done = done;
    r->arg = arg;
    snprintf(r->who, sizeof r->who, "%s", who);
    r->reload = strcmp(who, "reload") == 0;
    uv_timer_init(f->loop, &r->timer);
    r->timer.data = r;
    r->next = f->rolls;
    f->rolls = r;
    ms_log_event(f->log, MS_INFO, r->names[0], "roll", "%s: rolling restart of %zu %s, one at a time, from \"%s\"",
                 who, n, n == 1 ? "entry" : "entries", r->names[0]);
    uv_timer_start(&r->timer, on_tick, 0, ROLL_TICK_MS);
    return r;
}

void ms_roll_detach(ms_roll *r)
{
    r->done = NULL;
    r->arg = NULL;
}

void ms_roll_cancel_all(ms_fleet *f, const char *why)
{
    while (f->rolls) {
        ms_roll *r = f->rolls;
        if (r->step == R_DONE) { /* cannot be: finished ones are unlinked */
            unlink_roll(r);
            continue;
        }
        finish(r, false, why);
    }
}

size_t ms_roll_ships(ms_fleet *f, bool *pick, const char *who)
{
    size_t *idx = calloc(f->n ? f->n : 1, sizeof *idx);
    bool *taken = calloc(f->n ? f->n : 1, sizeof *taken);
    size_t rolls = 0;
    if (!idx || !taken) {
        free(idx);
        free(taken);
        ms_log_event(f->log, MS_ERROR, NULL, "roll", "%s: no roll: out of memory", who);
        return 0;
    }
    for (size_t i = 0; i < f->n; i++) {
        if ((pick && !pick[i]) || taken[i] || !ms_roll_applies(f->procs[i]))
            continue;
        const char *base = ms_ship_base(f->procs[i]->ship);
        size_t n = 0;
        for (size_t j = i; j < f->n; j++) {
            const ms_proc *q = f->procs[j];
            if ((pick && !pick[j]) || taken[j] || !ms_roll_applies(q) || strcmp(ms_ship_base(q->ship), base) != 0)
                continue;
            taken[j] = true;
            if (pick)
                pick[j] = false;
            if (rolling(q) || !q->selected || q->state == MS_P_WAITING || q->state == MS_P_SKIPPED) {
                ms_log_event(f->log, MS_WARN, q->ship->name, "roll", "%s: \"%s\" left out of the roll: %s", who,
                             q->ship->name, rolling(q) ? "it is already rolling"
                                            : !q->selected ? "it is left out of this run"
                                                           : "it waits for its dependencies");
                continue;
            }
            idx[n++] = j;
        }
        char why[256];
        if (n > 0 && ms_roll_start(f, idx, n, who, NULL, NULL, why, sizeof why))
            rolls++;
        else if (n > 0)
            ms_log_event(f->log, MS_WARN, f->procs[idx[0]]->ship->name, "roll", "%s: cannot roll: %s", who, why);
    }
    free(idx);
    free(taken);
    return rolls;
}
