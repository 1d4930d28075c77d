/* prom.c: bounded text buffer and Prometheus text exposition. See prom.h. */
#include "metrics/prom.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ms_buf ---- */

void ms_buf_init(ms_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : MS_BUF_DEFAULT_MAX;
    b->failed = false;
}

void ms_buf_free(ms_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = false;
}

void ms_buf_reset(ms_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for len + extra bytes plus a NUL. */
static bool buf_reserve(ms_buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra > b->max - b->len) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    char *nd = realloc(b->data, ncap);
    if (!nd) {
        b->failed = true;
        return false;
    }
    b->data = nd;
    b->cap = ncap;
    return true;
}

bool ms_buf_append(ms_buf *b, const void *data, size_t len)
{
    if (!buf_reserve(b, len))
        return false;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return true;
}

bool ms_buf_puts(ms_buf *b, const char *s)
{
    return ms_buf_append(b, s, strlen(s));
}

bool ms_buf_vprintf(ms_buf *b, const char *fmt, va_list ap)
{
    if (b->failed)
        return false;
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = true;
        return false;
    }
    if ((size_t)n < sizeof small)
        return ms_buf_append(b, small, (size_t)n);
    if (!buf_reserve(b, (size_t)n))
        return false;
    int m = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (m != n) {
        b->data[b->len] = '\0';
        b->failed = true;
        return false;
    }
    b->len += (size_t)n;
    return true;
}

bool ms_buf_printf(ms_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool ok = ms_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return ok;
}

/* ---- names ---- */

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool ms_prom_valid_metric_name(const char *name)
{
    if (!name || !(is_alpha_(name[0]) || name[0] == ':'))
        return false;
    for (const char *s = name + 1; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return false;
    return true;
}

bool ms_prom_valid_label_name(const char *name)
{
    if (!name || !is_alpha_(name[0]))
        return false;
    if (name[0] == '_' && name[1] == '_')
        return false;
    for (const char *s = name + 1; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s)))
            return false;
    return true;
}

/* ---- values ---- */

void ms_prom_format_double(char out[32], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, 32, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 32, "%.17g", v);
    }
}

void ms_prom_escape_label_value(ms_buf *b, const char *value)
{
    const char *run = value;
    const char *s = value;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '"')
            esc = "\\\"";
        else if (*s == '\n')
            esc = "\\n";
        if (esc) {
            ms_buf_append(b, run, (size_t)(s - run));
            ms_buf_append(b, esc, 2);
            run = s + 1;
        }
    }
    ms_buf_append(b, run, (size_t)(s - run));
}

/* HELP text escapes backslash and newline only. */
static void escape_help(ms_buf *b, const char *help)
{
    const char *run = help;
    const char *s = help;
    for (; *s; s++) {
        if (*s == '\\' || *s == '\n') {
            ms_buf_append(b, run, (size_t)(s - run));
            ms_buf_append(b, *s == '\\' ? "\\\\" : "\\n", 2);
            run = s + 1;
        }
    }
    ms_buf_append(b, run, (size_t)(s - run));
}

/* ---- families and samples ---- */

void ms_prom_init(ms_prom *p, ms_buf *out)
{
    p->out = out;
    p->family = NULL;
}

static const char *type_name(ms_prom_type t)
{
    switch (t) {
    case MS_PROM_COUNTER: return "counter";
    case MS_PROM_GAUGE: return "gauge";
    case MS_PROM_HISTOGRAM: return "histogram";
    case MS_PROM_UNTYPED: break;
    }
    return "untyped";
}

void ms_prom_family(ms_prom *p, const char *name, ms_prom_type type, const char *help)
{
    assert(ms_prom_valid_metric_name(name));
    if (p->family && (p->family == name || strcmp(p->family, name) == 0))
        return;
    p->family = name;
    if (help) {
        ms_buf_printf(p->out, "# HELP %s ", name);
        escape_help(p->out, help);
        ms_buf_append(p->out, "\n", 1);
    }
    ms_buf_printf(p->out, "# TYPE %s %s\n", name, type_name(type));
}

