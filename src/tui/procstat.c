/* procstat.c: CPU time and resident memory of a process tree, from
 * /proc/PID/stat, /proc/PID/statm and /proc/PID/task/PID/children. It is
 * given a ship's launch shim (ms_proc.pid, not the pid shown), so the figures
 * cover the shim and everything below it (bounded to MAX_TREE processes). Called at most once a second per
 * running process by the dashboard. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tui/tui_impl.h"

#define MAX_TREE 64

/* Read a small /proc file into buf (NUL-terminated); length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

static bool one_stat(int pid, uint64_t *ticks, uint64_t *pages)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return false;
    /* fields after the parenthesised name: state(3) ... utime(14) stime(15) */
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    p++;
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field < 15)
        return false;
    *ticks += ut + st;
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    if (read_small(path, buf, sizeof buf) > 0) {
        unsigned long long size = 0, resident = 0;
        if (sscanf(buf, "%llu %llu", &size, &resident) == 2)
            *pages += resident;
    }
    return true;
}

bool ms_tui_proc_tree_stat(int pid, uint64_t *ticks, uint64_t *rss_bytes)
{
    int tree[MAX_TREE];
    size_t n = 0, done = 0;
    uint64_t t = 0, pages = 0;
    tree[n++] = pid;
    bool root_ok = false;
    while (done < n) {
        int cur = tree[done++];
        bool ok = one_stat(cur, &t, &pages);
        if (cur == pid)
            root_ok = ok;
        if (!ok)
            continue;
        char path[96], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", cur, cur);
        if (read_small(path, buf, sizeof buf) <= 0)
            continue;
        char *save = NULL;
        for (char *tok = strtok_r(buf, " \n", &save); tok && n < MAX_TREE; tok = strtok_r(NULL, " \n", &save)) {
            long c = strtol(tok, NULL, 10);
            if (c > 0)
                tree[n++] = (int)c;
        }
    }
    if (!root_ok)
        return false;
    long page = sysconf(_SC_PAGESIZE);
    *ticks = t;
    *rss_bytes = pages * (uint64_t)(page > 0 ? page : 4096);
    return true;
}
