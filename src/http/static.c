/* static.c: static files: safe path mapping, MIME types, validators,
 * conditionals, single ranges, precompressed siblings. See static.h. */
#include "http/static.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define MS_HAVE_OPENAT2_H 1
#endif
#endif

#define REL_MAX PATH_MAX   /* decoded relative path, NUL included */

/* ---- MIME types ---- */

static const struct { const char *ext, *type; } mime_table[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "map", "application/json" },
    { "webmanifest", "application/manifest+json" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "webp", "image/webp" },
    { "avif", "image/avif" },
    { "ico", "image/x-icon" },
    { "bmp", "image/bmp" },
    { "txt", "text/plain; charset=utf-8" },
    { "xml", "application/xml; charset=utf-8" },
    { "csv", "text/csv; charset=utf-8" },
    { "md", "text/markdown; charset=utf-8" },
    { "pdf", "application/pdf" },
    { "wasm", "application/wasm" },
    { "woff", "font/woff" },
    { "woff2", "font/woff2" },
    { "ttf", "font/ttf" },
    { "otf", "font/otf" },
    { "mp4", "video/mp4" },
    { "webm", "video/webm" },
    { "mp3", "audio/mpeg" },
    { "ogg", "audio/ogg" },
    { "wav", "audio/wav" },
    { "zip", "application/zip" },
    { "gz", "application/gzip" },
    { "br", "application/octet-stream" },
};

const char *ms_mime_type(const char *name, size_t len)
{
    size_t dot = len;
    while (dot > 0 && name[dot - 1] != '.' && name[dot - 1] != '/')
        dot--;
    if (dot == 0 || name[dot - 1] != '.')
        return "application/octet-stream";
    const char *ext = name + dot;
    size_t elen = len - dot;
    for (size_t i = 0; i < sizeof mime_table / sizeof mime_table[0]; i++) {
        const char *e = mime_table[i].ext;
        if (strlen(e) != elen)
            continue;
        size_t k = 0;
        while (k < elen && (ext[k] | 0x20) == e[k])
            k++;
        if (k == elen)
            return mime_table[i].type;
    }
    return "application/octet-stream";
}

/* ---- HTTP dates ---- */

static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

void ms_http_date(int64_t t, char buf[30])
{
    if (t < 0)
        t = 0;
    if (t > INT64_C(253402300799))   /* 9999-12-31T23:59:59Z */
        t = INT64_C(253402300799);
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    /* "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, written by hand */
    char *p = buf;
    memcpy(p, wdays[tm.tm_wday], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months[tm.tm_mon], 3);
    p += 3;
    *p++ = ' ';
    int y = tm.tm_year + 1900;
    *p++ = (char)('0' + y / 1000 % 10);
    *p++ = (char)('0' + y / 100 % 10);
    *p++ = (char)('0' + y / 10 % 10);
    *p++ = (char)('0' + y % 10);
    *p++ = ' ';
    int f[3] = { tm.tm_hour, tm.tm_min, tm.tm_sec };
    for (int i = 0; i < 3; i++) {
        *p++ = (char)('0' + f[i] / 10);
        *p++ = (char)('0' + f[i] % 10);
        *p++ = i < 2 ? ':' : ' ';
    }
    memcpy(p, "GMT", 4);
}

static int month_index(const char *m)
{
    for (int i = 0; i < 12; i++)
        if (strcmp(m, months[i]) == 0)
            return i;
    return -1;
}

