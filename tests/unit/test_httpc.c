/* test_httpc.c: the HTTP client (src/uplink/httpc.h). First its
 * socket-free response parser: whole and byte-by-byte feeds, the three
 * framings (Content-Length, chunked, until close), HEAD, interim 1xx, the
 * kept headers (Link repeated and comma-separated), the head and body
 * bounds, bad input. Then requests on a libuv loop against a one-shot
 * server on a thread of this process (blocking sockets, OpenSSL for TLS
 * with a CA and certificates made here): TCP, TLS trusting a ca_root, a
 * wrong ca_root and a wrong name failing with a readable reason, refused
 * connections, the deadline, cancel and free at any point. Every loop test
 * ends with uv_loop_close succeeding: no handle is left behind. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "uplink/httpc.h"

/* ================================================================ parser */
static char why[300];

/* Feed text one byte at a time: nothing decided before the last byte. */
static int feed_bytes(ms_httpc_parser *p, const char *text, size_t n)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r, 0);
        r = ms_httpc_parser_feed(p, text + i, 1, why, sizeof why);
    }
    return r;
}

static const char FULL[] = "HTTP/1.1 201 Created\r\n"
                           "Server: test\r\n"
                           "Location: https://ca.example/acct/1 \r\n"
                           "replay-nonce: abc_DEF-123\r\n"
                           "Retry-After: 120\r\n"
                           "Content-Type: application/json\r\n"
                           "Link: <https://ca.example/dir>;rel=\"index\"\r\n"
                           "Link: <https://ca.example/a,b>;rel=\"alternate\";title=\"x, y\", "
                           "<https://ca.example/up>;rel=\"up\"\r\n"
                           "Replay-Nonce: second\r\n"
                           "Content-Length: 13\r\n"
                           "\r\n"
                           "{\"status\":1}\n";

static void check_full(const ms_httpc_response *r)
{
    assert_non_null(r);
    assert_int_equal(r->status, 201);
    assert_string_equal(r->location, "https://ca.example/acct/1");
    assert_string_equal(r->replay_nonce, "abc_DEF-123"); /* the first one */
    assert_string_equal(r->retry_after, "120");
    assert_string_equal(r->content_type, "application/json");
    assert_int_equal(r->nlinks, 3);
    assert_string_equal(r->links[0], "<https://ca.example/dir>;rel=\"index\"");
    assert_string_equal(r->links[1], "<https://ca.example/a,b>;rel=\"alternate\";title=\"x, y\"");
    assert_string_equal(r->links[2], "<https://ca.example/up>;rel=\"up\"");
    assert_int_equal(r->body_len, 13);
    assert_string_equal(r->body, "{\"status\":1}\n");
}

static void test_content_length_whole_and_by_byte(void **state)
{
    (void)state;
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_non_null(p);
    assert_int_equal(ms_httpc_parser_feed(p, FULL, sizeof FULL - 1, why, sizeof why), 1);
    check_full(ms_httpc_parser_response(p));
    /* bytes after the response are ignored; the close changes nothing */
    assert_int_equal(ms_httpc_parser_feed(p, "junk", 4, why, sizeof why), 1);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), 1);
    ms_httpc_parser_free(p);

    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, "", 0, why, sizeof why), 0);
    assert_null(ms_httpc_parser_response(p));
    assert_int_equal(feed_bytes(p, FULL, sizeof FULL - 1), 1);
    check_full(ms_httpc_parser_response(p));
    ms_httpc_parser_free(p);
}

static void test_chunked(void **state)
{
    (void)state;
    static const char resp[] = "HTTP/1.1 200 OK\r\n"
                               "Transfer-Encoding: chunked\r\n"
                               "\r\n"
                               "5;ext=1\r\nhello\r\n"
                               "7\r\n, world\r\n"
                               "0\r\n"
                               "Location: /trailer-not-kept\r\n"
                               "\r\n";
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(feed_bytes(p, resp, sizeof resp - 1), 1);
    const ms_httpc_response *r = ms_httpc_parser_response(p);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "hello, world");
    assert_int_equal(r->body_len, 12);
    assert_null(r->location);
    assert_int_equal(r->nlinks, 0);
    ms_httpc_parser_free(p);

    /* a close before the last chunk is an error */
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, resp, 60, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), -1);
    assert_string_equal(why, "the server closed the connection in the middle of the response");
    ms_httpc_parser_free(p);
}

