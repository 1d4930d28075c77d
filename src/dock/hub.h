/* hub.h: where the data plane's workers and the control loop's docking
 * links meet (DESIGN.md §3: links live on the control loop, WebSocket
 * clients on workers; a docked WebSocket bay's link is read by its home
 * worker and written by every worker directly while the link is idle,
 * see ms_hub_to_link and MS_HUB_LINK_ATTACH).
 *
 * Per bay: the state workers read before boarding a client (the link's
 * generation, 0 while not docked, and the agreed features), a bounded queue
 * of frames from the workers to the link, and counters. Per worker: a
 * bounded inbox of messages from the links. Both kinds of queue are a
 * mutex-protected list with a byte budget and a uv_async wake-up. When an
 * inbox is over its budget the link stops reading its bay; when a bay's
 * queue is full the worker stops reading the client and retries after the
 * link has drained it (the resume flag).
 *
 * A bay that agreed to the "resume" feature keeps its clients when its
 * link goes: the link publishes the bay as away (generation 0 with the
 * resume bit) until away_until and tells the workers to hold its clients
 * (MS_HUB_LINK_HOLD: not read, nothing dropped); new clients wait too
 * (at most MS_HUB_WAIT_MAX per bay). When a link docks, MS_HUB_LINK_UP
 * tells the workers to board the held and waiting clients on it. */
#ifndef MS_DOCK_HUB_H
#define MS_DOCK_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define MS_HUB_QUEUE_BYTES (8u << 20)   /* default budget of each queue */
#define MS_HUB_WAIT_MAX 1024u           /* new clients of a bay waiting while it is away */

typedef enum ms_hub_kind {
    /* worker -> link: data is a complete docking frame */
    MS_HUB_BOARDING = 1,
    MS_HUB_CARGO,
    MS_HUB_DISEMBARK,
    /* link -> worker */
    MS_HUB_TO_CLIENT_TEXT,          /* data: the message */
    MS_HUB_TO_CLIENT_BINARY,
    MS_HUB_TO_CLIENT_CLOSE,         /* code, data: the reason */
    MS_HUB_LINK_DOWN,               /* every client of (bay, gen): close with code */
    MS_HUB_LINK_HOLD,               /* every client of (bay, gen): hold until data (u64 ms, ms_hub_now_ms) */
    MS_HUB_LINK_UP,                 /* bay docked as gen with features (code): board held and waiting clients */
    MS_HUB_LINK_ATTACH,             /* to the bay's home worker: read the link of gen (features: code);
                                       data: ms_hub_attach, then bytes read after the Dock frame */
    /* home worker -> control loop */
    MS_HUB_LINK_LOST,               /* the link of (bay, gen) failed: close code; conn_id 1: a
                                       protocol error; data: why */
} ms_hub_kind;

typedef struct ms_hub_msg {
    struct ms_hub_msg *next;
    uint32_t bay;                   /* the bay's slot (ms_proc.slot) */
    uint32_t gen;                   /* link generation it belongs to */
    uint32_t conn_id;
    uint32_t len;
    uint16_t code;
    uint8_t kind;
    uint8_t data[];
} ms_hub_msg;

/* What MS_HUB_LINK_ATTACH carries first: the link's socket (a dup the
 * worker owns) and the message it reports a failure with (allocated by
 * the link, so a failure can always be told; len 0, MS_HUB_LOST_WHY bytes). */
#define MS_HUB_LOST_WHY 300u
typedef struct ms_hub_attach {
    int fd;
    struct ms_hub_msg *lost;
} ms_hub_attach;

typedef struct ms_hub_queue {
    uv_mutex_t mu;
    ms_hub_msg *head, *tail;
    size_t bytes;                   /* sum of len + header per message */
    size_t cap;
} ms_hub_queue;

/* Counters of one bay; written with atomic adds from any thread. */
typedef struct ms_hub_bay_stats {
    uint64_t clients;               /* gauge */
    uint64_t boardings;             /* clients boarded in all */
    uint64_t msgs_in, bytes_in;     /* client -> bay */
    uint64_t msgs_out, bytes_out;   /* bay -> client */
    uint64_t dropped;               /* cargo for an unknown conn_id */
    uint64_t protocol_errors;       /* links failed on bad frames */
    uint64_t docks;                 /* successful docks (re-docks = docks - 1) */
    uint64_t rejected;              /* upgrades answered 503 (not docked or queue full) */
    uint64_t closed_slow;           /* clients closed for not reading (1008) */
    uint64_t held;                  /* gauge: clients held or waiting while the bay is away */
    uint64_t resumed;               /* held clients boarded again on a new link */
    uint64_t held_expired;          /* held or waiting clients closed at handover_timeout */
} ms_hub_bay_stats;

/* An HTTP bay's (docking v3) links live on the workers, each worker
 * connecting its own; this is what they share about the bay. links_cap
 * bounds links_open over all workers (the bay serves that many at once);
 * a worker with requests waiting that may not open a link counts itself
 * in starved, and a worker whose link turns free closes it for them. */
