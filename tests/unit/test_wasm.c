/* test_wasm.c - cmocka tests for the WebAssembly interpreter's API
 * (src/payload/wasm/wasm.h): sandbox limits (fuel, deadline, memory page
 * cap, call depth, value stack), host function calls, memory access from
 * the host, traps, and load errors.
 *
 * The test module (built from this WAT with wat2wasm, bytes below):
 *   (module
 *     (import "env" "add" (func $add (param i32 i32) (result i32)))
 *     (memory (export "mem") 1 100)
 *     (func (export "spin") (loop (br 0)))
 *     (func $rec (export "rec") (call $rec))
 *     (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
 *     (func (export "call_add") (param i32 i32) (result i32)
 *       (call $add (local.get 0) (local.get 1)))
 *     (func (export "count") (param i32) (result i32) (local $acc i32)
 *       (block (loop (br_if 1 (i32.eqz (local.get 0)))
 *         (local.set $acc (i32.add (local.get $acc) (i32.const 1)))
 *         (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
 *         (br 0)))
 *       (local.get $acc))
 *     (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
 *     (func (export "div") (param i32 i32) (result i32)
 *       (i32.div_s (local.get 0) (local.get 1)))
 *     (func $deep (export "deep") (param i32) (result i32)
 *       (call $deep (i32.add (local.get 0) (i32.const 1))))
 *     (table $t 1 funcref)
 *     (func (export "tgrow") (param i32) (result i32)
 *       (table.grow $t (ref.null func) (local.get 0)))
 *     (func (export "id_ext") (param externref) (result externref) (local.get 0)))
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "payload/wasm/wasm.h"

static const uint8_t test_wasm[] = {
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x19, 0x05, 0x60,
  0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00, 0x60, 0x01, 0x7f, 0x01,
  0x7f, 0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x01, 0x6f, 0x01, 0x6f, 0x02,
  0x0b, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00,
  0x03, 0x0b, 0x0a, 0x01, 0x01, 0x02, 0x00, 0x02, 0x03, 0x00, 0x02, 0x02,
  0x04, 0x04, 0x04, 0x01, 0x70, 0x00, 0x01, 0x05, 0x04, 0x01, 0x01, 0x01,
  0x64, 0x07, 0x54, 0x0b, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x04, 0x73,
  0x70, 0x69, 0x6e, 0x00, 0x01, 0x03, 0x72, 0x65, 0x63, 0x00, 0x02, 0x04,
  0x67, 0x72, 0x6f, 0x77, 0x00, 0x03, 0x08, 0x63, 0x61, 0x6c, 0x6c, 0x5f,
  0x61, 0x64, 0x64, 0x00, 0x04, 0x05, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x00,
  0x05, 0x05, 0x73, 0x74, 0x6f, 0x72, 0x65, 0x00, 0x06, 0x03, 0x64, 0x69,
  0x76, 0x00, 0x07, 0x04, 0x64, 0x65, 0x65, 0x70, 0x00, 0x08, 0x05, 0x74,
  0x67, 0x72, 0x6f, 0x77, 0x00, 0x09, 0x06, 0x69, 0x64, 0x5f, 0x65, 0x78,
  0x74, 0x00, 0x0a, 0x0a, 0x6b, 0x0a, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00,
  0x0b, 0x0b, 0x04, 0x00, 0x10, 0x02, 0x0b, 0x06, 0x00, 0x20, 0x00, 0x40,
  0x00, 0x0b, 0x08, 0x00, 0x20, 0x00, 0x20, 0x01, 0x10, 0x00, 0x0b, 0x21,
  0x01, 0x01, 0x7f, 0x02, 0x40, 0x03, 0x40, 0x20, 0x00, 0x45, 0x0d, 0x01,
  0x20, 0x01, 0x41, 0x01, 0x6a, 0x21, 0x01, 0x20, 0x00, 0x41, 0x01, 0x6b,
  0x21, 0x00, 0x0c, 0x00, 0x0b, 0x0b, 0x20, 0x01, 0x0b, 0x09, 0x00, 0x20,
  0x00, 0x20, 0x01, 0x36, 0x02, 0x00, 0x0b, 0x07, 0x00, 0x20, 0x00, 0x20,
  0x01, 0x6d, 0x0b, 0x09, 0x00, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x10, 0x08,
  0x0b, 0x09, 0x00, 0xd0, 0x70, 0x20, 0x00, 0xfc, 0x0f, 0x00, 0x0b, 0x04,
  0x00, 0x20, 0x00, 0x0b
};

/* (module (memory 20)) */
static const uint8_t big_mem_wasm[] = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00,
                                       0x00, 0x05, 0x03, 0x01, 0x00, 0x14};

