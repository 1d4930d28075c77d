/* toml.c: Mothership's own TOML 1.0 parser (API in toml.h).
 *
 * Role: turn the bytes of ship-manifest.toml (or any TOML 1.0 document) into
 * a tree of toml_node values, every node and key tagged with its 1-based
 * line/column, or fail with one human error message pointing at the
 * offending character. It is judged by the official toml-test suite and
 * fuzzed (tests/fuzz/fuzz_toml.c), so it treats its input as hostile:
 *
 *   - the whole document is UTF-8 validated up front; control characters,
 *     bare CR and invalid escapes are rejected where TOML forbids them;
 *   - recursion (arrays, inline tables, tree walks) is bounded by
 *     TOML_MAX_DEPTH, which also bounds dotted-key and [header] nesting;
 *   - key lookup while parsing goes through one open-addressing hash index
 *     (table pointer + key), so big tables and long arrays of tables parse
 *     in linear time while each table's key array keeps document order;
 *   - every allocation is checked; on any error the partial tree is freed.
 *
 * Table definition rules follow TOML 1.0 (see the flags below): a table may
 * be defined once, by a [header], by dotted keys or as an inline table;
 * tables created implicitly by a [a.b.c] header may later get their own
 * header; inline tables and static arrays are sealed.
 */
#include "toml.h"

#include <assert.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- node flags (parser bookkeeping) ---- */
enum {
    F_DEFINED  = 1u << 0, /* table defined by [header], [[header]], root, inline */
    F_IMPLICIT = 1u << 1, /* table created as a [a.b] path prefix, not defined */
    F_DOTTED   = 1u << 2, /* table created (and defined) by dotted keys */
    F_SEALED   = 1u << 3, /* inline table / static array: immutable */
    F_AOT      = 1u << 4, /* array created by [[header]] */
};

/* ---- key index: open addressing over (table, key) ---- */
typedef struct idx_slot {
    toml_node *tbl;  /* NULL = empty */
    uint32_t hash;
    uint32_t pos;    /* index into tbl->u.table.items */
} idx_slot;

typedef struct key_seg {
    size_t off, len; /* into parser.keybuf */
    int line, col;
} key_seg;

typedef struct parser {
    const char *s;     /* document */
    size_t len, pos;
    int line;
    size_t line_start; /* offset of the first byte of the current line */
    toml_error *err;
    bool failed;

    /* scratch for strings and keys */
    char *buf;
    size_t buf_len, buf_cap;
    char *keybuf;
    size_t keybuf_len, keybuf_cap;
    key_seg segs[TOML_MAX_DEPTH];
    size_t nsegs;

    idx_slot *idx;
    size_t idx_cap, idx_used;

    toml_node *root;
    toml_node *cur;    /* table receiving key/values */
    int cur_depth;
} parser;

/* ---- errors ---- */

static void fail_at(parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail_at(parser *p, int line, int col, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (!p->err)
        return;
    p->err->line = line;
    p->err->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
}

static int cur_col(const parser *p)
{
    return (int)(p->pos - p->line_start) + 1;
}

#define FAIL(p, ...) fail_at((p), (p)->line, cur_col(p), __VA_ARGS__)

static void oom(parser *p)
{
    fail_at(p, 0, 0, "out of memory");
}

/* Describe the byte at the cursor for messages. */
static const char *describe(const parser *p, char *tmp, size_t tmpsz)
{
    if (p->pos >= p->len)
        return "end of input";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '\n' || (c == '\r' && p->pos + 1 < p->len && p->s[p->pos + 1] == '\n'))
        return "end of line";
    if (c >= 0x21 && c < 0x7f)
        snprintf(tmp, tmpsz, "'%c'", c);
    else if (c == ' ')
        snprintf(tmp, tmpsz, "a space");
    else if (c == '\t')
        snprintf(tmp, tmpsz, "a tab");
    else if (c >= 0x80)
        snprintf(tmp, tmpsz, "a non-ASCII character");
    else
        snprintf(tmp, tmpsz, "control character 0x%02x", c);
    return tmp;
}

/* ---- small helpers ---- */

static inline int peek(const parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static inline int peek_at(const parser *p, size_t k)
{
    return p->pos + k < p->len ? (unsigned char)p->s[p->pos + k] : -1;
}

static inline bool is_digit(int c) { return c >= '0' && c <= '9'; }
static inline bool is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline bool is_bare(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' ||
           c == '-';
}

/* Is the cursor at a newline (LF or CRLF)? Returns its length or 0. */
static size_t at_newline(const parser *p)
{
    int c = peek(p);
    if (c == '\n')
        return 1;
    if (c == '\r' && peek_at(p, 1) == '\n')
        return 2;
    return 0;
}

static void take_newline(parser *p, size_t n)
{
    p->pos += n;
    p->line++;
    p->line_start = p->pos;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

/* A comment starts at '#'; consume it up to (not including) the newline. */
static bool skip_comment(parser *p)
{
    if (peek(p) != '#')
        return true;
    p->pos++;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\n' || (c == '\r' && peek_at(p, 1) == '\n'))
            return true;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            FAIL(p, "control character 0x%02x is not allowed in a comment", c);
            return false;
        }
        p->pos++;
    }
    return true;
}

/* Skip whitespace, comments and newlines (inside arrays). */
static bool skip_ws_nl(parser *p)
{
    for (;;) {
        skip_ws(p);
        if (!skip_comment(p))
            return false;
        size_t n = at_newline(p);
        if (!n)
            return true;
        take_newline(p, n);
    }
}

static bool buf_reserve(parser *p, char **b, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) {
            oom(p);
            return false;
        }
        nc *= 2;
    }
    char *nb = realloc(*b, nc);
    if (!nb) {
        oom(p);
        return false;
    }
    *b = nb;
    *cap = nc;
    return true;
}

static bool sbuf_put(parser *p, const char *d, size_t n)
{
    if (!buf_reserve(p, &p->buf, &p->buf_cap, p->buf_len + n + 1))
        return false;
    if (n)
        memcpy(p->buf + p->buf_len, d, n);
    p->buf_len += n;
    return true;
}

static bool sbuf_putc(parser *p, char c)
{
    return sbuf_put(p, &c, 1);
}

