/* test_h2.c: the HTTP/2 session (h2_session.c) driven in memory by an
 * nghttp2 client session: request translation to HTTP/1.1 bytes, response
 * translation back, local answers, flow control and the abuse limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "http/h2_session.h"

/* ---------------------------------------------------------------- the fake exchange */
typedef struct exch {
    ms_h2_stream *st;
    char req[65536];
    size_t req_len;
    bool gone, drained, eof;
    bool read_paused;
} exch;

typedef struct harness {
    ms_h2_session *srv;
    nghttp2_session *cli;
    ms_h2_config cfg;
    uint64_t now;
    exch ex[16];
    int nex;
    bool refuse;
    bool pause_new;                /* new exchanges read only the head, then stop */
    /* what the client saw */
    int status[16];                /* by stream id / 2 */
    int nonfinal[16];
    char hdrs[16][2048];
    char body[16][65536];
    size_t body_len[16];
    bool ended[16];
    uint32_t rst[16];
    bool got_rst[16];
    uint32_t goaway;
    bool got_goaway;
    bool srv_failed;
    bool no_client_read;           /* the client does not read: the server's output piles up */
} harness;

static bool stream_start(void *owner, ms_h2_stream *st)
{
    harness *h = owner;
    if (h->refuse || h->nex == 16)
        return false;
    exch *e = &h->ex[h->nex++];
    memset(e, 0, sizeof *e);
    e->st = st;
    e->read_paused = h->pause_new;
    ms_h2_stream_attach(st, e);
    return true;
}

static void ex_pull(exch *e)
{
    if (!e->st || (e->read_paused && strstr(e->req, "\r\n\r\n")))
        return;
    size_t n;
    while ((n = ms_h2_stream_read(e->st, e->req + e->req_len, sizeof e->req - 1 - e->req_len)) > 0)
        e->req_len += n;
    e->req[e->req_len] = '\0';
    if (ms_h2_stream_read_eof(e->st))
        e->eof = true;
}

static void stream_readable(void *x)
{
    (void)x; /* pulled after the session returns, as the data plane defers */
}

static void stream_drained(void *x)
{
    ((exch *)x)->drained = true;
}

static void stream_gone(void *x, bool complete)
{
    (void)complete;
    exch *e = x;
    e->gone = true;
    e->st = NULL;
}

static void want_run(void *owner)
{
    (void)owner;
}

static const ms_h2_owner_ops ops = { stream_start, stream_readable, stream_drained, stream_gone, want_run };

/* ---------------------------------------------------------------- the client */
static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl, const uint8_t *v,
                       size_t vl, uint8_t flags, void *ud)
{
    harness *h = ud;
    (void)s, (void)flags;
    int i = f->hd.stream_id / 2;
    if (nl == 7 && memcmp(n, ":status", 7) == 0) {
        int st = atoi((const char *)v);
        if (st < 200)
            h->nonfinal[i]++;
        else
            h->status[i] = st;
        return 0;
    }
    size_t l = strlen(h->hdrs[i]);
    snprintf(h->hdrs[i] + l, sizeof h->hdrs[i] - l, "%.*s: %.*s\n", (int)nl, n, (int)vl, v);
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len, void *ud)
{
    harness *h = ud;
    (void)s, (void)flags;
    int i = id / 2;
    assert_true(h->body_len[i] + len < sizeof h->body[i]);
    memcpy(h->body[i] + h->body_len[i], d, len);
    h->body_len[i] += len;
    return 0;
}

static int c_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    harness *h = ud;
    (void)s;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        h->ended[f->hd.stream_id / 2] = true;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        h->got_rst[f->hd.stream_id / 2] = true;
        h->rst[f->hd.stream_id / 2] = f->rst_stream.error_code;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->got_goaway = true;
        h->goaway = f->goaway.error_code;
    }
    return 0;
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(harness *h)
{
    for (int round = 0; round < 1000; round++) {
        bool moved = false;
        const uint8_t *d;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h->cli, &d)) > 0) {
            moved = true;
            if (!h->srv_failed && !ms_h2_session_recv(h->srv, d, (size_t)n, h->now))
                h->srv_failed = true;
        }
        for (int i = 0; i < h->nex; i++)
            ex_pull(&h->ex[i]);
        if (!h->no_client_read) {
            while ((n = ms_h2_session_send(h->srv, &d, h->now)) > 0) {
                moved = true;
                nghttp2_session_mem_recv(h->cli, d, (size_t)n);
            }
            ms_h2_session_notify(h->srv);
        }
        if (!moved)
            return;
    }
    fail_msg("no quiet after 1000 rounds");
}

