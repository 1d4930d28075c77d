/* uplink.c: the asynchronous uplink checker (API in uplink.h). One run
 * checks a manifest's uplinks on a libuv loop: uplinks are grouped by
 * scheme, host and port into probes (deduplication), every probe runs in parallel:
 * resolve (uv_getaddrinfo), connect to each address in turn, then the
 * scheme's protocol exchange (protocol.h, LIVE mode), over TLS for https/rediss
 * (tls.c). A per-attempt timer bounds DNS + connect + protocol; with wait,
 * the same timer spaces retries with exponential backoff. The run's callback
 * fires once every probe has its verdict and every handle it opened is
 * closed, so the caller may free the uplinks and close the loop right after.
 *
 * Lifetimes: a probe owns one uv_timer_t (open from start to verdict) and at
 * most one conn (a uv_tcp_t, freed in its close callback). A pending
 * getaddrinfo request cannot be taken back once the thread pool runs it, so
 * on timeout it is detached (its data set to NULL) and frees itself when it
 * completes. run->live counts open handles plus probes without a verdict;
 * the callback runs when it drops to zero. */
#include "uplink/uplink.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "uplink/uplink_impl.h"

#define BACKOFF_START_MS 250
#define BACKOFF_MAX_MS 5000
#define READ_CHUNK 4096

typedef struct probe probe;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    ms_uplink_run *run;
    probe *p;            /* NULL once closing */
    ms_tls *tls;
    bool handshaking;
    ms_proto proto;
    char rbuf[READ_CHUNK];
    char plain[READ_CHUNK];
} conn;

struct probe {
    ms_uplink_run *run;
    size_t first;        /* index of the uplink that owns this check */
    const ms_uplink *u;
    ms_proto_kind kind;
    bool tls;
    char portstr[8];
    uint64_t timeout_ms, wait_ms;
    uint64_t backoff_ms;
    unsigned attempts;
    bool waiting;        /* the timer is a backoff delay, not a timeout */
    bool final, up;
    uv_timer_t timer;
    uv_getaddrinfo_t *gai;
    struct addrinfo *ai, *ai_next;
    conn *c;
    char last_error[300];
    char detail[200];
    char error[300];
    uint64_t elapsed_ms;
};

struct ms_uplink_run {
    uv_loop_t *loop;
    const ms_uplink *uplinks;
    size_t n;
    size_t *probe_of;    /* uplink index -> probe index */
    probe *probes;
    size_t nprobes;
    ms_uplink_result *results;
    uv_timer_t kick;     /* keeps the callback off the caller's stack for n == 0 */
    size_t live;
    uint64_t start;
    bool cancelled;
    SSL_CTX *ssl_ctx;
    ms_uplink_done_cb cb;
    void *arg;
};

static void attempt_start(probe *p);
static void attempt_end(probe *p, bool up, const char *text);
static void try_next_address(probe *p);

/* ---------------------------------------------------------------- helpers */
static bool is_tls_uplink(const ms_uplink *u)
{
    if (strcmp(u->scheme, "https") == 0)
        return true;
    return strcmp(u->scheme, "redis") == 0 && u->url && strncasecmp(u->url, "rediss://", 9) == 0;
}

int ms_uplink_address(const ms_uplink *u, char *buf, size_t len)
{
    const char *scheme = is_tls_uplink(u) && strcmp(u->scheme, "redis") == 0 ? "rediss" : u->scheme;
    bool v6 = u->host && strchr(u->host, ':') != NULL;
    return snprintf(buf, len, "%s://%s%s%s:%u", scheme ? scheme : "?", v6 ? "[" : "",
                    u->host ? u->host : "?", v6 ? "]" : "", (unsigned)u->port);
}

int ms_uplink_describe_down(const ms_uplink_result *r, char *buf, size_t len)
{
    char att[48] = "";
    if (r->attempts > 1)
        snprintf(att, sizeof att, ", after %u attempts", r->attempts);
    /* cppcheck-suppress nullPointer ; buf may be NULL with len 0: snprintf then only measures */
    return snprintf(buf, len, "uplink \"%s\" (%s) is down: %s%s",
                    r->uplink && r->uplink->name ? r->uplink->name : "?", r->address,
                    r->error[0] ? r->error : "unknown error", att);
}

