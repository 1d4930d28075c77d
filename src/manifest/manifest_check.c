/* manifest_check.c: the rules that span entries, run after every entry is
 * loaded: names (format, uniqueness across ships, bays and modules),
 * depends_on targets and cycles, routes (binds exist, patterns compile with
 * PCRE2, strip_prefix is a prefix the pattern can match, oneshots have no
 * routes), listener collisions, TLS material, static dirs and module files.
 * Every problem is reported; none stops the others from being found. */
#include "manifest/manifest_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/pattern.h"
#include "util/strutil.h"

static const char *kind_of(const ms_ship *s)
{
    return s->kind == MS_SHIP ? "ship" : s->kind == MS_BAY ? "bay" : "upstream";
}

/* Instance 1.. of a ship with instances: the same definition as instance 0,
 * whose problems are reported once, there. */
static bool is_copy(const ms_ship *s)
{
    return s->base && s->instance > 0;
}

/* The name a message about the definition uses: "web", not "web#0". */
static const char *shown(const ms_ship *s)
{
    return ms_ship_base(s) ? ms_ship_base(s) : "?";
}

/* ---------------------------------------------------------------- names */
static void check_names(ld_ctx *c)
{
    ms_manifest *m = c->m;
    size_t total = m->nships + m->nmodules;
    for (size_t i = 0; i < total; i++) {
        const char *name, *kind;
        ms_pos pos;
        if (i < m->nships) {
            if (is_copy(&m->ships[i]))
                continue; /* instance 0 stands for the ship's name */
            name = ms_ship_base(&m->ships[i]);
            kind = kind_of(&m->ships[i]);
            pos = m->ships[i].name_pos;
        } else {
            name = m->modules[i - m->nships].name;
            kind = "module";
            pos = m->modules[i - m->nships].name_pos;
        }
        if (!name)
            continue;
        if (!ms_valid_name(name)) {
            ld_err(c, pos.line, pos.col, "%s \"%s\": names must be 1 to 64 ASCII letters, digits, '-' or '_'%s",
                   kind, name, strchr(name, '#') ? " ('#' is reserved: \"web#1\" names instance 1 of a ship "
                   "with instances)" : "");
            c->bad = true;
            continue;
        }
        if (strcmp(name, "mothership") == 0 || strcmp(name, "access") == 0) {
            /* the log's `source` of Mothership's own lines and of the access
             * log: an entry so named could pass its output off as theirs */
            ld_err(c, pos.line, pos.col, "%s \"%s\": the name is reserved (it is the log source of Mothership's "
                   "own lines or of the access log)", kind, name);
            c->bad = true;
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (j < m->nships && is_copy(&m->ships[j]))
                continue;
            const char *other = j < m->nships ? ms_ship_base(&m->ships[j]) : m->modules[j - m->nships].name;
            if (!other || strcmp(other, name) != 0)
                continue;
            const char *okind = j < m->nships ? kind_of(&m->ships[j]) : "module";
            ms_pos opos = j < m->nships ? m->ships[j].name_pos : m->modules[j - m->nships].name_pos;
            ld_err(c, pos.line, pos.col, "%s \"%s\": the name is already used by the %s at line %d "
                   "(names are unique across ships, bays, upstreams and modules)", kind, name, okind, opos.line);
            c->bad = true;
            break;
        }
    }
    for (size_t i = 0; i < m->nuplinks; i++) {
        for (size_t j = 0; j < i; j++) {
            if (m->uplinks[i].name && m->uplinks[j].name && !m->uplinks[i].unnamed && !m->uplinks[j].unnamed &&
                strcmp(m->uplinks[i].name, m->uplinks[j].name) == 0) {
                ld_err(c, m->uplinks[i].name_pos.line, m->uplinks[i].name_pos.col,
                       "uplink \"%s\": the name is already used by the uplink at line %d", m->uplinks[i].name,
                       m->uplinks[j].name_pos.line);
                c->bad = true;
                break;
            }
        }
    }
}