static int setup(void **state)
{
    harness *h = calloc(1, sizeof *h);
    ms_h2_config_defaults(&h->cfg);
    h->now = 1000;
    *state = h;
    return 0;
}

static void start(harness *h)
{
    h->srv = ms_h2_session_new(&h->cfg, &ops, h, h->now);
    assert_non_null(h->srv);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    assert_int_equal(nghttp2_session_client_new(&h->cli, cb, h), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, NULL, 0);
    pump(h);
}

static int teardown(void **state)
{
    harness *h = *state;
    if (h->srv)
        ms_h2_session_free(h->srv);
    if (h->cli)
        nghttp2_session_del(h->cli);
    free(h);
    return 0;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static int32_t get(harness *h, const char *path, const nghttp2_nv *extra, size_t nextra)
{
    nghttp2_nv nva[16] = { NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "example.com"),
                           { (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE } };
    size_t n = 4;
    for (size_t i = 0; i < nextra; i++)
        nva[n++] = extra[i];
    int32_t id = nghttp2_submit_request(h->cli, NULL, nva, n, NULL, NULL);
    assert_true(id > 0);
    pump(h);
    return id;
}

/* The exchange ends: it forgets the stream. */
static void detach(exch *e)
{
    if (e->st)
        ms_h2_stream_detach(e->st);
    e->st = NULL;
}

static void respond(harness *h, exch *e, const char *bytes)
{
    assert_true(ms_h2_stream_write(e->st, bytes, strlen(bytes)));
    pump(h);
}

/* ---------------------------------------------------------------- translation */
static void test_get_translated_both_ways(void **state)
{
    harness *h = *state;
    start(h);
    const nghttp2_nv extra[] = { NV("user-agent", "t/1"), NV("cookie", "a=1"), NV("cookie", "b=2"),
                                 NV("accept", "*/*") };
    int32_t id = get(h, "/x?y=1", extra, 4);
    assert_int_equal(h->nex, 1);
    assert_string_equal(h->ex[0].req, "GET /x?y=1 HTTP/1.1\r\nHost: example.com\r\nuser-agent: t/1\r\naccept: */*\r\n"
                                      "Cookie: a=1; b=2\r\nConnection: close\r\n\r\n");
    respond(h, &h->ex[0], "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\nX-A: b\r\nKeep-Alive: 5\r\n\r\nhel");
    assert_false(h->ended[id / 2]);
    respond(h, &h->ex[0], "lo");
    assert_int_equal(h->status[id / 2], 200);
    assert_string_equal(h->hdrs[id / 2], "content-length: 5\nx-a: b\n");
    assert_int_equal(h->body_len[id / 2], 5);
    assert_memory_equal(h->body[id / 2], "hello", 5);
    assert_true(h->ended[id / 2]);
    assert_false(h->got_rst[id / 2]);
    detach(&h->ex[0]);
    pump(h);
    assert_int_equal(ms_h2_session_streams(h->srv), 0);
}

static void test_post_bodies_framed(void **state)
{
    harness *h = *state;
    start(h);
    /* no Content-Length: chunked */
    nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/p") };
    int32_t id = nghttp2_submit_headers(h->cli, NGHTTP2_FLAG_NONE, -1, NULL, nva, 4, NULL);
    pump(h);
    nghttp2_data_provider dp = { 0 };
    (void)dp;
    assert_int_equal(h->nex, 1);
    assert_string_equal(h->ex[0].req, "POST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                                      "Connection: close\r\n\r\n");
    /* DATA frames by hand: the client library wants a provider */
    static const char *parts[] = { "abc", "de" };
    for (int i = 0; i < 2; i++) {
        uint8_t frame[9 + 3];
        size_t l = strlen(parts[i]);
        frame[0] = 0, frame[1] = 0, frame[2] = (uint8_t)l, frame[3] = NGHTTP2_DATA;
        frame[4] = i == 1 ? NGHTTP2_FLAG_END_STREAM : 0;
        frame[5] = 0, frame[6] = 0, frame[7] = 0, frame[8] = (uint8_t)id;
        memcpy(frame + 9, parts[i], l);
        assert_true(ms_h2_session_recv(h->srv, frame, 9 + l, h->now));
    }
    ex_pull(&h->ex[0]);
    assert_string_equal(h->ex[0].req, "POST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                                      "Connection: close\r\n\r\n5\r\nabcde\r\n0\r\n\r\n");
    assert_false(h->ex[0].eof); /* an HTTP/1.1 request ends by its framing */
}

static ssize_t read_fixed(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                          nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)ud;
    const char *d = src->ptr;
    size_t l = strlen(d);
    assert_true(l <= len);
    memcpy(buf, d, l);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)l;
}

static void test_content_length_kept(void **state)
{
    harness *h = *state;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "PUT"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/p"),
                         NV("content-length", "4") };
    nghttp2_data_provider dp = { .source.ptr = (void *)"wxyz", .read_callback = read_fixed };
    nghttp2_submit_request(h->cli, NULL, nva, 5, &dp, NULL);
    pump(h);
    assert_string_equal(h->ex[0].req, "PUT /p HTTP/1.1\r\nHost: a.test\r\ncontent-length: 4\r\nConnection: close\r\n\r\nwxyz");
}

