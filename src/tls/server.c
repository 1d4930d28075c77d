/* server.c: the TLS server contexts of the TLS binds, the SNI and ALPN
 * choices, the session ticket key ring and the reload (see tls.h).
 *
 * Ownership: the server holds, per bind, one SSL_CTX reference; each
 * SSL_CTX owns its bind data (ex data, freed with the context), which holds
 * references to the certificate material it chooses from and to the shared
 * part (ticket keys, the h2 flag). An SSL holds its SSL_CTX, so a reload
 * drops only the server's reference: connections still in a handshake keep
 * everything they may call back into.
 *
 * ACME: each name of the manifest's ACME domains has one material, a
 * placeholder made here until ms_tls_server_set_acme gives the CA's, and
 * the contexts of the binds serving it are rebuilt when it changes. A
 * ClientHello offering "acme-tls/1" (tls-alpn-01) is answered from the
 * challenge board by the ClientHello callback; every other handshake only
 * pays for one look for the ALPN extension there. */
#include "tls/tls.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "acme/board.h"
#include "tls/cert.h"

/* TLS 1.2: ECDHE (forward secrecy) with AEAD ciphers, strongest first. */
#define CIPHERS_TLS12 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CIPHERS_TLS13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256:P-384"

/* ---------------------------------------------------------------- shared */
typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    uint64_t born;           /* monotonic seconds */
    bool set;
} ticket_key;

/* What every context of a server shares, and outlives them all. */
typedef struct tls_shared {
    int refs;                 /* atomic */
    pthread_mutex_t lock;     /* the ticket keys */
    ticket_key cur, prev;
    uint64_t rotation_s;
    atomic_bool h2_served;    /* set by the data plane, read by every handshake */
    _Atomic(struct ms_acme_board *) board; /* tls-alpn-01 challenges; NULL: none */
} tls_shared;

static tls_shared *shared_ref(tls_shared *sh)
{
    __atomic_add_fetch(&sh->refs, 1, __ATOMIC_RELAXED);
    return sh;
}

static void shared_unref(tls_shared *sh)
{
    if (!sh || __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    pthread_mutex_destroy(&sh->lock);
    OPENSSL_cleanse(&sh->cur, sizeof sh->cur);
    OPENSSL_cleanse(&sh->prev, sizeof sh->prev);
    free(sh);
}

static uint64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Under sh->lock. */
static bool new_ticket_key(tls_shared *sh)
{
    ticket_key k = { .born = mono_s(), .set = true };
    if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
        RAND_bytes(k.hmac, sizeof k.hmac) != 1)
        return false;
    sh->prev = sh->cur;
    sh->cur = k;
    return true;
}

/* ---------------------------------------------------------------- bind data */
typedef struct bind_data {
    tls_shared *sh;
    bool h2;                   /* the bind allows h2 */
    ms_tls_material **certs;   /* the first is the default */
    size_t ncerts;
} bind_data;

static int bind_data_index = -1;
static pthread_once_t bind_data_once = PTHREAD_ONCE_INIT;

static void bind_data_free(bind_data *bd)
{
    if (!bd)
        return;
    for (size_t i = 0; i < bd->ncerts; i++)
        ms_tls_material_unref(bd->certs[i]);
    free(bd->certs);
    shared_unref(bd->sh);
    free(bd);
}

static void bind_data_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    bind_data_free(ptr);
}

static void bind_data_init_index(void)
{
    bind_data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, bind_data_ex_free);
}

static bind_data *bind_data_of(SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), bind_data_index);
}

/* Per SSL: set (to ACME_TLS_1) when the handshake answers a tls-alpn-01
 * challenge: the certificate is the board's, the ALPN "acme-tls/1". */
static const char ACME_TLS_1[] = "acme-tls/1";
static int acme_ssl_index = -1;
static pthread_once_t acme_ssl_once = PTHREAD_ONCE_INIT;

