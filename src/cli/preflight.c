/* preflight.c: `mothership preflight [-c PATH]`: validate the manifest, check
 * every uplink in parallel (src/uplink) and, with [mothership.acme], the ACME
 * directory (a GET with the HTTP client, uplink/httpc.h, trusting ca_root
 * when set; the answer read by acme/msg.h) on a private libuv loop, and print
 * one aligned line per uplink and one for the directory:
 *   name  scheme://host:port  up|down  time  detail or error [(N attempts)] [(same as X)]
 *   acme  https://ca.example/dir  up|down  time  ACME directory[, terms of service: URL] or why
 * Exit 0 when every uplink and the directory are up (or there is nothing to
 * check), 1 when any is down or the manifest does not load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "acme/msg.h"
#include "cli/cli.h"
#include "uplink/httpc.h"
#include "uplink/uplink.h"

#define ACME_TIMEOUT_MS 10000
#define ACME_ROW_NAME "acme"

typedef struct preflight {
    const ms_cli *o;
    const ms_manifest *m;
    unsigned pending;            /* checks still running: the uplinks, the directory */
    ms_uplink_result *results;   /* a copy of the uplinks' results */
    size_t nresults;
    uint64_t acme_start_ns;
    uint64_t acme_ms;
    bool acme_up;
    char acme_text[700];         /* up: what it is; down: why */
} preflight;

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static void print_row(const preflight *pf, size_t wname, size_t waddr, size_t wtime, const char *name,
                      const char *addr, bool up, uint64_t ms, const char *text)
{
    const char *on = "", *off = "";
    char t[24];
    snprintf(t, sizeof t, "%llums", (unsigned long long)ms);
    if (pf->o->color) {
        on = up ? "\033[32m" : "\033[31m";
        off = "\033[0m";
    }
    printf("  %-*s  %-*s  %s%-4s%s  %*s  %s", (int)wname, name, (int)waddr, addr, on, up ? "up" : "down", off,
           (int)wtime, t, text);
}

static size_t time_width(uint64_t ms)
{
    char t[24];
    return (size_t)snprintf(t, sizeof t, "%llums", (unsigned long long)ms);
}

/* Every check is done: the table, the summary and the exit code. */
static int print_all(const preflight *pf)
{
    const ms_uplink_result *r = pf->results;
    size_t n = pf->nresults, nup = 0;
    bool acme = pf->m->global.acme.enabled;
    size_t wname = 4, waddr = 7, wtime = 2;
    for (size_t i = 0; i < n; i++) {
        wname = max_sz(wname, strlen(r[i].uplink->name));
        waddr = max_sz(waddr, strlen(r[i].address));
        wtime = max_sz(wtime, time_width(r[i].elapsed_ms));
        nup += r[i].up;
    }
    if (acme) {
        wname = max_sz(wname, strlen(ACME_ROW_NAME));
        waddr = max_sz(waddr, strlen(pf->m->global.acme.directory));
        wtime = max_sz(wtime, time_width(pf->acme_ms));
    }
    if (n == 0)
        printf("%s: checking the ACME directory\n", pf->m->path);
    else
        printf("%s: checking %zu uplink%s%s\n", pf->m->path, n, plural(n), acme ? " and the ACME directory" : "");
    for (size_t i = 0; i < n; i++) {
        print_row(pf, wname, waddr, wtime, r[i].uplink->name, r[i].address, r[i].up, r[i].elapsed_ms,
                  r[i].up ? r[i].detail : r[i].error);
        if (r[i].attempts > 1)
            printf(" (%u attempts)", r[i].attempts);
        if (r[i].same_as != MS_UPLINK_OWN)
            printf(" (same as %s)", r[r[i].same_as].uplink->name);
        putchar('\n');
    }
    if (acme) {
        print_row(pf, wname, waddr, wtime, ACME_ROW_NAME, pf->m->global.acme.directory, pf->acme_up, pf->acme_ms,
                  pf->acme_text);
        putchar('\n');
    }
    if (n > 0 && nup == n)
        printf("all %zu uplink%s up\n", n, plural(n));
    else if (n > 0)
        printf("%zu of %zu uplink%s down\n", n - nup, n, plural(n));
    if (acme)
        printf("the ACME directory is %s\n", pf->acme_up ? "up" : "down");
    fflush(stdout);
    return nup == n && (!acme || pf->acme_up) ? MS_EXIT_OK : MS_EXIT_FAIL;
}

