/* diff.h: what changed between two loaded manifests, key by key, and what a
 * reload must therefore do: restart the entries whose definition changed,
 * stop the removed ones, start the new ones, leave the rest alone, swap what
 * the data plane reads on every worker, and name the keys that only a
 * restart of Mothership applies. Entries are matched by name (a rename is a
 * removal and an addition); their order in the file does not matter.
 *
 * Equality is per key of the typed model: every key of a ship or bay except
 * "routes" (which the workers swap) and the keys read while it runs
 * (balance, drain_timeout, max_queue, file_roots: swapped too) restarts the
 * entry, and so does a change of its effective environment ([mothership] env
 * under the entry's own env) or of a [mothership] timeout it inherits. A
 * ship with instances is one entry per instance ("web#1"): a change of its
 * definition changes each of them, a change of `instances` only adds or
 * removes entries (a depends_on naming the ship stays the same). An
 * upstream has no process of ours: any change of it is swapped. A
 * dependency that restarts does not restart its dependents. File contents (payload modules, certificates)
 * are not read here: only the paths and settings are compared.
 *
 * Pure and socket-free: it reads the two models and allocates its result. */
#ifndef MS_MANIFEST_DIFF_H
#define MS_MANIFEST_DIFF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "manifest/manifest.h"

typedef struct ms_manifest_diff {
    size_t nnew;                 /* = new->nships */
    size_t *old_index;           /* per new entry: index in old of the same name, or SIZE_MAX */
    bool *changed;               /* per new entry: its definition differs (restart) */
    char **why;                  /* per new entry that changed: what differs, e.g. "command", "env.PORT",
                                    "kind", several joined by ", "; NULL for the others */
    size_t nold;                 /* = old->nships */
    bool *removed;               /* per old entry */
    bool dataplane;              /* anything the data plane reads differs: binds, routes, static dirs,
                                    compression, [mothership.http], payloads, TLS settings, or an entry
                                    with routes restarts, starts or stops */
    char **swapped;              /* human lines: "routes of bind \"http\"", "[mothership.http] max_body_size",
                                    "bind \"admin\" added", "payload \"auth\"", ... */
    size_t nswapped;
    char **needs_restart;        /* keys that take effect only at the next start of Mothership:
                                    "[mothership] workers", "[mothership] metrics_port", "uplink \"db\"", ... */
    size_t nneeds;
} ms_manifest_diff;

/* The difference from old to new (both loaded without problems). NULL: out
 * of memory. */
ms_manifest_diff *ms_manifest_diff_new(const ms_manifest *old, const ms_manifest *new);
void ms_manifest_diff_free(ms_manifest_diff *d);

/* True when applying d changes nothing at all (no entry, no swap, nothing
 * that needs a restart). */
bool ms_manifest_diff_empty(const ms_manifest_diff *d);

/* The plan as JSON (a new reference; NULL: out of memory), names in manifest
 * order (stop: old manifest order):
 * {"restart": [names], "why": {name: what differs}, "start": [...],
 *  "stop": [...], "unchanged": [...], "swap": [...], "needs_restart": [...]} */
json_t *ms_manifest_diff_plan(const ms_manifest_diff *d, const ms_manifest *old, const ms_manifest *new);

#endif
