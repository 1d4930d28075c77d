/* wsload.c - a small WebSocket load generator for bench/ws (one thread,
 * epoll, non-blocking sockets, hand-rolled RFC 6455 client framing).
 *
 *   wsload MODE [-H host] [-p port] [-u path] [-c conns] [-d seconds]
 *               [-s size] [-w window] [-i inflight] [-z]
 *
 * MODE:
 *   echo    every client sends a text message of -s bytes, waits for the
 *           identical message back, sends the next one; for -d seconds.
 *   fanout  client 0 sends numbered text messages (at most -w ahead of the
 *           last one every client has received) for -d seconds; every
 *           client (the sender too) must receive each one once, in order.
 *   idle    the clients only connect (and answer pings).
 *
 * -z: every client offers permessage-deflate (RFC 7692) with
 * client_no_context_takeover and server_no_context_takeover, and a server
 * that does not agree fails its handshake. Messages are then sent
 * compressed (zlib's default level, raw deflate, the 00 00 ff ff tail
 * removed, RSV1 set; no context kept between messages), and messages
 * received with RSV1 are inflated before they are checked. RESULT also
 * counts the messages that came compressed and their bytes on the wire
 * against their plain size.
 *
 * Protocol with the driver: wsload connects the -c clients (at most -i
 * handshakes at a time; each checks the 101 and Sec-WebSocket-Accept), then
 * prints "connected OK FAILED SECONDS" and reads stdin: "go" starts the run,
 * after which it prints "RESULT {json}"; "stats" prints "STATS {json}" (the
 * counters so far: errors, pings, ...); "close" (or end of input) closes every
 * client with a close handshake (1000) and prints "CLOSED {json}" and exits.
 * Until "close", pings are answered; any close frame or error from the
 * server is counted and reported. Exit status 0 unless setup failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DONE };

typedef struct {
    int fd, st;
    char key[32];            /* Sec-WebSocket-Key sent */
    uint8_t *in;             /* bytes read but not yet parsed */
    size_t in_len, in_cap;
    uint8_t *out;            /* bytes not yet written */
    size_t out_len, out_cap;
    bool out_armed;          /* EPOLLOUT registered */
    /* message reassembly (fragmented messages from the server) */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    int msg_op;
    /* echo */
    uint64_t sent_at, seq;
    bool waiting;
    bool msg_z;              /* the message being reassembled came with RSV1 */
    /* fanout */
    uint64_t expect;
} conn;

static conn *cs;
static int nconns, ep;
static const char *host = "127.0.0.1", *path = "/ws";
static int port = 0, inflight = 256;
static double duration = 5;
static size_t msize = 32;
static unsigned window = 32;
static int mode;     /* 0 echo, 1 fanout, 2 idle */
static bool running, closing_all;
static bool zmode;   /* -z: permessage-deflate */
static z_stream zdef, zinf;
static uint8_t *zbuf;
static size_t zcap;
static uint64_t n_zin, n_zin_wire, n_zin_plain;

/* ---- counters, reported as JSON */
static uint64_t n_ok, n_failed, n_msgs, n_bad, n_pings, n_errors, n_eof;
static uint64_t close_codes[5000]; /* unexpected close frames from the server, by code (0: none given) */
static uint64_t n_closed_clean, n_closed_code_other, n_close_timeout;
static char first_error[200];

static void note_error(const char *what, int i)
{
    n_errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "client %d: %s", i, what);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- latency histogram: log-linear, 64 sub-buckets per power of two (~1.6 %) */
#define HBUCKETS (64 * 60)
static uint64_t hist[HBUCKETS], hcount;

static int hidx(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int e = 63 - __builtin_clzll(v);
    return (e - 5) * 64 + (int)((v >> (e - 6)) & 63);
}

static uint64_t hval(int i)
{
    if (i < 64)
        return (uint64_t)i;
    int e = i / 64 + 5;
    return ((uint64_t)64 + (uint64_t)(i % 64)) << (e - 6);
}

