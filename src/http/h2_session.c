/* h2_session.c: an nghttp2 server session whose streams are HTTP/1.1
 * exchanges (see h2_session.h), without sockets or timers of its own.
 *
 * A stream's life:
 *   HEADERS (+CONTINUATION)  fields collected, bounded (431 past the list size)
 *   END_HEADERS              request head built -> stream_start (or a local
 *                            400/431, or RST_STREAM)
 *   DATA                     appended to the request bytes (chunked framing
 *                            when the client gave no Content-Length); the
 *                            window opens as the exchange reads
 *   exchange writes          http-parser (response) -> HEADERS, DATA through
 *                            a data provider on a bounded buffer
 *   response complete        END_STREAM; incomplete at detach -> RST_STREAM
 *   stream closed            stream_gone if an exchange is still attached
 * Abuse is bounded here: rapid resets (GOAWAY ENHANCE_YOUR_CALM), header
 * bytes, stalled streams; nghttp2's options bound CONTINUATION frames,
 * SETTINGS entries and unsent SETTINGS/PING acknowledgements. */
#include <assert.h>
#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/h2_session.h"
#include "metrics/prom.h"

#define RESP_MAX_HEADERS 128       /* a ship's MS_MAX_HEADERS, and the lines Mothership adds */
#define RESP_HEAD_MAX 65536        /* a response head's field bytes */
#define REQ_HEAD_SLACK 1024        /* synthesized lines beyond the client's fields */

struct ms_h2_stream {
    ms_h2_session *s;
    ms_h2_stream *prev, *next;
    int32_t id;
    void *exchange;
    bool started, detached, reset;

    /* request: collected fields, then the HTTP/1.1 bytes for the exchange */
    ms_buf method, path, authority, host, protocol, fields, cookie;
    uint64_t header_bytes;         /* name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts */
    bool too_large, two_hosts, has_content_length, has_host, has_authority;
    bool websocket;                /* an extended CONNECT with :protocol websocket */
    bool head_request;
    bool chunked;                  /* the body is framed chunked for the exchange */
    bool req_ended;                /* the client's END_STREAM was seen */
    bool told_to_stop;             /* RST_STREAM NO_ERROR: the response is whole, the rest of the request unwanted */
    ms_buf in;                     /* request bytes not yet read */
    size_t in_pos;
    size_t unconsumed;             /* DATA bytes held, not yet acknowledged by a window update */

    /* response: the exchange's HTTP/1.1 bytes, parsed */
    http_parser rp;
    ms_buf rh;                     /* header names and values */
    uint32_t rh_name[RESP_MAX_HEADERS], rh_name_len[RESP_MAX_HEADERS];
    uint32_t rh_val[RESP_MAX_HEADERS], rh_val_len[RESP_MAX_HEADERS];
    uint16_t nrh;
    bool rh_last_was_value, rh_overflow;
    bool final_sent;               /* the final HEADERS is submitted */
    bool resp_complete;            /* the last byte of the response is in out */
    bool tunnel;                   /* after the 101 of an extended CONNECT: raw bytes */
    ms_buf out;                    /* response body bytes not yet taken by nghttp2 */
    size_t out_pos;
    bool deferred;                 /* the data provider waits for bytes */
    bool drain_due;                /* out emptied: tell the exchange */
    uint64_t progress_ms;          /* the last time out was taken from, or filled from empty */
};

struct ms_h2_session {
    nghttp2_session *ng;
    ms_h2_config cfg;
    const ms_h2_owner_ops *ops;
    void *owner;
    ms_h2_stream *streams;
    size_t nstreams;
    uint64_t now_ms, idle_since_ms;
    uint64_t reset_window_start_ms;
    uint32_t resets;
    bool calm;                     /* rapid reset: the session is being torn down */
    bool had_stream;               /* a stream was opened: the first timeout is over */
};

void ms_h2_config_defaults(ms_h2_config *cfg)
{
    cfg->max_concurrent_streams = 128;
    cfg->max_header_list_size = 32768;
    cfg->header_table_size = 4096;
    cfg->rapid_reset_max = 200;
    cfg->rapid_reset_window_ms = 10000;
    cfg->max_control_frames = 1000;
    cfg->stall_timeout_ms = 60000;
    cfg->idle_timeout_ms = 60000;
    cfg->first_timeout_ms = 10000;
    cfg->stream_window = 65535;
    cfg->connection_window = 1 << 20;
    cfg->stream_out_max = 4 << 20;
}

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

