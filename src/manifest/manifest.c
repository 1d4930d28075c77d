/* manifest.c: the manifest's lifecycle: reading the file (bounded), parsing
 * it with toml.c, loading (manifest_load.c) and checking (manifest_check.c)
 * the model, lookups, and freeing. */
#include "manifest/manifest_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

#define MANIFEST_MAX_BYTES (4u << 20)

const char *ms_strmap_get(const ms_strmap *m, const char *key)
{
    for (size_t i = 0; i < m->len; i++)
        if (strcmp(m->items[i].key, key) == 0)
            return m->items[i].value;
    return NULL;
}

void ld_ship_free(ms_ship *s)
{
    free(s->name);
    free(s->group);
    free(s->command);
    ld_strlist_free(&s->args);
    free(s->cwd);
    if (s->has_bind)
        ms_addr_free(&s->bind);
    free(s->health.path);
    if (s->health.has_address)
        ms_addr_free(&s->health.address);
    ld_routes_free(s->routes, s->nroutes);
    ld_strlist_free(&s->depends_on);
    free(s->depends_pos);
    ld_strmap_free(&s->env);
    ld_strmap_free(&s->config);
    ld_strlist_free(&s->subprotocols);
    ld_strlist_free(&s->file_roots);
    ld_strlist_free(&s->env_files);
    ld_strmap_free(&s->secret_env);
    free(s->schedule);
    ld_strlist_free(&s->tags);
    free(s->health.address_template);
    if (s->health.has_address_alt)
        ms_addr_free(&s->health.address_alt);
    free(s->base);
    if (s->has_bind_alt)
        ms_addr_free(&s->bind_alt);
    free(s->bind_template);
}

/* The placeholders of a template, in the order of ld_template_word. */
static const char *const template_words[] = { "instance", "port", "gen", NULL };

int ld_template_word(const char *text, size_t *len)
{
    assert(text[0] == '{');
    for (int w = 0; template_words[w]; w++) {
        size_t n = strlen(template_words[w]);
        if (strncmp(text + 1, template_words[w], n) == 0 && text[1 + n] == '}') {
            *len = n + 2;
            return w;
        }
    }
    return -1;
}

char *ld_template(const char *text, unsigned instance, unsigned instances, unsigned port, unsigned parity)
{
    size_t cap = strlen(text) + 1, len = 0;
    /* each placeholder is at least 5 bytes and expands to at most 10 */
    cap += cap;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *t = text; *t;) {
        size_t n = 0;
        int w = *t == '{' ? ld_template_word(t, &n) : -1;
        if (w < 0 || (w == 1 && port == 0)) {
            out[len++] = *t++;
            continue;
        }
        unsigned v = w == 0 ? instance : w == 1 ? port + instance + parity * instances : parity;
        len += (size_t)snprintf(out + len, cap - len, "%u", v);
        t += n;
    }
    assert(len < cap);
    out[len] = '\0';
    return out;
}

char *ms_ship_expand(const ms_ship *s, const char *text, unsigned parity)
{
    assert(parity <= 1);
    if (!s->base && !s->port && !s->bind_template)
        return ms_strdup(text);
    return ld_template(text, s->instance, s->instances ? s->instances : 1, s->port, parity);
}

void ld_module_free(ms_module *mod)
{
    free(mod->name);
    free(mod->wasm);
    ld_strlist_free(&mod->routes);
    free(mod->route_pos);
    ld_strmap_free(&mod->config);
    ld_strlist_free(&mod->tags);
}

