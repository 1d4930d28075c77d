/* instance.c - the store and everything that lives in it: host objects
 * (functions, globals, memories, tables), instantiation (import resolution
 * and type matching, segment initialisation, start function), exports, the
 * wasm_call entry point with its limits, and host access to memories,
 * globals and tables. */
#include "wasm_impl.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DEPTH 8192u
#define DEFAULT_SLOTS (256u * 1024u)
#define DEFAULT_TABLE_CAP 10000000u

const char *wasm_trap_message(wasm_trap t)
{
    switch (t) {
    case WASM_OK: return "ok";
    case WASM_TRAP_UNREACHABLE: return "unreachable";
    case WASM_TRAP_MEMORY_OOB: return "out of bounds memory access";
    case WASM_TRAP_TABLE_OOB: return "out of bounds table access";
    case WASM_TRAP_UNDEFINED_ELEMENT: return "undefined element";
    case WASM_TRAP_UNINIT_ELEMENT: return "uninitialized element";
    case WASM_TRAP_INDIRECT_TYPE: return "indirect call type mismatch";
    case WASM_TRAP_DIV_ZERO: return "integer divide by zero";
    case WASM_TRAP_INT_OVERFLOW: return "integer overflow";
    case WASM_TRAP_INVALID_CONV: return "invalid conversion to integer";
    case WASM_TRAP_CALL_DEPTH: return "call stack exhausted";
    case WASM_TRAP_VALUE_STACK: return "call stack exhausted (value stack)";
    case WASM_TRAP_FUEL: return "fuel exhausted";
    case WASM_TRAP_DEADLINE: return "deadline exceeded";
    case WASM_TRAP_HOST: return "host function failed";
    case WASM_TRAP_BAD_CALL: return "bad call: argument or result mismatch";
    }
    return "unknown trap";
}

bool wasm_trap_is_exhaustion(wasm_trap t)
{
    return t == WASM_TRAP_CALL_DEPTH || t == WASM_TRAP_VALUE_STACK || t == WASM_TRAP_FUEL ||
           t == WASM_TRAP_DEADLINE;
}

/* ---- store ---- */

wasm_store *wasm_store_new(const wasm_limits *defaults)
{
    wasm_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (defaults)
        s->defaults = *defaults;
    if (!s->defaults.max_call_depth)
        s->defaults.max_call_depth = DEFAULT_DEPTH;
    if (!s->defaults.max_stack_slots)
        s->defaults.max_stack_slots = DEFAULT_SLOTS;
    if (!s->defaults.max_memory_pages || s->defaults.max_memory_pages > WASM_MAX_PAGES)
        s->defaults.max_memory_pages = WASM_MAX_PAGES;
    if (!s->defaults.max_table_elems)
        s->defaults.max_table_elems = DEFAULT_TABLE_CAP;
    s->stack_slots = s->defaults.max_stack_slots;
    s->nframes_max = s->defaults.max_call_depth + 1;
    s->stack = calloc(s->stack_slots, sizeof *s->stack);
    s->frames = calloc(s->nframes_max, sizeof *s->frames);
    if (!s->stack || !s->frames) {
        free(s->stack);
        free(s->frames);
        free(s);
        return NULL;
    }
    s->sp_base = s->stack;
    s->cur = s->defaults;
    return s;
}

void wasm_store_free(wasm_store *s)
{
    if (!s)
        return;
    for (wasm_func *f = s->funcs, *n; f; f = n) {
        n = f->next;
        free(f->own_type.types);
        free(f);
    }
    for (wasm_memory *m = s->mems, *n; m; m = n) {
        n = m->next;
        free(m->data);
        free(m);
    }
    for (wasm_table *t = s->tables, *n; t; t = n) {
        n = t->next;
        free(t->elems);
        free(t);
    }
    for (wasm_global *g = s->globals, *n; g; g = n) {
        n = g->next;
        free(g);
    }
    for (wasm_instance *i = s->instances, *n; i; i = n) {
        n = i->next;
        if (i->elem_items)
            for (uint32_t k = 0; k < i->mod->nelems; k++)
                free(i->elem_items[k]);
        free(i->elem_items);
        free(i->elem_len);
        free(i->data_dropped);
        free(i->funcs);
        free(i->tables);
        free(i->globals);
        free(i);
    }
    free(s->stack);
    free(s->frames);
    free(s);
}

uint64_t wasm_store_fuel_used(const wasm_store *s)
{
    return s->fuel_used;
}

/* ---- objects ---- */

static wasm_func *func_alloc(wasm_store *s)
{
    wasm_func *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->next = s->funcs;
    s->funcs = f;
    return f;
}

