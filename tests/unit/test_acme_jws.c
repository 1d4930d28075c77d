/* test_acme_jws.c: unit tests of src/acme/jws.c: base64url both ways
 * (RFC 4648 vectors, the url-safe characters, strict decoding), the JWK of
 * a fixed P-256 key (RFC 7515 A.3's) to the byte and its thumbprint, the
 * thumbprint rule against RFC 7638 §3.1's RSA example, key authorizations,
 * and JWS requests checked as a server would: the protected header read
 * back as JSON, the payload decoded, and the r || s signature turned back
 * into DER and verified with EVP_DigestVerify. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "acme/jws.h"

/* RFC 7515 Appendix A.3: the ES256 example key. */
#define A3_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define A3_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define A3_D "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"
#define A3_JWK "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\"}"
/* base64url(SHA-256(A3_JWK)), computed with `openssl dgst -sha256 -binary | basenc --base64url` */
#define A3_THUMBPRINT "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"

static unsigned char *decode(const char *text, size_t *len)
{
    unsigned char *out = ms_b64url_decode(text, strlen(text), len);
    assert_non_null(out);
    return out;
}

static EVP_PKEY *a3_key(void)
{
    size_t xl, yl, dl;
    unsigned char *x = decode(A3_X, &xl), *y = decode(A3_Y, &yl), *d = decode(A3_D, &dl);
    assert_int_equal(xl, 32);
    assert_int_equal(yl, 32);
    assert_int_equal(dl, 32);
    unsigned char pub[65] = {0x04};
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    BIGNUM *priv = BN_bin2bn(d, 32, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_non_null(priv);
    assert_non_null(bld);
    assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0));
    assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub));
    assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv));
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    assert_non_null(params);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(priv);
    free(x);
    free(y);
    free(d);
    return key;
}

/* ---------------------------------------------------------------- base64url */
static void check_b64(const char *plain, size_t len, const char *encoded)
{
    char *e = ms_b64url(plain, len);
    assert_non_null(e);
    assert_string_equal(e, encoded);
    size_t n = 99;
    unsigned char *d = ms_b64url_decode(encoded, strlen(encoded), &n);
    assert_non_null(d);
    assert_int_equal(n, len);
    assert_memory_equal(d, plain, len);
    free(e);
    free(d);
}

static void test_b64url_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10, padding dropped */
    check_b64("", 0, "");
    check_b64("f", 1, "Zg");
    check_b64("fo", 2, "Zm8");
    check_b64("foo", 3, "Zm9v");
    check_b64("foob", 4, "Zm9vYg");
    check_b64("fooba", 5, "Zm9vYmE");
    check_b64("foobar", 6, "Zm9vYmFy");
    /* 62 and 63 are '-' and '_' (standard base64: "+/8") */
    check_b64("\xfb\xff", 2, "-_8");
    check_b64("\x00\x00\x00", 3, "AAAA");
    /* RFC 7515 §3.3's protected header */
    check_b64("{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}", 30, "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9");
}

static void test_b64url_decode_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg==",  /* padding */
        "+_8",   /* standard alphabet */
        "-/8",
        "Zm9v\n", /* whitespace */
        " Zm9v",
        "Z",     /* a length no encoding has */
        "Zm9vY",
        "Zh",    /* low bits set: not the text ms_b64url writes for "f" */
        "Zm9",
        "Zm\0v",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 7;
        size_t len = i == sizeof bad / sizeof bad[0] - 1 ? 4 : strlen(bad[i]);
        unsigned char *d = ms_b64url_decode(bad[i], len, &n);
        if (d)
            fail_msg("decoded \"%s\"", bad[i]);
    }
    /* every byte value survives the round trip */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t len = 0; len <= sizeof all; len += 37) {
        char *e = ms_b64url(all, len);
        assert_non_null(e);
        assert_null(strpbrk(e, "+/="));
        size_t n;
        unsigned char *d = ms_b64url_decode(e, strlen(e), &n);
        assert_non_null(d);
        assert_int_equal(n, len);
        assert_memory_equal(d, all, len);
        free(e);
        free(d);
    }
}

/* ---------------------------------------------------------------- JWK, thumbprint */
static void test_jwk_fixed_key(void **state)
{
    (void)state;
    EVP_PKEY *key = a3_key();
    char *jwk = ms_jwk_of(key);
    assert_non_null(jwk);
    assert_string_equal(jwk, A3_JWK);
    char *tp = ms_jwk_thumbprint(key);
    assert_non_null(tp);
    assert_string_equal(tp, A3_THUMBPRINT);
    free(jwk);
    free(tp);
    EVP_PKEY_free(key);
}

