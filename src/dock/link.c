/* link.c: docking links on the control loop (see link.h and
 * docs/docking-protocol.md). Frames from workers arrive through the hub
 * already encoded and are written in batches; frames from the bay are
 * decoded here and routed to the worker that owns the conn_id. For an
 * HTTP bay (docking v3) the link here is only its readiness handshake:
 * Dock v3, Moored v3, the bay's link capacity published in the hub, the
 * bay marked ready, the link closed; its requests go over the workers'
 * own links. */
#include "dock/link.h"

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dock/protocol.h"

#define LINK_READ_BUF 65536
#define LINK_WRITE_HIGH (1u << 20)     /* bytes in flight to the bay before workers' frames wait */
#define LINK_BATCH 64
#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS 500

typedef struct ms_dlink ms_dlink;

typedef enum { LC_CONNECTING, LC_WAIT_DOCK, LC_DOCKED, LC_CLOSING } lc_state;

typedef struct link_conn {
    uv_pipe_t pipe;
    uv_connect_t creq;
    ms_dlink *l;
    lc_state st;
    ms_dock_decoder dec;
    unsigned features;
    uint32_t gen;
    size_t inflight;                   /* bytes handed to uv_write, not yet written */
    int writes;                        /* uv_write requests in flight */
    bool read_paused;                  /* a worker's inbox is over its budget */
    bool hand_over;                    /* docked: give the reading to the bay's home worker */
    bool remote;                       /* the home worker reads it (and reports its failure) */
    char rbuf[LINK_READ_BUF];
} link_conn;

struct ms_dlink {
    ms_docks *d;
    size_t bay;                        /* the bay's slot (its index in the hub) */
    ms_proc *p;
    uv_timer_t retry;
    link_conn *conn;
    uint64_t delay_ms;
    bool wanted;                       /* the bay runs: keep (re)connecting until docked */
    int conns;                         /* link_conns not yet freed (closing ones point here) */
};

struct ms_docks {
    uv_loop_t *loop;
    ms_fleet *fleet;
    ms_hub *hub;
    ms_log *log;
    ms_dlink **links;                  /* by slot: one per bay the fleet has, NULL for others (and freed slots) */
    size_t n;                          /* MS_FLEET_MAX_SLOTS */
    uv_async_t wake;
    uv_timer_t flush_timer;            /* bounds the wait of ms_docks_flush */
    void (*flushed)(void *);           /* pending ms_docks_flush callback */
    void *flushed_arg;
    uint32_t next_gen;
    bool closing;
};

typedef struct wbatch {
    uv_write_t req;
    link_conn *lc;
    ms_hub_msg *msgs;
    size_t bytes;
    unsigned n;
    uv_buf_t bufs[LINK_BATCH];
} wbatch;

static void link_fail(link_conn *lc, uint16_t code, const char *why, bool protocol_error, bool tell_fleet);
static void try_connect(ms_dlink *l);
static void check_flushed(ms_docks *d);

static const char *bay_name(const ms_dlink *l)
{
    return l->p->ship->name;
}

/* ---------------------------------------------------------------- writing */

static void on_lc_closed(uv_handle_t *h)
{
    link_conn *lc = h->data;
    assert(lc->st == LC_CLOSING && lc->writes == 0 && lc->l->conn != lc);
    lc->l->conns--;
    ms_dock_decoder_free(&lc->dec);
    free(lc);
}

static void maybe_free_conn(link_conn *lc)
{
    if (lc->st == LC_CLOSING && lc->writes == 0 && !uv_is_closing((uv_handle_t *)&lc->pipe))
        uv_close((uv_handle_t *)&lc->pipe, on_lc_closed);
}

static void pump(link_conn *lc);

static void on_written(uv_write_t *req, int status)
{
    wbatch *b = (wbatch *)req;
    link_conn *lc = b->lc;
    assert(lc->writes > 0 && lc->inflight >= b->bytes);
    lc->inflight -= b->bytes;
    lc->writes--;
    ms_hub_msg_free_list(b->msgs);
    free(b);
    ms_docks *d = lc->l->d;
    if (lc->st == LC_CLOSING) {
        maybe_free_conn(lc);
        check_flushed(d);
        return;
    }
    if (status < 0) {
        char why[160];
        snprintf(why, sizeof why, "writing to the bay failed: %s", uv_strerror(status));
        /* EPIPE/ECONNRESET: the bay went away (1012); anything else is a failure (1011) */
        link_fail(lc, status == UV_EPIPE || status == UV_ECONNRESET ? 1012 : 1011, why, false, true);
        check_flushed(d);
        return;
    }
    pump(lc);
    check_flushed(d);
}

/* Nothing in flight: offer the batch to the socket first (uv_try_write),
 * so a small batch costs one writev and no uv_write request: a completed
 * uv_write costs an epoll_ctl on the next turn (libuv stops its POLLOUT
 * watcher) and its callback a loop turn. What the socket took is freed;
 * b keeps the rest (b->n 0: all of it). false: the link failed. */