static void test_until_close(void **state)
{
    (void)state;
    static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it\nuntil the end";
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(feed_bytes(p, resp, sizeof resp - 1), 0);
    assert_null(ms_httpc_parser_response(p));
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), 1);
    const ms_httpc_response *r = ms_httpc_parser_response(p);
    assert_string_equal(r->body, "all of it\nuntil the end");
    assert_string_equal(r->content_type, "text/plain");
    ms_httpc_parser_free(p);

    /* no body at all: "" */
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, "HTTP/1.1 200 OK\r\n\r\n", 19, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), 1);
    assert_string_equal(ms_httpc_parser_response(p)->body, "");
    assert_int_equal(ms_httpc_parser_response(p)->body_len, 0);
    ms_httpc_parser_free(p);
}

static void test_head_and_bodiless(void **state)
{
    (void)state;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nReplay-Nonce: n1\r\n\r\n";
    ms_httpc_parser *p = ms_httpc_parser_new(true);
    assert_int_equal(feed_bytes(p, head, sizeof head - 1), 1);
    const ms_httpc_response *r = ms_httpc_parser_response(p);
    assert_string_equal(r->replay_nonce, "n1");
    assert_string_equal(r->body, "");
    assert_int_equal(r->body_len, 0);
    ms_httpc_parser_free(p);

    /* the same head for a GET wants its 1000 bytes */
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, head, sizeof head - 1, why, sizeof why), 0);
    ms_httpc_parser_free(p);

    static const char no_content[] = "HTTP/1.1 204 No Content\r\n\r\n";
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, no_content, sizeof no_content - 1, why, sizeof why), 1);
    assert_int_equal(ms_httpc_parser_response(p)->status, 204);
    assert_string_equal(ms_httpc_parser_response(p)->body, "");
    ms_httpc_parser_free(p);

    /* RFC 9112 6.3: a 204 or 304 ends at its blank line whatever its
     * Content-Length or Transfer-Encoding say (a 304 may carry the length
     * of the representation it stands for) */
    static const char *const bodiless[] = {
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nReplay-Nonce: n2\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bodiless / sizeof bodiless[0]; i++) {
        p = ms_httpc_parser_new(false);
        assert_int_equal(ms_httpc_parser_feed(p, bodiless[i], strlen(bodiless[i]), why, sizeof why), 1);
        assert_string_equal(ms_httpc_parser_response(p)->body, "");
        assert_int_equal(ms_httpc_parser_response(p)->body_len, 0);
        ms_httpc_parser_free(p);
    }
}

static void test_interim_responses_are_skipped(void **state)
{
    (void)state;
    static const char resp[] = "HTTP/1.1 100 Continue\r\nLocation: /interim\r\n\r\n"
                               "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                               "HTTP/1.1 201 Created\r\nLocation: /final\r\nContent-Length: 2\r\n\r\nok";
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(feed_bytes(p, resp, sizeof resp - 1), 1);
    const ms_httpc_response *r = ms_httpc_parser_response(p);
    assert_int_equal(r->status, 201);
    assert_string_equal(r->location, "/final");
    assert_int_equal(r->nlinks, 0);
    assert_string_equal(r->body, "ok");
    ms_httpc_parser_free(p);
}

static void test_links_bounded_and_trimmed(void **state)
{
    (void)state;
    char resp[2048];
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\n"
                                        "Link: ,  <a>;rel=up ,, <b>\r\n"
                                        "LINK:\t<c>\t\r\n"
                                        "Link: <d>, <e>, <f>, <g>, <h>, <i>, <j>\r\n"
                                        "Content-Length: 0\r\n\r\n");
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, resp, (size_t)n, why, sizeof why), 1);
    const ms_httpc_response *r = ms_httpc_parser_response(p);
    static const char *const want[] = { "<a>;rel=up", "<b>", "<c>", "<d>", "<e>", "<f>", "<g>", "<h>" };
    assert_int_equal(r->nlinks, MS_HTTPC_MAX_LINKS);
    for (size_t i = 0; i < MS_HTTPC_MAX_LINKS; i++)
        assert_string_equal(r->links[i], want[i]);
    ms_httpc_parser_free(p);
}

