/* test_dock_v3.c: the docking v3 (HTTP bays) codec: the exact bytes of every
 * message, parsing them back, a whole exchange fed to a v3 decoder at every
 * split, the decoder's v3 type set and frame bound, and every refusal of
 * the parsers and encoders. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dock/protocol.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* The messages of one request, written field by field from the wire
 * format (frame header, then the payload's fields in order). */
static const char DOCK[] = "\x01\x00\x00\x00\x31"
                           "{\"version\":3,\"ship\":\"app\",\"pid\":4242,\"threads\":4}";
static const char MOORED[] = "\x02\x00\x00\x00\x25"
                             "{\"version\":3,\"config\":{\"env\":\"prod\"}}";
static const char HAIL[] = "\x20\x00\x00\x00\x54"
                           "\x00\x00\x00\x01"                  /* request_id 1 */
                           "\x00\x00\x00\x00\x00\x00\x00\x05"  /* content_length 5 */
                           "\x00\x00\x00\x03"                  /* 3 params */
                           "\x00\x00\x00\x0e" "REQUEST_METHOD" "\x00\x00\x00\x04" "POST"
                           "\x00\x00\x00\x09" "PATH_INFO" "\x00\x00\x00\x05" "/echo"
                           "\x00\x00\x00\x0a" "HTTP_X_BIN" "\x00\x00\x00\x02" "\xff\x00";
static const char HAUL_BODY[] = "\x21\x00\x00\x00\x0a" "\x00\x00\x00\x01" "\x01" "hello";
static const char REPLY[] = "\x22\x00\x00\x00\x53"
                            "\x00\x00\x00\x01" "\x00\xc8" "\x01" /* request 1, 200, stream */
                            "\x00\x00\x00\x03"
                            "\x00\x00\x00\x0c" "content-type" "\x00\x00\x00\x0a" "text/plain"
                            "\x00\x00\x00\x0a" "set-cookie" "\x00\x00\x00\x03" "a=1"
                            "\x00\x00\x00\x0a" "set-cookie" "\x00\x00\x00\x03" "b=2";
static const char HAUL_RESP[] = "\x21\x00\x00\x00\x07" "\x00\x00\x00\x01" "\x00" "hi";
static const char HAUL_FIN[] = "\x21\x00\x00\x00\x05" "\x00\x00\x00\x01" "\x01";
static const char READY[] = "\x23\x00\x00\x00\x04" "\x00\x00\x00\x01";
static const char REPLY_FILE[] = "\x22\x00\x00\x00\x3b"
                                 "\x00\x00\x00\x02" "\x00\xc8" "\x02" /* request 2, 200, file */
                                 "\x00\x00\x00\x01"
                                 "\x00\x00\x00\x0c" "content-type" "\x00\x00\x00\x0a" "text/plain"
                                 "\x00\x00\x00\x0e" "/srv/app/a.txt";
static const char REPLY_TUNNEL[] = "\x22\x00\x00\x00\x3c"
                                   "\x00\x00\x00\x03" "\x00\x65" "\x04" /* request 3, 101, tunnel */
                                   "\x00\x00\x00\x02"
                                   "\x00\x00\x00\x07" "upgrade" "\x00\x00\x00\x09" "websocket"
                                   "\x00\x00\x00\x0a" "connection" "\x00\x00\x00\x07" "Upgrade";
static const char REPLY_EMPTY[] = "\x22\x00\x00\x00\x0b"
                                  "\x00\x00\x00\x04" "\x00\xcc" "\x00" /* request 4, 204, empty */
                                  "\x00\x00\x00\x00";

static const ms_dock_param HAIL_PARAMS[] = {
    { "REQUEST_METHOD", 14, "POST", 4 },
    { "PATH_INFO", 9, "/echo", 5 },
    { "HTTP_X_BIN", 10, "\xff\x00", 2 },
};
static const ms_dock_param REPLY_HEADERS[] = {
    { "content-type", 12, "text/plain", 10 },
    { "set-cookie", 10, "a=1", 3 },
    { "set-cookie", 10, "b=2", 3 },
};
static const ms_dock_param TUNNEL_HEADERS[] = {
    { "upgrade", 7, "websocket", 9 },
    { "connection", 10, "Upgrade", 7 },
};

static void expect_bytes(const ms_dock_buf *b, const void *want, size_t want_len)
{
    assert_int_equal(b->len, want_len);
    assert_memory_equal(b->data, want, want_len);
}

static void expect_param(const ms_dock_param *p, const char *name, const char *value, size_t value_len)
{
    assert_int_equal(p->name_len, strlen(name));
    assert_memory_equal(p->name, name, p->name_len);
    assert_int_equal(p->value_len, value_len);
    assert_memory_equal(p->value, value, value_len);
}

