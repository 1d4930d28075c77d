/* httpc.c: a small asynchronous HTTP/1.1 client on the control loop (API
 * in httpc.h). Two parts:
 *
 * The response parser (ms_httpc_parser_*), socket-free: http-parser reads
 * the bytes; the head is bounded by passing it at most HEAD_MAX bytes
 * before its end, the body by MS_HTTPC_MAX_BODY; the few headers the
 * callers read are kept (Link split at commas outside <...> and quotes);
 * 1xx interim responses are skipped.
 *
 * The request (ms_httpc_req), one per connection:
 *   resolve (uv_getaddrinfo) -> connect to each address in turn ->
 *   [TLS handshake over tls.c's memory BIOs] -> send the request ->
 *   read the response into the parser -> callback (once) -> close.
 * One timer bounds the whole exchange; it also delivers failures found
 * while starting, so the callback never runs inside ms_httpc_request.
 *
 * Lifetimes: a request is freed when it is finished (called back or
 * cancelled) and every handle it opened is closed: req->refs counts the
 * timer, the open connection and the request's own reference (dropped at
 * finish). A connection (a uv_tcp_t on the heap) forgets its request
 * (conn->req = NULL) when closed, so its late write/connect callbacks
 * touch nothing else. A getaddrinfo in flight cannot be taken back, so it
 * is detached (data = NULL) and frees itself when it completes. The client
 * keeps its unfinished requests in a list so that ms_httpc_free can cancel
 * them; nothing refers to the client after that. */
#include "uplink/httpc.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <http_parser.h>
#include <openssl/err.h>

#include "ms_config.h"
#include "uplink/uplink_impl.h"

#define HEAD_MAX (16u * 1024u)
#define READ_CHUNK 16384
#define FIELD_MAX 32            /* longer header names are none we keep */
#define DEFAULT_TIMEOUT_MS 30000u

/* ================================================================ parser */
struct ms_httpc_parser {
    http_parser hp;
    bool head_request;
    bool head_done;         /* the final (non-1xx) head is read */
    bool complete;
    bool failed;
    bool any_input;
    size_t head_bytes;      /* head bytes passed to http-parser, 1xx heads included */
    /* the header being read */
    char field[FIELD_MAX + 1];
    size_t field_len;
    bool field_long;
    char *value;            /* HEAD_MAX + 1 bytes */
    size_t value_len;
    bool in_value;
    size_t body_cap;
    ms_httpc_response r;
    char err[200];
};

static void size_text(size_t n, char *buf, size_t len)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0)
        snprintf(buf, len, "%zu MiB", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, len, "%zu KiB", n >> 10);
    else
        snprintf(buf, len, "%zu bytes", n);
}

static int parser_fail(ms_httpc_parser *p, const char *fmt, const char *arg)
{
    if (!p->failed) {
        p->failed = true;
        snprintf(p->err, sizeof p->err, fmt, arg);
    }
    return -1;
}

static int fail_body_too_big(ms_httpc_parser *p)
{
    char sz[32];
    size_text(MS_HTTPC_MAX_BODY, sz, sizeof sz);
    return parser_fail(p, "the response body is over %s", sz);
}

static void response_clear(ms_httpc_response *r)
{
    free(r->location);
    free(r->replay_nonce);
    free(r->retry_after);
    free(r->content_type);
    for (size_t i = 0; i < r->nlinks; i++)
        free(r->links[i]);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Copy s[0..n) without the optional white space around it. */
static char *dup_trimmed(const char *s, size_t n)
{
    while (n > 0 && is_ows(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ows(s[n - 1]))
        n--;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* Keep one element of a Link header; empty elements are skipped, those past
 * MS_HTTPC_MAX_LINKS dropped. */
static int add_link(ms_httpc_parser *p, const char *s, size_t n)
{
    char *v = dup_trimmed(s, n);
    if (!v)
        return parser_fail(p, "%s", "out of memory");
    if (!*v || p->r.nlinks >= MS_HTTPC_MAX_LINKS) {
        free(v);
        return 0;
    }
    p->r.links[p->r.nlinks++] = v;
    return 0;
}

/* A Link value is a list of `<uri>; params`; commas inside <...> or a
 * quoted string (with \-escapes) do not separate. */
static int split_links(ms_httpc_parser *p, const char *v, size_t n)
{
    size_t start = 0;
    bool angle = false, quoted = false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (quoted) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '"')
                quoted = false;
        } else if (angle) {
            if (c == '>')
                angle = false;
        } else if (c == '<') {
            angle = true;
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            if (add_link(p, v + start, i - start) < 0)
                return -1;
            start = i + 1;
        }
    }
    return add_link(p, v + start, n - start);
}

