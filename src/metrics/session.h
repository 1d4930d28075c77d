/* session.h: socket-free request handling of the metrics endpoint.
 *
 * One ms_metrics_session per connection turns the bytes a client sends into
 * complete HTTP responses: it parses requests with http-parser (strict),
 * enforces the limits below, routes GET/HEAD /metrics, /health and /ready to
 * the handlers, and writes status line, headers and body into an
 * ms_metrics_response. The server (server.c) and the fuzz target
 * (tests/fuzz/fuzz_metrics_http.c) both drive exactly this code.
 *
 * Requests are handled one at a time: ms_metrics_session_feed() stops at the
 * end of the first complete request and says how many bytes it used; the
 * caller sends the response and feeds the rest of the bytes afterwards.
 */
#ifndef MS_METRICS_SESSION_H
#define MS_METRICS_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>

#include "metrics/prom.h"

#define MS_METRICS_MAX_HEAD 8192u   /* request line + headers; beyond: 431 and close */
#define MS_METRICS_MAX_URL 2048u    /* request target; beyond: 414 and close */
#define MS_METRICS_MAX_BODY 65536u  /* request body (read and ignored); beyond: 413 and close */

/* What the endpoint serves. Callbacks run on the server's loop thread;
 * any may be NULL (empty /metrics body; /health or /ready always 200 "ok"). */
typedef struct ms_metrics_handlers {
    void *ctx;
    /* Appends the Prometheus text for /metrics. If out ends up failed
     * (size cap), the client gets 500. */
    void (*render_metrics)(void *ctx, ms_buf *out);
    /* Writes a short body (text, or JSON when it starts with '{') and
     * returns the status: 200 when up, 503 while starting or stopping.
     * Values outside 200..599 are answered as 500. */
    int (*health)(void *ctx, ms_buf *body);
    /* The same for /ready (readiness: 503 until ready and while draining). */
    int (*ready)(void *ctx, ms_buf *body);
} ms_metrics_handlers;

typedef enum ms_metrics_action {
    MS_METRICS_NEED_MORE,      /* all bytes used, no complete request yet */
    MS_METRICS_RESPOND,        /* send resp, then feed the remaining bytes */
    MS_METRICS_RESPOND_CLOSE,  /* send resp, then close; the session is finished */
} ms_metrics_action;

typedef struct ms_metrics_response {
    ms_buf head;     /* status line and headers, ending in an empty line */
    ms_buf body;     /* empty for HEAD requests */
    int status;
} ms_metrics_response;

typedef struct ms_metrics_session {
    http_parser parser;
    size_t head_bytes;
    size_t body_bytes;
    size_t url_len;
    int error;            /* status chosen by a callback that stopped the parser */
    bool headers_done;
    bool message_done;
    bool keep_alive;
    bool finished;        /* RESPOND_CLOSE was returned */
    char url[MS_METRICS_MAX_URL];
} ms_metrics_session;

void ms_metrics_session_init(ms_metrics_session *s);

void ms_metrics_response_init(ms_metrics_response *r);
void ms_metrics_response_free(ms_metrics_response *r);

/* Parses up to len bytes. *consumed receives the number of bytes used (all of
 * them for NEED_MORE). For RESPOND and RESPOND_CLOSE, resp is reset and then
 * holds the response. After RESPOND_CLOSE every call returns RESPOND_CLOSE
 * with an empty response and *consumed = 0; the caller must close. */
ms_metrics_action ms_metrics_session_feed(ms_metrics_session *s, const ms_metrics_handlers *h,
                                          const char *data, size_t len, size_t *consumed,
                                          ms_metrics_response *resp);

/* The reason phrase for the statuses this endpoint uses ("Unknown" otherwise). */
const char *ms_metrics_reason(int status);

#endif
