/* manifest.h: the typed model of ship-manifest.toml. A manifest is loaded
 * from a TOML tree (manifest_load.c), base templates are merged into its
 * entries, and it is validated (manifest_check.c); every problem is reported
 * with file:line:col and the entry's name. After a successful load the model
 * is immutable and owned by one ms_manifest, freed with ms_manifest_free().
 *
 * Vocabulary (DESIGN.md): a ship is a supervised process ([[fleet.<group>]]),
 * a bay docks over a Unix socket ([[bays.<type>]]), a bind is a named
 * listener, a route maps (bind, pattern) to a ship or bay, a module is a WASM
 * payload, an uplink an external dependency checked before launch. */
#ifndef MS_MANIFEST_H
#define MS_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/diag.h"

/* ---------------------------------------------------------------- addresses */
typedef enum ms_addr_kind { MS_ADDR_TCP, MS_ADDR_UNIX } ms_addr_kind;

typedef struct ms_addr {
    ms_addr_kind kind;
    char *host;          /* TCP: "127.0.0.1", "0.0.0.0", "::1", "localhost" */
    uint16_t port;       /* TCP */
    char *path;          /* UNIX: absolute or manifest-relative, as resolved */
    char *text;          /* canonical form: "tcp://127.0.0.1:3000", "unix:///tmp/a.sock" */
} ms_addr;

/* Parse "tcp://h:p", "h:p", "[v6]:p", "p" (127.0.0.1:p) or "unix:///path".
 * On failure returns false and writes a reason into why. */
bool ms_addr_parse(const char *text, ms_addr *out, char *why, size_t why_len);
void ms_addr_free(ms_addr *a);
/* True if two listeners at these addresses cannot both be bound (same unix
 * path; same TCP port on the same host, or on a wildcard and any host). */
bool ms_addr_collide(const ms_addr *a, const ms_addr *b);

/* ---------------------------------------------------------------- small types */
typedef struct ms_kv {
    char *key;
    char *value;
} ms_kv;

typedef struct ms_strmap {    /* ordered string map (env, config) */
    ms_kv *items;
    size_t len;
} ms_strmap;

typedef struct ms_strlist {
    char **items;
    size_t len;
} ms_strlist;

#define MS_UNSET UINT64_MAX   /* a per-entry duration not given (resolved at load) */

typedef struct ms_pos {
    int line, col;
} ms_pos;

const char *ms_strmap_get(const ms_strmap *m, const char *key);

/* ---------------------------------------------------------------- global */
/* A certificate and its key (PEM files, the chain after the leaf) and the
 * names it is chosen for by SNI. */
typedef struct ms_tls_cert {
    char *cert, *key;    /* resolved paths */
    ms_strlist hosts;    /* lower-case; "*.example.com" allowed; empty: the certificate's own names */
    ms_pos pos, cert_pos, key_pos, hosts_pos;
} ms_tls_cert;

/* Where a bind's access log goes: off, or one line per request as text or
 * JSON (docs/cli.md "Access log"). UNSET on a bind: the global setting. */
typedef enum ms_access_log {
    MS_ACCESS_LOG_UNSET, MS_ACCESS_LOG_OFF, MS_ACCESS_LOG_TEXT, MS_ACCESS_LOG_JSON
} ms_access_log;

/* [mothership.acme]: certificates obtained and renewed by Mothership
 * (acme/acme.h, docs/tls.md "ACME"). */
typedef enum ms_acme_challenge_kind { MS_ACME_HTTP_01, MS_ACME_TLS_ALPN_01 } ms_acme_challenge_kind;

#define MS_ACME_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"

typedef struct ms_acme_config {
    bool enabled;                /* [mothership.acme] present */
    char *directory;             /* http(s) URL; default MS_ACME_DEFAULT_DIRECTORY */
    char *email;                 /* NULL: no contact */
    ms_strlist domains;          /* lower-case DNS names, no wildcards or addresses: [mothership.acme]
                                    domains, then every bind's tls.acme names not already there */
    char *state_dir;             /* resolved; NULL: <state dir>/acme (ms_tls_state_dir) */
    char *ca_root;               /* resolved PEM file to trust for the directory; NULL: the system store */
    ms_acme_challenge_kind challenge; /* default http-01 */
    uint64_t backoff_ms;         /* first retry after a failed order; default 1m, at least 1s */
    uint64_t max_backoff_ms;     /* doubling stops here; default 6h, at least backoff */
    ms_pos pos, directory_pos, email_pos, domains_pos, state_dir_pos, ca_root_pos, challenge_pos;
} ms_acme_config;

