/* hbay_params.c: a request's HAIL for an HTTP bay (see hbay_params.h). */
#include "http/hbay_params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/framing.h"

/* The params being built: names and values borrowed from the request, or
 * written into the arena (prefixed names, joined values, numbers), which
 * is sized for the worst case up front. */
typedef struct pbuild {
    ms_dock_param *p;
    size_t n, cap;
    char *arena;
    size_t used, arena_cap;
    bool failed;
} pbuild;

static bool name_eq(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    return alen == n && strncasecmp(a, b, n) == 0;
}

static char *arena_take(pbuild *b, size_t n)
{
    if (b->failed || n > b->arena_cap - b->used) {
        b->failed = true;
        return NULL;
    }
    char *p = b->arena + b->used;
    b->used += n;
    return p;
}

static void param(pbuild *b, const char *name, size_t nl, const char *val, size_t vl)
{
    if (b->failed || b->n == b->cap) {
        b->failed = true;
        return;
    }
    b->p[b->n++] = (ms_dock_param){ name, nl, val, vl };
}

static void param_s(pbuild *b, const char *name, const char *val)
{
    param(b, name, strlen(name), val, strlen(val));
}

static void param_u64(pbuild *b, const char *name, uint64_t v)
{
    char *s = arena_take(b, 24);
    if (s)
        param(b, name, strlen(name), s, (size_t)snprintf(s, 24, "%llu", (unsigned long long)v));
}

/* "HTTP_" + the name upper-cased, '-' as '_', into the arena. */
static const char *cgi_name(pbuild *b, const char *n, size_t nl, size_t *out_len)
{
    char *pn = arena_take(b, nl + 5);
    if (!pn)
        return NULL;
    memcpy(pn, "HTTP_", 5);
    for (size_t k = 0; k < nl; k++) {
        char ch = n[k];
        pn[5 + k] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : ch;
    }
    *out_len = nl + 5;
    return pn;
}

static bool hop_by_hop(const ms_hbay_req *r, const char *n, size_t nl)
{
    if (name_eq(n, nl, "keep-alive") || name_eq(n, nl, "proxy-connection") || name_eq(n, nl, "te") ||
        name_eq(n, nl, "trailer") || name_eq(n, nl, "transfer-encoding") || name_eq(n, nl, "http2-settings") ||
        name_eq(n, nl, "proxy-authorization"))
        return true;
    if (name_eq(n, nl, "connection") || name_eq(n, nl, "upgrade"))
        return !r->upgrade; /* an upgrade's: the bay answers it */
    if (name_eq(n, nl, "host") || name_eq(n, nl, "content-length"))
        return false;       /* never removed by a Connection header */
    for (size_t i = 0; i < r->nheaders; i++)
        if (name_eq(r->headers[i].name, r->headers[i].name_len, "connection") &&
            ms_token_listed(r->headers[i].value, r->headers[i].value_len, n, nl))
            return true;
    return false;
}

/* Left out of HTTP_*: what Mothership sets or frames itself. */
static bool left_out(const ms_hbay_req *r, const char *n, size_t nl)
{
    /* Proxy: HTTP_PROXY is the proxy setting of many HTTP client libraries
     * in a CGI-style environment ("httpoxy") */
    return name_eq(n, nl, "content-length") || name_eq(n, nl, "expect") || name_eq(n, nl, "proxy") ||
           name_eq(n, nl, "x-forwarded-for") ||
           name_eq(n, nl, "x-forwarded-proto") || name_eq(n, nl, "x-forwarded-host") ||
           name_eq(n, nl, "x-request-id") || name_eq(n, nl, "x-request-start") || memchr(n, '_', nl) != NULL ||
           hop_by_hop(r, n, nl) || (r->keep && !r->keep(r->keep_arg, n, nl));
}

static bool same_name(const ms_field *a, const ms_field *b)
{
    return a->name_len == b->name_len && strncasecmp(a->name, b->name, a->name_len) == 0;
}

/* Every header name once, its values joined. */
static void header_params(pbuild *b, const ms_hbay_req *r)
{
    for (size_t i = 0; i < r->nheaders && !b->failed; i++) {
        const ms_field *h = &r->headers[i];
        if (left_out(r, h->name, h->name_len))
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = same_name(&r->headers[j], h);
        if (seen)
            continue;
        const char *pn;
        size_t pl;
        if (name_eq(h->name, h->name_len, "content-type")) {
            pn = "CONTENT_TYPE";
            pl = 12;
        } else if (!(pn = cgi_name(b, h->name, h->name_len, &pl))) {
            return;
        }
        const char *sep = name_eq(h->name, h->name_len, "cookie") ? "; " : ", ";
        size_t vl = h->value_len;
        bool more = false;
        for (size_t j = i + 1; j < r->nheaders; j++)
            if (same_name(&r->headers[j], h)) {
                vl += 2 + r->headers[j].value_len;
                more = true;
            }
        if (!more) {
            param(b, pn, pl, h->value, h->value_len);
            continue;
        }
        char *v = arena_take(b, vl);
        if (!v)
            return;
        memcpy(v, h->value, h->value_len);
        size_t o = h->value_len;
        for (size_t j = i + 1; j < r->nheaders; j++)
            if (same_name(&r->headers[j], h)) {
                memcpy(v + o, sep, 2);
                memcpy(v + o + 2, r->headers[j].value, r->headers[j].value_len);
                o += 2 + r->headers[j].value_len;
            }
        param(b, pn, pl, v, o);
    }
    for (size_t i = 0; i < r->nadded && !b->failed; i++) {
        size_t pl;
        const char *pn = cgi_name(b, r->added[i].name, r->added[i].name_len, &pl);
        if (pn)
            param(b, pn, pl, r->added[i].value, r->added[i].value_len);
    }
}