bool ms_http_date_parse(const char *s, int64_t *t)
{
    char wd[10], mon[4];
    int day, year, hh, mm, ss, n = -1;
    size_t len = strlen(s);
    if (len > 64)
        return false;
    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wd, &day, mon, &year, &hh, &mm, &ss, &n) == 7
        && n == (int)len) {
        /* IMF-fixdate */
    } else if (n = -1, sscanf(s, "%9[A-Za-z], %2d-%3[A-Za-z]-%2d %2d:%2d:%2d GMT%n", wd, &day, mon, &year, &hh,
                              &mm, &ss, &n) == 7
               && n == (int)len) {
        year += year < 70 ? 2000 : 1900;   /* RFC 850 */
    } else if (n = -1, sscanf(s, "%3[A-Za-z] %3[A-Za-z] %2d %2d:%2d:%2d %4d%n", wd, mon, &day, &hh, &mm, &ss,
                              &year, &n) == 7
               && n == (int)len) {
        /* asctime */
    } else {
        return false;
    }
    int mi = month_index(mon);
    if (mi < 0 || day < 1 || day > 31 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60
        || year < 1900 || year > 9999)
        return false;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = mi, .tm_mday = day, .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
    time_t r = timegm(&tm);
    if (r == (time_t)-1)
        return false;
    *t = (int64_t)r;
    return true;
}

/* ---- opening beneath the root ---- */

/* Not static: the test drives the fallback path with no_openat2. */
int ms_static_open_beneath(int dir_fd, const char *rel, bool no_openat2);

static bool fd_path(int fd, char *buf, size_t cap)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1)
        return false;
    buf[n] = '\0';
    return buf[0] == '/';
}

int ms_static_open_beneath(int dir_fd, const char *rel, bool no_openat2)
{
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;   /* NONBLOCK: a fifo must not hang us */
#if defined(MS_HAVE_OPENAT2_H) && defined(SYS_openat2)
    if (!no_openat2) {
        struct open_how how = { .flags = (uint64_t)flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
        long fd = syscall(SYS_openat2, dir_fd, rel, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS && errno != EPERM)
            return -1;
    }
#else
    (void)no_openat2;
#endif
    /* Fallback: open, then check where the fd really is against the root. */
    if (rel[0] == '/') {
        errno = EXDEV;
        return -1;
    }
    int fd = openat(dir_fd, rel, flags);
    if (fd < 0)
        return -1;
    char root[PATH_MAX], file[PATH_MAX];
    if (!fd_path(dir_fd, root, sizeof root) || !fd_path(fd, file, sizeof file)) {
        close(fd);
        errno = EXDEV;   /* cannot prove it is inside: refuse */
        return -1;
    }
    size_t rl = strlen(root);
    if (rl == 1)
        rl = 0;   /* root is "/" */
    if (strncmp(file, root, rl) != 0 || (file[rl] != '/' && file[rl] != '\0')) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

/* errno of a failed open -> status: 0 falls through. */
static int open_error_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 0;
    case EXDEV:
    case ELOOP:
        return 404;
    case EACCES:
    case EPERM:
        return 403;
    default:
        return 500;
    }
}

/* ---- path mapping ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The length of prefix (trailing '/' ignored) when it covers the raw path,
 * else SIZE_MAX. */
static size_t prefix_len(const char *prefix, const char *path, size_t path_len)
{
    size_t pl = strlen(prefix);
    while (pl > 0 && prefix[pl - 1] == '/')
        pl--;
    if (!path || path_len == 0 || path[0] != '/')
        return SIZE_MAX;
    if (pl > 0 && (path_len < pl || memcmp(path, prefix, pl) != 0 || (path_len > pl && path[pl] != '/')))
        return SIZE_MAX;
    return pl;
}

/* Map the raw path under prefix to a relative path in rel ("" = the root).
 * Returns -1 when mapped, else the status (0 or 404). */
