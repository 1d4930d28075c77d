/* fuzz_proxy_diff.c: a differential target for the proxy path. Arbitrary
 * client bytes go through a real data-plane worker (inline, no threads) to
 * two recording ships, Unix sockets this harness listens on, reads and
 * answers itself ("app" routed on /(app|x)(/.*)?, "api" on /api/.*). On
 * every input it checks that what reached a ship is exactly what routing
 * approved:
 *   - the bytes parse (http-parser, no lenient flags) as complete requests,
 *     none left half-sent when the client's connection is over;
 *   - each is framed once: at most one Content-Length (digits only), a
 *     Transfer-Encoding only as the single value "chunked", never both, no
 *     Connection header naming Content-Length, Transfer-Encoding or Host,
 *     at most one Host, no Upgrade other than websocket;
 *   - its target has no control byte, space or '#', and its path is in
 *     normal form: starts with '/', no empty, "." or ".." segment, no ';' or
 *     '\', no %XX of an unreserved character, of '/', '\' or NUL, no
 *     lower-case hex, no stray '%';
 *   - the path matches the pattern of the route of the ship it reached;
 *   - every request a ship got is answered to the client with the ship's
 *     answer: a ship never sees a request whose client got an answer from
 *     Mothership itself (a 4xx).
 * A connection that does not close once the client's input is over counts
 * as a violation too (the loop is run without waiting for timers). A
 * violation aborts with its reason (FUZZ_DIFF_REPORT=1 in the environment:
 * print it and go on, to list every kind a corpus shows). The seeds are the
 * hostile suite's inputs: tests/integration/hostile_cases.py corpus DIR. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http/dataplane.h"
#include "inline_client.h"
#include "router/table.h"

#define SHIP_APP 0
#define SHIP_API 1
#define MAX_UPCONNS 32
#define CLIENT_KEEP (256 * 1024)

static const char MARKER[] = "\r\nX-Fuzz-Ship: 7f3a\r\n";
static const char ANSWER[] = "HTTP/1.1 200 OK\r\nX-Fuzz-Ship: 7f3a\r\nContent-Length: 0\r\n\r\n";
static const char *const SHIP_NAME[] = { "app", "api" };

typedef struct upconn {
    int fd; /* -1: free slot */
    int ship;
    http_parser p;
    bool in_msg;
    char url[1024];
    size_t url_len;
    bool url_cut;
    char field[64];
    size_t field_len;
    char value[256];
    size_t value_len;
    bool in_value;
    int ncl, nte, nhost;
} upconn;

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;
static int listen_fd[2];
static upconn ups[MAX_UPCONNS];
static http_parser_settings psettings;
static bool report_only;
static size_t requests_seen; /* complete requests the ships got during this input */
static const uint8_t *cur_data;
static size_t cur_size;

static void violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "proxy_diff violation: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  input (%zu bytes): \"", cur_size);
    for (size_t i = 0; i < cur_size && i < 400; i++) {
        unsigned char ch = cur_data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            fputc(ch, stderr);
        else
            fprintf(stderr, "\\x%02x", ch);
    }
    fprintf(stderr, "\"\n");
    va_end(ap);
    if (!report_only)
        abort();
}

