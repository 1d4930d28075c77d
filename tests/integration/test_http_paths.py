"""Data plane, request targets: control bytes, spaces and '#' in a target
get 400 and nothing reaches the ship; the path is normalised once
(unreserved percent-encodings decoded, other hex upper-cased, slashes
merged, dot segments removed) and that one path is what static dirs,
payloads, routes and strip_prefix see and what the ship receives; ambiguous
forms (%2F, %5C, %00, '\\', ';') get 400 unless the route has
raw_path = true. The ships here relay to recorders run by the test itself:
they keep every byte that arrives, so "nothing reached the ship" is checked
on the bytes (see docs/proxy.md, "Request targets and path normalisation")."""
import json
import os
import socket
import threading

import pytest

from conftest import BUILD
from fleet_helpers import PY, app
from http_helpers import ModuleFleet, Raw, free_port, raw_request, start_proxy, toml_value

WASM = os.path.join(BUILD, "examples", "payloads")
STATIC_BODY = b"static file body\n"


class Recorder:
    """A ship stand-in: accepts connections, keeps every byte received (in
    arrival order), answers each request head with 200 and a JSON body
    {"ship", "target"}. Requests carry no body here except with a
    Content-Length, which is read and kept too."""

    def __init__(self, name):
        self.name = name
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.chunks = []            # every recv(), in arrival order
        self.targets = []           # request targets, in order
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    with self.lock:
                        self.chunks.append(d)
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                target = lines[0].split(b" ")[1].decode("latin-1")
                n = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v.strip())
                while len(buf) < n:
                    d = s.recv(65536)
                    if not d:
                        return
                    with self.lock:
                        self.chunks.append(d)
                    buf += d
                buf = buf[n:]
                with self.lock:
                    self.targets.append(target)
                body = json.dumps({"ship": self.name, "target": target}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body)
        except OSError:
            pass
        finally:
            s.close()

    def mark(self):
        with self.lock:
            return len(self.chunks)

    def since(self, mark):
        with self.lock:
            return b"".join(self.chunks[mark:])

    def close(self):
        self.lsock.close()


def ship_toml(rec, routes):
    """A ship that relays each connection to the recorder (a ship's port
    must be held by the ship's own process)."""
    port = free_port()
    return "\n".join([
        "[[fleet.web]]", f'name = "{rec.name}"', f"command = {json.dumps(PY)}",
        f"args = {json.dumps([app('relay.py'), str(port), str(rec.port)])}",
        f'bind = "tcp://127.0.0.1:{port}"', f"routes = {toml_value(routes)}", ""])


def module_toml(name, wasm, routes, phase="request", config=None):
    lines = ["[[modules]]", f'name = "{name}"', f'wasm = "{os.path.join(WASM, wasm)}"',
             f"routes = {toml_value(routes)}", f'phase = "{phase}"']
    if config:
        lines.append(f"config = {toml_value(config)}")
    return "\n".join(lines) + "\n"


def proxy(tmp_path_factory, name, recs, routes, extra="", static=None):
    f = ModuleFleet(tmp_path_factory, name)
    p = start_proxy(f, static=static, extra="".join(ship_toml(recs[n], routes[n]) for n in recs) + extra)
    p.ms.event("fleet_ready", timeout=15)
    p.recs = recs
    return f, p


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    """One Mothership: a static dir /assets; ships admin (/admin(/.*)?,
    behind the auth payload), svc (strip_prefix /svc), api (with the cache
    payload on the response) and app (/.*)."""
    root = tmp_path_factory.mktemp("paths-static")
    (root / "app.js").write_bytes(STATIC_BODY)
    recs = {n: Recorder(n) for n in ("admin", "svc", "api", "app")}
    routes = {"admin": ["http:/admin(/.*)?"],
              "svc": [{"bind": "http", "pattern": "/svc(/.*)?", "strip_prefix": "/svc"}],
              "api": ["http:/api/.*"],
              "app": ["http:/.*"]}
    extra = (module_toml("auth", "auth.wasm", ["/admin(/.*)?"], config={"token": "s3cret"}) +
             module_toml("cache", "cache.wasm", ["/api/.*"], phase="response", config={"ttl": "60"}))
    f, p = proxy(tmp_path_factory, "paths", recs, routes, extra, static=[{"path": str(root), "prefix": "/assets"}])
    yield p
    f.cleanup()
    for r in recs.values():
        r.close()


