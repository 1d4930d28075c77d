/* tls_standin.h: the TLS server configuration the data plane takes its
 * SSL objects from (one per accepted connection on a TLS bind). This is a
 * minimal stand-in: one certificate from [mothership.tls], TLS 1.2 and 1.3,
 * ALPN http/1.1 only; the full one (SNI, several certificates, reload,
 * session ticket keys, self-signed) has the same functions. */
#ifndef MS_HTTP_TLS_STANDIN_H
#define MS_HTTP_TLS_STANDIN_H

#include <stddef.h>

#include "manifest/manifest.h"

typedef struct ms_tls_server ms_tls_server;
struct ssl_st;

/* NULL with a reason when a certificate or key cannot be used. */
ms_tls_server *ms_tls_server_new(const ms_manifest *m, char *why, size_t why_len);
/* A new server-side SSL for a connection on bind bind_idx; thread-safe;
 * NULL: out of memory. */
struct ssl_st *ms_tls_server_ssl(ms_tls_server *s, size_t bind_idx);
void ms_tls_server_free(ms_tls_server *s);

#endif
