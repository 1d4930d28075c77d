/* check.c: clearance's offline checks of [mothership.acme]: the CA file
 * to trust for the directory, and what an earlier run stored (the
 * account key, each name's certificate and key) read with the rules the
 * ACME client applies (acme/material.h: ECDSA P-256 keys, a chain whose
 * leaf matches its key and covers its name), so that a run does not stop
 * on them.
 * Also where that state lives (ms_acme_state_dir), for the client too. */
#include "acme/check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls/cert.h"
#include "util/strutil.h"

#define STATE_NAME_MAX 200
#define CHAIN_MAX (1u << 20) /* a stored chain is a few KiB */

/* ---------------------------------------------------------------- where */
static void name_put(char *out, size_t *n, char c)
{
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    if (c >= 'A' && c <= 'Z') {
        c = (char)(c - 'A' + 'a');
        keep = true;
    }
    if (*n < STATE_NAME_MAX)
        out[(*n)++] = keep ? c : '_';
}

char *ms_acme_state_dir(const ms_manifest *m)
{
    const ms_acme_config *a = &m->global.acme;
    ms_uplink u = { 0 };
    char why[160];
    if (!a->directory || !ms_uplink_url_parse(a->directory, &u, why, sizeof why))
        return NULL;
    char name[STATE_NAME_MAX + 1];
    size_t n = 0;
    for (const char *p = u.host; *p; p++)
        name_put(name, &n, *p);
    char port[8];
    snprintf(port, sizeof port, "_%u", (unsigned)u.port);
    for (const char *p = port; *p; p++)
        name_put(name, &n, *p);
    if (strcmp(u.path, "/") != 0)
        for (const char *p = u.path; *p; p++)
            name_put(name, &n, *p);
    name[n] = '\0';
    free(u.scheme);
    free(u.host);
    free(u.path);
    char *root = a->state_dir ? ms_strdup(a->state_dir) : NULL;
    if (!a->state_dir) {
        char *base = ms_tls_state_dir(m);
        root = base ? ms_asprintf("%s/acme", base) : NULL;
        free(base);
    }
    char *dir = root ? ms_asprintf("%s/%s", root, name) : NULL;
    free(root);
    return dir;
}

/* ---------------------------------------------------------------- checks */
typedef struct checker {
    const ms_acme_config *a;
    ms_diags *d;
    size_t n;
} checker;

static void problem(checker *k, ms_pos at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(checker *k, ms_pos at, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ms_diag_add(k->d, at.line, at.col, "[mothership.acme]: %s", msg);
    k->n++;
}

static ms_pos state_pos(const ms_acme_config *a)
{
    return a->state_dir_pos.line ? a->state_dir_pos : a->pos;
}

/* The first OpenSSL error's reason, or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

static void check_ca_root(checker *k)
{
    const char *path = k->a->ca_root;
    ERR_clear_error();
    FILE *f = fopen(path, "r");
    BIO *bio = f ? BIO_new_fp(f, BIO_CLOSE) : NULL;
    if (!bio) {
        problem(k, k->a->ca_root_pos, "ca_root \"%s\" cannot be read: %s", path, f ? "out of memory" :
                strerror(errno));
        if (f)
            fclose(f);
        ERR_clear_error();
        return;
    }
    size_t certs = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        certs++;
        X509_free(x);
    }
    /* the loop ends at the end of the file (PEM_R_NO_START_LINE) or at a
     * block that does not parse */
    unsigned long e = ERR_peek_last_error();
    bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (certs == 0)
        problem(k, k->a->ca_root_pos, "ca_root \"%s\" holds no PEM certificate (a file of \"-----BEGIN "
                "CERTIFICATE-----\" blocks)", path);
    else if (e && !clean_end)
        problem(k, k->a->ca_root_pos, "ca_root \"%s\": certificate %zu does not parse: %s", path, certs + 1,
                ssl_reason("not PEM"));
    ERR_clear_error();
    BIO_free(bio);
}

/* The whole file, NUL-terminated; NULL with errno (EFBIG: too large). */
static char *read_small(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(CHAIN_MAX + 1);
    size_t n = buf ? fread(buf, 1, CHAIN_MAX + 1, f) : 0;
    int err = !buf ? ENOMEM : ferror(f) ? EIO : n > CHAIN_MAX ? EFBIG : 0;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* No passphrase: without this callback OpenSSL asks for one on the
 * terminal, and clearance would wait there. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* A private key as the ACME client takes it: PEM, ECDSA P-256, not
 * encrypted. NULL with the reason; *missing when the file does not exist. */
static EVP_PKEY *key_load(const char *path, bool *missing, char *why, size_t why_len)
{
    *missing = false;
    ERR_clear_error();
    FILE *f = fopen(path, "r");
    if (!f) {
        *missing = errno == ENOENT;
        snprintf(why, why_len, "%s", *missing ? "does not exist" : strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    bool encrypted = false;
    if (!key) { /* "BEGIN ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" */
        char line[256];
        rewind(f);
        while (!encrypted && fgets(line, sizeof line, f))
            encrypted = strstr(line, "ENCRYPTED") != NULL;
    }
    fclose(f);
    char group[64] = "";
    if (encrypted) {
        snprintf(why, why_len, "is encrypted; a passphrase is not supported");
    } else if (!key) {
        snprintf(why, why_len, "not a PEM private key (%s)", ssl_reason("no key"));
    } else if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
        snprintf(why, why_len, "is an %s key: ACME keys here are ECDSA P-256",
                 EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA ? "RSA" : "other");
    } else if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) ||
               strcmp(group, "prime256v1") != 0) {
        snprintf(why, why_len, "is an EC key on %s: ACME keys here are ECDSA P-256", *group ? group : "another curve");
    } else {
        ERR_clear_error();
        return key;
    }
    ERR_clear_error();
    EVP_PKEY_free(key);
    return NULL;
}

