/* logs.c: output sink with a writer thread and a bounded byte queue, line
 * splitting, and per-process rings (see logs.h). The event loop only formats
 * and copies into the queue; the writer thread does the write(2)s: whole
 * lines, at most PIPE_BUF bytes at a time, each once poll() says the output
 * has room. The output's file status flags are not touched (stdout is shared
 * with the terminal and other processes). On close the writer has a
 * deadline: what it cannot write by then is dropped and counted. */
#include "fleet/logs.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CLOSE_FLUSH_MS 500   /* how long closing may spend writing what is queued */
#define CLOSE_GRACE_MS 250   /* then, at most this long for the writer to notice */

struct ms_log {
    int fd;
    bool json, color, quiet;
    uv_mutex_t mu;
    uv_cond_t cv;        /* the writer waits for lines */
    uv_cond_t done_cv;   /* closing waits for the writer */
    uv_thread_t thread;
    int wake_fd;         /* eventfd: wakes the writer out of poll() on close; -1: poll in slices */
    bool stopping;
    bool writer_done;
    uint64_t deadline;   /* uv_hrtime() by which closing gives up writing; set with stopping */
    char *q;             /* circular byte queue */
    size_t cap, head, len;
    uint64_t dropped;    /* lines */
    uint64_t dropped_reported;
    uint64_t dropped_at_close;
    uint64_t lines;
};

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* Drop the queued bytes [head, head + n) (whole lines), counting them. */
static void drop_queued(ms_log *log, size_t n, bool closing)
{
    size_t first = n < log->cap - log->head ? n : log->cap - log->head;
    uint64_t k = count_lines(log->q + log->head, first) + count_lines(log->q, n - first);
    __atomic_add_fetch(&log->dropped, k, __ATOMIC_RELAXED);
    if (closing)
        log->dropped_at_close += k;
    log->head = (log->head + n) % log->cap;
    log->len -= n;
}

/* Wait until fd can take a write of PIPE_BUF bytes (1), the wait should be
 * looked at again (0: woken, interrupted, deadline reached), or the output
 * is unusable (-1). deadline 0: none. */
static int wait_writable(ms_log *log, uint64_t deadline)
{
    struct pollfd pf[2] = { { .fd = log->fd, .events = POLLOUT }, { .fd = log->wake_fd, .events = POLLIN } };
    int timeout = -1;
    if (deadline) {
        uint64_t now = uv_hrtime();
        timeout = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    }
    if (log->wake_fd < 0 && (timeout < 0 || timeout > 100))
        timeout = 100; /* no eventfd: notice a close within 100ms */
    int r = poll(pf, log->wake_fd >= 0 ? 2 : 1, timeout);
    if (r <= 0)
        return 0;
    if (pf[1].revents) {
        uint64_t v;
        ssize_t rr = read(log->wake_fd, &v, sizeof v);
        (void)rr;
    }
    if (pf[0].revents & POLLNVAL)
        return -1;
    return pf[0].revents ? 1 : 0; /* POLLERR/POLLHUP: the write says what is wrong */
}

static void writer_main(void *arg)
{
    ms_log *log = arg;
    uv_mutex_lock(&log->mu);
    for (;;) {
        while (log->len == 0 && !log->stopping)
            uv_cond_wait(&log->cv, &log->mu);
        if (log->len == 0)
            break;
        if (log->stopping && uv_hrtime() >= log->deadline) {
            drop_queued(log, log->len, true); /* out of time: the rest cannot be written */
            continue;
        }
        /* Whole lines, at most PIPE_BUF bytes: a pipe that polls writable
         * takes that much without blocking, and lines from other writers
         * to the same pipe do not cut into ours. */
        size_t n = log->len;
        if (log->head + n > log->cap)
            n = log->cap - log->head;
        if (n > PIPE_BUF)
            n = PIPE_BUF;
        const char *p = log->q + log->head;
        if (n < log->len) {
            const char *nl = memrchr(p, '\n', n);
            if (nl)
                n = (size_t)(nl - p) + 1;
        }
        uint64_t deadline = log->stopping ? log->deadline : 0;
        uv_mutex_unlock(&log->mu);
        size_t done = 0;
        bool discard = false;
        int ready = wait_writable(log, deadline);
        if (ready > 0) {
            ssize_t w = write(log->fd, p, n);
            if (w > 0)
                done = (size_t)w;
            else if (w < 0 && errno != EINTR && errno != EAGAIN)
                discard = true; /* output gone: dropped, like a full queue */
        } else if (ready < 0) {
            discard = true;
        }
        uv_mutex_lock(&log->mu);
        if (discard)
            drop_queued(log, n, log->stopping);
        else if (done) {
            log->head = (log->head + done) % log->cap;
            log->len -= done;
        }
    }
    log->writer_done = true;
    uv_cond_broadcast(&log->done_cv);
    uv_mutex_unlock(&log->mu);
}

