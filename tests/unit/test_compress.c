/* test_compress.c: Accept-Encoding negotiation, compressible types, and
 * round trips of every encoder fed in small pieces, decoded with zlib,
 * libbrotlidec and libzstd and compared byte for byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include "http/compress.h"

static void test_negotiate_table(void **state)
{
    (void)state;
    static const struct {
        const char *ae;   /* NULL = absent */
        ms_encoding want;
        bool forbidden;
    } cases[] = {
        { NULL, MS_ENC_IDENTITY, false },
        { "", MS_ENC_IDENTITY, false },
        { "gzip", MS_ENC_GZIP, false },
        { "deflate", MS_ENC_DEFLATE, false },
        { "br", MS_ENC_BR, false },
        { "gzip, deflate, br", MS_ENC_BR, false },
        { "gzip, deflate", MS_ENC_GZIP, false },
        { "deflate, gzip", MS_ENC_GZIP, false },
        { "br;q=0.5, gzip", MS_ENC_GZIP, false },
        { "br;q=1.0, gzip;q=0.999", MS_ENC_BR, false },
        { "gzip;q=0.8, br;q=0.8", MS_ENC_BR, false },
        { "br;q=0, gzip;q=0", MS_ENC_IDENTITY, false },
        { "br;q=0", MS_ENC_IDENTITY, false },
        { "*", MS_ENC_ZSTD, false },
        { "*;q=0.5, br;q=0", MS_ENC_ZSTD, false },
        { "*;q=0.5, br;q=0, zstd;q=0", MS_ENC_GZIP, false },
        { "*;q=0", MS_ENC_IDENTITY, true },
        { "*;q=0, identity", MS_ENC_IDENTITY, false },
        { "identity;q=0", MS_ENC_IDENTITY, true },
        { "identity;q=0, gzip", MS_ENC_GZIP, true },
        { "identity", MS_ENC_IDENTITY, false },
        { "GZIP", MS_ENC_GZIP, false },
        { "Br ; Q=0.3 ,  GZip ; q=0.2", MS_ENC_BR, false },
        { "  gzip  ,  br  ", MS_ENC_BR, false },
        { "x-gzip", MS_ENC_GZIP, false },
        { "compress, zstd", MS_ENC_ZSTD, false },
        { "compress", MS_ENC_IDENTITY, false },
        { "bogus;;;,,,", MS_ENC_IDENTITY, false },
        { "gzip;q=2", MS_ENC_IDENTITY, false },        /* malformed q: element ignored */
        { "gzip;q=0.1234", MS_ENC_IDENTITY, false },
        { "gzip;q=abc, deflate", MS_ENC_DEFLATE, false },
        { "gzip;q=0.5, identity;q=1", MS_ENC_IDENTITY, false },   /* identity preferred */
        { "gzip;q=0.5, identity", MS_ENC_IDENTITY, false },
        { "gzip;q=0.1", MS_ENC_GZIP, false },                     /* implicit identity does not compete */
        { "*;q=0.5, gzip;q=0.3", MS_ENC_ZSTD, false },            /* zstd via * at 0.5 */
        { "*;q=0.5, gzip;q=0.3, zstd;q=0.2", MS_ENC_BR, false },  /* br via * at 0.5 */
        { "*;q=0.5, br;q=0.3, deflate;q=0.3, gzip;q=0.3, zstd;q=0.3", MS_ENC_IDENTITY, false },
        { "gzip;q=0.5, identity;q=0.5", MS_ENC_GZIP, false },     /* tie: encode */
        { "gzip;level=9", MS_ENC_GZIP, false },                   /* other params ignored */
        { "gzip;q=0, gzip", MS_ENC_IDENTITY, false },             /* first entry wins */
        { ",,gzip,,", MS_ENC_GZIP, false },
        { "gzip;q=1.000", MS_ENC_GZIP, false },
        { "gzip;q=1.001", MS_ENC_IDENTITY, false },
        { "br;q=0.", MS_ENC_IDENTITY, false },            /* "0." is q=0 */
        { "brotli, gzipx", MS_ENC_IDENTITY, false },
        /* zstd: preferred on equal q (dynamic bodies), else by q */
        { "zstd", MS_ENC_ZSTD, false },
        { "ZsTd", MS_ENC_ZSTD, false },
        { "gzip, deflate, br, zstd", MS_ENC_ZSTD, false },          /* what Chrome sends */
        { "br;q=0.8, zstd;q=0.8, gzip;q=0.8", MS_ENC_ZSTD, false },
        { "zstd;q=0.5, br", MS_ENC_BR, false },
        { "zstd;q=0.5, gzip;q=0.6", MS_ENC_GZIP, false },
        { "gzip;q=0.001, zstd;q=0.002", MS_ENC_ZSTD, false },
        { "zstd;q=0, gzip", MS_ENC_GZIP, false },
        { "zstd;q=0, zstd", MS_ENC_IDENTITY, false },             /* duplicates: the first wins */
        { "zstd, zstd;q=0, zstd;q=0.5", MS_ENC_ZSTD, false },
        { "zstd;q=0.1, zstd;q=1, gzip;q=0.2", MS_ENC_GZIP, false },
        { "zstd;q=1.5, gzip;q=0.1", MS_ENC_GZIP, false },         /* absurd q-values: element ignored */
        { "zstd;q=-1, gzip;q=0.1", MS_ENC_GZIP, false },
        { "zstd;q=99999999999999999999999", MS_ENC_IDENTITY, false },
        { "zstd;q=0.0000001", MS_ENC_IDENTITY, false },
        { "zstd;q=1e3", MS_ENC_IDENTITY, false },
        { "zstd;q=", MS_ENC_IDENTITY, false },
        { "zstd;q=0.5;q=1", MS_ENC_ZSTD, false },
        { "zstd;q=0.5, identity", MS_ENC_IDENTITY, false },
        { "zstd, identity;q=0", MS_ENC_ZSTD, true },
        { "zstdx, xzstd, zst", MS_ENC_IDENTITY, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool forbidden = !cases[i].forbidden;
        const char *ae = cases[i].ae;
        ms_encoding e = ms_compress_negotiate(ae, ae ? strlen(ae) : 0, &forbidden);
        if (e != cases[i].want || forbidden != cases[i].forbidden)
            fail_msg("case %zu \"%s\": got %s forbidden=%d, want %s forbidden=%d", i, ae ? ae : "(null)",
                     ms_encoding_name(e), forbidden, ms_encoding_name(cases[i].want), cases[i].forbidden);
    }
    /* len bounds the parse: the value need not be NUL-terminated */
    assert_int_equal(ms_compress_negotiate("gzip, br", 4, NULL), MS_ENC_GZIP);
    int q[MS_ENC_COUNT];
    ms_compress_qvalues("br;q=0.25, *;q=0.5", strlen("br;q=0.25, *;q=0.5"), q);
    assert_int_equal(q[MS_ENC_BR], 250);
    assert_int_equal(q[MS_ENC_GZIP], 500);
    assert_int_equal(q[MS_ENC_IDENTITY], 500);
    assert_int_equal(q[MS_ENC_ZSTD], 500);
    ms_compress_qvalues("zstd;q=0.125, gzip", strlen("zstd;q=0.125, gzip"), q);
    assert_int_equal(q[MS_ENC_ZSTD], 125);
    assert_int_equal(q[MS_ENC_BR], 0);
    assert_string_equal(ms_encoding_name(MS_ENC_GZIP), "gzip");
    assert_string_equal(ms_encoding_name(MS_ENC_DEFLATE), "deflate");
    assert_string_equal(ms_encoding_name(MS_ENC_BR), "br");
    assert_string_equal(ms_encoding_name(MS_ENC_ZSTD), "zstd");
    assert_string_equal(ms_encoding_name(MS_ENC_IDENTITY), "identity");
}