static void test_v3_bytes(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };

    assert_int_equal(ms_dock_encode_dock3(&b, "app", 4242, 4), 0);
    expect_bytes(&b, DOCK, sizeof DOCK - 1);

    ms_dock_buf_reset(&b);
    ms_dock_kv cfg[] = { { "env", "prod" } };
    assert_int_equal(ms_dock_encode_moored3(&b, cfg, 1), 0);
    expect_bytes(&b, MOORED, sizeof MOORED - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_moored3(&b, NULL, 0), 0);
    expect_bytes(&b, S("\x02\x00\x00\x00\x19{\"version\":3,\"config\":{}}"));

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_hail(&b, 1, 5, HAIL_PARAMS, 3), 0);
    expect_bytes(&b, HAIL, sizeof HAIL - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_haul(&b, 1, true, "hello", 5), 0);
    expect_bytes(&b, HAUL_BODY, sizeof HAUL_BODY - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_STREAM, REPLY_HEADERS, 3, NULL, 0), 0);
    expect_bytes(&b, REPLY, sizeof REPLY - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_haul(&b, 1, false, "hi", 2), 0);
    expect_bytes(&b, HAUL_RESP, sizeof HAUL_RESP - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_haul(&b, 1, true, NULL, 0), 0);
    expect_bytes(&b, HAUL_FIN, sizeof HAUL_FIN - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_ready(&b, 1), 0);
    expect_bytes(&b, READY, sizeof READY - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_reply(&b, 2, 200, MS_DOCK_REPLY_FILE, REPLY_HEADERS, 1,
                                          "/srv/app/a.txt", 14), 0);
    expect_bytes(&b, REPLY_FILE, sizeof REPLY_FILE - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_reply(&b, 3, 101, MS_DOCK_REPLY_TUNNEL, TUNNEL_HEADERS, 2, NULL, 0), 0);
    expect_bytes(&b, REPLY_TUNNEL, sizeof REPLY_TUNNEL - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_reply(&b, 4, 204, MS_DOCK_REPLY_EMPTY, NULL, 0, NULL, 0), 0);
    expect_bytes(&b, REPLY_EMPTY, sizeof REPLY_EMPTY - 1);

    /* big-endian fields past one byte, and a Hail with no params */
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_hail(&b, 0x01020304u, 0x0102030405060708ull, NULL, 0), 0);
    expect_bytes(&b, S("\x20\x00\x00\x00\x10\x01\x02\x03\x04\x01\x02\x03\x04\x05\x06\x07\x08"
                       "\x00\x00\x00\x00"));
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_ready(&b, 0xFFFFFFFEu), 0);
    expect_bytes(&b, S("\x23\x00\x00\x00\x04\xff\xff\xff\xfe"));

    /* the Haul header alone, for gather writes: 64 KiB of data */
    uint8_t h[MS_DOCK_HAUL_HEADER_LEN];
    ms_dock_put_haul_header(h, 258, false, MS_DOCK_V3_CHUNK);
    assert_memory_equal(h, "\x21\x00\x01\x00\x05\x00\x00\x01\x02\x00", sizeof h);
    ms_dock_put_haul_header(h, 7, true, 0);
    assert_memory_equal(h, "\x21\x00\x00\x00\x05\x00\x00\x00\x07\x01", sizeof h);

    /* several frames append to one buffer */
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_haul(&b, 1, false, "hi", 2), 0);
    assert_int_equal(ms_dock_encode_haul(&b, 1, true, NULL, 0), 0);
    assert_int_equal(b.len, sizeof HAUL_RESP - 1 + sizeof HAUL_FIN - 1);
    assert_memory_equal(b.data + sizeof HAUL_RESP - 1, HAUL_FIN, sizeof HAUL_FIN - 1);
    ms_dock_buf_free(&b);
}