@pytest.fixture(scope="module")
def rawpx(tmp_path_factory):
    """Ships priv (/files/private/.*), files (/files/.* with
    raw_path = true) and app (/.*), in this manifest order."""
    recs = {n: Recorder(n) for n in ("priv", "files", "app")}
    routes = {"priv": ["http:/files/private/.*"],
              "files": [{"bind": "http", "pattern": "/files/.*", "raw_path": True}],
              "app": ["http:/.*"]}
    f, p = proxy(tmp_path_factory, "rawpaths", recs, routes)
    yield p
    f.cleanup()
    for r in recs.values():
        r.close()


def send(px, target, headers=None):
    """One request with this exact target on a fresh connection."""
    with Raw(px.port) as c:
        c.send(raw_request("GET", target, headers))
        return c.response()


def marks(px):
    return {n: r.mark() for n, r in px.recs.items()}


def received_since(px, m):
    return {n: r.since(m[n]) for n, r in px.recs.items()}


def assert_nothing_reached_a_ship(px, m):
    """Nothing since the marks, proven by a request sent after it: only the
    sentinel's bytes arrived."""
    r = send(px, "/sentinel-after")
    assert r.status == 200 and r.json()["target"] == "/sentinel-after"
    got = received_since(px, m)
    app = got.pop("app")
    assert app.startswith(b"GET /sentinel-after HTTP/1.1\r\n") and app.count(b"HTTP/1.1") == 1, app
    assert all(v == b"" for v in got.values()), got


def ship_got(px, m, ship):
    """The one request line ship received since the marks; no other ship got anything."""
    got = received_since(px, m)
    data = got.pop(ship)
    assert all(v == b"" for v in got.values()), got
    assert data.count(b" HTTP/1.1\r\n") == 1, data
    return data.split(b"\r\n", 1)[0].decode("latin-1")


# ------------------------------------------------------------------ control bytes and '#'
@pytest.mark.parametrize("byte", [b"\t", b"\x0c", b"\x0b", b"\x00", b"\x7f", b"\x01", b"\x1f"],
                         ids=["tab", "ff", "vt", "nul", "del", "soh", "us"])
@pytest.mark.parametrize("where", ["end", "middle", "query"])
def test_control_bytes_in_the_target_get_400_and_reach_no_ship(px, byte, where):
    target = {"end": b"/app/admin" + byte,
              "middle": b"/app" + byte + b"/admin",
              "query": b"/app/admin?x=" + byte}[where]
    m = marks(px)
    with Raw(px.port) as c:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: test\r\n\r\n")
        r = c.response()
        assert r.status == 400, r
        assert c.closed()
    assert_nothing_reached_a_ship(px, m)


@pytest.mark.parametrize("target", ["/x#/../admin", "/admin#", "/a?b#c", "#"])
def test_a_hash_in_the_target_gets_400_and_reaches_no_ship(px, target):
    m = marks(px)
    r = send(px, target)
    assert r.status == 400, r
    assert_nothing_reached_a_ship(px, m)


