/* websocket.c: WebSocket clients of bays, on a data-plane worker.
 *
 * The handshake (RFC 6455 §4.2) is checked here; framing, masking,
 * fragmentation, ping/pong, the close handshake, UTF-8 checks of text
 * (1007) and the message size limit (1009) are wslay's. Each whole message
 * becomes a Cargo frame for the bay's docking link (through the hub); what
 * the link sends back for this worker arrives in its inbox (on_dock_async).
 *
 * Memory: an idle client keeps only its ms_conn and a small ms_ws. The
 * wslay context (over 8 KiB) exists only while something is in flight: it
 * leaves the client when every byte fed to it belongs to a whole frame, no fragmented
 * message is open and nothing waits to be sent, and goes to the worker's
 * small pool of contexts for the next client that needs one (making one
 * is a calloc of over 8 KiB); the read buffer is the worker's.
 *
 * Held clients (a bay that agreed to "resume" went away, or a client came
 * while it was away): not read (TCP pushes back on them), what was queued
 * to them is still sent, their frames read but not yet given to the bay
 * wait in pend, and their Boarding frame (kept for such bays) goes to the
 * bay's next link, with "resumed": true if an earlier link had it. At the
 * bay's handover_timeout they are closed with 1012 as if not held. */
#include <assert.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "dock/protocol.h"
#include "http/handler.h"
#include "http/http_impl.h"
#include "http/wsdeflate.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_WRITE_HIGH (256u * 1024u)   /* socket bytes pending before wslay is told to wait */
#define WS_CLOSE_WAIT_MS 3000           /* after our close frame, wait this long for the client's */
#define WS_DEFLATE_MIN 64               /* shorter messages to a compressing client go as they are */

/* A wslay context and the client it serves now. wslay keeps the user
 * pointer it was made with, so it points here and the slot is re-pointed
 * when the context goes to another client (ws_ctx_pool). */
struct ms_ws_slot {
    wslay_event_context_ptr ctx;
    ms_ws *ws;
    ms_ws_slot *next;                  /* in the worker's pool */
};

struct ms_ws {
    ms_conn *c;
    wslay_event_context_ptr ctx;       /* NULL while idle */
    ms_ws_slot *slot;                  /* ctx's slot (NULL with it) */
    size_t bay;
    uint32_t conn_id, gen;
    bool binary_ok;
    const uint8_t *in;                 /* bytes being fed to wslay */
    size_t in_len;
    uint64_t fed, framed, cur_frame;   /* for the idle test: bytes fed vs bytes of whole frames */
    bool in_fragment;
    ms_hub_msg *pend, *pend_tail;      /* frames for the bay waiting for room in its queue */
    bool blocked;                      /* not reading the client until pend is gone */
    bool closing;                      /* our close frame is queued or sent */
    bool tell_bay;                     /* send Disembark when the client goes */
    uint16_t report_code;              /* close code for the Disembark (0: decide at the end) */
    uint64_t last_rx;                  /* uv_now of the last bytes from the client */
    int busy;                          /* inside a wslay call: freeing waits (see ws_leave) */
    bool detached;                     /* the connection is gone; free once not busy */
    ms_ws *prev, *next;                /* the worker's clients */
    ms_ws *dirty_prev, *dirty_next;    /* on the worker's list of clients to flush */
    bool dirty;
    bool held;                         /* waiting for the bay to dock (again): not read */
    bool boarded;                      /* a link had its Boarding: the next one is "resumed" */
    bool waiting;                      /* counted in the bay's waiting clients (came while it was away) */
    uint64_t held_until;               /* ms_hub_now_ms deadline while held */
    uint8_t *board;                    /* its Boarding frame, kept while its bay resumes */
    uint32_t board_len;
    uint8_t deflate_bits;              /* permessage-deflate agreed: our window bits; 0: not agreed */
};

static const ms_http_limits *lim(const ms_conn *c)
{
    return &c->g->m->global.http;
}

/* ---------------------------------------------------------------- wslay callbacks */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    ms_ws *ws = ((ms_ws_slot *)user)->ws;
    (void)flags;
    assert(ws->busy > 0); /* wslay calls back only from inside a call of ours */
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    ws->fed += n;
    return (ssize_t)n;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    ms_ws *ws = ((ms_ws_slot *)user)->ws;
    ms_conn *c = ws->c;
    (void)flags;
    assert(ws->busy > 0);
    if (ms_conn_is_closing(c)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (ms_conn_write_pending(c) > WS_WRITE_HIGH) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ms_conn_write(c, (const char *)data, len, true);
    return (ssize_t)len;
}

static void cb_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *a,
                           void *user)
{
    ms_ws *ws = ((ms_ws_slot *)user)->ws;
    (void)ctx;
    uint64_t n = a->payload_length;
    ws->cur_frame = 2 + 4 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + n; /* client frames are masked */
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME || a->opcode == WSLAY_CONTINUATION_FRAME)
        ws->in_fragment = !a->fin;
}

static void cb_frame_end(wslay_event_context_ptr ctx, void *user)
{
    ms_ws *ws = ((ms_ws_slot *)user)->ws;
    (void)ctx;
    ws->framed += ws->cur_frame;
    ws->cur_frame = 0;
}

static void to_bay(ms_ws *ws, ms_hub_msg *m);

static void ws_close_with(ms_ws *ws, uint16_t code, const char *reason);
static void on_ws_timer(uv_timer_t *t);
static void stop_reading_client(ms_ws *ws);

/* From now on the client has WS_CLOSE_WAIT_MS to answer our close frame:
 * the connection's timer fires once more, and then closes it. */
static void start_closing(ms_ws *ws)
{
    ws->closing = true;
    ms_conn_timer_start(ws->c, on_ws_timer, WS_CLOSE_WAIT_MS, 0);
}

#define WS_PEND_DEFLATED 1 /* ms_hub_msg.code of a pended Cargo still compressed */

/* A Cargo message for the bay of one client message: its payload copied
 * in, or NULL and the client closed with 1011. */
