/* uplink_impl.h: internals of the uplink module shared by its files:
 * protocol.h (the byte-level checks: what to send, how to judge the answer;
 * no I/O; public, the fleet's probes use it too) and tls.c (an OpenSSL
 * client over memory BIOs, fed and drained by uplink.c, which owns the
 * sockets, timers and retries). */
#ifndef MS_UPLINK_IMPL_H
#define MS_UPLINK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "uplink/protocol.h"

/* ---------------------------------------------------------------- DNS */
/* The reason a libuv getaddrinfo status gives, in getaddrinfo's own wording
 * ("Name or service not known") where libuv translated the code, which
 * reads better than libuv's; else libuv's (uplink.c). */
const char *ms_uplink_dns_reason(int status);

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
