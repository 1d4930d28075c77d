/* test_dock.c: the docking protocol codec: byte-exact v1 frames, round trips
 * of every message, feeds split at every byte, the binary feature, and every
 * error of the decoder and the payload parsers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dock/protocol.h"

/* Collected frames from a feed. */
typedef struct {
    uint8_t type[64];
    uint8_t *payload[64];
    uint32_t len[64];
    int n;
} frames;

static void frames_free(frames *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->payload[i]);
    f->n = 0;
}

/* Feeds data in chunks of `step` bytes (0 = all at once); returns the
 * decoder's last result (-1 on error). */
static int feed_all(ms_dock_decoder *d, const uint8_t *data, size_t len, size_t step, frames *f)
{
    size_t off = 0;
    while (off < len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t pos = 0;
        while (pos < n) {
            ms_dock_frame fr;
            size_t used = 0;
            int rc = ms_dock_decoder_feed(d, data + off + pos, n - pos, &used, &fr);
            pos += used;
            if (rc < 0)
                return -1;
            if (rc == 1) {
                assert_true(f->n < 64);
                f->type[f->n] = fr.type;
                f->len[f->n] = fr.len;
                f->payload[f->n] = malloc(fr.len + 1);
                memcpy(f->payload[f->n], fr.payload, fr.len);
                f->payload[f->n][fr.len] = 0;
                f->n++;
            } else {
                assert_int_equal(pos, n);
            }
        }
        off += n;
    }
    return 0;
}

static void expect_bytes(const ms_dock_buf *b, const void *want, size_t want_len)
{
    assert_int_equal(b->len, want_len);
    assert_memory_equal(b->data, want, want_len);
}

static void test_v1_bytes(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };

    assert_int_equal(ms_dock_encode_dock(&b, "chat", 0), 0);
    static const char dock[] = "\x01\x00\x00\x00\x1b{\"version\":1,\"ship\":\"chat\"}";
    expect_bytes(&b, dock, sizeof dock - 1);

    ms_dock_buf_reset(&b);
    ms_dock_kv cfg[] = { { "room", "lobby" } };
    assert_int_equal(ms_dock_encode_moored(&b, cfg, 1, 0), 0);
    static const char moored[] = "\x02\x00\x00\x00\x27{\"version\":1,\"config\":{\"room\":\"lobby\"}}";
    expect_bytes(&b, moored, sizeof moored - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_moored(&b, NULL, 0, 0), 0);
    static const char moored0[] = "\x02\x00\x00\x00\x19{\"version\":1,\"config\":{}}";
    expect_bytes(&b, moored0, sizeof moored0 - 1);

    ms_dock_buf_reset(&b);
    ms_dock_kv hdr[] = { { "Host", "example.com" } };
    assert_int_equal(ms_dock_encode_boarding(&b, 7, "/ws?x=1", "10.0.0.1:5000", hdr, 1), 0);
    static const char boarding[] = "\x10\x00\x00\x00\x5d{\"conn_id\":7,\"path\":\"/ws?x=1\","
                                   "\"remote_addr\":\"10.0.0.1:5000\",\"headers\":{\"Host\":\"example.com\"}}";
    expect_bytes(&b, boarding, sizeof boarding - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_disembark(&b, 7, 1000, "bye"), 0);
    static const char dis[] = "\x11\x00\x00\x00\x28{\"conn_id\":7,\"code\":1000,\"reason\":\"bye\"}";
    expect_bytes(&b, dis, sizeof dis - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_cargo(&b, 0x01020304, "hi", 2, false), 0);
    static const char cargo[] = "\x12\x00\x00\x00\x06\x01\x02\x03\x04hi";
    expect_bytes(&b, cargo, sizeof cargo - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_cargo(&b, 0xFFFFFFFFu, "\x00\xff", 2, true), 0);
    static const char cbin[] = "\x13\x00\x00\x00\x06\xff\xff\xff\xff\x00\xff";
    expect_bytes(&b, cbin, sizeof cbin - 1);

    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_cargo(&b, 1, "", 0, false), 0);
    expect_bytes(&b, "\x12\x00\x00\x00\x04\x00\x00\x00\x01", 9);

    /* Big-endian length over 255 bytes. */
    ms_dock_buf_reset(&b);
    uint8_t big[300];
    memset(big, 'a', sizeof big);
    assert_int_equal(ms_dock_encode_raw(&b, MS_DOCK_CARGO, big, sizeof big), 0);
    assert_memory_equal(b.data, "\x12\x00\x00\x01\x2c", 5);

    uint8_t h[9];
    assert_int_equal(ms_dock_put_cargo_header(h, MS_DOCK_CARGO, 258, 1000), 0);
    assert_memory_equal(h, "\x12\x00\x00\x03\xec\x00\x00\x01\x02", 9);
    ms_dock_buf_free(&b);
}

