/* decode.c - WebAssembly binary format decoder.
 *
 * Reads a module's sections into struct wasm_module: LEB128 with exact
 * bounds, UTF-8 names, section order and sizes, limits, constant
 * expressions, element/data segment encodings.  Function bodies are only
 * delimited here (locals decoded); their instructions are decoded by the
 * validator, which lowers them at the same time.  Any malformation ends in a
 * longjmp back to wasm_decode with a message in the spec's words. */
#include "wasm_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p, *end;
    jmp_buf jb;
    char *err;
    size_t errlen;
} rd;

static _Noreturn void fail(rd *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    longjmp(r->jb, 1);
}

static void *xcalloc(rd *r, size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        fail(r, "out of memory");
    return p;
}

static uint8_t rd_byte(rd *r)
{
    if (r->p >= r->end)
        fail(r, "unexpected end");
    return *r->p++;
}

static uint64_t rd_uleb(rd *r, unsigned bits)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
        uint8_t b = rd_byte(r);
        if (shift + 7 >= bits) {
            unsigned used = bits - shift;
            if (b & 0x80)
                fail(r, "integer representation too long");
            if (used < 7 && ((b & 0x7f) >> used) != 0)
                fail(r, "integer too large");
            v |= (uint64_t)(b & 0x7f) << shift;
            return v;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
        shift += 7;
    }
}