static void acme_ssl_init_index(void)
{
    acme_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static bool answers_acme(const SSL *ssl)
{
    return acme_ssl_index >= 0 && SSL_get_ex_data(ssl, acme_ssl_index) != NULL;
}

/* ---------------------------------------------------------------- callbacks */
/* SNI: an exact name first, then a wildcard, else the default. */
static ms_tls_material *choose_cert(const bind_data *bd, const char *sni)
{
    if (sni && *sni) {
        for (size_t i = 0; i < bd->ncerts; i++)
            for (size_t j = 0; j < bd->certs[i]->nnames; j++)
                if (strcasecmp(bd->certs[i]->names[j], sni) == 0)
                    return bd->certs[i];
        for (size_t i = 0; i < bd->ncerts; i++)
            for (size_t j = 0; j < bd->certs[i]->nnames; j++)
                if (ms_tls_name_matches(bd->certs[i]->names[j], sni))
                    return bd->certs[i];
    }
    return bd->certs[0];
}

static int on_cert(SSL *ssl, void *arg)
{
    const bind_data *bd = arg;
    if (answers_acme(ssl))
        return 1; /* the challenge certificate is in place already */
    assert(bd->ncerts > 0);
    ms_tls_material *mt = choose_cert(bd, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    return SSL_use_cert_and_key(ssl, mt->leaf, mt->key, mt->chain, 1) == 1;
}

/* Is proto (length-prefixed list in, inlen bytes) offered? */
static const unsigned char *offered(const unsigned char *in, unsigned inlen, const char *proto)
{
    size_t pl = strlen(proto);
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            return NULL;
        if (l == pl && memcmp(in + i + 1, proto, pl) == 0)
            return in + i + 1;
        i += 1 + l;
    }
    return NULL;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    const bind_data *bd = arg;
    const unsigned char *p;
    if (answers_acme(ssl)) {
        /* RFC 8737 §3: acme-tls/1 and nothing else on this connection */
        if (!(p = offered(in, inlen, ACME_TLS_1)))
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        *out = p;
        *outlen = (unsigned char)(sizeof ACME_TLS_1 - 1);
        return SSL_TLSEXT_ERR_OK;
    }
    if (bd->h2 && atomic_load_explicit(&bd->sh->h2_served, memory_order_acquire) && (p = offered(in, inlen, "h2"))) {
        *out = p;
        *outlen = 2;
        return SSL_TLSEXT_ERR_OK;
    }
    if ((p = offered(in, inlen, "http/1.1"))) {
        *out = p;
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no common protocol: HTTP/1.1 without ALPN */
}

/* The host_name of a ClientHello's server_name extension (RFC 6066 §3)
 * into out; false: none, or malformed, or too long. */
static bool hello_sni(SSL *ssl, char *out, size_t cap)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 2)
        return false;
    size_t list = (size_t)p[0] << 8 | p[1];
    if (list != len - 2)
        return false;
    p += 2;
    for (size_t i = 0; i + 3 <= list;) {
        size_t n = (size_t)p[i + 1] << 8 | p[i + 2];
        if (i + 3 + n > list)
            return false;
        if (p[i] == TLSEXT_NAMETYPE_host_name) {
            if (n == 0 || n >= cap || memchr(p + i + 3, '\0', n))
                return false;
            memcpy(out, p + i + 3, n);
            out[n] = '\0';
            return true;
        }
        i += 3 + n;
    }
    return false;
}

/* tls-alpn-01 (RFC 8737), before anything else of the handshake is
 * decided: a ClientHello whose ALPN offers acme-tls/1 gets the board's
 * challenge certificate for its SNI name, or fails. Any other goes on
 * untouched (the one cost: looking for the ALPN extension). */
static int on_client_hello(SSL *ssl, int *al, void *arg)
{
    const bind_data *bd = arg;
    const unsigned char *ext;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) != 1 ||
        len < 2)
        return SSL_CLIENT_HELLO_SUCCESS;
    size_t list = (size_t)ext[0] << 8 | ext[1];
    if (list != len - 2 || !offered(ext + 2, (unsigned)list, ACME_TLS_1))
        return SSL_CLIENT_HELLO_SUCCESS;
    struct ms_acme_board *board = atomic_load_explicit(&bd->sh->board, memory_order_acquire);
    char name[256];
    if (!board || acme_ssl_index < 0 || !hello_sni(ssl, name, sizeof name) ||
        !ms_acme_board_use_alpn(board, name, ssl) || !SSL_set_ex_data(ssl, acme_ssl_index, (void *)ACME_TLS_1)) {
        ERR_clear_error();
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    SSL_set_num_tickets(ssl, 0); /* the CA's one validation: nothing to resume */
    return SSL_CLIENT_HELLO_SUCCESS;
}

