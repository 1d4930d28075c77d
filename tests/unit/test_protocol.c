/* test_protocol.c: the socket-free protocol checks (src/uplink/protocol.h)
 * in both modes: what each kind sends, and how answers fed in pieces are
 * judged. LIVE is the uplinks' "a live server of this kind answered";
 * READY is the fleet probes' "it serves clients now": postgres's
 * authentication request against its 57P03, redis's -LOADING, mysql's ERR
 * packet, an HTTP response read to its end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uplink/protocol.h"

static ms_proto P; /* large: one at a time */

/* Feed an answer one byte at a time; the verdict of the last byte, or of
 * the peer's close when eof and the bytes did not decide. */
static int feed_bytes(ms_proto *p, const void *data, size_t n, bool eof)
{
    const char *d = data;
    int r = MS_PROTO_MORE;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r, MS_PROTO_MORE); /* nothing decided before the last byte */
        r = ms_proto_feed(p, d + i, 1);
    }
    if (r == MS_PROTO_MORE && eof)
        r = ms_proto_eof(p);
    return r;
}

/* A postgres backend message: type, int32 length, body. */
static size_t pg_msg(unsigned char *out, char type, const void *body, size_t n)
{
    uint32_t len = (uint32_t)n + 4;
    out[0] = (unsigned char)type;
    out[1] = (unsigned char)(len >> 24);
    out[2] = (unsigned char)(len >> 16);
    out[3] = (unsigned char)(len >> 8);
    out[4] = (unsigned char)len;
    memcpy(out + 5, body, n);
    return n + 5;
}

static const char starting_up[] = "SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0"
                                   "Fpostmaster.c\0L2344\0RProcessStartupPacket\0";

static void test_postgres_ready_request_is_a_startup_message(void **state)
{
    (void)state;
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    size_t len = 0;
    unsigned char *req = (unsigned char *)ms_proto_request(&P, "127.0.0.1:5432", NULL, &len);
    assert_non_null(req);
    assert_true(len > 8);
    uint32_t n = (uint32_t)req[0] << 24 | (uint32_t)req[1] << 16 | (uint32_t)req[2] << 8 | req[3];
    assert_int_equal(n, len);
    static const unsigned char v3[4] = { 0, 3, 0, 0 };
    assert_memory_equal(req + 4, v3, 4);
    assert_memory_equal(req + 8, "user\0postgres\0", 14);
    assert_int_equal(req[len - 1], 0);
    assert_int_equal(req[len - 2], 0);
    free(req);

    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_LIVE); /* the uplinks keep the SSLRequest */
    req = (unsigned char *)ms_proto_request(&P, "db:5432", NULL, &len);
    static const unsigned char ssl_request[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
    assert_int_equal(len, 8);
    assert_memory_equal(req, ssl_request, 8);
    free(req);
}

static void test_postgres_authentication_request_is_ready(void **state)
{
    (void)state;
    unsigned char m[64];
    static const unsigned char sasl[] = { 0, 0, 0, 10, 'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5',
                                          '6', 0, 0 };
    size_t n = pg_msg(m, 'R', sasl, sizeof sasl);
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    /* the first 9 bytes (type, length, the method) decide */
    assert_int_equal(feed_bytes(&P, m, 9, false), MS_PROTO_UP);
    assert_string_equal(P.detail, "postgres asked for authentication (SASL)");

    static const unsigned char ok[4] = { 0, 0, 0, 0 };
    n = pg_msg(m, 'R', ok, sizeof ok);
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, m, n, false), MS_PROTO_UP);
    assert_string_equal(P.detail, "postgres accepted the startup (trust)");

    /* NegotiateProtocolVersion first, then the request */
    static const unsigned char nego[] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    n = pg_msg(m, 'v', nego, sizeof nego);
    static const unsigned char md5[8] = { 0, 0, 0, 5, 1, 2, 3, 4 };
    n += pg_msg(m + n, 'R', md5, sizeof md5);
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, (const char *)m, n), MS_PROTO_UP);
    assert_string_equal(P.detail, "postgres asked for authentication (md5)");
}

