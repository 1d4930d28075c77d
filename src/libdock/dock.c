/* dock.c: libdock, the bay side of the docking protocol (see dock.h and
 * docs/libdock.md). A listening Unix socket, one link at a time, the
 * Dock/Moored handshake, frame dispatch to callbacks and a bounded output
 * queue, over plain POSIX sockets and poll(). The wire format is the codec
 * of src/dock/protocol.c. */
#include "libdock/dock.h"
#include "libdock/dock_impl.h"

#include "dock/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64u * 1024u)
#define READ_BUDGET 16                    /* reads per dock_bay_process call */
#define OUT_KEEP_MAX (1024u * 1024u)      /* an empty output buffer over this is freed */
#define STACK_HEADERS 32

typedef enum {
    ST_LISTEN,    /* no link: waiting for Mothership to connect */
    ST_MOORING,   /* link accepted, Dock queued, waiting for Moored */
    ST_DOCKED,
} link_state;

struct dock_bay {
    int listen_fd;
    int link_fd;                  /* -1 without a link */
    int wake_r, wake_w;           /* self-pipe for dock_bay_stop */
    volatile sig_atomic_t stop;
    link_state state;
    char *path;
    char *ship;
    dev_t sock_dev;               /* the socket file we bound */
    ino_t sock_ino;
    bool sock_known;
    unsigned offered;             /* features offered in Dock */
    unsigned features;            /* features agreed in Moored */
    bool in_resumed;              /* inside the boarding callback of a resumed Boarding */
    uint32_t max_frame;
    size_t max_pending;
    int moored_timeout_ms;
    int64_t deadline_ms;          /* Moored deadline (monotonic), when ST_MOORING */
    dock_callbacks cb;
    void *user;
    ms_dock_decoder dec;
    ms_dock_buf out;
    size_t out_off;               /* bytes of out already written */
    uint8_t *rbuf;
    ms_dock_moored moored;        /* the last Moored; owns the config strings */
    dock_kv *config;
    size_t n_config;
    int in_callback;
    bool link_failed;             /* the link is to be ended (fail_msg says why) */
    char fail_msg[256];
};

static dock_bay *volatile g_signal_bay;

/* ---------------------------------------------------------------- helpers */

