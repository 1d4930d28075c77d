/* probe.h: one-shot checks of a ship's listener on the control loop: "does
 * it accept a connection?" (readiness without a healthcheck) and the
 * healthcheck's protocol check: "does GET <path> answer 2xx/3xx?", "does
 * postgres ask for authentication?", redis PING, the mysql greeting
 * (readiness and health checks; judged by uplink/protocol.h in its READY
 * mode). Each probe has a deadline, owns its handles, and calls back
 * exactly once unless cancelled. */
#ifndef MS_FLEET_PROBE_H
#define MS_FLEET_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "manifest/manifest.h"

/* Where a ship listens, resolved once: a TCP socket address or a Unix path. */
typedef struct ms_target {
    bool is_unix;
    struct sockaddr_storage sa;
    char path[108];
    char host_header[300];   /* "127.0.0.1:3000" or "localhost" */
} ms_target;

/* Resolve a bind address for connecting: wildcards become loopback. */
bool ms_target_from_addr(const ms_addr *a, ms_target *t, char *why, size_t why_len);

/* ok: the check passed (connected; HTTP status 200-399; postgres asked for
 * authentication; ...). status: the HTTP status or 0. text: when ok, what
 * proved it ("connected", "HTTP 200", "+PONG", "mysql 8.0.36"); else a short
 * reason ("connection refused", "timed out after 2000ms", "HTTP 503", "not
 * ready: the database system is starting up (57P03)"). */
typedef void (*ms_probe_cb)(void *arg, bool ok, int status, const char *text);

typedef struct ms_probe ms_probe;

/* check NULL: connect only; else the healthcheck's protocol (and path, for
 * http). Returns NULL (and calls nothing) on OOM. */
ms_probe *ms_probe_start(uv_loop_t *loop, const ms_target *t, const ms_health *check, uint64_t timeout_ms,
                         ms_probe_cb cb, void *arg);
/* The callback will not be called; handles close in the background. */
void ms_probe_cancel(ms_probe *p);

#endif
