/* fleet_metrics.c: renders the fleet's state for /metrics (Prometheus text),
 * /health (liveness) and /ready (readiness): one JSON body naming what holds
 * the launch, what is down and the ACME names still waiting for a
 * certificate; the two differ only in their status code (only /ready waits
 * for certificates; see docs/metrics.md). /metrics starts with mothership_build_info and
 * Mothership's own process_* series; each entry's CPU time and memory are
 * read from /proc at the scrape. Label values come only from the manifest
 * (and the build), so cardinality is bounded. */
#include "fleet/fleet_metrics.h"

#include <stdio.h>
#include <string.h>

#include "metrics/procstat.h"

static const char *ship_status_help =
    "1 when the process is running and ready (a oneshot: when it finished with exit 0; a scheduled job: "
    "when its last run did, or before its first), else 0.";

/* mothership_ship_status of an entry. A scheduled job is up between runs
 * (as for /ready) and during one, unless its last run failed: the gauge
 * neither drops at each run nor hides a failing job. */
static int entry_status(const ms_proc *pr)
{
    if (pr->ship->schedule && (pr->state == MS_P_SCHEDULED || pr->state == MS_P_STARTING ||
                               pr->state == MS_P_READY))
        return pr->last_exit_status <= 0 && pr->last_term_signal <= 0;
    return __atomic_load_n(&pr->ready_flag, __ATOMIC_ACQUIRE) || pr->state == MS_P_DONE;
}

/* An entry's labels: ship (its name as written) and group, and instance
 * ("0", "1", ...) for a replicated ship's entries. inst holds the number's
 * text. Returns how many were set (2 or 3) in l[0..). */
static size_t entry_labels(const ms_proc *pr, ms_prom_label *l, char inst[12])
{
    l[0] = (ms_prom_label){ "ship", ms_ship_base(pr->ship) };
    l[1] = (ms_prom_label){ "group", pr->ship->group };
    if (!pr->ship->base)
        return 2;
    snprintf(inst, 12, "%u", pr->ship->instance);
    l[2] = (ms_prom_label){ "instance", inst };
    return 3;
}

/* ---------------------------------------------------------------- usage */
/* The entry's CPU ticks so far: what its processes show now, plus what
 * earlier runs and processes that ended showed before (a process's time
 * leaves the sum when it exits unless a process of the session waits for
 * it), so that the counter never goes back. */
static uint64_t cpu_ticks_counted(ms_proc *pr, bool running, uint64_t now)
{
    if (running) {
        if (pr->pid != pr->cpu_pid) {
            pr->cpu_carried += pr->cpu_seen;
            pr->cpu_seen = 0;
            pr->cpu_pid = pr->pid;
        }
        if (now < pr->cpu_seen)
            pr->cpu_carried += pr->cpu_seen - now;
        pr->cpu_seen = now;
    }
    return pr->cpu_carried + pr->cpu_seen;
}

/* CPU time and memory of each entry: the process tree below its launch
 * shim (the ship, what it started, and orphans the shim took in), with the
 * time of the children they and the shim have waited for. */
static void render_usage(ms_prom *p, const ms_fleet *f)
{
    double hz = (double)ms_procstat_hz(), page = (double)ms_procstat_page_size();
    for (size_t i = 0; i < f->n; i++) {
        ms_proc *pr = f->procs[i];
        ms_procstat_usage u = { 0 };
        bool running = pr->pid > 0 && ms_procstat_tree(pr->pid, &u);
        pr->rss_seen = running ? u.rss_pages : 0;
        uint64_t ticks = cpu_ticks_counted(pr, running, u.ticks);
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_counter_double(p, "mothership_ship_cpu_seconds_total",
                               "CPU time (user and system) of each entry's processes.", l, nl, (double)ticks / hz);
    }
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_gauge_double(p, "mothership_ship_memory_bytes", "Resident memory of each entry's processes, summed.",
                             l, nl, (double)pr->rss_seen * page);
    }
}

