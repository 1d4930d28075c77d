/* protocol_v3.c: docking v3 (HTTP bays) payload codec; see protocol.h and
 * docs/docking-protocol.md, "HTTP bays (docking v3)".
 *
 * Dock and Moored are JSON like v1 (with version 3); Hail, Haul, Reply and
 * Ready are binary: big-endian integers and strings as u32 length + bytes.
 * Encoders check the framing (sizes, a file path only with kind file) and
 * leave content to the caller, so tests can build hostile frames; parsers
 * are strict and bounded by the payload they are given. */
#include "dock/protocol_priv.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HAIL_FIXED 16u    /* request_id u32 | content_length u64 | param_count u32 */
#define REPLY_FIXED 11u   /* request_id u32 | status u16 | kind u8 | header_count u32 */
#define HAUL_FIXED 5u     /* request_id u32 | flags u8 */
#define READY_LEN 4u

/* ---------------------------------------------------------------- bytes */

/* 0 when a payload of len bytes (what: the frame's name) is within a frame
 * and holds its fixed part; else the error, in err_msg. */
static int check_len(const char *what, size_t len, unsigned fixed, char *err_msg, size_t err_len)
{
    if (len > MS_DOCK_V3_MAX_FRAME)
        return perr(err_msg, err_len, MS_DOCK_E_OVERSIZE, "%s: %zu bytes, over the %u of a frame",
                    what, len, MS_DOCK_V3_MAX_FRAME);
    if (len < fixed)
        return perr(err_msg, err_len, MS_DOCK_E_SHORT,
                    "%s: %zu bytes, shorter than its %u fixed bytes", what, len, fixed);
    return 0;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

static uint8_t *wr64(uint8_t *p, uint64_t v)
{
    return wr32(wr32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

static uint8_t *wr_str(uint8_t *p, const char *s, size_t n)
{
    p = wr32(p, (uint32_t)n);
    if (n)
        memcpy(p, s, n);
    return p + n;
}

/* Reserves a whole frame of payload_len bytes and writes its header;
 * returns where the payload goes, or NULL (*rc set). */
static uint8_t *frame_start(ms_dock_buf *b, uint8_t type, size_t payload_len, int *rc)
{
    if (payload_len > MS_DOCK_V3_MAX_FRAME) {
        *rc = MS_DOCK_E_OVERSIZE;
        return NULL;
    }
    if ((*rc = ms_dock_buf_reserve(b, MS_DOCK_HEADER_LEN + payload_len)))
        return NULL;
    uint8_t *p = b->data + b->len;
    ms_dock_put_header(p, type, (uint32_t)payload_len);
    return p + MS_DOCK_HEADER_LEN;
}

/* *size = bytes the pairs take on the wire; MS_DOCK_E_FIELD when a name
 * (or a value with a length) is missing, MS_DOCK_E_OVERSIZE when they do not
 * fit in a frame (checked as it goes, so the sum cannot overflow). */
static int pairs_size(const ms_dock_param *v, size_t n, size_t *size)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].name || (!v[i].value && v[i].value_len))
            return MS_DOCK_E_FIELD;
        if (v[i].name_len > MS_DOCK_V3_MAX_FRAME || v[i].value_len > MS_DOCK_V3_MAX_FRAME)
            return MS_DOCK_E_OVERSIZE;
        total += 8 + v[i].name_len + v[i].value_len;
        if (total > MS_DOCK_V3_MAX_FRAME)
            return MS_DOCK_E_OVERSIZE;
    }
    *size = total;
    return 0;
}

static uint8_t *wr_pairs(uint8_t *p, const ms_dock_param *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p = wr_str(p, v[i].name, v[i].name_len);
        p = wr_str(p, v[i].value, v[i].value_len);
    }
    return p;
}

/* A reader over a payload that never goes past its end. */
typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

