/* idmap.h: a map from non-zero 32-bit ids to pointers (open addressing with
 * linear probing and backward-shift deletion; grows at half load). Used by
 * data-plane workers to find a WebSocket client by its docking conn_id. */
#ifndef MS_UTIL_IDMAP_H
#define MS_UTIL_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_idmap {
    uint32_t *keys;      /* 0: empty slot */
    void **vals;
    size_t cap;          /* power of two, or 0 */
    size_t len;
} ms_idmap;

void ms_idmap_free(ms_idmap *m);
void *ms_idmap_get(const ms_idmap *m, uint32_t id);
/* false: out of memory (the map is unchanged); an existing id is replaced. */
bool ms_idmap_put(ms_idmap *m, uint32_t id, void *val);
void ms_idmap_del(ms_idmap *m, uint32_t id);

#endif
