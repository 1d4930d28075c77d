/* hbay.c: requests to HTTP bays and docking upstreams (docking v3).
 *
 * A request to an HTTP bay reads its body whole, becomes a HAIL
 * (hbay_params.c) and waits in the worker's queue for a link of the bay
 * (hbay_link.c); on the link go the HAIL and the body's HAULs, and from it
 * come the bay's REPLY, its body HAULs and READY (the link is free for the
 * next HAIL).
 *
 * REPLY kinds: empty and stream become the client's response here; file
 * names a regular file inside the bay's file_roots, sent by static_send.c's
 * code (sendfile); tunnel switches the client's connection to bytes both
 * ways (an upgrade: WebSockets through an HTTP bay).
 *
 * The queue is bounded over the workers (hub http.queued <= max_queue:
 * more get 503 + Retry-After), a request waits in it at most
 * request_timeout (504), and the REPLY must come within request_timeout of
 * the request's last byte (504, the link closed). A link that breaks
 * before the REPLY: 502 (an idempotent request without a body goes back to
 * the head of the queue, once); after the head: the client's connection is
 * cut, never a short body passed off as whole. A frame that breaks the
 * protocol closes its link and is counted. */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dock/protocol.h"
#include "http/handler.h"
#include "http/hbay_params.h"
#include "http/hbay_impl.h"
#include "http/http_impl.h"
#include "http/resp_head.h"
#include "ms_config.h"

static void link_protocol_error(ms_hblink *l, const char *what);

static bool name_eq(const char *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    return alen == n && strncasecmp(a, b, n) == 0;
}

void ms_hb_response_drop(ms_hblink *l)
{
    if (l->comp) {
        ms_compressor_free(l->comp);
        l->comp = NULL;
    }
    ms_cbuf_free(&l->cbuf);
}

/* ---------------------------------------------------------------- HAIL */
/* c's HAIL (hbay_params.c) into c->out, request id 0 (set per link when it
 * is sent). false: out of memory. */
static bool build_hail(ms_conn *c)
{
    const ms_route *route = c->route->route;
    const ms_payload_result *pres = ms_conn_payload_result(c);
    const char *path = c->buf + c->url_off;
    size_t plen = c->path_len;
    const char *query = path + plen;
    size_t qlen = c->url_len - plen;
    if (pres && pres->path_set) {
        path = pres->path.ptr;
        plen = pres->path.len;
        if (pres->query_set) {
            query = pres->query.ptr;
            qlen = pres->query.len;
        }
    }
    if (qlen && query[0] == '?') {
        query++;
        qlen--;
    }
    const char *script = "";
    size_t slen = 0;
    if (route->strip_prefix) {
        /* only where a segment ends, as for ships */
        size_t sl = strlen(route->strip_prefix);
        if (plen >= sl && memcmp(path, route->strip_prefix, sl) == 0 &&
            (plen == sl || path[sl] == '/' || route->strip_prefix[sl - 1] == '/')) {
            script = route->strip_prefix;
            slen = route->strip_prefix[sl - 1] == '/' ? sl - 1 : sl; /* the slash stays with PATH_INFO */
            path += slen;
            plen -= slen;
        }
    }
    ms_field headers[MS_MAX_HEADERS];
    for (uint16_t i = 0; i < c->nhdr; i++)
        headers[i] = (ms_field){ c->buf + c->hdr[i].name, c->hdr[i].name_len, c->buf + c->hdr[i].val,
                                 c->hdr[i].val_len };
    ms_field added[MS_MAX_HEADERS];
    size_t nadded = 0;
    for (size_t i = 0; pres && i < pres->nedits && nadded < MS_MAX_HEADERS; i++)
        if (ms_payload_edit_live(pres, i))
            added[nadded++] = (ms_field){ pres->edits[i].name.ptr, pres->edits[i].name.len,
                                          pres->edits[i].value.ptr, pres->edits[i].value.len };
    const ms_bind *bind = &c->g->m->global.binds[c->bind_idx];
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)bind->addr.port);
    if (!c->reqid_len)
        ms_conn_make_reqid(c);
    ms_hbay_req r = {
        .method = http_method_str((enum http_method)c->parser.method),
        .script = script,
        .script_len = slen,
        .path = path,
        .path_len = plen,
        .query = query,
        .query_len = qlen,
        .headers = headers,
        .nheaders = c->nhdr,
        .keep = pres ? ms_proxy_edits_keep : NULL,
        .keep_arg = pres,
        .added = added,
        .nadded = nadded,
        .bind_host = bind->addr.kind == MS_ADDR_TCP ? bind->addr.host : NULL,
        .bind_port = bind->addr.kind == MS_ADDR_TCP ? port : NULL,
        .protocol = c->h2 ? "HTTP/2" : c->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        .software = "mothership/" MS_VERSION,
        .peer = c->peer,
        .peer_port = c->peer_port,
        .secure = c->secure,
        .upgrade = c->upgrade,
        .has_length = c->body_buffered || c->body_length != ULLONG_MAX,
        .content_length = c->body_buffered ? c->body.len : c->body_length,
        .body_len = c->body_buffered ? c->body.len : 0,
        .reqid = c->reqid,
        .reqid_len = c->reqid_len,
    };
    ms_dock_buf out = { 0 };
    if (ms_hbay_encode_hail(&r, &out) != 0) {
        ms_dock_buf_free(&out);
        return false;
    }
    free(c->out);
    c->out = (char *)out.data;
    c->out_len = (uint32_t)out.len;
    c->out_cap = (uint32_t)out.cap;
    return true;
}

