/* proxy.c: the upstream side of a proxied request. Picks a pooled
 * keep-alive connection to the ship (or connects: TCP or Unix socket),
 * sends the rewritten request head (hop-by-hop headers removed,
 * X-Forwarded-*, X-Request-Id and X-Request-Start set), streams the request
 * body, parses the response with http-parser and streams it to the client
 * with its head rewritten. A body read whole beforehand (conn.c, bodybuf.c)
 * is sent from memory or from its temporary file a piece at a time, the
 * next piece only once the last one is written. Bytes are passed by
 * reference, never copied: the side that reads pauses while the other
 * side's writes are in flight, which is also the backpressure. The upstream
 * timeout runs while a write to the ship is stalled and from the request's
 * last byte written to the response head. After a 101 the two sockets are
 * tunnelled.
 * A route to a ship with instances balances each request over them and
 * their surge replacements (round robin, or least_conn: fewest requests in
 * flight), skipping the ones not ready, with their circuit open, draining,
 * or ejected for a while after a failure (passive health).
 * Failures: refused/reset before a response -> 502 (one retry on a fresh
 * connection for an idempotent request without a body on a reused pooled
 * connection; another instance for one that could not be sent), breaker
 * open or ship not ready -> 503 (held first while it restarts in place),
 * too slow -> 504. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/framing.h"
#include "http/handler.h"
#include "http/http_impl.h"
#include "http/resp_head.h"

static const http_parser_settings *resp_settings(void);
static void up_close(ms_upconn *u);
static void track_ship_frames(ms_upconn *u, const unsigned char *p, size_t n);
static void proxy_connect(ms_conn *c, bool allow_pool);
static void proxy_abort(ms_conn *c);
static void up_fail(ms_upconn *u, ms_upstream_error kind, const char *what);
static void send_head(ms_upconn *u);
static void drop_compressor(ms_upconn *u);
static void send_buffered_body(ms_upconn *u);
static void request_timer(ms_upconn *u);
static void up_timer_clear(ms_upconn *u);
static bool proxy_start(ms_conn *c, const ms_handler_arg *arg);
static void unhold(ms_conn *c);

/* A process a request may go to: instance ship's process of that parity. */
typedef struct cand {
    ms_proc *proc;                 /* NULL: no fleet */
    size_t ship;
    unsigned parity;
} cand;

typedef enum pick { PICK_OK, PICK_NONE, PICK_HOLD } pick;
static pick choose(ms_conn *c, const char **why);
static void eject(ms_upconn *u);

/* ---------------------------------------------------------------- helpers */
static const ms_http_limits *limits(const ms_wgen *g)
{
    return &g->m->global.http;
}

static const char *ship_name(const ms_wgen *g, size_t ship)
{
    return g->m->ships[ship].name;
}

/* "1a2b\r\n": a chunk's size line. Returns its length. */
size_t ms_chunk_header(size_t len, char out[24])
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[len & 15];
        len >>= 4;
    } while (len);
    size_t o = 0;
    while (n)
        out[o++] = tmp[--n];
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

/* Two digits per division: X-Request-Start's 16-digit microseconds are
 * written for every request. */
size_t ms_u64_dec(uint64_t v, char out[24])
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[24];
    size_t n = sizeof tmp;
    while (v >= 100) {
        size_t d = (size_t)(v % 100) * 2;
        v /= 100;
        tmp[--n] = pairs[d + 1];
        tmp[--n] = pairs[d];
    }
    if (v >= 10) {
        tmp[--n] = pairs[v * 2 + 1];
        tmp[--n] = pairs[v * 2];
    } else {
        tmp[--n] = (char)('0' + v);
    }
    memcpy(out, tmp + n, sizeof tmp - n);
    return sizeof tmp - n;
}

static bool name_eq(const char *a, size_t alen, const char *b)
{
    return ms_name_is(a, alen, b);
}

/* Is this request header named in one of its Connection headers? The
 * framing headers and Host never count as named: obeying that would let a
 * client remove what the ship needs to read the request as Mothership did
 * (resp_head.c has the same rule for responses). */
static bool named_in_connection(const char *buf, const ms_hdr *hdr, uint16_t n, const char *name, size_t nlen)
{
    if (name_eq(name, nlen, "content-length") || name_eq(name, nlen, "transfer-encoding") ||
        name_eq(name, nlen, "host"))
        return false;
    for (uint16_t i = 0; i < n; i++)
        if (name_eq(buf + hdr[i].name, hdr[i].name_len, "connection") &&
            ms_token_listed(buf + hdr[i].val, hdr[i].val_len, name, nlen))
            return true;
    return false;
}

/* u serves c from now on: counted in the in-flight requests of the process
 * chosen for c, until up_unclaim. */
static void up_claim(ms_upconn *u, ms_conn *c)
{
    u->client = c;
    c->up = u;
    u->proc = c->proc;
    if (u->proc)
        __atomic_fetch_add(&u->proc->inflight, 1, __ATOMIC_RELAXED);
}

/* The exchange on u is over, however it ended. */
static void up_unclaim(ms_upconn *u)
{
    if (u->client && u->proc)
        __atomic_fetch_sub(&u->proc->inflight, 1, __ATOMIC_RELEASE);
    u->client = NULL;
    u->proc = NULL;
}

/* ---------------------------------------------------------------- writing upstream */
typedef struct uwreq {
    uv_write_t req;
    ms_upconn *u;
    size_t len;
    char data[];
} uwreq;

static void on_up_write(uv_write_t *req, int status)
{
    uwreq *r = (uwreq *)req;
    ms_upconn *u = r->u;
    assert(u->writes_in_flight > 0 && u->write_pending >= r->len);
    u->write_pending -= r->len;
    u->writes_in_flight--;
    free(r);
    if (u->closing)
        return;
    if (status < 0) {
        up_fail(u, MS_UPERR_RESET, "closed the connection while the request was sent");
        return;
    }
    request_timer(u); /* the ship is reading: its time starts again */
    if (u->writes_in_flight == 0 && u->client) {
        if (u->client->body_buffered && !u->req_sent)
            send_buffered_body(u);
        else
            ms_conn_upstream_drained(u->client);
    }
}

static void up_write(ms_upconn *u, const char *data, size_t len)
{
    if (u->closing || len == 0)
        return;
    if (u->writes_in_flight == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write(&u->io.s, &b, 1);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN) {
            up_fail(u, MS_UPERR_RESET, "closed the connection while the request was sent");
            return;
        }
        if (len == 0)
            return;
    }
    /* what the socket does not take now is copied: nothing in flight points
     * into the client's buffer */
    uwreq *r = malloc(sizeof *r + len);
    if (!r) {
        up_fail(u, MS_UPERR_RESET, "out of memory");
        return;
    }
    r->u = u;
    r->len = len;
    memcpy(r->data, data, len);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
    if (uv_write(&r->req, &u->io.s, &b, 1, on_up_write) != 0) {
        free(r);
        up_fail(u, MS_UPERR_RESET, "closed the connection while the request was sent");
        return;
    }
    u->write_pending += len;
    u->writes_in_flight++;
}

/* ---------------------------------------------------------------- the request head */
static bool out_grow(ms_conn *c, size_t more)
{
    if (!c->out) { /* a buffer another request left */
        uint32_t cap = 0;
        c->out = ms_spare_take(&c->w->spare_out, &cap);
        c->out_cap = c->out ? cap : 0;
        if (c->out_len + more <= c->out_cap)
            return true;
    }
    size_t ncap = c->out_cap ? c->out_cap * 2 : 2048;
    while (ncap < c->out_len + more)
        ncap *= 2;
    char *n = realloc(c->out, ncap);
    if (!n)
        return false;
    c->out = n;
    c->out_cap = (uint32_t)ncap;
    return true;
}

/* Inline: a request head is some 25 pieces, most of them constants. */
static inline bool out_reserve(ms_conn *c, size_t more)
{
    return c->out_len + more <= c->out_cap || out_grow(c, more);
}

static inline bool out_add(ms_conn *c, const char *s, size_t n)
{
    if (!out_reserve(c, n))
        return false;
    memcpy(c->out + c->out_len, s, n);
    c->out_len += (uint32_t)n;
    return true;
}

