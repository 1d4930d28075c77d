/* protocol.c: the docking protocol's frame codec; see protocol.h and
 * docs/docking-protocol.md. */
#include "dock/protocol_priv.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A payload buffer over this size is released after its frame. */
#define KEEP_BUF_MAX (64u * 1024u)
#define FIRST_BUF 4096u

const char *ms_dock_err_name(ms_dock_err e)
{
    switch (e) {
    case MS_DOCK_OK: return "ok";
    case MS_DOCK_E_UNKNOWN_TYPE: return "unknown frame type";
    case MS_DOCK_E_OVERSIZE: return "frame too large";
    case MS_DOCK_E_TRUNCATED: return "link ended inside a frame";
    case MS_DOCK_E_NOMEM: return "out of memory";
    case MS_DOCK_E_JSON: return "invalid JSON payload";
    case MS_DOCK_E_FIELD: return "missing or mistyped field";
    case MS_DOCK_E_RANGE: return "number out of range";
    case MS_DOCK_E_VERSION: return "unsupported protocol version";
    case MS_DOCK_E_SHORT: return "payload shorter than its fixed fields";
    case MS_DOCK_E_DIRECTION: return "frame type not allowed from this side";
    case MS_DOCK_E_STATE: return "decoder already failed";
    }
    return "unknown error";
}

const char *ms_dock_type_name(uint8_t type)
{
    switch (type) {
    case MS_DOCK_DOCK: return "Dock";
    case MS_DOCK_MOORED: return "Moored";
    case MS_DOCK_BOARDING: return "Boarding";
    case MS_DOCK_DISEMBARK: return "Disembark";
    case MS_DOCK_CARGO: return "Cargo";
    case MS_DOCK_CARGO_BINARY: return "CargoBinary";
    case MS_DOCK_HAIL: return "Hail";
    case MS_DOCK_HAUL: return "Haul";
    case MS_DOCK_REPLY: return "Reply";
    case MS_DOCK_READY: return "Ready";
    default: return NULL;
    }
}

/* ---------------------------------------------------------------- decoder */

void ms_dock_decoder_init(ms_dock_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof *d);
    if (max_frame == 0)
        max_frame = MS_DOCK_DEFAULT_MAX_FRAME;
    if (max_frame < MS_DOCK_MIN_MAX_FRAME)
        max_frame = MS_DOCK_MIN_MAX_FRAME;
    d->max_frame = max_frame;
}

void ms_dock_decoder_free(ms_dock_decoder *d)
{
    free(d->buf);
    d->buf = NULL;
    d->buf_cap = 0;
    d->have = 0;
}

