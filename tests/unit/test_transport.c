/* test_transport.c: the TLS transport (transport_tls.c) over a real socket
 * transport on a socketpair, with an OpenSSL client on memory BIOs at the
 * other end and a test owner recording every callback: the handshake and
 * its counters, plaintext both ways, reads paused with records already
 * buffered and delivered after read_start (from the loop, never from inside
 * the op), the client's close_notify read as EOF with writes still going
 * out, plain text on the TLS transport passed through after
 * MS_XPORT_NOT_TLS, a bad handshake ending in an error read, and closed
 * called once, last. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/transport.h"

static SSL_CTX *server_ctx, *client_ctx;

/* ---- a key and a self-signed certificate, in memory */
static int group_setup(void **state)
{
    (void)state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (!X509_sign(x, key, EVP_sha256()))
        return -1;
    server_ctx = SSL_CTX_new(TLS_server_method());
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!server_ctx || !client_ctx || SSL_CTX_use_certificate(server_ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(server_ctx, key) != 1)
        return -1;
    SSL_CTX_set_min_proto_version(server_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    X509_free(x);
    EVP_PKEY_free(key);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    return 0;
}

/* ---- the owner: records what the transport tells it */
typedef struct owner {
    ms_xport *x;
    char buf[1 << 16];
    size_t len;
    ssize_t end;                 /* the first n < 0 read */
    int reads, written, closed, secured;
    bool in_op;                  /* inside an op of ours: no read callback may come */
    bool stop_after_read;        /* read_stop from the read callback */
    uint64_t counts[MS_TLS_HS_COUNT];
} owner;

static void o_alloc(void *arg, size_t suggested, uv_buf_t *b)
{
    owner *o = arg;
    (void)suggested;
    assert_false(o->closed);
    *b = uv_buf_init(o->buf + o->len, (unsigned)(sizeof o->buf - o->len));
}

static void o_read(void *arg, ssize_t n, const uv_buf_t *b)
{
    owner *o = arg;
    (void)b;
    assert_false(o->in_op);
    assert_false(o->closed);
    o->reads++;
    if (n < 0) {
        if (!o->end)
            o->end = n;
        return;
    }
    o->len += (size_t)n;
    if (o->stop_after_read)
        ms_xport_read_stop(o->x);
}

static void o_written(void *arg, int status)
{
    owner *o = arg;
    assert_false(o->closed);
    assert_int_equal(status, 0);
    o->written++;
}

static void o_closed(void *arg)
{
    owner *o = arg;
    o->closed++;
}

static void o_secured(void *arg, const unsigned char *alpn, unsigned len)
{
    owner *o = arg;
    (void)alpn;
    assert_int_equal(len, 0);
    o->secured++;
}

static const ms_xport_cbs owner_cbs = { o_alloc, o_read, o_written, o_closed, o_secured };

/* ---- one connection: the TLS transport on one end, an OpenSSL client on the other */
typedef struct pair {
    uv_loop_t loop;
    owner o;
    int fd;                      /* the client's end, non-blocking */
    SSL *ssl;
    BIO *rbio, *wbio;
    char scratch[65536];
    char plain[1 << 18];         /* what the client decrypted, or read raw */
    size_t plain_len;
    bool eof;
} pair;

static void pair_open(pair *p)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(uv_loop_init(&p->loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    p->fd = sv[1];
    fcntl(p->fd, F_SETFL, O_NONBLOCK);
    ms_xport *sock = ms_xport_socket_new(&p->loop, true, &owner_cbs, &p->o);
    assert_non_null(sock);
    assert_int_equal(ms_xport_socket_open(sock, sv[0]), 0);
    SSL *ssl = SSL_new(server_ctx);
    assert_non_null(ssl);
    p->o.x = ms_xport_tls_new(&p->loop, sock, ssl, p->scratch, sizeof p->scratch, p->o.counts);
    assert_non_null(p->o.x);
    assert_ptr_equal(p->o.x->owner, &p->o);
    p->o.in_op = true;
    assert_int_equal(ms_xport_read_start(p->o.x), 0);
    p->o.in_op = false;
    p->ssl = SSL_new(client_ctx);
    p->rbio = BIO_new(BIO_s_mem());
    p->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(p->rbio, -1);
    SSL_set_bio(p->ssl, p->rbio, p->wbio);
    SSL_set_connect_state(p->ssl);
}

/* Move bytes both ways and run the loop once. */
static void turn(pair *p, bool tls)
{
    char tmp[65536];
    for (;;) {
        int n = BIO_read(p->wbio, tmp, sizeof tmp);
        if (n <= 0)
            break;
        assert_int_equal(write(p->fd, tmp, (size_t)n), n);
    }
    uv_run(&p->loop, UV_RUN_NOWAIT);
    for (;;) {
        ssize_t n = read(p->fd, tmp, sizeof tmp);
        if (n == 0)
            p->eof = true;
        if (n <= 0)
            break;
        if (tls) {
            BIO_write(p->rbio, tmp, (int)n);
        } else {
            memcpy(p->plain + p->plain_len, tmp, (size_t)n);
            p->plain_len += (size_t)n;
        }
    }
    if (tls && SSL_is_init_finished(p->ssl)) {
        size_t got;
        while (SSL_read_ex(p->ssl, p->plain + p->plain_len, sizeof p->plain - p->plain_len, &got) == 1)
            p->plain_len += got;
    }
}

static void handshake(pair *p)
{
    for (int i = 0; i < 100 && !(SSL_is_init_finished(p->ssl) && p->o.secured); i++) {
        if (!SSL_is_init_finished(p->ssl))
            SSL_do_handshake(p->ssl);
        turn(p, true);
    }
    assert_true(SSL_is_init_finished(p->ssl));
    assert_int_equal(p->o.secured, 1);
    assert_int_equal(p->o.counts[MS_TLS_HS_OK], 1);
}

static void client_send(pair *p, const char *s)
{
    size_t done;
    assert_int_equal(SSL_write_ex(p->ssl, s, strlen(s), &done), 1);
}

static void owner_send(pair *p, const char *s)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)strlen(s));
    p->o.in_op = true;
    assert_int_equal(ms_xport_write(p->o.x, &b, 1), 0);
    p->o.in_op = false;
}

