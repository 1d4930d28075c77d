/* dock_http.c: libdock's HTTP side, the bay's end of docking v3 (see
 * dock.h and docs/libdock.md). A listening Unix socket many threads accept
 * on, and per link: Dock v3 / Moored v3, then one request at a time: HAIL
 * (params), body HAULs, REPLY, response HAULs, READY; tunnels and file
 * replies too. Blocking I/O on plain POSIX sockets.
 *
 * The v3 payloads are encoded and checked here (the frame types and limits
 * come from src/dock/protocol.h, so both ends agree on them); JSON of
 * Dock/Moored through jansson.
 *
 * A link's request, as the calls move it:
 *
 *   IDLE --HAIL--> HEAD_DUE --reply(empty|file)--> DONE --READY--> IDLE
 *                     |  \--reply(stream)--> BODY --finish--> DONE
 *                     |   \--reply(tunnel)--> TUNNEL --(link closes)
 *                     \--fail: 500 + READY --> IDLE
 *
 * Reading (the request body, then a tunnel's bytes) runs beside it with its
 * own state (in_*), so a tunnel may be read on one thread and written on
 * another. Any protocol error or I/O failure breaks the link for good. */
#include "libdock/dock.h"
#include "libdock/dock_impl.h"

#include "dock/protocol.h"

#include <jansson.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(DOCK_HTTP_CHUNK == MS_DOCK_V3_CHUNK, "HAUL chunk size agrees with Mothership's");
_Static_assert(DOCK_HTTP_MAX_FRAME == MS_DOCK_V3_MAX_FRAME, "frame limit agrees with Mothership's");
_Static_assert(DOCK_HTTP_MAX_THREADS == MS_DOCK_V3_MAX_THREADS, "threads limit agrees");
_Static_assert((int)DOCK_REPLY_EMPTY == (int)MS_DOCK_REPLY_EMPTY
                   && (int)DOCK_REPLY_STREAM == (int)MS_DOCK_REPLY_STREAM
                   && (int)DOCK_REPLY_FILE == (int)MS_DOCK_REPLY_FILE
                   && (int)DOCK_REPLY_TUNNEL == (int)MS_DOCK_REPLY_TUNNEL,
               "REPLY kinds agree");

#define RBUF_SIZE (64u * 1024u)
#define LISTEN_BACKLOG 1024
#define REPLY_FIXED 11u        /* request_id u32 | status u16 | kind u8 | header_count u32 */
#define HAIL_FIXED 16u         /* request_id u32 | content_length u64 | param_count u32 */

struct dock_http {
    int listen_fd;
    int wake_r, wake_w;        /* self-pipe: readable for good once stopped */
    volatile sig_atomic_t stop;
    char *path;
    char *ship;
    unsigned threads;
    unsigned workers;
    int moored_timeout_ms;
    dev_t sock_dev;
    ino_t sock_ino;
    bool sock_known;
    pid_t opener;              /* only this process removes the socket file */
};

typedef enum {
    RQ_IDLE,        /* no request: the next HAIL may come */
    RQ_HEAD_DUE,    /* HAIL received, no REPLY yet */
    RQ_BODY,        /* REPLY stream sent, FIN not yet */
    RQ_DONE,        /* the reply is complete, READY not sent */
    RQ_TUNNEL,      /* REPLY tunnel sent: the link ends with the tunnel */
} req_state;

struct dock_link {
    dock_http *bay;
    int fd;
    atomic_bool broken;
    char why[256];             /* why the link broke (first reason wins) */
    atomic_flag why_set;
    /* Moored */
    dock_kv *config;
    size_t n_config;
    /* the request */
    req_state rq;
    uint32_t request_id;
    uint64_t content_length;
    dock_param *params;
    size_t n_params;
    char *param_mem;
    bool is_head;
    /* reading: buffered link bytes, and the HAUL being delivered */
    uint8_t rbuf[RBUF_SIZE];
    size_t rpos, rlen;
    uint32_t in_left;          /* data bytes of the current HAUL not yet delivered */
    bool in_frame_fin;         /* the current HAUL carries FIN */
    bool in_fin;               /* Mothership's direction of this phase has ended */
    bool in_tunnel;            /* reading a tunnel's bytes (after the body) */
    uint64_t in_announced;     /* body bytes announced by HAUL headers so far */
    atomic_bool tunnel_due;    /* REPLY tunnel sent: after the body FIN, HAULs are tunnel bytes */
};

static dock_http *volatile g_signal_http;

/* ---------------------------------------------------------------- helpers */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static const char *frame_name(uint8_t type)
{
    switch (type) {
    case MS_DOCK_DOCK: return "DOCK";
    case MS_DOCK_MOORED: return "MOORED";
    case MS_DOCK_HAIL: return "HAIL";
    case MS_DOCK_HAUL: return "HAUL";
    case MS_DOCK_REPLY: return "REPLY";
    case MS_DOCK_READY: return "READY";
    default: return NULL;
    }
}

/* The reason of a link that is broken (once broken is set, why is
 * written; before that, the other thread of a tunnel is writing it). */
static int link_ended(dock_link *link, char *err, size_t err_len)
{
    if (!atomic_load(&link->broken))
        return seterr(err, err_len, DOCK_LINK_ENDED, "the link is broken off");
    return seterr(err, err_len, DOCK_LINK_ENDED, "%s", link->why);
}

/* Breaks the link for good; the first reason wins. Returns DOCK_LINK_ENDED
 * with the reason in err. */
