/* process.c: spawning and signalling one process (see process.h). */
#include "fleet/process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleet/cgroup.h"
#include "fleet/shim.h"
#include "util/strutil.h"

extern char **environ;

/* ---------------------------------------------------------------- environment */
typedef struct envv {
    char **items;
    size_t len, cap;
    bool oom;
} envv;

static void env_set(envv *e, const char *key, const char *value)
{
    size_t kl = strlen(key);
    char *kv = ms_asprintf("%s=%s", key, value);
    if (!kv) {
        e->oom = true;
        return;
    }
    for (size_t i = 0; i < e->len; i++) {
        if (strncmp(e->items[i], key, kl) == 0 && e->items[i][kl] == '=') {
            explicit_bzero(e->items[i], strlen(e->items[i]));
            free(e->items[i]);
            e->items[i] = kv;
            return;
        }
    }
    if (e->len + 2 > e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 64;
        char **n = realloc(e->items, ncap * sizeof *n);
        if (!n) {
            free(kv);
            e->oom = true;
            return;
        }
        e->items = n;
        e->cap = ncap;
    }
    e->items[e->len++] = kv;
    e->items[e->len] = NULL;
}

static void env_free(envv *e)
{
    for (size_t i = 0; i < e->len; i++) {
        explicit_bzero(e->items[i], strlen(e->items[i])); /* secret_env values among them */
        free(e->items[i]);
    }
    free(e->items);
}

static const char *env_get(const envv *e, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < e->len; i++)
        if (strncmp(e->items[i], key, kl) == 0 && e->items[i][kl] == '=')
            return e->items[i] + kl + 1;
    return NULL;
}

#define MS_SECRET_MAX (64 * 1024)

/* secret_env: each NAME's value read from its file now, one trailing newline
 * ("\n" or "\r\n") stripped. The value goes into the child's environment
 * only: never into a message (why names the variable and the path). */
static bool add_secrets(const ms_ship *s, envv *e, char *why, size_t why_len)
{
    for (size_t i = 0; i < s->secret_env.len; i++) {
        const char *name = s->secret_env.items[i].key, *path = s->secret_env.items[i].value;
        /* O_NONBLOCK: a FIFO must not block the event loop waiting for a
         * writer; only a regular file holds a secret */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        const char *no = fd < 0 || fstat(fd, &st) != 0 ? strerror(errno)
                       : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
        FILE *fp = no ? NULL : fdopen(fd, "rb");
        if (!fp) {
            snprintf(why, why_len, "secret_env %s: cannot read \"%s\": %s", name, path, no ? no : strerror(errno));
            if (fd >= 0)
                close(fd);
            return false;
        }
        char *buf = malloc(MS_SECRET_MAX + 1);
        size_t n = buf ? fread(buf, 1, MS_SECRET_MAX + 1, fp) : 0;
        bool err = ferror(fp) != 0;
        fclose(fp);
        const char *bad = !buf ? "out of memory" : err ? "read error" : n > MS_SECRET_MAX ? "larger than 64 KiB"
                        : memchr(buf, '\0', n) ? "it holds a NUL byte" : NULL;
        if (!bad) {
            if (n > 0 && buf[n - 1] == '\n' && --n > 0 && buf[n - 1] == '\r')
                n--;
            buf[n] = '\0';
            env_set(e, name, buf);
        }
        if (buf) {
            explicit_bzero(buf, MS_SECRET_MAX + 1);
            free(buf);
        }
        if (bad) {
            snprintf(why, why_len, "secret_env %s: cannot use \"%s\": %s", name, path, bad);
            return false;
        }
    }
    return true;
}

/* The child's environment: inherited < [mothership] env < the entry's env
 * (env_file under it) < secret_env < Mothership's own MS_* variables. False
 * with why when a secret cannot be read. */
