/* fuzz_dock_v3.c: the docking v3 (HTTP bays) codec on arbitrary link bytes.
 * The first input byte picks the feed split size and a small frame limit;
 * the rest is fed to a v3 decoder. Every frame's payload goes to every v3
 * parser (Dock, Moored, Hail, Haul, Reply, Ready, with small and no count
 * bounds); what parses is encoded again and must come back byte for byte,
 * and what the decoder yields must be a v3 type within the frame bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dock/protocol.h"

/* b holds one frame of want_type whose payload must equal p/len. */
static void check_same(const ms_dock_buf *b, uint8_t want_type, const uint8_t *p, size_t len)
{
    if (b->len != MS_DOCK_HEADER_LEN + len || b->data[0] != want_type
        || memcmp(b->data + MS_DOCK_HEADER_LEN, p, len) != 0)
        abort();
}

/* b holds one frame that a v3 decoder yields whole, as want_type. */
static void check_decodes(const ms_dock_buf *b, uint8_t want_type)
{
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, MS_DOCK_V3_MAX_FRAME);
    d.v3 = true;
    ms_dock_frame fr;
    size_t used = 0;
    if (ms_dock_decoder_feed(&d, b->data, b->len, &used, &fr) != 1 || used != b->len
        || fr.type != want_type)
        abort();
    ms_dock_decoder_free(&d);
}

static void parse_all(const uint8_t *p, size_t len, size_t max_pairs)
{
    char err[160];
    ms_dock_buf b = { 0 };

    ms_dock_hello3 h;
    if (ms_dock_parse_dock3(p, len, &h, err, sizeof err) == 0) {
        if (h.threads < 1 || h.threads > MS_DOCK_V3_MAX_THREADS || h.pid == 0)
            abort();
        if (ms_dock_encode_dock3(&b, h.ship, h.pid, h.threads) == 0)
            check_decodes(&b, MS_DOCK_DOCK);
    }
    ms_dock_hello3_free(&h);

    ms_dock_moored m;
    if (ms_dock_parse_moored3(p, len, &m, err, sizeof err) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_moored3(&b, m.config, m.n_config) == 0)
            check_decodes(&b, MS_DOCK_MOORED);
    }
    ms_dock_moored_free(&m);

    /* binary messages: a parse and its encoding are the same bytes */
    ms_dock_hail hl;
    if (ms_dock_parse_hail(p, len, &hl, max_pairs, err, sizeof err) == 0) {
        if (max_pairs && hl.n_params > max_pairs)
            abort();
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_hail(&b, hl.request_id, hl.content_length, hl.params, hl.n_params) != 0)
            abort();
        check_same(&b, MS_DOCK_HAIL, p, len);
    }
    ms_dock_hail_free(&hl);

    ms_dock_reply r;
    if (ms_dock_parse_reply(p, len, &r, max_pairs, err, sizeof err) == 0) {
        if (r.status < 100 || r.status > 599 || (r.kind == MS_DOCK_REPLY_FILE) != (r.file_path != NULL))
            abort();
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_reply(&b, r.request_id, r.status, r.kind, r.headers, r.n_headers,
                                 r.file_path, r.file_path_len) != 0)
            abort();
        check_same(&b, MS_DOCK_REPLY, p, len);
    }
    ms_dock_reply_free(&r);

    uint32_t id;
    bool fin;
    const uint8_t *data;
    size_t dlen;
    if (ms_dock_parse_haul(p, len, &id, &fin, &data, &dlen) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_haul(&b, id, fin, data, dlen) != 0)
            abort();
        check_same(&b, MS_DOCK_HAUL, p, len);
        uint8_t hh[MS_DOCK_HAUL_HEADER_LEN];
        ms_dock_put_haul_header(hh, id, fin, dlen);
        if (memcmp(hh, b.data, sizeof hh) != 0)
            abort();
    }
    if (ms_dock_parse_ready(p, len, &id) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_ready(&b, id) != 0)
            abort();
        check_same(&b, MS_DOCK_READY, p, len);
    }
    ms_dock_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    size_t step = (ctl & 0x0F) == 0 ? size : (size_t)(ctl & 0x0F);
    size_t max_pairs = (ctl & 0x40) ? 2 : 0;
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, (ctl & 0x20) ? 256 : 0);
    d.v3 = true;
    d.accept_binary = (ctl & 0x10) != 0;   /* must not matter on a v3 link */
    uint32_t bound = d.max_frame < MS_DOCK_V3_MAX_FRAME ? d.max_frame : MS_DOCK_V3_MAX_FRAME;
    size_t off = 0;
    int rc = 0;
    while (off < size && rc >= 0) {
        size_t n = size - off < step ? size - off : step;
        size_t pos = 0;
        while (pos < n) {
            ms_dock_frame fr;
            size_t used = 0;
            rc = ms_dock_decoder_feed(&d, data + off + pos, n - pos, &used, &fr);
            if (used > n - pos)
                abort();
            pos += used;
            if (rc < 0) {
                if (ms_dock_decoder_error(&d) == MS_DOCK_OK || !*ms_dock_decoder_message(&d))
                    abort();
                break;
            }
            if (rc == 1) {
                bool v3_type = fr.type == MS_DOCK_DOCK || fr.type == MS_DOCK_MOORED
                            || (fr.type >= MS_DOCK_HAIL && fr.type <= MS_DOCK_READY);
                if (fr.len > bound || !v3_type)
                    abort();
                parse_all(fr.payload, fr.len, max_pairs);
            } else if (pos != n) {
                abort();
            }
        }
        off += n;
    }
    if (rc >= 0)
        (void)ms_dock_decoder_finish(&d);
    ms_dock_decoder_free(&d);
    /* the raw input as one payload, too: the parsers see any bytes */
    parse_all(data, size, max_pairs);
    return 0;
}