static void test_features_on_wire(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };
    assert_int_equal(ms_dock_encode_dock(&b, "c", MS_DOCK_FEAT_BINARY | 0x100), 0);
    static const char dock[] = "\x01\x00\x00\x00\x2e{\"version\":1,\"ship\":\"c\",\"features\":[\"binary\"]}";
    expect_bytes(&b, dock, sizeof dock - 1);
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_moored(&b, NULL, 0, MS_DOCK_FEAT_BINARY), 0);
    static const char m[] = "\x02\x00\x00\x00\x2f{\"version\":1,\"config\":{},\"features\":[\"binary\"]}";
    expect_bytes(&b, m, sizeof m - 1);
    ms_dock_buf_free(&b);

    assert_int_equal(ms_dock_agree_features(MS_DOCK_FEAT_BINARY | 0x80), MS_DOCK_FEAT_BINARY);
    assert_int_equal(ms_dock_agree_features(0), 0);
    assert_true(ms_dock_type_allowed(MS_DOCK_DOCK, true, 0));
    assert_false(ms_dock_type_allowed(MS_DOCK_DOCK, false, 0));
    assert_false(ms_dock_type_allowed(MS_DOCK_MOORED, true, 0));
    assert_false(ms_dock_type_allowed(MS_DOCK_BOARDING, true, 0));
    assert_true(ms_dock_type_allowed(MS_DOCK_BOARDING, false, 0));
    assert_true(ms_dock_type_allowed(MS_DOCK_CARGO, true, 0));
    assert_true(ms_dock_type_allowed(MS_DOCK_DISEMBARK, false, 0));
    assert_false(ms_dock_type_allowed(MS_DOCK_CARGO_BINARY, true, 0));
    assert_true(ms_dock_type_allowed(MS_DOCK_CARGO_BINARY, true, MS_DOCK_FEAT_BINARY));
    assert_false(ms_dock_type_allowed(0x20, true, MS_DOCK_FEAT_BINARY));
}

/* The resume feature: named in Dock and Moored next to binary, and a
 * Boarding sent again with "resumed": true (the bytes of
 * docs/docking-protocol.md, section "Extension: resume"). */