wasm_func *wasm_func_new_host(wasm_store *s, const wasm_valtype *params, uint32_t nparams,
                              const wasm_valtype *results, uint32_t nresults, wasm_host_fn fn,
                              void *user)
{
    uint8_t *types = malloc((size_t)nparams + nresults + 1);
    if (!types)
        return NULL;
    for (uint32_t i = 0; i < nparams; i++)
        types[i] = (uint8_t)params[i];
    for (uint32_t i = 0; i < nresults; i++)
        types[nparams + i] = (uint8_t)results[i];
    wasm_func *f = func_alloc(s);
    if (!f) {
        free(types);
        return NULL;
    }
    f->own_type.nparams = nparams;
    f->own_type.nresults = nresults;
    f->own_type.types = types;
    f->type = &f->own_type;
    f->host = fn;
    f->user = user;
    return f;
}

static uint64_t val_slot(wasm_val v)
{
    switch (v.type) {
    case WASM_I32: return v.of.i32;
    case WASM_F32: return v.of.f32_bits;
    case WASM_FUNCREF: return (uint64_t)(uintptr_t)v.of.func;
    case WASM_EXTERNREF: return (uint64_t)v.of.ext;
    default: return v.of.i64;
    }
}

static wasm_val slot_val(uint64_t s, uint8_t t)
{
    wasm_val v;
    memset(&v, 0, sizeof v);
    v.type = (wasm_valtype)t;
    switch (t) {
    case WASM_I32: v.of.i32 = (uint32_t)s; break;
    case WASM_F32: v.of.f32_bits = (uint32_t)s; break;
    case WASM_FUNCREF: v.of.func = (wasm_func *)(uintptr_t)s; break;
    case WASM_EXTERNREF: v.of.ext = (uintptr_t)s; break;
    default: v.of.i64 = s; break;
    }
    return v;
}

static wasm_global *global_alloc(wasm_store *s, uint8_t type, bool mut, uint64_t val)
{
    wasm_global *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->type = type;
    g->mut = mut;
    g->val = val;
    g->next = s->globals;
    s->globals = g;
    return g;
}

wasm_global *wasm_global_new(wasm_store *s, wasm_val init, bool mutable_)
{
    return global_alloc(s, (uint8_t)init.type, mutable_, val_slot(init));
}

static wasm_memory *memory_alloc(wasm_store *s, wlimits lim)
{
    if (lim.min > s->defaults.max_memory_pages)
        return NULL;
    wasm_memory *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->size = (uint64_t)lim.min * WASM_PAGE;
    if (m->size) {
        m->data = calloc(1, m->size);
        if (!m->data) {
            free(m);
            return NULL;
        }
    }
    m->pages = lim.min;
    m->lim = lim;
    m->store = s;
    m->next = s->mems;
    s->mems = m;
    return m;
}

wasm_memory *wasm_memory_new(wasm_store *s, uint32_t min_pages, uint32_t max_pages, bool has_max)
{
    wlimits l = {min_pages, max_pages, has_max};
    return memory_alloc(s, l);
}

static wasm_table *table_alloc(wasm_store *s, uint8_t type, wlimits lim, uint64_t init)
{
    if (lim.min > s->defaults.max_table_elems)
        return NULL;
    wasm_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->elems = calloc(lim.min ? lim.min : 1, sizeof *t->elems);
    if (!t->elems) {
        free(t);
        return NULL;
    }
    for (uint32_t i = 0; i < lim.min; i++)
        t->elems[i] = init;
    t->size = lim.min;
    t->type = type;
    t->lim = lim;
    t->store = s;
    t->next = s->tables;
    s->tables = t;
    return t;
}

wasm_table *wasm_table_new(wasm_store *s, wasm_valtype elem, uint32_t min, uint32_t max,
                           bool has_max)
{
    wlimits l = {min, max, has_max};
    return table_alloc(s, (uint8_t)elem, l, 0);
}

int64_t wasm_memory_grow_impl(wasm_memory *m, uint32_t delta, uint32_t cap)
{
    uint32_t old = m->pages;
    uint64_t np = (uint64_t)old + delta;
    uint64_t max = m->lim.has_max ? m->lim.max : WASM_MAX_PAGES;
    if (cap < max)
        max = cap;
    if (np > max)
        return -1;
    if (delta == 0)
        return old;
    uint64_t nsize = np * WASM_PAGE;
    uint8_t *d = realloc(m->data, nsize);
    if (!d)
        return -1;
    memset(d + m->size, 0, nsize - m->size);
    m->data = d;
    m->size = nsize;
    m->pages = (uint32_t)np;
    return old;
}