static void test_types(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "text/html", "text/html; charset=utf-8", "TEXT/CSS", "text/plain", "text/javascript;charset=utf-8",
        "application/json", "application/problem+json", "application/ld+json", "application/javascript",
        "application/xml", "application/atom+xml", "image/svg+xml", "application/wasm",
        "application/manifest+json", " text/csv ", "font/ttf", "image/x-icon",
    };
    static const char *const no[] = {
        "image/png", "image/jpeg", "video/mp4", "audio/mpeg", "application/zip", "application/gzip",
        "application/octet-stream", "font/woff2", "font/woff", "application/pdf", "text/event-stream",
        "text/", "", "application/", "image/webp", "textual/html", "application/x-json",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!ms_compress_type_ok(yes[i], strlen(yes[i])))
            fail_msg("%s should be compressible", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (ms_compress_type_ok(no[i], strlen(no[i])))
            fail_msg("%s should not be compressible", no[i]);
    assert_false(ms_compress_type_ok(NULL, 0));
    assert_true(ms_compress_type_ok("text/html; charset=utf-8", 9));
}

/* ---- round trips ---- */

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static uint8_t *make_text(size_t n)
{
    static const char *const words[] = { "<div class=\"item\">", "mothership", " ", "fleet", "</div>\n",
                                         "{\"id\": ", "42", ", \"name\": \"", "proxy", "\"}", "lorem ",
                                         "ipsum ", "dolor ", "sit ", "amet\n" };
    uint8_t *b = malloc(n);
    size_t i = 0;
    while (i < n) {
        const char *w = words[rnd() % (sizeof words / sizeof words[0])];
        for (size_t k = 0; w[k] && i < n; k++)
            b[i++] = (uint8_t)w[k];
    }
    return b;
}