void ms_fleet_render_metrics(void *arg, ms_buf *out)
{
    const ms_fleet_view *v = arg;
    const ms_fleet *f = v->fleet;
    ms_prom p;
    ms_prom_init(&p, out);
    const ms_manifest *m = v->m;
    if (v->nbuild_info)
        ms_prom_gauge_i64(&p, "mothership_build_info", "Mothership's version and the library versions it runs with.",
                          v->build_info, v->nbuild_info, 1);
    ms_procstat_render_self(&p);
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_gauge_i64(&p, "mothership_ship_status", ship_status_help, l, nl, entry_status(pr));
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        int h = __atomic_load_n(&pr->healthy, __ATOMIC_ACQUIRE);
        if (!pr->ship->health.enabled)
            h = entry_status(pr);
        ms_prom_gauge_i64(&p, "mothership_ship_healthy",
                          "1 when the last health checks passed (without a health check: when ready).", l, nl,
                          h == 1);
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_counter_u64(&p, "mothership_ship_restarts_total", "Restarts of each process.", l, nl, pr->restarts);
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        if (pr->ship->kind != MS_SHIP || pr->ship->oneshot || !pr->ship->has_bind)
            continue;
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_gauge_i64(&p, "mothership_ship_rolling",
                          "1 while a rolling restart replaces the process of each ship with a bind.", l, nl,
                          pr->roll != NULL || (pr->twin && pr->twin->roll != NULL));
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        for (int s = 0; s <= MS_P_SCHEDULED; s++) {
            ms_prom_label l[4];
            char inst[12];
            size_t nl = entry_labels(pr, l, inst);
            l[nl++] = (ms_prom_label){ "state", ms_pstate_name((ms_pstate)s) };
            ms_prom_gauge_i64(&p, "mothership_ship_state", "1 for the state each process is in.", l, nl,
                              pr->state == (ms_pstate)s);
        }
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        if (!pr->ship->health.enabled)
            continue;
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_gauge_i64(&p, "mothership_ship_breaker_state",
                          "Circuit breaker of each health-checked ship: 0 closed, 1 open, 2 half-open.", l, nl,
                          __atomic_load_n(&pr->breaker, __ATOMIC_ACQUIRE));
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = f->procs[i];
        if (!pr->ship->health.enabled)
            continue;
        ms_prom_label l[3];
        char inst[12];
        size_t nl = entry_labels(pr, l, inst);
        ms_prom_counter_u64(&p, "mothership_ship_health_checks_failed_total", "Failed health checks.", l, nl,
                            pr->health_failures);
    }
    if (f)
        render_usage(&p, f);
    size_t nships = 0;
    for (size_t i = 0; m && i < m->nships; i++)
        nships += !f || f->procs[i]->selected;
    ms_prom_gauge_i64(&p, "mothership_fleet_ships_total", "Ships and bays in the fleet (after tag filtering).",
                      NULL, 0, (int64_t)nships);
    ms_prom_gauge_i64(&p, "mothership_fleet_up",
                      "1 when /health answers 200: launched, every critical entry up, not stopping.", NULL, 0,
                      f && ms_fleet_live(f));
    ms_prom_gauge_i64(&p, "mothership_fleet_ready",
                      "1 when /ready answers 200: launched, every critical entry up, no shutdown begun.", NULL, 0,
                      f && ms_fleet_ready(f));
    for (size_t i = 0; i < v->nuplinks; i++) {
        const ms_uplink_result *r = &v->uplinks[i];
        ms_prom_label l[] = { { "uplink", r->uplink->name }, { "address", r->address } };
        ms_prom_gauge_i64(&p, "mothership_uplink_up", "Pre-flight result of each uplink: 1 up, 0 down.", l, 2,
                          r->up);
    }
    for (size_t i = 0; i < v->nuplinks; i++) {
        const ms_uplink_result *r = &v->uplinks[i];
        ms_prom_label l[] = { { "uplink", r->uplink->name }, { "address", r->address } };
        ms_prom_gauge_double(&p, "mothership_uplink_check_seconds", "Time the pre-flight check took.", l, 2,
                             (double)r->elapsed_ms / 1000.0);
    }
    if (f) {
        ms_prom_counter_u64(&p, "mothership_log_lines_total", "Lines logged (children and Mothership).", NULL, 0,
                            ms_log_lines(f->log));
        ms_prom_counter_u64(&p, "mothership_log_lines_dropped_total",
                            "Lines dropped because the output was too slow.", NULL, 0, ms_log_dropped(f->log));
    }
    if (v->extra)
        v->extra(v->extra_ctx, out);
}

