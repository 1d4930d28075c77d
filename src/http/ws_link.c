/* ws_link.c: the reading side of a WebSocket bay's docking link, on the
 * bay's home worker (ms_hub_home_of: slot % workers).
 *
 * link.c connects and docks on the control loop, then hands the socket
 * (a dup) to the home worker with MS_HUB_LINK_ATTACH. Here the bay's
 * frames are decoded: a message for a client of this worker is delivered
 * at once (no thread hop, no wake-up), one for another worker goes to its
 * inbox. Frames to the bay are written by each worker itself (hub.c,
 * ms_hub_to_link), so with one worker a message never changes thread.
 * The link's life stays on the control loop: a failure seen here is
 * reported with MS_HUB_LINK_LOST (the message the control loop allocated
 * for it) and the control loop does the rest (bay away or down, clients
 * told, the fleet); its MS_HUB_LINK_DOWN/HOLD closes the reading here. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dock/protocol.h"
#include "http/http_impl.h"

#define WSLINK_READ_BUF 65536

struct ms_wslink {
    uv_pipe_t pipe;
    ms_worker *w;
    ms_wslink *next;
    uint32_t bay, gen;
    unsigned features;
    ms_dock_decoder dec;
    ms_hub_msg *lost;                  /* the report of its failure (NULL once sent) */
    bool paused;                       /* another worker's inbox is over its budget */
    bool closing;
    char rbuf[WSLINK_READ_BUF];
};

static void on_closed(uv_handle_t *h)
{
    ms_wslink *wl = h->data;
    ms_dock_decoder_free(&wl->dec);
    free(wl->lost);
    free(wl);
}

static void wslink_close(ms_wslink *wl)
{
    if (wl->closing)
        return;
    wl->closing = true;
    ms_worker *w = wl->w;
    for (ms_wslink **pp = &w->ws_links; *pp; pp = &(*pp)->next)
        if (*pp == wl) {
            *pp = wl->next;
            break;
        }
    uv_read_stop((uv_stream_t *)&wl->pipe);
    uv_close((uv_handle_t *)&wl->pipe, on_closed);
}

/* The link failed here: the control loop is told (once), the reading ends. */
static void wslink_fail(ms_wslink *wl, uint16_t code, const char *why, bool protocol_error)
{
    ms_hub_msg *m = wl->lost;
    if (m) {
        wl->lost = NULL;
        size_t n = strlen(why);
        if (n > MS_HUB_LOST_WHY)
            n = MS_HUB_LOST_WHY;
        memcpy(m->data, why, n);
        m->len = (uint32_t)n;
        m->code = code;
        m->conn_id = protocol_error ? 1 : 0;
        ms_hub_to_control(wl->w->hub, m);
    }
    wslink_close(wl);
}

