/* run.c: `mothership run`: load the manifest, apply --only/--except, check
 * the uplinks, open the metrics endpoint, launch the fleet and supervise it
 * until it stops. Exit 0 after a signal-initiated clean shutdown, 1 when the
 * launch fails or a critical ship dies (see docs/cli.md). */
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "acme/acme.h"
#include "cli/cli.h"
#include "cli/ctl.h"
#include "cli/reload.h"
#include "cli/run.h"
#include "cli/run_notify.h"
#include "cli/run_signals.h"
#include "fleet/roll.h"
#include "fleet/fleet.h"
#include "fleet/fleet_metrics.h"
#include "ms_config.h"
#include "dock/link.h"
#include "http/dataplane.h"
#include "metrics/server.h"
#include "tls/tls.h"
#include "tui/tui.h"
#include "uplink/uplink.h"

static void on_metrics_closed(void *arg)
{
    (void)arg;
}

static void close_ctl(ms_run *c)
{
    ms_ctl_close(c->ctl);
    c->ctl = NULL;
}

static void close_early_signals(ms_run *c)
{
    if (c->early_open) {
        uv_close((uv_handle_t *)&c->early_int, NULL);
        uv_close((uv_handle_t *)&c->early_term, NULL);
        uv_close((uv_handle_t *)&c->early_quit, NULL);
        uv_close((uv_handle_t *)&c->early_chld, NULL);
        c->early_open = false;
    }
}

/* The ACME client stops (its challenges withdrawn, its timers closed)
 * once a shutdown begins. */
static void stop_acme(ms_run *c)
{
    ms_acme_free(c->acme);
    c->acme = NULL;
    c->view.acme_pending = NULL;
}

static void on_fleet_done(ms_fleet *f, void *arg)
{
    ms_run *c = arg;
    stop_acme(c);
    c->exit_code = f->exit_code;
    c->view.stopping = true;
    ms_docks_close(c->docks);
    ms_tui_stop(c->tui);
    c->tui = NULL;
    close_ctl(c);
    if (c->metrics) {
        ms_metrics_server_close(c->metrics, on_metrics_closed, NULL);
        c->metrics = NULL;
    }
}

/* Launched, or stopping: the service manager hears of it. */
static void on_fleet_phase(ms_fleet *f, void *arg)
{
    ms_run *c = arg;
    (void)f;
    ms_run_notify_fleet(c->notify);
}

static void on_docks_flushed(void *arg)
{
    ms_run *c = arg;
    ms_fleet_drained(c->fleet);
}

static void on_dp_stopped(void *arg)
{
    ms_run *c = arg;
    ms_log_event(c->log, MS_INFO, NULL, "drained", "listeners closed and requests drained");
    if (c->docks) /* the Disembarks of the clients just closed reach the bays before they are stopped */
        ms_docks_flush(c->docks, on_docks_flushed, c);
    else
        ms_fleet_drained(c->fleet);
}

/* A shutdown begins: stop accepting, let requests finish, then stop ships. */
static void on_fleet_drain(ms_fleet *f, void *arg)
{
    ms_run *c = arg;
    (void)f;
    stop_acme(c);
    ms_dataplane_stop(c->dp, c->m->global.shutdown_timeout_ms, on_dp_stopped, c);
}

/* The data plane's and the bays' series, and the reloads'. */
/* mothership_build_info's labels: the version and the libraries it runs
 * with (their own version strings, not the headers it was built with). */
static void set_build_info(ms_fleet_view *v)
{
#ifdef OPENSSL_VERSION_STRING
    const char *openssl = OpenSSL_version(OPENSSL_VERSION_STRING);
#else
    const char *openssl = OpenSSL_version(OPENSSL_VERSION);
#endif
    v->build_info[0] = (ms_prom_label){ "version", MS_VERSION };
    v->build_info[1] = (ms_prom_label){ "openssl", openssl ? openssl : "" };
    v->build_info[2] = (ms_prom_label){ "libuv", uv_version_string() };
    v->nbuild_info = 3;
}

