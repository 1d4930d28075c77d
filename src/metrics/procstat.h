/* procstat.h: what Linux's /proc says about a process (CPU time, memory,
 * its session), for the standard process_* series of Mothership itself
 * and the CPU and memory of each ship's processes.
 *
 * ms_procstat_parse is the socket- and file-free core: one /proc/PID/stat
 * line in, its fields out (a command name with spaces or parentheses is
 * skipped by the last ')'). The others read /proc. Linux only (the
 * children files need CONFIG_PROC_CHILDREN, which distribution kernels
 * set). */
#ifndef MS_METRICS_PROCSTAT_H
#define MS_METRICS_PROCSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics/prom.h"

typedef struct ms_procstat {
    int pid;
    int ppid;
    int pgrp;
    int session;
    uint64_t utime, stime;    /* clock ticks, this process */
    uint64_t cutime, cstime;  /* clock ticks, its children it has waited for */
    uint64_t starttime;       /* clock ticks after boot */
    uint64_t vsize;           /* bytes */
    uint64_t rss_pages;
} ms_procstat;

/* Parses one /proc/PID/stat text of len bytes. false when it is not one. */
bool ms_procstat_parse(const char *text, size_t len, ms_procstat *out);

/* Reads /proc/PID/stat (pid 0: this process). false when gone or unreadable. */
bool ms_procstat_read(int pid, ms_procstat *out);

/* Appends the children of every thread of pid (from each
 * /proc/PID/task/TID/children) to tree[*n..max); those that do not fit are
 * left out. */
void ms_procstat_add_children(int pid, int *tree, size_t *n, size_t max);

/* What a process tree costs: the processes below root (its children, found
 * through every thread's /proc/PID/task/TID/children, theirs, and so on, at
 * most MS_PROCSTAT_TREE_MAX in all with root), root itself left out but
 * with the time of the children it has waited for. Root is a supervisor
 * (a ship's launch shim, which reaps its orphans): its own figures are not
 * the ship's. */
#define MS_PROCSTAT_TREE_MAX 1024

typedef struct ms_procstat_usage {
    uint64_t ticks;       /* user + system of the processes below root, and of the
                             children each of them (and root) has waited for */
    uint64_t rss_pages;   /* resident pages of the processes below root */
    size_t processes;     /* processes below root that were read */
} ms_procstat_usage;

/* false when root is gone or unreadable. */
bool ms_procstat_tree(int root, ms_procstat_usage *out);

/* Clock ticks per second and the page size, for the fields above. */
long ms_procstat_hz(void);
long ms_procstat_page_size(void);

/* The standard process_* series of this process: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds. A series
 * whose source cannot be read is left out. */
void ms_procstat_render_self(ms_prom *p);

#endif
