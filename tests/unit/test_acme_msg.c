/* test_acme_msg.c: unit tests of src/acme/msg.c: directories, orders,
 * authorizations and challenges as pebble and Let's Encrypt send them,
 * and each way a document is refused (missing or mistyped members, URLs
 * that are not http(s) or too long, bad tokens, unknown statuses,
 * duplicates, too many authorizations, documents over 1 MiB); problem
 * documents (badNonce, printable text, truncation); the request bodies
 * read back as JSON; Retry-After in seconds and as each HTTP-date form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "acme/jws.h"
#include "acme/msg.h"

#define S(text) text, strlen(text)

static char why[512];

/* ---------------------------------------------------------------- directory */
static const char pebble_directory[] =
    "{\n"
    "   \"keyChange\": \"https://127.0.0.1:14000/rollover-account-key\",\n"
    "   \"meta\": {\n"
    "      \"externalAccountRequired\": false,\n"
    "      \"termsOfService\": \"data:text/plain,Do%20what%20thou%20wilt\"\n"
    "   },\n"
    "   \"newAccount\": \"https://127.0.0.1:14000/sign-me-up\",\n"
    "   \"newNonce\": \"https://127.0.0.1:14000/nonce-plz\",\n"
    "   \"newOrder\": \"https://127.0.0.1:14000/order-plz\",\n"
    "   \"revokeCert\": \"https://127.0.0.1:14000/revoke-cert\"\n"
    "}";

static const char le_directory[] =
    "{\"HxjxOVGsyXU\":\"https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417\","
    "\"keyChange\":\"https://acme-v02.api.letsencrypt.org/acme/key-change\","
    "\"meta\":{\"caaIdentities\":[\"letsencrypt.org\"],"
    "\"termsOfService\":\"https://letsencrypt.org/documents/LE-SA-v1.4-April-3-2024.pdf\","
    "\"website\":\"https://letsencrypt.org\"},"
    "\"newAccount\":\"https://acme-v02.api.letsencrypt.org/acme/new-acct\","
    "\"newNonce\":\"https://acme-v02.api.letsencrypt.org/acme/new-nonce\","
    "\"newOrder\":\"https://acme-v02.api.letsencrypt.org/acme/new-order\","
    "\"renewalInfo\":\"https://acme-v02.api.letsencrypt.org/draft-ietf-acme-ari-03/renewalInfo\","
    "\"revokeCert\":\"https://acme-v02.api.letsencrypt.org/acme/revoke-cert\"}";

static void test_directory(void **state)
{
    (void)state;
    ms_acme_directory d;
    assert_true(ms_acme_parse_directory(S(le_directory), &d, why, sizeof why));
    assert_string_equal(d.new_nonce, "https://acme-v02.api.letsencrypt.org/acme/new-nonce");
    assert_string_equal(d.new_account, "https://acme-v02.api.letsencrypt.org/acme/new-acct");
    assert_string_equal(d.new_order, "https://acme-v02.api.letsencrypt.org/acme/new-order");
    assert_string_equal(d.revoke_cert, "https://acme-v02.api.letsencrypt.org/acme/revoke-cert");
    assert_string_equal(d.key_change, "https://acme-v02.api.letsencrypt.org/acme/key-change");
    assert_string_equal(d.terms_of_service, "https://letsencrypt.org/documents/LE-SA-v1.4-April-3-2024.pdf");
    assert_false(d.external_account_required);
    ms_acme_directory_free(&d);
    assert_null(d.new_nonce);
    ms_acme_directory_free(&d); /* twice is harmless */

    /* pebble's terms are a data: URL: shown only, so kept */
    assert_true(ms_acme_parse_directory(S(pebble_directory), &d, why, sizeof why));
    assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(d.terms_of_service, "data:text/plain,Do%20what%20thou%20wilt");
    ms_acme_directory_free(&d);

    const char minimal[] = "{\"newNonce\":\"http://ca/n\",\"newAccount\":\"http://ca/a\",\"newOrder\":\"http://ca/o\","
                           "\"meta\":{\"externalAccountRequired\":true}}";
    assert_true(ms_acme_parse_directory(S(minimal), &d, why, sizeof why));
    assert_null(d.revoke_cert);
    assert_null(d.key_change);
    assert_null(d.terms_of_service);
    assert_true(d.external_account_required);
    ms_acme_directory_free(&d);
}

