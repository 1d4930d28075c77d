/* diff.c: the difference between two manifests (see diff.h). Each part of
 * the model is compared through a table of its fields (key as written in the
 * manifest, how to compare it, where it is); a field missing from a table is
 * a change a reload would not see, so the tables list every field: the size
 * checks below fail the build when a struct grows without its table, and
 * tests/unit/test_diff.c changes every key the loader knows, one by one. */
#include "manifest/diff.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strutil.h"

#if UINTPTR_MAX == UINT64_MAX
/* A field added to one of these must get a row in its table below (or a
 * line in the code that compares it), then the size here updated. */
_Static_assert(sizeof(ms_ship) == 752, "ms_ship changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_health) == 176, "ms_health changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_restart) == 48, "ms_restart changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_route) == 64, "ms_route changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_http_limits) == 200, "ms_http_limits changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_bind) == 104, "ms_bind changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_module) == 112, "ms_module changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_uplink) == 96, "ms_uplink changed: compare the new field in diff.c");
_Static_assert(sizeof(ms_acme_config) == 136, "ms_acme_config changed: compare the new field in diff.c");
#endif

/* ---------------------------------------------------------------- what differs */
#define WHY_MAX 256

/* A bounded list of what differs: "command, env.PORT, ...". */
typedef struct why_buf {
    char s[WHY_MAX];
    size_t len;
    bool full;
} why_buf;

