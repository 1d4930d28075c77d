/* hbay.c: requests to HTTP bays and docking upstreams (docking v3).
 *
 * Each worker keeps, per bay (its hub slot), its own links (Unix stream
 * connections to the bay's socket) and its own FIFO queue of requests
 * waiting for one. A link docks (DOCK -> MOORED v3) and then serves one
 * request at a time: HAIL (the head as CGI params), HAULs (the body, read
 * whole beforehand by the session), the bay's REPLY and its body HAULs,
 * then READY before the next HAIL. The links of all workers together stay
 * within the hub's links_cap (what the bay's Docks announce); a worker
 * that may not open one counts itself starved, and a worker whose link
 * turns free with nothing queued closes it for the starved ones.
 *
 * Link states:
 *   CONNECTING -> DOCKING (DOCK awaited) -> IDLE <-> BUSY (a request) -> AFTER
 *   (the response has ended; READY awaited) -> IDLE;  BUSY -> TUNNEL (a
 *   tunnel REPLY: HAULs both ways until either side ends) -> CLOSING;
 *   any -> CLOSING.
 *
 * REPLY kinds: empty and stream become the client's response here; file
 * names a regular file inside the bay's file_roots, sent by static_send.c's
 * code (sendfile); tunnel switches the client's connection to bytes both
 * ways (an upgrade: WebSockets through an HTTP bay).
 *
 * The queue is bounded over the workers (hub http.queued <= max_queue:
 * more get 503 + Retry-After), a request waits in it at most
 * request_timeout (504), and the REPLY must come within request_timeout of
 * the request's last byte (504, the link closed). A link that breaks
 * before the REPLY: 502 (an idempotent request without a body goes back to
 * the head of the queue, once); after the head: the client's connection is
 * cut, never a short body passed off as whole. A frame that breaks the
 * protocol closes its link and is counted. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dock/protocol.h"
#include "http/handler.h"
#include "http/hbay_params.h"
#include "http/http_impl.h"
#include "http/resp_head.h"
#include "ms_config.h"

#define HB_BACKOFF_MIN_MS 10
#define HB_BACKOFF_MAX_MS 1000
#define HB_RBUF 65536                  /* a link's read buffer */
#define HB_DEFAULT_TIMEOUT_MS 60000    /* request_timeout when the manifest gives none */
#define HB_DEFAULT_MAX_QUEUE 1024

typedef enum hb_state { HB_CONNECTING, HB_DOCKING, HB_IDLE, HB_BUSY, HB_AFTER, HB_TUNNEL, HB_CLOSING } hb_state;

struct ms_hblink {
    uv_pipe_t pipe;
    uv_connect_t connect_req;
    uv_timer_t timer;              /* docking, then the REPLY's deadline */
    ms_hbtarget *t;
    ms_hblink *prev, *next;        /* t->links */
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

static void pump(ms_hbtarget *t);
static bool payload_keeps(const void *arg, const char *name, size_t len);
static void link_close(ms_hblink *l);
static void link_protocol_error(ms_hblink *l, const char *what);
static void send_body(ms_hblink *l);
static void link_broken(ms_hblink *l);
static void on_link_timeout(uv_timer_t *h);

/* ---------------------------------------------------------------- helpers */
static ms_hub_http *hub_http(const ms_hbtarget *t)
{
    return &t->w->hub->bays[t->slot].http;
}

static const ms_ship *conn_ship(const ms_conn *c)
{
    return &c->g->m->ships[c->ship];
}

static uint64_t request_timeout_ms(const ms_ship *s)
{
    return s->request_timeout_ms ? s->request_timeout_ms : HB_DEFAULT_TIMEOUT_MS;
}

static bool name_eq(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    return alen == n && strncasecmp(a, b, n) == 0;
}

/* The ship of the worker's current generation whose process holds slot
 * (NULL: none any more). */
static const ms_ship *target_ship(const ms_hbtarget *t, size_t *index)
{
    const ms_wgen *g = t->w->cur;
    for (size_t i = 0; i < g->m->nships; i++) {
        const ms_proc *p = g->procs ? g->procs[i] : NULL;
        if ((p ? p->slot : i) == t->slot && ms_ship_speaks_v3(&g->m->ships[i])) {
            if (index)
                *index = i;
            return &g->m->ships[i];
        }
    }
    return NULL;
}

/* Where ship i of g listens for links: an upstream's bind, a bay's
 * MS_SOCKET_PATH. false: no Unix socket to connect to. */
static bool link_path(const ms_wgen *g, size_t i, char *out, size_t cap)
{
    const ms_ship *s = &g->m->ships[i];
    const ms_proc *p = g->procs ? g->procs[i] : NULL;
    const char *path = NULL;
    if (s->has_bind)
        path = g->targets[i].is_unix ? g->targets[i].path : NULL;
    else if (p && p->has_target && p->target.is_unix)
        path = p->target.path;
    else if (p && p->socket_path)
        path = p->socket_path;
    if (path) {
        int n = snprintf(out, cap, "%s", path);
        return n > 0 && (size_t)n < cap;
    }
    const char *dir = g->m->global.socket_dir;
    int n = snprintf(out, cap, "%s/%s.sock", dir ? dir : "/tmp", s->name);
    return n > 0 && (size_t)n < cap;
}

static void log_bay(ms_hbtarget *t, const ms_conn *c, const char *fmt, const char *what)
{
    const ms_ship *s = c ? conn_ship(c) : target_ship(t, NULL);
    const char *name = s ? s->name : "?";
    if (c && c->reqid_len)
        ms_worker_upstream_log(t->w, name, "bay \"%s\" %s%s (request id %.*s)", name, fmt, what, (int)c->reqid_len,
                               c->reqid);
    else
        ms_worker_upstream_log(t->w, name, "bay \"%s\" %s%s", name, fmt, what);
}

/* ---------------------------------------------------------------- targets */
static ms_hbtarget *target_get(ms_worker *w, size_t slot)
{
    ms_hub *hub = w->hub;
    if (!hub || slot >= hub->nbays)
        return NULL;
    if (!w->hb_targets && !(w->hb_targets = calloc(hub->nbays, sizeof *w->hb_targets)))
        return NULL;
    ms_hbtarget *t = w->hb_targets[slot];
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->w = w;
    t->slot = slot;
    uv_timer_init(&w->loop, &t->qtimer);
    uv_timer_init(&w->loop, &t->btimer);
    t->qtimer.data = t->btimer.data = t;
    t->timers_open = true;
    w->hb_targets[slot] = t;
    return t;
}

static void set_starved(ms_hbtarget *t, bool on)
{
    if (t->starved == on)
        return;
    t->starved = on;
    if (on)
        __atomic_fetch_add(&hub_http(t)->starved, 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_sub(&hub_http(t)->starved, 1, __ATOMIC_RELAXED);
}

static void count_result(ms_hbtarget *t, int result)
{
    ms_hub_count(&hub_http(t)->results[result], 1);
}

/* ---------------------------------------------------------------- the queue */
static void q_arm(ms_hbtarget *t);

static void q_remove(ms_hbtarget *t, ms_conn *c)
{
    assert(c->hq_queued && t->nq > 0);
    if (c->hq_prev)
        c->hq_prev->hq_next = c->hq_next;
    else
        t->qhead = c->hq_next;
    if (c->hq_next)
        c->hq_next->hq_prev = c->hq_prev;
    else
        t->qtail = c->hq_prev;
    c->hq_prev = c->hq_next = NULL;
    c->hq_queued = false;
    t->nq--;
    __atomic_fetch_sub(&hub_http(t)->queued, 1, __ATOMIC_RELAXED);
    if (t->nq == 0) {
        set_starved(t, false);
        uv_timer_stop(&t->qtimer);
    }
}

/* false: the queue is full over all workers (nothing changed). */
static bool q_push(ms_hbtarget *t, ms_conn *c, bool front)
{
    const ms_ship *s = conn_ship(c);
    uint32_t max = s->max_queue ? s->max_queue : HB_DEFAULT_MAX_QUEUE;
    uint32_t before = __atomic_fetch_add(&hub_http(t)->queued, 1, __ATOMIC_RELAXED);
    if (before >= max && !front) {
        __atomic_fetch_sub(&hub_http(t)->queued, 1, __ATOMIC_RELAXED);
        return false;
    }
    c->hq_queued = true;
    if (!front) {
        c->hq_since_ms = uv_now(&t->w->loop);
        c->hq_prev = t->qtail;
        c->hq_next = NULL;
        if (t->qtail)
            t->qtail->hq_next = c;
        else
            t->qhead = c;
        t->qtail = c;
    } else {
        c->hq_prev = NULL;
        c->hq_next = t->qhead;
        if (t->qhead)
            t->qhead->hq_prev = c;
        else
            t->qtail = c;
        t->qhead = c;
    }
    t->nq++;
    c->hbt = t;
    ms_conn_hold_request(c);
    q_arm(t);
    return true;
}

/* Requests that waited longer than their request_timeout get 504. */
static void on_queue_timer(uv_timer_t *h)
{
    ms_hbtarget *t = h->data;
    uint64_t now = uv_now(&t->w->loop);
    while (t->qhead) {
        ms_conn *c = t->qhead;
        uint64_t limit = request_timeout_ms(conn_ship(c));
        if (c->hq_since_ms + limit > now)
            break;
        q_remove(t, c);
        c->hbt = NULL;
        count_result(t, MS_HB_QUEUE_TIMEOUT);
        char detail[160];
        snprintf(detail, sizeof detail, "bay \"%s\" had no free link within request_timeout (%llums)",
                 conn_ship(c)->name, (unsigned long long)limit);
        ms_conn_respond_error(c, 504, detail);
    }
    q_arm(t);
}

static void q_arm(ms_hbtarget *t)
{
    if (!t->qhead) {
        uv_timer_stop(&t->qtimer);
        return;
    }
    uint64_t now = uv_now(&t->w->loop);
    uint64_t due = t->qhead->hq_since_ms + request_timeout_ms(conn_ship(t->qhead));
    uv_timer_start(&t->qtimer, on_queue_timer, due > now ? due - now : 0, 0);
}

/* ---------------------------------------------------------------- writing to a link */
typedef struct hb_wreq {
    uv_write_t req;
    ms_hblink *l;
    size_t len;
    char data[];
} hb_wreq;

static void on_link_write(uv_write_t *req, int status)
{
    hb_wreq *r = (hb_wreq *)req;
    ms_hblink *l = r->l;
    assert(l->writes_in_flight > 0 && l->write_pending >= r->len);
    l->write_pending -= r->len;
    l->writes_in_flight--;
    free(r);
    if (l->state == HB_CLOSING)
        return;
    if (status < 0) {
        link_broken(l);
        return;
    }
    if (l->state == HB_BUSY && !l->req_sent && l->writes_in_flight == 0)
        send_body(l);
    if (l->state == HB_BUSY && !l->replied && l->c) /* the bay reads: the wait for its REPLY starts again */
        uv_timer_start(&l->timer, on_link_timeout, request_timeout_ms(conn_ship(l->c)), 0);
    if (l->state == HB_TUNNEL && l->client_paused && l->c && l->write_pending <= MS_WRITE_HIGH) {
        l->client_paused = false;
        ms_conn_start_reading(l->c);
    }
}

/* Writes what the socket takes now and copies the rest into one queued
 * write. false: the link is broken (the caller closes it). */
static bool link_write(ms_hblink *l, uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    size_t done = 0;
    if (l->writes_in_flight == 0) {
        int r = uv_try_write((uv_stream_t *)&l->pipe, bufs, n);
        if (r < 0 && r != UV_EAGAIN)
            return false;
        done = r > 0 ? (size_t)r : 0;
    }
    if (done == total)
        return true;
    size_t rest = total - done;
    hb_wreq *wr = malloc(sizeof *wr + rest);
    if (!wr)
        return false;
    size_t off = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(wr->data + off, bufs[i].base + skip, len - skip);
        off += len - skip;
        skip = 0;
    }
    wr->l = l;
    wr->len = rest;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)rest);
    if (uv_write(&wr->req, (uv_stream_t *)&l->pipe, &b, 1, on_link_write) != 0) {
        free(wr);
        return false;
    }
    l->write_pending += rest;
    l->writes_in_flight++;
    return true;
}

