/* table.c: builds and matches the routing table (see table.h). */
#include "router/table.h"

#include "util/pattern.h"

#include <stdlib.h>
#include <string.h>

static void *compile_whole(const char *pattern)
{
    char why[160];
    return ms_pattern_compile(pattern, why, sizeof why);
}

bool ms_static_prefix_covers(const char *prefix, const char *path, size_t len)
{
    size_t pl = strlen(prefix);
    while (pl > 1 && prefix[pl - 1] == '/')
        pl--;
    if (pl == 1 && prefix[0] == '/')
        return len > 0 && path[0] == '/';
    if (len < pl || memcmp(prefix, path, pl) != 0)
        return false;
    return len == pl || path[pl] == '/';
}

/* The literal start of a pattern: characters up to the first regex
 * metacharacter ("/api/.*" -> "/api/"). */
static size_t literal_prefix(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    for (; p[n] && n + 1 < cap; n++) {
        if (strchr("\\.^$|?*+()[]{}", p[n]))
            break;
        out[n] = p[n];
    }
    /* a quantifier applies to the last literal: drop it */
    if (n > 0 && p[n] && strchr("?*{", p[n]))
        n--;
    out[n] = '\0';
    return n;
}

/* Could the module's patterns match some path this route matches? Decided on
 * the literal prefixes of both, in both directions (a module shown here "may
 * apply"; at request time the module's own pattern decides). */
static bool module_may_apply(const ms_route_table *t, size_t mi, const ms_rt_route *r)
{
    const ms_module *mod = &t->m->modules[mi];
    if (mod->routes.len == 0)
        return true;
    char rp[256];
    size_t rl = literal_prefix(r->route->pattern, rp, sizeof rp);
    for (size_t k = 0; k < mod->routes.len; k++) {
        void *mre = ((void **)t->module_res[mi])[k];
        if (!mre)
            continue;
        if (ms_pattern_allows_prefix(mre, rp, rl))
            return true;
        char mp[256];
        size_t ml = literal_prefix(mod->routes.items[k], mp, sizeof mp);
        if (ms_pattern_allows_prefix(r->re, mp, ml))
            return true;
    }
    return false;
}

/* "LIT.*" with a pure literal LIT: every path starting with LIT. */
static bool prefix_catcher(const char *pattern, char *lit, size_t cap)
{
    size_t n = strlen(pattern);
    if (n < 2 || strcmp(pattern + n - 2, ".*") != 0)
        return false;
    size_t l = literal_prefix(pattern, lit, cap);
    return l == n - 2;
}

static void find_shadows(ms_rt_bind *rb)
{
    for (size_t j = 0; j < rb->nroutes; j++) {
        char lit[256];
        if (!prefix_catcher(rb->routes[j].route->pattern, lit, sizeof lit))
            continue;
        if (strcmp(lit, "/") == 0 || lit[0] == '\0')
            rb->catch_all = true;
        for (size_t k = j + 1; k < rb->nroutes; k++) {
            char later[256];
            literal_prefix(rb->routes[k].route->pattern, later, sizeof later);
            if (!rb->routes[k].shadowed_by && strncmp(later, lit, strlen(lit)) == 0 &&
                (later[0] == '/' || lit[0] == '\0'))
                rb->routes[k].shadowed_by = &rb->routes[j];
        }
    }
}

static int cmp_static(const void *a, const void *b)
{
    const ms_static_dir *x = *(const ms_static_dir *const *)a, *y = *(const ms_static_dir *const *)b;
    size_t lx = strlen(x->prefix), ly = strlen(y->prefix);
    if (lx != ly)
        return lx > ly ? -1 : 1;
    /* same prefix: the bind-specific dir first, then manifest order */
    if ((x->bind != NULL) != (y->bind != NULL))
        return x->bind ? -1 : 1;
    return x->pos.line < y->pos.line ? -1 : x->pos.line > y->pos.line;
}

static int cmp_route(const void *a, const void *b)
{
    const ms_route *x = ((const ms_rt_route *)a)->route, *y = ((const ms_rt_route *)b)->route;
    if (x->pos.line != y->pos.line)
        return x->pos.line < y->pos.line ? -1 : 1;
    if (x->pos.col != y->pos.col)
        return x->pos.col < y->pos.col ? -1 : 1;
    /* routes inherited from a base template share its position: ship order */
    const ms_ship *sx = ((const ms_rt_route *)a)->target, *sy = ((const ms_rt_route *)b)->target;
    return sx < sy ? -1 : sx > sy;
}

