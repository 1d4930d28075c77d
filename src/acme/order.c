/* order.c: one ACME order for one name (acme_impl.h):
 *   newOrder -> for each authorization: fetch it, publish the configured
 *   challenge on the board, POST {} to it, poll until decided, withdraw
 *   -> poll the order until ready -> finalize with a CSR for a fresh key
 *   -> poll until valid -> download the chain -> check, store, swap in
 * as a chain of callbacks of acme_post. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acme/acme_impl.h"
#include "acme/engine.h"
#include "acme/jws.h"
#include "acme/material.h"
#include "tls/cert.h"

static void order_step(ms_acme *a);

/* ---------------------------------------------------------------- the order in progress */

void acme_withdraw(ms_acme *a)
{
    if (a->published_token) {
        ms_acme_board_drop_http(a->d.board, a->published_token);
        free(a->published_token);
        a->published_token = NULL;
    }
    if (a->published_alpn && a->job) {
        ms_acme_board_drop_alpn(a->d.board, a->job->name);
        a->published_alpn = false;
    }
}

void acme_job_clear(ms_acme *a)
{
    acme_withdraw(a);
    if (a->req) {
        ms_httpc_cancel(a->req);
        a->req = NULL;
    }
    uv_timer_stop(&a->poll_timer);
    free(a->order_url);
    a->order_url = NULL;
    if (a->have_order)
        ms_acme_order_free(&a->order);
    a->have_order = false;
    EVP_PKEY_free(a->cert_key);
    a->cert_key = NULL;
    a->authz_i = 0;
    a->authz_done = a->finalized = a->challenge_posted = false;
    a->polls = 0;
    a->job = NULL;
}

/* ---------------------------------------------------------------- the certificate */

static void on_certificate(ms_acme *a, const ms_httpc_response *r)
{
    acme_name *n = a->job;
    if (r->status != 200 || !acme_ct_is(r->content_type, "application/pem-certificate-chain")) {
        acme_fail(a, RESULT_ERROR, "certificate: HTTP %d, %s (not application/pem-certificate-chain)", r->status,
                  r->content_type ? r->content_type : "no Content-Type");
        return;
    }
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    time_t nb, na;
    char why[512];
    if (!ms_acme_chain_parse(r->body, r->body_len, a->cert_key, n->name, &leaf, &chain, &nb, &na, why, sizeof why)) {
        acme_fail(a, RESULT_ERROR, "certificate: %s", why);
        return;
    }
    char certs[4096];
    bool ok = (size_t)snprintf(certs, sizeof certs, "%s/certs", a->dir) < sizeof certs;
    if (!ok)
        snprintf(why, sizeof why, "the state directory's path is too long");
    ok = ok && ms_acme_mkdirs(certs, why, sizeof why) &&
         ms_acme_cert_save(a->dir, n->name, a->cert_key, r->body, r->body_len, why, sizeof why);
    if (!ok)
        ms_log_event(a->d.log, MS_WARN, NULL, "acme_store",
                     "cannot store the certificate of %s: %s (it is used "
                     "all the same, and ordered again after a restart)",
                     n->name, why);
    if (!acme_swap_in(a, n, leaf, chain, a->cert_key, why, sizeof why)) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        acme_fail(a, RESULT_ERROR, "certificate: cannot use it: %s", why);
        return;
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    n->have_cert = true;
    n->not_after = na;
    n->renew_at = ms_acme_renew_at(nb, na, ms_acme_random01());
    n->failures = 0;
    a->orders[RESULT_VALID]++;
    acme_log_certificate(a, n, a->renewing ? "renewed" : "obtained");
    acme_job_clear(a);
    acme_schedule_renewal(n);
    acme_kick(a);
}

/* ---------------------------------------------------------------- the order */

static void refetch_order(ms_acme *a);

static void on_order(ms_acme *a, const ms_httpc_response *r)
{
    if (!acme_want_json(a, r))
        return;
    ms_acme_order o;
    char why[256];
    if (!ms_acme_parse_order(r->body, r->body_len, &o, why, sizeof why)) {
        acme_fail(a, RESULT_ERROR, "%s: %s", a->rq_what, why);
        return;
    }
    if (a->have_order)
        ms_acme_order_free(&a->order);
    a->order = o;
    a->have_order = true;
    if (o.status == MS_ACME_PROCESSING || (o.status == MS_ACME_PENDING && a->authz_done) ||
        (o.status == MS_ACME_READY && a->finalized)) {
        acme_poll_later(a, r, "the order", refetch_order);
        return;
    }
    order_step(a);
}