typedef struct ms_hub_http {
    uint32_t links_cap;             /* atomic: the bay's workers x its Dock's threads; 0: not known
                                       yet (one link may connect to learn it) */
    uint32_t links_open;            /* atomic: links connecting or connected, all workers */
    uint32_t links_busy;            /* atomic gauge: links with a request */
    uint32_t queued;                /* atomic gauge: requests waiting for a link, all workers */
    uint32_t starved;               /* atomic: workers waiting for a link they may not open */
    /* counters (atomic), written by the workers' links and requests */
    uint64_t links_opened;          /* links that docked */
    uint64_t link_failures;         /* links that did not connect or dock, or broke under a request */
    uint64_t protocol_errors;       /* links closed for a frame that broke the protocol */
    uint64_t queue_wait_us;         /* requests' time in the queue, summed */
    uint64_t queue_waits;           /* requests that left the queue for a link */
    uint64_t results[6];            /* requests by MS_HB_* result */
} ms_hub_http;

/* How a request to an HTTP bay ended (ms_hub_http.results). */
enum {
    MS_HB_REPLIED,                  /* the bay's response went to the client whole */
    MS_HB_QUEUE_FULL,               /* 503: max_queue requests were waiting */
    MS_HB_QUEUE_TIMEOUT,            /* 504: no link within request_timeout */
    MS_HB_REPLY_TIMEOUT,            /* 504: no REPLY within request_timeout */
    MS_HB_BAD_GATEWAY,              /* 502: the link broke or the bay broke the protocol before the head */
    MS_HB_ABORTED,                  /* the response was cut after its head */
};

typedef struct ms_hub_bay {
    uint64_t state;                 /* atomic: gen << 8 | features; gen 0: not docked (RESUME bit: away) */
    uint64_t away_until;            /* atomic: ms_hub_now_ms deadline of an away bay's clients */
    uint32_t waiting;               /* atomic: new clients waiting for it (<= MS_HUB_WAIT_MAX) */
    ms_hub_queue up;                /* workers -> link */
    /* The link's socket for workers' direct writes (under up.mu): a dup of
     * the docked link's descriptor, -1 while none; direct_gen its
     * generation; direct_ok while the link has nothing taken from up that
     * is not yet written (and up is empty), so a worker's frame that the
     * socket takes whole cannot overtake one of the link's. */
    int direct_fd;
    uint32_t direct_gen;
    bool direct_ok;
    int resume_wanted;              /* atomic: a worker waits for room in up */
    ms_hub_bay_stats st;
    ms_hub_http http;               /* HTTP bays and docking upstreams */
    bool is_bay;
} ms_hub_bay;

typedef struct ms_hub_worker {
    ms_hub_queue inbox;             /* links -> this worker */
    uv_async_t *wake;               /* the worker's async; NULL once it has stopped */
    int resume;                     /* atomic: retry clients blocked on a full bay queue */
} ms_hub_worker;

typedef struct ms_hub {
    size_t nbays;                   /* slots (MS_FLEET_MAX_SLOTS); only bays are used */
    ms_hub_bay *bays;
    unsigned nworkers;
    ms_hub_worker *workers;
    uv_async_t *control_wake;       /* the control loop's async (links' side) */
    ms_hub_queue control;           /* home workers -> control loop (MS_HUB_LINK_LOST) */
    int links_paused;               /* atomic: a link stopped reading for a full inbox */
} ms_hub;

/* nships entries (is_bay marks bays; NULL: none yet, the docking links
 * enable them as bays appear), nworkers inboxes. */
ms_hub *ms_hub_new(size_t nships, const bool *is_bay, unsigned nworkers, size_t queue_bytes);
void ms_hub_free(ms_hub *h);
/* Make slot a bay (a bay appeared in a reload), before workers may route to it. */
void ms_hub_enable_bay(ms_hub *h, size_t slot);
/* Control loop: the slot's process was freed (no worker routes to it any
 * more): drop what its queue holds, zero its counters (not the held gauge,
 * which its clients give back themselves) and state. Link
 * generations go on counting up across owners (the links' counter), so a
 * message of the old bay never matches a client of the new one. */
void ms_hub_reset_bay(ms_hub *h, size_t slot);

ms_hub_msg *ms_hub_msg_new(ms_hub_kind kind, uint32_t bay, uint32_t gen, uint32_t conn_id, uint16_t code,
                           const void *data, size_t len);
void ms_hub_msg_free_list(ms_hub_msg *m);

/* The worker that owns a conn_id (conn_ids are seq * nworkers + worker). */
static inline unsigned ms_hub_worker_of(const ms_hub *h, uint32_t conn_id)
{
    return conn_id % h->nworkers;
}

/* Milliseconds of a monotonic clock every thread shares (deadlines in messages). */
static inline uint64_t ms_hub_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* Bay state for workers: generation (0 = not docked) and features. */
uint32_t ms_hub_bay_gen(const ms_hub *h, size_t bay, unsigned *features);
void ms_hub_bay_publish(ms_hub *h, size_t bay, uint32_t gen, unsigned features);
/* Link side: the bay is away until deadline; its clients are held (gen 0,
 * features = the resume bit). */