const char *ms_uplink_dns_reason(int status)
{
    int e = 0;
    switch (status) {
    case UV_EAI_NONAME: e = EAI_NONAME; break;
    case UV_EAI_AGAIN: e = EAI_AGAIN; break;
    case UV_EAI_FAIL: e = EAI_FAIL; break;
    case UV_EAI_FAMILY: e = EAI_FAMILY; break;
    case UV_EAI_MEMORY: e = EAI_MEMORY; break;
    case UV_EAI_SERVICE: e = EAI_SERVICE; break;
#ifdef EAI_NODATA
    case UV_EAI_NODATA: e = EAI_NODATA; break;
#endif
#ifdef EAI_ADDRFAMILY
    case UV_EAI_ADDRFAMILY: e = EAI_ADDRFAMILY; break;
#endif
    default: break;
    }
    return e ? gai_strerror(e) : uv_strerror(status);
}

static void run_unref(ms_uplink_run *run);

/* ---------------------------------------------------------------- connections */
static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    ms_uplink_run *run = c->run;
    free(c);
    run_unref(run);
}

static void conn_close(conn *c)
{
    if (!c)
        return;
    if (c->p) {
        c->p->c = NULL;
        c->p = NULL;
    }
    ms_tls_free(c->tls);
    c->tls = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

typedef struct wreq {
    uv_write_t req;
    char data[];
} wreq;

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    free(req);
    if (status < 0 && c->p) {
        char why[200];
        snprintf(why, sizeof why, "sending: %s", uv_strerror(status));
        attempt_end(c->p, false, why);
    }
}

/* Queue bytes on the socket (copied). False after ending the attempt. */
static bool conn_send_raw(conn *c, const char *data, size_t n)
{
    if (n == 0)
        return true;
    wreq *w = malloc(sizeof *w + n);
    if (!w) {
        attempt_end(c->p, false, "out of memory");
        return false;
    }
    memcpy(w->data, data, n);
    w->req.data = c;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        char why[200];
        snprintf(why, sizeof why, "sending: %s", uv_strerror(rc));
        attempt_end(c->p, false, why);
        return false;
    }
    return true;
}

/* Send whatever OpenSSL has produced. */
static bool conn_flush_tls(conn *c)
{
    char *out = NULL;
    long n = ms_tls_take_output(c->tls, &out);
    if (n < 0) {
        attempt_end(c->p, false, "out of memory");
        return false;
    }
    if (n == 0)
        return true;
    /* conn_send_raw copies: one extra copy of a few KiB, simpler ownership */
    bool ok = conn_send_raw(c, out, (size_t)n);
    free(out);
    return ok;
}

/* A protocol verdict (or nothing yet). Returns true if the attempt ended. */
static bool conn_verdict(conn *c, int r)
{
    if (r == MS_PROTO_MORE)
        return false;
    probe *p = c->p;
    if (r == MS_PROTO_UP)
        attempt_end(p, true, c->proto.detail);
    else
        attempt_end(p, false, c->proto.error);
    return true;
}