static bool build_env(const ms_proc *p, envv *e, char *why, size_t why_len)
{
    const ms_fleet *f = p->fleet;
    for (char **v = environ; v && *v; v++) {
        const char *eq = strchr(*v, '=');
        if (!eq)
            continue;
        char key[256];
        size_t kl = (size_t)(eq - *v);
        if (kl == 0 || kl >= sizeof key)
            continue;
        memcpy(key, *v, kl);
        key[kl] = '\0';
        if (strncmp(key, "MS_", 3) == 0 && p->ship->kind == MS_BAY)
            continue; /* set below */
        env_set(e, key, eq + 1);
    }
    for (size_t i = 0; i < f->m->global.env.len; i++)
        env_set(e, f->m->global.env.items[i].key, f->m->global.env.items[i].value);
    for (size_t i = 0; i < p->ship->env.len; i++) {
        /* {instance}, {port}, {gen} for this process's instance and parity */
        char *v = ms_ship_expand(p->ship, p->ship->env.items[i].value, p->parity);
        if (!v) {
            e->oom = true;
            return true;
        }
        env_set(e, p->ship->env.items[i].key, v);
        free(v);
    }
    if (!add_secrets(p->ship, e, why, why_len))
        return false;
    if (p->ship->base || p->ship->port) {
        char inst[16];
        snprintf(inst, sizeof inst, "%u", p->ship->instance);
        env_set(e, "MS_INSTANCE", inst);
    }
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    env_set(e, MS_FLEET_PID_ENV, pid); /* last: the orphan sweep relies on it */
    if (p->ship->kind == MS_BAY) {
        env_set(e, "MS_PID", pid);
        env_set(e, "MS_SHIP", p->ship->name);
        env_set(e, "MS_SOCKET_DIR", f->socket_dir);
        env_set(e, "MS_SOCKET_PATH", p->socket_path);
        env_set(e, "MS_BAY_TYPE", p->ship->group);
    }
    if (p->ship->kind == MS_BAY && p->ship->http_bay) {
        char n[32];
        snprintf(n, sizeof n, "%u", p->ship->bay_workers);
        env_set(e, "MS_BAY_WORKERS", n);
        snprintf(n, sizeof n, "%u", p->ship->bay_threads);
        env_set(e, "MS_BAY_THREADS", n);
        /* whole seconds, rounded up: what a request may take, for the bay's drain */
        snprintf(n, sizeof n, "%llu", (unsigned long long)((p->ship->request_timeout_ms + 999) / 1000));
        env_set(e, "MS_BAY_DRAIN_TIMEOUT", n);
    }
    return true;
}

/* ---------------------------------------------------------------- command */
static bool executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *ms_find_command(const char *cmd, const char *path_env, const char *cwd)
{
    if (strchr(cmd, '/')) {
        char *full = cmd[0] == '/' || !cwd ? ms_strdup(cmd) : ms_asprintf("%s/%s", cwd, cmd);
        if (full && executable_file(full))
            return full;
        free(full);
        return NULL;
    }
    const char *path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        char *full;
        if (n == 0)
            full = cwd ? ms_asprintf("%s/%s", cwd, cmd) : ms_strdup(cmd);
        else if (path[0] != '/' && cwd)
            full = ms_asprintf("%s/%.*s/%s", cwd, (int)n, path, cmd);
        else
            full = ms_asprintf("%.*s/%s", (int)n, path, cmd);
        if (full && executable_file(full))
            return full;
        free(full);
        path += n;
        if (*path == ':')
            path++;
    }
    return NULL;
}

static void close_report(ms_report *rp);

/* ---------------------------------------------------------------- output */
/* A pipe lives on its own: it may outlast the process (a grandchild can
 * hold it open), so each spawn gets fresh ones, freed when they close. */
struct ms_outpipe {
    uv_pipe_t pipe;
    ms_proc *p;
    ms_stream stream;
    ms_linebuf lb;
};