static bool rd_str(reader *r, const char **s, size_t *n)
{
    if (r->left < 4)
        return false;
    uint32_t len = rd32(r->p);
    if (len > r->left - 4)
        return false;
    *s = (const char *)r->p + 4;
    *n = len;
    r->p += 4 + (size_t)len;
    r->left -= 4 + (size_t)len;
    return true;
}

/* Reads count pairs into a new array (NULL when count is 0). Each pair
 * takes at least 8 bytes, so a count the payload cannot hold is refused
 * before anything is allocated. */
static int rd_pairs(reader *r, uint32_t count, size_t max, ms_dock_param **out,
                    const char *what, const char *noun, char *err_msg, size_t err_len)
{
    *out = NULL;
    if (max && count > max)
        return perr(err_msg, err_len, MS_DOCK_E_RANGE, "%s: %u %s, more than the %zu allowed",
                    what, (unsigned)count, noun, max);
    if (count > r->left / 8)
        return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                    "%s: %u %s do not fit in the %zu bytes left", what, (unsigned)count, noun,
                    r->left);
    if (count == 0)
        return 0;
    ms_dock_param *v = calloc(count, sizeof *v);
    if (!v)
        return perr(err_msg, err_len, MS_DOCK_E_NOMEM, "%s: out of memory", what);
    for (uint32_t i = 0; i < count; i++) {
        if (!rd_str(r, &v[i].name, &v[i].name_len) || !rd_str(r, &v[i].value, &v[i].value_len)) {
            free(v);
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "%s: pair %u of %u runs past the end of the payload", what,
                        (unsigned)i + 1, (unsigned)count);
        }
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- Dock, Moored */

