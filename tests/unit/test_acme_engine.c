/* test_acme_engine.c: the ACME client's socket-free parts: the renewal
 * schedule, the backoff and poll pauses, the state directory's layout
 * and modes, stored certificates read back (good,
 * expired, for another key, missing), and ms_acme_new on a manifest:
 * the account key made once and kept, a stored certificate loaded (not
 * pending, its expiry in the metrics), a name without one pending. */
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

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "acme/check.h"
#include "acme/engine.h"
#include "acme/material.h"
#include "cert_helpers.h"
#include "manifest_helpers.h"

#define DAY (24 * 3600L)

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ms-test-acme-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int)(st.st_mode & 0777);
}

/* ---------------------------------------------------------------- schedule */

static void renew_at_two_thirds_minus_jitter(void **state)
{
    (void)state;
    time_t nb = 1000000, na = nb + 90 * DAY;
    assert_int_equal(ms_acme_renew_at(nb, na, 0), nb + 60 * DAY);
    time_t late = ms_acme_renew_at(nb, na, 0.999);
    assert_true(late < nb + 60 * DAY);
    assert_true(late >= nb + 60 * DAY - 9 * DAY); /* at most a tenth of the lifetime early */
    time_t mid = ms_acme_renew_at(nb, na, 0.5);
    assert_true(mid < nb + 60 * DAY && mid > late);
    /* out-of-range jitter is no jitter */
    assert_int_equal(ms_acme_renew_at(nb, na, 7), nb + 60 * DAY);
}

static void renew_at_short_lifetimes(void **state)
{
    (void)state;
    time_t nb = 5000;
    /* 5 minutes: 2/3 is 200 s, a minute early is 240 s: 200 s */
    assert_int_equal(ms_acme_renew_at(nb, nb + 300, 0), nb + 200);
    /* 2 minutes: 2/3 is 80 s, but a minute before the end is 60 s */
    assert_int_equal(ms_acme_renew_at(nb, nb + 120, 0), nb + 60);
    /* 40 s: a minute early is impossible; half way, not at once */
    assert_int_equal(ms_acme_renew_at(nb, nb + 40, 0.9), nb + 20);
    /* nonsense validity */
    assert_int_equal(ms_acme_renew_at(nb, nb - 10, 0), nb);
}

static void backoff_doubles_up_to_max(void **state)
{
    (void)state;
    uint64_t b = 60000, max = 6 * 3600 * 1000ull;
    assert_int_equal(ms_acme_backoff_ms(b, max, 1, 0), 60000);
    assert_int_equal(ms_acme_backoff_ms(b, max, 2, 0), 120000);
    assert_int_equal(ms_acme_backoff_ms(b, max, 3, 0), 240000);
    assert_int_equal(ms_acme_backoff_ms(b, max, 30, 0), max);
    assert_int_equal(ms_acme_backoff_ms(b, max, 4000000000u, 0), max);
    uint64_t j = ms_acme_backoff_ms(b, max, 2, 0.999);
    assert_true(j < 120000 && j >= 108000);
    /* a max below the backoff is the backoff; never under a second */
    assert_int_equal(ms_acme_backoff_ms(5000, 1000, 3, 0), 5000);
    assert_int_equal(ms_acme_backoff_ms(10, 10, 1, 0), 1000);
}

static void poll_pauses(void **state)
{
    (void)state;
    assert_int_equal(ms_acme_poll_ms(0, -1), 1000);
    assert_int_equal(ms_acme_poll_ms(1, -1), 2000);
    assert_int_equal(ms_acme_poll_ms(2, -1), 4000);
    assert_int_equal(ms_acme_poll_ms(3, -1), MS_ACME_POLL_CAP_MS);
    assert_int_equal(ms_acme_poll_ms(50, -1), MS_ACME_POLL_CAP_MS);
    assert_int_equal(ms_acme_poll_ms(0, 0), 1000);
    assert_int_equal(ms_acme_poll_ms(5, 3), 3000);
    assert_int_equal(ms_acme_poll_ms(0, 86400), MS_ACME_RETRY_AFTER_MAX_S * 1000);
}

static void random01_in_range(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++) {
        double r = ms_acme_random01();
        assert_true(r >= 0 && r < 1);
    }
}

/* ---------------------------------------------------------------- the state directory */

