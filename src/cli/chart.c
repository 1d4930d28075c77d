/* chart.c: `mothership chart`: per bind, the static dirs (longest prefix
 * first) and then the routes in match order, each with its target, upstream,
 * strip_prefix and the modules that may apply. Printed from the same routing
 * table the data plane matches with (router/table.c). Text or --json. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/board.h"
#include "cli/cli.h"
#include "router/table.h"

static const char *upstream_of(const ms_ship *s)
{
    if (s->kind == MS_BAY)
        return s->http_bay ? "docking v3 links" : "docking link";
    return s->has_bind ? s->bind.text : "-";
}

/* "ship", "bay" or "upstream" (an app Mothership did not start). */
static const char *target_kind(const ms_ship *s)
{
    return s->kind == MS_BAY ? "bay" : s->kind == MS_UPSTREAM ? "upstream" : "ship";
}

/* The ACME names a bind serves certificates for (docs/tls.md "Names per
 * bind"): its own tls.acme list, else every name on a TLS bind without a
 * certificate of its own; NULL (with *n = 0) for none. */
static char *const *acme_names(const ms_manifest *m, const ms_bind *b, size_t *n)
{
    *n = 0;
    if (!m->global.acme.enabled || !b->tls)
        return NULL;
    if (b->acme.len > 0) {
        *n = b->acme.len;
        return b->acme.items;
    }
    if (b->cert || b->self_signed)
        return NULL;
    *n = m->global.acme.domains.len;
    return m->global.acme.domains.items;
}

/* The ACME challenge answered on this bind: http-01 on the plain binds,
 * tls-alpn-01 in the handshake of the TLS binds; NULL: none. */
static const char *acme_challenge_on(const ms_manifest *m, const ms_bind *b)
{
    if (!m->global.acme.enabled)
        return NULL;
    if (m->global.acme.challenge == MS_ACME_HTTP_01)
        return b->tls ? NULL : "http-01";
    return b->tls ? "tls-alpn-01" : NULL;
}

static void print_text(const ms_route_table *t, bool color)
{
    const ms_manifest *m = t->m;
    const char *b0 = color ? "\033[1m" : "", *b1 = color ? "\033[0m" : "";
    const char *dim = color ? "\033[2m" : "";
    if (t->nbinds == 0)
        printf("no binds: nothing is exposed (add a [mothership.bind] table)\n");
    for (size_t b = 0; b < t->nbinds; b++) {
        const ms_rt_bind *rb = &t->binds[b];
        char flags[80];
        ms_bind_flags(rb->bind, flags, sizeof flags);
        printf("%sbind %s%s  %s%s\n", b0, rb->bind->name, b1, rb->bind->addr.text, flags);
        size_t nacme = 0;
        char *const *names = acme_names(m, rb->bind, &nacme);
        const char *ch = acme_challenge_on(m, rb->bind);
        if (ch && strcmp(ch, "http-01") == 0)
            printf("      acme    %-24s -> ACME http-01 challenges, answered first\n", MS_ACME_CHALLENGE_PREFIX);
        if (nacme > 0) {
            printf("      certificates from ACME: ");
            for (size_t i = 0; i < nacme; i++)
                printf("%s%s", i ? ", " : "", names[i]);
            printf("%s\n", ch ? " (tls-alpn-01 challenges answered in the handshake)" : "");
        } else if (ch && strcmp(ch, "tls-alpn-01") == 0)
            printf("      tls-alpn-01 challenges answered in the handshake\n");
        if (rb->nstatics == 0 && rb->nroutes == 0)
            printf("  %s(nothing routed: every request gets 404)%s\n", dim, b1);
        size_t n = 1;
        for (size_t s = 0; s < rb->nstatics; s++, n++) {
            const ms_static_dir *sd = rb->statics[s];
            printf("  %2zu. static  %-24s -> %s%s\n", n, sd->prefix, sd->path,
                   sd->bind ? "  (this bind only)" : "");
        }
        for (size_t r = 0; r < rb->nroutes; r++, n++) {
            const ms_rt_route *rr = &rb->routes[r];
            const ms_ship *s = rr->target;
            printf("  %2zu. route   %-24s -> %s %s  %s", n, rr->route->pattern,
                   target_kind(s), ms_ship_base(s), upstream_of(s));
            if (s->kind == MS_UPSTREAM)
                printf(" (%s)", s->upstream_protocol == MS_UPSTREAM_DOCKING ? "docking v3" : "http");
            if (rr->route->ntargets > 1) /* instance 0's address; the others follow it */
                printf("  (%zu instances, %s)", rr->route->ntargets,
                       s->balance == MS_BALANCE_LEAST_CONN ? "least_conn" : "round_robin");
            if (rr->route->name)
                printf("  name \"%s\"", rr->route->name);
            if (rr->route->strip_prefix)
                printf("  strip %s", rr->route->strip_prefix);
            if (rr->route->raw_path)
                printf("  raw_path");
            if (rr->nmodules) {
                printf("  modules ");
                for (size_t i = 0; i < rr->nmodules; i++) {
                    const ms_module *mod = &m->modules[rr->modules[i]];
                    printf("%s%s(%s)", i ? "," : "", mod->name,
                           mod->phase == MS_PHASE_REQUEST ? "request" : "response");
                }
            }
            putchar('\n');
            if (rr->shadowed_by)
                printf("      %swarning: never reached: route %zu (%s) takes every path it could match%s\n",
                       color ? "\033[33m" : "", rb->nstatics + (size_t)(rr->shadowed_by - rb->routes) + 1,
                       rr->shadowed_by->route->pattern, b1);
        }
        if ((rb->nstatics || rb->nroutes) && !rb->catch_all)
            printf("  %s    anything else -> 404%s\n", dim, b1);
    }
    /* what is not reachable from outside */
    bool header = false;
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *s = &m->ships[i];
        if (s->nroutes || (s->base && s->instance > 0)) /* an instance is routed with instance 0 */
            continue;
        if (!header) {
            printf("not routed: ");
            header = true;
        } else
            printf(", ");
        printf("%s (%s)", s->name, ms_ship_kind_word(s));
    }
    if (header)
        putchar('\n');
}

