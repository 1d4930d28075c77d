/* framing.h: the strict checks of a request's framing, without sockets.
 *
 * http-parser (as Debian builds it, without HTTP_PARSER_STRICT) is lenient
 * where front ends and ships disagree: it takes "chunked" out of a list of
 * codings, any two bytes after a chunk's data as its CRLF, any byte after a
 * chunk size's CR. Mothership re-frames every request it forwards, so the
 * ship cannot be confused by those, but a proxy in front of Mothership
 * could read the same bytes differently: such requests are refused. */
#ifndef MS_HTTP_FRAMING_H
#define MS_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Is a header name (alen bytes at a) this one, ASCII case ignored? Inline,
 * and the first bytes are compared before the call: a proxied request and
 * its response ask it some 40 times, nearly always of names that differ
 * there. (Bit 0x20 set on both first bytes only folds case for letters; a
 * pair it makes equal otherwise goes on to strncasecmp, which decides.) */
static inline bool ms_name_is(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    return alen == n && (n == 0 || ((unsigned char)a[0] | 0x20) == ((unsigned char)b[0] | 0x20)) &&
           strncasecmp(a, b, n) == 0;
}

/* Does a comma-separated list of tokens (a Connection or Upgrade header's
 * value) contain this one (case-insensitive)? */
bool ms_token_listed(const char *v, size_t vlen, const char *tok, size_t toklen);
/* A header field value free of control characters (a tab is allowed):
 * obs-fold and bare CR/LF/NUL/DEL are smuggling vectors, refused. */
bool ms_field_value_clean(const char *v, size_t len);

/* A Transfer-Encoding header's raw field value: the bytes between the colon
 * and the end of the line. 0: exactly "chunked" (any case), with nothing
 * or one space before it and nothing after; 501: a well-formed list of
 * codings ending in one "chunked" (codings Mothership does not decode);
 * 400: anything else. */
int ms_te_value_status(const char *raw, size_t len);

/* A chunked body, checked byte by byte as it arrives:
 *   chunk      = 1*16HEXDIG [ BWS ";" ext ] CRLF data CRLF
 *   last-chunk = 1*16HEXDIG(all "0") [ ";" ext ] CRLF
 *   trailer    = *( field-line CRLF ) CRLF
 * with CR and LF only as a pair, and no CTL in an extension or a trailer. */
typedef enum ms_chunk_result {
    MS_CHUNK_MORE,      /* all of it fits: feed the next bytes */
    MS_CHUNK_DONE,      /* the body ended; *used is where */
    MS_CHUNK_BAD,       /* *used is the offending byte */
} ms_chunk_result;

typedef struct ms_chunk_check {
    uint8_t state;
    uint8_t digits;
    uint64_t left;      /* data bytes left in the current chunk */
} ms_chunk_check;

void ms_chunk_check_init(ms_chunk_check *k);
ms_chunk_result ms_chunk_check_feed(ms_chunk_check *k, const char *data, size_t len, size_t *used);

#endif
