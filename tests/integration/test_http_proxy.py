"""Data plane, reverse proxy to a real backend (apps/echo_backend.py):
header rewriting both ways (hop-by-hop headers removed, X-Forwarded-*,
X-Request-Id kept when valid else generated, X-Request-Start, Server passed
through, no Via), request bodies (Content-Length and chunked, 5 MB streamed,
byte for byte), responses re-framed (chunked, close-delimited, to HTTP/1.0
clients), large responses, HEAD, 204, pipelining, Expect: 100-continue and
WebSocket upgrade tunnelling."""
import asyncio
import hashlib
import os
import re
import time

import pytest
import requests

from http_helpers import ModuleFleet, Raw, echo_ship, raw_request, start_proxy

PATTERN = bytes(i % 251 for i in range(251))


def pattern(n):
    return (PATTERN * (n // 251 + 1))[:n]


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "proxy")
    p = start_proxy(f, echo_ship("app", routes=[{"bind": "http", "pattern": "/stream/.*", "request_buffering": False},
                                                "http:/.*"]))
    yield p
    f.cleanup()


def hdrs(j):
    """The headers the backend received, {lowercase name: [values]}."""
    out = {}
    for k, v in j["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def one(px, method, path, headers=None, body=b"", version="HTTP/1.1", host="front.example"):
    with Raw(px.port) as c:
        c.send(raw_request(method, path, headers, body, version, host))
        return c.response(head_only=method == "HEAD")


# ------------------------------------------------------------------ request headers
def test_hop_by_hop_request_headers_are_removed(px):
    r = one(px, "GET", "/h", [
        ("Connection", "keep-alive, X-Hop-Req"),
        ("X-Hop-Req", "must-not-pass"),
        ("Keep-Alive", "timeout=300"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Foo"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("X-End-To-End", "kept"),
        ("Authorization", "Bearer abc"),
    ])
    assert r.status == 200, r
    h = hdrs(r.json())
    for gone in ["connection", "x-hop-req", "keep-alive", "proxy-connection", "te", "trailer",
                 "proxy-authorization", "transfer-encoding"]:
        assert gone not in h, (gone, h)
    assert h["x-end-to-end"] == ["kept"]
    assert h["authorization"] == ["Bearer abc"]
    assert h["host"] == ["front.example"]


def test_x_forwarded_headers(px):
    h = hdrs(one(px, "GET", "/f").json())
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["front.example"]
    # appended to a client's X-Forwarded-For; -Proto and -Host are ours, not the client's
    h = hdrs(one(px, "GET", "/f", [("X-Forwarded-For", "10.1.2.3"), ("X-Forwarded-Proto", "https"),
                                   ("X-Forwarded-Host", "evil.example")]).json())
    assert h["x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["front.example"]


@pytest.mark.parametrize("rid", ["abc-123", "0f8e2c1a-5b7d-4c8e-9a3f-2b1c0d9e8f7a", "a.b_c:d+e/f=",
                                 "x" * 47, "x" * 48, "f" * 64, "x" * 128],
                         ids=["short", "uuid", "punct", "47", "48", "sha256-hex", "128"])
def test_valid_request_id_is_kept(px, rid):
    """docs/proxy.md: kept when valid, 1-128 characters."""
    h = hdrs(one(px, "GET", "/r", [("X-Request-Id", rid)]).json())
    assert h["x-request-id"] == [rid]


@pytest.mark.parametrize("bad", ["has space", "<script>", "x" * 129, "semi;colon", "quote\"d", "\u00e9t\u00e9"])
def test_invalid_request_id_is_replaced(px, bad):
    h = hdrs(one(px, "GET", "/r", [("X-Request-Id", bad)]).json())
    assert len(h["x-request-id"]) == 1
    got = h["x-request-id"][0]
    assert got != bad
    assert re.fullmatch(r"[0-9a-f]{16,64}", got), got


def test_generated_request_ids_are_unique(px):
    ids = set()
    with requests.Session() as s:
        for _ in range(50):
            ids.add(hdrs(s.get(px.url("/u"), timeout=5).json())["x-request-id"][0])
    assert len(ids) == 50


def test_x_request_start_is_the_arrival_time_in_microseconds(px):
    before = time.time()
    h = hdrs(one(px, "GET", "/t", [("X-Request-Start", "t=1")]).json())
    after = time.time()
    assert len(h["x-request-start"]) == 1, "the client's X-Request-Start must be replaced"
    m = re.fullmatch(r"t=(\d+)", h["x-request-start"][0])
    assert m, h["x-request-start"]
    t = int(m.group(1)) / 1e6
    assert before - 1.0 <= t <= after + 1.0, (before, t, after)


# ------------------------------------------------------------------ response headers
def test_hop_by_hop_response_headers_are_removed_and_server_passes(px):
    r = one(px, "GET", "/resp?hop=1")
    assert r.status == 200
    names = [k.lower() for k, _ in r.headers]
    assert "keep-alive" not in names, r.headers
    assert "proxy-connection" not in names, r.headers
    assert r.header("x-end-to-end") == "kept"
    assert r.header("server") == "echo-backend"
    assert r.header("via") is None
    assert names.count("date") == 1
    assert "x-hop-resp" not in names, \
        f"a header named in the upstream's Connection header was passed to the client: {r.headers}"


def test_reason_phrase_and_status_pass_through(px):
    r = one(px, "GET", "/s?status=418")
    assert r.status == 418 and r.reason == "Status418"
    assert r.json()["path"] == "/s"


def test_204_and_304_from_upstream_keep_the_connection(px):
    with Raw(px.port) as c:
        for st in (204, 304, 200):
            c.send(raw_request("GET", f"/n?status={st}"))
            r = c.response()
            assert r.status == st
            if st != 200:
                assert r.body == b"" and r.header("transfer-encoding") is None


# ------------------------------------------------------------------ request bodies
def test_content_length_body_byte_for_byte(px):
    body = os.urandom(100_000)
    r = requests.post(px.url("/echo?echo=1"), data=body, timeout=10)
    assert r.status_code == 200 and r.content == body


def test_chunked_request_body_is_passed_chunked(px):
    """On a route that streams bodies (request_buffering = false); buffered
    ones are re-framed with Content-Length (test_http_bodies.py)."""
    with Raw(px.port) as c:
        c.send(b"POST /stream/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\n\r\n")
        r = c.response()
    j = r.json()
    assert r.status == 200
    assert j["chunked"] is True and j["body"] == "hello, world"
    assert "content-length" not in hdrs(j)


def test_no_interim_response_goes_to_an_http_1_0_client(px):
    """A streamed route passes Expect on, and the ship answers 100 Continue
    first: an HTTP/1.0 client must not get a 1xx (RFC 9110 15.2), which it
    would take for the whole answer; it gets the final response only."""
    with Raw(px.port) as c:
        c.send(b"POST /stream/old HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\nhello")
        r = c.response()
        assert r.status == 200 and r.json()["body"] == "hello", r


def test_five_megabytes_streamed_chunked_byte_for_byte(px):
    data = os.urandom(5 * 1024 * 1024)

    def gen():
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    r = requests.post(px.url("/up?echo=1"), data=gen(), timeout=30)
    assert r.status_code == 200
    assert len(r.content) == len(data)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()


def test_five_megabytes_with_content_length(px):
    data = os.urandom(5 * 1024 * 1024)
    r = requests.put(px.url("/up"), data=data, timeout=30)
    j = r.json()
    assert j["body_len"] == len(data) and j["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert j["chunked"] is False


def test_five_megabytes_down_byte_for_byte(px):
    n = 5 * 1024 * 1024 + 3
    for q in ("", "&chunked=1"):
        r = requests.get(px.url(f"/down?size={n}{q}"), timeout=30)
        assert r.status_code == 200 and r.content == pattern(n), q


# ------------------------------------------------------------------ response framing
def test_chunked_response_is_reframed(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ch?chunked=1&size=100000"))
        r = c.response()
        assert r.chunked and r.header("content-length") is None
        assert r.body == pattern(100000)
        # and the connection goes on
        c.send(raw_request("GET", "/after"))
        assert c.response().json()["path"] == "/after"


def test_close_delimited_response_becomes_chunked_for_http11(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/eof?eof=1&size=70000"))
        r = c.response()
        assert r.chunked, r.headers
        assert r.body == pattern(70000)
        c.send(raw_request("GET", "/after"))
        assert c.response().json()["path"] == "/after"


@pytest.mark.parametrize("q", ["chunked=1&size=50000", "eof=1&size=50000", "size=50000"])
def test_http10_client_gets_no_chunking(px, q):
    with Raw(px.port) as c:
        c.send(raw_request("GET", f"/old?{q}", version="HTTP/1.0", host=None))
        r = c.response()
        assert r.header("transfer-encoding") is None, r.headers
        assert r.body == pattern(50000)
        assert c.closed(3), "an HTTP/1.0 connection without keep-alive must be closed"


def test_http10_keep_alive_with_length(px):
    with Raw(px.port) as c:
        for i in range(2):
            c.send(raw_request("GET", f"/k{i}?size=10", [("Connection", "keep-alive")], version="HTTP/1.0",
                               host=None))
            r = c.response()
            assert r.body == pattern(10)
            assert (r.header("connection") or "").lower() == "keep-alive"


def test_head_through_the_proxy(px):
    with Raw(px.port) as c:
        c.send(raw_request("HEAD", "/hd?size=1000"))
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("content-length") == "1000"
        c.send(raw_request("GET", "/after"))
        assert c.response().json()["path"] == "/after"


# ------------------------------------------------------------------ pipelining
def test_three_pipelined_requests_are_answered_in_order(px):
    reqs = (raw_request("GET", "/p1?delay=150")
            + raw_request("POST", "/p2", [("Content-Length", "4")], b"body")
            + raw_request("GET", "/p3"))
    with Raw(px.port) as c:
        c.send(reqs)
        got = [c.response().json() for _ in range(3)]
    assert [g["path"] for g in got] == ["/p1", "/p2", "/p3"]
    assert got[1]["body"] == "body"


def test_pipelined_mix_of_local_and_proxied_answers(px):
    reqs = (raw_request("GET", "/q1?delay=100") + raw_request("GET", "/q2?status=404")
            + raw_request("GET", "/q3") + raw_request("HEAD", "/q4?size=5") + raw_request("GET", "/q5"))
    with Raw(px.port) as c:
        c.send(reqs)
        out = []
        for i in range(5):
            r = c.response(head_only=(i == 3))
            out.append((r.status, r.json()["path"] if r.body else None))
    assert out == [(200, "/q1"), (404, "/q2"), (200, "/q3"), (200, None), (200, "/q5")]


# ------------------------------------------------------------------ Expect: 100-continue
def test_expect_100_continue(px):
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/e", [("Content-Length", "11"), ("Expect", "100-continue")]))
        interim = c.response(head_only=True)
        assert interim.status == 100, interim
        c.send(b"hello world")
        r = c.response()
        assert r.status == 200 and r.json()["body"] == "hello world"


def test_curl_large_post_uses_100_continue(px, tmp_path):
    import subprocess
    data = os.urandom(2 * 1024 * 1024)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    out = subprocess.run(["curl", "-sS", "--data-binary", f"@{f}", "-H", "Expect: 100-continue",
                          "-H", "Content-Type: application/octet-stream", px.url("/curl")],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    import json
    j = json.loads(out.stdout)
    assert j["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_unsupported_expectation_is_417(px):
    r = one(px, "POST", "/e", [("Content-Length", "0"), ("Expect", "something-else")])
    assert r.status == 417


# ------------------------------------------------------------------ upgrade tunnel
def test_websocket_through_the_tunnel(px):
    import websockets

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{px.port}/ws", max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            blob = os.urandom(200_000)
            await ws.send(blob)
            assert await ws.recv() == blob
            for i in range(20):
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(20)] == [f"m{i}" for i in range(20)]
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, 5)

    asyncio.run(asyncio.wait_for(talk(), 20))


def test_upgrade_handshake_headers_and_bytes_after_the_head(px):
    """The client's first frame in the same packet as the head still arrives."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    frame = bytes([0x81, 0x80 | 3]) + b"\0\0\0\0" + b"abc"      # masked (zero mask) text "abc"
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]) + frame)
        r = c.response(head_only=True)
        assert r.status == 101, r
        assert (r.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (r.header("connection") or "").lower()
        while len(c.buf) < 5:
            c._fill()
        assert c.buf[:5] == bytes([0x81, 3]) + b"abc"


def test_the_body_of_an_upgrade_request_reaches_the_ship_once(px):
    """An upgrade request with a body (Content-Length), in one packet with
    what follows it: the body goes up as the request's body, and after the
    101 the tunnel carries what came after it, not the body a second time.
    (The echo ship reads everything after the head as frames.)"""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    body = bytes([0x81, 0x80 | 3]) + b"\0\0\0\0" + b"abc"  # masked (zero mask) text frames
    after = bytes([0x81, 0x80 | 3]) + b"\0\0\0\0" + b"def"
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
                                          ("Content-Length", str(len(body)))]) + body + after)
        r = c.response(head_only=True)
        assert r.status == 101, r
        c.send(bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x03\xe8")  # close: the ship answers it and hangs up
        assert c.closed(timeout=5)
        assert c.buf == bytes([0x81, 3]) + b"abc" + bytes([0x81, 3]) + b"def" + bytes([0x88, 2]) + b"\x03\xe8"


def test_upgrade_refused_by_the_backend_is_a_normal_response(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/not-ws", [("Upgrade", "foo/1"), ("Connection", "Upgrade")]))
        r = c.response()
        assert r.status == 200 and r.json()["path"] == "/not-ws"


def test_tunnel_carries_bytes_both_ways_after_101(px):
    """The tunnel itself, whatever happens to the Upgrade header on the way:
    /ws?force=1 makes the backend switch protocols on any GET that asks to upgrade."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws?force=1", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                  ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                  ("Sec-WebSocket-Version", "13")]))
        r = c.response(head_only=True)
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        big = os.urandom(100_000)
        for payload in (b"ping-1", big):
            mask = os.urandom(4)
            n = len(payload)
            hd = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
            c.send(hd + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            want = bytes([0x82]) + (bytes([n]) if n < 126 else bytes([127]) + n.to_bytes(8, "big")) + payload
            got = c._exact(len(want))
            assert got == want
        # close: the backend answers the close frame and hangs up; so does Mothership
        c.send(bytes([0x88, 0x82]) + b"\0\0\0\0" + b"\x03\xe8")
        assert c._exact(4) == bytes([0x88, 2, 0x03, 0xe8])
        assert c.closed(3)