static inline bool out_str(ms_conn *c, const char *s)
{
    return out_add(c, s, strlen(s));
}

/* The request's framing, always Mothership's own (the client's
 * Content-Length and Transfer-Encoding are never copied): the length of a
 * buffered body; chunked when the body is streamed as chunks; else the
 * length the head declared. */
static bool append_request_framing(ms_conn *c)
{
    if (c->body_buffered) { /* the whole body is held: its length is known, chunked or not */
        char len[24];
        return out_str(c, "Content-Length: ") && out_add(c, len, ms_u64_dec(c->body.len, len)) &&
               out_add(c, "\r\n", 2);
    }
    if (c->chunked)
        return out_str(c, "Transfer-Encoding: chunked\r\n");
    if (c->body_length == ULLONG_MAX)
        return true; /* no body */
    char num[24];
    return out_str(c, "Content-Length: ") && out_add(c, num, ms_u64_dec(c->body_length, num)) &&
           out_add(c, "\r\n", 2);
}

static bool build_request_head(ms_conn *c)
{
    const ms_route *route = c->route->route;
    const char *path = c->buf + c->url_off;
    size_t plen = c->path_len;
    const char *query = path + plen;
    size_t qlen = c->url_len - plen;
    const ms_payload_result *pres = ms_conn_payload_result(c);
    bool query_from_payload = false;
    if (pres && pres->path_set) {
        path = pres->path.ptr;
        plen = pres->path.len;
        if (pres->query_set) {
            query = pres->query.ptr;
            qlen = pres->query.len;
            query_from_payload = true;
        }
    }
    if (route->strip_prefix) {
        /* only where a segment ends: "/api" off "/api../x" would leave "/../x" */
        size_t sl = strlen(route->strip_prefix);
        if (plen >= sl && memcmp(path, route->strip_prefix, sl) == 0 &&
            (plen == sl || path[sl] == '/' || route->strip_prefix[sl - 1] == '/')) {
            path += sl;
            plen -= sl;
        }
    }
    c->out_len = 0;
    const char *method = http_method_str((enum http_method)c->parser.method);
    bool ok = out_str(c, method) && out_add(c, " ", 1);
    /* "OPTIONS *" goes on as "*", not as a path no payload was matched on */
    bool asterisk = path == c->buf + c->url_off && plen == 1 && path[0] == '*';
    if (!asterisk && (plen == 0 || path[0] != '/'))
        ok = ok && out_add(c, "/", 1);
    ok = ok && out_add(c, path, plen);
    if (query_from_payload && qlen)
        ok = ok && out_add(c, "?", 1);
    ok = ok && out_add(c, query, qlen) && out_str(c, " HTTP/1.1\r\n");
    const ms_hdr *xff = NULL, *host = NULL;
    for (uint16_t i = 0; ok && i < c->nhdr; i++) {
        const ms_hdr *h = &c->hdr[i];
        const char *n = c->buf + h->name;
        size_t nl = h->name_len;
        if (name_eq(n, nl, "connection") || name_eq(n, nl, "keep-alive") || name_eq(n, nl, "proxy-connection") ||
            name_eq(n, nl, "te") || name_eq(n, nl, "trailer") || name_eq(n, nl, "transfer-encoding") ||
            name_eq(n, nl, "content-length") || name_eq(n, nl, "http2-settings") ||
            name_eq(n, nl, "proxy-authorization") || name_eq(n, nl, "x-forwarded-proto") ||
            name_eq(n, nl, "x-forwarded-host") || name_eq(n, nl, "x-request-id") ||
            name_eq(n, nl, "x-request-start") || (name_eq(n, nl, "upgrade") && !c->upgrade) ||
            (name_eq(n, nl, "expect") && c->buffering) ||
            (named_in_connection(c->buf, c->hdr, c->nhdr, n, nl) && !(c->upgrade && name_eq(n, nl, "upgrade"))))
            continue;
        if (name_eq(n, nl, "x-forwarded-for")) {
            xff = h;
            continue;
        }
        if (name_eq(n, nl, "host"))
            host = h;
        if (pres && !ms_payload_keeps_header(pres, n, nl))
            continue; /* removed or replaced by a payload */
        ok = out_add(c, n, nl) && out_add(c, ": ", 2) && out_add(c, c->buf + h->val, h->val_len) &&
             out_add(c, "\r\n", 2);
    }
    for (size_t i = 0; pres && ok && i < pres->nedits; i++) {
        if (!ms_payload_edit_live(pres, i))
            continue;
        const ms_payload_edit *e = &pres->edits[i];
        ok = out_add(c, e->name.ptr, e->name.len) && out_add(c, ": ", 2) && out_add(c, e->value.ptr, e->value.len) &&
             out_add(c, "\r\n", 2);
    }
    /* the added headers, without printf: this runs for every request */
    ok = ok && out_str(c, "X-Forwarded-For: ");
    if (xff)
        ok = ok && out_add(c, c->buf + xff->val, xff->val_len) && out_add(c, ", ", 2);
    ok = ok && out_str(c, c->peer) && out_str(c, c->secure ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
    if (host)
        ok = ok && out_str(c, "X-Forwarded-Host: ") && out_add(c, c->buf + host->val, host->val_len) &&
             out_add(c, "\r\n", 2);
    char num[24];
    ok = ok && out_str(c, "X-Request-Id: ") && out_add(c, c->reqid, c->reqid_len) &&
         out_str(c, "\r\nX-Request-Start: t=") && out_add(c, num, ms_u64_dec(c->start_us, num)) &&
         out_add(c, "\r\n", 2);
    ok = ok && append_request_framing(c);
    if (c->upgrade)
        ok = ok && out_str(c, "Connection: Upgrade\r\n");
    ok = ok && out_add(c, "\r\n", 2);
    return ok;
}

/* ---------------------------------------------------------------- request body */
static void proxy_body(ms_conn *c, const char *data, size_t len)
{
    ms_upconn *u = c->up;
    if (!u || len == 0)
        return;
    if (c->chunked) {
        char hdr[24];
        size_t n = ms_chunk_header(len, hdr);
        up_write(u, hdr, n);
        up_write(u, data, len);
        up_write(u, "\r\n", 2);
    } else {
        up_write(u, data, len);
    }
    request_timer(u); /* a write the ship does not take is timed */
}

static void proxy_body_end(ms_conn *c)
{
    ms_upconn *u = c->up;
    if (!u)
        return;
    if (c->chunked)
        up_write(u, "0\r\n\r\n", 5);
    u->req_sent = true;
    request_timer(u);
}

/* A body read whole before the upstream: the next pieces, from memory or
 * from the temporary file, while the ship takes them at once; otherwise
 * on_up_write calls again when the last piece is written. Memory stays at
 * the body store's bound plus at most one piece queued. */
static void send_buffered_body(ms_upconn *u)
{
    ms_conn *c = u->client;
    assert(c && c->body_buffered);
    while (!u->req_sent && u->writes_in_flight == 0 && !u->closing && u->client == c) {
        const char *data;
        size_t len;
        int rc = ms_bodybuf_next(&c->body, &data, &len);
        if (rc != 0) {
            up_close(u); /* the ship sees a cut-off request, never a complete wrong one */
            ms_conn_respond_error(c, 500, "cannot read the buffered request body back from its temporary file");
            return;
        }
        if (len == 0) {
            ms_bodybuf_free(&c->body); /* the file goes now, not with the response */
            u->req_sent = true;
            break;
        }
        up_write(u, data, len); /* what the socket does not take is copied */
    }
    if (!u->closing && u->client == c)
        request_timer(u);
}

/* ---------------------------------------------------------------- the response */
static int r_on_status(http_parser *p, const char *at, size_t len)
{
    ms_upconn *u = p->data;
    if (u->reason_len == 0)
        u->reason_off = (uint32_t)(at - u->rbuf);
    u->reason_len += (uint32_t)len;
    return 0;
}

static int r_on_header_field(http_parser *p, const char *at, size_t len)
{
    ms_upconn *u = p->data;
    if (u->head_done)
        return 0; /* a trailer of a chunked response: dropped */
    if (u->nhdr == 0 || u->last_was_value) {
        if (u->nhdr == MS_MAX_HEADERS)
            return 1;
        ms_hdr *h = &u->hdr[u->nhdr++];
        h->name = (uint32_t)(at - u->rbuf);
        h->name_len = 0;
        h->val = h->val_len = 0;
        u->last_was_value = false;
    }
    u->hdr[u->nhdr - 1].name_len += (uint32_t)len;
    return 0;
}

static int r_on_header_value(http_parser *p, const char *at, size_t len)
{
    ms_upconn *u = p->data;
    if (u->head_done)
        return 0;
    ms_hdr *h = &u->hdr[u->nhdr - 1];
    if (!u->last_was_value) {
        h->val = (uint32_t)(at - u->rbuf);
        h->val_len = 0;
        u->last_was_value = true;
    }
    h->val_len += (uint32_t)len;
    return 0;
}

static int r_on_headers_complete(http_parser *p)
{
    ms_upconn *u = p->data;
    u->head_done = true;
    u->status = (int)p->status_code;
    if (u->client && ms_conn_logs_access(u->client))
        u->client->up_head_us = ms_now_us();
    http_parser_pause(p, 1);
    /* a response to HEAD has no body, whatever its headers say */
    return u->is_head_request ? 1 : 0;
}

/* Write compressor output (if any) as one chunk. */
static void flush_compressed(ms_upconn *u, ms_conn *c)
{
    if (u->cbuf.len == 0)
        return;
    if (u->chunk_to_client) {
        char hdr[24];
        int n = snprintf(hdr, sizeof hdr, "%zx\r\n", u->cbuf.len);
        ms_conn_write(c, hdr, (size_t)n, true);
        ms_conn_write(c, (const char *)u->cbuf.data, u->cbuf.len, true);
        ms_conn_write(c, "\r\n", 2, false);
    } else {
        ms_conn_write(c, (const char *)u->cbuf.data, u->cbuf.len, true);
    }
    u->cbuf.len = 0;
}

static int r_on_body(http_parser *p, const char *at, size_t len)
{
    ms_upconn *u = p->data;
    ms_conn *c = u->client;
    if (!c || len == 0)
        return 0;
    if (u->comp) {
        if (ms_compressor_write(u->comp, at, len, false, &u->cbuf) != 0)
            return 1; /* broken stream: the response is aborted */
        u->comp_unflushed = true;
        flush_compressed(u, c);
        return 0;
    }
    if (u->chunk_to_client) {
        char hdr[24];
        size_t n = ms_chunk_header(len, hdr);
        ms_conn_write(c, hdr, n, true);
        ms_conn_write(c, at, len, false); /* borrowed from rbuf until the uncork */
        ms_conn_write(c, "\r\n", 2, false);
    } else {
        ms_conn_write(c, at, len, false);
    }
    return 0;
}

static int r_on_message_complete(http_parser *p)
{
    ms_upconn *u = p->data;
    if (u->status >= 100 && u->status < 200 && u->status != 101) {
        /* an interim response (100 Continue): the real one follows */
        u->head_done = false;
        u->head_sent = false;
        u->nhdr = 0;
        u->reason_len = 0;
        u->last_was_value = false;
        request_timer(u); /* and the real response has the same time */
        return 0;
    }
    u->resp_done = true;
    u->keep_alive = http_should_keep_alive(p);
    ms_conn *c = u->client;
    if (u->comp && c) {
        if (ms_compressor_write(u->comp, NULL, 0, true, &u->cbuf) != 0) {
            ms_conn_record(c, u->status); /* its head was sent: counted with that status */
            return 1;
        }
        flush_compressed(u, c);
    }
    if (u->chunk_to_client && u->client && !u->final_chunk_sent) {
        u->final_chunk_sent = true;
        ms_conn_write(u->client, "0\r\n\r\n", 5, false);
    }
    /* counted with the encoder's last bytes and the last chunk (its bytes
     * written), before they leave: the client is corked while its
     * response is parsed */
    if (c)
        ms_conn_record(c, u->status);
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings *resp_settings(void)
{
    static const http_parser_settings s = {
        .on_status = r_on_status,
        .on_header_field = r_on_header_field,
        .on_header_value = r_on_header_value,
        .on_headers_complete = r_on_headers_complete,
        .on_body = r_on_body,
        .on_message_complete = r_on_message_complete,
    };
    return &s;
}

bool ms_proxy_response_payloads(ms_conn *c, int status, size_t nheaders, char *detail, size_t dlen,
                                const ms_payload_result **edits)
{
    ms_worker *w = c->w;
    const ms_payload_set *ps = c->g->payloads;
    ms_payload_result *res = &w->pres;
    const char *method = http_method_str((enum http_method)c->parser.method);
    ms_payload_req req = { .method = { method, strlen(method) },
                           .path = { c->buf + c->url_off, c->path_len },
                           .client = { c->peer, strlen(c->peer) } };
    ms_payload_resp resp = { .status = status, .headers = w->phdrs, .nheaders = nheaders };
    bool ran = false;
    for (size_t i = 0; i < ms_payload_count(ps); i++) {
        if (ms_payload_phase(ps, i) != MS_PHASE_RESPONSE ||
            !ms_module_applies(c->g->routes, i, c->buf + c->url_off, c->path_len, w->match_data))
            continue;
        ran = true;
        ms_payload_err e = ms_payload_run_response(c->g->pw, i, &req, &resp, res);
        if (e != MS_PAYLOAD_OK) {
            const ms_module *mod = ms_payload_module(ps, i);
            ms_worker_payload_log(w, mod, 2, res->error, strlen(res->error));
            if (mod->fail_open)
                continue;
            snprintf(detail, dlen, "module \"%s\" failed (%s)", mod->name, ms_payload_err_name(e));
            return false;
        }
    }
    if (ran && res->nedits > 0)
        *edits = res;
    return true;
}

/* Response-phase payloads whose patterns match the request's path, in
 * manifest order: they may set, add or remove response headers. Returns
 * false when one failed and the module fails closed (the caller answers
 * 500); *edits is the result to apply, or NULL. */
static bool run_response_payloads(ms_upconn *u, char *detail, size_t dlen, const ms_payload_result **edits)
{
    ms_conn *c = u->client;
    ms_worker *w = c->w;
    *edits = NULL;
    if (!c->g->pw)
        return true;
    ms_payload_result_reset(&w->pres);
    for (uint16_t i = 0; i < u->nhdr; i++) {
        w->phdrs[i].name = (ms_payload_slice){ u->rbuf + u->hdr[i].name, u->hdr[i].name_len };
        w->phdrs[i].value = (ms_payload_slice){ u->rbuf + u->hdr[i].val, u->hdr[i].val_len };
    }
    return ms_proxy_response_payloads(c, u->status, u->nhdr, detail, dlen, edits);
}

/* Response-phase payload edits, for resp_head.c. */
bool ms_proxy_edits_keep(const void *arg, const char *name, size_t len)
{
    return ms_payload_keeps_header(arg, name, len);
}

bool ms_proxy_edits_added(const void *arg, size_t i, ms_field *out)
{
    const ms_payload_result *pres = arg;
    if (!ms_payload_edit_live(pres, i))
        return false; /* (the payload ABI refuses edits of the framing headers) */
    const ms_payload_edit *e = &pres->edits[i];
    *out = (ms_field){ e->name.ptr, e->name.len, e->value.ptr, e->value.len };
    return true;
}

/* Write the response head to the client: upstream's status and headers with
 * hop-by-hop ones removed and our framing (from the parser's state, never
 * the ship's framing headers). Returns false, having written nothing, when
 * the head would be larger than MS_RESP_HEAD_MAX. */
static bool send_response_head(ms_upconn *u, const ms_payload_result *pres)
{
    ms_conn *c = u->client;
    http_parser *p = &u->parser;
    int st = u->status;
    bool no_body_status = st == 204 || st == 304 || (st >= 100 && st < 200);
    bool no_body = u->is_head_request || no_body_status;
    bool upstream_chunked = (p->flags & F_CHUNKED) != 0;
    bool has_length = p->content_length != ULLONG_MAX && !upstream_chunked;
    bool until_eof = !no_body && !has_length && !upstream_chunked;
    bool tunnel = st == 101 && c->upgrade;
    u->chunk_to_client = false;
    /* compress? only a 200 with a body of a compressible type that is not
     * already encoded, not tiny, and that the client accepts. A HEAD is
     * decided as its GET would be, and gets the same head without a body. */
    ms_encoding enc = MS_ENC_IDENTITY;
    const ms_hdr *ctype = NULL, *cenc = NULL, *cc = NULL;
    for (uint16_t i = 0; i < u->nhdr; i++) {
        const ms_hdr *h = &u->hdr[i];
        const char *nm = u->rbuf + h->name;
        if (name_eq(nm, h->name_len, "content-type"))
            ctype = h;
        else if (name_eq(nm, h->name_len, "content-encoding"))
            cenc = h;
        else if (name_eq(nm, h->name_len, "cache-control"))
            cc = h;
    }
    if (c->g->m->global.compression && st == 200 && !no_body_status && !cenc && ctype &&
        ms_compress_type_ok(u->rbuf + ctype->val, ctype->val_len) &&
        !(cc && memmem(u->rbuf + cc->val, cc->val_len, "no-transform", 12)) &&
        (!has_length || p->content_length >= MS_COMPRESS_MIN_SIZE)) {
        const ms_hdr *ae = ms_conn_header(c, "accept-encoding");
        bool forbidden = false;
        if (ae)
            enc = ms_compress_negotiate(c->buf + ae->val, ae->val_len, &forbidden);
        if (enc != MS_ENC_IDENTITY && !u->is_head_request) {
            u->comp = ms_compressor_new_in(&c->w->ccache, enc, -1, has_length ? p->content_length : 0);
            if (!u->comp)
                enc = MS_ENC_IDENTITY;
        }
    }
    if (enc != MS_ENC_IDENTITY) {
        /* the length changes: chunked (HTTP/1.1) or the close (HTTP/1.0) */
        has_length = false;
        until_eof = true;
    }
    if (!no_body && (upstream_chunked || until_eof)) {
        if (c->http_minor >= 1)
            u->chunk_to_client = true;
        else
            ms_conn_end_after_response(c, false); /* HTTP/1.0: the end of the body is the close */
    }
    /* a HEAD says the framing its GET would have (and sends no chunk) */
    bool head_chunked = u->is_head_request && !no_body_status && c->http_minor >= 1 &&
                        (upstream_chunked || enc != MS_ENC_IDENTITY);
    if (!c->keep_alive)
        ms_conn_end_after_response(c, false);
    /* the head (resp_head.c), written straight into the client's gather buffer */
    ms_field fields[MS_MAX_HEADERS];
    for (uint16_t i = 0; i < u->nhdr; i++)
        fields[i] = (ms_field){ u->rbuf + u->hdr[i].name, u->hdr[i].name_len, u->rbuf + u->hdr[i].val,
                                u->hdr[i].val_len };
    ms_resp_head h = {
        .status = st,
        .reason = u->rbuf + u->reason_off,
        .reason_len = u->reason_len,
        .fields = fields,
        .nfields = u->nhdr,
        .tunnel = tunnel,
        .keep = pres ? ms_proxy_edits_keep : NULL,
        .added = ms_proxy_edits_added,
        .nadded = pres ? pres->nedits : 0,
        .edits_arg = pres,
        .encoding = enc != MS_ENC_IDENTITY ? ms_encoding_name(enc) : NULL,
        .date = c->w->date,
        .date_len = c->w->date_len,
        .chunked = u->chunk_to_client || head_chunked,
        .has_length = has_length,
        .length = p->content_length,
        .connection = tunnel                  ? NULL
                      : c->close_after_write ? "close"
                      : c->http_minor == 0   ? "keep-alive"
                                             : NULL,
    };
    size_t bound = ms_resp_head_bound(&h);
    if (bound > MS_RESP_HEAD_MAX)
        return false;
    char *head = ms_conn_cork_reserve(c, bound);
    if (!head) {
        ms_conn_close(c);
        return true;
    }
    size_t hl = ms_resp_head_write(&h, head, bound);
    assert(hl > 0); /* the bound counts every append */
    if (hl == 0) {
        ms_conn_cork_commit(c, 0);
        return false;
    }
    ms_conn_cork_commit(c, hl);
    u->head_sent = true;
    return true;
}

/* ---------------------------------------------------------------- finishing */
static void on_up_closed(uv_handle_t *h)
{
    ms_upconn *u = h->data;
    assert(u->closing && u->handles_open > 0 && !u->idle_in_pool);
    if (--u->handles_open == 0) {
        ms_worker *w = u->w;
        w->nups--;
        drop_compressor(u);
        free(u->rbuf);
        ms_wgen_drop(u->g);
        free(u);
        ms_worker_maybe_done(w);
    }
}

static void pool_unlink(ms_upconn *u)
{
    ms_wgen *g = u->g;
    size_t k = MS_POOL(u->ship, u->parity);
    for (ms_upconn **pp = &g->pools[k]; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            g->pool_len[k]--;
            break;
        }
    }
    u->idle_in_pool = false;
}

static void up_close(ms_upconn *u)
{
    if (u->closing)
        return;
    u->closing = true;
    if (u->idle_in_pool)
        pool_unlink(u);
    if (u->client && u->client->up == u)
        u->client->up = NULL;
    up_unclaim(u);
    uv_close(&u->io.h, on_up_closed);
    uv_close((uv_handle_t *)&u->timer, on_up_closed);
}

/* Ship s's address for parity par (its bind, or its bind_alt), or NULL. */
static const char *ship_addr(const ms_ship *s, unsigned par)
{
    if (par == 0)
        return s->has_bind ? s->bind.text : NULL;
    return s->has_bind_alt ? s->bind_alt.text : NULL;
}

/* Ship s of from in to: the same name at the same address for parity par,
 * or SIZE_MAX. */
static size_t ship_in(const ms_wgen *from, size_t s, unsigned par, const ms_wgen *to)
{
    const ms_ship *a = &from->m->ships[s];
    const char *aa = ship_addr(a, par);
    for (size_t i = 0; aa && i < to->m->nships; i++) {
        const ms_ship *b = &to->m->ships[i];
        const char *ba = ship_addr(b, par);
        if (ba && strcmp(a->name, b->name) == 0 && strcmp(aa, ba) == 0)
            return i;
    }
    return SIZE_MAX;
}

/* u (idle or just done) belongs to generation to from now on, as its ship. */
static void rehome(ms_upconn *u, ms_wgen *to, size_t ship)
{
    ms_wgen *old = u->g;
    u->g = ms_wgen_hold(to);
    u->ship = ship;
    ms_wgen_drop(old);
}

static void pool_push(ms_upconn *u)
{
    ms_wgen *g = u->g;
    size_t k = MS_POOL(u->ship, u->parity);
    u->next = g->pools[k];
    g->pools[k] = u;
    g->pool_len[k]++;
    u->idle_in_pool = true; /* still reading: data or EOF while idle closes it */
}

static void pool_put(ms_upconn *u)
{
    ms_worker *w = u->w;
    assert(!u->closing && !u->idle_in_pool && u->next == NULL);
    up_unclaim(u);
    u->rlen = u->rpos = 0;
    up_timer_clear(u);
    if (u->g != w->cur) { /* a request of an older generation: kept only if its ship has not moved */
        size_t ns = ship_in(u->g, u->ship, u->parity, w->cur);
        if (ns == SIZE_MAX) {
            up_close(u);
            return;
        }
        rehome(u, w->cur, ns);
    }
    if (w->stopping || u->g->pool_len[MS_POOL(u->ship, u->parity)] >= limits(u->g)->upstream_keepalive ||
        !u->reading) {
        up_close(u);
        return;
    }
    pool_push(u);
}

/* An idle connection of pool k (MS_POOL), or NULL. */
static ms_upconn *pool_get(ms_wgen *g, size_t k)
{
    while (g->pools[k]) {
        ms_upconn *u = g->pools[k];
        assert(u->idle_in_pool && u->client == NULL && g->pool_len[k] > 0);
        g->pools[k] = u->next;
        g->pool_len[k]--;
        u->next = NULL;
        u->idle_in_pool = false;
        if (!u->closing)
            return u;
    }
    return NULL;
}

static void pool_close_gen(ms_wgen *g)
{
    for (size_t k = 0; k < 2 * g->m->nships; k++) {
        ms_upconn *u;
        while ((u = pool_get(g, k)))
            up_close(u);
    }
}

void ms_pool_move(ms_wgen *from, ms_wgen *to)
{
    for (size_t k = 0; k < 2 * from->m->nships; k++) {
        unsigned par = (unsigned)(k % 2);
        size_t ns = from->pools[k] ? ship_in(from, k / 2, par, to) : SIZE_MAX;
        ms_upconn *u;
        while ((u = pool_get(from, k))) {
            if (ns == SIZE_MAX || to->pool_len[MS_POOL(ns, par)] >= limits(to)->upstream_keepalive) {
                up_close(u); /* its ship is gone or has moved */
                continue;
            }
            rehome(u, to, ns);
            pool_push(u);
        }
    }
}

void ms_pool_close_all(ms_worker *w)
{
    for (ms_wgen *g = w->gens; g; g = g->next)
        pool_close_gen(g);
    ms_hbay_close_idle(w); /* and HTTP bays' links without a request */
}

/* The exchange is over on both sides: recycle or close the upstream
 * connection, and let the client connection go on. */
static void drop_compressor(ms_upconn *u)
{
    if (u->comp) {
        ms_compressor_free(u->comp);
        u->comp = NULL;
    }
    u->comp_unflushed = false;
    ms_cbuf_free(&u->cbuf);
}

static void complete(ms_upconn *u)
{
    ms_conn *c = u->client;
    assert(c && c->up == u && u->resp_done && !u->closing);
    drop_compressor(u);
    bool reuse = u->keep_alive && c->req_done && u->req_sent && u->rpos == u->rlen && u->write_pending == 0;
    c->up = NULL;
    if (reuse)
        pool_put(u);
    else
        up_close(u);
    ms_conn_response_done(c);
}

/* The response is complete: everything is written or queued (as copies),
 * so the upstream connection can go back to the pool at once. */
static void maybe_complete(ms_upconn *u)
{
    ms_conn *c = u->client;
    if (u->resp_done && c) {
        if (u->chunk_to_client && !u->final_chunk_sent) { /* a body that ended with the close */
            u->final_chunk_sent = true;
            ms_conn_write(c, "0\r\n\r\n", 5, false);
        }
        complete(u);
    }
}

/* ---------------------------------------------------------------- errors */
static void up_fail(ms_upconn *u, ms_upstream_error kind, const char *what)
{
    ms_conn *c = u->client;
    ms_worker *w = u->w;
    if (!c) {
        up_close(u);
        return;
    }
    /* a reused pooled connection that the ship had closed: try once more */
    bool idempotent = c->parser.method == HTTP_GET || c->parser.method == HTTP_HEAD ||
                      c->parser.method == HTTP_OPTIONS || c->parser.method == HTTP_PUT ||
                      c->parser.method == HTTP_DELETE;
    bool stale = u->reused && !u->got_response_bytes && kind == MS_UPERR_RESET;
    if (stale && !c->retried && idempotent && !c->has_body) {
        c->retried = true;
        up_close(u);
        proxy_connect(c, false);
        return;
    }
    bool unanswered = !u->got_response_bytes && !u->head_sent && !u->tunnel;
    if (unanswered && !stale && (kind == MS_UPERR_REFUSED || kind == MS_UPERR_CONNECT_TIMEOUT ||
                                 kind == MS_UPERR_RESET || kind == MS_UPERR_TIMEOUT))
        eject(u);
    /* not sent, or sent and not answered, and safe to send again (no body
     * byte went): another instance, while there is one not tried */
    if (unanswered && kind != MS_UPERR_TIMEOUT && kind != MS_UPERR_BAD_RESPONSE && idempotent &&
        c->tries + 1 < c->ncand && (!c->has_body || (c->body_buffered && !u->connected))) {
        size_t failed = c->ship;
        unsigned failed_parity = c->parity;
        const char *why;
        up_close(u);
        if (c->tries++ == 0)
            c->tried[0] = c->tried[1] = 0;
        unsigned bit = (unsigned)(2 * (failed - (size_t)(c->route->target - c->g->m->ships)) + failed_parity);
        if (bit < 128)
            c->tried[bit / 64] |= 1ull << (bit % 64);
        if (choose(c, &why) == PICK_OK) {
            __atomic_fetch_add(&ms_worker_slot(w, c->slot)->retries, 1, __ATOMIC_RELAXED);
            if (!c->reqid_len)
                ms_conn_make_reqid(c);
            ms_worker_upstream_log(w, ship_name(c->g, failed), "ship \"%s\" %s; retried on \"%s\" (request id %.*s)",
                                   ship_name(c->g, failed), what, ship_name(c->g, c->ship), (int)c->reqid_len,
                                   c->reqid);
            c->retried = false; /* a fresh connection of the new instance may be stale too */
            proxy_connect(c, true);
            return;
        }
        c->ship = failed; /* named in the answer */
        c->parity = failed_parity;
    }
    __atomic_fetch_add(&w->up_errors[kind], 1, __ATOMIC_RELAXED);
    bool started = u->head_sent, tunnel = u->tunnel;
    if (started && !u->resp_done && !tunnel)
        ms_conn_record(c, u->status); /* cut by the ship: counted with the status sent */
    up_close(u);
    if (started || tunnel) {
        ms_conn_close(c); /* the response is half sent: all we can do */
        return;
    }
    char detail[256];
    snprintf(detail, sizeof detail, "ship \"%s\" %s", ship_name(c->g, c->ship), what);
    int status = kind == MS_UPERR_TIMEOUT || kind == MS_UPERR_CONNECT_TIMEOUT ? 504 : 502;
    if (!c->reqid_len)
        ms_conn_make_reqid(c);
    ms_worker_upstream_log(w, ship_name(c->g, c->ship), "%d %s: %s (request id %.*s)", status, ms_http_reason(status),
                           detail, (int)c->reqid_len, c->reqid);
    ms_conn_respond_error(c, status, detail);
}

static void on_up_timeout(uv_timer_t *t)
{
    ms_upconn *u = t->data;
    char what[128];
    if (!u->connected) {
        snprintf(what, sizeof what, "did not accept the connection within %llums",
                 (unsigned long long)limits(u->g)->upstream_connect_timeout_ms);
        up_fail(u, MS_UPERR_CONNECT_TIMEOUT, what);
    } else if (!u->req_sent || u->writes_in_flight > 0) {
        snprintf(what, sizeof what, "did not read the request within %llums",
                 (unsigned long long)limits(u->g)->upstream_timeout_ms);
        up_fail(u, MS_UPERR_TIMEOUT, what);
    } else {
        snprintf(what, sizeof what, "did not answer within %llums",
                 (unsigned long long)limits(u->g)->upstream_timeout_ms);
        up_fail(u, MS_UPERR_TIMEOUT, what);
    }
}

/* The upstream timeouts (connect, request, answer) are one deadline kept in
 * the connection, the uv timer lazily behind it as conn.c keeps the
 * client's: a request clears and sets it without touching libuv's timer
 * heap when the new deadline is no earlier than the armed one; the timer
 * then fires early and is armed again for what is left. */
static void on_up_timer(uv_timer_t *t)
{
    ms_upconn *u = t->data;
    if (!u->timer_due)
        return;
    uint64_t now = uv_now(t->loop);
    if (now < u->timer_due) {
        u->timer_at = u->timer_due;
        uv_timer_start(t, on_up_timer, u->timer_due - now, 0);
        return;
    }
    u->timer_due = 0;
    on_up_timeout(t);
}

static void up_timer_clear(ms_upconn *u)
{
    u->timer_due = 0;
}

static void up_timer_set(ms_upconn *u, uint64_t ms)
{
    uint64_t due = uv_now(u->timer.loop) + ms;
    u->timer_due = due;
    if (uv_is_active((uv_handle_t *)&u->timer) && u->timer_at <= due)
        return; /* it fires first, and is armed again for the rest */
    u->timer_at = due;
    uv_timer_start(&u->timer, on_up_timer, ms, 0);
}

/* The upstream timer while the request goes up: it runs while a write to
 * the ship is stalled (restarted at each write it takes) and, once the
 * last byte is written, until the response head; it does not run while the
 * request waits for its client (body_timeout watches that side). */
static void request_timer(ms_upconn *u)
{
    if (u->closing || !u->client || !u->connected || u->head_done)
        return;
    if (u->writes_in_flight > 0 || u->req_sent)
        up_timer_set(u, limits(u->g)->upstream_timeout_ms);
    else
        up_timer_clear(u);
}

/* ---------------------------------------------------------------- reading the response */
static void on_up_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    ms_upconn *u = h->data;
    (void)s;
    *b = uv_buf_init(u->rbuf + u->rlen, u->rcap - u->rlen);
}

