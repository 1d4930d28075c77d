/* fuzz_loglines.c: libFuzzer target for the handling of children's output
 * (src/fleet/logs.c): line splitting (ms_linebuf_feed/flush), the
 * per-process history ring (ms_ring_add) and the JSON and text rendering of
 * a child's line (ms_log_child, whose json_escape must cope with any bytes:
 * invalid UTF-8, control characters, quotes). A child can print anything.
 *
 * The input is one child's output stream. Its first byte seeds the read
 * sizes (1..(1 + (b & 63) * 64) bytes, drawn from a small PRNG; bit 7 set:
 * all at once), like pipe reads of varying size. Every line the splitter
 * emits goes to a ring and to two log sinks opened once on /dev/null (one
 * JSON, one coloured text; their writer threads live for the whole run and
 * are closed at exit). The sinks are quiet (lines are formatted, escaped
 * and counted, but not queued: waking the writer thread per line would cost
 * most of the time) except the JSON one when bit 6 of the first byte is
 * set, which also runs the bounded queue. Invariants: a line is at most MS_LOG_LINE_MAX bytes
 * and contains no '\n'; the ring's newest line is the one just added, its
 * byte count stays within MS_LOG_RING_BYTES and equals the sum of its lines;
 * and no byte is lost or invented: the emitted lines, concatenated, equal
 * the input with every '\n' and '\r' removed (a '\r' before '\n' is dropped
 * by the splitter; other '\r' bytes are kept, so both sides drop them all).
 * Seed corpus: tests/fuzz/corpus/loglines/. Run with e.g.
 *   fuzz_loglines -max_total_time=60 tests/fuzz/corpus/loglines
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet/logs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static ms_log *json_log, *text_log;
static int null_fd = -1;

static void close_logs(void)
{
    ms_log_close(json_log);
    ms_log_close(text_log);
    json_log = text_log = NULL;
    if (null_fd >= 0)
        close(null_fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    check(null_fd >= 0);
    json_log = ms_log_open(null_fd, true, false);
    text_log = ms_log_open(null_fd, false, true);
    check(json_log && text_log);
    ms_log_set_quiet(text_log, true);
    atexit(close_logs);
    return 0;
}

typedef struct sink {
    ms_ring ring;
    uint64_t seq;
    char *seen;          /* the lines' bytes without '\r', concatenated */
    size_t seen_len, seen_cap;
    unsigned n;
} sink;

static void on_line(void *arg, const char *line, size_t len, bool continued)
{
    sink *s = arg;
    check(len <= MS_LOG_LINE_MAX);
    check(memchr(line, '\n', len) == NULL);

    for (size_t i = 0; i < len; i++) {
        if (line[i] == '\r')
            continue;
        check(s->seen_len < s->seen_cap);
        s->seen[s->seen_len++] = line[i];
    }

    ms_stream st = (s->n & 1) ? MS_STDERR : MS_STDOUT;
    ms_ring_add(&s->ring, ++s->seq, st, line, len);
    ms_ring *r = &s->ring;
    check(r->count >= 1 && r->count <= r->cap);
    check(r->bytes <= MS_LOG_RING_BYTES);
    const ms_ring_line *last = ms_ring_at(r, r->count - 1);
    check(last && last->seq == s->seq && last->stream == st && last->len == len);
    check(memcmp(last->text, line, len) == 0 && last->text[len] == '\0');
    check(ms_ring_at(r, r->count) == NULL);

    /* every third line as an instance ("web#1", base "web", instance 1) */
    bool inst = s->n % 3 == 1;
    ms_log_child(json_log, (s->n % 7 == 3) ? "we\"b\\\x01\xc3" : inst ? "web#1" : "web", inst ? "web" : NULL,
                 inst ? 1 : 0, s->n, st, line, len, continued);
    ms_log_child(text_log, "worker", NULL, 0, s->n, st, line, len, continued);
    s->n++;
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > (1u << 20))
        return 0;
    uint8_t mode = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;

    sink s;
    memset(&s, 0, sizeof s);
    ms_ring_init(&s.ring);
    s.seen_cap = n + 1;
    s.seen = malloc(s.seen_cap);
    check(s.seen != NULL);

    ms_log_set_quiet(json_log, !(mode & 0x40));
    uint64_t lines_before = ms_log_lines(json_log);

    static ms_linebuf lb; /* 8 KiB: keep it off the stack */
    memset(&lb, 0, sizeof lb);
    uint32_t rng = 0x2545f491u ^ mode;
    size_t maxchunk = 1 + (size_t)(mode & 63) * 64;
    size_t off = 0;
    while (off < n) {
        size_t take = n - off;
        if (!(mode & 0x80)) {
            size_t want = 1 + next_rand(&rng) % maxchunk;
            if (want < take)
                take = want;
        }
        ms_linebuf_feed(&lb, in + off, take, on_line, &s);
        check(lb.len < MS_LOG_LINE_MAX);
        off += take;
    }
    ms_linebuf_flush(&lb, on_line, &s);
    check(lb.len == 0 && !lb.continued);

    /* no byte lost or invented (modulo line ends) */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n' || in[i] == '\r')
            continue;
        check(k < s.seen_len && s.seen[k] == in[i]);
        k++;
    }
    check(k == s.seen_len);

    /* the ring: bounded, and its byte count is the sum of its lines */
    size_t bytes = 0;
    for (size_t i = 0; i < s.ring.count; i++) {
        const ms_ring_line *l = ms_ring_at(&s.ring, i);
        check(l != NULL && l->len <= MS_LOG_LINE_MAX);
        if (i > 0)
            check(l->seq > ms_ring_at(&s.ring, i - 1)->seq);
        bytes += l->len;
    }
    check(bytes == s.ring.bytes && bytes <= MS_LOG_RING_BYTES);
    check(s.ring.total == s.n);
    check(ms_log_lines(json_log) - lines_before == s.n);

    ms_ring_free(&s.ring);
    free(s.seen);
    return 0;
}
