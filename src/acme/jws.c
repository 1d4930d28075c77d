/* jws.c: ACME's JSON Web Signatures on OpenSSL 3 (see jws.h): base64url
 * over OpenSSL's base64, the P-256 JWK and its RFC 7638 thumbprint, key
 * authorizations, and the flattened JWS of a request signed ES256 (the
 * DER ECDSA signature OpenSSL makes turned into the 64 bytes r || s). */
#include "acme/jws.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#define P256_COORD 32 /* bytes in a P-256 coordinate, and in r and in s */

/* ---------------------------------------------------------------- base64url */
char *ms_b64url(const void *data, size_t len)
{
    if (len > (size_t)INT32_MAX / 2)
        return NULL;
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int n = len ? EVP_EncodeBlock((unsigned char *)out, data, (int)len) : 0;
    if (n < 0) {
        free(out);
        return NULL;
    }
    size_t end = (size_t)n;
    while (end > 0 && out[end - 1] == '=')
        end--;
    for (size_t i = 0; i < end; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[end] = '\0';
    return out;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict: only the url-safe alphabet, no padding, no whitespace, and the
 * unused low bits of the last character zero (one text per byte string). */
unsigned char *ms_b64url_decode(const char *text, size_t len, size_t *out_len)
{
    *out_len = 0;
    if (len % 4 == 1 || len > (size_t)INT32_MAX / 2)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (b64url_value(text[i]) < 0)
            return NULL;
    }
    if (len % 4 == 2 && (b64url_value(text[len - 1]) & 0x0f))
        return NULL;
    if (len % 4 == 3 && (b64url_value(text[len - 1]) & 0x03))
        return NULL;
    size_t padded = (len + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1); /* + 1: never malloc(0) */
    if (!std || !out) {
        free(std);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < len; i++)
        std[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    for (size_t i = len; i < padded; i++)
        std[i] = '=';
    std[padded] = '\0';
    int n = padded ? EVP_DecodeBlock(out, (const unsigned char *)std, (int)padded) : 0;
    free(std);
    if (n < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    size_t pad = padded - len;
    *out_len = (size_t)n - pad;
    return out;
}

/* ---------------------------------------------------------------- JWK */
static bool is_p256(EVP_PKEY *key)
{
    char group[64];
    size_t glen = 0;
    if (!key || !EVP_PKEY_is_a(key, "EC"))
        return false;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen)) {
        ERR_clear_error();
        return false;
    }
    return OBJ_txt2nid(group) == NID_X9_62_prime256v1 || EC_curve_nist2nid(group) == NID_X9_62_prime256v1;
}

/* x and y as base64url of their 32-byte big-endian values. */
static bool jwk_coords(EVP_PKEY *key, char **x, char **y)
{
    BIGNUM *bx = NULL, *by = NULL;
    unsigned char bin[P256_COORD];
    *x = *y = NULL;
    bool ok = is_p256(key) && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx) &&
              EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by);
    if (ok && BN_bn2binpad(bx, bin, sizeof bin) == (int)sizeof bin)
        *x = ms_b64url(bin, sizeof bin);
    if (ok && BN_bn2binpad(by, bin, sizeof bin) == (int)sizeof bin)
        *y = ms_b64url(bin, sizeof bin);
    BN_free(bx);
    BN_free(by);
    ERR_clear_error();
    if (!*x || !*y) {
        free(*x);
        free(*y);
        *x = *y = NULL;
        return false;
    }
    return true;
}

char *ms_jwk_of(EVP_PKEY *key)
{
    char *x, *y;
    if (!jwk_coords(key, &x, &y))
        return NULL;
    /* base64url needs no JSON escaping; the order is RFC 7638's */
    static const char fmt[] = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}";
    size_t cap = sizeof fmt + strlen(x) + strlen(y);
    char *out = malloc(cap);
    if (out)
        snprintf(out, cap, fmt, x, y);
    free(x);
    free(y);
    return out;
}

static bool sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

char *ms_jwk_thumbprint(EVP_PKEY *key)
{
    char *jwk = ms_jwk_of(key);
    if (!jwk)
        return NULL;
    unsigned char md[32];
    char *out = sha256(jwk, strlen(jwk), md) ? ms_b64url(md, sizeof md) : NULL;
    free(jwk);
    return out;
}

char *ms_acme_key_authorization(const char *token, EVP_PKEY *account_key)
{
    if (!token)
        return NULL;
    char *tp = ms_jwk_thumbprint(account_key);
    if (!tp)
        return NULL;
    size_t cap = strlen(token) + 1 + strlen(tp) + 1;
    char *out = malloc(cap);
    if (out)
        snprintf(out, cap, "%s.%s", token, tp);
    free(tp);
    return out;
}

bool ms_acme_key_authorization_digest(const char *key_authorization, unsigned char out[32])
{
    return key_authorization && sha256(key_authorization, strlen(key_authorization), out);
}

/* ---------------------------------------------------------------- JWS */
/* The 64 bytes r || s of a DER ECDSA-Sig-Value, as base64url. */
static char *der_to_raw_b64(const unsigned char *der, size_t der_len)
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        return NULL;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    unsigned char raw[2 * P256_COORD];
    char *out = NULL;
    if (BN_bn2binpad(r, raw, P256_COORD) == P256_COORD && BN_bn2binpad(s, raw + P256_COORD, P256_COORD) == P256_COORD)
        out = ms_b64url(raw, sizeof raw);
    ECDSA_SIG_free(sig);
    return out;
}

/* ES256 over "protected.payload": the signature in JWS form. */
static char *es256_sign(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    size_t der_len = 0;
    char *out = NULL;
    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestSign(md, NULL, &der_len, (const unsigned char *)input, strlen(input)) == 1 &&
        (der = malloc(der_len)) != NULL &&
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, strlen(input)) == 1)
        out = der_to_raw_b64(der, der_len);
    free(der);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return out;
}

/* {"alg":"ES256","nonce":..,"url":..,"kid"|"jwk":..} as compact JSON. */
static char *protected_header(EVP_PKEY *key, const char *kid, const char *nonce, const char *url)
{
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    if (!h)
        return NULL;
    bool ok;
    if (kid) {
        ok = json_object_set_new(h, "kid", json_string(kid)) == 0;
    } else {
        char *x, *y;
        ok = jwk_coords(key, &x, &y);
        if (ok) {
            ok = json_object_set_new(h, "jwk", json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC",
                                                         "x", x, "y", y)) == 0;
            free(x);
            free(y);
        }
    }
    char *text = ok ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    return text;
}

char *ms_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url, const char *payload)
{
    if (!is_p256(key) || !nonce || !url)
        return NULL;
    char *header = protected_header(key, kid, nonce, url);
    char *prot = header ? ms_b64url(header, strlen(header)) : NULL;
    char *body = ms_b64url(payload ? payload : "", payload ? strlen(payload) : 0);
    char *input = NULL, *sig = NULL, *out = NULL;
    if (prot && body) {
        size_t cap = strlen(prot) + 1 + strlen(body) + 1;
        input = malloc(cap);
        if (input)
            snprintf(input, cap, "%s.%s", prot, body);
    }
    if (input)
        sig = es256_sign(key, input);
    if (sig) {
        json_t *jws = json_pack("{s:s, s:s, s:s}", "protected", prot, "payload", body, "signature", sig);
        if (jws)
            out = json_dumps(jws, JSON_COMPACT);
        json_decref(jws);
    }
    free(header);
    free(prot);
    free(body);
    free(input);
    free(sig);
    return out;
}
