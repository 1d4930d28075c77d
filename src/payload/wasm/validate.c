/* validate.c - WebAssembly validator and lowering to the internal form.
 *
 * Module-level checks (indices, limits, constant expressions, exports,
 * start function, segments) and the spec's type-checking algorithm for
 * function bodies (operand and control stacks, polymorphic stack after
 * unreachable code).  The same pass emits the internal instruction array:
 * because validation knows the exact operand-stack height at every
 * reachable instruction, branches are lowered to "jump to pc, keep arity
 * values at height h" with targets patched when a block ends, so the
 * interpreter never scans for end/else and keeps no label stack.  A small
 * peephole pass fuses common sequences (local.get pairs, i++ patterns,
 * compare + branch) into superinstructions, never across a branch target. */
#include "wasm_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctrl {
    uint8_t kind; /* 0x02 block, 0x03 loop, 0x04 if, 0x05 else, 0 function */
    uint32_t nin, nout;
    const uint8_t *in, *out;
    uint32_t height;
    bool unreachable;
    uint32_t start_pc;  /* loop target */
    uint32_t fix_head;  /* chain of instructions to patch with the end pc */
    uint32_t else_fix;  /* JMP_UNLESS of an if, UINT32_MAX if none */
} ctrl;

#define NO_FIX UINT32_MAX

typedef struct vctx {
    struct wasm_module *m;
    const uint8_t *p, *end;
    jmp_buf jb;
    char *err;
    size_t errlen;
    /* operand stack of types */
    uint8_t *vals;
    uint32_t nvals, cap_vals, max_vals;
    ctrl *ctrls;
    uint32_t nctrls, cap_ctrls;
    wins *code;
    uint32_t ncode, cap_code;
    uint32_t barrier; /* first code index that may be fused with its predecessor */
    wcode *fn;
} vctx;

static const uint8_t vt_self[256] = {
    [WASM_I32] = WASM_I32, [WASM_I64] = WASM_I64, [WASM_F32] = WASM_F32,
    [WASM_F64] = WASM_F64, [WASM_FUNCREF] = WASM_FUNCREF, [WASM_EXTERNREF] = WASM_EXTERNREF,
};

static _Noreturn void fail(vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, v->errlen, fmt, ap);
    va_end(ap);
    longjmp(v->jb, 1);
}

/* ---- byte reading (instruction stream) ---- */

static uint8_t rbyte(vctx *v)
{
    if (v->p >= v->end)
        fail(v, "END opcode expected");
    return *v->p++;
}

static uint64_t ruleb(vctx *v, unsigned bits)
{
    uint64_t r = 0;
    unsigned shift = 0;
    for (;;) {
        uint8_t b = rbyte(v);
        if (shift + 7 >= bits) {
            unsigned used = bits - shift;
            if (b & 0x80)
                fail(v, "integer representation too long");
            if (used < 7 && ((b & 0x7f) >> used) != 0)
                fail(v, "integer too large");
            return r | (uint64_t)(b & 0x7f) << shift;
        }
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return r;
        shift += 7;
    }
}

