/* payload_answer.c: the handler for a request a request-phase payload
 * answered itself (blocked): its status, headers and body, as the payload
 * gave them (w->pres), with our Date, framing and request id. */
#include <stdio.h>
#include <strings.h>

#include "http/handler.h"
#include "http/http_impl.h"

static bool block_start(ms_conn *c, const ms_handler_arg *arg)
{
    const ms_payload_result *r = &c->w->pres;
    (void)arg;
    bool has_type = false;
    char head[8192];
    size_t hl = 0;
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nServer: mothership\r\n%.*s", r->block_status,
                     ms_http_reason(r->block_status), (int)c->w->date_len, c->w->date);
    hl = (size_t)n;
    for (size_t i = 0; i < r->nblock_headers && hl < sizeof head - 600; i++) {
        const ms_payload_header *h = &r->block_headers[i];
        if (h->name.len == 12 && strncasecmp(h->name.ptr, "content-type", 12) == 0)
            has_type = true;
        n = snprintf(head + hl, sizeof head - hl, "%.*s: %.*s\r\n", (int)h->name.len, h->name.ptr,
                     (int)h->value.len, h->value.ptr);
        if (n < 0 || (size_t)n >= sizeof head - hl)
            break;
        hl += (size_t)n;
    }
    bool close = !c->keep_alive || (!c->req_done && c->has_body);
    n = snprintf(head + hl, sizeof head - hl, "%sContent-Length: %zu\r\nX-Request-Id: %.*s\r\n%s\r\n",
                 has_type ? "" : "Content-Type: text/plain; charset=utf-8\r\n", r->block_body.len,
                 (int)c->reqid_len, c->reqid, close ? "Connection: close\r\n" : "");
    if (n > 0 && (size_t)n < sizeof head - hl)
        hl += (size_t)n;
    if (close)
        ms_conn_end_after_response(c, true);
    ms_conn_cork(c);
    ms_conn_write(c, head, hl, true);
    if (!c->is_head_method)
        ms_conn_write(c, r->block_body.ptr, r->block_body.len, true);
    ms_conn_record(c, r->block_status);
    ms_conn_uncork(c);
    ms_conn_responded(c);
    return true;
}

const ms_handler ms_handler_block = {
    .start = block_start,
};
