/* ctl_client.c: the verbs that drive a running fleet through its control
 * socket (status, restart, stop, start, signal, logs, reload, drain): one
 * HTTP/1.1 request on the Unix socket, the JSON answer printed for people
 * (or as JSON with --json). A fleet that is not running is one line and exit
 * 3 (docs/cli.md). */
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/ctl.h"
#include "cli/ctl_proto.h"
#include "cli/reload.h"
#include "manifest/toml.h"
#include "metrics/prom.h"

#define MAX_ANSWER ((size_t)64 << 20)

bool ms_cli_is_ctl_verb(const char *c)
{
    static const char *const verbs[] = { "status", "restart", "stop", "start", "signal", "logs", "reload", "drain",
                                         NULL };
    for (size_t i = 0; verbs[i]; i++)
        if (strcmp(verbs[i], c) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- the exchange */
typedef struct reply {
    const ms_cli *o;
    bool stream;          /* logs: print NDJSON lines as they come */
    ms_buf body;          /* the whole body, or the partial line of a stream */
    bool done;
    bool too_big;
} reply;

static void print_log_line(const ms_cli *o, const char *line, size_t len)
{
    if (o->json) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
        return;
    }
    json_t *v = json_loadb(line, len, 0, NULL);
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *text = json_string_value(json_object_get(v, "line"));
    if (name && text)
        printf("%s | %s\n", name, text);
    json_decref(v);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    reply *r = p->data;
    if (!r->stream || p->status_code != 200) {
        if (r->body.len + len > MAX_ANSWER || !ms_buf_append(&r->body, at, len)) {
            r->too_big = true;
            return 1;
        }
        return 0;
    }
    ms_buf_append(&r->body, at, len);
    size_t start = 0;
    for (size_t i = 0; i < r->body.len; i++)
        if (r->body.data[i] == '\n') {
            print_log_line(r->o, r->body.data + start, i - start);
            start = i + 1;
        }
    memmove(r->body.data, r->body.data + start, r->body.len - start);
    r->body.len -= start;
    fflush(stdout);
    return 0;
}

static int on_complete(http_parser *p)
{
    ((reply *)p->data)->done = true;
    return 0;
}

static bool write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        data += w;
        len -= (size_t)w;
    }
    return true;
}

/* Connect to path; exit code on failure (3: nothing is running). */
static int connect_to(const char *path, int *out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "mothership: control socket %s: the path is too long for a Unix socket\n", path);
        return MS_EXIT_FAIL;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "mothership: socket: %s\n", strerror(errno));
        return MS_EXIT_FAIL;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        if (e == EACCES || e == EPERM) {
            fprintf(stderr, "mothership: cannot use the control socket %s: %s (it lets in root, the user Mothership "
                            "runs as and control_group)\n", path, strerror(e));
            return MS_EXIT_FAIL;
        }
        fprintf(stderr, "mothership: no fleet is running (control socket %s: %s)\n", path, strerror(e));
        return MS_EXIT_NOT_RUNNING;
    }
    *out = fd;
    return MS_EXIT_OK;
}

/* One request; *status and *body (JSON, may be NULL) of the answer. */
static int exchange(const ms_cli *o, const char *path, const char *method, const char *target, json_t *payload,
                    bool stream, int *status, json_t **body)
{
    int fd, rc = connect_to(path, &fd);
    if (rc != MS_EXIT_OK) {
        json_decref(payload);
        return rc;
    }
    char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    ms_buf req;
    ms_buf_init(&req, 0);
    ms_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: mothership\r\nConnection: close\r\n", method, target);
    if (text)
        ms_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(text), text);
    else
        ms_buf_puts(&req, "Content-Length: 0\r\n\r\n");
    free(text);
    bool sent = !ms_buf_failed(&req) && write_all(fd, req.data, req.len);
    ms_buf_free(&req);

    reply r = { .o = o, .stream = stream };
    ms_buf_init(&r.body, MAX_ANSWER);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &r;
    static const http_parser_settings settings = { .on_body = on_body, .on_message_complete = on_complete };
    char buf[16384];
    bool failed = false;
    /* even when the request could not be sent whole, the server may have answered (403) */
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            failed = !r.done;
            break;
        }
        size_t used = http_parser_execute(&p, &settings, buf, (size_t)n);
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n) {
            failed = !r.done;
            break;
        }
        if (n == 0 || r.done)
            break;
    }
    close(fd);
    if (failed || !r.done || r.too_big) {
        ms_buf_free(&r.body);
        fprintf(stderr, "mothership: control socket %s: %s\n", path,
                !sent && !r.done ? "the request could not be sent" : r.too_big ? "answer too large"
                                                                               : "no complete answer");
        return MS_EXIT_FAIL;
    }
    *status = p.status_code;
    *body = NULL;
    if (!(stream && p.status_code == 200) && r.body.len > 0)
        *body = json_loadb(r.body.data, r.body.len, 0, NULL);
    ms_buf_free(&r.body);
    return MS_EXIT_OK;
}

