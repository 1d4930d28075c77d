/* manifest_load.c: turns the TOML tree of ship-manifest.toml into the typed
 * model of manifest.h. Each section has a list of known keys; an unknown key
 * is reported with the nearest known one, a wrong type with what was
 * expected, always at the key's line:column and with the entry's name. Base
 * templates are applied by loading [base.ship]/[base.bay]/[base.module]
 * first and then the entry's own keys on top (tables merge key by key, tags
 * concatenate, everything else is overridden). Cross-entry rules (unique
 * names, dependencies, routes, collisions) live in manifest_check.c. */
#include "manifest/manifest_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cron.h"
#include "util/dotenv.h"
#include "util/strutil.h"

/* ---------------------------------------------------------------- key lists */
static const char *const mothership_keys[] = {
    "metrics_port", "metrics_bind", "compression", "shutdown_timeout", "ready_timeout",
    "socket_dir", "state_dir", "workers", "env", "bind", "tls", "static_dirs", "http", "control_socket",
    "control_group", "upstreams", "access_log", "access_log_path", "acme", NULL };
static const char *const http_keys[] = {
    "max_header_size", "max_uri_length", "max_body_size", "header_timeout", "idle_timeout",
    "upstream_connect_timeout", "upstream_timeout", "max_connections", "upstream_keepalive",
    "ws_max_message_size", "ws_send_queue", "ws_ping_interval", "ws_idle_timeout",
    "request_buffering", "request_buffer_size", "body_timeout", "max_response_header_size",
    "h2_max_concurrent_streams", "h2_max_header_list_size", "h2_header_table_size", "h2_rapid_reset_max",
    "h2_rapid_reset_window", "h2_max_control_frames", "h2_stall_timeout", "eject_cooldown", NULL };
static const char *const ship_keys[] = {
    "name", "command", "args", "bind", "healthcheck", "routes", "depends_on", "env", "tags",
    "critical", "oneshot", "cwd", "ready_timeout", "ready_after", "shutdown_timeout", "restart", "stop_signal",
    "instances", "port", "balance", "drain_timeout", "schedule", "memory_max", "cpu_max", "pids_max", "env_file",
    "secret_env", NULL };
static const char *const bay_keys[] = {
    "name", "command", "args", "routes", "depends_on", "env", "config", "critical", "tags",
    "cwd", "ready_timeout", "shutdown_timeout", "restart", "subprotocols", "stop_signal", "handover_timeout",
    "memory_max", "cpu_max", "pids_max", "env_file", "secret_env", NULL };
/* [[bays.http]]: a bay's keys without the WebSocket ones, plus the links'. */
static const char *const hbay_keys[] = {
    "name", "command", "args", "routes", "depends_on", "env", "config", "critical", "tags",
    "cwd", "ready_timeout", "shutdown_timeout", "restart", "stop_signal", "workers", "threads",
    "request_timeout", "max_queue", "file_roots", "memory_max", "cpu_max", "pids_max", "env_file", "secret_env",
    NULL };
/* What [base.bay] may set: the keys of either bay type. */
static const char *const any_bay_keys[] = {
    "name", "command", "args", "routes", "depends_on", "env", "config", "critical", "tags",
    "cwd", "ready_timeout", "shutdown_timeout", "restart", "subprotocols", "stop_signal", "handover_timeout",
    "workers", "threads", "request_timeout", "max_queue", "file_roots", "memory_max", "cpu_max", "pids_max",
    "env_file", "secret_env", NULL };
static const char *const upstream_keys[] = {
    "name", "bind", "protocol", "routes", "request_timeout", "max_queue", "file_roots", "tags", NULL };
static const char *const restart_keys[] = {
    "backoff", "max_backoff", "reset_after", "loop_limit", "loop_window", "loop_pause", NULL };
static const char *const module_keys[] = {
    "name", "wasm", "routes", "phase", "config", "tags", "on_error", NULL };
static const char *const uplink_keys[] = { "url", "name", "timeout", "wait", NULL };
static const char *const static_keys[] = { "path", "prefix", "bind", NULL };
static const char *const tls_keys[] = { "cert", "key", "certs", "session_tickets", "ticket_key_rotation", NULL };
static const char *const tlscert_keys[] = { "cert", "key", "hosts", NULL };
/* A bind's tls table: its own certificate, or the ACME names it serves. */
static const char *const bindtls_keys[] = { "cert", "key", "hosts", "acme", NULL };
static const char *const acme_keys[] = { "directory", "email", "domains", "state_dir", "ca_root", "challenge",
                                         "backoff", "max_backoff", NULL };
static const char *const bindtable_keys[] = { "address", "tls", "h2", "h2c", "redirect_to_https", "access_log",
                                               NULL };
static const char *const health_keys[] = {
    "path", "interval", "timeout", "grace", "failures", "successes", "cooldown", "restart",
    "protocol", "address", "port", NULL };
static const char *const route_keys[] = { "bind", "pattern", "name", "strip_prefix", "raw_path", "request_buffering",
                                          "ws_compression",
                                          NULL };
static const char *const top_keys[] = { "mothership", "base", "fleet", "bays", "modules", "uplinks", NULL };
static const char *const base_keys[] = { "ship", "bay", "module", NULL };
static const char *const bay_types[] = { "websocket", "http", NULL };

const char *const *ms_manifest_keys(const char *table)
{
    static const struct { const char *table; const char *const *keys; } tables[] = {
        { "mothership", mothership_keys }, { "http", http_keys }, { "ship", ship_keys },
        { "bay", bay_keys }, { "restart", restart_keys }, { "module", module_keys },
        { "uplink", uplink_keys }, { "static_dirs", static_keys }, { "tls", tls_keys },
        { "tls.certs", tlscert_keys }, { "bind", bindtable_keys }, { "healthcheck", health_keys },
        { "route", route_keys }, { "http_bay", hbay_keys }, { "upstream", upstream_keys },
        { "acme", acme_keys }, { "bind.tls", bindtls_keys },
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (strcmp(tables[i].table, table) == 0)
            return tables[i].keys;
    return NULL;
}

static bool in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- reporting */
void ld_err(ld_ctx *c, int line, int col, const char *fmt, ...)
{
    if (!c->diags)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (c->what)
        ms_diag_add(c->diags, line, col, "%s: %s", c->what, buf);
    else
        ms_diag_add(c->diags, line, col, "%s", buf);
}

static void unknown_key(ld_ctx *c, const toml_kv *kv, const char *const *known, const char *extra)
{
    const char *near = ms_nearest(kv->key, known);
    if (extra)
        ld_err(c, kv->line, kv->col, "unknown key \"%s\" %s", kv->key, extra);
    else if (near)
        ld_err(c, kv->line, kv->col, "unknown key \"%s\" (did you mean \"%s\"?)", kv->key, near);
    else
        ld_err(c, kv->line, kv->col, "unknown key \"%s\"", kv->key);
}

static const char *article_type(const toml_node *n)
{
    switch (n->type) {
    case TOML_ARRAY: return "an array";
    case TOML_INTEGER: return "an integer";
    default: break;
    }
    static const char *const a[] = { "a table", "an array", "a string", "an integer", "a float",
                                     "a boolean", "a date-time", "a date-time", "a date", "a time" };
    return a[n->type];
}

static void wrong_type(ld_ctx *c, const toml_kv *kv, const char *want)
{
    ld_err(c, kv->value->line, kv->value->col, "\"%s\" must be %s, not %s", kv->key, want,
           article_type(kv->value));
}

/* ---------------------------------------------------------------- values */
static char *dup_checked(ld_ctx *c, const char *s)
{
    char *r = ms_strdup(s);
    if (!r)
        c->oom = true;
    return r;
}

/* A string without NUL bytes. */
static bool get_string(ld_ctx *c, const toml_kv *kv, char **dst)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_STRING) {
        wrong_type(c, kv, "a string");
        return false;
    }
    if (strlen(v->u.str.ptr) != v->u.str.len) {
        ld_err(c, v->line, v->col, "\"%s\" must not contain NUL characters", kv->key);
        return false;
    }
    char *s = dup_checked(c, v->u.str.ptr);
    if (!s)
        return false;
    free(*dst);
    *dst = s;
    return true;
}

static bool get_nonempty_string(ld_ctx *c, const toml_kv *kv, char **dst)
{
    if (kv->value->type == TOML_STRING && kv->value->u.str.len == 0) {
        ld_err(c, kv->value->line, kv->value->col, "\"%s\" must not be empty", kv->key);
        return false;
    }
    return get_string(c, kv, dst);
}

/* schedule = "0 3 * * *": a cron expression (util/cron.h), checked here. */
static bool get_schedule(ld_ctx *c, const toml_kv *kv, ms_ship *s)
{
    char *text = NULL;
    if (!get_nonempty_string(c, kv, &text))
        return false;
    ms_cron cron;
    char why[200];
    if (!ms_cron_parse(text, &cron, why, sizeof why)) {
        ld_err(c, kv->value->line, kv->value->col, "\"schedule\" \"%.80s\": %s", text, why);
        free(text);
        return false;
    }
    free(s->schedule);
    s->schedule = text;
    s->schedule_pos = (ms_pos){ kv->value->line, kv->value->col };
    return true;
}

static bool get_bool(ld_ctx *c, const toml_kv *kv, bool *dst)
{
    if (kv->value->type != TOML_BOOL) {
        wrong_type(c, kv, "a boolean (true or false)");
        return false;
    }
    *dst = kv->value->u.boolean;
    return true;
}

static bool get_uint(ld_ctx *c, const toml_kv *kv, int64_t lo, int64_t hi, int64_t *dst)
{
    if (kv->value->type != TOML_INTEGER) {
        wrong_type(c, kv, "an integer");
        return false;
    }
    int64_t v = kv->value->u.integer;
    if (v < lo || v > hi) {
        ld_err(c, kv->value->line, kv->value->col, "\"%s\" must be from %lld to %lld, not %lld",
               kv->key, (long long)lo, (long long)hi, (long long)v);
        return false;
    }
    *dst = v;
    return true;
}

/* Resource limits (applied in the entry's cgroup):
 *   memory_max = 536870912 | "512M" | "1.5G"   (K, M, G, T: powers of 1024)
 *   cpu_max = 1.5 | 2 | "150%"                  (CPUs, 0.01 to 1024)
 *   pids_max = 64 */
static bool get_limit(ld_ctx *c, const toml_kv *kv, ms_ship *s)
{
    const toml_node *v = kv->value;
    const char *k = kv->key;
    double x = 0;
    char *end = NULL;
    if (strcmp(k, "pids_max") == 0) {
        int64_t n;
        if (!get_uint(c, kv, 1, 4194304, &n))
            return false;
        s->pids_max = (uint64_t)n;
    } else if (strcmp(k, "memory_max") == 0) {
        uint64_t mult = 1;
        if (v->type == TOML_INTEGER) {
            x = (double)v->u.integer;
        } else if (v->type == TOML_STRING) {
            x = strtod(v->u.str.ptr, &end);
            const char *units = "KMGT";
            const char *u = end && *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
            if (u && *u) {
                for (const char *q = units; q <= u; q++)
                    mult *= 1024;
                end++;
            }
            if (end == v->u.str.ptr || (end && *end) || !(x >= 0)) {
                ld_err(c, v->line, v->col, "\"memory_max\" \"%.40s\" is not a size: write bytes, or a number "
                       "with K, M, G or T (\"512M\", \"1.5G\")", v->u.str.ptr);
                return false;
            }
        } else {
            wrong_type(c, kv, "a size (bytes, or a string like \"512M\")");
            return false;
        }
        x *= (double)mult;
        if (!(x >= 1048576.0) || x > 1125899906842624.0) {
            ld_err(c, v->line, v->col, "\"memory_max\" must be from 1M to 1P%s", v->type == TOML_INTEGER
                   ? " (an integer is bytes: write \"512M\" for 512 MiB)" : "");
            return false;
        }
        s->memory_max = (uint64_t)x;
    } else { /* cpu_max */
        if (v->type == TOML_INTEGER) {
            x = (double)v->u.integer;
        } else if (v->type == TOML_FLOAT) {
            x = v->u.flt;
        } else if (v->type == TOML_STRING) {
            x = strtod(v->u.str.ptr, &end);
            if (end == v->u.str.ptr || !end || strcmp(end, "%") != 0) {
                ld_err(c, v->line, v->col, "\"cpu_max\" \"%.40s\" is not a percentage: write \"150%%\", or a "
                       "number of CPUs (1.5)", v->u.str.ptr);
                return false;
            }
            x /= 100.0;
        } else {
            wrong_type(c, kv, "a number of CPUs (1.5) or a percentage (\"150%\")");
            return false;
        }
        if (!(x >= 0.01) || x > 1024.0) {
            ld_err(c, v->line, v->col, "\"cpu_max\" must be from 0.01 to 1024 CPUs (1%% to 102400%%)");
            return false;
        }
        s->cpu_max_milli = (unsigned)(x * 1000.0 + 0.5);
    }
    if (!s->limits_pos.line)
        s->limits_pos = (ms_pos){ v->line, v->col };
    return true;
}

static bool get_duration(ld_ctx *c, const toml_kv *kv, uint64_t *dst)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_STRING) {
        ld_err(c, v->line, v->col, "\"%s\" must be a duration string like \"250ms\", \"5s\" or \"1m\", not %s",
               kv->key, article_type(v));
        return false;
    }
    if (!ms_parse_duration(v->u.str.ptr, dst)) {
        ld_err(c, v->line, v->col, "\"%s\": invalid duration \"%s\" (use a number and ms, s, m or h, "
               "like \"250ms\", \"5s\" or \"1m\"; at most 24h)", kv->key, v->u.str.ptr);
        return false;
    }
    return true;
}

/* A unix:// address with a relative path is relative to the manifest's
 * directory, like every other path in it. */
bool ld_resolve_unix(ld_ctx *c, ms_addr *a)
{
    if (a->kind != MS_ADDR_UNIX || a->path[0] == '/')
        return true;
    char *p = ld_resolve_path(c, a->path);
    char *t = p ? ms_asprintf("unix://%s", p) : NULL;
    if (!t) {
        free(p);
        ms_addr_free(a);
        c->oom = true;
        return false;
    }
    free(a->path);
    free(a->text);
    a->path = p;
    a->text = t;
    return true;
}

/* A path relative to the manifest's directory. */
char *ld_resolve_path(ld_ctx *c, const char *p)
{
    char *r;
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    if (*p == '\0')
        p = ".";
    if (p[0] == '/' || !c->m->dir || strcmp(c->m->dir, ".") == 0)
        r = ms_strdup(p);
    else
        r = ms_asprintf("%s/%s", c->m->dir, p);
    if (!r)
        c->oom = true;
    return r;
}

static bool get_path(ld_ctx *c, const toml_kv *kv, char **dst)
{
    char *raw = NULL;
    if (!get_nonempty_string(c, kv, &raw))
        return false;
    char *r = ld_resolve_path(c, raw);
    free(raw);
    if (!r)
        return false;
    free(*dst);
    *dst = r;
    return true;
}

