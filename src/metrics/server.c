/* server.c: libuv glue of the metrics endpoint. See server.h.
 *
 * Each connection owns a TCP handle and an idle timer, a fixed read buffer
 * and one ms_metrics_session. States:
 *   READING  reading; bytes go to the session until it has a response;
 *   WRITING  reading stopped, one uv_write in flight (head + body);
 *   LINGER   after a response that ends the connection: FIN sent with
 *            uv_shutdown, further input discarded until EOF or a short
 *            timer, so unread client bytes do not turn the close into a RST
 *            that could destroy the response;
 *   CLOSING  both handles being closed; freed when the last one is.
 * The idle timer is (re)started at accept, when a response starts being
 * written and when it has been written; it is not pushed back by partial
 * input, so a client trickling bytes is cut off too.
 */
#include "metrics/server.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE 4096u
#define LINGER_MS 2000u
#define KEEP_BODY_MAX ((size_t)64 * 1024) /* larger body buffers are freed after a write */

typedef enum conn_state { C_READING, C_WRITING, C_LINGER, C_CLOSING } conn_state;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    ms_metrics_server *srv;
    struct conn *prev, *next;
    conn_state state;
    int open_handles;   /* handles initialised and not yet closed */
    bool reading;
    bool close_after_write;
    size_t rpos, rlen;  /* unprocessed input: rbuf[rpos..rlen) */
    ms_metrics_session sess;
    ms_metrics_response resp;
    char rbuf[READ_BUF_SIZE];
} conn;

struct ms_metrics_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    ms_metrics_handlers h;
    conn *conns;
    size_t nconns;
    size_t live;          /* listener + conns + rejected handles not yet closed */
    uint64_t idle_ms;
    bool closing;
    bool accept_pending;  /* a connection waits for uv_accept (out of memory earlier) */
    void (*on_closed)(void *);
    void *on_closed_arg;
    char addr[80];
};

static void on_connection(uv_stream_t *listener, int status);

/* ---- teardown ---- */

static void maybe_finish(ms_metrics_server *srv)
{
    if (!srv->closing || srv->live > 0)
        return;
    void (*cb)(void *) = srv->on_closed;
    void *arg = srv->on_closed_arg;
    free(srv);
    if (cb)
        cb(arg);
}

/* After a handle went away: retry an accept that failed for lack of memory. */
static void retry_accept(ms_metrics_server *srv)
{
    if (srv->accept_pending && !srv->closing) {
        srv->accept_pending = false;
        on_connection((uv_stream_t *)&srv->listener, 0);
    }
}

static void on_conn_handle_closed(uv_handle_t *handle)
{
    conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    ms_metrics_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    srv->live--;
    ms_metrics_response_free(&c->resp);
    free(c);
    retry_accept(srv);
    maybe_finish(srv);
}

static void conn_close(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    c->reading = false;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_reject_closed(uv_handle_t *handle)
{
    ms_metrics_server *srv = handle->data;
    free(handle);
    srv->live--;
    retry_accept(srv);
    maybe_finish(srv);
}

static void on_listener_closed(uv_handle_t *handle)
{
    ms_metrics_server *srv = handle->data;
    srv->live--;
    maybe_finish(srv);
}

/* ---- timers ---- */

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static bool arm_timer(conn *c, uint64_t ms)
{
    if (uv_timer_start(&c->timer, on_timeout, ms, 0) != 0) {
        conn_close(c);
        return false;
    }
    return true;
}

/* ---- reading and writing ---- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = handle->data;
    buf->base = c->rbuf + c->rlen;
    buf->len = READ_BUF_SIZE - c->rlen;
}

static void process(conn *c);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (c->state == C_CLOSING)
        return;
    if (status < 0)
        conn_close(c);
}

static void start_linger(conn *c)
{
    c->state = C_LINGER;
    c->rpos = c->rlen = 0;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uint64_t ms = c->srv->idle_ms < LINGER_MS ? c->srv->idle_ms : LINGER_MS;
    if (!arm_timer(c, ms))
        return;
    process(c); /* restarts reading; input is discarded in LINGER */
}

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->resp.body.cap > KEEP_BODY_MAX)
        ms_buf_free(&c->resp.body);
    if (c->close_after_write) {
        start_linger(c);
        return;
    }
    c->state = C_READING;
    if (!arm_timer(c, c->srv->idle_ms))
        return;
    process(c);
}

static void send_response(conn *c)
{
    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init(c->resp.head.data, (unsigned)c->resp.head.len);
    if (c->resp.body.len > 0)
        bufs[n++] = uv_buf_init(c->resp.body.data, (unsigned)c->resp.body.len);
    if (c->resp.head.len == 0) {
        conn_close(c);
        return;
    }
    c->state = C_WRITING;
    c->wreq.data = c;
    if (!arm_timer(c, c->srv->idle_ms))
        return;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write) != 0)
        conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = stream->data;
    if (c->state == C_CLOSING || nread == 0)
        return;
    if (nread < 0) {
        conn_close(c); /* EOF or error; in READING a partial request is dropped */
        return;
    }
    if (c->state == C_LINGER)
        return; /* discard */
    c->rlen += (size_t)nread;
    process(c);
}

