/* protocol.c: the protocol-level uplink checks as pure byte functions: the
 * request each scheme sends once connected (redis PING, postgres SSLRequest,
 * HTTP GET) and the judgement of the server's answer (RESP reply, 'S'/'N',
 * mysql initial handshake, HTTP status via http-parser). No I/O here: the
 * answer bytes come from uplink.c (plain or decrypted). Every buffer is
 * bounded; answer text quoted into messages is made printable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/uplink_impl.h"

ms_proto_kind ms_proto_kind_for(const char *scheme)
{
    if (strcmp(scheme, "redis") == 0)
        return MS_PROTO_REDIS;
    if (strcmp(scheme, "postgres") == 0)
        return MS_PROTO_POSTGRES;
    if (strcmp(scheme, "mysql") == 0)
        return MS_PROTO_MYSQL;
    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)
        return MS_PROTO_HTTP;
    return MS_PROTO_TCP;
}

/* ---------------------------------------------------------------- http-parser glue */
static int on_headers_complete(http_parser *hp)
{
    ms_proto *p = hp->data;
    p->head_done = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings http_settings = {
    .on_headers_complete = on_headers_complete,
};

void ms_proto_init(ms_proto *p, ms_proto_kind kind)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (kind == MS_PROTO_HTTP) {
        http_parser_init(&p->parser, HTTP_RESPONSE);
        p->parser.data = p;
    }
}

void ms_proto_quote(const unsigned char *data, size_t n, char *out, size_t out_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (out_len == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = data[i];
        char tmp[4];
        size_t tn;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            tmp[0] = (char)c;
            tn = 1;
        } else if (c == '\r' || c == '\n') {
            tmp[0] = '\\';
            tmp[1] = c == '\r' ? 'r' : 'n';
            tn = 2;
        } else {
            tmp[0] = '\\';
            tmp[1] = 'x';
            tmp[2] = hex[c >> 4];
            tmp[3] = hex[c & 15];
            tn = 4;
        }
        if (o + tn + 4 > out_len) { /* room for "..." and NUL */
            if (o + 4 <= out_len) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, tmp, tn);
        o += tn;
    }
    out[o] = '\0';
}

