/* cert_helpers.h: making X.509 certificates for the unit tests of the TLS
 * material, the ACME client, its challenge board and the data plane. */
#ifndef MS_TEST_CERT_HELPERS_H
#define MS_TEST_CERT_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

/* Adds the extension nid = value (openssl's config syntax) to x. */
static inline void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for cn with subjectAltName san (NULL: none), valid from
 * now+from to now+to seconds, for key, signed by issuer with issuer_key
 * (NULL: itself); ca: marked a CA (critical basicConstraints). */
static inline X509 *make_cert(const char *cn, const char *san, long from, long to, EVP_PKEY *key, X509 *issuer,
                              EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    time_t now = time(NULL);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, from, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), 0, to, &now);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, key);
    if (san)
        add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
    if (ca)
        add_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

/* A new P-256 key in *key and a self-signed certificate for it (see
 * make_cert). */
static inline X509 *self_signed(const char *cn, const char *san, long from, long to, EVP_PKEY **key)
{
    *key = EVP_EC_gen("P-256");
    assert_non_null(*key);
    return make_cert(cn, san, from, to, *key, NULL, NULL, false);
}

#endif
