/* acme.c: the ACME client (acme.h) on the control loop: the contract, the
 * account, the signed requests and the schedule. One order at a time: the
 * names that are due (no certificate, renewal due, a retry after a
 * failure) wait in turn; order.c runs an order. Every signed request takes
 * the nonce of the last response (or a fresh one from newNonce) and is
 * sent again on badNonce. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acme/acme_impl.h"
#include "acme/check.h"
#include "acme/engine.h"
#include "acme/jws.h"
#include "acme/material.h"
#include "tls/cert.h"

static const char *const result_names[3] = { "valid", "invalid", "error" };

static void account_begin(ms_acme *a);

/* ---------------------------------------------------------------- helpers */

void acme_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

/* content_type is type (parameters after ';' ignored, case-insensitive). */
bool acme_ct_is(const char *content_type, const char *type)
{
    if (!content_type)
        return false;
    while (*content_type == ' ')
        content_type++;
    size_t n = strlen(type);
    if (strncasecmp(content_type, type, n) != 0)
        return false;
    char c = content_type[n];
    return c == '\0' || c == ';' || c == ' ';
}

/* An http(s) URL to send requests to and sign as a JWS's "url" or "kid":
 * printable ASCII without spaces, like msg.c's URLs (a Location header may
 * hold any byte; one that is no UTF-8 cannot be signed, ever). */
bool acme_is_url(const char *s)
{
    if (!s || strlen(s) > MS_ACME_URL_MAX || (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

/* n's new certificate made the one in use: kept (for a TLS server a
 * reload makes) and put into the TLS server; false with why. */
bool acme_swap_in(ms_acme *a, acme_name *n, X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, char *why,
                  size_t why_len)
{
    char *item = (char *)n->name;
    ms_strlist hosts = { .items = &item, .len = 1 };
    ms_tls_at at;
    ms_tls_material *mt = ms_tls_material_from(leaf, chain, key, &hosts, time(NULL), &at, why, why_len);
    if (!mt)
        return false;
    /* no TLS server: no TLS bind serves it (clearance says so); kept all the same */
    if (a->d.tls && !ms_tls_server_set_acme(a->d.tls, n->name, mt)) {
        snprintf(why, why_len, "the TLS server does not serve %s (or is out of memory)", n->name);
        ms_tls_material_unref(mt);
        return false;
    }
    if (n->mt)
        ms_tls_material_unref(n->mt);
    n->mt = mt;
    return true;
}

static void schedule_name(acme_name *n, uint64_t delay_ms);

static void on_name_timer(uv_timer_t *t)
{
    acme_name *n = t->data;
    n->due = true;
    acme_kick(n->a);
}

static void schedule_name(acme_name *n, uint64_t delay_ms)
{
    n->due = false;
    uv_timer_start(&n->timer, on_name_timer, delay_ms, 0);
}

void acme_schedule_renewal(acme_name *n)
{
    time_t now = time(NULL);
    uint64_t delay = n->renew_at > now ? (uint64_t)(n->renew_at - now) * 1000 : 0;
    if (delay == 0) {
        uv_timer_stop(&n->timer);
        n->due = true;
    } else {
        schedule_name(n, delay);
    }
}

void acme_log_certificate(ms_acme *a, acme_name *n, const char *how)
{
    char na[32], due[32];
    struct tm tm;
    strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&n->not_after, &tm));
    strftime(due, sizeof due, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&n->renew_at, &tm));
    ms_log_field f[] = { ms_log_str("name", n->name), ms_log_str("not_after", na), ms_log_str("how", how),
                         ms_log_num("not_after_unix", (int64_t)n->not_after),
                         ms_log_num("renew_at_unix", (int64_t)n->renew_at) };
    ms_log_event_fields(a->d.log, MS_INFO, NULL, "acme_certificate", f, 5,
                        "ACME certificate for %s %s, valid until %s, renewal from %s", n->name, how, na, due);
}

/* The problem's type names a refusal (the CA will not issue as asked),
 * not a passing trouble. */
