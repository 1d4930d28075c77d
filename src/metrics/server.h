/* server.h: the control-plane metrics endpoint (GET/HEAD /metrics, /health,
 * /ready).
 *
 * A small HTTP/1.x server on a libuv loop, meant for 127.0.0.1:<metrics_port>:
 *   - /metrics: Prometheus text (Content-Type: text/plain; version=0.0.4;
 *     charset=utf-8) written by handlers->render_metrics;
 *   - /health and /ready: status and body from handlers->health and
 *     handlers->ready (200 or 503);
 *   - other paths 404; other methods on those paths 405 with Allow;
 *     malformed requests 400, head over 8 KiB 431, then close.
 * Keep-alive (HTTP/1.1 and HTTP/1.0 with Connection: keep-alive); one request
 * at a time per connection (reading pauses while a response is written, so
 * pipelined requests are answered in order). At most
 * MS_METRICS_MAX_CONNECTIONS connections; further ones are accepted and
 * closed at once. A connection that has not finished its next request (or
 * that does not read its response) within the idle timeout is closed.
 *
 * The caller must ignore SIGPIPE (as any libuv program writing to sockets).
 * All functions must be called on the loop's thread.
 */
#ifndef MS_METRICS_SERVER_H
#define MS_METRICS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "metrics/prom.h"
#include "metrics/session.h"

#define MS_METRICS_MAX_CONNECTIONS 64
#define MS_METRICS_IDLE_TIMEOUT_MS 10000u

typedef struct ms_metrics_server ms_metrics_server;

/* Starts listening on host:port (an IPv4 or IPv6 literal; port 0 picks a free
 * port, see ms_metrics_server_port). *h is copied; h->ctx must stay valid
 * until the server is closed. On failure returns NULL and writes e.g.
 * "127.0.0.1:9090: address already in use" into err (if errlen > 0); any
 * handle already created is being closed on the loop, so run the loop before
 * uv_loop_close. */
ms_metrics_server *ms_metrics_server_start(uv_loop_t *loop, const char *host, uint16_t port,
                                           const ms_metrics_handlers *h, char *err,
                                           size_t errlen);

/* The bound port (useful after port 0); 0 if it cannot be read. */
uint16_t ms_metrics_server_port(const ms_metrics_server *srv);

/* Number of open client connections (for tests and diagnostics). */
size_t ms_metrics_server_connections(const ms_metrics_server *srv);

/* Changes the idle timeout for connections accepted from now on (ms > 0). */
void ms_metrics_server_set_idle_timeout(ms_metrics_server *srv, uint64_t ms);

/* Stops listening and closes every connection (responses in flight are
 * dropped). on_closed(arg), if not NULL, runs on the loop once every handle
 * of the server is closed; srv is freed then and must not be used after this
 * call. */
void ms_metrics_server_close(ms_metrics_server *srv, void (*on_closed)(void *), void *arg);

#endif