int64_t wasm_table_grow_impl(wasm_table *t, uint32_t delta, uint64_t init, uint32_t cap)
{
    uint32_t old = t->size;
    uint64_t ns = (uint64_t)old + delta;
    uint64_t max = t->lim.has_max ? t->lim.max : UINT32_MAX;
    if (cap < max)
        max = cap;
    if (ns > max)
        return -1;
    if (delta == 0)
        return old;
    uint64_t *e = realloc(t->elems, ns * sizeof *e);
    if (!e)
        return -1;
    for (uint64_t i = old; i < ns; i++)
        e[i] = init;
    t->elems = e;
    t->size = (uint32_t)ns;
    return old;
}

/* ---- instantiation ---- */

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

static bool limits_match(uint32_t cur_min, const wlimits *actual, const wlimits *want)
{
    if (cur_min < want->min)
        return false;
    if (want->has_max) {
        if (!actual->has_max || actual->max > want->max)
            return false;
    }
    return true;
}

static uint64_t eval_const(const wasm_instance *inst, const wconst *c)
{
    switch (c->op) {
    case WC_REF_NULL: return 0;
    case WC_REF_FUNC: return (uint64_t)(uintptr_t)inst->funcs[c->idx];
    case WC_GLOBAL_GET: return inst->globals[c->idx]->val;
    default: return c->bits;
    }
}

