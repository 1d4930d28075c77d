/* procstat.c: CPU time and resident memory of a ship for the dashboard and
 * the control API's status: the process tree below its launch shim
 * (ms_proc.pid, not the pid shown), as metrics/procstat.c measures it for
 * mothership_ship_cpu_seconds_total and mothership_ship_memory_bytes, so
 * that the three agree. */
#include "metrics/procstat.h"
#include "tui/tui_impl.h"

bool ms_tui_proc_tree_stat(int pid, uint64_t *ticks, uint64_t *rss_bytes)
{
    ms_procstat_usage u;
    if (!ms_procstat_tree(pid, &u))
        return false;
    *ticks = u.ticks;
    *rss_bytes = u.rss_pages * (uint64_t)ms_procstat_page_size();
    return true;
}
