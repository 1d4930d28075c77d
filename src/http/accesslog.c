/* accesslog.c: the access log's writer and its line formats (see
 * accesslog.h). The writer thread wakes every MS_ALOG_DRAIN_MS, takes the
 * records out of each worker's ring, formats them into a batch and writes
 * the batch with one write(2). The file is opened O_NONBLOCK: a FIFO or a
 * pipe nobody reads makes the write return EAGAIN, the batch waits, the
 * rings fill and the workers drop (and count) records instead of waiting.
 * Lines for Mothership's own output go through ms_log_raw (its own bounded
 * queue). */
#include "http/accesslog.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "manifest/manifest.h"

#define BATCH_BYTES 65536
#define CLOSE_FLUSH_MS 500          /* how long closing may wait for a stuck output */

struct ms_alog {
    ms_alog_ring *rings;
    unsigned nrings;
    ms_log *log;
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;
    bool stopping;                 /* under mu */
    bool switch_pending;           /* under mu: next_fd is the output from now on */
    int next_fd;                   /* under mu: -1 with switch_pending: Mothership's output */
    /* the writer thread's own */
    int fd;                        /* -1: Mothership's output */
    char *batch;                   /* formatted lines not yet written */
    size_t batch_len;
    uint64_t batch_lines;
    bool warned;                   /* a failed write was reported */
    uint64_t lines;                /* atomic */
    uint64_t dropped;              /* atomic: lines lost after leaving the rings */
};

/* ---------------------------------------------------------------- formats */
static size_t put(char *out, size_t cap, size_t o, const char *s, size_t n)
{
    if (o + n >= cap)
        n = o < cap ? cap - o - 1 : 0;
    memcpy(out + o, s, n);
    return o + n;
}

static size_t puts_(char *out, size_t cap, size_t o, const char *s)
{
    return put(out, cap, o, s, strlen(s));
}

/* s as the body of a JSON string: '"', '\\' and control bytes escaped,
 * bytes beyond ASCII as \u00XX (a path is bytes, not text: each byte
 * stays visible and the line stays valid JSON). */
static size_t put_json(char *out, size_t cap, size_t o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && o + 7 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[ch >> 4];
            out[o + 5] = hex[ch & 15];
            o += 6;
        } else {
            out[o++] = (char)ch;
        }
    }
    return o;
}

/* s for the text format: spaces, '"', '\\' and bytes outside printable
 * ASCII as \xHH, so that a field never splits or ends the line. */
static size_t put_text(char *out, size_t cap, size_t o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    return o;
}

