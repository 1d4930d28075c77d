/* logs.h: everything Mothership prints goes through here. Children's output
 * is split into lines (a line longer than MS_LOG_LINE_MAX is cut into pieces,
 * each marked as continued), prefixed with the process name (coloured on a
 * terminal unless NO_COLOR), kept in a bounded ring per process for the
 * dashboard, and queued for a writer thread. The queue is bounded: when the
 * consumer of Mothership's output is slow, lines are dropped and counted,
 * never blocking the event loop or a child. Mothership's own events use the
 * same path, as text or JSON lines. */
#ifndef MS_FLEET_LOGS_H
#define MS_FLEET_LOGS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/logline.h"

#define MS_LOG_LINE_MAX 8192            /* longer lines are split */
#define MS_LOG_QUEUE_BYTES (1u << 20)   /* output queue; beyond it lines are dropped */
#define MS_LOG_RING_BYTES (64u << 10)   /* per-process history for the dashboard */

typedef enum ms_stream { MS_STDOUT = 1, MS_STDERR = 2 } ms_stream;

typedef struct ms_log ms_log;

/* Open the output sink on fd (usually 1). json: JSON lines instead of text.
 * color: ANSI colours (only honoured for text). NULL on failure. */
ms_log *ms_log_open(int fd, bool json, bool color);
/* Flush what is queued (bounded wait) and stop the writer thread. */
void ms_log_close(ms_log *log);
/* Stop printing to the fd (the dashboard owns the terminal); rings still fill. */
void ms_log_set_quiet(ms_log *log, bool quiet);

/* A line of a child's output (without its newline). name: the process's
 * name, shown in text ("web#1"); base: the entry's name as written ("web")
 * when the entry is instanced, else NULL; instance: its instance then. */
void ms_log_child(ms_log *log, const char *name, const char *base, unsigned instance, unsigned colour,
                  ms_stream stream, const char *line, size_t len, bool continued);
/* One of Mothership's own events. ship: the process it is about, or NULL.
 * event: a short machine word ("ready", "exited", ...), documented in
 * docs/cli.md with its fields. */
void ms_log_event(ms_log *log, ms_level level, const char *ship, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void ms_log_eventv(ms_log *log, ms_level level, const char *ship, const char *event, const char *fmt,
                   va_list ap);
/* The same with the event's own fields (JSON only; the text line is msg). */
void ms_log_event_fields(ms_log *log, ms_level level, const char *ship, const char *event,
                         const ms_log_field *fields, size_t nfields, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* A line formatted elsewhere (the access log), with its newline, queued
 * like a child's line; false: dropped (counted here too). Any thread. */
bool ms_log_raw(ms_log *log, const char *line, size_t len);

uint64_t ms_log_dropped(const ms_log *log);
uint64_t ms_log_lines(const ms_log *log);

/* ---------------------------------------------------------------- line splitting */
typedef struct ms_linebuf {
    char buf[MS_LOG_LINE_MAX];
    size_t len;
    bool continued;      /* the current line is the tail of a split line */
} ms_linebuf;

typedef void (*ms_line_fn)(void *arg, const char *line, size_t len, bool continued);
/* Feed bytes; calls fn per complete (or split) line. A trailing "\r" is
 * dropped. */
void ms_linebuf_feed(ms_linebuf *lb, const char *data, size_t len, ms_line_fn fn, void *arg);
/* End of stream: emit what is left. */
void ms_linebuf_flush(ms_linebuf *lb, ms_line_fn fn, void *arg);

/* ---------------------------------------------------------------- per-process ring */
typedef struct ms_ring_line {
    uint64_t seq;        /* global order across all rings, for a merged view */
    int64_t time_ms;     /* wall clock */
    ms_stream stream;
    size_t len;
    char *text;
} ms_ring_line;

typedef struct ms_ring {
    ms_ring_line *lines; /* circular */
    size_t cap, head, count;
    size_t bytes;        /* text bytes held; at most MS_LOG_RING_BYTES */
    uint64_t total;      /* lines ever added */
} ms_ring;

void ms_ring_init(ms_ring *r);
void ms_ring_free(ms_ring *r);
void ms_ring_add(ms_ring *r, uint64_t seq, ms_stream stream, const char *text, size_t len);
/* i-th line from the oldest kept (0 .. count-1). */
const ms_ring_line *ms_ring_at(const ms_ring *r, size_t i);

#endif
