/* http_impl.h: what the data plane's files share: the worker context, the
 * client connection, the upstream connection, and the per-worker counters.
 * Everything here belongs to one worker thread. */
#ifndef MS_HTTP_IMPL_H
#define MS_HTTP_IMPL_H

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "dock/hub.h"
#include "http/accesslog.h"
#include "http/bodybuf.h"
#include "http/compress.h"
#include "http/dataplane.h"
#include "http/framing.h"
#include "http/handler.h"
#include "http/transport.h"
#include "payload/payload.h"
#include "util/idmap.h"

#define MS_MAX_HEADERS 100         /* request or response headers; more -> 431 / 502 */
#define MS_RESP_HEAD_MAX 65536     /* a response head as rewritten for the client; more -> 502 */
#define MS_WRITE_HIGH 262144       /* pending write bytes before the reading side pauses */
#define MS_NBUCKETS 16            /* request duration buckets, 0.5 ms to 60 s */
#define MS_WS_RBUF 65536           /* a worker's read buffer for WebSocket clients */
#define MS_WS_STAGE_MAX 65536     /* bytes a worker stages for bays before writing them */
#define MS_WS_CTX_POOL 64          /* idle wslay contexts a worker keeps for reuse (over 8 KiB each) */
#define MS_TLS_RBUF 65536          /* a worker's buffer for TLS clients' socket reads */

typedef enum ms_upstream_error {
    MS_UPERR_REFUSED,              /* connect refused / socket missing */
    MS_UPERR_CONNECT_TIMEOUT,
    MS_UPERR_RESET,                /* closed or reset before a complete response */
    MS_UPERR_TIMEOUT,              /* no response head in time */
    MS_UPERR_BAD_RESPONSE,
    MS_UPERR_UNAVAILABLE,          /* breaker open / not ready: answered 503 */
    MS_UPERR_COUNT
} ms_upstream_error;

/* Counters of one routing slot (a route, a static dir, or "no match") on
 * one worker. Written by the worker, read by the control loop at scrape. */
typedef struct ms_slot_stats {
    uint64_t by_class[6];          /* 1xx..5xx at [1..5] */
    uint64_t by_proto[2];          /* the same requests by protocol: HTTP/1.x, HTTP/2 */
    uint64_t buckets[MS_NBUCKETS + 1];
    uint64_t duration_us_sum;
    uint64_t bytes_in, bytes_out;
    uint64_t abandoned[6];         /* of by_class: responses that ended before their last byte */
    uint64_t tunnels_closed;       /* tunnels after a 101 that have ended */
    uint64_t tunnel_us_sum;        /* their durations */
    uint64_t tunnel_bytes_up, tunnel_bytes_down; /* their bytes: client to ship, ship to client */
    uint64_t retries;              /* requests sent again to another instance after a failure */
} ms_slot_stats;

typedef struct ms_slot_info {
    const char *bind;
    const char *route;             /* name or pattern, static prefix, or "" for no match */
    const char *target;            /* ship/bay name, "static", or "none" */
} ms_slot_info;

typedef struct ms_worker ms_worker;

#define MS_CORK_IOV 32

typedef struct ms_cork_piece {
    const char *ptr;     /* borrowed data, or NULL: at off in the gather buffer */
    size_t off, len;
} ms_cork_piece;

/* Gathered writes (see conn.c): one connection of a worker at a time is
 * corked; corking another first flushes it. */
typedef struct ms_gather {
    struct ms_conn *owner; /* the corked connection, or NULL */
    int n;
    ms_cork_piece piece[MS_CORK_IOV];
    char *buf;           /* copies of scratch data; kept for the next cork */
    size_t used, cap;
} ms_gather;
typedef struct ms_conn ms_conn;
typedef struct ms_upconn ms_upconn;
typedef struct ms_ws ms_ws;
typedef struct ms_ws_slot ms_ws_slot;
typedef struct ms_hblink ms_hblink;
typedef struct ms_hbtarget ms_hbtarget;

