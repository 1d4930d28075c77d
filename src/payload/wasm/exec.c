/* exec.c - the interpreter loop.
 *
 * Runs the lowered instruction form (see validate.c) on the store's flat
 * value stack and frame stack, both allocated once per store: a call costs
 * no allocation.  Enforces the per-call sandbox limits: fuel is counted per
 * instruction in chunks, and the wall-clock deadline is checked at every
 * chunk refill (every 64K instructions); call depth and value-stack room are
 * checked once per call (each function's maximum height is known from
 * validation).  Float semantics follow the spec bit for bit (NaN
 * propagation, min/max with signed zeros, round-half-even nearest,
 * trapping and saturating truncation). */
#include "wasm_impl.h"

#include <math.h>
#include <string.h>
#include <time.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the interpreter assumes a little-endian host"
#endif

#define FUEL_CHUNK 65536

uint64_t wasm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool wasm_functype_eq(const wfunctype *a, const wfunctype *b)
{
    if (a == b)
        return true;
    return a->nparams == b->nparams && a->nresults == b->nresults &&
           memcmp(a->types, b->types, (size_t)a->nparams + a->nresults) == 0;
}

/* ---- float helpers ---- */

static inline float f32_of(uint64_t v)
{
    uint32_t b = (uint32_t)v;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static inline uint64_t of_f32(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static inline double f64_of(uint64_t v)
{
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static inline uint64_t of_f64(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

static float fmin32(float a, float b)
{
    if (isnan(a) || isnan(b))
        return a + b;
    if (a == b)
        return f32_of(of_f32(a) | of_f32(b));
    return a < b ? a : b;
}

static float fmax32(float a, float b)
{
    if (isnan(a) || isnan(b))
        return a + b;
    if (a == b)
        return f32_of(of_f32(a) & of_f32(b));
    return a > b ? a : b;
}

static double fmin64(double a, double b)
{
    if (isnan(a) || isnan(b))
        return a + b;
    if (a == b)
        return f64_of(of_f64(a) | of_f64(b));
    return a < b ? a : b;
}

static double fmax64(double a, double b)
{
    if (isnan(a) || isnan(b))
        return a + b;
    if (a == b)
        return f64_of(of_f64(a) & of_f64(b));
    return a > b ? a : b;
}

#define FUN32(name, expr)                                                                          \
    static float name(float x)                                                                     \
    {                                                                                              \
        if (isnan(x))                                                                              \
            return x + x;                                                                          \
        return expr;                                                                               \
    }
#define FUN64(name, expr)                                                                          \
    static double name(double x)                                                                   \
    {                                                                                              \
        if (isnan(x))                                                                              \
            return x + x;                                                                          \
        return expr;                                                                               \
    }
FUN32(ceil32, ceilf(x))
FUN32(floor32, floorf(x))
FUN32(trunc32, truncf(x))
FUN32(nearest32, nearbyintf(x))
FUN32(sqrt32, sqrtf(x))
FUN64(ceil64, ceil(x))
FUN64(floor64, floor(x))
FUN64(trunc64, trunc(x))
FUN64(nearest64, nearbyint(x))
FUN64(sqrt64, sqrt(x))

static inline uint32_t rotl32(uint32_t a, uint32_t k)
{
    k &= 31;
    return k ? (a << k) | (a >> (32 - k)) : a;
}
static inline uint32_t rotr32(uint32_t a, uint32_t k)
{
    k &= 31;
    return k ? (a >> k) | (a << (32 - k)) : a;
}
static inline uint64_t rotl64(uint64_t a, uint64_t k)
{
    k &= 63;
    return k ? (a << k) | (a >> (64 - k)) : a;
}
static inline uint64_t rotr64(uint64_t a, uint64_t k)
{
    k &= 63;
    return k ? (a >> k) | (a << (64 - k)) : a;
}

/* saturating truncations */
static int32_t sat_i32_d(double x)
{
    if (isnan(x))
        return 0;
    if (x <= -2147483649.0)
        return INT32_MIN;
    if (x >= 2147483648.0)
        return INT32_MAX;
    return (int32_t)x;
}
static uint32_t sat_u32_d(double x)
{
    if (isnan(x) || x <= -1.0)
        return 0;
    if (x >= 4294967296.0)
        return UINT32_MAX;
    return (uint32_t)x;
}
static int64_t sat_i64_d(double x)
{
    if (isnan(x))
        return 0;
    if (x < -9223372036854775808.0)
        return INT64_MIN;
    if (x >= 9223372036854775808.0)
        return INT64_MAX;
    return (int64_t)x;
}
static uint64_t sat_u64_d(double x)
{
    if (isnan(x) || x <= -1.0)
        return 0;
    if (x >= 18446744073709551616.0)
        return UINT64_MAX;
    return (uint64_t)x;
}

/* ---- host calls ---- */

static uint64_t val_to_slot(const wasm_val *v)
{
    switch (v->type) {
    case WASM_I32: return v->of.i32;
    case WASM_F32: return v->of.f32_bits;
    case WASM_FUNCREF: return (uint64_t)(uintptr_t)v->of.func;
    case WASM_EXTERNREF: return (uint64_t)v->of.ext;
    default: return v->of.i64;
    }
}

static void slot_to_val(uint64_t s, uint8_t t, wasm_val *v)
{
    v->type = (wasm_valtype)t;
    switch (t) {
    case WASM_I32: v->of.i32 = (uint32_t)s; break;
    case WASM_F32: v->of.f32_bits = (uint32_t)s; break;
    case WASM_FUNCREF: v->of.func = (wasm_func *)(uintptr_t)s; break;
    case WASM_EXTERNREF: v->of.ext = (uintptr_t)s; break;
    default: v->of.i64 = s; break;
    }
}

/* slots holds the args and receives the results; the wasm_val arrays are
 * laid out on the value stack above them (room checked by the caller). */
static wasm_trap call_host(wasm_store *s, wasm_func *f, wasm_instance *caller, uint64_t *slots,
                           uint64_t *stack_end)
{
    const wfunctype *t = f->type;
    uint32_t np = t->nparams, nr = t->nresults;
    uint32_t span = np > nr ? np : nr;
    wasm_val *va = (wasm_val *)(void *)(slots + span);
    if ((uint64_t *)(void *)(va + np + nr) > stack_end)
        return WASM_TRAP_VALUE_STACK;
    for (uint32_t i = 0; i < np; i++)
        slot_to_val(slots[i], t->types[i], &va[i]);
    for (uint32_t i = 0; i < nr; i++)
        slot_to_val(0, t->types[np + i], &va[np + i]);
    uint64_t *save_sp = s->sp_base;
    s->sp_base = (uint64_t *)(void *)(va + np + nr);
    wasm_trap tr = f->host(f->user, caller, va, va + np);
    s->sp_base = save_sp;
    if (tr != WASM_OK)
        return tr;
    for (uint32_t i = 0; i < nr; i++)
        slots[i] = val_to_slot(&va[np + i]);
    return WASM_OK;
}

/* ---- the loop ---- */

static bool take_chunk(wasm_store *s, int64_t *budget)
{
    if (s->fuel_left == 0)
        return false;
    uint64_t chunk = s->fuel_left < FUEL_CHUNK ? s->fuel_left : FUEL_CHUNK;
    if (s->fuel_left != UINT64_MAX)
        s->fuel_left -= chunk;
    s->fuel_used += chunk;
    *budget += (int64_t)chunk; /* a superinstruction may have left a small debt */
    return true;
}

/* Every FUEL_CHUNK instructions: check the wall clock, then take more fuel. */
static bool refuel(wasm_store *s, int64_t *budget)
{
    if (s->deadline && wasm_now_ns() >= s->deadline)
        return false;
    return take_chunk(s, budget);
}

#define POP() (*--sp)
#define PUSH(x) (*sp++ = (uint64_t)(x))
#define TOP sp[-1]
#define U32(x) ((uint32_t)(x))
#define S32(x) ((int32_t)(uint32_t)(x))
#define S64(x) ((int64_t)(x))
#define TRAP(t)                                                                                    \
    do {                                                                                           \
        trap = (t);                                                                                \
        goto out;                                                                                  \
    } while (0)

#define BIN32(expr)                                                                                \
    {                                                                                              \
        uint32_t b = U32(POP());                                                                   \
        uint32_t a = U32(TOP);                                                                     \
        TOP = (uint32_t)(expr);                                                                    \
    }                                                                                              \
    break
#define BIN64(expr)                                                                                \
    {                                                                                              \
        uint64_t b = POP();                                                                        \
        uint64_t a = TOP;                                                                          \
        TOP = (uint64_t)(expr);                                                                    \
    }                                                                                              \
    break
#define CMPF32(expr)                                                                               \
    {                                                                                              \
        float b = f32_of(POP());                                                                   \
        float a = f32_of(TOP);                                                                     \
        TOP = (uint32_t)(expr);                                                                    \
    }                                                                                              \
    break
#define CMPF64(expr)                                                                               \
    {                                                                                              \
        double b = f64_of(POP());                                                                  \
        double a = f64_of(TOP);                                                                    \
        TOP = (uint32_t)(expr);                                                                    \
    }                                                                                              \
    break
#define BINF32(expr)                                                                               \
    {                                                                                              \
        float b = f32_of(POP());                                                                   \
        float a = f32_of(TOP);                                                                     \
        TOP = of_f32(expr);                                                                        \
    }                                                                                              \
    break
#define BINF64(expr)                                                                               \
    {                                                                                              \
        double b = f64_of(POP());                                                                  \
        double a = f64_of(TOP);                                                                    \
        TOP = of_f64(expr);                                                                        \
    }                                                                                              \
    break
#define UNF32(expr)                                                                                \
    {                                                                                              \
        float a = f32_of(TOP);                                                                     \
        TOP = of_f32(expr);                                                                        \
    }                                                                                              \
    break
#define UNF64(expr)                                                                                \
    {                                                                                              \
        double a = f64_of(TOP);                                                                    \
        TOP = of_f64(expr);                                                                        \
    }                                                                                              \
    break

#define LOAD(T, N, conv)                                                                           \
    {                                                                                              \
        uint64_t ea = (uint64_t)U32(TOP) + i->a;                                                   \
        if (ea + (N) > mem->size)                                                                  \
            TRAP(WASM_TRAP_MEMORY_OOB);                                                            \
        T x;                                                                                       \
        memcpy(&x, mem->data + ea, N);                                                             \
        TOP = (uint64_t)(conv);                                                                    \
    }                                                                                              \
    break
#define STORE(T, N)                                                                                \
    {                                                                                              \
        T x = (T)POP();                                                                            \
        uint64_t ea = (uint64_t)U32(POP()) + i->a;                                                 \
        if (ea + (N) > mem->size)                                                                  \
            TRAP(WASM_TRAP_MEMORY_OOB);                                                            \
        memcpy(mem->data + ea, &x, N);                                                             \
    }                                                                                              \
    break

wasm_trap wasm_exec_call(wasm_store *s, wasm_func *f, uint64_t *args)
{
    wasm_limits *L = &s->cur;
    uint32_t depth_cap = L->max_call_depth ? L->max_call_depth : s->defaults.max_call_depth;
    uint32_t slots_cap = L->max_stack_slots ? L->max_stack_slots : s->defaults.max_stack_slots;
    uint64_t *stack_end = s->stack + (slots_cap < s->stack_slots ? slots_cap : s->stack_slots);
    uint32_t fmax = s->frame_base + depth_cap;
    if (fmax > s->nframes_max)
        fmax = s->nframes_max;
    wframe *frames = s->frames;
    uint32_t fdepth = s->frame_base;
    wasm_trap trap = WASM_OK;
    int64_t budget = 0;

    if (f->host) {
        uint64_t *base = args;
        return call_host(s, f, NULL, base, stack_end);
    }
    /* args already sit at s->sp_base (placed by the caller) */
    uint64_t *sp = args + f->type->nparams;
    uint64_t *fp = args;
    const wins *pc;
    wasm_instance *inst;
    wasm_memory *mem;
    wasm_func *callee = f;
    if (fdepth >= fmax) {
        trap = WASM_TRAP_CALL_DEPTH;
        goto out;
    }
    frames[fdepth++] = (wframe){NULL, NULL, NULL};
    /* first chunk without a clock read: the caller just computed the deadline */
    if (!take_chunk(s, &budget) || budget < 0) {
        trap = WASM_TRAP_FUEL;
        goto out;
    }
    pc = NULL;
    inst = NULL;
    mem = NULL;
    goto do_call;

    for (;;) {
        if (__builtin_expect(--budget < 0, 0)) {
            do {
                if (!refuel(s, &budget)) {
                    trap = s->deadline && wasm_now_ns() >= s->deadline ? WASM_TRAP_DEADLINE
                                                                        : WASM_TRAP_FUEL;
                    budget++; /* this instruction did not run */
                    goto out;
                }
            } while (budget < 0);
        }
        const wins *i = pc++;
        switch (i->op) {
        case 0x00:
            TRAP(WASM_TRAP_UNREACHABLE);
        case OP_BR: {
            uint32_t h = WINS_LO(i->b), n = WINS_HI(i->b);
            memmove(fp + h, sp - n, (size_t)n * 8);
            sp = fp + h + n;
            pc = i + (int32_t)i->a;
            break;
        }
        case OP_JMP:
            pc = i + (int32_t)i->a;
            break;
        case OP_BR_IF:
            if (U32(POP())) {
                uint32_t h = WINS_LO(i->b), n = WINS_HI(i->b);
                memmove(fp + h, sp - n, (size_t)n * 8);
                sp = fp + h + n;
                pc = i + (int32_t)i->a;
            }
            break;
        case OP_JMP_IF:
            if (U32(POP()))
                pc = i + (int32_t)i->a;
            break;
        case OP_JMP_UNLESS:
            if (!U32(POP()))
                pc = i + (int32_t)i->a;
            break;
        case OP_BR_TABLE: {
            uint32_t k = U32(POP());
            if (k > i->a)
                k = i->a;
            const wins *e = i + 1 + k;
            uint32_t h = WINS_LO(e->b), n = WINS_HI(e->b);
            memmove(fp + h, sp - n, (size_t)n * 8);
            sp = fp + h + n;
            pc = e + (int32_t)e->a;
            break;
        }
        case OP_JMPZ_F:
            budget--;
            if (!U32(POP()))
                pc = i + (int32_t)i->a;
            break;
        case OP_JMPNZ_F:
            budget--;
            if (U32(POP()))
                pc = i + (int32_t)i->a;
            break;
        case OP_LG2:
            budget--;
            sp[0] = fp[i->a];
            sp[1] = fp[WINS_LO(i->b)];
            sp += 2;
            break;
        case OP_LG_C:
            budget--;
            sp[0] = fp[i->a];
            sp[1] = i->b;
            sp += 2;
            break;
        case OP_LG2_ADD:
            budget -= 2;
            PUSH((uint32_t)(fp[i->a] + fp[WINS_LO(i->b)]));
            break;
        case OP_LG_ADDC:
            budget -= 2;
            PUSH((uint32_t)(fp[i->a] + i->b));
            break;
        case OP_LL_ADD_SET:
            budget -= 3;
            fp[WINS_HI(i->b)] = (uint32_t)(fp[i->a] + fp[WINS_LO(i->b)]);
            break;
        case OP_L_ADDC_SET:
            budget -= 3;
            fp[WINS_HI(i->b)] = (uint32_t)(fp[i->a] + WINS_LO(i->b));
            break;
#define JIF(OPC, expr)                                                                             \
    case OPC: {                                                                                    \
        budget--;                                                                                  \
        uint32_t b = U32(POP());                                                                   \
        uint32_t a = U32(POP());                                                                   \
        if (expr)                                                                                  \
            pc = i + (int32_t)i->a;                                                                \
        break;                                                                                     \
    }
        JIF(OP_JIF_EQ + 0, a == b)
        JIF(OP_JIF_EQ + 1, a != b)
        JIF(OP_JIF_EQ + 2, (int32_t)a < (int32_t)b)
        JIF(OP_JIF_EQ + 3, a < b)
        JIF(OP_JIF_EQ + 4, (int32_t)a > (int32_t)b)
        JIF(OP_JIF_EQ + 5, a > b)
        JIF(OP_JIF_EQ + 6, (int32_t)a <= (int32_t)b)
        JIF(OP_JIF_EQ + 7, a <= b)
        JIF(OP_JIF_EQ + 8, (int32_t)a >= (int32_t)b)
        JIF(OP_JIF_EQ + 9, a >= b)
#undef JIF
        case OP_RETURN: {
            uint32_t n = i->a;
            if (sp - n != fp)
                memmove(fp, sp - n, (size_t)n * 8);
            sp = fp + n;
            wframe *fr = &frames[--fdepth];
            if (!fr->pc)
                goto out;
            pc = fr->pc;
            fp = fr->fp;
            inst = fr->inst;
            mem = inst->mem;
            break;
        }
        case 0x10:
            callee = inst->funcs[i->a];
            goto do_call;
        case 0x11: {
            wasm_table *tab = inst->tables[WINS_LO(i->b)];
            uint32_t k = U32(POP());
            if (k >= tab->size)
                TRAP(WASM_TRAP_UNDEFINED_ELEMENT);
            callee = (wasm_func *)(uintptr_t)tab->elems[k];
            if (!callee)
                TRAP(WASM_TRAP_UNINIT_ELEMENT);
            if (!wasm_functype_eq(callee->type, &inst->mod->types[i->a]))
                TRAP(WASM_TRAP_INDIRECT_TYPE);
            goto do_call;
        }
        case 0x1a:
            sp--;
            break;
        case 0x1b: {
            uint32_t c = U32(POP());
            uint64_t b = POP();
            if (!c)
                TOP = b;
            break;
        }
        case 0x20:
            PUSH(fp[i->a]);
            break;
        case 0x21:
            fp[i->a] = POP();
            break;
        case 0x22:
            fp[i->a] = TOP;
            break;
        case 0x23:
            PUSH(inst->globals[i->a]->val);
            break;
        case 0x24:
            inst->globals[i->a]->val = POP();
            break;
        case 0x25: {
            wasm_table *tab = inst->tables[i->a];
            uint32_t k = U32(TOP);
            if (k >= tab->size)
                TRAP(WASM_TRAP_TABLE_OOB);
            TOP = tab->elems[k];
            break;
        }
        case 0x26: {
            wasm_table *tab = inst->tables[i->a];
            uint64_t val = POP();
            uint32_t k = U32(POP());
            if (k >= tab->size)
                TRAP(WASM_TRAP_TABLE_OOB);
            tab->elems[k] = val;
            break;
        }
        case 0x28: LOAD(uint32_t, 4, x);
        case 0x29: LOAD(uint64_t, 8, x);
        case 0x2a: LOAD(uint32_t, 4, x);
        case 0x2b: LOAD(uint64_t, 8, x);
        case 0x2c: LOAD(int8_t, 1, (uint32_t)(int32_t)x);
        case 0x2d: LOAD(uint8_t, 1, x);
        case 0x2e: LOAD(int16_t, 2, (uint32_t)(int32_t)x);
        case 0x2f: LOAD(uint16_t, 2, x);
        case 0x30: LOAD(int8_t, 1, (int64_t)x);
        case 0x31: LOAD(uint8_t, 1, x);
        case 0x32: LOAD(int16_t, 2, (int64_t)x);
        case 0x33: LOAD(uint16_t, 2, x);
        case 0x34: LOAD(int32_t, 4, (int64_t)x);
        case 0x35: LOAD(uint32_t, 4, x);
        case 0x36: STORE(uint32_t, 4);
        case 0x37: STORE(uint64_t, 8);
        case 0x38: STORE(uint32_t, 4);
        case 0x39: STORE(uint64_t, 8);
        case 0x3a: STORE(uint8_t, 1);
        case 0x3b: STORE(uint16_t, 2);
        case 0x3c: STORE(uint8_t, 1);
        case 0x3d: STORE(uint16_t, 2);
        case 0x3e: STORE(uint32_t, 4);
        case 0x3f:
            PUSH(mem->pages);
            break;
        case 0x40: {
            uint32_t cap = L->max_memory_pages ? L->max_memory_pages : s->defaults.max_memory_pages;
            TOP = (uint32_t)wasm_memory_grow_impl(mem, U32(TOP), cap);
            break;
        }
        case 0x41:
        case 0x42:
            PUSH(i->b);
            break;

        case 0x45: TOP = U32(TOP) == 0; break;
        case 0x46: BIN32(a == b);
        case 0x47: BIN32(a != b);
        case 0x48: BIN32((int32_t)a < (int32_t)b);
        case 0x49: BIN32(a < b);
        case 0x4a: BIN32((int32_t)a > (int32_t)b);
        case 0x4b: BIN32(a > b);
        case 0x4c: BIN32((int32_t)a <= (int32_t)b);
        case 0x4d: BIN32(a <= b);
        case 0x4e: BIN32((int32_t)a >= (int32_t)b);
        case 0x4f: BIN32(a >= b);
        case 0x50: TOP = TOP == 0; break;
        case 0x51: BIN64(a == b);
        case 0x52: BIN64(a != b);
        case 0x53: BIN64((int64_t)a < (int64_t)b);
        case 0x54: BIN64(a < b);
        case 0x55: BIN64((int64_t)a > (int64_t)b);
        case 0x56: BIN64(a > b);
        case 0x57: BIN64((int64_t)a <= (int64_t)b);
        case 0x58: BIN64(a <= b);
        case 0x59: BIN64((int64_t)a >= (int64_t)b);
        case 0x5a: BIN64(a >= b);
        case 0x5b: CMPF32(a == b);
        case 0x5c: CMPF32(a != b);
        case 0x5d: CMPF32(a < b);
        case 0x5e: CMPF32(a > b);
        case 0x5f: CMPF32(a <= b);
        case 0x60: CMPF32(a >= b);
        case 0x61: CMPF64(a == b);
        case 0x62: CMPF64(a != b);
        case 0x63: CMPF64(a < b);
        case 0x64: CMPF64(a > b);
        case 0x65: CMPF64(a <= b);
        case 0x66: CMPF64(a >= b);

        case 0x67: { uint32_t a = U32(TOP); TOP = a ? (uint32_t)__builtin_clz(a) : 32; break; }
        case 0x68: { uint32_t a = U32(TOP); TOP = a ? (uint32_t)__builtin_ctz(a) : 32; break; }
        case 0x69: TOP = (uint32_t)__builtin_popcount(U32(TOP)); break;
        case 0x6a: BIN32(a + b);
        case 0x6b: BIN32(a - b);
        case 0x6c: BIN32(a * b);
        case 0x6d: {
            uint32_t b = U32(POP()), a = U32(TOP);
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            if (a == 0x80000000u && b == 0xffffffffu)
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint32_t)((int32_t)a / (int32_t)b);
            break;
        }
        case 0x6e: {
            uint32_t b = U32(POP()), a = U32(TOP);
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = a / b;
            break;
        }
        case 0x6f: {
            uint32_t b = U32(POP()), a = U32(TOP);
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = b == 0xffffffffu ? 0 : (uint32_t)((int32_t)a % (int32_t)b);
            break;
        }
        case 0x70: {
            uint32_t b = U32(POP()), a = U32(TOP);
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = a % b;
            break;
        }
        case 0x71: BIN32(a & b);
        case 0x72: BIN32(a | b);
        case 0x73: BIN32(a ^ b);
        case 0x74: BIN32(a << (b & 31));
        case 0x75: BIN32((int32_t)a >> (b & 31));
        case 0x76: BIN32(a >> (b & 31));
        case 0x77: BIN32(rotl32(a, b));
        case 0x78: BIN32(rotr32(a, b));

        case 0x79: TOP = TOP ? (uint64_t)__builtin_clzll(TOP) : 64; break;
        case 0x7a: TOP = TOP ? (uint64_t)__builtin_ctzll(TOP) : 64; break;
        case 0x7b: TOP = (uint64_t)__builtin_popcountll(TOP); break;
        case 0x7c: BIN64(a + b);
        case 0x7d: BIN64(a - b);
        case 0x7e: BIN64(a * b);
        case 0x7f: {
            uint64_t b = POP(), a = TOP;
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            if (a == 0x8000000000000000ull && b == UINT64_MAX)
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint64_t)((int64_t)a / (int64_t)b);
            break;
        }
        case 0x80: {
            uint64_t b = POP(), a = TOP;
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = a / b;
            break;
        }
        case 0x81: {
            uint64_t b = POP(), a = TOP;
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = b == UINT64_MAX ? 0 : (uint64_t)((int64_t)a % (int64_t)b);
            break;
        }
        case 0x82: {
            uint64_t b = POP(), a = TOP;
            if (b == 0)
                TRAP(WASM_TRAP_DIV_ZERO);
            TOP = a % b;
            break;
        }
        case 0x83: BIN64(a & b);
        case 0x84: BIN64(a | b);
        case 0x85: BIN64(a ^ b);
        case 0x86: BIN64(a << (b & 63));
        case 0x87: BIN64((int64_t)a >> (b & 63));
        case 0x88: BIN64(a >> (b & 63));
        case 0x89: BIN64(rotl64(a, b));
        case 0x8a: BIN64(rotr64(a, b));

        case 0x8b: TOP = U32(TOP) & 0x7fffffffu; break;
        case 0x8c: TOP = U32(TOP) ^ 0x80000000u; break;
        case 0x8d: UNF32(ceil32(a));
        case 0x8e: UNF32(floor32(a));
        case 0x8f: UNF32(trunc32(a));
        case 0x90: UNF32(nearest32(a));
        case 0x91: UNF32(sqrt32(a));
        case 0x92: BINF32(a + b);
        case 0x93: BINF32(a - b);
        case 0x94: BINF32(a * b);
        case 0x95: BINF32(a / b);
        case 0x96: BINF32(fmin32(a, b));
        case 0x97: BINF32(fmax32(a, b));
        case 0x98: {
            uint32_t b = U32(POP());
            TOP = (U32(TOP) & 0x7fffffffu) | (b & 0x80000000u);
            break;
        }
        case 0x99: TOP &= 0x7fffffffffffffffull; break;
        case 0x9a: TOP ^= 0x8000000000000000ull; break;
        case 0x9b: UNF64(ceil64(a));
        case 0x9c: UNF64(floor64(a));
        case 0x9d: UNF64(trunc64(a));
        case 0x9e: UNF64(nearest64(a));
        case 0x9f: UNF64(sqrt64(a));
        case 0xa0: BINF64(a + b);
        case 0xa1: BINF64(a - b);
        case 0xa2: BINF64(a * b);
        case 0xa3: BINF64(a / b);
        case 0xa4: BINF64(fmin64(a, b));
        case 0xa5: BINF64(fmax64(a, b));
        case 0xa6: {
            uint64_t b = POP();
            TOP = (TOP & 0x7fffffffffffffffull) | (b & 0x8000000000000000ull);
            break;
        }

        case 0xa7: TOP = U32(TOP); break;
        case 0xa8: {
            float x = f32_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x >= -2147483648.0f && x < 2147483648.0f))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint32_t)(int32_t)x;
            break;
        }
        case 0xa9: {
            float x = f32_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x > -1.0f && x < 4294967296.0f))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint32_t)x;
            break;
        }
        case 0xaa: {
            double x = f64_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x > -2147483649.0 && x < 2147483648.0))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint32_t)(int32_t)x;
            break;
        }
        case 0xab: {
            double x = f64_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x > -1.0 && x < 4294967296.0))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint32_t)x;
            break;
        }
        case 0xac: TOP = (uint64_t)(int64_t)S32(TOP); break;
        case 0xad: TOP = U32(TOP); break;
        case 0xae: {
            float x = f32_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x >= -9223372036854775808.0f && x < 9223372036854775808.0f))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint64_t)(int64_t)x;
            break;
        }
        case 0xaf: {
            float x = f32_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x > -1.0f && x < 18446744073709551616.0f))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint64_t)x;
            break;
        }
        case 0xb0: {
            double x = f64_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint64_t)(int64_t)x;
            break;
        }
        case 0xb1: {
            double x = f64_of(TOP);
            if (isnan(x))
                TRAP(WASM_TRAP_INVALID_CONV);
            if (!(x > -1.0 && x < 18446744073709551616.0))
                TRAP(WASM_TRAP_INT_OVERFLOW);
            TOP = (uint64_t)x;
            break;
        }
        case 0xb2: TOP = of_f32((float)S32(TOP)); break;
        case 0xb3: TOP = of_f32((float)U32(TOP)); break;
        case 0xb4: TOP = of_f32((float)S64(TOP)); break;
        case 0xb5: TOP = of_f32((float)TOP); break;
        case 0xb6: TOP = of_f32((float)f64_of(TOP)); break;
        case 0xb7: TOP = of_f64((double)S32(TOP)); break;
        case 0xb8: TOP = of_f64((double)U32(TOP)); break;
        case 0xb9: TOP = of_f64((double)S64(TOP)); break;
        case 0xba: TOP = of_f64((double)TOP); break;
        case 0xbb: TOP = of_f64((double)f32_of(TOP)); break;
        case 0xbc: TOP = U32(TOP); break;
        case 0xbd: break;
        case 0xbe: TOP = U32(TOP); break;
        case 0xbf: break;
        case 0xc0: TOP = (uint64_t)(uint32_t)(int32_t)(int8_t)TOP; break;
        case 0xc1: TOP = (uint64_t)(uint32_t)(int32_t)(int16_t)TOP; break;
        case 0xc2: TOP = (uint64_t)(int64_t)(int8_t)TOP; break;
        case 0xc3: TOP = (uint64_t)(int64_t)(int16_t)TOP; break;
        case 0xc4: TOP = (uint64_t)(int64_t)(int32_t)TOP; break;

        case 0xd1: TOP = TOP == 0; break;
        case 0xd2: PUSH((uintptr_t)inst->funcs[i->a]); break;

        case OP_FC + 0: TOP = (uint32_t)sat_i32_d(f32_of(TOP)); break;
        case OP_FC + 1: TOP = sat_u32_d(f32_of(TOP)); break;
        case OP_FC + 2: TOP = (uint32_t)sat_i32_d(f64_of(TOP)); break;
        case OP_FC + 3: TOP = sat_u32_d(f64_of(TOP)); break;
        case OP_FC + 4: TOP = (uint64_t)sat_i64_d(f32_of(TOP)); break;
        case OP_FC + 5: TOP = sat_u64_d(f32_of(TOP)); break;
        case OP_FC + 6: TOP = (uint64_t)sat_i64_d(f64_of(TOP)); break;
        case OP_FC + 7: TOP = sat_u64_d(f64_of(TOP)); break;
        case OP_FC + 8: { /* memory.init */
            uint64_t n = U32(POP()), src = U32(POP()), dst = U32(POP());
            const wdata *d = &inst->mod->datas[i->a];
            uint64_t len = inst->data_dropped[i->a] ? 0 : d->len;
            if (src + n > len || dst + n > mem->size)
                TRAP(WASM_TRAP_MEMORY_OOB);
            if (n)
                memcpy(mem->data + dst, d->bytes + src, n);
            break;
        }
        case OP_FC + 9:
            inst->data_dropped[i->a] = 1;
            break;
        case OP_FC + 10: { /* memory.copy */
            uint64_t n = U32(POP()), src = U32(POP()), dst = U32(POP());
            if (src + n > mem->size || dst + n > mem->size)
                TRAP(WASM_TRAP_MEMORY_OOB);
            if (n)
                memmove(mem->data + dst, mem->data + src, n);
            break;
        }
        case OP_FC + 11: { /* memory.fill */
            uint64_t n = U32(POP());
            uint8_t val = (uint8_t)POP();
            uint64_t dst = U32(POP());
            if (dst + n > mem->size)
                TRAP(WASM_TRAP_MEMORY_OOB);
            if (n)
                memset(mem->data + dst, val, n);
            break;
        }
        case OP_FC + 12: { /* table.init */
            uint64_t n = U32(POP()), src = U32(POP()), dst = U32(POP());
            wasm_table *tab = inst->tables[WINS_LO(i->b)];
            if (src + n > inst->elem_len[i->a] || dst + n > tab->size)
                TRAP(WASM_TRAP_TABLE_OOB);
            if (n)
                memcpy(tab->elems + dst, inst->elem_items[i->a] + src, n * 8);
            break;
        }
        case OP_FC + 13:
            inst->elem_len[i->a] = 0;
            break;
        case OP_FC + 14: { /* table.copy */
            uint64_t n = U32(POP()), src = U32(POP()), dst = U32(POP());
            wasm_table *td = inst->tables[i->a], *ts = inst->tables[WINS_LO(i->b)];
            if (src + n > ts->size || dst + n > td->size)
                TRAP(WASM_TRAP_TABLE_OOB);
            if (n)
                memmove(td->elems + dst, ts->elems + src, n * 8);
            break;
        }
        case OP_FC + 15: { /* table.grow */
            uint32_t n = U32(POP());
            uint64_t init = TOP;
            uint32_t cap = L->max_table_elems ? L->max_table_elems : s->defaults.max_table_elems;
            TOP = (uint32_t)wasm_table_grow_impl(inst->tables[i->a], n, init, cap);
            break;
        }
        case OP_FC + 16:
            PUSH(inst->tables[i->a]->size);
            break;
        case OP_FC + 17: { /* table.fill */
            uint64_t n = U32(POP());
            uint64_t val = POP();
            uint64_t dst = U32(POP());
            wasm_table *tab = inst->tables[i->a];
            if (dst + n > tab->size)
                TRAP(WASM_TRAP_TABLE_OOB);
            for (uint64_t k = 0; k < n; k++)
                tab->elems[dst + k] = val;
            break;
        }
        default:
            TRAP(WASM_TRAP_UNREACHABLE);
        }
        continue;

    do_call:
        if (callee->host) {
            uint32_t np = callee->type->nparams, nr = callee->type->nresults;
            uint64_t *a0 = sp - np;
            uint32_t save_fb = s->frame_base;
            s->frame_base = fdepth;
            trap = call_host(s, callee, inst, a0, stack_end);
            s->frame_base = save_fb;
            if (trap != WASM_OK)
                goto out;
            sp = a0 + nr;
            continue;
        }
        {
            const wcode *c = callee->code;
            if (fdepth >= fmax)
                TRAP(WASM_TRAP_CALL_DEPTH);
            uint64_t *nfp = sp - c->nparams;
            if (nfp + c->max_height + 1 > stack_end)
                TRAP(WASM_TRAP_VALUE_STACK);
            frames[fdepth++] = (wframe){pc, fp, inst};
            if (c->nlocals > c->nparams)
                memset(sp, 0, (size_t)(c->nlocals - c->nparams) * 8);
            fp = nfp;
            sp = nfp + c->nlocals;
            pc = c->code;
            inst = callee->inst;
            mem = inst->mem;
        }
    }
out:
    /* give back what this call did not use (or charge a superinstruction's debt) */
    if (budget > 0) {
        s->fuel_used -= (uint64_t)budget;
        if (s->fuel_left != UINT64_MAX)
            s->fuel_left += (uint64_t)budget;
    } else if (budget < 0) {
        s->fuel_used += (uint64_t)-budget;
    }
    return trap;
}
