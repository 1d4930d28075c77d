/* material.h: the keys and certificates ACME deals in, socket-free:
 * ECDSA P-256 keys made, written (mode 0600, written to a temporary file
 * and renamed) and read back; the CSR of an order (DER, the names as
 * subjectAltName DNS entries, the first also the CN); the self-signed
 * certificate of a tls-alpn-01 challenge (RFC 8737: the one name as SAN,
 * the critical acmeIdentifier extension 1.3.6.1.5.5.7.1.31 holding
 * OCTET STRING(SHA-256(key authorization))); a PEM chain as the CA sends
 * it checked against its key and names, with its validity. */
#ifndef MS_ACME_MATERIAL_H
#define MS_ACME_MATERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* A new ECDSA P-256 key; NULL when OpenSSL fails. */
EVP_PKEY *ms_acme_key_new(void);
/* Write key as PKCS#8 PEM to path, mode 0600, atomically (a new path.tmp,
 * whatever was left there removed first; a unique short name in the same
 * directory when path.tmp would be over NAME_MAX; fsync, rename). false
 * with the reason in why. */
bool ms_acme_key_save(EVP_PKEY *key, const char *path, char *why, size_t why_len);
/* Read a PEM private key; it must be EC P-256 (the reason otherwise, e.g.
 * "is an RSA key: ACME account keys here are ECDSA P-256"). NULL with the
 * reason in why; a missing file says "does not exist" and sets *missing. */
EVP_PKEY *ms_acme_key_load(const char *path, bool *missing, char *why, size_t why_len);

/* The DER CSR for names (at least one) signed with key; *der_len set.
 * malloc'd; NULL on a failure. */
unsigned char *ms_acme_csr(EVP_PKEY *key, const char *const *names, size_t nnames, size_t *der_len);

/* The tls-alpn-01 challenge certificate for name (self-signed with key,
 * valid from now - 1 day for 7 days). NULL on a failure. */
X509 *ms_acme_alpn_cert(EVP_PKEY *key, const char *name, const unsigned char digest[32]);

/* A certificate chain in PEM (leaf first) as downloaded or stored: parsed,
 * the leaf's key equal to key's public key, the leaf covering name
 * (ms_tls_name_matches), its validity read. On success *leaf and *chain
 * (the rest, possibly empty) are the caller's, not_before/not_after set.
 * false with the reason in why (a chain that is not PEM, empty, of more
 * than MS_ACME_MAX_CHAIN certificates, for another key, not covering the
 * name). */
#define MS_ACME_MAX_CHAIN 10 /* the leaf and its issuers; a CA's are 2 to 4 */
bool ms_acme_chain_parse(const char *pem, size_t len, EVP_PKEY *key, const char *name, X509 **leaf,
                         STACK_OF(X509) **chain, time_t *not_before, time_t *not_after, char *why, size_t why_len);

/* Write text to path atomically with mode 0600 (as ms_acme_key_save). */
bool ms_acme_file_save(const char *path, const char *text, size_t len, char *why, size_t why_len);

#endif