static bool try_write_now(link_conn *lc, wbatch *b)
{
    int n = uv_try_write((uv_stream_t *)&lc->pipe, b->bufs, b->n);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        return true;
    if (n < 0) {
        ms_hub_msg_free_list(b->msgs);
        b->msgs = NULL;
        char why[160];
        snprintf(why, sizeof why, "writing to the bay failed: %s", uv_strerror(n));
        link_fail(lc, n == UV_EPIPE || n == UV_ECONNRESET ? 1012 : 1011, why, false, true);
        return false;
    }
    size_t done = (size_t)n;
    unsigned i = 0;
    while (i < b->n && done >= b->bufs[i].len) {
        done -= b->bufs[i].len;
        b->bytes -= b->bufs[i].len;
        ms_hub_msg *m = b->msgs;
        b->msgs = m->next;
        free(m);
        i++;
    }
    if (i < b->n && done > 0) {
        b->bufs[i].base += done;
        b->bufs[i].len -= done;
        b->bytes -= done;
    }
    memmove(b->bufs, b->bufs + i, (b->n - i) * sizeof *b->bufs);
    b->n -= i;
    return true;
}

/* Write a list of frames (owned: freed once written). */
static bool write_list(link_conn *lc, ms_hub_msg *list)
{
    assert(lc->st == LC_WAIT_DOCK || lc->st == LC_DOCKED); /* Moored, then workers' frames */
    while (list) {
        wbatch *b = calloc(1, sizeof *b);
        if (!b) {
            ms_hub_msg_free_list(list);
            link_fail(lc, 1011, "out of memory", false, true);
            return false;
        }
        b->lc = lc;
        ms_hub_msg **tail = &b->msgs;
        while (list && b->n < LINK_BATCH) {
            ms_hub_msg *m = list;
            list = m->next;
            m->next = NULL;
            *tail = m;
            tail = &m->next;
            assert(b->n < LINK_BATCH);
            b->bufs[b->n++] = uv_buf_init((char *)m->data, m->len);
            b->bytes += m->len;
        }
        if (lc->writes == 0 && !try_write_now(lc, b)) {
            free(b);
            ms_hub_msg_free_list(list);
            return false;
        }
        if (b->n == 0) { /* the socket took it all: no request, no watcher change */
            free(b);
            continue;
        }
        int rc = uv_write(&b->req, (uv_stream_t *)&lc->pipe, b->bufs, b->n, on_written);
        if (rc < 0) {
            ms_hub_msg_free_list(b->msgs);
            free(b);
            ms_hub_msg_free_list(list);
            char why[160];
            snprintf(why, sizeof why, "writing to the bay failed: %s", uv_strerror(rc));
            link_fail(lc, 1011, why, false, true);
            return false;
        }
        lc->inflight += b->bytes;
        lc->writes++;
    }
    return true;
}

/* Move what workers queued for this bay onto the socket, up to the
 * high-water mark; frames of an earlier link generation are dropped. */
static void pump(link_conn *lc)
{
    ms_dlink *l = lc->l;
    ms_hub *hub = l->d->hub;
    while (lc->st == LC_DOCKED && lc->inflight < LINK_WRITE_HIGH) {
        ms_hub_msg *list = ms_hub_take_up(hub, l->bay, LINK_WRITE_HIGH - lc->inflight);
        if (!list) {
            /* all written: workers may write to the socket themselves
             * again, unless one queued meanwhile (take that first) */
            if (lc->writes > 0 || ms_hub_link_idle(hub, l->bay))
                return;
            continue;
        }
        ms_hub_msg *keep = NULL, **tail = &keep;
        ms_hub_bay_stats *st = &hub->bays[l->bay].st;
        while (list) {
            ms_hub_msg *m = list;
            list = m->next;
            m->next = NULL;
            if (m->gen != lc->gen) {
                free(m);
                continue;
            }
            if (m->kind == MS_HUB_CARGO) {
                ms_hub_count(&st->msgs_in, 1);
                ms_hub_count(&st->bytes_in, m->len - MS_DOCK_CARGO_HEADER_LEN);
            }
            *tail = m;
            tail = &m->next;
        }
        if (keep && !write_list(lc, keep))
            return;
    }
}

/* ---------------------------------------------------------------- reading */

static bool send_moored(link_conn *lc, bool v3)
{
    ms_dlink *l = lc->l;
    const ms_strmap *cfg = &l->p->ship->config;
    ms_dock_kv *kv = calloc(cfg->len ? cfg->len : 1, sizeof *kv);
    if (!kv)
        return false;
    for (size_t i = 0; i < cfg->len; i++) {
        kv[i].name = cfg->items[i].key;
        kv[i].value = cfg->items[i].value;
    }
    ms_dock_buf b = { 0 };
    int rc = v3 ? ms_dock_encode_moored3(&b, kv, cfg->len) : ms_dock_encode_moored(&b, kv, cfg->len, lc->features);
    free(kv);
    if (rc != 0) {
        ms_dock_buf_free(&b);
        return false;
    }
    ms_hub_msg *m = ms_hub_msg_new(MS_HUB_BOARDING, (uint32_t)l->bay, 0, 0, 0, b.data, b.len);
    ms_dock_buf_free(&b);
    return m && write_list(lc, m);
}

