/* test_bodybuf.c: the request body store: bodies that fit in memory, the
 * spill to an unlinked temporary file (nothing left in the directory),
 * bytes read back identical in pieces no larger than the memory bound,
 * the announced length as the first allocation, and errors (a directory
 * that does not exist, appending after the end). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/bodybuf.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/msbodybuf.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir); /* fails when a file was left behind */
}

static size_t entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 31 + seed) % 251);
}

/* Reads the whole body back, checks every piece's bound, returns a copy. */
static char *read_back(ms_bodybuf *b, size_t *total)
{
    assert_int_equal(ms_bodybuf_finish(b), 0);
    char *out = malloc(b->len + 1);
    assert_non_null(out);
    size_t off = 0;
    for (;;) {
        const char *d;
        size_t n;
        assert_int_equal(ms_bodybuf_next(b, &d, &n), 0);
        if (n == 0)
            break;
        assert_true(n <= b->mem_limit);
        assert_true(off + n <= b->len);
        memcpy(out + off, d, n);
        off += n;
    }
    *total = off;
    return out;
}

static void in_memory(void **state)
{
    (void)state;
    ms_bodybuf b;
    ms_bodybuf_init(&b, 1024, 0);
    assert_int_equal(ms_bodybuf_append(&b, "hello ", 6, dir), 0);
    assert_int_equal(ms_bodybuf_append(&b, "world", 5, dir), 0);
    assert_false(ms_bodybuf_spilled(&b));
    assert_int_equal(b.len, 11);
    size_t n;
    char *got = read_back(&b, &n);
    assert_int_equal(n, 11);
    assert_memory_equal(got, "hello world", 11);
    free(got);
    ms_bodybuf_free(&b);
    ms_bodybuf_free(&b); /* twice is fine */
}

static void exactly_the_limit_stays_in_memory(void **state)
{
    (void)state;
    char data[4096];
    fill(data, sizeof data, 1);
    ms_bodybuf b;
    ms_bodybuf_init(&b, sizeof data, sizeof data);
    for (size_t i = 0; i < sizeof data; i += 512)
        assert_int_equal(ms_bodybuf_append(&b, data + i, 512, dir), 0);
    assert_false(ms_bodybuf_spilled(&b));
    assert_int_equal(b.mem_cap, sizeof data); /* one allocation, of the announced length */
    size_t n;
    char *got = read_back(&b, &n);
    assert_int_equal(n, sizeof data);
    assert_memory_equal(got, data, sizeof data);
    free(got);
    ms_bodybuf_free(&b);
}

static void spills_to_an_unlinked_file(void **state)
{
    (void)state;
    size_t total = 300000;
    char *data = malloc(total);
    assert_non_null(data);
    fill(data, total, 7);
    ms_bodybuf b;
    ms_bodybuf_init(&b, 8192, 0);
    /* pieces of odd sizes, some larger than the memory bound */
    size_t sizes[] = { 1, 100, 8191, 3, 20000, 7, 4096, 65536, 13 };
    size_t off = 0, k = 0;
    while (off < total) {
        size_t n = sizes[k++ % (sizeof sizes / sizeof sizes[0])];
        if (n > total - off)
            n = total - off;
        assert_int_equal(ms_bodybuf_append(&b, data + off, n, dir), 0);
        off += n;
        assert_true(b.mem_cap <= 8192);
    }
    assert_true(ms_bodybuf_spilled(&b));
    assert_int_equal(entries(), 0); /* no name in the directory, even while open */
    size_t n;
    char *got = read_back(&b, &n);
    assert_int_equal(n, total);
    assert_memory_equal(got, data, total);
    free(got);
    ms_bodybuf_free(&b);
    assert_int_equal(b.fd, -1);
    assert_int_equal(entries(), 0);
    free(data);
}

static void first_piece_larger_than_the_bound(void **state)
{
    (void)state;
    char data[10000];
    fill(data, sizeof data, 3);
    ms_bodybuf b;
    ms_bodybuf_init(&b, 1000, sizeof data);
    assert_int_equal(ms_bodybuf_append(&b, data, sizeof data, dir), 0);
    assert_true(ms_bodybuf_spilled(&b));
    size_t n;
    char *got = read_back(&b, &n);
    assert_int_equal(n, sizeof data);
    assert_memory_equal(got, data, sizeof data);
    free(got);
    ms_bodybuf_free(&b);
}

static void missing_directory_is_an_error(void **state)
{
    (void)state;
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    ms_bodybuf b;
    ms_bodybuf_init(&b, 16, 0);
    assert_int_equal(ms_bodybuf_append(&b, "0123456789", 10, missing), 0);
    int rc = ms_bodybuf_append(&b, "0123456789", 10, missing);
    assert_int_equal(rc, -ENOENT);
    assert_non_null(strstr(ms_bodybuf_strerror(rc), "does not exist"));
    assert_false(ms_bodybuf_spilled(&b));
    ms_bodybuf_free(&b);
}

static void no_append_after_finish(void **state)
{
    (void)state;
    ms_bodybuf b;
    ms_bodybuf_init(&b, 64, 0);
    const char *d;
    size_t n;
    assert_int_equal(ms_bodybuf_next(&b, &d, &n), -EINVAL); /* not finished */
    assert_int_equal(ms_bodybuf_append(&b, "x", 1, dir), 0);
    assert_int_equal(ms_bodybuf_finish(&b), 0);
    assert_int_equal(ms_bodybuf_append(&b, "y", 1, dir), -EINVAL);
    assert_int_equal(ms_bodybuf_next(&b, &d, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ms_bodybuf_next(&b, &d, &n), 0);
    assert_int_equal(n, 0);
    ms_bodybuf_free(&b);
}

static void empty_body(void **state)
{
    (void)state;
    ms_bodybuf b;
    ms_bodybuf_init(&b, 64, 0);
    size_t n;
    char *got = read_back(&b, &n);
    assert_int_equal(n, 0);
    assert_null(b.mem); /* nothing was allocated */
    free(got);
    ms_bodybuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_memory),
        cmocka_unit_test(exactly_the_limit_stays_in_memory),
        cmocka_unit_test(spills_to_an_unlinked_file),
        cmocka_unit_test(first_piece_larger_than_the_bound),
        cmocka_unit_test(missing_directory_is_an_error),
        cmocka_unit_test(no_append_after_finish),
        cmocka_unit_test(empty_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
