"""The access log through the real binary: one line per answered request,
as JSON (the common log schema: ts, level, source "access", event
"request", msg, and the request's fields) or text, on Mothership's output
or in access_log_path (reopened on SIGHUP); global or per bind. Every kind
of answer gives its line: proxied over HTTP/1.0, HTTP/1.1 and HTTP/2, a
WebSocket tunnel to a ship and a bay's WebSocket client (101), an HTTP bay,
a static file, a 404, a payload's block, a redirect, and the errors
answered before a request reaches anything (400, 408, 413, 431). A writer
that cannot keep up (a FIFO nobody reads) drops and counts lines, and the
data plane goes on serving."""
import asyncio
import datetime
import json
import os
import re
import signal
import subprocess
import time

import pytest
import websockets

from conftest import BUILD, run_ms
from fleet_helpers import free_port, toml_str
from hbay_helpers import hbay_toml, start_bays
from http_helpers import ModuleFleet, Raw, echo_ship, msum, raw_request, start_proxy, wait_until
from tls_helpers import make_cert

BAYS = os.path.join(BUILD, "examples", "bays")
WASM = os.path.join(BUILD, "examples", "payloads")

FIELDS = {"ts", "level", "source", "event", "msg", "request_id", "client", "client_port", "method", "path",
          "status", "bytes", "duration_ms", "target", "upstream_ms", "protocol", "bind"}


def access_lines(ms):
    with ms.cond:
        lines = [l for _, l in ms.lines]
    out = []
    for line in lines:
        if line.startswith("{") and '"source":"access"' in line:
            out.append(json.loads(line))
    return out


def access_line(ms, timeout=5.0, **want):
    """The first JSON access line whose fields have these values (waits)."""
    found = []

    def look():
        found[:] = [e for e in access_lines(ms) if all(e.get(k) == v for k, v in want.items())]
        return found

    wait_until(look, timeout=timeout, what=f"an access line with {want}")
    return found[0]


def check_schema(e):
    assert set(e) - {"path_cut"} == FIELDS, e
    assert e["level"] == "info" and e["source"] == "access" and e["event"] == "request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]), e["ts"]
    ts = datetime.datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - ts).total_seconds()) < 60
    shown = e["path"] if len(e["path"]) <= 64 else e["path"][:64] + "..."
    assert e["msg"] == f"{e['method']} {shown or '-'} {e['status']}"
    assert isinstance(e["duration_ms"], (int, float)) and 0 <= e["duration_ms"] < 60000
    assert e["upstream_ms"] is None or 0 <= e["upstream_ms"] <= e["duration_ms"]
    assert e["client"] == "127.0.0.1"


def checked_line(ms, timeout=5.0, **want):
    """access_line, its schema checked."""
    e = access_line(ms, timeout, **want)
    check_schema(e)
    return e


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    site = tmp_path_factory.mktemp("alogsite")
    (site / "hello.txt").write_bytes(b"hello\n")
    f = ModuleFleet(tmp_path_factory, "alog")
    auth = (f'[[modules]]\nname = "auth"\nwasm = {toml_str(os.path.join(WASM, "auth.wasm"))}\n'
            'routes = ["/admin/.*"]\nphase = "request"\nconfig = { token = "s3cret" }\n')
    bay = (f'[[bays.websocket]]\nname = "echo"\ncommand = {toml_str(os.path.join(BAYS, "echo-bay"))}\n'
           'routes = ["http:/bay.*"]\n')
    p = start_bays(f, echo_ship("app", routes=["http:/(app|ws).*", "http:/admin/.*"]).toml(), bay,
                   hbay_toml("hb", routes=["http:/hb/.*"]),
                   binds={"http": {"port": free_port(), "h2c": True}},
                   http={"max_body_size": 1000, "header_timeout": "1s"},
                   mothership={"access_log": "json"},
                   extra=f'[[mothership.static_dirs]]\npath = {toml_str(str(site))}\nprefix = "/s"\n' + auth)
    yield p
    f.cleanup()


