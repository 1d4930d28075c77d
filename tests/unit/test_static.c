/* test_static.c: static files against a real temporary directory: safe
 * path mapping (traversal, encodings, symlinks), index.html, fall through,
 * MIME types, validators and conditionals, ranges, precompressed siblings,
 * HEAD. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/static.h"

int ms_static_open_beneath(int dir_fd, const char *rel, bool no_openat2);

static char root[PATH_MAX], outside[PATH_MAX];
static const struct timespec mtime_ts = { 1700000000, 123 };   /* Tue, 14 Nov 2023 22:13:20 GMT */

static void put(const char *dir, const char *name, const char *data, size_t len)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    struct timespec ts[2] = { mtime_ts, mtime_ts };
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static void puts_(const char *name, const char *s) { put(root, name, s, strlen(s)); }

static void sub(const char *name)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, name);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void link_(const char *target, const char *name)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", root, name);
    assert_int_equal(symlink(target, p), 0);
}

static char a_txt[1200];

static int setup(void **state)
{
    (void)state;
    strcpy(root, "/tmp/ms-static-XXXXXX");
    strcpy(outside, "/tmp/ms-static-out-XXXXXX");
    assert_non_null(mkdtemp(root));
    assert_non_null(mkdtemp(outside));
    put(outside, "secret.txt", "secret", 6);
    for (size_t i = 0; i < sizeof a_txt; i++)
        a_txt[i] = (char)('a' + i % 26);
    put(root, "a.txt", a_txt, sizeof a_txt);
    puts_("index.html", "<h1>home</h1>");
    puts_("style.css", "body{}");
    puts_("style.css.gz", "GZ-CSS");
    puts_("app.js", "console.log('app');");
    puts_("app.js.br", "BR-JS!");
    puts_("app.js.gz", "GZ-JS!!");
    puts_("app.js.zst", "ZST-JS!!!");
    puts_("zonly.css", "body{color:red}");
    puts_("zonly.css.zst", "ZST-CSS");
    puts_("img.png.zst", "ZST-PNG");
    puts_("data.json", "{}");
    puts_("img.png", "PNG");
    puts_("img.png.gz", "GZ-PNG");
    puts_("Font.WOFF2", "w2");
    puts_("noext", "x");
    puts_("x.unknown", "x");
    puts_("empty.txt", "");
    puts_("with space.txt", "space");
    sub("sub");
    put(root, "sub/index.html", "<h1>sub</h1>", 12);
    put(root, "sub/page.html", "<p>page</p>", 11);
    sub("emptydir");
    sub("dir.gz");   /* a directory where a sibling would be */
    puts_("dirsib.js", "dirsib");
    sub("dirsib.js.br");
    link_("/etc/passwd", "link_out");
    link_("a.txt", "link_in");
    link_("sub/page.html", "link_in2");
    link_("/etc", "linkdir_out");
    link_("sub", "linkdir_in");
    char rel_out[PATH_MAX * 2];
    snprintf(rel_out, sizeof rel_out, "../%s/secret.txt", outside + 5);
    link_(rel_out, "link_rel_out");
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/pipe", root);
    assert_int_equal(mkfifo(p, 0644), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, outside);
    assert_int_equal(system(cmd), 0);
    return 0;
}

typedef struct rq {
    const char *method, *inm, *ims, *range, *if_range, *ae, *prefix;
} rq;

static ms_static_result res;

static int serve_x(const char *path, rq r)
{
    if (res.fd >= 0)
        close(res.fd);
    ms_static_req req = {
        .method = r.method ? r.method : "GET",
        .method_len = strlen(r.method ? r.method : "GET"),
        .path = path,
        .path_len = strlen(path),
        .if_none_match = r.inm,
        .if_modified_since = r.ims,
        .range = r.range,
        .if_range = r.if_range,
        .accept_encoding = r.ae,
    };
    ms_static_serve(root, r.prefix ? r.prefix : "/", &req, &res);
    assert_true(res.headers_len == strlen(res.headers));
    if (res.status != 200 && res.status != 206)
        assert_int_equal(res.fd, -1);
    return res.status;
}
#define serve(path, ...) serve_x(path, (rq){ __VA_ARGS__ })

