/* payload.c - loading and checking payload modules, per-worker instances,
 * the host functions of the payload ABI (docs/payload-abi.md) and the
 * request/response runs.  See payload.h. */
#include "payload/payload.h"

#include "payload/wasm/wasm.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

/* ABI bounds (documented in docs/payload-abi.md) */
#define PL_MAX_NAME 256            /* header name, config key */
#define PL_MAX_VALUE 8192          /* header value, path */
#define PL_MAX_EDITS 64            /* header edits per call */
#define PL_MAX_BLOCK_HEADERS 64    /* block headers per call */
#define PL_MAX_SET_PATH 16         /* set_path calls per call */
#define PL_MAX_BODY 65536          /* block body */
#define PL_MAX_LOG 1024            /* log message (longer ones are cut) */
#define PL_ARENA_KEEP (1u << 20)   /* a result's arena beyond this is freed at reset */

enum { CTX_NONE = 0, CTX_INIT, CTX_REQUEST, CTX_RESPONSE };

/* ------------------------------------------------------------------ set */

typedef struct pl_mod {
    const ms_module *cfg;
    wasm_module *wm;
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* of the bytes it was loaded from */
} pl_mod;

struct ms_payload_set {
    pl_mod *mods;
    size_t n;
    ms_payload_limits limits;
};

/* ------------------------------------------------------------------ worker */

typedef struct pl_inst {
    ms_payload_worker *w;
    size_t idx;
    const ms_module *cfg;
    const wasm_module *wm;
    wasm_store *store;
    wasm_instance *inst;
    wasm_memory *mem;          /* the export "memory", or NULL */
    wasm_func *entry;          /* on_request or on_response */
    char err[160];             /* why there is no instance */
    ms_payload_stats stats;    /* atomics */
} pl_inst;

struct ms_payload_worker {
    const ms_payload_set *set;
    pl_inst *insts;
    size_t n;
    ms_payload_log_fn log_fn;
    void *log_user;
    ms_payload_clock_fn clock_fn;
    void *clock_user;
    wasm_limits call_limits, store_limits;

    /* the call in progress */
    int ctx;
    const ms_payload_req *req;
    const ms_payload_resp *resp;
    ms_payload_result *out;
    unsigned n_edits, n_block_headers, n_set_path;
    bool block_called, oom;
    char abi[160];
};

/* ------------------------------------------------------------------ small helpers */

