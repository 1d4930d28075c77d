/* h2.c: HTTP/2 client connections on a worker: the glue between a
 * transport (a socket with the prior-knowledge preface on an h2c bind, or
 * TLS after ALPN chose h2), the socket-free session (h2_session.c) and one
 * HTTP/1.1 connection (conn.c) per stream.
 *
 * Each stream's exchange is an ms_conn over a stream transport defined
 * here (transport.h): its reads are the request as HTTP/1.1 bytes, its
 * writes the HTTP/1.1 response, which count as pending until nghttp2 has
 * taken them, so a proxied response pauses its ship like a slow HTTP/1.1
 * client would. Every callback of a stream transport comes from the loop
 * (a uv_idle per stream while it has something to deliver), and the
 * session's sends run from the loop too (a uv_idle per connection), so
 * neither side ever re-enters the other.
 *
 * The connection's output leaves only while its transport keeps up
 * (MS_WRITE_HIGH): what a client does not read stays in nghttp2, whose
 * unsent acknowledgements are bounded (h2_max_control_frames), and in the
 * streams' bounded buffers, whose stall ends them (h2_stall_timeout). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2_session.h"
#include "http/http_impl.h"

#define H2_READ_BUF 16384
#define H2_STREAM_READ 65536        /* what a stream offers its connection per read */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

struct ms_h2conn {
    ms_worker *w;
    ms_wgen *g;                    /* held: the generation the connection started on */
    ms_h2conn *prev, *next;
    uint32_t bind_idx;
    ms_xport *x;                   /* the socket or TLS transport; NULL once closed */
    ms_h2_session *s;              /* NULL once closing */
    uv_timer_t tick;
    uv_idle_t run;                 /* sends and notifications, from the loop */
    int handles_open;              /* x, tick, run */
    bool run_active, run_again;
    bool ending;                   /* the session is over: send what is left, then close */
    bool closing;
    bool secure;
    uint64_t stall_ms;             /* h2_stall_timeout: output that does not move ends the connection */
    uint64_t write_progress_ms;    /* the last time output left, or there was none */
    char peer[64];
    uint16_t peer_port;            /* 0: unknown */
    char rbuf[H2_READ_BUF];
};

/* The stream transport under one stream's ms_conn. */
typedef struct h2_sx {
    ms_xport x;
    ms_h2conn *hc;                 /* NULL once the connection is gone */
    ms_h2_stream *st;              /* NULL once detached or gone */
    uv_idle_t idle;                /* callbacks to the conn, from the loop */
    bool idle_active;
    bool written_due;              /* the response bytes have been taken: written(0) owed */
    bool failed;                   /* the stream was reset under the conn: written(<0) owed */
    bool failed_told;
    bool eof_due, eof_told;        /* the input ended (a tunnel's END_STREAM, or after our shutdown) */
} h2_sx;

static uint64_t now_ms(void)
{
    return ms_now_us() / 1000;
}

/* Whether a plain bind serves HTTP/2 with prior knowledge (its `h2c` key). */
static bool bind_h2c(const ms_wgen *g, uint32_t bind_idx)
{
    const ms_bind *b = &g->m->global.binds[bind_idx];
    return b->h2c && !b->tls;
}

/* ---------------------------------------------------------------- the stream transport */
static void sx_on_idle(uv_idle_t *i);

static void sx_kick(h2_sx *sx)
{
    if (!sx->idle_active && !sx->x.closing) {
        sx->idle_active = true;
        uv_idle_start(&sx->idle, sx_on_idle);
    }
}

static void hc_schedule(ms_h2conn *hc);

