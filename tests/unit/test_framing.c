/* test_framing.c: the strict framing checks of http/framing.c: every
 * Transfer-Encoding value form, and chunked bodies, good and bad, fed
 * whole and one byte at a time (the verdict and where it falls must not
 * depend on how the bytes arrive). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "http/framing.h"

static void test_te_values(void **state)
{
    (void)state;
    static const struct {
        const char *raw; /* after the colon, up to the end of the line */
        int want;
    } cases[] = {
        { " chunked", 0 },
        { "chunked", 0 },
        { " CHUNKED", 0 },
        { " Chunked", 0 },
        { " gzip, chunked", 501 },
        { " gzip,chunked", 501 },
        { " deflate, gzip, chunked", 501 },
        { " xchunked", 400 },
        { " chunkedx", 400 },
        { " chunked, identity", 400 },
        { " identity", 400 },
        { " chunked\t", 400 },
        { " chunked ", 400 },
        { "\tchunked", 400 },
        { "  chunked", 400 },
        { " chunked, chunked", 400 },
        { " gzip", 400 },
        { "", 400 },
        { " ", 400 },
        { " ,chunked", 400 },
        { " gzip,, chunked", 400 },
        { " gzip;q=1, chunked", 400 },
        { " \"chunked\"", 400 },
        { " ch\x01unked", 400 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = ms_te_value_status(cases[i].raw, strlen(cases[i].raw));
        if (got != cases[i].want)
            fail_msg("\"%s\": got %d, want %d", cases[i].raw, got, cases[i].want);
    }
}

/* Feeds s whole, then byte by byte: both must agree. Returns the result and
 * where it fell. */
static ms_chunk_result feed(const char *s, size_t len, size_t *at)
{
    ms_chunk_check k;
    ms_chunk_check_init(&k);
    size_t used = 0;
    ms_chunk_result whole = ms_chunk_check_feed(&k, s, len, &used);
    *at = used;

    ms_chunk_check_init(&k);
    ms_chunk_result r = MS_CHUNK_MORE;
    size_t pos = 0;
    while (pos < len && r == MS_CHUNK_MORE) {
        size_t u = 0;
        r = ms_chunk_check_feed(&k, s + pos, 1, &u);
        pos += u;
        if (r == MS_CHUNK_MORE)
            assert_int_equal(u, 1);
    }
    assert_int_equal(r, whole);
    assert_int_equal(pos, used);
    return whole;
}

static void test_chunked_good(void **state)
{
    (void)state;
    static const char *good[] = {
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        "5 ;x\r\nhello\r\n0\r\n\r\n",
        "A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
        "000a\r\n0123456789\r\n00\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t at = 0;
        size_t n = strlen(good[i]);
        if (feed(good[i], n, &at) != MS_CHUNK_DONE || at != n)
            fail_msg("good body %zu refused at %zu", i, at);
    }
    /* what follows the body is the next request: not consumed */
    const char *two = "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    size_t at = 0;
    assert_int_equal(feed(two, strlen(two), &at), MS_CHUNK_DONE);
    assert_int_equal(at, strlen("1\r\na\r\n0\r\n\r\n"));
    /* an unfinished body wants more */
    const char *part = "5\r\nhel";
    assert_int_equal(feed(part, strlen(part), &at), MS_CHUNK_MORE);
    assert_int_equal(at, strlen(part));
}

static void test_chunked_bad(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t at; /* the offending byte */
    } bad[] = {
        { "zz\r\n", 0 },                          /* size not hex */
        { "\r\n", 0 },                            /* no size */
        { "-5\r\nhello\r\n0\r\n\r\n", 0 },
        { "0x5\r\nhello\r\n0\r\n\r\n", 1 },
        { "5\nhello\r\n0\r\n\r\n", 1 },           /* bare LF after the size */
        { "5\rXhello\r\n0\r\n\r\n", 2 },          /* CR without LF */
        { "5\r\nhelloXX0\r\n\r\n", 8 },           /* no CRLF after the data */
        { "5\r\nhello\n0\r\n\r\n", 8 },           /* bare LF after the data */
        { "5\r\nhello\r\n0\n\n", 11 },
        { "5\r\nhello\r\n0\r\nX\n\r\n", 14 },     /* bare LF in a trailer */
        { "5\r\nhello\r\n0\r\n\n", 13 },
        { "11111111111111111\r\n", 16 },          /* over 64 bits */
        { "5;a\x01\r\nhello\r\n0\r\n\r\n", 3 },   /* a control character in an extension */
        { "5 x\r\nhello\r\n0\r\n\r\n", 2 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t at = 0;
        ms_chunk_result r = feed(bad[i].body, strlen(bad[i].body), &at);
        if (r != MS_CHUNK_BAD || at != bad[i].at)
            fail_msg("bad body %zu: result %d at %zu, want BAD at %zu", i, (int)r, at, bad[i].at);
    }
}

