/* protocol_priv.h: helpers shared by the docking codec's files (protocol.c
 * for v1, protocol_v3.c for HTTP bays); not part of the codec's API. */
#ifndef MS_DOCK_PROTOCOL_PRIV_H
#define MS_DOCK_PROTOCOL_PRIV_H

#include "dock/protocol.h"

#include <jansson.h>

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