static void on_line(void *arg, const char *line, size_t len, bool continued)
{
    ms_outpipe *op = arg;
    ms_proc *p = op->p;
    ms_fleet *f = p->fleet;
    if (!p->started_logged)
        ms_fleet_on_ship_pid(p); /* "started" comes before the run's first line */
    ms_log_child(f->log, p->ship->name, p->ship->base, p->ship->instance, p->colour, op->stream, line, len, continued);
    ms_ring_add(&p->ring, ++f->log_seq, op->stream, line, len);
    if (f->line_added && p->ring.count > 0)
        f->line_added(f->line_added_arg, p, ms_ring_at(&p->ring, p->ring.count - 1));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[65536]; /* control loop only: consumed before the next read */
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void on_pipe_closed(uv_handle_t *h)
{
    ms_outpipe *op = h->data;
    ms_proc *p = op->p;
    int k = op->stream == MS_STDOUT ? 0 : 1;
    if (p->pipes[k] == op)
        p->pipes[k] = NULL;
    p->open_pipes--;
    free(op);
    ms_fleet_on_output_closed(p);
}

static void close_pipe(ms_outpipe *op)
{
    if (op && !uv_is_closing((uv_handle_t *)&op->pipe))
        uv_close((uv_handle_t *)&op->pipe, on_pipe_closed);
}

void ms_process_close_pipes(ms_proc *p)
{
    close_pipe(p->pipes[0]);
    close_pipe(p->pipes[1]);
    close_report(p->report);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ms_outpipe *op = s->data;
    if (n > 0) {
        ms_linebuf_feed(&op->lb, buf->base, (size_t)n, on_line, op);
    } else if (n < 0) {
        ms_linebuf_flush(&op->lb, on_line, op);
        uv_read_stop(s);
        close_pipe(op);
    }
}

/* ---------------------------------------------------------------- pid report */
/* The shim writes the command's pid and a newline on its own pipe, then
 * closes it. That pid is what users see; the shim's is the process group. */
struct ms_report {
    uv_pipe_t pipe;
    ms_proc *p;
    char buf[24];
    size_t len;
    bool done;           /* a pid was parsed, or there will be none */
};

static void on_report_closed(uv_handle_t *h)
{
    ms_report *rp = h->data;
    ms_proc *p = rp->p;
    if (p->report == rp)
        p->report = NULL;
    p->open_pipes--;
    free(rp);
    ms_fleet_on_output_closed(p);
}

static void close_report(ms_report *rp)
{
    if (rp && !uv_is_closing((uv_handle_t *)&rp->pipe))
        uv_close((uv_handle_t *)&rp->pipe, on_report_closed);
}

/* Parse what has arrived; at_eof: nothing more will. True once done. */
static bool report_parse(ms_report *rp, bool at_eof)
{
    if (rp->done)
        return true;
    const char *nl = memchr(rp->buf, '\n', rp->len);
    if (!nl && !at_eof && rp->len < sizeof rp->buf)
        return false;
    rp->done = true;
    long pid = 0;
    const char *c = rp->buf;
    for (; nl && c < nl && *c >= '0' && *c <= '9' && pid < INT_MAX / 10; c++)
        pid = pid * 10 + (*c - '0');
    if (nl && c == nl && pid > 0 && rp->p->report == rp)
        rp->p->ship_pid = (int)pid;
    return true;
}

static void on_report_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ms_report *rp = h->data;
    (void)suggested;
    *buf = uv_buf_init(rp->buf + rp->len, (unsigned)(sizeof rp->buf - rp->len));
}

static void on_report_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ms_report *rp = s->data;
    (void)buf;
    if (n > 0)
        rp->len += (size_t)n;
    if (n == 0 || !report_parse(rp, n < 0))
        return;
    uv_read_stop(s);
    ms_proc *p = rp->p;
    bool current = p->report == rp;
    close_report(rp);
    if (current)
        ms_fleet_on_ship_pid(p);
}

int ms_process_ship_pid(ms_proc *p)
{
    ms_report *rp = p->report;
    if (p->ship_pid > 0 || !rp || rp->done)
        return p->ship_pid;
    /* Not read yet: the shim writes it right after its fork, so it is
     * usually there. libuv keeps the pipe non-blocking. */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&rp->pipe, &fd) != 0)
        return 0;
    ssize_t r;
    do
        r = read(fd, rp->buf + rp->len, sizeof rp->buf - rp->len);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        rp->len += (size_t)r;
    if (!report_parse(rp, r == 0 || (r < 0 && errno != EAGAIN)))
        return -1;
    uv_read_stop((uv_stream_t *)&rp->pipe);
    close_report(rp);
    return p->ship_pid;
}

