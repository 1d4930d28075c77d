/* session.c: request parsing, routing and response building for the
 * metrics endpoint, without sockets. See session.h. */
#include "metrics/session.h"

#include <string.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"
#define JSON_CONTENT_TYPE "application/json"
#define SMALL_BUF_MAX ((size_t)64 * 1024)

static ms_metrics_session *session_of(http_parser *p)
{
    return p->data;
}

static int on_message_begin(http_parser *p)
{
    ms_metrics_session *s = session_of(p);
    s->head_bytes = 0;
    s->body_bytes = 0;
    s->url_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    ms_metrics_session *s = session_of(p);
    if (len > MS_METRICS_MAX_URL - s->url_len) {
        s->error = 414;
        return 1;
    }
    memcpy(s->url + s->url_len, at, len);
    s->url_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    session_of(p)->headers_done = true;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    (void)at;
    ms_metrics_session *s = session_of(p);
    if (len > MS_METRICS_MAX_BODY - s->body_bytes) {
        s->error = 413;
        return 1;
    }
    s->body_bytes += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    ms_metrics_session *s = session_of(p);
    s->message_done = true;
    s->keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    /* Stop right after this request; the caller answers it first. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void session_reset(ms_metrics_session *s)
{
    http_parser_init(&s->parser, HTTP_REQUEST);
    s->parser.data = s;
    s->head_bytes = 0;
    s->body_bytes = 0;
    s->url_len = 0;
    s->error = 0;
    s->headers_done = false;
    s->message_done = false;
    s->keep_alive = false;
}

void ms_metrics_session_init(ms_metrics_session *s)
{
    session_reset(s);
    s->finished = false;
}

void ms_metrics_response_init(ms_metrics_response *r)
{
    ms_buf_init(&r->head, SMALL_BUF_MAX);
    ms_buf_init(&r->body, 0);
    r->status = 0;
}

void ms_metrics_response_free(ms_metrics_response *r)
{
    ms_buf_free(&r->head);
    ms_buf_free(&r->body);
    r->status = 0;
}

const char *ms_metrics_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* Writes the head for a body already in r->body; drops the body for HEAD. */
static void finish_response(ms_metrics_response *r, int status, const char *ctype,
                            const char *extra_headers, bool http10_keep_alive, bool close,
                            bool head_only)
{
    r->status = status;
    ms_buf_printf(&r->head,
                  "HTTP/1.1 %d %s\r\n"
                  "Content-Type: %s\r\n"
                  "Content-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n"
                  "%s%s"
                  "\r\n",
                  status, ms_metrics_reason(status), ctype, r->body.len,
                  extra_headers ? extra_headers : "",
                  close ? "Connection: close\r\n"
                        : http10_keep_alive ? "Connection: keep-alive\r\n" : "");
    if (head_only)
        ms_buf_reset(&r->body);
}

static void simple_response(ms_metrics_response *r, int status, const char *extra_headers,
                            bool http10_keep_alive, bool close, bool head_only)
{
    ms_buf_reset(&r->body);
    ms_buf_printf(&r->body, "%s\n", ms_metrics_reason(status));
    finish_response(r, status, TEXT_CONTENT_TYPE, extra_headers, http10_keep_alive, close,
                    head_only);
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

/* Answers the complete request held by s. Returns false if the connection
 * must close afterwards. */
static bool answer(ms_metrics_session *s, const ms_metrics_handlers *h, ms_metrics_response *r)
{
    http_parser *p = &s->parser;
    bool close = !s->keep_alive;
    bool http10_ka = !close && p->http_major == 1 && p->http_minor == 0;
    unsigned method = p->method;
    bool head_only = method == HTTP_HEAD;

    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(s->url, s->url_len, method == HTTP_CONNECT, &u) != 0) {
        simple_response(r, 400, NULL, false, true, head_only);
        return false;
    }
    const char *path = "";
    size_t plen = 0;
    if (u.field_set & (1u << UF_PATH)) {
        path = s->url + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    bool is_metrics = path_is(path, plen, "/metrics");
    bool is_health = path_is(path, plen, "/health");
    bool is_ready = path_is(path, plen, "/ready");
    if (!is_metrics && !is_health && !is_ready) {
        simple_response(r, 404, NULL, http10_ka, close, head_only);
        return !close;
    }
    if (method != HTTP_GET && method != HTTP_HEAD) {
        simple_response(r, 405, "Allow: GET, HEAD\r\n", http10_ka, close, head_only);
        return !close;
    }

    ms_buf_reset(&r->body);
    if (is_metrics) {
        if (h && h->render_metrics)
            h->render_metrics(h->ctx, &r->body);
        if (ms_buf_failed(&r->body)) {
            simple_response(r, 500, NULL, http10_ka, close, head_only);
            return !close;
        }
        finish_response(r, 200, METRICS_CONTENT_TYPE, NULL, http10_ka, close, head_only);
        return !close;
    }

    int status = 200;
    int (*state)(void *, ms_buf *) = !h ? NULL : is_ready ? h->ready : h->health;
    if (state)
        status = state(h->ctx, &r->body);
    else
        ms_buf_puts(&r->body, "ok\n");
    if (status < 200 || status > 599 || ms_buf_failed(&r->body)) {
        simple_response(r, 500, NULL, http10_ka, close, head_only);
        return !close;
    }
    const char *ctype =
        r->body.len > 0 && r->body.data[0] == '{' ? JSON_CONTENT_TYPE : TEXT_CONTENT_TYPE;
    finish_response(r, status, ctype, NULL, http10_ka, close, head_only);
    return !close;
}

ms_metrics_action ms_metrics_session_feed(ms_metrics_session *s, const ms_metrics_handlers *h,
                                          const char *data, size_t len, size_t *consumed,
                                          ms_metrics_response *resp)
{
    ms_buf_reset(&resp->head);
    ms_buf_reset(&resp->body);
    resp->status = 0;
    *consumed = 0;
    if (s->finished)
        return MS_METRICS_RESPOND_CLOSE;

    size_t off = 0;
    int error = 0;
    while (off < len) {
        size_t chunk = len - off;
        bool in_head = !s->headers_done;
        if (in_head && chunk > MS_METRICS_MAX_HEAD - s->head_bytes)
            chunk = MS_METRICS_MAX_HEAD - s->head_bytes;
        size_t n = http_parser_execute(&s->parser, &parser_settings, data + off, chunk);
        enum http_errno e = HTTP_PARSER_ERRNO(&s->parser);
        if (n > chunk)
            n = chunk;
        off += n;
        if (in_head && !s->headers_done)
            s->head_bytes += n;

        if (s->message_done) {
            /* Paused in on_message_complete. */
            *consumed = off;
            bool keep = answer(s, h, resp);
            if (ms_buf_failed(&resp->head)) {
                /* Cannot happen with the fixed header set; fail safe. */
                ms_buf_reset(&resp->head);
                ms_buf_reset(&resp->body);
                keep = false;
            }
            if (!keep) {
                s->finished = true;
                return MS_METRICS_RESPOND_CLOSE;
            }
            session_reset(s);
            return MS_METRICS_RESPOND;
        }
        if (e != HPE_OK) {
            error = s->error ? s->error : 400;
            break;
        }
        if (!s->headers_done && s->head_bytes >= MS_METRICS_MAX_HEAD) {
            error = 431;
            break;
        }
        if (n < chunk) {
            /* The parser stopped without saying why (upgrade or dead state). */
            error = 400;
            break;
        }
    }
    if (!error) {
        *consumed = off;
        return MS_METRICS_NEED_MORE;
    }
    *consumed = off;
    s->finished = true;
    simple_response(resp, error, NULL, false, true, false);
    return MS_METRICS_RESPOND_CLOSE;
}