void ld_strlist_free(ms_strlist *l)
{
    for (size_t i = 0; i < l->len; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

static bool strlist_has(const ms_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

static bool strlist_push(ld_ctx *c, ms_strlist *l, const char *s)
{
    char **n = realloc(l->items, (l->len + 1) * sizeof *n);
    if (!n) {
        c->oom = true;
        return false;
    }
    l->items = n;
    if (!(l->items[l->len] = dup_checked(c, s)))
        return false;
    l->len++;
    return true;
}

/* An array of strings. append: add to dst, dropping duplicates (tags);
 * otherwise replace dst. pos_out (optional) gets each item's position. */
static bool get_strlist(ld_ctx *c, const toml_kv *kv, ms_strlist *dst, bool append, ms_pos **pos_out)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_ARRAY) {
        wrong_type(c, kv, "an array of strings");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < v->u.array.len; i++) {
        const toml_node *it = v->u.array.items[i];
        if (it->type != TOML_STRING) {
            ld_err(c, it->line, it->col, "\"%s\" must be an array of strings, but item %zu is %s",
                   kv->key, i + 1, article_type(it));
            ok = false;
        } else if (strlen(it->u.str.ptr) != it->u.str.len) {
            ld_err(c, it->line, it->col, "\"%s\": item %zu must not contain NUL characters", kv->key, i + 1);
            ok = false;
        }
    }
    if (!ok)
        return false;
    if (!append)
        ld_strlist_free(dst);
    ms_pos *pos = NULL;
    if (pos_out) {
        free(*pos_out);
        *pos_out = NULL;
        pos = calloc(v->u.array.len ? v->u.array.len : 1, sizeof *pos);
        if (!pos) {
            c->oom = true;
            return false;
        }
        *pos_out = pos;
    }
    for (size_t i = 0; i < v->u.array.len; i++) {
        const toml_node *it = v->u.array.items[i];
        if (append && strlist_has(dst, it->u.str.ptr))
            continue;
        if (pos)
            pos[dst->len] = (ms_pos){ it->line, it->col };
        if (!strlist_push(c, dst, it->u.str.ptr))
            return false;
    }
    return true;
}

void ld_strmap_free(ms_strmap *m)
{
    for (size_t i = 0; i < m->len; i++) {
        free(m->items[i].key);
        free(m->items[i].value);
    }
    free(m->items);
    m->items = NULL;
    m->len = 0;
}

static bool strmap_set(ld_ctx *c, ms_strmap *m, const char *key, char *value /* owned */)
{
    for (size_t i = 0; i < m->len; i++) {
        if (strcmp(m->items[i].key, key) == 0) {
            free(m->items[i].value);
            m->items[i].value = value;
            return true;
        }
    }
    ms_kv *n = realloc(m->items, (m->len + 1) * sizeof *n);
    if (!n) {
        free(value);
        c->oom = true;
        return false;
    }
    m->items = n;
    char *k = dup_checked(c, key);
    if (!k) {
        free(value);
        return false;
    }
    m->items[m->len++] = (ms_kv){ k, value };
    return true;
}

/* A table of scalars, merged key by key into dst. Strings, integers, floats
 * and booleans are accepted and kept as their text. */
static bool get_strmap(ld_ctx *c, const toml_kv *kv, ms_strmap *dst, bool env_names)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_TABLE) {
        wrong_type(c, kv, "a table of strings");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < v->u.table.len; i++) {
        const toml_kv *e = &v->u.table.items[i];
        const toml_node *x = e->value;
        char *text = NULL;
        if (env_names && (e->key_len == 0 || strchr(e->key, '=') || strlen(e->key) != e->key_len)) {
            ld_err(c, e->line, e->col, "\"%s\": invalid environment variable name \"%s\"", kv->key, e->key);
            ok = false;
            continue;
        }
        switch (x->type) {
        case TOML_STRING:
            if (strlen(x->u.str.ptr) != x->u.str.len) {
                ld_err(c, x->line, x->col, "\"%s.%s\" must not contain NUL characters", kv->key, e->key);
                ok = false;
                continue;
            }
            text = ms_strdup(x->u.str.ptr);
            break;
        case TOML_INTEGER: text = ms_asprintf("%lld", (long long)x->u.integer); break;
        case TOML_FLOAT: {
            char tmp[40];
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof tmp, "%.*g", prec, x->u.flt);
                if (strtod(tmp, NULL) == x->u.flt)
                    break;
            }
            text = ms_strdup(tmp);
            break;
        }
        case TOML_BOOL: text = ms_strdup(x->u.boolean ? "true" : "false"); break;
        default:
            ld_err(c, x->line, x->col, "\"%s.%s\" must be a string, number or boolean, not %s",
                   kv->key, e->key, article_type(x));
            ok = false;
            continue;
        }
        if (!text) {
            c->oom = true;
            return false;
        }
        if (!strmap_set(c, dst, e->key, text))
            return false;
    }
    return ok;
}

/* ---------------------------------------------------------------- routes */
void ld_routes_free(ms_route *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].bind);
        free(r[i].name);
        free(r[i].pattern);
        free(r[i].strip_prefix);
    }
    free(r);
}

static bool get_routes(ld_ctx *c, const toml_kv *kv, ms_ship *s)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_ARRAY) {
        wrong_type(c, kv, "an array of routes (\"bind:pattern\" or { bind = ..., pattern = ... })");
        return false;
    }
    ms_route *routes = calloc(v->u.array.len ? v->u.array.len : 1, sizeof *routes);
    if (!routes) {
        c->oom = true;
        return false;
    }
    size_t n = 0;
    bool ok = true;
    for (size_t i = 0; i < v->u.array.len; i++) {
        const toml_node *it = v->u.array.items[i];
        ms_route *r = &routes[n];
        r->pos = (ms_pos){ it->line, it->col };
        if (it->type == TOML_STRING) {
            const char *t = it->u.str.ptr;
            const char *colon = strchr(t, ':');
            if (!colon || colon == t || colon[1] == '\0' || strlen(t) != it->u.str.len) {
                ld_err(c, it->line, it->col, "route \"%s\" must be written \"bind:pattern\", like \"http:/api/.*\"", t);
                ok = false;
                continue;
            }
            r->bind = ms_strndup(t, (size_t)(colon - t));
            r->pattern = ms_strdup(colon + 1);
            if (!r->bind || !r->pattern)
                c->oom = true;
            n++;
        } else if (it->type == TOML_TABLE) {
            bool rok = true;
            for (size_t k = 0; k < it->u.table.len; k++) {
                const toml_kv *e = &it->u.table.items[k];
                if (strcmp(e->key, "bind") == 0)
                    rok &= get_nonempty_string(c, e, &r->bind);
                else if (strcmp(e->key, "pattern") == 0)
                    rok &= get_nonempty_string(c, e, &r->pattern);
                else if (strcmp(e->key, "name") == 0)
                    rok &= get_nonempty_string(c, e, &r->name);
                else if (strcmp(e->key, "strip_prefix") == 0)
                    rok &= get_nonempty_string(c, e, &r->strip_prefix);
                else if (strcmp(e->key, "raw_path") == 0)
                    rok &= get_bool(c, e, &r->raw_path);
                else if (strcmp(e->key, "request_buffering") == 0) {
                    r->request_buffering_set = get_bool(c, e, &r->request_buffering);
                    rok &= r->request_buffering_set;
                } else if (strcmp(e->key, "ws_compression") == 0)
                    rok &= get_bool(c, e, &r->ws_compression);
                else {
                    unknown_key(c, e, route_keys, NULL);
                    rok = false;
                }
            }
            if (rok && !r->bind) {
                ld_err(c, it->line, it->col, "route %zu: missing required key \"bind\"", i + 1);
                rok = false;
            }
            if (rok && !r->pattern) {
                ld_err(c, it->line, it->col, "route %zu: missing required key \"pattern\"", i + 1);
                rok = false;
            }
            n++;
            ok &= rok;
        } else {
            ld_err(c, it->line, it->col, "route %zu must be a string \"bind:pattern\" or a table, not %s",
                   i + 1, article_type(it));
            ok = false;
        }
    }
    if (!ok || c->oom) {
        ld_routes_free(routes, n);
        return false;
    }
    ld_routes_free(s->routes, s->nroutes);
    s->routes = routes;
    s->nroutes = n;
    return true;
}

/* A template (bind, healthcheck address) names only {instance}, {port} and
 * {gen}; any other brace is a mistake there. */
static bool template_ok(ld_ctx *c, const toml_node *at, const char *key, const char *text)
{
    for (const char *t = strchr(text, '{'); t; t = strchr(t + 1, '{')) {
        size_t n;
        if (ld_template_word(t, &n) >= 0)
            continue;
        const char *close = strchr(t, '}');
        ld_err(c, at->line, at->col, "%s \"%s\": unknown placeholder \"%.*s\" (use {instance}, {port} or {gen})",
               key, text, close ? (int)(close - t + 1) : (int)strlen(t), t);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- health */
static void health_defaults(ms_health *h)
{
    h->enabled = false;
    h->protocol = MS_HEALTH_HTTP;
    h->interval_ms = 5000;
    h->timeout_ms = 2000;
    h->grace_ms = 0;
    h->failures = 3;
    h->successes = 1;
    h->cooldown_ms = 10000;
    h->restart = false;
    h->port = 0;
}

static void health_clear(ms_health *h)
{
    free(h->path);
    h->path = NULL;
    if (h->has_address)
        ms_addr_free(&h->address);
    h->has_address = false;
    free(h->address_template);
    h->address_template = NULL;
    if (h->has_address_alt)
        ms_addr_free(&h->address_alt);
    h->has_address_alt = false;
    health_defaults(h);
}

/* A string that is one of names (NULL-terminated), as its index. expected
 * is what a value of another type is told; anything else is "WHAT \"x\"
 * (CHOICES)" with a "did you mean" when one is near. */
static bool get_choice(ld_ctx *c, const toml_kv *kv, const char *const *names, const char *expected,
                       const char *what, const char *choices, size_t *index)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_STRING) {
        wrong_type(c, kv, expected);
        return false;
    }
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v->u.str.ptr, names[i]) == 0) {
            *index = i;
            return true;
        }
    const char *near = ms_nearest(v->u.str.ptr, names);
    ld_err(c, v->line, v->col, "%s \"%s\"%s%s%s (%s)", what, v->u.str.ptr, near ? " (did you mean \"" : "",
           near ? near : "", near ? "\"?)" : "", choices);
    return false;
}

static bool get_health_protocol(ld_ctx *c, const toml_kv *kv, ms_health_protocol *dst)
{
    static const char *const names[] = { "http", "tcp", "postgres", "mysql", "redis", NULL };
    size_t i;
    if (!get_choice(c, kv, names, "one of \"http\", \"tcp\", \"postgres\", \"mysql\", \"redis\"",
                    "healthcheck: unknown protocol", "one of http, tcp, postgres, mysql, redis", &i))
        return false;
    *dst = (ms_health_protocol)i;
    return true;
}

static bool get_health_address(ld_ctx *c, const toml_kv *kv, ms_health *h)
{
    char *text = NULL;
    if (!get_nonempty_string(c, kv, &text))
        return false;
    if (strchr(text, '{')) {
        /* parsed per instance once the entry is whole (ld_expand_instances) */
        if (!template_ok(c, kv->value, "healthcheck: address", text)) {
            free(text);
            return false;
        }
        free(h->address_template);
        h->address_template = text;
        return true;
    }
    char why[160];
    ms_addr a;
    bool ok = ms_addr_parse(text, &a, why, sizeof why) && ld_resolve_unix(c, &a);
    if (ok) {
        if (h->has_address)
            ms_addr_free(&h->address);
        h->address = a;
        h->has_address = true;
    } else {
        ld_err(c, kv->value->line, kv->value->col, "healthcheck: invalid address \"%s\": %s", text, why);
    }
    free(text);
    return ok;
}

/* The entry's healthcheck replaces its base's as a whole. */
static bool get_health(ld_ctx *c, const toml_kv *kv, ms_health *h)
{
    const toml_node *v = kv->value;
    health_clear(h);
    if (v->type == TOML_STRING) {
        /* an invalid healthcheck was reported: no other message about it */
        h->enabled = get_nonempty_string(c, kv, &h->path) && ld_check_http_path(c, kv->value, "healthcheck", h->path);
        return h->enabled;
    }
    if (v->type != TOML_TABLE) {
        wrong_type(c, kv, "a path string like \"/health\" or a table");
        return false;
    }
    bool ok = true;
    const toml_kv *path_kv = NULL, *address_kv = NULL, *port_kv = NULL;
    for (size_t i = 0; i < v->u.table.len; i++) {
        const toml_kv *e = &v->u.table.items[i];
        int64_t n;
        if (strcmp(e->key, "path") == 0) {
            path_kv = e;
            ok &= get_nonempty_string(c, e, &h->path) && ld_check_http_path(c, e->value, "healthcheck.path", h->path);
        } else if (strcmp(e->key, "protocol") == 0)
            ok &= get_health_protocol(c, e, &h->protocol);
        else if (strcmp(e->key, "address") == 0) {
            address_kv = e;
            ok &= get_health_address(c, e, h);
        } else if (strcmp(e->key, "port") == 0) {
            port_kv = e;
            if (get_uint(c, e, 1, 65535, &n))
                h->port = (uint16_t)n;
            else
                ok = false;
        } else if (strcmp(e->key, "interval") == 0)
            ok &= get_duration(c, e, &h->interval_ms);
        else if (strcmp(e->key, "timeout") == 0)
            ok &= get_duration(c, e, &h->timeout_ms);
        else if (strcmp(e->key, "grace") == 0)
            ok &= get_duration(c, e, &h->grace_ms);
        else if (strcmp(e->key, "cooldown") == 0)
            ok &= get_duration(c, e, &h->cooldown_ms);
        else if (strcmp(e->key, "failures") == 0) {
            if (get_uint(c, e, 1, 1000, &n))
                h->failures = (unsigned)n;
            else
                ok = false;
        } else if (strcmp(e->key, "successes") == 0) {
            if (get_uint(c, e, 1, 1000, &n))
                h->successes = (unsigned)n;
            else
                ok = false;
        } else if (strcmp(e->key, "restart") == 0)
            ok &= get_bool(c, e, &h->restart);
        else {
            unknown_key(c, e, health_keys, NULL);
            ok = false;
        }
    }
    if (ok && h->protocol == MS_HEALTH_HTTP && !h->path) {
        ld_err(c, v->line, v->col, "healthcheck: missing required key \"path\"");
        ok = false;
    }
    if (ok && h->protocol != MS_HEALTH_HTTP && path_kv) {
        ld_err(c, path_kv->line, path_kv->col, "healthcheck: \"path\" is only for protocol = \"http\" (this check "
               "is \"%s\")", ms_health_protocol_name(h->protocol));
        ok = false;
    }
    if (ok && address_kv && port_kv) {
        ld_err(c, port_kv->line, port_kv->col, "healthcheck: give \"address\" or \"port\", not both");
        ok = false;
    }
    if (ok && h->interval_ms == 0) {
        ld_err(c, v->line, v->col, "healthcheck: \"interval\" must be more than 0");
        ok = false;
    }
    if (ok && h->timeout_ms == 0) {
        ld_err(c, v->line, v->col, "healthcheck: \"timeout\" must be more than 0");
        ok = false;
    }
    h->enabled = ok;
    return ok;
}