static ssize_t read_then_trailers(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                                  nghttp2_data_source *src, void *ud)
{
    (void)ud;
    ssize_t n = read_fixed(s, id, buf, len, flags, src, ud);
    const nghttp2_nv tr[] = { NV("x-checksum", "abc") };
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    assert_int_equal(nghttp2_submit_trailer(s, id, tr, 1), 0);
    return n;
}

static void test_request_trailers_end_the_body_and_are_dropped(void **state)
{
    harness *h = *state;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/t") };
    nghttp2_data_provider dp = { .source.ptr = (void *)"body", .read_callback = read_then_trailers };
    nghttp2_submit_request(h->cli, NULL, nva, 4, &dp, NULL);
    pump(h);
    assert_string_equal(h->ex[0].req, "POST /t HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                                      "Connection: close\r\n\r\n4\r\nbody\r\n0\r\n\r\n");
}

static ssize_t read_many(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)ud;
    size_t *left = src->ptr;
    size_t n = *left < len ? *left : len;
    memset(buf, 'u', n);
    *left -= n;
    if (*left == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void test_upload_after_the_answer_is_taken_and_dropped(void **state)
{
    harness *h = *state;
    h->cfg.stream_window = 16384;
    h->cfg.connection_window = 65535;
    start(h);
    size_t left = 300000; /* many windows, of the stream and of the connection */
    char clen[16];
    snprintf(clen, sizeof clen, "%zu", left);
    nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/u"),
                         { (uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), NGHTTP2_NV_FLAG_NONE } };
    nghttp2_data_provider dp = { .source.ptr = &left, .read_callback = read_many };
    h->pause_new = true;
    int32_t id = nghttp2_submit_request(h->cli, NULL, nva, 5, &dp, NULL);
    pump(h);
    assert_int_equal(h->nex, 1);
    assert_true(left > 0); /* the windows are shut: the client waits */
    h->pause_new = false;
    /* the exchange answers without reading the body, and ends */
    respond(h, &h->ex[0], "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    detach(&h->ex[0]);
    pump(h);
    assert_int_equal(h->status[id / 2], 413);
    assert_true(h->ended[id / 2]);
    /* the client is told to stop sending, without error; what it had sent is
     * acknowledged, so the connection's window is whole again */
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_NO_ERROR);
    assert_true(left > 0);
    assert_false(h->srv_failed);
    assert_false(h->got_goaway);
    assert_int_equal(nghttp2_session_get_remote_window_size(h->cli), 65535);
    /* the connection is still usable */
    h->ex[0].st = NULL;
    int32_t id2 = get(h, "/next", NULL, 0);
    assert_int_equal(h->nex, 2);
    respond(h, &h->ex[1], "HTTP/1.1 204 No Content\r\n\r\n");
    assert_int_equal(h->status[id2 / 2], 204);
}

static void test_content_length_mismatch_reset(void **state)
{
    harness *h = *state;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "PUT"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/p"),
                         NV("content-length", "10") };
    nghttp2_data_provider dp = { .source.ptr = (void *)"wxyz", .read_callback = read_fixed };
    int32_t id = nghttp2_submit_request(h->cli, NULL, nva, 5, &dp, NULL);
    pump(h);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_PROTOCOL_ERROR);
    assert_true(h->nex == 0 || h->ex[0].gone);
}

