"""HTTP bays ([[bays.http]]) and upstreams ([[mothership.upstreams]]) in the
fleet, through the real binary: an HTTP bay gets the MS_BAY_* environment,
is ready once its Dock v3 is answered with Moored v3 (and the handshake
link is then closed), a v1 Dock on it (or a v3 Dock on a WebSocket bay)
fails its boot with a clear line; an upstream is never
started, is ready at launch, shows in status and chart with its bind,
refuses restart/stop/signal, and ships may depend on it."""
import json
import os
import socket
import subprocess
import threading

import pytest

from conftest import BINARY, ROOT, run_ms
from fleet_helpers import PY, Mothership, free_port, http_get, toml_str, wait_file

# A docking v3 bay in a few lines: listens on MS_SOCKET_PATH, speaks first
# with a Dock (v3, or v1 to be refused), records its environment, the answer
# and whether Mothership closed the link after it, then accepts again.
BAY = r'''
import json, os, socket, struct, sys
out, version = sys.argv[1], int(sys.argv[2])
path = os.environ["MS_SOCKET_PATH"]
env = {k: v for k, v in os.environ.items() if k.startswith("MS_")}
try:
    os.unlink(path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(16)

def read_exact(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            return None
        b += x
    return b

def record(rec):
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, out)

links = 0
while True:
    c, _ = srv.accept()
    links += 1
    rec = {"env": env, "links": links, "moored": None}
    record(rec)  # before the Dock: a refused bay is killed at once
    hello = {"version": version, "ship": os.environ["MS_SHIP"], "pid": os.getpid()}
    if version == 3:
        hello["threads"] = 3
    payload = json.dumps(hello).encode()
    c.sendall(struct.pack(">BI", 1, len(payload)) + payload)
    hdr = read_exact(c, 5)
    if hdr:
        t, n = struct.unpack(">BI", hdr)
        body = read_exact(c, n)
        rec["moored_type"] = t
        rec["moored"] = json.loads(body) if body is not None else None
        c.settimeout(10)
        rec["closed_after"] = c.recv(1) == b""
    record(rec)
    c.close()
'''


def write_bay(tmp_path):
    p = tmp_path / "v3bay.py"
    p.write_text(BAY)
    return str(p)


def test_http_bay_docks_v3_with_its_env(fleet, tmp_path):
    bay = write_bay(tmp_path)
    out = tmp_path / "bay.json"
    ms = fleet(f'''
        [[bays.http]]
        name = "rack"
        command = {toml_str(PY)}
        args = [{toml_str(bay)}, {toml_str(str(out))}, "3"]
        workers = 2
        threads = 3
        request_timeout = "1500ms"
        config = {{ greeting = "hi", n = 7 }}
    ''')
    ms.event("ready", ship="rack", timeout=15)
    wait_file(str(out), timeout=10, predicate=lambda t: '"closed_after"' in t)
    rec = json.loads(out.read_text())
    env = rec["env"]
    assert env["MS_BAY_TYPE"] == "http"
    assert env["MS_BAY_WORKERS"] == "2"
    assert env["MS_BAY_THREADS"] == "3"
    assert env["MS_BAY_DRAIN_TIMEOUT"] == "2"  # 1.5 s, rounded up
    assert env["MS_SHIP"] == "rack"
    assert env["MS_SOCKET_PATH"].endswith("/rack.sock")
    assert env["MS_SOCKET_DIR"] and env["MS_PID"] == str(ms.pid)
    assert rec["moored_type"] == 2
    assert rec["moored"] == {"version": 3, "config": {"greeting": "hi", "n": "7"}}
    assert rec["closed_after"] is True  # the handshake link is closed by Mothership
    assert rec["links"] == 1
    ready = [e for e in ms.events("ready", ship="rack")]
    assert "protocol v3" in ready[0]["msg"] and "6 links" in ready[0]["msg"], ready[0]
    assert ms.stop() == 0


