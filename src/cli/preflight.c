/* preflight.c: `mothership preflight [-c PATH]`: validate the manifest, check
 * every uplink in parallel (src/uplink) on a private libuv loop and print one
 * aligned line per uplink:
 *   name  scheme://host:port  up|down  time  detail or error [(N attempts)] [(same as X)]
 * Exit 0 when every uplink is up (or there are none), 1 when any is down or
 * the manifest does not load. */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "cli/cli.h"
#include "uplink/uplink.h"

typedef struct preflight {
    const ms_cli *o;
    const ms_manifest *m;
    int code;
} preflight;

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static void print_results(const ms_uplink_result *r, size_t n, void *arg)
{
    preflight *pf = arg;
    bool color = pf->o->color;
    size_t wname = 4, waddr = 7, wtime = 2;
    char t[24];
    size_t nup = 0;
    for (size_t i = 0; i < n; i++) {
        wname = max_sz(wname, strlen(r[i].uplink->name));
        waddr = max_sz(waddr, strlen(r[i].address));
        snprintf(t, sizeof t, "%llums", (unsigned long long)r[i].elapsed_ms);
        wtime = max_sz(wtime, strlen(t));
        nup += r[i].up;
    }
    printf("%s: checking %zu uplink%s\n", pf->m->path, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const char *state = r[i].up ? "up" : "down";
        const char *on = "", *off = "";
        snprintf(t, sizeof t, "%llums", (unsigned long long)r[i].elapsed_ms);
        if (color) {
            on = r[i].up ? "\033[32m" : "\033[31m";
            off = "\033[0m";
        }
        printf("  %-*s  %-*s  %s%-4s%s  %*s  %s", (int)wname, r[i].uplink->name, (int)waddr, r[i].address,
               on, state, off, (int)wtime, t, r[i].up ? r[i].detail : r[i].error);
        if (r[i].attempts > 1)
            printf(" (%u attempts)", r[i].attempts);
        if (r[i].same_as != MS_UPLINK_OWN)
            printf(" (same as %s)", r[r[i].same_as].uplink->name);
        putchar('\n');
    }
    if (nup == n)
        printf("all %zu uplink%s up\n", n, n == 1 ? "" : "s");
    else
        printf("%zu of %zu uplink%s down\n", n - nup, n, n == 1 ? "" : "s");
    fflush(stdout);
    pf->code = nup == n ? MS_EXIT_OK : MS_EXIT_FAIL;
}

int ms_cmd_preflight(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    if (m->nuplinks == 0) {
        printf("%s: no uplinks to check\n", m->path);
        ms_manifest_free(m);
        return MS_EXIT_OK;
    }
    preflight pf = { .o = o, .m = m, .code = MS_EXIT_FAIL };
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "mothership: cannot start the event loop: %s\n", uv_strerror(rc));
        ms_manifest_free(m);
        return MS_EXIT_FAIL;
    }
    rc = ms_uplink_check_all(&loop, m->uplinks, m->nuplinks, print_results, &pf, NULL);
    if (rc < 0)
        fprintf(stderr, "mothership: cannot start the uplink checks: %s\n", uv_strerror(rc));
    /* runs until every check, handle and (detached) DNS request is done */
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop);
    if (rc < 0)
        fprintf(stderr, "mothership: event loop did not close cleanly: %s\n", uv_strerror(rc));
    ms_manifest_free(m);
    return pf.code;
}