static void test_v3_parse(void **state)
{
    (void)state;
    char err[200];

    ms_dock_hello3 d = { 0 };
    assert_int_equal(ms_dock_parse_dock3((const uint8_t *)DOCK + 5, sizeof DOCK - 6, &d, err, sizeof err), 0);
    assert_string_equal(d.ship, "app");
    assert_int_equal(d.pid, 4242);
    assert_int_equal(d.threads, 4);
    ms_dock_hello3_free(&d);
    assert_null(d.json_);

    ms_dock_moored m = { 0 };
    assert_int_equal(ms_dock_parse_moored3((const uint8_t *)MOORED + 5, sizeof MOORED - 6, &m, err, sizeof err), 0);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.n_config, 1);
    assert_string_equal(m.config[0].name, "env");
    assert_string_equal(m.config[0].value, "prod");
    ms_dock_moored_free(&m);

    ms_dock_hail hl = { 0 };
    assert_int_equal(ms_dock_parse_hail((const uint8_t *)HAIL + 5, sizeof HAIL - 6, &hl, 16, err, sizeof err), 0);
    assert_int_equal(hl.request_id, 1);
    assert_int_equal(hl.content_length, 5);
    assert_int_equal(hl.n_params, 3);
    expect_param(&hl.params[0], "REQUEST_METHOD", "POST", 4);
    expect_param(&hl.params[1], "PATH_INFO", "/echo", 5);
    expect_param(&hl.params[2], "HTTP_X_BIN", "\xff\x00", 2);
    ms_dock_hail_free(&hl);
    assert_null(hl.params);

    uint32_t id = 0;
    bool fin = false;
    const uint8_t *data = NULL;
    size_t n = 0;
    assert_int_equal(ms_dock_parse_haul((const uint8_t *)HAUL_BODY + 5, sizeof HAUL_BODY - 6, &id, &fin, &data, &n), 0);
    assert_int_equal(id, 1);
    assert_true(fin);
    assert_int_equal(n, 5);
    assert_memory_equal(data, "hello", 5);
    assert_int_equal(ms_dock_parse_haul((const uint8_t *)HAUL_RESP + 5, sizeof HAUL_RESP - 6, &id, &fin, &data, &n), 0);
    assert_false(fin);
    assert_int_equal(n, 2);
    assert_int_equal(ms_dock_parse_haul((const uint8_t *)HAUL_FIN + 5, sizeof HAUL_FIN - 6, &id, &fin, &data, &n), 0);
    assert_true(fin);
    assert_int_equal(n, 0);

    ms_dock_reply r = { 0 };
    assert_int_equal(ms_dock_parse_reply((const uint8_t *)REPLY + 5, sizeof REPLY - 6, &r, 16, err, sizeof err), 0);
    assert_int_equal(r.request_id, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.kind, MS_DOCK_REPLY_STREAM);
    assert_int_equal(r.n_headers, 3);
    expect_param(&r.headers[0], "content-type", "text/plain", 10);
    expect_param(&r.headers[1], "set-cookie", "a=1", 3);
    expect_param(&r.headers[2], "set-cookie", "b=2", 3);
    assert_null(r.file_path);
    ms_dock_reply_free(&r);

    assert_int_equal(ms_dock_parse_reply((const uint8_t *)REPLY_FILE + 5, sizeof REPLY_FILE - 6, &r, 16, err, sizeof err), 0);
    assert_int_equal(r.kind, MS_DOCK_REPLY_FILE);
    assert_int_equal(r.file_path_len, 14);
    assert_memory_equal(r.file_path, "/srv/app/a.txt", 14);
    ms_dock_reply_free(&r);

    assert_int_equal(ms_dock_parse_reply((const uint8_t *)REPLY_TUNNEL + 5, sizeof REPLY_TUNNEL - 6, &r, 16, err, sizeof err), 0);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.kind, MS_DOCK_REPLY_TUNNEL);
    assert_int_equal(r.n_headers, 2);
    ms_dock_reply_free(&r);

    assert_int_equal(ms_dock_parse_reply((const uint8_t *)REPLY_EMPTY + 5, sizeof REPLY_EMPTY - 6, &r, 0, err, sizeof err), 0);
    assert_int_equal(r.request_id, 4);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.kind, MS_DOCK_REPLY_EMPTY);
    assert_int_equal(r.n_headers, 0);
    assert_null(r.headers);
    ms_dock_reply_free(&r);

    assert_int_equal(ms_dock_parse_ready((const uint8_t *)READY + 5, 4, &id), 0);
    assert_int_equal(id, 1);
}

/* Every message above, in the order docs/docking-protocol.md shows them. */
static const char *const PARTS[] = { DOCK, MOORED, HAIL, HAUL_BODY, REPLY, HAUL_RESP, HAUL_FIN, READY,
                                     REPLY_FILE, REPLY_TUNNEL, REPLY_EMPTY };
static const size_t PART_LENS[] = { sizeof DOCK - 1, sizeof MOORED - 1, sizeof HAIL - 1,
                                    sizeof HAUL_BODY - 1, sizeof REPLY - 1, sizeof HAUL_RESP - 1,
                                    sizeof HAUL_FIN - 1, sizeof READY - 1, sizeof REPLY_FILE - 1,
                                    sizeof REPLY_TUNNEL - 1, sizeof REPLY_EMPTY - 1 };
#define N_PARTS (sizeof PARTS / sizeof PARTS[0])

static size_t all_parts(uint8_t *all, size_t cap)
{
    size_t total = 0;
    for (size_t i = 0; i < N_PARTS; i++) {
        assert_true(total + PART_LENS[i] <= cap);
        memcpy(all + total, PARTS[i], PART_LENS[i]);
        total += PART_LENS[i];
    }
    return total;
}

/* A whole exchange as one byte stream, fed at every split size to a v3
 * decoder: the same frames come out whole, in order. */
static void test_v3_stream_split(void **state)
{
    (void)state;
    const char *const *parts = PARTS;
    const size_t *lens = PART_LENS;
    const size_t np = N_PARTS;
    uint8_t all[1024];
    size_t total = all_parts(all, sizeof all);
    for (size_t step = 1; step <= total; step++) {
        ms_dock_decoder d;
        ms_dock_decoder_init(&d, MS_DOCK_V3_MAX_FRAME);
        d.v3 = true;
        size_t got = 0;
        for (size_t off = 0; off < total; off += step) {
            size_t n = total - off < step ? total - off : step, pos = 0;
            while (pos < n) {
                ms_dock_frame fr;
                size_t used = 0;
                int rc = ms_dock_decoder_feed(&d, all + off + pos, n - pos, &used, &fr);
                assert_int_not_equal(rc, -1);
                pos += used;
                if (rc == 1) {
                    assert_true(got < np);
                    assert_int_equal(fr.type, (uint8_t)parts[got][0]);
                    assert_int_equal(fr.len, lens[got] - 5);
                    assert_memory_equal(fr.payload, parts[got] + 5, fr.len);
                    got++;
                }
            }
        }
        assert_int_equal(got, np);
        assert_int_equal(ms_dock_decoder_finish(&d), 0);
        ms_dock_decoder_free(&d);
    }
}

static int feed_one(ms_dock_decoder *d, const char *bytes, size_t len)
{
    ms_dock_frame fr;
    size_t used = 0;
    return ms_dock_decoder_feed(d, (const uint8_t *)bytes, len, &used, &fr);
}

