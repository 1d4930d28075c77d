/* test_hub.c: the id map of WebSocket clients and the hub's bounded queues
 * between workers and docking links (src/util/idmap.c, src/dock/hub.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dock/hub.h"
#include "dock/protocol.h"
#include "util/idmap.h"

static void test_idmap_matches_a_reference_under_random_operations(void **state)
{
    (void)state;
    enum { N = 4096 };
    static void *ref[N];
    memset(ref, 0, sizeof ref);
    ms_idmap m = { 0 };
    uint32_t x = 12345;
    for (int i = 0; i < 200000; i++) {
        x = x * 1103515245u + 12345u;
        uint32_t id = 1 + (x >> 8) % (N - 1);
        if ((x >> 4) % 3 == 0) {
            ms_idmap_del(&m, id);
            ref[id] = NULL;
        } else {
            void *v = (void *)(uintptr_t)(i + 1);
            assert_true(ms_idmap_put(&m, id, v));
            ref[id] = v;
        }
        if (i % 997 == 0) /* whole check now and then */
            for (uint32_t k = 1; k < N; k++)
                assert_ptr_equal(ms_idmap_get(&m, k), ref[k]);
    }
    size_t live = 0;
    for (uint32_t k = 1; k < N; k++) {
        assert_ptr_equal(ms_idmap_get(&m, k), ref[k]);
        live += ref[k] != NULL;
    }
    assert_int_equal(m.len, live);
    assert_null(ms_idmap_get(&m, 0));
    assert_false(ms_idmap_put(&m, 0, &m));
    ms_idmap_free(&m);
    assert_null(ms_idmap_get(&m, 7));
}

static ms_hub *new_hub(unsigned workers, size_t cap)
{
    bool is_bay[2] = { false, true };
    ms_hub *h = ms_hub_new(2, is_bay, workers, cap);
    assert_non_null(h);
    return h;
}

static void test_bay_queue_has_a_budget_and_wakes_waiting_workers(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 1000);
    char big[600] = { 0 };
    /* the first message always fits, even over the budget */
    ms_hub_msg *m1 = ms_hub_msg_new(MS_HUB_CARGO, 1, 1, 7, 0, NULL, 1200); /* NULL: filled by the caller */
    assert_non_null(m1);
    assert_true(ms_hub_to_link(h, m1, false));
    ms_hub_msg *m2 = ms_hub_msg_new(MS_HUB_CARGO, 1, 1, 7, 0, big, sizeof big);
    assert_false(ms_hub_to_link(h, m2, false)); /* full: not taken */
    assert_false(ms_hub_take_resume(h, 0));
    /* Disembark must not be lost: forced */
    ms_hub_msg *d = ms_hub_msg_new(MS_HUB_DISEMBARK, 1, 1, 7, 1006, "x", 1);
    assert_true(ms_hub_to_link(h, d, true));
    /* the link drains: both in order, and the workers are told to retry */
    ms_hub_msg *list = ms_hub_take_up(h, 1, SIZE_MAX);
    assert_ptr_equal(list, m1);
    assert_ptr_equal(list->next, d);
    assert_null(d->next);
    assert_true(ms_hub_take_resume(h, 0));
    assert_true(ms_hub_take_resume(h, 1));
    assert_false(ms_hub_take_resume(h, 0));
    ms_hub_msg_free_list(list);
    assert_true(ms_hub_to_link(h, m2, false));
    /* take_up honours max_bytes but always gives at least one message */
    ms_hub_msg *m3 = ms_hub_msg_new(MS_HUB_CARGO, 1, 1, 8, 0, "abc", 3);
    assert_true(ms_hub_to_link(h, m3, false));
    list = ms_hub_take_up(h, 1, 1);
    assert_ptr_equal(list, m2);
    assert_null(list->next);
    free(list);
    ms_hub_drop_up(h, 1); /* m3 freed */
    assert_null(ms_hub_take_up(h, 1, SIZE_MAX));
    ms_hub_free(h);
}