/* Connected (and TLS established): send the scheme's request. */
static void conn_begin_protocol(conn *c)
{
    probe *p = c->p;
    if (p->kind == MS_PROTO_TCP) {
        attempt_end(p, true, p->tls ? "connected (TLS)" : "connected");
        return;
    }
    size_t len = 0;
    char host_header[300];
    ms_proto_host_header(p->u->host, p->u->port, p->tls, host_header, sizeof host_header);
    char *req = ms_proto_request(&c->proto, host_header, p->u->path, &len);
    if (!req) {
        if (len)
            attempt_end(p, false, "out of memory");
        return; /* server speaks first */
    }
    if (c->tls) {
        char why[300];
        bool ok = ms_tls_write(c->tls, req, len, why, sizeof why);
        free(req);
        if (!ok) {
            attempt_end(p, false, why);
            return;
        }
        conn_flush_tls(c);
        return;
    }
    conn_send_raw(c, req, len);
    free(req);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void conn_on_eof(conn *c)
{
    if (c->tls && c->handshaking) {
        attempt_end(c->p, false, "connection closed during the TLS handshake");
        return;
    }
    conn_verdict(c, ms_proto_eof(&c->proto));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (!c->p || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            conn_on_eof(c);
        } else {
            char why[200];
            snprintf(why, sizeof why, "%s", uv_strerror((int)nread));
            attempt_end(c->p, false, why);
        }
        return;
    }
    if (!c->tls) {
        conn_verdict(c, ms_proto_feed(&c->proto, buf->base, (size_t)nread));
        return;
    }
    char why[300];
    if (!ms_tls_feed(c->tls, buf->base, (size_t)nread)) {
        attempt_end(c->p, false, "out of memory");
        return;
    }
    if (c->handshaking) {
        int h = ms_tls_handshake(c->tls, why, sizeof why);
        if (!conn_flush_tls(c))
            return;
        if (h < 0) {
            attempt_end(c->p, false, why);
            return;
        }
        if (h == 0)
            return;
        c->handshaking = false;
        conn_begin_protocol(c);
        if (!c->p)
            return;
    }
    for (;;) {
        int r = ms_tls_read(c->tls, c->plain, sizeof c->plain, why, sizeof why);
        if (r == 0)
            break;
        if (r == -2) {
            conn_on_eof(c);
            return;
        }
        if (r < 0) {
            attempt_end(c->p, false, why);
            return;
        }
        if (conn_verdict(c, ms_proto_feed(&c->proto, c->plain, (size_t)r)))
            return;
    }
    conn_flush_tls(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->handle->data;
    probe *p = c->p;
    if (!p)
        return; /* closed by a timeout or a cancel */
    if (status < 0) {
        snprintf(p->last_error, sizeof p->last_error, "%s", uv_strerror(status));
        conn_close(c);
        try_next_address(p);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        attempt_end(p, false, uv_strerror(rc));
        return;
    }
    if (p->tls) {
        char why[300];
        if (!p->run->ssl_ctx) {
            p->run->ssl_ctx = ms_tls_client_ctx(why, sizeof why);
            if (!p->run->ssl_ctx) {
                attempt_end(p, false, why);
                return;
            }
        }
        c->tls = ms_tls_new(p->run->ssl_ctx, p->u->host, why, sizeof why);
        if (!c->tls) {
            attempt_end(p, false, why);
            return;
        }
        c->handshaking = true;
        int h = ms_tls_handshake(c->tls, why, sizeof why);
        if (!conn_flush_tls(c))
            return;
        if (h < 0)
            attempt_end(p, false, why);
        return;
    }
    conn_begin_protocol(c);
}

static void try_next_address(probe *p)
{
    while (p->ai_next) {
        struct addrinfo *ai = p->ai_next;
        p->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            attempt_end(p, false, "out of memory");
            return;
        }
        int rc = uv_tcp_init(p->run->loop, &c->tcp);
        if (rc < 0) {
            free(c);
            snprintf(p->last_error, sizeof p->last_error, "%s", uv_strerror(rc));
            continue;
        }
        p->run->live++;
        c->tcp.data = c;
        c->run = p->run; /* for on_conn_closed, when p may be final */
        c->p = p;
        p->c = c;
        ms_proto_init(&c->proto, p->kind, MS_PROTO_LIVE);
        rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect);
        if (rc < 0) {
            snprintf(p->last_error, sizeof p->last_error, "%s", uv_strerror(rc));
            conn_close(c);
            continue;
        }
        return;
    }
    attempt_end(p, false, p->last_error[0] ? p->last_error : "no usable address");
}

/* ---------------------------------------------------------------- DNS */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    probe *p = req->data;
    free(req);
    if (!p) { /* detached after a timeout or cancel */
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    p->gai = NULL;
    if (status < 0) {
        char why[300];
        snprintf(why, sizeof why, "DNS: %s", ms_uplink_dns_reason(status));
        if (res)
            uv_freeaddrinfo(res);
        attempt_end(p, false, why);
        return;
    }
    p->ai = res;
    p->ai_next = res;
    p->last_error[0] = '\0';
    try_next_address(p);
}

/* ---------------------------------------------------------------- attempts */
static void on_timer(uv_timer_t *t);

static void attempt_start(probe *p)
{
    ms_uplink_run *run = p->run;
    p->attempts++;
    p->waiting = false;
    p->last_error[0] = '\0';
    uv_timer_start(&p->timer, on_timer, p->timeout_ms, 0);
    uv_getaddrinfo_t *req = calloc(1, sizeof *req);
    if (!req) {
        attempt_end(p, false, "out of memory");
        return;
    }
    req->data = p;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    p->gai = req;
    int rc = uv_getaddrinfo(run->loop, req, on_resolved, p->u->host, p->portstr, &hints);
    if (rc < 0) {
        p->gai = NULL;
        free(req);
        char why[300];
        snprintf(why, sizeof why, "DNS: %s", ms_uplink_dns_reason(rc));
        attempt_end(p, false, why);
    }
}

static void on_probe_timer_closed(uv_handle_t *h)
{
    probe *p = h->data;
    run_unref(p->run);
}

static void probe_final(probe *p, bool up, const char *text)
{
    ms_uplink_run *run = p->run;
    p->final = true;
    p->up = up;
    p->elapsed_ms = uv_now(run->loop) - run->start;
    if (up)
        snprintf(p->detail, sizeof p->detail, "%s", text ? text : "");
    else
        snprintf(p->error, sizeof p->error, "%s", text && *text ? text : "unknown error");
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_probe_timer_closed);
    run_unref(run); /* the probe's verdict */
}