typedef struct ms_listener ms_listener;
struct ms_listener {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    ms_worker *w;
    uint32_t bind_idx;             /* in the worker's current generation */
    bool is_unix;
    bool open;
    bool held;                     /* its burst is spent: a connection waits in libuv until the next turn */
    uint32_t burst;                /* connections accepted in turn `turn` */
    uint64_t turn;
    ms_listener *next;             /* the worker's listeners */
};

/* A generation: one configuration of the data plane (manifest, routes,
 * payloads, TLS, targets, metrics slots, static roots), shared read-only by
 * the workers and freed when the last of them is done with it (dataplane.c). */
typedef struct ms_gen ms_gen;
typedef struct ms_wgen ms_wgen;

/* A worker's hold on a generation. Worker-local: requests count on it
 * without atomics; the worker gives the generation back once it has moved
 * to a newer one and the last request, upstream connection or HTTP/2
 * connection using this one has ended. */
struct ms_wgen {
    ms_gen *gen;
    ms_worker *w;
    const ms_manifest *m;
    const ms_route_table *routes;
    const ms_payload_set *payloads;
    ms_proc *const *procs;         /* by ship index, or NULL: every ship counts as ready */
    const ms_target *targets;      /* per ship */
    const ms_target *alt_targets;  /* per ship: its bind_alt (a surge's address), where has_bind_alt */
    const uint32_t *nomatch_slot;  /* per bind */
    uint32_t *const *route_slot;   /* per bind, per route */
    uint32_t *const *static_slot;  /* per bind, per static dir */
    int *const *static_fd;         /* per bind, per static dir */
    const uint32_t *bind_id;       /* per bind: its counters' index (by name, kept across generations) */
    struct ms_tls_server *tls;     /* NULL: no TLS bind */
    ms_payload_worker *pw;         /* this worker's instances of payloads, or NULL: no modules */
    ms_upconn **pools;             /* idle upstream connections per ship and parity (MS_POOL) */
    uint32_t *pool_len;
    uint32_t *rr;                  /* per ship: the round robin cursor of routes whose first instance it is */
    uint64_t refs;                 /* the worker's current pointer + conns, upstreams, HTTP/2 conns on it */
    bool applied;                  /* the worker has taken it (and gives it back once) */
    ms_wgen *next;                 /* the worker's generations in use */
};

static inline ms_wgen *ms_wgen_hold(ms_wgen *g)
{
    g->refs++;
    return g;
}

/* The pool of idle connections to ship s's process of parity par (its
 * bind, or its bind_alt for a surge replacement). */
#define MS_POOL(s, par) ((s) * 2u + (par))

#define MS_HOLD_MAX 1024           /* requests a worker holds for ships restarting in place */
#define MS_HOLD_POLL_MS 20         /* how often held requests look at their ship again */

/* Buffers of connections that went idle or closed, kept per worker for the
 * next request: a keep-alive connection gives its buffers back after each
 * response (an idle connection costs only its struct) and takes them again
 * for its next request, then without a malloc and a free. Bounded: about
 * as many as the connections of a busy client between two requests; only
 * the pages a request touched are resident (a few KiB each); freed with
 * the worker. */
#define MS_SPARES 64
typedef struct ms_spares {
    char *buf[MS_SPARES];
    uint32_t cap[MS_SPARES];
    unsigned n;
} ms_spares;

#define MS_SLOT_CHUNK 256          /* metrics slots per allocation; chunks never move */
#define MS_SLOT_CHUNKS 256
#define MS_BIND_IDS 256            /* bind names counted over the data plane's life (TLS handshakes) */

