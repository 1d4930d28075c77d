/* test_metrics.c: unit tests of the metrics endpoint.
 *
 * - prom.c: bounded buffer, value formatting, label escaping, exact text of
 *   counters, gauges and histograms;
 * - session.c: requests fed without sockets (byte by byte, limits);
 * - server.c: real round trips on 127.0.0.1 (and ::1 when available). The
 *   server runs on the test's loop in the main thread; a client thread with
 *   plain blocking sockets (5 s receive timeout so nothing hangs) runs the
 *   exchanges and records the first failed check, then asks the loop through
 *   a uv_async to close the server; the test then asserts uv_loop_close()
 *   succeeds, i.e. no handle was left open.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/prom.h"
#include "metrics/procstat.h"
#include "metrics/server.h"
#include "metrics/session.h"

/* ---- prom.c ---- */

static void test_buf_cap(void **state)
{
    (void)state;
    ms_buf b;
    ms_buf_init(&b, 10);
    assert_true(ms_buf_append(&b, "12345678", 8));
    assert_false(ms_buf_append(&b, "abc", 3));
    assert_true(ms_buf_failed(&b));
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    assert_false(ms_buf_puts(&b, "x")); /* sticky */
    assert_false(ms_buf_printf(&b, "%d", 1));
    ms_buf_reset(&b);
    assert_false(ms_buf_failed(&b));
    assert_true(ms_buf_printf(&b, "%s-%d", "ab", 42));
    assert_string_equal(b.data, "ab-42");
    assert_false(ms_buf_printf(&b, "%s", "too long!"));
    assert_string_equal(b.data, "ab-42");
    ms_buf_free(&b);

    /* printf longer than the internal scratch buffer */
    ms_buf_init(&b, 0);
    char big[1001];
    memset(big, 'z', 1000);
    big[1000] = '\0';
    assert_true(ms_buf_printf(&b, "<%s>", big));
    assert_int_equal(b.len, 1002);
    assert_int_equal(b.data[1001], '>');
    assert_int_equal(b.data[1002], '\0');
    ms_buf_free(&b);
}

static void test_format_double(void **state)
{
    (void)state;
    char s[32];
    ms_prom_format_double(s, 0.1);
    assert_string_equal(s, "0.1");
    ms_prom_format_double(s, 1e-3);
    assert_string_equal(s, "0.001");
    ms_prom_format_double(s, 42.0);
    assert_string_equal(s, "42");
    ms_prom_format_double(s, 1.0 / 3.0);
    assert_string_equal(s, "0.33333333333333331");
    ms_prom_format_double(s, -2.5e21);
    assert_string_equal(s, "-2.5e+21");
    ms_prom_format_double(s, NAN);
    assert_string_equal(s, "NaN");
    ms_prom_format_double(s, INFINITY);
    assert_string_equal(s, "+Inf");
    ms_prom_format_double(s, -INFINITY);
    assert_string_equal(s, "-Inf");
}

static void test_escape(void **state)
{
    (void)state;
    ms_buf b;
    ms_buf_init(&b, 0);
    ms_prom_escape_label_value(&b, "a\\b\"c\nd");
    assert_string_equal(b.data, "a\\\\b\\\"c\\nd");
    ms_buf_reset(&b);
    ms_prom_escape_label_value(&b, "");
    assert_int_equal(b.len, 0);

    ms_prom p;
    ms_buf_reset(&b);
    ms_prom_init(&p, &b);
    ms_prom_label l[] = {{"ship", "we\"b\\1\n"}, {"group", "front"}};
    ms_prom_counter_u64(&p, "mothership_ship_restarts_total", "Restarts\\ of\na ship.", l, 2, 3);
    assert_string_equal(b.data,
                        "# HELP mothership_ship_restarts_total Restarts\\\\ of\\na ship.\n"
                        "# TYPE mothership_ship_restarts_total counter\n"
                        "mothership_ship_restarts_total{ship=\"we\\\"b\\\\1\\n\",group=\"front\"} 3\n");
    ms_buf_free(&b);

    assert_true(ms_prom_valid_metric_name("a:b_c9"));
    assert_false(ms_prom_valid_metric_name("9a"));
    assert_false(ms_prom_valid_metric_name("a-b"));
    assert_false(ms_prom_valid_metric_name(""));
    assert_true(ms_prom_valid_label_name("ship_1"));
    assert_false(ms_prom_valid_label_name("__name"));
    assert_false(ms_prom_valid_label_name("a:b"));
}