void ms_hub_bay_away(ms_hub *h, size_t bay, unsigned resume_bit, uint64_t deadline_ms);
/* Worker side: until when a client that arrives now may wait for the bay;
 * 0: it may not (docked, not away, deadline passed, or too many wait).
 * Taken: give it back with ms_hub_wait_done. */
uint64_t ms_hub_wait_take(ms_hub *h, size_t bay, unsigned resume_bit);
void ms_hub_wait_done(ms_hub *h, size_t bay);

/* Worker side: take the first Boarding out of a client's pending frames
 * (list and its tail; NULL: none). A Boarding still pending was never
 * taken by the link it was meant for: the client's next link gets that
 * one, not a second. */
ms_hub_msg *ms_hub_take_boarding(ms_hub_msg **list, ms_hub_msg **tail);

/* Worker side. to_link: a frame of the docked link's generation, with
 * nothing queued before it, is written to the bay's socket at once (one
 * send, no wake-up of the control loop); what the socket does not take
 * (EAGAIN, a partial write) is queued for the link as before.
 * to_link: false when the bay's queue is full (the message is
 * not taken; every worker's resume flag is set once there is room again);
 * force ignores the budget (Disembark, which must not be lost). */
bool ms_hub_to_link(ms_hub *h, ms_hub_msg *m, bool force);
/* The same; *direct (when not NULL) says whether m went straight to the socket. */
bool ms_hub_to_link_ex(ms_hub *h, ms_hub_msg *m, bool force, bool *direct);
/* A worker's messages of one loop turn for one bay (a chain through next,
 * in order, one generation): written with one sendmsg per
 * MS_HUB_CHAIN_IOV of them when the link's direct path is open; what the
 * socket does not take, or all of them when the path is closed, queued
 * for the link in order whatever the budget (the caller bounds a chain).
 * true: all went to the socket. */
#define MS_HUB_CHAIN_IOV 64
bool ms_hub_to_link_chain(ms_hub *h, ms_hub_msg *first);
ms_hub_msg *ms_hub_take_inbox(ms_hub *h, unsigned worker);
bool ms_hub_take_resume(ms_hub *h, unsigned worker);
void ms_hub_worker_attach(ms_hub *h, unsigned worker, uv_async_t *wake);
void ms_hub_worker_detach(ms_hub *h, unsigned worker); /* drops what is queued for it */
/* Wake every attached worker but `except` (its async). */
void ms_hub_wake_workers(ms_hub *h, unsigned except);

/* Link side (control loop). to_worker: force ignores the budget (control
 * messages); returns false if over budget after the push (stop reading). */
bool ms_hub_to_worker(ms_hub *h, unsigned worker, ms_hub_msg *m);
/* A link's hand-over (MS_HUB_LINK_ATTACH) to a worker that runs: false
 * when there is none (no data plane, or it has stopped): m is still the
 * caller's and the link is read where it is. */
bool ms_hub_hand_to_worker(ms_hub *h, unsigned worker, ms_hub_msg *m);
bool ms_hub_inboxes_have_room(ms_hub *h);
/* Take up to max_bytes of the bay's queue (at least one message). Wakes
 * workers waiting for room when the queue drops under half its budget. */
ms_hub_msg *ms_hub_take_up(ms_hub *h, size_t bay, size_t max_bytes);
void ms_hub_drop_up(ms_hub *h, size_t bay);
/* Link side: give the workers the link's socket (fd: a dup the hub owns
 * and closes; -1: take it back, closing the hub's dup, before the link's
 * own descriptor closes). Its generation gen. */
void ms_hub_set_direct(ms_hub *h, size_t bay, int fd, uint32_t gen);
/* Link side: the link has written all it took; true when up is empty too,
 * so workers may write directly again (false: take_up again). */
bool ms_hub_link_idle(ms_hub *h, size_t bay);

/* The worker that reads a WebSocket bay's docking link (its home). */
static inline unsigned ms_hub_home_of(const ms_hub *h, size_t bay)
{
    return (unsigned)(bay % h->nworkers);
}

/* Home worker -> control loop: a link failed (m: the attach's lost message). */
void ms_hub_to_control(ms_hub *h, ms_hub_msg *m);
ms_hub_msg *ms_hub_take_control(ms_hub *h);

/* A frame from a WebSocket bay (Cargo, Disembark) as the message for the
 * client's worker (counted in the bay's stats). 0: *out set; -1: the frame
 * breaks the protocol (why); -2: out of memory. */
int ms_hub_bay_frame(ms_hub *h, uint32_t bay, uint32_t gen, uint8_t type, const uint8_t *payload, size_t len,
                     ms_hub_msg **out, char *why, size_t why_len);
/* A Cargo frame's parts, in place (counted in the bay's stats): 1 it is
 * one, 0 it is another type, -1 shorter than its conn_id. For the home
 * worker, which delivers its own clients' messages without a copy. */
int ms_hub_bay_cargo(ms_hub *h, uint32_t bay, uint8_t type, const uint8_t *payload, size_t len, uint32_t *conn_id,
                     const uint8_t **msg, size_t *mlen);

static inline void ms_hub_count(uint64_t *ctr, uint64_t n)
{
    __atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

#endif