/* The header just read (field + value) is complete. */
static int header_done(ms_httpc_parser *p)
{
    if (!p->in_value)
        return 0;
    p->in_value = false;
    const char *f = p->field;
    char **slot = NULL;
    int rc = 0;
    if (!p->field_long) {
        if (strcasecmp(f, "Location") == 0)
            slot = &p->r.location;
        else if (strcasecmp(f, "Replay-Nonce") == 0)
            slot = &p->r.replay_nonce;
        else if (strcasecmp(f, "Retry-After") == 0)
            slot = &p->r.retry_after;
        else if (strcasecmp(f, "Content-Type") == 0)
            slot = &p->r.content_type;
        else if (strcasecmp(f, "Link") == 0)
            rc = split_links(p, p->value, p->value_len);
    }
    if (slot && !*slot) { /* the first one counts */
        *slot = dup_trimmed(p->value, p->value_len);
        if (!*slot)
            rc = parser_fail(p, "%s", "out of memory");
    }
    p->field_len = 0;
    p->field_long = false;
    p->value_len = 0;
    return rc;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    ms_httpc_parser *p = hp->data;
    if (p->head_done)
        return 0; /* a chunked body's trailers: not kept */
    if (p->in_value && header_done(p) < 0)
        return -1;
    if (p->field_len + n > FIELD_MAX) {
        p->field_long = true;
        return 0;
    }
    memcpy(p->field + p->field_len, at, n);
    p->field_len += n;
    p->field[p->field_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    ms_httpc_parser *p = hp->data;
    if (p->head_done)
        return 0;
    p->in_value = true;
    if (p->value_len + n > HEAD_MAX) /* cannot happen: the head is bounded */
        return parser_fail(p, "%s", "a response header is too long");
    memcpy(p->value + p->value_len, at, n);
    p->value_len += n;
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    ms_httpc_parser *p = hp->data;
    if (header_done(p) < 0)
        return -1;
    p->r.status = (int)hp->status_code;
    if (p->r.status < 100) /* http-parser takes 1 to 3 digits */
        return parser_fail(p, "%s", "invalid HTTP response: a status code under 100");
    if (p->r.status >= 100 && p->r.status < 200 && p->r.status != 101)
        return 0; /* interim; on_message_complete starts over */
    p->head_done = true;
    if (p->head_request || p->r.status == 204 || p->r.status == 304)
        return 1; /* no body, whatever Content-Length says (RFC 9112 6.3) */
    uint64_t cl = hp->content_length;
    size_t want = 256;
    if (cl != ULLONG_MAX && cl > 0) {
        if (cl > MS_HTTPC_MAX_BODY)
            return fail_body_too_big(p);
        want = (size_t)cl;
    }
    p->r.body = malloc(want + 1);
    if (!p->r.body)
        return parser_fail(p, "%s", "out of memory");
    p->r.body[0] = '\0';
    p->body_cap = want + 1;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    ms_httpc_parser *p = hp->data;
    if (!p->head_done)
        return 0; /* a 1xx with a body (counted in head_bytes) */
    if (n > MS_HTTPC_MAX_BODY - p->r.body_len)
        return fail_body_too_big(p);
    size_t need = p->r.body_len + n + 1;
    if (need > p->body_cap) {
        size_t cap = p->body_cap * 2;
        if (cap < need)
            cap = need;
        if (cap > MS_HTTPC_MAX_BODY + 1)
            cap = MS_HTTPC_MAX_BODY + 1;
        char *b = realloc(p->r.body, cap);
        if (!b)
            return parser_fail(p, "%s", "out of memory");
        p->r.body = b;
        p->body_cap = cap;
    }
    memcpy(p->r.body + p->r.body_len, at, n);
    p->r.body_len += n;
    p->r.body[p->r.body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    ms_httpc_parser *p = hp->data;
    if (!p->head_done) { /* after a 1xx: the real response follows */
        response_clear(&p->r); /* its head stays counted in head_bytes */
        return 0;
    }
    if (!p->r.body) {
        p->r.body = calloc(1, 1);
        if (!p->r.body)
            return parser_fail(p, "%s", "out of memory");
    }
    p->complete = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

ms_httpc_parser *ms_httpc_parser_new(bool head_request)
{
    ms_httpc_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->value = malloc(HEAD_MAX + 1);
    if (!p->value) {
        free(p);
        return NULL;
    }
    http_parser_init(&p->hp, HTTP_RESPONSE);
    p->hp.data = p;
    p->head_request = head_request;
    return p;
}

void ms_httpc_parser_free(ms_httpc_parser *p)
{
    if (!p)
        return;
    response_clear(&p->r);
    free(p->value);
    free(p);
}

const ms_httpc_response *ms_httpc_parser_response(const ms_httpc_parser *p)
{
    return p->complete ? &p->r : NULL;
}

static int parser_result(ms_httpc_parser *p, char *why, size_t why_len)
{
    if (p->failed) {
        snprintf(why, why_len, "%s", p->err);
        return -1;
    }
    return p->complete ? 1 : 0;
}

int ms_httpc_parser_feed(ms_httpc_parser *p, const char *data, size_t len, char *why, size_t why_len)
{
    if (len > 0)
        p->any_input = true;
    while (len > 0 && !p->complete && !p->failed) {
        size_t take = len;
        if (!p->head_done) {
            if (p->head_bytes >= HEAD_MAX) {
                char sz[32];
                size_text(HEAD_MAX, sz, sizeof sz);
                parser_fail(p, "the response head is over %s", sz);
                break;
            }
            if (take > HEAD_MAX - p->head_bytes)
                take = HEAD_MAX - p->head_bytes;
        }
        bool was_head = !p->head_done;
        size_t used = http_parser_execute(&p->hp, &parser_settings, data, take);
        if (was_head && !p->head_done)
            p->head_bytes += used;
        if (p->failed || p->complete)
            break;
        enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
        if (e != HPE_OK)
            parser_fail(p, "invalid HTTP response: %s", http_errno_description(e));
        else if (used != take)
            parser_fail(p, "%s", "invalid HTTP response: unexpected data");
        data += used;
        len -= used;
    }
    return parser_result(p, why, why_len);
}

int ms_httpc_parser_done(ms_httpc_parser *p, char *why, size_t why_len)
{
    if (!p->complete && !p->failed) {
        http_parser_execute(&p->hp, &parser_settings, NULL, 0);
        if (!p->complete && !p->failed) {
            enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
            if (!p->any_input)
                parser_fail(p, "%s", "the server closed the connection without answering");
            else if (e != HPE_OK && e != HPE_INVALID_EOF_STATE)
                parser_fail(p, "invalid HTTP response: %s", http_errno_description(e));
            else
                parser_fail(p, "%s", "the server closed the connection in the middle of the response");
        }
    }
    return parser_result(p, why, why_len);
}

/* ================================================================ client */
typedef struct conn conn;

struct ms_httpc {
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    ms_httpc_req *reqs; /* unfinished, doubly linked */
};

struct ms_httpc_req {
    ms_httpc *c;            /* NULL once finished */
    ms_httpc_req *prev, *next;
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;       /* a reference of our own */
    ms_httpc_cb *cb;
    void *arg;
    unsigned refs;
    bool finished;
    /* what to send where */
    bool tls;
    char *host;             /* without brackets */
    char port[8];
    char *request;
    size_t request_len;
    bool head;
    uint64_t timeout_ms;
    char start_error[300];  /* a failure found while starting, delivered by the timer */
    /* the exchange */
    uv_timer_t timer;
    uv_getaddrinfo_t *gai;
    struct addrinfo *ai, *ai_next;
    conn *conn;
    ms_httpc_parser *parser;
    char last_error[300];
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    ms_httpc_req *req;      /* NULL once closing */
    ms_tls *tls;
    bool handshaking;
    char rbuf[READ_CHUNK];
    char plain[READ_CHUNK];
};

static void req_unref(ms_httpc_req *req)
{
    if (--req->refs > 0)
        return;
    free(req->host);
    free(req->request);
    if (req->ssl_ctx)
        SSL_CTX_free(req->ssl_ctx);
    free(req);
}

static SSL_CTX *ctx_for_ca_root(const char *ca_root, char *why, size_t why_len)
{
    FILE *f = fopen(ca_root, "r");
    if (!f) {
        snprintf(why, why_len, "cannot read the CA file %s: %s", ca_root, strerror(errno));
        return NULL;
    }
    fclose(f);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, why_len, "TLS: cannot create a context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 || SSL_CTX_load_verify_file(ctx, ca_root) != 1) {
        unsigned long e = ERR_peek_last_error();
        const char *r = e ? ERR_reason_error_string(e) : NULL;
        snprintf(why, why_len, "cannot load the CA certificates in %s: %s", ca_root,
                 r ? r : "no PEM certificate found");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

ms_httpc *ms_httpc_new(uv_loop_t *loop, const char *ca_root, char *why, size_t why_len)
{
    ms_httpc *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->ssl_ctx = ca_root ? ctx_for_ca_root(ca_root, why, why_len) : ms_tls_client_ctx(why, why_len);
    if (!c->ssl_ctx) {
        free(c);
        return NULL;
    }
    return c;
}

static void req_finish(ms_httpc_req *req, const ms_httpc_response *r, const char *error);

void ms_httpc_cancel(ms_httpc_req *req)
{
    if (req && !req->finished)
        req_finish(req, NULL, NULL);
}

void ms_httpc_free(ms_httpc *c)
{
    if (!c)
        return;
    while (c->reqs)
        ms_httpc_cancel(c->reqs);
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

/* ---------------------------------------------------------------- URL and request bytes */
static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool bad_url(ms_httpc_req *req, const char *url, const char *reason)
{
    if (printable(url) && strlen(url) <= 200)
        snprintf(req->start_error, sizeof req->start_error, "bad URL \"%s\": %s", url, reason);
    else
        snprintf(req->start_error, sizeof req->start_error, "bad URL: %s", reason);
    return false;
}

/* Split url into req->tls, host, port; *target and *host_header are heap
 * strings for the request line and the Host header. */
static bool parse_url(ms_httpc_req *req, const char *url, char **target, char **host_header)
{
    const char *rest;
    unsigned port;
    if (strncasecmp(url, "https://", 8) == 0) {
        req->tls = true;
        rest = url + 8;
        port = 443;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
        port = 80;
    } else {
        return bad_url(req, url, "not http:// or https://");
    }
    if (!printable(url))
        return bad_url(req, url, "it contains a space or a control character");
    size_t alen = strcspn(rest, "/?#");
    const char *path = rest + alen;
    if (memchr(rest, '@', alen))
        return bad_url(req, url, "user information is not supported");
    const char *h = rest, *hend;
    const char *after;
    if (alen > 0 && *h == '[') {
        hend = memchr(h, ']', alen);
        if (!hend)
            return bad_url(req, url, "no ']' after the IPv6 address");
        h++;
        after = hend + 1;
    } else {
        hend = memchr(h, ':', alen);
        if (!hend)
            hend = rest + alen;
        after = hend;
    }
    if (hend == h)
        return bad_url(req, url, "no host");
    if (after < rest + alen) {
        if (*after != ':')
            return bad_url(req, url, "unexpected text after the host");
        after++;
        size_t plen = (size_t)(rest + alen - after);
        if (plen == 0 || plen > 5 || strspn(after, "0123456789") < plen)
            return bad_url(req, url, "the port is not a number");
        port = 0;
        for (size_t i = 0; i < plen; i++)
            port = port * 10 + (unsigned)(after[i] - '0');
        if (port == 0 || port > 65535)
            return bad_url(req, url, "the port is out of range");
    }
    req->host = strndup(h, (size_t)(hend - h));
    size_t tlen = strcspn(path, "#");
    bool need_slash = tlen == 0 || path[0] != '/';
    *target = malloc(tlen + 2);
    *host_header = strndup(rest, alen);
    if (!req->host || !*target || !*host_header) {
        snprintf(req->start_error, sizeof req->start_error, "out of memory");
        return false;
    }
    snprintf(*target, tlen + 2, "%s%.*s", need_slash ? "/" : "", (int)tlen, path);
    snprintf(req->port, sizeof req->port, "%u", port);
    return true;
}

static bool token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < 'A' || *s > 'Z')
            return false;
    return true;
}

static bool build_request(ms_httpc_req *req, const char *method, const char *url, const char *content_type,
                          const void *body, size_t body_len)
{
    if (!token(method)) {
        snprintf(req->start_error, sizeof req->start_error, "bad HTTP method");
        return false;
    }
    if (content_type && (strpbrk(content_type, "\r\n") || !*content_type)) {
        snprintf(req->start_error, sizeof req->start_error, "bad Content-Type for the request body");
        return false;
    }
    char *target = NULL, *host_header = NULL;
    bool ok = parse_url(req, url, &target, &host_header);
    if (ok) {
        char ct[300] = "", cl[48] = "";
        if (content_type)
            snprintf(ct, sizeof ct, "Content-Type: %.250s\r\n", content_type);
        if (body_len > 0 || strcmp(method, "POST") == 0)
            snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body_len);
        const char *fmt = "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mothership/" MS_VERSION
                          "\r\nAccept: */*\r\nConnection: close\r\n%s%s\r\n";
        int n = snprintf(NULL, 0, fmt, method, target, host_header, ct, cl);
        req->request = n < 0 ? NULL : malloc((size_t)n + 1 + body_len);
        if (!req->request) {
            snprintf(req->start_error, sizeof req->start_error, "out of memory");
            ok = false;
        } else {
            snprintf(req->request, (size_t)n + 1, fmt, method, target, host_header, ct, cl);
            if (body_len > 0)
                memcpy(req->request + n, body, body_len);
            req->request_len = (size_t)n + body_len;
        }
    }
    free(target);
    free(host_header);
    return ok;
}

/* ---------------------------------------------------------------- connections */
static void on_conn_closed(uv_handle_t *h)
{
    conn *k = h->data;
    ms_httpc_req *req = k->req;
    free(k);
    if (req)
        req_unref(req);
}

/* Close the request's connection; its callbacks then see no request. */
static void conn_close(ms_httpc_req *req)
{
    conn *k = req->conn;
    if (!k)
        return;
    req->conn = NULL;
    ms_tls_free(k->tls);
    k->tls = NULL;
    /* k->req stays for on_conn_closed's unref; the callbacks below test closing */
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

static ms_httpc_req *live_req(conn *k)
{
    return k->req && k->req->conn == k ? k->req : NULL;
}

typedef struct wreq {
    uv_write_t w;
    conn *k;
    char data[];
} wreq;

static void on_write(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    ms_httpc_req *req = live_req(wr->k);
    free(wr);
    if (status < 0 && req) {
        char why[200];
        snprintf(why, sizeof why, "sending the request: %s", uv_strerror(status));
        req_finish(req, NULL, why);
    }
}

/* Queue bytes (copied). False once the request is finished. */
static bool send_raw(ms_httpc_req *req, const char *data, size_t n)
{
    if (n == 0)
        return true;
    wreq *wr = malloc(sizeof *wr + n);
    if (!wr) {
        req_finish(req, NULL, "out of memory");
        return false;
    }
    memcpy(wr->data, data, n);
    wr->k = req->conn;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    int rc = uv_write(&wr->w, (uv_stream_t *)&req->conn->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(wr);
        char why[200];
        snprintf(why, sizeof why, "sending the request: %s", uv_strerror(rc));
        req_finish(req, NULL, why);
        return false;
    }
    return true;
}

static bool flush_tls(ms_httpc_req *req)
{
    char *out = NULL;
    long n = ms_tls_take_output(req->conn->tls, &out);
    if (n < 0) {
        req_finish(req, NULL, "out of memory");
        return false;
    }
    bool ok = send_raw(req, out, (size_t)n);
    free(out);
    return ok;
}

static void tls_fail(ms_httpc_req *req, const char *why)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s%s", strncmp(why, "TLS", 3) == 0 ? "" : "TLS: ", why);
    req_finish(req, NULL, msg);
}

static void send_request(ms_httpc_req *req)
{
    if (!req->conn->tls) {
        send_raw(req, req->request, req->request_len);
        return;
    }
    char why[300];
    if (!ms_tls_write(req->conn->tls, req->request, req->request_len, why, sizeof why)) {
        tls_fail(req, why);
        return;
    }
    flush_tls(req);
}

/* Response bytes: true once the request is finished. */
static bool got_response_bytes(ms_httpc_req *req, const char *data, size_t n)
{
    char why[300];
    int r = ms_httpc_parser_feed(req->parser, data, n, why, sizeof why);
    if (r == 0)
        return false;
    req_finish(req, r > 0 ? ms_httpc_parser_response(req->parser) : NULL, r > 0 ? NULL : why);
    return true;
}

/* The peer's close: clean is false for a bare TCP close under TLS (no
 * close_notify), which anyone on the path can forge: a response that only
 * this close would end (read until close) may then be cut short. */
static void got_eof(ms_httpc_req *req, bool clean)
{
    if (req->conn->tls && req->conn->handshaking) {
        req_finish(req, NULL, "TLS: connection closed during the handshake");
        return;
    }
    char why[300];
    int r = ms_httpc_parser_done(req->parser, why, sizeof why);
    if (r > 0 && !clean) {
        r = -1;
        snprintf(why, sizeof why, "%s",
                 "TLS: the server closed the connection without close_notify: the response may be truncated");
    }
    req_finish(req, r > 0 ? ms_httpc_parser_response(req->parser) : NULL, r > 0 ? NULL : why);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *k = h->data;
    *buf = uv_buf_init(k->rbuf, sizeof k->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *k = s->data;
    ms_httpc_req *req = live_req(k);
    if (!req || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            got_eof(req, !k->tls);
        } else {
            char why[200];
            snprintf(why, sizeof why, "reading the response: %s", uv_strerror((int)nread));
            req_finish(req, NULL, why);
        }
        return;
    }
    if (!k->tls) {
        got_response_bytes(req, buf->base, (size_t)nread);
        return;
    }
    char why[300];
    if (!ms_tls_feed(k->tls, buf->base, (size_t)nread)) {
        req_finish(req, NULL, "out of memory");
        return;
    }
    if (k->handshaking) {
        int h = ms_tls_handshake(k->tls, why, sizeof why);
        if (!flush_tls(req))
            return;
        if (h < 0) {
            tls_fail(req, why);
            return;
        }
        if (h == 0)
            return;
        k->handshaking = false;
        send_request(req);
        if (!live_req(k))
            return;
    }
    for (;;) {
        int r = ms_tls_read(k->tls, k->plain, sizeof k->plain, why, sizeof why);
        if (r == 0)
            break;
        if (r == -2) {
            got_eof(req, true);
            return;
        }
        if (r < 0) {
            tls_fail(req, why);
            return;
        }
        if (got_response_bytes(req, k->plain, (size_t)r))
            return;
    }
    flush_tls(req); /* e.g. a key update's answer */
}

static void try_next_address(ms_httpc_req *req);

static void on_connect(uv_connect_t *creq, int status)
{
    conn *k = creq->handle->data;
    ms_httpc_req *req = live_req(k);
    if (!req)
        return; /* closed by the deadline or a cancel */
    if (status < 0) {
        snprintf(req->last_error, sizeof req->last_error, "%s", uv_strerror(status));
        conn_close(req);
        try_next_address(req);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (rc < 0) {
        char why[200];
        snprintf(why, sizeof why, "reading the response: %s", uv_strerror(rc));
        req_finish(req, NULL, why);
        return;
    }
    if (!req->tls) {
        send_request(req);
        return;
    }
    char why[300];
    k->tls = ms_tls_new(req->ssl_ctx, req->host, why, sizeof why);
    if (!k->tls) {
        tls_fail(req, why);
        return;
    }
    k->handshaking = true;
    int h = ms_tls_handshake(k->tls, why, sizeof why);
    if (!flush_tls(req))
        return;
    if (h < 0)
        tls_fail(req, why);
}

static void try_next_address(ms_httpc_req *req)
{
    while (req->ai_next) {
        struct addrinfo *ai = req->ai_next;
        req->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        conn *k = calloc(1, sizeof *k);
        if (!k) {
            req_finish(req, NULL, "out of memory");
            return;
        }
        int rc = uv_tcp_init(req->loop, &k->tcp);
        if (rc < 0) {
            free(k);
            snprintf(req->last_error, sizeof req->last_error, "%s", uv_strerror(rc));
            continue;
        }
        k->tcp.data = k;
        k->req = req;
        req->conn = k;
        req->refs++; /* dropped in on_conn_closed */
        rc = uv_tcp_connect(&k->creq, &k->tcp, ai->ai_addr, on_connect);
        if (rc < 0) {
            snprintf(req->last_error, sizeof req->last_error, "%s", uv_strerror(rc));
            conn_close(req);
            continue;
        }
        return;
    }
    char why[600];
    bool v6 = strchr(req->host, ':') != NULL;
    snprintf(why, sizeof why, "cannot connect to %s%s%s:%s: %s", v6 ? "[" : "", req->host, v6 ? "]" : "",
             req->port, req->last_error[0] ? req->last_error : "no usable address");
    req_finish(req, NULL, why);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    ms_httpc_req *req = gai->data;
    free(gai);
    if (!req) { /* detached: finished meanwhile */
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    req->gai = NULL;
    if (status < 0) {
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", req->host, ms_uplink_dns_reason(status));
        if (res)
            uv_freeaddrinfo(res);
        req_finish(req, NULL, why);
        return;
    }
    req->ai = req->ai_next = res;
    try_next_address(req);
}

/* ---------------------------------------------------------------- the request */
static void on_timer_closed(uv_handle_t *h)
{
    req_unref(h->data);
}

static void on_timer(uv_timer_t *t)
{
    ms_httpc_req *req = t->data;
    if (req->start_error[0]) {
        req_finish(req, NULL, req->start_error);
        return;
    }
    char why[64];
    if (req->timeout_ms % 1000 == 0)
        snprintf(why, sizeof why, "timed out after %llu s", (unsigned long long)(req->timeout_ms / 1000));
    else
        snprintf(why, sizeof why, "timed out after %llu ms", (unsigned long long)req->timeout_ms);
    req_finish(req, NULL, why);
}

/* Finish once: release the exchange, call back (unless cancelled: both
 * NULL), drop the request's own reference. */
static void req_finish(ms_httpc_req *req, const ms_httpc_response *r, const char *error)
{
    if (req->finished)
        return;
    req->finished = true;
    ms_httpc *c = req->c;
    if (c) {
        if (req->prev)
            req->prev->next = req->next;
        else
            c->reqs = req->next;
        if (req->next)
            req->next->prev = req->prev;
        req->c = NULL;
    }
    uv_timer_stop(&req->timer);
    uv_close((uv_handle_t *)&req->timer, on_timer_closed);
    if (req->gai) {
        uv_cancel((uv_req_t *)req->gai); /* a no-op once running; it frees itself either way */
        req->gai->data = NULL;
        req->gai = NULL;
    }
    conn_close(req);
    if (req->ai) {
        uv_freeaddrinfo(req->ai);
        req->ai = req->ai_next = NULL;
    }
    if (r || error)
        req->cb(req->arg, r, r ? NULL : error);
    ms_httpc_parser_free(req->parser);
    req->parser = NULL;
    req_unref(req);
}

ms_httpc_req *ms_httpc_request(ms_httpc *c, const char *method, const char *url, const char *content_type,
                               const void *body, size_t body_len, uint64_t timeout_ms, ms_httpc_cb *cb, void *arg)
{
    ms_httpc_req *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->parser = ms_httpc_parser_new(method && strcmp(method, "HEAD") == 0);
    if (!req->parser || uv_timer_init(c->loop, &req->timer) < 0) {
        ms_httpc_parser_free(req->parser);
        free(req);
        return NULL;
    }
    req->c = c;
    req->loop = c->loop;
    req->cb = cb;
    req->arg = arg;
    req->timer.data = req;
    req->refs = 2; /* the timer and the request itself */
    req->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    req->ssl_ctx = c->ssl_ctx;
    SSL_CTX_up_ref(req->ssl_ctx);
    req->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = req;
    c->reqs = req;

    if (!method || !url)
        snprintf(req->start_error, sizeof req->start_error, "no method or URL");
    else if (build_request(req, method, url, content_type, body_len ? body : NULL, body ? body_len : 0)) {
        req->gai = malloc(sizeof *req->gai);
        if (!req->gai) {
            snprintf(req->start_error, sizeof req->start_error, "out of memory");
        } else {
            req->gai->data = req;
            struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                      .ai_flags = AI_NUMERICSERV };
            int rc = uv_getaddrinfo(c->loop, req->gai, on_resolved, req->host, req->port, &hints);
            if (rc < 0) {
                free(req->gai);
                req->gai = NULL;
                snprintf(req->start_error, sizeof req->start_error, "cannot resolve %s: %s", req->host,
                         ms_uplink_dns_reason(rc));
            }
        }
    }
    uv_update_time(c->loop); /* the deadline counts from now, not from the loop's last turn */
    uv_timer_start(&req->timer, on_timer, req->start_error[0] ? 0 : req->timeout_ms, 0);
    return req;
}
