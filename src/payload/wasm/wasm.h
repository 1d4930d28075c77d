/* wasm.h - public API of Mothership's WebAssembly interpreter.
 *
 * WebAssembly 2.0 without SIMD: MVP, sign extension, non-trapping float-to-int,
 * multi-value, bulk memory, reference types.  Modules are decoded, validated
 * and lowered to an internal form once (wasm_module_load); a loaded module is
 * immutable and may be shared read-only between threads.  Everything that is
 * mutable at run time (instances, memories, tables, globals, host functions,
 * the value and call stacks) lives in a wasm_store, which belongs to one
 * thread (one per data-plane worker).  Instances of the same store may import
 * each other's exports; freeing the store frees all of it at once.
 *
 * Typical payload use: load the module once, create a store and instantiate
 * per worker, then call exports per request with wasm_call() under limits.
 * A call allocates nothing.
 */
#ifndef MS_WASM_H
#define MS_WASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum wasm_valtype {
    WASM_I32 = 0x7f,
    WASM_I64 = 0x7e,
    WASM_F32 = 0x7d,
    WASM_F64 = 0x7c,
    WASM_FUNCREF = 0x70,
    WASM_EXTERNREF = 0x6f,
} wasm_valtype;

typedef enum wasm_extern_kind {
    WASM_EXTERN_FUNC = 0,
    WASM_EXTERN_TABLE = 1,
    WASM_EXTERN_MEMORY = 2,
    WASM_EXTERN_GLOBAL = 3,
} wasm_extern_kind;

/* Outcome of a call.  Every guest misbehaviour ends in one of these. */
typedef enum wasm_trap {
    WASM_OK = 0,
    WASM_TRAP_UNREACHABLE,      /* "unreachable" */
    WASM_TRAP_MEMORY_OOB,       /* "out of bounds memory access" */
    WASM_TRAP_TABLE_OOB,        /* "out of bounds table access" */
    WASM_TRAP_UNDEFINED_ELEMENT,/* "undefined element" */
    WASM_TRAP_UNINIT_ELEMENT,   /* "uninitialized element" */
    WASM_TRAP_INDIRECT_TYPE,    /* "indirect call type mismatch" */
    WASM_TRAP_DIV_ZERO,         /* "integer divide by zero" */
    WASM_TRAP_INT_OVERFLOW,     /* "integer overflow" */
    WASM_TRAP_INVALID_CONV,     /* "invalid conversion to integer" */
    WASM_TRAP_CALL_DEPTH,       /* "call stack exhausted" (frame limit) */
    WASM_TRAP_VALUE_STACK,      /* "call stack exhausted" (value stack limit) */
    WASM_TRAP_FUEL,             /* "fuel exhausted" (instruction budget) */
    WASM_TRAP_DEADLINE,         /* "deadline exceeded" (wall clock) */
    WASM_TRAP_HOST,             /* a host function reported failure */
    WASM_TRAP_BAD_CALL,         /* host misuse: wrong argument count/types */
} wasm_trap;

const char *wasm_trap_message(wasm_trap t);
/* True for the traps a sandbox limit produces (fuel, deadline, stacks). */
bool wasm_trap_is_exhaustion(wasm_trap t);

typedef struct wasm_module wasm_module;
typedef struct wasm_store wasm_store;
typedef struct wasm_instance wasm_instance;
typedef struct wasm_func wasm_func;
typedef struct wasm_table wasm_table;
typedef struct wasm_memory wasm_memory;
typedef struct wasm_global wasm_global;

/* A typed value.  References: func is NULL for ref.null func; ext is any
 * host word, 0 meaning ref.null extern. */
typedef struct wasm_val {
    wasm_valtype type;
    union {
        uint32_t i32;
        uint64_t i64;
        float f32;
        double f64;
        uint32_t f32_bits;
        uint64_t f64_bits;
        wasm_func *func;
        uintptr_t ext;
    } of;
} wasm_val;

typedef struct wasm_extern {
    wasm_extern_kind kind;
    union {
        wasm_func *func;
        wasm_table *table;
        wasm_memory *memory;
        wasm_global *global;
    } of;
} wasm_extern;

/* Sandbox limits.  A zero field means "the store's default" (for the store
 * defaults themselves: fuel 0 = unlimited, timeout 0 = none).
 * fuel counts executed Wasm instructions (block, loop, end and nop are
 * free); the trap may come up to 3 instructions late because fused
 * instruction pairs/triples are charged as a unit.  The deadline is checked
 * every 65536 instructions.  Host functions run outside both budgets, except
 * that a host function's nested wasm_call draws from the same fuel and
 * deadline.  Memory and table caps apply to memory.grow/table.grow during
 * the call; the store's caps also apply at instantiation. */
typedef struct wasm_limits {
    uint64_t fuel;             /* instruction budget per call */
    uint64_t timeout_ns;       /* wall-clock budget per call */
    uint32_t max_call_depth;   /* frames */
    uint32_t max_stack_slots;  /* 64-bit value-stack slots */
    uint32_t max_memory_pages; /* cap for every memory (64 KiB pages) */
    uint32_t max_table_elems;  /* cap for every table */
} wasm_limits;

/* ---- modules ---- */

/* Decode, validate and lower to the internal form.  The bytes are copied.
 * On failure returns NULL and writes the reason in the spec's words to err
 * (e.g. "type mismatch", "unexpected end"); *malformed (may be NULL) tells
 * a binary-format error (true) from a validation error (false). */
wasm_module *wasm_module_load(const uint8_t *bytes, size_t len, char *err, size_t errlen,
                              bool *malformed);
/* Free after every store that instantiated it is freed. */
void wasm_module_free(wasm_module *m);

