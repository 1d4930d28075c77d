/* dock.h: libdock, a small C library for writing bays: programs that serve
 * WebSocket clients through Mothership over the docking protocol
 * (docs/docking-protocol.md; usage in docs/libdock.md).
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

#ifdef __cplusplus
}
#endif

#endif
