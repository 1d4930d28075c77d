/* roll.h: rolling restarts. A roll replaces the processes of a list of
 * entries (a ship's instances) one at a time, so that the ship keeps
 * serving while it is restarted:
 *   surge     (the ship has a bind_alt): the entry's twin starts at the
 *             other parity with the current definition; once it is ready
 *             it becomes the entry's process, the old one drains (no new
 *             request, up to drain_timeout for those in flight) and stops;
 *   drain     (instances > 1, no bind_alt): the old one drains, stops and
 *             starts again in place while the other instances serve;
 *   hold      (one instance, no bind_alt): the same in place, with requests
 *             held by the data plane until the new run is ready.
 * A new process that does not become ready stops the roll there: with a
 * surge the old process goes on serving and the new one is stopped; in
 * place, the new one goes on under its restart policy. Entries not reached
 * are untouched. Everything here runs on the control loop. */
#ifndef MS_ROLL_H
#define MS_ROLL_H

#include <stdbool.h>
#include <stddef.h>

#include "fleet/fleet.h"

typedef struct ms_roll ms_roll;

/* How a roll ended, for its done callback (valid during the call). */
typedef struct ms_roll_outcome {
    bool ok;
    const char *failed;      /* the entry it stopped at, or NULL */
    const char *why;         /* why it stopped; "" when ok */
    char *const *rolled;     /* entries replaced, in order */
    size_t nrolled;
    size_t n;                /* entries the roll had */
} ms_roll_outcome;

typedef void (*ms_roll_done_fn)(void *arg, const ms_roll_outcome *o);

/* A long-running ship with a bind: its restarts are rolls. */
bool ms_roll_applies(const ms_proc *p);

/* Roll f->procs[idx[0..n)], in that order, one at a time; who asked is
 * logged. done (may be NULL) is called once, never from within this call,
 * with the outcome (a fleet shutdown cancels the roll: done says so). NULL
 * + why when it cannot start: the fleet is stopping, an entry is already
 * rolling, is left out of this run or waits for its dependencies. */
ms_roll *ms_roll_start(ms_fleet *f, const size_t *idx, size_t n, const char *who, ms_roll_done_fn done, void *arg,
                       char *why, size_t why_len);
/* Roll every entry with pick[i] (pick NULL: every entry) that a roll
 * applies to, one roll per ship (its instances in order), nobody waiting;
 * entries already rolling, left out or waiting for dependencies are
 * skipped (logged). pick[i] is cleared for the entries taken. Returns how
 * many rolls began. */
size_t ms_roll_ships(ms_fleet *f, bool *pick, const char *who);
/* Whoever waited for r is gone: r goes on, its done is not called. */
void ms_roll_detach(ms_roll *r);
/* The fleet is stopping: every roll ends at once (done is called). */
void ms_roll_cancel_all(ms_fleet *f, const char *why);

/* ---- fleet side (fleet.c), for the roll only ---- */
/* Start the twin of f->procs[i] (created on first use) with the entry's
 * definition at the other parity. NULL + why when it cannot. */
ms_proc *ms_fleet_twin_start(ms_fleet *f, size_t i, char *why, size_t why_len);
/* The twin of f->procs[i] becomes the entry's process, and back. */
void ms_fleet_twin_swap(ms_fleet *f, size_t i);
/* Stop p and keep it stopped (a twin, or an old process after a swap). */
void ms_fleet_stop_kept(ms_proc *p);

#endif