static void test_resume_on_wire(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };
    assert_int_equal(ms_dock_encode_dock(&b, "chat", MS_DOCK_FEAT_BINARY | MS_DOCK_FEAT_RESUME), 0);
    static const char dock[] = "\x01\x00\x00\x00\x3a{\"version\":1,\"ship\":\"chat\","
                               "\"features\":[\"binary\",\"resume\"]}";
    expect_bytes(&b, dock, sizeof dock - 1);
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_moored(&b, NULL, 0, MS_DOCK_FEAT_RESUME), 0);
    static const char m[] = "\x02\x00\x00\x00\x2f{\"version\":1,\"config\":{},\"features\":[\"resume\"]}";
    expect_bytes(&b, m, sizeof m - 1);
    assert_int_equal(ms_dock_agree_features(MS_DOCK_FEAT_RESUME | 0x80), MS_DOCK_FEAT_RESUME);

    ms_dock_hello h = { 0 };
    assert_int_equal(ms_dock_parse_dock((const uint8_t *)dock + 5, sizeof dock - 6, &h, NULL, 0), 0);
    assert_int_equal(h.features, MS_DOCK_FEAT_BINARY | MS_DOCK_FEAT_RESUME);
    ms_dock_hello_free(&h);

    /* the Boarding of a held client, sent again to the bay that docked after */
    ms_dock_buf first = { 0 };
    ms_dock_kv hdr[] = { { "Host", "example.com" } };
    assert_int_equal(ms_dock_encode_boarding(&first, 7, "/ws?x=1", "10.0.0.1:5000", hdr, 1), 0);
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_boarding_resumed(&b, first.data, first.len), 0);
    static const char again[] = "\x10\x00\x00\x00\x6c{\"conn_id\":7,\"path\":\"/ws?x=1\","
                                "\"remote_addr\":\"10.0.0.1:5000\",\"headers\":{\"Host\":\"example.com\"},"
                                "\"resumed\":true}";
    expect_bytes(&b, again, sizeof again - 1);
    ms_dock_boarding bo = { 0 };
    assert_int_equal(ms_dock_parse_boarding(b.data + 5, b.len - 5, &bo, NULL, 0), 0);
    assert_true(bo.resumed);
    assert_int_equal(bo.conn_id, 7);
    assert_string_equal(bo.path, "/ws?x=1");
    ms_dock_boarding_free(&bo);
    assert_int_equal(ms_dock_parse_boarding(first.data + 5, first.len - 5, &bo, NULL, 0), 0);
    assert_false(bo.resumed);
    ms_dock_boarding_free(&bo);
    char err[200];
    static const char bad[] = "{\"conn_id\":7,\"path\":\"/\",\"resumed\":1}";
    assert_int_equal(ms_dock_parse_boarding((const uint8_t *)bad, sizeof bad - 1, &bo, err, sizeof err),
                     MS_DOCK_E_FIELD);
    assert_string_equal(err, "Boarding: \"resumed\" must be true or false");
    ms_dock_boarding_free(&bo);

    /* only a whole Boarding frame can be sent again */
    ms_dock_buf_reset(&b);
    assert_int_equal(ms_dock_encode_boarding_resumed(&b, first.data, first.len - 1), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_encode_boarding_resumed(&b, (const uint8_t *)m, sizeof m - 1), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_encode_boarding_resumed(&b, first.data, 3), MS_DOCK_E_FIELD);
    assert_int_equal(b.len, 0);
    ms_dock_buf_free(&first);
    ms_dock_buf_free(&b);
}

/* Every message encoded into one stream, decoded at every split size, and
 * each payload parsed back. */
