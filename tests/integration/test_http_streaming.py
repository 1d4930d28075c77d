"""Data plane, streamed responses: a ship that writes its answer a piece at a
time reaches the client a piece at a time, with `compression = true` as
without it, under gzip, deflate, br and zstd, for text, HTML, JSON and NDJSON,
chunked or delimited by the close; SSE (never compressed) streams too.

The ship (apps/stream_app.py) writes piece i only when the test releases it
through a FIFO, and the test releases piece i+1 only once it has read piece
i, decompressed, off its socket: a proxy that holds pieces back until the
end never delivers piece i, and the test fails on its read timeout instead
of deadlocking. Arrival times are recorded for the failure message only (no
wall-clock assert). The same runs against Flask on gunicorn (Debian's
python3-flask and gunicorn) over a Unix socket. A HEAD gets the head its
GET would get."""
import os
import shutil
import time
import zlib

import brotli
import pytest
import zstandard

from fleet_helpers import PY, app, free_port, toml_str
from http_helpers import ModuleFleet, Raw, raw_request, short_tmpdir, start_proxy, toml_value

STREAM = app("stream_app.py")
PIECES = 5
READ_TIMEOUT = 5.0


def stream_ship(port):
    return "\n".join([
        "[[fleet.web]]", 'name = "streamer"', f"command = {toml_str(PY)}",
        f'args = [{toml_str(STREAM)}, "--port", "{port}"]', f'bind = "tcp://127.0.0.1:{port}"',
        'routes = ["http:/.*"]', ""])


@pytest.fixture(scope="module")
def pxs(tmp_path_factory):
    """Two proxies in front of the same kind of ship: compressing and not."""
    out = {}
    fleets = []
    for compression in (True, False):
        f = ModuleFleet(tmp_path_factory, f"stream{int(compression)}")
        fleets.append(f)
        out[compression] = start_proxy(f, mothership={"compression": compression}, extra=stream_ship(free_port()))
        out[compression].ms.event("fleet_ready", timeout=15)
    yield out
    for f in fleets:
        f.cleanup()


def piece(i, ctype):
    """What apps/stream_app.py writes as piece i."""
    if ctype == "text/event-stream":
        return b"data: event %d\n\n" % i
    if "json" in ctype:
        return b'{"piece": %d, "text": "the quick brown fox jumps over the lazy dog"}\n' % i
    return b"piece %d: the quick brown fox jumps over the lazy dog\n" % i


class Decoder:
    """Incremental decoding of a Content-Encoding."""

    def __init__(self, enc):
        self.enc = enc
        if enc == "gzip":
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self.z = zlib.decompressobj()
        elif enc == "br":
            self.z = brotli.Decompressor()
        elif enc == "zstd":
            # a flushed zstd block decodes at once; the window stays within
            # the 256 KiB the encoder promises (compress.h)
            self.z = zstandard.ZstdDecompressor(max_window_size=1 << 18).decompressobj()
        else:
            assert enc is None, enc
            self.z = None

    def feed(self, data):
        if self.z is None:
            return data
        if self.enc == "br":
            return self.z.process(data)
        return self.z.decompress(data)


class BodyReader:
    """Reads a response body off a Raw connection as it arrives: chunked or
    delimited by the close, decoded incrementally."""

    def __init__(self, raw, resp):
        self.raw = raw
        self.chunked = "chunked" in (resp.header("transfer-encoding") or "").lower()
        self.dec = Decoder(resp.header("content-encoding"))
        self.out = b""
        self.ended = False
        self.chunk_left = 0

    def _pump(self):
        """Decode what is buffered; read more from the socket if nothing was."""
        r = self.raw
        if not self.chunked:
            if not r.buf:
                try:
                    r._fill()
                except EOFError:
                    self.ended = True
                    return
            data, r.buf = r.buf, b""
            self.out += self.dec.feed(data)
            return
        if self.chunk_left == 0:
            size = int(r._line().split(b";")[0], 16)
            if size == 0:
                while r._line() != b"":
                    pass
                self.ended = True
                return
            self.chunk_left = size
        if not r.buf:
            r._fill()
        take = r.buf[:self.chunk_left]
        r.buf = r.buf[len(take):]
        self.chunk_left -= len(take)
        self.out += self.dec.feed(take)
        if self.chunk_left == 0:
            assert r._exact(2) == b"\r\n", "chunk not followed by CRLF"

    def until(self, want):
        """Read until the decoded body holds want bytes in all."""
        while len(self.out) < want and not self.ended:
            self._pump()
        return self.out

    def rest(self):
        while not self.ended:
            self._pump()
        return self.out


def stream(px, tmp, enc, ctype, framing="chunked"):
    """GET a streamed answer, releasing each piece only once the previous
    one arrived decoded. Returns (response head, arrival times)."""
    fifo = os.path.join(tmp, "go")
    os.mkfifo(fifo)
    expected = [piece(i, ctype) for i in range(PIECES)]
    headers = [("Accept-Encoding", enc)] if enc else []
    arrivals = []
    wfd = None
    with Raw(px.port, timeout=READ_TIMEOUT) as c:
        t0 = time.monotonic()
        c.send(raw_request("GET", f"/stream?fifo={fifo}&n={PIECES}&ctype={ctype}&framing={framing}", headers))
        resp = c.response(head_only=True)
        assert resp.status == 200, resp
        body = BodyReader(c, resp)
        try:
            for i in range(PIECES):
                if i > 0:
                    if wfd is None:
                        wfd = os.open(fifo, os.O_WRONLY)   # the ship holds it open: no wait
                    os.write(wfd, b"x")                     # release piece i
                want = sum(len(p) for p in expected[:i + 1])
                try:
                    got = body.until(want)
                except (TimeoutError, OSError) as e:
                    pytest.fail(f"{enc or 'identity'} {ctype} {framing}: piece {i} did not arrive within "
                                f"{READ_TIMEOUT}s of its write (held back by the proxy?); pieces arrived at "
                                f"{arrivals} s ({e!r})")
                arrivals.append(round(time.monotonic() - t0, 3))
                assert got == b"".join(expected[:i + 1]), (i, got)
            assert body.rest() == b"".join(expected)
        finally:
            if wfd is not None:
                os.close(wfd)
    return resp, arrivals