bool ld_check_http_path(ld_ctx *c, const toml_node *at, const char *key, const char *p)
{
    if (p[0] != '/') {
        ld_err(c, at->line, at->col, "\"%s\" must be a path starting with '/', like \"/health\"", key);
        return false;
    }
    for (const char *q = p; *q; q++) {
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            ld_err(c, at->line, at->col, "\"%s\" must not contain spaces or control characters", key);
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- restart policy */
static void restart_defaults(ms_restart *r)
{
    r->backoff_ms = 500;
    r->max_backoff_ms = 30000;
    r->reset_after_ms = 10000;
    r->loop_limit = 5;
    r->loop_window_ms = 60000;
    r->loop_pause_ms = 30000;
}

static bool get_restart(ld_ctx *c, const toml_kv *kv, ms_restart *r)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_TABLE) {
        wrong_type(c, kv, "a table like { backoff = \"500ms\", max_backoff = \"30s\" }");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < v->u.table.len; i++) {
        const toml_kv *e = &v->u.table.items[i];
        int64_t n;
        if (strcmp(e->key, "backoff") == 0)
            ok &= get_duration(c, e, &r->backoff_ms);
        else if (strcmp(e->key, "max_backoff") == 0)
            ok &= get_duration(c, e, &r->max_backoff_ms);
        else if (strcmp(e->key, "reset_after") == 0)
            ok &= get_duration(c, e, &r->reset_after_ms);
        else if (strcmp(e->key, "loop_window") == 0)
            ok &= get_duration(c, e, &r->loop_window_ms);
        else if (strcmp(e->key, "loop_pause") == 0)
            ok &= get_duration(c, e, &r->loop_pause_ms);
        else if (strcmp(e->key, "loop_limit") == 0) {
            if (get_uint(c, e, 1, 1000, &n))
                r->loop_limit = (unsigned)n;
            else
                ok = false;
        } else {
            unknown_key(c, e, restart_keys, NULL);
            ok = false;
        }
    }
    if (ok && r->max_backoff_ms < r->backoff_ms) {
        ld_err(c, v->line, v->col, "restart: \"max_backoff\" must not be less than \"backoff\"");
        ok = false;
    }
    return ok;
}

/* ---------------------------------------------------------------- stop signal */
/* The signals a process can be asked to stop with, in the order the error
 * lists them: SIGSTOP, SIGCHLD and the like stop nothing, and the rest have
 * other meanings. Their names are "SIG" and the C library's abbreviation. */
static const int stop_signals[] = { SIGTERM, SIGINT,  SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2,
                                    SIGWINCH, SIGALRM, SIGABRT, SIGPWR, SIGKILL };
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

typedef struct stop_signal_names {
    char name[N_STOP_SIGNALS][16];
    const char *list[N_STOP_SIGNALS + 1]; /* for ms_nearest */
    char all[N_STOP_SIGNALS * 10];        /* "SIGTERM, SIGINT, ..." */
} stop_signal_names;

static void name_stop_signals(stop_signal_names *n)
{
    size_t used = 0;
    n->all[0] = '\0';
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) {
        const char *abbrev = sigabbrev_np(stop_signals[i]);
        snprintf(n->name[i], sizeof n->name[i], "SIG%s", abbrev ? abbrev : "?");
        n->list[i] = n->name[i];
        int w = snprintf(n->all + used, sizeof n->all - used, "%s%s", i ? ", " : "", n->name[i]);
        if (w > 0 && (size_t)w < sizeof n->all - used)
            used += (size_t)w;
    }
    n->list[N_STOP_SIGNALS] = NULL;
}

/* stop_signal = "SIGINT", "INT", "sigint" or 2. */
static bool get_stop_signal(ld_ctx *c, const toml_kv *kv, int *dst)
{
    const toml_node *v = kv->value;
    stop_signal_names names;
    name_stop_signals(&names);
    if (v->type == TOML_INTEGER) {
        for (size_t i = 0; i < N_STOP_SIGNALS; i++) {
            if (v->u.integer == stop_signals[i]) {
                *dst = stop_signals[i];
                return true;
            }
        }
        const char *abbrev = v->u.integer > 0 && v->u.integer < NSIG ? sigabbrev_np((int)v->u.integer) : NULL;
        ld_err(c, v->line, v->col, "\"stop_signal\" %lld%s%s%s is not a signal that stops a process; use one of %s",
               (long long)v->u.integer, abbrev ? " (SIG" : "", abbrev ? abbrev : "", abbrev ? ")" : "", names.all);
        return false;
    }
    if (v->type != TOML_STRING) {
        wrong_type(c, kv, "a signal name like \"SIGINT\" or a signal number");
        return false;
    }
    char name[16];
    const char *text = v->u.str.ptr;
    bool fits = strlen(text) == v->u.str.len && v->u.str.len + 4 <= sizeof name;
    if (fits) {
        size_t n = 0;
        if (strncasecmp(text, "SIG", 3) != 0)
            n = (size_t)snprintf(name, sizeof name, "SIG");
        for (const char *q = text; *q; q++)
            name[n++] = (char)((*q >= 'a' && *q <= 'z') ? *q - 'a' + 'A' : *q);
        name[n] = '\0';
        for (size_t i = 0; i < N_STOP_SIGNALS; i++) {
            if (strcmp(name, names.name[i]) == 0) {
                *dst = stop_signals[i];
                return true;
            }
        }
    }
    for (int sig = 1; fits && sig < SIGRTMIN; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev && strcmp(name + 3, abbrev) == 0) {
            ld_err(c, v->line, v->col, "\"stop_signal\" %s is not a signal that stops a process; use one of %s", name,
                   names.all);
            return false;
        }
    }
    const char *near = fits ? ms_nearest(name, names.list) : NULL;
    if (near)
        ld_err(c, v->line, v->col, "\"stop_signal\" \"%.40s\" is not a signal name (did you mean \"%s\"?)", text,
               near);
    else
        ld_err(c, v->line, v->col, "\"stop_signal\" \"%.40s\" is not a signal name; use one of %s", text, names.all);
    return false;
}

/* ---------------------------------------------------------------- ships and bays */
static const char *kind_word(ms_ship_kind k)
{
    return k == MS_SHIP ? "ship" : k == MS_BAY ? "bay" : "upstream";
}

/* The keys an entry of s's kind accepts ([base.bay] accepts either bay type's). */
static const char *const *vessel_keys(const ms_ship *s, bool is_base)
{
    if (s->kind == MS_SHIP)
        return ship_keys;
    if (s->kind == MS_UPSTREAM)
        return upstream_keys;
    if (is_base)
        return any_bay_keys;
    return s->http_bay ? hbay_keys : bay_keys;
}

/* Why key k, known elsewhere, is not one of s's; NULL when it is nowhere. */
static const char *misplaced_key(const ms_ship *s, const char *k, char *buf, size_t len)
{
    if (s->kind == MS_SHIP && in_list(any_bay_keys, k))
        snprintf(buf, len, "(\"%s\" is only for %s)", k,
                 strcmp(k, "config") == 0 ? "bays and modules" : in_list(bay_keys, k) ? "bays" : "[[bays.http]]");
    else if (s->kind == MS_BAY && in_list(ship_keys, k))
        snprintf(buf, len, "(\"%s\" is only for ships%s)", k,
                 strcmp(k, "bind") == 0 ? "; a bay docks over the Unix socket in MS_SOCKET_PATH" : "");
    else if (s->kind == MS_BAY && in_list(any_bay_keys, k))
        snprintf(buf, len, "(\"%s\" is only for [[bays.%s]])", k, s->http_bay ? "websocket" : "http");
    else if (s->kind == MS_UPSTREAM && (in_list(ship_keys, k) || in_list(any_bay_keys, k)))
        snprintf(buf, len, "(an upstream is an app Mothership does not start or supervise: it has no \"%s\"; "
                 "write a [[fleet.<group>]] ship or a [[bays.http]] bay for that)", k);
    else
        return NULL;
    return buf;
}

/* An upstream's protocol: "docking" (v3 links) or "http". */
static bool get_upstream_protocol(ld_ctx *c, const toml_kv *kv, ms_upstream_protocol *dst)
{
    static const char *const names[] = { "docking", "http", NULL };
    size_t i;
    if (!get_choice(c, kv, names, "\"docking\" or \"http\"", "unknown protocol", "\"docking\" or \"http\"", &i))
        return false;
    *dst = i == 0 ? MS_UPSTREAM_DOCKING : MS_UPSTREAM_HTTP;
    return true;
}

/* Resolves each path of list against the manifest's directory, in place;
 * an empty one is an error at kv's value. */
static bool resolve_paths(ld_ctx *c, const toml_kv *kv, ms_strlist *list)
{
    for (size_t i = 0; i < list->len; i++) {
        if (list->items[i][0] == '\0') {
            ld_err(c, kv->value->line, kv->value->col, "\"%s\": item %zu must not be empty", kv->key, i + 1);
            return false;
        }
        char *r = ld_resolve_path(c, list->items[i]);
        if (!r)
            return false;
        free(list->items[i]);
        list->items[i] = r;
    }
    return true;
}

/* When ok, list replaces *dst; otherwise list is freed. Returns ok. */
static bool put_strlist(ms_strlist *dst, ms_strlist list, bool ok)
{
    if (!ok) {
        ld_strlist_free(&list);
        return false;
    }
    ld_strlist_free(dst);
    *dst = list;
    return true;
}

/* Directories, each resolved against the manifest's directory. */
static bool get_dirs(ld_ctx *c, const toml_kv *kv, ms_strlist *dst)
{
    ms_strlist list = { 0 }; /* what get_strlist took before it failed is freed too */
    bool ok = get_strlist(c, kv, &list, false, NULL) && resolve_paths(c, kv, &list);
    return put_strlist(dst, list, ok);
}

/* WebSocket subprotocol names a bay speaks: HTTP tokens (RFC 6455 §4.1). */
static bool get_subprotocols(ld_ctx *c, const toml_kv *kv, ms_strlist *dst)
{
    ms_strlist list = { 0 };
    bool ok = get_strlist(c, kv, &list, false, NULL);
    for (size_t i = 0; i < list.len && ok; i++) {
        const char *p = list.items[i];
        ok = p[0] != '\0' && strlen(p) <= 128;
        for (; *p && ok; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 strchr("!#$%&'*+-.^_`|~", *p) != NULL;
        if (!ok)
            ld_err(c, kv->value->line, kv->value->col,
                   "subprotocol \"%.140s\" is not a token of 1 to 128 characters (letters, digits and "
                   "!#$%%&'*+-.^_`|~)", list.items[i]);
    }
    return put_strlist(dst, list, ok);
}

static bool get_balance(ld_ctx *c, const toml_kv *kv, ms_balance *dst)
{
    static const char *const names[] = { "round_robin", "least_conn", NULL };
    size_t i;
    if (!get_choice(c, kv, names, "\"round_robin\" or \"least_conn\"", "unknown balance",
                    "round_robin or least_conn", &i))
        return false;
    *dst = (ms_balance)i;
    return true;
}

#define MS_ENV_FILES_MAX 64

/* env_file: one path or an array of them, resolved; replaces a base's. */
static bool get_env_files(ld_ctx *c, const toml_kv *kv, ms_strlist *dst)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_STRING && v->type != TOML_ARRAY) {
        wrong_type(c, kv, "a path or an array of paths");
        return false;
    }
    ms_strlist raw = { 0 };
    bool ok = true;
    if (v->type == TOML_ARRAY)
        ok = get_strlist(c, kv, &raw, false, NULL);
    else {
        char *one = NULL;
        ok = get_nonempty_string(c, kv, &one);
        raw.items = ok ? calloc(1, sizeof *raw.items) : NULL;
        if (raw.items)
            raw.items[raw.len++] = one;
        else {
            free(one);
            c->oom |= ok;
            ok = false;
        }
    }
    if (ok && raw.len > MS_ENV_FILES_MAX) {
        /* each is read (up to 1 MiB) at every load and reload */
        ld_err(c, v->line, v->col, "\"env_file\": %zu files, at most %d", raw.len, MS_ENV_FILES_MAX);
        ok = false;
    }
    ok = ok && resolve_paths(c, kv, &raw);
    return put_strlist(dst, raw, ok);
}

/* secret_env: NAME = "path", merged into a base's; paths resolved. */
static bool get_secret_env(ld_ctx *c, const toml_kv *kv, ms_strmap *dst)
{
    const toml_node *v = kv->value;
    if (v->type != TOML_TABLE) {
        wrong_type(c, kv, "a table of NAME = \"path of the file holding the value\"");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < v->u.table.len; i++) {
        const toml_kv *e = &v->u.table.items[i];
        const toml_node *x = e->value;
        if (e->key_len == 0 || strchr(e->key, '=') || strlen(e->key) != e->key_len) {
            ld_err(c, e->line, e->col, "\"secret_env\": invalid environment variable name \"%s\"", e->key);
            ok = false;
            continue;
        }
        if (x->type != TOML_STRING || x->u.str.len == 0 || strlen(x->u.str.ptr) != x->u.str.len) {
            ld_err(c, x->line, x->col, "\"secret_env.%s\" must be the path of the file holding the value",
                   e->key);
            ok = false;
            continue;
        }
        char *r = ld_resolve_path(c, x->u.str.ptr);
        if (!r || !strmap_set(c, dst, e->key, r))
            return false;
    }
    return ok;
}

/* Variables an entry's env files may set in all: the maps are searched
 * linearly (here and at each spawn), so a 1 MiB file of short lines must
 * not cost minutes of the event loop. */
#define MS_ENV_FILE_VARS_MAX 4096

typedef struct envfile_ctx {
    ld_ctx *c;
    ms_strmap *vars;
    bool too_many;
} envfile_ctx;

static bool envfile_put(void *ud, const char *key, const char *value)
{
    envfile_ctx *x = ud;
    if (x->vars->len >= MS_ENV_FILE_VARS_MAX && !ms_strmap_get(x->vars, key)) {
        x->too_many = true;
        return false;
    }
    char *v = ms_strdup(value);
    if (!v) {
        x->c->oom = true;
        return false;
    }
    return strmap_set(x->c, x->vars, key, v);
}

#define MS_ENV_FILE_MAX (1024 * 1024)

/* Read one env_file into vars (later files override earlier ones). */
static bool read_env_file(ld_ctx *c, const ms_ship *s, const char *path, ms_strmap *vars)
{
    int line = s->env_file_pos.line, col = s->env_file_pos.col;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (a reload runs
     * on the event loop); only a regular file is read */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    const char *bad = fd < 0 || fstat(fd, &st) != 0 ? strerror(errno)
                    : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
    if (bad) {
        ld_err(c, line, col, "env_file \"%s\": %s", path, bad);
        if (fd >= 0)
            close(fd);
        return false;
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        c->oom = true;
        return false;
    }
    char *data = malloc(MS_ENV_FILE_MAX + 1);
    size_t len = data ? fread(data, 1, MS_ENV_FILE_MAX + 1, fp) : 0;
    bool err = ferror(fp);
    fclose(fp);
    if (!data) {
        c->oom = true;
        return false;
    }
    if (err || len > MS_ENV_FILE_MAX) {
        ld_err(c, line, col, "env_file \"%s\": %s", path, err ? "cannot read it" : "larger than 1 MiB");
        free(data);
        return false;
    }
    char why[160];
    int at = 0;
    envfile_ctx x = { c, vars, false };
    bool ok = ms_dotenv_parse(data, len, envfile_put, &x, &at, why, sizeof why);
    free(data);
    if (x.too_many)
        ld_err(c, line, col, "env_file \"%s\": more than %d variables in the entry's env files", path,
               MS_ENV_FILE_VARS_MAX);
    else if (!ok && at > 0)
        ld_err(c, line, col, "env_file %s:%d: %s", path, at, why);
    return ok;
}

/* Read the entry's env files and put their variables under its env: a key
 * the entry's (or its base's) env sets keeps that value. */
