"""Helpers for the data-plane tests (test_http_*.py): a manifest builder for
Mothership in front of echo backends (apps/echo_backend.py), a raw socket
client for malformed input and exact framing, and /metrics readers.

    def test_x(fleet, tmp_path):
        px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
        r = requests.get(px.url("/hello"))
        ms = px.ms      # the fleet_helpers.Mothership

Every wait is on a logged event ("listening", "ready", "fleet_ready") or on
a socket; polling only where there is no event (fd counts)."""
import json
import os
import socket
import tempfile
import time

import pytest

from fleet_helpers import PY, app, free_port, http_get, metric, parse_metrics, toml_str  # noqa: F401 (metric re-exported)

ECHO = app("echo_backend.py")


# ------------------------------------------------------------------ manifest pieces
def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


class Ship:
    """An echo backend ship: over TCP (port) or a Unix socket (unix path)."""

    def __init__(self, name, routes, port=None, unix=None, gate=None, extra=None, group="web"):
        self.name = name
        self.routes = routes
        self.unix = unix
        self.port = None if unix else (port or free_port())
        self.gate = gate
        self.extra = extra or {}
        self.group = group

    def toml(self):
        args = [ECHO, "--name", self.name]
        if self.unix:
            args += ["--unix", self.unix]
            bind = f"unix://{self.unix}"
        else:
            args += ["--port", str(self.port)]
            bind = f"tcp://127.0.0.1:{self.port}"
        if self.gate:
            args += ["--gate", str(self.gate)]
        lines = [f"[[fleet.{self.group}]]", f"name = {toml_str(self.name)}", f"command = {toml_str(PY)}",
                 f"args = {toml_value(args)}", f"bind = {toml_str(bind)}", f"routes = {toml_value(self.routes)}"]
        lines += [f"{k} = {toml_value(v)}" for k, v in self.extra.items()]
        return "\n".join(lines) + "\n"


def echo_ship(name, routes=("http:/.*",), **kw):
    return Ship(name, list(routes), **kw)


def short_tmpdir():
    """A short directory for Unix sockets (sun_path is 108 bytes)."""
    return tempfile.mkdtemp(prefix="msh", dir="/tmp")


# ------------------------------------------------------------------ the proxy under test
class Proxy:
    def __init__(self, ms, binds, mport):
        self.ms = ms
        self.binds = binds          # name -> port (int) or unix path (str)
        self.mport = mport
        self.port = binds.get("http") if isinstance(binds.get("http"), int) else None

    def url(self, path, bind="http"):
        return f"http://127.0.0.1:{self.binds[bind]}{path}"

    def metrics(self):
        status, body = http_get(self.mport, "/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def metrics_text(self):
        return http_get(self.mport, "/metrics")[1]

    def pid(self):
        return self.ms.pid

    def fds(self):
        return len(os.listdir(f"/proc/{self.ms.pid}/fd"))


def start_proxy(fleet, *ships, binds=None, http=None, static=None, mothership=None, wait=True, extra=""):
    """Start Mothership with these binds (name -> port int, or a "unix:///p"
    string; default one TCP bind "http"), [mothership.http] limits, static
    dirs (list of dicts) and ships; wait until every bind listens and (with
    wait) the whole fleet is ready."""
    binds = dict(binds or {"http": free_port()})
    mothership = dict(mothership or {})
    # metrics_port None: no metrics listener (a test that counts the control
    # loop's wake-ups keeps its only TCP port closed to strangers)
    mport = free_port() if mothership.get("metrics_port", 0) is not None else None
    mothership.pop("metrics_port", None)
    out = ["[mothership]"] + ([f"metrics_port = {mport}"] if mport else [])
    if "shutdown_timeout" not in mothership:
        out.append('shutdown_timeout = "5s"')
    for k, v in mothership.items():
        out.append(f"{k} = {toml_value(v)}")
    out.append("")
    out.append("[mothership.bind]")
    for name, v in binds.items():
        if isinstance(v, dict):  # a table: {"port": p, other bind keys...}
            keys = [f"address = {toml_str('127.0.0.1:%d' % v['port'])}"]
            keys += [f"{k} = {toml_value(x)}" for k, x in v.items() if k != "port"]
            out.append(f"{name} = {{ {', '.join(keys)} }}")
        else:
            out.append(f"{name} = {toml_str(v if isinstance(v, str) else f'127.0.0.1:{v}')}")
    if http:
        out += ["", "[mothership.http]"] + [f"{k} = {toml_value(v)}" for k, v in http.items()]
    for sd in static or []:
        out += ["", "[[mothership.static_dirs]]"] + [f"{k} = {toml_value(v)}" for k, v in sd.items()]
    out.append("")
    out += [s.toml() for s in ships]
    out.append(extra)
    ms = fleet("\n".join(out) + "\n")
    start = 0
    for _ in binds:
        start = ms.event("listening", start=start)["_i"] + 1
    if wait and ships:
        ms.event("fleet_ready", timeout=15)
    resolved = {k: (v[len("unix://"):] if isinstance(v, str) and v.startswith("unix://")
                    else v["port"] if isinstance(v, dict) else v)
                for k, v in binds.items()}
    return Proxy(ms, resolved, mport)


# ------------------------------------------------------------------ raw sockets
class Response:
    def __init__(self, status, reason, headers, body, version, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] in order
        self.body = body
        self.version = version
        self.raw_head = raw_head
        self.chunked = False

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:200]!r}>"


