/* fuzz_metrics_http.c: libFuzzer target for the metrics endpoint's request
 * handling (src/metrics/session.c), the same code server.c runs per
 * connection, without sockets.
 *
 * The input is one connection's byte stream. The first byte picks how it is
 * cut into reads (1..64 bytes, or all at once), like a client writing in
 * pieces; the rest is fed through ms_metrics_session_feed() exactly as the
 * server does: after each response, the bytes that follow are fed again,
 * until the stream is used up or the session asks to close. Invariants:
 * consumed never exceeds what was offered, every response has a well-formed
 * head with a status the endpoint may send and a Content-Length matching the
 * body (or a HEAD's empty body), errors always close, and a closed session
 * stays closed.
 * Seed corpus: tests/fuzz/corpus/metrics/. Run with e.g.
 *   fuzz_metrics_http -max_total_time=60 tests/fuzz/corpus/metrics
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/prom.h"
#include "metrics/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int healthy;

static void render(void *ctx, ms_buf *out)
{
    (void)ctx;
    ms_prom p;
    ms_prom_init(&p, out);
    ms_prom_label l[] = {{"ship", "we\"b\n"}, {"group", "g\\"}};
    ms_prom_gauge_i64(&p, "mothership_ship_status", "State.", l, 2, 1);
    static const double bounds[] = {0.01, 0.1, 1};
    static const uint64_t counts[] = {1, 2, 3, 4};
    ms_prom_histogram(&p, "mothership_x_seconds", "X.", l, 2, bounds, counts, 3, 1.25);
}

static int health(void *ctx, ms_buf *body)
{
    (void)ctx;
    healthy = !healthy;
    ms_buf_puts(body, healthy ? "{\"status\":\"up\"}" : "starting\n");
    return healthy ? 200 : 503;
}

static void check_response(const ms_metrics_response *r, ms_metrics_action act)
{
    int st = r->status;
    check(st == 200 || st == 400 || st == 404 || st == 405 || st == 413 || st == 414 ||
          st == 431 || st == 500 || st == 503);
    if (st == 400 || st == 413 || st == 414 || st == 431)
        check(act == MS_METRICS_RESPOND_CLOSE);
    check(r->head.len > 12 && memcmp(r->head.data, "HTTP/1.1 ", 9) == 0);
    check(r->head.len >= 4 && memcmp(r->head.data + r->head.len - 4, "\r\n\r\n", 4) == 0);
    check(strlen(r->head.data) == r->head.len);
    const char *cl = strstr(r->head.data, "\r\nContent-Length: ");
    check(cl != NULL);
    size_t n = strtoul(cl + 18, NULL, 10);
    check(r->body.len == n || r->body.len == 0);
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

    ms_metrics_handlers h = {.ctx = NULL, .render_metrics = render, .health = health, .ready = health};
    ms_metrics_session s;
    ms_metrics_response r;
    ms_metrics_session_init(&s);
    ms_metrics_response_init(&r);

    /* Like server.c: a read buffer holding [pos, len) unprocessed bytes. */
    size_t offered = 0; /* bytes "received" so far */
    size_t pos = 0;
    int closed = 0;
    while (!closed && (pos < offered || offered < size)) {
        if (pos == offered) {
            offered += step < size - offered ? step : size - offered;
        }
        size_t used = 0;
        ms_metrics_action act = ms_metrics_session_feed(&s, &h, (const char *)data + pos,
                                                        offered - pos, &used, &r);
        check(used <= offered - pos);
        pos += used;
        if (act == MS_METRICS_NEED_MORE) {
            check(pos == offered);
            check(r.head.len == 0);
            continue;
        }
        check_response(&r, act);
        if (act == MS_METRICS_RESPOND_CLOSE)
            closed = 1;
    }
    if (closed) {
        size_t used = 1;
        check(ms_metrics_session_feed(&s, &h, "GET / HTTP/1.1\r\n\r\n", 18, &used, &r) ==
              MS_METRICS_RESPOND_CLOSE);
        check(used == 0 && r.head.len == 0);
    }
    ms_metrics_response_free(&r);
    return 0;
}