/* Coordinates with leading zero bytes keep their 32 bytes (43 characters). */
static void test_jwk_fresh_keys(void **state)
{
    (void)state;
    for (int i = 0; i < 64; i++) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        assert_non_null(key);
        char *jwk = ms_jwk_of(key);
        assert_non_null(jwk);
        json_error_t err;
        json_t *j = json_loads(jwk, JSON_REJECT_DUPLICATES, &err);
        assert_non_null(j);
        assert_int_equal(json_object_size(j), 4);
        assert_int_equal(strlen(json_string_value(json_object_get(j, "x"))), 43);
        assert_int_equal(strlen(json_string_value(json_object_get(j, "y"))), 43);
        json_decref(j);
        free(jwk);
        EVP_PKEY_free(key);
    }
}

/* RFC 7638 §3.1: the thumbprint is base64url(SHA-256(the JWK's text)); the
 * example there is an RSA key, so the rule is checked on its JWK text with
 * the same SHA-256 (ms_acme_key_authorization_digest) and ms_b64url. */
static void test_thumbprint_rfc7638(void **state)
{
    (void)state;
    static const char rsa_jwk[] =
        "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1R"
        "K7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2N"
        "cRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}";
    unsigned char md[32];
    assert_true(ms_acme_key_authorization_digest(rsa_jwk, md));
    char *tp = ms_b64url(md, sizeof md);
    assert_non_null(tp);
    assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    free(tp);
}

static void test_not_p256(void **state)
{
    (void)state;
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(p384);
    assert_non_null(rsa);
    assert_non_null(ed);
    EVP_PKEY *keys[] = {p384, rsa, ed, NULL};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_null(ms_jwk_of(keys[i]));
        assert_null(ms_jwk_thumbprint(keys[i]));
        assert_null(ms_acme_key_authorization("tok", keys[i]));
        assert_null(ms_jws_sign(keys[i], NULL, "n", "https://ca/x", "{}"));
    }
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
}

static void test_key_authorization(void **state)
{
    (void)state;
    EVP_PKEY *key = a3_key();
    char *ka = ms_acme_key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", key);
    assert_non_null(ka);
    assert_string_equal(ka, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA." A3_THUMBPRINT);
    unsigned char md[32], want[32];
    unsigned int n = 0;
    assert_true(ms_acme_key_authorization_digest(ka, md));
    assert_int_equal(EVP_Digest(ka, strlen(ka), want, &n, EVP_sha256(), NULL), 1);
    assert_memory_equal(md, want, 32);
    assert_false(ms_acme_key_authorization_digest(NULL, md));
    free(ka);
    EVP_PKEY_free(key);
}

/* ---------------------------------------------------------------- JWS */
/* Checks jws as an ACME server would; returns the protected header (the
 * caller's to json_decref) and the decoded payload in *payload. */
static json_t *verify_jws(const char *jws, EVP_PKEY *pub, char **payload, bool *verified)
{
    json_error_t err;
    json_t *j = json_loads(jws, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 3);
    const char *prot = json_string_value(json_object_get(j, "protected"));
    const char *body = json_string_value(json_object_get(j, "payload"));
    const char *sig = json_string_value(json_object_get(j, "signature"));
    assert_non_null(prot);
    assert_non_null(body);
    assert_non_null(sig);

    size_t hl, pl, sl;
    unsigned char *h = decode(prot, &hl);
    unsigned char *p = decode(body, &pl);
    unsigned char *s = decode(sig, &sl);
    assert_int_equal(sl, 64); /* r || s, not DER */
    json_t *header = json_loadb((const char *)h, hl, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(header);
    *payload = calloc(1, pl + 1);
    assert_non_null(*payload);
    memcpy(*payload, p, pl);

    /* r || s back to DER */
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(s, 32, NULL), *sv = BN_bin2bn(s + 32, 32, NULL);
    assert_non_null(es);
    assert_non_null(r);
    assert_non_null(sv);
    assert_int_equal(ECDSA_SIG_set0(es, r, sv), 1);
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);

    size_t in_len = strlen(prot) + 1 + strlen(body);
    char *input = malloc(in_len + 1);
    assert_non_null(input);
    snprintf(input, in_len + 1, "%s.%s", prot, body);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
    *verified = EVP_DigestVerify(md, der, (size_t)der_len, (const unsigned char *)input, in_len) == 1;

    EVP_MD_CTX_free(md);
    free(input);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(h);
    free(p);
    free(s);
    json_decref(j);
    return header;
}

/* The public half alone, as the server has it (from the JWK). */
static EVP_PKEY *public_only(EVP_PKEY *key)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(key, &der);
    assert_true(len > 0);
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, len);
    assert_non_null(pub);
    OPENSSL_free(der);
    return pub;
}

