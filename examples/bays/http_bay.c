/* http_bay.c: an HTTP bay in C on libdock (docs/libdock.md), for tests
 * and demos. Started by Mothership as a [[bays.http]] entry: it listens on
 * MS_SOCKET_PATH, runs MS_BAY_THREADS threads (each accepts a link and
 * serves its requests one at a time) in MS_BAY_WORKERS forked processes (0:
 * in this one), and drains on SIGTERM or SIGINT (exit 0, or 1 when requests
 * are still in progress after MS_BAY_DRAIN_TIMEOUT seconds).
 *
 * Routes (on PATH_INFO):
 *   /            200 "hello from <ship>\n" (or the config's "greeting")
 *   /echo        the request body back, with its Content-Type, and the
 *                method, path and query in x-echo-method / -path / -query
 *   /headers     the HAIL params as a JSON object
 *   /file/<name> the file <name> under the bay's cwd, as a file reply
 *                (404 if it is not a regular file there)
 *   /stream      n chunks (?n=, default 5) "chunk <i>\n", streamed
 *   /ws          a WebSocket echo over a tunnel (wslay does the framing)
 *   /fail        the app fails before its head: libdock's 500
 *   else         404 */
#include "libdock/dock.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_BODY ((size_t)64 * 1024 * 1024)

static dock_http *g_bay;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

static int respond_text(dock_link *link, uint16_t status, const char *text)
{
    static const dock_kv h[] = { { "content-type", "text/plain; charset=utf-8" } };
    return dock_link_respond(link, status, h, 1, text, strlen(text), NULL, 0);
}

static int route_hello(dock_link *link)
{
    const char *greeting = dock_link_config(link, "greeting");
    char text[512];
    if (greeting)
        snprintf(text, sizeof text, "%s\n", greeting);
    else
        snprintf(text, sizeof text, "hello from %s\n", dock_http_ship(g_bay));
    return respond_text(link, 200, text);
}

static int route_echo(dock_link *link)
{
    uint8_t *body;
    size_t len;
    char err[256];
    int rc = dock_link_read_body(link, MAX_BODY, &body, &len, err, sizeof err);
    if (rc == DOCK_ERR_TOOBIG)
        return respond_text(link, 413, "request body too large\n");
    if (rc != DOCK_OK)
        return rc;
    const char *ct = dock_link_param(link, "CONTENT_TYPE");
    const char *method = dock_link_param(link, "REQUEST_METHOD");
    const char *path = dock_link_param(link, "PATH_INFO");
    const char *query = dock_link_param(link, "QUERY_STRING");
    dock_kv h[4] = {
        { "content-type", ct && *ct ? ct : "application/octet-stream" },
        { "x-echo-method", method ? method : "" },
        { "x-echo-path", path ? path : "" },
        { "x-echo-query", query ? query : "" },
    };
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", len);
    dock_kv all[5] = { h[0], h[1], h[2], h[3], { "content-length", cl } };
    rc = dock_link_respond(link, 200, all, 5, body, len, err, sizeof err);
    free(body);
    return rc;
}

/* A JSON string of bytes that may not be UTF-8: bytes over 0x7f that do
 * not make UTF-8 are replaced by U+FFFD. */
static json_t *json_bytes(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *c = malloc(n * 3 + 1);
    if (!c)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x80) {
            c[o++] = s[i];
        } else {
            memcpy(c + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
    }
    j = json_stringn(c, o);
    free(c);
    return j;
}

static int route_headers(dock_link *link)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < dock_link_param_count(link); i++) {
        const dock_param *p = dock_link_param_at(link, i);
        json_t *v = json_bytes(p->value, p->value_len);
        if (!v || json_object_set_new(o, p->name, v) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    char *s = o ? json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(1)) : NULL;
    json_decref(o);
    if (!s)
        return dock_link_fail(link, NULL, 0);
    static const dock_kv h[] = { { "content-type", "application/json" } };
    int rc = dock_link_respond(link, 200, h, 1, s, strlen(s), NULL, 0);
    free(s);
    return rc;
}

