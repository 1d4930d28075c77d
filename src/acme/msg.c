/* msg.c: the ACME server's JSON read strictly (see msg.h) with jansson:
 * documents over MS_ACME_JSON_MAX refused unparsed, duplicate members
 * refused, every member the client uses checked for its type, URLs and
 * tokens for their alphabet and size; the request bodies the client sends;
 * Retry-After. Unknown members are ignored (RFC 8555 lets servers add). */
#include "acme/msg.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "acme/jws.h"

#define MS_ACME_JSON_MAX (1u << 20) /* a larger document is refused before parsing */
#define TOKEN_MAX 256
#define TYPE_MAX 64                 /* a challenge type ("http-01") */
#define IDENT_MAX 253               /* a DNS name */
#define PROBLEM_MAX 1024            /* "type: detail" kept for an order's or a challenge's error */
#define RETRY_AFTER_MAX 86400

/* ---------------------------------------------------------------- helpers */
static bool fail(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* The document as a JSON object, or NULL with the reason. */
static json_t *load_object(const char *what, const char *json, size_t len, char *why, size_t why_len)
{
    if (!json) {
        fail(why, why_len, "%s: no document", what);
        return NULL;
    }
    if (len > MS_ACME_JSON_MAX) {
        fail(why, why_len, "%s: the document is larger than %u bytes", what, MS_ACME_JSON_MAX);
        return NULL;
    }
    json_error_t err;
    /* integers as reals: the client reads no number, and an integer past
     * 64 bits in a member it ignores must not refuse the document */
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (!root) {
        fail(why, why_len, "%s: not JSON: %s (line %d, column %d)", what, err.text, err.line, err.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        fail(why, why_len, "%s: not a JSON object", what);
        return NULL;
    }
    return root;
}

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static bool is_url(const char *s, size_t len)
{
    size_t skip;
    if (len > MS_ACME_URL_MAX)
        return false;
    if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else
        return false;
    if (len == skip)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) /* it goes into a request line: no space, control or non-ASCII byte */
            return false;
    }
    return true;
}

typedef enum { OPTIONAL, REQUIRED } presence;

/* obj.key as a string: *out is a copy, NULL when absent and optional. */
static bool get_string(const char *what, json_t *obj, const char *key, presence p, char **out, char *why,
                       size_t why_len)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (p == OPTIONAL)
            return true;
        return fail(why, why_len, "%s: \"%s\" is missing", what, key);
    }
    if (!json_is_string(v))
        return fail(why, why_len, "%s: \"%s\" is not a string", what, key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(why, why_len, "%s: \"%s\" holds a NUL byte", what, key);
    *out = dup_text(json_string_value(v));
    if (!*out)
        return fail(why, why_len, "%s: out of memory", what);
    return true;
}

static bool get_url(const char *what, json_t *obj, const char *key, presence p, char **out, char *why,
                    size_t why_len)
{
    if (!get_string(what, obj, key, p, out, why, why_len))
        return false;
    if (*out && !is_url(*out, strlen(*out))) {
        free(*out);
        *out = NULL;
        return fail(why, why_len, "%s: \"%s\" is not an http(s) URL of at most %d bytes", what, key,
                    MS_ACME_URL_MAX);
    }
    return true;
}

static bool get_bool(const char *what, json_t *obj, const char *key, bool *out, char *why, size_t why_len)
{
    *out = false;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return fail(why, why_len, "%s: \"%s\" is not true or false", what, key);
    *out = json_is_true(v);
    return true;
}

/* Which statuses each object may have (RFC 8555 §7.1.6). */
#define ST(s) (1u << (s))
#define ORDER_STATUSES (ST(MS_ACME_PENDING) | ST(MS_ACME_READY) | ST(MS_ACME_PROCESSING) | ST(MS_ACME_VALID) | \
                        ST(MS_ACME_INVALID))
#define AUTHZ_STATUSES (ST(MS_ACME_PENDING) | ST(MS_ACME_VALID) | ST(MS_ACME_INVALID) | ST(MS_ACME_DEACTIVATED) | \
                        ST(MS_ACME_EXPIRED) | ST(MS_ACME_REVOKED))