static bool sbuf_put_utf8(parser *p, uint32_t cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return sbuf_put(p, o, n);
}

/* ---- nodes ---- */

static toml_node *node_new(parser *p, toml_type t, int line, int col)
{
    toml_node *n = calloc(1, sizeof *n);
    if (!n) {
        oom(p);
        return NULL;
    }
    n->type = t;
    n->line = line;
    n->col = col;
    return n;
}

static void node_free_depth(toml_node *n, int depth);

static void node_free_children(toml_node *n, int depth)
{
    if (n->type == TOML_TABLE) {
        for (size_t i = 0; i < n->u.table.len; i++) {
            free(n->u.table.items[i].key);
            node_free_depth(n->u.table.items[i].value, depth + 1);
        }
        free(n->u.table.items);
    } else if (n->type == TOML_ARRAY) {
        for (size_t i = 0; i < n->u.array.len; i++)
            node_free_depth(n->u.array.items[i], depth + 1);
        free(n->u.array.items);
    } else if (n->type == TOML_STRING) {
        free(n->u.str.ptr);
    }
}

/* The parser never builds trees deeper than ~2*TOML_MAX_DEPTH, so this
 * recursion is bounded. */
static void node_free_depth(toml_node *n, int depth)
{
    if (!n)
        return;
    node_free_children(n, depth);
    free(n);
}

void toml_free(toml_node *root)
{
    node_free_depth(root, 0);
}

static bool array_push(parser *p, toml_node *arr, toml_node *v)
{
    if (arr->u.array.len == arr->u.array.cap) {
        size_t nc = arr->u.array.cap ? arr->u.array.cap * 2 : 4;
        toml_node **ni = realloc(arr->u.array.items, nc * sizeof *ni);
        if (!ni) {
            oom(p);
            return false;
        }
        arr->u.array.items = ni;
        arr->u.array.cap = nc;
    }
    arr->u.array.items[arr->u.array.len++] = v;
    return true;
}

/* ---- the key index ---- */

static uint32_t key_hash(const toml_node *tbl, const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)tbl;
    h *= 1099511628211ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

/* Returns the kv index, or -1. */
static long idx_find(const parser *p, const toml_node *tbl, const char *k, size_t n)
{
    if (!p->idx_cap)
        return -1;
    uint32_t h = key_hash(tbl, k, n);
    size_t mask = p->idx_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const idx_slot *s = &p->idx[i];
        if (!s->tbl)
            return -1;
        if (s->tbl == tbl && s->hash == h) {
            const toml_kv *kv = &tbl->u.table.items[s->pos];
            if (kv->key_len == n && memcmp(kv->key, k, n) == 0)
                return (long)s->pos;
        }
    }
}

static bool idx_grow(parser *p)
{
    size_t nc = p->idx_cap ? p->idx_cap * 2 : 256;
    idx_slot *ns = calloc(nc, sizeof *ns);
    if (!ns) {
        oom(p);
        return false;
    }
    for (size_t i = 0; i < p->idx_cap; i++) {
        idx_slot *s = &p->idx[i];
        if (!s->tbl)
            continue;
        size_t j = s->hash & (nc - 1);
        while (ns[j].tbl)
            j = (j + 1) & (nc - 1);
        ns[j] = *s;
    }
    free(p->idx);
    p->idx = ns;
    p->idx_cap = nc;
    return true;
}

/* Append key -> v to tbl (key known to be absent). Takes ownership of v
 * only on success. */
static toml_kv *table_add(parser *p, toml_node *tbl, const char *k, size_t n, int line, int col,
                          toml_node *v)
{
    if (tbl->u.table.len >= UINT32_MAX) {
        FAIL(p, "too many keys in one table");
        return NULL;
    }
    if ((p->idx_used + 1) * 2 > p->idx_cap && !idx_grow(p))
        return NULL;
    if (tbl->u.table.len == tbl->u.table.cap) {
        size_t nc = tbl->u.table.cap ? tbl->u.table.cap * 2 : 4;
        toml_kv *ni = realloc(tbl->u.table.items, nc * sizeof *ni);
        if (!ni) {
            oom(p);
            return NULL;
        }
        tbl->u.table.items = ni;
        tbl->u.table.cap = nc;
    }
    char *kc = malloc(n + 1);
    if (!kc) {
        oom(p);
        return NULL;
    }
    memcpy(kc, k, n);
    kc[n] = '\0';
    size_t pos = tbl->u.table.len++;
    toml_kv *kv = &tbl->u.table.items[pos];
    kv->key = kc;
    kv->key_len = n;
    kv->line = line;
    kv->col = col;
    kv->value = v;

    uint32_t h = key_hash(tbl, k, n);
    size_t mask = p->idx_cap - 1;
    size_t i = h & mask;
    while (p->idx[i].tbl)
        i = (i + 1) & mask;
    p->idx[i].tbl = tbl;
    p->idx[i].hash = h;
    p->idx[i].pos = (uint32_t)pos;
    p->idx_used++;
    return kv;
}

/* "an integer", "a table", ... for messages. */
static const char *a_type(const toml_node *n)
{
    switch (n->type) {
    case TOML_TABLE: return (n->flags & F_SEALED) ? "an inline table" : "a table";
    case TOML_ARRAY: return (n->flags & F_AOT) ? "an array of tables" : "an array";
    case TOML_STRING: return "a string";
    case TOML_INTEGER: return "an integer";
    case TOML_FLOAT: return "a float";
    case TOML_BOOL: return "a boolean";
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL: return "a datetime";
    case TOML_DATE_LOCAL: return "a date";
    case TOML_TIME_LOCAL: return "a time";
    }
    return "a value";
}

/* ---- UTF-8 validation of the whole document ---- */

/* Returns the offset of the first invalid byte, or len when valid. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

/* ---- keys ---- */

static bool key_put(parser *p, const char *d, size_t n)
{
    if (!buf_reserve(p, &p->keybuf, &p->keybuf_cap, p->keybuf_len + n + 1))
        return false;
    if (n)
        memcpy(p->keybuf + p->keybuf_len, d, n);
    p->keybuf_len += n;
    return true;
}

