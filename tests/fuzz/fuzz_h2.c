/* fuzz_h2.c: drives HTTP/2 through a real inline worker: the client's bytes
 * after the prior-knowledge preface on an h2c bind, into the nghttp2
 * session (h2_session.c), its streams' conns over stream transports (h2.c)
 * and from there the HTTP/1.1 path: static files, routing, the proxy's 502
 * (the ship's socket does not exist), request bodies, extended CONNECT,
 * local answers. Each input is sent, the client's write side shut, and the
 * loop run until the server closes the connection; one that never closes
 * is reported as a hang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http/dataplane.h"
#include "inline_client.h"
#include "router/table.h"

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/ms-fuzz-h2-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char pub[600], path[700];
    snprintf(pub, sizeof pub, "%s/public", dir);
    mkdir(pub, 0755);
    snprintf(path, sizeof path, "%s/index.html", pub);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    for (int i = 0; i < 2000; i++)
        fputs("<p>hello over h2</p>\n", f);
    fclose(f);
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership]\ncompression = true\n"
             "[mothership.http]\nmax_header_size = 2048\nmax_uri_length = 512\nmax_body_size = 4096\nrequest_buffer_size = 1024\n"
             "h2_max_concurrent_streams = 16\nh2_max_header_list_size = 4096\nh2_rapid_reset_max = 10\n"
             "h2_max_control_frames = 50\n"
             "[mothership.bind]\nhttp = { address = \"127.0.0.1:1\", h2c = true }\n"
             "[[mothership.static_dirs]]\npath = \"public\"\nprefix = \"/static\"\n"
             "[[fleet.web]]\nname = \"api\"\ncommand = \"true\"\nbind = \"unix://%s/nothing.sock\"\n"
             "routes = [{ bind = \"http\", pattern = \"/api/.*\", strip_prefix = \"/api\" }, \"http:/ws\",\n"
             "          { bind = \"http\", pattern = \"/s/.*\", request_buffering = false }]\n",
             dir);
    dp = fuzz_inline_start(text, dir, NULL, &manifest, &routes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_inline_client(dp, preface, sizeof preface - 1, data, size, NULL, NULL);
    return 0;
}