static void expect_directory_refused(const char *json, const char *reason)
{
    ms_acme_directory d;
    memset(&d, 0x5a, sizeof d);
    why[0] = '\0';
    assert_false(ms_acme_parse_directory(json, strlen(json), &d, why, sizeof why));
    assert_string_equal(why, reason);
    assert_null(d.new_nonce); /* nothing to free, the struct cleared */
    assert_null(d.terms_of_service);
}

static void test_directory_refused(void **state)
{
    (void)state;
    expect_directory_refused("{\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
                             "directory: \"newNonce\" is missing");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":7}",
                             "directory: \"newOrder\" is not a string");
    expect_directory_refused("{\"newNonce\":\"ftp://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
                             "directory: \"newNonce\" is not an http(s) URL of at most 2048 bytes");
    expect_directory_refused("{\"newNonce\":\"https://\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
                             "directory: \"newNonce\" is not an http(s) URL of at most 2048 bytes");
    expect_directory_refused("{\"newNonce\":\"https://ca/n x\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
                             "directory: \"newNonce\" is not an http(s) URL of at most 2048 bytes");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\\r\\nX: y\",\"newAccount\":\"https://ca/a\","
                             "\"newOrder\":\"https://ca/o\"}",
                             "directory: \"newNonce\" is not an http(s) URL of at most 2048 bytes");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
                             "\"revokeCert\":null}",
                             "directory: \"revokeCert\" is not a string");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
                             "\"meta\":[]}",
                             "directory: \"meta\" is not an object");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
                             "\"meta\":{\"externalAccountRequired\":\"no\"}}",
                             "directory meta: \"externalAccountRequired\" is not true or false");
    expect_directory_refused("{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
                             "\"meta\":{\"termsOfService\":\"see the site\"}}",
                             "directory meta: \"termsOfService\" is not a URI of at most 2048 bytes");
    expect_directory_refused("[]", "directory: not a JSON object");
    ms_acme_directory d;
    const char dup[] = "{\"newNonce\":\"https://ca/n\",\"newNonce\":\"https://ca/m\"}";
    assert_false(ms_acme_parse_directory(S(dup), &d, why, sizeof why));
    assert_non_null(strstr(why, "directory: not JSON: duplicate object key"));
    assert_false(ms_acme_parse_directory("{", 1, &d, why, sizeof why));
    assert_true(strncmp(why, "directory: not JSON: ", 21) == 0);
    assert_false(ms_acme_parse_directory(NULL, 0, &d, why, sizeof why));

    /* a URL of exactly the limit is kept, one byte more is not */
    char url[MS_ACME_URL_MAX + 2];
    memset(url, 'a', sizeof url);
    memcpy(url, "https://ca/", 11);
    url[MS_ACME_URL_MAX] = '\0';
    char *json = malloc(3 * MS_ACME_URL_MAX);
    assert_non_null(json);
    snprintf(json, 3 * MS_ACME_URL_MAX, "{\"newNonce\":\"%s\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
             url);
    assert_true(ms_acme_parse_directory(json, strlen(json), &d, why, sizeof why));
    assert_int_equal(strlen(d.new_nonce), MS_ACME_URL_MAX);
    ms_acme_directory_free(&d);
    url[MS_ACME_URL_MAX] = 'a';
    url[MS_ACME_URL_MAX + 1] = '\0';
    snprintf(json, 3 * MS_ACME_URL_MAX, "{\"newNonce\":\"%s\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
             url);
    assert_false(ms_acme_parse_directory(json, strlen(json), &d, why, sizeof why));
    free(json);
}