static void test_host_mismatch_refused(void **state)
{
    harness *h = *state;
    start(h);
    const nghttp2_nv extra[] = { NV("host", "other.test") };
    int32_t id = get(h, "/", extra, 1);
    assert_int_equal(h->nex, 0);
    assert_int_equal(h->status[id / 2], 400);
    assert_non_null(strstr(h->body[id / 2], "does not match :authority"));
    assert_true(h->ended[id / 2]);
    /* the same host (any case) is fine */
    const nghttp2_nv same[] = { NV("host", "EXAMPLE.com") };
    get(h, "/", same, 1);
    assert_int_equal(h->nex, 1);
}

static void test_connection_header_refused(void **state)
{
    harness *h = *state;
    start(h);
    const nghttp2_nv extra[] = { NV("connection", "keep-alive") };
    int32_t id = get(h, "/", extra, 1);
    assert_int_equal(h->nex, 0);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_PROTOCOL_ERROR);
}

static void test_field_with_line_break_refused(void **state)
{
    harness *h = *state;
    start(h);
    const nghttp2_nv extra[] = { NV("x-a", "1\r\nx-injected: 2") };
    int32_t id = get(h, "/", extra, 1);
    assert_int_equal(h->nex, 0);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_PROTOCOL_ERROR);
    const nghttp2_nv path[] = { NV("x-b", "ok") };
    nghttp2_nv nva[] = { NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"),
                         NV(":path", "/x HTTP/1.1\r\nHost: b\r\n\r\nGET /y"), path[0] };
    id = nghttp2_submit_request(h->cli, NULL, nva, 5, NULL, NULL);
    pump(h);
    assert_int_equal(h->nex, 0);
    assert_true(h->got_rst[id / 2]);
}

static void test_header_list_too_large(void **state)
{
    harness *h = *state;
    h->cfg.max_header_list_size = 4096;
    start(h);
    static char big[5000];
    memset(big, 'v', sizeof big - 1);
    const nghttp2_nv extra[] = { { (uint8_t *)"x-big", (uint8_t *)big, 5, sizeof big - 1, NGHTTP2_NV_FLAG_NONE } };
    int32_t id = get(h, "/", extra, 1);
    assert_int_equal(h->nex, 0);
    assert_int_equal(h->status[id / 2], 431);
}

static void test_continue_then_final(void **state)
{
    harness *h = *state;
    start(h);
    int32_t id = get(h, "/", NULL, 0);
    respond(h, &h->ex[0], "HTTP/1.1 100 Continue\r\n\r\n");
    assert_int_equal(h->nonfinal[id / 2], 1);
    assert_int_equal(h->status[id / 2], 0);
    respond(h, &h->ex[0], "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    assert_int_equal(h->status[id / 2], 204);
    assert_true(h->ended[id / 2]);
}

static void test_head_has_no_body(void **state)
{
    harness *h = *state;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "HEAD"), NV(":scheme", "http"), NV(":authority", "a.test"), NV(":path", "/") };
    int32_t id = nghttp2_submit_request(h->cli, NULL, nva, 4, NULL, NULL);
    pump(h);
    respond(h, &h->ex[0], "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    assert_int_equal(h->status[id / 2], 200);
    assert_true(h->ended[id / 2]);
    assert_int_equal(h->body_len[id / 2], 0);
    assert_false(h->got_rst[id / 2]);
}