static void hadd(uint64_t ns)
{
    int i = hidx(ns);
    hist[i < HBUCKETS ? i : HBUCKETS - 1]++;
    hcount++;
}

static double hpct(double p)
{
    if (!hcount)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)hcount), seen = 0;
    if (want >= hcount)
        want = hcount - 1;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += hist[i];
        if (seen > want)
            return (double)hval(i) / 1000.0;   /* µs */
    }
    return 0;
}

/* ---- buffers */
static void grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    uint8_t *q = realloc(*p, c);
    if (!q) {
        perror("wsload: realloc");
        exit(2);
    }
    *p = q;
    *cap = c;
}

static void arm(int i, bool out)
{
    conn *c = &cs[i];
    if (c->out_armed == out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0), .data.u64 = (uint64_t)i};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->out_armed = out;
}

static void kill_conn(int i)
{
    conn *c = &cs[i];
    if (c->st == ST_DONE)
        return;
    close(c->fd);
    c->st = ST_DONE;
    free(c->in);
    free(c->out);
    free(c->msg);
    c->in = c->out = c->msg = NULL;
    c->in_len = c->in_cap = c->out_len = c->out_cap = c->msg_len = c->msg_cap = 0;
}

/* Write what is queued; false when the connection failed. */
static bool flush_out(int i)
{
    conn *c = &cs[i];
    while (c->out_len) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (errno == EAGAIN) {
                    arm(i, true);
                    return true;
                }
                continue;
            }
            note_error(strerror(errno), i);
            kill_conn(i);
            return false;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    arm(i, false);
    return true;
}

static void queue_bytes(int i, const void *p, size_t n)
{
    conn *c = &cs[i];
    grow(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* A masked client frame (FIN set; RSV1 with rsv1). */
static bool send_frame_rsv(int i, int op, const uint8_t *p, size_t n, bool rsv1)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | op);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--)
            h[hl++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    uint8_t mask[4];
    if (getrandom(mask, 4, 0) != 4) {
        perror("wsload: getrandom");
        exit(2);
    }
    memcpy(h + hl, mask, 4);
    hl += 4;
    conn *c = &cs[i];
    grow(&c->out, &c->out_cap, c->out_len + hl + n);
    memcpy(c->out + c->out_len, h, hl);
    uint8_t *d = c->out + c->out_len + hl;
    for (size_t k = 0; k < n; k++)
        d[k] = p[k] ^ mask[k & 3];
    c->out_len += hl + n;
    return flush_out(i);
}

static bool send_frame(int i, int op, const uint8_t *p, size_t n)
{
    return send_frame_rsv(i, op, p, n, false);
}

/* ---- permessage-deflate (-z) */
static void z_init(void)
{
    if (deflateInit2(&zdef, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit2(&zinf, -15) != Z_OK) {
        fprintf(stderr, "wsload: zlib init failed\n");
        exit(2);
    }
}

/* A data message, compressed with -z. */
static bool send_message(int i, int op, const uint8_t *p, size_t n)
{
    if (!zmode)
        return send_frame(i, op, p, n);
    grow(&zbuf, &zcap, n + n / 8 + 64);
    zdef.next_in = (Bytef *)(uintptr_t)p;
    zdef.avail_in = (uInt)n;
    zdef.next_out = zbuf;
    zdef.avail_out = (uInt)zcap;
    if (deflate(&zdef, Z_SYNC_FLUSH) != Z_OK || zdef.avail_in || !zdef.avail_out) {
        fprintf(stderr, "wsload: deflate failed\n");
        exit(2);
    }
    size_t zl = zcap - zdef.avail_out;
    deflateReset(&zdef); /* client_no_context_takeover */
    return send_frame_rsv(i, op, zbuf, zl >= 4 ? zl - 4 : zl, true);
}

/* A message that came with RSV1, inflated into zbuf; false: not deflate. */
static bool inflate_message(const uint8_t *p, size_t n, size_t *out_len)
{
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    size_t cap = zcap < 4096 ? 4096 : zcap, have = 0;
    grow(&zbuf, &zcap, cap);
    zinf.next_in = (Bytef *)(uintptr_t)p;
    zinf.avail_in = (uInt)n;
    bool tail_fed = false;
    for (;;) {
        if (!zinf.avail_in && !tail_fed) {
            zinf.next_in = (Bytef *)(uintptr_t)tail;
            zinf.avail_in = 4;
            tail_fed = true;
        }
        if (have == zcap)
            grow(&zbuf, &zcap, zcap * 2);
        zinf.next_out = zbuf + have;
        zinf.avail_out = (uInt)(zcap - have);
        int rc = inflate(&zinf, Z_SYNC_FLUSH);
        have = zcap - zinf.avail_out;
        if (rc == Z_STREAM_END || (tail_fed && !zinf.avail_in && zinf.avail_out))
            break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            inflateReset(&zinf);
            return false;
        }
    }
    inflateReset(&zinf); /* server_no_context_takeover */
    *out_len = have;
    return true;
}

