/* sdnotify.h: the service manager's notification protocol, spoken directly
 * (no libsystemd): one datagram of "KEY=VALUE" lines to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace),
 * and the watchdog interval systemd asks for in $WATCHDOG_USEC (for us
 * when $WATCHDOG_PID is unset or our pid). Opening takes those variables
 * out of the environment, so that processes started afterwards do not
 * speak to the service manager in our name. */
#ifndef MS_UTIL_SDNOTIFY_H
#define MS_UTIL_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef struct ms_sdnotify {
    int fd; /* -1: no service manager to tell */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t watchdog_usec; /* 0: no watchdog for us */
} ms_sdnotify;

/* Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, then unset them.
 * True when there is a socket to notify; false (n->fd == -1) when the
 * variable is unset, and also, with a reason in why, when it is malformed
 * or no socket can be made. n->watchdog_usec is set either way. */
bool ms_sdnotify_open(ms_sdnotify *n, char *why, size_t why_len);

/* Parse a $NOTIFY_SOCKET value into an address (no socket made). */
bool ms_sdnotify_address(const char *value, struct sockaddr_un *addr, socklen_t *len);

/* Parse $WATCHDOG_USEC / $WATCHDOG_PID (either may be NULL) for process
 * self: the interval in microseconds, 0 when there is none for self. */
uint64_t ms_sdnotify_watchdog_usec(const char *usec, const char *pid, long self);

/* Send msg (newline-separated assignments) in one datagram; never blocks.
 * 0, or a negative errno. A no-op (0) without a socket. */
int ms_sdnotify_send(ms_sdnotify *n, const char *msg);

void ms_sdnotify_close(ms_sdnotify *n);

#endif