/* Over 1 MiB is refused before parsing: even a valid document. */
static void test_size_limit(void **state)
{
    (void)state;
    const char head[] = "{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}";
    size_t len = (1u << 20) + 1;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memset(big, ' ', len);
    memcpy(big, head, sizeof head - 1);
    big[len] = '\0';
    ms_acme_directory d;
    assert_false(ms_acme_parse_directory(big, len, &d, why, sizeof why));
    assert_string_equal(why, "directory: the document is larger than 1048576 bytes");
    assert_true(ms_acme_parse_directory(big, len - 1, &d, why, sizeof why)); /* 1 MiB exactly: parsed */
    ms_acme_directory_free(&d);
    char problem[64];
    bool bad_nonce = true;
    memcpy(big, "{\"type\":\"urn:ietf:params:acme:error:badNonce\"}", 46);
    assert_false(ms_acme_parse_problem(big, len, problem, sizeof problem, &bad_nonce));
    assert_false(bad_nonce);
    free(big);
}

/* ---------------------------------------------------------------- order */
static void test_order(void **state)
{
    (void)state;
    const char pending[] =
        "{\"status\":\"pending\",\"expires\":\"2026-01-02T00:00:00Z\","
        "\"identifiers\":[{\"type\":\"dns\",\"value\":\"example.com\"},{\"type\":\"dns\",\"value\":\"www.example.com\"}],"
        "\"finalize\":\"https://ca/finalize/1\","
        "\"authorizations\":[\"https://ca/authz/a\",\"https://ca/authz/b\"]}";
    ms_acme_order o;
    assert_true(ms_acme_parse_order(S(pending), &o, why, sizeof why));
    assert_int_equal(o.status, MS_ACME_PENDING);
    assert_int_equal(o.nauthz, 2);
    assert_string_equal(o.authorizations[0], "https://ca/authz/a");
    assert_string_equal(o.authorizations[1], "https://ca/authz/b");
    assert_string_equal(o.finalize, "https://ca/finalize/1");
    assert_null(o.certificate);
    assert_null(o.error);
    ms_acme_order_free(&o);

    const char valid[] = "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"https://ca/z\"],"
                         "\"certificate\":\"https://ca/cert/9\"}";
    assert_true(ms_acme_parse_order(S(valid), &o, why, sizeof why));
    assert_int_equal(o.status, MS_ACME_VALID);
    assert_string_equal(o.certificate, "https://ca/cert/9");
    ms_acme_order_free(&o);

    const char invalid[] = "{\"status\":\"invalid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],"
                           "\"error\":{\"type\":\"urn:ietf:params:acme:error:unauthorized\","
                           "\"detail\":\"no \\u00e9 here\\n\",\"status\":403}}";
    assert_true(ms_acme_parse_order(S(invalid), &o, why, sizeof why));
    assert_int_equal(o.status, MS_ACME_INVALID);
    assert_int_equal(o.nauthz, 0);
    assert_string_equal(o.error, "urn:ietf:params:acme:error:unauthorized: no ?? here?");
    ms_acme_order_free(&o);

    /* members the client does not read may hold any JSON number: an
     * unsigned 64-bit id, a 30-digit integer (RFC 8555 lets servers add) */
    const char big[] = "{\"status\":\"pending\",\"finalize\":\"https://ca/f\",\"authorizations\":[],"
                       "\"id\":18446744073709551615,\"meta\":{\"n\":[123456789012345678901234567890,-1]}}";
    assert_true(ms_acme_parse_order(S(big), &o, why, sizeof why));
    assert_int_equal(o.status, MS_ACME_PENDING);
    ms_acme_order_free(&o);

    /* a problem without "type" is "about:blank" (RFC 7807 §3.1), its detail kept */
    const char untyped[] = "{\"status\":\"invalid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],"
                           "\"error\":{\"detail\":\"x\"}}";
    assert_true(ms_acme_parse_order(S(untyped), &o, why, sizeof why));
    assert_string_equal(o.error, "about:blank: x");
    ms_acme_order_free(&o);

    static const char *const statuses[] = {"pending", "ready", "processing", "valid", "invalid"};
    static const ms_acme_status want[] = {MS_ACME_PENDING, MS_ACME_READY, MS_ACME_PROCESSING, MS_ACME_VALID,
                                          MS_ACME_INVALID};
    for (size_t i = 0; i < 5; i++) {
        char json[200];
        snprintf(json, sizeof json, "{\"status\":\"%s\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
                 statuses[i]);
        assert_true(ms_acme_parse_order(json, strlen(json), &o, why, sizeof why));
        assert_int_equal(o.status, want[i]);
        ms_acme_order_free(&o);
    }
}