static void test_round_trip_split(void **state)
{
    (void)state;
    ms_dock_buf b = { 0 };
    ms_dock_kv cfg[] = { { "room", "lobby" }, { "max", "10" }, { "uni", "caf\xc3\xa9" } };
    ms_dock_kv hdr[] = { { "Host", "h" }, { "Cookie", "a=1" }, { "X-A", "1" },
                         { "cookie", "b=2" }, { "x-a", "2" } };
    uint8_t bin[1000];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7);
    assert_int_equal(ms_dock_encode_dock(&b, "chat", MS_DOCK_FEAT_BINARY), 0);
    assert_int_equal(ms_dock_encode_moored(&b, cfg, 3, MS_DOCK_FEAT_BINARY), 0);
    assert_int_equal(ms_dock_encode_boarding(&b, UINT32_MAX, "/ws?a=b&c=\"d\"", "[::1]:80", hdr, 5), 0);
    assert_int_equal(ms_dock_encode_cargo(&b, 42, "{\"x\":1}", 7, false), 0);
    assert_int_equal(ms_dock_encode_cargo(&b, 42, bin, sizeof bin, true), 0);
    assert_int_equal(ms_dock_encode_cargo(&b, 0, NULL, 0, false), 0);
    assert_int_equal(ms_dock_encode_disembark(&b, 42, 4000, "r\xc3\xa9" "ason \"q\""), 0);

    static const size_t steps[] = { 0, 1, 2, 3, 4, 5, 6, 7, 9, 13, 64, 4097 };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        ms_dock_decoder d;
        ms_dock_decoder_init(&d, 0);
        d.accept_binary = true;
        frames f = { 0 };
        assert_int_equal(feed_all(&d, b.data, b.len, steps[s], &f), 0);
        assert_int_equal(ms_dock_decoder_finish(&d), 0);
        assert_int_equal(ms_dock_decoder_pending(&d), 0);
        assert_int_equal(f.n, 7);

        char err[160] = "";
        assert_int_equal(f.type[0], MS_DOCK_DOCK);
        ms_dock_hello h;
        assert_int_equal(ms_dock_parse_dock(f.payload[0], f.len[0], &h, err, sizeof err), 0);
        assert_int_equal(h.version, 1);
        assert_string_equal(h.ship, "chat");
        assert_int_equal(h.features, MS_DOCK_FEAT_BINARY);
        ms_dock_hello_free(&h);

        assert_int_equal(f.type[1], MS_DOCK_MOORED);
        ms_dock_moored m;
        assert_int_equal(ms_dock_parse_moored(f.payload[1], f.len[1], &m, err, sizeof err), 0);
        assert_int_equal(m.n_config, 3);
        assert_string_equal(m.config[0].name, "room");
        assert_string_equal(m.config[0].value, "lobby");
        assert_string_equal(m.config[2].value, "caf\xc3\xa9");
        assert_int_equal(m.features, MS_DOCK_FEAT_BINARY);
        ms_dock_moored_free(&m);

        assert_int_equal(f.type[2], MS_DOCK_BOARDING);
        ms_dock_boarding bo;
        assert_int_equal(ms_dock_parse_boarding(f.payload[2], f.len[2], &bo, err, sizeof err), 0);
        assert_int_equal(bo.conn_id, UINT32_MAX);
        assert_string_equal(bo.path, "/ws?a=b&c=\"d\"");
        assert_string_equal(bo.remote_addr, "[::1]:80");
        assert_int_equal(bo.n_headers, 3);
        assert_string_equal(bo.headers[0].name, "Host");
        assert_string_equal(bo.headers[1].name, "Cookie");
        assert_string_equal(bo.headers[1].value, "a=1; b=2");
        assert_string_equal(bo.headers[2].name, "X-A");
        assert_string_equal(bo.headers[2].value, "1, 2");
        ms_dock_boarding_free(&bo);

        uint32_t id;
        const uint8_t *msg;
        size_t mlen;
        assert_int_equal(f.type[3], MS_DOCK_CARGO);
        assert_int_equal(ms_dock_parse_cargo(f.payload[3], f.len[3], &id, &msg, &mlen), 0);
        assert_int_equal(id, 42);
        assert_int_equal(mlen, 7);
        assert_memory_equal(msg, "{\"x\":1}", 7);
        assert_int_equal(f.type[4], MS_DOCK_CARGO_BINARY);
        assert_int_equal(ms_dock_parse_cargo(f.payload[4], f.len[4], &id, &msg, &mlen), 0);
        assert_int_equal(mlen, sizeof bin);
        assert_memory_equal(msg, bin, sizeof bin);
        assert_int_equal(ms_dock_parse_cargo(f.payload[5], f.len[5], &id, &msg, &mlen), 0);
        assert_int_equal(id, 0);
        assert_int_equal(mlen, 0);

        assert_int_equal(f.type[6], MS_DOCK_DISEMBARK);
        ms_dock_disembark di;
        assert_int_equal(ms_dock_parse_disembark(f.payload[6], f.len[6], &di, err, sizeof err), 0);
        assert_int_equal(di.conn_id, 42);
        assert_int_equal(di.code, 4000);
        assert_string_equal(di.reason, "r\xc3\xa9" "ason \"q\"");
        ms_dock_disembark_free(&di);

        frames_free(&f);
        ms_dock_decoder_free(&d);
    }
    ms_dock_buf_free(&b);
}

/* A large frame through the buffered path, then buffers released. */
static void test_large_frame(void **state)
{
    (void)state;
    size_t n = 3u * 1024u * 1024u;
    uint8_t *msg = malloc(n);
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)(i ^ (i >> 8));
    ms_dock_buf b = { 0 };
    assert_int_equal(ms_dock_encode_cargo(&b, 9, msg, n, false), 0);
    assert_int_equal(ms_dock_encode_cargo(&b, 10, "z", 1, false), 0);
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, 0);
    frames f = { 0 };
    assert_int_equal(feed_all(&d, b.data, b.len, 65536, &f), 0);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.len[0], n + 4);
    assert_memory_equal(f.payload[0] + 4, msg, n);
    assert_int_equal(f.len[1], 5);
    assert_true(d.buf_cap <= 64u * 1024u);
    frames_free(&f);
    ms_dock_decoder_free(&d);
    ms_dock_buf_free(&b);
    free(msg);
}

static int feed_bytes(ms_dock_decoder *d, const char *bytes, size_t len, size_t step)
{
    frames f = { 0 };
    int rc = feed_all(d, (const uint8_t *)bytes, len, step, &f);
    frames_free(&f);
    return rc;
}

