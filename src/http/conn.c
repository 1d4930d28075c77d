/* conn.c: one client connection on a worker: reads and parses requests with
 * http-parser (pipelined requests are answered in order: the parser pauses
 * at each message boundary until the response is done), enforces the limits
 * (head size 431, URI length 414, body size 413, head timeout 408, idle
 * timeout), refuses smuggling-prone input with 400 and a lingering close, routes
 * (ACME http-01 challenges on plain binds, redirect_to_https, static dirs,
 * payloads, then routes, else 404) and hands proxied requests to
 * proxy.c: on a route with request buffering (the default), only once the
 * whole body is held (bodybuf.c: memory, then an unlinked temporary file;
 * Expect: 100-continue answered here; body timeout 408). Bytes come and go
 * through the connection's transport (transport.h: a socket, TLS, an
 * HTTP/2 stream); what it cannot write at once is queued, and the side
 * that produced it pauses until it drains. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <openssl/ssl.h>

#include "acme/board.h"
#include "http/framing.h"
#include "http/http_impl.h"
#include "http/redirect.h"
#include "http/reqpath.h"
#include "tls/tls.h"
#include "util/pattern.h"

static const http_parser_settings *req_settings(void);
static void process(ms_conn *c);
static void start_next_request(ms_conn *c);
static void linger_read(ms_conn *c, ssize_t n);
static void tunnel_read(ms_conn *c, size_t n);

/* ---------------------------------------------------------------- small helpers */
static const ms_http_limits *limits(const ms_conn *c)
{
    return &c->g->m->global.http;
}

static bool hdr_is(const ms_conn *c, const ms_hdr *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(c->buf + h->name, name, n) == 0;
}

const ms_hdr *ms_conn_header(const ms_conn *c, const char *name)
{
    for (uint16_t i = 0; i < c->nhdr; i++)
        if (hdr_is(c, &c->hdr[i], name))
            return &c->hdr[i];
    return NULL;
}

/* The connection's timeouts (head, idle, body, linger) are one deadline,
 * kept in the connection; the uv timer runs lazily behind it. Setting a
 * deadline no earlier than the one the timer is armed for, or clearing it,
 * costs a store: the timer fires at its old time, finds the deadline later
 * (or gone) and is armed again for what is left (or not). A keep-alive
 * request so stops and starts no timer in libuv's heap; the deadline each
 * timeout fires at is the same as before. */
static void on_conn_timer(uv_timer_t *t)
{
    ms_conn *c = t->data;
    if (!c->timer_due)
        return;
    uint64_t now = uv_now(t->loop);
    if (now < c->timer_due) {
        c->timer_at = c->timer_due;
        uv_timer_start(t, on_conn_timer, c->timer_due - now, 0);
        return;
    }
    c->timer_due = 0;
    c->timer_cb(t);
}

static void clear_timer(ms_conn *c)
{
    c->timer_due = 0;
}

static bool timer_set(const ms_conn *c)
{
    return c->timer_due != 0;
}

static void set_timer(ms_conn *c, uint64_t ms, uv_timer_cb cb)
{
    if (!ms) {
        clear_timer(c);
        return;
    }
    uint64_t due = uv_now(c->timer.loop) + ms;
    c->timer_due = due;
    c->timer_cb = cb;
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_at <= due)
        return; /* it fires first, and is armed again for the rest */
    c->timer_at = due;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* ---------------------------------------------------------------- the handler */
/* The handler's operations, where it has them (handler.h). */
static void handler_abort(ms_conn *c)
{
    if (c->handler && c->handler->abort)
        c->handler->abort(c);
}

static void handler_drained(ms_conn *c)
{
    if (c->handler && c->handler->drained)
        c->handler->drained(c);
}

static int handler_partial_status(const ms_conn *c)
{
    return c->handler && c->handler->partial_status ? c->handler->partial_status(c) : 0;
}

static bool handler_backed_up(const ms_conn *c)
{
    return c->handler && c->handler->body_backed_up && c->handler->body_backed_up(c);
}

/* ---------------------------------------------------------------- closing */
static void conn_free_if_done(ms_conn *c);
static void drop_held_payload_result(ms_conn *c);

static void on_closed(uv_handle_t *h)
{
    ms_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    conn_free_if_done(c);
}

static void on_xport_closed(void *owner)
{
    ms_conn *c = owner;
    c->x = NULL;
    c->writes_in_flight = 0;
    c->write_pending = 0;
    if (--c->handles_open > 0)
        return;
    conn_free_if_done(c);
}

/* Another handle of the connection (a static file's poll) has closed. */
void ms_conn_handle_closed(ms_conn *c)
{
    if (--c->handles_open == 0)
        conn_free_if_done(c);
}

static void conn_free_if_done(ms_conn *c)
{
    ms_worker *w = c->w;
    assert(c->state == MS_C_CLOSING && c->handles_open == 0 && c->writes_in_flight == 0 && !c->up);
    assert(w->nconns > 0);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    __atomic_store_n(&w->open_conns, w->nconns, __ATOMIC_RELAXED);
    if (w->gather.owner == c)
        w->gather.owner = NULL;
    ms_bodybuf_free(&c->body);
    drop_held_payload_result(c);
    ms_spare_put(&w->spare_in, c->buf, c->cap);
    ms_spare_put(&w->spare_out, c->out, c->out_cap);
    ms_wgen_drop(c->g);
    free(c);
    ms_worker_maybe_done(w);
}

static void record_unfinished(ms_conn *c);

