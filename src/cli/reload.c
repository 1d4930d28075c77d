/* reload.c: a new manifest applied to a running fleet (see reload.h). The
 * file is checked as clearance checks it, compared with the running one
 * (manifest/diff.h), and the difference goes to the fleet in two steps:
 * ms_fleet_prepare (nothing visible yet), the data plane's new
 * configuration, then ms_fleet_commit; a failure before the commit
 * abandons the prepared fleet and nothing changes. */
#include "cli/reload.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "cli/run.h"
#include "cli/run_notify.h"
#include "manifest/diff.h"
#include "util/strutil.h"

/* The problems of a refused reload as {"text": "file:line:col: msg"}. */
static json_t *problems_json(const ms_diags *d, const char *path)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < d->len; i++) {
        char *text = d->items[i].line > 0
                         ? ms_asprintf("%s:%d:%d: %s", path, d->items[i].line, d->items[i].col, d->items[i].msg)
                         : ms_asprintf("%s: %s", path, d->items[i].msg);
        if (text)
            json_array_append_new(a, json_pack("{s:s}", "text", text));
        free(text);
    }
    if (a && d->dropped) {
        char *text = ms_asprintf("%s: ... and %zu more problems", path, d->dropped);
        if (text)
            json_array_append_new(a, json_pack("{s:s}", "text", text));
        free(text);
    }
    return a;
}

static bool refuse(ms_run *r, const char *who, json_t *problems, json_t **result)
{
    r->reloads[1]++;
    size_t n = json_array_size(problems);
    ms_log_event(r->log, MS_ERROR, NULL, "reload_refused",
                 "reload refused (%s): %zu problem%s in %s, the fleet keeps running on the old manifest", who, n,
                 n == 1 ? "" : "s", r->o->manifest);
    size_t i;
    json_t *p;
    json_array_foreach(problems, i, p) {
        ms_log_event(r->log, MS_ERROR, NULL, "reload_problem", "%s", json_string_value(json_object_get(p, "text")));
    }
    if (result)
        *result = json_pack("{s:s, s:o}", "result", "refused", "problems", problems);
    else
        json_decref(problems);
    return false;
}

/* A refusal that is not the file's fault ("cannot apply: out of memory"). */
static bool refuse_why(ms_run *r, const char *who, const char *what, const char *why, json_t **result)
{
    bool piped = strcmp(r->o->manifest, MS_MANIFEST_STDIN) == 0;
    char *text = ms_asprintf("%s: %s: %s", piped ? MS_MANIFEST_STDIN_NAME : r->o->manifest, what, why);
    json_t *problems = json_array();
    if (problems && text)
        json_array_append_new(problems, json_pack("{s:s}", "text", text));
    free(text);
    return refuse(r, who, problems ? problems : json_array(), result);
}

static bool any_tls(const ms_manifest *m)
{
    for (size_t b = 0; b < m->global.nbinds; b++)
        if (m->global.binds[b].tls)
            return true;
    return false;
}

/* The same binds at the same places: a TLS server knows binds by place. */
static bool same_bind_order(const ms_manifest *a, const ms_manifest *b)
{
    if (a->global.nbinds != b->global.nbinds)
        return false;
    for (size_t i = 0; i < a->global.nbinds; i++)
        if (strcmp(a->global.binds[i].name, b->global.binds[i].name) != 0)
            return false;
    return true;
}

/* "1 restarted (web: command), 1 started, 0 stopped, 3 unchanged". */
static void summary(const ms_manifest_diff *d, const ms_manifest *m, char *out, size_t cap)
{
    size_t restarted = 0, started = 0, stopped = 0, unchanged = 0;
    char why[512];
    size_t w = 0;
    why[0] = '\0';
    for (size_t i = 0; i < d->nnew; i++) {
        if (d->old_index[i] == SIZE_MAX) {
            started++;
        } else if (d->changed[i]) {
            restarted++;
            if (w < sizeof why - 1)
                w += (size_t)snprintf(why + w, sizeof why - w, "%s%s: %s", w ? ", " : "", m->ships[i].name,
                                      d->why && d->why[i] ? d->why[i] : "changed");
        } else {
            unchanged++;
        }
    }
    for (size_t o = 0; o < d->nold; o++)
        stopped += d->removed[o];
    snprintf(out, cap, "%zu restarted%s%s%s, %zu started, %zu stopped, %zu unchanged", restarted, w ? " (" : "", why,
             w ? ")" : "", started, stopped, unchanged);
}