static ms_hub_msg *cargo_msg(ms_ws *ws, bool binary, const uint8_t *msg, size_t len, uint16_t code)
{
    ms_hub_msg *m = ms_hub_msg_new(MS_HUB_CARGO, (uint32_t)ws->bay, ws->gen, ws->conn_id, code, NULL,
                                   MS_DOCK_CARGO_HEADER_LEN + len);
    if (!m) {
        ws_close_with(ws, 1011, "out of memory");
        return NULL;
    }
    ms_dock_put_cargo_header(m->data, binary ? MS_DOCK_CARGO_BINARY : MS_DOCK_CARGO, ws->conn_id, (uint32_t)len);
    if (len)
        memcpy(m->data + MS_DOCK_CARGO_HEADER_LEN, msg, len);
    return m;
}

/* A compressed message (RSV1, allowed by wslay only when agreed) inflated
 * into a Cargo message, or the client closed with 1009 (over
 * ws_max_message_size once inflated), 1007 (not deflate data, or text that
 * is not UTF-8) or 1011 and NULL. */
static ms_hub_msg *inflate_msg(ms_ws *ws, bool binary, const uint8_t *msg, size_t len)
{
    ms_worker *w = ws->c->w;
    ms_pmd_rc rc = MS_PMD_NOMEM;
    uint8_t *plain = NULL;
    size_t out_len = 0;
    if (w->ws_pmd || (w->ws_pmd = ms_pmd_new()))
        rc = ms_pmd_inflate(w->ws_pmd, msg, len, lim(ws->c)->ws_max_message_size, &plain, &out_len);
    if (rc == MS_PMD_OK && !binary && !ms_dock_utf8_valid(plain, out_len)) {
        free(plain);
        ws_close_with(ws, 1007, "a text message is not UTF-8");
        return NULL;
    }
    switch (rc) {
    case MS_PMD_OK: {
        ms_hub_msg *m = cargo_msg(ws, binary, plain, out_len, 0);
        free(plain);
        return m;
    }
    case MS_PMD_TOO_BIG:
        ws_close_with(ws, 1009, "the message is too big once inflated");
        return NULL;
    case MS_PMD_BAD_DATA:
        ws_close_with(ws, 1007, "the message is not valid deflate data");
        return NULL;
    default:
        ws_close_with(ws, 1011, "out of memory");
        return NULL;
    }
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *user)
{
    ms_ws *ws = ((ms_ws_slot *)user)->ws;
    (void)ctx;
    if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        if (!ws->report_code)
            ws->report_code = a->status_code ? a->status_code : 1005;
        return;
    }
    if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME)
        return; /* ping (wslay answers it) or pong */
    if (ws->closing)
        return;
    bool binary = a->opcode == WSLAY_BINARY_FRAME;
    if (binary && !ws->binary_ok) {
        ws_close_with(ws, 1003, "this bay accepts text messages only");
        return;
    }
    ms_hub_msg *m;
    if (!wslay_get_rsv1(a->rsv))
        m = cargo_msg(ws, binary, a->msg, a->msg_length, 0);
    else if (ws->pend || ws->held)
        /* it would wait in pend: kept compressed until its turn, so what
         * one read brings costs what it weighs there, not up to 1000 times
         * more once inflated (retry_pending inflates it) */
        m = cargo_msg(ws, binary, a->msg, a->msg_length, WS_PEND_DEFLATED);
    else
        m = inflate_msg(ws, binary, a->msg, a->msg_length);
    if (!m)
        return;
    to_bay(ws, m);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = cb_recv,
    .send_callback = cb_send,
    .on_frame_recv_start_callback = cb_frame_start,
    .on_frame_recv_end_callback = cb_frame_end,
    .on_msg_recv_callback = cb_msg,
};

/* A context from the worker's pool (one that served a client up to a
 * message boundary: wslay's state is then that of a new one), or a new
 * one: wslay_event_context_server_init callocs over 8 KiB (two 4 KiB
 * buffers). */
static bool ensure_ctx(ms_ws *ws)
{
    if (ws->ctx)
        return true;
    ms_worker *w = ws->c->w;
    ms_ws_slot *sl = w->ws_ctx_pool;
    if (sl) {
        w->ws_ctx_pool = sl->next;
        w->ws_ctx_pooled--;
    } else {
        sl = malloc(sizeof *sl);
        if (!sl)
            return false;
        if (wslay_event_context_server_init(&sl->ctx, &ws_callbacks, sl) != 0) {
            free(sl);
            return false;
        }
    }
    sl->ws = ws;
    sl->next = NULL;
    ws->slot = sl;
    ws->ctx = sl->ctx;
    wslay_event_config_set_max_recv_msg_length(ws->ctx, lim(ws->c)->ws_max_message_size);
    /* RSV1 marks a compressed message; without the agreement wslay fails it (1002) */
    wslay_event_config_set_allowed_rsv_bits(ws->ctx, ws->deflate_bits ? WSLAY_RSV1_BIT : WSLAY_RSV_NONE);
    ws->fed = ws->framed = ws->cur_frame = 0;
    ws->in_fragment = false;
    return true;
}

/* The client is between messages (maybe_idle's test): its context goes
 * back to w's pool, or is freed (w NULL, or the pool is full). */
static void release_ctx(ms_ws *ws, ms_worker *w)
{
    ms_ws_slot *sl = ws->slot;
    ws->ctx = NULL;
    ws->slot = NULL;
    if (w && w->ws_ctx_pooled < MS_WS_CTX_POOL) {
        sl->ws = NULL;
        sl->next = w->ws_ctx_pool;
        w->ws_ctx_pool = sl;
        w->ws_ctx_pooled++;
        return;
    }
    wslay_event_context_free(sl->ctx);
    free(sl);
}

/* ---------------------------------------------------------------- driving wslay */

static void maybe_idle(ms_ws *ws)
{
    ms_conn *c = ws->c;
    if (!ws->ctx || ws->busy || ws->closing || ms_conn_is_closing(c))
        return;
    if (ws->fed != ws->framed || ws->in_fragment || wslay_event_want_write(ws->ctx) ||
        wslay_event_get_queued_msg_count(ws->ctx) != 0 || wslay_event_get_close_received(ws->ctx) ||
        wslay_event_get_close_sent(ws->ctx) || ms_conn_writing(c))
        return;
    release_ctx(ws, wslay_event_want_read(ws->ctx) ? c->w : NULL);
}

static void ws_free(ms_ws *ws)
{
    assert(ws->busy == 0); /* not from inside a wslay call: it still uses ctx */
    if (ws->ctx)
        release_ctx(ws, NULL); /* the connection may be gone: not reused */
    free(ws->board);
    free(ws);
}