static void sx_on_idle(uv_idle_t *i)
{
    h2_sx *sx = i->data;
    ms_xport *x = &sx->x;
    sx->idle_active = false;
    uv_idle_stop(i);
    if (x->closing)
        return;
    if (sx->failed && !sx->failed_told) {
        sx->failed_told = true;
        x->write_pending = 0;
        x->writes_in_flight = 0;
        x->cbs->written(x->owner, UV_ECONNRESET); /* the conn closes */
        return;
    }
    if (sx->written_due) {
        sx->written_due = false;
        x->write_pending = 0;
        x->writes_in_flight = 0;
        x->cbs->written(x->owner, 0);
        if (x->closing)
            return;
    }
    while (x->reading && sx->st && ms_h2_stream_readable(sx->st) > 0) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        x->cbs->alloc(x->owner, H2_STREAM_READ, &b);
        if (b.len == 0) {
            x->cbs->read(x->owner, UV_ENOBUFS, &b);
            return;
        }
        size_t n = ms_h2_stream_read(sx->st, b.base, b.len);
        if (n == 0)
            break; /* no room for a chunk's framing: the conn reads again when it has some */
        x->cbs->read(x->owner, (ssize_t)n, &b);
        if (x->closing)
            return;
        if (sx->hc)
            hc_schedule(sx->hc); /* window updates */
    }
    if (x->reading && !sx->eof_told && (sx->eof_due || (sx->st && ms_h2_stream_read_eof(sx->st)))) {
        sx->eof_told = true;
        uv_buf_t b = uv_buf_init(NULL, 0);
        x->cbs->read(x->owner, UV_EOF, &b);
    }
}

static int sx_read_start(ms_xport *x)
{
    h2_sx *sx = (h2_sx *)x;
    if (x->closing)
        return 0;
    x->reading = true;
    sx_kick(sx);
    return 0;
}

static void sx_read_stop(ms_xport *x)
{
    x->reading = false;
}

static int sx_write(ms_xport *x, const uv_buf_t *bufs, unsigned n)
{
    h2_sx *sx = (h2_sx *)x;
    if (x->closing)
        return UV_ECANCELED;
    if (!sx->st)
        return sx->failed ? UV_ECONNRESET : 0; /* after a complete response nothing more is sent */
    for (unsigned i = 0; i < n; i++) {
        if (!ms_h2_stream_write(sx->st, bufs[i].base, bufs[i].len))
            return UV_EPROTO;
    }
    x->write_pending = ms_h2_stream_pending(sx->st);
    x->writes_in_flight = x->write_pending ? 1 : 0;
    if (sx->hc)
        hc_schedule(sx->hc);
    return 0;
}

static void sx_detach(h2_sx *sx)
{
    if (sx->st) {
        ms_h2_stream_detach(sx->st);
        sx->st = NULL;
        if (sx->hc)
            hc_schedule(sx->hc);
    }
}

static int sx_shutdown(ms_xport *x)
{
    h2_sx *sx = (h2_sx *)x;
    if (x->closing)
        return UV_ECANCELED;
    sx_detach(sx); /* the response ends here; what it holds still leaves */
    x->write_pending = 0;
    x->writes_in_flight = 0;
    sx->eof_due = true; /* no more input will come: a lingering close ends at once */
    sx_kick(sx);
    return 0;
}

static void sx_on_closed(uv_handle_t *h)
{
    h2_sx *sx = h->data;
    sx->x.cbs->closed(sx->x.owner);
    free(sx);
}

static void sx_close(ms_xport *x)
{
    h2_sx *sx = (h2_sx *)x;
    if (x->closing)
        return;
    x->closing = true;
    x->reading = false;
    sx_detach(sx);
    x->write_pending = 0;
    x->writes_in_flight = 0;
    uv_close((uv_handle_t *)&sx->idle, sx_on_closed);
}

static int sx_fileno(const ms_xport *x)
{
    (void)x;
    return -1; /* bytes go through the session: no sendfile */
}

static int sx_peer(const ms_xport *x, struct sockaddr_storage *ss)
{
    const h2_sx *sx = (const h2_sx *)x;
    if (!sx->hc || !sx->hc->x)
        return UV_ENOTCONN;
    return ms_xport_peer(sx->hc->x, ss);
}

static const ms_xport_ops sx_ops = {
    .read_start = sx_read_start,
    .read_stop = sx_read_stop,
    .write = sx_write,
    .shutdown = sx_shutdown,
    .close = sx_close,
    .fileno = sx_fileno,
    .peer = sx_peer,
};

/* ---------------------------------------------------------------- the session's callbacks */
static void sx_free_unused(uv_handle_t *h)
{
    free(h->data);
}