static void test_decoder_errors(void **state)
{
    (void)state;
    for (size_t step = 0; step <= 1; step++) {
        ms_dock_decoder d;
        /* Unknown type. */
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x7f\x00\x00\x00\x00", 5, step), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_UNKNOWN_TYPE);
        assert_string_equal(ms_dock_decoder_message(&d), "unknown frame type 0x7f");
        /* The decoder stays failed. */
        size_t used;
        ms_dock_frame fr;
        assert_int_equal(ms_dock_decoder_feed(&d, (const uint8_t *)"\x12", 1, &used, &fr), -1);
        assert_int_equal(ms_dock_decoder_finish(&d), -1);
        ms_dock_decoder_free(&d);

        /* 0x00 and v3 types are unknown too. */
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x00\x00\x00\x00\x00", 5, step), -1);
        ms_dock_decoder_free(&d);
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x20\x00\x00\x00\x00", 5, step), -1);
        ms_dock_decoder_free(&d);

        /* 0x13 without the feature, accepted with it. */
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x13\x00\x00\x00\x04\x00\x00\x00\x01", 9, step), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_UNKNOWN_TYPE);
        assert_non_null(strstr(ms_dock_decoder_message(&d), "binary"));
        ms_dock_decoder_free(&d);
        ms_dock_decoder_init(&d, 0);
        d.accept_binary = true;
        assert_int_equal(feed_bytes(&d, "\x13\x00\x00\x00\x04\x00\x00\x00\x01", 9, step), 0);
        ms_dock_decoder_free(&d);

        /* Oversize: over the configured maximum, and at the 4 GiB edge. */
        ms_dock_decoder_init(&d, 100);
        assert_int_equal(feed_bytes(&d, "\x12\x00\x00\x00\x64", 5, step), 0);  /* exactly 100 */
        ms_dock_decoder_free(&d);
        ms_dock_decoder_init(&d, 100);
        assert_int_equal(feed_bytes(&d, "\x12\x00\x00\x00\x65", 5, step), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_OVERSIZE);
        assert_string_equal(ms_dock_decoder_message(&d),
                            "Cargo frame of 101 bytes exceeds the maximum of 100");
        assert_null(d.buf);
        ms_dock_decoder_free(&d);
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x12\xff\xff\xff\xff", 5, step), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_OVERSIZE);
        ms_dock_decoder_free(&d);

        /* Truncated: inside the header, inside the payload. */
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x12\x00\x00", 3, step), 0);
        assert_int_equal(ms_dock_decoder_pending(&d), 3);
        assert_int_equal(ms_dock_decoder_finish(&d), -1);
        assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_TRUNCATED);
        assert_string_equal(ms_dock_decoder_message(&d),
                            "link ended inside a frame header (3 of 5 bytes)");
        ms_dock_decoder_free(&d);
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x11\x00\x00\x00\x0a{\"con", 10, step), 0);
        assert_int_equal(ms_dock_decoder_pending(&d), 10);
        assert_int_equal(ms_dock_decoder_finish(&d), -1);
        assert_string_equal(ms_dock_decoder_message(&d),
                            "link ended inside a Disembark frame (5 of 10 payload bytes)");
        ms_dock_decoder_free(&d);

        /* A clean end after whole frames. */
        ms_dock_decoder_init(&d, 0);
        assert_int_equal(feed_bytes(&d, "\x12\x00\x00\x00\x04\x00\x00\x00\x01", 9, step), 0);
        assert_int_equal(ms_dock_decoder_finish(&d), 0);
        assert_string_equal(ms_dock_decoder_message(&d), "");
        ms_dock_decoder_free(&d);
    }

    /* Limits below the minimum are raised; 0 is the default. */
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, 1);
    assert_int_equal(d.max_frame, MS_DOCK_MIN_MAX_FRAME);
    ms_dock_decoder_init(&d, 0);
    assert_int_equal(d.max_frame, MS_DOCK_DEFAULT_MAX_FRAME);

    /* An error after a good frame in the same feed: the frame comes first. */
    ms_dock_decoder_init(&d, 0);
    const uint8_t two[] = { 0x12, 0, 0, 0, 4, 0, 0, 0, 1, 0x99, 0, 0, 0, 0 };
    size_t used;
    ms_dock_frame fr;
    assert_int_equal(ms_dock_decoder_feed(&d, two, sizeof two, &used, &fr), 1);
    assert_int_equal(used, 9);
    assert_int_equal(ms_dock_decoder_feed(&d, two + used, sizeof two - used, &used, &fr), -1);
    assert_int_equal(ms_dock_decoder_error(&d), MS_DOCK_E_UNKNOWN_TYPE);
    ms_dock_decoder_free(&d);
}