def test_a_proxied_request_over_http11(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/x?q=1", [("X-Request-Id", "alog-proxy")]))
        r = c.response()
        port = c.s.getsockname()[1]
    assert r.status == 200
    e = checked_line(px.ms, request_id="alog-proxy")
    assert (e["method"], e["path"], e["status"], e["target"], e["protocol"], e["bind"]) == \
        ("GET", "/app/x?q=1", 200, "app", "HTTP/1.1", "http")
    assert e["client_port"] == port
    assert e["bytes"] == len(r.raw_head) + 4 + len(r.body)
    assert e["upstream_ms"] is not None


def wire_bytes(port, target, rid, *extra):
    """The bytes of one answer as they reach the client (Connection: close:
    all of them, up to the close)."""
    with Raw(port) as c:
        c.send(raw_request("GET", target, [("X-Request-Id", rid), ("Connection", "close"), *extra]))
        return c.read_all(timeout=5)


@pytest.mark.parametrize("query", ["chunked=1", "eof=1"])
def test_bytes_count_the_end_of_a_body_written_after_the_ships_answer_ended(px, query):
    """A chunked answer to the client ends with a last chunk that Mothership
    writes once the ship's response has ended: the line counts it too."""
    data = wire_bytes(px.port, f"/app/x?{query}&size=3000", f"alog-end-{query[:3]}")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"0\r\n\r\n"), data[-40:]
    e = checked_line(px.ms, request_id=f"alog-end-{query[:3]}")
    assert e["bytes"] == len(data)


def test_http10_and_a_generated_request_id(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/app/old", version="HTTP/1.0"))
        r = c.response()
    assert r.status == 200
    e = checked_line(px.ms, path="/app/old")
    assert e["protocol"] == "HTTP/1.0"
    assert re.fullmatch(r"[0-9a-f]{18}", e["request_id"])   # none was sent: one is made


def test_http2(px):
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-H", "X-Request-Id: alog-h2",
                          "-o", "/dev/null", "-w", "%{http_version} %{http_code}", px.url("/app/two")],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "2 200", out
    e = checked_line(px.ms, request_id="alog-h2")
    assert (e["protocol"], e["status"], e["target"], e["path"]) == ("HTTP/2", 200, "app", "/app/two")
    assert e["client_port"] > 0


def test_static_file_and_404(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/s/hello.txt", [("X-Request-Id", "alog-static")]))
        r = c.response()
        c.send(raw_request("GET", "/nowhere", [("X-Request-Id", "alog-404")]))
        r404 = c.response()
    assert r.status == 200 and r.body == b"hello\n" and r404.status == 404
    e = checked_line(px.ms, request_id="alog-static")
    assert (e["status"], e["target"], e["upstream_ms"]) == (200, "static", None)
    assert e["bytes"] == len(r.raw_head) + 4 + 6
    e = checked_line(px.ms, request_id="alog-404")
    assert (e["status"], e["target"]) == (404, "")


def test_a_payload_block(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/admin/panel", [("X-Request-Id", "alog-block")]))
        assert c.response().status == 401
    e = checked_line(px.ms, request_id="alog-block")
    assert (e["status"], e["target"]) == (401, "payload")


def test_an_http_bay(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/hb/hello", [("X-Request-Id", "alog-hbay")]))
        r = c.response()
    e = checked_line(px.ms, request_id="alog-hbay")
    assert (e["status"], e["target"], e["path"]) == (r.status, "hb", "/hb/hello")
    assert e["upstream_ms"] is not None


def test_websocket_to_a_ship_and_to_a_bay(px):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                          ("Sec-WebSocket-Version", "13"), ("X-Request-Id", "alog-tunnel")]))
        assert c.response(head_only=True).status == 101
        e = access_line(px.ms, request_id="alog-tunnel")   # at the upgrade, while the tunnel is open
    check_schema(e)
    assert (e["status"], e["target"], e["method"]) == (101, "app", "GET")

    async def bay():
        async with websockets.connect(f"ws://127.0.0.1:{px.port}/bay/room",
                                      extra_headers={"X-Request-Id": "alog-bay"}) as ws:
            await ws.send("hi")
            await ws.recv()
            return access_line(px.ms, request_id="alog-bay")
    e = asyncio.run(asyncio.wait_for(bay(), 20))
    check_schema(e)
    assert (e["status"], e["target"], e["path"]) == (101, "echo", "/bay/room")