# ------------------------------------------------------------------ what the ship receives
@pytest.mark.parametrize("target,ship,line", [
    ("/%61pp/x", "app", "GET /app/x HTTP/1.1"),
    ("/x/../app", "app", "GET /app HTTP/1.1"),
    ("//app", "app", "GET /app HTTP/1.1"),
    ("/a/%2e%2e/app", "app", "GET /app HTTP/1.1"),
    ("/a/./b", "app", "GET /a/b HTTP/1.1"),
    ("/a/.", "app", "GET /a/ HTTP/1.1"),
    ("/a/b/..", "app", "GET /a/ HTTP/1.1"),
    ("/a//b///c", "app", "GET /a/b/c HTTP/1.1"),
    ("/%7Euser/caf%c3%a9?q=%2e%2E", "app", "GET /~user/caf%C3%A9?q=%2e%2E HTTP/1.1"),
    ("/%41%5a%30%2d%2e%5f%7e", "app", "GET /AZ0-._~ HTTP/1.1"),
    ("/%3b%25%20", "app", "GET /%3B%25%20 HTTP/1.1"),
    ("/p?a=%zz&b=../..//x&c=%2F", "app", "GET /p?a=%zz&b=../..//x&c=%2F HTTP/1.1"),
    ("/caf\xc3\xa9", "app", "GET /caf\xc3\xa9 HTTP/1.1"),
    ("/x/..", "app", "GET / HTTP/1.1"),
])
def test_the_ship_receives_the_normalised_path(px, target, ship, line):
    m = marks(px)
    r = send(px, target)
    assert r.status == 200, r
    assert ship_got(px, m, ship) == line


@pytest.mark.parametrize("target", [
    "/%2e%2e/admin", "/..", "/../x", "/a/../../x", "/a/%2E%2E/%2e%2e/x",   # above the root
    "/a%2fb", "/a%2Fb", "/a%5cb", "/a%00b", "/a\\b", "/admin;x", "/x;y/z",  # ambiguous, no raw_path route
    "/%", "/a%4", "/%zz", "/%g1/x",                                         # malformed escapes
    "*", "http://test/admin", "test:80",                                    # not origin-form
])
def test_refused_targets_get_400_and_reach_no_ship(px, target):
    m = marks(px)
    r = send(px, target)
    assert r.status == 400, r
    assert_nothing_reached_a_ship(px, m)


def test_options_asterisk_is_not_refused_as_a_target(px):
    with Raw(px.port) as c:
        c.send(raw_request("OPTIONS", "*"))
        assert c.response().status == 404    # not a path: no route takes it
        c.send(raw_request("OPTIONS", "http://test/x"))
        assert c.response().status == 400


# ------------------------------------------------------------------ payloads and routes cannot be bypassed
@pytest.mark.parametrize("target", ["/admin", "/%61dmin", "/%61%64%6D%69%6E", "//admin", "/x/../admin",
                                    "/./admin", "/admin/./", "/%61dmin/panel", "///admin//panel",
                                    "/admin/x/..", "/x/%2e%2e/admin/panel"])
def test_the_auth_payload_cannot_be_bypassed(px, target):
    m = marks(px)
    r = send(px, target)
    assert r.status == 401, f"{target}: {r}"
    assert_nothing_reached_a_ship(px, m)
    # with the token the same target reaches the admin ship, normalised
    m = marks(px)
    r = send(px, target, {"Authorization": "Bearer s3cret"})
    assert r.status == 200 and r.json()["ship"] == "admin", f"{target}: {r}"
    line = ship_got(px, m, "admin")
    assert line.startswith("GET /admin") and "%" not in line and "/." not in line and "//" not in line


@pytest.mark.parametrize("target", ["/admin;x", "/admin/;x", "/adm%69n;x", "/admin%2f", "/admin\\x"])
def test_ambiguous_forms_of_a_protected_path_get_400(px, target):
    m = marks(px)
    r = send(px, target, {"Authorization": "Bearer s3cret"})
    assert r.status == 400, f"{target}: {r}"
    assert_nothing_reached_a_ship(px, m)


def test_a_response_payload_sees_the_normalised_path(px):
    r = send(px, "/%61pi//items/./x")
    assert r.status == 200 and r.json() == {"ship": "api", "target": "/api/items/x"}
    assert r.header("cache-control") == "public, max-age=60"