int dock__seterr(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

int64_t dock__now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;   /* cannot fail with CLOCK_MONOTONIC on a supported system */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


const char *dock_status_name(int status)
{
    switch (status) {
    case DOCK_OK: return "ok";
    case DOCK_STOPPED: return "stopped";
    case DOCK_LINK_ENDED: return "link ended";
    case DOCK_ERR_ARG: return "invalid argument";
    case DOCK_ERR_SYS: return "system call failed";
    case DOCK_ERR_NOMEM: return "out of memory";
    case DOCK_ERR_NOLINK: return "not docked";
    case DOCK_ERR_BINARY: return "binary messages not agreed";
    case DOCK_ERR_TOOBIG: return "message too large";
    case DOCK_ERR_FULL: return "output buffer full";
    case DOCK_ERR_BUSY: return "not allowed from a callback";
    case DOCK_ERR_STATE: return "not allowed at this point of the request";
    default: return "unknown status";
    }
}

const char *dock_header_get(const dock_kv *headers, size_t n_headers, const char *name)
{
    if (!headers || !name)
        return NULL;
    for (size_t i = 0; i < n_headers; i++)
        if (headers[i].name && strcasecmp(headers[i].name, name) == 0)
            return headers[i].value;
    return NULL;
}

/* Marks the link as failed; the first reason wins. It is torn down by
 * end_link at the top level (never inside a callback). */
static void link_fail(dock_bay *bay, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void link_fail(dock_bay *bay, const char *fmt, ...)
{
    if (bay->link_failed)
        return;
    bay->link_failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bay->fail_msg, sizeof bay->fail_msg, fmt, ap);
    va_end(ap);
}

static void out_clear(dock_bay *bay)
{
    bay->out_off = 0;
    if (bay->out.cap > OUT_KEEP_MAX)
        ms_dock_buf_free(&bay->out);
    else
        ms_dock_buf_reset(&bay->out);
}

/* Closes the link, drops queued output, runs link_ended. */
static int end_link(dock_bay *bay, char *err, size_t err_len)
{
    char reason[sizeof bay->fail_msg];
    snprintf(reason, sizeof reason, "%s",
             bay->link_failed ? bay->fail_msg : "link closed");
    if (bay->link_fd >= 0)
        close(bay->link_fd);   /* nothing useful to do on failure: the fd is gone */
    bay->link_fd = -1;
    bay->state = ST_LISTEN;
    bay->features = 0;
    bay->link_failed = false;
    bay->fail_msg[0] = 0;
    ms_dock_decoder_free(&bay->dec);
    ms_dock_decoder_init(&bay->dec, bay->max_frame);
    out_clear(bay);
    if (bay->cb.link_ended) {
        bay->in_callback++;
        bay->cb.link_ended(bay, reason, bay->user);
        bay->in_callback--;
    }
    return seterr(err, err_len, DOCK_LINK_ENDED, "%s", reason);
}

/* Writes queued output until done or the socket is full. */
static void flush_some(dock_bay *bay)
{
    if (bay->link_fd < 0 || bay->link_failed)
        return;
    while (bay->out_off < bay->out.len) {
        ssize_t n = send(bay->link_fd, bay->out.data + bay->out_off,
                         bay->out.len - bay->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            link_fail(bay, "writing to the link failed: %s", strerror(errno));
            return;
        }
        bay->out_off += (size_t)n;
    }
    out_clear(bay);
}

static size_t pending(const dock_bay *bay)
{
    return bay->out.len - bay->out_off;
}

/* Whether to leave the link unread: half of max_pending is queued. A bay
 * that sends more than it receives (a room: one message in, one per client
 * out) would otherwise read on while Mothership is not taking its output
 * and meet DOCK_ERR_FULL for every message; unread, Mothership's queue for
 * the bay fills and it stops reading the clients instead (backpressure).
 * The other half is room for what one read (READ_CHUNK) makes the bay send. */
static bool read_held(const dock_bay *bay)
{
    return bay->state == ST_DOCKED && pending(bay) >= bay->max_pending / 2;
}

/* Moves unwritten output to the front of the buffer. */
static void out_compact(dock_bay *bay)
{
    if (bay->out_off == 0)
        return;
    size_t left = pending(bay);
    if (left)
        memmove(bay->out.data, bay->out.data + bay->out_off, left);
    bay->out.len = left;
    bay->out_off = 0;
}

/* ---------------------------------------------------------------- open/close */

int dock__unix_addr(const char *path, struct sockaddr_un *sa, char *err, size_t err_len)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path)
        return seterr(
            err, err_len, DOCK_ERR_ARG,
            "socket path is too long (%zu bytes; a Unix socket path holds at most %zu): %s",
            strlen(path), sizeof sa->sun_path - 1, path);
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return DOCK_OK;
}

int dock__wake_pipe(int *wake_r, int *wake_w, char *err, size_t err_len)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return seterr(err, err_len, DOCK_ERR_SYS, "pipe2: %s", strerror(errno));
    *wake_r = fds[0];
    *wake_w = fds[1];
    return DOCK_OK;
}

int dock__listen_unix(const char *path, const struct sockaddr_un *sa, int backlog, int *fd,
                      dev_t *dev, ino_t *ino, bool *known, char *err, size_t err_len)
{
    int rc = dock__make_parent_dirs(path, err, err_len);
    if (rc == DOCK_OK)
        rc = dock__remove_stale(path, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return seterr(err, err_len, DOCK_ERR_SYS, "socket: %s", strerror(errno));
    if (bind(*fd, (const struct sockaddr *)sa, sizeof *sa) != 0)
        return seterr(err, err_len, DOCK_ERR_SYS, "cannot bind %s: %s", path, strerror(errno));
    struct stat st;
    if (lstat(path, &st) == 0) {
        *dev = st.st_dev;
        *ino = st.st_ino;
        *known = true;
    }
    if (listen(*fd, backlog) != 0)
        return seterr(err, err_len, DOCK_ERR_SYS, "cannot listen on %s: %s", path, strerror(errno));
    return DOCK_OK;
}

void dock__unlink_socket(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;
    if (lstat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
        unlink(path);   /* best effort: the bay is going away */
}

void dock__default_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);   /* cannot fail for these signals */
    sigaction(SIGINT, &sa, NULL);
}

