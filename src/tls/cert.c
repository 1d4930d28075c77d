/* cert.c: certificate material read and checked, SNI names, fingerprints
 * and the self-signed certificate of development binds (see cert.h). */
#include "tls/cert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "util/strutil.h"

#define SELF_SIGNED_DAYS 90
#define PLACEHOLDER_DAYS 825 /* a pending name outlives it only after years: it is never renewed */
#define SELF_SIGNED_MIN_LEFT (24 * 3600)   /* reuse only when valid at least this much longer */

/* ---------------------------------------------------------------- reading */
char *ms_tls_read_pem_file(const char *path, size_t *len, bool *missing, char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (missing && errno == ENOENT) {
            *missing = true;
            snprintf(why, why_len, "does not exist");
        } else {
            snprintf(why, why_len, "cannot be read: %s", strerror(errno));
        }
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_len, "is not a regular file");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > MS_TLS_MAX_PEM) {
        snprintf(why, why_len, "is larger than %u bytes", MS_TLS_MAX_PEM);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        snprintf(why, why_len, "cannot be read%s", buf ? "" : ": out of memory");
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* ---------------------------------------------------------------- names */
void ms_tls_time_text(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm)) {
        snprintf(out, cap, "an unreadable date");
        return;
    }
    snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

bool ms_tls_name_matches(const char *pattern, const char *host)
{
    if (strcasecmp(pattern, host) == 0)
        return true;
    if (pattern[0] != '*' || pattern[1] != '.')
        return false;
    const char *dot = strchr(host, '.');
    return dot && dot != host && strcasecmp(pattern + 1, dot) == 0;
}

static bool is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static bool push_name(char ***names, size_t *n, const char *s, size_t len)
{
    char **nn = realloc(*names, (*n + 1) * sizeof *nn);
    if (!nn)
        return false;
    *names = nn;
    char *d = malloc(len + 1);
    if (!d)
        return false;
    memcpy(d, s, len);
    d[len] = '\0';
    lower(d);
    nn[(*n)++] = d;
    return true;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The DNS names and addresses of the subjectAltName, or the subject's CN
 * when there is none. */
static bool cert_names(X509 *x, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = true;
    if (gens) {
        for (int i = 0; ok && i < sk_GENERAL_NAME_num(gens); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type == GEN_DNS) {
                const ASN1_IA5STRING *s = g->d.dNSName;
                ok = push_name(names, n, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
            } else if (g->type == GEN_IPADD) {
                char text[INET6_ADDRSTRLEN];
                int len = ASN1_STRING_length(g->d.iPAddress);
                const unsigned char *p = ASN1_STRING_get0_data(g->d.iPAddress);
                if ((len == 4 && inet_ntop(AF_INET, p, text, sizeof text)) ||
                    (len == 16 && inet_ntop(AF_INET6, p, text, sizeof text)))
                    ok = push_name(names, n, text, strlen(text));
            }
        }
        GENERAL_NAMES_free(gens);
    } else {
        char cn[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        if (len > 0)
            ok = push_name(names, n, cn, (size_t)len);
    }
    if (!ok) {
        free_names(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return ok;
}

static bool covers(X509 *leaf, char **names, size_t n, const char *host)
{
    if (is_ip(host))
        return X509_check_ip_asc(leaf, host, 0) == 1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], host) == 0 || ms_tls_name_matches(names[i], host))
            return true;
    }
    return false;
}

static void names_text(char **names, size_t n, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && at < cap; i++) {
        int w = snprintf(out + at, cap - at, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        at += (size_t)w;
    }
    if (n == 0)
        snprintf(out, cap, "none");
}

/* ---------------------------------------------------------------- material */
ms_tls_material *ms_tls_material_ref(ms_tls_material *mt)
{
    if (mt)
        __atomic_add_fetch(&mt->refs, 1, __ATOMIC_RELAXED);
    return mt;
}

