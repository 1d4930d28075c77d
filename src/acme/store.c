/* store.c: the ACME client's state directory (engine.h, acme.h): made
 * 0700, account.json read and written, a name's stored certificate and
 * key read back and checked. The files are written by material.c's
 * atomic 0600 writers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "acme/engine.h"
#include "acme/material.h"
#include "tls/cert.h"

bool ms_acme_mkdirs(const char *path, char *why, size_t why_len)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        snprintf(why, why_len, "state directory \"%s\": path too long", path);
        return false;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char was = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            snprintf(why, why_len, "cannot make the state directory %s: %s", buf, strerror(errno));
            return false;
        }
        *p = was;
        if (was == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(why, why_len, "state directory %s: %s", path, errno ? strerror(errno) : "not a directory");
        return false;
    }
    if (st.st_uid == geteuid() && (st.st_mode & 077) != 0 && chmod(path, 0700) != 0) {
        snprintf(why, why_len, "cannot make %s private (mode 0700): %s", path, strerror(errno));
        return false;
    }
    return true;
}

bool ms_acme_cert_paths(const char *dir, const char *name, char *crt, char *key, size_t cap)
{
    int a = snprintf(crt, cap, "%s/certs/%s.crt", dir, name);
    int b = snprintf(key, cap, "%s/certs/%s.key", dir, name);
    return a > 0 && (size_t)a < cap && b > 0 && (size_t)b < cap;
}

char *ms_acme_account_url_load(const char *dir, const char *directory)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/account.json", dir) >= sizeof path)
        return NULL;
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return NULL;
    char *url = NULL;
    const char *d = json_string_value(json_object_get(j, "directory"));
    const char *u = json_string_value(json_object_get(j, "url"));
    if (d && u && strcmp(d, directory) == 0)
        url = strdup(u);
    json_decref(j);
    return url;
}

bool ms_acme_account_url_save(const char *dir, const char *directory, const char *url, char *why, size_t why_len)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/account.json", dir) >= sizeof path) {
        snprintf(why, why_len, "%s/account.json: path too long", dir);
        return false;
    }
    json_t *j = json_pack("{s:s, s:s}", "directory", directory, "url", url);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text) {
        snprintf(why, why_len, "out of memory");
        return false;
    }
    size_t len = strlen(text);
    bool ok = ms_acme_file_save(path, text, len, why, why_len);
    free(text);
    return ok;
}

/* The whole file, at most MS_TLS_MAX_PEM bytes; NULL with why. */
static char *read_small(const char *path, size_t *len, bool *missing, char *why, size_t why_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MS_TLS_MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, MS_TLS_MAX_PEM + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > MS_TLS_MAX_PEM) {
        snprintf(why, why_len, "%s: %s", path, !buf ? "out of memory" : err ? "read error" : "over 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

bool ms_acme_cert_load(const char *dir, const char *name, time_t now, EVP_PKEY **key, X509 **leaf,
                       STACK_OF(X509) * *chain, time_t *not_before, time_t *not_after, bool *missing, char *why,
                       size_t why_len)
{
    char crt[4096], kp[4096];
    *missing = false;
    if (!ms_acme_cert_paths(dir, name, crt, kp, sizeof crt)) {
        snprintf(why, why_len, "%s/certs/%s: path too long", dir, name);
        return false;
    }
    bool crt_missing = access(crt, F_OK) != 0 && errno == ENOENT;
    bool key_missing = access(kp, F_OK) != 0 && errno == ENOENT;
    if (crt_missing && key_missing) {
        *missing = true;
        snprintf(why, why_len, "no stored certificate");
        return false;
    }
    bool km = false;
    char kwhy[256];
    EVP_PKEY *k = ms_acme_key_load(kp, &km, kwhy, sizeof kwhy);
    if (!k) {
        snprintf(why, why_len, "%s: %s", kp, kwhy);
        return false;
    }
    size_t len = 0;
    bool cm = false;
    char *pem = read_small(crt, &len, &cm, why, why_len);
    if (!pem) {
        EVP_PKEY_free(k);
        return false;
    }
    char cwhy[256];
    bool ok = ms_acme_chain_parse(pem, len, k, name, leaf, chain, not_before, not_after, cwhy, sizeof cwhy);
    free(pem);
    if (!ok) {
        snprintf(why, why_len, "%s: %s", crt, cwhy);
        EVP_PKEY_free(k);
        return false;
    }
    if (*not_after <= now) {
        snprintf(why, why_len, "%s: expired", crt);
        X509_free(*leaf);
        sk_X509_pop_free(*chain, X509_free);
        EVP_PKEY_free(k);
        return false;
    }
    *key = k;
    return true;
}

bool ms_acme_cert_save(const char *dir, const char *name, EVP_PKEY *key, const char *pem, size_t len, char *why,
                       size_t why_len)
{
    char crt[4096], kp[4096], crt_new[4200], key_new[4200];
    if (!ms_acme_cert_paths(dir, name, crt, kp, sizeof crt)) {
        snprintf(why, why_len, "%s/certs/%s: path too long", dir, name);
        return false;
    }
    snprintf(crt_new, sizeof crt_new, "%s.new", crt);
    snprintf(key_new, sizeof key_new, "%s.new", kp);
    /* both written whole first: a failure leaves the stored pair as it was */
    bool ok = ms_acme_file_save(crt_new, pem, len, why, why_len) && ms_acme_key_save(key, key_new, why, why_len);
    if (ok && rename(key_new, kp) != 0) {
        snprintf(why, why_len, "cannot rename \"%s\" to \"%s\": %s", key_new, kp, strerror(errno));
        ok = false;
    }
    if (ok && rename(crt_new, crt) != 0) {
        snprintf(why, why_len, "cannot rename \"%s\" to \"%s\": %s", crt_new, crt, strerror(errno));
        ok = false;
    }
    if (!ok) {
        unlink(crt_new);
        unlink(key_new);
        return false;
    }
    char certs[4096]; /* the renames on disk (best effort) */
    if ((size_t)snprintf(certs, sizeof certs, "%s/certs", dir) < sizeof certs) {
        int fd = open(certs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            (void)fsync(fd);
            close(fd);
        }
    }
    return true;
}