/* After a wslay call: false when the client went away meanwhile (ws is freed). */
static bool ws_leave(ms_ws *ws)
{
    assert(ws->busy > 0);
    if (--ws->busy == 0 && ws->detached) {
        ws_free(ws);
        return false;
    }
    return !ws->detached;
}

/* Send what wslay has queued (one gathered write), then see whether the
 * close handshake is over. */
static void ws_flush(ms_ws *ws)
{
    ms_conn *c = ws->c;
    if (!ws->ctx || ws->busy || ms_conn_is_closing(c))
        return; /* inside a wslay callback: the outer call flushes */
    if (wslay_event_want_write(ws->ctx)) {
        ws->busy++;
        ms_conn_cork(c);
        int rc = wslay_event_send(ws->ctx);
        ms_conn_uncork(c);
        if (!ws_leave(ws) || ms_conn_is_closing(c))
            return;
        if (rc != 0) {
            ms_conn_close(c);
            return;
        }
    }
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx) && !ms_conn_writing(c)) {
        ms_conn_close(c); /* both close frames exchanged (or reading is over after an error) */
        return;
    }
    if ((wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx)) && !ws->closing) {
        /* wslay answered a close or failed the connection (1002, 1007, 1009) */
        start_closing(ws);
    }
    maybe_idle(ws);
}

static void unhold(ms_ws *ws);

static void ws_close_with(ms_ws *ws, uint16_t code, const char *reason)
{
    ms_conn *c = ws->c;
    if (ws->closing || ms_conn_is_closing(c))
        return;
    if (ws->held) { /* the client's close frame must be read */
        unhold(ws);
        ms_conn_start_reading(c);
    }
    if (!ensure_ctx(ws)) {
        ms_conn_close(c);
        return;
    }
    start_closing(ws);
    if (!ws->report_code)
        ws->report_code = code;
    wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    ws_flush(ws);
}

/* Bytes from the client (the handler's data operation). */
static void ws_on_read(ms_conn *c, const char *data, size_t n)
{
    ms_ws *ws = c->ws;
    assert(ws && ws->c == c && !ws->detached && !ms_conn_is_closing(c));
    ws->last_rx = uv_now(&c->w->loop);
    if (!ensure_ctx(ws)) {
        ms_conn_close(c);
        return;
    }
    ws->in = (const uint8_t *)data;
    ws->in_len = n;
    ws->busy++;
    int rc = wslay_event_recv(ws->ctx);
    ws->in_len = 0;
    if (!ws_leave(ws) || ms_conn_is_closing(c))
        return;
    if (rc != 0) {
        /* a frame wslay could not parse: it queued a close without a code
         * and stopped reading; send that, then hang up */
        if (!ws->report_code)
            ws->report_code = rc == WSLAY_ERR_NOMEM ? 1011 : 1002;
        start_closing(ws);
    } else if (!ws->closing &&
               wslay_event_get_queued_msg_length(ws->ctx) + ms_conn_write_pending(c) > lim(c)->ws_send_queue) {
        /* it sends (pings whose pongs pile up, say) but does not read: no
         * more input from it; the close frame waits for room, or the close
         * deadline ends it */
        ms_hub_count(&c->w->hub->bays[ws->bay].st.closed_slow, 1);
        stop_reading_client(ws);
        ws_close_with(ws, 1008, "send queue full: the client does not read");
        return;
    }
    ws_flush(ws);
}

static void ws_drained(ms_conn *c)
{
    assert(c->ws && c->ws->c == c);
    ws_flush(c->ws);
}

/* ---------------------------------------------------------------- to the bay */

static void stop_reading_client(ms_ws *ws)
{
    ms_conn_stop_reading(ws->c);
}

/* Messages to bays are staged for the rest of the loop turn and written
 * together (ms_hub_to_link_chain: one sendmsg for all of a turn's
 * messages to a bay, one read for it) while the bay's link takes them
 * straight: stage_ok, cleared when a turn's messages had to be queued,
 * set again when one goes straight to the socket. Everything else to a
 * link (Boarding, Disembark, a blocked client's pend) goes through
 * link_send, which writes the staged ones first: a bay sees a client's
 * frames in order. */
static void stage_flush(ms_worker *w)
{
    ms_hub_msg *m = w->ws_stage;
    w->ws_stage = w->ws_stage_tail = NULL;
    w->ws_stage_bytes = 0;
    if (w->ws_stage_check_on) {
        uv_check_stop(&w->ws_stage_check);
        w->ws_stage_check_on = false;
    }
    while (m) { /* runs of one bay and generation */
        ms_hub_msg *last = m;
        while (last->next && last->next->bay == m->bay && last->next->gen == m->gen)
            last = last->next;
        ms_hub_msg *rest = last->next;
        last->next = NULL;
        if (!ms_hub_to_link_chain(w->hub, m))
            w->ws_stage_ok = false;
        m = rest;
    }
}

static void on_stage_check(uv_check_t *h)
{
    stage_flush(h->data);
}

static bool link_send(ms_worker *w, ms_hub_msg *m, bool force)
{
    if (w->ws_stage)
        stage_flush(w);
    bool direct = false;
    bool taken = ms_hub_to_link_ex(w->hub, m, force, &direct);
    if (direct)
        w->ws_stage_ok = true;
    return taken;
}

static void stage(ms_worker *w, ms_hub_msg *m)
{
    m->next = NULL;
    if (w->ws_stage_tail)
        w->ws_stage_tail->next = m;
    else
        w->ws_stage = m;
    w->ws_stage_tail = m;
    w->ws_stage_bytes += m->len;
    if (w->ws_stage_bytes >= MS_WS_STAGE_MAX) {
        stage_flush(w);
        return;
    }
    if (!w->ws_stage_check_on) {
        uv_check_start(&w->ws_stage_check, on_stage_check);
        w->ws_stage_check_on = true;
    }
}

static void to_bay(ms_ws *ws, ms_hub_msg *m)
{
    ms_worker *w = ws->c->w;
    if (!ws->pend && !ws->held) {
        if (w->ws_stage_ok && w->ws_stage_check_open) {
            stage(w, m);
            return;
        }
        if (link_send(w, m, false))
            return;
    }
    /* the bay's queue is full (or there is no link while held): keep it,
     * in order, and stop reading */
    m->next = NULL;
    if (ws->pend_tail)
        ws->pend_tail->next = m;
    else
        ws->pend = m;
    ws->pend_tail = m;
    if (!ws->held)
        ws->blocked = true;
    stop_reading_client(ws);
}

