/* tui.h: the dashboard of `mothership run --tui`. An ncurses view on the
 * fleet, running on the control loop next to it: Overview (one row per ship
 * and bay), Logs (a process's ring buffer, or all of them merged by
 * sequence), Modules (the manifest's WASM payloads). It only reads the
 * fleet and calls its dashboard controls (restart, stop/start, shutdown);
 * it adds nothing to the supervisor's behaviour.
 *
 * Redraws are driven by cheap polls of a generation counter (every 250 ms),
 * a 1 s tick for CPU%/RSS/req/s, key presses and SIGWINCH; idle, it costs
 * a few wake-ups a second. While it runs, the log prints nothing (children's
 * output still fills the rings); the terminal is restored when the fleet is
 * done, at exit() and on fatal signals. */
#ifndef MS_TUI_H
#define MS_TUI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fleet/fleet.h"

typedef struct ms_tui ms_tui;

/* Requests answered so far for routes to the ship or bay named target
 * (a monotonically growing counter). */
typedef uint64_t (*ms_tui_requests_fn)(void *arg, const char *target);

typedef struct ms_tui_config {
    uv_loop_t *loop;              /* the control loop */
    ms_fleet *fleet;
    ms_log *log;                  /* set quiet while the dashboard owns the terminal */
    ms_tui_requests_fn requests;  /* NULL: no data plane (req/s shows 0) */
    void *requests_arg;
    /* Calls, blocks and errors (traps, exhaustions, ABI misuse) of module i
     * so far; false when payloads do not run (no data plane). */
    bool (*module_stats)(void *arg, size_t i, uint64_t *calls, uint64_t *blocks, uint64_t *errors);
    /* WebSocket clients connected to bay i (its index in the manifest);
     * false when bays are not served (shown as "-"). */
    bool (*bay_clients)(void *arg, size_t i, uint64_t *clients);
} ms_tui_config;

/* True when stdout is a terminal. Otherwise prints
 * "mothership: --tui needs a terminal; showing plain logs" to stderr and
 * returns false: the caller runs with plain output. */
bool ms_tui_usable(void);

/* Take over the terminal and start drawing. NULL with a reason on failure
 * (the terminal is left as it was and the log is not silenced). */
ms_tui *ms_tui_start(const ms_tui_config *cfg, char *why, size_t why_len);

/* The fleet took a new manifest (entries added, removed, reordered). */
void ms_tui_reloaded(ms_tui *t);

/* The fleet is done: restore the terminal, let the log print again, close
 * every handle; t is freed once they are closed. NULL is ignored. */
void ms_tui_stop(ms_tui *t);

#endif
