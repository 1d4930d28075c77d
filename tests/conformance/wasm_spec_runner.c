/* wasm_spec_runner.c - runs one WebAssembly spec test converted by
 * wast2json (the .json command list plus its .wasm side files) against
 * src/payload/wasm and reports every command.
 *
 * Usage: wasm-spec-runner [-v] FILE.json
 * Prints failures, then "<file>: P passed, F failed, S skipped (text format)";
 * exit status 0 iff F == 0.  assert_invalid/assert_malformed pass when the
 * module is rejected; whether our message is the spec's text is counted and
 * printed for information (-v shows each).  Text-format modules of assert_malformed test
 * the text parser, which we do not have (we only load binaries), so they
 * are counted as skipped. */
#include "payload/wasm/wasm.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct named {
    char *name;
    wasm_instance *inst;
} named;

typedef struct runner {
    wasm_store *store;
    char dir[4096];
    const char *json_name;
    named *names;
    size_t nnames;
    named *registered;
    size_t nregistered;
    wasm_module **modules;
    size_t nmodules;
    wasm_instance *current;
    int passed, failed, skipped_text;
    int msg_same, msg_other; /* rejections: spec's message text or another */
    bool verbose;
    /* spectest */
    wasm_func *print[7];
    wasm_global *g_i32, *g_i64, *g_f32, *g_f64;
    wasm_table *table;
    wasm_memory *memory;
} runner;

static void failf(runner *r, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s:%d: ", r->json_name, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    r->failed++;
}

/* ---- spectest host module ---- */

static wasm_trap host_print(void *user, wasm_instance *caller, const wasm_val *args,
                            wasm_val *results)
{
    (void)user;
    (void)caller;
    (void)args;
    (void)results;
    return WASM_OK;
}

static void spectest_init(runner *r)
{
    static const wasm_valtype sigs[7][2] = {
        {0, 0}, {WASM_I32, 0}, {WASM_I64, 0}, {WASM_F32, 0}, {WASM_F64, 0},
        {WASM_I32, WASM_F32}, {WASM_F64, WASM_F64},
    };
    static const uint32_t counts[7] = {0, 1, 1, 1, 1, 2, 2};
    for (int i = 0; i < 7; i++)
        r->print[i] = wasm_func_new_host(r->store, sigs[i], counts[i], NULL, 0, host_print, NULL);
    wasm_val v;
    v.type = WASM_I32;
    v.of.i32 = 666;
    r->g_i32 = wasm_global_new(r->store, v, false);
    v.type = WASM_I64;
    v.of.i64 = 666;
    r->g_i64 = wasm_global_new(r->store, v, false);
    v.type = WASM_F32;
    v.of.f32 = 666.6f;
    r->g_f32 = wasm_global_new(r->store, v, false);
    v.type = WASM_F64;
    v.of.f64 = 666.6;
    r->g_f64 = wasm_global_new(r->store, v, false);
    r->table = wasm_table_new(r->store, WASM_FUNCREF, 10, 20, true);
    r->memory = wasm_memory_new(r->store, 1, 2, true);
}

static bool resolve(void *user, uint32_t index, const char *module, const char *name,
                    wasm_extern_kind kind, wasm_extern *out)
{
    runner *r = user;
    (void)kind;
    (void)index;
    if (strcmp(module, "spectest") == 0) {
        static const char *const pn[7] = {"print", "print_i32", "print_i64", "print_f32",
                                          "print_f64", "print_i32_f32", "print_f64_f64"};
        for (int i = 0; i < 7; i++) {
            if (strcmp(name, pn[i]) == 0) {
                out->kind = WASM_EXTERN_FUNC;
                out->of.func = r->print[i];
                return true;
            }
        }
        struct {
            const char *n;
            wasm_global *g;
        } gs[4] = {{"global_i32", r->g_i32}, {"global_i64", r->g_i64},
                   {"global_f32", r->g_f32}, {"global_f64", r->g_f64}};
        for (int i = 0; i < 4; i++) {
            if (strcmp(name, gs[i].n) == 0) {
                out->kind = WASM_EXTERN_GLOBAL;
                out->of.global = gs[i].g;
                return true;
            }
        }
        if (strcmp(name, "table") == 0) {
            out->kind = WASM_EXTERN_TABLE;
            out->of.table = r->table;
            return true;
        }
        if (strcmp(name, "memory") == 0) {
            out->kind = WASM_EXTERN_MEMORY;
            out->of.memory = r->memory;
            return true;
        }
        return false;
    }
    for (size_t i = r->nregistered; i-- > 0;)
        if (strcmp(r->registered[i].name, module) == 0)
            return wasm_instance_export(r->registered[i].inst, name, out);
    return false;
}