static void test_worker_inbox_budget_pauses_links_until_taken(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 1000);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_async_t wake;
    assert_int_equal(uv_async_init(&loop, &wake, NULL), 0);
    ms_hub_worker_attach(h, 1, &wake);
    /* worker 0 has no loop attached: its messages are dropped */
    assert_true(ms_hub_to_worker(h, 0, ms_hub_msg_new(MS_HUB_TO_CLIENT_TEXT, 1, 1, 2, 0, "hi", 2)));
    assert_null(ms_hub_take_inbox(h, 0));
    ms_hub_msg *a = ms_hub_msg_new(MS_HUB_TO_CLIENT_TEXT, 1, 1, 3, 0, NULL, 500);
    ms_hub_msg *b = ms_hub_msg_new(MS_HUB_TO_CLIENT_BINARY, 1, 1, 5, 0, NULL, 500);
    assert_true(ms_hub_to_worker(h, 1, a));
    assert_false(ms_hub_to_worker(h, 1, b)); /* over the budget: the link must stop reading */
    assert_false(ms_hub_inboxes_have_room(h));
    ms_hub_msg *list = ms_hub_take_inbox(h, 1);
    assert_ptr_equal(list, a);
    assert_ptr_equal(a->next, b);
    ms_hub_msg_free_list(list);
    assert_true(ms_hub_inboxes_have_room(h));
    /* detaching drops what is queued and later messages */
    assert_true(ms_hub_to_worker(h, 1, ms_hub_msg_new(MS_HUB_LINK_DOWN, 1, 1, 0, 1012, NULL, 0)));
    ms_hub_worker_detach(h, 1);
    assert_null(ms_hub_take_inbox(h, 1));
    assert_true(ms_hub_to_worker(h, 1, ms_hub_msg_new(MS_HUB_LINK_DOWN, 1, 1, 0, 1012, NULL, 0)));
    assert_null(ms_hub_take_inbox(h, 1));
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    ms_hub_free(h);
}

/* A worker that stops with the hand-over of a bay's link still in its
 * inbox: the link's socket (a dup the worker owns) is closed, or the bay
 * would never see its link end while Mothership runs, and the descriptor
 * leaks (ASan/valgrind: the lost message too). */
static void test_detach_closes_an_attach_left_in_the_inbox(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 1u << 20);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_async_t wake;
    assert_int_equal(uv_async_init(&loop, &wake, NULL), 0);
    ms_hub_worker_attach(h, 1, &wake);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ms_hub_msg *lost = ms_hub_msg_new(MS_HUB_LINK_LOST, 1, 7, 0, 0, NULL, MS_HUB_LOST_WHY);
    ms_hub_msg *att = ms_hub_msg_new(MS_HUB_LINK_ATTACH, 1, 7, 0, 0, NULL, sizeof(ms_hub_attach));
    assert_non_null(lost);
    assert_non_null(att);
    lost->len = 0;
    ms_hub_attach a = { .fd = sv[0], .lost = lost };
    memcpy(att->data, &a, sizeof a);
    assert_true(ms_hub_to_worker(h, 1, att));
    ms_hub_worker_detach(h, 1); /* the worker stops before it took its inbox */
    char c;
    assert_int_equal(recv(sv[1], &c, 1, MSG_DONTWAIT), 0); /* the bay sees its link end */
    close(sv[1]);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    ms_hub_free(h);
}

static void test_bay_state_and_conn_id_owner(void **state)
{
    (void)state;
    ms_hub *h = new_hub(3, 0);
    unsigned f = 9;
    assert_int_equal(ms_hub_bay_gen(h, 1, &f), 0);
    assert_int_equal(f, 0);
    ms_hub_bay_publish(h, 1, 42, 1);
    assert_int_equal(ms_hub_bay_gen(h, 1, &f), 42);
    assert_int_equal(f, 1);
    ms_hub_bay_publish(h, 1, 0, 0);
    assert_int_equal(ms_hub_bay_gen(h, 1, NULL), 0);
    assert_int_equal(ms_hub_worker_of(h, 3 * 17 + 2), 2);
    assert_int_equal(ms_hub_worker_of(h, 3 * 5), 0);
    ms_hub_free(h);
    bool no[1] = { false };
    assert_null(ms_hub_new(1, no, 0, 0)); /* no workers: refused */
}