/* ---------------------------------------------------------------- dependencies */
static ssize_t ship_index(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nships; i++)
        if (m->ships[i].name && strcmp(m->ships[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static const char *const *ship_names(const ms_manifest *m, const char **buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nships && n + 1 < cap; i++)
        if (m->ships[i].name)
            buf[n++] = m->ships[i].name;
    buf[n] = NULL;
    return buf;
}

/* Iterative DFS with colours; on a back edge, print the cycle path. */
static void check_cycles(ld_ctx *c)
{
    ms_manifest *m = c->m;
    size_t n = m->nships;
    if (n == 0)
        return;
    unsigned char *colour = calloc(n, 1);   /* 0 white, 1 on stack, 2 done */
    char saids[8][256];                     /* cycles reported */
    size_t nsaid = 0;
    size_t *stack = calloc(n, sizeof *stack);
    size_t *edge = calloc(n, sizeof *edge);
    if (!colour || !stack || !edge) {
        c->oom = true;
        goto out;
    }
    for (size_t root = 0; root < n; root++) {
        if (colour[root])
            continue;
        size_t sp = 0;
        stack[sp] = root;
        edge[sp] = 0;
        colour[root] = 1;
        sp++;
        while (sp > 0) {
            size_t u = stack[sp - 1];
            ms_ship *s = &m->ships[u];
            if (edge[sp - 1] >= s->depends_on.len) {
                colour[u] = 2;
                sp--;
                continue;
            }
            size_t k = edge[sp - 1]++;
            ssize_t v = ship_index(m, s->depends_on.items[k]);
            if (v < 0 || (size_t)v == u)
                continue; /* reported by check_depends */
            if (colour[v] == 1) {
                /* cycle: from v up the stack to u, then back to v */
                char path[1024];
                size_t len = 0;
                size_t start = 0;
                while (stack[start] != (size_t)v)
                    start++;
                for (size_t i = start; i < sp && len < sizeof path - 80; i++)
                    len += (size_t)snprintf(path + len, sizeof path - len, "%s -> ", shown(&m->ships[stack[i]]));
                snprintf(path + len, sizeof path - len, "%s", shown(&m->ships[v]));
                ms_pos p = s->depends_pos ? s->depends_pos[k] : s->pos;
                /* the instances of a ship share its cycles: each is said once, whichever
                 * instance and place in the loop it was found from */
                size_t ncyc = sp - start, first = 0, klen = 0;
                char key[sizeof saids[0]];
                for (size_t i = 1; i < ncyc; i++)
                    if (strcmp(shown(&m->ships[stack[start + i]]), shown(&m->ships[stack[start + first]])) < 0)
                        first = i;
                key[0] = '\0';
                for (size_t i = 0; i < ncyc && klen < sizeof key; i++)
                    klen += (size_t)snprintf(key + klen, sizeof key - klen, "%s ",
                                             shown(&m->ships[stack[start + (first + i) % ncyc]]));
                bool said = false;
                for (size_t r = 0; r < nsaid && !said; r++)
                    said = strcmp(saids[r], key) == 0;
                if (!said)
                    ld_err(c, p.line, p.col, "%s \"%s\": dependency cycle: %s", kind_of(s), shown(s), path);
                if (!said && nsaid < sizeof saids / sizeof saids[0])
                    memcpy(saids[nsaid++], key, sizeof key);
                c->bad = true;
            } else if (colour[v] == 0) {
                colour[v] = 1;
                stack[sp] = (size_t)v;
                edge[sp] = 0;
                sp++;
            }
        }
    }
out:
    free(colour);
    free(stack);
    free(edge);
}

/* The ship with instances whose instance "<base>#k" is named, or NULL. */
static const ms_ship *instanced_by(const ms_manifest *m, const char *name)
{
    const char *hash = strchr(name, '#');
    for (size_t i = 0; hash && i < m->nships; i++) {
        const ms_ship *s = &m->ships[i];
        if (s->base && s->instance == 0 && strlen(s->base) == (size_t)(hash - name) &&
            strncmp(s->base, name, (size_t)(hash - name)) == 0)
            return s;
    }
    return NULL;
}

static void check_depends(ld_ctx *c)
{
    ms_manifest *m = c->m;
    const char *names[512];
    for (size_t i = 0; i < m->nships; i++) {
        ms_ship *s = &m->ships[i];
        if (is_copy(s) || (s->name && !s->base && strchr(s->name, '#')))
            continue; /* a copy is checked on instance 0; a name with '#' was reported */
        for (size_t k = 0; k < s->depends_on.len; k++) {
            const char *d = s->depends_on.items[k];
            ms_pos p = s->depends_pos ? s->depends_pos[k] : s->pos;
            size_t bl = s->name ? strlen(shown(s)) : 0;
            if (s->name && (strcmp(d, s->name) == 0 || strcmp(d, shown(s)) == 0 ||
                            (s->base && strncmp(d, s->base, bl) == 0 && d[bl] == '#'))) {
                ld_err(c, p.line, p.col, "%s \"%s\": depends on itself", kind_of(s), shown(s));
                c->bad = true;
                continue;
            }
            ssize_t di = ship_index(m, d);
            if (di >= 0 && m->ships[di].schedule) {
                ld_err(c, p.line, p.col, "%s \"%s\": depends_on \"%s\", a scheduled job (it runs at its "
                       "times, not once before the others start)", kind_of(s), shown(s), d);
                c->bad = true;
            }
            if (di >= 0)
                continue;
            const char *near = ms_nearest(d, ship_names(m, names, sizeof names / sizeof names[0]));
            bool is_module = false;
            for (size_t j = 0; j < m->nmodules; j++)
                if (m->modules[j].name && strcmp(m->modules[j].name, d) == 0)
                    is_module = true;
            const ms_ship *inst = instanced_by(m, d);
            if (inst)
                ld_err(c, p.line, p.col, "%s \"%s\": depends_on \"%s\", but ship \"%s\" has %u instances "
                       "(%s#0 to %s#%u)", kind_of(s), shown(s), d, inst->base, inst->instances, inst->base,
                       inst->base, inst->instances - 1);
            else if (is_module)
                ld_err(c, p.line, p.col, "%s \"%s\": depends_on \"%s\" names a module; only ships and bays "
                       "can be waited for", kind_of(s), shown(s), d);
            else if (near)
                ld_err(c, p.line, p.col, "%s \"%s\": depends_on \"%s\", which is not a ship or bay "
                       "(did you mean \"%s\"?)", kind_of(s), shown(s), d, near);
            else
                ld_err(c, p.line, p.col, "%s \"%s\": depends_on \"%s\", which is not a ship or bay",
                       kind_of(s), shown(s), d);
            c->bad = true;
        }
    }
    check_cycles(c);
}

/* ---------------------------------------------------------------- patterns */
/* Compile a whole-path pattern; on error report and return NULL. */
static void *compile_pattern(ld_ctx *c, ms_pos p, const char *who, const char *pattern)
{
    char why[200];
    void *re = ms_pattern_compile(pattern, why, sizeof why);
    if (!re) {
        ld_err(c, p.line, p.col, "%s: invalid pattern \"%s\": %s", who, pattern, why);
        c->bad = true;
    }
    return re;
}

static bool bind_declared(const ms_manifest *m, const char *name);

/* healthcheck.port: that port on the bind's host, or on 127.0.0.1 when the
 * ship has no TCP bind. */
static bool health_port_address(ld_ctx *c, ms_ship *s, const char *who)
{
    const char *host = s->has_bind && s->bind.kind == MS_ADDR_TCP && s->bind.host ? s->bind.host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    char text[300], why[160];
    snprintf(text, sizeof text, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)s->health.port);
    ms_addr a;
    if (!ms_addr_parse(text, &a, why, sizeof why)) {
        ld_err(c, s->health_pos.line, s->health_pos.col, "%s: healthcheck: invalid address \"%s\": %s", who, text, why);
        return false;
    }
    if (s->health.has_address)
        ms_addr_free(&s->health.address);
    s->health.address = a;
    s->health.has_address = true;
    return true;
}

/* A route's name is the `route` label of its request metrics: printable
 * text of a bounded length, so that a scrape stays readable. */
#define MS_ROUTE_NAME_MAX 128
static bool route_name_ok(ld_ctx *c, const ms_route *rt, const char *rwho)
{
    size_t n = strlen(rt->name);
    if (n > MS_ROUTE_NAME_MAX) {
        ld_err(c, rt->pos.line, rt->pos.col, "%s: name is %zu bytes long; at most %d", rwho, n,
               MS_ROUTE_NAME_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)rt->name[i] < 0x20 || rt->name[i] == 0x7f) {
            ld_err(c, rt->pos.line, rt->pos.col, "%s: name has a control character (byte %zu): route names "
                   "are printable text", rwho, i + 1);
            return false;
        }
    }
    return true;
}