static void test_postgres_57P03_is_not_ready(void **state)
{
    (void)state;
    unsigned char m[256];
    size_t n = pg_msg(m, 'E', starting_up, sizeof starting_up); /* the array's NUL ends the fields */
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, m, n, false), MS_PROTO_DOWN);
    assert_string_equal(P.error, "not ready: the database system is starting up (57P03)");

    /* the server closes right after it: the same verdict from a truncated message at eof */
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, m, 40, true), MS_PROTO_DOWN);
    assert_non_null(strstr(P.error, "57P03"));

    /* LIVE mode never sees this: it sends an SSLRequest, answered 'N' even while starting */
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_LIVE);
    assert_int_equal(ms_proto_feed(&P, "N", 1), MS_PROTO_UP);
}

static void test_postgres_other_errors_are_a_server_that_accepts(void **state)
{
    (void)state;
    static const char hba[] = "SFATAL\0VFATAL\0C28000\0Mno pg_hba.conf entry for host \"127.0.0.1\"\0";
    unsigned char m[256];
    size_t n = pg_msg(m, 'E', hba, sizeof hba);
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, m, n, false), MS_PROTO_UP);
    assert_string_equal(P.detail, "postgres answered FATAL 28000: no pg_hba.conf entry for host \\x22127.0.0.1\\x22");
}

static void test_postgres_garbage_is_down(void **state)
{
    (void)state;
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, "HTTP/1.1 400 Bad Request\r\n", 26), MS_PROTO_DOWN);
    assert_non_null(strstr(P.error, "not a postgres server"));

    static const unsigned char short_len[] = { 'R', 0, 0, 0, 2 }; /* length below 4 */
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, (const char *)short_len, sizeof short_len), MS_PROTO_DOWN);

    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, "R\0\0", 3), MS_PROTO_MORE);
    assert_int_equal(ms_proto_eof(&P), MS_PROTO_DOWN);

    /* an ErrorResponse longer than what is kept: judged on the kept part */
    static unsigned char big[2048];
    static char fields[1800];
    memset(fields, 'x', sizeof fields);
    memcpy(fields, "C57P03\0M", 8);
    fields[sizeof fields - 2] = '\0';
    fields[sizeof fields - 1] = '\0';
    size_t n = pg_msg(big, 'E', fields, sizeof fields);
    ms_proto_init(&P, MS_PROTO_POSTGRES, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, (const char *)big, n), MS_PROTO_DOWN);
    assert_non_null(strstr(P.error, "(57P03)"));
    assert_true(P.len <= MS_PROTO_BUF);
}

static void test_redis(void **state)
{
    (void)state;
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_READY);
    size_t len = 0;
    char *req = ms_proto_request(&P, "x", NULL, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(req, "PING\r\n", 6);
    free(req);

    assert_int_equal(feed_bytes(&P, "+PONG\r\n", 7, false), MS_PROTO_UP);
    assert_string_equal(P.detail, "+PONG");

    static const char loading[] = "-LOADING Redis is loading the dataset in memory\r\n";
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, loading, strlen(loading), false), MS_PROTO_DOWN);
    assert_string_equal(P.error, "not ready: redis answered -LOADING Redis is loading the dataset in memory");
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_LIVE); /* alive all the same */
    assert_int_equal(feed_bytes(&P, loading, strlen(loading), false), MS_PROTO_UP);

    static const char busy[] = "-BUSY Redis is busy running a script.\r\n";
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, busy, strlen(busy)), MS_PROTO_DOWN);

    /* a redis that wants a password serves its clients */
    static const char noauth[] = "-NOAUTH Authentication required.\r\n";
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, noauth, strlen(noauth)), MS_PROTO_UP);
    /* a word that only starts like one */
    ms_proto_init(&P, MS_PROTO_REDIS, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, "-BUSYKEY x\r\n", 12), MS_PROTO_UP);
}

static void test_mysql(void **state)
{
    (void)state;
    static const unsigned char greeting[] = { 15, 0, 0, 0, 10, '8', '.', '0', '.', '3', '6', 0,
                                              1, 0, 0, 0, 'a', 'b', 0 };
    static const unsigned char err[] = { 23, 0, 0, 0, 0xff, 0x10, 0x04, 'T', 'o', 'o', ' ', 'm', 'a', 'n', 'y',
                                         ' ', 'c', 'o', 'n', 'n', 'e', 'c', 't', 'i', 'o', 'n', 's' };
    ms_proto_init(&P, MS_PROTO_MYSQL, MS_PROTO_READY);
    size_t len = 7;
    assert_null(ms_proto_request(&P, "x", NULL, &len)); /* the server speaks first */
    assert_int_equal(len, 0);
    assert_int_equal(ms_proto_feed(&P, (const char *)greeting, sizeof greeting), MS_PROTO_UP);
    assert_string_equal(P.detail, "mysql 8.0.36");

    ms_proto_init(&P, MS_PROTO_MYSQL, MS_PROTO_READY);
    assert_int_equal(feed_bytes(&P, err, sizeof err, false), MS_PROTO_DOWN);
    assert_string_equal(P.error, "not ready: mysql answered error 1040: Too many connections");
    ms_proto_init(&P, MS_PROTO_MYSQL, MS_PROTO_LIVE);
    assert_int_equal(feed_bytes(&P, err, sizeof err, false), MS_PROTO_UP);
}