static bool on_stream_start(void *owner, ms_h2_stream *st)
{
    ms_h2conn *hc = owner;
    ms_worker *w = hc->w;
    if (w->stopping || hc->ending)
        return false;
    h2_sx *sx = calloc(1, sizeof *sx);
    if (!sx)
        return false;
    if (uv_idle_init(&w->loop, &sx->idle) != 0) {
        free(sx);
        return false;
    }
    sx->idle.data = sx;
    sx->x.ops = &sx_ops;
    sx->hc = hc;
    sx->st = st;
    ms_h2_stream_attach(st, sx);
    ms_conn *c = ms_conn_start_on(hc->g, hc->bind_idx, &sx->x, hc->peer, hc->peer_port, hc->secure);
    if (!c) {
        /* the stream is reset by the session (refused); the transport goes quietly */
        sx->st = NULL;
        sx->x.closing = true;
        uv_close((uv_handle_t *)&sx->idle, sx_free_unused);
        return false;
    }
    c->h2 = true;
    c->h2_checked = true;
    return true;
}

static void on_stream_readable(void *ex)
{
    h2_sx *sx = ex;
    if (sx->x.reading)
        sx_kick(sx);
}

static void on_stream_drained(void *ex)
{
    h2_sx *sx = ex;
    if (sx->x.write_pending) {
        sx->written_due = true;
        sx_kick(sx);
    }
}

static void on_stream_gone(void *ex, bool complete)
{
    h2_sx *sx = ex;
    sx->st = NULL;
    sx->hc = NULL; /* the connection may go before this transport does */
    if (complete) {
        if (sx->x.write_pending)
            sx->written_due = true;
    } else {
        sx->failed = true;
    }
    sx_kick(sx);
}

static void on_want_run(void *owner)
{
    hc_schedule(owner);
}

static const ms_h2_owner_ops hc_ops = {
    .stream_start = on_stream_start,
    .stream_readable = on_stream_readable,
    .stream_drained = on_stream_drained,
    .stream_gone = on_stream_gone,
    .want_run = on_want_run,
};

/* ---------------------------------------------------------------- the connection */
static void hc_close(ms_h2conn *hc);

static void hc_handle_closed(ms_h2conn *hc)
{
    if (--hc->handles_open > 0)
        return;
    ms_worker *w = hc->w;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        w->h2conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    assert(w->nh2conns > 0);
    w->nh2conns--;
    ms_wgen_drop(hc->g);
    free(hc);
    ms_worker_maybe_done(w);
}

static void hc_on_handle_closed(uv_handle_t *h)
{
    hc_handle_closed(h->data);
}

static void hc_on_xport_closed(void *owner)
{
    ms_h2conn *hc = owner;
    hc->x = NULL;
    hc_handle_closed(hc);
}

static void hc_close(ms_h2conn *hc)
{
    if (hc->closing)
        return;
    hc->closing = true;
    ms_h2_session *s = hc->s;
    hc->s = NULL;
    ms_h2_session_free(s); /* the streams' conns are told (their transports fail) */
    if (hc->x)
        ms_xport_close(hc->x);
    uv_close((uv_handle_t *)&hc->tick, hc_on_handle_closed);
    uv_close((uv_handle_t *)&hc->run, hc_on_handle_closed);
}

#define H2_GATHER 16384 /* frames gathered per write: one full TLS record */

/* A write to the client; on failure the connection is closed. */
static int hc_write(ms_h2conn *hc, const void *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (ms_xport_write(hc->x, &b, 1) != 0) {
        hc_close(hc);
        return -1;
    }
    return 0;
}

/* Sends what the session has while the transport keeps up; tells the
 * streams whose bytes have left; ends the connection when the session is
 * done. */