static void test_families(void **state)
{
    (void)state;
    ms_buf b;
    ms_buf_init(&b, 0);
    ms_prom p;
    ms_prom_init(&p, &b);
    ms_prom_label web[] = {{"ship", "web"}, {"group", "front"}};
    ms_prom_label api[] = {{"ship", "api"}, {"group", "back"}};
    ms_prom_gauge_i64(&p, "mothership_ship_status", "State of each ship.", web, 2, 2);
    ms_prom_gauge_i64(&p, "mothership_ship_status", "State of each ship.", api, 2, -1);
    ms_prom_gauge_double(&p, "mothership_uplink_seconds", "Uplink check time.", NULL, 0, 0.25);
    ms_prom_counter_double(&p, "mothership_cpu_seconds_total", NULL, NULL, 0, 1.5);
    ms_prom_gauge_i64(&p, "mothership_fleet_ships_total", "Ships in the fleet.", NULL, 0, 2);
    ms_prom_family(&p, "mothership_up", MS_PROM_UNTYPED, "Up.");
    assert_false(ms_buf_failed(&b));
    assert_string_equal(b.data,
                        "# HELP mothership_ship_status State of each ship.\n"
                        "# TYPE mothership_ship_status gauge\n"
                        "mothership_ship_status{ship=\"web\",group=\"front\"} 2\n"
                        "mothership_ship_status{ship=\"api\",group=\"back\"} -1\n"
                        "# HELP mothership_uplink_seconds Uplink check time.\n"
                        "# TYPE mothership_uplink_seconds gauge\n"
                        "mothership_uplink_seconds 0.25\n"
                        "# TYPE mothership_cpu_seconds_total counter\n"
                        "mothership_cpu_seconds_total 1.5\n"
                        "# HELP mothership_fleet_ships_total Ships in the fleet.\n"
                        "# TYPE mothership_fleet_ships_total gauge\n"
                        "mothership_fleet_ships_total 2\n"
                        "# HELP mothership_up Up.\n"
                        "# TYPE mothership_up untyped\n");
    ms_buf_free(&b);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.005, 0.1, 1, 10};
    uint64_t counts[5] = {0};
    double sum = 0;
    static const double obs[] = {0.001, 0.05, 0.1, 5, 7, 10, 11};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
        counts[ms_prom_bucket_index(bounds, 4, obs[i])]++;
        sum += obs[i];
    }
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 2);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[3], 3);
    assert_int_equal(counts[4], 1);

    ms_buf b;
    ms_buf_init(&b, 0);
    ms_prom p;
    ms_prom_init(&p, &b);
    ms_prom_label l[] = {{"ship", "web"}};
    assert_true(sum > 33.15 && sum < 33.152);
    ms_prom_histogram(&p, "mothership_request_seconds", "Request latency.", l, 1, bounds, counts,
                      4, 17.5);
    ms_prom_histogram(&p, "mothership_request_seconds", "Request latency.", NULL, 0, bounds,
                      counts, 4, 0.5);
    assert_string_equal(b.data,
                        "# HELP mothership_request_seconds Request latency.\n"
                        "# TYPE mothership_request_seconds histogram\n"
                        "mothership_request_seconds_bucket{ship=\"web\",le=\"0.005\"} 1\n"
                        "mothership_request_seconds_bucket{ship=\"web\",le=\"0.1\"} 3\n"
                        "mothership_request_seconds_bucket{ship=\"web\",le=\"1\"} 3\n"
                        "mothership_request_seconds_bucket{ship=\"web\",le=\"10\"} 6\n"
                        "mothership_request_seconds_bucket{ship=\"web\",le=\"+Inf\"} 7\n"
                        "mothership_request_seconds_sum{ship=\"web\"} 17.5\n"
                        "mothership_request_seconds_count{ship=\"web\"} 7\n"
                        "mothership_request_seconds_bucket{le=\"0.005\"} 1\n"
                        "mothership_request_seconds_bucket{le=\"0.1\"} 3\n"
                        "mothership_request_seconds_bucket{le=\"1\"} 3\n"
                        "mothership_request_seconds_bucket{le=\"10\"} 6\n"
                        "mothership_request_seconds_bucket{le=\"+Inf\"} 7\n"
                        "mothership_request_seconds_sum 0.5\n"
                        "mothership_request_seconds_count 7\n");
    ms_buf_free(&b);

    assert_int_equal(ms_prom_bucket_index(bounds, 4, -1), 0);
    assert_int_equal(ms_prom_bucket_index(bounds, 4, 1), 2);
    assert_int_equal(ms_prom_bucket_index(bounds, 4, 1.0001), 3);
    assert_int_equal(ms_prom_bucket_index(bounds, 0, 1), 0);
}

