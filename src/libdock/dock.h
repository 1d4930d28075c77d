/* dock.h: libdock, a small C library for writing bays: programs that serve
 * WebSocket clients (docking v1, dock_bay_*) or HTTP requests (docking v3,
 * dock_http_* and dock_link_*, below) through Mothership over the docking
 * protocol (docs/docking-protocol.md; usage in docs/libdock.md).
 *
 * A dock_bay owns the bay's listening Unix socket and at most one link (the
 * connection Mothership makes to it). It sends Dock, waits for Moored, keeps
 * the config table and the agreed features, decodes Mothership's frames into
 * callbacks and queues the bay's frames in a bounded output buffer flushed
 * whenever the socket is writable. Plain POSIX sockets and poll(); no
 * threads. Use it either with the blocking dock_bay_run(), or from the bay's
 * own poll loop with dock_bay_fd() / dock_bay_events() / dock_bay_timeout()
 * / dock_bay_process().
 *
 * Every fallible call takes an optional caller-provided buffer (err,
 * err_len; NULL/0 to ignore) that receives a one-line message on failure.
 * A dock_bay is not thread-safe; only dock_bay_stop() may be called from a
 * signal handler. */
#ifndef LIBDOCK_DOCK_H
#define LIBDOCK_DOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DOCK_DEFAULT_MAX_FRAME (16u * 1024u * 1024u)      /* payload bytes */
#define DOCK_DEFAULT_MAX_PENDING ((size_t)16 * 1024 * 1024) /* queued output bytes */
#define DOCK_DEFAULT_MOORED_TIMEOUT_MS 10000

/* Results. Negative values are errors; the err buffer says more. */
typedef enum {
    DOCK_OK = 0,
    DOCK_STOPPED = 1,        /* dock_bay_run: dock_bay_stop() was called */
    DOCK_LINK_ENDED = 2,     /* run/process: the link ended (reason in err) */
    DOCK_ERR_ARG = -1,       /* invalid argument or option */
    DOCK_ERR_SYS = -2,       /* a system call failed (errno text in err) */
    DOCK_ERR_NOMEM = -3,     /* out of memory */
    DOCK_ERR_NOLINK = -4,    /* not docked: no link, or Moored not received yet */
    DOCK_ERR_BINARY = -5,    /* binary message, but "binary" was not agreed */
    DOCK_ERR_TOOBIG = -6,    /* message larger than the frame limit */
    DOCK_ERR_FULL = -7,      /* output buffer cap reached; retry after flushing */
    DOCK_ERR_BUSY = -8,      /* called from a callback where that is not allowed */
    DOCK_ERR_STATE = -9,     /* HTTP link: a call out of order (a second reply, a write
                              * before the reply or after FIN, READY before the reply ended) */
} dock_status;

typedef struct dock_bay dock_bay;

/* A name/value pair (config entries, request headers). */
typedef struct {
    const char *name;
    const char *value;
} dock_kv;

/* Callbacks, all optional. Strings and byte ranges are valid only during the
 * call. Callbacks may send (dock_bay_send_*), look up config and call
 * dock_bay_stop(); they must not call dock_bay_run/process/flush/close. */
typedef struct {
    /* Moored received: the bay is docked (config and features are known). */
    void (*docked)(dock_bay *bay, void *user);
    /* A new client. headers: names as the client spelled them (compare
     * case-insensitively, e.g. with dock_header_get). */
    void (*boarding)(dock_bay *bay, uint32_t conn_id, const char *path,
                     const char *remote_addr, const dock_kv *headers, size_t n_headers,
                     void *user);
    /* A whole message from a client: text (valid UTF-8) or binary. */
    void (*cargo)(dock_bay *bay, uint32_t conn_id, const uint8_t *data, size_t len,
                  bool binary, void *user);
    /* The client is gone (its close code, 1006 if it vanished). */
    void (*disembark)(dock_bay *bay, uint32_t conn_id, uint16_t code, const char *reason,
                      void *user);
    /* The link ended (Mothership closed it, protocol error, I/O error, no
     * Moored in time). Queued output is dropped; the listening socket stays
     * open and the next dock_bay_run/process accepts Mothership again. */
    void (*link_ended)(dock_bay *bay, const char *reason, void *user);
} dock_callbacks;

typedef struct {
    const char *socket_path;   /* NULL: $MS_SOCKET_PATH (required then) */
    const char *ship;          /* NULL: $MS_SHIP, else the socket file's name without ".sock" */
    bool v1_only;              /* dock as a plain v1 bay: no "features", no binary */
    bool resume;               /* offer "resume": Mothership keeps the clients while this bay
                                * restarts and boards them again (see dock_bay_boarding_resumed) */
    uint32_t max_frame;        /* largest frame payload either way; 0: 16 MiB */
    size_t max_pending;        /* output buffer cap in bytes; 0: 16 MiB */
    int moored_timeout_ms;     /* wait for Moored after Dock; 0: 10 s, <0: forever */
    dock_callbacks cb;
    void *user;                /* passed to every callback */
} dock_options;

