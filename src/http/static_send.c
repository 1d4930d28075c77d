/* static_send.c: serving a static dir's file on a client connection: asks
 * static.c what to answer (pure logic: path mapping, conditionals, ranges,
 * precompressed siblings) and sends it: a small file read behind its head
 * in one write; a larger one as the head, then the body with sendfile(2)
 * straight from the page cache while the socket takes it, and through a
 * 64 KiB buffer when the socket is full (so libuv tells us when it drains).
 * A transport without a socket of its own (TLS, an HTTP/2 stream) gets the
 * body through that buffer, a chunk at a time while its queue is below
 * MS_WRITE_HIGH. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "http/handler.h"
#include "http/http_impl.h"
#include "http/static.h"

#define STATIC_CHUNK 65536
#define STATIC_INLINE 32768   /* files up to this go out with their head in one write (one TCP segment) */

static void file_done(ms_conn *c);
static void static_continue(ms_conn *c);

/* A file is being sent on this connection. */
static bool sending(const ms_conn *c)
{
    return c->file_fd >= 0 && !ms_conn_is_closing(c);
}

/* Copy a header value into a NUL-terminated buffer (NULL when absent). */
static const char *hval(const ms_conn *c, const char *name, char *buf, size_t cap)
{
    const ms_hdr *h = ms_conn_header(c, name);
    if (!h || h->val_len >= cap)
        return NULL;
    memcpy(buf, c->buf + h->val, h->val_len);
    buf[h->val_len] = '\0';
    return buf;
}

/* Waiting for the socket to take more file: a poll on a duplicate of its
 * descriptor (libuv allows one watcher per descriptor number; the duplicate
 * is the same socket), so sendfile(2) can go on from the page cache as
 * nginx does, instead of copying chunks through a write queue. */
typedef struct file_poll {
    uv_poll_t poll;
    int fd;
    ms_conn *c;
} file_poll;

static void on_poll_closed(uv_handle_t *h)
{
    file_poll *fp = h->data;
    ms_conn *c = fp->c;
    close(fp->fd);
    free(fp);
    if (c)
        ms_conn_handle_closed(c);
}

static void drop_poll(ms_conn *c)
{
    file_poll *fp = (file_poll *)c->file_poll;
    if (!fp)
        return;
    c->file_poll = NULL;
    uv_poll_stop(&fp->poll);
    c->handles_open++; /* the connection waits for this handle too */
    uv_close((uv_handle_t *)&fp->poll, on_poll_closed);
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    file_poll *fp = p->data;
    (void)events;
    uv_poll_stop(p);
    if (status < 0) {
        ms_conn_close(fp->c);
        return;
    }
    static_continue(fp->c);
}

/* Arrange to be called when the socket is writable; false if we cannot. */
static bool wait_writable(ms_conn *c, int sock)
{
    file_poll *fp = (file_poll *)c->file_poll;
    if (!fp) {
        fp = calloc(1, sizeof *fp);
        if (!fp)
            return false;
        fp->fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
        if (fp->fd < 0 || uv_poll_init(&c->w->loop, &fp->poll, fp->fd) != 0) {
            if (fp->fd >= 0)
                close(fp->fd);
            free(fp);
            return false;
        }
        fp->poll.data = fp;
        fp->c = c;
        c->file_poll = (uv_poll_t *)fp;
    }
    return uv_poll_start(&fp->poll, UV_WRITABLE, on_writable) == 0;
}

static void static_abort(ms_conn *c)
{
    drop_poll(c);
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    free(c->file_chunk);
    c->file_chunk = NULL;
    if (c->file_comp) {
        ms_compressor_free(c->file_comp);
        c->file_comp = NULL;
    }
    ms_cbuf_free(&c->file_cbuf);
}

/* Write compressor output as a chunk (or raw for HTTP/1.0, ended by the close). */
static void send_compressed(ms_conn *c)
{
    if (c->file_cbuf.len == 0)
        return;
    if (c->file_chunked) {
        char hdr[24];
        int n = snprintf(hdr, sizeof hdr, "%zx\r\n", c->file_cbuf.len);
        ms_conn_write(c, hdr, (size_t)n, true);
        ms_conn_write(c, (const char *)c->file_cbuf.data, c->file_cbuf.len, true);
        ms_conn_write(c, "\r\n", 2, false);
    } else {
        ms_conn_write(c, (const char *)c->file_cbuf.data, c->file_cbuf.len, true);
    }
    c->file_cbuf.len = 0;
}

/* Compress the file on the fly, a chunk at a time, pausing while the
 * client's queue is above the high-water mark. */
