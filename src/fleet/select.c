/* select.c: --only / --except tag filtering over a manifest's ships and bays
 * (see ms_fleet_select in fleet.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet.h"

/* Does the comma-separated list contain one of the entry's tags? */
static bool has_any_tag(const ms_ship *s, const char *list)
{
    for (size_t t = 0; t < s->tags.len; t++) {
        const char *tag = s->tags.items[t];
        size_t tl = strlen(tag);
        const char *p = list;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n == tl && strncmp(p, tag, n) == 0)
                return true;
            p += n;
            if (*p == ',')
                p++;
        }
    }
    return false;
}

/* Every tag named in list must exist somewhere, or the user made a typo. */
static bool tags_known(const ms_manifest *m, const char *list, const char *opt, char *why, size_t why_len)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool found = n == 0;
        for (size_t i = 0; i < m->nships && !found; i++)
            for (size_t t = 0; t < m->ships[i].tags.len && !found; t++)
                found = strlen(m->ships[i].tags.items[t]) == n && strncmp(m->ships[i].tags.items[t], p, n) == 0;
        if (!found) {
            snprintf(why, why_len, "%s: no ship or bay has the tag \"%.*s\"", opt, (int)(n > 64 ? 64 : n), p);
            return false;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return true;
}

bool ms_fleet_select(const ms_manifest *m, const char *only, const char *except, bool *selected, char *why,
                     size_t why_len)
{
    if (only && !tags_known(m, only, "--only", why, why_len))
        return false;
    if (except && !tags_known(m, except, "--except", why, why_len))
        return false;
    for (size_t i = 0; i < m->nships; i++)
        selected[i] = !only || has_any_tag(&m->ships[i], only);
    /* --only: pull in dependencies, transitively */
    if (only) {
        bool changed = true;
        while (changed) {
            changed = false;
            for (size_t i = 0; i < m->nships; i++) {
                if (!selected[i])
                    continue;
                for (size_t d = 0; d < m->ships[i].depends_on.len; d++) {
                    ms_ship *dep = ms_manifest_find_ship(m, m->ships[i].depends_on.items[d]);
                    size_t j = (size_t)(dep - m->ships);
                    if (dep && !selected[j]) {
                        selected[j] = true;
                        changed = true;
                    }
                }
            }
        }
    }
    bool removed_any = false;
    if (except) {
        for (size_t i = 0; i < m->nships; i++) {
            if (selected[i] && has_any_tag(&m->ships[i], except)) {
                selected[i] = false;
                removed_any = true;
            }
        }
    }
    if (removed_any) {
        for (size_t i = 0; i < m->nships; i++) {
            if (!selected[i])
                continue;
            for (size_t d = 0; d < m->ships[i].depends_on.len; d++) {
                ms_ship *dep = ms_manifest_find_ship(m, m->ships[i].depends_on.items[d]);
                if (dep && !selected[dep - m->ships]) {
                    snprintf(why, why_len, "--except removes %s \"%s\", but %s \"%s\" depends on it", 
                             dep->kind == MS_BAY ? "bay" : dep->kind == MS_UPSTREAM ? "upstream" : "ship", dep->name,
                             m->ships[i].kind == MS_BAY ? "bay" : "ship", m->ships[i].name);
                    return false;
                }
            }
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < m->nships; i++)
        n += selected[i];
    if (n == 0 && m->nships > 0) {
        snprintf(why, why_len, "the tag filter leaves nothing to launch");
        return false;
    }
    return true;
}