void ms_conn_close(ms_conn *c)
{
    if (c->state == MS_C_CLOSING)
        return;
    record_unfinished(c);
    if (c->w->gather.owner == c)
        c->w->gather.owner = NULL; /* what was gathered is not sent */
    c->state = MS_C_CLOSING;
    handler_abort(c);
    c->reading = false;
    if (c->x)
        ms_xport_close(c->x); /* on_xport_closed follows */
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* ---------------------------------------------------------------- writing */
/* Writes go to the transport, which takes what it can at once and copies
 * the rest (transport.h): the producer only has to pause for backpressure
 * (write_pending above MS_WRITE_HIGH). While corked, pieces are gathered
 * (borrowed ones by reference, valid until the uncork) and leave in one
 * writev. */
static void sync_writes(ms_conn *c)
{
    c->write_pending = c->x ? c->x->write_pending : 0;
    c->writes_in_flight = c->x ? c->x->writes_in_flight : 0;
}

static void on_xport_written(void *owner, int status)
{
    ms_conn *c = owner;
    sync_writes(c);
    if (c->state == MS_C_CLOSING)
        return;
    if (status < 0) {
        ms_conn_close(c);
        return;
    }
    if (c->writes_in_flight == 0)
        ms_conn_client_drained(c);
}

static void write_now(ms_conn *c, const uv_buf_t *bufs, unsigned n)
{
    int rc = ms_xport_write(c->x, bufs, n);
    sync_writes(c);
    if (rc != 0)
        ms_conn_close(c);
}

/* Room for n more bytes in the gather buffer. */
static bool gather_room(ms_gather *g, size_t n)
{
    if (g->used + n <= g->cap)
        return true;
    size_t ncap = g->cap ? g->cap : 4096;
    while (ncap < g->used + n)
        ncap *= 2;
    char *nb = realloc(g->buf, ncap);
    if (!nb)
        return false;
    g->buf = nb;
    g->cap = ncap;
    return true;
}

void ms_conn_write(ms_conn *c, const char *data, size_t len, bool copy)
{
    if (c->state == MS_C_CLOSING || len == 0)
        return;
    c->bytes_out += len;
    ms_gather *g = &c->w->gather;
    if (g->owner == c) {
        if (g->n == MS_CORK_IOV)
            ms_conn_uncork(c), ms_conn_cork(c);
        if (copy && !gather_room(g, len)) {
            ms_conn_close(c);
            return;
        }
        ms_cork_piece *pc = &g->piece[g->n++];
        pc->len = len;
        if (copy) {
            /* scratch data: keep a copy until the uncork */
            memcpy(g->buf + g->used, data, len);
            pc->ptr = NULL;
            pc->off = g->used;
            g->used += len;
        } else {
            pc->ptr = data; /* borrowed: valid until the uncork */
        }
        return;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    write_now(c, &b, 1);
}

/* While corked: room for n bytes at the end of the gather buffer, to be
 * filled before any other write and then committed with the length used. */
char *ms_conn_cork_reserve(ms_conn *c, size_t n)
{
    ms_gather *g = &c->w->gather;
    if (g->owner != c || c->state == MS_C_CLOSING)
        return NULL;
    if (g->n == MS_CORK_IOV)
        ms_conn_uncork(c), ms_conn_cork(c);
    if (!gather_room(g, n))
        return NULL;
    ms_cork_piece *pc = &g->piece[g->n++];
    pc->ptr = NULL;
    pc->off = g->used;
    pc->len = 0;
    return g->buf + g->used;
}

void ms_conn_cork_commit(ms_conn *c, size_t used)
{
    ms_gather *g = &c->w->gather;
    assert(g->owner == c && g->n > 0 && g->used + used <= g->cap);
    ms_cork_piece *pc = &g->piece[g->n - 1];
    assert(pc->ptr == NULL && pc->off == g->used && pc->len == 0); /* the piece reserved last */
    pc->len = used;
    g->used += used;
    c->bytes_out += used;
}

void ms_conn_cork(ms_conn *c)
{
    ms_gather *g = &c->w->gather;
    if (c->state == MS_C_CLOSING)
        return; /* a closing connection never owns the gather */
    if (g->owner && g->owner != c)
        ms_conn_uncork(g->owner); /* one corked connection per worker: flush the other */
    g->owner = c;
    g->n = 0;
    g->used = 0;
}

void ms_conn_uncork(ms_conn *c)
{
    ms_gather *g = &c->w->gather;
    if (g->owner != c)
        return;
    g->owner = NULL;
    if (c->state == MS_C_CLOSING || g->n == 0)
        return;
    assert(g->n > 0 && g->n <= MS_CORK_IOV);
    uv_buf_t bufs[MS_CORK_IOV];
    for (int i = 0; i < g->n; i++) {
        const ms_cork_piece *pc = &g->piece[i];
        bufs[i] = uv_buf_init((char *)(pc->ptr ? pc->ptr : g->buf + pc->off), (unsigned)pc->len);
    }
    unsigned n = (unsigned)g->n;
    g->n = 0;
    write_now(c, bufs, n); /* copies what the socket does not take: the gather buffer is free again */
}

/* ---------------------------------------------------------------- metrics */
static const double bucket_bounds_s[MS_NBUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };

/* The request as the access log shows it, into the worker's ring (a full
 * ring drops it, counted there). */
static void note_access(ms_conn *c, int status, uint64_t now, uint64_t us)
{
    ms_alog_rec *r = c->w->alog ? ms_alog_reserve(c->w->alog) : NULL;
    if (!r)
        return;
    const ms_manifest *m = c->g->m;
    const ms_bind *b = &m->global.binds[c->bind_idx];
    r->end_us = now;
    r->duration_us = us;
    r->upstream_us = c->up_sent_us && c->up_sent_us >= c->start_us && c->up_head_us >= c->up_sent_us
                         ? (int64_t)(c->up_head_us - c->up_sent_us) : -1;
    c->up_sent_us = c->up_head_us = 0;
    r->bytes = c->bytes_out;
    r->status = (uint16_t)status;
    r->format = (uint8_t)b->access_log;
    r->proto = c->h2 ? 20 : c->parser.http_major == 1 && c->parser.http_minor == 0 ? 10 : 11;
    r->method = c->url_len ? http_method_str((enum http_method)c->parser.method) : NULL;
    size_t n = c->buf && c->url_len && c->url_off + c->url_len <= c->len ? c->url_len : 0;
    r->path_cut = n > sizeof r->path;
    r->path_len = (uint16_t)(r->path_cut ? sizeof r->path : n);
    memcpy(r->path, c->buf ? c->buf + c->url_off : "", r->path_len);
    if (!c->reqid_len)
        ms_conn_make_reqid(c);
    r->reqid_len = (uint8_t)(c->reqid_len < sizeof r->reqid ? c->reqid_len : sizeof r->reqid);
    memcpy(r->reqid, c->reqid, r->reqid_len);
    n = strnlen(c->peer, sizeof r->peer);
    r->peer_len = (uint8_t)n;
    memcpy(r->peer, c->peer, n);
    r->peer_port = c->peer_port;
    n = strnlen(b->name, sizeof r->bind);
    r->bind_len = (uint8_t)n;
    memcpy(r->bind, b->name, n);
    const char *target = "";
    if (c->handler == &ms_handler_static)
        target = "static";
    else if (c->handler == &ms_handler_block)
        target = "payload";
    else if (c->handler == &ms_handler_proxy && c->ship < m->nships)
        target = m->ships[c->ship].name; /* the instance */
    else if (c->handler && c->route)
        target = c->route->target->name; /* a bay */
    else if (!c->handler && status == 308)
        target = "redirect";
    n = strnlen(target, sizeof r->target);
    r->target_len = (uint8_t)n;
    memcpy(r->target, target, n);
    ms_alog_commit(c->w->alog);
}

void ms_conn_record(ms_conn *c, int status)
{
    ms_slot_stats *s = ms_worker_slot(c->w, c->slot);
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    uint64_t now = ms_now_us();
    uint64_t us = c->start_us ? now - c->start_us : 0; /* 0: refused before its first byte was parsed */
    if (ms_conn_logs_access(c))
        note_access(c, status, now, us);
    size_t b = 0;
    while (b < MS_NBUCKETS && (double)us / 1e6 > bucket_bounds_s[b])
        b++;
    __atomic_fetch_add(&s->by_class[cls], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->by_proto[c->h2 ? 1 : 0], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->duration_us_sum, us, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->bytes_in, c->body_seen + (c->head_end - c->head_start), __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->bytes_out, c->bytes_out, __ATOMIC_RELAXED);
}

/* A connection closes in the middle of something the counters have not
 * seen the end of: a proxied response whose head was sent (the client went
 * away, or a stop cut it), counted with the status it was sent with; a
 * tunnel after a 101, whose bytes and duration are counted now. */
static void record_unfinished(ms_conn *c)
{
    ms_slot_stats *s = ms_worker_slot(c->w, c->slot);
    int status = c->state == MS_C_PROXY ? handler_partial_status(c) : 0;
    if (status) {
        int cls = status / 100;
        ms_conn_record(c, status);
        __atomic_fetch_add(&s->abandoned[cls >= 1 && cls <= 5 ? cls : 5], 1, __ATOMIC_RELAXED);
    }
    if (c->tunnel_open) {
        c->tunnel_open = false;
        __atomic_fetch_add(&s->tunnels_closed, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->tunnel_us_sum, ms_now_us() - c->tunnel_start_us, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->tunnel_bytes_up, c->tunnel_bytes_up, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->tunnel_bytes_down, c->bytes_out, __ATOMIC_RELAXED);
    }
}

const double *ms_bucket_bounds(void)
{
    return bucket_bounds_s;
}

/* ---------------------------------------------------------------- local responses */
static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Error";
    }
}

/* The standard phrase of any registered status (a payload's block, a
 * bay's reply may use one we never send ourselves): our table, then
 * http-parser's; an unregistered status gets an empty phrase (RFC 9112
 * allows it) rather than a wrong one. */
const char *ms_http_reason(int status)
{
    const char *r = reason(status);
    if (strcmp(r, "Error") != 0)
        return r;
    r = http_status_str((enum http_status)status);
    return strcmp(r, "<unknown>") != 0 ? r : "";
}

static const char *error_word(int status)
{
    switch (status) {
    case 308: return "moved_to_https";
    case 400: return "bad_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 413: return "body_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 426: return "upgrade_required";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 502: return "bad_gateway";
    case 503: return "service_unavailable";
    case 504: return "gateway_timeout";
    case 505: return "http_version_not_supported";
    case 507: return "insufficient_storage";
    default: return "error";
    }
}

/* Small, typed error: JSON when the client asks for it, else text; always
 * with the request id. Errors before a complete head close the connection. */
void ms_conn_respond_error(ms_conn *c, int status, const char *detail)
{
    ms_conn_respond_error_with(c, status, detail, NULL);
}

void ms_conn_respond_error_with(ms_conn *c, int status, const char *detail, const char *extra)
{
    if (c->state == MS_C_CLOSING)
        return;
    bool close = !c->head_done || status == 400 || status == 408 || status == 413 || status == 414 ||
                 status == 431 || status == 505 || !c->keep_alive || c->close_after_write ||
                 (!c->req_done && c->has_body);
    if (!c->reqid_len)
        ms_conn_make_reqid(c);
    char body[768];
    int bl;
    if (c->accept_json) {
        char esc[400];
        size_t e = 0;
        for (const char *d = detail; *d && e + 3 < sizeof esc; d++) {
            if (*d == '"' || *d == '\\')
                esc[e++] = '\\';
            esc[e++] = (unsigned char)*d < 0x20 ? ' ' : *d;
        }
        esc[e] = '\0';
        bl = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%d,\"detail\":\"%s\",\"request_id\":\"%.*s\"}\n",
                      error_word(status), status, esc, (int)c->reqid_len, c->reqid);
    }
    else
        bl = snprintf(body, sizeof body, "%d %s: %s (request id %.*s)\n", status, reason(status), detail,
                      (int)c->reqid_len, c->reqid);
    if (bl < 0 || (size_t)bl >= sizeof body)
        bl = (int)sizeof body - 1;
    char head[768];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nServer: mothership\r\n%.*sContent-Type: %s\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %.*s\r\n%s%s",
                      status, reason(status), (int)c->w->date_len, c->w->date,
                      c->accept_json ? "application/json" : "text/plain; charset=utf-8", bl, (int)c->reqid_len,
                      c->reqid, status == 503 ? "Retry-After: 1\r\n" : "", close ? "Connection: close\r\n" : "");
    assert(hl > 0 && (size_t)hl < sizeof head);
    c->state = MS_C_RESPONDED;
    c->close_after_write = close;
    c->linger = close; /* the rest of the request may still be on its way */
    ms_conn_cork(c);
    ms_conn_write(c, head, (size_t)hl, true);
    if (extra) /* whole header lines, of any length (a Location) */
        ms_conn_write(c, extra, strlen(extra), true);
    ms_conn_write(c, "\r\n", 2, false);
    if (!c->is_head_method)
        ms_conn_write(c, body, (size_t)bl, true);
    ms_conn_record(c, status); /* counted before the client can see the answer */
    ms_conn_uncork(c);
    ms_conn_response_done(c);
}

