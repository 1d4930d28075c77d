/* fuzz_ws_extensions.c: libFuzzer target for the Sec-WebSocket-Extensions
 * offer (ms_pmd_negotiate in src/http/wsdeflate.c), which sees a client's
 * header value as it came.
 *
 * Role: the input is one header value, in an exactly sized heap copy (ASan
 * sees a read past it). Accepted offers: the window is 9..15, the answer
 * fits in 128 bytes, starts with "permessage-deflate", always carries
 * client_no_context_takeover, and is itself an offer that negotiates to the
 * same agreement (what we answer is what we would accept). Seed corpus:
 * tests/fuzz/corpus/ws_extensions/. Run with e.g.
 *   fuzz_ws_extensions -max_total_time=60 tests/fuzz/corpus/ws_extensions
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = malloc(size ? size : 1);
    if (!v)
        return 0;
    if (size)
        memcpy(v, data, size);
    ms_pmd_agreed a;
    if (ms_pmd_negotiate(v, size, &a)) {
        check(a.server_bits >= 9 && a.server_bits <= 15);
        check(a.echo_server_bits || a.server_bits == 15);
        char ans[MS_PMD_ANSWER_MAX];
        size_t n = ms_pmd_answer(&a, ans, sizeof ans);
        check(n > 0 && n < sizeof ans);
        check(strncmp(ans, "permessage-deflate", 18) == 0);
        check(strstr(ans, "client_no_context_takeover") != NULL);
        ms_pmd_agreed b;
        check(ms_pmd_negotiate(ans, n, &b));
        check(b.server_bits == a.server_bits && b.echo_server_bits == a.echo_server_bits &&
              b.echo_server_nct == a.echo_server_nct);
    }
    free(v);
    return 0;
}
