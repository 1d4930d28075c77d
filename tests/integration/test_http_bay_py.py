"""examples/bays/http_bay.py on its own: the test plays Mothership's side of
docking v3 over the bay's Unix socket and checks the bytes of every frame
(DOCK, REPLY, HAUL, READY) against the wire format, built here by hand."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from dock3_helpers import frame, hail, haul, ready, reply
from http_helpers import short_tmpdir, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAY = os.path.join(ROOT, "examples", "bays", "http_bay.py")

APP = textwrap.dedent('''
    import os

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/big":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [b"x" * (200 * 1024)]
        if path == "/cookies":
            start_response("200 OK", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                      ("Content-Length", "0")])
            return []
        if path == "/boom":
            raise RuntimeError("boom before the head")
        if path == "/late-boom":
            def gen():
                yield b"first"
                raise RuntimeError("boom after the head")
            start_response("200 OK", [])
            return gen()
        if path == "/config":
            start_response("200 OK", [])
            return [environ["mothership.config"].get("greeting", "").encode()]
        if path == "/env":
            start_response("200 OK", [])
            keep = {k: v for k, v in environ.items() if isinstance(v, str)}
            import json
            return [json.dumps(keep).encode("latin-1")]
        if path == "/wait":
            import time
            open("started", "w").close()
            while not os.path.exists("go"):
                time.sleep(0.01)
            start_response("200 OK", [])
            return [b"done"]
        if path == "/range":
            f = open("data.bin", "rb")
            start_response("206 Partial Content", [("Content-Range", "bytes 0-3/10")])
            return environ["wsgi.file_wrapper"](f)
        if path == "/data":
            f = open("data.bin", "rb")
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](f)
        start_response("404 Not Found", [])
        return [b"no"]
''')


def get_params(path, method="GET", extra=()):
    return [("REQUEST_METHOD", method), ("SCRIPT_NAME", ""), ("PATH_INFO", path),
            ("QUERY_STRING", ""), ("SERVER_NAME", "test"), ("SERVER_PORT", "80"),
            ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_SOFTWARE", "mothership/test"), *extra]


class Side:
    """Mothership's end of one link."""

    def __init__(self, path, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:       # the socket file exists from bind(), before listen()
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def exact(self, n):
        buf = b""
        while len(buf) < n:
            more = self.sock.recv(n - len(buf))
            if not more:
                raise EOFError("link closed after %r" % buf)
            buf += more
        return buf

    def frame_bytes(self):
        head = self.exact(5)
        return head + self.exact(struct.unpack(">I", head[1:])[0])

    def send(self, data):
        self.sock.sendall(data)

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def moor(self, config=None):
        dock = self.frame_bytes()
        self.send(frame(0x02, json.dumps({"version": 3, "config": config or {}}).encode()))
        return dock

    def close(self):
        self.sock.close()


@pytest.fixture
def bay(tmp_path):
    """Starts the bay (env overrides as kwargs); yields (start, dir)."""
    procs = []
    sockdir = short_tmpdir()
    (tmp_path / "testapp.py").write_text(APP)
    (tmp_path / "data.bin").write_bytes(b"0123456789")

    def start(app="testapp:app", threads=2, workers=0, extra_env=None):
        path = os.path.join(sockdir, "bay%d.sock" % len(procs))
        env = dict(os.environ, MS_SOCKET_PATH=path, MS_SHIP="web", MS_BAY_TYPE="http",
                   MS_BAY_THREADS=str(threads), MS_BAY_WORKERS=str(workers),
                   MS_BAY_DRAIN_TIMEOUT="5", **(extra_env or {}))
        args = [sys.executable, BAY] + ([app] if app else [])
        p = subprocess.Popen(args, cwd=str(tmp_path), env=env, stderr=subprocess.PIPE)
        procs.append(p)
        wait_until(lambda: os.path.exists(path) or p.poll() is not None, what="the bay's socket")
        assert p.poll() is None, p.stderr.read()
        return p, path

    yield start, tmp_path
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()
    shutil.rmtree(sockdir, ignore_errors=True)


def test_dock_moored_get_exact_bytes(bay):
    start, _ = bay
    p, path = start(app=None, threads=3)
    side = Side(path)
    dock = side.moor()
    want = ('{"version": 3, "ship": "web", "pid": %d, "threads": 3}' % p.pid).encode()
    assert dock == b"\x01" + struct.pack(">I", len(want)) + want
    side.send(hail(1, get_params("/")))
    body = b"hello from an HTTP bay\n"
    assert side.frame_bytes() == reply(1, 200, 1, [("Content-Type", "text/plain"),
                                                   ("Content-Length", str(len(body)))])
    assert side.frame_bytes() == haul(1, body)
    assert side.frame_bytes() == haul(1, b"", fin=True)
    assert side.frame_bytes() == ready(1)
    # the next request on the same link, id 2
    side.send(hail(2, get_params("/nowhere")))
    assert side.frame_bytes() == reply(2, 404, 1, [("Content-Type", "text/plain")])
    assert side.frame_bytes() == haul(2, b"not found\n")
    assert side.frame_bytes() == haul(2, b"", fin=True)
    assert side.frame_bytes() == ready(2)


def test_post_body_in_hauls_and_echo(bay):
    start, _ = bay
    _, path = start(app=None)
    side = Side(path)
    side.moor()
    data = bytes(range(256)) * 4 + b"\xff\x00"
    side.send(hail(1, get_params("/echo", "POST", [("QUERY_STRING", "a=1"),
                                                    ("CONTENT_LENGTH", str(len(data)))]), len(data)))
    side.send(haul(1, data[:100]))
    side.send(haul(1, data[100:1000]))
    side.send(haul(1, data[1000:], fin=True))
    body = b"POST /echo?a=1\n" + data
    assert side.frame_bytes() == reply(1, 200, 1, [("Content-Type", "application/octet-stream"),
                                                   ("Content-Length", str(len(body)))])
    assert side.frame_bytes() == haul(1, body)
    assert side.frame_bytes() == haul(1, b"", fin=True)
    assert side.frame_bytes() == ready(1)


def test_response_hauls_are_at_most_64k(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/big")))
    assert side.frame_bytes() == reply(1, 200, 1, [("Content-Type", "application/octet-stream")])
    sizes = []
    while True:
        f = side.frame_bytes()
        assert f[0] == 0x21 and f[5:9] == struct.pack(">I", 1)
        sizes.append(len(f) - 10)
        if f[9] == 1:
            break
        assert f[9] == 0
    assert sizes == [65536, 65536, 65536, 8192, 0]
    assert side.frame_bytes() == ready(1)


def test_head_204_304_are_empty_and_headers_repeat(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/big", "HEAD")))
    assert side.frame_bytes() == reply(1, 200, 0, [("Content-Type", "application/octet-stream")])
    assert side.frame_bytes() == ready(1)
    side.send(hail(2, get_params("/cookies")))
    assert side.frame_bytes() == reply(2, 200, 1, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                                   ("Content-Length", "0")])
    assert side.frame_bytes() == haul(2, b"", fin=True)
    assert side.frame_bytes() == ready(2)


def test_exception_before_head_is_500_and_link_stays(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/boom")))
    assert side.frame_bytes() == reply(1, 500, 1, [("content-type", "text/plain"),
                                                   ("content-length", "21")])
    assert side.frame_bytes() == haul(1, b"Internal Server Error", fin=True)
    assert side.frame_bytes() == ready(1)
    side.send(hail(2, get_params("/cookies")))
    assert side.frame_bytes()[0] == 0x22


def test_exception_after_head_closes_without_fin(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/late-boom")))
    assert side.frame_bytes() == reply(1, 200, 1, [])
    assert side.frame_bytes() == haul(1, b"first")
    assert side.closed()


def test_file_reply_sends_the_absolute_path(bay):
    start, d = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/data")))
    assert side.frame_bytes() == reply(1, 200, 2, [], path=str(d / "data.bin"))
    assert side.frame_bytes() == ready(1)
    # a 206 falls back to a stream
    side.send(hail(2, get_params("/range")))
    assert side.frame_bytes() == reply(2, 206, 1, [("Content-Range", "bytes 0-3/10")])
    assert side.frame_bytes() == haul(2, b"0123456789")
    assert side.frame_bytes() == haul(2, b"", fin=True)
    assert side.frame_bytes() == ready(2)


def test_config_and_params_reach_the_app(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor({"greeting": "ahoy"})
    side.send(hail(1, get_params("/config")))
    assert side.frame_bytes() == reply(1, 200, 1, [])
    assert side.frame_bytes() == haul(1, b"ahoy")
    assert side.frame_bytes() == haul(1, b"", fin=True)
    assert side.frame_bytes() == ready(1)
    side.send(hail(2, get_params("/env", extra=[("HTTP_X_BIN", b"a\xff\x00b"), ("HTTPS", "on")])))
    side.frame_bytes()
    got = b""
    while True:
        f = side.frame_bytes()
        got += f[10:]
        if f[9] == 1:
            break
    env = json.loads(got.decode("latin-1"))
    assert env["HTTP_X_BIN"] == "a\xff\x00b"
    assert env["PATH_INFO"] == "/env" and env["wsgi.url_scheme"] == "https"


def test_websocket_tunnel_echo(bay):
    start, _ = bay
    _, path = start(app=None)
    side = Side(path)
    side.moor()
    key = "dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455, 1.3
    side.send(hail(1, get_params("/ws", extra=[("HTTP_UPGRADE", "websocket"),
                                                ("HTTP_CONNECTION", "Upgrade"),
                                                ("HTTP_SEC_WEBSOCKET_KEY", key),
                                                ("HTTP_SEC_WEBSOCKET_VERSION", "13")])))
    accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert side.frame_bytes() == reply(1, 101, 4, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Accept", accept)])
    mask = b"\x01\x02\x03\x04"
    msg = b"hello"
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(msg))
    wsframe = bytes([0x81, 0x80 | len(msg)]) + mask + masked
    side.send(haul(1, wsframe[:3]))        # split across HAULs
    side.send(haul(1, wsframe[3:]))
    assert side.frame_bytes() == haul(1, b"\x81\x05hello")
    close = bytes([0x88, 0x82]) + mask + bytes(c ^ mask[i] for i, c in enumerate(b"\x03\xe8"))
    side.send(haul(1, close))
    assert side.frame_bytes() == haul(1, b"\x88\x02\x03\xe8")
    assert side.frame_bytes() == haul(1, b"", fin=True)
    assert side.closed()                     # no READY after a tunnel


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: haul(9, b"x", fin=True), id="haul-other-id"),
    pytest.param(lambda: haul(1, b"toolong", fin=True), id="more-than-announced"),
    pytest.param(lambda: haul(1, b"x", fin=True), id="fewer-before-fin"),
    pytest.param(lambda: frame(0x23, b"\0\0\0\1"), id="wrong-frame"),
])
def test_request_body_protocol_errors_close_the_link(bay, bad):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.moor()
    side.send(hail(1, get_params("/cookies", "POST"), body_len=3))
    side.send(bad())
    assert side.closed()
    # the bay goes on: a new link works
    other = Side(path)
    other.moor()
    other.send(hail(1, get_params("/cookies")))
    assert other.frame_bytes()[0] == 0x22


def test_moored_below_v3_and_haul_first_close_the_link(bay):
    start, _ = bay
    _, path = start()
    side = Side(path)
    side.frame_bytes()
    side.send(frame(0x02, b'{"version": 1}'))
    assert side.closed()
    side = Side(path)
    side.moor()
    side.send(haul(1, b"x", fin=True))
    assert side.closed()
    side = Side(path)
    side.moor()
    side.send(b"\x20\x7f\xff\xff\xff")      # a frame over the maximum
    assert side.closed()


def test_threads_serve_links_at_once_and_workers_fork(bay):
    start, _ = bay
    p, path = start(threads=2)
    a, b = Side(path), Side(path)
    da, db = a.moor(), b.moor()
    assert json.loads(da[5:])["threads"] == 2 and json.loads(db[5:])["pid"] == p.pid
    b.send(hail(1, get_params("/cookies")))
    assert b.frame_bytes()[0] == 0x22
    a.send(hail(1, get_params("/cookies")))
    assert a.frame_bytes()[0] == 0x22
    p2, path2 = start(threads=1, workers=2)
    pids = set()
    sides = [Side(path2), Side(path2)]
    for side in sides:
        pids.add(json.loads(side.moor()[5:])["pid"])
    assert len(pids) == 2 and p2.pid not in pids


def test_sigterm_drains(bay):
    start, d = bay
    p, path = start(threads=2)
    idle = Side(path)
    idle.moor()
    busy = Side(path)
    busy.moor()
    busy.send(hail(1, get_params("/wait")))
    wait_until(lambda: (d / "started").exists(), what="the request under way")
    p.send_signal(signal.SIGTERM)
    assert idle.closed()
    (d / "go").touch()
    assert busy.frame_bytes() == reply(1, 200, 1, [])
    assert busy.frame_bytes() == haul(1, b"done")
    assert busy.frame_bytes() == haul(1, b"", fin=True)
    assert busy.frame_bytes() == ready(1)
    assert busy.closed()
    assert p.wait(timeout=5) == 0