static uint8_t *make_random(size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd();
    return b;
}

/* A zstd decoder that refuses windows over MS_ZSTD_WINDOW_LOG: every frame
 * we write must decode within the window we promise. */
static ZSTD_DCtx *zstd_dctx(void)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    assert_non_null(d);
    assert_false(ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, MS_ZSTD_WINDOW_LOG)));
    return d;
}

static uint8_t *decode(ms_encoding e, const uint8_t *in, size_t inlen, size_t expect, size_t *outlen)
{
    uint8_t *out = malloc(expect + 1);
    if (e == MS_ENC_ZSTD) {
        ZSTD_DCtx *d = zstd_dctx();
        ZSTD_inBuffer ib = { in, inlen, 0 };
        ZSTD_outBuffer ob = { out, expect + 1, 0 };
        size_t r;
        do {
            r = ZSTD_decompressStream(d, &ob, &ib);
            if (ZSTD_isError(r))
                fail_msg("zstd: %s", ZSTD_getErrorName(r));
        } while (r != 0 && ib.pos < ib.size);
        assert_int_equal(r, 0);                 /* the frame is complete */
        assert_int_equal(ib.pos, ib.size);      /* nothing after it */
        *outlen = ob.pos;
        ZSTD_freeDCtx(d);
        return out;
    }
    if (e == MS_ENC_BR) {
        size_t n = expect + 1;
        BrotliDecoderResult r = BrotliDecoderDecompress(inlen, in, &n, out);
        assert_int_equal(r, BROTLI_DECODER_RESULT_SUCCESS);
        *outlen = n;
        return out;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, e == MS_ENC_GZIP ? 15 + 16 : 15), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)(expect + 1);
    int r = inflate(&z, Z_FINISH);
    assert_int_equal(r, Z_STREAM_END);
    assert_int_equal(z.avail_in, 0);   /* nothing after the trailer */
    *outlen = z.total_out;
    inflateEnd(&z);
    return out;
}

/* Compress data fed in random pieces of 1..maxpiece bytes, taking the output
 * buffer away after each call the way a connection hands it to uv_write. */
