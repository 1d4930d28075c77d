"""Data plane, request and response framing, against a ship that records the
exact bytes it receives (apps/raw_recorder.py): Mothership writes its own
framing both ways (a Connection header naming Content-Length,
Transfer-Encoding or Host changes nothing), refuses every doubtful
Transfer-Encoding / Content-Length form before one byte goes upstream,
treats an Upgrade other than websocket (h2c) as an ordinary request, and
closes after a local error with a lingering close, so that a client still
uploading reads its 413 instead of a reset."""
import json
import os
import re
import socket
import uuid
import zlib

import pytest

from fleet_helpers import PY, app, free_port, toml_str
from http_helpers import ModuleFleet, Raw, raw_request, start_proxy, toml_value, wait_until

RECORDER = app("raw_recorder.py")
MAX_BODY = 1 << 20


class RecorderShip:
    """A raw_recorder.py ship routed at /app."""

    def __init__(self, name, routes, rec_dir):
        self.name = name
        self.routes = routes
        self.port = free_port()
        self.dir = rec_dir

    def toml(self):
        args = [RECORDER, "--port", str(self.port), "--dir", str(self.dir)]
        return "\n".join([
            "[[fleet.web]]", f"name = {toml_str(self.name)}", f"command = {toml_str(PY)}",
            f"args = {toml_value(args)}", f"bind = {toml_str(f'tcp://127.0.0.1:{self.port}')}",
            f"routes = {toml_value(self.routes)}"]) + "\n"


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    root = tmp_path_factory.mktemp("framing-static")
    (root / "hello.txt").write_bytes(b"static hello\n")
    rec = tmp_path_factory.mktemp("framing-rec")
    f = ModuleFleet(tmp_path_factory, "framing")
    p = start_proxy(f, RecorderShip("rec", ["http:/app.*"], rec),
                    http={"max_body_size": MAX_BODY}, mothership={"compression": True},
                    static=[{"path": str(root), "prefix": "/static"}])
    p.rec = str(rec)
    yield p
    f.cleanup()


# ------------------------------------------------------------------ what reached the ship
def snapshot(px):
    """Sizes of the recorder's files now: what a test adds is read after them."""
    return {n: os.path.getsize(os.path.join(px.rec, n)) for n in os.listdir(px.rec)}


def received(px, since):
    """{file: bytes} the ship received since the snapshot (non-empty only)."""
    out = {}
    for n in sorted(os.listdir(px.rec)):
        if not n.startswith("conn-"):
            continue
        with open(os.path.join(px.rec, n), "rb") as fh:
            fh.seek(since.get(n, 0))
            d = fh.read()
        if d:
            out[n] = d
    return out


def requests_since(px, since):
    """The requests the ship parsed since the snapshot, as logged."""
    path = os.path.join(px.rec, "requests.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        fh.seek(since.get("requests.jsonl", 0))
        return [json.loads(ln) for ln in fh.read().decode().splitlines() if ln]


def sentinel(px, since):
    """Send a fresh request and wait until the ship has it: anything the
    single worker wrote upstream before it is recorded by then. Returns the
    bytes received since the snapshot, without the sentinel's own head."""
    tag = uuid.uuid4().hex
    with Raw(px.port) as c:
        c.send(raw_request("GET", f"/app/sentinel-{tag}"))
        assert c.response().status == 200
    wait_until(lambda: any(tag in r["target"] for r in requests_since(px, since)), what="the sentinel request")
    got = received(px, since)
    out = {}
    for n, d in got.items():
        d = re.sub(rb"GET /app/sentinel-" + tag.encode() + rb" HTTP/1\.1\r\n.*?\r\n\r\n", b"", d, flags=re.S)
        if d:
            out[n] = d
    return out


def heads(data):
    """Normalise the varying headers Mothership adds, for exact comparison."""
    data = re.sub(rb"X-Request-Id: [^\r]*", b"X-Request-Id: ID", data)
    return re.sub(rb"X-Request-Start: t=\d+", b"X-Request-Start: t=T", data)


def added(peer="127.0.0.1", host="test"):
    return (f"X-Forwarded-For: {peer}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: {host}\r\n"
            "X-Request-Id: ID\r\nX-Request-Start: t=T\r\n").encode()


def only_upstream_bytes(px, since):
    got = sentinel(px, since)
    assert len(got) == 1, got
    return heads(next(iter(got.values())))


# ------------------------------------------------------------------ Connection: never removes framing or Host
SMUGGLED = b"GET /app/admin HTTP/1.1\r\nHost: test\r\n\r\n"


def test_connection_content_length_keeps_the_body_a_body(px):
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/form", [("Connection", "Content-Length"),
                                                 ("Content-Length", str(len(SMUGGLED)))], SMUGGLED))
        r = c.response()
        assert r.status == 200 and r.body == b"ok /app/form\n"
        assert not c.closed(0.3), "one request, one response, the connection stays open"
    got = only_upstream_bytes(px, since)
    assert got == (b"POST /app/form HTTP/1.1\r\nHost: test\r\n" + added() +
                   f"Content-Length: {len(SMUGGLED)}\r\n\r\n".encode() + SMUGGLED)
    reqs = [q for q in requests_since(px, since) if "sentinel" not in q["target"]]
    assert [(q["method"], q["target"]) for q in reqs] == [("POST", "/app/form")]


