"""HTTP bays (docking v3) through the real binary: clients (raw sockets,
http.client, websockets, nghttp, curl over TLS) -> Mothership -> links ->
examples/bays/http_bay.py serving apps/hbay_app.py, or apps/hostile_hbay.py
breaking the protocol on purpose, or an app the test starts itself behind
[[mothership.upstreams]].

Covers: GET, HEAD, 204/304, POST of 0 B / 1 KiB / 50 MiB, chunked uploads,
Expect: 100-continue, pipelining, the CGI params a bay gets (SCRIPT_NAME
from strip_prefix, PATH_INFO as sent, joined and spoofing headers, binary
values), two Set-Cookie, binary-safe response headers (NUL refused),
streamed and large responses, a bay's Content-Length enforced and its
framing headers dropped, file replies (inside the roots; outside them,
through a symlink, a FIFO or a directory: 502, nothing leaked, no worker
stuck), a WebSocket echo through a tunnel over HTTP/1.1 and HTTP/2, a
tunnel nobody asked for, HTTP/2 and TLS clients, a bay that exits or
closes mid-stream (the client's response is aborted) and is reached again
after its restart, a bay that never sends READY (the next request waits,
then 504), a bay that never replies (504), garbage and every other
protocol violation (502 or an aborted response, the error counted), links
that break before the REPLY (GET retried once, POST not), the queue full
(503 + Retry-After), request ids per link, forked bay workers, forty
clients over two Mothership workers, a stop and a reload of Mothership,
the per-bay and per-route metrics, and upstreams speaking docking and
HTTP. Each hostile case checks what the
client got and what reached the bay."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import asyncio

import pytest
import websockets

from fleet_helpers import PY, app, free_port, toml_str
from hbay_helpers import (APPS, HTTP_BAY, QUEUE_DEPTH, bay_log, bay_total, hails,
                          hbay_toml, hostile_toml, start_bays, upstream_toml)
from http_helpers import Raw, metric, msum, raw_request, short_tmpdir, wait_until
from tls_helpers import make_cert

ECHO = app("echo_backend.py")



def request(px, method, path, headers=None, body=b"", version="HTTP/1.1", port=None, head_only=False):
    with Raw(port or px.port, timeout=20) as c:
        c.send(raw_request(method, path, headers, body, version))
        return c.response(head_only=head_only or method == "HEAD")


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# ------------------------------------------------------------------ one fleet for the good app
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("hbaysite")
    (d / "pub.bin").write_bytes(os.urandom(300_000))
    (d / "sub").mkdir()
    (d / "sub" / "inner.txt").write_bytes(b"inner file\n")
    secret = secret_of(d)
    secret.write_bytes(b"TOP-SECRET-CONTENT\n")
    os.symlink(str(secret), str(d / "escape.txt"))
    return d


def secret_of(site):
    """A file next to the site, outside the bay's roots."""
    return site.parent / (site.name + "-secret.txt")


@pytest.fixture(scope="module")
def px(tmp_path_factory, site):
    from http_helpers import ModuleFleet
    certs = tmp_path_factory.mktemp("hbaycerts")
    crt, key = make_cert(certs, "server", names=("localhost", "127.0.0.1"))
    log = tmp_path_factory.mktemp("hbaylog") / "app.log"
    tls = f"[mothership.tls]\ncert = {toml_str(crt)}\nkey = {toml_str(key)}\n"
    f = ModuleFleet(tmp_path_factory, "hbays")
    bay = hbay_toml("web", cwd=str(site), env={"HBAY_APP_LOG": str(log)}, threads=2,
                    routes=[{"bind": "http", "pattern": "/app/.*", "strip_prefix": "/app"},
                            "http:/.*", "tls:/.*"])
    p = start_bays(f, bay, binds={"http": {"port": free_port(), "h2c": True},
                                  "tls": {"port": free_port(), "tls": True}}, extra=tls)
    p.crt = crt
    p.log = log
    yield p
    f.cleanup()


def app_log(px, want=None):
    return bay_log(px.log, want=want)


def test_get(px):
    r = request(px, "GET", "/")
    assert (r.status, r.body) == (200, b"hello")
    assert r.header("content-length") == "5"
    assert r.header("date")