/* ---------------------------------------------------------------- request ids */
static bool valid_reqid(const char *s, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':' || ch == '+' || ch == '/' || ch == '='))
            return false;
    }
    return true;
}

void ms_conn_make_reqid(ms_conn *c)
{
    const ms_hdr *h = c->head_done ? ms_conn_header(c, "x-request-id") : NULL;
    if (h && valid_reqid(c->buf + h->val, h->val_len) && h->val_len < sizeof c->reqid) {
        memcpy(c->reqid, c->buf + h->val, h->val_len);
        c->reqid_len = h->val_len;
        return;
    }
    ms_worker *w = c->w;
    /* xorshift64*: unique per worker, unpredictable enough for correlation */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    uint64_t v = x * 0x2545F4914F6CDD1DULL;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        c->reqid[i] = hex[(v >> (60 - 4 * i)) & 15];
    c->reqid[16] = hex[(w->id >> 4) & 15];
    c->reqid[17] = hex[w->id & 15];
    c->reqid_len = 18;
}

/* ---------------------------------------------------------------- parser callbacks */
static int on_message_begin(http_parser *p)
{
    ms_conn *c = p->data;
    c->nhdr = 0;
    c->url_len = 0;
    c->last_was_value = false;
    c->body_seen = 0;
    c->head_done = c->req_done = false;
    c->start_us = ms_now_us();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    ms_conn *c = p->data;
    if (c->url_len == 0)
        c->url_off = (uint32_t)(at - c->buf);
    c->url_len += (uint32_t)len;
    if (c->url_len > limits(c)->max_uri_length) {
        c->error_status = 414;
        return 1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    ms_conn *c = p->data;
    if (c->head_done)
        return 0; /* a trailer field of a chunked body: dropped, never a header */
    if (c->nhdr == 0 || c->last_was_value) {
        if (c->nhdr == MS_MAX_HEADERS) {
            c->error_status = 431;
            return 1;
        }
        ms_hdr *h = &c->hdr[c->nhdr++];
        h->name = (uint32_t)(at - c->buf);
        h->name_len = 0;
        h->val = 0;
        h->val_len = 0;
        c->last_was_value = false;
    }
    c->hdr[c->nhdr - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    ms_conn *c = p->data;
    if (c->head_done)
        return 0; /* a trailer field's value */
    ms_hdr *h = &c->hdr[c->nhdr - 1];
    if (!c->last_was_value) {
        h->val = (uint32_t)(at - c->buf);
        h->val_len = 0;
        c->last_was_value = true;
    } else if (at != c->buf + h->val + h->val_len) {
        /* the pieces of a value are contiguous in buf unless the value was
         * folded over lines (obs-fold): refused, as RFC 9112 allows */
        c->error_status = 400;
        return 1;
    }
    h->val_len += (uint32_t)len;
    /* obs-fold and bare control characters are refused (smuggling vectors) */
    if (!ms_field_value_clean(at, len)) {
        c->error_status = 400;
        return 1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    ms_conn *c = p->data;
    c->head_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    ms_conn *c = p->data;
    c->body_seen += len;
    uint64_t max = limits(c)->max_body_size;
    if (max && c->body_seen > max) {
        c->error_status = 413;
        return 1;
    }
    if (c->state == MS_C_BODY) {
        int rc = ms_bodybuf_append(&c->body, at, len, c->w->tmpdir);
        if (rc != 0) {
            c->error_status = rc == -ENOSPC || rc == -EDQUOT ? 507 : 500;
            c->error_detail = ms_bodybuf_strerror(rc);
            return 1;
        }
    }
    if (c->state == MS_C_PROXY && c->handler->body)
        c->handler->body(c, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    ms_conn *c = p->data;
    c->req_done = true;
    if (c->state == MS_C_BODY || c->state == MS_C_PROXY)
        clear_timer(c); /* the body timeout is over */
    if (c->state == MS_C_PROXY && c->handler->body_end)
        c->handler->body_end(c);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings *req_settings(void)
{
    static const http_parser_settings s = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };
    return &s;
}

/* ---------------------------------------------------------------- validation of a head */
/* A Transfer-Encoding header, on its raw line: see ms_te_value_status. */
static int check_transfer_encoding(const ms_conn *c, const ms_hdr *h)
{
    uint32_t start = h->name + h->name_len + 1; /* after the colon */
    uint32_t end = h->val_len ? h->val + h->val_len : start;
    while (end < c->len && c->buf[end] != '\r' && c->buf[end] != '\n')
        end++;
    return ms_te_value_status(c->buf + start, end - start);
}

/* A Content-Length value: digits only (trailing whitespace aside). */
static bool valid_content_length(const ms_conn *c, const ms_hdr *h)
{
    const char *v = c->buf + h->val;
    size_t n = h->val_len;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

/* Checks http-parser leaves to us, on the complete head and before anything
 * of the request goes anywhere. Returns 0 or an error status. */
static int check_head(ms_conn *c)
{
    http_parser *p = &c->parser;
    if (p->http_major != 1)
        return 505;
    int content_lengths = 0, transfer_encodings = 0, te_status = 0;
    bool host = false;
    for (uint16_t i = 0; i < c->nhdr; i++) {
        const ms_hdr *h = &c->hdr[i];
        if (h->name_len == 0)
            return 400;
        for (uint32_t k = 0; k < h->name_len; k++) {
            unsigned char ch = (unsigned char)c->buf[h->name + k];
            if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch)))
                return 400; /* not a token: includes spaces before ':' */
        }
        /* http-parser takes "Transfer-Encoding.x" or "Content-Lengthy" for
         * the framing header they start with; a ship that parses alike
         * would frame the body otherwise than the head we forward */
        if ((h->name_len > 17 && strncasecmp(c->buf + h->name, "transfer-encoding", 17) == 0) ||
            (h->name_len > 14 && strncasecmp(c->buf + h->name, "content-length", 14) == 0))
            return 400;
        if (hdr_is(c, h, "content-length")) {
            content_lengths++;
            if (!valid_content_length(c, h))
                return 400;
        } else if (hdr_is(c, h, "transfer-encoding")) {
            transfer_encodings++;
            te_status = check_transfer_encoding(c, h);
        } else if (hdr_is(c, h, "host")) {
            if (host)
                return 400; /* two Host headers */
            host = true;
        }
    }
    if (content_lengths > 1)
        return 400; /* http-parser allows identical duplicates; we do not */
    /* http-parser's own view of the framing must be ours: it takes some
     * header names that are not exactly Transfer-Encoding or Content-Length
     * for them ("Transfer-Encodingxyz" with an empty value), and would then
     * refuse or frame the body differently after the head went upstream */
    if ((p->uses_transfer_encoding || (p->flags & F_CHUNKED)) && transfer_encodings == 0)
        return 400;
    if ((p->flags & F_CONTENTLENGTH) && content_lengths == 0)
        return 400;
    if (transfer_encodings > 0) {
        /* one Transfer-Encoding of exactly "chunked", in HTTP/1.1, without a
         * Content-Length: http-parser would take some of the other forms
         * and refuse others only after the head */
        if (transfer_encodings > 1 || content_lengths > 0 || p->http_minor == 0)
            return 400;
        if (te_status)
            return te_status;
        if (!(p->flags & F_CHUNKED))
            return 400;
    }
    if (!host && p->http_minor >= 1)
        return 400;
    if (c->url_len == 0 || (c->buf[c->url_off] != '/' && p->method != HTTP_OPTIONS))
        return 400; /* absolute-form and authority-form are not proxied */
    return 0;
}

/* Does an Upgrade header of the request list the token "websocket"? */
static bool upgrade_is_websocket(const ms_conn *c)
{
    for (uint16_t i = 0; i < c->nhdr; i++)
        if (hdr_is(c, &c->hdr[i], "upgrade") && ms_token_listed(c->buf + c->hdr[i].val, c->hdr[i].val_len, "websocket", 9))
            return true;
    return false;
}

/* ---------------------------------------------------------------- payloads */
/* The request's headers as slices for a payload (worker scratch). */
size_t ms_conn_payload_headers(ms_conn *c)
{
    ms_payload_header *h = c->w->phdrs;
    for (uint16_t i = 0; i < c->nhdr; i++) {
        h[i].name = (ms_payload_slice){ c->buf + c->hdr[i].name, c->hdr[i].name_len };
        h[i].value = (ms_payload_slice){ c->buf + c->hdr[i].val, c->hdr[i].val_len };
    }
    return c->nhdr;
}

/* Request-phase payloads whose patterns match the path, in manifest order.
 * Returns false when the request has been answered (blocked or failed). */
static bool run_request_payloads(ms_conn *c, const char *path, size_t plen, const char *query, size_t qlen)
{
    ms_worker *w = c->w;
    const ms_payload_set *ps = c->g->payloads;
    ms_payload_result *res = &w->pres;
    ms_payload_result_reset(res);
    c->payload_edits = false;
    size_t nh = ms_conn_payload_headers(c);
    ms_payload_req req = {
        .method = { http_method_str((enum http_method)c->parser.method),
                    strlen(http_method_str((enum http_method)c->parser.method)) },
        .path = { path, plen },
        .query = { query, qlen },
        .client = { c->peer, strlen(c->peer) },
        .headers = w->phdrs,
        .nheaders = nh,
    };
    for (size_t i = 0; i < ms_payload_count(ps); i++) {
        if (ms_payload_phase(ps, i) != MS_PHASE_REQUEST)
            continue;
        const char *p = res->path_set ? res->path.ptr : path;
        size_t pl = res->path_set ? res->path.len : plen;
        if (!ms_module_applies(c->g->routes, i, p, pl, w->match_data))
            continue;
        ms_payload_err e = ms_payload_run_request(c->g->pw, i, &req, res);
        if (e != MS_PAYLOAD_OK) {
            const ms_module *mod = ms_payload_module(ps, i);
            ms_worker_payload_log(w, mod, 2, res->error, strlen(res->error));
            if (mod->fail_open)
                continue;
            char detail[160];
            snprintf(detail, sizeof detail, "module \"%s\" failed (%s)", mod->name, ms_payload_err_name(e));
            ms_conn_respond_error(c, 500, detail);
            return false;
        }
        if (res->blocked) {
            c->handler = &ms_handler_block; /* the payload's own answer */
            c->handler->start(c, NULL);
            return false;
        }
    }
    c->payload_edits = res->path_set || res->nedits > 0;
    return true;
}

/* ---------------------------------------------------------------- the request target */
/* Check the target's raw bytes and normalise its path in place in the read
 * buffer (the query moves up behind it), so that static dirs, payloads,
 * routes, the head sent upstream and Boarding all see one path. A path
 * with an ambiguous form is refused unless the route it matches has
 * raw_path = true; *raw says that it was let through that way. Returns
 * false when the request has been answered. */
static bool normalise_target(ms_conn *c, bool *raw)
{
    ms_reqpath rp;
    *raw = false;
    ms_reqpath_target(c->buf + c->url_off, c->url_len, c->parser.method == HTTP_OPTIONS, &rp);
    if (rp.status) {
        ms_conn_respond_error(c, rp.status, rp.why);
        return false;
    }
    assert(rp.len <= c->url_len && rp.path_len <= rp.len);
    c->url_len = (uint32_t)rp.len;
    c->path_len = (uint32_t)rp.path_len;
    if (rp.ambiguous) {
        ms_worker *w = c->w;
        const ms_rt_route *r =
            ms_route_match(c->g->routes, c->bind_idx, c->buf + c->url_off, c->path_len, w->match_data);
        if (!r || !r->route->raw_path) {
            char detail[160];
            snprintf(detail, sizeof detail, "%s (only a route with raw_path = true takes it)", rp.ambiguous);
            ms_conn_respond_error(c, 400, detail);
            return false;
        }
        *raw = true;
    }
    return true;
}

/* ---------------------------------------------------------------- dispatch */
/* ACME http-01 (RFC 8555 §8.3): on a plain bind of a data plane with a
 * board, GET or HEAD /.well-known/acme-challenge/<token> answers the
 * token's key authorization (text/plain), an unknown token 404, any other
 * method 405. Before redirect_to_https, static files, payloads and routes:
 * the CA asks on port 80 whatever else that bind does. false: not such a
 * request (the path is not special without a board). */
static bool acme_challenge(ms_conn *c, const char *path, size_t plen)
{
    const size_t pre = sizeof MS_ACME_CHALLENGE_PREFIX - 1;
    if (!c->w->board || c->g->m->global.binds[c->bind_idx].tls || plen < pre ||
        memcmp(path, MS_ACME_CHALLENGE_PREFIX, pre) != 0)
        return false;
    if (c->parser.method != HTTP_GET && c->parser.method != HTTP_HEAD) {
        ms_conn_respond_error_with(c, 405, "an ACME challenge answers GET and HEAD only", "Allow: GET, HEAD\r\n");
        return true;
    }
    char ka[512]; /* a token (at most 256 bytes), ".", a 43-byte thumbprint */
    if (!ms_acme_board_http(c->w->board, path + pre, plen - pre, ka, sizeof ka)) {
        ms_conn_respond_error(c, 404, "no ACME challenge with this token");
        return true;
    }
    size_t kl = strlen(ka);
    bool close = !c->keep_alive || (!c->req_done && c->has_body);
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nServer: mothership\r\n%.*sContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\nX-Request-Id: %.*s\r\n%s\r\n",
                      (int)c->w->date_len, c->w->date, kl, (int)c->reqid_len, c->reqid,
                      close ? "Connection: close\r\n" : "");
    assert(hl > 0 && (size_t)hl < sizeof head);
    if (close)
        ms_conn_end_after_response(c, true);
    ms_conn_cork(c);
    ms_conn_write(c, head, (size_t)hl, true);
    if (!c->is_head_method)
        ms_conn_write(c, ka, kl, true);
    ms_conn_record(c, 200); /* a local answer: the bind's no-route series */
    ms_conn_uncork(c);
    ms_conn_responded(c);
    return true;
}

/* redirect_to_https: 308 to the same host, path and query on the TLS
 * bind (redirect.h), with the connection kept; a Host that cannot be
 * redirected to is a 400. */
static void redirect_to_https(ms_conn *c)
{
    const ms_hdr *host = ms_conn_header(c, "host");
    char loc[sizeof "Location: \r\n" + 8192];
    size_t n = ms_redirect_location(host ? c->buf + host->val : NULL, host ? host->val_len : 0,
                                    ms_redirect_https_port(&c->g->m->global), c->buf + c->url_off,
                                    c->url_len, loc + 10, sizeof loc - 13);
    if (n == 0) {
        ms_conn_respond_error(c, 400, "this address serves only https, and the request's Host cannot be redirected to");
        return;
    }
    memcpy(loc, "Location: ", 10);
    memcpy(loc + 10 + n, "\r\n", 3);
    ms_conn_respond_error_with(c, 308, "this address serves only https: use the Location given", loc);
}

static void dispatch(ms_conn *c)
{
    ms_worker *w = c->w;
    http_parser *p = &c->parser;
    assert(c->state == MS_C_HEAD && c->head_done && !c->up && !c->handler && c->head_end <= c->len);
    c->keep_alive = http_should_keep_alive(p);
    c->http_minor = p->http_minor;
    c->is_head_method = p->method == HTTP_HEAD;
    /* only a WebSocket upgrade is honoured (tunnelled to a ship, or boarded
     * on a bay); any other Upgrade (h2c, TLS) is an ordinary request whose
     * Upgrade header proxy.c drops */
    c->upgrade = p->upgrade && p->method != HTTP_CONNECT && upgrade_is_websocket(c);
    c->body_length = p->content_length;
    ms_chunk_check_init(&c->chunk_check);
    c->chunk_off = c->head_end; /* the body starts after the head */
    c->has_body = (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    c->chunked = (p->flags & F_CHUNKED) != 0;
    const ms_hdr *acc = ms_conn_header(c, "accept");
    c->accept_json = acc && memmem(c->buf + acc->val, acc->val_len, "json", 4) != NULL;
    c->reqid_len = 0;
    ms_conn_make_reqid(c);
    c->slot = c->g->nomatch_slot[c->bind_idx];
    clear_timer(c);

    int bad = check_head(c);
    if (bad) {
        ms_conn_respond_error(c, bad, bad == 505   ? "only HTTP/1.0 and HTTP/1.1 are served"
                                      : bad == 501 ? "only the chunked transfer coding is supported"
                                                   : "malformed request");
        return;
    }
    uint64_t max = limits(c)->max_body_size;
    if (max && p->content_length != ULLONG_MAX && p->content_length > max) {
        ms_conn_respond_error(c, 413, "the request body is larger than max_body_size");
        return;
    }
    const ms_hdr *expect = ms_conn_header(c, "expect");
    if (expect && !(expect->val_len == 12 && strncasecmp(c->buf + expect->val, "100-continue", 12) == 0)) {
        ms_conn_respond_error(c, 417, "only Expect: 100-continue is supported");
        return;
    }

    /* the normalised path, without the query; a payload may route on a rewritten one */
    bool raw_path;
    if (!normalise_target(c, &raw_path))
        return;
    const char *path = c->buf + c->url_off;
    size_t plen = c->path_len;

    /* 0. ACME http-01 challenges, before anything else of the bind */
    if (acme_challenge(c, path, plen))
        return;
    /* a plain bind that sends everyone to https answers here, before
     * static files, payloads and routes */
    if (c->g->m->global.binds[c->bind_idx].redirect_to_https) {
        redirect_to_https(c);
        return;
    }

    /* 1. static dirs, longest prefix first; a miss falls through (a raw
     * path is its route's alone) */
    const ms_rt_bind *rb = &c->g->routes->binds[c->bind_idx];
    if (!c->upgrade && !raw_path && (p->method == HTTP_GET || p->method == HTTP_HEAD)) {
        for (size_t i = 0; i < rb->nstatics; i++) {
            if (!ms_static_prefix_covers(rb->statics[i]->prefix, path, plen))
                continue;
            const ms_handler_arg arg = { rb->statics[i], c->g->static_fd[c->bind_idx][i], path, plen };
            c->handler = &ms_handler_static;
            c->slot = c->g->static_slot[c->bind_idx][i];
            if (c->handler->start(c, &arg))
                return;
            c->handler = NULL; /* no such file: on to the next dir, then the routes */
            c->slot = c->g->nomatch_slot[c->bind_idx];
        }
    }
    /* 2. request-phase payloads, in manifest order; they may answer, or
     * rewrite the path and the headers */
    c->payload_edits = false;
    if (c->g->pw) {
        const char *query = c->buf + c->url_off + plen;
        size_t qlen = c->url_len - plen;
        if (qlen && *query == '?') {
            query++;
            qlen--;
        }
        if (!run_request_payloads(c, path, plen, query, qlen))
            return;
        if (w->pres.path_set) {
            path = w->pres.path.ptr;
            plen = w->pres.path.len;
        }
    }
    /* 3. routes, first match wins */
    const ms_rt_route *r = ms_route_match(c->g->routes, c->bind_idx, path, plen, w->match_data);
    if (!r) {
        ms_conn_respond_error(c, 404, "no route for this path");
        return;
    }
    c->route = r;
    c->slot = c->g->route_slot[c->bind_idx][(size_t)(r - rb->routes)];
    c->ship = (size_t)(r->target - c->g->m->ships);
    c->body_buffered = false;
    c->handler = ms_ship_speaks_v3(r->target)   ? &ms_handler_hbay
                 : r->target->kind == MS_BAY ? &ms_handler_bay
                                             : &ms_handler_proxy;
    c->handler->start(c, NULL);
}

/* ---------------------------------------------------------------- request bodies */
/* Reading a request body: whole before the upstream (MS_C_BODY), or
 * streamed to a connected upstream (MS_C_PROXY) that has not answered in
 * full yet (once it has, the connection closes after the answer's last
 * write, and no 408 may follow it). */
static bool body_phase(const ms_conn *c)
{
    return c->head_done && !c->req_done && c->has_body && !c->response_done &&
           (c->state == MS_C_BODY || c->state == MS_C_PROXY);
}

static void on_body_timeout(uv_timer_t *t)
{
    ms_conn *c = t->data;
    if (!body_phase(c))
        return;
    if (handler_partial_status(c)) {
        ms_conn_close(c); /* the answer is under way: nothing else can be said */
        return;
    }
    if (c->state == MS_C_PROXY) {
        handler_abort(c); /* the ship never sees the end of this request */
        c->state = MS_C_HEAD;
    }
    char detail[128];
    snprintf(detail, sizeof detail, "the request body paused for longer than body_timeout (%llums)",
             (unsigned long long)limits(c)->body_timeout_ms);
    ms_conn_respond_error(c, 408, detail);
}

/* The handler wants the body whole first: it is read (the parse loop goes
 * on in MS_C_BODY) before the handler starts again (for the proxy: before
 * a ship connection is claimed). */
const ms_payload_result *ms_conn_payload_result(const ms_conn *c)
{
    if (!c->payload_edits)
        return NULL;
    return c->pres_held ? c->pres_held : &c->w->pres;
}

static void drop_held_payload_result(ms_conn *c)
{
    if (c->pres_held) {
        ms_payload_result_free(c->pres_held);
        free(c->pres_held);
        c->pres_held = NULL;
    }
}

void ms_conn_read_body_first(ms_conn *c)
{
    http_parser *p = &c->parser;
    if (c->payload_edits && !c->pres_held) {
        /* other requests run payloads on the worker while this body comes */
        c->pres_held = calloc(1, sizeof *c->pres_held);
        if (!c->pres_held || ms_payload_result_copy(c->pres_held, &c->w->pres) != 0) {
            drop_held_payload_result(c);
            ms_conn_respond_error(c, 500, "out of memory");
            return;
        }
    }
    uint64_t announced = !c->chunked && p->content_length != ULLONG_MAX ? p->content_length : 0;
    ms_bodybuf_init(&c->body, (size_t)limits(c)->request_buffer_size, announced);
    c->body_buffered = true;
    c->state = MS_C_BODY;
    /* Expect was checked by dispatch: only 100-continue gets this far; a
     * client that sent body bytes already is not waiting for it */
    if (ms_conn_header(c, "expect") && c->http_minor >= 1 && c->len <= c->head_end)
        ms_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, false);
    set_timer(c, limits(c)->body_timeout_ms, on_body_timeout);
}

/* The whole body is held: now a ship connection is claimed. */
static void body_complete(ms_conn *c)
{
    assert(c->state == MS_C_BODY && c->req_done);
    ms_worker *w = c->w;
    int rc = ms_bodybuf_finish(&c->body);
    if (rc != 0) {
        ms_conn_respond_error(c, rc == -ENOSPC || rc == -EDQUOT ? 507 : 500, ms_bodybuf_strerror(rc));
        return;
    }
    __atomic_fetch_add(&w->bodies_buffered, 1, __ATOMIC_RELAXED);
    if (ms_bodybuf_spilled(&c->body)) {
        __atomic_fetch_add(&w->bodies_spilled, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&w->bytes_spilled, c->body.len, __ATOMIC_RELAXED);
    }
    if (c->pos == c->len)
        c->len = c->pos = c->head_end; /* the body's bytes are copied out */
    c->handler->start(c, NULL);
}

/* ---------------------------------------------------------------- the read side */
static void on_idle_timeout(uv_timer_t *t);

static void on_head_timeout(uv_timer_t *t)
{
    ms_conn *c = t->data;
    if (c->state != MS_C_HEAD)
        return;
    if (c->len > c->head_start) /* a request was started: say why it is cut off */
        ms_conn_respond_error(c, 408, "the request head took too long");
    else
        ms_conn_close(c);
}

/* A request that begins on an idle connection takes the worker's newest
 * generation (unless the connection's bind is not in it: then the
 * connection stays where it is, and is being drained). */
static void conn_take_newest(ms_conn *c)
{
    ms_wgen *cur = c->w->cur;
    if (c->g == cur)
        return;
    int b = ms_wgen_bind_in(c->g, c->bind_idx, cur);
    if (b < 0)
        return;
    ms_wgen *old = c->g;
    c->g = ms_wgen_hold(cur);
    c->bind_idx = (uint32_t)b;
    ms_wgen_drop(old);
}

static void on_alloc(void *owner, size_t suggested, uv_buf_t *b)
{
    ms_conn *c = owner;
    (void)suggested;
    if (c->state == MS_C_WEBSOCKET) { /* consumed before the next read: one buffer per worker */
        *b = uv_buf_init(c->w->ws_rbuf, MS_WS_RBUF);
        return;
    }
    if (!c->buf) {
        if (c->state == MS_C_HEAD && c->len == 0)
            conn_take_newest(c);
        /* the read buffer, and behind it the header table that points into it */
        uint32_t cap = (uint32_t)(limits(c)->max_header_size + 4096), got = 0;
        size_t hoff = ((size_t)cap + 15) & ~(size_t)15;
        c->buf = ms_spare_take(&c->w->spare_in, &got);
        if (c->buf && got != cap) { /* a reload changed max_header_size */
            free(c->buf);
            c->buf = NULL;
        }
        if (!c->buf)
            c->buf = malloc(hoff + MS_MAX_HEADERS * sizeof(ms_hdr));
        c->cap = cap;
        c->hdr = c->buf ? (ms_hdr *)(void *)(c->buf + hoff) : NULL;
        if (!c->buf) {
            *b = uv_buf_init(NULL, 0);
            return;
        }
    }
    *b = uv_buf_init(c->buf + c->len, c->cap - c->len);
}

static void stop_reading(ms_conn *c)
{
    if (c->reading) {
        ms_xport_read_stop(c->x);
        c->reading = false;
    }
}

static void on_read(void *owner, ssize_t n, const uv_buf_t *b)
{
    ms_conn *c = owner;
    if (n == 0)
        return;
    if (c->state == MS_C_WEBSOCKET) {
        if (n < 0) {
            stop_reading(c);
            c->eof = true;
            ms_conn_close(c);
        } else {
            c->handler->data(c, b->base, (size_t)n);
        }
        return;
    }
    if (c->state == MS_C_LINGER) {
        linger_read(c, n);
        return;
    }
    if (n == MS_XPORT_NOT_TLS && c->state == MS_C_HEAD) {
        /* plain HTTP on a TLS bind: the transport passes bytes through now,
         * so the answer can say so; then the connection closes */
        c->keep_alive = false;
        c->slot = c->g->nomatch_slot[c->bind_idx];
        ms_conn_respond_error(c, 400, "this port speaks HTTPS: use https:// instead of http://");
        return;
    }
    if (n < 0) {
        stop_reading(c);
        c->eof = true;
        if (n == UV_ENOBUFS) {
            ms_conn_close(c);
            return;
        }
        if (c->held) {
            ms_conn_close(c); /* gave up waiting: no ship saw it, its place is free */
            return;
        }
        if (c->hq_queued) {
            ms_conn_close(c); /* gave up waiting for a bay's link: no bay saw it, its place is free */
            return;
        }
        if (c->state == MS_C_HEAD && (c->len == c->pos || !c->head_done)) {
            ms_conn_close(c); /* nothing in flight */
            return;
        }
        if ((c->state == MS_C_PROXY || c->state == MS_C_BODY) && !c->req_done) {
            ms_conn_close(c); /* the request body was cut off */
            return;
        }
        if (c->state == MS_C_TUNNEL) {
            ms_conn_close(c);
            return;
        }
        return; /* finish the response in progress, then close */
    }
    c->len += (uint32_t)n;
    if (c->state == MS_C_TUNNEL) {
        tunnel_read(c, (size_t)n);
        return;
    }
    if (!c->h2_checked && c->state == MS_C_HEAD && ms_h2c_detect(c) != 0)
        return; /* HTTP/2 with prior knowledge (h2.c), or the start of its preface */
    if (c->state == MS_C_HEAD && c->timer_due && c->timer_cb == on_idle_timeout && limits(c)->header_timeout_ms)
        /* a head begins on an idle kept-alive connection: it has
         * header_timeout from now, as the first one had, not what is left
         * of idle_timeout (a slowloris would have that instead) */
        set_timer(c, limits(c)->header_timeout_ms, on_head_timeout);
    if (body_phase(c)) /* the client is sending: the pause it may take starts again */
        set_timer(c, limits(c)->body_timeout_ms, on_body_timeout);
    process(c);
}

void ms_conn_start_reading(ms_conn *c)
{
    if (!c->reading && !c->eof && c->state != MS_C_CLOSING) {
        if (ms_xport_read_start(c->x) == 0)
            c->reading = true;
    }
}

/* A chunked body is checked strictly (framing.h) before http-parser,
 * which is lenient, sees its bytes. */
static bool chunks_ok(ms_conn *c)
{
    if (!c->chunked || c->chunk_off >= c->len)
        return true;
    size_t used = 0;
    ms_chunk_result r = ms_chunk_check_feed(&c->chunk_check, c->buf + c->chunk_off, c->len - c->chunk_off, &used);
    c->chunk_off = r == MS_CHUNK_DONE ? UINT32_MAX : c->chunk_off + (uint32_t)used; /* done: the rest is the next request */
    return r != MS_CHUNK_BAD;
}

/* Parse what is buffered. A local answer written inside the parse ends
 * in start_next_request, which asks for a parse of the next pipelined
 * request: that goes round this loop, not one level deeper into the stack
 * per request (a buffer of small pipelined requests answered locally would
 * otherwise overflow the worker's stack). */
static void process_step(ms_conn *c);

static void process(ms_conn *c)
{
    if (c->in_process) {
        c->process_again = true;
        return;
    }
    c->in_process = true;
    do {
        c->process_again = false;
        process_step(c);
    } while (c->process_again && c->state != MS_C_CLOSING);
    c->in_process = false;
}

/* Parse what is buffered, as far as the state allows. */
static void process_step(ms_conn *c)
{
    /* in MS_C_PROXY the handler takes the body until its answer is done */
    while (c->state == MS_C_HEAD || (c->state == MS_C_BODY && !c->req_done) ||
           (c->state == MS_C_PROXY && !c->response_done && !c->req_done)) {
        if (c->pos == c->len)
            break;
        if (c->state == MS_C_PROXY && handler_backed_up(c))
            break;
        if ((c->state == MS_C_PROXY || c->state == MS_C_BODY) && !chunks_ok(c)) {
            if (handler_partial_status(c)) {
                ms_conn_close(c); /* the answer is under way: no second one inside it */
                return;
            }
            if (c->state == MS_C_PROXY) {
                handler_abort(c); /* the ship never gets the terminating chunk */
                c->state = MS_C_HEAD;
            }
            ms_conn_respond_error(c, 400, "invalid chunked body");
            return;
        }
        size_t avail = c->len - c->pos;
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
            http_parser_pause(&c->parser, 0);
        size_t used = http_parser_execute(&c->parser, req_settings(), c->buf + c->pos, avail);
        c->pos += (uint32_t)used;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            int st = c->error_status ? c->error_status : 400;
            if (c->state == MS_C_PROXY && handler_partial_status(c)) {
                ms_conn_close(c); /* the answer is under way: no second one inside it */
                return;
            }
            if (c->state == MS_C_PROXY) {
                handler_abort(c);
                c->state = MS_C_HEAD;
            }
            ms_conn_respond_error(c, st, c->error_detail ? c->error_detail
                                         : st == 431 ? "too many request headers"
                                         : st == 414 ? "the request URI is too long"
                                         : st == 413 ? "the request body is larger than max_body_size"
                                                     : http_errno_description(e));
            return;
        }
        if (e == HPE_PAUSED && c->state == MS_C_HEAD && c->head_done && c->pos >= c->head_start) {
            c->head_end = c->pos + 1; /* the parser stopped on the final LF */
            if (c->head_end - c->head_start > limits(c)->max_header_size) {
                ms_conn_respond_error(c, 431, "the request head is larger than max_header_size");
                return;
            }
            dispatch(c);
            if (c->state == MS_C_CLOSING)
                return;
            continue;
        }
        if (c->req_done)
            break;
    }
    if (c->state == MS_C_BODY && c->req_done) {
        body_complete(c);
        if (c->state == MS_C_CLOSING)
            return;
        /* and on: pipelined bytes may have filled the buffer, and reading
         * must pause below (a read into no room drops the connection) */
    }
    if (c->state == MS_C_HEAD && !c->head_done && c->len - c->head_start >= limits(c)->max_header_size) {
        ms_conn_respond_error(c, 431, "the request head is larger than max_header_size");
        return;
    }
    /* keep reading unless the buffer is full or the upstream is backed up:
     * toggling the watcher per request would cost epoll_ctl calls */
    if (c->state == MS_C_CLOSING)
        return;
    if ((c->state == MS_C_PROXY || c->state == MS_C_BODY) && c->pos == c->len && c->len > c->head_end &&
        !c->req_done) {
        c->len = c->pos = c->head_end; /* forwarded body bytes are written or copied */
        if (c->chunk_off != UINT32_MAX)
            c->chunk_off = c->head_end; /* and were checked */
    }
    bool backed_up = c->state == MS_C_PROXY && handler_backed_up(c);
    if ((!c->buf || c->len < c->cap) && !backed_up) { /* no buffer: idle, one comes with the next read */
        ms_conn_start_reading(c);
        if (body_phase(c) && !timer_set(c))
            set_timer(c, limits(c)->body_timeout_ms, on_body_timeout);
    } else {
        stop_reading(c);
        if (body_phase(c))
            clear_timer(c); /* waiting for the ship, not for the client */
    }
}