int ms_dock_parse_dock3(const uint8_t *p, size_t len, ms_dock_hello3 *out, char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = ms_dock_json_load_object(p, len, &o, "Dock", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    json_int_t version = 0, pid = 0, threads = 0;
    rc = ms_dock_json_get_uint(o, "version", true, INT32_MAX, &version, "Dock", err_msg, err_len);
    if (rc)
        return rc == MS_DOCK_E_RANGE ? MS_DOCK_E_VERSION : rc;
    if (version != MS_DOCK_V3)
        return perr(err_msg, err_len, MS_DOCK_E_VERSION,
                    "Dock: protocol version %lld on an HTTP bay's link (it speaks %d)",
                    (long long)version, MS_DOCK_V3);
    if ((rc = ms_dock_json_get_str(o, "ship", true, &out->ship, "Dock", err_msg, err_len))
        || (rc = ms_dock_json_get_uint(o, "pid", true, INT32_MAX, &pid, "Dock", err_msg, err_len))
        || (rc = ms_dock_json_get_uint(o, "threads", true, INT32_MAX, &threads, "Dock", err_msg,
                                       err_len)))
        return rc;
    if (pid == 0)
        return perr(err_msg, err_len, MS_DOCK_E_RANGE, "Dock: \"pid\" must be positive");
    if (threads < 1 || threads > MS_DOCK_V3_MAX_THREADS)
        return perr(err_msg, err_len, MS_DOCK_E_RANGE, "Dock: \"threads\" %lld is out of range 1..%u",
                    (long long)threads, MS_DOCK_V3_MAX_THREADS);
    out->pid = (uint32_t)pid;
    out->threads = (uint32_t)threads;
    return 0;
}

void ms_dock_hello3_free(ms_dock_hello3 *m)
{
    json_decref(m->json_);
    memset(m, 0, sizeof *m);
}

int ms_dock_encode_dock3(ms_dock_buf *b, const char *ship, uint32_t pid, uint32_t threads)
{
    json_t *o = json_object();
    int rc = MS_DOCK_E_NOMEM;
    if (!o || !ms_dock_json_set_int(o, "version", MS_DOCK_V3)
        || (rc = ms_dock_json_set_str(o, "ship", ship)) || !ms_dock_json_set_int(o, "pid", pid)
        || !ms_dock_json_set_int(o, "threads", threads)) {
        json_decref(o);
        return rc ? rc : MS_DOCK_E_NOMEM;
    }
    return ms_dock_json_frame(b, MS_DOCK_DOCK, o);
}

int ms_dock_encode_moored3(ms_dock_buf *b, const ms_dock_kv *config, size_t n_config)
{
    json_t *o = json_object(), *c = json_object();
    if (!o || !c || !ms_dock_json_set_int(o, "version", MS_DOCK_V3)
        || json_object_set_new(o, "config", c) != 0) {
        json_decref(o);
        if (!o)
            json_decref(c);
        return MS_DOCK_E_NOMEM;
    }
    for (size_t i = 0; i < n_config; i++) {
        int rc = config[i].name ? ms_dock_json_set_str(c, config[i].name, config[i].value)
                                : MS_DOCK_E_FIELD;
        if (rc) {
            json_decref(o);
            return rc;
        }
    }
    return ms_dock_json_frame(b, MS_DOCK_MOORED, o);
}

int ms_dock_parse_moored3(const uint8_t *p, size_t len, ms_dock_moored *out, char *err_msg,
                          size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = ms_dock_json_load_object(p, len, &o, "Moored", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    json_int_t version = 0;
    rc = ms_dock_json_get_uint(o, "version", true, INT32_MAX, &version, "Moored", err_msg, err_len);
    if (rc)
        return rc == MS_DOCK_E_RANGE ? MS_DOCK_E_VERSION : rc;
    if (version < MS_DOCK_V3)
        return perr(err_msg, err_len, MS_DOCK_E_VERSION,
                    "Moored: protocol version %lld is below %d", (long long)version, MS_DOCK_V3);
    out->version = (int)version;
    json_t *c = json_object_get(o, "config");
    if (!c)
        return 0;
    if (!json_is_object(c))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Moored: \"config\" must be an object");
    size_t n = json_object_size(c);
    if (n == 0)
        return 0;
    out->config = calloc(n, sizeof *out->config);
    if (!out->config)
        return perr(err_msg, err_len, MS_DOCK_E_NOMEM, "Moored: out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(c, k, v) {
        if (!json_is_string(v))
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "Moored: \"config\" value of \"%s\" must be a string", k);
        out->config[out->n_config].name = k;
        out->config[out->n_config].value = json_string_value(v);
        out->n_config++;
    }
    return 0;
}

/* ---------------------------------------------------------------- Hail */

int ms_dock_encode_hail(ms_dock_buf *b, uint32_t request_id, uint64_t content_length,
                        const ms_dock_param *params, size_t n_params)
{
    if (n_params > UINT32_MAX)
        return MS_DOCK_E_RANGE;
    size_t ps = 0;
    int rc = pairs_size(params, n_params, &ps);
    if (rc)
        return rc;
    uint8_t *p = frame_start(b, MS_DOCK_HAIL, HAIL_FIXED + ps, &rc);
    if (!p)
        return rc;
    p = wr32(p, request_id);
    p = wr64(p, content_length);
    p = wr32(p, (uint32_t)n_params);
    p = wr_pairs(p, params, n_params);
    assert(p == b->data + b->len + MS_DOCK_HEADER_LEN + HAIL_FIXED + ps);
    b->len += MS_DOCK_HEADER_LEN + HAIL_FIXED + ps;
    return 0;
}

int ms_dock_parse_hail(const uint8_t *p, size_t len, ms_dock_hail *out, size_t max_params,
                       char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    int rc = check_len("Hail", len, HAIL_FIXED, err_msg, err_len);
    if (rc)
        return rc;
    reader r = { p + HAIL_FIXED, len - HAIL_FIXED };
    uint32_t count = rd32(p + 12);
    rc = rd_pairs(&r, count, max_params, &out->params, "Hail", "params", err_msg, err_len);
    if (rc)
        return rc;
    out->n_params = count;
    if (r.left) {
        ms_dock_hail_free(out);
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Hail: %zu bytes left after the params",
                    r.left);
    }
    out->request_id = rd32(p);
    out->content_length = rd64(p + 4);
    return 0;
}