/* ---------------------------------------------------------------- links */
static void on_link_closed(uv_handle_t *h)
{
    ms_hblink *l = h->data;
    if (--l->handles_open > 0)
        return;
    ms_worker *w = l->t->w;
    ms_dock_decoder_free(&l->dec);
    free(l->rbuf);
    free(l);
    assert(w->nups > 0);
    w->nups--;
    ms_worker_maybe_done(w);
}

static void response_drop(ms_hblink *l)
{
    if (l->comp) {
        ms_compressor_free(l->comp);
        l->comp = NULL;
    }
    ms_cbuf_free(&l->cbuf);
}

/* The link goes; a request it served is the caller's to answer first. */
static void link_close(ms_hblink *l)
{
    if (l->state == HB_CLOSING)
        return;
    ms_hbtarget *t = l->t;
    ms_hub_http *hh = hub_http(t);
    if (l->state == HB_BUSY || l->state == HB_AFTER || l->state == HB_TUNNEL)
        __atomic_fetch_sub(&hh->links_busy, 1, __ATOMIC_RELAXED);
    if (l->state == HB_CONNECTING || l->state == HB_DOCKING)
        t->nopening--;
    l->state = HB_CLOSING;
    if (l->c) {
        l->c->hbl = NULL;
        l->c = NULL;
    }
    response_drop(l);
    __atomic_fetch_sub(&hh->links_open, 1, __ATOMIC_RELAXED);
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    t->nlinks--;
    uv_close((uv_handle_t *)&l->pipe, on_link_closed);
    uv_close((uv_handle_t *)&l->timer, on_link_closed);
    /* the queue may open another (or the starved of other workers may) */
    if (t->nq)
        pump(t);
    else if (__atomic_load_n(&hh->starved, __ATOMIC_RELAXED) > 0)
        ms_hub_wake_workers(t->w->hub, t->w->id);
}

static void request_failed(ms_hblink *l, int result, int status, const char *what);

/* A write to the link failed: its request (if any) is answered as for a
 * link that broke. */
static void link_broken(ms_hblink *l)
{
    if (l->state == HB_BUSY)
        ms_hub_count(&hub_http(l->t)->link_failures, 1);
    if (l->state == HB_BUSY && l->c)
        request_failed(l, MS_HB_BAD_GATEWAY, 502, "broke its link while the request went out");
    else
        link_close(l);
}

static void on_btimer(uv_timer_t *h)
{
    pump(h->data);
}

/* A link did not connect or dock: back off (10 ms doubling to 1 s). */
static void link_failed(ms_hblink *l, const char *what)
{
    ms_hbtarget *t = l->t;
    ms_hub_count(&hub_http(t)->link_failures, 1);
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : HB_BACKOFF_MIN_MS;
    if (t->backoff_ms > HB_BACKOFF_MAX_MS)
        t->backoff_ms = HB_BACKOFF_MAX_MS;
    t->retry_at = uv_now(&t->w->loop) + t->backoff_ms;
    log_bay(t, NULL, "link: ", what);
    link_close(l);
    if (t->nq && !uv_is_active((uv_handle_t *)&t->btimer))
        uv_timer_start(&t->btimer, on_btimer, t->backoff_ms, 0);
}

static void on_link_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void on_link_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    ms_hblink *l = h->data;
    (void)s;
    *b = uv_buf_init(l->rbuf, HB_RBUF);
}

