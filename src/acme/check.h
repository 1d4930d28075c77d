/* check.h: what clearance checks of [mothership.acme] offline, and where
 * the ACME state of a manifest lives (shared with the engine). */
#ifndef MS_ACME_CHECK_H
#define MS_ACME_CHECK_H

#include <stddef.h>

#include "manifest/manifest.h"
#include "util/diag.h"

/* The state directory of m's ACME directory URL (acme/acme.h): under
 * acme.state_dir, else <state dir>/acme (ms_tls_state_dir), one directory
 * named for the URL's host, port and path: the host lower-cased, '_', the
 * port, then the path with every byte other than letters, digits, '.' and
 * '-' made '_' ("acme-v02.api.letsencrypt.org_443_directory",
 * "127.0.0.1_14000_dir"; at most 200 bytes). malloc'd; NULL when out of
 * memory or the URL does not parse (the loader refuses such URLs). */
char *ms_acme_state_dir(const ms_manifest *m);

/* Clearance, offline, when [mothership.acme] is there: ca_root is a
 * readable PEM with at least one certificate; in the state directory the
 * account key and each name's stored certificate and key, when present,
 * load and match (a certificate for another key or name, a key that is
 * not ECDSA P-256, a certificate without its key). Nothing missing is a
 * problem: it is made at the start. Each problem is added to diags at
 * its key's line:col; returns how many. */
size_t ms_acme_check(const ms_manifest *m, ms_diags *diags);

#endif