static void test_chunked_and_eof_bodies(void **state)
{
    harness *h = *state;
    start(h);
    int32_t a = get(h, "/a", NULL, 0);
    int32_t b = get(h, "/b", NULL, 0);
    respond(h, &h->ex[0], "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
    assert_true(h->ended[a / 2]);
    assert_int_equal(h->body_len[a / 2], 3);
    assert_string_equal(h->hdrs[a / 2], "");
    respond(h, &h->ex[1], "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof");
    assert_false(h->ended[b / 2]);
    detach(&h->ex[1]);
    pump(h);
    assert_true(h->ended[b / 2]);
    assert_false(h->got_rst[b / 2]);
    assert_int_equal(h->body_len[b / 2], 9);
}

static void test_short_response_reset(void **state)
{
    harness *h = *state;
    start(h);
    int32_t id = get(h, "/", NULL, 0);
    respond(h, &h->ex[0], "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    detach(&h->ex[0]);
    pump(h);
    assert_false(h->ended[id / 2]);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_INTERNAL_ERROR);
}

static void test_no_response_reset(void **state)
{
    harness *h = *state;
    start(h);
    int32_t id = get(h, "/", NULL, 0);
    detach(&h->ex[0]);
    pump(h);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_INTERNAL_ERROR);
}

static void test_bad_response_reset(void **state)
{
    harness *h = *state;
    start(h);
    int32_t id = get(h, "/", NULL, 0);
    assert_false(ms_h2_stream_write(h->ex[0].st, "garbage\r\n\r\n", 11));
    pump(h);
    assert_true(h->got_rst[id / 2]);
}

static void test_websocket_connect(void **state)
{
    harness *h = *state;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "CONNECT"), NV(":protocol", "websocket"), NV(":scheme", "http"),
                         NV(":authority", "a.test"), NV(":path", "/ws"), NV("sec-websocket-version", "13"),
                         NV("sec-websocket-protocol", "chat") };
    int32_t id = nghttp2_submit_headers(h->cli, NGHTTP2_FLAG_NONE, -1, NULL, nva, 7, NULL);
    pump(h);
    assert_int_equal(h->nex, 1);
    const char *r = h->ex[0].req;
    assert_true(strncmp(r, "GET /ws HTTP/1.1\r\nHost: a.test\r\nsec-websocket-protocol: chat\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: ", 103) == 0);
    assert_non_null(strstr(r, "\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    assert_null(strstr(r, "sec-websocket-version"));
    respond(h, &h->ex[0], "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: xyz\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x81\x02hi");
    assert_int_equal(h->status[id / 2], 200);
    assert_string_equal(h->hdrs[id / 2], "sec-websocket-protocol: chat\n");
    assert_int_equal(h->body_len[id / 2], 4);
    assert_false(h->ended[id / 2]);
    respond(h, &h->ex[0], "\x81\x01!");
    assert_int_equal(h->body_len[id / 2], 7);
    /* the client's end of stream is the exchange's end of input */
    nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump(h);
    assert_true(h->ex[0].gone);
}

static void test_refused_stream(void **state)
{
    harness *h = *state;
    start(h);
    h->refuse = true;
    int32_t id = get(h, "/", NULL, 0);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_REFUSED_STREAM);
}

