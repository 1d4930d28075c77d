/* material.c: ACME's keys and certificates without sockets (see
 * material.h): P-256 keys made, stored atomically with mode 0600 and read
 * back, the CSR of an order, the tls-alpn-01 challenge certificate (RFC
 * 8737) and the chain a CA returns, checked against its key and name. */
#include "acme/material.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls/cert.h"

#define ALPN_CERT_DAYS 7
#define CN_MAX 64                                /* ub-common-name (RFC 5280) */
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* id-pe-acmeIdentifier (RFC 8737 §6.1) */

/* ---------------------------------------------------------------- files */
bool ms_acme_file_save(const char *path, const char *text, size_t len, char *why, size_t why_len)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(why, why_len, "\"%s\": path too long", path);
        return false;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int fd;
    if (strlen(base) + sizeof ".tmp" - 1 > NAME_MAX) {
        /* certs/<a 253-character name>.crt fits, its ".tmp" would not: a
         * temporary file of a unique short name in the same directory */
        snprintf(tmp, sizeof tmp, "%.*s.acme-XXXXXX.tmp", (int)(base - path), path);
        fd = mkostemps(tmp, 4, O_CLOEXEC);
    } else {
        /* a leftover temporary file goes first: a symlink or a hard link
         * left there is neither written through nor blocks the save;
         * O_EXCL then makes a new file of our own */
        if (unlink(tmp) != 0 && errno != ENOENT) {
            snprintf(why, why_len, "cannot remove the leftover \"%s\": %s", tmp, strerror(errno));
            return false;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0) {
        snprintf(why, why_len, "cannot write \"%s\": %s", tmp, strerror(errno));
        return false;
    }
    /* 0600 whatever the umask */
    if (fchmod(fd, 0600) != 0) {
        snprintf(why, why_len, "cannot make \"%s\" mode 0600: %s", tmp, strerror(errno));
        goto fail;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(why, why_len, "cannot write \"%s\": %s", tmp, w < 0 ? strerror(errno) : "short write");
            goto fail;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        snprintf(why, why_len, "cannot write \"%s\" to disk: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(why, why_len, "cannot write \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(why, why_len, "cannot rename \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
        goto fail;
    }
    /* the rename itself on disk: the directory synced (best effort) */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return true;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return false;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* ---------------------------------------------------------------- keys */
EVP_PKEY *ms_acme_key_new(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    ERR_clear_error();
    return k;
}

bool ms_acme_key_save(EVP_PKEY *key, const char *path, char *why, size_t why_len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long len = 0;
    if (!bio || !key || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        snprintf(why, why_len, "cannot encode the key as PEM");
        BIO_free(bio);
        ERR_clear_error();
        return false;
    }
    bool ok = ms_acme_file_save(path, pem, (size_t)len, why, why_len);
    BIO_free(bio);
    return ok;
}

EVP_PKEY *ms_acme_key_load(const char *path, bool *missing, char *why, size_t why_len)
{
    bool absent = false;
    size_t len = 0;
    char *text = ms_tls_read_pem_file(path, &len, &absent, why, why_len);
    if (missing)
        *missing = absent;
    if (!text)
        return NULL;
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (!key) {
        if (strstr(text, "ENCRYPTED"))
            snprintf(why, why_len, "is encrypted; a passphrase is not supported");
        else
            snprintf(why, why_len, "holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)");
        free(text);
        return NULL;
    }
    free(text);
    char group[64] = "";
    size_t glen = 0;
    if (!EVP_PKEY_is_a(key, "EC")) {
        /* key type names are spelled letter by letter: "an RSA", "an ED25519", "a DSA" */
        const char *type = EVP_PKEY_get0_type_name(key);
        if (!type || !*type)
            type = "non-EC";
        snprintf(why, why_len, "is %s %s key: ACME account keys here are ECDSA P-256",
                 strchr("AEFHILMNORSX", type[0]) ? "an" : "a", type);
    } else if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) ||
               OBJ_txt2nid(group) != NID_X9_62_prime256v1) {
        snprintf(why, why_len, "is an EC key on curve %s: ACME account keys here are ECDSA P-256",
                 group[0] ? group : "(unknown)");
    } else {
        return key;
    }
    ERR_clear_error();
    EVP_PKEY_free(key);
    return NULL;
}

/* ---------------------------------------------------------------- CSR, alpn certificate */
/* subjectAltName of DNS names, built as objects (no config-string parsing). */
static GENERAL_NAMES *dns_names(const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    for (size_t i = 0; gens && i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || !names[i] || !ASN1_STRING_set(s, names[i], (int)strlen(names[i]))) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
    }
    return gens;
}

/* CN=name when it fits a common name (longer names are in the SAN only). */
static bool set_cn(X509_NAME *subject, const char *name)
{
    if (strlen(name) > CN_MAX)
        return true;
    return X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0) == 1;
}

/* The subjectAltName is critical when the subject is empty (no CN: a name
 * too long for one), as RFC 5280 §4.1.2.6 requires. */
static int san_critical(const char *first_name)
{
    return strlen(first_name) > CN_MAX;
}

