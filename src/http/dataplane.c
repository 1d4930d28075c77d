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

struct ms_dataplane {
    uv_loop_t *control;
    ms_dp_config cfg;
    ms_worker *workers;
    unsigned nworkers;
    bool stop_requested;
    uv_async_t done_async;
    bool done_async_open;      /* atomic: workers signal their end through done_async */
    void (*done)(void *);
    void *done_arg;
    /* routing slots for metrics (read-only once started) */
    ms_slot_info *slots;
    uint32_t nslots;
    uint32_t *nomatch_slot;    /* per bind */
    uint32_t **route_slot;     /* per bind, per route */
    uint32_t **static_slot;    /* per bind, per static dir */
    int **static_fd;           /* per bind, per static dir: the root, opened once */
    ms_target *targets;        /* per ship */
    ms_payload_stats *payload_sums; /* scratch for the metrics render (control loop only) */
    int *unix_fds;             /* per bind: the listening Unix socket, or -1 */
};

uint64_t ms_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const ms_proc *ms_worker_proc(const ms_worker *w, size_t ship)
{
    return w->dp->cfg.procs ? w->dp->cfg.procs[ship] : NULL;
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

static void on_connection(uv_stream_t *s, int status)
{
    ms_listener *l = s->data;
    if (status < 0)
        return;
    ms_conn_accept(l);
}

static void on_worker_handle_closed(uv_handle_t *h)
{
    (void)h;
}

void ms_worker_maybe_done(ms_worker *w)
{
    if (!w->stopping || w->closed || w->nconns > 0 || w->nups > 0 || w->nh2conns > 0)
        return;
    w->closed = true;
    ms_ws_worker_close(w);
    uv_close((uv_handle_t *)&w->stop_async, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->date_timer, on_worker_handle_closed);
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
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].open) {
            w->listeners[i].open = false;
            uv_close(&w->listeners[i].io.h, on_worker_handle_closed);
        }
    }
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

