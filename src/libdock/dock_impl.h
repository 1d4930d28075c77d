/* dock_impl.h: helpers shared by libdock's two sides (dock.c for WebSocket
 * bays, dock_http.c for HTTP bays). Not part of the public API. */
#ifndef LIBDOCK_DOCK_IMPL_H
#define LIBDOCK_DOCK_IMPL_H

#include <stddef.h>

/* mkdir -p of the directory part of path, new directories 0700. */
int dock__make_parent_dirs(const char *path, char *err, size_t err_len);
/* Removes a stale socket file at path; refuses to remove anything else. */
int dock__remove_stale(const char *path, char *err, size_t err_len);
/* The ship name when neither the options nor MS_SHIP give one: the socket
 * file's name without ".sock" (malloc'd; NULL when out of memory). */
char *dock__ship_from_path(const char *path);

#endif