/* ---------------------------------------------------------------- printing */
static void print_error(int status, const json_t *body)
{
    const char *e = json_string_value(json_object_get(body, "error"));
    fprintf(stderr, "mothership: %s\n", e ? e : ms_ctl_reason(status));
    const json_t *known = json_object_get(body, "known");
    if (json_is_array(known)) {
        fputs("mothership: known entries:", stderr);
        size_t i;
        const json_t *v;
        json_array_foreach(known, i, v) {
            fprintf(stderr, "%s %s", i ? "," : "", json_string_value(v));
        }
        const json_t *tags = json_object_get(body, "tags");
        json_array_foreach(tags, i, v) {
            fprintf(stderr, ", @%s", json_string_value(v));
        }
        fputc('\n', stderr);
    }
    const json_t *failed = json_object_get(body, "failed");
    size_t i;
    const json_t *v;
    json_array_foreach(failed, i, v) {
        if (i == 0 && json_array_size(failed) == 1)
            break; /* already said */
        fprintf(stderr, "mothership: %s: %s\n", json_string_value(json_object_get(v, "name")),
                json_string_value(json_object_get(v, "error")));
    }
}

static void duration(double s, char *out, size_t cap)
{
    unsigned long t = s > 0 ? (unsigned long)s : 0;
    if (t >= 86400)
        snprintf(out, cap, "%lud%luh", t / 86400, t % 86400 / 3600);
    else if (t >= 3600)
        snprintf(out, cap, "%luh%lum", t / 3600, t % 3600 / 60);
    else if (t >= 60)
        snprintf(out, cap, "%lum%lus", t / 60, t % 60);
    else
        snprintf(out, cap, "%lus", t);
}

static void print_status(const json_t *body)
{
    const json_t *fleet = json_object_get(body, "fleet");
    char up[32];
    duration(json_number_value(json_object_get(fleet, "uptime_s")), up, sizeof up);
    printf("fleet %s, pid %lld, up %s, %s\n", json_string_value(json_object_get(fleet, "phase")),
           (long long)json_integer_value(json_object_get(fleet, "pid")), up,
           json_string_value(json_object_get(fleet, "manifest")));
    printf("%-20s %-8s %-16s %8s %8s %8s %-9s %6s %9s\n", "NAME", "KIND", "STATE", "PID", "UPTIME", "RESTARTS",
           "HEALTH", "CPU%", "RSS");
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(body, "entries"), i, e) {
        char pid[24] = "-", cpu[24] = "-", rss[32] = "-";
        long long pv = json_integer_value(json_object_get(e, "pid"));
        if (pv > 0) {
            snprintf(pid, sizeof pid, "%lld", pv);
            duration(json_number_value(json_object_get(e, "uptime_s")), up, sizeof up);
        } else {
            snprintf(up, sizeof up, "-");
        }
        const json_t *c = json_object_get(e, "cpu_percent");
        if (json_is_number(c))
            snprintf(cpu, sizeof cpu, "%.1f", json_number_value(c));
        const json_t *m = json_object_get(e, "rss_bytes");
        if (json_is_integer(m))
            snprintf(rss, sizeof rss, "%.1fM", (double)json_integer_value(m) / (1024.0 * 1024.0));
        /* a rolling restart under way: "ready (draining)", "ready (rolling)" */
        char state[96];
        const char *roll = json_is_true(json_object_get(e, "draining"))  ? " (draining)"
                           : json_is_true(json_object_get(e, "rolling")) ? " (rolling)"
                                                                         : "";
        const char *st = json_string_value(json_object_get(e, "state"));
        snprintf(state, sizeof state, "%s%s", st ? st : "-", roll);
        const char *bind = json_string_value(json_object_get(e, "bind")); /* upstreams: where it is reached */
        const char *next = json_string_value(json_object_get(e, "next_run")); /* scheduled jobs */
        printf("%-20s %-8s %-16s %8s %8s %8lld %-9s %6s %9s%s%s%s%s\n", json_string_value(json_object_get(e, "name")),
               json_string_value(json_object_get(e, "kind")), state, pid,
               up, (long long)json_integer_value(json_object_get(e, "restarts")),
               json_string_value(json_object_get(e, "health")), cpu, rss, bind ? "  at " : "", bind ? bind : "",
               next ? "  next run " : "", next ? next : "");
    }
}

