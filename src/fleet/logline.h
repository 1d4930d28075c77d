/* logline.h: one line of Mothership's JSON log, in the schema every line
 * shares (docs/cli.md, "Logs"): ts, level, source, instance, stream, event,
 * the event's own fields, msg. A pure formatter into a caller's buffer: no
 * allocation, no I/O, safe on any thread (the log sink, the access log). */
#ifndef MS_FLEET_LOGLINE_H
#define MS_FLEET_LOGLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ms_level { MS_INFO, MS_WARN, MS_ERROR } ms_level;

/* "info", "warn", "error" */
const char *ms_level_name(ms_level level);

/* One field of an event beside the common ones: a string or an integer. */
typedef struct ms_log_field {
    const char *key;     /* a short snake_case word, never one of the common keys */
    const char *str;     /* the value when a string; NULL: num is the value */
    int64_t num;
} ms_log_field;

static inline ms_log_field ms_log_str(const char *key, const char *val)
{
    return (ms_log_field){ .key = key, .str = val ? val : "" };
}

static inline ms_log_field ms_log_num(const char *key, int64_t val)
{
    return (ms_log_field){ .key = key, .num = val };
}

typedef struct ms_log_record {
    int64_t time_ms;             /* Unix time in ms; 0: now */
    ms_level level;
    const char *source;          /* "mothership", "access", or an entry's name as written */
    int instance;                /* the instance of an instanced entry; -1: none */
    const char *stream;          /* "stdout" / "stderr" for a child's line; NULL: none */
    const char *event;           /* Mothership's event name; NULL: none */
    const ms_log_field *fields;  /* the event's own fields */
    size_t nfields;
    bool continued;              /* a piece of a split line after the first */
    const char *msg;             /* any bytes: escaped, invalid UTF-8 becomes U+FFFD */
    size_t msg_len;
} ms_log_record;

/* Smallest buffer ms_log_format_json accepts. */
#define MS_LOG_JSON_MIN 512

/* Format r as one JSON object followed by "\n" into out (cap >=
 * MS_LOG_JSON_MIN); returns its length. A message (or field) too long for
 * the buffer is cut short, always at a character boundary, and the line is
 * still whole, valid JSON. */
size_t ms_log_format_json(char *out, size_t cap, const ms_log_record *r);

/* RFC 3339 UTC with milliseconds ("2026-11-26T10:11:14.295Z") of time_ms
 * (0: now); returns its length (24), or 0 if cap is too small. */
size_t ms_log_timestamp_utc(char *out, size_t cap, int64_t time_ms);

/* s as a JSON string body (no quotes) into out; stops before overflowing
 * cap (keeps one byte spare); returns the bytes written. */
size_t ms_log_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
