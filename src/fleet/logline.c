/* logline.c: the JSON log line formatter (see logline.h). Keys come in a
 * fixed order (ts, level, source, instance, stream, event, the event's
 * fields, continued, msg) so that lines read alike and grep alike. The
 * message is last: it is what gets cut when the buffer is short, and the
 * room for the closing bytes is kept back before it is written. */
#include "fleet/logline.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CLOSE_ROOM 4 /* "\"}\n" and a spare byte */

const char *ms_level_name(ms_level level)
{
    static const char *const names[] = { "info", "warn", "error" };
    return (unsigned)level < sizeof names / sizeof names[0] ? names[level] : "error";
}

size_t ms_log_timestamp_utc(char *out, size_t cap, int64_t time_ms)
{
    if (time_ms <= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    time_t sec = (time_t)(time_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm))
        return 0;
    char tmp[64];
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return 0;
    int m = snprintf(tmp + n, sizeof tmp - n, ".%03dZ", (int)(time_ms % 1000));
    if (m < 0 || n + (size_t)m >= cap)
        return 0;
    n += (size_t)m;
    memcpy(out, tmp, n + 1);
    return n;
}

size_t ms_log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            /* validate one UTF-8 sequence */
            size_t need = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : 0;
            bool ok = need > 0 && i + need < len;
            for (size_t k = 1; ok && k <= need; k++)
                if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                    ok = false;
            if (ok && need >= 2) { /* overlongs, surrogates, > U+10FFFF */
                unsigned char c1 = (unsigned char)s[i + 1];
                if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
                    (c == 0xf4 && c1 > 0x8f))
                    ok = false;
            }
            if (ok) {
                memcpy(out + o, s + i, need + 1);
                o += need + 1;
                i += need;
            } else {
                memcpy(out + o, "\xef\xbf\xbd", 3);
                o += 3;
            }
        }
    }
    return o;
}

/* Append a literal; returns false (appending nothing) when it does not fit
 * with `keep` bytes to spare. */
static bool put(char *out, size_t cap, size_t *n, size_t keep, const char *s)
{
    size_t l = strlen(s);
    if (*n + l + keep > cap)
        return false;
    memcpy(out + *n, s, l);
    *n += l;
    return true;
}

/* Append ,"key":"value" (value escaped, cut to fit); false when not even
 * the key fits. */
static bool put_str(char *out, size_t cap, size_t *n, size_t keep, const char *key, const char *val, size_t len)
{
    size_t start = *n;
    if (!put(out, cap, n, keep + 2, ",\"") || !put(out, cap, n, keep + 2, key) ||
        !put(out, cap, n, keep + 1, "\":\"")) {
        *n = start;
        return false;
    }
    *n += ms_log_json_escape(out + *n, cap - keep - 1 - *n, val, len);
    out[(*n)++] = '"';
    return true;
}

static bool put_num(char *out, size_t cap, size_t *n, size_t keep, const char *key, int64_t v)
{
    char tmp[96];
    int m = snprintf(tmp, sizeof tmp, ",\"%.48s\":%" PRId64, key, v);
    return m > 0 && (size_t)m < sizeof tmp && put(out, cap, n, keep, tmp);
}

size_t ms_log_format_json(char *out, size_t cap, const ms_log_record *r)
{
    assert(cap >= MS_LOG_JSON_MIN);
    assert(r->source && *r->source);
    /* room kept for what must come last: ,"msg":"" and the close */
    const size_t keep = CLOSE_ROOM + 16;
    size_t n = 0;
    put(out, cap, &n, keep, "{\"ts\":\"");
    n += ms_log_timestamp_utc(out + n, cap - n, r->time_ms);
    put(out, cap, &n, keep, "\",\"level\":\"");
    put(out, cap, &n, keep, ms_level_name(r->level));
    put(out, cap, &n, keep, "\"");
    put_str(out, cap, &n, keep, "source", r->source, strlen(r->source));
    if (r->instance >= 0)
        put_num(out, cap, &n, keep, "instance", r->instance);
    if (r->stream)
        put_str(out, cap, &n, keep, "stream", r->stream, strlen(r->stream));
    if (r->event)
        put_str(out, cap, &n, keep, "event", r->event, strlen(r->event));
    for (size_t i = 0; i < r->nfields; i++) {
        const ms_log_field *f = &r->fields[i];
        assert(f->key && strcmp(f->key, "msg") != 0 && strcmp(f->key, "ts") != 0 && strcmp(f->key, "level") != 0 &&
               strcmp(f->key, "source") != 0 && strcmp(f->key, "event") != 0);
        if (f->str)
            put_str(out, cap, &n, keep, f->key, f->str, strlen(f->str));
        else
            put_num(out, cap, &n, keep, f->key, f->num);
    }
    if (r->continued)
        put(out, cap, &n, keep, ",\"continued\":true");
    /* the message takes what is left, less the close */
    memcpy(out + n, ",\"msg\":\"", 8);
    n += 8;
    n += ms_log_json_escape(out + n, cap - CLOSE_ROOM - n, r->msg ? r->msg : "", r->msg ? r->msg_len : 0);
    memcpy(out + n, "\"}\n", 3);
    n += 3;
    assert(n < cap);
    return n;
}
