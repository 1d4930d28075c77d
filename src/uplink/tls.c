/* tls.c: a TLS client for the uplink checks (https://, rediss://) on
 * OpenSSL 3 with a pair of memory BIOs: uplink.c feeds the bytes read from
 * the libuv stream in (ms_tls_feed) and sends what OpenSSL wants written
 * (ms_tls_take_output), so no socket is ever handed to OpenSSL. The peer's
 * certificate is verified against the system store and the host name (or IP
 * literal); SNI is sent for names. Failures come back as readable reasons
 * ("certificate verify failed: self-signed certificate", OpenSSL's reason
 * string otherwise). */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "uplink/uplink_impl.h"

struct ms_tls {
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
};

static void ssl_reason(char *why, size_t why_len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(why, why_len, "TLS: %s", r);
    else if (e) {
        char buf[200];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(why, why_len, "TLS: %s", buf);
    } else
        snprintf(why, why_len, "TLS: %s", fallback);
    ERR_clear_error();
}

SSL_CTX *ms_tls_client_ctx(char *why, size_t why_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_reason(why, why_len, "cannot create a context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_reason(why, why_len, "cannot load the system certificate store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

ms_tls *ms_tls_new(SSL_CTX *ctx, const char *host, char *why, size_t why_len)
{
    ERR_clear_error();
    ms_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        ssl_reason(why, why_len, "out of memory");
        if (t->ssl)
            SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        return NULL;
    }
    /* an empty memory BIO reports "retry" instead of EOF */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    SSL_set_connect_state(t->ssl);

    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    bool ok;
    if (is_ip)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    else
        ok = SSL_set_tlsext_host_name(t->ssl, host) == 1 && SSL_set1_host(t->ssl, host) == 1;
    if (!ok) {
        ssl_reason(why, why_len, "cannot set the expected host name");
        ms_tls_free(t);
        return NULL;
    }
    return t;
}

void ms_tls_free(ms_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees the BIOs */
    free(t);
}

bool ms_tls_feed(ms_tls *t, const char *data, size_t n)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        int w = BIO_write(t->rbio, data, chunk);
        if (w <= 0)
            return false;
        data += w;
        n -= (size_t)w;
    }
    return true;
}

/* Shared error handling of SSL_do_handshake / SSL_read / SSL_write. */
static int classify(ms_tls *t, int rc, char *why, size_t why_len)
{
    int err = SSL_get_error(t->ssl, rc);
    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return -2;
    default:
        break;
    }
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        snprintf(why, why_len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return -1;
    }
    ssl_reason(why, why_len, err == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "handshake failed");
    return -1;
}

int ms_tls_handshake(ms_tls *t, char *why, size_t why_len)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int c = classify(t, rc, why, why_len);
    if (c == -2) {
        snprintf(why, why_len, "TLS: connection closed during the handshake");
        return -1;
    }
    return c;
}

bool ms_tls_write(ms_tls *t, const void *data, size_t n, char *why, size_t why_len)
{
    ERR_clear_error();
    size_t done = 0;
    if (n == 0)
        return true;
    if (SSL_write_ex(t->ssl, data, n, &done) != 1 || done != n) {
        ssl_reason(why, why_len, "write failed");
        return false;
    }
    return true;
}

int ms_tls_read(ms_tls *t, char *buf, size_t cap, char *why, size_t why_len)
{
    ERR_clear_error();
    size_t got = 0;
    int chunk = cap > INT_MAX ? INT_MAX : (int)cap;
    if (SSL_read_ex(t->ssl, buf, (size_t)chunk, &got) == 1)
        return (int)got;
    return classify(t, 0, why, why_len);
}

long ms_tls_take_output(ms_tls *t, char **out)
{
    *out = NULL;
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (pending == 0)
        return 0;
    if (pending > LONG_MAX || pending > INT_MAX)
        return -1;
    char *buf = malloc(pending);
    if (!buf)
        return -1;
    int r = BIO_read(t->wbio, buf, (int)pending);
    if (r <= 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return r;
}