static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    if (!buf || !len)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t realtime_ms(void *user)
{
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Framing and hop-by-hop headers are Mothership's business. */
static const char *const forbidden_headers[] = {
    "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade", NULL,
};

static void bump(uint64_t *c, uint64_t by)
{
    __atomic_fetch_add(c, by, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ limits */

void ms_payload_limits_default(ms_payload_limits *l)
{
    l->fuel = 10000000u;
    l->timeout_ms = 50;
    l->max_memory_pages = 256;
    l->max_call_depth = 512;
    l->max_stack_slots = 65536;
    l->max_table_elems = 65536;
}

static void limits_fill(ms_payload_limits *l, const ms_payload_limits *given)
{
    ms_payload_limits d;
    ms_payload_limits_default(&d);
    *l = given ? *given : d;
    if (!l->fuel)
        l->fuel = d.fuel;
    if (!l->timeout_ms)
        l->timeout_ms = d.timeout_ms;
    if (!l->max_memory_pages)
        l->max_memory_pages = d.max_memory_pages;
    if (!l->max_call_depth)
        l->max_call_depth = d.max_call_depth;
    if (!l->max_stack_slots)
        l->max_stack_slots = d.max_stack_slots;
    if (!l->max_table_elems)
        l->max_table_elems = d.max_table_elems;
}

static void wasm_limits_from(const ms_payload_limits *l, wasm_limits *call, wasm_limits *store)
{
    memset(call, 0, sizeof *call);
    call->fuel = l->fuel;
    call->timeout_ns = l->timeout_ms * 1000000u;
    call->max_call_depth = l->max_call_depth;
    call->max_stack_slots = l->max_stack_slots;
    call->max_memory_pages = l->max_memory_pages;
    call->max_table_elems = l->max_table_elems;
    *store = *call;          /* start function and init: x10 budget */
    store->fuel = l->fuel * 10;
    store->timeout_ns = call->timeout_ns * 10;
}

/* ------------------------------------------------------------------ host functions */

#define P_I32 WASM_I32
typedef struct hostdef {
    const char *name;
    uint8_t np;
    wasm_valtype params[4];
    uint8_t nr;
    wasm_valtype result;
    wasm_host_fn fn;
    bool memory;             /* takes pointers into the guest's memory */
} hostdef;

static bool abi(ms_payload_worker *w, const char *f, ...) __attribute__((format(printf, 2, 3)));
static bool abi(ms_payload_worker *w, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(w->abi, sizeof w->abi, f, ap);
    va_end(ap);
    return false;
}

/* [ptr, ptr+len) inside the guest's memory, or an ABI error. */
static bool span(pl_inst *pi, const char *fn, const char *what, uint32_t ptr, uint32_t len,
                 uint8_t **out)
{
    size_t size = pi->mem ? wasm_memory_size(pi->mem) : 0;
    if (!pi->mem) {
        abi(pi->w, "%s: the module exports no memory", fn);
        return false;
    }
    if ((uint64_t)ptr + len > size) {
        abi(pi->w, "%s: %s [%u, %u+%u) is outside the guest's memory (%zu bytes)", fn, what, ptr, ptr,
            len, size);
        return false;
    }
    *out = wasm_memory_data(pi->mem) + ptr;
    return true;
}

/* Copy a value into the guest's buffer if it fits; the full length either way. */
static int32_t put(uint8_t *buf, uint32_t cap, const char *src, size_t n)
{
    if (n <= cap && n)
        memcpy(buf, src, n);
    return n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

static bool valid_name(ms_payload_worker *w, const char *fn, const uint8_t *p, uint32_t n)
{
    if (n == 0 || n > PL_MAX_NAME)
        return abi(w, "%s: header name of %u bytes (1..%d allowed)", fn, n, PL_MAX_NAME);
    for (uint32_t i = 0; i < n; i++)
        if (!is_tchar(p[i]))
            return abi(w, "%s: header name \"%.*s\" is not a token", fn, (int)(n > 64 ? 64 : n),
                       (const char *)p);
    for (int i = 0; forbidden_headers[i]; i++)
        if (ieq((const char *)p, n, forbidden_headers[i], strlen(forbidden_headers[i])))
            return abi(w, "%s: header \"%s\" is managed by Mothership", fn, forbidden_headers[i]);
    return true;
}

static bool valid_value(ms_payload_worker *w, const char *fn, const uint8_t *p, uint32_t n)
{
    if (n > PL_MAX_VALUE)
        return abi(w, "%s: value of %u bytes (at most %d)", fn, n, PL_MAX_VALUE);
    for (uint32_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return abi(w, "%s: value has control byte 0x%02x (CR, LF, NUL, ... are refused)", fn,
                       p[i]);
    return true;
}

/* ---- result arena ---- */

static bool arena_put(ms_payload_worker *w, ms_payload_result *r, const void *src, size_t n,
                      uint32_t *off)
{
    if (r->arena_len + n > r->arena_cap) {
        size_t cap = r->arena_cap ? r->arena_cap : 1024;
        while (cap < r->arena_len + n)
            cap *= 2;
        char *a = realloc(r->arena, cap);
        if (!a) {
            w->oom = true;
            return abi(w, "host out of memory");
        }
        r->arena = a;
        r->arena_cap = cap;
    }
    if (n)
        memcpy(r->arena + r->arena_len, src, n);
    *off = (uint32_t)r->arena_len;
    r->arena_len += n;
    return true;
}

static void result_refresh(ms_payload_result *r)
{
    for (size_t i = 0; i < r->nedits; i++) {
        ms_payload_edit *e = &r->edits[i];
        e->name.ptr = r->arena + e->name_off;
        e->value.ptr = r->arena + e->value_off;
    }
    for (size_t i = 0; i < r->nblock_headers; i++) {
        r->block_headers[i].name.ptr = r->arena + r->bh_offs[2 * i];
        r->block_headers[i].value.ptr = r->arena + r->bh_offs[2 * i + 1];
    }
    r->block_body.ptr = r->blocked || r->block_body.len ? r->arena + r->body_off : NULL;
    r->path.ptr = r->path_set ? r->arena + r->path_off : NULL;
    r->query.ptr = r->query_set ? r->arena + r->query_off : NULL;
}

/* ---- reading ---- */

static const char *arena_at(const ms_payload_result *r, uint32_t off)
{
    return r->arena + off;
}

/* Values of header `name`: the original list overlaid with the edits (if
 * any), joined with ", ".  Writes into dst when it fits in cap.  -1 when
 * there is no value. */
static int64_t header_lookup(const ms_payload_header *hs, size_t nh, const ms_payload_result *ov,
                             const char *name, size_t nlen, uint8_t *dst, size_t cap)
{
    size_t total = 0, count = 0;
    size_t from = 0;              /* edits from here on are adds that count */
    bool use_orig = true;
    const char *base = NULL;
    size_t base_len = 0;
    bool has_base = false;
    if (ov) {
        for (size_t i = ov->nedits; i-- > 0;) {
            const ms_payload_edit *e = &ov->edits[i];
            if (e->op == MS_PAYLOAD_ADD ||
                !ieq(arena_at(ov, e->name_off), e->name.len, name, nlen))
                continue;
            use_orig = false;
            from = i + 1;
            if (e->op == MS_PAYLOAD_SET) {
                has_base = true;
                base = arena_at(ov, e->value_off);
                base_len = e->value.len;
            }
            break;
        }
    }
    /* two passes: measure, then copy if it fits */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (count == 0 || total > cap))
            break;
        size_t at = 0;
        size_t k = 0;
#define EMIT(p, l)                                                                                 \
    do {                                                                                           \
        if (k++) {                                                                                 \
            if (pass)                                                                              \
                memcpy(dst + at, ", ", 2);                                                         \
            at += 2;                                                                               \
        }                                                                                          \
        if (pass && (l))                                                                           \
            memcpy(dst + at, (p), (l));                                                            \
        at += (l);                                                                                 \
    } while (0)
        if (use_orig) {
            for (size_t i = 0; i < nh; i++)
                if (ieq(hs[i].name.ptr, hs[i].name.len, name, nlen))
                    EMIT(hs[i].value.ptr, hs[i].value.len);
        } else if (has_base) {
            EMIT(base, base_len);
        }
        if (ov)
            for (size_t i = from; i < ov->nedits; i++) {
                const ms_payload_edit *e = &ov->edits[i];
                if (e->op == MS_PAYLOAD_ADD &&
                    ieq(arena_at(ov, e->name_off), e->name.len, name, nlen))
                    EMIT(arena_at(ov, e->value_off), e->value.len);
            }
#undef EMIT
        total = at;
        count = k;
    }
    if (count == 0)
        return -1;
    return (int64_t)total;
}

static wasm_trap h_get(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    uint8_t *buf;
    if (!span(pi, "get", "buffer", a[1].of.i32, a[2].of.i32, &buf))
        return WASM_TRAP_HOST;
    uint32_t cap = a[2].of.i32;
    const ms_payload_req *q = w->req;
    const ms_payload_result *o = w->out;
    int32_t n = -1;
    char tmp[16];
    switch (a[0].of.i32) {
    case 0: /* method */
        if (q)
            n = put(buf, cap, q->method.ptr, q->method.len);
        break;
    case 1: /* path */
        if (w->ctx == CTX_REQUEST && o && o->path_set)
            n = put(buf, cap, arena_at(o, o->path_off), o->path.len);
        else if (q)
            n = put(buf, cap, q->path.ptr, q->path.len);
        break;
    case 2: /* query */
        if (w->ctx == CTX_REQUEST && o && o->query_set)
            n = put(buf, cap, arena_at(o, o->query_off), o->query.len);
        else if (q)
            n = put(buf, cap, q->query.ptr, q->query.len);
        break;
    case 3: /* client address */
        if (q)
            n = put(buf, cap, q->client.ptr, q->client.len);
        break;
    case 4: /* status */
        if (w->ctx == CTX_RESPONSE && w->resp) {
            int l = snprintf(tmp, sizeof tmp, "%d", w->resp->status);
            n = put(buf, cap, tmp, (size_t)l);
        }
        break;
    default:
        break;
    }
    r[0].of.i32 = (uint32_t)n;
    return WASM_OK;
}

static wasm_trap header_get(pl_inst *pi, const wasm_val *a, wasm_val *r, bool request_only,
                            const char *fn)
{
    ms_payload_worker *w = pi->w;
    uint8_t *name, *buf;
    if (!span(pi, fn, "name", a[0].of.i32, a[1].of.i32, &name) ||
        !span(pi, fn, "buffer", a[2].of.i32, a[3].of.i32, &buf))
        return WASM_TRAP_HOST;
    int64_t n = -1;
    if (w->ctx == CTX_RESPONSE && !request_only) {
        if (w->resp)
            n = header_lookup(w->resp->headers, w->resp->nheaders, w->out, (const char *)name,
                              a[1].of.i32, buf, a[3].of.i32);
    } else if (w->ctx == CTX_REQUEST || w->ctx == CTX_RESPONSE) {
        if (w->req)
            n = header_lookup(w->req->headers, w->req->nheaders,
                              w->ctx == CTX_REQUEST ? w->out : NULL, (const char *)name,
                              a[1].of.i32, buf, a[3].of.i32);
    }
    if (n > INT32_MAX)
        n = INT32_MAX;
    r[0].of.i32 = (uint32_t)(int32_t)n;
    return WASM_OK;
}

static wasm_trap h_get_header(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    return header_get(user, a, r, false, "get_header");
}

static wasm_trap h_get_request_header(void *user, wasm_instance *caller, const wasm_val *a,
                                      wasm_val *r)
{
    (void)caller;
    return header_get(user, a, r, true, "get_request_header");
}

static wasm_trap h_get_config(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    pl_inst *pi = user;
    uint8_t *key, *buf;
    if (!span(pi, "get_config", "key", a[0].of.i32, a[1].of.i32, &key) ||
        !span(pi, "get_config", "buffer", a[2].of.i32, a[3].of.i32, &buf))
        return WASM_TRAP_HOST;
    int32_t n = -1;
    const ms_strmap *c = &pi->cfg->config;
    for (size_t i = 0; i < c->len; i++) {
        const char *k = c->items[i].key;
        size_t kl = strlen(k);
        if (kl == a[1].of.i32 && memcmp(k, key, kl) == 0) {
            const char *v = c->items[i].value ? c->items[i].value : "";
            n = put(buf, a[3].of.i32, v, strlen(v));
            break;
        }
    }
    r[0].of.i32 = (uint32_t)n;
    return WASM_OK;
}

static wasm_trap h_get_status(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    (void)a;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    r[0].of.i32 = w->ctx == CTX_RESPONSE && w->resp ? (uint32_t)w->resp->status : 0;
    return WASM_OK;
}

static bool in_call(ms_payload_worker *w, const char *fn, bool request_only)
{
    if (w->ctx != CTX_REQUEST && w->ctx != CTX_RESPONSE)
        return abi(w, "%s: only allowed in on_request/on_response", fn);
    if (request_only && w->ctx != CTX_REQUEST)
        return abi(w, "%s: only allowed in on_request", fn);
    return true;
}

static wasm_trap header_edit(pl_inst *pi, const wasm_val *a, wasm_val *r, ms_payload_edit_op op,
                             const char *fn)
{
    ms_payload_worker *w = pi->w;
    uint8_t *name, *val = NULL;
    uint32_t nl = a[1].of.i32, vl = op == MS_PAYLOAD_REMOVE ? 0 : a[3].of.i32;
    if (!in_call(w, fn, false) || !span(pi, fn, "name", a[0].of.i32, nl, &name) ||
        (op != MS_PAYLOAD_REMOVE && !span(pi, fn, "value", a[2].of.i32, vl, &val)) ||
        !valid_name(w, fn, name, nl) || (val && !valid_value(w, fn, val, vl)))
        return WASM_TRAP_HOST;
    if (w->n_edits >= PL_MAX_EDITS) {
        abi(w, "%s: more than %d header edits in one call", fn, PL_MAX_EDITS);
        return WASM_TRAP_HOST;
    }
    ms_payload_result *o = w->out;
    if (o->nedits == o->edits_cap) {
        size_t cap = o->edits_cap ? o->edits_cap * 2 : 16;
        ms_payload_edit *e = realloc(o->edits, cap * sizeof *e);
        if (!e) {
            w->oom = true;
            abi(w, "host out of memory");
            return WASM_TRAP_HOST;
        }
        o->edits = e;
        o->edits_cap = cap;
    }
    ms_payload_edit *e = &o->edits[o->nedits];
    memset(e, 0, sizeof *e);
    e->op = op;
    if (!arena_put(w, o, name, nl, &e->name_off) || !arena_put(w, o, val, vl, &e->value_off))
        return WASM_TRAP_HOST;
    e->name.len = nl;
    e->value.len = vl;
    o->nedits++;
    w->n_edits++;
    result_refresh(o);
    r[0].of.i32 = 0;
    return WASM_OK;
}

static wasm_trap h_set_header(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    return header_edit(user, a, r, MS_PAYLOAD_SET, "set_header");
}

static wasm_trap h_add_header(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    return header_edit(user, a, r, MS_PAYLOAD_ADD, "add_header");
}

static wasm_trap h_remove_header(void *user, wasm_instance *caller, const wasm_val *a,
                                 wasm_val *r)
{
    (void)caller;
    return header_edit(user, a, r, MS_PAYLOAD_REMOVE, "remove_header");
}

static wasm_trap h_set_path(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    uint8_t *p;
    uint32_t n = a[1].of.i32;
    if (!in_call(w, "set_path", true) || !span(pi, "set_path", "path", a[0].of.i32, n, &p))
        return WASM_TRAP_HOST;
    if (n == 0 || n > PL_MAX_VALUE || p[0] != '/') {
        abi(w, "set_path: a path starts with '/' and has 1..%d bytes", PL_MAX_VALUE);
        return WASM_TRAP_HOST;
    }
    uint32_t q = n;
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '#') {
            abi(w, "set_path: byte 0x%02x at %u (spaces, controls, '#' and non-ASCII must be "
                   "percent-encoded)", p[i], i);
            return WASM_TRAP_HOST;
        }
        if (p[i] == '?' && q == n)
            q = i;
    }
    if (++w->n_set_path > PL_MAX_SET_PATH) {
        abi(w, "set_path: called more than %d times in one call", PL_MAX_SET_PATH);
        return WASM_TRAP_HOST;
    }
    ms_payload_result *o = w->out;
    uint32_t off;
    if (!arena_put(w, o, p, n, &off))
        return WASM_TRAP_HOST;
    o->path_set = true;
    o->path_off = off;
    o->path.len = q;
    if (q < n) {
        o->query_set = true;
        o->query_off = off + q + 1;
        o->query.len = n - q - 1;
    }
    result_refresh(o);
    r[0].of.i32 = 0;
    return WASM_OK;
}

static wasm_trap h_block(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    uint8_t *body;
    int32_t status = (int32_t)a[0].of.i32;
    if (!in_call(w, "block", true) || !span(pi, "block", "body", a[1].of.i32, a[2].of.i32, &body))
        return WASM_TRAP_HOST;
    if (status < 200 || status > 599) {
        abi(w, "block: status %d (200..599 allowed)", status);
        return WASM_TRAP_HOST;
    }
    if (a[2].of.i32 > PL_MAX_BODY) {
        abi(w, "block: body of %u bytes (at most %d)", a[2].of.i32, PL_MAX_BODY);
        return WASM_TRAP_HOST;
    }
    if (w->block_called) {
        abi(w, "block: called twice in one call");
        return WASM_TRAP_HOST;
    }
    ms_payload_result *o = w->out;
    if (!arena_put(w, o, body, a[2].of.i32, &o->body_off))
        return WASM_TRAP_HOST;
    w->block_called = true;
    o->block_status = status;
    o->block_body.len = a[2].of.i32;
    result_refresh(o);
    r[0].of.i32 = 0;
    return WASM_OK;
}

static wasm_trap h_block_header(void *user, wasm_instance *caller, const wasm_val *a,
                                wasm_val *r)
{
    (void)caller;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    uint8_t *name, *val;
    const char *fn = "block_header";
    uint32_t nl = a[1].of.i32, vl = a[3].of.i32;
    if (!in_call(w, fn, true) || !span(pi, fn, "name", a[0].of.i32, nl, &name) ||
        !span(pi, fn, "value", a[2].of.i32, vl, &val) || !valid_name(w, fn, name, nl) ||
        !valid_value(w, fn, val, vl))
        return WASM_TRAP_HOST;
    if (w->n_block_headers >= PL_MAX_BLOCK_HEADERS) {
        abi(w, "%s: more than %d block headers", fn, PL_MAX_BLOCK_HEADERS);
        return WASM_TRAP_HOST;
    }
    ms_payload_result *o = w->out;
    if (o->nblock_headers == o->bh_cap) {
        size_t cap = o->bh_cap ? o->bh_cap * 2 : 8;
        ms_payload_header *h = realloc(o->block_headers, cap * sizeof *h);
        if (h)
            o->block_headers = h;
        uint32_t *offs = h ? realloc(o->bh_offs, cap * 2 * sizeof *offs) : NULL;
        if (!h || !offs) {
            w->oom = true;
            abi(w, "host out of memory");
            return WASM_TRAP_HOST;
        }
        o->bh_offs = offs;
        o->bh_cap = cap;
    }
    size_t k = o->nblock_headers;
    if (!arena_put(w, o, name, nl, &o->bh_offs[2 * k]) ||
        !arena_put(w, o, val, vl, &o->bh_offs[2 * k + 1]))
        return WASM_TRAP_HOST;
    o->block_headers[k].name.len = nl;
    o->block_headers[k].value.len = vl;
    o->nblock_headers++;
    w->n_block_headers++;
    result_refresh(o);
    r[0].of.i32 = 0;
    return WASM_OK;
}

static wasm_trap h_log(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    (void)r;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    uint8_t *msg;
    if (!span(pi, "log", "message", a[1].of.i32, a[2].of.i32, &msg))
        return WASM_TRAP_HOST;
    int level = (int32_t)a[0].of.i32;
    level = level < 0 ? 0 : level > 3 ? 3 : level;
    size_t len = a[2].of.i32 > PL_MAX_LOG ? PL_MAX_LOG : a[2].of.i32;
    if (w->log_fn)
        w->log_fn(w->log_user, pi->cfg, level, (const char *)msg, len);
    return WASM_OK;
}

static wasm_trap h_now_ms(void *user, wasm_instance *caller, const wasm_val *a, wasm_val *r)
{
    (void)caller;
    (void)a;
    pl_inst *pi = user;
    ms_payload_worker *w = pi->w;
    int64_t t = w->clock_fn ? w->clock_fn(w->clock_user) : realtime_ms(NULL);
    r[0].of.i64 = (uint64_t)t;
    return WASM_OK;
}

static const hostdef HOST[] = {
    {"get", 3, {P_I32, P_I32, P_I32}, 1, WASM_I32, h_get, true},
    {"get_header", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_get_header, true},
    {"get_request_header", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_get_request_header,
     true},
    {"get_config", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_get_config, true},
    {"get_status", 0, {0}, 1, WASM_I32, h_get_status, false},
    {"set_header", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_set_header, true},
    {"add_header", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_add_header, true},
    {"remove_header", 2, {P_I32, P_I32}, 1, WASM_I32, h_remove_header, true},
    {"set_path", 2, {P_I32, P_I32}, 1, WASM_I32, h_set_path, true},
    {"block", 3, {P_I32, P_I32, P_I32}, 1, WASM_I32, h_block, true},
    {"block_header", 4, {P_I32, P_I32, P_I32, P_I32}, 1, WASM_I32, h_block_header, true},
    {"log", 3, {P_I32, P_I32, P_I32}, 0, WASM_I32, h_log, true},
    {"now_ms", 0, {0}, 1, WASM_I64, h_now_ms, false},
};
#define NHOST (sizeof HOST / sizeof HOST[0])

static const hostdef *host_find(const char *module, const char *name)
{
    if (strcmp(module, "mothership") != 0)
        return NULL;
    for (size_t i = 0; i < NHOST; i++)
        if (strcmp(HOST[i].name, name) == 0)
            return &HOST[i];
    return NULL;
}

/* ------------------------------------------------------------------ instances */

static bool resolve(void *user, uint32_t idx, const char *module, const char *name,
                    wasm_extern_kind kind, wasm_extern *out)
{
    (void)idx;
    pl_inst *pi = user;
    const hostdef *h = host_find(module, name);
    if (!h || kind != WASM_EXTERN_FUNC)
        return false;
    out->kind = WASM_EXTERN_FUNC;
    out->of.func = wasm_func_new_host(pi->store, h->params, h->np, &h->result, h->nr, h->fn, pi);
    return out->of.func != NULL;
}

static void inst_drop(pl_inst *pi)
{
    wasm_store_free(pi->store);
    pi->store = NULL;
    pi->inst = NULL;
    pi->mem = NULL;
    pi->entry = NULL;
}

static void trap_text(ms_payload_worker *w, wasm_trap t, char *buf, size_t len)
{
    if (t == WASM_TRAP_HOST)
        fmt(buf, len, "%s", w->abi);
    else
        fmt(buf, len, "%s", wasm_trap_message(t));
}

/* Make a fresh instance (and run init).  run_init false: the check's trial. */
static bool inst_make(ms_payload_worker *w, pl_inst *pi, bool run_init)
{
    inst_drop(pi);
    pi->err[0] = 0;
    pi->store = wasm_store_new(&w->store_limits);
    if (!pi->store) {
        fmt(pi->err, sizeof pi->err, "out of memory");
        return false;
    }
    char err[128];
    w->ctx = CTX_INIT;
    w->abi[0] = 0;
    wasm_inst_status st = wasm_instantiate(pi->store, pi->wm, resolve, pi, &pi->inst, err,
                                           sizeof err);
    w->ctx = CTX_NONE;
    if (st != WASM_INST_OK) {
        fmt(pi->err, sizeof pi->err, "cannot be instantiated: %s%s%s", err,
            w->abi[0] ? ": " : "", w->abi);
        inst_drop(pi);
        return false;
    }
    wasm_extern e;
    if (wasm_instance_export(pi->inst, "memory", &e) && e.kind == WASM_EXTERN_MEMORY)
        pi->mem = e.of.memory;
    pi->entry = wasm_instance_func(pi->inst, pi->cfg->phase == MS_PHASE_RESPONSE ? "on_response"
                                                                                 : "on_request");
    if (!pi->entry) {
        fmt(pi->err, sizeof pi->err, "missing entry point");
        inst_drop(pi);
        return false;
    }
    wasm_func *init = wasm_instance_func(pi->inst, "init");
    if (run_init && init) {
        wasm_val res;
        w->ctx = CTX_INIT;
        w->abi[0] = 0;
        wasm_trap t = wasm_call(pi->store, init, NULL, 0, &res, 1, NULL);
        w->ctx = CTX_NONE;
        if (t != WASM_OK) {
            char tt[180];
            trap_text(w, t, tt, sizeof tt);
            fmt(pi->err, sizeof pi->err, "init failed: %s", tt);
            inst_drop(pi);
            return false;
        }
        if (res.of.i32 != 0) {
            fmt(pi->err, sizeof pi->err, "init returned %d", (int32_t)res.of.i32);
            inst_drop(pi);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ checking */

typedef void (*report_fn)(void *user, const ms_module *cfg, const char *msg);

static void functype_text(char *buf, size_t len, const uint8_t *p, uint32_t np, const uint8_t *r,
                          uint32_t nr)
{
    size_t at = 0;
#define T(c) ((c) == WASM_I32 ? "i32" : (c) == WASM_I64 ? "i64" : (c) == WASM_F32 ? "f32" : \
              (c) == WASM_F64 ? "f64" : (c) == WASM_FUNCREF ? "funcref" : "externref")
    at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "(");
    for (uint32_t i = 0; i < np; i++)
        at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%s", i ? ", " : "", T(p[i]));
    at += (size_t)snprintf(buf + at, at < len ? len - at : 0, ") -> ");
    if (nr == 0)
        snprintf(buf + at, at < len ? len - at : 0, "()");
    else if (nr == 1)
        snprintf(buf + at, at < len ? len - at : 0, "%s", T(r[0]));
    else
        for (uint32_t i = 0; i < nr; i++)
            at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%s%s", i ? ", " : "(",
                                   T(r[i]), i + 1 == nr ? ")" : "");
#undef T
}

static bool export_check(const ms_module *cfg, const wasm_module *wm, const char *name,
                         bool required, const char *why_required, report_fn rep, void *u)
{
    const uint8_t *p, *r;
    uint32_t np, nr;
    char msg[512];
    if (!wasm_module_export_functype(wm, name, &p, &np, &r, &nr)) {
        uint32_t n = wasm_module_export_count(wm);
        for (uint32_t i = 0; i < n; i++) {
            const char *en;
            wasm_extern_kind k;
            wasm_module_export(wm, i, &en, &k);
            if (strcmp(en, name) == 0) {
                fmt(msg, sizeof msg, "module \"%s\": export \"%s\" must be a function () -> i32",
                    cfg->name, name);
                rep(u, cfg, msg);
                return false;
            }
        }
        if (required) {
            fmt(msg, sizeof msg, "module \"%s\": missing export \"%s\" (%s)", cfg->name, name,
                why_required);
            rep(u, cfg, msg);
            return false;
        }
        return true;
    }
    if (np != 0 || nr != 1 || r[0] != WASM_I32) {
        char t[160];
        functype_text(t, sizeof t, p, np, r, nr);
        fmt(msg, sizeof msg, "module \"%s\": export \"%s\" has type %s, expected () -> i32",
            cfg->name, name, t);
        rep(u, cfg, msg);
        return false;
    }
    return true;
}

static const char *kind_word(wasm_extern_kind k)
{
    switch (k) {
    case WASM_EXTERN_FUNC: return "a function";
    case WASM_EXTERN_TABLE: return "a table";
    case WASM_EXTERN_MEMORY: return "a memory";
    case WASM_EXTERN_GLOBAL: return "a global";
    }
    return "?";
}

/* Every problem of one loaded module; the number found. */
static int module_check(const ms_module *cfg, const wasm_module *wm,
                        const ms_payload_limits *lim, report_fn rep, void *u)
{
    int problems = 0;
    char msg[600];
    bool resp = cfg->phase == MS_PHASE_RESPONSE;
    if (!export_check(cfg, wm, resp ? "on_response" : "on_request", true,
                      resp ? "phase = \"response\"" : "phase = \"request\"", rep, u))
        problems++;
    if (!export_check(cfg, wm, "init", false, NULL, rep, u))
        problems++;
    bool needs_memory = false;
    uint32_t ni = wasm_module_import_count(wm);
    for (uint32_t i = 0; i < ni; i++) {
        const char *mod, *name;
        wasm_extern_kind k;
        wasm_module_import(wm, i, &mod, &name, &k);
        const hostdef *h = host_find(mod, name);
        if (!h) {
            fmt(msg, sizeof msg, "module \"%s\": imports \"%s.%s\", which Mothership does not "
                "provide (see docs/payload-abi.md)", cfg->name, mod, name);
            rep(u, cfg, msg);
            problems++;
            continue;
        }
        if (k != WASM_EXTERN_FUNC) {
            fmt(msg, sizeof msg, "module \"%s\": imports \"%s.%s\" as %s, but it is a function",
                cfg->name, mod, name, kind_word(k));
            rep(u, cfg, msg);
            problems++;
            continue;
        }
        const uint8_t *p, *r;
        uint32_t np, nr;
        wasm_module_import_functype(wm, i, &p, &np, &r, &nr);
        bool same = np == h->np && nr == h->nr && (nr == 0 || r[0] == h->result);
        for (uint32_t k2 = 0; same && k2 < np; k2++)
            same = p[k2] == h->params[k2];
        if (!same) {
            char got[160], want[160];
            uint8_t hp[4], hr = (uint8_t)h->result;
            for (int k2 = 0; k2 < h->np; k2++)
                hp[k2] = (uint8_t)h->params[k2];
            functype_text(got, sizeof got, p, np, r, nr);
            functype_text(want, sizeof want, hp, h->np, &hr, h->nr);
            fmt(msg, sizeof msg, "module \"%s\": imports \"%s.%s\" with type %s, but it is %s",
                cfg->name, mod, name, got, want);
            rep(u, cfg, msg);
            problems++;
        }
        if (h->memory)
            needs_memory = true;
    }
    if (needs_memory) {
        bool has = false;
        uint32_t ne = wasm_module_export_count(wm);
        for (uint32_t i = 0; i < ne; i++) {
            const char *en;
            wasm_extern_kind k;
            wasm_module_export(wm, i, &en, &k);
            if (strcmp(en, "memory") == 0 && k == WASM_EXTERN_MEMORY)
                has = true;
        }
        if (!has) {
            fmt(msg, sizeof msg, "module \"%s\": missing export \"memory\" (the host functions "
                "it imports take pointers into it)", cfg->name);
            rep(u, cfg, msg);
            problems++;
        }
    }
    if (problems)
        return problems;

    /* trial instantiation (no init): memory over the cap, segments out of
     * bounds, a start function that traps */
    ms_payload_worker w;
    memset(&w, 0, sizeof w);
    wasm_limits_from(lim, &w.call_limits, &w.store_limits);
    pl_inst pi;
    memset(&pi, 0, sizeof pi);
    pi.w = &w;
    pi.cfg = cfg;
    pi.wm = wm;
    if (!inst_make(&w, &pi, false)) {
        fmt(msg, sizeof msg, "module \"%s\": %s", cfg->name, pi.err);
        rep(u, cfg, msg);
        problems++;
    }
    inst_drop(&pi);
    return problems;
}

static wasm_module *module_decode(const ms_module *cfg, const uint8_t *bytes, size_t len,
                                  report_fn rep, void *u)
{
    char err[200], msg[700];
    bool malformed = false;
    wasm_module *wm = wasm_module_load(bytes, len, err, sizeof err, &malformed);
    if (!wm) {
        fmt(msg, sizeof msg, "module \"%s\": %s WebAssembly in %s: %s", cfg->name,
            malformed ? "malformed" : "invalid", cfg->wasm ? cfg->wasm : "(buffer)", err);
        rep(u, cfg, msg);
    }
    return wm;
}

static uint8_t *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fmt(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                fmt(err, errlen, "read error");
                free(buf);
                buf = NULL;
            }
            break;
        }
        if (cap >= (size_t)1 << 30) {
            fmt(err, errlen, "file too large");
            free(buf);
            buf = NULL;
            break;
        }
        uint8_t *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf && !err[0])
        fmt(err, errlen, "out of memory");
    fclose(f);
    *len = n;
    return buf;
}

