/* resp_head.h: the response head Mothership writes to a client for a
 * ship's response, decided and written without sockets: the ship's status
 * and header lines minus hop-by-hop ones (a Connection header never
 * removes the framing or Host), payload edits, the compression lines
 * (Content-Encoding, Vary, a strong ETag made weak), Date when the ship
 * sent none, and Mothership's own framing and Connection lines. proxy.c
 * decides compression and framing from the parser's state and writes the
 * result into the client's gather buffer. */
#ifndef MS_HTTP_RESP_HEAD_H
#define MS_HTTP_RESP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} ms_field;

typedef struct ms_resp_head {
    int status;                    /* 100..999 */
    const char *reason;            /* cut to 120 bytes */
    size_t reason_len;
    const ms_field *fields;        /* the ship's header lines, in order */
    size_t nfields;
    bool tunnel;                   /* a 101 that joins the connections: its Connection,
                                    * Upgrade and Content-Length pass as they are */
    /* payload edits: keep() false drops a ship's header (NULL: all kept);
     * then added(i) for i < nadded gives the lines to add (false: none) */
    bool (*keep)(const void *arg, const char *name, size_t len);
    bool (*added)(const void *arg, size_t i, ms_field *out);
    size_t nadded;
    const void *edits_arg;
    const char *encoding;          /* compressing: the Content-Encoding, else NULL */
    const char *date;              /* a whole "Date: ...\r\n" line, for a ship that sent none */
    size_t date_len;
    bool chunked;                  /* Transfer-Encoding: chunked */
    bool has_length;               /* else Content-Length: length (never for 1xx, 204, a tunnel) */
    uint64_t length;
    const char *connection;        /* the Connection line's value ("close"...), or NULL */
} ms_resp_head;

/* At least the size ms_resp_head_write needs (every piece counted). */
size_t ms_resp_head_bound(const ms_resp_head *h);

/* Writes the head, up to and including the blank line, into out (cap
 * bytes). Returns its length, or 0 (out unspecified) when cap is short. */
size_t ms_resp_head_write(const ms_resp_head *h, char *out, size_t cap);

#endif