/* A response whose head is exactly head_len bytes (with its blank line). */
static char *head_of(size_t head_len, size_t *len)
{
    static const char start[] = "HTTP/1.1 200 OK\r\nX-Pad: ";
    static const char end[] = "\r\nContent-Length: 0\r\n\r\n";
    char *s = malloc(head_len + 1);
    assert_non_null(s);
    size_t pad = head_len - (sizeof start - 1) - (sizeof end - 1);
    memcpy(s, start, sizeof start - 1);
    memset(s + sizeof start - 1, 'a', pad);
    memcpy(s + sizeof start - 1 + pad, end, sizeof end);
    *len = head_len;
    return s;
}

static void test_head_limit(void **state)
{
    (void)state;
    size_t n;
    char *ok = head_of(16384, &n);
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, ok, n, why, sizeof why), 1);
    ms_httpc_parser_free(p);
    free(ok);

    char *big = head_of(16385, &n);
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, big, n, why, sizeof why), -1);
    assert_string_equal(why, "the response head is over 16 KiB");
    /* the error sticks */
    assert_int_equal(ms_httpc_parser_feed(p, "x", 1, why, sizeof why), -1);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), -1);
    assert_string_equal(why, "the response head is over 16 KiB");
    assert_null(ms_httpc_parser_response(p));
    ms_httpc_parser_free(p);
    /* byte by byte: the same verdict at the same byte */
    p = ms_httpc_parser_new(false);
    int r = 0;
    size_t i = 0;
    for (; i < n && r == 0; i++)
        r = ms_httpc_parser_feed(p, big + i, 1, why, sizeof why);
    assert_int_equal(r, -1);
    assert_int_equal(i, 16385);
    ms_httpc_parser_free(p);
    free(big);
}

static void test_body_limit(void **state)
{
    (void)state;
    char *body = malloc(MS_HTTPC_MAX_BODY + 1);
    assert_non_null(body);
    memset(body, 'b', MS_HTTPC_MAX_BODY + 1);
    char head[128];

    /* exactly the bound: fine */
    int hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", MS_HTTPC_MAX_BODY);
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, head, (size_t)hn, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_feed(p, body, MS_HTTPC_MAX_BODY, why, sizeof why), 1);
    assert_int_equal(ms_httpc_parser_response(p)->body_len, MS_HTTPC_MAX_BODY);
    ms_httpc_parser_free(p);

    /* a Content-Length over it fails at the head */
    hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", MS_HTTPC_MAX_BODY + 1);
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, head, (size_t)hn, why, sizeof why), -1);
    assert_string_equal(why, "the response body is over 1 MiB");
    ms_httpc_parser_free(p);

    /* until close: fails on the byte over */
    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, "HTTP/1.1 200 OK\r\n\r\n", 19, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_feed(p, body, MS_HTTPC_MAX_BODY, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_feed(p, body, 1, why, sizeof why), -1);
    assert_string_equal(why, "the response body is over 1 MiB");
    ms_httpc_parser_free(p);

    /* chunked: two chunks that sum to one byte over */
    p = ms_httpc_parser_new(false);
    hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
                  MS_HTTPC_MAX_BODY);
    assert_int_equal(ms_httpc_parser_feed(p, head, (size_t)hn, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_feed(p, body, MS_HTTPC_MAX_BODY, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_feed(p, "\r\n1\r\nb\r\n", 8, why, sizeof why), -1);
    assert_string_equal(why, "the response body is over 1 MiB");
    ms_httpc_parser_free(p);
    free(body);
}

static void test_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_httpc_parser *p = ms_httpc_parser_new(false);
        assert_int_equal(ms_httpc_parser_feed(p, bad[i], strlen(bad[i]), why, sizeof why), -1);
        assert_memory_equal(why, "invalid HTTP response: ", 23);
        assert_null(ms_httpc_parser_response(p));
        ms_httpc_parser_free(p);
    }
    ms_httpc_parser *p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), -1);
    assert_string_equal(why, "the server closed the connection without answering");
    ms_httpc_parser_free(p);

    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, "HTTP/1.1 200 OK\r\nConte", 22, why, sizeof why), 0);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), -1);
    assert_string_equal(why, "the server closed the connection in the middle of the response");
    ms_httpc_parser_free(p);

    p = ms_httpc_parser_new(false);
    assert_int_equal(ms_httpc_parser_feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 43, why,
                                          sizeof why), 0);
    assert_int_equal(ms_httpc_parser_done(p, why, sizeof why), -1);
    assert_string_equal(why, "the server closed the connection in the middle of the response");
    ms_httpc_parser_free(p);
    ms_httpc_parser_free(NULL);
}