static void test_v3_decoder(void **state)
{
    (void)state;
    ms_dock_decoder d;

    /* a v3 link: the v1 session frames are unknown, even with binary on */
    const uint8_t v1_only[] = { 0x10, 0x11, 0x12, 0x13, 0x00, 0x03, 0x1f, 0x24, 0xff };
    for (size_t i = 0; i < sizeof v1_only; i++) {
        ms_dock_decoder_init(&d, MS_DOCK_V3_MAX_FRAME);
        d.v3 = true;
        d.accept_binary = true;
        char f[5] = { (char)v1_only[i], 0, 0, 0, 0 };
        assert_int_equal(feed_one(&d, f, 5), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_UNKNOWN_TYPE);
        ms_dock_decoder_free(&d);
    }
    ms_dock_decoder_init(&d, MS_DOCK_V3_MAX_FRAME);
    d.v3 = true;
    assert_int_equal(feed_one(&d, "\x12\x00\x00\x00\x04\x00\x00\x00\x01", 9), -1);
    assert_string_equal(ms_dock_decoder_message(&d), "frame type 0x12 (Cargo) on a docking v3 link");
    ms_dock_decoder_free(&d);

    /* a v1 link: the v3 frames are unknown */
    for (uint8_t t = MS_DOCK_HAIL; t <= MS_DOCK_READY; t++) {
        ms_dock_decoder_init(&d, 0);
        d.accept_binary = true;
        char f[5] = { (char)t, 0, 0, 0, 0 };
        assert_int_equal(feed_one(&d, f, 5), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_UNKNOWN_TYPE);
        ms_dock_decoder_free(&d);
    }
    ms_dock_decoder_init(&d, 0);
    assert_int_equal(feed_one(&d, READY, sizeof READY - 1), -1);
    assert_string_equal(ms_dock_decoder_message(&d), "frame type 0x23 (Ready) on a docking v1 link");
    ms_dock_decoder_free(&d);

    /* at most MS_DOCK_V3_MAX_FRAME, even when max_frame says more */
    ms_dock_decoder_init(&d, 0);
    d.v3 = true;
    assert_int_equal(feed_one(&d, "\x21\x00\x10\x00\x00", 5), 0);   /* exactly 1 MiB: waits */
    assert_int_equal(ms_dock_decoder_pending(&d), 5);
    assert_int_equal(ms_dock_decoder_finish(&d), -1);
    assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_TRUNCATED);
    ms_dock_decoder_free(&d);
    ms_dock_decoder_init(&d, 0);
    d.v3 = true;
    assert_int_equal(feed_one(&d, "\x21\x00\x10\x00\x01", 5), -1);
    assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_OVERSIZE);
    assert_string_equal(ms_dock_decoder_message(&d),
                        "Haul frame of 1048577 bytes exceeds the maximum of 1048576");
    ms_dock_decoder_free(&d);
    /* ... and a smaller max_frame still holds */
    ms_dock_decoder_init(&d, 4096);
    d.v3 = true;
    assert_int_equal(feed_one(&d, "\x20\x00\x00\x10\x01", 5), -1);
    assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_OVERSIZE);
    ms_dock_decoder_free(&d);

    assert_string_equal(ms_dock_type_name(MS_DOCK_HAIL), "Hail");
    assert_string_equal(ms_dock_type_name(MS_DOCK_HAUL), "Haul");
    assert_string_equal(ms_dock_type_name(MS_DOCK_REPLY), "Reply");
    assert_string_equal(ms_dock_type_name(MS_DOCK_READY), "Ready");
    assert_null(ms_dock_type_name(0x24));

    /* directions */
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_DOCK, true));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_DOCK, false));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_MOORED, false));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_MOORED, true));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_HAIL, false));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_HAIL, true));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_HAUL, true));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_HAUL, false));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_REPLY, true));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_REPLY, false));
    assert_true(ms_dock_v3_type_allowed(MS_DOCK_READY, true));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_READY, false));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_CARGO, true));
    assert_false(ms_dock_v3_type_allowed(MS_DOCK_BOARDING, false));
    /* and v1's table knows nothing of v3 */
    assert_false(ms_dock_type_allowed(MS_DOCK_REPLY, true, MS_DOCK_FEATURES_SUPPORTED));
}

static void expect_dock3_err(const char *json, int code, const char *msg)
{
    ms_dock_hello3 d = { 0 };
    char err[200] = "";
    assert_int_equal(ms_dock_parse_dock3((const uint8_t *)json, strlen(json), &d, err, sizeof err), code);
    if (msg)
        assert_string_equal(err, msg);
    ms_dock_hello3_free(&d);
}

