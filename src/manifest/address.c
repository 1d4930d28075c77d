/* address.c: parsing of bind addresses ("tcp://h:p", "h:p", "p",
 * "unix:///path") and uplink URLs ("scheme://[user[:pass]@]host[:port][/path]"),
 * and the collision rule for listeners. These see text from the manifest and
 * the environment, so they are strict, bounded and fuzzed. */
#include "manifest/manifest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

#define MAX_HOST 253
#define MAX_UNIX_PATH 107 /* sizeof(sockaddr_un.sun_path) - 1 */

static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool valid_host(const char *h, size_t n, bool bracketed)
{
    if (n == 0 || n > MAX_HOST)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (bracketed) {
            if (!(isxdigit(c) || c == ':' || c == '.'))
                return false;
        } else if (!(isalnum(c) || c == '-' || c == '.' || c == '_')) {
            return false;
        }
    }
    return true;
}

/* host[:port] or [v6][:port]; port_required says whether ":port" must be there. */
static bool parse_hostport(const char *s, size_t n, char **host, uint16_t *port,
                           bool port_required, char *why, size_t why_len)
{
    const char *hs = s, *colon = NULL;
    size_t hn;
    bool bracketed = false;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) {
            snprintf(why, why_len, "missing ']' after IPv6 address");
            return false;
        }
        hs = s + 1;
        hn = (size_t)(close - hs);
        bracketed = true;
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':') {
                snprintf(why, why_len, "unexpected text after ']'");
                return false;
            }
            colon = close + 1;
        }
    } else {
        colon = memchr(s, ':', n);
        hn = colon ? (size_t)(colon - s) : n;
        if (colon && memchr(colon + 1, ':', n - hn - 1)) {
            snprintf(why, why_len, "IPv6 addresses must be written in brackets, like [::1]:8080");
            return false;
        }
    }
    if (!valid_host(hs, hn, bracketed)) {
        snprintf(why, why_len, hn == 0 ? "missing host" : "invalid host name");
        return false;
    }
    if (colon) {
        size_t pn = n - (size_t)(colon + 1 - s);
        if (!parse_port(colon + 1, pn, port)) {
            snprintf(why, why_len, "port must be a number from 1 to 65535");
            return false;
        }
    } else if (port_required) {
        snprintf(why, why_len, "missing port");
        return false;
    }
    *host = ms_strndup(hs, hn);
    if (!*host) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    return true;
}

bool ms_addr_parse(const char *text, ms_addr *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(text);
    if (ms_starts_with(text, "unix://")) {
        const char *p = text + 7;
        if (*p == '\0') {
            snprintf(why, why_len, "missing socket path after unix://");
            return false;
        }
        if (strlen(p) > MAX_UNIX_PATH) {
            snprintf(why, why_len, "unix socket path is longer than %d bytes", MAX_UNIX_PATH);
            return false;
        }
        out->kind = MS_ADDR_UNIX;
        out->path = ms_strdup(p);
        out->text = ms_asprintf("unix://%s", p);
    } else {
        const char *p = text;
        if (ms_starts_with(text, "tcp://")) {
            p += 6;
            n -= 6;
        } else if (strstr(text, "://")) {
            snprintf(why, why_len, "unknown scheme (use tcp://host:port, host:port, port or unix:///path)");
            return false;
        }
        out->kind = MS_ADDR_TCP;
        bool all_digits = n > 0;
        for (size_t i = 0; i < n; i++)
            if (!isdigit((unsigned char)p[i]))
                all_digits = false;
        if (all_digits) {
            if (!parse_port(p, n, &out->port)) {
                snprintf(why, why_len, "port must be a number from 1 to 65535");
                return false;
            }
            out->host = ms_strdup("127.0.0.1");
        } else if (!parse_hostport(p, n, &out->host, &out->port, true, why, why_len)) {
            return false;
        }
        if (out->host && strchr(out->host, ':'))
            out->text = ms_asprintf("tcp://[%s]:%u", out->host, out->port);
        else if (out->host)
            out->text = ms_asprintf("tcp://%s:%u", out->host, out->port);
    }
    if (!out->text || (out->kind == MS_ADDR_TCP ? !out->host : !out->path)) {
        ms_addr_free(out);
        snprintf(why, why_len, "out of memory");
        return false;
    }
    return true;
}