/* ---- handshake */
static void b64(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t k = 0; k < n; k += 3) {
        uint32_t v = (uint32_t)in[k] << 16 | (k + 1 < n ? (uint32_t)in[k + 1] << 8 : 0) | (k + 2 < n ? in[k + 2] : 0);
        out[o++] = t[v >> 18];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = k + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = k + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static int started;  /* clients whose connect was started */
static int settled;  /* clients that are open or failed */

static void start_connect(int i)
{
    conn *c = &cs[i];
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error(strerror(errno), i);
        c->st = ST_DONE;
        n_failed++;
        settled++;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->st = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = (uint64_t)i};
    c->out_armed = true;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        note_error(strerror(errno), i);
        kill_conn(i);
        n_failed++;
        settled++;
        return;
    }
    uint8_t k[16];
    if (getrandom(k, sizeof k, 0) != sizeof k) {
        perror("wsload: getrandom");
        exit(2);
    }
    b64(k, sizeof k, c->key);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, host, port, c->key,
                     zmode ? "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; "
                             "server_no_context_takeover\r\n"
                           : "");
    queue_bytes(i, req, (size_t)n);
}

static void fail_setup(int i, const char *why)
{
    note_error(why, i);
    kill_conn(i);
    n_failed++;
    settled++;
}

/* The response head is in c->in; true when it is a good 101 (and the head is consumed). */
static int check_101(int i)
{
    conn *c = &cs[i];
    uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len > 8192 ? -1 : 0;
    size_t hl = (size_t)(end - c->in) + 4;
    char *head = strndup((char *)c->in, hl);
    int ok = strncmp(head, "HTTP/1.1 101 ", 13) == 0 ? 1 : -1;
    if (ok == 1) {
        char cat[96], want[32];
        uint8_t dg[SHA_DIGEST_LENGTH];
        snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
        SHA1((const uint8_t *)cat, strlen(cat), dg);
        b64(dg, sizeof dg, want);
        ok = -1;
        bool pmd = false;
        for (char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
            const char *ext = "Sec-WebSocket-Extensions:";
            if (strncasecmp(l + 2, ext, strlen(ext)) == 0) {
                const char *v = l + 2 + strlen(ext);
                while (*v == ' ')
                    v++;
                pmd = strncasecmp(v, "permessage-deflate", 18) == 0;
            }
            const char *name = "Sec-WebSocket-Accept:";
            if (strncasecmp(l + 2, name, strlen(name)) == 0) {
                const char *v = l + 2 + strlen(name);
                while (*v == ' ')
                    v++;
                if (strncmp(v, want, strlen(want)) == 0 && v[strlen(want)] == '\r')
                    ok = 1;
            }
        }
        if (ok == 1 && zmode && !pmd) {
            note_error("permessage-deflate was not agreed", i);
            n_errors--; /* fail_setup counts it */
            ok = -1;
        }
    } else {
        char *eol = strstr(head, "\r\n");
        if (eol)
            *eol = 0;
        note_error(head, i);
        n_errors--;   /* fail_setup counts it */
    }
    free(head);
    if (ok == 1) {
        memmove(c->in, c->in + hl, c->in_len - hl);
        c->in_len -= hl;
    }
    return ok;
}