static const ms_field *find(const ms_hbay_req *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (name_eq(r->headers[i].name, r->headers[i].name_len, name))
            return &r->headers[i];
    return NULL;
}

/* SERVER_NAME / SERVER_PORT from Host ("h", "h:p", "[v6]:p"), else the bind. */
static void server_params(pbuild *b, const ms_hbay_req *r)
{
    const ms_field *host = find(r, "host");
    if (!host || host->value_len == 0) {
        param_s(b, "SERVER_NAME", r->bind_host ? r->bind_host : "localhost");
        param_s(b, "SERVER_PORT", r->bind_port ? r->bind_port : r->secure ? "443" : "80");
        return;
    }
    const char *h = host->value;
    size_t hl = host->value_len;
    const char *colon = NULL;
    if (h[0] == '[') {
        const char *end = memchr(h, ']', hl);
        if (end && (size_t)(end - h) + 1 < hl && end[1] == ':')
            colon = end + 1;
    } else {
        colon = memchr(h, ':', hl);
    }
    size_t nl = colon ? (size_t)(colon - h) : hl;
    param(b, "SERVER_NAME", 11, h, nl);
    if (colon)
        param(b, "SERVER_PORT", 11, colon + 1, hl - nl - 1);
    else
        param_s(b, "SERVER_PORT", r->secure ? "443" : "80");
}

int ms_hbay_encode_hail(const ms_hbay_req *r, ms_dock_buf *out)
{
    size_t peer_len = strlen(r->peer);
    size_t arena = 256 + r->reqid_len + peer_len;
    for (size_t i = 0; i < r->nheaders; i++)
        arena += r->headers[i].name_len + 5 + 2 * (r->headers[i].value_len + 2);
    for (size_t i = 0; i < r->nadded; i++)
        arena += r->added[i].name_len + 5;
    size_t cap = r->nheaders + r->nadded + 24;
    pbuild b = { .p = calloc(cap, sizeof *b.p), .cap = cap, .arena = malloc(arena), .arena_cap = arena };
    if (!b.p || !b.arena) {
        free(b.p);
        free(b.arena);
        return MS_DOCK_E_NOMEM;
    }
    param_s(&b, "REQUEST_METHOD", r->method);
    param(&b, "SCRIPT_NAME", 11, r->script ? r->script : "", r->script_len);
    param(&b, "PATH_INFO", 9, r->path, r->path_len);
    param(&b, "QUERY_STRING", 12, r->query ? r->query : "", r->query_len);
    server_params(&b, r);
    param_s(&b, "SERVER_PROTOCOL", r->protocol);
    param_s(&b, "SERVER_SOFTWARE", r->software);
    param_s(&b, "REMOTE_ADDR", r->peer);
    param_u64(&b, "REMOTE_PORT", r->peer_port);
    if (r->secure)
        param_s(&b, "HTTPS", "on");
    if (r->has_length)
        param_u64(&b, "CONTENT_LENGTH", r->content_length);
    header_params(&b, r);
    /* what the proxy tells ships */
    const ms_field *xff = find(r, "x-forwarded-for");
    size_t xl = (xff ? xff->value_len + 2 : 0) + peer_len;
    char *xv = arena_take(&b, xl);
    if (xv) {
        size_t o = 0;
        if (xff) {
            memcpy(xv, xff->value, xff->value_len);
            memcpy(xv + xff->value_len, ", ", 2);
            o = xff->value_len + 2;
        }
        memcpy(xv + o, r->peer, peer_len);
        param(&b, "HTTP_X_FORWARDED_FOR", 20, xv, xl);
    }
    param_s(&b, "HTTP_X_FORWARDED_PROTO", r->secure ? "https" : "http");
    const ms_field *host = find(r, "host");
    if (host)
        param(&b, "HTTP_X_FORWARDED_HOST", 21, host->value, host->value_len);
    param(&b, "HTTP_X_REQUEST_ID", 17, r->reqid, r->reqid_len);
    int rc = b.failed ? MS_DOCK_E_NOMEM : ms_dock_encode_hail(out, 0, r->body_len, b.p, b.n);
    free(b.p);
    free(b.arena);
    return rc;
}