/* ---- handlers used by the session and server tests ---- */

typedef struct test_ctx {
    atomic_int healthy;
} test_ctx;

static void render(void *ctx, ms_buf *out)
{
    (void)ctx;
    ms_prom p;
    ms_prom_init(&p, out);
    ms_prom_label l[] = {{"ship", "web"}, {"group", "front"}};
    ms_prom_gauge_i64(&p, "mothership_ship_status", "State.", l, 2, 1);
    ms_prom_gauge_i64(&p, "mothership_fleet_ships_total", "Ships.", NULL, 0, 1);
}

static const char expected_metrics[] = "# HELP mothership_ship_status State.\n"
                                       "# TYPE mothership_ship_status gauge\n"
                                       "mothership_ship_status{ship=\"web\",group=\"front\"} 1\n"
                                       "# HELP mothership_fleet_ships_total Ships.\n"
                                       "# TYPE mothership_fleet_ships_total gauge\n"
                                       "mothership_fleet_ships_total 1\n";

static int health(void *ctx, ms_buf *body)
{
    test_ctx *t = ctx;
    if (atomic_load(&t->healthy)) {
        ms_buf_puts(body, "{\"status\":\"up\"}\n");
        return 200;
    }
    ms_buf_puts(body, "starting\n");
    return 503;
}

static void render_huge(void *ctx, ms_buf *out)
{
    (void)ctx;
    static char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    while (!ms_buf_failed(out))
        ms_buf_append(out, chunk, sizeof chunk);
}

/* ---- session.c ---- */

static ms_metrics_action feed_all(ms_metrics_session *s, const ms_metrics_handlers *h,
                                  const char *req, ms_metrics_response *r, size_t *used)
{
    return ms_metrics_session_feed(s, h, req, strlen(req), used, r);
}

static void test_session(void **state)
{
    (void)state;
    test_ctx ctx = {0};
    ms_metrics_handlers h = {.ctx = &ctx, .render_metrics = render, .health = health};
    ms_metrics_session s;
    ms_metrics_response r;
    ms_metrics_response_init(&r);
    size_t used;

    /* byte by byte */
    ms_metrics_session_init(&s);
    const char *req = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET";
    size_t n = strlen(req) - 3;
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(ms_metrics_session_feed(&s, &h, req + i, 1, &used, &r),
                         MS_METRICS_NEED_MORE);
        assert_int_equal(used, 1);
    }
    assert_int_equal(ms_metrics_session_feed(&s, &h, req + n - 1, 4, &used, &r),
                     MS_METRICS_RESPOND);
    assert_int_equal(used, 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, expected_metrics);
    char head[512];
    snprintf(head, sizeof head,
             "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
             "Content-Length: %zu\r\nCache-Control: no-store\r\n\r\n",
             strlen(expected_metrics));
    assert_string_equal(r.head.data, head);

    /* a body is read and ignored; chunked too */
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &h,
                              "POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n0\r\n\r\n",
                              &r, &used),
                     MS_METRICS_RESPOND);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head.data, "\r\nAllow: GET, HEAD\r\n"));

    /* HEAD keeps Content-Length, drops the body */
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &h, "HEAD /health HTTP/1.1\r\n\r\n", &r, &used),
                     MS_METRICS_RESPOND);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.body.len, 0);
    assert_non_null(strstr(r.head.data, "\r\nContent-Length: 9\r\n"));

    /* limits */
    ms_metrics_session_init(&s);
    char *longurl = malloc(MS_METRICS_MAX_URL + 64);
    assert_non_null(longurl);
    memcpy(longurl, "GET /", 5);
    memset(longurl + 5, 'a', MS_METRICS_MAX_URL);
    strcpy(longurl + 5 + MS_METRICS_MAX_URL, " HTTP/1.1\r\n\r\n");
    assert_int_equal(feed_all(&s, &h, longurl, &r, &used), MS_METRICS_RESPOND_CLOSE);
    assert_int_equal(r.status, 414);
    assert_non_null(strstr(r.head.data, "\r\nConnection: close\r\n"));
    free(longurl);
    assert_int_equal(feed_all(&s, &h, "GET / HTTP/1.1\r\n\r\n", &r, &used),
                     MS_METRICS_RESPOND_CLOSE);
    assert_int_equal(used, 0);
    assert_int_equal(r.head.len, 0);

    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &h, "GET /health HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", &r,
                              &used),
                     MS_METRICS_NEED_MORE);
    char *body = calloc(1, 70000);
    assert_non_null(body);
    assert_int_equal(ms_metrics_session_feed(&s, &h, body, 70000, &used, &r),
                     MS_METRICS_RESPOND_CLOSE);
    assert_int_equal(r.status, 413);
    free(body);

    /* head of exactly the limit is fine, one byte more is not */
    for (int extra = 0; extra <= 1; extra++) {
        ms_metrics_session_init(&s);
        char *big = malloc(MS_METRICS_MAX_HEAD + 2);
        assert_non_null(big);
        const char *pre = "GET /health HTTP/1.1\r\nX: ";
        size_t fill = MS_METRICS_MAX_HEAD - strlen(pre) - 4 + (size_t)extra;
        memcpy(big, pre, strlen(pre));
        memset(big + strlen(pre), 'a', fill);
        memcpy(big + strlen(pre) + fill, "\r\n\r\n", 5);
        assert_int_equal(strlen(big), MS_METRICS_MAX_HEAD + (size_t)extra);
        ms_metrics_action a = feed_all(&s, &h, big, &r, &used);
        if (extra == 0) {
            assert_int_equal(a, MS_METRICS_RESPOND);
            assert_int_equal(r.status, 503);
        } else {
            assert_int_equal(a, MS_METRICS_RESPOND_CLOSE);
            assert_int_equal(r.status, 431);
        }
        free(big);
    }

    /* render overflow gives 500 */
    ms_metrics_handlers hh = {.render_metrics = render_huge};
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &hh, "GET /metrics HTTP/1.1\r\n\r\n", &r, &used),
                     MS_METRICS_RESPOND);
    assert_int_equal(r.status, 500);

    /* no handlers: empty metrics, health ok */
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, NULL, "GET /health HTTP/1.0\r\n\r\n", &r, &used),
                     MS_METRICS_RESPOND_CLOSE);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "ok\n");

    /* upgrade requests are answered, then the connection closes */
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &h,
                              "GET /health HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
                              &r, &used),
                     MS_METRICS_RESPOND_CLOSE);
    assert_int_equal(r.status, 503);

    ms_metrics_response_free(&r);
}