char *ms_proto_request(ms_proto_kind kind, const char *host, uint16_t port, bool tls,
                       const char *path, size_t *len)
{
    char *out = NULL;
    *len = 0;
    switch (kind) {
    case MS_PROTO_TCP:
    case MS_PROTO_MYSQL:
        return NULL;
    case MS_PROTO_REDIS:
        out = malloc(6);
        if (out) {
            memcpy(out, "PING\r\n", 6);
            *len = 6;
        }
        break;
    case MS_PROTO_POSTGRES: {
        /* SSLRequest: int32 length 8, int32 80877103 (1234 << 16 | 5679), big-endian */
        static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
        out = malloc(sizeof ssl_request);
        if (out) {
            memcpy(out, ssl_request, sizeof ssl_request);
            *len = sizeof ssl_request;
        }
        break;
    }
    case MS_PROTO_HTTP: {
        bool v6 = strchr(host, ':') != NULL;
        bool default_port = port == (tls ? 443 : 80);
        char portpart[8] = "";
        if (!default_port)
            snprintf(portpart, sizeof portpart, ":%u", (unsigned)port);
        const char *target = path && *path ? path : "/";
        int n = snprintf(NULL, 0,
                         "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUser-Agent: mothership-preflight\r\n"
                         "Accept: */*\r\nConnection: close\r\n\r\n",
                         target, v6 ? "[" : "", host, v6 ? "]" : "", portpart);
        if (n < 0)
            break;
        out = malloc((size_t)n + 1);
        if (!out)
            break;
        snprintf(out, (size_t)n + 1,
                 "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUser-Agent: mothership-preflight\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 target, v6 ? "[" : "", host, v6 ? "]" : "", portpart);
        *len = (size_t)n;
        break;
    }
    }
    if (!out)
        *len = 1; /* OOM marker */
    return out;
}

/* Keep answer bytes (bounded); false when the buffer is full. */
static bool keep(ms_proto *p, const char *data, size_t n)
{
    size_t room = sizeof p->buf - p->len;
    size_t take = n < room ? n : room;
    memcpy(p->buf + p->len, data, take);
    p->len += take;
    return take == n;
}

static int down_garbage(ms_proto *p, const char *what)
{
    char q[64];
    ms_proto_quote(p->buf, p->len < 40 ? p->len : 40, q, sizeof q);
    snprintf(p->error, sizeof p->error, "not a %s server (answered \"%s\")", what, q);
    return MS_PROTO_DOWN;
}

/* ---------------------------------------------------------------- redis */
static bool all_digits(const unsigned char *s, size_t n, bool allow_sign)
{
    size_t i = 0;
    if (allow_sign && n > 0 && s[0] == '-')
        i = 1;
    if (i == n)
        return false;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int redis_judge(ms_proto *p)
{
    unsigned char t = p->buf[0];
    if (!strchr("+-:$*", t) || t == '\0')
        return down_garbage(p, "redis");
    /* a reply line: type byte, text, CRLF */
    unsigned char *cr = memchr(p->buf, '\r', p->len);
    unsigned char *lf = memchr(p->buf, '\n', p->len);
    if (lf && (!cr || lf < cr))
        return down_garbage(p, "redis"); /* bare LF */
    if (!cr || (size_t)(cr - p->buf) + 1 >= p->len)
        return p->len >= 512 ? down_garbage(p, "redis") : MS_PROTO_MORE;
    if (cr[1] != '\n')
        return down_garbage(p, "redis");
    size_t ln = (size_t)(cr - p->buf) - 1;
    const unsigned char *text = p->buf + 1;
    for (size_t i = 0; i < ln; i++)
        if (text[i] < 0x20 || text[i] == 0x7f)
            return down_garbage(p, "redis");
    if ((t == ':' || t == '$' || t == '*') && !all_digits(text, ln, true))
        return down_garbage(p, "redis");
    char q[120];
    ms_proto_quote(p->buf, ln + 1, q, sizeof q);
    if (t == '+' && ln == 4 && memcmp(text, "PONG", 4) == 0)
        snprintf(p->detail, sizeof p->detail, "+PONG");
    else
        snprintf(p->detail, sizeof p->detail, "redis answered %s", q);
    return MS_PROTO_UP;
}

/* ---------------------------------------------------------------- postgres */
static int postgres_judge(ms_proto *p)
{
    if (p->buf[0] == 'S') {
        snprintf(p->detail, sizeof p->detail, "postgres (SSL available)");
        return MS_PROTO_UP;
    }
    if (p->buf[0] == 'N') {
        snprintf(p->detail, sizeof p->detail, "postgres (SSL not available)");
        return MS_PROTO_UP;
    }
    return down_garbage(p, "postgres");
}

/* ---------------------------------------------------------------- mysql */
static int mysql_judge(ms_proto *p, bool eof)
{
    if (p->len < 5)
        return eof ? down_garbage(p, "mysql") : MS_PROTO_MORE;
    size_t plen = (size_t)p->buf[0] | (size_t)p->buf[1] << 8 | (size_t)p->buf[2] << 16;
    if (plen == 0)
        return down_garbage(p, "mysql");
    const unsigned char *pl = p->buf + 4;
    size_t have = p->len - 4 < plen ? p->len - 4 : plen;
    bool complete = have == plen;
    if (pl[0] == 10) { /* HandshakeV10: version string, NUL-terminated */
        const unsigned char *nul = memchr(pl + 1, '\0', have - 1);
        if (!nul) {
            if (complete || eof || p->len == sizeof p->buf)
                return down_garbage(p, "mysql");
            return MS_PROTO_MORE;
        }
        size_t vn = (size_t)(nul - (pl + 1));
        for (size_t i = 0; i < vn; i++)
            if (pl[1 + i] < 0x20 || pl[1 + i] >= 0x7f)
                return down_garbage(p, "mysql");
        char q[100];
        ms_proto_quote(pl + 1, vn, q, sizeof q);
        snprintf(p->detail, sizeof p->detail, "mysql %s", q);
        return MS_PROTO_UP;
    }
    if (pl[0] == 0xff) { /* ERR packet: a live server refusing us (too many connections, host blocked) */
        if (have < 3)
            return complete || eof ? down_garbage(p, "mysql") : MS_PROTO_MORE;
        if (!complete && !eof && p->len < sizeof p->buf)
            return MS_PROTO_MORE;
        unsigned code = (unsigned)pl[1] | (unsigned)pl[2] << 8;
        char q[120];
        ms_proto_quote(pl + 3, have - 3, q, sizeof q);
        snprintf(p->detail, sizeof p->detail, "mysql answered error %u: %s", code, q);
        return MS_PROTO_UP;
    }
    if (pl[0] == 9) {
        snprintf(p->error, sizeof p->error, "mysql protocol 9 (pre-4.1 server) is not supported");
        return MS_PROTO_DOWN;
    }
    return down_garbage(p, "mysql");
}

/* ---------------------------------------------------------------- http */
static int http_feed(ms_proto *p, const char *data, size_t n)
{
    if (p->head_bytes + n > MS_PROTO_HTTP_HEAD)
        n = MS_PROTO_HTTP_HEAD - p->head_bytes;
    size_t used = http_parser_execute(&p->parser, &http_settings, data, n);
    p->head_bytes += used;
    if (p->head_done) {
        unsigned code = p->parser.status_code;
        if (code >= 200 && code < 400) {
            snprintf(p->detail, sizeof p->detail, "HTTP %u", code);
            return MS_PROTO_UP;
        }
        snprintf(p->error, sizeof p->error, "HTTP %u", code);
        return MS_PROTO_DOWN;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    if (e != HPE_OK) {
        snprintf(p->error, sizeof p->error, "invalid HTTP response (%s)", http_errno_description(e));
        return MS_PROTO_DOWN;
    }
    if (p->head_bytes >= MS_PROTO_HTTP_HEAD) {
        snprintf(p->error, sizeof p->error, "HTTP response head larger than %d KiB",
                 MS_PROTO_HTTP_HEAD / 1024);
        return MS_PROTO_DOWN;
    }
    return MS_PROTO_MORE;
}

/* ---------------------------------------------------------------- dispatch */
int ms_proto_feed(ms_proto *p, const char *data, size_t n)
{
    if (n == 0)
        return MS_PROTO_MORE;
    switch (p->kind) {
    case MS_PROTO_TCP:
        snprintf(p->detail, sizeof p->detail, "connected");
        return MS_PROTO_UP;
    case MS_PROTO_HTTP:
        return http_feed(p, data, n);
    case MS_PROTO_REDIS:
        keep(p, data, n);
        return redis_judge(p);
    case MS_PROTO_POSTGRES:
        keep(p, data, n);
        return postgres_judge(p);
    case MS_PROTO_MYSQL:
        keep(p, data, n);
        return mysql_judge(p, false);
    }
    return MS_PROTO_DOWN;
}

int ms_proto_eof(ms_proto *p)
{
    if (p->kind == MS_PROTO_TCP) {
        snprintf(p->detail, sizeof p->detail, "connected");
        return MS_PROTO_UP;
    }
    if (p->kind == MS_PROTO_MYSQL && p->len > 0) {
        int r = mysql_judge(p, true);
        if (r != MS_PROTO_MORE)
            return r;
    }
    if (p->kind == MS_PROTO_HTTP && p->head_bytes > 0) {
        snprintf(p->error, sizeof p->error, "connection closed in the middle of the HTTP response head");
        return MS_PROTO_DOWN;
    }
    if (p->len > 0) { /* redis line without CRLF, and the like */
        const char *what = p->kind == MS_PROTO_REDIS ? "redis" : p->kind == MS_PROTO_POSTGRES ? "postgres" : "mysql";
        return down_garbage(p, what);
    }
    snprintf(p->error, sizeof p->error, "connection closed without an answer");
    return MS_PROTO_DOWN;
}