/* ---- first-problem reporting for load_all ---- */

typedef struct first_problem {
    char *why;
    size_t why_len;
    bool got;
} first_problem;

static void report_first(void *user, const ms_module *cfg, const char *msg)
{
    (void)cfg;
    first_problem *fp = user;
    if (!fp->got)
        fmt(fp->why, fp->why_len, "%s", msg);
    fp->got = true;
}

/* Bytes of module i: from buffers, or read from its file. */
typedef struct byte_src {
    const uint8_t *const *bytes;
    const size_t *lens;
} byte_src;

static ms_payload_set *load_impl(const ms_module *mods, size_t n, const byte_src *src,
                                 const ms_payload_limits *limits, char *why, size_t why_len)
{
    fmt(why, why_len, "%s", "");
    ms_payload_set *s = calloc(1, sizeof *s);
    if (!s || (n && !(s->mods = calloc(n, sizeof *s->mods)))) {
        free(s);
        fmt(why, why_len, "out of memory");
        return NULL;
    }
    limits_fill(&s->limits, limits);
    s->n = n;
    first_problem fp = {why, why_len, false};
    for (size_t i = 0; i < n; i++) {
        const uint8_t *bytes;
        size_t len;
        uint8_t *owned = NULL;
        if (src) {
            bytes = src->bytes[i];
            len = src->lens[i];
        } else {
            char err[160] = "";
            owned = mods[i].wasm ? read_file(mods[i].wasm, &len, err, sizeof err) : NULL;
            if (!owned) {
                fmt(why, why_len, "module \"%s\": cannot read %s: %s", mods[i].name,
                    mods[i].wasm ? mods[i].wasm : "(no wasm file)", err[0] ? err : "no path");
                ms_payload_set_free(s);
                return NULL;
            }
            bytes = owned;
        }
        s->mods[i].cfg = &mods[i];
        SHA256(bytes, len, s->mods[i].digest);
        s->mods[i].wm = module_decode(&mods[i], bytes, len, report_first, &fp);
        free(owned);
        if (!s->mods[i].wm || module_check(&mods[i], s->mods[i].wm, &s->limits, report_first,
                                           &fp)) {
            ms_payload_set_free(s);
            return NULL;
        }
    }
    return s;
}