struct ms_worker {
    ms_dataplane *dp;
    ms_wgen *cur;                  /* the generation new requests take */
    ms_wgen *gens;                 /* every generation still in use here (cur among them) */
    uv_async_t gen_async;          /* a new generation is waiting (dataplane.c) */
    bool gen_async_open;
    unsigned id;
    uint64_t max_conns;
    uint64_t rng;
    uint64_t nups;                 /* upstream connections open */
    bool closed, loop_open, thread_started;
    int finished;                  /* atomic: the loop has ended */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop_async;
    uv_timer_t drain_timer;
    uv_timer_t date_timer;
    uv_timer_t hold_timer;         /* runs while requests are held (proxy.c) */
    uv_prepare_t accept_turn;      /* before each poll: a new turn of accepts, held listeners resumed */
    uint64_t turn;                 /* loop iterations, counted by accept_turn */
    uint32_t nlisteners_held;
    ms_conn *held, *held_tail;     /* requests waiting for a ship restarting in place (list) */
    uint32_t nheld;
    uint32_t hold_tick;
    ms_listener *listeners;        /* list; closed ones are freed by their close callback */
    bool stopping;
    bool draining;                 /* ms_dataplane_drain: listeners closed, connections end after their request */
    int drain_requested;           /* atomic: set by the control loop, seen through gen_async */
    uint64_t drain_ms;
    const char *tmpdir;            /* $TMPDIR (NULL: /tmp), for request bodies beyond memory */
    char date[40];                 /* "Date: ...\r\n" value, refreshed every second */
    size_t date_len;
    void *match_data;              /* pcre2_match_data for the router */
    ms_conn *conns;                /* all client connections (list) */
    uint64_t nconns;
    uint64_t req_seq;
    ms_alog_ring *alog;            /* this worker's access log records, or NULL: none (an inline worker) */
    struct ms_acme_board *board;   /* ACME http-01 challenges (acme/board.h), or NULL: none */
    /* payloads */
    ms_payload_result pres;        /* the request being dispatched (one at a time per worker) */
    ms_payload_header *phdrs;      /* scratch: headers handed to a payload */
    uint64_t plog_second, plog_count; /* payload log lines, rate-limited */
    uint64_t ulog_second, ulog_count, ulog_suppressed; /* upstream error lines, rate-limited */
    ms_gather gather;              /* the corked connection's pieces */
    ms_compress_cache ccache;      /* idle zstd contexts for this worker's compressed responses */
    struct ms_h2conn *h2conns;     /* HTTP/2 connections (h2.c; their streams' conns are in conns) */
    uint64_t nh2conns;
    /* WebSocket clients of bays (websocket.c) */
    ms_hub *hub;                   /* NULL: no bays */
    uv_async_t dock_async;         /* the hub has messages for this worker */
    bool dock_async_open;
    char *ws_rbuf;                 /* shared read buffer, MS_WS_RBUF bytes */
    ms_spares spare_in;            /* conns' read buffers (with the header table behind) */
    ms_spares spare_out;           /* conns' upstream request head buffers (c->out) */
    ms_idmap ws_ids;               /* conn_id -> ms_ws */
    struct ms_pmd *ws_pmd;         /* permessage-deflate's z_streams (wsdeflate.c), made when first needed */
    ms_ws_slot *ws_ctx_pool;       /* wslay contexts of clients gone idle, ready for reuse */
    unsigned ws_ctx_pooled;        /* how many: at most MS_WS_CTX_POOL */
    ms_hub_msg *ws_stage, *ws_stage_tail; /* to bays, written at the end of the loop turn (websocket.c) */
    size_t ws_stage_bytes;         /* at most MS_WS_STAGE_MAX, then written at once */
    uv_check_t ws_stage_check;     /* runs after the turn's reads: writes ws_stage */
    bool ws_stage_check_open, ws_stage_check_on;
    bool ws_stage_ok;              /* the last staged messages went straight to the bays' sockets */
    ms_ws *ws_list;
    ms_ws *ws_dirty;               /* clients with messages queued by the inbox pass */
    struct ms_wslink *ws_links;    /* the docking links of bays whose home this worker is (ws_link.c) */
    uint32_t ws_seq;
    /* HTTP bays and docking upstreams (hbay.c): links and queues by hub slot */
    ms_hbtarget **hb_targets;      /* hub->nbays entries, allocated on first use */
    /* counters */
    ms_slot_stats *slot_chunk[MS_SLOT_CHUNKS]; /* slot s at [s / MS_SLOT_CHUNK][s % MS_SLOT_CHUNK] */
    uint64_t up_errors[MS_UPERR_COUNT];
    uint64_t up_held, up_held_timeouts; /* requests held for a ship restarting in place; of those, 503 */
    uint64_t accepted, rejected;
    uint64_t open_conns;           /* gauge */
    uint64_t bodies_buffered;      /* request bodies read whole before going upstream */
    uint64_t bodies_spilled;       /* ... of which went to a temporary file */
    uint64_t bytes_spilled;        /* their bytes */
    /* TLS binds */
    char *tls_rbuf;                /* MS_TLS_RBUF bytes: ciphertext read, copied into OpenSSL at once */
    uint64_t *tls_hs;              /* per bind id: handshakes by MS_TLS_HS_* */
};