static void roundtrip(ms_encoding e, int level, uint64_t hint, const uint8_t *data, size_t n, size_t maxpiece,
                      bool flushes)
{
    ms_compressor *c = ms_compressor_new(e, level, hint);
    assert_non_null(c);
    assert_int_equal(ms_compressor_encoding(c), e);
    size_t total_cap = n + n / 2 + 65536, total = 0;
    uint8_t *all = malloc(total_cap);
    ms_cbuf out = { 0 };
    size_t i = 0, calls = 0;
    while (i < n) {
        size_t piece = 1 + rnd() % maxpiece;
        if (piece > n - i)
            piece = n - i;
        assert_int_equal(ms_compressor_write(c, data + i, piece, false, &out), 0);
        i += piece;
        if (flushes && ++calls % 7 == 0)
            assert_int_equal(ms_compressor_flush(c, &out), 0);
        if (out.len) {   /* steal the buffer */
            assert_true(total + out.len <= total_cap);
            memcpy(all + total, out.data, out.len);
            total += out.len;
            free(out.data);
            out.data = NULL;
            out.len = out.cap = 0;
        }
        if (level < 0)
            assert_true(ms_compressor_memory(c) <= (size_t)2200 << 10);
    }
    assert_int_equal(ms_compressor_write(c, NULL, 0, true, &out), 0);
    assert_true(total + out.len <= total_cap);
    memcpy(all + total, out.data, out.len);
    total += out.len;
    /* finished: further writes fail */
    assert_int_equal(ms_compressor_write(c, "x", 1, false, &out), -1);
    ms_cbuf_free(&out);
    ms_compressor_free(c);

    if (e == MS_ENC_GZIP)
        assert_true(total >= 18 && all[0] == 0x1f && all[1] == 0x8b);
    if (e == MS_ENC_DEFLATE)
        assert_true(total >= 6 && (all[0] & 0x0f) == 8 && ((all[0] << 8) | all[1]) % 31 == 0);
    if (e == MS_ENC_ZSTD)   /* the frame magic, little-endian 0xFD2FB528 */
        assert_true(total >= 9 && all[0] == 0x28 && all[1] == 0xb5 && all[2] == 0x2f && all[3] == 0xfd);
    size_t dlen = 0;
    uint8_t *dec = decode(e, all, total, n, &dlen);
    assert_int_equal(dlen, n);
    assert_memory_equal(dec, data, n);
    free(dec);
    free(all);
}

/* A decoder fed the compressed stream as it comes, the way a client reads a
 * streamed response. */
typedef struct stream_dec {
    ms_encoding e;
    z_stream z;
    BrotliDecoderState *br;
    ZSTD_DCtx *zs;
    uint8_t out[8192];
    size_t out_len;
} stream_dec;

static void sdec_init(stream_dec *d, ms_encoding e)
{
    memset(d, 0, sizeof *d);
    d->e = e;
    if (e == MS_ENC_BR)
        assert_non_null(d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL));
    else if (e == MS_ENC_ZSTD)
        d->zs = zstd_dctx();
    else
        assert_int_equal(inflateInit2(&d->z, e == MS_ENC_GZIP ? 15 + 16 : 15), Z_OK);
}