/* ---------------------------------------------------------------- the verbs */
/* A [mothership] string as written, relative to the manifest's directory. */
static char *written_path(const toml_node *g, const char *key, const char *manifest)
{
    const toml_node *v = g ? toml_get(g, key) : NULL;
    if (!v || v->type != TOML_STRING || v->u.str.len == 0 || strlen(v->u.str.ptr) != v->u.str.len)
        return NULL;
    const char *slash = strrchr(manifest, '/');
    if (v->u.str.ptr[0] == '/' || !slash)
        return strdup(v->u.str.ptr);
    size_t n = (size_t)(slash - manifest) + 1 + v->u.str.len + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s%s", (int)(slash - manifest + 1), manifest, v->u.str.ptr);
    return p;
}

/* The socket of the fleet running a manifest that no longer passes its
 * check: its control_socket or socket_dir as written (when the file is
 * still TOML), else the default. `reload` sends such a file to the fleet
 * anyway: the fleet reads it, refuses it, logs that and answers with the
 * problems, which the CLI prints. */
static char *socket_of_unchecked(const char *manifest)
{
    ms_manifest guess = { 0 };
    toml_node *root = NULL;
    FILE *f = fopen(manifest, "rb");
    enum { MAX_TEXT = 4 << 20 }; /* a manifest larger than this is not read for its socket */
    char *text = f ? malloc(MAX_TEXT) : NULL;
    if (text) {
        size_t len = fread(text, 1, MAX_TEXT, f);
        toml_error err;
        root = len < MAX_TEXT && !ferror(f) ? toml_parse(text, len, &err) : NULL;
    }
    free(text);
    if (f)
        fclose(f);
    const toml_node *g = root ? toml_get(root, "mothership") : NULL;
    if (g && g->type == TOML_TABLE) {
        guess.global.control_socket = written_path(g, "control_socket", manifest);
        guess.global.socket_dir = written_path(g, "socket_dir", manifest);
    }
    char *p = ms_ctl_socket_path(&guess);
    free(guess.global.control_socket);
    free(guess.global.socket_dir);
    toml_free(root);
    return p;
}

static char *socket_path(const ms_cli *o, int *rc)
{
    *rc = MS_EXIT_OK;
    if (o->socket)
        return strdup(o->socket);
    if (!o->manifest_given && access(o->manifest, F_OK) != 0)
        return ms_ctl_socket_path(NULL); /* no manifest here: the default socket dir */
    if (strcmp(o->command, "reload") == 0) {
        /* the fleet judges the file (and logs its refusal), not the CLI */
        ms_diags d;
        ms_diags_init(&d, o->manifest);
        ms_manifest *m = ms_cli_check(o->manifest, &d);
        ms_diags_free(&d);
        char *p = m ? ms_ctl_socket_path(m) : socket_of_unchecked(o->manifest);
        if (m)
            ms_manifest_free(m);
        return p;
    }
    ms_manifest *m = ms_cli_load(o);
    if (!m) {
        *rc = MS_EXIT_FAIL;
        return NULL;
    }
    char *p = ms_ctl_socket_path(m);
    ms_manifest_free(m);
    return p;
}

static json_t *names_payload(const ms_cli *o)
{
    json_t *names = json_array();
    for (size_t i = 0; i < o->nargs; i++)
        json_array_append_new(names, json_string(o->args[i]));
    return json_pack("{s:o}", "names", names);
}

static int usage_error(const char *text)
{
    fprintf(stderr, "mothership: %s (see mothership --help)\n", text);
    return MS_EXIT_USAGE;
}

