/* dataplane.h: the HTTP data plane. `workers` threads, each with its own
 * libuv loop, its own listeners (SO_REUSEPORT for TCP binds, a shared
 * descriptor for Unix binds), connections, upstream pools and counters.
 * What they share is read-only: a generation of the configuration (the
 * manifest, the routing table, payloads, TLS), and the fleet's per-process
 * atomics (ready, breaker). The control loop starts, reloads, drains and
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
    struct ms_acme_board *board; /* ACME http-01 answers on plain binds (acme/board.h); NULL: none */
} ms_dp_config;

/* How many workers a configuration runs (cfg->workers, 0 = CPUs). */
unsigned ms_dataplane_worker_count(const ms_dp_config *cfg);

/* Bind every listener and start the workers. NULL with a reason on failure
 * (e.g. "bind \"http\" (tcp://0.0.0.0:80): permission denied"), and
 * cfg's objects are still the caller's. On success the data plane holds a
 * reference on cfg->m and owns cfg->routes, cfg->payloads and cfg->tls:
 * ms_dataplane_free (or a reload, once requests using them have ended)
 * frees them. cfg->procs is copied (the processes must outlive the data
 * plane); cfg->log, workers, hub, board and inline_worker hold for its
 * life. */
ms_dataplane *ms_dataplane_start(uv_loop_t *control, const ms_dp_config *cfg, char *why, size_t why_len);

/* Stop accepting at once; let requests in flight finish for up to drain_ms;
 * then close everything and join the workers. done(arg) runs on the control
 * loop when all is closed. */
void ms_dataplane_stop(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg);
void ms_dataplane_free(ms_dataplane *dp);

/* Reload: cfg (a new manifest, its routes, payloads, TLS server, and the
 * fleet's processes for its ships) becomes every worker's configuration.
 * Binds are matched by name, address and TLS: new ones open (before this
 * returns), removed ones close (their connections end after their
 * request), one whose address or TLS changed reopens, kept ones keep their
 * listening sockets. Requests in flight (a WebSocket or tunnel until it
 * closes) finish on the configuration they started with; new ones, and the
 * next request of a kept-alive connection, see the new one. Idle upstream
 * connections stay pooled for a ship with the same name and address.
 * Request and payload counters go on for the same labels. cfg->hub must be
 * NULL or the hub given at start; cfg->workers, log and board are not
 * read (the board given at start stays).
 * All or nothing: false + why (a bind that cannot be opened, out of memory,
 * stopping) and nothing changed (cfg's objects are still the caller's). On
 * success the data plane holds a reference on cfg->m and owns cfg->routes,
 * cfg->payloads and cfg->tls (freed with the last request that uses them):
 * the caller must not use the previous ones any more, except that cfg->tls
 * may be the current TLS server, kept (freed with the last generation that
 * has it). Control loop. */
bool ms_dataplane_reload(ms_dataplane *dp, const ms_dp_config *cfg, char *why, size_t why_len);

/* Open the access log's file (path; NULL: Mothership's output) again, so
 * that a rotated file is let go: a reload does it too. false + why: the
 * one open stays. Control loop. */
bool ms_dataplane_reopen_access_log(ms_dataplane *dp, const char *path, char *why, size_t why_len);

/* Stop accepting on every bind (the listeners close, Unix socket files are
 * removed; /ready should say so), end each connection after its current
 * request (idle ones at once; HTTP/2 gets GOAWAY, a bay's WebSocket 1001),
 * and call done(arg) on the control loop once no connection is left or
 * drain_ms has passed; the workers go on until ms_dataplane_stop. A second
 * drain, or one after the stop began, calls done at once; so does a drain
 * of an inline worker. A reload after a drain opens no listener. */
void ms_dataplane_drain(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg);

/* Tests and fuzzing (cfg.inline_worker): the worker's loop, to run in the
 * caller's thread; hand it a connected Unix stream socket as a client; stop
 * it (runs the loop until everything is closed) and free. */
uv_loop_t *ms_dataplane_inline_loop(ms_dataplane *dp);
int ms_dataplane_inline_adopt(ms_dataplane *dp, int fd, size_t bind_idx);
/* ... or a listening socket of that bind (taken in every case): 0 or a libuv error */
int ms_dataplane_inline_listen(ms_dataplane *dp, int fd, size_t bind_idx);
void ms_dataplane_inline_stop(ms_dataplane *dp);

/* The newest generation's payload set (NULL: none): what the module
 * indexes below refer to. */
const ms_payload_set *ms_dataplane_payloads(const ms_dataplane *dp);

/* Module i's counters summed over the workers (for the dashboard). */
void ms_dataplane_module_stats(const ms_dataplane *dp, size_t i, ms_payload_stats *out);

/* Request metrics (summed over workers) for /metrics. */
void ms_dataplane_render_metrics(const ms_dataplane *dp, ms_buf *out);

/* Requests answered so far (summed over workers and routes) for routes to
 * the ship or bay named target; read-only, for the dashboard's req/s. */
uint64_t ms_dataplane_requests_to(const ms_dataplane *dp, const char *target);
/* Requests answered so far, every route and kind summed (for req/s). */
uint64_t ms_dataplane_requests_total(const ms_dataplane *dp);

/* Control loop: does a generation workers may still use point at p (a
 * retired process is freed only once none does)? */
bool ms_dataplane_holds_proc(const ms_dataplane *dp, const ms_proc *p);

#endif