static void on_proc_exit(uv_process_t *proc, int64_t status, int term_signal)
{
    ms_proc *p = proc->data;
    (void)ms_process_ship_pid(p); /* the pid of the run that ended, for its log lines */
    /* The shim is gone (perhaps of a SIGKILL it could not act on): what is
     * left in its process group goes too. The group id stays reserved while
     * the group has members; an empty group's was freed by libuv's waitpid
     * just before this callback, far too recently to have been reused. */
    if (p->pid > 0)
        kill(-p->pid, SIGKILL);
    ms_fleet_on_exit(p, status, term_signal);
}

static void on_process_closed(uv_handle_t *h)
{
    ms_proc *p = h->data;
    p->process_open = false;
    ms_fleet_on_output_closed(p);
}

void ms_process_close(ms_proc *p)
{
    if (p->process_open && !uv_is_closing((uv_handle_t *)&p->process))
        uv_close((uv_handle_t *)&p->process, on_process_closed);
}

static ms_outpipe *new_pipe(ms_proc *p, ms_stream stream)
{
    ms_outpipe *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    if (uv_pipe_init(p->fleet->loop, &op->pipe, 0) != 0) {
        free(op);
        return NULL;
    }
    op->p = p;
    op->stream = stream;
    op->pipe.data = op;
    p->open_pipes++;
    p->pipes[stream == MS_STDOUT ? 0 : 1] = op;
    return op;
}

static ms_report *new_report(ms_proc *p)
{
    ms_report *rp = calloc(1, sizeof *rp);
    if (!rp)
        return NULL;
    if (uv_pipe_init(p->fleet->loop, &rp->pipe, 0) != 0) {
        free(rp);
        return NULL;
    }
    rp->p = p;
    rp->pipe.data = rp;
    p->open_pipes++;
    p->report = rp;
    return rp;
}

/* ---------------------------------------------------------------- spawn */
static void free_args(char **args)
{
    for (size_t i = 0; args && args[i]; i++)
        free(args[i]);
    free(args);
}