/* ---------------------------------------------------------------- the response */
static void finish_client(ms_hblink *l, bool whole);

/* The response cannot go on (the compressor failed): the client's
 * connection is cut and so is the link, whose stream has nowhere to go. */
static void cut_response(ms_hblink *l)
{
    finish_client(l, false);
    ms_hb_link_close(l);
}

static void flush_compressed(ms_hblink *l, ms_conn *c)
{
    if (l->cbuf.len == 0)
        return;
    if (l->chunked) {
        char hdr[24];
        size_t n = ms_chunk_header(l->cbuf.len, hdr);
        ms_conn_write(c, hdr, n, true);
        ms_conn_write(c, (const char *)l->cbuf.data, l->cbuf.len, true);
        ms_conn_write(c, "\r\n", 2, false);
    } else {
        ms_conn_write(c, (const char *)l->cbuf.data, l->cbuf.len, true);
    }
    l->cbuf.len = 0;
}

/* A decimal Content-Length, strictly; false: not one. */
static bool parse_length(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Response-phase payloads on the bay's head, as for a ship's (proxy.c).
 * false: one failed closed (detail says which). */
static bool run_response_payloads(ms_conn *c, const ms_dock_reply *r, char *detail, size_t dlen,
                                  const ms_payload_result **edits)
{
    ms_worker *w = c->w;
    *edits = NULL;
    if (!c->g->pw)
        return true;
    ms_payload_result_reset(&w->pres);
    for (size_t i = 0; i < r->n_headers; i++) {
        w->phdrs[i].name = (ms_payload_slice){ r->headers[i].name, r->headers[i].name_len };
        w->phdrs[i].value = (ms_payload_slice){ r->headers[i].value, r->headers[i].value_len };
    }
    return ms_proxy_response_payloads(c, r->status, r->n_headers, detail, dlen, edits);
}

/* The client's head for the bay's REPLY (resp_head.c), corked. false:
 * nothing written, and the reply cannot stand (what says why: a protocol
 * error), or what is NULL: the client is gone, or a response-phase payload
 * failed and the client got a 500 (the link is let go of here). */
static bool write_head(ms_hblink *l, const ms_dock_reply *r, uint64_t file_size, const char **what)
{
    ms_conn *c = l->c;
    int st = r->status;
    const ms_payload_result *pres = NULL;
    char pdetail[200];
    if (r->kind != MS_DOCK_REPLY_TUNNEL && !run_response_payloads(c, r, pdetail, sizeof pdetail, &pres)) {
        *what = NULL;
        l->c = NULL;
        c->hbl = NULL;
        c->hbt = NULL;
        ms_hb_link_close(l); /* the bay's answer cannot be passed on */
        ms_conn_uncork(c);
        ms_conn_respond_error(c, 500, pdetail);
        return false;
    }
    bool no_body_status = st == 204 || st == 304 || (st >= 100 && st < 200);
    ms_field fields[MS_MAX_HEADERS];
    const ms_field *ctype = NULL, *cenc = NULL, *cc = NULL;
    bool have_len = false;
    uint64_t len = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const ms_dock_param *p = &r->headers[i];
        fields[i] = (ms_field){ p->name, p->name_len, p->value, p->value_len };
        if (name_eq(p->name, p->name_len, "content-length")) {
            uint64_t v;
            if (!parse_length(p->value, p->value_len, &v) || (have_len && v != len)) {
                *what = "sent a REPLY with an invalid Content-Length";
                return false;
            }
            have_len = true;
            len = v;
        } else if (name_eq(p->name, p->name_len, "content-type")) {
            ctype = &fields[i];
        } else if (name_eq(p->name, p->name_len, "content-encoding")) {
            cenc = &fields[i];
        } else if (name_eq(p->name, p->name_len, "cache-control")) {
            cc = &fields[i];
        }
    }
    bool head_req = c->is_head_method;
    bool body = r->kind == MS_DOCK_REPLY_STREAM && !head_req && !no_body_status;
    if (r->kind == MS_DOCK_REPLY_EMPTY && have_len && len != 0 && !head_req && !no_body_status) {
        *what = "sent an empty REPLY with a Content-Length";
        return false;
    }
    bool tunnel = r->kind == MS_DOCK_REPLY_TUNNEL;
    if (r->kind == MS_DOCK_REPLY_FILE) {
        have_len = true; /* the file's own size, never the bay's word */
        len = file_size;
    }
    l->discard = r->kind == MS_DOCK_REPLY_STREAM && !body;
    l->has_length = r->kind == MS_DOCK_REPLY_STREAM && have_len;
    l->length_left = len;
    ms_encoding enc = MS_ENC_IDENTITY;
    if (c->g->m->global.compression && st == 200 && body && !cenc && ctype &&
        ms_compress_type_ok(ctype->value, ctype->value_len) &&
        !(cc && memmem(cc->value, cc->value_len, "no-transform", 12)) && (!have_len || len >= MS_COMPRESS_MIN_SIZE)) {
        const ms_hdr *ae = ms_conn_header(c, "accept-encoding");
        bool forbidden = false;
        if (ae)
            enc = ms_compress_negotiate(c->buf + ae->val, ae->val_len, &forbidden);
        if (enc != MS_ENC_IDENTITY && !(l->comp = ms_compressor_new_in(&c->w->ccache, enc, -1, have_len ? len : 0)))
            enc = MS_ENC_IDENTITY;
    }
    bool client_length = have_len && enc == MS_ENC_IDENTITY && !tunnel;
    if (r->kind == MS_DOCK_REPLY_EMPTY && !no_body_status && !head_req) {
        client_length = true; /* no body: Content-Length: 0 */
        len = 0;
    }
    if (body && !client_length) {
        if (c->http_minor >= 1)
            l->chunked = true;
        else
            ms_conn_end_after_response(c, false); /* HTTP/1.0: the end of the body is the close */
    }
    if (!c->keep_alive && !tunnel)
        ms_conn_end_after_response(c, false);
    /* the standard phrase (a bay sends none): http-parser's table */
    const char *reason = http_status_str((enum http_status)st);
    if (strcmp(reason, "<unknown>") == 0)
        reason = ms_http_reason(st);
    ms_resp_head h = {
        .status = st,
        .reason = reason,
        .reason_len = strlen(reason),
        .fields = fields,
        .nfields = r->n_headers,
        .tunnel = tunnel,
        .keep = pres ? ms_proxy_edits_keep : NULL,
        .added = ms_proxy_edits_added,
        .nadded = pres ? pres->nedits : 0,
        .edits_arg = pres,
        .encoding = enc != MS_ENC_IDENTITY ? ms_encoding_name(enc) : NULL,
        .date = c->w->date,
        .date_len = c->w->date_len,
        /* a HEAD says the framing its GET would have (and sends no chunk) */
        .chunked = l->chunked || (head_req && r->kind == MS_DOCK_REPLY_STREAM && !no_body_status && !have_len &&
                                  c->http_minor >= 1),
        .has_length = client_length && !no_body_status,
        .length = len,
        .connection = tunnel                ? NULL
                      : c->close_after_write ? "close"
                      : c->http_minor == 0   ? "keep-alive"
                                             : NULL,
    };
    size_t bound = ms_resp_head_bound(&h);
    if (bound > MS_RESP_HEAD_MAX) {
        *what = "sent a REPLY head larger than 64 KiB";
        ms_hb_response_drop(l);
        return false;
    }
    char *head = ms_conn_cork_reserve(c, bound);
    if (!head) {
        *what = NULL; /* the client's connection is closing */
        ms_hb_response_drop(l);
        return false;
    }
    size_t hl = ms_resp_head_write(&h, head, bound);
    assert(hl > 0);
    ms_conn_cork_commit(c, hl);
    l->head_sent = true;
    l->status = st;
    return true;
}