static bool refusal(const char *problem)
{
    static const char *const kinds[] = {
        "rejectedIdentifier", "unauthorized", "caa", "badCSR", "unsupportedIdentifier",
        "incorrectResponse",  "connection",   "dns", "tls",    "badSignatureAlgorithm"
    };
    const char *p = strstr(problem, "urn:ietf:params:acme:error:");
    if (!p)
        return false;
    p += strlen("urn:ietf:params:acme:error:");
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(p, kinds[i], n) == 0 && (p[n] == ':' || p[n] == '\0'))
            return true;
    }
    return false;
}

static void on_account_timer(uv_timer_t *t)
{
    account_begin(t->data);
}

static void account_failed(ms_acme *a, const char *msg)
{
    a->acc = ACC_IDLE;
    a->acc_failures++;
    uint64_t delay =
        ms_acme_backoff_ms(a->cfg->backoff_ms, a->cfg->max_backoff_ms, a->acc_failures, ms_acme_random01());
    ms_log_field f[] = { ms_log_str("error", msg), ms_log_num("retry_in", (int64_t)((delay + 500) / 1000)) };
    ms_log_event_fields(a->d.log, MS_ERROR, NULL, "acme_account_failed", f, 2,
                        "ACME account at %s: %s; retrying in %llus", a->cfg->directory, msg,
                        (unsigned long long)((delay + 500) / 1000));
    uv_timer_start(&a->acc_timer, on_account_timer, delay, 0);
}

/* The order (or the account's registration) failed: log why, count it,
 * retry the name after its backoff, go on with the next. */
void acme_fail(ms_acme *a, int result, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    acme_name *n = a->job;
    if (!n) {
        if (a->req) {
            ms_httpc_cancel(a->req);
            a->req = NULL;
        }
        account_failed(a, msg);
        return;
    }
    if (strstr(msg, "urn:ietf:params:acme:error:accountDoesNotExist"))
        a->acc = ACC_IDLE; /* registered again before the next order */
    acme_job_clear(a);
    a->orders[result]++;
    n->failures++;
    uint64_t delay = ms_acme_backoff_ms(a->cfg->backoff_ms, a->cfg->max_backoff_ms, n->failures, ms_acme_random01());
    ms_log_field f[] = { ms_log_str("name", n->name), ms_log_str("error", msg),
                         ms_log_num("retry_in", (int64_t)((delay + 500) / 1000)), ms_log_str("result", result_names[result]) };
    /* a certificate kept while renewal fails: a warning until it expires,
     * an error that says so after (it is still served; clients refuse it) */
    char kept[96] = "";
    bool expired = n->have_cert && n->not_after <= time(NULL);
    if (expired) {
        char na[32];
        struct tm tm;
        strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&n->not_after, &tm));
        snprintf(kept, sizeof kept, " (the certificate in use expired at %s)", na);
    } else if (n->have_cert) {
        snprintf(kept, sizeof kept, " (the current certificate stays)");
    }
    ms_log_event_fields(a->d.log, n->have_cert && !expired ? MS_WARN : MS_ERROR, NULL, "acme_order_failed", f, 4,
                        "ACME order for %s failed: %s; retrying in %llus%s", n->name, msg,
                        (unsigned long long)((delay + 500) / 1000), kept);
    schedule_name(n, delay);
    acme_kick(a);
}

/* ---------------------------------------------------------------- requests */

static void send_signed(ms_acme *a);

static void on_nonce(void *arg, const ms_httpc_response *r, const char *error)
{
    ms_acme *a = arg;
    a->req = NULL;
    if (error) {
        acme_fail(a, RESULT_ERROR, "newNonce: %s", error);
        return;
    }
    if ((r->status != 200 && r->status != 204) || !r->replay_nonce || !*r->replay_nonce) {
        acme_fail(a, RESULT_ERROR, "newNonce: HTTP %d%s", r->status, r->replay_nonce ? "" : " without a Replay-Nonce");
        return;
    }
    acme_set_str(&a->nonce, r->replay_nonce);
    send_signed(a);
}

