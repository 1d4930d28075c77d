/* test_diff.c: unit tests of the manifest diff (manifest/diff.h). Every key
 * the loader accepts, walked from its own key lists, is changed alone
 * between two manifests and must be seen with the effect a reload gives it:
 * the entry restarts and the why names the key, or the workers swap it, or
 * it needs a restart of Mothership. A key added to the loader without a
 * case here fails the walk; a case whose change the diff misses fails too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest/diff.h"
#include "util/strutil.h"

static char dir[64]; /* holds the files the manifests name (certificates, payloads) */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ms-test-diff-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *files[] = { "a.pem", "a.key", "b.pem", "b.key", "a.wasm", "b.wasm", "a.env", "b.env" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        FILE *f = fopen(p, "w");
        if (!f)
            return -1;
        if (strstr(files[i], ".env")) /* env files: A=1 and A=2 */
            fprintf(f, "A=%d\n", files[i][0] == 'a' ? 1 : 2);
        fclose(f);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = { "a.pem", "a.key", "b.pem", "b.key", "a.wasm", "b.wasm", "a.env", "b.env" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

/* text with each "{D}" replaced by the test's directory, loaded; fails the
 * test with the problems when it does not load. */
static ms_manifest *load(const char *text)
{
    char buf[8192];
    size_t n = 0;
    for (const char *p = text; *p && n + sizeof dir < sizeof buf;) {
        if (strncmp(p, "{D}", 3) == 0) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s", dir);
            p += 3;
        } else
            buf[n++] = *p++;
    }
    buf[n] = '\0';
    ms_diags d;
    ms_diags_init(&d, "t.toml");
    ms_manifest *m = ms_manifest_load_buffer(buf, n, "t.toml", "/nonexistent-dir", &d);
    if (!m) {
        for (size_t i = 0; i < d.len; i++)
            fprintf(stderr, "  %d:%d: %s\n", d.items[i].line, d.items[i].col, d.items[i].msg);
        fprintf(stderr, "in:\n%s\n", buf);
    }
    ms_diags_free(&d);
    assert_non_null(m);
    return m;
}

static size_t index_of(const ms_manifest *m, const char *name)
{
    for (size_t i = 0; i < m->nships; i++)
        if (strcmp(m->ships[i].name, name) == 0)
            return i;
    fail_msg("no entry \"%s\"", name);
    return SIZE_MAX;
}

/* why is "a, b.c, ..." and one of its items is key or starts with "key.". */
static bool why_names(const char *why, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = why; p && *p;) {
        const char *end = strstr(p, ", ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if ((len == kl || (len > kl && p[kl] == '.')) && strncmp(p, key, kl) == 0)
            return true;
        p = end ? end + 2 : NULL;
    }
    return false;
}

static bool has_line(char *const *lines, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(lines[i], want))
            return true;
    return false;
}

static void dump(const ms_manifest_diff *d, const ms_manifest *b)
{
    for (size_t i = 0; i < d->nnew; i++)
        fprintf(stderr, "  %s: old %zu changed %d why %s\n", b->ships[i].name, d->old_index[i], d->changed[i],
                d->why[i] ? d->why[i] : "-");
    for (size_t i = 0; i < d->nswapped; i++)
        fprintf(stderr, "  swap: %s\n", d->swapped[i]);
    for (size_t i = 0; i < d->nneeds; i++)
        fprintf(stderr, "  needs restart: %s\n", d->needs_restart[i]);
}

/* ---------------------------------------------------------------- the key walk */
typedef enum effect {
    RESTART,     /* entry "web" restarts and its why names expect; nothing else changes */
    SWAP,        /* nothing restarts; a swapped line contains expect; the data plane changes */
    NEEDS,       /* nothing restarts or swaps; a needs-restart line contains expect */
    RENAME,      /* "web" stops, expect starts */
    RESTART_ALL, /* every entry restarts and its why names expect (inherited globals) */
    GROW,        /* expect starts; nothing restarts or stops (more instances) */
} effect;

typedef struct variant {
    const char *key;     /* the loader's key this case changes */
    const char *a, *b;   /* the lines of the table in one manifest and in the other */
    effect effect;
    const char *expect;
} variant;

typedef struct section {
    const char *table;   /* ms_manifest_keys() name */
    const char *doc;     /* a manifest with "%s" where a case's lines go */
    const variant *cases;
} section;

#define DB "[[fleet.db]]\nname = \"db\"\ncommand = \"/bin/db\"\n\n"
#define HTTP_BIND "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\nadmin = \"127.0.0.1:18081\"\n\n"
#define CMD "command = \"/bin/web\"\n"
#define HB "bind = \"127.0.0.1:3001\"\n"
#define PB "bind = \"127.0.0.1:{port}\"\nport = 3001\n"
#define WEB "[[fleet.web]]\nname = \"web\"\ncommand = \"/bin/web\"\n"