static void expect_order_refused(const char *json, const char *reason)
{
    ms_acme_order o;
    why[0] = '\0';
    assert_false(ms_acme_parse_order(json, strlen(json), &o, why, sizeof why));
    assert_string_equal(why, reason);
    assert_null(o.authorizations);
    assert_int_equal(o.nauthz, 0);
    assert_null(o.finalize);
}

static void test_order_refused(void **state)
{
    (void)state;
    expect_order_refused("{\"finalize\":\"https://ca/f\",\"authorizations\":[]}", "order: \"status\" is missing");
    expect_order_refused("{\"status\":\"deactivated\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
                         "order: \"status\" is not one of its statuses");
    expect_order_refused("{\"status\":\"Valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
                         "order: \"status\" is not one of its statuses");
    expect_order_refused("{\"status\":1,\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
                         "order: \"status\" is not a string");
    expect_order_refused("{\"status\":\"ready\",\"authorizations\":[]}", "order: \"finalize\" is missing");
    expect_order_refused("{\"status\":\"ready\",\"finalize\":\"https://ca/f\"}", "order: \"authorizations\" is missing");
    expect_order_refused("{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":\"https://ca/z\"}",
                         "order: \"authorizations\" is not an array");
    expect_order_refused("{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"https://ca/z\",3]}",
                         "order: authorization 2 is not an http(s) URL of at most 2048 bytes");
    expect_order_refused("{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"file:///etc/passwd\"]}",
                         "order: authorization 1 is not an http(s) URL of at most 2048 bytes");
    expect_order_refused("{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],\"certificate\":\"\"}",
                         "order: \"certificate\" is not an http(s) URL of at most 2048 bytes");
    expect_order_refused("{\"status\":\"invalid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],\"error\":\"bad\"}",
                         "order: \"error\" is not a problem document");
    expect_order_refused("{\"status\":\"invalid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],\"error\":{\"type\":3}}",
                         "order: \"error\" is not a problem document");

    /* MS_ACME_MAX_AUTHZ authorizations are kept; one more refuses the order */
    char *json = malloc(64 * (MS_ACME_MAX_AUTHZ + 2));
    assert_non_null(json);
    for (int n = MS_ACME_MAX_AUTHZ; n <= MS_ACME_MAX_AUTHZ + 1; n++) {
        size_t at = (size_t)sprintf(json, "{\"status\":\"ready\",\"finalize\":\"https://ca/f\",\"authorizations\":[");
        for (int i = 0; i < n; i++)
            at += (size_t)sprintf(json + at, "%s\"https://ca/authz/%d\"", i ? "," : "", i);
        sprintf(json + at, "]}");
        ms_acme_order o;
        bool ok = ms_acme_parse_order(json, strlen(json), &o, why, sizeof why);
        if (n == MS_ACME_MAX_AUTHZ) {
            assert_true(ok);
            assert_int_equal(o.nauthz, MS_ACME_MAX_AUTHZ);
            assert_string_equal(o.authorizations[MS_ACME_MAX_AUTHZ - 1], "https://ca/authz/99");
            ms_acme_order_free(&o);
        } else {
            assert_false(ok);
            assert_string_equal(why, "order: more than 100 authorizations");
        }
    }
    free(json);
}