ms_payload_set *ms_payload_load_buffers(const ms_module *mods, size_t n,
                                        const uint8_t *const *bytes, const size_t *lens,
                                        const ms_payload_limits *limits, char *why,
                                        size_t why_len)
{
    byte_src src = {bytes, lens};
    return load_impl(mods, n, &src, limits, why, why_len);
}

ms_payload_set *ms_payload_load_all_limits(const ms_manifest *m, const ms_payload_limits *limits,
                                           char *why, size_t why_len)
{
    return load_impl(m->modules, m->nmodules, NULL, limits, why, why_len);
}

ms_payload_set *ms_payload_load_all(const ms_manifest *m, char *why, size_t why_len)
{
    return ms_payload_load_all_limits(m, NULL, why, why_len);
}

bool ms_payload_set_bytes_changed(const ms_payload_set *a, const ms_payload_set *b, size_t i)
{
    assert(i < b->n);
    for (size_t k = 0; a && k < a->n; k++)
        if (strcmp(a->mods[k].cfg->name, b->mods[i].cfg->name) == 0)
            return memcmp(a->mods[k].digest, b->mods[i].digest, sizeof b->mods[i].digest) != 0;
    return false;
}

void ms_payload_set_free(ms_payload_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        wasm_module_free(s->mods[i].wm);
    free(s->mods);
    free(s);
}

