/* shim.h: the launch shim. Every ship runs as
 *   ms-shim <ship> --ms-shim <mothership-pid> <report-fd|-> <stop-signal> [<cgroup-fd>] -- <command> <args...>
 * (argv[0] names the ship: it is also the shim's name in `ps`). The shim is
 * the process-group leader; it asks the kernel for a signal when Mothership
 * dies (PR_SET_PDEATHSIG) and then kills its whole group, so not even a
 * `kill -9` of Mothership leaves a grandchild behind. The command it forks
 * gets PR_SET_PDEATHSIG(SIGKILL) before exec, so a `kill -9` of the shim
 * takes the command with it. The shim writes the command's pid, in decimal
 * and a newline, to report-fd and closes it (the command never inherits
 * it). It is a child subreaper for its own subtree, survives the stop signal
 * Mothership sends to the group (the command gets it), passes on to the
 * command the signals someone else sends to the shim alone (kill -HUP of
 * the shim's pid reaches the server), and exits with the command's status,
 * or dies of the same signal. With a cgroup-fd (open on the entry's
 * cgroup.procs) it first writes its own pid there: it and all it starts
 * run in that cgroup. */
#ifndef MS_FLEET_SHIM_H
#define MS_FLEET_SHIM_H

#define MS_SHIM_FLAG "--ms-shim"

/* argv as above; never returns on success of exec in the child. */
int ms_shim_main(int argc, char **argv);

#endif