/* ---------------------------------------------------------------- authorization, challenge */
static const char pebble_authz[] =
    "{\n"
    "   \"status\": \"pending\",\n"
    "   \"identifier\": {\"type\": \"dns\", \"value\": \"example.com\"},\n"
    "   \"challenges\": [\n"
    "      {\"type\": \"tls-alpn-01\", \"url\": \"https://127.0.0.1:14000/chalZ/a1\",\n"
    "       \"token\": \"UHIyo8cYVTD4-DlXL2KEyn_aiQWH1HsdHxLJ-TgYkwo\", \"status\": \"pending\"},\n"
    "      {\"type\": \"http-01\", \"url\": \"https://127.0.0.1:14000/chalZ/a2\",\n"
    "       \"token\": \"p1rKTDzEpgBKnaR2bEFoHSd1MRcgmS-UFLTyXdkwigA\", \"status\": \"pending\"},\n"
    "      {\"type\": \"dns-01\", \"url\": \"https://127.0.0.1:14000/chalZ/a3\",\n"
    "       \"token\": \"WDr3HfK0hhwc3yUDc8CgTVHhKNzSq-MhzwZvsSgmRcg\", \"status\": \"pending\"}\n"
    "   ],\n"
    "   \"expires\": \"2026-05-01T12:00:00Z\"\n"
    "}";

static void test_authz(void **state)
{
    (void)state;
    ms_acme_authz a;
    assert_true(ms_acme_parse_authz(S(pebble_authz), &a, why, sizeof why));
    assert_int_equal(a.status, MS_ACME_PENDING);
    assert_string_equal(a.identifier, "example.com");
    assert_false(a.wildcard);
    assert_int_equal(a.nchallenges, 3);
    assert_string_equal(a.challenges[0].type, "tls-alpn-01");
    assert_string_equal(a.challenges[0].url, "https://127.0.0.1:14000/chalZ/a1");
    assert_string_equal(a.challenges[0].token, "UHIyo8cYVTD4-DlXL2KEyn_aiQWH1HsdHxLJ-TgYkwo");
    assert_int_equal(a.challenges[0].status, MS_ACME_PENDING);
    assert_null(a.challenges[0].error);
    assert_string_equal(a.challenges[1].type, "http-01");
    assert_string_equal(a.challenges[2].type, "dns-01");
    ms_acme_authz_free(&a);
    assert_null(a.identifier);
    assert_int_equal(a.nchallenges, 0);

    /* a wildcard, a challenge of another type without a token, a failed one */
    const char other[] =
        "{\"status\":\"invalid\",\"wildcard\":true,\"identifier\":{\"type\":\"dns\",\"value\":\"example.org\"},"
        "\"challenges\":[{\"type\":\"x-future-01\",\"url\":\"https://ca/c/1\",\"status\":\"pending\"},"
        "{\"type\":\"http-01\",\"url\":\"https://ca/c/2\",\"token\":\"t\",\"status\":\"invalid\","
        "\"validated\":\"2026-01-01T00:00:00Z\","
        "\"error\":{\"type\":\"urn:ietf:params:acme:error:connection\",\"detail\":\"127.0.0.2: connection refused\"}}]}";
    assert_true(ms_acme_parse_authz(S(other), &a, why, sizeof why));
    assert_int_equal(a.status, MS_ACME_INVALID);
    assert_true(a.wildcard);
    assert_int_equal(a.nchallenges, 2);
    assert_null(a.challenges[0].token);
    assert_int_equal(a.challenges[1].status, MS_ACME_INVALID);
    assert_string_equal(a.challenges[1].error, "urn:ietf:params:acme:error:connection: 127.0.0.2: connection refused");
    ms_acme_authz_free(&a);

    /* more than MS_ACME_MAX_CHALLENGES: the first ones kept, the rest ignored unread */
    char *json = malloc(200 * (MS_ACME_MAX_CHALLENGES + 4));
    assert_non_null(json);
    size_t at = (size_t)sprintf(json, "{\"status\":\"valid\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.b\"},"
                                      "\"challenges\":[");
    for (int i = 0; i < MS_ACME_MAX_CHALLENGES + 3; i++)
        at += (size_t)sprintf(json + at, "%s{\"type\":\"http-01\",\"url\":\"https://ca/c/%d\",\"token\":\"tok%d\","
                                         "\"status\":\"valid\"}", i ? "," : "", i, i);
    sprintf(json + at, ",7]}");
    assert_true(ms_acme_parse_authz(json, strlen(json), &a, why, sizeof why));
    assert_int_equal(a.nchallenges, MS_ACME_MAX_CHALLENGES);
    assert_string_equal(a.challenges[MS_ACME_MAX_CHALLENGES - 1].token, "tok15");
    ms_acme_authz_free(&a);
    free(json);

    const char statuses[] = "{\"status\":\"deactivated\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.b\"},"
                            "\"challenges\":[]}";
    assert_true(ms_acme_parse_authz(S(statuses), &a, why, sizeof why));
    assert_int_equal(a.status, MS_ACME_DEACTIVATED);
    ms_acme_authz_free(&a);
}

