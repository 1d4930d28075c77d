/* h2_session.c: an nghttp2 server session whose streams are HTTP/1.1
 * exchanges (see h2_session.h), without sockets or timers of its own; the
 * streams' translation is h2_stream.c.
 *
 * A stream's life:
 *   HEADERS (+CONTINUATION)  fields collected, bounded (431 past the list size)
 *   END_HEADERS              request head built -> stream_start (or a local
 *                            400/431, or RST_STREAM)
 *   DATA                     appended to the request bytes (framed chunked
 *                            as the exchange reads them when the client gave
 *                            no Content-Length); the window opens by the
 *                            DATA bytes the exchange reads
 *   exchange writes          http-parser (response) -> HEADERS, DATA through
 *                            a data provider on a bounded buffer
 *   response complete        END_STREAM; incomplete at detach -> RST_STREAM;
 *                            the request still coming -> RST_STREAM NO_ERROR
 *   stream closed            stream_gone if an exchange is still attached
 * Abuse is bounded here: rapid resets (GOAWAY ENHANCE_YOUR_CALM), header
 * bytes, stalled streams, idle connections; nghttp2's options bound
 * CONTINUATION frames, SETTINGS entries and unsent SETTINGS/PING
 * acknowledgements. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2_internal.h"

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

void h2_want_run(ms_h2_session *s)
{
    if (s->ops->want_run)
        s->ops->want_run(s->owner);
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

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    ms_h2_session *s = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    ms_h2_stream *st = h2_stream_new(s, f->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
        h2_stream_free(st);
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
    h2_stream_field(st, name, nlen, value, vlen);
    return 0;
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
        st->head_whole = true;
        h2_stream_start(st, end);
        return 0;
    }
    if (end && st->started)
        h2_stream_end_body(st);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)ud;
    if (len == 0)
        return 0; /* framed chunked, an empty piece would end the body */
    ms_h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || st->detached || !st->started || st->reset) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: the window is not held */
        return 0;
    }
    if (!h2_stream_data(st, data, len))
        nghttp2_session_consume(ng, id, len); /* reset: the window is not held */
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
    h2_stream_free(st);
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
        h2_stream_free(st);
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
    h2_want_run(s);
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
        h2_want_run(s);
        return;
    }
    for (ms_h2_stream *st = s->streams; st; st = st->next) {
        if (!st->head_whole && s->cfg.first_timeout_ms && now_ms - st->opened_ms >= s->cfg.first_timeout_ms) {
            /* a header block left open holds the whole connection (nothing
             * else may come until it ends), and its stream has no exchange
             * yet to time it: the connection ends */
            nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
            h2_want_run(s);
            return;
        }
    }
    if (!s->cfg.stall_timeout_ms)
        return;
    for (ms_h2_stream *st = s->streams; st; st = st->next)
        if (!st->reset && st->out_pos < st->out.len && now_ms - st->progress_ms >= s->cfg.stall_timeout_ms)
            h2_stream_reset(st, NGHTTP2_CANCEL); /* the client's window stayed shut */
}

void ms_h2_session_shutdown(ms_h2_session *s)
{
    if (s->nstreams == 0) {
        nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
        h2_want_run(s);
        return;
    }
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_want_run(s);
}

size_t ms_h2_session_streams(const ms_h2_session *s)
{
    return s->nstreams;
}