/* ================================================================ certificates */
static char tmpdir[64];
static char ca_path[128], other_ca_path[128];
static EVP_PKEY *server_key, *ca_key, *other_ca_key;
static X509 *ca_cert, *other_ca_cert, *server_cert, *misnamed_cert;

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *sign_key, X509 *issuer, const char *cn, const char *san)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    static long serial = 1;
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    struct {
        int nid;
        const char *value;
    } exts[] = {
        { NID_basic_constraints, san ? "critical,CA:FALSE" : "critical,CA:TRUE" },
        { NID_key_usage, san ? "critical,digitalSignature" : "critical,keyCertSign,cRLSign" },
        { NID_subject_key_identifier, "hash" },
        { NID_subject_alt_name, san },
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (!exts[i].value)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        assert_non_null(e);
        assert_int_equal(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, sign_key, EVP_sha256()) > 0);
    return x;
}

static void write_pem(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    assert_int_equal(fclose(f), 0);
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_httpc.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    snprintf(other_ca_path, sizeof other_ca_path, "%s/other-ca.pem", tmpdir);
    ca_key = EVP_EC_gen("P-256");
    other_ca_key = EVP_EC_gen("P-256");
    server_key = EVP_EC_gen("P-256");
    if (!ca_key || !other_ca_key || !server_key)
        return -1;
    ca_cert = make_cert(ca_key, ca_key, NULL, "test CA", NULL);
    other_ca_cert = make_cert(other_ca_key, other_ca_key, NULL, "other CA", NULL);
    server_cert = make_cert(server_key, ca_key, ca_cert, "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1");
    misnamed_cert = make_cert(server_key, ca_key, ca_cert, "other", "DNS:other.example");
    write_pem(ca_path, ca_cert);
    write_pem(other_ca_path, other_ca_cert);
    return 0;
}

static int drop_certs(void **state)
{
    (void)state;
    X509_free(ca_cert);
    X509_free(other_ca_cert);
    X509_free(server_cert);
    X509_free(misnamed_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_ca_key);
    EVP_PKEY_free(server_key);
    unlink(ca_path);
    unlink(other_ca_path);
    rmdir(tmpdir);
    return 0;
}

/* ================================================================ a one-shot server */
typedef struct server {
    int lfd;
    unsigned port;
    bool v6;                /* listen on ::1 instead of 127.0.0.1 */
    X509 *cert;             /* TLS with this certificate; NULL: plain TCP */
    const char *response;   /* NULL: hold the connection until the client closes it */
    bool close_at_once;     /* close without reading or answering */
    bool no_close_notify;   /* TLS: close the TCP connection without SSL_shutdown */
    uv_async_t *got_request; /* signalled once the request is read */
    char request[8192];
    size_t request_len;
    bool handshake_failed;
    pthread_t thread;
} server;

static int srv_read(SSL *ssl, int fd, char *buf, size_t cap)
{
    return ssl ? SSL_read(ssl, buf, (int)cap) : (int)recv(fd, buf, cap, 0);
}

static void srv_write(SSL *ssl, int fd, const char *buf, size_t n)
{
    if (ssl) {
        assert_int_equal(SSL_write(ssl, buf, (int)n), (int)n);
        return;
    }
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        buf += w;
        n -= (size_t)w;
    }
}

/* The request is complete at its blank line plus its Content-Length. */
static bool request_complete(const server *s)
{
    const char *end = memmem(s->request, s->request_len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head = (size_t)(end - s->request) + 4;
    const char *cl = memmem(s->request, head, "Content-Length: ", 16);
    size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
    return s->request_len >= head + body;
}

static void *serve(void *arg)
{
    server *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (s->close_at_once)
        goto out;
    if (s->cert) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_use_certificate(ctx, s->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, server_key) != 1)
            goto out;
        ssl = SSL_new(ctx);
        if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) {
            s->handshake_failed = true;
            goto out;
        }
    }
    while (!request_complete(s) && s->request_len < sizeof s->request - 1) {
        int n = srv_read(ssl, fd, s->request + s->request_len, sizeof s->request - 1 - s->request_len);
        if (n <= 0)
            goto out;
        s->request_len += (size_t)n;
    }
    s->request[s->request_len] = '\0';
    if (s->got_request)
        uv_async_send(s->got_request);
    if (!s->response) {
        char sink[256];
        while (srv_read(ssl, fd, sink, sizeof sink) > 0)
            ;
        goto out;
    }
    srv_write(ssl, fd, s->response, strlen(s->response));
    if (ssl && !s->no_close_notify)
        SSL_shutdown(ssl);
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return NULL;
}