/* A freed slot's bay is clean for its next owner: nothing queued, no
 * counters, not docked, not a bay until a link enables it again. */
static void test_a_reset_bay_starts_afresh(void **state)
{
    (void)state;
    ms_hub *h = new_hub(1, 0);
    ms_hub_bay_publish(h, 1, 7, 1);
    ms_hub_count(&h->bays[1].st.boardings, 3);
    ms_hub_count(&h->bays[1].st.msgs_in, 5);
    assert_true(ms_hub_to_link(h, ms_hub_msg_new(MS_HUB_CARGO, 1, 7, 0, 0, "old", 3), false));
    ms_hub_reset_bay(h, 1);
    assert_null(ms_hub_take_up(h, 1, 1 << 20));
    assert_int_equal(h->bays[1].up.bytes, 0);
    assert_int_equal(ms_hub_bay_gen(h, 1, NULL), 0);
    assert_int_equal(h->bays[1].st.boardings, 0);
    assert_int_equal(h->bays[1].st.msgs_in, 0);
    assert_false(h->bays[1].is_bay);
    ms_hub_enable_bay(h, 1);
    assert_true(h->bays[1].is_bay);
    ms_hub_free(h);
}

/* A held client's pending frames can start with the Boarding queued for
 * a link that went before taking it: it comes out once, the rest stays in
 * order, and a list without one is left alone. */
static void test_a_pending_boarding_is_taken_out_once(void **state)
{
    (void)state;
    ms_hub_msg *b = ms_hub_msg_new(MS_HUB_BOARDING, 1, 3, 9, 0, "b", 1);
    ms_hub_msg *c1 = ms_hub_msg_new(MS_HUB_CARGO, 1, 3, 9, 0, "1", 1);
    ms_hub_msg *c2 = ms_hub_msg_new(MS_HUB_CARGO, 1, 3, 9, 0, "2", 1);
    assert_non_null(b);
    assert_non_null(c1);
    assert_non_null(c2);
    b->next = c1;
    c1->next = c2;
    ms_hub_msg *list = b, *tail = c2;
    assert_ptr_equal(ms_hub_take_boarding(&list, &tail), b);
    assert_null(b->next);
    assert_ptr_equal(list, c1);
    assert_ptr_equal(list->next, c2);
    assert_ptr_equal(tail, c2);
    assert_null(ms_hub_take_boarding(&list, &tail)); /* only one */
    assert_ptr_equal(list, c1);
    free(b);
    ms_hub_msg_free_list(list);

    b = ms_hub_msg_new(MS_HUB_BOARDING, 1, 3, 9, 0, "b", 1);
    assert_non_null(b);
    list = tail = b;
    assert_ptr_equal(ms_hub_take_boarding(&list, &tail), b);
    assert_null(list);
    assert_null(tail);
    free(b);
    assert_null(ms_hub_take_boarding(&list, &tail));
}

/* A client takes a wait slot of an away bay just as the slot is freed:
 * the control loop saw no held client, the worker counts it, the reset
 * follows, then the link down closes it and it gives its count back. The
 * held gauge must come back to zero, not wrap below it. */
static void test_a_client_held_across_a_reset_leaves_the_gauge_at_zero(void **state)
{
    (void)state;
    enum { RESUME = 2 };
    ms_hub *h = new_hub(1, 0);
    ms_hub_bay_away(h, 1, RESUME, ms_hub_now_ms() + 60000);
    assert_int_equal(h->bays[1].st.held, 0);        /* what on_bay_held reads */
    assert_int_not_equal(ms_hub_wait_take(h, 1, RESUME), 0);
    ms_hub_count(&h->bays[1].st.held, 1);           /* the worker holds it */
    ms_hub_count(&h->bays[1].st.boardings, 2);
    ms_hub_reset_bay(h, 1);                         /* the slot is freed */
    assert_int_equal(h->bays[1].st.boardings, 0);
    __atomic_fetch_sub(&h->bays[1].st.held, 1, __ATOMIC_RELAXED); /* unhold at link down */
    ms_hub_wait_done(h, 1);
    assert_int_equal(h->bays[1].st.held, 0);
    assert_int_equal(h->bays[1].waiting, 0);
    ms_hub_free(h);
}

