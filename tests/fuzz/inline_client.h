/* inline_client.h: what the fuzz targets that drive an inline data-plane
 * worker share (fuzz_http_request, fuzz_ws_frames, fuzz_proxy_diff,
 * fuzz_tls_conn, fuzz_hbay): the worker started from a manifest text, and
 * the client side: a socketpair handed to the worker, the input written as
 * fast as the worker reads it, the write side shut, and the loop run until
 * the server closes the connection. A connection that never closes is
 * reported as a hang. Also a listening Unix socket, for fake ships and
 * bays. */
#ifndef MS_FUZZ_INLINE_CLIENT_H
#define MS_FUZZ_INLINE_CLIENT_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/dataplane.h"
#include "manifest/manifest.h"
#include "router/table.h"
#include "util/diag.h"

/* An inline worker for the manifest text (relative paths from dir), with
 * hub (or NULL) for bays; *m and *routes are set. Any error aborts: the
 * harness itself is broken. */
static inline ms_dataplane *fuzz_inline_start_tls(const char *text, const char *dir,
                                                  ms_hub *(*make_hub)(const ms_manifest *),
                                                  struct ms_tls_server *(*make_tls)(const ms_manifest *),
                                                  ms_manifest **m, ms_route_table **routes);

static inline ms_dataplane *fuzz_inline_start(const char *text, const char *dir, ms_hub *(*make_hub)(const ms_manifest *),
                                              ms_manifest **m, ms_route_table **routes)
{
    return fuzz_inline_start_tls(text, dir, make_hub, NULL, m, routes);
}

/* The same, with make_tls (or NULL) for the SSL objects of TLS binds. */
static inline ms_dataplane *fuzz_inline_start_tls(const char *text, const char *dir,
                                                  ms_hub *(*make_hub)(const ms_manifest *),
                                                  struct ms_tls_server *(*make_tls)(const ms_manifest *),
                                                  ms_manifest **m, ms_route_table **routes)
{
    ms_diags d;
    ms_diags_init(&d, "fuzz.toml");
    *m = ms_manifest_load_buffer(text, strlen(text), "fuzz.toml", dir, &d);
    if (!*m) {
        ms_diags_print(&d, stderr);
        abort();
    }
    ms_diags_free(&d);
    *routes = ms_route_table_build(*m);
    ms_hub *hub = make_hub ? make_hub(*m) : NULL;
    if (!*routes || (make_hub && !hub))
        abort();
    char why[256];
    struct ms_tls_server *tls = make_tls ? make_tls(*m) : NULL;
    if (make_tls && !tls)
        abort();
    ms_dp_config cfg = { .m = *m, .routes = *routes, .inline_worker = true, .hub = hub, .tls = tls };
    ms_dataplane *dp = ms_dataplane_start(NULL, &cfg, why, sizeof why);
    if (!dp) {
        fprintf(stderr, "%s\n", why);
        abort();
    }
    return dp;
}

/* A non-blocking listening Unix socket at path (a stale file there goes);
 * any error aborts. */
static inline int fuzz_listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (fd < 0 || strlen(path) >= sizeof sa.sun_path)
        abort();
    strcpy(sa.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0)
        abort();
    return fd;
}

/* fuzz_inline_client, with hold (may be NULL) asked every round once the
 * data is all written: while it says true, the write side stays open. */
static inline void fuzz_inline_client_hold(ms_dataplane *dp, const void *prefix, size_t prefix_len,
                                           const uint8_t *data, size_t size, void (*turn)(void *), void *arg,
                                           bool (*hold)(void *arg, int round))
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (ms_dataplane_inline_adopt(dp, sv[0], 0) != 0)
        abort();
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    if (prefix_len && write(sv[1], prefix, prefix_len) != (ssize_t)prefix_len)
        abort();
    size_t sent = 0;
    bool shut = false, closed = false;
    char sink[65536];
    for (int round = 0; round < 20000 && !closed; round++) {
        if (sent < size) {
            ssize_t w = write(sv[1], data + sent, size - sent);
            if (w > 0)
                sent += (size_t)w;
        } else if (!shut && !(hold && hold(arg, round))) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        if (turn)
            turn(arg);
        for (;;) {
            ssize_t r = read(sv[1], sink, sizeof sink);
            if (r > 0)
                continue;
            if (r == 0)
                closed = true; /* the server closed the connection */
            break;
        }
    }
    if (!closed) {
        fprintf(stderr, "the connection did not close after the client's EOF\n");
        abort();
    }
    close(sv[1]);
    uv_run(loop, UV_RUN_NOWAIT); /* let close callbacks run */
}

/* prefix is written first (whole); turn (may be NULL) runs after every
 * loop iteration. */
static inline void fuzz_inline_client(ms_dataplane *dp, const void *prefix, size_t prefix_len, const uint8_t *data,
                                      size_t size, void (*turn)(void *), void *arg)
{
    fuzz_inline_client_hold(dp, prefix, prefix_len, data, size, turn, arg, NULL);
}

#endif
