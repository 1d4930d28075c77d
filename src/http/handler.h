/* handler.h: request handlers behind one table of operations.
 *
 * The data plane has three layers. The transport carries a connection's
 * bytes (a socket, TLS, an HTTP/2 stream). The protocol session (conn.c for
 * HTTP/1.1) turns those bytes into requests and owns the connection's state
 * machine: parsing, limits, routing, local errors, keep-alive, lingering
 * close. A request handler answers one routed request: static files
 * (static_send.c), a payload's own answer (payload_answer.c), the proxy to a
 * ship (proxy.c), a WebSocket client of a bay (websocket.c), a request to
 * an HTTP bay (hbay.c).
 *
 * The session chooses the handler in its dispatch (c->handler) and from
 * then on calls it only through its ms_handler table; it never names a
 * handler's functions. A handler reads the request from the connection
 * (c->buf, c->hdr, c->url_off, c->route, ...) but never writes the
 * session's state: it writes the response with ms_conn_write / cork /
 * uncork, counts it with ms_conn_record, ends it with
 * ms_conn_response_done or ms_conn_responded, answers an error with
 * ms_conn_respond_error, and tells the session of anything else through
 * the named events below (each is one transition of the session).
 *
 * A NULL operation is one the handler does not need. Every operation is
 * called on the worker's thread; none is called once the connection is
 * closing, except abort. */
#ifndef MS_HTTP_HANDLER_H
#define MS_HTTP_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "manifest/manifest.h"

typedef struct ms_conn ms_conn;

/* What dispatch found for a static dir: the handler's part of the route. */
typedef struct ms_handler_arg {
    const ms_static_dir *dir;      /* the dir whose prefix covers the path */
    int dir_fd;                    /* its root directory, or -1 */
    const char *path;              /* the normalised path */
    size_t path_len;
} ms_handler_arg;

typedef struct ms_handler {
    /* Answer the request whose head is complete (arg: static dirs only,
     * else NULL). false: declined, write nothing (no such file): dispatch
     * goes on. A handler that asked for the body first
     * (ms_conn_read_body_first) is started again once it is held. */
    bool (*start)(ms_conn *c, const ms_handler_arg *arg);
    /* Request body bytes as the session parses them, while the handler
     * streams the request (ms_conn_stream_request); the bytes are valid
     * during the call only. */
    void (*body)(ms_conn *c, const char *data, size_t len);
    /* The request's last byte is parsed (also for a request without a body). */
    void (*body_end)(ms_conn *c);
    /* The handler cannot take body bytes now: the session stops reading the
     * client until ms_conn_upstream_drained. */
    bool (*body_backed_up)(const ms_conn *c);
    /* Bytes from the client after the connection changed protocols
     * (ms_conn_switch_protocols, ms_conn_hand_over); valid during the call only. */
    void (*data)(ms_conn *c, const char *data, size_t len);
    /* Every write to the client has left: write more, or finish. */
    void (*drained)(ms_conn *c);
    /* The status of a response whose head has gone to the client and whose
     * end has not; 0: none. */
    int (*partial_status)(const ms_conn *c);
    /* The worker begins to drain: end gracefully what can be (a close frame). */
    void (*shutdown)(ms_conn *c);
    /* The drain's time is up and the response was under way: end the
     * connection (NULL: the session closes it). */
    void (*drain_end)(ms_conn *c);
    /* The request is given up or the connection is closing: let go of
     * everything held for it, write nothing. May be called more than once. */
    void (*abort)(ms_conn *c);
} ms_handler;

/* The handlers, chosen by dispatch. */
extern const ms_handler ms_handler_static;  /* static_send.c: a file of a static dir */
extern const ms_handler ms_handler_block;   /* payload_answer.c: a payload answered the request */
extern const ms_handler ms_handler_proxy;   /* proxy.c: a ship, over a pooled upstream connection */
extern const ms_handler ms_handler_bay;     /* websocket.c: a WebSocket client of a bay */
extern const ms_handler ms_handler_hbay;    /* hbay.c: an HTTP bay, over docking v3 links */

/* ---- the session's events, for handlers (conn.c) */
/* The connection ends once this response is written (no keep-alive);
 * linger: the rest of the request may still be on its way, so it is read
 * and discarded for a while before the close (a lingering close). */
void ms_conn_end_after_response(ms_conn *c, bool linger);
/* The whole response is written or queued and the handler is done with
 * the request: the session finishes the writes and goes on. */
void ms_conn_responded(ms_conn *c);
/* The response's head is written; the handler writes its body as the
 * client takes it (its drained operation). */
void ms_conn_response_streaming(ms_conn *c);
/* Read the request's body whole before the handler starts (memory, then a
 * temporary file: c->body; Expect: 100-continue answered; body timeout),
 * then start the handler again with c->body_buffered set. */
void ms_conn_read_body_first(ms_conn *c);
/* The handler prepares its answer: the request's body waits. */
void ms_conn_hold_request(ms_conn *c);
/* The handler takes the request's body as it is parsed (its body
 * operations) and answers; ms_conn_resume_request_body starts the parse. */
void ms_conn_stream_request(ms_conn *c);
/* A 101 went to the client: from now on bytes go both ways untouched,
 * the client's to the handler's data operation. Returns the bytes the
 * client sent behind its request (valid until the next read). */
size_t ms_conn_switch_protocols(ms_conn *c, const char **rest);
/* A 101 went to the client and the handler keeps the connection as a
 * message stream: the session lets go of its request buffers and feeds the
 * bytes the client sent behind its request to the data operation; the
 * handler starts reading (ms_conn_start_reading) when it is ready. */
void ms_conn_hand_over(ms_conn *c);
/* The connection ends with these bytes, after what is queued (copied). */
void ms_conn_end_with(ms_conn *c, const char *data, size_t len);
/* Reading the client pauses (ms_conn_start_reading resumes it). */
void ms_conn_stop_reading(ms_conn *c);
/* The connection's timer, lent to the handler that keeps the connection
 * after a 101 (t->data is the connection). */
void ms_conn_timer_start(ms_conn *c, uv_timer_cb cb, uint64_t timeout_ms, uint64_t repeat_ms);
/* Count the response now, with body_bytes about to be sent. */
void ms_conn_record_ahead(ms_conn *c, int status, uint64_t body_bytes);

/* ---- what handlers may ask of the session */
bool ms_conn_is_closing(const ms_conn *c);
uint64_t ms_conn_write_pending(const ms_conn *c);  /* bytes written, not yet left */
bool ms_conn_writing(const ms_conn *c);             /* writes are in flight */
/* The socket under the connection, for sendfile(2); -1 when bytes must go
 * through ms_conn_write (TLS, an HTTP/2 stream, none). */
int ms_conn_socket_fd(const ms_conn *c);
/* n bytes went to the client around the session (sendfile(2) to its socket). */
void ms_conn_sent_around(ms_conn *c, uint64_t n);

#endif
