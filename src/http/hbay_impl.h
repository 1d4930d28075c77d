/* hbay_impl.h: what hbay.c (requests and the bay's frames) and hbay_link.c
 * (targets, queues, links: connecting, docking, writing) share. Worker
 * thread only. */
#ifndef MS_HTTP_HBAY_IMPL_H
#define MS_HTTP_HBAY_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

#include "dock/protocol.h"
#include "http/http_impl.h"

#define HB_BACKOFF_MIN_MS 10
#define HB_BACKOFF_MAX_MS 1000
#define HB_RBUF 65536                  /* a link's read buffer */
#define HB_DEFAULT_TIMEOUT_MS 60000    /* request_timeout when the manifest gives none */
#define HB_DEFAULT_MAX_QUEUE 1024

/* CONNECTING -> DOCKING (DOCK awaited) -> IDLE <-> BUSY (a request) -> AFTER
 * (the response has ended; READY awaited) -> IDLE; BUSY -> TUNNEL (HAULs
 * both ways until either side ends) -> CLOSING; any -> CLOSING. */
typedef enum hb_state { HB_CONNECTING, HB_DOCKING, HB_IDLE, HB_BUSY, HB_AFTER, HB_TUNNEL, HB_CLOSING } hb_state;

struct ms_hblink {
    uv_pipe_t pipe;
    uv_connect_t connect_req;
    uv_timer_t timer;              /* docking, then the REPLY's deadline */
    ms_hbtarget *t;
    ms_hblink *prev, *next;        /* t->links */
    char path[sizeof ((struct sockaddr_un *)0)->sun_path]; /* where it connected */
    int handles_open;
    hb_state state;
    ms_dock_decoder dec;
    char *rbuf;
    bool reading;
    bool paused;                   /* not reading: the client's writes are backed up */
    bool client_paused;            /* tunnel: the client is not read, our writes are backed up */
    uint32_t next_id;              /* request ids go up from 1 per link */
    uint32_t req_id;
    ms_conn *c;                    /* BUSY: the request */
    uint64_t body_sent;            /* bytes of c->body in HAULs */
    bool req_sent;                 /* HAIL and every HAUL handed to the socket */
    uint64_t write_pending;
    int writes_in_flight;
    /* the response */
    bool replied, head_sent, discard;
    uint8_t kind;
    int status;
    bool chunked;                  /* chunked to the client */
    bool has_length;               /* the bay's Content-Length, enforced */
    uint64_t length_left;
    ms_compressor *comp;
    ms_cbuf cbuf;
};

struct ms_hbtarget {
    ms_worker *w;
    size_t slot;
    ms_hblink *links;
    unsigned nlinks, nopening;     /* open here; of those connecting or docking */
    ms_conn *qhead, *qtail;
    uint32_t nq;
    uv_timer_t qtimer;             /* the queue's first deadline */
    uv_timer_t btimer;             /* the next connect after a failure */
    bool timers_open;
    uint64_t backoff_ms;           /* 0: no failure since the last dock */
    uint64_t retry_at;             /* uv_now before which no link is opened */
    bool starved;                  /* counted in the hub's starved */
};

static inline ms_hub_http *ms_hb_hub(const ms_hbtarget *t)
{
    return &t->w->hub->bays[t->slot].http;
}

static inline const ms_ship *ms_hb_ship(const ms_conn *c)
{
    return &c->g->m->ships[c->ship];
}

static inline uint64_t ms_hb_timeout_ms(const ms_ship *s)
{
    return s->request_timeout_ms ? s->request_timeout_ms : HB_DEFAULT_TIMEOUT_MS;
}

static inline void ms_hb_count(ms_hbtarget *t, int result)
{
    ms_hub_count(&ms_hb_hub(t)->results[result], 1);
}

/* ---- hbay_link.c */
/* The worker's state for the bay of hub slot slot (made on first use); NULL: out of memory. */
ms_hbtarget *ms_hb_target_get(ms_worker *w, size_t slot);
/* c waits for a link (at the front: a retry). false: the queue is full
 * over all workers (nothing changed). */
bool ms_hb_q_push(ms_hbtarget *t, ms_conn *c, bool front);
void ms_hb_q_remove(ms_hbtarget *t, ms_conn *c);
/* While the worker drains or stops: with nothing queued, links without a
 * request close (the worker ends once its links have). */
void ms_hb_drop_spare(ms_hbtarget *t);
/* Queued requests to idle links; links opened for the rest, within the cap. */
void ms_hb_pump(ms_hbtarget *t);
/* Writes what the socket takes now, copies the rest. false: the link is broken. */
bool ms_hb_link_write(ms_hblink *l, uv_buf_t *bufs, unsigned n);
void ms_hb_link_read(ms_hblink *l, bool on);
/* The link goes (its request, if any, is the caller's to answer). */
void ms_hb_link_close(ms_hblink *l);
/* A link did not connect or dock: closed, and the next connect backs off. */
void ms_hb_link_failed(ms_hblink *l, const char *what);
/* The bay's DOCK on a new link: MOORED, and the link takes requests. */
void ms_hb_on_dock(ms_hblink *l, const ms_dock_frame *fr);
/* An upstream_error line naming the bay (and c's request id). */
void ms_hb_log(ms_hbtarget *t, const ms_conn *c, const char *fmt, const char *what);

/* ---- hbay.c */
void ms_hb_on_link_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
/* The link failed under its request: 502/504 before the head (an
 * idempotent request without a body is queued again once), a cut
 * connection after it; the link is closed. */
void ms_hb_request_failed(ms_hblink *l, int result, int status, const char *what);
/* The response's compressor and buffer go. */
void ms_hb_response_drop(ms_hblink *l);

#endif