/* The request is over for the link: the response ended (whole: counted
 * and done) or was cut (the client's connection closes). */
static void finish_client(ms_hblink *l, bool whole)
{
    ms_conn *c = l->c;
    ms_hbtarget *t = l->t;
    if (!c)
        return;
    l->c = NULL;
    c->hbl = NULL;
    c->hbt = NULL;
    if (!whole) {
        ms_hb_count(t, MS_HB_ABORTED);
        if (l->head_sent)
            ms_conn_record(c, l->status); /* cut by the bay: counted with the status sent */
        ms_conn_uncork(c);
        ms_conn_close(c);
        return;
    }
    ms_hb_count(t, MS_HB_REPLIED);
    ms_conn_record(c, l->status);
    ms_conn_uncork(c); /* the response's bytes leave before the session goes on */
    ms_conn_response_done(c);
}

static void body_bytes(ms_hblink *l, const uint8_t *data, size_t len, bool borrowed)
{
    ms_conn *c = l->c;
    if (l->discard || len == 0)
        return;
    if (l->comp) {
        if (ms_compressor_write(l->comp, data, len, false, &l->cbuf) != 0) {
            cut_response(l);
            return;
        }
        flush_compressed(l, c);
        return;
    }
    if (l->chunked) {
        char hdr[24];
        size_t n = ms_chunk_header(len, hdr);
        ms_conn_write(c, hdr, n, true);
    }
    ms_conn_write(c, (const char *)data, len, !borrowed);
    if (l->chunked)
        ms_conn_write(c, "\r\n", 2, false);
}

