/* tls_standin.c: a minimal TLS server configuration (tls_standin.h): one
 * SSL_CTX from [mothership.tls] cert (PEM, chain allowed) and key; TLS 1.2
 * and 1.3 only, forward-secret AEAD suites, the server's preference, no
 * renegotiation, no compression, ALPN http/1.1 when the client offers it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http/tls_standin.h"

struct ms_tls_server {
    SSL_CTX *ctx;
};

static void reason(char *why, size_t why_len, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(why, why_len, "%s%s%s: %s", what, path ? " " : "", path ? path : "", r ? r : "unknown error");
    ERR_clear_error();
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: no ALPN, HTTP/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

ms_tls_server *ms_tls_server_new(const ms_manifest *m, char *why, size_t why_len)
{
    const ms_global *g = &m->global;
    if (!g->has_tls || !g->tls_cert || !g->tls_key) {
        snprintf(why, why_len, "a TLS bind needs [mothership.tls] with cert and key");
        return NULL;
    }
    ERR_clear_error();
    ms_tls_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    s->ctx = SSL_CTX_new(TLS_server_method());
    if (!s->ctx) {
        reason(why, why_len, "cannot create a TLS context", NULL);
        free(s);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(s->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set_cipher_list(s->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        reason(why, why_len, "cannot set the cipher suites", NULL);
        ms_tls_server_free(s);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(s->ctx, g->tls_cert) != 1) {
        reason(why, why_len, "[mothership.tls] cert", g->tls_cert);
        ms_tls_server_free(s);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(s->ctx, g->tls_key, SSL_FILETYPE_PEM) != 1) {
        reason(why, why_len, "[mothership.tls] key", g->tls_key);
        ms_tls_server_free(s);
        return NULL;
    }
    if (SSL_CTX_check_private_key(s->ctx) != 1) {
        reason(why, why_len, "[mothership.tls] key does not match cert", NULL);
        ms_tls_server_free(s);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(s->ctx, select_alpn, NULL);
    return s;
}

SSL *ms_tls_server_ssl(ms_tls_server *s, size_t bind_idx)
{
    (void)bind_idx;
    return SSL_new(s->ctx);
}

void ms_tls_server_free(ms_tls_server *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    free(s);
}
