/* ctl_proto.c: request parsing, routing, checking and response building of
 * the control socket, without sockets (see ctl_proto.h). */
#include "cli/ctl_proto.h"

#include <ctype.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_LOG_LINES 100ul

const char *ms_ctl_op_name(ms_ctl_op op)
{
    switch (op) {
    case MS_CTL_STATUS: return "status";
    case MS_CTL_RESTART: return "restart";
    case MS_CTL_STOP: return "stop";
    case MS_CTL_START: return "start";
    case MS_CTL_SIGNAL: return "signal";
    case MS_CTL_LOGS: return "logs";
    case MS_CTL_RELOAD: return "reload";
    case MS_CTL_DRAIN: return "drain";
    }
    return "?";
}

void ms_ctl_request_clear(ms_ctl_request *q)
{
    json_decref(q->names);
    memset(q, 0, sizeof *q);
}

/* ---------------------------------------------------------------- responses */
const char *ms_ctl_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void ms_ctl_response_init(ms_ctl_response *r)
{
    ms_buf_init(&r->out, MS_CTL_MAX_BODY * 8);
    r->status = 0;
    r->close = false;
}

void ms_ctl_response_free(ms_ctl_response *r)
{
    ms_buf_free(&r->out);
}

void ms_ctl_respond(ms_ctl_response *r, int status, json_t *body, bool close)
{
    ms_buf_reset(&r->out);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(body);
    if (body && !text) {
        status = 500;
        text = strdup("{\"error\":\"out of memory\"}");
    }
    const char *t = text ? text : "{}";
    size_t len = strlen(t) + 1;
    r->status = status;
    r->close = close;
    ms_buf_printf(&r->out,
                  "HTTP/1.1 %d %s\r\n"
                  "Content-Type: application/json\r\n"
                  "Content-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n"
                  "%s"
                  "\r\n%s\n",
                  status, ms_ctl_reason(status), len, close ? "Connection: close\r\n" : "", t);
    free(text);
    if (ms_buf_failed(&r->out)) { /* only a body over the cap: say so instead */
        ms_buf_reset(&r->out);
        r->status = 500;
        ms_buf_puts(&r->out, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                             "Content-Length: 31\r\nConnection: close\r\n\r\n{\"error\":\"response too large\"}\n");
        r->close = true;
    }
}

void ms_ctl_respond_error(ms_ctl_response *r, int status, bool close, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:s}", "error", text);
    if (!body) { /* the client's bytes in it are not UTF-8: keep what is ASCII */
        for (char *c = text; *c; c++)
            if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20)
                *c = '?';
        body = json_pack("{s:s}", "error", text);
    }
    ms_ctl_respond(r, status, body, close);
}

void ms_ctl_respond_stream(ms_ctl_response *r)
{
    ms_buf_reset(&r->out);
    r->status = 200;
    r->close = true;
    ms_buf_puts(&r->out, "HTTP/1.1 200 OK\r\n"
                         "Content-Type: application/x-ndjson\r\n"
                         "Transfer-Encoding: chunked\r\n"
                         "Cache-Control: no-store\r\n"
                         "Connection: close\r\n"
                         "\r\n");
}

void ms_ctl_chunk(ms_buf *out, const char *data, size_t len)
{
    ms_buf_printf(out, "%zx\r\n", len);
    ms_buf_append(out, data, len);
    ms_buf_puts(out, "\r\n");
}

