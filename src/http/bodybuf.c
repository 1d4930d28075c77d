/* bodybuf.c: a request body held whole before it goes upstream. The body
 * stays in one allocation while it is at most mem_limit bytes (sized from
 * the announced length, else grown by doubling). The first byte beyond
 * that moves it to an unlinked temporary file; the allocation then becomes
 * a staging buffer, so writes to the file go out in pieces of mem_limit
 * and reading back uses the same buffer with pread. Memory per body is
 * never above mem_limit; the file is gone from the directory from its
 * first moment and disappears for good when it is closed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/bodybuf.h"

#define FIRST_ALLOC 16384

void ms_bodybuf_init(ms_bodybuf *b, size_t mem_limit, uint64_t expected)
{
    memset(b, 0, sizeof *b);
    b->mem_limit = mem_limit ? mem_limit : 1;
    b->fd = -1;
    /* the first allocation: the announced length when it fits */
    b->first_alloc = expected && expected <= b->mem_limit ? (size_t)expected
                     : FIRST_ALLOC < b->mem_limit ? FIRST_ALLOC : b->mem_limit;
}

bool ms_bodybuf_spilled(const ms_bodybuf *b)
{
    return b->fd >= 0;
}

static int grow_to(ms_bodybuf *b, size_t cap)
{
    if (cap <= b->mem_cap)
        return 0;
    char *n = realloc(b->mem, cap);
    if (!n)
        return -ENOMEM;
    b->mem = n;
    b->mem_cap = cap;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A file that has no name from its first moment (O_TMPFILE), or, where the
 * file system cannot do that, one that loses its name at once. */
static int open_unlinked(const char *dir)
{
    if (!dir || !*dir)
        dir = "/tmp";
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return -errno;
#endif
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/mothership-body-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    int tfd = mkostemp(path, O_CLOEXEC);
    if (tfd < 0)
        return -errno;
    if (unlink(path) != 0) {
        int e = errno;
        close(tfd);
        return -e;
    }
    return tfd;
}

/* The body no longer fits in memory: what is there goes to a new file. */
static int spill(ms_bodybuf *b, const char *tmpdir)
{
    int fd = open_unlinked(tmpdir);
    if (fd < 0)
        return fd;
    int rc = write_all(fd, b->mem, b->mem_len);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    b->fd = fd;
    b->file_len = b->mem_len;
    b->mem_len = 0;
    (void)grow_to(b, b->mem_limit); /* a full-size staging buffer if memory allows; a smaller one works too */
    return 0;
}

static int flush_staged(ms_bodybuf *b)
{
    if (b->mem_len == 0)
        return 0;
    int rc = write_all(b->fd, b->mem, b->mem_len);
    if (rc != 0)
        return rc;
    b->file_len += b->mem_len;
    b->mem_len = 0;
    return 0;
}

int ms_bodybuf_append(ms_bodybuf *b, const char *data, size_t len, const char *tmpdir)
{
    if (b->finished)
        return -EINVAL;
    if (len == 0)
        return 0;
    if (b->fd < 0) {
        if (len <= b->mem_limit - b->mem_len) {
            /* still fits in memory */
            size_t need = b->mem_len + len;
            if (need > b->mem_cap) {
                size_t cap = b->mem_cap;
                if (cap == 0)
                    cap = b->first_alloc;
                while (cap < need)
                    cap = cap > b->mem_limit / 2 ? b->mem_limit : cap * 2;
                if (cap > b->mem_limit)
                    cap = b->mem_limit;
                int rc = grow_to(b, cap);
                if (rc != 0)
                    return rc;
            }
            memcpy(b->mem + b->mem_len, data, len);
            b->mem_len += len;
            b->len += len;
            return 0;
        }
        int rc = spill(b, tmpdir);
        if (rc != 0)
            return rc;
    }
    b->len += len;
    if (b->mem_cap == 0) {
        /* no staging buffer at all (the first byte did not fit): straight to the file */
        int rc = write_all(b->fd, data, len);
        if (rc == 0)
            b->file_len += len;
        return rc;
    }
    while (len > 0) {
        if (b->mem_len == 0 && len >= b->mem_cap) {
            /* a large piece: no copy through the staging buffer */
            int rc = write_all(b->fd, data, len);
            if (rc != 0)
                return rc;
            b->file_len += len;
            return 0;
        }
        size_t room = b->mem_cap - b->mem_len;
        size_t n = len < room ? len : room;
        memcpy(b->mem + b->mem_len, data, n);
        b->mem_len += n;
        data += n;
        len -= n;
        if (b->mem_len == b->mem_cap) {
            int rc = flush_staged(b);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int ms_bodybuf_finish(ms_bodybuf *b)
{
    if (!b->finished) {
        b->finished = true;
        if (b->fd >= 0) {
            int rc = flush_staged(b);
            if (rc != 0)
                return rc;
        }
    }
    b->read_off = 0;
    return 0;
}

int ms_bodybuf_next(ms_bodybuf *b, const char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!b->finished)
        return -EINVAL;
    if (b->fd < 0) {
        if (b->read_off < b->mem_len) {
            *data = b->mem + b->read_off;
            *len = b->mem_len - (size_t)b->read_off;
            b->read_off = b->mem_len;
        }
        return 0;
    }
    if (b->read_off >= b->file_len)
        return 0;
    if (b->mem_cap == 0) {
        int rc = grow_to(b, b->mem_limit < 4096 ? b->mem_limit : 4096);
        if (rc != 0)
            return rc;
    }
    uint64_t left = b->file_len - b->read_off;
    size_t want = left < b->mem_cap ? (size_t)left : b->mem_cap;
    ssize_t r;
    do
        r = pread(b->fd, b->mem, want, (off_t)b->read_off);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -EIO; /* the file is shorter than what was written */
    b->read_off += (uint64_t)r;
    *data = b->mem;
    *len = (size_t)r;
    return 0;
}

void ms_bodybuf_free(ms_bodybuf *b)
{
    free(b->mem);
    b->mem = NULL;
    b->mem_cap = b->mem_len = 0;
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
}

const char *ms_bodybuf_strerror(int err)
{
    switch (-err) {
    case ENOSPC:
    case EDQUOT:
        return "no space left in the temporary directory for the request body";
    case ENOMEM:
        return "out of memory for the request body";
    case EACCES:
    case EPERM:
    case EROFS:
        return "the temporary directory for request bodies is not writable";
    case ENOENT:
    case ENOTDIR:
        return "the temporary directory for request bodies does not exist";
    default:
        return "cannot store the request body in the temporary directory";
    }
}