typedef struct fixture {
    wasm_module *mod;
    wasm_store *store;
    wasm_instance *inst;
    wasm_func *add;
    int host_calls;
    bool host_fail;
    bool reenter;
} fixture;

static wasm_trap host_add(void *user, wasm_instance *caller, const wasm_val *args,
                          wasm_val *results)
{
    fixture *f = user;
    f->host_calls++;
    if (f->host_fail)
        return WASM_TRAP_HOST;
    assert_non_null(caller);
    if (f->reenter) {
        /* call back into the guest from inside a host function */
        wasm_val a = args[0], r;
        wasm_trap t = wasm_call(f->store, wasm_instance_func(f->inst, "count"), &a, 1, &r, 1, NULL);
        if (t != WASM_OK)
            return t;
        results[0].of.i32 = r.of.i32 + args[1].of.i32;
        return WASM_OK;
    }
    results[0].of.i32 = args[0].of.i32 + args[1].of.i32;
    return WASM_OK;
}

static bool resolve(void *user, uint32_t index, const char *module, const char *name,
                    wasm_extern_kind kind, wasm_extern *out)
{
    fixture *f = user;
    (void)index;
    if (strcmp(module, "env") == 0 && strcmp(name, "add") == 0 && kind == WASM_EXTERN_FUNC) {
        out->kind = WASM_EXTERN_FUNC;
        out->of.func = f->add;
        return true;
    }
    return false;
}

static fixture *setup_with(const wasm_limits *lim)
{
    static fixture fx;
    memset(&fx, 0, sizeof fx);
    char err[256];
    fx.mod = wasm_module_load(test_wasm, sizeof test_wasm, err, sizeof err, NULL);
    assert_non_null(fx.mod);
    fx.store = wasm_store_new(lim);
    assert_non_null(fx.store);
    static const wasm_valtype p[2] = {WASM_I32, WASM_I32}, r[1] = {WASM_I32};
    fx.add = wasm_func_new_host(fx.store, p, 2, r, 1, host_add, &fx);
    assert_non_null(fx.add);
    assert_int_equal(wasm_instantiate(fx.store, fx.mod, resolve, &fx, &fx.inst, err, sizeof err),
                     WASM_INST_OK);
    return &fx;
}

static int setup(void **state)
{
    *state = setup_with(NULL);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wasm_store_free(f->store);
    wasm_module_free(f->mod);
    return 0;
}

static wasm_val i32v(uint32_t x)
{
    wasm_val v;
    memset(&v, 0, sizeof v);
    v.type = WASM_I32;
    v.of.i32 = x;
    return v;
}

static void test_fuel_exhaustion(void **state)
{
    fixture *f = *state;
    wasm_limits lim = {.fuel = 10000};
    wasm_trap t = wasm_call(f->store, wasm_instance_func(f->inst, "spin"), NULL, 0, NULL, 0, &lim);
    assert_int_equal(t, WASM_TRAP_FUEL);
    assert_true(wasm_trap_is_exhaustion(t));
    assert_true(wasm_store_fuel_used(f->store) <= 10000);
    /* enough fuel: a bounded loop completes and reports what it used */
    wasm_val arg = i32v(100), res;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "count"), &arg, 1, &res, 1,
                               &lim),
                     WASM_OK);
    assert_int_equal(res.of.i32, 100);
    assert_true(wasm_store_fuel_used(f->store) > 100);
    assert_true(wasm_store_fuel_used(f->store) < 10000);
    /* the same budget is too small for a longer loop */
    arg = i32v(100000);
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "count"), &arg, 1, &res, 1,
                               &lim),
                     WASM_TRAP_FUEL);
    /* and the instance is still usable afterwards */
    arg = i32v(5);
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "count"), &arg, 1, &res, 1,
                               NULL),
                     WASM_OK);
    assert_int_equal(res.of.i32, 5);
}

