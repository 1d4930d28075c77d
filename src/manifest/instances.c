/* instances.c: replicas in the model. A ship with `instances = N` becomes
 * N consecutive entries "<name>#0" .. "<name>#N-1" (the first keeps the
 * routes), each with its bind, bind_alt and healthcheck address expanded
 * from the templates ({instance}, {port}, {gen}); a depends_on naming the
 * ship names every instance. Runs after every entry is loaded and before
 * the cross-entry checks, which then see one entry per process. */
#include "manifest/manifest_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

/* ---------------------------------------------------------------- copies */
static char *str_copy(ld_ctx *c, const char *s)
{
    if (!s)
        return NULL;
    char *r = ms_strdup(s);
    if (!r)
        c->oom = true;
    return r;
}

static void list_copy(ld_ctx *c, ms_strlist *dst, const ms_strlist *src)
{
    *dst = (ms_strlist){ 0 };
    if (!src->len)
        return;
    if (!(dst->items = calloc(src->len, sizeof *dst->items))) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < src->len && !c->oom; i++)
        if ((dst->items[i] = str_copy(c, src->items[i])))
            dst->len++;
}

static void map_copy(ld_ctx *c, ms_strmap *dst, const ms_strmap *src)
{
    *dst = (ms_strmap){ 0 };
    if (!src->len)
        return;
    if (!(dst->items = calloc(src->len, sizeof *dst->items))) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < src->len && !c->oom; i++) {
        char *k = str_copy(c, src->items[i].key), *v = str_copy(c, src->items[i].value);
        if (!k || !v) {
            free(k);
            free(v);
            return;
        }
        dst->items[dst->len++] = (ms_kv){ k, v };
    }
}

static void addr_copy(ld_ctx *c, ms_addr *dst, const ms_addr *src)
{
    *dst = (ms_addr){ .kind = src->kind, .port = src->port };
    dst->host = str_copy(c, src->host);
    dst->path = str_copy(c, src->path);
    dst->text = str_copy(c, src->text);
}

/* Instance i > 0 of src: the same definition without the routes (they live
 * on instance 0). Always freeable with ld_ship_free, even after OOM. */
static void ship_copy(ld_ctx *c, ms_ship *dst, const ms_ship *src)
{
    *dst = *src;
    dst->name = dst->group = dst->command = dst->cwd = dst->base = dst->bind_template = NULL;
    dst->schedule = NULL;
    dst->args = dst->depends_on = dst->subprotocols = dst->tags = dst->env_files = (ms_strlist){ 0 };
    dst->file_roots = (ms_strlist){ 0 };
    dst->env = dst->config = dst->secret_env = (ms_strmap){ 0 };
    dst->depends_pos = NULL;
    dst->routes = NULL;
    dst->nroutes = 0;
    dst->has_bind_alt = false;
    dst->bind_alt = (ms_addr){ 0 };
    dst->health.path = dst->health.address_template = NULL;
    dst->health.has_address = dst->health.has_address_alt = false;
    dst->health.address = dst->health.address_alt = (ms_addr){ 0 };
    dst->has_bind = false;
    dst->bind = (ms_addr){ 0 };

    dst->name = str_copy(c, src->name);
    dst->group = str_copy(c, src->group);
    dst->command = str_copy(c, src->command);
    dst->cwd = str_copy(c, src->cwd);
    dst->bind_template = str_copy(c, src->bind_template);
    list_copy(c, &dst->args, &src->args);
    list_copy(c, &dst->depends_on, &src->depends_on);
    list_copy(c, &dst->subprotocols, &src->subprotocols);
    list_copy(c, &dst->tags, &src->tags);
    list_copy(c, &dst->env_files, &src->env_files);
    list_copy(c, &dst->file_roots, &src->file_roots);
    map_copy(c, &dst->env, &src->env);
    map_copy(c, &dst->config, &src->config);
    map_copy(c, &dst->secret_env, &src->secret_env);
    dst->schedule = str_copy(c, src->schedule);
    if (src->depends_on.len && src->depends_pos) {
        if ((dst->depends_pos = calloc(src->depends_on.len, sizeof *dst->depends_pos)))
            memcpy(dst->depends_pos, src->depends_pos, src->depends_on.len * sizeof *dst->depends_pos);
        else
            c->oom = true;
    }
    dst->health.path = str_copy(c, src->health.path);
    dst->health.address_template = str_copy(c, src->health.address_template);
    if (src->health.has_address) {
        addr_copy(c, &dst->health.address, &src->health.address);
        dst->health.has_address = true;
    }
    if (src->has_bind) {
        if (!src->bind_template)
            addr_copy(c, &dst->bind, &src->bind);
        dst->has_bind = true;
    }
}

/* ---------------------------------------------------------------- templates */
/* template expanded for (instance, parity) and parsed into out. */
static bool expand_addr(ld_ctx *c, const ms_ship *s, const char *tpl, unsigned parity, ms_pos at,
                        const char *what, ms_addr *out)
{
    char *text = ld_template(tpl, s->instance, s->instances, s->port, parity);
    if (!text) {
        c->oom = true;
        return false;
    }
    char why[160];
    bool ok = ms_addr_parse(text, out, why, sizeof why);
    if (ok && !ld_resolve_unix(c, out)) {
        ms_addr_free(out);
        ok = false;
        snprintf(why, sizeof why, "cannot resolve the path");
    }
    if (!ok) {
        char who[48] = "";
        if (s->base)
            snprintf(who, sizeof who, " of instance %u", s->instance);
        ld_err(c, at.line, at.col, "%s \"%s\"%s%s is \"%s\": %s", what, tpl, who,
               parity ? " (its replacement's address)" : "", text, why);
        *out = (ms_addr){ 0 };
        c->bad = true;
    }
    free(text);
    return ok;
}

