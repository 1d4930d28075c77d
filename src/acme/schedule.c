/* schedule.c: the ACME client's clock arithmetic (engine.h): renewal,
 * backoff and poll pauses, socket-free for the unit tests. */
#include <openssl/rand.h>

#include "acme/engine.h"

double ms_acme_random01(void)
{
    uint32_t r;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        return 0.5;
    return (double)r / 4294967296.0;
}

time_t ms_acme_renew_at(time_t not_before, time_t not_after, double jitter01)
{
    if (not_after <= not_before)
        return not_before;
    if (jitter01 < 0 || jitter01 >= 1)
        jitter01 = 0;
    double life = (double)(not_after - not_before);
    time_t due = not_before + (time_t)(life * 2 / 3 - jitter01 * life / 10);
    if (due > not_after - 60)
        due = not_after - 60;
    if (due < not_before + (not_after - not_before) / 2) /* too short for a minute early: half way */
        due = not_before + (not_after - not_before) / 2;
    return due;
}

uint64_t ms_acme_backoff_ms(uint64_t backoff_ms, uint64_t max_backoff_ms, unsigned failures, double jitter01)
{
    if (max_backoff_ms < backoff_ms)
        max_backoff_ms = backoff_ms;
    if (jitter01 < 0 || jitter01 >= 1)
        jitter01 = 0;
    uint64_t d = backoff_ms;
    for (unsigned i = 1; i < failures && d < max_backoff_ms; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    if (d > max_backoff_ms)
        d = max_backoff_ms;
    d -= (uint64_t)((double)(d / 10) * jitter01);
    return d < 1000 ? 1000 : d;
}

uint64_t ms_acme_poll_ms(unsigned attempt, long retry_after_s)
{
    if (retry_after_s >= 0) {
        if (retry_after_s < 1)
            retry_after_s = 1;
        if (retry_after_s > MS_ACME_RETRY_AFTER_MAX_S)
            retry_after_s = MS_ACME_RETRY_AFTER_MAX_S;
        return (uint64_t)retry_after_s * 1000;
    }
    uint64_t d = 1000;
    for (unsigned i = 0; i < attempt && d < MS_ACME_POLL_CAP_MS; i++)
        d *= 2;
    return d > MS_ACME_POLL_CAP_MS ? MS_ACME_POLL_CAP_MS : d;
}