static void link_read(ms_hblink *l, bool on)
{
    if (l->state == HB_CLOSING || l->reading == on)
        return;
    if (on && uv_read_start((uv_stream_t *)&l->pipe, on_link_alloc, on_link_read) != 0) {
        link_close(l);
        return;
    }
    if (!on)
        uv_read_stop((uv_stream_t *)&l->pipe);
    l->reading = on;
}

static void on_link_connect(uv_connect_t *req, int status)
{
    ms_hblink *l = req->data;
    if (l->state == HB_CLOSING)
        return;
    if (status < 0) {
        char what[160];
        snprintf(what, sizeof what, "cannot connect: %s", uv_strerror(status));
        link_failed(l, what);
        return;
    }
    l->state = HB_DOCKING; /* the bay speaks first */
    link_read(l, true);
}

/* Opens a link of t when the links of all workers stay within the cap
 * (0: unknown: one in all, until a Dock says). */
static bool link_open(ms_hbtarget *t)
{
    ms_worker *w = t->w;
    ms_hub_http *hh = hub_http(t);
    size_t idx;
    const ms_ship *s = target_ship(t, &idx);
    if (!s)
        return false;
    char path[sizeof ((struct sockaddr_un *)0)->sun_path];
    if (!link_path(w->cur, idx, path, sizeof path))
        return false;
    uint32_t open = __atomic_load_n(&hh->links_open, __ATOMIC_RELAXED);
    for (;;) {
        uint32_t cap = __atomic_load_n(&hh->links_cap, __ATOMIC_RELAXED);
        if (open >= (cap ? cap : 1))
            return false;
        if (__atomic_compare_exchange_n(&hh->links_open, &open, open + 1, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            break;
    }
    ms_hblink *l = calloc(1, sizeof *l);
    char *rbuf = l ? malloc(HB_RBUF) : NULL;
    if (!l || !rbuf || uv_pipe_init(&w->loop, &l->pipe, 0) != 0) {
        free(rbuf);
        free(l);
        __atomic_fetch_sub(&hh->links_open, 1, __ATOMIC_RELAXED);
        return false;
    }
    l->rbuf = rbuf;
    l->t = t;
    l->pipe.data = l;
    uv_timer_init(&w->loop, &l->timer);
    l->timer.data = l;
    l->handles_open = 2;
    l->state = HB_CONNECTING;
    ms_dock_decoder_init(&l->dec, MS_DOCK_V3_MAX_FRAME);
    l->dec.v3 = true;
    l->next = t->links;
    if (t->links)
        t->links->prev = l;
    t->links = l;
    t->nlinks++;
    t->nopening++;
    w->nups++;
    l->connect_req.data = l;
    uv_pipe_connect(&l->connect_req, &l->pipe, path, on_link_connect);
    uint64_t dock_ms = w->cur->m->global.http.upstream_connect_timeout_ms;
    uv_timer_start(&l->timer, on_link_timeout, dock_ms ? dock_ms : 5000, 0);
    return true;
}

/* ---------------------------------------------------------------- HAIL */
/* c's HAIL (hbay_params.c) into c->out, request id 0 (set per link when it
 * is sent). false: out of memory. */
static bool build_hail(ms_conn *c)
{
    ms_worker *w = c->w;
    const ms_route *route = c->route->route;
    const ms_payload_result *pres = c->payload_edits ? &w->pres : NULL;
    const char *path = c->buf + c->url_off;
    size_t plen = c->path_len;
    const char *query = path + plen;
    size_t qlen = c->url_len - plen;
    if (pres && pres->path_set) {
        path = pres->path.ptr;
        plen = pres->path.len;
        if (pres->query_set) {
            query = pres->query.ptr;
            qlen = pres->query.len;
        }
    }
    if (qlen && query[0] == '?') {
        query++;
        qlen--;
    }
    const char *script = "";
    size_t slen = 0;
    if (route->strip_prefix) {
        /* only where a segment ends, as for ships */
        size_t sl = strlen(route->strip_prefix);
        if (plen >= sl && memcmp(path, route->strip_prefix, sl) == 0 &&
            (plen == sl || path[sl] == '/' || route->strip_prefix[sl - 1] == '/')) {
            script = route->strip_prefix;
            slen = route->strip_prefix[sl - 1] == '/' ? sl - 1 : sl; /* the slash stays with PATH_INFO */
            path += slen;
            plen -= slen;
        }
    }
    ms_field headers[MS_MAX_HEADERS];
    for (uint16_t i = 0; i < c->nhdr; i++)
        headers[i] = (ms_field){ c->buf + c->hdr[i].name, c->hdr[i].name_len, c->buf + c->hdr[i].val,
                                 c->hdr[i].val_len };
    ms_field added[MS_MAX_HEADERS];
    size_t nadded = 0;
    for (size_t i = 0; pres && i < pres->nedits && nadded < MS_MAX_HEADERS; i++)
        if (ms_payload_edit_live(pres, i))
            added[nadded++] = (ms_field){ pres->edits[i].name.ptr, pres->edits[i].name.len,
                                          pres->edits[i].value.ptr, pres->edits[i].value.len };
    const ms_bind *bind = &c->g->m->global.binds[c->bind_idx];
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)bind->addr.port);
    if (!c->reqid_len)
        ms_conn_make_reqid(c);
    ms_hbay_req r = {
        .method = http_method_str((enum http_method)c->parser.method),
        .script = script,
        .script_len = slen,
        .path = path,
        .path_len = plen,
        .query = query,
        .query_len = qlen,
        .headers = headers,
        .nheaders = c->nhdr,
        .keep = pres ? payload_keeps : NULL,
        .keep_arg = pres,
        .added = added,
        .nadded = nadded,
        .bind_host = bind->addr.kind == MS_ADDR_TCP ? bind->addr.host : NULL,
        .bind_port = bind->addr.kind == MS_ADDR_TCP ? port : NULL,
        .protocol = c->h2 ? "HTTP/2" : c->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        .software = "mothership/" MS_VERSION,
        .peer = c->peer,
        .peer_port = c->peer_port,
        .secure = c->secure,
        .upgrade = c->upgrade,
        .has_length = c->body_buffered || c->body_length != ULLONG_MAX,
        .content_length = c->body_buffered ? c->body.len : c->body_length,
        .body_len = c->body_buffered ? c->body.len : 0,
        .reqid = c->reqid,
        .reqid_len = c->reqid_len,
    };
    ms_dock_buf out = { 0 };
    if (ms_hbay_encode_hail(&r, &out) != 0) {
        ms_dock_buf_free(&out);
        return false;
    }
    free(c->out);
    c->out = (char *)out.data;
    c->out_len = (uint32_t)out.len;
    c->out_cap = (uint32_t)out.cap;
    return true;
}

/* ---------------------------------------------------------------- a request on a link */
static void send_body(ms_hblink *l)
{
    ms_conn *c = l->c;
    assert(c && c->body_buffered);
    while (!l->req_sent && l->writes_in_flight == 0 && l->state == HB_BUSY && l->c == c) {
        const char *data;
        size_t len;
        int rc = ms_bodybuf_next(&c->body, &data, &len);
        if (rc != 0 || (len == 0 && l->body_sent != c->body.len)) {
            ms_hbtarget *t = l->t;
            link_close(l); /* the bay sees a cut-off request, never a complete wrong one */
            c->hbl = NULL;
            count_result(t, MS_HB_BAD_GATEWAY);
            ms_conn_respond_error(c, 500, "cannot read the buffered request body back from its temporary file");
            return;
        }
        while (len > 0) {
            size_t k = len < MS_DOCK_V3_CHUNK ? len : MS_DOCK_V3_CHUNK;
            bool fin = l->body_sent + k == c->body.len;
            uint8_t hdr[MS_DOCK_HAUL_HEADER_LEN];
            ms_dock_put_haul_header(hdr, l->req_id, fin, k);
            uv_buf_t bufs[2] = { uv_buf_init((char *)hdr, sizeof hdr), uv_buf_init((char *)data, (unsigned)k) };
            if (!link_write(l, bufs, 2)) {
                link_broken(l);
                return;
            }
            l->body_sent += k;
            data += k;
            len -= k;
        }
        if (l->body_sent == c->body.len) {
            ms_bodybuf_free(&c->body); /* the file goes now, not with the response */
            l->req_sent = true;
        }
    }
}