static bool ticket_mac_key(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

/* Encrypt with the current key (a new one once it is rotation old);
 * decrypt with the current (1) or the previous (2: renew the ticket) one
 * while it is at most two periods old; anything else: a full handshake. */
static int on_ticket(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    bind_data *bd = bind_data_of(ssl);
    if (!bd)
        return -1;
    tls_shared *sh = bd->sh;
    ticket_key k;
    int rc = 0;
    uint64_t now = mono_s();
    pthread_mutex_lock(&sh->lock);
    if (enc) {
        if (!sh->cur.set || now - sh->cur.born >= sh->rotation_s) {
            if (!new_ticket_key(sh)) {
                pthread_mutex_unlock(&sh->lock);
                return -1;
            }
        }
        k = sh->cur;
        rc = 1;
    } else if (sh->cur.set && memcmp(name, sh->cur.name, 16) == 0) {
        k = sh->cur;
        rc = 1;
    } else if (sh->prev.set && memcmp(name, sh->prev.name, 16) == 0 && now - sh->prev.born < 2 * sh->rotation_s) {
        k = sh->prev;
        rc = 2;
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc == 0)
        return 0;
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
            !ticket_mac_key(hctx, k.hmac))
            rc = -1;
    } else if (!ticket_mac_key(hctx, k.hmac) || EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* ---------------------------------------------------------------- contexts */
static SSL_CTX *make_ctx(const ms_global *g, tls_shared *sh, bool h2, ms_tls_material **certs, size_t ncerts)
{
    pthread_once(&bind_data_once, bind_data_init_index);
    pthread_once(&acme_ssl_once, acme_ssl_init_index);
    if (bind_data_index < 0 || acme_ssl_index < 0 || ncerts == 0)
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    bind_data *bd = calloc(1, sizeof *bd);
    ms_tls_material **refs = calloc(ncerts, sizeof *refs);
    if (!ctx || !bd || !refs) {
        SSL_CTX_free(ctx);
        free(bd);
        free(refs);
        return NULL;
    }
    bd->sh = shared_ref(sh);
    bd->h2 = h2;
    bd->certs = refs;
    for (size_t i = 0; i < ncerts; i++)
        bd->certs[bd->ncerts++] = ms_tls_material_ref(certs[i]);
    if (!SSL_CTX_set_ex_data(ctx, bind_data_index, bd)) {
        bind_data_free(bd);
        SSL_CTX_free(ctx);
        return NULL;
    }
    uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (!g->tls_session_tickets)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
              SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
              SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) == 1 && SSL_CTX_set_ciphersuites(ctx, CIPHERS_TLS13) == 1 &&
              SSL_CTX_set1_groups_list(ctx, GROUPS) == 1 &&
              SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mothership", 10) == 1;
    if (ok && g->tls_session_tickets) {
        ok = SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket) == 1;
        SSL_CTX_set_num_tickets(ctx, 1);
        SSL_CTX_set_timeout(ctx, (long)sh->rotation_s);
    } else if (ok) {
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (!ok) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, bd);
    SSL_CTX_set_cert_cb(ctx, on_cert, bd);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, bd);
    return ctx;
}

/* ---------------------------------------------------------------- server */
typedef struct bind_tls {
    SSL_CTX *ctx;             /* under the server's lock; NULL: a plain bind */
    ms_tls_material *own;     /* tls = { cert, key } or self-signed; NULL: the global certificates */
    char *self_path;          /* self-signed */
    char fingerprint[MS_TLS_FINGERPRINT_LEN];
    bool generated;
} bind_tls;

struct ms_tls_server {
    const ms_manifest *m;
    pthread_mutex_t lock;     /* binds[*].ctx */
    bind_tls *binds;
    size_t nbinds;
    ms_tls_material **global; /* one per m->global.tls_certs */
    size_t nglobal;
    ms_tls_material **acme;   /* one per m->global.acme.domains: a placeholder, then the CA's */
    size_t nacme;
    ms_tls_material **scratch; /* ctx_for's list: nglobal + nacme + 1 entries */
    tls_shared *sh;
};

/* "[mothership.tls]", "[[mothership.tls.certs]] #2", "bind \"admin\": tls" */
static void cert_label(const ms_manifest *m, size_t global_idx, const ms_bind *b, char *out, size_t cap)
{
    if (b)
        snprintf(out, cap, "bind \"%s\": tls", b->name);
    else if (global_idx == 0 && m->global.tls_cert)
        snprintf(out, cap, "[mothership.tls]");
    else
        snprintf(out, cap, "[[mothership.tls.certs]] #%zu", global_idx + (m->global.tls_cert ? 0 : 1));
}

