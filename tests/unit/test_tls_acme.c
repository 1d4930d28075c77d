/* test_tls_acme.c: the TLS server's ACME side (tls.h) with in-memory client
 * SSLs over BIO pairs: every ACME name served at once by a self-signed
 * placeholder chosen by SNI (after the manifest's own certificates on a
 * bind that uses them; only its own names, the first the default, on a
 * bind with tls.acme; not at all on a bind with its own certificate);
 * ms_tls_server_set_acme swapping a name's certificate for new handshakes
 * while an SSL made before keeps the placeholder, and a reload keeping
 * the swapped one; tls-alpn-01 (RFC 8737): a ClientHello offering
 * acme-tls/1 gets the board's challenge certificate for its SNI name and
 * the ALPN answer acme-tls/1, and fails with no board, no entry or no
 * SNI, while other handshakes are untouched; worker threads handshaking
 * while the certificate is swapped and the board changes.
 *
 * [mothership.acme] and the binds' tls.acme are filled in here directly
 * (their manifest syntax is parsed elsewhere) and emptied again before the
 * manifest is freed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/board.h"
#include "manifest/manifest.h"
#include "tls/cert.h"
#include "tls/tls.h"
#include "cert_helpers.h"

#define DAY (24 * 3600L)

static char tmpdir[256];

/* ---------------------------------------------------------------- certificates */
/* A self-signed certificate with CN cn and SAN DNS:san, valid for 30 days. */
static X509 *dns_cert(const char *cn, const char *san, EVP_PKEY **key)
{
    char value[300];
    snprintf(value, sizeof value, "DNS:%s", san);
    return self_signed(cn, value, -DAY, 30 * DAY, key);
}

