"""Request bodies and the timeouts around them, with a ship that writes down
when each connection, head and body reaches it (apps/recording_backend.py):
with request_buffering (the default) a body is read whole before a ship
connection is claimed (slow uploads take no ship connection and do not run
into upstream_timeout), spills beyond request_buffer_size to an unlinked
temporary file and arrives byte for byte, a chunked body arrives with
Content-Length, 413 and 408 (body_timeout) leave the ship untouched,
Expect: 100-continue is answered by Mothership; a route with
request_buffering = false streams (the ship sees the head first) and its
upstream_timeout runs from the end of the body; memory stays bounded under
50 concurrent 1 MiB uploads."""
import hashlib
import json
import os
import select
import signal
import threading
import time

import pytest

from fleet_helpers import PY, app, free_port, toml_str
from http_helpers import Raw, msum, short_tmpdir, start_proxy, toml_value, wait_until

REC = app("recording_backend.py")


class RecShip:
    """The recording ship; events() reads what it wrote down."""

    def __init__(self, tmp_path, routes=("http:/.*",)):
        self.port = free_port()
        self.path = str(tmp_path / "ship-events.jsonl")
        self.routes = list(routes)

    def toml(self):
        args = [REC, "--port", str(self.port), "--events", self.path]
        return "\n".join(["[[fleet.web]]", 'name = "rec"', f"command = {toml_str(PY)}",
                          f"args = {toml_value(args)}", f'bind = "tcp://127.0.0.1:{self.port}"',
                          f"routes = {toml_value(self.routes)}"]) + "\n"

    def events(self, ev=None, since=0, target=None):
        try:
            with open(self.path) as f:
                out = [json.loads(ln) for ln in f if ln.endswith("\n")]
        except FileNotFoundError:
            out = []
        out = out[since:]
        return [e for e in out if (ev is None or e["ev"] == ev) and (target is None or e.get("target") == target)]

    def mark(self):
        return len(self.events())


def start(fleet, tmp_path, http=None, routes=("http:/.*",), env=None):
    ship = RecShip(tmp_path, routes)
    px = start_proxy(lambda text: fleet(text, env=env), ship, http=http)
    # the readiness probe's connection: written down once the ship got to accept() it
    wait_until(lambda: ship.events("accept"), what="the readiness probe at the ship")
    return px, ship