static int link_break(dock_link *link, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int link_break(dock_link *link, char *err, size_t err_len, const char *fmt, ...)
{
    if (!atomic_flag_test_and_set(&link->why_set)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(link->why, sizeof link->why, fmt, ap);
        va_end(ap);
        atomic_store(&link->broken, true);
        shutdown(link->fd, SHUT_RDWR);   /* the other thread of a tunnel wakes up */
    }
    return link_ended(link, err, err_len);
}


/* ---------------------------------------------------------------- writing */

/* Writes the iovecs whole (blocking), or breaks the link. */
static int send_all(dock_link *link, struct iovec *iov, int n, char *err, size_t err_len)
{
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    while (n > 0) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(link->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd p = { .fd = link->fd, .events = POLLOUT };
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                    return link_break(link, err, err_len, "poll: %s", strerror(errno));
                continue;
            }
            return link_break(link, err, err_len, "writing to the link failed: %s", strerror(errno));
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return DOCK_OK;
}

static void frame_header(uint8_t h[MS_DOCK_HEADER_LEN], uint8_t type, uint32_t len)
{
    h[0] = type;
    put32(h + 1, len);
}

/* HAULs of at most DOCK_HTTP_CHUNK bytes; fin on the last (an empty HAUL
 * when len is 0). */
static int send_hauls(dock_link *link, const uint8_t *data, size_t len, bool fin, char *err,
                      size_t err_len)
{
    do {
        size_t n = len < DOCK_HTTP_CHUNK ? len : DOCK_HTTP_CHUNK;
        bool last = n == len;
        uint8_t h[MS_DOCK_HAUL_HEADER_LEN];
        frame_header(h, MS_DOCK_HAUL, (uint32_t)(n + 5));
        put32(h + 5, link->request_id);
        h[9] = last && fin ? MS_DOCK_HAUL_FIN : 0;
        struct iovec iov[2] = { { h, sizeof h }, { (void *)data, n } };
        int rc = send_all(link, iov, n ? 2 : 1, err, err_len);
        if (rc != DOCK_OK)
            return rc;
        if (n) {   /* data may be NULL for the empty FIN */
            data += n;
            len -= n;
        }
    } while (len > 0);
    return DOCK_OK;
}

static int send_ready(dock_link *link, char *err, size_t err_len)
{
    assert(link->rq == RQ_DONE);
    uint8_t f[MS_DOCK_HEADER_LEN + 4];
    frame_header(f, MS_DOCK_READY, 4);
    put32(f + 5, link->request_id);
    struct iovec iov = { f, sizeof f };
    int rc = send_all(link, &iov, 1, err, err_len);
    if (rc == DOCK_OK)
        link->rq = RQ_IDLE;
    return rc;
}

/* ---------------------------------------------------------------- reading */

typedef enum { FILL_OK, FILL_EOF, FILL_ERR, FILL_TIMEOUT, FILL_STOPPED } fill_result;

/* Reads more link bytes into rbuf (compacting it first). deadline: a
 * monotonic ms deadline, or -1. watch_stop: return FILL_STOPPED when the bay
 * is stopped (only between frames). */
static fill_result fill(dock_link *link, int64_t deadline, bool watch_stop)
{
    if (link->rpos > 0) {
        memmove(link->rbuf, link->rbuf + link->rpos, link->rlen - link->rpos);
        link->rlen -= link->rpos;
        link->rpos = 0;
    }
    for (;;) {
        if (atomic_load(&link->broken))
            return FILL_ERR;
        if (deadline >= 0 || watch_stop) {
            if (watch_stop && link->bay->stop) {
                /* A HAIL that is already here is served: drain, not drop. */
                struct pollfd q = { .fd = link->fd, .events = POLLIN };
                if (poll(&q, 1, 0) <= 0)
                    return FILL_STOPPED;
                watch_stop = false;
            }
            int wait = -1;
            if (deadline >= 0) {
                int64_t left = deadline - dock__now_ms();
                if (left <= 0)
                    return FILL_TIMEOUT;
                wait = left > INT_MAX ? INT_MAX : (int)left;
            }
            struct pollfd p[2] = {
                { .fd = link->fd, .events = POLLIN },
                { .fd = link->bay->wake_r, .events = POLLIN },
            };
            int n = poll(p, watch_stop ? 2 : 1, wait);
            if (n < 0 && errno != EINTR) {
                link_break(link, NULL, 0, "poll: %s", strerror(errno));
                return FILL_ERR;
            }
            if (n <= 0 || !p[0].revents)
                continue;
        }
        ssize_t r = recv(link->fd, link->rbuf + link->rlen, RBUF_SIZE - link->rlen, 0);
        if (r > 0) {
            link->rlen += (size_t)r;
            return FILL_OK;
        }
        if (r == 0)
            return FILL_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd p = { .fd = link->fd, .events = POLLIN };
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                link_break(link, NULL, 0, "poll: %s", strerror(errno));
                return FILL_ERR;
            }
            continue;
        }
        link_break(link, NULL, 0, "reading the link failed: %s", strerror(errno));
        return FILL_ERR;
    }
}

/* Makes at least need (<= RBUF_SIZE) bytes available in rbuf. at_start:
 * the bytes begin a frame (a link that ends before them ended cleanly).
 * what names the frame for the error of a link that ends early. */
static int need_bytes(dock_link *link, size_t need, int64_t deadline, bool at_start,
                      bool watch_stop, const char *what, char *err, size_t err_len)
{
    while (link->rlen - link->rpos < need) {
        bool between = at_start && link->rlen == link->rpos;
        fill_result f = fill(link, deadline, watch_stop && between);
        switch (f) {
        case FILL_OK:
            continue;
        case FILL_STOPPED:
            return seterr(err, err_len, DOCK_STOPPED, "stopped");
        case FILL_TIMEOUT:
            return link_break(link, err, err_len, "no %s within %d ms", what,
                              link->bay->moored_timeout_ms);
        case FILL_EOF:
            if (between)
                return link_break(link, err, err_len, "Mothership closed the link");
            return link_break(link, err, err_len, "the link ended inside a %s frame", what);
        case FILL_ERR:
            return link_ended(link, err, err_len);
        }
    }
    return DOCK_OK;
}