uint32_t wasm_module_import_count(const wasm_module *m);
void wasm_module_import(const wasm_module *m, uint32_t i, const char **module, const char **name,
                        wasm_extern_kind *kind);
/* Expected types of import i (false if import i is of another kind). */
bool wasm_module_import_functype(const wasm_module *m, uint32_t i, const uint8_t **params,
                                 uint32_t *nparams, const uint8_t **results, uint32_t *nresults);
bool wasm_module_import_global(const wasm_module *m, uint32_t i, wasm_valtype *type,
                               bool *mutable_);
/* memories and tables: limits (and element type for tables) */
bool wasm_module_import_limits(const wasm_module *m, uint32_t i, uint32_t *min, uint32_t *max,
                               bool *has_max, wasm_valtype *elem);
uint32_t wasm_module_export_count(const wasm_module *m);
void wasm_module_export(const wasm_module *m, uint32_t i, const char **name,
                        wasm_extern_kind *kind);
/* Signature of an exported function (arrays of wasm_valtype codes, one byte
 * each); false if there is no such function export. */
bool wasm_module_export_functype(const wasm_module *m, const char *name,
                                 const uint8_t **params, uint32_t *nparams,
                                 const uint8_t **results, uint32_t *nresults);

/* ---- stores ---- */

/* defaults may be NULL (unlimited fuel/time, 65536 pages, 10M table
 * elements, 4096 frames, 256K stack slots).  The value and frame stacks are
 * allocated here, once. */
wasm_store *wasm_store_new(const wasm_limits *defaults);
void wasm_store_free(wasm_store *s);
/* Fuel consumed by the last wasm_call (or instantiation start function). */
uint64_t wasm_store_fuel_used(const wasm_store *s);

/* ---- host objects ---- */

/* Host function: read args, write results (types already set by the
 * caller), return WASM_OK or a trap.  caller is the calling instance (NULL
 * when called directly by the host). */
typedef wasm_trap (*wasm_host_fn)(void *user, wasm_instance *caller, const wasm_val *args,
                                  wasm_val *results);

wasm_func *wasm_func_new_host(wasm_store *s, const wasm_valtype *params, uint32_t nparams,
                              const wasm_valtype *results, uint32_t nresults, wasm_host_fn fn,
                              void *user);
wasm_global *wasm_global_new(wasm_store *s, wasm_val init, bool mutable_);
wasm_memory *wasm_memory_new(wasm_store *s, uint32_t min_pages, uint32_t max_pages, bool has_max);
wasm_table *wasm_table_new(wasm_store *s, wasm_valtype elem, uint32_t min, uint32_t max,
                           bool has_max);

/* ---- instances ---- */

/* Return true and fill *out if import number import_index is provided (its
 * expected type: wasm_module_import_*).  kind is the kind
 * the module expects; type compatibility is checked by the instantiator. */
typedef bool (*wasm_import_resolver)(void *user, uint32_t import_index, const char *module,
                                     const char *name, wasm_extern_kind kind, wasm_extern *out);

typedef enum wasm_inst_status {
    WASM_INST_OK = 0,
    WASM_INST_LINK_ERROR, /* unknown import / incompatible import type */
    WASM_INST_TRAP,       /* segment out of bounds or start function trapped */
} wasm_inst_status;

/* Instantiate into the store; runs the start function under the store's
 * default limits.  On failure *out is NULL and err has the reason; objects
 * the failed instantiation created stay alive in the store (as in the spec,
 * segment writes done before a trap remain visible). */
wasm_inst_status wasm_instantiate(wasm_store *s, const wasm_module *m,
                                  wasm_import_resolver resolve, void *user,
                                  wasm_instance **out, char *err, size_t errlen);

bool wasm_instance_export(const wasm_instance *inst, const char *name, wasm_extern *out);
/* Same for names that may contain NUL bytes. */
bool wasm_instance_export_n(const wasm_instance *inst, const char *name, size_t len,
                            wasm_extern *out);
wasm_func *wasm_instance_func(const wasm_instance *inst, const char *name);
/* Memory index 0 (the only one in Wasm 2.0), or NULL. */
wasm_memory *wasm_instance_memory(const wasm_instance *inst);

/* ---- functions ---- */

/* Signature as arrays of wasm_valtype codes (one byte each). */
void wasm_func_type(const wasm_func *f, const uint8_t **params, uint32_t *nparams,
                    const uint8_t **results, uint32_t *nresults);

/* Call f with nargs typed args; results get nresults values.  limits may be
 * NULL (store defaults).  Returns WASM_OK or the trap. */
wasm_trap wasm_call(wasm_store *s, wasm_func *f, const wasm_val *args, uint32_t nargs,
                    wasm_val *results, uint32_t nresults, const wasm_limits *limits);

/* ---- memories, globals, tables ---- */

uint8_t *wasm_memory_data(wasm_memory *m);
size_t wasm_memory_size(const wasm_memory *m); /* bytes */
/* Bounds-checked copies; false if [off, off+len) is outside the memory. */
bool wasm_memory_read(const wasm_memory *m, uint64_t off, void *buf, size_t len);
bool wasm_memory_write(wasm_memory *m, uint64_t off, const void *buf, size_t len);
/* Grow by delta pages within max and the store cap: old size in pages or -1. */
int64_t wasm_memory_grow(wasm_memory *m, uint32_t delta);

wasm_val wasm_global_get(const wasm_global *g);
/* false if immutable or of another type */
bool wasm_global_set(wasm_global *g, wasm_val v);

uint32_t wasm_table_size(const wasm_table *t);
bool wasm_table_get(const wasm_table *t, uint32_t i, wasm_val *out);

#endif