/* c's request goes out on l. */
static void assign(ms_hblink *l, ms_conn *c)
{
    ms_hbtarget *t = l->t;
    assert(l->state == HB_IDLE && !l->c && c->out_len >= MS_DOCK_HEADER_LEN + 4);
    l->state = HB_BUSY;
    __atomic_fetch_add(&hub_http(t)->links_busy, 1, __ATOMIC_RELAXED);
    l->c = c;
    c->hbl = l;
    l->req_id = ++l->next_id;
    if (l->req_id == 0)
        l->req_id = l->next_id = 1;
    l->body_sent = 0;
    l->req_sent = false;
    l->replied = l->head_sent = l->discard = false;
    l->chunked = l->has_length = false;
    l->status = 0;
    uint8_t *id = (uint8_t *)c->out + MS_DOCK_HEADER_LEN;
    id[0] = (uint8_t)(l->req_id >> 24);
    id[1] = (uint8_t)(l->req_id >> 16);
    id[2] = (uint8_t)(l->req_id >> 8);
    id[3] = (uint8_t)l->req_id;
    ms_conn_stream_request(c);
    uv_buf_t b = uv_buf_init(c->out, c->out_len);
    if (!link_write(l, &b, 1)) {
        link_broken(l);
        return;
    }
    if (c->body_buffered && c->body.len > 0)
        send_body(l);
    else
        l->req_sent = true;
    if (l->state != HB_BUSY)
        return;
    uv_timer_start(&l->timer, on_link_timeout, request_timeout_ms(conn_ship(c)), 0);
    link_read(l, true);
    if (!c->body_buffered)
        ms_conn_resume_request_body(c); /* the parser steps over the request's end */
}

/* Hand queued requests to idle links; open links for the rest. */
static void pump(ms_hbtarget *t)
{
    ms_worker *w = t->w;
    if (!t->timers_open)
        return; /* the worker's loop is ending */
    while (t->qhead) {
        ms_hblink *idle = NULL;
        for (ms_hblink *l = t->links; l && !idle; l = l->next)
            if (l->state == HB_IDLE)
                idle = l;
        if (!idle)
            break;
        ms_conn *c = t->qhead;
        q_remove(t, c);
        ms_hub_http *hh = hub_http(t);
        uint64_t waited = uv_now(&w->loop) - c->hq_since_ms;
        ms_hub_count(&hh->queue_wait_us, waited * 1000);
        ms_hub_count(&hh->queue_waits, 1);
        assign(idle, c);
    }
    if (!t->qhead)
        return;
    if (uv_now(&w->loop) < t->retry_at) {
        if (!uv_is_active((uv_handle_t *)&t->btimer))
            uv_timer_start(&t->btimer, on_btimer, t->retry_at - uv_now(&w->loop), 0);
        return;
    }
    while (t->nopening < t->nq && link_open(t))
        ;
    if (t->nopening == 0)
        set_starved(t, true); /* no link of ours on the way: another worker's must give way */
    else
        set_starved(t, false);
}

/* ---------------------------------------------------------------- the response */
static void finish_client(ms_hblink *l, bool whole);

static void flush_compressed(ms_hblink *l, ms_conn *c)
{
    if (l->cbuf.len == 0)
        return;
    if (l->chunked) {
        char hdr[24];
        size_t n = ms_chunk_header(l->cbuf.len, hdr);
        ms_conn_write(c, hdr, n, true);
        ms_conn_write(c, (const char *)l->cbuf.data, l->cbuf.len, true);
        ms_conn_write(c, "\r\n", 2, false);
    } else {
        ms_conn_write(c, (const char *)l->cbuf.data, l->cbuf.len, true);
    }
    l->cbuf.len = 0;
}

