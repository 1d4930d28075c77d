/* toml.h: a self-contained TOML 1.0 parser. Parses a whole document into a
 * tree of tables, arrays and typed values; every node and every key carries
 * the line and column (1-based, columns in bytes) where it was written, so
 * the manifest layer can point users at the exact place of a problem.
 *
 * Keys of a table keep the order in which they were first defined in the
 * document. Strings are UTF-8, NUL-terminated and also carry their length
 * (a TOML string may contain U+0000). The tree is owned by the root node and
 * freed with toml_free(). Nothing here allocates per lookup. */
#ifndef MS_TOML_H
#define MS_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum toml_type {
    TOML_TABLE,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOL,
    TOML_DATETIME,       /* offset date-time: 1979-05-27T07:32:00Z */
    TOML_DATETIME_LOCAL, /* 1979-05-27T07:32:00 */
    TOML_DATE_LOCAL,     /* 1979-05-27 */
    TOML_TIME_LOCAL,     /* 07:32:00 */
} toml_type;

typedef struct toml_datetime {
    int year, month, day;       /* unset parts are 0 */
    int hour, minute, second;
    int nanosecond;             /* fractional seconds, truncated to ns */
    int frac_digits;            /* digits written after '.', 0 if none */
    int offset_minutes;         /* TOML_DATETIME only; Z is 0 */
    bool offset_z;              /* written as Z/z rather than +00:00 */
} toml_datetime;

typedef struct toml_node toml_node;

typedef struct toml_kv {
    char *key;          /* NUL-terminated, UTF-8 */
    size_t key_len;
    int line, col;      /* where the (last segment of the) key was written */
    toml_node *value;
} toml_kv;

struct toml_node {
    toml_type type;
    int line, col;      /* where the value starts; tables: their header or
                           the first key that created them */
    union {
        struct { char *ptr; size_t len; } str;
        int64_t integer;
        double flt;
        bool boolean;
        toml_datetime dt;
        struct { toml_kv *items; size_t len, cap; } table;
        struct { toml_node **items; size_t len, cap; } array;
    } u;
    /* parser bookkeeping; callers ignore these */
    unsigned char flags;
};

typedef struct toml_error {
    int line, col;      /* 1-based; 0 when not tied to a place */
    char msg[200];      /* e.g. "duplicate key \"name\"" */
} toml_error;

/* Limits that bound hostile input. */
#define TOML_MAX_DEPTH 128              /* nesting of arrays/inline tables */

/* Parse len bytes (need not be NUL-terminated). Returns the root table, or
 * NULL with *err filled. */
toml_node *toml_parse(const char *data, size_t len, toml_error *err);
void toml_free(toml_node *root);

/* Lookups. All return NULL when absent or of the wrong shape. */
const toml_node *toml_get(const toml_node *table, const char *key);
const toml_kv *toml_get_kv(const toml_node *table, const char *key);
size_t toml_len(const toml_node *table_or_array);
const toml_kv *toml_kv_at(const toml_node *table, size_t i);
const toml_node *toml_at(const toml_node *array, size_t i);

/* "string", "integer", "float", "boolean", "table", "array", "datetime",
 * "date", "time" : words for error messages. */
const char *toml_type_name(toml_type t);

#endif