static void on_signed(void *arg, const ms_httpc_response *r, const char *error)
{
    ms_acme *a = arg;
    a->req = NULL;
    if (error) {
        acme_fail(a, RESULT_ERROR, "%s: %s", a->rq_what, error);
        return;
    }
    if (r->replay_nonce && *r->replay_nonce && strlen(r->replay_nonce) < 256)
        acme_set_str(&a->nonce, r->replay_nonce);
    if (r->status >= 300) {
        char problem[512];
        bool bad_nonce = false;
        bool is_problem = ms_acme_parse_problem(r->body, r->body_len, problem, sizeof problem, &bad_nonce);
        if (is_problem && bad_nonce && a->rq_bad_nonces < BAD_NONCE_RETRIES) {
            a->rq_bad_nonces++;
            send_signed(a);
            return;
        }
        if (is_problem)
            acme_fail(a, refusal(problem) ? RESULT_INVALID : RESULT_ERROR, "%s: HTTP %d: %s", a->rq_what, r->status,
                      problem);
        else
            acme_fail(a, RESULT_ERROR, "%s: HTTP %d from %s", a->rq_what, r->status, a->rq_url);
        return;
    }
    a->rq_next(a, r);
}

static void send_signed(ms_acme *a)
{
    if (!a->nonce) {
        a->req =
            ms_httpc_request(a->http, "HEAD", a->directory.new_nonce, NULL, NULL, 0, REQUEST_TIMEOUT_MS, on_nonce, a);
        if (!a->req)
            acme_fail(a, RESULT_ERROR, "newNonce: out of memory");
        return;
    }
    char *jws = ms_jws_sign(a->account_key, a->rq_jwk ? NULL : a->kid, a->nonce, a->rq_url, a->rq_payload);
    free(a->nonce);
    a->nonce = NULL;
    if (!jws) {
        acme_fail(a, RESULT_ERROR, "%s: cannot sign the request", a->rq_what);
        return;
    }
    a->req = ms_httpc_request(a->http, "POST", a->rq_url, "application/jose+json", jws, strlen(jws), REQUEST_TIMEOUT_MS,
                              on_signed, a);
    free(jws);
    if (!a->req)
        acme_fail(a, RESULT_ERROR, "%s: out of memory", a->rq_what);
}

/* Under an https directory every URL the CA hands out must be https too:
 * a plain http one would send the signed requests (and fetch the
 * certificate) where anyone on the path can read and change them. */
static bool downgraded(const ms_acme *a, const char *url)
{
    return strncmp(a->cfg->directory, "https://", 8) == 0 && strncmp(url, "https://", 8) != 0;
}

void acme_post_as(ms_acme *a, const char *what, const char *url, const char *payload, step_fn *next, bool jwk)
{
    if (downgraded(a, url)) {
        acme_fail(a, RESULT_ERROR, "%s: the CA gave the URL %.200s, not https under an https directory: refused", what,
                  url);
        return;
    }
    a->rq_what = what;
    a->rq_next = next;
    a->rq_bad_nonces = 0;
    a->rq_jwk = jwk;
    acme_set_str(&a->rq_url, url);
    acme_set_str(&a->rq_payload, payload);
    if (!a->rq_url || (payload && !a->rq_payload)) {
        acme_fail(a, RESULT_ERROR, "%s: out of memory", what);
        return;
    }
    send_signed(a);
}

void acme_post(ms_acme *a, const char *what, const char *url, const char *payload, step_fn *next)
{
    acme_post_as(a, what, url, payload, next, false);
}

/* A JSON body; else the order fails (false). */
bool acme_want_json(ms_acme *a, const ms_httpc_response *r)
{
    if (acme_ct_is(r->content_type, "application/json"))
        return true;
    acme_fail(a, RESULT_ERROR, "%s: the CA answered %s, not application/json", a->rq_what,
              r->content_type ? r->content_type : "without a Content-Type");
    return false;
}

static void on_poll_timer(uv_timer_t *t)
{
    ms_acme *a = t->data;
    a->poll_next(a);
}

/* Wait before poll_next: Retry-After of r, else the growing pause; the
 * order fails once the deadline is past. */
void acme_poll_later(ms_acme *a, const ms_httpc_response *r, const char *what, poll_fn *next)
{
    time_t now = time(NULL);
    if (now >= a->deadline) {
        acme_fail(a, RESULT_ERROR, "%s still not decided after %d s", what, MS_ACME_POLL_DEADLINE_S);
        return;
    }
    long ra = r && r->retry_after ? ms_acme_retry_after(r->retry_after, now) : -1;
    uint64_t delay = ms_acme_poll_ms(a->polls++, ra);
    uint64_t left = (uint64_t)(a->deadline - now) * 1000;
    a->poll_next = next;
    uv_timer_start(&a->poll_timer, on_poll_timer, delay < left ? delay : left, 0);
}

