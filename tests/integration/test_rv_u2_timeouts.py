"""Review of the lazy deadlines (conn.c set_timer, proxy.c up_timer_set):
every timeout still fires at its deadline after the transitions that move
or clear it. A hostile client trickles a head, pauses an upload, goes quiet
after 100-continue or after pipelined requests; a ship never accepts (its
listen backlog full: upstream_connect_timeout, which had no test); a reload
shortens the timeouts under a deadline armed for the old, longer ones; a
tunnel outlives every HTTP timeout. The bounds are loose (they are
deadlines, not performance figures): early means the deadline moved, late
(or never) means it was lost."""
import base64
import os
import signal
import socket
import struct
import time

import pytest
import requests

from fleet_helpers import PY, toml_str
from http_helpers import Raw, echo_ship, free_port, msum, raw_request, start_proxy
from test_reload_http import reload, replace, status, stop_clean

LIMITS = {"header_timeout": "1s", "idle_timeout": "800ms", "body_timeout": "600ms", "upstream_timeout": "500ms"}


@pytest.fixture
def px(fleet):
    return start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), http=LIMITS)


def closed_within(c, lo, hi):
    """c is closed between lo and hi seconds from now (what it sent is in c.buf)."""
    t0 = time.monotonic()
    assert c.closed(hi + 2), "the connection was never closed: its deadline was lost"
    took = time.monotonic() - t0
    assert lo <= took <= hi, f"closed after {took:.2f}s, not within [{lo}, {hi}]"


# ------------------------------------------------------------------ the client side
def test_a_head_trickled_a_byte_at_a_time_gets_its_408_at_header_timeout(px):
    """Slowloris: each byte is a read, none moves the head's deadline."""
    head = raw_request("GET", "/slow-head")
    with Raw(px.port) as c:
        t0 = time.monotonic()
        for b in head[:-2]:
            try:
                c.send(bytes([b]))
            except OSError:
                break
            if c.closed(0.1):
                break
            if time.monotonic() - t0 > 4:
                pytest.fail("a trickled head was never cut off")
        took = time.monotonic() - t0
        assert 0.8 <= took <= 2.5, took
        assert b" 408 " in c.buf


@pytest.mark.parametrize("buffering", [True, False])
def test_an_upload_that_keeps_coming_is_not_cut_and_a_pause_is(fleet, buffering):
    """Each body read moves the body deadline later (lazily: the timer fires
    at its first time and is armed again); 12 pieces 200ms apart (2.4s, four
    body_timeouts) go through, then a pause of more than body_timeout gets
    the 408 at body_timeout after the last piece."""
    p = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                    http=dict(LIMITS, request_buffering=buffering, upstream_timeout="10s"))
    with Raw(p.port) as c:
        c.send(raw_request("POST", "/up?echo=1", headers={"Content-Length": "12"}))
        for i in range(12):
            time.sleep(0.2)  # under body_timeout: the pause is the point of the test
            c.send(b"%x" % i)
        r = c.response()
        assert r.status == 200 and r.body == b"0123456789ab", r
        c.send(raw_request("POST", "/up?echo=1", headers={"Content-Length": "4"}) + b"ab")
        closed_within(c, 0.45, 1.6)
        assert b" 408 " in c.buf, c.buf


def test_a_client_silent_after_100_continue_gets_its_408(px):
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/up", headers={"Content-Length": "10", "Expect": "100-continue"}))
        assert c.response(head_only=True).status == 100
        closed_within(c, 0.45, 1.6)
        assert b" 408 " in c.buf, c.buf


def test_idle_close_after_pipelined_requests(px):
    with Raw(px.port) as c:
        c.send(b"".join(raw_request("GET", f"/p{i}") for i in range(3)))
        for _ in range(3):
            assert c.response().status == 200
        closed_within(c, 0.6, 1.8)
        assert c.buf == b""


