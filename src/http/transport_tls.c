/* transport_tls.c: the TLS transport (transport.h): TLS over another
 * transport (the client's socket), on OpenSSL 3 with a BIO of our own, so
 * OpenSSL never touches a socket. OpenSSL reads ciphertext straight from
 * the socket read's buffer (what it leaves there when the owner stops
 * reading is kept in a small buffer of the connection until it is taken),
 * plaintext is decrypted straight into the owner's buffer; the records
 * OpenSSL writes go straight to the socket transport (which takes what it
 * can and queues the rest). An idle connection holds no ciphertext buffer.
 *
 *   HANDSHAKE --ok--> OPEN --(close_notify, EOF)--> end
 *       |--first byte not a handshake record--> PLAIN (bytes pass through)
 *       '--error--> FAILED (alert sent, the owner reads an error)
 *
 * Bounded: the socket is read only while the owner reads (during the
 * handshake, while the read BIO holds less than TLS_RBIO_MAX), so the read
 * BIO holds at most one socket read the owner has not taken yet; writes are
 * encrypted TLS_WCHUNK at a time and handed on, so the write BIO never
 * holds more than one chunk's records. The handshake's time limit is the
 * owner's (a connection's head timeout). Plaintext left in OpenSSL when
 * the owner starts reading again is delivered from an idle handle, never
 * from inside read_start. */
#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http/transport.h"

#define TLS_RBIO_MAX (64u * 1024u)  /* ciphertext held during the handshake before it fails */
#define TLS_WCHUNK 16384u           /* plaintext per SSL_write: one full record */
#define TLS_WPENDING_MAX (1024u * 1024u) /* bytes queued to the socket before it is no longer read */
#define TLS_WQUEUED_MAX 512         /* ... or writes: each small record queued is an allocation of its own */

typedef enum tls_state { TLS_HANDSHAKE, TLS_OPEN, TLS_PLAIN, TLS_FAILED } tls_state;

typedef struct tls_xport {
    ms_xport x;
    ms_xport *inner;
    SSL *ssl;
    BIO *bio;                  /* ours (tls_bio): owned by ssl */
    char *scratch;             /* the caller's buffer for socket reads */
    size_t scratch_len;
    const char *in;            /* ciphertext OpenSSL has not taken: in scratch during a read, else in hold */
    size_t in_len;
    char *hold;                /* what is left of a socket read once it returns (NULL: nothing) */
    int write_err;             /* the socket transport refused a record */
    uint64_t *counts;          /* handshakes: MS_TLS_HS_* */
    uv_idle_t idle;            /* delivers what OpenSSL holds after a read_start */
    int handles_open;          /* inner + idle */
    tls_state state;
    ssize_t end;               /* how the stream ended (UV_EOF: close_notify or the socket's EOF; an error); 0: open */
    bool end_told;             /* the owner has read it */
    bool got_bytes;            /* the client sent something */
    bool counted;
    bool shut;                 /* close_notify sent */
    bool pumping;
} tls_xport;

static void pump(tls_xport *t);

static void count(tls_xport *t, int which)
{
    if (t->counted || !t->counts)
        return;
    t->counted = true;
    __atomic_fetch_add(&t->counts[which], 1, __ATOMIC_RELAXED);
}

static void sync_counts(tls_xport *t)
{
    t->x.write_pending = t->inner->write_pending;
    t->x.writes_in_flight = t->inner->writes_in_flight;
}

/* What OpenSSL wrote went to the socket transport at once (bio_write):
 * how that went. */
static int flush(tls_xport *t)
{
    sync_counts(t);
    return t->write_err;
}

/* ---------------------------------------------------------------- the BIO */
static int bio_write(BIO *b, const char *p, int len)
{
    tls_xport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->write_err)
        return -1;
    if (len <= 0)
        return 0;
    uv_buf_t buf = uv_buf_init((char *)p, (unsigned)len);
    int rc = ms_xport_write(t->inner, &buf, 1); /* copies what the socket does not take */
    if (rc != 0) {
        t->write_err = rc;
        return -1;
    }
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    tls_xport *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (t->in_len == 0) {
        BIO_set_retry_read(b); /* empty: "retry", not EOF */
        return -1;
    }
    size_t k = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(out, t->in, k);
    t->in += k;
    t->in_len -= k;
    if (t->in_len == 0 && t->hold) {
        free(t->hold);
        t->hold = NULL;
    }
    return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tls_xport *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method; /* set once, read-only after */
static pthread_once_t bio_method_once = PTHREAD_ONCE_INIT;