@pytest.mark.parametrize("case", ["400", "garbage", "414", "431", "413", "408"])
def test_errors_before_anything_is_reached(px, case):
    with Raw(px.port) as c:
        port = c.s.getsockname()[1]
        if case == "400":
            c.send(b"GET /app/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        elif case == "garbage":   # after a request, a TLS ClientHello on the plain port: not even a method
            c.send(raw_request("GET", "/app/before", [("X-Request-Id", "alog-before")]))
            assert c.response().status == 200
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40)
        elif case == "414":
            c.send(raw_request("GET", "/app/" + "a" * 9000))
        elif case == "431":
            c.send(raw_request("GET", "/app/big", [("X-Big", "a" * 20000)]))
        elif case == "413":
            c.send(raw_request("POST", "/app/up", [("Content-Length", "5000")]))
        else:
            c.send(b"GET /app/slow HTTP/1.1\r\nHost: t\r\n")  # the head never ends
        r = c.response()
    status = 400 if case == "garbage" else int(case)
    assert r.status == status
    e = checked_line(px.ms, client_port=port, status=status, timeout=8)
    assert (e["status"], e["target"], e["upstream_ms"]) == (status, "", None)
    if case == "garbage":
        assert (e["method"], e["path"], e["msg"], e["duration_ms"]) == ("-", "", "- - 400", 0), e
        assert e["request_id"] == r.header("X-Request-Id") != "alog-before"   # its own
    assert e["bytes"] == len(r.raw_head) + 4 + len(r.body)
    if case == "414":   # the path as far as it came, bounded
        assert e.get("path_cut") is True and e["path"] == ("/app/" + "a" * 9000)[:512], e
        assert e["msg"] == "GET " + e["path"][:64] + "... 414"


def test_metrics_count_lines(px):
    m = px.metrics()
    assert msum(m, "mothership_access_log_lines_total") >= 1
    assert msum(m, "mothership_access_log_dropped_total") == 0


# ------------------------------------------------------------------ text, a file, reopen
TEXT = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) access (\S+) (\S+) "(\S+) (\S+) (HTTP/[\d.]+)" '
                  r'(\d{3}) (\d+) (\d+\.\d{3}) (\S+) (\S+) (\S+)$')


def file_lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f]
    except FileNotFoundError:
        return []


def wait_file_line(path, rid, what):
    """Wait for a line with request id rid in the log file at path."""
    wait_until(lambda: any(rid in l for l in file_lines(path)), what=what)


def rotate(ms, path, event):
    """logrotate's part: path moved to path.1, then a SIGHUP; waits for the
    event that answers it."""
    os.rename(path, str(path) + ".1")
    start = len(ms.lines)
    ms.signal(signal.SIGHUP)
    ms.event(event, start=start)


def get_ok(port, target, rid):
    """GET target with X-Request-Id rid: the response, a 200."""
    with Raw(port) as c:
        c.send(raw_request("GET", target, [("X-Request-Id", rid)]))
        r = c.response()
    assert r.status == 200, r
    return r


def test_text_to_a_file_reopened_on_sighup(fleet, tmp_path):
    path = tmp_path / "access.log"
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                     mothership={"access_log": "text", "access_log_path": str(path)})
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/one?a=b", [("X-Request-Id", "t-one")]))
        r = c.response()
    wait_file_line(path, "t-one", "the first line in the file")
    line = [l for l in file_lines(path) if "t-one" in l][0]
    m = TEXT.match(line)
    assert m, line
    ts, bind, client, method, p, proto, status, nbytes, dur, target, up, rid = m.groups()
    assert (bind, client, method, p, proto, status, target, rid) == \
        ("http", "127.0.0.1", "GET", "/one?a=b", "HTTP/1.1", "200", "app", "t-one"), line
    assert int(nbytes) == len(r.raw_head) + 4 + len(r.body) and float(up) <= float(dur)
    get_ok(px.port, "/two", "t-two")
    wait_file_line(path, "t-two", "the second line")
    m = TEXT.match([l for l in file_lines(path) if "t-two" in l][0])
    assert m.group(5) == "/two" and m.group(7) == "200" and m.group(10) == "app" and m.group(11) != "-"
    assert not any('"source"' in l for _, l in px.ms.lines if "t-two" in l)   # not on stdout
    # logrotate: the file is moved away, Mothership is told (SIGHUP), it writes a new one
    rotate(px.ms, path, "reloaded")
    get_ok(px.port, "/three", "t-three")
    wait_file_line(path, "t-three", "a line in the reopened file")
    assert not any("t-three" in l for l in file_lines(str(path) + ".1"))
    assert any("t-two" in l for l in file_lines(str(path) + ".1"))


