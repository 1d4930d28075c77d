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

from conftest import BINARY, ROOT, clearance_refuses, run_ms
from fleet_helpers import PY, free_port, http_get, metric, parse_metrics, toml_str, wait_file
from http_helpers import echo_ship, start_proxy, wait_until

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


def scrape(mport):
    """The metrics page on mport, parsed."""
    return parse_metrics(http_get(mport, "/metrics")[1])


def start_metered(fleet, ships, timeout=15, **kw):
    """A fleet of ships with a metrics port, once it is ready: (ms, the port)."""
    mport = free_port()
    ms = fleet(f"[mothership]\nmetrics_port = {mport}\n" + ships, **kw)
    ms.event("fleet_ready", timeout=timeout)
    return ms, mport


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
    m = scrape(mport)
    assert metric(m, "mothership_requests_total", bind="http", route="first", target="app", proto="http1") == 1
    assert metric(m, "mothership_requests_total", bind="http", route="second", target="app", proto="http1") == 1


def routed_manifest(routes):
    """A manifest of one ship with these routes (TOML, inside the brackets)."""
    return f"""
[mothership.bind]
http = "127.0.0.1:8080"
[[fleet.web]]
name = "app"
command = "sleep"
args = ["100"]
bind = "tcp://127.0.0.1:8001"
routes = [{routes}]
"""


@pytest.mark.parametrize("name, message", [
    ('""', 'must not be empty'),
    ('"a\\tb"', "name has a control character (byte 2): route names are printable text"),
    ('"' + "x" * 129 + '"', "name is 129 bytes long; at most 128"),
    ("3", "string"),
])
def test_a_bad_route_name_is_a_manifest_error(tmp_path, name, message):
    r = clearance_refuses(tmp_path, routed_manifest(f'{{ bind = "http", pattern = "/.*", name = {name} }}'), message)
    assert re.search(r"ship-manifest\.toml:\d+:\d+: ", r.err) and message in r.err, r


def test_route_labels_with_quotes_backslashes_and_newlines_are_escaped(fleet):
    """A route name with a quote and a backslash, and an unnamed route whose
    pattern (its label) has a newline: each label is escaped as the text
    format wants, and promtool reads the page."""
    api = echo_ship("api", routes=[{"bind": "http", "pattern": "/q(/.*)?", "name": 'say "hi" \\ C:\\dir'},
                                   {"bind": "http", "pattern": '/nl(\n|"|\\\\)?'}])
    px = start_proxy(fleet, api, mothership={"access_log": "json"})  # its series on the page too
    assert get(px.url("/q/x"))[0] == 200
    assert get(px.url("/nl"))[0] == 200
    text = px.metrics_text()
    assert "# TYPE mothership_access_log_dropped_total counter\n" in text, text
    assert ('mothership_requests_total{bind="http",route="say \\"hi\\" \\\\ C:\\\\dir",target="api",'
            'proto="http1"} 1\n') in text, text
    assert 'route="/nl(\\n|\\"|\\\\\\\\)?",target="api",proto="http1"} 1\n' in text, text
    if os.path.exists(PROMTOOL):
        assert promtool_findings(text) == [], text


def test_chart_shows_a_routes_name(tmp_path):
    import json
    (tmp_path / "ship-manifest.toml").write_text(
        routed_manifest('{ bind = "http", pattern = "/api(/.*)?", name = "/api" }, "http:/x"'))
    r = run_ms("chart", "-c", "ship-manifest.toml", cwd=str(tmp_path))
    assert r.code == 0, r
    lines = [l for l in r.out.splitlines() if "route" in l]
    assert 'name "/api"' in lines[0] and "name" not in lines[1], r
    r = run_ms("chart", "-c", "ship-manifest.toml", "--json", cwd=str(tmp_path))
    routes = json.loads(r.out)["binds"][0]["routes"]
    assert routes[0]["name"] == "/api" and "name" not in routes[1], routes


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