def test_head_has_the_head_and_no_body(px):
    with Raw(px.port) as c:
        c.send(raw_request("HEAD", "/big/1000"))
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("content-length") == "1000"
        c.send(raw_request("GET", "/"))      # the next response follows at once: no body bytes between
        assert c.response().body == b"hello"
    assert any(e["method"] == "HEAD" and e["path"] == "/big/1000" for e in app_log(px))


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(px, status):
    with Raw(px.port) as c:
        c.send(raw_request("GET", f"/status/{status}"))
        r = c.response()
        assert r.status == status and r.header("x-status") == "set"
        assert r.header("content-length") is None and r.header("transfer-encoding") is None
        c.send(raw_request("GET", "/"))
        assert c.response().body == b"hello"


@pytest.mark.parametrize("size", [0, 1024, 50 << 20], ids=["0B", "1KiB", "50MiB"])
def test_post_bodies(px, size):
    body = pattern(size)
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=120)
    conn.request("POST", "/env", body=body, headers={"Content-Type": "application/x-test"})
    r = conn.getresponse()
    out = r.read()
    conn.close()
    assert r.status == 200, out[:300]
    env = json.loads(out)
    assert env["_body_len"] == str(size)
    assert env["_body_sha256"] == hashlib.sha256(body).hexdigest()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-test"
    if size:
        assert env["CONTENT_LENGTH"] == str(size)
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env


def test_chunked_upload_arrives_whole_with_its_length(px):
    chunks = [b"a" * 1000, b"b" * 70000, b"c" * 3]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    r = request(px, "POST", "/env", {"Transfer-Encoding": "chunked"}, wire)
    env = r.json()
    data = b"".join(chunks)
    assert env["_body_len"] == str(len(data))
    assert env["_body_sha256"] == hashlib.sha256(data).hexdigest()
    assert env["CONTENT_LENGTH"] == str(len(data))
    assert "HTTP_TRANSFER_ENCODING" not in env


def test_cgi_params(px):
    headers = [("Host", "example.org:8080"), ("X-Dup", "a"), ("X-Dup", "b"), ("Cookie", "c1=1"),
               ("Cookie", "c2=2"), ("X_Spoof", "evil"), ("X-Request-Id", "client-id"),
               ("Connection", "keep-alive, X-Hop"), ("X-Hop", "gone"), ("Accept", "*/*")]
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/env/a%20b/c?q=1&r=%2F", headers, host=None))
        r = c.response()
    assert r.status == 200, r
    env = r.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/env/a%20b/c"
    assert env["QUERY_STRING"] == "q=1&r=%2F"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.org", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
    assert env["SERVER_SOFTWARE"].startswith("mothership/")
    assert env["HTTP_X_DUP"] == "a, b"
    assert env["HTTP_COOKIE"] == "c1=1; c2=2"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["HTTP_HOST"] == "example.org:8080"
    assert "HTTP_X_SPOOF" not in env                   # '_' in a header name: left out
    assert "HTTP_CONNECTION" not in env and "HTTP_X_HOP" not in env
    assert env["HTTP_X_FORWARDED_FOR"].endswith("127.0.0.1")
    assert env["HTTP_X_FORWARDED_PROTO"] == "http"
    assert env.get("HTTP_X_REQUEST_ID")
    assert "HTTPS" not in env
    assert "CONTENT_LENGTH" not in env


def test_query_string_empty_and_http10(px):
    r = request(px, "GET", "/env", version="HTTP/1.0")
    env = r.json()
    assert env["QUERY_STRING"] == "" and env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_binary_request_header_arrives_as_is(px):
    r = request(px, "GET", "/env", [("X-Bin", "a\xffb\x80")])
    assert r.json()["HTTP_X_BIN"] == "a\xffb\x80"


def test_two_set_cookie(px):
    r = request(px, "GET", "/cookies")
    assert r.all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.body == b"ok"


