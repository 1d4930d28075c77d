/* fuzz_acme_msg.c: libFuzzer target for what an ACME server sends
 * (src/acme/msg.c): ms_acme_parse_directory, _order, _authz, _challenge
 * and _problem, ms_acme_retry_after, and ms_b64url_decode (jws.c).
 *
 * Role: every input goes through every parser (as bytes of its exact size;
 * a NUL-terminated copy for Retry-After and base64url). Refused: a
 * non-empty reason and a cleared struct. Accepted: every URL kept is
 * http(s), at most MS_ACME_URL_MAX bytes, without a space or control
 * byte; statuses in range; tokens base64url of 1..256; counts within
 * their limits; problem text printable ASCII within its buffer. Retry-After
 * is -1 or within [0, 86400]. A base64url text that decodes re-encodes to
 * itself. Leaks are found by the sanitizer. Seed corpus:
 * tests/fuzz/corpus/acme_msg/. Run with e.g.
 *   fuzz_acme_msg -max_total_time=60 -max_len=4096 tests/fuzz/corpus/acme_msg
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acme/jws.h"
#include "acme/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_url(const char *u)
{
    check(u != NULL);
    size_t n = strlen(u);
    check(n <= MS_ACME_URL_MAX);
    check(strncasecmp(u, "https://", 8) == 0 || strncasecmp(u, "http://", 7) == 0);
    for (size_t i = 0; i < n; i++)
        check((unsigned char)u[i] > 0x20 && (unsigned char)u[i] < 0x7f);
}

static void check_printable(const char *s)
{
    for (; s && *s; s++)
        check(*s >= 0x20 && *s < 0x7f);
}

static void check_refused(const char *why, const void *obj, size_t size)
{
    check(why[0] != '\0');
    const unsigned char *p = obj;
    for (size_t i = 0; i < size; i++)
        check(p[i] == 0);
}

static void check_challenge(const ms_acme_challenge *c)
{
    check(c->type && c->type[0]);
    check_url(c->url);
    check(c->status <= MS_ACME_REVOKED);
    if (c->token) {
        size_t n = strlen(c->token);
        check(n >= 1 && n <= 256);
        check(strspn(c->token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n);
    }
    check_printable(c->error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    char why[256];

    ms_acme_directory d;
    why[0] = '\0';
    if (ms_acme_parse_directory(json, size, &d, why, sizeof why)) {
        check_url(d.new_nonce);
        check_url(d.new_account);
        check_url(d.new_order);
        if (d.revoke_cert)
            check_url(d.revoke_cert);
        if (d.key_change)
            check_url(d.key_change);
        check_printable(d.terms_of_service);
        ms_acme_directory_free(&d);
    } else {
        check_refused(why, &d, sizeof d);
    }

    ms_acme_order o;
    why[0] = '\0';
    if (ms_acme_parse_order(json, size, &o, why, sizeof why)) {
        check(o.status <= MS_ACME_INVALID);
        check(o.nauthz <= MS_ACME_MAX_AUTHZ);
        for (size_t i = 0; i < o.nauthz; i++)
            check_url(o.authorizations[i]);
        check_url(o.finalize);
        if (o.certificate)
            check_url(o.certificate);
        check_printable(o.error);
        ms_acme_order_free(&o);
    } else {
        check_refused(why, &o, sizeof o);
    }

    ms_acme_authz a;
    why[0] = '\0';
    if (ms_acme_parse_authz(json, size, &a, why, sizeof why)) {
        check(a.status <= MS_ACME_REVOKED && a.status != MS_ACME_READY && a.status != MS_ACME_PROCESSING);
        check(a.identifier && a.identifier[0]);
        check(a.nchallenges <= MS_ACME_MAX_CHALLENGES);
        for (size_t i = 0; i < a.nchallenges; i++)
            check_challenge(&a.challenges[i]);
        ms_acme_authz_free(&a);
    } else {
        check_refused(why, &a, sizeof a);
    }

    ms_acme_challenge c;
    why[0] = '\0';
    if (ms_acme_parse_challenge(json, size, &c, why, sizeof why)) {
        check_challenge(&c);
        ms_acme_challenge_free(&c);
    } else {
        check_refused(why, &c, sizeof c);
    }

    char problem[64];
    bool bad_nonce = true;
    if (ms_acme_parse_problem(json, size, problem, sizeof problem, &bad_nonce)) {
        check(strlen(problem) < sizeof problem);
        check_printable(problem);
    } else {
        check(!bad_nonce && problem[0] == '\0');
    }

    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    long ra = ms_acme_retry_after(text, 1767225600); /* 2026-01-01 00:00 UTC */
    check(ra == -1 || (ra >= 0 && ra <= 86400));

    size_t n = 0;
    unsigned char *bytes = ms_b64url_decode(text, size, &n);
    if (bytes) {
        char *again = ms_b64url(bytes, n);
        check(again && strlen(again) == size && memcmp(again, text, size) == 0);
        free(again);
        free(bytes);
    }
    free(text);
    return 0;
}
