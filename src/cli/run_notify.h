/* run_notify.h: what `mothership run` tells a service manager (systemd's
 * Type=notify, util/sdnotify.h): READY=1 with MAINPID= once the fleet is
 * ready (when /ready turns 200), RELOADING=1 with MONOTONIC_USEC= then
 * READY=1 around each reload, STOPPING=1 when the shutdown begins, STATUS=
 * a one-line summary ("3/3 up, 1 bind, 12 req/s"), sent with each of those
 * and at most every two seconds when it changes, and WATCHDOG=1 at half of
 * the interval asked for, from the control loop (a stuck loop stops it).
 * Every function takes NULL (nothing to tell) and does nothing with it. */
#ifndef MS_CLI_RUN_NOTIFY_H
#define MS_CLI_RUN_NOTIFY_H

#include <stdbool.h>

typedef struct ms_run ms_run;
typedef struct ms_run_notify ms_run_notify;

/* Read and unset $NOTIFY_SOCKET and $WATCHDOG_* (ships must not inherit
 * them) and start the watchdog and status timers on r->loop (they do not
 * keep it alive). NULL when there is no service manager to tell (a
 * malformed variable is logged). */
ms_run_notify *ms_run_notify_start(ms_run *r);
/* The fleet's phase changed (launched, or a shutdown began). */
void ms_run_notify_fleet(ms_run_notify *n);
/* A reload begins (not a check-only one) / is over (applied or refused). */
void ms_run_notify_reloading(ms_run_notify *n);
void ms_run_notify_reloaded(ms_run_notify *n);
/* After the loop has ended: close the timers (the loop must run once more
 * for their close callbacks, which free n) and the socket. */
void ms_run_notify_close(ms_run_notify *n);

#endif
