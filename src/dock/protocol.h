/* protocol.h: the docking protocol's frame codec (docs/docking-protocol.md).
 *
 * Socket-independent and allocation-bounded: an incremental decoder that is
 * fed link bytes in any split and yields whole frames, encoders that append
 * frames to a growable buffer, and strict parsers of the JSON payloads.
 * Byte-compatible with docking protocol v1; the "binary" feature (negotiated
 * through Dock/Moored) adds frame type 0x13 CargoBinary, the "resume"
 * feature adds "resumed" to Boarding (clients kept across a bay's restart). */
#ifndef MS_DOCK_PROTOCOL_H
#define MS_DOCK_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MS_DOCK_VERSION 1
#define MS_DOCK_HEADER_LEN 5                      /* type + u32 BE length */
#define MS_DOCK_CARGO_HEADER_LEN 9                /* frame header + u32 BE conn_id */
#define MS_DOCK_DEFAULT_MAX_FRAME (16u * 1024u * 1024u)
#define MS_DOCK_MIN_MAX_FRAME 64u                 /* smallest accepted limit */

/* Frame types. */
enum {
    MS_DOCK_DOCK = 0x01,          /* bay -> Mothership, JSON */
    MS_DOCK_MOORED = 0x02,        /* Mothership -> bay, JSON */
    MS_DOCK_BOARDING = 0x10,      /* Mothership -> bay, JSON */
    MS_DOCK_DISEMBARK = 0x11,     /* both, JSON */
    MS_DOCK_CARGO = 0x12,         /* both, u32 BE conn_id + text message */
    MS_DOCK_CARGO_BINARY = 0x13,  /* both, only with the "binary" feature */
};

/* Feature bits negotiated in Dock/Moored ("features": ["binary", "resume"]). */
enum {
    MS_DOCK_FEAT_BINARY = 1u << 0,
    MS_DOCK_FEAT_RESUME = 1u << 1,    /* clients held while the bay is away, boarded again */
};
#define MS_DOCK_FEATURES_SUPPORTED (MS_DOCK_FEAT_BINARY | MS_DOCK_FEAT_RESUME)

typedef enum {
    MS_DOCK_OK = 0,
    MS_DOCK_E_UNKNOWN_TYPE,   /* frame type not defined (or 0x13 not agreed) */
    MS_DOCK_E_OVERSIZE,       /* length over the link's maximum */
    MS_DOCK_E_TRUNCATED,      /* link ended inside a frame */
    MS_DOCK_E_NOMEM,
    MS_DOCK_E_JSON,           /* payload is not a JSON object */
    MS_DOCK_E_FIELD,          /* missing field or wrong JSON type */
    MS_DOCK_E_RANGE,          /* number out of range (conn_id u32, code u16) */
    MS_DOCK_E_VERSION,        /* unsupported protocol version */
    MS_DOCK_E_SHORT,          /* Cargo shorter than its 4-byte conn_id, a v3 payload than its fixed part */
    MS_DOCK_E_DIRECTION,      /* valid type, but not allowed from this peer */
    MS_DOCK_E_STATE,          /* decoder already failed */
} ms_dock_err;

const char *ms_dock_err_name(ms_dock_err e);
/* "Dock", "Moored", ... or NULL when the type is unknown. */
const char *ms_dock_type_name(uint8_t type);

/* ---- decoding ---- */

typedef struct {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;   /* valid until the next feed/free call */
} ms_dock_frame;

typedef struct {
    uint32_t max_frame;       /* payload bytes; over it is MS_DOCK_E_OVERSIZE */
    bool accept_binary;       /* 0x13 allowed (after the feature is agreed) */
    bool v3;                  /* an HTTP bay's link: 0x01, 0x02 and 0x20-0x23 only,
                               * payloads of at most MS_DOCK_V3_MAX_FRAME */
    /* internal */
    uint8_t hdr[MS_DOCK_HEADER_LEN];
    uint8_t hdr_have;
    bool in_payload;
    uint8_t *buf;
    uint32_t buf_cap;
    uint32_t have;
    ms_dock_err err;
    char msg[160];
} ms_dock_decoder;

/* max_frame 0 = MS_DOCK_DEFAULT_MAX_FRAME; values under
 * MS_DOCK_MIN_MAX_FRAME are raised to it. */