static void want_run(ms_h2_session *s)
{
    if (s->ops->want_run)
        s->ops->want_run(s->owner);
}

static void stream_free(ms_h2_stream *st)
{
    ms_buf *bufs[] = { &st->method, &st->path, &st->authority, &st->host, &st->protocol, &st->fields,
                       &st->cookie, &st->in, &st->rh, &st->out };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ms_buf_free(bufs[i]);
    free(st);
}

static void stream_unlink(ms_h2_session *s, ms_h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    assert(s->nstreams > 0);
    if (--s->nstreams == 0)
        s->idle_since_ms = s->now_ms;
}

static void stream_reset(ms_h2_stream *st, uint32_t code)
{
    if (st->reset)
        return;
    st->reset = true;
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, code);
    want_run(st->s);
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
    want_run(st->s);
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
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nghttp2_data_provider dp = { .source.ptr = st, .read_callback = read_body };
    if (nghttp2_submit_response(st->s->ng, st->id, nva, sizeof nva / sizeof nva[0], &dp) != 0)
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
    want_run(st->s);
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

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    ms_h2_session *s = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    ms_h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t max = s->cfg.max_header_list_size + REQ_HEAD_SLACK;
    ms_buf *small[] = { &st->method, &st->path, &st->authority, &st->host, &st->protocol, &st->fields, &st->cookie };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        ms_buf_init(small[i], max);
    /* the request bytes held: the head, then at most a window of DATA with its chunk framing */
    ms_buf_init(&st->in, 2 * max + (size_t)s->cfg.stream_window * 2 + 4096);
    ms_buf_init(&st->rh, RESP_HEAD_MAX);
    ms_buf_init(&st->out, s->cfg.stream_out_max);
    st->s = s;
    st->id = f->hd.stream_id;
    st->progress_ms = s->now_ms;
    if (nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
        stream_free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
    s->had_stream = true;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    ms_h2_session *s = ud;
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st)
        return 0;
    st->header_bytes += nlen + vlen + 32;
    if (st->header_bytes > s->cfg.max_header_list_size)
        st->too_large = true;
    if (st->too_large || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers are dropped; their bytes are bounded all the same */
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
        return 0; /* :scheme is not carried: the transport says what it is */
    }
    if (is(name, nlen, "host")) {
        if (st->has_host)
            st->two_hosts = true;
        field_set(&st->host, value, vlen);
        st->has_host = true;
        return 0;
    }
    if (is(name, nlen, "cookie")) {
        /* RFC 9113 8.2.3: split cookie fields are joined with "; " */
        if (st->cookie.len)
            ms_buf_append(&st->cookie, "; ", 2);
        ms_buf_append(&st->cookie, value, vlen);
        return 0;
    }
    if (is(name, nlen, "te"))
        return 0; /* only "trailers" gets here (nghttp2 refuses others); meaningless to HTTP/1.1 */
    if (is(name, nlen, "content-length"))
        st->has_content_length = true;
    if (st->protocol.len && (is(name, nlen, "sec-websocket-key") || is(name, nlen, "sec-websocket-version")))
        return 0; /* synthesized for the HTTP/1.1 upgrade */
    ms_buf_append(&st->fields, name, nlen);
    ms_buf_append(&st->fields, ": ", 2);
    ms_buf_append(&st->fields, value, vlen);
    ms_buf_append(&st->fields, "\r\n", 2);
    return 0;
}

/* ---------------------------------------------------------------- request: the HTTP/1.1 head */
static bool websocket_key(char out[25])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    return EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw) == 24;
}

