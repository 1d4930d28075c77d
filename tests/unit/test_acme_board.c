/* test_acme_board.c: the ACME challenge board (acme/board.h): http-01
 * tokens published, replaced, looked up by length-delimited token (a
 * prefix or a longer token is not a match), refused when the answer does
 * not fit, withdrawn; tls-alpn-01 names looked up without case and put on
 * an SSL (its certificate and key), replaced and withdrawn, the board
 * keeping its own references; both tables full at MS_ACME_BOARD_MAX; and
 * lookups from other threads while the control thread publishes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "acme/board.h"
#include "cert_helpers.h"

static void test_http_put_lookup_drop(void **state)
{
    (void)state;
    ms_acme_board *b = ms_acme_board_new();
    assert_non_null(b);
    char out[128];
    assert_false(ms_acme_board_http(b, "tok", 3, out, sizeof out));
    assert_true(ms_acme_board_put_http(b, "tok", "tok.thumb"));
    assert_true(ms_acme_board_put_http(b, "other", "other.thumb"));
    /* the token is length-delimited: the request path goes on after it */
    assert_true(ms_acme_board_http(b, "tok/x", 3, out, sizeof out));
    assert_string_equal(out, "tok.thumb");
    assert_false(ms_acme_board_http(b, "to", 2, out, sizeof out));
    assert_false(ms_acme_board_http(b, "toke", 4, out, sizeof out));
    assert_false(ms_acme_board_http(b, "TOK", 3, out, sizeof out)); /* tokens are case-sensitive */
    assert_false(ms_acme_board_http(b, "", 0, out, sizeof out));
    /* exactly fitting, and one byte short */
    char small[10];
    assert_true(ms_acme_board_http(b, "tok", 3, small, sizeof small));
    assert_string_equal(small, "tok.thumb");
    assert_false(ms_acme_board_http(b, "tok", 3, small, 9));
    /* replaced */
    assert_true(ms_acme_board_put_http(b, "tok", "tok.new"));
    assert_true(ms_acme_board_http(b, "tok", 3, out, sizeof out));
    assert_string_equal(out, "tok.new");
    /* withdrawn; the other stays; dropping an unknown one is harmless */
    ms_acme_board_drop_http(b, "tok");
    ms_acme_board_drop_http(b, "never");
    assert_false(ms_acme_board_http(b, "tok", 3, out, sizeof out));
    assert_true(ms_acme_board_http(b, "other", 5, out, sizeof out));
    assert_string_equal(out, "other.thumb");
    ms_acme_board_free(b);
    ms_acme_board_free(NULL);
}

static void test_http_bounded(void **state)
{
    (void)state;
    ms_acme_board *b = ms_acme_board_new();
    assert_non_null(b);
    char tok[32], ka[64], out[64];
    for (int i = 0; i < MS_ACME_BOARD_MAX; i++) {
        snprintf(tok, sizeof tok, "t%d", i);
        snprintf(ka, sizeof ka, "t%d.ka", i);
        assert_true(ms_acme_board_put_http(b, tok, ka));
    }
    assert_false(ms_acme_board_put_http(b, "one-more", "x"));
    assert_true(ms_acme_board_put_http(b, "t7", "t7.replaced")); /* a replacement needs no room */
    ms_acme_board_drop_http(b, "t0");
    assert_true(ms_acme_board_put_http(b, "one-more", "x")); /* room again */
    for (int i = 1; i < MS_ACME_BOARD_MAX; i++) {
        snprintf(tok, sizeof tok, "t%d", i);
        snprintf(ka, sizeof ka, i == 7 ? "t%d.replaced" : "t%d.ka", i);
        assert_true(ms_acme_board_http(b, tok, strlen(tok), out, sizeof out));
        assert_string_equal(out, ka);
    }
    ms_acme_board_free(b);
}

static void cn_of_ssl(SSL *ssl, char *out, size_t cap)
{
    X509 *x = SSL_get_certificate(ssl);
    assert_non_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap);
}