/* ---- helpers ---- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static wasm_module *load(runner *r, const char *file, char *err, size_t errlen, bool *malformed)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", r->dir, file);
    size_t len;
    uint8_t *bytes = read_file(path, &len);
    if (!bytes) {
        snprintf(err, errlen, "cannot read %.400s", path);
        return NULL;
    }
    wasm_module *m = wasm_module_load(bytes, len, err, errlen, malformed);
    free(bytes);
    if (m) {
        wasm_module **nm = realloc(r->modules, (r->nmodules + 1) * sizeof *nm);
        if (!nm) {
            wasm_module_free(m);
            return NULL;
        }
        r->modules = nm;
        r->modules[r->nmodules++] = m;
    }
    return m;
}

static void add_named(named **arr, size_t *n, const char *name, wasm_instance *inst)
{
    named *na = realloc(*arr, (*n + 1) * sizeof *na);
    if (!na)
        return;
    *arr = na;
    na[*n].name = strdup(name);
    na[*n].inst = inst;
    (*n)++;
}

static wasm_instance *find_named(runner *r, const char *name)
{
    if (!name)
        return r->current;
    for (size_t i = r->nnames; i-- > 0;)
        if (strcmp(r->names[i].name, name) == 0)
            return r->names[i].inst;
    return NULL;
}

static bool parse_val(runner *r, json_t *j, wasm_val *v)
{
    (void)r;
    const char *t = json_string_value(json_object_get(j, "type"));
    const char *s = json_string_value(json_object_get(j, "value"));
    if (!t)
        return false;
    memset(v, 0, sizeof *v);
    if (strcmp(t, "i32") == 0) {
        v->type = WASM_I32;
        v->of.i32 = (uint32_t)strtoull(s ? s : "0", NULL, 10);
    } else if (strcmp(t, "i64") == 0) {
        v->type = WASM_I64;
        v->of.i64 = strtoull(s ? s : "0", NULL, 10);
    } else if (strcmp(t, "f32") == 0) {
        v->type = WASM_F32;
        v->of.f32_bits = (uint32_t)strtoull(s ? s : "0", NULL, 10);
    } else if (strcmp(t, "f64") == 0) {
        v->type = WASM_F64;
        v->of.f64_bits = strtoull(s ? s : "0", NULL, 10);
    } else if (strcmp(t, "externref") == 0) {
        v->type = WASM_EXTERNREF;
        v->of.ext = (!s || strcmp(s, "null") == 0) ? 0 : (uintptr_t)strtoull(s, NULL, 10) + 1;
    } else if (strcmp(t, "funcref") == 0) {
        v->type = WASM_FUNCREF;
        v->of.func = NULL;
    } else {
        return false;
    }
    return true;
}

static bool check_val(json_t *exp, const wasm_val *got, char *why, size_t whylen)
{
    const char *t = json_string_value(json_object_get(exp, "type"));
    const char *s = json_string_value(json_object_get(exp, "value"));
    if (!t)
        return false;
    if (strcmp(t, "f32") == 0 && got->type == WASM_F32) {
        uint32_t b = got->of.f32_bits;
        if (s && strcmp(s, "nan:canonical") == 0) {
            if ((b & 0x7fffffffu) == 0x7fc00000u)
                return true;
        } else if (s && strcmp(s, "nan:arithmetic") == 0) {
            if ((b & 0x7fc00000u) == 0x7fc00000u)
                return true;
        } else if (b == (uint32_t)strtoull(s ? s : "0", NULL, 10)) {
            return true;
        }
        snprintf(why, whylen, "f32 got 0x%08x expected %s", b, s ? s : "?");
        return false;
    }
    if (strcmp(t, "f64") == 0 && got->type == WASM_F64) {
        uint64_t b = got->of.f64_bits;
        if (s && strcmp(s, "nan:canonical") == 0) {
            if ((b & 0x7fffffffffffffffull) == 0x7ff8000000000000ull)
                return true;
        } else if (s && strcmp(s, "nan:arithmetic") == 0) {
            if ((b & 0x7ff8000000000000ull) == 0x7ff8000000000000ull)
                return true;
        } else if (b == strtoull(s ? s : "0", NULL, 10)) {
            return true;
        }
        snprintf(why, whylen, "f64 got 0x%016llx expected %s", (unsigned long long)b,
                 s ? s : "?");
        return false;
    }
    if (strcmp(t, "i32") == 0 && got->type == WASM_I32) {
        uint32_t want = (uint32_t)strtoull(s ? s : "0", NULL, 10);
        if (got->of.i32 == want)
            return true;
        snprintf(why, whylen, "i32 got %u expected %u", got->of.i32, want);
        return false;
    }
    if (strcmp(t, "i64") == 0 && got->type == WASM_I64) {
        uint64_t want = strtoull(s ? s : "0", NULL, 10);
        if (got->of.i64 == want)
            return true;
        snprintf(why, whylen, "i64 got %llu expected %llu", (unsigned long long)got->of.i64,
                 (unsigned long long)want);
        return false;
    }
    if (strcmp(t, "externref") == 0 && got->type == WASM_EXTERNREF) {
        uintptr_t want = (!s || strcmp(s, "null") == 0) ? 0 : (uintptr_t)strtoull(s, NULL, 10) + 1;
        if (got->of.ext == want)
            return true;
        snprintf(why, whylen, "externref got %lu expected %s", (unsigned long)got->of.ext,
                 s ? s : "?");
        return false;
    }
    if (strcmp(t, "funcref") == 0 && got->type == WASM_FUNCREF) {
        bool want_null = s && strcmp(s, "null") == 0;
        if (want_null == (got->of.func == NULL))
            return true;
        snprintf(why, whylen, "funcref got %s expected %s", got->of.func ? "func" : "null",
                 s ? s : "non-null");
        return false;
    }
    snprintf(why, whylen, "type mismatch: got 0x%x expected %s", (unsigned)got->type, t);
    return false;
}

#define MAXV 64

/* Returns the trap (WASM_OK on success); results into res. err set for
 * setup problems (returns WASM_TRAP_BAD_CALL). */