static void render_run_metrics(void *arg, ms_buf *out)
{
    ms_run *c = arg;
    if (c->dp)
        ms_dataplane_render_metrics(c->dp, out);
    if (c->docks)
        ms_docks_render_metrics(c->docks, out);
    ms_prom p;
    ms_prom_init(&p, out);
    ms_acme_render_metrics(c->acme, &p);
    static const char *const results[2] = { "success", "failure" };
    for (int i = 0; i < 2; i++) {
        ms_prom_label l[] = { { "result", results[i] } };
        ms_prom_counter_u64(&p, "mothership_config_reloads_total",
                            "Manifest reloads (SIGHUP, the control socket) by result.", l, 1, c->reloads[i]);
    }
    ms_prom_gauge_double(&p, "mothership_config_last_reload_success_timestamp_seconds",
                         "Unix time of the last successful manifest reload (the launch until the first).", NULL, 0,
                         c->last_reload_ok);
}

bool ms_run_start_docking(ms_run *c, unsigned workers)
{
    if (c->docks)
        return true;
    if (!c->hub)
        c->hub = ms_hub_new(MS_FLEET_MAX_SLOTS, NULL, workers, 0);
    c->docks = c->hub ? ms_docks_new(c->loop, c->fleet, c->hub, c->log) : NULL;
    return c->docks != NULL;
}

/* Bays dock over the hub; its workers are the data plane's. The hub has a
 * bay per slot, so a reload may add bays. */
static bool start_docking(ms_run *c, const ms_dp_config *cfg)
{
    bool any = c->m->global.nbinds > 0; /* a reload may add bays behind the data plane */
    for (size_t i = 0; i < c->m->nships; i++)
        any |= c->m->ships[i].kind == MS_BAY || ms_ship_speaks_v3(&c->m->ships[i]);
    return !any || ms_run_start_docking(c, ms_dataplane_worker_count(cfg));
}

static bool tui_module_stats(void *arg, size_t i, uint64_t *calls, uint64_t *blocks, uint64_t *errors)
{
    ms_run *c = arg;
    if (!c->dp || !c->payloads)
        return false;
    ms_payload_stats st;
    ms_dataplane_module_stats(c->dp, i, &st);
    *calls = st.calls;
    *blocks = st.blocks;
    *errors = st.traps + st.exhaustions + st.abi_errors + st.instance_errors;
    return true;
}

static bool tui_bay_clients(void *arg, size_t i, uint64_t *clients)
{
    ms_run *c = arg;
    if (!c->hub || !c->fleet || i >= c->fleet->n)
        return false;
    size_t slot = c->fleet->procs[i]->slot;
    if (slot >= c->hub->nbays || !c->hub->bays[slot].is_bay)
        return false;
    *clients = __atomic_load_n(&c->hub->bays[slot].st.clients, __ATOMIC_RELAXED);
    return true;
}

static uint64_t tui_requests(void *arg, const char *target)
{
    ms_run *c = arg;
    return c->dp ? ms_dataplane_requests_to(c->dp, target) : 0;
}

static bool dp_holds_proc(void *arg, const ms_proc *p)
{
    return ms_dataplane_holds_proc(arg, p);
}

static void abort_launch(ms_run *c, const char *what, const char *why)
{
    ms_log_event(c->log, MS_ERROR, NULL, "launch_failed", "%s: %s; nothing was launched", what, why);
    c->exit_code = MS_EXIT_FAIL;
    stop_acme(c);
    close_ctl(c);
    ms_docks_close(c->docks); /* its handles would keep the loop running */
    if (c->metrics) {
        ms_metrics_server_close(c->metrics, on_metrics_closed, NULL);
        c->metrics = NULL;
    }
}

static void on_tls_note(void *arg, bool error, const char *text)
{
    ms_run *c = arg;
    ms_log_event(c->log, error ? MS_ERROR : MS_INFO, NULL, "tls_reload", "%s", text);
}

void ms_run_reload_certificates(ms_run *c)
{
    if (c->tls)
        ms_tls_server_reload(c->tls, on_tls_note, c);
}

/* SIGHUP: the manifest is read again and what changed is applied (the TLS
 * certificates are read again with it). */
static void on_hup(void *arg)
{
    ms_run *c = arg;
    ms_run_reload(c, false, "SIGHUP", NULL);
}

