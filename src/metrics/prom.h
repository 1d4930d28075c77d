/* prom.h: bounded text buffer and Prometheus text exposition (format 0.0.4).
 *
 * ms_buf is a growable byte buffer with a hard size cap: once an append
 * would exceed the cap (or an allocation fails) the buffer sets its error
 * flag, keeps what it had, and ignores every later append. Callers check
 * ms_buf_failed() once at the end instead of after every append.
 *
 * ms_prom writes metric families into an ms_buf. "# HELP" and "# TYPE" are
 * written when a family starts (i.e. when the metric name differs from the
 * previous sample's family), so a caller emits all samples of one family
 * back to back, e.g. one line per ship:
 *
 *     ms_prom p; ms_prom_init(&p, out);
 *     for each ship:
 *         ms_prom_label l[] = {{"ship", s->name}, {"group", s->group}};
 *         ms_prom_counter_u64(&p, "mothership_ship_restarts_total",
 *                             "Restarts of each ship.", l, 2, s->restarts);
 *
 * Metric and label names are program constants; they are checked with
 * assert() in debug builds. Label values are arbitrary bytes and escaped
 * (backslash, double quote, newline) as the exposition format requires.
 * Not thread-safe; one writer per buffer.
 */
#ifndef MS_METRICS_PROM_H
#define MS_METRICS_PROM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default cap of an ms_buf (ms_buf_init with max == 0). */
#define MS_BUF_DEFAULT_MAX ((size_t)8 * 1024 * 1024)

typedef struct ms_buf {
    char *data;   /* NULL until the first append; NUL-terminated when non-NULL */
    size_t len;   /* bytes used, excluding the terminating NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard cap on len */
    bool failed;  /* set when an append was refused (cap or out of memory) */
} ms_buf;

void ms_buf_init(ms_buf *b, size_t max);
void ms_buf_free(ms_buf *b);                 /* releases memory; b may be reused after ms_buf_init */
void ms_buf_reset(ms_buf *b);                /* len = 0, failed = false, memory kept */
bool ms_buf_append(ms_buf *b, const void *data, size_t len);
bool ms_buf_puts(ms_buf *b, const char *s);
bool ms_buf_printf(ms_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool ms_buf_vprintf(ms_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static inline bool ms_buf_failed(const ms_buf *b) { return b->failed; }

/* ---- Prometheus text exposition ---- */

typedef enum ms_prom_type {
    MS_PROM_COUNTER,
    MS_PROM_GAUGE,
    MS_PROM_HISTOGRAM,
    MS_PROM_UNTYPED,
} ms_prom_type;

typedef struct ms_prom_label {
    const char *name;   /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value;  /* any NUL-terminated bytes; escaped on output */
} ms_prom_label;

typedef struct ms_prom {
    ms_buf *out;
    const char *family; /* name of the family whose header was written last */
} ms_prom;

void ms_prom_init(ms_prom *p, ms_buf *out);

/* Writes "# HELP name help\n# TYPE name type\n" unless name is the current
 * family. The sample functions below call this themselves. */
void ms_prom_family(ms_prom *p, const char *name, ms_prom_type type, const char *help);

/* One sample line of a counter or gauge family:
 *   name{l1="v1",l2="v2"} value\n          (no braces when nlabels == 0) */
void ms_prom_counter_u64(ms_prom *p, const char *name, const char *help,
                         const ms_prom_label *labels, size_t nlabels, uint64_t value);
void ms_prom_counter_double(ms_prom *p, const char *name, const char *help,
                            const ms_prom_label *labels, size_t nlabels, double value);
void ms_prom_gauge_i64(ms_prom *p, const char *name, const char *help,
                       const ms_prom_label *labels, size_t nlabels, int64_t value);
void ms_prom_gauge_double(ms_prom *p, const char *name, const char *help,
                          const ms_prom_label *labels, size_t nlabels, double value);

/* A histogram series from a fixed bucket array.
 * bounds: nbounds finite upper bounds in strictly increasing order.
 * counts: nbounds + 1 per-bucket (non-cumulative) observation counts; counts[i]
 *         holds observations v with bounds[i-1] < v <= bounds[i], counts[nbounds]
 *         those above the last bound. Written cumulatively as name_bucket{le=...},
 *         then name_sum and name_count (= total of counts). */
void ms_prom_histogram(ms_prom *p, const char *name, const char *help,
                       const ms_prom_label *labels, size_t nlabels,
                       const double *bounds, const uint64_t *counts, size_t nbounds,
                       double sum);

/* Index of the bucket an observation falls into (0..nbounds). */
size_t ms_prom_bucket_index(const double *bounds, size_t nbounds, double v);

/* Appends a label value escaped per the exposition format (\\, \", \n). */
void ms_prom_escape_label_value(ms_buf *b, const char *value);

/* Formats a sample value: "NaN", "+Inf", "-Inf", else the shortest of %.15g
 * and %.17g that reads back exactly. out must hold 32 bytes. */
void ms_prom_format_double(char out[32], double v);

bool ms_prom_valid_metric_name(const char *name);
bool ms_prom_valid_label_name(const char *name);

#endif