void ms_addr_free(ms_addr *a)
{
    free(a->host);
    free(a->path);
    free(a->text);
    memset(a, 0, sizeof *a);
}

static bool is_wildcard(const char *h)
{
    return strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "*") == 0;
}

static bool is_loopback_name(const char *h)
{
    return strcmp(h, "localhost") == 0 || strcmp(h, "127.0.0.1") == 0;
}

bool ms_addr_collide(const ms_addr *a, const ms_addr *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == MS_ADDR_UNIX)
        return strcmp(a->path, b->path) == 0;
    if (a->port != b->port)
        return false;
    if (is_wildcard(a->host) || is_wildcard(b->host))
        return true;
    if (is_loopback_name(a->host) && is_loopback_name(b->host))
        return true;
    return strcmp(a->host, b->host) == 0;
}

/* ---------------------------------------------------------------- uplinks */
static const struct {
    const char *scheme;
    const char *canonical;
    uint16_t port;       /* 0: must be given */
} schemes[] = {
    { "postgres", "postgres", 5432 }, { "postgresql", "postgres", 5432 },
    { "mysql", "mysql", 3306 },       { "redis", "redis", 6379 },
    { "rediss", "redis", 6379 },      { "memgraph", "memgraph", 7687 },
    { "neo4j", "neo4j", 7687 },       { "bolt", "neo4j", 7687 },
    { "http", "http", 80 },           { "https", "https", 443 },
    { "tcp", "tcp", 0 },
};

bool ms_uplink_url_parse(const char *url, ms_uplink *out, char *why, size_t why_len)
{
    const char *sep = strstr(url, "://");
    if (!sep || sep == url) {
        snprintf(why, why_len, "not a URL (expected scheme://host[:port])");
        return false;
    }
    size_t sn = (size_t)(sep - url);
    size_t which = sizeof schemes / sizeof schemes[0];
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strlen(schemes[i].scheme) == sn && strncasecmp(url, schemes[i].scheme, sn) == 0)
            which = i;
    if (which == sizeof schemes / sizeof schemes[0]) {
        snprintf(why, why_len, "unsupported scheme \"%.*s\" (supported: postgres, postgresql, mysql, "
                 "rediss, redis, memgraph, neo4j, bolt, http, https, tcp)", (int)(sn > 20 ? 20 : sn), url);
        return false;
    }
    const char *auth = sep + 3;
    size_t an = strcspn(auth, "/?#");
    /* drop userinfo: everything up to the last '@' of the authority */
    const char *at = NULL;
    for (size_t i = 0; i < an; i++)
        if (auth[i] == '@')
            at = auth + i;
    const char *hp = at ? at + 1 : auth;
    size_t hn = an - (size_t)(hp - auth);
    uint16_t port = schemes[which].port;
    char *host = NULL;
    if (!parse_hostport(hp, hn, &host, &port, schemes[which].port == 0, why, why_len))
        return false;
    const char *rest = auth + an;
    char *path = ms_strdup(*rest == '/' || *rest == '?' ? rest : "/");
    char *scheme = ms_strdup(schemes[which].canonical);
    if (!path || !scheme) {
        free(host);
        free(path);
        free(scheme);
        snprintf(why, why_len, "out of memory");
        return false;
    }
    if (*path == '?') { /* "http://h?x" -> "/?x" */
        char *p2 = ms_asprintf("/%s", path);
        free(path);
        path = p2;
        if (!path) {
            free(host);
            free(scheme);
            snprintf(why, why_len, "out of memory");
            return false;
        }
    }
    char *hash = strchr(path, '#');
    if (hash)
        *hash = '\0';
    free(out->host);
    free(out->scheme);
    free(out->path);
    out->host = host;
    out->port = port;
    out->scheme = scheme;
    out->path = path;
    return true;
}