static void expect_authz_refused(const char *json, const char *reason)
{
    ms_acme_authz a;
    why[0] = '\0';
    assert_false(ms_acme_parse_authz(json, strlen(json), &a, why, sizeof why));
    assert_string_equal(why, reason);
    assert_null(a.identifier);
    assert_int_equal(a.nchallenges, 0);
}

#define ID "\"identifier\":{\"type\":\"dns\",\"value\":\"example.com\"}"
#define CH(rest) "{\"status\":\"pending\"," ID ",\"challenges\":[" rest "]}"

static void test_authz_refused(void **state)
{
    (void)state;
    expect_authz_refused("{\"status\":\"ready\"," ID ",\"challenges\":[]}",
                         "authorization: \"status\" is not one of its statuses");
    expect_authz_refused("{\"status\":\"pending\",\"challenges\":[]}", "authorization: \"identifier\" is missing");
    expect_authz_refused("{\"status\":\"pending\",\"identifier\":{\"type\":\"ip\",\"value\":\"127.0.0.1\"},\"challenges\":[]}",
                         "authorization: the identifier's type is not \"dns\"");
    expect_authz_refused("{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a b\"},\"challenges\":[]}",
                         "authorization: the identifier's value is not a DNS name");
    expect_authz_refused("{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\"},\"challenges\":[]}",
                         "authorization identifier: \"value\" is missing");
    expect_authz_refused("{\"status\":\"pending\"," ID "}", "authorization: \"challenges\" is missing");
    expect_authz_refused("{\"status\":\"pending\"," ID ",\"wildcard\":1,\"challenges\":[]}",
                         "authorization: \"wildcard\" is not true or false");
    expect_authz_refused(CH("7"), "authorization: challenge 1: not a JSON object");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"status\":\"pending\"}"),
                         "authorization: challenge 1: \"token\" is missing");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"status\":\"pending\",\"token\":\"../x\"}"),
                         "authorization: challenge 1: \"token\" is not 1 to 256 base64url characters");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"status\":\"pending\",\"token\":\"\"}"),
                         "authorization: challenge 1: \"token\" is not 1 to 256 base64url characters");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"status\":\"expired\",\"token\":\"t\"}"),
                         "authorization: challenge 1: \"status\" is not one of its statuses");
    expect_authz_refused(CH("{\"type\":\"http 01\",\"url\":\"https://ca/c\",\"status\":\"pending\"}"),
                         "authorization: challenge 1: \"type\" is not 1 to 64 printable characters");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"status\":\"pending\",\"token\":\"t\"}"),
                         "authorization: challenge 1: \"url\" is missing");
    expect_authz_refused(CH("{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"status\":\"pending\",\"token\":\"t\"},"
                            "{\"type\":\"dns-01\",\"url\":\"https://ca/d\",\"status\":\"pending\",\"token\":7}"),
                         "authorization: challenge 2: \"token\" is not a string");
}