/* Decode every byte of in; appends to d->out. */
static void sdec_feed(stream_dec *d, const uint8_t *in, size_t n)
{
    if (d->e == MS_ENC_ZSTD) {
        ZSTD_inBuffer ib = { in, n, 0 };
        ZSTD_outBuffer ob = { d->out, sizeof d->out, d->out_len };
        do {
            size_t r = ZSTD_decompressStream(d->zs, &ob, &ib);
            assert_false(ZSTD_isError(r));
            assert_true(ob.pos < ob.size);   /* room left: nothing held back for lack of it */
        } while (ib.pos < ib.size);
        d->out_len = ob.pos;
        return;
    }
    if (d->e == MS_ENC_BR) {
        size_t avail_in = n, avail_out = sizeof d->out - d->out_len;
        uint8_t *next_out = d->out + d->out_len;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(d->br, &avail_in, &in, &avail_out, &next_out, NULL);
        assert_true(r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT || r == BROTLI_DECODER_RESULT_SUCCESS);
        assert_int_equal(avail_in, 0);
        d->out_len = (size_t)(next_out - d->out);
        return;
    }
    d->z.next_in = (Bytef *)(uintptr_t)in;
    d->z.avail_in = (uInt)n;
    d->z.next_out = d->out + d->out_len;
    d->z.avail_out = (uInt)(sizeof d->out - d->out_len);
    int r = inflate(&d->z, Z_SYNC_FLUSH);
    assert_true(r == Z_OK || r == Z_STREAM_END || (r == Z_BUF_ERROR && n == 0));
    assert_int_equal(d->z.avail_in, 0);
    d->out_len = sizeof d->out - d->z.avail_out;
}

static void sdec_free(stream_dec *d)
{
    if (d->e == MS_ENC_BR)
        BrotliDecoderDestroyInstance(d->br);
    else if (d->e == MS_ENC_ZSTD)
        ZSTD_freeDCtx(d->zs);
    else
        inflateEnd(&d->z);
}

/* A flush after each small write hands the decoder every byte written so
 * far: a streamed response's pieces are not held back until its end. A
 * flush with nothing new costs (almost) nothing, and without flushes the
 * encoder does hold small pieces back (what the flush is for). */