/* ---------------------------------------------------------------- parsing */
static ms_ctl_session *session_of(http_parser *p)
{
    return p->data;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    ms_ctl_session *s = session_of(p);
    if (len >= MS_CTL_MAX_URL - s->url_len) {
        s->error = 414;
        return 1;
    }
    memcpy(s->url + s->url_len, at, len);
    s->url_len += len;
    s->url[s->url_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    ms_ctl_session *s = session_of(p);
    s->headers_done = true;
    if (p->upgrade) {
        s->error = 400;
        return -1; /* stops the parser (1 and 2 would mean "skip the body") */
    }
    if (p->content_length != ULLONG_MAX && p->content_length > MS_CTL_MAX_BODY) {
        s->error = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    ms_ctl_session *s = session_of(p);
    if (len > MS_CTL_MAX_BODY - s->body.len || !ms_buf_append(&s->body, at, len)) {
        s->error = 413;
        return 1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    ms_ctl_session *s = session_of(p);
    s->message_done = true;
    s->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void session_reset(ms_ctl_session *s)
{
    http_parser_init(&s->parser, HTTP_REQUEST);
    s->parser.data = s;
    s->head_bytes = 0;
    s->url_len = 0;
    s->url[0] = '\0';
    s->error = 0;
    s->headers_done = false;
    s->message_done = false;
    s->keep_alive = false;
    ms_buf_reset(&s->body);
}

void ms_ctl_session_init(ms_ctl_session *s)
{
    memset(s, 0, sizeof *s);
    ms_buf_init(&s->body, MS_CTL_MAX_BODY);
    session_reset(s);
}

void ms_ctl_session_free(ms_ctl_session *s)
{
    ms_buf_free(&s->body);
}

/* ---------------------------------------------------------------- routing */
int ms_ctl_signal_number(const char *name)
{
    if (!name || !*name)
        return 0;
    if (isdigit((unsigned char)name[0])) {
        char *end;
        long v = strtol(name, &end, 10);
        return *end == '\0' && v >= 1 && v <= 64 ? (int)v : 0;
    }
    if (strncasecmp(name, "SIG", 3) == 0)
        name += 3;
    static const struct { const char *name; int signo; } sigs[] = {
        { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "KILL", SIGKILL }, { "USR1", SIGUSR1 },
        { "USR2", SIGUSR2 }, { "TERM", SIGTERM }, { "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP },
        { "WINCH", SIGWINCH }, { "ALRM", SIGALRM }, { "PIPE", SIGPIPE }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },
    };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcasecmp(name, sigs[i].name) == 0)
            return sigs[i].signo;
    return 0;
}

/* A query value, %-decoded, into out; false when absent or too long. */
static bool query_value(const char *query, size_t qlen, const char *key, char *out, size_t cap, bool *bad)
{
    size_t klen = strlen(key);
    const char *p = query, *end = query + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) >= klen && memcmp(p, key, klen) == 0 && (p + klen == e || p[klen] == '=')) {
            const char *v = p + klen + (p + klen < e);
            size_t o = 0;
            for (; v < e; v++) {
                char c = *v;
                if (c == '+')
                    c = ' ';
                else if (c == '%') {
                    if (e - v < 3 || !isxdigit((unsigned char)v[1]) || !isxdigit((unsigned char)v[2])) {
                        *bad = true;
                        return false;
                    }
                    char hex[3] = { v[1], v[2], 0 };
                    c = (char)strtol(hex, NULL, 16);
                    v += 2;
                }
                if (c == '\0' || o + 1 >= cap) {
                    *bad = true;
                    return false;
                }
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        p = e + 1;
    }
    return false;
}

static bool flag_value(const char *v)
{
    return strcmp(v, "") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0;
}

/* The JSON object of the body ({} when empty), or NULL with resp filled. */
static json_t *body_object(ms_ctl_session *s, ms_ctl_response *resp, bool close)
{
    if (s->body.len == 0)
        return json_object();
    json_error_t je;
    json_t *v = json_loadb(s->body.data, s->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        ms_ctl_respond_error(resp, 400, close, "the body is not JSON: %s (line %d, column %d)", je.text, je.line,
                             je.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        ms_ctl_respond_error(resp, 400, close, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

static bool check_name(const char *n)
{
    size_t len = strlen(n);
    return len > 0 && len < MS_CTL_MAX_NAME;
}

static bool route_entries(ms_ctl_request *q, json_t *body, ms_ctl_response *resp, bool close)
{
    json_t *names = json_object_get(body, "names");
    if (!names || (json_is_array(names) && json_array_size(names) == 0)) {
        ms_ctl_respond_error(resp, 400, close, "no entry named: give \"names\": [\"web\", \"@tag\", ...]");
        return false;
    }
    if (!json_is_array(names)) {
        ms_ctl_respond_error(resp, 400, close, "\"names\" must be an array of entry names and @tags");
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) {
        if (!json_is_string(v) || !check_name(json_string_value(v)) ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            ms_ctl_respond_error(resp, 400, close, "\"names\"[%zu] must be a non-empty entry name or @tag", i);
            return false;
        }
    }
    q->names = json_incref(names);
    return true;
}

static bool route_signal(ms_ctl_request *q, json_t *body, ms_ctl_response *resp, bool close)
{
    json_t *name = json_object_get(body, "name");
    json_t *sig = json_object_get(body, "signal");
    if (!json_is_string(name) || !check_name(json_string_value(name)) ||
        strlen(json_string_value(name)) != json_string_length(name)) {
        ms_ctl_respond_error(resp, 400, close, "give the entry as \"name\": \"web\"");
        return false;
    }
    snprintf(q->name, sizeof q->name, "%s", json_string_value(name));
    if (json_is_integer(sig) && json_integer_value(sig) >= 1 && json_integer_value(sig) <= 64)
        q->signo = (int)json_integer_value(sig);
    else if (json_is_string(sig) && strlen(json_string_value(sig)) == json_string_length(sig))
        q->signo = ms_ctl_signal_number(json_string_value(sig));
    if (q->signo == 0) {
        ms_ctl_respond_error(resp, 400, close, "\"signal\" must be a signal name (\"HUP\", \"USR1\", ...) or "
                                               "number (1-64)");
        return false;
    }
    return true;
}

static bool route_logs(ms_ctl_request *q, const char *query, size_t qlen, ms_ctl_response *resp, bool close)
{
    char v[MS_CTL_MAX_NAME];
    bool bad = false;
    q->n = DEFAULT_LOG_LINES;
    if (query_value(query, qlen, "name", v, sizeof v, &bad))
        snprintf(q->name, sizeof q->name, "%s", v);
    if (!bad && query_value(query, qlen, "n", v, sizeof v, &bad)) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end || n > MS_CTL_MAX_LOG_LINES) {
            ms_ctl_respond_error(resp, 400, close, "n must be a number of lines from 0 to %lu",
                                 MS_CTL_MAX_LOG_LINES);
            return false;
        }
        q->n = n;
    }
    if (!bad && query_value(query, qlen, "follow", v, sizeof v, &bad))
        q->follow = flag_value(v);
    if (bad) {
        ms_ctl_respond_error(resp, 400, close, "malformed query string");
        return false;
    }
    return true;
}

/* Turns the complete request held by s into *q (true) or an answer. */
static bool route(ms_ctl_session *s, ms_ctl_request *q, ms_ctl_response *resp, bool close)
{
    unsigned method = s->parser.method;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(s->url, s->url_len, 0, &u) != 0 || !(u.field_set & (1u << UF_PATH))) {
        ms_ctl_respond_error(resp, 400, true, "malformed request target");
        return false;
    }
    const char *path = s->url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    const char *query = "";
    size_t qlen = 0;
    if (u.field_set & (1u << UF_QUERY)) {
        query = s->url + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    static const struct { const char *path; unsigned method; ms_ctl_op op; } routes[] = {
        { "/v1/status", HTTP_GET, MS_CTL_STATUS },
        { "/v1/entries/restart", HTTP_POST, MS_CTL_RESTART },
        { "/v1/entries/stop", HTTP_POST, MS_CTL_STOP },
        { "/v1/entries/start", HTTP_POST, MS_CTL_START },
        { "/v1/entries/signal", HTTP_POST, MS_CTL_SIGNAL },
        { "/v1/logs", HTTP_GET, MS_CTL_LOGS },
        { "/v1/reload", HTTP_POST, MS_CTL_RELOAD },
        { "/v1/drain", HTTP_POST, MS_CTL_DRAIN },
    };
    size_t i = 0, n = sizeof routes / sizeof routes[0];
    while (i < n && !(strlen(routes[i].path) == plen && memcmp(routes[i].path, path, plen) == 0))
        i++;
    if (i == n) {
        ms_ctl_respond_error(resp, 404, close, "no such endpoint: %.*s (see docs/control-api.md)", (int)plen, path);
        return false;
    }
    if (method != routes[i].method) {
        ms_ctl_respond_error(resp, 405, close, "%.*s takes %s", (int)plen, path, http_method_str(routes[i].method));
        return false;
    }
    memset(q, 0, sizeof *q);
    q->op = routes[i].op;
    if (q->op == MS_CTL_STATUS || q->op == MS_CTL_DRAIN)
        return true;
    if (q->op == MS_CTL_LOGS)
        return route_logs(q, query, qlen, resp, close);
    json_t *body = body_object(s, resp, close);
    if (!body)
        return false;
    bool ok = true;
    if (q->op == MS_CTL_SIGNAL)
        ok = route_signal(q, body, resp, close);
    else if (q->op == MS_CTL_RELOAD) {
        json_t *check = json_object_get(body, "check");
        if (check && !json_is_boolean(check)) {
            ms_ctl_respond_error(resp, 400, close, "\"check\" must be true or false");
            ok = false;
        }
        q->check = json_is_true(check);
    } else
        ok = route_entries(q, body, resp, close);
    json_decref(body);
    if (!ok)
        ms_ctl_request_clear(q);
    return ok;
}

ms_ctl_action ms_ctl_session_feed(ms_ctl_session *s, const char *data, size_t len, size_t *consumed,
                                  ms_ctl_request *req, bool *keep_alive, ms_ctl_response *resp)
{
    *consumed = 0;
    *keep_alive = false;
    if (s->finished) {
        ms_buf_reset(&resp->out);
        resp->status = 0;
        resp->close = true;
        return MS_CTL_ANSWER;
    }
    size_t off = 0;
    int error = 0;
    while (off < len) {
        size_t chunk = len - off;
        bool in_head = !s->headers_done;
        if (in_head && chunk > MS_CTL_MAX_HEAD - s->head_bytes)
            chunk = MS_CTL_MAX_HEAD - s->head_bytes;
        size_t n = http_parser_execute(&s->parser, &parser_settings, data + off, chunk);
        enum http_errno e = HTTP_PARSER_ERRNO(&s->parser);
        if (n > chunk)
            n = chunk;
        off += n;
        if (in_head && !s->headers_done)
            s->head_bytes += n;
        if (s->message_done) {
            *consumed = off;
            bool close = !s->keep_alive;
            bool ok = route(s, req, resp, close);
            if (ok) {
                *keep_alive = !close;
                session_reset(s);
                return MS_CTL_REQUEST;
            }
            if (resp->close)
                s->finished = true;
            else
                session_reset(s);
            return MS_CTL_ANSWER;
        }
        if (e != HPE_OK) {
            error = s->error ? s->error : 400;
            break;
        }
        if (!s->headers_done && s->head_bytes >= MS_CTL_MAX_HEAD) {
            error = 431;
            break;
        }
        if (n < chunk) {
            error = 400;
            break;
        }
    }
    *consumed = off;
    if (!error)
        return MS_CTL_NEED_MORE;
    s->finished = true;
    ms_ctl_respond_error(resp, error, true, "%s", error == 413 ? "request body too large"
                                                  : error == 414 ? "request target too long"
                                                  : error == 431 ? "request head too large"
                                                                 : "malformed HTTP request");
    return MS_CTL_ANSWER;
}

/* ---------------------------------------------------------------- names */
static bool has_tag(const ms_ship *s, const char *tag)
{
    for (size_t k = 0; k < s->tags.len; k++)
        if (strcmp(s->tags.items[k], tag) == 0)
            return true;
    return false;
}

static json_t *known_lists(const ms_manifest *m, const char *text)
{
    json_t *names = json_array(), *tags = json_array();
    for (size_t i = 0; i < m->nships; i++) {
        json_array_append_new(names, json_string(m->ships[i].name));
        for (size_t k = 0; k < m->ships[i].tags.len; k++) {
            const char *t = m->ships[i].tags.items[k];
            bool seen = false;
            size_t j;
            json_t *v;
            json_array_foreach(tags, j, v) {
                seen |= strcmp(json_string_value(v), t) == 0;
            }
            if (!seen)
                json_array_append_new(tags, json_string(t));
        }
    }
    return json_pack("{s:s, s:o, s:o}", "error", text, "known", names, "tags", tags);
}

bool ms_ctl_resolve(const ms_manifest *m, const json_t *names, bool *pick, json_t **error)
{
    size_t i;
    const json_t *v;
    *error = NULL;
    json_array_foreach(names, i, v) {
        const char *n = json_string_value(v);
        bool any = false;
        if (!n)
            continue;
        for (size_t k = 0; k < m->nships; k++) {
            /* a replicated ship's name as written names every instance */
            bool hit = n[0] == '@' ? has_tag(&m->ships[k], n + 1)
                                   : strcmp(m->ships[k].name, n) == 0 || strcmp(ms_ship_base(&m->ships[k]), n) == 0;
            if (hit)
                pick[k] = any = true;
        }
        if (!any) {
            char text[MS_CTL_MAX_NAME + 64];
            if (n[0] == '@')
                snprintf(text, sizeof text, "no entry has the tag \"%s\"", n + 1);
            else
                snprintf(text, sizeof text, "no entry is named \"%s\"", n);
            *error = known_lists(m, text);
            return false;
        }
    }
    return true;
}