static bool has_word(const char *text, int word)
{
    size_t n;
    for (const char *t = strchr(text, '{'); t; t = strchr(t + 1, '{'))
        if (ld_template_word(t, &n) == word)
            return true;
    return false;
}

/* The addresses of one entry: bind (parity 0), bind_alt (parity 1, when the
 * bind has {port} or {gen}) and the healthcheck's address. */
static void expand_entry(ld_ctx *c, ms_ship *s)
{
    if (s->bind_template) {
        assert(s->has_bind);
        expand_addr(c, s, s->bind_template, 0, s->bind_pos, "bind", &s->bind);
        if (has_word(s->bind_template, 1) || has_word(s->bind_template, 2))
            s->has_bind_alt = expand_addr(c, s, s->bind_template, 1, s->bind_pos, "bind", &s->bind_alt);
    }
    const char *ht = s->health.enabled ? s->health.address_template : NULL;
    if (ht)
        s->health.has_address = expand_addr(c, s, ht, 0, s->health_pos, "healthcheck: address", &s->health.address);
    if (ht && (has_word(ht, 1) || has_word(ht, 2)))
        s->health.has_address_alt = expand_addr(c, s, ht, 1, s->health_pos, "healthcheck: address",
                                                &s->health.address_alt);
}

/* ---------------------------------------------------------------- depends_on */
/* The instanced ship whose name is base: its first entry, or NULL. */
static const ms_ship *instanced(const ms_manifest *m, const char *base)
{
    for (size_t i = 0; i < m->nships; i++)
        if (m->ships[i].base && m->ships[i].instance == 0 && strcmp(m->ships[i].base, base) == 0)
            return &m->ships[i];
    return NULL;
}

static bool list_has(const ms_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* depends_on = ["web"] on any entry becomes web#0 .. web#N-1 (each at the
 * item's position). A ship naming itself is left for check_depends. */
static void expand_depends(ld_ctx *c, ms_ship *s)
{
    size_t total = 0;
    bool any = false;
    if (!ms_ship_base(s))
        return; /* no name: reported */
    for (size_t k = 0; k < s->depends_on.len; k++) {
        const ms_ship *t = instanced(c->m, s->depends_on.items[k]);
        bool self = t && strcmp(s->depends_on.items[k], ms_ship_base(s)) == 0;
        any |= t && !self;
        total += t && !self ? t->instances : 1;
    }
    if (!any)
        return;
    ms_strlist list = { calloc(total, sizeof(char *)), 0 };
    ms_pos *pos = calloc(total, sizeof *pos);
    if (!list.items || !pos) {
        free(list.items);
        free(pos);
        c->oom = true;
        return;
    }
    for (size_t k = 0; k < s->depends_on.len && !c->oom; k++) {
        const char *d = s->depends_on.items[k];
        ms_pos p = s->depends_pos ? s->depends_pos[k] : s->pos;
        const ms_ship *t = instanced(c->m, d);
        if (!t || strcmp(d, ms_ship_base(s)) == 0) {
            if (list_has(&list, d))
                continue;
            pos[list.len] = p;
            if ((list.items[list.len] = str_copy(c, d)))
                list.len++;
            continue;
        }
        for (unsigned i = 0; i < t->instances && !c->oom; i++) {
            if (list_has(&list, t[i].name))
                continue;
            pos[list.len] = p;
            if ((list.items[list.len] = str_copy(c, t[i].name)))
                list.len++;
        }
    }
    ld_strlist_free(&s->depends_on);
    free(s->depends_pos);
    s->depends_on = list;
    s->depends_pos = pos;
}

/* ---------------------------------------------------------------- expansion */
void ld_expand_instances(ld_ctx *c)
{
    ms_manifest *m = c->m;
    size_t total = 0;
    for (size_t i = 0; i < m->nships; i++)
        total += m->ships[i].kind == MS_SHIP && m->ships[i].instances > 1 ? m->ships[i].instances : 1;
    if (total > m->nships) {
        ms_ship *ships = calloc(total, sizeof *ships);
        if (!ships) {
            c->oom = true;
            return;
        }
        size_t n = 0;
        for (size_t i = 0; i < m->nships; i++) {
            ms_ship *s = &m->ships[i];
            unsigned count = s->kind == MS_SHIP && s->instances > 1 ? s->instances : 1;
            ships[n] = *s;
            if (count > 1) {
                ships[n].base = ships[n].name;
                ships[n].name = NULL;
            }
            for (unsigned k = 1; k < count; k++)
                ship_copy(c, &ships[n + k], &ships[n]);
            for (unsigned k = 0; k < count && count > 1; k++) {
                ms_ship *e = &ships[n + k];
                e->instance = k;
                if (k > 0)
                    e->base = str_copy(c, ships[n].base);
                if (ships[n].base && !(e->name = ms_asprintf("%s#%u", ships[n].base, k)))
                    c->oom = true;
            }
            n += count;
        }
        assert(n == total);
        free(m->ships);
        m->ships = ships;
        m->nships = total;
        if (c->oom)
            return;
    }
    for (size_t i = 0; i < m->nships; i++) {
        ms_ship *s = &m->ships[i];
        if (s->kind != MS_SHIP || (!s->bind_template && !s->health.address_template))
            continue;
        char label[128];
        ld_ctx ec = *c;
        snprintf(label, sizeof label, "ship \"%.64s\"", ms_ship_base(s) ? ms_ship_base(s) : "?");
        ec.what = label;
        ec.bad = false;
        expand_entry(&ec, s);
        c->bad |= ec.bad;
        c->oom |= ec.oom;
    }
    for (size_t i = 0; i < m->nships && !c->oom; i++)
        expand_depends(c, &m->ships[i]);
}
