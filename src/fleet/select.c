/* select.c: --only / --except filtering by tag or group over a manifest's
 * ships and bays (see ms_fleet_select in fleet.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet.h"

/* Does the word (n bytes) name one of the entry's tags, or its group (the
 * fleet.<group> of a ship, a bay's type)? */
static bool word_matches(const ms_ship *s, const char *w, size_t n)
{
    if (s->group && strlen(s->group) == n && strncmp(s->group, w, n) == 0)
        return true;
    for (size_t t = 0; t < s->tags.len; t++)
        if (strlen(s->tags.items[t]) == n && strncmp(s->tags.items[t], w, n) == 0)
            return true;
    return false;
}

/* Does the comma-separated list name one of the entry's tags or its group? */
static bool has_any_tag(const ms_ship *s, const char *list)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && word_matches(s, p, n))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

/* Append name to a ", "-separated list in buf unless it is there already. */
static void add_known(char *buf, size_t cap, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = buf; *p;) {
        const char *e = strstr(p, ", ");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == nl && strncmp(p, name, n) == 0)
            return;
        p += n;
        if (*p)
            p += 2;
    }
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", name);
}

/* Every word named in list must be a tag or a group somewhere, or the user
 * made a typo: the message lists the tags and groups there are. */
static bool tags_known(const ms_manifest *m, const char *list, const char *opt, char *why, size_t why_len)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool found = n == 0;
        for (size_t i = 0; i < m->nships && !found; i++)
            found = word_matches(&m->ships[i], p, n);
        if (!found) {
            char tags[512] = "", groups[512] = "";
            for (size_t i = 0; i < m->nships; i++) {
                for (size_t t = 0; t < m->ships[i].tags.len; t++)
                    add_known(tags, sizeof tags, m->ships[i].tags.items[t]);
                if (m->ships[i].group)
                    add_known(groups, sizeof groups, m->ships[i].group);
            }
            snprintf(why, why_len, "%s: no ship or bay has the tag or group \"%.*s\" (tags: %s; groups: %s)", opt,
                     (int)(n > 64 ? 64 : n), p, tags[0] ? tags : "none", groups[0] ? groups : "none");
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
                    if (dep && !selected[dep - m->ships]) {
                        selected[dep - m->ships] = true;
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
        snprintf(why, why_len, "the tag and group filter leaves nothing to launch");
        return false;
    }
    return true;
}
