/* fuzz_toml.c: libFuzzer target for the TOML parser (src/manifest/toml.c).
 *
 * Role: feed arbitrary bytes to toml_parse(); on success walk the whole
 * tree through the public lookup API (checking the invariants the manifest
 * layer relies on: positions are 1-based, strings are NUL-terminated at
 * their length, every key is found again by toml_get_kv when it has no
 * embedded NUL) and free it; on failure check the error is filled in.
 * Seed corpus: tests/fuzz/corpus/toml/. Run with e.g.
 *   fuzz_toml -max_total_time=60 -max_len=4096 tests/fuzz/corpus/toml
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static size_t walk(const toml_node *n, int depth)
{
    size_t count = 1;
    check(n != NULL);
    check(n->line >= 1 && n->col >= 1);
    check(depth <= 2 * TOML_MAX_DEPTH + 2);
    check(toml_type_name(n->type) != NULL);
    switch (n->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < toml_len(n); i++) {
            const toml_kv *kv = toml_kv_at(n, i);
            check(kv && kv->key && kv->key[kv->key_len] == '\0');
            check(kv->line >= 1 && kv->col >= 1);
            if (strlen(kv->key) == kv->key_len && toml_len(n) < 64)
                check(toml_get_kv(n, kv->key) == kv);
            count += walk(kv->value, depth + 1);
        }
        check(toml_kv_at(n, toml_len(n)) == NULL);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < toml_len(n); i++)
            count += walk(toml_at(n, i), depth + 1);
        check(toml_at(n, toml_len(n)) == NULL);
        break;
    case TOML_STRING:
        check(n->u.str.ptr && n->u.str.ptr[n->u.str.len] == '\0');
        break;
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        check(n->u.dt.hour >= 0 && n->u.dt.hour < 24 && n->u.dt.second <= 60);
        check(n->u.dt.nanosecond >= 0 && n->u.dt.nanosecond < 1000000000);
        break;
    default:
        break;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    toml_error err;
    toml_node *root = toml_parse((const char *)data, size, &err);
    if (!root) {
        check(err.msg[0] != '\0');
        check(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        return 0;
    }
    check(root->type == TOML_TABLE);
    walk(root, 0);
    toml_free(root);
    return 0;
}
