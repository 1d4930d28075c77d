"""HTTP/2 with prior knowledge on an h2c bind, through the real binary:
curl --http2-prior-knowledge, nghttp and h2load (real clients); request and
response bodies both ways; HTTP/1.1 still served on the same bind; a bind
without h2c does not speak HTTP/2; WebSocket over HTTP/2 (RFC 8441 extended
CONNECT) to a ship and to a bay; and hostile frames written by hand
(hyperframe + hpack, from python3-h2): rapid reset, a CONTINUATION flood, a
PING flood from a client that does not read, a zero window, too many
streams, bad pseudo-headers, a header list too large, a Content-Length that
the DATA does not match, a Host that disagrees with :authority. Each hostile
case asserts what the client gets and what reaches the ship (a recording
ship: apps/raw_recorder.py)."""
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import time

import pytest
import requests
from hpack import Decoder, Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from conftest import BUILD
from fleet_helpers import PY, app, free_port, toml_str
from http_helpers import ModuleFleet, echo_ship, msum, start_proxy, toml_value, wait_until

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RECORDER = app("raw_recorder.py")
ECHO_BAY = os.path.join(BUILD, "examples", "bays", "echo-bay")

PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x1, 0x2, 0x7, 0x8, 0xb
ENABLE_CONNECT_PROTOCOL = 0x8


def h2c_bind():
    """One plain bind "http" serving HTTP/2 with prior knowledge."""
    return {"http": {"port": free_port(), "h2c": True}}


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "h2")
    root = tmp_path_factory.mktemp("h2site")
    (root / "hello.txt").write_bytes(b"hello over h2\n")
    (root / "big.bin").write_bytes(os.urandom(700_000))
    (root / "text.txt").write_bytes(b"".join(b"line %d of a compressible text\n" % i for i in range(5000)))
    rec_dir = str(tmp_path_factory.mktemp("h2rec"))
    rport = free_port()
    rec = "\n".join(["[[fleet.rec]]", 'name = "rec"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([RECORDER, '--port', str(rport), '--dir', rec_dir])}",
                     f'bind = "tcp://127.0.0.1:{rport}"', 'routes = ["http:/rec/.*", "plain:/rec/.*"]'])
    bay = "\n".join(["[[bays.websocket]]", 'name = "echo"', f"command = {toml_str(ECHO_BAY)}",
                     'routes = ["http:/bay.*"]'])
    p = start_proxy(
        f, echo_ship("app", routes=["http:/(?!rec/|bay).*", "plain:/(?!rec/).*"]),
        binds={"http": {"port": free_port(), "h2c": True}, "plain": free_port()},
        http={"h2_max_concurrent_streams": 8, "h2_rapid_reset_max": 20, "h2_max_header_list_size": "8KiB",
              "h2_max_control_frames": 100, "h2_stall_timeout": "1s"},
        static=[{"path": str(root), "prefix": "/s"}],
        mothership={"socket_dir": f"/tmp/msh2-{os.getpid()}", "compression": True},
        extra=rec + "\n\n" + bay)
    p.ms.event("ready", ship="echo", timeout=15)
    p.root = root
    p.rec_dir = rec_dir
    yield p
    f.cleanup()


def recorded(px, prefix):
    """The requests the recording ship received whose target starts with prefix."""
    try:
        with open(os.path.join(px.rec_dir, "requests.jsonl")) as fh:
            reqs = [json.loads(l) for l in fh if l.strip()]
    except FileNotFoundError:
        return []
    return [r for r in reqs if r["target"].startswith(prefix)]


def raw_bytes_seen(px, needle):
    """Whether any connection to the recording ship carried these bytes."""
    for name in os.listdir(px.rec_dir):
        if name.startswith("conn-"):
            with open(os.path.join(px.rec_dir, name), "rb") as fh:
                if needle in fh.read():
                    return True
    return False


