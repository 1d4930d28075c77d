/* test_accesslog.c: the access log's line formats (hostile paths stay one
 * line and valid JSON), its ring (full: NULL and counted), and the writer
 * (records reach the file, in order, as lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/accesslog.h"
#include "manifest/manifest.h"

static void fill(ms_alog_rec *r, int format, const char *path, size_t plen)
{
    memset(r, 0, sizeof *r);
    r->end_us = 1765049000123456ull; /* 2025-12-06T19:23:20.123Z */
    r->duration_us = 12345;
    r->upstream_us = 10002;
    r->bytes = 1234;
    r->method = "GET";
    r->status = 200;
    r->peer_port = 51234;
    r->format = (uint8_t)format;
    r->proto = 11;
    r->path_len = (uint16_t)plen;
    memcpy(r->path, path, plen);
    memcpy(r->reqid, "abc", 3);
    r->reqid_len = 3;
    memcpy(r->peer, "127.0.0.1", 9);
    r->peer_len = 9;
    memcpy(r->bind, "http", 4);
    r->bind_len = 4;
    memcpy(r->target, "api#1", 5);
    r->target_len = 5;
}

static void test_text_line(void **state)
{
    (void)state;
    ms_alog_rec r;
    fill(&r, MS_ACCESS_LOG_TEXT, "/a?b=1", 6);
    char out[MS_ALOG_LINE_MAX];
    size_t n = ms_alog_format(&r, out, sizeof out);
    out[n] = '\0';
    assert_string_equal(out, "2025-12-06T19:23:20.123Z access http 127.0.0.1 \"GET /a?b=1 HTTP/1.1\" 200 1234 "
                             "12.345 api#1 10.002 abc\n");
    r.upstream_us = -1;
    r.target_len = 0;
    r.proto = 20;
    n = ms_alog_format(&r, out, sizeof out);
    out[n] = '\0';
    assert_non_null(strstr(out, "\"GET /a?b=1 HTTP/2\" 200 1234 12.345 - - abc\n"));
}

static void test_hostile_path_stays_one_field(void **state)
{
    (void)state;
    static const char path[] = "/x y\"z\\\n\r\x01\xff\xc3\xa9";
    ms_alog_rec r;
    fill(&r, MS_ACCESS_LOG_TEXT, path, sizeof path - 1);
    char out[MS_ALOG_LINE_MAX];
    size_t n = ms_alog_format(&r, out, sizeof out);
    out[n] = '\0';
    assert_non_null(strstr(out, "\"GET /x\\x20y\\x22z\\x5c\\x0a\\x0d\\x01\\xff\\xc3\\xa9 HTTP/1.1\""));
    assert_ptr_equal(strchr(out, '\n'), out + n - 1);

    r.format = MS_ACCESS_LOG_JSON;
    n = ms_alog_format(&r, out, sizeof out);
    assert_ptr_equal(memchr(out, '\n', n), out + n - 1);
    json_error_t err;
    json_t *j = json_loadb(out, n, 0, &err);
    assert_non_null(j);
    const char *p = json_string_value(json_object_get(j, "path"));
    assert_non_null(p);
    /* each byte as itself or U+00XX */
    assert_string_equal(p, "/x y\"z\\\n\r\x01\xc3\xbf\xc3\x83\xc2\xa9");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "access");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "request");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "target")), "api#1");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "client_port")), 51234);
    assert_true(json_real_value(json_object_get(j, "duration_ms")) == 12.345);
    json_decref(j);
}