int dock__catch_stop_signals(void (*handler)(int), char *err, size_t err_len)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return seterr(err, err_len, DOCK_ERR_SYS, "sigaction: %s", strerror(errno));
    return DOCK_OK;
}

void dock__wake(int wake_w)
{
    if (wake_w < 0)
        return;
    int saved = errno;
    ssize_t n = write(wake_w, "", 1);   /* a full pipe already wakes poll */
    (void)n;
    errno = saved;
}

int dock__make_parent_dirs(const char *path, char *err, size_t err_len)
{
    char *dir = strdup(path);
    if (!dir)
        return seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {   /* relative file name, or in "/" */
        free(dir);
        return DOCK_OK;
    }
    *slash = 0;
    for (char *p = dir + 1;; p++) {
        bool last = *p == 0;
        if (*p == '/' || last) {
            char saved = *p;
            *p = 0;
            if (mkdir(dir, 0700) != 0) {
                int e = errno;
                struct stat st;
                if (e != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                    int rc = seterr(err, err_len, DOCK_ERR_SYS,
                                    "cannot create the socket directory %s: %s", dir,
                                    e == EEXIST ? "exists and is not a directory" : strerror(e));
                    free(dir);
                    return rc;
                }
            }
            *p = saved;
        }
        if (last)
            break;
    }
    free(dir);
    return DOCK_OK;
}