/* End the current attempt: release its resources, then retry or conclude. */
static void attempt_end(probe *p, bool up, const char *text)
{
    ms_uplink_run *run = p->run;
    if (p->final)
        return;
    uv_timer_stop(&p->timer);
    if (p->gai) {
        uv_cancel((uv_req_t *)p->gai); /* a no-op once running; it frees itself either way */
        p->gai->data = NULL;
        p->gai = NULL;
    }
    /* copy the text first: it may live in the conn we are about to close */
    char msg[300];
    snprintf(msg, sizeof msg, "%s", text ? text : "");
    conn_close(p->c);
    if (p->ai) {
        uv_freeaddrinfo(p->ai);
        p->ai = p->ai_next = NULL;
    }
    if (up || run->cancelled) {
        probe_final(p, up, msg);
        return;
    }
    uint64_t now = uv_now(run->loop);
    uint64_t spent = now - run->start;
    if (p->wait_ms == 0 || spent >= p->wait_ms) {
        probe_final(p, false, msg);
        return;
    }
    snprintf(p->error, sizeof p->error, "%s", msg); /* shown if cancelled while waiting */
    uint64_t delay = p->backoff_ms;
    if (delay > p->wait_ms - spent)
        delay = p->wait_ms - spent;
    p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
    p->waiting = true;
    uv_timer_start(&p->timer, on_timer, delay, 0);
}

static void on_timer(uv_timer_t *t)
{
    probe *p = t->data;
    if (p->waiting) {
        attempt_start(p);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "timed out after %llums", (unsigned long long)p->timeout_ms);
    attempt_end(p, false, why);
}

/* ---------------------------------------------------------------- the run */
static void run_deliver(ms_uplink_run *run)
{
    for (size_t i = 0; run->cb && i < run->n; i++) {
        ms_uplink_result *r = &run->results[i];
        const probe *p = &run->probes[run->probe_of[i]];
        memset(r, 0, sizeof *r);
        r->uplink = &run->uplinks[i];
        r->up = p->up;
        r->elapsed_ms = p->elapsed_ms;
        r->attempts = p->attempts ? p->attempts : 1;
        r->same_as = p->first == i ? MS_UPLINK_OWN : p->first;
        ms_uplink_address(r->uplink, r->address, sizeof r->address);
        if (p->up)
            snprintf(r->detail, sizeof r->detail, "%s", p->detail);
        else
            snprintf(r->error, sizeof r->error, "%s", p->error);
    }
    if (run->cb)
        run->cb(run->results, run->n, run->arg);
    if (run->ssl_ctx)
        SSL_CTX_free(run->ssl_ctx);
    free(run->results);
    free(run->probes);
    free(run->probe_of);
    free(run);
}

static void run_unref(ms_uplink_run *run)
{
    if (--run->live == 0)
        run_deliver(run);
}

static void on_kick_closed(uv_handle_t *h)
{
    run_unref(h->data);
}

/* One probe serves uplinks of the same scheme (TLS or not, as rediss is
 * not redis), host and port: the check is the scheme's own exchange, so a
 * redis:// and an http:// on one port are two checks. */
static bool same_target(const ms_uplink *a, const ms_uplink *b)
{
    return a->port == b->port && strcasecmp(a->host, b->host) == 0 && strcmp(a->scheme, b->scheme) == 0 &&
           is_tls_uplink(a) == is_tls_uplink(b);
}

