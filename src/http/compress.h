/* compress.h: content-coding negotiation and streaming compressors for the
 * HTTP data plane (issue 4, "Compression"). No socket code: the connection
 * feeds response bytes in and writes out what comes back.
 *
 * Encodings: gzip (RFC 1952), deflate (the zlib format of RFC 1950, which is
 * what browsers expect for "Content-Encoding: deflate", not raw RFC 1951),
 * br (RFC 7932) and zstd (RFC 8878, windows per RFC 9659), through zlib,
 * libbrotlienc and libzstd.
 *
 * Output: every call appends the bytes it produces to a caller-owned
 * ms_cbuf, growing it with realloc up to its limit. The caller may take the
 * buffer (steal data, then zero the struct) and hand it to uv_write as is,
 * so no byte is copied between the compressor and the socket. */
#ifndef MS_HTTP_COMPRESS_H
#define MS_HTTP_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ms_encoding { MS_ENC_IDENTITY, MS_ENC_GZIP, MS_ENC_DEFLATE, MS_ENC_BR, MS_ENC_ZSTD } ms_encoding;
#define MS_ENC_COUNT 5

/* Negotiate from an Accept-Encoding value (NULL = header absent; len is the
 * value's length, the value need not be NUL-terminated).
 * - Codings are case-insensitive; "x-gzip" counts as gzip; q-values are
 *   "0".."1" with at most 3 decimals; an entry with a malformed q-value is
 *   ignored; other parameters are ignored; the first entry for a coding wins.
 * - "*" gives its q to every coding not listed (identity included).
 * - identity is acceptable (q=1) unless listed or covered by "*".
 * - The best of zstd/br/gzip/deflate with q > 0 is chosen (ties: zstd > br
 *   > gzip > deflate: for bodies compressed on the fly zstd at its default
 *   level gives br's ratio at ~1.6x its speed and gzip's at ~3x, see the
 *   levels below; Caddy prefers zstd too); when identity has an explicit q
 *   (listed, or via "*") that is higher than the best coding's,
 *   MS_ENC_IDENTITY instead ("gzip;q=0.5, identity" -> identity,
 *   "gzip;q=0.5" -> gzip).
 * - An absent or empty header means identity only.
 * *identity_forbidden (may be NULL) is set when identity's effective q is 0
 * ("identity;q=0", or "*;q=0" without an identity entry), so a caller that
 * cannot encode may answer 406. */
ms_encoding ms_compress_negotiate(const char *accept_encoding, size_t len, bool *identity_forbidden);

/* The effective q-value (0..1000, thousandths) of every coding under the
 * rules above, indexed by ms_encoding. */
void ms_compress_qvalues(const char *accept_encoding, size_t len, int q[MS_ENC_COUNT]);

/* "identity", "gzip", "deflate", "br", "zstd". */
const char *ms_encoding_name(ms_encoding e);

/* Whether a body of this Content-Type is worth compressing: every text/ type (except
 * text/event-stream, which must not be held back), JSON and XML (incl. the
 * +json / +xml suffixes, so image/svg+xml), JavaScript, application/wasm,
 * uncompressed fonts (ttf/otf/eot), icons and bmp. Not images, audio, video,
 * archives, woff/woff2 or octet-stream. Parameters (";charset=...") and case
 * are ignored. len is the value's length. */
bool ms_compress_type_ok(const char *content_type, size_t len);

/* Don't compress bodies known to be smaller than this: the framing and the
 * encoder's headers eat the gain. */
#define MS_COMPRESS_MIN_SIZE 256

/* Default levels, chosen for a proxy that compresses on the fly (use -1).
 * Measured here on 7 MB of HTML and C headers, 16 KiB writes (ratio =
 * out/in, single core):
 *   gzip 1: 0.213 ~120 MB/s   gzip 4: 0.177 ~75 MB/s   gzip 5: 0.168 ~56 MB/s
 *   gzip 6: 0.163 ~30-38 MB/s
 *   br 3 (window 2^18): 0.158 ~100-140 MB/s, 1.7 MiB
 *   br 4 (window 2^18): 0.151 ~60-90 MB/s, 3.4 MiB (twice the memory)
 *   br 4 (window 2^16): 0.163 ~75 MB/s, 1.9 MiB
 * gzip 5: within 3% of level 6's size at ~1.6x its speed (the knee).
 * br 3: smaller than gzip 6 and faster than gzip 4; br 4 gains 4% in size
 *   for twice the memory per stream, which a proxy with many concurrent
 *   compressed responses cannot afford.
 * zstd, measured on 0.9 MB of this tree's docs and C (16 KiB writes, CPU
 * time; same corpus: br 3 0.295 ~97 MB/s, gzip 5 0.292 ~47 MB/s; the
 * first three rows with our hash 2^16 / chain 2^15 caps, see compress.c):
 *   zstd 1 (window 2^18): 0.314 ~260 MB/s   zstd 3 (2^18): 0.297 ~210 MB/s
 *   zstd 3 (2^17): 0.313 ~210 MB/s          zstd 3 (2^19): 0.290 ~170 MB/s
 *   zstd 5 (2^18): 0.277 ~100 MB/s          zstd 6 (2^18): 0.269 ~78 MB/s
 * zstd 3 with a 2^18 window: br 3's ratio at ~2x its speed (4x gzip 5's)
 *   for ~1.4 MiB per stream. */
