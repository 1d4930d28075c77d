/* test_cron.c: cron schedules (util/cron.c): each field's syntax (lists,
 * ranges, steps, names, 7 as Sunday), the shorthands, the errors a
 * manifest author sees, the day-of-month/day-of-week rule, and the next
 * match in local time, across month ends, leap years and both DST
 * changes of Europe/Berlin and America/New_York. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/cron.h"

static ms_cron parse_ok(const char *text)
{
    ms_cron c;
    char err[200] = "";
    if (!ms_cron_parse(text, &c, err, sizeof err))
        fail_msg("\"%s\": %s", text, err);
    return c;
}

static void parse_bad(const char *text, const char *want)
{
    ms_cron c;
    char err[200] = "";
    if (ms_cron_parse(text, &c, err, sizeof err))
        fail_msg("\"%s\" was accepted", text);
    if (!strstr(err, want))
        fail_msg("\"%s\": error \"%s\" does not say \"%s\"", text, err, want);
}

static void use_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* "YYYY-MM-DD HH:MM" in the current TZ (the first of two, at a repeat). */
static time_t local(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    assert_non_null(strptime(text, "%Y-%m-%d %H:%M", &tm));
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    assert_true(t != (time_t)-1);
    return t;
}

static void assert_next(const char *sched, time_t after, time_t want)
{
    ms_cron c = parse_ok(sched);
    time_t got = ms_cron_next(&c, after);
    if (got != want) {
        char a[64], b[64];
        struct tm tm;
        strftime(a, sizeof a, "%F %T %Z", localtime_r(&got, &tm));
        strftime(b, sizeof b, "%F %T %Z", localtime_r(&want, &tm));
        fail_msg("%s after %lld: got %s, want %s", sched, (long long)after, got < 0 ? "none" : a, b);
    }
}

static void test_fields(void **state)
{
    (void)state;
    ms_cron c = parse_ok("*/15 9-17 * * mon-fri");
    assert_true(c.minutes == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hours, 0x3fe00);
    assert_int_equal(c.mdays, 0xfffffffe);
    assert_int_equal(c.months, 0x1ffe);
    assert_int_equal(c.wdays, 0x3e);
    assert_true(c.mday_any);
    assert_false(c.wday_any);

    c = parse_ok("0,30 */6 1,15 JAN,jul Sun");
    assert_true(c.minutes == ((1ull << 0) | (1ull << 30)));
    assert_int_equal(c.hours, (1 << 0) | (1 << 6) | (1 << 12) | (1 << 18));
    assert_int_equal(c.mdays, (1 << 1) | (1 << 15));
    assert_int_equal(c.months, (1 << 1) | (1 << 7));
    assert_int_equal(c.wdays, 1);
    assert_false(c.mday_any);

    /* 7 is Sunday too; a range over it; "a/step" runs to the end */
    assert_int_equal(parse_ok("0 0 * * 7").wdays, 1);
    assert_int_equal(parse_ok("0 0 * * 5-7").wdays, (1 << 5) | (1 << 6) | 1);
    assert_int_equal(parse_ok("0 0 * * *").wdays, 0x7f);
    assert_true(parse_ok("10/20 * * * *").minutes == ((1ull << 10) | (1ull << 30) | (1ull << 50)));
    assert_int_equal(parse_ok("0 1-10/3 * * *").hours, (1 << 1) | (1 << 4) | (1 << 7) | (1 << 10));
    assert_true(parse_ok("  5\t4  * *   *  ").minutes == 1ull << 5);
    assert_true(parse_ok("0-59 * * * *").minutes == (1ull << 60) - 1);
    /* a stepped star still reads as "any day" for the day rule */
    assert_true(parse_ok("0 0 */2 * 1").mday_any);
}