static int fail(ms_dock_decoder *d, ms_dock_err e, const char *fmt, ...)
{
    d->err = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* A v1 link knows 0x01, 0x02, 0x10-0x12 (and 0x13 once agreed); a v3
 * link 0x01, 0x02 and 0x20-0x23. */
static bool type_known(const ms_dock_decoder *d, uint8_t t)
{
    if (t == MS_DOCK_DOCK || t == MS_DOCK_MOORED)
        return true;
    if (d->v3)
        return t >= MS_DOCK_HAIL && t <= MS_DOCK_READY;
    if (t == MS_DOCK_CARGO_BINARY)
        return d->accept_binary;
    return t >= MS_DOCK_BOARDING && t <= MS_DOCK_CARGO;
}

/* A v3 link never takes more than MS_DOCK_V3_MAX_FRAME, whatever max_frame says. */
static uint32_t max_frame_of(const ms_dock_decoder *d)
{
    return d->v3 && d->max_frame > MS_DOCK_V3_MAX_FRAME ? MS_DOCK_V3_MAX_FRAME : d->max_frame;
}

/* Validates a complete header; -1 on error. */
static int check_header(ms_dock_decoder *d, const uint8_t *h)
{
    uint32_t len = rd32(h + 1);
    if (!type_known(d, h[0])) {
        if (h[0] == MS_DOCK_CARGO_BINARY && !d->v3)
            return fail(d, MS_DOCK_E_UNKNOWN_TYPE,
                        "frame type 0x13 (CargoBinary) without the agreed \"binary\" feature");
        if (ms_dock_type_name(h[0]))
            return fail(d, MS_DOCK_E_UNKNOWN_TYPE, "frame type 0x%02x (%s) on a docking v%d link",
                        h[0], ms_dock_type_name(h[0]), d->v3 ? MS_DOCK_V3 : MS_DOCK_VERSION);
        return fail(d, MS_DOCK_E_UNKNOWN_TYPE, "unknown frame type 0x%02x", h[0]);
    }
    if (len > max_frame_of(d))
        return fail(d, MS_DOCK_E_OVERSIZE, "%s frame of %u bytes exceeds the maximum of %u",
                    ms_dock_type_name(h[0]), (unsigned)len, (unsigned)max_frame_of(d));
    return 0;
}

static void release_buf(ms_dock_decoder *d)
{
    if (d->buf_cap > KEEP_BUF_MAX) {
        free(d->buf);
        d->buf = NULL;
        d->buf_cap = 0;
    }
}

int ms_dock_decoder_feed(ms_dock_decoder *d, const uint8_t *data, size_t len,
                         size_t *consumed, ms_dock_frame *out)
{
    size_t used = 0;
    *consumed = 0;
    if (d->err != MS_DOCK_OK)
        return -1;
    /* The previous frame was delivered from the buffer: start afresh. */
    if (!d->in_payload && d->hdr_have == MS_DOCK_HEADER_LEN) {
        d->hdr_have = 0;
        d->have = 0;
        release_buf(d);
    }
    while (used < len) {
        if (!d->in_payload) {
            /* Fast path: a whole frame in data, nothing buffered. */
            if (d->hdr_have == 0 && len - used >= MS_DOCK_HEADER_LEN) {
                const uint8_t *h = data + used;
                if (check_header(d, h) < 0) {
                    *consumed = used;
                    return -1;
                }
                uint32_t flen = rd32(h + 1);
                if (len - used - MS_DOCK_HEADER_LEN >= flen) {
                    out->type = h[0];
                    out->len = flen;
                    out->payload = h + MS_DOCK_HEADER_LEN;
                    *consumed = used + MS_DOCK_HEADER_LEN + flen;
                    return 1;
                }
            }
            size_t take = MS_DOCK_HEADER_LEN - d->hdr_have;
            if (take > len - used)
                take = len - used;
            memcpy(d->hdr + d->hdr_have, data + used, take);
            d->hdr_have = (uint8_t)(d->hdr_have + take);
            used += take;
            if (d->hdr_have < MS_DOCK_HEADER_LEN)
                break;
            if (check_header(d, d->hdr) < 0) {
                *consumed = used;
                return -1;
            }
            d->in_payload = true;
            d->have = 0;
        }
        uint32_t flen = rd32(d->hdr + 1);
        uint32_t need = flen - d->have;
        uint32_t take = len - used < need ? (uint32_t)(len - used) : need;
        if (take > 0 && d->have + take > d->buf_cap) {
            /* Grow with the bytes that arrived, never past the frame. */
            uint64_t cap = d->buf_cap ? d->buf_cap : FIRST_BUF;
            while (cap < (uint64_t)d->have + take)
                cap *= 2;
            if (cap > flen)
                cap = flen;
            uint8_t *nb = realloc(d->buf, (size_t)cap);
            if (!nb) {
                *consumed = used;
                return fail(d, MS_DOCK_E_NOMEM, "out of memory for a frame of %u bytes",
                            (unsigned)flen);
            }
            d->buf = nb;
            d->buf_cap = (uint32_t)cap;
        }
        if (take > 0) {
            memcpy(d->buf + d->have, data + used, take);
            d->have += take;
            used += take;
        }
        if (d->have == flen) {
            d->in_payload = false;   /* hdr_have stays 5: reset on next call */
            out->type = d->hdr[0];
            out->len = flen;
            out->payload = flen ? d->buf : (const uint8_t *)"";
            *consumed = used;
            return 1;
        }
    }
    *consumed = used;
    return 0;
}

int ms_dock_decoder_finish(ms_dock_decoder *d)
{
    if (d->err != MS_DOCK_OK)
        return -1;
    if (d->in_payload)
        return fail(d, MS_DOCK_E_TRUNCATED,
                    "link ended inside a %s frame (%u of %u payload bytes)",
                    ms_dock_type_name(d->hdr[0]), (unsigned)d->have, (unsigned)rd32(d->hdr + 1));
    if (d->hdr_have > 0 && d->hdr_have < MS_DOCK_HEADER_LEN)
        return fail(d, MS_DOCK_E_TRUNCATED, "link ended inside a frame header (%u of 5 bytes)",
                    (unsigned)d->hdr_have);
    return 0;
}

size_t ms_dock_decoder_pending(const ms_dock_decoder *d)
{
    if (d->in_payload)
        return MS_DOCK_HEADER_LEN + (size_t)d->have;
    if (d->hdr_have < MS_DOCK_HEADER_LEN)
        return d->hdr_have;
    return 0;
}

ms_dock_err ms_dock_decoder_error(const ms_dock_decoder *d)
{
    return d->err;
}

const char *ms_dock_decoder_message(const ms_dock_decoder *d)
{
    return d->err == MS_DOCK_OK ? "" : d->msg;
}

bool ms_dock_type_allowed(uint8_t type, bool from_bay, unsigned features)
{
    switch (type) {
    case MS_DOCK_DOCK: return from_bay;
    case MS_DOCK_MOORED:
    case MS_DOCK_BOARDING: return !from_bay;
    case MS_DOCK_DISEMBARK:
    case MS_DOCK_CARGO: return true;
    case MS_DOCK_CARGO_BINARY: return (features & MS_DOCK_FEAT_BINARY) != 0;
    default: return false;
    }
}

bool ms_dock_v3_type_allowed(uint8_t type, bool from_bay)
{
    switch (type) {
    case MS_DOCK_DOCK:
    case MS_DOCK_REPLY:
    case MS_DOCK_READY: return from_bay;
    case MS_DOCK_MOORED:
    case MS_DOCK_HAIL: return !from_bay;
    case MS_DOCK_HAUL: return true;
    default: return false;
    }
}

/* ---------------------------------------------------------------- encoder */

void ms_dock_buf_free(ms_dock_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ms_dock_buf_reset(ms_dock_buf *b)
{
    b->len = 0;
}

static int reserve(ms_dock_buf *b, size_t more)
{
    if (more > SIZE_MAX - b->len)
        return MS_DOCK_E_NOMEM;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) {
        if (cap > SIZE_MAX / 2)
            return MS_DOCK_E_NOMEM;
        cap *= 2;
    }
    uint8_t *nd = realloc(b->data, cap);
    if (!nd)
        return MS_DOCK_E_NOMEM;
    b->data = nd;
    b->cap = cap;
    return 0;
}

void ms_dock_put_header(uint8_t out[MS_DOCK_HEADER_LEN], uint8_t type, uint32_t payload_len)
{
    out[0] = type;
    wr32(out + 1, payload_len);
}

int ms_dock_put_cargo_header(uint8_t out[MS_DOCK_CARGO_HEADER_LEN], uint8_t type,
                             uint32_t conn_id, size_t msg_len)
{
    if (msg_len > UINT32_MAX - 4)
        return MS_DOCK_E_OVERSIZE;
    ms_dock_put_header(out, type, (uint32_t)(msg_len + 4));
    wr32(out + MS_DOCK_HEADER_LEN, conn_id);
    return 0;
}

int ms_dock_encode_raw(ms_dock_buf *b, uint8_t type, const void *payload, size_t len)
{
    if (len > UINT32_MAX)
        return MS_DOCK_E_OVERSIZE;
    int rc = reserve(b, MS_DOCK_HEADER_LEN + len);
    if (rc)
        return rc;
    ms_dock_put_header(b->data + b->len, type, (uint32_t)len);
    if (len)
        memcpy(b->data + b->len + MS_DOCK_HEADER_LEN, payload, len);
    b->len += MS_DOCK_HEADER_LEN + len;
    return 0;
}

int ms_dock_encode_cargo(ms_dock_buf *b, uint32_t conn_id, const void *msg, size_t len,
                         bool binary)
{
    uint8_t h[MS_DOCK_CARGO_HEADER_LEN];
    int rc = ms_dock_put_cargo_header(h, binary ? MS_DOCK_CARGO_BINARY : MS_DOCK_CARGO,
                                      conn_id, len);
    if (rc)
        return rc;
    if ((rc = reserve(b, sizeof h + len)))
        return rc;
    memcpy(b->data + b->len, h, sizeof h);
    if (len)
        memcpy(b->data + b->len + sizeof h, msg, len);
    b->len += sizeof h + len;
    return 0;
}

/* Serializes obj (stolen) as a frame of this type. */
static int encode_json(ms_dock_buf *b, uint8_t type, json_t *obj)
{
    if (!obj)
        return MS_DOCK_E_NOMEM;
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!s)
        return MS_DOCK_E_NOMEM;
    int rc = ms_dock_encode_raw(b, type, s, strlen(s));
    free(s);
    return rc;
}