static void up_stop_reading(ms_upconn *u)
{
    if (u->reading) {
        uv_read_stop(&u->io.s);
        u->reading = false;
    }
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void up_start_reading(ms_upconn *u)
{
    if (!u->reading && !u->closing) {
        if (uv_read_start(&u->io.s, on_up_alloc, on_up_read) == 0)
            u->reading = true;
    }
}

static void start_tunnel(ms_upconn *u);

static void parse_response(ms_upconn *u)
{
    ms_conn *c = u->client;
    ms_conn_cork(c);
    while (u->rpos < u->rlen && !u->resp_done) {
        if (HTTP_PARSER_ERRNO(&u->parser) == HPE_PAUSED)
            http_parser_pause(&u->parser, 0);
        size_t used = http_parser_execute(&u->parser, resp_settings(), u->rbuf + u->rpos, u->rlen - u->rpos);
        u->rpos += (uint32_t)used;
        enum http_errno e = HTTP_PARSER_ERRNO(&u->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            ms_conn_uncork(c);
            up_fail(u, MS_UPERR_BAD_RESPONSE, "sent an invalid HTTP response");
            return;
        }
        if (e == HPE_PAUSED && u->head_done && !u->head_sent) {
            /* the parser stopped on the final LF of the head and re-reads it on resume */
            up_timer_clear(u);
            if (u->status >= 100 && u->status < 200 && u->status != 101 && c->http_minor == 0) {
                u->head_sent = true; /* no 1xx to an HTTP/1.0 client: it would take it for the answer */
                continue;
            }
            const ms_payload_result *pres = NULL;
            char detail[200];
            if (!(u->status >= 100 && u->status < 200) && !run_response_payloads(u, detail, sizeof detail, &pres)) {
                ms_conn_uncork(c);
                up_close(u);
                ms_conn_respond_error(c, 500, detail);
                return;
            }
            if (!send_response_head(u, pres)) {
                ms_conn_uncork(c);
                up_fail(u, MS_UPERR_BAD_RESPONSE, "sent a response head too large to forward");
                return;
            }
            if (!u->client || ms_conn_is_closing(c))
                return;
            if (u->status == 101 && c->upgrade) {
                u->rpos++;
                ms_conn_uncork(c);
                start_tunnel(u);
                return;
            }
            continue;
        }
    }
    if (u->comp_unflushed && !u->resp_done && u->client) {
        /* The read is drained and the ship may pause here: push out what the
         * encoder holds so a streamed body is not held back until its end
         * (one flush per read, not per chunk). */
        u->comp_unflushed = false;
        if (ms_compressor_flush(u->comp, &u->cbuf) != 0) {
            ms_conn_uncork(c);
            ms_conn_record(c, u->status); /* its head was sent: counted with that status */
            up_close(u);
            ms_conn_close(c); /* the encoder broke mid-body: all we can do */
            return;
        }
        flush_compressed(u, c);
    }
    ms_conn_uncork(c);
    if (!u->client || ms_conn_is_closing(c))
        return;
    if (!u->head_done && u->rlen == u->rcap) {
        char what[96];
        snprintf(what, sizeof what, "sent a response head larger than max_response_header_size (%u bytes)",
                 (unsigned)u->rcap);
        up_fail(u, MS_UPERR_BAD_RESPONSE, what);
        return;
    }
    if (u->resp_done) {
        maybe_complete(u); /* still reading: an idle pooled connection notices a close */
        return;
    }
    if (u->head_done) {
        u->rlen = u->rpos = 0; /* written, or copied into the write queue */
        if (ms_conn_write_pending(c) > MS_WRITE_HIGH) {
            up_stop_reading(u); /* a slow client slows the upstream read */
            u->paused_for_client = true;
        }
    }
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    ms_upconn *u = s->data;
    (void)b;
    if (n == 0 || u->closing)
        return;
    if (!u->client) {
        up_close(u); /* idle in the pool: the ship closed it, or sent something unasked */
        return;
    }
    if (n < 0) {
        up_stop_reading(u);
        if (u->tunnel) {
            ms_conn_close(u->client);
            return;
        }
        if (n == UV_EOF && u->head_done && !u->resp_done) {
            /* a body delimited by the close */
            ms_conn_cork(u->client);
            http_parser_execute(&u->parser, resp_settings(), NULL, 0);
            if (u->client)
                ms_conn_uncork(u->client);
            if (u->resp_done) {
                u->keep_alive = false;
                maybe_complete(u);
                return;
            }
        }
        up_fail(u, MS_UPERR_RESET, u->head_sent ? "closed the connection in the middle of the response"
                                                : "closed the connection before answering");
        return;
    }
    u->got_response_bytes = true;
    if (u->tunnel) {
        ms_conn *c = u->client;
        track_ship_frames(u, (const unsigned char *)u->rbuf, (size_t)n);
        ms_conn_write(c, u->rbuf, (size_t)n, true);
        if (ms_conn_write_pending(c) > MS_WRITE_HIGH) {
            up_stop_reading(u);
            u->paused_for_client = true;
        }
        return;
    }
    u->rlen += (uint32_t)n;
    parse_response(u);
}

/* The client has taken everything we wrote: rbuf is free again. */
static void proxy_drained(ms_conn *c)
{
    ms_upconn *u = c->up;
    if (!u)
        return;
    if (u->tunnel) {
        if (u->paused_for_client) {
            u->paused_for_client = false;
            up_start_reading(u);
        }
        return;
    }
    if (u->resp_done) {
        maybe_complete(u);
        return;
    }
    if (u->paused_for_client) {
        u->paused_for_client = false;
        up_start_reading(u);
    }
}

/* ---------------------------------------------------------------- tunnel (after 101) */
/* Where the ship's WebSocket frames begin and end in what it sends the
 * client, so that a close frame of our own (proxy_drain_end) goes out
 * only between two of them. */
static void track_ship_frames(ms_upconn *u, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (u->ws_down_left > 0) {
            size_t k = n < u->ws_down_left ? n : (size_t)u->ws_down_left;
            u->ws_down_left -= k;
            p += k;
            n -= k;
            continue;
        }
        assert(u->ws_down_hlen < sizeof u->ws_down_hdr);
        u->ws_down_hdr[u->ws_down_hlen++] = *p++;
        n--;
        const uint8_t *h = u->ws_down_hdr;
        if (u->ws_down_hlen < 2)
            continue;
        unsigned len7 = h[1] & 0x7f;
        size_t need = 2u + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u) + ((h[1] & 0x80) ? 4u : 0u);
        if (u->ws_down_hlen < need)
            continue;
        uint64_t len = len7;
        if (len7 == 126)
            len = (uint64_t)h[2] << 8 | h[3];
        else if (len7 == 127)
            for (int i = 2; i < 10; i++)
                len = (i == 2 ? 0 : len << 8) | h[i];
        u->ws_down_left = len;
        u->ws_down_hlen = 0;
        if ((h[0] & 0x0f) == 0x8)
            u->ws_down_closed = true;
    }
}