void ms_dock_hail_free(ms_dock_hail *m)
{
    free(m->params);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- Haul */

void ms_dock_put_haul_header(uint8_t out[MS_DOCK_HAUL_HEADER_LEN], uint32_t request_id, bool fin,
                             size_t data_len)
{
    assert(data_len <= MS_DOCK_V3_MAX_FRAME - HAUL_FIXED);
    ms_dock_put_header(out, MS_DOCK_HAUL, (uint32_t)(data_len + HAUL_FIXED));
    wr32(out + MS_DOCK_HEADER_LEN, request_id);
    out[MS_DOCK_HEADER_LEN + 4] = fin ? MS_DOCK_HAUL_FIN : 0;
}

int ms_dock_encode_haul(ms_dock_buf *b, uint32_t request_id, bool fin, const void *data, size_t len)
{
    if (len > MS_DOCK_V3_MAX_FRAME - HAUL_FIXED)
        return MS_DOCK_E_OVERSIZE;
    if (len && !data)
        return MS_DOCK_E_FIELD;
    int rc = ms_dock_buf_reserve(b, MS_DOCK_HAUL_HEADER_LEN + len);
    if (rc)
        return rc;
    ms_dock_put_haul_header(b->data + b->len, request_id, fin, len);
    if (len)
        memcpy(b->data + b->len + MS_DOCK_HAUL_HEADER_LEN, data, len);
    b->len += MS_DOCK_HAUL_HEADER_LEN + len;
    return 0;
}

int ms_dock_parse_haul(const uint8_t *p, size_t len, uint32_t *request_id, bool *fin,
                       const uint8_t **data, size_t *data_len)
{
    if (len > MS_DOCK_V3_MAX_FRAME)
        return MS_DOCK_E_OVERSIZE;
    if (len < HAUL_FIXED)
        return MS_DOCK_E_SHORT;
    if (p[4] & ~MS_DOCK_HAUL_FIN)
        return MS_DOCK_E_FIELD;
    *request_id = rd32(p);
    *fin = (p[4] & MS_DOCK_HAUL_FIN) != 0;
    *data = p + HAUL_FIXED;
    *data_len = len - HAUL_FIXED;
    return 0;
}

/* ---------------------------------------------------------------- Reply */

static bool is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* 0 or the index + 1 of the first pair that is no valid response header. */
static size_t bad_header(const ms_dock_param *h, size_t n, const char **why)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == 0) {
            *why = "an empty name";
            return i + 1;
        }
        for (size_t k = 0; k < h[i].name_len; k++)
            if (!is_tchar((uint8_t)h[i].name[k])) {
                *why = "a name that is not a token";
                return i + 1;
            }
        for (size_t k = 0; k < h[i].value_len; k++) {
            char c = h[i].value[k];
            if (c == '\r' || c == '\n' || c == '\0') {
                *why = "CR, LF or NUL in the value";
                return i + 1;
            }
        }
    }
    return 0;
}

static bool kind_known(uint8_t kind)
{
    return kind == MS_DOCK_REPLY_EMPTY || kind == MS_DOCK_REPLY_STREAM || kind == MS_DOCK_REPLY_FILE
        || kind == MS_DOCK_REPLY_TUNNEL;
}