static inline ms_slot_stats *ms_worker_slot(ms_worker *w, uint32_t s)
{
    return &w->slot_chunk[s / MS_SLOT_CHUNK][s % MS_SLOT_CHUNK];
}


typedef struct ms_hdr {
    uint32_t name, name_len, val, val_len;   /* offsets into the owner's buffer */
} ms_hdr;

typedef enum ms_conn_state {
    MS_C_HEAD,          /* reading a request head */
    MS_C_BODY,          /* reading a request body whole, before an upstream is claimed */
    MS_C_UPSTREAM,      /* waiting for an upstream connection */
    MS_C_PROXY,         /* request going up / response coming down */
    MS_C_STATIC,        /* sending a file */
    MS_C_RESPONDED,     /* a local response is being written */
    MS_C_TUNNEL,        /* after 101: bytes both ways */
    MS_C_WEBSOCKET,     /* a WebSocket client of a bay (websocket.c) */
    MS_C_LINGER,        /* after a local error: write side shut, input discarded */
    MS_C_CLOSING,
} ms_conn_state;

struct ms_conn {
    ms_xport *x;                   /* the byte stream: a socket, TLS, an HTTP/2 stream; NULL once closed */
    bool h2;                       /* x is an HTTP/2 stream (h2.c) */
    bool h2_checked;               /* an h2c bind's first bytes were checked for the HTTP/2 preface */
    uv_timer_t timer;
    uint64_t timer_due;            /* loop ms when timer_cb is due; 0: none (conn.c set_timer) */
    uint64_t timer_at;             /* loop ms the uv timer is armed for while it runs lazily;
                                      UINT64_MAX while a handler runs it (ms_conn_timer_start) */
    uv_timer_cb timer_cb;          /* the timeout set_timer keeps */
    ms_worker *w;
    ms_wgen *g;                    /* the generation of the current request (held) */
    ms_conn *prev, *next;
    uint32_t bind_idx;             /* in g */
    ms_conn_state state;
    const ms_handler *handler;     /* answering the current request (chosen by dispatch), or NULL */
    http_parser parser;
    int handles_open;

    /* read buffer: the request head stays here until the response is done */
    char *buf;
    uint32_t cap, len, pos;        /* bytes held, bytes parsed */
    uint32_t head_start, head_end; /* the current request's head in buf */
    bool reading;                  /* the transport is reading */
    bool parse_paused;             /* the parser stopped at a message boundary */
    bool in_process, process_again; /* process() is running / is to run once more */
    bool eof;                      /* the client closed its side */

    /* current request */
    ms_hdr *hdr;                   /* MS_MAX_HEADERS, allocated with buf (they point into it) */
    uint16_t nhdr;
    bool last_was_value;
    uint32_t url_off, url_len;
    uint64_t body_seen;
    bool head_done, req_done, keep_alive, upgrade, has_body, chunked;
    uint64_t body_length;          /* the request's Content-Length, or ULLONG_MAX: none */
    ms_chunk_check chunk_check;    /* a chunked body, checked before http-parser sees it */
    uint32_t chunk_off;            /* in buf: bytes before it are checked; UINT32_MAX: body done */
    bool is_head_method;
    bool response_done;
    const ms_rt_route *route;
    uint32_t path_len;             /* the path part of the URL */
    bool payload_edits;            /* w->pres applies to this request's upstream head */
    ms_payload_result *pres_held;  /* w->pres copied for a request whose body is read first */
    char peer[64];                 /* client address for X-Forwarded-For */
    bool secure;                   /* the client came over TLS (X-Forwarded-Proto: https) */
    char *file_chunk;
    ms_compressor *file_comp;      /* compressing the file on the fly, or NULL */
    ms_cbuf file_cbuf;
    bool file_chunked;
    int error_status;              /* set by a parser callback that stopped the parser */
    const char *error_detail;      /* and what to tell the client, or NULL */
    uint64_t start_us;
    uint64_t up_sent_us, up_head_us; /* access log on: request head sent upstream, response head back */
    uint32_t slot;                 /* metrics slot */
    char reqid[132];
    size_t reqid_len;
    int accept_json;
    int http_minor;