#define CHALLENGE_STATUSES (ST(MS_ACME_PENDING) | ST(MS_ACME_PROCESSING) | ST(MS_ACME_VALID) | ST(MS_ACME_INVALID))

static const char *const status_names[] = {
    [MS_ACME_PENDING] = "pending", [MS_ACME_READY] = "ready",     [MS_ACME_PROCESSING] = "processing",
    [MS_ACME_VALID] = "valid",     [MS_ACME_INVALID] = "invalid", [MS_ACME_EXPIRED] = "expired",
    [MS_ACME_DEACTIVATED] = "deactivated", [MS_ACME_REVOKED] = "revoked",
};

static bool get_status(const char *what, json_t *obj, unsigned allowed, ms_acme_status *out, char *why,
                       size_t why_len)
{
    json_t *v = json_object_get(obj, "status");
    if (!v)
        return fail(why, why_len, "%s: \"status\" is missing", what);
    if (!json_is_string(v))
        return fail(why, why_len, "%s: \"status\" is not a string", what);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
        if ((allowed & ST(i)) && strcmp(s, status_names[i]) == 0) {
            *out = (ms_acme_status)i;
            return true;
        }
    }
    return fail(why, why_len, "%s: \"status\" is not one of its statuses", what);
}

/* Printable ASCII appended at out[*at], the rest '?', within cap - 1. */
static void put_printable(char *out, size_t cap, size_t *at, const char *s)
{
    for (; *s && *at + 1 < cap; s++)
        out[(*at)++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[*at] = '\0';
}

/* "type: detail" of a problem object into out; false when obj is not one. */
static bool problem_text(json_t *obj, char *out, size_t cap, bool *bad_nonce)
{
    if (bad_nonce)
        *bad_nonce = false;
    if (cap)
        out[0] = '\0';
    json_t *type = json_object_get(obj, "type");
    json_t *detail = json_object_get(obj, "detail");
    if (!json_is_object(obj) || (type && (!json_is_string(type) || json_string_length(type) == 0)) ||
        (detail && !json_is_string(detail)))
        return false;
    /* RFC 7807 §3.1: an absent "type" is "about:blank" */
    const char *type_text = type ? json_string_value(type) : "about:blank";
    if (bad_nonce)
        *bad_nonce = strcmp(type_text, "urn:ietf:params:acme:error:badNonce") == 0;
    if (!cap)
        return true;
    size_t at = 0;
    put_printable(out, cap, &at, type_text);
    if (detail && json_string_length(detail)) {
        put_printable(out, cap, &at, ": ");
        put_printable(out, cap, &at, json_string_value(detail));
    }
    return true;
}

/* An object's "error" member (a problem) as "type: detail"; *out NULL when absent. */
static bool get_error(const char *what, json_t *obj, char **out, char *why, size_t why_len)
{
    *out = NULL;
    json_t *v = json_object_get(obj, "error");
    if (!v)
        return true;
    char text[PROBLEM_MAX];
    if (!problem_text(v, text, sizeof text, NULL))
        return fail(why, why_len, "%s: \"error\" is not a problem document", what);
    *out = dup_text(text);
    if (!*out)
        return fail(why, why_len, "%s: out of memory", what);
    return true;
}

/* ---------------------------------------------------------------- directory */
void ms_acme_directory_free(ms_acme_directory *d)
{
    if (!d)
        return;
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->revoke_cert);
    free(d->key_change);
    free(d->terms_of_service);
    memset(d, 0, sizeof *d);
}

/* meta.termsOfService: shown, never fetched, so any URI scheme (pebble's is
 * a data: URL); printable ASCII without spaces, at most MS_ACME_URL_MAX. */
