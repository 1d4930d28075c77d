/* protocol_priv.h: helpers shared by the docking codec's files (protocol.c
 * for v1, protocol_v3.c for HTTP bays); not part of the codec's API. */
#ifndef MS_DOCK_PROTOCOL_PRIV_H
#define MS_DOCK_PROTOCOL_PRIV_H

#include "dock/protocol.h"

#include <jansson.h>

/* Writes the one-line reason into err_msg (when given). */
void ms_dock_perr_write(char *err_msg, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The reason written, and code as the value: a macro, so that the static
 * analyzer sees every error path return its (non-zero) code. */
#define perr(err_msg, err_len, code, ...) (ms_dock_perr_write((err_msg), (err_len), __VA_ARGS__), (code))

/* Big-endian u32 at p. */
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Writes v big-endian at p; returns the byte after it. */
static inline uint8_t *wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

/* Room for `more` bytes after b->len; 0 or MS_DOCK_E_NOMEM. */
int ms_dock_buf_reserve(ms_dock_buf *b, size_t more);
/* Serializes obj (stolen, NULL = MS_DOCK_E_NOMEM) compactly, keys in
 * insertion order, as one frame of this type. */
int ms_dock_json_frame(ms_dock_buf *b, uint8_t type, json_t *obj);
/* 0, MS_DOCK_E_FIELD (a string is not UTF-8) or MS_DOCK_E_NOMEM; v NULL = "". */
int ms_dock_json_set_str(json_t *o, const char *k, const char *v);
bool ms_dock_json_set_int(json_t *o, const char *k, json_int_t v);

/* A JSON object without duplicate keys; *root set on success. */
int ms_dock_json_load_object(const uint8_t *p, size_t len, json_t **root, const char *what,
                             char *err_msg, size_t err_len);
/* An integer in 0..max (MS_DOCK_E_RANGE outside, MS_DOCK_E_FIELD if not an
 * integer or missing while required; *v unchanged when absent). */
int ms_dock_json_get_uint(json_t *o, const char *key, bool required, json_int_t max, json_int_t *v,
                          const char *what, char *err_msg, size_t err_len);
/* A string (*v = "" when absent and not required). */
int ms_dock_json_get_str(json_t *o, const char *key, bool required, const char **v,
                         const char *what, char *err_msg, size_t err_len);

#endif
