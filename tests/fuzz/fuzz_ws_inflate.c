/* fuzz_ws_inflate.c: libFuzzer target for a compressed WebSocket message
 * (ms_pmd_inflate in src/http/wsdeflate.c): the payload of any RSV1 frame
 * a client sends on a route with ws_compression.
 *
 * Role: the first two bytes are the limit (ws_max_message_size, here
 * 0..65535), the rest the compressed payload in an exactly sized heap
 * copy. Every result is one of the four codes; OK gives at most limit
 * bytes, which deflated again (when that is smaller) inflate back to the
 * same bytes; TOO_BIG, BAD_DATA leave no output. One ms_pmd serves every
 * input, as a worker's does, so state left over from a bad message would
 * show. Seed corpus: tests/fuzz/corpus/ws_inflate/. Run with e.g.
 *   fuzz_ws_inflate -max_total_time=60 tests/fuzz/corpus/ws_inflate
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/wsdeflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static ms_pmd *pmd; /* the fuzzer's process is one worker */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    if (!pmd && !(pmd = ms_pmd_new()))
        return 0;
    size_t limit = (size_t)data[0] << 8 | data[1];
    size_t n = size - 2;
    uint8_t *in = malloc(n ? n : 1);
    if (!in)
        return 0;
    if (n)
        memcpy(in, data + 2, n);
    uint8_t *out = NULL;
    size_t out_len = 0;
    ms_pmd_rc rc = ms_pmd_inflate(pmd, in, n, limit, &out, &out_len);
    check(rc == MS_PMD_OK || rc == MS_PMD_TOO_BIG || rc == MS_PMD_BAD_DATA || rc == MS_PMD_NOMEM);
    if (rc == MS_PMD_OK) {
        check(out_len <= limit);
        uint8_t *z = NULL, *back = NULL;
        size_t zl = 0, bl = 0;
        if (ms_pmd_deflate(pmd, 9 + data[0] % 7, out, out_len, &z, &zl) == MS_PMD_OK) {
            check(zl < out_len);
            check(ms_pmd_inflate(pmd, z, zl, limit, &back, &bl) == MS_PMD_OK);
            check(bl == out_len && memcmp(back, out, bl) == 0);
            free(back);
            free(z);
        }
        free(out);
    } else {
        check(out == NULL);
    }
    free(in);
    return 0;
}