def test_a_refused_reload_still_lets_a_rotated_file_go(fleet, tmp_path):
    """logrotate's SIGHUP comes whether or not the manifest on disk is
    valid: a reload refused for a problem in it still opens the file
    again, so lines do not go on into the rotated one."""
    path = tmp_path / "access.log"
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                     mothership={"access_log": "text", "access_log_path": str(path)})
    get_ok(px.port, "/one", "r-one")
    wait_file_line(path, "r-one", "the first line in the file")
    manifest = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    with open(manifest, "a") as f:
        f.write("\n[mothership\n")                     # a typo being edited
    rotate(px.ms, path, "reload_refused")
    get_ok(px.port, "/two", "r-two")
    wait_file_line(path, "r-two", "a line in the reopened file")
    assert not any("r-two" in l for l in file_lines(str(path) + ".1"))


def test_per_bind_setting_overrides_the_global_one(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*", "quiet:/.*", "loud:/.*"]),
                     binds={"http": free_port(), "quiet": {"port": free_port(), "access_log": "off"},
                            "loud": {"port": free_port(), "access_log": "json"}},
                     mothership={"access_log": "text"})
    for bind, rid in (("quiet", "b-quiet"), ("loud", "b-loud"), ("http", "b-text")):
        get_ok(px.binds[bind], "/x", rid)
    px.ms.wait_for(r" access http 127\.0\.0\.1 \"GET /x HTTP/1\.1\" 200 .* b-text$")
    e = access_line(px.ms, request_id="b-loud")
    assert e["bind"] == "loud"
    assert not any("b-quiet" in l for _, l in px.ms.lines)   # logged before b-text, if at all (one worker)


def test_bytes_of_a_compressed_answer(fleet):
    """What the encoder holds until the ship's response ends (all of a
    small body) is written after it: the line counts it."""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                     mothership={"access_log": "json", "compression": True})
    data = wire_bytes(px.port, "/z?size=3000&ctype=text/plain", "alog-gzip", ("Accept-Encoding", "gzip"))
    assert b"Content-Encoding: gzip" in data and data.endswith(b"0\r\n\r\n"), data[:300]
    e = checked_line(px.ms, request_id="alog-gzip")
    assert e["bytes"] == len(data)


def test_off_by_default(fleet):
    px = start_proxy(fleet, echo_ship("app"))
    get_ok(px.port, "/x", "d-none")
    assert "mothership_access_log_dropped_total" in px.metrics_text()
    assert msum(px.metrics(), "mothership_access_log_lines_total") == 0
    assert not any("d-none" in l for _, l in px.ms.lines)


def test_a_reload_turns_it_on_and_moves_it(fleet, tmp_path):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]

    def reload(text):
        with open(path) as f:
            old = f.read()
        with open(path, "w") as f:
            f.write(old.replace("[mothership]\n", "[mothership]\n" + text + "\n", 1))
        start = len(px.ms.lines)
        px.ms.signal(signal.SIGHUP)
        e = px.ms.event("reloaded", start=start)
        assert "data plane swapped" in e["msg"], e

    def get(rid):
        get_ok(px.port, "/x", rid)

    get("r-before")
    reload('access_log = "json"')
    get("r-on")
    access_line(px.ms, request_id="r-on")
    assert not any("r-before" in l for _, l in px.ms.lines)
    log = tmp_path / "moved.log"
    reload(f"access_log_path = {toml_str(str(log))}")
    get("r-file")
    wait_until(lambda: any("r-file" in l for l in file_lines(log)), what="the line in the new file")
    assert not any("r-file" in l for _, l in px.ms.lines)