int dock__remove_stale(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return DOCK_OK;
        return seterr(err, err_len, DOCK_ERR_SYS, "cannot inspect %s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode))
        return seterr(err, err_len, DOCK_ERR_ARG,
                      "%s exists and is not a socket; not removing it", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return seterr(err, err_len, DOCK_ERR_SYS, "cannot remove the stale socket %s: %s", path,
                      strerror(errno));
    return DOCK_OK;
}

char *dock__ship_from_path(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
        n -= 5;
    return strndup(base, n);
}

dock_bay *dock_bay_open(const dock_options *opt, char *err, size_t err_len)
{
    static const dock_options defaults;
    if (!opt)
        opt = &defaults;
    if (err && err_len)
        err[0] = 0;
    if (opt->max_frame != 0 && opt->max_frame < MS_DOCK_MIN_MAX_FRAME) {
        seterr(err, err_len, DOCK_ERR_ARG, "max_frame %u is under the minimum of %u",
               (unsigned)opt->max_frame, (unsigned)MS_DOCK_MIN_MAX_FRAME);
        return NULL;
    }
    const char *path = opt->socket_path;
    if (!path || !*path)
        path = getenv("MS_SOCKET_PATH");
    if (!path || !*path) {
        seterr(err, err_len, DOCK_ERR_ARG,
               "MS_SOCKET_PATH is not set (a bay is started by Mothership, which sets it)");
        return NULL;
    }
    struct sockaddr_un sa;
    if (dock__unix_addr(path, &sa, err, err_len) != DOCK_OK)
        return NULL;

    dock_bay *bay = calloc(1, sizeof *bay);
    if (!bay) {
        seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
        return NULL;
    }
    bay->listen_fd = bay->link_fd = bay->wake_r = bay->wake_w = -1;
    bay->state = ST_LISTEN;
    bay->max_frame = opt->max_frame ? opt->max_frame : DOCK_DEFAULT_MAX_FRAME;
    bay->max_pending = opt->max_pending ? opt->max_pending : DOCK_DEFAULT_MAX_PENDING;
    bay->moored_timeout_ms = opt->moored_timeout_ms == 0 ? DOCK_DEFAULT_MOORED_TIMEOUT_MS
                                                         : opt->moored_timeout_ms;
    bay->offered = opt->v1_only ? 0 : MS_DOCK_FEAT_BINARY | (opt->resume ? MS_DOCK_FEAT_RESUME : 0);
    bay->cb = opt->cb;
    bay->user = opt->user;
    ms_dock_decoder_init(&bay->dec, bay->max_frame);

    const char *ship = opt->ship && *opt->ship ? opt->ship : getenv("MS_SHIP");
    bay->path = strdup(path);
    bay->ship = ship && *ship ? strdup(ship) : dock__ship_from_path(path);
    bay->rbuf = malloc(READ_CHUNK);
    if (!bay->path || !bay->ship || !bay->rbuf) {
        seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!*bay->ship) {
        seterr(err, err_len, DOCK_ERR_ARG, "no ship name: set MS_SHIP");
        goto fail;
    }
    if (!ms_dock_utf8_valid((const uint8_t *)bay->ship, strlen(bay->ship))) {
        seterr(err, err_len, DOCK_ERR_ARG, "the ship name is not valid UTF-8");
        goto fail;
    }
    if (dock__wake_pipe(&bay->wake_r, &bay->wake_w, err, err_len) != DOCK_OK)
        goto fail;

    if (dock__listen_unix(path, &sa, 8, &bay->listen_fd, &bay->sock_dev,
                          &bay->sock_ino, &bay->sock_known, err, err_len)
        != DOCK_OK)
        goto fail;
    return bay;
fail:
    dock_bay_close(bay);
    return NULL;
}

void dock_bay_close(dock_bay *bay)
{
    if (!bay)
        return;
    if (g_signal_bay == bay) {
        g_signal_bay = NULL;
        dock__default_stop_signals();
    }
    if (bay->link_fd >= 0)
        close(bay->link_fd);
    if (bay->listen_fd >= 0) {
        close(bay->listen_fd);
        if (bay->sock_known && bay->path)
            dock__unlink_socket(bay->path, bay->sock_dev, bay->sock_ino);
    }
    if (bay->wake_r >= 0)
        close(bay->wake_r);
    if (bay->wake_w >= 0)
        close(bay->wake_w);
    ms_dock_decoder_free(&bay->dec);
    ms_dock_buf_free(&bay->out);
    ms_dock_moored_free(&bay->moored);
    free(bay->config);
    free(bay->rbuf);
    free(bay->path);
    free(bay->ship);
    free(bay);
}

/* ---------------------------------------------------------------- stop */

void dock_bay_stop(dock_bay *bay)
{
    if (!bay)
        return;
    bay->stop = 1;
    dock__wake(bay->wake_w);
}

bool dock_bay_stop_requested(const dock_bay *bay)
{
    return bay && bay->stop;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    dock_bay *bay = g_signal_bay;
    if (bay)
        dock_bay_stop(bay);
}

int dock_bay_stop_on_signals(dock_bay *bay, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    g_signal_bay = bay;
    return dock__catch_stop_signals(on_stop_signal, err, err_len);
}

static void drain_wake(dock_bay *bay)
{
    char buf[64];
    for (;;) {
        ssize_t n = read(bay->wake_r, buf, sizeof buf);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return;   /* EAGAIN: empty */
    }
}

/* ---------------------------------------------------------------- receiving */

static void handle_moored(dock_bay *bay, const ms_dock_frame *fr)
{
    ms_dock_moored m;
    char msg[200];
    if (ms_dock_parse_moored(fr->payload, fr->len, &m, msg, sizeof msg) != 0) {
        ms_dock_moored_free(&m);
        link_fail(bay, "%s", msg);
        return;
    }
    dock_kv *cfg = NULL;
    if (m.n_config) {
        cfg = calloc(m.n_config, sizeof *cfg);
        if (!cfg) {
            ms_dock_moored_free(&m);
            link_fail(bay, "out of memory for the config table");
            return;
        }
        for (size_t i = 0; i < m.n_config; i++) {
            cfg[i].name = m.config[i].name;
            cfg[i].value = m.config[i].value;
        }
    }
    ms_dock_moored_free(&bay->moored);
    free(bay->config);
    bay->moored = m;
    bay->config = cfg;
    bay->n_config = m.n_config;
    /* Only an echoed feature that we offered is in force. */
    bay->features = m.features & bay->offered;
    bay->dec.accept_binary = (bay->features & MS_DOCK_FEAT_BINARY) != 0;
    bay->state = ST_DOCKED;
    if (bay->cb.docked) {
        bay->in_callback++;
        bay->cb.docked(bay, bay->user);
        bay->in_callback--;
    }
}

static void handle_boarding(dock_bay *bay, const ms_dock_frame *fr)
{
    ms_dock_boarding b;
    char msg[200];
    if (ms_dock_parse_boarding(fr->payload, fr->len, &b, msg, sizeof msg) != 0) {
        ms_dock_boarding_free(&b);
        link_fail(bay, "%s", msg);
        return;
    }
    if (bay->cb.boarding) {
        dock_kv stack[STACK_HEADERS];
        dock_kv *h = stack;
        if (b.n_headers > STACK_HEADERS) {
            h = calloc(b.n_headers, sizeof *h);
            if (!h) {
                ms_dock_boarding_free(&b);
                link_fail(bay, "out of memory for %zu headers", b.n_headers);
                return;
            }
        }
        for (size_t i = 0; i < b.n_headers; i++) {
            h[i].name = b.headers[i].name;
            h[i].value = b.headers[i].value;
        }
        bay->in_callback++;
        bay->in_resumed = b.resumed;
        bay->cb.boarding(bay, b.conn_id, b.path, b.remote_addr, h, b.n_headers, bay->user);
        bay->in_resumed = false;
        bay->in_callback--;
        if (h != stack)
            free(h);
    }
    ms_dock_boarding_free(&b);
}

static void handle_disembark(dock_bay *bay, const ms_dock_frame *fr)
{
    ms_dock_disembark d;
    char msg[200];
    if (ms_dock_parse_disembark(fr->payload, fr->len, &d, msg, sizeof msg) != 0) {
        ms_dock_disembark_free(&d);
        link_fail(bay, "%s", msg);
        return;
    }
    if (bay->cb.disembark) {
        bay->in_callback++;
        bay->cb.disembark(bay, d.conn_id, d.code, d.reason, bay->user);
        bay->in_callback--;
    }
    ms_dock_disembark_free(&d);
}

static void handle_cargo(dock_bay *bay, const ms_dock_frame *fr)
{
    uint32_t conn_id;
    const uint8_t *msg;
    size_t len;
    bool binary = fr->type == MS_DOCK_CARGO_BINARY;
    if (ms_dock_parse_cargo(fr->payload, fr->len, &conn_id, &msg, &len) != 0) {
        link_fail(bay, "%s payload of %u bytes is shorter than its 4-byte conn_id",
                  binary ? "CargoBinary" : "Cargo", (unsigned)fr->len);
        return;
    }
    if (bay->cb.cargo) {
        bay->in_callback++;
        bay->cb.cargo(bay, conn_id, msg, len, binary, bay->user);
        bay->in_callback--;
    }
}

static void dispatch(dock_bay *bay, const ms_dock_frame *fr)
{
    const char *name = ms_dock_type_name(fr->type);
    if (!name)
        name = "unknown";
    if (!ms_dock_type_allowed(fr->type, false, bay->features)) {
        link_fail(bay, "Mothership sent a %s frame (0x%02x), which only a bay may send", name,
                  fr->type);
        return;
    }
    if (bay->state == ST_MOORING) {
        if (fr->type != MS_DOCK_MOORED) {
            link_fail(bay, "expected Moored after Dock, got %s (0x%02x)", name, fr->type);
            return;
        }
        handle_moored(bay, fr);
        return;
    }
    switch (fr->type) {
    case MS_DOCK_MOORED:
        link_fail(bay, "Mothership sent a second Moored frame");
        return;
    case MS_DOCK_BOARDING:
        handle_boarding(bay, fr);
        return;
    case MS_DOCK_DISEMBARK:
        handle_disembark(bay, fr);
        return;
    case MS_DOCK_CARGO:
    case MS_DOCK_CARGO_BINARY:
        handle_cargo(bay, fr);
        return;
    default:
        link_fail(bay, "unexpected frame type 0x%02x", fr->type);
        return;
    }
}

/* Reads what is available (bounded per call), dispatching whole frames;
 * none while read_held, unless the link hung up (its last frames say why). */
static void read_some(dock_bay *bay, bool hung_up)
{
    for (int round = 0; round < READ_BUDGET && !bay->link_failed; round++) {
        if (!hung_up && read_held(bay))
            return;   /* dock_bay_events asks for POLLIN again once flushed */
        ssize_t n = recv(bay->link_fd, bay->rbuf, READ_CHUNK, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            link_fail(bay, "reading the link failed: %s", strerror(errno));
            return;
        }
        if (n == 0) {
            if (ms_dock_decoder_finish(&bay->dec) != 0)
                link_fail(bay, "%s", ms_dock_decoder_message(&bay->dec));
            else
                link_fail(bay, "Mothership closed the link%s",
                          bay->state == ST_MOORING ? " before Moored" : "");
            return;
        }
        size_t off = 0;
        while (off < (size_t)n && !bay->link_failed) {
            ms_dock_frame fr;
            size_t used = 0;
            int rc = ms_dock_decoder_feed(&bay->dec, bay->rbuf + off, (size_t)n - off, &used, &fr);
            off += used;
            if (rc < 0) {
                link_fail(bay, "protocol error: %s", ms_dock_decoder_message(&bay->dec));
                return;
            }
            if (rc == 0)
                break;
            dispatch(bay, &fr);
        }
        if ((size_t)n < READ_CHUNK)
            return;   /* most likely drained; poll says when there is more */
    }
}

/* ---------------------------------------------------------------- the loop */

static int do_accept(dock_bay *bay, char *err, size_t err_len)
{
    int fd = accept4(bay->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        switch (errno) {
        case EINTR:
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
        case ECONNABORTED:
        case EPROTO:
            return DOCK_OK;   /* nothing (left) to accept */
        default:
            return seterr(err, err_len, DOCK_ERR_SYS, "accepting on %s failed: %s", bay->path,
                          strerror(errno));
        }
    }
    bay->link_fd = fd;
    bay->link_failed = false;
    bay->features = 0;
    ms_dock_decoder_free(&bay->dec);
    ms_dock_decoder_init(&bay->dec, bay->max_frame);
    out_clear(bay);
    bay->state = ST_MOORING;
    if (bay->moored_timeout_ms > 0)
        bay->deadline_ms = dock__now_ms() + bay->moored_timeout_ms;
    int rc = ms_dock_encode_dock(&bay->out, bay->ship, bay->offered);
    if (rc != 0)
        link_fail(bay, "cannot encode Dock: %s", ms_dock_err_name((ms_dock_err)rc));
    else
        flush_some(bay);
    return DOCK_OK;
}

int dock_bay_fd(const dock_bay *bay)
{
    if (!bay)
        return -1;
    return bay->link_fd >= 0 ? bay->link_fd : bay->listen_fd;
}

short dock_bay_events(const dock_bay *bay)
{
    if (!bay)
        return 0;
    if (bay->link_fd < 0)
        return POLLIN;
    return (short)((read_held(bay) ? 0 : POLLIN) | (pending(bay) ? POLLOUT : 0));
}

int dock_bay_timeout(const dock_bay *bay)
{
    if (!bay)
        return -1;
    if (bay->link_failed)
        return 0;
    if (bay->state != ST_MOORING || bay->moored_timeout_ms <= 0)
        return -1;
    int64_t left = bay->deadline_ms - dock__now_ms();
    if (left < 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

int dock_bay_process(dock_bay *bay, short revents, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    if (bay->in_callback)
        return seterr(err, err_len, DOCK_ERR_BUSY, "dock_bay_process called from a callback");
    if (bay->link_fd < 0) {
        if (!(revents & (POLLIN | POLLERR | POLLHUP)))
            return DOCK_OK;
        int rc = do_accept(bay, err, err_len);
        if (rc != DOCK_OK)
            return rc;
        if (bay->link_failed)
            return end_link(bay, err, err_len);
        return DOCK_OK;
    }
    /* Read first: a peer that closed the link is reported by what it sent
     * (or left truncated), not by the write error that would follow. */
    if (revents & (POLLIN | POLLERR | POLLHUP))
        read_some(bay, (revents & (POLLERR | POLLHUP)) != 0);
    if (!bay->link_failed && pending(bay))
        flush_some(bay);
    if (!bay->link_failed && bay->state == ST_MOORING && bay->moored_timeout_ms > 0
        && dock__now_ms() >= bay->deadline_ms)
        link_fail(bay, "no Moored within %d ms of Dock", bay->moored_timeout_ms);
    if (bay->link_failed)
        return end_link(bay, err, err_len);
    return DOCK_OK;
}

int dock_bay_run(dock_bay *bay, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    if (bay->in_callback)
        return seterr(err, err_len, DOCK_ERR_BUSY, "dock_bay_run called from a callback");
    for (;;) {
        if (bay->stop) {
            drain_wake(bay);
            return seterr(err, err_len, DOCK_STOPPED, "stopped");
        }
        struct pollfd p[2] = {
            { .fd = dock_bay_fd(bay), .events = dock_bay_events(bay) },
            { .fd = bay->wake_r, .events = POLLIN },
        };
        int n = poll(p, 2, dock_bay_timeout(bay));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return seterr(err, err_len, DOCK_ERR_SYS, "poll: %s", strerror(errno));
        }
        if (p[1].revents)
            drain_wake(bay);
        int rc = dock_bay_process(bay, p[0].revents, err, err_len);
        if (rc != DOCK_OK)
            return rc;
    }
}

/* ---------------------------------------------------------------- sending */

static int check_sendable(const dock_bay *bay, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    if (bay->link_fd < 0)
        return seterr(err, err_len, DOCK_ERR_NOLINK, "not docked: there is no link to Mothership");
    if (bay->link_failed)
        return seterr(err, err_len, DOCK_ERR_NOLINK, "not docked: the link is ending (%s)",
                      bay->fail_msg);
    if (bay->state != ST_DOCKED)
        return seterr(err, err_len, DOCK_ERR_NOLINK, "not docked: Moored not received yet");
    return DOCK_OK;
}

/* After an encoder appended one frame at `before`: enforce the frame limit
 * and the output cap (rolling the frame back), then try to write. */
static int commit_frame(dock_bay *bay, size_t before, const char *what, char *err, size_t err_len)
{
    size_t frame = bay->out.len - before;
    if (frame - MS_DOCK_HEADER_LEN > bay->max_frame) {
        bay->out.len = before;
        return seterr(err, err_len, DOCK_ERR_TOOBIG,
                      "%s frame of %zu bytes exceeds the maximum of %u", what,
                      frame - MS_DOCK_HEADER_LEN, (unsigned)bay->max_frame);
    }
    size_t was_pending = before - bay->out_off;
    if (was_pending > 0 && pending(bay) > bay->max_pending) {
        bay->out.len = before;
        return seterr(err, err_len, DOCK_ERR_FULL,
                      "output buffer full: %zu bytes pending, %zu more would exceed the cap of %zu",
                      was_pending, frame, bay->max_pending);
    }
    flush_some(bay);   /* a write error ends the link at the next process call */
    return DOCK_OK;
}

static int encode_error(int rc, const char *what, char *err, size_t err_len)
{
    switch (rc) {
    case MS_DOCK_E_NOMEM:
        return seterr(err, err_len, DOCK_ERR_NOMEM, "%s: out of memory", what);
    case MS_DOCK_E_OVERSIZE:
        return seterr(err, err_len, DOCK_ERR_TOOBIG, "%s: message too large", what);
    case MS_DOCK_E_FIELD:
        return seterr(err, err_len, DOCK_ERR_ARG, "%s: a string is not valid UTF-8", what);
    default:
        return seterr(err, err_len, DOCK_ERR_ARG, "%s: %s", what, ms_dock_err_name((ms_dock_err)rc));
    }
}

int dock_bay_send_cargo(dock_bay *bay, uint32_t conn_id, const void *data, size_t len,
                        bool binary, char *err, size_t err_len)
{
    int rc = check_sendable(bay, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    const char *what = binary ? "CargoBinary" : "Cargo";
    if (binary && !(bay->features & MS_DOCK_FEAT_BINARY))
        return seterr(err, err_len, DOCK_ERR_BINARY,
                      "cannot send a binary message: the \"binary\" feature was not agreed on "
                      "this link%s", bay->offered ? "" : " (the bay docked as v1 only)");
    if (!data && len)
        return seterr(err, err_len, DOCK_ERR_ARG, "%s: no data", what);
    if (len > bay->max_frame - 4)
        return seterr(err, err_len, DOCK_ERR_TOOBIG,
                      "%s message of %zu bytes exceeds the maximum of %u", what, len,
                      (unsigned)(bay->max_frame - 4));
    size_t was_pending = pending(bay);
    if (was_pending > 0 && (was_pending >= bay->max_pending
                            || MS_DOCK_CARGO_HEADER_LEN + len > bay->max_pending - was_pending))
        return seterr(err, err_len, DOCK_ERR_FULL,
                      "output buffer full: %zu bytes pending, %zu more would exceed the cap of %zu",
                      was_pending, MS_DOCK_CARGO_HEADER_LEN + len, bay->max_pending);
    out_compact(bay);
    size_t before = bay->out.len;
    rc = ms_dock_encode_cargo(&bay->out, conn_id, data, len, binary);
    if (rc != 0)
        return encode_error(rc, what, err, err_len);
    return commit_frame(bay, before, what, err, err_len);
}

int dock_bay_send_text(dock_bay *bay, uint32_t conn_id, const char *text, char *err,
                       size_t err_len)
{
    if (!text)
        return seterr(err, err_len, DOCK_ERR_ARG, "Cargo: no text");
    return dock_bay_send_cargo(bay, conn_id, text, strlen(text), false, err, err_len);
}

int dock_bay_send_disembark(dock_bay *bay, uint32_t conn_id, uint16_t code,
                            const char *reason, char *err, size_t err_len)
{
    int rc = check_sendable(bay, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (reason && strlen(reason) > bay->max_frame)
        return seterr(err, err_len, DOCK_ERR_TOOBIG, "Disembark: reason of %zu bytes is too long",
                      strlen(reason));
    out_compact(bay);
    size_t before = bay->out.len;
    rc = ms_dock_encode_disembark(&bay->out, conn_id, code, reason ? reason : "");
    if (rc != 0)
        return encode_error(rc, "Disembark", err, err_len);
    return commit_frame(bay, before, "Disembark", err, err_len);
}

int dock_bay_flush(dock_bay *bay, int timeout_ms, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    if (bay->in_callback)
        return seterr(err, err_len, DOCK_ERR_BUSY, "dock_bay_flush called from a callback");
    if (bay->link_fd < 0)
        return seterr(err, err_len, DOCK_ERR_NOLINK, "not docked: there is no link to Mothership");
    int64_t deadline = timeout_ms >= 0 ? dock__now_ms() + timeout_ms : 0;
    for (;;) {
        flush_some(bay);
        if (bay->link_failed)
            return end_link(bay, err, err_len);
        if (!pending(bay))
            return DOCK_OK;
        int wait = -1;
        if (timeout_ms >= 0) {
            int64_t left = deadline - dock__now_ms();
            if (left <= 0)
                return seterr(err, err_len, DOCK_ERR_FULL,
                              "flush timed out with %zu bytes pending", pending(bay));
            wait = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = { .fd = bay->link_fd, .events = POLLOUT };
        int n = poll(&p, 1, wait);
        if (n < 0 && errno != EINTR)
            return seterr(err, err_len, DOCK_ERR_SYS, "poll: %s", strerror(errno));
    }
}

size_t dock_bay_pending(const dock_bay *bay)
{
    return bay ? pending(bay) : 0;
}

/* ---------------------------------------------------------------- state */

bool dock_bay_docked(const dock_bay *bay)
{
    return bay && bay->link_fd >= 0 && bay->state == ST_DOCKED && !bay->link_failed;
}

bool dock_bay_binary(const dock_bay *bay)
{
    return bay && bay->link_fd >= 0 && (bay->features & MS_DOCK_FEAT_BINARY) != 0;
}

bool dock_bay_resume(const dock_bay *bay)
{
    return bay && bay->link_fd >= 0 && (bay->features & MS_DOCK_FEAT_RESUME) != 0;
}

bool dock_bay_boarding_resumed(const dock_bay *bay)
{
    return bay && bay->in_resumed;
}

const char *dock_bay_ship(const dock_bay *bay)
{
    return bay ? bay->ship : NULL;
}

const char *dock_bay_socket_path(const dock_bay *bay)
{
    return bay ? bay->path : NULL;
}

const char *dock_bay_config(const dock_bay *bay, const char *key)
{
    if (!bay || !key)
        return NULL;
    for (size_t i = 0; i < bay->n_config; i++)
        if (strcmp(bay->config[i].name, key) == 0)
            return bay->config[i].value;
    return NULL;
}

size_t dock_bay_config_count(const dock_bay *bay)
{
    return bay ? bay->n_config : 0;
}

const dock_kv *dock_bay_config_at(const dock_bay *bay, size_t i)
{
    if (!bay || i >= bay->n_config)
        return NULL;
    return &bay->config[i];
}