/* The stream's last HAUL came: the end of the client's body. */
static void body_end(ms_hblink *l)
{
    ms_conn *c = l->c;
    if (l->comp) {
        if (ms_compressor_write(l->comp, NULL, 0, true, &l->cbuf) != 0) {
            cut_response(l);
            return;
        }
        flush_compressed(l, c);
    }
    if (l->chunked && !l->discard)
        ms_conn_write(c, "0\r\n\r\n", 5, false);
    ms_hb_response_drop(l);
    finish_client(l, true);
}

/* A link failed under its request: 502 before the head (once more on
 * another link when that is safe), a cut connection after it. */
static void request_failed_as(ms_hblink *l, int result, int status, const char *what, bool may_retry);

void ms_hb_request_failed(ms_hblink *l, int result, int status, const char *what)
{
    request_failed_as(l, result, status, what, true);
}

static void request_failed_as(ms_hblink *l, int result, int status, const char *what, bool may_retry)
{
    ms_hbtarget *t = l->t;
    ms_conn *c = l->c;
    bool head_sent = l->head_sent;
    int sent_status = l->status;
    l->c = NULL;
    if (c)
        c->hbl = NULL;
    ms_hb_link_close(l);
    if (!c)
        return;
    if (head_sent) {
        ms_hb_count(t, MS_HB_ABORTED);
        c->hbt = NULL;
        ms_conn_record(c, sent_status);
        ms_hb_log(t, c, "", what);
        ms_conn_uncork(c);
        ms_conn_close(c);
        return;
    }
    int m = c->parser.method;
    bool idempotent = m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT || m == HTTP_DELETE;
    if (may_retry && status == 502 && idempotent && !c->has_body && !c->retried && !c->upgrade) {
        c->retried = true;
        ms_hb_log(t, c, "", what);
        if (ms_hb_q_push(t, c, true)) {
            __atomic_fetch_add(&ms_worker_slot(c->w, c->slot)->retries, 1, __ATOMIC_RELAXED);
            ms_hb_pump(t);
            return;
        }
    }
    c->hbt = NULL;
    ms_hb_count(t, result);
    char detail[256];
    snprintf(detail, sizeof detail, "bay \"%s\" %s", ms_hb_ship(c)->name, what);
    ms_hb_log(t, c, "", what);
    ms_conn_respond_error(c, status, detail);
}

static void link_protocol_error(ms_hblink *l, const char *what)
{
    ms_hbtarget *t = l->t;
    ms_hub_count(&ms_hb_hub(t)->protocol_errors, 1);
    char msg[256];
    snprintf(msg, sizeof msg, "broke the docking protocol: %s", what);
    if (l->state == HB_TUNNEL && l->c) {
        ms_conn *c = l->c; /* its 101 and its result were counted when the tunnel opened */
        ms_hb_log(t, c, "", msg);
        l->c = NULL;
        c->hbl = NULL;
        ms_hb_link_close(l);
        ms_conn_close(c); /* the tunnel is cut */
        return;
    }
    if (l->c) {
        request_failed_as(l, MS_HB_BAD_GATEWAY, 502, msg, false); /* the bay would answer the same again */
        return;
    }
    ms_hb_log(t, NULL, "", msg);
    ms_hb_link_close(l);
}