static void test_alpn_put_use_drop(void **state)
{
    (void)state;
    ms_acme_board *b = ms_acme_board_new();
    assert_non_null(b);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    EVP_PKEY *k1, *k2;
    X509 *c1 = self_signed("first", NULL, -60, 24 * 3600, &k1);
    X509 *c2 = self_signed("second", NULL, -60, 24 * 3600, &k2);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_false(ms_acme_board_use_alpn(b, "example.com", ssl));
    assert_true(ms_acme_board_put_alpn(b, "example.com", c1, k1));
    /* the board keeps its own references */
    X509_free(c1);
    EVP_PKEY_free(k1);
    assert_true(ms_acme_board_use_alpn(b, "Example.COM", ssl)); /* names without case */
    char cn[64];
    cn_of_ssl(ssl, cn, sizeof cn);
    assert_string_equal(cn, "first");
    assert_int_equal(SSL_check_private_key(ssl), 1);
    assert_false(ms_acme_board_use_alpn(b, "other.example.com", ssl));
    /* replaced: a new SSL gets the new one */
    assert_true(ms_acme_board_put_alpn(b, "example.com", c2, k2));
    SSL *ssl2 = SSL_new(ctx);
    assert_non_null(ssl2);
    assert_true(ms_acme_board_use_alpn(b, "example.com", ssl2));
    cn_of_ssl(ssl2, cn, sizeof cn);
    assert_string_equal(cn, "second");
    assert_int_equal(SSL_check_private_key(ssl2), 1);
    /* withdrawn: the SSL that has it keeps it */
    ms_acme_board_drop_alpn(b, "example.com");
    assert_false(ms_acme_board_use_alpn(b, "example.com", ssl2));
    cn_of_ssl(ssl2, cn, sizeof cn);
    assert_string_equal(cn, "second");
    SSL_free(ssl);
    SSL_free(ssl2);
    /* bounded */
    char name[64];
    for (int i = 0; i < MS_ACME_BOARD_MAX; i++) {
        snprintf(name, sizeof name, "n%d.example", i);
        assert_true(ms_acme_board_put_alpn(b, name, c2, k2));
    }
    assert_false(ms_acme_board_put_alpn(b, "one-more.example", c2, k2));
    X509_free(c2);
    EVP_PKEY_free(k2);
    SSL_CTX_free(ctx);
    ms_acme_board_free(b); /* frees every reference it holds (ASan/valgrind see a leak otherwise) */
}

typedef struct reader {
    ms_acme_board *b;
    int found;
    int *stop;
} reader;

static void *read_loop(void *arg)
{
    reader *r = arg;
    char out[64];
    while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE))
        if (ms_acme_board_http(r->b, "shared", 6, out, sizeof out)) {
            assert_true(strcmp(out, "shared.a") == 0 || strcmp(out, "shared.b") == 0);
            __atomic_add_fetch(&r->found, 1, __ATOMIC_RELAXED);
        }
    return NULL;
}

/* Workers look up while the control thread publishes and withdraws. */
static void test_concurrent_lookups(void **state)
{
    (void)state;
    ms_acme_board *b = ms_acme_board_new();
    assert_non_null(b);
    int stop = 0;
    reader r[2] = { { b, 0, &stop }, { b, 0, &stop } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, read_loop, &r[i]), 0);
    for (int i = 0; i < 20000; i++) {
        assert_true(ms_acme_board_put_http(b, "shared", i % 2 ? "shared.a" : "shared.b"));
        if (i % 3 == 0)
            ms_acme_board_drop_http(b, "shared");
    }
    assert_true(ms_acme_board_put_http(b, "shared", "shared.a"));
    /* each reader sees the entry at least once now that it stays */
    for (int i = 0; i < 2; i++)
        while (__atomic_load_n(&r[i].found, __ATOMIC_RELAXED) == 0)
            sched_yield();
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ms_acme_board_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_put_lookup_drop),
        cmocka_unit_test(test_http_bounded),
        cmocka_unit_test(test_alpn_put_use_drop),
        cmocka_unit_test(test_concurrent_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
