/* reqpath.c: checks a request target and normalises its path. See reqpath.h. */
#include "http/reqpath.h"

#include <assert.h>
#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static void refuse(ms_reqpath *r, const char *why)
{
    r->status = 400;
    r->why = why;
    r->len = r->path_len = 0;
}

/* The ambiguous form an encoded byte stands for, or NULL. */
static const char *ambiguous_encoded(unsigned v)
{
    switch (v) {
    case 0x2f: return "an encoded slash (%2F) in the path";
    case 0x5c: return "an encoded backslash (%5C) in the path";
    case 0x00: return "an encoded NUL (%00) in the path";
    default: return NULL;
    }
}

const char *ms_reqpath_check_bytes(const char *target, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c < 0x21 || c == 0x7f)
            return "a control character or space in the request target";
        if (c == '#')
            return "a '#' in the request target";
    }
    return NULL;
}

/* One pass, segment by segment. Every byte written stands for at least one
 * byte read before it, so out never overtakes in and out may be in. out
 * always holds '/' followed by whole segments, each ended by '/' except
 * possibly the last one. */
void ms_reqpath_normalize(const char *in, size_t len, char *out, ms_reqpath *r)
{
    static const char hex[] = "0123456789ABCDEF";
    memset(r, 0, sizeof *r);
    if (len == 0 || in[0] != '/') {
        refuse(r, "the path must start with '/'");
        return;
    }
    size_t i = 1, o = 1;
    out[0] = '/';
    while (i < len) {
        if (in[i] == '/') { /* repeated slashes, and the one after a dot segment */
            i++;
            continue;
        }
        size_t seg = o;
        while (i < len && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];
            if (c == '%') {
                int h, l;
                if (len - i < 3 || (h = hexval((unsigned char)in[i + 1])) < 0 ||
                    (l = hexval((unsigned char)in[i + 2])) < 0) {
                    refuse(r, "a '%' not followed by two hex digits in the path");
                    return;
                }
                unsigned v = (unsigned)(h << 4 | l);
                i += 3;
                if (unreserved((unsigned char)v)) {
                    out[o++] = (char)v;
                } else {
                    const char *amb = ambiguous_encoded(v);
                    if (amb && !r->ambiguous)
                        r->ambiguous = amb;
                    out[o++] = '%';
                    out[o++] = hex[h];
                    out[o++] = hex[l];
                }
                continue;
            }
            if (c == '\\' && !r->ambiguous)
                r->ambiguous = "a backslash in the path";
            else if (c == ';' && !r->ambiguous)
                r->ambiguous = "a ';' in the path";
            out[o++] = (char)c;
            i++;
        }
        size_t sl = o - seg;
        if (sl == 1 && out[seg] == '.') {
            o = seg; /* "/a/." -> "/a/" */
        } else if (sl == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (seg == 1) {
                refuse(r, "the path goes above the root ('..')");
                return;
            }
            o = seg - 1; /* back over the previous segment, keeping its leading '/' */
            while (out[o - 1] != '/')
                o--;
        } else if (i < len) {
            assert(in[i] == '/');
            out[o++] = '/';
            i++;
        }
        assert(o <= i);
    }
    assert(o >= 1 && o <= len && out[0] == '/');
    r->len = r->path_len = o;
}

void ms_reqpath_target(char *target, size_t len, bool asterisk, ms_reqpath *r)
{
    memset(r, 0, sizeof *r);
    const char *why = ms_reqpath_check_bytes(target, len);
    if (why) {
        refuse(r, why);
        return;
    }
    if (asterisk && len == 1 && target[0] == '*') {
        r->len = r->path_len = 1;
        return;
    }
    if (len == 0 || target[0] != '/') {
        refuse(r, "the request target must be a path starting with '/'");
        return;
    }
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    ms_reqpath_normalize(target, plen, target, r);
    if (r->status)
        return;
    size_t np = r->path_len;
    assert(np <= plen);
    if (np < plen)
        memmove(target + np, target + plen, len - plen);
    r->len = np + (len - plen);
}
