/* hbay_link.c: the links of HTTP bays on a worker (see hbay.c for the
 * requests on them). Per bay (its hub slot) each worker keeps a target:
 * its links, its FIFO of requests waiting for one, a timer for the first
 * deadline in that queue and one for the backoff of failed connects. A
 * link is a Unix stream connection to the bay's socket that docks (DOCK,
 * MOORED v3 with the bay's config) and then takes one request at a time.
 * Links of all workers stay within the hub's links_cap (CAS on
 * links_open; 0: one in all until a Dock says threads); a worker with
 * requests waiting that may open none counts itself in starved and wakes
 * the others; a worker whose link turns free with nothing waiting, or
 * sits idle when woken so, gives it up and wakes the others. Failed connects back off 10 ms doubling to 1 s. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "http/hbay_impl.h"

static void send_body(ms_hblink *l);
static void link_broken(ms_hblink *l);
static void on_link_timeout(uv_timer_t *h);
static void q_arm(ms_hbtarget *t);
static void close_spare(ms_hbtarget *t);

/* ---------------------------------------------------------------- targets */
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

void ms_hb_log(ms_hbtarget *t, const ms_conn *c, const char *fmt, const char *what)
{
    const ms_ship *s = c ? ms_hb_ship(c) : target_ship(t, NULL);
    const char *name = s ? s->name : "?";
    if (c && c->reqid_len)
        ms_worker_upstream_log(t->w, name, "bay \"%s\" %s%s (request id %.*s)", name, fmt, what, (int)c->reqid_len,
                               c->reqid);
    else
        ms_worker_upstream_log(t->w, name, "bay \"%s\" %s%s", name, fmt, what);
}

ms_hbtarget *ms_hb_target_get(ms_worker *w, size_t slot)
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
    if (on) {
        __atomic_fetch_add(&ms_hb_hub(t)->starved, 1, __ATOMIC_SEQ_CST);
        /* a link idle on another worker turned free before this: its worker gives it up when woken */
        ms_hub_wake_workers(t->w->hub, t->w->id);
    } else {
        __atomic_fetch_sub(&ms_hb_hub(t)->starved, 1, __ATOMIC_RELAXED);
    }
}

/* ---------------------------------------------------------------- the queue */
void ms_hb_q_remove(ms_hbtarget *t, ms_conn *c)
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
    __atomic_fetch_sub(&ms_hb_hub(t)->queued, 1, __ATOMIC_RELAXED);
    if (t->nq == 0) {
        set_starved(t, false);
        uv_timer_stop(&t->qtimer);
    }
}

/* false: the queue is full over all workers (nothing changed). */
bool ms_hb_q_push(ms_hbtarget *t, ms_conn *c, bool front)
{
    const ms_ship *s = ms_hb_ship(c);
    uint32_t max = s->max_queue ? s->max_queue : HB_DEFAULT_MAX_QUEUE;
    uint32_t before = __atomic_fetch_add(&ms_hb_hub(t)->queued, 1, __ATOMIC_RELAXED);
    if (before >= max && !front) {
        __atomic_fetch_sub(&ms_hb_hub(t)->queued, 1, __ATOMIC_RELAXED);
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
        uint64_t limit = ms_hb_timeout_ms(ms_hb_ship(c));
        if (c->hq_since_ms + limit > now)
            break;
        ms_hb_q_remove(t, c);
        c->hbt = NULL;
        ms_hb_count(t, MS_HB_QUEUE_TIMEOUT);
        char detail[160];
        snprintf(detail, sizeof detail, "bay \"%s\" had no free link within request_timeout (%llums)",
                 ms_hb_ship(c)->name, (unsigned long long)limit);
        ms_conn_respond_error(c, 504, detail);
    }
    q_arm(t);
    ms_hb_drop_spare(t);
}

static void q_arm(ms_hbtarget *t)
{
    if (!t->qhead) {
        uv_timer_stop(&t->qtimer);
        return;
    }
    uint64_t now = uv_now(&t->w->loop);
    uint64_t due = t->qhead->hq_since_ms + ms_hb_timeout_ms(ms_hb_ship(t->qhead));
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
        uv_timer_start(&l->timer, on_link_timeout, ms_hb_timeout_ms(ms_hb_ship(l->c)), 0);
    if (l->state == HB_TUNNEL && l->client_paused && l->c && l->write_pending <= MS_WRITE_HIGH) {
        l->client_paused = false;
        ms_conn_start_reading(l->c);
    }
}

