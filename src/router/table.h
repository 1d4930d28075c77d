/* table.h: the routing table, built once from a manifest and then read-only.
 * Per bind: the static dirs that serve it (longest prefix first) and then the
 * routes in manifest order, each pattern compiled once with PCRE2 (JIT when
 * available) and matched against the whole path. `chart` prints this table
 * and the data plane matches requests with it, so what the chart shows is
 * what the router does. */
#ifndef MS_ROUTER_TABLE_H
#define MS_ROUTER_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "manifest/manifest.h"

typedef struct ms_rt_route {
    const ms_route *route;      /* the manifest's route */
    const ms_ship *target;      /* ship or bay */
    void *re;                   /* pcre2_code * */
    size_t *modules;            /* indexes into manifest modules that may apply */
    size_t nmodules;
    const struct ms_rt_route *shadowed_by; /* an earlier route that takes every path this one
                                              could match (detected for "LITERAL.*" patterns) */
} ms_rt_route;

typedef struct ms_rt_bind {
    const ms_bind *bind;
    const ms_static_dir **statics;  /* longest prefix first */
    size_t nstatics;
    ms_rt_route *routes;            /* manifest order */
    size_t nroutes;
    bool catch_all;                 /* a route matches every path: no 404 */
} ms_rt_bind;

typedef struct ms_route_table {
    const ms_manifest *m;
    ms_rt_bind *binds;              /* same order as m->global.binds */
    size_t nbinds;
    void **module_res;              /* per module, per pattern: pcre2_code * */
} ms_route_table;

/* NULL on OOM or if a pattern does not compile (a validated manifest's do). */
ms_route_table *ms_route_table_build(const ms_manifest *m);
void ms_route_table_free(ms_route_table *t);

/* Does a static dir's prefix cover this path? "/" covers everything;
 * "/assets" covers "/assets" and "/assets/x" but not "/assetsx". */
bool ms_static_prefix_covers(const char *prefix, const char *path, size_t len);

/* The first route of this bind whose pattern matches the whole path (query
 * excluded by the caller), or NULL. match_data may be NULL (allocated per
 * call) or a pcre2_match_data * the caller keeps per worker. */
const ms_rt_route *ms_route_match(const ms_route_table *t, size_t bind_idx, const char *path,
                                  size_t len, void *match_data);

/* Does module i apply to this path? (no routes: every path) */
bool ms_module_applies(const ms_route_table *t, size_t module_idx, const char *path, size_t len,
                       void *match_data);

#endif
