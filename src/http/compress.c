/* compress.c: Accept-Encoding negotiation, compressible types and the
 * streaming gzip/deflate/br/zstd compressors. See compress.h. */
#include "http/compress.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

/* ---- Accept-Encoding ---- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != b[i])
            return false;
    return true;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); -1 if malformed. */
static int parse_q(const char *s, size_t n)
{
    if (n == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000;
    if (n == 1)
        return q;
    if (s[1] != '.' || n > 5)
        return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

static void parse_ae(const char *ae, size_t len, int q[MS_ENC_COUNT], bool *identity_explicit)
{
    int listed[MS_ENC_COUNT] = { -1, -1, -1, -1, -1 };
    int star = -1;
    size_t i = 0;
    while (ae && i < len) {
        /* one list element: coding *( OWS ";" OWS param ) */
        while (i < len && (is_ows(ae[i]) || ae[i] == ','))
            i++;
        size_t ts = i;
        while (i < len && ae[i] != ',' && ae[i] != ';' && !is_ows(ae[i]))
            i++;
        size_t tlen = i - ts;
        int qv = 1000;
        while (i < len && ae[i] != ',') {
            while (i < len && is_ows(ae[i]))
                i++;
            if (i < len && ae[i] == ';') {
                i++;
                while (i < len && is_ows(ae[i]))
                    i++;
                size_t ps = i;
                while (i < len && ae[i] != ',' && ae[i] != ';' && !is_ows(ae[i]))
                    i++;
                if (i - ps >= 2 && lower(ae[ps]) == 'q' && ae[ps + 1] == '=') {
                    int v = parse_q(ae + ps + 2, i - ps - 2);
                    qv = v < 0 ? -2 : v;   /* malformed: drop the element */
                }
            } else if (i < len && ae[i] != ',') {
                i++;   /* junk between coding and params: skip it */
            }
        }
        if (tlen == 0 || qv < 0)
            continue;
        const char *t = ae + ts;
        int idx = -1;
        if (ieq(t, tlen, "br"))
            idx = MS_ENC_BR;
        else if (ieq(t, tlen, "gzip") || ieq(t, tlen, "x-gzip"))
            idx = MS_ENC_GZIP;
        else if (ieq(t, tlen, "deflate"))
            idx = MS_ENC_DEFLATE;
        else if (ieq(t, tlen, "zstd"))
            idx = MS_ENC_ZSTD;
        else if (ieq(t, tlen, "identity"))
            idx = MS_ENC_IDENTITY;
        else if (tlen == 1 && t[0] == '*') {
            if (star < 0)
                star = qv;
            continue;
        }
        if (idx >= 0 && listed[idx] < 0)
            listed[idx] = qv;
    }
    *identity_explicit = listed[MS_ENC_IDENTITY] >= 0 || star >= 0;
    for (int e = 0; e < MS_ENC_COUNT; e++) {
        if (listed[e] >= 0)
            q[e] = listed[e];
        else if (star >= 0)
            q[e] = star;
        else
            q[e] = e == MS_ENC_IDENTITY ? 1000 : 0;
    }
}

void ms_compress_qvalues(const char *ae, size_t len, int q[MS_ENC_COUNT])
{
    bool explicit_identity;
    parse_ae(ae, len, q, &explicit_identity);
}

ms_encoding ms_compress_negotiate(const char *ae, size_t len, bool *identity_forbidden)
{
    int q[MS_ENC_COUNT];
    bool explicit_identity;
    parse_ae(ae, len, q, &explicit_identity);
    if (identity_forbidden)
        *identity_forbidden = q[MS_ENC_IDENTITY] == 0;
    static const ms_encoding pref[] = { MS_ENC_ZSTD, MS_ENC_BR, MS_ENC_GZIP, MS_ENC_DEFLATE };
    ms_encoding best = MS_ENC_IDENTITY;
    int bestq = 0;
    for (size_t k = 0; k < sizeof pref / sizeof pref[0]; k++)
        if (q[pref[k]] > bestq) {
            bestq = q[pref[k]];
            best = pref[k];
        }
    /* identity competes on q only when the client gave it one */
    if (best != MS_ENC_IDENTITY && explicit_identity && bestq < q[MS_ENC_IDENTITY])
        return MS_ENC_IDENTITY;
    return best;
}

const char *ms_encoding_name(ms_encoding e)
{
    switch (e) {
    case MS_ENC_GZIP: return "gzip";
    case MS_ENC_DEFLATE: return "deflate";
    case MS_ENC_BR: return "br";
    case MS_ENC_ZSTD: return "zstd";
    case MS_ENC_IDENTITY: break;
    }
    return "identity";
}

/* ---- compressible types ---- */

static bool has_suffix(const char *s, size_t n, const char *suf)
{
    size_t m = strlen(suf);
    return n >= m && ieq(s + n - m, m, suf);
}

bool ms_compress_type_ok(const char *ct, size_t len)
{
    if (!ct)
        return false;
    size_t s = 0, e = 0;
    while (s < len && is_ows(ct[s]))
        s++;
    e = s;
    while (e < len && ct[e] != ';' && !is_ows(ct[e]))
        e++;
    const char *t = ct + s;
    size_t n = e - s;
    if (n > 5 && ieq(t, 5, "text/"))
        return !ieq(t, n, "text/event-stream");
    static const char *const exact[] = {
        "application/json", "application/javascript", "application/x-javascript",
        "application/ecmascript", "application/xml", "application/wasm",
        "application/x-font-ttf", "application/vnd.ms-fontobject", "application/x-ndjson",
        "application/graphql", "font/ttf", "font/otf", "font/sfnt",
        "image/x-icon", "image/vnd.microsoft.icon", "image/bmp",
    };
    for (size_t k = 0; k < sizeof exact / sizeof exact[0]; k++)
        if (ieq(t, n, exact[k]))
            return true;
    return (n > 12 && ieq(t, 12, "application/") && (has_suffix(t, n, "+json") || has_suffix(t, n, "+xml")))
           || ieq(t, n, "image/svg+xml");
}

/* ---- compressors ---- */

struct ms_compressor {
    ms_encoding enc;
    ms_compress_cache *cache;   /* where a zstd context goes back, or NULL */
    bool finished, broken;
    size_t mem, peak;   /* bytes held by the encoder now and at most, counted by alloc_cb/free_cb */
    union {
        z_stream z;
        BrotliEncoderState *br;
        ZSTD_CCtx *zs;
    } u;
};

/* Every encoder allocation carries its size in a header so frees can be counted. */
typedef union { size_t size; max_align_t align; } alloc_hdr;

static void *alloc_cb(void *opaque, size_t size)
{
    ms_compressor *c = opaque;
    if (size > SIZE_MAX - sizeof(alloc_hdr))
        return NULL;
    alloc_hdr *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    c->mem += size;
    if (c->mem > c->peak)
        c->peak = c->mem;
    return h + 1;
}

static void free_cb(void *opaque, void *p)
{
    ms_compressor *c = opaque;
    if (!p)
        return;
    alloc_hdr *h = (alloc_hdr *)p - 1;
    c->mem -= h->size;
    free(h);
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return alloc_cb(opaque, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) { free_cb(opaque, p); }

static int log2_ceil(uint64_t v, int lo, int hi)
{
    int b = lo;
    while (b < hi && ((uint64_t)1 << b) < v)
        b++;
    return b;
}

/* libzstd's smallest window (ZSTD_WINDOWLOG_MIN, an experimental define). */
#define ZSTD_WLOG_FLOOR 10

/* zstd with a bounded window: the window is what a stream keeps (its input
 * staging buffer holds a window plus a 128 KiB block), so 2^18 (smaller for
 * a small hint) keeps a stream at ~1.4 MiB where the default level's 2^21
 * would cost ~3.5 MiB, and stays far under RFC 9659's 8 MiB limit for HTTP.
 * The level's hash and chain tables (2^17, 2^16 at level 3, sized for
 * large inputs) are capped at 2^16 and 2^15: 0.4 MiB less for 0.7% in size
 * (and faster: fewer cache misses). The checksum is left off: the
 * transport already guards the bytes. */
static int zstd_init(ms_compressor *c, int level, uint64_t size_hint)
{
    if (level < 0)
        level = MS_ZSTD_DEFAULT_LEVEL;
    if (level < 1)
        level = 1;
    if (level > 19)
        level = 19;   /* 20+ are the "ultra" levels: windows far past ours */
    int wlog = size_hint ? log2_ceil(size_hint, ZSTD_WLOG_FLOOR, MS_ZSTD_WINDOW_LOG) : MS_ZSTD_WINDOW_LOG;
    int hlog = wlog + 1 < 16 ? wlog + 1 : 16;
    int clog = wlog < 15 ? wlog : 15;
    if (c->cache && c->cache->nzstd > 0)
        c->u.zs = c->cache->zstd[--c->cache->nzstd];   /* reset when it was given back */
    else
        c->u.zs = ZSTD_createCCtx();
    if (!c->u.zs)
        return -1;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->u.zs, ZSTD_c_compressionLevel, level))
        || ZSTD_isError(ZSTD_CCtx_setParameter(c->u.zs, ZSTD_c_windowLog, wlog))
        || ZSTD_isError(ZSTD_CCtx_setParameter(c->u.zs, ZSTD_c_hashLog, hlog))
        || ZSTD_isError(ZSTD_CCtx_setParameter(c->u.zs, ZSTD_c_chainLog, clog))
        || ZSTD_isError(ZSTD_CCtx_setParameter(c->u.zs, ZSTD_c_checksumFlag, 0))) {
        ZSTD_freeCCtx(c->u.zs);   /* not given back: its state is unknown */
        return -1;
    }
    return 0;
}

