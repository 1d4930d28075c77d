/* engine.h: the ACME client's socket-free parts, shared by acme.c and the
 * unit tests: when a certificate is due for renewal, how long to wait
 * after a failed order and between polls, and its state on disk
 * (store.c: directories made private, account.json, a name's stored
 * certificate read back). */
#ifndef MS_ACME_ENGINE_H
#define MS_ACME_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define MS_ACME_POLL_CAP_MS 8000u    /* polls wait 1 s, 2 s, 4 s, then 8 s each */
#define MS_ACME_POLL_DEADLINE_S 120  /* an authorization or order decided within this */
#define MS_ACME_RETRY_AFTER_MAX_S 60 /* a longer Retry-After is cut to this while polling */

/* A uniform random number in [0, 1) (OpenSSL's RAND_bytes; 0.5 when that fails). */
double ms_acme_random01(void);

/* When a certificate valid [not_before, not_after] is due: two thirds of
 * its lifetime past, minus jitter01 (in [0, 1)) times a tenth of its
 * lifetime, and at least a minute before it expires; but never before
 * half its lifetime (a certificate of a few minutes is not renewed at once). */
time_t ms_acme_renew_at(time_t not_before, time_t not_after, double jitter01);

/* The wait after the failures-th failed order in a row (failures >= 1):
 * backoff_ms doubled failures-1 times, at most max_backoff_ms, then up to
 * a tenth less (jitter01 in [0, 1)); at least a second. */
uint64_t ms_acme_backoff_ms(uint64_t backoff_ms, uint64_t max_backoff_ms, unsigned failures, double jitter01);

/* The wait before poll number attempt (0, 1, ...) of an authorization or
 * order: the server's Retry-After when it sent one (retry_after_s >= 0;
 * at least a second, at most MS_ACME_RETRY_AFTER_MAX_S), else 1 s, 2 s,
 * 4 s, then MS_ACME_POLL_CAP_MS. */
uint64_t ms_acme_poll_ms(unsigned attempt, long retry_after_s);

/* ---- store.c: the state directory (its path: check.h ms_acme_state_dir) ---- */

/* mkdir -p path with mode 0700 for what it makes; an existing directory is
 * chmod'ed 0700 when it is ours. false with the reason in why. */
bool ms_acme_mkdirs(const char *path, char *why, size_t why_len);

/* "<dir>/certs/<name>.crt" and ".key" into out; false when too long. */
bool ms_acme_cert_paths(const char *dir, const char *name, char *crt, char *key, size_t cap);

/* account.json's "url" when the file is there and was written for
 * directory; malloc'd or NULL. */
char *ms_acme_account_url_load(const char *dir, const char *directory);
/* Write account.json (0600, atomically). */
bool ms_acme_account_url_save(const char *dir, const char *directory, const char *url, char *why, size_t why_len);

/* Store a name's certificate chain (pem) and its key, each 0600: both
 * written in full beside the old pair, then renamed over it, so a failed
 * write leaves the old pair whole (a new key beside an old certificate
 * would not load, and clearance refuses it). false with why. */
bool ms_acme_cert_save(const char *dir, const char *name, EVP_PKEY *key, const char *pem, size_t len, char *why,
                       size_t why_len);

/* A name's stored certificate: both files there, loaded, the chain's leaf
 * for the key and covering name, not yet expired at now. On success the
 * caller owns *key, *leaf and *chain. *missing set when neither file is
 * there (nothing to say). false with the reason in why. */
bool ms_acme_cert_load(const char *dir, const char *name, time_t now, EVP_PKEY **key, X509 **leaf,
                       STACK_OF(X509) * *chain, time_t *not_before, time_t *not_after, bool *missing, char *why,
                       size_t why_len);

#endif