static void test_deadline(void **state)
{
    fixture *f = *state;
    wasm_limits lim = {.timeout_ns = 20 * 1000 * 1000}; /* 20 ms, unlimited fuel */
    wasm_trap t = wasm_call(f->store, wasm_instance_func(f->inst, "spin"), NULL, 0, NULL, 0, &lim);
    assert_int_equal(t, WASM_TRAP_DEADLINE);
    assert_string_equal(wasm_trap_message(t), "deadline exceeded");
}

static void test_memory_page_cap(void **state)
{
    fixture *f = *state;
    wasm_func *grow = wasm_instance_func(f->inst, "grow");
    wasm_limits lim = {.max_memory_pages = 4};
    wasm_val arg = i32v(2), res;
    assert_int_equal(wasm_call(f->store, grow, &arg, 1, &res, 1, &lim), WASM_OK);
    assert_int_equal(res.of.i32, 1); /* old size */
    arg = i32v(2);
    assert_int_equal(wasm_call(f->store, grow, &arg, 1, &res, 1, &lim), WASM_OK);
    assert_int_equal(res.of.i32, (uint32_t)-1); /* 5 pages > cap 4 */
    assert_int_equal(wasm_memory_size(wasm_instance_memory(f->inst)), 3 * 65536);

    /* the store cap also refuses oversized memories at instantiation */
    wasm_limits small = {.max_memory_pages = 10};
    wasm_store *s = wasm_store_new(&small);
    char err[256];
    wasm_module *m = wasm_module_load(big_mem_wasm, sizeof big_mem_wasm, err, sizeof err, NULL);
    assert_non_null(m);
    wasm_instance *inst;
    assert_int_not_equal(wasm_instantiate(s, m, NULL, NULL, &inst, err, sizeof err), WASM_INST_OK);
    assert_null(inst);
    wasm_store_free(s);
    wasm_module_free(m);
}

static void test_call_depth(void **state)
{
    fixture *f = *state;
    wasm_limits lim = {.max_call_depth = 50};
    wasm_trap t = wasm_call(f->store, wasm_instance_func(f->inst, "rec"), NULL, 0, NULL, 0, &lim);
    assert_int_equal(t, WASM_TRAP_CALL_DEPTH);
    assert_string_equal(wasm_trap_message(t), "call stack exhausted");
    /* default depth also ends in a trap, not a crash */
    t = wasm_call(f->store, wasm_instance_func(f->inst, "rec"), NULL, 0, NULL, 0, NULL);
    assert_true(t == WASM_TRAP_CALL_DEPTH || t == WASM_TRAP_VALUE_STACK);
}

static void test_value_stack(void **state)
{
    (void)state;
    wasm_limits lim = {.max_stack_slots = 64, .max_call_depth = 100000};
    fixture *f = setup_with(&lim);
    wasm_val arg = i32v(0), res;
    wasm_trap t = wasm_call(f->store, wasm_instance_func(f->inst, "deep"), &arg, 1, &res, 1, NULL);
    assert_int_equal(t, WASM_TRAP_VALUE_STACK);
    assert_true(wasm_trap_is_exhaustion(t));
    void *st = f;
    teardown(&st);
}

static void test_host_function(void **state)
{
    fixture *f = *state;
    wasm_val args[2] = {i32v(40), i32v(2)}, res;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               NULL),
                     WASM_OK);
    assert_int_equal(res.type, WASM_I32);
    assert_int_equal(res.of.i32, 42);
    assert_int_equal(f->host_calls, 1);
    /* a failing host function becomes a trap of the guest call */
    f->host_fail = true;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               NULL),
                     WASM_TRAP_HOST);
    /* wrong argument types are refused */
    wasm_val bad = i32v(1);
    bad.type = WASM_I64;
    args[0] = bad;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               NULL),
                     WASM_TRAP_BAD_CALL);
}

static void test_reentrant_host_call(void **state)
{
    fixture *f = *state;
    f->reenter = true;
    wasm_val args[2] = {i32v(7), i32v(100)}, res;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               NULL),
                     WASM_OK);
    assert_int_equal(res.of.i32, 107);
    /* the fuel of the outer call also bounds the nested one */
    wasm_limits lim = {.fuel = 1000};
    args[0] = i32v(1000000);
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               &lim),
                     WASM_TRAP_FUEL);
    /* and the store is back to normal afterwards */
    f->reenter = false;
    args[0] = i32v(1);
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "call_add"), args, 2, &res, 1,
                               NULL),
                     WASM_OK);
    assert_int_equal(res.of.i32, 101);
}

