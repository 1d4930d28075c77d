/* h2_internal.h: what the two halves of the HTTP/2 session share: the
 * session (h2_session.c: nghttp2, its callbacks, the limits) and its
 * streams (h2_stream.c: request and response translation, the buffers an
 * exchange reads and writes). Nothing outside these two files includes it. */
#ifndef MS_H2_INTERNAL_H
#define MS_H2_INTERNAL_H

#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/h2_session.h"
#include "metrics/prom.h"

#define RESP_MAX_HEADERS 128       /* a ship's MS_MAX_HEADERS, and the lines Mothership adds */
#define RESP_HEAD_MAX 65536        /* a response head's field bytes */
#define REQ_HEAD_SLACK 1024        /* synthesized lines beyond the client's fields */

struct ms_h2_stream {
    ms_h2_session *s;
    ms_h2_stream *prev, *next;
    int32_t id;
    void *exchange;
    bool started, detached, reset;
    bool head_whole;               /* the request's header block has ended (END_HEADERS) */
    uint64_t opened_ms;            /* its HEADERS came: the header block has first_timeout_ms to end */

    /* request: collected fields, then the HTTP/1.1 bytes for the exchange */
    ms_buf method, path, authority, host, protocol, fields, cookie;
    uint64_t header_bytes;         /* name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts */
    bool too_large, two_hosts, has_content_length, has_host, has_authority;
    bool websocket;                /* an extended CONNECT with :protocol websocket */
    bool head_request;
    bool chunked;                  /* the body is framed chunked for the exchange, as it reads */
    bool last_chunk_read;          /* chunked: the last chunk has been read */
    bool req_ended;                /* the client's END_STREAM was seen */
    bool told_to_stop;             /* RST_STREAM NO_ERROR: the response is whole, the rest of the request unwanted */
    ms_buf in;                     /* request bytes not yet read: the head, then DATA as it came */
    size_t in_pos;
    size_t head_left;              /* the head's bytes at in_pos not yet read */
    size_t unconsumed;             /* DATA bytes held, not yet acknowledged by a window update */

    /* response: the exchange's HTTP/1.1 bytes, parsed */
    http_parser rp;
    ms_buf rh;                     /* header names and values */
    uint32_t rh_name[RESP_MAX_HEADERS], rh_name_len[RESP_MAX_HEADERS];
    uint32_t rh_val[RESP_MAX_HEADERS], rh_val_len[RESP_MAX_HEADERS];
    uint16_t nrh;
    bool rh_last_was_value, rh_overflow;
    bool final_sent;               /* the final HEADERS is submitted */
    bool resp_complete;            /* the last byte of the response is in out */
    bool tunnel;                   /* after the 101 of an extended CONNECT: raw bytes */
    ms_buf out;                    /* response body bytes not yet taken by nghttp2 */
    size_t out_pos;
    bool deferred;                 /* the data provider waits for bytes */
    bool drain_due;                /* out emptied: tell the exchange */
    uint64_t progress_ms;          /* the last time out was taken from, or filled from empty */
};

struct ms_h2_session {
    nghttp2_session *ng;
    ms_h2_config cfg;
    const ms_h2_owner_ops *ops;
    void *owner;
    ms_h2_stream *streams;
    size_t nstreams;
    uint64_t now_ms, idle_since_ms;
    uint64_t reset_window_start_ms;
    uint32_t resets;
    bool calm;                     /* rapid reset: the session is being torn down */
    bool had_stream;               /* a stream was opened: the first timeout is over */
};


/* h2_session.c */
void h2_want_run(ms_h2_session *s);

/* h2_stream.c: a stream from its HEADERS on; NULL: out of memory */
ms_h2_stream *h2_stream_new(ms_h2_session *s, int32_t id);
void h2_stream_free(ms_h2_stream *st);
void h2_stream_reset(ms_h2_stream *st, uint32_t code);
/* A field of the request's header block (counted and bounded by the caller). */
void h2_stream_field(ms_h2_stream *st, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);
/* END_HEADERS: the HTTP/1.1 head, then the exchange (or a local answer). */
void h2_stream_start(ms_h2_stream *st, bool end_stream);
/* The client's END_STREAM after the head. */
void h2_stream_end_body(ms_h2_stream *st);
/* Request DATA for the exchange; false: more than the stream holds (reset). */
bool h2_stream_data(ms_h2_stream *st, const uint8_t *data, size_t len);

#endif