static int map_path(const char *prefix, const char *path, size_t path_len, char *rel, size_t *rel_len,
                    bool *trailing)
{
    size_t pl = prefix_len(prefix, path, path_len);
    if (pl == SIZE_MAX)
        return 0;
    const char *rest = path + pl;
    size_t rlen = path_len - pl, i = 0, n = 0;
    while (i < rlen) {
        if (rest[i] == '/') {
            i++;
            continue;
        }
        size_t before = n;   /* rel length before this segment */
        if (n > 0) {
            if (n + 1 >= REL_MAX)
                return 0;
            rel[n++] = '/';
        }
        size_t seg = n;
        while (i < rlen && rest[i] != '/') {
            char c = rest[i];
            if (c == '%') {
                int h, l;
                if (i + 2 >= rlen || (h = hexval(rest[i + 1])) < 0
                    || (l = hexval(rest[i + 2])) < 0)
                    return 0;   /* malformed escape: not ours */
                c = (char)(h << 4 | l);
                i += 3;
                if (c == '/' || c == '\0')
                    return 404;
            } else {
                if (c == '\0')
                    return 404;
                i++;
            }
            if (n + 1 >= REL_MAX)
                return 0;   /* longer than PATH_MAX: not ours */
            rel[n++] = c;
        }
        size_t sl = n - seg;
        if (sl == 1 && rel[seg] == '.') {
            n = before;
        } else if (sl == 2 && rel[seg] == '.' && rel[seg + 1] == '.') {
            if (before == 0)
                return 404;   /* above the root */
            n = before;
            while (n > 0 && rel[n - 1] != '/')
                n--;
            if (n > 0)
                n--;   /* drop the separator too */
        }
    }
    rel[n] = '\0';
    *rel_len = n;
    *trailing = rlen > 0 && rest[rlen - 1] == '/';
    return -1;
}

/* ---- validators ---- */

/* Does an If-None-Match value match etag (quoted, strong) by weak comparison? */
static bool inm_match(const char *v, const char *etag)
{
    size_t el = strlen(etag);
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return false;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return false;   /* malformed: stop */
        const char *q = strchr(p + 1, '"');
        if (!q)
            return false;
        if ((size_t)(q + 1 - p) == el && memcmp(p, etag, el) == 0)
            return true;
        p = q + 1;
    }
}

/* If-Range: an entity tag compared strongly, or a date equal to Last-Modified. */
static bool if_range_ok(const char *v, const char *etag, int64_t mtime)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (v[0] == 'W' && v[1] == '/')
        return false;
    if (v[0] == '"') {
        size_t el = strlen(etag), vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        return vl == el && memcmp(v, etag, el) == 0;
    }
    int64_t t;
    return ms_http_date_parse(v, &t) && t == mtime;
}

static bool parse_u64(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        p++;
    }
    *pp = p;
    *out = v;
    return true;
}

/* Returns 0 (ignore Range), 206 (*off, *len set) or 416. */
static int parse_range(const char *v, uint64_t size, uint64_t *off, uint64_t *len)
{
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bytes", 5) != 0)
        return 0;
    p += 5;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '=')
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strchr(p, ','))
        return 0;   /* several ranges: send the whole file */
    uint64_t a = 0, b = 0;
    bool has_a = parse_u64(&p, &a);
    if (*p++ != '-')
        return 0;
    bool has_b = parse_u64(&p, &b);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p || (!has_a && !has_b) || (has_a && has_b && b < a))
        return 0;   /* malformed */
    if (size == 0)
        return 0;
    if (!has_a) {   /* suffix */
        if (b == 0)
            return 416;
        if (b > size)
            b = size;
        *off = size - b;
        *len = b;
        return 206;
    }
    if (a >= size)
        return 416;
    if (!has_b || b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 206;
}

/* ---- headers ---- */

typedef struct hbuf {
    char *p;
    size_t len, cap;
    bool overflow;
} hbuf;

__attribute__((format(printf, 2, 3))) static void hadd(hbuf *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->p + h->len, h->cap - h->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= h->cap - h->len)
        h->overflow = true;
    else
        h->len += (size_t)n;
}

size_t ms_static_encoded_headers(const ms_static_result *r, ms_encoding e, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    hbuf h = { buf, 0, cap, false };
    buf[0] = '\0';
    if (r->content_type)
        hadd(&h, "Content-Type: %s\r\n", r->content_type);
    if (r->last_modified[0])
        hadd(&h, "Last-Modified: %s\r\n", r->last_modified);
    if (r->etag[0])
        hadd(&h, "ETag: %s%s\r\n", r->etag[0] == 'W' ? "" : "W/", r->etag);
    hadd(&h, "Content-Encoding: %s\r\nVary: Accept-Encoding\r\n", ms_encoding_name(e));
    if (h.overflow) {
        buf[0] = '\0';
        return 0;
    }
    return h.len;
}

