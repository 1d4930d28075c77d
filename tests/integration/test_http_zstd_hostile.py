"""zstd as a hostile client sees it: contexts of the worker's cache reused
after aborted responses, concurrent and pipelined responses, odd
Accept-Encoding values, HEAD/304/206, HTTP/1.0, odd .zst siblings. Every
body is decoded (window <= 256 KiB) and compared with the ship's bytes."""
import os
import socket
import struct
import threading

import pytest
import zstandard

from http_helpers import ModuleFleet, Raw, echo_ship, raw_request, recv_to_eof, start_proxy, zstd_decompress as zd

TEXT = b"".join(b"line %05d: the quick brown fox jumps over the lazy dog\n" % i for i in range(1500))


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    (root / "big.js").write_bytes(TEXT)
    huge = b"".join(os.urandom(16).hex().encode() + b"\n" for _ in range(200000))  # 6.6 MB text
    (root / "huge.txt").write_bytes(huge)
    (root / "pre.js").write_bytes(TEXT)
    (root / "pre.js.zst").write_bytes(zstandard.ZstdCompressor().compress(b"ZST" + TEXT))
    f = ModuleFleet(tmp_path_factory, "rvz")
    p = start_proxy(f, echo_ship("app", routes=["http:/.*"]), mothership={"compression": True},
                    static=[{"path": str(root), "prefix": "/static"}])
    p.root = root
    p.huge = huge
    yield p
    f.cleanup()


def get(px, path, ae="zstd", method="GET", headers=(), body=b""):
    hs = [("Accept-Encoding", ae)] + list(headers)
    if body:
        hs.append(("Content-Length", str(len(body))))
    with Raw(px.port, timeout=20) as c:
        c.send(raw_request(method, path, hs, body))
        return c.response(head_only=method == "HEAD")


def abort_after(px, path, nbytes, body=b"", method="GET"):
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hs = [("Accept-Encoding", "zstd")]
    if body:
        hs.append(("Content-Length", str(len(body))))
    s.sendall(raw_request(method, path, hs, body))
    got = b""
    while len(got) < nbytes:
        d = s.recv(4096)
        if not d:
            break
        got += d
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_abort_mid_stream_then_next_responses_decode(px):
    for i in range(30):
        abort_after(px, "/static/huge.txt", 5000 + i * 100)
        abort_after(px, "/p?size=3000000&ctype=text/plain", 3000 + i)
        abort_after(px, "/p?size=3000000&chunked=1&ctype=text/plain", 3000 + i)
        r = get(px, "/static/big.js")
        assert r.header("content-encoding") == "zstd" and zd(r.body) == TEXT, i
        r = get(px, "/t?echo=1&ctype=text/plain", method="POST", body=TEXT[i:])
        assert r.header("content-encoding") == "zstd" and zd(r.body) == TEXT[i:], i
    r = get(px, "/static/huge.txt")
    assert zd(r.body) == px.huge


def test_concurrent_zstd_all_decode(px):
    errs = []

    def one(k):
        try:
            for j in range(5):
                body = TEXT[k * 7 + j:]
                r = get(px, "/t?echo=1&ctype=text/plain", method="POST", body=body)
                assert zd(r.body) == body
        except Exception as e:  # noqa
            errs.append(repr(e))
    ts = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs


def test_pipelined_zstd_responses(px):
    with Raw(px.port, timeout=20) as c:
        reqs = b"".join(raw_request("GET", p, [("Accept-Encoding", "zstd")])
                        for p in ["/static/big.js", "/p?size=100000&ctype=text/plain", "/static/pre.js",
                                  "/static/big.js"] * 5)
        c.send(reqs)
        for _ in range(5):
            assert zd(c.response().body) == TEXT
            zd(c.response().body)
            assert zd(c.response().body) == b"ZST" + TEXT
            assert zd(c.response().body) == TEXT


