/* acme_impl.h: what acme.c (the account, the requests, the schedule, the
 * contract) and order.c (one order's steps) share: the client's state and
 * the calls between them. Control loop only. */
#ifndef MS_ACME_IMPL_H
#define MS_ACME_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "acme/acme.h"
#include "acme/msg.h"
#include "uplink/httpc.h"

#define REQUEST_TIMEOUT_MS 30000
#define BAD_NONCE_RETRIES 5

enum { RESULT_VALID, RESULT_INVALID, RESULT_ERROR };

typedef enum { ACC_IDLE, ACC_BUSY, ACC_READY } acc_state;

typedef struct acme_name {
    ms_acme *a;
    const char *name; /* the manifest's */
    uv_timer_t timer; /* the renewal, or the retry after a failure */
    bool have_cert;   /* a certificate is in use: mt */
    struct ms_tls_material *mt;
    time_t not_after, renew_at;
    unsigned failures; /* failed orders in a row */
    bool due;          /* waiting for its turn */
} acme_name;

typedef void step_fn(ms_acme *a, const ms_httpc_response *r);
typedef void poll_fn(ms_acme *a);

struct ms_acme {
    ms_acme_deps d;
    const ms_acme_config *cfg;
    char *dir; /* this CA's state directory */
    EVP_PKEY *account_key;
    char *kid; /* the account's URL once registered */
    ms_httpc *http;
    ms_acme_directory directory;
    bool have_directory;
    char *nonce; /* the last Replay-Nonce, unused yet */
    acc_state acc;
    unsigned acc_failures;
    uv_timer_t acc_timer;
    acme_name *names;
    size_t nnames;
    uint64_t orders[3];
    bool started, stopping;
    int open_handles;

    /* the request in flight */
    ms_httpc_req *req;
    const char *rq_what;       /* "newOrder", "authorization", ... for the log */
    char *rq_url, *rq_payload; /* payload NULL: POST-as-GET */
    bool rq_jwk;               /* signed with the JWK (newAccount), else the kid */
    unsigned rq_bad_nonces;
    step_fn *rq_next;

    /* the order in progress (job NULL: none) */
    acme_name *job;
    bool renewing; /* the name had a certificate when the order began */
    char *order_url;
    ms_acme_order order;
    bool have_order;
    size_t authz_i;
    bool authz_done, finalized, challenge_posted;
    char *published_token; /* http-01 on the board */
    bool published_alpn;   /* tls-alpn-01 on the board for job->name */
    EVP_PKEY *cert_key;
    time_t deadline;
    unsigned polls;
    uv_timer_t poll_timer;
    poll_fn *poll_next;
};

/* acme.c */
void acme_kick(ms_acme *a); /* start the next due name's order when idle */
/* The order in progress (or the account's registration when none) failed:
 * logged, counted under result, retried after the backoff. */
void acme_fail(ms_acme *a, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A signed POST of payload (NULL: POST-as-GET) to url, with the JWK (jwk)
 * or the account's kid; next gets a 2xx answer, anything else fails. */
void acme_post_as(ms_acme *a, const char *what, const char *url, const char *payload, step_fn *next, bool jwk);
void acme_post(ms_acme *a, const char *what, const char *url, const char *payload, step_fn *next);
bool acme_want_json(ms_acme *a, const ms_httpc_response *r); /* false: failed already */
/* next after r's Retry-After or the growing pause; fails past a->deadline. */
void acme_poll_later(ms_acme *a, const ms_httpc_response *r, const char *what, poll_fn *next);
void acme_set_str(char **dst, const char *src);
bool acme_ct_is(const char *content_type, const char *type);
bool acme_is_url(const char *s);
bool acme_swap_in(ms_acme *a, acme_name *n, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, char *why,
                  size_t why_len);
void acme_schedule_renewal(acme_name *n);
void acme_log_certificate(ms_acme *a, acme_name *n, const char *how);

/* order.c */
void acme_job_begin(ms_acme *a, acme_name *n); /* newOrder for n, and on */
void acme_withdraw(ms_acme *a);                /* the published challenge off the board */
void acme_job_clear(ms_acme *a);               /* the order's state dropped, its request cancelled */

#endif