static void make_pair(const char *name, const char *cn)
{
    EVP_PKEY *k;
    X509 *x = dns_cert(cn, cn, &k);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.crt", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* The CA's certificate for name, as the ACME client hands it over. */
static ms_tls_material *issued(const char *name, const char *cn)
{
    EVP_PKEY *k;
    X509 *x = dns_cert(cn, name, &k);
    ms_tls_at at;
    char why[256];
    ms_tls_material *mt = ms_tls_material_from(x, NULL, k, NULL, time(NULL), &at, why, sizeof why);
    if (!mt)
        fail_msg("material: %s", why);
    X509_free(x);
    EVP_PKEY_free(k);
    return mt;
}

/* ---------------------------------------------------------------- manifests */
static ms_manifest *manifest(const char *text)
{
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

static char *DOMAINS[] = { "a.example", "b.example", "admin.example", "admin2.example" };
static char *ADMIN_NAMES[] = { "admin.example", "admin2.example" };

/* [mothership.acme] with DOMAINS; bind (when not -1) turned into one with
 * tls = { acme = ADMIN_NAMES } (it was loaded self-signed). */
static void add_acme(ms_manifest *m, long bind)
{
    m->global.acme.enabled = true;
    m->global.acme.domains = (ms_strlist){ DOMAINS, 4 };
    if (bind >= 0) {
        m->global.binds[bind].self_signed = false;
        m->global.binds[bind].acme = (ms_strlist){ ADMIN_NAMES, 2 };
    }
}

static void free_manifest(ms_manifest *m)
{
    m->global.acme = (ms_acme_config){ 0 };
    for (size_t i = 0; i < m->global.nbinds; i++)
        m->global.binds[i].acme = (ms_strlist){ 0 };
    ms_manifest_free(m);
}

/* bind 0 "https": the global certificate, then every ACME name; bind 1
 * "admin": its tls.acme names only; bind 2 "own": its own certificate;
 * bind 3 "plain". */
static const char *const MANIFEST =
    "[mothership]\nstate_dir = \"state\"\n"
    "[mothership.bind]\n"
    "https = \"127.0.0.1:1\"\n"
    "admin = { address = \"127.0.0.1:2\", tls = \"self-signed\" }\n"
    "own = { address = \"127.0.0.1:3\", tls = { cert = \"own.crt\", key = \"own.key\" } }\n"
    "plain = \"127.0.0.1:4\"\n"
    "[mothership.tls]\ncert = \"def.crt\"\nkey = \"def.key\"\n";

static ms_tls_server *acme_server(ms_manifest **mo)
{
    make_pair("def", "default.example");
    make_pair("own", "own.example");
    ms_manifest *m = manifest(MANIFEST);
    add_acme(m, 1);
    char why[512] = "";
    ms_tls_server *s = ms_tls_server_new(m, why, sizeof why);
    if (!s)
        fail_msg("ms_tls_server_new: %s", why);
    *mo = m;
    return s;
}

/* ---------------------------------------------------------------- handshakes */
typedef struct result {
    bool ok;
    char cn[128];
    char org[128];
    char alpn[16];
    int alert;             /* the server's alert (client side), 0: none seen */
} result;

static _Thread_local int last_alert;

static void on_info(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL)
        last_alert = ret & 0xff;
}

/* One handshake between a client (sni, ALPN list in wire format, or NULL)
 * and sv, a server SSL not yet used; sv is freed. */
static result handshake_with(SSL *sv, const char *sni, const char *alpn, size_t alpn_len)
{
    result r = { 0 };
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_info_callback(cctx, on_info);
    SSL *c = SSL_new(cctx);
    assert_non_null(c);
    assert_non_null(sv);
    BIO *b1, *b2;
    assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    SSL_set_bio(c, b1, b1);
    SSL_set_bio(sv, b2, b2);
    SSL_set_connect_state(c);
    SSL_set_accept_state(sv);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    if (alpn)
        SSL_set_alpn_protos(c, (const unsigned char *)alpn, (unsigned)alpn_len);
    last_alert = 0;
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
    if (failed) /* let the client read the server's alert */
        for (int i = 0; i < 4; i++)
            (void)SSL_do_handshake(c);
    ERR_clear_error();
    r.alert = last_alert;
    if (cdone && sdone && !failed) {
        r.ok = true;
        X509 *peer = SSL_get1_peer_certificate(c);
        assert_non_null(peer);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, r.cn, sizeof r.cn);
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_organizationName, r.org, sizeof r.org);
        X509_free(peer);
        const unsigned char *p;
        unsigned len;
        SSL_get0_alpn_selected(c, &p, &len);
        if (len && len < sizeof r.alpn)
            memcpy(r.alpn, p, len);
    }
    SSL_free(c);
    SSL_free(sv);
    SSL_CTX_free(cctx);
    return r;
}

static result handshake(ms_tls_server *s, size_t bind, const char *sni)
{
    return handshake_with(ms_tls_server_ssl(s, bind), sni, NULL, 0);
}

#define PLACEHOLDER "Mothership ACME placeholder"

static void expect(ms_tls_server *s, size_t bind, const char *sni, const char *cn, const char *org)
{
    result r = handshake(s, bind, sni);
    assert_true(r.ok);
    assert_string_equal(r.cn, cn);
    assert_string_equal(r.org, org);
}

/* ---------------------------------------------------------------- tests */
static void test_placeholders_by_sni(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = acme_server(&m);
    /* the bind of the global certificates: it stays the default, every
     * ACME name is served with its placeholder */
    expect(s, 0, NULL, "default.example", "");
    expect(s, 0, "unknown.example", "default.example", "");
    expect(s, 0, "a.example", "a.example", PLACEHOLDER);
    expect(s, 0, "B.Example", "b.example", PLACEHOLDER);
    expect(s, 0, "admin.example", "admin.example", PLACEHOLDER);
    /* tls.acme: its names only, the first the default */
    expect(s, 1, NULL, "admin.example", PLACEHOLDER);
    expect(s, 1, "admin2.example", "admin2.example", PLACEHOLDER);
    expect(s, 1, "a.example", "admin.example", PLACEHOLDER);
    /* its own certificate: no ACME name */
    expect(s, 2, "a.example", "own.example", "");
    assert_null(ms_tls_server_ssl(s, 3));
    ms_tls_server_free(s);
    free_manifest(m);
    /* a placeholder: the name alone, valid 825 days from now (never remade) */
    time_t now = time(NULL);
    ms_tls_material *p = ms_tls_placeholder("a.example", now);
    assert_non_null(p);
    assert_int_equal(p->nnames, 1);
    assert_string_equal(p->names[0], "a.example");
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(p->leaf)), 1);
    assert_true(days == 824 || days == 825);
    assert_true(X509_cmp_time(X509_get0_notBefore(p->leaf), &now) < 0);
    ms_tls_material_unref(p);
    /* a name too long for a CN still gets one */
    char longname[120];
    snprintf(longname, sizeof longname, "%s.%s.example", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    p = ms_tls_placeholder(longname, now);
    assert_non_null(p);
    assert_string_equal(p->names[0], longname);
    ms_tls_material_unref(p);
}

