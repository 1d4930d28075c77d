/* h2_stream.c: one HTTP/2 stream as an HTTP/1.1 exchange (see
 * h2_session.h): the request's fields collected and bounded, then turned
 * into HTTP/1.1 bytes (request line, Host from :authority, cookies joined,
 * Content-Length or chunked framing, Connection: close; an extended
 * CONNECT as a WebSocket upgrade); the exchange's HTTP/1.1 response parsed
 * (http-parser, response mode) into HEADERS and DATA through a data
 * provider on a bounded buffer; local answers (400, 431, 501). Socket-free;
 * the session (h2_session.c) feeds it from nghttp2's callbacks. */
#include <assert.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/h2_internal.h"

/* ---------------------------------------------------------------- small helpers */
static size_t bufs_len(const ms_buf *b, size_t pos)
{
    return b->len - pos;
}

/* Drops the consumed front of a buffer read from pos on. */
static void buf_compact(ms_buf *b, size_t *pos)
{
    if (*pos == 0)
        return;
    if (*pos == b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + *pos, b->len - *pos);
        b->len -= *pos;
    }
    if (b->data)
        b->data[b->len] = '\0';
    *pos = 0;
}

void h2_stream_free(ms_h2_stream *st)
{
    ms_buf *bufs[] = { &st->method, &st->path, &st->authority, &st->host, &st->protocol, &st->fields,
                       &st->cookie, &st->in, &st->rh, &st->out };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ms_buf_free(bufs[i]);
    free(st);
}

void h2_stream_reset(ms_h2_stream *st, uint32_t code)
{
    if (st->reset)
        return;
    st->reset = true;
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, code);
    h2_want_run(st->s);
}

ms_h2_stream *h2_stream_new(ms_h2_session *s, int32_t id)
{
    ms_h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    size_t max = s->cfg.max_header_list_size + REQ_HEAD_SLACK;
    ms_buf *small[] = { &st->method, &st->path, &st->authority, &st->host, &st->protocol, &st->fields, &st->cookie };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        ms_buf_init(small[i], max);
    /* the request bytes held: the head, then at most a window of DATA (framed as it is read) */
    ms_buf_init(&st->in, 2 * max + (size_t)s->cfg.stream_window * 2 + 4096);
    ms_buf_init(&st->rh, RESP_HEAD_MAX);
    ms_buf_init(&st->out, s->cfg.stream_out_max);
    st->s = s;
    st->id = id;
    st->progress_ms = st->opened_ms = s->now_ms;
    return st;
}