void ms_dock_decoder_init(ms_dock_decoder *d, uint32_t max_frame);
void ms_dock_decoder_free(ms_dock_decoder *d);

/* Feeds up to len bytes. Returns 1 with *out set when a frame is complete
 * (*consumed says how many bytes were used: call again with the rest), 0
 * when every byte was consumed and no frame is complete yet, -1 on a
 * protocol error (ms_dock_decoder_error/_message; the decoder stays failed).
 * A frame that lies whole in data is returned without copying. */
int ms_dock_decoder_feed(ms_dock_decoder *d, const uint8_t *data, size_t len,
                         size_t *consumed, ms_dock_frame *out);
/* At end of stream: 0 if the link ended between frames, -1 (and
 * MS_DOCK_E_TRUNCATED) if it ended inside one. */
int ms_dock_decoder_finish(ms_dock_decoder *d);
/* Bytes of the frame in progress (0 between frames). */
size_t ms_dock_decoder_pending(const ms_dock_decoder *d);
ms_dock_err ms_dock_decoder_error(const ms_dock_decoder *d);
const char *ms_dock_decoder_message(const ms_dock_decoder *d);

/* Whether a frame of this type may come from the bay (from_bay) or from
 * Mothership, given the agreed features. */
bool ms_dock_type_allowed(uint8_t type, bool from_bay, unsigned features);

/* ---- encoding ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} ms_dock_buf;

void ms_dock_buf_free(ms_dock_buf *b);
void ms_dock_buf_reset(ms_dock_buf *b);   /* len = 0, keeps the memory */

/* Headers for gather writes: 5 bytes, or 9 for Cargo (type is CARGO or
 * CARGO_BINARY; len is the message length without the conn_id). */
void ms_dock_put_header(uint8_t out[MS_DOCK_HEADER_LEN], uint8_t type, uint32_t payload_len);
int ms_dock_put_cargo_header(uint8_t out[MS_DOCK_CARGO_HEADER_LEN], uint8_t type,
                             uint32_t conn_id, size_t msg_len);

typedef struct {
    const char *name;
    const char *value;
} ms_dock_kv;

/* Each appends one frame to b; 0 or an ms_dock_err (nothing appended).
 * features: only bits in MS_DOCK_FEATURES_SUPPORTED are written; 0 writes no
 * "features" key at all (the exact v1 payload). */
int ms_dock_encode_dock(ms_dock_buf *b, const char *ship, unsigned features);
int ms_dock_encode_moored(ms_dock_buf *b, const ms_dock_kv *config, size_t n_config,
                          unsigned features);
/* Header values whose names are equal ignoring case are joined with ", "
 * ("; " for Cookie) under the first spelling. remote_addr may be NULL (""). */
int ms_dock_encode_boarding(ms_dock_buf *b, uint32_t conn_id, const char *path,
                            const char *remote_addr, const ms_dock_kv *headers,
                            size_t n_headers);
/* The same Boarding again with "resumed": true: frame is a whole Boarding
 * frame (header and payload) as ms_dock_encode_boarding wrote it. */
int ms_dock_encode_boarding_resumed(ms_dock_buf *b, const uint8_t *frame, size_t len);
int ms_dock_encode_disembark(ms_dock_buf *b, uint32_t conn_id, uint16_t code,
                             const char *reason);
int ms_dock_encode_cargo(ms_dock_buf *b, uint32_t conn_id, const void *msg, size_t len,
                         bool binary);
/* Any frame with a raw payload (tests, tools). */
int ms_dock_encode_raw(ms_dock_buf *b, uint8_t type, const void *payload, size_t len);

/* ---- payload parsing (strict) ----
 * Parsed strings and arrays borrow from a JSON document owned by the
 * message: free with the matching _free (safe on a zeroed struct, and after
 * a failed parse). Unknown keys are ignored; duplicate keys, embedded NULs,
 * wrong types and out-of-range numbers are errors. err_msg (optional,
 * err_len bytes) receives a one-line reason. */

typedef struct {
    int version;
    const char *ship;
    unsigned features;        /* known feature bits named by the bay */
    void *json_;
} ms_dock_hello;