/* ---------------------------------------------------------------- limits */
static void test_rapid_reset_goaway(void **state)
{
    harness *h = *state;
    h->cfg.rapid_reset_max = 5;
    start(h);
    for (int i = 0; i < 10 && !h->srv_failed; i++) {
        nghttp2_nv nva[] = { NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/") };
        int32_t id = nghttp2_submit_request(h->cli, NULL, nva, 4, NULL, NULL);
        pump(h);
        nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        pump(h);
    }
    assert_true(h->srv_failed);
    assert_true(h->got_goaway);
    assert_int_equal(h->goaway, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(h->nex <= 6);
    for (int i = 0; i < h->nex; i++)
        assert_true(h->ex[i].gone);
}

static void test_resets_in_separate_windows_allowed(void **state)
{
    harness *h = *state;
    h->cfg.rapid_reset_max = 3;
    h->cfg.rapid_reset_window_ms = 1000;
    start(h);
    for (int i = 0; i < 8; i++) {
        nghttp2_nv nva[] = { NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/") };
        int32_t id = nghttp2_submit_request(h->cli, NULL, nva, 4, NULL, NULL);
        pump(h);
        nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        pump(h);
        h->now += 500;
    }
    assert_false(h->srv_failed);
    assert_false(h->got_goaway);
}

static void test_ping_flood_bounded(void **state)
{
    harness *h = *state;
    h->cfg.max_control_frames = 50;
    start(h);
    h->no_client_read = true;
    for (int i = 0; i < 200 && !h->srv_failed; i++) {
        nghttp2_submit_ping(h->cli, NGHTTP2_FLAG_NONE, NULL);
        pump(h);
    }
    assert_true(h->srv_failed);
}

static void test_settings_flood_bounded(void **state)
{
    harness *h = *state;
    h->cfg.max_control_frames = 50;
    start(h);
    h->no_client_read = true;
    for (int i = 0; i < 200 && !h->srv_failed; i++) {
        nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384 };
        nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, &iv, 1);
        pump(h);
    }
    assert_true(h->srv_failed);
}

/* A HEADERS frame made by hand (the client library would keep to the limit). */
static size_t raw_get(uint8_t *out, size_t cap, nghttp2_hd_deflater *dfl, int32_t id)
{
    nghttp2_nv nva[] = { NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/") };
    ssize_t n = nghttp2_hd_deflate_hd(dfl, out + 9, cap - 9, nva, 4);
    assert_true(n > 0);
    out[0] = 0, out[1] = (uint8_t)(n >> 8), out[2] = (uint8_t)n, out[3] = NGHTTP2_HEADERS;
    out[4] = NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM;
    out[5] = (uint8_t)(id >> 24), out[6] = (uint8_t)(id >> 16), out[7] = (uint8_t)(id >> 8), out[8] = (uint8_t)id;
    return 9 + (size_t)n;
}

/* The RST_STREAM codes in the server's output, by stream id / 2. */
static void scan_rst(harness *h)
{
    const uint8_t *d;
    ssize_t n;
    while ((n = ms_h2_session_send(h->srv, &d, h->now)) > 0) {
        for (ssize_t i = 0; i + 9 <= n;) {
            size_t len = ((size_t)d[i] << 16) | ((size_t)d[i + 1] << 8) | d[i + 2];
            uint32_t id = ((uint32_t)(d[i + 5] & 0x7f) << 24) | ((uint32_t)d[i + 6] << 16) | ((uint32_t)d[i + 7] << 8) | d[i + 8];
            if (d[i + 3] == NGHTTP2_RST_STREAM && id / 2 < 16) {
                h->got_rst[id / 2] = true;
                h->rst[id / 2] = ((uint32_t)d[i + 9] << 24) | ((uint32_t)d[i + 10] << 16) | ((uint32_t)d[i + 11] << 8) | d[i + 12];
            }
            if (d[i + 3] == NGHTTP2_GOAWAY)
                h->got_goaway = true;
            i += 9 + (ssize_t)len;
        }
    }
}

static void test_too_many_streams(void **state)
{
    harness *h = *state;
    h->cfg.max_concurrent_streams = 2;
    start(h); /* the client has seen the SETTINGS and acknowledged them */
    nghttp2_hd_deflater *dfl;
    assert_int_equal(nghttp2_hd_deflate_new(&dfl, 4096), 0);
    uint8_t f[256];
    for (int32_t id = 1; id <= 5; id += 2) {
        size_t n = raw_get(f, sizeof f, dfl, id);
        ms_h2_session_recv(h->srv, f, n, h->now);
        for (int i = 0; i < h->nex; i++)
            ex_pull(&h->ex[i]);
    }
    nghttp2_hd_deflate_del(dfl);
    scan_rst(h);
    assert_int_equal(h->nex, 2); /* the third never reached an exchange */
    assert_false(h->got_rst[0]);
    assert_false(h->got_rst[1]);
    assert_true(h->got_rst[2] || h->got_goaway);
    assert_int_equal(ms_h2_session_streams(h->srv), 2);
}

static void test_flow_control_follows_reads(void **state)
{
    harness *h = *state;
    h->cfg.stream_window = 1000;
    start(h);
    static char big[5000];
    memset(big, 'b', sizeof big - 1);
    nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/"),
                         NV("content-length", "4999") };
    nghttp2_data_provider dp = { .source.ptr = big, .read_callback = NULL };
    (void)dp;
    int32_t id = nghttp2_submit_headers(h->cli, NGHTTP2_FLAG_NONE, -1, NULL, nva, 5, NULL);
    pump(h);
    assert_int_equal(h->nex, 1);
    h->ex[0].read_paused = true;
    /* the client can send no more than the window while nothing is read */
    int32_t win = nghttp2_session_get_stream_remote_window_size(h->cli, id);
    assert_int_equal(win, 1000);
    size_t head_len = h->ex[0].req_len;
    uint8_t frame[9 + 1000];
    memset(frame + 9, 'b', 1000);
    frame[0] = 0, frame[1] = 0x03, frame[2] = 0xe8, frame[3] = NGHTTP2_DATA, frame[4] = 0;
    frame[5] = 0, frame[6] = 0, frame[7] = 0, frame[8] = (uint8_t)id;
    assert_true(ms_h2_session_recv(h->srv, frame, sizeof frame, h->now));
    /* a window's worth more, unread: a flow control error */
    assert_int_equal(ms_h2_stream_readable(h->ex[0].st), 1000);
    h->ex[0].read_paused = false;
    ex_pull(&h->ex[0]);
    assert_int_equal(h->ex[0].req_len, head_len + 1000);
    /* read: the window opened again, so the same again is accepted */
    const uint8_t *d;
    ssize_t n;
    bool window_update = false;
    while ((n = ms_h2_session_send(h->srv, &d, h->now)) > 0)
        for (ssize_t i = 0; i + 9 <= n; i += 9 + ((ssize_t)d[i] << 16 | (ssize_t)d[i + 1] << 8 | d[i + 2]))
            window_update |= d[i + 3] == NGHTTP2_WINDOW_UPDATE;
    assert_true(window_update);
    assert_true(ms_h2_session_recv(h->srv, frame, sizeof frame, h->now));
    assert_int_equal(ms_h2_stream_readable(h->ex[0].st), 1000);
    h->srv_failed = false;
    nghttp2_session_del(h->cli);
    h->cli = NULL;
}

/* One-byte DATA frames within the window, while the exchange reads
 * nothing: the chunk framing they will get must not count against what
 * the stream holds, nor open the window beyond the bytes read. */
static void test_tiny_data_frames_within_the_window_are_held(void **state)
{
    harness *h = *state;
    h->cfg.stream_window = 4000;
    h->cfg.max_header_list_size = 1024;
    h->pause_new = true;
    start(h);
    nghttp2_nv nva[] = { NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "a"), NV(":path", "/t") };
    int32_t id = nghttp2_submit_headers(h->cli, NGHTTP2_FLAG_NONE, -1, NULL, nva, 4, NULL);
    pump(h);
    assert_int_equal(h->nex, 1);
    size_t head_len = h->ex[0].req_len;
    uint8_t frame[10] = { 0, 0, 1, NGHTTP2_DATA, 0, 0, 0, 0, (uint8_t)id, 'x' };
    for (int i = 0; i < 4000; i++)
        assert_true(ms_h2_session_recv(h->srv, frame, sizeof frame, h->now));
    uint8_t end[9] = { 0, 0, 0, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 0, 0, 0, (uint8_t)id };
    assert_true(ms_h2_session_recv(h->srv, end, sizeof end, h->now));
    scan_rst(h);
    assert_false(h->got_rst[id / 2]);
    /* read now: the whole body, framed chunked */
    h->ex[0].read_paused = false;
    ex_pull(&h->ex[0]);
    const char *p = h->ex[0].req + head_len;
    size_t got = 0;
    for (;;) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        assert_true(e[0] == '\r' && e[1] == '\n');
        p = e + 2;
        if (n == 0)
            break;
        for (unsigned long k = 0; k < n; k++)
            assert_int_equal(p[k], 'x');
        got += n;
        p += n;
        assert_true(p[0] == '\r' && p[1] == '\n');
        p += 2;
    }
    assert_int_equal(got, 4000);
    assert_string_equal(p, "\r\n");
    h->srv_failed = false;
    nghttp2_session_del(h->cli);
    h->cli = NULL;
}