static void retry_pending(ms_ws *ws)
{
    ms_worker *w = ws->c->w;
    while (ws->pend) {
        ms_hub_msg *m = ws->pend;
        if (m->kind == MS_HUB_CARGO && m->code == WS_PEND_DEFLATED) {
            /* its turn: inflated now, one at a time. The list is off ws
             * meanwhile: a failure closes the client, which may free ws,
             * and nothing after a bad message goes to the bay. */
            ms_hub_msg *rest = m->next, *tail = ws->pend_tail;
            ws->pend = ws->pend_tail = NULL;
            bool binary = m->data[0] == MS_DOCK_CARGO_BINARY;
            ms_hub_msg *plain = inflate_msg(ws, binary, m->data + MS_DOCK_CARGO_HEADER_LEN,
                                            m->len - MS_DOCK_CARGO_HEADER_LEN);
            uint32_t gen = m->gen;
            free(m);
            if (!plain) {
                ms_hub_msg_free_list(rest);
                return;
            }
            plain->gen = gen;
            plain->next = rest;
            ws->pend = m = plain;
            ws->pend_tail = rest ? tail : plain;
        }
        ms_hub_msg *next = m->next;
        if (!link_send(w, m, false))
            return;
        ws->pend = next;
        if (!next)
            ws->pend_tail = NULL;
    }
    ws->blocked = false;
    if (!ms_conn_is_closing(ws->c))
        ms_conn_start_reading(ws->c);
}

/* ---------------------------------------------------------------- from the bay */

void ms_ws_deliver(ms_worker *w, ms_hub_msg *m)
{
    ms_ws_deliver_to(w, m->kind, m->bay, m->gen, m->conn_id, m->code, m->data, m->len);
}

void ms_ws_deliver_to(ms_worker *w, uint8_t kind, uint32_t bay, uint32_t gen, uint32_t conn_id, uint16_t code,
                      const uint8_t *data, size_t len)
{
    assert(bay < w->hub->nbays); /* set by the link from its own index, never by the bay */
    ms_hub_bay_stats *st = &w->hub->bays[bay].st;
    ms_ws *ws = ms_idmap_get(&w->ws_ids, conn_id);
    if (!ws || ws->bay != bay || ws->gen != gen || ms_conn_is_closing(ws->c)) {
        if (kind != MS_HUB_TO_CLIENT_CLOSE)
            ms_hub_count(&st->dropped, 1);
        return;
    }
    if (kind == MS_HUB_TO_CLIENT_CLOSE) {
        ws->tell_bay = false; /* the bay asked for it */
        char reason[124];
        size_t rl = len < sizeof reason - 1 ? len : sizeof reason - 1;
        memcpy(reason, data, rl);
        reason[rl] = '\0';
        ws_close_with(ws, ms_dock_close_code_sendable(code) ? code : 1000, reason);
        return;
    }
    if (ws->closing)
        return;
    /* a text frame must be UTF-8: anything else from the bay goes as binary */
    bool binary = kind == MS_HUB_TO_CLIENT_BINARY || !ms_dock_utf8_valid(data, len);
    if (!ensure_ctx(ws)) {
        ms_conn_close(ws->c);
        return;
    }
    uint64_t queued = wslay_event_get_queued_msg_length(ws->ctx) + ms_conn_write_pending(ws->c);
    if (queued + len > lim(ws->c)->ws_send_queue) {
        ms_hub_count(&st->closed_slow, 1);
        ws_close_with(ws, 1008, "send queue full: the client does not read");
        return;
    }
    struct wslay_event_msg msg = { .opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
                                   .msg = data, .msg_length = len };
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    uint8_t rsv = WSLAY_RSV_NONE;
    if (ws->deflate_bits && len >= WS_DEFLATE_MIN && (w->ws_pmd || (w->ws_pmd = ms_pmd_new())) &&
        ms_pmd_deflate(w->ws_pmd, ws->deflate_bits, data, len, &packed, &packed_len) == MS_PMD_OK) {
        msg.msg = packed; /* wslay copies it */
        msg.msg_length = packed_len;
        rsv = WSLAY_RSV1_BIT;
    } /* else (short, no gain, no memory) it goes as it is: RSV1 unset */
    int qrc = wslay_event_queue_msg_ex(ws->ctx, &msg, rsv);
    free(packed);
    if (qrc != 0) {
        ms_conn_close(ws->c);
        return;
    }
    if (!ws->dirty) { /* flushed once after the whole inbox: one write for all its messages */
        ws->dirty = true;
        ws->dirty_prev = NULL;
        ws->dirty_next = w->ws_dirty;
        if (w->ws_dirty)
            w->ws_dirty->dirty_prev = ws;
        w->ws_dirty = ws;
    }
}

static void undirty(ms_worker *w, ms_ws *ws)
{
    if (!ws->dirty)
        return;
    ws->dirty = false;
    assert(ws->dirty_prev || w->ws_dirty == ws);
    if (ws->dirty_prev)
        ws->dirty_prev->dirty_next = ws->dirty_next;
    else
        w->ws_dirty = ws->dirty_next;
    if (ws->dirty_next)
        ws->dirty_next->dirty_prev = ws->dirty_prev;
}

static void link_down(ms_worker *w, const ms_hub_msg *m)
{
    ms_wslink_gone(w, m->bay, m->gen);
    for (ms_ws *ws = w->ws_list, *next; ws; ws = next) {
        next = ws->next;
        if (ws->bay != m->bay || ws->gen > m->gen)
            continue;
        ws->tell_bay = false;
        ws_close_with(ws, m->code, m->code == 1012   ? "the bay is restarting"
                                   : m->code == 1001 ? "the bay was removed"
                                                     : "the bay failed");
    }
}

/* ---------------------------------------------------------------- held clients */

static uint64_t tick_ms(const ms_conn *c)
{
    uint64_t tick = lim(c)->ws_ping_interval_ms / 2;
    return tick ? tick : 1;
}