/* /ready has a handler of its own; /health is not answered by it. */
static int ready(void *ctx, ms_buf *body)
{
    (void)ctx;
    ms_buf_puts(body, "{\"status\":\"draining\"}\n");
    return 503;
}

static void test_session_ready(void **state)
{
    (void)state;
    test_ctx ctx = {0};
    atomic_store(&ctx.healthy, 1);
    ms_metrics_handlers h = {.ctx = &ctx, .render_metrics = render, .health = health, .ready = ready};
    ms_metrics_session s;
    ms_metrics_response r;
    ms_metrics_response_init(&r);
    size_t used;

    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &h, "GET /ready HTTP/1.1\r\n\r\n", &r, &used), MS_METRICS_RESPOND);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body.data, "{\"status\":\"draining\"}\n");
    assert_non_null(strstr(r.head.data, "HTTP/1.1 503 Service Unavailable\r\n"));
    assert_non_null(strstr(r.head.data, "\r\nContent-Type: application/json\r\n"));
    assert_int_equal(feed_all(&s, &h, "GET /health HTTP/1.1\r\n\r\n", &r, &used), MS_METRICS_RESPOND);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"status\":\"up\"}\n");
    assert_int_equal(feed_all(&s, &h, "HEAD /ready?x=1 HTTP/1.1\r\n\r\n", &r, &used), MS_METRICS_RESPOND);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.body.len, 0);
    assert_int_equal(feed_all(&s, &h, "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r, &used),
                     MS_METRICS_RESPOND);
    assert_int_equal(r.status, 405);
    assert_int_equal(feed_all(&s, &h, "GET /readyz HTTP/1.1\r\n\r\n", &r, &used), MS_METRICS_RESPOND);
    assert_int_equal(r.status, 404);

    /* no ready handler: 200 "ok", like /health */
    ms_metrics_handlers no_ready = {.ctx = &ctx, .health = health};
    ms_metrics_session_init(&s);
    assert_int_equal(feed_all(&s, &no_ready, "GET /ready HTTP/1.1\r\n\r\n", &r, &used), MS_METRICS_RESPOND);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "ok\n");

    ms_metrics_response_free(&r);
}

/* ---- server round trips ---- */

typedef struct harness harness;
struct harness {
    uv_loop_t loop;
    uv_async_t async;
    ms_metrics_server *srv;
    uint16_t port;
    int family;
    test_ctx ctx;
    void (*body)(harness *);
    bool close_sent;
    bool closed;
    char failure[512];
};