/* ms_name_is: ASCII case folded for letters only; its first-byte shortcut
 * (bit 0x20 on both sides) must never make a pair equal that differs. */
static void test_name_is(void **state)
{
    (void)state;
    assert_true(ms_name_is("Connection", 10, "connection"));
    assert_true(ms_name_is("CONNECTION", 10, "connection"));
    assert_true(ms_name_is("x-forwarded-for", 15, "X-Forwarded-For"));
    assert_true(ms_name_is("", 0, ""));
    assert_false(ms_name_is("connectio", 9, "connection"));
    assert_false(ms_name_is("connection", 10, "connectiom"));
    assert_false(ms_name_is("Connection ", 11, "connection"));
    assert_false(ms_name_is("@e", 2, "`e"));  /* 0x40 and 0x60: equal under | 0x20, not letters */
    assert_false(ms_name_is("\\e", 2, "|e")); /* 0x5c and 0x7c likewise */
    assert_false(ms_name_is("[te", 3, "{te"));
    assert_false(ms_name_is("\re", 2, "-e"));  /* CR | 0x20 is '-' */
    assert_true(ms_name_is("-E", 2, "-e"));
}

/* Every byte value at every position of values up to 24 bytes long, the
 * word-at-a-time check against the byte-at-a-time definition. */
static void test_field_value_clean(void **state)
{
    (void)state;
    char v[24];
    for (size_t len = 1; len <= sizeof v; len++)
        for (size_t at = 0; at < len; at++)
            for (int b = 0; b < 256; b++) {
                memset(v, 'a', sizeof v);
                v[at] = (char)b;
                bool ctl = (b < 0x20 && b != '\t') || b == 0x7f;
                assert_int_equal(ms_field_value_clean(v, len), !ctl);
            }
    assert_true(ms_field_value_clean("", 0));
    assert_true(ms_field_value_clean("text/html;\tq=0.9, \x80\xff\xfe", 18));
    assert_false(ms_field_value_clean("abcdefgh\r\n ijklmnop", 19));
    assert_false(ms_field_value_clean("abcdefghijklmno\x7f", 16));
}

static bool ref_clean(const unsigned char *v, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return false;
    return true;
}

/* Values in heap blocks of exactly their length, at every alignment (ASan
 * reports a read past the value), of random bytes drawn mostly from the
 * edges (0x00-0x20, 0x7e-0x81, 0xff): several control bytes, tabs and high
 * bytes together, against the byte-by-byte rule. */
static void test_field_value_clean_exact_blocks(void **state)
{
    (void)state;
    static const unsigned char edge[] = { 0x00, 0x01, 0x08, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x21, 0x7e,
                                          0x7f, 0x80, 0x81, 0x9f, 0xa0, 0xfe, 0xff, 'a' };
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (size_t len = 0; len <= 40; len++)
        for (size_t align = 0; align < 8; align++)
            for (int round = 0; round < 400; round++) {
                unsigned char *block = malloc(align + len + 1);
                assert_non_null(block);
                unsigned char *v = block + align;
                for (size_t i = 0; i < len; i++) {
                    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                    v[i] = (seed >> 8) % 4 == 0 ? edge[(seed >> 16) % sizeof edge] : (unsigned char)(0x20 + (seed >> 24) % 0x5f);
                }
                /* the block ends right after the value: ASan sees any read past it */
                unsigned char *exact = malloc(len ? len : 1);
                assert_non_null(exact);
                memcpy(exact, v, len);
                assert_int_equal(ms_field_value_clean((const char *)exact, len), ref_clean(exact, len));
                assert_int_equal(ms_field_value_clean((const char *)v, len), ref_clean(v, len));
                free(exact);
                free(block);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_te_values),
        cmocka_unit_test(test_chunked_good),
        cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_name_is),
        cmocka_unit_test(test_field_value_clean),
        cmocka_unit_test(test_field_value_clean_exact_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