static bool parse_basic_string(parser *p);   /* into p->buf */
static bool parse_literal_string(parser *p); /* into p->buf */

/* Parse a dotted key into p->segs. The cursor is at its first character. */
static bool parse_key(parser *p)
{
    p->nsegs = 0;
    p->keybuf_len = 0;
    for (;;) {
        skip_ws(p);
        if (p->nsegs == TOML_MAX_DEPTH) {
            FAIL(p, "key has more than %d parts", TOML_MAX_DEPTH);
            return false;
        }
        key_seg *sg = &p->segs[p->nsegs];
        sg->line = p->line;
        sg->col = cur_col(p);
        sg->off = p->keybuf_len;
        int c = peek(p);
        if (c == '"' || c == '\'') {
            if (peek_at(p, 1) == c && peek_at(p, 2) == c) {
                FAIL(p, "a multi-line string cannot be a key");
                return false;
            }
            p->buf_len = 0;
            if (!(c == '"' ? parse_basic_string(p) : parse_literal_string(p)))
                return false;
            if (!key_put(p, p->buf, p->buf_len))
                return false;
        } else if (is_bare(c)) {
            size_t st = p->pos;
            while (is_bare(peek(p)))
                p->pos++;
            if (!key_put(p, p->s + st, p->pos - st))
                return false;
        } else {
            char tmp[40];
            if (p->nsegs == 0)
                FAIL(p, "expected a key, found %s", describe(p, tmp, sizeof tmp));
            else
                FAIL(p, "expected a key after '.', found %s", describe(p, tmp, sizeof tmp));
            return false;
        }
        sg->len = p->keybuf_len - sg->off;
        if (!key_put(p, "", 1)) /* NUL separator, keeps segments printable */
            return false;
        p->nsegs++;
        skip_ws(p);
        if (peek(p) != '.')
            return true;
        p->pos++;
    }
}

static const char *seg_str(const parser *p, size_t i)
{
    return p->keybuf + p->segs[i].off;
}

/* Printable (possibly truncated) form of key segment i for messages. */
static const char *seg_show(const parser *p, size_t i, char *tmp, size_t tmpsz)
{
    const char *k = seg_str(p, i);
    size_t n = p->segs[i].len, o = 0;
    for (size_t j = 0; j < n && o + 5 < tmpsz; j++) {
        unsigned char c = (unsigned char)k[j];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            tmp[o++] = '?';
        else
            tmp[o++] = (char)c;
    }
    if (o + 5 >= tmpsz && o < n) {
        tmp[o++] = '.';
        tmp[o++] = '.';
        tmp[o++] = '.';
    }
    tmp[o] = '\0';
    return tmp;
}

/* ---- strings ---- */

static bool parse_escape(parser *p)
{
    /* cursor at the backslash */
    int line = p->line, col = cur_col(p);
    int c = peek_at(p, 1);
    switch (c) {
    case 'b': p->pos += 2; return sbuf_putc(p, '\b');
    case 't': p->pos += 2; return sbuf_putc(p, '\t');
    case 'n': p->pos += 2; return sbuf_putc(p, '\n');
    case 'f': p->pos += 2; return sbuf_putc(p, '\f');
    case 'r': p->pos += 2; return sbuf_putc(p, '\r');
    case '"': p->pos += 2; return sbuf_putc(p, '"');
    case '\\': p->pos += 2; return sbuf_putc(p, '\\');
    case 'u':
    case 'U': {
        int nd = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int i = 0; i < nd; i++) {
            int h = peek_at(p, 2 + (size_t)i);
            if (!is_hex(h)) {
                fail_at(p, line, col, "\\%c escape needs %d hex digits", c, nd);
                return false;
            }
            cp = cp * 16 + (uint32_t)(is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            fail_at(p, line, col, "escape \\%c%0*X is not a Unicode scalar value", c, nd,
                    (unsigned)cp);
            return false;
        }
        p->pos += 2 + (size_t)nd;
        return sbuf_put_utf8(p, cp);
    }
    default:
        if (c >= 0x21 && c < 0x7f)
            fail_at(p, line, col, "invalid escape \\%c in string", c);
        else if (c < 0)
            fail_at(p, line, col, "unterminated string");
        else
            fail_at(p, line, col, "invalid escape in string (backslash followed by %s)",
                    c == ' ' || c == '\t' ? "whitespace" : c == '\n' || c == '\r' ? "newline"
                                                                            : "a non-ASCII character");
        return false;
    }
}

/* Checks a plain content byte of a string; false on a control character. */
static bool string_byte_ok(parser *p, unsigned char c, bool multi)
{
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
        if (!multi && (c == '\n' || (c == '\r' && peek_at(p, 1) == '\n')))
            FAIL(p, "unterminated string (newline before closing quote)");
        else if (c == '\r')
            FAIL(p, "carriage return must be followed by a newline");
        else
            FAIL(p, "control character 0x%02x must be escaped in a string", c);
        return false;
    }
    return true;
}

/* "..." at cursor; content into p->buf (not reset here). */
static bool parse_basic_string(parser *p)
{
    int line = p->line, col = cur_col(p);
    p->pos++;
    for (;;) {
        if (p->pos >= p->len) {
            fail_at(p, line, col, "unterminated string");
            return false;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return true;
        }
        if (c == '\\') {
            if (!parse_escape(p))
                return false;
            continue;
        }
        if (!string_byte_ok(p, c, false))
            return false;
        size_t st = p->pos++;
        while (p->pos < p->len) {
            unsigned char d = (unsigned char)p->s[p->pos];
            if (d == '"' || d == '\\' || (d < 0x20 && d != '\t') || d == 0x7f)
                break;
            p->pos++;
        }
        if (!sbuf_put(p, p->s + st, p->pos - st))
            return false;
    }
}

static bool parse_literal_string(parser *p)
{
    int line = p->line, col = cur_col(p);
    p->pos++;
    size_t st = p->pos;
    for (;;) {
        if (p->pos >= p->len) {
            fail_at(p, line, col, "unterminated string");
            return false;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\'')
            break;
        if (!string_byte_ok(p, c, false))
            return false;
        p->pos++;
    }
    if (!sbuf_put(p, p->s + st, p->pos - st))
        return false;
    p->pos++;
    return true;
}

