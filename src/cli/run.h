/* run.h: the state of `mothership run`, shared by the files that act on a
 * running fleet: run.c (launch and stop), reload.c (a new manifest applied)
 * and the control socket's handlers. Everything here belongs to the control
 * loop. */
#ifndef MS_CLI_RUN_H
#define MS_CLI_RUN_H

#include <stdbool.h>
#include <uv.h>

#include "cli/cli.h"
#include "cli/run_signals.h"
#include "dock/hub.h"
#include "dock/link.h"
#include "fleet/fleet.h"
#include "fleet/fleet_metrics.h"
#include "http/dataplane.h"
#include "metrics/server.h"
#include "payload/payload.h"
#include "router/table.h"
#include "tls/tls.h"
#include "tui/tui.h"

typedef struct ms_run ms_run;

struct ms_run {
    uv_loop_t *loop;
    const ms_cli *o;
    ms_manifest *m;
    bool *selected;
    ms_log *log;
    ms_fleet *fleet;
    ms_route_table *routes;
    ms_payload_set *payloads;
    ms_dataplane *dp;
    ms_tls_server *tls;                  /* the TLS binds' contexts; NULL without TLS binds */
    struct ms_acme *acme;                /* the ACME client; NULL without [mothership.acme] */
    struct ms_acme_board *board;         /* its challenges, answered by the data plane; freed after it */
    ms_hub *hub;                         /* bays: queues between workers and docking links */
    ms_docks *docks;
    ms_metrics_server *metrics;
    ms_fleet_view view;
    uv_signal_t early_int, early_term, early_quit; /* before the fleet takes over signals */
    uv_signal_t early_chld;              /* before the fleet: orphans handed to a PID 1 reaped */
    ms_run_signals *ignored;             /* the signals that do not stop Mothership */
    bool early_open;
    bool tui_wanted;                     /* --tui on a terminal */
    ms_tui *tui;
    int exit_code;
    /* reload.c */
    ms_manifest *launched;               /* the manifest Mothership started with (what needs a restart) */
    uint64_t reloads[2];                 /* mothership_config_reloads_total: [0] success, [1] failure */
    double last_reload_ok;               /* unix time of the last successful reload (the launch at first) */
    /* ctl.c */
    struct ms_ctl *ctl;                  /* the control socket; NULL when there is none */
    /* run_notify.c */
    struct ms_run_notify *notify;        /* the service manager's socket; NULL when there is none */
};

/* The hub and the docking links, made when the first bay appears (at the
 * launch, or in a reload); workers: the data plane's. False on OOM. */
bool ms_run_start_docking(ms_run *r, unsigned workers);
/* Read the TLS binds' certificates again (when there are TLS binds). */
void ms_run_reload_certificates(ms_run *r);

#endif