ms_log *ms_log_open(int fd, bool json, bool color)
{
    ms_log *log = calloc(1, sizeof *log);
    if (!log)
        return NULL;
    log->fd = fd;
    log->wake_fd = -1;
    log->json = json;
    log->color = color && !json;
    log->cap = MS_LOG_QUEUE_BYTES;
    log->q = malloc(log->cap);
    if (!log->q)
        goto fail;
    if (uv_mutex_init(&log->mu) != 0)
        goto fail;
    if (uv_cond_init(&log->cv) != 0) {
        uv_mutex_destroy(&log->mu);
        goto fail;
    }
    if (uv_cond_init(&log->done_cv) != 0) {
        uv_cond_destroy(&log->cv);
        uv_mutex_destroy(&log->mu);
        goto fail;
    }
    log->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* -1: the writer polls in slices */
    if (uv_thread_create(&log->thread, writer_main, log) != 0) {
        uv_cond_destroy(&log->done_cv);
        uv_cond_destroy(&log->cv);
        uv_mutex_destroy(&log->mu);
        goto fail;
    }
    return log;
fail:
    if (log->wake_fd >= 0)
        close(log->wake_fd);
    free(log->q);
    free(log);
    return NULL;
}

/* The last word when lines were lost at exit: on stderr, only if it has room
 * now (it may be the same stuck pipe). */
static void say_dropped_on_stderr(uint64_t total, uint64_t at_close)
{
    char line[160];
    int n = snprintf(line, sizeof line,
                     "mothership: %llu log lines dropped in all, %llu at exit: the output was not being read\n",
                     (unsigned long long)total, (unsigned long long)at_close);
    struct pollfd pf = { .fd = STDERR_FILENO, .events = POLLOUT };
    if (n > 0 && poll(&pf, 1, 0) == 1 && (pf.revents & POLLOUT)) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w;
    }
}

void ms_log_close(ms_log *log)
{
    if (!log)
        return;
    if (ms_log_dropped(log) > log->dropped_reported) {
        ms_log_field total = ms_log_num("total", (int64_t)ms_log_dropped(log));
        ms_log_event_fields(log, MS_WARN, NULL, "dropped", &total, 1, "%llu lines dropped in all: output too slow",
                            (unsigned long long)ms_log_dropped(log));
    }
    uv_mutex_lock(&log->mu);
    log->stopping = true;
    log->deadline = uv_hrtime() + (uint64_t)CLOSE_FLUSH_MS * 1000000;
    uv_cond_signal(&log->cv);
    uv_mutex_unlock(&log->mu);
    if (log->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(log->wake_fd, &one, sizeof one);
        (void)w;
    }
    /* The writer gives up at the deadline; should a write block all the
     * same (a pipe another process filled between poll and write), it is
     * left behind: it ends with the process. */
    uint64_t give_up = log->deadline + (uint64_t)CLOSE_GRACE_MS * 1000000;
    uv_mutex_lock(&log->mu);
    while (!log->writer_done) {
        uint64_t now = uv_hrtime();
        if (now >= give_up || uv_cond_timedwait(&log->done_cv, &log->mu, give_up - now) != 0)
            break;
    }
    bool done = log->writer_done;
    uint64_t stuck = 0; /* lines still queued behind a write that blocks */
    if (!done) {
        size_t first = log->len < log->cap - log->head ? log->len : log->cap - log->head;
        stuck = count_lines(log->q + log->head, first) + count_lines(log->q, log->len - first);
    }
    uint64_t at_close = log->dropped_at_close + stuck;
    uv_mutex_unlock(&log->mu);
    if (at_close > 0)
        say_dropped_on_stderr(ms_log_dropped(log) + stuck, at_close);
    if (!done) {
        pthread_detach((pthread_t)log->thread);
        return;
    }
    uv_thread_join(&log->thread);
    if (log->wake_fd >= 0)
        close(log->wake_fd);
    uv_cond_destroy(&log->done_cv);
    uv_cond_destroy(&log->cv);
    uv_mutex_destroy(&log->mu);
    free(log->q);
    free(log);
}