/* Writes what the socket takes now and copies the rest into one queued
 * write. false: the link is broken (the caller closes it). */
bool ms_hb_link_write(ms_hblink *l, uv_buf_t *bufs, unsigned n)
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

/* The link goes; a request it served is the caller's to answer first. */
void ms_hb_link_close(ms_hblink *l)
{
    if (l->state == HB_CLOSING)
        return;
    ms_hbtarget *t = l->t;
    ms_hub_http *hh = ms_hb_hub(t);
    if (l->state == HB_BUSY || l->state == HB_AFTER || l->state == HB_TUNNEL)
        __atomic_fetch_sub(&hh->links_busy, 1, __ATOMIC_RELAXED);
    if (l->state == HB_CONNECTING || l->state == HB_DOCKING)
        t->nopening--;
    l->state = HB_CLOSING;
    if (l->c) {
        l->c->hbl = NULL;
        l->c = NULL;
    }
    ms_hb_response_drop(l);
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
        ms_hb_pump(t);
    else if (__atomic_load_n(&hh->starved, __ATOMIC_RELAXED) > 0)
        ms_hub_wake_workers(t->w->hub, t->w->id);
}

/* A write to the link failed: its request (if any) is answered as for a
 * link that broke, its tunnel (if any) cut. */
static void link_broken(ms_hblink *l)
{
    if (l->state == HB_BUSY)
        ms_hub_count(&ms_hb_hub(l->t)->link_failures, 1);
    if (l->state == HB_BUSY && l->c) {
        ms_hb_request_failed(l, MS_HB_BAD_GATEWAY, 502, "broke its link while the request went out");
    } else if (l->state == HB_TUNNEL && l->c) {
        ms_conn *c = l->c;
        l->c = NULL;
        c->hbl = NULL;
        ms_hb_link_close(l);
        ms_conn_close(c); /* the tunnel is cut both ways, as when the bay's side of it closes */
    } else {
        ms_hb_link_close(l);
    }
}

static void on_btimer(uv_timer_t *h)
{
    ms_hb_pump(h->data);
}

/* A link did not connect or dock: back off (10 ms doubling to 1 s). */
void ms_hb_link_failed(ms_hblink *l, const char *what)
{
    ms_hbtarget *t = l->t;
    ms_hub_count(&ms_hb_hub(t)->link_failures, 1);
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : HB_BACKOFF_MIN_MS;
    if (t->backoff_ms > HB_BACKOFF_MAX_MS)
        t->backoff_ms = HB_BACKOFF_MAX_MS;
    t->retry_at = uv_now(&t->w->loop) + t->backoff_ms;
    ms_hb_log(t, NULL, "link: ", what);
    ms_hb_link_close(l);
    if (t->nq && !uv_is_active((uv_handle_t *)&t->btimer))
        uv_timer_start(&t->btimer, on_btimer, t->backoff_ms, 0);
}

static void on_link_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    ms_hblink *l = h->data;
    (void)s;
    *b = uv_buf_init(l->rbuf, HB_RBUF);
}

void ms_hb_link_read(ms_hblink *l, bool on)
{
    if (l->state == HB_CLOSING || l->reading == on)
        return;
    if (on && uv_read_start((uv_stream_t *)&l->pipe, on_link_alloc, ms_hb_on_link_read) != 0) {
        ms_hb_link_close(l);
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
        ms_hb_link_failed(l, what);
        return;
    }
    l->state = HB_DOCKING; /* the bay speaks first */
    ms_hb_link_read(l, true);
}

/* Opens a link of t when the links of all workers stay within the cap
 * (0: unknown: one in all, until a Dock says). */
