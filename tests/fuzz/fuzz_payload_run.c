/* fuzz_payload_run.c - libFuzzer target for the payload layer
 * (src/payload/payload.h): the input is one flag byte (bit 0: response
 * phase) followed by a WebAssembly module.  It is loaded and checked like a
 * manifest's module, instantiated on a worker (init run) with the payload
 * ABI's host functions, and its on_request/on_response is called a few times
 * with a fake request (headers, query, config) under small limits, the
 * result reused between calls as the proxy does.  Whatever the guest does
 * with the ABI must end in a result or an error kind: never a crash, hang or
 * leak.  Seeds: tests/fuzz/corpus/payload_run (the examples, flag byte
 * first). */
#include "payload/payload.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int64_t fixed_clock(void *user)
{
    (void)user;
    return 1700000000000;
}

static void quiet_log(void *user, const ms_module *m, int level, const char *msg, size_t len)
{
    (void)user;
    (void)m;
    (void)level;
    (void)msg;
    (void)len;
}

#define SL(s) {(s), sizeof(s) - 1}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool response = data[0] & 1;
    ms_kv kv[3] = {{"token", "s3cret"}, {"ttl", "60"}, {"rate", "5"}};
    ms_module mod;
    memset(&mod, 0, sizeof mod);
    mod.name = "fuzz";
    mod.wasm = "fuzz.wasm";
    mod.phase = response ? MS_PHASE_RESPONSE : MS_PHASE_REQUEST;
    mod.config.items = kv;
    mod.config.len = 3;

    ms_payload_limits lim;
    ms_payload_limits_default(&lim);
    lim.fuel = 200000;
    lim.timeout_ms = 500;
    lim.max_memory_pages = 32;
    lim.max_call_depth = 128;
    lim.max_stack_slots = 8192;
    lim.max_table_elems = 1024;

    const uint8_t *bytes[1] = {data + 1};
    size_t lens[1] = {size - 1};
    char why[256];
    ms_payload_set *s = ms_payload_load_buffers(&mod, 1, bytes, lens, &lim, why, sizeof why);
    if (!s)
        return 0;
    ms_payload_worker *w = ms_payload_worker_new(s);
    if (!w) {
        ms_payload_set_free(s);
        return 0;
    }
    ms_payload_worker_set_clock(w, fixed_clock, NULL);
    ms_payload_worker_set_log(w, quiet_log, NULL);

    static const ms_payload_header hdrs[] = {
        {SL("Host"), SL("example.com")},
        {SL("Authorization"), SL("Bearer s3cret")},
        {SL("X-Debug"), SL("1")},
        {SL("x-debug"), SL("2")},
    };
    static const char *const paths[] = {"/", "/old/a", "/hostile/loop", "/hostile/grow",
                                        "/hostile/oob"};
    static const ms_payload_header rh[] = {{SL("Content-Type"), SL("text/html")}};
    ms_payload_resp resp = {200, rh, 1};
    ms_payload_result res;
    ms_payload_result_init(&res);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        ms_payload_req req = {
            .method = SL("GET"),
            .path = {paths[i], strlen(paths[i])},
            .query = SL("a=1&b=2"),
            .client = SL("203.0.113.7"),
            .headers = hdrs,
            .nheaders = sizeof hdrs / sizeof hdrs[0],
        };
        ms_payload_result_reset(&res);
        ms_payload_err e = response ? ms_payload_run_response(w, 0, &req, &resp, &res)
                                    : ms_payload_run_request(w, 0, &req, &res);
        /* the result must be self-consistent */
        if (e == MS_PAYLOAD_OK) {
            for (size_t k = 0; k < res.nedits; k++) {
                if (res.edits[k].name.len == 0)
                    __builtin_trap();
                (void)ms_payload_edit_live(&res, k);
                (void)ms_payload_keeps_header(&res, res.edits[k].name.ptr, res.edits[k].name.len);
            }
            if (res.blocked && (res.block_status < 200 || res.block_status > 599))
                __builtin_trap();
            if (res.path_set && (res.path.len == 0 || res.path.ptr[0] != '/'))
                __builtin_trap();
        } else if (res.error[0] == 0) {
            __builtin_trap();
        }
    }
    ms_payload_stats st;
    ms_payload_worker_stats(w, 0, &st);
    ms_payload_result_free(&res);
    ms_payload_worker_free(w);
    ms_payload_set_free(s);
    return 0;
}