/* The same entries in the same order, none changed, and nothing the data
 * plane reads: the running configuration can stay as it is. */
static bool nothing_changed(const ms_manifest_diff *d)
{
    if (d->dataplane || d->nnew != d->nold)
        return false;
    for (size_t i = 0; i < d->nnew; i++)
        if (d->old_index[i] != i || d->changed[i])
            return false;
    return true;
}

static bool same_selection(const ms_run *r, const bool *selected, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r->fleet->procs[i]->selected != selected[i])
            return false;
    return true;
}

static bool reload(ms_run *r, bool check_only, const char *who, json_t **result)
{
    if (result)
        *result = NULL;
    if (!r->fleet || !r->fleet->started || r->fleet->phase == MS_FLEET_STOPPING ||
        r->fleet->phase == MS_FLEET_DONE)
        return refuse_why(r, who, "cannot reload", r->fleet && r->fleet->started ? "the fleet is stopping"
                                                                                  : "the fleet is not launched yet",
                          result);
    if (strcmp(r->o->manifest, MS_MANIFEST_STDIN) == 0)
        return refuse_why(r, who, "cannot reload", "the manifest was read from stdin (-c -), which cannot be "
                          "read again: restart Mothership to change it", result);
    ms_diags d;
    ms_diags_init(&d, r->o->manifest);
    ms_manifest *m = ms_cli_check(r->o->manifest, &d);
    if (!m) {
        json_t *problems = problems_json(&d, r->o->manifest);
        ms_diags_free(&d);
        return refuse(r, who, problems ? problems : json_array(), result);
    }
    ms_diags_free(&d);

    char why[512];
    bool *selected = calloc(m->nships ? m->nships : 1, sizeof *selected);
    ms_fleet_change *changes = calloc(m->nships ? m->nships : 1, sizeof *changes);
    ms_manifest_diff *diff = NULL;
    json_t *plan = NULL;
    ms_payload_set *payloads = NULL; /* m's, given to the data plane */
    bool payloads_changed = false;
    bool ok = false;
    if (!selected || !changes) {
        ok = refuse_why(r, who, "cannot reload", "out of memory", result);
        goto out;
    }
    if (!ms_fleet_select(m, r->o->only, r->o->except, selected, why, sizeof why)) {
        ok = refuse_why(r, who, "--only/--except", why, result);
        goto out;
    }
    diff = ms_manifest_diff_new(r->m, m);
    if (diff && r->launched && r->launched != r->m) {
        /* what needs a restart is what differs from the manifest Mothership
         * started with: a key an earlier reload changed still does */
        ms_manifest_diff *since = ms_manifest_diff_new(r->launched, m);
        if (!since) {
            ms_manifest_diff_free(diff);
            diff = NULL;
        } else {
            char **needs = diff->needs_restart;
            size_t nneeds = diff->nneeds;
            diff->needs_restart = since->needs_restart;
            diff->nneeds = since->nneeds;
            since->needs_restart = needs;
            since->nneeds = nneeds;
            ms_manifest_diff_free(since);
        }
    }
    plan = diff ? ms_manifest_diff_plan(diff, r->m, m) : NULL;
    if (!plan) {
        ok = refuse_why(r, who, "cannot reload", "out of memory", result);
        goto out;
    }
    if (!r->dp && m->global.nbinds > 0) {
        ok = refuse_why(r, who, "cannot reload", "the fleet was launched without binds: binds need a restart", result);
        goto out;
    }
    /* the payloads are loaded before the plan: a module file that changed
     * under the same path is a swap even when the manifest did not change */
    if (r->dp && m->nmodules > 0) {
        payloads = ms_payload_load_all(m, why, sizeof why);
        if (!payloads) {
            ok = refuse_why(r, who, "cannot apply it", why, result);
            goto out;
        }
        for (size_t i = 0; i < m->nmodules; i++) {
            if (!ms_payload_set_bytes_changed(r->payloads, payloads, i))
                continue;
            char *line = ms_asprintf("payload \"%s\" file changed", m->modules[i].name);
            if (!line || json_array_append_new(json_object_get(plan, "swap"), json_string(line)) != 0) {
                free(line);
                ok = refuse_why(r, who, "cannot reload", "out of memory", result);
                goto out;
            }
            free(line);
            payloads_changed = true;
        }
    }
    if (check_only) {
        if (result)
            *result = json_pack("{s:s, s:[], s:O}", "result", "checked", "problems", "plan", plan);
        ok = true;
        goto out;
    }
    if (!payloads_changed && nothing_changed(diff) && same_selection(r, selected, m->nships)) {
        /* the running configuration stays as it is; certificates are read again */
        r->reloads[0]++;
        r->last_reload_ok = (double)time(NULL);
        ms_log_event(r->log, MS_INFO, NULL, "reloaded", "reload (%s): nothing changed%s", who,
                     r->tls ? "; TLS certificates read again" : "");
        for (size_t i = 0; i < diff->nneeds; i++)
            ms_log_event(r->log, MS_WARN, NULL, "reload_needs_restart", "reload: %s takes effect at the next start",
                         diff->needs_restart[i]);
        ms_run_reload_certificates(r);
        if (r->dp && !ms_dataplane_reopen_access_log(r->dp, m->global.access_log_path, why, sizeof why))
            ms_log_event(r->log, MS_WARN, NULL, "access_log_failed", "reload: %s; the access log goes on where it "
                         "was", why);
        if (result)
            *result = json_pack("{s:s, s:[], s:O}", "result", "applied", "problems", "plan", plan);
        ok = true;
        goto out;
    }
    for (size_t i = 0; i < m->nships; i++) {
        changes[i].old = diff->old_index[i] == SIZE_MAX ? MS_FLEET_NEW : diff->old_index[i];
        changes[i].restart = diff->changed[i];
    }
    ms_fleet_next *nx = ms_fleet_prepare(r->fleet, m, selected, changes, why, sizeof why);
    if (!nx) {
        ok = refuse_why(r, who, "cannot apply it", why, result);
        goto out;
    }
    ms_proc *const *procs = ms_fleet_next_procs(nx);
    bool bays = false;
    for (size_t i = 0; i < m->nships; i++)
        bays |= m->ships[i].kind == MS_BAY || ms_ship_speaks_v3(&m->ships[i]);
    if (bays && !ms_run_start_docking(r, 1)) {
        ms_fleet_abandon(nx);
        ok = refuse_why(r, who, "cannot apply it", "out of memory for the docking links", result);
        goto out;
    }
    /* the hub's bays of new slots, before the data plane may route to them;
     * their links come after the commit (an abandoned reload's slots are
     * taken again by the next one) */
    for (size_t i = 0; bays && i < m->nships; i++)
        if (m->ships[i].kind == MS_BAY || ms_ship_speaks_v3(&m->ships[i]))
            ms_hub_enable_bay(r->hub, procs[i]->slot);
    bool tls_kept = false;
    if (r->dp) {
        /* the data plane's next configuration; it owns these once it takes them */
        ms_route_table *routes = ms_route_table_build(m);
        ms_tls_server *tls = NULL;
        bool built = routes != NULL;
        if (!routes)
            snprintf(why, sizeof why, "out of memory");
        tls_kept = r->tls && !diff->dataplane && same_bind_order(r->m, m);
        if (built && tls_kept)
            tls = r->tls;
        else if (built && any_tls(m))
            built = (tls = ms_tls_server_new(m, why, sizeof why)) != NULL;
        if (built && tls && tls != r->tls && r->board) { /* ACME: its challenges and certificates there too */
            ms_tls_server_set_acme_board(tls, r->board);
            ms_acme_set_tls(r->acme, tls);
        }
        ms_dp_config cfg = { .m = m, .routes = routes, .procs = procs, .log = r->log, .payloads = payloads,
                             .workers = r->m->global.workers, .hub = r->hub, .tls = tls };
        if (!built || !ms_dataplane_reload(r->dp, &cfg, why, sizeof why)) {
            if (tls != r->tls && r->acme && tls)
                ms_acme_set_tls(r->acme, r->tls);
            if (tls != r->tls)
                ms_tls_server_free(tls);
            ms_route_table_free(routes);
            ms_fleet_abandon(nx);
            ok = refuse_why(r, who, "cannot apply it", why, result);
            goto out;
        }
        r->routes = routes;
        r->payloads = payloads;
        payloads = NULL;
        r->tls = tls;
    }
    /* said before the stops and starts it causes */
    char line[1024];
    summary(diff, m, line, sizeof line);
    ms_log_event(r->log, MS_INFO, NULL, "reloaded", "reload (%s): %s%s", who, line,
                 r->dp ? "; data plane swapped" : "");
    ms_fleet_commit(nx);
    if (bays && !ms_docks_add(r->docks, r->fleet->procs, r->fleet->n))
        ms_log_event(r->log, MS_WARN, NULL, "out_of_memory", "reload: out of memory for docking links; made as bays start");
    ms_manifest *old = r->m;
    r->m = m;
    r->view.m = m;
    free(r->selected);
    r->selected = selected;
    selected = NULL;
    if (r->tui)
        ms_tui_reloaded(r->tui);
    r->reloads[0]++;
    r->last_reload_ok = (double)time(NULL);
    for (size_t i = 0; i < diff->nneeds; i++)
        ms_log_event(r->log, MS_WARN, NULL, "reload_needs_restart", "reload: %s takes effect at the next start",
                     diff->needs_restart[i]);
    ms_manifest_free(old);
    m = NULL;
    if (tls_kept)
        ms_run_reload_certificates(r);
    if (result)
        *result = json_pack("{s:s, s:[], s:O}", "result", "applied", "problems", "plan", plan);
    ok = true;
out:
    ms_payload_set_free(payloads);
    json_decref(plan);
    ms_manifest_diff_free(diff);
    free(changes);
    free(selected);
    if (m)
        ms_manifest_free(m);
    return ok;
}