    /* proxying */
    ms_upconn *up;
    size_t ship;                   /* target ship index: the instance chosen (proxy.c) */
    struct ms_proc *proc;          /* its process chosen (NULL: no fleet), counted in its inflight while up is */
    unsigned parity;               /* which of the entry's addresses: 0 bind, 1 bind_alt */
    unsigned tries;                /* instances tried after a failure, this request */
    unsigned ncand;                /* instances it could go to when chosen */
    uint64_t tried[2];             /* after a failure (tries > 0): candidates not chosen again, by bit
                                      2 * (instance - first) + parity */
    uint32_t rr_at;                /* its turn of the route's round robin, once rr_taken */
    bool rr_taken;
    uint64_t hold_until;           /* held: uv_now() at which it gets 503; 0: not held yet */
    ms_conn *hold_prev, *hold_next; /* w->held */
    uint32_t hold_tick;            /* the hold timer's tick that last looked at it */
    bool held;
    char *out;                     /* request head sent upstream (kept for a retry) */
    uint32_t out_len, out_cap;
    bool retried;
    uint64_t bytes_out;
    bool tunnel_open;              /* MS_C_TUNNEL was entered: counted when the connection closes */
    uint64_t tunnel_start_us, tunnel_bytes_up; /* its start, its bytes from the client */
    bool buffering;                /* the route reads bodies whole first (Expect is answered here) */
    bool body_buffered;            /* this request's body is in body, sent with Content-Length */
    ms_bodybuf body;

    /* writes in flight to the client (the transport's counts), and what they wait on */
    uint64_t write_pending;
    int writes_in_flight;
    bool close_after_write;
    bool linger;                   /* close with a lingering close (a local response) */
    uint64_t linger_end_us, linger_bytes;

    ms_ws *ws;                     /* MS_C_WEBSOCKET: the client's state */

    /* a request to an HTTP bay (hbay.c) */
    ms_hbtarget *hbt;              /* its bay's queue and links on this worker, or NULL */
    ms_hblink *hbl;                /* the link serving it, or NULL */
    ms_conn *hq_prev, *hq_next;    /* hbt's queue, while queued */
    bool hq_queued;
    uint64_t hq_since_ms;          /* when it joined the queue (uv_now) */
    uint16_t peer_port;            /* the client's port (0: unknown) */

    /* static file being sent */
    int file_fd;
    uint64_t file_off, file_left;
    uv_poll_t *file_poll;
};

struct ms_upconn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_connect_t connect_req;
    uv_timer_t timer;
    uint64_t timer_due;            /* loop ms when on_up_timeout is due; 0: none (proxy.c up_timer_set) */
    uint64_t timer_at;             /* loop ms the uv timer is armed for */
    ms_worker *w;
    ms_wgen *g;                    /* the generation whose ship this is (held) */
    size_t ship;
    unsigned parity;               /* its pool: MS_POOL(ship, parity) */
    struct ms_proc *proc;          /* while it has a client: the process counted (inflight) for it */
    ms_conn *client;               /* NULL when idle in the pool */
    ms_upconn *next;               /* pool list */
    int handles_open;
    http_parser parser;
    char *rbuf;                    /* the read buffer: rcap bytes, the largest response head */
    uint32_t rcap;                 /* max_response_header_size when the connection was made */
    uint32_t rlen;
    bool connected, reused, got_response_bytes, head_done, resp_done, keep_alive, reading, closing;
    bool paused_for_client;        /* waiting for client writes to drain */
    bool head_sent, chunk_to_client, final_chunk_sent, idle_in_pool;
    bool req_sent;                 /* every byte of the request is handed to the socket */
    bool tunnel;                   /* after a 101: bytes both ways */
    uint64_t ws_down_left;         /* tunnel: payload bytes still to come of the ship's frame */
    uint8_t ws_down_hdr[14], ws_down_hlen; /* tunnel: the head of the ship's next frame, so far */
    bool ws_down_closed;           /* tunnel: the ship sent a close frame */
    int writes_in_flight;
    ms_compressor *comp;           /* compressing this response, or NULL */
    ms_cbuf cbuf;
    bool comp_unflushed;           /* body bytes fed to comp since its last flush */
    uint32_t rpos;
    uint32_t reason_off, reason_len;
    bool is_head_request;
    ms_hdr hdr[MS_MAX_HEADERS];
    uint16_t nhdr;
    bool last_was_value;
    int status;
    uint64_t write_pending;
};