/* The value of header name in res.headers, or NULL. */
static const char *hdr(const char *name)
{
    static char val[256];
    size_t nl = strlen(name);
    const char *p = res.headers;
    while (*p) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        if ((size_t)(e - p) > nl + 2 && strncasecmp(p, name, nl) == 0 && p[nl] == ':' && p[nl + 1] == ' ') {
            size_t vl = (size_t)(e - p) - nl - 2;
            assert_true(vl < sizeof val);
            memcpy(val, p + nl + 2, vl);
            val[vl] = '\0';
            return val;
        }
        p = e + 2;
    }
    return NULL;
}

/* The body res describes, read from its fd. */
static const char *body(void)
{
    static char buf[4096];
    assert_true(res.fd >= 0);
    assert_true(res.length < sizeof buf);
    ssize_t n = pread(res.fd, buf, res.length, (off_t)res.offset);
    assert_int_equal(n, (ssize_t)res.length);
    buf[n] = '\0';
    return buf;
}

static void test_traversal(void **state)
{
    (void)state;
    res.fd = -1;
    static const char *const n404[] = {
        "/../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E/%2e%2e/etc/passwd", "/sub/../../a.txt",
        "/sub/%2e%2e/%2e%2e/etc/passwd", "/.%2e/x", "/%2e./x", "/sub%2fpage.html", "/sub%2Fpage.html",
        "/a.txt%00.html", "/a.txt%00", "/link_out", "/linkdir_out/passwd", "/link_rel_out", "/pipe",
        "/..", "/sub/./../..", "/%2e%2e", "/%2e%2e%2fetc%2fpasswd", "/..%2f..%2fetc/passwd",
    };
    for (size_t i = 0; i < sizeof n404 / sizeof n404[0]; i++)
        if (serve(n404[i]) != 404)
            fail_msg("%s: status %d, want 404", n404[i], res.status);
    assert_int_equal(res.headers_len, 0);
    /* raw NUL in the path */
    ms_static_req req = { .method = "GET", .method_len = 3, .path = "/a.txt\0x", .path_len = 8 };
    ms_static_serve(root, "/", &req, &res);
    assert_int_equal(res.status, 404);

    /* inside the root, however spelled */
    assert_int_equal(serve("/sub/../a.txt"), 200);
    assert_int_equal(res.length, sizeof a_txt);
    assert_int_equal(serve("//a.txt"), 200);
    assert_int_equal(serve("/./a.txt"), 200);
    assert_int_equal(serve("/%61.txt"), 200);
    assert_int_equal(serve("/with%20space.txt"), 200);
    assert_string_equal(body(), "space");
    assert_int_equal(serve("/sub/page.html/../index.html"), 200);
    assert_string_equal(body(), "<h1>sub</h1>");
    /* "//etc/passwd" is root/etc/passwd: missing, falls through */
    assert_int_equal(serve("//etc/passwd"), 0);
    assert_int_equal(serve("/..\\etc\\passwd"), 0);   /* a backslash is a name character */

    /* symlinks inside the root */
    assert_int_equal(serve("/link_in"), 200);
    assert_int_equal(res.length, sizeof a_txt);
    assert_string_equal(hdr("Content-Type"), "application/octet-stream");   /* by the link's name */
    assert_int_equal(serve("/link_in2"), 200);
    assert_string_equal(body(), "<p>page</p>");
    assert_int_equal(serve("/linkdir_in/page.html"), 200);
    assert_int_equal(serve("/linkdir_in/"), 200);
    assert_string_equal(body(), "<h1>sub</h1>");

    /* malformed escapes: not ours */
    assert_int_equal(serve("/%zz"), 0);
    assert_int_equal(serve("/a.txt%4"), 0);
    assert_int_equal(serve("/a.txt%"), 0);
    assert_int_equal(serve("/%g1.txt"), 0);

    /* too long */
    static char longp[PATH_MAX + 100];
    longp[0] = '/';
    memset(longp + 1, 'a', sizeof longp - 2);
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(serve(longp), 0);
    for (size_t i = 1; i + 2 < sizeof longp - 1; i += 2) {
        longp[i] = 'a';
        longp[i + 1] = '/';
    }
    assert_int_equal(serve(longp), 0);
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;
}