int ms_dock_parse_reply(const uint8_t *p, size_t len, ms_dock_reply *out, size_t max_headers,
                        char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    int rc = check_len("Reply", len, REPLY_FIXED, err_msg, err_len);
    if (rc)
        return rc;
    uint16_t status = (uint16_t)(p[4] << 8 | p[5]);
    uint8_t kind = p[6];
    if (status < 100 || status > 599)
        return perr(err_msg, err_len, MS_DOCK_E_RANGE, "Reply: status %u is out of range 100..599",
                    (unsigned)status);
    if (!kind_known(kind))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Reply: unknown kind %u", (unsigned)kind);
    if (kind == MS_DOCK_REPLY_FILE && status != 200)
        return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                    "Reply: kind file with status %u (only 200 may be a file)", (unsigned)status);
    reader r = { p + REPLY_FIXED, len - REPLY_FIXED };
    uint32_t count = rd32(p + 7);
    rc = rd_pairs(&r, count, max_headers, &out->headers, "Reply", "headers", err_msg, err_len);
    if (rc)
        return rc;
    out->n_headers = count;
    const char *why = "";
    size_t bad = bad_header(out->headers, out->n_headers, &why);
    if (bad) {
        ms_dock_reply_free(out);
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Reply: header %zu has %s", bad, why);
    }
    if (kind == MS_DOCK_REPLY_FILE) {
        if (!rd_str(&r, &out->file_path, &out->file_path_len)) {
            ms_dock_reply_free(out);
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "Reply: kind file without a whole path after the headers");
        }
        if (out->file_path_len == 0 || out->file_path[0] != '/'
            || memchr(out->file_path, '\0', out->file_path_len)) {
            ms_dock_reply_free(out);
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "Reply: the file path is not absolute or holds a NUL");
        }
    }
    if (r.left) {
        ms_dock_reply_free(out);
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Reply: %zu bytes left after the %s",
                    r.left, kind == MS_DOCK_REPLY_FILE ? "file path" : "headers");
    }
    out->request_id = rd32(p);
    out->status = status;
    out->kind = kind;
    return 0;
}

void ms_dock_reply_free(ms_dock_reply *m)
{
    free(m->headers);
    memset(m, 0, sizeof *m);
}

int ms_dock_encode_reply(ms_dock_buf *b, uint32_t request_id, uint16_t status, uint8_t kind,
                         const ms_dock_param *headers, size_t n_headers, const char *file_path,
                         size_t file_path_len)
{
    if (n_headers > UINT32_MAX)
        return MS_DOCK_E_RANGE;
    bool file = kind == MS_DOCK_REPLY_FILE;
    if (file != (file_path != NULL))
        return MS_DOCK_E_FIELD;
    size_t hs = 0;
    int rc = pairs_size(headers, n_headers, &hs);
    if (rc)
        return rc;
    if (file && file_path_len > MS_DOCK_V3_MAX_FRAME)
        return MS_DOCK_E_OVERSIZE;
    size_t total = REPLY_FIXED + hs + (file ? 4 + file_path_len : 0);
    uint8_t *p = frame_start(b, MS_DOCK_REPLY, total, &rc);
    if (!p)
        return rc;
    p = wr32(p, request_id);
    *p++ = (uint8_t)(status >> 8);
    *p++ = (uint8_t)status;
    *p++ = kind;
    p = wr32(p, (uint32_t)n_headers);
    p = wr_pairs(p, headers, n_headers);
    if (file)
        p = wr_str(p, file_path, file_path_len);
    assert(p == b->data + b->len + MS_DOCK_HEADER_LEN + total);
    b->len += MS_DOCK_HEADER_LEN + total;
    return 0;
}

/* ---------------------------------------------------------------- Ready */

int ms_dock_parse_ready(const uint8_t *p, size_t len, uint32_t *request_id)
{
    if (len < READY_LEN)
        return MS_DOCK_E_SHORT;
    if (len > READY_LEN)
        return MS_DOCK_E_FIELD;
    *request_id = rd32(p);
    return 0;
}

int ms_dock_encode_ready(ms_dock_buf *b, uint32_t request_id)
{
    int rc;
    uint8_t *p = frame_start(b, MS_DOCK_READY, READY_LEN, &rc);
    if (!p)
        return rc;
    wr32(p, request_id);
    b->len += MS_DOCK_HEADER_LEN + READY_LEN;
    return 0;
}