ms_route_table *ms_route_table_build(const ms_manifest *m)
{
    ms_route_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->m = m;
    t->nbinds = m->global.nbinds;
    t->binds = calloc(t->nbinds ? t->nbinds : 1, sizeof *t->binds);
    t->module_res = calloc(m->nmodules ? m->nmodules : 1, sizeof *t->module_res);
    if (!t->binds || !t->module_res)
        goto fail;
    for (size_t i = 0; i < m->nmodules; i++) {
        const ms_module *mod = &m->modules[i];
        void **res = calloc(mod->routes.len ? mod->routes.len : 1, sizeof *res);
        if (!res)
            goto fail;
        t->module_res[i] = res;
        for (size_t k = 0; k < mod->routes.len; k++)
            if (!(res[k] = compile_whole(mod->routes.items[k])))
                goto fail;
    }
    for (size_t b = 0; b < t->nbinds; b++) {
        ms_rt_bind *rb = &t->binds[b];
        const ms_bind *bind = &m->global.binds[b];
        rb->bind = bind;
        rb->statics = calloc(m->global.nstatic ? m->global.nstatic : 1, sizeof *rb->statics);
        size_t nr = 0;
        for (size_t s = 0; s < m->nships; s++)
            for (size_t r = 0; r < m->ships[s].nroutes; r++)
                nr += strcmp(m->ships[s].routes[r].bind, bind->name) == 0;
        rb->routes = calloc(nr ? nr : 1, sizeof *rb->routes);
        if (!rb->statics || !rb->routes)
            goto fail;
        for (size_t s = 0; s < m->global.nstatic; s++) {
            const ms_static_dir *sd = &m->global.static_dirs[s];
            if (!sd->bind || strcmp(sd->bind, bind->name) == 0)
                rb->statics[rb->nstatics++] = sd;
        }
        qsort(rb->statics, rb->nstatics, sizeof *rb->statics, cmp_static);
        for (size_t s = 0; s < m->nships; s++) {
            for (size_t r = 0; r < m->ships[s].nroutes; r++) {
                const ms_route *route = &m->ships[s].routes[r];
                if (strcmp(route->bind, bind->name) != 0)
                    continue;
                ms_rt_route *rr = &rb->routes[rb->nroutes++];
                rr->route = route;
                rr->target = &m->ships[s];
                if (!(rr->re = compile_whole(route->pattern)))
                    goto fail;
            }
        }
        qsort(rb->routes, rb->nroutes, sizeof *rb->routes, cmp_route);
        find_shadows(rb);
        for (size_t r = 0; r < rb->nroutes; r++) {
            ms_rt_route *rr = &rb->routes[r];
            rr->modules = calloc(m->nmodules ? m->nmodules : 1, sizeof *rr->modules);
            if (!rr->modules)
                goto fail;
            for (size_t i = 0; i < m->nmodules; i++)
                if (module_may_apply(t, i, rr))
                    rr->modules[rr->nmodules++] = i;
        }
    }
    return t;
fail:
    ms_route_table_free(t);
    return NULL;
}

void ms_route_table_free(ms_route_table *t)
{
    if (!t)
        return;
    for (size_t b = 0; t->binds && b < t->nbinds; b++) {
        ms_rt_bind *rb = &t->binds[b];
        for (size_t r = 0; r < rb->nroutes; r++) {
            ms_pattern_free(rb->routes[r].re);
            free(rb->routes[r].modules);
        }
        free(rb->routes);
        free(rb->statics);
    }
    free(t->binds);
    for (size_t i = 0; t->module_res && i < t->m->nmodules; i++) {
        void **res = t->module_res[i];
        for (size_t k = 0; res && k < t->m->modules[i].routes.len; k++)
            ms_pattern_free(res[k]);
        free(res);
    }
    free(t->module_res);
    free(t);
}

const ms_rt_route *ms_route_match(const ms_route_table *t, size_t bind_idx, const char *path,
                                  size_t len, void *match_data)
{
    if (bind_idx >= t->nbinds)
        return NULL;
    const ms_rt_bind *rb = &t->binds[bind_idx];
    for (size_t r = 0; r < rb->nroutes; r++)
        if (ms_pattern_match(rb->routes[r].re, path, len, match_data))
            return &rb->routes[r];
    return NULL;
}

bool ms_module_applies(const ms_route_table *t, size_t module_idx, const char *path, size_t len,
                       void *match_data)
{
    const ms_module *mod = &t->m->modules[module_idx];
    if (mod->routes.len == 0)
        return true;
    void **res = t->module_res[module_idx];
    for (size_t k = 0; k < mod->routes.len; k++)
        if (ms_pattern_match(res[k], path, len, match_data))
            return true;
    return false;
}
