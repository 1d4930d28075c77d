/* uplink_impl.h: internals of the uplink module shared by its files:
 * protocol.c (the byte-level checks: what to send, how to judge the answer;
 * no I/O) and tls.c (an OpenSSL client over memory BIOs, fed and drained by
 * uplink.c, which owns the sockets, timers and retries). */
#ifndef MS_UPLINK_IMPL_H
#define MS_UPLINK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <openssl/ssl.h>

/* ---------------------------------------------------------------- protocols */
typedef enum ms_proto_kind {
    MS_PROTO_TCP,       /* connect is enough */
    MS_PROTO_REDIS,
    MS_PROTO_POSTGRES,
    MS_PROTO_MYSQL,
    MS_PROTO_HTTP,
} ms_proto_kind;

enum { MS_PROTO_MORE = 0, MS_PROTO_UP = 1, MS_PROTO_DOWN = -1 };

#define MS_PROTO_BUF 1024          /* answer bytes kept for redis/postgres/mysql */
#define MS_PROTO_HTTP_HEAD (16 * 1024) /* most bytes read before an HTTP head ends */

typedef struct ms_proto {
    ms_proto_kind kind;
    unsigned char buf[MS_PROTO_BUF];
    size_t len;
    http_parser parser;
    size_t head_bytes;
    bool head_done;
    char detail[200];   /* set on MS_PROTO_UP */
    char error[300];    /* set on MS_PROTO_DOWN */
} ms_proto;

/* The kind for a canonical scheme (manifest.h); unknown schemes are TCP. */
ms_proto_kind ms_proto_kind_for(const char *scheme);
void ms_proto_init(ms_proto *p, ms_proto_kind kind);
/* The bytes to send once connected (NULL with *len 0 when the server speaks
 * first or nothing is sent). Heap-allocated; NULL with *len 1 on OOM. For
 * HTTP: host/port go into the Host header, path is the request target. */
char *ms_proto_request(ms_proto_kind kind, const char *host, uint16_t port, bool tls,
                       const char *path, size_t *len);
/* Feed answer bytes; returns MS_PROTO_MORE, _UP (detail set) or _DOWN (error set). */
int ms_proto_feed(ms_proto *p, const char *data, size_t n);
/* The peer closed the connection: always a verdict (_UP or _DOWN). */
int ms_proto_eof(ms_proto *p);
/* Printable, bounded rendering of untrusted bytes into out (always terminated). */
void ms_proto_quote(const unsigned char *data, size_t n, char *out, size_t out_len);

/* ---------------------------------------------------------------- TLS */
typedef struct ms_tls ms_tls;

/* A client context verifying against the system store (TLS 1.2+). NULL
 * with why filled on failure. */
SSL_CTX *ms_tls_client_ctx(char *why, size_t why_len);
/* A client session for host (SNI + name check; IP literals checked as IPs). */
ms_tls *ms_tls_new(SSL_CTX *ctx, const char *host, char *why, size_t why_len);
void ms_tls_free(ms_tls *t);
/* Network bytes in. Returns false on OOM. */
bool ms_tls_feed(ms_tls *t, const char *data, size_t n);
/* Drive the handshake: 1 done, 0 needs more bytes, -1 failed (why). */
int ms_tls_handshake(ms_tls *t, char *why, size_t why_len);
/* Plaintext out (encrypted into the output BIO). False on failure (why). */
bool ms_tls_write(ms_tls *t, const void *data, size_t n, char *why, size_t why_len);
/* Plaintext in: >0 bytes read, 0 needs more, -1 failed (why), -2 closed by peer. */
int ms_tls_read(ms_tls *t, char *buf, size_t cap, char *why, size_t why_len);
/* Ciphertext waiting to be sent: a heap copy in *out and its length; 0 when
 * none; -1 on OOM. */
long ms_tls_take_output(ms_tls *t, char **out);

#endif
