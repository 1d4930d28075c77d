/* protocol.h: the protocol-level checks of a server as pure byte functions,
 * shared by the uplink checker (uplink.c: "is a live server of this kind
 * there?") and the fleet's readiness and health probes (fleet/probe.c: "is
 * it ready to serve clients?"). A check is: the bytes to send once
 * connected (ms_proto_request), then the server's answer fed read by read
 * (ms_proto_feed) until a verdict, or the peer's close (ms_proto_eof). No
 * I/O here; every buffer is bounded; server text quoted into the detail and
 * error strings is made printable.
 *
 * What each kind sends and how the answer is judged, per mode:
 *   kind      sends               LIVE (uplinks)            READY (probes)
 *   tcp       nothing             connected                 connected
 *   redis     PING                any RESP reply            +PONG or any reply but
 *                                                           -LOADING, -BUSY, -MASTERDOWN
 *   postgres  LIVE: SSLRequest    'S' or 'N'                an authentication request
 *             READY: startup                                ('R'), or any error but
 *             message (user and                             SQLSTATE 57P03
 *             database "postgres")                          (cannot_connect_now)
 *   mysql     nothing (the        the initial handshake     the initial handshake;
 *             server speaks       (protocol 10), or an      an ERR packet is not
 *             first)              ERR packet                ready
 *   http      GET <path>          status 2xx-3xx once the   the same, once the whole
 *                                 head is in                response is read (at most
 *                                                           16 KiB: then the status
 *                                                           is enough), sparing the
 *                                                           server a broken pipe */
#ifndef MS_UPLINK_PROTOCOL_H
#define MS_UPLINK_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

typedef enum ms_proto_kind {
    MS_PROTO_TCP,       /* connect is enough */
    MS_PROTO_REDIS,
    MS_PROTO_POSTGRES,
    MS_PROTO_MYSQL,
    MS_PROTO_HTTP,
} ms_proto_kind;

typedef enum ms_proto_mode {
    MS_PROTO_LIVE,      /* a live server of this kind answered */
    MS_PROTO_READY,     /* it is ready to serve clients */
} ms_proto_mode;

enum { MS_PROTO_MORE = 0, MS_PROTO_UP = 1, MS_PROTO_DOWN = -1 };

#define MS_PROTO_BUF 1024          /* answer bytes kept for redis/postgres/mysql */
#define MS_PROTO_HTTP_HEAD (16 * 1024) /* most bytes read before an HTTP head ends */

typedef struct ms_proto {
    ms_proto_kind kind;
    ms_proto_mode mode;
    unsigned char buf[MS_PROTO_BUF];
    size_t len;
    http_parser parser;
    size_t head_bytes;  /* HTTP bytes read (the head, and in READY mode the body) */
    bool head_done;
    bool message_done;  /* READY mode: the whole HTTP response is in */
    int http_status;    /* HTTP: the status once the head is in, else 0 */
    char detail[200];   /* set on MS_PROTO_UP */
    char error[300];    /* set on MS_PROTO_DOWN */
} ms_proto;

/* The kind for a canonical scheme (manifest.h); unknown schemes are TCP. */
ms_proto_kind ms_proto_kind_for(const char *scheme);
/* "tcp", "redis", "postgres", "mysql", "http". */
const char *ms_proto_kind_name(ms_proto_kind kind);
void ms_proto_init(ms_proto *p, ms_proto_kind kind, ms_proto_mode mode);
/* The bytes to send once connected, for p's kind and mode (NULL with *len 0
 * when the server speaks first or nothing is sent). Heap-allocated; NULL
 * with *len 1 on OOM. For HTTP: host_header is the Host header's value
 * (see ms_proto_host_header) and path the request target ("/" when NULL
 * or empty). */
char *ms_proto_request(const ms_proto *p, const char *host_header, const char *path, size_t *len);
/* The Host header value for host:port: IPv6 in brackets, the port left out
 * when it is the scheme's default (80, or 443 with tls). As snprintf. */
int ms_proto_host_header(const char *host, uint16_t port, bool tls, char *buf, size_t len);
/* Feed answer bytes; returns MS_PROTO_MORE, _UP (detail set) or _DOWN (error set). */
int ms_proto_feed(ms_proto *p, const char *data, size_t n);
/* The peer closed the connection: always a verdict (_UP or _DOWN). */
int ms_proto_eof(ms_proto *p);
/* Printable, bounded rendering of untrusted bytes into out (always terminated). */
void ms_proto_quote(const unsigned char *data, size_t n, char *out, size_t out_len);

#endif
