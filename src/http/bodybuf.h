/* bodybuf.h: a request body held whole before it goes upstream: in memory
 * up to a bound, then in an unlinked temporary file; read back in pieces no
 * larger than that bound. No sockets, no event loop: the data plane feeds
 * it and drains it, tests/unit/test_bodybuf.c tests it directly. */
#ifndef MS_HTTP_BODYBUF_H
#define MS_HTTP_BODYBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_bodybuf {
    char *mem;           /* the whole body while it fits; after a spill, the
                            staging buffer for writes and then for reads */
    size_t mem_len;      /* bytes in mem not (yet) in the file */
    size_t mem_cap;      /* allocated */
    size_t mem_limit;    /* never more than this in memory */
    size_t first_alloc;  /* the first allocation: the announced length, or less */
    int fd;              /* the temporary file, or -1 */
    uint64_t len;        /* body bytes appended */
    uint64_t file_len;   /* bytes written to the file */
    uint64_t read_off;   /* reading back: the next byte */
    bool finished;       /* appending is over: only reads */
} ms_bodybuf;

/* An empty store keeping at most mem_limit bytes in memory (>= 1);
 * expected: the announced length (0: unknown), to size the first
 * allocation. Allocates nothing. */
void ms_bodybuf_init(ms_bodybuf *b, size_t mem_limit, uint64_t expected);

/* Adds len bytes. Beyond mem_limit the body moves to a temporary file in
 * tmpdir (created with O_TMPFILE, or mkstemp and unlinked at once), so
 * nothing is left on disk whatever happens. Returns 0 or a negative errno
 * (-ENOMEM, -ENOSPC, -EDQUOT, -EIO, ... from the allocation or the file). */
int ms_bodybuf_append(ms_bodybuf *b, const char *data, size_t len, const char *tmpdir);

/* Ends the appending (what is staged goes to the file) and rewinds for
 * reading. Returns 0 or a negative errno. */
int ms_bodybuf_finish(ms_bodybuf *b);

/* The next piece of the body, at most mem_limit bytes: *data is valid
 * until the next call or the free. *len == 0 at the end. Returns 0 or a
 * negative errno (a read error of the file, or -EIO when the file is
 * shorter than what was written). Only after ms_bodybuf_finish. */
int ms_bodybuf_next(ms_bodybuf *b, const char **data, size_t *len);

/* Has the body gone to a temporary file? */
bool ms_bodybuf_spilled(const ms_bodybuf *b);

/* Frees the memory and closes the file (which disappears with it). Safe
 * to call twice, and on a store that was only initialised. */
void ms_bodybuf_free(ms_bodybuf *b);

/* A plain statement of an ms_bodybuf_* error, for a client's error body. */
const char *ms_bodybuf_strerror(int err);

#endif