static bool get_terms(json_t *meta, char **out, char *why, size_t why_len)
{
    if (!get_string("directory meta", meta, "termsOfService", OPTIONAL, out, why, why_len))
        return false;
    if (!*out)
        return true;
    size_t len = strlen(*out);
    bool ok = len > 0 && len <= MS_ACME_URL_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = (*out)[i] > 0x20 && (*out)[i] < 0x7f;
    if (!ok) {
        free(*out);
        *out = NULL;
        return fail(why, why_len, "directory meta: \"termsOfService\" is not a URI of at most %d bytes",
                    MS_ACME_URL_MAX);
    }
    return true;
}

bool ms_acme_parse_directory(const char *json, size_t len, ms_acme_directory *out, char *why, size_t why_len)
{
    static const char what[] = "directory";
    memset(out, 0, sizeof *out);
    json_t *root = load_object(what, json, len, why, why_len);
    if (!root)
        return false;
    json_t *meta = json_object_get(root, "meta");
    bool ok = get_url(what, root, "newNonce", REQUIRED, &out->new_nonce, why, why_len) &&
              get_url(what, root, "newAccount", REQUIRED, &out->new_account, why, why_len) &&
              get_url(what, root, "newOrder", REQUIRED, &out->new_order, why, why_len) &&
              get_url(what, root, "revokeCert", OPTIONAL, &out->revoke_cert, why, why_len) &&
              get_url(what, root, "keyChange", OPTIONAL, &out->key_change, why, why_len);
    if (ok && meta) {
        if (!json_is_object(meta))
            ok = fail(why, why_len, "directory: \"meta\" is not an object");
        else
            ok = get_terms(meta, &out->terms_of_service, why, why_len) &&
                 get_bool("directory meta", meta, "externalAccountRequired", &out->external_account_required,
                          why, why_len);
    }
    json_decref(root);
    if (!ok)
        ms_acme_directory_free(out);
    return ok;
}

/* ---------------------------------------------------------------- order */
void ms_acme_order_free(ms_acme_order *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->nauthz; i++)
        free(o->authorizations[i]);
    free(o->authorizations);
    free(o->finalize);
    free(o->certificate);
    free(o->error);
    memset(o, 0, sizeof *o);
}

static bool get_authorizations(json_t *root, ms_acme_order *o, char *why, size_t why_len)
{
    json_t *arr = json_object_get(root, "authorizations");
    if (!arr)
        return fail(why, why_len, "order: \"authorizations\" is missing");
    if (!json_is_array(arr))
        return fail(why, why_len, "order: \"authorizations\" is not an array");
    size_t n = json_array_size(arr);
    if (n > MS_ACME_MAX_AUTHZ)
        return fail(why, why_len, "order: more than %d authorizations", MS_ACME_MAX_AUTHZ);
    o->authorizations = calloc(n ? n : 1, sizeof *o->authorizations);
    if (!o->authorizations)
        return fail(why, why_len, "order: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v) || !is_url(json_string_value(v), json_string_length(v)))
            return fail(why, why_len, "order: authorization %zu is not an http(s) URL of at most %d bytes", i + 1,
                        MS_ACME_URL_MAX);
        o->authorizations[i] = dup_text(json_string_value(v));
        if (!o->authorizations[i])
            return fail(why, why_len, "order: out of memory");
        o->nauthz = i + 1;
    }
    return true;
}

bool ms_acme_parse_order(const char *json, size_t len, ms_acme_order *out, char *why, size_t why_len)
{
    static const char what[] = "order";
    memset(out, 0, sizeof *out);
    json_t *root = load_object(what, json, len, why, why_len);
    if (!root)
        return false;
    bool ok = get_status(what, root, ORDER_STATUSES, &out->status, why, why_len) &&
              get_authorizations(root, out, why, why_len) &&
              get_url(what, root, "finalize", REQUIRED, &out->finalize, why, why_len) &&
              get_url(what, root, "certificate", OPTIONAL, &out->certificate, why, why_len) &&
              get_error(what, root, &out->error, why, why_len);
    json_decref(root);
    if (!ok)
        ms_acme_order_free(out);
    return ok;
}