static void server_start(server *s)
{
    s->lfd = socket(s->v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    struct sockaddr *a = s->v6 ? (struct sockaddr *)&sa6 : (struct sockaddr *)&sa;
    socklen_t len = s->v6 ? sizeof sa6 : sizeof sa;
    assert_int_equal(bind(s->lfd, a, len), 0);
    assert_int_equal(getsockname(s->lfd, a, &len), 0);
    s->port = ntohs(s->v6 ? sa6.sin6_port : sa.sin_port);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

/* A listener that never accepts: connections complete in its backlog and
 * are never answered. */
static int idle_listener(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(listen(fd, 4), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* The server is done, or still in accept() when the client gave up before
 * connecting (a deadline): shutting the listener down wakes it. */
static void server_join(server *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    close(s->lfd);
}

/* ================================================================ requests on a loop */
typedef struct result {
    int calls;
    int status;
    char body[512];
    char location[128];
    char error[400];
    ms_httpc *free_client;  /* ms_httpc_free'd inside the callback */
} result;

static void on_done(void *arg, const ms_httpc_response *r, const char *error)
{
    result *res = arg;
    res->calls++;
    if (r) {
        assert_null(error);
        res->status = r->status;
        snprintf(res->body, sizeof res->body, "%s", r->body);
        snprintf(res->location, sizeof res->location, "%s", r->location ? r->location : "");
    } else {
        assert_non_null(error);
        snprintf(res->error, sizeof res->error, "%s", error);
    }
    if (res->free_client)
        ms_httpc_free(res->free_client);
}

/* Close the loop: it must have no handle left. */
static void loop_end(uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* One request against s (started here unless NULL) with a client trusting ca. */
static void one_request(server *s, const char *ca, const char *method, const char *url_fmt, const char *ctype,
                        const char *body, uint64_t timeout_ms, result *res)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    if (s)
        server_start(s);
    char url[256];
    snprintf(url, sizeof url, url_fmt, s ? s->port : 0);
    char err[300];
    ms_httpc *c = ms_httpc_new(&loop, ca, err, sizeof err);
    assert_non_null(c);
    ms_httpc_req *req = ms_httpc_request(c, method, url, ctype, body, body ? strlen(body) : 0, timeout_ms,
                                         on_done, res);
    assert_non_null(req);
    assert_int_equal(res->calls, 0); /* never from inside ms_httpc_request */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res->calls, 1);
    ms_httpc_free(c);
    if (s)
        server_join(s);
    loop_end(&loop);
}

static void test_get_over_tcp(void **state)
{
    (void)state;
    server s = { .response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nLocation: /x\r\n\r\nhello" };
    result res = { 0 };
    one_request(&s, NULL, "GET", "http://127.0.0.1:%u/dir?q=1#frag", NULL, NULL, 5000, &res);
    assert_string_equal(res.error, "");
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "hello");
    assert_string_equal(res.location, "/x");
    char want[128];
    snprintf(want, sizeof want, "GET /dir?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: mothership/", s.port);
    assert_memory_equal(s.request, want, strlen(want));
    assert_non_null(strstr(s.request, "\r\nAccept: */*\r\n"));
    assert_non_null(strstr(s.request, "\r\nConnection: close\r\n"));
    assert_null(strstr(s.request, "Content-Length"));
}

static void test_post_chunked_answer_by_name(void **state)
{
    (void)state;
    /* "localhost" may resolve to ::1 first, where nothing listens: the next address is tried */
    server s = { .response = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" };
    result res = { 0 };
    one_request(&s, NULL, "POST", "http://localhost:%u", "application/jose+json", "{\"a\":1}", 5000, &res);
    assert_string_equal(res.error, "");
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "abc");
    assert_memory_equal(s.request, "POST / HTTP/1.1\r\n", 17);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: localhost:%u\r\n", s.port);
    assert_non_null(strstr(s.request, host));
    assert_non_null(strstr(s.request, "\r\nContent-Type: application/jose+json\r\n"));
    assert_non_null(strstr(s.request, "\r\nContent-Length: 7\r\n\r\n{\"a\":1}"));
}

static void test_tls_with_ca_root(void **state)
{
    (void)state;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"newNonce\":\"x\"}";
    server s = { .cert = server_cert, .response = answer };
    result res = { 0 };
    one_request(&s, ca_path, "GET", "https://127.0.0.1:%u/dir", NULL, NULL, 5000, &res);
    assert_string_equal(res.error, "");
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"newNonce\":\"x\"}"); /* until close, over TLS */

    server s2 = { .cert = server_cert, .response = "HTTP/1.1 204 No Content\r\n\r\n" };
    result res2 = { 0 };
    one_request(&s2, ca_path, "HEAD", "https://localhost:%u/", NULL, NULL, 5000, &res2);
    assert_string_equal(res2.error, "");
    assert_int_equal(res2.status, 204);
    char host[64];
    snprintf(host, sizeof host, "HEAD / HTTP/1.1\r\nHost: localhost:%u\r\n", s2.port);
    assert_memory_equal(s2.request, host, strlen(host));
}

static void test_ipv6_literal(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&sa6, sizeof sa6) == 0;
    if (probe >= 0)
        close(probe);
    if (!have_v6)
        skip();
    server s = { .v6 = true, .cert = server_cert, .response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6" };
    result res = { 0 };
    one_request(&s, ca_path, "GET", "https://[::1]:%u/six", NULL, NULL, 5000, &res);
    assert_string_equal(res.error, "");
    assert_string_equal(res.body, "v6");
    char want[64];
    snprintf(want, sizeof want, "GET /six HTTP/1.1\r\nHost: [::1]:%u\r\n", s.port);
    assert_memory_equal(s.request, want, strlen(want));
}

/* Over TLS a body read until the close must end with close_notify: a bare
 * TCP close (a FIN anyone on the path can forge) may have cut it short. */
static void test_tls_truncated_without_close_notify(void **state)
{
    (void)state;
    server s = { .cert = server_cert, .no_close_notify = true,
                 .response = "HTTP/1.1 200 OK\r\nContent-Type: application/pem-certificate-chain\r\n\r\n"
                             "-----BEGIN CERTIFICATE-----\n" };
    result res = { 0 };
    one_request(&s, ca_path, "GET", "https://127.0.0.1:%u/cert", NULL, NULL, 5000, &res);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.error, "TLS: the server closed the connection without close_notify: "
                                   "the response may be truncated");

    /* framed by its Content-Length, the same close is harmless */
    server s2 = { .cert = server_cert, .no_close_notify = true,
                  .response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" };
    result res2 = { 0 };
    one_request(&s2, ca_path, "GET", "https://127.0.0.1:%u/", NULL, NULL, 5000, &res2);
    assert_string_equal(res2.error, "");
    assert_string_equal(res2.body, "ok");
}

static void test_tls_wrong_ca_or_name(void **state)
{
    (void)state;
    server s = { .cert = server_cert, .response = "HTTP/1.1 200 OK\r\n\r\n" };
    result res = { 0 };
    one_request(&s, other_ca_path, "GET", "https://127.0.0.1:%u/", NULL, NULL, 5000, &res);
    assert_string_equal(res.error, "TLS: certificate verify failed: unable to get local issuer certificate");
    assert_true(s.handshake_failed);

    server s2 = { .cert = misnamed_cert, .response = "HTTP/1.1 200 OK\r\n\r\n" };
    result res2 = { 0 };
    one_request(&s2, ca_path, "GET", "https://127.0.0.1:%u/", NULL, NULL, 5000, &res2);
    assert_string_equal(res2.error, "TLS: certificate verify failed: IP address mismatch");

    server s3 = { .cert = misnamed_cert, .response = "HTTP/1.1 200 OK\r\n\r\n" };
    result res3 = { 0 };
    one_request(&s3, ca_path, "GET", "https://localhost:%u/", NULL, NULL, 5000, &res3);
    assert_string_equal(res3.error, "TLS: certificate verify failed: hostname mismatch");
}

static void test_bad_ca_root(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[300], missing[160], notpem[160];
    snprintf(missing, sizeof missing, "%s/missing.pem", tmpdir);
    assert_null(ms_httpc_new(&loop, missing, err, sizeof err));
    char want[300];
    snprintf(want, sizeof want, "cannot read the CA file %s: No such file or directory", missing);
    assert_string_equal(err, want);
    snprintf(notpem, sizeof notpem, "%s/not.pem", tmpdir);
    FILE *f = fopen(notpem, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    assert_null(ms_httpc_new(&loop, notpem, err, sizeof err));
    snprintf(want, sizeof want, "cannot load the CA certificates in %s: ", notpem);
    assert_memory_equal(err, want, strlen(want));
    unlink(notpem);
    loop_end(&loop);
}

static void test_failures_are_readable(void **state)
{
    (void)state;
    /* a port nothing listens on */
    server probe = { 0 };
    probe.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(probe.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(probe.lfd, (struct sockaddr *)&sa, &len), 0);
    close(probe.lfd);
    char url[64], want[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%u: connection refused", ntohs(sa.sin_port));
    result res = { 0 };
    one_request(NULL, NULL, "GET", url, NULL, NULL, 5000, &res);
    assert_string_equal(res.error, want);

    static const struct {
        const char *url, *error;
    } bad[] = {
        { "ftp://x/", "bad URL \"ftp://x/\": not http:// or https://" },
        { "http:///x", "bad URL \"http:///x\": no host" },
        { "http://h:0/", "bad URL \"http://h:0/\": the port is out of range" },
        { "http://h:x/", "bad URL \"http://h:x/\": the port is not a number" },
        { "http://u@h/", "bad URL \"http://u@h/\": user information is not supported" },
        { "http://h/a b", "bad URL: it contains a space or a control character" },
        { "http://[::1/", "bad URL \"http://[::1/\": no ']' after the IPv6 address" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result r = { 0 };
        one_request(NULL, NULL, "GET", bad[i].url, NULL, NULL, 5000, &r);
        assert_string_equal(r.error, bad[i].error);
    }

    server early = { .close_at_once = true };
    result res2 = { 0 };
    one_request(&early, NULL, "GET", "http://127.0.0.1:%u/", NULL, NULL, 5000, &res2);
    assert_true(strcmp(res2.error, "the server closed the connection without answering") == 0 ||
                strncmp(res2.error, "reading the response: ", 22) == 0 ||
                strncmp(res2.error, "sending the request: ", 21) == 0);

    server junk = { .response = "SSH-2.0-OpenSSH\r\n" };
    result res3 = { 0 };
    one_request(&junk, NULL, "GET", "http://127.0.0.1:%u/", NULL, NULL, 5000, &res3);
    assert_memory_equal(res3.error, "invalid HTTP response: ", 23);
}

static void test_deadline(void **state)
{
    (void)state;
    server s = { .response = NULL }; /* reads the request, never answers */
    result res = { 0 };
    uint64_t t0 = uv_hrtime();
    one_request(&s, NULL, "GET", "http://127.0.0.1:%u/", NULL, NULL, 200, &res);
    assert_string_equal(res.error, "timed out after 200 ms");
    assert_true(uv_hrtime() - t0 >= 190u * 1000000u);

    server tls = { .cert = server_cert, .response = NULL };
    result res2 = { 0 };
    one_request(&tls, ca_path, "GET", "https://127.0.0.1:%u/", NULL, NULL, 1000, &res2);
    assert_string_equal(res2.error, "timed out after 1 s");
}

/* The deadline counts from the call, not from the loop's cached time: a
 * request started after blocking work (key generation, startup before
 * uv_run) still gets its whole timeout. */
static void test_deadline_counts_from_the_call(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    server s = { .response = NULL };
    server_start(&s);
    char err[300], url[64];
    ms_httpc *c = ms_httpc_new(&loop, NULL, err, sizeof err);
    assert_non_null(c);
    usleep(400 * 1000); /* the loop's time is now 400 ms old */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    result res = { 0 };
    uint64_t t0 = uv_hrtime();
    assert_non_null(ms_httpc_request(c, "GET", url, NULL, NULL, 0, 300, on_done, &res));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_string_equal(res.error, "timed out after 300 ms");
    assert_true(uv_hrtime() - t0 >= 290u * 1000000u);
    ms_httpc_free(c);
    server_join(&s);
    loop_end(&loop);
}

/* ---------------------------------------------------------------- cancel and free */
typedef struct stopper {
    uv_async_t async;
    ms_httpc *c;
    ms_httpc_req *req;
    bool free_client;
    int calls;
} stopper;

/* Not expected: counted, and the loop let go so that the test fails. */
static void on_stopper_done(void *arg, const ms_httpc_response *r, const char *error)
{
    (void)r;
    (void)error;
    stopper *st = arg;
    st->calls++;
    if (!uv_is_closing((uv_handle_t *)&st->async))
        uv_close((uv_handle_t *)&st->async, NULL);
}

static void on_got_request(uv_async_t *a)
{
    stopper *st = a->data;
    if (st->free_client)
        ms_httpc_free(st->c);
    else
        ms_httpc_cancel(st->req);
    if (!uv_is_closing((uv_handle_t *)a))
        uv_close((uv_handle_t *)a, NULL);
}

/* Stop a request once the server has read it (the connection is open). */
static void stop_in_flight(bool tls, bool free_client)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    stopper st = { .free_client = free_client };
    assert_int_equal(uv_async_init(&loop, &st.async, on_got_request), 0);
    st.async.data = &st;
    server s = { .cert = tls ? server_cert : NULL, .response = NULL, .got_request = &st.async };
    server_start(&s);
    char err[300], url[64];
    st.c = ms_httpc_new(&loop, tls ? ca_path : NULL, err, sizeof err);
    assert_non_null(st.c);
    snprintf(url, sizeof url, "%s://127.0.0.1:%u/", tls ? "https" : "http", s.port);
    st.req = ms_httpc_request(st.c, "GET", url, NULL, NULL, 0, 5000, on_stopper_done, &st);
    /* a second request in flight on the same client, never answered */
    unsigned idle_port;
    int idle = idle_listener(&idle_port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", idle_port);
    ms_httpc_req *other = ms_httpc_request(st.c, "GET", url, NULL, NULL, 0, 5000, on_stopper_done, &st);
    assert_non_null(other);
    if (!free_client)
        ms_httpc_cancel(other);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(st.calls, 0);
    if (!free_client)
        ms_httpc_free(st.c);
    server_join(&s); /* it saw the close */
    close(idle);
    loop_end(&loop);
}

static void test_cancel_and_free_in_flight(void **state)
{
    (void)state;
    stop_in_flight(false, false);
    stop_in_flight(false, true);
    stop_in_flight(true, false);
    stop_in_flight(true, true);
}

static void test_cancel_and_free_before_the_loop_runs(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[300];
    ms_httpc *c = ms_httpc_new(&loop, NULL, err, sizeof err);
    assert_non_null(c);
    result res = { 0 };
    /* a name being resolved, a bad URL waiting for its callback, an IP */
    ms_httpc_req *a = ms_httpc_request(c, "GET", "http://localhost:9/", NULL, NULL, 0, 5000, on_done, &res);
    ms_httpc_req *b = ms_httpc_request(c, "GET", "nope", NULL, NULL, 0, 5000, on_done, &res);
    assert_non_null(ms_httpc_request(c, "POST", "https://127.0.0.1:9/", "text/plain", "x", 1, 5000, on_done, &res));
    ms_httpc_cancel(a);
    ms_httpc_cancel(b);
    ms_httpc_free(c);
    ms_httpc_free(NULL);
    ms_httpc_cancel(NULL);
    loop_end(&loop);
    assert_int_equal(res.calls, 0);
}

static void test_free_inside_the_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    server s = { .response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" };
    server_start(&s);
    char err[300], url[64];
    ms_httpc *c = ms_httpc_new(&loop, NULL, err, sizeof err);
    assert_non_null(c);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    result res = { .free_client = c };
    result other = { 0 };
    assert_non_null(ms_httpc_request(c, "GET", url, NULL, NULL, 0, 5000, on_done, &res));
    /* never answered: cancelled by the free inside the first callback */
    unsigned idle_port;
    int idle = idle_listener(&idle_port);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", idle_port);
    assert_non_null(ms_httpc_request(c, "GET", url, NULL, NULL, 0, 60000, on_done, &other));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.body, "ok");
    assert_int_equal(other.calls, 0);
    server_join(&s);
    close(idle);
    loop_end(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_whole_and_by_byte),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_until_close),
        cmocka_unit_test(test_head_and_bodiless),
        cmocka_unit_test(test_interim_responses_are_skipped),
        cmocka_unit_test(test_links_bounded_and_trimmed),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_get_over_tcp),
        cmocka_unit_test(test_post_chunked_answer_by_name),
        cmocka_unit_test(test_tls_with_ca_root),
        cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_tls_truncated_without_close_notify),
        cmocka_unit_test(test_tls_wrong_ca_or_name),
        cmocka_unit_test(test_bad_ca_root),
        cmocka_unit_test(test_failures_are_readable),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_deadline_counts_from_the_call),
        cmocka_unit_test(test_cancel_and_free_in_flight),
        cmocka_unit_test(test_cancel_and_free_before_the_loop_runs),
        cmocka_unit_test(test_free_inside_the_callback),
    };
    return cmocka_run_group_tests(tests, make_certs, drop_certs);
}