def test_connection_transfer_encoding_keeps_chunked_framing(px):
    since = snapshot(px)
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/te", [("Connection", "Transfer-Encoding"),
                                               ("Transfer-Encoding", "chunked")], body))
        r = c.response()
        assert r.status == 200 and r.body == b"ok /app/te\n"
    got = only_upstream_bytes(px, since)
    # the body is buffered (the default), so it goes on with its length
    assert got == (b"POST /app/te HTTP/1.1\r\nHost: test\r\n" + added() +
                   b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED)


def test_connection_host_keeps_host(px):
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/host", [("Connection", "Host, X-Gone"), ("X-Gone", "1")],
                           host="front.example"))
        assert c.response().status == 200
    got = only_upstream_bytes(px, since)
    assert got == (b"GET /app/host HTTP/1.1\r\nHost: front.example\r\n" + added(host="front.example") + b"\r\n")


def test_request_framing_is_motherships_own(px):
    """The client's Content-Length is not copied: Mothership writes its own."""
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/len", [("Content-Length", "005")], b"hello"))
        assert c.response().status == 200
    got = only_upstream_bytes(px, since)
    assert got == (b"POST /app/len HTTP/1.1\r\nHost: test\r\n" + added() + b"Content-Length: 5\r\n\r\nhello")


