/* wsdeflate.c: permessage-deflate (RFC 7692): the offer's parser and
 * answer, and per-message inflate/deflate with zlib's raw deflate. See
 * wsdeflate.h for the contract. */
#include "http/wsdeflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* ---------------------------------------------------------------- the offer */

typedef struct cursor {
    const char *s;
    size_t n, i;
} cursor;

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static void skip_ows(cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

static bool at(const cursor *c, char ch)
{
    return c->i < c->n && c->s[c->i] == ch;
}

/* A token: its start and length; false when there is none. */
static bool token(cursor *c, const char **t, size_t *tl)
{
    size_t s = c->i;
    while (c->i < c->n && is_tchar((unsigned char)c->s[c->i]))
        c->i++;
    *t = c->s + s;
    *tl = c->i - s;
    return *tl > 0;
}

/* A token or a quoted-string, unescaped into buf (cap bytes; longer values
 * are cut, which makes them invalid for every parameter we know). */
static bool value(cursor *c, char *buf, size_t cap, size_t *len)
{
    size_t o = 0;
    if (!at(c, '"')) {
        const char *t;
        size_t tl;
        if (!token(c, &t, &tl))
            return false;
        for (size_t k = 0; k < tl && o < cap; k++)
            buf[o++] = t[k];
        *len = tl > cap ? cap + 1 : tl;
        return true;
    }
    c->i++;
    size_t full = 0;
    while (c->i < c->n && c->s[c->i] != '"') {
        unsigned char ch = (unsigned char)c->s[c->i++];
        if (ch == '\\') {
            if (c->i >= c->n)
                return false;
            ch = (unsigned char)c->s[c->i++];
        }
        if (ch < 0x20 && ch != '\t')
            return false;
        if (ch == 0x7f)
            return false;
        if (o < cap)
            buf[o++] = (char)ch;
        full++;
    }
    if (!at(c, '"'))
        return false;
    c->i++;
    *len = full > cap ? cap + 1 : full;
    return true;
}

static bool name_is(const char *t, size_t tl, const char *want)
{
    return tl == strlen(want) && strncasecmp(t, want, tl) == 0;
}

/* A window size as RFC 7692 writes it: 8..15, no leading zero. */
static int window_bits(const char *v, size_t n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9'))
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return 0;
}

typedef struct offer {
    bool is_pmd, ok;
    unsigned seen; /* parameters met, one bit each */
    ms_pmd_agreed a;
} offer;

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

/* One parameter of a permessage-deflate offer. */
static void pmd_param(offer *o, const char *t, size_t tl, bool has_val, const char *v, size_t vl)
{
    unsigned bit = name_is(t, tl, "server_no_context_takeover") ? P_SNCT
                 : name_is(t, tl, "client_no_context_takeover") ? P_CNCT
                 : name_is(t, tl, "server_max_window_bits")     ? P_SMWB
                 : name_is(t, tl, "client_max_window_bits")     ? P_CMWB
                                                                : 0;
    if (!bit || (o->seen & bit)) {
        o->ok = false; /* unknown or repeated: the offer is declined */
        return;
    }
    o->seen |= bit;
    if (bit == P_SNCT || bit == P_CNCT) {
        if (has_val)
            o->ok = false;
        else if (bit == P_SNCT)
            o->a.echo_server_nct = true;
        return;
    }
    int bits = has_val ? window_bits(v, vl) : 0;
    if (bit == P_CMWB) {
        /* we inflate with a 32 KiB window, which reads any smaller one: the
         * answer need not name it (§7.1.2.2) */
        if (has_val && !bits)
            o->ok = false;
        return;
    }
    if (!bits || bits == 8) { /* server_max_window_bits needs a value; zlib has no raw 256-byte window */
        o->ok = false;
        return;
    }
    o->a.server_bits = (uint8_t)bits;
    o->a.echo_server_bits = true;
}

/* extension *( ";" param ): false on a syntax error. */
static bool extension(cursor *c, offer *o)
{
    const char *t;
    size_t tl;
    if (!token(c, &t, &tl))
        return false;
    *o = (offer){ .is_pmd = name_is(t, tl, "permessage-deflate"), .ok = true, .a = { .server_bits = 15 } };
    for (;;) {
        skip_ows(c);
        if (!at(c, ';'))
            return true;
        c->i++;
        skip_ows(c);
        if (!token(c, &t, &tl))
            return false;
        skip_ows(c);
        char v[8];
        size_t vl = 0;
        bool has_val = at(c, '=');
        if (has_val) {
            c->i++;
            skip_ows(c);
            if (!value(c, v, sizeof v, &vl))
                return false;
        }
        if (o->is_pmd)
            pmd_param(o, t, tl, has_val, v, vl > sizeof v ? 0 : vl);
    }
}

bool ms_pmd_negotiate(const char *v, size_t n, ms_pmd_agreed *out)
{
    cursor c = { v, n, 0 };
    bool found = false;
    for (;;) {
        skip_ows(&c);
        if (c.i >= c.n)
            return found;
        if (at(&c, ',')) { /* empty list element */
            c.i++;
            continue;
        }
        offer o;
        if (!extension(&c, &o))
            return false;
        if (!found && o.is_pmd && o.ok) {
            *out = o.a;
            found = true;
        }
        skip_ows(&c);
        if (c.i < c.n && !at(&c, ','))
            return false;
    }
}

size_t ms_pmd_answer(const ms_pmd_agreed *a, char *buf, size_t cap)
{
    char bits[32] = "";
    if (a->echo_server_bits)
        snprintf(bits, sizeof bits, "; server_max_window_bits=%u", (unsigned)a->server_bits);
    int n = snprintf(buf, cap, "permessage-deflate%s; client_no_context_takeover%s",
                     a->echo_server_nct ? "; server_no_context_takeover" : "", bits);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---------------------------------------------------------------- the codec */

struct ms_pmd {
    z_stream inf;
    bool inf_ok;
    z_stream def[16]; /* by window bits, 9..15 */
    bool def_ok[16];
};

ms_pmd *ms_pmd_new(void)
{
    return calloc(1, sizeof(ms_pmd));
}

void ms_pmd_free(ms_pmd *p)
{
    if (!p)
        return;
    if (p->inf_ok)
        inflateEnd(&p->inf);
    for (unsigned b = 0; b < 16; b++)
        if (p->def_ok[b])
            deflateEnd(&p->def[b]);
    free(p);
}

static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

static ms_pmd_rc inflate_loop(z_stream *s, const uint8_t *in, size_t n, size_t limit, uint8_t **out, size_t *out_len)
{
    size_t hard = limit + 1; /* one byte over the limit tells "too big" */
    /* a first guess that fits most messages in one allocation */
    size_t cap = n < hard / 4 ? n * 4 + 64 : hard;
    if (cap < 1024)
        cap = 1024;
    if (cap > hard)
        cap = hard;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return MS_PMD_NOMEM;
    s->next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
    s->avail_in = (uInt)n;
    s->next_out = buf;
    s->avail_out = (uInt)cap;
    bool tail_fed = false;
    ms_pmd_rc rc = MS_PMD_OK;
    for (;;) {
        if (s->avail_in == 0 && !tail_fed) {
            s->next_in = (Bytef *)(uintptr_t)tail;
            s->avail_in = sizeof tail;
            tail_fed = true;
        }
        if (s->avail_out == 0) {
            if (cap >= hard) {
                rc = MS_PMD_TOO_BIG;
                break;
            }
            size_t ncap = cap > hard / 2 ? hard : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = MS_PMD_NOMEM;
                break;
            }
            buf = nb;
            s->next_out = buf + cap;
            s->avail_out = (uInt)(ncap - cap);
            cap = ncap;
        }
        int z = inflate(s, Z_SYNC_FLUSH);
        if (z == Z_STREAM_END)
            break; /* a final block: what follows it (our tail) is not read */
        if (z == Z_MEM_ERROR) {
            rc = MS_PMD_NOMEM;
            break;
        }
        if (z != Z_OK && z != Z_BUF_ERROR) {
            rc = MS_PMD_BAD_DATA;
            break;
        }
        if (tail_fed && s->avail_in == 0 && s->avail_out > 0)
            break; /* every byte read, room left: all of it is out */
    }
    if (rc == MS_PMD_OK && cap - s->avail_out > limit)
        rc = MS_PMD_TOO_BIG; /* a final block that ended right at limit + 1 */
    if (rc != MS_PMD_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = cap - s->avail_out;
    return MS_PMD_OK;
}

ms_pmd_rc ms_pmd_inflate(ms_pmd *p, const uint8_t *in, size_t n, size_t limit, uint8_t **out, size_t *out_len)
{
    if (n > UINT32_MAX || limit >= UINT32_MAX)
        return MS_PMD_TOO_BIG; /* zlib counts in uInt */
    if (!p->inf_ok) {
        memset(&p->inf, 0, sizeof p->inf);
        if (inflateInit2(&p->inf, -15) != Z_OK)
            return MS_PMD_NOMEM;
        p->inf_ok = true;
    }
    ms_pmd_rc rc = inflate_loop(&p->inf, in, n, limit, out, out_len);
    if (inflateReset(&p->inf) != Z_OK) { /* no context takeover: each message starts afresh */
        inflateEnd(&p->inf);
        p->inf_ok = false;
    }
    return rc;
}

ms_pmd_rc ms_pmd_deflate(ms_pmd *p, unsigned bits, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len)
{
    if (bits < 9 || bits > 15)
        bits = 15;
    if (n < 8 || n > UINT32_MAX)
        return MS_PMD_NOT_SMALLER;
    z_stream *s = &p->def[bits];
    if (!p->def_ok[bits]) {
        memset(s, 0, sizeof *s);
        /* zlib's default level and memLevel: what Node's ws uses too */
        if (deflateInit2(s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -(int)bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return MS_PMD_NOMEM;
        p->def_ok[bits] = true;
    }
    /* room for as many bytes as the message plus the tail: more would not pay */
    size_t cap = n + sizeof tail;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return MS_PMD_NOMEM;
    s->next_in = (Bytef *)(uintptr_t)in;
    s->avail_in = (uInt)n;
    s->next_out = buf;
    s->avail_out = (uInt)cap;
    int z = deflate(s, Z_SYNC_FLUSH);
    size_t len = cap - s->avail_out;
    bool whole = (z == Z_OK || z == Z_BUF_ERROR) && s->avail_in == 0 && s->avail_out > 0;
    if (deflateReset(s) != Z_OK) {
        deflateEnd(s);
        p->def_ok[bits] = false;
    }
    if (!whole || len < sizeof tail || memcmp(buf + len - sizeof tail, tail, sizeof tail) != 0 ||
        len - sizeof tail >= n) {
        free(buf);
        return MS_PMD_NOT_SMALLER;
    }
    *out = buf;
    *out_len = len - sizeof tail;
    return MS_PMD_OK;
}