# ------------------------------------------------------------------ build and process
def test_build_info_and_the_process_series_describe_mothership_itself(fleet):
    before = time.time()
    px = start_proxy(fleet, echo_ship("app"))
    text = px.metrics_text()
    m = parse_metrics(text)
    version = run_ms("--version").out.split()[-1]
    info = [k for k in m if k[0] == "mothership_build_info"]
    assert len(info) == 1 and m[info[0]] == 1, info
    labels = dict(info[0][1])
    assert labels["version"] == version, labels
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", labels["openssl"]) and re.fullmatch(r"\d+\.\d+\.\d+", labels["libuv"])
    pid = px.pid()
    for name, kind in (("process_cpu_seconds_total", "counter"), ("process_resident_memory_bytes", "gauge"),
                       ("process_virtual_memory_bytes", "gauge"), ("process_open_fds", "gauge"),
                       ("process_max_fds", "gauge"), ("process_start_time_seconds", "gauge")):
        assert f"# TYPE {name} {kind}\n" in text, name
    with open(f"/proc/{pid}/status") as f:
        rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    assert 0.5 * rss_kb * 1024 <= metric(m, "process_resident_memory_bytes") <= 2 * rss_kb * 1024
    assert metric(m, "process_virtual_memory_bytes") >= metric(m, "process_resident_memory_bytes")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    assert abs(metric(m, "process_open_fds") - fds) <= 3, (metric(m, "process_open_fds"), fds)
    with open(f"/proc/{pid}/limits") as f:
        soft = re.search(r"^Max open files\s+(\d+)", f.read(), re.M).group(1)
    assert metric(m, "process_max_fds") == int(soft)
    assert before - 2 <= metric(m, "process_start_time_seconds") <= time.time()
    assert metric(m, "process_cpu_seconds_total") >= 0


# ------------------------------------------------------------------ per-ship usage
# A ship whose child burns CPU while the ship itself holds memory; it exits
# when told to, and its next run only holds memory.
USAGE_SHIP = r'''
import os, sys, time
d = sys.argv[1]
again = os.path.exists(os.path.join(d, "burnt"))
hold = b"x" * (48 << 20)
if not again and os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)  # the ship's output ends when the ship does
    os.dup2(null, 1)
    os.dup2(null, 2)
    t = time.process_time()
    while time.process_time() - t < 0.6:
        pass
    open(os.path.join(d, "burnt"), "w").close()
    while True:
        time.sleep(1)
open(os.path.join(d, "run-2" if again else "run-1"), "w").close()
while not os.path.exists(os.path.join(d, "exit")) or again:
    time.sleep(0.05)
sys.exit(1)
'''


def script_worker(tmp_path, name, source, *args):
    """A [[fleet.workers]] entry that runs the Python script source (written
    into tmp_path) with tmp_path and args; more keys may follow it."""
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    argv = ", ".join(toml_str(a) for a in (script, tmp_path, *args))
    return f"""
[[fleet.workers]]
name = "{name}"
command = {toml_str(PY)}
args = [{argv}]
"""


def test_each_ships_cpu_seconds_and_memory_count_its_processes(fleet, tmp_path):
    ms, mport = start_metered(fleet, script_worker(tmp_path, "burner", USAGE_SHIP) + """critical = false
restart = { backoff = "100ms" }
[[fleet.workers]]
name = "idle"
command = "sleep"
args = ["1000"]
""")
    lab = dict(ship="burner", group="workers")
    m = wait_until(lambda: (lambda m: m if (metric(m, "mothership_ship_cpu_seconds_total", **lab) or 0) >= 0.6
                            else None)(scrape(mport)), timeout=10, what="the child's CPU time counts for its ship")
    # the ship's own memory (48 MiB held) and its child's
    assert metric(m, "mothership_ship_memory_bytes", **lab) >= 48 << 20, m
    idle = metric(m, "mothership_ship_memory_bytes", ship="idle", group="workers")
    assert 0 < idle < 16 << 20, idle
    assert metric(m, "mothership_ship_cpu_seconds_total", ship="idle", group="workers") < 0.5
    # a new run starts from where the last left off: the counter never goes back
    wait_file(tmp_path / "burnt")
    first = metric(scrape(mport), "mothership_ship_cpu_seconds_total", **lab)
    (tmp_path / "exit").touch()
    ms.event("started", ship="burner", start=ms.event("exited", ship="burner")["_i"], timeout=15)
    wait_file(tmp_path / "run-2", timeout=10)
    m = scrape(mport)
    assert metric(m, "mothership_ship_restarts_total", **lab) == 1, ms.output()
    assert metric(m, "mothership_ship_cpu_seconds_total", **lab) >= first, (first, m)
    assert metric(m, "mothership_ship_memory_bytes", **lab) >= 48 << 20