/* ---------------------------------------------------------------- file replies */
/* Is real (a resolved path) inside dir (resolved here)? */
static bool path_under(const char *dir, const char *real)
{
    char r[PATH_MAX];
    if (!dir || !realpath(dir, r))
        return false;
    size_t n = strlen(r);
    if (n == 1 && r[0] == '/')
        return true;
    return strncmp(real, r, n) == 0 && real[n] == '/';
}

/* The directories whose files c's bay may name: its file_roots, else its
 * cwd (the manifest's directory without one); none for an upstream
 * without file_roots. */
static bool inside_roots(const ms_conn *c, const char *real)
{
    const ms_ship *s = ms_hb_ship(c);
    for (size_t i = 0; i < s->file_roots.len; i++)
        if (path_under(s->file_roots.items[i], real))
            return true;
    if (s->file_roots.len || s->kind == MS_UPSTREAM)
        return false;
    return path_under(s->cwd ? s->cwd : c->g->m->dir, real);
}

/* The file a REPLY names, opened when it is a regular file inside the
 * bay's roots (where the opened file really is counts: symlinks and
 * renames on the way do not help); -1 with *what set otherwise. */
static int open_reply_file(const ms_conn *c, const char *p, size_t n, uint64_t *size, const char **what)
{
    char path[PATH_MAX];
    if (n == 0 || n >= sizeof path) {
        *what = "a file REPLY with a path too long";
        return -1;
    }
    memcpy(path, p, n);
    path[n] = '\0';
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        *what = "a file REPLY naming a file that cannot be opened";
        return -1;
    }
    struct stat st;
    char proc[64], real[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t rl = readlink(proc, real, sizeof real - 1);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *what = "a file REPLY naming something that is not a regular file";
    } else if (rl <= 0 || (size_t)rl >= sizeof real - 1) {
        *what = "a file REPLY naming a file whose place cannot be read";
    } else {
        real[rl] = '\0';
        if (inside_roots(c, real)) {
            *size = (uint64_t)st.st_size;
            return fd;
        }
        *what = "a file REPLY naming a file outside its file_roots";
    }
    close(fd);
    return -1;
}