static void test_set_acme_swaps_for_new_handshakes(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = acme_server(&m);
    SSL *old0 = ms_tls_server_ssl(s, 0), *old1 = ms_tls_server_ssl(s, 1);
    ms_tls_material *a = issued("a.example", "a.example issued");
    ms_tls_material *adm = issued("admin.example", "admin issued");
    assert_true(ms_tls_server_set_acme(s, "a.example", a));
    assert_true(ms_tls_server_set_acme(s, "ADMIN.example", adm));
    ms_tls_material_unref(a); /* the server keeps its own reference */
    ms_tls_material_unref(adm);
    expect(s, 0, "a.example", "a.example issued", "");
    expect(s, 0, "b.example", "b.example", PLACEHOLDER);
    expect(s, 0, "admin.example", "admin issued", "");
    expect(s, 1, NULL, "admin issued", "");
    expect(s, 1, "admin2.example", "admin2.example", PLACEHOLDER);
    expect(s, 2, "a.example", "own.example", "");
    /* SSLs made before keep the context (and certificate) they were made from */
    result r = handshake_with(old0, "a.example", NULL, 0);
    assert_true(r.ok);
    assert_string_equal(r.cn, "a.example");
    assert_string_equal(r.org, PLACEHOLDER);
    r = handshake_with(old1, NULL, NULL, 0);
    assert_true(r.ok);
    assert_string_equal(r.cn, "admin.example");
    assert_string_equal(r.org, PLACEHOLDER);
    /* a reload of the manifest's certificates keeps the ACME ones */
    assert_true(ms_tls_server_reload(s, NULL, NULL));
    expect(s, 0, "a.example", "a.example issued", "");
    expect(s, 0, NULL, "default.example", "");
    /* a renewal replaces it again */
    ms_tls_material *a2 = issued("a.example", "a.example renewed");
    assert_true(ms_tls_server_set_acme(s, "a.example", a2));
    ms_tls_material_unref(a2);
    expect(s, 0, "a.example", "a.example renewed", "");
    /* not an ACME name */
    ms_tls_material *x = issued("x.example", "x");
    assert_false(ms_tls_server_set_acme(s, "x.example", x));
    assert_false(ms_tls_server_set_acme(s, "default.example", x));
    ms_tls_material_unref(x);
    ms_tls_server_free(s);
    free_manifest(m);
}

/* No certificate of the manifest's own: the ACME names are enough, the
 * first the default; tls.acme without [mothership.acme] is refused. */
