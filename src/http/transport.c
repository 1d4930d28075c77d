/* transport.c: the socket transport (transport.h): a client's TCP or Unix
 * stream socket on libuv. Every write first tries the socket directly
 * (uv_try_write); what the socket does not take is copied into one request
 * for uv_write, so no write in flight ever points into the caller's
 * buffers, and the producer only has to pause for backpressure
 * (write_pending). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "http/transport.h"

typedef struct sock_xport {
    ms_xport x;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_shutdown_t shutdown_req;
    bool is_unix;
} sock_xport;

typedef struct wreq {
    uv_write_t req;
    sock_xport *sx;
    size_t len;
    char data[];
} wreq;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    sock_xport *sx = h->data;
    sx->x.cbs->alloc(sx->x.owner, suggested, b);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    sock_xport *sx = s->data;
    if (n == 0 || sx->x.closing)
        return;
    sx->x.cbs->read(sx->x.owner, n, b);
}

static int sock_read_start(ms_xport *x)
{
    sock_xport *sx = (sock_xport *)x;
    if (x->reading || x->closing)
        return 0;
    int rc = uv_read_start(&sx->io.s, on_alloc, on_read);
    if (rc == 0)
        x->reading = true;
    return rc;
}

static void sock_read_stop(ms_xport *x)
{
    sock_xport *sx = (sock_xport *)x;
    if (x->reading) {
        uv_read_stop(&sx->io.s);
        x->reading = false;
    }
}

static void on_write(uv_write_t *req, int status)
{
    wreq *r = (wreq *)req;
    sock_xport *sx = r->sx;
    assert(sx->x.writes_in_flight > 0 && sx->x.write_pending >= r->len);
    sx->x.write_pending -= r->len;
    sx->x.writes_in_flight--;
    free(r);
    if (!sx->x.closing) /* after close: only closed */
        sx->x.cbs->written(sx->x.owner, status);
}

/* Write what the socket will not take now: copied, queued behind anything in flight. */
static int queue_copy(sock_xport *sx, const uv_buf_t *bufs, unsigned n, size_t skip)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    total -= skip;
    if (total == 0)
        return 0;
    wreq *r = malloc(sizeof *r + total);
    if (!r)
        return UV_ENOMEM;
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        const char *d = bufs[i].base;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        d += skip;
        l -= skip;
        skip = 0;
        memcpy(r->data + off, d, l);
        off += l;
    }
    r->sx = sx;
    r->len = total;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)total);
    int rc = uv_write(&r->req, &sx->io.s, &b, 1, on_write);
    if (rc != 0) {
        free(r);
        return rc;
    }
    sx->x.write_pending += total;
    sx->x.writes_in_flight++;
    return 0;
}

static int sock_write(ms_xport *x, const uv_buf_t *bufs, unsigned n)
{
    sock_xport *sx = (sock_xport *)x;
    if (x->closing)
        return UV_ECANCELED;
    size_t written = 0;
    if (x->writes_in_flight == 0) {
        int w = uv_try_write(&sx->io.s, bufs, n);
        if (w > 0)
            written = (size_t)w;
        else if (w != UV_EAGAIN && w != UV_ENOSYS)
            return w;
    }
    return queue_copy(sx, bufs, n, written);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    sock_xport *sx = req->data;
    if (status < 0 && !sx->x.closing)
        sx->x.cbs->written(sx->x.owner, status);
}

static int sock_shutdown(ms_xport *x)
{
    sock_xport *sx = (sock_xport *)x;
    if (x->closing)
        return UV_ECANCELED;
    sx->shutdown_req.data = sx;
    return uv_shutdown(&sx->shutdown_req, &sx->io.s, on_shutdown);
}

static void on_closed(uv_handle_t *h)
{
    sock_xport *sx = h->data;
    assert(sx->x.writes_in_flight == 0);
    sx->x.cbs->closed(sx->x.owner);
    free(sx);
}

static void sock_close(ms_xport *x)
{
    sock_xport *sx = (sock_xport *)x;
    if (x->closing)
        return;
    x->closing = true;
    x->reading = false;
    uv_close(&sx->io.h, on_closed); /* writes in flight are cancelled first (written, status < 0) */
}

static int sock_fileno(const ms_xport *x)
{
    const sock_xport *sx = (const sock_xport *)x;
    uv_os_fd_t fd;
    if (uv_fileno(&sx->io.h, &fd) != 0)
        return -1;
    return fd;
}

static int sock_peer(const ms_xport *x, struct sockaddr_storage *ss)
{
    const sock_xport *sx = (const sock_xport *)x;
    if (sx->is_unix)
        return UV_ENOTSUP;
    int len = sizeof *ss;
    return uv_tcp_getpeername(&sx->io.tcp, (struct sockaddr *)ss, &len);
}

static const ms_xport_ops sock_ops = {
    .read_start = sock_read_start,
    .read_stop = sock_read_stop,
    .write = sock_write,
    .shutdown = sock_shutdown,
    .close = sock_close,
    .fileno = sock_fileno,
    .peer = sock_peer,
};

ms_xport *ms_xport_socket_new(uv_loop_t *loop, bool is_unix, const ms_xport_cbs *cbs, void *owner)
{
    sock_xport *sx = calloc(1, sizeof *sx);
    if (!sx)
        return NULL;
    int rc = is_unix ? uv_pipe_init(loop, &sx->io.pipe, 0) : uv_tcp_init(loop, &sx->io.tcp);
    if (rc != 0) {
        free(sx);
        return NULL;
    }
    sx->io.h.data = sx;
    sx->is_unix = is_unix;
    sx->x.ops = &sock_ops;
    sx->x.cbs = cbs;
    sx->x.owner = owner;
    return &sx->x;
}

int ms_xport_socket_accept(ms_xport *x, uv_stream_t *listener)
{
    sock_xport *sx = (sock_xport *)x;
    assert(x->ops == &sock_ops);
    int rc = uv_accept(listener, &sx->io.s);
    if (rc == 0 && !sx->is_unix)
        uv_tcp_nodelay(&sx->io.tcp, 1);
    return rc;
}

int ms_xport_socket_open(ms_xport *x, int fd)
{
    sock_xport *sx = (sock_xport *)x;
    assert(x->ops == &sock_ops);
    return sx->is_unix ? uv_pipe_open(&sx->io.pipe, fd) : uv_tcp_open(&sx->io.tcp, fd);
}

int ms_xport_peer_name(const ms_xport *x, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    int rc = ms_xport_peer(x, &ss);
    if (rc == UV_ENOTSUP) {
        snprintf(out, cap, "unix");
        return 0;
    }
    int port = 0;
    if (rc == 0 && ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, out, cap);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (rc == 0 && ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, cap);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (!out[0])
        snprintf(out, cap, "unknown");
    return port;
}