/* 0, MS_DOCK_E_FIELD (a string is not UTF-8) or MS_DOCK_E_NOMEM. */
static int set_str(json_t *o, const char *k, const char *v)
{
    if (!v)
        v = "";
    if (!ms_dock_utf8_valid((const uint8_t *)k, strlen(k))
        || !ms_dock_utf8_valid((const uint8_t *)v, strlen(v)))
        return MS_DOCK_E_FIELD;
    json_t *s = json_string(v);
    return s && json_object_set_new(o, k, s) == 0 ? 0 : MS_DOCK_E_NOMEM;
}

static bool set_int(json_t *o, const char *k, json_int_t v)
{
    json_t *n = json_integer(v);
    return n && json_object_set_new(o, k, n) == 0;
}

static bool set_features(json_t *o, unsigned features)
{
    features &= MS_DOCK_FEATURES_SUPPORTED;
    if (!features)
        return true;
    json_t *a = json_array();
    if (!a || json_object_set_new(o, "features", a) != 0)
        return false;
    if (features & MS_DOCK_FEAT_BINARY)
        if (json_array_append_new(a, json_string("binary")) != 0)
            return false;
    if (features & MS_DOCK_FEAT_RESUME)
        if (json_array_append_new(a, json_string("resume")) != 0)
            return false;
    return true;
}