static void bio_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mothership transport");
    if (m && (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
              BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m;
}

/* Ciphertext OpenSSL has not taken when a socket read returns: kept, as the
 * read's buffer is the worker's. */
static int keep_rest(tls_xport *t)
{
    if (t->in_len == 0 || t->in == t->hold)
        return 0;
    char *h = malloc(t->in_len);
    if (!h)
        return UV_ENOMEM;
    memcpy(h, t->in, t->in_len);
    free(t->hold);
    t->hold = h;
    t->in = h;
    return 0;
}

static void drop_input(tls_xport *t)
{
    free(t->hold);
    t->hold = NULL;
    t->in = NULL;
    t->in_len = 0;
}

/* The socket should be read when the owner reads, or the handshake needs
 * it; never while the client leaves much of what we wrote unread, since
 * reading can make OpenSSL write (an answer to each KeyUpdate that asks
 * for one), and a client that never reads would grow that queue without
 * bound: in bytes, and in writes, since a queued 22-byte record costs its
 * own allocation. in_written reads again once it has drained. */
static void want_socket(tls_xport *t)
{
    if (t->x.closing || t->end)
        return;
    bool want = t->state == TLS_HANDSHAKE ? t->in_len < TLS_RBIO_MAX : t->x.reading;
    want = want && t->inner->write_pending <= TLS_WPENDING_MAX && t->inner->writes_in_flight <= TLS_WQUEUED_MAX;
    if (want && !t->inner->reading) {
        if (ms_xport_read_start(t->inner) != 0 && !t->end)
            t->end = UV_EIO;
    } else if (!want && t->inner->reading) {
        ms_xport_read_stop(t->inner);
    }
}

/* ---------------------------------------------------------------- the socket's callbacks */
static void in_alloc(void *owner, size_t suggested, uv_buf_t *b)
{
    tls_xport *t = owner;
    (void)suggested;
    if (t->state == TLS_PLAIN) {
        t->x.cbs->alloc(t->x.owner, suggested, b);
        return;
    }
    *b = uv_buf_init(t->scratch, (unsigned)t->scratch_len);
}

static void in_read(void *owner, ssize_t n, const uv_buf_t *b)
{
    tls_xport *t = owner;
    if (t->x.closing)
        return;
    if (t->state == TLS_PLAIN) {
        t->x.cbs->read(t->x.owner, n, b);
        return;
    }
    if (n < 0) {
        ms_xport_read_stop(t->inner);
        t->end = n;
        pump(t);
        return;
    }
    if (!t->got_bytes && t->state == TLS_HANDSHAKE) {
        t->got_bytes = true;
        if ((unsigned char)b->base[0] != 0x16) {
            /* not a TLS handshake record: a plain HTTP client, most likely;
             * from now on bytes pass through so the owner can say so */
            t->state = TLS_PLAIN;
            count(t, MS_TLS_HS_FAILED);
            t->x.cbs->read(t->x.owner, MS_XPORT_NOT_TLS, b);
            return;
        }
    }
    if (t->in_len > 0) { /* behind what is held */
        char *h = malloc(t->in_len + (size_t)n);
        if (!h) {
            ms_xport_read_stop(t->inner);
            t->end = UV_ENOMEM;
            pump(t);
            return;
        }
        memcpy(h, t->in, t->in_len);
        memcpy(h + t->in_len, b->base, (size_t)n);
        free(t->hold);
        t->hold = h;
        t->in = h;
        t->in_len += (size_t)n;
    } else if (n > 0) {
        t->in = b->base;
        t->in_len = (size_t)n;
    }
    pump(t);
    if (t->x.closing) {
        drop_input(t);
    } else if (keep_rest(t) != 0) {
        drop_input(t);
        ms_xport_read_stop(t->inner);
        t->end = UV_ENOMEM;
        pump(t);
    }
}

static void in_written(void *owner, int status)
{
    tls_xport *t = owner;
    sync_counts(t);
    if (t->x.closing)
        return;
    if (t->state != TLS_PLAIN && !t->pumping)
        want_socket(t); /* read again once the client has taken enough */
    t->x.cbs->written(t->x.owner, status);
}

static void on_handle_closed(tls_xport *t)
{
    if (--t->handles_open > 0)
        return;
    t->x.writes_in_flight = 0;
    t->x.write_pending = 0;
    t->x.cbs->closed(t->x.owner);
    SSL_free(t->ssl);
    free(t->hold);
    free(t);
}

static void in_closed(void *owner)
{
    on_handle_closed(owner);
}

static void on_idle_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

static const ms_xport_cbs inner_cbs = {
    .alloc = in_alloc,
    .read = in_read,
    .written = in_written,
    .closed = in_closed,
};

/* ---------------------------------------------------------------- decrypting */
/* The handshake failed or the stream broke: the alert goes out, and the
 * owner reads an error once it reads (pump's end). */
static void fail(tls_xport *t)
{
    if (t->state == TLS_HANDSHAKE)
        count(t, MS_TLS_HS_FAILED);
    t->state = TLS_FAILED;
    ERR_clear_error();
    (void)flush(t);
    ms_xport_read_stop(t->inner);
    if (!t->end || t->end == UV_EOF)
        t->end = UV_ECONNABORTED;
}

static void handshake(tls_xport *t)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->state = TLS_OPEN;
        count(t, SSL_session_reused(t->ssl) ? MS_TLS_HS_RESUMED : MS_TLS_HS_OK);
        if (flush(t) != 0) {
            fail(t);
            return;
        }
        if (t->x.cbs->secured) {
            const unsigned char *alpn = NULL;
            unsigned len = 0;
            SSL_get0_alpn_selected(t->ssl, &alpn, &len);
            t->x.cbs->secured(t->x.owner, alpn, alpn ? len : 0);
        }
        return;
    }
    int err = SSL_get_error(t->ssl, rc);
    if (err == SSL_ERROR_WANT_READ && flush(t) == 0 && !t->end && t->in_len < TLS_RBIO_MAX)
        return;
    fail(t);
}