static void continue_compressed(ms_conn *c)
{
    if (!c->file_chunk && !(c->file_chunk = malloc(STATIC_CHUNK))) {
        ms_conn_close(c);
        return;
    }
    ms_conn_cork(c);
    while (c->file_left > 0 && ms_conn_write_pending(c) <= MS_WRITE_HIGH && sending(c)) {
        size_t take = c->file_left < STATIC_CHUNK ? (size_t)c->file_left : STATIC_CHUNK;
        ssize_t r = pread(c->file_fd, c->file_chunk, take, (off_t)c->file_off);
        if (r <= 0) {
            ms_conn_uncork(c);
            ms_conn_close(c);
            return;
        }
        c->file_off += (uint64_t)r;
        c->file_left -= (uint64_t)r;
        if (ms_compressor_write(c->file_comp, c->file_chunk, (size_t)r, c->file_left == 0, &c->file_cbuf) != 0) {
            ms_conn_uncork(c);
            ms_conn_close(c);
            return;
        }
        send_compressed(c);
        ms_conn_uncork(c);
        ms_conn_cork(c);
    }
    if (c->file_left == 0 && sending(c) && c->file_chunked)
        ms_conn_write(c, "0\r\n\r\n", 5, false);
    ms_conn_uncork(c);
    if (c->file_left == 0 && sending(c))
        file_done(c);
}

static void file_done(ms_conn *c)
{
    static_abort(c);
    ms_conn_responded(c);
}

/* No socket to sendfile(2) to: read a chunk at a time and write it,
 * pausing while the transport's queue is above the high-water mark
 * (the drained operation brings us back). */
static void continue_buffered(ms_conn *c)
{
    if (!c->file_chunk && !(c->file_chunk = malloc(STATIC_CHUNK))) {
        ms_conn_close(c);
        return;
    }
    while (c->file_left > 0 && ms_conn_write_pending(c) <= MS_WRITE_HIGH && sending(c)) {
        size_t take = c->file_left < STATIC_CHUNK ? (size_t)c->file_left : STATIC_CHUNK;
        ssize_t r = pread(c->file_fd, c->file_chunk, take, (off_t)c->file_off);
        if (r <= 0) {
            ms_conn_close(c); /* the file shrank under us */
            return;
        }
        c->file_off += (uint64_t)r;
        c->file_left -= (uint64_t)r;
        ms_conn_write(c, c->file_chunk, (size_t)r, false); /* the transport copies what it keeps */
    }
    if (c->file_left == 0 && sending(c))
        file_done(c);
}

/* Send as much of the file as the socket takes; when it is full, queue one
 * buffered chunk and come back when it has drained. */