/* A decimal Content-Length, strictly; false: not one. */
static bool parse_length(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Response-phase payloads on the bay's head, as for a ship's (proxy.c).
 * false: one failed closed (detail says which). */
static bool run_response_payloads(ms_conn *c, const ms_dock_reply *r, char *detail, size_t dlen,
                                  const ms_payload_result **edits)
{
    ms_worker *w = c->w;
    const ms_payload_set *ps = c->g->payloads;
    *edits = NULL;
    if (!c->g->pw)
        return true;
    ms_payload_result *res = &w->pres;
    ms_payload_result_reset(res);
    for (size_t i = 0; i < r->n_headers; i++) {
        w->phdrs[i].name = (ms_payload_slice){ r->headers[i].name, r->headers[i].name_len };
        w->phdrs[i].value = (ms_payload_slice){ r->headers[i].value, r->headers[i].value_len };
    }
    const char *method = http_method_str((enum http_method)c->parser.method);
    ms_payload_req req = { .method = { method, strlen(method) },
                           .path = { c->buf + c->url_off, c->path_len },
                           .client = { c->peer, strlen(c->peer) } };
    ms_payload_resp resp = { .status = r->status, .headers = w->phdrs, .nheaders = r->n_headers };
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

static bool payload_keeps(const void *arg, const char *name, size_t len)
{
    return ms_payload_keeps_header(arg, name, len);
}

static bool payload_added(const void *arg, size_t i, ms_field *out)
{
    const ms_payload_result *pres = arg;
    if (!ms_payload_edit_live(pres, i))
        return false;
    const ms_payload_edit *e = &pres->edits[i];
    *out = (ms_field){ e->name.ptr, e->name.len, e->value.ptr, e->value.len };
    return true;
}

/* The client's head for the bay's REPLY (resp_head.c), corked. false:
 * nothing written, and the reply cannot stand (what says why: a protocol
 * error), or what is NULL: the client is gone, or a response-phase payload
 * failed and the client got a 500 (the link is let go of here). */
static bool write_head(ms_hblink *l, const ms_dock_reply *r, uint64_t file_size, const char **what)
{
    ms_conn *c = l->c;
    int st = r->status;
    const ms_payload_result *pres = NULL;
    char pdetail[200];
    if (r->kind != MS_DOCK_REPLY_TUNNEL && !run_response_payloads(c, r, pdetail, sizeof pdetail, &pres)) {
        *what = NULL;
        l->c = NULL;
        c->hbl = NULL;
        c->hbt = NULL;
        link_close(l); /* the bay's answer cannot be passed on */
        ms_conn_uncork(c);
        ms_conn_respond_error(c, 500, pdetail);
        return false;
    }
    bool no_body_status = st == 204 || st == 304 || (st >= 100 && st < 200);
    ms_field fields[MS_MAX_HEADERS];
    const ms_field *ctype = NULL, *cenc = NULL, *cc = NULL;
    bool have_len = false;
    uint64_t len = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const ms_dock_param *p = &r->headers[i];
        fields[i] = (ms_field){ p->name, p->name_len, p->value, p->value_len };
        if (name_eq(p->name, p->name_len, "content-length")) {
            uint64_t v;
            if (!parse_length(p->value, p->value_len, &v) || (have_len && v != len)) {
                *what = "sent a REPLY with an invalid Content-Length";
                return false;
            }
            have_len = true;
            len = v;
        } else if (name_eq(p->name, p->name_len, "content-type")) {
            ctype = &fields[i];
        } else if (name_eq(p->name, p->name_len, "content-encoding")) {
            cenc = &fields[i];
        } else if (name_eq(p->name, p->name_len, "cache-control")) {
            cc = &fields[i];
        }
    }
    bool head_req = c->is_head_method;
    bool body = r->kind == MS_DOCK_REPLY_STREAM && !head_req && !no_body_status;
    if (r->kind == MS_DOCK_REPLY_EMPTY && have_len && len != 0 && !head_req && !no_body_status) {
        *what = "sent an empty REPLY with a Content-Length";
        return false;
    }
    bool tunnel = r->kind == MS_DOCK_REPLY_TUNNEL;
    if (r->kind == MS_DOCK_REPLY_FILE) {
        have_len = true; /* the file's own size, never the bay's word */
        len = file_size;
    }
    l->discard = r->kind == MS_DOCK_REPLY_STREAM && !body;
    l->has_length = r->kind == MS_DOCK_REPLY_STREAM && have_len;
    l->length_left = len;
    ms_encoding enc = MS_ENC_IDENTITY;
    if (c->g->m->global.compression && st == 200 && body && !cenc && ctype &&
        ms_compress_type_ok(ctype->value, ctype->value_len) &&
        !(cc && memmem(cc->value, cc->value_len, "no-transform", 12)) && (!have_len || len >= MS_COMPRESS_MIN_SIZE)) {
        const ms_hdr *ae = ms_conn_header(c, "accept-encoding");
        bool forbidden = false;
        if (ae)
            enc = ms_compress_negotiate(c->buf + ae->val, ae->val_len, &forbidden);
        if (enc != MS_ENC_IDENTITY && !(l->comp = ms_compressor_new(enc, -1, have_len ? len : 0)))
            enc = MS_ENC_IDENTITY;
    }
    bool client_length = have_len && enc == MS_ENC_IDENTITY && !tunnel;
    if (r->kind == MS_DOCK_REPLY_EMPTY && !no_body_status && !head_req) {
        client_length = true; /* no body: Content-Length: 0 */
        len = 0;
    }
    if (body && !client_length) {
        if (c->http_minor >= 1)
            l->chunked = true;
        else
            ms_conn_end_after_response(c, false); /* HTTP/1.0: the end of the body is the close */
    }
    if (!c->keep_alive && !tunnel)
        ms_conn_end_after_response(c, false);
    /* the standard phrase (a bay sends none): http-parser's table */
    const char *reason = http_status_str((enum http_status)st);
    if (strcmp(reason, "<unknown>") == 0)
        reason = ms_http_reason(st);
    ms_resp_head h = {
        .status = st,
        .reason = reason,
        .reason_len = strlen(reason),
        .fields = fields,
        .nfields = r->n_headers,
        .tunnel = tunnel,
        .keep = pres ? payload_keeps : NULL,
        .added = payload_added,
        .nadded = pres ? pres->nedits : 0,
        .edits_arg = pres,
        .encoding = enc != MS_ENC_IDENTITY ? ms_encoding_name(enc) : NULL,
        .date = c->w->date,
        .date_len = c->w->date_len,
        .chunked = l->chunked,
        .has_length = client_length && !no_body_status,
        .length = len,
        .connection = tunnel                ? NULL
                      : c->close_after_write ? "close"
                      : c->http_minor == 0   ? "keep-alive"
                                             : NULL,
    };
    size_t bound = ms_resp_head_bound(&h);
    if (bound > MS_RESP_HEAD_MAX) {
        *what = "sent a REPLY head larger than 64 KiB";
        response_drop(l);
        return false;
    }
    char *head = ms_conn_cork_reserve(c, bound);
    if (!head) {
        *what = NULL; /* the client's connection is closing */
        response_drop(l);
        return false;
    }
    size_t hl = ms_resp_head_write(&h, head, bound);
    assert(hl > 0);
    ms_conn_cork_commit(c, hl);
    l->head_sent = true;
    l->status = st;
    return true;
}

/* The request is over for the link: the response ended (whole: counted
 * and done) or was cut (the client's connection closes). */
static void finish_client(ms_hblink *l, bool whole)
{
    ms_conn *c = l->c;
    ms_hbtarget *t = l->t;
    if (!c)
        return;
    l->c = NULL;
    c->hbl = NULL;
    c->hbt = NULL;
    if (!whole) {
        count_result(t, MS_HB_ABORTED);
        if (l->head_sent)
            ms_conn_record(c, l->status); /* cut by the bay: counted with the status sent */
        ms_conn_uncork(c);
        ms_conn_close(c);
        return;
    }
    count_result(t, MS_HB_REPLIED);
    ms_conn_record(c, l->status);
    ms_conn_uncork(c); /* the response's bytes leave before the session goes on */
    ms_conn_response_done(c);
}

static void body_bytes(ms_hblink *l, const uint8_t *data, size_t len, bool borrowed)
{
    ms_conn *c = l->c;
    if (l->discard || len == 0)
        return;
    if (l->comp) {
        if (ms_compressor_write(l->comp, data, len, false, &l->cbuf) != 0) {
            finish_client(l, false);
            return;
        }
        flush_compressed(l, c);
        return;
    }
    if (l->chunked) {
        char hdr[24];
        size_t n = ms_chunk_header(len, hdr);
        ms_conn_write(c, hdr, n, true);
    }
    ms_conn_write(c, (const char *)data, len, !borrowed);
    if (l->chunked)
        ms_conn_write(c, "\r\n", 2, false);
}

/* The stream's last HAUL came: the end of the client's body. */
static void body_end(ms_hblink *l)
{
    ms_conn *c = l->c;
    if (l->comp) {
        if (ms_compressor_write(l->comp, NULL, 0, true, &l->cbuf) != 0) {
            finish_client(l, false);
            return;
        }
        flush_compressed(l, c);
    }
    if (l->chunked && !l->discard)
        ms_conn_write(c, "0\r\n\r\n", 5, false);
    response_drop(l);
    finish_client(l, true);
}

/* A link failed under its request: 502 before the head (once more on
 * another link when that is safe), a cut connection after it. */
static void request_failed_as(ms_hblink *l, int result, int status, const char *what, bool may_retry);

static void request_failed(ms_hblink *l, int result, int status, const char *what)
{
    request_failed_as(l, result, status, what, true);
}

static void request_failed_as(ms_hblink *l, int result, int status, const char *what, bool may_retry)
{
    ms_hbtarget *t = l->t;
    ms_conn *c = l->c;
    bool head_sent = l->head_sent;
    int sent_status = l->status;
    l->c = NULL;
    if (c)
        c->hbl = NULL;
    link_close(l);
    if (!c)
        return;
    if (head_sent) {
        count_result(t, MS_HB_ABORTED);
        c->hbt = NULL;
        ms_conn_record(c, sent_status);
        log_bay(t, c, "", what);
        ms_conn_uncork(c);
        ms_conn_close(c);
        return;
    }
    int m = c->parser.method;
    bool idempotent = m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT || m == HTTP_DELETE;
    if (may_retry && status == 502 && idempotent && !c->has_body && !c->retried && !c->upgrade) {
        c->retried = true;
        log_bay(t, c, "", what);
        if (q_push(t, c, true)) {
            __atomic_fetch_add(&ms_worker_slot(c->w, c->slot)->retries, 1, __ATOMIC_RELAXED);
            pump(t);
            return;
        }
    }
    c->hbt = NULL;
    count_result(t, result);
    char detail[256];
    snprintf(detail, sizeof detail, "bay \"%s\" %s", conn_ship(c)->name, what);
    log_bay(t, c, "", what);
    ms_conn_respond_error(c, status, detail);
}

static void on_link_timeout(uv_timer_t *h)
{
    ms_hblink *l = h->data;
    if (l->state == HB_CONNECTING || l->state == HB_DOCKING) {
        link_failed(l, l->state == HB_CONNECTING ? "did not accept the link in time" : "sent no DOCK in time");
        return;
    }
    if (l->state == HB_BUSY && l->c) {
        char what[128];
        snprintf(what, sizeof what, "did not answer within request_timeout (%llums)",
                 (unsigned long long)request_timeout_ms(conn_ship(l->c)));
        request_failed(l, MS_HB_REPLY_TIMEOUT, 504, what);
        return;
    }
    if (l->state == HB_AFTER) {
        link_close(l); /* no READY in time: the bay's thread is stuck */
        return;
    }
}

static void link_protocol_error(ms_hblink *l, const char *what)
{
    ms_hbtarget *t = l->t;
    ms_hub_count(&hub_http(t)->protocol_errors, 1);
    char msg[256];
    snprintf(msg, sizeof msg, "broke the docking protocol: %s", what);
    if (l->c) {
        request_failed_as(l, MS_HB_BAD_GATEWAY, 502, msg, false); /* the bay would answer the same again */
        return;
    }
    log_bay(t, NULL, "", msg);
    link_close(l);
}

static void on_dock(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_hbtarget *t = l->t;
    ms_dock_hello3 hello;
    char err[160];
    if (ms_dock_parse_dock3(fr->payload, fr->len, &hello, err, sizeof err) != 0) {
        ms_dock_hello3_free(&hello);
        ms_hub_count(&hub_http(t)->protocol_errors, 1);
        link_failed(l, err);
        return;
    }
    uint32_t threads = hello.threads;
    ms_dock_hello3_free(&hello);
    size_t idx;
    const ms_ship *s = target_ship(t, &idx);
    if (!s) {
        link_close(l);
        return;
    }
    uint32_t cap = threads * (s->bay_workers ? s->bay_workers : 1);
    uint32_t zero = 0;
    __atomic_compare_exchange_n(&hub_http(t)->links_cap, &zero, cap, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    const ms_strmap *cfg = &s->config;
    ms_dock_kv *kv = calloc(cfg->len ? cfg->len : 1, sizeof *kv);
    ms_dock_buf b = { 0 };
    bool ok = kv != NULL;
    for (size_t i = 0; ok && i < cfg->len; i++)
        kv[i] = (ms_dock_kv){ cfg->items[i].key, cfg->items[i].value };
    ok = ok && ms_dock_encode_moored3(&b, kv, cfg->len) == 0;
    free(kv);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    ok = ok && link_write(l, &ub, 1);
    ms_dock_buf_free(&b);
    if (!ok) {
        link_failed(l, "cannot send MOORED");
        return;
    }
    uv_timer_stop(&l->timer);
    t->nopening--;
    l->state = HB_IDLE;
    t->backoff_ms = 0;
    t->retry_at = 0;
    ms_hub_count(&hub_http(t)->links_opened, 1);
    pump(t);
}

/* ---------------------------------------------------------------- file replies */
/* Is real (a resolved path) inside dir (resolved here)? */
static bool path_under(const char *dir, const char *real)
{
    char r[PATH_MAX];
    if (!dir || !realpath(dir, r))
        return false;
    size_t n = strlen(r);
    if (n == 1 && r[0] == '/')
        return true;
    return strncmp(real, r, n) == 0 && real[n] == '/';
}

/* The directories whose files c's bay may name: its file_roots, else its
 * cwd (the manifest's directory without one); none for an upstream
 * without file_roots. */
static bool inside_roots(const ms_conn *c, const char *real)
{
    const ms_ship *s = conn_ship(c);
    for (size_t i = 0; i < s->file_roots.len; i++)
        if (path_under(s->file_roots.items[i], real))
            return true;
    if (s->file_roots.len || s->kind == MS_UPSTREAM)
        return false;
    return path_under(s->cwd ? s->cwd : c->g->m->dir, real);
}

/* The file a REPLY names, opened when it is a regular file inside the
 * bay's roots (where the opened file really is counts: symlinks and
 * renames on the way do not help); -1 with *what set otherwise. */
static int open_reply_file(const ms_conn *c, const char *p, size_t n, uint64_t *size, const char **what)
{
    char path[PATH_MAX];
    if (n == 0 || n >= sizeof path) {
        *what = "a file REPLY with a path too long";
        return -1;
    }
    memcpy(path, p, n);
    path[n] = '\0';
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *what = "a file REPLY naming a file that cannot be opened";
        return -1;
    }
    struct stat st;
    char proc[64], real[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t rl = readlink(proc, real, sizeof real - 1);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *what = "a file REPLY naming something that is not a regular file";
    } else if (rl <= 0 || (size_t)rl >= sizeof real - 1) {
        *what = "a file REPLY naming a file whose place cannot be read";
    } else {
        real[rl] = '\0';
        if (inside_roots(c, real)) {
            *size = (uint64_t)st.st_size;
            return fd;
        }
        *what = "a file REPLY naming a file outside its file_roots";
    }
    close(fd);
    return -1;
}

static void on_file_reply(ms_hblink *l, const ms_dock_reply *r)
{
    ms_conn *c = l->c;
    ms_hbtarget *t = l->t;
    uint64_t size = 0;
    const char *what = NULL;
    int fd = open_reply_file(c, r->file_path, r->file_path_len, &size, &what);
    if (fd < 0) {
        link_protocol_error(l, what);
        return;
    }
    l->replied = true;
    l->kind = r->kind;
    if (!write_head(l, r, size, &what)) {
        close(fd);
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    /* the link is done with the request: READY comes while the file goes */
    uv_timer_stop(&l->timer);
    l->state = HB_AFTER;
    l->c = NULL;
    c->hbl = NULL;
    c->hbt = NULL;
    count_result(t, MS_HB_REPLIED);
    bool body = !c->is_head_method && size > 0;
    ms_conn_record_ahead(c, 200, body ? size : 0);
    ms_conn_uncork(c);
    if (!body || ms_conn_is_closing(c)) {
        close(fd);
        ms_conn_responded(c);
        return;
    }
    c->file_fd = fd;
    c->file_off = 0;
    c->file_left = size;
    if (!ms_conn_writing(c))
        ms_handler_static.drained(c); /* sendfile while the socket takes it */
}

/* ---------------------------------------------------------------- tunnels */
/* Client bytes to the bay, as HAULs; the client waits while they back up. */
static void tunnel_up(ms_hblink *l, const char *data, size_t len)
{
    ms_conn *c = l->c;
    while (len > 0) {
        size_t k = len < MS_DOCK_V3_CHUNK ? len : MS_DOCK_V3_CHUNK;
        uint8_t hdr[MS_DOCK_HAUL_HEADER_LEN];
        ms_dock_put_haul_header(hdr, l->req_id, false, k);
        uv_buf_t bufs[2] = { uv_buf_init((char *)hdr, sizeof hdr), uv_buf_init((char *)data, (unsigned)k) };
        if (!link_write(l, bufs, 2)) {
            l->c = NULL;
            c->hbl = NULL;
            link_close(l);
            ms_conn_close(c);
            return;
        }
        data += k;
        len -= k;
    }
    if (l->write_pending > MS_WRITE_HIGH && !l->client_paused) {
        l->client_paused = true;
        ms_conn_stop_reading(c);
    }
}

static void on_tunnel_reply(ms_hblink *l, const ms_dock_reply *r)
{
    ms_conn *c = l->c;
    if (!c->upgrade || r->status != 101) {
        link_protocol_error(l, "a tunnel REPLY that is not a 101 to an upgrade");
        return;
    }
    l->replied = true;
    l->kind = r->kind;
    const char *what = NULL;
    if (!write_head(l, r, 0, &what)) {
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    uv_timer_stop(&l->timer);
    l->state = HB_TUNNEL;
    c->hbt = NULL;
    count_result(l->t, MS_HB_REPLIED);
    ms_conn_uncork(c);
    if (ms_conn_is_closing(c))
        return;
    const char *rest;
    size_t n = ms_conn_switch_protocols(c, &rest);
    if (n)
        tunnel_up(l, rest, n);
}

/* The bay's bytes to the client; its FIN ends the tunnel: the client's
 * connection closes once they are written, and the link with it. */
static void tunnel_down(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    uint32_t id;
    bool fin;
    const uint8_t *data;
    size_t len;
    if (ms_dock_parse_haul(fr->payload, fr->len, &id, &fin, &data, &len) != 0 || id != l->req_id) {
        link_protocol_error(l, "a malformed HAUL in a tunnel");
        return;
    }
    ms_conn *c = l->c;
    if (len)
        ms_conn_write(c, (const char *)data, len, !borrowed);
    if (!fin)
        return;
    l->c = NULL;
    c->hbl = NULL;
    link_close(l);
    ms_conn_uncork(c);
    ms_conn_end_with(c, "", 0);
}

static void on_reply(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_dock_reply r;
    char err[160];
    if (ms_dock_parse_reply(fr->payload, fr->len, &r, MS_MAX_HEADERS, err, sizeof err) != 0) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, err);
        return;
    }
    if (r.request_id != l->req_id || l->replied) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, l->replied ? "a second REPLY" : "a REPLY for another request id");
        return;
    }
    if (r.kind == MS_DOCK_REPLY_FILE) {
        on_file_reply(l, &r);
        ms_dock_reply_free(&r);
        return;
    }
    if (r.kind == MS_DOCK_REPLY_TUNNEL) {
        on_tunnel_reply(l, &r);
        ms_dock_reply_free(&r);
        return;
    }
    if (r.status < 200) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, "a REPLY with an interim status (1xx) that is not a tunnel");
        return;
    }
    l->replied = true;
    l->kind = r.kind;
    const char *what = NULL;
    bool ok = write_head(l, &r, UINT64_MAX, &what);
    ms_dock_reply_free(&r);
    if (!ok) {
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    if (l->kind == MS_DOCK_REPLY_EMPTY) {
        uv_timer_stop(&l->timer);
        l->state = HB_AFTER;
        finish_client(l, true);
        return;
    }
    /* a stream: its body may take its time (long polls, event streams);
     * the client's connection is what ends it early */
    uv_timer_stop(&l->timer);
}