/* The upstream took what we sent it: read on. */
void ms_conn_upstream_drained(ms_conn *c)
{
    if (c->state == MS_C_PROXY)
        process(c);
}

/* Called by proxy.c once the upstream is connected and the head is sent. */
void ms_conn_resume_request_body(ms_conn *c)
{
    process(c);
}

/* ---------------------------------------------------------------- lingering close */
/* After a local response that ends the connection, the client may still be
 * sending the request (an upload refused with 413): closing at once with
 * unread input resets the connection, and the reset can destroy the
 * response before the client reads it. So: the write side is shut down
 * (the client sees the end of the response), input is read and discarded
 * for at most MS_LINGER_QUIET_MS of silence, MS_LINGER_TOTAL_MS in all and
 * MS_LINGER_MAX_BYTES, then the connection is closed. */
#define MS_LINGER_QUIET_MS 2000
#define MS_LINGER_TOTAL_MS 5000
#define MS_LINGER_MAX_BYTES ((uint64_t)4 << 20)

static void on_linger_timeout(uv_timer_t *t)
{
    ms_conn_close(t->data);
}

static void linger_arm(ms_conn *c)
{
    uint64_t now = ms_now_us();
    uint64_t left_ms = c->linger_end_us > now ? (c->linger_end_us - now) / 1000 : 0;
    if (left_ms == 0) {
        ms_conn_close(c);
        return;
    }
    set_timer(c, left_ms < MS_LINGER_QUIET_MS ? left_ms : MS_LINGER_QUIET_MS, on_linger_timeout);
}

