/* bench_wasm.c - microbenchmarks of the WebAssembly interpreter
 * (src/payload/wasm): ns per instruction on a tight loop, and a typical
 * payload call end to end (host writes the request path into guest memory,
 * calls the export, the guest checks a path prefix and calls a host
 * "set_header" function once).  Prints one line per benchmark.
 *
 * Guest (built from this WAT with wat2wasm, bytes below):
 *   (module
 *     (import "env" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
 *     (memory (export "memory") 1)
 *     (data (i32.const 64) "/api/") (data (i32.const 80) "x-routed") (data (i32.const 96) "api")
 *     (func (export "loop") (param $n i32) (result i32) (local $acc i32)
 *       (block (loop
 *         (br_if 1 (i32.eqz (local.get $n)))
 *         (local.set $acc (i32.add (local.get $acc) (local.get $n)))
 *         (local.set $n (i32.sub (local.get $n) (i32.const 1)))
 *         (br 0)))
 *       (local.get $acc))
 *     (func (export "on_request") (param $len i32) (result i32) (local $i i32)
 *       (if (i32.lt_u (local.get $len) (i32.const 5)) (then (return (i32.const 0))))
 *       (block $no (loop $cmp
 *         (br_if $no (i32.ne (i32.load8_u (local.get $i)) (i32.load8_u offset=64 (local.get $i))))
 *         (local.set $i (i32.add (local.get $i) (i32.const 1)))
 *         (br_if $cmp (i32.lt_u (local.get $i) (i32.const 5))))
 *         (drop (call $set_header (i32.const 80) (i32.const 8) (i32.const 96) (i32.const 3)))
 *         (return (i32.const 1)))
 *       (i32.const 0)))
 */
#include "payload/wasm/wasm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint8_t bench_wasm[] = {
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x0e, 0x02, 0x60,
  0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x01, 0x7f, 0x01, 0x7f,
  0x02, 0x12, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x0a, 0x73, 0x65, 0x74, 0x5f,
  0x68, 0x65, 0x61, 0x64, 0x65, 0x72, 0x00, 0x00, 0x03, 0x03, 0x02, 0x01,
  0x01, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x1e, 0x03, 0x06, 0x6d, 0x65,
  0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x04, 0x6c, 0x6f, 0x6f, 0x70, 0x00,
  0x01, 0x0a, 0x6f, 0x6e, 0x5f, 0x72, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74,
  0x00, 0x02, 0x0a, 0x66, 0x02, 0x21, 0x01, 0x01, 0x7f, 0x02, 0x40, 0x03,
  0x40, 0x20, 0x00, 0x45, 0x0d, 0x01, 0x20, 0x01, 0x20, 0x00, 0x6a, 0x21,
  0x01, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, 0x0c, 0x00, 0x0b, 0x0b,
  0x20, 0x01, 0x0b, 0x42, 0x01, 0x01, 0x7f, 0x20, 0x00, 0x41, 0x05, 0x49,
  0x04, 0x40, 0x41, 0x00, 0x0f, 0x0b, 0x02, 0x40, 0x03, 0x40, 0x20, 0x01,
  0x2d, 0x00, 0x00, 0x20, 0x01, 0x2d, 0x00, 0x40, 0x47, 0x0d, 0x01, 0x20,
  0x01, 0x41, 0x01, 0x6a, 0x21, 0x01, 0x20, 0x01, 0x41, 0x05, 0x49, 0x0d,
  0x00, 0x0b, 0x41, 0xd0, 0x00, 0x41, 0x08, 0x41, 0xe0, 0x00, 0x41, 0x03,
  0x10, 0x00, 0x1a, 0x41, 0x01, 0x0f, 0x0b, 0x41, 0x00, 0x0b, 0x0b, 0x23,
  0x03, 0x00, 0x41, 0xc0, 0x00, 0x0b, 0x05, 0x2f, 0x61, 0x70, 0x69, 0x2f,
  0x00, 0x41, 0xd0, 0x00, 0x0b, 0x08, 0x78, 0x2d, 0x72, 0x6f, 0x75, 0x74,
  0x65, 0x64, 0x00, 0x41, 0xe0, 0x00, 0x0b, 0x03, 0x61, 0x70, 0x69
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct hdr {
    char name[32], value[32];
    unsigned sets;
} hdr;

