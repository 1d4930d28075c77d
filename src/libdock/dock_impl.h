/* dock_impl.h: helpers shared by libdock's two sides (dock.c for WebSocket
 * bays, dock_http.c for HTTP bays), defined in dock.c. Not part of the
 * public API. */
#ifndef LIBDOCK_DOCK_IMPL_H
#define LIBDOCK_DOCK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

/* Formats the message into err (when given) and returns code. */
int dock__seterr(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The short name dock.c and dock_http.c call it by. */
#define seterr dock__seterr
/* CLOCK_MONOTONIC in milliseconds. */
int64_t dock__now_ms(void);

/* mkdir -p of the directory part of path, new directories 0700. */
int dock__make_parent_dirs(const char *path, char *err, size_t err_len);
/* Removes a stale socket file at path; refuses to remove anything else. */
int dock__remove_stale(const char *path, char *err, size_t err_len);
/* The ship name when neither the options nor MS_SHIP give one: the socket
 * file's name without ".sock" (malloc'd; NULL when out of memory). */
char *dock__ship_from_path(const char *path);
/* Fills sa with path; DOCK_ERR_ARG when path does not fit a Unix address. */
int dock__unix_addr(const char *path, struct sockaddr_un *sa, char *err, size_t err_len);
/* A non-blocking close-on-exec pipe that wakes the bay's poll. */
int dock__wake_pipe(int *wake_r, int *wake_w, char *err, size_t err_len);
/* Makes the socket's directory, removes a stale socket, then binds and
 * listens at sa. *fd is set as soon as the socket exists (the caller closes
 * it, also on failure); *dev, *ino and *known identify the bound file so
 * that close removes only that one. */
int dock__listen_unix(const char *path, const struct sockaddr_un *sa, int backlog, int *fd,
                      dev_t *dev, ino_t *ino, bool *known, char *err, size_t err_len);
/* Unlinks path if it is still the socket file dev/ino (best effort). */
void dock__unlink_socket(const char *path, dev_t dev, ino_t ino);

/* SIGTERM and SIGINT back to their default action. */
void dock__default_stop_signals(void);
/* SIGTERM and SIGINT to handler. */
int dock__catch_stop_signals(void (*handler)(int), char *err, size_t err_len);
/* Writes a byte to the wake pipe (if any), keeping errno: async-signal-safe. */
void dock__wake(int wake_w);

#endif