static void start_linger(ms_conn *c)
{
    assert(c->writes_in_flight == 0 && !c->up);
    c->state = MS_C_LINGER;
    c->len = c->pos = 0; /* the request is answered: the buffer takes the discarded input */
    ms_bodybuf_free(&c->body); /* and its body (a temporary file) is not needed any more */
    c->linger_bytes = 0;
    c->linger_end_us = ms_now_us() + (uint64_t)MS_LINGER_TOTAL_MS * 1000;
    if (ms_xport_shutdown(c->x) != 0) { /* a failure later comes back as a failed write */
        ms_conn_close(c);
        return;
    }
    linger_arm(c);
    if (c->state == MS_C_LINGER)
        ms_conn_start_reading(c);
}

static void linger_read(ms_conn *c, ssize_t n)
{
    if (n < 0) {
        stop_reading(c);
        c->eof = true;
        ms_conn_close(c);
        return;
    }
    c->linger_bytes += (uint64_t)n;
    if (c->linger_bytes > MS_LINGER_MAX_BYTES)
        ms_conn_close(c);
    else
        linger_arm(c);
}

/* ---------------------------------------------------------------- end of a response */
static void finish_response(ms_conn *c)
{
    if (c->state == MS_C_LINGER || c->state == MS_C_CLOSING)
        return; /* a write failed on the way: the connection is already closing */
    if (c->close_after_write && c->linger && !c->eof && !c->w->stopping) {
        start_linger(c);
        return;
    }
    if (c->close_after_write || !c->keep_alive || c->eof || c->w->stopping || c->w->draining ||
        (c->g != c->w->cur && ms_wgen_bind_in(c->g, c->bind_idx, c->w->cur) < 0)) {
        ms_conn_close(c); /* (the last: its bind was removed by a reload) */
        return;
    }
    start_next_request(c);
}