static void test_flush_releases_each_piece(void **state)
{
    (void)state;
    static const ms_encoding encs[] = { MS_ENC_GZIP, MS_ENC_DEFLATE, MS_ENC_BR, MS_ENC_ZSTD };
    for (size_t k = 0; k < 4; k++) {
        ms_encoding e = encs[k];
        ms_compressor *c = ms_compressor_new(e, -1, 0);
        assert_non_null(c);
        stream_dec d;
        sdec_init(&d, e);
        ms_cbuf out = { 0 };
        char fed[4096];
        size_t fed_len = 0;
        for (int i = 0; i < 5; i++) {
            char piece[128];
            int n = snprintf(piece, sizeof piece, "{\"piece\": %d, \"text\": \"the quick brown fox\"}\n", i);
            assert_int_equal(ms_compressor_write(c, piece, (size_t)n, false, &out), 0);
            memcpy(fed + fed_len, piece, (size_t)n);
            fed_len += (size_t)n;
            assert_int_equal(ms_compressor_flush(c, &out), 0);
            size_t after_flush = out.len;
            assert_int_equal(ms_compressor_flush(c, &out), 0);   /* again, nothing new */
            assert_true(out.len - after_flush <= 8);
            sdec_feed(&d, out.data, out.len);
            out.len = 0;
            assert_int_equal(d.out_len, fed_len);
            assert_memory_equal(d.out, fed, fed_len);
        }
        assert_int_equal(ms_compressor_write(c, NULL, 0, true, &out), 0);
        sdec_feed(&d, out.data, out.len);
        assert_int_equal(d.out_len, fed_len);
        sdec_free(&d);
        ms_cbuf_free(&out);
        ms_compressor_free(c);

        /* the same pieces without flushes: the decoder sees less than was written */
        c = ms_compressor_new(e, -1, 0);
        sdec_init(&d, e);
        assert_int_equal(ms_compressor_write(c, fed, fed_len, false, &out), 0);
        sdec_feed(&d, out.data, out.len);
        assert_true(d.out_len < fed_len);
        sdec_free(&d);
        ms_cbuf_free(&out);
        ms_compressor_free(c);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const ms_encoding encs[] = { MS_ENC_GZIP, MS_ENC_DEFLATE, MS_ENC_BR, MS_ENC_ZSTD };
    size_t n = 300 * 1024;
    uint8_t *text = make_text(n);
    uint8_t *rand = make_random(n);
    for (size_t k = 0; k < 4; k++) {
        ms_encoding e = encs[k];
        roundtrip(e, -1, 0, text, n, 700, false);
        roundtrip(e, -1, 0, rand, n, 3000, false);
        roundtrip(e, -1, 0, text, n, 4000, true);
        roundtrip(e, -1, n, text, n, 50000, false);
        roundtrip(e, 1, 0, text, 20000, 100, true);
        roundtrip(e, e == MS_ENC_BR ? 11 : e == MS_ENC_ZSTD ? 19 : 9, 0, text, 50000, 5000, false);
        roundtrip(e, 99, 0, text, 20000, 3000, true);            /* past the top: clamped */
        roundtrip(e, -1, 300, text, 300, 17, false);        /* small hint, small window */
        roundtrip(e, -1, 100, text, 5000, 100, false);      /* hint too small: still correct */
        roundtrip(e, -1, 0, text, 0, 1, false);             /* empty body */
        roundtrip(e, -1, 0, text, 1, 1, false);
    }
    free(text);
    free(rand);
}

static void test_whole_writes_and_ratio(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *text = make_text(n);
    static const ms_encoding encs[] = { MS_ENC_GZIP, MS_ENC_DEFLATE, MS_ENC_BR, MS_ENC_ZSTD };
    for (size_t k = 0; k < 4; k++) {
        ms_compressor *c = ms_compressor_new(encs[k], -1, 0);
        ms_cbuf out = { 0 };
        assert_int_equal(ms_compressor_write(c, text, n, true, &out), 0);
        assert_true(out.len < n / 3);   /* text compresses */
        size_t dlen;
        uint8_t *dec = decode(encs[k], out.data, out.len, n, &dlen);
        assert_int_equal(dlen, n);
        assert_memory_equal(dec, text, n);
        free(dec);
        ms_cbuf_free(&out);
        ms_compressor_free(c);
    }
    free(text);
}

static void test_memory_and_limits(void **state)
{
    (void)state;
    /* memory bound: see compress.h */
    ms_compressor *g = ms_compressor_new(MS_ENC_GZIP, -1, 0);
    ms_compressor *b = ms_compressor_new(MS_ENC_BR, -1, 0);
    ms_compressor *gs = ms_compressor_new(MS_ENC_GZIP, -1, 1000);
    assert_non_null(g);
    assert_non_null(b);
    assert_non_null(gs);
    uint8_t *rand = make_random(1 << 20);
    ms_cbuf out = { 0 };
    assert_int_equal(ms_compressor_write(g, rand, 1 << 20, false, &out), 0);
    out.len = 0;
    assert_int_equal(ms_compressor_write(b, rand, 1 << 20, false, &out), 0);
    out.len = 0;
    assert_int_equal(ms_compressor_write(gs, rand, 1000, false, &out), 0);
    size_t mg = ms_compressor_memory(g), mb = ms_compressor_memory(b), ms = ms_compressor_memory(gs);
    print_message("memory: gzip %zu, br %zu, gzip(hint 1000) %zu bytes\n", mg, mb, ms);
    assert_true(mg <= 280 * 1024);
    assert_true(mb <= 2200 * 1024);
    assert_true(ms < mg / 4);
    ms_compressor_free(g);
    ms_compressor_free(b);
    ms_compressor_free(gs);

    /* an output limit that is too small breaks the stream */
    ms_compressor *c = ms_compressor_new(MS_ENC_GZIP, -1, 0);
    ms_cbuf small = { .limit = 1024 };
    assert_int_equal(ms_compressor_write(c, rand, 1 << 20, true, &small), -1);
    assert_true(small.cap <= 1024);
    assert_int_equal(ms_compressor_write(c, "x", 1, true, &small), -1);
    ms_compressor_free(c);
    ms_cbuf_free(&small);
    ms_cbuf_free(&out);
    free(rand);

    /* zstd: the window caps the memory (see compress.h); a small hint shrinks it */
    ms_compressor *z = ms_compressor_new(MS_ENC_ZSTD, -1, 0);
    ms_compressor *z19 = ms_compressor_new(MS_ENC_ZSTD, 19, 0);
    ms_compressor *zs = ms_compressor_new(MS_ENC_ZSTD, -1, 1000);
    assert_non_null(z);
    assert_non_null(z19);
    assert_non_null(zs);
    uint8_t *text = make_text(1 << 20);
    assert_int_equal(ms_compressor_write(z, text, 1 << 20, false, &out), 0);
    out.len = 0;
    assert_int_equal(ms_compressor_write(z19, text, 1 << 19, false, &out), 0);
    out.len = 0;
    assert_int_equal(ms_compressor_write(zs, text, 1000, false, &out), 0);
    out.len = 0;
    size_t mz = ms_compressor_memory(z), mz19 = ms_compressor_memory(z19), mzs = ms_compressor_memory(zs);
    print_message("memory: zstd %zu, zstd 19 %zu, zstd(hint 1000) %zu bytes\n", mz, mz19, mzs);
    assert_true(mz > 0 && mz <= 1500 * 1024);
    assert_true(mz19 <= 2400 * 1024);
    assert_true(mzs < mz / 4);
    ms_compressor_free(z);
    ms_compressor_free(z19);
    ms_compressor_free(zs);
    free(text);

    /* the zstd stream breaks on a too small output limit too */
    c = ms_compressor_new(MS_ENC_ZSTD, -1, 0);
    ms_cbuf zsmall = { .limit = 1024 };
    rand = make_random(1 << 20);
    assert_int_equal(ms_compressor_write(c, rand, 1 << 20, true, &zsmall), -1);
    assert_true(zsmall.cap <= 1024);
    assert_int_equal(ms_compressor_flush(c, &zsmall), -1);
    ms_compressor_free(c);
    ms_cbuf_free(&zsmall);
    ms_cbuf_free(&out);
    free(rand);

    assert_null(ms_compressor_new(MS_ENC_IDENTITY, -1, 0));
    ms_compressor_free(NULL);
}

/* A worker's cache of zstd contexts: a context given back is reused by the
 * next stream (same output as a fresh one, the new stream's window, not the
 * last one's), at most MS_ZSTD_IDLE_MAX are kept, and other codings pass
 * through it untouched. */
static void zstd_once(ms_compress_cache *cache, uint64_t hint, const uint8_t *data, size_t n, ms_cbuf *out)
{
    ms_compressor *c = ms_compressor_new_in(cache, MS_ENC_ZSTD, -1, hint);
    assert_non_null(c);
    out->len = 0;
    assert_int_equal(ms_compressor_write(c, data, n / 2, false, out), 0);
    assert_int_equal(ms_compressor_flush(c, out), 0);
    assert_int_equal(ms_compressor_write(c, data + n / 2, n - n / 2, true, out), 0);
    ms_compressor_free(c);
}

static void test_zstd_context_cache(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *text = make_text(n);
    ms_compress_cache cache = { 0 };
    ms_cbuf fresh = { 0 }, reused = { 0 };
    zstd_once(NULL, 0, text, n, &fresh);
    zstd_once(&cache, 0, text, n, &reused);
    assert_int_equal(cache.nzstd, 1);                     /* given back */
    void *ctx = cache.zstd[0];
    zstd_once(&cache, 0, text, n, &reused);
    assert_int_equal(cache.nzstd, 1);
    assert_ptr_equal(cache.zstd[0], ctx);                 /* the same context, taken and given back */
    assert_int_equal(reused.len, fresh.len);
    assert_memory_equal(reused.data, fresh.data, fresh.len);   /* nothing of the last stream leaks in */

    /* a small hint after a large stream: the small window, not the last one's */
    zstd_once(&cache, 1000, text, 1000, &reused);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    assert_false(ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 10)));
    uint8_t back[1000];
    ZSTD_inBuffer ib = { reused.data, reused.len, 0 };
    ZSTD_outBuffer ob = { back, sizeof back, 0 };
    size_t r = ZSTD_decompressStream(d, &ob, &ib);
    assert_false(ZSTD_isError(r));
    assert_int_equal(r, 0);
    assert_int_equal(ob.pos, 1000);
    assert_memory_equal(back, text, 1000);
    ZSTD_freeDCtx(d);

    /* bounded: three streams at once give back three contexts, two are kept */
    ms_compressor *cs[3];
    for (int i = 0; i < 3; i++) {
        assert_non_null(cs[i] = ms_compressor_new_in(&cache, MS_ENC_ZSTD, -1, 0));
        reused.len = 0;
        assert_int_equal(ms_compressor_write(cs[i], text, 5000, false, &reused), 0);
    }
    assert_int_equal(cache.nzstd, 0);
    for (int i = 0; i < 3; i++)
        ms_compressor_free(cs[i]);   /* unfinished streams too */
    assert_int_equal(cache.nzstd, MS_ZSTD_IDLE_MAX);
    /* other codings do not touch it */
    ms_compressor *g = ms_compressor_new_in(&cache, MS_ENC_GZIP, -1, 0);
    assert_non_null(g);
    ms_compressor_free(g);
    assert_int_equal(cache.nzstd, MS_ZSTD_IDLE_MAX);
    ms_compress_cache_free(&cache);
    assert_int_equal(cache.nzstd, 0);
    ms_compress_cache_free(NULL);
    ms_cbuf_free(&fresh);
    ms_cbuf_free(&reused);
    free(text);
}