static void test_open_fallback(void **state)
{
    (void)state;
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(rfd >= 0);
    for (int fb = 0; fb < 2; fb++) {
        errno = 0;
        assert_int_equal(ms_static_open_beneath(rfd, "link_out", fb), -1);
        assert_int_equal(errno, EXDEV);
        assert_int_equal(ms_static_open_beneath(rfd, "link_rel_out", fb), -1);
        assert_int_equal(errno, EXDEV);
        assert_int_equal(ms_static_open_beneath(rfd, "linkdir_out/passwd", fb), -1);
        assert_int_equal(errno, EXDEV);
        assert_int_equal(ms_static_open_beneath(rfd, "/etc/passwd", fb), -1);
        int fd = ms_static_open_beneath(rfd, "link_in", fb);
        assert_true(fd >= 0);
        close(fd);
        fd = ms_static_open_beneath(rfd, "linkdir_in/page.html", fb);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(ms_static_open_beneath(rfd, "missing", fb), -1);
        assert_int_equal(errno, ENOENT);
    }
    close(rfd);
}

static void test_index_fallthrough_prefix(void **state)
{
    (void)state;
    res.fd = -1;
    assert_int_equal(serve("/"), 200);
    assert_string_equal(body(), "<h1>home</h1>");
    assert_string_equal(hdr("Content-Type"), "text/html; charset=utf-8");
    assert_int_equal(serve("/sub/"), 200);
    assert_string_equal(body(), "<h1>sub</h1>");
    assert_int_equal(serve("/sub"), 200);   /* no redirect: index served */
    assert_string_equal(body(), "<h1>sub</h1>");
    assert_int_equal(serve("/emptydir/"), 0);
    assert_int_equal(serve("/emptydir"), 0);
    assert_int_equal(serve("/missing.txt"), 0);
    assert_int_equal(serve("/sub/missing/deeper"), 0);
    assert_int_equal(serve("/a.txt/"), 0);   /* ENOTDIR */
    assert_int_equal(serve("/a.txt/x"), 0);
    assert_int_equal(serve(""), 0);
    assert_int_equal(serve("a.txt"), 0);

    /* methods */
    assert_int_equal(serve("/a.txt", .method = "POST"), 0);
    assert_int_equal(serve("/a.txt", .method = "get"), 0);
    assert_int_equal(serve("/a.txt", .method = "OPTIONS"), 0);

    /* prefixes */
    assert_int_equal(serve("/assets/a.txt", .prefix = "/assets"), 200);
    assert_int_equal(res.length, sizeof a_txt);
    assert_int_equal(serve("/assets/a.txt", .prefix = "/assets/"), 200);
    assert_int_equal(serve("/assets", .prefix = "/assets"), 200);
    assert_string_equal(body(), "<h1>home</h1>");
    assert_int_equal(serve("/assets/", .prefix = "/assets"), 200);
    assert_int_equal(serve("/assetsx/a.txt", .prefix = "/assets"), 0);
    assert_int_equal(serve("/a.txt", .prefix = "/assets"), 0);
    assert_int_equal(serve("/assets/../a.txt", .prefix = "/assets"), 404);   /* above the dir's root */
    assert_int_equal(serve("/assets/sub/../a.txt", .prefix = "/assets"), 200);
    assert_int_equal(serve("/x/a.txt", .prefix = "/x/y"), 0);
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;

    /* a missing root falls through */
    ms_static_req req = { .method = "GET", .method_len = 3, .path = "/a.txt", .path_len = 6 };
    ms_static_serve("/nonexistent-ms-root", "/", &req, &res);
    assert_int_equal(res.status, 0);
}