/* Whether a Dock that the bay's own version refused is one of the other
 * version (a WebSocket bay's v1 on an HTTP bay, or the reverse). */
static bool dock_of_other_version(const ms_dock_frame *fr, bool http_bay)
{
    char err[200];
    bool ok;
    if (http_bay) {
        ms_dock_hello h1 = { 0 };
        ok = ms_dock_parse_dock(fr->payload, fr->len, &h1, err, sizeof err) == 0;
        ms_dock_hello_free(&h1);
    } else {
        ms_dock_hello3 h3 = { 0 };
        ok = ms_dock_parse_dock3(fr->payload, fr->len, &h3, err, sizeof err) == 0;
        ms_dock_hello3_free(&h3);
    }
    return ok;
}

static void refuse_dock(link_conn *lc, const ms_dock_frame *fr, const char *err)
{
    bool http_bay = lc->l->p->ship->http_bay;
    char why[300];
    if (dock_of_other_version(fr, http_bay))
        snprintf(why, sizeof why, http_bay ? "bad Dock: version 1 (a WebSocket bay's) on an HTTP bay: a "
                 "[[bays.http]] bay docks with version 3" : "bad Dock: version 3 (an HTTP bay's) on a WebSocket "
                 "bay: declare it as [[bays.http]]");
    else
        snprintf(why, sizeof why, "bad Dock: %s", err);
    link_fail(lc, 1011, why, true, true);
}

/* An HTTP bay's Dock v3: its threads give the links the workers may open
 * (its processes x threads); Moored v3 carries its config. The bay is then
 * ready, and this link is done: the workers dock their own. */
static void on_docked3(link_conn *lc, const ms_dock_frame *fr)
{
    ms_dlink *l = lc->l;
    ms_docks *d = l->d;
    const ms_ship *s = l->p->ship;
    assert(lc->st == LC_WAIT_DOCK && l->conn == lc && s->http_bay);
    char err[200];
    ms_dock_hello3 hello = { 0 };
    if (ms_dock_parse_dock3(fr->payload, fr->len, &hello, err, sizeof err) != 0) {
        ms_dock_hello3_free(&hello);
        refuse_dock(lc, fr, err);
        return;
    }
    if (hello.ship && strcmp(hello.ship, bay_name(l)) != 0)
        ms_log_event(d->log, MS_WARN, bay_name(l), "dock_name",
                     "bay \"%s\" docked under the name \"%.64s\" (MS_SHIP is \"%s\"); accepted", bay_name(l),
                     hello.ship, bay_name(l));
    uint32_t threads = hello.threads;
    ms_dock_hello3_free(&hello);
    if (!send_moored(lc, true)) {
        link_fail(lc, 1011, "cannot send Moored: out of memory", false, true);
        return;
    }
    uint32_t procs = s->bay_workers > 0 ? s->bay_workers : 1;
    uint32_t cap = procs * threads;
    __atomic_store_n(&d->hub->bays[l->bay].http.links_cap, cap, __ATOMIC_RELEASE);
    uint64_t docks = __atomic_add_fetch(&d->hub->bays[l->bay].st.docks, 1, __ATOMIC_RELAXED);
    char how[300];
    snprintf(how, sizeof how, "docked on %s, protocol v%d, %u thread%s x %u process%s = %u links%s", l->p->socket_path,
             MS_DOCK_V3, threads, threads == 1 ? "" : "s", procs, procs == 1 ? "" : "es", cap,
             docks > 1 ? ", re-docked" : "");
    l->p->last_health_error[0] = '\0';
    /* the handshake is over: Moored is written, then the link closes and
     * the bay's thread goes back to accepting */
    l->wanted = false;
    lc->st = LC_CLOSING;
    l->conn = NULL;
    uv_read_stop((uv_stream_t *)&lc->pipe);
    maybe_free_conn(lc);
    ms_fleet_bay_docked(d->fleet, l->bay, how);
}

