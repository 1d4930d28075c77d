/* procstat.h: what Linux's /proc says about a process (CPU time, memory,
 * its session), for the standard process_* series of Mothership itself
 * and the CPU and memory of each ship's processes.
 *
 * ms_procstat_parse is the socket- and file-free core: one /proc/PID/stat
 * line in, its fields out (a command name with spaces or parentheses is
 * skipped by the last ')'). The others read /proc. */
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

/* Calls each(ctx, st) for every process /proc lists now; those that go
 * away in the middle are skipped. false when /proc cannot be read. */
bool ms_procstat_each(void (*each)(void *ctx, const ms_procstat *st), void *ctx);

/* Clock ticks per second and the page size, for the fields above. */
long ms_procstat_hz(void);
long ms_procstat_page_size(void);

/* The standard process_* series of this process: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds. A series
 * whose source cannot be read is left out. */
void ms_procstat_render_self(ms_prom *p);

#endif