/* Reads one frame header; checks the type may come from Mothership and the
 * length is within the limit. */
static int read_header(dock_link *link, uint8_t *type, uint32_t *len, int64_t deadline,
                       bool watch_stop, const char *what, char *err, size_t err_len)
{
    int rc = need_bytes(link, MS_DOCK_HEADER_LEN, deadline, true, watch_stop, what, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    *type = link->rbuf[link->rpos];
    *len = get32(link->rbuf + link->rpos + 1);
    link->rpos += MS_DOCK_HEADER_LEN;
    const char *name = frame_name(*type);
    if (!name)
        return link_break(link, err, err_len, "protocol error: unknown frame type 0x%02x", *type);
    if (*type != MS_DOCK_MOORED && *type != MS_DOCK_HAIL && *type != MS_DOCK_HAUL)
        return link_break(link, err, err_len,
                          "protocol error: Mothership sent a %s frame (0x%02x), which only a bay "
                          "may send", name, *type);
    if (*len > DOCK_HTTP_MAX_FRAME)
        return link_break(link, err, err_len,
                          "protocol error: %s frame of %u bytes exceeds the maximum of %u", name,
                          (unsigned)*len, DOCK_HTTP_MAX_FRAME);
    return DOCK_OK;
}

/* Reads a whole payload of len bytes into a malloc'd buffer. */
static int read_payload(dock_link *link, uint32_t len, const char *what, uint8_t **out,
                        int64_t deadline, char *err, size_t err_len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return link_break(link, err, err_len, "out of memory for a %s of %u bytes", what,
                          (unsigned)len);
    size_t have = 0;
    while (have < len) {
        if (link->rpos == link->rlen) {
            int rc = need_bytes(link, 1, deadline, false, false, what, err, err_len);
            if (rc != DOCK_OK) {
                free(p);
                return rc;
            }
        }
        size_t n = link->rlen - link->rpos;
        if (n > len - have)
            n = len - have;
        memcpy(p + have, link->rbuf + link->rpos, n);
        link->rpos += n;
        have += n;
    }
    *out = p;
    return DOCK_OK;
}

/* Reads the request id and flags of a HAUL whose header was just read and
 * checks it against the request and the phase. */
static int begin_haul(dock_link *link, uint32_t len, char *err, size_t err_len)
{
    if (len < 5)
        return link_break(link, err, err_len,
                          "protocol error: HAUL payload of %u bytes is shorter than its 5-byte "
                          "request id and flags", (unsigned)len);
    int rc = need_bytes(link, 5, -1, false, false, "HAUL", err, err_len);
    if (rc != DOCK_OK)
        return rc;
    uint32_t id = get32(link->rbuf + link->rpos);
    uint8_t flags = link->rbuf[link->rpos + 4];
    link->rpos += 5;
    uint32_t data = len - 5;
    if (flags & ~MS_DOCK_HAUL_FIN)
        return link_break(link, err, err_len, "protocol error: HAUL with unknown flags 0x%02x",
                          flags);
    if (id != link->request_id)
        return link_break(link, err, err_len,
                          "protocol error: HAUL for request %u during request %u", (unsigned)id,
                          (unsigned)link->request_id);
    if (link->in_fin)
        return link_break(link, err, err_len, "protocol error: HAUL after FIN for request %u",
                          (unsigned)id);
    bool fin = flags & MS_DOCK_HAUL_FIN;
    if (!link->in_tunnel) {
        if (data > link->content_length - link->in_announced)
            return link_break(link, err, err_len,
                              "protocol error: more request body than the %llu bytes announced",
                              (unsigned long long)link->content_length);
        link->in_announced += data;
        if (fin && link->in_announced < link->content_length)
            return link_break(link, err, err_len,
                              "protocol error: FIN after %llu of the %llu bytes of request body "
                              "announced", (unsigned long long)link->in_announced,
                              (unsigned long long)link->content_length);
    }
    link->in_left = data;
    link->in_frame_fin = fin;
    if (data == 0 && fin)
        link->in_fin = true;
    return DOCK_OK;
}

/* Enters the tunnel phase when the body is over and a tunnel was replied. */
static void maybe_enter_tunnel(dock_link *link)
{
    if (!link->in_tunnel && link->in_fin && link->in_left == 0 && atomic_load(&link->tunnel_due)) {
        link->in_tunnel = true;
        link->in_fin = false;
    }
}

/* Delivers up to cap bytes of the current HAUL(s); *got 0 at FIN. */
static int read_in(dock_link *link, void *buf, size_t cap, size_t *got, char *err, size_t err_len)
{
    *got = 0;
    for (;;) {
        maybe_enter_tunnel(link);
        if (link->in_left == 0) {
            if (link->in_fin || cap == 0)
                return DOCK_OK;
            uint8_t type;
            uint32_t len;
            int rc = read_header(link, &type, &len, -1, false, "HAUL", err, err_len);
            if (rc != DOCK_OK)
                return rc;
            if (type != MS_DOCK_HAUL)
                return link_break(link, err, err_len,
                                  "protocol error: %s during request %u, before its READY",
                                  frame_name(type), (unsigned)link->request_id);
            rc = begin_haul(link, len, err, err_len);
            if (rc != DOCK_OK)
                return rc;
            continue;
        }
        size_t want = cap < link->in_left ? cap : link->in_left;
        size_t n;
        if (link->rpos < link->rlen) {
            n = link->rlen - link->rpos;
            if (n > want)
                n = want;
            memcpy(buf, link->rbuf + link->rpos, n);
            link->rpos += n;
        } else {
            ssize_t r = recv(link->fd, buf, want, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                struct pollfd p = { .fd = link->fd, .events = POLLIN };
                poll(&p, 1, -1);
                continue;
            }
            if (r < 0)
                return link_break(link, err, err_len, "reading the link failed: %s",
                                  strerror(errno));
            if (r == 0)
                return link_break(link, err, err_len, "the link ended inside a HAUL frame");
            n = (size_t)r;
        }
        link->in_left -= (uint32_t)n;
        if (link->in_left == 0 && link->in_frame_fin)
            link->in_fin = true;
        *got = n;
        return DOCK_OK;
    }
}

int dock_link_read(dock_link *link, void *buf, size_t cap, size_t *got, char *err, size_t err_len)
{
    *got = 0;
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    if (link->request_id == 0 || link->rq == RQ_IDLE)
        return seterr(err, err_len, DOCK_ERR_STATE, "no request on this link");
    if (!buf && cap)
        return seterr(err, err_len, DOCK_ERR_ARG, "no buffer");
    return read_in(link, buf, cap, got, err, err_len);
}

int dock_link_read_body(dock_link *link, size_t max, uint8_t **body, size_t *len, char *err,
                        size_t err_len)
{
    *body = NULL;
    *len = 0;
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (link->content_length > max)
        return seterr(err, err_len, DOCK_ERR_TOOBIG,
                      "request body of %llu bytes is over the limit of %zu",
                      (unsigned long long)link->content_length, max);
    if (link->in_tunnel)
        return seterr(err, err_len, DOCK_ERR_STATE, "the request body is over: this is a tunnel");
    /* What dock_link_read delivered before this call is not read again. */
    size_t room = (size_t)(link->content_length - (link->in_announced - link->in_left));
    uint8_t *p = malloc(room + 1);
    if (!p)
        return seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory for a body of %zu bytes", room);
    size_t off = 0;
    while (!(off == room && link->in_fin)) {
        /* Once the buffer is full only an empty FIN may follow: read it
         * into a probe byte (more data is refused as a protocol error). */
        uint8_t probe;
        size_t got;
        int rc = off < room ? dock_link_read(link, p + off, room - off, &got, err, err_len)
                            : dock_link_read(link, &probe, 1, &got, err, err_len);
        if (rc != DOCK_OK) {
            free(p);
            return rc;
        }
        if (got == 0)
            break;
        off += got;
    }
    p[off] = 0;
    if (off == 0) {
        free(p);
        p = NULL;
    }
    *body = p;
    *len = off;
    return DOCK_OK;
}

/* ---------------------------------------------------------------- the request */

static void clear_request(dock_link *link)
{
    free(link->params);
    free(link->param_mem);
    link->params = NULL;
    link->param_mem = NULL;
    link->n_params = 0;
}

/* HAIL: request_id u32 | content_length u64 | param_count u32 | (string
 * name, string value) * param_count, nothing left over. */
static int take_hail(dock_link *link, const uint8_t *p, uint32_t len, char *err, size_t err_len)
{
    if (len < HAIL_FIXED)
        return link_break(link, err, err_len,
                          "protocol error: HAIL payload of %u bytes is shorter than its %u fixed "
                          "bytes", (unsigned)len, HAIL_FIXED);
    uint32_t id = get32(p);
    uint64_t cl = get64(p + 4);
    uint32_t count = get32(p + 12);
    if (count > (len - HAIL_FIXED) / 8)
        return link_break(link, err, err_len,
                          "protocol error: HAIL announces %u params, more than its %u bytes hold",
                          (unsigned)count, (unsigned)len);
    dock_param *params = count ? calloc(count, sizeof *params) : NULL;
    /* Each string is copied with a NUL after it: at most len bytes in all. */
    char *mem = malloc((size_t)len + 1);
    if ((count && !params) || !mem) {
        free(params);
        free(mem);
        return link_break(link, err, err_len, "out of memory for a HAIL of %u bytes",
                          (unsigned)len);
    }
    size_t off = HAIL_FIXED, m = 0;
    for (uint32_t i = 0; i < count; i++) {
        for (int k = 0; k < 2; k++) {
            if (len - off < 4)
                goto truncated;
            uint32_t n = get32(p + off);
            off += 4;
            if (n > len - off)
                goto truncated;
            char *s = mem + m;
            memcpy(s, p + off, n);
            s[n] = 0;
            off += n;
            m += (size_t)n + 1;
            if (k == 0) {
                params[i].name = s;
                params[i].name_len = n;
            } else {
                params[i].value = s;
                params[i].value_len = n;
            }
        }
    }
    if (off != len) {
        free(params);
        free(mem);
        return link_break(link, err, err_len,
                          "protocol error: %u bytes left over after the params of a HAIL",
                          (unsigned)(len - off));
    }
    assert(link->rq == RQ_IDLE);
    clear_request(link);
    link->params = params;
    link->param_mem = mem;
    link->n_params = count;
    link->request_id = id;
    link->content_length = cl;
    link->rq = RQ_HEAD_DUE;
    link->in_left = 0;
    link->in_frame_fin = false;
    link->in_fin = cl == 0;   /* no body: no HAUL comes */
    link->in_tunnel = false;
    link->in_announced = 0;
    atomic_store(&link->tunnel_due, false);
    const char *method = dock_link_param(link, "REQUEST_METHOD");
    link->is_head = method && strcmp(method, "HEAD") == 0;
    return DOCK_OK;
truncated:
    free(params);
    free(mem);
    return link_break(link, err, err_len, "protocol error: a HAIL param runs past the frame's end");
}

/* Ends the current request before the next HAIL (see dock_link_next). */
static int end_request(dock_link *link, char *err, size_t err_len)
{
    switch (link->rq) {
    case RQ_IDLE:
        break;
    case RQ_TUNNEL:
        return link_break(link, err, err_len, "the tunnel of request %u ended; the link closes",
                          (unsigned)link->request_id);
    case RQ_BODY:
        return link_break(link, err, err_len,
                          "the reply to request %u was left unfinished (no FIN); the link is "
                          "broken off", (unsigned)link->request_id);
    case RQ_HEAD_DUE: {
        int rc = dock_link_fail(link, err, err_len);
        if (rc != DOCK_OK)
            return rc;
        break;
    }
    case RQ_DONE: {
        int rc = send_ready(link, err, err_len);
        if (rc != DOCK_OK)
            return rc;
        break;
    }
    }
    /* Unread request body is skipped. */
    while (!link->in_fin || link->in_left) {
        uint8_t sink[4096];
        size_t got;
        int rc = read_in(link, sink, sizeof sink, &got, err, err_len);
        if (rc != DOCK_OK)
            return rc;
        if (got == 0)
            break;
    }
    return DOCK_OK;
}

int dock_link_next(dock_link *link, char *err, size_t err_len)
{
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    int rc = end_request(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    uint8_t type;
    uint32_t len;
    rc = read_header(link, &type, &len, -1, true, "HAIL", err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (type == MS_DOCK_HAUL && link->request_id == 0)
        return link_break(link, err, err_len, "protocol error: HAUL before any HAIL");
    if (type == MS_DOCK_HAUL)
        return link_break(link, err, err_len, "protocol error: HAUL after READY (request %u)",
                          (unsigned)link->request_id);
    if (type != MS_DOCK_HAIL)
        return link_break(link, err, err_len, "protocol error: %s while waiting for a HAIL",
                          frame_name(type));
    uint8_t *p;
    rc = read_payload(link, len, "HAIL", &p, -1, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    rc = take_hail(link, p, len, err, err_len);
    free(p);
    return rc;
}

uint32_t dock_link_request_id(const dock_link *link)
{
    return link ? link->request_id : 0;
}

uint64_t dock_link_content_length(const dock_link *link)
{
    return link ? link->content_length : 0;
}

const char *dock_link_param(const dock_link *link, const char *name)
{
    if (!link || !name)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i < link->n_params; i++)
        if (link->params[i].name_len == n && memcmp(link->params[i].name, name, n) == 0)
            return link->params[i].value;
    return NULL;
}

size_t dock_link_param_count(const dock_link *link)
{
    return link ? link->n_params : 0;
}

const dock_param *dock_link_param_at(const dock_link *link, size_t i)
{
    if (!link || i >= link->n_params)
        return NULL;
    return &link->params[i];
}

/* ---------------------------------------------------------------- replying */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int check_headers(const dock_kv *headers, size_t n, size_t *bytes, char *err,
                         size_t err_len)
{
    if (n && !headers)
        return seterr(err, err_len, DOCK_ERR_ARG, "no headers");
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = headers[i].name, *value = headers[i].value;
        if (!name || !*name || !value)
            return seterr(err, err_len, DOCK_ERR_ARG, "header %zu has no name or no value", i);
        for (const char *c = name; *c; c++)
            if (!is_tchar((unsigned char)*c))
                return seterr(err, err_len, DOCK_ERR_ARG,
                              "header name \"%s\" holds a character a header name may not",
                              name);
        if (strpbrk(value, "\r\n"))
            return seterr(err, err_len, DOCK_ERR_ARG, "the value of header %s holds CR or LF",
                          name);
        size_t nl = strlen(name), vl = strlen(value);
        if (nl > DOCK_HTTP_MAX_FRAME || vl > DOCK_HTTP_MAX_FRAME)
            return seterr(err, err_len, DOCK_ERR_TOOBIG, "header %s is too large", name);
        total += 8 + nl + vl;
        if (total > DOCK_HTTP_MAX_FRAME)
            return seterr(err, err_len, DOCK_ERR_TOOBIG,
                          "the response head is over the maximum frame of %u bytes",
                          DOCK_HTTP_MAX_FRAME);
    }
    *bytes = total;
    return DOCK_OK;
}

static int head_due(dock_link *link, char *err, size_t err_len)
{
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    if (link->rq != RQ_HEAD_DUE)
        return seterr(err, err_len, DOCK_ERR_STATE, link->rq == RQ_IDLE
                      ? "no request to reply to" : "the reply head was sent already");
    return DOCK_OK;
}

/* REPLY: request_id u32 | status u16 | kind u8 | header_count u32 |
 * headers | (kind file) path. */
static int send_reply(dock_link *link, uint16_t status, uint8_t kind, const dock_kv *headers,
                      size_t n, const char *path, char *err, size_t err_len)
{
    size_t bytes = 0;
    int rc = check_headers(headers, n, &bytes, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    size_t plen = path ? strlen(path) : 0;
    size_t total = REPLY_FIXED + bytes + (path ? 4 + plen : 0);
    if (total > DOCK_HTTP_MAX_FRAME)
        return seterr(err, err_len, DOCK_ERR_TOOBIG,
                      "the response head (%zu bytes) is over the maximum frame of %u bytes",
                      total, DOCK_HTTP_MAX_FRAME);
    uint8_t *f = malloc(MS_DOCK_HEADER_LEN + total);
    if (!f)
        return seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory for a REPLY");
    frame_header(f, MS_DOCK_REPLY, (uint32_t)total);
    uint8_t *q = f + MS_DOCK_HEADER_LEN;
    put32(q, link->request_id);
    q[4] = (uint8_t)(status >> 8);
    q[5] = (uint8_t)status;
    q[6] = kind;
    put32(q + 7, (uint32_t)n);
    q += REPLY_FIXED;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            const char *s = k ? headers[i].value : headers[i].name;
            size_t l = strlen(s);
            put32(q, (uint32_t)l);
            memcpy(q + 4, s, l);
            q += 4 + l;
        }
    }
    if (path) {
        put32(q, (uint32_t)plen);
        memcpy(q + 4, path, plen);
    }
    struct iovec iov = { f, MS_DOCK_HEADER_LEN + total };
    rc = send_all(link, &iov, 1, err, err_len);
    free(f);
    return rc;
}

int dock_link_reply(dock_link *link, uint16_t status, dock_reply_kind kind, const dock_kv *headers,
                    size_t n_headers, char *err, size_t err_len)
{
    int rc = head_due(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (status < 100 || status > 599)
        return seterr(err, err_len, DOCK_ERR_ARG, "status %u is not in 100..599", status);
    if (kind != DOCK_REPLY_EMPTY && kind != DOCK_REPLY_STREAM && kind != DOCK_REPLY_TUNNEL)
        return seterr(err, err_len, DOCK_ERR_ARG, kind == DOCK_REPLY_FILE
                      ? "a file reply is sent with dock_link_reply_file"
                      : "unknown reply kind %d", (int)kind);
    if (kind == DOCK_REPLY_TUNNEL)
        atomic_store(&link->tunnel_due, true);   /* before the REPLY: the client's bytes may follow */
    rc = send_reply(link, status, (uint8_t)kind, headers, n_headers, NULL, err, err_len);
    if (rc != DOCK_OK) {
        atomic_store(&link->tunnel_due, false);
        return rc;
    }
    link->rq = kind == DOCK_REPLY_EMPTY ? RQ_DONE : kind == DOCK_REPLY_STREAM ? RQ_BODY : RQ_TUNNEL;
    return DOCK_OK;
}

int dock_link_reply_file(dock_link *link, const dock_kv *headers, size_t n_headers,
                         const char *path, char *err, size_t err_len)
{
    int rc = head_due(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (!path || path[0] != '/')
        return seterr(err, err_len, DOCK_ERR_ARG, "a file reply needs an absolute path");
    rc = send_reply(link, 200, DOCK_REPLY_FILE, headers, n_headers, path, err, err_len);
    if (rc == DOCK_OK)
        link->rq = RQ_DONE;
    return rc;
}

static int body_due(dock_link *link, char *err, size_t err_len)
{
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    if (link->rq != RQ_BODY && link->rq != RQ_TUNNEL)
        return seterr(err, err_len, DOCK_ERR_STATE, link->rq == RQ_HEAD_DUE
                      ? "the reply head is not sent yet"
                      : "no body is due: the reply is empty, a file, or finished");
    return DOCK_OK;
}

int dock_link_write(dock_link *link, const void *data, size_t len, char *err, size_t err_len)
{
    int rc = body_due(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (!data && len)
        return seterr(err, err_len, DOCK_ERR_ARG, "no data");
    if (len == 0)
        return DOCK_OK;   /* an empty HAUL without FIN says nothing */
    return send_hauls(link, data, len, false, err, err_len);
}

int dock_link_finish(dock_link *link, char *err, size_t err_len)
{
    int rc = body_due(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    rc = send_hauls(link, NULL, 0, true, err, err_len);
    if (rc == DOCK_OK && link->rq == RQ_BODY)
        link->rq = RQ_DONE;
    return rc;
}

static bool bodyless(uint16_t status)
{
    return status < 200 || status == 204 || status == 304;
}

int dock_link_respond(dock_link *link, uint16_t status, const dock_kv *headers, size_t n_headers,
                      const void *body, size_t len, char *err, size_t err_len)
{
    int rc = head_due(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (!body && len)
        return seterr(err, err_len, DOCK_ERR_ARG, "no body");
    if (link->is_head || (len == 0 && bodyless(status)))
        return dock_link_reply(link, status, DOCK_REPLY_EMPTY, headers, n_headers, err, err_len);
    rc = dock_link_reply(link, status, DOCK_REPLY_STREAM, headers, n_headers, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    rc = send_hauls(link, body, len, true, err, err_len);
    if (rc == DOCK_OK)
        link->rq = RQ_DONE;
    return rc;
}

int dock_link_fail(dock_link *link, char *err, size_t err_len)
{
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    if (link->rq == RQ_IDLE)
        return seterr(err, err_len, DOCK_ERR_STATE, "no request to fail");
    if (link->rq != RQ_HEAD_DUE)
        return link_break(link, err, err_len,
                          "the bay failed after the head of request %u; the link is broken off",
                          (unsigned)link->request_id);
    static const dock_kv h[] = { { "content-type", "text/plain" } };
    static const char msg[] = "Internal Server Error";
    link->is_head = false;   /* the spelled-out 500 is a stream with its body */
    int rc = dock_link_respond(link, 500, h, 1, msg, sizeof msg - 1, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    return send_ready(link, err, err_len);
}

int dock_link_ready(dock_link *link, char *err, size_t err_len)
{
    if (!link)
        return seterr(err, err_len, DOCK_ERR_ARG, "no link");
    if (atomic_load(&link->broken))
        return link_ended(link, err, err_len);
    if (link->rq != RQ_DONE)
        return seterr(err, err_len, DOCK_ERR_STATE, link->rq == RQ_TUNNEL
                      ? "a tunnel gets no READY: close the link when it ends"
                      : link->rq == RQ_IDLE ? "no request, or READY was sent already"
                                            : "the reply is not complete");
    return send_ready(link, err, err_len);
}

int dock_link_fd(const dock_link *link)
{
    return link ? link->fd : -1;
}

bool dock_link_buffered(const dock_link *link)
{
    return link && link->rpos < link->rlen;
}

/* ---------------------------------------------------------------- the handshake */

static void free_config(dock_link *link)
{
    for (size_t i = 0; i < link->n_config; i++) {
        free((char *)link->config[i].name);
        free((char *)link->config[i].value);
    }
    free(link->config);
    link->config = NULL;
    link->n_config = 0;
}

/* Dock v3, exactly {"version": 3, "ship": "<name>", "pid": <pid>, "threads": <n>}. */
static int send_dock(dock_link *link, char *err, size_t err_len)
{
    json_t *name = json_string(link->bay->ship);
    char *ship = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    json_decref(name);
    if (!ship)
        return link_break(link, err, err_len, "cannot encode the ship name in Dock");
    char fixed[96];
    int n1 = snprintf(fixed, sizeof fixed, "{\"version\": 3, \"ship\": ");
    char tail[96];
    int n2 = snprintf(tail, sizeof tail, ", \"pid\": %ld, \"threads\": %u}", (long)getpid(),
                      link->bay->threads);
    size_t sl = strlen(ship);
    uint8_t h[MS_DOCK_HEADER_LEN];
    frame_header(h, MS_DOCK_DOCK, (uint32_t)((size_t)n1 + sl + (size_t)n2));
    struct iovec iov[4] = {
        { h, sizeof h }, { fixed, (size_t)n1 }, { ship, sl }, { tail, (size_t)n2 },
    };
    int rc = send_all(link, iov, 4, err, err_len);
    free(ship);
    return rc;
}

/* Moored v3: {"version": n >= 3, "config": {"k": "v", ...}} ("config" may be
 * absent: no config). */
static int take_moored(dock_link *link, const uint8_t *p, uint32_t len, char *err, size_t err_len)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return link_break(link, err, err_len, "MOORED: invalid JSON: %s", je.text);
    int rc = DOCK_OK;
    json_t *version = json_object_get(root, "version");
    json_t *config = json_object_get(root, "config");
    if (!json_is_object(root)) {
        rc = link_break(link, err, err_len, "MOORED: the payload is not a JSON object");
    } else if (!json_is_integer(version)) {
        rc = link_break(link, err, err_len, "MOORED: \"version\" is missing or not an integer");
    } else if (json_integer_value(version) < 3) {
        rc = link_break(link, err, err_len,
                        "MOORED version %lld is below 3: Mothership does not speak HTTP bays "
                        "(docking v3) on this link", (long long)json_integer_value(version));
    } else if (config && !json_is_object(config)) {
        rc = link_break(link, err, err_len, "MOORED: \"config\" is not an object");
    } else if (config) {
        size_t n = json_object_size(config);
        link->config = n ? calloc(n, sizeof *link->config) : NULL;
        if (n && !link->config)
            rc = link_break(link, err, err_len, "out of memory for the config table");
        const char *key;
        json_t *value;
        json_object_foreach(config, key, value) {
            if (rc != DOCK_OK)
                break;
            if (!json_is_string(value)) {
                rc = link_break(link, err, err_len, "MOORED: config value \"%s\" is not a string",
                                key);
                break;
            }
            dock_kv *kv = &link->config[link->n_config];
            kv->name = strdup(key);
            kv->value = strdup(json_string_value(value));
            link->n_config++;
            if (!kv->name || !kv->value)
                rc = link_break(link, err, err_len, "out of memory for the config table");
        }
    }
    json_decref(root);
    return rc;
}

static int handshake(dock_link *link, char *err, size_t err_len)
{
    int rc = send_dock(link, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    int timeout = link->bay->moored_timeout_ms;
    int64_t deadline = timeout > 0 ? dock__now_ms() + timeout : -1;
    uint8_t type;
    uint32_t len;
    rc = read_header(link, &type, &len, deadline, false, "MOORED", err, err_len);
    if (rc != DOCK_OK)
        return rc;
    if (type != MS_DOCK_MOORED)
        return link_break(link, err, err_len, "expected MOORED after DOCK, got %s (0x%02x)",
                          frame_name(type), type);
    uint8_t *p;
    rc = read_payload(link, len, "MOORED", &p, deadline, err, err_len);
    if (rc != DOCK_OK)
        return rc;
    rc = take_moored(link, p, len, err, err_len);
    free(p);
    return rc;
}

int dock_http_adopt(dock_http *bay, int fd, dock_link **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!bay || fd < 0) {
        if (fd >= 0)
            close(fd);
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay or no socket");
    }
    dock_link *link = calloc(1, sizeof *link);
    if (!link) {
        close(fd);
        return seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
    }
    link->bay = bay;
    link->fd = fd;
    atomic_init(&link->broken, false);
    atomic_flag_clear(&link->why_set);
    atomic_init(&link->tunnel_due, false);
    link->rq = RQ_IDLE;
    link->in_fin = true;
    int rc = handshake(link, err, err_len);
    if (rc != DOCK_OK) {
        dock_link_close(link);
        return rc == DOCK_STOPPED ? rc : DOCK_LINK_ENDED;
    }
    *out = link;
    return DOCK_OK;
}

int dock_http_accept(dock_http *bay, dock_link **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    for (;;) {
        if (bay->stop)
            return seterr(err, err_len, DOCK_STOPPED, "stopped");
        struct pollfd p[2] = {
            { .fd = bay->listen_fd, .events = POLLIN },
            { .fd = bay->wake_r, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return seterr(err, err_len, DOCK_ERR_SYS, "poll: %s", strerror(errno));
        }
        if (bay->stop)
            continue;
        if (!p[0].revents)
            continue;
        /* Blocking from here on: the link's I/O blocks (poll only for
         * timeouts); several threads may race for one connection. */
        int fd = accept4(bay->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK
                || errno == ECONNABORTED || errno == EPROTO)
                continue;
            return seterr(err, err_len, DOCK_ERR_SYS, "accepting on %s failed: %s", bay->path,
                          strerror(errno));
        }
        return dock_http_adopt(bay, fd, out, err, err_len);
    }
}

void dock_link_close(dock_link *link)
{
    if (!link)
        return;
    if (link->fd >= 0)
        close(link->fd);
    clear_request(link);
    free_config(link);
    free(link);
}

const char *dock_link_config(const dock_link *link, const char *key)
{
    if (!link || !key)
        return NULL;
    for (size_t i = 0; i < link->n_config; i++)
        if (strcmp(link->config[i].name, key) == 0)
            return link->config[i].value;
    return NULL;
}

size_t dock_link_config_count(const dock_link *link)
{
    return link ? link->n_config : 0;
}

const dock_kv *dock_link_config_at(const dock_link *link, size_t i)
{
    if (!link || i >= link->n_config)
        return NULL;
    return &link->config[i];
}

/* ---------------------------------------------------------------- the bay */

/* An unsigned environment knob in lo..hi; dflt when unset. */
static int env_unsigned(const char *name, unsigned dflt, unsigned lo, unsigned hi, unsigned *out,
                        char *err, size_t err_len)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        *out = dflt;
        return DOCK_OK;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || *s == '-' || v < lo || v > hi)
        return seterr(err, err_len, DOCK_ERR_ARG, "%s=%s is not a number in %u..%u", name, s, lo,
                      hi);
    *out = (unsigned)v;
    return DOCK_OK;
}

dock_http *dock_http_open(const dock_http_options *opt, char *err, size_t err_len)
{
    static const dock_http_options defaults;
    if (!opt)
        opt = &defaults;
    if (err && err_len)
        err[0] = 0;
    const char *path = opt->socket_path && *opt->socket_path ? opt->socket_path
                                                               : getenv("MS_SOCKET_PATH");
    if (!path || !*path) {
        seterr(err, err_len, DOCK_ERR_ARG,
               "MS_SOCKET_PATH is not set (a bay is started by Mothership, which sets it)");
        return NULL;
    }
    struct sockaddr_un sa;
    if (dock__unix_addr(path, &sa, err, err_len) != DOCK_OK)
        return NULL;
    if (opt->threads > DOCK_HTTP_MAX_THREADS) {
        seterr(err, err_len, DOCK_ERR_ARG, "threads %u is not in 1..%u", opt->threads,
               DOCK_HTTP_MAX_THREADS);
        return NULL;
    }

    dock_http *bay = calloc(1, sizeof *bay);
    if (!bay) {
        seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
        return NULL;
    }
    bay->listen_fd = bay->wake_r = bay->wake_w = -1;
    bay->opener = getpid();
    bay->moored_timeout_ms = opt->moored_timeout_ms == 0 ? DOCK_DEFAULT_MOORED_TIMEOUT_MS
                                                         : opt->moored_timeout_ms;
    bay->threads = opt->threads;
    if (!bay->threads && env_unsigned("MS_BAY_THREADS", DOCK_HTTP_DEFAULT_THREADS, 1,
                                      DOCK_HTTP_MAX_THREADS, &bay->threads, err, err_len) != DOCK_OK)
        goto fail;
    if (env_unsigned("MS_BAY_WORKERS", 0, 0, 256, &bay->workers, err, err_len) != DOCK_OK)
        goto fail;
    const char *ship = opt->ship && *opt->ship ? opt->ship : getenv("MS_SHIP");
    bay->path = strdup(path);
    bay->ship = ship && *ship ? strdup(ship) : dock__ship_from_path(path);
    if (!bay->path || !bay->ship) {
        seterr(err, err_len, DOCK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!*bay->ship) {
        seterr(err, err_len, DOCK_ERR_ARG, "no ship name: set MS_SHIP");
        goto fail;
    }
    json_t *probe = json_string(bay->ship);
    if (!probe) {
        seterr(err, err_len, DOCK_ERR_ARG, "the ship name is not valid UTF-8");
        goto fail;
    }
    json_decref(probe);
    if (dock__wake_pipe(&bay->wake_r, &bay->wake_w, err, err_len) != DOCK_OK)
        goto fail;
    if (dock__listen_unix(path, &sa, LISTEN_BACKLOG, &bay->listen_fd, &bay->sock_dev,
                          &bay->sock_ino, &bay->sock_known, err, err_len)
        != DOCK_OK)
        goto fail;
    return bay;
fail:
    dock_http_close(bay);
    return NULL;
}

void dock_http_close(dock_http *bay)
{
    if (!bay)
        return;
    if (g_signal_http == bay) {
        g_signal_http = NULL;
        dock__default_stop_signals();
    }
    if (bay->listen_fd >= 0) {
        close(bay->listen_fd);
        if (bay->sock_known && getpid() == bay->opener)
            dock__unlink_socket(bay->path, bay->sock_dev, bay->sock_ino);
    }
    if (bay->wake_r >= 0)
        close(bay->wake_r);
    if (bay->wake_w >= 0)
        close(bay->wake_w);
    free(bay->path);
    free(bay->ship);
    free(bay);
}

unsigned dock_http_threads(const dock_http *bay)
{
    return bay ? bay->threads : 0;
}

unsigned dock_http_workers(const dock_http *bay)
{
    return bay ? bay->workers : 0;
}

const char *dock_http_ship(const dock_http *bay)
{
    return bay ? bay->ship : NULL;
}

const char *dock_http_socket_path(const dock_http *bay)
{
    return bay ? bay->path : NULL;
}

void dock_http_stop(dock_http *bay)
{
    if (!bay)
        return;
    bay->stop = 1;
    /* Never drained: the pipe stays readable and wakes every thread. */
    dock__wake(bay->wake_w);
}

bool dock_http_stop_requested(const dock_http *bay)
{
    return bay && bay->stop;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    dock_http *bay = g_signal_http;
    if (bay)
        dock_http_stop(bay);
}

int dock_http_stop_on_signals(dock_http *bay, char *err, size_t err_len)
{
    if (!bay)
        return seterr(err, err_len, DOCK_ERR_ARG, "no bay");
    g_signal_http = bay;
    return dock__catch_stop_signals(on_stop_signal, err, err_len);
}
