/* cron.c: cron schedule parsing and next-match search (see cron.h).
 * A schedule is five bit sets; the search walks forward in real time
 * (time_t), looking at each candidate through localtime_r, so that DST
 * gaps and repeats come out as they are lived, and jumps a whole hour or
 * to the next wanted minute at a time. */
#include "util/cron.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct cron_field {
    const char *name;
    int lo, hi;                     /* values as written (day of week: 0..7, 7 is Sunday) */
    const char *const *names;       /* names for lo, lo+1, ...; NULL: numbers only */
} cron_field;

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const wday_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

static const cron_field fields[5] = {
    { "minute", 0, 59, NULL },
    { "hour", 0, 23, NULL },
    { "day of month", 1, 31, NULL },
    { "month", 1, 12, month_names },
    { "day of week", 0, 7, wday_names },
};

static const struct {
    const char *name;
    const char *expands;
} shorthands[] = {
    { "@yearly", "0 0 1 1 *" },  { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
    { "@weekly", "0 0 * * 0" },  { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A value of field f at *p: digits, or a name where f has names. */
static bool parse_value(const cron_field *f, const char **p, const char *end, int *out, char *err, size_t errcap)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        int v = 0;
        size_t n = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            if (++n > 4) {
                snprintf(err, errcap, "%s: number too long", f->name);
                return false;
            }
            v = v * 10 + (*s++ - '0');
        }
        if (v < f->lo || v > f->hi) {
            snprintf(err, errcap, "%s: %d is out of range %d-%d", f->name, v, f->lo, f->hi);
            return false;
        }
        *p = s;
        *out = v;
        return true;
    }
    if (f->names && end - s >= 3) {
        for (int i = 0; f->names[i]; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0 && (end - s == 3 || !isalpha((unsigned char)s[3]))) {
                *p = s + 3;
                *out = f->lo + i;
                return true;
            }
        }
    }
    if (s < end && isalpha((unsigned char)*s)) {
        int n = 0;
        while (s + n < end && isalpha((unsigned char)s[n]) && n < 16)
            n++;
        snprintf(err, errcap, "%s: \"%.*s\" is not a %s%s", f->name, n, s,
                 f->names ? "name or number" : "number",
                 f->names == month_names ? " (jan..dec)" : f->names == wday_names ? " (sun..sat)" : "");
    } else if (s < end) {
        snprintf(err, errcap, "%s: unexpected '%c'", f->name, isprint((unsigned char)*s) ? *s : '?');
    } else {
        snprintf(err, errcap, "%s: a value is missing", f->name);
    }
    return false;
}

/* One comma-separated item: "*", "a", "a-b", each with an optional "/step"
 * ("a/step" is a to the end of the range). Sets its bits in *bits. */
static bool parse_item(const cron_field *f, const char *s, const char *end, uint64_t *bits, char *err,
                       size_t errcap)
{
    int a = f->lo, b = f->hi, step = 1;
    bool star = false, range = false;
    if (s == end) {
        snprintf(err, errcap, "%s: an empty item in the list", f->name);
        return false;
    }
    if (*s == '*') {
        star = true;
        s++;
    } else {
        if (!parse_value(f, &s, end, &a, err, errcap))
            return false;
        b = a;
        if (s < end && *s == '-') {
            s++;
            if (!parse_value(f, &s, end, &b, err, errcap))
                return false;
            range = true;
            if (b < a) {
                snprintf(err, errcap, "%s: the range %d-%d goes backwards", f->name, a, b);
                return false;
            }
        }
    }
    if (s < end && *s == '/') {
        s++;
        if (s == end || !isdigit((unsigned char)*s)) {
            snprintf(err, errcap, "%s: a step needs a number after '/'", f->name);
            return false;
        }
        step = 0;
        for (size_t n = 0; s < end && isdigit((unsigned char)*s); n++) {
            if (n >= 4) {
                snprintf(err, errcap, "%s: step too long", f->name);
                return false;
            }
            step = step * 10 + (*s++ - '0');
        }
        if (step == 0 || step > f->hi) {
            snprintf(err, errcap, "%s: the step %d is out of range 1-%d", f->name, step, f->hi);
            return false;
        }
        if (!star && !range)
            b = f->hi; /* "a/step": from a on */
    }
    if (s != end) {
        snprintf(err, errcap, "%s: unexpected '%c'", f->name, isprint((unsigned char)*s) ? *s : '?');
        return false;
    }
    if (star && f->hi == 7)
        b = 6; /* "*" over the weekdays: 0..6, Sunday once */
    for (int v = a; v <= b; v += step)
        *bits |= (uint64_t)1 << (v == 7 && f->hi == 7 ? 0 : v);
    return true;
}

static bool parse_field(const cron_field *f, const char *s, const char *end, uint64_t *bits, char *err,
                        size_t errcap)
{
    *bits = 0;
    while (true) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        if (!parse_item(f, s, item_end, bits, err, errcap))
            return false;
        if (!comma)
            return true;
        s = comma + 1;
    }
}