/* """...""" or '''...''' at cursor. */
static bool parse_ml_string(parser *p, bool basic)
{
    int line = p->line, col = cur_col(p);
    char q = basic ? '"' : '\'';
    p->pos += 3;
    size_t n = at_newline(p);
    if (n)
        take_newline(p, n);
    for (;;) {
        if (p->pos >= p->len) {
            fail_at(p, line, col, "unterminated multi-line string");
            return false;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == (unsigned char)q) {
            size_t run = 0;
            while (peek_at(p, run) == q)
                run++;
            if (run < 3) {
                if (!sbuf_put(p, p->s + p->pos, run))
                    return false;
                p->pos += run;
                continue;
            }
            if (run > 5) {
                p->pos += 5;
                FAIL(p, "too many quotes at the end of a multi-line string");
                return false;
            }
            if (!sbuf_put(p, p->s + p->pos, run - 3))
                return false;
            p->pos += run;
            return true;
        }
        if ((n = at_newline(p)) != 0) {
            take_newline(p, n);
            if (!sbuf_putc(p, '\n'))
                return false;
            continue;
        }
        if (c == '\\' && basic) {
            /* line-ending backslash: \ ws* newline, then skip ws/newlines */
            size_t k = 1;
            while (peek_at(p, k) == ' ' || peek_at(p, k) == '\t')
                k++;
            int d = peek_at(p, k);
            if (d == '\n' || (d == '\r' && peek_at(p, k + 1) == '\n')) {
                p->pos += k;
                for (;;) {
                    skip_ws(p);
                    if ((n = at_newline(p)) == 0)
                        break;
                    take_newline(p, n);
                }
                continue;
            }
            if (!parse_escape(p))
                return false;
            continue;
        }
        if (!string_byte_ok(p, c, true))
            return false;
        size_t st = p->pos++;
        while (p->pos < p->len) {
            unsigned char d = (unsigned char)p->s[p->pos];
            if (d == (unsigned char)q || (d == '\\' && basic) || (d < 0x20 && d != '\t') ||
                d == 0x7f)
                break;
            p->pos++;
        }
        if (!sbuf_put(p, p->s + st, p->pos - st))
            return false;
    }
}

static toml_node *string_node(parser *p, int line, int col)
{
    toml_node *v = node_new(p, TOML_STRING, line, col);
    if (!v)
        return NULL;
    v->u.str.ptr = malloc(p->buf_len + 1);
    if (!v->u.str.ptr) {
        free(v);
        oom(p);
        return NULL;
    }
    if (p->buf_len)
        memcpy(v->u.str.ptr, p->buf, p->buf_len);
    v->u.str.ptr[p->buf_len] = '\0';
    v->u.str.len = p->buf_len;
    return v;
}

/* ---- numbers ---- */

/* Reads digit ( '_'? digit )* of the given base into p->buf (without
 * underscores). Returns false (no error set) on a malformed run. */
static bool digit_run(parser *p, size_t *i, size_t end, int base)
{
    const char *s = p->s;
    bool any = false;
    while (*i < end) {
        int c = (unsigned char)s[*i];
        bool ok = base == 16 ? is_hex(c) : (c >= '0' && c < '0' + base);
        if (ok) {
            if (!sbuf_putc(p, (char)c))
                return false;
            any = true;
            (*i)++;
        } else if (c == '_') {
            if (!any || *i + 1 >= end)
                return false;
            int d = (unsigned char)s[*i + 1];
            bool ok2 = base == 16 ? is_hex(d) : (d >= '0' && d < '0' + base);
            if (!ok2)
                return false;
            (*i)++;
        } else {
            break;
        }
    }
    return any;
}