static void test_stalled_stream_reset(void **state)
{
    harness *h = *state;
    h->cfg.stall_timeout_ms = 5000;
    start(h);
    nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0 };
    nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, &iv, 1);
    pump(h);
    int32_t id = get(h, "/", NULL, 0);
    respond(h, &h->ex[0], "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody");
    assert_int_equal(h->status[id / 2], 200);
    assert_int_equal(ms_h2_stream_pending(h->ex[0].st), 4); /* the client's window is shut */
    h->now += 4000;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_false(h->got_rst[id / 2]);
    h->now += 1000;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_true(h->got_rst[id / 2]);
    assert_int_equal(h->rst[id / 2], NGHTTP2_CANCEL);
    assert_true(h->ex[0].gone);
}

static void test_idle_goaway(void **state)
{
    harness *h = *state;
    h->cfg.idle_timeout_ms = 3000;
    start(h);
    get(h, "/", NULL, 0);
    respond(h, &h->ex[0], "HTTP/1.1 204 No Content\r\n\r\n");
    detach(&h->ex[0]);
    pump(h);
    h->now += 2999;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_false(h->got_goaway);
    h->now += 1;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_true(h->got_goaway);
    assert_int_equal(h->goaway, NGHTTP2_NO_ERROR);
    assert_true(ms_h2_session_done(h->srv));
}