static int days_in_month_max(int month)
{
    static const int days[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return days[month - 1];
}

/* Some month of the schedule has some day of its days of month. */
static bool some_date(const ms_cron *c)
{
    if (c->mday_any || !c->wday_any)
        return true; /* every day, or any weekday will do */
    for (int m = 1; m <= 12; m++)
        if (c->months & (1u << m))
            for (int d = 1; d <= days_in_month_max(m); d++)
                if (c->mdays & (1u << d))
                    return true;
    return false;
}

bool ms_cron_parse(const char *text, ms_cron *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    size_t len = strnlen(text, MS_CRON_MAX_TEXT + 1);
    if (len > MS_CRON_MAX_TEXT) {
        snprintf(err, errcap, "longer than %d characters", MS_CRON_MAX_TEXT);
        return false;
    }
    const char *s = text, *end = text + len;
    while (s < end && blank(*s))
        s++;
    while (end > s && blank(end[-1]))
        end--;
    if (s < end && *s == '@') {
        for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++) {
            size_t n = strlen(shorthands[i].name);
            if ((size_t)(end - s) == n && strncasecmp(s, shorthands[i].name, n) == 0)
                return ms_cron_parse(shorthands[i].expands, out, err, errcap);
        }
        snprintf(err, errcap, "\"%.*s\" is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, "
                 "@hourly", (int)(end - s > 20 ? 20 : end - s), s);
        return false;
    }
    const char *start[5], *stop[5];
    int n = 0;
    while (s < end) {
        if (n == 5) {
            snprintf(err, errcap, "more than 5 fields (minute hour day-of-month month day-of-week)");
            return false;
        }
        start[n] = s;
        while (s < end && !blank(*s))
            s++;
        stop[n++] = s;
        while (s < end && blank(*s))
            s++;
    }
    if (n != 5) {
        snprintf(err, errcap, "%d field%s where 5 are needed (minute hour day-of-month month day-of-week), "
                 "or one of @hourly, @daily, @weekly, @monthly, @yearly", n, n == 1 ? "" : "s");
        return false;
    }
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        char why[160];
        if (!parse_field(&fields[i], start[i], stop[i], &bits[i], why, sizeof why)) {
            /* "field 2 (hour): 24 is ...": the name closed before its colon */
            const char *colon = strchr(why, ':');
            if (colon)
                snprintf(err, errcap, "field %d (%.*s)%s", i + 1, (int)(colon - why), why, colon);
            else
                snprintf(err, errcap, "field %d (%s", i + 1, why);
            return false;
        }
    }
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)bits[4];
    out->mday_any = *start[2] == '*';
    out->wday_any = *start[4] == '*';
    if (!some_date(out)) {
        snprintf(err, errcap, "no date matches: none of its months has any of its days of month");
        return false;
    }
    return true;
}

static bool day_matches(const ms_cron *c, const struct tm *tm)
{
    bool md = c->mdays & (1u << tm->tm_mday), wd = c->wdays & (1u << tm->tm_wday);
    if (!c->mday_any && !c->wday_any)
        return md || wd;
    return md && wd;
}

bool ms_cron_matches(const ms_cron *c, const struct tm *tm)
{
    return (c->months & (1u << (tm->tm_mon + 1))) && day_matches(c, tm) && (c->hours & (1u << tm->tm_hour)) &&
           (c->minutes & ((uint64_t)1 << tm->tm_min));
}

#define CRON_HORIZON_S ((time_t)10 * 366 * 24 * 3600)

time_t ms_cron_next(const ms_cron *c, time_t after)
{
    if (!c->minutes || !c->hours || !c->mdays || !c->months || !c->wdays)
        return -1;
    if (after < 0 || after > INT64_MAX / 2)
        return -1;
    time_t t = after + 1;
    time_t limit = after + CRON_HORIZON_S;
    while (t <= limit) {
        struct tm tm;
        if (!localtime_r(&t, &tm))
            return -1;
        if (tm.tm_sec != 0) {
            /* to the next whole local minute: where the zone counts leap
             * seconds (right/...), a time_t minute is not a local one, and
             * a step can land on a leap second (:60) */
            t += tm.tm_sec >= 60 ? 1 : 60 - tm.tm_sec;
            continue;
        }
        time_t into_hour = tm.tm_min * 60;
        if (!(c->months & (1u << (tm.tm_mon + 1))) || !day_matches(c, &tm) || !(c->hours & (1u << tm.tm_hour))) {
            t += 3600 - into_hour; /* the next hour: DST moves clocks by whole hours */
            continue;
        }
        int m = tm.tm_min;
        while (m < 60 && !(c->minutes & ((uint64_t)1 << m)))
            m++;
        if (m == 60) {
            t += 3600 - into_hour;
            continue;
        }
        if (m == tm.tm_min)
            return t;
        t += (time_t)(m - tm.tm_min) * 60;
    }
    return -1;
}