/* ---------------------------------------------------------------- challenge */
void ms_acme_challenge_free(ms_acme_challenge *c)
{
    if (!c)
        return;
    free(c->type);
    free(c->url);
    free(c->token);
    free(c->error);
    memset(c, 0, sizeof *c);
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0 || len > TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool is_type(const char *s, size_t len)
{
    if (len == 0 || len > TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    }
    return true;
}

/* The types RFC 8555 and RFC 8737 give a token. */
static bool has_token(const char *type)
{
    return strcmp(type, "http-01") == 0 || strcmp(type, "dns-01") == 0 || strcmp(type, "tls-alpn-01") == 0;
}

static bool challenge_from(const char *what, json_t *obj, ms_acme_challenge *c, char *why, size_t why_len)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(obj))
        return fail(why, why_len, "%s: not a JSON object", what);
    /* REQUIRED: set when true (said again for the analyzer) */
    bool ok = get_string(what, obj, "type", REQUIRED, &c->type, why, why_len) && c->type != NULL;
    if (ok && !is_type(c->type, strlen(c->type)))
        ok = fail(why, why_len, "%s: \"type\" is not 1 to %d printable characters", what, TYPE_MAX);
    ok = ok && get_url(what, obj, "url", REQUIRED, &c->url, why, why_len) &&
         get_status(what, obj, CHALLENGE_STATUSES, &c->status, why, why_len) &&
         get_string(what, obj, "token", has_token(c->type) ? REQUIRED : OPTIONAL, &c->token, why, why_len);
    if (ok && c->token && !is_token(c->token, strlen(c->token)))
        ok = fail(why, why_len, "%s: \"token\" is not 1 to %d base64url characters", what, TOKEN_MAX);
    ok = ok && get_error(what, obj, &c->error, why, why_len);
    if (!ok)
        ms_acme_challenge_free(c);
    return ok;
}

bool ms_acme_parse_challenge(const char *json, size_t len, ms_acme_challenge *out, char *why, size_t why_len)
{
    static const char what[] = "challenge";
    memset(out, 0, sizeof *out);
    json_t *root = load_object(what, json, len, why, why_len);
    if (!root)
        return false;
    bool ok = challenge_from(what, root, out, why, why_len);
    json_decref(root);
    return ok;
}

/* ---------------------------------------------------------------- authorization */
void ms_acme_authz_free(ms_acme_authz *a)
{
    if (!a)
        return;
    free(a->identifier);
    for (size_t i = 0; i < a->nchallenges; i++)
        ms_acme_challenge_free(&a->challenges[i]);
    memset(a, 0, sizeof *a);
}