static void merge_env_files(ld_ctx *c, ms_ship *s)
{
    ms_strmap vars = { 0 };
    bool ok = true;
    for (size_t i = 0; i < s->env_files.len; i++)
        ok &= read_env_file(c, s, s->env_files.items[i], &vars);
    for (size_t i = 0; ok && i < vars.len; i++) {
        if (ms_strmap_get(&s->env, vars.items[i].key))
            continue;
        ok = strmap_set(c, &s->env, vars.items[i].key, vars.items[i].value);
        vars.items[i].value = NULL; /* owned by s->env now, or freed */
    }
    if (!ok)
        c->bad = true;
    ld_strmap_free(&vars);
}

/* access_log = "off" | "text" | "json" */
static bool get_access_log(ld_ctx *c, const toml_kv *kv, ms_access_log *dst)
{
    static const char *const names[] = { "off", "text", "json", NULL };
    size_t i;
    if (!get_choice(c, kv, names, "\"off\", \"text\" or \"json\"", "unknown access_log", "off, text or json", &i))
        return false;
    *dst = (ms_access_log)(MS_ACCESS_LOG_OFF + i);
    return true;
}

/* Apply the keys of one TOML table (a base template or the entry itself) to
 * a ship or bay. */
static void apply_vessel(ld_ctx *c, ms_ship *s, const toml_node *t, bool is_base)
{
    const char *const *known = vessel_keys(s, is_base);
    for (size_t i = 0; i < t->u.table.len; i++) {
        const toml_kv *kv = &t->u.table.items[i];
        const char *k = kv->key;
        if (!in_list(known, k)) {
            char extra[224];
            unknown_key(c, kv, known, misplaced_key(s, k, extra, sizeof extra));
            c->bad = true;
            continue;
        }
        bool ok = true;
        if (strcmp(k, "name") == 0) {
            if (is_base) {
                ld_err(c, kv->line, kv->col, "a base template cannot set \"name\"");
                ok = false;
            } else
                ok = get_nonempty_string(c, kv, &s->name);
        } else if (strcmp(k, "command") == 0)
            ok = get_nonempty_string(c, kv, &s->command);
        else if (strcmp(k, "args") == 0)
            ok = get_strlist(c, kv, &s->args, false, NULL);
        else if (strcmp(k, "cwd") == 0) {
            ok = get_path(c, kv, &s->cwd);
            s->cwd_pos = (ms_pos){ kv->value->line, kv->value->col };
        }
        else if (strcmp(k, "bind") == 0) {
            char *text = NULL;
            ok = get_nonempty_string(c, kv, &text);
            if (ok && s->kind == MS_UPSTREAM && strchr(text, '{')) {
                ld_err(c, kv->value->line, kv->value->col, "bind \"%s\": an upstream's address is written out "
                       "whole ({instance}, {port} and {gen} are for ships with instances)", text);
                ok = false;
            } else if (ok && strchr(text, '{')) {
                /* parsed per instance once the entry is whole (ld_expand_instances) */
                ok = template_ok(c, kv->value, "bind", text);
                if (ok) {
                    if (s->has_bind)
                        ms_addr_free(&s->bind);
                    memset(&s->bind, 0, sizeof s->bind);
                    free(s->bind_template);
                    s->bind_template = text;
                    text = NULL;
                    s->has_bind = true;
                    s->bind_pos = (ms_pos){ kv->value->line, kv->value->col };
                }
            } else if (ok) {
                char why[160];
                ms_addr a;
                if (ms_addr_parse(text, &a, why, sizeof why) && ld_resolve_unix(c, &a)) {
                    if (s->has_bind)
                        ms_addr_free(&s->bind);
                    s->bind = a;
                    s->has_bind = true;
                    free(s->bind_template);
                    s->bind_template = NULL;
                    s->bind_pos = (ms_pos){ kv->value->line, kv->value->col };
                } else {
                    ld_err(c, kv->value->line, kv->value->col, "invalid bind address \"%s\": %s", text, why);
                    ok = false;
                }
            }
            free(text);
        } else if (strcmp(k, "healthcheck") == 0) {
            ok = get_health(c, kv, &s->health);
            s->health_pos = (ms_pos){ kv->value->line, kv->value->col };
        }
        else if (strcmp(k, "routes") == 0)
            ok = get_routes(c, kv, s);
        else if (strcmp(k, "depends_on") == 0)
            ok = get_strlist(c, kv, &s->depends_on, false, &s->depends_pos);
        else if (strcmp(k, "env") == 0)
            ok = get_strmap(c, kv, &s->env, true);
        else if (strcmp(k, "env_file") == 0) {
            ok = get_env_files(c, kv, &s->env_files);
            s->env_file_pos = (ms_pos){ kv->value->line, kv->value->col };
        } else if (strcmp(k, "secret_env") == 0) {
            ok = get_secret_env(c, kv, &s->secret_env);
            s->secret_env_pos = (ms_pos){ kv->value->line, kv->value->col };
        } else if (strcmp(k, "config") == 0)
            ok = get_strmap(c, kv, &s->config, false);
        else if (strcmp(k, "subprotocols") == 0)
            ok = get_subprotocols(c, kv, &s->subprotocols);
        else if (strcmp(k, "tags") == 0)
            ok = get_strlist(c, kv, &s->tags, true, NULL);
        else if (strcmp(k, "critical") == 0)
            ok = get_bool(c, kv, &s->critical);
        else if (strcmp(k, "oneshot") == 0)
            ok = get_bool(c, kv, &s->oneshot);
        else if (strcmp(k, "schedule") == 0)
            ok = get_schedule(c, kv, s);
        else if (strcmp(k, "memory_max") == 0 || strcmp(k, "cpu_max") == 0 || strcmp(k, "pids_max") == 0)
            ok = get_limit(c, kv, s);
        else if (strcmp(k, "ready_timeout") == 0) {
            ok = get_duration(c, kv, &s->ready_timeout_ms);
            if (ok && s->ready_timeout_ms == 0) {
                ld_err(c, kv->value->line, kv->value->col, "\"ready_timeout\" must be more than 0");
                ok = false;
            }
        }
        else if (strcmp(k, "shutdown_timeout") == 0)
            ok = get_duration(c, kv, &s->shutdown_timeout_ms);
        else if (strcmp(k, "stop_signal") == 0)
            ok = get_stop_signal(c, kv, &s->stop_signal);
        else if (strcmp(k, "ready_after") == 0)
            ok = get_duration(c, kv, &s->ready_after_ms);
        else if (strcmp(k, "restart") == 0)
            ok = get_restart(c, kv, &s->restart);
        else if (strcmp(k, "instances") == 0) {
            int64_t n;
            if ((ok = get_uint(c, kv, 1, MS_MAX_INSTANCES, &n)))
                s->instances = (unsigned)n;
        } else if (strcmp(k, "port") == 0) {
            int64_t n;
            if ((ok = get_uint(c, kv, 1, 65535, &n)))
                s->port = (uint16_t)n;
        } else if (strcmp(k, "balance") == 0)
            ok = get_balance(c, kv, &s->balance);
        else if (strcmp(k, "drain_timeout") == 0)
            ok = get_duration(c, kv, &s->drain_timeout_ms);
        else if (strcmp(k, "handover_timeout") == 0)
            ok = get_duration(c, kv, &s->handover_timeout_ms);
        else if (strcmp(k, "workers") == 0) {
            int64_t n;
            if ((ok = get_uint(c, kv, 0, 256, &n)))
                s->bay_workers = (unsigned)n;
        } else if (strcmp(k, "threads") == 0) {
            int64_t n;
            if ((ok = get_uint(c, kv, 1, 1024, &n)))
                s->bay_threads = (unsigned)n;
        } else if (strcmp(k, "request_timeout") == 0) {
            ok = get_duration(c, kv, &s->request_timeout_ms);
            if (ok && s->request_timeout_ms == 0) {
                ld_err(c, kv->value->line, kv->value->col, "\"request_timeout\" must be more than 0");
                ok = false;
            }
        } else if (strcmp(k, "max_queue") == 0) {
            int64_t n;
            if ((ok = get_uint(c, kv, 1, 65536, &n)))
                s->max_queue = (unsigned)n;
        } else if (strcmp(k, "file_roots") == 0)
            ok = get_dirs(c, kv, &s->file_roots);
        else if (strcmp(k, "protocol") == 0)
            ok = get_upstream_protocol(c, kv, &s->upstream_protocol);
        if (!ok)
            c->bad = true;
    }
}

/* A required key: missing is reported; present but invalid was reported
 * where it is written. Either way the entry is bad. */
static void require(ld_ctx *ec, const toml_node *entry, bool have, const char *key, const char *hint)
{
    if (have)
        return;
    if (!toml_get_kv(entry, key))
        ld_err(ec, entry->line, entry->col, "missing required key \"%s\"%s", key, hint);
    ec->bad = true;
}

static void vessel_defaults(ms_ship *s, ms_ship_kind kind)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->critical = true;
    s->ready_timeout_ms = MS_UNSET;
    s->shutdown_timeout_ms = MS_UNSET;
    s->stop_signal = SIGTERM;
    s->ready_after_ms = 1000;
    s->instances = 1;
    s->drain_timeout_ms = 30000;
    s->handover_timeout_ms = 30000;
    s->upstream_protocol = MS_UPSTREAM_DOCKING;
    s->bay_workers = 0;
    s->bay_threads = 4;
    s->request_timeout_ms = 60000;
    s->max_queue = 1024;
    health_defaults(&s->health);
    restart_defaults(&s->restart);
}

/* Where a key of the entry is written (its value), else where the entry
 * starts (the key came from a base template). */
static ms_pos key_pos(const toml_node *entry, const char *key)
{
    const toml_kv *kv = toml_get_kv(entry, key);
    return kv ? (ms_pos){ kv->value->line, kv->value->col } : (ms_pos){ entry->line, entry->col };
}

static bool template_has(const char *text, int word)
{
    size_t n;
    for (const char *t = text ? strchr(text, '{') : NULL; t; t = strchr(t + 1, '{'))
        if (ld_template_word(t, &n) == word)
            return true;
    return false;
}

/* A ship with a problem reported: expand nothing, so that no address or
 * collision of its instances repeats it. */
static void forget_replicas(ms_ship *s)
{
    s->instances = 1;
    if (s->bind_template) {
        free(s->bind_template);
        s->bind_template = NULL;
    }
    free(s->health.address_template);
    s->health.address_template = NULL;
}

/* The replica keys of a whole ship (base and entry merged): instances need
 * an address per instance, {port} needs port, a job has none of them. */
static void check_replicas(ld_ctx *ec, const toml_node *entry, ms_ship *s)
{
    static const char *const replica_keys[] = { "instances", "port", "balance", "drain_timeout", NULL };
    if (s->oneshot) {
        for (size_t i = 0; replica_keys[i]; i++) {
            const toml_kv *kv = toml_get_kv(entry, replica_keys[i]);
            if (!kv)
                continue;
            ld_err(ec, kv->line, kv->col, "a oneshot job cannot have \"%s\" (it runs once and serves nothing)",
                   kv->key);
            ec->bad = true;
        }
        s->instances = 1; /* from a base template: a job has one process */
    }
    const char *bt = s->bind_template;
    ms_pos ip = key_pos(entry, "instances");
    if (s->instances > 1 && !s->has_bind) {
        ld_err(ec, ip.line, ip.col, "instances = %u needs a \"bind\": each instance listens at its own address "
               "(bind = \"tcp://127.0.0.1:{port}\" with port = 3000, or \"unix:///run/app-{instance}.sock\")",
               s->instances);
        ec->bad = true;
    } else if (s->instances > 1 && !template_has(bt, 0) && !template_has(bt, 1)) {
        ld_err(ec, s->bind_pos.line, s->bind_pos.col, "bind \"%s\" is the same for all %u instances: put {port} "
               "(port + instance) or {instance} in it", bt ? bt : s->bind.text, s->instances);
        ec->bad = true;
    }
    if (template_has(bt, 1) && !s->port) {
        ld_err(ec, s->bind_pos.line, s->bind_pos.col, "bind \"%s\" uses {port} but the ship has no \"port\" "
               "(add port = 3000: {port} is port + instance)", bt);
        ec->bad = true;
    }
    if (template_has(s->health.address_template, 1) && !s->port) {
        ld_err(ec, s->health_pos.line, s->health_pos.col, "healthcheck: address \"%s\" uses {port} but the ship "
               "has no \"port\"", s->health.address_template);
        ec->bad = true;
    }
    if (s->port && (unsigned)s->port + 2 * s->instances - 1 > 65535) {
        ms_pos pp = key_pos(entry, "port");
        ld_err(ec, pp.line, pp.col, "port %u with %u instances goes past 65535 (instance i listens at port + i, "
               "its replacement at port + i + %u)", (unsigned)s->port, s->instances, s->instances);
        ec->bad = true;
    }
    if (s->instances > 1 && s->health.enabled && s->health.port) {
        ld_err(ec, s->health_pos.line, s->health_pos.col, "healthcheck: \"port\" %u is the same for all %u "
               "instances: use address = \"tcp://127.0.0.1:{port}\" (or leave both out to check each "
               "instance's bind)", (unsigned)s->health.port, s->instances);
        ec->bad = true;
    }
    if (ec->bad)
        forget_replicas(s);
}

/* [base.bay] may set keys of either bay type: a bay keeps its own type's. */
static void forget_other_bay_type(ms_ship *s)
{
    if (s->http_bay) {
        ld_strlist_free(&s->subprotocols);
        s->handover_timeout_ms = 30000;
    } else {
        s->bay_workers = 0;
        s->bay_threads = 4;
        s->request_timeout_ms = 60000;
        s->max_queue = 1024;
        ld_strlist_free(&s->file_roots);
    }
}

/* An upstream is reached at its bind: over docking v3 only on a Unix
 * socket; the link settings are for docking only. */
static void check_upstream(ld_ctx *ec, const toml_node *entry, ms_ship *s)
{
    s->http_bay = s->upstream_protocol == MS_UPSTREAM_DOCKING;
    if (s->http_bay && s->bind.kind != MS_ADDR_UNIX) {
        ld_err(ec, s->bind_pos.line, s->bind_pos.col, "bind \"%s\": protocol \"docking\" links go over a Unix "
               "socket: write bind = \"unix:///path/app.sock\" (or protocol = \"http\" for an HTTP server)",
               s->bind.text);
        ec->bad = true;
    }
    static const char *const docking_only[] = { "request_timeout", "max_queue", "file_roots", NULL };
    for (size_t i = 0; !s->http_bay && docking_only[i]; i++) {
        const toml_kv *kv = toml_get_kv(entry, docking_only[i]);
        if (!kv)
            continue;
        ld_err(ec, kv->line, kv->col, "\"%s\" is only for protocol = \"docking\" (an HTTP upstream is "
               "proxied like a ship: see [mothership.http] upstream_timeout)", kv->key);
        ec->bad = true;
    }
}

