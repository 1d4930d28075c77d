/* ports.h: who listens on a ship's TCP port, as Linux tells it: a test bind
 * before the ship starts (is the port free?), the LISTEN sockets of
 * /proc/net/tcp and tcp6, and the processes holding them (their
 * /proc/<pid>/fd links), so that a port held by a stranger is refused with
 * the stranger's pid and command, and a readiness probe that reached a
 * stranger does not count. Control plane only; all of it best effort: what
 * /proc does not show is "unknown", never an error. */
#ifndef MS_FLEET_PORTS_H
#define MS_FLEET_PORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "manifest/manifest.h"

/* A process holding a listener: pid 0 when none could be seen. */
typedef struct ms_port_holder {
    int pid;
    char command[160];   /* its command line, spaces between arguments */
} ms_port_holder;

/* Is the TCP address a (a ship's bind) free to listen on? Binds a socket
 * there with SO_REUSEADDR, as servers do, and closes it; for a port it may
 * not bind (below 1024), looks for a LISTEN socket in /proc. An address
 * that is not this host's cannot be told. resolved: a's address, already
 * resolved (NULL: resolve it here). True: free, or not known to be taken.
 * False: taken, and holder (if not NULL: finding it reads all of /proc)
 * says by whom when Linux can tell. */
bool ms_port_free(const ms_addr *a, const struct sockaddr_storage *resolved, ms_port_holder *holder);

typedef enum ms_port_owner {
    MS_PORT_OWNER_UNKNOWN,   /* no listener or no holder found in /proc */
    MS_PORT_OWNER_TREE,      /* held by root or one of its descendants */
    MS_PORT_OWNER_NEWER,     /* held by a process started after root, in a later clock tick (a proxy it asked for) */
    MS_PORT_OWNER_STRANGER,  /* held by a process older than root, outside its tree */
} ms_port_owner;

/* Whose is the listener a connection to sa (a ship's address, wildcards
 * made loopback) reaches? root: the process whose tree should hold it (the
 * ship's launch shim). holder: the stranger, for MS_PORT_OWNER_STRANGER.
 * Unknown for an address that is not this host's. */
ms_port_owner ms_port_owner_of(const struct sockaddr_storage *sa, int root, ms_port_holder *holder);

/* One line of /proc/net/tcp or tcp6: true for a LISTEN socket, with its
 * local address (family, 4 or 16 bytes in network order), port and inode. */
bool ms_port_parse_proc_line(const char *line, int *family, unsigned char addr[16], unsigned *port,
                             unsigned long *inode);

#endif