static bool is_dns_name(const char *s, size_t len)
{
    if (len == 0 || len > IDENT_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static bool get_identifier(json_t *root, ms_acme_authz *a, char *why, size_t why_len)
{
    json_t *id = json_object_get(root, "identifier");
    if (!id)
        return fail(why, why_len, "authorization: \"identifier\" is missing");
    if (!json_is_object(id))
        return fail(why, why_len, "authorization: \"identifier\" is not an object");
    char *type = NULL;
    if (!get_string("authorization identifier", id, "type", REQUIRED, &type, why, why_len) || !type)
        return false;
    bool dns = strcmp(type, "dns") == 0;
    free(type);
    if (!dns)
        return fail(why, why_len, "authorization: the identifier's type is not \"dns\"");
    if (!get_string("authorization identifier", id, "value", REQUIRED, &a->identifier, why, why_len) ||
        !a->identifier)
        return false;
    if (!is_dns_name(a->identifier, strlen(a->identifier)))
        return fail(why, why_len, "authorization: the identifier's value is not a DNS name");
    return true;
}

static bool get_challenges(json_t *root, ms_acme_authz *a, char *why, size_t why_len)
{
    json_t *arr = json_object_get(root, "challenges");
    if (!arr)
        return fail(why, why_len, "authorization: \"challenges\" is missing");
    if (!json_is_array(arr))
        return fail(why, why_len, "authorization: \"challenges\" is not an array");
    size_t n = json_array_size(arr);
    if (n > MS_ACME_MAX_CHALLENGES)
        n = MS_ACME_MAX_CHALLENGES;
    for (size_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "authorization: challenge %zu", i + 1);
        if (!challenge_from(what, json_array_get(arr, i), &a->challenges[i], why, why_len))
            return false;
        a->nchallenges = i + 1;
    }
    return true;
}

bool ms_acme_parse_authz(const char *json, size_t len, ms_acme_authz *out, char *why, size_t why_len)
{
    static const char what[] = "authorization";
    memset(out, 0, sizeof *out);
    json_t *root = load_object(what, json, len, why, why_len);
    if (!root)
        return false;
    bool ok = get_status(what, root, AUTHZ_STATUSES, &out->status, why, why_len) &&
              get_identifier(root, out, why, why_len) && get_bool(what, root, "wildcard", &out->wildcard, why, why_len) &&
              get_challenges(root, out, why, why_len);
    json_decref(root);
    if (!ok)
        ms_acme_authz_free(out);
    return ok;
}

/* ---------------------------------------------------------------- problem */
bool ms_acme_parse_problem(const char *json, size_t len, char *out, size_t cap, bool *bad_nonce)
{
    if (bad_nonce)
        *bad_nonce = false;
    if (cap)
        out[0] = '\0';
    json_t *root = load_object("problem", json, len, NULL, 0);
    if (!root)
        return false;
    bool ok = problem_text(root, out, cap, bad_nonce);
    json_decref(root);
    return ok;
}

/* ---------------------------------------------------------------- request bodies */
static char *dump(json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return text;
}

char *ms_acme_new_account_body(const char *email)
{
    if (!email)
        return dump(json_pack("{s:b}", "termsOfServiceAgreed", 1));
    size_t cap = strlen(email) + sizeof "mailto:";
    char *contact = malloc(cap);
    if (!contact)
        return NULL;
    snprintf(contact, cap, "mailto:%s", email);
    char *text = dump(json_pack("{s:b, s:[s]}", "termsOfServiceAgreed", 1, "contact", contact));
    free(contact);
    return text;
}

char *ms_acme_new_order_body(const char *const *names, size_t n)
{
    if (!names || n == 0)
        return NULL;
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n; i++) {
        json_t *id = names[i] ? json_pack("{s:s, s:s}", "type", "dns", "value", names[i]) : NULL;
        if (json_array_append_new(ids, id) != 0) {
            json_decref(ids);
            return NULL;
        }
    }
    return ids ? dump(json_pack("{s:o}", "identifiers", ids)) : NULL;
}

char *ms_acme_finalize_body(const unsigned char *csr_der, size_t len)
{
    if (!csr_der || len == 0)
        return NULL;
    char *csr = ms_b64url(csr_der, len);
    if (!csr)
        return NULL;
    char *text = dump(json_pack("{s:s}", "csr", csr));
    free(csr);
    return text;
}

/* ---------------------------------------------------------------- Retry-After */
static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* The formats RFC 9110 §5.6.7 has recipients accept: IMF-fixdate, then the
 * obsolete RFC 850 and asctime ones. Parsed in UTC whatever the locale's
 * day and month names (the C names are the HTTP ones). */
static bool http_date(const char *s, time_t *out)
{
    static const char *const formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                          "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(s, formats[i], &tm);
        if (!end || *skip_ows(end) != '\0')
            continue;
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
            continue;
        *out = t;
        return true;
    }
    return false;
}

long ms_acme_retry_after(const char *value, time_t now)
{
    if (!value)
        return -1;
    const char *s = skip_ows(value);
    if (*s >= '0' && *s <= '9') {
        long secs = 0;
        const char *p = s;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (secs <= RETRY_AFTER_MAX)
                secs = secs * 10 + (*p - '0');
        }
        if (*skip_ows(p) != '\0')
            return -1;
        return secs > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : secs;
    }
    time_t at;
    if (!http_date(s, &at))
        return -1;
    if (at <= now)
        return 0;
    if ((uint64_t)at - (uint64_t)now > RETRY_AFTER_MAX)
        return RETRY_AFTER_MAX;
    return (long)(at - now);
}