/* SIGUSR1: every ship with a bind is replaced, one instance at a time
 * (a phased restart). */
static void on_usr1(void *arg)
{
    ms_run *c = arg;
    if (c->fleet)
        ms_roll_ships(c->fleet, NULL, "SIGUSR1");
}

/* The TLS binds' certificates, loaded and checked once for every worker
 * (the data plane makes each connection's SSL from c->tls); SIGHUP reloads
 * them. Self-signed binds say where their certificate is and its
 * fingerprint, for a client to pin or trust. */
static bool start_tls(ms_run *c, char *why, size_t why_len)
{
    const ms_global *g = &c->m->global;
    bool any = false;
    for (size_t b = 0; b < g->nbinds; b++)
        any |= g->binds[b].tls;
    if (!any)
        return true;
    c->tls = ms_tls_server_new(c->m, why, why_len);
    if (!c->tls)
        return false;
    for (size_t b = 0; b < g->nbinds; b++) {
        const char *path, *fp;
        bool generated;
        if (ms_tls_server_self_signed_info(c->tls, b, &path, &fp, &generated))
            ms_log_event(c->log, MS_INFO, NULL, "self_signed", "bind \"%s\": %s self-signed certificate %s, "
                         "SHA-256 fingerprint %s", g->binds[b].name, generated ? "generated" : "reusing", path, fp);
    }
    return true;
}

static size_t acme_pending(void *arg, ms_buf *names)
{
    ms_run *c = arg;
    return ms_acme_pending(c->acme, names);
}

/* [mothership.acme]: the board the data plane answers challenges from, and
 * the client, which reads its state directory and swaps the stored
 * certificates into the TLS server before the first handshake. Started
 * once the data plane listens. */
static bool start_acme(ms_run *c, char *why, size_t why_len)
{
    if (!c->m->global.acme.enabled)
        return true;
    c->board = ms_acme_board_new();
    if (!c->board) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    if (c->tls) /* tls-alpn-01 answers come from the board; set before the workers start */
        ms_tls_server_set_acme_board(c->tls, c->board);
    /* the manifest launched: kept (c->launched) until the end, reloads or not */
    ms_acme_deps d = { .loop = c->loop, .m = c->launched, .tls = c->tls, .board = c->board, .log = c->log };
    c->acme = ms_acme_new(&d, why, why_len);
    if (!c->acme)
        return false;
    c->view.acme_pending = acme_pending;
    c->view.acme_ctx = c;
    return true;
}

/* A signal PID 1 leaves at its default action is dropped by the kernel,
 * not even kept pending, so a SIGTERM that comes before a handler is in
 * place (while the manifest is read, or between the early handlers and the
 * fleet's) would be lost and the container would run on until SIGKILL.
 * Blocked, it stays pending until the handler is there. Every thread made
 * while they are blocked keeps them blocked, so the signal can only reach
 * the control loop's thread once it unblocks them. */
static void hold_stop_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    (void)pthread_sigmask(SIG_BLOCK, &set, old);
}