def head(path, length=None, extra=()):
    lines = [f"POST {path} HTTP/1.1", "Host: t"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def header(ev, name):
    return [v for k, v in ev["headers"] if k.lower() == name]


# ------------------------------------------------------------------ slow uploads
def test_slow_upload_outlasts_upstream_timeout(fleet, tmp_path):
    """The body comes in four pieces over ~2 s with upstream_timeout = 1s:
    the ship's time starts when the whole request is written to it."""
    px, ship = start(fleet, tmp_path, http={"upstream_timeout": "1s"})
    body = os.urandom(4000)
    with Raw(px.port, timeout=10) as c:
        c.send(head("/slow", len(body)))
        for i in range(4):
            time.sleep(0.5)  # the point of the test: the upload takes longer than upstream_timeout
            c.send(body[i * 1000:(i + 1) * 1000])
        r = c.response()
    assert r.status == 200, r
    got = ship.events("body", target="/slow")
    assert len(got) == 1 and got[0]["len"] == len(body) and got[0]["sha256"] == sha(body)


def test_ship_sees_no_connection_until_the_body_is_complete(fleet, tmp_path):
    """20 clients in the middle of their uploads hold no ship connection:
    the ship accepts nothing and sees no head until a body is whole."""
    px, ship = start(fleet, tmp_path)
    mark = ship.mark()
    clients = []
    for i in range(20):
        c = Raw(px.port, timeout=10)
        c.send(head(f"/slow{i}", 1000) + b"x" * 500)
        clients.append(c)
    try:
        # a complete request after them: once it is answered, the heads above have been read
        with Raw(px.port) as c:
            c.send(head("/sentinel", 5) + b"hello")
            assert c.response().status == 200
        assert ship.events("head", since=mark) == [ev for ev in ship.events("head", since=mark)
                                                   if ev["target"] == "/sentinel"]
        assert len(ship.events("accept", since=mark)) == 1, ship.events(since=mark)  # the sentinel's
        for c in clients:
            c.send(b"y" * 500)
        for i, c in enumerate(clients):
            r = c.response()
            assert r.status == 200 and r.json()["len"] == 1000, r
        assert len(ship.events("body", since=mark)) == 21
    finally:
        for c in clients:
            c.close()


def test_buffered_requests_reuse_one_ship_connection(fleet, tmp_path):
    """A body sent from memory or from its file leaves the ship connection
    reusable: one connection for requests one after another."""
    px, ship = start(fleet, tmp_path, http={"request_buffer_size": "1KiB"})
    mark = ship.mark()
    with Raw(px.port) as c:
        for i, n in enumerate([0, 5, 100_000, 3, 0]):
            c.send(head(f"/seq{i}", n) + b"q" * n)
            r = c.response()
            assert r.status == 200 and r.json()["len"] == n, r
    assert len(ship.events("accept", since=mark)) == 1, ship.events("accept", since=mark)


def test_a_buffered_body_followed_by_a_full_read_buffer_of_pipelined_requests(fleet, tmp_path):
    """A small POST and, in the same write, more pipelined requests than the
    read buffer holds: when the body is complete the buffer is full, and
    reading must pause (not fail for want of room and drop the connection)
    until the response makes room; every request is answered."""
    px, ship = start(fleet, tmp_path)
    mark = ship.mark()
    post = head("/first", 5) + b"hello"
    get = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"
    n = 40_000 // len(get)  # beyond max_header_size + 4 KiB, the read buffer
    with Raw(px.port, timeout=10) as c:
        sender = threading.Thread(target=c.send, args=(post + get * n,))  # the answers are read meanwhile
        sender.start()
        r = c.response()
        assert r.status == 200 and r.json()["len"] == 5, r
        for _ in range(n):
            assert c.response().status == 200
        sender.join(10)
    assert len(ship.events("head", since=mark, target="/next")) == n


def test_drain_end_puts_no_503_behind_a_complete_answer_still_being_written(fleet, tmp_path):
    """The ship's whole answer is read by Mothership but not yet by the
    client when the drain's time is up: the request is answered, so no 503
    may follow the answer; the connection is cut (a response under way)."""
    sock = os.path.join(short_tmpdir(), "c.sock")
    ship = RecShip(tmp_path, ["ux:/.*"])
    px = start_proxy(fleet, ship, binds={"http": free_port(), "ux": f"unix://{sock}"},
                     mothership={"shutdown_timeout": "1s"})
    with open("/proc/sys/net/core/wmem_default") as f:
        size = int(f.read()) + 128 * 1024
    with Raw(None, timeout=10, unix=sock) as c:
        c.send(f"GET /early?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        # counted when its last byte came from the ship
        wait_until(lambda: msum(px.metrics(), "mothership_requests_total", bind="ux") == 1,
                   what="the whole answer read from the ship")
        px.ms.signal(signal.SIGTERM)
        px.ms.event("shutdown")

        def drain_ended():  # the connection is cut, or a 5xx went behind the answer
            if any(ev & (select.POLLHUP | select.POLLRDHUP) for _, ev in hup.poll(0)):
                return True
            try:
                return msum(px.metrics(), "mothership_responses_total", bind="ux", code="5xx") > 0
            except OSError:
                return False
        hup = select.poll()
        hup.register(c.s, select.POLLHUP | select.POLLRDHUP)
        wait_until(drain_ended, timeout=10, what="the end of the drain")
        assert c.closed(10), "the connection ends with the drain"
    assert c.buf.startswith(b"HTTP/1.1 200 OK\r\n"), c.buf[:200]
    assert b"HTTP/1.1 503" not in c.buf, c.buf[-400:]


@pytest.mark.parametrize("bad", ["bad_chunk", "over_max_body_size"])
def test_a_bad_body_after_the_ships_answer_began_closes_without_a_second_response(fleet, tmp_path, bad):
    """A streamed chunked upload whose ship has sent the head and part of
    its answer: a chunk that breaks the framing, or a body past
    max_body_size, cannot be answered any more (a 400 or 413 written now
    would land in the middle of the ship's answer): the connection closes
    behind the part of the answer already sent, and nothing else follows."""
    routes = [{"bind": "http", "pattern": "/stream/.*", "request_buffering": False}, "http:/.*"]
    px, ship = start(fleet, tmp_path, http={"max_body_size": 1000}, routes=routes)
    with Raw(px.port, timeout=10) as c:
        c.send(b"POST /stream/partial HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("content-length") == "100", r
        while len(c.buf) < 10:
            c._fill()  # the part of the answer the ship sent
        assert c.buf[:10] == b"p" * 10, c.buf
        c.send(b"zz\r\n" if bad == "bad_chunk" else b"7d0\r\n" + b"b" * 2000 + b"\r\n")
        assert c.closed(5), "the connection closes"
        assert c.buf == b"p" * 10, c.buf[:300]


# ------------------------------------------------------------------ memory, then a temporary file
def tmp_fds(pid, tmpdir):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(tmpdir + "/"):
            out.append(target)
    return out


def test_large_body_spills_to_an_unlinked_file_and_arrives_identical(fleet, tmp_path):
    tmpdir = str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    px, ship = start(fleet, tmp_path, http={"request_buffer_size": "64KiB"}, env={"TMPDIR": tmpdir})
    body = os.urandom(1024 * 1024 + 17)
    with Raw(px.port, timeout=10) as c:
        c.send(head("/big", len(body)) + body[:300_000])
        # while the upload goes on, the body is in a file that has no name
        fds = wait_until(lambda: tmp_fds(px.pid(), tmpdir), what="a temporary file open in $TMPDIR")
        assert all(t.endswith("(deleted)") for t in fds), fds
        assert os.listdir(tmpdir) == []
        assert ship.events("head", target="/big") == []
        c.send(body[300_000:])
        r = c.response()
    assert r.status == 200, r
    got = ship.events("body", target="/big")
    assert got[0]["len"] == len(body) and got[0]["sha256"] == sha(body)
    assert header(ship.events("head", target="/big")[0], "content-length") == [str(len(body))]
    wait_until(lambda: not tmp_fds(px.pid(), tmpdir), what="the temporary file closed")
    assert os.listdir(tmpdir) == []
    m = px.metrics()
    assert msum(m, "mothership_request_bodies_spilled_total") == 1
    assert msum(m, "mothership_request_body_spilled_bytes_total") == len(body)


def test_a_body_that_cannot_be_stored_gets_500_and_the_ship_nothing(fleet, tmp_path):
    missing = str(tmp_path / "no-such-dir")
    px, ship = start(fleet, tmp_path, http={"request_buffer_size": "1KiB"}, env={"TMPDIR": missing})
    mark = ship.mark()
    with Raw(px.port) as c:
        c.send(head("/nowhere", 4096) + b"w" * 4096)
        r = c.response()
    assert r.status == 500, r
    assert "temporary directory for request bodies does not exist" in r.body.decode()
    with Raw(px.port) as c:  # what fits in memory still goes through
        c.send(head("/small", 10) + b"0123456789")
        assert c.response().status == 200
    assert [e["target"] for e in ship.events("head", since=mark)] == ["/small"]


def test_chunked_body_arrives_with_content_length(fleet, tmp_path):
    px, ship = start(fleet, tmp_path)
    with Raw(px.port) as c:
        c.send(b"POST /ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n")
        r = c.response()
    assert r.status == 200, r
    ev = ship.events("head", target="/ch")[0]
    assert header(ev, "content-length") == ["12"]
    assert header(ev, "transfer-encoding") == []
    got = ship.events("body", target="/ch")[0]
    assert got["chunked"] is False and got["sha256"] == sha(b"hello, world")


# ------------------------------------------------------------------ refused bodies
def test_chunked_body_over_max_body_size_gets_413_and_the_ship_nothing(fleet, tmp_path):
    px, ship = start(fleet, tmp_path, http={"max_body_size": 1024})
    mark = ship.mark()
    with Raw(px.port) as c:
        c.send(b"POST /toobig HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"z" * 2048)
        r = c.response()
    assert r.status == 413, r
    # the ship is asked for something else afterwards: by then a leaked request would show
    with Raw(px.port) as c:
        c.send(head("/after", 2) + b"ok")
        assert c.response().status == 200
    assert [e["target"] for e in ship.events("head", since=mark)] == ["/after"]


def test_a_bad_chunk_gets_400_and_the_ship_nothing(fleet, tmp_path):
    px, ship = start(fleet, tmp_path)
    mark = ship.mark()
    with Raw(px.port) as c:
        c.send(b"POST /badchunk HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\nzz\r\n")
        r = c.response()
    assert r.status == 400, r
    with Raw(px.port) as c:
        c.send(head("/after", 2) + b"ok")
        assert c.response().status == 200
    assert [e["target"] for e in ship.events("head", since=mark)] == ["/after"]


def test_a_lingering_connection_lets_go_of_its_spilled_body(fleet, tmp_path):
    """A body refused half-way (a bad chunk) after it went to a temporary
    file: the file is closed when the 400 is written, not when the lingering
    close ends, so clients that keep sending cannot hold files and memory."""
    tmpdir = str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    px, ship = start(fleet, tmp_path, http={"request_buffer_size": "1KiB"}, env={"TMPDIR": tmpdir})
    mark = ship.mark()
    with Raw(px.port, timeout=10) as c:
        c.send(b"POST /spilled HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"1000\r\n" + b"s" * 4096 + b"\r\n")
        wait_until(lambda: tmp_fds(px.pid(), tmpdir), what="the body in a temporary file")
        c.send(b"zz\r\n")
        r = c.response()
        assert r.status == 400, r
        # the client goes on sending (discarded): the connection lingers for
        # up to 5 s, and the file is gone long before that
        deadline = time.monotonic() + 2
        while tmp_fds(px.pid(), tmpdir) and time.monotonic() < deadline:
            c.send(b"more bytes")
            time.sleep(0.1)  # pacing the discarded input, not waiting for an event
        assert tmp_fds(px.pid(), tmpdir) == []
    assert ship.events("head", since=mark) == []


def test_body_timeout_gets_408_and_the_ship_nothing(fleet, tmp_path):
    px, ship = start(fleet, tmp_path, http={"body_timeout": "500ms"})
    mark = ship.mark()
    with Raw(px.port, timeout=10) as c:
        c.send(head("/stalled", 100) + b"0123456789")
        r = c.response()
        assert r.status == 408, r
        assert "body_timeout" in r.body.decode()
        assert c.closed()
    assert ship.events(since=mark) == []


# ------------------------------------------------------------------ Expect: 100-continue
def test_expect_100_continue_is_answered_by_mothership(fleet, tmp_path):
    px, ship = start(fleet, tmp_path)
    mark = ship.mark()
    with Raw(px.port) as c:
        c.send(head("/exp", 11, ["Expect: 100-continue"]))
        interim = c.response(head_only=True)
        assert interim.status == 100, interim
        assert ship.events(since=mark) == []  # the 100 came before the ship heard of the request
        c.send(b"hello world")
        r = c.response()
    assert r.status == 200, r
    ev = ship.events("head", target="/exp")[0]
    assert header(ev, "expect") == []
    assert ship.events("body", target="/exp")[0]["sha256"] == sha(b"hello world")


def test_expect_100_continue_over_max_body_size_gets_413(fleet, tmp_path):
    px, ship = start(fleet, tmp_path, http={"max_body_size": 1024})
    mark = ship.mark()
    with Raw(px.port) as c:
        c.send(head("/exp", 5000, ["Expect: 100-continue"]))
        r = c.response()
    assert r.status == 413, r
    assert ship.events(since=mark) == []


# ------------------------------------------------------------------ request_buffering = false
def test_streaming_route_sends_the_head_first_and_times_from_the_end_of_the_body(fleet, tmp_path):
    routes = [{"bind": "http", "pattern": "/stream/.*", "request_buffering": False}, "http:/.*"]
    px, ship = start(fleet, tmp_path, http={"upstream_timeout": "1s"}, routes=routes)
    body = os.urandom(3000)
    with Raw(px.port, timeout=10) as c:
        c.send(head("/stream/up", len(body)) + body[:1000])
        wait_until(lambda: ship.events("head", target="/stream/up"), what="the head at the ship before the body ends")
        assert ship.events("body", target="/stream/up") == []
        time.sleep(1.5)  # longer than upstream_timeout, while the ship waits for the body
        c.send(body[1000:])
        r = c.response()
    assert r.status == 200, r
    got = ship.events("body", target="/stream/up")[0]
    assert got["len"] == len(body) and got["sha256"] == sha(body)


def ship_that_does_not_read(fleet, tmp_path, path):
    routes = [{"bind": "http", "pattern": "/stream/.*", "request_buffering": False}, "http:/.*"]
    px, ship = start(fleet, tmp_path, http={"upstream_timeout": "1s"}, routes=routes)
    body = b"s" * (32 << 20)  # more than the sockets between Mothership and the ship hold
    with Raw(px.port, timeout=20) as c:
        def upload():
            try:
                c.send(head(path, len(body)) + body)
            except OSError:
                pass  # cut off by the 504 and the close
        t = threading.Thread(target=upload)
        t.start()
        r = c.response()
        c.close()
        t.join(20)
    assert ship.events("head", target=path)
    return r


def test_a_ship_that_does_not_read_a_buffered_body_gets_504(fleet, tmp_path):
    r = ship_that_does_not_read(fleet, tmp_path, "/noread")
    assert r.status == 504 and "did not read the request within 1000ms" in r.body.decode(), r


def test_a_ship_that_does_not_read_a_streamed_body_gets_504(fleet, tmp_path):
    r = ship_that_does_not_read(fleet, tmp_path, "/stream/noread")
    assert r.status == 504 and "did not read the request within 1000ms" in r.body.decode(), r


def test_body_timeout_after_an_early_answer_adds_no_second_response(fleet, tmp_path):
    """The ship answers a streamed upload at once without reading it, and
    its answer is all read by Mothership but not yet by the client, which
    also stops sending: when body_timeout passes, the connection closes
    after the ship's answer; no 408 is put behind it as a second response
    to the same request. (A Unix socket client: its socket holds a known
    amount, wmem_default, so the answer is sized to be left queued.)"""
    sock = os.path.join(short_tmpdir(), "c.sock")
    ship = RecShip(tmp_path, [{"bind": "ux", "pattern": "/stream/.*", "request_buffering": False}])
    px = start_proxy(fleet, ship, binds={"http": free_port(), "ux": f"unix://{sock}"},
                     http={"body_timeout": "500ms"})
    with open("/proc/sys/net/core/wmem_default") as f:
        size = int(f.read()) + 128 * 1024
    with Raw(None, timeout=10, unix=sock) as c:
        c.send(head(f"/stream/early?size={size}", 100_000) + b"u" * 100)
        wait_until(lambda: ship.events("early"), what="the ship's early answer")
        time.sleep(1.5)  # the point of the test: body_timeout passes, the client reads nothing
        r = c.response()
        assert r.status == 200 and len(r.body) == size, r
        assert c.closed() and c.buf == b"", c.buf[:200]


# ------------------------------------------------------------------ memory
def proc_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return int(next(ln for ln in f if ln.startswith(key + ":")).split()[1])


def test_fifty_concurrent_uploads_stay_within_the_buffer_bound(fleet, tmp_path):
    """50 clients each hold half of a 1 MiB upload at once, then finish it:
    Mothership's peak RSS grows by about 50 x request_buffer_size (64 KiB)
    plus the per-connection read buffers, not by 50 MiB."""
    tmpdir = str(tmp_path / "tmp")
    os.mkdir(tmpdir)
    px, ship = start(fleet, tmp_path, env={"TMPDIR": tmpdir})
    pid = px.pid()
    with open(f"/proc/{pid}/maps") as f:
        sanitized = "libasan" in f.read()  # ASan keeps freed memory in quarantine: RSS says nothing there
    base = proc_kb(pid, "VmRSS")
    body = os.urandom(1024 * 1024)
    clients = [Raw(px.port, timeout=30) for _ in range(50)]
    try:
        for c in clients:
            c.send(head("/mem", len(body)) + body[:512 * 1024])
        # every one of them is held in a temporary file now
        wait_until(lambda: len(tmp_fds(pid, tmpdir)) == 50, timeout=20, what="50 bodies in temporary files")
        errors = []

        def finish(c):
            try:
                c.send(body[512 * 1024:])
                r = c.response()
                if r.status != 200 or r.json()["sha256"] != sha(body):
                    errors.append(r)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
        threads = [threading.Thread(target=finish, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
    finally:
        for c in clients:
            c.close()
    peak = proc_kb(pid, "VmHWM")
    grew = peak - base
    print(f"\nRSS {base} kB before, peak {peak} kB: +{grew} kB for 50 concurrent 1 MiB uploads")
    assert sanitized or grew < 50 * 64 + 50 * 24 + 16 * 1024, f"peak RSS grew by {grew} kB"
