/* dataplane.c: the data plane's lifecycle: listeners per bind and worker
 * (TCP with SO_REUSEPORT, Unix sockets shared by descriptor), the worker
 * threads and their loops, the per-worker Date header, graceful stop
 * (stop accepting, drain, close), and the request metrics summed at scrape. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "http/http_impl.h"
#include "http/static.h"
#include "tls/tls.h"
#include "util/pattern.h"

/* One configuration of the data plane. Built on the control loop, then
 * read-only; every worker takes it (ms_wgen) and gives it back once it has
 * moved on and the last request using it has ended; the last one to give
 * it back has it freed on the control loop. */
struct ms_gen {
    int refs;                  /* atomic: workers that have not given it back, + 1 while it is the newest */
    int dead;                  /* atomic: refs reached 0; the control loop frees it */
    ms_dataplane *dp;
    ms_manifest *m;            /* a reference */
    ms_route_table *routes;    /* owned from here on, like payloads and tls */
    ms_payload_set *payloads;
    struct ms_tls_server *tls;
    ms_proc **procs;           /* the fleet's processes by ship index, or NULL */
    ms_target *targets;        /* per ship */
    ms_target *alt_targets;    /* per ship: its bind_alt, where it has one */
    uint32_t *nomatch_slot;    /* per bind */
    uint32_t **route_slot;     /* per bind, per route */
    uint32_t **static_slot;    /* per bind, per static dir */
    int **static_fd;           /* per bind, per static dir: the root, opened once */
    uint32_t *bind_id;         /* per bind: its index in dp->bind_names */
    int *unix_fds;             /* per bind: the listening Unix socket (the control loop's), or -1 */
    int *listen_fds;           /* per worker, per bind: a socket for it to listen on, or -1 (taken) */
    ms_wgen *wg;               /* per worker */
    ms_gen *newer;             /* the generation published after it (under dp->gen_lock) */
    ms_gen *next;              /* dp's generations not yet freed (control loop) */
};

typedef struct ms_module_past {
    char *name;
    ms_payload_stats st;
} ms_module_past;

static void stats_add(ms_payload_stats *out, const ms_payload_stats *st);

struct ms_dataplane {
    uv_loop_t *control;
    ms_dp_config cfg;          /* log, workers, hub, inline_worker; the rest is in the generations */
    ms_worker *workers;
    unsigned nworkers;
    bool stop_requested;
    uv_async_t done_async;
    bool done_async_open;      /* atomic: workers signal their end through done_async */
    void (*done)(void *);
    void *done_arg;
    ms_gen *gen;               /* the newest generation */
    ms_gen *gens;              /* every generation not yet freed */
    uv_mutex_t gen_lock;       /* ms_gen.newer */
    bool gen_lock_init;
    uv_async_t reap_async;     /* a generation is dead */
    bool reap_async_open;
    /* routing slots for metrics: by (bind, route, target), kept across generations */
    ms_slot_info *slots;       /* control loop only; strings owned */
    uint32_t nslots, slots_cap;
    char *bind_names[MS_BIND_IDS]; /* bind ids (TLS handshake counters) */
    uint32_t nbind_names;
    ms_payload_stats *payload_sums; /* scratch for the metrics render (control loop only) */
    size_t npayload_sums;
    ms_module_past *module_past; /* counters of modules of freed generations, by name */
    size_t nmodule_past;
    ms_alog *alog;             /* the access log's rings and writer; NULL: an inline worker */
    /* drain */
    bool draining;
    uv_timer_t drain_poll;
    bool drain_poll_open;
    uint64_t drain_deadline_us;
    void (*drain_done)(void *);
    void *drain_arg;
};

uint64_t ms_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const ms_proc *ms_worker_proc(const ms_wgen *g, size_t ship)
{
    return g->procs ? g->procs[ship] : NULL;
}

/* ---------------------------------------------------------------- generations */
static bool bind_same(const ms_bind *a, const ms_bind *b)
{
    return strcmp(a->name, b->name) == 0 && strcmp(a->addr.text, b->addr.text) == 0 && a->tls == b->tls;
}

static int bind_find(const ms_manifest *m, const ms_bind *b)
{
    for (size_t i = 0; i < m->global.nbinds; i++)
        if (bind_same(&m->global.binds[i], b))
            return (int)i;
    return -1;
}

int ms_wgen_bind_in(const ms_wgen *from, uint32_t idx, const ms_wgen *to)
{
    if (from == to)
        return (int)idx;
    return bind_find(to->m, &from->m->global.binds[idx]);
}

/* The static roots and the slot maps (they follow the route table). */
static void gen_free_maps(ms_gen *g)
{
    const ms_route_table *rt = g->routes;
    for (size_t b = 0; rt && b < rt->nbinds; b++) {
        if (g->static_fd && g->static_fd[b])
            for (size_t i = 0; i < rt->binds[b].nstatics; i++)
                if (g->static_fd[b][i] >= 0)
                    close(g->static_fd[b][i]);
        if (g->static_fd)
            free(g->static_fd[b]);
        if (g->static_slot)
            free(g->static_slot[b]);
        if (g->route_slot)
            free(g->route_slot[b]);
    }
    free(g->static_fd);
    free(g->static_slot);
    free(g->route_slot);
    free(g->nomatch_slot);
    g->static_fd = NULL;
    g->static_slot = NULL;
    g->route_slot = NULL;
    g->nomatch_slot = NULL;
}

/* The counters of g's modules, kept by name once g is freed. */
static void gen_keep_module_stats(ms_gen *g)
{
    ms_dataplane *dp = g->dp;
    const ms_payload_set *ps = g->payloads;
    for (size_t i = 0; ps && g->wg && i < ms_payload_count(ps); i++) {
        const char *name = ms_payload_module(ps, i)->name;
        size_t k = 0;
        while (k < dp->nmodule_past && strcmp(dp->module_past[k].name, name) != 0)
            k++;
        if (k == dp->nmodule_past) {
            ms_module_past *n = realloc(dp->module_past, (k + 1) * sizeof *n);
            char *copy = n ? strdup(name) : NULL;
            if (n)
                dp->module_past = n;
            if (!copy)
                continue; /* out of memory: these counts are lost */
            memset(&n[k], 0, sizeof n[k]);
            n[k].name = copy;
            dp->nmodule_past++;
        }
        for (unsigned w = 0; w < dp->nworkers; w++) {
            if (!g->wg[w].pw)
                continue;
            ms_payload_stats st;
            ms_payload_worker_stats(g->wg[w].pw, i, &st);
            stats_add(&dp->module_past[k].st, &st);
        }
    }
}

/* A reload that changes no TLS setting hands over the TLS server the
 * current generation has (its certificates are re-read in place): it is
 * freed with the last generation that has it. g is no longer in dp->gens. */
static bool tls_in_other_gen(const ms_gen *g)
{
    for (const ms_gen *o = g->dp->gens; o; o = o->next)
        if (o != g && o->tls == g->tls)
            return true;
    return false;
}

static void gen_free(ms_gen *g)
{
    if (!g)
        return;
    ms_dataplane *dp = g->dp;
    for (unsigned i = 0; g->wg && i < dp->nworkers; i++) {
        ms_payload_worker_free(g->wg[i].pw);
        free(g->wg[i].pools);
        free(g->wg[i].pool_len);
        free(g->wg[i].rr);
    }
    free(g->wg);
    gen_free_maps(g);
    size_t nb = g->m ? g->m->global.nbinds : 0;
    for (size_t b = 0; g->unix_fds && b < nb; b++) {
        if (g->unix_fds[b] >= 0) {
            close(g->unix_fds[b]);
            unlink(g->m->global.binds[b].addr.path);
        }
    }
    for (size_t k = 0; g->listen_fds && k < nb * dp->nworkers; k++)
        if (g->listen_fds[k] >= 0)
            close(g->listen_fds[k]);
    free(g->unix_fds);
    free(g->listen_fds);
    free(g->bind_id);
    free(g->targets);
    free(g->alt_targets);
    free(g->procs);
    ms_route_table_free(g->routes);
    ms_payload_set_free(g->payloads);
    if (g->tls && !tls_in_other_gen(g))
        ms_tls_server_free(g->tls);
    ms_manifest_free(g->m);
    free(g);
}

/* The control loop: free the generations nobody uses any more. */
static void reap(ms_dataplane *dp)
{
    for (ms_gen **pp = &dp->gens; *pp;) {
        ms_gen *g = *pp;
        if (__atomic_load_n(&g->dead, __ATOMIC_ACQUIRE)) {
            *pp = g->next;
            gen_keep_module_stats(g);
            gen_free(g);
        } else {
            pp = &g->next;
        }
    }
}