/* The client leaves the held state (accounting only: reading is the caller's). */
static void unhold(ms_ws *ws)
{
    assert(ws->held);
    ms_hub *hub = ws->c->w->hub;
    ws->held = false;
    __atomic_fetch_sub(&hub->bays[ws->bay].st.held, 1, __ATOMIC_RELAXED);
    if (ws->waiting) {
        ws->waiting = false;
        ms_hub_wait_done(hub, ws->bay);
    }
}

/* Its timer fires at the deadline (and no earlier: see on_ws_timer). */
static void arm_hold_timer(ms_ws *ws)
{
    uint64_t now = ms_hub_now_ms();
    uint64_t left = ws->held_until > now ? ws->held_until - now : 0;
    ms_conn_timer_start(ws->c, on_ws_timer, left + 1, tick_ms(ws->c));
}

static void hold(ms_ws *ws, uint64_t until)
{
    ms_conn *c = ws->c;
    if (ws->closing || ms_conn_is_closing(c))
        return;
    if (!ws->board) { /* boarded before its bay resumed: cannot be boarded again */
        ws->tell_bay = false;
        ws_close_with(ws, 1012, "the bay is restarting");
        return;
    }
    if (!ws->held) {
        ws->held = true;
        ms_hub_count(&c->w->hub->bays[ws->bay].st.held, 1);
    }
    ws->held_until = until;
    ws->blocked = false; /* what pend holds waits for the next link */
    stop_reading_client(ws);
    arm_hold_timer(ws);
}

static void link_hold(ms_worker *w, const ms_hub_msg *m)
{
    ms_wslink_gone(w, m->bay, m->gen);
    uint64_t until = 0;
    assert(m->len == sizeof until);
    memcpy(&until, m->data, sizeof until);
    for (ms_ws *ws = w->ws_list, *next; ws; ws = next) {
        next = ws->next;
        if (ws->bay == m->bay && ws->gen <= m->gen)
            hold(ws, until);
    }
}

/* Board a held client on the link of generation gen: its Boarding (resumed
 * when a link had it before), then what it sent meanwhile, then reading. */
static void board_again(ms_ws *ws, uint32_t gen, unsigned features)
{
    ms_conn *c = ws->c;
    ms_hub *hub = c->w->hub;
    if (ws->boarded && !(features & MS_DOCK_FEAT_RESUME)) {
        ws->tell_bay = false;
        ws_close_with(ws, 1012, "the bay is restarting");
        return;
    }
    /* its Boarding for an earlier link that went before taking it: that
     * one goes to this link instead of a second (counted already) */
    ms_hub_msg *board = ms_hub_take_boarding(&ws->pend, &ws->pend_tail);
    bool counted = board != NULL;
    if (board) {
        board->gen = gen;
    } else if (ws->boarded) {
        ms_dock_buf b = { 0 };
        if (ms_dock_encode_boarding_resumed(&b, ws->board, ws->board_len) == 0)
            board = ms_hub_msg_new(MS_HUB_BOARDING, (uint32_t)ws->bay, gen, ws->conn_id, 0, b.data, b.len);
        ms_dock_buf_free(&b);
    } else {
        board = ms_hub_msg_new(MS_HUB_BOARDING, (uint32_t)ws->bay, gen, ws->conn_id, 0, ws->board, ws->board_len);
    }
    if (!board) {
        ws->tell_bay = false;
        ws_close_with(ws, 1011, "out of memory");
        return;
    }
    if (!counted)
        ms_hub_count(ws->boarded ? &hub->bays[ws->bay].st.resumed : &hub->bays[ws->bay].st.boardings, 1);
    unhold(ws);
    ws->gen = gen;
    ws->boarded = true;
    ws->binary_ok = (features & MS_DOCK_FEAT_BINARY) != 0;
    if (!(features & MS_DOCK_FEAT_RESUME)) {
        free(ws->board);
        ws->board = NULL;
        ws->board_len = 0;
    }
    /* what it sent meanwhile follows its Boarding (binary only if agreed) */
    ms_hub_msg *keep = board, *tail = board;
    for (ms_hub_msg *m = ws->pend, *next; m; m = next) {
        next = m->next;
        if (m->data[0] == MS_DOCK_CARGO_BINARY && !ws->binary_ok) {
            free(m);
            continue;
        }
        m->gen = gen;
        tail->next = m;
        tail = m;
    }
    tail->next = NULL;
    ws->pend = keep;
    ws->pend_tail = tail;
    ws->blocked = true;
    ws->last_rx = uv_now(&c->w->loop);
    ms_conn_timer_start(c, on_ws_timer, tick_ms(c), tick_ms(c));
    retry_pending(ws); /* reads again once all of it is queued for the bay */
}

static void link_up(ms_worker *w, const ms_hub_msg *m)
{
    for (ms_ws *ws = w->ws_list, *next; ws; ws = next) {
        next = ws->next;
        if (ws->bay == m->bay && ws->held)
            board_again(ws, m->gen, m->code);
    }
}

void ms_ws_flush_dirty(ms_worker *w)
{
    while (w->ws_dirty) {
        ms_ws *ws = w->ws_dirty;
        undirty(w, ws);
        assert(w->ws_dirty != ws); /* off the list before ws_flush, which may free it */
        ws_flush(ws);
    }
}

static void on_dock_async(uv_async_t *a)
{
    ms_worker *w = a->data;
    ms_hub_msg *list = ms_hub_take_inbox(w->hub, w->id);
    while (list) {
        ms_hub_msg *m = list;
        list = m->next;
        if (m->kind == MS_HUB_LINK_DOWN)
            link_down(w, m);
        else if (m->kind == MS_HUB_LINK_HOLD)
            link_hold(w, m);
        else if (m->kind == MS_HUB_LINK_UP)
            link_up(w, m);
        else if (m->kind == MS_HUB_LINK_ATTACH)
            ms_wslink_attach(w, m);
        else
            ms_ws_deliver(w, m);
        free(m);
    }
    ms_ws_flush_dirty(w);
    ms_wslink_resume(w);
    if (ms_hub_take_resume(w->hub, w->id))
        for (ms_ws *ws = w->ws_list, *next; ws; ws = next) {
            next = ws->next;
            if (ws->blocked)
                retry_pending(ws);
        }
    ms_hbay_worker_wake(w); /* an HTTP bay's link may have been given up for this worker */
}