/* Decrypt into the owner's buffers while it reads; then, once nothing is
 * left, tell it how the socket ended, if it has. */
static void pump(tls_xport *t)
{
    if (t->pumping)
        return; /* the owner started reading from inside a read callback: the loop below goes on */
    t->pumping = true;
    if (t->state == TLS_HANDSHAKE && !t->x.closing)
        handshake(t);
    while (t->state == TLS_OPEN && t->x.reading && !t->x.closing) {
        if (t->in_len == 0 && SSL_pending(t->ssl) == 0 && !SSL_has_pending(t->ssl))
            break;
        uv_buf_t b = uv_buf_init(NULL, 0);
        t->x.cbs->alloc(t->x.owner, TLS_WCHUNK, &b);
        if (!b.base || b.len == 0) {
            t->x.cbs->read(t->x.owner, UV_ENOBUFS, &b);
            break;
        }
        size_t got = 0;
        ERR_clear_error();
        int rc = SSL_read_ex(t->ssl, b.base, b.len, &got);
        if (rc == 1) {
            t->x.cbs->read(t->x.owner, (ssize_t)got, &b);
            continue;
        }
        int err = SSL_get_error(t->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) {
            if (flush(t) != 0)
                fail(t);
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify: the client may still read our answer */
            ERR_clear_error();
            t->end = UV_EOF;
            drop_input(t); /* nothing after it counts */
            ms_xport_read_stop(t->inner);
            break;
        }
        fail(t); /* a bad record, a renegotiation attempt, ... */
        break;
    }
    if (!t->x.closing && t->state == TLS_OPEN && flush(t) != 0)
        fail(t);
    bool drained = t->state != TLS_OPEN || (t->in_len == 0 && !SSL_has_pending(t->ssl)) ||
                   t->end != UV_EOF;
    if (t->end && drained && !t->x.closing && t->state != TLS_PLAIN) {
        if (t->state == TLS_HANDSHAKE) {
            count(t, MS_TLS_HS_FAILED);
            t->state = TLS_FAILED;
        }
        if (t->x.reading && !t->end_told) {
            t->end_told = true;
            t->x.cbs->read(t->x.owner, t->end, NULL);
        }
    }
    t->pumping = false;
    if (!t->x.closing)
        want_socket(t);
}

static void on_idle(uv_idle_t *h)
{
    tls_xport *t = h->data;
    uv_idle_stop(h);
    pump(t);
}

/* ---------------------------------------------------------------- ops */
static int tls_read_start(ms_xport *x)
{
    tls_xport *t = (tls_xport *)x;
    if (x->closing)
        return UV_ECANCELED;
    if (t->state == TLS_PLAIN)
        return ms_xport_read_start(t->inner);
    if (x->reading)
        return 0;
    x->reading = true;
    if (t->in_len > 0 || (t->state == TLS_OPEN && SSL_has_pending(t->ssl)) ||
        (t->end && !t->end_told))
        uv_idle_start(&t->idle, on_idle);
    want_socket(t);
    return 0;
}

static void tls_read_stop(ms_xport *x)
{
    tls_xport *t = (tls_xport *)x;
    if (t->state == TLS_PLAIN) {
        ms_xport_read_stop(t->inner);
        return;
    }
    x->reading = false;
    uv_idle_stop(&t->idle);
    if (t->state != TLS_HANDSHAKE && t->inner->reading)
        ms_xport_read_stop(t->inner);
}