static void test_mime(void **state)
{
    (void)state;
    static const char *const table[][2] = {
        { "a.html", "text/html; charset=utf-8" }, { "a.htm", "text/html; charset=utf-8" },
        { "a.css", "text/css; charset=utf-8" },   { "a.js", "text/javascript; charset=utf-8" },
        { "a.mjs", "text/javascript; charset=utf-8" }, { "a.json", "application/json" },
        { "a.svg", "image/svg+xml" },             { "a.png", "image/png" },
        { "a.jpg", "image/jpeg" },                { "a.JPEG", "image/jpeg" },
        { "a.gif", "image/gif" },                 { "a.webp", "image/webp" },
        { "a.avif", "image/avif" },               { "a.ico", "image/x-icon" },
        { "a.txt", "text/plain; charset=utf-8" }, { "a.xml", "application/xml; charset=utf-8" },
        { "a.pdf", "application/pdf" },           { "a.wasm", "application/wasm" },
        { "a.woff", "font/woff" },                { "a.woff2", "font/woff2" },
        { "a.ttf", "font/ttf" },                  { "a.otf", "font/otf" },
        { "a.mp4", "video/mp4" },                 { "a.webm", "video/webm" },
        { "a.mp3", "audio/mpeg" },                { "a.ogg", "audio/ogg" },
        { "a.map", "application/json" },         { "a.csv", "text/csv; charset=utf-8" },
        { "a.md", "text/markdown; charset=utf-8" }, { "noext", "application/octet-stream" },
        { "a.unknown", "application/octet-stream" }, { "dir.d/noext", "application/octet-stream" },
        { ".html", "text/html; charset=utf-8" },  { "a.", "application/octet-stream" },
        { "a.tar.gz", "application/gzip" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        assert_string_equal(ms_mime_type(table[i][0], strlen(table[i][0])), table[i][1]);
    res.fd = -1;
    assert_int_equal(serve("/style.css"), 200);
    assert_string_equal(hdr("Content-Type"), "text/css; charset=utf-8");
    assert_int_equal(serve("/data.json"), 200);
    assert_string_equal(hdr("Content-Type"), "application/json");
    assert_int_equal(serve("/Font.WOFF2"), 200);
    assert_string_equal(hdr("Content-Type"), "font/woff2");
    assert_int_equal(serve("/x.unknown"), 200);
    assert_string_equal(hdr("Content-Type"), "application/octet-stream");
    assert_string_equal(res.content_type, "application/octet-stream");
    close(res.fd);
    res.fd = -1;
}

static void test_validators(void **state)
{
    (void)state;
    res.fd = -1;
    char etag[64];
    assert_int_equal(serve("/a.txt"), 200);
    snprintf(etag, sizeof etag, "\"%llx-%zx\"", 1700000000ULL * 1000000000ULL + 123, sizeof a_txt);
    assert_string_equal(hdr("ETag"), etag);
    assert_string_equal(res.etag, etag);
    assert_string_equal(hdr("Last-Modified"), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_string_equal(hdr("Content-Length"), "1200");
    assert_string_equal(hdr("Accept-Ranges"), "bytes");
    assert_null(hdr("Content-Encoding"));
    assert_null(hdr("Vary"));
    assert_null(hdr("Cache-Control"));
    assert_null(hdr("Date"));
    assert_true(res.compressible);
    assert_int_equal(res.offset, 0);
    assert_int_equal(res.length, 1200);
    assert_int_equal(res.size, 1200);
    assert_int_equal(res.encoding, MS_ENC_IDENTITY);

    /* If-None-Match */
    char list[200], weak[80];
    snprintf(list, sizeof list, "\"nope\", W/\"x,y\" ,%s", etag);
    snprintf(weak, sizeof weak, "W/%s", etag);
    const char *hits[] = { etag, list, weak, "*", " *" };
    for (size_t i = 0; i < sizeof hits / sizeof hits[0]; i++) {
        assert_int_equal(serve("/a.txt", .inm = hits[i]), 304);
        assert_int_equal(res.fd, -1);
        assert_string_equal(hdr("ETag"), etag);
        assert_string_equal(hdr("Last-Modified"), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_null(hdr("Content-Length"));
        assert_null(hdr("Content-Type"));
    }
    const char *misses[] = { "\"nope\"", "nope", "W/\"1-2\", \"3-4\"", "", "\"unterminated" };
    for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++)
        assert_int_equal(serve("/a.txt", .inm = misses[i]), 200);
    /* If-None-Match takes precedence over If-Modified-Since */
    assert_int_equal(serve("/a.txt", .inm = "\"nope\"", .ims = "Fri, 01 Jan 2100 00:00:00 GMT"), 200);
    assert_int_equal(serve("/a.txt", .inm = etag, .ims = "Sat, 01 Jan 2000 00:00:00 GMT"), 304);

    /* If-Modified-Since */
    assert_int_equal(serve("/a.txt", .ims = "Tue, 14 Nov 2023 22:13:20 GMT"), 304);
    assert_int_equal(serve("/a.txt", .ims = "Wed, 15 Nov 2023 00:00:00 GMT"), 304);
    assert_int_equal(serve("/a.txt", .ims = "Tue, 14 Nov 2023 22:13:19 GMT"), 200);
    assert_int_equal(serve("/a.txt", .ims = "Tuesday, 14-Nov-23 22:13:20 GMT"), 304);
    assert_int_equal(serve("/a.txt", .ims = "Tue Nov 14 22:13:20 2023"), 304);
    assert_int_equal(serve("/a.txt", .ims = "garbage"), 200);
    assert_int_equal(serve("/a.txt", .ims = "Tue, 14 Nov 2023 22:13:20 GMT trailing"), 200);
    assert_int_equal(serve("/a.txt", .ims = "Tue, 14 Foo 2023 22:13:20 GMT"), 200);
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;

    int64_t t;
    char d[30];
    ms_http_date(0, d);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    ms_http_date(1700000000, d);
    assert_true(ms_http_date_parse(d, &t));
    assert_int_equal(t, 1700000000);
    assert_false(ms_http_date_parse("Tue, 14 Nov 2023 25:13:20 GMT", &t));
}

static void test_ranges(void **state)
{
    (void)state;
    res.fd = -1;
    assert_int_equal(serve("/a.txt", .range = "bytes=0-9"), 206);
    assert_string_equal(hdr("Content-Range"), "bytes 0-9/1200");
    assert_string_equal(hdr("Content-Length"), "10");
    assert_string_equal(body(), "abcdefghij");
    assert_false(res.compressible);   /* never compress a 206 */
    assert_int_equal(serve("/a.txt", .range = "bytes=1190-"), 206);
    assert_string_equal(hdr("Content-Range"), "bytes 1190-1199/1200");
    assert_int_equal(res.offset, 1190);
    assert_int_equal(res.length, 10);
    assert_int_equal(serve("/a.txt", .range = "bytes=-5"), 206);
    assert_string_equal(hdr("Content-Range"), "bytes 1195-1199/1200");
    assert_string_equal(body(), "zabcd");   /* 1195 % 26 == 25 */
    assert_int_equal(serve("/a.txt", .range = "bytes=-5000"), 206);
    assert_string_equal(hdr("Content-Range"), "bytes 0-1199/1200");
    assert_int_equal(serve("/a.txt", .range = "bytes=1000-99999"), 206);
    assert_string_equal(hdr("Content-Range"), "bytes 1000-1199/1200");
    assert_int_equal(serve("/a.txt", .range = " Bytes = 5-5 "), 206);
    assert_string_equal(body(), "f");
    assert_int_equal(serve("/a.txt", .range = "bytes=1199-1199"), 206);

    const char *unsat[] = { "bytes=1200-", "bytes=5000-6000", "bytes=-0" };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(serve("/a.txt", .range = unsat[i]), 416);
        assert_int_equal(res.fd, -1);
        assert_string_equal(res.headers, "Content-Range: bytes */1200\r\n");
    }
    const char *ignored[] = { "bytes=0-0,5-9", "bytes=0-1, 3-4", "bytes=9-3", "items=0-1", "bytes=", "bytes=-",
                              "bytes=a-b", "bytes=0-1x", "bytes=99999999999999999999-", "0-1" };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        if (serve("/a.txt", .range = ignored[i]) != 200)
            fail_msg("%s: %d", ignored[i], res.status);
        assert_int_equal(res.length, 1200);
        assert_null(hdr("Content-Range"));
    }
    /* an empty file: Range ignored */
    assert_int_equal(serve("/empty.txt", .range = "bytes=0-"), 200);
    assert_int_equal(res.length, 0);
    assert_string_equal(hdr("Content-Length"), "0");

    /* If-Range */
    char etag[64];
    snprintf(etag, sizeof etag, "%s", res.etag);
    assert_int_equal(serve("/a.txt"), 200);
    snprintf(etag, sizeof etag, "%s", res.etag);
    char weak[80];
    snprintf(weak, sizeof weak, "W/%s", etag);
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .if_range = etag), 206);
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .if_range = "\"other\""), 200);
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .if_range = weak), 200);
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .if_range = "Tue, 14 Nov 2023 22:13:20 GMT"), 206);
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .if_range = "Tue, 14 Nov 2023 22:13:21 GMT"), 200);
    /* 304 wins over Range */
    assert_int_equal(serve("/a.txt", .range = "bytes=0-1", .inm = etag), 304);
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;
}