static ms_tls_material *load_one(const ms_tls_cert *tc, char *why, size_t why_len)
{
    ms_tls_at at;
    return ms_tls_material_load(tc->cert, tc->key, &tc->hosts, time(NULL), &at, why, why_len);
}

/* The index of an ACME name in s->acme; -1: not one. */
static long acme_index(const ms_tls_server *s, const char *name)
{
    for (size_t k = 0; k < s->nacme; k++)
        if (strcasecmp(s->m->global.acme.domains.items[k], name) == 0)
            return (long)k;
    return -1;
}

/* The certificates bind i chooses from, the default first (tls.h): its
 * tls.acme names only; else its own; else the global ones, then every
 * ACME name. Into list (nglobal + nacme + 1 entries); returns how many. */
static size_t certs_of(const ms_tls_server *s, size_t i, ms_tls_material **list)
{
    const ms_bind *b = &s->m->global.binds[i];
    size_t n = 0;
    if (b->acme.len > 0) {
        for (size_t j = 0; j < b->acme.len; j++) {
            long k = acme_index(s, b->acme.items[j]);
            if (k >= 0)
                list[n++] = s->acme[k];
        }
        return n;
    }
    if (s->binds[i].own) {
        list[n++] = s->binds[i].own;
        return n;
    }
    for (size_t k = 0; k < s->nglobal; k++)
        list[n++] = s->global[k];
    for (size_t k = 0; k < s->nacme; k++)
        list[n++] = s->acme[k];
    return n;
}

/* Does bind i serve ACME name k (as certs_of chooses)? */
static bool serves_acme(const ms_tls_server *s, size_t i, size_t k)
{
    const ms_bind *b = &s->m->global.binds[i];
    if (!b->tls)
        return false;
    if (b->acme.len == 0)
        return !s->binds[i].own;
    for (size_t j = 0; j < b->acme.len; j++)
        if (strcasecmp(b->acme.items[j], s->m->global.acme.domains.items[k]) == 0)
            return true;
    return false;
}

/* A context for bind i from the current material; NULL: out of memory (or
 * no certificate at all). Control loop (s->scratch). */
static SSL_CTX *ctx_for(ms_tls_server *s, size_t i)
{
    const ms_bind *b = &s->m->global.binds[i];
    size_t n = certs_of(s, i, s->scratch);
    return make_ctx(&s->m->global, s->sh, b->h2, s->scratch, n);
}

