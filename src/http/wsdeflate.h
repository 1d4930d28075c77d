/* wsdeflate.h: permessage-deflate (RFC 7692) for WebSocket clients of bays,
 * without socket code: the Sec-WebSocket-Extensions offer parsed and
 * answered, and one message inflated or deflated at a time.
 *
 * Always without context takeover, both ways: the answer carries
 * client_no_context_takeover (RFC 7692 §7.1.1.2 lets a server add it) and
 * the server never refers to an earlier message, so no zlib state lives
 * between messages and an idle client costs nothing here. The z_streams
 * are a worker's (ms_pmd), reset after each message. */
#ifndef MS_HTTP_WSDEFLATE_H
#define MS_HTTP_WSDEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What an accepted offer agreed on. */
typedef struct ms_pmd_agreed {
    uint8_t server_bits;  /* our deflate window: 15, or the offer's server_max_window_bits (9..15) */
    bool echo_server_bits; /* the offer had server_max_window_bits: the answer repeats it */
    bool echo_server_nct;  /* the offer had server_no_context_takeover: the answer repeats it */
} ms_pmd_agreed;

/* One Sec-WebSocket-Extensions value (the client's offers, in its order of
 * preference): true when a permessage-deflate offer in it can be accepted,
 * the first such one in *out. An offer with an unknown or repeated
 * parameter, a bad value, or server_max_window_bits=8 (zlib's raw deflate
 * has no 256-byte window) is declined; a value that is not the RFC's
 * grammar yields no offer at all. Declining is never an error: the client
 * then talks without compression. */
bool ms_pmd_negotiate(const char *v, size_t n, ms_pmd_agreed *out);

/* The answer's header value (no name, no CRLF) into buf; its length, 0 if
 * cap is too small (MS_PMD_ANSWER_MAX bytes always suffice). */
#define MS_PMD_ANSWER_MAX 128
size_t ms_pmd_answer(const ms_pmd_agreed *a, char *buf, size_t cap);

typedef struct ms_pmd ms_pmd; /* a worker's z_streams, created as first needed */

ms_pmd *ms_pmd_new(void);
void ms_pmd_free(ms_pmd *p);

typedef enum ms_pmd_rc {
    MS_PMD_OK,
    MS_PMD_TOO_BIG,     /* inflating: over the limit (close 1009) */
    MS_PMD_BAD_DATA,    /* inflating: not a deflate stream (close 1007) */
    MS_PMD_NOMEM,       /* close 1011 */
    MS_PMD_NOT_SMALLER, /* deflating: send it as it is */
} ms_pmd_rc;

/* Inflate one message's payload (the 0x00 0x00 0xff 0xff tail the sender
 * removed is added here). *out (malloc'd, the caller frees) holds at most
 * limit bytes: the output stops one byte over it, so a bomb costs at most
 * limit + 1 bytes of memory and that much work. */
ms_pmd_rc ms_pmd_inflate(ms_pmd *p, const uint8_t *in, size_t n, size_t limit, uint8_t **out, size_t *out_len);

/* Deflate one message with a window of bits (9..15), the tail removed;
 * *out (malloc'd) is shorter than n, or MS_PMD_NOT_SMALLER and no *out. */
ms_pmd_rc ms_pmd_deflate(ms_pmd *p, unsigned bits, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len);

#endif
