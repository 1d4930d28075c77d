/* cgroup.c: entries' cgroups v2 and their limits (see cgroup.h). Every
 * write is into Mothership's own cgroup (its cgroup.subtree_control and
 * the children it creates there), never above it. */
#include "fleet/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "util/smallfile.h"
#include "util/strutil.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CPU_PERIOD_US 100000

/* Write text to dir/name. A plain test tree (not cgroup2) gets the file
 * created; on cgroup2 the interface files are there or the write fails. */
static bool write_at(const ms_cgroups *cg, const char *dir, const char *name, const char *text)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        errno = ENAMETOOLONG;
        return false;
    }
    int flags = O_WRONLY | O_CLOEXEC | (cg->real ? 0 : O_CREAT | O_TRUNC);
    int fd = open(path, flags, 0644);
    if (fd < 0)
        return false;
    size_t len = strlen(text);
    ssize_t w;
    do
        w = write(fd, text, len);
    while (w < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    errno = e;
    return w == (ssize_t)len;
}

/* Whether a word list ("cpu memory pids") holds word. */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '+') &&
            (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

static const struct {
    unsigned bit;
    const char *name;
} controllers[] = { { MS_CG_MEMORY, "memory" }, { MS_CG_CPU, "cpu" }, { MS_CG_PIDS, "pids" } };

/* Mothership's cgroup v2 directory from /proc/self/cgroup ("0::/path")
 * and the cgroup2 mount in /proc/self/mountinfo. */
static char *own_cgroup(char *why, size_t cap)
{
    char text[8192];
    if (ms_read_small("/proc/self/cgroup", text, sizeof text) < 0) {
        snprintf(why, cap, "cannot read /proc/self/cgroup: %.200s", strerror(errno));
        return NULL;
    }
    const char *rel = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "0::", 3) == 0)
            rel = line + 3;
    if (!rel) {
        snprintf(why, cap, "this system has no cgroup v2 hierarchy (cgroup v1 only)");
        return NULL;
    }
    char rel_copy[4096];
    snprintf(rel_copy, sizeof rel_copy, "%s", rel);
    FILE *mi = fopen("/proc/self/mountinfo", "re");
    if (!mi) {
        snprintf(why, cap, "cannot read /proc/self/mountinfo: %.200s", strerror(errno));
        return NULL;
    }
    char line[4096], mount[4096] = "";
    while (fgets(line, sizeof line, mi)) {
        /* id parent major:minor root mountpoint options ... - fstype source superopts */
        const char *dash = strstr(line, " - ");
        if (!dash || strncmp(dash + 3, "cgroup2 ", 8) != 0)
            continue;
        char root[1024], point[2048];
        if (sscanf(line, "%*s %*s %*s %1023s %2047s", root, point) == 2 && strcmp(root, "/") == 0) {
            snprintf(mount, sizeof mount, "%s", point);
            break;
        }
    }
    fclose(mi);
    if (!mount[0]) {
        snprintf(why, cap, "no cgroup2 file system is mounted (cgroup v1 only)");
        return NULL;
    }
    if (strstr(rel_copy, " (deleted)") || strstr(rel_copy, "..")) {
        snprintf(why, cap, "Mothership's cgroup \"%.200s\" cannot be used", rel_copy);
        return NULL;
    }
    return ms_asprintf("%s%s", mount, strcmp(rel_copy, "/") == 0 ? "" : rel_copy);
}

/* Mothership is the only process in dir (delegated to it alone). */
static bool alone_in(const char *dir, char *why, size_t cap)
{
    char path[4200], text[4096];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    if (ms_read_small(path, text, sizeof text) < 0) {
        snprintf(why, cap, "cannot read %.200s: %.200s", path, strerror(errno));
        return false;
    }
    long self = (long)getpid();
    size_t others = 0;
    for (char *p = text; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        others += pid != self;
        p = end;
        while (*p == '\n')
            p++;
    }
    if (others) {
        snprintf(why, cap, "Mothership's cgroup %.200s is not delegated to it: %zu other process%.200s in it (run it "
                 "as a systemd service with Delegate=yes, or as a container's main process)", dir, others,
                 others == 1 ? " is" : "es are");
        return false;
    }
    return true;
}

