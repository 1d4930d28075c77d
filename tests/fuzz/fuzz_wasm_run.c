/* fuzz_wasm_run.c - libFuzzer target: load an arbitrary module, instantiate
 * it with stub imports (host functions returning zeros, fresh globals,
 * memories and tables of the requested types), then call every exported
 * function with zero arguments under small limits (fuel, pages, table size,
 * call depth, value stack).  Any guest behaviour must end in a result or a
 * trap: never a crash, hang or leak. */
#include "payload/wasm/wasm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    wasm_store *s;
    const wasm_module *m;
} fz;

static wasm_trap stub(void *user, wasm_instance *caller, const wasm_val *args,
                      wasm_val *results)
{
    (void)user;
    (void)caller;
    (void)args;
    (void)results; /* zero-initialised by the interpreter */
    return WASM_OK;
}

static bool resolve(void *user, uint32_t i, const char *module, const char *name,
                    wasm_extern_kind kind, wasm_extern *out)
{
    fz *z = user;
    (void)module;
    (void)name;
    out->kind = kind;
    switch (kind) {
    case WASM_EXTERN_FUNC: {
        const uint8_t *p, *r;
        uint32_t np, nr;
        if (!wasm_module_import_functype(z->m, i, &p, &np, &r, &nr) || np > 64 || nr > 64)
            return false;
        wasm_valtype pt[64], rt[64];
        for (uint32_t k = 0; k < np; k++)
            pt[k] = (wasm_valtype)p[k];
        for (uint32_t k = 0; k < nr; k++)
            rt[k] = (wasm_valtype)r[k];
        out->of.func = wasm_func_new_host(z->s, pt, np, rt, nr, stub, NULL);
        return out->of.func != NULL;
    }
    case WASM_EXTERN_GLOBAL: {
        wasm_val v;
        bool mut;
        memset(&v, 0, sizeof v);
        if (!wasm_module_import_global(z->m, i, &v.type, &mut))
            return false;
        out->of.global = wasm_global_new(z->s, v, mut);
        return out->of.global != NULL;
    }
    case WASM_EXTERN_MEMORY: {
        uint32_t min, max;
        bool has_max;
        wasm_valtype et;
        if (!wasm_module_import_limits(z->m, i, &min, &max, &has_max, &et))
            return false;
        out->of.memory = wasm_memory_new(z->s, min, max, has_max);
        return out->of.memory != NULL;
    }
    case WASM_EXTERN_TABLE: {
        uint32_t min, max;
        bool has_max;
        wasm_valtype et;
        if (!wasm_module_import_limits(z->m, i, &min, &max, &has_max, &et))
            return false;
        out->of.table = wasm_table_new(z->s, et, min, max, has_max);
        return out->of.table != NULL;
    }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    wasm_module *m = wasm_module_load(data, size, err, sizeof err, NULL);
    if (!m)
        return 0;
    wasm_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.fuel = 100000;
    lim.timeout_ns = 1000000000ull;
    lim.max_call_depth = 200;
    lim.max_stack_slots = 1u << 16;
    lim.max_memory_pages = 16;
    lim.max_table_elems = 10000;
    fz z = {wasm_store_new(&lim), m};
    if (z.s) {
        wasm_instance *inst;
        if (wasm_instantiate(z.s, m, resolve, &z, &inst, err, sizeof err) == WASM_INST_OK) {
            uint32_t n = wasm_module_export_count(m);
            for (uint32_t i = 0; i < n; i++) {
                const char *name;
                wasm_extern_kind kind;
                wasm_module_export(m, i, &name, &kind);
                if (kind != WASM_EXTERN_FUNC)
                    continue;
                wasm_func *f = wasm_instance_func(inst, name);
                if (!f)
                    continue;
                const uint8_t *p, *r;
                uint32_t np, nr;
                wasm_func_type(f, &p, &np, &r, &nr);
                if (np > 16 || nr > 16)
                    continue;
                wasm_val args[16], res[16];
                memset(args, 0, sizeof args);
                for (uint32_t k = 0; k < np; k++)
                    args[k].type = (wasm_valtype)p[k];
                wasm_call(z.s, f, args, np, res, nr, NULL);
            }
        }
        wasm_store_free(z.s);
    }
    wasm_module_free(m);
    return 0;
}
