/* test_manifest_acme.c: unit tests of [mothership.acme] and a bind's
 * tls = { acme = [...] } in the manifest: defaults, paths, names checked,
 * lower-cased, deduplicated and merged, every error at its line:column,
 * the checks across binds, and the offline warnings about ports. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "manifest_helpers.h"

#define BINDS "[mothership.bind]\nhttp = \"0.0.0.0:80\"\nhttps = \"0.0.0.0:443\"\n"

static void test_defaults(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load(BINDS "[mothership.acme]\ndomains = [\"example.com\"]\n", &d);
    assert_non_null(m);
    const ms_acme_config *a = &m->global.acme;
    assert_true(a->enabled);
    assert_string_equal(a->directory, MS_ACME_DEFAULT_DIRECTORY);
    assert_null(a->email);
    assert_null(a->state_dir);
    assert_null(a->ca_root);
    assert_int_equal(a->challenge, MS_ACME_HTTP_01);
    assert_int_equal(a->backoff_ms, 60 * 1000);
    assert_int_equal(a->max_backoff_ms, 6 * 3600 * 1000);
    assert_int_equal(a->domains.len, 1);
    assert_int_equal(a->pos.line, 4);
    /* https = "..." without [mothership.tls]: it serves the ACME certificates */
    assert_true(m->global.binds[1].tls);
    assert_null(m->global.binds[1].cert);
    ms_manifest_free(m);
    ms_diags_free(&d);

    /* no [mothership.acme]: nothing */
    m = load(BINDS "[mothership.tls]\ncert = \"/etc/passwd\"\nkey = \"/etc/passwd\"\n", &d);
    assert_non_null(m);
    assert_false(m->global.acme.enabled);
    assert_null(m->global.acme.directory);
    assert_int_equal(m->global.acme.domains.len, 0);
    ms_manifest_free(m);
    ms_diags_free(&d);

    /* a backoff over the default cap raises the cap */
    m = load(BINDS "[mothership.acme]\ndomains = [\"example.com\"]\nbackoff = \"10h\"\n", &d);
    assert_non_null(m);
    assert_int_equal(m->global.acme.max_backoff_ms, 10ull * 3600 * 1000);
    ms_manifest_free(m);
    ms_diags_free(&d);
}

