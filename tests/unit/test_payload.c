/* test_payload.c - cmocka tests for the payload layer (src/payload/payload.h)
 * with the example payloads built by meson (examples/payloads, passed in as
 * MS_PAYLOAD_DIR): auth allow/deny, the rate limiter's buckets with an
 * injected clock, cache headers in the response phase, the hostile module's
 * fuel/deadline/memory/stack/trap/ABI failures followed by a normal call on
 * the same worker, path rewrites and header edits (seen by later modules),
 * load errors and clearance diagnostics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "payload/payload.h"

#ifndef MS_PAYLOAD_DIR
#define MS_PAYLOAD_DIR "build/examples/payloads"
#endif

/* ---------------------------------------------------------------- fixtures */

static char *wasm_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 512, "%s/%s.wasm", MS_PAYLOAD_DIR, name);
    return p;
}

static bool have(const char *name)
{
    return access(wasm_path(name), R_OK) == 0;
}

#define NEED(name)                                                                                 \
    do {                                                                                           \
        if (!have(name)) {                                                                         \
            fprintf(stderr, "skipping: %s not built\n", wasm_path(name));                          \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

typedef struct fixture {
    ms_module mods[4];
    ms_kv kv[4][4];
    ms_manifest m;
    ms_payload_set *set;
    ms_payload_worker *w;
    ms_payload_result res;
    int64_t now;
    char log[256];
    int nlogs;
} fixture;

static fixture F;

static void mod(size_t i, const char *name, const char *file, ms_phase phase)
{
    ms_module *m = &F.mods[i];
    memset(m, 0, sizeof *m);
    m->name = (char *)name;
    m->wasm = wasm_path(file);
    m->phase = phase;
    m->config.items = F.kv[i];
    m->config.len = 0;
    if (F.m.nmodules < i + 1)
        F.m.nmodules = i + 1;
}

static void conf(size_t i, const char *k, const char *v)
{
    ms_module *m = &F.mods[i];
    F.kv[i][m->config.len].key = (char *)k;
    F.kv[i][m->config.len].value = (char *)v;
    m->config.len++;
}

static int64_t fake_clock(void *user)
{
    (void)user;
    return F.now;
}

static void logger(void *user, const ms_module *m, int level, const char *msg, size_t len)
{
    (void)user;
    snprintf(F.log, sizeof F.log, "%s/%d: %.*s", m->name, level, (int)len, msg);
    F.nlogs++;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    F.m.modules = F.mods;
    ms_payload_result_init(&F.res);
    F.now = 1700000000000;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ms_payload_worker_free(F.w);
    ms_payload_set_free(F.set);
    ms_payload_result_free(&F.res);
    return 0;
}

static void start(const ms_payload_limits *lim)
{
    char why[512];
    F.set = ms_payload_load_all_limits(&F.m, lim, why, sizeof why);
    if (!F.set)
        fail_msg("load: %s", why);
    F.w = ms_payload_worker_new(F.set);
    assert_non_null(F.w);
    ms_payload_worker_set_clock(F.w, fake_clock, NULL);
    ms_payload_worker_set_log(F.w, logger, NULL);
}

#define S(s) ((ms_payload_slice){(s), sizeof(s) - 1})

typedef struct req_b {
    ms_payload_req r;
    ms_payload_header h[8];
} req_b;

static void req_init(req_b *b, const char *method, const char *path, const char *query,
                     const char *client)
{
    memset(b, 0, sizeof *b);
    b->r.method = (ms_payload_slice){method, strlen(method)};
    b->r.path = (ms_payload_slice){path, strlen(path)};
    b->r.query = (ms_payload_slice){query, strlen(query)};
    b->r.client = (ms_payload_slice){client, strlen(client)};
    b->r.headers = b->h;
}

static void req_hdr(req_b *b, const char *n, const char *v)
{
    b->h[b->r.nheaders].name = (ms_payload_slice){n, strlen(n)};
    b->h[b->r.nheaders].value = (ms_payload_slice){v, strlen(v)};
    b->r.nheaders++;
}

static bool slice_is(ms_payload_slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static const ms_payload_slice *block_header(const ms_payload_result *r, const char *name)
{
    for (size_t i = 0; i < r->nblock_headers; i++)
        if (slice_is(r->block_headers[i].name, name))
            return &r->block_headers[i].value;
    return NULL;
}

static ms_payload_err run_path(size_t i, const char *path)
{
    req_b b;
    req_init(&b, "GET", path, "", "127.0.0.1");
    ms_payload_result_reset(&F.res);
    return ms_payload_run_request(F.w, i, &b.r, &F.res);
}

/* ---------------------------------------------------------------- auth */

static void test_auth(void **state)
{
    (void)state;
    NEED("auth");
    mod(0, "auth", "auth", MS_PHASE_REQUEST);
    conf(0, "token", "s3cret");
    start(NULL);

    req_b b;
    req_init(&b, "GET", "/api/x", "", "10.0.0.1");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);
    assert_int_equal(F.res.block_status, 401);
    assert_true(slice_is(F.res.block_body, "Unauthorized\n"));
    const ms_payload_slice *www = block_header(&F.res, "WWW-Authenticate");
    assert_non_null(www);
    assert_true(slice_is(*www, "Bearer realm=\"mothership\""));

    static const char *const bad[] = {"Bearer wrong1", "Bearer s3cre", "Basic s3cret",
                                      "Bearer s3cret ", "Bearer S3cret"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req_init(&b, "GET", "/api/x", "", "10.0.0.1");
        req_hdr(&b, "Authorization", bad[i]);
        ms_payload_result_reset(&F.res);
        assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
        assert_true(F.res.blocked);
    }
    static const char *const good[] = {"Bearer s3cret", "bearer s3cret", "BEARER s3cret"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        req_init(&b, "GET", "/api/x", "", "10.0.0.1");
        req_hdr(&b, "Accept", "*/*");
        req_hdr(&b, "authorization", good[i]);
        ms_payload_result_reset(&F.res);
        assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
        assert_false(F.res.blocked);
        assert_int_equal(F.res.nedits, 0);
    }
    ms_payload_stats st;
    ms_payload_worker_stats(F.w, 0, &st);
    assert_int_equal(st.calls, 9);
    assert_int_equal(st.blocks, 6);
    assert_int_equal(st.traps + st.exhaustions + st.abi_errors, 0);
}

static void test_auth_without_token(void **state)
{
    (void)state;
    NEED("auth");
    mod(0, "auth", "auth", MS_PHASE_REQUEST);
    start(NULL);
    req_b b;
    req_init(&b, "GET", "/", "", "10.0.0.1");
    req_hdr(&b, "Authorization", "Bearer ");
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);
    assert_int_equal(F.res.block_status, 401);
}

/* ---------------------------------------------------------------- rate limiter */

static ms_payload_err rl_call(const char *client)
{
    req_b b;
    req_init(&b, "GET", "/", "", client);
    ms_payload_result_reset(&F.res);
    return ms_payload_run_request(F.w, 0, &b.r, &F.res);
}

static void test_rate_limiter(void **state)
{
    (void)state;
    NEED("rate_limiter");
    mod(0, "ratelimit", "rate_limiter", MS_PHASE_REQUEST);
    conf(0, "rate", "2");
    conf(0, "burst", "3");
    start(NULL);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
        assert_false(F.res.blocked);
    }
    assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);
    assert_int_equal(F.res.block_status, 429);
    const ms_payload_slice *ra = block_header(&F.res, "Retry-After");
    assert_non_null(ra);
    assert_true(slice_is(*ra, "1"));
    assert_true(slice_is(F.res.block_body, "Too Many Requests\n"));

    /* another address has its own bucket */
    assert_int_equal(rl_call("2001:db8::1"), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);

    /* 2/s: after 499 ms still nothing, after 500 ms one token */
    F.now += 499;
    assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);
    F.now += 1;
    assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
    assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);

    /* a long pause refills up to burst, not beyond */
    F.now += 3600 * 1000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
        assert_false(F.res.blocked);
    }
    assert_int_equal(rl_call("203.0.113.7"), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);

    /* many addresses: the table keeps working (evicting the oldest) */
    char addr[32];
    for (int i = 0; i < 6000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(rl_call(addr), MS_PAYLOAD_OK);
        assert_false(F.res.blocked);
    }
    ms_payload_stats st;
    ms_payload_worker_stats(F.w, 0, &st);
    assert_int_equal(st.blocks, 4);
    assert_int_equal(st.traps + st.exhaustions + st.abi_errors + st.instance_errors, 0);
}