#define CHECK(h, cond)                                                                      \
    do {                                                                                    \
        if (!(cond) && !(h)->failure[0])                                                    \
            snprintf((h)->failure, sizeof(h)->failure, "line %d: %s", __LINE__, #cond);     \
    } while (0)

typedef struct client {
    int fd;
    size_t len;
    char buf[32768];
} client;

static bool client_open(client *c, const harness *h)
{
    c->len = 0;
    c->fd = socket(h->family, SOCK_STREAM, 0);
    if (c->fd < 0)
        return false;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int r;
    if (h->family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(h->port)};
        inet_pton(AF_INET6, "::1", &a.sin6_addr);
        r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(h->port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    }
    if (r != 0) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static void client_close(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static bool client_send(client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

static bool client_sends(client *c, const char *s)
{
    return client_send(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF, -1 on error or timeout. */
static ssize_t client_fill(client *c)
{
    if (c->len >= sizeof c->buf - 1)
        return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            c->len += (size_t)r;
        return r;
    }
}

/* One complete response (malloc'd, NUL-terminated), or NULL. */
static char *client_response(client *c, bool head_request)
{
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (end) {
            size_t headlen = (size_t)(end - c->buf) + 4;
            size_t clen = 0;
            char *cl = strstr(c->buf, "\r\nContent-Length: ");
            if (cl && cl < end)
                clen = strtoul(cl + 18, NULL, 10);
            size_t total = headlen + (head_request ? 0 : clen);
            while (c->len < total)
                if (client_fill(c) <= 0)
                    return NULL;
            char *out = malloc(total + 1);
            if (!out)
                return NULL;
            memcpy(out, c->buf, total);
            out[total] = '\0';
            memmove(c->buf, c->buf + total, c->len - total);
            c->len -= total;
            return out;
        }
        if (client_fill(c) <= 0)
            return NULL;
    }
}

/* True when the server closed the connection and sent nothing more. */
static bool client_eof(client *c)
{
    if (c->len > 0)
        return false;
    ssize_t r = client_fill(c);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool has_header(const char *resp, const char *line)
{
    if (!resp)
        return false;
    const char *end = strstr(resp, "\r\n\r\n");
    const char *p = strstr(resp, line);
    return p && end && p < end && p[-1] == '\n' && p[strlen(line)] == '\r';
}

static const char *body_of(const char *resp)
{
    const char *end = resp ? strstr(resp, "\r\n\r\n") : NULL;
    return end ? end + 4 : "";
}

/* Sends req and checks the status line of the response; returns it (malloc'd). */
static char *exchange(harness *h, client *c, const char *req, bool head_request)
{
    if (!client_sends(c, req))
        return NULL;
    return client_response(c, head_request);
}

static void request_close(harness *h)
{
    if (!h->close_sent) {
        h->close_sent = true;
        uv_async_send(&h->async);
    }
}

static void *client_thread(void *arg)
{
    harness *h = arg;
    h->body(h);
    request_close(h);
    return NULL;
}

static void on_server_closed(void *arg)
{
    ((harness *)arg)->closed = true;
}

static void on_async(uv_async_t *a)
{
    harness *h = a->data;
    ms_metrics_server_close(h->srv, on_server_closed, h);
    uv_close((uv_handle_t *)a, NULL);
}

static void count_handle(uv_handle_t *handle, void *arg)
{
    (void)handle;
    (*(int *)arg)++;
}

static void run_harness(void (*body)(harness *), const char *host, uint64_t idle_ms)
{
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->body = body;
    h->family = strchr(host, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(uv_loop_init(&h->loop), 0);
    ms_metrics_handlers handlers = {.ctx = &h->ctx, .render_metrics = render, .health = health};
    char err[256];
    h->srv = ms_metrics_server_start(&h->loop, host, 0, &handlers, err, sizeof err);
    if (!h->srv) {
        uv_run(&h->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&h->loop), 0);
        int family = h->family;
        free(h);
        if (family == AF_INET6) {
            print_message("IPv6 unavailable (%s), skipped\n", err);
            skip();
            return;
        }
        fail_msg("start: %s", err);
        return;
    }
    if (idle_ms)
        ms_metrics_server_set_idle_timeout(h->srv, idle_ms);
    h->port = ms_metrics_server_port(h->srv);
    assert_true(h->port != 0);
    assert_int_equal(uv_async_init(&h->loop, &h->async, on_async), 0);
    h->async.data = h;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_thread, h), 0);
    assert_int_equal(uv_run(&h->loop, UV_RUN_DEFAULT), 0);
    pthread_join(t, NULL);
    assert_true(h->closed);
    int handles = 0;
    uv_walk(&h->loop, count_handle, &handles);
    assert_int_equal(handles, 0);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    char failure[512];
    memcpy(failure, h->failure, sizeof failure);
    free(h);
    if (failure[0])
        fail_msg("%s", failure);
}

static void body_round_trip(harness *h)
{
    client a, b;
    char *r;
    CHECK(h, client_open(&a, h));

    /* /metrics, then /health 503 -> 200 on one keep-alive connection */
    r = exchange(h, &a, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n"));
    CHECK(h, has_header(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    CHECK(h, r && strcmp(body_of(r), expected_metrics) == 0);
    CHECK(h, !has_header(r, "Connection: close"));
    free(r);
    r = exchange(h, &a, "GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK(h, r && strcmp(body_of(r), "starting\n") == 0);
    free(r);
    atomic_store(&h->ctx.healthy, 1);
    r = exchange(h, &a, "GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n"));
    CHECK(h, has_header(r, "Content-Type: application/json"));
    CHECK(h, r && strcmp(body_of(r), "{\"status\":\"up\"}\n") == 0);
    free(r);

    /* HEAD: same length, no body (the next response follows directly) */
    r = exchange(h, &a, "HEAD /metrics HTTP/1.1\r\n\r\n", true);
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %zu", strlen(expected_metrics));
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n"));
    CHECK(h, has_header(r, cl));
    free(r);
    r = exchange(h, &a, "GET /nope HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 404 Not Found\r\n"));
    free(r);
    r = exchange(h, &a, "DELETE /metrics HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(h, has_header(r, "Allow: GET, HEAD"));
    free(r);

    /* pipelined requests in one write, answered in order */
    CHECK(h, client_sends(&a, "GET /health HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"
                              "GET /x HTTP/1.1\r\n\r\n"));
    r = client_response(&a, false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n") && strstr(r, "\"up\""));
    free(r);
    r = client_response(&a, false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n") && strcmp(body_of(r), expected_metrics) == 0);
    free(r);
    r = client_response(&a, false);
    CHECK(h, starts_with(r, "HTTP/1.1 404 "));
    free(r);

    /* HTTP/1.0: close by default, keep-alive on request */
    CHECK(h, client_open(&b, h));
    r = exchange(h, &b, "GET /health HTTP/1.0\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n"));
    CHECK(h, has_header(r, "Connection: close"));
    free(r);
    CHECK(h, client_eof(&b));
    client_close(&b);
    CHECK(h, client_open(&b, h));
    r = exchange(h, &b, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false);
    CHECK(h, has_header(r, "Connection: keep-alive"));
    free(r);
    r = exchange(h, &b, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n") && has_header(r, "Connection: close"));
    free(r);
    CHECK(h, client_eof(&b));
    client_close(&b);

    /* malformed -> 400 and close, even with more bytes behind it */
    CHECK(h, client_open(&b, h));
    r = exchange(h, &b, "GARBAGE\r\n\r\nGET /health HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 400 Bad Request\r\n"));
    CHECK(h, has_header(r, "Connection: close"));
    free(r);
    CHECK(h, client_eof(&b));
    client_close(&b);

    /* oversize head -> 431 and close */
    CHECK(h, client_open(&b, h));
    size_t big = 20000;
    char *pad = malloc(big + 64);
    CHECK(h, pad != NULL);
    if (pad) {
        strcpy(pad, "GET /metrics HTTP/1.1\r\nX-Pad: ");
        size_t off = strlen(pad);
        memset(pad + off, 'a', big);
        strcpy(pad + off + big, "\r\n\r\n");
        r = exchange(h, &b, pad, false);
        CHECK(h, starts_with(r, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        free(r);
        CHECK(h, client_eof(&b));
        free(pad);
    }
    client_close(&b);

    /* close the server while connection a is open and idle: it gets EOF */
    request_close(h);
    CHECK(h, client_eof(&a));
    client_close(&a);
}

static void test_server_round_trip(void **state)
{
    (void)state;
    run_harness(body_round_trip, "127.0.0.1", 0);
}

static void body_ipv6(harness *h)
{
    client a;
    CHECK(h, client_open(&a, h));
    char *r = exchange(h, &a, "GET /metrics HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 200 OK\r\n"));
    free(r);
    client_close(&a);
}

static void test_server_ipv6(void **state)
{
    (void)state;
    run_harness(body_ipv6, "::1", 0);
}

static void body_idle(harness *h)
{
    client a, b;
    /* silent client */
    CHECK(h, client_open(&a, h));
    CHECK(h, client_eof(&a));
    client_close(&a);
    /* a client trickling a request never completes it in time */
    CHECK(h, client_open(&b, h));
    CHECK(h, client_sends(&b, "GET /health HTTP/1.1\r\nX-A: "));
    bool eof = false;
    for (int i = 0; i < 100000 && !eof; i++) {
        if (!client_sends(&b, "a"))
            eof = true; /* reset by the server */
        struct timeval tv = {.tv_usec = 20000};
        setsockopt(b.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(b.fd, b.buf, sizeof b.buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            eof = true;
        else if (n > 0)
            break; /* some response: wrong */
    }
    CHECK(h, eof);
    client_close(&b);
}

static void test_server_idle_timeout(void **state)
{
    (void)state;
    run_harness(body_idle, "127.0.0.1", 100);
}

static void body_limit(harness *h)
{
    enum { N = MS_METRICS_MAX_CONNECTIONS };
    client *cs = calloc(N + 1, sizeof *cs);
    CHECK(h, cs != NULL);
    if (!cs)
        return;
    for (int i = 0; i < N; i++)
        CHECK(h, client_open(&cs[i], h));
    /* the last admitted connection is served */
    char *r = exchange(h, &cs[N - 1], "GET /health HTTP/1.1\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 503 "));
    free(r);
    /* one more is accepted and closed at once */
    CHECK(h, client_open(&cs[N], h));
    CHECK(h, client_eof(&cs[N]));
    client_close(&cs[N]);
    /* once one leaves, a new connection is served again (the server notices
     * the departure asynchronously: retry on rejection, each try awaits EOF) */
    r = exchange(h, &cs[0], "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", false);
    CHECK(h, starts_with(r, "HTTP/1.1 503 "));
    free(r);
    CHECK(h, client_eof(&cs[0]));
    client_close(&cs[0]);
    bool served = false;
    for (int tries = 0; tries < 1000 && !served; tries++) {
        client c;
        if (!client_open(&c, h))
            break;
        r = exchange(h, &c, "GET /health HTTP/1.1\r\n\r\n", false);
        served = starts_with(r, "HTTP/1.1 503 ");
        free(r);
        client_close(&c);
    }
    CHECK(h, served);
    for (int i = 1; i < N; i++)
        client_close(&cs[i]);
    free(cs);
}

static void test_server_connection_limit(void **state)
{
    (void)state;
    run_harness(body_limit, "127.0.0.1", 0);
}

static void on_closed_flag(void *arg)
{
    *(bool *)arg = true;
}

static void test_server_bind_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[256];
    ms_metrics_server *a = ms_metrics_server_start(&loop, "127.0.0.1", 0, NULL, err, sizeof err);
    assert_non_null(a);
    uint16_t port = ms_metrics_server_port(a);
    assert_true(port != 0);

    ms_metrics_server *b = ms_metrics_server_start(&loop, "127.0.0.1", port, NULL, err, sizeof err);
    assert_null(b);
    char want[128];
    snprintf(want, sizeof want, "127.0.0.1:%u: address already in use", (unsigned)port);
    assert_string_equal(err, want);

    assert_null(ms_metrics_server_start(&loop, "localhost", 9090, NULL, err, sizeof err));
    assert_string_equal(err, "localhost:9090: not an IPv4 or IPv6 address");
    assert_null(ms_metrics_server_start(&loop, "::zz", 9090, NULL, err, sizeof err));
    assert_string_equal(err, "[::zz]:9090: not an IPv4 or IPv6 address");
    /* an address of another host cannot be bound */
    assert_null(ms_metrics_server_start(&loop, "192.0.2.1", 9090, NULL, err, sizeof err));
    assert_string_equal(err, "192.0.2.1:9090: address not available");

    bool closed = false;
    ms_metrics_server_close(a, on_closed_flag, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_true(closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------------------------------------------------------------- procstat */
static void test_procstat_parse(void **state)
{
    (void)state;
    /* a command name with spaces and parentheses: the fields start after the last ')' */
    const char *line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 120 0 0 0 "
                       "250 50 7 3 20 0 1 0 123456 10485760 2560 18446744073709551615 1 1 0 0 0\n";
    ms_procstat st;
    assert_true(ms_procstat_parse(line, strlen(line), &st));
    assert_int_equal(st.pid, 4242);
    assert_int_equal(st.ppid, 1);
    assert_int_equal(st.pgrp, 4242);
    assert_int_equal(st.session, 4242);
    assert_int_equal(st.utime, 250);
    assert_int_equal(st.stime, 50);
    assert_int_equal(st.cutime, 7);
    assert_int_equal(st.cstime, 3);
    assert_int_equal(st.starttime, 123456);
    assert_int_equal(st.vsize, 10485760);
    assert_int_equal(st.rss_pages, 2560);
    /* a name that looks like the fields that follow it, or holds a newline */
    static const char *const hostile[] = {
        "4243 (a) R 1 (b) S 1 4243 4243 0 -1 0 0 0 0 0 250 50 7 3 20 0 1 0 9 10 2560\n",
        "4243 (x\n) S 9 () S 1 4243 4243 0 -1 0 0 0 0 0 250 50 7 3 20 0 1 0 9 10 2560\n",
        "4243 ()) S 1 4243 4243 0 -1 0 0 0 0 0 250 50 7 3 20 0 1 0 9 10 2560",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        assert_true(ms_procstat_parse(hostile[i], strlen(hostile[i]), &st));
        assert_int_equal(st.pid, 4243);
        assert_int_equal(st.ppid, 1);
        assert_int_equal(st.utime, 250);
        assert_int_equal(st.rss_pages, 2560);
    }
    /* negative child times (never seen, but the kernel prints a long) read as 0 */
    const char *neg = "7 (x) R 1 7 7 0 -1 0 0 0 0 0 1 2 -3 -4 20 0 1 0 9 10 11";
    assert_true(ms_procstat_parse(neg, strlen(neg), &st));
    assert_int_equal(st.cutime, 0);
    assert_int_equal(st.rss_pages, 11);
}

static void test_procstat_parse_refuses_what_is_not_a_stat_line(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "4242",
        "4242 (cmd",
        "(cmd) S 1 2 3",
        "x42 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11",
        "0 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11",
        "42 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10",       /* rss missing */
        "42 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 1x",     /* junk in a number */
        "42 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 99999999999999999999999",
        "42 (cmd) S 99999999999 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11",
        "42 (cmd)S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11",
        "42(cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11",
    };
    ms_procstat st;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(ms_procstat_parse(bad[i], strlen(bad[i]), &st));
    assert_false(ms_procstat_parse(NULL, 0, &st));
    /* not NUL-terminated: only len bytes are read */
    char cut[] = "42 (cmd) S 1 4242 4242 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 9 10 11 12";
    assert_true(ms_procstat_parse(cut, strlen(cut) - 3, &st));
    assert_int_equal(st.rss_pages, 11);
    /* longer than any stat line */
    char *big = malloc(4096);
    assert_non_null(big);
    memset(big, '1', 4096);
    assert_false(ms_procstat_parse(big, 4096, &st));
    free(big);
}

static void test_procstat_tree(void **state)
{
    (void)state;
    /* this process's tree: a child that has a child of its own */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            for (;;)
                pause();
        }
        (void)!write(ready[1], &grandchild, sizeof grandchild);
        for (;;)
            pause();
    }
    pid_t grandchild;
    assert_int_equal(read(ready[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
    assert_true(grandchild > 0);
    ms_procstat_usage u;
    assert_true(ms_procstat_tree(getpid(), &u));
    assert_int_equal(u.processes, 2);
    assert_true(u.rss_pages > 0);
    /* from the child: only the grandchild below it */
    assert_true(ms_procstat_tree(child, &u));
    assert_int_equal(u.processes, 1);
    kill(grandchild, SIGKILL);
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    close(ready[0]);
    close(ready[1]);
    /* a pid that is not there */
    assert_false(ms_procstat_tree(INT32_MAX, &u));
}

static void test_procstat_self(void **state)
{
    (void)state;
    ms_procstat st;
    assert_true(ms_procstat_read(0, &st));
    assert_int_equal(st.pid, getpid());
    assert_true(st.rss_pages > 0);
    ms_buf b;
    ms_buf_init(&b, 0);
    ms_prom p;
    ms_prom_init(&p, &b);
    ms_procstat_render_self(&p);
    assert_false(ms_buf_failed(&b));
    static const char *const names[] = {
        "# TYPE process_cpu_seconds_total counter\n", "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_virtual_memory_bytes gauge\n", "# TYPE process_open_fds gauge\n",
        "# TYPE process_max_fds gauge\n", "# TYPE process_start_time_seconds gauge\n",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        assert_non_null(strstr(b.data, names[i]));
    ms_buf_free(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_format_double),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_session_ready),
        cmocka_unit_test(test_server_round_trip),
        cmocka_unit_test(test_server_ipv6),
        cmocka_unit_test(test_server_idle_timeout),
        cmocka_unit_test(test_server_connection_limit),
        cmocka_unit_test(test_server_bind_errors),
        cmocka_unit_test(test_procstat_parse),
        cmocka_unit_test(test_procstat_parse_refuses_what_is_not_a_stat_line),
        cmocka_unit_test(test_procstat_self),
        cmocka_unit_test(test_procstat_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