static void on_docked(link_conn *lc, const ms_dock_frame *fr)
{
    ms_dlink *l = lc->l;
    ms_docks *d = l->d;
    assert(lc->st == LC_WAIT_DOCK && l->conn == lc);
    if (l->p->ship->http_bay) {
        on_docked3(lc, fr);
        return;
    }
    char err[200];
    ms_dock_hello hello = { 0 };
    if (ms_dock_parse_dock(fr->payload, fr->len, &hello, err, sizeof err) != 0) {
        ms_dock_hello_free(&hello);
        refuse_dock(lc, fr, err);
        return;
    }
    if (strcmp(hello.ship, bay_name(l)) != 0)
        ms_log_event(d->log, MS_WARN, bay_name(l), "dock_name",
                     "bay \"%s\" docked under the name \"%.64s\" (MS_SHIP is \"%s\"); accepted", bay_name(l),
                     hello.ship, bay_name(l));
    lc->features = ms_dock_agree_features(hello.features);
    ms_dock_hello_free(&hello);
    if (!send_moored(lc, false)) {
        link_fail(lc, 1011, "cannot send Moored: out of memory", false, true);
        return;
    }
    if (++d->next_gen == 0)
        d->next_gen = 1;
    lc->gen = d->next_gen;
    lc->st = LC_DOCKED;
    lc->hand_over = true;
    lc->dec.accept_binary = (lc->features & MS_DOCK_FEAT_BINARY) != 0;
    ms_hub_bay *hb = &d->hub->bays[l->bay];
    uint64_t docks = __atomic_add_fetch(&hb->st.docks, 1, __ATOMIC_RELAXED);
    ms_hub_drop_up(d->hub, l->bay); /* nothing of an earlier link may reach this one */
    /* workers write their frames to the socket themselves while the link
     * has nothing of its own to write (hub.h): a client's message then
     * reaches the bay without waking this loop. Close-on-exec: bays are
     * spawned from this process. */
    uv_os_fd_t fd = -1;
    if (uv_fileno((uv_handle_t *)&lc->pipe, &fd) == 0) {
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dfd >= 0)
            ms_hub_set_direct(d->hub, l->bay, dfd, lc->gen); /* else the link writes everything */
    }
    ms_hub_bay_publish(d->hub, l->bay, lc->gen, lc->features);
    /* clients held or waiting since an earlier link went: board them on this
     * one (resumed), or close them if it does not resume */
    for (unsigned w = 0; w < d->hub->nworkers; w++) {
        ms_hub_msg *m = ms_hub_msg_new(MS_HUB_LINK_UP, (uint32_t)l->bay, lc->gen, 0, (uint16_t)lc->features, NULL, 0);
        if (m)
            ms_hub_to_worker(d->hub, w, m);
    }
    char how[300];
    snprintf(how, sizeof how, "docked on %s, protocol v%d%s%s%s", l->p->socket_path, MS_DOCK_VERSION,
             lc->features & MS_DOCK_FEAT_BINARY ? " with binary messages" : " (text only)",
             lc->features & MS_DOCK_FEAT_RESUME ? ", resume" : "", docks > 1 ? ", re-docked" : "");
    l->p->last_health_error[0] = '\0';
    ms_fleet_bay_docked(d->fleet, l->bay, how);
}

/* A docked link's bay frames are read by the bay's home worker, which
 * delivers its own clients' messages without a thread hop (and passes the
 * others' to their inboxes); this loop keeps the link's life: writes the
 * workers could not make themselves, failure (the worker reports it:
 * MS_HUB_LINK_LOST), and closing. rest: what was read after the Dock.
 * false: no worker could take it (out of memory, no data plane, or the
 * home worker has stopped): it is read here. */
static bool hand_over(link_conn *lc, const uint8_t *rest, size_t rest_len)
{
    ms_dlink *l = lc->l;
    ms_hub *hub = l->d->hub;
    uv_os_fd_t fd = -1;
    int dfd = -1;
    if (uv_fileno((uv_handle_t *)&lc->pipe, &fd) == 0)
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    ms_hub_msg *lost = NULL, *att = NULL;
    if (dfd >= 0 && rest_len <= UINT32_MAX - sizeof(ms_hub_attach))
        lost = ms_hub_msg_new(MS_HUB_LINK_LOST, (uint32_t)l->bay, lc->gen, 0, 0, NULL, MS_HUB_LOST_WHY);
    if (lost)
        att = ms_hub_msg_new(MS_HUB_LINK_ATTACH, (uint32_t)l->bay, lc->gen, 0, (uint16_t)lc->features, NULL,
                             sizeof(ms_hub_attach) + rest_len);
    if (!att) {
        free(lost);
        if (dfd >= 0)
            close(dfd);
        return false;
    }
    lost->len = 0;
    ms_hub_attach a = { .fd = dfd, .lost = lost };
    memcpy(att->data, &a, sizeof a);
    if (rest_len)
        memcpy(att->data + sizeof a, rest, rest_len);
    /* no worker to read it (no data plane, or stopping): read here */
    if (!ms_hub_hand_to_worker(hub, ms_hub_home_of(hub, l->bay), att)) {
        close(dfd);
        free(lost);
        free(att);
        return false;
    }
    uv_read_stop((uv_stream_t *)&lc->pipe);
    lc->remote = true;
    return true;
}

/* The home worker's report that the link of (bay, gen) failed. */
static void on_lost(ms_docks *d, const ms_hub_msg *m)
{
    ms_dlink *l = m->bay < d->n ? d->links[m->bay] : NULL;
    link_conn *lc = l ? l->conn : NULL;
    if (!lc || lc->st != LC_DOCKED || !lc->remote || lc->gen != m->gen)
        return; /* it ended here first */
    char why[MS_HUB_LOST_WHY + 1];
    size_t n = m->len < MS_HUB_LOST_WHY ? m->len : MS_HUB_LOST_WHY;
    memcpy(why, m->data, n);
    why[n] = '\0';
    link_fail(lc, m->code, why, m->conn_id != 0, true);
}