void ms_conn_response_done(ms_conn *c)
{
    c->response_done = true;
    if (c->writes_in_flight == 0)
        finish_response(c);
}

void ms_conn_client_drained(ms_conn *c)
{
    if (c->state == MS_C_CLOSING)
        return;
    if (c->state == MS_C_WEBSOCKET) {
        handler_drained(c);
        return;
    }
    if (c->state == MS_C_PROXY || c->state == MS_C_TUNNEL || c->state == MS_C_STATIC)
        handler_drained(c); /* it may write more, or end its response */
    if (c->response_done && c->writes_in_flight == 0 && c->state != MS_C_CLOSING)
        finish_response(c);
}

static void on_idle_timeout(uv_timer_t *t)
{
    ms_conn *c = t->data;
    if (c->state == MS_C_HEAD)
        on_head_timeout(t);
}

/* Keep-alive: drop this request's bytes, keep pipelined ones, parse on. */
static void start_next_request(ms_conn *c)
{
    assert(c->state != MS_C_CLOSING && c->writes_in_flight == 0 && !c->up);
    if (!c->req_done && c->head_done && !c->has_body && !c->upgrade) {
        /* a local answer to a request without a body: step over its end */
        http_parser_pause(&c->parser, 0);
        size_t used = http_parser_execute(&c->parser, req_settings(), c->buf + c->pos, c->len - c->pos);
        c->pos += (uint32_t)used;
    }
    if (!c->req_done) {
        /* the response ended before the request body: the rest cannot be trusted */
        ms_conn_close(c);
        return;
    }
    size_t rest = c->len - c->pos;
    if (rest && c->pos)
        memmove(c->buf, c->buf + c->pos, rest);
    c->len = (uint32_t)rest;
    c->pos = 0;
    c->head_start = 0;
    c->head_end = 0;
    c->state = MS_C_HEAD;
    c->response_done = false;
    c->close_after_write = false;
    c->linger = false;
    c->head_done = false;
    c->req_done = false;
    c->bytes_out = 0;
    c->body_seen = 0;
    c->nhdr = 0;
    c->url_len = 0;      /* input refused before its method has no path, */
    c->start_us = 0;     /* no start (its duration counts as 0), */
    c->reqid_len = 0;    /* and an id of its own, not the last request's */
    c->error_status = 0;
    c->error_detail = NULL;
    c->retried = false;
    c->tries = 0;
    c->rr_taken = false;
    c->hold_until = 0;
    ms_bodybuf_free(&c->body);
    drop_held_payload_result(c);
    c->body_buffered = false;
    c->route = NULL;
    c->handler = NULL;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (rest == 0 && c->buf) {
        /* idle: give the buffer back; an idle connection costs only its struct */
        ms_spare_put(&c->w->spare_in, c->buf, c->cap);
        c->buf = NULL;
        c->hdr = NULL; /* nhdr is 0 already */
        c->cap = 0;
        ms_spare_put(&c->w->spare_out, c->out, c->out_cap); /* the last upstream request head */
        c->out = NULL;
        c->out_cap = c->out_len = 0;
        set_timer(c, limits(c)->idle_timeout_ms, on_idle_timeout);
    } else {
        set_timer(c, limits(c)->header_timeout_ms, on_head_timeout);
    }
    if (rest)
        process(c);
    if (c->state == MS_C_HEAD)
        ms_conn_start_reading(c);
}