static void refetch_order(ms_acme *a)
{
    acme_post(a, "order", a->order_url, NULL, on_order);
}

static void finalize(ms_acme *a)
{
    EVP_PKEY_free(a->cert_key);
    a->cert_key = ms_acme_key_new();
    const char *names[1] = { a->job->name };
    size_t len = 0;
    unsigned char *csr = a->cert_key ? ms_acme_csr(a->cert_key, names, 1, &len) : NULL;
    char *body = csr ? ms_acme_finalize_body(csr, len) : NULL;
    free(csr);
    if (!body) {
        acme_fail(a, RESULT_ERROR, "finalize: cannot make the key and CSR");
        return;
    }
    a->finalized = true;
    a->polls = 0;
    a->deadline = time(NULL) + MS_ACME_POLL_DEADLINE_S;
    acme_post(a, "finalize", a->order.finalize, body, on_order);
    free(body);
}

static void next_authz(ms_acme *a);

static void on_authz(ms_acme *a, const ms_httpc_response *r);

static void refetch_authz(ms_acme *a)
{
    acme_post(a, "authorization", a->order.authorizations[a->authz_i], NULL, on_authz);
}

static void on_challenge(ms_acme *a, const ms_httpc_response *r)
{
    if (!acme_want_json(a, r))
        return;
    ms_acme_challenge c;
    char why[256];
    if (!ms_acme_parse_challenge(r->body, r->body_len, &c, why, sizeof why)) {
        acme_fail(a, RESULT_ERROR, "challenge: %s", why);
        return;
    }
    if (c.status == MS_ACME_INVALID) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", c.error ? c.error : "no reason given");
        ms_acme_challenge_free(&c);
        acme_fail(a, RESULT_INVALID, "challenge for %s failed: %s", a->job->name, msg);
        return;
    }
    ms_acme_challenge_free(&c);
    a->challenge_posted = true;
    a->polls = 0;
    a->deadline = time(NULL) + MS_ACME_POLL_DEADLINE_S;
    acme_poll_later(a, r, "the authorization", refetch_authz);
}

/* Publish ch on the board and tell the CA to look. */
static void answer_challenge(ms_acme *a, const ms_acme_authz *az, const ms_acme_challenge *ch)
{
    const char *type = ch->type;
    if (!ch->token) {
        acme_fail(a, RESULT_ERROR, "%s challenge for %s without a token", type, az->identifier);
        return;
    }
    char *ka = ms_acme_key_authorization(ch->token, a->account_key);
    if (!ka) {
        acme_fail(a, RESULT_ERROR, "cannot compute the key authorization");
        return;
    }
    bool ok;
    if (a->cfg->challenge == MS_ACME_HTTP_01) {
        acme_withdraw(a);
        ok = ms_acme_board_put_http(a->d.board, ch->token, ka);
        if (ok)
            a->published_token = strdup(ch->token);
        if (ok && !a->published_token) {
            ms_acme_board_drop_http(a->d.board, ch->token);
            ok = false;
        }
    } else {
        unsigned char digest[32];
        EVP_PKEY *k = ms_acme_key_new();
        X509 *cert =
            k && ms_acme_key_authorization_digest(ka, digest) ? ms_acme_alpn_cert(k, a->job->name, digest) : NULL;
        ok = cert && ms_acme_board_put_alpn(a->d.board, a->job->name, cert, k);
        a->published_alpn = ok;
        X509_free(cert);
        EVP_PKEY_free(k);
    }
    free(ka);
    if (!ok) {
        acme_fail(a, RESULT_ERROR, "cannot publish the %s challenge (out of memory, or the board is full)", type);
        return;
    }
    ms_log_field f[] = { ms_log_str("name", a->job->name), ms_log_str("type", type) };
    ms_log_event_fields(a->d.log, MS_INFO, NULL, "acme_challenge", f, 2, "ACME %s challenge for %s published", type,
                        a->job->name);
    acme_post(a, "challenge", ch->url, "{}", on_challenge);
}