static void start_tunnel(ms_upconn *u)
{
    ms_conn *c = u->client;
    const char *rest;
    size_t nrest = ms_conn_switch_protocols(c, &rest); /* the 101 is counted; its tunnel begins */
    u->tunnel = true;
    u->ws_down_left = 0;
    u->ws_down_hlen = 0;
    u->ws_down_closed = false;
    /* what came after the 101 head already belongs to the new protocol */
    if (u->rpos < u->rlen) {
        track_ship_frames(u, (const unsigned char *)u->rbuf + u->rpos, u->rlen - u->rpos);
        ms_conn_write(c, u->rbuf + u->rpos, u->rlen - u->rpos, true);
    }
    u->rlen = u->rpos = 0;
    /* and what the client sent after its request (a body it had went up
     * already) */
    up_write(u, rest, nrest);
    up_start_reading(u);
    ms_conn_start_reading(c);
}

/* The client's bytes in the tunnel. */
static void proxy_data(ms_conn *c, const char *data, size_t len)
{
    ms_upconn *u = c->up;
    if (u)
        up_write(u, data, len);
}

/* The drain's time is up. A WebSocket tunnelled to a ship gets a close
 * frame from the server (unmasked, code 1001 "going away") before its
 * connection closes, but only between two of the ship's frames (inside
 * one, it would be read as its payload) and not after the ship's own
 * close frame; anything else is closed. c->upgrade, not the headers: the
 * tunnel's reads reuse the buffer the request head was in. */
