/* hbay_params.h: the HAIL a request to an HTTP bay becomes: its CGI/Rack
 * params (REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, SERVER_*,
 * REMOTE_*, CONTENT_*, HTTPS, HTTP_* for the client's headers), decided and
 * encoded without sockets; hbay.c fills the request from the connection,
 * tests/unit/test_hbay_params.c tests the rules directly.
 *
 * Headers: each name once, repeated values joined with ", " ("; " for
 * Cookie) in order; Content-Type and Content-Length go to CONTENT_*;
 * hop-by-hop ones (Connection and what it names, Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, Proxy-Connection, Proxy-Authorization,
 * HTTP2-Settings; an upgrade keeps Connection and Upgrade), Expect,
 * X-Request-Start and names holding '_' are left out; X-Forwarded-For gets
 * the client appended, X-Forwarded-Proto/-Host and X-Request-Id are
 * Mothership's. Values pass byte for byte. */
#ifndef MS_HTTP_HBAY_PARAMS_H
#define MS_HTTP_HBAY_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dock/protocol.h"
#include "http/resp_head.h"

typedef struct ms_hbay_req {
    const char *method;
    const char *script;            /* SCRIPT_NAME: the prefix stripped, or "" */
    size_t script_len;
    const char *path;              /* PATH_INFO */
    size_t path_len;
    const char *query;             /* QUERY_STRING, without the '?' */
    size_t query_len;
    const ms_field *headers;       /* the client's, in order */
    size_t nheaders;
    /* payload edits: keep() false leaves a client header out (NULL: all
     * kept); added: header lines to add */
    bool (*keep)(const void *arg, const char *name, size_t len);
    const void *keep_arg;
    const ms_field *added;
    size_t nadded;
    const char *bind_host;         /* SERVER_NAME / SERVER_PORT without a Host header */
    const char *bind_port;
    const char *protocol;          /* "HTTP/1.1", "HTTP/1.0", "HTTP/2" */
    const char *software;          /* "mothership/<version>" */
    const char *peer;              /* the client's address */
    unsigned peer_port;
    bool secure;                   /* came over TLS */
    bool upgrade;                  /* asks for an upgrade (a tunnel) */
    bool has_length;               /* CONTENT_LENGTH: content_length */
    uint64_t content_length;
    uint64_t body_len;             /* the bytes that follow in HAULs (the HAIL's content_length) */
    const char *reqid;             /* HTTP_X_REQUEST_ID */
    size_t reqid_len;
} ms_hbay_req;

/* Appends the HAIL frame for r (request id 0: the caller patches it per
 * link, bytes 5..8) to out. 0, or an ms_dock_err (MS_DOCK_E_NOMEM,
 * MS_DOCK_E_OVERSIZE: over the maximum frame), nothing appended. */
int ms_hbay_encode_hail(const ms_hbay_req *r, ms_dock_buf *out);

#endif