static void test_every_key(void **state)
{
    (void)state;
    ms_diags d;
    ms_manifest *m = load_in("[mothership.bind]\nhttp = \"0.0.0.0:80\"\nhttps = \"0.0.0.0:443\"\n"
                             "admin = { address = \"0.0.0.0:8443\", tls = { acme = [\"Admin.Example.com\", "
                             "\"www.example.com\"] } }\n"
                             "[mothership.acme]\n"
                             "directory = \"https://127.0.0.1:14000/dir\"\n"
                             "email = \"ops@example.com\"\n"
                             "domains = [\"Example.COM\", \"www.example.com\", \"example.com\"]\n"
                             "state_dir = \"./acme-state\"\n"
                             "ca_root = \"/etc/passwd\"\n"
                             "challenge = \"tls-alpn-01\"\n"
                             "backoff = \"5s\"\n"
                             "max_backoff = \"1m\"\n",
                             "/srv/app", &d);
    for (size_t i = 0; !m && i < d.len; i++)
        fprintf(stderr, "  %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_non_null(m);
    const ms_acme_config *a = &m->global.acme;
    assert_string_equal(a->directory, "https://127.0.0.1:14000/dir");
    assert_string_equal(a->email, "ops@example.com");
    assert_string_equal(a->state_dir, "/srv/app/acme-state");
    assert_string_equal(a->ca_root, "/etc/passwd");
    assert_int_equal(a->challenge, MS_ACME_TLS_ALPN_01);
    assert_int_equal(a->backoff_ms, 5000);
    assert_int_equal(a->max_backoff_ms, 60000);
    /* lower-cased, deduplicated, then the bind's names not already there */
    assert_int_equal(a->domains.len, 3);
    assert_string_equal(a->domains.items[0], "example.com");
    assert_string_equal(a->domains.items[1], "www.example.com");
    assert_string_equal(a->domains.items[2], "admin.example.com");
    const ms_bind *admin = ms_manifest_find_bind(m, "admin");
    assert_non_null(admin);
    assert_true(admin->tls && admin->h2 && !admin->self_signed);
    assert_null(admin->cert);
    assert_int_equal(admin->acme.len, 2);
    assert_string_equal(admin->acme.items[0], "admin.example.com");
    assert_int_equal(a->directory_pos.line, 6);
    assert_int_equal(a->directory_pos.col, 13);
    assert_int_equal(a->ca_root_pos.line, 10);
    assert_int_equal(a->challenge_pos.line, 11);
    ms_manifest_free(m);
    ms_diags_free(&d);
}

#define ACME(x) BINDS "[mothership.acme]\n" x "\n"
/* [mothership.acme] for example.com with the keys x. */
#define ACME_EXAMPLE(x) ACME("domains = [\"example.com\"]\n" x)

static void test_names(void **state)
{
    (void)state;
    expect_error(ACME("domains = [\"example.com\", \"*.example.com\"]"), 5, 27,
                 "[mothership.acme]: \"domains\": \"*.example.com\" is a wildcard: http-01 and tls-alpn-01 cannot "
                 "prove one, list each name instead");
    expect_error(ACME("domains = [\"192.0.2.1\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"192.0.2.1\" is an IP address: ACME certificates here are for "
                 "DNS names");
    expect_error(ACME("domains = [\"2001:db8::1\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"2001:db8::1\" is an IP address: ACME certificates here are for "
                 "DNS names");
    expect_error(ACME("domains = [\"example.com.\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"example.com.\" ends with a dot: write the name without it");
    expect_error(ACME("domains = [\"localhost\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"localhost\" is not a fully qualified name (a CA issues for "
                 "names like example.com)");
    expect_error(ACME("domains = [\"exa mple.com\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"exa mple.com\" is not a DNS name (letters, digits, '-' and '.'; "
                 "an international name in its xn-- form)");
    expect_error(ACME("domains = [\"a..example.com\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"a..example.com\" has an empty label (\"..\" or a leading dot)");
    expect_error(ACME("domains = [\"-a.example.com\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"-a.example.com\" has a label that starts or ends with '-'");
    expect_error(ACME("domains = [\"\"]"), 5, 12, "[mothership.acme]: \"domains\": \"\" is empty");
    expect_error(ACME("domains = [\"a.b.1\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"a.b.1\" ends with a numeric label: not a DNS name a CA issues "
                 "for");
    expect_error(ACME("domains = [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com\"]"), 5, 12,
                 "[mothership.acme]: \"domains\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 ".com\" has a label longer than 63 characters");
    expect_error(ACME("domains = \"example.com\""), 5, 11,
                 "[mothership.acme]: \"domains\" must be an array of strings, not a string");
    /* a bind's names: the same rules, at the bind */
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\n"
                 "admin = { address = \"0.0.0.0:443\", tls = { acme = [\"*.example.com\"] } }\n"
                 "[mothership.acme]\n", 3, 52,
                 "bind \"admin\": \"acme\": \"*.example.com\" is a wildcard: http-01 and tls-alpn-01 cannot prove "
                 "one, list each name instead");
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\n"
                 "admin = { address = \"0.0.0.0:443\", tls = { acme = [] } }\n[mothership.acme]\n", 3, 51,
                 "bind \"admin\": \"acme\" must name at least one domain (a TLS bind without its own certificate "
                 "serves every ACME domain: write tls = true)");
}

static void test_key_errors(void **state)
{
    (void)state;
    expect_error(ACME_EXAMPLE("emial = \"ops@example.com\""), 6, 1,
                 "[mothership.acme]: unknown key \"emial\" (did you mean \"email\"?)");
    expect_error(ACME_EXAMPLE("challange = \"http-01\""), 6, 1,
                 "[mothership.acme]: unknown key \"challange\" (did you mean \"challenge\"?)");
    expect_error("[mothership]\nacmee = {}\n", 2, 1, "[mothership]: unknown key \"acmee\" (did you mean \"acme\"?)");
    expect_error("[mothership]\nacme = 1\n", 2, 8, "[mothership]: \"acme\" must be a table ([mothership.acme]), not "
                 "an integer");
    expect_error("[mothership.bind]\nadmin = { address = \"0.0.0.0:443\", tls = { acm = [\"a.example.com\"] } }\n",
                 2, 44, "bind \"admin\": unknown key \"acm\" (did you mean \"acme\"?)");
    /* [[mothership.tls.certs]] takes no acme */
    expect_error("[mothership.tls]\n[[mothership.tls.certs]]\ncert = \"/etc/passwd\"\nkey = \"/etc/passwd\"\n"
                 "acme = [\"a.example.com\"]\n", 5, 1,
                 "[[mothership.tls.certs]] #1: unknown key \"acme\" (ACME is set up in [mothership.acme])");
    expect_error(ACME_EXAMPLE("challenge = \"http01\""), 6, 13,
                 "[mothership.acme]: unknown challenge \"http01\" (did you mean \"http-01\"?) (\"http-01\" or "
                 "\"tls-alpn-01\")");
    expect_error(ACME_EXAMPLE("backoff = \"500ms\""), 6, 11, "[mothership.acme]: \"backoff\" must be at least 1s");
    expect_error(ACME_EXAMPLE("backoff = \"2m\"\nmax_backoff = \"1m\""), 7, 15,
                 "[mothership.acme]: \"max_backoff\" must be at least \"backoff\"");
    expect_error(ACME_EXAMPLE("email = \"ops@example.com, dev@example.com\""), 6, 9,
                 "[mothership.acme]: \"email\" \"ops@example.com, dev@example.com\" must be one address, without "
                 "spaces or commas");
    expect_error(ACME_EXAMPLE("email = \"ops.example.com\""), 6, 9,
                 "[mothership.acme]: \"email\" \"ops.example.com\" must be an address with one '@', like "
                 "ops@example.com");
    expect_error(ACME_EXAMPLE("email = \"ops@a@example.com\""), 6, 9,
                 "[mothership.acme]: \"email\" \"ops@a@example.com\" must be an address with one '@', like "
                 "ops@example.com");
    expect_error(ACME_EXAMPLE("email = \"mailto:ops@example.com\""), 6, 9,
                 "[mothership.acme]: \"email\" \"mailto:ops@example.com\" must not start with \"mailto:\" "
                 "(write the address alone: ops@example.com)");
    expect_error(ACME_EXAMPLE("email = \"ops@localhost\""), 6, 9,
                 "[mothership.acme]: \"email\" \"ops@localhost\" must be an address like ops@example.com: a name, "
                 "'@' and a domain");
    expect_error(ACME_EXAMPLE("directory = \"ftp://acme.example/dir\""), 6, 13,
                 "[mothership.acme]: \"directory\" \"ftp://acme.example/dir\": must be an http:// or https:// URL");
    expect_error(ACME_EXAMPLE("directory = \"redis://acme.example/dir\""), 6, 13,
                 "[mothership.acme]: \"directory\" \"redis://acme.example/dir\": must be an http:// or https:// URL");
    expect_error(ACME_EXAMPLE("directory = \"acme.example/dir\""), 6, 13,
                 "[mothership.acme]: \"directory\" \"acme.example/dir\": not a URL (expected scheme://host[:port])");
    expect_error(ACME_EXAMPLE("directory = \"https://me:pw@acme.example/dir\""), 6, 13,
                 "[mothership.acme]: \"directory\" \"https://me:pw@acme.example/dir\": must not carry a user name or "
                 "password");
    expect_error(ACME_EXAMPLE("directory = \"https://acme.example/a dir\""), 6, 13,
                 "[mothership.acme]: \"directory\" \"https://acme.example/a dir\": must not contain spaces or control "
                 "characters");
    expect_error(ACME_EXAMPLE("state_dir = \"\""), 6, 13, "[mothership.acme]: \"state_dir\" must not be empty");
    expect_error(ACME_EXAMPLE("ca_root = \"/nonexistent/ca.pem\""), 6, 11,
                 "[mothership.acme]: ca_root \"/nonexistent/ca.pem\" does not exist");
}

static void test_binds(void **state)
{
    (void)state;
    /* http-01 needs a plain TCP bind */
    expect_error("[mothership.bind]\nhttps = \"0.0.0.0:443\"\n[mothership.acme]\ndomains = [\"example.com\"]\n", 3, 1,
                 "[mothership.acme]: challenge \"http-01\" is answered on a plain (not TLS) TCP bind, and there is "
                 "none (add http = \"0.0.0.0:80\")");
    /* tls-alpn-01 a TLS TCP bind that serves ACME names */
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\nhttps = { address = \"0.0.0.0:443\", tls = \"self-signed\" }\n"
                 "[mothership.acme]\nchallenge = \"tls-alpn-01\"\ndomains = [\"example.com\"]\n", 5, 13,
                 "[mothership.acme]: challenge \"tls-alpn-01\" is answered in the TLS handshake, and no TCP bind "
                 "terminates TLS with the ACME certificates (add https = \"0.0.0.0:443\")");
    /* a name no TLS bind serves */
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\n"
                 "admin = { address = \"0.0.0.0:443\", tls = { acme = [\"admin.example.com\"] } }\n"
                 "[mothership.acme]\ndomains = [\"example.com\"]\n", 5, 11,
                 "[mothership.acme]: no TLS bind serves \"example.com\" (a bind with tls = true, or tls = { acme = "
                 "[\"example.com\"] }; binds with their own certificate or self-signed do not)");
    /* tls.acme without [mothership.acme] */
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\n"
                 "admin = { address = \"0.0.0.0:443\", tls = { acme = [\"admin.example.com\"] } }\n", 3, 42,
                 "bind \"admin\": tls.acme names certificates to order, but there is no "
                 "[mothership.acme] (add it, with email and, for testing, directory)");
    /* [mothership.acme] without a name */
    expect_error(BINDS "[mothership.acme]\nemail = \"ops@example.com\"\n", 4, 1,
                 "[mothership.acme]: no domains: list them in \"domains\", or in a bind's tls = { acme "
                 "= [...] }");
    /* own certificate or ACME names, not both */
    expect_error("[mothership.bind]\nhttp = \"0.0.0.0:80\"\nadmin = { address = \"0.0.0.0:443\", tls = { cert = "
                 "\"/etc/passwd\", key = \"/etc/passwd\", acme = [\"a.example.com\"] } }\n[mothership.acme]\n", 3, 44,
                 "bind \"admin\": \"cert\": a bind's tls has either its own certificate (cert, key, hosts) or ACME "
                 "names (acme), not both");
    /* tls = true without [mothership.tls] is still an error without ACME */
    expect_error("[mothership.bind]\nhttps = \"0.0.0.0:443\"\n", 2, 1,
                 "bind \"https\": terminates TLS but there is no [mothership.tls] with cert and key");
}

/* Loads text from a file with the offline warnings; returns them joined. */
static char *warnings_of(const char *text)
{
    char path[] = "/tmp/ms-test-acme-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ms_diags d, w;
    ms_diags_init(&d, "t.toml");
    ms_diags_init(&w, "t.toml");
    ms_load_opts opts = { .warnings = &w };
    ms_manifest *m = ms_manifest_load_opts(path, &d, &opts);
    unlink(path);
    for (size_t i = 0; !m && i < d.len; i++)
        fprintf(stderr, "  %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
    assert_non_null(m);
    ms_manifest_free(m);
    char *out = calloc(1, 4096);
    assert_non_null(out);
    for (size_t i = 0; i < w.len; i++)
        snprintf(out + strlen(out), 4096 - strlen(out), "%d:%d: %s\n", w.items[i].line, w.items[i].col,
                 w.items[i].msg);
    ms_diags_free(&d);
    ms_diags_free(&w);
    return out;
}

/* "acme" written where it does not belong says where it goes. */
static void test_acme_key_misplaced(void **state)
{
    (void)state;
    expect_error("[mothership.bind]\nhttps = { address = \"0.0.0.0:443\", acme = [\"a.example.com\"] }\n", 2, 36,
                 "bind \"https\": unknown key \"acme\" (a bind's ACME names go in its tls: "
                 "tls = { acme = [...] })");
    expect_error("[mothership.bind]\nhttps = \"0.0.0.0:443\"\n[mothership.tls]\nacme = [\"a.example.com\"]\n", 4, 1,
                 "[mothership.tls]: unknown key \"acme\" (ACME is set up in [mothership.acme])");
    expect_error("[mothership.bind]\nhttps = \"0.0.0.0:443\"\n[[mothership.tls.certs]]\nacme = [\"a.example.com\"]\n",
                 4, 1, "[[mothership.tls.certs]] #1: unknown key \"acme\" (ACME is set up in [mothership.acme])");
}

static void test_port_warnings(void **state)
{
    (void)state;
    char *w = warnings_of(BINDS "[mothership.acme]\ndomains = [\"example.com\"]\n");
    assert_string_equal(w, "");
    free(w);
    w = warnings_of("[mothership.bind]\nhttp = \"127.0.0.1:8080\"\nhttps = \"127.0.0.1:8443\"\n"
                    "[mothership.acme]\ndomains = [\"example.com\"]\n");
    assert_string_equal(w, "4:1: warning: [mothership.acme]: challenge \"http-01\": no plain bind is on port 80 "
                           "(bind \"http\" is on 8080); a public CA connects to port 80, so this works only with a "
                           "port forward or a private CA\n");
    free(w);
    w = warnings_of("[mothership.bind]\nhttp = \"0.0.0.0:80\"\nhttps = \"127.0.0.1:8443\"\n"
                    "[mothership.acme]\ndomains = [\"example.com\"]\nchallenge = \"tls-alpn-01\"\n");
    assert_string_equal(w, "6:13: warning: [mothership.acme]: challenge \"tls-alpn-01\": no TLS bind is on port 443 "
                           "(bind \"https\" is on 8443); a public CA connects to port 443, so this works only with a "
                           "port forward or a private CA\n");
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_binds),
        cmocka_unit_test(test_port_warnings),
        cmocka_unit_test(test_acme_key_misplaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