/* ---- the runs */
static uint64_t t_start, t_end, deadline;
static int echo_busy;              /* echo clients waiting for their echo */
/* fanout */
#define RING 65536u
static uint32_t ring_cnt[RING];
static uint64_t ring_t[RING];
static uint64_t f_sent, f_done;    /* messages sent; prefix delivered to every client */
static bool f_stop;

static void fill_payload(uint8_t *p, uint64_t a, uint64_t b)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%010llu:%010llu:", (unsigned long long)a, (unsigned long long)b);
    for (size_t k = 0; k < msize; k++)
        p[k] = k < (size_t)n ? (uint8_t)tmp[k] : (uint8_t)('a' + (k % 26));
}

static void echo_send(int i)
{
    conn *c = &cs[i];
    uint8_t p[msize];
    c->seq++;
    fill_payload(p, (uint64_t)i, c->seq);
    c->sent_at = now_ns();
    c->waiting = true;
    echo_busy++;
    send_message(i, 1, p, msize);
}

static void fanout_pump(void)
{
    if (f_stop || cs[0].st != ST_OPEN)
        return;
    while (f_sent < f_done + window) {
        if (now_ns() >= deadline) {
            f_stop = true;
            return;
        }
        uint8_t p[msize];
        fill_payload(p, f_sent, 0);
        ring_cnt[f_sent % RING] = 0;
        ring_t[f_sent % RING] = now_ns();
        f_sent++;
        if (!send_message(0, 1, p, msize))
            return;
    }
}

static void on_message(int i, int op, const uint8_t *p, size_t n)
{
    conn *c = &cs[i];
    uint64_t t = now_ns();
    if (!running || closing_all)
        return;
    n_msgs++;
    if (mode == 0) {
        uint8_t want[msize];
        fill_payload(want, (uint64_t)i, c->seq);
        if (!c->waiting || op != 1 || n != msize || memcmp(want, p, n) != 0) {
            n_bad++;
            return;
        }
        hadd(t - c->sent_at);
        c->waiting = false;
        echo_busy--;
        t_end = t;
        if (t < deadline)
            echo_send(i);
    } else if (mode == 1) {
        uint64_t seq = n >= 10 ? strtoull((const char *)p, NULL, 10) : UINT64_MAX;
        if (op != 1 || n != msize || seq != c->expect || seq >= f_sent) {
            n_bad++;
            return;
        }
        c->expect++;
        hadd(t - ring_t[seq % RING]);
        t_end = t;
        if (++ring_cnt[seq % RING] == (uint32_t)n_ok) {
            /* every client has it; messages are delivered in order */
            while (f_done < f_sent && ring_cnt[f_done % RING] == (uint32_t)n_ok)
                f_done++;
        }
    } else {
        n_bad++;   /* idle clients get nothing */
    }
}

/* A whole data message; with RSV1 (-z) inflated first. */
static void data_message(int i, int op, bool z, const uint8_t *p, size_t n)
{
    if (!z) {
        on_message(i, op, p, n);
        return;
    }
    size_t pl = 0;
    if (!inflate_message(p, n, &pl)) {
        note_error("bad deflate data from the server", i);
        n_bad++;
        return;
    }
    n_zin++;
    n_zin_wire += n;
    n_zin_plain += pl;
    on_message(i, op, zbuf, pl);
}

