"""HTTP bays ([[bays.http]]) and upstreams ([[mothership.upstreams]]) in the
fleet, through the real binary: an upstream is never started, is ready at
launch, shows in status and chart with its bind, refuses
restart/stop/signal, and ships may depend on it."""
import json
import os
import socket
import subprocess
import threading

from conftest import BINARY, run_ms
from fleet_helpers import Mothership, free_port, http_get

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