void ms_cgroups_init(ms_cgroups *cg, const char *override)
{
    memset(cg, 0, sizeof *cg);
    char *dir = NULL;
    if (override && *override) {
        cg->override = true;
        dir = ms_strdup(override);
    } else {
        dir = own_cgroup(cg->why, sizeof cg->why);
        if (!dir)
            return;
    }
    cg->dir = dir;
    if (!dir) {
        snprintf(cg->why, sizeof cg->why, "out of memory");
        return;
    }
    struct statfs sf;
    if (statfs(dir, &sf) != 0) {
        snprintf(cg->why, sizeof cg->why, "%.200s: %.200s", dir, strerror(errno));
        return;
    }
    cg->real = sf.f_type == CGROUP2_SUPER_MAGIC;
    if (!cg->override && !cg->real) {
        snprintf(cg->why, sizeof cg->why, "%.200s is not a cgroup2 file system", dir);
        return;
    }
    char path[4200], avail[1024];
    snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
    if (ms_read_small(path, avail, sizeof avail) < 0) {
        snprintf(cg->why, sizeof cg->why, "cannot read %.200s: %.200s", path, strerror(errno));
        return;
    }
    unsigned want = 0;
    for (size_t i = 0; i < sizeof controllers / sizeof controllers[0]; i++)
        if (has_word(avail, controllers[i].name))
            want |= controllers[i].bit;
    snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
    if (access(dir, W_OK) != 0 || (cg->real && access(path, W_OK) != 0)) {
        snprintf(cg->why, sizeof cg->why, "Mothership's cgroup %.200s is not delegated to it (not writable: run it as "
                 "a systemd service with Delegate=yes, or as a container's main process)", dir);
        return;
    }
    if (!cg->override && !alone_in(dir, cg->why, sizeof cg->why))
        return;
    /* into a leaf of our own: a cgroup with controllers for its children
     * may hold no process itself */
    char leaf[4200], pid[32];
    snprintf(leaf, sizeof leaf, "%s/supervisor", dir);
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if ((mkdir(leaf, 0755) != 0 && errno != EEXIST) || !write_at(cg, leaf, "cgroup.procs", pid)) {
        snprintf(cg->why, sizeof cg->why, "cannot move Mothership into %.200s: %.200s", leaf, strerror(errno));
        return;
    }
    char enable[64] = "";
    for (size_t i = 0; i < sizeof controllers / sizeof controllers[0]; i++)
        if (want & controllers[i].bit)
            snprintf(enable + strlen(enable), sizeof enable - strlen(enable), "%s+%s", enable[0] ? " " : "",
                     controllers[i].name);
    if (enable[0] && !write_at(cg, dir, "cgroup.subtree_control", enable)) {
        for (size_t i = 0; i < sizeof controllers / sizeof controllers[0]; i++) { /* one at a time */
            char one[16];
            snprintf(one, sizeof one, "+%s", controllers[i].name);
            if ((want & controllers[i].bit) && !write_at(cg, dir, "cgroup.subtree_control", one))
                want &= ~controllers[i].bit;
        }
    }
    cg->controllers = want;
    cg->usable = true;
}

void ms_cgroups_free(ms_cgroups *cg)
{
    free(cg->dir);
    cg->dir = NULL;
    cg->usable = false;
}

unsigned ms_cgroup_needs(const ms_ship *s)
{
    return (s->memory_max ? MS_CG_MEMORY : 0u) | (s->cpu_max_milli ? MS_CG_CPU : 0u) |
           (s->pids_max ? MS_CG_PIDS : 0u);
}

