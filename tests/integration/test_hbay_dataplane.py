"""The data plane's side of HTTP bays (docking v3): requests become HAIL +
HAULs on links the workers open to the bay, REPLYs become responses, and
the queue, timeouts and broken links give the documented answers. The bay
is apps/hbay_probe.py, which logs what reached it."""
import gzip
import hashlib
import json
import os
import socket
import subprocess
import time

import requests
import zstandard

from conftest import BUILD
from fleet_helpers import PY, app, free_port, toml_str
from hbay_helpers import upstream_toml
from http_helpers import Raw, msum, raw_request, short_tmpdir, start_proxy, toml_value, wait_until

PROBE = app("hbay_probe.py")


def hbay_toml(name, log, routes=("http:/.*",), threads=2, extra=None):
    lines = ["[[bays.http]]", f"name = {toml_str(name)}", f"command = {toml_str(PY)}",
             f"args = {toml_value([PROBE, log])}", f"routes = {toml_value(list(routes))}",
             f"threads = {threads}"]
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


def start(fleet, *bays, http=None, mothership=None, names=("app",)):
    mo = {"socket_dir": short_tmpdir()}
    mo.update(mothership or {})
    px = start_proxy(fleet, http=http, mothership=mo, extra="\n".join(bays))
    for n in names:
        px.ms.event("ready", ship=n, timeout=15)
    return px


class Upstream:
    """The probe bay started by the test, reached as a docking upstream."""

    def __init__(self, tmp_path, threads, dock_delay_ms=0):
        self.log = str(tmp_path / "bay.log")
        self.sock = os.path.join(short_tmpdir(), "up.sock")
        if dock_delay_ms:
            open(self.log + ".slowdock", "w").close()  # removed: the DOCK comes at once again
        self.p = subprocess.Popen([PY, PROBE, self.log, self.sock],
                                  env=dict(os.environ, MS_BAY_THREADS=str(threads),
                                           MS_BAY_DOCK_DELAY_MS=str(dock_delay_ms)))
        wait_until(lambda: os.path.exists(self.sock), what="the upstream's socket")

    def toml(self, extra=None):
        return upstream_toml("app", "unix://" + self.sock, protocol=None, **(extra or {}))

    def stop(self):
        self.p.kill()
        self.p.wait()


def start_upstream(fleet, tmp_path, request, threads=2, extra=None, http=None, mothership=None, more="",
                   dock_delay_ms=0):
    """Mothership in front of the probe bay as a docking upstream; returns
    (proxy, log path)."""
    up = Upstream(tmp_path, threads, dock_delay_ms)
    request.addfinalizer(up.stop)
    px = start_proxy(fleet, http=http, mothership=mothership, extra=up.toml(extra) + more, wait=False)
    px.ms.event("fleet_ready", timeout=15)
    return px, up.log


def seen(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def statuses_at_once(px, paths, clients):
    """The status of a GET of each path, each on its own connection, clients
    of them at a time."""
    import concurrent.futures

    def get(path):
        with Raw(px.port, timeout=30) as c:
            c.send(raw_request("GET", path))
            return c.response().status
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        return list(ex.map(get, paths))

def test_get_reaches_the_bay_as_cgi_params_and_the_reply_comes_back(fleet, tmp_path):
    log = str(tmp_path / "bay.log")
    px = start(fleet, hbay_toml("app", log, routes=["http:/api/.*"], extra={"config": {"greeting": "hi"}}))
    r = requests.get(px.url("/api/x%20y/z?a=1&b=%20"), headers={"X-Thing": "one", "Cookie": "c=1"})
    assert r.status_code == 200, r.text
    p = r.json()["params"]
    assert p["REQUEST_METHOD"] == "GET"
    assert p["PATH_INFO"] == "/api/x%20y/z"
    assert p["QUERY_STRING"] == "a=1&b=%20"
    assert p["SCRIPT_NAME"] == ""
    assert p["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert p["SERVER_NAME"] == "127.0.0.1" and p["SERVER_PORT"] == str(px.port)
    assert p["SERVER_SOFTWARE"].startswith("mothership/")
    assert p["REMOTE_ADDR"] == "127.0.0.1" and int(p["REMOTE_PORT"]) > 0
    assert p["HTTP_X_THING"] == "one" and p["HTTP_COOKIE"] == "c=1"
    assert p["HTTP_X_FORWARDED_FOR"] == "127.0.0.1" and p["HTTP_X_FORWARDED_PROTO"] == "http"
    assert p["HTTP_X_REQUEST_ID"]
    assert "CONTENT_LENGTH" not in p and "HTTPS" not in p
    assert r.json()["body_len"] == 0
    # the next request on the same link has the next id
    for _ in range(3):
        assert requests.get(px.url("/api/again")).status_code == 200
    ids = [e["id"] for e in seen(log)]
    assert ids and ids[0] == 1


def test_repeated_headers_are_joined_and_spoofable_ones_left_out(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/h", headers=[("Accept", "a"), ("accept", "b"), ("Cookie", "x=1"),
                                                  ("Cookie", "y=2"), ("X_Evil", "1"), ("Connection", "x-hop"),
                                                  ("X-Hop", "2"), ("X-Forwarded-For", "10.0.0.1")]))
        r = c.response()
    assert r.status == 200
    p = r.json()["params"]
    assert p["HTTP_ACCEPT"] == "a, b"
    assert p["HTTP_COOKIE"] == "x=1; y=2"
    assert "HTTP_X_EVIL" not in p and "HTTP_X_HOP" not in p and "HTTP_CONNECTION" not in p
    assert p["HTTP_X_FORWARDED_FOR"] == "10.0.0.1, 127.0.0.1"