static int print_json(const ms_route_table *t)
{
    const ms_manifest *m = t->m;
    json_t *root = json_object(), *binds = json_array();
    if (!root || !binds)
        goto oom;
    json_object_set_new(root, "binds", binds);
    if (m->global.acme.enabled) {
        const ms_acme_config *a = &m->global.acme;
        json_t *ja = json_object(), *jd = json_array();
        if (!ja || !jd) {
            json_decref(ja);
            json_decref(jd);
            goto oom;
        }
        for (size_t i = 0; i < a->domains.len; i++)
            json_array_append_new(jd, json_string(a->domains.items[i]));
        json_object_set_new(ja, "directory", json_string(a->directory ? a->directory : MS_ACME_DEFAULT_DIRECTORY));
        json_object_set_new(ja, "challenge", json_string(a->challenge == MS_ACME_HTTP_01 ? "http-01" : "tls-alpn-01"));
        json_object_set_new(ja, "domains", jd);
        json_object_set_new(root, "acme", ja);
    }
    for (size_t b = 0; b < t->nbinds; b++) {
        const ms_rt_bind *rb = &t->binds[b];
        const ms_bind *bb = rb->bind;
        json_t *jb = json_pack("{s:s, s:s, s:b, s:b, s:b, s:b, s:b}", "name", bb->name, "address", bb->addr.text,
                               "tls", bb->tls, "self_signed", bb->self_signed, "h2", bb->h2, "h2c", bb->h2c,
                               "redirect_to_https", bb->redirect_to_https);
        json_t *statics = json_array(), *routes = json_array();
        if (!jb || !statics || !routes)
            goto oom;
        json_object_set_new(jb, "static", statics);
        json_object_set_new(jb, "routes", routes);
        json_array_append_new(binds, jb);
        if (m->global.acme.enabled) {
            size_t nacme = 0;
            char *const *names = acme_names(m, bb, &nacme);
            const char *ch = acme_challenge_on(m, bb);
            json_t *jn = json_array(), *ja = json_object();
            if (!jn || !ja) {
                json_decref(jn);
                json_decref(ja);
                goto oom;
            }
            for (size_t i = 0; i < nacme; i++)
                json_array_append_new(jn, json_string(names[i]));
            json_object_set_new(ja, "names", jn);
            json_object_set_new(ja, "challenge", ch ? json_string(ch) : json_null());
            json_object_set_new(jb, "acme", ja);
        }
        for (size_t s = 0; s < rb->nstatics; s++) {
            const ms_static_dir *sd = rb->statics[s];
            json_t *js = json_pack("{s:s, s:s, s:o}", "prefix", sd->prefix, "path", sd->path, "bind",
                                   sd->bind ? json_string(sd->bind) : json_null());
            if (!js)
                goto oom;
            json_array_append_new(statics, js);
        }
        for (size_t r = 0; r < rb->nroutes; r++) {
            const ms_rt_route *rr = &rb->routes[r];
            const ms_ship *s = rr->target;
            json_t *mods = json_array();
            if (!mods)
                goto oom;
            for (size_t i = 0; i < rr->nmodules; i++)
                json_array_append_new(mods, json_string(m->modules[rr->modules[i]].name));
            json_t *jr = json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:o}", "pattern", rr->route->pattern, "target",
                                   ms_ship_base(s), "kind", target_kind(s), "upstream",
                                   s->kind != MS_BAY && s->has_bind ? json_string(s->bind.text) : json_null(),
                                   "strip_prefix",
                                   rr->route->strip_prefix ? json_string(rr->route->strip_prefix) : json_null(),
                                   "raw_path", (int)rr->route->raw_path, "modules", mods);
            if (jr && s->kind == MS_UPSTREAM)
                json_object_set_new(jr, "protocol", json_string(s->upstream_protocol == MS_UPSTREAM_DOCKING ? "docking"
                                                                                                           : "http"));
            if (jr && rr->route->name)
                json_object_set_new(jr, "name", json_string(rr->route->name));
            if (jr && rr->route->ntargets > 1)
                json_object_set_new(jr, "instances", json_integer((json_int_t)rr->route->ntargets));
            if (jr && rr->shadowed_by)
                json_object_set_new(jr, "shadowed_by", json_string(rr->shadowed_by->route->pattern));
            if (!jr)
                goto oom;
            json_array_append_new(routes, jr);
        }
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        return MS_EXIT_FAIL;
    puts(text);
    free(text);
    return MS_EXIT_OK;
oom:
    json_decref(root);
    fprintf(stderr, "mothership: out of memory\n");
    return MS_EXIT_FAIL;
}

int ms_cmd_chart(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    ms_route_table *t = ms_route_table_build(m);
    int rc = MS_EXIT_FAIL;
    if (!t)
        fprintf(stderr, "mothership: out of memory building the routing table\n");
    else if (o->json)
        rc = print_json(t);
    else {
        print_text(t, o->color);
        rc = MS_EXIT_OK;
    }
    ms_route_table_free(t);
    ms_manifest_free(m);
    return rc;
}