/* Writes "name[suffix]{labels[,le="x"]} " (without the value). */
static void sample_start(ms_prom *p, const char *name, const char *suffix,
                         const ms_prom_label *labels, size_t nlabels, const char *le)
{
    ms_buf *b = p->out;
    ms_buf_puts(b, name);
    if (suffix)
        ms_buf_puts(b, suffix);
    if (nlabels || le) {
        ms_buf_append(b, "{", 1);
        for (size_t i = 0; i < nlabels; i++) {
            assert(ms_prom_valid_label_name(labels[i].name));
            assert(!le || strcmp(labels[i].name, "le") != 0);
            if (i)
                ms_buf_append(b, ",", 1);
            ms_buf_puts(b, labels[i].name);
            ms_buf_append(b, "=\"", 2);
            ms_prom_escape_label_value(b, labels[i].value ? labels[i].value : "");
            ms_buf_append(b, "\"", 1);
        }
        if (le) {
            if (nlabels)
                ms_buf_append(b, ",", 1);
            ms_buf_printf(b, "le=\"%s\"", le);
        }
        ms_buf_append(b, "}", 1);
    }
    ms_buf_append(b, " ", 1);
}

static void sample_u64(ms_prom *p, const char *name, const char *suffix,
                       const ms_prom_label *labels, size_t nlabels, const char *le, uint64_t v)
{
    sample_start(p, name, suffix, labels, nlabels, le);
    ms_buf_printf(p->out, "%" PRIu64 "\n", v);
}

static void sample_double(ms_prom *p, const char *name, const char *suffix,
                          const ms_prom_label *labels, size_t nlabels, double v)
{
    char num[32];
    ms_prom_format_double(num, v);
    sample_start(p, name, suffix, labels, nlabels, NULL);
    ms_buf_puts(p->out, num);
    ms_buf_append(p->out, "\n", 1);
}

void ms_prom_counter_u64(ms_prom *p, const char *name, const char *help,
                         const ms_prom_label *labels, size_t nlabels, uint64_t value)
{
    ms_prom_family(p, name, MS_PROM_COUNTER, help);
    sample_u64(p, name, NULL, labels, nlabels, NULL, value);
}

void ms_prom_counter_double(ms_prom *p, const char *name, const char *help,
                            const ms_prom_label *labels, size_t nlabels, double value)
{
    ms_prom_family(p, name, MS_PROM_COUNTER, help);
    sample_double(p, name, NULL, labels, nlabels, value);
}

void ms_prom_gauge_i64(ms_prom *p, const char *name, const char *help,
                       const ms_prom_label *labels, size_t nlabels, int64_t value)
{
    ms_prom_family(p, name, MS_PROM_GAUGE, help);
    sample_start(p, name, NULL, labels, nlabels, NULL);
    ms_buf_printf(p->out, "%" PRId64 "\n", value);
}

void ms_prom_gauge_double(ms_prom *p, const char *name, const char *help,
                          const ms_prom_label *labels, size_t nlabels, double value)
{
    ms_prom_family(p, name, MS_PROM_GAUGE, help);
    sample_double(p, name, NULL, labels, nlabels, value);
}

void ms_prom_histogram(ms_prom *p, const char *name, const char *help,
                       const ms_prom_label *labels, size_t nlabels,
                       const double *bounds, const uint64_t *counts, size_t nbounds,
                       double sum)
{
    ms_prom_family(p, name, MS_PROM_HISTOGRAM, help);
    uint64_t cum = 0;
    char le[32];
    for (size_t i = 0; i < nbounds; i++) {
        assert(isfinite(bounds[i]));
        assert(i == 0 || bounds[i - 1] < bounds[i]);
        cum += counts[i];
        ms_prom_format_double(le, bounds[i]);
        sample_u64(p, name, "_bucket", labels, nlabels, le, cum);
    }
    cum += counts[nbounds];
    sample_u64(p, name, "_bucket", labels, nlabels, "+Inf", cum);
    sample_double(p, name, "_sum", labels, nlabels, sum);
    sample_u64(p, name, "_count", labels, nlabels, NULL, cum);
}

size_t ms_prom_bucket_index(const double *bounds, size_t nbounds, double v)
{
    size_t lo = 0, hi = nbounds; /* first i with v <= bounds[i], else nbounds */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}