ms_tls_server *ms_tls_server_new(const ms_manifest *m, char *why, size_t why_len)
{
    const ms_global *g = &m->global;
    ms_tls_server *s = calloc(1, sizeof *s);
    tls_shared *sh = calloc(1, sizeof *sh);
    if (!s || !sh) {
        free(s);
        free(sh);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    s->m = m;
    pthread_mutex_init(&s->lock, NULL);
    sh->refs = 1;
    pthread_mutex_init(&sh->lock, NULL);
    sh->rotation_s = g->tls_ticket_rotation_ms / 1000 ? g->tls_ticket_rotation_ms / 1000 : 1;
    s->sh = sh;
    s->nbinds = g->nbinds;
    s->binds = calloc(g->nbinds ? g->nbinds : 1, sizeof *s->binds);
    s->global = calloc(g->ntls_certs ? g->ntls_certs : 1, sizeof *s->global);
    if (!s->binds || !s->global) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    size_t nacme = g->acme.enabled ? g->acme.domains.len : 0;
    s->acme = calloc(nacme ? nacme : 1, sizeof *s->acme);
    s->scratch = calloc(g->ntls_certs + nacme + 1, sizeof *s->scratch);
    if (!s->acme || !s->scratch) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    for (size_t k = 0; k < nacme; k++) {
        s->acme[k] = ms_tls_placeholder(g->acme.domains.items[k], time(NULL));
        if (!s->acme[k]) {
            snprintf(why, why_len, "ACME name \"%s\": cannot make its placeholder certificate (OpenSSL failed "
                     "or out of memory)", g->acme.domains.items[k]);
            goto fail;
        }
        s->nacme++;
    }
    bool any_global = false;
    for (size_t i = 0; i < g->nbinds; i++)
        any_global |= g->binds[i].tls && !g->binds[i].self_signed && !g->binds[i].cert && g->binds[i].acme.len == 0;
    char reason[700], label[96];
    /* the global certificates only when a bind uses them */
    for (size_t i = 0; any_global && i < g->ntls_certs; i++) {
        s->global[i] = load_one(&g->tls_certs[i], reason, sizeof reason);
        if (!s->global[i]) {
            cert_label(m, i, NULL, label, sizeof label);
            snprintf(why, why_len, "%s: %s", label, reason);
            goto fail;
        }
        s->nglobal++;
    }
    char *state = NULL;
    for (size_t i = 0; i < g->nbinds; i++) {
        const ms_bind *b = &g->binds[i];
        bind_tls *bt = &s->binds[i];
        if (!b->tls)
            continue;
        if (b->cert) {
            bt->own = load_one(b->cert, reason, sizeof reason);
            if (!bt->own) {
                cert_label(m, 0, b, label, sizeof label);
                snprintf(why, why_len, "%s: %s", label, reason);
                goto fail_state;
            }
        } else if (b->self_signed) {
            if (!state && !(state = ms_tls_state_dir(m))) {
                snprintf(why, why_len, "out of memory");
                goto fail_state;
            }
            char path[4200];
            bt->own = ms_tls_self_signed(state, b->name, b->addr.kind == MS_ADDR_TCP ? b->addr.host : NULL,
                                         time(NULL), &bt->generated, path, sizeof path, reason, sizeof reason);
            if (!bt->own) {
                snprintf(why, why_len, "bind \"%s\": tls = \"self-signed\": %s", b->name, reason);
                goto fail_state;
            }
            bt->self_path = strdup(path);
            if (!bt->self_path || !ms_tls_fingerprint(bt->own->leaf, bt->fingerprint)) {
                snprintf(why, why_len, "out of memory");
                goto fail_state;
            }
        } else if (b->acme.len > 0 && certs_of(s, i, s->scratch) == 0) {
            snprintf(why, why_len, "bind \"%s\": its tls.acme names need [mothership.acme]", b->name);
            goto fail_state;
        } else if (s->nglobal + s->nacme == 0) {
            snprintf(why, why_len, "bind \"%s\" terminates TLS but there is no certificate", b->name);
            goto fail_state;
        }
        bt->ctx = ctx_for(s, i);
        if (!bt->ctx) {
            snprintf(why, why_len, "bind \"%s\": cannot set up TLS (OpenSSL failed or out of memory)", b->name);
            goto fail_state;
        }
    }
    free(state);
    return s;
fail_state:
    free(state);
fail:
    ms_tls_server_free(s);
    return NULL;
}

SSL *ms_tls_server_ssl(ms_tls_server *s, size_t bind_idx)
{
    if (bind_idx >= s->nbinds)
        return NULL;
    pthread_mutex_lock(&s->lock);
    SSL_CTX *ctx = s->binds[bind_idx].ctx;
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&s->lock);
    if (!ctx)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    return ssl;
}

void ms_tls_server_set_h2(ms_tls_server *s, bool served)
{
    atomic_store_explicit(&s->sh->h2_served, served, memory_order_release);
}

void ms_tls_server_rotate_tickets(ms_tls_server *s)
{
    pthread_mutex_lock(&s->sh->lock);
    (void)new_ticket_key(s->sh); /* a failure keeps the current key: still safe */
    pthread_mutex_unlock(&s->sh->lock);
}

