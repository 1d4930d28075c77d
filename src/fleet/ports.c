/* ports.c: who listens on a ship's TCP port (see ports.h). */
#include "fleet/ports.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet/probe.h"
#include "metrics/procstat.h"

#define MAX_LISTENERS 64
#define MAX_TREE 4096

/* The LISTEN sockets that a listener at want (or any address, if wild)
 * would collide with, or that a connection to want reaches. */
typedef struct listeners {
    unsigned long inode[MAX_LISTENERS];
    size_t n;
} listeners;

/* ---------------------------------------------------------------- /proc/net/tcp */
static bool parse_hex_words(const char *hex, size_t len, unsigned char *out)
{
    for (size_t w = 0; w < len / 8; w++) {
        char chunk[9];
        memcpy(chunk, hex + w * 8, 8);
        chunk[8] = '\0';
        char *end;
        unsigned long v = strtoul(chunk, &end, 16);
        if (*end)
            return false;
        /* the kernel prints each 32-bit word of the address as a host-order
         * integer: its bytes in memory are the address's */
        uint32_t word = (uint32_t)v;
        memcpy(out + w * 4, &word, 4);
    }
    return true;
}

bool ms_port_parse_proc_line(const char *line, int *family, unsigned char addr[16], unsigned *port,
                             unsigned long *inode)
{
    char local[40];
    unsigned lport, state;
    unsigned long ino;
    if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", local, &lport,
               &state, &ino) != 4)
        return false;
    if (state != 0x0A) /* TCP_LISTEN */
        return false;
    size_t len = strlen(local);
    if (len != 8 && len != 32)
        return false;
    memset(addr, 0, 16);
    if (!parse_hex_words(local, len, addr))
        return false;
    *family = len == 8 ? AF_INET : AF_INET6;
    *port = lport;
    *inode = ino;
    return true;
}

static const unsigned char v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Does a listener at (family, addr) take connections to want? wild: want
 * is a wildcard bind, which collides with every address. */
static bool addr_match(int family, const unsigned char *addr, const struct sockaddr_storage *want, bool wild)
{
    static const unsigned char zero[16];
    if (wild || (family == AF_INET6 && memcmp(addr, zero, 16) == 0))
        return true; /* a wildcard listener (:: is dual-stack unless v6only: counted) */
    if (family == AF_INET && memcmp(addr, zero, 4) == 0) /* 0.0.0.0: IPv4 only */
        return want->ss_family == AF_INET ||
               memcmp(&((const struct sockaddr_in6 *)want)->sin6_addr, v4_mapped_prefix, 12) == 0;
    if (want->ss_family == AF_INET) {
        const unsigned char *w = (const unsigned char *)&((const struct sockaddr_in *)want)->sin_addr;
        if (family == AF_INET)
            return memcmp(addr, w, 4) == 0;
        return memcmp(addr, v4_mapped_prefix, 12) == 0 && memcmp(addr + 12, w, 4) == 0;
    }
    const unsigned char *w = (const unsigned char *)&((const struct sockaddr_in6 *)want)->sin6_addr;
    if (family == AF_INET) /* want is ::ffff:a.b.c.d: an IPv4 listener at a.b.c.d takes it */
        return memcmp(w, v4_mapped_prefix, 12) == 0 && memcmp(addr, w + 12, 4) == 0;
    return memcmp(addr, w, 16) == 0;
}

static unsigned port_of(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void find_listeners(const struct sockaddr_storage *want, bool wild, listeners *out)
{
    out->n = 0;
    unsigned want_port = port_of(want);
    static const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
    for (size_t f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "re");
        if (!fp)
            continue;
        char line[512];
        while (fgets(line, sizeof line, fp) && out->n < MAX_LISTENERS) {
            int family;
            unsigned char addr[16];
            unsigned port;
            unsigned long inode;
            if (ms_port_parse_proc_line(line, &family, addr, &port, &inode) && port == want_port && inode != 0 &&
                addr_match(family, addr, want, wild))
                out->inode[out->n++] = inode;
        }
        fclose(fp);
    }
}

/* ---------------------------------------------------------------- processes */
/* Does pid have one of the sockets open? */
static bool holds_any(int pid, const listeners *l)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return false; /* gone, or not ours to look at */
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char link[64];
        ssize_t n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        unsigned long inode;
        if (sscanf(link, "socket:[%lu]", &inode) != 1)
            continue;
        for (size_t i = 0; i < l->n && !found; i++)
            found = l->inode[i] == inode;
    }
    closedir(d);
    return found;
}