/* Decode and pass on; false: the link failed. */
static bool take_bytes(ms_wslink *wl, const uint8_t *p, size_t left)
{
    ms_worker *w = wl->w;
    ms_hub *hub = w->hub;
    bool over = false;
    while (left > 0) {
        size_t used = 0;
        ms_dock_frame fr;
        int r = ms_dock_decoder_feed(&wl->dec, p, left, &used, &fr);
        p += used;
        left -= used;
        if (r < 0) {
            char why[260];
            snprintf(why, sizeof why, "protocol error: %s", ms_dock_decoder_message(&wl->dec));
            wslink_fail(wl, 1011, why, true);
            return false;
        }
        if (r == 0)
            break;
        uint32_t conn_id;
        const uint8_t *msg;
        size_t mlen;
        int cargo = ms_hub_bay_cargo(hub, wl->bay, fr.type, fr.payload, fr.len, &conn_id, &msg, &mlen);
        if (cargo > 0 && ms_hub_worker_of(hub, conn_id) == w->id) {
            /* for a client of this worker: no message made, no copy (wslay copies it once) */
            ms_ws_deliver_to(w, fr.type == MS_DOCK_CARGO ? MS_HUB_TO_CLIENT_TEXT : MS_HUB_TO_CLIENT_BINARY, wl->bay,
                             wl->gen, conn_id, 0, msg, mlen);
            continue;
        }
        char why[260];
        ms_hub_msg *m = NULL;
        if (cargo > 0) {
            m = ms_hub_msg_new(fr.type == MS_DOCK_CARGO ? MS_HUB_TO_CLIENT_TEXT : MS_HUB_TO_CLIENT_BINARY, wl->bay,
                               wl->gen, conn_id, 0, msg, mlen);
            if (!m) {
                wslink_fail(wl, 1011, "out of memory", false);
                return false;
            }
            if (!ms_hub_to_worker(hub, ms_hub_worker_of(hub, conn_id), m))
                over = true;
            continue;
        }
        int rc = ms_hub_bay_frame(hub, wl->bay, wl->gen, fr.type, fr.payload, fr.len, &m, why, sizeof why);
        if (rc != 0) {
            wslink_fail(wl, 1011, rc == -2 ? "out of memory" : why, rc == -1);
            return false;
        }
        unsigned owner = ms_hub_worker_of(hub, m->conn_id);
        if (owner == w->id) {
            ms_ws_deliver(w, m);
            free(m);
        } else if (!ms_hub_to_worker(hub, owner, m)) {
            over = true;
        }
    }
    ms_ws_flush_dirty(w); /* one write per client for all its messages of this read */
    if (over && !wl->paused && !wl->closing) {
        wl->paused = true;
        uv_read_stop((uv_stream_t *)&wl->pipe);
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    ms_wslink *wl = h->data;
    (void)suggested;
    *b = uv_buf_init(wl->rbuf, sizeof wl->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ms_wslink *wl = s->data;
    if (n == 0 || wl->closing)
        return;
    if (n < 0) {
        char why[200];
        if (n == UV_EOF && ms_dock_decoder_finish(&wl->dec) != 0)
            /* a bay killed while it wrote a frame: one that resumes keeps
             * its clients, as after any other crash */
            wslink_fail(wl, wl->features & MS_DOCK_FEAT_RESUME ? 1012 : 1011, "the bay closed the link inside a frame",
                        true);
        else if (n == UV_EOF || n == UV_ECONNRESET) /* a bay that dies with frames unread resets the link */
            wslink_fail(wl, 1012, "the bay closed the docking link", false);
        else {
            snprintf(why, sizeof why, "reading the docking link failed: %s", uv_strerror((int)n));
            wslink_fail(wl, 1011, why, false);
        }
        return;
    }
    take_bytes(wl, (const uint8_t *)buf->base, (size_t)n);
}

void ms_wslink_attach(ms_worker *w, ms_hub_msg *m)
{
    ms_hub_attach a;
    assert(m->kind == MS_HUB_LINK_ATTACH && m->len >= sizeof a);
    memcpy(&a, m->data, sizeof a);
    ms_wslink_gone(w, m->bay, m->gen); /* an earlier link of the bay still read here */
    ms_wslink *wl = calloc(1, sizeof *wl);
    if (!wl || uv_pipe_init(&w->loop, &wl->pipe, 0) != 0) {
        free(wl);
        close(a.fd);
        a.lost->code = 1011;
        a.lost->len = (uint32_t)snprintf((char *)a.lost->data, MS_HUB_LOST_WHY, "out of memory for the link's reader");
        ms_hub_to_control(w->hub, a.lost);
        return;
    }
    wl->w = w;
    wl->pipe.data = wl;
    wl->bay = m->bay;
    wl->gen = m->gen;
    wl->features = m->code;
    wl->lost = a.lost;
    ms_dock_decoder_init(&wl->dec, 0);
    wl->dec.accept_binary = (wl->features & MS_DOCK_FEAT_BINARY) != 0;
    wl->next = w->ws_links;
    w->ws_links = wl;
    int rc = uv_pipe_open(&wl->pipe, a.fd);
    if (rc < 0) {
        close(a.fd);
        char why[160];
        snprintf(why, sizeof why, "the worker could not take the link: %s", uv_strerror(rc));
        wslink_fail(wl, 1011, why, false);
        return;
    }
    if (!take_bytes(wl, m->data + sizeof a, m->len - sizeof a) || wl->closing)
        return;
    if (!wl->paused && (rc = uv_read_start((uv_stream_t *)&wl->pipe, on_alloc, on_read)) < 0)
        wslink_fail(wl, 1011, uv_strerror(rc), false);
}

void ms_wslink_gone(ms_worker *w, uint32_t bay, uint32_t gen)
{
    for (ms_wslink *wl = w->ws_links, *next; wl; wl = next) {
        next = wl->next;
        if (wl->bay == bay && wl->gen <= gen)
            wslink_close(wl);
    }
}

void ms_wslink_resume(ms_worker *w)
{
    bool checked = false, room = false;
    for (ms_wslink *wl = w->ws_links; wl; wl = wl->next) {
        if (!wl->paused)
            continue;
        if (!checked) {
            room = ms_hub_inboxes_have_room(w->hub);
            checked = true;
        }
        if (room && uv_read_start((uv_stream_t *)&wl->pipe, on_alloc, on_read) == 0)
            wl->paused = false;
    }
}

void ms_wslink_worker_close(ms_worker *w)
{
    while (w->ws_links)
        wslink_close(w->ws_links);
}