/* false: the link failed (lc may be closing). */
static bool handle_frame(link_conn *lc, const ms_dock_frame *fr, bool *over_budget)
{
    ms_dlink *l = lc->l;
    ms_hub *hub = l->d->hub;
    char why[260];
    const char *tn = ms_dock_type_name(fr->type);
    assert(lc->st == LC_WAIT_DOCK || lc->st == LC_DOCKED); /* on_read stops at LC_CLOSING */
    if (lc->st == LC_WAIT_DOCK) {
        if (fr->type != MS_DOCK_DOCK) {
            snprintf(why, sizeof why, "expected Dock as the first frame, got %s", tn ? tn : "an unknown type");
            link_fail(lc, 1011, why, true, true);
            return false;
        }
        on_docked(lc, fr);
        return lc->st == LC_DOCKED;
    }
    ms_hub_msg *m = NULL;
    int rc = ms_hub_bay_frame(hub, (uint32_t)l->bay, lc->gen, fr->type, fr->payload, fr->len, &m, why, sizeof why);
    if (rc != 0) {
        link_fail(lc, 1011, rc == -2 ? "out of memory" : why, rc == -1, true);
        return false;
    }
    if (!ms_hub_to_worker(hub, ms_hub_worker_of(hub, m->conn_id), m))
        *over_budget = true;
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    link_conn *lc = h->data;
    (void)suggested;
    *b = uv_buf_init(lc->rbuf, sizeof lc->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    link_conn *lc = s->data;
    assert(lc->st != LC_CONNECTING); /* reading starts once connected */
    if (n == 0 || lc->st == LC_CLOSING)
        return;
    if (n < 0) {
        char why[200];
        if (n == UV_EOF && ms_dock_decoder_finish(&lc->dec) != 0)
            /* a bay killed while it wrote a frame: one that resumes keeps
             * its clients, as after any other crash */
            link_fail(lc, lc->features & MS_DOCK_FEAT_RESUME ? 1012 : 1011, "the bay closed the link inside a frame",
                      true, true);
        else if (n == UV_EOF || n == UV_ECONNRESET) /* a bay that dies with frames unread resets the link */
            link_fail(lc, 1012, lc->st == LC_DOCKED ? "the bay closed the docking link" : "the bay closed the link before docking", false, true);
        else {
            snprintf(why, sizeof why, "reading the docking link failed: %s", uv_strerror((int)n));
            link_fail(lc, 1011, why, false, true);
        }
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)n;
    bool over = false;
    while (left > 0) {
        size_t used = 0;
        ms_dock_frame fr;
        int r = ms_dock_decoder_feed(&lc->dec, p, left, &used, &fr);
        p += used;
        left -= used;
        if (r < 0) {
            char why[260];
            snprintf(why, sizeof why, "protocol error: %s", ms_dock_decoder_message(&lc->dec));
            link_fail(lc, 1011, why, true, true);
            return;
        }
        if (r == 0)
            break;
        if (!handle_frame(lc, &fr, &over))
            return;
        if (lc->hand_over) {
            lc->hand_over = false;
            if (hand_over(lc, p, left))
                return;
        }
    }
    if (over && !lc->read_paused) {
        lc->read_paused = true;
        uv_read_stop((uv_stream_t *)&lc->pipe);
    }
}

/* ---------------------------------------------------------------- lifecycle */

static void link_fail(link_conn *lc, uint16_t code, const char *why, bool protocol_error, bool tell_fleet)
{
    if (lc->st == LC_CLOSING)
        return;
    ms_dlink *l = lc->l;
    ms_docks *d = l->d;
    if (code == 1012 && l->p->retired)
        code = 1001; /* a reload removed the bay: going away, not restarting */
    bool was_docked = lc->st == LC_DOCKED;
    lc->st = LC_CLOSING;
    if (l->conn == lc)
        l->conn = NULL;
    if (protocol_error)
        ms_hub_count(&d->hub->bays[l->bay].st.protocol_errors, 1);
    if (was_docked) {
        ms_hub_set_direct(d->hub, l->bay, -1, 0); /* before the link's descriptor closes */
        /* a bay that resumes and went away (not a failure, not removed, not
         * our shutdown) keeps its clients for its handover_timeout */
        bool hold = code == 1012 && (lc->features & MS_DOCK_FEAT_RESUME) && !d->closing;
        uint64_t until = ms_hub_now_ms() + l->p->ship->handover_timeout_ms;
        if (hold)
            ms_hub_bay_away(d->hub, l->bay, MS_DOCK_FEAT_RESUME, until);
        else
            ms_hub_bay_publish(d->hub, l->bay, 0, 0);
        ms_hub_drop_up(d->hub, l->bay);
        for (unsigned w = 0; w < d->hub->nworkers; w++) {
            ms_hub_msg *m = ms_hub_msg_new(hold ? MS_HUB_LINK_HOLD : MS_HUB_LINK_DOWN, (uint32_t)l->bay, lc->gen, 0,
                                           code, hold ? &until : NULL, hold ? sizeof until : 0);
            if (m)
                ms_hub_to_worker(d->hub, w, m);
        }
        if (hold)
            ms_log_event(d->log, MS_INFO, bay_name(l), "bay_away",
                         "bay \"%s\" is away: its clients are held for %llu ms", bay_name(l),
                         (unsigned long long)l->p->ship->handover_timeout_ms);
    }
    snprintf(l->p->last_health_error, sizeof l->p->last_health_error, "%s", why);
    uv_read_stop((uv_stream_t *)&lc->pipe);
    maybe_free_conn(lc);
    if (tell_fleet && l->wanted) {
        l->wanted = false;
        ms_fleet_bay_lost(d->fleet, l->bay, why);
    }
}

static void on_retry(uv_timer_t *t)
{
    try_connect(t->data);
}

static void on_connect(uv_connect_t *req, int status)
{
    link_conn *lc = req->data;
    ms_dlink *l = lc->l;
    assert(lc->st == LC_CONNECTING || lc->st == LC_CLOSING);
    if (lc->st == LC_CLOSING) { /* the bay exited meanwhile */
        maybe_free_conn(lc);
        return;
    }
    if (status < 0) {
        snprintf(l->p->last_health_error, sizeof l->p->last_health_error, "connecting: %s", uv_strerror(status));
        lc->st = LC_CLOSING;
        l->conn = NULL;
        maybe_free_conn(lc);
        if (l->wanted && !l->d->closing) {
            uv_timer_start(&l->retry, on_retry, l->delay_ms, 0);
            l->delay_ms = l->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : l->delay_ms * 2;
        }
        return;
    }
    lc->st = LC_WAIT_DOCK;
    snprintf(l->p->last_health_error, sizeof l->p->last_health_error, "connected, waiting for Dock");
    int rc = uv_read_start((uv_stream_t *)&lc->pipe, on_alloc, on_read);
    if (rc < 0)
        link_fail(lc, 1011, uv_strerror(rc), false, true);
}

static void try_connect(ms_dlink *l)
{
    if (!l->wanted || l->conn || l->d->closing)
        return;
    assert(l->p->ship->kind == MS_BAY);
    link_conn *lc = calloc(1, sizeof *lc);
    if (!lc || uv_pipe_init(l->d->loop, &lc->pipe, 0) != 0) {
        free(lc);
        uv_timer_start(&l->retry, on_retry, RETRY_MAX_MS, 0);
        return;
    }
    lc->l = l;
    l->conns++;
    lc->pipe.data = lc;
    lc->creq.data = lc;
    lc->st = LC_CONNECTING;
    ms_dock_decoder_init(&lc->dec, 0);
    lc->dec.v3 = l->p->ship->http_bay;
    l->conn = lc;
    uv_pipe_connect(&lc->creq, &lc->pipe, l->p->socket_path, on_connect);
}

/* The link of bay p, made on first use; NULL on OOM. */
static ms_dlink *link_of(ms_docks *d, ms_proc *p)
{
    assert(p->slot < d->n && p->ship->kind == MS_BAY);
    if (d->links[p->slot])
        return d->links[p->slot];
    ms_dlink *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->d = d;
    l->bay = p->slot;
    l->p = p;
    uv_timer_init(d->loop, &l->retry);
    l->retry.data = l;
    ms_hub_enable_bay(d->hub, p->slot);
    d->links[p->slot] = l;
    return l;
}

bool ms_docks_add(ms_docks *d, ms_proc *const *procs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (procs[i]->ship->kind == MS_BAY && !link_of(d, procs[i]))
            return false;
        /* a docking upstream: no link here (it is ready at launch), but the
         * workers' links to it count in its hub bay */
        if (procs[i]->ship->kind == MS_UPSTREAM && ms_ship_speaks_v3(procs[i]->ship))
            ms_hub_enable_bay(d->hub, procs[i]->slot);
    }
    return true;
}

