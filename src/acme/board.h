/* board.h: what the ACME client (control loop) publishes for the CA's
 * validation and the data plane (workers) answers with, thread-safe under
 * one mutex (lookups are rare: only requests under
 * /.well-known/acme-challenge/ and handshakes offering acme-tls/1):
 *  - http-01: token -> key authorization, answered on plain binds at
 *    GET /.well-known/acme-challenge/<token> (200 text/plain, the key
 *    authorization; an unknown token 404), before static files and routes;
 *  - tls-alpn-01: name -> a challenge certificate and its key, used for a
 *    handshake whose client offers the ALPN protocol "acme-tls/1" and
 *    names that SNI (RFC 8737); ALPN then answers "acme-tls/1" and nothing
 *    else is served on that connection.
 * Bounded: at most MS_ACME_BOARD_MAX entries of each kind. */
#ifndef MS_ACME_BOARD_H
#define MS_ACME_BOARD_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define MS_ACME_BOARD_MAX 256
#define MS_ACME_CHALLENGE_PREFIX "/.well-known/acme-challenge/"

typedef struct ms_acme_board ms_acme_board;

ms_acme_board *ms_acme_board_new(void);
void ms_acme_board_free(ms_acme_board *b);

/* Control loop: publish / withdraw. put replaces an entry with the same
 * key; false when out of memory or full. */
bool ms_acme_board_put_http(ms_acme_board *b, const char *token, const char *key_authorization);
void ms_acme_board_drop_http(ms_acme_board *b, const char *token);
bool ms_acme_board_put_alpn(ms_acme_board *b, const char *name, X509 *cert, EVP_PKEY *key); /* takes refs */
void ms_acme_board_drop_alpn(ms_acme_board *b, const char *name);

/* Workers: the key authorization for token (token_len bytes, not
 * NUL-terminated) copied into out (NUL-terminated); false: none (or it
 * does not fit in cap). */
bool ms_acme_board_http(ms_acme_board *b, const char *token, size_t token_len, char *out, size_t cap);
/* Workers, in the TLS handshake: use name's challenge certificate and key
 * on ssl (SSL_use_certificate / SSL_use_PrivateKey); false: none for name. */
bool ms_acme_board_use_alpn(ms_acme_board *b, const char *name, SSL *ssl);

#endif
