/* test_logs.c: the log sink's writer thread (src/fleet/logs.c): everything
 * queued reaches a reader at close, and closing returns, with the lines it
 * could not write counted and said on stderr, when the output is a full pipe
 * that nobody reads. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fleet/logs.h"

/* Read everything there is (the write end is closed, or nothing is left). */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap)
            break;
    }
    return n;
}

static void test_close_flushes_every_line_to_a_reader(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    ms_log *log = ms_log_open(p[1], false, false);
    assert_non_null(log);
    enum { N = 500 }; /* ~40 KiB: fits in the pipe, no reader needed */
    for (int i = 0; i < N; i++)
        ms_log_event(log, MS_INFO, NULL, "test", "line %d of the flush test", i);
    assert_int_equal(ms_log_dropped(log), 0);
    ms_log_close(log);
    close(p[1]);
    static char buf[1 << 17];
    size_t n = drain(p[0], buf, sizeof buf - 1);
    close(p[0]);
    buf[n] = '\0';
    int lines = 0;
    for (char *s = buf, *nl; (nl = strchr(s, '\n')) != NULL; s = nl + 1) {
        char want[64];
        snprintf(want, sizeof want, "| line %d of the flush test", lines);
        *nl = '\0';
        assert_non_null(strstr(s, want));
        lines++;
    }
    assert_int_equal(lines, N);
}

static void test_events_cannot_start_a_line_of_their_own(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    ms_log *log = ms_log_open(p[1], false, false);
    assert_non_null(log);
    ms_log_event(log, MS_WARN, NULL, "control", "no entry is named \"%s\"",
                 "web\n00:00:00.000 mothership   | forged\r\x1b[2J\x7f");
    ms_log_close(log);
    close(p[1]);
    static char buf[4096];
    size_t n = drain(p[0], buf, sizeof buf - 1);
    close(p[0]);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "| no entry is named \"web\\n00:00:00.000 mothership   | forged\\r\\x1b[2J\\x7f\"\n"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one line */
}

static void test_close_returns_on_a_full_pipe_nobody_reads(void **state)
{
    (void)state;
    int p[2], e[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(e), 0);
    /* Fill the pipe through a description of its own (O_NONBLOCK there
     * leaves the log's descriptor blocking, as a shared stdout is). */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    int filler = open(path, O_WRONLY | O_NONBLOCK);
    assert_true(filler >= 0);
    static const char junk[4096] = { 0 };
    while (write(filler, junk, sizeof junk) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    while (write(filler, junk, 1) > 0) /* the last bytes of a part-filled page */
        ;
    close(filler);

    ms_log *log = ms_log_open(p[1], true, false);
    assert_non_null(log);
    char line[1024];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    for (int i = 0; i < 2000; i++) /* 2 MiB: more than the queue holds */
        ms_log_event(log, MS_WARN, "ship", "test", "%d %s", i, line);
    assert_true(ms_log_dropped(log) > 0);

    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(e[1], STDERR_FILENO), STDERR_FILENO);
    ms_log_close(log); /* a hang here is the failure */
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(e[1]);
    char err[512];
    size_t n = drain(e[0], err, sizeof err - 1);
    err[n] = '\0';
    close(e[0]);
    unsigned long long total = 0, at_exit = 0;
    assert_int_equal(sscanf(err, "mothership: %llu log lines dropped in all, %llu at exit", &total, &at_exit), 2);
    assert_true(at_exit > 0 && total >= at_exit + 1000);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_flushes_every_line_to_a_reader),
        cmocka_unit_test(test_close_returns_on_a_full_pipe_nobody_reads),
        cmocka_unit_test(test_events_cannot_start_a_line_of_their_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