static void on_file_reply(ms_hblink *l, const ms_dock_reply *r)
{
    ms_conn *c = l->c;
    assert(c != NULL); /* a REPLY is only read while the link has a request */
    ms_hbtarget *t = l->t;
    uint64_t size = 0;
    const char *what = NULL;
    int fd = open_reply_file(c, r->file_path, r->file_path_len, &size, &what);
    if (fd < 0) {
        link_protocol_error(l, what);
        return;
    }
    l->replied = true;
    l->kind = r->kind;
    if (!write_head(l, r, size, &what)) {
        close(fd);
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    /* the link is done with the request: READY comes while the file goes */
    uv_timer_stop(&l->timer);
    l->state = HB_AFTER;
    l->c = NULL;
    c->hbl = NULL;
    c->hbt = NULL;
    ms_hb_count(t, MS_HB_REPLIED);
    bool body = !c->is_head_method && size > 0;
    ms_conn_record_ahead(c, 200, body ? size : 0);
    ms_conn_uncork(c);
    if (!body || ms_conn_is_closing(c)) {
        close(fd);
        ms_conn_responded(c);
        return;
    }
    c->file_fd = fd;
    c->file_off = 0;
    c->file_left = size;
    if (!ms_conn_writing(c))
        ms_handler_static.drained(c); /* sendfile while the socket takes it */
}

/* ---------------------------------------------------------------- tunnels */
/* Client bytes to the bay, as HAULs; the client waits while they back up. */
static void tunnel_up(ms_hblink *l, const char *data, size_t len)
{
    ms_conn *c = l->c;
    while (len > 0) {
        size_t k = len < MS_DOCK_V3_CHUNK ? len : MS_DOCK_V3_CHUNK;
        uint8_t hdr[MS_DOCK_HAUL_HEADER_LEN];
        ms_dock_put_haul_header(hdr, l->req_id, false, k);
        uv_buf_t bufs[2] = { uv_buf_init((char *)hdr, sizeof hdr), uv_buf_init((char *)data, (unsigned)k) };
        if (!ms_hb_link_write(l, bufs, 2)) {
            l->c = NULL;
            c->hbl = NULL;
            ms_hb_link_close(l);
            ms_conn_close(c);
            return;
        }
        data += k;
        len -= k;
    }
    if (l->write_pending > MS_WRITE_HIGH && !l->client_paused) {
        l->client_paused = true;
        ms_conn_stop_reading(c);
    }
}

static void on_tunnel_reply(ms_hblink *l, const ms_dock_reply *r)
{
    ms_conn *c = l->c;
    assert(c != NULL);
    if (!c->upgrade || r->status != 101) {
        link_protocol_error(l, "a tunnel REPLY that is not a 101 to an upgrade");
        return;
    }
    l->replied = true;
    l->kind = r->kind;
    const char *what = NULL;
    if (!write_head(l, r, 0, &what)) {
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    uv_timer_stop(&l->timer);
    l->state = HB_TUNNEL;
    c->hbt = NULL;
    ms_hb_count(l->t, MS_HB_REPLIED);
    ms_conn_uncork(c);
    if (ms_conn_is_closing(c))
        return;
    const char *rest;
    size_t n = ms_conn_switch_protocols(c, &rest);
    if (n)
        tunnel_up(l, rest, n);
}

/* The bay's bytes to the client; its FIN ends the tunnel: the client's
 * connection closes once they are written, and the link with it. */
static void tunnel_down(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    uint32_t id;
    bool fin;
    const uint8_t *data;
    size_t len;
    if (ms_dock_parse_haul(fr->payload, fr->len, &id, &fin, &data, &len) != 0 || id != l->req_id) {
        link_protocol_error(l, "a malformed HAUL in a tunnel");
        return;
    }
    ms_conn *c = l->c;
    if (len)
        ms_conn_write(c, (const char *)data, len, !borrowed);
    if (!fin)
        return;
    l->c = NULL;
    c->hbl = NULL;
    ms_hb_link_close(l);
    ms_conn_uncork(c);
    ms_conn_end_with(c, "", 0);
}

static void on_reply(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_dock_reply r;
    char err[160];
    if (ms_dock_parse_reply(fr->payload, fr->len, &r, MS_MAX_HEADERS, err, sizeof err) != 0) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, err);
        return;
    }
    if (r.request_id != l->req_id || l->replied) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, l->replied ? "a second REPLY" : "a REPLY for another request id");
        return;
    }
    if (l->c && ms_conn_logs_access(l->c))
        l->c->up_head_us = ms_now_us();
    if (r.kind == MS_DOCK_REPLY_FILE) {
        on_file_reply(l, &r);
        ms_dock_reply_free(&r);
        return;
    }
    if (r.kind == MS_DOCK_REPLY_TUNNEL) {
        on_tunnel_reply(l, &r);
        ms_dock_reply_free(&r);
        return;
    }
    if (r.status < 200) {
        ms_dock_reply_free(&r);
        link_protocol_error(l, "a REPLY with an interim status (1xx) that is not a tunnel");
        return;
    }
    l->replied = true;
    l->kind = r.kind;
    const char *what = NULL;
    bool ok = write_head(l, &r, UINT64_MAX, &what);
    ms_dock_reply_free(&r);
    if (!ok) {
        if (what)
            link_protocol_error(l, what);
        else
            request_failed_as(l, MS_HB_ABORTED, 502, "could not be answered: out of memory", false);
        return;
    }
    if (l->kind == MS_DOCK_REPLY_EMPTY) {
        uv_timer_stop(&l->timer);
        l->state = HB_AFTER;
        finish_client(l, true);
        return;
    }
    /* a stream: its body may take its time (long polls, event streams);
     * the client's connection is what ends it early */
    uv_timer_stop(&l->timer);
}

static void on_haul(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    uint32_t id;
    bool fin;
    const uint8_t *data;
    size_t len;
    if (ms_dock_parse_haul(fr->payload, fr->len, &id, &fin, &data, &len) != 0) {
        link_protocol_error(l, "a malformed HAUL");
        return;
    }
    if (id != l->req_id || !l->replied || l->kind != MS_DOCK_REPLY_STREAM) {
        link_protocol_error(l, id != l->req_id ? "a HAUL for another request id" : "a HAUL outside a stream");
        return;
    }
    if (l->has_length) {
        if (len > l->length_left || (fin && len != l->length_left)) {
            link_protocol_error(l, "a body that does not match its Content-Length");
            return;
        }
        l->length_left -= len;
    }
    body_bytes(l, data, len, borrowed);
    if (!l->c)
        return;
    if (fin) {
        l->state = HB_AFTER;
        body_end(l);
    }
}