typedef struct diag_ctx {
    ms_diags *d;
} diag_ctx;

static void report_diag(void *user, const ms_module *cfg, const char *msg)
{
    diag_ctx *dc = user;
    ms_pos p = cfg->wasm_pos.line ? cfg->wasm_pos : cfg->pos;
    ms_diag_add(dc->d, p.line, p.col, "%s", msg);
}

int ms_payload_check(const ms_manifest *m, ms_diags *d)
{
    int problems = 0;
    diag_ctx dc = {d};
    ms_payload_limits lim;
    limits_fill(&lim, NULL);
    for (size_t i = 0; i < m->nmodules; i++) {
        const ms_module *cfg = &m->modules[i];
        char err[160] = "";
        size_t len = 0;
        uint8_t *bytes = cfg->wasm ? read_file(cfg->wasm, &len, err, sizeof err) : NULL;
        if (!bytes) {
            char msg[600];
            fmt(msg, sizeof msg, "module \"%s\": cannot read %s: %s", cfg->name,
                cfg->wasm ? cfg->wasm : "(no wasm file)", err[0] ? err : "no path");
            report_diag(&dc, cfg, msg);
            problems++;
            continue;
        }
        wasm_module *wm = module_decode(cfg, bytes, len, report_diag, &dc);
        free(bytes);
        if (!wm) {
            problems++;
            continue;
        }
        problems += module_check(cfg, wm, &lim, report_diag, &dc);
        wasm_module_free(wm);
    }
    return problems;
}

