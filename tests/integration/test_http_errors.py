"""Data plane, failures and hostile input: 502 (reset, refused), 503 (ship
not ready, with Retry-After), 504 (upstream_timeout), typed error bodies
(text or JSON by Accept, with the request id), request smuggling and
malformed input (400 and the connection closed), and the limits: 431, 414,
413, the head timeout (slowloris, 408), the keep-alive idle timeout and
max_connections."""
import re
import threading
import time

import pytest
import requests

from http_helpers import ModuleFleet, Raw, echo_ship, msum, raw_request, start_proxy, wait_until

LIMITS = {"max_header_size": 4096, "max_uri_length": 1024, "max_body_size": 1048576,
          "header_timeout": "600ms", "idle_timeout": "600ms", "upstream_timeout": "300ms"}


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "errors")
    p = start_proxy(f, echo_ship("app", routes=["http:/.*"]), http=LIMITS)
    yield p
    f.cleanup()


def expect_closed_with(px, data, status, timeout=3.0):
    with Raw(px.port) as c:
        c.send(data)
        r = c.response()
        assert r.status == status, (data[:120], r)
        assert (r.header("connection") or "").lower() == "close", r.headers
        assert c.closed(timeout), f"connection left open after {status} for {data[:120]!r}"
        return r


# ------------------------------------------------------------------ 504 / 502 / 503
def test_504_when_the_upstream_is_too_slow(px):
    t0 = time.monotonic()
    r = requests.get(px.url("/slow?delay=2000"), timeout=10)
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert took < 1.8, f"504 took {took:.2f}s with upstream_timeout = 300ms"
    rid = r.headers["X-Request-Id"]
    assert r.text == f'504 Gateway Timeout: ship "app" did not answer within 300ms (request id {rid})\n'
    assert r.headers["Content-Type"].startswith("text/plain")


def test_504_on_a_pooled_upstream_after_fast_requests(px):
    """The upstream deadline is kept lazily behind one timer (proxy.c
    up_timer_set): fast requests in a row on one pooled ship connection
    are not cut by a timer armed for an earlier one, and a slow request
    right after them still gets its 504 upstream_timeout after it began."""
    with Raw(px.port) as c:
        for i in range(5):
            c.send(raw_request("GET", f"/fast{i}"))
            assert c.response().status == 200
            time.sleep(0.1)  # under upstream_timeout: the armed timer is still running
        t0 = time.monotonic()
        c.send(raw_request("GET", "/slow?delay=2000"))
        assert c.response().status == 504
        took = time.monotonic() - t0
        assert 0.25 < took < 1.8, took


def test_504_as_json_with_the_clients_request_id(px):
    r = requests.get(px.url("/slow?delay=2000"), timeout=10,
                     headers={"Accept": "application/json", "X-Request-Id": "req-504-abc"})
    assert r.status_code == 504
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["X-Request-Id"] == "req-504-abc"
    assert r.json() == {"error": "gateway_timeout", "status": 504,
                        "detail": 'ship "app" did not answer within 300ms', "request_id": "req-504-abc"}


def test_502_when_the_upstream_resets(px):
    before = px.metrics()
    r = requests.get(px.url("/r?reset=1"), timeout=10)
    assert r.status_code == 502, r.text
    rid = r.headers["X-Request-Id"]
    assert re.fullmatch(r'502 Bad Gateway: ship "app" closed the connection[^\n]*\(request id ' + re.escape(rid)
                        + r'\)\n', r.text), r.text
    after = px.metrics()
    assert msum(after, "mothership_upstream_errors_total", kind="reset") == \
        msum(before, "mothership_upstream_errors_total", kind="reset") + 1
    # the connection to the client is still fine
    assert requests.get(px.url("/ok"), timeout=5).status_code == 200


def test_502_json(px):
    r = requests.post(px.url("/r?reset=1"), data=b"x", headers={"Accept": "text/html, application/json"},
                      timeout=10)
    assert r.status_code == 502
    j = r.json()
    assert j["error"] == "bad_gateway" and j["status"] == 502 and j["request_id"] == r.headers["X-Request-Id"]
    assert 'ship "app"' in j["detail"]


def test_502_when_the_ship_stops_accepting(fleet):
    """The ship listened (so it became ready), then closed its listener:
    connecting is refused, which is a 502 naming the ship."""
    p = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    assert requests.get(p.url("/_stop_listening"), timeout=5).status_code == 200
    before = p.metrics()
    r = requests.get(p.url("/x"), timeout=5)
    assert r.status_code == 502, r.text
    assert 'ship "app" refused the connection' in r.text
    assert r.headers["X-Request-Id"] in r.text
    after = p.metrics()
    assert msum(after, "mothership_upstream_errors_total", kind="refused") > \
        msum(before, "mothership_upstream_errors_total", kind="refused")
    assert msum(after, "mothership_responses_total", route="/.*", code="5xx") >= 1


