/* fuzz_libdock_http.c: libdock's HTTP side (src/libdock/dock_http.c) fed
 * arbitrary bytes as Mothership's end of a link. The first input byte
 * chooses whether a valid Moored v3 goes first (odd: the rest is fuzzed as
 * requests) or the input is the whole stream (even: Moored fuzzed too).
 * The bay serves each request one of five ways (whole body, streamed
 * body, tunnel echo, no reply, file reply) until the link ends. What the
 * bay writes is drained after every call, so it never blocks. */
#include "libdock/dock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static dock_http *bay;

static void close_bay(void)
{
    dock_http_close(bay);   /* removes the socket file */
}

static void drain(int fd)
{
    uint8_t sink[65536];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
}

static void serve(dock_link *link, int ms)
{
    static const dock_kv h[] = { { "content-type", "text/plain" } };
    uint8_t buf[4096];
    size_t got;
    switch (dock_link_request_id(link) % 5) {
    case 0: {
        uint8_t *body;
        size_t len;
        if (dock_link_read_body(link, 1 << 20, &body, &len, NULL, 0) == DOCK_OK) {
            dock_link_respond(link, 200, h, 1, body, len, NULL, 0);
            free(body);
        }
        break;
    }
    case 1:
        if (dock_link_reply(link, 200, DOCK_REPLY_STREAM, h, 1, NULL, 0) != DOCK_OK)
            break;
        while (dock_link_read(link, buf, 7, &got, NULL, 0) == DOCK_OK && got) {
            dock_link_write(link, buf, got, NULL, 0);
            drain(ms);
        }
        dock_link_finish(link, NULL, 0);
        break;
    case 2:
        if (dock_link_reply(link, 101, DOCK_REPLY_TUNNEL, NULL, 0, NULL, 0) != DOCK_OK)
            break;
        while (dock_link_read(link, buf, sizeof buf, &got, NULL, 0) == DOCK_OK && got) {
            dock_link_write(link, buf, got, NULL, 0);
            drain(ms);
        }
        dock_link_finish(link, NULL, 0);
        break;
    case 3:
        break;   /* no reply: dock_link_next sends the 500 */
    default:
        dock_link_reply_file(link, NULL, 0, "/srv/file", NULL, 0);
        break;
    }
    drain(ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bay) {
        static char path[64];
        snprintf(path, sizeof path, "/tmp/fuzz-libdock-%ld.sock", (long)getpid());
        dock_http_options opt = { .socket_path = path, .ship = "fuzz", .threads = 1,
                                  .moored_timeout_ms = 100 };
        bay = dock_http_open(&opt, NULL, 0);
        if (!bay)
            abort();
        atexit(close_bay);
    }
    if (size == 0)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    int bufsz = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
    if (data[0] & 1) {
        static const char moored[] = "\x02\x00\x00\x00\x23{\"version\":3,\"config\":{\"k\":\"v\"}}";
        send(sv[0], moored, sizeof moored - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    /* What does not fit in the socket is cut off: the link ends there. */
    send(sv[0], data + 1, size - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(sv[0], SHUT_WR);
    dock_link *link;
    if (dock_http_adopt(bay, sv[1], &link, NULL, 0) == DOCK_OK) {
        for (int n = 0; n < 100000 && dock_link_next(link, NULL, 0) == DOCK_OK; n++) {
            drain(sv[0]);
            dock_link_param(link, "PATH_INFO");
            for (size_t i = 0; i < dock_link_param_count(link); i++)
                (void)dock_link_param_at(link, i)->value_len;
            serve(link, sv[0]);
        }
        dock_link_close(link);
    }
    drain(sv[0]);
    close(sv[0]);
    return 0;
}
