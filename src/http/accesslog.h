/* accesslog.h: the access log. A worker notes each answered request as a
 * fixed-size record in its own bounded ring: no allocation, no lock, no
 * system call. One writer thread takes the records out of every ring a few
 * times a second, formats them as text or JSON lines and writes them in
 * batches to access_log_path (opened non-blocking, reopened on reload), or
 * hands them to Mothership's own output. When a ring is full (the file or
 * the reader cannot keep up) the record is dropped and counted: the data
 * plane never waits for the log. */
#ifndef MS_HTTP_ACCESSLOG_H
#define MS_HTTP_ACCESSLOG_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/logs.h"

#define MS_ALOG_RING 4096          /* records per worker: 200k requests/s per worker at one drain per 20 ms */
#define MS_ALOG_PATH_MAX 512       /* path bytes kept; a longer path is cut and marked */
#define MS_ALOG_MSG_PATH 64        /* path bytes in a JSON line's msg */
#define MS_ALOG_LINE_MAX 8192      /* one formatted line, at most (the worst record fits) */
#define MS_ALOG_DRAIN_MS 20        /* how often the writer looks at the rings */

/* One request as the worker saw it. Strings are copied (bounded): the
 * configuration they come from may be gone by the time it is written. */
typedef struct ms_alog_rec {
    uint64_t end_us;               /* wall clock, µs since the epoch, when the response was counted */
    uint64_t duration_us;          /* from the request's first byte */
    int64_t upstream_us;           /* request head sent to the ship or bay -> its response head; -1: none */
    uint64_t bytes;                /* bytes sent to the client for this response (head and body) */
    const char *method;            /* a static string, or NULL: unknown (a request cut before its method) */
    uint16_t status;
    uint16_t peer_port;            /* 0: unknown */
    uint8_t format;                /* MS_ACCESS_LOG_TEXT or MS_ACCESS_LOG_JSON */
    uint8_t proto;                 /* 10: HTTP/1.0, 11: HTTP/1.1, 20: HTTP/2 */
    bool path_cut;                 /* the path was longer than MS_ALOG_PATH_MAX */
    uint8_t reqid_len, peer_len, bind_len, target_len;
    uint16_t path_len;
    char reqid[128];
    char peer[64];
    char bind[64];
    char target[80];               /* entry (instance) name, "static", "redirect", "payload", or "" */
    char path[MS_ALOG_PATH_MAX];
} ms_alog_rec;

/* A single-producer (its worker), single-consumer (the writer) ring. */
typedef struct ms_alog_ring {
    alignas(64) uint64_t head;     /* atomic: records committed by the worker */
    alignas(64) uint64_t tail;     /* atomic: records taken by the writer */
    uint64_t dropped;              /* atomic: records the ring had no room for */
    ms_alog_rec *recs;             /* MS_ALOG_RING */
} ms_alog_ring;

/* Worker: the next free record, or NULL when the ring is full (the drop is
 * counted). Fill it, then ms_alog_commit. */
static inline ms_alog_rec *ms_alog_reserve(ms_alog_ring *r)
{
    uint64_t h = r->head; /* only this thread writes it */
    if (h - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= MS_ALOG_RING) {
        __atomic_fetch_add(&r->dropped, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    return &r->recs[h % MS_ALOG_RING];
}

static inline void ms_alog_commit(ms_alog_ring *r)
{
    __atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
}

typedef struct ms_alog ms_alog;

/* nrings rings (one per worker), and with start the writer thread. path:
 * the file (created 0644, appended to), or NULL: each line goes to log.
 * NULL with a reason when the file cannot be opened or memory is short. */
ms_alog *ms_alog_new(unsigned nrings, const char *path, ms_log *log, bool start, char *why, size_t why_len);
/* Start the writer thread if it is not running (a reload turned the log
 * on). Control loop. */
bool ms_alog_start(ms_alog *a, char *why, size_t why_len);
ms_alog_ring *ms_alog_ring_at(ms_alog *a, unsigned i);
/* Open path (NULL: Mothership's output) again, for a reload or a rotated
 * file; the writer switches to it at its next pass, after what it holds
 * for the old one. false + why: the old output stays. Control loop. */
bool ms_alog_reopen(ms_alog *a, const char *path, char *why, size_t why_len);
/* Write what the rings hold (a bounded wait for a stuck output), stop the
 * writer and free. The workers must have stopped. */
void ms_alog_free(ms_alog *a);

uint64_t ms_alog_lines(const ms_alog *a);   /* lines written (or handed to Mothership's output) */
uint64_t ms_alog_dropped(const ms_alog *a); /* lines lost: full rings, failed writes, a full output */

/* One record as a line ending in '\n' (docs/cli.md "Access log"); returns
 * its length (at most cap - 1, cap >= MS_ALOG_LINE_MAX). */
size_t ms_alog_format(const ms_alog_rec *r, char *out, size_t cap);

#endif
