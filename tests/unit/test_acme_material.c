/* test_acme_material.c: unit tests of src/acme/material.c in a temporary
 * directory: keys made, saved (mode 0600, atomically, over an old file)
 * and loaded back, other key types and bad files refused with a reason;
 * the CSR of an order (signature, CN, SAN DNS names in order); the
 * tls-alpn-01 certificate (self-signed, one SAN, the critical
 * acmeIdentifier extension's exact bytes, validity); and a CA's PEM chain
 * checked against its key and name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "acme/material.h"
#include "cert_helpers.h"

#define DAY (24 * 3600L)

static char tmpdir[256];

static char *path_of(const char *name)
{
    static char buf[8][1024];
    static int at;
    char *p = buf[at++ % 8];
    snprintf(p, 1024, "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *name, const char *text, mode_t mode)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path_of(name), mode), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ms-test-acme-material-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- keys */
static void test_key_save_load(void **state)
{
    (void)state;
    EVP_PKEY *key = ms_acme_key_new();
    assert_non_null(key);
    assert_true(EVP_PKEY_is_a(key, "EC"));
    char why[300] = "";
    /* an old file of another mode is replaced, and comes out 0600 */
    write_text("account.key", "old", 0644);
    write_text("account.key.tmp", "left over", 0644);
    assert_true(ms_acme_key_save(key, path_of("account.key"), why, sizeof why));
    assert_int_equal(mode_of(path_of("account.key")), 0600);
    assert_int_not_equal(access(path_of("account.key.tmp"), F_OK), 0);

    FILE *f = fopen(path_of("account.key"), "r");
    assert_non_null(f);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "-----BEGIN PRIVATE KEY-----\n"); /* PKCS#8 */

    bool missing = true;
    EVP_PKEY *back = ms_acme_key_load(path_of("account.key"), &missing, why, sizeof why);
    assert_non_null(back);
    assert_false(missing);
    assert_int_equal(EVP_PKEY_eq(back, key), 1);
    EVP_PKEY_free(back);
    EVP_PKEY_free(key);
}

static void test_key_load_refused(void **state)
{
    (void)state;
    char why[300] = "";
    bool missing = false;
    assert_null(ms_acme_key_load(path_of("nothing.key"), &missing, why, sizeof why));
    assert_true(missing);
    assert_string_equal(why, "does not exist");

    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    assert_non_null(rsa);
    assert_true(ms_acme_key_save(rsa, path_of("rsa.key"), why, sizeof why));
    missing = true;
    assert_null(ms_acme_key_load(path_of("rsa.key"), &missing, why, sizeof why));
    assert_false(missing);
    assert_string_equal(why, "is an RSA key: ACME account keys here are ECDSA P-256");
    EVP_PKEY_free(rsa);

    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_non_null(p384);
    assert_true(ms_acme_key_save(p384, path_of("p384.key"), why, sizeof why));
    assert_null(ms_acme_key_load(path_of("p384.key"), &missing, why, sizeof why));
    assert_non_null(strstr(why, "is an EC key on curve secp384r1"));
    EVP_PKEY_free(p384);

    write_text("junk.key", "not a key\n", 0600);
    assert_null(ms_acme_key_load(path_of("junk.key"), &missing, why, sizeof why));
    assert_non_null(strstr(why, "holds no PEM private key"));

    assert_null(ms_acme_key_load(tmpdir, &missing, why, sizeof why));
    assert_string_equal(why, "is not a regular file");
    assert_false(missing);
}

static void test_file_save(void **state)
{
    (void)state;
    char why[300] = "";
    assert_true(ms_acme_file_save(path_of("cert.pem"), "abc\0def", 7, why, sizeof why));
    assert_int_equal(mode_of(path_of("cert.pem")), 0600);
    FILE *f = fopen(path_of("cert.pem"), "rb");
    assert_non_null(f);
    char buf[16];
    assert_int_equal(fread(buf, 1, sizeof buf, f), 7);
    fclose(f);
    assert_memory_equal(buf, "abc\0def", 7);

    assert_false(ms_acme_file_save(path_of("no/such/dir/cert.pem"), "x", 1, why, sizeof why));
    assert_non_null(strstr(why, "cannot write"));
    assert_non_null(strstr(why, "No such file or directory"));
}