def test_ship_connection_content_length_keeps_response_framing(px):
    """A ship naming its Content-Length in Connection: the response is still
    framed, and the next pipelined request gets its own response."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/one?connhdr=Content-Length") + raw_request("GET", "/app/two"))
        r1 = c.response()
        assert r1.status == 200
        assert r1.header("content-length") == str(len(r1.body)) and r1.body == b"ok /app/one?connhdr=Content-Length\n"
        assert r1.header("connection") is None
        r2 = c.response()
        assert r2.status == 200 and r2.body == b"ok /app/two\n"
        assert not c.closed(0.3)


def test_ship_connection_transfer_encoding_keeps_response_framing(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/one?connhdr=Transfer-Encoding,Content-Length") +
               raw_request("GET", "/app/two"))
        r1 = c.response()
        assert r1.status == 200 and r1.body == b"ok /app/one?connhdr=Transfer-Encoding,Content-Length\n"
        assert r1.header("content-length") == str(len(r1.body))
        r2 = c.response()
        assert r2.status == 200 and r2.body == b"ok /app/two\n"


def test_compressed_response_head_is_rewritten_whole(px):
    """A response head near the 16 KiB a ship may send, compressed: the
    strong ETag made weak, a long Vary extended, every header kept whole
    (nothing cut to fit a fixed reserve)."""
    vary = "X-" + "v" * 1200
    filler = "f" * 200
    q = (f"size=4096&hdr=Vary:{vary}:1&hdr=ETag:\"abc\":1&hdr=X-Fill:{filler}:60")
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/big?" + q, [("Accept-Encoding", "gzip")]))
        r = c.response()
        assert r.status == 200
        assert r.header("content-encoding") == "gzip"
        assert r.header("vary") == vary + ", Accept-Encoding"
        assert r.header("etag") == 'W/"abc"'
        assert [r.header(f"x-fill{i}") for i in range(60)] == [filler] * 60
        assert zlib.decompress(r.body, 47).startswith(b"ok /app/big?")
        c.send(raw_request("GET", "/app/next"))
        assert c.response().body == b"ok /app/next\n"


BIG_HEAD_Q = "size=16&hdr=X-Fill:" + "f" * 1000 + ":20"   # a ship's head of about 20 KiB


def test_response_head_over_max_response_header_size_is_502(px, fleet, tmp_path):
    """max_response_header_size bounds a ship's response head: 16 KiB by
    default (a 20 KiB head is a 502, and the connection goes on), more when
    set."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/bighead?" + BIG_HEAD_Q))
        r = c.response()
        assert r.status == 502, r
        assert b"max_response_header_size" in r.body, r.body
    rec = tmp_path / "rec"
    rec.mkdir()
    p32 = start_proxy(fleet, RecorderShip("rec", ["http:/app.*"], rec), http={"max_response_header_size": "32KiB"})
    with Raw(p32.port) as c:
        c.send(raw_request("GET", "/app/bighead?" + BIG_HEAD_Q))
        r = c.response()
        assert r.status == 200, r
        assert [r.header(f"x-fill{i}") for i in range(20)] == ["f" * 1000] * 20
        c.send(raw_request("GET", "/app/next"))
        assert c.response().body == b"ok /app/next\n"


