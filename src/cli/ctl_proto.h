/* ctl_proto.h: socket-free request handling of the control socket
 * (docs/control-api.md).
 *
 * One ms_ctl_session per connection turns the bytes a client sends into
 * checked requests: HTTP/1.1 parsed with http-parser (strict), bounded (head
 * MS_CTL_MAX_HEAD, body MS_CTL_MAX_BODY), routed by method and path under
 * /v1, the JSON body and the query string read and checked. What it cannot
 * accept becomes an error response right here; what it can is handed to the
 * caller as an ms_ctl_request, which the server (ctl.c) acts on and answers
 * with ms_ctl_respond(). The fuzz target (tests/fuzz/fuzz_ctl.c) and the unit
 * tests drive exactly this code.
 *
 * Requests are handled one at a time: ms_ctl_session_feed() stops at the end
 * of the first complete request and says how many bytes it used. */
#ifndef MS_CLI_CTL_PROTO_H
#define MS_CLI_CTL_PROTO_H

#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "manifest/manifest.h"
#include "metrics/prom.h"

#define MS_CTL_MAX_HEAD 16384u        /* request line + headers; beyond: 431 and close */
#define MS_CTL_MAX_URL 2048u          /* beyond: 414 and close */
#define MS_CTL_MAX_BODY (1u << 20)    /* beyond: 413 and close */
#define MS_CTL_MAX_NAME 256u          /* an entry name or @tag */
#define MS_CTL_MAX_LOG_LINES 100000ul /* logs?n= */

typedef enum ms_ctl_op {
    MS_CTL_STATUS,   /* GET /v1/status */
    MS_CTL_RESTART,  /* POST /v1/entries/restart {"names": [...]} */
    MS_CTL_STOP,     /* POST /v1/entries/stop */
    MS_CTL_START,    /* POST /v1/entries/start */
    MS_CTL_SIGNAL,   /* POST /v1/entries/signal {"name": "web", "signal": "HUP" | 1} */
    MS_CTL_LOGS,     /* GET /v1/logs?name=web&n=100&follow=1 */
    MS_CTL_RELOAD,   /* POST /v1/reload {"check": bool} */
    MS_CTL_DRAIN,    /* POST /v1/drain */
} ms_ctl_op;

/* The verb of an op, for logs and JSON: "status", "restart", ... */
const char *ms_ctl_op_name(ms_ctl_op op);

typedef struct ms_ctl_request {
    ms_ctl_op op;
    json_t *names;                /* RESTART/STOP/START: a non-empty array of strings (owned) */
    char name[MS_CTL_MAX_NAME];   /* SIGNAL: the entry; LOGS: the entry, "" for all */
    int signo;                    /* SIGNAL */
    unsigned long n;              /* LOGS: lines from the ring (default 100) */
    bool follow;                  /* LOGS: then live lines until the client goes */
    bool check;                   /* RELOAD: plan only */
} ms_ctl_request;

void ms_ctl_request_clear(ms_ctl_request *q);

/* A response: head and body in one buffer, ready to write. */
typedef struct ms_ctl_response {
    ms_buf out;
    int status;
    bool close;                   /* close the connection once it is written */
} ms_ctl_response;

void ms_ctl_response_init(ms_ctl_response *r);
void ms_ctl_response_free(ms_ctl_response *r);
/* Replace r with status and body (a JSON object, dumped compact plus a
 * newline; the reference is stolen; NULL: {}). */
void ms_ctl_respond(ms_ctl_response *r, int status, json_t *body, bool close);
/* Replace r with status and {"error": text}. */
void ms_ctl_respond_error(ms_ctl_response *r, int status, bool close, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The head of a chunked NDJSON stream (logs); chunks: ms_ctl_chunk. */
void ms_ctl_respond_stream(ms_ctl_response *r);
/* Append one chunk (len 0: the last one) to out. */
void ms_ctl_chunk(ms_buf *out, const char *data, size_t len);
const char *ms_ctl_reason(int status);

typedef enum ms_ctl_action {
    MS_CTL_NEED_MORE,   /* all bytes used, no complete request yet */
    MS_CTL_REQUEST,     /* req holds a request: act on it, answer, feed the rest */
    MS_CTL_ANSWER,      /* resp holds the answer (an error); close when resp.close */
} ms_ctl_action;

typedef struct ms_ctl_session {
    http_parser parser;
    size_t head_bytes;
    size_t url_len;
    int error;                    /* status chosen by a callback that stopped the parser */
    bool headers_done;
    bool message_done;
    bool keep_alive;
    bool finished;                /* an answer that closes was given */
    ms_buf body;
    char url[MS_CTL_MAX_URL];
} ms_ctl_session;

void ms_ctl_session_init(ms_ctl_session *s);
void ms_ctl_session_free(ms_ctl_session *s);
/* Parse up to len bytes; *consumed gets what was used. REQUEST: *req is
 * filled (clear it after use) and keep_alive says whether the connection may
 * go on. ANSWER: resp holds the answer. After an answer that closes, every
 * call returns ANSWER with resp.close set and nothing consumed. */
ms_ctl_action ms_ctl_session_feed(ms_ctl_session *s, const char *data, size_t len, size_t *consumed,
                                  ms_ctl_request *req, bool *keep_alive, ms_ctl_response *resp);

/* A signal by name ("HUP", "SIGHUP", "hup") or number (1..64); 0 if none. */
int ms_ctl_signal_number(const char *name);

/* Which entries of m names picks: each item is an entry name or @tag (every
 * entry carrying the tag). pick has m->nships slots, set true for each one.
 * On an unknown name or a tag nobody carries returns false with *error a
 * JSON object {"error": "...", "known": [names...], "tags": [...]}. */
bool ms_ctl_resolve(const ms_manifest *m, const json_t *names, bool *pick, json_t **error);

#endif