bool ms_ws_worker_init(ms_worker *w)
{
    if (!w->hub)
        return true;
    w->ws_rbuf = malloc(MS_WS_RBUF);
    if (!w->ws_rbuf || uv_async_init(&w->loop, &w->dock_async, on_dock_async) != 0) {
        free(w->ws_rbuf);
        w->ws_rbuf = NULL;
        return false;
    }
    w->dock_async.data = w;
    w->dock_async_open = true;
    if (uv_check_init(&w->loop, &w->ws_stage_check) == 0) { /* without it messages go one by one */
        w->ws_stage_check.data = w;
        w->ws_stage_check_open = true;
        w->ws_stage_ok = true;
    }
    ms_hub_worker_attach(w->hub, w->id, &w->dock_async);
    return true;
}

static void on_async_closed(uv_handle_t *h)
{
    (void)h;
}

void ms_ws_worker_close(ms_worker *w)
{
    stage_flush(w);
    if (w->ws_stage_check_open) {
        w->ws_stage_check_open = false;
        uv_close((uv_handle_t *)&w->ws_stage_check, on_async_closed);
    }
    ms_hbay_worker_close(w);
    ms_wslink_worker_close(w);
    if (!w->dock_async_open)
        return;
    w->dock_async_open = false;
    ms_hub_worker_detach(w->hub, w->id);
    uv_close((uv_handle_t *)&w->dock_async, on_async_closed);
}

void ms_ws_worker_free(ms_worker *w)
{
    ms_hbay_worker_free(w);
    ms_pmd_free(w->ws_pmd);
    w->ws_pmd = NULL;
    ms_hub_msg_free_list(w->ws_stage); /* none: ms_ws_worker_close wrote them */
    w->ws_stage = w->ws_stage_tail = NULL;
    while (w->ws_ctx_pool) {
        ms_ws_slot *sl = w->ws_ctx_pool;
        w->ws_ctx_pool = sl->next;
        wslay_event_context_free(sl->ctx);
        free(sl);
    }
    w->ws_ctx_pooled = 0;
    free(w->ws_rbuf);
    w->ws_rbuf = NULL;
    ms_idmap_free(&w->ws_ids);
}

/* ---------------------------------------------------------------- timers, shutdown, end */

static void on_ws_timer(uv_timer_t *t)
{
    ms_conn *c = t->data;
    ms_ws *ws = c->ws;
    if (ms_conn_is_closing(c) || !ws)
        return;
    uint64_t now = uv_now(&c->w->loop);
    if (ws->closing) { /* the close wait is over */
        ms_conn_close(c);
        return;
    }
    if (ws->held) { /* not read on purpose: not idle, no pings */
        ws->last_rx = now;
        if (ms_hub_now_ms() < ws->held_until) {
            arm_hold_timer(ws); /* the loop's clock was behind the shared one */
            return;
        }
        ms_hub_count(&c->w->hub->bays[ws->bay].st.held_expired, 1);
        ws->tell_bay = false;
        ws_close_with(ws, 1012, "the bay is restarting");
        return;
    }
    if (ws->blocked) {
        ws->last_rx = now; /* not read on purpose (its bay is behind): not idle */
        return;
    }
    if (now - ws->last_rx >= lim(c)->ws_idle_timeout_ms) {
        ws->report_code = 1006; /* it stopped answering */
        ms_conn_close(c);
        return;
    }
    if (now - ws->last_rx >= lim(c)->ws_ping_interval_ms) {
        if (!ensure_ctx(ws)) {
            ms_conn_close(c);
            return;
        }
        struct wslay_event_msg ping = { .opcode = WSLAY_PING, .msg = NULL, .msg_length = 0 };
        wslay_event_queue_msg(ws->ctx, &ping);
        ws_flush(ws);
    }
}

static void ws_shutdown(ms_conn *c)
{
    if (c->ws)
        ws_close_with(c->ws, 1001, "Mothership is shutting down");
}

/* The connection is closing: tell the bay (unless it asked for this or its
 * link is gone), forget the client. */
static void ws_detach(ms_conn *c)
{
    ms_ws *ws = c->ws;
    if (!ws)
        return;
    ms_worker *w = c->w;
    ms_hub *hub = w->hub;
    assert(ws->c == c && !ws->detached && ws->bay < hub->nbays);
    c->ws = NULL;
    uint16_t code = ws->report_code;
    if (!code && ws->ctx && wslay_event_get_close_sent(ws->ctx)) /* wslay failed it: 1002, 1007, 1009 */
        code = wslay_event_get_status_code_sent(ws->ctx);
    if (!code)
        code = 1006; /* it vanished */
    if (ws->held)
        unhold(ws); /* no link has it now: nobody to tell */
    else if (ws->tell_bay && ms_hub_bay_gen(hub, ws->bay, NULL) == ws->gen) {
        ms_dock_buf b = { 0 };
        if (ms_dock_encode_disembark(&b, ws->conn_id, code, "") == 0) {
            ms_hub_msg *m = ms_hub_msg_new(MS_HUB_DISEMBARK, (uint32_t)ws->bay, ws->gen, ws->conn_id, code, b.data,
                                           b.len);
            if (m)
                link_send(w, m, true);
        }
        ms_dock_buf_free(&b);
    }
    ms_hub_msg_free_list(ws->pend);
    ws->pend = ws->pend_tail = NULL;
    undirty(w, ws);
    ms_idmap_del(&w->ws_ids, ws->conn_id);
    assert(ws->prev || w->ws_list == ws);
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        w->ws_list = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    __atomic_fetch_sub(&hub->bays[ws->bay].st.clients, 1, __ATOMIC_RELAXED);
    if (ws->busy)
        ws->detached = true; /* freed when the wslay call in progress returns */
    else
        ws_free(ws);
}

/* ---------------------------------------------------------------- the handshake */

static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static bool header_is(const ms_conn *c, const char *name, const char *tok)
{
    /* a header may be sent several times: any of them may carry the token */
    size_t nl = strlen(name);
    for (uint16_t i = 0; i < c->nhdr; i++) {
        const ms_hdr *h = &c->hdr[i];
        if (h->name_len == nl && strncasecmp(c->buf + h->name, name, nl) == 0 &&
            has_token(c->buf + h->val, h->val_len, tok))
            return true;
    }
    return false;
}