static void hc_on_run(uv_idle_t *i)
{
    ms_h2conn *hc = i->data;
    hc->run_again = false;
    if (hc->closing || !hc->s || !hc->x)
        goto out;
    uint64_t now = now_ms();
    /* the session hands out a frame at a time (valid until the next call):
     * small frames are gathered so that many streams' frames leave in one
     * write, one TLS record */
    char gather[H2_GATHER];
    size_t glen = 0;
    for (int round = 0; hc->x->write_pending < MS_WRITE_HIGH; round++) {
        if (round == 64) {
            hc->run_again = true; /* more next turn: other connections get theirs first */
            break;
        }
        const uint8_t *d;
        ssize_t n = ms_h2_session_send(hc->s, &d, now);
        if (n < 0) {
            hc_close(hc);
            goto out;
        }
        if (n == 0)
            break;
        if (glen > 0 && glen + (size_t)n > sizeof gather) {
            if (hc_write(hc, gather, glen) != 0)
                goto out;
            glen = 0;
        }
        if ((size_t)n >= sizeof gather) {
            if (hc_write(hc, d, (size_t)n) != 0)
                goto out;
            continue;
        }
        memcpy(gather + glen, d, (size_t)n);
        glen += (size_t)n;
    }
    if (glen > 0 && hc_write(hc, gather, glen) != 0)
        goto out;
    if (hc->x->write_pending == 0)
        hc->write_progress_ms = now;
    ms_h2_session_notify(hc->s);
    if ((hc->ending || ms_h2_session_done(hc->s)) && !hc->run_again && hc->x->write_pending == 0) {
        hc_close(hc);
        goto out;
    }
out:
    if (!hc->run_again || hc->closing) {
        hc->run_active = false;
        uv_idle_stop(&hc->run);
    }
}

static void hc_schedule(ms_h2conn *hc)
{
    hc->run_again = true;
    if (!hc->run_active && !hc->closing) {
        hc->run_active = true;
        uv_idle_start(&hc->run, hc_on_run);
    }
}

static void hc_on_tick(uv_timer_t *t)
{
    ms_h2conn *hc = t->data;
    uint64_t now = now_ms();
    if (hc->x && hc->x->write_pending > 0 && hc->stall_ms && now - hc->write_progress_ms >= hc->stall_ms) {
        hc_close(hc); /* the client reads nothing at all */
        return;
    }
    if (hc->s) {
        ms_h2_session_tick(hc->s, now);
        hc_schedule(hc);
    }
}

static void hc_alloc(void *owner, size_t suggested, uv_buf_t *b)
{
    ms_h2conn *hc = owner;
    (void)suggested;
    *b = uv_buf_init(hc->rbuf, sizeof hc->rbuf);
}

static void hc_read(void *owner, ssize_t n, const uv_buf_t *b)
{
    ms_h2conn *hc = owner;
    if (hc->closing || !hc->s)
        return;
    if (n < 0) {
        hc_close(hc); /* the client is gone: its streams with it */
        return;
    }
    if (!ms_h2_session_recv(hc->s, (const uint8_t *)b->base, (size_t)n, now_ms())) {
        hc->ending = true; /* a GOAWAY is queued: it leaves, then the connection closes */
        ms_xport_read_stop(hc->x);
    }
    hc_schedule(hc);
}

static void hc_written(void *owner, int status)
{
    ms_h2conn *hc = owner;
    if (hc->closing)
        return;
    if (status < 0) {
        hc_close(hc);
        return;
    }
    hc->write_progress_ms = now_ms();
    hc_schedule(hc);
}

static const ms_xport_cbs hc_xport_cbs = {
    .alloc = hc_alloc,
    .read = hc_read,
    .written = hc_written,
    .closed = hc_on_xport_closed,
};

static void h2_config(const ms_wgen *g, ms_h2_config *cfg)
{
    const ms_http_limits *l = &g->m->global.http;
    ms_h2_config_defaults(cfg);
    cfg->max_concurrent_streams = (uint32_t)l->h2_max_concurrent_streams;
    cfg->max_header_list_size = (uint32_t)l->h2_max_header_list_size;
    cfg->header_table_size = (uint32_t)l->h2_header_table_size;
    cfg->rapid_reset_max = (uint32_t)l->h2_rapid_reset_max;
    cfg->rapid_reset_window_ms = l->h2_rapid_reset_window_ms;
    cfg->max_control_frames = (uint32_t)l->h2_max_control_frames;
    cfg->stall_timeout_ms = l->h2_stall_timeout_ms;
    cfg->idle_timeout_ms = l->idle_timeout_ms;
    cfg->first_timeout_ms = l->header_timeout_ms;
}

bool ms_h2_start(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port, bool secure)
{
    return ms_h2_start_pre(g, bind_idx, x, peer, peer_port, secure, NULL, 0);
}