/* Creates the socket's directory if needed (mode 0700), removes a stale
 * socket file (never a file of another kind), binds and listens. NULL on
 * failure. opt may be NULL (all defaults, no callbacks). */
dock_bay *dock_bay_open(const dock_options *opt, char *err, size_t err_len);
/* Closes the link and the listening socket and removes the socket file
 * (if it is still the one this bay created). NULL is fine. */
void dock_bay_close(dock_bay *bay);

/* ---- blocking loop ---- */

/* Accepts Mothership (when there is no link), docks and dispatches frames
 * until the link ends (DOCK_LINK_ENDED, reason in err; call again to accept
 * the next link) or dock_bay_stop() is called (DOCK_STOPPED). Negative on a
 * failure of the listening socket or of poll(). */
int dock_bay_run(dock_bay *bay, char *err, size_t err_len);
/* Makes dock_bay_run return DOCK_STOPPED (now or as soon as it runs).
 * Sticky. Async-signal-safe. */
void dock_bay_stop(dock_bay *bay);
bool dock_bay_stop_requested(const dock_bay *bay);
/* Installs SIGTERM and SIGINT handlers that call dock_bay_stop(bay) (one
 * bay per process; dock_bay_close restores the default actions). */
int dock_bay_stop_on_signals(dock_bay *bay, char *err, size_t err_len);

/* ---- integration in the bay's own poll loop ----
 * Each iteration: poll dock_bay_fd() for dock_bay_events() with a timeout no
 * longer than dock_bay_timeout(), then call dock_bay_process() with the
 * revents (0 if the fd was not ready). The fd changes when a link is
 * accepted or ends: query it every iteration. */
int dock_bay_fd(const dock_bay *bay);
short dock_bay_events(const dock_bay *bay);
/* Milliseconds until the Moored deadline, -1 when there is none. */
int dock_bay_timeout(const dock_bay *bay);
/* Accepts, reads and dispatches what is ready, flushes output. DOCK_OK,
 * DOCK_LINK_ENDED (reason in err; the link_ended callback has run), or
 * negative on a failure of the listening socket. */
int dock_bay_process(dock_bay *bay, short revents, char *err, size_t err_len);

/* ---- sending (only once docked) ----
 * Frames are queued whole and written as the socket accepts them. A send
 * that would take the queued bytes over max_pending is refused with
 * DOCK_ERR_FULL (an empty queue always takes one frame within max_frame).
 * While half of max_pending is queued, the bay reads no more frames from
 * Mothership (dock_bay_events leaves out POLLIN): backpressure, not loss.
 * Sending to a departed conn_id is harmless: Mothership drops it. */
int dock_bay_send_cargo(dock_bay *bay, uint32_t conn_id, const void *data, size_t len,
                        bool binary, char *err, size_t err_len);
int dock_bay_send_text(dock_bay *bay, uint32_t conn_id, const char *text, char *err,
                       size_t err_len);
/* Closes that client with this close code and reason (NULL: ""). */
int dock_bay_send_disembark(dock_bay *bay, uint32_t conn_id, uint16_t code,
                            const char *reason, char *err, size_t err_len);
/* Writes queued output, waiting up to timeout_ms (<0: no limit) for the
 * socket. DOCK_OK when the queue is empty, DOCK_ERR_FULL when time ran out,
 * DOCK_LINK_ENDED if the link broke, DOCK_ERR_NOLINK without a link. */
int dock_bay_flush(dock_bay *bay, int timeout_ms, char *err, size_t err_len);
/* Bytes queued and not yet written. */
size_t dock_bay_pending(const dock_bay *bay);

/* ---- state ---- */

bool dock_bay_docked(const dock_bay *bay);
/* Whether binary messages were agreed on this link (the "binary" feature). */
bool dock_bay_binary(const dock_bay *bay);
/* Whether "resume" was agreed on this link. */
bool dock_bay_resume(const dock_bay *bay);
/* Inside the boarding callback: true when this Boarding is a client that
 * an earlier bay process (or link) had, kept open by Mothership while the
 * bay was away ("resumed": true). Messages that earlier process had not
 * read are not delivered again. False anywhere else. */
bool dock_bay_boarding_resumed(const dock_bay *bay);
const char *dock_bay_ship(const dock_bay *bay);
const char *dock_bay_socket_path(const dock_bay *bay);
/* The config table of the last Moored (kept after its link ends, until the
 * next Moored). NULL when the key is absent. */
