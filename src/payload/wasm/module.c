/* module.c - module lifetime and introspection: wasm_module_load (copy the
 * bytes, decode, validate/lower), wasm_module_free, and read-only queries on
 * imports and exports (used by clearance checks and the payload layer). */
#include "wasm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wasm_module_release(struct wasm_module *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->ntypes; i++)
        free(m->types[i].types);
    free(m->types);
    for (uint32_t i = 0; i < m->nimports; i++) {
        free(m->imports[i].module);
        free(m->imports[i].name);
    }
    free(m->imports);
    free(m->func_types);
    free(m->tables);
    free(m->mems);
    free(m->globals);
    free(m->global_inits);
    for (uint32_t i = 0; i < m->nexports; i++)
        free(m->exports[i].name);
    free(m->exports);
    for (uint32_t i = 0; i < m->nelems; i++)
        free(m->elems[i].items);
    free(m->elems);
    free(m->datas);
    if (m->codes) {
        for (uint32_t i = 0; i < m->nfuncs - m->nfunc_imports; i++) {
            free(m->codes[i].local_types);
            free(m->codes[i].code);
        }
    }
    free(m->codes);
    free(m->declared);
    free(m->bytes);
    free(m);
}

wasm_module *wasm_module_load(const uint8_t *bytes, size_t len, char *err, size_t errlen,
                              bool *malformed)
{
    char scratch[256];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = 0;
    struct wasm_module *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->bytes = malloc(len ? len : 1);
    if (!m->bytes) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (len)
        memcpy(m->bytes, bytes, len);
    m->len = len;
    if (!wasm_decode(m, err, errlen)) {
        if (malformed)
            *malformed = true;
        wasm_module_release(m);
        return NULL;
    }
    if (!wasm_validate(m, err, errlen)) {
        if (malformed)
            *malformed = false;
        wasm_module_release(m);
        return NULL;
    }
    return m;
}

void wasm_module_free(wasm_module *m)
{
    wasm_module_release(m);
}

uint32_t wasm_module_import_count(const wasm_module *m)
{
    return m->nimports;
}

void wasm_module_import(const wasm_module *m, uint32_t i, const char **module, const char **name,
                        wasm_extern_kind *kind)
{
    *module = m->imports[i].module;
    *name = m->imports[i].name;
    *kind = (wasm_extern_kind)m->imports[i].kind;
}

bool wasm_module_import_functype(const wasm_module *m, uint32_t i, const uint8_t **params,
                                 uint32_t *nparams, const uint8_t **results, uint32_t *nresults)
{
    if (i >= m->nimports || m->imports[i].kind != WASM_EXTERN_FUNC)
        return false;
    const wfunctype *t = &m->types[m->func_types[m->imports[i].index]];
    *params = t->types;
    *nparams = t->nparams;
    *results = t->types + t->nparams;
    *nresults = t->nresults;
    return true;
}

bool wasm_module_import_global(const wasm_module *m, uint32_t i, wasm_valtype *type,
                               bool *mutable_)
{
    if (i >= m->nimports || m->imports[i].kind != WASM_EXTERN_GLOBAL)
        return false;
    const wglobaltype *g = &m->globals[m->imports[i].index];
    *type = (wasm_valtype)g->type;
    *mutable_ = g->mut;
    return true;
}

bool wasm_module_import_limits(const wasm_module *m, uint32_t i, uint32_t *min, uint32_t *max,
                               bool *has_max, wasm_valtype *elem)
{
    if (i >= m->nimports)
        return false;
    const wimport *im = &m->imports[i];
    const wlimits *l;
    if (im->kind == WASM_EXTERN_TABLE) {
        l = &m->tables[im->index].lim;
        *elem = (wasm_valtype)m->tables[im->index].elem;
    } else if (im->kind == WASM_EXTERN_MEMORY) {
        l = &m->mems[im->index];
        *elem = (wasm_valtype)0;
    } else {
        return false;
    }
    *min = l->min;
    *max = l->max;
    *has_max = l->has_max;
    return true;
}

uint32_t wasm_module_export_count(const wasm_module *m)
{
    return m->nexports;
}

void wasm_module_export(const wasm_module *m, uint32_t i, const char **name,
                        wasm_extern_kind *kind)
{
    *name = m->exports[i].name;
    *kind = (wasm_extern_kind)m->exports[i].kind;
}

bool wasm_module_export_functype(const wasm_module *m, const char *name,
                                 const uint8_t **params, uint32_t *nparams,
                                 const uint8_t **results, uint32_t *nresults)
{
    for (uint32_t i = 0; i < m->nexports; i++) {
        const wexport *e = &m->exports[i];
        if (e->kind != WASM_EXTERN_FUNC || strcmp(e->name, name) != 0)
            continue;
        const wfunctype *t = &m->types[m->func_types[e->index]];
        *params = t->types;
        *nparams = t->nparams;
        *results = t->types + t->nparams;
        *nresults = t->nresults;
        return true;
    }
    return false;
}