static int tls_write(ms_xport *x, const uv_buf_t *bufs, unsigned n)
{
    tls_xport *t = (tls_xport *)x;
    if (x->closing)
        return UV_ECANCELED;
    if (t->state == TLS_PLAIN) {
        int rc = ms_xport_write(t->inner, bufs, n);
        sync_counts(t);
        return rc;
    }
    if (t->state != TLS_OPEN)
        return UV_ENOTCONN;
    /* small pieces are gathered into whole records */
    char stage[TLS_WCHUNK];
    size_t staged = 0;
    for (unsigned i = 0; i <= n; i++) {
        const char *p = i < n ? bufs[i].base : NULL;
        size_t len = i < n ? bufs[i].len : 0;
        while (len > 0 || (i == n && staged > 0)) {
            const char *src;
            size_t take;
            if (staged == 0 && (len >= TLS_WCHUNK || (i + 1 == n && len > 0))) {
                src = p; /* a whole record, or the last one, straight from the caller's buffer */
                take = len < TLS_WCHUNK ? len : TLS_WCHUNK;
                p += take;
                len -= take;
            } else {
                size_t room = TLS_WCHUNK - staged;
                size_t k = len < room ? len : room;
                if (k) { /* none at the last pass, where p is NULL */
                    memcpy(stage + staged, p, k);
                    staged += k;
                    p += k;
                    len -= k;
                }
                if (staged < TLS_WCHUNK && i < n)
                    break; /* gather more */
                src = stage;
                take = staged;
                staged = 0;
            }
            size_t done = 0;
            ERR_clear_error();
            if (SSL_write_ex(t->ssl, src, take, &done) != 1 || done != take) {
                ERR_clear_error();
                return UV_EPROTO;
            }
            int rc = flush(t);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int tls_shutdown(ms_xport *x)
{
    tls_xport *t = (tls_xport *)x;
    if (x->closing)
        return UV_ECANCELED;
    if (t->state == TLS_OPEN && !t->shut) {
        t->shut = true;
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl); /* queues close_notify */
        ERR_clear_error();
        int rc = flush(t);
        if (rc != 0)
            return rc;
    }
    return ms_xport_shutdown(t->inner);
}

static void tls_close(ms_xport *x)
{
    tls_xport *t = (tls_xport *)x;
    if (x->closing)
        return;
    if (t->state == TLS_HANDSHAKE && t->got_bytes)
        count(t, MS_TLS_HS_FAILED); /* timed out, or given up by the owner */
    if (t->state == TLS_OPEN && !t->shut && t->end == 0) {
        /* a close_notify, if the socket takes it now */
        t->shut = true;
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
        (void)flush(t);
    }
    x->closing = true;
    x->reading = false;
    uv_idle_stop(&t->idle);
    uv_close((uv_handle_t *)&t->idle, on_idle_closed);
    ms_xport_close(t->inner); /* in_closed follows */
}

static int tls_fileno(const ms_xport *x)
{
    (void)x;
    return -1; /* every byte goes through OpenSSL */
}

static int tls_peer(const ms_xport *x, struct sockaddr_storage *ss)
{
    const tls_xport *t = (const tls_xport *)x;
    return ms_xport_peer(t->inner, ss);
}

static const ms_xport_ops tls_ops = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .fileno = tls_fileno,
    .peer = tls_peer,
};

ms_xport *ms_xport_tls_new(uv_loop_t *loop, ms_xport *inner, struct ssl_st *ssl, char *scratch, size_t scratch_len,
                           uint64_t *counts)
{
    assert(scratch && scratch_len > 0 && scratch_len <= INT_MAX);
    tls_xport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    (void)pthread_once(&bio_method_once, bio_method_make);
    t->bio = bio_method ? BIO_new(bio_method) : NULL;
    if (!t->bio || uv_idle_init(loop, &t->idle) != 0) {
        BIO_free(t->bio);
        free(t);
        return NULL;
    }
    BIO_set_data(t->bio, t);
    SSL_set_bio(ssl, t->bio, t->bio);    /* ssl owns it now (one reference for both ends) */
    SSL_set_accept_state(ssl);
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS); /* an idle connection keeps no record buffers */
    t->ssl = ssl;
    t->idle.data = t;
    t->inner = inner;
    t->scratch = scratch;
    t->scratch_len = scratch_len;
    t->counts = counts;
    t->handles_open = 2;
    t->x.ops = &tls_ops;
    t->x.cbs = inner->cbs;
    t->x.owner = inner->owner;
    ms_xport_set_owner(inner, &inner_cbs, t);
    sync_counts(t);
    want_socket(t); /* the handshake reads at once */
    return &t->x;
}