static bool link_open(ms_hbtarget *t)
{
    ms_worker *w = t->w;
    ms_hub_http *hh = ms_hb_hub(t);
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
    memcpy(l->path, path, sizeof l->path);
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
            ms_hb_link_close(l); /* the bay sees a cut-off request, never a complete wrong one */
            c->hbl = NULL;
            ms_hb_count(t, MS_HB_BAD_GATEWAY);
            ms_conn_respond_error(c, 500, "cannot read the buffered request body back from its temporary file");
            return;
        }
        while (len > 0) {
            size_t k = len < MS_DOCK_V3_CHUNK ? len : MS_DOCK_V3_CHUNK;
            bool fin = l->body_sent + k == c->body.len;
            uint8_t hdr[MS_DOCK_HAUL_HEADER_LEN];
            ms_dock_put_haul_header(hdr, l->req_id, fin, k);
            uv_buf_t bufs[2] = { uv_buf_init((char *)hdr, sizeof hdr), uv_buf_init((char *)data, (unsigned)k) };
            if (!ms_hb_link_write(l, bufs, 2)) {
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
    __atomic_fetch_add(&ms_hb_hub(t)->links_busy, 1, __ATOMIC_RELAXED);
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
    if (ms_conn_logs_access(c))
        c->up_sent_us = ms_now_us();
    uv_buf_t b = uv_buf_init(c->out, c->out_len);
    if (!ms_hb_link_write(l, &b, 1)) {
        link_broken(l);
        return;
    }
    if (c->body_buffered && c->body.len > 0)
        send_body(l);
    else
        l->req_sent = true;
    if (l->state != HB_BUSY)
        return;
    uv_timer_start(&l->timer, on_link_timeout, ms_hb_timeout_ms(ms_hb_ship(c)), 0);
    ms_hb_link_read(l, true);
    if (!c->body_buffered)
        ms_conn_resume_request_body(c); /* the parser steps over the request's end */
}

/* Whether idle link l goes to where t's entry is no longer reached (a
 * reload moved an upstream's bind). */
static bool link_stale(const ms_hblink *l, const char *now)
{
    return l->state == HB_IDLE && now && strcmp(l->path, now) != 0;
}

/* Closes t's idle links to an address its entry has left; the others
 * (busy) are closed when they turn idle. */
static void close_stale(ms_hbtarget *t, const char *now)
{
    for (;;) { /* from the head each time: a close may pump, and close others */
        ms_hblink *l = t->links;
        while (l && !link_stale(l, now))
            l = l->next;
        if (!l)
            return;
        ms_hb_link_close(l);
    }
}

/* Hand queued requests to idle links; open links for the rest. */
void ms_hb_pump(ms_hbtarget *t)
{
    ms_worker *w = t->w;
    if (!t->timers_open)
        return; /* the worker's loop is ending */
    char now_buf[sizeof ((struct sockaddr_un *)0)->sun_path];
    const char *now = NULL;
    size_t idx;
    if (t->links && target_ship(t, &idx) && link_path(w->cur, idx, now_buf, sizeof now_buf))
        now = now_buf;
    close_stale(t, now);
    while (t->qhead) {
        ms_hblink *idle = NULL;
        for (ms_hblink *l = t->links; l && !idle; l = l->next)
            if (l->state == HB_IDLE && !link_stale(l, now))
                idle = l;
        if (!idle)
            break;
        ms_conn *c = t->qhead;
        ms_hb_q_remove(t, c);
        ms_hub_http *hh = ms_hb_hub(t);
        uint64_t waited = uv_now(&w->loop) - c->hq_since_ms;
        ms_hub_count(&hh->queue_wait_us, waited * 1000);
        ms_hub_count(&hh->queue_waits, 1);
        assign(idle, c);
    }
    if (!t->qhead) {
        ms_hb_drop_spare(t);
        return;
    }
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

/* ---------------------------------------------------------------- timeouts and docking */
static void on_link_timeout(uv_timer_t *h)
{
    ms_hblink *l = h->data;
    if (l->state == HB_CONNECTING || l->state == HB_DOCKING) {
        ms_hb_link_failed(l, l->state == HB_CONNECTING ? "did not accept the link in time" : "sent no DOCK in time");
        return;
    }
    if (l->state == HB_BUSY && l->c) {
        char what[128];
        snprintf(what, sizeof what, "did not answer within request_timeout (%llums)",
                 (unsigned long long)ms_hb_timeout_ms(ms_hb_ship(l->c)));
        ms_hb_request_failed(l, MS_HB_REPLY_TIMEOUT, 504, what);
        return;
    }
    if (l->state == HB_AFTER) {
        ms_hb_link_close(l); /* no READY in time: the bay's thread is stuck */
        return;
    }
}

void ms_hb_on_dock(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_hbtarget *t = l->t;
    ms_dock_hello3 hello;
    char err[160];
    if (ms_dock_parse_dock3(fr->payload, fr->len, &hello, err, sizeof err) != 0) {
        ms_dock_hello3_free(&hello);
        ms_hub_count(&ms_hb_hub(t)->protocol_errors, 1);
        ms_hb_link_failed(l, err);
        return;
    }
    uint32_t threads = hello.threads;
    ms_dock_hello3_free(&hello);
    size_t idx;
    const ms_ship *s = target_ship(t, &idx);
    if (!s) {
        ms_hb_link_close(l);
        return;
    }
    uint32_t cap = threads * (s->bay_workers ? s->bay_workers : 1);
    uint32_t zero = 0;
    bool raised;
    if (s->kind == MS_UPSTREAM) /* no handshake of the fleet: its app's latest Dock says (a reload may move it) */
        raised = __atomic_exchange_n(&ms_hb_hub(t)->links_cap, cap, __ATOMIC_SEQ_CST) < cap;
    else
        raised = __atomic_compare_exchange_n(&ms_hb_hub(t)->links_cap, &zero, cap, false, __ATOMIC_SEQ_CST,
                                             __ATOMIC_RELAXED);
    if (raised && cap > 1 && __atomic_load_n(&ms_hb_hub(t)->starved, __ATOMIC_SEQ_CST) > 0)
        ms_hub_wake_workers(t->w->hub, t->w->id); /* those that waited for a Dock may open links now */
    const ms_strmap *cfg = &s->config;
    ms_dock_kv *kv = calloc(cfg->len ? cfg->len : 1, sizeof *kv);
    ms_dock_buf b = { 0 };
    bool ok = kv != NULL;
    for (size_t i = 0; ok && i < cfg->len; i++)
        kv[i] = (ms_dock_kv){ cfg->items[i].key, cfg->items[i].value };
    ok = ok && ms_dock_encode_moored3(&b, kv, cfg->len) == 0;
    free(kv);
    uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
    ok = ok && ms_hb_link_write(l, &ub, 1);
    ms_dock_buf_free(&b);
    if (!ok) {
        ms_hb_link_failed(l, "cannot send MOORED");
        return;
    }
    uv_timer_stop(&l->timer);
    t->nopening--;
    l->state = HB_IDLE;
    t->backoff_ms = 0;
    t->retry_at = 0;
    ms_hub_count(&ms_hb_hub(t)->links_opened, 1);
    if (!t->nq && __atomic_load_n(&ms_hb_hub(t)->starved, __ATOMIC_SEQ_CST) > 0) {
        ms_hb_link_close(l); /* its requests left while it docked: another worker waits for a link */
        return;
    }
    ms_hb_pump(t);
}

/* ---------------------------------------------------------------- the worker */
void ms_hbay_worker_wake(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++) {
        ms_hbtarget *t = w->hb_targets[i];
        if (!t)
            continue;
        if (t->nq) {
            ms_hb_pump(t);
            continue;
        }
        if (!t->timers_open || __atomic_load_n(&ms_hb_hub(t)->starved, __ATOMIC_RELAXED) == 0)
            continue;
        for (ms_hblink *l = t->links; l; l = l->next)
            if (l->state == HB_IDLE) {
                ms_hb_link_close(l); /* another worker waits for a link it may not open: this one gives way */
                break;
            }
    }
}

/* Links without a request go (idle, connecting, docking, or awaiting a READY). */
static void close_spare(ms_hbtarget *t)
{
    for (ms_hblink *l = t->links, *next; l; l = next) {
        next = l->next;
        if (!l->c)
            ms_hb_link_close(l);
    }
}

void ms_hb_drop_spare(ms_hbtarget *t)
{
    if (!t->nq && (t->w->stopping || t->w->draining))
        close_spare(t); /* nothing waits for them, and the worker's end would */
}

void ms_hbay_close_idle(ms_worker *w)
{
    if (!w->hb_targets)
        return;
    for (size_t i = 0; i < w->hub->nbays; i++)
        if (w->hb_targets[i])
            close_spare(w->hb_targets[i]);
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
            ms_hb_link_close(t->links);
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