static void command_of(int pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    out[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (out[i] == '\0')
            out[i] = ' ';
        else if ((unsigned char)out[i] < ' ' || out[i] == 0x7f)
            out[i] = '?';
    while (n > 0 && out[n - 1] == ' ')
        out[--n] = '\0';
    if (n > 0)
        return;
    /* no command line (a kernel thread, a zombie): its name */
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    FILE *fp = fopen(path, "re");
    char comm[32] = "";
    if (fp) {
        if (fgets(comm, sizeof comm, fp))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(fp);
    }
    snprintf(out, cap, "[%s]", comm[0] ? comm : "?");
}

/* When pid started, in clock ticks since boot (0: unknown). */
static unsigned long long start_time_of(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* fields 3.. follow the command's name; starttime is field 22 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return 0;
    }
    return strtoull(p + 1, NULL, 10);
}

/* The first process (any on the host that /proc lets us see) holding one
 * of the sockets. */
static bool find_holder(const listeners *l, ms_port_holder *h)
{
    h->pid = 0;
    h->command[0] = '\0';
    DIR *d = opendir("/proc");
    if (!d)
        return false;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        if (holds_any((int)pid, l)) {
            h->pid = (int)pid;
            command_of(h->pid, h->command, sizeof h->command);
            break;
        }
    }
    closedir(d);
    return h->pid > 0;
}

/* Does root, or a process below it, hold one of the sockets? Children are
 * read from /proc/<pid>/task/<tid>/children, breadth first. */
static bool tree_holds(int root, const listeners *l)
{
    int *queue = malloc(MAX_TREE * sizeof *queue);
    if (!queue)
        return false;
    size_t head = 0, tail = 0;
    queue[tail++] = root;
    bool found = false;
    while (head < tail && !found) {
        int pid = queue[head++];
        if (holds_any(pid, l)) {
            found = true;
            break;
        }
        ms_procstat_add_children(pid, queue, &tail, MAX_TREE);
    }
    free(queue);
    return found;
}

/* ---------------------------------------------------------------- the checks */
static socklen_t sa_len(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* Bind a socket at sa (SO_REUSEADDR) and close it: 0 or the errno. */
static int try_bind(const struct sockaddr_storage *sa)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1, err = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)sa, sa_len(sa)) != 0)
        err = errno;
    close(fd);
    return err;
}

/* Is sa's address one of this host's (in this network namespace)? A ship
 * reached at another address (a container's) listens elsewhere. */
static bool address_is_local(const struct sockaddr_storage *sa)
{
    struct sockaddr_storage any_port = *sa;
    if (any_port.ss_family == AF_INET)
        ((struct sockaddr_in *)&any_port)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&any_port)->sin6_port = 0;
    return try_bind(&any_port) != EADDRNOTAVAIL;
}

bool ms_port_free(const ms_addr *a, const struct sockaddr_storage *resolved, ms_port_holder *holder)
{
    if (holder) {
        holder->pid = 0;
        holder->command[0] = '\0';
    }
    if (a->kind != MS_ADDR_TCP)
        return true;
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    bool wild = false;
    if (strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "*") == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        s4->sin_port = htons(a->port);
        wild = true;
    } else if (strcmp(a->host, "::") == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons(a->port);
        wild = true;
    } else if (resolved) {
        sa = *resolved;
    } else {
        ms_target t;
        char why[160];
        if (!ms_target_from_addr(a, &t, why, sizeof why) || t.is_unix)
            return true; /* cannot tell: the ship will say */
        sa = t.sa;
    }
    if (sa.ss_family != AF_INET && sa.ss_family != AF_INET6)
        return true;
    int err = try_bind(&sa);
    if (err == 0)
        return true;
    listeners l;
    find_listeners(&sa, wild, &l);
    /* a port below 1024 we may not bind: a listener in /proc says it is taken;
     * any other failure (an address not on this host): cannot tell */
    if (err != EADDRINUSE && ((err != EACCES && err != EPERM) || l.n == 0))
        return true;
    if (holder)
        find_holder(&l, holder);
    return false;
}

ms_port_owner ms_port_owner_of(const struct sockaddr_storage *sa, int root, ms_port_holder *holder)
{
    holder->pid = 0;
    holder->command[0] = '\0';
    if ((sa->ss_family != AF_INET && sa->ss_family != AF_INET6) || !address_is_local(sa))
        return MS_PORT_OWNER_UNKNOWN;
    listeners l;
    find_listeners(sa, false, &l);
    if (l.n == 0)
        return MS_PORT_OWNER_UNKNOWN;
    if (root > 0 && tree_holds(root, &l))
        return MS_PORT_OWNER_TREE;
    if (!find_holder(&l, holder))
        return MS_PORT_OWNER_UNKNOWN;
    /* start times count in clock ticks (10 ms): a holder started in root's
     * own tick may be the older one, so only a later tick makes it newer
     * (a proxy the ship asks for comes well after its start) */
    unsigned long long theirs = start_time_of(holder->pid), ours = root > 0 ? start_time_of(root) : 0;
    if (theirs && ours && theirs > ours)
        return MS_PORT_OWNER_NEWER;
    return MS_PORT_OWNER_STRANGER;
}
