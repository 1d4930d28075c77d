/* cron.h: cron schedules ("0 9 * * mon-fri"): the five fields minute, hour,
 * day of month, month and day of week, each a list of values, ranges and
 * steps, month and weekday names (jan, mon), and the @hourly/@daily/...
 * shorthands; and the next local time a schedule matches. Pure functions,
 * no allocation: the parser sees manifest text and is fuzzed. */
#ifndef MS_CRON_H
#define MS_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The longest schedule text accepted. */
#define MS_CRON_MAX_TEXT 256

typedef struct ms_cron {
    uint64_t minutes;  /* bit m: minute m (0..59) */
    uint32_t hours;    /* bit h: hour h (0..23) */
    uint32_t mdays;    /* bit d: day of month d (1..31) */
    uint16_t months;   /* bit m: month m (1..12) */
    uint8_t wdays;     /* bit d: day of week d (0..6, Sunday 0) */
    /* A day field written as "*" (or "*" with a step) does not restrict:
     * when both day fields restrict, a day matches if either does (as
     * in Vixie cron); otherwise both must. */
    bool mday_any, wday_any;
} ms_cron;

/* Parse text into *out. False with a message in err ("field 2 (hour): 24
 * is out of range 0-23") for anything else, including a schedule that no
 * date can match ("30 2 31 feb *"). */
bool ms_cron_parse(const char *text, ms_cron *out, char *err, size_t errcap);

/* Whether the broken-down local time tm (its minute, hour, mday, mon,
 * wday) matches c. */
bool ms_cron_matches(const ms_cron *c, const struct tm *tm);

/* The first whole minute strictly after `after` whose local time (TZ as
 * the C library sees it) matches c, or -1 when none comes within ten
 * years. A minute that local time skips (a DST gap) never matches; one it
 * repeats matches once for each time it is lived. */
time_t ms_cron_next(const ms_cron *c, time_t after);

#endif