static void pair_close(pair *p)
{
    p->o.in_op = true;
    ms_xport_close(p->o.x);
    p->o.in_op = false;
    assert_int_equal(p->o.closed, 0); /* from the loop, not from inside close */
    for (int i = 0; i < 10 && !p->o.closed; i++)
        uv_run(&p->loop, UV_RUN_NOWAIT);
    assert_int_equal(p->o.closed, 1);
    SSL_free(p->ssl);
    close(p->fd);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

/* ---- tests */
static void test_plaintext_both_ways(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    SSL_set_max_proto_version(p.ssl, TLS1_2_VERSION);
    handshake(&p);
    client_send(&p, "GET / HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 20 && p.o.len < 18; i++)
        turn(&p, true);
    assert_memory_equal(p.o.buf, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(ms_xport_fileno(p.o.x), -1);
    /* a write larger than a record, in pieces */
    static char big[100000];
    memset(big, 'x', sizeof big);
    uv_buf_t bufs[3] = { uv_buf_init("head\r\n", 6), uv_buf_init(big, sizeof big), uv_buf_init("end", 3) };
    assert_int_equal(ms_xport_write(p.o.x, bufs, 3), 0);
    for (int i = 0; i < 50 && p.plain_len < sizeof big + 9; i++)
        turn(&p, true);
    assert_int_equal(p.plain_len, sizeof big + 9);
    assert_memory_equal(p.plain, "head\r\n", 6);
    assert_memory_equal(p.plain + 6 + sizeof big, "end", 3);
    pair_close(&p);
}

static void test_paused_reads_resume_from_the_loop(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    handshake(&p);
    p.o.stop_after_read = true;
    client_send(&p, "one");
    client_send(&p, "two");
    client_send(&p, "three");
    for (int i = 0; i < 5; i++)
        turn(&p, true);
    /* one record read, then the owner paused: the rest waits in the transport */
    assert_int_equal(p.o.reads, 1);
    assert_int_equal(p.o.len, 3);
    p.o.stop_after_read = false;
    p.o.in_op = true;
    assert_int_equal(ms_xport_read_start(p.o.x), 0); /* must not call back from here */
    p.o.in_op = false;
    for (int i = 0; i < 5 && p.o.len < 11; i++)
        turn(&p, true);
    assert_int_equal(p.o.len, 11);
    assert_memory_equal(p.o.buf, "onetwothree", 11);
    pair_close(&p);
}

static void test_close_notify_is_eof_and_the_answer_still_goes_out(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    handshake(&p);
    client_send(&p, "request");
    SSL_shutdown(p.ssl);
    for (int i = 0; i < 10 && !p.o.end; i++)
        turn(&p, true);
    assert_int_equal(p.o.len, 7);
    assert_int_equal(p.o.end, UV_EOF);
    owner_send(&p, "answer");
    p.o.in_op = true;
    assert_int_equal(ms_xport_shutdown(p.o.x), 0);
    p.o.in_op = false;
    for (int i = 0; i < 10 && !p.eof; i++)
        turn(&p, true);
    assert_int_equal(p.plain_len, 6);
    assert_memory_equal(p.plain, "answer", 6);
    assert_true(SSL_get_shutdown(p.ssl) & SSL_RECEIVED_SHUTDOWN); /* our close_notify */
    pair_close(&p);
}

static void test_plain_text_passes_through_after_not_tls(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    assert_int_equal(write(p.fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    for (int i = 0; i < 5 && !p.o.end; i++)
        turn(&p, false);
    assert_int_equal(p.o.end, MS_XPORT_NOT_TLS);
    assert_int_equal(p.o.len, 0); /* the plain request is not handed over */
    assert_int_equal(p.o.counts[MS_TLS_HS_FAILED], 1);
    owner_send(&p, "HTTP/1.1 400 Bad Request\r\n\r\n");
    for (int i = 0; i < 5 && p.plain_len < 28; i++)
        turn(&p, false);
    assert_int_equal(p.plain_len, 28);
    assert_memory_equal(p.plain, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
    /* what the client sends next reaches the owner as it is */
    assert_int_equal(write(p.fd, "more", 4), 4);
    for (int i = 0; i < 5 && p.o.len < 4; i++)
        turn(&p, false);
    assert_memory_equal(p.o.buf, "more", 4);
    pair_close(&p);
}

static void test_a_bad_handshake_is_an_error_read_and_counted(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    static const char junk[] = "\x16\x03\x01\x00\x10" "0123456789abcdef";
    assert_int_equal(write(p.fd, junk, sizeof junk - 1), (ssize_t)sizeof junk - 1);
    for (int i = 0; i < 5 && !p.o.end; i++)
        turn(&p, false);
    assert_int_equal(p.o.end, UV_ECONNABORTED);
    assert_int_equal(p.o.counts[MS_TLS_HS_FAILED], 1);
    assert_int_equal(p.o.counts[MS_TLS_HS_OK], 0);
    assert_int_equal(p.o.secured, 0);
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_not_equal(ms_xport_write(p.o.x, &b, 1), 0); /* nothing goes out unencrypted */
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plaintext_both_ways),
        cmocka_unit_test(test_paused_reads_resume_from_the_loop),
        cmocka_unit_test(test_close_notify_is_eof_and_the_answer_still_goes_out),
        cmocka_unit_test(test_plain_text_passes_through_after_not_tls),
        cmocka_unit_test(test_a_bad_handshake_is_an_error_read_and_counted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
