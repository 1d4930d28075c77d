/* cert.h: certificate material without sockets: a certificate chain and its
 * key read from PEM files and checked (PEM, chain order, key matches,
 * validity, the host names it must cover), the names SNI chooses it by, the
 * SHA-256 fingerprint, and the self-signed certificate of development binds
 * generated into (and reused from) a state directory. Used by the TLS
 * server, by clearance (tls/check.c) and by the unit tests. */
#ifndef MS_TLS_CERT_H
#define MS_TLS_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "manifest/manifest.h"

#define MS_TLS_MAX_PEM (1u << 20)   /* a certificate or key file larger than this is refused */
#define MS_TLS_FINGERPRINT_LEN 96   /* "AB:CD:...": 32 bytes, 3 characters each, and a NUL */

/* One certificate in use: shared by reference between generations of the
 * server's contexts (a reload replaces only what it could load again). */
typedef struct ms_tls_material {
    int refs;                /* atomic */
    X509 *leaf;
    STACK_OF(X509) *chain;   /* the certificates after the leaf, in file order */
    EVP_PKEY *key;
    char **names;            /* SNI names, lower-case: the hosts given, else the certificate's DNS names */
    size_t nnames;
} ms_tls_material;

/* The whole of path, a regular file of at most MS_TLS_MAX_PEM bytes,
 * NUL-terminated, its length in *len; NULL with the reason in why ("is not a
 * regular file", ...). With missing non-NULL, a file that does not exist sets
 * *missing and says "does not exist"; otherwise it says why it cannot be read. */
char *ms_tls_read_pem_file(const char *path, size_t *len, bool *missing, char *why, size_t why_len);

/* Where a problem is: the cert file, the key file or the hosts list. */
typedef enum ms_tls_at { MS_TLS_AT_CERT, MS_TLS_AT_KEY, MS_TLS_AT_HOSTS } ms_tls_at;

/* Read cert_path (PEM, leaf first, then its chain) and key_path (PEM) and
 * check them at the time now: a certificate and a key are there, each
 * certificate issued the one before it, the key matches the leaf, the leaf
 * is valid (expired or not yet valid: the date is said), and it covers
 * every name in hosts (NULL or empty: nothing to cover). NULL with the
 * reason in why (and where in *at) when anything is wrong. */
ms_tls_material *ms_tls_material_load(const char *cert_path, const char *key_path, const ms_strlist *hosts,
                                      time_t now, ms_tls_at *at, char *why, size_t why_len);
ms_tls_material *ms_tls_material_ref(ms_tls_material *mt);
void ms_tls_material_unref(ms_tls_material *mt);

/* Same checks on objects already in memory (the tests build them). Takes
 * its own references to leaf, chain and key. */
ms_tls_material *ms_tls_material_from(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key, const ms_strlist *hosts,
                                      time_t now, ms_tls_at *at, char *why, size_t why_len);

/* A certificate name (possibly "*.example.com") against a host: equal
 * ignoring case, or a wildcard standing for exactly one leftmost label. */
bool ms_tls_name_matches(const char *pattern, const char *host);

/* The SHA-256 fingerprint of a certificate, "AB:CD:...". */
bool ms_tls_fingerprint(X509 *x, char out[MS_TLS_FINGERPRINT_LEN]);

/* "2026-12-06 08:00:00 UTC" */
void ms_tls_time_text(const ASN1_TIME *t, char *out, size_t cap);

/* The directory self-signed material is kept in: [mothership] state_dir,
 * else $MS_STATE_DIR, $XDG_STATE_HOME/mothership, $HOME/.local/state/mothership,
 * /tmp/mothership-state-<uid>. Returns a malloc'd path or NULL. */
char *ms_tls_state_dir(const ms_manifest *m);

/* The self-signed certificate of a bind: an ECDSA P-256 key and a
 * certificate for localhost, 127.0.0.1, ::1 and host (a name or address;
 * NULL or a wildcard address: none), kept as dir/self-signed-<bind>.crt and
 * .key (mode 0600, dir created 0700). Files there that still load, match,
 * cover those names and stay valid for at least a day are reused; else new
 * ones are written (*generated set). cert_path gets the certificate's path. */
ms_tls_material *ms_tls_self_signed(const char *dir, const char *bind, const char *host, time_t now,
                                    bool *generated, char *cert_path, size_t cert_path_len, char *why,
                                    size_t why_len);

/* The placeholder of an ACME name until its certificate arrives (tls.h,
 * ms_tls_server_set_acme): made in memory, never written; an ECDSA P-256
 * key, self-signed, the name its CN (when it fits) and its one SAN, valid
 * from an hour ago for 825 days (never remade: it must outlast any wait
 * for a first certificate). NULL when OpenSSL fails or out of memory. */
ms_tls_material *ms_tls_placeholder(const char *name, time_t now);

#endif