static void why_add(why_buf *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why_add(why_buf *w, const char *fmt, ...)
{
    if (w->full)
        return;
    char item[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    const char *sep = w->len ? ", " : "";
    size_t need = strlen(sep) + strlen(item);
    if (w->len + need + sizeof ", ..." > sizeof w->s) {
        w->len += (size_t)snprintf(w->s + w->len, sizeof w->s - w->len, "%s...", sep);
        w->full = true;
        return;
    }
    w->len += (size_t)snprintf(w->s + w->len, sizeof w->s - w->len, "%s%s", sep, item);
}

/* ---------------------------------------------------------------- field tables */
typedef enum field_type {
    F_RAW,       /* a scalar (bool, integer, enum): compared bytewise */
    F_STR,       /* char *, NULL allowed */
    F_LIST,      /* ms_strlist, order matters */
    F_SET,       /* ms_strlist, order does not matter */
    F_MAP,       /* ms_strmap: each differing key is named ("config.k") */
    F_ADDR,      /* ms_addr, present when its flag is (or always) */
    F_NEST,      /* a sub-struct with its own table: "restart.backoff" */
    F_HEALTH,    /* ms_health: compared only when set */
    F_ENV,       /* a ship's env under [mothership] env: each differing variable */
    F_CERT,      /* ms_tls_cert *, NULL allowed */
    F_DEPS,      /* a ship's depends_on: a set, every instance of a ship taken as the ship */
    F_SKIP,      /* compared elsewhere (routes: swapped) or not a definition (positions) */
} field_type;

#define NO_FLAG SIZE_MAX

typedef struct field {
    const char *key;             /* as written in the manifest */
    field_type type;
    size_t off;
    size_t size;                 /* F_RAW */
    size_t flag;                 /* F_ADDR: offset of the bool that says it is set, or NO_FLAG */
    const struct field *nest;    /* F_NEST, F_HEALTH */
} field;

#define SIZEOF(T, m) sizeof(((T *)0)->m)
#define RAW(T, key, m) { key, F_RAW, offsetof(T, m), SIZEOF(T, m), NO_FLAG, NULL }
#define OF(T, key, type, m) { key, type, offsetof(T, m), 0, NO_FLAG, NULL }
#define ADDR(T, key, m, has) { key, F_ADDR, offsetof(T, m), 0, has, NULL }
#define NEST(T, key, type, m, tab) { key, type, offsetof(T, m), 0, NO_FLAG, tab }
#define END { NULL, F_SKIP, 0, 0, NO_FLAG, NULL }

static const field health_fields[] = {
    RAW(ms_health, "protocol", protocol),
    OF(ms_health, "path", F_STR, path),
    ADDR(ms_health, "address", address, offsetof(ms_health, has_address)),
    RAW(ms_health, "port", port),
    OF(ms_health, "address", F_SKIP, address_template), /* compared through address */
    OF(ms_health, "address", F_SKIP, address_alt),      /* follows address (and instances) */
    RAW(ms_health, "interval", interval_ms),
    RAW(ms_health, "timeout", timeout_ms),
    RAW(ms_health, "grace", grace_ms),
    RAW(ms_health, "failures", failures),
    RAW(ms_health, "successes", successes),
    RAW(ms_health, "cooldown", cooldown_ms),
    RAW(ms_health, "restart", restart),
    END,
};

static const field restart_fields[] = {
    RAW(ms_restart, "backoff", backoff_ms),
    RAW(ms_restart, "max_backoff", max_backoff_ms),
    RAW(ms_restart, "reset_after", reset_after_ms),
    RAW(ms_restart, "loop_limit", loop_limit),
    RAW(ms_restart, "loop_window", loop_window_ms),
    RAW(ms_restart, "loop_pause", loop_pause_ms),
    END,
};

/* Every field of ms_ship. "name" matches entries; "routes" are swapped. */
static const field ship_fields[] = {
    RAW(ms_ship, "kind", kind),
    OF(ms_ship, "group", F_STR, group),
    OF(ms_ship, "command", F_STR, command),
    OF(ms_ship, "args", F_LIST, args),
    OF(ms_ship, "cwd", F_STR, cwd),
    ADDR(ms_ship, "bind", bind, offsetof(ms_ship, has_bind)),
    NEST(ms_ship, "healthcheck", F_HEALTH, health, health_fields),
    OF(ms_ship, "routes", F_SKIP, routes),
    OF(ms_ship, "depends_on", F_DEPS, depends_on),
    OF(ms_ship, "env", F_ENV, env),
    OF(ms_ship, "config", F_MAP, config),
    OF(ms_ship, "subprotocols", F_LIST, subprotocols),
    RAW(ms_ship, "critical", critical),
    RAW(ms_ship, "oneshot", oneshot),
    OF(ms_ship, "tags", F_SET, tags),
    RAW(ms_ship, "ready_timeout", ready_timeout_ms),
    RAW(ms_ship, "ready_after", ready_after_ms),
    NEST(ms_ship, "restart", F_NEST, restart, restart_fields),
    RAW(ms_ship, "shutdown_timeout", shutdown_timeout_ms),
    RAW(ms_ship, "stop_signal", stop_signal),
    /* Entries are matched by name ("web#1"), so base and instance follow the
     * name. A change of instances adds or removes entries; the ones that stay
     * keep running: instances, and bind_alt that moves with it (port + i + N),
     * are not part of their definition (bind_alt otherwise changes only with
     * bind or port). */
    OF(ms_ship, "base", F_SKIP, base),
    OF(ms_ship, "instance", F_SKIP, instance),
    OF(ms_ship, "instances", F_SKIP, instances),
    RAW(ms_ship, "port", port),
    OF(ms_ship, "bind_alt", F_SKIP, bind_alt),
    OF(ms_ship, "bind", F_SKIP, bind_template), /* compared through bind */
    OF(ms_ship, "balance", F_SKIP, balance),             /* live_fields */
    OF(ms_ship, "drain_timeout", F_SKIP, drain_timeout_ms),
    RAW(ms_ship, "handover_timeout", handover_timeout_ms),
    RAW(ms_ship, "type", http_bay),
    RAW(ms_ship, "protocol", upstream_protocol),
    RAW(ms_ship, "workers", bay_workers),
    RAW(ms_ship, "threads", bay_threads),
    RAW(ms_ship, "request_timeout", request_timeout_ms),
    OF(ms_ship, "max_queue", F_SKIP, max_queue),         /* live_fields */
    OF(ms_ship, "file_roots", F_SKIP, file_roots),
    OF(ms_ship, "schedule", F_SKIP, schedule),           /* live_fields */
    OF(ms_ship, "memory_max", F_SKIP, memory_max),       /* live_fields */
    OF(ms_ship, "cpu_max", F_SKIP, cpu_max_milli),       /* live_fields */
    OF(ms_ship, "pids_max", F_SKIP, pids_max),           /* live_fields */
    /* env_file's variables are in env, read at load: a changed file is a
     * changed env. secret_env compares names and paths; a secret's value is
     * read at each spawn and never compared. */
    OF(ms_ship, "env_file", F_LIST, env_files),
    OF(ms_ship, "secret_env", F_MAP, secret_env),
    END,
};

/* The fields of a ship read while it runs (by the data plane, a roll), not
 * when its process starts: a change is swapped, not restarted. */
static const field live_fields[] = {
    RAW(ms_ship, "balance", balance),
    RAW(ms_ship, "drain_timeout", drain_timeout_ms),
    RAW(ms_ship, "max_queue", max_queue),
    OF(ms_ship, "file_roots", F_LIST, file_roots),
    OF(ms_ship, "schedule", F_STR, schedule), /* a job's next run follows it */
    /* written to the running process's cgroup */
    RAW(ms_ship, "memory_max", memory_max),
    RAW(ms_ship, "cpu_max", cpu_max_milli),
    RAW(ms_ship, "pids_max", pids_max),
    END,
};

static const field route_fields[] = {
    OF(ms_route, "bind", F_STR, bind),
    OF(ms_route, "pattern", F_STR, pattern),
    OF(ms_route, "name", F_STR, name),
    OF(ms_route, "strip_prefix", F_STR, strip_prefix),
    RAW(ms_route, "raw_path", raw_path),
    RAW(ms_route, "request_buffering", request_buffering_set),
    RAW(ms_route, "request_buffering", request_buffering),
    RAW(ms_route, "ws_compression", ws_compression),
    RAW(ms_route, "instances", ntargets),
    END,
};

static const field http_fields[] = {
    RAW(ms_http_limits, "max_header_size", max_header_size),
    RAW(ms_http_limits, "max_uri_length", max_uri_length),
    RAW(ms_http_limits, "max_body_size", max_body_size),
    RAW(ms_http_limits, "header_timeout", header_timeout_ms),
    RAW(ms_http_limits, "idle_timeout", idle_timeout_ms),
    RAW(ms_http_limits, "upstream_connect_timeout", upstream_connect_timeout_ms),
    RAW(ms_http_limits, "upstream_timeout", upstream_timeout_ms),
    RAW(ms_http_limits, "eject_cooldown", eject_cooldown_ms),
    RAW(ms_http_limits, "request_buffering", request_buffering),
    RAW(ms_http_limits, "request_buffer_size", request_buffer_size),
    RAW(ms_http_limits, "body_timeout", body_timeout_ms),
    RAW(ms_http_limits, "max_connections", max_connections),
    RAW(ms_http_limits, "upstream_keepalive", upstream_keepalive),
    RAW(ms_http_limits, "max_response_header_size", max_response_header_size),
    RAW(ms_http_limits, "ws_max_message_size", ws_max_message_size),
    RAW(ms_http_limits, "ws_send_queue", ws_send_queue),
    RAW(ms_http_limits, "ws_ping_interval", ws_ping_interval_ms),
    RAW(ms_http_limits, "ws_idle_timeout", ws_idle_timeout_ms),
    RAW(ms_http_limits, "h2_max_concurrent_streams", h2_max_concurrent_streams),
    RAW(ms_http_limits, "h2_max_header_list_size", h2_max_header_list_size),
    RAW(ms_http_limits, "h2_header_table_size", h2_header_table_size),
    RAW(ms_http_limits, "h2_rapid_reset_max", h2_rapid_reset_max),
    RAW(ms_http_limits, "h2_rapid_reset_window", h2_rapid_reset_window_ms),
    RAW(ms_http_limits, "h2_max_control_frames", h2_max_control_frames),
    RAW(ms_http_limits, "h2_stall_timeout", h2_stall_timeout_ms),
    END,
};

static const field cert_fields[] = {
    OF(ms_tls_cert, "cert", F_STR, cert),
    OF(ms_tls_cert, "key", F_STR, key),
    OF(ms_tls_cert, "hosts", F_SET, hosts),
    END,
};

static const field bind_fields[] = {
    ADDR(ms_bind, "address", addr, NO_FLAG),
    RAW(ms_bind, "tls", tls),
    RAW(ms_bind, "self_signed", self_signed),
    RAW(ms_bind, "h2", h2),
    RAW(ms_bind, "h2c", h2c),
    RAW(ms_bind, "redirect_to_https", redirect_to_https),
    RAW(ms_bind, "access_log", access_log),
    NEST(ms_bind, "tls", F_CERT, cert, cert_fields),
    OF(ms_bind, "tls.acme", F_SKIP, acme), /* needs a restart: diff_acme */
    END,
};

/* [mothership.acme]: read when Mothership starts (the ACME client is made
 * once); domains include the binds' tls.acme names. */
static const field acme_fields[] = {
    RAW(ms_acme_config, "enabled", enabled),
    OF(ms_acme_config, "directory", F_STR, directory),
    OF(ms_acme_config, "email", F_STR, email),
    OF(ms_acme_config, "domains", F_SET, domains),
    OF(ms_acme_config, "state_dir", F_STR, state_dir),
    OF(ms_acme_config, "ca_root", F_STR, ca_root),
    RAW(ms_acme_config, "challenge", challenge),
    RAW(ms_acme_config, "backoff", backoff_ms),
    RAW(ms_acme_config, "max_backoff", max_backoff_ms),
    /* the positions (pos, ..._pos) are not part of the definition */
    END,
};

static const field static_fields[] = {
    OF(ms_static_dir, "path", F_STR, path),
    OF(ms_static_dir, "prefix", F_STR, prefix),
    OF(ms_static_dir, "bind", F_STR, bind),
    END,
};

static const field module_fields[] = {
    OF(ms_module, "wasm", F_STR, wasm),
    OF(ms_module, "routes", F_LIST, routes),
    RAW(ms_module, "phase", phase),
    OF(ms_module, "config", F_MAP, config),
    OF(ms_module, "tags", F_SET, tags),
    RAW(ms_module, "on_error", fail_open),
    END,
};

/* url_text is what the file says, url what it means ($VAR expanded): the
 * parts parsed from it follow url. */
static const field uplink_fields[] = {
    OF(ms_uplink, "url", F_STR, url),
    RAW(ms_uplink, "timeout", timeout_ms),
    RAW(ms_uplink, "wait", wait_ms),
    END,
};

/* ---------------------------------------------------------------- comparing */
static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool list_eq(const ms_strlist *a, const ms_strlist *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return false;
    return true;
}

static bool list_has(const ms_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

static bool set_eq(const ms_strlist *a, const ms_strlist *b)
{
    for (size_t i = 0; i < a->len; i++)
        if (!list_has(b, a->items[i]))
            return false;
    for (size_t i = 0; i < b->len; i++)
        if (!list_has(a, b->items[i]))
            return false;
    return true;
}

/* Each key whose value differs between two maps, as "<key>.<name>". */
static void map_diff(const char *key, const ms_strmap *a, const ms_strmap *b, why_buf *w)
{
    for (size_t i = 0; i < a->len; i++)
        if (!str_eq(a->items[i].value, ms_strmap_get(b, a->items[i].key)))
            why_add(w, "%s.%s", key, a->items[i].key);
    for (size_t i = 0; i < b->len; i++)
        if (!ms_strmap_get(a, b->items[i].key))
            why_add(w, "%s.%s", key, b->items[i].key);
}

/* An entry's environment: its own env over [mothership] env. */
static const char *env_get(const ms_strmap *own, const ms_strmap *global, const char *name)
{
    const char *v = ms_strmap_get(own, name);
    return v ? v : ms_strmap_get(global, name);
}

typedef struct diff_ctx {
    const ms_manifest *old, *new;
} diff_ctx;

static void env_diff(const diff_ctx *c, const ms_strmap *a, const ms_strmap *b, why_buf *w)
{
    const ms_strmap *ga = &c->old->global.env, *gb = &c->new->global.env;
    const ms_strmap *all[] = { a, ga, b, gb };
    for (size_t m = 0; m < 4; m++) {
        for (size_t i = 0; i < all[m]->len; i++) {
            const char *name = all[m]->items[i].key;
            bool seen = false; /* named already by an earlier map */
            for (size_t e = 0; e < m && !seen; e++)
                seen = ms_strmap_get(all[e], name) != NULL;
            if (!seen && !str_eq(env_get(a, ga, name), env_get(b, gb, name)))
                why_add(w, "env.%s", name);
        }
    }
}

/* Item i of a depends_on in m as the manifest says it: "web" when the list
 * holds every instance of the ship web (the loader expanded it), else the
 * item itself. A change of instances then leaves the list the same. */
static const char *dep_written(const ms_manifest *m, const ms_strlist *l, size_t i, char *buf, size_t cap)
{
    const char *d = l->items[i], *hash = strchr(d, '#');
    if (!hash || (size_t)(hash - d) >= cap)
        return d;
    memcpy(buf, d, (size_t)(hash - d));
    buf[hash - d] = '\0';
    for (size_t k = 0; k < m->nships; k++) {
        const ms_ship *s = &m->ships[k];
        if (!s->base || s->instance != 0 || strcmp(s->base, buf) != 0)
            continue;
        for (unsigned n = 0; n < s->instances; n++)
            if (k + n >= m->nships || !list_has(l, m->ships[k + n].name))
                return d;
        return buf;
    }
    return d;
}

static bool deps_within(const ms_manifest *ma, const ms_strlist *a, const ms_manifest *mb, const ms_strlist *b)
{
    char x[96], y[96];
    for (size_t i = 0; i < a->len; i++) {
        const char *want = dep_written(ma, a, i, x, sizeof x);
        bool found = false;
        for (size_t j = 0; j < b->len && !found; j++)
            found = strcmp(want, dep_written(mb, b, j, y, sizeof y)) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* a from the old manifest, b from the new one. */
static bool deps_eq(const diff_ctx *c, const ms_strlist *a, const ms_strlist *b)
{
    return deps_within(c->old, a, c->new, b) && deps_within(c->new, b, c->old, a);
}

static bool addr_eq(const ms_addr *a, const ms_addr *b)
{
    return str_eq(a->text, b->text);
}

/* Name in w every field of the table that differs between a and b. */
static void fields_diff(const diff_ctx *c, const field *tab, const void *a, const void *b, const char *prefix,
                        why_buf *w)
{
    const char *pa = a, *pb = b;
    for (const field *f = tab; f->key; f++) {
        const void *fa = pa + f->off, *fb = pb + f->off;
        bool same = true;
        switch (f->type) {
        case F_RAW: same = memcmp(fa, fb, f->size) == 0; break;
        case F_STR: same = str_eq(*(char *const *)fa, *(char *const *)fb); break;
        case F_LIST: same = list_eq(fa, fb); break;
        case F_SET: same = set_eq(fa, fb); break;
        case F_DEPS: same = deps_eq(c, fa, fb); break;
        case F_ADDR: {
            bool ha = f->flag == NO_FLAG || *(const bool *)(pa + f->flag);
            bool hb = f->flag == NO_FLAG || *(const bool *)(pb + f->flag);
            same = ha == hb && (!ha || addr_eq(fa, fb));
            break;
        }
        case F_MAP: {
            char p[64];
            snprintf(p, sizeof p, "%s%s", prefix, f->key);
            map_diff(p, fa, fb, w);
            break;
        }
        case F_ENV:
            env_diff(c, fa, fb, w);
            break;
        case F_NEST: {
            char p[64];
            snprintf(p, sizeof p, "%s%s.", prefix, f->key);
            fields_diff(c, f->nest, fa, fb, p, w);
            break;
        }
        case F_HEALTH: {
            const ms_health *ha = fa, *hb = fb;
            if (ha->enabled != hb->enabled)
                same = false;
            else if (ha->enabled) {
                char p[64];
                snprintf(p, sizeof p, "%s%s.", prefix, f->key);
                fields_diff(c, f->nest, fa, fb, p, w);
            }
            break;
        }
        case F_CERT: {
            const ms_tls_cert *ca = *(ms_tls_cert *const *)fa, *cb = *(ms_tls_cert *const *)fb;
            if (!ca || !cb)
                same = ca == cb;
            else {
                char p[64];
                snprintf(p, sizeof p, "%s%s.", prefix, f->key);
                fields_diff(c, f->nest, ca, cb, p, w);
            }
            break;
        }
        case F_SKIP: break;
        }
        if (!same)
            why_add(w, "%s%s", prefix, f->key);
    }
}

/* Has w named key already ("bind", not "bind_x")? */
static bool why_names_key(const why_buf *w, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strstr(w->s, key); p; p = strstr(p + 1, key))
        if ((p == w->s || p[-1] == ' ') && (p[kl] == '\0' || p[kl] == ','))
            return true;
    return false;
}

static size_t find_ship(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nships; i++)
        if (strcmp(m->ships[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

/* ---------------------------------------------------------------- routes */
typedef struct route_at {
    const ms_route *route;
    const ms_ship *target;
    size_t ship;         /* the target's index: ties of routes inherited from a base */
} route_at;

/* The order the router tries a bind's routes in: where they are written. */
static int cmp_route_at(const void *a, const void *b)
{
    const route_at *x = a, *y = b;
    if (x->route->pos.line != y->route->pos.line)
        return x->route->pos.line < y->route->pos.line ? -1 : 1;
    if (x->route->pos.col != y->route->pos.col)
        return x->route->pos.col < y->route->pos.col ? -1 : 1;
    return x->ship < y->ship ? -1 : x->ship > y->ship;
}

/* The routes of one bind in the order they are tried; NULL with *n = 0 when
 * none, NULL with *oom when out of memory. */
static route_at *routes_of(const ms_manifest *m, const char *bind, size_t *n, bool *oom)
{
    size_t count = 0;
    for (size_t s = 0; s < m->nships; s++)
        for (size_t r = 0; r < m->ships[s].nroutes; r++)
            count += strcmp(m->ships[s].routes[r].bind, bind) == 0;
    *n = 0;
    if (count == 0)
        return NULL;
    route_at *v = calloc(count, sizeof *v);
    if (!v) {
        *oom = true;
        return NULL;
    }
    for (size_t s = 0; s < m->nships; s++)
        for (size_t r = 0; r < m->ships[s].nroutes; r++)
            if (strcmp(m->ships[s].routes[r].bind, bind) == 0)
                v[(*n)++] = (route_at){ &m->ships[s].routes[r], &m->ships[s], s };
    qsort(v, *n, sizeof *v, cmp_route_at);
    return v;
}

static bool routes_same(const diff_ctx *c, const char *bind, bool *oom)
{
    size_t na, nb;
    route_at *a = routes_of(c->old, bind, &na, oom);
    route_at *b = routes_of(c->new, bind, &nb, oom);
    bool same = na == nb;
    for (size_t i = 0; same && i < na; i++) {
        why_buf w = { 0 };
        fields_diff(c, route_fields, a[i].route, b[i].route, "", &w);
        same = w.len == 0 && strcmp(a[i].target->name, b[i].target->name) == 0;
    }
    free(a);
    free(b);
    return same;
}

/* ---------------------------------------------------------------- the result */
static bool push_line(char ***lines, size_t *n, bool *oom, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool push_line(char ***lines, size_t *n, bool *oom, const char *fmt, ...)
{
    char buf[WHY_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **v = realloc(*lines, (*n + 1) * sizeof *v);
    char *s = v ? ms_strdup(buf) : NULL;
    if (v)
        *lines = v;
    if (!s) {
        *oom = true;
        return false;
    }
    v[(*n)++] = s;
    return true;
}

#define SWAP(d, oom, ...) push_line(&(d)->swapped, &(d)->nswapped, oom, __VA_ARGS__)
#define NEEDS(d, oom, ...) push_line(&(d)->needs_restart, &(d)->nneeds, oom, __VA_ARGS__)

static bool has_routes(const ms_ship *s)
{
    return s->nroutes > 0;
}

static void diff_entries(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    for (size_t i = 0; i < d->nnew && !*oom; i++) {
        const ms_ship *s = &c->new->ships[i];
        size_t o = find_ship(c->old, s->name);
        d->old_index[i] = o;
        if (o == SIZE_MAX) {
            d->dataplane |= has_routes(s);
            continue;
        }
        why_buf live = { 0 };
        fields_diff(c, live_fields, &c->old->ships[o], s, "", &live);
        const char *kw = s->kind == MS_BAY ? "bay" : s->kind == MS_UPSTREAM ? "upstream" : "ship";
        if (live.len && (!s->base || s->instance == 0)) {
            d->dataplane = true;
            if (!SWAP(d, oom, "%s \"%s\" %s", kw, ms_ship_base(s), live.s))
                return;
        }
        why_buf w = { 0 };
        const ms_ship *was = &c->old->ships[o];
        fields_diff(c, ship_fields, was, s, "", &w);
        if (w.len && s->kind == MS_UPSTREAM && was->kind == MS_UPSTREAM) {
            /* no process of ours: the workers take the new definition */
            d->dataplane = true;
            if (!SWAP(d, oom, "upstream \"%s\" %s", s->name, w.s))
                return;
            continue;
        }
        /* the same number of instances: bind_alt moves only with the bind's text */
        if (was->instances == s->instances && !why_names_key(&w, "bind") &&
            (was->has_bind_alt != s->has_bind_alt || (s->has_bind_alt && !addr_eq(&was->bind_alt, &s->bind_alt))))
            why_add(&w, "bind");
        if (w.len == 0)
            continue;
        d->changed[i] = true;
        d->dataplane |= has_routes(s) || has_routes(&c->old->ships[o]);
        if (!(d->why[i] = ms_strdup(w.s)))
            *oom = true;
    }
    for (size_t o = 0; o < d->nold; o++) {
        d->removed[o] = find_ship(c->new, c->old->ships[o].name) == SIZE_MAX;
        if (d->removed[o])
            d->dataplane |= has_routes(&c->old->ships[o]);
    }
}

static void diff_binds(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_global *ga = &c->old->global, *gb = &c->new->global;
    for (size_t i = 0; i < ga->nbinds; i++)
        if (!ms_manifest_find_bind(c->new, ga->binds[i].name))
            SWAP(d, oom, "bind \"%s\" removed", ga->binds[i].name);
    for (size_t i = 0; i < gb->nbinds && !*oom; i++) {
        const ms_bind *b = &gb->binds[i], *a = ms_manifest_find_bind(c->old, b->name);
        if (!a) {
            SWAP(d, oom, "bind \"%s\" added", b->name);
            continue;
        }
        why_buf w = { 0 };
        fields_diff(c, bind_fields, a, b, "", &w);
        if (w.len)
            SWAP(d, oom, "bind \"%s\" (%s)", b->name, w.s);
        if (!routes_same(c, b->name, oom))
            SWAP(d, oom, "routes of bind \"%s\"", b->name);
    }
}

static void diff_tls(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_global *ga = &c->old->global, *gb = &c->new->global;
    why_buf w = { 0 };
    if (ga->has_tls != gb->has_tls)
        why_add(&w, "[mothership.tls]");
    if (!str_eq(ga->tls_cert, gb->tls_cert))
        why_add(&w, "cert");
    if (!str_eq(ga->tls_key, gb->tls_key))
        why_add(&w, "key");
    if (ga->ntls_certs != gb->ntls_certs)
        why_add(&w, "certs");
    for (size_t i = 0; i < ga->ntls_certs && ga->ntls_certs == gb->ntls_certs; i++) {
        char p[48];
        snprintf(p, sizeof p, "certs #%zu ", i + 1);
        fields_diff(c, cert_fields, &ga->tls_certs[i], &gb->tls_certs[i], p, &w);
    }
    if (ga->tls_session_tickets != gb->tls_session_tickets)
        why_add(&w, "session_tickets");
    if (ga->tls_ticket_rotation_ms != gb->tls_ticket_rotation_ms)
        why_add(&w, "ticket_key_rotation");
    if (w.len)
        SWAP(d, oom, "[mothership.tls] %s", w.s);
}

/* The ACME client and the TLS server's ACME names are set up once, at the
 * start: a change of [mothership.acme] or of a bind's tls.acme (a bind
 * added or removed with ACME names too) waits for a restart. */
static void diff_acme(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_global *ga = &c->old->global, *gb = &c->new->global;
    why_buf w = { 0 };
    if (ga->acme.enabled != gb->acme.enabled)
        NEEDS(d, oom, "[mothership.acme]");
    else
        fields_diff(c, acme_fields, &ga->acme, &gb->acme, "", &w);
    if (w.len)
        NEEDS(d, oom, "[mothership.acme] %s", w.s);
    for (size_t i = 0; i < gb->nbinds && !*oom; i++) {
        const ms_bind *b = &gb->binds[i], *a = ms_manifest_find_bind(c->old, b->name);
        static const ms_strlist none = { 0 };
        if (!list_eq(a ? &a->acme : &none, &b->acme))
            NEEDS(d, oom, "bind \"%s\" tls.acme", b->name);
    }
    for (size_t i = 0; i < ga->nbinds && !*oom; i++)
        if (ga->binds[i].acme.len && !ms_manifest_find_bind(c->new, ga->binds[i].name))
            NEEDS(d, oom, "bind \"%s\" tls.acme", ga->binds[i].name);
}

static void diff_static(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_global *ga = &c->old->global, *gb = &c->new->global;
    bool same = ga->nstatic == gb->nstatic;
    for (size_t i = 0; same && i < ga->nstatic; i++) {
        why_buf w = { 0 };
        fields_diff(c, static_fields, &ga->static_dirs[i], &gb->static_dirs[i], "", &w);
        same = w.len == 0;
    }
    if (!same)
        SWAP(d, oom, "[[mothership.static_dirs]]");
}

static const ms_module *find_module(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nmodules; i++)
        if (strcmp(m->modules[i].name, name) == 0)
            return &m->modules[i];
    return NULL;
}

/* Payloads run in manifest order: a change of order is a change too. */
static void diff_modules(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_manifest *a = c->old, *b = c->new;
    for (size_t i = 0; i < a->nmodules; i++)
        if (!find_module(b, a->modules[i].name))
            SWAP(d, oom, "payload \"%s\" removed", a->modules[i].name);
    size_t common_a = 0;
    bool order = true;
    for (size_t i = 0; i < b->nmodules && !*oom; i++) {
        const ms_module *mb = &b->modules[i], *ma = find_module(a, mb->name);
        if (!ma) {
            SWAP(d, oom, "payload \"%s\" added", mb->name);
            continue;
        }
        why_buf w = { 0 };
        fields_diff(c, module_fields, ma, mb, "", &w);
        if (w.len)
            SWAP(d, oom, "payload \"%s\" (%s)", mb->name, w.s);
        /* the modules both have, in the same relative order? */
        while (common_a < a->nmodules && !find_module(b, a->modules[common_a].name))
            common_a++;
        if (common_a >= a->nmodules || strcmp(a->modules[common_a].name, mb->name) != 0)
            order = false;
        common_a++;
    }
    if (!order)
        SWAP(d, oom, "payload order");
}

static void diff_global(const diff_ctx *c, ms_manifest_diff *d, bool *oom)
{
    const ms_global *ga = &c->old->global, *gb = &c->new->global;
    /* read once, when Mothership starts */
    if (ga->metrics_port != gb->metrics_port)
        NEEDS(d, oom, "[mothership] metrics_port");
    if (!str_eq(ga->metrics_bind, gb->metrics_bind))
        NEEDS(d, oom, "[mothership] metrics_bind");
    if (!str_eq(ga->socket_dir, gb->socket_dir))
        NEEDS(d, oom, "[mothership] socket_dir");
    if (!str_eq(ga->state_dir, gb->state_dir))
        NEEDS(d, oom, "[mothership] state_dir");
    if (ga->workers != gb->workers)
        NEEDS(d, oom, "[mothership] workers");
    if (!str_eq(ga->control_socket, gb->control_socket))
        NEEDS(d, oom, "[mothership] control_socket");
    if (!str_eq(ga->control_group, gb->control_group))
        NEEDS(d, oom, "[mothership] control_group");
    for (size_t i = 0; i < c->old->nuplinks; i++) {
        const ms_uplink *ua = &c->old->uplinks[i];
        const ms_uplink *ub = NULL;
        for (size_t k = 0; k < c->new->nuplinks && !ub; k++)
            if (strcmp(c->new->uplinks[k].name, ua->name) == 0)
                ub = &c->new->uplinks[k];
        why_buf w = { 0 };
        if (ub)
            fields_diff(c, uplink_fields, ua, ub, "", &w);
        if (!ub || w.len)
            NEEDS(d, oom, "uplink \"%s\"", ua->name);
    }
    for (size_t k = 0; k < c->new->nuplinks; k++) {
        bool known = false;
        for (size_t i = 0; i < c->old->nuplinks && !known; i++)
            known = strcmp(c->new->uplinks[k].name, c->old->uplinks[i].name) == 0;
        if (!known)
            NEEDS(d, oom, "uplink \"%s\"", c->new->uplinks[k].name);
    }
    /* swapped on the workers */
    size_t before = d->nswapped;
    if (ga->compression != gb->compression)
        SWAP(d, oom, "[mothership] compression");
    if (ga->access_log != gb->access_log)
        SWAP(d, oom, "[mothership] access_log");
    if (!str_eq(ga->access_log_path, gb->access_log_path))
        SWAP(d, oom, "[mothership] access_log_path");
    why_buf w = { 0 };
    fields_diff(c, http_fields, &ga->http, &gb->http, "", &w);
    if (w.len)
        SWAP(d, oom, "[mothership.http] %s", w.s);
    diff_binds(c, d, oom);
    diff_tls(c, d, oom);
    diff_static(c, d, oom);
    diff_modules(c, d, oom);
    d->dataplane |= d->nswapped > before;
    diff_acme(c, d, oom);
    /* env, shutdown_timeout and ready_timeout reach the entries that take
     * them, and are compared there. */
}

ms_manifest_diff *ms_manifest_diff_new(const ms_manifest *old, const ms_manifest *new)
{
    ms_manifest_diff *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->nnew = new->nships;
    d->nold = old->nships;
    d->old_index = calloc(d->nnew ? d->nnew : 1, sizeof *d->old_index);
    d->changed = calloc(d->nnew ? d->nnew : 1, sizeof *d->changed);
    d->why = calloc(d->nnew ? d->nnew : 1, sizeof *d->why);
    d->removed = calloc(d->nold ? d->nold : 1, sizeof *d->removed);
    bool oom = !d->old_index || !d->changed || !d->why || !d->removed;
    diff_ctx c = { old, new };
    if (!oom)
        diff_entries(&c, d, &oom);
    if (!oom)
        diff_global(&c, d, &oom);
    if (oom) {
        ms_manifest_diff_free(d);
        return NULL;
    }
    return d;
}

void ms_manifest_diff_free(ms_manifest_diff *d)
{
    if (!d)
        return;
    for (size_t i = 0; d->why && i < d->nnew; i++)
        free(d->why[i]);
    for (size_t i = 0; i < d->nswapped; i++)
        free(d->swapped[i]);
    for (size_t i = 0; i < d->nneeds; i++)
        free(d->needs_restart[i]);
    free(d->why);
    free(d->old_index);
    free(d->changed);
    free(d->removed);
    free(d->swapped);
    free(d->needs_restart);
    free(d);
}

bool ms_manifest_diff_empty(const ms_manifest_diff *d)
{
    if (d->nswapped || d->nneeds || d->dataplane)
        return false;
    for (size_t i = 0; i < d->nnew; i++)
        if (d->changed[i] || d->old_index[i] == SIZE_MAX)
            return false;
    for (size_t i = 0; i < d->nold; i++)
        if (d->removed[i])
            return false;
    return true;
}

/* ---------------------------------------------------------------- the plan */
static bool append_str(json_t *a, const char *s)
{
    return json_array_append_new(a, json_string(s)) == 0;
}

json_t *ms_manifest_diff_plan(const ms_manifest_diff *d, const ms_manifest *old, const ms_manifest *new)
{
    json_t *restart = json_array(), *why = json_object(), *start = json_array(), *stop = json_array();
    json_t *unchanged = json_array(), *swap = json_array(), *needs = json_array();
    json_t *plan = json_object();
    bool ok = restart && why && start && stop && unchanged && swap && needs && plan;
    for (size_t i = 0; ok && i < d->nnew; i++) {
        const char *name = new->ships[i].name;
        if (d->old_index[i] == SIZE_MAX)
            ok = append_str(start, name);
        else if (d->changed[i])
            ok = append_str(restart, name) && json_object_set_new(why, name, json_string(d->why[i])) == 0;
        else
            ok = append_str(unchanged, name);
    }
    for (size_t i = 0; ok && i < d->nold; i++)
        if (d->removed[i])
            ok = append_str(stop, old->ships[i].name);
    for (size_t i = 0; ok && i < d->nswapped; i++)
        ok = append_str(swap, d->swapped[i]);
    for (size_t i = 0; ok && i < d->nneeds; i++)
        ok = append_str(needs, d->needs_restart[i]);
    if (ok)
        ok = json_object_set(plan, "restart", restart) == 0 && json_object_set(plan, "why", why) == 0 &&
             json_object_set(plan, "start", start) == 0 && json_object_set(plan, "stop", stop) == 0 &&
             json_object_set(plan, "unchanged", unchanged) == 0 && json_object_set(plan, "swap", swap) == 0 &&
             json_object_set(plan, "needs_restart", needs) == 0;
    json_decref(restart);
    json_decref(why);
    json_decref(start);
    json_decref(stop);
    json_decref(unchanged);
    json_decref(swap);
    json_decref(needs);
    if (!ok) {
        json_decref(plan);
        return NULL;
    }
    return plan;
}