static bool valid_key(const ms_hdr *k, const char *buf)
{
    if (!k || k->val_len != 24 || buf[k->val + 22] != '=' || buf[k->val + 23] != '=')
        return false;
    unsigned char out[20];
    return EVP_DecodeBlock(out, (const unsigned char *)buf + k->val, 24) == 18; /* 16 bytes + 2 of padding */
}

/* The subprotocol to answer with: the first of the bay's (in its order) that
 * the client offered in any Sec-WebSocket-Protocol header; NULL: none. */
static const char *pick_subprotocol(const ms_conn *c, const ms_ship *bay)
{
    for (size_t k = 0; k < bay->subprotocols.len; k++)
        if (header_is(c, "sec-websocket-protocol", bay->subprotocols.items[k]))
            return bay->subprotocols.items[k];
    return NULL;
}

/* permessage-deflate, when the route allows it and an offer of the client's
 * can be accepted: the answer's header line into buf ("" when none), the
 * window we deflate with in *bits (0: no compression). */
static void negotiate_deflate(const ms_conn *c, uint8_t *bits, char *buf, size_t cap)
{
    *bits = 0;
    buf[0] = '\0';
    if (!c->route || !c->route->route->ws_compression)
        return;
    for (uint16_t i = 0; i < c->nhdr; i++) {
        const ms_hdr *h = &c->hdr[i];
        ms_pmd_agreed a;
        if (h->name_len != 24 || strncasecmp(c->buf + h->name, "sec-websocket-extensions", 24) != 0 ||
            !ms_pmd_negotiate(c->buf + h->val, h->val_len, &a))
            continue;
        char v[MS_PMD_ANSWER_MAX];
        size_t vl = ms_pmd_answer(&a, v, sizeof v);
        int n = vl ? snprintf(buf, cap, "Sec-WebSocket-Extensions: %.*s\r\n", (int)vl, v) : 0;
        if (n > 0 && (size_t)n < cap)
            *bits = a.server_bits;
        else
            buf[0] = '\0';
        return;
    }
}