typedef struct ms_bind {
    char *name;
    ms_access_log access_log; /* resolved at load: the bind's own, else the global one */
    ms_addr addr;
    bool tls;            /* terminates TLS */
    bool self_signed;    /* tls = "self-signed": a generated certificate (tls is true too) */
    bool h2;             /* TLS binds: ALPN may choose h2; default true */
    bool h2c;            /* plain binds: HTTP/2 with prior knowledge; default false */
    bool redirect_to_https; /* plain binds: 308 to the https bind; default false */
    ms_tls_cert *cert;   /* tls = { cert, key, hosts }: this bind's own certificate; NULL: the global ones */
    ms_strlist acme;     /* tls = { acme = [names] }: this bind serves ACME certificates for these names
                            only; empty: a TLS bind without its own cert serves every ACME domain too */
    ms_pos pos;
    ms_pos tls_pos;      /* the tls value, or the bind when tls comes from the name "https" */
} ms_bind;

typedef struct ms_static_dir {
    char *path;          /* resolved against the manifest's directory */
    char *prefix;        /* always starts with '/' */
    char *bind;          /* NULL: every bind */
    ms_pos pos, bind_pos;
} ms_static_dir;

/* [mothership.http]: limits and timeouts of the data plane. */
typedef struct ms_http_limits {
    uint64_t max_header_size;        /* request line + headers; default 16 KiB -> 431 */
    uint64_t max_uri_length;         /* default 8 KiB -> 414 */
    uint64_t max_body_size;          /* default 100 MiB -> 413; 0: unlimited */
    uint64_t header_timeout_ms;      /* whole request head; default 10s -> 408 */
    uint64_t idle_timeout_ms;        /* keep-alive idle; default 60s */
    uint64_t upstream_connect_timeout_ms; /* default 5s -> 504 */
    uint64_t upstream_timeout_ms;    /* from the request's last byte written to the response head
                                        (and the longest stall of a write to the ship); default 60s -> 504 */
    uint64_t eject_cooldown_ms;      /* a ship process that refused, reset or timed out is skipped by the
                                        balancer this long (passive health); default 5s, 0: never */
    bool request_buffering;          /* read the whole body before claiming a ship connection; default true */
    uint64_t request_buffer_size;    /* a buffered body's bytes in memory, beyond: a temp file; default 64 KiB */
    uint64_t body_timeout_ms;        /* the longest pause between two reads of a request body; default 60s -> 408 */
    uint64_t max_connections;        /* client connections, all workers; default 10000 */
    uint64_t upstream_keepalive;     /* idle upstream connections kept per ship per worker; default 128 */
    uint64_t max_response_header_size; /* a ship's status line + headers, and the read buffer of each
                                          upstream connection; default 16 KiB, 1..64 KiB -> 502 */
    /* WebSocket clients of bays */
    uint64_t ws_max_message_size;    /* whole message, either way; default 1 MiB -> close 1009 */
    uint64_t ws_send_queue;          /* bytes waiting for a client; default 4 MiB -> close 1008 */
    uint64_t ws_ping_interval_ms;    /* ping a quiet client after this; default 30s */
    uint64_t ws_idle_timeout_ms;     /* close a client silent this long; default 75s */
    /* HTTP/2 clients (an HTTP/2 connection with no open stream for idle_timeout gets a GOAWAY) */
    uint64_t h2_max_concurrent_streams; /* default 128 */
    uint64_t h2_max_header_list_size;   /* a request's decoded header list; default 32 KiB -> 431 */
    uint64_t h2_header_table_size;      /* the HPACK table the client may use; default 4 KiB */
    uint64_t h2_rapid_reset_max;        /* client RST_STREAMs per window, then GOAWAY; default 200 */
    uint64_t h2_rapid_reset_window_ms;  /* default 10s */
    uint64_t h2_max_control_frames;     /* SETTINGS/PING acks the client leaves unread; default 1000 */
    uint64_t h2_stall_timeout_ms;       /* a stream's response waiting on a shut window; default 60s */
} ms_http_limits;

