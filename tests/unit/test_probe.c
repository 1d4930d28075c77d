/* test_probe.c: connect probes (src/fleet/probe.c) call back exactly once,
 * with the reason, even when the connect fails before it starts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fleet/probe.h"

typedef struct result {
    int calls;
    bool ok;
    char text[128];
} result;

static void on_result(void *arg, bool ok, int status, const char *text)
{
    result *r = arg;
    (void)status;
    r->calls++;
    r->ok = ok;
    snprintf(r->text, sizeof r->text, "%s", text ? text : "");
}

/* A connect that the kernel refuses at once (no route to the broadcast
 * address): the probe still exists and says why, once. */
static void test_a_connect_that_fails_at_once(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ms_target t;
    memset(&t, 0, sizeof t);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&t.sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(80);
    s4->sin_addr.s_addr = htonl(INADDR_BROADCAST);
    snprintf(t.host_header, sizeof t.host_header, "255.255.255.255");
    result r = { 0 };
    ms_probe *p = ms_probe_start(&loop, &t, NULL, 60000, on_result, &r);
    assert_non_null(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_false(r.ok);
    assert_true(r.text[0] != '\0');
    assert_null(strstr(r.text, "timed out"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_connect_that_fails_at_once),
    };
    return cmocka_run_group_tests_name("probe", tests, NULL, NULL);
}
