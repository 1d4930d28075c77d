/* fuzz_dock_frames.c: the docking protocol codec on arbitrary link bytes.
 * The first input byte picks the feed split size, the binary feature and a
 * small frame limit; the rest is fed to the decoder, every frame's payload
 * goes to the matching strict parser (and to all JSON parsers), and parsed
 * messages are re-encoded and decoded again to check the round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dock/protocol.h"

static void check_round_trip(const ms_dock_buf *b, uint8_t want_type)
{
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, UINT32_MAX);
    d.accept_binary = true;
    ms_dock_frame fr;
    size_t used = 0;
    if (ms_dock_decoder_feed(&d, b->data, b->len, &used, &fr) != 1 || used != b->len
        || fr.type != want_type)
        abort();
    ms_dock_decoder_free(&d);
}

static void parse_all(const uint8_t *p, size_t len, uint8_t type)
{
    char err[128];
    ms_dock_buf b = { 0 };
    ms_dock_hello h;
    if (ms_dock_parse_dock(p, len, &h, err, sizeof err) == 0) {
        if (type == MS_DOCK_DOCK && ms_dock_encode_dock(&b, h.ship, h.features) == 0)
            check_round_trip(&b, MS_DOCK_DOCK);
    }
    ms_dock_hello_free(&h);
    ms_dock_moored m;
    if (ms_dock_parse_moored(p, len, &m, err, sizeof err) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_moored(&b, m.config, m.n_config, m.features) == 0)
            check_round_trip(&b, MS_DOCK_MOORED);
    }
    ms_dock_moored_free(&m);
    ms_dock_boarding bo;
    if (ms_dock_parse_boarding(p, len, &bo, err, sizeof err) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_boarding(&b, bo.conn_id, bo.path, bo.remote_addr, bo.headers,
                                    bo.n_headers) == 0) {
            check_round_trip(&b, MS_DOCK_BOARDING);
            /* sent again to a bay that resumes: the same client, resumed */
            ms_dock_buf again = { 0 };
            ms_dock_boarding ro;
            if (ms_dock_encode_boarding_resumed(&again, b.data, b.len) != 0
                || ms_dock_parse_boarding(again.data + 5, again.len - 5, &ro, err, sizeof err) != 0
                || !ro.resumed || ro.conn_id != bo.conn_id || strcmp(ro.path, bo.path) != 0)
                abort();
            ms_dock_boarding_free(&ro);
            ms_dock_buf_free(&again);
        }
    }
    ms_dock_boarding_free(&bo);
    ms_dock_disembark di;
    if (ms_dock_parse_disembark(p, len, &di, err, sizeof err) == 0) {
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_disembark(&b, di.conn_id, di.code, di.reason) == 0)
            check_round_trip(&b, MS_DOCK_DISEMBARK);
        (void)ms_dock_close_code_sendable(di.code);
    }
    ms_dock_disembark_free(&di);
    uint32_t id;
    const uint8_t *msg;
    size_t mlen;
    if (ms_dock_parse_cargo(p, len, &id, &msg, &mlen) == 0) {
        (void)ms_dock_utf8_valid(msg, mlen);
        ms_dock_buf_reset(&b);
        if (ms_dock_encode_cargo(&b, id, msg, mlen, type == MS_DOCK_CARGO_BINARY) != 0)
            abort();
        if (b.len != mlen + 9 || memcmp(b.data + 9, msg, mlen) != 0)
            abort();
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
    ms_dock_decoder d;
    ms_dock_decoder_init(&d, (ctl & 0x20) ? 256 : 0);
    d.accept_binary = (ctl & 0x10) != 0;
    size_t off = 0, frames = 0;
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
                frames++;
                if (fr.len > d.max_frame || !ms_dock_type_name(fr.type))
                    abort();
                parse_all(fr.payload, fr.len, fr.type);
            } else if (pos != n) {
                abort();
            }
        }
        off += n;
    }
    if (rc >= 0 && ms_dock_decoder_finish(&d) < 0 && ms_dock_decoder_pending(&d) == 0)
        abort();
    /* The whole input as one payload, too. */
    parse_all(data, size, MS_DOCK_CARGO);
    ms_dock_decoder_free(&d);
    (void)frames;
    return 0;
}
