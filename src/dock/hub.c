/* hub.c: the bounded queues and shared bay state between data-plane
 * workers and docking links (see hub.h). */
#include "dock/hub.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dock/protocol.h"

#define MSG_OVERHEAD (sizeof(ms_hub_msg))

static bool queue_init(ms_hub_queue *q, size_t cap)
{
    q->head = q->tail = NULL;
    q->bytes = 0;
    q->cap = cap;
    return uv_mutex_init(&q->mu) == 0;
}

/* Free messages never taken by their worker: an MS_HUB_LINK_ATTACH carries
 * the link's socket (a dup) and its lost message, the worker's to close and
 * free: left open, the bay would not see its link end. */
static void discard_list(ms_hub_msg *m)
{
    while (m) {
        ms_hub_msg *next = m->next;
        if (m->kind == MS_HUB_LINK_ATTACH && m->len >= sizeof(ms_hub_attach)) {
            ms_hub_attach a;
            memcpy(&a, m->data, sizeof a);
            if (a.fd >= 0)
                close(a.fd);
            free(a.lost);
        }
        free(m);
        m = next;
    }
}

static void queue_destroy(ms_hub_queue *q)
{
    discard_list(q->head);
    q->head = q->tail = NULL;
    uv_mutex_destroy(&q->mu);
}

/* Caller holds the lock. */
static void queue_push_locked(ms_hub_queue *q, ms_hub_msg *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->bytes += m->len + MSG_OVERHEAD;
}

ms_hub *ms_hub_new(size_t nships, const bool *is_bay, unsigned nworkers, size_t queue_bytes)
{
    if (nworkers == 0)
        return NULL;
    if (queue_bytes == 0)
        queue_bytes = MS_HUB_QUEUE_BYTES;
    ms_hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nbays = nships;
    h->nworkers = nworkers;
    h->bays = calloc(nships ? nships : 1, sizeof *h->bays);
    h->workers = calloc(nworkers, sizeof *h->workers);
    if (!h->bays || !h->workers) {
        free(h->bays);
        free(h->workers);
        free(h);
        return NULL;
    }
    size_t bays_done = 0, workers_done = 0;
    for (; bays_done < nships; bays_done++) {
        h->bays[bays_done].is_bay = is_bay ? is_bay[bays_done] : false;
        h->bays[bays_done].direct_fd = -1;
        if (!queue_init(&h->bays[bays_done].up, queue_bytes))
            goto fail;
    }
    for (; workers_done < nworkers; workers_done++)
        if (!queue_init(&h->workers[workers_done].inbox, queue_bytes))
            goto fail;
    if (!queue_init(&h->control, SIZE_MAX)) /* bounded by the links: one message each */
        goto fail;
    return h;
fail:
    for (size_t i = 0; i < bays_done; i++)
        queue_destroy(&h->bays[i].up);
    for (size_t i = 0; i < workers_done; i++)
        queue_destroy(&h->workers[i].inbox);
    free(h->bays);
    free(h->workers);
    free(h);
    return NULL;
}

void ms_hub_free(ms_hub *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nbays; i++) {
        queue_destroy(&h->bays[i].up);
        if (h->bays[i].direct_fd >= 0)
            close(h->bays[i].direct_fd);
    }
    for (unsigned i = 0; i < h->nworkers; i++)
        queue_destroy(&h->workers[i].inbox);
    queue_destroy(&h->control);
    free(h->bays);
    free(h->workers);
    free(h);
}

void ms_hub_enable_bay(ms_hub *h, size_t slot)
{
    assert(slot < h->nbays);
    __atomic_store_n(&h->bays[slot].is_bay, true, __ATOMIC_RELEASE);
}

void ms_hub_reset_bay(ms_hub *h, size_t slot)
{
    assert(slot < h->nbays);
    ms_hub_bay *b = &h->bays[slot];
    ms_hub_set_direct(h, slot, -1, 0);
    ms_hub_drop_up(h, slot);
    __atomic_store_n(&b->state, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b->away_until, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&b->is_bay, false, __ATOMIC_RELEASE);
    /* a worker still draining the old owner's messages may count into
     * these (atomic adds): clear them with atomic stores too. Not the held
     * gauge: like waiting, each held client gives its count back itself,
     * and one may still be taking a wait slot or a hold while the slot is
     * freed (the link down sent before this closes it); zeroing the gauge
     * under it would make its give-back wrap below zero. */
    _Static_assert(sizeof b->st % sizeof(uint64_t) == 0, "ms_hub_bay_stats holds only uint64_t counters");
    uint64_t *ctr = (uint64_t *)&b->st;
    const uint64_t *held = &b->st.held;
    for (size_t i = 0; i < sizeof b->st / sizeof *ctr; i++)
        if (&ctr[i] != held)
            __atomic_store_n(&ctr[i], 0, __ATOMIC_RELAXED);
}

