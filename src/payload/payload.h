/* payload.h - WASM payloads: the host side of the payload ABI
 * (docs/payload-abi.md) on top of the interpreter in src/payload/wasm.
 *
 * No sockets here.  The data plane fills a request view (and, in the
 * response phase, a response view), runs the modules that apply, and applies
 * the result: continue, block (status, headers, body), a rewritten path, and
 * header edits (set/add/remove lists).
 *
 * Life cycle:
 *   set = ms_payload_load_all(manifest, why, len)   once; shared read-only by
 *                                                    every worker thread
 *   w   = ms_payload_worker_new(set)                 per worker thread: one store
 *                                                    and one instance per module,
 *                                                    `init` run once
 *   ms_payload_result_init(&res)                     per worker (or connection)
 *   per request:  ms_payload_result_reset(&res);
 *                 for each request-phase module i that applies (manifest order):
 *                     e = ms_payload_run_request(w, i, &req, &res);
 *                     e != OK: 500, or skip the module when its fail_open;
 *                     res.blocked: send the block response, stop
 *                 apply res (path, query, header edits) and route
 *   per response: ms_payload_result_reset(&res); run response-phase modules
 *                 with ms_payload_run_response(); apply the header edits
 *                 (before compression)
 *
 * Which modules apply: the caller decides, with ms_module_applies() from
 * router/table.h (the module's `routes`, matched against the whole path;
 * no routes = every path) and ms_payload_phase().  This layer only runs the
 * module it is given.
 *
 * State: a worker's instance of a module keeps its linear memory and globals
 * from one request to the next (that is how rate_limiter keeps its token
 * buckets), per worker: workers do not share guest state.  After any failed
 * call (trap, exhaustion, ABI misuse) the instance is discarded and a fresh
 * one is made (data segments and `init` again), so a guest never continues
 * from a half-finished call; its state is lost on that worker.
 *
 * Threads: a set is immutable after loading.  A worker and the results it
 * fills belong to one thread; only ms_payload_worker_stats() may be called
 * from another thread (relaxed atomic reads). */
#ifndef MS_PAYLOAD_H
#define MS_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest/manifest.h"
#include "util/diag.h"

/* ------------------------------------------------------------- limits */

/* Per-call sandbox limits, the same for every module of a set. */
typedef struct ms_payload_limits {
    uint64_t fuel;              /* Wasm instructions per call; default 10,000,000 */
    uint64_t timeout_ms;        /* wall clock per call; default 50 */
    uint32_t max_memory_pages;  /* 64 KiB pages per instance; default 256 (16 MiB) */
    uint32_t max_call_depth;    /* frames; default 512 */
    uint32_t max_stack_slots;   /* 64-bit value-stack slots; default 65536 (512 KiB) */
    uint32_t max_table_elems;   /* default 65536 */
} ms_payload_limits;
/* `init` (and a start function) runs under fuel and timeout x 10. */

void ms_payload_limits_default(ms_payload_limits *l);

/* ------------------------------------------------------------- the set */

typedef struct ms_payload_set ms_payload_set;

/* Read, decode, validate and check every [[modules]] entry of m, and
 * instantiate each once in a scratch store (without running `init`) to catch
 * link and instantiation errors.  NULL on the first problem, with a message
 * in why, e.g.
 *   module "auth": missing export "on_request" (phase = "request")
 *   module "x": imports "env.foo", which Mothership does not provide
 *   module "x": invalid WebAssembly in /path/x.wasm: type mismatch
 * m must outlive the set (the set keeps pointers to m->modules).
 * A manifest without modules gives an empty set (not NULL).
 * limits may be NULL (defaults). */
ms_payload_set *ms_payload_load_all(const ms_manifest *m, char *why, size_t why_len);
ms_payload_set *ms_payload_load_all_limits(const ms_manifest *m, const ms_payload_limits *limits,
                                           char *why, size_t why_len);
/* Same from bytes already in memory (tests, fuzzing): module i is mods[i]
 * with bytes[i]/lens[i] (mods[i].wasm is only used in messages). */
ms_payload_set *ms_payload_load_buffers(const ms_module *mods, size_t n,
                                        const uint8_t *const *bytes, const size_t *lens,
                                        const ms_payload_limits *limits, char *why,
                                        size_t why_len);
void ms_payload_set_free(ms_payload_set *s);
/* Was module i of b loaded from other bytes than the module of the same
 * name in a (none, or a NULL: false)? A reload loads a module again when
 * its file changed under the same path. */