static void test_acme_only_server(void **state)
{
    (void)state;
    ms_manifest *m = manifest("[mothership]\nstate_dir = \"state\"\n[mothership.bind]\n"
                              "web = { address = \"127.0.0.1:1\", tls = \"self-signed\" }\n");
    m->global.binds[0].self_signed = false;
    char why[512] = "";
    ms_tls_server *s = ms_tls_server_new(m, why, sizeof why);
    assert_null(s);
    assert_non_null(strstr(why, "terminates TLS but there is no certificate"));
    add_acme(m, -1);
    s = ms_tls_server_new(m, why, sizeof why);
    if (!s)
        fail_msg("ms_tls_server_new: %s", why);
    expect(s, 0, NULL, "a.example", PLACEHOLDER);
    expect(s, 0, "admin2.example", "admin2.example", PLACEHOLDER);
    ms_tls_server_free(s);
    m->global.acme = (ms_acme_config){ 0 };
    m->global.binds[0].acme = (ms_strlist){ ADMIN_NAMES, 2 };
    s = ms_tls_server_new(m, why, sizeof why);
    assert_null(s);
    assert_string_equal(why, "bind \"web\": its tls.acme names need [mothership.acme]");
    free_manifest(m);
}

#define ACME_TLS_1 "\x0a" "acme-tls/1"
#define H2_H11 "\x02" "h2" "\x08" "http/1.1"

