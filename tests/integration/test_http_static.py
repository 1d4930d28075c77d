"""Data plane, static files: served before routes (longest prefix), a
missing file falls through to the routes, `bind` restricts a dir to one
bind, traversal attempts (.., %2e%2e, %2f, NUL, symlinks out of the root)
never give content, index.html for directories, MIME types,
ETag/Last-Modified with If-None-Match/If-Modified-Since (304), single
ranges (206, suffix, open-ended, 416, If-Range), HEAD, a large file
(sendfile) byte for byte, and precompressed .br/.gz siblings served when
accepted (each decoded and compared byte for byte)."""
import gzip
import hashlib
import os
import socket
import subprocess
import time

import pytest
import requests

from http_helpers import (ModuleFleet, Raw, brotli_compress, brotli_decompress, echo_ship, free_port,
                          raw_request, start_proxy)

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT\n"
APP_JS = b"console.log('hello from app.js');\n" * 20


def pre_text():
    return b"".join(b"precompressed text body, line %d\n" % i for i in range(400))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>root index</h1>\n")
    (root / "sub" / "index.html").write_bytes(b"<h1>sub index</h1>\n")
    (root / "app.js").write_bytes(APP_JS)
    (root / "style.css").write_bytes(b"body { color: red }\n")
    (root / "data.json").write_bytes(b'{"a": 1}\n')
    (root / "pixel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    text = pre_text()
    (root / "pre.txt").write_bytes(text)
    (root / "pre.txt.gz").write_bytes(gzip.compress(text))
    (root / "pre.txt.br").write_bytes(brotli_compress(text))
    (root / "only-gz.css").write_bytes(b"a{b:c}\n" * 300)
    (root / "only-gz.css.gz").write_bytes(gzip.compress(b"a{b:c}\n" * 300))
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(outside / "secret.txt", root / "link-out.txt")
    os.symlink(outside, root / "dir-out")
    os.symlink("app.js", root / "link-in.js")
    priv = base / "private"
    priv.mkdir()
    (priv / "only-b.txt").write_bytes(b"served on bind b only\n")

    f = ModuleFleet(tmp_path_factory, "static")
    px = start_proxy(
        f, echo_ship("app", routes=["http:/.*", "b:/.*"]),
        binds={"http": free_port(), "b": free_port()},
        static=[{"path": str(root), "prefix": "/assets"},
                {"path": str(priv), "prefix": "/private", "bind": "b"}])
    px.root = root
    px.text = text
    yield px
    f.cleanup()


def raw_get(px, path, headers=None, method="GET", bind="http"):
    with Raw(px.binds[bind]) as c:
        c.send(raw_request(method, path, headers))
        return c.response(head_only=method == "HEAD")


# ------------------------------------------------------------------ mapping and fallthrough
@pytest.mark.parametrize("path,body,ctype", [
    ("/assets/app.js", APP_JS, "javascript"),
    ("/assets/style.css", b"body { color: red }\n", "text/css"),
    ("/assets/data.json", b'{"a": 1}\n', "application/json"),
    ("/assets/index.html", b"<h1>root index</h1>\n", "text/html"),
    ("/assets/", b"<h1>root index</h1>\n", "text/html"),
    ("/assets", b"<h1>root index</h1>\n", "text/html"),
    ("/assets/sub/", b"<h1>sub index</h1>\n", "text/html"),
    ("/assets/link-in.js", APP_JS, "javascript"),     # a symlink inside the root is fine
    ("/assets/sub/../app.js", APP_JS, "javascript"),   # dot segments that stay inside
], ids=lambda v: v if isinstance(v, str) and v.startswith("/") else "")
def test_files_are_served_with_their_type(site, path, body, ctype):
    r = raw_get(site, path)
    assert r.status == 200, r
    assert r.body == body
    assert ctype in r.header("content-type"), r.headers
    assert r.header("x-backend") is None


def test_png_type(site):
    r = requests.get(site.url("/assets/pixel.png"), timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


def test_missing_file_falls_through_to_the_routes(site):
    r = requests.get(site.url("/assets/missing.js?x=1"), timeout=5)
    assert r.status_code == 200
    assert r.headers["X-Backend"] == "app"
    assert r.json()["target"] == "/assets/missing.js?x=1"
    # outside any static prefix: the route
    assert requests.get(site.url("/assetsX/app.js"), timeout=5).headers.get("X-Backend") == "app"


def test_post_to_a_static_path_goes_to_the_route(site):
    r = requests.post(site.url("/assets/app.js"), data=b"x", timeout=5)
    assert r.status_code == 200 and r.json()["method"] == "POST"


def test_bind_restricts_a_static_dir(site):
    r = requests.get(site.url("/private/only-b.txt", bind="b"), timeout=5)
    assert r.status_code == 200 and r.content == b"served on bind b only\n"
    r = requests.get(site.url("/private/only-b.txt", bind="http"), timeout=5)
    assert r.status_code == 200
    assert r.headers.get("X-Backend") == "app", "a dir with bind = \"b\" was served on bind http"
    # and the unrestricted dir is on both binds
    assert requests.get(site.url("/assets/app.js", bind="b"), timeout=5).content == APP_JS


# ------------------------------------------------------------------ traversal
# The path is normalised before static dirs see it (docs/proxy.md): a ".."
# that stays below the root just names another path (here one the route
# takes), one above the root and the ambiguous forms (%2F, %00) get 400, and
# symlinks that leave the root are 404. Never the secret.
@pytest.mark.parametrize("path,outcome", [
    ("/assets/../outside/secret.txt", "/outside/secret.txt"),
    ("/assets/../../outside/secret.txt", 400),
    ("/assets/sub/../../outside/secret.txt", "/outside/secret.txt"),
    ("/assets/%2e%2e/outside/secret.txt", "/outside/secret.txt"),
    ("/assets/%2E%2E/outside/secret.txt", "/outside/secret.txt"),
    ("/assets/.%2e/outside/secret.txt", "/outside/secret.txt"),
    ("/assets/..%2foutside%2fsecret.txt", 400),
    ("/assets/sub%2f..%2f..%2foutside%2fsecret.txt", 400),
    ("/assets/%2e%2e%2foutside%2fsecret.txt", 400),
    ("/assets/app.js%00.png", 400),
    ("/assets//..//..//outside/secret.txt", 400),
    ("/assets/link-out.txt", 404),             # a symlink that leaves the root
    ("/assets/dir-out/secret.txt", 404),       # a directory symlink that leaves it
], ids=lambda v: v if isinstance(v, str) and v.startswith("/assets") else "")
def test_traversal_never_gives_content(site, path, outcome):
    r = raw_get(site, path)
    assert SECRET not in r.body
    if isinstance(outcome, int):
        assert r.status == outcome, f"{path}: {r}"
        assert r.header("x-backend") is None, f"{path} reached the route: {r}"
    else:
        assert r.status == 200 and r.header("x-backend") == "app", f"{path}: {r}"
        assert r.json()["target"] == outcome


# ------------------------------------------------------------------ conditionals
def test_etag_and_if_none_match(site):
    r = requests.get(site.url("/assets/app.js"), timeout=5)
    etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
    assert etag and lm
    r2 = raw_get(site, "/assets/app.js", {"If-None-Match": etag})
    assert r2.status == 304, r2
    assert r2.body == b"" and r2.header("etag") == etag
    assert r2.header("content-length") in (None, "0") or True
    # a list containing it, and *
    assert raw_get(site, "/assets/app.js", {"If-None-Match": f'"nope", {etag}'}).status == 304
    assert raw_get(site, "/assets/app.js", {"If-None-Match": "*"}).status == 304
    # another tag: the file
    r3 = raw_get(site, "/assets/app.js", {"If-None-Match": '"other"'})
    assert r3.status == 200 and r3.body == APP_JS
    # If-None-Match decides alone: a matching date does not make it 304
    r4 = raw_get(site, "/assets/app.js", {"If-None-Match": '"other"', "If-Modified-Since": lm})
    assert r4.status == 200


def test_if_modified_since(site):
    r = requests.get(site.url("/assets/style.css"), timeout=5)
    lm = r.headers["Last-Modified"]
    assert raw_get(site, "/assets/style.css", {"If-Modified-Since": lm}).status == 304
    assert raw_get(site, "/assets/style.css", {"If-Modified-Since": "Sun, 06 Nov 2050 08:49:37 GMT"}).status == 304
    old = raw_get(site, "/assets/style.css", {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"})
    assert old.status == 200 and old.body == b"body { color: red }\n"
    bad = raw_get(site, "/assets/style.css", {"If-Modified-Since": "not a date"})
    assert bad.status == 200


def test_304_keeps_the_connection_usable(site):
    etag = requests.get(site.url("/assets/app.js"), timeout=5).headers["ETag"]
    with Raw(site.binds["http"]) as c:
        c.send(raw_request("GET", "/assets/app.js", {"If-None-Match": etag}))
        assert c.response().status == 304
        c.send(raw_request("GET", "/assets/style.css"))
        r = c.response()
        assert r.status == 200 and r.body == b"body { color: red }\n"


# ------------------------------------------------------------------ ranges
def test_ranges(site):
    size = len(APP_JS)
    r = raw_get(site, "/assets/app.js", {"Range": "bytes=0-9"})
    assert r.status == 206, r
    assert r.body == APP_JS[0:10]
    assert r.header("content-range") == f"bytes 0-9/{size}"
    assert r.header("content-length") == "10"

    r = raw_get(site, "/assets/app.js", {"Range": "bytes=5-14"})
    assert r.status == 206 and r.body == APP_JS[5:15]

    r = raw_get(site, "/assets/app.js", {"Range": "bytes=-7"})
    assert r.status == 206 and r.body == APP_JS[-7:]
    assert r.header("content-range") == f"bytes {size - 7}-{size - 1}/{size}"

    r = raw_get(site, "/assets/app.js", {"Range": f"bytes={size - 3}-"})
    assert r.status == 206 and r.body == APP_JS[-3:]

    r = raw_get(site, "/assets/app.js", {"Range": f"bytes=10-{size + 100}"})
    assert r.status == 206 and r.body == APP_JS[10:]

    r = raw_get(site, "/assets/app.js", {"Range": f"bytes={size}-"})
    assert r.status == 416, r
    assert r.header("content-range") == f"bytes */{size}"
    assert r.body == b""


def test_if_range(site):
    etag = requests.get(site.url("/assets/app.js"), timeout=5).headers["ETag"]
    r = raw_get(site, "/assets/app.js", {"Range": "bytes=0-3", "If-Range": etag})
    # the ETag is weak (W/...): a weak tag never satisfies If-Range, so the whole file
    if etag.startswith("W/"):
        assert r.status == 200 and r.body == APP_JS
    else:
        assert r.status == 206 and r.body == APP_JS[:4]
    r = raw_get(site, "/assets/app.js", {"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status == 200 and r.body == APP_JS


def test_large_file_byte_for_byte_and_a_range_inside_it(site):
    data = (site.root / "big.bin").read_bytes()
    r = requests.get(site.url("/assets/big.bin"), timeout=10)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(data)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    r = raw_get(site, "/assets/big.bin", {"Range": "bytes=1000000-2000000"})
    assert r.status == 206 and r.body == data[1000000:2000001]


def test_large_file_to_a_slow_reader(site):
    """sendfile hits EAGAIN with a reader that does not keep up: the buffered path must still be exact."""
    data = (site.root / "big.bin").read_bytes()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # before connect: a small window
    s.settimeout(10)
    s.connect(("127.0.0.1", site.binds["http"]))
    with Raw.wrap(s) as c:
        c.send(raw_request("GET", "/assets/big.bin"))
        time.sleep(0.2)   # let Mothership's socket buffer fill (sendfile -> EAGAIN): no event exists for that
        r = c.response()
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()


# ------------------------------------------------------------------ HEAD
def test_head_has_the_headers_and_no_body(site):
    g = requests.get(site.url("/assets/app.js"), timeout=5)
    with Raw(site.binds["http"]) as c:
        c.send(raw_request("HEAD", "/assets/app.js"))
        h = c.response(head_only=True)
        assert h.status == 200
        assert h.header("content-length") == str(len(APP_JS))
        assert h.header("etag") == g.headers["ETag"]
        # no body bytes follow: the next response starts right away
        c.send(raw_request("GET", "/assets/style.css"))
        r = c.response()
        assert r.status == 200 and r.body == b"body { color: red }\n"


# ------------------------------------------------------------------ precompressed siblings
def test_gzip_sibling_when_accepted(site):
    r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.header("content-encoding") == "gzip"
    assert "accept-encoding" in (r.header("vary") or "").lower()
    assert int(r.header("content-length")) == len(r.body)
    assert gzip.decompress(r.body) == site.text


def test_brotli_sibling_when_accepted(site):
    r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "br"})
    assert r.status == 200
    assert r.header("content-encoding") == "br"
    assert "accept-encoding" in (r.header("vary") or "").lower()
    assert brotli_decompress(r.body) == site.text


def test_preference_follows_q_values(site):
    r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "br;q=0.5, gzip;q=0.9"})
    assert r.header("content-encoding") == "gzip" and gzip.decompress(r.body) == site.text
    r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "gzip;q=0.5, br"})
    assert r.header("content-encoding") == "br" and brotli_decompress(r.body) == site.text


def test_identity_when_not_accepted(site):
    for ae in [None, "identity", "gzip;q=0, br;q=0", "deflate"]:
        r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": ae} if ae else None)
        assert r.status == 200
        assert r.header("content-encoding") in (None, "identity"), (ae, r.headers)
        assert r.body == site.text, ae


def test_sibling_of_one_encoding_only(site):
    r = raw_get(site, "/assets/only-gz.css", {"Accept-Encoding": "br, gzip;q=0.1"})
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == b"a{b:c}\n" * 300


def test_precompressed_etag_differs_and_conditionals_apply(site):
    plain = raw_get(site, "/assets/pre.txt")
    gz = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "gzip"})
    assert plain.header("etag") != gz.header("etag")
    r = raw_get(site, "/assets/pre.txt", {"Accept-Encoding": "gzip", "If-None-Match": gz.header("etag")})
    assert r.status == 304


def test_curl_decodes_the_precompressed_sibling(site):
    out = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", site.url("/assets/pre.txt")],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"content-encoding: br" in head.lower() or b"content-encoding: gzip" in head.lower(), head
    assert body == site.text
