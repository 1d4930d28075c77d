/* h2_session.h: an HTTP/2 server session without sockets (nghttp2), whose
 * streams are HTTP/1.1 exchanges.
 *
 * The session is fed the client's bytes (ms_h2_session_recv) and gives back
 * the bytes to send (ms_h2_session_send). Each request stream is turned into
 * HTTP/1.1 request bytes: the request line, Host from :authority, the
 * header fields (cookies joined), framing (the client's Content-Length, or
 * chunked when it gave none and a body follows) and `Connection: close`, then
 * the body. The exchange attached to the stream (in the data plane: an
 * ms_conn over a stream transport, see h2.c) reads those bytes and writes an
 * HTTP/1.1 response, which is parsed (http-parser, response mode) into
 * HEADERS (1xx non-final ones too) and DATA; a response that ends before its
 * last byte resets the stream (INTERNAL_ERROR), so a short body is never
 * passed off as whole. Request trailers are dropped (their HEADERS frame only
 * ends the body); response trailers are dropped too.
 *
 * An extended CONNECT (RFC 8441, `:protocol websocket`) becomes an HTTP/1.1
 * WebSocket upgrade (GET with a synthesized Sec-WebSocket-Key); its 101 is
 * answered as 200, then bytes pass both ways as DATA.
 *
 * Backpressure: the request's DATA is acknowledged to the client (window
 * updates) only as the exchange reads it; a stream's response bytes wait in
 * a bounded buffer and count as pending for the exchange until nghttp2 has
 * taken them, which the session's owner does only while its own transport
 * keeps up.
 *
 * Callbacks into the owner may come from inside ms_h2_session_recv/send;
 * the owner must not call back into the session from them (it defers). */
#ifndef MS_H2_SESSION_H
#define MS_H2_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ms_h2_config {
    uint32_t max_concurrent_streams;  /* SETTINGS_MAX_CONCURRENT_STREAMS */
    uint32_t max_header_list_size;    /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced: more -> 431 */
    uint32_t header_table_size;       /* SETTINGS_HEADER_TABLE_SIZE (HPACK, the client's encoder) */
    uint32_t rapid_reset_max;         /* client RST_STREAMs within the window before GOAWAY */
    uint64_t rapid_reset_window_ms;
    uint32_t max_control_frames;      /* SETTINGS/PING ACKs queued unsent before the session ends */
    uint64_t stall_timeout_ms;        /* a stream with response bytes waiting and none sent: RST */
    uint64_t idle_timeout_ms;         /* no open stream this long: GOAWAY; 0: never */
    uint64_t first_timeout_ms;        /* ... before the first stream (a client that only connects); 0: idle's;
                                       * also the longest a request's header block may stay open */
    uint32_t stream_window;           /* SETTINGS_INITIAL_WINDOW_SIZE: request bytes held per stream */
    uint32_t connection_window;       /* request bytes held on all streams */
    size_t stream_out_max;            /* response bytes a stream holds unsent; more resets the stream */
} ms_h2_config;

/* The defaults, before [mothership.http] is applied. */
void ms_h2_config_defaults(ms_h2_config *cfg);

typedef struct ms_h2_session ms_h2_session;
typedef struct ms_h2_stream ms_h2_stream;

typedef struct ms_h2_owner_ops {
    /* A stream's request head is ready: attach an exchange
     * (ms_h2_stream_attach) and return true, or false to refuse the stream
     * (RST_STREAM REFUSED_STREAM). */
    bool (*stream_start)(void *owner, ms_h2_stream *st);
    /* The exchange's stream has request bytes, or its end, to read. */
    void (*stream_readable)(void *exchange);
    /* Every response byte the exchange wrote has been taken by nghttp2. */
    void (*stream_drained)(void *exchange);
    /* The stream is gone: complete (every response byte was taken) or
     * not (reset, or the session ended). The exchange never uses the
     * stream again; incomplete, it must end. */
    void (*stream_gone)(void *exchange, bool complete);
    /* The session has bytes to send, or an exchange can move: the owner
     * arranges for ms_h2_session_send (and its own work) to run soon. */
    void (*want_run)(void *owner);
} ms_h2_owner_ops;

ms_h2_session *ms_h2_session_new(const ms_h2_config *cfg, const ms_h2_owner_ops *ops, void *owner,
                                 uint64_t now_ms);
/* Ends every stream (stream_gone for attached exchanges) and frees. */
void ms_h2_session_free(ms_h2_session *s);

/* The client's bytes. Returns false when the session is to end (a
 * protocol error or an abuse: a GOAWAY is queued; send it, then close). */
bool ms_h2_session_recv(ms_h2_session *s, const uint8_t *data, size_t len, uint64_t now_ms);
/* Bytes to send: a pointer valid until the next call into the session, and
 * its length; 0 when nothing is ready; -1 on a fatal error. */
ssize_t ms_h2_session_send(ms_h2_session *s, const uint8_t **data, uint64_t now_ms);
/* Calls stream_drained for the streams whose buffers emptied during the
 * last sends. */
void ms_h2_session_notify(ms_h2_session *s);
/* Neither side wants more: the connection can close. */
bool ms_h2_session_done(const ms_h2_session *s);
/* The timeouts: idle connection (GOAWAY) and stalled streams (RST_STREAM). */
void ms_h2_session_tick(ms_h2_session *s, uint64_t now_ms);
/* Ends the session gracefully: GOAWAY with the last stream seen; streams
 * in progress finish. */
void ms_h2_session_shutdown(ms_h2_session *s);
/* Open streams. */
size_t ms_h2_session_streams(const ms_h2_session *s);

/* ---- for the exchange on a stream ---- */
void ms_h2_stream_attach(ms_h2_stream *st, void *exchange);
/* Takes up to cap request bytes. The window is opened by what is taken. */
size_t ms_h2_stream_read(ms_h2_stream *st, char *dst, size_t cap);
size_t ms_h2_stream_readable(const ms_h2_stream *st);
/* The request is over and every byte was read (only an extended CONNECT
 * stream ends this way; an HTTP/1.1 request ends by its own framing). */
bool ms_h2_stream_read_eof(const ms_h2_stream *st);
/* HTTP/1.1 response bytes. false: the stream was reset (a response that
 * cannot be translated, or too many bytes held): the exchange should end. */
bool ms_h2_stream_write(ms_h2_stream *st, const char *data, size_t len);
/* Response bytes not yet taken by nghttp2. */
size_t ms_h2_stream_pending(const ms_h2_stream *st);
/* The exchange writes no more (shut down or closed): the response ends
 * here; incomplete, the stream is reset. Then the exchange is forgotten. */
void ms_h2_stream_detach(ms_h2_stream *st);

#endif