static void on_bay_started(void *arg, ms_proc *p)
{
    ms_docks *d = arg;
    ms_dlink *l = link_of(d, p);
    if (!l) {
        ms_fleet_bay_lost(d->fleet, p->slot, "out of memory for its docking link");
        return;
    }
    l->wanted = true;
    l->delay_ms = RETRY_FIRST_MS;
    if (l->conn) /* an old link still closing */
        link_fail(l->conn, 1012, "the bay restarted", false, false);
    snprintf(p->last_health_error, sizeof p->last_health_error, "its socket does not exist yet");
    try_connect(l);
}

static void on_bay_exited(void *arg, ms_proc *p)
{
    ms_docks *d = arg;
    assert(p->slot < d->n && p->ship->kind == MS_BAY);
    ms_dlink *l = d->links[p->slot];
    if (!l)
        return;
    l->wanted = false;
    uv_timer_stop(&l->retry);
    if (l->conn)
        link_fail(l->conn, 1012, "the bay exited", false, false);
}

/* Clients held for a bay that a reload removed while it was away: it will
 * not dock again, so they are closed now (1001, going away). */
static void release_held(ms_docks *d, size_t slot)
{
    unsigned features = 0;
    if (ms_hub_bay_gen(d->hub, slot, &features) != 0 || !(features & MS_DOCK_FEAT_RESUME))
        return;
    ms_hub_bay_publish(d->hub, slot, 0, 0);
    for (unsigned w = 0; w < d->hub->nworkers; w++) {
        ms_hub_msg *m = ms_hub_msg_new(MS_HUB_LINK_DOWN, (uint32_t)slot, UINT32_MAX, 0, 1001, NULL, 0);
        if (m)
            ms_hub_to_worker(d->hub, w, m);
    }
}