# A ship with more children than one read of its children file lists
# (a thousand pids of four digits or more are over 4 KiB).
FORKER = r'''
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    if os.fork() == 0:
        time.sleep(1000)
        os._exit(0)
with open(os.path.join(d, "forker.pid"), "w") as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(1)
'''


def test_a_ship_with_hundreds_of_children_counts_them_all(fleet, tmp_path):
    ms, mport = start_metered(fleet, script_worker(tmp_path, "many", FORKER, "1000"))
    pid = int(wait_file(tmp_path / "forker.pid", timeout=60, predicate=str.strip))
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(x) for x in f.read().split()]
    assert len(kids) == 1000 and len(" ".join(map(str, kids))) > 4096, len(kids)
    page = os.sysconf("SC_PAGESIZE")

    def rss(p):
        with open(f"/proc/{p}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[21]) * page

    by_hand = rss(pid) + sum(rss(k) for k in kids)
    got = metric(scrape(mport), "mothership_ship_memory_bytes", ship="many", group="workers")
    assert 0.95 * by_hand <= got <= 1.05 * by_hand, (got, by_hand)
    assert ms.stop() == 0


def test_a_ships_cpu_seconds_do_not_go_back_across_rolls(fleet, tmp_path):
    """A surge roll swaps the entry's process for its twin at the second
    address: the counter goes on from the old process's count, also when
    the twin of an earlier roll comes back."""
    from fleet_helpers import app, free_port_run
    from http_helpers import short_tmpdir
    burn = f"{PY} -c 'import time; [0 for _ in iter(lambda: time.process_time() < 0.6, False)]'"
    # the first run burns 0.6 s of CPU in a child it waits for; the others do not
    script = (f"[ -e {tmp_path}/burnt ] || {{ {burn}; : > {tmp_path}/burnt; }}; "
              f"exec {PY} {app('bound.py')} \"$0\" {tmp_path}/web.pid")
    ms, mport = start_metered(fleet, f"""socket_dir = {toml_str(short_tmpdir())}
[[fleet.web]]
name = "web"
command = "sh"
args = ["-c", {toml_str(script)}, "{{port}}"]
bind = "tcp://127.0.0.1:{{port}}"
port = {free_port_run(2)}
""", timeout=30, name="ship-manifest.toml")
    lab = dict(ship="web", group="web")

    def cpu():
        return metric(scrape(mport), "mothership_ship_cpu_seconds_total", **lab)

    seen = [cpu()]
    assert seen[0] >= 0.5, seen
    path = str(tmp_path / "ship-manifest.toml")
    for _ in range(3):
        start = len(ms.lines)
        r = subprocess.run([BINARY, "restart", "web", "-c", path], capture_output=True, text=True, timeout=60,
                           cwd=str(tmp_path))
        assert r.returncode == 0, r
        ms.event("roll", msg="starting a new process at", start=start, timeout=10)
        seen.append(cpu())
        assert seen[-1] >= seen[-2], seen
    assert ms.stop() == 0


# ------------------------------------------------------------------ promtool
def test_the_metrics_page_is_promtool_clean_with_traffic_on_every_kind_of_series(fleet, tmp_path):
    """Ships (one with instances and a health check), a job, a WebSocket
    bay, an HTTP bay, a static dir, a payload, a named route, TLS, an
    uplink: each with traffic, then `promtool check metrics` finds nothing
    but the one documented name."""
    import socket
    import ssl

    from conftest import BUILD
    from hbay_helpers import hbay_toml, short_tmpdir
    from http_helpers import Raw, raw_request
    from test_shutdown import ws_handshake
    from tls_helpers import make_cert

    echo_bay = os.path.join(BUILD, "examples", "bays", "echo-bay")
    auth = os.path.join(BUILD, "examples", "payloads", "auth.wasm")
    if not os.path.exists(PROMTOOL):
        pytest.skip("promtool is not installed (scripts/deps.sh installs it)")
    if not (os.path.exists(echo_bay) and os.path.exists(auth)):
        pytest.skip("the example bays and payloads are not built")
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello\n")
    crt, key = make_cert(tmp_path / "tls", "server", names=("localhost", "127.0.0.1"))
    up = socket.create_server(("127.0.0.1", 0))
    uport = up.getsockname()[1]
    from fleet_helpers import app, free_port_run
    app_toml = f"""
[[fleet.web]]
name = "app"
command = {toml_str(PY)}
args = [{toml_str(app("echo_backend.py"))}, "--port", "{{port}}", "--name", "app-{{instance}}"]
bind = "tcp://127.0.0.1:{{port}}"
port = {free_port_run(2)}
instances = 2
healthcheck = {{ path = "/health", interval = "200ms" }}
routes = [{{ bind = "http", pattern = "/api(/.*)?", name = "/api" }}, "http:/ws", "https:/app.*"]
"""
    extra = f"""
{app_toml}

[[fleet.jobs]]
name = "migrate"
command = "true"
oneshot = true

[[bays.websocket]]
name = "echo"
command = {toml_str(echo_bay)}
routes = ["http:/echo.*"]

{hbay_toml("rack", routes=["http:/status/.*"])}

[[modules]]
name = "auth"
wasm = {toml_str(auth)}
routes = ["/admin/.*"]
phase = "request"
config = {{ token = "s3cret" }}

[[uplinks]]
name = "db"
url = "tcp://127.0.0.1:{uport}"

[mothership.tls]
cert = {toml_str(crt)}
key = {toml_str(key)}
"""
    binds = {"http": free_port(), "https": {"port": free_port(), "tls": True}}
    px = start_proxy(fleet, binds=binds, static=[{"path": str(site), "prefix": "/s"}],
                     mothership={"socket_dir": short_tmpdir()}, extra=extra, wait=False)
    px.ms.event("fleet_ready", timeout=30)
    up.close()
    http = f"http://127.0.0.1:{px.binds['http']}"
    for path, status in (("/api/users", 200), ("/nowhere", 404), ("/s/hello.txt", 200), ("/admin/x", 401),
                         ("/status/200", 200)):
        assert get(http + path)[0] == status, path
    c = ws_handshake(px.binds["http"], "/ws")      # a tunnel to a ship
    c.s.close()
    c = ws_handshake(px.binds["http"], "/echo")    # a bay's client
    c.s.close()
    ctx = ssl.create_default_context(cafile=crt)
    with urllib.request.urlopen(f"https://localhost:{px.binds['https']}/app/x", context=ctx, timeout=10) as r:
        assert r.status == 200
    raw = Raw(px.binds["https"])                   # plain HTTP on the TLS port: a failed handshake
    raw.send(raw_request("GET", "/app/x"))
    raw.s.close()
    m = wait_until(lambda: (lambda m: m if (metric(m, "mothership_tls_handshakes_total", bind="https", result="failed")
                                            and metric(m, "mothership_tunnels_closed_total", bind="http",
                                                       route="/ws", target="app")) else None)(px.metrics()),
                   timeout=10, what="the failed handshake and the closed tunnel are counted")
    body = px.metrics_text()
    for series in ("mothership_ship_cpu_seconds_total", "mothership_bay_boardings_total", "mothership_hbay_requests_total",
                   "mothership_payload_blocks_total", "mothership_uplink_up", "process_open_fds",
                   "mothership_build_info", "mothership_upstream_in_flight", 'instance="1"', 'route="/api"',
                   'route="/s"', "mothership_ship_breaker_state"):
        assert series in body, series
    # the target of a ship with instances is the ship, as its manifest names it
    assert metric(m, "mothership_requests_total", bind="http", route="/api", target="app", proto="http1") == 1
    assert "app#" not in body
    assert promtool_findings(body) == [], body