static void test_challenge(void **state)
{
    (void)state;
    char token[300];
    memset(token, 'A', sizeof token);
    token[256] = '\0';
    char json[600];
    snprintf(json, sizeof json, "{\"type\":\"tls-alpn-01\",\"url\":\"https://ca/c\",\"status\":\"processing\",\"token\":\"%s\"}",
             token);
    ms_acme_challenge c;
    assert_true(ms_acme_parse_challenge(json, strlen(json), &c, why, sizeof why));
    assert_int_equal(c.status, MS_ACME_PROCESSING);
    assert_int_equal(strlen(c.token), 256);
    ms_acme_challenge_free(&c);
    token[256] = 'A';
    token[257] = '\0';
    snprintf(json, sizeof json, "{\"type\":\"tls-alpn-01\",\"url\":\"https://ca/c\",\"status\":\"processing\",\"token\":\"%s\"}",
             token);
    assert_false(ms_acme_parse_challenge(json, strlen(json), &c, why, sizeof why));
    assert_string_equal(why, "challenge: \"token\" is not 1 to 256 base64url characters");
    assert_null(c.type);
    assert_false(ms_acme_parse_challenge(S("{\"type\":\"http-01\"}"), &c, why, sizeof why));
    assert_string_equal(why, "challenge: \"url\" is missing");
    assert_false(ms_acme_parse_challenge(S("[\"http-01\"]"), &c, why, sizeof why));
    assert_string_equal(why, "challenge: not a JSON object");
}

/* ---------------------------------------------------------------- problem */
static void test_problem(void **state)
{
    (void)state;
    char out[200];
    bool bad_nonce = false;
    const char nonce[] = "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"JWS has an invalid anti-replay "
                         "nonce: \\\"abc\\\"\",\"status\":400}";
    assert_true(ms_acme_parse_problem(S(nonce), out, sizeof out, &bad_nonce));
    assert_true(bad_nonce);
    assert_string_equal(out, "urn:ietf:params:acme:error:badNonce: JWS has an invalid anti-replay nonce: \"abc\"");

    const char other[] = "{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":\"tab\\there\\u0007 \\u00fc\"}";
    assert_true(ms_acme_parse_problem(S(other), out, sizeof out, &bad_nonce));
    assert_false(bad_nonce);
    assert_string_equal(out, "urn:ietf:params:acme:error:rateLimited: tab?here? ??"); /* ü is two bytes */

    assert_true(ms_acme_parse_problem(S("{\"type\":\"about:blank\"}"), out, sizeof out, &bad_nonce));
    assert_string_equal(out, "about:blank");

    /* truncated to the buffer */
    char small[12];
    assert_true(ms_acme_parse_problem(S(nonce), small, sizeof small, &bad_nonce));
    assert_string_equal(small, "urn:ietf:pa");
    assert_true(bad_nonce);
    assert_true(ms_acme_parse_problem(S(nonce), NULL, 0, NULL));

    /* RFC 7807 §3.1: an absent "type" is "about:blank"; the detail is kept */
    assert_true(ms_acme_parse_problem(S("{\"detail\":\"rate limited\",\"status\":429}"), out, sizeof out, &bad_nonce));
    assert_false(bad_nonce);
    assert_string_equal(out, "about:blank: rate limited");

    static const char *const not_problems[] = {
        "{\"type\":7}", "{\"type\":\"\"}", "{\"type\":\"a\",\"detail\":3}",
        "[\"type\"]", "<html>502 Bad Gateway</html>", "",
    };
    for (size_t i = 0; i < sizeof not_problems / sizeof not_problems[0]; i++) {
        bad_nonce = true;
        strcpy(out, "left over");
        assert_false(ms_acme_parse_problem(not_problems[i], strlen(not_problems[i]), out, sizeof out, &bad_nonce));
        assert_false(bad_nonce);
        assert_string_equal(out, "");
    }
}