static toml_node *parse_number(parser *p, int line, int col)
{
    size_t st = p->pos, end = p->pos;
    while (end < p->len) {
        int c = (unsigned char)p->s[end];
        if (is_bare(c) || c == '.' || c == '+')
            end++;
        else
            break;
    }
    const char *s = p->s;
    size_t tl = end - st;
    char shown[64];
    snprintf(shown, sizeof shown, "%.*s%s", (int)(tl > 40 ? 40 : tl), s + st,
             tl > 40 ? "..." : "");

    size_t i = st;
    bool neg = false, sign = false;
    if (s[i] == '+' || s[i] == '-') {
        neg = s[i] == '-';
        sign = true;
        i++;
    }
    /* inf / nan */
    if (end - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0)) {
        toml_node *v = node_new(p, TOML_FLOAT, line, col);
        if (!v)
            return NULL;
        if (s[i] == 'i')
            v->u.flt = neg ? -__builtin_inf() : __builtin_inf();
        else
            v->u.flt = neg ? -__builtin_nan("") : __builtin_nan("");
        p->pos = end;
        return v;
    }
    p->buf_len = 0;
    /* prefixed integers */
    if (!sign && i + 1 < end && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
        int base = s[i + 1] == 'x' ? 16 : s[i + 1] == 'o' ? 8 : 2;
        i += 2;
        if (!digit_run(p, &i, end, base) || i != end) {
            if (!p->failed && memchr(s + i, '_', end - i))
                fail_at(p, line, col, "invalid number %s (an underscore must be between two digits)", shown);
            else if (!p->failed)
                fail_at(p, line, col, "invalid number %s", shown);
            return NULL;
        }
        uint64_t acc = 0;
        for (size_t k = 0; k < p->buf_len; k++) {
            int c = (unsigned char)p->buf[k];
            unsigned d = (unsigned)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
            if (acc > ((uint64_t)INT64_MAX - d) / (uint64_t)base) {
                fail_at(p, line, col, "integer %s does not fit in 64 bits", shown);
                return NULL;
            }
            acc = acc * (uint64_t)base + d;
        }
        toml_node *v = node_new(p, TOML_INTEGER, line, col);
        if (!v)
            return NULL;
        v->u.integer = (int64_t)acc;
        p->pos = end;
        return v;
    }
    /* decimal integer or float */
    size_t int_start = i;
    if (!digit_run(p, &i, end, 10)) {
        if (!p->failed && memchr(s + int_start, '_', end - int_start) && is_digit((unsigned char)s[int_start]))
            fail_at(p, line, col, "invalid number %s (an underscore must be between two digits)", shown);
        else if (!p->failed)
            fail_at(p, line, col, "invalid value %s", shown);
        return NULL;
    }
    size_t int_digits = p->buf_len;
    if (int_digits > 1 && s[int_start] == '0') {
        fail_at(p, line, col, "leading zeros are not allowed in %s", shown);
        return NULL;
    }
    bool is_float = false;
    if (i < end && s[i] == '.') {
        is_float = true;
        i++;
        if (!sbuf_putc(p, '.'))
            return NULL;
        if (!digit_run(p, &i, end, 10)) {
            if (!p->failed)
                fail_at(p, line, col, "invalid float %s (needs digits after '.')", shown);
            return NULL;
        }
    }
    if (i < end && (s[i] == 'e' || s[i] == 'E')) {
        is_float = true;
        i++;
        if (!sbuf_putc(p, 'e'))
            return NULL;
        if (i < end && (s[i] == '+' || s[i] == '-')) {
            if (!sbuf_putc(p, s[i]))
                return NULL;
            i++;
        }
        if (!digit_run(p, &i, end, 10)) {
            if (!p->failed)
                fail_at(p, line, col, "invalid float %s (bad exponent)", shown);
            return NULL;
        }
    }
    if (i != end) {
        fail_at(p, line, col, "invalid %s %s", is_float ? "float" : "number", shown);
        return NULL;
    }
    if (is_float) {
        /* strtod honours LC_NUMERIC; swap in the locale's decimal point. */
        const char *dp = localeconv()->decimal_point;
        if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
            char *dot = memchr(p->buf, '.', p->buf_len);
            if (dot)
                *dot = dp[0];
        }
        if (!sbuf_putc(p, '\0'))
            return NULL;
        errno = 0;
        char *ep;
        double d = strtod(p->buf, &ep);
        if (isinf(d)) { /* strtod overflowed: beyond DBL_MAX */
            fail_at(p, line, col, "float %s is out of range", shown);
            return NULL;
        }
        toml_node *v = node_new(p, TOML_FLOAT, line, col);
        if (!v)
            return NULL;
        v->u.flt = neg ? -d : d;
        p->pos = end;
        return v;
    }
    uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t k = 0; k < p->buf_len; k++) {
        unsigned d = (unsigned)(p->buf[k] - '0');
        if (acc > (lim - d) / 10) {
            fail_at(p, line, col, "integer %s does not fit in 64 bits", shown);
            return NULL;
        }
        acc = acc * 10 + d;
    }
    toml_node *v = node_new(p, TOML_INTEGER, line, col);
    if (!v)
        return NULL;
    if (neg)
        v->u.integer = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    else
        v->u.integer = (int64_t)acc;
    p->pos = end;
    return v;
}

/* ---- dates and times ---- */

static bool ndigits(const parser *p, size_t at, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        int c = peek_at(p, at + (size_t)k);
        if (!is_digit(c))
            return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

/* HH:MM:SS[.frac] at cursor + *k; advances *k. */
static bool parse_time_part(parser *p, size_t *k, toml_datetime *dt, int line, int col)
{
    size_t a = *k;
    if (!ndigits(p, a, 2, &dt->hour) || peek_at(p, a + 2) != ':' ||
        !ndigits(p, a + 3, 2, &dt->minute)) {
        fail_at(p, line, col, "invalid time (expected HH:MM:SS)");
        return false;
    }
    if (peek_at(p, a + 5) != ':' || !ndigits(p, a + 6, 2, &dt->second)) {
        fail_at(p, line, col, "invalid time (seconds are required: HH:MM:SS)");
        return false;
    }
    a += 8;
    if (dt->hour > 23 || dt->minute > 59 || dt->second > 60) {
        fail_at(p, line, col, "time %02d:%02d:%02d is out of range", dt->hour, dt->minute,
                dt->second);
        return false;
    }
    if (peek_at(p, a) == '.') {
        a++;
        int nd = 0;
        long ns = 0;
        while (is_digit(peek_at(p, a))) {
            if (nd < 9)
                ns = ns * 10 + (peek_at(p, a) - '0');
            nd++;
            a++;
        }
        if (nd == 0) {
            fail_at(p, line, col, "invalid time (digits required after '.')");
            return false;
        }
        for (int z = nd; z < 9; z++)
            ns *= 10;
        dt->nanosecond = (int)ns;
        dt->frac_digits = nd > 1000000 ? 1000000 : nd;
    }
    *k = a;
    return true;
}

static toml_node *parse_datetime(parser *p, int line, int col, bool has_date)
{
    toml_datetime dt;
    memset(&dt, 0, sizeof dt);
    size_t k = 0;
    toml_type t;
    if (has_date) {
        if (!ndigits(p, 0, 4, &dt.year) || peek_at(p, 4) != '-' || !ndigits(p, 5, 2, &dt.month) ||
            peek_at(p, 7) != '-' || !ndigits(p, 8, 2, &dt.day)) {
            fail_at(p, line, col, "invalid date (expected YYYY-MM-DD)");
            return NULL;
        }
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (dt.month < 1 || dt.month > 12) {
            fail_at(p, line, col, "invalid month %02d in date", dt.month);
            return NULL;
        }
        int leap = (dt.year % 4 == 0 && dt.year % 100 != 0) || dt.year % 400 == 0;
        int md = mdays[dt.month - 1] + (dt.month == 2 && leap);
        if (dt.day < 1 || dt.day > md) {
            fail_at(p, line, col, "invalid day %02d for %04d-%02d", dt.day, dt.year, dt.month);
            return NULL;
        }
        k = 10;
        int sep = peek_at(p, k);
        if ((sep == 'T' || sep == 't') || (sep == ' ' && is_digit(peek_at(p, k + 1)))) {
            k++;
            if (!parse_time_part(p, &k, &dt, line, col))
                return NULL;
            int o = peek_at(p, k);
            if (o == 'Z' || o == 'z') {
                dt.offset_z = true;
                k++;
                t = TOML_DATETIME;
            } else if (o == '+' || o == '-') {
                int oh, om;
                if (!ndigits(p, k + 1, 2, &oh) || peek_at(p, k + 3) != ':' ||
                    !ndigits(p, k + 4, 2, &om)) {
                    fail_at(p, line, col, "invalid time offset (expected +HH:MM or -HH:MM)");
                    return NULL;
                }
                if (oh > 23 || om > 59) {
                    fail_at(p, line, col, "time offset %c%02d:%02d is out of range", o, oh, om);
                    return NULL;
                }
                dt.offset_minutes = (o == '-' ? -1 : 1) * (oh * 60 + om);
                k += 6;
                t = TOML_DATETIME;
            } else {
                t = TOML_DATETIME_LOCAL;
            }
        } else {
            t = TOML_DATE_LOCAL;
        }
    } else {
        if (!parse_time_part(p, &k, &dt, line, col))
            return NULL;
        t = TOML_TIME_LOCAL;
    }
    toml_node *v = node_new(p, t, line, col);
    if (!v)
        return NULL;
    v->u.dt = dt;
    p->pos += k;
    return v;
}

/* ---- values ---- */

static toml_node *parse_value(parser *p, int depth);
static bool parse_keyval(parser *p, toml_node *tbl, int depth);

static toml_node *parse_array(parser *p, int depth)
{
    toml_node *arr = node_new(p, TOML_ARRAY, p->line, cur_col(p));
    if (!arr)
        return NULL;
    arr->flags = F_SEALED;
    p->pos++;
    for (;;) {
        if (!skip_ws_nl(p))
            goto bad;
        if (peek(p) == ']') {
            p->pos++;
            return arr;
        }
        toml_node *v = parse_value(p, depth + 1);
        if (!v)
            goto bad;
        if (!array_push(p, arr, v)) {
            toml_free(v);
            goto bad;
        }
        if (!skip_ws_nl(p))
            goto bad;
        int c = peek(p);
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == ']') {
            p->pos++;
            return arr;
        }
        char tmp[40];
        FAIL(p, "expected ',' or ']' in array, found %s", describe(p, tmp, sizeof tmp));
        goto bad;
    }
bad:
    toml_free(arr);
    return NULL;
}

