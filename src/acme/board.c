/* board.c: the challenge board between the ACME client and the data plane
 * (see board.h): two small bounded tables under one mutex, searched
 * linearly (at most MS_ACME_BOARD_MAX entries, and only looked at for the
 * rare requests and handshakes that concern ACME). */
#include "acme/board.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

typedef struct http_entry {
    char *token;
    size_t token_len;
    char *key_authorization;
} http_entry;

typedef struct alpn_entry {
    char *name;
    X509 *cert;
    EVP_PKEY *key;
} alpn_entry;

struct ms_acme_board {
    pthread_mutex_t lock;
    http_entry http[MS_ACME_BOARD_MAX];
    size_t nhttp;
    alpn_entry alpn[MS_ACME_BOARD_MAX];
    size_t nalpn;
};

ms_acme_board *ms_acme_board_new(void)
{
    ms_acme_board *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

static void http_entry_clear(http_entry *e)
{
    free(e->token);
    free(e->key_authorization);
    memset(e, 0, sizeof *e);
}

static void alpn_entry_clear(alpn_entry *e)
{
    free(e->name);
    X509_free(e->cert);
    EVP_PKEY_free(e->key);
    memset(e, 0, sizeof *e);
}

void ms_acme_board_free(ms_acme_board *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nhttp; i++)
        http_entry_clear(&b->http[i]);
    for (size_t i = 0; i < b->nalpn; i++)
        alpn_entry_clear(&b->alpn[i]);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* Under the lock. */
static http_entry *find_http(ms_acme_board *b, const char *token, size_t len)
{
    for (size_t i = 0; i < b->nhttp; i++)
        if (b->http[i].token_len == len && memcmp(b->http[i].token, token, len) == 0)
            return &b->http[i];
    return NULL;
}

/* Under the lock. Host names compare without case (RFC 4343). */
static alpn_entry *find_alpn(ms_acme_board *b, const char *name)
{
    for (size_t i = 0; i < b->nalpn; i++)
        if (strcasecmp(b->alpn[i].name, name) == 0)
            return &b->alpn[i];
    return NULL;
}

bool ms_acme_board_put_http(ms_acme_board *b, const char *token, const char *key_authorization)
{
    size_t len = strlen(token);
    char *t = strdup(token), *ka = strdup(key_authorization);
    if (!t || !ka) {
        free(t);
        free(ka);
        return false;
    }
    pthread_mutex_lock(&b->lock);
    http_entry *e = find_http(b, token, len);
    bool ok = true;
    if (e) {
        http_entry_clear(e);
    } else if (b->nhttp < MS_ACME_BOARD_MAX) {
        e = &b->http[b->nhttp++];
    } else {
        ok = false;
    }
    if (ok)
        *e = (http_entry){ .token = t, .token_len = len, .key_authorization = ka };
    pthread_mutex_unlock(&b->lock);
    if (!ok) {
        free(t);
        free(ka);
    }
    return ok;
}

void ms_acme_board_drop_http(ms_acme_board *b, const char *token)
{
    pthread_mutex_lock(&b->lock);
    http_entry *e = find_http(b, token, strlen(token));
    if (e) {
        http_entry_clear(e);
        *e = b->http[--b->nhttp]; /* the last one moves into the gap */
        memset(&b->http[b->nhttp], 0, sizeof b->http[b->nhttp]);
    }
    pthread_mutex_unlock(&b->lock);
}

bool ms_acme_board_put_alpn(ms_acme_board *b, const char *name, X509 *cert, EVP_PKEY *key)
{
    char *n = strdup(name);
    if (!n || X509_up_ref(cert) != 1) {
        free(n);
        return false;
    }
    if (EVP_PKEY_up_ref(key) != 1) {
        free(n);
        X509_free(cert);
        return false;
    }
    pthread_mutex_lock(&b->lock);
    alpn_entry *e = find_alpn(b, name);
    bool ok = true;
    if (e) {
        alpn_entry_clear(e);
    } else if (b->nalpn < MS_ACME_BOARD_MAX) {
        e = &b->alpn[b->nalpn++];
    } else {
        ok = false;
    }
    if (ok)
        *e = (alpn_entry){ .name = n, .cert = cert, .key = key };
    pthread_mutex_unlock(&b->lock);
    if (!ok) {
        free(n);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    return ok;
}

void ms_acme_board_drop_alpn(ms_acme_board *b, const char *name)
{
    pthread_mutex_lock(&b->lock);
    alpn_entry *e = find_alpn(b, name);
    if (e) {
        alpn_entry_clear(e);
        *e = b->alpn[--b->nalpn];
        memset(&b->alpn[b->nalpn], 0, sizeof b->alpn[b->nalpn]);
    }
    pthread_mutex_unlock(&b->lock);
}

bool ms_acme_board_http(ms_acme_board *b, const char *token, size_t token_len, char *out, size_t cap)
{
    bool ok = false;
    pthread_mutex_lock(&b->lock);
    const http_entry *e = token_len ? find_http(b, token, token_len) : NULL;
    if (e) {
        size_t n = strlen(e->key_authorization);
        if (n < cap) {
            memcpy(out, e->key_authorization, n + 1);
            ok = true;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

bool ms_acme_board_use_alpn(ms_acme_board *b, const char *name, SSL *ssl)
{
    bool ok = false;
    pthread_mutex_lock(&b->lock);
    const alpn_entry *e = find_alpn(b, name);
    /* SSL_use_* take their own references: the entry may go right after */
    if (e)
        ok = SSL_use_certificate(ssl, e->cert) == 1 && SSL_use_PrivateKey(ssl, e->key) == 1;
    pthread_mutex_unlock(&b->lock);
    if (!ok)
        ERR_clear_error();
    return ok;
}