/* The fleet asks before it frees a retired bay: its link must be done, and
 * the clients held for it gone (they count in its hub bay, which the
 * slot's next owner starts from zero). */
static bool on_bay_held(void *arg, const ms_proc *p)
{
    ms_docks *d = arg;
    assert(p->slot < d->n);
    const ms_dlink *l = d->links[p->slot];
    if (!l || l->p != p)
        return false;
    if (l->conn || l->conns > 0 || uv_is_active((const uv_handle_t *)&l->retry))
        return true;
    release_held(d, p->slot);
    return __atomic_load_n(&d->hub->bays[p->slot].st.held, __ATOMIC_RELAXED) != 0;
}

static void on_link_closed(uv_handle_t *h)
{
    free(h->data);
}

/* The slot's process was freed: its link goes, the hub's bay is reset for
 * the slot's next owner. */
static void on_slot_freed(void *arg, size_t slot)
{
    ms_docks *d = arg;
    assert(slot < d->n);
    ms_dlink *l = d->links[slot];
    if (l) {
        assert(!l->conn && l->conns == 0);
        d->links[slot] = NULL;
        l->p = NULL;
        uv_close((uv_handle_t *)&l->retry, on_link_closed); /* l is the timer's data */
    }
    /* clients held for the bay that is gone: they go too, before a new
     * owner of the slot can dock (each inbox keeps its order) */
    for (unsigned w = 0; w < d->hub->nworkers; w++) {
        ms_hub_msg *m = ms_hub_msg_new(MS_HUB_LINK_DOWN, (uint32_t)slot, UINT32_MAX, 0, 1001, NULL, 0);
        if (m)
            ms_hub_to_worker(d->hub, w, m);
    }
    ms_hub_reset_bay(d->hub, slot);
    /* an HTTP bay's capacity is its own: the slot's next owner docks its own */
    __atomic_store_n(&d->hub->bays[slot].http.links_cap, 0, __ATOMIC_RELEASE);
}

static void on_wake(uv_async_t *a)
{
    ms_docks *d = a->data;
    for (ms_hub_msg *m = ms_hub_take_control(d->hub), *next; m; m = next) {
        next = m->next;
        if (m->kind == MS_HUB_LINK_LOST)
            on_lost(d, m);
        free(m);
    }
    bool room_checked = false, room = false;
    for (size_t i = 0; i < d->n; i++) {
        link_conn *lc = d->links[i] ? d->links[i]->conn : NULL;
        if (!lc || lc->st != LC_DOCKED)
            continue;
        if (lc->read_paused) {
            if (!room_checked) {
                room = ms_hub_inboxes_have_room(d->hub);
                room_checked = true;
            }
            if (room && uv_read_start((uv_stream_t *)&lc->pipe, on_alloc, on_read) == 0)
                lc->read_paused = false;
        }
        pump(lc);
    }
}

/* ---------------------------------------------------------------- public */

ms_docks *ms_docks_new(uv_loop_t *loop, ms_fleet *fleet, ms_hub *hub, ms_log *log)
{
    ms_docks *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->loop = loop;
    d->fleet = fleet;
    d->hub = hub;
    d->log = log;
    d->n = MS_FLEET_MAX_SLOTS;
    assert(hub->nbays == d->n); /* links and hub bays are both indexed by slot */
    d->links = calloc(d->n, sizeof *d->links);
    if (!d->links || uv_async_init(loop, &d->wake, on_wake) != 0) {
        free(d->links);
        free(d);
        return NULL;
    }
    d->wake.data = d;
    uv_timer_init(loop, &d->flush_timer);
    d->flush_timer.data = d;
    if (!ms_docks_add(d, fleet->procs, fleet->n)) {
        ms_docks_close(d);
        return NULL; /* the loop closes its handles; the links are lost (out of memory) */
    }
    hub->control_wake = &d->wake;
    fleet->bay_started = on_bay_started;
    fleet->bay_exited = on_bay_exited;
    fleet->bay_held = on_bay_held;
    fleet->slot_freed = on_slot_freed;
    fleet->bay_arg = d;
    return d;
}

/* The pending flush is over once no link has bytes in flight. */
static void check_flushed(ms_docks *d)
{
    if (!d->flushed)
        return;
    for (size_t i = 0; i < d->n; i++) {
        link_conn *lc = d->links[i] ? d->links[i]->conn : NULL;
        if (lc && lc->st == LC_DOCKED && lc->inflight > 0)
            return;
    }
    void (*cb)(void *) = d->flushed;
    d->flushed = NULL;
    uv_timer_stop(&d->flush_timer);
    cb(d->flushed_arg);
}