static void static_continue(ms_conn *c)
{
    if (!sending(c))
        return;
    if (c->file_comp) {
        if (ms_conn_write_pending(c) <= MS_WRITE_HIGH)
            continue_compressed(c);
        return;
    }
    if (ms_conn_writing(c))
        return;
    int sock = ms_conn_socket_fd(c);
    if (sock < 0) {
        if (ms_conn_write_pending(c) <= MS_WRITE_HIGH)
            continue_buffered(c);
        return;
    }
    while (c->file_left > 0) {
        off_t off = (off_t)c->file_off;
        size_t want = c->file_left > (1u << 30) ? (1u << 30) : (size_t)c->file_left;
        ssize_t n = sendfile(sock, c->file_fd, &off, want);
        if (n > 0) {
            c->file_off += (uint64_t)n;
            c->file_left -= (uint64_t)n;
            ms_conn_sent_around(c, (uint64_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (wait_writable(c, sock))
                return; /* on_writable brings us back */
            if (!c->file_chunk && !(c->file_chunk = malloc(STATIC_CHUNK))) {
                ms_conn_close(c);
                return;
            }
            size_t take = c->file_left < STATIC_CHUNK ? (size_t)c->file_left : STATIC_CHUNK;
            ssize_t r = pread(c->file_fd, c->file_chunk, take, (off_t)c->file_off);
            if (r <= 0) {
                ms_conn_close(c); /* the file shrank under us */
                return;
            }
            c->file_off += (uint64_t)r;
            c->file_left -= (uint64_t)r;
            ms_conn_write(c, c->file_chunk, (size_t)r, false);
            if (ms_conn_writing(c))
                return; /* the drained operation brings us back */
            continue;
        }
        ms_conn_close(c); /* EPIPE, or the file is gone */
        return;
    }
    file_done(c);
}

/* A static dir covers the path: answer with its file, or decline (no such
 * file: the request goes on to the routes). */
static bool static_start(ms_conn *c, const ms_handler_arg *arg)
{
    const ms_static_dir *sd = arg->dir;
    int root_fd = arg->dir_fd;
    const char *path = arg->path;
    size_t plen = arg->path_len;
    char inm[256], ims[64], range[128], ifr[128], ae[256];
    ms_static_req req = {
        .method = c->is_head_method ? "HEAD" : "GET",
        .method_len = c->is_head_method ? 4 : 3,
        .path = path,
        .path_len = plen,
        .if_none_match = hval(c, "if-none-match", inm, sizeof inm),
        .if_modified_since = hval(c, "if-modified-since", ims, sizeof ims),
        .range = hval(c, "range", range, sizeof range),
        .if_range = hval(c, "if-range", ifr, sizeof ifr),
        .accept_encoding = hval(c, "accept-encoding", ae, sizeof ae),
    };
    ms_static_result r;
    if (root_fd >= 0)
        ms_static_serve_at(root_fd, sd->prefix, &req, &r);
    else
        ms_static_serve(sd->path, sd->prefix, &req, &r);
    if (r.status == 0)
        return false;
    if (r.status == 403 || r.status == 404 || r.status == 500) {
        if (r.fd >= 0)
            close(r.fd);
        ms_conn_respond_error(c, r.status, r.status == 404 ? "not found" : r.status == 403 ? "forbidden"
                                                                                           : "cannot read the file");
        return true;
    }
    bool close_conn = !c->keep_alive;
    /* compress on the fly when it pays and the client accepts it */
    ms_encoding enc = MS_ENC_IDENTITY;
    if (r.status == 200 && r.compressible && c->g->m->global.compression) {
        const ms_hdr *aeh = ms_conn_header(c, "accept-encoding");
        bool forbidden = false;
        if (aeh)
            enc = ms_compress_negotiate(c->buf + aeh->val, aeh->val_len, &forbidden);
    }
    const char *hdrs = r.headers;
    size_t hdrs_len = r.headers_len;
    char enc_headers[1024];
    if (enc != MS_ENC_IDENTITY) {
        size_t el = ms_static_encoded_headers(&r, enc, enc_headers, sizeof enc_headers);
        c->file_comp = el && !c->is_head_method ? ms_compressor_new_in(&c->w->ccache, enc, -1, r.length) : NULL;
        if (el && (c->file_comp || c->is_head_method)) {
            hdrs = enc_headers;
            hdrs_len = el;
            c->file_chunked = c->http_minor >= 1;
            if (!c->file_chunked)
                close_conn = true;
        } else {
            enc = MS_ENC_IDENTITY;
        }
    }
    /* the answer depends on Accept-Encoding whenever compression could apply */
    bool vary = enc == MS_ENC_IDENTITY && r.compressible && c->g->m->global.compression;
    char head[1536];
    int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nServer: mothership\r\n%.*s%.*s%s%s%s%s\r\n", r.status,
                      ms_http_reason(r.status), (int)c->w->date_len, c->w->date, (int)hdrs_len, hdrs,
                      r.status == 416 ? "Content-Length: 0\r\n" : "",
                      enc != MS_ENC_IDENTITY && c->file_chunked ? "Transfer-Encoding: chunked\r\n" : "",
                      vary ? "Vary: Accept-Encoding\r\n" : "",
                      close_conn ? "Connection: close\r\n" : (c->http_minor == 0 ? "Connection: keep-alive\r\n" : ""));
    if (hl < 0 || (size_t)hl >= sizeof head) {
        if (r.fd >= 0)
            close(r.fd);
        ms_conn_respond_error(c, 500, "response head too large");
        return true;
    }
    if (close_conn)
        ms_conn_end_after_response(c, false);
    ms_conn_cork(c);
    ms_conn_write(c, head, (size_t)hl, true);
    if (!c->file_comp && !c->is_head_method && r.fd >= 0 && r.length > 0 && r.length <= STATIC_INLINE) {
        /* a small file: read it behind its head and send both in one writev,
         * so the client gets one segment (nginx gets the same from
         * tcp_nopush + sendfile) */
        char *dst = ms_conn_cork_reserve(c, (size_t)r.length);
        ssize_t got = dst ? pread(r.fd, dst, (size_t)r.length, (off_t)r.offset) : -1;
        close(r.fd);
        if (got != (ssize_t)r.length) {
            ms_conn_close(c); /* out of memory, or the file changed under us: the head cannot stand */
            return true;
        }
        ms_conn_cork_commit(c, (size_t)r.length);
        ms_conn_record(c, r.status);
        ms_conn_uncork(c);
        ms_conn_responded(c);
        return true;
    }
    /* counted before the client can see the answer; the body's bytes are
     * known in advance (compressed ones are counted as the file's) */
    ms_conn_record_ahead(c, r.status, !c->is_head_method && r.fd >= 0 ? r.length : 0);
    ms_conn_uncork(c);
    if (r.fd < 0 || c->is_head_method || r.length == 0 || ms_conn_is_closing(c)) {
        if (r.fd >= 0)
            close(r.fd);
        ms_conn_responded(c);
        return true;
    }
    ms_conn_response_streaming(c);
    c->file_fd = r.fd;
    c->file_off = r.offset;
    c->file_left = r.length;
    if (c->file_comp || !ms_conn_writing(c))
        static_continue(c);
    return true;
}

const ms_handler ms_handler_static = {
    .start = static_start,
    .drained = static_continue,
    .abort = static_abort,
};