static int route_file(dock_link *link, const char *name)
{
    char cwd[PATH_MAX], path[PATH_MAX * 2], real[PATH_MAX];
    struct stat st;
    if (!*name || strstr(name, "..") || !getcwd(cwd, sizeof cwd)
        || (size_t)snprintf(path, sizeof path, "%s/%s", cwd, name) >= sizeof path
        || !realpath(path, real) || strncmp(real, cwd, strlen(cwd)) != 0
        || (strcmp(cwd, "/") != 0 && real[strlen(cwd)] != '/')   /* not a sibling sharing
                                                                     * cwd's prefix */
        || stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        return respond_text(link, 404, "no such file\n");
    static const dock_kv h[] = { { "content-type", "application/octet-stream" } };
    return dock_link_reply_file(link, h, 1, real, NULL, 0);
}

static int route_stream(dock_link *link)
{
    const char *q = dock_link_param(link, "QUERY_STRING");
    int n = 5;
    if (q && strncmp(q, "n=", 2) == 0)
        n = atoi(q + 2);
    if (n < 0 || n > 100000)
        return respond_text(link, 400, "n is out of range\n");
    static const dock_kv h[] = { { "content-type", "text/plain" } };
    int rc = dock_link_reply(link, 200, DOCK_REPLY_STREAM, h, 1, NULL, 0);
    for (int i = 1; rc == DOCK_OK && i <= n; i++) {
        char chunk[32];
        int len = snprintf(chunk, sizeof chunk, "chunk %d\n", i);
        rc = dock_link_write(link, chunk, (size_t)len, NULL, 0);
    }
    return rc == DOCK_OK ? dock_link_finish(link, NULL, 0) : rc;
}

/* ---- /ws: WebSocket echo over the tunnel, framed by wslay ---- */

typedef struct {
    dock_link *link;
    bool read_once;   /* one blocking read per round, then let wslay send */
    bool eof;
} ws_io;

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    ws_io *io = user;
    if (io->read_once || io->eof) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    io->read_once = true;
    size_t got;
    if (dock_link_read(io->link, buf, len, &got, NULL, 0) != DOCK_OK || got == 0) {
        io->eof = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)got;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    ws_io *io = user;
    if (dock_link_write(io->link, data, len, NULL, 0) != DOCK_OK) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    (void)user;
    if (wslay_is_ctrl_frame(arg->opcode))
        return;   /* ping/pong/close: wslay answers */
    struct wslay_event_msg m = { arg->opcode, arg->msg, arg->msg_length };
    wslay_event_queue_msg(ctx, &m);
}

static int route_ws(dock_link *link)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const char *key = dock_link_param(link, "HTTP_SEC_WEBSOCKET_KEY");
    const char *up = dock_link_param(link, "HTTP_UPGRADE");
    if (!key || !up || strcasecmp(up, "websocket") != 0 || strlen(key) > 64)
        return respond_text(link, 400, "a WebSocket upgrade is expected here\n");
    char buf[128];
    snprintf(buf, sizeof buf, "%s%s", key, guid);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    char accept[64];
    EVP_EncodeBlock((unsigned char *)accept, sha, sizeof sha);
    dock_kv h[] = { { "upgrade", "websocket" }, { "connection", "Upgrade" },
                    { "sec-websocket-accept", accept } };
    int rc = dock_link_reply(link, 101, DOCK_REPLY_TUNNEL, h, 3, NULL, 0);
    if (rc != DOCK_OK)
        return rc;
    ws_io io = { .link = link };
    struct wslay_event_callbacks cb = { .recv_callback = ws_recv, .send_callback = ws_send,
                                        .on_msg_recv_callback = ws_msg };
    wslay_event_context_ptr ctx;
    if (wslay_event_context_server_init(&ctx, &cb, &io) != 0)
        return dock_link_fail(link, NULL, 0);
    while (wslay_event_want_read(ctx) || wslay_event_want_write(ctx)) {
        io.read_once = false;
        if (wslay_event_want_read(ctx) && wslay_event_recv(ctx) != 0)
            break;
        if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
            break;
        if (io.eof)
            break;
    }
    wslay_event_context_free(ctx);
    return dock_link_finish(link, NULL, 0);   /* the tunnel ends; the link closes after it */
}

static int serve(dock_link *link)
{
    const char *path = dock_link_param(link, "PATH_INFO");
    if (!path || !*path || strcmp(path, "/") == 0)
        return route_hello(link);
    if (strcmp(path, "/echo") == 0)
        return route_echo(link);
    if (strcmp(path, "/headers") == 0)
        return route_headers(link);
    if (strncmp(path, "/file/", 6) == 0)
        return route_file(link, path + 6);
    if (strcmp(path, "/stream") == 0)
        return route_stream(link);
    if (strcmp(path, "/ws") == 0)
        return route_ws(link);
    if (strcmp(path, "/fail") == 0)
        return dock_link_fail(link, NULL, 0);
    return respond_text(link, 404, "not found\n");
}