def test_post_bodies_arrive_whole_with_their_length(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request, http={"request_buffer_size": "64KiB"})
    for size in (0, 1024, 300 * 1024):
        body = os.urandom(size)
        r = requests.post(px.url("/upload"), data=body, headers={"Content-Type": "application/x-thing"})
        assert r.status_code == 200, r.text
        j = r.json()
        assert j["body_len"] == size and j["body_sha"] == hashlib.sha256(body).hexdigest()
        assert j["params"]["CONTENT_TYPE"] == "application/x-thing"
        assert j["params"]["CONTENT_LENGTH"] == str(size)
    # chunked upload: the bay gets the length
    def gen():
        yield b"a" * 1000
        yield b"b" * 2000
    r = requests.post(px.url("/upload"), data=gen())
    assert r.status_code == 200 and r.json()["body_len"] == 3000
    assert r.json()["params"]["CONTENT_LENGTH"] == "3000"


def test_stream_empty_and_large_replies(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/stream?n=5"))
        r = c.response()
        assert r.status == 200 and r.chunked
        assert r.body == b"".join(b"chunk %d\n" % i for i in range(5))
        c.send(raw_request("GET", "/empty"))
        r = c.response()
        assert r.status == 204 and r.body == b""
        c.send(raw_request("GET", "/cookies"))
        r = c.response()
        assert r.all("set-cookie") == ["a=1", "b=2"] and r.header("content-length") == "0"
        c.send(raw_request("GET", "/big?kb=1000"))
        r = c.response()
        assert r.status == 200 and r.header("content-length") == str(1000 * 1024)
        assert len(r.body) == 1000 * 1024 and not r.chunked
        c.send(raw_request("HEAD", "/big?kb=3"))
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("content-length") == str(3 * 1024)
        c.send(raw_request("HEAD", "/stream?n=3"))  # the framing its GET would have, no body
        r = c.response(head_only=True)
        assert r.status == 200 and r.header("transfer-encoding") == "chunked" and not r.header("content-length")
        c.send(raw_request("GET", "/empty"))  # the connection is still in step
        assert c.response().status == 204


def test_a_link_that_breaks_gives_502_and_a_cut_response_is_aborted(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    r = requests.post(px.url("/break"), data=b"x")
    assert r.status_code == 502
    # an idempotent request without a body is tried once more, on another link
    r = requests.get(px.url("/break"))
    assert r.status_code == 502
    assert [e["params"]["PATH_INFO"] for e in seen(log)].count("/break") == 3
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/cut"))
        with_head = c._line()
        assert with_head.startswith(b"HTTP/1.1 200")
        assert c.closed(5)
        assert b"0123456789" in c.buf and len(c.buf.split(b"\r\n\r\n", 1)[1]) == 10
    # a protocol error is counted, and the bay keeps serving
    assert requests.get(px.url("/garbage")).status_code == 502
    assert requests.get(px.url("/twice")).status_code == 200  # the second REPLY breaks the link
    assert requests.get(px.url("/fine")).status_code == 200
    m = px.metrics()
    assert msum(m, "mothership_hbay_protocol_errors_total", bay="app") >= 1


def test_a_request_that_waits_longer_than_request_timeout_gets_504(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request, threads=1, extra={"request_timeout": "1s"})
    # the only link is held by a request that never gets READY
    assert requests.get(px.url("/noready")).status_code == 200
    t0 = time.monotonic()
    r = requests.get(px.url("/queued"))
    assert r.status_code == 504, r.text
    assert time.monotonic() - t0 >= 0.9
    assert not any(e["params"]["PATH_INFO"] == "/queued" for e in seen(log))


def test_a_bay_that_never_replies_gets_504_and_its_link_closed(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request, threads=2, extra={"request_timeout": "1s"})
    t0 = time.monotonic()
    r = requests.get(px.url("/hang"))
    assert r.status_code == 504, r.text
    assert time.monotonic() - t0 >= 0.9
    assert [e["params"]["PATH_INFO"] for e in seen(log)].count("/hang") == 1  # not tried again
    assert requests.get(px.url("/fine")).status_code == 200
    assert msum(px.metrics(), "mothership_hbay_requests_total", bay="app", result="reply_timeout") == 1


def test_strip_prefix_becomes_script_name(fleet, tmp_path, request):
    up = Upstream(tmp_path, 2)
    request.addfinalizer(up.stop)
    text = up.toml().replace('routes = ["http:/.*"]',
                             'routes = [{ bind = "http", pattern = "/app/.*", strip_prefix = "/app" }]')
    px = start_proxy(fleet, extra=text, wait=False)
    px.ms.event("fleet_ready", timeout=15)
    p = requests.get(px.url("/app/x/y?z")).json()["params"]
    assert p["SCRIPT_NAME"] == "/app" and p["PATH_INFO"] == "/x/y" and p["QUERY_STRING"] == "z"


def test_queue_full_gives_503_with_retry_after(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request, threads=1, extra={"max_queue": 1, "request_timeout": "5s"})
    slow = Raw(px.port)
    slow.send(raw_request("GET", "/sleep?ms=1500"))
    wait_until(lambda: any(e["params"]["PATH_INFO"] == "/sleep" for e in seen(log)), what="the slow request")
    waiting = Raw(px.port)
    waiting.send(raw_request("GET", "/second"))
    wait_until(lambda: msum(px.metrics(), "mothership_hbay_queue_depth", bay="app") == 1, what="one queued")
    r = requests.get(px.url("/third"))
    assert r.status_code == 503 and r.headers.get("Retry-After") == "1"
    r = requests.post(px.url("/upload"), data=b"u" * (1 << 20))  # refused before its body is read
    assert r.status_code == 503 and r.headers.get("Retry-After") == "1"
    assert slow.response().status == 200 and waiting.response().status == 200
    slow.close()
    waiting.close()
    assert not any(e["params"]["PATH_INFO"] in ("/third", "/upload") for e in seen(log))
    assert msum(px.metrics(), "mothership_hbay_requests_total", bay="app", result="queue_full") == 2


def test_upstream_with_docking_is_reached_like_a_bay(fleet, tmp_path):
    log = str(tmp_path / "up.log")
    sock = os.path.join(short_tmpdir(), "up.sock")
    p = subprocess.Popen([PY, PROBE, log, sock], env=dict(os.environ, MS_BAY_THREADS="2"))
    try:
        wait_until(lambda: os.path.exists(sock), what="the upstream's socket")
        up = "\n".join(["[[mothership.upstreams]]", 'name = "ext"', f"bind = {toml_str('unix://' + sock)}",
                        'routes = ["http:/.*"]'])
        px = start_proxy(fleet, extra=up + "\n", wait=False)
        wait_until(lambda: requests.get(px.url("/x")).status_code == 200, what="the upstream answering")
        r = requests.post(px.url("/up?q=1"), data=b"abc")
        assert r.status_code == 200 and r.json()["body_len"] == 3
        assert r.json()["params"]["QUERY_STRING"] == "q=1"
    finally:
        p.kill()
        p.wait()


def test_file_replies_only_inside_the_file_roots(fleet, tmp_path, request):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"inside the root\n" * 1000)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET")
    os.symlink(str(secret), str(root / "link.txt"))
    px, log = start_upstream(fleet, tmp_path, request, extra={"file_roots": [str(root)]})
    r = requests.get(px.url("/file"), params={"path": str(root / "a.txt")})
    assert r.status_code == 200 and r.content == b"inside the root\n" * 1000
    assert r.headers["Content-Length"] == str(16 * 1000) and r.headers["Content-Type"] == "text/plain"
    with Raw(px.port) as c:
        c.send(raw_request("HEAD", "/file?path=" + str(root / "a.txt")))
        h = c.response(head_only=True)
        assert h.status == 200 and h.header("content-length") == str(16 * 1000)
    for bad in (str(secret), str(root / "link.txt"), str(root), str(root / "missing"), "/etc/passwd",
                str(root / ".." / "secret.txt")):
        r = requests.get(px.url("/file"), params={"path": bad})
        assert r.status_code == 502, bad
        assert b"SECRET" not in r.content and b"root:" not in r.content
    assert msum(px.metrics(), "mothership_hbay_protocol_errors_total", bay="app") == 6
    assert requests.get(px.url("/fine")).status_code == 200


def test_tunnel_carries_bytes_both_ways_until_the_bay_ends_it(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")]) + b"early")
        r = c.response(head_only=True)
        assert r.status == 101 and r.header("upgrade") == "websocket"
        got, c.buf = c.buf, b""  # the echo may have come with the head
        while len(got) < 5:
            c._fill()
            got, c.buf = got + c.buf, b""
        assert got == b"early"
        big = os.urandom(200 * 1024)
        c.send(big)
        got = b""
        while len(got) < len(big):
            c._fill()
            got, c.buf = got + c.buf, b""
        assert got == big
        c.send(b"bye")
        assert c.closed(5) and c.buf == b"bye!"
    p = [e for e in seen(log) if e["params"]["PATH_INFO"] == "/ws"][0]["params"]
    assert p["HTTP_UPGRADE"] == "websocket" and p["HTTP_CONNECTION"] == "Upgrade"
    assert requests.get(px.url("/fine")).status_code == 200


def test_response_payloads_and_compression_apply_to_bay_routes(fleet, tmp_path, request):
    wasm = os.path.join(BUILD, "examples", "payloads", "cache.wasm")
    mod = "\n".join(["[[modules]]", 'name = "cache"', f"wasm = {toml_str(wasm)}", 'routes = ["/.*"]',
                     'phase = "response"', 'config = { ttl = "60" }'])
    px, log = start_upstream(fleet, tmp_path, request, mothership={"compression": True}, more=mod + "\n")
    r = requests.get(px.url("/stream?n=200"), headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = r.raw.read()
    assert r.status_code == 200 and r.headers["Cache-Control"] == "public, max-age=60"
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == b"".join(b"chunk %d\n" % i for i in range(200))
    # zstd too (preferred on equal q), one complete frame within the 256 KiB window
    r = requests.get(px.url("/stream?n=200"), headers={"Accept-Encoding": "gzip, zstd"}, stream=True)
    raw = r.raw.read()
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "zstd"
    d = zstandard.ZstdDecompressor(max_window_size=1 << 18).decompressobj()
    assert d.decompress(raw) == b"".join(b"chunk %d\n" % i for i in range(200)) and d.eof


def test_http2_clients_reach_the_bay_through_the_same_links(fleet, tmp_path, request):
    up = Upstream(tmp_path, 2)
    request.addfinalizer(up.stop)
    port = free_port()
    px = start_proxy(fleet, binds={"http": {"port": port, "h2c": True}}, extra=up.toml(), wait=False)
    px.ms.event("fleet_ready", timeout=15)
    body = tmp_path / "body"
    body.write_bytes(b"z" * 100000)
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", f"@{body}",
                          f"http://127.0.0.1:{port}/h2?x=1"], capture_output=True, timeout=30)
    j = json.loads(out.stdout)
    assert j["body_len"] == 100000 and j["params"]["SERVER_PROTOCOL"] == "HTTP/2"
    assert j["params"]["QUERY_STRING"] == "x=1" and j["params"]["CONTENT_LENGTH"] == "100000"
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/stream?n=50"],
                         capture_output=True, timeout=30)
    assert out.stdout == b"".join(b"chunk %d\n" % i for i in range(50))