char *ms_cgroup_path(const ms_cgroups *cg, const ms_ship *s, unsigned parity)
{
    if (!cg->usable)
        return NULL;
    return ms_asprintf("%s/%s.%s%s", cg->dir, s->kind == MS_BAY ? "bay" : "ship", s->name, parity ? ".1" : "");
}

bool ms_cgroup_apply(const ms_cgroups *cg, const char *path, const ms_ship *s, char *why, size_t cap)
{
    char v[64];
    if (cg->controllers & MS_CG_MEMORY) {
        if (s->memory_max)
            snprintf(v, sizeof v, "%" PRIu64 "\n", s->memory_max);
        else
            snprintf(v, sizeof v, "max\n");
        if (!write_at(cg, path, "memory.max", v))
            goto fail_memory;
    }
    if (cg->controllers & MS_CG_CPU) {
        if (s->cpu_max_milli)
            snprintf(v, sizeof v, "%llu %d\n", (unsigned long long)s->cpu_max_milli * (CPU_PERIOD_US / 1000),
                     CPU_PERIOD_US);
        else
            snprintf(v, sizeof v, "max %d\n", CPU_PERIOD_US);
        if (!write_at(cg, path, "cpu.max", v)) {
            snprintf(why, cap, "cannot write %.200s/cpu.max: %.200s", path, strerror(errno));
            return false;
        }
    }
    if (cg->controllers & MS_CG_PIDS) {
        if (s->pids_max)
            snprintf(v, sizeof v, "%" PRIu64 "\n", s->pids_max);
        else
            snprintf(v, sizeof v, "max\n");
        if (!write_at(cg, path, "pids.max", v)) {
            snprintf(why, cap, "cannot write %.200s/pids.max: %.200s", path, strerror(errno));
            return false;
        }
    }
    return true;
fail_memory:
    snprintf(why, cap, "cannot write %.200s/memory.max: %.200s", path, strerror(errno));
    return false;
}

int ms_cgroup_prepare(const ms_cgroups *cg, const char *path, const ms_ship *s, char *why, size_t cap)
{
    if (!cg->usable || !path) {
        snprintf(why, cap, "no cgroup");
        return -1;
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(why, cap, "cannot create %.200s: %.200s", path, strerror(errno));
        return -1;
    }
    if (!ms_cgroup_apply(cg, path, s, why, cap))
        return -1;
    char procs[4200];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", path);
    int fd = open(procs, O_WRONLY | O_CLOEXEC | (cg->real ? 0 : O_CREAT | O_TRUNC), 0644);
    if (fd < 0)
        snprintf(why, cap, "cannot open %.200s: %.200s", procs, strerror(errno));
    return fd;
}

void ms_cgroup_kill(const ms_cgroups *cg, const char *path)
{
    if (!cg->real || !path)
        return; /* a plain tree lists no live process */
    char file[4200];
    snprintf(file, sizeof file, "%s/cgroup.kill", path);
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t w = write(fd, "1", 1);
        close(fd);
        if (w == 1)
            return;
    }
    /* before Linux 5.14: each process it lists (none can join it meanwhile
     * but its own children, which a second round catches) */
    for (int round = 0; round < 3; round++) {
        char text[8192];
        snprintf(file, sizeof file, "%s/cgroup.procs", path);
        if (ms_read_small(file, text, sizeof text) <= 0)
            return;
        for (char *p = text; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            if (pid > 0 && pid != (long)getpid())
                kill((pid_t)pid, SIGKILL);
            p = end;
            while (*p == '\n')
                p++;
        }
    }
}

bool ms_cgroup_release(const ms_cgroups *cg, const char *path)
{
    if (!path)
        return true;
    ms_cgroup_kill(cg, path);
    if (!cg->real)
        return false; /* a plain tree's files stay for the test to read */
    return rmdir(path) == 0 || errno == ENOENT;
}