static void check_routes(ld_ctx *c)
{
    ms_manifest *m = c->m;
    const char *bind_names[257];
    size_t nb = 0;
    for (size_t i = 0; i < m->global.declared_binds.len && nb < 256; i++)
        bind_names[nb++] = m->global.declared_binds.items[i];
    bind_names[nb] = NULL;
    for (size_t i = 0; i < m->nships; i++) {
        ms_ship *s = &m->ships[i];
        char who[128];
        snprintf(who, sizeof who, "%s \"%s\"", kind_of(s), shown(s));
        if (is_copy(s))
            continue; /* no routes; its definition is checked on instance 0 */
        if (s->nroutes && s->oneshot) {
            ld_err(c, s->routes[0].pos.line, s->routes[0].pos.col,
                   "%s: a oneshot job cannot have routes (it exits; nothing would answer)", who);
            c->bad = true;
        }
        if (s->kind == MS_SHIP && s->nroutes && !s->has_bind && !s->oneshot) {
            ld_err(c, s->routes[0].pos.line, s->routes[0].pos.col,
                   "%s: has routes but no \"bind\" to send the traffic to (add bind = \"tcp://127.0.0.1:PORT\" "
                   "or \"unix:///path\")", who);
            c->bad = true;
        }
        if (s->schedule && !s->oneshot) {
            ld_err(c, s->schedule_pos.line, s->schedule_pos.col,
                   "%s: \"schedule\" is for jobs (add oneshot = true: each run exits)", who);
            c->bad = true;
        }
        if (s->oneshot && s->health.enabled) {
            ld_err(c, s->health_pos.line, s->health_pos.col, "%s: a oneshot job cannot have a healthcheck", who);
            c->bad = true;
        } else if (s->kind == MS_SHIP && s->health.enabled && !s->has_bind && !s->health.has_address &&
                   !s->health.port) {
            ld_err(c, s->health_pos.line, s->health_pos.col,
                   "%s: \"healthcheck\" needs a \"bind\" to send the check to (or an \"address\" or \"port\" "
                   "of its own)", who);
            c->bad = true;
        } else if (s->health.enabled && s->health.port && !health_port_address(c, s, who)) {
            c->bad = true;
        }
        for (size_t r = 0; r < s->nroutes; r++) {
            ms_route *rt = &s->routes[r];
            rt->target = i;
            rt->ntargets = s->instances ? s->instances : 1;
            char rwho[160];
            snprintf(rwho, sizeof rwho, "%s: route %zu", who, r + 1);
            if (!bind_declared(m, rt->bind)) {
                const char *near = ms_nearest(rt->bind, bind_names);
                if (nb == 0)
                    ld_err(c, rt->pos.line, rt->pos.col, "%s: bind \"%s\" is not defined (there is no "
                           "[mothership.bind] table)", rwho, rt->bind);
                else if (near)
                    ld_err(c, rt->pos.line, rt->pos.col, "%s: bind \"%s\" is not defined in [mothership.bind] "
                           "(did you mean \"%s\"?)", rwho, rt->bind, near);
                else
                    ld_err(c, rt->pos.line, rt->pos.col, "%s: bind \"%s\" is not defined in [mothership.bind]",
                           rwho, rt->bind);
                c->bad = true;
            }
            if (rt->name && !route_name_ok(c, rt, rwho))
                c->bad = true;
            if (rt->pattern[0] != '/' && rt->pattern[0] != '(' && rt->pattern[0] != '.' &&
                rt->pattern[0] != '[' && rt->pattern[0] != '\\' && rt->pattern[0] != '^') {
                ld_err(c, rt->pos.line, rt->pos.col, "%s: pattern \"%s\" can never match: request paths "
                       "start with '/'", rwho, rt->pattern);
                c->bad = true;
                continue;
            }
            void *re = compile_pattern(c, rt->pos, rwho, rt->pattern);
            if (!re)
                continue;
            if (rt->strip_prefix) {
                if (rt->strip_prefix[0] != '/') {
                    ld_err(c, rt->pos.line, rt->pos.col, "%s: strip_prefix \"%s\" must start with '/'", rwho,
                           rt->strip_prefix);
                    c->bad = true;
                } else if (!ms_pattern_allows_prefix(re, rt->strip_prefix, strlen(rt->strip_prefix))) {
                    ld_err(c, rt->pos.line, rt->pos.col, "%s: strip_prefix \"%s\" is not a prefix of any path "
                           "that pattern \"%s\" matches", rwho, rt->strip_prefix, rt->pattern);
                    c->bad = true;
                }
            }
            ms_pattern_free(re);
        }
    }
    for (size_t i = 0; i < m->nmodules; i++) {
        ms_module *mod = &m->modules[i];
        for (size_t r = 0; r < mod->routes.len; r++) {
            char who[160];
            snprintf(who, sizeof who, "module \"%s\": route %zu", mod->name ? mod->name : "?", r + 1);
            ms_pos p = mod->route_pos ? mod->route_pos[r] : mod->pos;
            void *re = compile_pattern(c, p, who, mod->routes.items[r]);
            ms_pattern_free(re);
        }
    }
}