static void on_authz(ms_acme *a, const ms_httpc_response *r)
{
    if (!acme_want_json(a, r))
        return;
    ms_acme_authz az;
    char why[256];
    if (!ms_acme_parse_authz(r->body, r->body_len, &az, why, sizeof why)) {
        acme_fail(a, RESULT_ERROR, "authorization: %s", why);
        return;
    }
    const char *want = a->cfg->challenge == MS_ACME_HTTP_01 ? "http-01" : "tls-alpn-01";
    const ms_acme_challenge *ch = NULL;
    for (size_t i = 0; i < az.nchallenges; i++)
        if (az.challenges[i].type && strcmp(az.challenges[i].type, want) == 0)
            ch = &az.challenges[i];
    switch (az.status) {
    case MS_ACME_VALID:
        acme_withdraw(a);
        a->challenge_posted = false;
        a->authz_i++;
        ms_acme_authz_free(&az);
        next_authz(a);
        return;
    case MS_ACME_PENDING:
        if (a->challenge_posted) {
            ms_acme_authz_free(&az);
            acme_poll_later(a, r, "the authorization", refetch_authz);
            return;
        }
        if (!ch) {
            acme_fail(a, RESULT_INVALID, "the CA offers no %s challenge for %s", want,
                      az.identifier ? az.identifier : a->job->name);
            ms_acme_authz_free(&az);
            return;
        }
        answer_challenge(a, &az, ch);
        ms_acme_authz_free(&az);
        return;
    default: {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", ch && ch->error ? ch->error : "no reason given");
        ms_acme_authz_free(&az);
        acme_fail(a, RESULT_INVALID, "the authorization for %s is not valid: %s", a->job->name, msg);
        return;
    }
    }
}

static void next_authz(ms_acme *a)
{
    if (a->authz_i < a->order.nauthz) {
        a->challenge_posted = false;
        refetch_authz(a);
        return;
    }
    a->authz_done = true; /* the order is ready now, or soon */
    a->polls = 0;
    a->deadline = time(NULL) + MS_ACME_POLL_DEADLINE_S;
    refetch_order(a);
}

static void order_step(ms_acme *a)
{
    switch (a->order.status) {
    case MS_ACME_PENDING:
        a->authz_i = 0;
        next_authz(a);
        return;
    case MS_ACME_READY: finalize(a); return;
    case MS_ACME_VALID:
        if (!a->finalized || !a->order.certificate) {
            acme_fail(a, RESULT_ERROR, "the order is valid but was not finalized here, or has no certificate URL");
            return;
        }
        acme_post(a, "certificate", a->order.certificate, NULL, on_certificate);
        return;
    default:
        acme_fail(a, RESULT_INVALID, "the CA refused the order for %s: %s", a->job->name,
                  a->order.error ? a->order.error : "no reason given");
        return;
    }
}

static void on_new_order(ms_acme *a, const ms_httpc_response *r)
{
    if (r->status != 201 && r->status != 200) {
        acme_fail(a, RESULT_ERROR, "newOrder: HTTP %d", r->status);
        return;
    }
    if (!acme_is_url(r->location)) {
        acme_fail(a, RESULT_ERROR, "newOrder: the CA sent no order URL (Location)");
        return;
    }
    acme_set_str(&a->order_url, r->location);
    if (!a->order_url) {
        acme_fail(a, RESULT_ERROR, "newOrder: out of memory");
        return;
    }
    on_order(a, r);
}

void acme_job_begin(ms_acme *a, acme_name *n)
{
    a->job = n;
    n->due = false;
    a->renewing = n->have_cert;
    /* an order the CA hands back already "processing" is polled from here,
     * not from the deadline an earlier order left */
    a->deadline = time(NULL) + MS_ACME_POLL_DEADLINE_S;
    const char *names[1] = { n->name };
    char *body = ms_acme_new_order_body(names, 1);
    if (!body) {
        acme_fail(a, RESULT_ERROR, "newOrder: out of memory");
        return;
    }
    acme_post(a, "newOrder", a->directory.new_order, body, on_new_order);
    free(body);
}