def test_binary_response_header_value_passes(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/header?v=61ff62"))
        r = c.response()
    assert r.status == 200 and b"\r\nX-Value: a\xffb" in r.raw_head.encode("latin-1")


def test_response_header_with_nul_is_502_and_counted(px):
    before = bay_total(px, "protocol_error", "web")
    r = request(px, "GET", "/header?v=610062")
    assert r.status == 502
    assert b"\x00" not in r.raw_head.encode("latin-1")
    wait_until(lambda: bay_total(px, "protocol_error", "web") > before, what="a protocol error counted")
    assert request(px, "GET", "/").status == 200      # another link serves on


def test_large_streamed_response(px):
    n = 3_000_017
    r = request(px, "GET", f"/big/{n}")
    assert r.status == 200 and r.header("content-length") == str(n)
    assert r.body == pattern(n)


def test_stream_without_length_is_chunked_to_http11_and_closed_for_http10(px):
    want = b"".join(b"chunk %d\n" % i for i in range(50))
    r = request(px, "GET", "/stream/50")
    assert r.chunked and r.body == want
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/stream/50", version="HTTP/1.0"))
        r = c.response()
        assert r.body == want and r.header("transfer-encoding") is None


def test_file_reply(px, site):
    r = request(px, "GET", "/file/pub.bin")
    assert r.status == 200
    assert r.body == (site / "pub.bin").read_bytes()
    assert r.header("content-length") == str(300_000)
    r = request(px, "GET", "/file/sub/inner.txt")
    assert r.body == b"inner file\n"


@pytest.mark.parametrize("target", ["escape.txt", "SECRET"], ids=["symlink-out", "absolute-outside"])
def test_file_outside_the_roots_is_502_and_nothing_leaks(px, site, target):
    url = "/file/" + target
    if target == "SECRET":
        target = str(secret_of(site))
        url = "/fileabs?p=" + urllib.parse.quote(target, safe="")
    before = bay_total(px, "protocol_error", "web")
    with Raw(px.port) as c:
        c.send(raw_request("GET", url))
        r = c.response()
        rest = c.read_all(timeout=0.5)
    assert r.status == 502
    assert b"TOP-SECRET" not in r.body and b"TOP-SECRET" not in rest
    wait_until(lambda: bay_total(px, "protocol_error", "web") > before, what="a protocol error counted")
    assert any(e["path"] == url.split("?")[0] for e in app_log(px))


def test_websocket_echo_through_a_tunnel(px):
    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{px.port}/ws") as ws:
            await ws.send("hello bay")
            assert await ws.recv() == "hello bay"
            blob = os.urandom(100_000)
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.close()
    asyncio.run(asyncio.wait_for(go(), 30))
    assert request(px, "GET", "/").status == 200        # links go on after the tunnel


def test_websocket_over_tls_through_a_tunnel(px):
    import ssl
    ctx = ssl.create_default_context(cafile=px.crt)

    async def go():
        async with websockets.connect(f"wss://localhost:{px.binds['tls']}/ws", ssl=ctx) as ws:
            for i in range(3):
                await ws.send(f"secure {i}")
                assert await ws.recv() == f"secure {i}"
    asyncio.run(asyncio.wait_for(go(), 30))


def test_websocket_over_http2_through_a_tunnel(px):
    """RFC 8441: an extended CONNECT on an h2c connection becomes an upgrade
    the bay answers with a tunnel; the echo comes back as DATA frames."""
    from test_h2 import ws_over_h2
    ws_over_h2(px, "/ws")


def test_http2_client_through_nghttp(px, tmp_path):
    if not shutil.which("nghttp"):
        pytest.skip("nghttp is not installed")
    out = subprocess.run(["nghttp", f"http://127.0.0.1:{px.port}/env?h2=1"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert env["SERVER_PROTOCOL"] == "HTTP/2" and env["QUERY_STRING"] == "h2=1"
    data = tmp_path / "up.bin"
    data.write_bytes(pattern(200_000))
    out = subprocess.run(["nghttp", "-d", str(data), f"http://127.0.0.1:{px.port}/echo"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == pattern(200_000)


def test_tls_client_gets_https_on(px):
    port = px.binds["tls"]
    out = subprocess.run(["curl", "-sS", "--cacert", px.crt, "--resolve", f"localhost:{port}:127.0.0.1",
                          f"https://localhost:{port}/env"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)
    assert env["HTTPS"] == "on" and env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_expect_100_continue(px):
    with Raw(px.port) as c:
        c.send(raw_request("POST", "/echo", {"Content-Length": "5", "Expect": "100-continue"}))
        interim = c.response(head_only=True)
        assert interim.status == 100
        c.send(b"hello")
        r = c.response()
        assert (r.status, r.body) == (200, b"hello")


def test_pipelined_requests_are_answered_in_order(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/status/204") + raw_request("POST", "/echo", {"Content-Length": "3"}, b"abc")
               + raw_request("GET", "/"))
        assert c.response().status == 204
        assert c.response().body == b"abc"
        assert c.response().body == b"hello"


def test_a_client_gone_mid_stream_leaves_the_bay_usable(px):
    c = Raw(px.port)
    c.send(raw_request("GET", "/big/20000000"))
    c.response(head_only=True)
    c.close()
    for _ in range(3):
        assert request(px, "GET", "/").body == b"hello"
    wait_until(lambda: sum(v for (n, ls), v in px.metrics().items()
                           if n == "mothership_hbay_links" and ("bay", "web") in ls
                           and ("state", "busy") in ls) == 0, what="no busy link left")


def test_a_body_over_max_body_size_never_reaches_the_bay(fleet, tmp_path):
    log = tmp_path / "app.log"
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), env={"HBAY_APP_LOG": str(log)}),
                    http={"max_body_size": "1KiB"})
    r = request(px, "POST", "/echo", {"Content-Length": "2000"}, b"x" * 2000)
    assert r.status == 413
    assert request(px, "GET", "/").status == 200
    assert [e["path"] for e in bay_log(log)] == ["/"]


def test_bay_metrics(px):
    def replied():
        return msum(px.metrics(), "mothership_hbay_requests_total", bay="web", result="replied")

    def route_2xx():
        return msum(px.metrics(), "mothership_responses_total", bind="http", route="/.*", target="web", code="2xx")
    before, before_2xx = replied(), route_2xx()
    for _ in range(3):
        assert request(px, "GET", "/").status == 200
    wait_until(lambda: replied() >= before + 3, what="three replied requests counted")
    assert route_2xx() >= before_2xx + 3                    # the route's own series count bay requests too
    m = px.metrics()
    assert msum(m, "mothership_hbay_links_cap", bay="web") == 2       # threads = 2, one process
    assert msum(m, "mothership_hbay_links_docked_total", bay="web") >= 1
    assert metric(m, "mothership_hbay_queue_depth", bay="web") == 0


# ------------------------------------------------------------------ hostile bays (a fleet each)
def hostile(fleet, tmp_path, mode, threads=1, routes=("http:/.*",), **keys):
    log = tmp_path / f"{mode}.log"
    px = start_bays(fleet, hostile_toml("bad", mode, log, threads=threads, routes=routes, **keys))
    px.log = log
    return px


def test_garbage_is_502_and_counted(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "garbage")
    r = request(px, "GET", "/x?y=1")
    assert r.status == 502
    assert b"\xde\xad" not in r.body
    ev = bay_log(px.log, want=lambda ev: hails(ev) and any(e["event"] == "eof" for e in ev))
    assert hails(ev)[0]["params"]["PATH_INFO"] == "/x"
    wait_until(lambda: bay_total(px, "protocol_error", "bad") >= 1, what="protocol errors counted")


def aborted(c):
    """True when the response on c ends before its body did: EOF mid-body."""
    try:
        c.response()
    except (EOFError, ConnectionResetError):
        return True
    return False


def failed(c):
    """True when the client got a 502 or a response cut short: never a
    complete response."""
    try:
        return c.response().status == 502
    except (EOFError, ConnectionResetError):
        return True


def test_bay_that_exits_mid_stream_aborts_the_response(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "exit-mid-stream")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/big"))
        assert aborted(c)
    assert hails(bay_log(px.log))[0]["params"]["PATH_INFO"] == "/big"


def test_link_closed_mid_stream_aborts_a_chunked_response(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "close-mid-stream")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/s"))
        assert aborted(c)          # never the last chunk
    assert len(hails(bay_log(px.log))) == 1     # a GET whose head went out is not retried


def test_an_http2_stream_cut_by_the_bay_is_reset_not_ended(fleet, tmp_path):
    log = tmp_path / "cut.log"
    px = start_bays(fleet, hostile_toml("bad", "close-mid-stream", log),
                    binds={"http": {"port": free_port(), "h2c": True}})
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{px.port}/s"], capture_output=True, timeout=30)
    assert out.returncode != 0, out          # curl saw the stream fail, not a complete response
    assert len(hails(bay_log(log))) == 1


def test_bay_that_never_sends_ready_queues_then_504(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "no-ready", request_timeout="1s")
    r = request(px, "GET", "/first")
    assert (r.status, r.body) == (200, b"ok")
    r = request(px, "GET", "/second")
    assert r.status == 504
    ev = bay_log(px.log)
    assert [h["params"]["PATH_INFO"] for h in hails(ev)] == ["/first"]


def test_bay_that_never_replies_is_504_and_the_link_closed(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "silent", request_timeout="1s")
    r = request(px, "POST", "/slow", {"Content-Length": "3"}, b"abc")
    assert r.status == 504
    ev = bay_log(px.log, want=lambda ev: any(e["event"] == "eof" for e in ev))
    assert hails(ev)[0]["body_len"] == 3


@pytest.mark.parametrize("mode,before_head", [
    ("wrong-id", True), ("nul-header", True), ("dock-again", True), ("reply-twice", False),
    ("ready-early", False),
])
def test_protocol_violations(fleet, tmp_path, mode, before_head):
    px = hostile(fleet, tmp_path, mode)
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/v"))
        if before_head:
            assert c.response().status == 502
        else:
            assert failed(c)
    ev = bay_log(px.log, want=lambda ev: any(e["event"] == "eof" for e in ev))
    assert len(hails(ev)) == 1
    wait_until(lambda: bay_total(px, "protocol_error", "bad") >= 1, what="protocol errors counted")


def test_a_reply_head_over_the_bound_is_502(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "many-headers")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/h"))
        r = c.response()
    assert r.status == 502 and r.header("x-h1") is None


def test_a_link_that_docks_with_v1_fails_and_the_request_gets_an_answer(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "v1-dock-later", request_timeout="2s")
    r = request(px, "GET", "/x")
    assert r.status in (502, 503, 504)
    assert hails(bay_log(px.log)) == []                  # no request went on such a link
    wait_until(lambda: bay_total(px, "link_failures", "bad") >= 1, what="link failures counted")


def test_haul_after_fin_is_counted_and_the_link_closed(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "haul-after-fin")
    r = request(px, "GET", "/v")
    assert r.status == 200 and r.body == b"ok"
    bay_log(px.log, want=lambda ev: any(e["event"] == "eof" for e in ev))
    wait_until(lambda: bay_total(px, "protocol_error", "bad") >= 1, what="protocol errors counted")


def test_a_body_shorter_than_its_content_length_is_aborted(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "short-length")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/short"))
        assert aborted(c)


def test_a_body_longer_than_its_content_length_never_reaches_the_client_whole(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "long-length")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/long"))
        try:
            r = c.response()
        except (EOFError, ConnectionResetError):
            r = None
        if r is not None:
            assert r.body == b"ok"
            # the bytes past the length are no second response on this connection
            rest = c.read_all(timeout=1.0)
            assert b"HTTP" not in rest


def test_a_bays_own_framing_headers_are_dropped(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "framing-headers")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/a"))
        r = c.response()
        assert (r.status, r.body) == (200, b"ok")
        assert r.all("transfer-encoding") == ["chunked"]       # Mothership's framing, once
        assert r.header("connection") is None
        c.send(raw_request("GET", "/b"))
        assert c.response().body == b"ok"                     # kept alive: the bay's Connection is hop-by-hop


def test_file_reply_of_a_hostile_bay(fleet, tmp_path):
    """The bay's cwd (tmp_path, the manifest's directory) is its root; a
    file elsewhere is refused."""
    d = short_tmpdir()
    try:
        outside = os.path.join(d, "outside.txt")
        with open(outside, "wb") as f:
            f.write(b"TOP-SECRET-CONTENT\n")
        px = hostile(fleet, tmp_path, "file", env={"HBAY_FILE": outside})
        r = request(px, "GET", "/f")
        assert r.status == 502 and b"TOP-SECRET" not in r.body
        wait_until(lambda: bay_total(px, "protocol_error", "bad") >= 1, what="protocol errors counted")
        assert len(hails(bay_log(px.log))) == 1
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_file_reply_to_head_sends_the_head_only(fleet, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"0123456789")
    px = hostile(fleet, tmp_path, "file", env={"HBAY_FILE": str(tmp_path / "in.txt")})
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("HEAD", "/f"))
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("content-length") == "10"
        c.send(raw_request("GET", "/f"))
        r = c.response()                     # no file bytes were left between the two
        assert (r.status, r.body) == (200, b"0123456789")


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_a_file_reply_naming_no_regular_file_is_502_at_once(fleet, tmp_path, kind):
    target = tmp_path / "special"
    if kind == "fifo":
        os.mkfifo(str(target))
    else:
        target.mkdir()
    px = hostile(fleet, tmp_path, "file", env={"HBAY_FILE": str(target)})
    r = request(px, "GET", "/f")
    assert r.status == 502
    assert request(px, "GET", "/again").status == 502       # the worker is not stuck on it


def test_a_tunnel_to_a_request_without_upgrade_is_refused(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "tunnel-unasked")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/plain"))
        r = c.response(head_only=True)
        assert r.status == 502
        assert b"hi" not in c.read_all(timeout=0.5)
    wait_until(lambda: bay_total(px, "protocol_error", "bad") >= 1, what="protocol errors counted")


def test_break_before_reply_get_is_retried_once(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "break-first", threads=2)
    r = request(px, "GET", "/again")
    assert (r.status, r.body) == (200, b"ok")
    assert [h["params"]["PATH_INFO"] for h in hails(bay_log(px.log))] == ["/again", "/again"]


def test_break_before_reply_get_retried_once_only_and_post_not(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "break", threads=2)
    assert request(px, "GET", "/g").status == 502
    assert len(hails(bay_log(px.log, want=lambda ev: len(hails(ev)) >= 2))) == 2
    assert request(px, "POST", "/p", {"Content-Length": "2"}, b"hi").status == 502
    ev = bay_log(px.log, want=lambda ev: len(hails(ev)) >= 3)
    assert [h["params"]["REQUEST_METHOD"] for h in hails(ev)] == ["GET", "GET", "POST"]
    wait_until(lambda: bay_total(px, "fail", "bad") >= 1, what="link failures counted")


def test_queue_full_is_503_with_retry_after(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=1, max_queue=1,
                                     env={"HBAY_APP_LOG": str(tmp_path / "app.log")}))
    first = Raw(px.port, timeout=20)
    first.send(raw_request("GET", "/gate/a"))
    wait_until(lambda: (tmp_path / "a.in").exists(), what="the first request at the bay")
    second = Raw(px.port, timeout=20)
    second.send(raw_request("GET", "/gate/b"))
    wait_until(lambda: bay_total(px, QUEUE_DEPTH, "web") >= 1, what="the second request queued")
    r = request(px, "GET", "/gate/c")
    assert r.status == 503 and r.header("retry-after") == "1"
    (tmp_path / "a.go").touch()
    (tmp_path / "b.go").touch()
    assert first.response().body == b"gated"
    assert second.response().body == b"gated"
    first.close()
    second.close()
    paths = [e["path"] for e in bay_log(tmp_path / "app.log")]
    assert paths == ["/gate/a", "/gate/b"]              # the third never reached the bay


def test_a_client_gone_from_the_queue_leaves_it(fleet, tmp_path):
    log = tmp_path / "app.log"
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=1, env={"HBAY_APP_LOG": str(log)}))
    first = Raw(px.port, timeout=20)
    first.send(raw_request("GET", "/gate/a"))
    wait_until(lambda: (tmp_path / "a.in").exists(), what="the first request at the bay")
    gone = Raw(px.port, timeout=20)
    gone.send(raw_request("GET", "/gate/gone"))
    wait_until(lambda: bay_total(px, QUEUE_DEPTH, "web") == 1, what="the second request queued")
    gone.close()
    wait_until(lambda: bay_total(px, QUEUE_DEPTH, "web") == 0, what="the queue emptied by the client's leaving")
    (tmp_path / "a.go").touch()
    assert first.response().body == b"gated"
    first.close()
    assert request(px, "GET", "/").body == b"hello"
    assert [e["path"] for e in bay_log(log)] == ["/gate/a", "/"]      # the gone one never reached the bay