/* ------------------------------------------------------------ the checks */
static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool unreserved(int ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Why this target is not one a ship may get, or NULL. */
static const char *target_fault(const char *url, size_t len, int ship)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch < 0x21 || ch == 0x7f)
            return "a control byte or space in the target";
        if (ch == '#')
            return "'#' in the target";
    }
    size_t plen = 0;
    while (plen < len && url[plen] != '?')
        plen++;
    if (plen == 0 || url[0] != '/')
        return "a target that is not a path";
    size_t seg = 1; /* start of the current segment */
    for (size_t i = 1; i <= plen; i++) {
        if (i == plen || url[i] == '/') {
            size_t sl = i - seg;
            if (sl == 0 && i < plen)
                return "an empty segment (//)";
            if ((sl == 1 && url[seg] == '.') || (sl == 2 && url[seg] == '.' && url[seg + 1] == '.'))
                return "a dot segment";
            seg = i + 1;
            continue;
        }
        char ch = url[i];
        if (ch == ';')
            return "';' in the path";
        if (ch == '\\')
            return "'\\' in the path";
        if (ch == '%') {
            if (i + 2 >= plen)
                return "a '%' not followed by two hex digits";
            int hi = hexval((unsigned char)url[i + 1]), lo = hexval((unsigned char)url[i + 2]);
            if (hi < 0 || lo < 0)
                return "a '%' not followed by two hex digits";
            int dec = hi * 16 + lo;
            if (unreserved(dec))
                return "a percent-encoded unreserved character";
            if (dec == '/' || dec == '\\' || dec == 0)
                return "%2F, %5C or %00 in the path";
            if (islower((unsigned char)url[i + 1]) || islower((unsigned char)url[i + 2]))
                return "lower-case hex in a percent-encoding";
        }
    }
    bool routed;
    if (ship == SHIP_API)
        routed = plen >= 5 && memcmp(url, "/api/", 5) == 0;
    else
        routed = (plen == 4 && memcmp(url, "/app", 4) == 0) || (plen >= 5 && memcmp(url, "/app/", 5) == 0) ||
                 (plen == 2 && memcmp(url, "/x", 2) == 0) || (plen >= 3 && memcmp(url, "/x/", 3) == 0);
    return routed ? NULL : "a path its route's pattern does not match";
}