static void on_uplinks(const ms_uplink_result *r, size_t n, void *arg)
{
    preflight *pf = arg;
    pf->pending--;
    if (n > 0) {
        pf->results = malloc(n * sizeof *r);
        if (!pf->results) {
            fprintf(stderr, "mothership: out of memory\n");
            return;
        }
        memcpy(pf->results, r, n * sizeof *r);
        pf->nresults = n;
    }
}

/* The directory check's verdict, from the response or the client's error. */
static void on_directory(void *arg, const ms_httpc_response *r, const char *error)
{
    preflight *pf = arg;
    pf->pending--;
    pf->acme_ms = (uv_hrtime() - pf->acme_start_ns) / 1000000;
    char *t = pf->acme_text;
    size_t cap = sizeof pf->acme_text;
    if (error) {
        snprintf(t, cap, "%s", error);
        return;
    }
    if (r->status < 200 || r->status > 299) {
        char problem[300];
        bool bad_nonce;
        if (ms_acme_parse_problem(r->body, r->body_len, problem, sizeof problem, &bad_nonce))
            snprintf(t, cap, "HTTP %d: %s", r->status, problem);
        else
            snprintf(t, cap, "HTTP %d", r->status);
        return;
    }
    char why[300];
    ms_acme_directory d;
    if (!ms_acme_parse_directory(r->body, r->body_len, &d, why, sizeof why)) {
        static const char prefix[] = "directory: ";
        const char *rest = strncmp(why, prefix, sizeof prefix - 1) == 0 ? why + sizeof prefix - 1 : why;
        if (strncmp(rest, "not JSON", 8) == 0)
            snprintf(t, cap, "%s", rest);
        else
            snprintf(t, cap, "not an ACME directory: %s", rest);
        return;
    }
    pf->acme_up = true;
    if (d.terms_of_service)
        snprintf(t, cap, "ACME directory, terms of service: %s", d.terms_of_service);
    else
        snprintf(t, cap, "ACME directory");
    ms_acme_directory_free(&d);
}

/* Start the GET of the directory; a client that cannot be made (ca_root
 * unreadable) is a down result at once. NULL: nothing to free. */
static ms_httpc *start_directory(uv_loop_t *loop, preflight *pf)
{
    const ms_acme_config *a = &pf->m->global.acme;
    pf->acme_start_ns = uv_hrtime();
    char why[300];
    ms_httpc *c = ms_httpc_new(loop, a->ca_root, why, sizeof why);
    if (!c) {
        snprintf(pf->acme_text, sizeof pf->acme_text, "%s", why);
        return NULL;
    }
    if (!ms_httpc_request(c, "GET", a->directory, NULL, NULL, 0, ACME_TIMEOUT_MS, on_directory, pf)) {
        snprintf(pf->acme_text, sizeof pf->acme_text, "out of memory");
        return c;
    }
    pf->pending++;
    return c;
}

int ms_cmd_preflight(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    bool acme = m->global.acme.enabled;
    if (m->nuplinks == 0 && !acme) {
        printf("%s: no uplinks to check\n", m->path);
        ms_manifest_free(m);
        return MS_EXIT_OK;
    }
    preflight pf = { .o = o, .m = m };
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "mothership: cannot start the event loop: %s\n", uv_strerror(rc));
        ms_manifest_free(m);
        return MS_EXIT_FAIL;
    }
    ms_httpc *httpc = acme ? start_directory(&loop, &pf) : NULL;
    if (m->nuplinks > 0) {
        rc = ms_uplink_check_all(&loop, m->uplinks, m->nuplinks, on_uplinks, &pf, NULL);
        if (rc < 0)
            fprintf(stderr, "mothership: cannot start the uplink checks: %s\n", uv_strerror(rc));
        else
            pf.pending++;
    }
    /* runs until every check, handle and (detached) DNS request is done */
    uv_run(&loop, UV_RUN_DEFAULT);
    ms_httpc_free(httpc);
    uv_run(&loop, UV_RUN_DEFAULT);
    int code = MS_EXIT_FAIL;
    if (pf.pending == 0 && (m->nuplinks == 0 || pf.results))
        code = print_all(&pf);
    rc = uv_loop_close(&loop);
    if (rc < 0)
        fprintf(stderr, "mothership: event loop did not close cleanly: %s\n", uv_strerror(rc));
    free(pf.results);
    ms_manifest_free(m);
    return code;
}