static void test_dock3_refusals(void **state)
{
    (void)state;
    expect_dock3_err("{\"version\":1,\"ship\":\"app\"}", MS_DOCK_E_VERSION,
                     "Dock: protocol version 1 on an HTTP bay's link (it speaks 3)");
    expect_dock3_err("{\"version\":4,\"ship\":\"app\",\"pid\":1,\"threads\":1}", MS_DOCK_E_VERSION, NULL);
    expect_dock3_err("{\"version\":-3,\"ship\":\"app\",\"pid\":1,\"threads\":1}", MS_DOCK_E_VERSION, NULL);
    expect_dock3_err("{\"ship\":\"app\",\"pid\":1,\"threads\":1}", MS_DOCK_E_FIELD, "Dock: missing \"version\"");
    expect_dock3_err("{\"version\":3,\"pid\":1,\"threads\":1}", MS_DOCK_E_FIELD, "Dock: missing \"ship\"");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"threads\":1}", MS_DOCK_E_FIELD, "Dock: missing \"pid\"");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":1}", MS_DOCK_E_FIELD, "Dock: missing \"threads\"");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":0,\"threads\":1}", MS_DOCK_E_RANGE,
                     "Dock: \"pid\" must be positive");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":-5,\"threads\":1}", MS_DOCK_E_RANGE, NULL);
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":4294967296,\"threads\":1}", MS_DOCK_E_RANGE, NULL);
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":1,\"threads\":0}", MS_DOCK_E_RANGE,
                     "Dock: \"threads\" 0 is out of range 1..1024");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":1,\"threads\":1025}", MS_DOCK_E_RANGE,
                     "Dock: \"threads\" 1025 is out of range 1..1024");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":1,\"threads\":\"4\"}", MS_DOCK_E_FIELD,
                     "Dock: \"threads\" must be an integer");
    expect_dock3_err("{\"version\":3,\"ship\":\"app\",\"pid\":1.5,\"threads\":4}", MS_DOCK_E_FIELD, NULL);
    expect_dock3_err("{\"version\":3,\"ship\":7,\"pid\":1,\"threads\":4}", MS_DOCK_E_FIELD, NULL);
    expect_dock3_err("{\"version\":3,\"ship\":\"a\",\"ship\":\"b\",\"pid\":1,\"threads\":4}", MS_DOCK_E_JSON, NULL);
    expect_dock3_err("{\"version\":3,\"ship\":\"a\\u0000b\",\"pid\":1,\"threads\":4}", MS_DOCK_E_JSON, NULL);
    expect_dock3_err("[3]", MS_DOCK_E_JSON, "Dock: payload is not a JSON object");
    expect_dock3_err("{\"version\":3", MS_DOCK_E_JSON, NULL);
    expect_dock3_err("", MS_DOCK_E_JSON, NULL);
    /* unknown keys are ignored */
    ms_dock_hello3 d = { 0 };
    static const char extra[] = "{\"version\":3,\"ship\":\"app\",\"pid\":9,\"threads\":1024,\"x\":[1]}";
    assert_int_equal(ms_dock_parse_dock3(S(extra), &d, NULL, 0), 0);
    assert_int_equal(d.threads, 1024);
    ms_dock_hello3_free(&d);
    ms_dock_hello3_free(&d);   /* twice is harmless */

    /* the v1 parser refuses a v3 Dock, the v3 one a v1 Dock */
    ms_dock_hello h1 = { 0 };
    char err[200];
    assert_int_equal(ms_dock_parse_dock((const uint8_t *)DOCK + 5, sizeof DOCK - 6, &h1, err, sizeof err),
                     MS_DOCK_E_VERSION);
    ms_dock_hello_free(&h1);

    /* Moored v3 */
    ms_dock_moored m = { 0 };
    static const char m1[] = "{\"version\":1,\"config\":{}}";
    assert_int_equal(ms_dock_parse_moored3(S(m1), &m, err, sizeof err), MS_DOCK_E_VERSION);
    assert_string_equal(err, "Moored: protocol version 1 is below 3");
    ms_dock_moored_free(&m);
    static const char m2[] = "{\"version\":3,\"config\":{\"a\":1}}";
    assert_int_equal(ms_dock_parse_moored3(S(m2), &m, err, sizeof err), MS_DOCK_E_FIELD);
    assert_string_equal(err, "Moored: \"config\" value of \"a\" must be a string");
    ms_dock_moored_free(&m);
    static const char m3[] = "{\"version\":3,\"config\":[]}";
    assert_int_equal(ms_dock_parse_moored3(S(m3), &m, err, sizeof err), MS_DOCK_E_FIELD);
    ms_dock_moored_free(&m);
    static const char m4[] = "{\"version\":3}";
    assert_int_equal(ms_dock_parse_moored3(S(m4), &m, err, sizeof err), 0);
    assert_int_equal(m.n_config, 0);
    ms_dock_moored_free(&m);
}

static void expect_hail_err(const void *p, size_t len, size_t max, int code, const char *msg)
{
    ms_dock_hail h = { 0 };
    char err[200] = "";
    assert_int_equal(ms_dock_parse_hail((const uint8_t *)p, len, &h, max, err, sizeof err), code);
    if (msg)
        assert_string_equal(err, msg);
    assert_null(h.params);
    assert_int_equal(h.n_params, 0);
    ms_dock_hail_free(&h);
}

#define HAIL_HEAD(count) "\x00\x00\x00\x01" "\x00\x00\x00\x00\x00\x00\x00\x00" count

