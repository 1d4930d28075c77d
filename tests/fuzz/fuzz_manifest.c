/* fuzz_manifest.c: libFuzzer target for the manifest loader and validator
 * (ms_manifest_load_buffer in src/manifest/manifest.c: TOML parse, typed
 * model, base-template merge, checks) and, for manifests that load, the
 * routing table built from them (src/router/table.c).
 *
 * Role: load the input as a ship-manifest.toml whose directory is
 * "/nonexistent-fuzz-dir", so every relative file (TLS material, static
 * dirs, .wasm payloads, cwd) fails its check at once without touching the
 * disk; absolute paths are checked as usual. Invariants: a load either
 * returns a manifest and reports no problem, or returns NULL and reports at
 * least one; every diagnostic has a message and a non-negative position.
 * When the manifest loads, the routing table must build (its patterns were
 * validated), then every bind (and one index past the end) is matched
 * against a few fixed paths and against each route pattern's own text, and
 * every module is asked whether it applies; the result of a match must be
 * one of that bind's routes. Everything is freed. $VAR in uplink URLs is
 * expanded from the fuzzer's environment (getenv), which is fine.
 * Seed corpus: tests/fuzz/corpus/manifest/. Run with e.g.
 *   fuzz_manifest -max_total_time=60 -max_len=8192 tests/fuzz/corpus/manifest
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "router/table.h"
#include "util/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static const char *const paths[] = {
    "/", "", "/api/v1/users", "/assets/app.css", "/ws", "/admin/x?y=1", "/health",
    "/app", "/app/", "//", "/%00", "/a/../b", "/\xff\xfe", NULL,
};

static void match_one(const ms_route_table *t, size_t b, const char *path, size_t len)
{
    const ms_rt_route *r = ms_route_match(t, b, path, len, NULL);
    if (b >= t->nbinds) {
        check(r == NULL);
        return;
    }
    if (r) {
        const ms_rt_bind *rb = &t->binds[b];
        check(r >= rb->routes && r < rb->routes + rb->nroutes);
        check(r->target != NULL && r->route != NULL);
    }
}

static void exercise_table(const ms_manifest *m, const ms_route_table *t)
{
    check(t->nbinds == m->global.nbinds);
    for (size_t b = 0; b <= t->nbinds; b++) {
        for (size_t i = 0; paths[i]; i++)
            match_one(t, b, paths[i], strlen(paths[i]));
        /* the patterns' own text, as paths: often on the edge of a match */
        if (b < t->nbinds) {
            const ms_rt_bind *rb = &t->binds[b];
            for (size_t r = 0; r < rb->nroutes && r < 16; r++) {
                const char *pat = rb->routes[r].route->pattern;
                size_t len = strlen(pat);
                if (len <= 256)
                    match_one(t, b, pat, len);
            }
        }
    }
    for (size_t i = 0; i < m->nmodules; i++)
        for (size_t k = 0; paths[k]; k++)
            (void)ms_module_applies(t, i, paths[k], strlen(paths[k]), NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    ms_diags d;
    ms_diags_init(&d, "fuzz-manifest.toml");
    ms_manifest *m = ms_manifest_load_buffer((const char *)data, size, "fuzz-manifest.toml",
                                             "/nonexistent-fuzz-dir", &d);
    size_t problems = ms_diags_count(&d);
    for (size_t i = 0; i < d.len; i++) {
        check(d.items[i].msg != NULL);
        check(d.items[i].line >= 0 && d.items[i].col >= 0);
    }
    if (m) {
        check(problems == 0);
        check(m->path && m->dir);
        for (size_t i = 0; i < m->nships; i++)
            check(m->ships[i].name && m->ships[i].command);
        ms_route_table *t = ms_route_table_build(m);
        check(t != NULL); /* a validated manifest's patterns compile */
        exercise_table(m, t);
        ms_route_table_free(t);
        ms_manifest_free(m);
    } else {
        check(problems > 0);
    }
    ms_diags_free(&d);
    return 0;
}