/* A context given back after a failed or abandoned stream: the next stream
 * writes exactly what a fresh context writes (no bytes, no history and no
 * window of the broken one). */
static void test_zstd_cache_after_error_and_abort(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *text = make_text(n);
    uint8_t *rnd = make_random(1 << 20);
    ms_compress_cache cache = { 0 };
    ms_cbuf fresh = { 0 }, reused = { 0 };
    zstd_once(NULL, 0, text, n, &fresh);

    /* broken: the output limit is hit in the middle of a block */
    ms_compressor *c = ms_compressor_new_in(&cache, MS_ENC_ZSTD, -1, 0);
    assert_non_null(c);
    ms_cbuf small = { .limit = 1024 };
    assert_int_equal(ms_compressor_write(c, rnd, 1 << 20, false, &small), -1);
    ms_compressor_free(c);
    ms_cbuf_free(&small);
    assert_int_equal(cache.nzstd, 1);
    zstd_once(&cache, 0, text, n, &reused);
    assert_int_equal(reused.len, fresh.len);
    assert_memory_equal(reused.data, fresh.data, fresh.len);

    /* abandoned: input taken, output held back, neither flushed nor ended */
    ms_cbuf junk = { 0 };
    c = ms_compressor_new_in(&cache, MS_ENC_ZSTD, -1, 0);
    assert_non_null(c);
    assert_int_equal(ms_compressor_write(c, text, 100000, false, &junk), 0);
    assert_int_equal(ms_compressor_flush(c, &junk), 0);
    assert_int_equal(ms_compressor_write(c, text + 7, 30000, false, &junk), 0);
    ms_compressor_free(c);
    zstd_once(&cache, 0, text, n, &reused);
    assert_int_equal(reused.len, fresh.len);
    assert_memory_equal(reused.data, fresh.data, fresh.len);

    ms_compress_cache_free(&cache);
    ms_cbuf_free(&junk);
    ms_cbuf_free(&fresh);
    ms_cbuf_free(&reused);
    free(text);
    free(rnd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_table),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_flush_releases_each_piece),
        cmocka_unit_test(test_whole_writes_and_ratio),
        cmocka_unit_test(test_memory_and_limits),
        cmocka_unit_test(test_zstd_context_cache),
        cmocka_unit_test(test_zstd_cache_after_error_and_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