static void start_request(ms_h2_stream *st, bool end_stream)
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
        stream_reset(st, NGHTTP2_INTERNAL_ERROR); /* out of memory */
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
        stream_reset(st, NGHTTP2_PROTOCOL_ERROR);
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
            stream_reset(st, NGHTTP2_INTERNAL_ERROR);
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
    /* the fields are in the head now */
    ms_buf_free(&st->fields);
    ms_buf_free(&st->cookie);
    st->started = true;
    if (!s->ops->stream_start(s->owner, st)) {
        st->exchange = NULL;
        st->detached = true;
        stream_reset(st, NGHTTP2_REFUSED_STREAM);
        return;
    }
    if (st->exchange)
        s->ops->stream_readable(st->exchange);
}

static void end_body(ms_h2_stream *st)
{
    if (st->req_ended)
        return;
    st->req_ended = true;
    if (st->chunked && !st->detached)
        ms_buf_append(&st->in, "0\r\n\r\n", 5);
    if (st->exchange)
        st->s->ops->stream_readable(st->exchange);
}

static void count_reset(ms_h2_session *s)
{
    if (s->now_ms - s->reset_window_start_ms > s->cfg.rapid_reset_window_ms) {
        s->reset_window_start_ms = s->now_ms;
        s->resets = 0;
    }
    if (++s->resets > s->cfg.rapid_reset_max && !s->calm) {
        s->calm = true;
        nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    }
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    ms_h2_session *s = ud;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        count_reset(s);
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        start_request(st, end);
        return 0;
    }
    if (end && st->started)
        end_body(st);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    ms_h2_session *s = ud;
    (void)flags;
    if (len == 0)
        return 0; /* framed chunked, an empty piece would end the body */
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || st->detached || !st->started || st->reset) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: the window is not held */
        return 0;
    }
    ms_buf *in = &st->in;
    if (st->in_pos > in->len / 2)
        buf_compact(in, &st->in_pos);
    if (st->chunked) {
        ms_buf_printf(in, "%zx\r\n", len);
        ms_buf_append(in, data, len);
        ms_buf_append(in, "\r\n", 2);
    } else {
        ms_buf_append(in, data, len);
    }
    if (ms_buf_failed(in)) {
        nghttp2_session_consume(ng, id, len);
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    st->unconsumed += len;
    if (st->exchange)
        s->ops->stream_readable(st->exchange);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    ms_h2_session *s = ud;
    (void)code;
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (st->unconsumed)
        nghttp2_session_consume_connection(ng, st->unconsumed);
    stream_unlink(s, st);
    void *ex = st->exchange;
    st->exchange = NULL;
    if (ex)
        s->ops->stream_gone(ex, !st->reset && st->resp_complete && st->out_pos == st->out.len);
    stream_free(st);
    return 0;
}

/* The whole response has left while the client is still sending its
 * request: it is told to stop, without error (RFC 9113 8.1), so the
 * stream does not stay open on the client's word. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (st && !st->req_ended && !st->reset && !st->told_to_stop) {
        st->told_to_stop = true;
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
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
    char code[4];
    snprintf(code, sizeof code, "%d", upgrade ? 200 : status);
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
    want_run(s);
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
    return bufs_len(&st->in, st->in_pos);
}

bool ms_h2_stream_read_eof(const ms_h2_stream *st)
{
    return st->websocket && st->req_ended && st->in_pos == st->in.len;
}

size_t ms_h2_stream_read(ms_h2_stream *st, char *dst, size_t cap)
{
    size_t avail = bufs_len(&st->in, st->in_pos);
    size_t n = avail < cap ? avail : cap;
    if (n == 0)
        return 0;
    memcpy(dst, st->in.data + st->in_pos, n);
    st->in_pos += n;
    if (st->in_pos == st->in.len)
        buf_compact(&st->in, &st->in_pos);
    /* the chunk framing makes the bytes read a little more than the DATA
     * bytes they carry: the window opens by at most what is held */
    size_t c = n < st->unconsumed ? n : st->unconsumed;
    if (st->in.len == 0)
        c = st->unconsumed; /* all read: all acknowledged */
    if (c) {
        st->unconsumed -= c;
        nghttp2_session_consume(st->s->ng, st->id, c);
        want_run(st->s);
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
            stream_reset(st, NGHTTP2_INTERNAL_ERROR);
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
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return false;
    }
    if (st->tunnel && used < len) {
        /* the bytes after a 101 are the tunnel's */
        if (!out_append(st, data + used, len - used)) {
            stream_reset(st, NGHTTP2_INTERNAL_ERROR);
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
    if (st->reset)
        return;
    if (st->tunnel) {
        st->resp_complete = true; /* a tunnel ends when the exchange ends */
    } else if (!st->resp_complete && st->final_sent) {
        /* a body delimited by the end of the connection ends here */
        http_parser_execute(&st->rp, &rp_settings, NULL, 0);
    }
    if (!st->resp_complete) {
        stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    resume(st);
}

/* ---------------------------------------------------------------- the session */
ms_h2_session *ms_h2_session_new(const ms_h2_config *cfg, const ms_h2_owner_ops *ops, void *owner, uint64_t now_ms)
{
    ms_h2_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->now_ms = s->idle_since_ms = s->reset_window_start_ms = now_ms;
    s->cfg = *cfg;
    s->ops = ops;
    s->owner = owner;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(s);
        return NULL;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(s);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, cfg->max_control_frames);
    nghttp2_option_set_no_closed_streams(opt, 1);
    int rv = nghttp2_session_server_new2(&s->ng, cb, s, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0) {
        free(s);
        return NULL;
    }
    const nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->stream_window },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->max_header_list_size },
        { NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cfg->header_table_size },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
    };
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        (cfg->connection_window > 65535 &&
         nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)cfg->connection_window) != 0)) {
        nghttp2_session_del(s->ng);
        free(s);
        return NULL;
    }
    return s;
}

