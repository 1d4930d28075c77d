/* fuzz_dotenv.c: libFuzzer target for the env_file parser (ms_dotenv_parse
 * in src/util/dotenv.c), which reads files named by the manifest.
 *
 * Role: parse the input as it is (not NUL-terminated: the parser is given a
 * length); every key handed to the callback is a valid name (letters,
 * digits, '_', not starting with a digit) and no value is longer than the
 * input; a failure has a line within the input's lines, or 0 when the
 * callback stopped it (here: after 1000 pairs). Seed corpus:
 * tests/fuzz/corpus/dotenv/. Run with e.g.
 *   fuzz_dotenv -max_total_time=60 -max_len=4096 tests/fuzz/corpus/dotenv
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/dotenv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

typedef struct seen {
    size_t size, pairs;
} seen;

static bool on_pair(void *ud, const char *key, const char *value)
{
    seen *s = ud;
    check(key[0] != '\0' && !(key[0] >= '0' && key[0] <= '9'));
    for (const char *k = key; *k; k++)
        check(*k == '_' || (*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9'));
    check(strlen(value) <= s->size);
    return ++s->pairs < 1000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seen s = { size, 0 };
    int line = -1;
    char why[128];
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (!ms_dotenv_parse((const char *)data, size, on_pair, &s, &line, why, sizeof why)) {
        check(line >= 0 && (size_t)line <= lines);
        check(line > 0 || s.pairs == 1000);
        check(why[0] != '\0');
    }
    return 0;
}