def test_the_c_http_bay_with_workers_serves_files_streams_and_upgrades(fleet, tmp_path):
    bay = os.path.join(BUILD, "examples", "bays", "http-bay")
    (tmp_path / "page.txt").write_bytes(b"a page\n" * 100)
    text = "\n".join(["[[bays.http]]", 'name = "app"', f"command = {toml_str(bay)}", f"cwd = {toml_str(str(tmp_path))}",
                      'routes = ["http:/.*"]', "workers = 2", "threads = 2"])
    px = start(fleet, text + "\n")
    assert requests.get(px.url("/")).text.startswith("hello from app")
    r = requests.post(px.url("/echo?q=1"), data=b"x" * 200000, headers={"Content-Type": "a/b"})
    assert r.status_code == 200 and r.content == b"x" * 200000 and r.headers["x-echo-query"] == "q=1"
    r = requests.get(px.url("/file/page.txt"))
    assert r.status_code == 200 and r.content == b"a page\n" * 100
    assert requests.get(px.url("/stream?n=7")).text == "".join(f"chunk {i}\n" for i in range(1, 8))
    # more requests at once than one process has threads: links to both processes
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda i: requests.get(px.url(f"/headers?i={i}")).status_code, range(40)))
    assert codes == [200] * 40
    assert msum(px.metrics(), "mothership_hbay_links_cap", bay="app") == 4
    with Raw(px.port) as c:  # the bay's 101 reaches the client with its headers and the standard phrase
        c.send(raw_request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")]))
        r = c.response(head_only=True)
        assert r.status == 101 and r.reason == "Switching Protocols" and r.header("sec-websocket-accept")


def test_a_slow_client_slows_the_bay_and_memory_stays_bounded(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    total = 32 << 20

    def sent():
        try:
            return int(open(log + ".sent").read() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def rss_kb():
        for ln in open(f"/proc/{px.pid()}/status"):
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", px.port))
    s.sendall(raw_request("GET", f"/big?kb={total >> 10}"))
    # the bay gets going, then stalls: Mothership stopped reading its link
    wait_until(lambda: sent() >= 1 << 20, what="the bay sending")
    last = [-1, time.monotonic()]

    def stalled():
        v = sent()
        if v != last[0]:
            last[0], last[1] = v, time.monotonic()
        return time.monotonic() - last[1] > 1.0
    wait_until(stalled, timeout=20, what="the bay to stall")
    assert sent() < 16 << 20, "the bay went on sending to a client that does not read"
    assert rss_kb() < 64 * 1024
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, got = bytes(buf).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % total in head
    n = len(got)
    while n < total:
        d = s.recv(1 << 20)
        assert d, "the response was cut"
        n += len(d)
    assert n == total
    s.close()


def test_one_link_in_all_is_shared_by_every_worker(fleet, tmp_path, request):
    # the bay serves one request at a time: the workers take turns with its one link
    px, log = start_upstream(fleet, tmp_path, request, threads=1, extra={"request_timeout": "20s"},
                             mothership={"workers": 4})
    assert statuses_at_once(px, [f"/sleep?ms=50&i={i}" for i in range(32)], clients=16) == [200] * 32
    m = px.metrics()
    assert msum(m, "mothership_hbay_links_cap", bay="app") == 1
    assert msum(m, "mothership_hbay_links", bay="app", state="busy") == 0
    assert len({e["link"] for e in seen(log)}) == 1  # the bay's only thread served them all


def test_an_idle_link_on_another_worker_gives_way_to_a_starved_one(fleet, tmp_path, request):
    # one link in all; requests one after the other on new connections land
    # on different workers, and the link sits idle on the last one's
    px, log = start_upstream(fleet, tmp_path, request, threads=1, extra={"request_timeout": "4s"},
                             mothership={"workers": 4})
    codes = []
    for i in range(12):
        with Raw(px.port, timeout=10) as c:
            c.send(raw_request("GET", f"/one?i={i}"))
            codes.append(c.response().status)
    assert codes == [200] * 12
    assert msum(px.metrics(), "mothership_hbay_links_docked_total", bay="app") >= 2  # it moved between workers


def test_workers_starved_before_the_first_dock_open_links_once_it_raises_the_cap(fleet, tmp_path, request):
    # the first link docks late; requests on the other workers wait for it
    # (one link in all until a Dock says), then may open their own
    px, log = start_upstream(fleet, tmp_path, request, threads=8, extra={"request_timeout": "2500ms"},
                             mothership={"workers": 4}, dock_delay_ms=1000)
    assert statuses_at_once(px, [f"/sleep?ms=2000&i={i}" for i in range(8)], clients=8) == [200] * 8


def test_a_tunnel_whose_link_fails_a_write_closes_the_client(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/ws-deaf", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                        ("Sec-WebSocket-Version", "13")]))
        r = c.response(head_only=True)
        assert r.status == 101
        c.s.settimeout(0.5)
        chunk = b"x" * 65536
        try:
            for _ in range(256):  # until the bay's unread link backs up to the client
                c.s.sendall(chunk)
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            pass  # already cut
        c.s.settimeout(10)
        assert c.closed(10), "the client's tunnel outlived its link"


def test_a_link_that_docks_for_a_request_gone_meanwhile_gives_way(fleet, tmp_path, request):
    # one link in all, docking late; the request it was opened for times
    # out before the Dock, and one on another worker waits for that link
    px, log = start_upstream(fleet, tmp_path, request, threads=1, extra={"request_timeout": "1500ms"},
                             mothership={"workers": 4}, dock_delay_ms=2500)
    slow = log + ".slowdock"
    for i in range(3):  # which worker takes a connection is the kernel's choice: a few rounds
        open(slow, "w").close()
        with Raw(px.port, timeout=10) as a:
            a.send(raw_request("GET", f"/gone?i={i}"))
            assert a.response().status == 504
        os.unlink(slow)  # the links opened from now on dock at once
        with Raw(px.port, timeout=10) as b:
            b.send(raw_request("GET", f"/waits?i={i}"))
            assert b.response().status == 200, f"round {i}"
        # the bay breaks the link: the next round starts with none
        with Raw(px.port, timeout=10) as c:
            c.send(raw_request("POST", "/break", body=b"x"))
            assert c.response().status == 502
        wait_until(lambda: msum(px.metrics(), "mothership_hbay_links", bay="app", state="idle") == 0,
                   what="no link left")


def test_a_tunnel_cut_by_a_protocol_error_is_counted_once(fleet, tmp_path, request):
    px, log = start_upstream(fleet, tmp_path, request)
    with Raw(px.port, timeout=10) as c:
        c.send(raw_request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")]))
        assert c.response(head_only=True).status == 101
        c.send(b"garbage")
        assert c.closed(5)
    wait_until(lambda: msum(px.metrics(), "mothership_hbay_protocol_errors_total", bay="app") == 1,
               what="the protocol error counted")
    m = px.metrics()
    assert msum(m, "mothership_responses_total", code="1xx") == 1
    assert msum(m, "mothership_hbay_requests_total", bay="app") == 1
    assert msum(m, "mothership_hbay_requests_total", bay="app", result="replied") == 1


def test_a_reload_that_moves_an_upstreams_bind_sends_no_request_to_the_old_one(fleet, tmp_path, request):
    import signal
    os.makedirs(tmp_path / "old")
    old = Upstream(tmp_path / "old", 2)
    request.addfinalizer(old.stop)
    px = start_proxy(fleet, mothership={"workers": 1}, extra=old.toml(), wait=False)
    px.ms.event("fleet_ready", timeout=15)
    assert requests.get(px.url("/before")).status_code == 200  # a link to the old bind, idle now
    os.makedirs(tmp_path / "new")
    new = Upstream(tmp_path / "new", 2)
    request.addfinalizer(new.stop)
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(old.sock, new.sock))
    start = len(px.ms.lines)
    px.ms.signal(signal.SIGHUP)
    px.ms.event("reloaded", start=start, timeout=10)
    for i in range(3):
        assert requests.get(px.url(f"/after?i={i}")).status_code == 200
    assert [e["params"]["PATH_INFO"] for e in seen(old.log)] == ["/before"]
    assert [e["params"]["PATH_INFO"] for e in seen(new.log)] == ["/after"] * 3
