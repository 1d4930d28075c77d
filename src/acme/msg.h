/* msg.h: the ACME server's JSON (RFC 8555 §7.1) read strictly and bounded,
 * socket-free and fuzzed: the directory, an order, an authorization with
 * its challenges, a problem document. The URLs kept are https:// or
 * http:// (anything else makes the object invalid), at most
 * MS_ACME_URL_MAX bytes. Every parse returns false with a reason in why
 * (e.g. "order: \"status\" is missing") and leaves nothing to free then;
 * on success the struct owns malloc'd strings freed by its _free. */
#ifndef MS_ACME_MSG_H
#define MS_ACME_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define MS_ACME_URL_MAX 2048
#define MS_ACME_MAX_AUTHZ 100     /* authorizations in one order */
#define MS_ACME_MAX_CHALLENGES 16 /* challenges in one authorization (more are ignored) */

typedef struct ms_acme_directory {
    char *new_nonce, *new_account, *new_order; /* required */
    char *revoke_cert, *key_change;            /* NULL when absent */
    char *terms_of_service;                    /* meta.termsOfService, shown only: any scheme (pebble's is
                                                  a data: URL); NULL when absent */
    bool external_account_required;            /* meta.externalAccountRequired */
} ms_acme_directory;

typedef enum ms_acme_status {
    MS_ACME_PENDING, MS_ACME_READY, MS_ACME_PROCESSING, MS_ACME_VALID, MS_ACME_INVALID,
    MS_ACME_EXPIRED, MS_ACME_DEACTIVATED, MS_ACME_REVOKED
} ms_acme_status;

typedef struct ms_acme_order {
    ms_acme_status status;
    char **authorizations; /* URLs */
    size_t nauthz;
    char *finalize;        /* required */
    char *certificate;     /* NULL until valid */
    char *error;           /* the problem's "type: detail" when the order failed; NULL otherwise */
} ms_acme_order;

typedef struct ms_acme_challenge {
    char *type;            /* "http-01", "tls-alpn-01", ... */
    char *url;
    char *token;           /* NULL for types without one; else checked: base64url alphabet, 1..256 bytes */
    ms_acme_status status;
    char *error;           /* "type: detail" when invalid; NULL otherwise */
} ms_acme_challenge;

typedef struct ms_acme_authz {
    ms_acme_status status;
    char *identifier;      /* identifier.value (type "dns") */
    bool wildcard;
    ms_acme_challenge challenges[MS_ACME_MAX_CHALLENGES];
    size_t nchallenges;
} ms_acme_authz;

bool ms_acme_parse_directory(const char *json, size_t len, ms_acme_directory *out, char *why, size_t why_len);
void ms_acme_directory_free(ms_acme_directory *d);
bool ms_acme_parse_order(const char *json, size_t len, ms_acme_order *out, char *why, size_t why_len);
void ms_acme_order_free(ms_acme_order *o);
bool ms_acme_parse_authz(const char *json, size_t len, ms_acme_authz *out, char *why, size_t why_len);
void ms_acme_authz_free(ms_acme_authz *a);
/* A challenge object alone (the answer to a challenge POST). */
bool ms_acme_parse_challenge(const char *json, size_t len, ms_acme_challenge *out, char *why, size_t why_len);
void ms_acme_challenge_free(ms_acme_challenge *c);

/* A problem document (RFC 7807, application/problem+json): "type" and
 * "detail" into out as "urn:ietf:params:acme:error:badNonce: detail"
 * (at most cap bytes, printable ASCII only, the rest replaced by '?').
 * *bad_nonce set when the type is badNonce (the request is retried with
 * a fresh nonce). false: not a problem document. */
bool ms_acme_parse_problem(const char *json, size_t len, char *out, size_t cap, bool *bad_nonce);

/* The body of a newAccount request: {"termsOfServiceAgreed":true} with
 * "contact":["mailto:<email>"] when email is not NULL. A newOrder:
 * {"identifiers":[{"type":"dns","value":n}...]}. A finalize:
 * {"csr":"<base64url DER>"}. malloc'd JSON text. */
char *ms_acme_new_account_body(const char *email);
char *ms_acme_new_order_body(const char *const *names, size_t n);
char *ms_acme_finalize_body(const unsigned char *csr_der, size_t len);

/* Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative
 * to now; seconds to wait clamped to [0, 86400]; -1 when absent or not
 * understood. */
long ms_acme_retry_after(const char *value, time_t now);

#endif