/* ---------------------------------------------------------------- listeners */
/* A bind written in [mothership.bind] (its address may be invalid: that is
 * reported once, where it is written). */
static bool bind_declared(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->global.declared_binds.len; i++)
        if (strcmp(m->global.declared_binds.items[i], name) == 0)
            return true;
    return false;
}

typedef struct listener {
    const ms_addr *addr;
    const char *what;    /* "bind \"http\"", "ship \"app\"", "the metrics listener" */
    ms_pos pos;
} listener;

static void check_listeners(ld_ctx *c)
{
    ms_manifest *m = c->m;
    ms_global *g = &m->global;
    size_t cap = g->nbinds + 2 * m->nships + 1, n = 0;
    listener *ls = calloc(cap, sizeof *ls);
    char (*labels)[96] = calloc(cap, sizeof *labels);
    ms_addr metrics;
    bool have_metrics = false;
    if (!ls || !labels) {
        c->oom = true;
        goto out;
    }
    for (size_t i = 0; i < g->nbinds; i++) {
        snprintf(labels[n], sizeof labels[n], "bind \"%s\"", g->binds[i].name);
        ls[n] = (listener){ &g->binds[i].addr, labels[n], g->binds[i].pos };
        n++;
        /* with [mothership.acme], such a bind serves the ACME certificates */
        if (g->binds[i].tls && !g->binds[i].self_signed && !g->binds[i].cert && !g->has_tls && !g->acme.enabled &&
            !g->binds[i].acme.len) {
            ld_err(c, g->binds[i].pos.line, g->binds[i].pos.col,
                   "bind \"%s\": terminates TLS but there is no [mothership.tls] with cert and key",
                   g->binds[i].name);
            c->bad = true;
        }
    }
    for (size_t i = 0; i < g->nbinds; i++) {
        if (!g->binds[i].redirect_to_https)
            continue;
        bool target = false;
        for (size_t j = 0; j < g->nbinds; j++)
            target |= g->binds[j].tls && g->binds[j].addr.kind == MS_ADDR_TCP;
        if (!target) {
            ld_err(c, g->binds[i].pos.line, g->binds[i].pos.col,
                   "bind \"%s\": redirect_to_https needs a TCP bind that terminates TLS to redirect to",
                   g->binds[i].name);
            c->bad = true;
        }
    }
    for (size_t i = 0; i < m->nships; i++) {
        const ms_ship *s = &m->ships[i];
        if (!s->has_bind || !s->bind.text) /* an unexpanded template was reported */
            continue;
        snprintf(labels[n], sizeof labels[n], "%s \"%s\"", kind_of(s), s->name ? s->name : "?");
        ls[n] = (listener){ &s->bind, labels[n], s->bind_pos };
        n++;
        if (!s->has_bind_alt)
            continue;
        snprintf(labels[n], sizeof labels[n], "ship \"%s\" (its replacement's address)",
                 s->name ? s->name : "?");
        ls[n] = (listener){ &s->bind_alt, labels[n], s->bind_pos };
        n++;
    }
    {
        char why[120];
        char text[300];
        snprintf(text, sizeof text, strchr(g->metrics_bind, ':') ? "[%s]:%u" : "%s:%u", g->metrics_bind,
                 g->metrics_port ? g->metrics_port : 9090);
        if (ms_addr_parse(text, &metrics, why, sizeof why)) {
            have_metrics = true;
            if (g->metrics_port) {
                snprintf(labels[n], sizeof labels[n], "the metrics listener");
                ls[n] = (listener){ &metrics, labels[n], g->metrics_pos };
                n++;
            }
        } else {
            ld_err(c, g->metrics_bind_pos.line, g->metrics_bind_pos.col,
                   "[mothership]: invalid metrics_bind \"%s\": %s", g->metrics_bind, why);
            c->bad = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (!ms_addr_collide(ls[i].addr, ls[j].addr))
                continue;
            ld_err(c, ls[i].pos.line, ls[i].pos.col, "%s: address %s collides with %s (%s, line %d)",
                   ls[i].what, ls[i].addr->text, ls[j].what, ls[j].addr->text, ls[j].pos.line);
            c->bad = true;
            break;
        }
    }
out:
    if (have_metrics)
        ms_addr_free(&metrics);
    free(ls);
    free(labels);
}