size_t ms_payload_count(const ms_payload_set *s)
{
    return s ? s->n : 0;
}

const ms_module *ms_payload_module(const ms_payload_set *s, size_t i)
{
    return i < s->n ? s->mods[i].cfg : NULL;
}

ms_phase ms_payload_phase(const ms_payload_set *s, size_t i)
{
    return s->mods[i].cfg->phase;
}

const ms_payload_limits *ms_payload_set_limits(const ms_payload_set *s)
{
    return &s->limits;
}

/* ------------------------------------------------------------------ results */

void ms_payload_result_init(ms_payload_result *r)
{
    memset(r, 0, sizeof *r);
}

void ms_payload_result_reset(ms_payload_result *r)
{
    r->blocked = false;
    r->block_status = 0;
    r->block_body.ptr = NULL;
    r->block_body.len = 0;
    r->nblock_headers = 0;
    r->path_set = r->query_set = false;
    r->path.ptr = r->query.ptr = NULL;
    r->path.len = r->query.len = 0;
    r->nedits = 0;
    r->module = 0;
    r->error[0] = 0;
    r->arena_len = 0;
    if (r->arena_cap > PL_ARENA_KEEP) {
        free(r->arena);
        r->arena = NULL;
        r->arena_cap = 0;
    }
}

int ms_payload_result_copy(ms_payload_result *dst, const ms_payload_result *src)
{
    ms_payload_result_free(dst);
    if (src->arena_len && !(dst->arena = malloc(src->arena_len)))
        return -1;
    if (src->nedits && !(dst->edits = malloc(src->nedits * sizeof *dst->edits))) {
        ms_payload_result_free(dst);
        return -1;
    }
    if (src->arena_len)
        memcpy(dst->arena, src->arena, src->arena_len);
    if (src->nedits)
        memcpy(dst->edits, src->edits, src->nedits * sizeof *dst->edits);
    dst->arena_len = dst->arena_cap = src->arena_len;
    dst->nedits = dst->edits_cap = src->nedits;
    dst->path_set = src->path_set;
    dst->path.len = src->path.len;
    dst->path_off = src->path_off;
    dst->query_set = src->query_set;
    dst->query.len = src->query.len;
    dst->query_off = src->query_off;
    dst->module = src->module;
    result_refresh(dst);
    return 0;
}