static bool setup_slots(ms_dataplane *dp)
{
    const ms_route_table *rt = dp->cfg.routes;
    uint32_t n = 0;
    for (size_t b = 0; b < rt->nbinds; b++)
        n += 1 + (uint32_t)rt->binds[b].nstatics + (uint32_t)rt->binds[b].nroutes;
    dp->nslots = n;
    dp->slots = calloc(n ? n : 1, sizeof *dp->slots);
    dp->nomatch_slot = calloc(rt->nbinds ? rt->nbinds : 1, sizeof *dp->nomatch_slot);
    dp->route_slot = calloc(rt->nbinds ? rt->nbinds : 1, sizeof *dp->route_slot);
    dp->static_slot = calloc(rt->nbinds ? rt->nbinds : 1, sizeof *dp->static_slot);
    dp->static_fd = calloc(rt->nbinds ? rt->nbinds : 1, sizeof *dp->static_fd);
    if (!dp->slots || !dp->nomatch_slot || !dp->route_slot || !dp->static_slot || !dp->static_fd)
        return false;
    uint32_t k = 0;
    for (size_t b = 0; b < rt->nbinds; b++) {
        const ms_rt_bind *rb = &rt->binds[b];
        dp->nomatch_slot[b] = k;
        dp->slots[k++] = (ms_slot_info){ rb->bind->name, "", "none" };
        dp->static_slot[b] = calloc(rb->nstatics ? rb->nstatics : 1, sizeof **dp->static_slot);
        dp->static_fd[b] = calloc(rb->nstatics ? rb->nstatics : 1, sizeof **dp->static_fd);
        dp->route_slot[b] = calloc(rb->nroutes ? rb->nroutes : 1, sizeof **dp->route_slot);
        if (!dp->static_slot[b] || !dp->static_fd[b] || !dp->route_slot[b])
            return false;
        for (size_t i = 0; i < rb->nstatics; i++) {
            dp->static_slot[b][i] = k;
            dp->slots[k++] = (ms_slot_info){ rb->bind->name, rb->statics[i]->prefix, "static" };
            dp->static_fd[b][i] = open(rb->statics[i]->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        for (size_t i = 0; i < rb->nroutes; i++) {
            dp->route_slot[b][i] = k;
            dp->slots[k++] = (ms_slot_info){ rb->bind->name, rb->routes[i].route->pattern, rb->routes[i].target->name };
        }
    }
    return true;
}

unsigned ms_dataplane_worker_count(const ms_dp_config *cfg)
{
    if (cfg->inline_worker)
        return 1;
    if (cfg->workers)
        return cfg->workers;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

ms_dataplane *ms_dataplane_start(uv_loop_t *control, const ms_dp_config *cfg, char *why, size_t why_len)
{
    const ms_manifest *m = cfg->m;
    bool any_tls = false;
    for (size_t b = 0; b < m->global.nbinds; b++) {
        if (m->global.binds[b].tls && !cfg->tls) {
            snprintf(why, why_len, "bind \"%s\" (%s) terminates TLS, and no TLS configuration was given",
                     m->global.binds[b].name, m->global.binds[b].addr.text);
            return NULL;
        }
        any_tls |= m->global.binds[b].tls;
    }
    ms_dataplane *dp = calloc(1, sizeof *dp);
    if (!dp) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    dp->control = control;
    dp->cfg = *cfg;
    unsigned nw = ms_dataplane_worker_count(cfg);
    if (cfg->hub && cfg->hub->nworkers != nw) {
        snprintf(why, why_len, "internal error: the docking hub has %u workers, the data plane %u",
                 cfg->hub->nworkers, nw);
        free(dp);
        return NULL;
    }
    dp->nworkers = nw;
    dp->workers = calloc(nw, sizeof *dp->workers);
    dp->targets = calloc(m->nships ? m->nships : 1, sizeof *dp->targets);
    dp->unix_fds = calloc(m->global.nbinds ? m->global.nbinds : 1, sizeof *dp->unix_fds);
    dp->payload_sums = calloc(m->nmodules ? m->nmodules : 1, sizeof *dp->payload_sums);
    for (size_t b = 0; dp->unix_fds && b < m->global.nbinds; b++)
        dp->unix_fds[b] = -1; /* before any failure: ms_dataplane_free closes those >= 0 */
    if (!dp->workers || !dp->targets || !dp->unix_fds || !dp->payload_sums || !setup_slots(dp)) {
        snprintf(why, why_len, "out of memory");
        goto fail_early;
    }
    for (size_t i = 0; i < m->nships; i++) {
        if (m->ships[i].has_bind && !ms_target_from_addr(&m->ships[i].bind, &dp->targets[i], why, why_len))
            goto fail_early;
    }
    for (size_t b = 0; b < m->global.nbinds; b++) {
        const ms_bind *bind = &m->global.binds[b];
        if (bind->addr.kind == MS_ADDR_UNIX && !cfg->inline_worker) {
            char err[200];
            dp->unix_fds[b] = unix_listen_socket(bind->addr.path, err, sizeof err);
            if (dp->unix_fds[b] < 0) {
                snprintf(why, why_len, "bind \"%s\" (%s): %s", bind->name, bind->addr.text, err);
                goto fail_early;
            }
        }
    }
    uint8_t seed[8] = { 0 };
    if (getrandom(seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        memcpy(seed, &(uint64_t){ ms_now_us() }, sizeof seed);
    for (unsigned i = 0; i < nw; i++) {
        ms_worker *w = &dp->workers[i];
        w->dp = dp;
        w->id = i;
        w->dp_manifest = m;
        w->routes = cfg->routes;
        w->dp_payloads = cfg->payloads;
        w->targets = dp->targets;
        w->nomatch_slot = dp->nomatch_slot;
        w->route_slot = dp->route_slot;
        w->static_slot = dp->static_slot;
        w->static_fd = dp->static_fd;
        w->max_conns = (cfg->m->global.http.max_connections + nw - 1) / nw;
        w->tmpdir = getenv("TMPDIR"); /* read here, on the main thread, once */
        memcpy(&w->rng, seed, sizeof w->rng);
        w->rng ^= (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL;
        if (!w->rng)
            w->rng = 1;
        w->slots = calloc(dp->nslots ? dp->nslots : 1, sizeof *w->slots);
        w->pools = calloc(m->nships ? m->nships : 1, sizeof *w->pools);
        w->pool_len = calloc(m->nships ? m->nships : 1, sizeof *w->pool_len);
        w->listeners = calloc(m->global.nbinds ? m->global.nbinds : 1, sizeof *w->listeners);
        w->match_data = ms_pattern_match_data_new();
        if (any_tls) {
            w->tls = cfg->tls;
            w->tls_rbuf = malloc(MS_TLS_RBUF);
            w->tls_hs = calloc(m->global.nbinds * MS_TLS_HS_COUNT, sizeof *w->tls_hs);
            if (!w->tls_rbuf || !w->tls_hs) {
                snprintf(why, why_len, "out of memory");
                goto fail_early;
            }
        }
        ms_payload_result_init(&w->pres);
        if (cfg->payloads && ms_payload_count(cfg->payloads) > 0) {
            w->pw = ms_payload_worker_new(cfg->payloads);
            w->phdrs = calloc(MS_MAX_HEADERS, sizeof *w->phdrs);
            if (!w->pw || !w->phdrs) {
                snprintf(why, why_len, "cannot instantiate the payloads");
                goto fail_early;
            }
            ms_payload_worker_set_log(w->pw, ms_worker_payload_log, w);
        }
        if (!w->slots || !w->pools || !w->pool_len || !w->listeners || !w->match_data ||
            uv_loop_init(&w->loop) != 0) {
            snprintf(why, why_len, "out of memory");
            goto fail_early; /* loops not yet running: nothing to close but memory */
        }
        w->loop_open = true;
        uv_async_init(&w->loop, &w->stop_async, on_stop);
        w->stop_async.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_timer_init(&w->loop, &w->date_timer);
        w->date_timer.data = w;
        refresh_date(w);
        uv_timer_start(&w->date_timer, on_date_timer, 1000, 1000);
        w->hub = cfg->hub;
        if (!ms_ws_worker_init(w)) {
            snprintf(why, why_len, "out of memory");
            goto fail_started;
        }
        for (size_t b = 0; b < m->global.nbinds && !cfg->inline_worker; b++) {
            const ms_bind *bind = &m->global.binds[b];
            ms_listener *l = &w->listeners[w->nlisteners];
            l->w = w;
            l->bind_idx = (uint32_t)b;
            l->is_unix = bind->addr.kind == MS_ADDR_UNIX;
            char err[200] = "";
            int fd = l->is_unix ? dup(dp->unix_fds[b]) : tcp_listen_socket(&bind->addr, err, sizeof err);
            int rc = fd < 0 ? -1 : l->is_unix ? uv_pipe_init(&w->loop, &l->io.pipe, 0) : uv_tcp_init(&w->loop, &l->io.tcp);
            if (rc == 0) {
                l->io.h.data = l;
                l->open = true;
                w->nlisteners++;
                rc = l->is_unix ? uv_pipe_open(&l->io.pipe, fd) : uv_tcp_open(&l->io.tcp, fd);
                if (rc == 0)
                    rc = uv_listen(&l->io.s, 1024, on_connection);
                if (rc != 0)
                    snprintf(err, sizeof err, "%s", uv_strerror(rc));
            } else if (fd >= 0) {
                close(fd);
            }
            if (rc != 0) {
                snprintf(why, why_len, "bind \"%s\" (%s): %s", bind->name, bind->addr.text,
                         err[0] ? err : "cannot listen");
                goto fail_started;
            }
        }
    }
    if (cfg->tls)
        ms_tls_server_set_h2(cfg->tls, true); /* h2.c serves the streams of ALPN h2 */
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
     * on the control loop; no worker ends before ms_dataplane_stop */
    int rc = uv_async_init(control, &dp->done_async, on_all_done);
    if (rc != 0) {
        snprintf(why, why_len, "cannot start the data plane: %s", uv_strerror(rc));
        stop_started_workers(dp);
        goto fail_started;
    }
    dp->done_async.data = dp;
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
        for (size_t k = 0; k < w->nlisteners; k++)
            uv_close(&w->listeners[k].io.h, NULL);
        ms_ws_worker_close(w);
        uv_close((uv_handle_t *)&w->stop_async, NULL);
        uv_close((uv_handle_t *)&w->drain_timer, NULL);
        uv_close((uv_handle_t *)&w->date_timer, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
fail_early:
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
    uv_close((uv_handle_t *)&dp->done_async, on_done_async_closed);
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
    const ms_route_table *rt = dp->cfg.routes;
    for (unsigned i = 0; dp->workers && i < dp->nworkers; i++) {
        ms_worker *w = &dp->workers[i];
        if (w->loop_open)
            uv_loop_close(&w->loop);
        free(w->slots);
        free(w->pools);
        free(w->pool_len);
        free(w->listeners);
        ms_pattern_match_data_free(w->match_data);
        ms_payload_worker_free(w->pw);
        ms_payload_result_free(&w->pres);
        free(w->phdrs);
        ms_ws_worker_free(w);
        free(w->gather.buf);
        free(w->tls_rbuf);
        free(w->tls_hs);
    }
    free(dp->workers);
    for (size_t b = 0; rt && b < rt->nbinds; b++) {
        if (dp->static_fd && dp->static_fd[b])
            for (size_t i = 0; i < rt->binds[b].nstatics; i++)
                if (dp->static_fd[b][i] >= 0)
                    close(dp->static_fd[b][i]);
        if (dp->static_fd)
            free(dp->static_fd[b]);
        if (dp->static_slot)
            free(dp->static_slot[b]);
        if (dp->route_slot)
            free(dp->route_slot[b]);
    }
    for (size_t b = 0; dp->unix_fds && b < dp->cfg.m->global.nbinds; b++) {
        if (dp->unix_fds[b] >= 0) {
            close(dp->unix_fds[b]);
            unlink(dp->cfg.m->global.binds[b].addr.path);
        }
    }
    free(dp->unix_fds);
    free(dp->static_fd);
    free(dp->static_slot);
    free(dp->route_slot);
    free(dp->nomatch_slot);
    free(dp->slots);
    free(dp->targets);
    free(dp->payload_sums);
    free(dp);
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
                total += ld(&dp->workers[i].slots[s].by_class[k]);
    }
    return total;
}

/* A slot whose requests go to a ship or bay (not a static dir, not "no match"). */
static bool proxied(const ms_slot_info *si)
{
    return strcmp(si->target, "static") != 0 && strcmp(si->target, "none") != 0;
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
                total += ld(&dp->workers[i].slots[s].by_proto[k]);
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
                v += ld(&dp->workers[i].slots[s].by_class[k]);
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
                counts[k] += ld(&dp->workers[i].slots[s].buckets[k]);
            sum_us += ld(&dp->workers[i].slots[s].duration_us_sum);
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
            v += ld(&dp->workers[i].slots[s].bytes_in);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_u64(&p, "mothership_request_bytes_total", "Bytes received from clients.", l, 3, v);
    }
    for (uint32_t s = 0; s < dp->nslots; s++) {
        const ms_slot_info *si = &dp->slots[s];
        uint64_t v = 0;
        for (unsigned i = 0; i < dp->nworkers; i++)
            v += ld(&dp->workers[i].slots[s].bytes_out);
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
                v += ld(&dp->workers[i].slots[s].abandoned[k]);
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
            up += ld(&dp->workers[i].slots[s].tunnel_bytes_up);
            down += ld(&dp->workers[i].slots[s].tunnel_bytes_down);
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
            v += ld(&dp->workers[i].slots[s].tunnels_closed);
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
            us += ld(&dp->workers[i].slots[s].tunnel_us_sum);
        ms_prom_label l[] = { { "bind", si->bind }, { "route", si->route }, { "target", si->target } };
        ms_prom_counter_double(&p, "mothership_tunnel_seconds_total",
                               "Time the ended tunnels to ships were open, from the 101 to the close.", l, 3,
                               (double)us / 1e6);
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
    const ms_payload_set *ps = dp->cfg.payloads;
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
    for (size_t b = 0; b < dp->cfg.m->global.nbinds; b++) {
        if (!dp->cfg.m->global.binds[b].tls)
            continue;
        for (int r = 0; r < MS_TLS_HS_COUNT; r++) {
            uint64_t n = 0;
            for (unsigned i = 0; i < dp->nworkers; i++)
                n += ld(&dp->workers[i].tls_hs[b * MS_TLS_HS_COUNT + (size_t)r]);
            ms_prom_label l[] = { { "bind", dp->cfg.m->global.binds[b].name }, { "result", hs_results[r] } };
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

void ms_dataplane_inline_stop(ms_dataplane *dp)
{
    ms_worker *w = &dp->workers[0];
    w->drain_ms = 1;
    on_stop(&w->stop_async);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    ms_dataplane_free(dp);
}

void ms_dataplane_module_stats(const ms_dataplane *dp, size_t i, ms_payload_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned k = 0; k < dp->nworkers; k++) {
        ms_payload_stats st;
        if (!dp->workers[k].pw)
            continue;
        ms_payload_worker_stats(dp->workers[k].pw, i, &st);
        out->calls += st.calls;
        out->blocks += st.blocks;
        out->rewrites += st.rewrites;
        out->header_edits += st.header_edits;
        out->traps += st.traps;
        out->exhaustions += st.exhaustions;
        out->abi_errors += st.abi_errors;
        out->instance_errors += st.instance_errors;
        out->time_us += st.time_us;
    }
}

bool ms_dataplane_reload(ms_dataplane *dp, const ms_dp_config *cfg, char *why, size_t why_len)
{
    (void)dp;
    (void)cfg;
    snprintf(why, why_len, "the data plane cannot take a new configuration yet");
    return false;
}

void ms_dataplane_drain(ms_dataplane *dp, uint64_t drain_ms, void (*done)(void *), void *arg)
{
    (void)dp;
    (void)drain_ms;
    done(arg);
}