static void test_silent_client_goaway_after_first_timeout(void **state)
{
    harness *h = *state;
    h->cfg.idle_timeout_ms = 60000;
    h->cfg.first_timeout_ms = 2000;
    start(h);
    h->now += 1999;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_false(h->got_goaway);
    h->now += 1;
    ms_h2_session_tick(h->srv, h->now);
    pump(h);
    assert_true(h->got_goaway);
}

static void test_response_with_many_headers(void **state)
{
    harness *h = *state;
    start(h);
    int32_t id = get(h, "/", NULL, 0);
    static char head[8192];
    size_t n = (size_t)snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
    for (int i = 0; i < 110; i++)
        n += (size_t)snprintf(head + n, sizeof head - n, "X-H%d: %d\r\n", i, i);
    snprintf(head + n, sizeof head - n, "\r\n");
    respond(h, &h->ex[0], head);
    assert_int_equal(h->status[id / 2], 200);
    assert_true(h->ended[id / 2]);
    assert_non_null(strstr(h->hdrs[id / 2], "x-h109: 109\n"));
}

static void test_drained_reported(void **state)
{
    harness *h = *state;
    start(h);
    get(h, "/", NULL, 0);
    assert_true(ms_h2_stream_write(h->ex[0].st, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab", 40));
    assert_int_equal(ms_h2_stream_pending(h->ex[0].st), 2);
    assert_false(h->ex[0].drained);
    pump(h);
    assert_int_equal(ms_h2_stream_pending(h->ex[0].st), 0);
    assert_true(h->ex[0].drained);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_translated_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_bodies_framed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_length_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_trailers_end_the_body_and_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_after_the_answer_is_taken_and_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_length_mismatch_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_header_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_with_line_break_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_list_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue_then_final, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_and_eof_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_response_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_response_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_response_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rapid_reset_goaway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resets_in_separate_windows_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_flood_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_flood_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_control_follows_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiny_data_frames_within_the_window_are_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_stream_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_goaway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_client_goaway_after_first_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_with_many_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