static void test_memory_and_traps(void **state)
{
    fixture *f = *state;
    wasm_memory *mem = wasm_instance_memory(f->inst);
    assert_non_null(mem);
    wasm_val args[2] = {i32v(16), i32v(0x11223344)};
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "store"), args, 2, NULL, 0,
                               NULL),
                     WASM_OK);
    uint8_t buf[4];
    assert_true(wasm_memory_read(mem, 16, buf, 4));
    assert_int_equal(buf[0], 0x44);
    assert_int_equal(buf[3], 0x11);
    assert_false(wasm_memory_read(mem, 65534, buf, 4));
    assert_true(wasm_memory_write(mem, 0, "hi", 2));
    args[0] = i32v(65533);
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "store"), args, 2, NULL, 0,
                               NULL),
                     WASM_TRAP_MEMORY_OOB);
    wasm_val d[2] = {i32v(1), i32v(0)}, res;
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "div"), d, 2, &res, 1, NULL),
                     WASM_TRAP_DIV_ZERO);
    assert_string_equal(wasm_trap_message(WASM_TRAP_DIV_ZERO), "integer divide by zero");
}

static void test_table_cap_and_refs(void **state)
{
    fixture *f = *state;
    wasm_func *tg = wasm_instance_func(f->inst, "tgrow");
    wasm_limits lim = {.max_table_elems = 10};
    wasm_val arg = i32v(5), res;
    assert_int_equal(wasm_call(f->store, tg, &arg, 1, &res, 1, &lim), WASM_OK);
    assert_int_equal(res.of.i32, 1);
    assert_int_equal(wasm_call(f->store, tg, &arg, 1, &res, 1, &lim), WASM_OK);
    assert_int_equal(res.of.i32, (uint32_t)-1); /* 11 > cap 10 */
    wasm_extern ex;
    assert_true(wasm_instance_export(f->inst, "tgrow", &ex));
    assert_int_equal(ex.kind, WASM_EXTERN_FUNC);
    assert_false(wasm_instance_export(f->inst, "nope", &ex));
    /* externref values pass through the guest unchanged; 0 is null */
    wasm_val e = {.type = WASM_EXTERNREF, .of.ext = (uintptr_t)0xfeed};
    assert_int_equal(wasm_call(f->store, wasm_instance_func(f->inst, "id_ext"), &e, 1, &res, 1,
                               NULL),
                     WASM_OK);
    assert_int_equal(res.type, WASM_EXTERNREF);
    assert_int_equal(res.of.ext, 0xfeed);
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[256];
    bool malformed = false;
    static const uint8_t junk[] = {0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00};
    assert_null(wasm_module_load(junk, sizeof junk, err, sizeof err, &malformed));
    assert_true(malformed);
    assert_string_equal(err, "unknown binary version");
    /* (func (result i32)) with an empty body: a type error */
    static const uint8_t invalid[] = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05,
                                      0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01, 0x00, 0x0a,
                                      0x04, 0x01, 0x02, 0x00, 0x0b};
    assert_null(wasm_module_load(invalid, sizeof invalid, err, sizeof err, &malformed));
    assert_false(malformed);
    assert_string_equal(err, "type mismatch");
    /* unknown import: a link error naming it */
    wasm_module *m = wasm_module_load(test_wasm, sizeof test_wasm, err, sizeof err, NULL);
    wasm_store *s = wasm_store_new(NULL);
    wasm_instance *inst;
    assert_int_equal(wasm_instantiate(s, m, NULL, NULL, &inst, err, sizeof err),
                     WASM_INST_LINK_ERROR);
    assert_non_null(strstr(err, "env.add"));
    wasm_store_free(s);
    wasm_module_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fuel_exhaustion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_page_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_depth, setup, teardown),
        cmocka_unit_test(test_value_stack),
        cmocka_unit_test_setup_teardown(test_host_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_host_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_and_traps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_cap_and_refs, setup, teardown),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests_name("wasm", tests, NULL, NULL);
}