# ------------------------------------------------------------------ strip_prefix, static dirs, raw_path
@pytest.mark.parametrize("target,line", [
    ("/svc/a", "GET /a HTTP/1.1"),
    ("/%73vc/a", "GET /a HTTP/1.1"),
    ("//svc//a/./b", "GET /a/b HTTP/1.1"),
    ("/x/../svc/a/%62", "GET /a/b HTTP/1.1"),
    ("/svc", "GET / HTTP/1.1"),
    ("/svc/.", "GET / HTTP/1.1"),
    ("/svc/a?q=/svc/..", "GET /a?q=/svc/.. HTTP/1.1"),
])
def test_strip_prefix_applies_to_the_normalised_path(px, target, line):
    m = marks(px)
    r = send(px, target)
    assert r.status == 200 and r.json()["ship"] == "svc", r
    assert ship_got(px, m, "svc") == line


def test_dot_segments_leave_a_strip_prefix_route(px):
    m = marks(px)
    r = send(px, "/svc/../etc/passwd")
    assert r.status == 200 and r.json()["ship"] == "app", r
    assert ship_got(px, m, "app") == "GET /etc/passwd HTTP/1.1"


@pytest.fixture(scope="module")
def loosepx(tmp_path_factory):
    """Loose patterns: api (/api.* with strip_prefix /api, its admin
    behind the auth payload on /api/admin(/.*)?) and app (.*, which also
    matches the target "*")."""
    recs = {n: Recorder(n) for n in ("api", "app")}
    routes = {"api": [{"bind": "http", "pattern": "/api.*", "strip_prefix": "/api"}],
              "app": ["http:.*"]}
    extra = module_toml("auth", "auth.wasm", ["/api/admin(/.*)?"], config={"token": "s3cret"})
    f, p = proxy(tmp_path_factory, "loosepaths", recs, routes, extra)
    yield p
    f.cleanup()
    for r in recs.values():
        r.close()


# strip_prefix only cuts at a segment boundary: cutting "/api" off
# "/api../admin" would hand the ship "/../admin" (the api's /admin, which
# the payload on /api/admin(/.*)? never saw)
@pytest.mark.parametrize("target,line", [
    ("/api../admin", "GET /api../admin HTTP/1.1"),
    ("/api%2e%2e/admin", "GET /api../admin HTTP/1.1"),
    ("/api./admin", "GET /api./admin HTTP/1.1"),
    ("/api..", "GET /api.. HTTP/1.1"),
    ("/api.", "GET /api. HTTP/1.1"),
    ("/api.git/config", "GET /api.git/config HTTP/1.1"),
    ("/api/x", "GET /x HTTP/1.1"),
    ("/api", "GET / HTTP/1.1"),
    ("/api?q=1", "GET /?q=1 HTTP/1.1"),
])
def test_strip_prefix_never_cuts_into_a_segment(loosepx, target, line):
    m = marks(loosepx)
    r = send(loosepx, target)
    assert r.status == 200 and r.json()["ship"] == "api", r
    assert ship_got(loosepx, m, "api") == line


def test_options_asterisk_reaches_the_ship_as_an_asterisk(loosepx):
    # not as "/*", a path that no payload pattern was matched against
    m = marks(loosepx)
    with Raw(loosepx.port) as c:
        c.send(raw_request("OPTIONS", "*"))
        r = c.response()
    assert r.status == 200 and r.json()["ship"] == "app", r
    assert ship_got(loosepx, m, "app") == "OPTIONS * HTTP/1.1"


@pytest.mark.parametrize("target", ["/assets/app.js", "/%61ssets/app.js", "//assets//app.js",
                                    "/x/../assets/./app.js", "/assets/%61pp.js"])
def test_static_dirs_see_the_normalised_path(px, target):
    m = marks(px)
    r = send(px, target)
    assert r.status == 200 and r.body == STATIC_BODY, r
    assert_nothing_reached_a_ship(px, m)