#define P(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_parse_errors(void **state)
{
    (void)state;
    char err[160];
    ms_dock_hello h;
    ms_dock_moored m;
    ms_dock_boarding bo;
    ms_dock_disembark di;

    assert_int_equal(ms_dock_parse_dock(P("not json"), &h, err, sizeof err), MS_DOCK_E_JSON);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("[1]"), &h, err, sizeof err), MS_DOCK_E_JSON);
    assert_string_equal(err, "Dock: payload is not a JSON object");
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P(""), &h, err, sizeof err), MS_DOCK_E_JSON);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"ship\":\"a\"}"), &h, err, sizeof err), MS_DOCK_E_FIELD);
    assert_string_equal(err, "Dock: missing \"version\"");
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":2,\"ship\":\"a\"}"), &h, err, sizeof err),
                     MS_DOCK_E_VERSION);
    assert_string_equal(err, "Dock: protocol version 2 is not supported (this side speaks 1)");
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":-1,\"ship\":\"a\"}"), &h, err, sizeof err),
                     MS_DOCK_E_VERSION);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1.0,\"ship\":\"a\"}"), &h, err, sizeof err),
                     MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":\"1\",\"ship\":\"a\"}"), &h, err, sizeof err),
                     MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1}"), &h, err, sizeof err), MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":5}"), &h, err, sizeof err),
                     MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":\"a\",\"ship\":\"b\"}"), &h, err,
                                        sizeof err), MS_DOCK_E_JSON);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":\"a\\u0000b\"}"), &h, err,
                                        sizeof err), MS_DOCK_E_JSON);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":\"a\",\"features\":\"binary\"}"),
                                        &h, err, sizeof err), MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":\"a\",\"features\":[1]}"),
                                        &h, err, sizeof err), MS_DOCK_E_FIELD);
    ms_dock_hello_free(&h);
    /* Unknown keys and feature names are ignored (v1 bays with extras). */
    assert_int_equal(ms_dock_parse_dock(P("{\"version\":1,\"ship\":\"a\",\"pid\":3,"
                                          "\"features\":[\"zstd\",\"binary\"]}"),
                                        &h, err, sizeof err), 0);
    assert_int_equal(h.features, MS_DOCK_FEAT_BINARY);
    ms_dock_hello_free(&h);

    assert_int_equal(ms_dock_parse_moored(P("{\"version\":1,\"config\":{\"a\":1}}"), &m, err,
                                          sizeof err), MS_DOCK_E_FIELD);
    assert_string_equal(err, "Moored: \"config\" value of \"a\" must be a string");
    ms_dock_moored_free(&m);
    assert_int_equal(ms_dock_parse_moored(P("{\"version\":1,\"config\":[]}"), &m, err, sizeof err),
                     MS_DOCK_E_FIELD);
    ms_dock_moored_free(&m);
    assert_int_equal(ms_dock_parse_moored(P("{\"version\":1}"), &m, err, sizeof err), 0);
    assert_int_equal(m.n_config, 0);
    assert_int_equal(m.features, 0);
    ms_dock_moored_free(&m);

    static const char *bad_boarding[] = {
        "{\"path\":\"/\"}",
        "{\"conn_id\":-1,\"path\":\"/\"}",
        "{\"conn_id\":4294967296,\"path\":\"/\"}",
        "{\"conn_id\":1.5,\"path\":\"/\"}",
        "{\"conn_id\":true,\"path\":\"/\"}",
        "{\"conn_id\":1}",
        "{\"conn_id\":1,\"path\":null}",
        "{\"conn_id\":1,\"path\":\"/\",\"remote_addr\":1}",
        "{\"conn_id\":1,\"path\":\"/\",\"headers\":{\"a\":[\"b\"]}}",
        "{\"conn_id\":1,\"path\":\"/\",\"headers\":\"a\"}",
    };
    for (size_t i = 0; i < sizeof bad_boarding / sizeof bad_boarding[0]; i++) {
        int rc = ms_dock_parse_boarding((const uint8_t *)bad_boarding[i], strlen(bad_boarding[i]),
                                        &bo, err, sizeof err);
        assert_true(rc == MS_DOCK_E_FIELD || rc == MS_DOCK_E_RANGE);
        ms_dock_boarding_free(&bo);
    }
    assert_int_equal(ms_dock_parse_boarding(P("{\"conn_id\":4294967295,\"path\":\"/\"}"), &bo, err,
                                            sizeof err), 0);
    assert_int_equal(bo.conn_id, UINT32_MAX);
    assert_string_equal(bo.remote_addr, "");
    ms_dock_boarding_free(&bo);

    assert_int_equal(ms_dock_parse_disembark(P("{\"conn_id\":1,\"code\":65536}"), &di, err, sizeof err),
                     MS_DOCK_E_RANGE);
    assert_string_equal(err, "Disembark: \"code\" 65536 is out of range 0..65535");
    ms_dock_disembark_free(&di);
    assert_int_equal(ms_dock_parse_disembark(P("{\"conn_id\":1}"), &di, err, sizeof err), MS_DOCK_E_FIELD);
    ms_dock_disembark_free(&di);
    assert_int_equal(ms_dock_parse_disembark(P("{\"conn_id\":1,\"code\":1000,\"reason\":3}"), &di, err,
                                             sizeof err), MS_DOCK_E_FIELD);
    ms_dock_disembark_free(&di);
    assert_int_equal(ms_dock_parse_disembark(P("{\"conn_id\":1,\"code\":65535}"), &di, NULL, 0), 0);
    assert_int_equal(di.code, 65535);
    assert_string_equal(di.reason, "");
    ms_dock_disembark_free(&di);

    uint32_t id;
    const uint8_t *msg;
    size_t mlen;
    assert_int_equal(ms_dock_parse_cargo(P("\x00\x00\x01"), &id, &msg, &mlen), MS_DOCK_E_SHORT);

    /* Encoders refuse strings that are not UTF-8 (JSON cannot carry them). */
    ms_dock_buf b = { 0 };
    ms_dock_kv hdr[] = { { "X", "\xff" } };
    assert_int_equal(ms_dock_encode_boarding(&b, 1, "/", "", hdr, 1), MS_DOCK_E_FIELD);
    assert_int_equal(ms_dock_encode_disembark(&b, 1, 1000, "\xc0\x80"), MS_DOCK_E_FIELD);
    ms_dock_kv cfg[] = { { "k", "\xed\xa0\x80" } };
    assert_int_equal(ms_dock_encode_moored(&b, cfg, 1, 0), MS_DOCK_E_FIELD);
    assert_int_equal(b.len, 0);
    ms_dock_buf_free(&b);

    for (int e = MS_DOCK_OK; e <= MS_DOCK_E_STATE; e++)
        assert_non_null(ms_dock_err_name((ms_dock_err)e));
    assert_null(ms_dock_type_name(0x14));
}