int ms_dock_encode_dock(ms_dock_buf *b, const char *ship, unsigned features)
{
    json_t *o = json_object();
    int rc = MS_DOCK_E_NOMEM;
    if (!o || !set_int(o, "version", MS_DOCK_VERSION) || (rc = set_str(o, "ship", ship))
        || !set_features(o, features)) {
        json_decref(o);
        return rc ? rc : MS_DOCK_E_NOMEM;
    }
    return encode_json(b, MS_DOCK_DOCK, o);
}

int ms_dock_encode_moored(ms_dock_buf *b, const ms_dock_kv *config, size_t n_config,
                          unsigned features)
{
    json_t *o = json_object(), *c = json_object();
    if (!o || !c || !set_int(o, "version", MS_DOCK_VERSION)
        || json_object_set_new(o, "config", c) != 0) {
        json_decref(o);
        return MS_DOCK_E_NOMEM;
    }
    for (size_t i = 0; i < n_config; i++) {
        int rc = config[i].name ? set_str(c, config[i].name, config[i].value) : MS_DOCK_E_FIELD;
        if (rc) {
            json_decref(o);
            return rc;
        }
    }
    if (!set_features(o, features)) {
        json_decref(o);
        return MS_DOCK_E_NOMEM;
    }
    return encode_json(b, MS_DOCK_MOORED, o);
}