/* ---------------------------------------------------------------- files */
static void check_file(ld_ctx *c, ms_pos p, const char *who, const char *what, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        ld_err(c, p.line, p.col, "%s: %s \"%s\" does not exist", who, what, path);
        c->bad = true;
    } else if (!S_ISREG(st.st_mode)) {
        ld_err(c, p.line, p.col, "%s: %s \"%s\" is not a regular file", who, what, path);
        c->bad = true;
    } else if (access(path, R_OK) != 0) {
        ld_err(c, p.line, p.col, "%s: %s \"%s\" is not readable", who, what, path);
        c->bad = true;
    }
}

/* file_roots: existing directories, kept as their real paths so that a
 * file REPLY's real path is compared with them as it is. */
static void check_file_roots(ld_ctx *c, ms_ship *s)
{
    for (size_t i = 0; i < s->file_roots.len; i++) {
        struct stat st;
        const char *d = s->file_roots.items[i];
        if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
            ld_err(c, s->pos.line, s->pos.col, "%s \"%s\": file_roots: \"%s\" is not a directory", kind_of(s),
                   s->name ? s->name : "?", d);
            c->bad = true;
            continue;
        }
        char *real = realpath(d, NULL);
        if (!real) {
            ld_err(c, s->pos.line, s->pos.col, "%s \"%s\": file_roots: \"%s\": %s", kind_of(s),
                   s->name ? s->name : "?", d, strerror(errno));
            c->bad = true;
            continue;
        }
        free(s->file_roots.items[i]);
        s->file_roots.items[i] = real;
    }
}