unsigned char *ms_acme_csr(EVP_PKEY *key, const char *const *names, size_t nnames, size_t *der_len)
{
    *der_len = 0;
    if (!key || !names || nnames == 0 || nnames > INT_MAX || !names[0])
        return NULL;
    X509_REQ *req = X509_REQ_new();
    GENERAL_NAMES *gens = dns_names(names, nnames);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    unsigned char *der = NULL;
    bool ok = req && gens && exts && X509_REQ_set_version(req, X509_REQ_VERSION_1) &&
              set_cn(X509_REQ_get_subject_name(req), names[0]) && X509_REQ_set_pubkey(req, key) &&
              X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, san_critical(names[0]), X509V3_ADD_APPEND) == 1 &&
              X509_REQ_add_extensions(req, exts) && X509_REQ_sign(req, key, EVP_sha256()) > 0;
    if (ok) {
        int n = i2d_X509_REQ(req, NULL);
        der = n > 0 ? malloc((size_t)n) : NULL;
        unsigned char *p = der;
        if (der && i2d_X509_REQ(req, &p) == n) {
            *der_len = (size_t)n;
        } else {
            free(der);
            der = NULL;
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    ERR_clear_error();
    return der;
}

static bool random_serial(X509 *x)
{
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1)
        return false;
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    bool ok = sn && X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    return ok;
}

/* The critical acmeIdentifier extension: extnValue holds the DER of an
 * OCTET STRING of the 32-byte digest (04 20 <digest>). */
static bool add_acme_identifier(X509 *x, const unsigned char digest[32])
{
    unsigned char der[2 + 32] = {V_ASN1_OCTET_STRING, 32};
    memcpy(der + 2, digest, 32);
    ASN1_OBJECT *oid = OBJ_txt2obj(ACME_IDENTIFIER_OID, 1);
    ASN1_OCTET_STRING *value = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    bool ok = oid && value && ASN1_OCTET_STRING_set(value, der, sizeof der) &&
              (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, value)) != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(value);
    ASN1_OBJECT_free(oid);
    return ok;
}

X509 *ms_acme_alpn_cert(EVP_PKEY *key, const char *name, const unsigned char digest[32])
{
    if (!key || !name || !*name || !digest)
        return NULL;
    X509 *x = X509_new();
    const char *names[1] = {name};
    GENERAL_NAMES *gens = dns_names(names, 1);
    time_t now = time(NULL);
    X509_NAME *subject = x ? X509_get_subject_name(x) : NULL;
    bool ok = x && gens && X509_set_version(x, X509_VERSION_3) && random_serial(x) &&
              X509_time_adj_ex(X509_getm_notBefore(x), -1, 0, &now) &&
              X509_time_adj_ex(X509_getm_notAfter(x), ALPN_CERT_DAYS - 1, 0, &now) && set_cn(subject, name) &&
              X509_set_issuer_name(x, subject) && X509_set_pubkey(x, key) &&
              X509_add1_ext_i2d(x, NID_subject_alt_name, gens, san_critical(name), X509V3_ADD_APPEND) == 1 &&
              add_acme_identifier(x, digest) && X509_sign(x, key, EVP_sha256()) > 0;
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---------------------------------------------------------------- chains */
static bool leaf_covers(X509 *leaf, const char *name)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; gens && !found && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        char text[256];
        if (len <= 0 || (size_t)len >= sizeof text || memchr(s, '\0', (size_t)len))
            continue;
        memcpy(text, s, (size_t)len);
        text[len] = '\0';
        found = ms_tls_name_matches(text, name);
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static bool time_of(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return false;
    time_t v = timegm(&tm);
    if (v == (time_t)-1)
        return false;
    *out = v;
    return true;
}

bool ms_acme_chain_parse(const char *pem, size_t len, EVP_PKEY *key, const char *name, X509 **leaf_out,
                         STACK_OF(X509) **chain_out, time_t *not_before, time_t *not_after, char *why,
                         size_t why_len)
{
    *leaf_out = NULL;
    *chain_out = NULL;
    if (!pem || len == 0) {
        snprintf(why, why_len, "the certificate chain is empty");
        return false;
    }
    if (len > MS_TLS_MAX_PEM) {
        snprintf(why, why_len, "the certificate chain is larger than %u bytes", MS_TLS_MAX_PEM);
        return false;
    }
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    STACK_OF(X509) *chain = NULL;
    bool ok = false;
    if (!leaf) {
        snprintf(why, why_len, "the certificate chain holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
        goto out;
    }
    chain = sk_X509_new_null();
    if (!chain) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (!x)
            break;
        if (sk_X509_num(chain) + 1 >= MS_ACME_MAX_CHAIN) {
            X509_free(x);
            snprintf(why, why_len, "the certificate chain holds more than %d certificates", MS_ACME_MAX_CHAIN);
            goto out;
        }
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            snprintf(why, why_len, "out of memory");
            goto out;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        snprintf(why, why_len, "certificate %d of the chain is not valid PEM", sk_X509_num(chain) + 2);
        goto out;
    }
    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    if (!key || !pub || EVP_PKEY_eq(pub, key) != 1) {
        int at = -1; /* a chain in the wrong order says so */
        for (int i = 0; key && at < 0 && i < sk_X509_num(chain); i++) {
            EVP_PKEY *p = X509_get0_pubkey(sk_X509_value(chain, i));
            if (p && EVP_PKEY_eq(p, key) == 1)
                at = i;
        }
        if (at >= 0)
            snprintf(why, why_len, "the chain does not start with its certificate for this key (certificate %d "
                     "is; RFC 8555 puts the end-entity certificate first)", at + 2);
        else
            snprintf(why, why_len, "the certificate is for another key than the one its order was made with");
        goto out;
    }
    if (!name || !leaf_covers(leaf, name)) {
        snprintf(why, why_len, "the certificate does not cover \"%s\" in its subjectAltName", name ? name : "");
        goto out;
    }
    if (!time_of(X509_get0_notBefore(leaf), not_before) || !time_of(X509_get0_notAfter(leaf), not_after)) {
        snprintf(why, why_len, "the certificate's validity dates cannot be read");
        goto out;
    }
    ok = true;
out:
    ERR_clear_error();
    BIO_free(bio);
    if (!ok) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        return false;
    }
    *leaf_out = leaf;
    *chain_out = chain;
    return true;
}