bool ms_payload_set_bytes_changed(const ms_payload_set *a, const ms_payload_set *b, size_t i);

/* For `clearance`: every problem of every module, added to d at the
 * module's `wasm = ` position (file unreadable, invalid WebAssembly, missing
 * or mistyped exports, unknown or mistyped imports, instantiation errors).
 * Returns the number of problems added. */
int ms_payload_check(const ms_manifest *m, ms_diags *d);

size_t ms_payload_count(const ms_payload_set *s);                     /* = nmodules */
const ms_module *ms_payload_module(const ms_payload_set *s, size_t i);
ms_phase ms_payload_phase(const ms_payload_set *s, size_t i);
const ms_payload_limits *ms_payload_set_limits(const ms_payload_set *s);

/* ------------------------------------------------------------- views */

typedef struct ms_payload_slice {
    const char *ptr;
    size_t len;
} ms_payload_slice;

typedef struct ms_payload_header {
    ms_payload_slice name, value;
} ms_payload_header;

/* What the proxy knows about the request.  Borrowed for the call only. */
typedef struct ms_payload_req {
    ms_payload_slice method;       /* "GET" */
    ms_payload_slice path;         /* "/a/b" (no query) */
    ms_payload_slice query;        /* "x=1" (without '?'); len 0 when none */
    ms_payload_slice client;       /* client address: "203.0.113.7", "::1", "unix" */
    const ms_payload_header *headers;
    size_t nheaders;
} ms_payload_req;

/* The upstream response head, for the response phase. */
typedef struct ms_payload_resp {
    int status;
    const ms_payload_header *headers;
    size_t nheaders;
} ms_payload_resp;

/* ------------------------------------------------------------- results */

typedef enum ms_payload_edit_op {
    MS_PAYLOAD_SET = 0,    /* remove every header of this name, then add name: value */
    MS_PAYLOAD_ADD = 1,    /* add name: value (after the existing ones) */
    MS_PAYLOAD_REMOVE = 2, /* remove every header of this name (value empty) */
} ms_payload_edit_op;

typedef struct ms_payload_edit {
    ms_payload_edit_op op;
    ms_payload_slice name, value;
    /* private */
    uint32_t name_off, value_off;
} ms_payload_edit;

/* What the modules of one phase of one request decided.  Owned buffers,
 * kept across requests: reset per phase, no allocation in the common path.
 * Slices point into the result and stay valid until the next run or reset.
 * Edits accumulate over the modules run with the same result, and later
 * modules see them (get_header, get(path)): in the request phase they are
 * request-header edits, in the response phase response-header edits.  A
 * failed call leaves the result as it was before the call. */
typedef struct ms_payload_result {
    bool blocked;                   /* send the block response instead */
    int block_status;               /* 200..599 */
    ms_payload_slice block_body;    /* up to 64 KiB; the proxy adds Content-Length */
    ms_payload_header *block_headers;
    size_t nblock_headers;

    bool path_set;                  /* request phase: the path was rewritten */
    ms_payload_slice path;          /* starts with '/', no query */
    bool query_set;                 /* the rewrite gave a query ("/p?q"; may be empty) */
    ms_payload_slice query;         /* without '?' */

    ms_payload_edit *edits;         /* in call order */
    size_t nedits;

    size_t module;                  /* last module run */
    char error[192];                /* after an error: what happened, for the log */

    /* private */
    char *arena;
    size_t arena_len, arena_cap;
    size_t edits_cap, bh_cap;
    uint32_t body_off, path_off, query_off;
    uint32_t *bh_offs;              /* name, value offsets per block header */
} ms_payload_result;

void ms_payload_result_init(ms_payload_result *r);
void ms_payload_result_reset(ms_payload_result *r);
void ms_payload_result_free(ms_payload_result *r);
/* dst (initialised, or a copy before) becomes a copy of src's request-phase
 * result (path, query, header edits) that src's next run leaves alone.
 * -1: out of memory (dst is then empty). */
int ms_payload_result_copy(ms_payload_result *dst, const ms_payload_result *src);

/* Applying header edits without re-parsing (same rule the guests see):
 *   1. keep each original header whose name ms_payload_keeps_header() says;
 *   2. then append, in order, every edit i with ms_payload_edit_live(r, i).
 * keeps_header: no set/remove edit names it (case-insensitive).
 * edit_live: edit i is a set/add not undone by a later set/remove of the
 * same name. */