/* The word for an entry in a list: its state, or "unhealthy" for one that
 * is ready but failing its health check. */
static const char *entry_word(const ms_proc *p)
{
    return p->state == MS_P_READY && !ms_fleet_entry_up(p) ? "unhealthy" : ms_pstate_name(p->state);
}

enum { LIST_WAITING, LIST_DOWN, LIST_DEGRADED };

static bool in_list(const ms_fleet *f, const ms_proc *p, int which)
{
    if (!p->selected)
        return false;
    if (ms_fleet_holds_launch(f, p))
        return which == LIST_WAITING && f->phase == MS_FLEET_LAUNCHING;
    if (ms_fleet_entry_up(p) || which == LIST_WAITING)
        return false;
    return p->ship->critical == (which == LIST_DOWN);
}

/* ,"key":[{"name":"app","state":"backoff"},...]; nothing when empty. */
static void put_list(ms_buf *body, const ms_fleet *f, const char *key, int which)
{
    bool any = false;
    for (size_t i = 0; i < f->n; i++) {
        const ms_proc *p = f->procs[i];
        if (!in_list(f, p, which))
            continue;
        if (any)
            ms_buf_puts(body, ",");
        else
            ms_buf_printf(body, ",\"%s\":[", key);
        ms_buf_printf(body, "{\"name\":\"%s\",\"state\":\"%s\"}", p->ship->name, entry_word(p));
        any = true;
    }
    if (any)
        ms_buf_puts(body, "]");
}

/* The body /health and /ready share: the status word, then what holds the
 * launch, the critical entries that are down and the others that are down. */
static void render_state(const ms_fleet_view *v, ms_buf *body)
{
    const ms_fleet *f = v->fleet;
    const char *status = "preflight";
    if (f && f->phase == MS_FLEET_LAUNCHING)
        status = "launching";
    else if (f && f->phase == MS_FLEET_RUNNING && v->drained)
        status = "drained";
    else if (f && f->phase == MS_FLEET_RUNNING)
        status = ms_fleet_ready(f) ? "up" : "down";
    else if (f && f->phase == MS_FLEET_STOPPING && f->draining)
        status = "draining";
    else if (f)
        status = "stopping";
    ms_buf_printf(body, "{\"status\":\"%s\"", status);
    if (f && (f->phase == MS_FLEET_LAUNCHING || f->phase == MS_FLEET_RUNNING || f->draining)) {
        put_list(body, f, "waiting_for", LIST_WAITING);
        put_list(body, f, "down", LIST_DOWN);
        put_list(body, f, "degraded", LIST_DEGRADED);
    }
    if (v->acme_pending) {
        ms_buf names;
        ms_buf_init(&names, 0);
        if (v->acme_pending(v->acme_ctx, &names) > 0 && !ms_buf_failed(&names))
            ms_buf_printf(body, ",\"acme_pending\":%s", names.data);
        ms_buf_free(&names);
    }
    ms_buf_puts(body, "}\n");
}

int ms_fleet_render_health(void *arg, ms_buf *body)
{
    const ms_fleet_view *v = arg;
    render_state(v, body);
    return v->fleet && ms_fleet_live(v->fleet) ? 200 : 503;
}

int ms_fleet_render_ready(void *arg, ms_buf *body)
{
    const ms_fleet_view *v = arg;
    render_state(v, body);
    bool acme_pending = v->acme_pending && v->acme_pending(v->acme_ctx, NULL) > 0;
    return v->fleet && !v->drained && !acme_pending && ms_fleet_ready(v->fleet) ? 200 : 503;
}