bool ms_process_spawn(ms_proc *p, char *why, size_t why_len)
{
    ms_fleet *f = p->fleet;
    const ms_ship *s = p->ship;
    const char *cwd = s->cwd ? s->cwd : f->m->dir;
    envv env = { 0 };
    char *cmd = NULL, *shim_name = NULL;
    char **argv = NULL, **args = NULL; /* args: the ship's, templated */
    bool ok = false;
    int cg_fd = -1; /* on the entry's cgroup.procs, for the shim to join */
    if (!build_env(p, &env, why, why_len))
        goto out;
    if (env.oom) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    cmd = ms_find_command(s->command, env_get(&env, "PATH"), cwd);
    if (!cmd) {
        snprintf(why, why_len, strchr(s->command, '/') ? "command \"%s\" not found or not executable (from %s)"
                                                       : "command \"%s\" not found on PATH (from %s)",
                 s->command, cwd);
        goto out;
    }
    if (cmd[0] != '/') {
        /* found relative to a relative directory (a manifest given as
         * examples/x.toml): the child starts in cwd, so make it absolute */
        char here[4096];
        char *abs = getcwd(here, sizeof here) ? ms_asprintf("%s/%s", here, cmd) : NULL;
        if (!abs) {
            snprintf(why, why_len, "cannot resolve \"%s\": %s", cmd, strerror(errno));
            goto out;
        }
        free(cmd);
        cmd = abs;
    }
    argv = calloc(s->args.len + 9, sizeof *argv); /* the shim's 7, the cgroup fd, NULL */
    args = calloc(s->args.len + 1, sizeof *args);
    for (size_t i = 0; args && i < s->args.len; i++)
        if (!(args[i] = ms_ship_expand(s, s->args.items[i], p->parity))) {
            free_args(args);
            args = NULL;
        }
    shim_name = ms_asprintf("ms-shim %s", s->name);
    char ppid[32], stop_sig[16], cg_arg[16];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    snprintf(stop_sig, sizeof stop_sig, "%d", s->stop_signal);
    if (!argv || !shim_name || !args) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    size_t a = 0;
    const char *shim = f->shim_path ? f->shim_path : f->self_exe;
    argv[a++] = shim_name; /* uv_spawn runs .file; argv[0] is the name `ps` shows */
    argv[a++] = (char *)MS_SHIM_FLAG;
    argv[a++] = ppid;
    argv[a++] = (char *)"3"; /* the report pipe, stdio[3] below */
    argv[a++] = stop_sig;
    free(p->cgroup);
    p->cgroup = ms_cgroup_path(&f->cgroups, s, p->parity);
    if (p->cgroup) {
        char cwhy[300];
        cg_fd = ms_cgroup_prepare(&f->cgroups, p->cgroup, s, cwhy, sizeof cwhy);
        if (cg_fd < 0) {
            ms_log_event(f->log, MS_WARN, s->name, "cgroup", "%s \"%s\": no cgroup of its own, its limits do "
                         "not apply: %s", s->kind == MS_BAY ? "bay" : "ship", s->name, cwhy);
            free(p->cgroup);
            p->cgroup = NULL;
        } else {
            snprintf(cg_arg, sizeof cg_arg, "4");
            argv[a++] = cg_arg;
        }
    }
    argv[a++] = (char *)"--";
    argv[a++] = cmd;
    for (size_t i = 0; i < s->args.len; i++)
        argv[a++] = args[i];
    argv[a] = NULL;

    if (p->pipes[0] || p->pipes[1] || p->report) /* an old pipe still held open: let it go */
        ms_process_close_pipes(p);
    ms_outpipe *po = new_pipe(p, MS_STDOUT), *pe = po ? new_pipe(p, MS_STDERR) : NULL;
    ms_report *rp = pe ? new_report(p) : NULL;
    if (!po || !pe || !rp) {
        snprintf(why, why_len, "cannot create pipes");
        goto close_pipes;
    }
    uv_stdio_container_t stdio[5] = {
        { .flags = UV_IGNORE },
        { .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&po->pipe },
        { .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&pe->pipe },
        { .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&rp->pipe },
        { .flags = UV_INHERIT_FD, .data.fd = cg_fd },
    };
    uv_process_options_t opt = {
        .exit_cb = on_proc_exit,
        .file = shim,
        .args = argv,
        .env = env.items,
        .cwd = cwd,
        .flags = UV_PROCESS_DETACHED, /* setsid: its own session and process group */
        .stdio_count = cg_fd >= 0 ? 5 : 4,
        .stdio = stdio,
    };
    p->process.data = p;
    int rc = uv_spawn(f->loop, &p->process, &opt);
    if (rc != 0) {
        snprintf(why, why_len, "cannot start: %s", uv_strerror(rc));
        /* uv_spawn failures still need the handle closed */
        p->process_open = true;
        ms_process_close(p);
        goto close_pipes;
    }
    p->process_open = true;
    p->pid = p->process.pid;
    p->ship_pid = 0;
    uv_read_start((uv_stream_t *)&po->pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&pe->pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&rp->pipe, on_report_alloc, on_report_read);
    ok = true;
    goto out;
close_pipes:
    ms_process_close_pipes(p);
out:
    if (cg_fd >= 0)
        close(cg_fd);
    free_args(args);
    free(argv);
    free(shim_name);
    free(cmd);
    env_free(&env);
    return ok;
}

void ms_process_signal(ms_proc *p, int sig)
{
    if (sig == SIGKILL && p->cgroup)
        ms_cgroup_kill(&p->fleet->cgroups, p->cgroup); /* what left the group too */
    if (p->pid > 0)
        kill(-p->pid, sig); /* the shim leads the group */
}