static toml_node *parse_inline_table(parser *p, int depth)
{
    toml_node *tbl = node_new(p, TOML_TABLE, p->line, cur_col(p));
    if (!tbl)
        return NULL;
    tbl->flags = F_DEFINED;
    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        tbl->flags |= F_SEALED;
        return tbl;
    }
    for (;;) {
        skip_ws(p);
        if (!parse_keyval(p, tbl, depth))
            goto bad;
        skip_ws(p);
        int c = peek(p);
        if (c == ',') {
            size_t comma = p->pos;
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') {
                p->pos = comma;
                FAIL(p, "trailing comma is not allowed in an inline table");
                goto bad;
            }
            continue;
        }
        if (c == '}') {
            p->pos++;
            tbl->flags |= F_SEALED;
            return tbl;
        }
        char tmp[40];
        if (at_newline(p))
            FAIL(p, "newlines are not allowed in an inline table");
        else
            FAIL(p, "expected ',' or '}' in inline table, found %s", describe(p, tmp, sizeof tmp));
        goto bad;
    }
bad:
    /* keys inserted into tbl are in the index; they are never looked up
     * again once we fail, so freeing is safe. */
    toml_free(tbl);
    return NULL;
}

static toml_node *parse_value(parser *p, int depth)
{
    int line = p->line, col = cur_col(p);
    if (depth > TOML_MAX_DEPTH) {
        FAIL(p, "nesting deeper than %d levels", TOML_MAX_DEPTH);
        return NULL;
    }
    int c = peek(p);
    switch (c) {
    case '"':
    case '\'':
        p->buf_len = 0;
        if (peek_at(p, 1) == c && peek_at(p, 2) == c) {
            if (!parse_ml_string(p, c == '"'))
                return NULL;
        } else if (!(c == '"' ? parse_basic_string(p) : parse_literal_string(p))) {
            return NULL;
        }
        return string_node(p, line, col);
    case '[':
        return parse_array(p, depth);
    case '{':
        return parse_inline_table(p, depth);
    case 't':
    case 'f': {
        const char *w = c == 't' ? "true" : "false";
        size_t n = strlen(w);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0 &&
            !is_bare(peek_at(p, n))) {
            toml_node *v = node_new(p, TOML_BOOL, line, col);
            if (!v)
                return NULL;
            v->u.boolean = c == 't';
            p->pos += n;
            return v;
        }
        break;
    }
    case 'i':
    case 'n':
    case '+':
    case '-':
        return parse_number(p, line, col);
    default:
        if (is_digit(c)) {
            if (is_digit(peek_at(p, 1)) && is_digit(peek_at(p, 2)) && is_digit(peek_at(p, 3)) &&
                peek_at(p, 4) == '-')
                return parse_datetime(p, line, col, true);
            if (is_digit(peek_at(p, 1)) && peek_at(p, 2) == ':')
                return parse_datetime(p, line, col, false);
            return parse_number(p, line, col);
        }
        break;
    }
    char tmp[40];
    if (c < 0 || at_newline(p) || c == '#')
        FAIL(p, "expected a value, found %s", c == '#' ? "a comment" : describe(p, tmp, sizeof tmp));
    else if (is_bare(c))
        FAIL(p, "invalid value (strings must be quoted)");
    else
        FAIL(p, "expected a value, found %s", describe(p, tmp, sizeof tmp));
    return NULL;
}

/* ---- table structure ---- */

/* Walk/create the dotted-key prefix segs[0..nsegs-2] under tbl for a
 * key/value; returns the table that receives the last segment. */