def test_a_head_begun_just_before_the_idle_deadline_is_still_cut(px):
    """The idle deadline set after the response also ends a head begun
    while it runs (as before: on_idle_timeout is on_head_timeout then)."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/first"))
        assert c.response().status == 200
        time.sleep(0.4)
        c.send(b"GET /second HTTP/1.1\r\n")
        closed_within(c, 0.2, 1.5)
        assert b" 408 " in c.buf


def test_connections_closed_with_a_deadline_armed(px):
    """Closed by the client in every state that holds a deadline (head,
    body, idle, 100-continue): nothing fires on a freed connection (the
    ASan build reports it), and the worker still serves."""
    for _ in range(20):
        for data in (b"GET /x HTTP/1.1\r\nHo", raw_request("POST", "/b", headers={"Content-Length": "9"}) + b"ab",
                     raw_request("GET", "/idle"),
                     raw_request("POST", "/c", headers={"Content-Length": "4", "Expect": "100-continue"})):
            s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
            s.sendall(data)
            if data.endswith(b"\r\n\r\n"):
                s.recv(100)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    time.sleep(1.2)  # past every deadline those connections had armed: the point of the test
    assert requests.get(px.url("/after"), timeout=5).status_code == 200
    stop_clean(px)


def test_a_tunnel_outlives_every_http_timeout(px):
    """After the 101 the connection is a tunnel: no deadline of the HTTP
    states (head, idle, body) nor the upstream's may cut it."""
    key = base64.b64encode(os.urandom(16)).decode()
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                   "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}))
        r = c.response(head_only=True)
        assert r.status == 101, r
        time.sleep(1.6)  # longer than header, idle, body and upstream timeouts: the point of the test
        mask = os.urandom(4)
        payload = b"still here"
        c.send(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        got = c._exact(2 + len(payload))
        assert got == bytes([0x81, len(payload)]) + payload, got


# ------------------------------------------------------------------ the ship side
class DeafShip:
    """A ship that listens with a backlog of 0 and never accepts: once its
    accept queue holds one connection, the kernel drops every SYN, so a
    connect neither succeeds nor fails (a stuck ship)."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()

    def toml(self):
        code = ("import socket, time\n"
                "s = socket.socket()\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('127.0.0.1', {self.port}))\n"
                "s.listen(0)\n"
                "time.sleep(3600)\n")
        return "\n".join([
            "[[fleet.web]]", f"name = {toml_str(self.name)}", f"command = {toml_str(PY)}",
            f"args = [\"-c\", {toml_str(code)}]", f"bind = {toml_str(f'tcp://127.0.0.1:{self.port}')}",
            'routes = ["http:/.*"]']) + "\n"

    def fill(self):
        """Connections of our own until a connect no longer completes."""
        held = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            held.append(s)
        return held


def test_504_when_the_ship_never_accepts_the_connection(fleet):
    ship = DeafShip("deaf")
    p = start_proxy(fleet, ship, http={"upstream_connect_timeout": "700ms", "upstream_timeout": "10s"})
    held = ship.fill()
    try:
        probe = socket.socket()
        probe.settimeout(0.5)
        with pytest.raises(OSError):
            probe.connect(("127.0.0.1", ship.port))  # the backlog is full: SYNs are dropped
        probe.close()
        before = p.metrics()
        t0 = time.monotonic()
        r = requests.get(p.url("/stuck"), timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 504, r.text
        assert 'ship "deaf" did not accept the connection within 700ms' in r.text, r.text
        assert 0.6 <= took <= 3.0, took
        after = p.metrics()
        assert msum(after, "mothership_upstream_errors_total", kind="connect_timeout") == \
            msum(before, "mothership_upstream_errors_total", kind="connect_timeout") + 1
    finally:
        for s in held:
            s.close()
    stop_clean(p)


def test_timeouts_shortened_by_a_reload_apply_under_a_deadline_armed_for_the_old(fleet):
    """A connection (and its pooled ship connection) whose timer is armed
    for the old, long deadline: after a reload that shortens idle_timeout
    and upstream_timeout, the next request's deadlines are the new ones
    (an earlier deadline must re-arm the timer, not wait for the old one)."""
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]), echo_ship("b", routes=["http:/nothing-here"]),
                    http={"idle_timeout": "20s", "upstream_timeout": "20s"})
    with Raw(p.port) as c:
        c.send(raw_request("GET", "/a/first"))
        assert c.response().status == 200

        def edit(text):
            text = replace('"http:/nothing-here"', '"http:/b/.*"')(text)
            text = replace('idle_timeout = "20s"', 'idle_timeout = "700ms"')(text)
            return replace('upstream_timeout = "20s"', 'upstream_timeout = "500ms"')(text)

        reload(p, edit, lambda: status(p.url("/b/x")) == 200, "the new route")
        t0 = time.monotonic()
        c.send(raw_request("GET", "/a/slow?delay=5000"))
        r = c.response()
        took = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.4 <= took <= 2.0, took
    with Raw(p.port) as c:
        c.send(raw_request("GET", "/a/again"))
        assert c.response().status == 200
        closed_within(c, 0.5, 2.0)
    stop_clean(p)


def test_a_ship_that_never_answers_a_slow_upload_gets_504_after_the_last_byte(fleet):
    """Streamed upload (request_buffering off), pieces slower than
    upstream_timeout: the upstream deadline does not run while the client
    is slow, and runs from the last byte written."""
    p = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                    http={"request_buffering": False, "upstream_timeout": "400ms", "body_timeout": "5s"})
    with Raw(p.port) as c:
        c.send(raw_request("POST", "/slow?delay=5000", headers={"Content-Length": "4"}))
        for ch in b"abc":
            time.sleep(0.6)  # longer than upstream_timeout: the point of the test
            c.send(bytes([ch]))
        t0 = time.monotonic()
        c.send(b"d")
        r = c.response()
        took = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.3 <= took <= 2.0, took
    stop_clean(p)


def test_a_head_begun_on_a_kept_alive_connection_has_header_timeout_not_idle_timeout(fleet):
    """Slowloris on keep-alive: one quick request, then the next head
    trickled. The head is cut header_timeout after it began (as the first
    one is), not when what is left of the longer idle_timeout runs out."""
    p = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                    http={"header_timeout": "600ms", "idle_timeout": "6s"})
    with Raw(p.port) as c:
        c.send(raw_request("GET", "/first"))
        assert c.response().status == 200
        c.send(b"GET /second HTTP/1.1\r\n")
        t0 = time.monotonic()
        for b in b"Host: x\r\nX-Slow: 1234567890":
            if c.closed(0.2):
                break
            try:
                c.send(bytes([b]))
            except OSError:
                break
        else:
            pytest.fail(f"the head was still open {time.monotonic() - t0:.1f}s after it began")
        took = time.monotonic() - t0
        assert 0.4 <= took <= 2.0, took
        assert b" 408 " in c.buf, c.buf
    stop_clean(p)