static void test_utf8_and_codes(void **state)
{
    (void)state;
    assert_true(ms_dock_utf8_valid(P("")));
    assert_true(ms_dock_utf8_valid(P("abc \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")));
    assert_false(ms_dock_utf8_valid(P("\x80")));
    assert_false(ms_dock_utf8_valid(P("\xc3")));
    assert_false(ms_dock_utf8_valid(P("\xc0\xaf")));          /* overlong */
    assert_false(ms_dock_utf8_valid(P("\xed\xa0\x80")));      /* surrogate */
    assert_false(ms_dock_utf8_valid(P("\xf4\x90\x80\x80")));  /* > U+10FFFF */
    assert_false(ms_dock_utf8_valid(P("\xf8\x88\x80\x80\x80")));
    assert_true(ms_dock_close_code_sendable(1000));
    assert_true(ms_dock_close_code_sendable(1012));
    assert_true(ms_dock_close_code_sendable(4999));
    assert_false(ms_dock_close_code_sendable(1005));
    assert_false(ms_dock_close_code_sendable(1006));
    assert_false(ms_dock_close_code_sendable(1015));
    assert_false(ms_dock_close_code_sendable(999));
    assert_false(ms_dock_close_code_sendable(5000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_bytes),
        cmocka_unit_test(test_features_on_wire),
        cmocka_unit_test(test_resume_on_wire),
        cmocka_unit_test(test_round_trip_split),
        cmocka_unit_test(test_large_frame),
        cmocka_unit_test(test_decoder_errors),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_utf8_and_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