/* An away bay (resume agreed, link gone): new clients may wait until its
 * deadline, at most MS_HUB_WAIT_MAX at once; not while docked, not once
 * the deadline has passed, not for a bay that is merely not docked. */
static void test_an_away_bay_lets_a_bounded_number_of_clients_wait(void **state)
{
    (void)state;
    enum { RESUME = 2 };
    ms_hub *h = new_hub(1, 0);
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), 0); /* never docked */
    ms_hub_bay_publish(h, 1, 5, RESUME);
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), 0); /* docked: boarded at once */
    uint64_t until = ms_hub_now_ms() + 60000;
    ms_hub_bay_away(h, 1, RESUME, until);
    unsigned f = 0;
    assert_int_equal(ms_hub_bay_gen(h, 1, &f), 0);
    assert_int_equal(f, RESUME);
    for (unsigned i = 0; i < MS_HUB_WAIT_MAX; i++)
        assert_int_equal(ms_hub_wait_take(h, 1, RESUME), until);
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), 0); /* full */
    ms_hub_wait_done(h, 1);
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), until);
    for (unsigned i = 0; i < MS_HUB_WAIT_MAX; i++)
        ms_hub_wait_done(h, 1);
    assert_int_equal(h->bays[1].waiting, 0);
    ms_hub_bay_away(h, 1, RESUME, ms_hub_now_ms() - 1);
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), 0); /* deadline passed */
    ms_hub_bay_away(h, 1, RESUME, until);
    ms_hub_reset_bay(h, 1); /* the slot was freed: nobody waits for it */
    assert_int_equal(ms_hub_wait_take(h, 1, RESUME), 0);
    assert_int_equal(h->bays[1].away_until, 0);
    ms_hub_free(h);
}

/* A frame of the docked link's generation goes straight to the bay's
 * socket only while nothing is queued and the link says it is idle; what
 * the socket does not take waits in the queue, in order. */
static void test_workers_write_to_the_link_socket_only_when_in_order(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 1u << 20);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int snd = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd), 0);
    ms_hub_set_direct(h, 1, sv[0], 5); /* the hub owns sv[0] from here */
    /* not idle yet (the link has not said so): queued */
    ms_hub_msg *m = ms_hub_msg_new(MS_HUB_CARGO, 1, 5, 7, 0, "\x12\0\0\0\x05\0\0\0\x07" "a", 10);
    assert_true(ms_hub_to_link(h, m, false));
    assert_false(ms_hub_link_idle(h, 1)); /* something is queued: take it first */
    ms_hub_msg *list = ms_hub_take_up(h, 1, SIZE_MAX);
    assert_ptr_equal(list, m);
    ms_hub_msg_free_list(list);
    assert_true(ms_hub_link_idle(h, 1));
    /* idle: written at once, counted, nothing queued */
    m = ms_hub_msg_new(MS_HUB_CARGO, 1, 5, 7, 0, "\x12\0\0\0\x05\0\0\0\x07" "b", 10);
    assert_true(ms_hub_to_link(h, m, false));
    assert_null(ms_hub_take_up(h, 1, SIZE_MAX));
    char got[16];
    assert_int_equal(read(sv[1], got, sizeof got), 10);
    assert_int_equal(got[9], 'b');
    assert_int_equal(h->bays[1].st.msgs_in, 1);
    assert_int_equal(h->bays[1].st.bytes_in, 1);
    /* an older generation's frame never goes to the socket */
    assert_true(ms_hub_link_idle(h, 1));
    m = ms_hub_msg_new(MS_HUB_CARGO, 1, 4, 7, 0, "old", 3);
    assert_true(ms_hub_to_link(h, m, false));
    list = ms_hub_take_up(h, 1, SIZE_MAX);
    assert_ptr_equal(list, m);
    free(list);
    /* a full socket: the rest of a partial write is queued first, and the
     * next frame queues behind it (the link is not idle any more) */
    assert_true(ms_hub_link_idle(h, 1));
    size_t big = 1u << 19;
    m = ms_hub_msg_new(MS_HUB_CARGO, 1, 5, 7, 0, NULL, big);
    memset(m->data, 'x', big);
    assert_true(ms_hub_to_link(h, m, false));
    ms_hub_msg *next = ms_hub_msg_new(MS_HUB_CARGO, 1, 5, 7, 0, "next", 4);
    assert_true(ms_hub_to_link(h, next, false));
    list = ms_hub_take_up(h, 1, SIZE_MAX);
    assert_ptr_equal(list, m);
    assert_true(m->len < big); /* what the socket took is cut off */
    assert_int_equal(m->kind, MS_HUB_BOARDING); /* counted already */
    assert_ptr_equal(m->next, next);
    ms_hub_msg_free_list(list);
    assert_int_equal(h->bays[1].st.msgs_in, 2);
    /* taken back: the hub's descriptor is closed, the peer sees EOF once drained */
    ms_hub_set_direct(h, 1, -1, 0);
    ssize_t n;
    while ((n = read(sv[1], got, sizeof got)) > 0)
        ;
    assert_int_equal(n, 0);
    close(sv[1]);
    ms_hub_free(h);
}