void ms_tls_material_unref(ms_tls_material *mt)
{
    if (!mt || __atomic_sub_fetch(&mt->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    X509_free(mt->leaf);
    sk_X509_pop_free(mt->chain, X509_free);
    EVP_PKEY_free(mt->key);
    free_names(mt->names, mt->nnames);
    free(mt);
}

static void subject_text(X509 *x, char *out, size_t cap)
{
    char cn[128];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
        snprintf(out, cap, "CN=%s", cn);
    else
        snprintf(out, cap, "without a CN");
}

ms_tls_material *ms_tls_material_from(X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key, const ms_strlist *hosts,
                                      time_t now, ms_tls_at *at, char *why, size_t why_len)
{
    *at = MS_TLS_AT_CERT;
    /* chain order: each certificate issued by the next one */
    X509 *prev = leaf;
    int nchain = chain ? sk_X509_num(chain) : 0;
    for (int i = 0; i < nchain; i++) {
        X509 *next = sk_X509_value(chain, i);
        if (X509_check_issued(next, prev) != X509_V_OK) {
            char a[160], b[160];
            subject_text(prev, a, sizeof a);
            subject_text(next, b, sizeof b);
            snprintf(why, why_len, "has its chain out of order: certificate %d (%s) did not issue certificate %d "
                     "(%s); write the leaf first, then each issuer", i + 2, b, i + 1, a);
            return NULL;
        }
        prev = next;
    }
    char date[64];
    if (X509_cmp_time(X509_get0_notAfter(leaf), &now) < 0) {
        ms_tls_time_text(X509_get0_notAfter(leaf), date, sizeof date);
        snprintf(why, why_len, "expired on %s", date);
        return NULL;
    }
    if (X509_cmp_time(X509_get0_notBefore(leaf), &now) > 0) {
        ms_tls_time_text(X509_get0_notBefore(leaf), date, sizeof date);
        snprintf(why, why_len, "is not valid before %s", date);
        return NULL;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        *at = MS_TLS_AT_KEY;
        snprintf(why, why_len, "does not match the certificate");
        return NULL;
    }
    ms_tls_material *mt = calloc(1, sizeof *mt);
    if (!mt) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    mt->refs = 1;
    char **names;
    size_t n;
    if (!cert_names(leaf, &names, &n)) {
        free(mt);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    for (size_t i = 0; hosts && i < hosts->len; i++) {
        if (!covers(leaf, names, n, hosts->items[i])) {
            char list[300];
            names_text(names, n, list, sizeof list);
            *at = MS_TLS_AT_HOSTS;
            snprintf(why, why_len, "does not cover host \"%s\" (the certificate's names: %s)", hosts->items[i], list);
            free_names(names, n);
            free(mt);
            return NULL;
        }
    }
    if (hosts && hosts->len) {
        free_names(names, n);
        names = NULL;
        n = 0;
        for (size_t i = 0; i < hosts->len; i++) {
            if (!push_name(&names, &n, hosts->items[i], strlen(hosts->items[i]))) {
                free_names(names, n);
                free(mt);
                snprintf(why, why_len, "out of memory");
                return NULL;
            }
        }
    }
    mt->names = names;
    mt->nnames = n;
    X509_up_ref(leaf);
    mt->leaf = leaf;
    EVP_PKEY_up_ref(key);
    mt->key = key;
    mt->chain = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
    if (!mt->chain) {
        ms_tls_material_unref(mt);
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    return mt;
}

ms_tls_material *ms_tls_material_load(const char *cert_path, const char *key_path, const ms_strlist *hosts,
                                      time_t now, ms_tls_at *at, char *why, size_t why_len)
{
    char reason[400];
    size_t len;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    ms_tls_material *mt = NULL;
    *at = MS_TLS_AT_CERT;
    char *text = ms_tls_read_pem_file(cert_path, &len, NULL, reason, sizeof reason);
    if (!text) {
        snprintf(why, why_len, "cert \"%s\" %s", cert_path, reason);
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    leaf = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    if (!leaf) {
        snprintf(why, why_len, "cert \"%s\" holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                 cert_path);
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
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            snprintf(why, why_len, "out of memory");
            goto out;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        snprintf(why, why_len, "cert \"%s\": certificate %d is not valid PEM: %s", cert_path,
                 sk_X509_num(chain) + 2, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "bad data");
        goto out;
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = NULL;
    free(text);
    *at = MS_TLS_AT_KEY;
    text = ms_tls_read_pem_file(key_path, &len, NULL, reason, sizeof reason);
    if (!text) {
        snprintf(why, why_len, "key \"%s\" %s", key_path, reason);
        goto out;
    }
    bio = BIO_new_mem_buf(text, (int)len);
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    if (!key) {
        if (strstr(text, "ENCRYPTED"))
            snprintf(why, why_len, "key \"%s\" is encrypted; a passphrase is not supported: write it "
                     "unencrypted with mode 0600", key_path);
        else
            snprintf(why, why_len, "key \"%s\" holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)",
                     key_path);
        goto out;
    }
    mt = ms_tls_material_from(leaf, chain, key, hosts, now, at, reason, sizeof reason);
    if (!mt) {
        if (*at == MS_TLS_AT_KEY)
            snprintf(why, why_len, "key \"%s\" %s \"%s\"", key_path, "does not match cert", cert_path);
        else
            snprintf(why, why_len, "cert \"%s\" %s", cert_path, reason);
    }
out:
    ERR_clear_error();
    BIO_free(bio);
    free(text);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return mt;
}

bool ms_tls_fingerprint(X509 *x, char out[MS_TLS_FINGERPRINT_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!X509_digest(x, EVP_sha256(), md, &n) || n != 32)
        return false;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 3 * i, 4, "%02X%s", md[i], i + 1 < n ? ":" : "");
    return true;
}

/* ---------------------------------------------------------------- self-signed */
char *ms_tls_state_dir(const ms_manifest *m)
{
    if (m && m->global.state_dir)
        return ms_strdup(m->global.state_dir);
    const char *e = getenv("MS_STATE_DIR");
    if (e && *e)
        return ms_strdup(e);
    e = getenv("XDG_STATE_HOME");
    if (e && e[0] == '/')
        return ms_asprintf("%s/mothership", e);
    e = getenv("HOME");
    if (e && e[0] == '/')
        return ms_asprintf("%s/.local/state/mothership", e);
    return ms_asprintf("/tmp/mothership-state-%u", (unsigned)getuid());
}

static bool mkdirs(const char *dir, char *why, size_t why_len)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        snprintf(why, why_len, "state dir \"%s\": path too long", dir);
        return false;
    }
    for (char *p = path + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(why, why_len, "cannot create the state dir \"%s\": %s", path, strerror(errno));
            return false;
        }
        *p = c;
        if (c == '\0')
            return true;
    }
}

/* The names of a self-signed certificate, as a subjectAltName value. */
static void san_value(const char *host, char *out, size_t cap)
{
    bool extra = host && *host && strcmp(host, "localhost") != 0 && strcmp(host, "127.0.0.1") != 0 &&
                 strcmp(host, "::1") != 0 && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0;
    snprintf(out, cap, "DNS:localhost,IP:127.0.0.1,IP:::1%s%s%s", extra ? (is_ip(host) ? ",IP:" : ",DNS:") : "",
             extra ? host : "", "");
}

static bool add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed ECDSA P-256 certificate: subject O=org, CN=cn, the
 * subjectAltName san, valid from an hour ago for days days. */
static bool generate(const char *org, const char *cn, const char *san, long days, time_t now, X509 **xo,
                     EVP_PKEY **ko)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    bool ok = key && x && RAND_bytes(serial, sizeof serial) == 1;
    if (ok) {
        serial[0] &= 0x7f; /* positive */
        bn = BN_bin2bn(serial, sizeof serial, NULL);
        sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
        ok = sn && X509_set_version(x, X509_VERSION_3) && X509_set_serialNumber(x, sn);
    }
    if (ok) {
        ok = X509_time_adj_ex(X509_getm_notBefore(x), 0, -3600, &now) &&
             X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now);
    }
    X509_NAME *name = ok ? X509_get_subject_name(x) : NULL;
    if (ok)
        ok = X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)org, -1, -1, 0) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
             X509_set_issuer_name(x, name) && X509_set_pubkey(x, key);
    if (ok)
        ok = add_ext(x, NID_subject_alt_name, san) && add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, NID_key_usage, "critical,digitalSignature") && add_ext(x, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, NID_subject_key_identifier, "hash") && X509_sign(x, key, EVP_sha256()) > 0;
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(key);
        return false;
    }
    *xo = x;
    *ko = key;
    return true;
}