/* ---------------------------------------------------------------- the account */

static void on_new_account(ms_acme *a, const ms_httpc_response *r)
{
    if (r->status != 200 && r->status != 201) {
        acme_fail(a, RESULT_ERROR, "newAccount: HTTP %d", r->status);
        return;
    }
    if (!acme_is_url(r->location)) {
        acme_fail(a, RESULT_ERROR, "newAccount: the CA sent no account URL (Location)");
        return;
    }
    bool changed = !a->kid || strcmp(a->kid, r->location) != 0;
    acme_set_str(&a->kid, r->location);
    if (!a->kid) {
        acme_fail(a, RESULT_ERROR, "newAccount: out of memory");
        return;
    }
    char why[512];
    if (changed && !ms_acme_account_url_save(a->dir, a->cfg->directory, a->kid, why, sizeof why))
        ms_log_event(a->d.log, MS_WARN, NULL, "acme_account", "cannot store the ACME account's URL: %s", why);
    const char *how = r->status == 201 ? "registered" : "found";
    ms_log_field f[] = { ms_log_str("how", how), ms_log_str("url", a->kid),
                         ms_log_str("directory", a->cfg->directory) };
    ms_log_event_fields(a->d.log, MS_INFO, NULL, "acme_account", f, 3, "ACME account %s at %s: %s", how,
                        a->cfg->directory, a->kid);
    a->acc = ACC_READY;
    a->acc_failures = 0;
    acme_kick(a);
}

static void register_account(ms_acme *a)
{
    char *body = ms_acme_new_account_body(a->cfg->email);
    if (!body) {
        acme_fail(a, RESULT_ERROR, "newAccount: out of memory");
        return;
    }
    acme_post_as(a, "newAccount", a->directory.new_account, body, on_new_account, true);
    free(body);
}

static void on_directory(void *arg, const ms_httpc_response *r, const char *error)
{
    ms_acme *a = arg;
    a->req = NULL;
    if (error) {
        acme_fail(a, RESULT_ERROR, "directory %s: %s", a->cfg->directory, error);
        return;
    }
    if (r->status != 200) {
        acme_fail(a, RESULT_ERROR, "directory %s: HTTP %d", a->cfg->directory, r->status);
        return;
    }
    if (!acme_ct_is(r->content_type, "application/json")) {
        acme_fail(a, RESULT_ERROR, "directory %s: %s, not application/json", a->cfg->directory,
                  r->content_type ? r->content_type : "no Content-Type");
        return;
    }
    ms_acme_directory dir;
    char why[256];
    if (!ms_acme_parse_directory(r->body, r->body_len, &dir, why, sizeof why)) {
        acme_fail(a, RESULT_ERROR, "directory %s: %s", a->cfg->directory, why);
        return;
    }
    if (downgraded(a, dir.new_nonce) || downgraded(a, dir.new_account) || downgraded(a, dir.new_order)) {
        ms_acme_directory_free(&dir);
        acme_fail(a, RESULT_ERROR, "directory %s names plain http URLs: refused under an https directory",
                  a->cfg->directory);
        return;
    }
    if (dir.external_account_required) {
        ms_acme_directory_free(&dir);
        acme_fail(a, RESULT_ERROR, "directory %s requires external account binding, which Mothership does not do",
                  a->cfg->directory);
        return;
    }
    if (a->have_directory)
        ms_acme_directory_free(&a->directory);
    a->directory = dir;
    a->have_directory = true;
    register_account(a);
}

static void account_begin(ms_acme *a)
{
    if (a->stopping || a->acc != ACC_IDLE || a->job)
        return;
    a->acc = ACC_BUSY;
    a->req = ms_httpc_request(a->http, "GET", a->cfg->directory, NULL, NULL, 0, REQUEST_TIMEOUT_MS, on_directory, a);
    if (!a->req)
        acme_fail(a, RESULT_ERROR, "directory: out of memory");
}