def test_a_redirect(fleet, tmp_path):
    crt, key = make_cert(tmp_path, "server", names=("localhost", "127.0.0.1"))
    px = start_proxy(fleet, echo_ship("app", routes=["https:/.*"]),
                     binds={"https": free_port(), "web": {"port": free_port(), "redirect_to_https": True}},
                     mothership={"access_log": "json"},
                     extra=f"[mothership.tls]\ncert = {toml_str(crt)}\nkey = {toml_str(key)}\n")
    with Raw(px.binds["web"]) as c:
        c.send(raw_request("GET", "/r?x=1", [("X-Request-Id", "alog-redirect")], host="localhost"))
        assert c.response().status == 308
    e = checked_line(px.ms, request_id="alog-redirect")
    assert (e["status"], e["target"], e["bind"], e["path"]) == (308, "redirect", "web", "/r?x=1")


# ------------------------------------------------------------------ a writer that cannot keep up
def test_a_fifo_nobody_reads_drops_and_counts_and_serving_goes_on(fleet, tmp_path):
    fifo = str(tmp_path / "access.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # a reader that does not read (yet)
    try:
        px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                         mothership={"access_log": "json", "access_log_path": fifo})
        n = 6000                            # more than a worker's ring and what the pipe holds
        with Raw(px.port) as c:
            for i in range(0, n, 50):
                c.send(b"".join(raw_request("GET", f"/f{i + k}") for k in range(50)))
                for _ in range(50):
                    assert c.response().status == 200
        m = px.metrics()
        assert msum(m, "mothership_access_log_dropped_total") > 0
        with Raw(px.port) as c:             # still serving
            c.send(raw_request("GET", "/after"))
            assert c.response().status == 200
        # now read: every request is either a line or a drop
        got = bytearray()

        def read_what_is_there():
            while True:
                try:
                    d = os.read(rfd, 65536)
                except BlockingIOError:
                    break
                if not d:
                    break
                got.extend(d)

        def settled():
            read_what_is_there()
            m = px.metrics()
            return (msum(m, "mothership_access_log_lines_total") + msum(m, "mothership_access_log_dropped_total")
                    == n + 1)
        wait_until(settled, timeout=10, what="lines + drops = requests")
        read_what_is_there()   # a line counts once its newline is in the pipe: the rest of it is there now
        lines = [json.loads(l) for l in bytes(got).decode().splitlines() if l]
        assert 0 < len(lines) < n + 1
        assert all(e["source"] == "access" and e["status"] == 200 for e in lines)
    finally:
        os.close(rfd)


def test_a_reader_that_goes_away_is_reported_once_and_lines_are_dropped(fleet, tmp_path):
    fifo = str(tmp_path / "gone.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]),
                     mothership={"access_log": "text", "access_log_path": fifo})

    def get(rid):
        get_ok(px.port, "/x", rid)
    get("g-one")
    got = bytearray()

    def read_line():
        try:
            got.extend(os.read(rfd, 65536))
        except BlockingIOError:
            pass
        return b"g-one\n" in got
    wait_until(read_line, what="the first line through the FIFO")
    os.close(rfd)                                  # the reader is gone: writes fail (EPIPE)
    get("g-two")
    e = px.ms.event("access_log_failed")
    assert e["level"] == "warn" and "write failed" in e["msg"], e
    get("g-three")
    wait_until(lambda: msum(px.metrics(), "mothership_access_log_dropped_total") >= 2, what="two lines dropped")
    assert len(px.ms.events("access_log_failed")) == 1
    assert msum(px.metrics(), "mothership_access_log_lines_total") == 1


# ------------------------------------------------------------------ manifest
def test_manifest_errors(manifest):
    p = manifest("""
        [mothership]
        access_log = "jsn"

        [mothership.bind]
        http = { address = "127.0.0.1:1", access_log = 3 }
    """)
    r = run_ms("clearance", "-c", p)
    assert r.code != 0
    out = r.out + r.err
    assert 'unknown access_log "jsn"' in out and 'did you mean "json"' in out, out
    assert "access_log" in out and "2:" in out, out
