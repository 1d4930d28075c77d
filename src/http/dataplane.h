/* dataplane.h: the HTTP data plane. `workers` threads, each with its own
 * libuv loop, its own listeners (SO_REUSEPORT for TCP binds, a shared
 * descriptor for Unix binds), connections, upstream pools and counters.
 * What they share is read-only: the manifest, the routing table, and the
 * fleet's per-process atomics (ready, breaker). The control loop starts and
 * stops it and reads its counters for /metrics. */
#ifndef MS_HTTP_DATAPLANE_H
#define MS_HTTP_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fleet/fleet.h"
#include "metrics/prom.h"
#include "dock/hub.h"
#include "payload/payload.h"
#include "router/table.h"

typedef struct ms_dataplane ms_dataplane;

typedef struct ms_dp_config {
    const ms_manifest *m;
    const ms_route_table *routes;
    ms_proc *const *procs; /* the fleet's processes, indexed like m->ships; NULL: every ship counts as ready */
    ms_log *log;
    const ms_payload_set *payloads; /* loaded WASM modules, or NULL */
    unsigned workers;    /* 0: one per CPU */
    ms_hub *hub;         /* bays' docking links, with ms_dataplane_worker_count() workers; NULL: none */
    bool inline_worker;  /* tests and fuzzing: one worker, no listeners, no thread */
    struct ms_tls_server *tls; /* SSL objects for binds with tls (tls/tls.h); NULL: no TLS bind */
} ms_dp_config;

/* How many workers a configuration runs (cfg->workers, 0 = CPUs). */
unsigned ms_dataplane_worker_count(const ms_dp_config *cfg);

/* Bind every listener and start the workers. NULL with a reason on failure
 * (e.g. "bind \"http\" (tcp://0.0.0.0:80): permission denied"). */
ms_dataplane *ms_dataplane_start(uv_loop_t *control, const ms_dp_config *cfg, char *why, size_t why_len);

/* Stop accepting at once; let requests in flight finish for up to drain_ms;
 * then close everything and join the workers. done(arg) runs on the control
 * loop when all is closed. */
void ms_dataplane_stop(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg);
void ms_dataplane_free(ms_dataplane *dp);

/* Reload: cfg (a new manifest, its routes, payloads, TLS server, and the
 * fleet's processes for its ships) becomes every worker's configuration.
 * Binds are matched by name: new ones open, removed ones close (their
 * requests finish), one whose address changed reopens. Requests in flight
 * finish on the configuration they started with; new ones see the new one.
 * All or nothing: false + why (a bind that cannot be opened, out of memory)
 * and nothing changed. On success the data plane holds a reference on cfg->m
 * and owns cfg->routes, cfg->payloads and cfg->tls (freed with the last
 * request that uses them). Control loop. */
bool ms_dataplane_reload(ms_dataplane *dp, const ms_dp_config *cfg, char *why, size_t why_len);

/* Stop accepting on every bind (the listeners close; /ready should say so)
 * and call done(arg) on the control loop once the requests in flight have
 * finished or drain_ms has passed; the workers and their connections go on
 * until ms_dataplane_stop. */
void ms_dataplane_drain(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg);

/* Tests and fuzzing (cfg.inline_worker): the worker's loop, to run in the
 * caller's thread; hand it a connected Unix stream socket as a client; stop
 * it (runs the loop until everything is closed) and free. */
uv_loop_t *ms_dataplane_inline_loop(ms_dataplane *dp);
int ms_dataplane_inline_adopt(ms_dataplane *dp, int fd, size_t bind_idx);
void ms_dataplane_inline_stop(ms_dataplane *dp);

/* Module i's counters summed over the workers (for the dashboard). */
void ms_dataplane_module_stats(const ms_dataplane *dp, size_t i, ms_payload_stats *out);

/* Request metrics (summed over workers) for /metrics. */
void ms_dataplane_render_metrics(const ms_dataplane *dp, ms_buf *out);

/* Requests answered so far (summed over workers and routes) for routes to
 * the ship or bay named target; read-only, for the dashboard's req/s. */
uint64_t ms_dataplane_requests_to(const ms_dataplane *dp, const char *target);

#endif