static void test_hail_refusals(void **state)
{
    (void)state;
    const char *h = HAIL + 5;
    const size_t hl = sizeof HAIL - 6;
    expect_hail_err(h, 15, 0, MS_DOCK_E_SHORT, "Hail: 15 bytes, shorter than its 16 fixed bytes");
    expect_hail_err(h, 0, 0, MS_DOCK_E_SHORT, NULL);
    expect_hail_err(h, hl, 2, MS_DOCK_E_RANGE, "Hail: 3 params, more than the 2 allowed");
    expect_hail_err(h, hl - 1, 0, MS_DOCK_E_FIELD, "Hail: pair 3 of 3 runs past the end of the payload");
    /* a huge count with no bytes behind it is refused before any allocation */
    expect_hail_err(S(HAIL_HEAD("\xff\xff\xff\xff")), 0, MS_DOCK_E_FIELD,
                    "Hail: 4294967295 params do not fit in the 0 bytes left");
    /* a string length past the end */
    expect_hail_err(S(HAIL_HEAD("\x00\x00\x00\x01") "\x00\x00\x00\x01" "A" "\xff\xff\xff\xff"), 0,
                    MS_DOCK_E_FIELD, NULL);
    expect_hail_err(S(HAIL_HEAD("\x00\x00\x00\x01") "\x00\x00\x00\x05" "A" "\x00\x00\x00\x00"), 0,
                    MS_DOCK_E_FIELD, NULL);
    /* bytes after the last param */
    expect_hail_err(S(HAIL_HEAD("\x00\x00\x00\x00") "x"), 0, MS_DOCK_E_FIELD,
                    "Hail: 1 bytes left after the params");
    char over[sizeof HAIL + 1];
    memcpy(over, h, hl);
    over[hl] = 0;
    expect_hail_err(over, hl + 1, 0, MS_DOCK_E_FIELD, "Hail: 1 bytes left after the params");
    /* over a frame */
    char *big = calloc(1, MS_DOCK_V3_MAX_FRAME + 1);
    assert_non_null(big);
    expect_hail_err(big, MS_DOCK_V3_MAX_FRAME + 1, 0, MS_DOCK_E_OVERSIZE, NULL);
    free(big);
    /* empty names and values are the bay's business: accepted */
    ms_dock_hail ok = { 0 };
    assert_int_equal(ms_dock_parse_hail(S(HAIL_HEAD("\x00\x00\x00\x01") "\x00\x00\x00\x00" "\x00\x00\x00\x00"),
                                        &ok, 1, NULL, 0), 0);
    assert_int_equal(ok.n_params, 1);
    assert_int_equal(ok.params[0].name_len, 0);
    ms_dock_hail_free(&ok);
}

static void expect_reply_err(const void *p, size_t len, size_t max, int code, const char *msg)
{
    ms_dock_reply r = { 0 };
    char err[200] = "";
    assert_int_equal(ms_dock_parse_reply((const uint8_t *)p, len, &r, max, err, sizeof err), code);
    if (msg)
        assert_string_equal(err, msg);
    assert_null(r.headers);
    assert_null(r.file_path);
    ms_dock_reply_free(&r);
}

#define REPLY_HEAD(status, kind, count) "\x00\x00\x00\x01" status kind count
#define HDR(nlen, name, vlen, value) "\x00\x00\x00" nlen name "\x00\x00\x00" vlen value

static void test_reply_refusals(void **state)
{
    (void)state;
    expect_reply_err(REPLY + 5, 10, 0, MS_DOCK_E_SHORT, "Reply: 10 bytes, shorter than its 11 fixed bytes");
    expect_reply_err(S(REPLY_HEAD("\x00\x63", "\x00", "\x00\x00\x00\x00")), 0, MS_DOCK_E_RANGE,
                     "Reply: status 99 is out of range 100..599");
    expect_reply_err(S(REPLY_HEAD("\x02\x58", "\x00", "\x00\x00\x00\x00")), 0, MS_DOCK_E_RANGE,
                     "Reply: status 600 is out of range 100..599");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x03", "\x00\x00\x00\x00")), 0, MS_DOCK_E_FIELD,
                     "Reply: unknown kind 3");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x05", "\x00\x00\x00\x00")), 0, MS_DOCK_E_FIELD, NULL);
    expect_reply_err(S(REPLY_HEAD("\x00\xce", "\x02", "\x00\x00\x00\x00" "\x00\x00\x00\x02" "/a")), 0,
                     MS_DOCK_E_FIELD, "Reply: kind file with status 206 (only 200 may be a file)");
    expect_reply_err(REPLY + 5, sizeof REPLY - 6, 2, MS_DOCK_E_RANGE, "Reply: 3 headers, more than the 2 allowed");
    expect_reply_err(REPLY + 5, sizeof REPLY - 7, 0, MS_DOCK_E_FIELD,
                     "Reply: pair 3 of 3 runs past the end of the payload");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x01", "\x7f\xff\xff\xff")), 0, MS_DOCK_E_FIELD, NULL);
    /* header names: tokens, not empty */
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x00", "", "\x01", "v")), 0,
                     MS_DOCK_E_FIELD, "Reply: header 1 has an empty name");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x03", "a b", "\x01", "v")), 0,
                     MS_DOCK_E_FIELD, "Reply: header 1 has a name that is not a token");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x02") HDR("\x01", "a", "\x01", "v")
                       HDR("\x02", "a:", "\x01", "v")), 0,
                     MS_DOCK_E_FIELD, "Reply: header 2 has a name that is not a token");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x02", "a\x00", "\x01", "v")), 0,
                     MS_DOCK_E_FIELD, NULL);
    /* header values: no CR, LF, NUL */
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x01", "a", "\x03", "x\ry")), 0,
                     MS_DOCK_E_FIELD, "Reply: header 1 has CR, LF or NUL in the value");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x01", "a", "\x03", "x\ny")), 0,
                     MS_DOCK_E_FIELD, NULL);
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x00", "\x00\x00\x00\x01") HDR("\x01", "a", "\x02", "\xff\x00")), 0,
                     MS_DOCK_E_FIELD, NULL);
    /* file paths: present, absolute, no NUL, nothing after */
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00")), 0, MS_DOCK_E_FIELD,
                     "Reply: kind file without a whole path after the headers");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00") "\x00\x00\x00\x05" "/a"), 0,
                     MS_DOCK_E_FIELD, NULL);
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00") "\x00\x00\x00\x05" "a.txt"), 0,
                     MS_DOCK_E_FIELD, "Reply: the file path is not absolute or holds a NUL");
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00") "\x00\x00\x00\x00"), 0,
                     MS_DOCK_E_FIELD, NULL);
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00") "\x00\x00\x00\x04" "/a\x00" "b"), 0,
                     MS_DOCK_E_FIELD, NULL);
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x02", "\x00\x00\x00\x00") "\x00\x00\x00\x02" "/a" "x"), 0,
                     MS_DOCK_E_FIELD, "Reply: 1 bytes left after the file path");
    /* a path after a reply of another kind is left over */
    expect_reply_err(S(REPLY_HEAD("\x00\xc8", "\x01", "\x00\x00\x00\x00") "\x00\x00\x00\x02" "/a"), 0,
                     MS_DOCK_E_FIELD, "Reply: 6 bytes left after the headers");
    char *big = calloc(1, MS_DOCK_V3_MAX_FRAME + 1);
    assert_non_null(big);
    expect_reply_err(big, MS_DOCK_V3_MAX_FRAME + 1, 0, MS_DOCK_E_OVERSIZE, NULL);
    free(big);

    /* accepted: the edges of status, obs-text in values, a tab, tchars */
    ms_dock_reply r = { 0 };
    assert_int_equal(ms_dock_parse_reply(S(REPLY_HEAD("\x00\x64", "\x00", "\x00\x00\x00\x01")
                                           HDR("\x05", "X-!#~", "\x04", "\xff\t\x80z")), &r, 1, NULL, 0), 0);
    assert_int_equal(r.status, 100);
    ms_dock_reply_free(&r);
    assert_int_equal(ms_dock_parse_reply(S(REPLY_HEAD("\x02\x57", "\x01", "\x00\x00\x00\x00")), &r, 0, NULL, 0), 0);
    assert_int_equal(r.status, 599);
    ms_dock_reply_free(&r);
}