static toml_node *dotted_prefix(parser *p, toml_node *tbl, int *depth)
{
    char tmp[80];
    for (size_t i = 0; i + 1 < p->nsegs; i++) {
        const key_seg *sg = &p->segs[i];
        long at = idx_find(p, tbl, seg_str(p, i), sg->len);
        if (at < 0) {
            if (++*depth > TOML_MAX_DEPTH) {
                fail_at(p, sg->line, sg->col, "nesting deeper than %d levels", TOML_MAX_DEPTH);
                return NULL;
            }
            toml_node *t = node_new(p, TOML_TABLE, sg->line, sg->col);
            if (!t)
                return NULL;
            t->flags = F_DOTTED;
            if (!table_add(p, tbl, seg_str(p, i), sg->len, sg->line, sg->col, t)) {
                free(t);
                return NULL;
            }
            tbl = t;
            continue;
        }
        assert((size_t)at < tbl->u.table.len); /* the index holds positions of this table's keys */
        toml_node *t = tbl->u.table.items[at].value;
        if (t->type != TOML_TABLE) {
            fail_at(p, sg->line, sg->col, "key \"%s\" is already defined as %s",
                    seg_show(p, i, tmp, sizeof tmp), a_type(t));
            return NULL;
        }
        if (t->flags & F_SEALED) {
            fail_at(p, sg->line, sg->col, "cannot add keys to inline table \"%s\"",
                    seg_show(p, i, tmp, sizeof tmp));
            return NULL;
        }
        if (!(t->flags & F_DOTTED)) {
            fail_at(p, sg->line, sg->col,
                    "table \"%s\" was created by a [table] header; dotted keys cannot add to it",
                    seg_show(p, i, tmp, sizeof tmp));
            return NULL;
        }
        ++*depth;
        tbl = t;
    }
    return tbl;
}

/* key = value, cursor at the key. */
static bool parse_keyval(parser *p, toml_node *tbl, int depth)
{
    if (!parse_key(p))
        return false;
    if (peek(p) != '=') {
        char tmp[40];
        FAIL(p, "expected '=' after key, found %s", describe(p, tmp, sizeof tmp));
        return false;
    }
    p->pos++;
    skip_ws(p);
    toml_node *t = dotted_prefix(p, tbl, &depth);
    if (!t)
        return false;
    size_t last = p->nsegs - 1;
    const key_seg sg = p->segs[last];
    if (idx_find(p, t, seg_str(p, last), sg.len) >= 0) {
        char tmp[80];
        fail_at(p, sg.line, sg.col, "duplicate key \"%s\"", seg_show(p, last, tmp, sizeof tmp));
        return false;
    }
    /* parse_value reuses the key buffers; keep a copy of the last segment */
    size_t klen = sg.len;
    char small[64], *key = klen < sizeof small ? small : malloc(klen + 1);
    if (!key) {
        oom(p);
        return false;
    }
    memcpy(key, seg_str(p, last), klen);
    toml_node *v = parse_value(p, depth + 1);
    bool ok = false;
    if (v) {
        if (table_add(p, t, key, klen, sg.line, sg.col, v))
            ok = true;
        else
            toml_free(v);
    }
    if (key != small)
        free(key);
    return ok;
}