const char *dock_bay_config(const dock_bay *bay, const char *key);
size_t dock_bay_config_count(const dock_bay *bay);
/* Entry i (0 <= i < count), NULL past the end. */
const dock_kv *dock_bay_config_at(const dock_bay *bay, size_t i);

/* Value of a header, name compared case-insensitively; NULL when absent. */
const char *dock_header_get(const dock_kv *headers, size_t n_headers, const char *name);
const char *dock_status_name(int status);


/* ==================================================================
 * HTTP bays (docking v3): dock_http_* and dock_link_* (dock_http.c)
 *
 * The bay listens on $MS_SOCKET_PATH; Mothership connects one link per bay
 * thread. Each link docks (Dock v3 with the bay's pid and threads, Moored
 * v3 with the config) and then carries one request at a time: the request
 * head as CGI params (HAIL), its body (HAULs), the bay's response head
 * (REPLY), the response body (HAULs, the last with FIN) and READY.
 *
 * Blocking calls over plain POSIX sockets: a thread per link is the
 * natural shape (each of dock_http_threads() threads loops on
 * dock_http_accept, then on dock_link_next). dock_http_accept may be called
 * from many threads at once; a dock_link belongs to one thread, except that
 * in a tunnel one thread may read (dock_link_read) while another writes
 * (dock_link_write, dock_link_finish).
 * ================================================================== */

#define DOCK_HTTP_CHUNK (64u * 1024u)          /* HAUL data per frame the bay sends, at most */
#define DOCK_HTTP_MAX_FRAME (1024u * 1024u)    /* any frame's payload, either way */
#define DOCK_HTTP_DEFAULT_THREADS 4u
#define DOCK_HTTP_MAX_THREADS 1024u

/* REPLY kinds. */
typedef enum {
    DOCK_REPLY_EMPTY = 0,    /* no body (HEAD, 1xx, 204, 304) */
    DOCK_REPLY_STREAM = 1,   /* body by dock_link_write, ended by dock_link_finish */
    DOCK_REPLY_FILE = 2,     /* status 200; Mothership sends the file (dock_link_reply_file) */
    DOCK_REPLY_TUNNEL = 4,   /* an upgrade (101): bytes both ways; the link closes at its end */
} dock_reply_kind;

typedef struct dock_http dock_http;
typedef struct dock_link dock_link;

/* A HAIL param. Binary-safe (the lengths count), and NUL-terminated too
 * for convenience (a value holding a NUL reads short as a C string). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} dock_param;

typedef struct {
    const char *socket_path;   /* NULL: $MS_SOCKET_PATH (required then) */
    const char *ship;          /* NULL: $MS_SHIP, else the socket file's name without ".sock" */
    unsigned threads;          /* announced in each Dock; 0: $MS_BAY_THREADS, else 4 */
    int moored_timeout_ms;     /* wait for Moored after Dock; 0: 10 s, <0: forever */
} dock_http_options;

/* Creates the socket's directory if needed (mode 0700), removes a stale
 * socket file (never a file of another kind), binds and listens (backlog
 * 1024). NULL on failure. opt may be NULL (all defaults). */
dock_http *dock_http_open(const dock_http_options *opt, char *err, size_t err_len);
/* Closes the listening socket and removes the socket file (if it is still
 * the one this bay created, and this is the process that opened it: forked
 * workers leave it to their parent). Links stay open: close them first. */
void dock_http_close(dock_http *bay);

/* Threads to run: the options', else $MS_BAY_THREADS, else 4 (1..1024). */
unsigned dock_http_threads(const dock_http *bay);
/* $MS_BAY_WORKERS: processes Mothership asks the bay to fork (0: none, the
 * bay serves in this process). libdock does not fork; the bay may, after
 * dock_http_open (the children share the listening socket). */
unsigned dock_http_workers(const dock_http *bay);
const char *dock_http_ship(const dock_http *bay);
const char *dock_http_socket_path(const dock_http *bay);

/* Waits for Mothership to connect, sends Dock and reads Moored. DOCK_OK
 * with *out set (close it with dock_link_close); DOCK_LINK_ENDED when that
 * connection failed to dock (reason in err; call again); DOCK_STOPPED after
 * dock_http_stop; negative when the listening socket fails. */
int dock_http_accept(dock_http *bay, dock_link **out, char *err, size_t err_len);
/* The same handshake on a stream socket that is already connected to
 * Mothership (an inherited fd, or a socketpair in tests). The link owns fd
 * from then on, even on failure. */
int dock_http_adopt(dock_http *bay, int fd, dock_link **out, char *err, size_t err_len);
/* Makes dock_http_accept return DOCK_STOPPED, and dock_link_next on an idle
 * link (between requests): the bay drains. Sticky; async-signal-safe. */
void dock_http_stop(dock_http *bay);
bool dock_http_stop_requested(const dock_http *bay);
/* Installs SIGTERM and SIGINT handlers that call dock_http_stop(bay) (one
 * bay per process; dock_http_close restores the default actions). */
