/* fuzz_ctl.c: libFuzzer target for the control socket's request handling
 * (src/cli/ctl_proto.c), the same code ctl.c runs per connection, without
 * sockets.
 *
 * The input is one connection's byte stream. The first byte picks how it is
 * cut into reads (1..64 bytes, or all at once); the rest is fed through
 * ms_ctl_session_feed() exactly as the server does: after each request or
 * answer, the bytes that follow are fed again, until the stream is used up
 * or an answer closes. Invariants: consumed never exceeds what was offered;
 * a request has a known op and the fields its op needs (a non-empty array of
 * names, a signal 1..64, a bounded line count); an answer is a well-formed
 * head with a status the socket may send and a Content-Length matching its
 * JSON body; errors of the HTTP layer close; a closed session stays closed.
 * Seed corpus: tests/fuzz/corpus/ctl/. Run with e.g.
 *   fuzz_ctl -max_total_time=60 tests/fuzz/corpus/ctl
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ctl_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_request(const ms_ctl_request *q)
{
    check(q->op >= MS_CTL_STATUS && q->op <= MS_CTL_DRAIN);
    if (q->op == MS_CTL_RESTART || q->op == MS_CTL_STOP || q->op == MS_CTL_START) {
        check(json_is_array(q->names) && json_array_size(q->names) > 0);
        size_t i;
        json_t *v;
        json_array_foreach(q->names, i, v) check(json_is_string(v) && json_string_length(v) > 0 &&
                                                 json_string_length(v) < MS_CTL_MAX_NAME);
    } else {
        check(q->names == NULL);
    }
    if (q->op == MS_CTL_SIGNAL)
        check(q->signo >= 1 && q->signo <= 64 && q->name[0] != '\0');
    if (q->op == MS_CTL_LOGS)
        check(q->n <= MS_CTL_MAX_LOG_LINES);
    check(memchr(q->name, '\0', sizeof q->name) != NULL);
}

static void check_answer(const ms_ctl_response *r)
{
    int st = r->status;
    check(st == 400 || st == 404 || st == 405 || st == 413 || st == 414 || st == 431);
    if (st == 413 || st == 414 || st == 431)
        check(r->close);
    const char *out = r->out.data;
    check(r->out.len > 12 && memcmp(out, "HTTP/1.1 ", 9) == 0);
    const char *end = memmem(out, r->out.len, "\r\n\r\n", 4);
    check(end != NULL);
    const char *cl = memmem(out, (size_t)(end - out), "\r\nContent-Length: ", 18);
    check(cl != NULL);
    size_t n = strtoul(cl + 18, NULL, 10);
    size_t body = r->out.len - (size_t)(end + 4 - out);
    check(body == n);
    json_t *j = json_loadb(end + 4, body, 0, NULL);
    check(json_is_string(json_object_get(j, "error")));
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = data[0] % 65;
    data++;
    size--;
    if (step == 0)
        step = size ? size : 1;

    ms_ctl_session s;
    ms_ctl_response r;
    ms_ctl_session_init(&s);
    ms_ctl_response_init(&r);
    size_t offered = 0, pos = 0;
    int closed = 0;
    while (!closed && (pos < offered || offered < size)) {
        if (pos == offered)
            offered += step < size - offered ? step : size - offered;
        size_t used = 0;
        bool keep = false;
        ms_ctl_request q;
        memset(&q, 0, sizeof q);
        ms_ctl_action act = ms_ctl_session_feed(&s, (const char *)data + pos, offered - pos, &used, &q, &keep, &r);
        check(used <= offered - pos);
        pos += used;
        if (act == MS_CTL_NEED_MORE) {
            check(pos == offered);
            continue;
        }
        if (act == MS_CTL_REQUEST) {
            check_request(&q);
            ms_ctl_request_clear(&q);
            if (!keep)
                closed = 1; /* the server answers and closes */
            continue;
        }
        check_answer(&r);
        if (r.close)
            closed = 1;
    }
    if (closed && s.finished) {
        size_t used = 1;
        bool keep;
        ms_ctl_request q;
        check(ms_ctl_session_feed(&s, "GET /v1/status HTTP/1.1\r\n\r\n", 27, &used, &q, &keep, &r) == MS_CTL_ANSWER);
        check(used == 0 && r.close);
    }
    ms_ctl_response_free(&r);
    ms_ctl_session_free(&s);
    return 0;
}