static void on_ready(ms_hblink *l, const ms_dock_frame *fr)
{
    ms_hbtarget *t = l->t;
    uint32_t id;
    if (ms_dock_parse_ready(fr->payload, fr->len, &id) != 0 || id != l->req_id) {
        link_protocol_error(l, "a READY for another request id");
        return;
    }
    __atomic_fetch_sub(&ms_hb_hub(t)->links_busy, 1, __ATOMIC_RELAXED);
    l->state = HB_IDLE;
    uv_timer_stop(&l->timer);
    ms_worker *w = t->w;
    if (w->stopping || w->draining) {
        if (!t->nq) {
            ms_hb_link_close(l);
            return;
        }
    } else if (!t->nq && __atomic_load_n(&ms_hb_hub(t)->starved, __ATOMIC_RELAXED) > 0) {
        ms_hb_link_close(l); /* another worker waits for a link it may not open: this one gives way */
        return;
    }
    ms_hb_pump(t);
}

/* One frame from the bay, by the link's state. */
static void on_frame(ms_hblink *l, const ms_dock_frame *fr, bool borrowed)
{
    switch (l->state) {
    case HB_DOCKING:
        if (fr->type != MS_DOCK_DOCK) {
            ms_hub_count(&ms_hb_hub(l->t)->protocol_errors, 1);
            ms_hb_link_failed(l, "sent another frame before its DOCK");
            return;
        }
        ms_hb_on_dock(l, fr);
        return;
    case HB_BUSY:
        if (fr->type == MS_DOCK_REPLY)
            on_reply(l, fr);
        else if (fr->type == MS_DOCK_HAUL)
            on_haul(l, fr, borrowed);
        else if (fr->type == MS_DOCK_READY)
            link_protocol_error(l, "a READY before the response ended");
        else
            link_protocol_error(l, "an unexpected frame");
        return;
    case HB_TUNNEL:
        if (fr->type == MS_DOCK_HAUL)
            tunnel_down(l, fr, borrowed);
        else
            link_protocol_error(l, "a frame other than HAUL in a tunnel");
        return;
    case HB_AFTER:
        if (fr->type == MS_DOCK_READY)
            on_ready(l, fr);
        else
            link_protocol_error(l, fr->type == MS_DOCK_HAUL ? "a HAUL after the response ended"
                                                             : "an unexpected frame before READY");
        return;
    default:
        link_protocol_error(l, "a frame while no request was out");
        return;
    }
}

void ms_hb_on_link_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    ms_hblink *l = s->data;
    (void)b;
    if (n == 0 || l->state == HB_CLOSING)
        return;
    if (n < 0) {
        ms_hb_link_read(l, false);
        if (l->state == HB_BUSY)
            ms_hub_count(&ms_hb_hub(l->t)->link_failures, 1);
        if (l->state == HB_BUSY)
            ms_hb_request_failed(l, MS_HB_BAD_GATEWAY, 502,
                           l->head_sent ? "closed its link in the middle of the response"
                                        : "closed its link before answering");
        else if (l->state == HB_DOCKING)
            ms_hb_link_failed(l, "closed its link before its DOCK");
        else if (l->state == HB_TUNNEL && l->c) {
            ms_conn *c = l->c;
            l->c = NULL;
            c->hbl = NULL;
            ms_hb_link_close(l);
            ms_conn_close(c); /* the bay left without FIN: the tunnel is cut */
        }
        else
            ms_hb_link_close(l); /* an idle link the bay let go (it drains), or no READY */
        if (l->state != HB_CLOSING)
            ms_hb_link_close(l);
        return;
    }
    ms_conn *c = l->c;
    if (c)
        ms_conn_cork(c);
    const uint8_t *p = (const uint8_t *)l->rbuf;
    size_t left = (size_t)n;
    while (left > 0 && l->state != HB_CLOSING) {
        size_t used = 0;
        ms_dock_frame fr;
        int rc = ms_dock_decoder_feed(&l->dec, p, left, &used, &fr);
        p += used;
        left -= used;
        if (rc < 0) {
            link_protocol_error(l, ms_dock_decoder_message(&l->dec));
            break;
        }
        if (rc == 0)
            break;
        /* a frame whole in the read buffer is borrowed until the uncork below */
        bool borrowed = fr.payload >= (const uint8_t *)l->rbuf && fr.payload < (const uint8_t *)l->rbuf + HB_RBUF;
        ms_conn *before = l->c;
        on_frame(l, &fr, borrowed);
        if (!borrowed && before && before->hbl == l)
            ms_conn_uncork(before), ms_conn_cork(before); /* the decoder's buffer is reused */
    }
    if (c && l->c == c && l->comp && l->head_sent) {
        /* the bay may pause here: what the encoder holds goes out now */
        if (ms_compressor_flush(l->comp, &l->cbuf) != 0)
            cut_response(l);
        else
            flush_compressed(l, c);
    }
    if (c) {
        ms_conn_uncork(c);
        if ((l->state == HB_BUSY || l->state == HB_TUNNEL) && l->c == c &&
            ms_conn_write_pending(c) > MS_WRITE_HIGH) {
            ms_hb_link_read(l, false); /* a slow client slows the bay */
            l->paused = true;
        }
    }
}

