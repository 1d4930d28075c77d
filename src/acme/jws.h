/* jws.h: the JSON Web Signatures of ACME (RFC 8555 §6.2, RFC 7515, RFC 7518
 * ES256, RFC 7638 thumbprints) on OpenSSL 3, socket-free: base64url, the
 * account key's JWK and thumbprint, the key authorization of a challenge,
 * and a request body in the flattened JSON serialization signed with an
 * ECDSA P-256 key (the signature as the 64 bytes r || s, not DER).
 * Every function returns malloc'd, NUL-terminated text (free() it) or NULL
 * on a failure (out of memory, a key that is not EC P-256). */
#ifndef MS_ACME_JWS_H
#define MS_ACME_JWS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

/* base64url without padding (RFC 7515 §2). */
char *ms_b64url(const void *data, size_t len);
/* Decode; NULL on a character outside the alphabet or padding. *out_len set. */
unsigned char *ms_b64url_decode(const char *text, size_t len, size_t *out_len);

/* {"crv":"P-256","kty":"EC","x":"...","y":"..."}: members in the
 * lexicographic order RFC 7638 hashes, no whitespace. */
char *ms_jwk_of(EVP_PKEY *key);
/* base64url(SHA-256(JWK)) (RFC 7638). */
char *ms_jwk_thumbprint(EVP_PKEY *key);
/* token "." thumbprint (RFC 8555 §8.1). */
char *ms_acme_key_authorization(const char *token, EVP_PKEY *account_key);
/* The http-01 answer is the key authorization itself; the tls-alpn-01
 * acmeIdentifier is SHA-256 of it: out gets the 32 bytes. */
bool ms_acme_key_authorization_digest(const char *key_authorization, unsigned char out[32]);

/* A JWS in flattened JSON: {"protected":..,"payload":..,"signature":..}.
 * The protected header is {"alg":"ES256","nonce":nonce,"url":url} with
 * "kid":kid when kid is not NULL, else "jwk": the key's JWK (newAccount,
 * revocation by certificate key). payload NULL means POST-as-GET (an
 * empty payload ""); else it is JSON text, base64url-encoded here. */
char *ms_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url, const char *payload);

#endif
