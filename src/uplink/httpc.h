/* httpc.h: a small HTTP/1.1 client on the control loop (libuv) for what
 * Mothership itself asks of HTTP servers: the ACME directory and CA
 * (acme/), preflight's directory check. One request per connection
 * (Connection: close), over TCP or TLS (uplink/tls.c: OpenSSL on memory
 * BIOs, the peer verified against the system store, or against ca_root
 * alone when given, and the URL's host name; SNI for names), names
 * resolved with uv_getaddrinfo (every address tried in order), the
 * response read with http-parser (Content-Length, chunked or until close;
 * over TLS, until a close_notify: a bare TCP close may be a truncation),
 * bounded: a head over 16 KiB or a body over MS_HTTPC_MAX_BODY fails the
 * request; the whole exchange has one deadline. Socket-free part:
 * ms_httpc_parse_* below (fuzzed). */
#ifndef MS_UPLINK_HTTPC_H
#define MS_UPLINK_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define MS_HTTPC_MAX_BODY (1u << 20)
#define MS_HTTPC_MAX_LINKS 8

typedef struct ms_httpc ms_httpc;
typedef struct ms_httpc_req ms_httpc_req;

typedef struct ms_httpc_response {
    int status;
    char *location;        /* NULL when absent; these four are the header's value as sent */
    char *replay_nonce;
    char *retry_after;
    char *content_type;
    char *links[MS_HTTPC_MAX_LINKS]; /* every Link header value (split at commas), in order */
    size_t nlinks;
    char *body;            /* NUL-terminated (the NUL not counted); "" when empty */
    size_t body_len;
} ms_httpc_response;

/* error NULL: r is the response (any status), valid during the call only.
 * error set: r is NULL and error says what failed ("cannot resolve
 * acme.example: Name or service not known", "TLS: certificate verify
 * failed: ...", "timed out after 30 s", "the response body is over 1 MiB").
 * Called once, never from inside ms_httpc_request. */
typedef void ms_httpc_cb(void *arg, const ms_httpc_response *r, const char *error);

/* A client for loop; ca_root: a PEM file of CA certificates to trust
 * instead of the system store (NULL: the system store). NULL with the
 * reason in why. */
ms_httpc *ms_httpc_new(uv_loop_t *loop, const char *ca_root, char *why, size_t why_len);
/* Cancels what is in flight (their callbacks are not called); the handles
 * close on the loop's next turns, and a name lookup already running in
 * libuv's thread pool keeps the loop busy until it returns. */
void ms_httpc_free(ms_httpc *c);

/* Start a request: method "GET", "HEAD" or "POST"; url http:// or https://
 * (a bad URL fails through the callback like any other error); body with
 * its content_type (NULL and 0: none); the request carries Host,
 * User-Agent: mothership/<version>, an Accept of any type, Content-Length when a
 * body is given. NULL only when out of memory. */
ms_httpc_req *ms_httpc_request(ms_httpc *c, const char *method, const char *url, const char *content_type,
                               const void *body, size_t body_len, uint64_t timeout_ms, ms_httpc_cb *cb, void *arg);
/* The callback will not be called. The handle is only valid until its
 * callback has started or it was cancelled (or its client freed): forget
 * it there, a later cancel is a use after free. */
void ms_httpc_cancel(ms_httpc_req *req);

/* Socket-free, for the fuzz target and the tests: feed a whole response's
 * bytes (as read) to a parser; ms_httpc_parse_done at the peer's close.
 * Returns 1 when the response is complete, 0 when more is needed, -1 on
 * an error (why). */
typedef struct ms_httpc_parser ms_httpc_parser;
ms_httpc_parser *ms_httpc_parser_new(bool head_request);
int ms_httpc_parser_feed(ms_httpc_parser *p, const char *data, size_t len, char *why, size_t why_len);
int ms_httpc_parser_done(ms_httpc_parser *p, char *why, size_t why_len);
const ms_httpc_response *ms_httpc_parser_response(const ms_httpc_parser *p);
void ms_httpc_parser_free(ms_httpc_parser *p);

#endif
