/* fuzz_httpc_response.c: libFuzzer target for the HTTP client's response
 * parser (src/uplink/httpc.c, ms_httpc_parser_*): the bytes an ACME CA, or
 * whatever answers at a directory URL, sends back.
 *
 * The input's first byte picks the request (bit 0: HEAD) and how the rest
 * is cut into reads: bit 7 set, all at once; else reads of 1..(1 + (b & 63))
 * bytes drawn from a small PRNG seeded with the byte, with an empty read
 * before each one when bit 6 is set. The reads are fed until the parser
 * decides, then ms_httpc_parser_done is asked as at the peer's close.
 * Invariants: a result is -1, 0 or 1, and done never answers 0; an empty
 * read never decides; an error has a printable reason and sticks; a
 * complete response has a status, a NUL-terminated body within
 * MS_HTTPC_MAX_BODY (none for HEAD), at most MS_HTTPC_MAX_LINKS non-empty
 * links; and the verdict and response are the same as when the whole
 * input is fed in one read (splitting must not change what is parsed).
 * Seed corpus: tests/fuzz/corpus/httpc_response/. Run with e.g.
 *   fuzz_httpc_response -max_total_time=60 tests/fuzz/corpus/httpc_response
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_reason(const char *why, size_t cap)
{
    const char *end = memchr(why, '\0', cap);
    check(end != NULL && end > why);
    for (const char *c = why; c < end; c++)
        check((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_response(const ms_httpc_response *r, bool head)
{
    check(r != NULL);
    check(r->status >= 100 && r->status <= 999);
    check(r->body != NULL && r->body_len <= MS_HTTPC_MAX_BODY && r->body[r->body_len] == '\0');
    if (head)
        check(r->body_len == 0);
    check(r->nlinks <= MS_HTTPC_MAX_LINKS);
    for (size_t i = 0; i < r->nlinks; i++)
        check(r->links[i] && r->links[i][0]);
}

static void check_same(const ms_httpc_response *a, const ms_httpc_response *b)
{
    check(a->status == b->status && a->body_len == b->body_len && a->nlinks == b->nlinks);
    check(memcmp(a->body, b->body, a->body_len) == 0);
    check(same_text(a->location, b->location) && same_text(a->replay_nonce, b->replay_nonce));
    check(same_text(a->retry_after, b->retry_after) && same_text(a->content_type, b->content_type));
    for (size_t i = 0; i < a->nlinks; i++)
        check(strcmp(a->links[i], b->links[i]) == 0);
}

/* Feed body in the reads mode picks; then the close if undecided. */
static int run(ms_httpc_parser *p, uint8_t mode, const char *body, size_t n, bool split)
{
    char why[300];
    uint32_t rng = 0x9e3779b9u ^ mode;
    size_t maxchunk = 1 + (mode & 63);
    size_t off = 0;
    int r = 0;
    while (off < n && r == 0) {
        size_t take = n - off;
        if (split) {
            size_t want = 1 + next_rand(&rng) % maxchunk;
            if (want < take)
                take = want;
            if (mode & 0x40)
                check(ms_httpc_parser_feed(p, body + off, 0, why, sizeof why) == 0);
        }
        r = ms_httpc_parser_feed(p, body + off, take, why, sizeof why);
        check(r == -1 || r == 0 || r == 1);
        off += take;
    }
    if (r == 0) {
        r = ms_httpc_parser_done(p, why, sizeof why);
        check(r == -1 || r == 1);
    }
    if (r < 0) {
        check_reason(why, sizeof why);
        check(ms_httpc_parser_response(p) == NULL);
        char again[300];
        check(ms_httpc_parser_feed(p, "x", 1, again, sizeof again) == -1 && strcmp(again, why) == 0);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > (1u << 21))
        return 0;
    uint8_t mode = data[0];
    bool head = mode & 1;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;

    ms_httpc_parser *split = ms_httpc_parser_new(head);
    ms_httpc_parser *whole = ms_httpc_parser_new(head);
    check(split && whole);
    int rs = run(split, mode, body, n, !(mode & 0x80));
    int rw = run(whole, mode, body, n, false);
    check(rs == rw);
    if (rs == 1) {
        check_response(ms_httpc_parser_response(split), head);
        check_same(ms_httpc_parser_response(split), ms_httpc_parser_response(whole));
        char why[8];
        check(ms_httpc_parser_done(split, why, sizeof why) == 1);
    }
    ms_httpc_parser_free(split);
    ms_httpc_parser_free(whole);
    return 0;
}