void ms_payload_result_free(ms_payload_result *r)
{
    free(r->arena);
    free(r->edits);
    free(r->block_headers);
    free(r->bh_offs);
    memset(r, 0, sizeof *r);
}

bool ms_payload_keeps_header(const ms_payload_result *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nedits; i++)
        if (r->edits[i].op != MS_PAYLOAD_ADD &&
            ieq(r->edits[i].name.ptr, r->edits[i].name.len, name, len))
            return false;
    return true;
}

bool ms_payload_edit_live(const ms_payload_result *r, size_t i)
{
    if (i >= r->nedits || r->edits[i].op == MS_PAYLOAD_REMOVE)
        return false;
    const ms_payload_edit *e = &r->edits[i];
    for (size_t k = i + 1; k < r->nedits; k++)
        if (r->edits[k].op != MS_PAYLOAD_ADD &&
            ieq(r->edits[k].name.ptr, r->edits[k].name.len, e->name.ptr, e->name.len))
            return false;
    return true;
}

/* ------------------------------------------------------------------ workers */

ms_payload_worker *ms_payload_worker_new(const ms_payload_set *s)
{
    ms_payload_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->set = s;
    w->n = s->n;
    if (s->n && !(w->insts = calloc(s->n, sizeof *w->insts))) {
        free(w);
        return NULL;
    }
    wasm_limits_from(&s->limits, &w->call_limits, &w->store_limits);
    for (size_t i = 0; i < s->n; i++) {
        pl_inst *pi = &w->insts[i];
        pi->w = w;
        pi->idx = i;
        pi->cfg = s->mods[i].cfg;
        pi->wm = s->mods[i].wm;
        inst_make(w, pi, true); /* on failure retried at the first call */
    }
    return w;
}

void ms_payload_worker_free(ms_payload_worker *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        inst_drop(&w->insts[i]);
    free(w->insts);
    free(w);
}

void ms_payload_worker_set_log(ms_payload_worker *w, ms_payload_log_fn fn, void *user)
{
    w->log_fn = fn;
    w->log_user = user;
}

void ms_payload_worker_set_clock(ms_payload_worker *w, ms_payload_clock_fn fn, void *user)
{
    w->clock_fn = fn;
    w->clock_user = user;
}

const char *ms_payload_err_name(ms_payload_err e)
{
    switch (e) {
    case MS_PAYLOAD_OK: return "ok";
    case MS_PAYLOAD_ERR_TRAP: return "trap";
    case MS_PAYLOAD_ERR_FUEL: return "fuel";
    case MS_PAYLOAD_ERR_DEADLINE: return "deadline";
    case MS_PAYLOAD_ERR_STACK: return "stack";
    case MS_PAYLOAD_ERR_MEMORY: return "memory";
    case MS_PAYLOAD_ERR_ABI: return "abi";
    case MS_PAYLOAD_ERR_INSTANCE: return "instance";
    }
    return "?";
}

bool ms_payload_err_is_exhaustion(ms_payload_err e)
{
    return e == MS_PAYLOAD_ERR_FUEL || e == MS_PAYLOAD_ERR_DEADLINE || e == MS_PAYLOAD_ERR_STACK ||
           e == MS_PAYLOAD_ERR_MEMORY;
}

static ms_payload_err classify(ms_payload_worker *w, pl_inst *pi, wasm_trap t, char *msg,
                               size_t len)
{
    const ms_payload_limits *l = &w->set->limits;
    switch (t) {
    case WASM_TRAP_FUEL:
        fmt(msg, len, "fuel exhausted (%llu instructions)", (unsigned long long)l->fuel);
        return MS_PAYLOAD_ERR_FUEL;
    case WASM_TRAP_DEADLINE:
        fmt(msg, len, "deadline exceeded (%llu ms)", (unsigned long long)l->timeout_ms);
        return MS_PAYLOAD_ERR_DEADLINE;
    case WASM_TRAP_CALL_DEPTH:
    case WASM_TRAP_VALUE_STACK:
        fmt(msg, len, "%s", wasm_trap_message(t));
        return MS_PAYLOAD_ERR_STACK;
    case WASM_TRAP_HOST:
        fmt(msg, len, "ABI error: %s", w->abi);
        return MS_PAYLOAD_ERR_ABI;
    case WASM_TRAP_BAD_CALL:
        fmt(msg, len, "ABI error: bad call");
        return MS_PAYLOAD_ERR_ABI;
    default:
        break;
    }
    if (pi->mem && wasm_memory_size(pi->mem) >= (size_t)l->max_memory_pages * 65536u) {
        fmt(msg, len, "trap (%s) with memory at the cap of %u pages", wasm_trap_message(t),
            l->max_memory_pages);
        return MS_PAYLOAD_ERR_MEMORY;
    }
    fmt(msg, len, "trap: %s", wasm_trap_message(t));
    return MS_PAYLOAD_ERR_TRAP;
}

