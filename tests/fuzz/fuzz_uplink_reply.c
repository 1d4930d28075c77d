/* fuzz_uplink_reply.c: libFuzzer target for the uplink checker's judgement
 * of a server's answer (src/uplink/protocol.c): the redis RESP reply line,
 * the postgres SSLRequest answer byte (and, in the probes' READY mode, the
 * answer to a startup message: an authentication request or an
 * ErrorResponse), the mysql initial handshake (or ERR packet) and the HTTP
 * response via http-parser. These bytes come from whatever listens at a
 * manifest's uplink address or a ship's healthcheck address.
 *
 * The input is one server's answer. Its first byte picks how the rest is cut
 * into reads: bit 7 set, all at once; else reads of 1..(1 + (b & 63)) bytes,
 * sizes drawn from a small PRNG seeded with the byte, with an empty read
 * before each one when bit 6 is set. For every protocol kind (tcp, redis,
 * postgres, mysql, http) and both modes, a fresh ms_proto is initialised as
 * uplink.c and fleet/probe.c do (ms_proto_init with the kind for the
 * scheme) and fed read by read, as
 * uplink.c's on_read does, until it gives a verdict; when the answer ends
 * without one, ms_proto_eof is asked, as on a peer's close. Invariants: an
 * empty read never decides; the kept answer and the HTTP head stay within
 * their bounds; a verdict is UP with a detail or DOWN with an error, and
 * both texts are NUL-terminated printable ASCII (they are printed to the
 * user and quoted server bytes must not reach the terminal raw); eof always
 * decides. ms_proto_quote is also run on the answer into small buffers
 * (the result is terminated, printable, and nothing is written past the
 * buffer). Seed corpus: tests/fuzz/corpus/uplink_reply/. Run with e.g.
 *   fuzz_uplink_reply -max_total_time=60 tests/fuzz/corpus/uplink_reply
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/uplink_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_text(const char *s, size_t cap, bool nonempty)
{
    const char *end = memchr(s, '\0', cap);
    check(end != NULL);
    if (nonempty)
        check(end > s);
    for (const char *c = s; c < end; c++)
        check((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
}

static void check_verdict(const ms_proto *p, int r)
{
    check(r == MS_PROTO_MORE || r == MS_PROTO_UP || r == MS_PROTO_DOWN);
    if (r == MS_PROTO_UP)
        check_text(p->detail, sizeof p->detail, true);
    else if (r == MS_PROTO_DOWN)
        check_text(p->error, sizeof p->error, true);
    check(p->len <= MS_PROTO_BUF);
    check(p->head_bytes <= MS_PROTO_HTTP_HEAD);
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static const char *const schemes[] = { "tcp", "redis", "postgres", "mysql", "http" };

static void run_kind(const char *scheme, ms_proto_mode pmode, uint8_t mode, const char *body, size_t n)
{
    static ms_proto p; /* large; one at a time */
    ms_proto_kind kind = ms_proto_kind_for(scheme);
    ms_proto_init(&p, kind, pmode);
    check(p.kind == kind && p.len == 0 && !p.head_done);
    uint32_t rng = 0x9e3779b9u ^ mode;
    size_t maxchunk = 1 + (mode & 63);
    size_t off = 0;
    int r = MS_PROTO_MORE;
    while (off < n && r == MS_PROTO_MORE) {
        size_t take = n - off;
        if (!(mode & 0x80)) {
            size_t want = 1 + next_rand(&rng) % maxchunk;
            if (want < take)
                take = want;
        }
        if (mode & 0x40) {
            int z = ms_proto_feed(&p, body + off, 0);
            check(z == MS_PROTO_MORE);
        }
        r = ms_proto_feed(&p, body + off, take);
        check_verdict(&p, r);
        off += take;
    }
    if (r == MS_PROTO_MORE) {
        r = ms_proto_eof(&p);
        check(r == MS_PROTO_UP || r == MS_PROTO_DOWN);
        check_verdict(&p, r);
    }
    if (kind == MS_PROTO_TCP && n > 0)
        check(r == MS_PROTO_UP);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 65536)
        return 0;
    uint8_t mode = data[0];
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        run_kind(schemes[i], MS_PROTO_LIVE, mode, body, n);
        run_kind(schemes[i], MS_PROTO_READY, mode, body, n);
    }
    check(ms_proto_kind_for("https") == MS_PROTO_HTTP);

    /* quoting, into small buffers of the sizes around its cut-off rule
     * (room for "..." and the NUL) and those protocol.c uses; 0 writes nothing */
    static const size_t caps[] = { 1, 2, 3, 4, 5, 6, 7, 8, 13, 64, 80 };
    char q[80];
    size_t qn = n < 64 ? n : 64;
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        size_t cap = caps[c];
        memset(q, 'Z', sizeof q);
        ms_proto_quote((const unsigned char *)body, qn, q, cap);
        check_text(q, cap, false);
        for (size_t k = strlen(q) + 1; k < sizeof q; k++)
            check(q[k] == 'Z');
    }
    q[0] = 'Z';
    ms_proto_quote((const unsigned char *)body, qn, q, 0);
    check(q[0] == 'Z');
    return 0;
}