static void test_precompressed(void **state)
{
    (void)state;
    res.fd = -1;
    assert_int_equal(serve("/app.js", .ae = "gzip, deflate, br"), 200);
    assert_int_equal(res.encoding, MS_ENC_BR);
    assert_string_equal(body(), "BR-JS!");
    assert_string_equal(hdr("Content-Encoding"), "br");
    assert_string_equal(hdr("Vary"), "Accept-Encoding");
    assert_string_equal(hdr("Content-Type"), "text/javascript; charset=utf-8");
    assert_string_equal(hdr("Content-Length"), "6");
    assert_non_null(strstr(hdr("ETag"), "-br\""));
    assert_false(res.compressible);
    char br_etag[64];
    snprintf(br_etag, sizeof br_etag, "%s", res.etag);

    assert_int_equal(serve("/app.js", .ae = "gzip"), 200);
    assert_string_equal(body(), "GZ-JS!!");
    assert_string_equal(hdr("Content-Encoding"), "gzip");
    assert_non_null(strstr(hdr("ETag"), "-gz\""));
    assert_string_not_equal(res.etag, br_etag);
    assert_int_equal(serve("/app.js", .ae = "br;q=0.5, gzip"), 200);
    assert_string_equal(body(), "GZ-JS!!");
    assert_int_equal(serve("/app.js", .ae = "br;q=0.5, gzip;q=0.5"), 200);
    assert_string_equal(body(), "BR-JS!");
    assert_int_equal(serve("/app.js", .ae = "*"), 200);
    assert_string_equal(body(), "BR-JS!");
    assert_int_equal(serve("/app.js", .ae = "*;q=0.1, br;q=0"), 200);
    assert_string_equal(body(), "ZST-JS!!!");
    assert_int_equal(serve("/app.js", .ae = "*;q=0.1, br;q=0, zstd;q=0"), 200);
    assert_string_equal(body(), "GZ-JS!!");
    assert_int_equal(serve("/app.js", .ae = "x-gzip"), 200);
    assert_string_equal(body(), "GZ-JS!!");
    const char *plain[] = { "br;q=0, gzip;q=0", "identity", "deflate", "", "bogus", "gzip;q=0,br;q=0.000" };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        assert_int_equal(serve("/app.js", .ae = plain[i]), 200);
        assert_string_equal(body(), "console.log('app');");
        assert_null(hdr("Content-Encoding"));
        assert_null(hdr("Vary"));
    }
    assert_int_equal(serve("/app.js"), 200);
    assert_string_equal(body(), "console.log('app');");

    /* only .gz exists: br falls back to it */
    assert_int_equal(serve("/style.css", .ae = "br, gzip"), 200);
    assert_string_equal(body(), "GZ-CSS");
    assert_int_equal(serve("/style.css", .ae = "br"), 200);
    assert_string_equal(body(), "body{}");
    /* not a compressible type: no sibling lookup */
    assert_int_equal(serve("/img.png", .ae = "gzip"), 200);
    assert_string_equal(body(), "PNG");
    /* a directory named like a sibling is not one */
    assert_int_equal(serve("/dirsib.js", .ae = "br"), 200);
    assert_string_equal(body(), "dirsib");

    /* conditionals and ranges apply to the encoded file */
    assert_int_equal(serve("/app.js", .ae = "br", .inm = br_etag), 304);
    assert_string_equal(hdr("Vary"), "Accept-Encoding");
    assert_int_equal(serve("/app.js", .ae = "gzip", .inm = br_etag), 200);
    assert_int_equal(serve("/app.js", .ae = "br", .range = "bytes=0-1"), 206);
    assert_string_equal(body(), "BR");
    assert_string_equal(hdr("Content-Range"), "bytes 0-1/6");
    assert_string_equal(hdr("Content-Encoding"), "br");
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;
}

