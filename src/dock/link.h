/* link.h: docking links, on the control loop. One link per bay: once the
 * fleet has started the bay, connect to its MS_SOCKET_PATH (retrying with a
 * short backoff until the bay's ready_timeout), wait for Dock, answer
 * Moored with the bay's config, publish the bay as docked (the fleet marks
 * it ready), then hand the reading of the bay's frames to its home worker
 * (http/ws_link.c) and the socket to the workers for their frames (hub.h),
 * writing here only what they queued. A protocol error or a link the bay closes fails the bay (the fleet
 * kills it and restarts it per its policy); the workers close its clients
 * with 1011 or 1012. */
#ifndef MS_DOCK_LINK_H
#define MS_DOCK_LINK_H

#include <uv.h>

#include "dock/hub.h"
#include "fleet/fleet.h"
#include "metrics/prom.h"

typedef struct ms_docks ms_docks;

/* One link per bay of the fleet (selected or not), by slot, hooks itself
 * into the fleet. hub has MS_FLEET_MAX_SLOTS bays. */
ms_docks *ms_docks_new(uv_loop_t *loop, ms_fleet *fleet, ms_hub *hub, ms_log *log);
/* After a reload was committed: links for the bays among procs that have
 * none yet (their hub bay is enabled). False on OOM (a bay without a link
 * gets one when it starts). */
bool ms_docks_add(ms_docks *d, ms_proc *const *procs, size_t n);
/* Write what the workers queued (at shutdown, before bays are stopped);
 * done(arg) runs once it is written (or after at most a second). */
void ms_docks_flush(ms_docks *d, void (*done)(void *), void *arg);
/* Close every handle; the loop can end afterwards. */
void ms_docks_close(ms_docks *d);
/* After the loop has ended. */
void ms_docks_free(ms_docks *d);

/* Per-bay series for /metrics. */
void ms_docks_render_metrics(const ms_docks *d, ms_buf *out);

#endif