static void on_reap(uv_async_t *a)
{
    reap(a->data);
}

/* One holder less; the last one marks it dead (any thread). */
static void gen_release(ms_gen *g)
{
    if (__atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    ms_dataplane *dp = g->dp;
    __atomic_store_n(&g->dead, 1, __ATOMIC_RELEASE);
    if (dp->cfg.inline_worker)
        reap(dp); /* one thread: the caller's */
    else if (__atomic_load_n(&dp->reap_async_open, __ATOMIC_ACQUIRE))
        uv_async_send(&dp->reap_async);
}

void ms_wgen_drop(ms_wgen *g)
{
    assert(g->refs > 0);
    if (--g->refs > 0)
        return;
    ms_worker *w = g->w;
    assert(g != w->cur);
    for (ms_wgen **pp = &w->gens; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    gen_release(g->gen);
}

/* The metrics slot for (bind, route, target): the one counted so far, or
 * a new one. UINT32_MAX: out of memory or out of slots. */
static uint32_t slot_for(ms_dataplane *dp, const char *bind, const char *route, const char *target)
{
    for (uint32_t s = 0; s < dp->nslots; s++)
        if (strcmp(dp->slots[s].bind, bind) == 0 && strcmp(dp->slots[s].route, route) == 0 &&
            strcmp(dp->slots[s].target, target) == 0)
            return s;
    if (dp->nslots >= MS_SLOT_CHUNK * MS_SLOT_CHUNKS)
        return UINT32_MAX;
    if (dp->nslots == dp->slots_cap) {
        uint32_t cap = dp->slots_cap ? dp->slots_cap * 2 : 64;
        ms_slot_info *n = realloc(dp->slots, cap * sizeof *n);
        if (!n)
            return UINT32_MAX;
        dp->slots = n;
        dp->slots_cap = cap;
    }
    uint32_t s = dp->nslots;
    /* every worker's counters for it exist before a generation names it */
    for (unsigned i = 0; i < dp->nworkers; i++) {
        ms_worker *w = &dp->workers[i];
        if (!w->slot_chunk[s / MS_SLOT_CHUNK]) {
            w->slot_chunk[s / MS_SLOT_CHUNK] = calloc(MS_SLOT_CHUNK, sizeof(ms_slot_stats));
            if (!w->slot_chunk[s / MS_SLOT_CHUNK])
                return UINT32_MAX;
        }
    }
    char *b = strdup(bind), *r = strdup(route), *t = strdup(target);
    if (!b || !r || !t) {
        free(b);
        free(r);
        free(t);
        return UINT32_MAX;
    }
    dp->slots[s] = (ms_slot_info){ b, r, t };
    dp->nslots++;
    return s;
}

static uint32_t bind_id_for(ms_dataplane *dp, const char *name)
{
    for (uint32_t i = 0; i < dp->nbind_names; i++)
        if (strcmp(dp->bind_names[i], name) == 0)
            return i;
    if (dp->nbind_names >= MS_BIND_IDS)
        return UINT32_MAX;
    char *n = strdup(name);
    if (!n)
        return UINT32_MAX;
    dp->bind_names[dp->nbind_names] = n;
    return dp->nbind_names++;
}

static bool gen_setup_slots(ms_gen *g)
{
    ms_dataplane *dp = g->dp;
    const ms_route_table *rt = g->routes;
    size_t nb = rt->nbinds ? rt->nbinds : 1;
    g->nomatch_slot = calloc(nb, sizeof *g->nomatch_slot);
    g->route_slot = calloc(nb, sizeof *g->route_slot);
    g->static_slot = calloc(nb, sizeof *g->static_slot);
    g->static_fd = calloc(nb, sizeof *g->static_fd);
    if (!g->nomatch_slot || !g->route_slot || !g->static_slot || !g->static_fd)
        return false;
    for (size_t b = 0; b < rt->nbinds; b++) {
        const ms_rt_bind *rb = &rt->binds[b];
        g->static_slot[b] = calloc(rb->nstatics ? rb->nstatics : 1, sizeof **g->static_slot);
        g->static_fd[b] = calloc(rb->nstatics ? rb->nstatics : 1, sizeof **g->static_fd);
        g->route_slot[b] = calloc(rb->nroutes ? rb->nroutes : 1, sizeof **g->route_slot);
        if (!g->static_slot[b] || !g->static_fd[b] || !g->route_slot[b])
            return false;
        for (size_t i = 0; i < rb->nstatics; i++)
            g->static_fd[b][i] = -1;
        if ((g->nomatch_slot[b] = slot_for(dp, rb->bind->name, "", "none")) == UINT32_MAX)
            return false;
        for (size_t i = 0; i < rb->nstatics; i++) {
            g->static_slot[b][i] = slot_for(dp, rb->bind->name, rb->statics[i]->prefix, "static");
            if (g->static_slot[b][i] == UINT32_MAX)
                return false;
            g->static_fd[b][i] = open(rb->statics[i]->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        for (size_t i = 0; i < rb->nroutes; i++) {
            const ms_route *route = rb->routes[i].route;
            g->route_slot[b][i] = slot_for(dp, rb->bind->name, route->name ? route->name : route->pattern,
                                           ms_ship_base(rb->routes[i].target));
            if (g->route_slot[b][i] == UINT32_MAX)
                return false;
        }
    }
    return true;
}

/* A generation for cfg, with no listening sockets yet. The caller's cfg
 * routes, payloads and tls become its own only once it is published (the
 * caller clears them from a failed one before gen_free). NULL + why. */
static ms_gen *gen_new(ms_dataplane *dp, const ms_dp_config *cfg, char *why, size_t why_len)
{
    const ms_manifest *m = cfg->m;
    for (size_t b = 0; b < m->global.nbinds; b++) {
        if (m->global.binds[b].tls && !cfg->tls) {
            snprintf(why, why_len, "bind \"%s\" (%s) terminates TLS, and no TLS configuration was given",
                     m->global.binds[b].name, m->global.binds[b].addr.text);
            return NULL;
        }
    }
    ms_gen *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    g->dp = dp;
    g->m = ms_manifest_ref((ms_manifest *)m);
    g->routes = (ms_route_table *)cfg->routes;
    g->payloads = (ms_payload_set *)cfg->payloads;
    g->tls = cfg->tls;
    g->refs = (int)dp->nworkers + 1;
    size_t ns = m->nships ? m->nships : 1, nb = m->global.nbinds ? m->global.nbinds : 1;
    g->targets = calloc(ns, sizeof *g->targets);
    g->alt_targets = calloc(ns, sizeof *g->alt_targets);
    g->bind_id = calloc(nb, sizeof *g->bind_id);
    g->unix_fds = calloc(nb, sizeof *g->unix_fds);
    g->listen_fds = calloc(nb * dp->nworkers, sizeof *g->listen_fds);
    g->wg = calloc(dp->nworkers, sizeof *g->wg);
    if (g->unix_fds)
        for (size_t b = 0; b < nb; b++)
            g->unix_fds[b] = -1;
    if (g->listen_fds)
        for (size_t k = 0; k < nb * dp->nworkers; k++)
            g->listen_fds[k] = -1;
    if (cfg->procs) {
        g->procs = calloc(ns, sizeof *g->procs);
        if (g->procs)
            memcpy(g->procs, cfg->procs, m->nships * sizeof *g->procs);
    }
    uint32_t nslots_before = dp->nslots;
    if (!g->targets || !g->alt_targets || !g->bind_id || !g->unix_fds || !g->listen_fds || !g->wg || (cfg->procs && !g->procs) ||
        !gen_setup_slots(g)) {
        snprintf(why, why_len, "out of memory");
        goto fail;
    }
    for (size_t b = 0; b < m->global.nbinds; b++) {
        if ((g->bind_id[b] = bind_id_for(dp, m->global.binds[b].name)) == UINT32_MAX) {
            snprintf(why, why_len, "too many bind names over the data plane's life (at most %d)", MS_BIND_IDS);
            goto fail;
        }
    }
    for (size_t i = 0; i < m->nships; i++)
        if ((m->ships[i].has_bind && !ms_target_from_addr(&m->ships[i].bind, &g->targets[i], why, why_len)) ||
            (m->ships[i].has_bind_alt &&
             !ms_target_from_addr(&m->ships[i].bind_alt, &g->alt_targets[i], why, why_len)))
            goto fail;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        ms_wgen *wg = &g->wg[i];
        ms_worker *w = &dp->workers[i];
        wg->gen = g;
        wg->w = w;
        wg->m = g->m;
        wg->routes = g->routes;
        wg->payloads = g->payloads;
        wg->procs = g->procs;
        wg->targets = g->targets;
        wg->alt_targets = g->alt_targets;
        wg->nomatch_slot = g->nomatch_slot;
        wg->route_slot = g->route_slot;
        wg->static_slot = g->static_slot;
        wg->static_fd = g->static_fd;
        wg->bind_id = g->bind_id;
        wg->tls = g->tls;
        wg->pools = calloc(2 * ns, sizeof *wg->pools);
        wg->pool_len = calloc(2 * ns, sizeof *wg->pool_len);
        wg->rr = calloc(ns, sizeof *wg->rr);
        if (!wg->pools || !wg->pool_len || !wg->rr) {
            snprintf(why, why_len, "out of memory");
            goto fail;
        }
        if (g->payloads && ms_payload_count(g->payloads) > 0) {
            wg->pw = ms_payload_worker_new(g->payloads);
            if (!wg->pw) {
                snprintf(why, why_len, "cannot instantiate the payloads");
                goto fail;
            }
            ms_payload_worker_set_log(wg->pw, ms_worker_payload_log, w);
        }
        if (g->tls && (!w->tls_rbuf || !w->tls_hs)) {
            if (!w->tls_rbuf)
                w->tls_rbuf = malloc(MS_TLS_RBUF);
            if (!w->tls_hs)
                w->tls_hs = calloc((size_t)MS_BIND_IDS * MS_TLS_HS_COUNT, sizeof *w->tls_hs);
            if (!w->tls_rbuf || !w->tls_hs) {
                snprintf(why, why_len, "out of memory");
                goto fail;
            }
        }
    }
    return g;
fail:
    /* slots added for it are dropped (their counters are zero) */
    for (uint32_t s = nslots_before; s < dp->nslots; s++) {
        free((char *)dp->slots[s].bind);
        free((char *)dp->slots[s].route);
        free((char *)dp->slots[s].target);
    }
    dp->nslots = nslots_before;
    for (unsigned i = 0; i < dp->nworkers; i++) { /* instances of the caller's payloads */
        ms_payload_worker_free(g->wg ? g->wg[i].pw : NULL);
        if (g->wg)
            g->wg[i].pw = NULL;
    }
    gen_free_maps(g);
    g->routes = NULL;
    g->payloads = NULL;
    g->tls = NULL;
    gen_free(g);
    return NULL;
}

/* ---------------------------------------------------------------- payload log */
/* A guest's log lines go to Mothership's log, at most 20 a second per
 * worker, so a chatty or hostile payload cannot flood it. */
void ms_worker_payload_log(void *arg, const ms_module *mod, int level, const char *msg, size_t len)
{
    ms_worker *w = arg;
    uint64_t sec = ms_now_us() / 1000000u;
    if (sec != w->plog_second) {
        w->plog_second = sec;
        w->plog_count = 0;
    }
    if (++w->plog_count > 20 || !w->dp->cfg.log)
        return;
    ms_log_event(w->dp->cfg.log, level >= 2 ? MS_ERROR : level == 1 ? MS_WARN : MS_INFO, NULL, "payload_log",
                 "module \"%s\": %.*s", mod->name, (int)(len > 512 ? 512 : len), msg);
}

/* A 502 or 504 from the proxy is logged, at most MS_UPSTREAM_LOG_PER_S
 * lines a second per worker; the next line logged says how many were left
 * out. */
#define MS_UPSTREAM_LOG_PER_S 10

void ms_worker_upstream_log(ms_worker *w, const char *ship, const char *fmt, ...)
{
    if (!w->dp->cfg.log)
        return;
    uint64_t sec = ms_now_us() / 1000000u;
    if (sec != w->ulog_second) {
        w->ulog_second = sec;
        w->ulog_count = 0;
    }
    if (++w->ulog_count > MS_UPSTREAM_LOG_PER_S) {
        w->ulog_suppressed++;
        return;
    }
    if (w->ulog_suppressed) {
        ms_log_event(w->dp->cfg.log, MS_WARN, NULL, "upstream_error",
                     "%llu more upstream errors were not logged (at most %d lines a second per worker)",
                     (unsigned long long)w->ulog_suppressed, MS_UPSTREAM_LOG_PER_S);
        w->ulog_suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    ms_log_eventv(w->dp->cfg.log, MS_WARN, ship, "upstream_error", fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- per-worker loop */
static void refresh_date(ms_worker *w)
{
    char d[30];
    ms_http_date((int64_t)time(NULL), d);
    w->date_len = (size_t)snprintf(w->date, sizeof w->date, "Date: %s\r\n", d);
}

static void on_date_timer(uv_timer_t *t)
{
    refresh_date(t->data);
}

/* Connections one listener accepts in one turn of the worker's loop.
 * libuv accepts until the backlog is empty: a burst of new connections
 * (clients reconnecting after a restart, a flood of `Connection: close`
 * requests) would all be accepted, each with its TLS state, before the
 * ready requests of the connections already open are read, and their
 * latency would grow with the burst. Past this many, the listener waits
 * for the next turn, after the other ready events. (HAProxy's
 * tune.maxaccept is 64 too; nginx without multi_accept takes one.) */
#define MS_ACCEPT_BURST 64

/* The connection waiting on l is left with libuv, which stops watching l
 * until uv_accept: on_accept_turn takes it before the next poll. */
static void listener_hold(ms_listener *l)
{
    if (!l->held) {
        l->held = true;
        l->w->nlisteners_held++;
    }
}

static void on_connection(uv_stream_t *s, int status)
{
    ms_listener *l = s->data;
    ms_worker *w = l->w;
    if (status < 0)
        return;
    if (l->turn != w->turn) {
        l->turn = w->turn;
        l->burst = 0;
    }
    if (l->burst >= MS_ACCEPT_BURST) {
        listener_hold(l);
        return;
    }
    l->burst++;
    if (!ms_conn_accept(l))
        listener_hold(l); /* out of memory: tried again next turn, the listener is not left deaf */
}

/* Before each poll: a new turn; a listener whose burst was spent takes
 * the connection libuv kept for it, which makes libuv watch it again. */
static void on_accept_turn(uv_prepare_t *p)
{
    ms_worker *w = p->data;
    w->turn++;
    for (ms_listener *l = w->listeners; l && w->nlisteners_held > 0; l = l->next) {
        if (!l->held)
            continue;
        l->held = false;
        w->nlisteners_held--;
        l->turn = w->turn;
        l->burst = 1;
        if (!ms_conn_accept(l))
            listener_hold(l);
    }
}

static void on_worker_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

static void listener_close(ms_worker *w, ms_listener *l)
{
    for (ms_listener **pp = &w->listeners; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    l->open = false;
    if (l->held) { /* libuv closes the connection it kept */
        l->held = false;
        l->w->nlisteners_held--;
    }
    uv_close(&l->io.h, on_listener_closed);
}

static void listeners_close_all(ms_worker *w)
{
    while (w->listeners)
        listener_close(w, w->listeners);
}

/* A listener on fd (taken in every case) for bind b of the worker's
 * current generation; 0 or a libuv error. */
static int listener_open(ms_worker *w, uint32_t b, int fd)
{
    const ms_bind *bind = &w->cur->m->global.binds[b];
    ms_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return UV_ENOMEM;
    }
    l->w = w;
    l->bind_idx = b;
    l->is_unix = bind->addr.kind == MS_ADDR_UNIX;
    int rc = l->is_unix ? uv_pipe_init(&w->loop, &l->io.pipe, 0) : uv_tcp_init(&w->loop, &l->io.tcp);
    if (rc != 0) {
        close(fd);
        free(l);
        return rc;
    }
    l->io.h.data = l;
    l->open = true;
    l->next = w->listeners;
    w->listeners = l;
    rc = l->is_unix ? uv_pipe_open(&l->io.pipe, fd) : uv_tcp_open(&l->io.tcp, fd);
    if (rc != 0)
        close(fd);
    if (rc == 0)
        rc = uv_listen(&l->io.s, 1024, on_connection);
    if (rc != 0)
        listener_close(w, l);
    return rc;
}

/* The worker moves to generation ng (its thread, or before it runs):
 * listeners of binds that stay are kept, others close, new ones open;
 * connections of binds that left are drained; idle upstream connections
 * of the old generation close; the old one is given back once its last
 * request ends. false + why: a listener could not be opened. */
static bool worker_take(ms_worker *w, ms_wgen *ng, char *why, size_t why_len)
{
    ms_wgen *old = w->cur;
    ms_gen *g = ng->gen;
    assert(!ng->applied && ng->refs == 0);
    ng->applied = true;
    ng->refs = 1; /* current */
    ng->next = w->gens;
    w->gens = ng;
    for (ms_listener *l = w->listeners, *next; l; l = next) {
        next = l->next;
        int nb = old ? ms_wgen_bind_in(old, l->bind_idx, ng) : -1;
        if (nb >= 0)
            l->bind_idx = (uint32_t)nb;
        else
            listener_close(w, l);
    }
    w->cur = ng;
    w->max_conns = (g->m->global.http.max_connections + w->dp->nworkers - 1) / w->dp->nworkers;
    bool ok = true;
    size_t nb = g->m->global.nbinds;
    for (size_t b = 0; b < nb; b++) {
        int *fd = &g->listen_fds[(size_t)w->id * nb + b];
        if (*fd < 0)
            continue;
        int take = *fd;
        *fd = -1;
        if (w->stopping || w->draining) {
            close(take);
            continue;
        }
        int rc = listener_open(w, (uint32_t)b, take);
        if (rc != 0 && ok) {
            ok = false;
            snprintf(why, why_len, "bind \"%s\" (%s): %s", g->m->global.binds[b].name, g->m->global.binds[b].addr.text,
                     uv_strerror(rc));
        }
    }
    if (old) {
        for (ms_conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (ms_wgen_bind_in(c->g, c->bind_idx, ng) < 0)
                ms_conn_drain_start(c); /* its bind is gone: idle ones close, busy ones finish */
        }
        ms_h2_worker_reloaded(w);
        ms_pool_move(old, ng);
        ms_wgen_drop(old);
    }
    return ok;
}

static void on_gen_async(uv_async_t *a)
{
    ms_worker *w = a->data;
    ms_dataplane *dp = w->dp;
    for (;;) {
        uv_mutex_lock(&dp->gen_lock);
        ms_gen *n = w->cur->gen->newer;
        uv_mutex_unlock(&dp->gen_lock);
        if (!n)
            break;
        char why[256];
        if (!worker_take(w, &n->wg[w->id], why, sizeof why) && dp->cfg.log)
            ms_log_event(dp->cfg.log, MS_ERROR, NULL, "reload", "worker %u: %s", w->id + 1, why);
    }
    if (__atomic_load_n(&w->drain_requested, __ATOMIC_ACQUIRE) && !w->draining) {
        w->draining = true;
        listeners_close_all(w);
        for (ms_conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            ms_conn_drain_start(c);
        }
        ms_h2_worker_stop(w);
        ms_pool_close_all(w);
    }
}

void ms_worker_maybe_done(ms_worker *w)
{
    if (!w->stopping || w->closed || w->nconns > 0 || w->nups > 0 || w->nh2conns > 0)
        return;
    w->closed = true;
    ms_ws_worker_close(w);
    uv_close((uv_handle_t *)&w->stop_async, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->gen_async, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->hold_timer, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->date_timer, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->accept_turn, on_worker_handle_closed);
}

/* What the last answers of a drain may take to leave before their
 * connections are closed regardless. */
#define MS_DRAIN_LAST_WRITES_MS 500

static void on_drain_last_writes(uv_timer_t *t)
{
    ms_worker *w = t->data;
    for (ms_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        ms_conn_close(c);
    }
    ms_h2_worker_close_all(w);
    ms_pool_close_all(w);
}

/* The drain's time is up: requests not yet answered get a 503, responses
 * under way are cut, WebSockets tunnelled to ships get a 1001 close frame
 * (ms_conn_drain_end). */
static void on_drain_timeout(uv_timer_t *t)
{
    ms_worker *w = t->data;
    for (ms_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        ms_conn_drain_end(c);
    }
    ms_pool_close_all(w);
    if (w->nconns > 0 || w->nh2conns > 0)
        uv_timer_start(&w->drain_timer, on_drain_last_writes, MS_DRAIN_LAST_WRITES_MS, 0);
}

static void on_stop(uv_async_t *a)
{
    ms_worker *w = a->data;
    if (w->stopping)
        return;
    w->stopping = true;
    listeners_close_all(w);
    /* idle keep-alive connections go now; busy ones finish their request */
    for (ms_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        ms_conn_drain_start(c); /* a WebSocket of a bay: 1001, then the close handshake */
    }
    ms_h2_worker_stop(w); /* GOAWAY: streams under way finish */
    ms_pool_close_all(w);
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->drain_ms ? w->drain_ms : 1, 0);
    ms_worker_maybe_done(w);
}

static void worker_main(void *arg)
{
    ms_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    /* not open when the start failed: that thread is joined at once */
    if (__atomic_load_n(&w->dp->done_async_open, __ATOMIC_ACQUIRE))
        uv_async_send(&w->dp->done_async);
}

/* A start that fails after some worker threads run: stop them (they have
 * no connections yet) and join them; their loops end with every handle
 * closed. */
static void stop_started_workers(ms_dataplane *dp)
{
    for (unsigned i = 0; i < dp->nworkers; i++) {
        ms_worker *w = &dp->workers[i];
        if (!w->thread_started)
            continue;
        w->drain_ms = 1;
        uv_async_send(&w->stop_async);
        uv_thread_join(&w->thread);
        w->thread_started = false;
        assert(w->closed);
    }
}

/* ---------------------------------------------------------------- listeners */
static int tcp_listen_socket(const ms_addr *a, char *why, size_t why_len)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1" : strcmp(a->host, "*") == 0 ? "0.0.0.0" : a->host;
    if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&ss) == 0)
        sl = sizeof(struct sockaddr_in);
    else if (uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&ss) == 0)
        sl = sizeof(struct sockaddr_in6);
    else {
        snprintf(why, why_len, "%s is not an IP address", a->host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_len, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0) {
        snprintf(why, why_len, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int unix_listen_socket(const char *path, char *why, size_t why_len)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(why, why_len, "socket path too long");
        return -1;
    }
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(why, why_len, "%s exists and is not a socket", path);
            return -1;
        }
        unlink(path); /* a stale socket from an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_len, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, 1024) != 0) {
        snprintf(why, why_len, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---------------------------------------------------------------- start */
static void on_all_done(uv_async_t *a);

unsigned ms_dataplane_worker_count(const ms_dp_config *cfg)
{
    if (cfg->inline_worker)
        return 1;
    if (cfg->workers)
        return cfg->workers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

/* The Unix bind of g listening at path, or -1. */
static int unix_bind_at(const ms_gen *g, const char *path)
{
    for (size_t b = 0; b < g->m->global.nbinds; b++)
        if (g->unix_fds[b] >= 0 && g->m->global.binds[b].addr.kind == MS_ADDR_UNIX &&
            strcmp(g->m->global.binds[b].addr.path, path) == 0)
            return (int)b;
    return -1;
}

/* The listening sockets generation g needs that older (NULL: none) does
 * not have: opened here, on the control loop, so that a bind that cannot
 * be opened fails the start or reload before anything changes. */
static bool gen_open_sockets(ms_dataplane *dp, ms_gen *g, const ms_gen *older, char *why, size_t why_len)
{
    const ms_manifest *m = g->m;
    size_t nb = m->global.nbinds;
    for (size_t b = 0; b < nb && !dp->cfg.inline_worker && !dp->draining; b++) {
        const ms_bind *bind = &m->global.binds[b];
        if (older && bind_find(older->m, bind) >= 0)
            continue; /* its listeners stay */
        char err[200] = "";
        int same_path = older && bind->addr.kind == MS_ADDR_UNIX ? unix_bind_at(older, bind->addr.path) : -1;
        if (same_path >= 0) {
            /* a bind renamed or changed at the same path: its listening
             * socket is taken over, so that the path never refuses
             * connections and a refused reload leaves it alone */
            g->unix_fds[b] = fcntl(older->unix_fds[same_path], F_DUPFD_CLOEXEC, 0);
            if (g->unix_fds[b] < 0)
                snprintf(err, sizeof err, "%s", strerror(errno));
            for (unsigned i = 0; g->unix_fds[b] >= 0 && i < dp->nworkers && !err[0]; i++)
                if ((g->listen_fds[i * nb + b] = fcntl(g->unix_fds[b], F_DUPFD_CLOEXEC, 0)) < 0)
                    snprintf(err, sizeof err, "%s", strerror(errno));
        } else if (bind->addr.kind == MS_ADDR_UNIX) {
            g->unix_fds[b] = unix_listen_socket(bind->addr.path, err, sizeof err);
            for (unsigned i = 0; g->unix_fds[b] >= 0 && i < dp->nworkers && !err[0]; i++)
                if ((g->listen_fds[i * nb + b] = fcntl(g->unix_fds[b], F_DUPFD_CLOEXEC, 0)) < 0)
                    snprintf(err, sizeof err, "%s", strerror(errno));
        } else {
            for (unsigned i = 0; i < dp->nworkers && !err[0]; i++)
                g->listen_fds[i * nb + b] = tcp_listen_socket(&bind->addr, err, sizeof err);
        }
        if (err[0]) {
            snprintf(why, why_len, "bind \"%s\" (%s): %s", bind->name, bind->addr.text, err);
            return false;
        }
    }
    return true;
}

/* g replaces older: Unix sockets of binds that stay move to g; those of
 * binds that left are closed, and their file removed unless g listens
 * there too. */
static void gen_move_unix(ms_gen *older, ms_gen *g)
{
    const ms_manifest *om = older->m, *m = g->m;
    for (size_t b = 0; b < m->global.nbinds; b++) {
        int ob = bind_find(om, &m->global.binds[b]);
        if (ob >= 0 && older->unix_fds[ob] >= 0) {
            g->unix_fds[b] = older->unix_fds[ob];
            older->unix_fds[ob] = -1;
        }
    }
    for (size_t ob = 0; ob < om->global.nbinds; ob++) {
        if (older->unix_fds[ob] < 0)
            continue;
        close(older->unix_fds[ob]);
        older->unix_fds[ob] = -1;
        bool reused = false;
        for (size_t b = 0; b < m->global.nbinds; b++)
            reused |= m->global.binds[b].addr.kind == MS_ADDR_UNIX &&
                      strcmp(m->global.binds[b].addr.path, om->global.binds[ob].addr.path) == 0;
        if (!reused)
            unlink(om->global.binds[ob].addr.path);
    }
}

/* A generation that is not published gives the caller's objects back. */
static void gen_discard(ms_gen *g)
{
    for (unsigned i = 0; i < g->dp->nworkers; i++) {
        ms_payload_worker_free(g->wg[i].pw);
        g->wg[i].pw = NULL;
    }
    gen_free_maps(g);
    g->routes = NULL;
    g->payloads = NULL;
    g->tls = NULL;
    gen_free(g);
}

static bool payload_sums_fit(ms_dataplane *dp, size_t n)
{
    if (n <= dp->npayload_sums && dp->payload_sums)
        return true;
    ms_payload_stats *p = realloc(dp->payload_sums, (n ? n : 1) * sizeof *p);
    if (!p)
        return false;
    dp->payload_sums = p;
    dp->npayload_sums = n;
    return true;
}

/* Some bind has an access log: the writer runs (it starts with the first). */
static bool any_access_log(const ms_manifest *m)
{
    for (size_t i = 0; i < m->global.nbinds; i++)
        if (m->global.binds[i].access_log > MS_ACCESS_LOG_OFF)
            return true;
    return false;
}

ms_dataplane *ms_dataplane_start(uv_loop_t *control, const ms_dp_config *cfg, char *why, size_t why_len)
{
    ms_dataplane *dp = calloc(1, sizeof *dp);
    if (!dp) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    dp->control = control;
    dp->cfg = *cfg;
    dp->cfg.m = NULL; /* in the generations from here on */
    dp->cfg.routes = NULL;
    dp->cfg.payloads = NULL;
    dp->cfg.tls = NULL;
    dp->cfg.procs = NULL;
    unsigned nw = ms_dataplane_worker_count(cfg);
    if (cfg->hub && cfg->hub->nworkers != nw) {
        snprintf(why, why_len, "internal error: the docking hub has %u workers, the data plane %u",
                 cfg->hub->nworkers, nw);
        free(dp);
        return NULL;
    }
    dp->nworkers = nw;
    dp->workers = calloc(nw, sizeof *dp->workers);
    if (!dp->workers || uv_mutex_init(&dp->gen_lock) != 0) {
        snprintf(why, why_len, "out of memory");
        goto fail_early;
    }
    dp->gen_lock_init = true;
    uint8_t seed[8] = { 0 };
    if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        memcpy(seed, &(uint64_t){ ms_now_us() }, sizeof seed);
    for (unsigned i = 0; i < nw; i++) {
        ms_worker *w = &dp->workers[i];
        w->dp = dp;
        w->id = i;
        w->tmpdir = getenv("TMPDIR"); /* read here, on the main thread, once */
        memcpy(&w->rng, seed, sizeof w->rng);
        w->rng ^= (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL;
        if (!w->rng)
            w->rng = 1;
        w->match_data = ms_pattern_match_data_new();
        w->phdrs = calloc(MS_MAX_HEADERS, sizeof *w->phdrs);
        ms_payload_result_init(&w->pres);
        if (!w->match_data || !w->phdrs) {
            snprintf(why, why_len, "out of memory");
            goto fail_early;
        }
    }
    if (!cfg->inline_worker) {
        dp->alog = ms_alog_new(nw, cfg->m->global.access_log_path, cfg->log, any_access_log(cfg->m), why, why_len);
        if (!dp->alog)
            goto fail_early;
        for (unsigned i = 0; i < nw; i++)
            dp->workers[i].alog = ms_alog_ring_at(dp->alog, i);
    }
    ms_gen *g = gen_new(dp, cfg, why, why_len);
    if (!g)
        goto fail_early;
    dp->gen = dp->gens = g;
    if (!gen_open_sockets(dp, g, NULL, why, why_len) || !payload_sums_fit(dp, cfg->m->nmodules)) {
        if (!why[0])
            snprintf(why, why_len, "out of memory");
        goto fail_early;
    }
    for (unsigned i = 0; i < nw; i++) {
        ms_worker *w = &dp->workers[i];
        if (uv_loop_init(&w->loop) != 0) {
            snprintf(why, why_len, "out of memory");
            goto fail_started; /* earlier loops have handles to close */
        }
        w->loop_open = true;
        uv_async_init(&w->loop, &w->stop_async, on_stop);
        w->stop_async.data = w;
        uv_async_init(&w->loop, &w->gen_async, on_gen_async);
        w->gen_async.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_timer_init(&w->loop, &w->hold_timer);
        w->hold_timer.data = w;
        uv_timer_init(&w->loop, &w->date_timer);
        w->date_timer.data = w;
        refresh_date(w);
        uv_timer_start(&w->date_timer, on_date_timer, 1000, 1000);
        uv_prepare_init(&w->loop, &w->accept_turn);
        w->accept_turn.data = w;
        uv_prepare_start(&w->accept_turn, on_accept_turn);
        w->hub = cfg->hub;
        w->board = cfg->board;
        if (!ms_ws_worker_init(w)) {
            snprintf(why, why_len, "out of memory");
            goto fail_started;
        }
        if (!worker_take(w, &g->wg[i], why, why_len))
            goto fail_started;
    }
    if (g->tls)
        ms_tls_server_set_h2(g->tls, true); /* h2.c serves the streams of ALPN h2 */
    if (cfg->inline_worker)
        return dp;
    for (unsigned i = 0; i < nw; i++) {
        int rc = uv_thread_create(&dp->workers[i].thread, worker_main, &dp->workers[i]);
        if (rc != 0) {
            snprintf(why, why_len, "cannot start worker thread %u of %u: %s", i + 1, nw, uv_strerror(rc));
            stop_started_workers(dp);
            goto fail_started;
        }
        dp->workers[i].thread_started = true;
    }
    /* opened once every thread runs, so that a failed start leaves nothing
     * on the control loop; no worker ends before ms_dataplane_stop, and
     * none gives a generation back before the first reload */
    int rc = uv_async_init(control, &dp->done_async, on_all_done);
    if (rc == 0) {
        rc = uv_async_init(control, &dp->reap_async, on_reap);
        if (rc != 0)
            uv_close((uv_handle_t *)&dp->done_async, NULL);
    }
    if (rc != 0) {
        snprintf(why, why_len, "cannot start the data plane: %s", uv_strerror(rc));
        stop_started_workers(dp);
        goto fail_started;
    }
    dp->done_async.data = dp;
    dp->reap_async.data = dp;
    __atomic_store_n(&dp->reap_async_open, true, __ATOMIC_RELEASE);
    __atomic_store_n(&dp->done_async_open, true, __ATOMIC_RELEASE);
    return dp;
fail_started:
    /* loops that never ran: close their handles by running them once
     * (those of stopped threads are closed already) */
    for (unsigned i = 0; i < nw; i++) {
        ms_worker *w = &dp->workers[i];
        if (!w->loop_open || w->closed)
            continue;
        w->stopping = true;
        listeners_close_all(w);
        ms_ws_worker_close(w);
        uv_close((uv_handle_t *)&w->stop_async, NULL);
        uv_close((uv_handle_t *)&w->gen_async, NULL);
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
        uv_close((uv_handle_t *)&w->hold_timer, NULL);
        uv_close((uv_handle_t *)&w->date_timer, NULL);
        uv_close((uv_handle_t *)&w->accept_turn, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
fail_early:
    if (dp->gen) { /* the caller's routes, payloads and TLS stay the caller's */
        dp->gens = NULL;
        gen_discard(dp->gen);
        dp->gen = NULL;
    }
    ms_dataplane_free(dp);
    return NULL;
}

/* ---------------------------------------------------------------- stop */
static void on_done_async_closed(uv_handle_t *h)
{
    ms_dataplane *dp = h->data;
    if (dp->done)
        dp->done(dp->done_arg);
}

static void drain_finish(ms_dataplane *dp)
{
    if (!dp->drain_poll_open)
        return;
    dp->drain_poll_open = false;
    uv_close((uv_handle_t *)&dp->drain_poll, NULL);
    if (dp->drain_done)
        dp->drain_done(dp->drain_arg);
}

static void on_all_done(uv_async_t *a)
{
    ms_dataplane *dp = a->data;
    /* coalesced sends: count the threads that have really finished */
    unsigned finished = 0;
    for (unsigned i = 0; i < dp->nworkers; i++)
        if (__atomic_load_n(&dp->workers[i].finished, __ATOMIC_ACQUIRE))
            finished++;
    if (finished < dp->nworkers || !dp->stop_requested)
        return;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        if (dp->workers[i].thread_started) {
            uv_thread_join(&dp->workers[i].thread);
            dp->workers[i].thread_started = false;
        }
    }
    __atomic_store_n(&dp->done_async_open, false, __ATOMIC_RELAXED); /* every worker is joined */
    __atomic_store_n(&dp->reap_async_open, false, __ATOMIC_RELAXED);
    drain_finish(dp);
    uv_close((uv_handle_t *)&dp->reap_async, NULL);
    uv_close((uv_handle_t *)&dp->done_async, on_done_async_closed); /* last: its callback may free dp */
}

void ms_dataplane_stop(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg)
{
    dp->done = done;
    dp->done_arg = arg;
    dp->stop_requested = true;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        dp->workers[i].drain_ms = drain_ms;
        uv_async_send(&dp->workers[i].stop_async);
    }
    if (dp->nworkers == 0)
        uv_async_send(&dp->done_async);
}

void ms_dataplane_free(ms_dataplane *dp)
{
    if (!dp)
        return;
    for (unsigned i = 0; dp->workers && i < dp->nworkers; i++) {
        ms_worker *w = &dp->workers[i];
        if (w->loop_open)
            uv_loop_close(&w->loop);
    }
    while (dp->gens) { /* every worker is done with them */
        ms_gen *g = dp->gens;
        dp->gens = g->next;
        gen_free(g);
    }
    for (unsigned i = 0; dp->workers && i < dp->nworkers; i++) {
        ms_worker *w = &dp->workers[i];
        for (size_t k = 0; k < MS_SLOT_CHUNKS; k++)
            free(w->slot_chunk[k]);
        ms_pattern_match_data_free(w->match_data);
        ms_payload_result_free(&w->pres);
        free(w->phdrs);
        ms_ws_worker_free(w);
        ms_spares_free(&w->spare_in);
        ms_spares_free(&w->spare_out);
        free(w->gather.buf);
        ms_compress_cache_free(&w->ccache);
        free(w->tls_rbuf);
        free(w->tls_hs);
    }
    ms_alog_free(dp->alog); /* the workers have stopped: what their rings hold is written now */
    free(dp->workers);
    for (uint32_t s = 0; s < dp->nslots; s++) {
        free((char *)dp->slots[s].bind);
        free((char *)dp->slots[s].route);
        free((char *)dp->slots[s].target);
    }
    free(dp->slots);
    for (uint32_t i = 0; i < dp->nbind_names; i++)
        free(dp->bind_names[i]);
    if (dp->gen_lock_init)
        uv_mutex_destroy(&dp->gen_lock);
    free(dp->payload_sums);
    for (size_t k = 0; k < dp->nmodule_past; k++)
        free(dp->module_past[k].name);
    free(dp->module_past);
    free(dp);
}

/* ---------------------------------------------------------------- reload, drain */
bool ms_dataplane_reopen_access_log(ms_dataplane *dp, const char *path, char *why, size_t why_len)
{
    return !dp->alog || ms_alog_reopen(dp->alog, path, why, why_len);
}

/* A reload that failed after the access log's file was opened again: back
 * to the running configuration's file (best effort: it was open a moment ago). */
static void access_log_back(ms_dataplane *dp, const ms_gen *running)
{
    char ignored[256];
    if (dp->alog)
        ms_alog_reopen(dp->alog, running->m->global.access_log_path, ignored, sizeof ignored);
}

bool ms_dataplane_reload(ms_dataplane *dp, const ms_dp_config *cfg, char *why, size_t why_len)
{
    if (dp->stop_requested) {
        snprintf(why, why_len, "the data plane is stopping");
        return false;
    }
    if (cfg->hub && cfg->hub != dp->cfg.hub) {
        snprintf(why, why_len, "internal error: the docking hub cannot change while the data plane runs");
        return false;
    }
    why[0] = '\0';
    /* the access log's file, opened again (rotated, or another path) */
    if (dp->alog && (!ms_alog_reopen(dp->alog, cfg->m->global.access_log_path, why, why_len) ||
                     (any_access_log(cfg->m) && !ms_alog_start(dp->alog, why, why_len))))
        return false;
    ms_gen *older = dp->gen;
    ms_gen *g = gen_new(dp, cfg, why, why_len);
    if (!g) {
        access_log_back(dp, older);
        return false;
    }
    if (!gen_open_sockets(dp, g, older, why, why_len) || !payload_sums_fit(dp, cfg->m->nmodules)) {
        if (!why[0])
            snprintf(why, why_len, "out of memory");
        access_log_back(dp, older);
        for (size_t b = 0; b < g->m->global.nbinds; b++) {
            if (g->unix_fds[b] >= 0 && unix_bind_at(older, g->m->global.binds[b].addr.path) >= 0) {
                close(g->unix_fds[b]); /* older's socket: its file stays */
                g->unix_fds[b] = -1;
            }
        }
        gen_discard(g);
        return false;
    }
    /* nothing fails from here on */
    gen_move_unix(older, g);
    if (g->tls)
        ms_tls_server_set_h2(g->tls, true);
    g->next = dp->gens;
    dp->gens = g;
    uv_mutex_lock(&dp->gen_lock);
    older->newer = g;
    uv_mutex_unlock(&dp->gen_lock);
    dp->gen = g;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        if (dp->cfg.inline_worker)
            on_gen_async(&dp->workers[i].gen_async); /* the caller's thread is the worker's */
        else
            uv_async_send(&dp->workers[i].gen_async);
    }
    gen_release(older); /* no longer the newest */
    reap(dp);
    return true;
}

static void on_drain_poll(uv_timer_t *t)
{
    ms_dataplane *dp = t->data;
    uint64_t open = 0;
    for (unsigned i = 0; i < dp->nworkers; i++)
        open += __atomic_load_n(&dp->workers[i].open_conns, __ATOMIC_RELAXED);
    if (open == 0 || ms_now_us() >= dp->drain_deadline_us)
        drain_finish(dp);
}

void ms_dataplane_drain(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg)
{
    if (dp->draining || dp->stop_requested) {
        done(arg); /* already draining or stopping: nothing more to wait for here */
        return;
    }
    dp->draining = true;
    ms_gen *g = dp->gen;
    for (size_t b = 0; b < g->m->global.nbinds; b++) {
        if (g->unix_fds[b] >= 0) { /* the workers' copies close: this one would still take connections */
            close(g->unix_fds[b]);
            g->unix_fds[b] = -1;
            unlink(g->m->global.binds[b].addr.path);
        }
    }
    for (unsigned i = 0; i < dp->nworkers; i++) {
        __atomic_store_n(&dp->workers[i].drain_requested, 1, __ATOMIC_RELEASE);
        if (dp->cfg.inline_worker)
            on_gen_async(&dp->workers[i].gen_async);
        else
            uv_async_send(&dp->workers[i].gen_async);
    }
    if (dp->cfg.inline_worker || !dp->control) {
        done(arg);
        return;
    }
    dp->drain_done = done;
    dp->drain_arg = arg;
    dp->drain_deadline_us = ms_now_us() + drain_ms * 1000;
    uv_timer_init(dp->control, &dp->drain_poll);
    dp->drain_poll.data = dp;
    dp->drain_poll_open = true;
    uv_timer_start(&dp->drain_poll, on_drain_poll, 20, 20);
}

/* ---------------------------------------------------------------- metrics */
static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

uint64_t ms_dataplane_requests_to(const ms_dataplane *dp, const char *target)
{
    uint64_t total = 0;
    for (uint32_t s = 0; s < dp->nslots; s++) {
        if (strcmp(dp->slots[s].target, target) != 0)
            continue;
        for (unsigned i = 0; i < dp->nworkers; i++)
            for (int k = 1; k <= 5; k++)
                total += ld(&ms_worker_slot(&dp->workers[i], s)->by_class[k]);
    }
    return total;
}

uint64_t ms_dataplane_requests_total(const ms_dataplane *dp)
{
    uint64_t total = 0;
    for (uint32_t s = 0; s < dp->nslots; s++)
        for (unsigned i = 0; i < dp->nworkers; i++)
            for (int k = 1; k <= 5; k++)
                total += ld(&ms_worker_slot(&dp->workers[i], s)->by_class[k]);
    return total;
}

/* A slot whose requests go to a ship or bay (not a static dir, not "no match"). */
static bool proxied(const ms_slot_info *si)
{
    return strcmp(si->target, "static") != 0 && strcmp(si->target, "none") != 0;
}

/* "web" for a slot's target "web#0": counters of a ship's instances are
 * the ship's. */
static size_t base_len(const char *target)
{
    const char *h = strchr(target, '#');
    return h ? (size_t)(h - target) : strlen(target);
}

/* One series per ship process and instance (a surge replacement's counted
 * with the instance it replaces): its ejections, or its requests in flight. */
static void render_per_instance(const ms_gen *g, ms_prom *p, bool in_flight)
{
    for (size_t s = 0; g->procs && s < g->m->nships; s++) {
        const ms_ship *sh = &g->m->ships[s];
        const ms_proc *pr = g->procs[s];
        if (sh->kind != MS_SHIP || !sh->has_bind || !pr)
            continue;
        const ms_proc *twin = __atomic_load_n(&pr->twin, __ATOMIC_ACQUIRE);
        char inst[16];
        snprintf(inst, sizeof inst, "%u", sh->instance);
        ms_prom_label l[] = { { "ship", ms_ship_base(sh) }, { "instance", inst } };
        if (in_flight) {
            int64_t fl = __atomic_load_n(&pr->inflight, __ATOMIC_RELAXED) +
                         (twin ? __atomic_load_n(&twin->inflight, __ATOMIC_RELAXED) : 0);
            ms_prom_gauge_i64(p, "mothership_upstream_in_flight",
                              "Requests (and tunnels) the data plane has on a ship's process now.", l, 2, fl);
        } else {
            uint64_t ej = ld(&pr->ejections) + (twin ? ld(&twin->ejections) : 0);
            ms_prom_counter_u64(p, "mothership_upstream_ejections_total",
                                "Times a ship's process was taken out of balancing for eject_cooldown after it "
                                "refused, reset or timed out (passive health).",
                                l, 2, ej);
        }
    }
}

/* Balancing over instances: retries on another instance (by ship with a
 * bind, summed over the routing slots of its routes),
 * passive health ejections and requests in flight (by ship and instance,
 * a surge replacement's counted with the instance it replaces), held
 * requests. */
static void render_balancing(const ms_dataplane *dp, ms_prom *p)
{
    const ms_gen *g = dp->gen;
    for (size_t s = 0; s < g->m->nships; s++) {
        const ms_ship *sh = &g->m->ships[s];
        if (sh->kind != MS_SHIP || !sh->has_bind || sh->instance != 0)
            continue; /* one series per ship, its routes live on instance 0 */
        const char *name = ms_ship_base(sh);
        size_t nl = strlen(name);
        uint64_t v = 0;
        for (uint32_t e = 0; e < dp->nslots; e++) {
            const ms_slot_info *se = &dp->slots[e];
            if (!proxied(se) || base_len(se->target) != nl || strncmp(se->target, name, nl) != 0)
                continue;
            for (unsigned i = 0; i < dp->nworkers; i++)
                v += ld(&ms_worker_slot(&dp->workers[i], e)->retries);
        }
        ms_prom_label l[] = { { "ship", name } };
        ms_prom_counter_u64(p, "mothership_upstream_retries_total",
                            "Requests sent again to another instance of the ship after one failed before "
                            "answering (idempotent, no body sent).",
                            l, 1, v);
    }
    render_per_instance(g, p, false);
    render_per_instance(g, p, true);
    uint64_t held = 0, expired = 0;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        held += ld(&dp->workers[i].up_held);
        expired += ld(&dp->workers[i].up_held_timeouts);
    }
    ms_prom_counter_u64(p, "mothership_requests_held_total",
                        "Requests that waited for a ship restarting in place instead of a 503.", NULL, 0, held);
    ms_prom_counter_u64(p, "mothership_requests_held_expired_total",
                        "Of mothership_requests_held_total: still waiting at the ship's "
                        "drain_timeout + ready_timeout (503).",
                        NULL, 0, expired);
}

void ms_dataplane_render_metrics(const ms_dataplane *dp, ms_buf *out)
{
    ms_prom p;
    ms_prom_init(&p, out);
    static const char *const classes[] = { "", "1xx", "2xx", "3xx", "4xx", "5xx" };
    static const char *const protos[] = { "http1", "h2" };
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        for (int k = 0; k < 2; k++) {
            uint64_t total = 0;
            for (unsigned i = 0; i < dp->nworkers; i++)
                total += ld(&ms_worker_slot(&dp->workers[i], s)->by_proto[k]);
            ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target },
                                  { "proto", protos[k] } };
            ms_prom_counter_u64(&p, "mothership_requests_total", "Requests answered, by bind, route and protocol.",
                                l, 4, total);
        }
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        for (int k = 1; k <= 5; k++) {
            uint64_t v = 0;
            for (unsigned i = 0; i < dp->nworkers; i++)
                v += ld(&ms_worker_slot(&dp->workers[i], s)->by_class[k]);
            ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target },
                                  { "code", classes[k] } };
            ms_prom_counter_u64(&p, "mothership_responses_total", "Responses by status class.", l, 4, v);
        }
    }
    const double *bounds = ms_bucket_bounds();
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        uint64_t counts[MS_NBUCKETS + 1] = { 0 };
        uint64_t sum_us = 0;
        for (unsigned i = 0; i < dp->nworkers; i++) {
            for (int k = 0; k <= MS_NBUCKETS; k++)
                counts[k] += ld(&ms_worker_slot(&dp->workers[i], s)->buckets[k]);
            sum_us += ld(&ms_worker_slot(&dp->workers[i], s)->duration_us_sum);
        }
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_histogram(&p, "mothership_request_duration_seconds",
                          "Time from the request's first byte to the response head being sent.", l, 3, bounds,
                          counts, MS_NBUCKETS, (double)sum_us / 1e6);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        uint64_t v = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            v += ld(&ms_worker_slot(&dp->workers[i], s)->bytes_in);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_u64(&p, "mothership_request_bytes_total", "Bytes received from clients.", l, 3, v);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        uint64_t v = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            v += ld(&ms_worker_slot(&dp->workers[i], s)->bytes_out);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_u64(&p, "mothership_response_bytes_total", "Bytes sent to clients.", l, 3, v);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        if (!proxied(si))
            continue;
        for (int k = 1; k <= 5; k++) {
            uint64_t v = 0;
            for (unsigned i = 0; i < dp->nworkers; i++)
                v += ld(&ms_worker_slot(&dp->workers[i], s)->abandoned[k]);
            ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target },
                                  { "code", classes[k] } };
            ms_prom_counter_u64(&p, "mothership_responses_abandoned_total",
                                "Of mothership_responses_total: proxied responses whose connection closed before "
                                "their last byte (the client went away, or a stop cut them).",
                                l, 4, v);
        }
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        if (!proxied(si))
            continue;
        uint64_t up = 0, down = 0;
        for (unsigned i = 0; i < dp->nworkers; i++) {
            up += ld(&ms_worker_slot(&dp->workers[i], s)->tunnel_bytes_up);
            down += ld(&ms_worker_slot(&dp->workers[i], s)->tunnel_bytes_down);
        }
        static const char *const help = "Bytes through tunnels to ships after a 101 (WebSocket), counted when "
                                        "a tunnel ends.";
        ms_prom_label lu[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target },
                               { "direction", "client_to_ship" } };
        ms_prom_counter_u64(&p, "mothership_tunnel_bytes_total", help, lu, 4, up);
        ms_prom_label ld_[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target },
                                { "direction", "ship_to_client" } };
        ms_prom_counter_u64(&p, "mothership_tunnel_bytes_total", help, ld_, 4, down);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        if (!proxied(si))
            continue;
        uint64_t v = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            v += ld(&ms_worker_slot(&dp->workers[i], s)->tunnels_closed);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_u64(&p, "mothership_tunnels_closed_total", "Tunnels to ships after a 101 that have ended.", l,
                            3, v);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        if (!proxied(si))
            continue;
        uint64_t us = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            us += ld(&ms_worker_slot(&dp->workers[i], s)->tunnel_us_sum);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_double(&p, "mothership_tunnel_seconds_total",
                               "Time the ended tunnels to ships were open, from the 101 to the close.", l, 3,
                               (double)us / 1e6);
    }
    if (dp->alog) {
        ms_prom_counter_u64(&p, "mothership_access_log_lines_total",
                            "Access log lines written (or handed to Mothership's own output).", NULL, 0,
                            ms_alog_lines(dp->alog));
        ms_prom_counter_u64(&p, "mothership_access_log_dropped_total",
                            "Access log lines dropped: the writer could not keep up, or the output failed.", NULL, 0,
                            ms_alog_dropped(dp->alog));
    }
    static const char *const kinds[] = { "refused", "connect_timeout", "reset", "timeout", "bad_response",
                                         "unavailable" };
    for (int k = 0; k < MS_UPERR_COUNT; k++) {
        uint64_t v = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            v += ld(&dp->workers[i].up_errors[k]);
        ms_prom_label l[] = { { "kind", kinds[k] } };
        ms_prom_counter_u64(&p, "mothership_upstream_errors_total",
                            "Requests that failed upstream, by kind (unavailable: breaker open or ship not ready).", l,
                            1, v);
    }
    render_balancing(dp, &p);
    const ms_payload_set *ps = dp->gen->payloads;
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_dataplane_module_stats(dp, i, &dp->payload_sums[i]);
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_u64(&p, "mothership_payload_calls_total", "Calls of each WASM payload.", l, 1,
                            dp->payload_sums[i].calls);
    }
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_u64(&p, "mothership_payload_blocks_total", "Requests a payload answered itself.", l, 1,
                            dp->payload_sums[i].blocks);
    }
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_u64(&p, "mothership_payload_rewrites_total", "Path rewrites and header edits by a payload.", l,
                            1, dp->payload_sums[i].rewrites + dp->payload_sums[i].header_edits);
    }
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_u64(&p, "mothership_payload_traps_total", "Calls that trapped or misused the ABI.", l, 1,
                            dp->payload_sums[i].traps + dp->payload_sums[i].abi_errors);
    }
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_u64(&p, "mothership_payload_exhaustions_total",
                            "Calls stopped by a limit (fuel, deadline, memory, stack).", l, 1,
                            dp->payload_sums[i].exhaustions);
    }
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        ms_prom_label l[] = { { "module", ms_payload_module(ps, i)->name } };
        ms_prom_counter_double(&p, "mothership_payload_seconds_total", "Time spent in each payload.", l, 1,
                               (double)dp->payload_sums[i].time_us / 1e6);
    }
    uint64_t open = 0, acc = 0, rej = 0;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        open += ld(&dp->workers[i].open_conns);
        acc += ld(&dp->workers[i].accepted);
        rej += ld(&dp->workers[i].rejected);
    }
    uint64_t buffered = 0, spilled = 0, spilled_bytes = 0;
    for (unsigned i = 0; i < dp->nworkers; i++) {
        buffered += ld(&dp->workers[i].bodies_buffered);
        spilled += ld(&dp->workers[i].bodies_spilled);
        spilled_bytes += ld(&dp->workers[i].bytes_spilled);
    }
    ms_prom_counter_u64(&p, "mothership_request_bodies_buffered_total",
                        "Request bodies read whole before a ship connection was claimed.", NULL, 0, buffered);
    ms_prom_counter_u64(&p, "mothership_request_bodies_spilled_total",
                        "Buffered request bodies larger than request_buffer_size, held in a temporary file.", NULL, 0,
                        spilled);
    ms_prom_counter_u64(&p, "mothership_request_body_spilled_bytes_total",
                        "Bytes of request bodies held in temporary files.", NULL, 0, spilled_bytes);
    static const char *const hs_results[MS_TLS_HS_COUNT] = { [MS_TLS_HS_OK] = "ok", [MS_TLS_HS_FAILED] = "failed",
                                                             [MS_TLS_HS_RESUMED] = "resumed" };
    const ms_manifest *m = dp->gen->m;
    for (size_t b = 0; b < m->global.nbinds; b++) {
        if (!m->global.binds[b].tls || !dp->workers[0].tls_hs)
            continue;
        size_t id = dp->gen->bind_id[b];
        for (int r = 0; r < MS_TLS_HS_COUNT; r++) {
            uint64_t n = 0;
            for (unsigned i = 0; i < dp->nworkers; i++)
                n += ld(&dp->workers[i].tls_hs[id * MS_TLS_HS_COUNT + (size_t)r]);
            ms_prom_label l[] = { { "bind", m->global.binds[b].name }, { "result", hs_results[r] } };
            ms_prom_counter_u64(&p, "mothership_tls_handshakes_total",
                                "TLS handshakes on TLS binds: ok (full), resumed (a session ticket or id), "
                                "failed (an error, a timeout, or plain HTTP).", l, 2, n);
        }
    }
    ms_prom_gauge_i64(&p, "mothership_http_connections_open", "Client connections open now.", NULL, 0, (int64_t)open);
    ms_prom_counter_u64(&p, "mothership_http_connections_total", "Client connections accepted.", NULL, 0, acc);
    ms_prom_counter_u64(&p, "mothership_http_connections_rejected_total",
                        "Connections closed at once because max_connections was reached or Mothership was stopping.",
                        NULL, 0, rej);
    ms_hbay_render_metrics(dp->gen->m, dp->gen->procs, dp->cfg.hub, &p);
}