static int64_t rd_sleb(rd *r, unsigned bits)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    for (;;) {
        b = rd_byte(r);
        if (shift + 7 >= bits) {
            unsigned used = bits - shift;
            if (b & 0x80)
                fail(r, "integer representation too long");
            if (used < 7) {
                uint8_t p = b & 0x7f;
                uint8_t mask = (uint8_t)(0x7f & ~((1u << used) - 1));
                bool sign = (p >> (used - 1)) & 1;
                if ((p & mask) != (sign ? mask : 0))
                    fail(r, "integer too large");
            }
            v |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            break;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    if (shift < 64 && (b & 0x40))
        v |= ~(uint64_t)0 << shift;
    return (int64_t)v;
}

static uint32_t rd_u32(rd *r)
{
    return (uint32_t)rd_uleb(r, 32);
}

static void rd_bytes(rd *r, void *out, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        fail(r, "unexpected end");
    memcpy(out, r->p, n);
    r->p += n;
}

/* vector length, sanity-checked against remaining bytes (each element >= 1 byte) */
static uint32_t rd_count(rd *r)
{
    uint32_t n = rd_u32(r);
    if (n > (size_t)(r->end - r->p))
        fail(r, "unexpected end of section or function");
    return n;
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len;
        if ((c & 0xe0) == 0xc0) {
            cp = c & 0x1f;
            len = 2;
        } else if ((c & 0xf0) == 0xe0) {
            cp = c & 0x0f;
            len = 3;
        } else if ((c & 0xf8) == 0xf0) {
            cp = c & 0x07;
            len = 4;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
            return false;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static char *rd_name_n(rd *r, uint32_t *len)
{
    uint32_t n = rd_u32(r);
    if (len)
        *len = n;
    if (n > (size_t)(r->end - r->p))
        fail(r, "unexpected end");
    if (!utf8_ok(r->p, n))
        fail(r, "malformed UTF-8 encoding");
    char *s = xcalloc(r, (size_t)n + 1, 1);
    memcpy(s, r->p, n);
    r->p += n;
    return s;
}

static char *rd_name(rd *r)
{
    return rd_name_n(r, NULL);
}

static uint8_t rd_valtype(rd *r)
{
    uint8_t t = rd_byte(r);
    switch (t) {
    case WASM_I32: case WASM_I64: case WASM_F32: case WASM_F64:
    case WASM_FUNCREF: case WASM_EXTERNREF:
        return t;
    default:
        fail(r, "malformed value type 0x%02x", t);
    }
}

static uint8_t rd_reftype(rd *r)
{
    uint8_t t = rd_byte(r);
    if (t != WASM_FUNCREF && t != WASM_EXTERNREF)
        fail(r, "malformed reference type");
    return t;
}

static void rd_limits(rd *r, wlimits *l, uint32_t cap, const char *what)
{
    uint8_t flag = rd_byte(r);
    if (flag & 0x80)
        fail(r, "integer representation too long");
    if (flag > 1)
        fail(r, "integer too large");
    l->min = rd_u32(r);
    l->has_max = flag == 1;
    l->max = l->has_max ? rd_u32(r) : 0;
    (void)cap;
    (void)what;
}

static void rd_tabletype(rd *r, wtabletype *t)
{
    t->elem = rd_reftype(r);
    rd_limits(r, &t->lim, UINT32_MAX, "table");
}

static void rd_globaltype(rd *r, wglobaltype *g)
{
    g->type = rd_valtype(r);
    uint8_t m = rd_byte(r);
    if (m > 1)
        fail(r, "malformed mutability");
    g->mut = m == 1;
}

/* constant expression: one constant instruction then end */
static void rd_const(rd *r, wconst *c)
{
    uint8_t op = rd_byte(r);
    memset(c, 0, sizeof *c);
    switch (op) {
    case 0x41:
        c->op = WC_I32;
        c->type = WASM_I32;
        c->bits = (uint32_t)rd_sleb(r, 32);
        break;
    case 0x42:
        c->op = WC_I64;
        c->type = WASM_I64;
        c->bits = (uint64_t)rd_sleb(r, 64);
        break;
    case 0x43: {
        uint8_t b[4];
        rd_bytes(r, b, 4);
        c->op = WC_F32;
        c->type = WASM_F32;
        c->bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        break;
    }
    case 0x44: {
        uint8_t b[8];
        rd_bytes(r, b, 8);
        c->op = WC_F64;
        c->type = WASM_F64;
        for (int i = 7; i >= 0; i--)
            c->bits = (c->bits << 8) | b[i];
        break;
    }
    case 0xd0:
        c->op = WC_REF_NULL;
        c->type = rd_reftype(r);
        break;
    case 0xd2:
        c->op = WC_REF_FUNC;
        c->type = WASM_FUNCREF;
        c->idx = rd_u32(r);
        break;
    case 0x23:
        c->op = WC_GLOBAL_GET;
        c->idx = rd_u32(r);
        break;
    case 0x0b:
        fail(r, "type mismatch");
    default:
        fail(r, "constant expression required");
    }
    /* more instructions: non-constant ones are "constant expression
     * required", extra constants a "type mismatch" */
    bool extra = false;
    for (;;) {
        uint8_t e = rd_byte(r);
        if (e == 0x0b) {
            if (extra)
                fail(r, "type mismatch");
            return;
        }
        extra = true;
        switch (e) {
        case 0x41: rd_sleb(r, 32); break;
        case 0x42: rd_sleb(r, 64); break;
        case 0x43: { uint8_t b[4]; rd_bytes(r, b, 4); break; }
        case 0x44: { uint8_t b[8]; rd_bytes(r, b, 8); break; }
        case 0xd0: rd_reftype(r); break;
        case 0xd2: case 0x23: rd_u32(r); break;
        default: fail(r, "constant expression required");
        }
    }
}

static void *grow_arr(rd *r, void *p, uint32_t oldn, uint32_t addn, size_t sz)
{
    size_t n = (size_t)oldn + addn;
    void *q = realloc(p, (n ? n : 1) * sz);
    if (!q)
        fail(r, "out of memory");
    memset((char *)q + (size_t)oldn * sz, 0, (size_t)addn * sz);
    return q;
}

static void sec_type(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->types = xcalloc(r, n, sizeof *m->types);
    for (uint32_t i = 0; i < n; i++) {
        if (rd_byte(r) != 0x60)
            fail(r, "integer representation too long");
        uint32_t np = rd_count(r);
        wfunctype *ft = &m->types[i];
        ft->types = xcalloc(r, np, 1);
        m->ntypes = i + 1;
        for (uint32_t k = 0; k < np; k++)
            ft->types[k] = rd_valtype(r);
        uint32_t nr = rd_count(r);
        uint8_t *grown = realloc(ft->types, (size_t)np + nr + 1);
        if (!grown)
            fail(r, "out of memory");
        ft->types = grown;
        for (uint32_t k = 0; k < nr; k++)
            ft->types[np + k] = rd_valtype(r);
        ft->nparams = np;
        ft->nresults = nr;
    }
}

static void sec_import(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->imports = xcalloc(r, n, sizeof *m->imports);
    for (uint32_t i = 0; i < n; i++) {
        wimport *im = &m->imports[i];
        m->nimports = i + 1;
        im->module = rd_name(r);
        im->name = rd_name(r);
        im->kind = rd_byte(r);
        switch (im->kind) {
        case 0: {
            uint32_t t = rd_u32(r);
            if (t >= m->ntypes)
                fail(r, "unknown type");
            m->func_types = grow_arr(r, m->func_types, m->nfuncs, 1, sizeof *m->func_types);
            m->func_types[m->nfuncs] = t;
            im->index = m->nfuncs++;
            m->nfunc_imports++;
            break;
        }
        case 1:
            m->tables = grow_arr(r, m->tables, m->ntables, 1, sizeof *m->tables);
            rd_tabletype(r, &m->tables[m->ntables]);
            im->index = m->ntables++;
            m->ntable_imports++;
            break;
        case 2:
            m->mems = grow_arr(r, m->mems, m->nmems, 1, sizeof *m->mems);
            rd_limits(r, &m->mems[m->nmems], WASM_MAX_PAGES, "memory");
            im->index = m->nmems++;
            m->nmem_imports++;
            break;
        case 3:
            m->globals = grow_arr(r, m->globals, m->nglobals, 1, sizeof *m->globals);
            m->global_inits = grow_arr(r, m->global_inits, m->nglobals, 1, sizeof *m->global_inits);
            rd_globaltype(r, &m->globals[m->nglobals]);
            im->index = m->nglobals++;
            m->nglobal_imports++;
            break;
        default:
            fail(r, "malformed import kind");
        }
    }
}

static void sec_function(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->func_types = grow_arr(r, m->func_types, m->nfuncs, n, sizeof *m->func_types);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = rd_u32(r);
        if (t >= m->ntypes)
            fail(r, "unknown type");
        m->func_types[m->nfuncs++] = t;
    }
}

static void sec_table(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->tables = grow_arr(r, m->tables, m->ntables, n, sizeof *m->tables);
    for (uint32_t i = 0; i < n; i++)
        rd_tabletype(r, &m->tables[m->ntables++]);
}

static void sec_memory(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->mems = grow_arr(r, m->mems, m->nmems, n, sizeof *m->mems);
    for (uint32_t i = 0; i < n; i++)
        rd_limits(r, &m->mems[m->nmems++], WASM_MAX_PAGES, "memory");
}

static void sec_global(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->globals = grow_arr(r, m->globals, m->nglobals, n, sizeof *m->globals);
    m->global_inits = grow_arr(r, m->global_inits, m->nglobals, n, sizeof *m->global_inits);
    for (uint32_t i = 0; i < n; i++) {
        rd_globaltype(r, &m->globals[m->nglobals]);
        rd_const(r, &m->global_inits[m->nglobals]);
        m->nglobals++;
    }
}

static void sec_export(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->exports = xcalloc(r, n, sizeof *m->exports);
    for (uint32_t i = 0; i < n; i++) {
        wexport *e = &m->exports[i];
        m->nexports = i + 1;
        e->name = rd_name_n(r, &e->name_len);
        e->kind = rd_byte(r);
        if (e->kind > 3)
            fail(r, "malformed export kind");
        e->index = rd_u32(r);
    }
}

static void sec_elem(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    m->elems = xcalloc(r, n, sizeof *m->elems);
    for (uint32_t i = 0; i < n; i++) {
        welem *e = &m->elems[i];
        m->nelems = i + 1;
        uint32_t flags = rd_u32(r);
        if (flags > 7)
            fail(r, "malformed elements segment kind");
        e->type = WASM_FUNCREF;
        e->mode = (flags & 1) ? ((flags & 2) ? SEG_DECLARATIVE : SEG_PASSIVE) : SEG_ACTIVE;
        if (e->mode == SEG_ACTIVE) {
            e->table = (flags & 2) ? rd_u32(r) : 0;
            rd_const(r, &e->offset);
        }
        bool exprs = flags & 4;
        if (flags & 3) {
            if (exprs) {
                e->type = rd_reftype(r);
            } else if (rd_byte(r) != 0x00) {
                fail(r, "malformed element kind");
            }
        }
        e->n = rd_count(r);
        e->items = xcalloc(r, e->n, sizeof *e->items);
        for (uint32_t k = 0; k < e->n; k++) {
            if (exprs) {
                rd_const(r, &e->items[k]);
            } else {
                e->items[k].op = WC_REF_FUNC;
                e->items[k].type = WASM_FUNCREF;
                e->items[k].idx = rd_u32(r);
            }
        }
    }
}

static void sec_code(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    if (n != m->nfuncs - m->nfunc_imports)
        fail(r, "function and code section have inconsistent lengths");
    m->codes = xcalloc(r, n, sizeof *m->codes);
    for (uint32_t i = 0; i < n; i++) {
        wcode *c = &m->codes[i];
        uint32_t size = rd_u32(r);
        if (size > (size_t)(r->end - r->p))
            fail(r, "unexpected end");
        const uint8_t *outer = r->end;
        r->end = r->p + size;
        const wfunctype *ft = &m->types[m->func_types[m->nfunc_imports + i]];
        uint32_t ngroups = rd_u32(r);
        uint64_t total = ft->nparams;
        const uint8_t *gstart = r->p;
        for (uint32_t g = 0; g < ngroups; g++) {
            if (r->p >= r->end)
                fail(r, "unexpected end");
            uint32_t cnt = rd_u32(r);
            total += cnt;
            if (total > 0xffffffffu)
                fail(r, "too many locals");
            rd_valtype(r);
        }
        if (total > 50000)
            fail(r, "too many locals");
        c->nlocals = (uint32_t)total;
        c->local_types = xcalloc(r, total, 1);
        memcpy(c->local_types, ft->types, ft->nparams);
        r->p = gstart;
        uint32_t at = ft->nparams;
        for (uint32_t g = 0; g < ngroups; g++) {
            uint32_t cnt = rd_u32(r);
            uint8_t t = rd_valtype(r);
            memset(c->local_types + at, t, cnt);
            at += cnt;
        }
        c->body = r->p;
        c->end = r->end;
        c->nparams = ft->nparams;
        c->nresults = ft->nresults;
        r->p = r->end;
        r->end = outer;
    }
}

static void sec_data(rd *r, struct wasm_module *m)
{
    uint32_t n = rd_count(r);
    if (m->has_datacount && n != m->datacount)
        fail(r, "data count and data section have inconsistent lengths");
    m->datas = xcalloc(r, n, sizeof *m->datas);
    for (uint32_t i = 0; i < n; i++) {
        wdata *d = &m->datas[i];
        m->ndatas = i + 1;
        uint32_t flags = rd_u32(r);
        if (flags > 2)
            fail(r, "malformed data segment kind");
        d->mode = flags == 1 ? SEG_PASSIVE : SEG_ACTIVE;
        if (flags == 2 && rd_u32(r) != 0)
            fail(r, "unknown memory %u", 1);
        if (d->mode == SEG_ACTIVE)
            rd_const(r, &d->offset);
        d->len = rd_u32(r);
        if (d->len > (size_t)(r->end - r->p))
            fail(r, "unexpected end of section or function");
        d->bytes = r->p;
        r->p += d->len;
    }
}

static int sec_rank(uint8_t id)
{
    static const int rank[13] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 10};
    return rank[id];
}

static void decode_all(rd *r, struct wasm_module *m)
{
    static const uint8_t magic[4] = {0, 'a', 's', 'm'};
    static const uint8_t version[4] = {1, 0, 0, 0};
    size_t have = (size_t)(r->end - r->p);
    if (memcmp(r->p, magic, have < 4 ? have : 4) != 0)
        fail(r, "magic header not detected");
    if (have < 4)
        fail(r, "unexpected end");
    r->p += 4;
    have = (size_t)(r->end - r->p);
    if (memcmp(r->p, version, have < 4 ? have : 4) != 0)
        fail(r, "unknown binary version");
    if (have < 4)
        fail(r, "unexpected end");
    r->p += 4;
    int last = 0;
    bool saw_code = false, saw_data = false;
    while (r->p < r->end) {
        uint8_t id = rd_byte(r);
        if (id > 12)
            fail(r, "malformed section id");
        uint32_t size = rd_u32(r);
        if (size > (size_t)(r->end - r->p))
            fail(r, "length out of bounds");
        const uint8_t *send = r->p + size;
        const uint8_t *outer_end = r->end;
        r->end = send;
        if (id == 0) {
            char *name = rd_name(r);
            free(name);
            r->p = send;
        } else {
            int rk = sec_rank(id);
            if (rk <= last)
                fail(r, "unexpected content after last section");
            last = rk;
            switch (id) {
            case 1: sec_type(r, m); break;
            case 2: sec_import(r, m); break;
            case 3: sec_function(r, m); break;
            case 4: sec_table(r, m); break;
            case 5: sec_memory(r, m); break;
            case 6: sec_global(r, m); break;
            case 7: sec_export(r, m); break;
            case 8:
                m->has_start = true;
                m->start = rd_u32(r);
                break;
            case 9: sec_elem(r, m); break;
            case 10: sec_code(r, m); saw_code = true; break;
            case 11: sec_data(r, m); saw_data = true; break;
            case 12:
                m->has_datacount = true;
                m->datacount = rd_u32(r);
                break;
            default: break;
            }
            if (r->p != send)
                fail(r, "section size mismatch");
        }
        r->end = outer_end;
    }
    if (!saw_code && m->nfuncs != m->nfunc_imports)
        fail(r, "function and code section have inconsistent lengths");
    if (!saw_data && m->has_datacount && m->datacount != 0)
        fail(r, "data count and data section have inconsistent lengths");
}

bool wasm_decode(struct wasm_module *m, char *err, size_t errlen)
{
    rd r;
    r.p = m->bytes;
    r.end = m->bytes + m->len;
    r.err = err;
    r.errlen = errlen;
    if (setjmp(r.jb))
        return false;
    decode_all(&r, m);
    return true;
}