typedef struct {
    int version;
    ms_dock_kv *config;
    size_t n_config;
    unsigned features;
    void *json_;
} ms_dock_moored;

typedef struct {
    uint32_t conn_id;
    const char *path;
    const char *remote_addr;
    ms_dock_kv *headers;
    size_t n_headers;
    bool resumed;             /* "resumed": true (the "resume" feature) */
    void *json_;
} ms_dock_boarding;

typedef struct {
    uint32_t conn_id;
    uint16_t code;
    const char *reason;       /* "" when absent */
    void *json_;
} ms_dock_disembark;

int ms_dock_parse_dock(const uint8_t *p, size_t len, ms_dock_hello *out, char *err_msg, size_t err_len);
int ms_dock_parse_moored(const uint8_t *p, size_t len, ms_dock_moored *out, char *err_msg, size_t err_len);
int ms_dock_parse_boarding(const uint8_t *p, size_t len, ms_dock_boarding *out, char *err_msg, size_t err_len);
int ms_dock_parse_disembark(const uint8_t *p, size_t len, ms_dock_disembark *out, char *err_msg, size_t err_len);
/* Cargo / CargoBinary payload: conn_id and the message (borrowed). */
int ms_dock_parse_cargo(const uint8_t *p, size_t len, uint32_t *conn_id,
                        const uint8_t **msg, size_t *msg_len);
void ms_dock_hello_free(ms_dock_hello *m);
void ms_dock_moored_free(ms_dock_moored *m);
void ms_dock_boarding_free(ms_dock_boarding *m);
void ms_dock_disembark_free(ms_dock_disembark *m);

/* ---- helpers for the link ---- */

/* Features Mothership agrees to: those the bay offered that are supported. */
unsigned ms_dock_agree_features(unsigned offered);
/* RFC 6455 UTF-8 validity (text messages). */
bool ms_dock_utf8_valid(const uint8_t *p, size_t len);
/* Whether a close code may be put in a WebSocket close frame
 * (1000-1003, 1007-1011, 1012-1014, 3000-4999). */
bool ms_dock_close_code_sendable(uint16_t code);

/* ---- docking v3: HTTP bays (docs/docking-protocol.md, "HTTP bays") ----
 * Same framing. A link carries one request at a time: HAIL (the request
 * head as CGI params), HAULs (the body, then the response body, or a
 * tunnel's bytes both ways), REPLY (the response head), READY (the link is
 * free). Strings in binary payloads are u32 BE length + bytes (binary-safe). */

#define MS_DOCK_V3 3
#define MS_DOCK_V3_CHUNK (64u * 1024u)          /* HAUL data Mothership sends per frame, at most */
#define MS_DOCK_V3_MAX_FRAME (1024u * 1024u)    /* any v3 frame's payload, either way; more is an error */
#define MS_DOCK_V3_MAX_THREADS 1024u            /* a Dock's "threads" above this is out of range */
#define MS_DOCK_HAUL_HEADER_LEN 10              /* frame header + request_id u32 + flags u8 */
#define MS_DOCK_HAUL_FIN 0x01u

enum {
    MS_DOCK_HAIL = 0x20,          /* Mothership -> bay: request head */
    MS_DOCK_HAUL = 0x21,          /* both: body bytes */
    MS_DOCK_REPLY = 0x22,         /* bay -> Mothership: response head */
    MS_DOCK_READY = 0x23,         /* bay -> Mothership: the link is free */
};

enum {
    MS_DOCK_REPLY_EMPTY = 0,      /* no body */
    MS_DOCK_REPLY_STREAM = 1,     /* HAULs follow, the last with FIN */
    MS_DOCK_REPLY_FILE = 2,       /* status 200; Mothership sends the file at the path */
    MS_DOCK_REPLY_TUNNEL = 4,     /* an upgrade: HAULs both ways; the link closes at its end */
};

/* A binary-safe name/value pair (HAIL params, REPLY headers). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} ms_dock_param;

/* Dock v3: {"version": 3, "ship": "...", "pid": n, "threads": n}; version
 * must be 3, threads 1..MS_DOCK_V3_MAX_THREADS, pid a positive integer. */