/* The longest record of the worst bytes still fits a line, whole. */
static void test_longest_record_fits(void **state)
{
    (void)state;
    char path[MS_ALOG_PATH_MAX];
    memset(path, 0x01, sizeof path);
    for (int format = MS_ACCESS_LOG_TEXT; format <= MS_ACCESS_LOG_JSON; format++) {
        ms_alog_rec r;
        fill(&r, format, path, sizeof path);
        r.path_cut = true;
        memset(r.reqid, '"', sizeof r.reqid);
        r.reqid_len = sizeof r.reqid;
        memset(r.target, '"', sizeof r.target);
        r.target_len = sizeof r.target;
        memset(r.peer, 0x02, sizeof r.peer);
        r.peer_len = sizeof r.peer;
        memset(r.bind, 0x03, sizeof r.bind);
        r.bind_len = sizeof r.bind;
        r.method = "PROPPATCH";
        r.upstream_us = INT64_MAX;
        r.bytes = INT64_MAX; /* what a JSON reader takes as an integer */
        r.duration_us = UINT64_MAX;
        char out[MS_ALOG_LINE_MAX];
        size_t n = ms_alog_format(&r, out, sizeof out);
        assert_true(n < sizeof out);
        assert_int_equal(out[n - 1], '\n');
        if (format == MS_ACCESS_LOG_TEXT)
            assert_memory_equal(out + n - 5, "\\x22\n", 5); /* the last field whole */
        if (format == MS_ACCESS_LOG_JSON) {
            json_error_t err;
            json_t *j = json_loadb(out, n, 0, &err);
            assert_non_null(j); /* not cut */
            assert_true(json_is_true(json_object_get(j, "path_cut")));
            json_decref(j);
        }
    }
}

static void test_ring_full_drops_and_counts(void **state)
{
    (void)state;
    char why[256] = "";
    ms_alog *a = ms_alog_new(1, NULL, NULL, false, why, sizeof why); /* no writer: nothing drains */
    assert_non_null(a);
    ms_alog_ring *r = ms_alog_ring_at(a, 0);
    assert_null(ms_alog_ring_at(a, 1));
    for (int i = 0; i < MS_ALOG_RING; i++) {
        ms_alog_rec *rec = ms_alog_reserve(r);
        assert_non_null(rec);
        fill(rec, MS_ACCESS_LOG_TEXT, "/", 1);
        ms_alog_commit(r);
    }
    assert_null(ms_alog_reserve(r));
    assert_null(ms_alog_reserve(r));
    assert_int_equal(ms_alog_dropped(a), 2);
    ms_alog_free(a); /* no output: what the ring holds is dropped too */
}

static void test_writer_writes_lines_in_order(void **state)
{
    (void)state;
    char path[] = "/tmp/ms-alog-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char why[256] = "";
    ms_alog *a = ms_alog_new(2, path, NULL, true, why, sizeof why);
    assert_non_null(a);
    for (int i = 0; i < 3000; i++) {
        ms_alog_ring *r = ms_alog_ring_at(a, (unsigned)i & 1);
        ms_alog_rec *rec;
        while (!(rec = ms_alog_reserve(r)))
            usleep(1000); /* the writer frees records every few ms */
        char p[32];
        int n = snprintf(p, sizeof p, "/%d", i);
        fill(rec, MS_ACCESS_LOG_JSON, p, (size_t)n);
        ms_alog_commit(r);
    }
    ms_alog_free(a);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[MS_ALOG_LINE_MAX];
    int count = 0, last_even = -2, last_odd = -1;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        int k = atoi(json_string_value(json_object_get(j, "path")) + 1);
        int *last = k & 1 ? &last_odd : &last_even;
        assert_true(k > *last); /* each ring in order */
        *last = k;
        json_decref(j);
        count++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(count, 3000); /* the writer waited for: nothing lost */
}

static void test_unopenable_path_fails_with_a_reason(void **state)
{
    (void)state;
    char why[256] = "";
    assert_null(ms_alog_new(1, "/nonexistent-dir/x/access.log", NULL, true, why, sizeof why));
    assert_non_null(strstr(why, "access_log_path \"/nonexistent-dir/x/access.log\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_hostile_path_stays_one_field),
        cmocka_unit_test(test_longest_record_fits),
        cmocka_unit_test(test_ring_full_drops_and_counts),
        cmocka_unit_test(test_writer_writes_lines_in_order),
        cmocka_unit_test(test_unopenable_path_fails_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
