/* static.h: serving files from a static dir (issue 4, "Static files"),
 * without socket code: ms_static_serve maps a request to an open file, a
 * status and the header lines; the connection writes them and sends the
 * byte range from the fd (sendfile), then closes the fd.
 *
 * Path mapping (a raw, percent-encoded path without the query):
 * - The prefix is matched on the raw path: "/" covers every path,
 *   "/assets" (a trailing '/' is ignored) covers "/assets" and "/assets/..."
 *   but not "/assetsx". No match: status 0.
 * - The rest is split at '/' and each segment percent-decoded. A malformed
 *   escape ("%zz", "%4"): status 0 (the request is not ours; routes decide).
 *   A segment that decodes to contain '/' (%2F) or NUL (%00): 404.
 * - Empty and "." segments are dropped, ".." removes the previous segment
 *   (lexically, before the file system is asked); a ".." above the root: 404.
 * - The file is opened relative to the root with openat2(RESOLVE_BENEATH |
 *   RESOLVE_NO_MAGICLINKS), so a symlink inside the root to a file inside the
 *   root is served, and one that leads outside gives 404. Without openat2
 *   (ENOSYS, seccomp), openat and a check of /proc/self/fd/N against the
 *   root's real path do the same.
 * - A missing file (ENOENT/ENOTDIR), a decoded path longer than PATH_MAX, a
 *   directory without index.html: status 0. A directory serves its
 *   index.html (no redirect to add the '/'). EACCES: 403. Not a regular file
 *   (fifo, device, socket): 404. Other errors (EMFILE...): 500.
 * - Methods other than GET and HEAD: status 0 before anything is opened, so
 *   a route behind the static dir can take POST etc. (no 405 from here).
 *
 * Validators and conditionals:
 * - ETag "\"<hex mtime ns>-<hex size>\"" (strong); a precompressed sibling
 *   gets its own "\"<hex mtime ns>-<hex size>-br\"" / "-gz".
 *   Last-Modified in IMF-fixdate.
 * - If-None-Match ("*", lists, weak comparison) decides alone when present;
 *   else If-Modified-Since (IMF-fixdate, RFC 850 or asctime; invalid dates
 *   ignored) gives 304 when mtime <= the date.
 * - Range: one "bytes=a-b", "a-" or "-n" (whitespace allowed around '=');
 *   206 with Content-Range. Unsatisfiable (a >= size, "-0"): 416 with
 *   "Content-Range: bytes <asterisk>/<size>". Several ranges, a malformed
 *   header, another unit, or an empty file: Range ignored, 200.
 *   If-Range (entity tag, strong comparison; or a date equal to
 *   Last-Modified) must match, else Range is ignored.
 *   Ranges apply to the precompressed bytes when a sibling is served (it is
 *   a representation of its own, with its own ETag).
 *
 * Precompressed siblings: only for compressible types (ms_compress_type_ok),
 * when the client accepts br / zstd / gzip (q > 0 per ms_compress_qvalues),
 * tried by q, highest first (ties: br, then zstd, then gzip): "<file>.br",
 * "<file>.zst", "<file>.gz", each opened the same safe way, the first that
 * is a regular file served. Its ETag ends in -br, -zst or -gz.
 * It is sent with the original's Content-Type, Content-Encoding and Vary:
 * Accept-Encoding.
 *
 * Bounded work: no allocation at all; a few syscalls (openat2, fstat, and at
 * most 3 more openat2+fstat for siblings; +1 open for the root in
 * ms_static_serve, none in ms_static_serve_at). */
#ifndef MS_HTTP_STATIC_H
#define MS_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/compress.h"

typedef struct ms_static_result {
    /* 0: not handled here (fall through to the routes); 200, 206, 304, 403,
     * 404 (traversal, symlink out of the root, not a regular file), 416,
     * 500 (unexpected open error). */
    int status;
    /* 200/206 GET: the open file (O_RDONLY|O_CLOEXEC) to send; the caller
     * closes it. -1 otherwise (HEAD, 304, errors). */
    int fd;
    /* 200/206 (GET and HEAD): the byte range of the file the body is. */
    uint64_t offset, length;
    /* Header lines after the status line, each ending "\r\n"; not Date,
     * Server or Connection.
     * 200/206: Content-Type, Content-Length, Last-Modified, ETag,
     *   Accept-Ranges: bytes, [Content-Range], [Content-Encoding, Vary].
     *   HEAD: the same as GET.
     * 304: Last-Modified, ETag, [Vary]; no body, no Content-Length.
     * 416: Content-Range only: the caller writes its own (error) body.
     * 403/404/500: empty: the caller writes its own error response. */
    char headers[1024];
    size_t headers_len;
    /* 200 without a Content-Encoding, for a compressible type
     * (ms_compress_type_ok) of at least MS_COMPRESS_MIN_SIZE bytes: the caller
     * may compress on the fly (then use ms_static_encoded_headers). */
    bool compressible;
    ms_encoding encoding;      /* of the file sent: identity or a sibling's br/gzip */
    const char *content_type;  /* static string, NULL when status is not 200/206/304 */
    char etag[64];             /* the ETag sent (quoted), "" if none */
    char last_modified[32];    /* IMF-fixdate, "" if none */
    uint64_t size;             /* size of the file sent (all of it) */
} ms_static_result;

typedef struct ms_static_req {
    const char *method; size_t method_len;  /* GET and HEAD served; others: status 0 */
    const char *path; size_t path_len;      /* raw request path, percent-encoded, without query */
    /* header values, NUL-terminated, or NULL when absent */
    const char *if_none_match, *if_modified_since, *range, *if_range, *accept_encoding;
} ms_static_req;

/* Try to serve req from the static dir (root path, URL prefix). Opens the
 * root each time; a worker that keeps the root open should use
 * ms_static_serve_at. out->status == 0: fall through. */
void ms_static_serve(const char *root, const char *prefix, const ms_static_req *req, ms_static_result *out);

/* The same with the root already open (O_PATH|O_DIRECTORY is enough). */
void ms_static_serve_at(int root_fd, const char *prefix, const ms_static_req *req, ms_static_result *out);

/* Header lines for a 200 the caller compresses on the fly with e: Content-Type,
 * Last-Modified, a weak ETag (W/ + the identity ETag: it still matches an
 * If-None-Match by weak comparison), Content-Encoding and Vary:
 * Accept-Encoding; no Content-Length (the length is not known: chunked or
 * close) and no Accept-Ranges. Returns the length written (NUL-terminated),
 * 0 if cap is too small. */
size_t ms_static_encoded_headers(const ms_static_result *r, ms_encoding e, char *buf, size_t cap);

/* The Content-Type for a file name by its extension (case-insensitive);
 * "application/octet-stream" when unknown. Text types carry
 * "; charset=utf-8". */
const char *ms_mime_type(const char *name, size_t len);

/* Format t (seconds since the epoch) as an IMF-fixdate into buf (>= 30 bytes). */
void ms_http_date(int64_t t, char buf[30]);
/* Parse an HTTP-date (IMF-fixdate, RFC 850, asctime); false if invalid. */
bool ms_http_date_parse(const char *s, int64_t *t);

#endif