static bool load_vessel(ld_ctx *c, const toml_node *entry, ms_ship_kind kind, const char *group,
                        const toml_node *base, ms_ship *out)
{
    vessel_defaults(out, kind);
    out->pos = (ms_pos){ entry->line, entry->col };
    out->name_pos = out->pos;
    out->group = dup_checked(c, group);
    out->http_bay = kind == MS_BAY && strcmp(group, "http") == 0;
    /* name first, so every later message can say whose it is */
    char label[128];
    const toml_kv *nkv = toml_get_kv(entry, "name");
    ld_ctx ec = *c;
    ec.bad = false;
    if (nkv)
        out->name_pos = (ms_pos){ nkv->value->line, nkv->value->col };
    if (nkv && nkv->value->type == TOML_STRING && nkv->value->u.str.len > 0)
        snprintf(label, sizeof label, "%s \"%.64s\"", kind_word(kind), nkv->value->u.str.ptr);
    else if (kind == MS_UPSTREAM)
        snprintf(label, sizeof label, "upstream #%zu in [[mothership.upstreams]]", c->index + 1);
    else
        snprintf(label, sizeof label, "%s #%zu in [[%s.%s]]", kind_word(kind), c->index + 1,
                 kind == MS_SHIP ? "fleet" : "bays", group);
    ec.what = label;
    if (base) {
        ld_ctx bc = ec;
        bc.diags = NULL; /* base problems are reported once, by check_base */
        apply_vessel(&bc, out, base, true);
        ec.oom |= bc.oom;
        if (kind == MS_BAY)
            forget_other_bay_type(out);
    }
    apply_vessel(&ec, out, entry, false);
    if (out->env_files.len > 0 && !ec.bad)
        merge_env_files(&ec, out);
    require(&ec, entry, out->name != NULL, "name", "");
    if (kind == MS_UPSTREAM) {
        require(&ec, entry, out->has_bind, "bind", " (where the app listens: \"unix:///path\" for docking, "
                "or a TCP address for protocol = \"http\")");
        if (!ec.bad)
            check_upstream(&ec, entry, out);
    } else
        require(&ec, entry, out->command != NULL, "command", "");
    if (kind == MS_SHIP && !ec.bad)
        check_replicas(&ec, entry, out);
    else if (kind == MS_SHIP)
        forget_replicas(out);
    c->oom |= ec.oom;
    c->bad |= ec.bad;
    return !ec.bad;
}

/* Report problems of a base template once, against its own lines. */
static void check_base(ld_ctx *c, const toml_node *base, int which)
{
    ld_ctx bc = *c;
    if (which == 2) {
        ms_module tmp;
        memset(&tmp, 0, sizeof tmp);
        bc.what = "[base.module]";
        ld_apply_module(&bc, &tmp, base, true);
        ld_module_free(&tmp);
    } else {
        ms_ship tmp;
        vessel_defaults(&tmp, which == 0 ? MS_SHIP : MS_BAY);
        bc.what = which == 0 ? "[base.ship]" : "[base.bay]";
        apply_vessel(&bc, &tmp, base, true);
        ld_ship_free(&tmp);
    }
    c->bad |= bc.bad;
    c->oom |= bc.oom;
}

/* ---------------------------------------------------------------- modules */
void ld_apply_module(ld_ctx *c, ms_module *mod, const toml_node *t, bool is_base)
{
    for (size_t i = 0; i < t->u.table.len; i++) {
        const toml_kv *kv = &t->u.table.items[i];
        const char *k = kv->key;
        bool ok = true;
        if (strcmp(k, "name") == 0) {
            if (is_base) {
                ld_err(c, kv->line, kv->col, "a base template cannot set \"name\"");
                ok = false;
            } else
                ok = get_nonempty_string(c, kv, &mod->name);
        } else if (strcmp(k, "wasm") == 0) {
            ok = get_path(c, kv, &mod->wasm);
            mod->wasm_pos = (ms_pos){ kv->value->line, kv->value->col };
        }
        else if (strcmp(k, "routes") == 0)
            ok = get_strlist(c, kv, &mod->routes, false, &mod->route_pos);
        else if (strcmp(k, "phase") == 0) {
            char *p = NULL;
            ok = get_string(c, kv, &p);
            if (ok && strcmp(p, "request") == 0)
                mod->phase = MS_PHASE_REQUEST;
            else if (ok && strcmp(p, "response") == 0)
                mod->phase = MS_PHASE_RESPONSE;
            else if (ok) {
                ld_err(c, kv->value->line, kv->value->col,
                       "\"phase\" must be \"request\" or \"response\", not \"%s\"", p);
                ok = false;
            }
            free(p);
        } else if (strcmp(k, "config") == 0)
            ok = get_strmap(c, kv, &mod->config, false);
        else if (strcmp(k, "tags") == 0)
            ok = get_strlist(c, kv, &mod->tags, true, NULL);
        else if (strcmp(k, "on_error") == 0) {
            char *p = NULL;
            ok = get_string(c, kv, &p);
            if (ok && strcmp(p, "open") == 0)
                mod->fail_open = true;
            else if (ok && strcmp(p, "closed") == 0)
                mod->fail_open = false;
            else if (ok) {
                ld_err(c, kv->value->line, kv->value->col,
                       "\"on_error\" must be \"closed\" (answer 500) or \"open\" (skip the payload), not \"%s\"", p);
                ok = false;
            }
            free(p);
        } else {
            unknown_key(c, kv, module_keys, NULL);
            ok = false;
        }
        if (!ok)
            c->bad = true;
    }
}

static bool load_module(ld_ctx *c, const toml_node *entry, const toml_node *base, ms_module *out)
{
    memset(out, 0, sizeof *out);
    out->pos = (ms_pos){ entry->line, entry->col };
    char label[128];
    const toml_kv *nkv = toml_get_kv(entry, "name");
    out->name_pos = nkv ? (ms_pos){ nkv->value->line, nkv->value->col } : out->pos;
    if (nkv && nkv->value->type == TOML_STRING && nkv->value->u.str.len > 0)
        snprintf(label, sizeof label, "module \"%.64s\"", nkv->value->u.str.ptr);
    else
        snprintf(label, sizeof label, "module #%zu", c->index + 1);
    ld_ctx ec = *c;
    ec.what = label;
    ec.bad = false;
    if (base) {
        ld_ctx bc = ec;
        bc.diags = NULL;
        ld_apply_module(&bc, out, base, true);
        ec.oom |= bc.oom;
    }
    ld_apply_module(&ec, out, entry, false);
    require(&ec, entry, out->name != NULL, "name", "");
    require(&ec, entry, out->wasm != NULL, "wasm", " (path to the .wasm file)");
    c->bad |= ec.bad;
    c->oom |= ec.oom;
    return !ec.bad;
}

/* ---------------------------------------------------------------- uplinks */
/* Expand $VAR and ${VAR}. An unset variable is an error naming it; offline
 * (c->warnings) a warning, with *unset set and NULL returned. */
static char *expand_env(ld_ctx *c, const toml_node *at, const char *in, bool *unset)
{
    size_t cap = strlen(in) + 1, len = 0;
    char *out = malloc(cap);
    if (!out) {
        c->oom = true;
        return NULL;
    }
    for (const char *p = in; *p;) {
        const char *val = NULL;
        size_t adv = 1;
        if (p[0] == '$' && (p[1] == '{' || p[1] == '_' || (p[1] >= 'A' && p[1] <= 'Z') ||
                            (p[1] >= 'a' && p[1] <= 'z'))) {
            bool braced = p[1] == '{';
            const char *s = p + (braced ? 2 : 1), *e = s;
            while (*e == '_' || (*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9'))
                e++;
            if (braced && (*e != '}' || e == s)) {
                ld_err(c, at->line, at->col, "unterminated or empty ${...} in \"%s\"", in);
                free(out);
                return NULL;
            }
            char name[128];
            size_t nn = (size_t)(e - s);
            if (nn >= sizeof name) {
                ld_err(c, at->line, at->col, "environment variable name too long in \"%s\"", in);
                free(out);
                return NULL;
            }
            memcpy(name, s, nn);
            name[nn] = '\0';
            val = getenv(name);
            if (!val && c->warnings) {
                ms_diag_add(c->warnings, at->line, at->col, "warning: %s: environment variable %s is not set: "
                            "the uplink is not checked here (preflight and run need it)", c->what, name);
                *unset = true;
                free(out);
                return NULL;
            }
            if (!val) {
                ld_err(c, at->line, at->col, "environment variable %s is not set (used in \"%s\")", name, in);
                free(out);
                return NULL;
            }
            adv = (size_t)(e - p) + (braced ? 1 : 0);
        }
        const char *src = val ? val : p;
        size_t sn = val ? strlen(val) : 1;
        if (len + sn + 1 > cap) {
            if (len + sn + 1 > 8192) {
                ld_err(c, at->line, at->col, "\"%s\" expands to more than 8192 bytes", in);
                free(out);
                return NULL;
            }
            cap = (len + sn + 1) * 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                c->oom = true;
                return NULL;
            }
            out = n;
        }
        memcpy(out + len, src, sn);
        len += sn;
        p += adv;
    }
    out[len] = '\0';
    return out;
}

static bool load_uplink(ld_ctx *c, const toml_node *entry, ms_uplink *u)
{
    memset(u, 0, sizeof *u);
    u->pos = (ms_pos){ entry->line, entry->col };
    u->timeout_ms = 5000;
    char label[128];
    const toml_kv *nkv = toml_get_kv(entry, "name");
    u->name_pos = nkv ? (ms_pos){ nkv->value->line, nkv->value->col } : u->pos;
    if (nkv && nkv->value->type == TOML_STRING && nkv->value->u.str.len > 0)
        snprintf(label, sizeof label, "uplink \"%.64s\"", nkv->value->u.str.ptr);
    else
        snprintf(label, sizeof label, "uplink #%zu", c->index + 1);
    ld_ctx ec = *c;
    ec.what = label;
    ec.bad = false;
    const toml_kv *url_kv = NULL;
    for (size_t i = 0; i < entry->u.table.len; i++) {
        const toml_kv *kv = &entry->u.table.items[i];
        bool ok = true;
        if (strcmp(kv->key, "url") == 0) {
            ok = get_nonempty_string(&ec, kv, &u->url_text);
            url_kv = kv;
        } else if (strcmp(kv->key, "name") == 0)
            ok = get_nonempty_string(&ec, kv, &u->name);
        else if (strcmp(kv->key, "timeout") == 0) {
            ok = get_duration(&ec, kv, &u->timeout_ms);
            if (ok && u->timeout_ms == 0) {
                ld_err(&ec, kv->value->line, kv->value->col, "\"timeout\" must be more than 0");
                ok = false;
            }
        } else if (strcmp(kv->key, "wait") == 0)
            ok = get_duration(&ec, kv, &u->wait_ms);
        else {
            unknown_key(&ec, kv, uplink_keys, NULL);
            ok = false;
        }
        if (!ok)
            ec.bad = true;
    }
    if (!u->url_text || !url_kv) {
        if (!url_kv)
            ld_err(&ec, entry->line, entry->col, "missing required key \"url\"");
        ec.bad = true;
    } else {
        bool unset = false;
        u->url = expand_env(&ec, url_kv->value, u->url_text, &unset);
        if (!u->url && unset) {
            /* offline: kept by name, never checked */
            if (!u->name && !(u->name = ms_strdup(u->url_text)))
                ec.oom = true;
            u->unnamed = u->unnamed || !nkv;
        } else if (!u->url)
            ec.bad = true;
        else {
            char why[200];
            if (!ms_uplink_url_parse(u->url, u, why, sizeof why)) {
                if (strcmp(u->url, u->url_text) == 0)
                    ld_err(&ec, url_kv->value->line, url_kv->value->col, "invalid URL \"%s\": %s", u->url, why);
                else
                    ld_err(&ec, url_kv->value->line, url_kv->value->col, "invalid URL \"%s\" (from \"%s\"): %s",
                           u->url, u->url_text, why);
                ec.bad = true;
            }
        }
    }
    if (!ec.bad && !u->name && u->url) {
        u->name = ms_asprintf(strchr(u->host, ':') ? "%s://[%s]:%u%s" : "%s://%s:%u%s", u->scheme, u->host,
                              u->port, strcmp(u->path, "/") == 0 ? "" : u->path);
        u->unnamed = true;
        if (!u->name)
            ec.oom = true;
    }
    c->bad |= ec.bad;
    c->oom |= ec.oom;
    return !ec.bad;
}

/* ---------------------------------------------------------------- sizes */
/* A size: an integer (bytes) or a string like "16KiB", "10MB", "1GiB". */
static bool get_size(ld_ctx *c, const toml_kv *kv, uint64_t min, uint64_t *dst)
{
    const toml_node *v = kv->value;
    uint64_t n = 0;
    if (v->type == TOML_INTEGER) {
        if (v->u.integer < 0) {
            ld_err(c, v->line, v->col, "\"%s\" must not be negative", kv->key);
            return false;
        }
        n = (uint64_t)v->u.integer;
    } else if (v->type == TOML_STRING) {
        const char *p = v->u.str.ptr;
        char *end;
        unsigned long long x = strtoull(p, &end, 10);
        static const struct { const char *unit; uint64_t mul; } units[] = {
            { "", 1 }, { "B", 1 }, { "KB", 1000 }, { "KiB", 1024 }, { "MB", 1000000 }, { "MiB", 1048576 },
            { "GB", 1000000000 }, { "GiB", 1073741824 } };
        size_t u = sizeof units / sizeof units[0];
        if (end != p && p[0] >= '0' && p[0] <= '9')
            for (u = 0; u < sizeof units / sizeof units[0]; u++)
                if (strcmp(end, units[u].unit) == 0)
                    break;
        if (u == sizeof units / sizeof units[0] || x > (1ULL << 50)) {
            ld_err(c, v->line, v->col, "\"%s\": invalid size \"%s\" (use bytes, or a number with KiB, MiB, GiB, "
                   "KB, MB or GB, like \"16KiB\")", kv->key, p);
            return false;
        }
        n = x * units[u].mul;
    } else {
        wrong_type(c, kv, "a size (bytes, or a string like \"16KiB\")");
        return false;
    }
    if (n < min) {
        ld_err(c, v->line, v->col, "\"%s\" must be at least %llu", kv->key, (unsigned long long)min);
        return false;
    }
    *dst = n;
    return true;
}

static void http_defaults(ms_http_limits *h)
{
    h->max_header_size = 16384;
    h->max_uri_length = 8192;
    h->max_body_size = 100ULL << 20;
    h->header_timeout_ms = 10000;
    h->idle_timeout_ms = 60000;
    h->upstream_connect_timeout_ms = 5000;
    h->upstream_timeout_ms = 60000;
    h->eject_cooldown_ms = 5000;
    h->max_connections = 10000;
    h->upstream_keepalive = 128;
    h->ws_max_message_size = 1ULL << 20;
    h->ws_send_queue = 4ULL << 20;
    h->ws_ping_interval_ms = 30000;
    h->ws_idle_timeout_ms = 75000;
    h->request_buffering = true;
    h->request_buffer_size = 64 * 1024;
    h->body_timeout_ms = 60000;
    h->max_response_header_size = 16384;
    h->h2_max_concurrent_streams = 128;
    h->h2_max_header_list_size = 32768;
    h->h2_header_table_size = 4096;
    h->h2_rapid_reset_max = 200;
    h->h2_rapid_reset_window_ms = 10000;
    h->h2_max_control_frames = 1000;
    h->h2_stall_timeout_ms = 60000;
}

/* The HTTP/2 keys of [mothership.http]; false: not one of them. */
static bool load_http_h2(ld_ctx *hc, const toml_kv *e, ms_http_limits *h, bool *ok)
{
    const char *k = e->key;
    int64_t n;
    if (strcmp(k, "h2_max_concurrent_streams") == 0) {
        if (get_uint(hc, e, 1, 10000, &n))
            h->h2_max_concurrent_streams = (uint64_t)n;
        else
            *ok = false;
    } else if (strcmp(k, "h2_max_header_list_size") == 0) {
        if (!get_size(hc, e, 1024, &h->h2_max_header_list_size))
            *ok = false;
        else if (h->h2_max_header_list_size > (1ULL << 20)) {
            ld_err(hc, e->value->line, e->value->col, "\"h2_max_header_list_size\" must be at most 1MiB");
            *ok = false;
        }
    } else if (strcmp(k, "h2_header_table_size") == 0) {
        if (!get_size(hc, e, 0, &h->h2_header_table_size))
            *ok = false;
        else if (h->h2_header_table_size > (1ULL << 16)) {
            ld_err(hc, e->value->line, e->value->col, "\"h2_header_table_size\" must be at most 64KiB");
            *ok = false;
        }
    } else if (strcmp(k, "h2_rapid_reset_max") == 0) {
        if (get_uint(hc, e, 1, 1000000, &n))
            h->h2_rapid_reset_max = (uint64_t)n;
        else
            *ok = false;
    } else if (strcmp(k, "h2_rapid_reset_window") == 0) {
        if (!get_duration(hc, e, &h->h2_rapid_reset_window_ms))
            *ok = false;
        else if (h->h2_rapid_reset_window_ms == 0) {
            ld_err(hc, e->value->line, e->value->col, "\"h2_rapid_reset_window\" must be above 0");
            *ok = false;
        }
    } else if (strcmp(k, "h2_max_control_frames") == 0) {
        if (get_uint(hc, e, 1, 100000, &n))
            h->h2_max_control_frames = (uint64_t)n;
        else
            *ok = false;
    } else if (strcmp(k, "h2_stall_timeout") == 0) {
        *ok &= get_duration(hc, e, &h->h2_stall_timeout_ms);
    } else {
        return false;
    }
    return true;
}

static bool load_http(ld_ctx *c, const toml_kv *hkv, ms_http_limits *h)
{
    ld_ctx hc = *c;
    hc.what = "[mothership.http]";
    if (hkv->value->type != TOML_TABLE) {
        wrong_type(c, hkv, "a table of limits");
        return false;
    }
    bool ok = true;
    const toml_node *t = hkv->value;
    const toml_kv *idle_kv = NULL;
    for (size_t i = 0; i < t->u.table.len; i++) {
        const toml_kv *e = &t->u.table.items[i];
        const char *k = e->key;
        int64_t n;
        if (strcmp(k, "max_header_size") == 0)
            ok &= get_size(&hc, e, 1024, &h->max_header_size);
        else if (strcmp(k, "max_uri_length") == 0)
            ok &= get_size(&hc, e, 256, &h->max_uri_length);
        else if (strcmp(k, "max_body_size") == 0)
            ok &= get_size(&hc, e, 0, &h->max_body_size);
        else if (strcmp(k, "header_timeout") == 0)
            ok &= get_duration(&hc, e, &h->header_timeout_ms);
        else if (strcmp(k, "idle_timeout") == 0)
            ok &= get_duration(&hc, e, &h->idle_timeout_ms);
        else if (strcmp(k, "upstream_connect_timeout") == 0)
            ok &= get_duration(&hc, e, &h->upstream_connect_timeout_ms);
        else if (strcmp(k, "upstream_timeout") == 0)
            ok &= get_duration(&hc, e, &h->upstream_timeout_ms);
        else if (strcmp(k, "eject_cooldown") == 0)
            ok &= get_duration(&hc, e, &h->eject_cooldown_ms);
        else if (strcmp(k, "max_connections") == 0) {
            if (get_uint(&hc, e, 1, 1000000, &n))
                h->max_connections = (uint64_t)n;
            else
                ok = false;
        } else if (strcmp(k, "upstream_keepalive") == 0) {
            if (get_uint(&hc, e, 0, 10000, &n))
                h->upstream_keepalive = (uint64_t)n;
            else
                ok = false;
        } else if (strcmp(k, "ws_max_message_size") == 0) {
            if (!get_size(&hc, e, 125, &h->ws_max_message_size))
                ok = false;
            else if (h->ws_max_message_size > (16ULL << 20) - 4) {
                ld_err(&hc, e->value->line, e->value->col, "\"ws_max_message_size\" must be under 16MiB (a docking "
                       "frame carries at most 16MiB, with the 4-byte conn_id)");
                ok = false;
            }
        } else if (strcmp(k, "ws_send_queue") == 0)
            ok &= get_size(&hc, e, 4096, &h->ws_send_queue);
        else if (strcmp(k, "ws_ping_interval") == 0)
            ok &= get_duration(&hc, e, &h->ws_ping_interval_ms);
        else if (strcmp(k, "request_buffering") == 0)
            ok &= get_bool(&hc, e, &h->request_buffering);
        else if (strcmp(k, "request_buffer_size") == 0) {
            if (!get_size(&hc, e, 1024, &h->request_buffer_size))
                ok = false;
            else if (h->request_buffer_size > (64ULL << 20)) {
                ld_err(&hc, e->value->line, e->value->col, "\"request_buffer_size\" must be at most 64MiB (it is "
                       "held in memory per request; larger bodies go to a temporary file)");
                ok = false;
            }
        } else if (strcmp(k, "body_timeout") == 0) {
            if (!get_duration(&hc, e, &h->body_timeout_ms))
                ok = false;
            else if (h->body_timeout_ms == 0) {
                ld_err(&hc, e->value->line, e->value->col, "\"body_timeout\" must be above 0");
                ok = false;
            }
        } else if (strcmp(k, "max_response_header_size") == 0) {
            if (!get_size(&hc, e, 1024, &h->max_response_header_size))
                ok = false;
            else if (h->max_response_header_size > (64ULL << 10)) {
                ld_err(&hc, e->value->line, e->value->col, "\"max_response_header_size\" must be at most 64KiB "
                       "(a response head is forwarded whole, rewritten, and at most 64KiB)");
                ok = false;
            }
        } else if (strcmp(k, "ws_idle_timeout") == 0) {
            ok &= get_duration(&hc, e, &h->ws_idle_timeout_ms);
            idle_kv = e;
        }
        else if (load_http_h2(&hc, e, h, &ok)) {
        }
        else {
            unknown_key(&hc, e, http_keys, NULL);
            ok = false;
        }
    }
    if (ok && (h->ws_ping_interval_ms == 0 || h->ws_idle_timeout_ms <= h->ws_ping_interval_ms)) {
        const toml_node *at = idle_kv ? idle_kv->value : t;
        ld_err(&hc, at->line, at->col, "\"ws_idle_timeout\" (%llums) must be longer than \"ws_ping_interval\" "
               "(%llums), which must be above 0", (unsigned long long)h->ws_idle_timeout_ms,
               (unsigned long long)h->ws_ping_interval_ms);
        ok = false;
    }
    if (h->max_uri_length > h->max_header_size) {
        ld_err(&hc, t->line, t->col, "\"max_uri_length\" must not be larger than \"max_header_size\"");
        ok = false;
    }
    c->oom |= hc.oom;
    return ok;
}

/* ---------------------------------------------------------------- [mothership] */
/* A host name a certificate is chosen for: letters, digits, '-' and '.',
 * lower-cased, optionally "*." and then at least two labels. */
static bool tls_host_ok(char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return false;
    const char *p = h;
    if (p[0] == '*') {
        if (p[1] != '.' || !strchr(p + 2, '.'))
            return false;
        p += 2;
    }
    if (*p == '.' || p[strlen(p) - 1] == '.' || strstr(p, ".."))
        return false;
    for (char *q = h + (p - h); *q; q++) {
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
        else if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' || *q == '.'))
            return false;
    }
    return true;
}

void ld_tls_cert_free(ms_tls_cert *tc)
{
    if (!tc)
        return;
    free(tc->cert);
    free(tc->key);
    ld_strlist_free(&tc->hosts);
}

/* ---------------------------------------------------------------- ACME names */
/* Why name is not a name an ACME certificate can be ordered for here (a
 * DNS name that http-01 or tls-alpn-01 can prove), or NULL. Case is not
 * checked: names are lower-cased once they pass. */
static const char *acme_name_problem(const char *name)
{
    size_t n = strlen(name);
    unsigned char addr[16];
    if (n == 0)
        return "is empty";
    if (strchr(name, '*'))
        return "is a wildcard: http-01 and tls-alpn-01 cannot prove one, list each name instead";
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1 || strchr(name, ':') ||
        name[0] == '[')
        return "is an IP address: ACME certificates here are for DNS names";
    if (name[n - 1] == '.')
        return "ends with a dot: write the name without it";
    if (n > 253)
        return "is longer than 253 characters";
    for (const char *q = name; *q; q++)
        if (!isalnum((unsigned char)*q) || (unsigned char)*q >= 0x80)
            if (*q != '-' && *q != '.')
                return "is not a DNS name (letters, digits, '-' and '.'; an international name in its xn-- "
                       "form)";
    const char *label = name, *last = name;
    for (const char *q = name;; q++) {
        if (*q != '.' && *q != '\0')
            continue;
        size_t len = (size_t)(q - label);
        if (len == 0)
            return "has an empty label (\"..\" or a leading dot)";
        if (len > 63)
            return "has a label longer than 63 characters";
        if (label[0] == '-' || label[len - 1] == '-')
            return "has a label that starts or ends with '-'";
        last = label;
        if (*q == '\0')
            break;
        label = q + 1;
    }
    if (last == name)
        return "is not a fully qualified name (a CA issues for names like example.com)";
    if (strspn(last, "0123456789") == strlen(last))
        return "ends with a numeric label: not a DNS name a CA issues for";
    return NULL;
}