/* A leftover cert.pem.tmp that is a symlink or a hard link to another file
 * is replaced, never written through: the other file keeps its content and
 * its mode, and the save succeeds (a symlink left there does not block
 * every later save). */
static void test_file_save_over_planted_tmp(void **state)
{
    (void)state;
    char why[300] = "";
    write_text("victim", "keep", 0644);
    assert_int_equal(symlink(path_of("victim"), path_of("sym.pem.tmp")), 0);
    assert_true(ms_acme_file_save(path_of("sym.pem"), "new", 3, why, sizeof why));
    assert_int_equal(link(path_of("victim"), path_of("hard.pem.tmp")), 0);
    assert_true(ms_acme_file_save(path_of("hard.pem"), "new", 3, why, sizeof why));

    char buf[16] = "";
    FILE *f = fopen(path_of("victim"), "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), 4);
    fclose(f);
    assert_string_equal(buf, "keep");
    assert_int_equal(mode_of(path_of("victim")), 0644);
    assert_int_equal(mode_of(path_of("sym.pem")), 0600);
    assert_int_equal(mode_of(path_of("hard.pem")), 0600);
    struct stat st;
    assert_int_equal(lstat(path_of("sym.pem.tmp"), &st), -1);
    assert_int_equal(lstat(path_of("hard.pem.tmp"), &st), -1);

    /* a symlink at the target itself is replaced by the file, not followed */
    assert_int_equal(symlink(path_of("victim"), path_of("target.pem")), 0);
    assert_true(ms_acme_file_save(path_of("target.pem"), "new", 3, why, sizeof why));
    assert_int_equal(lstat(path_of("target.pem"), &st), 0);
    assert_true(S_ISREG(st.st_mode));
    f = fopen(path_of("victim"), "rb");
    assert_non_null(f);
    memset(buf, 0, sizeof buf);
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), 4);
    fclose(f);
}

/* A name of 253 characters (the longest DNS name the manifest takes) is
 * stored as certs/<name>.crt: its temporary file must not need more than
 * the file system's 255 bytes per name. */
static void test_file_save_long_name(void **state)
{
    (void)state;
    char name[260];
    memset(name, 'a', 253);
    memcpy(name + 249, ".crt", 5); /* 253 characters */
    char why[600] = "";
    assert_true(ms_acme_file_save(path_of(name), "long", 4, why, sizeof why));
    assert_int_equal(mode_of(path_of(name)), 0600);
    FILE *f = fopen(path_of(name), "rb");
    assert_non_null(f);
    char buf[8] = "";
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), 4);
    fclose(f);
    assert_string_equal(buf, "long");
}

/* Mode 0600 whatever the umask. */
static void test_file_save_umask(void **state)
{
    (void)state;
    char why[300] = "";
    mode_t old = umask(0);
    bool ok = ms_acme_file_save(path_of("open.pem"), "x", 1, why, sizeof why);
    umask(old);
    assert_true(ok);
    assert_int_equal(mode_of(path_of("open.pem")), 0600);
}

/* ---------------------------------------------------------------- CSR */
static void check_dns_sans(GENERAL_NAMES *gens, const char *const *names, size_t n)
{
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), (int)n);
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, (int)i);
        assert_int_equal(g->type, GEN_DNS);
        assert_int_equal(ASN1_STRING_length(g->d.dNSName), (int)strlen(names[i]));
        assert_memory_equal(ASN1_STRING_get0_data(g->d.dNSName), names[i], strlen(names[i]));
    }
}