static wasm_trap set_header(void *user, wasm_instance *caller, const wasm_val *args,
                            wasm_val *results)
{
    hdr *h = user;
    wasm_memory *mem = wasm_instance_memory(caller);
    uint32_t nl = args[1].of.i32, vl = args[3].of.i32;
    if (nl >= sizeof h->name || vl >= sizeof h->value ||
        !wasm_memory_read(mem, args[0].of.i32, h->name, nl) ||
        !wasm_memory_read(mem, args[2].of.i32, h->value, vl))
        return WASM_TRAP_HOST;
    h->name[nl] = 0;
    h->value[vl] = 0;
    h->sets++;
    results[0].of.i32 = 0;
    return WASM_OK;
}

static wasm_func *g_set_header;

static bool resolve(void *user, uint32_t index, const char *module, const char *name,
                    wasm_extern_kind kind, wasm_extern *out)
{
    (void)user;
    (void)index;
    if (strcmp(module, "env") || strcmp(name, "set_header") || kind != WASM_EXTERN_FUNC)
        return false;
    out->kind = WASM_EXTERN_FUNC;
    out->of.func = g_set_header;
    return true;
}

int main(int argc, char **argv)
{
    uint32_t loop_n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 50000000u;
    uint32_t calls = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 1000000u;
    char err[256];
    wasm_module *m = wasm_module_load(bench_wasm, sizeof bench_wasm, err, sizeof err, NULL);
    if (!m) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    wasm_store *s = wasm_store_new(NULL);
    hdr h;
    memset(&h, 0, sizeof h);
    static const wasm_valtype p4[4] = {WASM_I32, WASM_I32, WASM_I32, WASM_I32};
    static const wasm_valtype r1[1] = {WASM_I32};
    g_set_header = wasm_func_new_host(s, p4, 4, r1, 1, set_header, &h);
    wasm_instance *inst;
    if (wasm_instantiate(s, m, resolve, NULL, &inst, err, sizeof err) != WASM_INST_OK) {
        fprintf(stderr, "instantiate: %s\n", err);
        return 1;
    }

    /* 1. tight loop, with per-call fuel and deadline limits on (as in production) */
    wasm_limits lim = {.fuel = 10000000000ull, .timeout_ns = 60ull * 1000000000ull};
    wasm_val arg = {.type = WASM_I32, .of.i32 = loop_n}, res;
    uint64_t t0 = now_ns();
    wasm_trap t = wasm_call(s, wasm_instance_func(inst, "loop"), &arg, 1, &res, 1, &lim);
    uint64_t t1 = now_ns();
    uint64_t ins = wasm_store_fuel_used(s);
    if (t != WASM_OK) {
        fprintf(stderr, "loop trapped: %s\n", wasm_trap_message(t));
        return 1;
    }
    /* fuel counts executed Wasm instructions (superinstructions charge what
     * they replace; block/loop/end cost nothing): 12 per iteration here */
    printf("bench-wasm: tight loop: %llu wasm instructions in %.1f ms: %.2f ns/instruction\n",
           (unsigned long long)ins, (double)(t1 - t0) / 1e6, (double)(t1 - t0) / (double)ins);

    /* 2. typical payload call, end to end */
    wasm_func *on_req = wasm_instance_func(inst, "on_request");
    wasm_memory *mem = wasm_instance_memory(inst);
    static const char *const paths[2] = {"/api/users/42", "/static/app.js"};
    wasm_limits plim = {.fuel = 100000, .timeout_ns = 10000000};
    unsigned hits = 0;
    t0 = now_ns();
    for (uint32_t i = 0; i < calls; i++) {
        const char *path = paths[i & 1];
        size_t len = strlen(path);
        wasm_memory_write(mem, 0, path, len);
        arg.of.i32 = (uint32_t)len;
        if (wasm_call(s, on_req, &arg, 1, &res, 1, &plim) != WASM_OK)
            return 1;
        hits += res.of.i32;
    }
    t1 = now_ns();
    printf("bench-wasm: typical payload call (path prefix check + one header set): %.0f ns/call "
           "(%u calls, %u header sets)\n",
           (double)(t1 - t0) / calls, calls, h.sets);
    (void)hits;
    wasm_store_free(s);
    wasm_module_free(m);
    return 0;
}
