/* fleet_metrics.h: the fleet's Prometheus series and /health and /ready bodies. */
#ifndef MS_FLEET_METRICS_H
#define MS_FLEET_METRICS_H

#include "fleet/fleet.h"
#include "metrics/prom.h"
#include "uplink/uplink.h"

typedef struct ms_fleet_view {
    const ms_fleet *fleet;               /* NULL while uplinks are checked */
    const ms_manifest *m;
    ms_uplink_result *uplinks;           /* copies of the pre-flight results, or NULL */
    size_t nuplinks;
    bool stopping;
    bool drained;                        /* the control socket's drain: /ready says 503 */
    ms_prom_label build_info[4];         /* mothership_build_info's labels (version, library versions) */
    size_t nbuild_info;
    void (*extra)(void *ctx, ms_buf *out);  /* more series (the data plane's), or NULL */
    void *extra_ctx;
    /* ACME names still without a certificate (acme/acme.h ms_acme_pending):
     * how many, and their JSON array into names; /ready is 503 while any
     * is. NULL: no ACME. */
    size_t (*acme_pending)(void *ctx, ms_buf *names);
    void *acme_ctx;
} ms_fleet_view;

void ms_fleet_render_metrics(void *view, ms_buf *out);
/* Liveness and readiness: the same JSON body, 200 or 503. */
int ms_fleet_render_health(void *view, ms_buf *body);
int ms_fleet_render_ready(void *view, ms_buf *body);

#endif