def test_queue_wait_over_request_timeout_is_504(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=1, request_timeout="1s"))
    first = Raw(px.port, timeout=20)
    first.send(raw_request("GET", "/slowgate/a"))       # its head comes at once, its end on a.go
    wait_until(lambda: (tmp_path / "a.in").exists(), what="the first request at the bay")
    r = request(px, "GET", "/gate/b")
    assert r.status == 504
    assert not (tmp_path / "b.in").exists()             # it never reached the bay
    (tmp_path / "a.go").touch()
    r = first.response()
    assert (r.status, r.body) == (200, b"first\nlast\n")
    first.close()


def test_a_bay_not_docked_yet_is_503_then_served(fleet, tmp_path):
    script = f"while [ ! -f go ]; do sleep 0.02; done; exec {PY} {HTTP_BAY} hbay_app:app"
    entry = hbay_toml("web", cwd=str(tmp_path), ready_timeout="30s").replace(
        f"command = {toml_str(PY)}", 'command = "/bin/sh"').replace(
        f'args = ["{HTTP_BAY}", "hbay_app:app"]', f"args = [\"-c\", {toml_str(script)}]")
    assert "/bin/sh" in entry and "-c" in entry, entry
    px = start_bays(fleet, entry, wait=False)
    r = request(px, "GET", "/")
    assert r.status == 503
    (tmp_path / "go").touch()
    px.ms.event("ready", ship="web", timeout=20)
    assert request(px, "GET", "/").body == b"hello"