typedef struct ms_global {
    uint16_t metrics_port;       /* 0: no metrics listener */
    ms_pos metrics_pos;
    char *metrics_bind;          /* default "127.0.0.1" */
    ms_pos metrics_bind_pos;
    ms_strlist declared_binds;   /* every name in [mothership.bind], valid or not */
    bool compression;            /* default false */
    uint64_t shutdown_timeout_ms; /* default 10s */
    uint64_t ready_timeout_ms;   /* default 60s */
    char *socket_dir;            /* NULL: $MS_SOCKET_DIR, $XDG_RUNTIME_DIR/mothership, /tmp/mothership */
    unsigned workers;            /* default 1; 0 means "auto" (CPUs) */
    ms_http_limits http;
    ms_strmap env;
    ms_bind *binds;
    size_t nbinds;
    bool has_tls;                /* [mothership.tls] present */
    char *tls_cert, *tls_key;    /* resolved paths; NULL when not given */
    ms_pos tls_cert_pos, tls_key_pos;
    ms_pos tls_pos;
    ms_tls_cert *tls_certs;      /* every global certificate, the default first: [mothership.tls]'s own
                                    cert/key when given, then [[mothership.tls.certs]] in order */
    size_t ntls_certs;
    bool tls_session_tickets;    /* default true */
    uint64_t tls_ticket_rotation_ms; /* a ticket key encrypts this long, then decrypts as long; default 12h */
    char *state_dir;             /* NULL: $MS_STATE_DIR, $XDG_STATE_HOME/mothership,
                                    $HOME/.local/state/mothership (self-signed material) */
    ms_pos state_dir_pos;
    ms_static_dir *static_dirs;
    size_t nstatic;
    char *control_socket;        /* the control socket's path (resolved); NULL: <socket dir>/mothership.ctl */
    char *control_group;         /* a group whose members may use the control socket; NULL: none */
    ms_access_log access_log;    /* [mothership] access_log; default off */
    char *access_log_path;       /* NULL: the access log goes with Mothership's own log (stdout) */
    ms_acme_config acme;         /* [mothership.acme] */
} ms_global;

/* ---------------------------------------------------------------- fleet */
typedef struct ms_route {
    char *bind;          /* bind name */
    char *name;          /* `name`: the metrics' route label; NULL: the pattern is the label */
    char *pattern;       /* PCRE2 pattern, matched against the whole path */
    char *strip_prefix;  /* NULL when none */
    bool raw_path;       /* ambiguous path forms (%2F, %5C, %00, '\\', ';') are let through */
    bool request_buffering_set; /* false: [mothership.http] request_buffering decides */
    bool request_buffering;
    bool ws_compression; /* permessage-deflate for WebSocket clients of a bay, when they offer it */
    ms_pos pos;
    size_t target;       /* index into ms_manifest.ships: the first instance */
    size_t ntargets;     /* instances: ships[target .. target+ntargets); 1 when not instanced */
} ms_route;

typedef enum ms_health_protocol {
    MS_HEALTH_HTTP,              /* GET path: 2xx-3xx passes */
    MS_HEALTH_TCP,               /* a connection is accepted */
    MS_HEALTH_POSTGRES,          /* startup message: an authentication request passes, 57P03 does not */
    MS_HEALTH_MYSQL,             /* the server's greeting passes, an error packet does not */
    MS_HEALTH_REDIS,             /* PING: +PONG passes, -LOADING does not */
} ms_health_protocol;

