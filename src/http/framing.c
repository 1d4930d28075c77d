/* framing.c: the strict checks of a request's framing (see framing.h): a
 * Transfer-Encoding value, and a chunked body as a small state machine fed
 * the bytes as they arrive. No sockets, no allocation. */
#include "http/framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

bool ms_token_listed(const char *v, size_t vlen, const char *tok, size_t toklen)
{
    const char *end = v + vlen;
    while (v < end) {
        while (v < end && (is_ows(*v) || *v == ','))
            v++;
        const char *t = v;
        while (v < end && *v != ',' && !is_ows(*v))
            v++;
        if ((size_t)(v - t) == toklen && strncasecmp(t, tok, toklen) == 0)
            return true;
    }
    return false;
}

int ms_te_value_status(const char *raw, size_t len)
{
    /* before the value: nothing or one space */
    size_t ws = 0;
    while (ws < len && is_ows(raw[ws]))
        ws++;
    if (ws > 1 || (ws == 1 && raw[0] != ' '))
        return 400;
    const char *v = raw + ws;
    size_t n = len - ws;
    if (n == 0 || is_ows(v[n - 1]))
        return 400; /* empty, or whitespace after the value */
    size_t codings = 0, chunked_at = 0, chunked_seen = 0;
    for (size_t i = 0; i <= n; i++) { /* i steps over each comma, and the end */
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (s < e && is_ows(v[s]))
            s++;
        while (e > s && is_ows(v[e - 1]))
            e--;
        if (s == e)
            return 400; /* an empty element */
        for (size_t k = s; k < e; k++)
            if (!is_tchar((unsigned char)v[k]))
                return 400;
        codings++;
        if (e - s == 7 && strncasecmp(v + s, "chunked", 7) == 0) {
            chunked_seen++;
            chunked_at = codings;
        }
    }
    if (chunked_seen != 1 || chunked_at != codings)
        return 400; /* chunked missing, not the last, or twice */
    return codings == 1 ? 0 : 501;
}

/* ---------------------------------------------------------------- chunked bodies */
enum {
    K_SIZE0,       /* the first hex digit of a size */
    K_SIZE,        /* more hex digits */
    K_BWS,         /* whitespace after the size */
    K_EXT,         /* a chunk extension, up to CR */
    K_SIZE_LF,
    K_DATA,
    K_DATA_CR,
    K_DATA_LF,
    K_TRAILER0,    /* the start of a trailer line, or the final CRLF */
    K_TRAILER,
    K_TRAILER_LF,
    K_END_LF,
    K_DONE,
};

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_ctl(unsigned char ch)
{
    return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/* Does this word hold a byte below 0x20 or a 0x7f? (bit tricks on 8 bytes
 * at once; a tab is among the bytes below 0x20: is_ctl decides those) */
static bool word_may_hold_ctl(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t below = (x - ones * 0x20) & ~x & highs;
    uint64_t del = x ^ (ones * 0x7f);
    return (below | ((del - ones) & ~del & highs)) != 0;
}

static bool bytes_clean(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (is_ctl((unsigned char)v[i]))
            return false;
    return true;
}

static bool word_clean(const char *v)
{
    uint64_t x;
    memcpy(&x, v, 8);
    return !word_may_hold_ctl(x) || bytes_clean(v, 8);
}

bool ms_field_value_clean(const char *v, size_t len)
{
    if (len < 8)
        return bytes_clean(v, len);
    for (size_t i = 0; i + 8 < len; i += 8)
        if (!word_clean(v + i))
            return false;
    return word_clean(v + len - 8); /* the last 8 bytes, overlapping the words before */
}

void ms_chunk_check_init(ms_chunk_check *k)
{
    memset(k, 0, sizeof *k);
    k->state = K_SIZE0;
}

ms_chunk_result ms_chunk_check_feed(ms_chunk_check *k, const char *data, size_t len, size_t *used)
{
    size_t i = 0;
    while (i < len && k->state != K_DONE) {
        char ch = data[i];
        switch (k->state) {
        case K_SIZE0:
        case K_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (k->digits == 16)
                    goto bad; /* over 64 bits */
                k->digits++;
                k->left = k->left << 4 | (uint64_t)v;
                k->state = K_SIZE;
            } else if (k->state == K_SIZE0) {
                goto bad;
            } else if (ch == ';') {
                k->state = K_EXT;
            } else if (is_ows(ch)) {
                k->state = K_BWS;
            } else if (ch == '\r') {
                k->state = K_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        }
        case K_BWS:
            if (ch == ';')
                k->state = K_EXT;
            else if (ch == '\r')
                k->state = K_SIZE_LF;
            else if (!is_ows(ch))
                goto bad;
            break;
        case K_EXT:
            if (ch == '\r')
                k->state = K_SIZE_LF;
            else if (is_ctl((unsigned char)ch))
                goto bad;
            break;
        case K_SIZE_LF:
            if (ch != '\n')
                goto bad;
            k->digits = 0;
            k->state = k->left ? K_DATA : K_TRAILER0;
            break;
        case K_DATA: {
            size_t take = len - i < k->left ? len - i : (size_t)k->left;
            k->left -= take;
            i += take;
            if (k->left == 0)
                k->state = K_DATA_CR;
            continue;
        }
        case K_DATA_CR:
            if (ch != '\r')
                goto bad;
            k->state = K_DATA_LF;
            break;
        case K_DATA_LF:
            if (ch != '\n')
                goto bad;
            k->state = K_SIZE0;
            break;
        case K_TRAILER0:
            if (ch == '\r')
                k->state = K_END_LF;
            else if (ch == '\n' || is_ctl((unsigned char)ch))
                goto bad;
            else
                k->state = K_TRAILER;
            break;
        case K_TRAILER:
            if (ch == '\r')
                k->state = K_TRAILER_LF;
            else if (is_ctl((unsigned char)ch))
                goto bad;
            break;
        case K_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            k->state = K_TRAILER0;
            break;
        case K_END_LF:
            if (ch != '\n')
                goto bad;
            k->state = K_DONE;
            break;
        default:
            goto bad;
        }
        i++;
    }
    *used = i;
    return k->state == K_DONE ? MS_CHUNK_DONE : MS_CHUNK_MORE;
bad:
    *used = i;
    return MS_CHUNK_BAD;
}
