"""Hostile input, table-driven (hostile_cases.py): request smuggling, framing,
request-target and path forms, payload bypasses, Upgrade. Each case sends
raw bytes to Mothership in front of two recording upstreams
(apps/recording_upstream.py) and asserts what the client gets and what the
ships received, parsed strictly from the exact bytes each one recorded
("nothing" means not one byte). A sentinel request through each ship's
route after every case is awaited before the recording is read. Across the
whole suite, no ship may serve /app/admin without the auth payload's
token."""
import os
import shutil

import pytest

from conftest import BUILD
from fleet_helpers import PY, app, toml_str
from http_helpers import ModuleFleet, Ship, start_proxy, toml_value
from hostile_cases import ADMIN, CASES, SHIPS, TOKEN, Case, Fwd, Recorder, SENTINELS, exchange, get, post, run_case

RECORDER = app("recording_upstream.py")
AUTH_WASM = os.path.join(BUILD, "examples", "payloads", "auth.wasm")


class RecordingShip(Ship):
    """A recording upstream ship: the exact bytes it gets land in record."""

    def __init__(self, name, routes, record, **kw):
        super().__init__(name, routes, **kw)
        self.record = record

    def toml(self):
        args = [RECORDER, "--name", self.name, "--port", str(self.port), "--record", self.record]
        lines = [f"[[fleet.{self.group}]]", f"name = {toml_str(self.name)}", f"command = {toml_str(PY)}",
                 f"args = {toml_value(args)}", f"bind = {toml_str(f'tcp://127.0.0.1:{self.port}')}",
                 f"routes = {toml_value(self.routes)}"]
        lines += [f"{k} = {toml_value(v)}" for k, v in self.extra.items()]
        return "\n".join(lines) + "\n"


AUTH_MODULE = f"""[[modules]]
name = "auth"
wasm = {toml_str(AUTH_WASM)}
routes = ["/app/admin(/.*)?"]
phase = "request"
config = {{ token = "{TOKEN}" }}
"""


def hostile_fleet(fleet, tmp, api_route=None, app_route=None):
    record = os.path.join(tmp, "record")
    static = os.path.join(tmp, "public")
    os.makedirs(static, exist_ok=True)
    with open(os.path.join(static, "index.html"), "w") as f:
        f.write("static index\n")
    ships = [RecordingShip("api", [api_route or {"bind": "http", "pattern": "/api/.*", "strip_prefix": "/api"}],
                           record),
             RecordingShip("app", [app_route or "http:/.*"], record)]
    px = start_proxy(fleet, *ships, static=[{"path": static, "prefix": "/static"}], extra=AUTH_MODULE)
    return px, Recorder(record)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "hostile")
    tmp = str(tmp_path_factory.mktemp("hostile-files"))
    px, rec = hostile_fleet(f, tmp)
    yield px, rec
    f.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_table_has_every_input():
    groups = {}
    for c in CASES:
        groups[c.group] = groups.get(c.group, 0) + 1
    print(f"\nhostile inputs: {len(CASES)} ({', '.join(f'{g} {n}' for g, n in groups.items())}); "
          f"{sum(c.silent for c in CASES)} where the rules are silent")
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(hostile, case):
    px, rec = hostile
    seq = CASES.index(case)
    res = run_case(case, px.port, rec, seq)
    assert not res["problems"], (
        f"{case.name}: sent {case.send[:300]!r}\n  client got {[r['status'] for r in res['responses']]}\n"
        f"  ships got {res['forwarded']}\n  problems:\n    " + "\n    ".join(res["problems"]))


def test_a_hidden_request_does_not_poison_the_next_client(hostile):
    """A body the ship could read as the start of a request (its framing
    named in Connection) must not sit on a pooled ship connection waiting
    for the next client's bytes to complete it."""
    px, rec = hostile
    hidden = b"GET /app/admin HTTP/1.1\r\nHost: t\r\nX: "
    first, _ = exchange(px.port, post("/app/public", hidden, "Connection: Content-Length",
                                      f"Content-Length: {len(hidden)}"), 1)
    assert first[0]["status"] == 200, first
    for i in range(3):   # whichever pooled connection the next clients get
        nxt, _ = exchange(px.port, get(f"/app/next{i}"), 1)
        assert nxt[0]["status"] == 200, nxt
        assert nxt[0]["body"] == f"app GET /app/next{i}\n".encode(), f"client {i + 2} got {nxt[0]['body']!r}"


def test_no_ship_ever_served_admin_without_the_token(hostile):
    """Over everything the suite sent (run last in this module): the ships'
    own, lenient understanding of each request they answered."""
    px, rec = hostile
    leaks = []
    for ship in SHIPS:
        for e in rec.log(ship):
            if "error" in e:
                continue
            auth = [v for k, v in e["headers"] if k.lower() == "authorization"]
            if ADMIN.match(e["path"]) and auth != ["Bearer " + TOKEN]:
                leaks.append(f"{ship}: {e['method']} {e['target']!r} served as {e['path']}")
    assert not leaks, "\n".join(leaks)


# raw_path = true opts a route out of the ambiguous-path refusal: the forms
# are forwarded as they are (hex upper-cased), the other steps still apply.
RAW_CASES = [
    Case("raw-path-encoded-slash", "path", get("/raw/a%2fb"), [200], [Fwd("api", "GET /raw/a%2Fb HTTP/1.1")]),
    Case("raw-path-semicolon", "path", get("/raw/a;x"), [200], [Fwd("api", "GET /raw/a;x HTTP/1.1")]),
    Case("raw-path-backslash", "path", get("/raw/a\\b"), [200], [Fwd("api", "GET /raw/a\\b HTTP/1.1")]),
    Case("raw-path-still-merged", "path", get("//raw/./a%5cb"), [200], [Fwd("api", "GET /raw/a%5Cb HTTP/1.1")]),
    Case("raw-path-other-route-refused", "path", get("/app/a%2fb"), [400], []),
]


def test_raw_path_route_keeps_ambiguous_forms(fleet, tmp_path):
    px, rec = hostile_fleet(fleet, str(tmp_path),
                            api_route={"bind": "http", "pattern": "/raw/.*", "raw_path": True})
    failed = []
    for i, case in enumerate(RAW_CASES):
        res = run_case(case, px.port, rec, f"raw{i}",
                       sentinels={"app": SENTINELS["app"], "api": ("/raw/_sentinel/{}", "/raw/_sentinel/{}")})
        if res["problems"]:
            failed.append(f"{case.name}: {res['problems']}")
    assert not failed, "\n".join(failed)