typedef struct ms_health {
    bool enabled;                /* a healthcheck is set */
    ms_health_protocol protocol; /* default http */
    char *path;                  /* http: the path to GET; NULL for the other protocols */
    bool has_address;            /* checked at address; else at the ship's bind */
    ms_addr address;             /* "address", or "port" on the bind's host (127.0.0.1 without a bind) */
    uint16_t port;               /* "port" as written; 0: none */
    char *address_template;      /* "address" as written when it has {instance}, {port} or {gen} (the
                                    address above is it for parity 0); else NULL */
    bool has_address_alt;        /* the template has {port} or {gen}: */
    ms_addr address_alt;         /* where a replacement of the instance (parity 1, see bind_alt) is checked */
    uint64_t interval_ms;        /* default 5s */
    uint64_t timeout_ms;         /* default 2s */
    uint64_t grace_ms;           /* startup grace before failures count; default 0 */
    unsigned failures;           /* consecutive failures to turn unhealthy / open breaker; default 3 */
    unsigned successes;          /* consecutive successes to turn healthy / close; default 1 */
    uint64_t cooldown_ms;        /* breaker open -> half-open; default 10s */
    bool restart;                /* restart the ship when it turns unhealthy; default false */
} ms_health;

typedef struct ms_restart {
    uint64_t backoff_ms;         /* first restart delay; default 500ms, doubled per crash */
    uint64_t max_backoff_ms;     /* cap; default 30s */
    uint64_t reset_after_ms;     /* uptime after which the backoff resets; default 10s */
    unsigned loop_limit;         /* crash-loop breaker: this many crashes ... default 5 */
    uint64_t loop_window_ms;     /* ... within this window ... default 60s */
    uint64_t loop_pause_ms;      /* ... pause restarts this long; default 30s */
} ms_restart;

/* MS_UPSTREAM: an app Mothership did not start ([[mothership.upstreams]]):
 * routed to like a ship or an HTTP bay, never spawned, stopped or
 * restarted; its fleet process is ready from the launch on. */
typedef enum ms_ship_kind { MS_SHIP, MS_BAY, MS_UPSTREAM } ms_ship_kind;

/* How an upstream is spoken to. */
typedef enum ms_upstream_protocol {
    MS_UPSTREAM_DOCKING,      /* docking v3 links, as an HTTP bay */
    MS_UPSTREAM_HTTP,         /* plain HTTP/1.1, as a ship */
} ms_upstream_protocol;

/* How a route's requests are spread over a ship's ready instances. */
typedef enum ms_balance { MS_BALANCE_ROUND_ROBIN, MS_BALANCE_LEAST_CONN } ms_balance;

