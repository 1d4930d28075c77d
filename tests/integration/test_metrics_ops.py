"""/metrics for operators: request duration buckets up to 60 s, routes
labelled by their `name`, mothership_build_info and the standard process_*
series, each ship's CPU seconds and memory, and a page that
`promtool check metrics` passes with traffic on every kind of series."""
import os
import re
import subprocess
import time
import urllib.request

import pytest

from conftest import BINARY, ROOT, run_ms
from fleet_helpers import PY, free_port, http_get, metric, parse_metrics, toml_str
from http_helpers import echo_ship, start_proxy

METRICS_MD = os.path.join(ROOT, "docs", "metrics.md")
PROMTOOL = "/usr/bin/promtool"

# The one finding promtool has on Mothership's page: the seed's gauge
# mothership_fleet_ships_total ends in _total, and stays for compatibility
# (docs/metrics.md says so).
KNOWN_FINDING = 'mothership_fleet_ships_total non-counter metrics should not have "_total" suffix'


def promtool_findings(body):
    """promtool's findings on a page, less the one the docs accept."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(), capture_output=True, timeout=30)
    lines = (p.stdout + p.stderr).decode().splitlines()
    left = [l for l in lines if l.strip() and l.strip() != KNOWN_FINDING]
    assert left or p.returncode in (0, 3), (p.returncode, lines)  # 3: lint problems only
    return left


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def poll(fn, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# ------------------------------------------------------------------ buckets
def test_request_duration_buckets_reach_60_seconds(fleet):
    px = start_proxy(fleet, echo_ship("app"))
    assert get(px.url("/x"))[0] == 200
    text = px.metrics_text()
    les = re.findall(r'^mothership_request_duration_seconds_bucket\{bind="http",route="/\.\*",target="app",'
                     r'le="([^"]+)"\} \d+$', text, re.M)
    assert les == ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                   "2.5", "5", "10", "30", "60", "+Inf"], text
    m = parse_metrics(text)
    assert metric(m, "mothership_request_duration_seconds_bucket", bind="http", route="/.*", target="app",
                  le="60") == 1


# ------------------------------------------------------------------ route names
def test_a_route_name_is_its_route_label(fleet):
    api = echo_ship("api", routes=[{"bind": "http", "pattern": "/api(/.*)?", "name": "/api"},
                                   {"bind": "http", "pattern": "/v1/api(/.*)?", "name": "/api"}])
    other = echo_ship("other", routes=["http:/other/.*"])
    px = start_proxy(fleet, api, other)
    for path in ("/api", "/api/users", "/v1/api/x", "/other/y"):
        assert get(px.url(path))[0] == 200, path
    m = px.metrics()
    # both routes named /api count as one series; an unnamed route keeps its pattern
    assert metric(m, "mothership_requests_total", bind="http", route="/api", target="api", proto="http1") == 3
    assert metric(m, "mothership_requests_total", bind="http", route="/other/.*", target="other",
                  proto="http1") == 1
    assert not [k for k in m if ("route", "/api(/.*)?") in k[1]], "the pattern is not a label when named"


def test_a_route_name_change_is_seen_by_a_reload(fleet, tmp_path):
    port, mport, sport = free_port(), free_port(), free_port()

    def text(name):
        return f"""
[mothership]
metrics_port = {mport}
[mothership.bind]
http = "127.0.0.1:{port}"
[[fleet.web]]
name = "app"
command = {toml_str(PY)}
args = [{toml_str(os.path.join(ROOT, "tests/integration/apps/echo_backend.py"))}, "--name", "app",
        "--port", "{sport}"]
bind = "tcp://127.0.0.1:{sport}"
routes = [{{ bind = "http", pattern = "/.*", name = "{name}" }}]
"""
    ms = fleet(text("first"), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=15)
    assert get(f"http://127.0.0.1:{port}/a")[0] == 200
    (tmp_path / "ship-manifest.toml").write_text(text("second"))
    start = len(ms.lines)
    ms.signal(__import__("signal").SIGHUP)
    ms.event("reloaded", start=start, timeout=15)
    assert get(f"http://127.0.0.1:{port}/b")[0] == 200
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_requests_total", bind="http", route="first", target="app", proto="http1") == 1
    assert metric(m, "mothership_requests_total", bind="http", route="second", target="app", proto="http1") == 1


@pytest.mark.parametrize("name, message", [
    ('""', 'must not be empty'),
    ('"a\\tb"', "name has a control character (byte 2): route names are printable text"),
    ('"' + "x" * 129 + '"', "name is 129 bytes long; at most 128"),
    ("3", "string"),
])
def test_a_bad_route_name_is_a_manifest_error(tmp_path, name, message):
    (tmp_path / "ship-manifest.toml").write_text(f"""
[mothership.bind]
http = "127.0.0.1:8080"
[[fleet.web]]
name = "app"
command = "sleep"
args = ["100"]
bind = "tcp://127.0.0.1:8001"
routes = [{{ bind = "http", pattern = "/.*", name = {name} }}]
""")
    r = run_ms("clearance", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 1, r
    assert re.search(r"ship-manifest\.toml:\d+:\d+: ", r.err) and message in r.err, r


def test_the_named_route_example_of_metrics_md_works_as_shown(fleet, tmp_path):
    """docs/metrics.md's fleet, on free ports: the request it shows gives the
    lines it shows."""
    page = open(METRICS_MD, encoding="utf-8").read()
    sec = page[page.index("## Naming routes"):]
    toml = re.search(r"```toml\n(.*?)```", sec, re.S).group(1)
    console = re.search(r"```console\n(.*?)```", sec, re.S).group(1).splitlines()
    mport, port, sport = free_port(), free_port(), free_port()
    toml = toml.replace("9090", str(mport)).replace("8080", str(port)).replace("8001", str(sport))
    ms = fleet(toml)
    ms.event("fleet_ready", timeout=15)
    curl = [l for l in console if l.startswith("$ curl") and "8080" in l]
    assert len(curl) == 1, console
    path = re.search(r"localhost:8080(/\S*)", curl[0]).group(1)
    get(f"http://127.0.0.1:{port}{path}")
    shown = [l for l in console if l and not l.startswith("$")]
    assert shown, console
    body = http_get(mport, "/metrics")[1]
    grep = re.search(r"grep '([^']*)'", console[[i for i, l in enumerate(console) if "9090" in l][0]]).group(1)
    assert [l for l in body.splitlines() if re.search(grep, l)] == shown, body