static void on_flush_timeout(uv_timer_t *t)
{
    ms_docks *d = t->data;
    if (!d->flushed)
        return;
    void (*cb)(void *) = d->flushed;
    d->flushed = NULL;
    cb(d->flushed_arg); /* a bay that does not read its socket does not hold the shutdown up */
}

void ms_docks_flush(ms_docks *d, void (*done)(void *), void *arg)
{
    on_wake(&d->wake);
    d->flushed = done;
    d->flushed_arg = arg;
    uv_timer_start(&d->flush_timer, on_flush_timeout, 1000, 0);
    check_flushed(d);
}

static void on_docks_handle_closed(uv_handle_t *h)
{
    (void)h;
}

void ms_docks_close(ms_docks *d)
{
    if (!d || d->closing)
        return;
    d->closing = true;
    d->hub->control_wake = NULL;
    d->fleet->bay_started = NULL;
    d->fleet->bay_exited = NULL;
    d->fleet->bay_held = NULL;
    d->fleet->slot_freed = NULL;
    for (size_t i = 0; i < d->n; i++) {
        ms_dlink *l = d->links[i];
        if (!l)
            continue;
        l->wanted = false;
        if (l->conn)
            link_fail(l->conn, 1001, "Mothership is stopping", false, false);
        uv_close((uv_handle_t *)&l->retry, on_docks_handle_closed);
    }
    uv_close((uv_handle_t *)&d->wake, on_docks_handle_closed);
    uv_close((uv_handle_t *)&d->flush_timer, on_docks_handle_closed);
    d->flushed = NULL;
}

void ms_docks_free(ms_docks *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->links && i < d->n; i++)
        free(d->links[i]);
    free(d->links);
    free(d);
}

void ms_docks_render_metrics(const ms_docks *d, ms_buf *out)
{
    ms_prom p;
    ms_prom_init(&p, out);
    const ms_hub *h = d->hub;
#define EACH_BAY(...)                                                                   \
    for (size_t i = 0; i < d->n; i++) {                                                 \
        if (!d->links[i] || d->links[i]->p->retired)                                    \
            continue;                                                                   \
        const ms_hub_bay_stats *st = &h->bays[i].st;                                    \
        ms_prom_label l[] = { { "bay", d->links[i]->p->ship->name } };                  \
        (void)st;                                                                       \
        __VA_ARGS__;                                                                    \
    }
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
    /* an HTTP bay's link here is only its handshake: it is docked while ready */
    EACH_BAY(ms_prom_gauge_i64(&p, "mothership_bay_docked", "1 when the bay is docked and takes clients.", l, 1,
                               d->links[i]->p->ship->http_bay
                                   ? __atomic_load_n(&d->links[i]->p->ready_flag, __ATOMIC_ACQUIRE) != 0
                                   : ms_hub_bay_gen(h, i, NULL) != 0))
    EACH_BAY(ms_prom_gauge_i64(&p, "mothership_bay_clients", "WebSocket clients connected to the bay.", l, 1,
                               (int64_t)LD(st->clients)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_boardings_total", "Clients boarded (handshakes completed).", l,
                                 1, LD(st->boardings)))
    for (int dir = 0; dir < 2; dir++)
        EACH_BAY(ms_prom_label ld[] = { l[0], { "direction", dir ? "out" : "in" } };
                 ms_prom_counter_u64(&p, "mothership_bay_messages_total",
                                     "Whole messages: in = clients to the bay, out = the bay to clients.", ld, 2,
                                     dir ? LD(st->msgs_out) : LD(st->msgs_in)))
    for (int dir = 0; dir < 2; dir++)
        EACH_BAY(ms_prom_label ld[] = { l[0], { "direction", dir ? "out" : "in" } };
                 ms_prom_counter_u64(&p, "mothership_bay_bytes_total", "Message bytes (without framing).", ld, 2,
                                     dir ? LD(st->bytes_out) : LD(st->bytes_in)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_dropped_cargo_total",
                                 "Cargo from the bay for a client that is gone (or never was).", l, 1,
                                 LD(st->dropped)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_protocol_errors_total",
                                 "Docking links failed on a frame that breaks the protocol.", l, 1,
                                 LD(st->protocol_errors)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_redocks_total", "Docks after the first one.", l, 1,
                                 LD(st->docks) > 0 ? LD(st->docks) - 1 : 0))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_rejected_total",
                                 "Upgrade requests answered 503 (bay not docked, or its queue full).", l, 1,
                                 LD(st->rejected)))
    EACH_BAY(ms_prom_gauge_i64(&p, "mothership_bay_held_clients",
                               "Clients held or waiting while the bay is away (the resume feature).", l, 1,
                               (int64_t)LD(st->held)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_resumed_total",
                                 "Held clients boarded again on the bay's next link.", l, 1, LD(st->resumed)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_held_expired_total",
                                 "Held or waiting clients closed with 1012 at handover_timeout.", l, 1,
                                 LD(st->held_expired)))
    EACH_BAY(ms_prom_counter_u64(&p, "mothership_bay_slow_clients_closed_total",
                                 "Clients closed with 1008 because their send queue was full.", l, 1,
                                 LD(st->closed_slow)))
#undef EACH_BAY
#undef LD
}