def test_503_with_retry_after_while_the_ship_is_not_ready(fleet, tmp_path):
    gate = tmp_path / "gate"
    p = start_proxy(fleet, echo_ship("late", routes=["http:/.*"], gate=gate), wait=False)
    p.ms.event("started", ship="late")
    r = requests.get(p.url("/early"), timeout=5)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    rid = r.headers["X-Request-Id"]
    assert r.text == f'503 Service Unavailable: ship "late" is not ready (request id {rid})\n'
    j = requests.get(p.url("/early"), headers={"Accept": "application/json"}, timeout=5).json()
    assert j["error"] == "service_unavailable" and j["status"] == 503
    assert msum(p.metrics(), "mothership_upstream_errors_total", kind="unavailable") >= 2
    gate.write_text("")
    p.ms.event("ready", ship="late")
    r = requests.get(p.url("/later"), timeout=5)
    assert r.status_code == 200 and r.json()["path"] == "/later"


def test_503_while_the_circuit_is_open(fleet, tmp_path):
    """A health check that starts failing opens the breaker: 503 at once."""
    s = echo_ship("app", routes=["http:/.*"],
                  extra={"healthcheck": {"path": "/health", "interval": "100ms", "timeout": "500ms",
                                         "failures": 1}})
    p = start_proxy(fleet, s)
    assert requests.get(p.url("/x"), timeout=5).status_code == 200
    # make /health fail: the echo backend answers any status asked for, so
    # switch the check by closing the listener (the check then fails to connect)
    requests.get(p.url("/_stop_listening"), timeout=5)
    p.ms.event("unhealthy", ship="app", timeout=10)
    t0 = time.monotonic()
    r = requests.get(p.url("/y"), timeout=5)
    assert r.status_code == 503, r.text
    assert time.monotonic() - t0 < 0.5, "503 must come at once, not after trying the dead upstream"
    assert r.headers["Retry-After"].isdigit()
    assert 'ship "app"' in r.text and r.headers["X-Request-Id"] in r.text