static wasm_trap do_action(runner *r, json_t *act, wasm_val *res, uint32_t *nres, char *err,
                           size_t errlen)
{
    const char *type = json_string_value(json_object_get(act, "type"));
    const char *field = json_string_value(json_object_get(act, "field"));
    size_t field_len = json_string_length(json_object_get(act, "field"));
    const char *mod = json_string_value(json_object_get(act, "module"));
    wasm_instance *inst = find_named(r, mod);
    *nres = 0;
    if (!inst || !field || !type) {
        snprintf(err, errlen, "no module instance %s", mod ? mod : "(current)");
        return WASM_TRAP_BAD_CALL;
    }
    wasm_extern ex;
    if (!wasm_instance_export_n(inst, field, field_len, &ex)) {
        snprintf(err, errlen, "no export %s", field);
        return WASM_TRAP_BAD_CALL;
    }
    if (strcmp(type, "get") == 0) {
        if (ex.kind != WASM_EXTERN_GLOBAL) {
            snprintf(err, errlen, "export %s is not a global", field);
            return WASM_TRAP_BAD_CALL;
        }
        res[0] = wasm_global_get(ex.of.global);
        *nres = 1;
        return WASM_OK;
    }
    if (ex.kind != WASM_EXTERN_FUNC) {
        snprintf(err, errlen, "export %s is not a function", field);
        return WASM_TRAP_BAD_CALL;
    }
    json_t *args = json_object_get(act, "args");
    wasm_val av[MAXV];
    uint32_t na = 0;
    size_t idx;
    json_t *a;
    json_array_foreach(args, idx, a) {
        if (na >= MAXV || !parse_val(r, a, &av[na])) {
            snprintf(err, errlen, "bad argument");
            return WASM_TRAP_BAD_CALL;
        }
        na++;
    }
    const uint8_t *pt, *rt;
    uint32_t np, nr;
    wasm_func_type(ex.of.func, &pt, &np, &rt, &nr);
    if (nr > MAXV) {
        snprintf(err, errlen, "too many results");
        return WASM_TRAP_BAD_CALL;
    }
    wasm_trap t = wasm_call(r->store, ex.of.func, av, na, res, nr, NULL);
    if (t == WASM_TRAP_BAD_CALL)
        snprintf(err, errlen, "argument mismatch calling %s", field);
    *nres = nr;
    return t;
}

