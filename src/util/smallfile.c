/* smallfile.c: reading a small file whole (see smallfile.h). */
#include "util/smallfile.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

ssize_t ms_read_small(const char *path, char *buf, size_t cap)
{
    assert(cap > 0);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}
