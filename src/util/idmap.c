/* idmap.c: id -> pointer map (see idmap.h). */
#include "util/idmap.h"

#include <stdlib.h>

static size_t slot_of(uint32_t id, size_t cap)
{
    return (size_t)((id * 2654435761u) & (uint32_t)(cap - 1));
}

void ms_idmap_free(ms_idmap *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->len = 0;
}

void *ms_idmap_get(const ms_idmap *m, uint32_t id)
{
    if (!m->cap || id == 0)
        return NULL;
    for (size_t i = slot_of(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == id)
            return m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

static void insert(uint32_t *keys, void **vals, size_t cap, uint32_t id, void *val)
{
    size_t i = slot_of(id, cap);
    while (keys[i] != 0 && keys[i] != id)
        i = (i + 1) & (cap - 1);
    keys[i] = id;
    vals[i] = val;
}

bool ms_idmap_put(ms_idmap *m, uint32_t id, void *val)
{
    if (id == 0)
        return false;
    if ((m->len + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 16;
        uint32_t *nk = calloc(ncap, sizeof *nk);
        void **nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return false;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                insert(nk, nv, ncap, m->keys[i], m->vals[i]);
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    if (!ms_idmap_get(m, id))
        m->len++;
    insert(m->keys, m->vals, m->cap, id, val);
    return true;
}

void ms_idmap_del(ms_idmap *m, uint32_t id)
{
    if (!m->cap || id == 0)
        return;
    size_t mask = m->cap - 1, i = slot_of(id, m->cap);
    while (m->keys[i] != id) {
        if (m->keys[i] == 0)
            return;
        i = (i + 1) & mask;
    }
    m->len--;
    /* backward shift: move later entries of the run into the hole */
    for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(m->keys[j], m->cap);
        /* entry j may fill hole i if its home is not in (i, j] cyclically */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = NULL;
}
