/* toml_test_decoder.c: the toml-test "decoder" for Mothership's TOML parser.
 *
 * Role: conformance harness glue. Reads a TOML document on stdin, parses it
 * with src/manifest/toml.c and prints the toml-test tagged JSON on stdout:
 * tables become JSON objects, arrays JSON arrays, and every scalar becomes
 * {"type": T, "value": "..."} with T one of string, integer, float, bool,
 * datetime, datetime-local, date-local, time-local. Invalid input exits 1
 * with "line:col: message" on stderr. Used by
 *   /work/shared/conformance/run-toml-test -- toml-test-decoder
 */
#include "manifest/toml.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *tagged(const char *type, const char *value)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (json_object_set_new(o, "type", json_string(type)) ||
        json_object_set_new(o, "value", json_string(value))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void fmt_time(char *b, size_t n, const toml_datetime *dt)
{
    int w = snprintf(b, n, "%02d:%02d:%02d", dt->hour, dt->minute, dt->second);
    if (dt->frac_digits > 0 && w > 0 && (size_t)w < n) {
        int digits = dt->frac_digits > 9 ? 9 : dt->frac_digits;
        int v = dt->nanosecond;
        for (int i = digits; i < 9; i++)
            v /= 10;
        snprintf(b + w, n - (size_t)w, ".%0*d", digits, v);
    }
}

static json_t *to_json(const toml_node *n)
{
    char b[128], t[64];
    switch (n->type) {
    case TOML_TABLE: {
        json_t *o = json_object();
        if (!o)
            return NULL;
        for (size_t i = 0; i < toml_len(n); i++) {
            const toml_kv *kv = toml_kv_at(n, i);
            json_t *v = to_json(kv->value);
            if (!v || json_object_setn_new(o, kv->key, kv->key_len, v)) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case TOML_ARRAY: {
        json_t *a = json_array();
        if (!a)
            return NULL;
        for (size_t i = 0; i < toml_len(n); i++) {
            json_t *v = to_json(toml_at(n, i));
            if (!v || json_array_append_new(a, v)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case TOML_STRING: {
        json_t *o = json_object();
        if (!o || json_object_set_new(o, "type", json_string("string")) ||
            json_object_set_new(o, "value", json_stringn(n->u.str.ptr, n->u.str.len))) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    case TOML_INTEGER:
        snprintf(b, sizeof b, "%" PRId64, n->u.integer);
        return tagged("integer", b);
    case TOML_FLOAT: {
        double d = n->u.flt;
        if (d != d)
            return tagged("float", "nan");
        if (d > 1.7976931348623157e308)
            return tagged("float", "inf");
        if (d < -1.7976931348623157e308)
            return tagged("float", "-inf");
        snprintf(b, sizeof b, "%.17g", d);
        return tagged("float", b);
    }
    case TOML_BOOL:
        return tagged("bool", n->u.boolean ? "true" : "false");
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL: {
        const toml_datetime *dt = &n->u.dt;
        fmt_time(t, sizeof t, dt);
        if (n->type == TOML_DATETIME_LOCAL) {
            snprintf(b, sizeof b, "%04d-%02d-%02dT%s", dt->year, dt->month, dt->day, t);
            return tagged("datetime-local", b);
        }
        if (dt->offset_z) {
            snprintf(b, sizeof b, "%04d-%02d-%02dT%sZ", dt->year, dt->month, dt->day, t);
        } else {
            int off = dt->offset_minutes < 0 ? -dt->offset_minutes : dt->offset_minutes;
            snprintf(b, sizeof b, "%04d-%02d-%02dT%s%c%02d:%02d", dt->year, dt->month, dt->day,
                     t, dt->offset_minutes < 0 ? '-' : '+', off / 60, off % 60);
        }
        return tagged("datetime", b);
    }
    case TOML_DATE_LOCAL:
        snprintf(b, sizeof b, "%04d-%02d-%02d", n->u.dt.year, n->u.dt.month, n->u.dt.day);
        return tagged("date-local", b);
    case TOML_TIME_LOCAL:
        fmt_time(t, sizeof t, &n->u.dt);
        return tagged("time-local", t);
    }
    return NULL;
}

int main(void)
{
    size_t cap = 1 << 16, len = 0;
    char *data = malloc(cap);
    if (!data) {
        fputs("out of memory\n", stderr);
        return 2;
    }
    for (;;) {
        if (len == cap) {
            char *nd = realloc(data, cap * 2);
            if (!nd) {
                free(data);
                fputs("out of memory\n", stderr);
                return 2;
            }
            data = nd;
            cap *= 2;
        }
        size_t got = fread(data + len, 1, cap - len, stdin);
        if (got == 0)
            break;
        len += got;
    }
    if (ferror(stdin)) {
        free(data);
        fputs("read error on stdin\n", stderr);
        return 2;
    }

    toml_error err;
    toml_node *root = toml_parse(data, len, &err);
    free(data);
    if (!root) {
        fprintf(stderr, "%d:%d: %s\n", err.line, err.col, err.msg);
        return 1;
    }
    json_t *j = to_json(root);
    toml_free(root);
    if (!j) {
        fputs("out of memory building JSON\n", stderr);
        return 2;
    }
    int rc = json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 ? 0 : 2;
    json_decref(j);
    fputc('\n', stdout);
    return rc;
}
