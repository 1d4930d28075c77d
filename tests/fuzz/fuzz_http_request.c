/* fuzz_http_request.c: drives the data plane's request path with arbitrary
 * client bytes: a real worker loop (inline, no threads), a client connection
 * on a socketpair, parsing, limits, static dirs, routing, the proxy's head
 * rewriting and its 502 path (the ship's socket does not exist), request
 * bodies read whole (in memory, or beyond 1 KiB in a temporary file) or
 * streamed (/s/...), error answers and keep-alive. Each input is sent, the
 * client's write side shut, and the loop run until the server closes the
 * connection. A connection that never closes is reported as a hang. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/dataplane.h"
#include "inline_client.h"
#include "router/table.h"

static ms_manifest *manifest;
static ms_route_table *routes;
static ms_dataplane *dp;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/ms-fuzz-http-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char pub[600], sub[640];
    snprintf(pub, sizeof pub, "%s/public", dir);
    snprintf(sub, sizeof sub, "%s/public/sub", dir);
    mkdir(pub, 0755);
    mkdir(sub, 0755);
    write_file(pub, "index.html", "<h1>hello</h1>\n");
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(pub, "big.txt", big);
    write_file(sub, "index.html", "sub\n");
    char text[2048];
    snprintf(text, sizeof text,
             "[mothership]\ncompression = true\n"
             "[mothership.http]\nmax_header_size = 2048\nmax_uri_length = 512\nmax_body_size = 4096\n"
             "request_buffer_size = 1024\n"
             "[mothership.bind]\nhttp = \"127.0.0.1:1\"\n"
             "[[mothership.static_dirs]]\npath = \"public\"\nprefix = \"/static\"\n"
             "[[fleet.web]]\nname = \"api\"\ncommand = \"true\"\nbind = \"unix://%s/nothing.sock\"\n"
             "routes = [{ bind = \"http\", pattern = \"/api/.*\", strip_prefix = \"/api\" }, \"http:/ws\"]\n"
             "[[fleet.web]]\nname = \"app\"\ncommand = \"true\"\nbind = \"unix://%s/none.sock\"\n"
             "routes = [\"http:/(app|x)(/.*)?\", { bind = \"http\", pattern = \"/s/.*\", request_buffering = false }]\n",
             dir, dir);
    dp = fuzz_inline_start(text, dir, NULL, &manifest, &routes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_inline_client(dp, NULL, 0, data, size, NULL, NULL);
    return 0;
}