static void test_shorthands(void **state)
{
    (void)state;
    const char *pairs[][2] = {
        { "@yearly", "0 0 1 1 *" },  { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
        { "@weekly", "0 0 * * 0" },  { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
        { "@hourly", "0 * * * *" },  { " @DAILY ", "0 0 * * *" },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        ms_cron a = parse_ok(pairs[i][0]), b = parse_ok(pairs[i][1]);
        assert_memory_equal(&a, &b, sizeof a);
    }
}

static void test_errors(void **state)
{
    (void)state;
    parse_bad("", "0 fields where 5 are needed");
    parse_bad("* * * *", "4 fields where 5 are needed");
    parse_bad("* * * * * *", "more than 5 fields");
    parse_bad("60 * * * *", "field 1 (minute): 60 is out of range 0-59");
    parse_bad("0 24 * * *", "field 2 (hour): 24 is out of range 0-23");
    parse_bad("0 0 0 * *", "field 3 (day of month): 0 is out of range 1-31");
    parse_bad("0 0 32 * *", "32 is out of range 1-31");
    parse_bad("0 0 * 13 *", "field 4 (month): 13 is out of range 1-12");
    parse_bad("0 0 * * 8", "field 5 (day of week): 8 is out of range 0-7");
    parse_bad("0 0 * foo *", "\"foo\" is not a name or number (jan..dec)");
    parse_bad("0 0 * * monday", "\"monday\" is not a name or number (sun..sat)");
    parse_bad("0 0 * jan *x", "unexpected 'x'");
    parse_bad("mon * * * *", "field 1 (minute): \"mon\" is not a number");
    parse_bad("5-1 * * * *", "the range 5-1 goes backwards");
    parse_bad("*/0 * * * *", "the step 0 is out of range 1-59");
    parse_bad("*/ * * * *", "a step needs a number");
    parse_bad("1,,2 * * * *", "an empty item");
    parse_bad("1, * * * *", "an empty item");
    parse_bad("- * * * *", "unexpected '-'");
    parse_bad("1- * * * *", "a value is missing");
    parse_bad("99999 * * * *", "number too long");
    parse_bad("@reboot", "is not one of @yearly");
    parse_bad("@every 5m", "is not one of");
    parse_bad("0 0 30 feb *", "no date matches");
    parse_bad("0 0 31 apr,jun,sep,nov *", "no date matches");
    char longtext[MS_CRON_MAX_TEXT + 10];
    memset(longtext, ' ', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    parse_bad(longtext, "longer than");
    /* Feb 29 exists (in leap years) */
    parse_ok("0 0 29 feb *");
}

static void test_next_basic(void **state)
{
    (void)state;
    use_tz("UTC0");
    time_t t = local("2026-03-10 10:07");
    assert_next("*/5 * * * *", t, local("2026-03-10 10:10"));
    assert_next("*/5 * * * *", t + 59, local("2026-03-10 10:10"));
    assert_next("* * * * *", t, t + 60);            /* strictly after */
    assert_next("7 10 * * *", t, local("2026-03-11 10:07"));
    assert_next("@hourly", t, local("2026-03-10 11:00"));
    assert_next("@daily", t, local("2026-03-11 00:00"));
    assert_next("@monthly", t, local("2026-04-01 00:00"));
    assert_next("@yearly", t, local("2027-01-01 00:00"));
    assert_next("30 8 * * mon", t, local("2026-03-16 08:30")); /* 2026-03-10 is a Tuesday */
    assert_next("0 0 31 * *", local("2026-04-01 00:00"), local("2026-05-31 00:00"));
    assert_next("0 12 29 2 *", t, local("2028-02-29 12:00"));
    /* both day fields restrict: either matches (the 13th, or a Friday) */
    assert_next("0 0 13 * fri", local("2026-03-10 00:00"), local("2026-03-13 00:00"));
    assert_next("0 0 13 * fri", local("2026-03-13 00:00"), local("2026-03-20 00:00"));
    assert_next("0 0 1 * mon", local("2026-03-10 00:00"), local("2026-03-16 00:00"));
    /* one restricts: only it counts */
    assert_next("0 0 * * fri", local("2026-03-10 00:00"), local("2026-03-13 00:00"));
    assert_next("0 0 13 * *", local("2026-03-14 00:00"), local("2026-04-13 00:00"));
    /* a stepped star counts as "*" here (as in Vixie cron): both must match */
    assert_next("0 0 */10 * fri", local("2026-03-10 00:00"), local("2026-05-01 00:00"));
    /* year end */
    assert_next("59 23 31 12 *", local("2026-12-31 23:59"), local("2027-12-31 23:59"));
}

static void test_next_local_time(void **state)
{
    (void)state;
    /* 2 a.m. is the time: a schedule follows the wall clock of TZ */
    use_tz("Asia/Tokyo");
    time_t tokyo = ms_cron_next(&(ms_cron){ 0 }, 0);
    assert_int_equal(tokyo, -1); /* an empty schedule never matches */
    ms_cron c = parse_ok("0 2 * * *");
    time_t t = ms_cron_next(&c, 1767225600); /* 2026-01-01 00:00 UTC = 09:00 in Tokyo */
    assert_int_equal(t, 1767225600 + 17 * 3600);
    use_tz("UTC0");
    assert_int_equal(ms_cron_next(&c, 1767225600), 1767225600 + 2 * 3600);

    /* spring forward: 02:00-02:59 does not exist on 2026-03-29 in Berlin */
    use_tz("Europe/Berlin");
    assert_next("30 2 * * *", local("2026-03-28 12:00"), local("2026-03-30 02:30"));
    assert_next("*/30 * * * *", local("2026-03-29 01:45"), local("2026-03-29 01:45") + 15 * 60);
    assert_next("0 3 * * *", local("2026-03-29 01:59"), local("2026-03-29 01:59") + 60);
    /* fall back: 02:00-02:59 happens twice on 2026-10-25; each is a match */
    time_t first = local("2026-10-25 01:59") + 60;
    assert_next("30 2 * * *", local("2026-10-24 12:00"), first + 30 * 60);
    assert_next("30 2 * * *", first + 30 * 60, first + 90 * 60);
    assert_next("30 2 * * *", first + 90 * 60, local("2026-10-26 02:30"));

    use_tz("America/New_York");
    assert_next("0 * * * *", local("2026-03-08 01:30"), local("2026-03-08 01:30") + 30 * 60); /* 03:00 EDT */
    use_tz("UTC0");
}

static void test_next_bounds(void **state)
{
    (void)state;
    use_tz("UTC0");
    ms_cron c = parse_ok("* * * * *");
    assert_int_equal(ms_cron_next(&c, -5), -1);
    /* every minute in a row */
    time_t t = local("2026-06-30 23:58");
    for (int i = 1; i <= 5; i++) {
        time_t n = ms_cron_next(&c, t);
        assert_int_equal(n, t + 60);
        t = n;
    }
    /* a sparse schedule is found, not looped on */
    assert_next("0 0 29 2 mon", local("2026-01-01 00:00"), local("2026-02-02 00:00"));
    c = parse_ok("0 0 29 2 *");
    struct tm tm;
    time_t n = ms_cron_next(&c, local("2028-03-01 00:00"));
    assert_non_null(gmtime_r(&n, &tm));
    assert_int_equal(tm.tm_year + 1900, 2032);
}

/* A zone that counts leap seconds: each match once, a whole local minute,
 * and a search across the leap second at the end of 2016 that ends. */
static void test_next_leap_seconds(void **state)
{
    (void)state;
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) != 0)
        skip();
    use_tz("right/UTC");
    alarm(10); /* a search that loops on the leap second fails here */
    time_t three = local("2016-12-31 03:00");
    assert_next("0 3 * * *", three - 1, three);
    assert_next("0 3 * * *", three, local("2017-01-01 03:00"));
    assert_next("0 12 * * *", local("2016-12-31 13:00"), local("2017-01-01 12:00"));
    assert_next("* * * * *", local("2016-12-31 23:59"), local("2017-01-01 00:00"));
    ms_cron c = parse_ok("*/7 * * * *");
    time_t t = local("2016-12-31 22:00");
    for (int i = 0; i < 40; i++) {
        time_t n = ms_cron_next(&c, t);
        struct tm tm;
        assert_true(n > t);
        assert_non_null(localtime_r(&n, &tm));
        assert_int_equal(tm.tm_sec, 0);
        assert_int_equal(tm.tm_min % 7, 0);
        t = n;
    }
    alarm(0);
    use_tz("UTC0");
}

/* A message longer than the caller's buffer is cut there, never past it. */
static void test_error_in_a_small_buffer(void **state)
{
    (void)state;
    for (size_t cap = 1; cap < 60; cap++) {
        char buf[80];
        memset(buf, 'Z', sizeof buf);
        ms_cron c;
        assert_false(ms_cron_parse("*/5 25 * * *", &c, buf, cap));
        assert_int_equal(strlen(buf), cap - 1 < 39 ? cap - 1 : 39);
        for (size_t i = cap; i < sizeof buf; i++)
            assert_int_equal(buf[i], 'Z');
    }
    char err[200];
    ms_cron c;
    assert_false(ms_cron_parse("*/5 25 * * *", &c, err, sizeof err));
    assert_string_equal(err, "field 2 (hour): 25 is out of range 0-23");
}

static void test_matches(void **state)
{
    (void)state;
    ms_cron c = parse_ok("15 14 1 * *");
    struct tm tm = { .tm_min = 15, .tm_hour = 14, .tm_mday = 1, .tm_mon = 5, .tm_wday = 3 };
    assert_true(ms_cron_matches(&c, &tm));
    tm.tm_min = 16;
    assert_false(ms_cron_matches(&c, &tm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),         cmocka_unit_test(test_shorthands),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_next_basic),
        cmocka_unit_test(test_next_local_time), cmocka_unit_test(test_next_bounds),
        cmocka_unit_test(test_matches),        cmocka_unit_test(test_next_leap_seconds),
        cmocka_unit_test(test_error_in_a_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