typedef struct ms_ship {
    ms_ship_kind kind;
    char *name;
    char *group;         /* ships: fleet.<group>; bays: the bay type ("websocket") */
    char *command;
    ms_strlist args;
    char *cwd;           /* resolved; NULL: the manifest's directory */
    ms_pos cwd_pos, health_pos;
    bool has_bind;       /* ships only */
    ms_addr bind;
    ms_pos bind_pos;
    ms_health health;
    ms_route *routes;
    size_t nroutes;
    ms_strlist depends_on;
    ms_pos *depends_pos; /* position of each depends_on item */
    ms_strmap env;       /* base template merged in */
    ms_strmap config;    /* bays: sent in Moored */
    ms_strlist subprotocols; /* bays: WebSocket subprotocols it speaks, in preference order */
    bool critical;       /* default true */
    bool oneshot;        /* ships only; default false */
    ms_strlist tags;     /* base tags first, duplicates dropped */
    uint64_t ready_timeout_ms;    /* resolved: the entry's or the global value */
    uint64_t ready_after_ms;      /* workers: ready after staying up this long; default 1s */
    ms_restart restart;           /* non-critical ships */
    uint64_t shutdown_timeout_ms; /* resolved: the entry's or the global value */
    int stop_signal;     /* sent to stop it, SIGKILL after shutdown_timeout; default SIGTERM */
    ms_pos pos;          /* the entry's [[header]] */
    ms_pos name_pos;     /* its name's value */

    /* Replicas. A ship with `instances = N` is loaded as N consecutive
     * entries named "<base>#0" .. "<base>#N-1" (instance 0 first), each with
     * its own process and address; with N = 1 (the default) the entry keeps
     * its name. Routes to the ship live on instance 0 and name every instance
     * (ms_route.target, ntargets). */
#define MS_MAX_INSTANCES 64
    char *base;          /* the ship's name as written ("web"); NULL when not instanced (then == name) */
    unsigned instance;   /* 0..instances-1 */
    unsigned instances;  /* default 1 */
    uint16_t port;       /* `port`: the base of {port}; 0 when not set */
    /* Where a replacement of this instance listens while the old process
     * still serves (a surge during a roll): the bind templated for the other
     * parity ({port} = port + instance + instances, {gen} = 1). Only when
     * the bind has {port} or {gen}; else a roll stops the old one first. */
    bool has_bind_alt;
    ms_addr bind_alt;
    char *bind_template; /* the bind as written when it has {instance}, {port} or {gen}; else NULL */
    ms_balance balance;  /* default round robin */
    uint64_t drain_timeout_ms;    /* a roll waits this long for an old instance's requests; default 30s */
    uint64_t handover_timeout_ms; /* bays: clients held while the bay is away; default 30s */

    /* HTTP bays ([[bays.http]], group "http": whole requests over docking v3
     * links) and upstreams ([[mothership.upstreams]], kind MS_UPSTREAM). */
    bool http_bay;                /* a bay of type http, or an upstream with protocol "docking" */
    ms_upstream_protocol upstream_protocol; /* MS_UPSTREAM only; default docking */
    unsigned bay_workers;         /* http bays: MS_BAY_WORKERS, processes the bay forks; default 0 (one) */
    unsigned bay_threads;         /* http bays: MS_BAY_THREADS, requests at once per process; default 4 */
    uint64_t request_timeout_ms;  /* http bays and docking upstreams: the longest wait for a free link,
                                     and for the REPLY after the request's last byte; default 60s
                                     (MS_BAY_DRAIN_TIMEOUT, in seconds rounded up) */
    unsigned max_queue;           /* http bays and docking upstreams: requests waiting for a link, all
                                     workers; over it 503 with Retry-After; default 1024 */
    ms_strlist file_roots;        /* http bays and docking upstreams: directories (resolved, absolute)
                                     whose regular files a file REPLY may name; empty: the bay's cwd
                                     (the manifest's directory without one); upstreams: none */

    /* Environment from files: `env_file` (dotenv, read at load, merged
     * under the entry's own env) and `secret_env` (NAME = file, read at each
     * spawn, its value never logged, shown or compared). */
    ms_strlist env_files;         /* resolved paths, in order */
    ms_strmap secret_env;         /* NAME -> resolved path */
    ms_pos env_file_pos, secret_env_pos;

    /* Resource limits, applied in the entry's own cgroup v2 where the
     * hierarchy is delegated; 0: no limit. */
    uint64_t memory_max;          /* bytes (memory.max) */
    unsigned cpu_max_milli;       /* thousandths of a CPU (cpu.max quota per period) */
    uint64_t pids_max;            /* pids.max */
    ms_pos limits_pos;

    /* Oneshot jobs: `schedule`, a cron expression in local time; the job
     * runs at each match and never overlaps itself. NULL: none. */
    char *schedule;
    ms_pos schedule_pos;
} ms_ship;

/* The name a ship was written with ("web" for "web#1"). */
static inline const char *ms_ship_base(const ms_ship *s)
{
    return s->base ? s->base : s->name;
}

/* Expand {instance}, {port} and {gen} in text (an arg or env value) for
 * instance s->instance with parity 0 (the ship's bind) or 1 (bind_alt):
 * {instance} is the instance, {port} is port + instance + parity * instances
 * (kept as written when the ship has no port), {gen} is the parity. Other
 * braces are kept as written. Text of a ship that is not templated (no
 * instances, no port, no placeholder in its bind) is returned unchanged (a
 * copy). Heap string, NULL when out of memory. */
char *ms_ship_expand(const ms_ship *s, const char *text, unsigned parity);

/* ---------------------------------------------------------------- modules */
typedef enum ms_phase { MS_PHASE_REQUEST, MS_PHASE_RESPONSE } ms_phase;

typedef struct ms_module {
    char *name;
    char *wasm;          /* resolved path */
    ms_pos wasm_pos;
    ms_strlist routes;   /* path patterns, all binds; empty: every path */
    ms_pos *route_pos;
    ms_phase phase;      /* default request */
    ms_strmap config;
    ms_strlist tags;
    bool fail_open;      /* on_error = "open"; default "closed" */
    ms_pos pos;
    ms_pos name_pos;
} ms_module;