def test_a_restart_lets_the_request_at_the_bay_finish(fleet, tmp_path):
    """`mothership restart`: the bay drains (SIGTERM: its running request
    finishes), then the new process is reached."""
    from conftest import run_ms
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=1))
    first = px.ms.event("ready", ship="web")
    c = Raw(px.port, timeout=30)
    c.send(raw_request("GET", "/gate/r"))
    wait_until(lambda: (tmp_path / "r.in").exists(), what="the request at the bay")
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    res = run_ms("restart", "web", "-c", path, cwd=str(tmp_path))
    assert res.code == 0, res
    px.ms.event("stopping", ship="web", start=first["_i"] + 1)      # the bay has its SIGTERM
    (tmp_path / "r.go").touch()
    r = c.response()
    assert (r.status, r.body) == (200, b"gated")
    c.close()
    px.ms.event("ready", ship="web", start=first["_i"] + 1, timeout=20)
    assert request(px, "GET", "/").body == b"hello"


def test_the_bay_gets_its_knobs_in_the_environment(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), workers=2, threads=3,
                                     request_timeout="1500ms"))
    env = request(px, "GET", "/osenv").json()
    assert env["MS_BAY_TYPE"] == "http"
    assert (env["MS_BAY_WORKERS"], env["MS_BAY_THREADS"]) == ("2", "3")
    assert env["MS_BAY_DRAIN_TIMEOUT"] == "2"            # whole seconds, rounded up
    assert env["MS_SHIP"] == "web" and env["MS_SOCKET_PATH"].endswith("web.sock")
    assert request(px, "GET", "/").status == 200