/* Give a zstd context back to its cache for the next stream, or free it. */
static void zstd_release(ms_compress_cache *cache, ZSTD_CCtx *zs)
{
    if (cache && cache->nzstd < MS_ZSTD_IDLE_MAX
        && !ZSTD_isError(ZSTD_CCtx_reset(zs, ZSTD_reset_session_and_parameters)))
        cache->zstd[cache->nzstd++] = zs;
    else
        ZSTD_freeCCtx(zs);
}

void ms_compress_cache_free(ms_compress_cache *cache)
{
    if (!cache)
        return;
    while (cache->nzstd > 0)
        ZSTD_freeCCtx(cache->zstd[--cache->nzstd]);
}

ms_compressor *ms_compressor_new(ms_encoding e, int level, uint64_t size_hint)
{
    return ms_compressor_new_in(NULL, e, level, size_hint);
}

ms_compressor *ms_compressor_new_in(ms_compress_cache *cache, ms_encoding e, int level, uint64_t size_hint)
{
    if (e != MS_ENC_GZIP && e != MS_ENC_DEFLATE && e != MS_ENC_BR && e != MS_ENC_ZSTD)
        return NULL;
    ms_compressor *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->enc = e;
    c->cache = cache;
    if (e == MS_ENC_ZSTD) {
        if (zstd_init(c, level, size_hint) < 0) {
            free(c);
            return NULL;
        }
        return c;
    }
    if (e == MS_ENC_BR) {
        if (level < 0)
            level = MS_BR_DEFAULT_LEVEL;
        if (level > BROTLI_MAX_QUALITY)
            level = BROTLI_MAX_QUALITY;
        /* The window bounds the memory and the output held back; 2^18 keeps
         * nearly all of br's gain on web-sized bodies. */
        int lgwin = size_hint ? log2_ceil(size_hint, BROTLI_MIN_WINDOW_BITS, 18) : 18;
        /* Without a hint, brotli guesses one from the first input; at quality
         * 4 a hint >= 1 MiB selects a 4 MiB hash table (H54) instead of
         * 512 KiB (H4). Cap the hint to keep the memory bounded. */
        uint32_t br_hint = size_hint && size_hint < (1u << 20) ? (uint32_t)size_hint : (1u << 20) - 1;
        c->u.br = BrotliEncoderCreateInstance(alloc_cb, free_cb, c);
        if (!c->u.br) {
            free(c);
            return NULL;
        }
        if (!BrotliEncoderSetParameter(c->u.br, BROTLI_PARAM_QUALITY, (uint32_t)level)
            || !BrotliEncoderSetParameter(c->u.br, BROTLI_PARAM_LGWIN, (uint32_t)lgwin)
            || !BrotliEncoderSetParameter(c->u.br, BROTLI_PARAM_SIZE_HINT, br_hint)) {
            ms_compressor_free(c);
            return NULL;
        }
        return c;
    }
    if (level < 0)
        level = MS_GZIP_DEFAULT_LEVEL;
    if (level < 1)
        level = 1;
    if (level > 9)
        level = 9;
    /* Small bodies get a small window and hash (zlib's minimum is 2^9). */
    int wbits = size_hint ? log2_ceil(size_hint, 9, 15) : 15;
    int memlevel = wbits - 7 < 1 ? 1 : (wbits - 7 > 8 ? 8 : wbits - 7);
    c->u.z.zalloc = z_alloc;
    c->u.z.zfree = z_free;
    c->u.z.opaque = c;
    if (deflateInit2(&c->u.z, level, Z_DEFLATED, e == MS_ENC_GZIP ? wbits + 16 : wbits, memlevel,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(c);
        return NULL;
    }
    return c;
}

/* Make room for at least want more bytes in b (less if the limit says so,
 * but at least 1). */
static int reserve(ms_cbuf *b, size_t want)
{
    size_t limit = b->limit ? b->limit : MS_CBUF_DEFAULT_LIMIT;
    if (b->cap - b->len >= want)
        return 0;
    if (b->cap >= limit && b->cap > b->len)
        return 0;   /* no growth allowed, but some room left */
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap - b->len < want && ncap < limit)
        ncap = ncap > limit / 2 ? limit : ncap * 2;
    if (ncap > limit)
        ncap = limit;
    if (ncap <= b->len)
        return -1;
    if (ncap == b->cap)
        return 0;
    uint8_t *p = realloc(b->data, ncap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = ncap;
    return 0;
}

void ms_cbuf_free(ms_cbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static size_t want_for(size_t in_left)
{
    size_t w = in_left / 2 + 1024;
    return w < 4096 ? 4096 : w;
}

static int z_run(ms_compressor *c, const uint8_t *in, size_t len, int flush, ms_cbuf *out)
{
    z_stream *z = &c->u.z;
    for (;;) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        bool last = chunk == len;
        int f = last ? flush : Z_NO_FLUSH;
        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = chunk;
        for (;;) {
            if (reserve(out, want_for(z->avail_in)) < 0)
                return -1;
            size_t room = out->cap - out->len;
            z->next_out = out->data + out->len;
            z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
            uInt before = z->avail_out;
            int r = deflate(z, f);
            out->len += before - z->avail_out;
            if (r == Z_STREAM_ERROR || (r == Z_BUF_ERROR && f == Z_FINISH && before == z->avail_out))
                return -1;
            if (f == Z_FINISH) {
                if (r == Z_STREAM_END)
                    break;
                continue;
            }
            if (z->avail_in == 0 && z->avail_out != 0)
                break;
        }
        in += chunk;
        len -= chunk;
        if (last)
            return 0;
    }
}

static int br_run(ms_compressor *c, const uint8_t *in, size_t len, BrotliEncoderOperation op, ms_cbuf *out)
{
    size_t avail_in = len;
    const uint8_t *next_in = in;
    for (;;) {
        if (reserve(out, want_for(avail_in)) < 0)
            return -1;
        size_t avail_out = out->cap - out->len;
        uint8_t *next_out = out->data + out->len;
        size_t before = avail_out;
        if (!BrotliEncoderCompressStream(c->u.br, op, &avail_in, &next_in, &avail_out, &next_out, NULL))
            return -1;
        out->len += before - avail_out;
        if (op == BROTLI_OPERATION_FINISH) {
            if (BrotliEncoderIsFinished(c->u.br))
                return 0;
        } else if (avail_in == 0 && !BrotliEncoderHasMoreOutput(c->u.br)) {
            return 0;
        }
    }
}

/* libzstd allocates through malloc (a custom allocator is experimental
 * API), so its memory is read with ZSTD_sizeof_CCtx after each call. */
static int zstd_run(ms_compressor *c, const uint8_t *in, size_t len, ZSTD_EndDirective op, ms_cbuf *out)
{
    ZSTD_inBuffer ib = { in, len, 0 };
    for (;;) {
        if (reserve(out, want_for(ib.size - ib.pos)) < 0)
            return -1;
        ZSTD_outBuffer ob = { out->data + out->len, out->cap - out->len, 0 };
        size_t left = ZSTD_compressStream2(c->u.zs, &ob, &ib, op);
        out->len += ob.pos;
        size_t mem = ZSTD_sizeof_CCtx(c->u.zs);
        if (mem > c->peak)
            c->peak = mem;
        if (ZSTD_isError(left))
            return -1;
        /* ZSTD_e_continue is done when the input is taken; flush and end
         * when nothing is left to write out */
        if (op == ZSTD_e_continue ? ib.pos == ib.size : left == 0)
            return 0;
    }
}

static int run(ms_compressor *c, const void *in, size_t len, int mode, ms_cbuf *out)
{
    /* mode: 0 process, 1 flush, 2 finish */
    if (!c || !out || c->finished || c->broken || (len && !in))
        return -1;
    static const uint8_t empty[1];
    const uint8_t *p = len ? in : empty;
    int r;
    if (c->enc == MS_ENC_ZSTD) {
        static const ZSTD_EndDirective ops[] = { ZSTD_e_continue, ZSTD_e_flush, ZSTD_e_end };
        r = zstd_run(c, p, len, ops[mode], out);
    } else if (c->enc == MS_ENC_BR) {
        static const BrotliEncoderOperation ops[] = { BROTLI_OPERATION_PROCESS, BROTLI_OPERATION_FLUSH,
                                                      BROTLI_OPERATION_FINISH };
        r = br_run(c, p, len, ops[mode], out);
    } else {
        static const int flushes[] = { Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FINISH };
        r = z_run(c, p, len, flushes[mode], out);
    }
    if (r < 0)
        c->broken = true;
    else if (mode == 2)
        c->finished = true;
    return r;
}

int ms_compressor_write(ms_compressor *c, const void *in, size_t len, bool finish, ms_cbuf *out)
{
    return run(c, in, len, finish ? 2 : 0, out);
}

int ms_compressor_flush(ms_compressor *c, ms_cbuf *out) { return run(c, NULL, 0, 1, out); }

ms_encoding ms_compressor_encoding(const ms_compressor *c) { return c->enc; }

size_t ms_compressor_memory(const ms_compressor *c) { return c->peak; }

void ms_compressor_free(ms_compressor *c)
{
    if (!c)
        return;
    if (c->enc == MS_ENC_ZSTD)
        zstd_release(c->cache, c->u.zs);
    else if (c->enc == MS_ENC_BR)
        BrotliEncoderDestroyInstance(c->u.br);
    else
        deflateEnd(&c->u.z);
    free(c);
}