# ------------------------------------------------------------------ Transfer-Encoding / Content-Length forms
REFUSED = [
    # (id, request bytes, status)
    ("te-xchunked", raw_request("POST", "/app/x", [("Transfer-Encoding", "xchunked")], b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-chunked-identity", raw_request("POST", "/app/x", [("Transfer-Encoding", "chunked, identity")],
                                        b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-chunked-tab", raw_request("POST", "/app/x", [("Transfer-Encoding", "chunked\t")], b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-tab-chunked", b"POST /app/x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("te-two-spaces", b"POST /app/x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("te-identity", raw_request("POST", "/app/x", [("Transfer-Encoding", "identity")], b"hello"), 400),
    ("te-two-headers", raw_request("POST", "/app/x", [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")],
                                   b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-two-chunked", raw_request("POST", "/app/x", [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
                                   b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("te-http10", raw_request("POST", "/app/x", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n",
                              version="HTTP/1.0"), 400),
    ("te-gzip-chunked", raw_request("POST", "/app/x", [("Transfer-Encoding", "gzip, chunked")], b"5\r\nhello\r\n0\r\n\r\n"), 501),
    ("te-and-cl", raw_request("POST", "/app/x", [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                              b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("cl-twice-equal", raw_request("POST", "/app/x", [("Content-Length", "5"), ("Content-Length", "5")], b"hello"), 400),
    ("cl-list", raw_request("POST", "/app/x", [("Content-Length", "5, 5")], b"hello"), 400),
    ("cl-not-digits", raw_request("POST", "/app/x", [("Content-Length", "+5")], b"hello"), 400),
    ("cl-hex", raw_request("POST", "/app/x", [("Content-Length", "0x5")], b"hello"), 400),
]


@pytest.mark.parametrize("req,status", [(r, s) for _, r, s in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_doubtful_framing_is_refused_before_anything_goes_upstream(px, req, status):
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(req)
        r = c.response()
        assert r.status == status, r
        assert r.header("connection") == "close"
        assert c.closed()
    assert sentinel(px, since) == {}, "nothing of a refused request reaches the ship"


def test_chunked_request_is_reframed(px):
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/ch", [("Transfer-Encoding", "Chunked")],
                           b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"))
        r = c.response()
        assert r.status == 200
    got = only_upstream_bytes(px, since)
    # buffered (the default): extensions and trailers dropped, the length known
    assert got == (b"POST /app/ch HTTP/1.1\r\nHost: test\r\n" + added() +
                   b"Content-Length: 5\r\n\r\nabcde")


BAD_CHUNKS = [
    ("size-not-hex", b"5\r\nhello\r\nzz\r\n"),
    ("no-crlf-after-data", b"5\r\nhelloXX0\r\n\r\n"),
    ("bare-lf-after-data", b"5\r\nhello\n0\r\n\r\n"),
    ("cr-without-lf", b"5\rXhello\r\n0\r\n\r\n"),
    ("size-overflow", b"5\r\nhello\r\n11111111111111111\r\n"),
    ("junk-in-last-chunk", b"5\r\nhello\r\n0\r\nX\n\r\n"),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_CHUNKS], ids=[i for i, _ in BAD_CHUNKS])
def test_bad_chunk_never_completes_the_request_upstream(px, body):
    """A bad chunk (streamed): 400, and the ship never sees a complete
    request (its connection is closed without the terminating chunk)."""
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/badchunk", [("Transfer-Encoding", "chunked")], body))
        r = c.response()
        assert r.status == 400, r
        assert c.closed()
    got = sentinel(px, since)
    for n, d in got.items():
        assert not d.endswith(b"0\r\n\r\n"), d
    reqs = [q for q in requests_since(px, since) if "sentinel" not in q["target"]]
    assert reqs == [], "the ship never parsed a complete request"


# ------------------------------------------------------------------ Upgrade other than websocket
H2C = [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]


def test_h2c_upgrade_is_served_from_static_dirs(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/static/hello.txt", H2C))
        r = c.response()
        assert r.status == 200 and r.body == b"static hello\n"
        assert r.header("upgrade") is None
        c.send(raw_request("GET", "/static/hello.txt"))
        assert c.response().body == b"static hello\n"


def test_h2c_upgrade_is_not_forwarded_to_ships(px):
    since = snapshot(px)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/h2c", H2C))
        r = c.response()
        assert r.status == 200 and r.body == b"ok /app/h2c\n"
        c.send(raw_request("GET", "/app/after"))
        assert c.response().body == b"ok /app/after\n"
    got = heads(b"".join(sentinel(px, since).values()))
    assert got == (b"GET /app/h2c HTTP/1.1\r\nHost: test\r\n" + added() + b"\r\n" +
                   b"GET /app/after HTTP/1.1\r\nHost: test\r\n" + added() + b"\r\n")


# ------------------------------------------------------------------ lingering close after 413 / 400
BIG = 10 << 20
MID = 3 << 20   # over max_body_size, within what a lingering close reads and discards


def upload_then_read(px, head, body_chunks):
    """A client that writes its whole request before reading (as simple
    clients do). Returns (response, the error that stopped the upload or
    None, how the connection ended: "eof" or "reset")."""
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    send_error = None
    try:
        s.sendall(head)
        for ch in body_chunks:
            s.sendall(ch)
    except OSError as e:
        send_error = e  # Mothership stopped reading
    c = Raw.wrap(s)
    try:
        r = c.response()
        try:
            end = "eof" if s.recv(65536) == b"" else "data"
        except ConnectionResetError:
            end = "reset"
        return r, send_error, end
    finally:
        c.close()


def chunks(total, size=65536, chunked=False):
    block = b"x" * size
    left = total
    while left > 0:
        n = min(size, left)
        left -= n
        yield (b"%x\r\n" % n + block[:n] + b"\r\n") if chunked else block[:n]
    if chunked:
        yield b"0\r\n\r\n"


def closed_conns(px):
    path = os.path.join(px.rec, "closed.txt")
    if not os.path.exists(path):
        return set()
    with open(path) as fh:
        return set(fh.read().split())


def test_413_by_content_length_lingers_for_the_upload(px):
    """The response is written, the write side shut, the rest of the upload
    read and discarded: the client finishes sending, reads the whole 413,
    and the connection ends with a FIN, never a reset."""
    since = snapshot(px)
    head = raw_request("POST", "/app/upload", [("Content-Length", str(MID))])
    r, send_error, end = upload_then_read(px, head, chunks(MID))
    assert r.status == 413 and b"max_body_size" in r.body and r.header("connection") == "close"
    assert send_error is None
    assert end == "eof"
    assert sentinel(px, since) == {}


def test_413_by_chunked_body_lingers_for_the_upload(px):
    since = snapshot(px)
    head = raw_request("POST", "/app/upload", [("Transfer-Encoding", "chunked")])
    r, send_error, end = upload_then_read(px, head, chunks(MID, chunked=True))
    assert r.status == 413 and b"max_body_size" in r.body
    assert send_error is None
    assert end == "eof"
    # what was streamed up to the limit: the ship's connection is closed without the last chunk
    wait_until(lambda: set(received(px, since)) <= closed_conns(px), what="the upstream connection to close")
    got = received(px, since)
    assert all(not d.endswith(b"0\r\n\r\n") for d in got.values())
    assert sum(len(d) for d in got.values()) < MAX_BODY + 64 * 1024


def test_400_lingers_for_the_upload(px):
    since = snapshot(px)
    head = raw_request("POST", "/app/upload", [("Transfer-Encoding", "xchunked")])
    r, send_error, end = upload_then_read(px, head, chunks(MID))
    assert r.status == 400
    assert send_error is None
    assert end == "eof"
    assert sentinel(px, since) == {}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_413_reaches_a_client_uploading_ten_megabytes(px, chunked):
    """Past the lingering budget the connection is closed, but only long
    after the response: the client still reads all of it."""
    since = snapshot(px)
    head = raw_request("POST", "/app/upload", [("Transfer-Encoding", "chunked")] if chunked
                       else [("Content-Length", str(BIG))])
    r, _, _ = upload_then_read(px, head, chunks(BIG, chunked=chunked))
    assert r.status == 413 and b"max_body_size" in r.body
    if chunked:
        wait_until(lambda: set(received(px, since)) <= closed_conns(px), what="the upstream connection to close")


def test_lingering_connection_ends_with_the_client(px):
    """The linger ends when the client closes: nothing is left open."""
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/x", [("Content-Length", str(BIG))]) + b"x" * 1000)
        r = c.response()
        assert r.status == 413
        assert c.closed(), "the write side is shut after the response"
    wait_until(lambda: _open_conns(px) == 0, what="the lingering connection to close")


def test_lingering_ends_after_a_quiet_client(px):
    """A client that keeps the connection open and sends nothing more: the
    lingering close gives up after its quiet time (2 s)."""
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/app/x", [("Content-Length", str(BIG))]) + b"x" * 1000)
        assert c.response().status == 413
        wait_until(lambda: _open_conns(px) == 0, timeout=6, what="the quiet lingering connection to close")


def _open_conns(px):
    for line in px.metrics_text().splitlines():
        if line.startswith("mothership_http_connections_open"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no mothership_http_connections_open gauge")


@pytest.mark.parametrize("name", ["Transfer-Encodingx", "transfer-encodingre", "Content-Lengthx", "Connections",
                                  "Upgrade-Insecure"])
def test_ship_header_that_starts_like_framing(px, name):
    """A ship's header whose name starts with a framing header's and goes on
    (http-parser takes some for the framing header itself): the response
    head is read as http-parser reads it, never by the quick reading of
    common heads (resp_scan.c), so what the client gets does not depend on
    which reading ran; the next request on the connection is unaffected."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", f"/app/odd?hdr={name}:v:1"))
        r = c.response()
    if name.lower().startswith("transfer-encoding"):
        assert r.status == 502  # http-parser: a Transfer-Encoding and a Content-Length
    else:
        assert r.status == 200 and r.body == b"ok /app/odd?hdr=" + name.encode() + b":v:1\n"
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/after"))
        r = c.response()
        assert r.status == 200 and r.body == b"ok /app/after\n"