ms_hub_msg *ms_hub_msg_new(ms_hub_kind kind, uint32_t bay, uint32_t gen, uint32_t conn_id, uint16_t code,
                           const void *data, size_t len)
{
    if (len > UINT32_MAX - MSG_OVERHEAD)
        return NULL;
    ms_hub_msg *m = malloc(MSG_OVERHEAD + len);
    if (!m)
        return NULL;
    m->next = NULL;
    m->bay = bay;
    m->gen = gen;
    m->conn_id = conn_id;
    m->len = (uint32_t)len;
    m->code = code;
    m->kind = (uint8_t)kind;
    if (len && data) /* data NULL: the caller fills it */
        memcpy(m->data, data, len);
    return m;
}

void ms_hub_msg_free_list(ms_hub_msg *m)
{
    while (m) {
        ms_hub_msg *next = m->next;
        free(m);
        m = next;
    }
}

ms_hub_msg *ms_hub_take_boarding(ms_hub_msg **list, ms_hub_msg **tail)
{
    ms_hub_msg *prev = NULL;
    for (ms_hub_msg *m = *list; m; prev = m, m = m->next) {
        if (m->kind != MS_HUB_BOARDING)
            continue;
        if (prev)
            prev->next = m->next;
        else
            *list = m->next;
        if (*tail == m)
            *tail = prev;
        m->next = NULL;
        return m;
    }
    return NULL;
}

uint32_t ms_hub_bay_gen(const ms_hub *h, size_t bay, unsigned *features)
{
    uint64_t s = __atomic_load_n(&h->bays[bay].state, __ATOMIC_ACQUIRE);
    if (features)
        *features = (unsigned)(s & 0xff);
    return (uint32_t)(s >> 8);
}

void ms_hub_bay_publish(ms_hub *h, size_t bay, uint32_t gen, unsigned features)
{
    uint64_t s = ((uint64_t)gen << 8) | (features & 0xff);
    __atomic_store_n(&h->bays[bay].state, s, __ATOMIC_RELEASE);
}

void ms_hub_bay_away(ms_hub *h, size_t bay, unsigned resume_bit, uint64_t deadline_ms)
{
    assert(bay < h->nbays && resume_bit != 0 && (resume_bit & 0xff) == resume_bit);
    /* the deadline first: a worker that sees the away state reads it after */
    __atomic_store_n(&h->bays[bay].away_until, deadline_ms, __ATOMIC_RELEASE);
    ms_hub_bay_publish(h, bay, 0, resume_bit);
}

