/* sdnotify.c: a datagram to the service manager's notification socket
 * (see sdnotify.h). */
#include "util/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool ms_sdnotify_address(const char *value, struct sockaddr_un *addr, socklen_t *len)
{
    if (!value || (value[0] != '/' && value[0] != '@'))
        return false;
    size_t n = strlen(value);
    if (n < 2 || n > sizeof addr->sun_path - (value[0] == '/')) /* a path needs its terminating NUL */
        return false;
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, value, n);
    if (value[0] == '@') {
        addr->sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL, no terminator */
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return true;
}

/* A decimal number, whole string, > 0. */
static bool parse_positive(const char *s, unsigned long long *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0)
        return false;
    *out = v;
    return true;
}

uint64_t ms_sdnotify_watchdog_usec(const char *usec, const char *pid, long self)
{
    unsigned long long v, p;
    if (!parse_positive(usec, &v))
        return 0;
    if (pid && (!parse_positive(pid, &p) || p != (unsigned long long)self))
        return 0; /* meant for another process (e.g. the one that exec'd us) */
    return v;
}

bool ms_sdnotify_open(ms_sdnotify *n, char *why, size_t why_len)
{
    n->fd = -1;
    n->addr_len = 0;
    n->watchdog_usec = ms_sdnotify_watchdog_usec(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), (long)getpid());
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    const char *value = getenv("NOTIFY_SOCKET");
    if (why_len)
        why[0] = '\0';
    if (!value) {
        n->watchdog_usec = 0; /* a watchdog no one can be told about */
        return false;
    }
    bool ok = ms_sdnotify_address(value, &n->addr, &n->addr_len);
    if (!ok)
        snprintf(why, why_len, "NOTIFY_SOCKET=\"%.200s\" is neither a socket path nor an @abstract name", value);
    unsetenv("NOTIFY_SOCKET"); /* value is not used after this */
    if (!ok) {
        n->watchdog_usec = 0;
        return false;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0) {
        snprintf(why, why_len, "cannot make the notification socket: %s", strerror(errno));
        n->watchdog_usec = 0;
        return false;
    }
    return true;
}

int ms_sdnotify_send(ms_sdnotify *n, const char *msg)
{
    if (n->fd < 0)
        return 0;
    ssize_t w;
    do
        w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&n->addr,
                   n->addr_len);
    while (w < 0 && errno == EINTR);
    return w < 0 ? -errno : 0;
}

void ms_sdnotify_close(ms_sdnotify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