static void on_haul(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    uint32_t id;
    bool fin;
    const uint8_t *data;
    size_t len;
    if (ms_dock_parse_haul(fr->payload, fr->len, &id, &fin, &data, &len) != 0) {
        link_protocol_error(l, "a malformed HAUL");
        return;
    }
    if (id != l->req_id || !l->replied || l->kind != MS_DOCK_REPLY_STREAM) {
        link_protocol_error(l, id != l->req_id ? "a HAUL for another request id" : "a HAUL outside a stream");
        return;
    }
    if (l->has_length) {
        if (len > l->length_left || (fin && len != l->length_left)) {
            link_protocol_error(l, "a body that does not match its Content-Length");
            return;
        }
        l->length_left -= len;
    }
    body_bytes(l, data, len, borrowed);
    if (!l->c)
        return;
    if (fin) {
        l->state = HB_AFTER;
        body_end(l);
    }
}

static void on_ready(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_hbtarget *t = l->t;
    uint32_t id;
    if (ms_dock_parse_ready(fr->payload, fr->len, &id) != 0 || id != l->req_id) {
        link_protocol_error(l, "a READY for another request id");
        return;
    }
    __atomic_fetch_sub(&hub_http(t)->links_busy, 1, __ATOMIC_RELAXED);
    l->state = HB_IDLE;
    uv_timer_stop(&l->timer);
    ms_worker *w = t->w;
    if (w->stopping || w->draining) {
        if (!t->nq) {
            link_close(l);
            return;
        }
    } else if (!t->nq && __atomic_load_n(&hub_http(t)->starved, __ATOMIC_RELAXED) > 0) {
        link_close(l); /* another worker waits for a link it may not open: this one gives way */
        return;
    }
    pump(t);
}

