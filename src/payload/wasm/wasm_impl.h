/* wasm_impl.h - internal data structures shared by the interpreter's files:
 * the decoded module, the lowered instruction form, and the run-time objects
 * (store, instances, functions, memories, tables, globals).  Not public. */
#ifndef MS_WASM_IMPL_H
#define MS_WASM_IMPL_H

#include "wasm.h"

#include <setjmp.h>

#define WASM_PAGE 65536u
#define WASM_MAX_PAGES 65536u
#define WASM_T_UNKNOWN 0 /* validator's bottom type */

/* ---- module ---- */

typedef struct wfunctype {
    uint32_t nparams, nresults;
    uint8_t *types; /* params then results (wasm_valtype bytes) */
} wfunctype;

typedef struct wlimits {
    uint32_t min, max;
    bool has_max;
} wlimits;

typedef struct wtabletype {
    uint8_t elem;
    wlimits lim;
} wtabletype;

typedef struct wglobaltype {
    uint8_t type;
    bool mut;
} wglobaltype;

enum { WC_I32, WC_I64, WC_F32, WC_F64, WC_REF_NULL, WC_REF_FUNC, WC_GLOBAL_GET };
typedef struct wconst {
    uint8_t op;
    uint8_t type; /* result type */
    uint32_t idx; /* func or global index */
    uint64_t bits;
} wconst;

typedef struct wimport {
    char *module, *name;
    uint8_t kind;
    uint32_t index; /* index in the kind's index space */
} wimport;

typedef struct wexport {
    char *name; /* NUL-terminated, but may contain NULs: use name_len */
    uint32_t name_len;
    uint8_t kind;
    uint32_t index;
} wexport;

enum { SEG_ACTIVE, SEG_PASSIVE, SEG_DECLARATIVE };

typedef struct welem {
    uint8_t mode, type;
    uint32_t table;
    wconst offset;
    uint32_t n;
    wconst *items;
} welem;

typedef struct wdata {
    uint8_t mode;
    wconst offset;
    const uint8_t *bytes;
    uint32_t len;
} wdata;

/* Lowered instruction: 16 bytes.  Branch targets are relative to the
 * branching instruction; heights are absolute slot offsets from the frame. */
typedef struct wins {
    uint32_t op;
    uint32_t a;
    uint64_t b;
} wins;

#define WINS_LO(b) ((uint32_t)(b))
#define WINS_HI(b) ((uint32_t)((b) >> 32))
#define WINS_PAIR(lo, hi) ((uint64_t)(lo) | ((uint64_t)(hi) << 32))

/* Internal opcodes: single-byte Wasm opcodes keep their value, 0xFC-prefixed
 * ones become 0x100 + sub-opcode, and lowered control flow uses these: */
enum {
    OP_FC = 0x100,
    OP_BR = 0x200,   /* a: rel target, b: (height, arity); move arity values */
    OP_JMP,          /* a: rel target */
    OP_BR_IF,        /* pop cond; if set, like OP_BR */
    OP_JMP_IF,       /* pop cond; if set, jump */
    OP_JMP_UNLESS,   /* pop cond; if zero, jump */
    OP_BR_TABLE,     /* a: n; followed by n+1 OP_BR entries (last = default) */
    OP_RETURN,       /* a: result count */
    /* superinstructions (peephole-fused, never across a branch target);
     * each charges the fuel of the instructions it replaces */
    OP_JMPZ_F,       /* i32.eqz + br_if: jump if zero */
    OP_JMPNZ_F,      /* i32.eqz + if: jump (to else) if non-zero */
    OP_LG2,          /* local.get a; local.get b */
    OP_LG_C,         /* local.get a; i32/i64.const b */
    OP_LG2_ADD,      /* local.get a; local.get b; i32.add */
    OP_LG_ADDC,      /* local.get a; i32.const c; i32.add/sub (b = c or -c) */
    OP_LL_ADD_SET,   /* ...OP_LG2_ADD; local.set: b = (local b, dst) */
    OP_L_ADDC_SET,   /* ...OP_LG_ADDC; local.set: b = (c, dst) */
    /* i32 comparison + br_if/if: jump if the comparison holds, in the order
     * of opcodes 0x46..0x4f (eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u) */
    OP_JIF_EQ,
    OP_JIF_GE_U = OP_JIF_EQ + 9,
    OP_END_LIMIT
};

