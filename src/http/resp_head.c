/* resp_head.c: the response head written to a client (see resp_head.h).
 * The size is bounded first (ms_resp_head_bound counts every piece that
 * ms_resp_head_write may append), and every append is checked against the
 * room given: nothing is cut to fit, a head that does not fit is refused. */
#include "http/resp_head.h"

#include <string.h>
#include <strings.h>

#include "http/framing.h"

static bool name_is(const char *a, size_t alen, const char *b)
{
    return ms_name_is(a, alen, b);
}

/* The tokens of the head's Connection fields, gathered once per head: every
 * field is looked up in them. Past CONN_TOKENS the values themselves are
 * searched again for each field (ms_token_listed). */
#define CONN_TOKENS 8
typedef struct conn_tokens {
    const char *p[CONN_TOKENS];
    size_t n[CONN_TOKENS];
    size_t count;
    bool many;
} conn_tokens;

/* Tokens as ms_token_listed reads them: runs of bytes other than OWS and
 * ",". */
static void gather_conn_tokens(const ms_resp_head *h, conn_tokens *ct)
{
    ct->count = 0;
    ct->many = false;
    for (size_t i = 0; i < h->nfields && !ct->many; i++) {
        if (!name_is(h->fields[i].name, h->fields[i].name_len, "connection"))
            continue;
        const char *v = h->fields[i].value, *end = v + h->fields[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *t = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            if (v == t)
                continue;
            if (ct->count == CONN_TOKENS) {
                ct->many = true;
                break;
            }
            ct->p[ct->count] = t;
            ct->n[ct->count++] = (size_t)(v - t);
        }
    }
}

/* Is this field named in one of the head's Connection headers? The framing
 * headers and Host never count as named: obeying that would let a ship
 * remove what the client needs to read the response. */
static bool named_in_connection(const ms_resp_head *h, const conn_tokens *ct, const char *name, size_t nlen)
{
    if (ct->count == 0 && !ct->many)
        return false;
    if (name_is(name, nlen, "content-length") || name_is(name, nlen, "transfer-encoding") ||
        name_is(name, nlen, "host"))
        return false;
    if (!ct->many) {
        for (size_t i = 0; i < ct->count; i++)
            if (ct->n[i] == nlen && strncasecmp(ct->p[i], name, nlen) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < h->nfields; i++)
        if (name_is(h->fields[i].name, h->fields[i].name_len, "connection") &&
            ms_token_listed(h->fields[i].value, h->fields[i].value_len, name, nlen))
            return true;
    return false;
}

/* A ship's header line that does not go to the client as it is. */
static bool dropped(const ms_resp_head *h, const conn_tokens *ct, const ms_field *f)
{
    const char *n = f->name;
    size_t nl = f->name_len;
    if (name_is(n, nl, "keep-alive") || name_is(n, nl, "proxy-connection") || name_is(n, nl, "transfer-encoding") ||
        name_is(n, nl, "trailer"))
        return true;
    if (!h->tunnel && (name_is(n, nl, "connection") || name_is(n, nl, "upgrade") ||
                       name_is(n, nl, "content-length") || named_in_connection(h, ct, n, nl)))
        return true; /* the framing is written from what the parser established */
    return h->keep && !h->keep(h->edits_arg, n, nl); /* removed or replaced by a payload */
}

static const ms_field *find_vary(const ms_resp_head *h, const conn_tokens *ct)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (name_is(h->fields[i].name, h->fields[i].name_len, "vary") && !dropped(h, ct, &h->fields[i]))
            return &h->fields[i];
    return NULL;
}

static size_t reason_len(const ms_resp_head *h)
{
    return h->reason_len > 120 ? 120 : h->reason_len;
}

size_t ms_resp_head_bound(const ms_resp_head *h)
{
    size_t n = 16 + reason_len(h); /* "HTTP/1.1 NNN reason\r\n" */
    for (size_t i = 0; i < h->nfields; i++)
        n += h->fields[i].name_len + h->fields[i].value_len + 6; /* ": ", CRLF, a weak ETag's "W/" */
    for (size_t i = 0; i < h->nadded; i++) {
        ms_field f;
        if (h->added(h->edits_arg, i, &f))
            n += f.name_len + f.value_len + 4;
    }
    if (h->encoding)
        n += strlen(h->encoding) + 64; /* Content-Encoding, and Vary's own part */
    n += h->date_len;
    n += 64; /* the framing line: "Transfer-Encoding: chunked" or "Content-Length: <20 digits>" */
    if (h->connection)
        n += strlen(h->connection) + 14;
    return n + 2; /* the blank line */
}

typedef struct writer {
    char *p;
    size_t len, cap;
    bool failed;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->failed || n > w->cap - w->len) {
        w->failed = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void put_line(writer *w, const char *name, size_t nl, const char *val, size_t vl)
{
    put(w, name, nl);
    put(w, ": ", 2);
    put(w, val, vl);
    put(w, "\r\n", 2);
}

static size_t u64_dec(uint64_t v, char out[24])
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t ms_resp_head_write(const ms_resp_head *h, char *out, size_t cap)
{
    writer w = { .p = out, .cap = cap };
    char num[24];
    put(&w, "HTTP/1.1 ", 9);
    put(&w, num, u64_dec((uint64_t)(h->status < 0 ? 0 : h->status), num));
    put(&w, " ", 1);
    put(&w, h->reason, reason_len(h));
    put(&w, "\r\n", 2);
    conn_tokens ct;
    gather_conn_tokens(h, &ct);
    const ms_field *vary = h->encoding ? find_vary(h, &ct) : NULL;
    bool have_date = false;
    for (size_t i = 0; i < h->nfields; i++) {
        const ms_field *f = &h->fields[i];
        if (dropped(h, &ct, f))
            continue;
        if (name_is(f->name, f->name_len, "date"))
            have_date = true;
        if (f == vary)
            continue; /* extended below */
        if (h->encoding && name_is(f->name, f->name_len, "etag") && f->value_len > 0 && f->value[0] == '"') {
            /* the bytes change: a strong validator becomes weak */
            put(&w, "ETag: W/", 8);
            put(&w, f->value, f->value_len);
            put(&w, "\r\n", 2);
            continue;
        }
        put_line(&w, f->name, f->name_len, f->value, f->value_len);
    }
    for (size_t i = 0; i < h->nadded; i++) {
        ms_field f;
        if (h->added(h->edits_arg, i, &f))
            put_line(&w, f.name, f.name_len, f.value, f.value_len);
    }
    if (h->encoding) {
        put_line(&w, "Content-Encoding", 16, h->encoding, strlen(h->encoding));
        put(&w, "Vary: ", 6);
        if (vary) {
            put(&w, vary->value, vary->value_len);
            put(&w, ", ", 2);
        }
        put(&w, "Accept-Encoding\r\n", 17);
    }
    if (!have_date)
        put(&w, h->date, h->date_len);
    if (h->chunked)
        put(&w, "Transfer-Encoding: chunked\r\n", 28);
    else if (h->has_length && !h->tunnel && h->status >= 200 && h->status != 204)
        put_line(&w, "Content-Length", 14, num, u64_dec(h->length, num));
    if (h->connection)
        put_line(&w, "Connection", 10, h->connection, strlen(h->connection));
    put(&w, "\r\n", 2);
    return w.failed ? 0 : w.len;
}