def test_http_bay_refuses_a_v1_dock(fleet, tmp_path):
    bay = write_bay(tmp_path)
    out = tmp_path / "bay.json"
    ms = fleet(f'''
        [[bays.http]]
        name = "rack"
        command = {toml_str(PY)}
        args = [{toml_str(bay)}, {toml_str(str(out))}, "1"]
        ready_timeout = "10s"
        workers = 2
        threads = 3
        request_timeout = "1500ms"
    ''')
    e = ms.event("link_failed", ship="rack", timeout=15)
    assert "bad Dock: version 1 (a WebSocket bay's) on an HTTP bay: a [[bays.http]] bay docks with version 3" \
        in e["msg"], e
    # a critical bay that fails to boot stops the fleet; nothing was moored
    assert ms.wait_exit(timeout=15) != 0
    rec = json.loads(out.read_text())
    assert rec["moored"] is None
    env = rec["env"]
    assert env["MS_BAY_TYPE"] == "http"
    assert env["MS_BAY_WORKERS"] == "2"
    assert env["MS_BAY_THREADS"] == "3"
    assert env["MS_BAY_DRAIN_TIMEOUT"] == "2"  # 1.5 s, rounded up
    assert env["MS_SHIP"] == "rack" and env["MS_PID"] == str(ms.pid)
    assert env["MS_SOCKET_PATH"] == env["MS_SOCKET_DIR"] + "/rack.sock"
    assert not ms.events("ready", ship="rack")


def test_websocket_bay_refuses_a_v3_dock(fleet, tmp_path):
    bay = write_bay(tmp_path)
    out = tmp_path / "bay.json"
    ms = fleet(f'''
        [[bays.websocket]]
        name = "cast"
        command = {toml_str(PY)}
        args = [{toml_str(bay)}, {toml_str(str(out))}, "3"]
        critical = false
        restart = {{ backoff = "10s" }}
    ''')
    e = ms.event("link_failed", ship="cast", timeout=15)
    assert "bad Dock: version 3 (an HTTP bay's) on a WebSocket bay: declare it as [[bays.http]]" in e["msg"], e
    assert ms.stop() == 0


def ctl(ms, path, *args):
    """A fleet command against ms (its own socket dir)."""
    env = dict(os.environ, MS_SOCKET_DIR=ms.own_sockdir)
    return subprocess.run([BINARY, *args, "-c", path], capture_output=True, text=True, timeout=15,
                          cwd=os.path.dirname(path), env=env)


class TinyHTTP:
    """A plain HTTP server the test starts (not Mothership): one answer."""

    def __init__(self, port):
        self.srv = socket.create_server(("127.0.0.1", port))
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                data = b""
                while b"\r\n\r\n" not in data:
                    x = c.recv(4096)
                    if not x:
                        break
                    data += x
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                body = f"upstream saw {line}".encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def close(self):
        self.srv.close()


