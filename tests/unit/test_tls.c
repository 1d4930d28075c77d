/* test_tls.c: unit tests of src/tls without sockets: certificate material
 * checks (key match, validity, SAN coverage, chain order, PEM), and the
 * server's contexts driven by an in-memory client SSL over a BIO pair: SNI
 * choice, ALPN choice, protocol versions, session ticket resumption across
 * SSLs, ticket key rotation, reload (a good file swapped in, a bad one
 * kept out, resumption kept), and self-signed material. Certificates are
 * made here with OpenSSL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "manifest/manifest.h"
#include "tls/cert.h"
#include "tls/tls.h"
#include "cert_helpers.h"

#define DAY (24 * 3600L)

static char tmpdir[256];

/* ---------------------------------------------------------------- making certificates */
static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static char *path_of(const char *name)
{
    static char buf[8][512];
    static int at;
    char *p = buf[at++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_certs(const char *name, X509 *a, X509 *b)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    PEM_write_X509(f, a);
    if (b)
        PEM_write_X509(f, b);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A self-signed pair on disk: name.crt, name.key. */
static void make_pair(const char *name, const char *cn, const char *san, long from, long to)
{
    char c[128], k[128];
    EVP_PKEY *key = new_key();
    X509 *x = make_cert(cn, san, from, to, key, NULL, NULL, false);
    snprintf(c, sizeof c, "%s.crt", name);
    snprintf(k, sizeof k, "%s.key", name);
    write_certs(c, x, NULL);
    write_key(k, key);
    X509_free(x);
    EVP_PKEY_free(key);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ms-test-tls-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- material */
static ms_tls_material *load_pair(const char *crt, const char *key, const char *host, ms_tls_at *at, char *why,
                                  size_t why_len)
{
    char *h[1] = { (char *)host };
    ms_strlist hosts = { h, host ? 1 : 0 };
    return ms_tls_material_load(path_of(crt), path_of(key), &hosts, time(NULL), at, why, why_len);
}

static void test_material_key_match(void **state)
{
    (void)state;
    make_pair("good", "good.example", "DNS:good.example", -DAY, DAY);
    make_pair("other", "other.example", "DNS:other.example", -DAY, DAY);
    ms_tls_at at;
    char why[700];
    ms_tls_material *mt = load_pair("good.crt", "good.key", NULL, &at, why, sizeof why);
    assert_non_null(mt);
    assert_int_equal(mt->nnames, 1);
    assert_string_equal(mt->names[0], "good.example");
    ms_tls_material_unref(mt);
    assert_null(load_pair("good.crt", "other.key", NULL, &at, why, sizeof why));
    assert_int_equal(at, MS_TLS_AT_KEY);
    assert_non_null(strstr(why, "does not match cert"));
}

static void test_material_validity(void **state)
{
    (void)state;
    make_pair("old", "old.example", "DNS:old.example", -10 * DAY, -DAY);
    make_pair("future", "future.example", "DNS:future.example", DAY, 10 * DAY);
    ms_tls_at at;
    char why[700];
    assert_null(load_pair("old.crt", "old.key", NULL, &at, why, sizeof why));
    assert_int_equal(at, MS_TLS_AT_CERT);
    assert_non_null(strstr(why, "expired on 20"));
    assert_non_null(strstr(why, " UTC"));
    assert_null(load_pair("future.crt", "future.key", NULL, &at, why, sizeof why));
    assert_non_null(strstr(why, "is not valid before 20"));
}

static void test_material_pem(void **state)
{
    (void)state;
    make_pair("p", "p.example", "DNS:p.example", -DAY, DAY);
    write_text("garbage.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    write_text("garbage.key", "hello\n");
    ms_tls_at at;
    char why[700];
    assert_null(load_pair("garbage.crt", "p.key", NULL, &at, why, sizeof why));
    assert_int_equal(at, MS_TLS_AT_CERT);
    assert_non_null(strstr(why, "holds no PEM certificate"));
    assert_null(load_pair("p.crt", "garbage.key", NULL, &at, why, sizeof why));
    assert_int_equal(at, MS_TLS_AT_KEY);
    assert_non_null(strstr(why, "holds no PEM private key"));
    assert_null(load_pair("missing.crt", "p.key", NULL, &at, why, sizeof why));
    assert_non_null(strstr(why, "cannot be read"));
}

static void test_material_san_coverage(void **state)
{
    (void)state;
    make_pair("san", "a.example", "DNS:a.example,DNS:*.b.example,IP:10.0.0.1", -DAY, DAY);
    ms_tls_at at;
    char why[700];
    const char *ok[] = { "a.example", "x.b.example", "10.0.0.1" };
    for (size_t i = 0; i < 3; i++) {
        ms_tls_material *mt = load_pair("san.crt", "san.key", ok[i], &at, why, sizeof why);
        assert_non_null(mt);
        assert_int_equal(mt->nnames, 1); /* hosts given: chosen by them */
        ms_tls_material_unref(mt);
    }
    const char *bad[] = { "c.example", "x.y.b.example", "b.example", "10.0.0.2" };
    for (size_t i = 0; i < 4; i++) {
        assert_null(load_pair("san.crt", "san.key", bad[i], &at, why, sizeof why));
        assert_int_equal(at, MS_TLS_AT_HOSTS);
        assert_non_null(strstr(why, "does not cover host"));
    }
    assert_true(ms_tls_name_matches("*.b.example", "X.B.example"));
    assert_false(ms_tls_name_matches("*.b.example", "b.example"));
    assert_false(ms_tls_name_matches("*.b.example", "x.y.b.example"));
    assert_false(ms_tls_name_matches("a.example", "b.example"));
}

static void test_material_chain_order(void **state)
{
    (void)state;
    EVP_PKEY *ck = new_key(), *lk = new_key();
    X509 *ca = make_cert("Test CA", NULL, -DAY, 10 * DAY, ck, NULL, NULL, true);
    X509 *leaf = make_cert("leaf.example", "DNS:leaf.example", -DAY, DAY, lk, ca, ck, false);
    write_certs("chain-good.crt", leaf, ca);
    write_certs("chain-bad.crt", ca, leaf);
    write_key("leaf.key", lk);
    write_key("ca.key", ck);
    ms_tls_at at;
    char why[700];
    ms_tls_material *mt = load_pair("chain-good.crt", "leaf.key", "leaf.example", &at, why, sizeof why);
    assert_non_null(mt);
    assert_int_equal(sk_X509_num(mt->chain), 1);
    ms_tls_material_unref(mt);
    assert_null(load_pair("chain-bad.crt", "ca.key", NULL, &at, why, sizeof why));
    assert_non_null(strstr(why, "has its chain out of order"));
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(lk);
}

/* ---------------------------------------------------------------- server */
static ms_manifest *manifest(const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ms_diags d;
    ms_diags_init(&d, "t.toml");
    ms_manifest *m = ms_manifest_load_buffer(text, strlen(text), "t.toml", tmpdir, &d);
    if (!m)
        for (size_t i = 0; i < d.len; i++)
            fprintf(stderr, "  %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

typedef struct client_opts {
    const char *sni;
    const char *alpn;          /* wire format */
    size_t alpn_len;
    int max_version;           /* 0: any */
    SSL_SESSION *session;      /* resume */
} client_opts;

typedef struct result {
    bool ok;
    char cn[128];
    char alpn[16];
    bool resumed;
    SSL_SESSION *session;      /* the client's, after the handshake (owned by the caller) */
    int version;
} result;

/* One handshake between a client SSL and the server's SSL over a BIO
 * pair; then one byte server -> client so a TLS 1.3 client reads its
 * tickets. */
static result handshake(ms_tls_server *s, size_t bind, const client_opts *o)
{
    result r = { 0 };
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
    SSL_CTX_set_security_level(cctx, 0);
    SSL_CTX_set_cipher_list(cctx, "ALL:@SECLEVEL=0");
    if (o->max_version)
        SSL_CTX_set_max_proto_version(cctx, o->max_version);
    SSL *c = SSL_new(cctx);
    SSL *sv = ms_tls_server_ssl(s, bind);
    assert_non_null(c);
    assert_non_null(sv);
    BIO *b1, *b2;
    assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    SSL_set_bio(c, b1, b1);
    SSL_set_bio(sv, b2, b2);
    SSL_set_connect_state(c);
    SSL_set_accept_state(sv);
    if (o->sni)
        SSL_set_tlsext_host_name(c, o->sni);
    if (o->alpn)
        SSL_set_alpn_protos(c, (const unsigned char *)o->alpn, (unsigned)o->alpn_len);
    if (o->session)
        SSL_set_session(c, o->session);
    bool cdone = false, sdone = false, failed = false;
    for (int i = 0; i < 100 && !(cdone && sdone) && !failed; i++) {
        if (!cdone) {
            int rc = SSL_do_handshake(c);
            if (rc == 1)
                cdone = true;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
        if (!sdone) {
            int rc = SSL_do_handshake(sv);
            if (rc == 1)
                sdone = true;
            else if (SSL_get_error(sv, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
    }
    ERR_clear_error();
    if (cdone && sdone && !failed) {
        r.ok = true;
        X509 *peer = SSL_get1_peer_certificate(c);
        assert_non_null(peer);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, r.cn, sizeof r.cn);
        X509_free(peer);
        const unsigned char *p;
        unsigned len;
        SSL_get0_alpn_selected(c, &p, &len);
        if (len && len < sizeof r.alpn)
            memcpy(r.alpn, p, len);
        r.resumed = SSL_session_reused(c);
        r.version = SSL_version(c);
        assert_int_equal(SSL_write(sv, "x", 1), 1);
        char b;
        assert_int_equal(SSL_read(c, &b, 1), 1);
        r.session = SSL_get1_session(c);
        SSL_shutdown(c); /* a session freed without close_notify is not resumable */
    }
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    return r;
}

static const char *const SNI_MANIFEST =
    "[mothership]\nstate_dir = \"state\"\n"
    "[mothership.bind]\n"
    "https = \"127.0.0.1:1\"\n"
    "noh2 = { address = \"127.0.0.1:2\", tls = true, h2 = false }\n"
    "plain = \"127.0.0.1:3\"\n"
    "own = { address = \"127.0.0.1:4\", tls = { cert = \"own.crt\", key = \"own.key\" } }\n"
    "[mothership.tls]\ncert = \"def.crt\"\nkey = \"def.key\"\n"
    "[[mothership.tls.certs]]\ncert = \"api.crt\"\nkey = \"api.key\"\nhosts = [\"api.example\"]\n"
    "[[mothership.tls.certs]]\ncert = \"wild.crt\"\nkey = \"wild.key\"\n";

static ms_tls_server *sni_server(ms_manifest **mo)
{
    make_pair("def", "default.example", "DNS:default.example", -DAY, DAY);
    make_pair("api", "api.example", "DNS:api.example,DNS:other.example", -DAY, DAY);
    make_pair("wild", "wild.example", "DNS:*.wild.example", -DAY, DAY);
    make_pair("own", "own.example", "DNS:own.example", -DAY, DAY);
    ms_manifest *m = manifest("%s", SNI_MANIFEST);
    char why[512] = "";
    ms_tls_server *s = ms_tls_server_new(m, why, sizeof why);
    if (!s)
        fail_msg("ms_tls_server_new: %s", why);
    *mo = m;
    return s;
}

static void test_server_sni(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    struct { const char *sni, *cn; } cases[] = {
        { NULL, "default.example" },           /* no SNI: the first */
        { "api.example", "api.example" },      /* hosts */
        { "API.Example", "api.example" },
        { "other.example", "default.example" }, /* not in its hosts: hosts win over the SAN */
        { "x.wild.example", "wild.example" },  /* no hosts: its own names, a wildcard */
        { "x.y.wild.example", "default.example" },
        { "unknown.example", "default.example" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        client_opts o = { .sni = cases[i].sni };
        result r = handshake(s, 0, &o);
        assert_true(r.ok);
        assert_string_equal(r.cn, cases[i].cn);
        SSL_SESSION_free(r.session);
    }
    /* a bind with its own certificate serves only it */
    client_opts o = { .sni = "api.example" };
    result r = handshake(s, 3, &o);
    assert_true(r.ok);
    assert_string_equal(r.cn, "own.example");
    SSL_SESSION_free(r.session);
    /* a plain bind has no SSL */
    assert_null(ms_tls_server_ssl(s, 2));
    assert_null(ms_tls_server_ssl(s, 99));
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

static void test_server_alpn(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    static const char both[] = "\x02h2\x08http/1.1", h2only[] = "\x02h2", other[] = "\x03foo";
    client_opts o = { .alpn = both, .alpn_len = sizeof both - 1 };
    result r = handshake(s, 0, &o);
    assert_true(r.ok);
    assert_string_equal(r.alpn, "http/1.1"); /* HTTP/2 not served yet */
    SSL_SESSION_free(r.session);
    ms_tls_server_set_h2(s, true);
    r = handshake(s, 0, &o);
    assert_string_equal(r.alpn, "h2");
    SSL_SESSION_free(r.session);
    r = handshake(s, 1, &o);                 /* h2 = false on this bind */
    assert_string_equal(r.alpn, "http/1.1");
    SSL_SESSION_free(r.session);
    o = (client_opts){ .alpn = h2only, .alpn_len = sizeof h2only - 1 };
    r = handshake(s, 1, &o);                 /* no common protocol: no ALPN, still served */
    assert_true(r.ok);
    assert_string_equal(r.alpn, "");
    SSL_SESSION_free(r.session);
    o = (client_opts){ .alpn = other, .alpn_len = sizeof other - 1 };
    r = handshake(s, 0, &o);
    assert_true(r.ok);
    assert_string_equal(r.alpn, "");
    SSL_SESSION_free(r.session);
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

static void test_server_versions(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    client_opts o = { .max_version = TLS1_1_VERSION };
    assert_false(handshake(s, 0, &o).ok);
    o.max_version = TLS1_VERSION;
    assert_false(handshake(s, 0, &o).ok);
    o.max_version = TLS1_2_VERSION;
    result r = handshake(s, 0, &o);
    assert_true(r.ok);
    assert_int_equal(r.version, TLS1_2_VERSION);
    SSL_SESSION_free(r.session);
    o.max_version = 0;
    r = handshake(s, 0, &o);
    assert_true(r.ok);
    assert_int_equal(r.version, TLS1_3_VERSION);
    SSL_SESSION_free(r.session);
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

/* A session resumes (or not) on a second SSL of the server. */
static bool resumes(ms_tls_server *s, SSL_SESSION *sess, int version, SSL_SESSION **next)
{
    client_opts o = { .max_version = version, .session = sess };
    result r = handshake(s, 0, &o);
    assert_true(r.ok);
    if (next)
        *next = r.session;
    else
        SSL_SESSION_free(r.session);
    return r.resumed;
}

static void test_server_tickets(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    int versions[] = { TLS1_2_VERSION, TLS1_3_VERSION };
    for (size_t v = 0; v < 2; v++) {
        client_opts o = { .max_version = versions[v] };
        result first = handshake(s, 0, &o);
        assert_true(first.ok);
        assert_false(first.resumed);
        assert_non_null(first.session);
        assert_true(SSL_SESSION_is_resumable(first.session));
        SSL_SESSION *again = NULL;
        assert_true(resumes(s, first.session, versions[v], &again));
        /* one rotation: the old key still decrypts (and the ticket is renewed) */
        ms_tls_server_rotate_tickets(s);
        assert_true(resumes(s, first.session, versions[v], NULL));
        /* two: the key is gone, a full handshake */
        ms_tls_server_rotate_tickets(s);
        assert_false(resumes(s, first.session, versions[v], NULL));
        SSL_SESSION_free(again);
        SSL_SESSION_free(first.session);
    }
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

typedef struct notes {
    int errors, infos;
    char first[1024], last[1024];
} notes;

static void on_note(void *arg, bool error, const char *text)
{
    notes *n = arg;
    if (n->errors + n->infos == 0)
        snprintf(n->first, sizeof n->first, "%s", text);
    error ? n->errors++ : n->infos++;
    snprintf(n->last, sizeof n->last, "%s", text);
}

static void test_server_reload(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    client_opts o = { 0 };
    result before = handshake(s, 0, &o);
    assert_string_equal(before.cn, "default.example");
    /* an SSL made before the reload keeps its context */
    SSL *old = ms_tls_server_ssl(s, 0);
    assert_non_null(old);

    /* a new certificate in the same files: swapped for new handshakes */
    make_pair("def", "renewed.example", "DNS:renewed.example", -DAY, DAY);
    notes n = { 0 };
    assert_true(ms_tls_server_reload(s, on_note, &n));
    assert_int_equal(n.errors, 0);
    assert_non_null(strstr(n.last, "TLS certificates reloaded"));
    result after = handshake(s, 0, &o);
    assert_string_equal(after.cn, "renewed.example");
    SSL_SESSION_free(after.session);
    /* tickets survive the reload */
    assert_true(resumes(s, before.session, 0, NULL));

    /* a bad file (an expired certificate, then a key that does not match):
     * the one loaded before stays */
    make_pair("def", "expired.example", "DNS:expired.example", -10 * DAY, -DAY);
    n = (notes){ 0 };
    assert_false(ms_tls_server_reload(s, on_note, &n));
    assert_int_equal(n.errors, 2);
    assert_non_null(strstr(n.first, "[mothership.tls]: cert \""));
    assert_non_null(strstr(n.first, "expired on"));
    assert_non_null(strstr(n.first, "keeping the certificate loaded before"));
    after = handshake(s, 0, &o);
    assert_string_equal(after.cn, "renewed.example");
    SSL_SESSION_free(after.session);
    make_pair("def", "mismatch.example", "DNS:mismatch.example", -DAY, DAY);
    make_pair("other2", "x.example", "DNS:x.example", -DAY, DAY);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path_of("other2.key"), path_of("def.key"));
    assert_int_equal(system(cmd), 0);
    n = (notes){ 0 };
    assert_false(ms_tls_server_reload(s, on_note, &n));
    assert_non_null(strstr(n.first, "does not match cert"));
    after = handshake(s, 0, &o);
    assert_string_equal(after.cn, "renewed.example");
    SSL_SESSION_free(after.session);

    SSL_free(old);
    SSL_SESSION_free(before.session);
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

typedef struct racer {
    ms_tls_server *s;
    int made;
} racer;

/* SSLs made from a worker thread while the control loop reloads; each
 * handshake's certificate callback runs on the context it was made from. */
static void *race(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < 400; i++) {
        SSL *ssl = ms_tls_server_ssl(r->s, (size_t)(i % 2));
        if (ssl)
            r->made++;
        SSL_free(ssl);
        if (i % 50 == 0) {
            client_opts o = { .sni = "api.example" };
            result res = handshake(r->s, 0, &o);
            if (res.ok)
                r->made++;
            SSL_SESSION_free(res.session);
        }
    }
    return NULL;
}

static void test_server_reload_concurrent(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = sni_server(&m);
    racer r[2] = { { s, 0 }, { s, 0 } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 20; i++)
        assert_true(ms_tls_server_reload(s, NULL, NULL));
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(r[0].made, 408);
    assert_int_equal(r[1].made, 408);
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

static void test_server_bad_cert_at_start(void **state)
{
    (void)state;
    make_pair("def", "default.example", "DNS:default.example", -10 * DAY, -DAY);
    make_pair("api", "api.example", "DNS:api.example", -DAY, DAY);
    make_pair("wild", "wild.example", "DNS:*.wild.example", -DAY, DAY);
    make_pair("own", "own.example", "DNS:own.example", -DAY, DAY);
    ms_manifest *m = manifest("%s", SNI_MANIFEST);
    char why[512] = "";
    assert_null(ms_tls_server_new(m, why, sizeof why));
    assert_non_null(strstr(why, "[mothership.tls]: cert"));
    assert_non_null(strstr(why, "expired on"));
    ms_manifest_free(m);
}

static void test_self_signed(void **state)
{
    (void)state;
    ms_manifest *m = manifest("[mothership]\nstate_dir = \"ss-state\"\n"
                              "[mothership.bind]\ndev = { address = \"127.0.0.2:8443\", tls = \"self-signed\" }\n");
    assert_true(m->global.binds[0].self_signed);
    char why[512] = "";
    ms_tls_server *s = ms_tls_server_new(m, why, sizeof why);
    if (!s)
        fail_msg("%s", why);
    const char *path, *fp;
    bool generated;
    assert_false(ms_tls_server_self_signed_info(s, 1, &path, &fp, &generated));
    assert_true(ms_tls_server_self_signed_info(s, 0, &path, &fp, &generated));
    assert_true(generated);
    assert_int_equal(strlen(fp), 95);
    char fp1[MS_TLS_FINGERPRINT_LEN];
    snprintf(fp1, sizeof fp1, "%s", fp);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(path_of("ss-state/self-signed-dev.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(path_of("ss-state"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* served, ECDSA P-256, with the names of a development certificate */
    client_opts o = { .sni = "localhost" };
    result r = handshake(s, 0, &o);
    assert_true(r.ok);
    SSL_SESSION_free(r.session);
    ms_tls_at at;
    char *names[] = { "localhost", "127.0.0.1", "::1", "127.0.0.2" };
    ms_strlist hosts = { names, 4 };
    ms_tls_material *mt = ms_tls_material_load(path, path_of("ss-state/self-signed-dev.key"), &hosts, time(NULL),
                                               &at, why, sizeof why);
    if (!mt)
        fail_msg("%s", why);
    assert_int_equal(EVP_PKEY_get_base_id(mt->key), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(mt->key), 256);
    ms_tls_material_unref(mt);
    ms_tls_server_free(s);
    /* the next start reuses it */
    s = ms_tls_server_new(m, why, sizeof why);
    assert_non_null(s);
    assert_true(ms_tls_server_self_signed_info(s, 0, &path, &fp, &generated));
    assert_false(generated);
    assert_string_equal(fp, fp1);
    ms_tls_server_free(s);
    ms_manifest_free(m);
}

/* ---------------------------------------------------------------- clearance */
static void test_check_positions(void **state)
{
    (void)state;
    make_pair("c1", "c1.example", "DNS:c1.example", -DAY, DAY);
    make_pair("c2", "c2.example", "DNS:c2.example", -10 * DAY, -DAY);
    ms_manifest *m = manifest("[mothership.tls]\ncert = \"c1.crt\"\nkey = \"c2.key\"\n"
                              "[[mothership.tls.certs]]\ncert = \"c2.crt\"\nkey = \"c2.key\"\n"
                              "[[mothership.tls.certs]]\ncert = \"c1.crt\"\nkey = \"c1.key\"\n"
                              "hosts = [\"c1.example\", \"nope.example\"]\n");
    ms_diags d;
    ms_diags_init(&d, "t.toml");
    assert_int_equal(ms_tls_check(m, &d), 3);
    assert_int_equal(d.items[0].line, 3); /* the key */
    assert_int_equal(d.items[0].col, 7);
    assert_non_null(strstr(d.items[0].msg, "[mothership.tls]: key \""));
    assert_non_null(strstr(d.items[0].msg, "does not match cert"));
    assert_int_equal(d.items[1].line, 5);
    assert_non_null(strstr(d.items[1].msg, "[[mothership.tls.certs]] #1: cert \""));
    assert_non_null(strstr(d.items[1].msg, "expired on"));
    assert_int_equal(d.items[2].line, 10); /* the hosts */
    assert_non_null(strstr(d.items[2].msg, "[[mothership.tls.certs]] #2: cert \""));
    assert_non_null(strstr(d.items[2].msg, "does not cover host \"nope.example\""));
    ms_diags_free(&d);
    ms_manifest_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_material_key_match),
        cmocka_unit_test(test_material_validity),
        cmocka_unit_test(test_material_pem),
        cmocka_unit_test(test_material_san_coverage),
        cmocka_unit_test(test_material_chain_order),
        cmocka_unit_test(test_server_sni),
        cmocka_unit_test(test_server_alpn),
        cmocka_unit_test(test_server_versions),
        cmocka_unit_test(test_server_tickets),
        cmocka_unit_test(test_server_reload),
        cmocka_unit_test(test_server_reload_concurrent),
        cmocka_unit_test(test_server_bad_cert_at_start),
        cmocka_unit_test(test_self_signed),
        cmocka_unit_test(test_check_positions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