/* ---- serving ---- */

static void result_init(ms_static_result *out)
{
    out->status = 0;
    out->fd = -1;
    out->offset = out->length = 0;
    out->headers[0] = '\0';
    out->headers_len = 0;
    out->compressible = false;
    out->encoding = MS_ENC_IDENTITY;
    out->content_type = NULL;
    out->etag[0] = '\0';
    out->last_modified[0] = '\0';
    out->size = 0;
}

static bool append(char *buf, size_t *len, size_t cap, const char *s)
{
    size_t sl = strlen(s);
    if (*len + sl + 1 > cap)
        return false;
    memcpy(buf + *len, s, sl + 1);
    *len += sl;
    return true;
}

/* ---- precompressed siblings ---- */

static const char *sibling_suffix(ms_encoding e)
{
    return e == MS_ENC_BR ? ".br" : e == MS_ENC_ZSTD ? ".zst" : ".gz";
}

/* each representation has its own entity tag */
static const char *etag_suffix(ms_encoding e)
{
    return e == MS_ENC_BR ? "-br" : e == MS_ENC_ZSTD ? "-zst" : e == MS_ENC_GZIP ? "-gz" : "";
}

/* The sibling codings by the client's q, highest first; equal q: br, zstd,
 * gzip (precompressed at build time, br is usually the smallest of the
 * three; the first of them that exists is served). */