/* ---------------------------------------------------------------- spare buffers */
char *ms_spare_take(ms_spares *s, uint32_t *cap)
{
    if (s->n == 0)
        return NULL;
    s->n--;
    *cap = s->cap[s->n];
    return s->buf[s->n];
}

void ms_spare_put(ms_spares *s, char *p, uint32_t cap)
{
    if (!p)
        return;
    if (s->n == MS_SPARES) {
        free(p);
        return;
    }
    s->buf[s->n] = p;
    s->cap[s->n] = cap;
    s->n++;
}

void ms_spares_free(ms_spares *s)
{
    while (s->n)
        free(s->buf[--s->n]);
}

/* ---------------------------------------------------------------- accepting */
static void on_xport_secured(void *owner, const unsigned char *alpn, unsigned len);

static const ms_xport_cbs conn_xport_cbs = {
    .alloc = on_alloc,
    .read = on_read,
    .written = on_xport_written,
    .closed = on_xport_closed,
    .secured = on_xport_secured,
};

/* The TLS handshake is done. When ALPN chose HTTP/2, an HTTP/2 session
 * takes the transport and this connection ends without it. When it chose
 * acme-tls/1 (tls/server.c answered a tls-alpn-01 challenge), the
 * handshake was all there is to it: RFC 8737 §3, nothing else is served on
 * that connection, which ends here. */
static void on_xport_secured(void *owner, const unsigned char *alpn, unsigned len)
{
    ms_conn *c = owner;
    if (len == 10 && memcmp(alpn, "acme-tls/1", 10) == 0) {
        ms_conn_close(c);
        return;
    }
    if (c->state != MS_C_HEAD || len != 2 || memcmp(alpn, "h2", 2) != 0)
        return;
    if (!ms_h2_start(c->g, c->bind_idx, c->x, c->peer, c->peer_port, true)) {
        ms_conn_close(c); /* the client speaks HTTP/2 from now on */
        return;
    }
    c->x = NULL;
    c->reading = false;
    c->write_pending = 0;
    c->writes_in_flight = 0;
    c->handles_open--;
    ms_conn_close(c);
}

/* On a TLS bind the socket is wrapped in TLS before anything is read. */
static bool conn_secure(ms_conn *c)
{
    ms_worker *w = c->w;
    if (!c->g->m->global.binds[c->bind_idx].tls)
        return true;
    SSL *ssl = c->g->tls ? ms_tls_server_ssl(c->g->tls, c->bind_idx) : NULL;
    if (!ssl)
        return false;
    ms_xport *t = ms_xport_tls_new(&w->loop, c->x, ssl, w->tls_rbuf, MS_TLS_RBUF,
                                   &w->tls_hs[(size_t)c->g->bind_id[c->bind_idx] * MS_TLS_HS_COUNT]);
    if (!t) {
        SSL_free(ssl);
        return false;
    }
    c->x = t;
    c->secure = true;
    return true;
}

/* A connection whose transport comes later (conn_attach) or never (then it
 * is closed and freed with its timer alone). */
static ms_conn *conn_new(ms_wgen *g, uint32_t bind_idx)
{
    ms_worker *w = g->w;
    ms_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    c->g = ms_wgen_hold(g);
    c->bind_idx = bind_idx;
    c->file_fd = -1;
    c->body.fd = -1;
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 1;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    __atomic_store_n(&w->open_conns, w->nconns, __ATOMIC_RELAXED);
    return c;
}