static const variant ship_cases[] = {
    { "name", "name = \"web\"\n" CMD, "name = \"web2\"\n" CMD, RENAME, "web2" },
    { "command", "name = \"web\"\ncommand = \"/bin/a\"", "name = \"web\"\ncommand = \"/bin/b\"", RESTART, "command" },
    { "args", "name = \"web\"\n" CMD "args = [\"a\"]", "name = \"web\"\n" CMD "args = [\"a\", \"b\"]", RESTART, "args" },
    { "bind", "name = \"web\"\n" CMD "bind = \"127.0.0.1:3001\"", "name = \"web\"\n" CMD "bind = \"127.0.0.1:3002\"",
      RESTART, "bind" },
    { "bind", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "bind = \"127.0.0.1:3002\"", RESTART, "bind" },
    { "healthcheck", "name = \"web\"\n" CMD HB, "name = \"web\"\n" CMD HB "healthcheck = \"/h\"", RESTART,
      "healthcheck" },
    { "healthcheck", "name = \"web\"\n" CMD HB "healthcheck = \"/a\"", "name = \"web\"\n" CMD HB "healthcheck = \"/b\"",
      RESTART, "healthcheck.path" },
    { "routes", "name = \"web\"\n" CMD "bind = \"127.0.0.1:3001\"\nroutes = [\"http:/a\"]",
      "name = \"web\"\n" CMD "bind = \"127.0.0.1:3001\"\nroutes = [\"http:/b\"]", SWAP, "routes of bind \"http\"" },
    { "depends_on", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "depends_on = [\"db\"]", RESTART, "depends_on" },
    { "env", "name = \"web\"\n" CMD "env = { PORT = \"1\" }", "name = \"web\"\n" CMD "env = { PORT = \"2\" }",
      RESTART, "env.PORT" },
    { "env", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "env = { X = 1 }", RESTART, "env.X" },
    { "env_file", "name = \"web\"\n" CMD "env_file = \"{D}/a.env\"",
      "name = \"web\"\n" CMD "env_file = [\"{D}/b.env\"]", RESTART, "env_file" },
    { "env_file", "name = \"web\"\n" CMD "env_file = \"{D}/a.env\"",
      "name = \"web\"\n" CMD "env_file = [\"{D}/b.env\"]", RESTART, "env.A" },
    { "secret_env", "name = \"web\"\n" CMD "secret_env = { S = \"/run/a\" }",
      "name = \"web\"\n" CMD "secret_env = { S = \"/run/b\" }", RESTART, "secret_env.S" },
    { "tags", "name = \"web\"\n" CMD "tags = [\"a\"]", "name = \"web\"\n" CMD "tags = [\"b\"]", RESTART, "tags" },
    { "critical", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "critical = false", RESTART, "critical" },
    { "oneshot", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "oneshot = true", RESTART, "oneshot" },
    { "cwd", "name = \"web\"\n" CMD "cwd = \"/tmp\"", "name = \"web\"\n" CMD "cwd = \"/\"", RESTART, "cwd" },
    { "ready_timeout", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "ready_timeout = \"5s\"", RESTART,
      "ready_timeout" },
    { "ready_after", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "ready_after = \"5s\"", RESTART, "ready_after" },
    { "shutdown_timeout", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "shutdown_timeout = \"5s\"", RESTART,
      "shutdown_timeout" },
    { "restart", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "restart = { backoff = \"1s\" }", RESTART,
      "restart.backoff" },
    { "instances", "name = \"web\"\n" CMD PB "instances = 2", "name = \"web\"\n" CMD PB "instances = 3", GROW,
      "web#2" },
    { "port", "name = \"web\"\n" CMD PB, "name = \"web\"\n" CMD "bind = \"127.0.0.1:{port}\"\nport = 3005", RESTART,
      "port" },
    { "balance", "name = \"web\"\n" CMD PB "instances = 2", "name = \"web\"\n" CMD PB "instances = 2\n"
      "balance = \"least_conn\"", SWAP, "ship \"web\" balance" },
    { "drain_timeout", "name = \"web\"\n" CMD HB, "name = \"web\"\n" CMD HB "drain_timeout = \"5s\"", SWAP,
      "ship \"web\" drain_timeout" },
    { "stop_signal", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "stop_signal = \"SIGINT\"", RESTART,
      "stop_signal" },
    { "schedule", "name = \"web\"\n" CMD "oneshot = true\nschedule = \"@daily\"",
      "name = \"web\"\n" CMD "oneshot = true\nschedule = \"*/5 * * * *\"", SWAP, "ship \"web\" schedule" },
    { "schedule", "name = \"web\"\n" CMD "oneshot = true", "name = \"web\"\n" CMD "oneshot = true\nschedule = \"@daily\"",
      SWAP, "ship \"web\" schedule" },
    { "memory_max", "name = \"web\"\n" CMD, "name = \"web\"\n" CMD "memory_max = \"512M\"", SWAP, "ship \"web\" memory_max" },
    { "cpu_max", "name = \"web\"\n" CMD "cpu_max = 1.5", "name = \"web\"\n" CMD "cpu_max = \"200%\"", SWAP, "ship \"web\" cpu_max" },
    { "pids_max", "name = \"web\"\n" CMD "pids_max = 10", "name = \"web\"\n" CMD "pids_max = 11", SWAP, "ship \"web\" pids_max" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define BAY_NAME "name = \"web\"\ncommand = \"/bin/bay\"\n"
static const variant bay_cases[] = {
    { "name", BAY_NAME, "name = \"web2\"\ncommand = \"/bin/bay\"\n", RENAME, "web2" },
    { "command", "name = \"web\"\ncommand = \"/bin/a\"", "name = \"web\"\ncommand = \"/bin/b\"", RESTART, "command" },
    { "args", BAY_NAME, BAY_NAME "args = [\"-v\"]", RESTART, "args" },
    { "routes", BAY_NAME "routes = [\"http:/ws\"]", BAY_NAME "routes = [\"http:/ws\", \"admin:/ws\"]", SWAP,
      "routes of bind \"admin\"" },
    { "depends_on", BAY_NAME, BAY_NAME "depends_on = [\"db\"]", RESTART, "depends_on" },
    { "env", BAY_NAME "env = { A = \"1\" }", BAY_NAME "env = { A = \"2\" }", RESTART, "env.A" },
    { "env_file", BAY_NAME "env_file = \"{D}/a.env\"",
      BAY_NAME "env_file = [\"{D}/b.env\"]", RESTART, "env_file" },
    { "env_file", BAY_NAME "env_file = \"{D}/a.env\"",
      BAY_NAME "env_file = [\"{D}/b.env\"]", RESTART, "env.A" },
    { "secret_env", BAY_NAME "secret_env = { S = \"/run/a\" }", BAY_NAME "secret_env = { S = \"/run/b\" }", RESTART,
      "secret_env.S" },
    { "config", BAY_NAME "config = { room = \"a\" }", BAY_NAME "config = { room = \"b\" }", RESTART, "config.room" },
    { "config", BAY_NAME "config = { room = \"a\" }", BAY_NAME "config = { room = \"a\", n = 1 }", RESTART,
      "config.n" },
    { "critical", BAY_NAME, BAY_NAME "critical = false", RESTART, "critical" },
    { "tags", BAY_NAME, BAY_NAME "tags = [\"chat\"]", RESTART, "tags" },
    { "cwd", BAY_NAME, BAY_NAME "cwd = \"/tmp\"", RESTART, "cwd" },
    { "ready_timeout", BAY_NAME, BAY_NAME "ready_timeout = \"5s\"", RESTART, "ready_timeout" },
    { "shutdown_timeout", BAY_NAME, BAY_NAME "shutdown_timeout = \"5s\"", RESTART, "shutdown_timeout" },
    { "restart", BAY_NAME, BAY_NAME "restart = { loop_limit = 9 }", RESTART, "restart.loop_limit" },
    { "subprotocols", BAY_NAME "subprotocols = [\"a\", \"b\"]", BAY_NAME "subprotocols = [\"b\", \"a\"]", RESTART,
      "subprotocols" },
    { "stop_signal", BAY_NAME, BAY_NAME "stop_signal = \"SIGQUIT\"", RESTART, "stop_signal" },
    { "handover_timeout", BAY_NAME, BAY_NAME "handover_timeout = \"5s\"", RESTART, "handover_timeout" },
    { "memory_max", BAY_NAME, BAY_NAME "memory_max = \"512M\"", SWAP, "bay \"web\" memory_max" },
    { "cpu_max", BAY_NAME "cpu_max = 1.5", BAY_NAME "cpu_max = \"200%\"", SWAP, "bay \"web\" cpu_max" },
    { "pids_max", BAY_NAME "pids_max = 10", BAY_NAME "pids_max = 11", SWAP, "bay \"web\" pids_max" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define HB_NAME "name = \"web\"\ncommand = \"/bin/bay\"\n"
static const variant hbay_cases[] = {
    { "name", HB_NAME, "name = \"web2\"\ncommand = \"/bin/bay\"\n", RENAME, "web2" },
    { "command", "name = \"web\"\ncommand = \"/bin/a\"", "name = \"web\"\ncommand = \"/bin/b\"", RESTART, "command" },
    { "args", HB_NAME, HB_NAME "args = [\"-v\"]", RESTART, "args" },
    { "routes", HB_NAME "routes = [\"http:/a\"]", HB_NAME "routes = [\"http:/a\", \"admin:/a\"]", SWAP,
      "routes of bind \"admin\"" },
    { "depends_on", HB_NAME, HB_NAME "depends_on = [\"db\"]", RESTART, "depends_on" },
    { "env", HB_NAME "env = { A = \"1\" }", HB_NAME "env = { A = \"2\" }", RESTART, "env.A" },
    { "env_file", HB_NAME "env_file = \"{D}/a.env\"",
      HB_NAME "env_file = [\"{D}/b.env\"]", RESTART, "env_file" },
    { "env_file", HB_NAME "env_file = \"{D}/a.env\"",
      HB_NAME "env_file = [\"{D}/b.env\"]", RESTART, "env.A" },
    { "secret_env", HB_NAME "secret_env = { S = \"/run/a\" }", HB_NAME "secret_env = { S = \"/run/b\" }", RESTART,
      "secret_env.S" },
    { "config", HB_NAME "config = { room = \"a\" }", HB_NAME "config = { room = \"b\" }", RESTART, "config.room" },
    { "critical", HB_NAME, HB_NAME "critical = false", RESTART, "critical" },
    { "tags", HB_NAME, HB_NAME "tags = [\"app\"]", RESTART, "tags" },
    { "cwd", HB_NAME, HB_NAME "cwd = \"/tmp\"", RESTART, "cwd" },
    { "ready_timeout", HB_NAME, HB_NAME "ready_timeout = \"5s\"", RESTART, "ready_timeout" },
    { "shutdown_timeout", HB_NAME, HB_NAME "shutdown_timeout = \"5s\"", RESTART, "shutdown_timeout" },
    { "restart", HB_NAME, HB_NAME "restart = { loop_limit = 9 }", RESTART, "restart.loop_limit" },
    { "stop_signal", HB_NAME, HB_NAME "stop_signal = \"SIGQUIT\"", RESTART, "stop_signal" },
    { "memory_max", HB_NAME, HB_NAME "memory_max = \"512M\"", SWAP, "bay \"web\" memory_max" },
    { "cpu_max", HB_NAME "cpu_max = 1.5", HB_NAME "cpu_max = \"200%\"", SWAP, "bay \"web\" cpu_max" },
    { "pids_max", HB_NAME "pids_max = 10", HB_NAME "pids_max = 11", SWAP, "bay \"web\" pids_max" },
    /* in the bay's environment: MS_BAY_WORKERS, MS_BAY_THREADS, MS_BAY_DRAIN_TIMEOUT */
    { "workers", HB_NAME, HB_NAME "workers = 2", RESTART, "workers" },
    { "threads", HB_NAME, HB_NAME "threads = 8", RESTART, "threads" },
    { "request_timeout", HB_NAME, HB_NAME "request_timeout = \"5s\"", RESTART, "request_timeout" },
    /* read by the workers only */
    { "max_queue", HB_NAME, HB_NAME "max_queue = 5", SWAP, "bay \"web\" max_queue" },
    { "file_roots", HB_NAME "file_roots = [\"/tmp\"]", HB_NAME "file_roots = [\"/\"]", SWAP, "bay \"web\" file_roots" },
    { NULL, NULL, NULL, RESTART, NULL },
};

/* An upstream has no process of ours: every change is the workers'. */
#define UP_NAME "name = \"web\"\nbind = \"unix:///tmp/up.sock\"\n"
static const variant upstream_cases[] = {
    { "name", UP_NAME, "name = \"web2\"\nbind = \"unix:///tmp/up.sock\"\n", RENAME, "web2" },
    { "bind", UP_NAME, "name = \"web\"\nbind = \"unix:///tmp/up2.sock\"\n", SWAP, "upstream \"web\" bind" },
    { "protocol", UP_NAME, UP_NAME "protocol = \"http\"", SWAP, "upstream \"web\" type, protocol" },
    { "routes", UP_NAME "routes = [\"http:/a\"]", UP_NAME "routes = [\"http:/a\", \"admin:/a\"]", SWAP,
      "routes of bind \"admin\"" },
    { "request_timeout", UP_NAME, UP_NAME "request_timeout = \"5s\"", SWAP, "upstream \"web\" request_timeout" },
    { "max_queue", UP_NAME, UP_NAME "max_queue = 5", SWAP, "upstream \"web\" max_queue" },
    { "file_roots", UP_NAME, UP_NAME "file_roots = [\"/tmp\"]", SWAP, "upstream \"web\" file_roots" },
    { "tags", UP_NAME, UP_NAME "tags = [\"ext\"]", SWAP, "upstream \"web\" tags" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define HC(x) "name = \"web\"\n" CMD HB "healthcheck = { " x " }"
static const variant health_cases[] = {
    { "path", HC("path = \"/a\""), HC("path = \"/b\""), RESTART, "healthcheck.path" },
    { "interval", HC("path = \"/h\""), HC("path = \"/h\", interval = \"1s\""), RESTART, "healthcheck.interval" },
    { "timeout", HC("path = \"/h\""), HC("path = \"/h\", timeout = \"1s\""), RESTART, "healthcheck.timeout" },
    { "grace", HC("path = \"/h\""), HC("path = \"/h\", grace = \"1s\""), RESTART, "healthcheck.grace" },
    { "failures", HC("path = \"/h\""), HC("path = \"/h\", failures = 9"), RESTART, "healthcheck.failures" },
    { "successes", HC("path = \"/h\""), HC("path = \"/h\", successes = 9"), RESTART, "healthcheck.successes" },
    { "cooldown", HC("path = \"/h\""), HC("path = \"/h\", cooldown = \"1s\""), RESTART, "healthcheck.cooldown" },
    { "restart", HC("path = \"/h\""), HC("path = \"/h\", restart = true"), RESTART, "healthcheck.restart" },
    { "protocol", HC("protocol = \"tcp\", port = 5000"), HC("protocol = \"redis\", port = 5000"), RESTART,
      "healthcheck.protocol" },
    { "address", HC("protocol = \"tcp\", address = \"127.0.0.1:5000\""),
      HC("protocol = \"tcp\", address = \"127.0.0.1:5001\""), RESTART, "healthcheck.address" },
    { "port", HC("protocol = \"tcp\", port = 5000"), HC("protocol = \"tcp\", port = 5001"), RESTART,
      "healthcheck.port" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define RS(x) "name = \"web\"\n" CMD "restart = { " x " }"
static const variant restart_cases[] = {
    { "backoff", RS("backoff = \"1s\""), RS("backoff = \"2s\""), RESTART, "restart.backoff" },
    { "max_backoff", RS("max_backoff = \"40s\""), RS("max_backoff = \"50s\""), RESTART, "restart.max_backoff" },
    { "reset_after", RS("reset_after = \"1s\""), RS("reset_after = \"2s\""), RESTART, "restart.reset_after" },
    { "loop_limit", RS("loop_limit = 2"), RS("loop_limit = 3"), RESTART, "restart.loop_limit" },
    { "loop_window", RS("loop_window = \"1s\""), RS("loop_window = \"2s\""), RESTART, "restart.loop_window" },
    { "loop_pause", RS("loop_pause = \"1s\""), RS("loop_pause = \"2s\""), RESTART, "restart.loop_pause" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define RT(x) "name = \"web\"\n" CMD "bind = \"127.0.0.1:3001\"\nroutes = [{ " x " }]"
static const variant route_cases[] = {
    { "bind", RT("bind = \"http\", pattern = \"/a\""), RT("bind = \"admin\", pattern = \"/a\""), SWAP,
      "routes of bind \"admin\"" },
    { "pattern", RT("bind = \"http\", pattern = \"/a\""), RT("bind = \"http\", pattern = \"/b\""), SWAP,
      "routes of bind \"http\"" },
    { "name", RT("bind = \"http\", pattern = \"/a/.*\""),
      RT("bind = \"http\", pattern = \"/a/.*\", name = \"/a\""), SWAP, "routes of bind \"http\"" },
    { "strip_prefix", RT("bind = \"http\", pattern = \"/a/.*\""),
      RT("bind = \"http\", pattern = \"/a/.*\", strip_prefix = \"/a\""), SWAP, "routes of bind \"http\"" },
    { "raw_path", RT("bind = \"http\", pattern = \"/a\""), RT("bind = \"http\", pattern = \"/a\", raw_path = true"),
      SWAP, "routes of bind \"http\"" },
    { "request_buffering", RT("bind = \"http\", pattern = \"/a\""),
      RT("bind = \"http\", pattern = \"/a\", request_buffering = true"), SWAP, "routes of bind \"http\"" },
    { "ws_compression", RT("bind = \"http\", pattern = \"/a\""),
      RT("bind = \"http\", pattern = \"/a\", ws_compression = true"), SWAP, "routes of bind \"http\"" },
    { NULL, NULL, NULL, RESTART, NULL },
};

static const variant mothership_cases[] = {
    { "metrics_port", "metrics_port = 9100", "metrics_port = 9101", NEEDS, "[mothership] metrics_port" },
    { "metrics_bind", "", "metrics_bind = \"0.0.0.0\"", NEEDS, "[mothership] metrics_bind" },
    { "compression", "", "compression = true", SWAP, "[mothership] compression" },
    { "shutdown_timeout", "", "shutdown_timeout = \"3s\"", RESTART_ALL, "shutdown_timeout" },
    { "ready_timeout", "", "ready_timeout = \"3s\"", RESTART_ALL, "ready_timeout" },
    { "socket_dir", "", "socket_dir = \"/tmp/x\"", NEEDS, "[mothership] socket_dir" },
    { "state_dir", "", "state_dir = \"/tmp/x\"", NEEDS, "[mothership] state_dir" },
    { "workers", "", "workers = 2", NEEDS, "[mothership] workers" },
    { "upstreams", "", "upstreams = [{ name = \"up\", bind = \"unix:///tmp/up.sock\" }]", GROW, "up" },
    { "control_socket", "", "control_socket = \"/tmp/x.ctl\"", NEEDS, "[mothership] control_socket" },
    { "control_group", "", "control_group = \"root\"", NEEDS, "[mothership] control_group" },
    { "access_log", "", "access_log = \"json\"", SWAP, "[mothership] access_log" },
    { "access_log_path", "", "access_log_path = \"/tmp/access.log\"", SWAP, "[mothership] access_log_path" },
    { "env", "env = { A = \"1\" }", "env = { A = \"2\" }", RESTART_ALL, "env.A" },
    { "bind", "bind = { http = \"127.0.0.1:18080\" }", "bind = { http = \"127.0.0.1:18081\" }", SWAP,
      "bind \"http\" (address)" },
    { "bind", "", "bind = { http = \"127.0.0.1:18081\" }", SWAP, "bind \"http\" added" },
    { "bind", "bind = { http = \"127.0.0.1:18081\" }", "", SWAP, "bind \"http\" removed" },
    { "tls", "", "tls = { cert = \"{D}/a.pem\", key = \"{D}/a.key\" }", SWAP, "[mothership.tls]" },
    { "static_dirs", "", "static_dirs = [{ path = \"/tmp\" }]", SWAP, "[[mothership.static_dirs]]" },
    { "http", "", "http = { max_body_size = 1000 }", SWAP, "[mothership.http] max_body_size" },
    { "acme", "bind = { http = \"127.0.0.1:18080\", https = \"127.0.0.1:18443\" }\nacme = { domains = [\"a.example.com\"] }",
      "bind = { http = \"127.0.0.1:18080\", https = \"127.0.0.1:18443\" }\nacme = { domains = [\"b.example.com\"] }",
      NEEDS, "[mothership.acme] domains" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define H(k, a, b) { k, "http = { " k " = " a " }", "http = { " k " = " b " }", SWAP, "[mothership.http] " k }
static const variant http_cases[] = {
    H("max_header_size", "20000", "30000"),
    H("max_uri_length", "1000", "2000"),
    H("max_body_size", "1000", "2000"),
    H("header_timeout", "\"5s\"", "\"6s\""),
    H("idle_timeout", "\"5s\"", "\"6s\""),
    H("upstream_connect_timeout", "\"5s\"", "\"6s\""),
    H("upstream_timeout", "\"5s\"", "\"6s\""),
    H("eject_cooldown", "\"5s\"", "\"6s\""),
    H("max_connections", "10", "20"),
    H("upstream_keepalive", "10", "20"),
    H("ws_max_message_size", "1000", "2000"),
    H("ws_send_queue", "8192", "16384"),
    H("ws_ping_interval", "\"5s\"", "\"6s\""),
    H("ws_idle_timeout", "\"80s\"", "\"90s\""),
    H("request_buffering", "false", "true"),
    H("request_buffer_size", "2048", "4096"),
    H("body_timeout", "\"5s\"", "\"6s\""),
    H("max_response_header_size", "2048", "4096"),
    H("h2_max_concurrent_streams", "10", "20"),
    H("h2_max_header_list_size", "2048", "4096"),
    H("h2_header_table_size", "100", "200"),
    H("h2_rapid_reset_max", "10", "20"),
    H("h2_rapid_reset_window", "\"5s\"", "\"6s\""),
    H("h2_max_control_frames", "10", "20"),
    H("h2_stall_timeout", "\"5s\"", "\"6s\""),
    { NULL, NULL, NULL, RESTART, NULL },
};

#define BT(x) "https = { address = \"127.0.0.1:18443\", tls = \"self-signed\" }\nhttp = { address = \"127.0.0.1:18080\"" x " }"
static const variant bind_cases[] = {
    { "address", BT(""), "https = { address = \"127.0.0.1:18443\", tls = \"self-signed\" }\nhttp = { address = \"127.0.0.1:18082\" }",
      SWAP, "bind \"http\" (address)" },
    { "tls", BT(""), BT(", tls = \"self-signed\""), SWAP, "bind \"http\" (tls" },
    { "tls", BT(", tls = \"self-signed\""), BT(", tls = { cert = \"{D}/a.pem\", key = \"{D}/a.key\" }"), SWAP,
      "bind \"http\" (self_signed, tls)" },
    { "tls", BT(", tls = { cert = \"{D}/a.pem\", key = \"{D}/a.key\" }"),
      BT(", tls = { cert = \"{D}/b.pem\", key = \"{D}/a.key\" }"), SWAP, "bind \"http\" (tls.cert)" },
    { "h2", BT(", tls = \"self-signed\""), BT(", tls = \"self-signed\", h2 = false"), SWAP, "bind \"http\" (h2)" },
    { "h2c", BT(""), BT(", h2c = true"), SWAP, "bind \"http\" (h2c)" },
    { "redirect_to_https", BT(""), BT(", redirect_to_https = true"), SWAP, "bind \"http\" (redirect_to_https)" },
    { "access_log", BT(""), BT(", access_log = \"text\""), SWAP, "bind \"http\" (access_log)" },
    { NULL, NULL, NULL, RESTART, NULL },
};

static const variant tls_cases[] = {
    { "cert", "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"", "cert = \"{D}/b.pem\"\nkey = \"{D}/a.key\"", SWAP,
      "[mothership.tls] cert" },
    { "key", "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"", "cert = \"{D}/a.pem\"\nkey = \"{D}/b.key\"", SWAP,
      "[mothership.tls] key" },
    { "certs", "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"",
      "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"\ncerts = [{ cert = \"{D}/b.pem\", key = \"{D}/b.key\" }]", SWAP,
      "[mothership.tls] certs" },
    { "session_tickets", "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"",
      "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"\nsession_tickets = false", SWAP, "[mothership.tls] session_tickets" },
    { "ticket_key_rotation", "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"",
      "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"\nticket_key_rotation = \"1h\"", SWAP,
      "[mothership.tls] ticket_key_rotation" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define TC(x) "cert = \"{D}/a.pem\"\nkey = \"{D}/a.key\"\ncerts = [{ " x " }]"
static const variant tlscert_cases[] = {
    { "cert", TC("cert = \"{D}/a.pem\", key = \"{D}/a.key\""), TC("cert = \"{D}/b.pem\", key = \"{D}/a.key\""),
      SWAP, "[mothership.tls] certs #2 cert" },
    { "key", TC("cert = \"{D}/a.pem\", key = \"{D}/a.key\""), TC("cert = \"{D}/a.pem\", key = \"{D}/b.key\""),
      SWAP, "[mothership.tls] certs #2 key" },
    { "hosts", TC("cert = \"{D}/a.pem\", key = \"{D}/a.key\", hosts = [\"a.example\"]"),
      TC("cert = \"{D}/a.pem\", key = \"{D}/a.key\", hosts = [\"b.example\"]"), SWAP,
      "[mothership.tls] certs #2 hosts" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define AD "domains = [\"a.example.com\"]\n"
static const variant acme_cases[] = {
    { "directory", AD, AD "directory = \"https://acme.example/dir\"", NEEDS, "[mothership.acme] directory" },
    { "email", AD, AD "email = \"ops@example.com\"", NEEDS, "[mothership.acme] email" },
    { "domains", AD, "domains = [\"b.example.com\"]", NEEDS, "[mothership.acme] domains" },
    { "state_dir", AD, AD "state_dir = \"/tmp/acme\"", NEEDS, "[mothership.acme] state_dir" },
    { "ca_root", AD, AD "ca_root = \"{D}/a.pem\"", NEEDS, "[mothership.acme] ca_root" },
    { "challenge", AD, AD "challenge = \"tls-alpn-01\"", NEEDS, "[mothership.acme] challenge" },
    { "backoff", AD, AD "backoff = \"2m\"", NEEDS, "[mothership.acme] backoff" },
    { "max_backoff", AD, AD "max_backoff = \"1h\"", NEEDS, "[mothership.acme] max_backoff" },
    { NULL, NULL, NULL, RESTART, NULL },
};

/* A bind's tls table: its own certificate is swapped, its ACME names wait
 * for a restart ("all" serves every ACME name meanwhile). */
static const variant bindtls_cases[] = {
    { "cert", "cert = \"{D}/a.pem\", key = \"{D}/a.key\"", "cert = \"{D}/b.pem\", key = \"{D}/a.key\"", SWAP,
      "bind \"own\" (tls.cert)" },
    { "key", "cert = \"{D}/a.pem\", key = \"{D}/a.key\"", "cert = \"{D}/a.pem\", key = \"{D}/b.key\"", SWAP,
      "bind \"own\" (tls.key)" },
    { "hosts", "cert = \"{D}/a.pem\", key = \"{D}/a.key\"", "cert = \"{D}/a.pem\", key = \"{D}/a.key\", hosts = [\"x.example\"]",
      SWAP, "bind \"own\" (tls.hosts)" },
    { "acme", "acme = [\"a.example.com\"]", "acme = [\"a.example.com\", \"b.example.com\"]", NEEDS,
      "bind \"own\" tls.acme" },
    { NULL, NULL, NULL, RESTART, NULL },
};

static const variant static_cases[] = {
    { "path", "path = \"/tmp\"", "path = \"/\"", SWAP, "[[mothership.static_dirs]]" },
    { "prefix", "path = \"/tmp\"", "path = \"/tmp\"\nprefix = \"/s\"", SWAP, "[[mothership.static_dirs]]" },
    { "bind", "path = \"/tmp\"", "path = \"/tmp\"\nbind = \"http\"", SWAP, "[[mothership.static_dirs]]" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define MOD "name = \"auth\"\nwasm = \"{D}/a.wasm\"\n"
static const variant module_cases[] = {
    { "name", MOD, "name = \"auth2\"\nwasm = \"{D}/a.wasm\"", SWAP, "payload \"auth2\" added" },
    { "wasm", MOD, "name = \"auth\"\nwasm = \"{D}/b.wasm\"", SWAP, "payload \"auth\" (wasm)" },
    { "routes", MOD, MOD "routes = [\"/a\"]", SWAP, "payload \"auth\" (routes)" },
    { "phase", MOD, MOD "phase = \"response\"", SWAP, "payload \"auth\" (phase)" },
    { "config", MOD, MOD "config = { k = 1 }", SWAP, "payload \"auth\" (config.k)" },
    { "tags", MOD, MOD "tags = [\"t\"]", SWAP, "payload \"auth\" (tags)" },
    { "on_error", MOD, MOD "on_error = \"open\"", SWAP, "payload \"auth\" (on_error)" },
    { NULL, NULL, NULL, RESTART, NULL },
};

#define UP "url = \"postgres://127.0.0.1:5432/a\"\nname = \"db\"\n"
static const variant uplink_cases[] = {
    { "url", UP, "url = \"postgres://127.0.0.1:5433/a\"\nname = \"db\"", NEEDS, "uplink \"db\"" },
    { "name", UP, "url = \"postgres://127.0.0.1:5432/a\"\nname = \"pg\"", NEEDS, "uplink \"pg\"" },
    { "timeout", UP, UP "timeout = \"1s\"", NEEDS, "uplink \"db\"" },
    { "wait", UP, UP "wait = \"1s\"", NEEDS, "uplink \"db\"" },
    { NULL, NULL, NULL, RESTART, NULL },
};

static const section sections[] = {
    { "ship", HTTP_BIND DB "[[fleet.web]]\n%s\n", ship_cases },
    { "bay", HTTP_BIND DB "[[bays.websocket]]\n%s\n", bay_cases },
    { "http_bay", HTTP_BIND DB "[[bays.http]]\n%s\n", hbay_cases },
    { "upstream", HTTP_BIND DB "[[mothership.upstreams]]\n%s\n", upstream_cases },
    { "healthcheck", DB "[[fleet.web]]\n%s\n", health_cases },
    { "restart", DB "[[fleet.web]]\n%s\n", restart_cases },
    { "route", HTTP_BIND DB "[[fleet.web]]\n%s\n", route_cases },
    { "mothership", "[mothership]\n%s\n\n" DB WEB, mothership_cases },
    { "http", "[mothership]\n%s\n\n" DB WEB, http_cases },
    { "bind", "[mothership.bind]\n%s\n\n" DB WEB, bind_cases },
    { "tls", "[mothership.tls]\n%s\n\n" DB WEB, tls_cases },
    { "tls.certs", "[mothership.tls]\n%s\n\n" DB WEB, tlscert_cases },
    { "acme", "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\nhttps = \"127.0.0.1:18443\"\n\n"
              "[mothership.acme]\n%s\n\n" DB WEB, acme_cases },
    { "bind.tls", "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\nall = { address = \"127.0.0.1:18443\", tls = true }\n"
                  "own = { address = \"127.0.0.1:18444\", tls = { %s } }\n\n"
                  "[mothership.acme]\ndomains = [\"a.example.com\"]\n\n" DB WEB, bindtls_cases },
    { "static_dirs", HTTP_BIND "[[mothership.static_dirs]]\n%s\n\n" DB WEB, static_cases },
    { "module", "[[modules]]\n%s\n\n" DB WEB, module_cases },
    { "uplink", "[[uplinks]]\n%s\n\n" DB WEB, uplink_cases },
};

static bool any_changed(const ms_manifest_diff *d)
{
    for (size_t i = 0; i < d->nnew; i++)
        if (d->changed[i] || d->old_index[i] == SIZE_MAX)
            return true;
    for (size_t i = 0; i < d->nold; i++)
        if (d->removed[i])
            return true;
    return false;
}

static void run_case(const section *s, const variant *v)
{
    char *ta = ms_asprintf(s->doc, v->a), *tb = ms_asprintf(s->doc, v->b);
    assert_non_null(ta);
    assert_non_null(tb);
    ms_manifest *a = load(ta), *b = load(tb);
    /* the same text: nothing changes */
    ms_manifest *a2 = load(ta);
    ms_manifest_diff *same = ms_manifest_diff_new(a, a2);
    assert_non_null(same);
    if (!ms_manifest_diff_empty(same)) {
        dump(same, a2);
        fail_msg("[%s] %s: the same manifest differs", s->table, v->key);
    }
    ms_manifest_diff_free(same);
    ms_manifest_free(a2);

    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    bool ok = true;
    switch (v->effect) {
    case RESTART: {
        size_t web = index_of(b, "web"), db = index_of(b, "db");
        ok = d->changed[web] && d->why[web] && why_names(d->why[web], v->expect) && !d->changed[db] &&
             d->old_index[web] != SIZE_MAX && d->nneeds == 0 && d->nswapped == 0;
        break;
    }
    case SWAP:
        ok = !any_changed(d) && has_line(d->swapped, d->nswapped, v->expect) && d->dataplane && d->nneeds == 0;
        break;
    case NEEDS:
        ok = !any_changed(d) && has_line(d->needs_restart, d->nneeds, v->expect) && d->nswapped == 0 &&
             !d->dataplane;
        break;
    case RESTART_ALL:
        for (size_t i = 0; i < d->nnew; i++)
            ok &= d->changed[i] && why_names(d->why[i], v->expect);
        ok &= d->nneeds == 0 && d->nswapped == 0;
        break;
    case GROW: {
        size_t added = index_of(b, v->expect);
        ok = d->old_index[added] == SIZE_MAX && d->nneeds == 0;
        for (size_t i = 0; i < d->nnew; i++)
            ok &= !d->changed[i] && (i == added || d->old_index[i] != SIZE_MAX);
        for (size_t i = 0; i < d->nold; i++)
            ok &= !d->removed[i];
        break;
    }
    case RENAME: {
        size_t renamed = index_of(b, v->expect);
        ok = d->old_index[renamed] == SIZE_MAX && !d->changed[renamed] && d->removed[index_of(a, "web")];
        break;
    }
    }
    if (!ok) {
        dump(d, b);
        fail_msg("[%s] %s: expected %s \"%s\"", s->table, v->key,
                 v->effect == RESTART ? "a restart for" : v->effect == SWAP ? "a swap of" :
                 v->effect == NEEDS ? "a restart of Mothership for" : v->effect == RENAME ? "a rename to" :
                 v->effect == GROW ? "only a start of" :
                 "every entry to restart for", v->expect);
    }
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

/* Every key of every table the loader knows has a case, and each case's
 * change is seen with its effect. */
static void test_every_key(void **state)
{
    (void)state;
    size_t ncases = 0;
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        const section *sec = &sections[s];
        const char *const *keys = ms_manifest_keys(sec->table);
        assert_non_null(keys);
        for (size_t k = 0; keys[k]; k++) {
            bool found = false;
            for (const variant *v = sec->cases; v->key; v++)
                found |= strcmp(v->key, keys[k]) == 0;
            if (!found)
                fail_msg("[%s] key \"%s\" has no case in test_diff.c: add one, and compare the key in "
                         "manifest/diff.c", sec->table, keys[k]);
        }
        for (const variant *v = sec->cases; v->key; v++) {
            bool known = false;
            for (size_t k = 0; keys[k]; k++)
                known |= strcmp(v->key, keys[k]) == 0;
            if (!known)
                fail_msg("[%s] case for \"%s\", which the loader does not know", sec->table, v->key);
            run_case(sec, v);
            ncases++;
        }
    }
    assert_true(ncases > 100);
}

/* ---------------------------------------------------------------- whole manifests */
static const char *const three =
    HTTP_BIND
    "[[fleet.web]]\nname = \"web\"\ncommand = \"/bin/web\"\nbind = \"127.0.0.1:3001\"\nroutes = [\"http:/.*\"]\n\n"
    "[[fleet.api]]\nname = \"api\"\ncommand = \"/bin/api\"\nbind = \"127.0.0.1:3002\"\n"
    "routes = [\"http:/api/.*\"]\nenv = { PORT = \"3002\" }\n\n"
    "[[fleet.worker]]\nname = \"worker\"\ncommand = \"/bin/worker\"\n\n"
    "[[bays.websocket]]\nname = \"chat\"\ncommand = \"/bin/chat\"\nroutes = [\"http:/ws\"]\n";

static void test_unchanged(void **state)
{
    (void)state;
    ms_manifest *a = load(three), *b = load(three);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(ms_manifest_diff_empty(d));
    assert_int_equal(d->nnew, 4);
    for (size_t i = 0; i < d->nnew; i++) {
        assert_int_equal(d->old_index[i], i);
        assert_false(d->changed[i]);
        assert_null(d->why[i]);
    }
    json_t *plan = ms_manifest_diff_plan(d, a, b);
    assert_non_null(plan);
    assert_int_equal(json_array_size(json_object_get(plan, "unchanged")), 4);
    assert_int_equal(json_array_size(json_object_get(plan, "restart")), 0);
    assert_int_equal(json_array_size(json_object_get(plan, "swap")), 0);
    json_decref(plan);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
}

/* The entries written in another order: the same entries, nothing to do. */
static void test_reorder(void **state)
{
    (void)state;
    const char *a_text = DB WEB "env = { B = \"2\", A = \"1\" }\ntags = [\"x\", \"y\"]\n\n"
                         "[[bays.websocket]]\nname = \"chat\"\ncommand = \"/bin/chat\"\n";
    const char *b_text = "[[bays.websocket]]\nname = \"chat\"\ncommand = \"/bin/chat\"\n\n"
                         WEB "tags = [\"y\", \"x\"]\nenv = { A = \"1\", B = \"2\" }\n\n" DB;
    ms_manifest *a = load(a_text), *b = load(b_text);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    if (!ms_manifest_diff_empty(d))
        dump(d, b);
    assert_true(ms_manifest_diff_empty(d));
    assert_int_equal(d->old_index[index_of(b, "chat")], index_of(a, "chat"));
    assert_int_equal(d->old_index[index_of(b, "db")], index_of(a, "db"));
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
}

/* Reordering entries with routes on one bind changes the order the router
 * tries them in: the workers swap, nothing restarts. */
static void test_reorder_routes(void **state)
{
    (void)state;
    const char *a_text = HTTP_BIND "[[fleet.a]]\nname = \"a\"\ncommand = \"x\"\nbind = \"127.0.0.1:3001\"\n"
                         "routes = [\"http:/a\"]\n\n[[fleet.b]]\nname = \"b\"\ncommand = \"x\"\n"
                         "bind = \"127.0.0.1:3002\"\nroutes = [\"http:/b\"]\n";
    const char *b_text = HTTP_BIND "[[fleet.b]]\nname = \"b\"\ncommand = \"x\"\nbind = \"127.0.0.1:3002\"\n"
                         "routes = [\"http:/b\"]\n\n[[fleet.a]]\nname = \"a\"\ncommand = \"x\"\n"
                         "bind = \"127.0.0.1:3001\"\nroutes = [\"http:/a\"]\n";
    ms_manifest *a = load(a_text), *b = load(b_text);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_false(any_changed(d));
    assert_true(has_line(d->swapped, d->nswapped, "routes of bind \"http\""));
    assert_true(d->dataplane);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
}

/* A rename is a removal and an addition; the others stay. */
static void test_rename(void **state)
{
    (void)state;
    ms_manifest *a = load(three);
    char *t = ms_asprintf("%s", three);
    assert_non_null(t);
    char *p = strstr(t, "name = \"worker\"");
    assert_non_null(p);
    memcpy(p, "name = \"jobby\" ", 15);
    ms_manifest *b = load(t);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_int_equal(d->old_index[index_of(b, "jobby")], SIZE_MAX);
    assert_true(d->removed[index_of(a, "worker")]);
    assert_false(d->removed[index_of(a, "web")]);
    assert_false(d->changed[index_of(b, "web")]);
    assert_false(d->dataplane); /* no routes to it */
    json_t *plan = ms_manifest_diff_plan(d, a, b);
    assert_non_null(plan);
    assert_string_equal(json_string_value(json_array_get(json_object_get(plan, "start"), 0)), "jobby");
    assert_string_equal(json_string_value(json_array_get(json_object_get(plan, "stop"), 0)), "worker");
    assert_int_equal(json_array_size(json_object_get(plan, "unchanged")), 3);
    json_decref(plan);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(t);
}

/* A ship that becomes a bay under the same name restarts as what it is now. */
static void test_kind(void **state)
{
    (void)state;
    ms_manifest *a = load(DB WEB), *b = load(DB "[[bays.websocket]]\nname = \"web\"\ncommand = \"/bin/web\"\n");
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    size_t web = index_of(b, "web");
    assert_true(d->changed[web]);
    assert_true(why_names(d->why[web], "kind"));
    assert_true(why_names(d->why[web], "group"));
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
}

/* A change in [base.ship] changes every ship that takes it, and only those
 * that do not set the key themselves. */
static void test_base_template(void **state)
{
    (void)state;
    const char *fmt = "[base.ship]\nenv = { LOG = \"%s\" }\nrestart = { backoff = \"%s\" }\n\n"
                      "[[fleet.a]]\nname = \"a\"\ncommand = \"x\"\n\n"
                      "[[fleet.b]]\nname = \"b\"\ncommand = \"x\"\nenv = { LOG = \"own\" }\n"
                      "restart = { backoff = \"9s\" }\n\n"
                      "[[bays.websocket]]\nname = \"chat\"\ncommand = \"x\"\n";
    char *ta = ms_asprintf(fmt, "info", "1s"), *tb = ms_asprintf(fmt, "debug", "2s");
    assert_non_null(ta);
    assert_non_null(tb);
    ms_manifest *a = load(ta), *b = load(tb);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    size_t ia = index_of(b, "a");
    assert_true(d->changed[ia]);
    assert_true(why_names(d->why[ia], "env.LOG"));
    assert_true(why_names(d->why[ia], "restart.backoff"));
    assert_false(d->changed[index_of(b, "b")]);
    assert_false(d->changed[index_of(b, "chat")]); /* bays take [base.bay] */
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

/* [base.bay] reaches the bays, [base.module] the payloads. */
static void test_base_bay_and_module(void **state)
{
    (void)state;
    const char *fmt = "[base.bay]\nconfig = { room = \"%s\" }\n\n[base.module]\non_error = \"%s\"\n\n"
                      "[[modules]]\nname = \"auth\"\nwasm = \"{D}/a.wasm\"\n\n" WEB "\n"
                      "[[bays.websocket]]\nname = \"chat\"\ncommand = \"x\"\n";
    char *ta = ms_asprintf(fmt, "a", "closed"), *tb = ms_asprintf(fmt, "b", "open");
    assert_non_null(ta);
    assert_non_null(tb);
    ms_manifest *a = load(ta), *b = load(tb);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(d->changed[index_of(b, "chat")]);
    assert_string_equal(d->why[index_of(b, "chat")], "config.room");
    assert_false(d->changed[index_of(b, "web")]);
    assert_int_equal(d->nswapped, 1);
    assert_string_equal(d->swapped[0], "payload \"auth\" (on_error)");
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

/* Payloads run in manifest order: swapping two is a change of the chain. */
static void test_payload_order(void **state)
{
    (void)state;
    const char *m1 = "[[modules]]\nname = \"one\"\nwasm = \"{D}/a.wasm\"\n\n";
    const char *m2 = "[[modules]]\nname = \"two\"\nwasm = \"{D}/b.wasm\"\n\n";
    char *ta = ms_asprintf("%s%s" WEB, m1, m2), *tb = ms_asprintf("%s%s" WEB, m2, m1);
    assert_non_null(ta);
    assert_non_null(tb);
    ms_manifest *a = load(ta), *b = load(tb);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_false(any_changed(d));
    assert_int_equal(d->nswapped, 1);
    assert_string_equal(d->swapped[0], "payload order");
    assert_true(d->dataplane);
    ms_manifest_diff_free(d);
    ms_manifest_free(b);
    b = load(ta);
    d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(ms_manifest_diff_empty(d));
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

/* Only the routes of a ship change: it keeps running, the workers swap. */
static void test_routes_only(void **state)
{
    (void)state;
    ms_manifest *a = load(three);
    char *t = ms_asprintf("%s", three);
    assert_non_null(t);
    char *p = strstr(t, "\"http:/api/.*\"");
    assert_non_null(p);
    memcpy(p, "\"http:/apx/.*\"", 14);
    ms_manifest *b = load(t);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_false(any_changed(d));
    assert_true(d->dataplane);
    assert_int_equal(d->nswapped, 1);
    assert_string_equal(d->swapped[0], "routes of bind \"http\"");
    assert_int_equal(d->nneeds, 0);
    json_t *plan = ms_manifest_diff_plan(d, a, b);
    assert_non_null(plan);
    assert_int_equal(json_array_size(json_object_get(plan, "restart")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(plan, "swap"), 0)),
                        "routes of bind \"http\"");
    json_decref(plan);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(t);
}

/* A ship with instances: more or fewer start or stop only the instances
 * added or removed (their dependents stay too); a change of its definition
 * is a change of every instance. */
static void test_instances(void **state)
{
    (void)state;
    const char *fmt = HTTP_BIND "[[fleet.web]]\nname = \"web\"\ncommand = \"%s\"\nbind = \"127.0.0.1:{port}\"\n"
                      "port = 3000\ninstances = %d\nroutes = [\"http:/.*\"]\n\n"
                      "[[fleet.w]]\nname = \"after\"\ncommand = \"/bin/w\"\ndepends_on = [\"web\"]\n";
    char *t3 = ms_asprintf(fmt, "/bin/web", 3), *t2 = ms_asprintf(fmt, "/bin/web", 2);
    char *t3b = ms_asprintf(fmt, "/bin/web2", 3), *t1 = ms_asprintf(fmt, "/bin/web", 1);
    assert_non_null(t3);
    assert_non_null(t2);
    assert_non_null(t3b);
    assert_non_null(t1);
    ms_manifest *m3 = load(t3), *m2 = load(t2), *m3b = load(t3b), *m1 = load(t1);

    /* 2 -> 3: web#2 starts; web#0, web#1 and after keep running; the route's instances are swapped */
    ms_manifest_diff *d = ms_manifest_diff_new(m2, m3);
    assert_non_null(d);
    assert_int_equal(d->old_index[index_of(m3, "web#2")], SIZE_MAX);
    for (size_t i = 0; i < d->nnew; i++)
        if (strcmp(m3->ships[i].name, "web#2") != 0) {
            if (d->changed[i])
                dump(d, m3);
            assert_false(d->changed[i]);
            assert_int_not_equal(d->old_index[i], SIZE_MAX);
        }
    assert_true(has_line(d->swapped, d->nswapped, "routes of bind \"http\""));
    assert_true(d->dataplane);
    ms_manifest_diff_free(d);

    /* the same addresses written another way: no change; the replacement's address gone: a change */
    const char *alt = HTTP_BIND "[[fleet.web]]\nname = \"web\"\ncommand = \"/bin/web\"\nbind = \"%s\"\n"
                      "port = 3000\ninstances = 2\nroutes = [\"http:/.*\"]\n\n"
                      "[[fleet.w]]\nname = \"after\"\ncommand = \"/bin/w\"\ndepends_on = [\"web\"]\n";
    char *tx = ms_asprintf(alt, "tcp://127.0.0.1:{port}"), *ty = ms_asprintf(alt, "127.0.0.1:300{instance}");
    assert_non_null(tx);
    assert_non_null(ty);
    ms_manifest *mx = load(tx), *my = load(ty);
    d = ms_manifest_diff_new(m2, mx);
    assert_non_null(d);
    assert_true(ms_manifest_diff_empty(d));
    ms_manifest_diff_free(d);
    d = ms_manifest_diff_new(m2, my);
    assert_non_null(d);
    assert_true(d->changed[index_of(my, "web#1")]);
    assert_string_equal(d->why[index_of(my, "web#1")], "bind");
    ms_manifest_diff_free(d);
    ms_manifest_free(mx);
    ms_manifest_free(my);
    free(tx);
    free(ty);

    /* 3 -> 2: web#2 stops, nothing restarts */
    d = ms_manifest_diff_new(m3, m2);
    assert_non_null(d);
    for (size_t o = 0; o < d->nold; o++)
        assert_int_equal(d->removed[o], strcmp(m3->ships[o].name, "web#2") == 0);
    for (size_t i = 0; i < d->nnew; i++)
        assert_false(d->changed[i]);
    ms_manifest_diff_free(d);

    /* a new command: every instance restarts, saying why; after does not */
    d = ms_manifest_diff_new(m3, m3b);
    assert_non_null(d);
    for (unsigned i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "web#%u", i);
        size_t k = index_of(m3b, name);
        assert_true(d->changed[k]);
        assert_string_equal(d->why[k], "command");
    }
    assert_false(d->changed[index_of(m3b, "after")]);
    ms_manifest_diff_free(d);

    /* 1 -> 3: "web" is a name of the past, web#0 .. web#2 are new */
    d = ms_manifest_diff_new(m1, m3);
    assert_non_null(d);
    assert_true(d->removed[index_of(m1, "web")]);
    assert_int_equal(d->old_index[index_of(m3, "web#0")], SIZE_MAX);
    assert_false(d->changed[index_of(m3, "after")]); /* still waits for web */
    ms_manifest_diff_free(d);

    ms_manifest_free(m1);
    ms_manifest_free(m2);
    ms_manifest_free(m3);
    ms_manifest_free(m3b);
    free(t1);
    free(t2);
    free(t3);
    free(t3b);
}

/* A dependency that restarts does not restart its dependents; a routed
 * ship that restarts changes the data plane. */
static void test_dependency_restarts_alone(void **state)
{
    (void)state;
    const char *fmt = DB "[[fleet.web]]\nname = \"web\"\ncommand = \"/bin/web\"\ndepends_on = [\"db\"]\n"
                      "bind = \"127.0.0.1:%d\"\nroutes = [\"http:/.*\"]\n\n" HTTP_BIND;
    char *ta = ms_asprintf(fmt, 3001), *tb = ms_asprintf(fmt, 3001);
    assert_non_null(ta);
    assert_non_null(tb);
    char *p = strstr(tb, "/bin/db");
    memcpy(p, "/bin/dc", 7);
    ms_manifest *a = load(ta), *b = load(tb);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(d->changed[index_of(b, "db")]);
    assert_string_equal(d->why[index_of(b, "db")], "command");
    assert_false(d->changed[index_of(b, "web")]);
    assert_false(d->dataplane);
    ms_manifest_diff_free(d);
    ms_manifest_free(b);
    free(tb);
    tb = ms_asprintf(fmt, 3009);
    assert_non_null(tb);
    b = load(tb);
    d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(d->changed[index_of(b, "web")]);
    assert_string_equal(d->why[index_of(b, "web")], "bind");
    assert_true(d->dataplane);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

/* Global keys split into what the workers swap and what needs a restart. */
static void test_global_split(void **state)
{
    (void)state;
    ms_manifest *a = load("[mothership]\nworkers = 1\ncompression = false\nmetrics_port = 9100\n\n" WEB);
    ms_manifest *b = load("[mothership]\nworkers = 4\ncompression = true\nmetrics_port = 9200\n"
                          "http = { max_body_size = 10 }\n\n" WEB);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_false(any_changed(d));
    assert_int_equal(d->nneeds, 2);
    assert_string_equal(d->needs_restart[0], "[mothership] metrics_port");
    assert_string_equal(d->needs_restart[1], "[mothership] workers");
    assert_int_equal(d->nswapped, 2);
    assert_string_equal(d->swapped[0], "[mothership] compression");
    assert_string_equal(d->swapped[1], "[mothership.http] max_body_size");
    assert_true(d->dataplane);
    json_t *plan = ms_manifest_diff_plan(d, a, b);
    assert_non_null(plan);
    assert_int_equal(json_array_size(json_object_get(plan, "needs_restart")), 2);
    assert_int_equal(json_array_size(json_object_get(plan, "swap")), 2);
    json_decref(plan);
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
}

/* ACME is set up once: turning it on, and a bind with ACME names coming
 * or going, need a restart; the bind itself still swaps. */
static void test_acme_needs_restart(void **state)
{
    (void)state;
#define ACME_BINDS "[mothership.bind]\nhttp = \"127.0.0.1:18080\"\nhttps = { address = \"127.0.0.1:18443\", tls = \"self-signed\" }\n"
    ms_manifest *a = load(ACME_BINDS "\n" WEB);
    ms_manifest *b = load(ACME_BINDS "admin = { address = \"127.0.0.1:18444\", tls = { acme = [\"admin.example.com\"] } }\n"
                          "[mothership.acme]\nemail = \"ops@example.com\"\n\n" WEB);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_false(any_changed(d));
    assert_int_equal(d->nneeds, 2);
    assert_string_equal(d->needs_restart[0], "[mothership.acme]");
    assert_string_equal(d->needs_restart[1], "bind \"admin\" tls.acme");
    assert_int_equal(d->nswapped, 1);
    assert_string_equal(d->swapped[0], "bind \"admin\" added");
    ms_manifest_diff_free(d);
    /* and back: the bind's names go with it */
    d = ms_manifest_diff_new(b, a);
    assert_non_null(d);
    assert_int_equal(d->nneeds, 2);
    assert_string_equal(d->needs_restart[1], "bind \"admin\" tls.acme");
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
#undef ACME_BINDS
}

/* Many differences: why stays bounded and says there is more. */
static void test_why_bounded(void **state)
{
    (void)state;
    char env_a[4096] = "", env_b[4096] = "";
    size_t la = 0, lb = 0;
    for (int i = 0; i < 100; i++) {
        la += (size_t)snprintf(env_a + la, sizeof env_a - la, "%sVARIABLE_NUMBER_%d = \"a\"", i ? ", " : "", i);
        lb += (size_t)snprintf(env_b + lb, sizeof env_b - lb, "%sVARIABLE_NUMBER_%d = \"b\"", i ? ", " : "", i);
    }
    char *ta = ms_asprintf(WEB "env = { %s }\n", env_a), *tb = ms_asprintf(WEB "env = { %s }\n", env_b);
    assert_non_null(ta);
    assert_non_null(tb);
    ms_manifest *a = load(ta), *b = load(tb);
    ms_manifest_diff *d = ms_manifest_diff_new(a, b);
    assert_non_null(d);
    assert_true(d->changed[0]);
    assert_true(strlen(d->why[0]) < 256);
    assert_non_null(strstr(d->why[0], "env.VARIABLE_NUMBER_0, "));
    assert_non_null(strstr(d->why[0], ", ..."));
    ms_manifest_diff_free(d);
    ms_manifest_free(a);
    ms_manifest_free(b);
    free(ta);
    free(tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_unchanged),
        cmocka_unit_test(test_reorder),
        cmocka_unit_test(test_reorder_routes),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_base_template),
        cmocka_unit_test(test_base_bay_and_module),
        cmocka_unit_test(test_payload_order),
        cmocka_unit_test(test_routes_only),
        cmocka_unit_test(test_dependency_restarts_alone),
        cmocka_unit_test(test_instances),
        cmocka_unit_test(test_global_split),
        cmocka_unit_test(test_acme_needs_restart),
        cmocka_unit_test(test_why_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