/* Write through a temporary file in the same directory, mode 0600, then
 * rename over the old one. */
static bool write_pem(const char *path, X509 *x, EVP_PKEY *k, char *why, size_t why_len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, why_len, "cannot write \"%s\": %s", tmp, strerror(errno));
        return false;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        snprintf(why, why_len, "cannot write \"%s\": %s", tmp, strerror(errno));
        return false;
    }
    bool ok = x ? PEM_write_X509(f, x) == 1 : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(why, why_len, "cannot write \"%s\": %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

ms_tls_material *ms_tls_self_signed(const char *dir, const char *bind, const char *host, time_t now,
                                    bool *generated, char *cert_path, size_t cert_path_len, char *why,
                                    size_t why_len)
{
    *generated = false;
    if (!mkdirs(dir, why, why_len))
        return NULL;
    char key_path[4200];
    snprintf(cert_path, cert_path_len, "%s/self-signed-%s.crt", dir, bind);
    snprintf(key_path, sizeof key_path, "%s/self-signed-%s.key", dir, bind);
    /* the names it must cover */
    char *names[4] = { "localhost", "127.0.0.1", "::1", NULL };
    char hostbuf[256];
    size_t n = 3;
    if (host && *host && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0) {
        snprintf(hostbuf, sizeof hostbuf, "%s", host);
        lower(hostbuf);
        names[n++] = hostbuf;
    }
    ms_strlist want = { names, n };
    ms_tls_at at;
    char reason[512];
    time_t later = now + SELF_SIGNED_MIN_LEFT;
    ms_tls_material *mt = ms_tls_material_load(cert_path, key_path, &want, later, &at, reason, sizeof reason);
    if (mt) {
        /* SNI picks it by every name it has: the bind has no other */
        return mt;
    }
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    char san[600];
    san_value(host && n == 4 ? hostbuf : NULL, san, sizeof san);
    if (!generate("Mothership self-signed", "localhost", san, SELF_SIGNED_DAYS, now, &x, &k)) {
        snprintf(why, why_len, "cannot generate a self-signed certificate: OpenSSL failed");
        ERR_clear_error();
        return NULL;
    }
    if (write_pem(key_path, NULL, k, why, why_len) && write_pem(cert_path, x, NULL, why, why_len)) {
        mt = ms_tls_material_from(x, NULL, k, NULL, now, &at, reason, sizeof reason);
        if (!mt)
            snprintf(why, why_len, "the generated certificate: %s", reason);
        else
            *generated = true;
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return mt;
}

/* ---------------------------------------------------------------- ACME placeholders */
ms_tls_material *ms_tls_placeholder(const char *name, time_t now)
{
    char san[300];
    if (!*name || strlen(name) > 253)
        return NULL;
    snprintf(san, sizeof san, "DNS:%s", name);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    /* a CN is at most 64 characters (RFC 5280); SNI goes by the SAN anyway */
    const char *cn = strlen(name) <= 64 ? name : "ACME placeholder";
    if (!generate("Mothership ACME placeholder", cn, san, PLACEHOLDER_DAYS, now, &x, &k)) {
        ERR_clear_error();
        return NULL;
    }
    ms_tls_at at;
    char reason[256];
    ms_tls_material *mt = ms_tls_material_from(x, NULL, k, NULL, now, &at, reason, sizeof reason);
    X509_free(x);
    EVP_PKEY_free(k);
    return mt;
}
