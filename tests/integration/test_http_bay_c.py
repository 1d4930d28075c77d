"""The C HTTP bay (examples/bays/http_bay.c, on libdock) as a real process,
with the test playing Mothership on its socket (docking v3 frames written
and read byte for byte): the handshake, every route, a WebSocket echo
through a tunnel, the 500 of a failing app, forked workers and threads,
a protocol error from Mothership, and the drain on SIGTERM."""
import json
import os
import signal
import struct
import subprocess

import pytest

from conftest import BUILD
from dock3_helpers import (HAUL, REPLY, dock, frame, hail, haul, parse_reply, read_frame,
                           response, wait_for)

BAY = os.path.join(BUILD, "examples", "bays", "http-bay")


@pytest.fixture
def bay(tmp_path):
    procs = []

    def start(threads=2, workers=0, drain=5):
        sock = tmp_path / "run" / "web.sock"
        env = dict(os.environ, MS_SOCKET_PATH=str(sock), MS_SHIP="web",
                   MS_BAY_TYPE="http", MS_BAY_THREADS=str(threads),
                   MS_BAY_WORKERS=str(workers), MS_BAY_DRAIN_TIMEOUT=str(drain))
        p = subprocess.Popen([BAY], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
        procs.append(p)
        wait_for(lambda: sock.exists() or p.poll() is not None, what="the bay's socket")
        assert p.poll() is None, p.stderr.read()
        return p, str(sock)

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_c_http_bay_serves_every_route(bay, tmp_path):
    p, path = bay()
    c, _ = dock(path, {"greeting": "ahoy"}, pid=p.pid)

    c.sendall(hail(1, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]))
    assert response(c, 1)[::3] == (200, b"ahoy\n")

    body = bytes(range(256)) * 300   # binary, over one HAUL
    c.sendall(hail(2, [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo"),
                       ("QUERY_STRING", "a=1&b"), ("CONTENT_TYPE", "application/x-bin"),
                       ("CONTENT_LENGTH", str(len(body)))], len(body))
              + haul(2, body[:70000], False) + haul(2, body[70000:], True))
    status, kind, headers, got, _ = response(c, 2)
    assert (status, kind, got) == (200, 1, body)
    assert headers == [("content-type", "application/x-bin"), ("x-echo-method", "POST"),
                       ("x-echo-path", "/echo"), ("x-echo-query", "a=1&b"),
                       ("content-length", str(len(body)))]

    c.sendall(hail(3, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/headers"),
                       ("HTTP_X_BIN", b"\xff\x00y")]))
    status, _, _, got, _ = response(c, 3)
    assert status == 200
    assert json.loads(got) == {"REQUEST_METHOD": "GET", "PATH_INFO": "/headers",
                               "HTTP_X_BIN": "\ufffd\x00y"}

    c.sendall(hail(4, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/stream"),
                       ("QUERY_STRING", "n=3")]))
    assert response(c, 4)[3] == b"chunk 1\nchunk 2\nchunk 3\n"

    (tmp_path / "page.txt").write_text("file body")
    c.sendall(hail(5, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/file/page.txt")]))
    status, kind, _, got, fpath = response(c, 5)
    assert (status, kind, got, fpath) == (200, 2, b"", str(tmp_path / "page.txt"))
    # Outside the cwd (a sibling sharing its name's prefix, through a
    # symlink), a directory, nothing: 404, never a file reply.
    sibling = tmp_path.parent / (tmp_path.name + "b")
    sibling.mkdir()
    (sibling / "secret").write_text("no")
    (tmp_path / "peek").symlink_to(sibling / "secret")
    for n, bad in enumerate(["/file/../etc/passwd", "/file/run", "/file/nope", "/file/peek"]):
        c.sendall(hail(20 + n, [("REQUEST_METHOD", "GET"), ("PATH_INFO", bad)]))
        assert response(c, 20 + n)[:2] == (404, 1), bad

    c.sendall(hail(9, [("REQUEST_METHOD", "HEAD"), ("PATH_INFO", "/")]))
    status, kind, _, got, _ = response(c, 9)
    assert (status, kind, got) == (200, 0, b"")

    # The app fails before its head: 500 and READY, the link goes on.
    c.sendall(hail(10, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/fail")]))
    status, kind, headers, got, _ = response(c, 10)
    assert (status, kind, headers, got) == (500, 1, [("content-type", "text/plain")],
                                            b"Internal Server Error")
    c.sendall(hail(11, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/nowhere")]))
    assert response(c, 11)[:2] == (404, 1)
    c.close()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert not os.path.exists(path)


def ws_frame(opcode, data, mask=b"\x01\x02\x03\x04"):
    assert len(data) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x80 | opcode, 0x80 | len(data)]) + mask + masked


def test_c_http_bay_websocket_echo_through_a_tunnel(bay):
    p, path = bay()
    c, _ = dock(path)
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
    c.sendall(hail(1, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/ws"),
                       ("HTTP_UPGRADE", "websocket"), ("HTTP_CONNECTION", "Upgrade"),
                       ("HTTP_SEC_WEBSOCKET_KEY", key), ("HTTP_SEC_WEBSOCKET_VERSION", "13")]))
    t, payload = read_frame(c)
    assert t == REPLY
    rid, status, kind, headers, _ = parse_reply(payload)
    accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # the RFC's answer to that key
    assert (rid, status, kind) == (1, 101, 4)
    assert ("sec-websocket-accept", accept) in headers

    def bay_bytes(n):
        out = b""
        while len(out) < n:
            t, p = read_frame(c)
            assert t == HAUL and p[:5] == struct.pack(">IB", 1, 0)
            out += p[5:]
        return out

    c.sendall(haul(1, ws_frame(0x1, b"hello"), False))
    assert bay_bytes(7) == b"\x81\x05hello"
    c.sendall(haul(1, ws_frame(0x2, b"\x00\xff"), False))
    assert bay_bytes(4) == b"\x82\x02\x00\xff"
    c.sendall(haul(1, ws_frame(0x8, struct.pack(">H", 1000)), False))
    assert bay_bytes(4) == b"\x88\x02\x03\xe8"   # the close echoed by wslay
    # The bay ends its side with FIN, then the link closes (no READY).
    t, payload = read_frame(c)
    assert (t, payload) == (HAUL, struct.pack(">IB", 1, 1))
    assert c.recv(1) == b""
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0


def test_c_http_bay_threads_workers_and_drain(bay):
    p, path = bay(threads=2, workers=2)
    links = [dock(path) for _ in range(4)]
    pids = {d["pid"] for _, d in links}
    assert len(pids) == 2 and p.pid not in pids   # two forked workers, two threads each
    for n, (c, _) in enumerate(links):
        c.sendall(hail(1, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]))
    for c, _ in links:
        assert response(c, 1)[::3] == (200, b"hello from web\n")
    # A request in flight when the stop comes is answered; idle links close.
    busy = links[0][0]
    busy.sendall(hail(2, [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo")], 4)
                 + haul(2, b"ab", False))
    p.send_signal(signal.SIGTERM)
    for c, _ in links[1:]:
        assert c.recv(1) == b""
    busy.sendall(haul(2, b"cd", True))
    assert response(busy, 2)[3] == b"abcd"
    assert busy.recv(1) == b""
    assert p.wait(10) == 0
    assert not os.path.exists(path)


def test_c_http_bay_drain_ends_at_the_drain_timeout(bay):
    """A request that never completes does not hold the bay past
    MS_BAY_DRAIN_TIMEOUT: it exits 1 and says why."""
    p, path = bay(threads=1, drain=1)
    c, _ = dock(path, threads=1)
    c.sendall(hail(1, [("REQUEST_METHOD", "POST"), ("PATH_INFO", "/echo")], 4)
              + haul(1, b"ab", False))   # the rest never comes
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 1
    assert b"requests still in progress after the drain timeout of 1 s; exiting" in p.stderr.read()
    assert c.recv(1) == b""   # no reply: the link just closed


def test_c_http_bay_protocol_error_ends_only_that_link(bay):
    p, path = bay(threads=1)
    c, _ = dock(path, threads=1)
    c.sendall(frame(REPLY, b"\x00" * 11))   # only a bay may send REPLY
    assert c.recv(1) == b""
    c2, _ = dock(path, threads=1)   # the thread accepts the next link
    c2.sendall(hail(1, [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]))
    assert response(c2, 1)[0] == 200
    c2.close()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert b"link ended: protocol error: Mothership sent a REPLY frame (0x22)" in p.stderr.read()