/* ---------------------------------------------------------------- inline (tests, fuzzing) */
uv_loop_t *ms_dataplane_inline_loop(ms_dataplane *dp)
{
    return &dp->workers[0].loop;
}

int ms_dataplane_inline_adopt(ms_dataplane *dp, int fd, size_t bind_idx)
{
    return ms_conn_adopt(&dp->workers[0], fd, (uint32_t)bind_idx);
}

int ms_dataplane_inline_listen(ms_dataplane *dp, int fd, size_t bind_idx)
{
    return listener_open(&dp->workers[0], (uint32_t)bind_idx, fd);
}

void ms_dataplane_inline_stop(ms_dataplane *dp)
{
    ms_worker *w = &dp->workers[0];
    w->drain_ms = 1;
    on_stop(&w->stop_async);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    ms_dataplane_free(dp);
}

static void stats_add(ms_payload_stats *out, const ms_payload_stats *st)
{
    out->calls += st->calls;
    out->blocks += st->blocks;
    out->rewrites += st->rewrites;
    out->header_edits += st->header_edits;
    out->traps += st->traps;
    out->exhaustions += st->exhaustions;
    out->abi_errors += st->abi_errors;
    out->instance_errors += st->instance_errors;
    out->restarts += st->restarts;
    out->time_us += st->time_us;
}

