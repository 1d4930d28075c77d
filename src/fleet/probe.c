/* probe.c: connect probes and protocol probes (see probe.h). What to send
 * and how to judge the answer is uplink/protocol.h's, in its READY mode:
 * the same code the uplink checks use, so the two cannot drift; this file
 * owns the socket, the deadline and the single callback. */
#include "fleet/probe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/protocol.h"

struct ms_probe {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } conn;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    ms_proto proto;
    char *req;           /* the request, until the probe is freed */
    size_t req_len;
    char rbuf[2048];
    int pending_closes;
    int connect_err;     /* a connect that failed before it started */
    bool done;           /* result delivered (or cancelled) */
    bool conn_open, timer_open;
    uint64_t timeout_ms;
    ms_probe_cb cb;
    void *arg;
};

bool ms_target_from_addr(const ms_addr *a, ms_target *t, char *why, size_t why_len)
{
    memset(t, 0, sizeof *t);
    if (a->kind == MS_ADDR_UNIX) {
        if (strlen(a->path) >= sizeof t->path) {
            snprintf(why, why_len, "socket path too long");
            return false;
        }
        t->is_unix = true;
        strcpy(t->path, a->path);
        snprintf(t->host_header, sizeof t->host_header, "localhost");
        return true;
    }
    const char *host = a->host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    struct sockaddr_in *s4 = (struct sockaddr_in *)&t->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->sa;
    if (uv_ip4_addr(host, a->port, s4) == 0) {
        snprintf(t->host_header, sizeof t->host_header, "%s:%u", host, a->port);
        return true;
    }
    if (uv_ip6_addr(host, a->port, s6) == 0) {
        snprintf(t->host_header, sizeof t->host_header, "[%s]:%u", host, a->port);
        return true;
    }
    /* a host name: resolve once (start-up, control plane) */
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(why, why_len, "cannot resolve %s: %s", host, gai_strerror(rc));
        return false;
    }
    memcpy(&t->sa, res->ai_addr, res->ai_addrlen);
    if (res->ai_family == AF_INET)
        s4->sin_port = htons(a->port);
    else
        s6->sin6_port = htons(a->port);
    freeaddrinfo(res);
    snprintf(t->host_header, sizeof t->host_header, "%s:%u", a->host, a->port);
    return true;
}

static void on_closed(uv_handle_t *h)
{
    ms_probe *p = h->data;
    if (--p->pending_closes == 0) {
        free(p->req);
        free(p);
    }
}

static void shut(ms_probe *p)
{
    if (p->conn_open) {
        p->conn_open = false;
        p->pending_closes++;
        uv_close(&p->conn.h, on_closed);
    }
    if (p->timer_open) {
        p->timer_open = false;
        p->pending_closes++;
        uv_close((uv_handle_t *)&p->timer, on_closed);
    }
}

static void finish(ms_probe *p, bool ok, const char *text)
{
    if (p->done)
        return;
    p->done = true;
    p->cb(p->arg, ok, p->proto.http_status, text);
    shut(p);
}

static void on_timeout(uv_timer_t *t)
{
    ms_probe *p = t->data;
    char msg[64];
    snprintf(msg, sizeof msg, "timed out after %llums", (unsigned long long)p->timeout_ms);
    finish(p, false, msg);
}

/* The connect failed at once (no route, no file descriptor left): said
 * from the loop, as any other failure, never from ms_probe_start. */
static void on_connect_failed(uv_timer_t *t)
{
    ms_probe *p = t->data;
    finish(p, false, uv_strerror(p->connect_err));
}

