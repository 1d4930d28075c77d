/* commands.c: the offline subcommands: clearance (validate and summarise)
 * and the shared manifest loading with error printing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/check.h"
#include "cli/cli.h"
#include "payload/payload.h"
#include "tls/tls.h"

ms_manifest *ms_cli_check(const char *path, ms_diags *d)
{
    return ms_cli_check_opts(path, d, NULL);
}

ms_manifest *ms_cli_check_opts(const char *path, ms_diags *d, const ms_load_opts *opts)
{
    ms_manifest *m = ms_manifest_load_opts(path, d, opts);
    /* modules: decoded, validated and checked against the payload ABI;
     * certificates: read and checked as TLS binds will load them; ACME:
     * the CA file and what an earlier run stored */
    size_t bad = 0;
    if (m && m->nmodules > 0)
        bad += ms_payload_check(m, d);
    if (m)
        bad += ms_tls_check(m, d) + ms_acme_check(m, d);
    if (bad > 0) {
        ms_manifest_free(m);
        m = NULL;
    }
    return m;
}

ms_manifest *ms_cli_load(const ms_cli *o)
{
    ms_diags d, w;
    const char *shown = strcmp(o->manifest, MS_MANIFEST_STDIN) == 0 ? MS_MANIFEST_STDIN_NAME : o->manifest;
    ms_diags_init(&d, shown);
    ms_diags_init(&w, shown);
    /* clearance and chart are offline: what needs the environment of a real
     * run is a warning there */
    bool offline = strcmp(o->command, "clearance") == 0 || strcmp(o->command, "chart") == 0;
    ms_load_opts opts = { .warnings = offline ? &w : NULL };
    ms_manifest *m = ms_cli_check_opts(o->manifest, &d, &opts);
    ms_diags_print(&w, stderr);
    ms_diags_free(&w);
    if (!m) {
        size_t n = ms_diags_count(&d);
        ms_diags_print(&d, stderr);
        if (n > 1)
            fprintf(stderr, "%s: %zu problems found\n", shown, n);
    }
    ms_diags_free(&d);
    return m;
}

void ms_bind_flags(const ms_bind *b, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s%s%s%s", b->tls || b->h2c || b->redirect_to_https ? " (" : "",
             b->tls ? (b->self_signed ? "tls self-signed" : "tls") : "", b->tls && b->h2 ? ", h2" : "",
             b->h2c ? "h2c" : "", b->redirect_to_https ? (b->h2c ? ", redirect_to_https" : "redirect_to_https") : "",
             b->tls || b->h2c || b->redirect_to_https ? ")" : "");
}

static void list_join(FILE *out, const ms_strlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        fprintf(out, "%s%s", i ? "," : "", l->items[i]);
}

/* Where an entry's environment comes from besides env: its env files and
 * the names of its secrets, never their values. */
static void env_sources(FILE *out, const ms_ship *t)
{
    if (t->env_files.len) {
        fprintf(out, " env_file ");
        list_join(out, &t->env_files);
    }
    for (size_t i = 0; i < t->secret_env.len; i++)
        fprintf(out, " %s (secret from %s)", t->secret_env.items[i].key, t->secret_env.items[i].value);
}