@pytest.mark.parametrize("target,line", [
    ("/files/a%2Fb", "GET /files/a%2Fb HTTP/1.1"),
    ("/files/a%2fb", "GET /files/a%2Fb HTTP/1.1"),
    ("/files/a%5cb%00", "GET /files/a%5Cb%00 HTTP/1.1"),
    ("/files/a;b", "GET /files/a;b HTTP/1.1"),
    ("/files/a\\b", "GET /files/a\\b HTTP/1.1"),
    ("/files//x/../a%2F..%2Fb?q=%2f", "GET /files/a%2F..%2Fb?q=%2f HTTP/1.1"),
    ("/%66iles/%61%2fb", "GET /files/a%2Fb HTTP/1.1"),
    ("/files/a/../b", "GET /files/b HTTP/1.1"),
    ("/files/privat%65x/a%2Fb", "GET /files/privatex/a%2Fb HTTP/1.1"),
])
def test_a_raw_path_route_takes_ambiguous_forms(rawpx, target, line):
    m = marks(rawpx)
    r = send(rawpx, target)
    assert r.status == 200 and r.json()["ship"] == "files", r
    assert ship_got(rawpx, m, "files") == line


# the route the path matches decides: an earlier route without raw_path
# takes /files/private/..., so raw_path on the later one does not apply
@pytest.mark.parametrize("target", ["/files/../a%2Fb", "/filesx/a%2Fb", "/other;x", "/files/private/a%2Fb",
                                    "/files/x/..//private/a;b"])
def test_raw_path_is_only_for_paths_its_route_matches(rawpx, target):
    m = marks(rawpx)
    r = send(rawpx, target)
    assert r.status == 400, r
    assert_nothing_reached_a_ship(rawpx, m)


def test_pipelined_requests_are_each_normalised(px):
    m = marks(px)
    with Raw(px.port) as c:
        c.send(raw_request("GET", "//app/./one?x=%2e") + raw_request("GET", "/%61pp/two") +
               raw_request("GET", "/three/.."))
        got = [c.response().json()["target"] for _ in range(3)]
    assert got == ["/app/one?x=%2e", "/app/two", "/"]
    lines = [ln for ln in received_since(px, m)["app"].split(b"\r\n") if b" HTTP/1.1" in ln]
    assert lines == [b"GET /app/one?x=%2e HTTP/1.1", b"GET /app/two HTTP/1.1", b"GET / HTTP/1.1"]


def test_chart_shows_raw_path(tmp_path):
    from conftest import run_ms
    port = free_port()
    (tmp_path / "ship-manifest.toml").write_text(
        "[mothership.bind]\nhttp = \"127.0.0.1:%d\"\n\n[[fleet.web]]\nname = \"files\"\ncommand = \"sleep\"\n"
        "bind = \"3000\"\nroutes = [{ bind = \"http\", pattern = \"/files/.*\", raw_path = true }, \"http:/x\"]\n"
        % port)
    r = run_ms("chart", "--json", "-c", str(tmp_path / "ship-manifest.toml"))
    assert r.code == 0, r
    routes = json.loads(r.out)["binds"][0]["routes"]
    assert [x["raw_path"] for x in routes] == [True, False]
    r = run_ms("chart", "-c", str(tmp_path / "ship-manifest.toml"))
    assert r.code == 0 and "raw_path" in r.out, r



# ------------------------------------------------------------------ WebSocket Boarding
def test_boarding_carries_the_normalised_path(fleet, tmp_path):
    from hbay_helpers import bay_log
    from test_bays import PROBE, PY, bay_toml, raw_connect, start
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    s = raw_connect(px, "//ws/./chat/../%61?x=%2e&y=..")
    s.close()
    frames = bay_log(log, lambda f: any(x["type"] == "Boarding" for x in f))
    assert [f["path"] for f in frames if f["type"] == "Boarding"] == ["/ws/a?x=%2e&y=.."]
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/ws/a%2Fb", {"Upgrade": "websocket", "Connection": "Upgrade",
                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                "Sec-WebSocket-Version": "13"}))
        assert c.response().status == 400