static void mkdirs_private(void **state)
{
    (void)state;
    char path[512], why[256];
    snprintf(path, sizeof path, "%s/a/b/c", tmpdir);
    assert_true(ms_acme_mkdirs(path, why, sizeof why));
    assert_int_equal(mode_of(path), 0700);
    snprintf(path, sizeof path, "%s/open", tmpdir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_true(ms_acme_mkdirs(path, why, sizeof why));
    assert_int_equal(mode_of(path), 0700);
    /* a file in the way */
    snprintf(path, sizeof path, "%s/file", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/sub", tmpdir);
    assert_false(ms_acme_mkdirs(path, why, sizeof why));
    assert_non_null(strstr(why, "file"));
}

static void account_json_roundtrip(void **state)
{
    (void)state;
    char why[256], path[512];
    assert_null(ms_acme_account_url_load(tmpdir, "https://ca/dir"));
    assert_true(ms_acme_account_url_save(tmpdir, "https://ca/dir", "https://ca/acct/1", why, sizeof why));
    snprintf(path, sizeof path, "%s/account.json", tmpdir);
    assert_int_equal(mode_of(path), 0600);
    char *u = ms_acme_account_url_load(tmpdir, "https://ca/dir");
    assert_non_null(u);
    assert_string_equal(u, "https://ca/acct/1");
    free(u);
    assert_null(ms_acme_account_url_load(tmpdir, "https://other/dir")); /* written for another CA */
}

/* A certificate for name by key, valid now+from .. now+to, self-signed. */
static char *cert_pem(EVP_PKEY *key, const char *name, long from, long to)
{
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", name);
    X509 *x = make_cert(name, san, from, to, key, NULL, NULL, false);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)len);
    BIO_free(b);
    X509_free(x);
    return out;
}

/* Store a certificate for name under dir/certs; key_for: the key in the
 * certificate (NULL: the stored key). */
static void store_cert(const char *dir, const char *name, long from, long to, bool other_key)
{
    char crt[600], kp[600], why[256], certs[600];
    snprintf(certs, sizeof certs, "%s/certs", dir);
    assert_true(ms_acme_mkdirs(certs, why, sizeof why));
    assert_true(ms_acme_cert_paths(dir, name, crt, kp, sizeof crt));
    EVP_PKEY *key = ms_acme_key_new();
    EVP_PKEY *other = ms_acme_key_new();
    assert_non_null(key);
    assert_non_null(other);
    char *pem = cert_pem(other_key ? other : key, name, from, to);
    assert_true(ms_acme_key_save(key, kp, why, sizeof why));
    assert_true(ms_acme_file_save(crt, pem, strlen(pem), why, sizeof why));
    free(pem);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void stored_certificates(void **state)
{
    (void)state;
    EVP_PKEY *key;
    X509 *leaf;
    STACK_OF(X509) * chain;
    time_t nb, na, now = time(NULL);
    bool missing;
    char why[600];
    store_cert(tmpdir, "good.test", -DAY, 89 * DAY, false);
    assert_true(ms_acme_cert_load(tmpdir, "good.test", now, &key, &leaf, &chain, &nb, &na, &missing, why, sizeof why));
    assert_true(na > now + 88 * DAY && nb < now);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    char path[600];
    snprintf(path, sizeof path, "%s/certs/good.test.key", tmpdir);
    assert_int_equal(mode_of(path), 0600);
    snprintf(path, sizeof path, "%s/certs/good.test.crt", tmpdir);
    assert_int_equal(mode_of(path), 0600);

    store_cert(tmpdir, "old.test", -10 * DAY, -DAY, false);
    assert_false(ms_acme_cert_load(tmpdir, "old.test", now, &key, &leaf, &chain, &nb, &na, &missing, why, sizeof why));
    assert_false(missing);
    assert_non_null(strstr(why, "expired"));

    store_cert(tmpdir, "other.test", -DAY, DAY, true);
    assert_false(
        ms_acme_cert_load(tmpdir, "other.test", now, &key, &leaf, &chain, &nb, &na, &missing, why, sizeof why));
    assert_false(missing);

    assert_false(ms_acme_cert_load(tmpdir, "none.test", now, &key, &leaf, &chain, &nb, &na, &missing, why, sizeof why));
    assert_true(missing);
}

/* ---------------------------------------------------------------- ms_acme_new */

static ms_manifest *acme_manifest(ms_diags *d)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[mothership]\nstate_dir = \"%s/state\"\n"
             "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\nhttps = \"127.0.0.1:18443\"\n"
             "[mothership.acme]\n"
             "directory = \"https://127.0.0.1:9/dir\"\n"
             "domains = [\"a.test\", \"b.test\"]\n"
             "state_dir = \"%s/acme\"\n"
             "[[fleet.web]]\nname = \"web\"\ncommand = \"true\"\n",
             tmpdir, tmpdir);
    ms_manifest *m = load_in(text, tmpdir, d);
    if (!m)
        for (size_t i = 0; i < d->len; i++)
            fprintf(stderr, "%d:%d: %s\n", d->items[i].line, d->items[i].col, d->items[i].msg);
    return m;
}