static void test_haul_ready_refusals(void **state)
{
    (void)state;
    uint32_t id = 0;
    bool fin = false;
    const uint8_t *data = NULL;
    size_t n = 0;
    assert_int_equal(ms_dock_parse_haul(S("\x00\x00\x00\x01"), &id, &fin, &data, &n), MS_DOCK_E_SHORT);
    assert_int_equal(ms_dock_parse_haul(S(""), &id, &fin, &data, &n), MS_DOCK_E_SHORT);
    assert_int_equal(ms_dock_parse_haul(S("\x00\x00\x00\x01\x02"), &id, &fin, &data, &n), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_parse_haul(S("\x00\x00\x00\x01\x81" "x"), &id, &fin, &data, &n), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_parse_haul(S("\x00\x00\x00\x09\x00"), &id, &fin, &data, &n), 0);
    assert_int_equal(id, 9);
    assert_false(fin);
    assert_int_equal(n, 0);
    uint8_t *big = calloc(1, MS_DOCK_V3_MAX_FRAME + 1);
    assert_non_null(big);
    assert_int_equal(ms_dock_parse_haul(big, MS_DOCK_V3_MAX_FRAME + 1, &id, &fin, &data, &n), MS_DOCK_E_OVERSIZE);
    assert_int_equal(ms_dock_parse_haul(big, MS_DOCK_V3_MAX_FRAME, &id, &fin, &data, &n), 0);
    assert_int_equal(n, MS_DOCK_V3_MAX_FRAME - 5);
    free(big);

    assert_int_equal(ms_dock_parse_ready(S("\x00\x00\x01"), &id), MS_DOCK_E_SHORT);
    assert_int_equal(ms_dock_parse_ready(S("\x00\x00\x00\x01\x00"), &id), MS_DOCK_E_FIELD);
}