@pytest.mark.parametrize("ae,want", [
    ("identity;q=0, zstd", "zstd"), ("*;q=0, zstd", "zstd"), ("zstd;q=0.001", "zstd"),
    ("zstd;q=1.000", "zstd"), ("zstd;q=1.0001", None), (" ZsTd ", "zstd"), ("zstd , ,,, ", "zstd"),
    ("x-zstd", None), ("zstd-x", None), ("zstd;level=22", "zstd"), ("zstd\t;\tq=0.5", "zstd"),
])
def test_ae_variants(px, ae, want):
    r = get(px, "/t?echo=1&ctype=text/plain", ae=ae, method="POST", body=TEXT)
    assert r.header("content-encoding") == want, (ae, r.headers)
    assert (zd(r.body) if want else r.body) == TEXT


def test_huge_ae(px):
    ae = ",".join(["gzip;q=0.1", "zstd;q=0"] * 4000) + ",zstd"
    r = get(px, "/t?echo=1&ctype=text/plain", ae=ae, method="POST", body=TEXT)
    assert r.status == 431   # the head is over the limit: refused, not parsed


def test_head_304_206(px):
    g = get(px, "/static/big.js")
    h = get(px, "/static/big.js", method="HEAD")
    assert h.header("content-encoding") == g.header("content-encoding") == "zstd"
    et = g.header("etag")
    r = get(px, "/static/big.js", headers=[("If-None-Match", et)])
    assert r.status == 304, r.headers
    r = get(px, "/static/big.js", headers=[("Range", "bytes=0-9")])
    assert r.status == 206 and r.header("content-encoding") is None and r.body == TEXT[:10]


def test_zst_sibling_odd_kinds(px):
    root = px.root
    for name in ("a.js", "b.js", "c.js", "d.js"):
        (root / name).write_bytes(TEXT)
    os.symlink("/etc/passwd", root / "a.js.zst")
    os.mkdir(root / "b.js.zst")
    os.mkfifo(root / "c.js.zst")
    (root / "inner.zst").write_bytes(zstandard.ZstdCompressor().compress(b"INNER"))
    os.symlink("inner.zst", root / "d.js.zst")
    for name in ("a.js", "b.js", "c.js"):
        r = get(px, "/static/" + name)
        assert r.status == 200 and r.header("content-encoding") == "zstd", (name, r.headers)
        assert zd(r.body) == TEXT, name
    r = get(px, "/static/d.js")   # a symlink that stays beneath the root is followed, as for .br
    assert r.header("content-encoding") == "zstd" and zd(r.body) == b"INNER"


@pytest.mark.parametrize("ae", ["zstd", "gzip", "br"])
def test_incompressible_text(px, ae):
    body = os.urandom(3_000_000)
    r = get(px, "/t?echo=1&ctype=text/plain", ae=ae, method="POST", body=body)
    assert r.status == 200 and r.header("content-encoding") == ae
    if ae == "zstd":
        assert zd(r.body) == body
    (px.root / "rand.txt").write_bytes(body)
    r = get(px, "/static/rand.txt", ae=ae)
    assert r.status == 200 and r.header("content-encoding") == ae
    if ae == "zstd":
        assert zd(r.body) == body


def test_http10_and_sibling_head_ifrange(px):
    s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
    s.sendall(b"GET /static/big.js HTTP/1.0\r\nHost: x\r\nAccept-Encoding: zstd\r\n\r\n")
    data = recv_to_eof(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"zstd" in head.lower() and b"chunked" not in head.lower(), head
    assert zd(body) == TEXT
    raw = (px.root / "pre.js.zst").read_bytes()
    h = get(px, "/static/pre.js", method="HEAD")
    assert h.header("content-length") == str(len(raw)) and h.header("content-encoding") == "zstd", h.headers
    et = h.header("etag")
    r = get(px, "/static/pre.js", headers=[("Range", "bytes=0-3,10-12"), ("If-Range", et)])
    assert r.status == 200 and r.body == raw   # several ranges: the whole sibling
    r = get(px, "/static/pre.js", ae="gzip", headers=[("Range", "bytes=0-3"), ("If-Range", et)])
    assert r.status == 200 and r.header("content-encoding") == "gzip", r.headers