const ms_payload_set *ms_dataplane_payloads(const ms_dataplane *dp)
{
    return dp->gen->payloads;
}

/* Module name's counters in generation g, summed over the workers. */
static bool gen_module_stats(const ms_gen *g, const char *name, ms_payload_stats *out)
{
    const ms_payload_set *ps = g->payloads;
    for (size_t i = 0; ps && i < ms_payload_count(ps); i++) {
        if (strcmp(ms_payload_module(ps, i)->name, name) != 0)
            continue;
        for (unsigned k = 0; k < g->dp->nworkers; k++) {
            if (!g->wg[k].pw)
                continue;
            ms_payload_stats st;
            ms_payload_worker_stats(g->wg[k].pw, i, &st);
            stats_add(out, &st);
        }
        return true;
    }
    return false;
}

/* Module i of the newest generation: its counters over every generation
 * that had a module of that name (each has its own instances), so that
 * they never go backwards across a reload. */
void ms_dataplane_module_stats(const ms_dataplane *dp, size_t i, ms_payload_stats *out)
{
    memset(out, 0, sizeof *out);
    const char *name = ms_payload_module(dp->gen->payloads, i)->name;
    for (const ms_gen *g = dp->gens; g; g = g->next)
        gen_module_stats(g, name, out);
    for (size_t k = 0; k < dp->nmodule_past; k++)
        if (strcmp(dp->module_past[k].name, name) == 0)
            stats_add(out, &dp->module_past[k].st);
}

bool ms_dataplane_holds_proc(const ms_dataplane *dp, const ms_proc *p)
{
    for (const ms_gen *g = dp->gens; g; g = g->next) {
        if (!g->procs || __atomic_load_n(&g->dead, __ATOMIC_ACQUIRE))
            continue; /* no worker uses a dead one: it is only waiting to be freed */
        for (size_t i = 0; i < g->m->nships; i++)
            if (g->procs[i] == p)
                return true;
    }
    return false;
}