def test_upstreams_ready_at_launch_and_not_ours(fleet, tmp_path):
    port, app_port = free_port(), free_port()
    app = TinyHTTP(app_port)
    ready = tmp_path / "after-upstream"
    try:
        path = fleet.write(f'''
            [mothership.bind]
            http = "127.0.0.1:{port}"

            [[mothership.upstreams]]
            name = "rack"
            bind = "unix://{tmp_path}/rack.sock"
            routes = ["http:/rack/.*"]

            [[mothership.upstreams]]
            name = "legacy"
            bind = "127.0.0.1:{app_port}"
            protocol = "http"
            routes = [{{ bind = "http", pattern = "/old/.*", strip_prefix = "/old" }}]

            [[fleet.web]]
            name = "after"
            command = "sh"
            args = ["-c", "touch {ready}; exec sleep 600"]
            depends_on = ["rack", "legacy"]
            ready_after = "100ms"
        ''')
        ms = Mothership(["-c", path], cwd=str(tmp_path))
        fleet.started.append(ms)
        for name in ("rack", "legacy"):
            e = ms.event("ready", ship=name, timeout=10)
            assert "not started by Mothership" in e["msg"], e
        ms.event("ready", ship="after", timeout=10)
        assert ready.exists()  # depends_on an upstream works
        ms.event("fleet_ready", timeout=10)
        assert not ms.events("started", ship="rack") and not ms.events("started", ship="legacy")

        # the HTTP upstream is proxied like a ship
        status, body = http_get(port, "/old/x?y=1")
        assert status == 200 and body == "upstream saw GET /x?y=1 HTTP/1.1", (status, body)

        r = ctl(ms, path, "status", "--json")
        assert r.returncode == 0, r.stderr
        entries = {e["name"]: e for e in json.loads(r.stdout)["entries"]}
        assert entries["rack"]["kind"] == "upstream" and entries["rack"]["state"] == "ready"
        assert entries["rack"]["bind"] == f"unix://{tmp_path}/rack.sock"
        assert entries["rack"]["protocol"] == "docking" and entries["rack"]["pid"] == 0
        assert entries["legacy"]["kind"] == "upstream" and entries["legacy"]["protocol"] == "http"
        assert entries["legacy"]["bind"] == f"tcp://127.0.0.1:{app_port}"
        r = ctl(ms, path, "status")
        assert r.returncode == 0, r.stderr
        row = [l for l in r.stdout.splitlines() if l.startswith("rack ")][0]
        assert "upstream" in row and "ready" in row and f"at unix://{tmp_path}/rack.sock" in row, row
        # its columns stay under the header's, as the ship's do
        header = [l for l in r.stdout.splitlines() if l.startswith("NAME ")][0]
        for name in ("rack", "after"):
            row = [l for l in r.stdout.splitlines() if l.startswith(name + " ")][0]
            assert row.index("ready") == header.index("STATE"), (header, row)

        for verb in ("restart", "stop", "start"):
            r = ctl(ms, path, verb, "rack")
            assert r.returncode != 0, (verb, r.stdout)
            word = {"restart": "restarted", "stop": "stopped", "start": "started"}[verb]
            assert (f'upstream "rack" is an app Mothership did not start (reached at unix://{tmp_path}/rack.sock): '
                    f"it cannot be {word} by Mothership") in r.stdout + r.stderr, (verb, r.stdout, r.stderr)
        r = ctl(ms, path, "signal", "legacy", "HUP")
        assert r.returncode != 0
        assert "it cannot be signalled by Mothership" in r.stdout + r.stderr, (r.stdout, r.stderr)
        r = ctl(ms, path, "status", "--json")
        entries = {e["name"]: e for e in json.loads(r.stdout)["entries"]}
        assert entries["rack"]["state"] == "ready" and entries["legacy"]["state"] == "ready"
        assert ms.stop() == 0
    finally:
        app.close()


def test_chart_shows_upstreams(manifest, tmp_path):
    path = manifest(f'''
[mothership.bind]
http = "127.0.0.1:18080"

[[mothership.upstreams]]
name = "rack"
bind = "unix://{tmp_path}/rack.sock"
routes = ["http:/rack/.*"]

[[bays.http]]
name = "app"
command = "x"
routes = ["http:/app/.*"]
''')
    r = run_ms("chart", "-c", path)
    assert r.code == 0, r.err
    assert f"route   /rack/.*                 -> upstream rack  unix://{tmp_path}/rack.sock (docking v3)" in r.out, r.out
    assert "-> bay app  docking v3 links" in r.out, r.out
    r = run_ms("chart", "--json", "-c", path)
    routes = json.loads(r.out)["binds"][0]["routes"]
    assert routes[0]["kind"] == "upstream" and routes[0]["upstream"] == f"unix://{tmp_path}/rack.sock"
    assert routes[0]["protocol"] == "docking"


def test_clearance_lists_upstreams_and_init_shows_both(manifest, tmp_path):
    path = manifest(f'''
[[mothership.upstreams]]
name = "rack"
bind = "unix://{tmp_path}/rack.sock"

[[mothership.upstreams]]
name = "legacy"
bind = "127.0.0.1:9000"
protocol = "http"

[[bays.http]]
name = "app"
command = "x"
''')
    r = run_ms("clearance", "-c", path)
    assert r.code == 0, r.err
    assert "  bays     1\n      app              http\n" in r.out, r.out
    assert ("  upstreams 2\n"
            f"      rack             docking unix://{tmp_path}/rack.sock (not started by Mothership)\n"
            "      legacy           http    tcp://127.0.0.1:9000 (not started by Mothership)\n") in r.out, r.out

    r = run_ms("init", "fresh.toml", cwd=str(tmp_path))
    assert r.code == 0, r
    text = (tmp_path / "fresh.toml").read_text()
    assert "# [[bays.http]]\n" in text and "# [[mothership.upstreams]]\n" in text
    # uncommented, both blocks load
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        block = any(lines[j] in ("# [[bays.http]]", "# [[mothership.upstreams]]") and
                    all(lines[k].startswith("# ") and " = " in lines[k] for k in range(j + 1, i + 1))
                    for j in range(max(0, i - 8), i + 1))
        out.append(line[2:] if block else line)
    (tmp_path / "fresh.toml").write_text("\n".join(out) + "\n")
    r = run_ms("clearance", "-c", "fresh.toml", cwd=str(tmp_path))
    assert r.code == 0, r
    assert "      app              http\n" in r.out and "  upstreams 1\n" in r.out, r.out