typedef struct {
    const char *ship;
    uint32_t pid;
    uint32_t threads;
    void *json_;
} ms_dock_hello3;

int ms_dock_parse_dock3(const uint8_t *p, size_t len, ms_dock_hello3 *out, char *err_msg, size_t err_len);
void ms_dock_hello3_free(ms_dock_hello3 *m);
int ms_dock_encode_dock3(ms_dock_buf *b, const char *ship, uint32_t pid, uint32_t threads);
/* Moored v3: {"version": 3, "config": {...}}. The parser (for bays and
 * tests) takes any version >= 3 and fills version and config only. */
int ms_dock_encode_moored3(ms_dock_buf *b, const ms_dock_kv *config, size_t n_config);
int ms_dock_parse_moored3(const uint8_t *p, size_t len, ms_dock_moored *out, char *err_msg,
                          size_t err_len);

/* HAIL: request_id u32 | content_length u64 | param_count u32 | params. */
int ms_dock_encode_hail(ms_dock_buf *b, uint32_t request_id, uint64_t content_length,
                        const ms_dock_param *params, size_t n_params);
typedef struct {
    uint32_t request_id;
    uint64_t content_length;
    ms_dock_param *params;    /* borrowed from the payload; the array is allocated */
    size_t n_params;
} ms_dock_hail;
/* max_params bounds the count (over it: MS_DOCK_E_RANGE; 0: only the
 * payload bounds it). Names and values are not checked (binary-safe). */
int ms_dock_parse_hail(const uint8_t *p, size_t len, ms_dock_hail *out, size_t max_params,
                       char *err_msg, size_t err_len);
void ms_dock_hail_free(ms_dock_hail *m);

/* HAUL: request_id u32 | flags u8 | data. The header alone for gather
 * writes (len: the data's length), or a whole frame. */
void ms_dock_put_haul_header(uint8_t out[MS_DOCK_HAUL_HEADER_LEN], uint32_t request_id, bool fin,
                             size_t data_len);
int ms_dock_encode_haul(ms_dock_buf *b, uint32_t request_id, bool fin, const void *data, size_t len);
/* Unknown flag bits are an error (MS_DOCK_E_FIELD). data is borrowed. */
int ms_dock_parse_haul(const uint8_t *p, size_t len, uint32_t *request_id, bool *fin,
                       const uint8_t **data, size_t *data_len);

/* REPLY: request_id u32 | status u16 | kind u8 | header_count u32 |
 * headers | (kind file) path. */
typedef struct {
    uint32_t request_id;
    uint16_t status;          /* 100..599 */
    uint8_t kind;             /* MS_DOCK_REPLY_* */
    ms_dock_param *headers;   /* borrowed from the payload; the array is allocated */
    size_t n_headers;
    const char *file_path;    /* kind file: borrowed, not NUL-ended; else NULL */
    size_t file_path_len;
} ms_dock_reply;
/* Strict: status in 100..599, a known kind, file only with status 200,
 * header names non-empty tokens, values without CR, LF or NUL, a file path
 * absolute without NUL, no byte left over; max_headers bounds the count
 * (0: only the payload does). The encoders below check the framing only:
 * a file path exactly with kind file, names present, at most
 * MS_DOCK_V3_MAX_FRAME (MS_DOCK_E_OVERSIZE). */
int ms_dock_parse_reply(const uint8_t *p, size_t len, ms_dock_reply *out, size_t max_headers,
                        char *err_msg, size_t err_len);
void ms_dock_reply_free(ms_dock_reply *m);
int ms_dock_encode_reply(ms_dock_buf *b, uint32_t request_id, uint16_t status, uint8_t kind,
                         const ms_dock_param *headers, size_t n_headers, const char *file_path,
                         size_t file_path_len);

/* Whether a v3 frame of this type may come from the bay (from_bay) or
 * from Mothership: Dock, Reply, Ready from the bay; Moored, Hail from
 * Mothership; Haul both ways. */
bool ms_dock_v3_type_allowed(uint8_t type, bool from_bay);

/* READY: request_id u32, exactly 4 bytes. */
int ms_dock_parse_ready(const uint8_t *p, size_t len, uint32_t *request_id);
int ms_dock_encode_ready(ms_dock_buf *b, uint32_t request_id);

#endif