/* An array of ACME names: each checked, lower-cased and added to dst
 * unless already there. */
static bool get_acme_names(ld_ctx *c, const toml_kv *kv, ms_strlist *dst)
{
    ms_strlist raw = { 0 };
    ms_pos *pos = NULL;
    bool ok = get_strlist(c, kv, &raw, false, &pos), good = true;
    for (size_t i = 0; ok && i < raw.len; i++) {
        char *name = raw.items[i];
        const char *why = acme_name_problem(name);
        if (why) {
            ld_err(c, pos[i].line, pos[i].col, "\"%s\": \"%.80s\" %s", kv->key, name, why);
            good = false;
            continue;
        }
        for (char *q = name; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (!strlist_has(dst, name) && !strlist_push(c, dst, name))
            ok = false;
    }
    free(pos);
    ld_strlist_free(&raw);
    return ok && good;
}

/* ---------------------------------------------------------------- TLS certificates */
/* { cert = "...", key = "...", hosts = [...] }: [[mothership.tls.certs]]
 * entries and the table form of a bind's tls; a bind's (b not NULL) may
 * instead be { acme = [names] }: the ACME names it serves. */
static bool load_tls_cert(ld_ctx *c, const toml_node *t, ms_tls_cert *tc, ms_bind *b)
{
    bool ok = true;
    const toml_kv *acme_kv = NULL, *own_kv = NULL;
    tc->pos = (ms_pos){ t->line, t->col };
    for (size_t k = 0; k < t->u.table.len; k++) {
        const toml_kv *e = &t->u.table.items[k];
        if (b && strcmp(e->key, "acme") == 0) {
            acme_kv = e;
            if (!get_acme_names(c, e, &b->acme))
                ok = false;
            else if (b->acme.len == 0) {
                ld_err(c, e->value->line, e->value->col, "\"acme\" must name at least one domain (a TLS bind "
                       "without its own certificate serves every ACME domain: write tls = true)");
                ok = false;
            }
            continue;
        }
        if (!own_kv && (strcmp(e->key, "cert") == 0 || strcmp(e->key, "key") == 0 || strcmp(e->key, "hosts") == 0))
            own_kv = e;
        if (strcmp(e->key, "cert") == 0) {
            ok &= get_path(c, e, &tc->cert);
            tc->cert_pos = (ms_pos){ e->value->line, e->value->col };
        } else if (strcmp(e->key, "key") == 0) {
            ok &= get_path(c, e, &tc->key);
            tc->key_pos = (ms_pos){ e->value->line, e->value->col };
        } else if (strcmp(e->key, "hosts") == 0) {
            ms_pos *pos = NULL;
            tc->hosts_pos = (ms_pos){ e->value->line, e->value->col };
            if (!get_strlist(c, e, &tc->hosts, false, &pos)) {
                free(pos);
                ok = false;
                continue;
            }
            for (size_t i = 0; i < tc->hosts.len; i++) {
                if (!tls_host_ok(tc->hosts.items[i])) {
                    ld_err(c, pos[i].line, pos[i].col, "\"hosts\": \"%s\" is not a host name (letters, digits, "
                           "'-' and '.', or \"*.\" and a domain, like \"*.example.com\")", tc->hosts.items[i]);
                    ok = false;
                }
            }
            free(pos);
        } else {
            unknown_key(c, e, b ? bindtls_keys : tlscert_keys,
                        strcmp(e->key, "acme") == 0 ? "(ACME is set up in [mothership.acme])" : NULL);
            ok = false;
        }
    }
    if (acme_kv) {
        if (own_kv) {
            ld_err(c, own_kv->line, own_kv->col, "\"%s\": a bind's tls has either its own certificate (cert, key, "
                   "hosts) or ACME names (acme), not both", own_kv->key);
            ok = false;
        }
        return ok;
    }
    if (ok && !tc->cert) {
        ld_err(c, t->line, t->col, "missing required key \"cert\"%s", b ? " (or \"acme\")" : "");
        ok = false;
    }
    if (ok && !tc->key) {
        ld_err(c, t->line, t->col, "missing required key \"key\"");
        ok = false;
    }
    return ok;
}

/* A bind's tls: true, false, "self-signed", { cert, key, hosts } or
 * { acme = [names] } (no certificate of its own: b->cert stays NULL). */
static bool load_bind_tls(ld_ctx *c, const toml_kv *e, ms_bind *b)
{
    const toml_node *v = e->value;
    b->tls_pos = (ms_pos){ v->line, v->col };
    if (v->type == TOML_BOOL) {
        b->tls = v->u.boolean;
        return true;
    }
    if (v->type == TOML_STRING && strcmp(v->u.str.ptr, "self-signed") == 0) {
        b->tls = b->self_signed = true;
        return true;
    }
    if (v->type == TOML_TABLE) {
        b->cert = calloc(1, sizeof *b->cert);
        if (!b->cert) {
            c->oom = true;
            return false;
        }
        b->tls = true;
        bool ok = load_tls_cert(c, v, b->cert, b);
        if (ok && b->acme.len) {
            ld_tls_cert_free(b->cert);
            free(b->cert);
            b->cert = NULL;
        }
        return ok;
    }
    if (v->type == TOML_STRING)
        ld_err(c, v->line, v->col, "\"tls\" must be true, false, \"self-signed\" or a table { cert, key, hosts } "
               "or { acme = [names] }, not \"%s\"%s", v->u.str.ptr, strcasecmp(v->u.str.ptr, "acme") == 0 ?
               " (tls = true serves every name of [mothership.acme]; tls = { acme = [\"example.com\"] } only "
               "those)" : "");
    else
        wrong_type(c, e, "true, false, \"self-signed\" or a table { cert, key, hosts } or { acme = [names] }");
    return false;
}

static void load_binds(ld_ctx *c, const toml_kv *bkv)
{
    ms_global *g = &c->m->global;
    const toml_node *t = bkv->value;
    if (t->type != TOML_TABLE) {
        wrong_type(c, bkv, "a table of named binds, like http = \"0.0.0.0:80\"");
        c->bad = true;
        return;
    }
    g->binds = calloc(t->u.table.len ? t->u.table.len : 1, sizeof *g->binds);
    if (!g->binds) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < t->u.table.len; i++) {
        const toml_kv *kv = &t->u.table.items[i];
        char label[128];
        snprintf(label, sizeof label, "bind \"%.64s\"", kv->key);
        if (!strlist_push(c, &g->declared_binds, kv->key))
            return;
        ld_ctx bc = *c;
        bc.what = label;
        if (!ms_valid_name(kv->key)) {
            ld_err(&bc, kv->line, kv->col, "bind names must be 1 to 64 ASCII letters, digits, '-' or '_'");
            c->bad = true;
            continue;
        }
        const toml_node *v = kv->value;
        const char *addr_text = NULL;
        const toml_node *addr_at = v;
        ms_bind nb = { .tls = strcmp(kv->key, "https") == 0, .h2 = true, .tls_pos = { kv->line, kv->col } };
        const toml_kv *h2_kv = NULL, *h2c_kv = NULL, *redirect_kv = NULL;
        bool ok = true;
        if (v->type == TOML_STRING) {
            addr_text = v->u.str.ptr;
        } else if (v->type == TOML_TABLE) {
            for (size_t k = 0; k < v->u.table.len; k++) {
                const toml_kv *e = &v->u.table.items[k];
                if (strcmp(e->key, "address") == 0) {
                    if (e->value->type != TOML_STRING) {
                        wrong_type(&bc, e, "a string");
                        ok = false;
                    } else {
                        addr_text = e->value->u.str.ptr;
                        addr_at = e->value;
                    }
                } else if (strcmp(e->key, "tls") == 0)
                    ok &= load_bind_tls(&bc, e, &nb);
                else if (strcmp(e->key, "h2") == 0) {
                    ok &= get_bool(&bc, e, &nb.h2);
                    h2_kv = e;
                } else if (strcmp(e->key, "h2c") == 0) {
                    ok &= get_bool(&bc, e, &nb.h2c);
                    h2c_kv = e;
                } else if (strcmp(e->key, "redirect_to_https") == 0) {
                    ok &= get_bool(&bc, e, &nb.redirect_to_https);
                    redirect_kv = e;
                } else if (strcmp(e->key, "access_log") == 0) {
                    ok &= get_access_log(&bc, e, &nb.access_log);
                } else {
                    unknown_key(&bc, e, bindtable_keys, strcmp(e->key, "acme") == 0 ? "(a bind's ACME names go "
                                "in its tls: tls = { acme = [...] })" : NULL);
                    ok = false;
                }
            }
            if (ok && !addr_text) {
                ld_err(&bc, v->line, v->col, "missing required key \"address\"");
                ok = false;
            }
        } else {
            wrong_type(&bc, kv, "an address string or a table { address = ..., tls = ... }");
            ok = false;
        }
        if (ok && nb.tls && h2c_kv && nb.h2c) {
            ld_err(&bc, h2c_kv->line, h2c_kv->col, "\"h2c\" is for plain binds; a TLS bind offers HTTP/2 "
                   "by ALPN (\"h2\")");
            ok = false;
        }
        if (ok && !nb.tls && h2_kv && nb.h2) {
            ld_err(&bc, h2_kv->line, h2_kv->col, "\"h2\" is for TLS binds (ALPN); a plain bind speaks HTTP/2 "
                   "with prior knowledge when \"h2c\" is true");
            ok = false;
        }
        if (ok && nb.tls && redirect_kv && nb.redirect_to_https) {
            ld_err(&bc, redirect_kv->line, redirect_kv->col, "\"redirect_to_https\" is for plain binds; "
                   "this bind terminates TLS");
            ok = false;
        }
        if (!nb.tls)
            nb.h2 = false;
        if (!ok) {
            ld_tls_cert_free(nb.cert);
            free(nb.cert);
            ld_strlist_free(&nb.acme);
            c->bad = true;
            continue;
        }
        ms_bind *b = &g->binds[g->nbinds];
        char why[160];
        if (!ms_addr_parse(addr_text, &nb.addr, why, sizeof why) || !ld_resolve_unix(c, &nb.addr)) {
            ld_err(&bc, addr_at->line, addr_at->col, "invalid address \"%s\": %s", addr_text, why);
            ld_tls_cert_free(nb.cert);
            free(nb.cert);
            ld_strlist_free(&nb.acme);
            c->bad = true;
            continue;
        }
        nb.name = dup_checked(c, kv->key);
        nb.pos = (ms_pos){ kv->line, kv->col };
        *b = nb;
        g->nbinds++;
    }
}

