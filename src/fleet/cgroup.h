/* cgroup.h: each ship and bay in its own cgroup v2, with its resource
 * limits (memory.max, cpu.max, pids.max), when Mothership's own cgroup is
 * delegated to it: systemd's Delegate=yes, or a container with a cgroup of
 * its own. Mothership moves itself into a leaf ("supervisor", the
 * no-internal-processes rule), enables the memory, cpu and pids
 * controllers for its children and creates one child per entry; the
 * launch shim moves itself into it before it starts the command, so all
 * the command starts is in it. cgroup.kill ends whatever is left of an
 * entry. Nothing is written outside Mothership's own cgroup, and only when
 * it is the only process there; else nothing is limited and the fleet
 * says so once. MS_CGROUP_ROOT names the cgroup to use instead (tests:
 * a cgroup2 mount, or a plain directory tree). Control loop only. */
#ifndef MS_FLEET_CGROUP_H
#define MS_FLEET_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "manifest/manifest.h"

enum { MS_CG_MEMORY = 1, MS_CG_CPU = 2, MS_CG_PIDS = 4 };

typedef struct ms_cgroups {
    bool usable;          /* entries get a cgroup of their own */
    bool real;            /* dir is on a cgroup2 file system (not a test's plain tree) */
    bool override;        /* dir came from MS_CGROUP_ROOT */
    char *dir;            /* Mothership's own cgroup, or NULL */
    unsigned controllers; /* MS_CG_*: enabled for the entries' cgroups */
    char why[1024];       /* when not usable: why */
} ms_cgroups;

/* Find Mothership's own cgroup (or take override) and prepare it. Never
 * fails: cg->usable says whether it worked, cg->why why not. */
void ms_cgroups_init(ms_cgroups *cg, const char *override);
void ms_cgroups_free(ms_cgroups *cg);

/* The MS_CG_* controllers s's limits need. */
unsigned ms_cgroup_needs(const ms_ship *s);

/* The directory of an entry's cgroup: "<dir>/ship.web", "<dir>/bay.chat",
 * "<dir>/ship.web.1" for a surge process (parity 1). Heap string or NULL. */
char *ms_cgroup_path(const ms_cgroups *cg, const ms_ship *s, unsigned parity);

/* Create the cgroup at path (if it is not there yet) and write s's limits
 * ("max" for those it has not). Returns an fd open for writing on its
 * cgroup.procs (the shim writes its pid there), or -1 with why. */
int ms_cgroup_prepare(const ms_cgroups *cg, const char *path, const ms_ship *s, char *why, size_t cap);

/* Write s's limits into the existing cgroup at path (a reload). */
bool ms_cgroup_apply(const ms_cgroups *cg, const char *path, const ms_ship *s, char *why, size_t cap);

/* Kill every process in the cgroup at path: cgroup.kill, else SIGKILL to
 * each one its cgroup.procs lists (only on a real cgroup2 file system). */
void ms_cgroup_kill(const ms_cgroups *cg, const char *path);

/* ms_cgroup_kill, then remove the cgroup if it is empty. Returns true when
 * it is gone. */
bool ms_cgroup_release(const ms_cgroups *cg, const char *path);

#endif
