/* redirect.h: the Location of a plain bind's redirect to https
 * (redirect_to_https), without socket code. The client's Host names the
 * server (its port dropped); the port is the TLS bind's, left out when it
 * is 443; the path and query are the request's, as normalised. A Host that
 * is not a plain host name or IP literal gets no redirect (the caller
 * answers 400): nothing of the client's reaches the Location unchecked. */
#ifndef MS_HTTP_REDIRECT_H
#define MS_HTTP_REDIRECT_H

#include <stddef.h>
#include <stdint.h>

#include "manifest/manifest.h"

/* The port of the first TCP bind that terminates TLS; 0: there is none. */
uint16_t ms_redirect_https_port(const ms_global *g);

/* Write "https://host[:port]target" into out (cap bytes, no NUL) and return
 * its length; 0 when host is empty or not a host name / IP literal with an
 * optional ":port", when target does not start with '/', or when it does
 * not fit. */
size_t ms_redirect_location(const char *host, size_t host_len, uint16_t port, const char *target,
                            size_t target_len, char *out, size_t cap);

#endif