/* [mothership.tls]: the default certificate (cert, key), more certificates
 * chosen by SNI ([[mothership.tls.certs]]) and the session tickets. */
static bool load_tls(ld_ctx *c, const toml_kv *kv)
{
    ms_global *g = &c->m->global;
    ld_ctx tc = *c;
    tc.what = "[mothership.tls]";
    if (kv->value->type != TOML_TABLE) {
        wrong_type(c, kv, "a table with cert and key");
        return false;
    }
    bool ok = true;
    const toml_node *certs = NULL;
    g->tls_pos = (ms_pos){ kv->value->line, kv->value->col };
    g->has_tls = true;
    for (size_t j = 0; j < kv->value->u.table.len; j++) {
        const toml_kv *e = &kv->value->u.table.items[j];
        if (strcmp(e->key, "cert") == 0) {
            ok &= get_path(&tc, e, &g->tls_cert);
            g->tls_cert_pos = (ms_pos){ e->value->line, e->value->col };
        } else if (strcmp(e->key, "key") == 0) {
            ok &= get_path(&tc, e, &g->tls_key);
            g->tls_key_pos = (ms_pos){ e->value->line, e->value->col };
        } else if (strcmp(e->key, "session_tickets") == 0)
            ok &= get_bool(&tc, e, &g->tls_session_tickets);
        else if (strcmp(e->key, "ticket_key_rotation") == 0) {
            uint64_t ms = 0;
            if (!get_duration(&tc, e, &ms))
                ok = false;
            else if (ms < 60000) {
                ld_err(&tc, e->value->line, e->value->col, "\"ticket_key_rotation\" must be at least 1m");
                ok = false;
            } else
                g->tls_ticket_rotation_ms = ms;
        } else if (strcmp(e->key, "certs") == 0) {
            if (e->value->type != TOML_ARRAY) {
                wrong_type(&tc, e, "an array of tables ([[mothership.tls.certs]])");
                ok = false;
            } else
                certs = e->value;
        } else {
            unknown_key(&tc, e, tls_keys,
                        strcmp(e->key, "acme") == 0 ? "(ACME is set up in [mothership.acme])" : NULL);
            ok = false;
        }
    }
    if (ok && g->tls_key && !g->tls_cert) {
        ld_err(&tc, g->tls_pos.line, g->tls_pos.col, "missing required key \"cert\"");
        ok = false;
    }
    if (ok && g->tls_cert && !g->tls_key) {
        ld_err(&tc, g->tls_pos.line, g->tls_pos.col, "missing required key \"key\"");
        ok = false;
    }
    if (ok && !g->tls_cert && !certs) {
        ld_err(&tc, g->tls_pos.line, g->tls_pos.col, "missing required key \"cert\" (or [[mothership.tls.certs]])");
        ok = false;
    }
    size_t n = (g->tls_cert ? 1 : 0) + (certs ? certs->u.array.len : 0);
    g->tls_certs = calloc(n ? n : 1, sizeof *g->tls_certs);
    if (!g->tls_certs) {
        c->oom = true;
        return false;
    }
    if (ok && g->tls_cert) {
        ms_tls_cert *d = &g->tls_certs[g->ntls_certs++];
        d->cert = dup_checked(c, g->tls_cert);
        d->key = dup_checked(c, g->tls_key);
        d->pos = g->tls_pos;
        d->cert_pos = g->tls_cert_pos;
        d->key_pos = g->tls_key_pos;
    }
    for (size_t i = 0; certs && i < certs->u.array.len; i++) {
        const toml_node *t = certs->u.array.items[i];
        char label[64];
        snprintf(label, sizeof label, "[[mothership.tls.certs]] #%zu", i + 1);
        ld_ctx cc = *c;
        cc.what = label;
        if (t->type != TOML_TABLE) {
            ld_err(&cc, t->line, t->col, "must be a table with cert, key and hosts");
            ok = false;
            continue;
        }
        ms_tls_cert *d = &g->tls_certs[g->ntls_certs++];
        ok &= load_tls_cert(&cc, t, d, NULL);
        c->oom |= cc.oom;
    }
    c->oom |= tc.oom;
    return ok;
}

/* ---------------------------------------------------------------- [mothership.acme] */
/* Why text is not an ACME directory URL (http or https, a host), or NULL. */
static const char *directory_problem(const char *text, char *why, size_t why_len)
{
    for (const char *q = text; *q; q++)
        if (isspace((unsigned char)*q) || iscntrl((unsigned char)*q))
            return "must not contain spaces or control characters";
    /* a scheme other than http(s) is named as such, not against the
     * uplinks' list of schemes */
    const char *sep = strstr(text, "://");
    if (sep && !((sep - text == 4 && strncasecmp(text, "http", 4) == 0) ||
                 (sep - text == 5 && strncasecmp(text, "https", 5) == 0)))
        return "must be an http:// or https:// URL";
    ms_uplink u = { 0 };
    const char *problem = NULL;
    if (!ms_uplink_url_parse(text, &u, why, why_len))
        problem = why;
    else if (strcmp(u.scheme, "http") != 0 && strcmp(u.scheme, "https") != 0)
        problem = "must be an http:// or https:// URL";
    else {
        const char *auth = strstr(text, "://") + 3; /* the parser found it */
        const char *at = strchr(auth, '@');
        if (at && at < auth + strcspn(auth, "/?#"))
            problem = "must not carry a user name or password";
    }
    free(u.scheme);
    free(u.host);
    free(u.path);
    return problem;
}

/* Why text is not one contact e-mail address, or NULL. */
static const char *email_problem(const char *text)
{
    if (strncasecmp(text, "mailto:", 7) == 0)
        return "must not start with \"mailto:\" (write the address alone: ";
    for (const char *q = text; *q; q++)
        if (isspace((unsigned char)*q) || iscntrl((unsigned char)*q) || *q == ',' || *q == ';')
            return "must be one address, without spaces or commas";
    const char *at = strchr(text, '@');
    if (!at || strchr(at + 1, '@'))
        return "must be an address with one '@', like ops@example.com";
    if (at == text || !strchr(at + 1, '.') || at[1] == '.' || text[strlen(text) - 1] == '.')
        return "must be an address like ops@example.com: a name, '@' and a domain";
    return NULL;
}

static bool get_acme_challenge(ld_ctx *c, const toml_kv *kv, ms_acme_challenge_kind *dst)
{
    static const char *const names[] = { "http-01", "tls-alpn-01", NULL };
    size_t i;
    if (!get_choice(c, kv, names, "\"http-01\" or \"tls-alpn-01\"", "unknown challenge",
                    "\"http-01\" or \"tls-alpn-01\"", &i))
        return false;
    *dst = i == 0 ? MS_ACME_HTTP_01 : MS_ACME_TLS_ALPN_01;
    return true;
}

/* [mothership.acme]: where and how certificates are ordered (acme/acme.h).
 * The names of the binds' tls.acme join domains in load_mothership. */
static bool load_acme(ld_ctx *c, const toml_kv *kv)
{
    ms_acme_config *a = &c->m->global.acme;
    ld_ctx ac = *c;
    ac.what = "[mothership.acme]";
    if (kv->value->type != TOML_TABLE) {
        wrong_type(c, kv, "a table ([mothership.acme])");
        return false;
    }
    a->enabled = true;
    a->pos = (ms_pos){ kv->value->line, kv->value->col };
    a->challenge = MS_ACME_HTTP_01;
    a->backoff_ms = 60 * 1000;
    a->max_backoff_ms = 6 * 3600 * 1000;
    const toml_kv *max_kv = NULL;
    bool ok = true;
    for (size_t i = 0; i < kv->value->u.table.len; i++) {
        const toml_kv *e = &kv->value->u.table.items[i];
        const toml_node *v = e->value;
        ms_pos at = { v->line, v->col };
        char why[200];
        const char *problem;
        if (strcmp(e->key, "directory") == 0) {
            a->directory_pos = at;
            if (!get_nonempty_string(&ac, e, &a->directory))
                ok = false;
            else if ((problem = directory_problem(a->directory, why, sizeof why))) {
                ld_err(&ac, v->line, v->col, "\"directory\" \"%.200s\": %s", a->directory, problem);
                ok = false;
            }
        } else if (strcmp(e->key, "email") == 0) {
            a->email_pos = at;
            if (!get_nonempty_string(&ac, e, &a->email))
                ok = false;
            else if ((problem = email_problem(a->email))) {
                bool mailto = strncasecmp(a->email, "mailto:", 7) == 0; /* the address shown without it */
                ld_err(&ac, v->line, v->col, "\"email\" \"%.200s\" %s%.200s%s", a->email, problem,
                       mailto ? a->email + 7 : "", mailto ? ")" : "");
                ok = false;
            }
        } else if (strcmp(e->key, "domains") == 0) {
            a->domains_pos = at;
            ok &= get_acme_names(&ac, e, &a->domains);
        } else if (strcmp(e->key, "state_dir") == 0) {
            a->state_dir_pos = at;
            ok &= get_path(&ac, e, &a->state_dir);
        } else if (strcmp(e->key, "ca_root") == 0) {
            a->ca_root_pos = at;
            ok &= get_path(&ac, e, &a->ca_root);
        } else if (strcmp(e->key, "challenge") == 0) {
            a->challenge_pos = at;
            ok &= get_acme_challenge(&ac, e, &a->challenge);
        } else if (strcmp(e->key, "backoff") == 0) {
            if (!get_duration(&ac, e, &a->backoff_ms))
                ok = false;
            else if (a->backoff_ms < 1000) {
                ld_err(&ac, v->line, v->col, "\"backoff\" must be at least 1s");
                ok = false;
            }
        } else if (strcmp(e->key, "max_backoff") == 0) {
            max_kv = e;
            ok &= get_duration(&ac, e, &a->max_backoff_ms);
        } else {
            unknown_key(&ac, e, acme_keys, NULL);
            ok = false;
        }
    }
    if (ok && a->max_backoff_ms < a->backoff_ms) {
        if (max_kv) {
            ld_err(&ac, max_kv->value->line, max_kv->value->col, "\"max_backoff\" must be at least \"backoff\"");
            ok = false;
        } else
            a->max_backoff_ms = a->backoff_ms; /* the default is only a cap */
    }
    if (!a->directory)
        a->directory = dup_checked(&ac, MS_ACME_DEFAULT_DIRECTORY);
    c->oom |= ac.oom;
    return ok;
}

/* Once [mothership] is read: the binds' ACME names join domains; ACME names
 * without [mothership.acme], or [mothership.acme] without any name, are
 * mistakes. */
static void finish_acme(ld_ctx *gc)
{
    ld_ctx fc = *gc, *c = &fc; /* the messages name their section */
    fc.what = NULL;
    ms_global *g = &c->m->global;
    ms_acme_config *a = &g->acme;
    for (size_t i = 0; i < g->nbinds; i++) {
        const ms_bind *b = &g->binds[i];
        if (!b->acme.len)
            continue;
        if (!a->enabled) {
            ld_err(c, b->tls_pos.line, b->tls_pos.col, "bind \"%s\": tls.acme names certificates to order, but "
                   "there is no [mothership.acme] (add it, with email and, for testing, directory)", b->name);
            c->bad = true;
            continue;
        }
        for (size_t k = 0; k < b->acme.len && !c->oom; k++)
            if (!strlist_has(&a->domains, b->acme.items[k]))
                strlist_push(c, &a->domains, b->acme.items[k]);
    }
    if (a->enabled && a->domains.len == 0 && !c->bad && !c->oom) {
        ld_err(c, a->pos.line, a->pos.col, "[mothership.acme]: no domains: list them in \"domains\", or in a bind's "
               "tls = { acme = [...] }");
        c->bad = true;
    }
    gc->bad |= fc.bad;
    gc->oom |= fc.oom;
}