/* ---------------------------------------------------------------- the handler */
static void hbay_drained(ms_conn *c)
{
    if (c->file_fd >= 0) {
        ms_handler_static.drained(c); /* a file REPLY going out */
        return;
    }
    ms_hblink *l = c->hbl;
    if (l && l->paused && ms_conn_write_pending(c) <= MS_WRITE_HIGH) {
        l->paused = false;
        ms_hb_link_read(l, true);
    }
}

/* max_queue requests wait for the bay over all workers: 503 (with Retry-After). */
static void respond_queue_full(ms_hbtarget *t, ms_conn *c)
{
    const ms_ship *s = ms_hb_ship(c);
    ms_hb_count(t, MS_HB_QUEUE_FULL);
    __atomic_fetch_add(&c->w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
    char detail[200];
    snprintf(detail, sizeof detail, "bay \"%s\" is busy: max_queue requests wait for it", s->name);
    ms_conn_respond_error(c, 503, detail); /* (with Retry-After: 1) */
}

/* Is the queue full already (then 503 went to the client)? */
static bool queue_full(ms_hbtarget *t, ms_conn *c)
{
    const ms_ship *s = ms_hb_ship(c);
    uint32_t max = s->max_queue ? s->max_queue : HB_DEFAULT_MAX_QUEUE;
    if (__atomic_load_n(&ms_hb_hub(t)->queued, __ATOMIC_RELAXED) < max)
        return false;
    respond_queue_full(t, c);
    return true;
}

static bool hbay_start(ms_conn *c, const ms_handler_arg *arg)
{
    (void)arg;
    ms_worker *w = c->w;
    const ms_ship *s = ms_hb_ship(c);
    const ms_proc *proc = ms_worker_proc(c->g, c->ship);
    if (proc && (!__atomic_load_n(&proc->ready_flag, __ATOMIC_ACQUIRE) ||
                 __atomic_load_n(&proc->breaker, __ATOMIC_ACQUIRE) == MS_BREAKER_OPEN)) {
        __atomic_fetch_add(&w->up_errors[MS_UPERR_UNAVAILABLE], 1, __ATOMIC_RELAXED);
        char detail[200];
        snprintf(detail, sizeof detail, "bay \"%s\" is %s", s->name,
                 __atomic_load_n(&proc->ready_flag, __ATOMIC_ACQUIRE) ? "failing its health checks" : "not ready");
        ms_conn_respond_error(c, 503, detail);
        return true;
    }
    ms_hbtarget *t = ms_hb_target_get(w, proc ? proc->slot : c->ship);
    if (!t) {
        ms_conn_respond_error(c, 503, w->hub ? "out of memory" : "HTTP bays are not served in this process");
        return true;
    }
    if (c->has_body && !c->body_buffered) { /* an upgrade's too: the bay reads it before its 101 */
        if (queue_full(t, c)) /* no upload for a queue that is full already */
            return true;
        ms_conn_read_body_first(c); /* the whole body before a link is claimed */
        return true;
    }
    if (!build_hail(c)) {
        ms_conn_respond_error(c, 500, "out of memory");
        return true;
    }
    if (!ms_hb_q_push(t, c, false)) {
        respond_queue_full(t, c);
        return true;
    }
    ms_hb_pump(t);
    return true;
}

static void hbay_data(ms_conn *c, const char *data, size_t len)
{
    ms_hblink *l = c->hbl;
    if (l && l->state == HB_TUNNEL)
        tunnel_up(l, data, len);
}

static void hbay_abort(ms_conn *c)
{
    ms_handler_static.abort(c); /* a file REPLY's descriptor, if any */
    ms_hbtarget *t = c->hbt;
    if (t && c->hq_queued) {
        ms_hb_q_remove(t, c);
        ms_hb_drop_spare(t);
    }
    c->hbt = NULL;
    ms_hblink *l = c->hbl;
    if (!l)
        return;
    /* the bay is still at this request: the link cannot serve another */
    l->c = NULL;
    c->hbl = NULL;
    ms_hb_link_close(l);
}

static int hbay_partial_status(const ms_conn *c)
{
    const ms_hblink *l = c->hbl;
    return l && l->head_sent && l->state == HB_BUSY ? l->status : 0;
}

const ms_handler ms_handler_hbay = {
    .start = hbay_start,
    .data = hbay_data,
    .drained = hbay_drained,
    .partial_status = hbay_partial_status,
    .abort = hbay_abort,
};