int ms_uplink_check_all(uv_loop_t *loop, const ms_uplink *uplinks, size_t n,
                        ms_uplink_done_cb cb, void *arg, ms_uplink_run **run_out)
{
    if (run_out)
        *run_out = NULL;
    if (!loop || !cb || (n && !uplinks))
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!uplinks[i].host || !uplinks[i].scheme || !uplinks[i].port)
            return UV_EINVAL;
    ms_uplink_run *run = calloc(1, sizeof *run);
    if (!run)
        return UV_ENOMEM;
    run->loop = loop;
    run->uplinks = uplinks;
    run->n = n;
    run->cb = cb;
    run->arg = arg;
    size_t cnt = n ? n : 1;
    run->probe_of = calloc(cnt, sizeof *run->probe_of);
    run->probes = calloc(cnt, sizeof *run->probes);
    run->results = calloc(cnt, sizeof *run->results);
    if (!run->probe_of || !run->probes || !run->results) {
        free(run->probe_of);
        free(run->probes);
        free(run->results);
        free(run);
        return UV_ENOMEM;
    }
    /* group by scheme, host and port; the group takes the largest timeout and wait */
    for (size_t i = 0; i < n; i++) {
        size_t k = run->nprobes;
        for (size_t j = 0; j < run->nprobes; j++)
            if (same_target(run->probes[j].u, &uplinks[i]))
                k = j;
        run->probe_of[i] = k;
        probe *p = &run->probes[k];
        if (k == run->nprobes) {
            run->nprobes++;
            p->run = run;
            p->first = i;
            p->u = &uplinks[i];
            p->kind = ms_proto_kind_for(uplinks[i].scheme);
            p->tls = is_tls_uplink(&uplinks[i]);
            snprintf(p->portstr, sizeof p->portstr, "%u", (unsigned)uplinks[i].port);
            p->backoff_ms = BACKOFF_START_MS;
        }
        if (uplinks[i].timeout_ms > p->timeout_ms)
            p->timeout_ms = uplinks[i].timeout_ms;
        if (uplinks[i].wait_ms > p->wait_ms)
            p->wait_ms = uplinks[i].wait_ms;
    }
    for (size_t k = 0; k < run->nprobes; k++)
        if (run->probes[k].timeout_ms == 0)
            run->probes[k].timeout_ms = 5000;

    int rc = uv_timer_init(loop, &run->kick);
    if (rc < 0) {
        free(run->probe_of);
        free(run->probes);
        free(run->results);
        free(run);
        return rc;
    }
    run->kick.data = run;
    run->live = 1; /* the kick handle */
    /* timers first, so a failure leaves nothing half-started */
    size_t ready = 0;
    for (; ready < run->nprobes; ready++) {
        probe *p = &run->probes[ready];
        rc = uv_timer_init(loop, &p->timer);
        if (rc < 0)
            break;
        p->timer.data = p;
        run->live += 2; /* the timer handle and the verdict */
    }
    if (ready < run->nprobes) {
        /* give back what was opened; the run frees itself once the handles
         * are closed, without calling cb (there are no verdicts to wait for) */
        run->cb = NULL;
        run->cancelled = true;
        run->live = 1 + ready;
        for (size_t k = 0; k < ready; k++) {
            run->probes[k].final = true;
            uv_close((uv_handle_t *)&run->probes[k].timer, on_probe_timer_closed);
        }
        uv_close((uv_handle_t *)&run->kick, on_kick_closed);
        return rc;
    }
    uv_update_time(loop);
    run->start = uv_now(loop);
    for (size_t k = 0; k < run->nprobes; k++)
        attempt_start(&run->probes[k]);
    uv_close((uv_handle_t *)&run->kick, on_kick_closed);
    if (run_out)
        *run_out = run;
    return 0;
}

void ms_uplink_cancel(ms_uplink_run *run)
{
    if (!run || run->cancelled)
        return;
    run->cancelled = true;
    for (size_t k = 0; k < run->nprobes; k++) {
        probe *p = &run->probes[k];
        if (p->final)
            continue;
        char why[sizeof p->error + 40];
        if (p->waiting && p->error[0])
            snprintf(why, sizeof why, "cancelled while waiting (last attempt: %s)", p->error);
        else
            snprintf(why, sizeof why, "cancelled");
        attempt_end(p, false, why);
    }
}

/* ---------------------------------------------------------------- launch gate */
typedef struct gate {
    ms_uplink_gate_cb cb;
    void *arg;
} gate;

static void gate_done(const ms_uplink_result *results, size_t n, void *arg)
{
    gate g = *(gate *)arg;
    free(arg);
    size_t cap = 1, len = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        if (!results[i].up) {
            ok = false;
            cap += (size_t)ms_uplink_describe_down(&results[i], NULL, 0) + 1;
        }
    char *msg = malloc(cap);
    if (msg) {
        msg[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (results[i].up)
                continue;
            if (len)
                msg[len++] = '\n';
            len += (size_t)ms_uplink_describe_down(&results[i], msg + len, cap - len);
        }
    }
    g.cb(ok, msg ? msg : (ok ? "" : "uplinks are down (out of memory describing them)"), results, n,
         g.arg);
    free(msg);
}

int ms_uplink_gate(uv_loop_t *loop, const ms_uplink *uplinks, size_t n, ms_uplink_gate_cb cb,
                   void *arg, ms_uplink_run **run_out)
{
    if (!cb)
        return UV_EINVAL;
    gate *g = malloc(sizeof *g);
    if (!g)
        return UV_ENOMEM;
    g->cb = cb;
    g->arg = arg;
    int rc = ms_uplink_check_all(loop, uplinks, n, gate_done, g, run_out);
    if (rc < 0)
        free(g);
    return rc;
}