/* A stored chain (PEM, leaf first): the leaf's key is key and it covers
 * name in its subjectAltName (never the subject CN, as the client). false
 * with the reason. */
static bool chain_fits(const char *pem, size_t len, EVP_PKEY *key, const char *name, char *why, size_t why_len)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    bool ok = false;
    if (!leaf)
        snprintf(why, why_len, "no PEM certificate in it (%s)", ssl_reason("empty"));
    else if (X509_check_private_key(leaf, key) != 1)
        snprintf(why, why_len, "it is for another key than its .key file");
    else if (X509_check_host(leaf, name, strlen(name), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1)
        snprintf(why, why_len, "it does not cover \"%s\" in its subjectAltName", name);
    else
        ok = true;
    X509_free(leaf);
    BIO_free(bio);
    ERR_clear_error();
    return ok;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

static void check_account(checker *k, const char *dir)
{
    char *path = ms_asprintf("%s/account.key", dir);
    if (!path) {
        problem(k, state_pos(k->a), "out of memory");
        return;
    }
    bool missing = false;
    char why[300];
    EVP_PKEY *key = key_load(path, &missing, why, sizeof why);
    if (key)
        EVP_PKEY_free(key);
    else if (!missing)
        problem(k, state_pos(k->a), "the account key \"%s\" does not load: %s (move it away to register a new "
                "account)", path, why);
    free(path);
}

static void check_name(checker *k, const char *dir, const char *name)
{
    char *crt = ms_asprintf("%s/certs/%s.crt", dir, name), *keyp = ms_asprintf("%s/certs/%s.key", dir, name);
    if (!crt || !keyp) {
        problem(k, state_pos(k->a), "out of memory");
        goto out;
    }
    bool have_crt = exists(crt), have_key = exists(keyp);
    if (!have_crt && !have_key)
        goto out; /* not ordered yet */
    if (!have_key) {
        problem(k, state_pos(k->a), "\"%s\": the certificate \"%s\" has no key \"%s\"", name, crt, keyp);
        goto out;
    }
    bool missing = false;
    char why[300];
    EVP_PKEY *key = key_load(keyp, &missing, why, sizeof why);
    if (!key) {
        problem(k, state_pos(k->a), "\"%s\": the key \"%s\" does not load: %s", name, keyp, why);
        goto out;
    }
    size_t len = 0;
    char *pem = have_crt ? read_small(crt, &len) : NULL;
    if (!pem && have_crt)
        problem(k, state_pos(k->a), "\"%s\": the certificate \"%s\" cannot be read: %s", name, crt,
                errno == EFBIG ? "it is over 1 MiB" : strerror(errno));
    if (pem && !chain_fits(pem, len, key, name, why, sizeof why))
        problem(k, state_pos(k->a), "\"%s\": the certificate \"%s\" does not fit: %s (move it away to order a "
                "new one)", name, crt, why);
    free(pem);
    EVP_PKEY_free(key);
out:
    free(crt);
    free(keyp);
}

/* The state directory is made at start (mode 0700, with its parents): its
 * nearest existing ancestor must be a directory this user can write, or
 * the run would stop there with no position in the manifest. */
static void check_makeable(checker *k, const char *dir)
{
    char *up = ms_strdup(dir);
    if (!up) {
        problem(k, state_pos(k->a), "out of memory");
        return;
    }
    struct stat st;
    for (;;) {
        char *slash = strrchr(up, '/');
        if (!slash) {
            strcpy(up, ".");
            break;
        }
        if (slash == up) {
            up[1] = '\0';
            break;
        }
        *slash = '\0';
        if (stat(up, &st) == 0 || (errno != ENOENT && errno != ENOTDIR))
            break;
    }
    if (stat(up, &st) != 0)
        problem(k, state_pos(k->a), "cannot make the state directory \"%s\": \"%s\": %s (state_dir must be a "
                "directory Mothership's user can create and write)", dir, up, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        problem(k, state_pos(k->a), "cannot make the state directory \"%s\": \"%s\" is not a directory "
                "(state_dir must be a directory Mothership's user can create and write)", dir, up);
    else if (access(up, W_OK | X_OK) != 0)
        problem(k, state_pos(k->a), "cannot make the state directory \"%s\": \"%s\" is not writable: %s "
                "(state_dir must be a directory Mothership's user can create and write)", dir, up, strerror(errno));
    free(up);
}

size_t ms_acme_check(const ms_manifest *m, ms_diags *diags)
{
    const ms_acme_config *a = &m->global.acme;
    if (!a->enabled)
        return 0;
    checker k = { a, diags, 0 };
    if (a->ca_root)
        check_ca_root(&k);
    char *dir = ms_acme_state_dir(m);
    if (!dir) {
        problem(&k, state_pos(a), "cannot name the state directory of \"%s\"", a->directory);
        return k.n;
    }
    struct stat st;
    bool there = stat(dir, &st) == 0;
    if (there && !S_ISDIR(st.st_mode))
        problem(&k, state_pos(a), "the state directory \"%s\" is not a directory", dir);
    else if (!there)
        check_makeable(&k, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        problem(&k, state_pos(a), "the state directory \"%s\" is not writable: %s (state_dir must be a directory "
                "Mothership's user can write)", dir, strerror(errno));
    else {
        check_account(&k, dir);
        for (size_t i = 0; i < a->domains.len; i++)
            check_name(&k, dir, a->domains.items[i]);
    }
    free(dir);
    return k.n;
}
