/* fuzz_cron.c: libFuzzer target for cron schedules (ms_cron_parse and
 * ms_cron_next in src/util/cron.c), which read the manifest's `schedule`.
 *
 * Role: the input is schedule text (NUL-terminated copy, exactly sized).
 * Refused: a non-empty message. Accepted: every field has a value, the
 * bits stay in their ranges, and the next match (in UTC, from a fixed
 * time) is a whole minute after it that ms_cron_matches agrees with, as
 * does the one after that, unless none comes within ten years. Seed corpus: tests/fuzz/corpus/cron/. Run
 * with e.g.
 *   fuzz_cron -max_total_time=60 -max_len=300 tests/fuzz/corpus/cron
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int tz_set;
    if (!tz_set) {
        setenv("TZ", "UTC0", 1);
        tzset();
        tz_set = 1;
    }
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    ms_cron c;
    char err[200];
    err[0] = '\0';
    if (!ms_cron_parse(text, &c, err, sizeof err)) {
        check(err[0] != '\0');
        free(text);
        return 0;
    }
    check(c.minutes && c.minutes < (1ull << 60));
    check(c.hours && c.hours < (1u << 24));
    check(c.mdays && !(c.mdays & 1));
    check(c.months && !(c.months & 1) && c.months < (1u << 13));
    check(c.wdays && c.wdays < (1u << 7));
    time_t from = 1767225600; /* 2026-01-01 00:00 UTC */
    for (int i = 0; i < 2; i++) {
        time_t next = ms_cron_next(&c, from);
        if (next == -1)
            break; /* no match within the search's ten years ("19 1 sun": Jan 19 on a Sunday) */
        check(next > from && next % 60 == 0);
        struct tm tm;
        check(gmtime_r(&next, &tm) != NULL);
        check(ms_cron_matches(&c, &tm));
        from = next;
    }
    free(text);
    return 0;
}