void ms_log_set_quiet(ms_log *log, bool quiet)
{
    uv_mutex_lock(&log->mu);
    log->quiet = quiet;
    uv_mutex_unlock(&log->mu);
}

/* Queue one formatted line; drop (and count) it if the queue is full.
 * Children's lines may fill three quarters of the queue; the rest is kept
 * for Mothership's own events, so that a flood of output cannot hide why
 * the fleet stopped. */
static bool enqueue_p(ms_log *log, const char *s, size_t n, bool event)
{
    uv_mutex_lock(&log->mu);
    log->lines++;
    if (log->quiet) {
        uv_mutex_unlock(&log->mu);
        return true;
    }
    char note[MS_LOG_JSON_MIN];
    size_t nn = 0;
    if (log->dropped > log->dropped_reported && log->cap - log->len >= n + sizeof note) {
        unsigned long long k = (unsigned long long)(log->dropped - log->dropped_reported);
        if (log->json) {
            char msg[96];
            int m = snprintf(msg, sizeof msg, "%llu lines dropped: output too slow", k);
            ms_log_field lines = ms_log_num("lines", (int64_t)k);
            ms_log_record r = { .level = MS_WARN, .source = "mothership", .instance = -1, .event = "dropped",
                                .fields = &lines, .nfields = 1, .msg = msg,
                                .msg_len = m < 0 ? 0 : (size_t)m };
            nn = ms_log_format_json(note, sizeof note, &r);
        } else {
            nn = (size_t)snprintf(note, sizeof note, "mothership | %llu lines dropped: output too slow\n", k);
        }
        log->dropped_reported = log->dropped;
    }
    size_t room = event ? log->cap - log->len : (log->cap * 3 / 4 > log->len ? log->cap * 3 / 4 - log->len : 0);
    if (room < n + nn) {
        log->dropped++;
        uv_mutex_unlock(&log->mu);
        return false;
    }
    const char *parts[2] = { note, s };
    size_t lens[2] = { nn, n };
    for (int k = 0; k < 2; k++) {
        size_t tail = (log->head + log->len) % log->cap;
        size_t first = lens[k] < log->cap - tail ? lens[k] : log->cap - tail;
        memcpy(log->q + tail, parts[k], first);
        memcpy(log->q, parts[k] + first, lens[k] - first);
        log->len += lens[k];
    }
    uv_cond_signal(&log->cv);
    uv_mutex_unlock(&log->mu);
    return true;
}

static void enqueue(ms_log *log, const char *s, size_t n)
{
    enqueue_p(log, s, n, false);
}

bool ms_log_raw(ms_log *log, const char *line, size_t len)
{
    return enqueue_p(log, line, len, false);
}

uint64_t ms_log_dropped(const ms_log *log)
{
    return __atomic_load_n(&log->dropped, __ATOMIC_RELAXED);
}