# ------------------------------------------------------------------ smuggling and malformed input
SMUGGLING = {
    "cl-and-te": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "te-and-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                 b"5c\r\nGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
    "two-different-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello",
    "two-equal-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-list": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
    "cl-negative": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
    "bad-chunk-size": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    "te-not-chunked-last": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                           b"5\r\nhello\r\n0\r\n\r\n",
    "obs-fold": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: first\r\n second\r\n\r\n",
    "space-in-header-name": b"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n",
    "space-before-colon": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo : x\r\n\r\n",
    "nul-in-header-value": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\x00b\r\n\r\n",
    "nul-in-header-name": b"GET /a HTTP/1.1\r\nHost: x\r\nX-F\x00oo: ab\r\n\r\n",
    "ctl-in-header-value": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\x01b\r\n\r\n",
    "cr-in-header-value": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Foo: a\rX-Injected: 1\r\n\r\n",
    "two-hosts": b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "no-host-11": b"GET /a HTTP/1.1\r\nX-Foo: y\r\n\r\n",
    "garbage": b"HELLO THERE, THIS IS NOT HTTP\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    "binary-noise": bytes(range(256)) + b"\r\n\r\n",
    "lf-in-request-line": b"GET /a\nb HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-form": b"GET http://evil.example/a HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(SMUGGLING))
def test_smuggling_and_malformed_input_is_400_and_closed(px, name):
    r = expect_closed_with(px, SMUGGLING[name], 400)
    assert r.header("x-request-id")


def test_a_smuggled_request_never_reaches_the_backend(px):
    """After a refused CL+TE request, the bytes that followed are not
    answered as a request of their own."""
    with Raw(px.port) as c:
        c.send(SMUGGLING["cl-and-te"])
        r = c.response()
        assert r.status == 400
        rest = c.read_all(2)
        assert b"HTTP/1.1" not in rest, rest


def test_http_2_and_0_9_versions(px):
    expect_closed_with(px, b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505)


# ------------------------------------------------------------------ limits
@pytest.mark.parametrize("size", [5000, 8000, 20000])
def test_431_head_too_large(px, size):
    """max_header_size = 4096: any head over it is refused, however it arrives."""
    r = expect_closed_with(px, raw_request("GET", "/a", [("X-Big", "x" * size)]), 431)
    assert "431" in r.body.decode()


def test_431_too_many_headers(px):
    hs = [(f"X-H{i}", "1") for i in range(300)]
    expect_closed_with(px, raw_request("GET", "/a", hs), 431)


def test_head_just_under_the_limit_passes(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/a", [("X-Big", "x" * 3000)]))
        r = c.response()
        assert r.status == 200 and r.json()["path"] == "/a"


def test_414_uri_too_long(px):
    expect_closed_with(px, raw_request("GET", "/" + "u" * 2000), 414)
    # a long query counts too
    expect_closed_with(px, raw_request("GET", "/a?" + "q" * 2000), 414)


def test_413_content_length_over_max_body_size(px):
    t0 = time.monotonic()
    r = expect_closed_with(px, raw_request("POST", "/a", [("Content-Length", str(2 * 1048576))]), 413)
    assert time.monotonic() - t0 < 2.5, "413 must not wait for the body"
    assert r.status == 413


def test_413_chunked_body_over_max_body_size(px):
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/a", [("Transfer-Encoding", "chunked")]))
        chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
        try:
            for _ in range(20):   # 1.25 MB > 1 MB
                c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.response()
        assert r.status == 413, r
        assert c.closed(3)


def test_body_at_max_body_size_passes(px):
    body = b"b" * 1048576
    r = requests.post(px.url("/a"), data=body, timeout=10)
    assert r.status_code == 200 and r.json()["body_len"] == len(body)


def test_408_when_the_head_is_not_finished_in_time(px):
    with Raw(px.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        r = c.response()
        took = time.monotonic() - t0
        assert r.status == 408, r
        assert 0.4 < took < 2.5, took
        assert c.closed(3)


def test_slowloris_trickle_does_not_extend_the_head_timeout(px):
    with Raw(px.port) as c:
        c.send(b"GET /trickle HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        got_408 = False
        while time.monotonic() - t0 < 4:
            try:
                c.send(b"X-T: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            if not c.closed(0.1):
                continue
            break
        took = time.monotonic() - t0
        got_408 = b"408" in c.buf
        assert took < 2.5, f"a trickling head kept the connection for {took:.1f}s (header_timeout 600ms)"
        assert got_408 or c.eof


def test_a_connection_that_sends_nothing_is_closed(px):
    with Raw(px.port) as c:
        t0 = time.monotonic()
        assert c.closed(3)
        assert c.buf == b""
        assert time.monotonic() - t0 < 2.5


def test_idle_keep_alive_connection_is_closed(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/a"))
        assert c.response().status == 200
        t0 = time.monotonic()
        assert c.closed(3), "idle keep-alive connection not closed"
        took = time.monotonic() - t0
        assert 0.4 < took < 2.5, took
        assert c.buf == b"", "nothing is sent to an idle connection that is closed"


def test_keep_alive_connection_in_use_is_not_cut(px):
    with Raw(px.port) as c:
        for i in range(4):
            c.send(raw_request("GET", f"/k{i}"))
            assert c.response().status == 200
            time.sleep(0.3)   # under idle_timeout each time: the wait is the point of the test


def test_idle_timeout_counts_from_the_last_response_after_many(px):
    """The connection's deadline is kept lazily behind one libuv timer
    (conn.c set_timer): after requests that each moved it later, the idle
    close still comes idle_timeout after the LAST response, neither at the
    first deadline the timer was armed for nor never."""
    with Raw(px.port) as c:
        for i in range(4):
            c.send(raw_request("GET", f"/m{i}"))
            assert c.response().status == 200
            time.sleep(0.25)  # under idle_timeout each time: the wait is the point of the test
        c.send(raw_request("GET", "/last"))
        assert c.response().status == 200
        t0 = time.monotonic()
        assert c.closed(3), "idle keep-alive connection not closed after several requests"
        took = time.monotonic() - t0
        assert 0.4 < took < 2.5, took
        assert c.buf == b""


def test_head_timeout_fires_on_a_head_begun_after_a_response(px):
    """A slow head on a connection that has served a request gets the 408
    (the deadline was cleared at dispatch and set again at the response)."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/first"))
        assert c.response().status == 200
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert c.closed(3), "a head left open after a response was not timed out"
        assert time.monotonic() - t0 < 2.5
        assert b"408" in c.buf


def test_a_buffer_of_pipelined_local_answers_does_not_overflow_the_stack(fleet):
    """A read buffer (max_header_size 1 MiB) full of small pipelined
    requests, each answered by Mothership itself (404): they are answered
    one after another. One level of recursion per request overflowed the
    worker's stack and killed the whole process."""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/app/.*"]), http={"max_header_size": "1MiB"})
    req = b"GET /none HTTP/1.1\r\nHost: t\r\n\r\n"
    n = (1 << 20) // len(req)
    with Raw(px.port, timeout=30) as c:
        sender = threading.Thread(target=c.send, args=(req * n,))  # the answers are read meanwhile
        sender.start()
        for _ in range(n):
            assert c.response().status == 404
        sender.join(30)
    assert requests.get(px.url("/app/after")).status_code == 200


def test_max_connections(fleet):
    p = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), http={"max_connections": 3})
    held = [Raw(p.port) for _ in range(3)]
    try:
        for c in held:
            c.send(raw_request("GET", "/held"))
            assert c.response().status == 200
        extra = Raw(p.port)
        try:
            extra.send(raw_request("GET", "/extra"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert extra.closed(3), "a connection over max_connections was served"
        assert b"200" not in extra.buf
        extra.close()
        assert msum(p.metrics(), "mothership_http_connections_rejected_total") >= 1
        # the refused connection's socket is shut before its struct is freed
        # (a turn of the worker's loop later): the gauge follows, not leads
        wait_until(lambda: msum(p.metrics(), "mothership_http_connections_open") == 3, timeout=5,
                   what="connections_open back to the 3 held")
    finally:
        for c in held:
            c.close()
    # once they are gone, new ones are served again
    wait_until(lambda: msum(p.metrics(), "mothership_http_connections_open") == 0, timeout=5,
               what="connections_open back to 0")
    assert requests.get(p.url("/again"), timeout=5).status_code == 200