/* .zst siblings: in the same negotiation as .br and .gz (by q; ties br,
 * zstd, gzip), their own ETag, ranges and conditionals on their bytes. */
static void test_precompressed_zstd(void **state)
{
    (void)state;
    res.fd = -1;
    assert_int_equal(serve("/app.js", .ae = "zstd"), 200);
    assert_int_equal(res.encoding, MS_ENC_ZSTD);
    assert_string_equal(body(), "ZST-JS!!!");
    assert_string_equal(hdr("Content-Encoding"), "zstd");
    assert_string_equal(hdr("Vary"), "Accept-Encoding");
    assert_string_equal(hdr("Content-Type"), "text/javascript; charset=utf-8");
    assert_string_equal(hdr("Content-Length"), "9");
    assert_non_null(strstr(hdr("ETag"), "-zst\""));
    assert_false(res.compressible);
    char zst_etag[64];
    snprintf(zst_etag, sizeof zst_etag, "%s", res.etag);

    /* by q first; on a tie br, then zstd, then gzip */
    static const struct { const char *ae, *want; } cases[] = {
        { "gzip, deflate, br, zstd", "BR-JS!" },
        { "zstd, gzip", "ZST-JS!!!" },
        { "gzip, zstd", "ZST-JS!!!" },
        { "zstd;q=0.5, gzip", "GZ-JS!!" },
        { "zstd, br;q=0.9", "ZST-JS!!!" },
        { "br;q=0.5, zstd;q=0.5, gzip;q=0.4", "BR-JS!" },
        { "ZSTD", "ZST-JS!!!" },
        { "zstd;q=0, zstd", "console.log('app');" },          /* duplicate: the first wins */
        { "zstd, zstd;q=0", "ZST-JS!!!" },
        { "zstd;q=2, gzip;q=0.1", "GZ-JS!!" },                 /* absurd q: the element is dropped */
        { "zstd;q=1.0000000000001", "console.log('app');" },
        { "zst, zstandard", "console.log('app');" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(serve("/app.js", .ae = cases[i].ae), 200);
        if (strcmp(body(), cases[i].want) != 0)
            fail_msg("\"%s\": got \"%s\", want \"%s\"", cases[i].ae, body(), cases[i].want);
    }
    /* only .zst exists: whatever else is preferred falls back to it */
    assert_int_equal(serve("/zonly.css", .ae = "br, gzip, zstd;q=0.1"), 200);
    assert_string_equal(body(), "ZST-CSS");
    assert_int_equal(serve("/zonly.css", .ae = "br, gzip"), 200);
    assert_string_equal(body(), "body{color:red}");
    /* not a compressible type: no sibling lookup */
    assert_int_equal(serve("/img.png", .ae = "zstd"), 200);
    assert_string_equal(body(), "PNG");

    /* conditionals and ranges apply to the .zst bytes */
    assert_int_equal(serve("/app.js", .ae = "zstd", .inm = zst_etag), 304);
    assert_string_equal(hdr("Vary"), "Accept-Encoding");
    assert_int_equal(serve("/app.js", .ae = "gzip", .inm = zst_etag), 200);
    assert_string_equal(body(), "GZ-JS!!");
    assert_int_equal(serve("/app.js", .ae = "zstd", .range = "bytes=4-"), 206);
    assert_string_equal(body(), "JS!!!");
    assert_string_equal(hdr("Content-Range"), "bytes 4-8/9");
    assert_string_equal(hdr("Content-Encoding"), "zstd");
    assert_int_equal(serve("/app.js", .ae = "zstd", .range = "bytes=9-"), 416);
    assert_string_equal(hdr("Content-Range"), "bytes */9");
    assert_int_equal(serve("/app.js", .method = "HEAD", .ae = "zstd"), 200);
    assert_int_equal(res.fd, -1);
    assert_string_equal(hdr("Content-Encoding"), "zstd");
    if (res.fd >= 0)
        close(res.fd);
    res.fd = -1;
}

static void test_head_and_encoded_headers(void **state)
{
    (void)state;
    res.fd = -1;
    char get_headers[1024];
    assert_int_equal(serve("/a.txt"), 200);
    snprintf(get_headers, sizeof get_headers, "%s", res.headers);
    close(res.fd);
    res.fd = -1;
    assert_int_equal(serve("/a.txt", .method = "HEAD"), 200);
    assert_int_equal(res.fd, -1);
    assert_string_equal(res.headers, get_headers);
    assert_int_equal(res.length, 1200);
    assert_int_equal(serve("/app.js", .method = "HEAD", .ae = "br"), 200);
    assert_int_equal(res.fd, -1);
    assert_string_equal(hdr("Content-Encoding"), "br");
    assert_int_equal(serve("/a.txt", .method = "HEAD", .range = "bytes=0-4"), 206);
    assert_int_equal(res.fd, -1);
    assert_string_equal(hdr("Content-Length"), "5");
    assert_int_equal(serve("/a.txt", .method = "HEAD", .inm = "*"), 304);

    /* small files and non-compressible types are not offered for compression */
    assert_int_equal(serve("/index.html"), 200);
    assert_false(res.compressible);
    assert_int_equal(serve("/a.txt"), 200);
    assert_true(res.compressible);
    char h[512];
    size_t n = ms_static_encoded_headers(&res, MS_ENC_GZIP, h, sizeof h);
    assert_int_equal(n, strlen(h));
    char want[512];
    snprintf(want, sizeof want,
             "Content-Type: text/plain; charset=utf-8\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
             "ETag: W/%s\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
             res.etag);
    assert_string_equal(h, want);
    assert_int_equal(ms_static_encoded_headers(&res, MS_ENC_BR, h, 20), 0);
    close(res.fd);
    res.fd = -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traversal),
        cmocka_unit_test(test_open_fallback),
        cmocka_unit_test(test_index_fallthrough_prefix),
        cmocka_unit_test(test_mime),
        cmocka_unit_test(test_validators),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_precompressed),
        cmocka_unit_test(test_precompressed_zstd),
        cmocka_unit_test(test_head_and_encoded_headers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