static bool msg_match(const char *got, const char *want)
{
    if (!want || !got)
        return true;
    size_t lg = strlen(got), lw = strlen(want);
    return strncmp(got, want, lw) == 0 || (lg > 0 && strncmp(want, got, lg) == 0);
}

static void run_command(runner *r, json_t *c)
{
    const char *type = json_string_value(json_object_get(c, "type"));
    int line = (int)json_integer_value(json_object_get(c, "line"));
    const char *file = json_string_value(json_object_get(c, "filename"));
    const char *text = json_string_value(json_object_get(c, "text"));
    const char *mtype = json_string_value(json_object_get(c, "module_type"));
    char err[512] = "";
    if (!type)
        return;
    if (strcmp(type, "module") == 0) {
        r->current = NULL;
        wasm_module *m = load(r, file, err, sizeof err, NULL);
        if (!m) {
            failf(r, line, "module %s failed to load: %s", file, err);
            return;
        }
        wasm_instance *inst;
        wasm_inst_status st = wasm_instantiate(r->store, m, resolve, r, &inst, err, sizeof err);
        if (st != WASM_INST_OK) {
            failf(r, line, "module %s failed to instantiate: %s", file, err);
            return;
        }
        r->current = inst;
        const char *name = json_string_value(json_object_get(c, "name"));
        if (name)
            add_named(&r->names, &r->nnames, name, inst);
        r->passed++;
    } else if (strcmp(type, "register") == 0) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *as = json_string_value(json_object_get(c, "as"));
        wasm_instance *inst = find_named(r, name);
        if (!inst || !as) {
            failf(r, line, "register: no instance");
            return;
        }
        add_named(&r->registered, &r->nregistered, as, inst);
        r->passed++;
    } else if (strcmp(type, "action") == 0 || strcmp(type, "assert_return") == 0) {
        wasm_val res[MAXV];
        uint32_t nres;
        wasm_trap t = do_action(r, json_object_get(c, "action"), res, &nres, err, sizeof err);
        if (t != WASM_OK) {
            failf(r, line, "%s: %s", type, t == WASM_TRAP_BAD_CALL ? err : wasm_trap_message(t));
            return;
        }
        if (strcmp(type, "assert_return") == 0) {
            json_t *exp = json_object_get(c, "expected");
            if (json_array_size(exp) != nres) {
                failf(r, line, "result count %u, expected %zu", nres, json_array_size(exp));
                return;
            }
            for (uint32_t i = 0; i < nres; i++) {
                char why[256];
                if (!check_val(json_array_get(exp, i), &res[i], why, sizeof why)) {
                    failf(r, line, "result %u: %s", i, why);
                    return;
                }
            }
        }
        r->passed++;
    } else if (strcmp(type, "assert_trap") == 0 || strcmp(type, "assert_exhaustion") == 0) {
        wasm_val res[MAXV];
        uint32_t nres;
        wasm_trap t = do_action(r, json_object_get(c, "action"), res, &nres, err, sizeof err);
        if (t == WASM_OK) {
            failf(r, line, "%s: no trap, expected \"%s\"", type, text ? text : "");
            return;
        }
        if (t == WASM_TRAP_BAD_CALL) {
            failf(r, line, "%s: %s", type, err);
            return;
        }
        if (!msg_match(wasm_trap_message(t), text)) {
            failf(r, line, "%s: trap \"%s\", expected \"%s\"", type, wasm_trap_message(t), text);
            return;
        }
        r->passed++;
    } else if (strcmp(type, "assert_invalid") == 0 || strcmp(type, "assert_malformed") == 0) {
        if (mtype && strcmp(mtype, "text") == 0) {
            r->skipped_text++;
            return;
        }
        bool malformed = false;
        wasm_module *m = load(r, file, err, sizeof err, &malformed);
        if (m) {
            failf(r, line, "%s: module %s loaded, expected \"%s\"", type, file, text ? text : "");
            return;
        }
        if (r->verbose)
            printf("  ok %s:%d %s: got \"%s\", expected \"%s\"\n", r->json_name, line, type, err,
                   text ? text : "");
        if (msg_match(err, text))
            r->msg_same++;
        else
            r->msg_other++;
        r->passed++;
    } else if (strcmp(type, "assert_unlinkable") == 0 ||
               strcmp(type, "assert_uninstantiable") == 0) {
        wasm_module *m = load(r, file, err, sizeof err, NULL);
        if (!m) {
            failf(r, line, "%s: module %s failed to load: %s", type, file, err);
            return;
        }
        wasm_instance *inst;
        wasm_inst_status st = wasm_instantiate(r->store, m, resolve, r, &inst, err, sizeof err);
        wasm_inst_status want =
            strcmp(type, "assert_unlinkable") == 0 ? WASM_INST_LINK_ERROR : WASM_INST_TRAP;
        if (st != want) {
            failf(r, line, "%s: instantiation status %d (%s), expected \"%s\"", type, (int)st,
                  err, text ? text : "");
            return;
        }
        if (!msg_match(err, text)) {
            failf(r, line, "%s: error \"%s\", expected \"%s\"", type, err, text);
            return;
        }
        r->passed++;
    } else {
        failf(r, line, "unknown command %s", type);
    }
}