@pytest.fixture
def tmp():
    d = short_tmpdir()
    yield d
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    os.rmdir(d)


@pytest.mark.parametrize("ctype", ["text/plain", "text/html", "application/json", "application/x-ndjson"])
@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd"])
def test_each_piece_arrives_compressed_before_the_next_is_written(pxs, tmp, enc, ctype):
    resp, arrivals = stream(pxs[True], tmp, enc, ctype)
    assert resp.header("content-encoding") == enc, resp.headers
    assert len(arrivals) == PIECES


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd"])
def test_a_body_delimited_by_the_close_streams_compressed(pxs, tmp, enc):
    resp, _ = stream(pxs[True], tmp, enc, "text/plain", framing="eof")
    assert resp.header("content-encoding") == enc, resp.headers


@pytest.mark.parametrize("compression", [True, False])
def test_each_piece_arrives_without_compression(pxs, tmp, compression):
    # identity: no Accept-Encoding, or a proxy that does not compress
    resp, _ = stream(pxs[compression], tmp, None if compression else "gzip, br", "text/plain")
    assert resp.header("content-encoding") is None, resp.headers


def test_sse_streams_and_is_never_compressed(pxs, tmp):
    resp, _ = stream(pxs[True], tmp, "gzip, deflate, br", "text/event-stream")
    assert resp.header("content-encoding") is None, resp.headers


# ------------------------------------------------------------------ HEAD
FRAMING = ("content-encoding", "vary", "content-length", "transfer-encoding")


def framing_of(r):
    return {k: r.header(k) for k in FRAMING}


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd"])
def test_head_of_a_streamed_answer_gets_its_gets_headers(pxs, tmp, enc):
    get, _ = stream(pxs[True], tmp, enc, "text/plain")
    with Raw(pxs[True].port) as c:
        c.send(raw_request("HEAD", "/stream?n=5&ctype=text/plain", [("Accept-Encoding", enc)]))
        head = c.response(head_only=True)
        assert head.status == 200
        assert framing_of(head) == framing_of(get), (head.headers, get.headers)
        assert c.closed(0.3) is False and c.buf == b""   # and no body bytes


# ------------------------------------------------------------------ Flask on gunicorn
@pytest.fixture(scope="module")
def gunicorn_px(tmp_path_factory):
    gunicorn = shutil.which("gunicorn") or "/usr/bin/gunicorn"
    if not os.path.exists(gunicorn):
        pytest.skip("gunicorn is not installed (scripts/deps.sh installs gunicorn and python3-flask)")
    sockdir = short_tmpdir()
    sock = os.path.join(sockdir, "app.sock")
    args = ["--bind", f"unix:{sock}", "-k", "gthread", "--threads", "8", "--workers", "1",
            "--chdir", os.path.dirname(STREAM), "flask_stream:app"]
    ship = "\n".join([
        "[[fleet.web]]", 'name = "flask"', f"command = {toml_str(gunicorn)}", f"args = {toml_value(args)}",
        f"bind = {toml_str('unix://' + sock)}", 'routes = ["http:/.*"]', ""])
    f = ModuleFleet(tmp_path_factory, "gunicorn")
    p = start_proxy(f, mothership={"compression": True}, extra=ship)
    p.ms.event("fleet_ready", timeout=30)
    yield p
    f.cleanup()
    shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.parametrize("ctype,enc", [("application/x-ndjson", "gzip"), ("text/html", "deflate"),
                                       ("application/json", "br"), ("text/css", "zstd"),
                                       ("text/plain", None),
                                       ("text/event-stream", "gzip, br")])
def test_flask_on_gunicorn_streams_each_piece(gunicorn_px, tmp, ctype, enc):
    resp, arrivals = stream(gunicorn_px, tmp, enc, ctype)
    want = None if enc is None or ctype == "text/event-stream" else enc
    assert resp.header("content-encoding") == want, resp.headers
    assert len(arrivals) == PIECES


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd"])
def test_flask_head_gets_the_head_its_get_gets(gunicorn_px, enc):
    # Flask answers a HEAD with the page's Content-Length; the GET is compressed
    with Raw(gunicorn_px.port) as c:
        c.send(raw_request("GET", "/page", [("Accept-Encoding", enc)]))
        get = c.response()
        assert get.header("content-encoding") == enc, get.headers
        assert Decoder(enc).feed(get.body).startswith(b"<p>paragraph 0:")
        c.send(raw_request("HEAD", "/page", [("Accept-Encoding", enc)]))
        head = c.response(head_only=True)
        assert head.status == 200
        assert framing_of(head) == framing_of(get), (head.headers, get.headers)
        c.send(raw_request("GET", "/stream?n=1"))             # the connection goes on: no stray body bytes
        assert c.response().body == piece(0, "text/plain")