int ms_dock_encode_boarding(ms_dock_buf *b, uint32_t conn_id, const char *path,
                            const char *remote_addr, const ms_dock_kv *headers,
                            size_t n_headers)
{
    json_t *o = json_object(), *h = json_object();
    int rc = MS_DOCK_E_NOMEM;
    if (!o || !h || !set_int(o, "conn_id", conn_id) || (rc = set_str(o, "path", path))
        || (rc = set_str(o, "remote_addr", remote_addr))) {
        json_decref(h);
        json_decref(o);
        return rc ? rc : MS_DOCK_E_NOMEM;
    }
    rc = MS_DOCK_E_NOMEM;
    if (json_object_set_new(o, "headers", h) != 0) {
        json_decref(o);
        return rc;
    }
    for (size_t i = 0; i < n_headers; i++) {
        const char *name = headers[i].name, *value = headers[i].value ? headers[i].value : "";
        if (!name)
            continue;
        /* Find an earlier spelling of the same name. */
        const char *key = NULL;
        void *it;
        for (it = json_object_iter(h); it; it = json_object_iter_next(h, it))
            if (strcasecmp(json_object_iter_key(it), name) == 0) {
                key = json_object_iter_key(it);
                break;
            }
        if (!key) {
            if ((rc = set_str(h, name, value)))
                goto fail;
            continue;
        }
        if (!ms_dock_utf8_valid((const uint8_t *)value, strlen(value))) {
            rc = MS_DOCK_E_FIELD;
            goto fail;
        }
        const char *old = json_string_value(json_object_iter_value(it));
        const char *sep = strcasecmp(name, "cookie") == 0 ? "; " : ", ";
        size_t n = strlen(old) + strlen(sep) + strlen(value) + 1;
        char *joined = malloc(n);
        rc = MS_DOCK_E_NOMEM;
        if (!joined)
            goto fail;
        snprintf(joined, n, "%s%s%s", old, sep, value);
        json_t *js = json_string(joined);
        free(joined);
        if (!js || json_object_iter_set_new(h, it, js) != 0)
            goto fail;
    }
    return encode_json(b, MS_DOCK_BOARDING, o);
fail:
    json_decref(o);
    return rc;
}

static int load_object(const uint8_t *p, size_t len, json_t **root, const char *what,
                       char *err_msg, size_t err_len);

int ms_dock_encode_boarding_resumed(ms_dock_buf *b, const uint8_t *frame, size_t len)
{
    if (len < MS_DOCK_HEADER_LEN || frame[0] != MS_DOCK_BOARDING || rd32(frame + 1) != len - MS_DOCK_HEADER_LEN)
        return MS_DOCK_E_FIELD;
    json_t *o;
    int rc = load_object(frame + MS_DOCK_HEADER_LEN, len - MS_DOCK_HEADER_LEN, &o, "Boarding", NULL, 0);
    if (rc)
        return rc;
    if (json_object_set_new(o, "resumed", json_true()) != 0) {
        json_decref(o);
        return MS_DOCK_E_NOMEM;
    }
    return encode_json(b, MS_DOCK_BOARDING, o);
}

int ms_dock_encode_disembark(ms_dock_buf *b, uint32_t conn_id, uint16_t code,
                             const char *reason)
{
    json_t *o = json_object();
    int rc = MS_DOCK_E_NOMEM;
    if (!o || !set_int(o, "conn_id", conn_id) || !set_int(o, "code", code)
        || (rc = set_str(o, "reason", reason))) {
        json_decref(o);
        return rc ? rc : MS_DOCK_E_NOMEM;
    }
    return encode_json(b, MS_DOCK_DISEMBARK, o);
}

/* ---------------------------------------------------------------- parsing */

void ms_dock_perr_write(char *err_msg, size_t err_len, const char *fmt, ...)
{
    if (err_msg && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err_msg, err_len, fmt, ap);
        va_end(ap);
    }
}

/* Loads a JSON object; *root set on success. */
static int load_object(const uint8_t *p, size_t len, json_t **root, const char *what,
                       char *err_msg, size_t err_len)
{
    json_error_t je;
    *root = NULL;
    json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return perr(err_msg, err_len, MS_DOCK_E_JSON, "%s: invalid JSON: %s", what, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return perr(err_msg, err_len, MS_DOCK_E_JSON, "%s: payload is not a JSON object", what);
    }
    *root = j;
    return 0;
}

static int get_uint(json_t *o, const char *key, bool required, json_int_t max, json_int_t *v,
                    const char *what, char *err_msg, size_t err_len)
{
    json_t *n = json_object_get(o, key);
    if (!n) {
        if (required)
            return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: missing \"%s\"", what, key);
        return 0;
    }
    if (!json_is_integer(n))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: \"%s\" must be an integer", what, key);
    json_int_t x = json_integer_value(n);
    if (x < 0 || x > max)
        return perr(err_msg, err_len, MS_DOCK_E_RANGE, "%s: \"%s\" %lld is out of range 0..%lld",
                    what, key, (long long)x, (long long)max);
    *v = x;
    return 0;
}