static void load_static_dirs(ld_ctx *c, const toml_kv *skv)
{
    ms_global *g = &c->m->global;
    const toml_node *a = skv->value;
    if (a->type != TOML_ARRAY) {
        wrong_type(c, skv, "an array of tables ([[mothership.static_dirs]])");
        c->bad = true;
        return;
    }
    g->static_dirs = calloc(a->u.array.len ? a->u.array.len : 1, sizeof *g->static_dirs);
    if (!g->static_dirs) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < a->u.array.len; i++) {
        const toml_node *t = a->u.array.items[i];
        char label[64];
        snprintf(label, sizeof label, "static dir #%zu", i + 1);
        ld_ctx sc = *c;
        sc.what = label;
        if (t->type != TOML_TABLE) {
            ld_err(&sc, t->line, t->col, "must be a table with path and prefix");
            c->bad = true;
            continue;
        }
        ms_static_dir *sd = &g->static_dirs[g->nstatic++];
        sd->pos = (ms_pos){ t->line, t->col };
        bool ok = true;
        const toml_kv *path_kv = NULL;
        for (size_t k = 0; k < t->u.table.len; k++) {
            const toml_kv *e = &t->u.table.items[k];
            if (strcmp(e->key, "path") == 0) {
                ok &= get_path(&sc, e, &sd->path);
                path_kv = e;
            } else if (strcmp(e->key, "prefix") == 0) {
                ok &= get_nonempty_string(&sc, e, &sd->prefix);
                if (sd->prefix && sd->prefix[0] != '/') {
                    ld_err(&sc, e->value->line, e->value->col, "\"prefix\" must start with '/', like \"/assets\"");
                    ok = false;
                } else if (sd->prefix) {
                    size_t pl = strlen(sd->prefix);
                    while (pl > 1 && sd->prefix[pl - 1] == '/')
                        sd->prefix[--pl] = '\0'; /* "/assets/" is "/assets" */
                }
            } else if (strcmp(e->key, "bind") == 0) {
                ok &= get_nonempty_string(&sc, e, &sd->bind);
                sd->bind_pos = (ms_pos){ e->value->line, e->value->col };
            }
            else {
                unknown_key(&sc, e, static_keys, NULL);
                ok = false;
            }
        }
        if (!sd->path && !path_kv) {
            ld_err(&sc, t->line, t->col, "missing required key \"path\"");
            ok = false;
        }
        if (!sd->prefix && ok) {
            sd->prefix = dup_checked(c, "/");
        }
        if (sd->path && path_kv) {
            struct stat st;
            if (stat(sd->path, &st) != 0) {
                ld_err(&sc, path_kv->value->line, path_kv->value->col, "directory \"%s\" does not exist", sd->path);
                ok = false;
            } else if (!S_ISDIR(st.st_mode)) {
                ld_err(&sc, path_kv->value->line, path_kv->value->col, "\"%s\" is not a directory", sd->path);
                ok = false;
            }
        }
        if (!ok)
            c->bad = true;
    }
}

/* [[mothership.upstreams]]: entries of m->ships of kind MS_UPSTREAM. */
static void load_upstreams(ld_ctx *c, const toml_kv *kv)
{
    const toml_node *a = kv->value;
    if (a->type != TOML_ARRAY) {
        ld_err(c, kv->line, kv->col, "mothership.upstreams must be an array of tables: write "
               "[[mothership.upstreams]]");
        c->bad = true;
        return;
    }
    ms_ship *n = realloc(c->m->ships, (c->m->nships + a->u.array.len + 1) * sizeof *n);
    if (!n) {
        c->oom = true;
        return;
    }
    c->m->ships = n;
    for (size_t i = 0; i < a->u.array.len; i++) {
        const toml_node *e = a->u.array.items[i];
        if (e->type != TOML_TABLE) {
            ld_err(c, e->line, e->col, "entries of mothership.upstreams must be tables");
            c->bad = true;
            continue;
        }
        c->index = i;
        load_vessel(c, e, MS_UPSTREAM, "upstream", NULL, &c->m->ships[c->m->nships++]);
    }
}

static void load_mothership(ld_ctx *c, const toml_node *t)
{
    ms_global *g = &c->m->global;
    ld_ctx gc = *c;
    gc.what = "[mothership]";
    for (size_t i = 0; i < t->u.table.len; i++) {
        const toml_kv *kv = &t->u.table.items[i];
        const char *k = kv->key;
        bool ok = true;
        int64_t n;
        if (strcmp(k, "metrics_port") == 0) {
            ok = get_uint(&gc, kv, 1, 65535, &n);
            if (ok) {
                g->metrics_port = (uint16_t)n;
                g->metrics_pos = (ms_pos){ kv->value->line, kv->value->col };
            }
        } else if (strcmp(k, "metrics_bind") == 0) {
            ok = get_nonempty_string(&gc, kv, &g->metrics_bind);
            g->metrics_bind_pos = (ms_pos){ kv->value->line, kv->value->col };
        }
        else if (strcmp(k, "compression") == 0)
            ok = get_bool(&gc, kv, &g->compression);
        else if (strcmp(k, "shutdown_timeout") == 0)
            ok = get_duration(&gc, kv, &g->shutdown_timeout_ms);
        else if (strcmp(k, "ready_timeout") == 0)
            ok = get_duration(&gc, kv, &g->ready_timeout_ms);
        else if (strcmp(k, "socket_dir") == 0)
            ok = get_path(&gc, kv, &g->socket_dir);
        else if (strcmp(k, "workers") == 0) {
            if (kv->value->type == TOML_STRING) {
                if (strcmp(kv->value->u.str.ptr, "auto") == 0)
                    g->workers = 0;
                else {
                    ld_err(&gc, kv->value->line, kv->value->col,
                           "\"workers\" must be a number from 1 to 256 or \"auto\", not \"%s\"", kv->value->u.str.ptr);
                    ok = false;
                }
            } else {
                ok = get_uint(&gc, kv, 1, 256, &n);
                if (ok)
                    g->workers = (unsigned)n;
            }
        } else if (strcmp(k, "env") == 0)
            ok = get_strmap(&gc, kv, &g->env, true);
        else if (strcmp(k, "bind") == 0)
            load_binds(&gc, kv);
        else if (strcmp(k, "tls") == 0)
            ok = load_tls(&gc, kv);
        else if (strcmp(k, "acme") == 0)
            ok = load_acme(&gc, kv);
        else if (strcmp(k, "state_dir") == 0) {
            ok = get_path(&gc, kv, &g->state_dir);
            g->state_dir_pos = (ms_pos){ kv->value->line, kv->value->col };
        } else if (strcmp(k, "static_dirs") == 0)
            load_static_dirs(&gc, kv);
        else if (strcmp(k, "http") == 0)
            ok = load_http(&gc, kv, &g->http);
        else if (strcmp(k, "control_socket") == 0)
            ok = get_path(&gc, kv, &g->control_socket);
        else if (strcmp(k, "upstreams") == 0)
            load_upstreams(c, kv);
        else if (strcmp(k, "control_group") == 0) {
            ok = get_nonempty_string(&gc, kv, &g->control_group);
            if (ok && !getgrnam(g->control_group)) {
                ld_err(&gc, kv->value->line, kv->value->col, "\"control_group\": no group is named \"%s\" on this "
                       "host", g->control_group);
                ok = false;
            }
        }
        else if (strcmp(k, "access_log") == 0)
            ok = get_access_log(&gc, kv, &g->access_log);
        else if (strcmp(k, "access_log_path") == 0)
            ok = get_path(&gc, kv, &g->access_log_path);
        else {
            unknown_key(&gc, kv, mothership_keys, NULL);
            ok = false;
        }
        if (!ok)
            gc.bad = true;
    }
    /* a bind without its own access_log takes the global one */
    if (g->access_log == MS_ACCESS_LOG_UNSET)
        g->access_log = MS_ACCESS_LOG_OFF;
    for (size_t i = 0; i < g->nbinds; i++)
        if (g->binds[i].access_log == MS_ACCESS_LOG_UNSET)
            g->binds[i].access_log = g->access_log;
    finish_acme(&gc);
    c->bad |= gc.bad;
    c->oom |= gc.oom;
}

/* ---------------------------------------------------------------- document */
static const toml_node *table_or_err(ld_ctx *c, const toml_kv *kv, const char *what)
{
    if (kv->value->type != TOML_TABLE) {
        ld_err(c, kv->line, kv->col, "\"%s\" must be a table (%s)", kv->key, what);
        c->bad = true;
        return NULL;
    }
    return kv->value;
}

static int cmp_pos(const ms_pos *a, const ms_pos *b)
{
    return a->line != b->line ? (a->line < b->line ? -1 : 1) : (a->col < b->col ? -1 : a->col > b->col);
}

static int cmp_ship(const void *a, const void *b)
{
    return cmp_pos(&((const ms_ship *)a)->pos, &((const ms_ship *)b)->pos);
}

/* Load every [[fleet.<group>]] / [[bays.<type>]] array into m->ships. */
static void load_vessels(ld_ctx *c, const toml_kv *kv, ms_ship_kind kind, const toml_node *base)
{
    const toml_node *t = table_or_err(c, kv, kind == MS_SHIP ? "groups of [[fleet.<group>]]"
                                                          : "bay types: [[bays.websocket]], [[bays.http]]");
    if (!t)
        return;
    for (size_t g = 0; g < t->u.table.len; g++) {
        const toml_kv *gkv = &t->u.table.items[g];
        if (kind == MS_BAY && !in_list(bay_types, gkv->key)) {
            ld_err(c, gkv->line, gkv->col, "unknown bay type \"%s\" (supported: websocket, http)", gkv->key);
            c->bad = true;
            continue;
        }
        if (kind == MS_SHIP && !ms_valid_name(gkv->key)) {
            ld_err(c, gkv->line, gkv->col, "group name \"%s\" must be ASCII letters, digits, '-' or '_'", gkv->key);
            c->bad = true;
            continue;
        }
        const toml_node *arr = gkv->value;
        if (arr->type != TOML_ARRAY) {
            ld_err(c, gkv->line, gkv->col, "%s.%s must be an array of tables: write [[%s.%s]]",
                   kind == MS_SHIP ? "fleet" : "bays", gkv->key, kind == MS_SHIP ? "fleet" : "bays", gkv->key);
            c->bad = true;
            continue;
        }
        ms_ship *n = realloc(c->m->ships, (c->m->nships + arr->u.array.len + 1) * sizeof *n);
        if (!n) {
            c->oom = true;
            return;
        }
        c->m->ships = n;
        for (size_t i = 0; i < arr->u.array.len; i++) {
            const toml_node *e = arr->u.array.items[i];
            if (e->type != TOML_TABLE) {
                ld_err(c, e->line, e->col, "entries of %s.%s must be tables", kind == MS_SHIP ? "fleet" : "bays",
                       gkv->key);
                c->bad = true;
                continue;
            }
            c->index = i;
            load_vessel(c, e, kind, gkv->key, base, &c->m->ships[c->m->nships++]);
        }
    }
}

static void load_array_of_tables(ld_ctx *c, const toml_kv *kv, int which, const toml_node *base)
{
    const toml_node *a = kv->value;
    if (a->type != TOML_ARRAY) {
        ld_err(c, kv->line, kv->col, "\"%s\" must be an array of tables: write [[%s]]", kv->key, kv->key);
        c->bad = true;
        return;
    }
    ms_manifest *m = c->m;
    if (which == 0) {
        m->modules = calloc(a->u.array.len ? a->u.array.len : 1, sizeof *m->modules);
        if (!m->modules) {
            c->oom = true;
            return;
        }
    } else {
        m->uplinks = calloc(a->u.array.len ? a->u.array.len : 1, sizeof *m->uplinks);
        if (!m->uplinks) {
            c->oom = true;
            return;
        }
    }
    for (size_t i = 0; i < a->u.array.len; i++) {
        const toml_node *e = a->u.array.items[i];
        if (e->type != TOML_TABLE) {
            ld_err(c, e->line, e->col, "entries of \"%s\" must be tables", kv->key);
            c->bad = true;
            continue;
        }
        c->index = i;
        if (which == 0)
            load_module(c, e, base, &m->modules[m->nmodules++]);
        else
            load_uplink(c, e, &m->uplinks[m->nuplinks++]);
    }
}

void ld_document(ld_ctx *c, const toml_node *root)
{
    ms_manifest *m = c->m;
    ms_global *g = &m->global;
    g->compression = false;
    g->access_log = MS_ACCESS_LOG_UNSET; /* off, once the binds have taken it */
    g->shutdown_timeout_ms = 10000;
    g->ready_timeout_ms = 60000;
    g->workers = 1;
    g->tls_session_tickets = true;
    g->tls_ticket_rotation_ms = 12 * 3600 * 1000;
    http_defaults(&g->http);

    const toml_node *base_ship = NULL, *base_bay = NULL, *base_module = NULL;
    /* first pass: top-level shape and base templates */
    for (size_t i = 0; i < root->u.table.len; i++) {
        const toml_kv *kv = &root->u.table.items[i];
        if (!in_list(top_keys, kv->key)) {
            unknown_key(c, kv, top_keys, NULL);
            c->bad = true;
        } else if (strcmp(kv->key, "base") == 0) {
            const toml_node *b = table_or_err(c, kv, "[base.ship], [base.bay] or [base.module]");
            for (size_t j = 0; b && j < b->u.table.len; j++) {
                const toml_kv *bkv = &b->u.table.items[j];
                if (!in_list(base_keys, bkv->key)) {
                    unknown_key(c, bkv, base_keys, NULL);
                    c->bad = true;
                    continue;
                }
                const toml_node *bt = table_or_err(c, bkv, "a template table");
                if (!bt)
                    continue;
                int which = strcmp(bkv->key, "ship") == 0 ? 0 : strcmp(bkv->key, "bay") == 0 ? 1 : 2;
                if (which == 0)
                    base_ship = bt;
                else if (which == 1)
                    base_bay = bt;
                else
                    base_module = bt;
                check_base(c, bt, which);
            }
        }
    }
    for (size_t i = 0; i < root->u.table.len; i++) {
        const toml_kv *kv = &root->u.table.items[i];
        if (strcmp(kv->key, "mothership") == 0) {
            const toml_node *t = table_or_err(c, kv, "[mothership]");
            if (t)
                load_mothership(c, t);
        } else if (strcmp(kv->key, "fleet") == 0)
            load_vessels(c, kv, MS_SHIP, base_ship);
        else if (strcmp(kv->key, "bays") == 0)
            load_vessels(c, kv, MS_BAY, base_bay);
        else if (strcmp(kv->key, "modules") == 0)
            load_array_of_tables(c, kv, 0, base_module);
        else if (strcmp(kv->key, "uplinks") == 0)
            load_array_of_tables(c, kv, 1, NULL);
    }
    if (!g->metrics_bind)
        g->metrics_bind = dup_checked(c, "127.0.0.1");
    for (size_t i = 0; i < m->nships; i++) {
        if (m->ships[i].ready_timeout_ms == MS_UNSET)
            m->ships[i].ready_timeout_ms = g->ready_timeout_ms;
        if (m->ships[i].shutdown_timeout_ms == MS_UNSET)
            m->ships[i].shutdown_timeout_ms = g->shutdown_timeout_ms;
    }
    /* manifest order: ships and bays by where they were written */
    if (m->nships > 1)
        qsort(m->ships, m->nships, sizeof *m->ships, cmp_ship);
}