static void release_stop_signals(const sigset_t *old)
{
    (void)pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void launch_now(ms_run *c);

/* The early handlers give way to the fleet's: the stop signals are held in
 * between, so that one coming then reaches the fleet's handler. */
static void launch(ms_run *c)
{
    sigset_t old;
    hold_stop_signals(&old);
    launch_now(c);
    release_stop_signals(&old);
}

static void launch_now(ms_run *c)
{
    close_early_signals(c);
    char why[512];
    c->fleet = ms_fleet_new(c->loop, c->m, c->selected, c->log, why, sizeof why);
    if (!c->fleet) {
        abort_launch(c, "cannot launch", why);
        return;
    }
    ms_ctl_attach_fleet(c->ctl);
    c->fleet->phase_changed = on_fleet_phase;
    c->fleet->phase_arg = c;
    ms_dp_config cfg = { .m = c->m, .procs = c->fleet->procs, .log = c->log, .workers = c->m->global.workers };
    if (c->m->global.nbinds == 0)
        cfg.workers = 1; /* no data plane: the hub's single inbox is never read */
    if (!start_docking(c, &cfg)) {
        abort_launch(c, "cannot prepare the docking links", "out of memory");
        return;
    }
    if (c->m->global.nbinds > 0) {
        c->routes = ms_route_table_build(c->m);
        if (!c->routes) {
            abort_launch(c, "cannot build the routing table", "out of memory");
            return;
        }
        if (c->m->nmodules > 0) {
            c->payloads = ms_payload_load_all(c->m, why, sizeof why);
            if (!c->payloads) {
                abort_launch(c, "cannot load the payloads", why);
                return;
            }
        }
        if (!start_tls(c, why, sizeof why)) {
            abort_launch(c, "cannot set up TLS", why);
            return;
        }
        if (!start_acme(c, why, sizeof why)) {
            abort_launch(c, "cannot set up ACME", why);
            return;
        }
        cfg.routes = c->routes;
        cfg.payloads = c->payloads;
        cfg.hub = c->hub;
        cfg.tls = c->tls;
        /* http-01 answers on the plain binds; with tls-alpn-01 the path stays the routes' */
        cfg.board = c->m->global.acme.challenge == MS_ACME_HTTP_01 ? c->board : NULL;
        c->dp = ms_dataplane_start(c->loop, &cfg, why, sizeof why);
        if (!c->dp) {
            abort_launch(c, "cannot start the data plane", why);
            return;
        }
        for (size_t b = 0; b < c->m->global.nbinds; b++) {
            const ms_bind *bd = &c->m->global.binds[b];
            ms_log_field lf[] = { ms_log_str("bind", bd->name), ms_log_str("address", bd->addr.text) };
            ms_log_event_fields(c->log, MS_INFO, NULL, "listening", lf, 2, "bind \"%s\" listening on %s", bd->name,
                                bd->addr.text);
        }
        c->fleet->drain = on_fleet_drain;
        c->fleet->drain_arg = c;
        c->fleet->proc_held = dp_holds_proc; /* a retired process is freed once no generation has it */
        c->fleet->proc_held_arg = c->dp;
        ms_acme_start(c->acme);
    }
    c->view.extra = render_run_metrics;
    c->view.extra_ctx = c;
    c->view.fleet = c->fleet;
    c->last_reload_ok = (double)time(NULL);
    ms_run_signals_on_hup(c->ignored, on_hup, c);
    ms_run_signals_on_usr1(c->ignored, on_usr1, c);
    ms_fleet_start(c->fleet, on_fleet_done, c);
    if (c->tui_wanted && c->fleet->phase != MS_FLEET_DONE) {
        ms_tui_config tc = { .loop = c->loop, .fleet = c->fleet, .log = c->log,
                             .requests = c->dp ? tui_requests : NULL, .requests_arg = c,
                             .module_stats = c->payloads ? tui_module_stats : NULL,
                             .bay_clients = c->dp && c->hub ? tui_bay_clients : NULL };
        c->tui = ms_tui_start(&tc, why, sizeof why);
        if (!c->tui)
            ms_log_event(c->log, MS_WARN, NULL, "tui_unavailable", "--tui: %s; showing plain logs", why);
    }
}

static void on_uplinks(bool ok, const char *message, const ms_uplink_result *results, size_t n, void *arg)
{
    ms_run *c = arg;
    c->view.uplinks = calloc(n ? n : 1, sizeof *c->view.uplinks);
    if (c->view.uplinks) {
        memcpy(c->view.uplinks, results, n * sizeof *results);
        c->view.nuplinks = n;
    }
    for (size_t i = 0; i < n; i++) {
        const ms_uplink_result *r = &results[i];
        if (r->up) {
            ms_log_field uf[] = { ms_log_str("uplink", r->uplink->name), ms_log_str("address", r->address),
                                  ms_log_num("ms", (int64_t)r->elapsed_ms) };
            ms_log_event_fields(c->log, MS_INFO, NULL, "uplink_up", uf, 3, "uplink \"%s\" (%s) is up: %s in %llums%s",
                                r->uplink->name, r->address, r->detail, (unsigned long long)r->elapsed_ms,
                                r->same_as != MS_UPLINK_OWN ? " (same host:port, checked once)" : "");
        }
    }
    if (!ok) {
        const char *p = message;
        while (p && *p) {
            const char *e = strchr(p, '\n');
            int len = e ? (int)(e - p) : (int)strlen(p);
            ms_log_event(c->log, MS_ERROR, NULL, "uplink_down", "%.*s", len, p);
            p = e ? e + 1 : NULL;
        }
        ms_log_event(c->log, MS_ERROR, NULL, "launch_aborted", "launch aborted: %s down; nothing was started",
                     n == 1 ? "the uplink is" : "an uplink is");
        c->exit_code = MS_EXIT_FAIL;
        close_early_signals(c);
        close_ctl(c);
        if (c->metrics) {
            ms_metrics_server_close(c->metrics, on_metrics_closed, NULL);
            c->metrics = NULL;
        }
        return;
    }
    launch(c);
}

/* Before the fleet exists Mothership has started no process, but as PID 1
 * it is handed every orphan of the namespace (a `docker exec`'d command's
 * children, a sidecar's): reap them while uplinks are checked, however long
 * that takes. The fleet reaps from its start on. */
static void on_early_child(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void on_early_signal(uv_signal_t *h, int signum)
{
    ms_run *c = h->data;
    ms_log_event(c->log, MS_INFO, NULL, "shutdown", "%s before launch: stopping",
                 signum == SIGINT ? "SIGINT" : signum == SIGQUIT ? "SIGQUIT" : "SIGTERM");
    if (c->ctl)
        unlink(ms_ctl_path(c->ctl));
    exit(128 + signum);
}

/* Every client and upstream connection is a descriptor: take the hard limit
 * (like nginx's worker_rlimit_nofile), so max_connections is not cut short
 * by a soft limit of 1024. Children inherit it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20))
        rl.rlim_cur = 1u << 20;
    (void)setrlimit(RLIMIT_NOFILE, &rl); /* best effort: the soft limit stays otherwise */
}

int ms_cmd_run(const ms_cli *o)
{
    bool pid1 = getpid() == 1;
    sigset_t mask_before;
    if (pid1) /* until a handler is in place, see hold_stop_signals */
        hold_stop_signals(&mask_before);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    ms_run c = { .o = o, .exit_code = MS_EXIT_OK };
    c.m = ms_cli_load(o);
    if (!c.m)
        return MS_EXIT_FAIL;
    c.launched = ms_manifest_ref(c.m);
    c.selected = calloc(c.m->nships ? c.m->nships : 1, sizeof *c.selected);
    if (!c.selected) {
        ms_manifest_free(c.m);
        ms_manifest_free(c.launched);
        return MS_EXIT_FAIL;
    }
    char why[512];
    if (!ms_fleet_select(c.m, o->only, o->except, c.selected, why, sizeof why)) {
        fprintf(stderr, "mothership: %s\n", why);
        free(c.selected);
        ms_manifest_free(c.m);
        ms_manifest_free(c.launched);
        return MS_EXIT_FAIL;
    }
    c.log = ms_log_open(STDOUT_FILENO, strcmp(o->log_format, "json") == 0, o->color);
    if (!c.log) {
        fprintf(stderr, "mothership: cannot start the log writer\n");
        free(c.selected);
        ms_manifest_free(c.m);
        ms_manifest_free(c.launched);
        return MS_EXIT_FAIL;
    }
    c.tui_wanted = o->tui && ms_tui_usable();
    c.loop = uv_default_loop();
    c.notify = ms_run_notify_start(&c); /* before any process is started: they must not inherit $NOTIFY_SOCKET */
    c.view.m = c.m;
    set_build_info(&c.view);
    c.ignored = ms_run_signals_start(c.loop, c.log);
    if (!c.ignored)
        ms_log_event(c.log, MS_WARN, NULL, "signals_uncaught", "cannot catch SIGHUP, SIGUSR1 and the like: they keep their defaults");

    const ms_global *g = &c.m->global;
    c.ctl = ms_ctl_start(&c, why, sizeof why);
    if (!c.ctl) {
        ms_log_event(c.log, MS_ERROR, NULL, "control_failed", "%s; nothing was started", why);
        c.exit_code = MS_EXIT_FAIL;
        goto run_loop;
    }
    ms_log_field cpath = ms_log_str("path", ms_ctl_path(c.ctl));
    ms_log_event_fields(c.log, MS_INFO, NULL, "control_socket", &cpath, 1, "control socket %s", ms_ctl_path(c.ctl));
    if (g->metrics_port) {
        ms_metrics_handlers h = { .ctx = &c.view, .render_metrics = ms_fleet_render_metrics,
                                  .health = ms_fleet_render_health, .ready = ms_fleet_render_ready };
        c.metrics = ms_metrics_server_start(c.loop, g->metrics_bind, g->metrics_port, &h, why, sizeof why);
        if (!c.metrics) {
            ms_log_event(c.log, MS_ERROR, NULL, "metrics_failed", "metrics endpoint: %s; nothing was started", why);
            c.exit_code = MS_EXIT_FAIL;
            close_ctl(&c);
            goto run_loop;
        }
        char maddr[300];
        snprintf(maddr, sizeof maddr, strchr(g->metrics_bind, ':') ? "[%s]:%u" : "%s:%u", g->metrics_bind,
                 ms_metrics_server_port(c.metrics));
        ms_log_field mf = ms_log_str("address", maddr);
        ms_log_event_fields(c.log, MS_INFO, NULL, "metrics", &mf, 1,
                            "metrics on http://%s:%u/metrics, /health and /ready", g->metrics_bind,
                            ms_metrics_server_port(c.metrics));
    }
    uv_signal_init(c.loop, &c.early_int);
    uv_signal_init(c.loop, &c.early_term);
    uv_signal_init(c.loop, &c.early_quit);
    uv_signal_init(c.loop, &c.early_chld);
    c.early_int.data = c.early_term.data = c.early_quit.data = &c;
    uv_signal_start(&c.early_int, on_early_signal, SIGINT);
    uv_signal_start(&c.early_term, on_early_signal, SIGTERM);
    uv_signal_start(&c.early_quit, on_early_signal, SIGQUIT);
    uv_signal_start(&c.early_chld, on_early_child, SIGCHLD);
    uv_unref((uv_handle_t *)&c.early_chld); /* reaping alone does not keep the loop running */
    on_early_child(&c.early_chld, SIGCHLD); /* those that ended before it was caught */
    c.early_open = true;
    if (c.m->nuplinks > 0) {
        ms_log_event(c.log, MS_INFO, NULL, "preflight", "checking %zu uplink%s", c.m->nuplinks,
                     c.m->nuplinks == 1 ? "" : "s");
        if (ms_uplink_gate(c.loop, c.m->uplinks, c.m->nuplinks, on_uplinks, &c, NULL) != 0) {
            ms_log_event(c.log, MS_ERROR, NULL, "preflight_failed", "cannot check uplinks: out of memory");
            c.exit_code = MS_EXIT_FAIL;
            close_early_signals(&c);
            close_ctl(&c);
        }
    } else {
        launch(&c);
    }
run_loop:
    if (pid1) /* a handler is in place (the early ones or the fleet's) */
        release_stop_signals(&mask_before);
    uv_run(c.loop, UV_RUN_DEFAULT);
    close_early_signals(&c);
    ms_run_signals_close(c.ignored);
    ms_run_notify_close(c.notify);
    uv_run(c.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(c.loop);
    if (rc != 0)
        ms_log_event(c.log, MS_WARN, NULL, "internal", "internal: event loop closed with handles open");
    if (c.dp) { /* from its start on, the data plane owns the routes, payloads and TLS server */
        c.tls = NULL;
        c.payloads = NULL;
        c.routes = NULL;
    }
    ms_dataplane_free(c.dp);
    ms_tls_server_free(c.tls);
    ms_acme_board_free(c.board); /* after the data plane and the TLS server that answer from it */
    ms_payload_set_free(c.payloads);
    ms_route_table_free(c.routes);
    ms_docks_free(c.docks);
    ms_hub_free(c.hub);
    ms_fleet_free(c.fleet);
    free(c.view.uplinks);
    ms_log_close(c.log);
    free(c.selected);
    ms_manifest_free(c.m);
    ms_manifest_free(c.launched);
    return c.exit_code;
}