ms_manifest *ms_manifest_ref(ms_manifest *m)
{
    if (m)
        __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void ms_manifest_free(ms_manifest *m)
{
    if (!m)
        return;
    /* refs is 0 only while a load fails (never shared), else >= 1 */
    if (__atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) > 1 && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    ms_global *g = &m->global;
    free(g->metrics_bind);
    ld_strlist_free(&g->declared_binds);
    free(g->socket_dir);
    ld_strmap_free(&g->env);
    for (size_t i = 0; i < g->nbinds; i++) {
        free(g->binds[i].name);
        ms_addr_free(&g->binds[i].addr);
        ld_tls_cert_free(g->binds[i].cert);
        free(g->binds[i].cert);
        ld_strlist_free(&g->binds[i].acme);
    }
    free(g->binds);
    free(g->acme.directory);
    free(g->acme.email);
    ld_strlist_free(&g->acme.domains);
    free(g->acme.state_dir);
    free(g->acme.ca_root);
    free(g->tls_cert);
    free(g->tls_key);
    for (size_t i = 0; i < g->ntls_certs; i++)
        ld_tls_cert_free(&g->tls_certs[i]);
    free(g->tls_certs);
    free(g->state_dir);
    free(g->control_socket);
    free(g->control_group);
    free(g->access_log_path);
    for (size_t i = 0; i < g->nstatic; i++) {
        free(g->static_dirs[i].path);
        free(g->static_dirs[i].prefix);
        free(g->static_dirs[i].bind);
    }
    free(g->static_dirs);
    for (size_t i = 0; i < m->nships; i++)
        ld_ship_free(&m->ships[i]);
    free(m->ships);
    for (size_t i = 0; i < m->nmodules; i++)
        ld_module_free(&m->modules[i]);
    free(m->modules);
    for (size_t i = 0; i < m->nuplinks; i++) {
        ms_uplink *u = &m->uplinks[i];
        free(u->name);
        free(u->url_text);
        free(u->url);
        free(u->scheme);
        free(u->host);
        free(u->path);
    }
    free(m->uplinks);
    free(m->path);
    free(m->dir);
    free(m);
}

static ms_manifest *load_buffer(const char *data, size_t len, const char *path, const char *dir,
                                ms_diags *diags, const ms_load_opts *opts)
{
    toml_error err;
    toml_node *root = toml_parse(data, len, &err);
    if (!root) {
        ms_diag_add(diags, err.line, err.col, "%s", err.msg);
        return NULL;
    }
    ms_manifest *m = calloc(1, sizeof *m);
    if (!m) {
        toml_free(root);
        ms_diag_add(diags, 0, 0, "out of memory");
        return NULL;
    }
    m->path = ms_strdup(path ? path : "ship-manifest.toml");
    m->dir = ms_strdup(dir ? dir : ".");
    ld_ctx c = { .m = m, .diags = diags, .warnings = opts ? opts->warnings : NULL };
    if (!m->path || !m->dir)
        c.oom = true;
    else
        ld_document(&c, root);
    if (!c.oom)
        ld_expand_instances(&c);
    if (!c.oom)
        ld_check(&c);
    toml_free(root);
    if (c.oom)
        ms_diag_add(diags, 0, 0, "out of memory while loading the manifest");
    if (c.bad || c.oom || ms_diags_count(diags) > 0) {
        ms_manifest_free(m);
        return NULL;
    }
    m->refs = 1;
    return m;
}

ms_manifest *ms_manifest_load_buffer(const char *data, size_t len, const char *path,
                                     const char *dir, ms_diags *diags)
{
    return load_buffer(data, len, path, dir, diags, NULL);
}

ms_manifest *ms_manifest_load(const char *path, ms_diags *diags)
{
    return ms_manifest_load_opts(path, diags, NULL);
}

ms_manifest *ms_manifest_load_opts(const char *path, ms_diags *diags, const ms_load_opts *opts)
{
    bool from_stdin = strcmp(path, MS_MANIFEST_STDIN) == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        ms_diag_add(diags, 0, 0, "cannot open: %s%s", strerror(errno),
                    errno == ENOENT ? " (create one with `mothership init`)" : "");
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        ms_diag_add(diags, 0, 0, "out of memory");
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= MANIFEST_MAX_BYTES) {
                ms_diag_add(diags, 0, 0, "manifest is larger than %u bytes", MANIFEST_MAX_BYTES);
                free(buf);
                if (!from_stdin)
                    fclose(f);
                return NULL;
            }
            cap *= 2;
            char *n = realloc(buf, cap);
            if (!n) {
                ms_diag_add(diags, 0, 0, "out of memory");
                free(buf);
                if (!from_stdin)
                    fclose(f);
                return NULL;
            }
            buf = n;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) {
                ms_diag_add(diags, 0, 0, "cannot read: %s", strerror(errno));
                free(buf);
                if (!from_stdin)
                    fclose(f);
                return NULL;
            }
            break;
        }
    }
    if (!from_stdin)
        fclose(f);
    else {
        /* from stdin: named so in messages, relative paths against the cwd */
        ms_manifest *m = load_buffer(buf, len, MS_MANIFEST_STDIN_NAME, ".", diags, opts);
        free(buf);
        return m;
    }
    char *dir = ms_strdup(path);
    if (!dir) {
        free(buf);
        ms_diag_add(diags, 0, 0, "out of memory");
        return NULL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    ms_manifest *m = load_buffer(buf, len, path, dir, diags, opts);
    free(buf);
    free(dir);
    return m;
}

ms_ship *ms_manifest_find_ship(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nships; i++)
        if (strcmp(m->ships[i].name, name) == 0)
            return &m->ships[i];
    return NULL;
}

const ms_bind *ms_manifest_find_bind(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->global.nbinds; i++)
        if (strcmp(m->global.binds[i].name, name) == 0)
            return &m->global.binds[i];
    return NULL;
}

const char *ms_ship_kind_word(const ms_ship *s)
{
    if (s->kind == MS_BAY)
        return "bay";
    if (s->kind == MS_UPSTREAM)
        return "upstream";
    if (s->oneshot)
        return "job";
    return s->has_bind ? "ship" : "worker";
}

const char *ms_health_protocol_name(ms_health_protocol p)
{
    static const char *const names[] = { "http", "tcp", "postgres", "mysql", "redis" };
    return (size_t)p < sizeof names / sizeof names[0] ? names[p] : "?";
}