static void proxy_drain_end(ms_conn *c)
{
    static const char ws_going_away[4] = { (char)0x88, 0x02, 0x03, (char)0xe9 };
    ms_upconn *u = c->up;
    if (!u || !u->tunnel || !c->upgrade || u->ws_down_left != 0 || u->ws_down_hlen != 0 || u->ws_down_closed) {
        ms_conn_close(c);
        return;
    }
    proxy_abort(c);
    ms_conn_end_with(c, ws_going_away, sizeof ws_going_away);
}

/* ---------------------------------------------------------------- connecting */
static void send_head(ms_upconn *u)
{
    ms_conn *c = u->client;
    assert(c && c->up == u && !u->closing && !u->idle_in_pool);
    u->connected = true;
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    u->rlen = u->rpos = 0;
    u->nhdr = 0;
    u->reason_len = 0;
    u->head_done = u->head_sent = u->resp_done = u->got_response_bytes = false;
    u->last_was_value = false;
    u->final_chunk_sent = false;
    u->tunnel = false;
    u->is_head_request = c->parser.method == HTTP_HEAD;
    u->req_sent = false;
    if (ms_conn_logs_access(c))
        c->up_sent_us = ms_now_us();
    up_write(u, c->out, c->out_len);
    if (u->closing)
        return;
    ms_conn_stream_request(c);
    up_start_reading(u);
    if (c->body_buffered) {
        send_buffered_body(u);
        return;
    }
    if (c->req_done)
        u->req_sent = true; /* a retry: the request had no body */
    request_timer(u);
    ms_conn_resume_request_body(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    ms_upconn *u = req->data;
    if (u->closing)
        return;
    if (status < 0) {
        u->connected = false;
        up_fail(u, MS_UPERR_REFUSED, status == UV_ECONNREFUSED || status == UV_ENOENT
                                         ? "refused the connection"
                                         : uv_strerror(status));
        return;
    }
    up_timer_clear(u);
    send_head(u);
}

static void proxy_connect(ms_conn *c, bool allow_pool)
{
    ms_worker *w = c->w;
    const ms_target *t = c->parity ? &c->g->alt_targets[c->ship] : &c->g->targets[c->ship];
    ms_upconn *u = allow_pool ? pool_get(c->g, MS_POOL(c->ship, c->parity)) : NULL;
    ms_conn_hold_request(c);
    if (u) {
        up_claim(u, c);
        u->reused = true;
        send_head(u);
        return;
    }
    u = calloc(1, sizeof *u);
    uint32_t rcap = (uint32_t)limits(c->g)->max_response_header_size;
    char *rbuf = u ? malloc(rcap) : NULL;
    if (!rbuf) {
        free(u);
        ms_conn_respond_error(c, 502, "out of memory");
        return;
    }
    u->rbuf = rbuf;
    u->rcap = rcap;
    u->w = w;
    u->ship = c->ship;
    u->parity = c->parity;
    w->nups++;
    int rc = t->is_unix ? uv_pipe_init(&w->loop, &u->io.pipe, 0) : uv_tcp_init(&w->loop, &u->io.tcp);
    if (rc != 0) {
        free(u->rbuf);
        free(u);
        w->nups--;
        ms_conn_respond_error(c, 502, "cannot create a socket");
        return;
    }
    u->io.h.data = u;
    u->g = ms_wgen_hold(c->g);
    uv_timer_init(&w->loop, &u->timer);
    u->timer.data = u;
    u->handles_open = 2;
    up_claim(u, c);
    u->connect_req.data = u;
    up_timer_set(u, limits(c->g)->upstream_connect_timeout_ms);
    if (t->is_unix) {
        uv_pipe_connect(&u->connect_req, &u->io.pipe, t->path, on_connect);
    } else {
        uv_tcp_nodelay(&u->io.tcp, 1);
        rc = uv_tcp_connect(&u->connect_req, &u->io.tcp, (const struct sockaddr *)&t->sa, on_connect);
        if (rc != 0)
            up_fail(u, MS_UPERR_REFUSED, uv_strerror(rc));
    }
}

/* ---------------------------------------------------------------- choosing an instance */
#define MS_MAX_CANDS 128           /* 64 instances, each with a surge replacement */

/* Does p take a new request now (ejected or not)? No: not ready, circuit
 * open or draining, *why says the first such reason seen. *holds: it
 * restarts in place, requests may wait for it. */
static bool proc_takes(const ms_proc *p, bool *holds, const char **why)
{
    if (__atomic_load_n(&p->holding, __ATOMIC_ACQUIRE))
        *holds = true;
    const char *no = NULL;
    if (!__atomic_load_n(&p->ready_flag, __ATOMIC_ACQUIRE))
        no = "not ready";
    else if (__atomic_load_n(&p->breaker, __ATOMIC_ACQUIRE) == MS_BREAKER_OPEN)
        no = "failing its health checks (circuit open)";
    else if (__atomic_load_n(&p->draining, __ATOMIC_ACQUIRE))
        no = "draining";
    if (no) {
        if (!*why)
            *why = no;
        return false;
    }
    return true;
}

/* The instance (and process) for c's request among those of its route:
 * c->ship, c->proc, c->parity. One process without a surge replacement
 * (the common case) is looked at alone, without building the candidates. */
static pick choose(ms_conn *c, const char **why)
{
    ms_wgen *g = c->g;
    size_t n = c->route->route->ntargets;
    bool holds = false;
    *why = NULL;
    if (n <= 1) {
        /* c->ship is the route's ship (dispatch set it; no other choice) */
        ms_proc *p = g->procs ? g->procs[c->ship] : NULL;
        if (!p || !__atomic_load_n(&p->twin, __ATOMIC_ACQUIRE)) {
            c->proc = p;
            c->parity = 0;
            c->ncand = 1;
            if (!p)
                return PICK_OK;
            if (__atomic_load_n(&p->ready_flag, __ATOMIC_ACQUIRE) &&
                __atomic_load_n(&p->breaker, __ATOMIC_ACQUIRE) != MS_BREAKER_OPEN &&
                !__atomic_load_n(&p->draining, __ATOMIC_ACQUIRE)) {
                c->parity = p->parity && g->m->ships[c->ship].has_bind_alt ? 1 : 0;
                return PICK_OK; /* ejected or not: there is no other */
            }
            proc_takes(p, &holds, why);
            return holds ? PICK_HOLD : PICK_NONE;
        }
    }
    cand ok[MS_MAX_CANDS], ejected[MS_MAX_CANDS];
    size_t nok = 0, nej = 0, nall = 0;
    size_t first = (size_t)(c->route->target - g->m->ships);
    uint64_t now = uv_now(&c->w->loop);
    if (n > MS_MAX_CANDS / 2)
        n = MS_MAX_CANDS / 2;
    for (size_t k = 0; k < n && first + k < g->m->nships; k++) {
        size_t s = first + k;
        ms_proc *pair[2] = { NULL, NULL };
        if (g->procs) {
            pair[0] = g->procs[s];
            pair[1] = __atomic_load_n(&pair[0]->twin, __ATOMIC_ACQUIRE);
        }
        for (int t = 0; t < (g->procs ? 2 : 1); t++) {
            ms_proc *p = pair[t];
            bool out = false; /* ejected */
            unsigned par = 0;
            if (g->procs && !p)
                continue; /* no surge replacement */
            if (p) {
                /* where it listens: bind_alt, or the bind when the ship has
                 * no second address (a reload took it away after a surge) */
                par = p->parity && g->m->ships[s].has_bind_alt ? 1 : 0;
                if (!proc_takes(p, &holds, why))
                    continue;
                out = __atomic_load_n(&p->eject_until, __ATOMIC_RELAXED) > now;
            }
            nall++;
            unsigned bit = (unsigned)(2 * k + par);
            if (c->tries > 0 && (c->tried[bit / 64] >> (bit % 64) & 1))
                continue;
            cand x = { p, s, par };
            if (!out)
                ok[nok++] = x;
            else
                ejected[nej++] = x; /* used only when every other is ejected too */
        }
    }
    const cand *set = nok ? ok : ejected;
    size_t nset = nok ? nok : nej;
    c->ncand = (unsigned)nall;
    if (nset == 0)
        return holds ? PICK_HOLD : PICK_NONE;
    /* one turn of the round robin per request: a request chosen for again
     * (its body read first, held, retried) does not skip other instances */
    if (!c->rr_taken) {
        c->rr_at = g->rr[first]++;
        c->rr_taken = true;
    }
    size_t at = c->rr_at % nset;
    if (g->m->ships[first].balance == MS_BALANCE_LEAST_CONN && set[0].proc) {
        /* the fewest in flight; among equals, the next in round robin order */
        int best = INT_MAX;
        size_t bi = at;
        for (size_t i = 0; i < nset; i++) {
            size_t j = (at + i) % nset;
            int f = __atomic_load_n(&set[j].proc->inflight, __ATOMIC_RELAXED);
            if (f < best) {
                best = f;
                bi = j;
            }
        }
        at = bi;
    }
    c->ship = set[at].ship;
    c->proc = set[at].proc;
    c->parity = set[at].parity;
    return PICK_OK;
}

/* The name a route's ship is known by in messages ("web", not "web#0"). */
static const char *route_ship_name(const ms_conn *c)
{
    return ms_ship_base(c->route->target);
}

/* Passive health: a process that refused, reset or timed out gets no new
 * request for eject_cooldown (unless every other one is out too). */
static void eject(ms_upconn *u)
{
    ms_proc *p = u->proc;
    uint64_t cool = limits(u->g)->eject_cooldown_ms;
    if (!p || cool == 0)
        return;
    uint64_t now = uv_now(&u->w->loop);
    uint64_t until = __atomic_load_n(&p->eject_until, __ATOMIC_RELAXED);
    if (until > now)
        return; /* out already: one ejection */
    if (__atomic_compare_exchange_n(&p->eject_until, &until, now + cool, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        __atomic_fetch_add(&p->ejections, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- holding */
/* Requests for a ship that restarts in place (one process, no second
 * address) wait for it, up to its drain_timeout + ready_timeout (the old
 * process's requests drain, then the new one starts) and MS_HOLD_MAX per
 * worker; a timer looks at them every MS_HOLD_POLL_MS while any waits. */
static uint64_t hold_budget_ms(const ms_ship *s)
{
    return s->drain_timeout_ms + s->ready_timeout_ms;
}

static void on_hold_tick(uv_timer_t *t)
{
    ms_worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    uint32_t tick = ++w->hold_tick;
    /* requests that must wait on go back at the tail, marked with this tick */
    ms_conn *c;
    while ((c = w->held) && c->hold_tick != tick) {
        unhold(c);
        c->hold_tick = tick;
        if (now >= c->hold_until) {
            __atomic_fetch_add(&w->up_held_timeouts, 1, __ATOMIC_RELAXED);
            __atomic_fetch_add(&w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
            char detail[200];
            snprintf(detail, sizeof detail,
                     "ship \"%s\" did not become ready within its drain_timeout + ready_timeout (%llums)",
                     route_ship_name(c), (unsigned long long)hold_budget_ms(c->route->target));
            ms_conn_respond_error(c, 503, detail);
            continue;
        }
        proxy_start(c, NULL);
        /* a body read whole first: what came while it waited is in the
         * buffer, and no read is coming to parse it */
        if (c->state == MS_C_BODY)
            ms_conn_resume_request_body(c);
    }
}

/* false: the worker holds too many already. */
static bool hold(ms_conn *c)
{
    ms_worker *w = c->w;
    assert(!c->held);
    if (c->hold_until == 0) {
        if (w->nheld >= MS_HOLD_MAX)
            return false;
        c->hold_until = uv_now(&w->loop) + hold_budget_ms(c->route->target);
        c->hold_tick = w->hold_tick;
        __atomic_fetch_add(&w->up_held, 1, __ATOMIC_RELAXED);
    }
    ms_conn_hold_request(c);
    c->held = true;
    c->hold_next = NULL;
    c->hold_prev = w->held_tail;
    if (w->held_tail)
        w->held_tail->hold_next = c;
    else
        w->held = c;
    w->held_tail = c;
    if (w->nheld++ == 0)
        uv_timer_start(&w->hold_timer, on_hold_tick, MS_HOLD_POLL_MS, MS_HOLD_POLL_MS);
    return true;
}

static void unhold(ms_conn *c)
{
    ms_worker *w = c->w;
    if (!c->held)
        return;
    if (c->hold_prev)
        c->hold_prev->hold_next = c->hold_next;
    else
        w->held = c->hold_next;
    if (c->hold_next)
        c->hold_next->hold_prev = c->hold_prev;
    else
        w->held_tail = c->hold_prev;
    c->hold_prev = c->hold_next = NULL;
    c->held = false;
    assert(w->nheld > 0);
    if (--w->nheld == 0)
        uv_timer_stop(&w->hold_timer);
}

/* Picks the instance for c; if there is none, holds the request or
 * answers 503 and returns false. */
static bool ship_available(ms_conn *c)
{
    ms_worker *w = c->w;
    const char *why;
    pick pk = choose(c, &why);
    if (pk == PICK_OK)
        return true;
    if (pk == PICK_HOLD && !w->stopping && hold(c))
        return false;
    __atomic_fetch_add(&w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
    char detail[200];
    if (pk == PICK_HOLD)
        snprintf(detail, sizeof detail, "ship \"%s\" is restarting and too many requests wait for it",
                 route_ship_name(c));
    else
        snprintf(detail, sizeof detail, "ship \"%s\" is %s", route_ship_name(c), why ? why : "not ready");
    ms_conn_respond_error(c, 503, detail);
    return false;
}

/* A request routed to a ship. On a route that buffers request bodies,
 * the session reads the body whole first and starts us again. */
static bool proxy_start(ms_conn *c, const ms_handler_arg *arg)
{
    (void)arg;
    if (!ship_available(c))
        return true;
    if (!c->body_buffered) {
        const ms_route *r = c->route->route;
        c->buffering = !c->upgrade && (r->request_buffering_set ? r->request_buffering
                                                                : limits(c->g)->request_buffering);
        if (c->buffering && c->has_body) {
            ms_conn_read_body_first(c);
            return true;
        }
    }
    if (!build_request_head(c)) {
        ms_conn_respond_error(c, 502, "out of memory");
        return true;
    }
    proxy_connect(c, true);
    return true;
}

static void proxy_abort(ms_conn *c)
{
    unhold(c);
    ms_upconn *u = c->up;
    if (!u)
        return;
    c->up = NULL;
    up_close(u);
}

static int proxy_partial_status(const ms_conn *c)
{
    const ms_upconn *u = c->up;
    return u && u->head_sent && !u->resp_done ? u->status : 0;
}

static bool proxy_body_backed_up(const ms_conn *c)
{
    return c->up && c->up->write_pending > MS_WRITE_HIGH;
}

const ms_handler ms_handler_proxy = {
    .start = proxy_start,
    .body = proxy_body,
    .body_end = proxy_body_end,
    .body_backed_up = proxy_body_backed_up,
    .data = proxy_data,
    .drained = proxy_drained,
    .partial_status = proxy_partial_status,
    .drain_end = proxy_drain_end,
    .abort = proxy_abort,
};