bool ms_h2_start_pre(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port, bool secure,
                     const char *pre, size_t pre_len)
{
    ms_worker *w = g->w;
    ms_h2conn *hc = calloc(1, sizeof *hc);
    if (!hc)
        return false;
    ms_h2_config cfg;
    h2_config(g, &cfg);
    hc->s = ms_h2_session_new(&cfg, &hc_ops, hc, now_ms());
    if (!hc->s) {
        free(hc);
        return false;
    }
    hc->w = w;
    hc->g = ms_wgen_hold(g); /* the connection's settings; its streams' requests take the newest */
    hc->bind_idx = bind_idx;
    hc->secure = secure;
    hc->stall_ms = cfg.stall_timeout_ms;
    hc->write_progress_ms = now_ms();
    snprintf(hc->peer, sizeof hc->peer, "%s", peer ? peer : "");
    hc->peer_port = peer_port;
    uv_timer_init(&w->loop, &hc->tick);
    uv_idle_init(&w->loop, &hc->run);
    hc->tick.data = hc;
    hc->run.data = hc;
    hc->x = x;
    hc->handles_open = 3;
    ms_xport_set_owner(x, &hc_xport_cbs, hc);
    hc->next = w->h2conns;
    if (w->h2conns)
        w->h2conns->prev = hc;
    w->h2conns = hc;
    w->nh2conns++;
    uint64_t every = cfg.stall_timeout_ms;
    if (cfg.idle_timeout_ms && (!every || cfg.idle_timeout_ms < every))
        every = cfg.idle_timeout_ms;
    if (cfg.first_timeout_ms && (!every || cfg.first_timeout_ms < every))
        every = cfg.first_timeout_ms;
    every /= 4;
    every = every < 100 ? 100 : every > 1000 ? 1000 : every;
    uv_timer_start(&hc->tick, hc_on_tick, every, every);
    if (pre_len)
        hc_read(hc, (ssize_t)pre_len, &(uv_buf_t){ .base = (char *)pre, .len = pre_len });
    if (!hc->closing && !hc->ending && ms_xport_read_start(x) != 0)
        hc_close(hc);
    else
        hc_schedule(hc);
    return true;
}

int ms_h2c_detect(ms_conn *c)
{
    size_t n = c->len < H2_PREFACE_LEN ? c->len : H2_PREFACE_LEN;
    if (!bind_h2c(c->g, c->bind_idx) || memcmp(c->buf, h2_preface, n) != 0) {
        c->h2_checked = true;
        return 0;
    }
    if (c->len < H2_PREFACE_LEN)
        return -1;
    c->h2_checked = true;
    ms_wgen *g = ms_wgen_hold(c->g); /* c closes and drops its hold */
    uint32_t bind_idx = c->bind_idx;
    bool secure = c->secure;
    char peer[sizeof c->peer];
    memcpy(peer, c->peer, sizeof peer);
    ms_xport *x = ms_conn_release_xport(c); /* c closes; its buffer stays until the loop frees it */
    bool started = ms_h2_start_pre(g, bind_idx, x, peer, c->peer_port, secure, c->buf, c->len);
    ms_wgen_drop(g);
    if (!started)
        ms_xport_close(x);
    return 1;
}

void ms_h2_worker_stop(ms_worker *w)
{
    for (ms_h2conn *hc = w->h2conns; hc; hc = hc->next) {
        if (hc->s) {
            ms_h2_session_shutdown(hc->s);
            hc_schedule(hc);
        }
    }
}

void ms_h2_worker_reloaded(ms_worker *w)
{
    for (ms_h2conn *hc = w->h2conns; hc; hc = hc->next) {
        if (hc->s && ms_wgen_bind_in(hc->g, hc->bind_idx, w->cur) < 0) {
            ms_h2_session_shutdown(hc->s); /* its bind is gone: GOAWAY, streams under way finish */
            hc_schedule(hc);
        }
    }
}

void ms_h2_worker_close_all(ms_worker *w)
{
    for (ms_h2conn *hc = w->h2conns, *next; hc; hc = next) {
        next = hc->next;
        hc_close(hc);
    }
}
