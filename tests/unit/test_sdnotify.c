/* test_sdnotify.c: the service manager's notification socket
 * (src/util/sdnotify.c): $NOTIFY_SOCKET as a path or an @abstract name,
 * rejected values, $WATCHDOG_USEC/$WATCHDOG_PID for us or another process,
 * the variables taken out of the environment, and a datagram that arrives
 * whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/sdnotify.h"

static void test_addresses(void **state)
{
    (void)state;
    struct sockaddr_un a;
    socklen_t len;
    assert_true(ms_sdnotify_address("/run/systemd/notify", &a, &len));
    assert_string_equal(a.sun_path, "/run/systemd/notify");
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    assert_true(ms_sdnotify_address("@ms/x", &a, &len));
    assert_int_equal(a.sun_path[0], '\0');
    assert_memory_equal(a.sun_path + 1, "ms/x", 4);
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 5); /* no terminator */
    assert_false(ms_sdnotify_address(NULL, &a, &len));
    assert_false(ms_sdnotify_address("", &a, &len));
    assert_false(ms_sdnotify_address("@", &a, &len));
    assert_false(ms_sdnotify_address("relative/path", &a, &len));
    char lng[sizeof a.sun_path + 2];
    memset(lng, 'x', sizeof lng - 1);
    lng[0] = '/';
    lng[sizeof lng - 1] = '\0';
    assert_false(ms_sdnotify_address(lng, &a, &len)); /* 109 bytes: too long */
    lng[sizeof a.sun_path - 1] = '\0';
    assert_true(ms_sdnotify_address(lng, &a, &len)); /* 107 bytes and the NUL: fits */
    lng[0] = '@';
    lng[sizeof a.sun_path - 1] = 'x';
    lng[sizeof a.sun_path] = '\0';
    assert_true(ms_sdnotify_address(lng, &a, &len)); /* abstract: all 108 bytes */
}

static void test_watchdog(void **state)
{
    (void)state;
    assert_int_equal(ms_sdnotify_watchdog_usec("30000000", NULL, 42), 30000000);
    assert_int_equal(ms_sdnotify_watchdog_usec("30000000", "42", 42), 30000000);
    assert_int_equal(ms_sdnotify_watchdog_usec("30000000", "41", 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec("30000000", "x", 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec(NULL, "42", 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec("0", NULL, 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec("-5", NULL, 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec("12s", NULL, 42), 0);
    assert_int_equal(ms_sdnotify_watchdog_usec("99999999999999999999999", NULL, 42), 0);
}

static void test_open_send_and_unset(void **state)
{
    (void)state;
    char dir[] = "/tmp/ms-sdnotify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/notify", dir);
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(srv >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(srv, (struct sockaddr *)&a, sizeof a), 0);

    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "2000000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    ms_sdnotify n;
    char why[128];
    assert_true(ms_sdnotify_open(&n, why, sizeof why));
    assert_int_equal(n.watchdog_usec, 2000000);
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_null(getenv("WATCHDOG_USEC"));
    assert_null(getenv("WATCHDOG_PID"));
    assert_int_equal(ms_sdnotify_send(&n, "READY=1\nSTATUS=1/1 up"), 0);
    char buf[64];
    ssize_t r = recv(srv, buf, sizeof buf - 1, 0);
    assert_int_equal(r, strlen("READY=1\nSTATUS=1/1 up"));
    buf[r] = '\0';
    assert_string_equal(buf, "READY=1\nSTATUS=1/1 up");
    ms_sdnotify_close(&n);
    assert_int_equal(ms_sdnotify_send(&n, "WATCHDOG=1"), 0); /* closed: a no-op */

    /* the socket gone: the send fails, it does not block or crash */
    setenv("NOTIFY_SOCKET", path, 1);
    assert_true(ms_sdnotify_open(&n, why, sizeof why));
    assert_int_equal(n.watchdog_usec, 0); /* the variables were taken out */
    close(srv);
    unlink(path);
    assert_true(ms_sdnotify_send(&n, "READY=1") < 0);
    ms_sdnotify_close(&n);
    rmdir(dir);
}

static void test_open_without_or_with_a_bad_variable(void **state)
{
    (void)state;
    ms_sdnotify n;
    char why[128];
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "1000", 1);
    assert_false(ms_sdnotify_open(&n, why, sizeof why));
    assert_string_equal(why, "");
    assert_int_equal(n.fd, -1);
    assert_int_equal(n.watchdog_usec, 0);
    assert_null(getenv("WATCHDOG_USEC"));
    setenv("NOTIFY_SOCKET", "notify", 1);
    assert_false(ms_sdnotify_open(&n, why, sizeof why));
    assert_non_null(strstr(why, "\"notify\""));
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_int_equal(ms_sdnotify_send(&n, "READY=1"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_open_send_and_unset),
        cmocka_unit_test(test_open_without_or_with_a_bad_variable),
    };
    return cmocka_run_group_tests_name("sdnotify", tests, NULL, NULL);
}