void ms_print_summary(const ms_manifest *m, FILE *out)
{
    size_t nships = 0, nbays = 0, nups = 0;
    for (size_t i = 0; i < m->nships; i++)
        m->ships[i].kind == MS_SHIP ? nships++ : m->ships[i].kind == MS_BAY ? nbays++ : nups++;

    fprintf(out, "%s: cleared for launch\n", m->path);
    fprintf(out, "  ships    %zu\n", nships);
    /* groups in order of first appearance */
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *s = &m->ships[i];
        if (s->kind != MS_SHIP)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            if (m->ships[j].kind == MS_SHIP && strcmp(m->ships[j].group, s->group) == 0)
                seen = true;
        if (seen)
            continue;
        fprintf(out, "    %s:\n", s->group);
        for (size_t j = i; j < m->nships; j++) {
            const ms_ship *t = &m->ships[j];
            if (t->kind != MS_SHIP || strcmp(t->group, s->group) != 0)
                continue;
            fprintf(out, "      %-16s %-6s", t->name, ms_ship_kind_word(t));
            if (t->has_bind)
                fprintf(out, " %s", t->bind.text);
            if (!t->critical)
                fprintf(out, " non-critical");
            if (t->depends_on.len) {
                fprintf(out, " after ");
                list_join(out, &t->depends_on);
            }
            if (t->tags.len) {
                fprintf(out, " tags ");
                list_join(out, &t->tags);
            }
            env_sources(out, t);
            fputc('\n', out);
        }
    }
    fprintf(out, "  bays     %zu\n", nbays);
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *t = &m->ships[i];
        if (t->kind != MS_BAY)
            continue;
        fprintf(out, "      %-16s %s", t->name, t->group);
        if (t->depends_on.len) {
            fprintf(out, " after ");
            list_join(out, &t->depends_on);
        }
        env_sources(out, t);
        fputc('\n', out);
    }
    if (nups) /* only when there are: the summary of a manifest without stays as it was */
        fprintf(out, "  upstreams %zu\n", nups);
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *t = &m->ships[i];
        if (t->kind == MS_UPSTREAM)
            fprintf(out, "      %-16s %-7s %s (not started by Mothership)\n", t->name,
                    t->upstream_protocol == MS_UPSTREAM_DOCKING ? "docking" : "http", t->bind.text);
    }
    fprintf(out, "  modules  %zu\n", m->nmodules);
    for (size_t i = 0; i < m->nmodules; i++) {
        const ms_module *mod = &m->modules[i];
        fprintf(out, "      %-16s %-8s on_error=%s %s\n", mod->name,
                mod->phase == MS_PHASE_REQUEST ? "request" : "response", mod->fail_open ? "open" : "closed",
                mod->wasm);
    }
    fprintf(out, "  uplinks  %zu\n", m->nuplinks);
    for (size_t i = 0; i < m->nuplinks; i++) {
        const ms_uplink *u = &m->uplinks[i];
        if (!u->url) { /* offline, an unset $VAR in it */
            fprintf(out, "      %-16s not expanded (an environment variable is unset) timeout %llums\n", u->name,
                    (unsigned long long)u->timeout_ms);
            continue;
        }
        fprintf(out, "      %-16s %s://%s:%u timeout %llums\n", u->name, u->scheme, u->host, u->port,
                (unsigned long long)u->timeout_ms);
    }
    fprintf(out, "  binds    %zu\n", m->global.nbinds);
    for (size_t i = 0; i < m->global.nbinds; i++) {
        const ms_bind *b = &m->global.binds[i];
        char flags[80];
        ms_bind_flags(b, flags, sizeof flags);
        fprintf(out, "      %-16s %s%s\n", b->name, b->addr.text, flags);
    }
    if (m->global.metrics_port)
        fprintf(out, "  metrics  http://%s:%u/metrics\n", m->global.metrics_bind, m->global.metrics_port);
    const ms_acme_config *a = &m->global.acme;
    if (a->enabled) {
        fprintf(out, "  acme     %zu\n", a->domains.len);
        for (size_t i = 0; i < a->domains.len; i++)
            fprintf(out, "      %-16s %s %s\n", a->domains.items[i],
                    a->challenge == MS_ACME_HTTP_01 ? "http-01" : "tls-alpn-01",
                    a->directory ? a->directory : MS_ACME_DEFAULT_DIRECTORY);
    }
}

/* clearance --names: what the fleet commands take as NAME, one a line, for
 * shell completion: ships (a replicated one by its name, then each
 * instance) and bays, then each tag once as @tag. */
static void print_names(const ms_manifest *m, FILE *out)
{
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *s = &m->ships[i];
        if (s->kind == MS_UPSTREAM)
            continue;
        if (s->base && s->instance == 0)
            fprintf(out, "%s\n", s->base);
        fprintf(out, "%s\n", s->name);
    }
    for (size_t i = 0; i < m->nships; i++) {
        const ms_strlist *tags = &m->ships[i].tags;
        for (size_t t = 0; t < tags->len; t++) {
            bool seen = false;
            for (size_t j = 0; j <= i && !seen; j++)
                for (size_t u = 0; u < (j < i ? m->ships[j].tags.len : t) && !seen; u++)
                    seen = strcmp(m->ships[j].tags.items[u], tags->items[t]) == 0;
            if (!seen)
                fprintf(out, "@%s\n", tags->items[t]);
        }
    }
}

int ms_cmd_clearance(const ms_cli *o)
{
    ms_manifest *m = ms_cli_load(o);
    if (!m)
        return MS_EXIT_FAIL;
    if (o->names)
        print_names(m, stdout);
    else
        ms_print_summary(m, stdout);
    ms_manifest_free(m);
    return MS_EXIT_OK;
}