static void *link_thread(void *arg)
{
    (void)arg;
    char err[512];
    for (;;) {
        dock_link *link;
        int rc = dock_http_accept(g_bay, &link, err, sizeof err);
        if (rc == DOCK_STOPPED)
            break;
        if (rc == DOCK_LINK_ENDED) {
            say("http-bay: a link failed to dock: %s\n", err);
            continue;
        }
        if (rc != DOCK_OK) {
            say("http-bay: %s\n", err);
            break;
        }
        while ((rc = dock_link_next(link, err, sizeof err)) == DOCK_OK)
            serve(link);   /* a failure breaks the link: dock_link_next says why */
        if (rc == DOCK_LINK_ENDED && strcmp(err, "Mothership closed the link") != 0
            && !strstr(err, "tunnel"))
            say("http-bay: link ended: %s\n", err);
        dock_link_close(link);
    }
    return NULL;
}

/* The stop: a thread of each process waits for SIGTERM or SIGINT (blocked
 * in every other thread), stops the bay (accepts end, idle links close,
 * requests in progress finish), passes the signal on to the forked
 * workers, and ends the process if the drain outlasts
 * MS_BAY_DRAIN_TIMEOUT seconds. */
static pid_t *g_kids;
static unsigned g_n_kids;

static void *stop_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    while (sigwait(set, &sig) != 0)
        ;
    dock_http_stop(g_bay);
    for (unsigned i = 0; i < g_n_kids; i++)
        if (g_kids[i] > 0)
            kill(g_kids[i], SIGTERM);
    const char *s = getenv("MS_BAY_DRAIN_TIMEOUT");
    unsigned secs = s && *s ? (unsigned)strtoul(s, NULL, 10) : 30;
    struct timespec ts = { .tv_sec = secs ? secs : 30 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    say("http-bay: requests still in progress after the drain timeout of %u s; exiting\n",
        secs ? secs : 30);
    _exit(1);
}

static int start_stop_thread(sigset_t *set)
{
    pthread_t t;
    if (pthread_create(&t, NULL, stop_thread, set) != 0)
        return -1;
    pthread_detach(t);
    return 0;
}

/* Runs the threads of this process until the bay is stopped. */
static int run_threads(unsigned n)
{
    pthread_t *t = calloc(n, sizeof *t);
    if (!t)
        return 1;
    unsigned started = 0;
    for (; started < n; started++)
        if (pthread_create(&t[started], NULL, link_thread, NULL) != 0)
            break;
    if (started == 0) {
        free(t);
        return 1;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    return 0;
}

int main(void)
{
    char err[512];
    /* Every thread started from here on has the stop signals blocked. */
    static sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stops, NULL);
    g_bay = dock_http_open(NULL, err, sizeof err);   /* $MS_SOCKET_PATH, $MS_SHIP, $MS_BAY_THREADS */
    if (!g_bay) {
        say("http-bay: %s\n", err);
        return 1;
    }
    unsigned workers = dock_http_workers(g_bay), threads = dock_http_threads(g_bay);
    say("http-bay: %s listening on %s, %u process(es) x %u thread(s)\n", dock_http_ship(g_bay),
        dock_http_socket_path(g_bay), workers ? workers : 1, threads);
    if (workers == 0) {
        int rc = start_stop_thread(&stops) == 0 ? run_threads(threads) : 1;
        dock_http_close(g_bay);
        return rc;
    }
    /* Forked workers share the listening socket; the parent waits. */
    g_kids = calloc(workers, sizeof *g_kids);
    if (!g_kids)
        return 1;
    for (unsigned i = 0; i < workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("http-bay: fork");
            break;
        }
        if (pid == 0) {
            g_n_kids = 0;   /* a worker has no workers of its own */
            int rc = start_stop_thread(&stops) == 0 ? run_threads(threads) : 1;
            dock_http_close(g_bay);
            _exit(rc);
        }
        g_kids[g_n_kids++] = pid;
    }
    if (start_stop_thread(&stops) != 0)
        return 1;
    int status, failed = 0;
    for (;;) {
        pid_t pid = wait(&status);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            break;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    dock_http_close(g_bay);
    return failed;
}