/* ---------------------------------------------------------------- response body: the data provider */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *dst, size_t cap, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)ng, (void)id, (void)ud;
    ms_h2_stream *st = src->ptr;
    size_t avail = bufs_len(&st->out, st->out_pos);
    size_t n = avail < cap ? avail : cap;
    if (n) {
        memcpy(dst, st->out.data + st->out_pos, n);
        st->out_pos += n;
        st->progress_ms = st->s->now_ms;
        if (st->out_pos == st->out.len) {
            buf_compact(&st->out, &st->out_pos);
            st->drain_due = true;
        }
    }
    if (st->out_pos == st->out.len && st->resp_complete) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void resume(ms_h2_stream *st)
{
    if (st->deferred && !st->reset) {
        st->deferred = false;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
    h2_want_run(st->s);
}

static bool out_append(ms_h2_stream *st, const char *data, size_t len)
{
    if (len == 0)
        return true;
    if (st->out_pos > st->out.len / 2)
        buf_compact(&st->out, &st->out_pos);
    if (st->out_pos == st->out.len)
        st->progress_ms = st->s->now_ms; /* the stall clock starts with the first waiting byte */
    return ms_buf_append(&st->out, data, len);
}

/* ---------------------------------------------------------------- local answers */
static void respond_local(ms_h2_stream *st, int status, const char *text)
{
    char code[4], clen[24];
    snprintf(code, sizeof code, "%d", status);
    int tl = snprintf(clen, sizeof clen, "%zu", strlen(text));
    const nghttp2_nv nva[] = {
        { (uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"content-type", (uint8_t *)"text/plain; charset=utf-8", 12, 25, NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"content-length", (uint8_t *)clen, 14, (size_t)tl, NGHTTP2_NV_FLAG_NONE },
        { (uint8_t *)"server", (uint8_t *)"mothership", 6, 10, NGHTTP2_NV_FLAG_NONE },
    };
    st->final_sent = true;
    st->resp_complete = true;
    st->detached = true; /* no exchange will come */
    if (!out_append(st, text, strlen(text))) {
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nghttp2_data_provider dp = { .source.ptr = st, .read_callback = read_body };
    if (nghttp2_submit_response(st->s->ng, st->id, nva, sizeof nva / sizeof nva[0], &dp) != 0)
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
    h2_want_run(st->s);
}

/* ---------------------------------------------------------------- request: fields */
static bool is(const uint8_t *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

static void field_set(ms_buf *b, const uint8_t *v, size_t n)
{
    ms_buf_reset(b);
    ms_buf_append(b, v, n);
}

void h2_stream_field(ms_h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    if (nlen > 0 && name[0] == ':') {
        if (is(name, nlen, ":method"))
            field_set(&st->method, value, vlen);
        else if (is(name, nlen, ":path"))
            field_set(&st->path, value, vlen);
        else if (is(name, nlen, ":authority")) {
            field_set(&st->authority, value, vlen);
            st->has_authority = true;
        }
        else if (is(name, nlen, ":protocol"))
            field_set(&st->protocol, value, vlen);
        return; /* :scheme is not carried: the transport says what it is */
    }
    if (is(name, nlen, "host")) {
        if (st->has_host)
            st->two_hosts = true;
        field_set(&st->host, value, vlen);
        st->has_host = true;
        return;
    }
    if (is(name, nlen, "cookie")) {
        /* RFC 9113 8.2.3: split cookie fields are joined with "; " */
        if (st->cookie.len)
            ms_buf_append(&st->cookie, "; ", 2);
        ms_buf_append(&st->cookie, value, vlen);
        return;
    }
    if (is(name, nlen, "te"))
        return; /* only "trailers" gets here (nghttp2 refuses others); meaningless to HTTP/1.1 */
    if (is(name, nlen, "content-length"))
        st->has_content_length = true;
    if (st->protocol.len && (is(name, nlen, "sec-websocket-key") || is(name, nlen, "sec-websocket-version")))
        return; /* synthesized for the HTTP/1.1 upgrade */
    ms_buf_append(&st->fields, name, nlen);
    ms_buf_append(&st->fields, ": ", 2);
    ms_buf_append(&st->fields, value, vlen);
    ms_buf_append(&st->fields, "\r\n", 2);
    return;
}

/* ---------------------------------------------------------------- request: the HTTP/1.1 head */
static bool websocket_key(char out[25])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    return EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw) == 24;
}

void h2_stream_start(ms_h2_stream *st, bool end_stream)
{
    ms_h2_session *s = st->s;
    st->req_ended = end_stream;
    if (st->too_large) {
        respond_local(st, 431, "431 Request Header Fields Too Large: the header list is larger than "
                               "h2_max_header_list_size\n");
        return;
    }
    if (ms_buf_failed(&st->fields) || ms_buf_failed(&st->cookie) || ms_buf_failed(&st->path) ||
        ms_buf_failed(&st->authority) || ms_buf_failed(&st->host)) {
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR); /* out of memory */
        return;
    }
    const ms_buf *auth = st->has_authority ? &st->authority : &st->host;
    if (st->two_hosts ||
        (st->has_authority && st->has_host &&
         (st->host.len != st->authority.len || strncasecmp(st->host.data, st->authority.data, st->host.len) != 0))) {
        respond_local(st, 400, "400 Bad Request: the Host header does not match :authority\n");
        return;
    }
    if (auth->len == 0) {
        respond_local(st, 400, "400 Bad Request: a request needs :authority or Host\n");
        return;
    }
    if (!st->method.data) {
        h2_stream_reset(st, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    ms_buf *in = &st->in;
    if (st->protocol.data) {
        /* nghttp2 has checked: CONNECT, :path and :scheme present */
        if (st->protocol.len != 9 || strcasecmp(st->protocol.data, "websocket") != 0) {
            respond_local(st, 501, "501 Not Implemented: the only :protocol served is websocket\n");
            return;
        }
        char key[25];
        if (!websocket_key(key)) {
            h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return;
        }
        st->websocket = true;
        ms_buf_printf(in, "GET %s HTTP/1.1\r\nHost: %s\r\n", st->path.data, auth->data);
        ms_buf_append(in, st->fields.data ? st->fields.data : "", st->fields.len);
        if (st->cookie.len)
            ms_buf_printf(in, "Cookie: %s\r\n", st->cookie.data);
        ms_buf_printf(in, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n", key);
    } else {
        /* CONNECT without :protocol has no :path: sent as authority-form, which is refused as in HTTP/1.1 */
        st->head_request = strcmp(st->method.data, "HEAD") == 0;
        ms_buf_printf(in, "%s %s HTTP/1.1\r\nHost: %s\r\n", st->method.data,
                      st->path.data ? st->path.data : auth->data, auth->data);
        ms_buf_append(in, st->fields.data ? st->fields.data : "", st->fields.len);
        if (st->cookie.len)
            ms_buf_printf(in, "Cookie: %s\r\n", st->cookie.data);
        st->chunked = !end_stream && !st->has_content_length;
        ms_buf_printf(in, "%sConnection: close\r\n\r\n", st->chunked ? "Transfer-Encoding: chunked\r\n" : "");
    }
    if (ms_buf_failed(in)) {
        respond_local(st, 431, "431 Request Header Fields Too Large: the request head is too large\n");
        return;
    }
    st->head_left = in->len;
    /* the fields are in the head now */
    ms_buf_free(&st->fields);
    ms_buf_free(&st->cookie);
    st->started = true;
    if (!s->ops->stream_start(s->owner, st)) {
        st->exchange = NULL;
        st->detached = true;
        h2_stream_reset(st, NGHTTP2_REFUSED_STREAM);
        return;
    }
    if (st->exchange)
        s->ops->stream_readable(st->exchange);
}

void h2_stream_end_body(ms_h2_stream *st)
{
    if (st->req_ended)
        return;
    st->req_ended = true; /* chunked: the last chunk is read after the data */
    if (st->exchange)
        st->s->ops->stream_readable(st->exchange);
}

bool h2_stream_data(ms_h2_stream *st, const uint8_t *data, size_t len)
{
    ms_buf *in = &st->in;
    if (st->in_pos > in->len / 2)
        buf_compact(in, &st->in_pos);
    ms_buf_append(in, data, len); /* chunk framing is added as the exchange reads */
    if (ms_buf_failed(in)) {
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return false;
    }
    st->unconsumed += len;
    if (st->exchange)
        st->s->ops->stream_readable(st->exchange);
    return true;
}

/* ---------------------------------------------------------------- response: http-parser */
static int rp_message_begin(http_parser *p)
{
    ms_h2_stream *st = p->data;
    ms_buf_reset(&st->rh);
    st->nrh = 0;
    st->rh_last_was_value = false;
    return 0;
}

static int rp_header_field(http_parser *p, const char *at, size_t len)
{
    ms_h2_stream *st = p->data;
    if (st->final_sent)
        return 0; /* trailers of a chunked response: dropped */
    if (st->nrh == 0 || st->rh_last_was_value) {
        if (st->nrh == RESP_MAX_HEADERS) {
            st->rh_overflow = true;
            return 1;
        }
        st->nrh++;
        st->rh_name[st->nrh - 1] = (uint32_t)st->rh.len;
        st->rh_name_len[st->nrh - 1] = 0;
        st->rh_val[st->nrh - 1] = 0;
        st->rh_val_len[st->nrh - 1] = 0;
        st->rh_last_was_value = false;
    }
    if (!ms_buf_append(&st->rh, at, len))
        return 1;
    st->rh_name_len[st->nrh - 1] += (uint32_t)len;
    return 0;
}

static int rp_header_value(http_parser *p, const char *at, size_t len)
{
    ms_h2_stream *st = p->data;
    if (st->final_sent)
        return 0;
    uint16_t i = (uint16_t)(st->nrh - 1);
    if (!st->rh_last_was_value) {
        st->rh_val[i] = (uint32_t)st->rh.len;
        st->rh_last_was_value = true;
    }
    if (!ms_buf_append(&st->rh, at, len))
        return 1;
    st->rh_val_len[i] += (uint32_t)len;
    return 0;
}

/* Fields that mean something for one HTTP/1.1 connection only (RFC 9113 8.2.2). */
static bool connection_specific(const char *n, size_t len)
{
    static const char *const drop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                        "upgrade", "te", "http2-settings", NULL };
    for (size_t i = 0; drop[i]; i++)
        if (strlen(drop[i]) == len && strncasecmp(n, drop[i], len) == 0)
            return true;
    return false;
}

static int rp_headers_complete(http_parser *p)
{
    ms_h2_stream *st = p->data;
    ms_h2_session *s = st->s;
    int status = p->status_code;
    bool upgrade = status == 101;
    if (upgrade && !st->websocket)
        return -1; /* a 101 only answers an extended CONNECT */
    if (status < 100 || status > 999)
        return -1;
    /* RFC 8441 4: a 2xx to an extended CONNECT opens the tunnel; a ship
     * that answers the upgrade with a 2xx other than 101 opened none */
    int shown = upgrade ? 200 : st->websocket && status >= 200 && status < 300 ? 502 : status;
    char code[4];
    snprintf(code, sizeof code, "%d", shown);
    nghttp2_nv nva[RESP_MAX_HEADERS + 1];
    size_t n = 0;
    nva[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE };
    for (uint16_t i = 0; i < st->nrh; i++) {
        char *name = st->rh.data + st->rh_name[i];
        size_t nl = st->rh_name_len[i];
        for (size_t k = 0; k < nl; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] = (char)(name[k] - 'A' + 'a');
        if (nl == 0 || connection_specific(name, nl))
            continue;
        if (upgrade && nl == 20 && memcmp(name, "sec-websocket-accept", 20) == 0)
            continue;
        nva[n++] = (nghttp2_nv){ (uint8_t *)name, (uint8_t *)(st->rh.data + st->rh_val[i]), nl,
                                 st->rh_val_len[i], NGHTTP2_NV_FLAG_NONE };
    }
    int rv;
    if (status < 200 && !upgrade) {
        rv = nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL);
    } else {
        st->final_sent = true;
        bool bodyless = st->head_request || status == 204 || status == 304;
        nghttp2_data_provider dp = { .source.ptr = st, .read_callback = read_body };
        rv = nghttp2_submit_response(s->ng, st->id, nva, n, bodyless ? NULL : &dp);
        if (bodyless)
            st->resp_complete = true;
        if (upgrade)
            st->tunnel = true;
    }
    h2_want_run(s);
    if (rv != 0)
        return -1;
    return st->head_request ? 1 : 0; /* 1: a HEAD response has no body */
}

static int rp_body(http_parser *p, const char *at, size_t len)
{
    ms_h2_stream *st = p->data;
    if (!out_append(st, at, len))
        return -1;
    resume(st);
    return 0;
}

static int rp_message_complete(http_parser *p)
{
    ms_h2_stream *st = p->data;
    if (!st->final_sent || st->tunnel)
        return 0; /* a 1xx: the final response follows; a 101: the tunnel does */
    st->resp_complete = true;
    resume(st);
    http_parser_pause(p, 1); /* nothing after the response is taken */
    return 0;
}

static const http_parser_settings rp_settings = {
    .on_message_begin = rp_message_begin,
    .on_header_field = rp_header_field,
    .on_header_value = rp_header_value,
    .on_headers_complete = rp_headers_complete,
    .on_body = rp_body,
    .on_message_complete = rp_message_complete,
};

/* ---------------------------------------------------------------- the exchange's side */
void ms_h2_stream_attach(ms_h2_stream *st, void *exchange)
{
    assert(!st->exchange && !st->detached);
    st->exchange = exchange;
    http_parser_init(&st->rp, HTTP_RESPONSE);
    st->rp.data = st;
}

size_t ms_h2_stream_readable(const ms_h2_stream *st)
{
    size_t avail = bufs_len(&st->in, st->in_pos);
    if (!st->chunked || avail > st->head_left)
        return avail; /* (chunked: a little less than read will give) */
    return avail + (st->req_ended && !st->last_chunk_read ? 5 : 0);
}

bool ms_h2_stream_read_eof(const ms_h2_stream *st)
{
    return st->websocket && st->req_ended && st->in_pos == st->in.len;
}

/* The head as it is; then the body, in one chunk per read when it is
 * framed chunked (so tiny DATA frames cost no framing while they wait),
 * and the last chunk once the client has ended. */
size_t ms_h2_stream_read(ms_h2_stream *st, char *dst, size_t cap)
{
    size_t n = 0, data = 0;
    size_t plain = st->chunked ? st->head_left : bufs_len(&st->in, st->in_pos);
    size_t k = plain < cap ? plain : cap;
    if (k) {
        memcpy(dst, st->in.data + st->in_pos, k);
        st->in_pos += k;
        n = k;
        size_t h = k < st->head_left ? k : st->head_left;
        st->head_left -= h;
        data = k - h;
    }
    if (st->chunked && st->head_left == 0) {
        size_t avail = bufs_len(&st->in, st->in_pos);
        size_t room = cap - n;
        if (avail && room > 12) { /* at most 8 hex digits and CRLF, a byte, CRLF */
            size_t c = avail < room - 12 ? avail : room - 12;
            int hl = snprintf(dst + n, room, "%zx\r\n", c);
            memcpy(dst + n + hl, st->in.data + st->in_pos, c);
            memcpy(dst + n + hl + c, "\r\n", 2);
            n += (size_t)hl + c + 2;
            st->in_pos += c;
            data += c;
        }
        if (st->req_ended && !st->last_chunk_read && st->in_pos == st->in.len && cap - n >= 5) {
            memcpy(dst + n, "0\r\n\r\n", 5);
            n += 5;
            st->last_chunk_read = true;
        }
    }
    if (st->in_pos == st->in.len)
        buf_compact(&st->in, &st->in_pos);
    /* the window opens by the DATA bytes read */
    size_t c = data < st->unconsumed ? data : st->unconsumed;
    if (st->in.len == 0)
        c = st->unconsumed; /* all read: all acknowledged */
    if (c) {
        st->unconsumed -= c;
        nghttp2_session_consume(st->s->ng, st->id, c);
        h2_want_run(st->s);
    }
    return n;
}

bool ms_h2_stream_write(ms_h2_stream *st, const char *data, size_t len)
{
    if (st->reset)
        return false;
    if (st->resp_complete && !st->tunnel)
        return true; /* nothing after the response is sent (the exchange closes) */
    if (st->tunnel) {
        if (!out_append(st, data, len)) {
            h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return false;
        }
        resume(st);
        return true;
    }
    size_t used = http_parser_execute(&st->rp, &rp_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&st->rp);
    if (e == HPE_PAUSED) {
        return true;
    }
    if (e != HPE_OK) {
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return false;
    }
    if (st->tunnel && used < len) {
        /* the bytes after a 101 are the tunnel's */
        if (!out_append(st, data + used, len - used)) {
            h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            return false;
        }
        resume(st);
    }
    return true;
}

size_t ms_h2_stream_pending(const ms_h2_stream *st)
{
    return bufs_len(&st->out, st->out_pos);
}

void ms_h2_stream_detach(ms_h2_stream *st)
{
    if (st->detached)
        return;
    st->detached = true;
    st->exchange = NULL;
    if (st->unconsumed) {
        nghttp2_session_consume(st->s->ng, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
    ms_buf_reset(&st->in);
    st->in_pos = 0;
    st->head_left = 0;
    if (st->reset)
        return;
    if (st->tunnel) {
        st->resp_complete = true; /* a tunnel ends when the exchange ends */
    } else if (!st->resp_complete && st->final_sent) {
        /* a body delimited by the end of the connection ends here */
        http_parser_execute(&st->rp, &rp_settings, NULL, 0);
    }
    if (!st->resp_complete) {
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    resume(st);
}