def test_request_ids_count_up_per_link(fleet, tmp_path):
    px = hostile(fleet, tmp_path, "ok")
    for i in range(3):
        assert request(px, "GET", f"/n{i}").body == b"ok"
    ev = bay_log(px.log)
    assert [h["rid"] for h in hails(ev)] == [1, 2, 3]
    assert [h["params"]["PATH_INFO"] for h in hails(ev)] == ["/n0", "/n1", "/n2"]


def test_a_bay_that_exits_is_reached_again_after_its_restart(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=2, critical=False))
    first = px.ms.event("ready", ship="web")
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/exit"))
        assert aborted(c)                                # 7 of 100 bytes: never passed off as whole
    px.ms.event("ready", ship="web", start=first["_i"] + 1, timeout=20)
    r = request(px, "GET", "/")
    assert (r.status, r.body) == (200, b"hello")


def test_forked_workers_serve_links_at_once(fleet, tmp_path):
    log = tmp_path / "app.log"
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), workers=2, threads=2,
                                     env={"HBAY_APP_LOG": str(log)}))
    wait_until(lambda: bay_total(px, "links_cap", "web") == 4, what="links_cap 4")
    clients = []
    for i in range(4):
        c = Raw(px.port, timeout=20)
        c.send(raw_request("GET", f"/gate/g{i}"))
        clients.append(c)
    wait_until(lambda: all((tmp_path / f"g{i}.in").exists() for i in range(4)),
               what="four requests at the bay at once")
    for i in range(4):
        (tmp_path / f"g{i}.go").touch()
    for c in clients:
        assert c.response().body == b"gated"
        c.close()
    assert len({e["pid"] for e in bay_log(log)}) == 2       # both processes took links