/* Parse whole frames in c->in. */
static void parse(int i)
{
    conn *c = &cs[i];
    size_t off = 0;
    while (c->st == ST_OPEN || c->st == ST_CLOSING) {
        uint8_t *b = c->in + off;
        size_t av = c->in_len - off;
        if (av < 2)
            break;
        bool fin = b[0] & 0x80;
        int op = b[0] & 15;
        bool rsv1 = b[0] & 0x40;
        if ((b[1] & 0x80) || (b[0] & 0x30) || (rsv1 && (!zmode || (op != 1 && op != 2)))) {
            note_error("server frame masked or with RSV bits", i);
            kill_conn(i);
            return;
        }
        uint64_t len = b[1] & 127;
        size_t hl = 2;
        if (len == 126) {
            if (av < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            hl = 4;
        } else if (len == 127) {
            if (av < 10)
                break;
            len = 0;
            for (int k = 0; k < 8; k++)
                len = len << 8 | b[2 + k];
            hl = 10;
        }
        if (av < hl + len)
            break;
        const uint8_t *p = b + hl;
        off += hl + (size_t)len;
        if (op == 9) {                      /* ping */
            n_pings++;
            if (c->st == ST_OPEN)
                send_frame(i, 10, p, (size_t)len);
        } else if (op == 10) {              /* pong */
        } else if (op == 8) {               /* close */
            int code = len >= 2 ? (p[0] << 8 | p[1]) : 0;
            if (c->st == ST_CLOSING) {
                if (code == 1000)
                    n_closed_clean++;
                else
                    n_closed_code_other++;
            } else {
                close_codes[code < 5000 ? code : 0]++;
                uint8_t back[2] = {len >= 2 ? p[0] : 0, len >= 2 ? p[1] : 0};
                send_frame(i, 8, back, len >= 2 ? 2 : 0);
                if (running && mode == 0 && c->waiting)
                    echo_busy--;
            }
            c->st = ST_CLOSING;
            c->waiting = false;
            /* wait for the server to close the TCP connection */
        } else if (op == 0 || op == 1 || op == 2) {
            if (op != 0)
                c->msg_op = op, c->msg_len = 0, c->msg_z = rsv1;
            if (fin && c->msg_len == 0) {
                data_message(i, c->msg_op, c->msg_z, p, (size_t)len);
            } else {
                grow(&c->msg, &c->msg_cap, c->msg_len + (size_t)len);
                memcpy(c->msg + c->msg_len, p, (size_t)len);
                c->msg_len += (size_t)len;
                if (fin) {
                    data_message(i, c->msg_op, c->msg_z, c->msg, c->msg_len);
                    c->msg_len = 0;
                }
            }
        } else {
            note_error("unknown opcode from the server", i);
            kill_conn(i);
            return;
        }
        if (c->st == ST_DONE)
            return;
    }
    if (c->st == ST_DONE)
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_event(int i, uint32_t evs)
{
    conn *c = &cs[i];
    if (c->st == ST_DONE)
        return;
    if (c->st == ST_CONNECTING && (evs & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            fail_setup(i, strerror(err));
            return;
        }
        c->st = ST_HANDSHAKE;
    }
    if ((evs & EPOLLOUT) && !flush_out(i)) {
        if (c->st == ST_HANDSHAKE)
            n_failed++, settled++;
        return;
    }
    if (!(evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    static uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            if (c->st == ST_HANDSHAKE) {
                fail_setup(i, strerror(errno));
            } else {
                if (c->st != ST_CLOSING)
                    note_error(strerror(errno), i);
                kill_conn(i);
            }
            return;
        }
        if (n == 0) {
            if (c->st == ST_HANDSHAKE) {
                fail_setup(i, "connection closed during the handshake");
            } else {
                if (c->st != ST_CLOSING) {
                    n_eof++;   /* closed without a close frame */
                    if (running && mode == 0 && c->waiting)
                        echo_busy--;
                }
                kill_conn(i);
            }
            return;
        }
        grow(&c->in, &c->in_cap, c->in_len + (size_t)n);
        memcpy(c->in + c->in_len, buf, (size_t)n);
        c->in_len += (size_t)n;
        if (c->st == ST_HANDSHAKE) {
            int r = check_101(i);
            if (r < 0) {
                fail_setup(i, "bad handshake response");
                return;
            }
            if (r == 0)
                continue;
            c->st = ST_OPEN;
            n_ok++;
            settled++;
            if (started < nconns)
                start_connect(started++);
        }
        parse(i);
        if (c->st == ST_DONE)
            return;
        if (c->in_len == 0 && c->in_cap > 4096) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        if ((size_t)n < sizeof buf)
            return;
    }
}

static void loop_once(int timeout_ms)
{
    static struct epoll_event evs[1024];
    int n = epoll_wait(ep, evs, 1024, timeout_ms);
    for (int k = 0; k < n; k++) {
        if (evs[k].data.u64 == UINT64_MAX)
            continue;   /* stdin: read by the caller */
        on_event((int)evs[k].data.u64, evs[k].events);
    }
}

/* A line from stdin when there is one (non-blocking); NULL otherwise. "" at end of input. */
static char *stdin_line(void)
{
    static char lb[256];
    static size_t ll;
    for (;;) {
        char *nl = memchr(lb, '\n', ll);
        if (nl) {
            static char out[256];
            size_t k = (size_t)(nl - lb);
            memcpy(out, lb, k);
            out[k] = 0;
            memmove(lb, nl + 1, ll - k - 1);
            ll -= k + 1;
            return out;
        }
        ssize_t n = read(0, lb + ll, sizeof lb - 1 - ll);
        if (n == 0)
            return "";
        if (n < 0)
            return NULL;
        ll += (size_t)n;
    }
}

static char *wait_line(void)
{
    for (;;) {
        char *l = stdin_line();
        if (l)
            return l;
        loop_once(100);
    }
}

static void json_common(void)
{
    printf("\"clients\":%llu,\"errors\":%llu,\"bad\":%llu,\"eof\":%llu,\"pings\":%llu",
           (unsigned long long)n_ok, (unsigned long long)n_errors, (unsigned long long)n_bad,
           (unsigned long long)n_eof, (unsigned long long)n_pings);
    printf(",\"server_closes\":{");
    bool first = true;
    for (int k = 0; k < 5000; k++)
        if (close_codes[k]) {
            printf("%s\"%d\":%llu", first ? "" : ",", k, (unsigned long long)close_codes[k]);
            first = false;
        }
    printf("},\"first_error\":\"");
    for (const char *p = first_error; *p; p++)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 32)
            putchar(*p);
    printf("\"");
}

static void usage(void)
{
    fprintf(stderr, "usage: wsload echo|fanout|idle -p port [-H host] [-u path] [-c conns] [-d seconds] "
                    "[-s size] [-w window] [-i inflight] [-z]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "echo") == 0)
        mode = 0;
    else if (strcmp(argv[1], "fanout") == 0)
        mode = 1;
    else if (strcmp(argv[1], "idle") == 0)
        mode = 2;
    else
        usage();
    nconns = 50;
    int o;
    optind = 2;
    while ((o = getopt(argc, argv, "H:p:u:c:d:s:w:i:z")) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 's': msize = (size_t)atol(optarg); break;
        case 'w': window = (unsigned)atoi(optarg); break;
        case 'i': inflight = atoi(optarg); break;
        case 'z': zmode = true; break;
        default: usage();
        }
    }
    if (port <= 0 || nconns < 1 || msize < 22 || msize > 65535 || window < 1 || window > RING / 2 || inflight < 1)
        usage();

    if (zmode)
        z_init();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 16) {
        fprintf(stderr, "wsload: RLIMIT_NOFILE %llu is too low for %d clients\n", (unsigned long long)rl.rlim_cur,
                nconns);
        return 2;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)nconns, sizeof *cs);
    if (ep < 0 || !cs) {
        perror("wsload");
        return 2;
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);

    /* connect, at most `inflight` handshakes at a time */
    uint64_t t0 = now_ns();
    while (started < nconns && started < inflight)
        start_connect(started++);
    while (settled < nconns) {
        loop_once(1000);
        /* a failed one frees a handshake slot too */
        while (started < nconns && started - settled < inflight)
            start_connect(started++);
        if (now_ns() - t0 > 120ull * 1000000000u) {
            fprintf(stderr, "wsload: connecting took over 120 s (%d of %d settled)\n", settled, nconns);
            break;
        }
    }
    printf("connected %llu %llu %.3f\n", (unsigned long long)n_ok, (unsigned long long)n_failed,
           (double)(now_ns() - t0) / 1e9);
    fflush(stdout);

    for (;;) {
        char *l = wait_line();
        if (strcmp(l, "go") == 0 && mode != 2) {
            memset(hist, 0, sizeof hist);
            hcount = n_msgs = n_bad = 0;
            n_zin = n_zin_wire = n_zin_plain = 0;
            running = true;
            t_start = t_end = now_ns();
            deadline = t_start + (uint64_t)(duration * 1e9);
            if (mode == 0) {
                for (int i = 0; i < nconns; i++)
                    if (cs[i].st == ST_OPEN)
                        echo_send(i);
                while (echo_busy > 0 && now_ns() < deadline + 10ull * 1000000000u)
                    loop_once(100);
            } else {
                f_sent = f_done = 0;
                f_stop = false;
                for (int i = 0; i < nconns; i++)
                    cs[i].expect = 0;
                fanout_pump();
                while ((!f_stop || f_done < f_sent) && now_ns() < deadline + 10ull * 1000000000u) {
                    loop_once(100);
                    fanout_pump();
                }
            }
            running = false;
            double secs = (double)(t_end - t_start) / 1e9;
            printf("RESULT {\"compressed_in\":%llu,\"compressed_in_wire_bytes\":%llu,"
                   "\"compressed_in_plain_bytes\":%llu,",
                   (unsigned long long)n_zin, (unsigned long long)n_zin_wire, (unsigned long long)n_zin_plain);
            printf("\"mode\":\"%s\",\"seconds\":%.6f,\"messages\":%llu,\"sent\":%llu,\"delivered_all\":%llu,"
                   "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"undelivered\":%llu,",
                   mode == 0 ? "echo" : "fanout", secs, (unsigned long long)hcount,
                   (unsigned long long)(mode == 1 ? f_sent : hcount), (unsigned long long)f_done, hpct(50),
                   hpct(90), hpct(99), hpct(100),
                   (unsigned long long)(mode == 0 ? (uint64_t)echo_busy : (f_sent - f_done)));
            json_common();
            printf("}\n");
            fflush(stdout);
        } else if (strcmp(l, "stats") == 0) {
            printf("STATS {");
            json_common();
            printf("}\n");
            fflush(stdout);
        } else if (strcmp(l, "close") == 0 || l[0] == 0) {
            break;
        }
    }

    /* close handshake with every open client; the server closes TCP first */
    closing_all = true;
    int open_n = 0;
    for (int i = 0; i < nconns; i++) {
        if (cs[i].st == ST_OPEN) {
            uint8_t code[2] = {1000 >> 8, 1000 & 255};
            cs[i].st = ST_CLOSING;
            send_frame(i, 8, code, 2);
            open_n++;
        }
    }
    uint64_t cd = now_ns() + 5ull * 1000000000u;
    for (;;) {
        int left = 0;
        for (int i = 0; i < nconns; i++)
            left += cs[i].st != ST_DONE;
        if (!left || now_ns() > cd) {
            n_close_timeout = (uint64_t)left;
            break;
        }
        loop_once(50);
    }
    for (int i = 0; i < nconns; i++)
        kill_conn(i);
    printf("CLOSED {\"closed\":%d,\"close_1000\":%llu,\"close_other\":%llu,\"not_closed_by_server_in_5s\":%llu,",
           open_n, (unsigned long long)n_closed_clean, (unsigned long long)n_closed_code_other,
           (unsigned long long)n_close_timeout);
    json_common();
    printf("}\n");
    fflush(stdout);
    return 0;
}