static void new_loads_state(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = acme_manifest(&d);
    assert_non_null(m);
    assert_true(m->global.acme.enabled);
    char path[700], why[512];
    char *dir = ms_acme_state_dir(m);
    assert_non_null(dir);
    char want[600];
    snprintf(want, sizeof want, "%s/acme/127.0.0.1_9_dir", tmpdir);
    assert_string_equal(dir, want);
    store_cert(dir, "a.test", -DAY, 89 * DAY, false);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ms_log *log = ms_log_open(STDERR_FILENO, true, false);
    assert_non_null(log);
    ms_acme_board *board = ms_acme_board_new();
    assert_non_null(board);
    ms_acme_deps deps = { .loop = &loop, .m = m, .tls = NULL, .board = board, .log = log };
    ms_acme *a = ms_acme_new(&deps, why, sizeof why);
    assert_non_null(a);
    assert_int_equal(mode_of(dir), 0700);
    snprintf(path, sizeof path, "%s/account.key", dir);
    assert_int_equal(mode_of(path), 0600);
    struct stat st1;
    assert_int_equal(stat(path, &st1), 0);

    ms_buf names;
    ms_buf_init(&names, 0);
    assert_int_equal(ms_acme_pending(a, &names), 1);
    assert_string_equal(names.data, "[\"b.test\"]");
    ms_buf_free(&names);
    assert_int_equal(ms_acme_pending(a, NULL), 1);

    ms_buf out;
    ms_buf_init(&out, 0);
    ms_prom p;
    ms_prom_init(&p, &out);
    ms_acme_render_metrics(a, &p);
    assert_false(ms_buf_failed(&out));
    assert_non_null(strstr(out.data, "mothership_acme_certificate_expiry_timestamp_seconds{name=\"a.test\"} "));
    assert_null(strstr(out.data, "name=\"b.test\""));
    assert_non_null(strstr(out.data, "mothership_acme_certificate_renewal_timestamp_seconds{name=\"a.test\"} "));
    assert_non_null(strstr(out.data, "mothership_acme_orders_total{result=\"valid\"} 0"));
    assert_non_null(strstr(out.data, "mothership_acme_orders_total{result=\"invalid\"} 0"));
    assert_non_null(strstr(out.data, "mothership_acme_orders_total{result=\"error\"} 0"));
    ms_buf_free(&out);
    ms_acme_free(a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    /* again: the same account key, not a new one */
    a = ms_acme_new(&deps, why, sizeof why);
    assert_non_null(a);
    struct stat st2;
    assert_int_equal(stat(path, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    ms_acme_free(a);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    /* an account key that is not one */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    assert_null(ms_acme_new(&deps, why, sizeof why));
    assert_non_null(strstr(why, "account.key"));

    assert_int_equal(uv_loop_close(&loop), 0);
    ms_acme_board_free(board);
    ms_log_close(log);
    free(dir);
    ms_manifest_free(m);
    ms_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(renew_at_two_thirds_minus_jitter),
        cmocka_unit_test(renew_at_short_lifetimes),
        cmocka_unit_test(backoff_doubles_up_to_max),
        cmocka_unit_test(poll_pauses),
        cmocka_unit_test(random01_in_range),
        cmocka_unit_test_setup_teardown(mkdirs_private, setup, teardown),
        cmocka_unit_test_setup_teardown(account_json_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(stored_certificates, setup, teardown),
        cmocka_unit_test_setup_teardown(new_loads_state, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
