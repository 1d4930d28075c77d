/* fleet_metrics.c: renders the fleet's state for /metrics (Prometheus text)
 * and /health (200 when launched and not stopping, else 503, with a JSON
 * body naming what is not ready). Label values come only from the manifest,
 * so cardinality is bounded. */
#include "fleet/fleet_metrics.h"

#include <string.h>

static const char *ship_status_help =
    "1 when the process is running and ready (a oneshot: when it finished with exit 0), else 0.";

void ms_fleet_render_metrics(void *arg, ms_buf *out)
{
    const ms_fleet_view *v = arg;
    const ms_fleet *f = v->fleet;
    ms_prom p;
    ms_prom_init(&p, out);
    const ms_manifest *m = v->m;
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group } };
        int up = __atomic_load_n(&pr->ready_flag, __ATOMIC_ACQUIRE) || pr->state == MS_P_DONE;
        ms_prom_gauge_i64(&p, "mothership_ship_status", ship_status_help, l, 2, up);
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group } };
        int h = __atomic_load_n(&pr->healthy, __ATOMIC_ACQUIRE);
        if (!pr->ship->health.path)
            h = __atomic_load_n(&pr->ready_flag, __ATOMIC_ACQUIRE) || pr->state == MS_P_DONE;
        ms_prom_gauge_i64(&p, "mothership_ship_healthy",
                          "1 when the last health checks passed (without a health check: when ready).", l, 2,
                          h == 1);
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group } };
        ms_prom_counter_u64(&p, "mothership_ship_restarts_total", "Restarts of each process.", l, 2, pr->restarts);
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        for (int s = 0; s <= MS_P_STOPPED; s++) {
            ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group },
                                  { "state", ms_pstate_name((ms_pstate)s) } };
            ms_prom_gauge_i64(&p, "mothership_ship_state", "1 for the state each process is in.", l, 3,
                              pr->state == (ms_pstate)s);
        }
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        if (!pr->ship->health.path)
            continue;
        ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group } };
        ms_prom_gauge_i64(&p, "mothership_ship_breaker_state",
                          "Circuit breaker of each health-checked ship: 0 closed, 1 open, 2 half-open.", l, 2,
                          __atomic_load_n(&pr->breaker, __ATOMIC_ACQUIRE));
    }
    for (size_t i = 0; f && i < f->n; i++) {
        const ms_proc *pr = &f->procs[i];
        if (!pr->ship->health.path)
            continue;
        ms_prom_label l[] = { { "ship", pr->ship->name }, { "group", pr->ship->group } };
        ms_prom_counter_u64(&p, "mothership_ship_health_checks_failed_total", "Failed health checks.", l, 2,
                            pr->health_failures);
    }
    size_t nships = 0;
    for (size_t i = 0; m && i < m->nships; i++)
        nships += !f || f->procs[i].selected;
    ms_prom_gauge_i64(&p, "mothership_fleet_ships_total", "Ships and bays in the fleet (after tag filtering).",
                      NULL, 0, (int64_t)nships);
    ms_prom_gauge_i64(&p, "mothership_fleet_up", "1 when every entry has launched and the fleet is not stopping.",
                      NULL, 0, f && ms_fleet_up(f));
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

int ms_fleet_render_health(void *arg, ms_buf *body)
{
    const ms_fleet_view *v = arg;
    const ms_fleet *f = v->fleet;
    const char *phase = !f ? "preflight" : f->phase == MS_FLEET_LAUNCHING ? "launching"
                                          : f->phase == MS_FLEET_RUNNING    ? "up"
                                                                            : "stopping";
    bool up = f && ms_fleet_up(f);
    ms_buf_printf(body, "{\"status\":\"%s\"", phase);
    if (f && !up) {
        ms_buf_puts(body, ",\"waiting_for\":[");
        bool first = true;
        for (size_t i = 0; i < f->n; i++) {
            const ms_proc *p = &f->procs[i];
            if (!p->selected || p->state == MS_P_READY || p->state == MS_P_DONE)
                continue;
            ms_buf_printf(body, "%s{\"name\":\"%s\",\"state\":\"%s\"}", first ? "" : ",", p->ship->name,
                          ms_pstate_name(p->state));
            first = false;
        }
        ms_buf_puts(body, "]");
    }
    ms_buf_puts(body, "}\n");
    return up ? 200 : 503;
}
