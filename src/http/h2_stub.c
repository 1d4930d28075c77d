/* h2_stub.c: no HTTP/2 session in this build: a transport on which ALPN
 * chose "h2" is not taken (with the TLS configuration of this build, ALPN
 * never chooses it). h2.c replaces this file. */
#include "http/http_impl.h"

bool ms_h2_start(ms_worker *w, uint32_t bind_idx, ms_xport *x, const char *peer, bool secure)
{
    (void)w;
    (void)bind_idx;
    (void)x;
    (void)peer;
    (void)secure;
    return false;
}