static void test_csr(void **state)
{
    (void)state;
    EVP_PKEY *key = ms_acme_key_new();
    assert_non_null(key);
    const char *names[] = {"example.com", "www.example.com", "a,b.example.com"};
    size_t len = 0;
    unsigned char *der = ms_acme_csr(key, names, 3, &len);
    assert_non_null(der);
    assert_true(len > 0);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_ptr_equal(p, der + len);
    assert_int_equal(X509_REQ_verify(req, key), 1);
    assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key), 1);
    char cn[256];
    assert_int_equal(X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn), 11);
    assert_string_equal(cn, "example.com");
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    assert_non_null(exts);
    GENERAL_NAMES *gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    check_dns_sans(gens, names, 3);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);

    /* a first name too long for a CN: in the SAN only */
    const char *longname[] = {"a-label-of-sixty-three-characters-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com"};
    der = ms_acme_csr(key, longname, 1, &len);
    assert_non_null(der);
    p = der;
    req = d2i_X509_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    exts = X509_REQ_get_extensions(req);
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    check_dns_sans(gens, longname, 1);
    GENERAL_NAMES_free(gens);
    int crit = -1; /* the subject empty: the SAN critical (RFC 5280 §4.1.2.6) */
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
    GENERAL_NAMES_free(gens);
    assert_int_equal(crit, 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);

    assert_null(ms_acme_csr(key, names, 0, &len));
    assert_int_equal(len, 0);
    EVP_PKEY_free(key);
}

/* ---------------------------------------------------------------- alpn certificate */
static void test_alpn_cert(void **state)
{
    (void)state;
    EVP_PKEY *key = ms_acme_key_new();
    assert_non_null(key);
    unsigned char digest[32];
    for (int i = 0; i < 32; i++)
        digest[i] = (unsigned char)(0xa0 + i);
    time_t before = time(NULL);
    X509 *x = ms_acme_alpn_cert(key, "www.example.com", digest);
    time_t after = time(NULL);
    assert_non_null(x);
    assert_int_equal(X509_verify(x, key), 1); /* self-signed */
    assert_int_equal(X509_check_issued(x, x), X509_V_OK);

    const char *names[] = {"www.example.com"};
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    check_dns_sans(gens, names, 1);
    GENERAL_NAMES_free(gens);

    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    assert_non_null(oid);
    int at = X509_get_ext_by_OBJ(x, oid, -1);
    assert_true(at >= 0);
    assert_int_equal(X509_get_ext_by_OBJ(x, oid, at), -1); /* exactly one */
    X509_EXTENSION *ext = X509_get_ext(x, at);
    assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
    ASN1_OCTET_STRING *value = X509_EXTENSION_get_data(ext);
    unsigned char want[34] = {0x04, 0x20};
    memcpy(want + 2, digest, 32);
    assert_int_equal(ASN1_STRING_length(value), 34);
    assert_memory_equal(ASN1_STRING_get0_data(value), want, 34);
    ASN1_OBJECT_free(oid);

    /* from now - 1 day, for 7 days */
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm), 1);
    time_t nb = timegm(&tm);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    time_t na = timegm(&tm);
    assert_true(nb >= before - DAY && nb <= after - DAY);
    assert_int_equal(na - nb, 7 * DAY);
    X509_free(x);

    assert_null(ms_acme_alpn_cert(key, "", digest));

    /* a name over 64 characters has no CN: with the subject empty, the
     * subjectAltName must be critical (RFC 5280 §4.1.2.6), or strict
     * verifiers refuse the certificate */
    const char *long_name = "a-name-of-more-than-sixty-four-characters-for-the-subject.example.com";
    assert_true(strlen(long_name) > 64);
    x = ms_acme_alpn_cert(key, long_name, digest);
    assert_non_null(x);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    int san = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    assert_true(san >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, san)), 1);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, x), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    int verified = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    assert_true(err != X509_V_ERR_EMPTY_SUBJECT_SAN_NOT_CRITICAL);
    (void)verified;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* ---------------------------------------------------------------- chains */
static char *pem_of(X509 *a, X509 *b, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_X509(bio, a), 1);
    if (b)
        assert_int_equal(PEM_write_bio_X509(bio, b), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    BIO_free(bio);
    return out;
}

