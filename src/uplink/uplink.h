/* uplink.h: asynchronous checks of a manifest's uplinks (external
 * dependencies: databases, caches, HTTP services) on a libuv loop. Used by
 * `mothership preflight` (src/cli/preflight.c) and by the fleet launcher
 * before it launches anything.
 *
 * What a check does, per scheme (the whole check, DNS included, is bounded
 * by the uplink's timeout, default 5s):
 *   tcp, memgraph, neo4j   TCP connect
 *   redis                  "PING\r\n"; any well-formed RESP reply is up (+PONG,
 *                          and also -NOAUTH/-DENIED: a live redis answered);
 *                          rediss:// does the same over TLS
 *   postgres               SSLRequest; the server answers one byte, 'S' or 'N'
 *   mysql                  reads the server's initial handshake (protocol 10)
 *   http, https            GET <path> (HTTP/1.1, Connection: close); 2xx-3xx is
 *                          up; https verifies the certificate against the
 *                          system store and the host name (SNI is sent)
 * Names resolve asynchronously (uv_getaddrinfo); every address is tried in
 * turn until one connects. Uplinks with the same host:port (host compared
 * without case) are checked once: the first such uplink's scheme, path and
 * the largest timeout and wait of the group are used, and every other member
 * gets a copy of the result with same_as naming the first. All checks run in
 * parallel. With wait > 0 a down result is retried with exponential backoff
 * (250ms, doubling, at most 5s between attempts) until it is up or `wait` has
 * passed since checking began. */
#ifndef MS_UPLINK_H
#define MS_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "manifest/manifest.h"

/* same_as of a result whose check was its own. */
#define MS_UPLINK_OWN ((size_t)-1)

typedef struct ms_uplink_result {
    const ms_uplink *uplink; /* the entry this result is for */
    bool up;
    uint64_t elapsed_ms;     /* from the start of checking until the final result */
    unsigned attempts;       /* >= 1; more than 1 only with wait */
    size_t same_as;          /* MS_UPLINK_OWN, or the index of the uplink whose
                                check this result shares (deduplicated) */
    char address[300];       /* "scheme://host:port" ("[::1]" for IPv6) */
    char detail[200];        /* up: what proved it ("connected", "HTTP 200",
                                "+PONG", "mysql 8.0.36", ...) */
    char error[300];         /* down: why ("connection refused", "timed out
                                after 5000ms", "DNS: Name or service not known",
                                "HTTP 503", "certificate verify failed: ...");
                                "" when up */
} ms_uplink_result;

/* Called once, on the loop, when every check has its final result and every
 * handle the checks opened is closed. results[i] is for uplinks[i]; the
 * array is valid only during the call. The run is freed when the callback
 * returns. */
typedef void (*ms_uplink_done_cb)(const ms_uplink_result *results, size_t n, void *arg);

typedef struct ms_uplink_run ms_uplink_run;

/* Start checking uplinks[0..n) on loop. The uplinks array must stay valid
 * until cb has run. Never calls cb before returning (n == 0 included: cb
 * runs on the next loop iteration with no results). Returns 0, or a negative
 * libuv error code (UV_ENOMEM, ...) when nothing could be started; then cb
 * is never called. *run_out (may be NULL) receives a handle for
 * ms_uplink_cancel, valid until cb starts. */
int ms_uplink_check_all(uv_loop_t *loop, const ms_uplink *uplinks, size_t n,
                        ms_uplink_done_cb cb, void *arg, ms_uplink_run **run_out);

/* Stop every check still running: each gets a final "cancelled" down result
 * and cb is called once their handles are closed (on a later iteration).
 * Only between ms_uplink_check_all and the start of cb. */
void ms_uplink_cancel(ms_uplink_run *run);

/* One line a user can act on, for a down result:
 *   uplink "db" (postgres://db.internal:5432) is down: connection refused
 * (with ", after N attempts" when it waited). Returns the length it wanted
 * (as snprintf). */
int ms_uplink_describe_down(const ms_uplink_result *r, char *buf, size_t len);

/* ---------------------------------------------------------------- launch gate
 * For the fleet launcher: check every uplink and report the verdict. `ok` is
 * true when all are up; otherwise `message` holds one ms_uplink_describe_down
 * line per down uplink (deduplicated ones included), separated by '\n', to
 * print before exiting 1. The results are passed too (valid only during the
 * call). Same rules and return value as ms_uplink_check_all. */
typedef void (*ms_uplink_gate_cb)(bool ok, const char *message, const ms_uplink_result *results,
                                  size_t n, void *arg);

int ms_uplink_gate(uv_loop_t *loop, const ms_uplink *uplinks, size_t n, ms_uplink_gate_cb cb,
                   void *arg, ms_uplink_run **run_out);

/* "scheme://host:port" of an uplink, IPv6 hosts in brackets, "rediss" for
 * redis over TLS. Returns the length it wanted (as snprintf). */
int ms_uplink_address(const ms_uplink *u, char *buf, size_t len);

#endif