/* A verdict of the protocol judge, or nothing yet. */
static void judged(ms_probe *p, int r)
{
    if (r == MS_PROTO_UP)
        finish(p, true, p->proto.detail);
    else if (r == MS_PROTO_DOWN)
        finish(p, false, p->proto.error);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ms_probe *p = h->data;
    (void)suggested;
    *buf = uv_buf_init(p->rbuf, sizeof p->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ms_probe *p = s->data;
    if (p->done || n == 0)
        return;
    if (n == UV_EOF)
        judged(p, ms_proto_eof(&p->proto));
    else if (n < 0)
        finish(p, false, uv_strerror((int)n));
    else
        judged(p, ms_proto_feed(&p->proto, buf->base, (size_t)n));
}

static void on_write(uv_write_t *w, int status)
{
    ms_probe *p = w->data;
    if (status < 0 && !p->done && status != UV_ECANCELED)
        finish(p, false, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    ms_probe *p = req->data;
    if (p->done)
        return;
    if (status < 0) {
        finish(p, false, status == UV_ECONNREFUSED ? "connection refused"
                         : status == UV_ENOENT ? "socket does not exist" : uv_strerror(status));
        return;
    }
    if (p->proto.kind == MS_PROTO_TCP) {
        finish(p, true, "connected");
        return;
    }
    int rc = uv_read_start(&p->conn.s, on_alloc, on_read);
    if (rc == 0 && p->req) { /* else the server speaks first (mysql) */
        uv_buf_t b = uv_buf_init(p->req, (unsigned)p->req_len);
        p->write_req.data = p;
        rc = uv_write(&p->write_req, &p->conn.s, &b, 1, on_write);
    }
    if (rc < 0)
        finish(p, false, uv_strerror(rc));
}

static ms_proto_kind kind_of(const ms_health *check)
{
    if (!check)
        return MS_PROTO_TCP;
    switch (check->protocol) {
    case MS_HEALTH_HTTP: return MS_PROTO_HTTP;
    case MS_HEALTH_TCP: return MS_PROTO_TCP;
    case MS_HEALTH_POSTGRES: return MS_PROTO_POSTGRES;
    case MS_HEALTH_MYSQL: return MS_PROTO_MYSQL;
    case MS_HEALTH_REDIS: return MS_PROTO_REDIS;
    }
    return MS_PROTO_TCP;
}

ms_probe *ms_probe_start(uv_loop_t *loop, const ms_target *t, const ms_health *check, uint64_t timeout_ms,
                         ms_probe_cb cb, void *arg)
{
    ms_probe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cb = cb;
    p->arg = arg;
    p->timeout_ms = timeout_ms;
    ms_proto_init(&p->proto, kind_of(check), MS_PROTO_READY);
    p->req = ms_proto_request(&p->proto, t->host_header, check ? check->path : NULL, &p->req_len);
    if (!p->req && p->req_len) { /* out of memory */
        free(p);
        return NULL;
    }
    int rc = t->is_unix ? uv_pipe_init(loop, &p->conn.pipe, 0) : uv_tcp_init(loop, &p->conn.tcp);
    if (rc < 0) {
        free(p->req);
        free(p);
        return NULL;
    }
    p->conn.h.data = p;
    p->conn_open = true;
    rc = uv_timer_init(loop, &p->timer);
    if (rc < 0) {
        p->done = true;
        shut(p);
        return NULL;
    }
    p->timer.data = p;
    p->timer_open = true;
    p->connect_req.data = p;
    uv_timer_start(&p->timer, on_timeout, timeout_ms, 0);
    if (t->is_unix) {
        uv_pipe_connect(&p->connect_req, &p->conn.pipe, t->path, on_connect);
    } else {
        rc = uv_tcp_connect(&p->connect_req, &p->conn.tcp, (const struct sockaddr *)&t->sa, on_connect);
        if (rc < 0) {
            /* report asynchronously through the timer: the caller holds
             * the probe before its callback runs, as for any result */
            p->connect_err = rc;
            uv_timer_start(&p->timer, on_connect_failed, 0, 0);
        }
    }
    return p;
}

void ms_probe_cancel(ms_probe *p)
{
    if (!p)
        return;
    p->done = true;
    shut(p);
}