/* ---------------------------------------------------------------- uplinks */
typedef struct ms_uplink {
    char *name;
    char *url_text;      /* as written */
    char *url;           /* after $VAR expansion */
    char *scheme;        /* lower-case: postgres, mysql, redis, memgraph, neo4j, http, https, tcp */
    char *host;
    uint16_t port;       /* explicit or the scheme's default */
    char *path;          /* http(s): path and query, "/" when none */
    uint64_t timeout_ms; /* default 5s */
    uint64_t wait_ms;    /* 0: no waiting; else retry with backoff up to this */
    ms_pos pos;
    ms_pos name_pos;
    bool unnamed;        /* name derived from the URL */
} ms_uplink;

/* Parse an uplink URL (already expanded). On failure false + reason. */
bool ms_uplink_url_parse(const char *url, ms_uplink *out, char *why, size_t why_len);

/* ---------------------------------------------------------------- manifest */
typedef struct ms_manifest {
    char *path;          /* as given */
    char *dir;           /* its directory, for relative paths */
    ms_global global;
    ms_ship *ships;      /* ships and bays, in manifest order */
    size_t nships;
    ms_module *modules;
    size_t nmodules;
    ms_uplink *uplinks;
    size_t nuplinks;
    unsigned refs;       /* atomic: holders (a reload's generations); ms_manifest_free drops one */
} ms_manifest;

/* Load and validate a manifest file. Returns NULL when it cannot be read or
 * has any problem; every problem is appended to diags (which the caller
 * initialised with the same path). getenv_fn resolves $VAR in uplink URLs
 * (NULL: getenv). */
ms_manifest *ms_manifest_load(const char *path, ms_diags *diags);
/* The path "-" reads the manifest from stdin (once: a reload cannot read it
 * again); its relative paths are taken against the current directory, and
 * messages name it "<stdin>". */
#define MS_MANIFEST_STDIN "-"
#define MS_MANIFEST_STDIN_NAME "<stdin>"
/* How a manifest is loaded. warnings non-NULL: offline (clearance checks
 * nothing outside): an unset $VAR in an uplink URL is a warning added there,
 * not an error, and that uplink is kept with url, scheme, host and path
 * NULL. */
typedef struct ms_load_opts {
    ms_diags *warnings;
} ms_load_opts;
ms_manifest *ms_manifest_load_opts(const char *path, ms_diags *diags, const ms_load_opts *opts);
/* Same, from a buffer (tests, fuzzing). dir is used for relative paths. */
ms_manifest *ms_manifest_load_buffer(const char *data, size_t len, const char *path,
                                     const char *dir, ms_diags *diags);
/* A loaded manifest is shared by whatever still runs on it (the fleet's
 * processes, the data plane's generations) after a reload: each holder takes
 * a reference and ms_manifest_free drops one; the last frees it. Any thread. */
ms_manifest *ms_manifest_ref(ms_manifest *m);
void ms_manifest_free(ms_manifest *m);

/* Lookups. */
ms_ship *ms_manifest_find_ship(const ms_manifest *m, const char *name);
const ms_bind *ms_manifest_find_bind(const ms_manifest *m, const char *name);

/* The keys one table of the manifest accepts (NULL-terminated), by its name:
 * "mothership", "http", "ship", "bay" ([[bays.websocket]]), "http_bay"
 * ([[bays.http]]), "upstream" ([[mothership.upstreams]]), "healthcheck",
 * "restart", "route", "bind", "tls", "tls.certs", "static_dirs", "module",
 * "uplink"; NULL for
 * any other name. What a reload compares is tested against these lists. */
const char *const *ms_manifest_keys(const char *table);

/* "http", "tcp", "postgres", "mysql", "redis". */
const char *ms_health_protocol_name(ms_health_protocol p);

/* The kind a user reads: "ship" (has bind), "worker", "job" (oneshot), "bay". */
const char *ms_ship_kind_word(const ms_ship *s);

/* Whether requests to s go over docking v3 links (an HTTP bay, or an
 * upstream with protocol "docking"). */
static inline bool ms_ship_speaks_v3(const ms_ship *s)
{
    return s->http_bay;
}

#endif