/* A refused reload opens the running access log file again all the
 * same: logrotate's SIGHUP comes whatever the manifest on disk holds (or
 * when it was read from stdin), and the rotated file must be let go. */
static void reopen_access_log_anyway(ms_run *r)
{
    char why[512];
    if (r->dp && r->m && !ms_dataplane_reopen_access_log(r->dp, r->m->global.access_log_path, why, sizeof why))
        ms_log_event(r->log, MS_WARN, NULL, "access_log_failed", "reload: %s; the access log goes on where it was",
                     why);
}

/* The service manager hears RELOADING=1 before and READY=1 after (a
 * refused reload included: the fleet runs on, on the old manifest). */
bool ms_run_reload(ms_run *r, bool check_only, const char *who, json_t **result)
{
    if (!check_only)
        ms_run_notify_reloading(r->notify);
    bool ok = reload(r, check_only, who, result);
    if (!ok && !check_only)
        reopen_access_log_anyway(r);
    if (!check_only)
        ms_run_notify_reloaded(r->notify);
    return ok;
}

void ms_reload_print(const json_t *result, FILE *out)
{
    const json_t *problems = json_object_get(result, "problems");
    size_t i;
    const json_t *p;
    if (json_array_size(problems) > 0) {
        json_array_foreach(problems, i, p) {
            const char *text = json_string_value(json_object_get(p, "text"));
            fprintf(out, "%s\n", text ? text : "?");
        }
        return;
    }
    const json_t *plan = json_object_get(result, "plan");
    if (!json_is_object(plan)) {
        const char *r = json_string_value(json_object_get(result, "result"));
        fprintf(out, "reload %s\n", r ? r : "failed");
        return;
    }
    /* one line per kind of change, in the order a reload applies them;
     * unchanged entries are only counted */
    static const struct { const char *key, *label; bool count, why; } lines[] = {
        { "restart", "restart", false, true }, { "start", "start", false, false }, { "stop", "stop", false, false },
        { "unchanged", "unchanged", true, false }, { "swap", "swap", false, false },
        { "needs_restart", "needs a restart of Mothership", false, false },
    };
    const json_t *why = json_object_get(plan, "why");
    bool changes = false;
    for (size_t l = 0; l < sizeof lines / sizeof lines[0]; l++) {
        const json_t *list = json_object_get(plan, lines[l].key);
        size_t n = json_array_size(list);
        if (n == 0)
            continue;
        if (lines[l].count) {
            fprintf(out, "%s: %zu entr%s\n", lines[l].label, n, n == 1 ? "y" : "ies");
            continue;
        }
        changes = true;
        fprintf(out, "%s: ", lines[l].label);
        json_array_foreach(list, i, p) {
            const char *name = json_string_value(p);
            const char *what = name && lines[l].why ? json_string_value(json_object_get(why, name)) : NULL;
            fprintf(out, "%s%s", i ? ", " : "", name ? name : "?");
            if (what)
                fprintf(out, " (%s)", what);
        }
        fputc('\n', out);
    }
    if (!changes)
        fprintf(out, "nothing to change\n");
}