static void check_statics_and_files(ld_ctx *c)
{
    ms_manifest *m = c->m;
    ms_global *g = &m->global;
    for (size_t i = 0; i < g->nstatic; i++) {
        ms_static_dir *sd = &g->static_dirs[i];
        if (sd->bind && !bind_declared(m, sd->bind)) {
            const char *names[257];
            size_t nb = 0;
            for (size_t k = 0; k < g->declared_binds.len && nb < 256; k++)
                names[nb++] = g->declared_binds.items[k];
            names[nb] = NULL;
            const char *near = ms_nearest(sd->bind, names);
            if (near)
                ld_err(c, sd->bind_pos.line, sd->bind_pos.col, "static dir #%zu: bind \"%s\" is not defined in "
                       "[mothership.bind] (did you mean \"%s\"?)", i + 1, sd->bind, near);
            else
                ld_err(c, sd->bind_pos.line, sd->bind_pos.col, "static dir #%zu: bind \"%s\" is not defined in "
                       "[mothership.bind]", i + 1, sd->bind);
            c->bad = true;
        }
        for (size_t j = 0; j < i; j++) {
            ms_static_dir *o = &g->static_dirs[j];
            if (!sd->prefix || !o->prefix || strcmp(sd->prefix, o->prefix) != 0)
                continue;
            if ((sd->bind == NULL) != (o->bind == NULL) || (sd->bind && strcmp(sd->bind, o->bind) != 0))
                continue;
            ld_err(c, sd->pos.line, sd->pos.col, "static dir #%zu: prefix \"%s\" is already served by static "
                   "dir #%zu (line %d)", i + 1, sd->prefix, j + 1, o->pos.line);
            c->bad = true;
        }
    }
    if (g->has_tls) {
        if (g->tls_cert)
            check_file(c, g->tls_cert_pos, "[mothership.tls]", "cert", g->tls_cert);
        if (g->tls_key)
            check_file(c, g->tls_key_pos, "[mothership.tls]", "key", g->tls_key);
        for (size_t i = g->tls_cert ? 1 : 0; i < g->ntls_certs; i++) {
            char who[64];
            snprintf(who, sizeof who, "[[mothership.tls.certs]] #%zu", i + (g->tls_cert ? 0 : 1));
            if (g->tls_certs[i].cert) /* else already reported missing */
                check_file(c, g->tls_certs[i].cert_pos, who, "cert", g->tls_certs[i].cert);
            if (g->tls_certs[i].key)
                check_file(c, g->tls_certs[i].key_pos, who, "key", g->tls_certs[i].key);
        }
    }
    for (size_t i = 0; i < g->nbinds; i++) {
        const ms_tls_cert *tc = g->binds[i].cert;
        if (!tc)
            continue;
        char who[96];
        snprintf(who, sizeof who, "bind \"%s\": tls", g->binds[i].name);
        check_file(c, tc->cert_pos, who, "cert", tc->cert);
        check_file(c, tc->key_pos, who, "key", tc->key);
    }
    for (size_t i = 0; i < m->nmodules; i++) {
        ms_module *mod = &m->modules[i];
        char who[96];
        snprintf(who, sizeof who, "module \"%s\"", mod->name ? mod->name : "?");
        if (mod->wasm)
            check_file(c, mod->wasm_pos, who, "wasm file", mod->wasm);
    }
    for (size_t i = 0; i < m->nships; i++) {
        ms_ship *s = &m->ships[i];
        struct stat st;
        if (s->cwd && (stat(s->cwd, &st) != 0 || !S_ISDIR(st.st_mode))) {
            ld_err(c, s->cwd_pos.line, s->cwd_pos.col, "%s \"%s\": cwd \"%s\" is not a directory", kind_of(s),
                   s->name ? s->name : "?", s->cwd);
            c->bad = true;
        }
        check_file_roots(c, s);
    }
}