def test_reload_adds_an_upstream_then_turns_it_into_a_ship(fleet, tmp_path):
    """An upstream added by a reload is ready at once and its route served;
    changed into a ship by the next reload, it is started."""
    import signal
    port, app_port = free_port(), free_port()
    app = TinyHTTP(app_port)
    head = f'[mothership.bind]\nhttp = "127.0.0.1:{port}"\n\n'
    web = '[[fleet.web]]\nname = "web"\ncommand = "sleep"\nargs = ["600"]\nready_after = "50ms"\n\n'
    try:
        ms = fleet(head + web, name="ship-manifest.toml")
        path = tmp_path / "ship-manifest.toml"
        ms.event("fleet_ready", timeout=15)
        assert http_get(port, "/old/x")[0] == 404

        path.write_text(head + web + f'''
[[mothership.upstreams]]
name = "legacy"
bind = "127.0.0.1:{app_port}"
protocol = "http"
routes = [{{ bind = "http", pattern = "/old/.*", strip_prefix = "/old" }}]
''')
        start = len(ms.lines)
        ms.signal(signal.SIGHUP)
        ms.event("reloaded", start=start, timeout=10)
        e = ms.event("ready", ship="legacy", start=start, timeout=10)
        assert "not started by Mothership" in e["msg"]
        assert http_get(port, "/old/x") == (200, "upstream saw GET /x HTTP/1.1")

        path.write_text(head + web + f'''
[[fleet.web]]
name = "legacy"
command = "sleep"
args = ["600"]
ready_after = "50ms"
''')
        start = len(ms.lines)
        ms.signal(signal.SIGHUP)
        ms.event("reloaded", start=start, timeout=10)
        ms.event("started", ship="legacy", start=start, timeout=10)
        ms.event("ready", ship="legacy", start=start, timeout=10)
        assert ms.stop() == 0
    finally:
        app.close()


def test_reload_moves_a_docking_upstream_to_its_new_bind(fleet, tmp_path):
    """A reload that changes a docking upstream's bind sends the next
    requests to the app at the new address: the workers' idle links to
    the old one are not reused."""
    import signal
    from conftest import BUILD
    from dock3_helpers import wait_for
    bay = os.path.join(BUILD, "examples", "bays", "http-bay")
    apps = []
    try:
        for name in ("a", "b"):
            env = dict(os.environ, MS_SOCKET_PATH=str(tmp_path / f"{name}.sock"), MS_SHIP=name,
                       MS_BAY_TYPE="http", MS_BAY_THREADS="2", MS_BAY_WORKERS="0", MS_BAY_DRAIN_TIMEOUT="5")
            apps.append(subprocess.Popen([bay], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL))
        wait_for(lambda: (tmp_path / "a.sock").exists() and (tmp_path / "b.sock").exists(),
                 what="the apps' sockets")
        port = free_port()
        head = f'[mothership]\nworkers = 1\n\n[mothership.bind]\nhttp = "127.0.0.1:{port}"\n\n'

        def upstream(name):
            return (f'[[mothership.upstreams]]\nname = "app"\nbind = "unix://{tmp_path}/{name}.sock"\n'
                    'routes = ["http:/.*"]\n')

        ms = fleet(head + upstream("a"), name="ship-manifest.toml")
        ms.event("fleet_ready", timeout=15)
        for _ in range(3):
            assert http_get(port, "/") == (200, "hello from a\n")

        (tmp_path / "ship-manifest.toml").write_text(head + upstream("b"))
        start = len(ms.lines)
        ms.signal(signal.SIGHUP)
        ms.event("reloaded", start=start, timeout=10)
        for _ in range(3):
            assert http_get(port, "/") == (200, "hello from b\n")
        assert ms.stop() == 0
    finally:
        for p in apps:
            p.kill()
            p.wait()


