/* protocol.c: the protocol-level checks as pure byte functions (see
 * protocol.h): the request each kind sends once connected (redis PING,
 * postgres SSLRequest or startup message, HTTP GET) and the judgement of the
 * server's answer (RESP reply, 'S'/'N', postgres authentication request or
 * ErrorResponse, mysql initial handshake, HTTP status via http-parser), in
 * the uplinks' LIVE mode or the probes' READY mode. No I/O here: the answer
 * bytes come from uplink.c or fleet/probe.c. Every buffer is bounded;
 * answer text quoted into messages is made printable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/protocol.h"

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

const char *ms_proto_kind_name(ms_proto_kind kind)
{
    switch (kind) {
    case MS_PROTO_TCP: return "tcp";
    case MS_PROTO_REDIS: return "redis";
    case MS_PROTO_POSTGRES: return "postgres";
    case MS_PROTO_MYSQL: return "mysql";
    case MS_PROTO_HTTP: return "http";
    }
    return "?";
}

/* ---------------------------------------------------------------- http-parser glue */
/* LIVE mode stops at the head; READY mode reads on to the end of the
 * message, so the server's write of its body does not meet a closed socket. */
static int on_headers_complete(http_parser *hp)
{
    ms_proto *p = hp->data;
    p->head_done = true;
    p->http_status = (int)hp->status_code;
    if (p->mode == MS_PROTO_LIVE)
        http_parser_pause(hp, 1);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    ms_proto *p = hp->data;
    p->message_done = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings http_settings = {
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void ms_proto_init(ms_proto *p, ms_proto_kind kind, ms_proto_mode mode)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->mode = mode;
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

int ms_proto_host_header(const char *host, uint16_t port, bool tls, char *buf, size_t len)
{
    bool v6 = strchr(host, ':') != NULL;
    char portpart[8] = "";
    if (port != (tls ? 443 : 80))
        snprintf(portpart, sizeof portpart, ":%u", (unsigned)port);
    return snprintf(buf, len, "%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", portpart);
}

static char *copy_request(const void *bytes, size_t n, size_t *len)
{
    char *out = malloc(n);
    if (!out)
        return NULL;
    memcpy(out, bytes, n);
    *len = n;
    return out;
}

/* The postgres StartupMessage (protocol 3.0): int32 length, int32 196608,
 * then name/value pairs, each NUL-terminated, and a final NUL. The server
 * answers it with an authentication request once it accepts clients, and
 * with 57P03 while it starts, recovers or shuts down. */
static char *postgres_startup(size_t *len)
{
    static const char params[] = "user\0postgres\0database\0postgres\0"
                                 "application_name\0mothership-health\0"; /* + the array's NUL */
    unsigned char msg[8 + sizeof params];
    uint32_t n = (uint32_t)sizeof msg;
    msg[0] = (unsigned char)(n >> 24);
    msg[1] = (unsigned char)(n >> 16);
    msg[2] = (unsigned char)(n >> 8);
    msg[3] = (unsigned char)n;
    msg[4] = 0, msg[5] = 3, msg[6] = 0, msg[7] = 0; /* 3 << 16 | 0 */
    memcpy(msg + 8, params, sizeof params);
    return copy_request(msg, sizeof msg, len);
}

char *ms_proto_request(const ms_proto *p, const char *host_header, const char *path, size_t *len)
{
    char *out = NULL;
    *len = 0;
    switch (p->kind) {
    case MS_PROTO_TCP:
    case MS_PROTO_MYSQL:
        return NULL;
    case MS_PROTO_REDIS:
        out = copy_request("PING\r\n", 6, len);
        break;
    case MS_PROTO_POSTGRES:
        if (p->mode == MS_PROTO_READY) {
            out = postgres_startup(len);
        } else {
            /* SSLRequest: int32 length 8, int32 80877103 (1234 << 16 | 5679), big-endian */
            static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
            out = copy_request(ssl_request, sizeof ssl_request, len);
        }
        break;
    case MS_PROTO_HTTP: {
        static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
                                  "Accept: */*\r\nConnection: close\r\n\r\n";
        const char *target = path && *path ? path : "/";
        const char *agent = p->mode == MS_PROTO_LIVE ? "mothership-preflight" : "mothership-health";
        int n = snprintf(NULL, 0, fmt, target, host_header, agent);
        if (n < 0)
            break;
        out = malloc((size_t)n + 1);
        if (!out)
            break;
        snprintf(out, (size_t)n + 1, fmt, target, host_header, agent);
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

/* The errors of a redis that is alive but cannot serve commands yet:
 * loading its dataset, running a script, a replica cut off from its master. */
static bool redis_busy(const unsigned char *text, size_t n)
{
    static const char *const codes[] = { "LOADING", "BUSY", "MASTERDOWN" };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        size_t cn = strlen(codes[i]);
        if (n >= cn && memcmp(text, codes[i], cn) == 0 && (n == cn || text[cn] == ' '))
            return true;
    }
    return false;
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
    if (t == '+' && ln == 4 && memcmp(text, "PONG", 4) == 0) {
        snprintf(p->detail, sizeof p->detail, "+PONG");
        return MS_PROTO_UP;
    }
    if (p->mode == MS_PROTO_READY && t == '-' && redis_busy(text, ln)) {
        snprintf(p->error, sizeof p->error, "not ready: redis answered %s", q);
        return MS_PROTO_DOWN;
    }
    snprintf(p->detail, sizeof p->detail, "redis answered %s", q);
    return MS_PROTO_UP;
}

/* ---------------------------------------------------------------- postgres */
static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static const char *pg_auth_name(uint32_t code)
{
    switch (code) {
    case 0: return "trust";
    case 2: return "Kerberos";
    case 3: return "password";
    case 5: return "md5";
    case 7: return "GSSAPI";
    case 9: return "SSPI";
    case 10: return "SASL";
    default: return "other";
    }
}

/* An ErrorResponse body: fields of a type byte and a NUL-terminated string,
 * ending with a NUL byte; only what is in body[0..n) is read. */
static int postgres_error(ms_proto *p, const unsigned char *body, size_t n)
{
    char code[6] = "", severity[16] = "", msg[160] = "";
    size_t i = 0;
    while (i < n && body[i] != 0) {
        unsigned char type = body[i++];
        const unsigned char *v = body + i;
        const unsigned char *nul = memchr(v, '\0', n - i);
        size_t vn = nul ? (size_t)(nul - v) : n - i;
        if (type == 'C' && vn == 5) {
            for (size_t k = 0; k < 5; k++)
                code[k] = (v[k] >= '0' && v[k] <= '9') || (v[k] >= 'A' && v[k] <= 'Z') ? (char)v[k] : '?';
            code[5] = '\0';
        } else if (type == 'V' || (type == 'S' && !severity[0])) {
            ms_proto_quote(v, vn < 10 ? vn : 10, severity, sizeof severity);
        } else if (type == 'M') {
            ms_proto_quote(v, vn, msg, sizeof msg);
        }
        i += vn + 1;
    }
    if (!code[0] && !msg[0])
        return down_garbage(p, "postgres");
    if (strcmp(code, "57P03") == 0) {
        snprintf(p->error, sizeof p->error, "not ready: %s (57P03)", msg[0] ? msg : "cannot connect now");
        return MS_PROTO_DOWN;
    }
    /* refusing this client (no pg_hba.conf entry, too many clients, ...) is
     * still a server that accepts connections, as pg_isready counts it */
    snprintf(p->detail, sizeof p->detail, "postgres answered %s%s%s: %s", severity[0] ? severity : "ERROR",
             code[0] ? " " : "", code, msg);
    return MS_PROTO_UP;
}

/* The answer to a startup message: messages of a type byte and an int32
 * length (itself included). NegotiateProtocolVersion ('v') may come first. */
static int postgres_ready_judge(ms_proto *p, bool eof)
{
    size_t off = 0;
    for (;;) {
        size_t have = p->len - off;
        bool full = p->len == sizeof p->buf;
        if (have < 5)
            return eof || full ? down_garbage(p, "postgres") : MS_PROTO_MORE;
        unsigned char t = p->buf[off];
        uint32_t mlen = be32(p->buf + off + 1);
        if (mlen < 4 || mlen > 1u << 20)
            return down_garbage(p, "postgres");
        bool complete = have >= 1 + (size_t)mlen;
        if (t == 'R') {
            if (mlen < 8)
                return down_garbage(p, "postgres");
            if (have < 9)
                return eof || full ? down_garbage(p, "postgres") : MS_PROTO_MORE;
            uint32_t code = be32(p->buf + off + 5);
            if (code == 0)
                snprintf(p->detail, sizeof p->detail, "postgres accepted the startup (trust)");
            else
                snprintf(p->detail, sizeof p->detail, "postgres asked for authentication (%s)",
                         pg_auth_name(code));
            return MS_PROTO_UP;
        }
        if (t == 'E') {
            if (!complete && !eof && !full)
                return MS_PROTO_MORE;
            size_t body = complete ? (size_t)mlen - 4 : have - 5;
            return postgres_error(p, p->buf + off + 5, body);
        }
        if (t == 'v') {
            if (!complete)
                return eof || full ? down_garbage(p, "postgres") : MS_PROTO_MORE;
            off += 1 + (size_t)mlen;
            continue;
        }
        return down_garbage(p, "postgres");
    }
}

static int postgres_judge(ms_proto *p)
{
    if (p->mode == MS_PROTO_READY)
        return postgres_ready_judge(p, false);
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
        if (p->mode == MS_PROTO_READY) {
            snprintf(p->error, sizeof p->error, "not ready: mysql answered error %u: %s", code, q);
            return MS_PROTO_DOWN;
        }
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
static int http_status_verdict(ms_proto *p)
{
    int code = p->http_status;
    if (code >= 200 && code < 400) {
        snprintf(p->detail, sizeof p->detail, "HTTP %d", code);
        return MS_PROTO_UP;
    }
    snprintf(p->error, sizeof p->error, "HTTP %d", code);
    return MS_PROTO_DOWN;
}

static int http_feed(ms_proto *p, const char *data, size_t n)
{
    if (p->head_bytes + n > MS_PROTO_HTTP_HEAD)
        n = MS_PROTO_HTTP_HEAD - p->head_bytes;
    size_t used = http_parser_execute(&p->parser, &http_settings, data, n);
    p->head_bytes += used;
    /* LIVE: the head is enough; READY: the whole message, or as much of
     * its body as the bound allows */
    if (p->head_done && (p->mode == MS_PROTO_LIVE || p->message_done || p->head_bytes >= MS_PROTO_HTTP_HEAD))
        return http_status_verdict(p);
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
    if (p->kind == MS_PROTO_POSTGRES && p->mode == MS_PROTO_READY && p->len > 0)
        return postgres_ready_judge(p, true);
    if (p->kind == MS_PROTO_HTTP && p->head_done) {
        /* READY mode, a body that ends with the connection (or a truncated one: the status is enough) */
        http_parser_execute(&p->parser, &http_settings, NULL, 0);
        return http_status_verdict(p);
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