static void test_tls_alpn_01(void **state)
{
    (void)state;
    ms_manifest *m;
    ms_tls_server *s = acme_server(&m);
    ms_tls_server_set_h2(s, true);
    /* no board yet: a challenge handshake fails */
    result r = handshake_with(ms_tls_server_ssl(s, 0), "a.example", ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_false(r.ok);
    assert_int_equal(r.alert, SSL_AD_NO_APPLICATION_PROTOCOL);

    ms_acme_board *board = ms_acme_board_new();
    assert_non_null(board);
    ms_tls_server_set_acme_board(s, board);
    EVP_PKEY *k;
    X509 *chal = dns_cert("challenge a", "a.example", &k);
    assert_true(ms_acme_board_put_alpn(board, "a.example", chal, k));
    X509_free(chal);
    EVP_PKEY_free(k);

    /* offering acme-tls/1: the challenge certificate, ALPN acme-tls/1 */
    r = handshake_with(ms_tls_server_ssl(s, 0), "a.example", ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_true(r.ok);
    assert_string_equal(r.cn, "challenge a");
    assert_string_equal(r.alpn, "acme-tls/1");
    /* also next to other protocols: acme-tls/1 is the answer */
    r = handshake_with(ms_tls_server_ssl(s, 0), "a.example", H2_H11 ACME_TLS_1, sizeof H2_H11 ACME_TLS_1 - 1);
    assert_true(r.ok);
    assert_string_equal(r.cn, "challenge a");
    assert_string_equal(r.alpn, "acme-tls/1");
    /* any bind: the challenge is for the name */
    r = handshake_with(ms_tls_server_ssl(s, 1), "a.example", ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_true(r.ok);
    assert_string_equal(r.cn, "challenge a");
    /* the ordinary handshakes of that name are untouched */
    r = handshake_with(ms_tls_server_ssl(s, 0), "a.example", H2_H11, sizeof H2_H11 - 1);
    assert_true(r.ok);
    assert_string_equal(r.cn, "a.example");
    assert_string_equal(r.org, PLACEHOLDER);
    assert_string_equal(r.alpn, "h2");
    expect(s, 0, "a.example", "a.example", PLACEHOLDER);
    /* no entry for the name, or no SNI: the handshake fails */
    r = handshake_with(ms_tls_server_ssl(s, 0), "b.example", ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_false(r.ok);
    assert_int_equal(r.alert, SSL_AD_NO_APPLICATION_PROTOCOL);
    r = handshake_with(ms_tls_server_ssl(s, 0), NULL, ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_false(r.ok);
    assert_int_equal(r.alert, SSL_AD_NO_APPLICATION_PROTOCOL);
    /* withdrawn: fails again */
    ms_acme_board_drop_alpn(board, "a.example");
    r = handshake_with(ms_tls_server_ssl(s, 0), "a.example", ACME_TLS_1, sizeof ACME_TLS_1 - 1);
    assert_false(r.ok);
    ms_tls_server_free(s);
    ms_acme_board_free(board);
    free_manifest(m);
}

/* Workers handshaking (tls-alpn-01 and ordinary) while the control loop
 * swaps the name's certificate and the board's entry comes and goes: every
 * ordinary handshake succeeds, a challenge one succeeds or fails cleanly
 * (run under ASan/TSan to see the races). */
typedef struct stress {
    ms_tls_server *s;
    atomic_bool stop;
    atomic_int bad, acme_ok, plain_ok;
} stress;

static void *stress_worker(void *arg)
{
    stress *st = arg;
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    for (unsigned i = 0; !atomic_load(&st->stop) || i < 20; i++) {
        bool acme = i % 2 == 0;
        SSL *sv = ms_tls_server_ssl(st->s, i % 3 == 0 ? 1 : 0);
        SSL *c = SSL_new(cctx);
        BIO *b1, *b2;
        if (!sv || !c || BIO_new_bio_pair(&b1, 0, &b2, 0) != 1) {
            atomic_fetch_add(&st->bad, 1);
            SSL_free(sv);
            SSL_free(c);
            break;
        }
        SSL_set_bio(c, b1, b1);
        SSL_set_bio(sv, b2, b2);
        SSL_set_connect_state(c);
        SSL_set_accept_state(sv);
        SSL_set_tlsext_host_name(c, acme ? "a.example" : "admin.example");
        if (acme)
            SSL_set_alpn_protos(c, (const unsigned char *)ACME_TLS_1, sizeof ACME_TLS_1 - 1);
        bool cdone = false, sdone = false, failed = false;
        for (int k = 0; k < 100 && !(cdone && sdone) && !failed; k++) {
            int rc;
            if (!cdone && !(cdone = (rc = SSL_do_handshake(c)) == 1) && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                failed = true;
            if (!sdone && !(sdone = (rc = SSL_do_handshake(sv)) == 1) &&
                SSL_get_error(sv, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
        ERR_clear_error();
        bool ok = cdone && sdone && !failed;
        if (ok && acme) {
            const unsigned char *p;
            unsigned len;
            SSL_get0_alpn_selected(c, &p, &len);
            if (len != 10 || memcmp(p, "acme-tls/1", 10) != 0)
                atomic_fetch_add(&st->bad, 1);
            atomic_fetch_add(&st->acme_ok, 1);
        } else if (ok) {
            atomic_fetch_add(&st->plain_ok, 1);
        } else if (!acme) {
            atomic_fetch_add(&st->bad, 1);
        }
        SSL_free(c);
        SSL_free(sv);
    }
    SSL_CTX_free(cctx);
    return NULL;
}

static void test_swaps_while_workers_handshake(void **state)
{
    (void)state;
    ms_manifest *m;
    stress st = { 0 };
    st.s = acme_server(&m);
    ms_acme_board *board = ms_acme_board_new();
    assert_non_null(board);
    ms_tls_server_set_acme_board(st.s, board);
    EVP_PKEY *k;
    X509 *chal = dns_cert("challenge a", "a.example", &k);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stress_worker, &st), 0);
    for (int i = 0; i < 150; i++) {
        ms_tls_material *a = issued("admin.example", "admin issued");
        assert_true(ms_tls_server_set_acme(st.s, "admin.example", a));
        ms_tls_material_unref(a);
        if (i % 2)
            assert_true(ms_acme_board_put_alpn(board, "a.example", chal, k));
        else
            ms_acme_board_drop_alpn(board, "a.example");
        if (i % 50 == 0)
            assert_true(ms_tls_server_reload(st.s, NULL, NULL));
    }
    atomic_store(&st.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&st.bad), 0);
    assert_true(atomic_load(&st.plain_ok) > 0);
    X509_free(chal);
    EVP_PKEY_free(k);
    ms_tls_server_free(st.s);
    ms_acme_board_free(board);
    free_manifest(m);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ms-test-tls-acme-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholders_by_sni),
        cmocka_unit_test(test_set_acme_swaps_for_new_handshakes),
        cmocka_unit_test(test_acme_only_server),
        cmocka_unit_test(test_tls_alpn_01),
        cmocka_unit_test(test_swaps_while_workers_handshake),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
