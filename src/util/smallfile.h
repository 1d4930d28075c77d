/* smallfile.h: reading a small file (a /proc or cgroup interface file)
 * whole into a caller's buffer. */
#ifndef MS_SMALLFILE_H
#define MS_SMALLFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Reads path into buf (NUL-terminated, truncated at cap - 1 bytes); its
 * length, or -1 with errno set when it cannot be opened. A read error ends
 * the text where it stands. */
ssize_t ms_read_small(const char *path, char *buf, size_t cap);

#endif