#define MS_GZIP_DEFAULT_LEVEL 5
#define MS_BR_DEFAULT_LEVEL 3
#define MS_ZSTD_DEFAULT_LEVEL 3
/* The zstd window (and so the back-reference distance a client must keep):
 * 2^18 = 256 KiB, far under the 8 MiB RFC 9659 lets an HTTP encoder use. */
#define MS_ZSTD_WINDOW_LOG 18

/* A growable output buffer owned by the caller. Start it zeroed (limit 0 =
 * MS_CBUF_DEFAULT_LIMIT). The compressor appends at data+len. The caller
 * may consume it by resetting len to 0, or take data (it is malloc'd) and
 * zero data/len/cap. */
typedef struct ms_cbuf {
    uint8_t *data;
    size_t len, cap;
    size_t limit;   /* the most cap may grow to; 0 = MS_CBUF_DEFAULT_LIMIT */
} ms_cbuf;
#define MS_CBUF_DEFAULT_LIMIT ((size_t)4 << 20)
void ms_cbuf_free(ms_cbuf *b);

typedef struct ms_compressor ms_compressor;

/* Idle zstd contexts kept for reuse by one thread (a worker owns one; not
 * thread-safe). Creating a context costs two cpuid instructions (libzstd
 * probes for BMI2 every time: in a virtual machine each one traps to the
 * hypervisor, a quarter of the CPU of a small zstd response here) and the
 * allocation and clearing of its ~1.4 MiB; a reused one is reset instead.
 * At most MS_ZSTD_IDLE_MAX are kept, so a worker's idle memory for them is
 * bounded (2 x ~1.4 MiB). Start it zeroed; every compressor made from it
 * must be freed before ms_compress_cache_free. */
#define MS_ZSTD_IDLE_MAX 2
typedef struct ms_compress_cache {
    void *zstd[MS_ZSTD_IDLE_MAX];   /* ZSTD_CCtx *, reset, ready for a new stream */
    unsigned nzstd;
} ms_compress_cache;
void ms_compress_cache_free(ms_compress_cache *cache);

/* A compressor for e (gzip, deflate, br or zstd; identity gives NULL).
 * level -1 = the default above; gzip/deflate 1..9, br 0..11, zstd 1..19.
 * size_hint: the body's length if known (Content-Length), else 0; a small
 * hint shrinks the window and so the memory. NULL on OOM or a bad argument.
 * Memory per compressor (counted by its allocator, see
 * ms_compressor_memory; the out buffers are the caller's):
 * gzip/deflate: at most 262 KiB (window 2x32 KiB, prev 64 KiB, hash 64 KiB,
 *   pending 64 KiB), ~14 KiB for a 1000-byte hint;
 * br at the default level 3: at most ~2 MiB (window capped at 2^18; the
 *   size hint is capped below 1 MiB so brotli never picks its 4 MiB hash
 *   table); higher levels take more (br 4: ~3.4 MiB, br 11: ~21 MiB);
 * zstd at the default level 3: at most ~1.4 MiB (window 2^18 with its
 *   staging buffers, hash 2^16 and chain 2^15 tables; read with
 *   ZSTD_sizeof_CCtx), ~45 KiB for a 1000-byte hint; zstd 19: ~2.2 MiB. */
ms_compressor *ms_compressor_new(ms_encoding e, int level, uint64_t size_hint);
/* The same, taking a zstd context from cache (may be NULL) and giving it
 * back there when freed. */
ms_compressor *ms_compressor_new_in(ms_compress_cache *cache, ms_encoding e, int level, uint64_t size_hint);

/* Feed len bytes (in may be NULL when len is 0); append the output to out.
 * All input is always consumed. finish = true ends the stream (trailer
 * written); later calls fail. Returns 0, or -1 on an encoder error, OOM or
 * when out would grow past its limit: the stream is then broken (abort the
 * response). Output held back by the encoder is bounded by its window, so
 * one call appends at most about len + window + 1 KiB. */
int ms_compressor_write(ms_compressor *c, const void *in, size_t len, bool finish, ms_cbuf *out);

/* Push out everything fed so far (Z_SYNC_FLUSH / BROTLI_OPERATION_FLUSH /
 * ZSTD_e_flush: the block is closed, the frame stays open),
 * for streamed responses whose pieces must reach the client promptly. Costs
 * a few bytes of ratio each time. Returns 0 or -1 as above. */
int ms_compressor_flush(ms_compressor *c, ms_cbuf *out);

ms_encoding ms_compressor_encoding(const ms_compressor *c);
/* The most bytes the encoder has held at once so far (out buffers excluded). */
size_t ms_compressor_memory(const ms_compressor *c);
void ms_compressor_free(ms_compressor *c);

#endif
