/* process.h: starting one ship or bay: its environment (Mothership's own <
 * [mothership.env] < base template < the entry's env, plus MS_* for bays),
 * command lookup on PATH, uv_spawn through the launch shim in its own
 * process group, and its stdout/stderr pipes split into log lines; the
 * shim reports the command's own pid on a third pipe. Signals go to the
 * whole process group; when the shim exits, what is left of the group is
 * killed. */
#ifndef MS_FLEET_PROCESS_H
#define MS_FLEET_PROCESS_H

#include "fleet/fleet.h"

/* Spawn p. On failure returns false with a reason (the process is not
 * running and no handle is open). */
/* Every shim, and so every process of a ship that keeps its environment,
 * gets MS_FLEET_PID=<Mothership's pid>: how the orphan sweep knows them. */
#define MS_FLEET_PID_ENV "MS_FLEET_PID"

bool ms_process_spawn(ms_proc *p, char *why, size_t why_len);
/* Signal the process group (no-op when not running). */
void ms_process_signal(ms_proc *p, int sig);
/* The ship's own process (the command under the shim), as the shim reported
 * it: the pid users see (reads a report that has arrived but was not handled
 * yet). 0: there is none (not running, or the shim failed before starting
 * the command); -1: the report has not come yet. */
int ms_process_ship_pid(ms_proc *p);
/* Close the process handle (after exit). */
void ms_process_close(ms_proc *p);
/* Close its output pipes now (they normally close at end of output). */
void ms_process_close_pipes(ms_proc *p);

/* Find cmd on PATH (from env, or Mothership's), relative to cwd when it has a
 * slash. Returns a heap path or NULL. */
char *ms_find_command(const char *cmd, const char *path_env, const char *cwd);

/* Implemented by fleet.c. */
void ms_fleet_on_exit(ms_proc *p, int64_t status, int term_signal);
void ms_fleet_on_output_closed(ms_proc *p);
void ms_fleet_on_ship_pid(ms_proc *p);

#endif