/* Feeds unprocessed input to the session; starts a write when a response is
 * ready, otherwise makes sure the connection is reading. */
static void process(conn *c)
{
    if (c->state == C_READING) {
        while (c->rpos < c->rlen) {
            size_t used = 0;
            ms_metrics_action act = ms_metrics_session_feed(
                &c->sess, &c->srv->h, c->rbuf + c->rpos, c->rlen - c->rpos, &used, &c->resp);
            c->rpos += used;
            if (c->state == C_CLOSING)
                return; /* a handler closed the server */
            if (act == MS_METRICS_NEED_MORE)
                continue;
            c->close_after_write = act == MS_METRICS_RESPOND_CLOSE;
            if (c->reading) {
                if (uv_read_stop((uv_stream_t *)&c->tcp) != 0) {
                    conn_close(c);
                    return;
                }
                c->reading = false;
            }
            send_response(c);
            return;
        }
        c->rpos = c->rlen = 0;
    }
    if (!c->reading && (c->state == C_READING || c->state == C_LINGER)) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    }
}

/* ---- accepting ---- */

/* Accepts the pending connection only to close it. */
static void reject(ms_metrics_server *srv)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) {
        srv->accept_pending = true;
        return;
    }
    if (uv_tcp_init(srv->loop, t) != 0) {
        free(t);
        srv->accept_pending = true;
        return;
    }
    t->data = srv;
    srv->live++;
    (void)uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t); /* closed either way */
    uv_close((uv_handle_t *)t, on_reject_closed);
}

static void on_connection(uv_stream_t *listener, int status)
{
    ms_metrics_server *srv = listener->data;
    if (status < 0 || srv->closing)
        return;
    if (srv->nconns >= MS_METRICS_MAX_CONNECTIONS) {
        reject(srv);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        reject(srv);
        return;
    }
    c->srv = srv;
    c->state = C_READING;
    ms_metrics_session_init(&c->sess);
    ms_metrics_response_init(&c->resp);
    if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
        free(c);
        reject(srv);
        return;
    }
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 1;
    /* Linked in from here on: conn_close frees it through the close callbacks. */
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->live++;
    if (uv_timer_init(srv->loop, &c->timer) != 0) {
        /* Mark the timer closed so conn_close only closes the TCP handle. */
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        srv->accept_pending = true;
        return;
    }
    c->open_handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (!arm_timer(c, srv->idle_ms))
        return;
    process(c);
}

/* ---- public API ---- */

static void set_err(char *err, size_t errlen, const char *fmt, const char *addr, const char *msg)
{
    if (err && errlen > 0)
        snprintf(err, errlen, fmt, addr, msg);
}

ms_metrics_server *ms_metrics_server_start(uv_loop_t *loop, const char *host, uint16_t port,
                                           const ms_metrics_handlers *h, char *err,
                                           size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    if (!host)
        host = "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    char addr[80];
    snprintf(addr, sizeof addr, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);

    struct sockaddr_storage ss;
    int r = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
               : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (r != 0) {
        set_err(err, errlen, "%s: %s", addr, "not an IPv4 or IPv6 address");
        return NULL;
    }

    ms_metrics_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        set_err(err, errlen, "%s: %s", addr, "out of memory");
        return NULL;
    }
    srv->loop = loop;
    if (h)
        srv->h = *h;
    srv->idle_ms = MS_METRICS_IDLE_TIMEOUT_MS;
    memcpy(srv->addr, addr, sizeof addr);

    r = uv_tcp_init(loop, &srv->listener);
    if (r != 0) {
        set_err(err, errlen, "%s: %s", addr, uv_strerror(r));
        free(srv);
        return NULL;
    }
    srv->listener.data = srv;
    srv->live = 1;
    r = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (r != 0) {
        set_err(err, errlen, "%s: %s", addr, uv_strerror(r));
        srv->closing = true;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        return NULL;
    }
    return srv;
}

uint16_t ms_metrics_server_port(const ms_metrics_server *srv)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

size_t ms_metrics_server_connections(const ms_metrics_server *srv)
{
    return srv->nconns;
}

void ms_metrics_server_set_idle_timeout(ms_metrics_server *srv, uint64_t ms)
{
    if (ms > 0)
        srv->idle_ms = ms;
}

void ms_metrics_server_close(ms_metrics_server *srv, void (*on_closed)(void *), void *arg)
{
    if (srv->closing)
        return;
    srv->closing = true;
    srv->on_closed = on_closed;
    srv->on_closed_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    for (conn *c = srv->conns; c; c = c->next)
        conn_close(c);
}