/* ---------------------------------------------------------------- request bodies */
static json_t *load(char *text)
{
    assert_non_null(text);
    json_error_t err;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(j);
    free(text);
    return j;
}

static void test_bodies(void **state)
{
    (void)state;
    char *text = ms_acme_new_account_body(NULL);
    assert_string_equal(text, "{\"termsOfServiceAgreed\":true}");
    free(text);

    json_t *j = load(ms_acme_new_account_body("o\"ps@example.com"));
    assert_true(json_is_true(json_object_get(j, "termsOfServiceAgreed")));
    json_t *contact = json_object_get(j, "contact");
    assert_int_equal(json_array_size(contact), 1);
    assert_string_equal(json_string_value(json_array_get(contact, 0)), "mailto:o\"ps@example.com");
    assert_int_equal(json_object_size(j), 2);
    json_decref(j);

    const char *names[] = {"example.com", "www.example.com"};
    text = ms_acme_new_order_body(names, 2);
    assert_string_equal(text, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"example.com\"},"
                              "{\"type\":\"dns\",\"value\":\"www.example.com\"}]}");
    free(text);
    assert_null(ms_acme_new_order_body(names, 0));

    const unsigned char csr[] = {0x30, 0x82, 0xfb, 0xff, 0x00};
    j = load(ms_acme_finalize_body(csr, sizeof csr));
    assert_int_equal(json_object_size(j), 1);
    const char *b64 = json_string_value(json_object_get(j, "csr"));
    assert_string_equal(b64, "MIL7_wA");
    size_t n;
    unsigned char *back = ms_b64url_decode(b64, strlen(b64), &n);
    assert_non_null(back);
    assert_int_equal(n, sizeof csr);
    assert_memory_equal(back, csr, n);
    free(back);
    json_decref(j);
}

/* ---------------------------------------------------------------- Retry-After */
static void test_retry_after(void **state)
{
    (void)state;
    const time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(ms_acme_retry_after("120", now), 120);
    assert_int_equal(ms_acme_retry_after("0", now), 0);
    assert_int_equal(ms_acme_retry_after(" 7 ", now), 7);
    assert_int_equal(ms_acme_retry_after("86400", now), 86400);
    assert_int_equal(ms_acme_retry_after("86401", now), 86400);
    assert_int_equal(ms_acme_retry_after("99999999999999999999999999", now), 86400);
    /* the three HTTP-date forms, 60 s ahead */
    assert_int_equal(ms_acme_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), 60);
    assert_int_equal(ms_acme_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), 60);
    assert_int_equal(ms_acme_retry_after("Sun Nov  6 08:50:37 1994", now), 60);
    assert_int_equal(ms_acme_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    assert_int_equal(ms_acme_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), 0); /* past */
    assert_int_equal(ms_acme_retry_after("Mon, 07 Nov 1994 08:49:38 GMT", now), 86400);
    static const char *const bad[] = {
        NULL, "", "  ", "-5", "1.5", "12s", "soon", "Sun, 06 Nov 1994 08:50:37", "Sun, 06 Nov 1994 08:50:37 GMT x",
        "Sun, 32 Nov 1994 08:50:37 GMT", "0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ms_acme_retry_after(bad[i], now) != -1)
            fail_msg("understood \"%s\"", bad[i] ? bad[i] : "(null)");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_directory_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_order_refused),
        cmocka_unit_test(test_authz),
        cmocka_unit_test(test_authz_refused),
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_problem),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
