/* procstat.c: /proc/PID/stat parsing, a walk over /proc, and the standard
 * process_* series of this process. See procstat.h. */
#include "metrics/procstat.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util/smallfile.h"

/* A stat line is a few hundred bytes; more is not one. */
#define STAT_MAX 2048
/* Fields after the command name, from the state (field 3) to rss (24). */
#define STAT_FIELDS 22

/* Reads a non-negative decimal field (a negative one reads as 0) at *p,
 * then the space after it; false at the end or on anything else. */
static bool field(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    bool neg = s < end && *s == '-';
    s += neg;
    if (s >= end || !isdigit((unsigned char)*s))
        return false;
    uint64_t v = 0;
    for (; s < end && isdigit((unsigned char)*s); s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (s < end && *s != ' ' && *s != '\n')
        return false;
    *out = neg ? 0 : v;
    *p = s < end ? s + 1 : s;
    return true;
}

bool ms_procstat_parse(const char *text, size_t len, ms_procstat *out)
{
    if (!text || len == 0 || len >= STAT_MAX)
        return false;
    const char *end = text + len;
    const char *open = memchr(text, '(', len);
    const char *close = NULL;
    for (const char *q = end; q > text; q--) {
        if (q[-1] == ')') {
            close = q - 1;
            break;
        }
    }
    if (!open || !close || close < open || open == text || open[-1] != ' ')
        return false;
    uint64_t pid;
    const char *p = text;
    if (!field(&p, open, &pid) || p != open || pid == 0 || pid > INT32_MAX)
        return false;
    p = close + 1;
    if (end - p < 3 || p[0] != ' ' || !isalpha((unsigned char)p[1]) || p[2] != ' ')
        return false;
    p += 3; /* the state */
    uint64_t f[STAT_FIELDS - 1]; /* fields 4 (ppid) .. 24 (rss) */
    for (size_t i = 0; i < STAT_FIELDS - 1; i++)
        if (!field(&p, end, &f[i]))
            return false;
    for (size_t i = 0; i < 3; i++)
        if (f[i] > INT32_MAX)
            return false;
    *out = (ms_procstat){
        .pid = (int)pid, .ppid = (int)f[0], .pgrp = (int)f[1], .session = (int)f[2],
        .utime = f[10], .stime = f[11], .cutime = f[12], .cstime = f[13],
        .starttime = f[18], .vsize = f[19], .rss_pages = f[20],
    };
    return true;
}

bool ms_procstat_read(int pid, ms_procstat *out)
{
    char path[64], buf[STAT_MAX];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    ssize_t n = ms_read_small(path, buf, sizeof buf);
    return n > 0 && ms_procstat_parse(buf, (size_t)n, out);
}

/* Appends the pids listed in a children file to tree[*n..max), reading it
 * in chunks (a parent of many children lists more than one buffer holds);
 * those that do not fit are left out. */
static void add_children_file(const char *path, int *tree, size_t *n, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    uint64_t v = 0;
    bool in_number = false;
    while (*n < max) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r && *n < max; i++) {
            if (isdigit((unsigned char)buf[i])) {
                v = in_number ? v * 10 + (uint64_t)(buf[i] - '0') : (uint64_t)(buf[i] - '0');
                in_number = v <= INT32_MAX;
                if (!in_number)
                    goto done; /* not a pid: the file is not what it should be */
            } else {
                if (in_number && v > 0)
                    tree[(*n)++] = (int)v;
                in_number = false;
            }
        }
    }
    if (in_number && v > 0 && *n < max)
        tree[(*n)++] = (int)v;
done:
    close(fd);
}

void ms_procstat_add_children(int pid, int *tree, size_t *n, size_t max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while (*n < max && (de = readdir(d))) {
        char *e;
        long tid = strtol(de->d_name, &e, 10);
        if (*e || tid <= 0 || tid > INT32_MAX)
            continue;
        char cpath[96];
        snprintf(cpath, sizeof cpath, "/proc/%d/task/%ld/children", pid, tid);
        add_children_file(cpath, tree, n, max);
    }
    closedir(d);
}

bool ms_procstat_tree(int root, ms_procstat_usage *out)
{
    int tree[MS_PROCSTAT_TREE_MAX];
    size_t n = 0, done = 0;
    *out = (ms_procstat_usage){ 0 };
    tree[n++] = root;
    while (done < n) {
        int pid = tree[done++];
        ms_procstat st;
        if (!ms_procstat_read(pid, &st)) {
            if (pid == root)
                return false;
            continue;
        }
        out->ticks += st.cutime + st.cstime;
        if (pid != root) {
            out->ticks += st.utime + st.stime;
            out->rss_pages += st.rss_pages;
            out->processes++;
        }
        ms_procstat_add_children(pid, tree, &n, MS_PROCSTAT_TREE_MAX);
    }
    return true;
}

long ms_procstat_hz(void)
{
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? hz : 100;
}

long ms_procstat_page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? ps : 4096;
}

/* The boot time from /proc/stat's "btime" line; 0 when unknown. */
static uint64_t boot_time(void)
{
    char buf[16384];
    if (ms_read_small("/proc/stat", buf, sizeof buf) <= 0)
        return 0;
    const char *b = strstr(buf, "\nbtime ");
    return b ? strtoull(b + 7, NULL, 10) : 0;
}

/* Open descriptors of this process, less the one that lists them. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

void ms_procstat_render_self(ms_prom *p)
{
    ms_procstat st;
    bool have = ms_procstat_read(0, &st);
    double hz = (double)ms_procstat_hz();
    if (have) {
        ms_prom_counter_double(p, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                               NULL, 0, (double)(st.utime + st.stime) / hz);
        ms_prom_gauge_double(p, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL, 0,
                             (double)st.rss_pages * (double)ms_procstat_page_size());
        ms_prom_gauge_double(p, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL, 0,
                             (double)st.vsize);
    }
    long fds = open_fds();
    if (fds >= 0)
        ms_prom_gauge_i64(p, "process_open_fds", "Number of open file descriptors.", NULL, 0, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        ms_prom_gauge_double(p, "process_max_fds", "Maximum number of open file descriptors.", NULL, 0,
                             rl.rlim_cur == RLIM_INFINITY ? (double)INT64_MAX : (double)rl.rlim_cur);
    uint64_t bt = boot_time();
    if (have && bt)
        ms_prom_gauge_double(p, "process_start_time_seconds",
                             "Start time of the process since unix epoch in seconds.", NULL, 0,
                             (double)bt + (double)st.starttime / hz);
}