static int get_str(json_t *o, const char *key, bool required, const char **v,
                   const char *what, char *err_msg, size_t err_len)
{
    json_t *s = json_object_get(o, key);
    if (!s) {
        if (required)
            return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: missing \"%s\"", what, key);
        *v = "";
        return 0;
    }
    if (!json_is_string(s))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: \"%s\" must be a string", what, key);
    *v = json_string_value(s);
    return 0;
}

static int get_version(json_t *o, int *version, const char *what, char *err_msg, size_t err_len)
{
    json_int_t v = 0;
    int rc = get_uint(o, "version", true, INT32_MAX, &v, what, err_msg, err_len);
    if (rc == MS_DOCK_E_RANGE)
        rc = MS_DOCK_E_VERSION;
    if (rc)
        return rc;
    if (v != MS_DOCK_VERSION)
        return perr(err_msg, err_len, MS_DOCK_E_VERSION,
                    "%s: protocol version %lld is not supported (this side speaks %d)",
                    what, (long long)v, MS_DOCK_VERSION);
    *version = (int)v;
    return 0;
}

/* "features": optional array of strings; unknown names are ignored. */
static int get_features(json_t *o, unsigned *features, const char *what, char *err_msg,
                        size_t err_len)
{
    *features = 0;
    json_t *a = json_object_get(o, "features");
    if (!a)
        return 0;
    if (!json_is_array(a))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: \"features\" must be an array", what);
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        if (!json_is_string(e))
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "%s: \"features\" must hold strings", what);
        if (strcmp(json_string_value(e), "binary") == 0)
            *features |= MS_DOCK_FEAT_BINARY;
        else if (strcmp(json_string_value(e), "resume") == 0)
            *features |= MS_DOCK_FEAT_RESUME;
    }
    return 0;
}

/* An object of string values into a borrowed kv array. */
static int get_string_map(json_t *o, const char *key, bool required, ms_dock_kv **kv, size_t *n,
                          const char *what, char *err_msg, size_t err_len)
{
    *kv = NULL;
    *n = 0;
    json_t *m = json_object_get(o, key);
    if (!m) {
        if (required)
            return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: missing \"%s\"", what, key);
        return 0;
    }
    if (!json_is_object(m))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "%s: \"%s\" must be an object", what, key);
    size_t count = json_object_size(m);
    if (count == 0)
        return 0;
    ms_dock_kv *arr = calloc(count, sizeof *arr);
    if (!arr)
        return perr(err_msg, err_len, MS_DOCK_E_NOMEM, "%s: out of memory", what);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v)) {
            free(arr);
            return perr(err_msg, err_len, MS_DOCK_E_FIELD,
                        "%s: \"%s\" value of \"%s\" must be a string", what, key, k);
        }
        arr[i].name = k;
        arr[i].value = json_string_value(v);
        i++;
    }
    *kv = arr;
    *n = i;
    return 0;
}