static void test_chain_parse(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = ms_acme_key_new(), *key = ms_acme_key_new(), *other = ms_acme_key_new();
    assert_non_null(ca_key);
    assert_non_null(key);
    assert_non_null(other);
    X509 *ca = make_cert("Test CA", NULL, -DAY, 365 * DAY, ca_key, NULL, NULL, false);
    X509 *leaf = make_cert("example.com", "DNS:example.com,DNS:*.example.org", -3600, 90 * DAY, key, ca, ca_key, false);
    size_t len;
    char *pem = pem_of(leaf, ca, &len);
    char why[300] = "";
    X509 *got = NULL;
    STACK_OF(X509) *chain = NULL;
    time_t nb = 0, na = 0;

    assert_true(ms_acme_chain_parse(pem, len, key, "example.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_int_equal(X509_cmp(got, leaf), 0);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), ca), 0);
    time_t now = time(NULL);
    assert_true(nb <= now - 3600 + 5 && nb >= now - 3600 - 5);
    assert_true(na <= now + 90 * DAY + 5 && na >= now + 90 * DAY - 5);
    X509_free(got);
    sk_X509_pop_free(chain, X509_free);

    /* a wildcard SAN covers one label; the leaf alone is a chain with nothing after it */
    free(pem);
    pem = pem_of(leaf, NULL, &len);
    assert_true(ms_acme_chain_parse(pem, len, key, "www.example.org", &got, &chain, &nb, &na, why, sizeof why));
    assert_int_equal(sk_X509_num(chain), 0);
    X509_free(got);
    sk_X509_pop_free(chain, X509_free);

    /* refusals leave nothing behind */
    assert_false(ms_acme_chain_parse(pem, len, other, "example.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_non_null(strstr(why, "another key"));
    assert_null(got);
    assert_null(chain);
    assert_false(ms_acme_chain_parse(pem, len, key, "a.b.example.org", &got, &chain, &nb, &na, why, sizeof why));
    assert_non_null(strstr(why, "does not cover \"a.b.example.org\""));
    assert_false(ms_acme_chain_parse(pem, len, key, "other.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_false(ms_acme_chain_parse("", 0, key, "example.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_non_null(strstr(why, "empty"));
    const char junk[] = "<html>not a certificate</html>";
    assert_false(ms_acme_chain_parse(junk, sizeof junk - 1, key, "example.com", &got, &chain, &nb, &na, why,
                                     sizeof why));
    assert_non_null(strstr(why, "no PEM certificate"));
    assert_null(got);
    assert_null(chain);

    /* a broken second certificate */
    free(pem);
    pem = pem_of(leaf, ca, &len);
    char *second = strstr(pem + 30, "-----BEGIN CERTIFICATE-----");
    assert_non_null(second);
    second[40] = '!';
    assert_false(ms_acme_chain_parse(pem, len, key, "example.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_non_null(strstr(why, "certificate 2 of the chain is not valid PEM"));
    assert_null(got);
    assert_null(chain);

    /* the CA's certificate first, the leaf after it: refused (RFC 8555
     * §7.4.2 puts the end-entity certificate first), and said so */
    free(pem);
    pem = pem_of(ca, leaf, &len);
    assert_false(ms_acme_chain_parse(pem, len, key, "example.com", &got, &chain, &nb, &na, why, sizeof why));
    assert_string_equal(why, "the chain does not start with its certificate for this key (certificate 2 is; "
                             "RFC 8555 puts the end-entity certificate first)");
    assert_null(got);
    assert_null(chain);

    /* only the SAN counts, not the CN */
    X509 *cn_only = make_cert("example.com", NULL, -3600, DAY, key, ca, ca_key, false);
    free(pem);
    pem = pem_of(cn_only, NULL, &len);
    assert_false(ms_acme_chain_parse(pem, len, key, "example.com", &got, &chain, &nb, &na, why, sizeof why));

    free(pem);
    X509_free(cn_only);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_save_load),
        cmocka_unit_test(test_key_load_refused),
        cmocka_unit_test(test_file_save),
        cmocka_unit_test(test_file_save_over_planted_tmp),
        cmocka_unit_test(test_file_save_umask),
        cmocka_unit_test(test_file_save_long_name),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_alpn_cert),
        cmocka_unit_test(test_chain_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