/* Start the next due name's order when nothing is in progress. */
void acme_kick(ms_acme *a)
{
    if (a->stopping || !a->started || a->job)
        return;
    bool any = false;
    for (size_t i = 0; i < a->nnames; i++)
        any |= a->names[i].due;
    if (!any)
        return;
    if (a->acc != ACC_READY) {
        if (a->acc == ACC_IDLE && !uv_is_active((uv_handle_t *)&a->acc_timer))
            account_begin(a);
        return;
    }
    for (size_t i = 0; i < a->nnames; i++)
        if (a->names[i].due) {
            acme_job_begin(a, &a->names[i]);
            return;
        }
}

/* ---------------------------------------------------------------- the contract */

static void load_stored(ms_acme *a, acme_name *n)
{
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    time_t nb, na;
    bool missing = false;
    char why[600];
    if (!ms_acme_cert_load(a->dir, n->name, time(NULL), &key, &leaf, &chain, &nb, &na, &missing, why, sizeof why)) {
        if (!missing)
            ms_log_event(a->d.log, MS_WARN, NULL, "acme_store",
                         "stored certificate for %s not used: %s; ordering "
                         "a new one",
                         n->name, why);
        return;
    }
    bool ok = acme_swap_in(a, n, leaf, chain, key, why, sizeof why);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    if (!ok) {
        ms_log_event(a->d.log, MS_WARN, NULL, "acme_store", "stored certificate for %s not used: %s", n->name, why);
        return;
    }
    n->have_cert = true;
    n->not_after = na;
    n->renew_at = ms_acme_renew_at(nb, na, ms_acme_random01());
    acme_log_certificate(a, n, "loaded");
}

static void free_now(ms_acme *a)
{
    for (size_t i = 0; a->names && i < a->nnames; i++)
        if (a->names[i].mt)
            ms_tls_material_unref(a->names[i].mt);
    free(a->names);
    free(a->dir);
    free(a->kid);
    free(a->nonce);
    free(a->rq_url);
    free(a->rq_payload);
    if (a->have_directory)
        ms_acme_directory_free(&a->directory);
    EVP_PKEY_free(a->account_key);
    free(a);
}

ms_acme *ms_acme_new(const ms_acme_deps *d, char *why, size_t why_len)
{
    const ms_acme_config *cfg = &d->m->global.acme;
    if (!cfg->enabled || !cfg->directory) {
        snprintf(why, why_len, "no [mothership.acme] in the manifest");
        return NULL;
    }
    ms_acme *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    a->d = *d;
    a->cfg = cfg;
    a->nnames = cfg->domains.len;
    a->names = calloc(a->nnames ? a->nnames : 1, sizeof *a->names);
    a->dir = a->names ? ms_acme_state_dir(d->m) : NULL; /* the one clearance checks */
    if (!a->names || !a->dir) {
        snprintf(why, why_len, "%s", !a->names ? "out of memory" : "cannot name the ACME state directory");
        free_now(a);
        return NULL;
    }
    char certs[4096], keypath[4096];
    if ((size_t)snprintf(certs, sizeof certs, "%s/certs", a->dir) >= sizeof certs ||
        (size_t)snprintf(keypath, sizeof keypath, "%s/account.key", a->dir) >= sizeof keypath) {
        snprintf(why, why_len, "state directory %s: path too long", a->dir);
        free_now(a);
        return NULL;
    }
    if (!ms_acme_mkdirs(certs, why, why_len)) {
        free_now(a);
        return NULL;
    }
    bool missing = false;
    char kwhy[256];
    a->account_key = ms_acme_key_load(keypath, &missing, kwhy, sizeof kwhy);
    if (!a->account_key && missing) {
        a->account_key = ms_acme_key_new();
        if (!a->account_key || !ms_acme_key_save(a->account_key, keypath, kwhy, sizeof kwhy)) {
            snprintf(why, why_len, "cannot make the ACME account key %s: %s", keypath,
                     a->account_key ? kwhy : "OpenSSL failed");
            free_now(a);
            return NULL;
        }
    } else if (!a->account_key) {
        snprintf(why, why_len, "ACME account key %s: %s", keypath, kwhy);
        free_now(a);
        return NULL;
    }
    a->kid = ms_acme_account_url_load(a->dir, cfg->directory);
    a->http = ms_httpc_new(d->loop, cfg->ca_root, why, why_len);
    if (!a->http) {
        free_now(a);
        return NULL;
    }
    uv_timer_init(d->loop, &a->acc_timer);
    uv_timer_init(d->loop, &a->poll_timer);
    a->acc_timer.data = a->poll_timer.data = a;
    a->open_handles = 2;
    for (size_t i = 0; i < a->nnames; i++) {
        acme_name *n = &a->names[i];
        n->a = a;
        n->name = cfg->domains.items[i];
        uv_timer_init(d->loop, &n->timer);
        n->timer.data = n;
        a->open_handles++;
        load_stored(a, n);
    }
    return a;
}