int main(int argc, char **argv)
{
    runner r;
    memset(&r, 0, sizeof r);
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-v") == 0) {
        r.verbose = true;
        argi++;
    }
    if (argi >= argc) {
        fprintf(stderr, "usage: %s [-v] FILE.json\n", argv[0]);
        return 2;
    }
    const char *path = argv[argi];
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!root) {
        fprintf(stderr, "%s: %s (line %d)\n", path, jerr.text, jerr.line);
        return 2;
    }
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(r.dir, sizeof r.dir, "%.*s", (int)(slash - path), path);
    else
        snprintf(r.dir, sizeof r.dir, ".");
    r.json_name = slash ? slash + 1 : path;
    wasm_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.timeout_ns = 30ull * 1000000000ull; /* a runaway test fails instead of hanging */
    r.store = wasm_store_new(&lim);
    if (!r.store) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    spectest_init(&r);
    json_t *cmds = json_object_get(root, "commands");
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c) run_command(&r, c);
    if (r.msg_same + r.msg_other)
        printf("%s: rejections with the spec's message: %d of %d\n", r.json_name, r.msg_same,
               r.msg_same + r.msg_other);
    printf("%s: %d passed, %d failed, %d skipped (text format)\n", r.json_name, r.passed, r.failed,
           r.skipped_text);
    wasm_store_free(r.store);
    for (size_t k = 0; k < r.nmodules; k++)
        wasm_module_free(r.modules[k]);
    free(r.modules);
    for (size_t k = 0; k < r.nnames; k++)
        free(r.names[k].name);
    free(r.names);
    for (size_t k = 0; k < r.nregistered; k++)
        free(r.registered[k].name);
    free(r.registered);
    json_decref(root);
    return r.failed ? 1 : 0;
}