/* One frame from the bay. false: stop reading this buffer (the link is
 * closing, or its state changed so that the rest waits). */
static void on_frame(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    switch (l->state) {
    case HB_DOCKING:
        if (fr->type != MS_DOCK_DOCK) {
            ms_hub_count(&hub_http(l->t)->protocol_errors, 1);
            link_failed(l, "sent another frame before its DOCK");
            return;
        }
        on_dock(l, fr);
        return;
    case HB_BUSY:
        if (fr->type == MS_DOCK_REPLY)
            on_reply(l, fr);
        else if (fr->type == MS_DOCK_HAUL)
            on_haul(l, fr, borrowed);
        else if (fr->type == MS_DOCK_READY)
            link_protocol_error(l, "a READY before the response ended");
        else
            link_protocol_error(l, "an unexpected frame");
        return;
    case HB_TUNNEL:
        if (fr->type == MS_DOCK_HAUL)
            tunnel_down(l, fr, borrowed);
        else
            link_protocol_error(l, "a frame other than HAUL in a tunnel");
        return;
    case HB_AFTER:
        if (fr->type == MS_DOCK_READY)
            on_ready(l, fr);
        else
            link_protocol_error(l, fr->type == MS_DOCK_HAUL ? "a HAUL after the response ended"
                                                             : "an unexpected frame before READY");
        return;
    default:
        link_protocol_error(l, "a frame while no request was out");
        return;
    }
}

static void on_link_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    ms_hblink *l = s->data;
    (void)b;
    if (n == 0 || l->state == HB_CLOSING)
        return;
    if (n < 0) {
        link_read(l, false);
        if (l->state == HB_BUSY)
            ms_hub_count(&hub_http(l->t)->link_failures, 1);
        if (l->state == HB_BUSY)
            request_failed(l, MS_HB_BAD_GATEWAY, 502,
                           l->head_sent ? "closed its link in the middle of the response"
                                        : "closed its link before answering");
        else if (l->state == HB_DOCKING)
            link_failed(l, "closed its link before its DOCK");
        else if (l->state == HB_TUNNEL && l->c) {
            ms_conn *c = l->c;
            l->c = NULL;
            c->hbl = NULL;
            link_close(l);
            ms_conn_close(c); /* the bay left without FIN: the tunnel is cut */
        }
        else
            link_close(l); /* an idle link the bay let go (it drains), or no READY */
        if (l->state != HB_CLOSING)
            link_close(l);
        return;
    }
    ms_conn *c = l->c;
    if (c)
        ms_conn_cork(c);
    const uint8_t *p = (const uint8_t *)l->rbuf;
    size_t left = (size_t)n;
    while (left > 0 && l->state != HB_CLOSING) {
        size_t used = 0;
        ms_dock_frame fr;
        int rc = ms_dock_decoder_feed(&l->dec, p, left, &used, &fr);
        p += used;
        left -= used;
        if (rc < 0) {
            link_protocol_error(l, ms_dock_decoder_message(&l->dec));
            break;
        }
        if (rc == 0)
            break;
        /* a frame whole in the read buffer is borrowed until the uncork below */
        bool borrowed = fr.payload >= (const uint8_t *)l->rbuf && fr.payload < (const uint8_t *)l->rbuf + HB_RBUF;
        ms_conn *before = l->c;
        on_frame(l, &fr, borrowed);
        if (!borrowed && before && before->hbl == l)
            ms_conn_uncork(before), ms_conn_cork(before); /* the decoder's buffer is reused */
    }
    if (c && l->c == c && l->comp && l->head_sent) {
        /* the bay may pause here: what the encoder holds goes out now */
        if (ms_compressor_flush(l->comp, &l->cbuf) != 0)
            finish_client(l, false);
        else
            flush_compressed(l, c);
    }
    if (c) {
        ms_conn_uncork(c);
        if ((l->state == HB_BUSY || l->state == HB_TUNNEL) && l->c == c &&
            ms_conn_write_pending(c) > MS_WRITE_HIGH) {
            link_read(l, false); /* a slow client slows the bay */
            l->paused = true;
        }
    }
}