static void test_http_ready_reads_the_whole_response(void **state)
{
    (void)state;
    ms_proto_init(&P, MS_PROTO_HTTP, MS_PROTO_READY);
    size_t len = 0;
    char *req = ms_proto_request(&P, "127.0.0.1:3000", "/health", &len);
    assert_string_equal(req, "GET /health HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: mothership-health\r\n"
                             "Accept: */*\r\nConnection: close\r\n\r\n");
    assert_int_equal(len, strlen(req));
    free(req);

    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert_int_equal(ms_proto_feed(&P, head, strlen(head)), MS_PROTO_MORE); /* the body is still to come */
    assert_int_equal(P.http_status, 200);
    assert_int_equal(ms_proto_feed(&P, "ok", 2), MS_PROTO_MORE);
    assert_int_equal(ms_proto_feed(&P, "ok\n", 3), MS_PROTO_UP);
    assert_string_equal(P.detail, "HTTP 200");

    ms_proto_init(&P, MS_PROTO_HTTP, MS_PROTO_LIVE); /* the head is enough */
    assert_int_equal(ms_proto_feed(&P, head, strlen(head)), MS_PROTO_UP);

    static const char unavailable[] = "HTTP/1.0 503 Service Unavailable\r\n\r\ndown";
    ms_proto_init(&P, MS_PROTO_HTTP, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, unavailable, strlen(unavailable)), MS_PROTO_MORE); /* body to eof */
    assert_int_equal(ms_proto_eof(&P), MS_PROTO_DOWN);
    assert_string_equal(P.error, "HTTP 503");

    /* a large body: the status is enough once 16 KiB are read */
    static const char big_head[] = "HTTP/1.1 204 No Content\r\n\r\n";
    ms_proto_init(&P, MS_PROTO_HTTP, MS_PROTO_READY);
    assert_int_equal(ms_proto_feed(&P, big_head, strlen(big_head)), MS_PROTO_UP);
    static const char large[] = "HTTP/1.1 302 Found\r\nContent-Length: 100000\r\n\r\n";
    static char filler[4096];
    memset(filler, 'a', sizeof filler);
    ms_proto_init(&P, MS_PROTO_HTTP, MS_PROTO_READY);
    int r = ms_proto_feed(&P, large, strlen(large));
    for (int i = 0; i < 8 && r == MS_PROTO_MORE; i++)
        r = ms_proto_feed(&P, filler, sizeof filler);
    assert_int_equal(r, MS_PROTO_UP);
    assert_true(P.head_bytes <= MS_PROTO_HTTP_HEAD);
}

static void test_tcp_and_host_header(void **state)
{
    (void)state;
    ms_proto_init(&P, MS_PROTO_TCP, MS_PROTO_READY);
    size_t len = 3;
    assert_null(ms_proto_request(&P, "x", NULL, &len));
    assert_int_equal(len, 0);
    char h[64];
    ms_proto_host_header("::1", 8080, false, h, sizeof h);
    assert_string_equal(h, "[::1]:8080");
    ms_proto_host_header("example.com", 443, true, h, sizeof h);
    assert_string_equal(h, "example.com");
    ms_proto_host_header("example.com", 443, false, h, sizeof h);
    assert_string_equal(h, "example.com:443");
    assert_string_equal(ms_proto_kind_name(MS_PROTO_POSTGRES), "postgres");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postgres_ready_request_is_a_startup_message),
        cmocka_unit_test(test_postgres_authentication_request_is_ready),
        cmocka_unit_test(test_postgres_57P03_is_not_ready),
        cmocka_unit_test(test_postgres_other_errors_are_a_server_that_accepts),
        cmocka_unit_test(test_postgres_garbage_is_down),
        cmocka_unit_test(test_redis),
        cmocka_unit_test(test_mysql),
        cmocka_unit_test(test_http_ready_reads_the_whole_response),
        cmocka_unit_test(test_tcp_and_host_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