static wasm_instance *inst_alloc(wasm_store *s, const wasm_module *m)
{
    wasm_instance *inst = calloc(1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->next = s->instances;
    s->instances = inst;
    inst->store = s;
    inst->mod = m;
    inst->funcs = calloc(m->nfuncs ? m->nfuncs : 1, sizeof *inst->funcs);
    inst->tables = calloc(m->ntables ? m->ntables : 1, sizeof *inst->tables);
    inst->globals = calloc(m->nglobals ? m->nglobals : 1, sizeof *inst->globals);
    inst->elem_items = calloc(m->nelems ? m->nelems : 1, sizeof *inst->elem_items);
    inst->elem_len = calloc(m->nelems ? m->nelems : 1, sizeof *inst->elem_len);
    inst->data_dropped = calloc(m->ndatas ? m->ndatas : 1, 1);
    if (!inst->funcs || !inst->tables || !inst->globals || !inst->elem_items || !inst->elem_len ||
        !inst->data_dropped)
        return NULL;
    return inst;
}

static wasm_trap run_limited(wasm_store *s, wasm_func *f, const wasm_limits *lim);

wasm_inst_status wasm_instantiate(wasm_store *s, const wasm_module *m,
                                  wasm_import_resolver resolve, void *user,
                                  wasm_instance **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    wasm_instance *inst = inst_alloc(s, m);
    if (!inst) {
        set_err(err, errlen, "out of memory%s%s", "", "");
        return WASM_INST_LINK_ERROR;
    }
    /* imports */
    for (uint32_t i = 0; i < m->nimports; i++) {
        const wimport *im = &m->imports[i];
        wasm_extern ex;
        memset(&ex, 0, sizeof ex);
        if (!resolve || !resolve(user, i, im->module, im->name, (wasm_extern_kind)im->kind, &ex)) {
            set_err(err, errlen, "unknown import %s.%s", im->module, im->name);
            return WASM_INST_LINK_ERROR;
        }
        bool ok = ex.kind == im->kind;
        if (ok) {
            switch (im->kind) {
            case WASM_EXTERN_FUNC:
                ok = ex.of.func &&
                     wasm_functype_eq(ex.of.func->type, &m->types[m->func_types[im->index]]);
                if (ok)
                    inst->funcs[im->index] = ex.of.func;
                break;
            case WASM_EXTERN_TABLE: {
                const wtabletype *tt = &m->tables[im->index];
                wasm_table *t = ex.of.table;
                ok = t && t->type == tt->elem && limits_match(t->size, &t->lim, &tt->lim);
                if (ok)
                    inst->tables[im->index] = t;
                break;
            }
            case WASM_EXTERN_MEMORY: {
                wasm_memory *mm = ex.of.memory;
                ok = mm && limits_match(mm->pages, &mm->lim, &m->mems[im->index]);
                if (ok)
                    inst->mem = mm;
                break;
            }
            default: {
                wasm_global *g = ex.of.global;
                const wglobaltype *gt = &m->globals[im->index];
                ok = g && g->type == gt->type && g->mut == gt->mut;
                if (ok)
                    inst->globals[im->index] = g;
                break;
            }
            }
        }
        if (!ok) {
            set_err(err, errlen, "incompatible import type %s.%s", im->module, im->name);
            return WASM_INST_LINK_ERROR;
        }
    }
    /* defined objects */
    for (uint32_t i = m->nfunc_imports; i < m->nfuncs; i++) {
        wasm_func *f = func_alloc(s);
        if (!f)
            goto oom;
        f->type = &m->types[m->func_types[i]];
        f->inst = inst;
        f->code = &m->codes[i - m->nfunc_imports];
        inst->funcs[i] = f;
    }
    for (uint32_t i = m->ntable_imports; i < m->ntables; i++) {
        inst->tables[i] = table_alloc(s, m->tables[i].elem, m->tables[i].lim, 0);
        if (!inst->tables[i]) {
            set_err(err, errlen, "table allocation failed (size cap)%s%s", "", "");
            return WASM_INST_LINK_ERROR;
        }
    }
    for (uint32_t i = m->nmem_imports; i < m->nmems; i++) {
        inst->mem = memory_alloc(s, m->mems[i]);
        if (!inst->mem) {
            set_err(err, errlen, "memory allocation failed (page cap)%s%s", "", "");
            return WASM_INST_LINK_ERROR;
        }
    }
    for (uint32_t i = m->nglobal_imports; i < m->nglobals; i++) {
        inst->globals[i] = global_alloc(s, m->globals[i].type, m->globals[i].mut,
                                        eval_const(inst, &m->global_inits[i]));
        if (!inst->globals[i])
            goto oom;
    }
    for (uint32_t i = 0; i < m->nelems; i++) {
        const welem *e = &m->elems[i];
        inst->elem_items[i] = calloc(e->n ? e->n : 1, sizeof(uint64_t));
        if (!inst->elem_items[i])
            goto oom;
        for (uint32_t k = 0; k < e->n; k++)
            inst->elem_items[i][k] = eval_const(inst, &e->items[k]);
        inst->elem_len[i] = e->n;
    }
    /* active segments, in order; a failure leaves earlier writes in place */
    for (uint32_t i = 0; i < m->nelems; i++) {
        const welem *e = &m->elems[i];
        if (e->mode == SEG_ACTIVE) {
            uint64_t off = (uint32_t)eval_const(inst, &e->offset);
            wasm_table *t = inst->tables[e->table];
            if (off + e->n > t->size) {
                set_err(err, errlen, "%s%s", wasm_trap_message(WASM_TRAP_TABLE_OOB), "");
                return WASM_INST_TRAP;
            }
            if (e->n)
                memcpy(t->elems + off, inst->elem_items[i], (size_t)e->n * 8);
        }
        if (e->mode != SEG_PASSIVE)
            inst->elem_len[i] = 0;
    }
    for (uint32_t i = 0; i < m->ndatas; i++) {
        const wdata *d = &m->datas[i];
        if (d->mode != SEG_ACTIVE)
            continue;
        uint64_t off = (uint32_t)eval_const(inst, &d->offset);
        if (!inst->mem || off + d->len > inst->mem->size) { /* no memory: refused by validation */
            set_err(err, errlen, "%s%s", wasm_trap_message(WASM_TRAP_MEMORY_OOB), "");
            return WASM_INST_TRAP;
        }
        if (d->len) {
            assert(inst->mem->data); /* a memory of size > 0 has its bytes */
            memcpy(inst->mem->data + off, d->bytes, d->len);
        }
        inst->data_dropped[i] = 1;
    }
    if (m->has_start) {
        wasm_trap t = run_limited(s, inst->funcs[m->start], NULL);
        if (t != WASM_OK) {
            set_err(err, errlen, "%s%s", wasm_trap_message(t), "");
            return WASM_INST_TRAP;
        }
    }
    *out = inst;
    return WASM_INST_OK;
oom:
    set_err(err, errlen, "out of memory%s%s", "", "");
    return WASM_INST_LINK_ERROR;
}

bool wasm_instance_export(const wasm_instance *inst, const char *name, wasm_extern *out)
{
    return wasm_instance_export_n(inst, name, strlen(name), out);
}

bool wasm_instance_export_n(const wasm_instance *inst, const char *name, size_t len,
                            wasm_extern *out)
{
    const wasm_module *m = inst->mod;
    for (uint32_t i = 0; i < m->nexports; i++) {
        const wexport *e = &m->exports[i];
        if (e->name_len != len || memcmp(e->name, name, len) != 0)
            continue;
        out->kind = (wasm_extern_kind)e->kind;
        switch (e->kind) {
        case WASM_EXTERN_FUNC: out->of.func = inst->funcs[e->index]; break;
        case WASM_EXTERN_TABLE: out->of.table = inst->tables[e->index]; break;
        case WASM_EXTERN_MEMORY: out->of.memory = inst->mem; break;
        default: out->of.global = inst->globals[e->index]; break;
        }
        return true;
    }
    return false;
}

wasm_func *wasm_instance_func(const wasm_instance *inst, const char *name)
{
    wasm_extern e;
    if (!wasm_instance_export(inst, name, &e) || e.kind != WASM_EXTERN_FUNC)
        return NULL;
    return e.of.func;
}

wasm_memory *wasm_instance_memory(const wasm_instance *inst)
{
    return inst->mem;
}

/* ---- calls ---- */

void wasm_func_type(const wasm_func *f, const uint8_t **params, uint32_t *nparams,
                    const uint8_t **results, uint32_t *nresults)
{
    *params = f->type->types;
    *nparams = f->type->nparams;
    *results = f->type->types + f->type->nparams;
    *nresults = f->type->nresults;
}

/* Run f with its args already at s->sp_base. */
static wasm_trap run_limited(wasm_store *s, wasm_func *f, const wasm_limits *lim)
{
    bool outer = s->sp_base == s->stack && s->frame_base == 0;
    wasm_limits save = s->cur;
    uint64_t save_fuel = s->fuel_left, save_deadline = s->deadline;
    if (outer) {
        s->cur = lim ? *lim : s->defaults;
        uint64_t fuel = s->cur.fuel ? s->cur.fuel : s->defaults.fuel;
        uint64_t to = s->cur.timeout_ns ? s->cur.timeout_ns : s->defaults.timeout_ns;
        s->fuel_left = fuel ? fuel : UINT64_MAX;
        s->deadline = to ? wasm_now_ns() + to : 0;
        s->fuel_used = 0;
    }
    wasm_trap t = wasm_exec_call(s, f, s->sp_base);
    if (outer) {
        s->cur = save;
        s->fuel_left = save_fuel;
        s->deadline = save_deadline;
    }
    return t;
}

wasm_trap wasm_call(wasm_store *s, wasm_func *f, const wasm_val *args, uint32_t nargs,
                    wasm_val *results, uint32_t nresults, const wasm_limits *limits)
{
    if (!f)
        return WASM_TRAP_BAD_CALL;
    const wfunctype *t = f->type;
    if (nargs != t->nparams || nresults != t->nresults)
        return WASM_TRAP_BAD_CALL;
    for (uint32_t i = 0; i < nargs; i++)
        if ((uint8_t)args[i].type != t->types[i])
            return WASM_TRAP_BAD_CALL;
    uint32_t span = nargs > nresults ? nargs : nresults;
    uint64_t *base = s->sp_base;
    if (base + span > s->stack + s->stack_slots)
        return WASM_TRAP_VALUE_STACK;
    for (uint32_t i = 0; i < nargs; i++)
        base[i] = val_slot(args[i]);
    wasm_trap tr = run_limited(s, f, limits);
    if (tr != WASM_OK)
        return tr;
    for (uint32_t i = 0; i < nresults; i++)
        results[i] = slot_val(base[i], t->types[t->nparams + i]);
    return WASM_OK;
}

/* ---- host access ---- */

uint8_t *wasm_memory_data(wasm_memory *m)
{
    return m->data;
}

size_t wasm_memory_size(const wasm_memory *m)
{
    return (size_t)m->size;
}

bool wasm_memory_read(const wasm_memory *m, uint64_t off, void *buf, size_t len)
{
    if (off > m->size || len > m->size - off)
        return false;
    if (len)
        memcpy(buf, m->data + off, len);
    return true;
}

bool wasm_memory_write(wasm_memory *m, uint64_t off, const void *buf, size_t len)
{
    if (off > m->size || len > m->size - off)
        return false;
    if (len)
        memcpy(m->data + off, buf, len);
    return true;
}

int64_t wasm_memory_grow(wasm_memory *m, uint32_t delta)
{
    return wasm_memory_grow_impl(m, delta, m->store->defaults.max_memory_pages);
}

wasm_val wasm_global_get(const wasm_global *g)
{
    return slot_val(g->val, g->type);
}

bool wasm_global_set(wasm_global *g, wasm_val v)
{
    if (!g->mut || (uint8_t)v.type != g->type)
        return false;
    g->val = val_slot(v);
    return true;
}

uint32_t wasm_table_size(const wasm_table *t)
{
    return t->size;
}

bool wasm_table_get(const wasm_table *t, uint32_t i, wasm_val *out)
{
    if (i >= t->size)
        return false;
    *out = slot_val(t->elems[i], t->type);
    return true;
}
