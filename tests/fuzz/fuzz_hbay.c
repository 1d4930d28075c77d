/* fuzz_hbay.c: arbitrary bay frames on a link of a real worker. An inline
 * data-plane worker (no threads) serves one client request routed to an
 * HTTP bay; the bay is this harness: it listens on the bay's socket, docks
 * every link it accepts (DOCK v3, threads 1), reads what the worker sends
 * (MOORED, HAIL, the body's HAULs) and, once the link's first HAIL has
 * come, writes the input's bytes on it as the bay's answer (REPLYs, HAULs,
 * READYs, garbage), then closes the link. The first input byte picks the
 * client's request (GET, POST with a body, HEAD, a WebSocket upgrade); the
 * rest is the bay's bytes. The worker must end the client's connection
 * (a response, a 502, an abort) once the bay's bytes are over and the
 * client's input is shut (after the bay's answer: a client that leaves
 * while queued is dropped); a connection that never closes is a hang, and
 * the sanitizers catch the rest. A link the worker opens to retry gets the
 * same bytes. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dock/hub.h"
#include "dock/protocol.h"
#include "http/dataplane.h"
#include "inline_client.h"
#include "router/table.h"

#define MAX_LINKS 8

typedef struct fake_link {
    int fd;                     /* -1: free */
    uint8_t head[5];            /* the frame header being read */
    size_t head_len;
    uint32_t skip;              /* payload bytes of the current frame still to read */
    bool hailed;                /* a HAIL came: write the answer */
    size_t sent;                /* of the answer */
} fake_link;

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;
static ms_hub *hub;
static int listen_fd = -1;
static fake_link links[MAX_LINKS];
static const uint8_t *answer;
static size_t answer_len;
static uint8_t dock_frame[256];
static size_t dock_len;
static bool answered; /* a link got the whole answer and was closed */

static const char *const requests[] = {
    "GET /x?q=1 HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    "POST /x HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\n\r\nhello",
    "HEAD /x HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    ("GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
};

/* The bay's hub slot: links_cap 1, as its Dock says. */
static ms_hub *bay_hub(const ms_manifest *m)
{
    bool is_bay[1] = { true };
    hub = ms_hub_new(m->nships, is_bay, 1, 1u << 20);
    if (hub)
        __atomic_store_n(&hub->bays[0].http.links_cap, 1, __ATOMIC_RELEASE);
    return hub;
}

static void link_close(fake_link *l)
{
    close(l->fd);
    l->fd = -1;
}

/* Reads what the worker sent on l, frame by frame, and notes a HAIL. */
static void link_read(fake_link *l)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t r = read(l->fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            link_close(l);
            return;
        }
        if (r < 0)
            return;
        for (size_t i = 0; i < (size_t)r;) {
            if (l->skip) {
                size_t n = (size_t)r - i < l->skip ? (size_t)r - i : l->skip;
                l->skip -= (uint32_t)n;
                i += n;
                continue;
            }
            l->head[l->head_len++] = buf[i++];
            if (l->head_len == sizeof l->head) {
                if (l->head[0] == MS_DOCK_HAIL)
                    l->hailed = true;
                l->skip = (uint32_t)l->head[1] << 24 | (uint32_t)l->head[2] << 16 | (uint32_t)l->head[3] << 8 |
                          l->head[4];
                l->head_len = 0;
            }
        }
    }
}

/* One turn of the fake bay: accept and dock links, read them, answer. */
static void bay_turn(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        fake_link *l = NULL;
        for (int i = 0; i < MAX_LINKS && !l; i++)
            if (links[i].fd < 0)
                l = &links[i];
        if (!l || write(fd, dock_frame, dock_len) != (ssize_t)dock_len) {
            close(fd);
            continue;
        }
        *l = (fake_link){ .fd = fd };
    }
    for (int i = 0; i < MAX_LINKS; i++) {
        fake_link *l = &links[i];
        if (l->fd < 0)
            continue;
        link_read(l);
        if (l->fd < 0 || !l->hailed)
            continue;
        while (l->sent < answer_len) {
            ssize_t w = write(l->fd, answer + l->sent, answer_len - l->sent);
            if (w <= 0)
                break;
            l->sent += (size_t)w;
        }
        if (l->sent == answer_len || errno == EPIPE || errno == ECONNRESET) {
            link_close(l); /* the bay's bytes are over */
            answered = true;
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    static char dir[] = "/tmp/ms-fuzz-hbay-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    for (int i = 0; i < MAX_LINKS; i++)
        links[i].fd = -1;
    char path[600];
    snprintf(path, sizeof path, "%s/bay.sock", dir);
    listen_fd = fuzz_listen_unix(path);
    ms_dock_buf b = { 0 };
    if (ms_dock_encode_dock3(&b, "bay", 4242, 1) != 0 || b.len > sizeof dock_frame)
        abort();
    memcpy(dock_frame, b.data, b.len);
    dock_len = b.len;
    ms_dock_buf_free(&b);
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership]\nsocket_dir = \"%s\"\n"
             "[mothership.http]\nmax_body_size = 4096\n"
             "[mothership.bind]\nhttp = \"127.0.0.1:1\"\n"
             "[[bays.http]]\nname = \"bay\"\ncommand = \"true\"\nrequest_timeout = \"2s\"\n"
             "routes = [\"http:/.*\"]\n",
             dir);
    dp = fuzz_inline_start(text, dir, bay_hub, &manifest, &routes);
    return 0;
}

/* The client's write side stays open until the bay has answered (or for
 * a while, for a request that never reaches the bay): a client that leaves
 * while its request waits for a link is dropped from the queue. */
static bool hold_until_answered(void *arg, int round)
{
    (void)arg;
    return !answered && round < 2000;
}

/* The client: the request on a socketpair handed to the worker, the loop
 * (and the bay) run until the worker closes the connection. */
static void run_client(const char *req)
{
    answered = false;
    fuzz_inline_client_hold(dp, req, strlen(req), NULL, 0, bay_turn, NULL, hold_until_answered);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *req = requests[size ? data[0] % 4 : 0];
    answer = size ? data + 1 : data;
    answer_len = size ? size - 1 : 0;
    run_client(req);
    for (int i = 0; i < MAX_LINKS; i++) /* the next input starts with no link */
        if (links[i].fd >= 0)
            link_close(&links[i]);
    uv_run(ms_dataplane_inline_loop(dp), UV_RUN_NOWAIT);
    return 0;
}