/* ---------------------------------------------------------------- ACME */
/* A TLS bind that serves ACME certificates: no certificate of its own. */
static bool serves_acme(const ms_bind *b)
{
    return b->tls && !b->self_signed && !b->cert;
}

static bool serves_name(const ms_bind *b, const char *name)
{
    if (!serves_acme(b))
        return false;
    if (!b->acme.len)
        return true;
    for (size_t i = 0; i < b->acme.len; i++)
        if (strcmp(b->acme.items[i], name) == 0)
            return true;
    return false;
}

/* The binds a challenge can be answered on (plain TCP for http-01, TLS TCP
 * serving ACME names for tls-alpn-01): none is an error; none on the port
 * a public CA connects to (80, 443) is a warning, offline. */
static void check_acme_challenge(ld_ctx *c)
{
    const ms_global *g = &c->m->global;
    const ms_acme_config *a = &g->acme;
    bool alpn = a->challenge == MS_ACME_TLS_ALPN_01;
    unsigned want = alpn ? 443 : 80;
    const ms_bind *some = NULL;
    bool on_port = false;
    for (size_t i = 0; i < g->nbinds; i++) {
        const ms_bind *b = &g->binds[i];
        if (b->addr.kind != MS_ADDR_TCP || (alpn ? !serves_acme(b) : b->tls))
            continue;
        some = some ? some : b;
        on_port |= b->addr.port == want;
    }
    ms_pos at = a->challenge_pos.line ? a->challenge_pos : a->pos;
    const char *name = alpn ? "tls-alpn-01" : "http-01";
    if (!some) {
        ld_err(c, at.line, at.col, alpn ? "[mothership.acme]: challenge \"%s\" is answered in the TLS handshake, "
               "and no TCP bind terminates TLS with the ACME certificates (add https = \"0.0.0.0:443\")"
               : "[mothership.acme]: challenge \"%s\" is answered on a plain (not TLS) TCP bind, and there is "
               "none (add http = \"0.0.0.0:80\")", name);
        c->bad = true;
    } else if (!on_port && c->warnings && !c->bad) {
        /* not after an error: about a misspelt challenge, it would name http-01 */
        ms_diag_add(c->warnings, at.line, at.col, "warning: [mothership.acme]: challenge \"%s\": no %s bind is on "
                    "port %u (bind \"%s\" is on %u); a public CA connects to port %u, so this works only with a "
                    "port forward or a private CA", name, alpn ? "TLS" : "plain", want, some->name,
                    (unsigned)some->addr.port, want);
    }
}

static void check_acme(ld_ctx *c)
{
    const ms_global *g = &c->m->global;
    const ms_acme_config *a = &g->acme;
    if (!a->enabled)
        return;
    if (a->ca_root)
        check_file(c, a->ca_root_pos, "[mothership.acme]", "ca_root", a->ca_root);
    check_acme_challenge(c);
    /* a name no TLS bind serves would be ordered for nothing */
    for (size_t k = 0; k < a->domains.len; k++) {
        bool served = false;
        for (size_t i = 0; i < g->nbinds && !served; i++)
            served = serves_name(&g->binds[i], a->domains.items[k]);
        if (served)
            continue;
        ms_pos at = a->domains_pos.line ? a->domains_pos : a->pos;
        ld_err(c, at.line, at.col, "[mothership.acme]: no TLS bind serves \"%s\" (a bind with tls = true, or "
               "tls = { acme = [\"%s\"] }; binds with their own certificate or self-signed do not)",
               a->domains.items[k], a->domains.items[k]);
        c->bad = true;
    }
}

void ld_check(ld_ctx *c)
{
    check_names(c);
    check_depends(c);
    check_routes(c);
    check_listeners(c);
    check_statics_and_files(c);
    check_acme(c);
}