static void sibling_order(const int q[MS_ENC_COUNT], ms_encoding order[3])
{
    order[0] = MS_ENC_BR;
    order[1] = MS_ENC_ZSTD;
    order[2] = MS_ENC_GZIP;
    for (int i = 1; i < 3; i++) /* a stable insertion sort: equal q keeps the order above */
        for (int j = i; j > 0 && q[order[j - 1]] < q[order[j]]; j--) {
            ms_encoding t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

static void fail(ms_static_result *out, int fd, int status)
{
    if (fd >= 0)
        close(fd);
    result_init(out);
    out->status = status;
}

void ms_static_serve_at(int root_fd, const char *prefix, const ms_static_req *req, ms_static_result *out)
{
    result_init(out);
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (!head && !(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0))
        return;
    if (!req->path)
        return;

    char rel[REL_MAX + 32];   /* room for "/index.html" and ".zst" */
    size_t rel_len = 0;
    bool trailing = false;
    int st = map_path(prefix ? prefix : "/", req->path, req->path_len, rel, &rel_len, &trailing);
    if (st >= 0) {
        out->status = st;
        return;
    }
    if (rel_len == 0)
        strcpy(rel, ".");
    else if (trailing)
        strcat(rel, "/");   /* a file named with a trailing '/' is ENOTDIR */
    size_t len = strlen(rel);

    int fd = ms_static_open_beneath(root_fd, rel, false);
    if (fd < 0) {
        out->status = open_error_status(errno);
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        fail(out, fd, 500);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        if (strcmp(rel, ".") == 0)
            len = 0;
        else if (rel[len - 1] != '/')
            rel[len++] = '/';
        rel[len] = '\0';
        if (!append(rel, &len, sizeof rel, "index.html"))
            return;
        fd = ms_static_open_beneath(root_fd, rel, false);
        if (fd < 0) {
            out->status = open_error_status(errno);
            return;
        }
        if (fstat(fd, &sb) != 0) {
            fail(out, fd, 500);
            return;
        }
        if (S_ISDIR(sb.st_mode)) {
            fail(out, fd, 0);
            return;
        }
    }
    if (!S_ISREG(sb.st_mode)) {
        fail(out, fd, 404);
        return;
    }

    const char *ctype = ms_mime_type(rel, len);
    ms_encoding enc = MS_ENC_IDENTITY;
    bool type_ok = ms_compress_type_ok(ctype, strlen(ctype));

    /* precompressed sibling: the accepted ones by q, ties br > zstd > gzip */
    if (type_ok && req->accept_encoding) {
        int q[MS_ENC_COUNT];
        ms_compress_qvalues(req->accept_encoding, strlen(req->accept_encoding), q);
        ms_encoding order[3];
        sibling_order(q, order);
        for (int k = 0; k < 3 && enc == MS_ENC_IDENTITY; k++) {
            if (q[order[k]] <= 0)
                continue;
            size_t sl = len;
            if (!append(rel, &sl, sizeof rel, sibling_suffix(order[k])))
                continue;
            int sfd = ms_static_open_beneath(root_fd, rel, false);
            rel[len] = '\0';
            if (sfd < 0)
                continue;
            struct stat ssb;
            if (fstat(sfd, &ssb) != 0 || !S_ISREG(ssb.st_mode)) {
                close(sfd);
                continue;
            }
            close(fd);
            fd = sfd;
            sb = ssb;
            enc = order[k];
        }
    }

    uint64_t size = (uint64_t)sb.st_size;
    uint64_t mtime_ns = (uint64_t)sb.st_mtim.tv_sec * UINT64_C(1000000000) + (uint64_t)sb.st_mtim.tv_nsec;
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec;
    snprintf(out->etag, sizeof out->etag, "\"%" PRIx64 "-%" PRIx64 "%s\"", mtime_ns, size, etag_suffix(enc));
    ms_http_date(mtime, out->last_modified);
    out->content_type = ctype;
    out->encoding = enc;
    out->size = size;

    hbuf h = { out->headers, 0, sizeof out->headers, false };
    const char *vary = enc != MS_ENC_IDENTITY ? "Vary: Accept-Encoding\r\n" : "";

    /* conditionals: If-None-Match decides alone when present */
    bool not_modified = false;
    if (req->if_none_match) {
        not_modified = inm_match(req->if_none_match, out->etag);
    } else if (req->if_modified_since) {
        int64_t ims;
        not_modified = ms_http_date_parse(req->if_modified_since, &ims) && mtime <= ims;
    }
    if (not_modified) {
        close(fd);
        out->status = 304;
        hadd(&h, "Last-Modified: %s\r\nETag: %s\r\n%s", out->last_modified, out->etag, vary);
        out->headers_len = h.len;
        return;
    }

    int status = 200;
    uint64_t off = 0, blen = size;
    if (req->range && (!req->if_range || if_range_ok(req->if_range, out->etag, mtime))) {
        int r = parse_range(req->range, size, &off, &blen);
        if (r == 416) {
            close(fd);
            out->status = 416;
            hadd(&h, "Content-Range: bytes */%" PRIu64 "\r\n", size);
            out->headers_len = h.len;
            return;
        }
        if (r == 206)
            status = 206;
        else
            off = 0, blen = size;
    }

    hadd(&h, "Content-Type: %s\r\nContent-Length: %" PRIu64 "\r\nLast-Modified: %s\r\nETag: %s\r\n"
             "Accept-Ranges: bytes\r\n",
         ctype, blen, out->last_modified, out->etag);
    if (status == 206)
        hadd(&h, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", off, off + blen - 1, size);
    if (enc != MS_ENC_IDENTITY)
        hadd(&h, "Content-Encoding: %s\r\n%s", ms_encoding_name(enc), vary);
    if (h.overflow) {
        fail(out, fd, 500);   /* cannot happen: every field is bounded */
        return;
    }
    out->headers_len = h.len;
    out->status = status;
    out->offset = off;
    out->length = blen;
    out->compressible = status == 200 && enc == MS_ENC_IDENTITY && type_ok && size >= MS_COMPRESS_MIN_SIZE;
    if (head)
        close(fd);
    else
        out->fd = fd;
}

void ms_static_serve(const char *root, const char *prefix, const ms_static_req *req, ms_static_result *out)
{
    result_init(out);
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (!head && !(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0))
        return;
    if (prefix_len(prefix ? prefix : "/", req->path, req->path_len) == SIZE_MAX)
        return;   /* not ours: no syscall */
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return;   /* no root: nothing to serve */
    ms_static_serve_at(rfd, prefix, req, out);
    close(rfd);
}