static void test_jws_with_jwk(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    EVP_PKEY *pub = public_only(key);
    const char *payload = "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:ops@example.com\"]}";
    for (int round = 0; round < 20; round++) { /* signatures whose r or s start with zero bytes too */
        char *jws = ms_jws_sign(key, NULL, "oFvnlFP1wIhRlYS2jTaXbA", "https://ca.example/acme/new-acct", payload);
        assert_non_null(jws);
        char *got = NULL;
        bool ok = false;
        json_t *h = verify_jws(jws, pub, &got, &ok);
        assert_true(ok);
        assert_string_equal(got, payload);
        assert_int_equal(json_object_size(h), 4);
        assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
        assert_string_equal(json_string_value(json_object_get(h, "nonce")), "oFvnlFP1wIhRlYS2jTaXbA");
        assert_string_equal(json_string_value(json_object_get(h, "url")), "https://ca.example/acme/new-acct");
        assert_null(json_object_get(h, "kid"));
        json_t *jwk = json_object_get(h, "jwk");
        assert_true(json_is_object(jwk));
        char *jwk_text = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
        char *want = ms_jwk_of(key);
        assert_string_equal(jwk_text, want);
        free(jwk_text);
        free(want);
        json_decref(h);
        free(got);
        free(jws);
    }
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
}

static void test_jws_with_kid_post_as_get(void **state)
{
    (void)state;
    EVP_PKEY *key = a3_key();
    EVP_PKEY *pub = public_only(key);
    char *jws = ms_jws_sign(key, "https://ca.example/acme/acct/1", "n0nce", "https://ca.example/acme/order/7", NULL);
    assert_non_null(jws);
    char *got = NULL;
    bool ok = false;
    json_t *h = verify_jws(jws, pub, &got, &ok);
    assert_true(ok);
    assert_string_equal(got, ""); /* POST-as-GET */
    json_t *j = json_loads(jws, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    json_decref(j);
    assert_int_equal(json_object_size(h), 4);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "https://ca.example/acme/acct/1");
    assert_null(json_object_get(h, "jwk"));
    /* the exact header: members in this order, compact */
    const char *prot = strstr(jws, "\"protected\":\"") + strlen("\"protected\":\"");
    size_t hl;
    unsigned char *text = ms_b64url_decode(prot, strcspn(prot, "\""), &hl);
    assert_non_null(text);
    const char want[] = "{\"alg\":\"ES256\",\"nonce\":\"n0nce\",\"url\":\"https://ca.example/acme/order/7\","
                        "\"kid\":\"https://ca.example/acme/acct/1\"}";
    assert_int_equal(hl, strlen(want));
    assert_memory_equal(text, want, hl);
    free(text);
    json_decref(h);
    free(got);
    free(jws);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
}

/* A changed payload or another key does not verify: the check above can fail. */
static void test_jws_tampered(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    assert_non_null(key);
    assert_non_null(other);
    char *jws = ms_jws_sign(key, "kid", "nonce", "https://ca/x", "{\"a\":1}");
    assert_non_null(jws);
    char *got = NULL;
    bool ok = true;
    json_t *h = verify_jws(jws, other, &got, &ok);
    assert_false(ok);
    json_decref(h);
    free(got);

    char *body = ms_b64url("{\"a\":2}", 7);
    char *orig = ms_b64url("{\"a\":1}", 7);
    char *at = strstr(jws, orig);
    assert_non_null(at);
    memcpy(at, body, strlen(body));
    h = verify_jws(jws, key, &got, &ok);
    assert_false(ok);
    assert_string_equal(got, "{\"a\":2}");
    json_decref(h);
    free(got);
    free(body);
    free(orig);
    free(jws);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* Header values are JSON-escaped, and a missing nonce or url is refused. */
static void test_jws_escaping_and_arguments(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    char *jws = ms_jws_sign(key, "k\"id", "a\\b", "https://ca/\"x\"", "{}");
    assert_non_null(jws);
    char *got;
    bool ok;
    json_t *h = verify_jws(jws, key, &got, &ok);
    assert_true(ok);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "k\"id");
    assert_string_equal(json_string_value(json_object_get(h, "nonce")), "a\\b");
    assert_string_equal(json_string_value(json_object_get(h, "url")), "https://ca/\"x\"");
    json_decref(h);
    free(got);
    free(jws);
    assert_null(ms_jws_sign(key, NULL, NULL, "https://ca/x", "{}"));
    assert_null(ms_jws_sign(key, NULL, "n", NULL, "{}"));
    assert_null(ms_jws_sign(key, "\xff\xfe", "n", "https://ca/x", "{}")); /* not UTF-8 */
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_b64url_decode_strict),
        cmocka_unit_test(test_jwk_fixed_key),
        cmocka_unit_test(test_jwk_fresh_keys),
        cmocka_unit_test(test_thumbprint_rfc7638),
        cmocka_unit_test(test_not_p256),
        cmocka_unit_test(test_key_authorization),
        cmocka_unit_test(test_jws_with_jwk),
        cmocka_unit_test(test_jws_with_kid_post_as_get),
        cmocka_unit_test(test_jws_tampered),
        cmocka_unit_test(test_jws_escaping_and_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