# ------------------------------------------------------------------ a client of raw frames
class H2:
    """Frames by hand: what a hostile client sends, and every frame read back."""

    def __init__(self, port, settings=None, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(5)
        self.s.connect(("127.0.0.1", port))
        self.enc = Encoder()
        self.dec = Decoder()
        self.buf = b""
        self.frames = []
        self.closed = False
        self.server_settings = {}
        self.s.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, *frames):
        self.s.sendall(b"".join(f.serialize() for f in frames))

    def headers(self, sid, hdrs, end_stream=True, end_headers=True):
        flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(sid, data=self.enc.encode(hdrs), flags=flags)

    def request(self, sid, path, method="GET", extra=(), end_stream=True, authority="test"):
        hdrs = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        self.send(self.headers(sid, hdrs + list(extra), end_stream=end_stream))

    def _read_frame(self):
        while len(self.buf) < 9:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
        while len(self.buf) < 9 + length:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        f.parse_body(memoryview(self.buf[9:9 + length]))
        self.buf = self.buf[9 + length:]
        if isinstance(f, HeadersFrame) or isinstance(f, ContinuationFrame):
            f.decoded = self.dec.decode(bytes(f.data)) if "END_HEADERS" in f.flags else None
        if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
            self.server_settings.update(f.settings)
            self.send(SettingsFrame(0, flags=["ACK"]))
        self.frames.append(f)
        return f

    def until(self, pred, timeout=5.0):
        """Reads frames until pred(frame) is true; returns that frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                f = self._read_frame()
            except (EOFError, ConnectionResetError):
                self.closed = True
                return None
            except socket.timeout:
                pytest.fail(f"no matching frame within {timeout}s; frames: {self.frames[-10:]}")
            if pred(f):
                return f

    def response(self, sid, timeout=5.0):
        """(status, headers, body, how it ended: 'end' | ('rst', code) | 'closed')."""
        status, hdrs, body = None, {}, b""
        while True:
            f = self.until(lambda f: f.stream_id in (sid, 0) and not isinstance(f, (SettingsFrame, PingFrame,
                                                                                     WindowUpdateFrame)),
                           timeout)
            if f is None:
                return status, hdrs, body, "closed"
            if isinstance(f, GoAwayFrame):
                return status, hdrs, body, ("goaway", f.error_code)
            if isinstance(f, RstStreamFrame):
                return status, hdrs, body, ("rst", f.error_code)
            if isinstance(f, HeadersFrame):
                for k, v in f.decoded:
                    k, v = k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        if int(v) >= 200:
                            status = int(v)
                    else:
                        hdrs[k] = v
            if isinstance(f, DataFrame):
                body += bytes(f.data)
                if f.flow_controlled_length:
                    self.send(WindowUpdateFrame(0, f.flow_controlled_length),
                              WindowUpdateFrame(sid, f.flow_controlled_length))
            if "END_STREAM" in f.flags:
                return status, hdrs, body, "end"

    def wait_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.until(lambda f: False, deadline - time.monotonic())
        return self.closed

    def close(self):
        self.s.close()


def curl(px, *args, bind="http"):
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", *args],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    return body, tail.decode()


# ------------------------------------------------------------------ real clients
def test_curl_static_and_proxied(px):
    body, tail = curl(px, px.url("/s/hello.txt"))
    assert tail == "2 200" and body == b"hello over h2\n"
    body, tail = curl(px, px.url("/s/big.bin"))
    assert tail == "2 200" and body == (px.root / "big.bin").read_bytes()
    body, tail = curl(px, "-H", "X-Test: yes", "--cookie", "a=1; b=2", px.url("/api/x?q=1"))
    assert tail == "2 200"
    j = json.loads(body)
    assert j["version"] == "HTTP/1.1" and j["target"] == "/api/x?q=1"
    hdrs = {k.lower(): v for k, v in j["headers"]}
    assert hdrs["host"] == f"127.0.0.1:{px.port}" and hdrs["x-test"] == "yes" and hdrs["cookie"] == "a=1; b=2"


def test_head_requests(px):
    for path, length in (("/s/big.bin", 700_000), ("/api/head", None)):
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-I", px.url(path)],
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("HTTP/2 200"), out.stdout
        if length:
            assert f"content-length: {length}" in out.stdout.lower(), out.stdout


def test_compression_over_h2(px):
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: gzip", "-D", "-",
                          "-o", "/dev/null", px.url("/s/text.txt")], capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/2 200") and "content-encoding: gzip" in out.stdout.lower(), out.stdout
    body, tail = curl(px, "--compressed", px.url("/s/text.txt"))
    assert tail == "2 200" and body == (px.root / "text.txt").read_bytes()


@pytest.mark.parametrize("path", ["/s/text.txt", "/api/echo?size=40000&ctype=text/plain"])
def test_zstd_over_h2(px, tmp_path, path):
    # on the fly, static and proxied: one zstd frame in DATA frames; curl
    # --compressed (Debian's curl has zstd) decodes it too
    import zstandard
    out_file = tmp_path / "body.zst"
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: zstd", "-D", "-",
                          "-o", str(out_file), px.url(path)], capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    head = out.stdout.lower()
    assert head.startswith("http/2 200") and "content-encoding: zstd" in head and "vary: accept-encoding" in head, head
    d = zstandard.ZstdDecompressor(max_window_size=1 << 18).decompressobj()
    body = d.decompress(out_file.read_bytes())
    assert d.eof and not d.unused_data
    plain, tail = curl(px, px.url(path))
    assert tail == "2 200" and body == plain and len(body) > 10000
    if path.startswith("/s/"):
        assert body == (px.root / "text.txt").read_bytes()
    got, tail = curl(px, "--compressed", px.url(path))
    assert tail == "2 200" and got == plain


def test_curl_bodies_both_ways(px, tmp_path):
    data = os.urandom(1_500_000)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    body, tail = curl(px, "--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream", px.url("/up"))
    assert tail == "2 200"
    j = json.loads(body)
    assert j["body_sha256"] == hashlib.sha256(data).hexdigest() and j["body_len"] == len(data)
    # no Content-Length from the client: chunked to the ship
    body, tail = curl(px, "-T", str(f), "-H", "Content-Length:", "-H", "Transfer-Encoding:", px.url("/put"))
    assert tail == "2 200"
    assert json.loads(body)["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_curl_expect_100_continue(px, tmp_path):
    f = tmp_path / "c.bin"
    f.write_bytes(os.urandom(100_000))
    body, tail = curl(px, "-H", "Expect: 100-continue", "--data-binary", f"@{f}", px.url("/cont"))
    assert tail == "2 200"
    assert json.loads(body)["body_len"] == 100_000


def test_nghttp_many_streams_on_one_connection(px):
    urls = [px.url(p) for p in ("/s/hello.txt", "/a", "/b", "/s/big.bin", "/c")]
    out = subprocess.run(["nghttp", "-n", "-s", *urls], capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    codes = [ln.split()[4] for ln in out.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert codes == ["200"] * 5, out.stdout


def test_h2load_small_run(px):
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "8", px.url("/s/hello.txt")],
                         capture_output=True, timeout=60, text=True)
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    out = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "8", px.url("/load")],
                         capture_output=True, timeout=60, text=True)
    assert "200 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 200 2xx" in out.stdout, out.stdout


def test_http1_still_served_on_the_h2c_bind(px):
    r = requests.get(px.url("/s/hello.txt"), timeout=5)
    assert r.status_code == 200 and r.content == b"hello over h2\n"


def test_a_bind_without_h2c_does_not_speak_h2(px):
    with socket.create_connection(("127.0.0.1", px.binds["plain"]), timeout=5) as s:
        s.sendall(PREFACE + SettingsFrame(0).serialize())
        got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 4") or got.startswith(b"HTTP/1.1 505"), got


def test_metrics_carry_the_protocol(px):
    before = msum(px.metrics(), "mothership_requests_total", proto="h2")
    curl(px, px.url("/metrics-h2"))
    requests.get(px.url("/metrics-h1"), timeout=5)
    m = px.metrics()
    assert msum(m, "mothership_requests_total", proto="h2") >= before + 1
    assert msum(m, "mothership_requests_total", proto="http1") >= 1


# ------------------------------------------------------------------ HTTP/2 over TLS (ALPN h2)
@pytest.fixture(scope="module")
def tls_px(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2certs")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=Mothership Test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    site = tmp_path_factory.mktemp("h2tlssite")
    (site / "big.bin").write_bytes(os.urandom(500_000))
    tls = f"[mothership.tls]\ncert = {toml_str(str(d / 'server.pem'))}\nkey = {toml_str(str(d / 'server.key'))}\n"
    f = ModuleFleet(tmp_path_factory, "h2tls")
    p = start_proxy(f, echo_ship("app", routes=["https:/.*"]),
                    binds={"https": free_port(), "h1": {"port": free_port(), "tls": True, "h2": False}},
                    static=[{"path": str(site), "prefix": "/s"}], extra=tls)
    p.ca = d / "ca.pem"
    p.site = site
    yield p
    f.cleanup()


def curl_h2(tls_px, bind, path):
    """curl --http2 over TLS to bind: the body and "<http version> <status>"."""
    port = tls_px.binds[bind]
    out = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(tls_px.ca), "--resolve",
                          f"localhost:{port}:127.0.0.1", "-w", "\n%{http_version} %{http_code}",
                          f"https://localhost:{port}{path}"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    return body, tail.decode()


def test_h2_over_tls_by_alpn(tls_px):
    def get(path):
        return curl_h2(tls_px, "https", path)
    body, tail = get("/s/big.bin")
    assert tail == "2 200" and body == (tls_px.site / "big.bin").read_bytes()
    body, tail = get("/api/tls")
    assert tail == "2 200"
    j = json.loads(body)
    hdrs = {k.lower(): v for k, v in j["headers"]}
    assert hdrs["x-forwarded-proto"] == "https" and j["version"] == "HTTP/1.1"


def test_a_tls_bind_with_h2_false_serves_http_1_1(tls_px):
    body, tail = curl_h2(tls_px, "h1", "/s/big.bin")  # curl offers h2 and http/1.1 by ALPN
    assert tail == "1.1 200" and body == (tls_px.site / "big.bin").read_bytes()
    rc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_px.binds['h1']}", "-alpn", "h2",
                         "-CAfile", str(tls_px.ca), "-servername", "localhost"],
                        input=b"", capture_output=True, timeout=30)
    assert b"No ALPN negotiated" in rc.stdout, rc.stdout[-2000:]  # h2 alone: not chosen


# ------------------------------------------------------------------ websocket over HTTP/2 (RFC 8441)
def ws_frame(payload, opcode=0x1):
    mask = os.urandom(4)
    n = len(payload)
    hd = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
    return hd + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_over_h2(px, path):
    c = H2(px.port)
    try:
        c.until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        assert c.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1
        c.send(c.headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                             (":authority", "test"), (":path", path), ("sec-websocket-version", "13")],
                         end_stream=False))
        h = c.until(lambda f: isinstance(f, (HeadersFrame, RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
        assert isinstance(h, HeadersFrame), h
        assert dict(h.decoded)[b":status" if isinstance(h.decoded[0][0], bytes) else ":status"] in (b"200", "200")
        got = b""
        c.send(DataFrame(1, ws_frame(b"hello h2")))
        while len(got) < 10:
            f = c.until(lambda f: isinstance(f, (DataFrame, RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
            assert isinstance(f, DataFrame), f
            got += bytes(f.data)
        assert got[:10] == bytes([0x81, 8]) + b"hello h2"
        big = os.urandom(30_000)
        wire = ws_frame(big, 0x2)
        c.send(*[DataFrame(1, wire[i:i + 16384]) for i in range(0, len(wire), 16384)])
        want = bytes([0x82, 126]) + struct.pack(">H", len(big)) + big
        got = got[10:]
        while len(got) < len(want):
            f = c.until(lambda f: isinstance(f, (DataFrame, RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
            assert isinstance(f, DataFrame), f
            got += bytes(f.data)
            c.send(WindowUpdateFrame(0, len(f.data)), WindowUpdateFrame(1, len(f.data)))
        assert got == want
    finally:
        c.close()


def test_websocket_over_h2_to_a_ship(px):
    ws_over_h2(px, "/ws")


def test_websocket_over_h2_to_a_bay(px):
    ws_over_h2(px, "/bay")


# ------------------------------------------------------------------ hostile clients
def test_rapid_reset_gets_goaway_enhance_your_calm(px):
    c = H2(px.port)
    frames = []
    for i in range(60):
        sid = 1 + 2 * i
        frames.append(c.headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "test"),
                                      (":path", f"/rec/rapid-{i}")]))
        frames.append(RstStreamFrame(sid, CANCEL))
    try:
        c.send(*frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    g = c.until(lambda f: isinstance(f, GoAwayFrame))
    assert g is not None and g.error_code == ENHANCE_YOUR_CALM
    assert c.wait_closed()
    c.close()
    time.sleep(0.3)  # anything that did leave for the ship has arrived by now
    assert len(recorded(px, "/rec/rapid-")) <= 21
    assert requests.get(px.url("/s/hello.txt"), timeout=5).status_code == 200


def test_continuation_flood_closes_the_connection(px):
    c = H2(px.port)
    block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/cont")])
    frames = [HeadersFrame(1, data=block)]  # no END_HEADERS
    pad = Encoder()
    for i in range(200):
        frames.append(ContinuationFrame(1, data=pad.encode([(f"x-flood-{i}", "v" * 20)])))
    try:
        c.send(*frames)
    except (BrokenPipeError, ConnectionResetError):
        pass
    f = c.until(lambda f: isinstance(f, (GoAwayFrame, HeadersFrame)))
    assert f is None or isinstance(f, GoAwayFrame)
    assert c.wait_closed()
    c.close()
    assert recorded(px, "/rec/cont") == [] and not raw_bytes_seen(px, b"/rec/cont")


def test_ping_flood_from_a_client_that_does_not_read(px):
    c = H2(px.port, rcvbuf=4096)
    c.s.setblocking(False)
    sent = 0
    ping = PingFrame(0, opaque_data=b"12345678").serialize() * 1000
    deadline = time.monotonic() + 20
    closed = False
    while time.monotonic() < deadline:
        try:
            sent += c.s.send(ping) // 17
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if sent > 400_000:
            break
    # the server stopped taking them: it closed, or it stopped reading
    c.s.setblocking(True)
    acks = 0
    if not closed:
        try:
            while c.until(lambda f: isinstance(f, PingFrame), timeout=10) is not None:
                acks += 1
        except socket.error:
            pass
    assert c.closed or closed
    assert acks < sent
    c.close()
    assert requests.get(px.url("/s/hello.txt"), timeout=5).status_code == 200


def test_zero_window_stall_resets_the_stream(px):
    c = H2(px.port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    c.request(1, "/rec/stall?size=300000")
    status, hdrs, body, end = c.response(1, timeout=10)
    assert status == 200 and body == b""
    assert end == ("rst", CANCEL)
    c.close()
    [r] = recorded(px, "/rec/stall")
    # the ship's connection was not kept for a response nobody takes
    name = f"conn-{r['conn']:06d}.bin"
    closed = os.path.join(px.rec_dir, "closed.txt")
    wait_until(lambda: os.path.exists(closed) and name in open(closed).read().split(),
               timeout=10, what="the ship's connection closed")


def test_too_many_streams_are_refused(px):
    c = H2(px.port)
    c.until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    for i in range(12):
        c.request(1 + 2 * i, f"/rec/many-{i}", method="POST", extra=[("content-length", "5")], end_stream=False)
    # past the limit: each stream refused, or (the limit acknowledged) the connection ends
    refused = []
    while len(refused) < 4:
        f = c.until(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)))
        assert f is not None, refused
        if isinstance(f, GoAwayFrame):
            assert f.error_code == PROTOCOL_ERROR and f.last_stream_id <= 15, f
            break
        assert f.stream_id > 15 and f.error_code in (REFUSED_STREAM, PROTOCOL_ERROR), f
        refused.append(f.stream_id)
    c.close()
    time.sleep(0.3)
    assert len(recorded(px, "/rec/many-")) <= 8


@pytest.mark.parametrize("hdrs", [
    [(":method", "GET"), (":scheme", "http"), (":authority", "test")],                         # no :path
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "rec/bad")],   # not origin-form
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"), (":foo", "x")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"), ("Upper", "x")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"),
     ("connection", "keep-alive")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"), ("te", "gzip")],
    [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":authority", "test"), (":path", "/rec/bad")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"),
     ("x-a", "1\r\nX-Injected: 1")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"),
     (":path", "/rec/bad HTTP/1.1\r\nHost: x\r\n\r\nGET /rec/bad2")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"),
     ("transfer-encoding", "chunked")],
    [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", "/rec/bad"), ("x a", "1")],
], ids=["no-path", "relative-path", "unknown-pseudo", "uppercase-name", "connection", "te-gzip",
        "pseudo-after-regular", "crlf-in-value", "crlf-in-path", "transfer-encoding", "space-in-name"])
def test_bad_pseudo_headers_and_fields_reset_the_stream(px, hdrs):
    c = H2(px.port)
    c.send(c.headers(1, hdrs))
    status, _, _, end = c.response(1)
    assert status is None and end in (("rst", PROTOCOL_ERROR), ("goaway", PROTOCOL_ERROR)), end
    c.close()
    assert recorded(px, "/rec/bad") == [] and not raw_bytes_seen(px, b"/rec/bad")


def test_header_list_too_large_is_431(px):
    c = H2(px.port)
    c.request(1, "/rec/large", extra=[("x-big", "v" * 9000)])
    status, _, body, end = c.response(1)
    assert status == 431 and end == "end" and b"h2_max_header_list_size" in body
    c.close()
    assert recorded(px, "/rec/large") == []


def test_content_length_mismatch_resets_the_stream(px):
    c = H2(px.port)
    c.request(1, "/rec/clen", method="POST", extra=[("content-length", "10")], end_stream=False)
    c.send(DataFrame(1, b"abcd", flags=["END_STREAM"]))
    status, _, _, end = c.response(1)
    assert status is None and end == ("rst", PROTOCOL_ERROR)
    c.close()
    time.sleep(0.2)
    assert recorded(px, "/rec/clen") == []


def test_host_that_disagrees_with_authority_is_400(px):
    c = H2(px.port)
    c.request(1, "/rec/host", extra=[("host", "elsewhere.example")])
    status, _, body, end = c.response(1)
    assert status == 400 and end == "end" and b":authority" in body
    c.close()
    assert recorded(px, "/rec/host") == []


def test_the_ship_sees_http1_with_host_from_authority(px):
    c = H2(px.port)
    c.request(1, "/rec/shape", authority="shape.example", extra=[("cookie", "a=1"), ("cookie", "b=2")])
    status, _, body, end = c.response(1)
    assert status == 200 and end == "end"
    c.close()
    [r] = recorded(px, "/rec/shape")
    hdrs = [(k.lower(), v) for k, v in r["headers"]]
    assert ("host", "shape.example") in hdrs and ("cookie", "a=1; b=2") in hdrs
    assert not any(k.startswith(":") for k, _ in hdrs)


# ------------------------------------------------------------------ timeouts and shutdown
def test_idle_connections_get_goaway(fleet):
    px = start_proxy(fleet, echo_ship("app"), http={"idle_timeout": "1s", "header_timeout": "1s"},
                     binds=h2c_bind())
    # a client that never opens a stream: GOAWAY after header_timeout
    silent = H2(px.port)
    # a client whose last stream ended: GOAWAY after idle_timeout
    busy = H2(px.port)
    busy.request(1, "/idle")
    status, _, _, end = busy.response(1)
    assert status == 200 and end == "end"
    for c in (silent, busy):
        g = c.until(lambda f: isinstance(f, GoAwayFrame), timeout=5)
        assert g is not None and g.error_code == 0
        assert c.wait_closed()
        c.close()
    assert px.ms.stop() == 0


def test_an_idle_stream_gets_the_body_timeout(fleet):
    px = start_proxy(fleet, echo_ship("app"), http={"body_timeout": "1s"}, binds=h2c_bind())
    c = H2(px.port)
    c.request(1, "/idle-stream", method="POST", extra=[("content-length", "10")], end_stream=False)
    c.send(DataFrame(1, b"abc"))
    status, _, body, end = c.response(1, timeout=10)
    assert status == 408 and b"body_timeout" in body
    assert end in ("end", ("rst", 0))
    # the connection goes on
    c.request(3, "/after")
    status, _, _, end = c.response(3)
    assert status == 200 and end == "end"
    c.close()
    assert px.ms.stop() == 0


def test_shutdown_sends_goaway_and_finishes_streams(fleet):
    px = start_proxy(fleet, echo_ship("app"), binds=h2c_bind())
    c = H2(px.port)
    c.request(1, "/slow?delay=800")
    c.send(PingFrame(0, opaque_data=b"seen-it!"))
    assert c.until(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)  # the HEADERS before it were taken
    px.ms.signal(15)
    g = c.until(lambda f: isinstance(f, GoAwayFrame), timeout=5)
    assert g is not None and g.error_code == 0 and g.last_stream_id == 1
    status, _, body, end = c.response(1)
    assert status == 200 and end == "end" and json.loads(body)["path"] == "/slow"
    assert c.wait_closed()
    c.close()
    assert px.ms.wait_exit() == 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for ln in fh:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def test_a_client_that_does_not_open_its_window_holds_back_the_ship(px):
    """30 MB from the ship to a client that never sends WINDOW_UPDATE: the
    proxy stops reading the ship (its bytes wait in the ship's socket, not
    in Mothership), and the stall ends the stream."""
    before = rss_kib(px.pid())
    c = H2(px.port)
    c.request(1, "/rec/huge?size=30000000")
    got = 0
    f = None
    while True:
        f = c.until(lambda f: f.stream_id in (0, 1) and isinstance(f, (DataFrame, RstStreamFrame, GoAwayFrame)),
                    timeout=10)
        if not isinstance(f, DataFrame):
            break
        got += len(f.data)
    peak = rss_kib(px.pid())  # the heap does not shrink back: its peak is still there
    assert isinstance(f, RstStreamFrame) and f.error_code == CANCEL, f
    assert got <= 65535
    assert peak - before < 12 * 1024, (before, peak)
    c.close()
    [r] = recorded(px, "/rec/huge")
    name = f"conn-{r['conn']:06d}.bin"
    closed = os.path.join(px.rec_dir, "closed.txt")
    wait_until(lambda: os.path.exists(closed) and name in open(closed).read().split(),
               timeout=10, what="the ship's connection closed")


CUT_SHIP = r'''
import socket, sys
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ls.accept()
    f = c.makefile("rb")
    while f.readline() not in (b"\r\n", b""):
        pass
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    f.close()
    c.close()
'''


def test_a_response_the_ship_cuts_resets_the_stream(fleet, tmp_path):
    cut_py = tmp_path / "cut_ship.py"
    cut_py.write_text(CUT_SHIP)
    cport = free_port()
    extra = "\n".join(["[[fleet.web]]", 'name = "cut"', f"command = {toml_str(PY)}",
                       f"args = [{toml_str(str(cut_py))}, \"{cport}\"]", f'bind = "tcp://127.0.0.1:{cport}"',
                       'routes = ["http:/cut"]'])
    px = start_proxy(fleet, echo_ship("app", routes=["http:/other"]), extra=extra, binds=h2c_bind())
    c = H2(px.port)
    c.request(1, "/cut")
    status, _, body, end = c.response(1)
    assert status == 200 and end == ("rst", INTERNAL_ERROR) and len(body) <= 1000
    # the connection goes on
    c.request(3, "/other")
    status, _, _, end = c.response(3)
    assert status == 200 and end == "end"
    c.close()
    assert px.ms.stop() == 0