bool ms_payload_keeps_header(const ms_payload_result *r, const char *name, size_t len);
bool ms_payload_edit_live(const ms_payload_result *r, size_t i);

/* ------------------------------------------------------------- workers */

typedef struct ms_payload_worker ms_payload_worker;

/* Log callback for the guest's `log` calls (level 0 debug, 1 info, 2 warn,
 * 3 error; msg is not NUL-terminated, at most 1024 bytes).  The caller
 * rate-limits.  Default: none (dropped). */
typedef void (*ms_payload_log_fn)(void *user, const ms_module *mod, int level, const char *msg,
                                  size_t len);
/* Clock for `now_ms` (default: CLOCK_REALTIME in ms).  Tests inject time. */
typedef int64_t (*ms_payload_clock_fn)(void *user);

/* Instantiate every module (and run its `init`).  A module whose instance
 * cannot be made now is retried at its next call, which then fails with
 * MS_PAYLOAD_ERR_INSTANCE; the worker itself is NULL only on OOM.  The set
 * must outlive the worker. */
ms_payload_worker *ms_payload_worker_new(const ms_payload_set *s);
void ms_payload_worker_free(ms_payload_worker *w);
void ms_payload_worker_set_log(ms_payload_worker *w, ms_payload_log_fn fn, void *user);
void ms_payload_worker_set_clock(ms_payload_worker *w, ms_payload_clock_fn fn, void *user);

typedef enum ms_payload_err {
    MS_PAYLOAD_OK = 0,          /* ran: see out->blocked, edits, path */
    MS_PAYLOAD_ERR_TRAP,        /* the guest trapped (unreachable, out-of-bounds access, ...) */
    MS_PAYLOAD_ERR_FUEL,        /* instruction budget used up */
    MS_PAYLOAD_ERR_DEADLINE,    /* wall-clock budget used up */
    MS_PAYLOAD_ERR_STACK,       /* call depth or value stack */
    MS_PAYLOAD_ERR_MEMORY,      /* trapped with its memory at the page cap */
    MS_PAYLOAD_ERR_ABI,         /* bad host call (pointer, header, size, phase) or return value */
    MS_PAYLOAD_ERR_INSTANCE,    /* no instance: instantiation or `init` failed, OOM */
} ms_payload_err;

/* "trap", "fuel", "deadline", "stack", "memory", "abi", "instance" ("ok") */
const char *ms_payload_err_name(ms_payload_err e);
/* fuel, deadline, stack, memory */
bool ms_payload_err_is_exhaustion(ms_payload_err e);

/* Run module i's on_request (i must be a request-phase module).  On
 * MS_PAYLOAD_OK, out has the accumulated decision; on an error, out->error
 * says what happened and out is otherwise as before the call.  The caller
 * answers 500 or skips the module (ms_payload_module(s, i)->fail_open). */
ms_payload_err ms_payload_run_request(ms_payload_worker *w, size_t i, const ms_payload_req *req,
                                      ms_payload_result *out);
/* Run module i's on_response (a response-phase module).  req may be NULL. */
ms_payload_err ms_payload_run_response(ms_payload_worker *w, size_t i, const ms_payload_req *req,
                                       const ms_payload_resp *resp, ms_payload_result *out);

/* ------------------------------------------------------------- metrics */

typedef struct ms_payload_stats {
    uint64_t calls;             /* runs, failed ones included */
    uint64_t blocks;            /* calls that blocked */
    uint64_t rewrites;          /* calls that rewrote the path */
    uint64_t header_edits;      /* set/add/remove calls that succeeded */
    uint64_t traps;             /* MS_PAYLOAD_ERR_TRAP */
    uint64_t exhaustions;       /* fuel, deadline, stack, memory */
    uint64_t abi_errors;        /* MS_PAYLOAD_ERR_ABI */
    uint64_t instance_errors;   /* MS_PAYLOAD_ERR_INSTANCE */
    uint64_t restarts;          /* fresh instances made after a failed call */
    uint64_t time_us;           /* total wall time in calls */
} ms_payload_stats;

/* Module i's counters on this worker (sum over workers for metrics).  Safe
 * from another thread. */
void ms_payload_worker_stats(const ms_payload_worker *w, size_t i, ms_payload_stats *out);

#endif