uint64_t ms_log_lines(const ms_log *log)
{
    return __atomic_load_n(&log->lines, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- formatting */
/* The text format's local time of day with milliseconds. */
static size_t timestamp_local(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n, ".%03ld", ts.tv_nsec / 1000000);
    return n;
}

static const char *const colours[] = { "\033[36m", "\033[32m", "\033[33m", "\033[35m", "\033[34m", "\033[96m",
                                        "\033[92m", "\033[93m", "\033[95m", "\033[94m" };

void ms_log_child(ms_log *log, const char *name, const char *base, unsigned instance, unsigned colour,
                  ms_stream stream, const char *line, size_t len, bool continued)
{
    char buf[MS_LOG_LINE_MAX * 6 + 512]; /* JSON: a control byte takes six ("\u0001") */
    size_t n = 0;
    if (len > MS_LOG_LINE_MAX)
        len = MS_LOG_LINE_MAX;
    if (log->json) {
        ms_log_record r = { .level = MS_INFO, .source = base ? base : name, .instance = base ? (int)instance : -1,
                            .stream = stream == MS_STDERR ? "stderr" : "stdout", .continued = continued,
                            .msg = line, .msg_len = len };
        n = ms_log_format_json(buf, sizeof buf, &r);
    } else {
        n += timestamp_local(buf, sizeof buf);
        const char *c0 = log->color ? colours[colour % (sizeof colours / sizeof colours[0])] : "";
        const char *c1 = log->color ? "\033[0m" : "";
        n += (size_t)snprintf(buf + n, sizeof buf - n, " %s%-12s%s %s ", c0, name, c1,
                              stream == MS_STDERR ? (continued ? "!+" : "!") : (continued ? "|+" : "|"));
        if (n + len + 2 > sizeof buf)
            len = sizeof buf - n - 2;
        memcpy(buf + n, line, len);
        n += len;
        buf[n++] = '\n';
    }
    enqueue(log, buf, n);
}

static void event_line(ms_log *log, ms_level level, const char *ship, const char *event,
                       const ms_log_field *fields, size_t nfields, const char *fmt, va_list ap)
{
    /* every event has a name, documented in docs/cli.md (a test checks) */
    char msg[2048];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof msg ? sizeof msg - 1 : (size_t)m;
    char buf[6144];
    size_t n = 0;
    if (log->json) {
        ms_log_field all[16];
        size_t k = 0;
        if (ship)
            all[k++] = ms_log_str("ship", ship);
        for (size_t i = 0; i < nfields && k < sizeof all / sizeof all[0]; i++)
            all[k++] = fields[i];
        ms_log_record r = { .level = level, .source = "mothership", .instance = -1, .event = event,
                            .fields = all, .nfields = k, .msg = msg, .msg_len = mlen };
        n = ms_log_format_json(buf, sizeof buf, &r);
    } else {
        /* a message may quote what a client sent (an entry name): its control
         * bytes are shown escaped, so it cannot start a line of its own */
        char esc[sizeof msg];
        size_t e = 0;
        for (size_t i = 0; i < mlen; i++) {
            unsigned char ch = (unsigned char)msg[i];
            if (ch >= 0x20 && ch != 0x7f) {
                if (e + 1 >= sizeof esc)
                    break;
                esc[e++] = (char)ch;
                continue;
            }
            if (e + 5 >= sizeof esc)
                break;
            if (ch == '\n' || ch == '\r' || ch == '\t') {
                esc[e++] = '\\';
                esc[e++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
            } else {
                e += (size_t)snprintf(esc + e, sizeof esc - e, "\\x%02x", ch);
            }
        }
        if (e > 0)
            memcpy(msg, esc, e);
        mlen = e;
        n += timestamp_local(buf, sizeof buf);
        const char *b0 = "", *b1 = "";
        if (log->color) {
            b0 = level == MS_ERROR ? "\033[1;31m" : level == MS_WARN ? "\033[1;33m" : "\033[1m";
            b1 = "\033[0m";
        }
        n += (size_t)snprintf(buf + n, sizeof buf - n, " %s%-12s | %.*s%s\n", b0, "mothership", (int)mlen, msg, b1);
    }
    enqueue_p(log, buf, n < sizeof buf ? n : sizeof buf - 1, true);
}

void ms_log_eventv(ms_log *log, ms_level level, const char *ship, const char *event, const char *fmt,
                   va_list ap)
{
    event_line(log, level, ship, event, NULL, 0, fmt, ap);
}

void ms_log_event(ms_log *log, ms_level level, const char *ship, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    event_line(log, level, ship, event, NULL, 0, fmt, ap);
    va_end(ap);
}

void ms_log_event_fields(ms_log *log, ms_level level, const char *ship, const char *event,
                         const ms_log_field *fields, size_t nfields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    event_line(log, level, ship, event, fields, nfields, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- lines */
/* How many bytes at the end of p[0..n) are the start of a UTF-8 sequence
 * that goes on past n (0 when none): a split line is cut before them, so
 * that a character is never shown as replacement characters on both sides
 * of the cut. */
static size_t utf8_incomplete_tail(const char *p, size_t n)
{
    for (size_t k = 1; k <= 3 && k < n; k++) {
        unsigned char b = (unsigned char)p[n - k];
        if ((b & 0xc0) == 0x80)
            continue; /* a continuation byte: look further back */
        size_t seq = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
        return seq > k ? k : 0;
    }
    return 0;
}

void ms_linebuf_feed(ms_linebuf *lb, const char *data, size_t len, ms_line_fn fn, void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        size_t room = MS_LOG_LINE_MAX - lb->len;
        if (take >= room) {
            /* the line is too long: emit a full piece (less a character it
             * would cut, which starts the next one) and go on */
            memcpy(lb->buf + lb->len, data, room);
            lb->len += room;
            size_t carry = utf8_incomplete_tail(lb->buf, lb->len);
            fn(arg, lb->buf, lb->len - carry, lb->continued);
            memmove(lb->buf, lb->buf + lb->len - carry, carry);
            lb->len = carry;
            lb->continued = true;
            data += room;
            len -= room;
            continue;
        }
        memcpy(lb->buf + lb->len, data, take);
        lb->len += take;
        data += take;
        len -= take;
        if (nl) {
            size_t l = lb->len;
            if (l > 0 && lb->buf[l - 1] == '\r')
                l--;
            /* a split line's last piece may be empty only if it had no content at all */
            if (!(lb->continued && l == 0))
                fn(arg, lb->buf, l, lb->continued);
            lb->len = 0;
            lb->continued = false;
            data++;
            len--;
        }
    }
}

void ms_linebuf_flush(ms_linebuf *lb, ms_line_fn fn, void *arg)
{
    if (lb->len > 0)
        fn(arg, lb->buf, lb->len, lb->continued);
    lb->len = 0;
    lb->continued = false;
}

/* ---------------------------------------------------------------- rings */
void ms_ring_init(ms_ring *r)
{
    memset(r, 0, sizeof *r);
}

void ms_ring_free(ms_ring *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->lines[(r->head + i) % r->cap].text);
    free(r->lines);
    memset(r, 0, sizeof *r);
}

static void ring_drop_oldest(ms_ring *r)
{
    ms_ring_line *l = &r->lines[r->head];
    r->bytes -= l->len;
    free(l->text);
    l->text = NULL;
    r->head = (r->head + 1) % r->cap;
    r->count--;
}

void ms_ring_add(ms_ring *r, uint64_t seq, ms_stream stream, const char *text, size_t len)
{
    if (len > MS_LOG_LINE_MAX)
        len = MS_LOG_LINE_MAX;
    while (r->count > 0 && r->bytes + len > MS_LOG_RING_BYTES)
        ring_drop_oldest(r);
    if (r->count == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 64;
        if (ncap > 4096) {
            ring_drop_oldest(r);
        } else {
            ms_ring_line *n = malloc(ncap * sizeof *n);
            if (!n)
                return; /* history is best effort */
            for (size_t i = 0; i < r->count; i++)
                n[i] = r->lines[(r->head + i) % r->cap];
            free(r->lines);
            r->lines = n;
            r->cap = ncap;
            r->head = 0;
        }
    }
    char *t = malloc(len + 1);
    if (!t)
        return;
    memcpy(t, text, len);
    t[len] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ms_ring_line *l = &r->lines[(r->head + r->count) % r->cap];
    *l = (ms_ring_line){ .seq = seq, .time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                         .stream = stream, .len = len, .text = t };
    r->count++;
    r->bytes += len;
    r->total++;
}

const ms_ring_line *ms_ring_at(const ms_ring *r, size_t i)
{
    return i < r->count ? &r->lines[(r->head + i) % r->cap] : NULL;
}