static void conn_attach(ms_conn *c, ms_xport *x)
{
    assert(!c->x && c->handles_open == 1);
    c->x = x;
    c->handles_open++;
    ms_xport_set_owner(x, &conn_xport_cbs, c);
}

static void conn_begin(ms_conn *c)
{
    if (!c->peer[0])
        strcpy(c->peer, "unix");
    c->state = MS_C_HEAD;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    set_timer(c, limits(c)->header_timeout_ms, on_head_timeout);
    ms_conn_start_reading(c);
}

ms_xport *ms_conn_release_xport(ms_conn *c)
{
    ms_xport *x = c->x;
    assert(x && c->handles_open >= 2);
    c->x = NULL;
    c->handles_open--;
    c->reading = false;
    ms_conn_close(c);
    return x;
}

ms_conn *ms_conn_start_on(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port,
                          bool secure)
{
    ms_conn *c = conn_new(g, bind_idx);
    if (!c)
        return NULL;
    conn_attach(c, x);
    c->secure = secure;
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "");
    c->peer_port = peer_port;
    conn_begin(c);
    return c;
}

bool ms_conn_accept(ms_listener *l)
{
    ms_worker *w = l->w;
    ms_conn *c = conn_new(w->cur, l->bind_idx);
    if (!c)
        return false;
    ms_xport *x = ms_xport_socket_new(&w->loop, l->is_unix, &conn_xport_cbs, c);
    if (!x) {
        ms_conn_close(c);
        return false;
    }
    conn_attach(c, x);
    if (ms_xport_socket_accept(x, &l->io.s) != 0) {
        ms_conn_close(c);
        return true;
    }
    __atomic_fetch_add(&w->accepted, 1, __ATOMIC_RELAXED);
    if (w->nconns > w->max_conns || w->stopping) {
        __atomic_fetch_add(&w->rejected, 1, __ATOMIC_RELAXED);
        ms_conn_close(c);
        return true;
    }
    if (!l->is_unix)
        c->peer_port = (uint16_t)ms_xport_peer_name(x, c->peer, sizeof c->peer);
    if (!conn_secure(c)) {
        ms_conn_close(c);
        return true;
    }
    conn_begin(c);
    return true;
}

/* A connected Unix stream socket handed in (tests, fuzzing). */
int ms_conn_adopt(ms_worker *w, int fd, uint32_t bind_idx)
{
    ms_conn *c = conn_new(w->cur, bind_idx);
    if (!c)
        return UV_ENOMEM;
    ms_xport *x = ms_xport_socket_new(&w->loop, true, &conn_xport_cbs, c);
    if (!x) {
        ms_conn_close(c);
        return UV_ENOMEM;
    }
    conn_attach(c, x);
    int rc = ms_xport_socket_open(x, fd);
    if (rc != 0) {
        ms_conn_close(c);
        return rc;
    }
    if (!conn_secure(c)) {
        ms_conn_close(c);
        return UV_ENOMEM;
    }
    conn_begin(c);
    return 0;
}

/* ---------------------------------------------------------------- end of a drain */
/* The drain's time is up and the connection is still busy. A request not
 * yet answered gets a 503 (Connection: close, Retry-After); a response
 * under way is the handler's to end (a WebSocket tunnelled to a ship gets
 * a close frame), else it can only be cut. */
void ms_conn_drain_end(ms_conn *c)
{
    bool unanswered = c->state == MS_C_HEAD || c->state == MS_C_BODY || c->state == MS_C_UPSTREAM ||
                      (c->state == MS_C_PROXY && !c->response_done && !handler_partial_status(c));
    if (unanswered) {
        handler_abort(c);
        c->keep_alive = false;
        ms_conn_respond_error(c, 503, "Mothership is stopping and the request did not finish within shutdown_timeout");
        return;
    }
    if (c->state != MS_C_CLOSING && c->handler && c->handler->drain_end) {
        c->handler->drain_end(c);
        return;
    }
    ms_conn_close(c);
}

/* ---------------------------------------------------------------- events from handlers */
/* The transitions a handler asks for (handler.h); no handler writes the
 * session's state itself. */
void ms_conn_end_after_response(ms_conn *c, bool linger)
{
    c->close_after_write = true;
    c->linger = linger;
}

void ms_conn_responded(ms_conn *c)
{
    if (c->state == MS_C_CLOSING)
        return;
    c->state = MS_C_RESPONDED;
    ms_conn_response_done(c);
}

void ms_conn_response_streaming(ms_conn *c)
{
    assert(c->state == MS_C_HEAD && c->handler && c->handler->drained);
    c->state = MS_C_STATIC;
}

void ms_conn_record_ahead(ms_conn *c, int status, uint64_t body_bytes)
{
    uint64_t out = c->bytes_out;
    c->bytes_out += body_bytes;
    ms_conn_record(c, status);
    c->bytes_out = out;
}

bool ms_conn_is_closing(const ms_conn *c)
{
    return c->state == MS_C_CLOSING;
}

uint64_t ms_conn_write_pending(const ms_conn *c)
{
    return c->write_pending;
}

bool ms_conn_writing(const ms_conn *c)
{
    return c->writes_in_flight > 0;
}

int ms_conn_socket_fd(const ms_conn *c)
{
    return c->x && c->state != MS_C_CLOSING ? ms_xport_fileno(c->x) : -1;
}

void ms_conn_sent_around(ms_conn *c, uint64_t n)
{
    c->bytes_out += n;
}

void ms_conn_hand_over(ms_conn *c)
{
    assert(c->state == MS_C_HEAD && c->handler && c->handler->data);
    c->state = MS_C_WEBSOCKET; /* reads go to the worker's shared buffer from now on */
    size_t rest = c->len > c->head_end ? c->len - c->head_end : 0;
    char *buf = c->buf;
    c->buf = NULL;
    c->hdr = NULL; /* freed with buf: the handler has taken what it needed */
    c->nhdr = 0;
    c->cap = c->len = c->pos = 0;
    free(c->out);
    c->out = NULL;
    c->out_cap = c->out_len = 0;
    if (rest)
        c->handler->data(c, buf + c->head_end, rest);
    free(buf);
}

void ms_conn_stop_reading(ms_conn *c)
{
    stop_reading(c);
}

void ms_conn_timer_start(ms_conn *c, uv_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms)
{
    if (c->state != MS_C_CLOSING) {
        clear_timer(c); /* the handler's timer replaces the lazy deadline */
        c->timer_at = UINT64_MAX; /* not on_conn_timer's: a later set_timer restarts it */
        uv_timer_start(&c->timer, cb, timeout_ms, repeat_ms);
    }
}

/* The worker begins to drain: idle connections close now, a handler that
 * can end gracefully is told; the others finish their request. */
void ms_conn_drain_start(ms_conn *c)
{
    if ((c->state == MS_C_HEAD && c->len == c->pos && !c->head_done) || c->state == MS_C_LINGER)
        ms_conn_close(c);
    else if (c->state != MS_C_CLOSING && c->handler && c->handler->shutdown)
        c->handler->shutdown(c);
}

void ms_conn_hold_request(ms_conn *c)
{
    assert(c->state == MS_C_HEAD || c->state == MS_C_BODY || c->state == MS_C_UPSTREAM || c->state == MS_C_PROXY);
    c->state = MS_C_UPSTREAM;
}

void ms_conn_stream_request(ms_conn *c)
{
    assert(c->state == MS_C_UPSTREAM && c->handler);
    c->state = MS_C_PROXY;
}

size_t ms_conn_switch_protocols(ms_conn *c, const char **rest)
{
    assert(c->state == MS_C_PROXY && c->handler && c->handler->data && c->buf);
    c->state = MS_C_TUNNEL;
    clear_timer(c);
    uv_timer_stop(&c->timer);
    ms_conn_record(c, 101);
    c->tunnel_open = true; /* its bytes and duration are counted when it ends */
    c->tunnel_start_us = ms_now_us();
    c->bytes_out = 0;
    /* a body the request had went to the handler already (the parser
     * stopped after it), so from there, not the head */
    uint32_t from = c->pos > c->head_end ? c->pos : c->head_end;
    size_t n = c->len > from ? c->len - from : 0;
    c->tunnel_bytes_up = n;
    *rest = c->buf + from;
    c->len = c->pos = 0; /* the bytes stay where they are until the next read */
    return n;
}

/* Bytes from the client in a tunnel: straight on to the handler. */
static void tunnel_read(ms_conn *c, size_t n)
{
    c->tunnel_bytes_up += n;
    c->handler->data(c, c->buf + c->len - n, n);
    c->len = 0;
}

void ms_conn_end_with(ms_conn *c, const char *data, size_t len)
{
    if (c->state == MS_C_CLOSING)
        return;
    stop_reading(c);
    c->state = MS_C_RESPONDED;
    c->close_after_write = true;
    ms_conn_write(c, data, len, true);
    ms_conn_response_done(c);
}