/* [a.b.c] or [[a.b.c]], cursor at the first '['. */
static bool parse_header(parser *p)
{
    int hline = p->line, hcol = cur_col(p);
    bool aot = peek_at(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    skip_ws(p);
    if (!parse_key(p))
        return false;
    if (peek(p) != ']' || (aot && peek_at(p, 1) != ']')) {
        char tmp[40];
        FAIL(p, "expected '%s' to close the table header, found %s", aot ? "]]" : "]",
             describe(p, tmp, sizeof tmp));
        return false;
    }
    p->pos += aot ? 2 : 1;

    char tmp[80];
    toml_node *tbl = p->root;
    int depth = 0;
    for (size_t i = 0; i + 1 < p->nsegs; i++) {
        const key_seg *sg = &p->segs[i];
        long at = idx_find(p, tbl, seg_str(p, i), sg->len);
        if (at < 0) {
            if (++depth > TOML_MAX_DEPTH) {
                fail_at(p, sg->line, sg->col, "nesting deeper than %d levels", TOML_MAX_DEPTH);
                return false;
            }
            toml_node *t = node_new(p, TOML_TABLE, sg->line, sg->col);
            if (!t)
                return false;
            t->flags = F_IMPLICIT;
            if (!table_add(p, tbl, seg_str(p, i), sg->len, sg->line, sg->col, t)) {
                free(t);
                return false;
            }
            tbl = t;
            continue;
        }
        assert((size_t)at < tbl->u.table.len); /* the index holds positions of this table's keys */
        toml_node *t = tbl->u.table.items[at].value;
        if (t->type == TOML_ARRAY && (t->flags & F_AOT)) {
            depth += 2;
            tbl = t->u.array.items[t->u.array.len - 1];
            continue;
        }
        if (t->type != TOML_TABLE) {
            fail_at(p, sg->line, sg->col, "key \"%s\" is already defined as %s",
                    seg_show(p, i, tmp, sizeof tmp), a_type(t));
            return false;
        }
        if (t->flags & F_SEALED) {
            fail_at(p, sg->line, sg->col, "cannot extend inline table \"%s\"",
                    seg_show(p, i, tmp, sizeof tmp));
            return false;
        }
        depth++;
        tbl = t;
    }
    if (depth + 2 > TOML_MAX_DEPTH) {
        fail_at(p, hline, hcol, "nesting deeper than %d levels", TOML_MAX_DEPTH);
        return false;
    }
    size_t last = p->nsegs - 1;
    const key_seg *sg = &p->segs[last];
    long at = idx_find(p, tbl, seg_str(p, last), sg->len);
    if (aot) {
        toml_node *arr;
        if (at < 0) {
            arr = node_new(p, TOML_ARRAY, hline, hcol);
            if (!arr)
                return false;
            arr->flags = F_AOT;
            if (!table_add(p, tbl, seg_str(p, last), sg->len, sg->line, sg->col, arr)) {
                free(arr);
                return false;
            }
        } else {
            arr = tbl->u.table.items[at].value;
            if (arr->type != TOML_ARRAY || !(arr->flags & F_AOT)) {
                fail_at(p, sg->line, sg->col,
                        arr->type == TOML_ARRAY ? "cannot append to static array \"%s\" with [[...]]"
                                                : "key \"%s\" is already defined and is not an array of tables",
                        seg_show(p, last, tmp, sizeof tmp));
                return false;
            }
        }
        toml_node *t = node_new(p, TOML_TABLE, hline, hcol);
        if (!t)
            return false;
        t->flags = F_DEFINED;
        if (!array_push(p, arr, t)) {
            free(t);
            return false;
        }
        p->cur = t;
        p->cur_depth = depth + 2;
        return true;
    }
    if (at < 0) {
        toml_node *t = node_new(p, TOML_TABLE, hline, hcol);
        if (!t)
            return false;
        t->flags = F_DEFINED;
        if (!table_add(p, tbl, seg_str(p, last), sg->len, sg->line, sg->col, t)) {
            free(t);
            return false;
        }
        p->cur = t;
        p->cur_depth = depth + 1;
        return true;
    }
    assert((size_t)at < tbl->u.table.len);
    toml_kv *kv = &tbl->u.table.items[at];
    toml_node *t = kv->value;
    if (t->type != TOML_TABLE) {
        fail_at(p, sg->line, sg->col, "key \"%s\" is already defined as %s",
                seg_show(p, last, tmp, sizeof tmp), a_type(t));
        return false;
    }
    if (!(t->flags & F_IMPLICIT)) {
        fail_at(p, sg->line, sg->col, "table \"%s\" is already defined%s",
                seg_show(p, last, tmp, sizeof tmp),
                (t->flags & F_DOTTED)   ? " by dotted keys"
                : (t->flags & F_SEALED) ? " as an inline table"
                                        : "");
        return false;
    }
    t->flags = F_DEFINED;
    t->line = hline;
    t->col = hcol;
    kv->line = sg->line;
    kv->col = sg->col;
    p->cur = t;
    p->cur_depth = depth + 1;
    return true;
}

/* After a header or key/value: whitespace, optional comment, then a newline
 * or the end of input. */
static bool end_of_line(parser *p, const char *after)
{
    skip_ws(p);
    if (!skip_comment(p))
        return false;
    if (p->pos >= p->len)
        return true;
    size_t n = at_newline(p);
    if (n) {
        take_newline(p, n);
        return true;
    }
    char tmp[40];
    if (peek(p) == '\r')
        FAIL(p, "carriage return must be followed by a newline");
    else
        FAIL(p, "expected end of line after %s, found %s", after, describe(p, tmp, sizeof tmp));
    return false;
}

static bool parse_document(parser *p)
{
    while (p->pos < p->len) {
        skip_ws(p);
        if (!skip_comment(p))
            return false;
        if (p->pos >= p->len)
            return true;
        size_t n = at_newline(p);
        if (n) {
            take_newline(p, n);
            continue;
        }
        int c = peek(p);
        if (c == '[') {
            if (!parse_header(p) || !end_of_line(p, "table header"))
                return false;
        } else if (is_bare(c) || c == '"' || c == '\'') {
            if (!parse_keyval(p, p->cur, p->cur_depth) || !end_of_line(p, "value"))
                return false;
        } else {
            char tmp[40];
            if (c == '\r')
                FAIL(p, "carriage return must be followed by a newline");
            else if (c == '=')
                FAIL(p, "expected a key before '='");
            else
                FAIL(p, "expected a key or [table], found %s", describe(p, tmp, sizeof tmp));
            return false;
        }
    }
    return true;
}

toml_node *toml_parse(const char *data, size_t len, toml_error *err)
{
    parser P;
    memset(&P, 0, sizeof P);
    parser *p = &P;
    p->s = data ? data : "";
    p->len = data ? len : 0;
    p->err = err;
    p->line = 1;
    if (err)
        memset(err, 0, sizeof *err);
    if (p->len > (size_t)INT32_MAX) {
        fail_at(p, 0, 0, "document too large");
        return NULL;
    }

    size_t bad = utf8_check((const unsigned char *)p->s, p->len);
    if (bad < p->len) {
        for (size_t i = 0; i < bad; i++)
            if (p->s[i] == '\n') {
                p->line++;
                p->line_start = i + 1;
            }
        p->pos = bad;
        FAIL(p, "invalid UTF-8 byte 0x%02x", (unsigned char)p->s[bad]);
        return NULL;
    }
    if (p->len >= 3 && memcmp(p->s, "\xEF\xBB\xBF", 3) == 0) {
        p->pos = 3;
        p->line_start = 3;
    }
    p->root = node_new(p, TOML_TABLE, 1, 1);
    if (!p->root)
        return NULL;
    p->root->flags = F_DEFINED;
    p->cur = p->root;
    p->cur_depth = 0;

    bool ok = parse_document(p) && !p->failed;
    free(p->buf);
    free(p->keybuf);
    free(p->idx);
    if (!ok) {
        toml_free(p->root);
        if (err && !err->msg[0])
            snprintf(err->msg, sizeof err->msg, "invalid TOML");
        return NULL;
    }
    return p->root;
}

/* ---- lookups ---- */

const toml_kv *toml_get_kv(const toml_node *table, const char *key)
{
    if (!table || table->type != TOML_TABLE || !key)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < table->u.table.len; i++) {
        const toml_kv *kv = &table->u.table.items[i];
        if (kv->key_len == n && memcmp(kv->key, key, n) == 0)
            return kv;
    }
    return NULL;
}

const toml_node *toml_get(const toml_node *table, const char *key)
{
    const toml_kv *kv = toml_get_kv(table, key);
    return kv ? kv->value : NULL;
}

size_t toml_len(const toml_node *n)
{
    if (!n)
        return 0;
    if (n->type == TOML_TABLE)
        return n->u.table.len;
    if (n->type == TOML_ARRAY)
        return n->u.array.len;
    return 0;
}

const toml_kv *toml_kv_at(const toml_node *table, size_t i)
{
    if (!table || table->type != TOML_TABLE || i >= table->u.table.len)
        return NULL;
    return &table->u.table.items[i];
}

const toml_node *toml_at(const toml_node *array, size_t i)
{
    if (!array || array->type != TOML_ARRAY || i >= array->u.array.len)
        return NULL;
    return array->u.array.items[i];
}

const char *toml_type_name(toml_type t)
{
    switch (t) {
    case TOML_TABLE: return "table";
    case TOML_ARRAY: return "array";
    case TOML_STRING: return "string";
    case TOML_INTEGER: return "integer";
    case TOML_FLOAT: return "float";
    case TOML_BOOL: return "boolean";
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL: return "datetime";
    case TOML_DATE_LOCAL: return "date";
    case TOML_TIME_LOCAL: return "time";
    }
    return "value";
}
