/* run_signals.h: the signals `mothership run` neither stops on nor leaves at
 * their default (the table is in docs/cli.md). SIGHUP calls what was
 * registered with ms_run_signals_on_hup (the manifest reload), else it is
 * logged and ignored; SIGUSR1 likewise calls what was registered with
 * ms_run_signals_on_usr1 (the phased restart of every ship with a bind);
 * SIGUSR2, SIGALRM, SIGPWR, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT, SIGXCPU,
 * SIGXFSZ and SIGRTMIN..SIGRTMAX are ignored, each logged the first time it
 * comes. SIGTERM, SIGINT and SIGQUIT (stop) belong to the fleet, and to
 * run.c before the launch; SIGCHLD and SIGWINCH to the fleet and the
 * dashboard.
 *
 * Every one of them is caught by a handler, never set to SIG_IGN while
 * processes may be started: exec resets a caught signal to its default,
 * whereas an ignored one would be inherited by every ship. */
#ifndef MS_RUN_SIGNALS_H
#define MS_RUN_SIGNALS_H

#include <uv.h>

#include "fleet/logs.h"

typedef struct ms_run_signals ms_run_signals;

/* Catch them all on loop (the handles do not keep the loop alive). NULL when
 * out of memory or a handler cannot be installed (nothing is left caught). */
ms_run_signals *ms_run_signals_start(uv_loop_t *loop, ms_log *log);

/* On each SIGHUP, log it and call fn(arg) on the loop (NULL fn: log and
 * ignore). */
void ms_run_signals_on_hup(ms_run_signals *s, void (*fn)(void *arg), void *arg);
/* The same for SIGUSR1. */
void ms_run_signals_on_usr1(ms_run_signals *s, void (*fn)(void *arg), void *arg);

/* Once no process will be started any more: close the handles (freed when
 * the loop has run their close callbacks) and ignore those signals until
 * exit. NULL is allowed. */
void ms_run_signals_close(ms_run_signals *s);

#endif