static ms_hub_msg *chain_of(const char *texts, uint32_t gen, size_t n)
{
    ms_hub_msg *first = NULL, **tail = &first;
    for (size_t i = 0; i < n; i++) {
        char f[10] = "\x12\0\0\0\x05\0\0\0\x07";
        f[9] = texts[i];
        *tail = ms_hub_msg_new(MS_HUB_CARGO, 1, gen, 7, 0, f, 10);
        assert_non_null(*tail);
        tail = &(*tail)->next;
    }
    return first;
}

/* A worker's messages of one loop turn: one sendmsg while the link is idle
 * (all counted, in order), or all queued in order (whatever the budget)
 * while it is not; a full socket leaves the rest queued, the cut one
 * first, and the link no longer idle. */
static void test_a_turns_messages_go_in_one_write_or_all_queued_in_order(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 16); /* a budget smaller than one message */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ms_hub_set_direct(h, 1, sv[0], 5);
    /* not idle: queued, in order, though over the budget */
    assert_false(ms_hub_to_link_chain(h, chain_of("abc", 5, 3)));
    ms_hub_msg *list = ms_hub_take_up(h, 1, SIZE_MAX), *x = list;
    for (const char *t = "abc"; *t; t++, x = x->next) {
        assert_non_null(x);
        assert_int_equal(x->data[9], *t);
    }
    assert_null(x);
    ms_hub_msg_free_list(list);
    /* idle: one write, in order, counted */
    assert_true(ms_hub_link_idle(h, 1));
    assert_true(ms_hub_to_link_chain(h, chain_of("defg", 5, 4)));
    assert_null(ms_hub_take_up(h, 1, SIZE_MAX));
    char got[64];
    assert_int_equal(read(sv[1], got, sizeof got), 40);
    assert_int_equal(got[9], 'd');
    assert_int_equal(got[39], 'g');
    assert_int_equal(h->bays[1].st.msgs_in, 4);
    assert_int_equal(h->bays[1].st.bytes_in, 4);
    /* more than MS_HUB_CHAIN_IOV at once: all of them, in order */
    char many[MS_HUB_CHAIN_IOV + 6];
    for (size_t i = 0; i < sizeof many; i++)
        many[i] = (char)('A' + i % 26);
    assert_true(ms_hub_to_link_chain(h, chain_of(many, 5, sizeof many)));
    size_t want = 10 * sizeof many, have = 0;
    char buf[10 * (MS_HUB_CHAIN_IOV + 6)];
    while (have < want) {
        ssize_t n = read(sv[1], buf + have, want - have);
        assert_true(n > 0);
        have += (size_t)n;
    }
    for (size_t i = 0; i < sizeof many; i++)
        assert_int_equal(buf[10 * i + 9], many[i]);
    /* a full socket: what it took is cut off the first one not whole,
     * which is queued first (counted already), then the rest */
    int snd = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd), 0);
    size_t big = 1u << 19;
    ms_hub_msg *m = ms_hub_msg_new(MS_HUB_CARGO, 1, 5, 7, 0, NULL, big);
    memset(m->data, 'x', big);
    m->next = chain_of("z", 5, 1);
    ms_hub_msg *z = m->next;
    uint64_t before = h->bays[1].st.msgs_in;
    assert_false(ms_hub_to_link_chain(h, m));
    list = ms_hub_take_up(h, 1, SIZE_MAX);
    assert_ptr_equal(list, m);
    assert_true(m->len < big);
    assert_int_equal(m->kind, MS_HUB_BOARDING);
    assert_ptr_equal(m->next, z);
    assert_null(z->next);
    assert_int_equal(h->bays[1].st.msgs_in, before + 1);
    ms_hub_msg_free_list(list);
    /* the link is not idle now: the next turn's messages queue */
    assert_false(ms_hub_to_link_chain(h, chain_of("q", 5, 1)));
    ms_hub_msg_free_list(ms_hub_take_up(h, 1, SIZE_MAX));
    ms_hub_set_direct(h, 1, -1, 0);
    close(sv[1]);
    ms_hub_free(h);
}