/* ---------------------------------------------------------------- the handler */
static void hbay_drained(ms_conn *c)
{
    if (c->file_fd >= 0) {
        ms_handler_static.drained(c); /* a file REPLY going out */
        return;
    }
    ms_hblink *l = c->hbl;
    if (l && l->paused && ms_conn_write_pending(c) <= MS_WRITE_HIGH) {
        l->paused = false;
        link_read(l, true);
    }
}

static bool hbay_start(ms_conn *c, const ms_handler_arg *arg)
{
    (void)arg;
    ms_worker *w = c->w;
    const ms_ship *s = conn_ship(c);
    const ms_proc *proc = ms_worker_proc(c->g, c->ship);
    if (proc && (!__atomic_load_n(&proc->ready_flag, __ATOMIC_ACQUIRE) ||
                 __atomic_load_n(&proc->breaker, __ATOMIC_ACQUIRE) == MS_BREAKER_OPEN)) {
        __atomic_fetch_add(&w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
        char detail[200];
        snprintf(detail, sizeof detail, "bay \"%s\" is %s", s->name,
                 __atomic_load_n(&proc->ready_flag, __ATOMIC_ACQUIRE) ? "failing its health checks" : "not ready");
        ms_conn_respond_error(c, 503, detail);
        return true;
    }
    ms_hbtarget *t = target_get(w, proc ? proc->slot : c->ship);
    if (!t) {
        ms_conn_respond_error(c, 503, "out of memory");
        return true;
    }
    if (c->has_body && !c->body_buffered && !c->upgrade) {
        ms_conn_read_body_first(c); /* the whole body before a link is claimed */
        return true;
    }
    if (!build_hail(c)) {
        ms_conn_respond_error(c, 500, "out of memory");
        return true;
    }
    if (!q_push(t, c, false)) {
        count_result(t, MS_HB_QUEUE_FULL);
        __atomic_fetch_add(&w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
        char detail[200];
        snprintf(detail, sizeof detail, "bay \"%s\" is busy: max_queue requests wait for it", s->name);
        ms_conn_respond_error(c, 503, detail); /* (with Retry-After: 1) */
        return true;
    }
    pump(t);
    return true;
}

static void hbay_data(ms_conn *c, const char *data, size_t len)
{
    ms_hblink *l = c->hbl;
    if (l && l->state == HB_TUNNEL)
        tunnel_up(l, data, len);
}

static void hbay_abort(ms_conn *c)
{
    ms_handler_static.abort(c); /* a file REPLY's descriptor, if any */
    ms_hbtarget *t = c->hbt;
    if (t && c->hq_queued)
        q_remove(t, c);
    c->hbt = NULL;
    ms_hblink *l = c->hbl;
    if (!l)
        return;
    /* the bay is still at this request: the link cannot serve another */
    l->c = NULL;
    c->hbl = NULL;
    link_close(l);
}

static int hbay_partial_status(const ms_conn *c)
{
    const ms_hblink *l = c->hbl;
    return l && l->head_sent && l->state == HB_BUSY ? l->status : 0;
}

const ms_handler ms_handler_hbay = {
    .start = hbay_start,
    .data = hbay_data,
    .drained = hbay_drained,
    .partial_status = hbay_partial_status,
    .abort = hbay_abort,
};

/* ---------------------------------------------------------------- the worker */
void ms_hbay_worker_wake(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++)
        if (w->hb_targets[i] && w->hb_targets[i]->nq)
            pump(w->hb_targets[i]);
}

void ms_hbay_close_idle(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++) {
        ms_hbtarget *t = w->hb_targets[i];
        for (ms_hblink *l = t ? t->links : NULL, *next; l; l = next) {
            next = l->next;
            if (!l->c)
                link_close(l);
        }
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void ms_hbay_worker_close(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++) {
        ms_hbtarget *t = w->hb_targets[i];
        if (!t || !t->timers_open)
            continue;
        t->timers_open = false; /* no link opens from now on */
        while (t->links)
            link_close(t->links);
        set_starved(t, false);
        uv_close((uv_handle_t *)&t->qtimer, on_timer_closed);
        uv_close((uv_handle_t *)&t->btimer, on_timer_closed);
    }
}

void ms_hbay_worker_free(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++)
        free(w->hb_targets[i]);
    free(w->hb_targets);
    w->hb_targets = NULL;
}

/* ---------------------------------------------------------------- metrics */
static uint64_t ld64(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static uint32_t ld32(const uint32_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

void ms_hbay_render_metrics(const ms_manifest *m, ms_proc *const *procs, const ms_hub *hub, ms_prom *p)
{
    static const char *const results[] = { "replied", "queue_full", "queue_timeout", "reply_timeout",
                                           "bad_gateway", "aborted" };
    if (!hub)
        return;
    for (int f = 0; f < 10; f++) {
        for (size_t i = 0; i < m->nships; i++) {
            const ms_ship *s = &m->ships[i];
            if (!ms_ship_speaks_v3(s))
                continue;
            size_t slot = procs && procs[i] ? procs[i]->slot : i;
            if (slot >= hub->nbays)
                continue;
            const ms_hub_http *h = &hub->bays[slot].http;
            ms_prom_label l[] = { { "bay", s->name }, { "state", "idle" } };
            uint32_t open = ld32(&h->links_open), busy = ld32(&h->links_busy);
            switch (f) {
            case 0:
                l[1].value = "busy";
                ms_prom_gauge_i64(p, "mothership_hbay_links", "Links to an HTTP bay open now, by state (idle: "
                                  "connecting, docking or free).", l, 2, busy);
                l[1].value = "idle";
                ms_prom_gauge_i64(p, "mothership_hbay_links", NULL, l, 2, open > busy ? open - busy : 0);
                break;
            case 1:
                ms_prom_gauge_i64(p, "mothership_hbay_links_cap",
                                  "Links the bay serves at once (its workers x the threads its Dock announced; "
                                  "0: not known yet).", l, 1, ld32(&h->links_cap));
                break;
            case 2:
                ms_prom_gauge_i64(p, "mothership_hbay_queue_depth", "Requests waiting for a free link now.", l, 1,
                                  ld32(&h->queued));
                break;
            case 3:
                ms_prom_counter_double(p, "mothership_hbay_queue_wait_seconds_total",
                                       "Time requests waited for a link, summed.", l, 1,
                                       (double)ld64(&h->queue_wait_us) / 1e6);
                break;
            case 4:
                ms_prom_counter_u64(p, "mothership_hbay_queue_waits_total", "Requests that got a link from the queue.",
                                    l, 1, ld64(&h->queue_waits));
                break;
            case 5:
                for (int r = 0; r < 6; r++) {
                    ms_prom_label lr[] = { { "bay", s->name }, { "result", results[r] } };
                    ms_prom_counter_u64(p, "mothership_hbay_requests_total",
                                        "Requests to an HTTP bay by how they ended.", lr, 2, ld64(&h->results[r]));
                }
                break;
            case 6:
                ms_prom_counter_u64(p, "mothership_hbay_protocol_errors_total",
                                    "Links closed for a frame that broke the docking protocol.", l, 1,
                                    ld64(&h->protocol_errors));
                break;
            case 7:
                ms_prom_counter_u64(p, "mothership_hbay_link_failures_total",
                                    "Links that did not connect or dock, or broke under a request.", l, 1,
                                    ld64(&h->link_failures));
                break;
            case 8:
                ms_prom_counter_u64(p, "mothership_hbay_links_docked_total", "Links that docked.", l, 1,
                                    ld64(&h->links_opened));
                break;
            default:
                break;
            }
        }
    }
}
