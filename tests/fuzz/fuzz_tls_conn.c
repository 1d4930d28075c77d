/* fuzz_tls_conn.c: a TLS client's bytes into a real inline worker whose
 * bind terminates TLS (a key and a self-signed certificate made at start).
 * The first input byte picks the way in:
 *   even: the rest is the client's raw bytes: records, ClientHellos, alerts,
 *         plain HTTP on the TLS port (the record layer and the handshake);
 *   odd:  an OpenSSL client in this process completes a handshake (TLS 1.3,
 *         or 1.2 when bit 1 is set) and sends the rest encrypted, as
 *         application data, in records of 1 + (byte 1) bytes, then its
 *         close_notify (the decrypting path, with the data plane's request
 *         handling behind it).
 * Each input ends with the client's write side shut; the server must close
 * the connection, else the input is reported as a hang. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/dataplane.h"
#include "tls/tls.h"
#include "inline_client.h"
#include "router/table.h"

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;
static SSL_CTX *client_ctx;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

/* An ECDSA P-256 key and a self-signed certificate for localhost. */
static void make_cert(const char *dir)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x)
        abort();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (!X509_sign(x, key, EVP_sha256()))
        abort();
    char path[512];
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    FILE *f = fopen(path, "w");
    if (!f || !PEM_write_X509(f, x))
        abort();
    fclose(f);
    snprintf(path, sizeof path, "%s/key.pem", dir);
    f = fopen(path, "w");
    if (!f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
        abort();
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

static ms_tls_server *make_tls(const ms_manifest *m)
{
    char why[256];
    ms_tls_server *s = ms_tls_server_new(m, why, sizeof why);
    if (!s)
        fprintf(stderr, "%s\n", why);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/ms-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char pub[600];
    snprintf(pub, sizeof pub, "%s/public", dir);
    mkdir(pub, 0755);
    write_file(pub, "index.html", "<h1>hello</h1>\n");
    char big[70000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(pub, "big.txt", big);
    make_cert(dir);
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership]\ncompression = true\n"
             "[mothership.http]\nmax_header_size = 2048\nmax_uri_length = 512\nmax_body_size = 4096\nrequest_buffer_size = 1024\n"
             "[mothership.bind]\nhttps = \"127.0.0.1:1\"\n"
             "[mothership.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"
             "[[mothership.static_dirs]]\npath = \"public\"\nprefix = \"/static\"\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/none.sock\"\n"
             "routes = [\"https:/(app|ws)(/.*)?\", { bind = \"https\", pattern = \"/s/.*\", request_buffering = false }]\n",
             dir);
    dp = fuzz_inline_start_tls(text, dir, NULL, make_tls, &manifest, &routes);
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx)
        abort();
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

/* Send what the client's OpenSSL wrote (the socketpair is large enough
 * for a flight; what it does not take now goes on the next turn). */
static void client_flush(BIO *wbio, int fd, char *pend, size_t *npend, size_t cap)
{
    for (;;) {
        if (*npend < cap) {
            int r = BIO_read(wbio, pend + *npend, (int)(cap - *npend));
            if (r > 0)
                *npend += (size_t)r;
        }
        if (*npend == 0)
            return;
        ssize_t w = write(fd, pend, *npend);
        if (w <= 0)
            return;
        memmove(pend, pend + w, *npend - (size_t)w);
        *npend -= (size_t)w;
    }
}

static void tls_client(const uint8_t *data, size_t size)
{
    bool tls12 = size > 0 && (data[0] & 2);
    size_t record = size > 1 ? 1 + (size_t)data[1] : 256;
    data += size > 1 ? 2 : size;
    size -= size > 1 ? 2 : size;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (ms_dataplane_inline_adopt(dp, sv[0], 0) != 0)
        abort();
    uv_loop_t *loop = ms_dataplane_inline_loop(dp);
    SSL *ssl = SSL_new(client_ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!ssl || !rbio || !wbio)
        abort();
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (tls12)
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION);

    static char pend[1 << 17], sink[65536];
    size_t npend = 0, sent = 0;
    bool shut = false, closed = false, broken = false;
    for (int round = 0; round < 20000 && !closed; round++) {
        if (!broken && !SSL_is_init_finished(ssl)) {
            int rc = SSL_do_handshake(ssl);
            if (rc <= 0 && SSL_get_error(ssl, rc) != SSL_ERROR_WANT_READ)
                broken = true; /* the server refused: just end */
        } else if (!broken && sent < size) {
            size_t n = size - sent < record ? size - sent : record;
            size_t done = 0;
            if (npend < sizeof pend / 2 && SSL_write_ex(ssl, data + sent, n, &done) == 1)
                sent += done;
            else if (npend < sizeof pend / 2)
                broken = true;
        } else if (!shut && npend == 0) {
            if (!broken)
                SSL_shutdown(ssl);
            client_flush(wbio, sv[1], pend, &npend, sizeof pend);
            if (npend == 0) {
                shutdown(sv[1], SHUT_WR);
                shut = true;
            }
        }
        client_flush(wbio, sv[1], pend, &npend, sizeof pend);
        uv_run(loop, UV_RUN_NOWAIT);
        for (;;) {
            ssize_t r = read(sv[1], sink, sizeof sink);
            if (r > 0) {
                BIO_write(rbio, sink, (int)r);
                continue;
            }
            if (r == 0)
                closed = true;
            break;
        }
        /* take what the server sent, as a client would */
        size_t got;
        while (SSL_is_init_finished(ssl) && SSL_read_ex(ssl, sink, sizeof sink, &got) == 1)
            ;
    }
    if (!closed) {
        fprintf(stderr, "the TLS connection did not close after the client's EOF\n");
        abort();
    }
    SSL_free(ssl);
    close(sv[1]);
    uv_run(loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        tls_client(data, size);
    else
        fuzz_inline_client(dp, NULL, 0, data + 1, size - 1, NULL, NULL);
    return 0;
}