def test_mothership_stopping_lets_a_request_at_the_bay_finish(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), threads=1))
    c = Raw(px.port, timeout=20)
    c.send(raw_request("GET", "/gate/s"))
    wait_until(lambda: (tmp_path / "s.in").exists(), what="the request at the bay")
    px.ms.signal(signal.SIGTERM)
    px.ms.wait_for("stopping|draining|shutdown", timeout=10)
    (tmp_path / "s.go").touch()
    r = c.response()
    assert (r.status, r.body) == (200, b"gated")
    c.close()
    assert px.ms.wait_exit(timeout=15) == 0


def test_a_reload_moves_a_route_of_an_http_bay(fleet, tmp_path):
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), routes=["http:/env"]))
    assert request(px, "GET", "/env").status == 200
    assert request(px, "GET", "/echo").status == 404            # no route: Mothership's 404
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('"http:/env"', '"http:/echo"'))
    mark = len(px.ms.lines)
    px.ms.signal(signal.SIGHUP)
    px.ms.wait_for("reload", timeout=15, start=mark)
    wait_until(lambda: request(px, "GET", "/echo").status == 200, timeout=15, what="the new route")
    assert request(px, "GET", "/env").status == 404


def test_many_clients_over_two_workers_and_fewer_links(fleet, tmp_path):
    """40 clients, Mothership with 2 workers, a bay of 2 processes x 2
    threads: every echo comes back whole and to its own client."""
    import concurrent.futures
    import random
    px = start_bays(fleet, hbay_toml("web", cwd=str(tmp_path), workers=2, threads=2),
                    mothership={"workers": 2})

    def client(seed):
        rnd = random.Random(seed)
        for i in range(5):
            body = rnd.randbytes(rnd.randrange(0, 200_000))
            r = request(px, "POST", f"/echo?c={seed}&i={i}", {"Content-Length": str(len(body))}, body)
            assert (r.status, r.body) == (200, body), (seed, i, r.status)
        return seed
    with concurrent.futures.ThreadPoolExecutor(40) as ex:
        assert sorted(ex.map(client, range(40))) == list(range(40))
    m = px.metrics()
    assert msum(m, "mothership_hbay_requests_total", bay="web", result="replied") == 200
    assert msum(m, "mothership_hbay_protocol_errors_total", bay="web") == 0