static void notef(ms_tls_note_fn *note, void *arg, bool error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void notef(ms_tls_note_fn *note, void *arg, bool error, const char *fmt, ...)
{
    if (!note)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    note(arg, error, line);
}

bool ms_tls_server_reload(ms_tls_server *s, ms_tls_note_fn *note, void *arg)
{
    const ms_manifest *m = s->m;
    const ms_global *g = &m->global;
    bool all = true;
    size_t loaded = 0;
    char reason[700], label[96];
    for (size_t i = 0; i < s->nglobal; i++) {
        ms_tls_material *mt = load_one(&g->tls_certs[i], reason, sizeof reason);
        if (!mt) {
            cert_label(m, i, NULL, label, sizeof label);
            notef(note, arg, true, "%s: %s: keeping the certificate loaded before", label, reason);
            all = false;
            continue;
        }
        ms_tls_material_unref(s->global[i]);
        s->global[i] = mt;
        loaded++;
    }
    for (size_t i = 0; i < s->nbinds; i++) {
        const ms_bind *b = &g->binds[i];
        if (!b->cert || !s->binds[i].own)
            continue;
        ms_tls_material *mt = load_one(b->cert, reason, sizeof reason);
        if (!mt) {
            cert_label(m, 0, b, label, sizeof label);
            notef(note, arg, true, "%s: %s: keeping the certificate loaded before", label, reason);
            all = false;
            continue;
        }
        ms_tls_material_unref(s->binds[i].own);
        s->binds[i].own = mt;
        loaded++;
    }
    size_t swapped = 0;
    for (size_t i = 0; i < s->nbinds; i++) {
        if (!s->binds[i].ctx)
            continue;
        SSL_CTX *nctx = ctx_for(s, i);
        if (!nctx) {
            notef(note, arg, true, "bind \"%s\": cannot set up TLS (OpenSSL failed or out of memory): "
                  "keeping the certificates loaded before", g->binds[i].name);
            all = false;
            continue;
        }
        pthread_mutex_lock(&s->lock);
        SSL_CTX *old = s->binds[i].ctx;
        s->binds[i].ctx = nctx;
        pthread_mutex_unlock(&s->lock);
        SSL_CTX_free(old);
        swapped++;
    }
    notef(note, arg, !all, "TLS certificates reloaded: %zu file pair%s read again, %zu bind%s swapped for new "
          "handshakes%s", loaded, loaded == 1 ? "" : "s", swapped, swapped == 1 ? "" : "s",
          all ? "" : " (with the problems above)");
    return all;
}

bool ms_tls_server_set_acme(ms_tls_server *s, const char *name, struct ms_tls_material *mt)
{
    long k = acme_index(s, name);
    if (k < 0 || !mt)
        return false;
    SSL_CTX **nctx = calloc(s->nbinds ? s->nbinds : 1, sizeof *nctx);
    if (!nctx)
        return false;
    ms_tls_material *old = s->acme[k];
    s->acme[k] = ms_tls_material_ref(mt);
    /* every new context first: all binds swap, or none */
    bool ok = true;
    for (size_t i = 0; ok && i < s->nbinds; i++) {
        if (!s->binds[i].ctx)
            continue;
        if (serves_acme(s, i, (size_t)k))
            ok = (nctx[i] = ctx_for(s, i)) != NULL;
    }
    if (!ok) {
        for (size_t i = 0; i < s->nbinds; i++)
            SSL_CTX_free(nctx[i]);
        free(nctx);
        s->acme[k] = old;
        ms_tls_material_unref(mt);
        return false;
    }
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nbinds; i++) {
        if (!nctx[i])
            continue;
        SSL_CTX *prev = s->binds[i].ctx;
        s->binds[i].ctx = nctx[i];
        nctx[i] = prev;
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < s->nbinds; i++)
        SSL_CTX_free(nctx[i]); /* SSLs made from them hold their own references */
    free(nctx);
    ms_tls_material_unref(old);
    return true;
}

void ms_tls_server_set_acme_board(ms_tls_server *s, struct ms_acme_board *board)
{
    atomic_store_explicit(&s->sh->board, board, memory_order_release);
}

bool ms_tls_server_self_signed_info(const ms_tls_server *s, size_t bind_idx, const char **cert_path,
                                    const char **fingerprint, bool *generated)
{
    if (bind_idx >= s->nbinds || !s->binds[bind_idx].self_path)
        return false;
    *cert_path = s->binds[bind_idx].self_path;
    *fingerprint = s->binds[bind_idx].fingerprint;
    *generated = s->binds[bind_idx].generated;
    return true;
}

void ms_tls_server_free(ms_tls_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->binds && i < s->nbinds; i++) {
        SSL_CTX_free(s->binds[i].ctx);
        ms_tls_material_unref(s->binds[i].own);
        free(s->binds[i].self_path);
    }
    free(s->binds);
    for (size_t i = 0; s->global && i < s->nglobal; i++)
        ms_tls_material_unref(s->global[i]);
    free(s->global);
    for (size_t k = 0; s->acme && k < s->nacme; k++)
        ms_tls_material_unref(s->acme[k]);
    free(s->acme);
    free(s->scratch);
    shared_unref(s->sh);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