int ms_cmd_ctl(const ms_cli *o)
{
    const char *v = o->command;
    const char *method = "POST";
    char target[MS_CTL_MAX_URL];
    json_t *payload = NULL;
    bool stream = false;
    if (strcmp(v, "status") == 0 || strcmp(v, "reload") == 0 || strcmp(v, "drain") == 0) {
        if (o->nargs > 0)
            return usage_error("this command takes no names");
    }
    if (strcmp(v, "status") == 0) {
        method = "GET";
        snprintf(target, sizeof target, "/v1/status");
    } else if (strcmp(v, "restart") == 0 || strcmp(v, "stop") == 0 || strcmp(v, "start") == 0) {
        if (o->nargs == 0)
            return usage_error("name the entries (or @tags) to act on");
        snprintf(target, sizeof target, "/v1/entries/%s", v);
        payload = names_payload(o);
    } else if (strcmp(v, "signal") == 0) {
        if (o->nargs != 2)
            return usage_error("signal takes a name and a signal, e.g. mothership signal web HUP");
        int signo = ms_ctl_signal_number(o->args[1]);
        if (signo == 0) {
            fprintf(stderr, "mothership: \"%s\" is not a signal (HUP, USR1, TERM, ... or a number)\n", o->args[1]);
            return MS_EXIT_USAGE;
        }
        snprintf(target, sizeof target, "/v1/entries/signal");
        payload = json_pack("{s:s, s:i}", "name", o->args[0], "signal", signo);
    } else if (strcmp(v, "logs") == 0) {
        if (o->nargs > 1)
            return usage_error("logs takes at most one name");
        method = "GET";
        stream = true;
        int n = snprintf(target, sizeof target, "/v1/logs?follow=%d", o->follow ? 1 : 0);
        if (o->lines >= 0)
            n += snprintf(target + n, sizeof target - (size_t)n, "&n=%ld", o->lines);
        if (o->nargs == 1) {
            n += snprintf(target + n, sizeof target - (size_t)n, "&name=");
            for (const char *s = o->args[0]; *s && (size_t)n + 4 < sizeof target; s++)
                n += snprintf(target + n, sizeof target - (size_t)n,
                              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                                      *s == '-' || *s == '_' || *s == '.'
                                  ? "%c"
                                  : "%%%02X",
                              (unsigned char)*s);
        }
    } else if (strcmp(v, "reload") == 0) {
        snprintf(target, sizeof target, "/v1/reload");
        payload = json_pack("{s:b}", "check", o->check);
    } else {
        snprintf(target, sizeof target, "/v1/drain");
    }

    int rc;
    char *path = socket_path(o, &rc);
    if (!path) {
        json_decref(payload);
        return rc != MS_EXIT_OK ? rc : MS_EXIT_FAIL;
    }
    int status = 0;
    json_t *body = NULL;
    rc = exchange(o, path, method, target, payload, stream, &status, &body);
    free(path);
    if (rc != MS_EXIT_OK)
        return rc;
    if (strcmp(v, "reload") == 0 && (status == 200 || status == 422) && body) {
        ms_reload_print(body, status == 200 ? stdout : stderr);
        json_decref(body);
        return status == 200 ? MS_EXIT_OK : MS_EXIT_FAIL;
    }
    if (status != 200) {
        print_error(status, body);
        json_decref(body);
        return MS_EXIT_FAIL;
    }
    if (o->json && body) {
        char *s = json_dumps(body, JSON_INDENT(2));
        if (s)
            puts(s);
        free(s);
    } else if (strcmp(v, "status") == 0) {
        print_status(body);
    } else if (strcmp(v, "signal") == 0) {
        printf("sent %s to %s (pid %lld)\n", o->args[1], json_string_value(json_object_get(body, "name")),
               (long long)json_integer_value(json_object_get(body, "pid")));
    } else if (strcmp(v, "drain") == 0) {
        puts("drained: the listeners are closed and the requests in flight have finished");
    } else if (body) {
        const json_t *entries = json_object_get(body, "entries");
        size_t i;
        const json_t *e;
        printf("%s:", v);
        json_array_foreach(entries, i, e) {
            printf("%s %s", i ? "," : "", json_string_value(e));
        }
        putchar('\n');
    }
    json_decref(body);
    return MS_EXIT_OK;
}