static void test_rate_limiter_slow_rate(void **state)
{
    (void)state;
    NEED("rate_limiter");
    mod(0, "ratelimit", "rate_limiter", MS_PHASE_REQUEST);
    conf(0, "rate", "1");
    conf(0, "burst", "1");
    start(NULL);
    assert_int_equal(rl_call("a"), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
    assert_int_equal(rl_call("a"), MS_PAYLOAD_OK);
    assert_true(F.res.blocked);
    assert_true(slice_is(*block_header(&F.res, "Retry-After"), "1"));
    F.now += 1000;
    assert_int_equal(rl_call("a"), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
}

static void test_rate_limiter_bad_config(void **state)
{
    (void)state;
    NEED("rate_limiter");
    mod(0, "ratelimit", "rate_limiter", MS_PHASE_REQUEST);
    conf(0, "rate", "fast");
    start(NULL); /* loads: init runs per worker */
    assert_int_equal(rl_call("a"), MS_PAYLOAD_ERR_INSTANCE);
    assert_non_null(strstr(F.res.error, "init returned 1"));
    assert_true(F.nlogs >= 1);
    assert_non_null(strstr(F.log, "ratelimit/3: config rate and burst"));
    ms_payload_stats st;
    ms_payload_worker_stats(F.w, 0, &st);
    assert_int_equal(st.instance_errors, 1);
}

/* ---------------------------------------------------------------- cache */

static ms_payload_err cache_call(int status, const char *cc)
{
    req_b b;
    req_init(&b, "GET", "/assets/app.js", "", "10.0.0.1");
    ms_payload_header h[2] = {{S("Content-Type"), S("text/javascript")}};
    ms_payload_resp resp = {status, h, 1};
    if (cc) {
        h[1].name = S("cache-control");
        h[1].value = (ms_payload_slice){cc, strlen(cc)};
        resp.nheaders = 2;
    }
    ms_payload_result_reset(&F.res);
    return ms_payload_run_response(F.w, 0, &b.r, &resp, &F.res);
}

static void test_cache(void **state)
{
    (void)state;
    NEED("cache");
    mod(0, "cache", "cache", MS_PHASE_RESPONSE);
    conf(0, "ttl", "3600");
    mod(1, "cache60", "cache", MS_PHASE_RESPONSE);
    mod(2, "cachebad", "cache", MS_PHASE_RESPONSE);
    conf(2, "ttl", "1h");
    start(NULL);

    assert_int_equal(cache_call(200, NULL), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
    assert_int_equal(F.res.nedits, 1);
    assert_int_equal(F.res.edits[0].op, MS_PAYLOAD_SET);
    assert_true(slice_is(F.res.edits[0].name, "Cache-Control"));
    assert_true(slice_is(F.res.edits[0].value, "public, max-age=3600"));
    assert_true(ms_payload_edit_live(&F.res, 0));
    assert_false(ms_payload_keeps_header(&F.res, "cache-control", 13));
    assert_true(ms_payload_keeps_header(&F.res, "Content-Type", 12));

    assert_int_equal(cache_call(200, "no-store"), MS_PAYLOAD_OK);
    assert_int_equal(F.res.nedits, 0);
    assert_int_equal(cache_call(404, NULL), MS_PAYLOAD_OK);
    assert_int_equal(F.res.nedits, 0);

    /* default and bad ttl: 60 */
    for (size_t i = 1; i <= 2; i++) {
        req_b b;
        req_init(&b, "GET", "/", "", "x");
        ms_payload_resp resp = {200, NULL, 0};
        ms_payload_result_reset(&F.res);
        assert_int_equal(ms_payload_run_response(F.w, i, &b.r, &resp, &F.res), MS_PAYLOAD_OK);
        assert_int_equal(F.res.nedits, 1);
        assert_true(slice_is(F.res.edits[0].value, "public, max-age=60"));
    }

    /* the wrong phase is the caller's mistake, reported as such */
    req_b b;
    req_init(&b, "GET", "/", "", "x");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_ERR_INSTANCE);
}

/* ---------------------------------------------------------------- hostile */

static void expect_ok_after(void)
{
    assert_int_equal(run_path(0, "/fine"), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
    assert_string_equal(F.res.error, "");
}

static void test_hostile(void **state)
{
    (void)state;
    NEED("hostile");
    mod(0, "hostile", "hostile", MS_PHASE_REQUEST);
    ms_payload_limits lim;
    ms_payload_limits_default(&lim);
    lim.fuel = 2000000;
    lim.timeout_ms = 10000; /* fuel first, even under ASan */
    lim.max_memory_pages = 64;
    start(&lim);

    expect_ok_after();

    assert_int_equal(run_path(0, "/hostile/loop"), MS_PAYLOAD_ERR_FUEL);
    assert_true(ms_payload_err_is_exhaustion(MS_PAYLOAD_ERR_FUEL));
    assert_non_null(strstr(F.res.error, "module \"hostile\": fuel exhausted"));
    assert_false(F.res.blocked);
    expect_ok_after();

    assert_int_equal(run_path(0, "/hostile/grow"), MS_PAYLOAD_ERR_MEMORY);
    assert_non_null(strstr(F.res.error, "64 pages"));
    expect_ok_after();
    assert_int_equal(run_path(0, "/hostile/grow"), MS_PAYLOAD_ERR_MEMORY);
    expect_ok_after();

    assert_int_equal(run_path(0, "/hostile/deep"), MS_PAYLOAD_ERR_STACK);
    expect_ok_after();

    assert_int_equal(run_path(0, "/hostile/trap"), MS_PAYLOAD_ERR_TRAP);
    assert_non_null(strstr(F.res.error, "unreachable"));
    expect_ok_after();

    assert_int_equal(run_path(0, "/hostile/oob"), MS_PAYLOAD_ERR_ABI);
    assert_non_null(strstr(F.res.error, "outside the guest's memory"));
    expect_ok_after();

    ms_payload_stats st;
    ms_payload_worker_stats(F.w, 0, &st);
    assert_int_equal(st.calls, 13);
    assert_int_equal(st.exhaustions, 4);
    assert_int_equal(st.traps, 1);
    assert_int_equal(st.abi_errors, 1);
    assert_int_equal(st.restarts, 6);
    assert_int_equal(st.instance_errors, 0);
    assert_string_equal(ms_payload_err_name(MS_PAYLOAD_ERR_MEMORY), "memory");
}

static void test_hostile_deadline_and_response(void **state)
{
    (void)state;
    NEED("hostile");
    mod(0, "hostile", "hostile", MS_PHASE_RESPONSE);
    ms_payload_limits lim;
    ms_payload_limits_default(&lim);
    lim.fuel = UINT64_MAX / 2;
    lim.timeout_ms = 20;
    start(&lim);
    req_b b;
    req_init(&b, "GET", "/hostile/loop", "", "x");
    ms_payload_resp resp = {200, NULL, 0};
    assert_int_equal(ms_payload_run_response(F.w, 0, &b.r, &resp, &F.res),
                     MS_PAYLOAD_ERR_DEADLINE);
    assert_non_null(strstr(F.res.error, "deadline"));
    req_init(&b, "GET", "/ok", "", "x");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_response(F.w, 0, &b.r, &resp, &F.res), MS_PAYLOAD_OK);
}

/* ---------------------------------------------------------------- rewrite */

static void test_rewrite_and_edits(void **state)
{
    (void)state;
    NEED("rewrite");
    mod(0, "rewrite", "rewrite", MS_PHASE_REQUEST);
    mod(1, "rewrite2", "rewrite", MS_PHASE_REQUEST);
    start(NULL);

    req_b b;
    req_init(&b, "GET", "/old/users/42", "x=1", "10.0.0.1");
    req_hdr(&b, "X-Debug", "1");
    req_hdr(&b, "Via-Payload", "client");
    req_hdr(&b, "x-debug", "2");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_false(F.res.blocked);
    assert_true(F.res.path_set);
    assert_true(slice_is(F.res.path, "/new/users/42"));
    assert_false(F.res.query_set);
    assert_int_equal(F.res.nedits, 3);
    assert_int_equal(F.res.edits[0].op, MS_PAYLOAD_SET);
    assert_true(slice_is(F.res.edits[0].name, "X-Payload"));
    assert_true(slice_is(F.res.edits[0].value, "rewrite"));
    assert_int_equal(F.res.edits[1].op, MS_PAYLOAD_ADD);
    assert_true(slice_is(F.res.edits[1].name, "Via-Payload"));
    assert_int_equal(F.res.edits[2].op, MS_PAYLOAD_REMOVE);
    assert_true(slice_is(F.res.edits[2].name, "X-Debug"));
    assert_int_equal(F.res.edits[2].value.len, 0);
    assert_false(ms_payload_keeps_header(&F.res, "x-debug", 7));
    assert_true(ms_payload_keeps_header(&F.res, "via-payload", 11));
    assert_true(ms_payload_edit_live(&F.res, 0));
    assert_true(ms_payload_edit_live(&F.res, 1));
    assert_false(ms_payload_edit_live(&F.res, 2));

    /* a second module sees the first one's edits and path */
    assert_int_equal(ms_payload_run_request(F.w, 1, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_true(slice_is(F.res.path, "/new/users/42"));
    assert_int_equal(F.res.nedits, 7);
    assert_true(slice_is(F.res.edits[3].name, "X-Seen"));
    assert_true(slice_is(F.res.edits[3].value, "rewrite"));
    assert_false(ms_payload_edit_live(&F.res, 0)); /* set again by edit 4 */
    assert_true(ms_payload_edit_live(&F.res, 4));
    assert_true(ms_payload_edit_live(&F.res, 1));  /* adds accumulate */
    assert_true(ms_payload_edit_live(&F.res, 5));

    ms_payload_stats st;
    ms_payload_worker_stats(F.w, 0, &st);
    assert_int_equal(st.rewrites, 1);
    assert_int_equal(st.header_edits, 3);

    /* the client's X-Payload is seen too; no rewrite for other paths */
    req_init(&b, "GET", "/other", "", "10.0.0.1");
    req_hdr(&b, "X-Payload", "a");
    req_hdr(&b, "x-payload", "b");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_false(F.res.path_set);
    assert_true(slice_is(F.res.edits[0].name, "X-Seen"));
    assert_true(slice_is(F.res.edits[0].value, "a, b"));
}

/* ---------------------------------------------------------------- result rollback */

static void test_failed_call_keeps_earlier_results(void **state)
{
    (void)state;
    NEED("rewrite");
    NEED("hostile");
    mod(0, "rewrite", "rewrite", MS_PHASE_REQUEST);
    mod(1, "hostile", "hostile", MS_PHASE_REQUEST);
    start(NULL);
    req_b b;
    req_init(&b, "GET", "/old/hostile/trap", "", "x");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_int_equal(F.res.nedits, 3);
    /* hostile sees the rewritten path "/new/hostile/trap": continues */
    assert_int_equal(ms_payload_run_request(F.w, 1, &b.r, &F.res), MS_PAYLOAD_OK);
    req_init(&b, "GET", "/hostile/trap", "", "x");
    ms_payload_result_reset(&F.res);
    assert_int_equal(ms_payload_run_request(F.w, 0, &b.r, &F.res), MS_PAYLOAD_OK);
    assert_int_equal(ms_payload_run_request(F.w, 1, &b.r, &F.res), MS_PAYLOAD_ERR_TRAP);
    assert_int_equal(F.res.nedits, 3);
    assert_true(slice_is(F.res.edits[0].value, "rewrite"));
    assert_int_equal(F.res.module, 1);
}

/* ---------------------------------------------------------------- load errors */

/* (module (import "env" "foo" (func)) (func (export "on_request") (result i32) i32.const 0)) */
static const uint8_t env_foo[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x02, 0x60, 0x00, 0x00, 0x60, 0x00, 0x01, 0x7f,
    0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'f', 'o', 'o', 0x00, 0x00,
    0x03, 0x02, 0x01, 0x01,
    0x07, 0x0e, 0x01, 0x0a, 'o', 'n', '_', 'r', 'e', 'q', 'u', 'e', 's', 't', 0x00, 0x01,
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b,
};

/* same with (import "mothership" "get" (func)): a mistyped import */
static const uint8_t bad_get[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x08, 0x02, 0x60, 0x00, 0x00, 0x60, 0x00, 0x01, 0x7f,
    0x02, 0x12, 0x01, 0x0a, 'm', 'o', 't', 'h', 'e', 'r', 's', 'h', 'i', 'p',
    0x03, 'g', 'e', 't', 0x00, 0x00,
    0x03, 0x02, 0x01, 0x01,
    0x07, 0x0e, 0x01, 0x0a, 'o', 'n', '_', 'r', 'e', 'q', 'u', 'e', 's', 't', 0x00, 0x01,
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b,
};

static void test_load_errors(void **state)
{
    (void)state;
    char why[512];
    ms_module m;
    memset(&m, 0, sizeof m);
    m.name = "x";
    m.wasm = "x.wasm";
    const uint8_t *bytes[1] = {env_foo};
    size_t lens[1] = {sizeof env_foo};
    assert_null(ms_payload_load_buffers(&m, 1, bytes, lens, NULL, why, sizeof why));
    assert_non_null(strstr(why, "module \"x\": imports \"env.foo\", which Mothership does not "
                                "provide"));

    bytes[0] = bad_get;
    lens[0] = sizeof bad_get;
    assert_null(ms_payload_load_buffers(&m, 1, bytes, lens, NULL, why, sizeof why));
    assert_non_null(strstr(why, "imports \"mothership.get\" with type () -> (), but it is "
                                "(i32, i32, i32) -> i32"));

    static const uint8_t junk[] = {0x00, 0x61, 0x73, 0x6d, 0x02};
    bytes[0] = junk;
    lens[0] = sizeof junk;
    assert_null(ms_payload_load_buffers(&m, 1, bytes, lens, NULL, why, sizeof why));
    assert_non_null(strstr(why, "module \"x\": malformed WebAssembly in x.wasm"));

    /* a valid module without on_request: the phase decides what is required */
    static const uint8_t empty[] = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00};
    bytes[0] = empty;
    lens[0] = sizeof empty;
    assert_null(ms_payload_load_buffers(&m, 1, bytes, lens, NULL, why, sizeof why));
    assert_string_equal(why, "module \"x\": missing export \"on_request\" (phase = \"request\")");

    /* an empty set is fine */
    ms_payload_set *s = ms_payload_load_buffers(NULL, 0, NULL, NULL, NULL, why, sizeof why);
    assert_non_null(s);
    assert_int_equal(ms_payload_count(s), 0);
    ms_payload_worker *w = ms_payload_worker_new(s);
    assert_non_null(w);
    ms_payload_worker_free(w);
    ms_payload_set_free(s);
}

static void test_check_diags(void **state)
{
    (void)state;
    NEED("auth");
    NEED("cache");
    mod(0, "auth", "auth", MS_PHASE_RESPONSE);  /* auth has no on_response */
    F.mods[0].wasm_pos = (ms_pos){12, 8};
    mod(1, "cache", "cache", MS_PHASE_RESPONSE); /* fine */
    mod(2, "gone", "does-not-exist", MS_PHASE_REQUEST);
    F.mods[2].wasm_pos = (ms_pos){20, 8};
    ms_diags d;
    ms_diags_init(&d, "ship-manifest.toml");
    assert_int_equal(ms_payload_check(&F.m, &d), 2);
    assert_int_equal(ms_diags_count(&d), 2);
    assert_int_equal(d.items[0].line, 12);
    assert_string_equal(d.items[0].msg,
                        "module \"auth\": missing export \"on_response\" (phase = \"response\")");
    assert_int_equal(d.items[1].line, 20);
    assert_non_null(strstr(d.items[1].msg, "module \"gone\": cannot read"));
    ms_diags_free(&d);

    char why[512];
    assert_null(ms_payload_load_all(&F.m, why, sizeof why));
    assert_non_null(strstr(why, "missing export \"on_response\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_without_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limiter_slow_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limiter_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_deadline_and_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_and_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_call_keeps_earlier_results, setup, teardown),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test_setup_teardown(test_check_diags, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
