/* transport.h: the byte stream under a client connection. A transport
 * carries bytes for an owner (an HTTP/1.1 connection, an HTTP/2 session)
 * and tells it what happened through the owner's callbacks; the owner
 * drives it through the ops. Implementations: a plain socket (TCP or Unix,
 * transport.c), TLS over a socket transport (transport_tls.c), and an
 * HTTP/2 stream (h2.c).
 *
 * Contract, for every implementation:
 * - read_start/read_stop: while reading, the transport asks the owner for a
 *   buffer (alloc) and reports bytes put into it (read, n > 0), or the end
 *   (read, n < 0: UV_EOF, an error, or MS_XPORT_NOT_TLS). A read callback
 *   never runs from inside an op: only from the loop.
 * - write: takes what it can now and copies the rest into its own queue, so
 *   the caller's buffers are free once it returns. write_pending and
 *   writes_in_flight say what is still queued; when queued bytes have left
 *   (or failed: status < 0) the owner's written callback runs. A failed
 *   write also comes back as a negative return, without a callback.
 * - shutdown: ends the write side once the queue has left (TLS sends its
 *   close_notify first); a failure comes back through written (status < 0).
 * - close: from then on no callback but closed, which comes exactly once,
 *   from the loop; the transport frees itself after it.
 * - fileno: the socket for sendfile(2), or -1 when bytes must go through
 *   write (TLS, HTTP/2). peer: the client's address, when it has one. */
#ifndef MS_HTTP_TRANSPORT_H
#define MS_HTTP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct ms_xport ms_xport;

/* read: the client spoke plain text on a TLS transport. The transport now
 * passes bytes through unencrypted so that the owner can answer it (a 400
 * that says to use https) and close. */
#define MS_XPORT_NOT_TLS UV_EPROTO

typedef struct ms_xport_cbs {
    void (*alloc)(void *owner, size_t suggested, uv_buf_t *b); /* b->len 0: no memory, reading ends */
    void (*read)(void *owner, ssize_t n, const uv_buf_t *b);
    void (*written)(void *owner, int status);
    void (*closed)(void *owner);
    /* optional: the TLS handshake is done; alpn is the protocol chosen
     * (not NUL-terminated; len 0: none) */
    void (*secured)(void *owner, const unsigned char *alpn, unsigned len);
} ms_xport_cbs;

typedef struct ms_xport_ops {
    int (*read_start)(ms_xport *x);
    void (*read_stop)(ms_xport *x);
    int (*write)(ms_xport *x, const uv_buf_t *bufs, unsigned n);
    int (*shutdown)(ms_xport *x);
    void (*close)(ms_xport *x);
    int (*fileno)(const ms_xport *x);
    int (*peer)(const ms_xport *x, struct sockaddr_storage *ss);
} ms_xport_ops;

struct ms_xport {
    const ms_xport_ops *ops;
    const ms_xport_cbs *cbs;
    void *owner;
    uint64_t write_pending;        /* bytes taken by write that have not left yet */
    int writes_in_flight;          /* queued writes (0: nothing pending) */
    bool reading;
    bool closing;
};

/* Hand the transport to another owner (between callbacks). */
static inline void ms_xport_set_owner(ms_xport *x, const ms_xport_cbs *cbs, void *owner)
{
    x->cbs = cbs;
    x->owner = owner;
}

static inline int ms_xport_read_start(ms_xport *x) { return x->ops->read_start(x); }
static inline void ms_xport_read_stop(ms_xport *x) { x->ops->read_stop(x); }
static inline int ms_xport_write(ms_xport *x, const uv_buf_t *bufs, unsigned n) { return x->ops->write(x, bufs, n); }
static inline int ms_xport_shutdown(ms_xport *x) { return x->ops->shutdown(x); }
static inline void ms_xport_close(ms_xport *x) { x->ops->close(x); }
static inline int ms_xport_fileno(const ms_xport *x) { return x->ops->fileno(x); }
static inline int ms_xport_peer(const ms_xport *x, struct sockaddr_storage *ss) { return x->ops->peer(x, ss); }

/* The socket transport: a TCP or Unix stream socket on loop. Accept into
 * it, or open a connected descriptor; on failure close it (closed runs). */
ms_xport *ms_xport_socket_new(uv_loop_t *loop, bool is_unix, const ms_xport_cbs *cbs, void *owner);
int ms_xport_socket_accept(ms_xport *x, uv_stream_t *listener);
int ms_xport_socket_open(ms_xport *x, int fd);

/* The TLS transport over inner (a socket transport, which it takes over:
 * its owner becomes the owner of the new transport) with ssl (freed with
 * it). scratch: a buffer for socket reads, copied out at once, so one can
 * serve every connection of a thread. counts: handshake counters indexed by
 * MS_TLS_HS_* (added to atomically), or NULL. The handshake starts at once;
 * the owner's secured callback says when it is done. NULL: out of memory
 * (inner and ssl are the caller's still). */
enum { MS_TLS_HS_OK, MS_TLS_HS_FAILED, MS_TLS_HS_RESUMED, MS_TLS_HS_COUNT };
struct ssl_st;
ms_xport *ms_xport_tls_new(uv_loop_t *loop, ms_xport *inner, struct ssl_st *ssl, char *scratch, size_t scratch_len,
                           uint64_t *counts);

/* The client's address as text ("unix" for Unix sockets, "unknown" when
 * none can be had); the port, or 0. */
int ms_xport_peer_name(const ms_xport *x, char *out, size_t cap);

#endif
