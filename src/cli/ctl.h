/* ctl.h: the control socket of `mothership run` (docs/control-api.md).
 *
 * A Unix socket (mode 0600; 0660 and the group's with control_group) that
 * speaks HTTP/1.1 + JSON under /v1: fleet status, restart / stop / start /
 * signal of entries and @tags, log tail and follow, reload and drain. Peers
 * are checked with SO_PEERCRED when they connect: root, Mothership's own uid
 * and members of control_group; anyone else gets 403 and a log line. Every
 * action is logged with who asked. Requests are parsed by ctl_proto.c; this
 * file is the libuv glue and the handlers acting on the ms_run. Control loop
 * only. */
#ifndef MS_CLI_CTL_H
#define MS_CLI_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include "manifest/manifest.h"

typedef struct ms_run ms_run;
typedef struct ms_ctl ms_ctl;

#define MS_CTL_SOCKET_NAME "mothership.ctl"
#define MS_CTL_MAX_CONNECTIONS 16
#define MS_CTL_IDLE_TIMEOUT_MS 30000u

/* The control socket's path for m: control_socket, else
 * <socket dir>/mothership.ctl (m may be NULL: the default socket dir).
 * Freed by the caller; NULL when out of memory. */
char *ms_ctl_socket_path(const ms_manifest *m);

/* Listen on r's control socket. A live socket at that path (another
 * Mothership answers) is an error; a stale one is replaced. NULL + why on
 * failure. */
ms_ctl *ms_ctl_start(ms_run *r, char *why, size_t why_len);
/* The fleet is there (launch): actions become possible, log lines flow. */
void ms_ctl_attach_fleet(ms_ctl *c);
/* Stop listening, close every connection, remove the socket file. The
 * handles close on the loop; c is freed once they have. */
void ms_ctl_close(ms_ctl *c);
/* The socket's path. */
const char *ms_ctl_path(const ms_ctl *c);

#endif
