/* fuzz_uplink_url.c: libFuzzer target for the uplink URL parser
 * (ms_uplink_url_parse in src/manifest/address.c), which sees text from the
 * manifest and, after $VAR expansion, from the environment.
 *
 * Role: NUL-terminate a copy of the input, parse it; on success check the
 * invariants the uplink checker relies on (canonical scheme, non-empty host
 * without '/', '@' or brackets, port set, http(s) path starting with '/'
 * and free of '#'), on failure check the reason is filled in; free the
 * outputs either way. Seed corpus: tests/fuzz/corpus/uplink/. Run with e.g.
 *   fuzz_uplink_url -max_total_time=60 -max_len=512 tests/fuzz/corpus/uplink
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static const char *const canonical[] = { "postgres", "mysql", "redis", "memgraph",
                                         "neo4j", "http", "https", "tcp", NULL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    ms_uplink u;
    memset(&u, 0, sizeof u);
    char why[200];
    why[0] = '\0';
    if (ms_uplink_url_parse(text, &u, why, sizeof why)) {
        check(u.scheme && u.host && u.path);
        bool known = false;
        for (size_t i = 0; canonical[i]; i++)
            known |= strcmp(u.scheme, canonical[i]) == 0;
        check(known);
        check(u.host[0] != '\0' && strlen(u.host) <= 253);
        check(!strpbrk(u.host, "/@[]?#"));
        check(u.port != 0);
        check(u.path[0] == '/' && !strchr(u.path, '#'));
        /* parsing again into the same struct frees the previous outputs */
        check(ms_uplink_url_parse(text, &u, why, sizeof why));
    } else {
        check(why[0] != '\0' && memchr(why, '\0', sizeof why) != NULL);
    }
    free(u.host);
    free(u.scheme);
    free(u.path);
    free(text);
    return 0;
}