static void restore(ms_payload_result *out, const ms_payload_result *snap)
{
    ms_payload_result keep = *out;
    *out = *snap;
    out->arena = keep.arena;
    out->arena_cap = keep.arena_cap;
    out->edits = keep.edits;
    out->edits_cap = keep.edits_cap;
    out->block_headers = keep.block_headers;
    out->bh_offs = keep.bh_offs;
    out->bh_cap = keep.bh_cap;
}

static ms_payload_err run(ms_payload_worker *w, size_t i, int ctx, const ms_payload_req *req,
                          const ms_payload_resp *resp, ms_payload_result *out)
{
    out->error[0] = 0;
    if (i >= w->n) {
        fmt(out->error, sizeof out->error, "no module %zu", i);
        return MS_PAYLOAD_ERR_INSTANCE;
    }
    pl_inst *pi = &w->insts[i];
    out->module = i;
    uint64_t t0 = mono_us();
    bump(&pi->stats.calls, 1);
    bool want_resp = ctx == CTX_RESPONSE;
    if ((pi->cfg->phase == MS_PHASE_RESPONSE) != want_resp) {
        fmt(out->error, sizeof out->error, "module \"%s\" is a %s-phase module", pi->cfg->name,
            pi->cfg->phase == MS_PHASE_RESPONSE ? "response" : "request");
        bump(&pi->stats.instance_errors, 1);
        return MS_PAYLOAD_ERR_INSTANCE;
    }
    if (!pi->inst && !inst_make(w, pi, true)) {
        fmt(out->error, sizeof out->error, "module \"%s\": %s", pi->cfg->name, pi->err);
        bump(&pi->stats.instance_errors, 1);
        bump(&pi->stats.time_us, mono_us() - t0);
        return MS_PAYLOAD_ERR_INSTANCE;
    }
    ms_payload_result snap = *out;
    w->ctx = ctx;
    w->req = req;
    w->resp = resp;
    w->out = out;
    w->n_edits = w->n_block_headers = w->n_set_path = 0;
    w->block_called = w->oom = false;
    w->abi[0] = 0;

    wasm_val res;
    memset(&res, 0, sizeof res);
    wasm_trap t = wasm_call(pi->store, pi->entry, NULL, 0, &res, 1, &w->call_limits);
    ms_payload_err e = MS_PAYLOAD_OK;
    char msg[180];
    if (t != WASM_OK) {
        e = classify(w, pi, t, msg, sizeof msg);
    } else if (res.of.i32 == 1) {
        if (ctx == CTX_RESPONSE) {
            e = MS_PAYLOAD_ERR_ABI;
            fmt(msg, sizeof msg, "ABI error: on_response returned 1 (a response cannot be "
                "blocked)");
        } else if (!w->block_called) {
            e = MS_PAYLOAD_ERR_ABI;
            fmt(msg, sizeof msg, "ABI error: on_request returned 1 without calling block");
        } else {
            out->blocked = true;
        }
    } else if (res.of.i32 == 0) {
        if (w->block_called) { /* a block not asked for: drop it */
            out->block_status = snap.block_status;
            out->block_body = snap.block_body;
            out->body_off = snap.body_off;
            out->nblock_headers = snap.nblock_headers;
        }
    } else {
        e = MS_PAYLOAD_ERR_ABI;
        fmt(msg, sizeof msg, "ABI error: %s returned %d (expected 0 or 1)",
            ctx == CTX_RESPONSE ? "on_response" : "on_request", (int32_t)res.of.i32);
    }
    w->ctx = CTX_NONE;
    w->req = NULL;
    w->resp = NULL;
    w->out = NULL;

    if (e != MS_PAYLOAD_OK) {
        restore(out, &snap);
        fmt(out->error, sizeof out->error, "module \"%s\": %s", pi->cfg->name, msg);
        if (e == MS_PAYLOAD_ERR_ABI)
            bump(&pi->stats.abi_errors, 1);
        else if (e == MS_PAYLOAD_ERR_TRAP)
            bump(&pi->stats.traps, 1);
        else
            bump(&pi->stats.exhaustions, 1);
        /* never continue from a half-finished call: a fresh instance */
        bump(&pi->stats.restarts, 1);
        inst_make(w, pi, true);
    } else {
        if (out->blocked)
            bump(&pi->stats.blocks, 1);
        if (w->n_set_path)
            bump(&pi->stats.rewrites, 1);
        if (w->n_edits)
            bump(&pi->stats.header_edits, w->n_edits);
    }
    result_refresh(out);
    bump(&pi->stats.time_us, mono_us() - t0);
    return e;
}

ms_payload_err ms_payload_run_request(ms_payload_worker *w, size_t i, const ms_payload_req *req,
                                      ms_payload_result *out)
{
    return run(w, i, CTX_REQUEST, req, NULL, out);
}

ms_payload_err ms_payload_run_response(ms_payload_worker *w, size_t i, const ms_payload_req *req,
                                       const ms_payload_resp *resp, ms_payload_result *out)
{
    return run(w, i, CTX_RESPONSE, req, resp, out);
}

void ms_payload_worker_stats(const ms_payload_worker *w, size_t i, ms_payload_stats *out)
{
    memset(out, 0, sizeof *out);
    if (i >= w->n)
        return;
    const ms_payload_stats *s = &w->insts[i].stats;
    out->calls = __atomic_load_n(&s->calls, __ATOMIC_RELAXED);
    out->blocks = __atomic_load_n(&s->blocks, __ATOMIC_RELAXED);
    out->rewrites = __atomic_load_n(&s->rewrites, __ATOMIC_RELAXED);
    out->header_edits = __atomic_load_n(&s->header_edits, __ATOMIC_RELAXED);
    out->traps = __atomic_load_n(&s->traps, __ATOMIC_RELAXED);
    out->exhaustions = __atomic_load_n(&s->exhaustions, __ATOMIC_RELAXED);
    out->abi_errors = __atomic_load_n(&s->abi_errors, __ATOMIC_RELAXED);
    out->instance_errors = __atomic_load_n(&s->instance_errors, __ATOMIC_RELAXED);
    out->restarts = __atomic_load_n(&s->restarts, __ATOMIC_RELAXED);
    out->time_us = __atomic_load_n(&s->time_us, __ATOMIC_RELAXED);
}