int ms_dock_parse_dock(const uint8_t *p, size_t len, ms_dock_hello *out, char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = load_object(p, len, &o, "Dock", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    if ((rc = get_version(o, &out->version, "Dock", err_msg, err_len))
        || (rc = get_str(o, "ship", true, &out->ship, "Dock", err_msg, err_len))
        || (rc = get_features(o, &out->features, "Dock", err_msg, err_len)))
        return rc;
    return 0;
}

int ms_dock_parse_moored(const uint8_t *p, size_t len, ms_dock_moored *out, char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = load_object(p, len, &o, "Moored", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    if ((rc = get_version(o, &out->version, "Moored", err_msg, err_len))
        || (rc = get_string_map(o, "config", false, &out->config, &out->n_config, "Moored",
                                err_msg, err_len))
        || (rc = get_features(o, &out->features, "Moored", err_msg, err_len)))
        return rc;
    return 0;
}

int ms_dock_parse_boarding(const uint8_t *p, size_t len, ms_dock_boarding *out, char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = load_object(p, len, &o, "Boarding", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    json_int_t id = 0;
    if ((rc = get_uint(o, "conn_id", true, UINT32_MAX, &id, "Boarding", err_msg, err_len))
        || (rc = get_str(o, "path", true, &out->path, "Boarding", err_msg, err_len))
        || (rc = get_str(o, "remote_addr", false, &out->remote_addr, "Boarding", err_msg, err_len))
        || (rc = get_string_map(o, "headers", false, &out->headers, &out->n_headers, "Boarding",
                                err_msg, err_len)))
        return rc;
    json_t *resumed = json_object_get(o, "resumed");
    if (resumed && !json_is_boolean(resumed))
        return perr(err_msg, err_len, MS_DOCK_E_FIELD, "Boarding: \"resumed\" must be true or false");
    out->resumed = resumed && json_is_true(resumed);
    out->conn_id = (uint32_t)id;
    return 0;
}

int ms_dock_parse_disembark(const uint8_t *p, size_t len, ms_dock_disembark *out, char *err_msg, size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *o;
    int rc = load_object(p, len, &o, "Disembark", err_msg, err_len);
    if (rc)
        return rc;
    out->json_ = o;
    json_int_t id = 0, code = 0;
    if ((rc = get_uint(o, "conn_id", true, UINT32_MAX, &id, "Disembark", err_msg, err_len))
        || (rc = get_uint(o, "code", true, UINT16_MAX, &code, "Disembark", err_msg, err_len))
        || (rc = get_str(o, "reason", false, &out->reason, "Disembark", err_msg, err_len)))
        return rc;
    out->conn_id = (uint32_t)id;
    out->code = (uint16_t)code;
    return 0;
}

int ms_dock_parse_cargo(const uint8_t *p, size_t len, uint32_t *conn_id,
                        const uint8_t **msg, size_t *msg_len)
{
    if (len < 4)
        return MS_DOCK_E_SHORT;
    *conn_id = rd32(p);
    *msg = p + 4;
    *msg_len = len - 4;
    return 0;
}

void ms_dock_hello_free(ms_dock_hello *m)
{
    json_decref(m->json_);
    memset(m, 0, sizeof *m);
}

void ms_dock_moored_free(ms_dock_moored *m)
{
    free(m->config);
    json_decref(m->json_);
    memset(m, 0, sizeof *m);
}

void ms_dock_boarding_free(ms_dock_boarding *m)
{
    free(m->headers);
    json_decref(m->json_);
    memset(m, 0, sizeof *m);
}

void ms_dock_disembark_free(ms_dock_disembark *m)
{
    json_decref(m->json_);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- helpers */

unsigned ms_dock_agree_features(unsigned offered)
{
    return offered & MS_DOCK_FEATURES_SUPPORTED;
}

bool ms_dock_utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1; cp = c & 0x1F; min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2; cp = c & 0x0F; min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

bool ms_dock_close_code_sendable(uint16_t code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    switch (code) {
    case 1000: case 1001: case 1002: case 1003:
    case 1007: case 1008: case 1009: case 1010: case 1011:
    case 1012: case 1013: case 1014:
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------- for protocol_v3.c */

int ms_dock_buf_reserve(ms_dock_buf *b, size_t more)
{
    return reserve(b, more);
}

int ms_dock_json_frame(ms_dock_buf *b, uint8_t type, json_t *obj)
{
    return encode_json(b, type, obj);
}

int ms_dock_json_set_str(json_t *o, const char *k, const char *v)
{
    return set_str(o, k, v);
}

bool ms_dock_json_set_int(json_t *o, const char *k, json_int_t v)
{
    return set_int(o, k, v);
}

int ms_dock_json_load_object(const uint8_t *p, size_t len, json_t **root, const char *what,
                             char *err_msg, size_t err_len)
{
    return load_object(p, len, root, what, err_msg, err_len);
}

int ms_dock_json_get_uint(json_t *o, const char *key, bool required, json_int_t max, json_int_t *v,
                          const char *what, char *err_msg, size_t err_len)
{
    return get_uint(o, key, required, max, v, what, err_msg, err_len);
}

int ms_dock_json_get_str(json_t *o, const char *key, bool required, const char **v,
                         const char *what, char *err_msg, size_t err_len)
{
    return get_str(o, key, required, v, what, err_msg, err_len);
}