uint64_t ms_hub_wait_take(ms_hub *h, size_t bay, unsigned resume_bit)
{
    ms_hub_bay *b = &h->bays[bay];
    uint64_t s = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
    if ((s >> 8) != 0 || !(s & resume_bit))
        return 0;
    uint64_t until = __atomic_load_n(&b->away_until, __ATOMIC_ACQUIRE);
    if (until <= ms_hub_now_ms())
        return 0;
    uint32_t n = __atomic_load_n(&b->waiting, __ATOMIC_RELAXED);
    do {
        if (n >= MS_HUB_WAIT_MAX)
            return 0;
    } while (!__atomic_compare_exchange_n(&b->waiting, &n, n + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return until;
}

void ms_hub_wait_done(ms_hub *h, size_t bay)
{
    uint32_t was = __atomic_fetch_sub(&h->bays[bay].waiting, 1, __ATOMIC_ACQ_REL);
    assert(was > 0);
    (void)was;
}

static void wake_control(ms_hub *h)
{
    if (h->control_wake)
        uv_async_send(h->control_wake);
}

/* ---------------------------------------------------------------- worker side */

/* Caller holds up's lock, the queue is empty and the link idle: write m
 * to the bay's socket. true: written whole (m freed); false: m is still
 * the caller's, with what the socket took cut off its front (an error
 * leaves it whole: the link's own write meets the error and fails it). */
/* A Cargo the worker sent itself is counted here, whole, as the link
 * counts what it writes. */
static void count_direct(ms_hub_bay *b, const ms_hub_msg *m)
{
    if (m->kind == MS_HUB_CARGO) {
        ms_hub_count(&b->st.msgs_in, 1);
        ms_hub_count(&b->st.bytes_in, m->len - MS_DOCK_CARGO_HEADER_LEN);
    }
}

static bool write_direct_locked(ms_hub_bay *b, ms_hub_msg **mp)
{
    ms_hub_msg *m = *mp;
    ssize_t n;
    do
        n = send(b->direct_fd, m->data, m->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return false;
    count_direct(b, m);
    if ((size_t)n == m->len) {
        free(m);
        *mp = NULL;
        return true;
    }
    /* the rest of the frame goes first through the link (counted already:
     * not Cargo any more for its count) */
    size_t rest = m->len - (size_t)n;
    memmove(m->data, m->data + n, rest);
    m->len = (uint32_t)rest;
    m->kind = MS_HUB_BOARDING;
    return false;
}

bool ms_hub_to_link(ms_hub *h, ms_hub_msg *m, bool force)
{
    return ms_hub_to_link_ex(h, m, force, NULL);
}

bool ms_hub_to_link_ex(ms_hub *h, ms_hub_msg *m, bool force, bool *direct)
{
    ms_hub_bay *b = &h->bays[m->bay];
    ms_hub_queue *q = &b->up;
    if (direct)
        *direct = false;
    uv_mutex_lock(&q->mu);
    if (q->head == NULL && b->direct_ok && b->direct_fd >= 0 && m->gen == b->direct_gen) {
        bool whole = write_direct_locked(b, &m);
        if (whole) {
            uv_mutex_unlock(&q->mu);
            if (direct)
                *direct = true;
            return true;
        }
        b->direct_ok = false; /* the link writes the rest (or meets the error) */
        queue_push_locked(q, m);
        uv_mutex_unlock(&q->mu);
        wake_control(h);
        return true;
    }
    /* a message that alone exceeds the budget still goes when the queue is empty */
    bool room = force || q->head == NULL || q->bytes + m->len + MSG_OVERHEAD <= q->cap;
    if (room)
        queue_push_locked(q, m);
    else
        __atomic_store_n(&b->resume_wanted, 1, __ATOMIC_RELEASE);
    uv_mutex_unlock(&q->mu);
    wake_control(h);
    return room;
}

bool ms_hub_to_link_chain(ms_hub *h, ms_hub_msg *m)
{
    ms_hub_bay *b = &h->bays[m->bay];
    ms_hub_queue *q = &b->up;
    uv_mutex_lock(&q->mu);
    while (m && q->head == NULL && b->direct_ok && b->direct_fd >= 0 && m->gen == b->direct_gen) {
        struct iovec iov[MS_HUB_CHAIN_IOV];
        size_t n = 0, total = 0;
        for (ms_hub_msg *x = m; x && n < MS_HUB_CHAIN_IOV; x = x->next, n++) {
            iov[n] = (struct iovec){ .iov_base = x->data, .iov_len = x->len };
            total += x->len;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
        ssize_t sent;
        do
            sent = sendmsg(b->direct_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent <= 0) {
            b->direct_ok = false; /* the link writes them (or meets the error) */
            break;
        }
        size_t left = (size_t)sent;
        while (m && left >= m->len) {
            ms_hub_msg *next = m->next;
            count_direct(b, m);
            left -= m->len;
            free(m);
            m = next;
        }
        if (left > 0) { /* m went in part: its rest first through the link, as in write_direct_locked */
            assert(m != NULL); /* sent <= total, the lengths of the messages from m on */
            count_direct(b, m);
            memmove(m->data, m->data + left, m->len - left);
            m->len -= (uint32_t)left;
            m->kind = MS_HUB_BOARDING;
        }
        if ((size_t)sent < total) {
            b->direct_ok = false;
            break;
        }
    }
    bool all = m == NULL;
    while (m) { /* in order, whatever the budget: their clients gave them up already */
        ms_hub_msg *next = m->next;
        queue_push_locked(q, m);
        m = next;
    }
    uv_mutex_unlock(&q->mu);
    if (!all)
        wake_control(h);
    return all;
}

ms_hub_msg *ms_hub_take_inbox(ms_hub *h, unsigned worker)
{
    ms_hub_queue *q = &h->workers[worker].inbox;
    uv_mutex_lock(&q->mu);
    ms_hub_msg *list = q->head;
    q->head = q->tail = NULL;
    q->bytes = 0;
    uv_mutex_unlock(&q->mu);
    if (__atomic_exchange_n(&h->links_paused, 0, __ATOMIC_ACQ_REL)) {
        wake_control(h);
        ms_hub_wake_workers(h, worker); /* a home worker's link may be the one paused */
    }
    return list;
}

bool ms_hub_take_resume(ms_hub *h, unsigned worker)
{
    return __atomic_exchange_n(&h->workers[worker].resume, 0, __ATOMIC_ACQ_REL) != 0;
}

void ms_hub_worker_attach(ms_hub *h, unsigned worker, uv_async_t *wake)
{
    ms_hub_queue *q = &h->workers[worker].inbox;
    uv_mutex_lock(&q->mu);
    h->workers[worker].wake = wake;
    uv_mutex_unlock(&q->mu);
}

void ms_hub_worker_detach(ms_hub *h, unsigned worker)
{
    ms_hub_queue *q = &h->workers[worker].inbox;
    uv_mutex_lock(&q->mu);
    h->workers[worker].wake = NULL;
    ms_hub_msg *list = q->head;
    q->head = q->tail = NULL;
    q->bytes = 0;
    uv_mutex_unlock(&q->mu);
    discard_list(list); /* an attach not taken: its socket is closed */
    if (__atomic_exchange_n(&h->links_paused, 0, __ATOMIC_ACQ_REL))
        wake_control(h);
}

void ms_hub_wake_workers(ms_hub *h, unsigned except)
{
    for (unsigned i = 0; i < h->nworkers; i++) {
        ms_hub_worker *hw = &h->workers[i];
        if (i == except)
            continue;
        uv_mutex_lock(&hw->inbox.mu);
        if (hw->wake)
            uv_async_send(hw->wake); /* under the lock: the worker cannot detach and close it meanwhile */
        uv_mutex_unlock(&hw->inbox.mu);
    }
}

/* ---------------------------------------------------------------- link side */

bool ms_hub_to_worker(ms_hub *h, unsigned worker, ms_hub_msg *m)
{
    ms_hub_worker *hw = &h->workers[worker];
    ms_hub_queue *q = &hw->inbox;
    uv_mutex_lock(&q->mu);
    if (!hw->wake) { /* the worker has stopped */
        uv_mutex_unlock(&q->mu);
        m->next = NULL;
        discard_list(m); /* what an attach carries is the worker's to close */
        return true;
    }
    queue_push_locked(q, m);
    bool under = q->bytes <= q->cap;
    if (!under) /* set before the worker can take the inbox, so its take wakes the links */
        __atomic_store_n(&h->links_paused, 1, __ATOMIC_RELEASE);
    uv_async_send(hw->wake); /* under the lock: the worker cannot detach and close it meanwhile */
    uv_mutex_unlock(&q->mu);
    return under;
}

bool ms_hub_hand_to_worker(ms_hub *h, unsigned worker, ms_hub_msg *m)
{
    ms_hub_worker *hw = &h->workers[worker];
    ms_hub_queue *q = &hw->inbox;
    uv_mutex_lock(&q->mu);
    if (!hw->wake) {
        uv_mutex_unlock(&q->mu);
        return false;
    }
    queue_push_locked(q, m);
    uv_async_send(hw->wake);
    uv_mutex_unlock(&q->mu);
    return true;
}

bool ms_hub_inboxes_have_room(ms_hub *h)
{
    bool room = true;
    for (unsigned i = 0; i < h->nworkers && room; i++) {
        ms_hub_queue *q = &h->workers[i].inbox;
        uv_mutex_lock(&q->mu);
        room = q->bytes <= q->cap / 2;
        if (!room)
            __atomic_store_n(&h->links_paused, 1, __ATOMIC_RELEASE);
        uv_mutex_unlock(&q->mu);
    }
    return room;
}

static void wake_resumers(ms_hub *h, ms_hub_bay *b)
{
    if (!__atomic_exchange_n(&b->resume_wanted, 0, __ATOMIC_ACQ_REL))
        return;
    for (unsigned i = 0; i < h->nworkers; i++) {
        ms_hub_worker *hw = &h->workers[i];
        __atomic_store_n(&hw->resume, 1, __ATOMIC_RELEASE);
        uv_mutex_lock(&hw->inbox.mu);
        if (hw->wake)
            uv_async_send(hw->wake);
        uv_mutex_unlock(&hw->inbox.mu);
    }
}

ms_hub_msg *ms_hub_take_up(ms_hub *h, size_t bay, size_t max_bytes)
{
    ms_hub_bay *b = &h->bays[bay];
    ms_hub_queue *q = &b->up;
    uv_mutex_lock(&q->mu);
    ms_hub_msg *first = q->head, *last = NULL;
    size_t taken = 0;
    for (ms_hub_msg *m = q->head; m; m = m->next) {
        size_t sz = m->len + MSG_OVERHEAD;
        if (last && taken + sz > max_bytes)
            break;
        taken += sz;
        last = m;
    }
    if (last) {
        b->direct_ok = false; /* until the link has written what it takes */
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        q->bytes -= taken;
    } else {
        first = NULL;
    }
    bool below_half = q->bytes <= q->cap / 2;
    uv_mutex_unlock(&q->mu);
    if (below_half)
        wake_resumers(h, b);
    return first;
}

void ms_hub_drop_up(ms_hub *h, size_t bay)
{
    ms_hub_bay *b = &h->bays[bay];
    ms_hub_queue *q = &b->up;
    uv_mutex_lock(&q->mu);
    ms_hub_msg *list = q->head;
    q->head = q->tail = NULL;
    q->bytes = 0;
    uv_mutex_unlock(&q->mu);
    ms_hub_msg_free_list(list);
    wake_resumers(h, b);
}

void ms_hub_set_direct(ms_hub *h, size_t bay, int fd, uint32_t gen)
{
    ms_hub_bay *b = &h->bays[bay];
    uv_mutex_lock(&b->up.mu);
    int old = b->direct_fd;
    b->direct_fd = fd;
    b->direct_gen = gen;
    b->direct_ok = false; /* the link says when it is idle */
    uv_mutex_unlock(&b->up.mu);
    if (old >= 0)
        close(old); /* no worker writes to it: they write under the lock */
}

bool ms_hub_link_idle(ms_hub *h, size_t bay)
{
    ms_hub_bay *b = &h->bays[bay];
    uv_mutex_lock(&b->up.mu);
    bool empty = b->up.head == NULL;
    if (empty)
        b->direct_ok = true;
    uv_mutex_unlock(&b->up.mu);
    return empty;
}

void ms_hub_to_control(ms_hub *h, ms_hub_msg *m)
{
    uv_mutex_lock(&h->control.mu);
    queue_push_locked(&h->control, m);
    uv_mutex_unlock(&h->control.mu);
    wake_control(h);
}

ms_hub_msg *ms_hub_take_control(ms_hub *h)
{
    uv_mutex_lock(&h->control.mu);
    ms_hub_msg *list = h->control.head;
    h->control.head = h->control.tail = NULL;
    h->control.bytes = 0;
    uv_mutex_unlock(&h->control.mu);
    return list;
}

int ms_hub_bay_cargo(ms_hub *h, uint32_t bay, uint8_t type, const uint8_t *payload, size_t len, uint32_t *conn_id,
                     const uint8_t **msg, size_t *mlen)
{
    if (type != MS_DOCK_CARGO && type != MS_DOCK_CARGO_BINARY)
        return 0;
    if (ms_dock_parse_cargo(payload, len, conn_id, msg, mlen) != 0)
        return -1;
    ms_hub_bay_stats *st = &h->bays[bay].st;
    ms_hub_count(&st->msgs_out, 1);
    ms_hub_count(&st->bytes_out, *mlen);
    return 1;
}

int ms_hub_bay_frame(ms_hub *h, uint32_t bay, uint32_t gen, uint8_t type, const uint8_t *payload, size_t len,
                     ms_hub_msg **out, char *why, size_t why_len)
{
    *out = NULL;
    uint32_t conn_id;
    const uint8_t *msg;
    size_t mlen;
    int cargo = ms_hub_bay_cargo(h, bay, type, payload, len, &conn_id, &msg, &mlen);
    if (cargo < 0) {
        snprintf(why, why_len, "Cargo shorter than its 4-byte conn_id");
        return -1;
    }
    if (cargo) {
        *out = ms_hub_msg_new(type == MS_DOCK_CARGO ? MS_HUB_TO_CLIENT_TEXT : MS_HUB_TO_CLIENT_BINARY, bay, gen,
                              conn_id, 0, msg, mlen);
        return *out ? 0 : -2;
    }
    if (type == MS_DOCK_DISEMBARK) {
        ms_dock_disembark de = { 0 };
        char err[200];
        if (ms_dock_parse_disembark(payload, len, &de, err, sizeof err) != 0) {
            ms_dock_disembark_free(&de);
            snprintf(why, why_len, "bad Disembark: %s", err);
            return -1;
        }
        size_t rlen = strlen(de.reason);
        if (rlen > 123) { /* a close frame's reason fits in 123 bytes: cut at a character boundary */
            rlen = 123;
            while (rlen > 0 && ((unsigned char)de.reason[rlen] & 0xC0) == 0x80)
                rlen--;
        }
        *out = ms_hub_msg_new(MS_HUB_TO_CLIENT_CLOSE, bay, gen, de.conn_id, de.code, de.reason, rlen);
        ms_dock_disembark_free(&de);
        return *out ? 0 : -2;
    }
    const char *tn = ms_dock_type_name(type);
    snprintf(why, why_len, "unexpected %s frame from the bay", tn ? tn : "unknown");
    return -1;
}