class Raw:
    """A raw client connection: send bytes, read responses with exact framing."""

    def __init__(self, port, timeout=5.0, unix=None):
        if unix:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False

    @classmethod
    def wrap(cls, sock):
        """A Raw on an already connected socket."""
        self = cls.__new__(cls)
        self.s = sock
        self.buf = b""
        self.eof = False
        return self

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            self.eof = True
            raise EOFError("connection closed by Mothership")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only=False):
        """Read one response; head_only for HEAD and for interim (1xx) ones."""
        status_line = self._line().decode("latin-1")
        raw = [status_line]
        version, status, *reason = status_line.split(" ", 2)
        headers = []
        while True:
            ln = self._line().decode("latin-1")
            if ln == "":
                break
            raw.append(ln)
            k, v = ln.split(":", 1)
            headers.append((k.strip(), v.strip()))
        r = Response(int(status), reason[0] if reason else "", headers, b"", version, "\r\n".join(raw))
        st = int(status)
        if head_only or st < 200 or st in (204, 304):
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te and "chunked" in te.lower():
            r.chunked = True
            parts = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line() != b"":
                        pass
                    break
                parts.append(self._exact(size))
                assert self._exact(2) == b"\r\n", "chunk not followed by CRLF"
            r.body = b"".join(parts)
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            # delimited by the close
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def closed(self, timeout=3.0):
        """True when Mothership closes the connection (EOF or reset) within
        timeout with nothing more sent; data that arrives is kept in buf."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    self.eof = True
                    return True
                self.buf += d
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def read_all(self, timeout=3.0):
        """Everything until the close (or the timeout)."""
        self.closed(timeout)
        out, self.buf = self.buf, b""
        return out

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_request(method, path, headers=None, body=b"", version="HTTP/1.1", host="test"):
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in (headers or {}).items() if isinstance(headers, dict) else (headers or []):
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def recv_to_eof(s):
    """Every byte s receives until the peer closes (the socket's own timeout applies)."""
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    return data


def ws_upgrade(s, path, extra_headers=b""):
    """Send a WebSocket upgrade for path on the connected socket s (the RFC 6455
    sample key) and read the answer's head byte by byte, leaving any frame
    after it unread; the head must be a 101. Returns the head."""
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra_headers + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return head


# ------------------------------------------------------------------ metrics
def msum(samples, name, **labels):
    """Sum of every sample of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)



# ------------------------------------------------------------------ module-scoped fleets
class ModuleFleet:
    """A FleetFactory for a module-scoped fixture (one Mothership shared by
    the tests of a module); call cleanup() at teardown."""

    def __new__(cls, tmp_path_factory, name):
        from fleet_helpers import FleetFactory
        return FleetFactory(tmp_path_factory.mktemp(name))


# ------------------------------------------------------------------ brotli (libbrotli via ctypes: no Python module on Debian 12's base)
def _brotli_lib(name):
    import ctypes
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library(name) or f"lib{name}.so.1")


def brotli_compress(data, quality=5):
    import ctypes
    enc = _brotli_lib("brotlienc")
    cap = len(data) + (len(data) >> 2) + 1024
    out = ctypes.create_string_buffer(cap)
    size = ctypes.c_size_t(cap)
    ok = enc.BrotliEncoderCompress(ctypes.c_int(quality), ctypes.c_int(22), ctypes.c_int(0),
                                   ctypes.c_size_t(len(data)), ctypes.c_char_p(data), ctypes.byref(size), out)
    assert ok == 1, "BrotliEncoderCompress failed"
    return out.raw[:size.value]


def brotli_decompress(data, max_out=64 << 20):
    """Decode a whole brotli stream; raises ValueError on a bad one."""
    import ctypes
    dec = _brotli_lib("brotlidec")
    cap = max(1024, len(data) * 8)
    while True:
        out = ctypes.create_string_buffer(cap)
        size = ctypes.c_size_t(cap)
        rc = dec.BrotliDecoderDecompress(ctypes.c_size_t(len(data)), ctypes.c_char_p(data), ctypes.byref(size), out)
        if rc == 1:
            return out.raw[:size.value]
        if cap >= max_out:
            raise ValueError("not a valid brotli stream")
        cap *= 4


# ------------------------------------------------------------------ zstd
def zstd_decompress(body):
    """Decode one whole zstd frame (window at most 256 KiB), nothing after it."""
    import zstandard
    d = zstandard.ZstdDecompressor(max_window_size=1 << 18).decompressobj()
    out = d.decompress(body)
    assert d.eof and not d.unused_data
    return out