# ------------------------------------------------------------------ upstreams
@pytest.fixture
def own_bay(tmp_path):
    """http_bay.py started by the test (not by Mothership) on a socket."""
    procs = []
    d = short_tmpdir()

    def start(args):
        p = subprocess.Popen([PY, *args], cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=APPS),
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        return p
    yield start, d
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_upstream_speaking_docking(fleet, own_bay):
    start, d = own_bay
    sock = os.path.join(d, "app.sock")
    start([HTTP_BAY, "--socket", sock, "--threads", "2", "--ship", "outside", "hbay_app:app"])
    wait_until(lambda: os.path.exists(sock), what="the app's socket")
    px = start_bays(fleet, upstream_toml("up", f"unix://{sock}", "docking",
                                         routes=["http:/.*"]))
    r = request(px, "GET", "/env?u=1")
    assert r.status == 200
    env = r.json()
    assert env["QUERY_STRING"] == "u=1" and env["SERVER_SOFTWARE"].startswith("mothership/")
    r = request(px, "POST", "/echo", {"Content-Length": "5"}, b"hello")
    assert r.body == b"hello"


def test_a_docking_upstream_gets_as_many_links_as_its_dock_says(fleet, own_bay, tmp_path):
    start, d = own_bay
    sock = os.path.join(d, "app.sock")
    start([HTTP_BAY, "--socket", sock, "--threads", "3", "hbay_app:app"])
    wait_until(lambda: os.path.exists(sock), what="the app's socket")
    px = start_bays(fleet, upstream_toml("up", f"unix://{sock}", "docking", routes=["http:/.*"]))
    clients = []
    for i in range(3):
        c = Raw(px.port, timeout=20)
        c.send(raw_request("GET", f"/gate/u{i}"))
        clients.append(c)
    wait_until(lambda: all((tmp_path / f"u{i}.in").exists() for i in range(3)),
               what="three requests at the app at once")
    assert msum(px.metrics(), "mothership_hbay_links_cap", bay="up") == 3
    for i in range(3):
        (tmp_path / f"u{i}.go").touch()
    for c in clients:
        assert c.response().body == b"gated"
        c.close()


def test_upstream_speaking_docking_is_reached_again_after_it_restarts(fleet, own_bay):
    start, d = own_bay
    sock = os.path.join(d, "app.sock")
    args = [HTTP_BAY, "--socket", sock, "--threads", "1", "hbay_app:app"]
    app_proc = start(args)
    wait_until(lambda: os.path.exists(sock), what="the app's socket")
    px = start_bays(fleet, upstream_toml("up", f"unix://{sock}", "docking", routes=["http:/.*"],
                                         request_timeout="3s"))
    assert request(px, "GET", "/").body == b"hello"
    app_proc.kill()
    app_proc.wait()
    os.unlink(sock)
    assert request(px, "GET", "/").status in (502, 503, 504)
    start(args)
    wait_until(lambda: request(px, "GET", "/").status == 200, timeout=15, what="links to the new app")
    assert request(px, "GET", "/").body == b"hello"


def test_upstream_speaking_http(fleet, own_bay):
    start, d = own_bay
    sock = os.path.join(d, "plain.sock")
    start([ECHO, "--unix", sock, "--name", "plain"])
    wait_until(lambda: os.path.exists(sock), what="the app's socket")
    px = start_bays(fleet, upstream_toml("plain", f"unix://{sock}", "http", routes=["http:/.*"]))
    r = request(px, "GET", "/hello?x=1")
    assert r.status == 200
    got = r.json()
    assert got["name"] == "plain" and got["path"] == "/hello"


def test_upstream_docking_not_listening_is_an_error_not_a_hang(fleet, tmp_path):
    d = short_tmpdir()
    try:
        px = start_bays(fleet, upstream_toml("gone", f"unix://{d}/none.sock", "docking",
                                             routes=["http:/.*"], request_timeout="2s"))
        r = request(px, "GET", "/")
        assert r.status in (502, 503, 504)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