def test_reload_to_a_new_upstream_app_takes_its_threads(fleet, tmp_path):
    """The links to a docking upstream are sized by its app's Dock: after
    a reload points it at another app, that app's threads, not the old
    one's."""
    import signal
    from conftest import BUILD
    from dock3_helpers import wait_for
    from fleet_helpers import metric, parse_metrics
    bay = os.path.join(BUILD, "examples", "bays", "http-bay")
    apps = []
    try:
        for name, threads in (("a", 2), ("b", 5)):
            env = dict(os.environ, MS_SOCKET_PATH=str(tmp_path / f"{name}.sock"), MS_SHIP=name,
                       MS_BAY_TYPE="http", MS_BAY_THREADS=str(threads), MS_BAY_WORKERS="0",
                       MS_BAY_DRAIN_TIMEOUT="5")
            apps.append(subprocess.Popen([bay], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL))
        wait_for(lambda: (tmp_path / "a.sock").exists() and (tmp_path / "b.sock").exists(),
                 what="the apps' sockets")
        port, mport = free_port(), free_port()
        head = (f'[mothership]\nworkers = 1\nmetrics_port = {mport}\n\n'
                f'[mothership.bind]\nhttp = "127.0.0.1:{port}"\n\n')

        def upstream(name):
            return (f'[[mothership.upstreams]]\nname = "app"\nbind = "unix://{tmp_path}/{name}.sock"\n'
                    'routes = ["http:/.*"]\n')

        def cap():
            return metric(parse_metrics(http_get(mport, "/metrics")[1]), "mothership_hbay_links_cap", bay="app")

        ms = fleet(head + upstream("a"), name="ship-manifest.toml")
        ms.event("fleet_ready", timeout=15)
        assert http_get(port, "/") == (200, "hello from a\n")
        assert cap() == 2

        (tmp_path / "ship-manifest.toml").write_text(head + upstream("b"))
        start = len(ms.lines)
        ms.signal(signal.SIGHUP)
        ms.event("reloaded", start=start, timeout=10)
        assert http_get(port, "/") == (200, "hello from b\n")
        assert cap() == 5
        assert ms.stop() == 0
    finally:
        for p in apps:
            p.kill()
            p.wait()


def test_a_ready_http_bay_counts_as_docked(fleet, tmp_path):
    """mothership_bay_docked is 1 for an HTTP bay that is ready (its Dock
    answered), as for a docked WebSocket bay: not 0 while it serves."""
    from conftest import BUILD
    from fleet_helpers import metric, parse_metrics
    port, mport = free_port(), free_port()
    bay = os.path.join(BUILD, "examples", "bays", "http-bay")
    ms = fleet(f'''
        [mothership]
        metrics_port = {mport}
        socket_dir = "{tmp_path}/sock"

        [mothership.bind]
        http = "127.0.0.1:{port}"

        [[bays.http]]
        name = "app"
        command = "{bay}"
        threads = 2
        routes = ["http:/.*"]
    ''')
    ms.event("ready", ship="app", timeout=15)
    assert http_get(port, "/") == (200, "hello from app\n")
    samples = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(samples, "mothership_bay_docked", bay="app") == 1
    assert ms.stop() == 0


def test_the_example_fleet_serves_a_wsgi_app_as_an_http_bay():
    """make run's manifest routes /wsgi on both binds to its HTTP bay."""
    example = os.path.join(ROOT, "examples", "ship-manifest.toml")
    r = run_ms("chart", "-c", example)
    if r.code != 0 and "wasm" in r.err:
        pytest.skip("the example payloads are not built in ../build")
    assert r.code == 0, r
    rows = [line for line in r.out.splitlines() if "/wsgi" in line]
    assert len(rows) == 2, r.out
    assert all("-> bay wsgi" in row and "docking v3" in row and "strip /wsgi" in row for row in rows), rows