void ms_acme_start(ms_acme *a)
{
    if (!a || a->started)
        return;
    a->started = true;
    for (size_t i = 0; i < a->nnames; i++) {
        acme_name *n = &a->names[i];
        if (n->have_cert)
            acme_schedule_renewal(n);
        else
            n->due = true;
    }
    account_begin(a); /* now, even with nothing due: a problem with the account shows at once */
}

static void on_handle_closed(uv_handle_t *h)
{
    ms_acme *a = h->data; /* every handle's data is a once closing */
    if (--a->open_handles == 0)
        free_now(a);
}

void ms_acme_free(ms_acme *a)
{
    if (!a || a->stopping)
        return;
    a->stopping = true;
    acme_job_clear(a);
    if (a->req) {
        ms_httpc_cancel(a->req);
        a->req = NULL;
    }
    ms_httpc_free(a->http);
    a->http = NULL;
    uv_close((uv_handle_t *)&a->acc_timer, on_handle_closed);
    uv_close((uv_handle_t *)&a->poll_timer, on_handle_closed);
    for (size_t i = 0; i < a->nnames; i++) {
        a->names[i].timer.data = a;
        uv_close((uv_handle_t *)&a->names[i].timer, on_handle_closed);
    }
}

void ms_acme_set_tls(ms_acme *a, ms_tls_server *tls)
{
    if (!a)
        return;
    a->d.tls = tls;
    for (size_t i = 0; tls && i < a->nnames; i++)
        if (a->names[i].mt && !ms_tls_server_set_acme(tls, a->names[i].name, a->names[i].mt))
            ms_log_event(a->d.log, MS_WARN, NULL, "acme_certificate",
                         "the new TLS setup does not serve %s: its "
                         "ACME certificate is not used there",
                         a->names[i].name);
}

size_t ms_acme_pending(const ms_acme *a, ms_buf *names)
{
    size_t n = 0;
    if (names)
        ms_buf_puts(names, "[");
    for (size_t i = 0; a && i < a->nnames; i++) {
        if (a->names[i].have_cert)
            continue;
        if (names)
            ms_buf_printf(names, "%s\"%s\"", n ? "," : "", a->names[i].name); /* DNS names: nothing to escape */
        n++;
    }
    if (names)
        ms_buf_puts(names, "]");
    return n;
}

void ms_acme_render_metrics(const ms_acme *a, ms_prom *p)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nnames; i++) {
        const acme_name *n = &a->names[i];
        if (!n->have_cert)
            continue;
        ms_prom_label l[] = { { "name", n->name } };
        ms_prom_gauge_i64(p, "mothership_acme_certificate_expiry_timestamp_seconds",
                          "notAfter of the ACME certificate in use for each name, as Unix time.", l, 1,
                          (int64_t)n->not_after);
    }
    for (size_t i = 0; i < a->nnames; i++) {
        const acme_name *n = &a->names[i];
        if (!n->have_cert)
            continue;
        ms_prom_label l[] = { { "name", n->name } };
        ms_prom_gauge_i64(p, "mothership_acme_certificate_renewal_timestamp_seconds",
                          "When the renewal of each name's ACME certificate is due, as Unix time.", l, 1,
                          (int64_t)n->renew_at);
    }
    for (int r = 0; r < 3; r++) {
        ms_prom_label l[] = { { "result", result_names[r] } };
        ms_prom_counter_u64(p, "mothership_acme_orders_total",
                            "ACME orders by result: valid, invalid (refused by the CA or a failed challenge), "
                            "error.",
                            l, 1, a->orders[r]);
    }
}