static void test_bay_frames_become_messages_or_protocol_errors(void **state)
{
    (void)state;
    ms_hub *h = new_hub(2, 1000);
    char why[200];
    ms_hub_msg *m = NULL;
    const uint8_t cargo[] = { 0, 0, 0, 9, 'h', 'i' };
    assert_int_equal(ms_hub_bay_frame(h, 1, 3, MS_DOCK_CARGO, cargo, sizeof cargo, &m, why, sizeof why), 0);
    assert_int_equal(m->kind, MS_HUB_TO_CLIENT_TEXT);
    assert_int_equal(m->conn_id, 9);
    assert_int_equal(m->gen, 3);
    assert_int_equal(m->len, 2);
    assert_memory_equal(m->data, "hi", 2);
    assert_int_equal(h->bays[1].st.msgs_out, 1);
    free(m);
    assert_int_equal(ms_hub_bay_frame(h, 1, 3, MS_DOCK_CARGO_BINARY, cargo, 3, &m, why, sizeof why), -1);
    assert_null(m);
    assert_non_null(strstr(why, "Cargo shorter"));
    assert_int_equal(ms_hub_bay_frame(h, 1, 3, MS_DOCK_DOCK, cargo, sizeof cargo, &m, why, sizeof why), -1);
    assert_non_null(strstr(why, "unexpected"));
    const char *de = "{\"conn_id\": 9, \"code\": 4000, \"reason\": \"bye\"}";
    assert_int_equal(ms_hub_bay_frame(h, 1, 3, MS_DOCK_DISEMBARK, (const uint8_t *)de, strlen(de), &m, why,
                                      sizeof why), 0);
    assert_int_equal(m->kind, MS_HUB_TO_CLIENT_CLOSE);
    assert_int_equal(m->code, 4000);
    assert_int_equal(m->len, 3);
    free(m);
    assert_int_equal(ms_hub_bay_frame(h, 1, 3, MS_DOCK_DISEMBARK, (const uint8_t *)"{", 1, &m, why, sizeof why), -1);
    assert_non_null(strstr(why, "bad Disembark"));
    ms_hub_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_reset_bay_starts_afresh),
        cmocka_unit_test(test_workers_write_to_the_link_socket_only_when_in_order),
        cmocka_unit_test(test_a_turns_messages_go_in_one_write_or_all_queued_in_order),
        cmocka_unit_test(test_bay_frames_become_messages_or_protocol_errors),
        cmocka_unit_test(test_an_away_bay_lets_a_bounded_number_of_clients_wait),
        cmocka_unit_test(test_a_client_held_across_a_reset_leaves_the_gauge_at_zero),
        cmocka_unit_test(test_a_pending_boarding_is_taken_out_once),
        cmocka_unit_test(test_idmap_matches_a_reference_under_random_operations),
        cmocka_unit_test(test_bay_queue_has_a_budget_and_wakes_waiting_workers),
        cmocka_unit_test(test_worker_inbox_budget_pauses_links_until_taken),
        cmocka_unit_test(test_bay_state_and_conn_id_owner),
        cmocka_unit_test(test_detach_closes_an_attach_left_in_the_inbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
