/* acme.h: the ACME client (RFC 8555) on the control loop: an account,
 * then for each name of the manifest's ACME domains one certificate
 * (one order, one name: a name that fails does not hold the others up),
 * obtained, stored, swapped into the TLS server for new handshakes and
 * renewed, with no restart.
 *
 * State, under [mothership.acme] state_dir (default <state_dir>/acme),
 * one directory per ACME directory URL (its host, port and path made a
 * file name), mode 0700, every file 0600:
 *   <dir>/account.key   the account's ECDSA P-256 key (PKCS#8 PEM)
 *   <dir>/account.json  {"directory": URL, "url": the account's URL (kid)}
 *   <dir>/certs/<name>.crt, .key   the chain as the CA sent it, its key
 *
 * A name's life: a stored certificate that loads, matches its key, covers
 * the name and is not yet due is used at once (no order). Due: two thirds
 * of its lifetime past, minus a random jitter of up to a tenth of its
 * lifetime (at least a minute early for very short ones). Until a name has
 * a certificate it is pending: handshakes get the TLS server's
 * self-signed placeholder and /ready says so. An order that fails (any
 * step: the network, the CA's problem document, an invalid challenge) is
 * logged with the CA's reason and retried after the backoff (backoff,
 * doubled per failure up to max_backoff, with jitter); a certificate in
 * use keeps being served until it expires. badNonce answers are retried
 * at once with the fresh nonce (up to 5 times per request).
 *
 * Challenges (challenge = "http-01" or "tls-alpn-01") are published on
 * the board (acme/board.h) for the data plane to answer, and withdrawn
 * once the authorization is decided. */
#ifndef MS_ACME_ACME_H
#define MS_ACME_ACME_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "acme/board.h"
#include "fleet/logs.h"
#include "manifest/manifest.h"
#include "metrics/prom.h"
#include "tls/tls.h"

typedef struct ms_acme ms_acme;

typedef struct ms_acme_deps {
    uv_loop_t *loop;         /* the control loop */
    const ms_manifest *m;    /* outlives the client; m->global.acme.enabled */
    ms_tls_server *tls;      /* where certificates are swapped in (ms_tls_server_set_acme) */
    ms_acme_board *board;    /* where challenges are published */
    ms_log *log;
} ms_acme_deps;

/* Read the state directory (created 0700 when missing): the account key
 * (made when missing, not yet registered) and every name's stored
 * certificate; the ones still good are swapped into the TLS server before
 * this returns, so the first handshakes already use them. NULL with the
 * reason in why (a state directory that cannot be made or read, an
 * account key that does not load, out of memory). No network yet. */
ms_acme *ms_acme_new(const ms_acme_deps *d, char *why, size_t why_len);

/* Begin: register or find the account, order what is missing or due, and
 * keep renewing. */
void ms_acme_start(ms_acme *a);

/* Stop what is in flight (withdraw published challenges); the handles
 * close on the loop; a is freed once they have. */
void ms_acme_free(ms_acme *a);

/* A reload made a new TLS server for new handshakes (the old one retires
 * with its data plane generation): every certificate in use is swapped
 * into tls, and later ones go there. Control loop. */
void ms_acme_set_tls(ms_acme *a, ms_tls_server *tls);

/* How many names have no certificate yet; names gets them as a JSON
 * array of strings when not NULL. Control loop. */
size_t ms_acme_pending(const ms_acme *a, ms_buf *names);

/* The metrics: mothership_acme_certificate_expiry_timestamp_seconds{name}
 * (the notAfter of the certificate in use, as Unix time; absent while
 * pending), mothership_acme_certificate_renewal_timestamp_seconds{name}
 * (when the next renewal is due), mothership_acme_orders_total{result}
 * (result "valid", "invalid" for an order the CA refused or a challenge
 * that failed, "error" for anything else). Control loop. */
void ms_acme_render_metrics(const ms_acme *a, ms_prom *p);

#endif
