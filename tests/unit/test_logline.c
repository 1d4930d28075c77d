/* test_logline.c: the JSON log line formatter (src/fleet/logline.c): the
 * common keys in their order, the event's fields, and a line that stays one
 * whole JSON object however long or hostile its message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "fleet/logline.h"

static json_t *parse_line(const char *buf, size_t n)
{
    assert_true(n > 2);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', n - 1)); /* exactly one line */
    json_error_t err;
    json_t *j = json_loadb(buf, n - 1, 0, &err);
    if (!j)
        fail_msg("not JSON (%s): %.*s", err.text, (int)n, buf);
    return j;
}

/* r formats as exactly want, in the smallest buffer a line may have. */
static void assert_formats_as(const ms_log_record *r, const char *want)
{
    char buf[MS_LOG_JSON_MIN];
    size_t n = ms_log_format_json(buf, sizeof buf, r);
    assert_true(n < sizeof buf);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_keys_in_order_with_fields(void **state)
{
    (void)state;
    ms_log_field f[] = { ms_log_str("ship", "web#1"), ms_log_num("pid", 4242) };
    ms_log_record r = { .time_ms = 1795687874295, .level = MS_WARN, .source = "mothership", .instance = -1,
                        .event = "exited", .fields = f, .nfields = 2, .msg = "ship \"web#1\" exited",
                        .msg_len = 19 };
    assert_formats_as(&r, "{\"ts\":\"2026-11-26T10:11:14.295Z\",\"level\":\"warn\",\"source\":\"mothership\","
                          "\"event\":\"exited\",\"ship\":\"web#1\",\"pid\":4242,\"msg\":\"ship \\\"web#1\\\" exited\"}\n");
}

static void test_child_line_with_instance_and_stream(void **state)
{
    (void)state;
    ms_log_record r = { .time_ms = 1000, .level = MS_INFO, .source = "web", .instance = 2, .stream = "stderr",
                        .continued = true, .msg = "a\tb", .msg_len = 3 };
    assert_formats_as(&r, "{\"ts\":\"1970-01-01T00:00:01.000Z\",\"level\":\"info\",\"source\":\"web\",\"instance\":2,"
                          "\"stream\":\"stderr\",\"continued\":true,\"msg\":\"a\\tb\"}\n");
}

/* A message much longer than the buffer, full of bytes that escape to six
 * and of invalid UTF-8, in every buffer size from the smallest up: always
 * one valid JSON object, cut at a character boundary. */
static void test_long_hostile_message_is_cut_and_stays_json(void **state)
{
    (void)state;
    size_t mlen = 5000;
    char *msg = malloc(mlen);
    assert_non_null(msg);
    for (size_t i = 0; i < mlen; i++)
        msg[i] = "\x01\"\\\xff\xe2\x82\xac\n"[i % 8];
    char *long_field = malloc(3000);
    assert_non_null(long_field);
    memset(long_field, 'f', 2999);
    long_field[2999] = '\0';
    ms_log_field f[] = { ms_log_str("path", long_field), ms_log_num("status", 200) };
    for (size_t cap = MS_LOG_JSON_MIN; cap < 4096; cap += 97) {
        char *buf = malloc(cap);
        assert_non_null(buf);
        ms_log_record r = { .level = MS_ERROR, .source = "access", .instance = -1, .event = "request",
                            .fields = f, .nfields = 2, .msg = msg, .msg_len = mlen };
        size_t n = ms_log_format_json(buf, cap, &r);
        assert_true(n < cap);
        json_t *j = parse_line(buf, n);
        assert_string_equal(json_string_value(json_object_get(j, "source")), "access");
        assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
        assert_non_null(json_object_get(j, "msg"));
        assert_non_null(json_object_get(j, "ts"));
        json_decref(j);
        free(buf);
    }
    free(long_field);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_in_order_with_fields),
        cmocka_unit_test(test_child_line_with_instance_and_stream),
        cmocka_unit_test(test_long_hostile_message_is_cut_and_stays_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
