/* test_wsdeflate.c: permessage-deflate (RFC 7692): the offer's negotiation
 * (accepted, declined, malformed), the answer, and messages deflated here
 * inflated back (and by zlib directly), bombs stopped at the limit, bad
 * data refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "http/wsdeflate.h"

static void test_negotiate_table(void **state)
{
    (void)state;
    static const struct {
        const char *offer;
        bool ok;
        unsigned bits;   /* when ok */
        const char *answer;
    } cases[] = {
        { "permessage-deflate", true, 15, "permessage-deflate; client_no_context_takeover" },
        { "permessage-deflate; client_max_window_bits", true, 15, "permessage-deflate; client_no_context_takeover" },
        { "permessage-deflate; client_max_window_bits=10", true, 15,
          "permessage-deflate; client_no_context_takeover" },
        { "Permessage-Deflate; Server_No_Context_Takeover", true, 15,
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover" },
        { "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true, 15,
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover" },
        { "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15; "
          "client_max_window_bits=12",
          true, 15,
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15" },
        { "permessage-deflate; server_max_window_bits=10", true, 10,
          "permessage-deflate; client_no_context_takeover; server_max_window_bits=10" },
        { "permessage-deflate; server_max_window_bits=\"12\"", true, 12,
          "permessage-deflate; client_no_context_takeover; server_max_window_bits=12" },
        { "permessage-deflate ; server_max_window_bits = 9 ", true, 9,
          "permessage-deflate; client_no_context_takeover; server_max_window_bits=9" },
        /* declined offers, then the next one is taken */
        { "permessage-deflate; server_max_window_bits=8, permessage-deflate", true, 15,
          "permessage-deflate; client_no_context_takeover" },
        { "x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover", true, 15,
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover" },
        { "permessage-deflate; foo, permessage-deflate; server_max_window_bits=11", true, 11,
          "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
        { ", ,permessage-deflate,", true, 15, "permessage-deflate; client_no_context_takeover" },
        /* declined */
        { "", false, 0, NULL },
        { "x-webkit-deflate-frame", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=8", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=16", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=010", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=1", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=123456789012345", false, 0, NULL },
        { "permessage-deflate; client_max_window_bits=7", false, 0, NULL },
        { "permessage-deflate; client_max_window_bits=\"\"", false, 0, NULL },
        { "permessage-deflate; server_no_context_takeover=1", false, 0, NULL },
        { "permessage-deflate; client_no_context_takeover; client_no_context_takeover", false, 0, NULL },
        { "permessage-deflate; mystery", false, 0, NULL },
        /* not the grammar: no offer at all, even a good one before */
        { "permessage-deflate, ;", false, 0, NULL },
        { "permessage-deflate; server_max_window_bits=\"10", false, 0, NULL },
        { "permessage-deflate; =10", false, 0, NULL },
        { "permessage-deflate x", false, 0, NULL },
        { "permessage-deflate; a=\"\\", false, 0, NULL },
        { "permessage-deflate; a=\"\x01\"", false, 0, NULL },
        { "perm\x80", false, 0, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ms_pmd_agreed a;
        memset(&a, 0xAA, sizeof a);
        bool ok = ms_pmd_negotiate(cases[i].offer, strlen(cases[i].offer), &a);
        if (ok != cases[i].ok)
            fail_msg("offer %zu \"%s\": %d", i, cases[i].offer, ok);
        if (!ok)
            continue;
        assert_int_equal(a.server_bits, cases[i].bits);
        char buf[MS_PMD_ANSWER_MAX];
        size_t n = ms_pmd_answer(&a, buf, sizeof buf);
        assert_true(n > 0);
        assert_int_equal(n, strlen(cases[i].answer));
        assert_memory_equal(buf, cases[i].answer, n);
        assert_int_equal(ms_pmd_answer(&a, buf, 10), 0);
    }
}

/* What a client would do: raw deflate, sync flush, tail removed. */
static size_t client_deflate(const uint8_t *in, size_t n, int bits, uint8_t *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)n;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    assert_true(s.avail_out > 0);
    size_t len = cap - s.avail_out;
    deflateEnd(&s);
    assert_true(len >= 4);
    assert_memory_equal(out + len - 4, "\x00\x00\xff\xff", 4);
    return len - 4;
}

static void test_roundtrip(void **state)
{
    (void)state;
    ms_pmd *p = ms_pmd_new();
    assert_non_null(p);
    size_t n = 200000;
    uint8_t *msg = malloc(n);
    assert_non_null(msg);
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)("{\"chat\":\"hello there\",\"n\":"[i % 27] + (i / 1000) % 3);
    for (unsigned bits = 9; bits <= 15; bits++) {
        for (int round = 0; round < 2; round++) { /* the second reuses the reset streams */
            uint8_t *z = NULL, *back = NULL;
            size_t zl = 0, bl = 0;
            assert_int_equal(ms_pmd_deflate(p, bits, msg, n, &z, &zl), MS_PMD_OK);
            assert_true(zl < n / 4);
            assert_int_equal(ms_pmd_inflate(p, z, zl, n, &back, &bl), MS_PMD_OK);
            assert_int_equal(bl, n);
            assert_memory_equal(back, msg, n);
            free(back);
            /* one byte under the size: too big */
            assert_int_equal(ms_pmd_inflate(p, z, zl, n - 1, &back, &bl), MS_PMD_TOO_BIG);
            /* zlib alone reads it with a window of exactly bits */
            z_stream s;
            memset(&s, 0, sizeof s);
            assert_int_equal(inflateInit2(&s, -(int)bits), Z_OK);
            uint8_t *out = malloc(n + 1);
            uint8_t *zt = malloc(zl + 4);
            memcpy(zt, z, zl);
            memcpy(zt + zl, "\x00\x00\xff\xff", 4);
            s.next_in = zt;
            s.avail_in = (uInt)(zl + 4);
            s.next_out = out;
            s.avail_out = (uInt)(n + 1);
            int rc = inflate(&s, Z_SYNC_FLUSH);
            assert_true(rc == Z_OK || rc == Z_BUF_ERROR);
            assert_int_equal(n + 1 - s.avail_out, n);
            assert_memory_equal(out, msg, n);
            inflateEnd(&s);
            free(out);
            free(zt);
            free(z);
        }
    }
    /* what a client deflated */
    uint8_t *cz = malloc(n);
    size_t czl = client_deflate(msg, n, 15, cz, n);
    uint8_t *back = NULL;
    size_t bl = 0;
    assert_int_equal(ms_pmd_inflate(p, cz, czl, n, &back, &bl), MS_PMD_OK);
    assert_int_equal(bl, n);
    assert_memory_equal(back, msg, n);
    free(back);
    free(cz);
    free(msg);
    ms_pmd_free(p);
    ms_pmd_free(NULL);
}

static void test_small_and_incompressible(void **state)
{
    (void)state;
    ms_pmd *p = ms_pmd_new();
    uint8_t *z = NULL;
    size_t zl = 0;
    assert_int_equal(ms_pmd_deflate(p, 15, (const uint8_t *)"hi", 2, &z, &zl), MS_PMD_NOT_SMALLER);
    uint8_t rnd[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (uint8_t)(x >> 16);
    }
    assert_int_equal(ms_pmd_deflate(p, 15, rnd, sizeof rnd, &z, &zl), MS_PMD_NOT_SMALLER);
    assert_null(z);
    /* an empty compressed payload is the empty message */
    uint8_t *back = NULL;
    size_t bl = 99;
    assert_int_equal(ms_pmd_inflate(p, (const uint8_t *)"", 0, 100, &back, &bl), MS_PMD_OK);
    assert_int_equal(bl, 0);
    free(back);
    /* a final block (BFINAL) is fine too: "\x03\x00" is an empty final fixed block */
    assert_int_equal(ms_pmd_inflate(p, (const uint8_t *)"\x03\x00", 2, 100, &back, &bl), MS_PMD_OK);
    assert_int_equal(bl, 0);
    free(back);
    ms_pmd_free(p);
}

static void test_bomb_and_bad_data(void **state)
{
    (void)state;
    ms_pmd *p = ms_pmd_new();
    /* 64 MiB of zeros is a few KiB of deflate */
    size_t big = 64u << 20;
    uint8_t *zeros = calloc(1, big);
    size_t cap = big / 500;
    uint8_t *z = malloc(cap);
    size_t zl = client_deflate(zeros, big, 15, z, cap);
    free(zeros);
    uint8_t *back = NULL;
    size_t bl = 0;
    assert_int_equal(ms_pmd_inflate(p, z, zl, 1u << 20, &back, &bl), MS_PMD_TOO_BIG);
    assert_null(back);
    free(z);
    /* not deflate: a reserved block type (BTYPE 11) */
    assert_int_equal(ms_pmd_inflate(p, (const uint8_t *)"\xff\xff\xff", 3, 100, &back, &bl), MS_PMD_BAD_DATA);
    assert_int_equal(ms_pmd_inflate(p, (const uint8_t *)"\x07", 1, 100, &back, &bl), MS_PMD_BAD_DATA);
    /* a final block (zlib's Z_FINISH) one byte over the limit: refused too */
    {
        z_stream s;
        memset(&s, 0, sizeof s);
        assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
        uint8_t fin[64];
        s.next_in = (Bytef *)"hi there hi there";
        s.avail_in = 17;
        s.next_out = fin;
        s.avail_out = sizeof fin;
        assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
        size_t fl = sizeof fin - s.avail_out;
        deflateEnd(&s);
        assert_int_equal(ms_pmd_inflate(p, fin, fl, 16, &back, &bl), MS_PMD_TOO_BIG);
        assert_int_equal(ms_pmd_inflate(p, fin, fl, 17, &back, &bl), MS_PMD_OK);
        assert_int_equal(bl, 17);
        free(back);
    }
    /* the stream still works after an error */
    uint8_t msg[300];
    memset(msg, 'a', sizeof msg);
    assert_int_equal(ms_pmd_deflate(p, 15, msg, sizeof msg, &z, &zl), MS_PMD_OK);
    assert_int_equal(ms_pmd_inflate(p, z, zl, sizeof msg, &back, &bl), MS_PMD_OK);
    assert_int_equal(bl, sizeof msg);
    free(back);
    free(z);
    ms_pmd_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_table),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_small_and_incompressible),
        cmocka_unit_test(test_bomb_and_bad_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
