"""Replicas through the real binary: a ship with `instances = 3` runs three
processes, web#0 .. web#2, each started with its own {instance}/{port} in
args and env and MS_INSTANCE in its environment, each listening at its own
templated bind; `depends_on = ["web"]` waits for all three."""
import json
import signal

from conftest import run_ms
from fleet_helpers import PY, app, free_port_run, http_get, toml_str, wait_file




def test_three_instances_get_their_own_port_and_instance(fleet, tmp_path):
    base = free_port_run(6)  # 3 instances and their 3 replacement ports
    script = (f"{toml_str(PY)[1:-1]} {app('envdump.py')} {tmp_path}/env-{{instance}}.json && "
              f"exec {toml_str(PY)[1:-1]} {app('echo_backend.py')} --port {{port}} --name web-{{instance}}")
    ms = fleet(f"""
        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{{port}}"
        port = {base}
        instances = 3
        env = {{ WHO = "{{instance}}:{{port}}:{{gen}}", KEEP = "{{other}}" }}

        [[fleet.after]]
        name = "after"
        command = {toml_str(PY)}
        args = [{toml_str(app('envdump.py'))}, "{tmp_path}/env-after.json", "stay"]
        depends_on = ["web"]
        """)
    ready = {i: ms.event("ready", ship=f"web#{i}") for i in range(3)}
    started = ms.event("started", ship="after")
    # "after" depends on every instance: it starts once all three are ready
    assert all(r["_i"] < started["_i"] for r in ready.values())
    for i in range(3):
        env = json.loads(wait_file(tmp_path / f"env-{i}.json"))
        assert env["MS_INSTANCE"] == str(i)
        assert env["WHO"] == f"{i}:{base + i}:0"
        assert env["KEEP"] == "{other}"  # not a placeholder: kept as written
        status, body = http_get(base + i, "/x")
        assert status == 200
        assert json.loads(body)["name"] == f"web-{i}"
    env = json.loads(wait_file(tmp_path / "env-after.json"))
    assert "MS_INSTANCE" not in env  # a ship without instances or port
    assert ms.stop() == 0


def test_chart_shows_a_ship_with_instances_once(manifest):
    path = manifest("""
        [mothership.bind]
        http = "127.0.0.1:18080"

        [[fleet.web]]
        name = "web"
        command = "./web"
        bind = "unix:///tmp/ms-test-web-{instance}.sock"
        instances = 2
        balance = "least_conn"
        routes = ["http:/.*"]

        [[fleet.w]]
        name = "worker"
        command = "./w"
        """)
    r = run_ms("chart", "-c", path)
    assert r.code == 0, r
    assert ("   1. route   /.*                      -> ship web  unix:///tmp/ms-test-web-0.sock  "
            "(2 instances, least_conn)") in r.out.splitlines(), r.out
    assert "not routed: worker (worker)" in r.out.splitlines(), r.out
    j = json.loads(run_ms("chart", "--json", "-c", path).out)
    route = j["binds"][0]["routes"][0]
    assert (route["target"], route["instances"]) == ("web", 2)


def test_a_reload_that_changes_instances_keeps_the_instances_that_stay(fleet, tmp_path):
    base = free_port_run(6)
    front = free_port_run(1)

    def text(n):
        return f"""
[mothership]
socket_dir = "{tmp_path}/s"

[mothership.bind]
http = "127.0.0.1:{front}"

[[fleet.web]]
name = "web"
command = {toml_str(PY)}
args = [{toml_str(app('echo_backend.py'))}, "--port", "{{port}}", "--name", "web-{{instance}}"]
bind = "tcp://127.0.0.1:{{port}}"
port = {base}
instances = {n}
critical = false
routes = ["http:/.*"]

[[fleet.w]]
name = "after"
command = "sleep"
args = ["100"]
ready_after = "50ms"
depends_on = ["web"]
"""
    ms = fleet(text(2), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=15)
    for n, started, stopped in ((3, ["web#2"], []), (2, [], ["web#2"])):
        (tmp_path / "ship-manifest.toml").write_text(text(n))
        start = len(ms.lines)
        ms.signal(signal.SIGHUP)
        done = ms.event("reloaded", start=start)
        assert f"0 restarted, {len(started)} started, {len(stopped)} stopped" in done["msg"], done
        for name in started:
            ms.event("ready", ship=name, start=start)
        for name in stopped:
            ms.event("stopped", ship=name, start=start)
        status, body = http_get(front, "/x")
        assert status == 200, body
    # one start each: web#0, web#1 and after ran throughout
    for name in ("web#0", "web#1", "after"):
        assert len(ms.events("started", ship=name)) == 1, ms.output()
    assert len(ms.events("started", ship="web#2")) == 1
    assert ms.stop() == 0