static bool token_eq(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static void header_done(upconn *u)
{
    const char *n = u->field, *v = u->value;
    size_t nl = u->field_len, vl = u->value_len;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--; /* trailing OWS is not part of a field value */
    if (token_eq(n, nl, "content-length")) {
        u->ncl++;
        bool digits = vl > 0;
        for (size_t i = 0; i < vl; i++)
            digits = digits && v[i] >= '0' && v[i] <= '9';
        if (!digits)
            violation("ship %s got Content-Length \"%.*s\"", SHIP_NAME[u->ship], (int)vl, v);
    } else if (token_eq(n, nl, "transfer-encoding")) {
        u->nte++;
        if (!token_eq(v, vl, "chunked"))
            violation("ship %s got Transfer-Encoding \"%.*s\"", SHIP_NAME[u->ship], (int)vl, v);
    } else if (token_eq(n, nl, "upgrade")) {
        bool ws = false;
        for (size_t i = 0; i + 9 <= vl && !ws; i++)
            ws = strncasecmp(v + i, "websocket", 9) == 0;
        if (!ws)
            violation("ship %s got Upgrade \"%.*s\" (only websocket is honoured)", SHIP_NAME[u->ship], (int)vl, v);
    } else if (token_eq(n, nl, "host")) {
        u->nhost++;
    } else if (token_eq(n, nl, "connection")) {
        size_t i = 0;
        while (i < vl) {
            while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                i++;
            size_t s = i;
            while (i < vl && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
                i++;
            if (token_eq(v + s, i - s, "content-length") || token_eq(v + s, i - s, "transfer-encoding") ||
                token_eq(v + s, i - s, "host"))
                violation("ship %s got Connection naming %.*s", SHIP_NAME[u->ship], (int)(i - s), v + s);
        }
    }
    u->field_len = u->value_len = 0;
    u->in_value = false;
}

/* ------------------------------------------------------------ the ships' parser */
static int p_begin(http_parser *p)
{
    upconn *u = p->data;
    u->in_msg = true;
    u->url_len = u->field_len = u->value_len = 0;
    u->url_cut = u->in_value = false;
    u->ncl = u->nte = u->nhost = 0;
    return 0;
}

static int p_url(http_parser *p, const char *at, size_t len)
{
    upconn *u = p->data;
    if (u->url_len + len > sizeof u->url) {
        u->url_cut = true;
        len = sizeof u->url - u->url_len;
    }
    memcpy(u->url + u->url_len, at, len);
    u->url_len += len;
    return 0;
}

static int p_field(http_parser *p, const char *at, size_t len)
{
    upconn *u = p->data;
    if (u->in_value)
        header_done(u);
    if (u->field_len + len > sizeof u->field)
        len = sizeof u->field - u->field_len; /* longer than any name checked */
    memcpy(u->field + u->field_len, at, len);
    u->field_len += len;
    return 0;
}

static int p_value(http_parser *p, const char *at, size_t len)
{
    upconn *u = p->data;
    u->in_value = true;
    if (u->value_len + len > sizeof u->value)
        len = sizeof u->value - u->value_len;
    memcpy(u->value + u->value_len, at, len);
    u->value_len += len;
    return 0;
}

static int p_headers_complete(http_parser *p)
{
    upconn *u = p->data;
    if (u->in_value)
        header_done(u);
    if (u->ncl > 1 || u->nte > 1 || (u->ncl && u->nte))
        violation("ship %s got %d Content-Length and %d Transfer-Encoding headers", SHIP_NAME[u->ship], u->ncl,
                  u->nte);
    if (u->nhost > 1)
        violation("ship %s got %d Host headers", SHIP_NAME[u->ship], u->nhost);
    const char *why = u->url_cut ? "a target longer than the limit" : target_fault(u->url, u->url_len, u->ship);
    if (why)
        violation("ship %s got %s: \"%.*s\"", SHIP_NAME[u->ship], why, (int)u->url_len, u->url);
    return 0;
}

static int p_complete(http_parser *p)
{
    upconn *u = p->data;
    u->in_msg = false;
    requests_seen++;
    ssize_t w = write(u->fd, ANSWER, sizeof ANSWER - 1);
    (void)w; /* a ship that cannot answer shows up as a missing answer */
    return 0;
}

/* ------------------------------------------------------------ the ships' sockets */
static void upconn_close(upconn *u, bool eof)
{
    if (eof && u->in_msg)
        violation("ship %s got a request cut short (%.*s)", SHIP_NAME[u->ship], (int)u->url_len, u->url);
    close(u->fd);
    u->fd = -1;
}

static void upconn_feed(upconn *u, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && u->fd >= 0) {
        size_t n = http_parser_execute(&u->p, &psettings, data + off, len - off);
        if (HTTP_PARSER_ERRNO(&u->p) != HPE_OK) {
            violation("ship %s got bytes that do not parse: %s at \"%.*s\"", SHIP_NAME[u->ship],
                      http_errno_name(HTTP_PARSER_ERRNO(&u->p)), (int)(len - off > 80 ? 80 : len - off), data + off);
            u->in_msg = false;
            upconn_close(u, false);
            return;
        }
        off += n;
        if (u->p.upgrade) {
            /* the ship answered 200, not 101: the connection stays HTTP */
            http_parser_init(&u->p, HTTP_REQUEST);
            u->p.data = u;
        } else if (n == 0) {
            break;
        }
    }
}

static void ships_turn(void *arg)
{
    (void)arg;
    for (int s = 0; s < 2; s++) {
        for (;;) {
            int fd = accept4(listen_fd[s], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            upconn *u = NULL;
            for (int i = 0; i < MAX_UPCONNS && !u; i++)
                if (ups[i].fd < 0)
                    u = &ups[i];
            if (!u) {
                close(fd);
                continue;
            }
            memset(u, 0, sizeof *u);
            u->fd = fd;
            u->ship = s;
            http_parser_init(&u->p, HTTP_REQUEST);
            u->p.data = u;
        }
    }
    char buf[16384];
    for (int i = 0; i < MAX_UPCONNS; i++) {
        upconn *u = &ups[i];
        while (u->fd >= 0) {
            ssize_t r = read(u->fd, buf, sizeof buf);
            if (r > 0) {
                upconn_feed(u, buf, (size_t)r);
                continue;
            }
            if (r == 0 || (errno != EAGAIN && errno != EINTR))
                upconn_close(u, true);
            break;
        }
    }
}

/* ------------------------------------------------------------ the client */
static size_t count_markers(const char *buf, size_t len)
{
    size_t n = 0, ml = sizeof MARKER - 1;
    for (size_t i = 0; i + ml <= len; i++)
        if (buf[i] == '\r' && memcmp(buf + i, MARKER, ml) == 0)
            n++;
    return n;
}

/* The input through a socketpair handed to the worker, the write side shut
 * once it is all written, the loop (and the ships) run until the worker
 * closes the connection. Returns how many answers came from a ship. */
static size_t run_client(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (ms_dataplane_inline_adopt(dp, sv[0], 0) != 0)
        abort();
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    static char got[CLIENT_KEEP];
    size_t got_len = 0, answers = 0, sent = 0;
    bool shut = false, closed = false;
    for (int round = 0; round < 20000 && !closed; round++) {
        if (sent < size) {
            ssize_t w = write(sv[1], data + sent, size - sent);
            if (w > 0)
                sent += (size_t)w;
        } else if (!shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        uv_run(loop, UV_RUN_NOWAIT);
        ships_turn(NULL);
        for (;;) {
            if (got_len + 4096 > sizeof got) {
                /* keep a marker's length of overlap, count the rest */
                size_t keep = sizeof MARKER;
                answers += count_markers(got, got_len - keep + 1);
                memmove(got, got + got_len - keep, keep);
                got_len = keep;
            }
            ssize_t r = read(sv[1], got + got_len, sizeof got - got_len);
            if (r > 0) {
                got_len += (size_t)r;
                continue;
            }
            if (r == 0)
                closed = true;
            break;
        }
    }
    if (!closed)
        violation("the connection did not close after the client's EOF");
    answers += count_markers(got, got_len);
    close(sv[1]);
    for (int i = 0; i < 4; i++) { /* what the worker still had queued for a ship */
        uv_run(loop, UV_RUN_NOWAIT);
        ships_turn(NULL);
    }
    return answers;
}

/* ------------------------------------------------------------ libFuzzer */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    report_only = getenv("FUZZ_DIFF_REPORT") != NULL;
    signal(SIGPIPE, SIG_IGN); /* a closed socket is an error result, not a death */
    static char dir[] = "/tmp/ms-fuzz-diff-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    for (int i = 0; i < MAX_UPCONNS; i++)
        ups[i].fd = -1;
    char path[600];
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s.sock", dir, SHIP_NAME[s]);
        listen_fd[s] = fuzz_listen_unix(path);
    }
    psettings = (http_parser_settings){ .on_message_begin = p_begin,
                                        .on_url = p_url,
                                        .on_header_field = p_field,
                                        .on_header_value = p_value,
                                        .on_headers_complete = p_headers_complete,
                                        .on_message_complete = p_complete };
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership.http]\nmax_header_size = 2048\nmax_uri_length = 512\nmax_body_size = 4096\n"
             "upstream_timeout = \"2s\"\n"
             "[mothership.bind]\nhttp = \"127.0.0.1:1\"\n"
             "[[fleet.web]]\nname = \"api\"\ncommand = \"true\"\nbind = \"unix://%s/api.sock\"\n"
             "routes = [\"http:/api/.*\"]\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/app.sock\"\n"
             "routes = [\"http:/(app|x)(/.*)?\"]\n",
             dir, dir);
    dp = fuzz_inline_start(text, dir, NULL, &manifest, &routes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cur_data = data;
    cur_size = size;
    requests_seen = 0;
    size_t answers = run_client(data, size);
    for (int i = 0; i < MAX_UPCONNS; i++) {
        if (ups[i].fd >= 0 && ups[i].in_msg) {
            violation("ship %s holds a request cut short (%.*s)", SHIP_NAME[ups[i].ship], (int)ups[i].url_len,
                      ups[i].url);
            ups[i].in_msg = false;
            upconn_close(&ups[i], false); /* reported once: the next input starts clean */
        }
    }
    if (requests_seen > answers)
        violation("the ships got %zu requests but the client got %zu answers from a ship: a request Mothership "
                  "answered itself reached a ship",
                  requests_seen, answers);
    return 0;
}