/* dataplane.c */
uint64_t ms_now_us(void);
const ms_proc *ms_worker_proc(const ms_wgen *g, size_t ship);
/* Gives back one hold on g (worker thread). */
void ms_wgen_drop(ms_wgen *g);
/* The index in to of bind idx of from (same name, address and TLS), or -1. */
int ms_wgen_bind_in(const ms_wgen *from, uint32_t idx, const ms_wgen *to);
void ms_worker_maybe_done(ms_worker *w);
void ms_worker_payload_log(void *arg, const ms_module *mod, int level, const char *msg, size_t len);
void ms_worker_upstream_log(ms_worker *w, const char *ship, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* conn.c */
const ms_hdr *ms_conn_header(const ms_conn *c, const char *name);
void ms_conn_make_reqid(ms_conn *c);
char *ms_spare_take(ms_spares *s, uint32_t *cap);
void ms_spare_put(ms_spares *s, char *p, uint32_t cap);
void ms_spares_free(ms_spares *s);
void ms_conn_upstream_drained(ms_conn *c);
void ms_conn_start_reading(ms_conn *c);
const char *ms_http_reason(int status);
const double *ms_bucket_bounds(void);
/* The connection waiting on l is taken (served, or refused and closed):
 * true; false: out of memory before it could be taken, it stays with libuv,
 * which stops watching l until the next try. */
bool ms_conn_accept(ms_listener *l);
/* A connection over a transport of the caller's (an HTTP/2 stream): the
 * connection owns it from now on (closes it, and is freed after its closed
 * callback). peer: the client's address as text, peer_port its port (0:
 * unknown); secure: it came over TLS.
 * NULL: out of memory (the transport is the caller's still). */
ms_conn *ms_conn_start_on(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port,
                          bool secure);
int ms_conn_adopt(ms_worker *w, int fd, uint32_t bind_idx);
void ms_conn_close(ms_conn *c);
void ms_conn_handle_closed(ms_conn *c);
void ms_conn_write(ms_conn *c, const char *data, size_t len, bool copy);
void ms_conn_cork(ms_conn *c);
void ms_conn_uncork(ms_conn *c);
char *ms_conn_cork_reserve(ms_conn *c, size_t n);
void ms_conn_cork_commit(ms_conn *c, size_t used);
void ms_conn_response_done(ms_conn *c);
void ms_conn_respond_error(ms_conn *c, int status, const char *detail);
/* extra: whole header lines ("Name: value\r\n..."), or NULL */
void ms_conn_respond_error_with(ms_conn *c, int status, const char *detail, const char *extra);
void ms_conn_resume_request_body(ms_conn *c);
void ms_conn_client_drained(ms_conn *c);
void ms_conn_record(ms_conn *c, int status);
/* The access log is on for the connection's bind (its format). */
static inline bool ms_conn_logs_access(const ms_conn *c)
{
    return c->g->m->global.binds[c->bind_idx].access_log > MS_ACCESS_LOG_OFF;
}
void ms_conn_drain_end(ms_conn *c);
void ms_conn_drain_start(ms_conn *c);

/* h2.c: HTTP/2 connections; their streams are conns over stream transports */
typedef struct ms_h2conn ms_h2conn;
/* Takes over x (a socket on an h2c bind, or TLS after ALPN h2), with the
 * bytes already read from it (pre); false: x is still the caller's. */
bool ms_h2_start(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port, bool secure);
bool ms_h2_start_pre(ms_wgen *g, uint32_t bind_idx, ms_xport *x, const char *peer, uint16_t peer_port, bool secure,
                     const char *pre, size_t pre_len);
/* A conn's first bytes on an h2c bind: 1: the HTTP/2 preface, the connection
 * became an HTTP/2 one (c is closing); -1: a prefix of it, read more; 0: HTTP/1.1. */
int ms_h2c_detect(ms_conn *c);
void ms_h2_worker_stop(ms_worker *w);
/* After a reload: connections whose bind the worker's current generation
 * no longer has get a GOAWAY (their streams under way finish). */
void ms_h2_worker_reloaded(ms_worker *w);
void ms_h2_worker_close_all(ms_worker *w);
/* conn.c: hands the transport to another owner; the conn closes without it */
ms_xport *ms_conn_release_xport(ms_conn *c);

/* conn.c: payloads */
size_t ms_conn_payload_headers(ms_conn *c);

/* websocket.c */
/* A message from a bay for a client of this worker (m stays the caller's);
 * the clients it made dirty are written by ms_ws_flush_dirty. */
void ms_ws_deliver(ms_worker *w, ms_hub_msg *m);
/* The same from its parts (data stays the caller's: the home worker's
 * link delivers a Cargo for its own client from its read buffer). */
void ms_ws_deliver_to(ms_worker *w, uint8_t kind, uint32_t bay, uint32_t gen, uint32_t conn_id, uint16_t code,
                      const uint8_t *data, size_t len);
void ms_ws_flush_dirty(ms_worker *w);
/* ws_link.c: the reading side of the docking links of bays whose home is
 * this worker. attach: MS_HUB_LINK_ATTACH (its fd and lost message are
 * taken); gone: the link of (bay, gen or older) ended on the control loop. */
typedef struct ms_wslink ms_wslink;
void ms_wslink_attach(ms_worker *w, ms_hub_msg *m);
void ms_wslink_gone(ms_worker *w, uint32_t bay, uint32_t gen);
void ms_wslink_resume(ms_worker *w);
void ms_wslink_worker_close(ms_worker *w);
bool ms_ws_worker_init(ms_worker *w);
void ms_ws_worker_close(ms_worker *w);
void ms_ws_worker_free(ms_worker *w);

/* hbay.c */
/* The hub woke the worker: queues waiting for a link look again, and an
 * idle link gives way to another worker's starved queue. */
void ms_hbay_worker_wake(ms_worker *w);
/* Drain or stop: links without a request close. */
void ms_hbay_close_idle(ms_worker *w);
/* The worker's loop ends: every link and timer closes; then the free. */
void ms_hbay_worker_close(ms_worker *w);
void ms_hbay_worker_free(ms_worker *w);
/* Per-bay series of HTTP bays and docking upstreams (links, queue,
 * results, errors) from the hub, for the ships of m. */
void ms_hbay_render_metrics(const ms_manifest *m, ms_proc *const *procs, const ms_hub *hub, ms_prom *p);

/* proxy.c */
size_t ms_chunk_header(size_t len, char out[24]);
size_t ms_u64_dec(uint64_t v, char out[24]);
void ms_pool_close_all(ms_worker *w);
/* Idle connections of from go to to when their ship is the same there
 * (name and address); the others close. */
void ms_pool_move(ms_wgen *from, ms_wgen *to);

/* The request-phase payloads' edits for the request's upstream head (NULL:
 * none): kept apart from the worker's scratch while the body is read. */
const ms_payload_result *ms_conn_payload_result(const ms_conn *c);
/* Response-phase payloads whose patterns match c's request path, in
 * manifest order, on a reply head of status whose fields the caller has put
 * in w->phdrs[0..nheaders) (after resetting w->pres; c->g->pw is set).
 * false: one failed closed (detail says which; the caller answers 500).
 * *edits: the result to apply, or left as it was when there is none. */
bool ms_proxy_response_payloads(ms_conn *c, int status, size_t nheaders, char *detail, size_t dlen,
                                const ms_payload_result **edits);
/* ms_resp_head's keep and added callbacks over a payload result. */
struct ms_field;
bool ms_proxy_edits_keep(const void *arg, const char *name, size_t len);
bool ms_proxy_edits_added(const void *arg, size_t i, struct ms_field *out);

#endif
