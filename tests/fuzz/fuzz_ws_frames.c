/* fuzz_ws_frames.c: drives a WebSocket client of a bay with arbitrary
 * frames: a real worker loop (inline, no threads), a client on a socketpair
 * that has completed the handshake, wslay's parsing, message reassembly,
 * the limits, Cargo towards the bay's queue, and the bay's echo coming back
 * through the worker's inbox. The first input byte picks how the fake bay
 * answers (echo, close the client, or nothing); the rest is sent after the
 * handshake, then the client's write side is shut and the loop runs until
 * the server closes the connection. A connection that never closes is
 * reported as a hang. */
#include <fcntl.h>
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

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;
static ms_hub *hub;
static size_t bay;

static const char handshake[] = "GET /ws?q=1 HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* The echo bay's hub, docked with the binary extension. */
static ms_hub *echo_hub(const ms_manifest *m)
{
    bool is_bay[1] = { true };
    bay = 0;
    hub = ms_hub_new(m->nships, is_bay, 1, 1u << 20);
    if (hub)
        ms_hub_bay_publish(hub, bay, 1, MS_DOCK_FEAT_BINARY);
    return hub;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char text[] =
        "[mothership.http]\nws_max_message_size = \"64KiB\"\nws_send_queue = \"128KiB\"\n"
        "[mothership.bind]\nhttp = \"127.0.0.1:1\"\n"
        "[[bays.websocket]]\nname = \"echo\"\ncommand = \"true\"\nroutes = [\"http:/ws\"]\n";
    dp = fuzz_inline_start(text, "/tmp", echo_hub, &manifest, &routes);
    return 0;
}

/* The fake bay: take what the worker queued and answer. */
static void bay_turn(int mode)
{
    ms_hub_msg *list = ms_hub_take_up(hub, bay, SIZE_MAX);
    while (list) {
        ms_hub_msg *m = list;
        list = m->next;
        if (m->kind == MS_HUB_CARGO && m->len >= MS_DOCK_CARGO_HEADER_LEN && mode != 2) {
            bool binary = m->data[0] == MS_DOCK_CARGO_BINARY;
            ms_hub_msg *r = mode == 1
                ? ms_hub_msg_new(MS_HUB_TO_CLIENT_CLOSE, m->bay, m->gen, m->conn_id, 4000, "bye", 3)
                : ms_hub_msg_new(binary ? MS_HUB_TO_CLIENT_BINARY : MS_HUB_TO_CLIENT_TEXT, m->bay, m->gen,
                                 m->conn_id, 0, m->data + MS_DOCK_CARGO_HEADER_LEN, m->len - MS_DOCK_CARGO_HEADER_LEN);
            if (r)
                ms_hub_to_worker(hub, 0, r);
        }
        free(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void bay_turn_cb(void *arg)
{
    bay_turn(*(int *)arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode = size ? data[0] % 3 : 0;
    if (size) {
        data++;
        size--;
    }
    fuzz_inline_client(dp, handshake, sizeof handshake - 1, data, size, bay_turn_cb, &mode);
    bay_turn(2); /* free what the last turn left */
    return 0;
}