int dock_http_stop_on_signals(dock_http *bay, char *err, size_t err_len);

/* ---- a link ---- */

/* Closes the link (a request in progress is aborted: Mothership sees the
 * link break). NULL is fine. */
void dock_link_close(dock_link *link);
/* The config table of this link's Moored; NULL when the key is absent. */
const char *dock_link_config(const dock_link *link, const char *key);
size_t dock_link_config_count(const dock_link *link);
const dock_kv *dock_link_config_at(const dock_link *link, size_t i);

/* Waits for the next request (HAIL). First ends the current one: sends
 * READY if the reply is complete and READY was not sent yet; a request with
 * no reply gets the 500 of dock_link_fail; unread request body is skipped.
 * DOCK_OK: a request is here. DOCK_LINK_ENDED: Mothership closed the link,
 * it broke, a protocol error, a reply left unfinished after its head, or a
 * tunnel ended (reason in err): close the link. DOCK_STOPPED:
 * dock_http_stop was called while the link was idle: close it. */
int dock_link_next(dock_link *link, char *err, size_t err_len);

/* The current request. */
uint32_t dock_link_request_id(const dock_link *link);
uint64_t dock_link_content_length(const dock_link *link);
/* The value of a HAIL param by exact name ("PATH_INFO", "HTTP_HOST"), NULL
 * when absent; the first one if a name repeats. */
const char *dock_link_param(const dock_link *link, const char *name);
size_t dock_link_param_count(const dock_link *link);
const dock_param *dock_link_param_at(const dock_link *link, size_t i);

/* Reads request body bytes as they come (then, in a tunnel, the client's
 * bytes). DOCK_OK with *got > 0, or *got == 0 at the end (FIN). A protocol
 * error (more or less body than announced, a HAUL for another request, ...)
 * or a broken link: DOCK_LINK_ENDED. */
int dock_link_read(dock_link *link, void *buf, size_t cap, size_t *got, char *err, size_t err_len);
/* Reads the whole request body into a malloc'd buffer (*body, NUL-terminated;
 * free it; NULL when empty). A Content-Length over max: DOCK_ERR_TOOBIG,
 * nothing read (reply 413 and let dock_link_next skip it). */
int dock_link_read_body(dock_link *link, size_t max, uint8_t **body, size_t *len, char *err,
                        size_t err_len);

/* Sends the response head (REPLY). Status 100..599; kind EMPTY, STREAM or
 * TUNNEL (files: dock_link_reply_file). Header names must be tokens and
 * values free of CR and LF (DOCK_ERR_ARG); a head over 1 MiB: DOCK_ERR_TOOBIG.
 * Nothing is sent on an error. */
int dock_link_reply(dock_link *link, uint16_t status, dock_reply_kind kind, const dock_kv *headers,
                    size_t n_headers, char *err, size_t err_len);
/* REPLY 200 of kind file: Mothership sends the file at path (absolute; it
 * must be a regular file inside the bay's file roots, else the client gets
 * a 502). */
int dock_link_reply_file(dock_link *link, const dock_kv *headers, size_t n_headers,
                         const char *path, char *err, size_t err_len);
/* Response body (stream) or tunnel bytes, cut into HAULs of at most 64 KiB.
 * Blocks until written. DOCK_LINK_ENDED if the link broke. */
int dock_link_write(dock_link *link, const void *data, size_t len, char *err, size_t err_len);
/* The last HAUL (FIN, no data): the body is complete, or the bay's side of
 * a tunnel is closed. */
int dock_link_finish(dock_link *link, char *err, size_t err_len);
/* A whole response at once: REPLY, then body (the last HAUL carries FIN).
 * With no body for HEAD, 1xx, 204 and 304 the reply is of kind empty. */
int dock_link_respond(dock_link *link, uint16_t status, const dock_kv *headers, size_t n_headers,
                      const void *body, size_t len, char *err, size_t err_len);
/* The app failed. Before the head: REPLY 500 text/plain "Internal Server
 * Error" and READY, the link stays usable (DOCK_OK). After it: the link is
 * broken off with no FIN, so the client sees an aborted response
 * (DOCK_LINK_ENDED). */
int dock_link_fail(dock_link *link, char *err, size_t err_len);
/* READY: the app has finished with the request (its after-response work
 * done). Only after a complete reply (not for a tunnel). dock_link_next
 * sends it when the bay has not. */
int dock_link_ready(dock_link *link, char *err, size_t err_len);
/* The link's socket (for poll in a tunnel; do not read or write it). */
int dock_link_fd(const dock_link *link);
/* Whether dock_link_read has bytes buffered that poll would not show. */
bool dock_link_buffered(const dock_link *link);

#ifdef __cplusplus
}
#endif

#endif