static size_t put_time(char *out, size_t cap, size_t o, uint64_t us)
{
    time_t sec = (time_t)(us / 1000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char t[40];
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(t + n, sizeof t - n, ".%03uZ", (unsigned)(us / 1000u % 1000u));
    return put(out, cap, o, t, n);
}

static size_t put_fmt(char *out, size_t cap, size_t o, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static size_t put_fmt(char *out, size_t cap, size_t o, const char *fmt, ...)
{
    if (o + 1 >= cap)
        return o;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + o, cap - o, fmt, ap);
    va_end(ap);
    if (n < 0)
        return o;
    return (size_t)n >= cap - o ? cap - 1 : o + (size_t)n;
}

static const char *proto_name(uint8_t p)
{
    return p == 20 ? "HTTP/2" : p == 10 ? "HTTP/1.0" : "HTTP/1.1";
}

static size_t put_ms(char *out, size_t cap, size_t o, uint64_t us)
{
    return put_fmt(out, cap, o, "%llu.%03u", (unsigned long long)(us / 1000u), (unsigned)(us % 1000u));
}

size_t ms_alog_format(const ms_alog_rec *r, char *out, size_t cap)
{
    const char *method = r->method ? r->method : "-";
    size_t o = 0;
    cap--; /* room for the newline, whatever is cut */
    if (r->format == MS_ACCESS_LOG_JSON) {
        o = puts_(out, cap, o, "{\"ts\":\"");
        o = put_time(out, cap, o, r->end_us);
        o = puts_(out, cap, o, "\",\"level\":\"info\",\"source\":\"access\",\"event\":\"request\",\"msg\":\"");
        o = put_json(out, cap, o, method, strlen(method));
        o = puts_(out, cap, o, " ");
        if (r->path_len > MS_ALOG_MSG_PATH) {
            o = put_json(out, cap, o, r->path, MS_ALOG_MSG_PATH);
            o = puts_(out, cap, o, "...");
        } else {
            o = put_json(out, cap, o, r->path_len ? r->path : "-", r->path_len ? r->path_len : 1);
        }
        o = put_fmt(out, cap, o, " %u\",\"request_id\":\"", r->status);
        o = put_json(out, cap, o, r->reqid, r->reqid_len);
        o = puts_(out, cap, o, "\",\"client\":\"");
        o = put_json(out, cap, o, r->peer, r->peer_len);
        o = puts_(out, cap, o, "\",\"client_port\":");
        o = put_fmt(out, cap, o, "%u,\"method\":\"", r->peer_port);
        o = put_json(out, cap, o, method, strlen(method));
        o = puts_(out, cap, o, "\",\"path\":\"");
        o = put_json(out, cap, o, r->path, r->path_len);
        o = puts_(out, cap, o, r->path_cut ? "\",\"path_cut\":true" : "\"");
        o = put_fmt(out, cap, o, ",\"status\":%u,\"bytes\":%llu,\"duration_ms\":", r->status,
                    (unsigned long long)r->bytes);
        o = put_ms(out, cap, o, r->duration_us);
        o = puts_(out, cap, o, ",\"target\":\"");
        o = put_json(out, cap, o, r->target, r->target_len);
        o = puts_(out, cap, o, "\",\"upstream_ms\":");
        o = r->upstream_us >= 0 ? put_ms(out, cap, o, (uint64_t)r->upstream_us) : puts_(out, cap, o, "null");
        o = put_fmt(out, cap, o, ",\"protocol\":\"%s\",\"bind\":\"", proto_name(r->proto));
        o = put_json(out, cap, o, r->bind, r->bind_len);
        o = puts_(out, cap, o, "\"}");
    } else {
        o = put_time(out, cap, o, r->end_us);
        o = puts_(out, cap, o, " access ");
        o = r->bind_len ? put_text(out, cap, o, r->bind, r->bind_len) : puts_(out, cap, o, "-");
        o = puts_(out, cap, o, " ");
        o = r->peer_len ? put_text(out, cap, o, r->peer, r->peer_len) : puts_(out, cap, o, "-");
        o = put_fmt(out, cap, o, " \"%s ", method);
        o = r->path_len ? put_text(out, cap, o, r->path, r->path_len) : puts_(out, cap, o, "-");
        o = puts_(out, cap, o, r->path_cut ? "... " : " ");
        o = put_fmt(out, cap, o, "%s\" %u %llu ", proto_name(r->proto), r->status, (unsigned long long)r->bytes);
        o = put_ms(out, cap, o, r->duration_us);
        o = puts_(out, cap, o, " ");
        o = r->target_len ? put_text(out, cap, o, r->target, r->target_len) : puts_(out, cap, o, "-");
        o = puts_(out, cap, o, " ");
        o = r->upstream_us >= 0 ? put_ms(out, cap, o, (uint64_t)r->upstream_us) : puts_(out, cap, o, "-");
        o = puts_(out, cap, o, " ");
        o = r->reqid_len ? put_text(out, cap, o, r->reqid, r->reqid_len) : puts_(out, cap, o, "-");
    }
    out[o++] = '\n';
    return o;
}

/* ---------------------------------------------------------------- the writer */
static int open_output(const char *path, char *why, size_t why_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        snprintf(why, why_len, "access_log_path \"%s\": %s%s", path, strerror(errno),
                 errno == ENXIO ? " (a FIFO must have a reader first)" : "");
    return fd;
}

static void drop_lines(ms_alog *a, uint64_t k)
{
    __atomic_fetch_add(&a->dropped, k, __ATOMIC_RELAXED);
}

/* Write what the batch holds; false: the output takes no more now. */
static bool flush(ms_alog *a)
{
    size_t done = 0;
    bool more = true;
    while (done < a->batch_len) {
        ssize_t w = write(a->fd, a->batch + done, a->batch_len - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            more = false;
            break;
        }
        /* the output is unusable: the batch is lost, counted */
        if (!a->warned && a->log)
            ms_log_event(a->log, MS_WARN, NULL, "access_log_failed", "access log: write failed: %s; lines dropped "
                         "until the next reload", w < 0 ? strerror(errno) : "nothing written");
        a->warned = true;
        drop_lines(a, a->batch_lines);
        a->batch_len = 0;
        a->batch_lines = 0;
        return true;
    }
    /* lines written whole count once their newline has left */
    uint64_t k = 0;
    for (const char *p = a->batch; (p = memchr(p, '\n', (size_t)(a->batch + done - p))) != NULL; p++)
        k++;
    __atomic_fetch_add(&a->lines, k, __ATOMIC_RELAXED);
    a->batch_lines -= k;
    memmove(a->batch, a->batch + done, a->batch_len - done);
    a->batch_len -= done;
    return more;
}

/* Take the output set by ms_alog_reopen, after the old one has had what
 * was formatted for it (or could not take it: dropped). */
static void take_new_output(ms_alog *a)
{
    uv_mutex_lock(&a->mu);
    bool pending = a->switch_pending;
    int fd = a->next_fd;
    a->switch_pending = false;
    a->next_fd = -1;
    uv_mutex_unlock(&a->mu);
    if (!pending)
        return;
    if (a->fd >= 0) {
        if (a->batch_len)
            flush(a);
        if (a->batch_len) {
            drop_lines(a, a->batch_lines);
            a->batch_len = 0;
            a->batch_lines = 0;
        }
        close(a->fd);
    }
    a->fd = fd;
    a->warned = false;
}

/* One pass over the rings. */
static void drain(ms_alog *a)
{
    take_new_output(a);
    char line[MS_ALOG_LINE_MAX];
    bool stuck = a->fd >= 0 && a->batch_len > 0 && !flush(a);
    for (unsigned i = 0; i < a->nrings && !stuck; i++) {
        ms_alog_ring *r = &a->rings[i];
        uint64_t t = r->tail;
        uint64_t h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        while (t < h) {
            if (a->fd >= 0 && BATCH_BYTES - a->batch_len < MS_ALOG_LINE_MAX && !flush(a)) {
                stuck = true; /* the rest waits in the ring */
                break;
            }
            const ms_alog_rec *rec = &r->recs[t % MS_ALOG_RING];
            if (a->fd >= 0) {
                a->batch_len += ms_alog_format(rec, a->batch + a->batch_len, BATCH_BYTES - a->batch_len);
                a->batch_lines++;
            } else {
                size_t n = ms_alog_format(rec, line, sizeof line);
                if (a->log && ms_log_raw(a->log, line, n))
                    __atomic_fetch_add(&a->lines, 1, __ATOMIC_RELAXED);
                else
                    drop_lines(a, 1);
            }
            t++;
            __atomic_store_n(&r->tail, t, __ATOMIC_RELEASE); /* the record is free again */
        }
    }
    if (a->fd >= 0 && a->batch_len)
        flush(a);
}

static void writer_main(void *arg)
{
    ms_alog *a = arg;
    uv_mutex_lock(&a->mu);
    while (!a->stopping) {
        uv_cond_timedwait(&a->cv, &a->mu, (uint64_t)MS_ALOG_DRAIN_MS * 1000000u);
        if (a->stopping)
            break;
        uv_mutex_unlock(&a->mu);
        drain(a);
        uv_mutex_lock(&a->mu);
    }
    uv_mutex_unlock(&a->mu);
}

bool ms_alog_start(ms_alog *a, char *why, size_t why_len)
{
    if (a->thread_started)
        return true;
    int rc = uv_thread_create(&a->thread, writer_main, a);
    if (rc != 0) {
        snprintf(why, why_len, "cannot start the access log's writer: %s", uv_strerror(rc));
        return false;
    }
    a->thread_started = true;
    return true;
}

ms_alog *ms_alog_new(unsigned nrings, const char *path, ms_log *log, bool start, char *why, size_t why_len)
{
    ms_alog *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    a->fd = -1;
    a->next_fd = -1;
    a->log = log;
    a->nrings = nrings;
    a->rings = calloc(nrings ? nrings : 1, sizeof *a->rings);
    a->batch = malloc(BATCH_BYTES);
    bool ok = a->rings && a->batch;
    for (unsigned i = 0; ok && i < nrings; i++)
        ok = (a->rings[i].recs = calloc(MS_ALOG_RING, sizeof(ms_alog_rec))) != NULL; /* touched as used */
    if (!ok || uv_mutex_init(&a->mu) != 0) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    if (uv_cond_init(&a->cv) != 0) {
        uv_mutex_destroy(&a->mu);
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    if (path && (a->fd = open_output(path, why, why_len)) < 0)
        goto fail_sync;
    if (start && !ms_alog_start(a, why, why_len))
        goto fail_sync;
    return a;
fail_sync:
    uv_cond_destroy(&a->cv);
    uv_mutex_destroy(&a->mu);
fail:
    if (a->fd >= 0)
        close(a->fd);
    for (unsigned i = 0; a->rings && i < nrings; i++)
        free(a->rings[i].recs);
    free(a->rings);
    free(a->batch);
    free(a);
    return NULL;
}

ms_alog_ring *ms_alog_ring_at(ms_alog *a, unsigned i)
{
    return i < a->nrings ? &a->rings[i] : NULL;
}

bool ms_alog_reopen(ms_alog *a, const char *path, char *why, size_t why_len)
{
    int fd = -1;
    if (path && (fd = open_output(path, why, why_len)) < 0)
        return false;
    uv_mutex_lock(&a->mu);
    if (a->switch_pending && a->next_fd >= 0)
        close(a->next_fd); /* never taken: replaced by this one */
    a->next_fd = fd;
    a->switch_pending = true;
    uv_mutex_unlock(&a->mu);
    return true;
}

void ms_alog_free(ms_alog *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        uv_mutex_lock(&a->mu);
        a->stopping = true;
        uv_cond_signal(&a->cv);
        uv_mutex_unlock(&a->mu);
        uv_thread_join(&a->thread);
    }
    /* what the rings still hold, with a bounded wait for a stuck output */
    uint64_t give_up = uv_hrtime() + (uint64_t)CLOSE_FLUSH_MS * 1000000u;
    for (;;) {
        drain(a);
        bool left = a->batch_len > 0;
        for (unsigned i = 0; i < a->nrings && !left; i++)
            left = a->rings[i].tail != __atomic_load_n(&a->rings[i].head, __ATOMIC_ACQUIRE);
        if (!left)
            break;
        if (uv_hrtime() >= give_up) {
            drop_lines(a, a->batch_lines);
            for (unsigned i = 0; i < a->nrings; i++)
                drop_lines(a, a->rings[i].head - a->rings[i].tail);
            break;
        }
        uv_sleep(10);
    }
    take_new_output(a); /* a reopened output never used */
    if (a->fd >= 0)
        close(a->fd);
    uv_cond_destroy(&a->cv);
    uv_mutex_destroy(&a->mu);
    for (unsigned i = 0; i < a->nrings; i++)
        free(a->rings[i].recs);
    free(a->rings);
    free(a->batch);
    free(a);
}

uint64_t ms_alog_lines(const ms_alog *a)
{
    return __atomic_load_n(&a->lines, __ATOMIC_RELAXED);
}

uint64_t ms_alog_dropped(const ms_alog *a)
{
    uint64_t n = __atomic_load_n(&a->dropped, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < a->nrings; i++)
        n += __atomic_load_n(&a->rings[i].dropped, __ATOMIC_RELAXED);
    return n;
}