static void test_encoder_limits(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };
    size_t room = MS_DOCK_V3_MAX_FRAME - 5;
    uint8_t *big = calloc(1, MS_DOCK_V3_MAX_FRAME + 1);
    assert_non_null(big);

    /* a Haul of exactly the maximum frame, not one byte more */
    assert_int_equal(ms_dock_encode_haul(&b, 1, false, big, room + 1), MS_DOCK_E_OVERSIZE);
    assert_int_equal(b.len, 0);
    assert_int_equal(ms_dock_encode_haul(&b, 1, false, big, room), 0);
    assert_int_equal(b.len, MS_DOCK_HEADER_LEN + MS_DOCK_V3_MAX_FRAME);
    assert_memory_equal(b.data, "\x21\x00\x10\x00\x00", 5);
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_haul(&b, 1, false, NULL, 3), MS_DOCK_E_FIELD);

    /* Hail: a param too large for a frame, a missing name, nothing appended */
    ms_dock_param p[2] = { { "A", 1, (const char *)big, MS_DOCK_V3_MAX_FRAME - 16 - 9 }, { "B", 1, "", 0 } };
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, p, 1), 0);   /* exactly a frame */
    assert_int_equal(b.len, MS_DOCK_HEADER_LEN + MS_DOCK_V3_MAX_FRAME);
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, p, 2), MS_DOCK_E_OVERSIZE);
    p[0].value_len = MS_DOCK_V3_MAX_FRAME + 1;
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, p, 1), MS_DOCK_E_OVERSIZE);
    p[0].value_len = SIZE_MAX;
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, p, 1), MS_DOCK_E_OVERSIZE);
    p[0].name = NULL;
    p[0].value_len = 1;
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, p, 1), MS_DOCK_E_FIELD);
    ms_dock_param nov = { "A", 1, NULL, 2 };
    assert_int_equal(ms_dock_encode_hail(&b, 1, 0, &nov, 1), MS_DOCK_E_FIELD);
    assert_int_equal(b.len, 0);

    /* Reply: a path exactly with kind file; a head over a frame */
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_FILE, NULL, 0, NULL, 0), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_STREAM, NULL, 0, "/a", 2), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_FILE, NULL, 0, (const char *)big,
                                          MS_DOCK_V3_MAX_FRAME), MS_DOCK_E_OVERSIZE);
    ms_dock_param hv = { "x", 1, (const char *)big, MS_DOCK_V3_MAX_FRAME - 11 - 8 };
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_STREAM, &hv, 1, NULL, 0), MS_DOCK_E_OVERSIZE);
    assert_int_equal(b.len, 0);
    hv.value_len--;
    assert_int_equal(ms_dock_encode_reply(&b, 1, 200, MS_DOCK_REPLY_STREAM, &hv, 1, NULL, 0), 0);
    assert_int_equal(b.len, MS_DOCK_HEADER_LEN + MS_DOCK_V3_MAX_FRAME);
    ms_dock_buf_reset(&b);
    /* the encoder leaves content to the caller: a hostile head can be built */
    ms_dock_param bad = { "a b", 3, "x\r\n", 3 };
    assert_int_equal(ms_dock_encode_reply(&b, 1, 999, 9, &bad, 1, NULL, 0), 0);
    ms_dock_reply r = { 0 };
    assert_int_equal(ms_dock_parse_reply(b.data + 5, b.len - 5, &r, 0, NULL, 0), MS_DOCK_E_RANGE);
    ms_dock_buf_reset(&b);

    /* JSON: strings must be UTF-8, config names present */
    assert_int_equal(ms_dock_encode_dock3(&b, "\xff", 1, 1), MS_DOCK_E_FIELD);
    ms_dock_kv cfg[] = { { "k", "\xc3" } };
    assert_int_equal(ms_dock_encode_moored3(&b, cfg, 1), MS_DOCK_E_FIELD);
    ms_dock_kv noname[] = { { NULL, "v" } };
    assert_int_equal(ms_dock_encode_moored3(&b, noname, 1), MS_DOCK_E_FIELD);
    assert_int_equal(b.len, 0);
    assert_int_equal(ms_dock_encode_dock3(&b, NULL, 1, 1), 0);
    expect_bytes(&b, S("\x01\x00\x00\x00\x2b{\"version\":3,\"ship\":\"\",\"pid\":1,\"threads\":1}"));

    free(big);
    ms_dock_buf_free(&b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The hex dumps of the HTTP bays section of docs/docking-protocol.md
 * ("0000  01 00 ...  ascii" lines), read in order, are exactly the
 * messages above in order: the documented bytes are the codec's. */
static void test_docs_hex(void **state)
{
    (void)state;
    FILE *f = fopen(MS_DOCKING_MD, "r");
    assert_non_null(f);
    uint8_t doc[2048];
    size_t n = 0, block_off = 0;
    bool in_section = false;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0) {
            in_section = strncmp(line, "## 13. HTTP bays", 16) == 0;
            continue;
        }
        if (!in_section || strlen(line) < 8 || line[4] != ' ' || line[5] != ' ')
            continue;
        int off = 0;
        for (int i = 0; i < 4; i++) {
            if (hexval(line[i]) < 0) {
                off = -1;
                break;
            }
            off = off * 16 + hexval(line[i]);
        }
        if (off < 0)
            continue;
        if (off == 0)
            block_off = 0;
        assert_int_equal((size_t)off, block_off);   /* offsets count the bytes of the block */
        for (size_t col = 6; col + 1 < strlen(line) && col < 6 + 16 * 3; col += 3) {
            if (line[col] == ' ')
                break;
            int hi = hexval(line[col]), lo = hexval(line[col + 1]);
            assert_true(hi >= 0 && lo >= 0);
            assert_true(n < sizeof doc);
            doc[n++] = (uint8_t)(hi * 16 + lo);
            block_off++;
        }
    }
    fclose(f);
    uint8_t all[1024];
    size_t total = all_parts(all, sizeof all);
    assert_int_equal(n, total);
    assert_memory_equal(doc, all, total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_bytes),
        cmocka_unit_test(test_v3_parse),
        cmocka_unit_test(test_v3_stream_split),
        cmocka_unit_test(test_v3_decoder),
        cmocka_unit_test(test_dock3_refusals),
        cmocka_unit_test(test_hail_refusals),
        cmocka_unit_test(test_reply_refusals),
        cmocka_unit_test(test_haul_ready_refusals),
        cmocka_unit_test(test_encoder_limits),
        cmocka_unit_test(test_docs_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