void ms_h2_session_free(ms_h2_session *s)
{
    if (!s)
        return;
    while (s->streams) {
        ms_h2_stream *st = s->streams;
        stream_unlink(s, st);
        nghttp2_session_set_stream_user_data(s->ng, st->id, NULL);
        void *ex = st->exchange;
        st->exchange = NULL;
        if (ex)
            s->ops->stream_gone(ex, false);
        stream_free(st);
    }
    nghttp2_session_del(s->ng);
    free(s);
}

bool ms_h2_session_recv(ms_h2_session *s, const uint8_t *data, size_t len, uint64_t now_ms)
{
    s->now_ms = now_ms;
    if (s->calm)
        return false;
    ssize_t rv = nghttp2_session_mem_recv(s->ng, data, len);
    want_run(s);
    if (rv < 0) {
        /* a protocol error: nghttp2 has queued its GOAWAY when it could */
        if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
        return false;
    }
    return !s->calm;
}

ssize_t ms_h2_session_send(ms_h2_session *s, const uint8_t **data, uint64_t now_ms)
{
    s->now_ms = now_ms;
    ssize_t n = nghttp2_session_mem_send(s->ng, data);
    return n < 0 ? -1 : n;
}

void ms_h2_session_notify(ms_h2_session *s)
{
    for (ms_h2_stream *st = s->streams; st; st = st->next) {
        if (!st->drain_due)
            continue;
        st->drain_due = false;
        if (st->exchange && st->out_pos == st->out.len)
            s->ops->stream_drained(st->exchange);
    }
}

bool ms_h2_session_done(const ms_h2_session *s)
{
    return !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng);
}

void ms_h2_session_tick(ms_h2_session *s, uint64_t now_ms)
{
    s->now_ms = now_ms;
    uint64_t idle = s->cfg.idle_timeout_ms;
    if (!s->had_stream && s->cfg.first_timeout_ms && (!idle || s->cfg.first_timeout_ms < idle))
        idle = s->cfg.first_timeout_ms;
    if (s->nstreams == 0 && idle && now_ms - s->idle_since_ms >= idle) {
        nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
        want_run(s);
        return;
    }
    if (!s->cfg.stall_timeout_ms)
        return;
    for (ms_h2_stream *st = s->streams; st; st = st->next)
        if (!st->reset && st->out_pos < st->out.len && now_ms - st->progress_ms >= s->cfg.stall_timeout_ms)
            stream_reset(st, NGHTTP2_CANCEL); /* the client's window stayed shut */
}

void ms_h2_session_shutdown(ms_h2_session *s)
{
    if (s->nstreams == 0) {
        nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
        want_run(s);
        return;
    }
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    want_run(s);
}

size_t ms_h2_session_streams(const ms_h2_session *s)
{
    return s->nstreams;
}