static void respond_426(ms_conn *c, const char *detail)
{
    ms_conn_end_after_response(c, true);
    ms_conn_respond_error_with(c, 426, detail, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
}

static bool boarding_frame(ms_conn *c, ms_ws *ws, ms_hub_msg **out)
{
    /* NUL-terminated copies of the URL, the address and every header */
    size_t need = c->url_len + 1 + 80;
    for (uint16_t i = 0; i < c->nhdr; i++)
        need += c->hdr[i].name_len + c->hdr[i].val_len + 2;
    char *arena = malloc(need);
    ms_dock_kv *kv = calloc((size_t)c->nhdr + 1, sizeof *kv);
    if (!arena || !kv) {
        free(arena);
        free(kv);
        return false;
    }
    char *p = arena;
    const char *url = p;
    memcpy(p, c->buf + c->url_off, c->url_len);
    p += c->url_len;
    *p++ = '\0';
    const char *remote = p;
    char addr[64];
    int port = c->x ? ms_xport_peer_name(c->x, addr, sizeof addr) : 0;
    int rl = port ? snprintf(p, 80, strchr(c->peer, ':') ? "[%s]:%d" : "%s:%d", c->peer, port)
                  : snprintf(p, 80, "%s", c->peer);
    p += (rl > 0 && rl < 80 ? rl : 0) + 1;
    size_t nkv = 0;
    for (uint16_t i = 0; i < c->nhdr; i++) {
        const ms_hdr *h = &c->hdr[i];
        if (!ms_dock_utf8_valid((const uint8_t *)c->buf + h->val, h->val_len))
            continue; /* JSON cannot carry it: left out (docs/docking-protocol.md) */
        if (h->name_len == 17 && strncasecmp(c->buf + h->name, "x-forwarded-proto", 17) == 0)
            continue; /* the client's own claim: ours follows */
        kv[nkv].name = p;
        memcpy(p, c->buf + h->name, h->name_len);
        p += h->name_len;
        *p++ = '\0';
        kv[nkv++].value = p;
        memcpy(p, c->buf + h->val, h->val_len);
        p += h->val_len;
        *p++ = '\0';
    }
    /* how the client came: wss:// is ws:// to the bay, with this fact */
    kv[nkv].name = "X-Forwarded-Proto";
    kv[nkv++].value = c->secure ? "https" : "http";
    assert((size_t)(p - arena) <= need);
    ms_dock_buf b = { 0 };
    int rc = ms_dock_encode_boarding(&b, ws->conn_id, url, remote, kv, nkv);
    free(arena);
    free(kv);
    if (rc != 0) {
        ms_dock_buf_free(&b);
        return false;
    }
    *out = ms_hub_msg_new(MS_HUB_BOARDING, (uint32_t)ws->bay, ws->gen, ws->conn_id, 0, b.data, b.len);
    ms_dock_buf_free(&b);
    return *out != NULL;
}

/* 503 + Retry-After for an upgrade the bay cannot take now (counted). */
static void reject_503(ms_conn *c, ms_hub_bay_stats *st, const char *bay_name, const char *what)
{
    ms_hub_count(&st->rejected, 1);
    ms_conn_end_after_response(c, true);
    char why[200];
    snprintf(why, sizeof why, "bay \"%s\" %s", bay_name, what);
    ms_conn_respond_error(c, 503, why);
}

static uint32_t next_conn_id(ms_worker *w)
{
    unsigned nw = w->hub->nworkers;
    for (;;) {
        w->ws_seq++;
        if (w->ws_seq > (UINT32_MAX - w->id) / nw)
            w->ws_seq = 1; /* wrapped after ~4 billion clients */
        uint32_t id = w->ws_seq * nw + w->id;
        assert(ms_hub_worker_of(w->hub, id) == w->id); /* the link routes the bay's frames by it */
        if (id != 0 && !ms_idmap_get(&w->ws_ids, id))
            return id;
    }
}

/* A request routed to a bay: complete the handshake and board the client,
 * or answer 400 / 426 / 503. */
static bool ws_start(ms_conn *c, const ms_handler_arg *arg)
{
    (void)arg;
    ms_worker *w = c->w;
    ms_hub *hub = w->hub;
    const char *bay_name = c->g->m->ships[c->ship].name;
    /* the hub knows bays by their process's slot, which outlives manifests */
    const ms_proc *proc = ms_worker_proc(c->g, c->ship);
    size_t bay = proc ? proc->slot : c->ship;
    if (!hub) {
        ms_conn_respond_error(c, 503, "bays are not docked in this process");
        return true;
    }
    assert(bay < hub->nbays && hub->bays[bay].is_bay);
    ms_hub_bay_stats *st = &hub->bays[bay].st;
    if (!header_is(c, "upgrade", "websocket")) {
        respond_426(c, "this route leads to a WebSocket bay: use a WebSocket client");
        return true;
    }
    if (c->parser.method != HTTP_GET || c->http_minor < 1 || !c->upgrade) {
        ms_conn_end_after_response(c, true);
        ms_conn_respond_error(c, 400, c->parser.method != HTTP_GET ? "a WebSocket handshake must be a GET"
                                      : c->http_minor < 1       ? "a WebSocket handshake needs HTTP/1.1"
                                                                : "Connection: Upgrade is missing");
        return true;
    }
    const ms_hdr *ver = ms_conn_header(c, "sec-websocket-version");
    if (!ver || ver->val_len != 2 || memcmp(c->buf + ver->val, "13", 2) != 0) {
        respond_426(c, "only WebSocket version 13 is supported");
        return true;
    }
    if (!ms_dock_utf8_valid((const uint8_t *)c->buf + c->url_off, c->url_len)) {
        ms_conn_end_after_response(c, true);
        ms_conn_respond_error(c, 400, "the request target is not UTF-8");
        return true;
    }
    const ms_hdr *key = ms_conn_header(c, "sec-websocket-key");
    if (!valid_key(key, c->buf)) {
        ms_conn_end_after_response(c, true);
        ms_conn_respond_error(c, 400, "Sec-WebSocket-Key must be 16 bytes in base64");
        return true;
    }
    unsigned features = 0;
    uint32_t gen = ms_hub_bay_gen(hub, bay, &features);
    uint64_t wait_until = 0; /* away with resume: the client waits for its next link */
    if (gen == 0 && !(wait_until = ms_hub_wait_take(hub, bay, MS_DOCK_FEAT_RESUME))) {
        reject_503(c, st, bay_name, "is not docked");
        return true;
    }
    ms_ws *ws = calloc(1, sizeof *ws);
    if (!ws) {
        if (wait_until)
            ms_hub_wait_done(hub, bay);
        ms_conn_respond_error(c, 503, "out of memory");
        return true;
    }
    ws->c = c;
    ws->bay = bay;
    ws->gen = gen;
    ws->binary_ok = (features & MS_DOCK_FEAT_BINARY) != 0;
    ws->conn_id = next_conn_id(w);
    ws->tell_bay = true;
    ms_hub_msg *board = NULL;
    bool keep_board = wait_until || (features & MS_DOCK_FEAT_RESUME); /* boarded again later */
    if (!ms_idmap_put(&w->ws_ids, ws->conn_id, ws) || !boarding_frame(c, ws, &board) ||
        (keep_board && !(ws->board = malloc(board->len)))) {
        free(board);
        ms_idmap_del(&w->ws_ids, ws->conn_id);
        free(ws);
        if (wait_until)
            ms_hub_wait_done(hub, bay);
        ms_conn_respond_error(c, 503, "out of memory");
        return true;
    }
    if (keep_board) {
        memcpy(ws->board, board->data, board->len);
        ws->board_len = board->len;
    }
    if (wait_until) { /* its Boarding goes to the next link */
        free(board);
        ws->gen = UINT32_MAX; /* no link's yet: only the slot's end (LINK_DOWN of every gen) closes it */
        ws->held = ws->waiting = true;
        ws->held_until = wait_until;
        ms_hub_count(&st->held, 1);
    } else if (!link_send(w, board, false)) {
        free(board);
        ms_idmap_del(&w->ws_ids, ws->conn_id);
        free(ws->board);
        free(ws);
        reject_503(c, st, bay_name, "is busy: its queue is full");
        return true;
    } else {
        ws->boarded = true;
    }
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char kg[24 + sizeof WS_GUID];
    memcpy(kg, c->buf + key->val, 24);
    memcpy(kg + 24, WS_GUID, sizeof WS_GUID - 1);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int shalen = 0;
    char accept[64];
    if (!EVP_Digest(kg, 24 + sizeof WS_GUID - 1, sha, &shalen, EVP_sha1(), NULL))
        shalen = 0;
    EVP_EncodeBlock((unsigned char *)accept, sha, (int)shalen);
    const char *proto = pick_subprotocol(c, &c->g->m->ships[c->ship]);
    char ext[MS_PMD_ANSWER_MAX + 32];
    negotiate_deflate(c, &ws->deflate_bits, ext, sizeof ext);
    char head[960];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 101 Switching Protocols\r\nServer: mothership\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s%sX-Request-Id: %.*s\r\n\r\n",
                      accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? 200 : 0, proto ? proto : "",
                      proto ? "\r\n" : "", ext, (int)c->reqid_len, c->reqid); /* fits: names <= 128 bytes */
    /* the client is one of the worker's now */
    ws->next = w->ws_list;
    if (w->ws_list)
        w->ws_list->prev = ws;
    w->ws_list = ws;
    c->ws = ws;
    ms_hub_count(&st->clients, 1);
    if (ws->boarded)
        ms_hub_count(&st->boardings, 1); /* a waiting one counts when it is boarded */
    ws->last_rx = uv_now(&w->loop);
    if (ws->held)
        arm_hold_timer(ws);
    else
        ms_conn_timer_start(c, on_ws_timer, tick_ms(c), tick_ms(c));
    ms_conn_record(c, 101);
    ms_conn_write(c, head, (size_t)hl, true);
    if (ms_conn_is_closing(c))
        return true; /* the write failed: the connection (and ws) is gone */
    ms_conn_hand_over(c); /* frames the client sent right behind its handshake come to ws_on_read */
    if (!ms_conn_is_closing(c) && !ws->blocked && !ws->held)
        ms_conn_start_reading(c);
    return true;
}

const ms_handler ms_handler_bay = {
    .start = ws_start,
    .data = ws_on_read,
    .drained = ws_drained,
    .shutdown = ws_shutdown,
    .abort = ws_detach,
};