static int64_t rsleb(vctx *v, unsigned bits)
{
    uint64_t r = 0;
    unsigned shift = 0;
    uint8_t b;
    for (;;) {
        b = rbyte(v);
        if (shift + 7 >= bits) {
            unsigned used = bits - shift;
            if (b & 0x80)
                fail(v, "integer representation too long");
            if (used < 7) {
                uint8_t p = b & 0x7f;
                uint8_t mask = (uint8_t)(0x7f & ~((1u << used) - 1));
                bool sign = (p >> (used - 1)) & 1;
                if ((p & mask) != (sign ? mask : 0))
                    fail(v, "integer too large");
            }
            r |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            break;
        }
        r |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    if (shift < 64 && (b & 0x40))
        r |= ~(uint64_t)0 << shift;
    return (int64_t)r;
}

static uint32_t ru32(vctx *v)
{
    return (uint32_t)ruleb(v, 32);
}

/* ---- operand / control stacks ---- */

static void push(vctx *v, uint8_t t)
{
    if (v->nvals == v->cap_vals) {
        uint32_t nc = v->cap_vals ? v->cap_vals * 2 : 64;
        uint8_t *n = realloc(v->vals, nc);
        if (!n)
            fail(v, "out of memory");
        v->vals = n;
        v->cap_vals = nc;
    }
    v->vals[v->nvals++] = t;
    if (v->nvals > v->max_vals)
        v->max_vals = v->nvals;
}

static uint8_t pop(vctx *v)
{
    ctrl *c = &v->ctrls[v->nctrls - 1];
    if (v->nvals == c->height) {
        if (c->unreachable)
            return WASM_T_UNKNOWN;
        fail(v, "type mismatch");
    }
    return v->vals[--v->nvals];
}

static uint8_t pop_expect(vctx *v, uint8_t t)
{
    uint8_t a = pop(v);
    if (a != t && a != WASM_T_UNKNOWN && t != WASM_T_UNKNOWN)
        fail(v, "type mismatch");
    return a == WASM_T_UNKNOWN ? t : a;
}

static void pop_vals(vctx *v, uint32_t n, const uint8_t *ts)
{
    for (uint32_t i = n; i-- > 0;)
        pop_expect(v, ts[i]);
}

static void push_vals(vctx *v, uint32_t n, const uint8_t *ts)
{
    for (uint32_t i = 0; i < n; i++)
        push(v, ts[i]);
}

static bool is_num(uint8_t t)
{
    return t == WASM_I32 || t == WASM_I64 || t == WASM_F32 || t == WASM_F64 || t == WASM_T_UNKNOWN;
}

static bool is_ref(uint8_t t)
{
    return t == WASM_FUNCREF || t == WASM_EXTERNREF || t == WASM_T_UNKNOWN;
}

static ctrl *push_ctrl(vctx *v, uint8_t kind, uint32_t nin, const uint8_t *in, uint32_t nout,
                       const uint8_t *out)
{
    if (v->nctrls == v->cap_ctrls) {
        uint32_t nc = v->cap_ctrls ? v->cap_ctrls * 2 : 16;
        ctrl *n = realloc(v->ctrls, nc * sizeof *n);
        if (!n)
            fail(v, "out of memory");
        v->ctrls = n;
        v->cap_ctrls = nc;
    }
    ctrl *c = &v->ctrls[v->nctrls++];
    c->kind = kind;
    c->nin = nin;
    c->in = in;
    c->nout = nout;
    c->out = out;
    c->height = v->nvals;
    c->unreachable = false;
    c->start_pc = v->ncode;
    v->barrier = v->ncode; /* loop start: a branch target */
    c->fix_head = NO_FIX;
    c->else_fix = NO_FIX;
    push_vals(v, nin, in);
    return c;
}

static void set_unreachable(vctx *v)
{
    ctrl *c = &v->ctrls[v->nctrls - 1];
    v->nvals = c->height;
    c->unreachable = true;
}

/* ---- code emission ---- */

/* Peephole fusion with the previous instruction, unless a branch target
 * lies between them.  Returns true if op was absorbed into code[ncode-1]. */
static bool fuse(vctx *v, uint32_t op, uint32_t a, uint64_t b)
{
    if (v->ncode <= v->barrier)
        return false;
    wins *p = &v->code[v->ncode - 1];
    if (p->op >= 0x46 && p->op <= 0x4f && (op == OP_JMP_IF || op == OP_JMP_UNLESS)) {
        /* i32 compare + branch; for "unless", branch on the negation */
        static const uint8_t negate[10] = {1, 0, 8, 9, 6, 7, 4, 5, 2, 3};
        uint32_t k = p->op - 0x46;
        p->op = OP_JIF_EQ + (op == OP_JMP_IF ? k : negate[k]);
        p->a = a;
        p->b = b;
        return true;
    }
    switch (p->op) {
    case 0x45: /* i32.eqz */
        if (op == OP_JMP_IF || op == OP_JMP_UNLESS) {
            p->op = op == OP_JMP_IF ? OP_JMPZ_F : OP_JMPNZ_F;
            p->a = a;
            p->b = b;
            return true;
        }
        return false;
    case 0x20: /* local.get */
        if (op == 0x20) {
            p->op = OP_LG2;
            p->b = a;
            return true;
        }
        if (op == 0x41 || op == 0x42) {
            p->op = OP_LG_C;
            p->b = b;
            return true;
        }
        return false;
    case OP_LG2:
        if (op == 0x6a) {
            p->op = OP_LG2_ADD;
            return true;
        }
        return false;
    case OP_LG_C:
        if (op == 0x6a || op == 0x6b) {
            uint32_t c = (uint32_t)p->b;
            p->op = OP_LG_ADDC;
            p->b = op == 0x6a ? c : 0u - c;
            return true;
        }
        return false;
    case OP_LG2_ADD:
        if (op == 0x21) {
            p->op = OP_LL_ADD_SET;
            p->b = WINS_PAIR((uint32_t)p->b, a);
            return true;
        }
        return false;
    case OP_LG_ADDC:
        if (op == 0x21) {
            p->op = OP_L_ADDC_SET;
            p->b = WINS_PAIR((uint32_t)p->b, a);
            return true;
        }
        return false;
    default:
        return false;
    }
}

static uint32_t emit(vctx *v, uint32_t op, uint32_t a, uint64_t b)
{
    if (fuse(v, op, a, b))
        return v->ncode - 1;
    if (v->ncode == v->cap_code) {
        uint32_t nc = v->cap_code ? v->cap_code * 2 : 64;
        wins *n = realloc(v->code, nc * sizeof *n);
        if (!n)
            fail(v, "out of memory");
        v->code = n;
        v->cap_code = nc;
    }
    wins *i = &v->code[v->ncode];
    i->op = op;
    i->a = a;
    i->b = b;
    return v->ncode++;
}

static uint32_t height_slots(vctx *v, uint32_t h)
{
    return v->fn->nlocals + h;
}

/* Emit a branch (op OP_BR or OP_BR_IF family, or a br_table entry) to label
 * depth d.  Returns nothing; forward targets are chained for patching. */
static void emit_branch(vctx *v, uint32_t d, bool cond, bool table_entry)
{
    ctrl *c = &v->ctrls[v->nctrls - 1 - d];
    uint32_t arity = c->kind == 0x03 ? c->nin : c->nout;
    uint32_t h = height_slots(v, c->height);
    uint32_t cur = height_slots(v, v->nvals);
    bool move = table_entry || cur < arity || cur - arity != h;
    uint32_t op = table_entry ? OP_BR : cond ? (move ? OP_BR_IF : OP_JMP_IF) : (move ? OP_BR : OP_JMP);
    uint32_t at = emit(v, op, 0, WINS_PAIR(h, arity));
    if (c->kind == 0x03) {
        v->code[at].a = (uint32_t)((int32_t)c->start_pc - (int32_t)at);
    } else {
        v->code[at].a = c->fix_head;
        c->fix_head = at;
    }
}

static void patch_chain(vctx *v, uint32_t head, uint32_t target)
{
    while (head != NO_FIX) {
        uint32_t next = v->code[head].a;
        v->code[head].a = (uint32_t)((int32_t)target - (int32_t)head);
        head = next;
    }
}

/* ---- helpers ---- */

static void need_mem(vctx *v)
{
    if (v->m->nmems == 0)
        fail(v, "unknown memory 0");
}

static void memarg(vctx *v, uint32_t natural_log2, uint32_t *offset)
{
    uint32_t align = ru32(v);
    *offset = ru32(v);
    need_mem(v);
    if (align > natural_log2)
        fail(v, "alignment must not be larger than natural");
}

static void need_table(vctx *v, uint32_t t)
{
    if (t >= v->m->ntables)
        fail(v, "unknown table %u", t);
}

static void block_type(vctx *v, uint32_t *nin, const uint8_t **in, uint32_t *nout,
                       const uint8_t **out)
{
    uint8_t b = v->p < v->end ? *v->p : 0;
    if (b == 0x40) {
        v->p++;
        *nin = *nout = 0;
        *in = *out = NULL;
        return;
    }
    if (b == WASM_I32 || b == WASM_I64 || b == WASM_F32 || b == WASM_F64 || b == WASM_FUNCREF ||
        b == WASM_EXTERNREF) {
        v->p++;
        *nin = 0;
        *in = NULL;
        *nout = 1;
        *out = &vt_self[b];
        return;
    }
    int64_t idx = rsleb(v, 33);
    if (idx < 0 || (uint64_t)idx >= v->m->ntypes)
        fail(v, "unknown type");
    const wfunctype *ft = &v->m->types[idx];
    *nin = ft->nparams;
    *in = ft->types;
    *nout = ft->nresults;
    *out = ft->types + ft->nparams;
}

/* numeric opcode signatures: in1, in2 (0 = none), out */
typedef struct nsig {
    uint8_t a, b, r;
} nsig;

static bool numeric_sig(uint32_t op, nsig *s)
{
    const uint8_t I = WASM_I32, L = WASM_I64, F = WASM_F32, D = WASM_F64;
#define S(x, y, z) (*s = (nsig){x, y, z}, true)
    if (op == 0x45) return S(I, 0, I);
    if (op >= 0x46 && op <= 0x4f) return S(I, I, I);
    if (op == 0x50) return S(L, 0, I);
    if (op >= 0x51 && op <= 0x5a) return S(L, L, I);
    if (op >= 0x5b && op <= 0x60) return S(F, F, I);
    if (op >= 0x61 && op <= 0x66) return S(D, D, I);
    if (op >= 0x67 && op <= 0x69) return S(I, 0, I);
    if (op >= 0x6a && op <= 0x78) return S(I, I, I);
    if (op >= 0x79 && op <= 0x7b) return S(L, 0, L);
    if (op >= 0x7c && op <= 0x8a) return S(L, L, L);
    if (op >= 0x8b && op <= 0x91) return S(F, 0, F);
    if (op >= 0x92 && op <= 0x98) return S(F, F, F);
    if (op >= 0x99 && op <= 0x9f) return S(D, 0, D);
    if (op >= 0xa0 && op <= 0xa6) return S(D, D, D);
    switch (op) {
    case 0xa7: return S(L, 0, I);
    case 0xa8: case 0xa9: return S(F, 0, I);
    case 0xaa: case 0xab: return S(D, 0, I);
    case 0xac: case 0xad: return S(I, 0, L);
    case 0xae: case 0xaf: return S(F, 0, L);
    case 0xb0: case 0xb1: return S(D, 0, L);
    case 0xb2: case 0xb3: return S(I, 0, F);
    case 0xb4: case 0xb5: return S(L, 0, F);
    case 0xb6: return S(D, 0, F);
    case 0xb7: case 0xb8: return S(I, 0, D);
    case 0xb9: case 0xba: return S(L, 0, D);
    case 0xbb: return S(F, 0, D);
    case 0xbc: return S(F, 0, I);
    case 0xbd: return S(D, 0, L);
    case 0xbe: return S(I, 0, F);
    case 0xbf: return S(L, 0, D);
    case 0xc0: case 0xc1: return S(I, 0, I);
    case 0xc2: case 0xc3: case 0xc4: return S(L, 0, L);
    case OP_FC + 0: case OP_FC + 1: return S(F, 0, I);
    case OP_FC + 2: case OP_FC + 3: return S(D, 0, I);
    case OP_FC + 4: case OP_FC + 5: return S(F, 0, L);
    case OP_FC + 6: case OP_FC + 7: return S(D, 0, L);
    default: return false;
    }
#undef S
}

/* load/store: natural alignment log2 and value type */
static bool mem_sig(uint32_t op, uint32_t *align, uint8_t *t, bool *store)
{
    static const uint8_t al[] = {2, 3, 2, 3, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 3, 2, 3, 0, 1, 0, 1, 2};
    static const uint8_t ty[] = {WASM_I32, WASM_I64, WASM_F32, WASM_F64, WASM_I32, WASM_I32,
                                 WASM_I32, WASM_I32, WASM_I64, WASM_I64, WASM_I64, WASM_I64,
                                 WASM_I64, WASM_I64, WASM_I32, WASM_I64, WASM_F32, WASM_F64,
                                 WASM_I32, WASM_I32, WASM_I64, WASM_I64, WASM_I64};
    if (op < 0x28 || op > 0x3e)
        return false;
    *align = al[op - 0x28];
    *t = ty[op - 0x28];
    *store = op >= 0x36;
    return true;
}

/* ---- function bodies ---- */

static void validate_body(vctx *v, wcode *fn, const wfunctype *ft)
{
    struct wasm_module *m = v->m;
    v->fn = fn;
    v->p = fn->body;
    v->end = fn->end;
    v->nvals = v->max_vals = 0;
    v->nctrls = 0;
    v->ncode = 0;
    v->barrier = 0;
    push_ctrl(v, 0, 0, NULL, ft->nresults, ft->types + ft->nparams);

    while (v->nctrls > 0) {
        uint8_t op = rbyte(v);
        switch (op) {
        case 0x00:
            emit(v, 0x00, 0, 0);
            set_unreachable(v);
            break;
        case 0x01:
            break;
        case 0x02:
        case 0x03: {
            uint32_t nin, nout;
            const uint8_t *in, *out;
            block_type(v, &nin, &in, &nout, &out);
            pop_vals(v, nin, in);
            push_ctrl(v, op, nin, in, nout, out);
            break;
        }
        case 0x04: {
            uint32_t nin, nout;
            const uint8_t *in, *out;
            block_type(v, &nin, &in, &nout, &out);
            pop_expect(v, WASM_I32);
            pop_vals(v, nin, in);
            uint32_t at = emit(v, OP_JMP_UNLESS, 0, 0);
            ctrl *c = push_ctrl(v, op, nin, in, nout, out);
            c->else_fix = at;
            break;
        }
        case 0x05: {
            ctrl *c = &v->ctrls[v->nctrls - 1];
            if (c->kind != 0x04)
                fail(v, "else without if");
            pop_vals(v, c->nout, c->out);
            if (v->nvals != c->height)
                fail(v, "type mismatch");
            /* then-branch jumps over the else part */
            uint32_t at = emit(v, OP_JMP, c->fix_head, 0);
            c->fix_head = at;
            v->code[c->else_fix].a = (uint32_t)((int32_t)v->ncode - (int32_t)c->else_fix);
            c->else_fix = NO_FIX;
            v->barrier = v->ncode; /* start of the else part: a branch target */
            c->kind = 0x05;
            c->unreachable = false;
            push_vals(v, c->nin, c->in);
            break;
        }
        case 0x0b: {
            ctrl *c = &v->ctrls[v->nctrls - 1];
            pop_vals(v, c->nout, c->out);
            if (v->nvals != c->height)
                fail(v, "type mismatch");
            if (c->kind == 0x04) {
                if (c->nin != c->nout || (c->nin && memcmp(c->in, c->out, c->nin) != 0))
                    fail(v, "type mismatch");
                v->code[c->else_fix].a = (uint32_t)((int32_t)v->ncode - (int32_t)c->else_fix);
            }
            patch_chain(v, c->fix_head, v->ncode);
            v->barrier = v->ncode; /* block end: a branch target */
            uint8_t kind = c->kind;
            uint32_t nout = c->nout;
            const uint8_t *out = c->out;
            v->nctrls--;
            if (kind == 0) {
                emit(v, OP_RETURN, nout, 0);
            } else {
                push_vals(v, nout, out);
            }
            break;
        }
        case 0x0c: {
            uint32_t d = ru32(v);
            if (d >= v->nctrls)
                fail(v, "unknown label");
            ctrl *c = &v->ctrls[v->nctrls - 1 - d];
            uint32_t n = c->kind == 0x03 ? c->nin : c->nout;
            const uint8_t *ts = c->kind == 0x03 ? c->in : c->out;
            emit_branch(v, d, false, false);
            pop_vals(v, n, ts);
            set_unreachable(v);
            break;
        }
        case 0x0d: {
            uint32_t d = ru32(v);
            if (d >= v->nctrls)
                fail(v, "unknown label");
            pop_expect(v, WASM_I32);
            ctrl *c = &v->ctrls[v->nctrls - 1 - d];
            uint32_t n = c->kind == 0x03 ? c->nin : c->nout;
            const uint8_t *ts = c->kind == 0x03 ? c->in : c->out;
            pop_vals(v, n, ts);
            push_vals(v, n, ts);
            emit_branch(v, d, true, false);
            break;
        }
        case 0x0e: {
            uint32_t n = ru32(v);
            if (n > (size_t)(v->end - v->p))
                fail(v, "unexpected end");
            pop_expect(v, WASM_I32);
            emit(v, OP_BR_TABLE, n, 0);
            uint32_t arity = UINT32_MAX;
            for (uint32_t k = 0; k <= n; k++) {
                uint32_t d = ru32(v);
                if (d >= v->nctrls)
                    fail(v, "unknown label");
                ctrl *c = &v->ctrls[v->nctrls - 1 - d];
                uint32_t cnt = c->kind == 0x03 ? c->nin : c->nout;
                const uint8_t *ts = c->kind == 0x03 ? c->in : c->out;
                if (arity == UINT32_MAX)
                    arity = cnt;
                else if (arity != cnt)
                    fail(v, "type mismatch");
                /* check the label types against the stack without consuming */
                uint32_t save = v->nvals;
                emit_branch(v, d, false, true);
                pop_vals(v, cnt, ts);
                v->nvals = save;
            }
            set_unreachable(v);
            break;
        }
        case 0x0f: {
            ctrl *f = &v->ctrls[0];
            pop_vals(v, f->nout, f->out);
            emit(v, OP_RETURN, f->nout, 0);
            set_unreachable(v);
            break;
        }
        case 0x10: {
            uint32_t x = ru32(v);
            if (x >= m->nfuncs)
                fail(v, "unknown function %u", x);
            const wfunctype *t = &m->types[m->func_types[x]];
            pop_vals(v, t->nparams, t->types);
            push_vals(v, t->nresults, t->types + t->nparams);
            emit(v, 0x10, x, 0);
            break;
        }
        case 0x11: {
            uint32_t ti = ru32(v);
            uint32_t tab = ru32(v);
            need_table(v, tab);
            if (ti >= m->ntypes)
                fail(v, "unknown type");
            if (m->tables[tab].elem != WASM_FUNCREF)
                fail(v, "type mismatch");
            pop_expect(v, WASM_I32);
            const wfunctype *t = &m->types[ti];
            pop_vals(v, t->nparams, t->types);
            push_vals(v, t->nresults, t->types + t->nparams);
            emit(v, 0x11, ti, tab);
            break;
        }
        case 0x1a:
            pop(v);
            emit(v, 0x1a, 0, 0);
            break;
        case 0x1b: {
            pop_expect(v, WASM_I32);
            uint8_t t1 = pop(v), t2 = pop(v);
            if (!is_num(t1) || !is_num(t2))
                fail(v, "type mismatch");
            if (t1 != t2 && t1 != WASM_T_UNKNOWN && t2 != WASM_T_UNKNOWN)
                fail(v, "type mismatch");
            push(v, t1 == WASM_T_UNKNOWN ? t2 : t1);
            emit(v, 0x1b, 0, 0);
            break;
        }
        case 0x1c: {
            uint32_t n = ru32(v);
            if (n != 1)
                fail(v, "invalid result arity");
            uint8_t t = rbyte(v);
            if (!vt_self[t])
                fail(v, "malformed value type");
            pop_expect(v, WASM_I32);
            pop_expect(v, t);
            pop_expect(v, t);
            push(v, t);
            emit(v, 0x1b, 0, 0);
            break;
        }
        case 0x20:
        case 0x21:
        case 0x22: {
            uint32_t x = ru32(v);
            if (x >= fn->nlocals)
                fail(v, "unknown local");
            uint8_t t = fn->local_types[x];
            if (op == 0x20) {
                push(v, t);
            } else if (op == 0x21) {
                pop_expect(v, t);
            } else {
                pop_expect(v, t);
                push(v, t);
            }
            emit(v, op, x, 0);
            break;
        }
        case 0x23:
        case 0x24: {
            uint32_t x = ru32(v);
            if (x >= m->nglobals)
                fail(v, "unknown global %u", x);
            uint8_t t = m->globals[x].type;
            if (op == 0x23) {
                push(v, t);
            } else {
                if (!m->globals[x].mut)
                    fail(v, "global is immutable");
                pop_expect(v, t);
            }
            emit(v, op, x, 0);
            break;
        }
        case 0x25:
        case 0x26: {
            uint32_t x = ru32(v);
            need_table(v, x);
            uint8_t t = m->tables[x].elem;
            if (op == 0x25) {
                pop_expect(v, WASM_I32);
                push(v, t);
            } else {
                pop_expect(v, t);
                pop_expect(v, WASM_I32);
            }
            emit(v, op, x, 0);
            break;
        }
        case 0x3f:
        case 0x40: {
            if (rbyte(v) != 0)
                fail(v, "zero byte expected");
            need_mem(v);
            if (op == 0x40)
                pop_expect(v, WASM_I32);
            push(v, WASM_I32);
            emit(v, op, 0, 0);
            break;
        }
        case 0x41:
            push(v, WASM_I32);
            emit(v, 0x41, 0, (uint32_t)rsleb(v, 32));
            break;
        case 0x42:
            push(v, WASM_I64);
            emit(v, 0x42, 0, (uint64_t)rsleb(v, 64));
            break;
        case 0x43: {
            if (v->end - v->p < 4)
                fail(v, "unexpected end");
            uint32_t bits = (uint32_t)v->p[0] | (uint32_t)v->p[1] << 8 | (uint32_t)v->p[2] << 16 |
                            (uint32_t)v->p[3] << 24;
            v->p += 4;
            push(v, WASM_F32);
            emit(v, 0x41, 0, bits);
            break;
        }
        case 0x44: {
            if (v->end - v->p < 8)
                fail(v, "unexpected end");
            uint64_t bits = 0;
            for (int i = 7; i >= 0; i--)
                bits = (bits << 8) | v->p[i];
            v->p += 8;
            push(v, WASM_F64);
            emit(v, 0x42, 0, bits);
            break;
        }
        case 0xd0: {
            uint8_t t = rbyte(v);
            if (t != WASM_FUNCREF && t != WASM_EXTERNREF)
                fail(v, "malformed reference type");
            push(v, t);
            emit(v, 0x42, 0, 0);
            break;
        }
        case 0xd1: {
            uint8_t t = pop(v);
            if (!is_ref(t))
                fail(v, "type mismatch");
            push(v, WASM_I32);
            emit(v, 0xd1, 0, 0);
            break;
        }
        case 0xd2: {
            uint32_t x = ru32(v);
            if (x >= m->nfuncs)
                fail(v, "unknown function %u", x);
            if (!m->declared[x])
                fail(v, "undeclared function reference");
            push(v, WASM_FUNCREF);
            emit(v, 0xd2, x, 0);
            break;
        }
        case 0xfc: {
            uint32_t sub = ru32(v);
            uint32_t iop = OP_FC + sub;
            nsig s;
            if (sub <= 7 && numeric_sig(iop, &s)) {
                pop_expect(v, s.a);
                push(v, s.r);
                emit(v, iop, 0, 0);
                break;
            }
            switch (sub) {
            case 8: {
                uint32_t d = ru32(v);
                if (rbyte(v) != 0)
                    fail(v, "zero byte expected");
                need_mem(v);
                if (d >= (m->has_datacount ? m->datacount : m->ndatas))
                    fail(v, "unknown data segment %u", d);
                if (!m->has_datacount)
                    fail(v, "data count section required");
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                emit(v, iop, d, 0);
                break;
            }
            case 9: {
                uint32_t d = ru32(v);
                if (d >= (m->has_datacount ? m->datacount : m->ndatas))
                    fail(v, "unknown data segment %u", d);
                if (!m->has_datacount)
                    fail(v, "data count section required");
                emit(v, iop, d, 0);
                break;
            }
            case 10:
                if (rbyte(v) != 0 || rbyte(v) != 0)
                    fail(v, "zero byte expected");
                need_mem(v);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                emit(v, iop, 0, 0);
                break;
            case 11:
                if (rbyte(v) != 0)
                    fail(v, "zero byte expected");
                need_mem(v);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                emit(v, iop, 0, 0);
                break;
            case 12: {
                uint32_t e = ru32(v);
                uint32_t t = ru32(v);
                need_table(v, t);
                if (e >= m->nelems)
                    fail(v, "unknown elem segment %u", e);
                if (m->elems[e].type != m->tables[t].elem)
                    fail(v, "type mismatch");
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                emit(v, iop, e, t);
                break;
            }
            case 13: {
                uint32_t e = ru32(v);
                if (e >= m->nelems)
                    fail(v, "unknown elem segment %u", e);
                emit(v, iop, e, 0);
                break;
            }
            case 14: {
                uint32_t dst = ru32(v);
                uint32_t src = ru32(v);
                need_table(v, dst);
                need_table(v, src);
                if (m->tables[dst].elem != m->tables[src].elem)
                    fail(v, "type mismatch");
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                pop_expect(v, WASM_I32);
                emit(v, iop, dst, src);
                break;
            }
            case 15:
            case 16:
            case 17: {
                uint32_t t = ru32(v);
                need_table(v, t);
                uint8_t et = m->tables[t].elem;
                if (sub == 15) {
                    pop_expect(v, WASM_I32);
                    pop_expect(v, et);
                    push(v, WASM_I32);
                } else if (sub == 16) {
                    push(v, WASM_I32);
                } else {
                    pop_expect(v, WASM_I32);
                    pop_expect(v, et);
                    pop_expect(v, WASM_I32);
                }
                emit(v, iop, t, 0);
                break;
            }
            default:
                fail(v, "illegal opcode fc %u", sub);
            }
            break;
        }
        default: {
            nsig s;
            uint32_t al;
            uint8_t t;
            bool st;
            if (numeric_sig(op, &s)) {
                if (s.b) {
                    pop_expect(v, s.b);
                    pop_expect(v, s.a);
                } else {
                    pop_expect(v, s.a);
                }
                push(v, s.r);
                emit(v, op, 0, 0);
            } else if (mem_sig(op, &al, &t, &st)) {
                uint32_t off;
                memarg(v, al, &off);
                if (st) {
                    pop_expect(v, t);
                    pop_expect(v, WASM_I32);
                } else {
                    pop_expect(v, WASM_I32);
                    push(v, t);
                }
                emit(v, op, off, 0);
            } else {
                fail(v, "illegal opcode 0x%02x", op);
            }
            break;
        }
        }
    }
    if (v->p != v->end)
        fail(v, "section size mismatch");
    fn->code = v->code;
    fn->ncode = v->ncode;
    fn->max_height = fn->nlocals + v->max_vals;
    v->code = NULL;
    v->ncode = v->cap_code = 0;
}

/* ---- module level ---- */

static void check_limits(vctx *v, const wlimits *l, uint64_t cap, const char *what)
{
    if (l->min > cap || (l->has_max && l->max > cap)) {
        if (cap == WASM_MAX_PAGES)
            fail(v, "memory size must be at most 65536 pages (4GiB)");
        fail(v, "%s size out of range", what);
    }
    if (l->has_max && l->min > l->max)
        fail(v, "size minimum must not be greater than maximum");
}

/* nglobals_visible: globals a const expr may read */
static void check_const(vctx *v, const wconst *c, uint8_t want, uint32_t nglobals_visible)
{
    struct wasm_module *m = v->m;
    uint8_t t = c->type;
    if (c->op == WC_REF_FUNC) {
        if (c->idx >= m->nfuncs)
            fail(v, "unknown function %u", c->idx);
    } else if (c->op == WC_GLOBAL_GET) {
        if (c->idx >= nglobals_visible)
            fail(v, "unknown global %u", c->idx);
        if (m->globals[c->idx].mut)
            fail(v, "constant expression required");
        t = m->globals[c->idx].type;
    }
    if (t != want)
        fail(v, "type mismatch");
}

static void mark_declared(struct wasm_module *m, const wconst *c)
{
    if (c->op == WC_REF_FUNC && c->idx < m->nfuncs)
        m->declared[c->idx] = 1;
}

static void validate_module(vctx *v)
{
    struct wasm_module *m = v->m;
    for (uint32_t i = 0; i < m->ntables; i++)
        check_limits(v, &m->tables[i].lim, UINT32_MAX, "table");
    if (m->nmems > 1)
        fail(v, "multiple memories");
    for (uint32_t i = 0; i < m->nmems; i++)
        check_limits(v, &m->mems[i], WASM_MAX_PAGES, "memory");

    m->declared = calloc(m->nfuncs ? m->nfuncs : 1, 1);
    if (!m->declared)
        fail(v, "out of memory");
    for (uint32_t i = m->nglobal_imports; i < m->nglobals; i++) {
        check_const(v, &m->global_inits[i], m->globals[i].type, m->nglobal_imports);
        mark_declared(m, &m->global_inits[i]);
    }
    for (uint32_t i = 0; i < m->nelems; i++) {
        welem *e = &m->elems[i];
        if (e->mode == SEG_ACTIVE) {
            need_table(v, e->table);
            check_const(v, &e->offset, WASM_I32, m->nglobal_imports);
            if (m->tables[e->table].elem != e->type)
                fail(v, "type mismatch");
        }
        for (uint32_t k = 0; k < e->n; k++) {
            check_const(v, &e->items[k], e->type, m->nglobal_imports);
            mark_declared(m, &e->items[k]);
        }
    }
    for (uint32_t i = 0; i < m->ndatas; i++) {
        wdata *d = &m->datas[i];
        if (d->mode == SEG_ACTIVE) {
            need_mem(v);
            check_const(v, &d->offset, WASM_I32, m->nglobal_imports);
        }
    }
    for (uint32_t i = 0; i < m->nexports; i++) {
        wexport *e = &m->exports[i];
        for (uint32_t k = 0; k < i; k++)
            if (m->exports[k].name_len == e->name_len &&
                memcmp(m->exports[k].name, e->name, e->name_len) == 0)
                fail(v, "duplicate export name");
        switch (e->kind) {
        case WASM_EXTERN_FUNC:
            if (e->index >= m->nfuncs)
                fail(v, "unknown function %u", e->index);
            m->declared[e->index] = 1;
            break;
        case WASM_EXTERN_TABLE:
            need_table(v, e->index);
            break;
        case WASM_EXTERN_MEMORY:
            if (e->index >= m->nmems)
                fail(v, "unknown memory %u", e->index);
            break;
        default:
            if (e->index >= m->nglobals)
                fail(v, "unknown global %u", e->index);
            break;
        }
    }
    if (m->has_start) {
        if (m->start >= m->nfuncs)
            fail(v, "unknown function %u", m->start);
        const wfunctype *t = &m->types[m->func_types[m->start]];
        if (t->nparams || t->nresults)
            fail(v, "start function");
    }
    for (uint32_t i = 0; i < m->nfuncs - m->nfunc_imports; i++)
        validate_body(v, &m->codes[i], &m->types[m->func_types[m->nfunc_imports + i]]);
}

bool wasm_validate(struct wasm_module *m, char *err, size_t errlen)
{
    vctx *v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    v->m = m;
    v->err = err;
    v->errlen = errlen;
    bool ok = false;
    if (setjmp(v->jb) == 0) {
        validate_module(v);
        ok = true;
    }
    free(v->vals);
    free(v->ctrls);
    free(v->code);
    free(v);
    return ok;
}