typedef struct wcode {
    const uint8_t *body; /* instruction bytes (after locals) */
    const uint8_t *end;
    uint32_t nlocals;    /* including params */
    uint8_t *local_types;
    wins *code;
    uint32_t ncode;
    uint32_t max_height; /* locals + max operand height, in slots */
    uint32_t nparams, nresults;
} wcode;

struct wasm_module {
    uint8_t *bytes; /* owned copy of the binary */
    size_t len;
    uint32_t ntypes;
    wfunctype *types;
    uint32_t nimports;
    wimport *imports;
    uint32_t nfuncs, nfunc_imports;
    uint32_t *func_types; /* type index per function */
    uint32_t ntables, ntable_imports;
    wtabletype *tables;
    uint32_t nmems, nmem_imports;
    wlimits *mems;
    uint32_t nglobals, nglobal_imports;
    wglobaltype *globals;
    wconst *global_inits; /* per global (imports unused) */
    uint32_t nexports;
    wexport *exports;
    bool has_start;
    uint32_t start;
    uint32_t nelems;
    welem *elems;
    uint32_t ndatas;
    wdata *datas;
    bool has_datacount;
    uint32_t datacount;
    wcode *codes; /* per defined function */
    uint8_t *declared; /* per function: referenced outside code (ref.func ok) */
};

/* decode.c */
bool wasm_decode(struct wasm_module *m, char *err, size_t errlen);
/* validate.c */
bool wasm_validate(struct wasm_module *m, char *err, size_t errlen);
/* module.c */
void wasm_module_release(struct wasm_module *m);

/* ---- run time ---- */

struct wasm_func {
    const wfunctype *type;
    wasm_instance *inst;   /* NULL for host functions */
    const wcode *code;
    wasm_host_fn host;
    void *user;
    wfunctype own_type;   /* host functions own their type */
    struct wasm_func *next;
};

struct wasm_memory {
    uint8_t *data;
    uint64_t size; /* bytes */
    uint32_t pages;
    wlimits lim;
    wasm_store *store;
    struct wasm_memory *next;
};

struct wasm_table {
    uint64_t *elems;
    uint32_t size;
    uint8_t type;
    wlimits lim;
    wasm_store *store;
    struct wasm_table *next;
};

struct wasm_global {
    uint64_t val;
    uint8_t type;
    bool mut;
    struct wasm_global *next;
};

struct wasm_instance {
    wasm_store *store;
    const wasm_module *mod;
    wasm_func **funcs;
    wasm_table **tables;
    wasm_memory *mem; /* memory 0 or NULL */
    wasm_global **globals;
    uint64_t **elem_items; /* evaluated element segments */
    uint32_t *elem_len;    /* 0 once dropped */
    uint8_t *data_dropped;
    struct wasm_instance *next;
};

typedef struct wframe {
    const wins *pc;
    uint64_t *fp;
    wasm_instance *inst;
} wframe;

struct wasm_store {
    wasm_limits defaults;
    wasm_limits cur; /* limits of the running call */
    uint64_t *stack;
    uint32_t stack_slots;
    wframe *frames;
    uint32_t nframes_max;
    /* re-entrancy: where the next host->wasm call may start */
    uint64_t *sp_base;
    uint32_t frame_base;
    uint64_t fuel_left; /* UINT64_MAX = unlimited */
    uint64_t fuel_used;
    uint64_t deadline;  /* monotonic ns, 0 = none */
    wasm_func *funcs;
    wasm_memory *mems;
    wasm_table *tables;
    wasm_global *globals;
    wasm_instance *instances;
};

/* exec.c */
wasm_trap wasm_exec_call(wasm_store *s, wasm_func *f, uint64_t *args_results);
bool wasm_functype_eq(const wfunctype *a, const wfunctype *b);
uint64_t wasm_now_ns(void);
/* instance.c */
int64_t wasm_memory_grow_impl(wasm_memory *m, uint32_t delta, uint32_t cap);
int64_t wasm_table_grow_impl(wasm_table *t, uint32_t delta, uint64_t init, uint32_t cap);

#endif
