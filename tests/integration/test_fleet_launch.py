"""`mothership run`, launching: dependency order and every kind of
readiness (oneshot exit 0, health check, bind on TCP and on a Unix socket,
bay socket, worker grace), oneshot failures, readiness timeouts, commands
that cannot start, tag filtering, environment precedence, the bay
environment and the uplink gate. The real binary runs real children (small
programs in apps/ or inline sh); every wait is on a logged event."""
import json
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from conftest import BINARY, run_ms
from fleet_helpers import (PY, app, event_ms, free_port, http_get, metric,
                           parse_metrics, toml_str, wait_file)


def started_names(ms):
    return [e["ship"] for e in ms.events("started")]


# ------------------------------------------------------------------ ordering and readiness
def test_dependent_waits_for_oneshot_to_exit_zero(fleet, tmp_path):
    marker = tmp_path / "migrated"
    ms = fleet(f"""
        [[fleet.jobs]]
        name = "migrate"
        command = "sh"
        args = ["-c", "sleep 0.2; echo migrated > {marker}; echo migration done"]
        oneshot = true

        [[fleet.web]]
        name = "app"
        command = "sh"
        args = ["-c", "if test -f {marker}; then echo saw-migration; else echo NO-MIGRATION; fi; exec sleep 100"]
        depends_on = ["migrate"]
        ready_after = "100ms"
    """)
    done = ms.event("done", ship="migrate")
    assert re.search(r'job "migrate" finished in \d+ms \(exit 0\)', done["msg"]), done
    started = ms.event("started", ship="app")
    assert started["_i"] > done["_i"], ms.output()
    ms.event("fleet_ready")
    assert [l["msg"] for l in ms.child_lines("app")] == ["saw-migration"], ms.output()
    assert ms.stop() == 0, ms.output()


def test_dependent_waits_for_health_check_and_health_endpoint_follows(fleet, tmp_path):
    """While db's health check fails, app is not started and /health is 503
    naming what is pending; once it passes app starts and /health is 200."""
    port, mport = free_port(), free_port()
    sick = tmp_path / "sick"
    sick.write_text("")
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.data]]
        name = "db"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--sick", "{sick}"]
        bind = "tcp://127.0.0.1:{port}"
        healthcheck = {{ path = "/health", interval = "100ms", timeout = "500ms" }}

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["db"]
        ready_after = "50ms"
    """)
    ms.event("started", ship="db")
    # the readiness probe reached the ship and was told 503 (the app logs each request)
    ms.wait_for(r'"source":"db".*GET /health HTTP/1.1\\" 503', timeout=10)
    status, body = http_get(mport, "/health")
    assert status == 503, body
    h = json.loads(body)
    assert h["status"] == "launching", h
    waiting = {w["name"]: w["state"] for w in h["waiting_for"]}
    assert waiting == {"db": "starting", "app": "waiting"}, h
    assert "app" not in started_names(ms), ms.output()
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_fleet_up") == 0
    assert metric(m, "mothership_ship_status", ship="db", group="data") == 0

    sick.unlink()
    ready = ms.event("ready", ship="db")
    assert "GET /health answered 200" in ready["msg"], ready
    started = ms.event("started", ship="app")
    assert started["_i"] > ready["_i"]
    ms.event("fleet_ready")
    status, body = http_get(mport, "/health")
    assert status == 200, body
    assert json.loads(body) == {"status": "up"}
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_fleet_up") == 1
    assert ms.stop() == 0, ms.output()


def test_dependent_waits_for_tcp_and_unix_binds_to_accept(fleet, tmp_path):
    port = free_port()
    sock = tmp_path / "db.sock"
    gate_tcp, gate_unix = tmp_path / "gate-tcp", tmp_path / "gate-unix"
    ms = fleet(f"""
        [[fleet.data]]
        name = "db-tcp"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{port}", "--gate", "{gate_tcp}"]
        bind = "tcp://127.0.0.1:{port}"

        [[fleet.data]]
        name = "db-unix"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--unix", "{sock}", "--gate", "{gate_unix}"]
        bind = "unix://{sock}"

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["db-tcp", "db-unix"]
        ready_after = "50ms"
    """)
    ms.event("started", ship="db-tcp")
    ms.event("started", ship="db-unix")
    gate_tcp.write_text("")
    r1 = ms.event("ready", ship="db-tcp")
    assert f"tcp://127.0.0.1:{port} accepts connections" in r1["msg"], r1
    assert "app" not in started_names(ms), ms.output()
    gate_unix.write_text("")
    r2 = ms.event("ready", ship="db-unix")
    assert f"unix://{sock} accepts connections" in r2["msg"], r2
    s = ms.event("started", ship="app")
    assert s["_i"] > r1["_i"] and s["_i"] > r2["_i"], ms.output()
    ms.event("fleet_ready")
    assert ms.stop() == 0, ms.output()


def test_worker_is_ready_after_its_grace(fleet):
    ms = fleet("""
        [[fleet.workers]]
        name = "worker"
        command = "sleep"
        args = ["100"]
        ready_after = "400ms"

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["worker"]
        ready_after = "50ms"
    """)
    w = ms.event("started", ship="worker")
    r = ms.event("ready", ship="worker")
    assert "(up for 400ms)" in r["msg"], r
    a = ms.event("started", ship="app")
    assert a["_i"] > r["_i"]
    # the dependent came no sooner than the grace
    # timestamps are in ms, and the loop's clock may lag the log's by a few ms
    assert event_ms(a) - event_ms(w) >= 0.37, (w, a)
    assert a["_t"] - w["_t"] >= 0.35
    ms.event("fleet_ready")
    assert ms.stop() == 0, ms.output()


def test_worker_dying_within_its_grace_is_not_ready(fleet):
    ms = fleet("""
        [[fleet.workers]]
        name = "shaky"
        command = "sh"
        args = ["-c", "exit 4"]
        ready_after = "300ms"
    """)
    ex = ms.event("exited", ship="shaky")
    assert "exited with status 4" in ex["msg"], ex
    assert ms.wait_exit() == 1, ms.output()
    assert not ms.events("ready"), ms.output()
    assert not ms.events("fleet_ready"), ms.output()


# ------------------------------------------------------------------ oneshot failures
def test_critical_oneshot_failure_fails_the_launch(fleet):
    ms = fleet("""
        [[fleet.jobs]]
        name = "migrate"
        command = "sh"
        args = ["-c", "echo migration broke >&2; exit 3"]
        oneshot = true

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["migrate"]
    """)
    failed = ms.event("failed", ship="migrate")
    assert failed["msg"] == 'job "migrate" failed: it exited with status 3', failed
    sd = ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: job "migrate" exited with status 3', sd
    assert sd["level"] == "error"
    assert ms.wait_exit() == 1, ms.output()
    assert started_names(ms) == ["migrate"], ms.output()
    assert ms.events("stopped")[-1]["msg"] == "fleet stopped (exit 1)"


def test_noncritical_oneshot_failure_skips_its_dependents(fleet):
    ms = fleet("""
        [[fleet.jobs]]
        name = "seed"
        command = "sh"
        args = ["-c", "exit 2"]
        oneshot = true
        critical = false

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["seed"]

        [[fleet.web]]
        name = "admin"
        command = "sleep"
        args = ["100"]
        depends_on = ["app"]

        [[fleet.web]]
        name = "other"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"
    """)
    f = ms.event("failed", ship="seed")
    assert "exited with status 2" in f["msg"]
    s1 = ms.event("skipped", ship="app")
    assert s1["msg"] == 'ship "app" skipped: it depends on job "seed", which failed', s1
    s2 = ms.event("skipped", ship="admin")
    assert s2["msg"] == 'ship "admin" skipped: it depends on ship "app", which was skipped', s2
    ms.event("fleet_ready")
    assert sorted(started_names(ms)) == ["other", "seed"], ms.output()
    assert ms.stop() == 0, ms.output()


# ------------------------------------------------------------------ readiness timeout, spawn failure
def test_ready_timeout_says_what_was_awaited(fleet, tmp_path):
    port, hport = free_port(), free_port()
    sick = tmp_path / "sick"
    sick.write_text("")
    ms = fleet(f"""
        [[fleet.web]]
        name = "sickly"
        command = {toml_str(PY)}
        args = [{toml_str(app("health_app.py"))}, "--port", "{hport}", "--sick", "{sick}"]
        bind = "tcp://127.0.0.1:{hport}"
        healthcheck = {{ path = "/health", interval = "100ms" }}
        ready_timeout = "2s"
        critical = false
        restart = {{ backoff = "5s" }}

        [[fleet.web]]
        name = "stuck"
        command = "sleep"
        args = ["100"]
        bind = "tcp://127.0.0.1:{port}"
        ready_timeout = "2500ms"
    """)
    t1 = ms.event("ready_timeout", ship="sickly")
    assert t1["msg"] == (f'ship "sickly" not ready after 2000ms (waiting for GET /health on '
                         f'tcp://127.0.0.1:{hport} to answer 2xx/3xx; last: HTTP 503)'), t1
    # not critical: treated as a crash, killed and restarted later
    ms.event("backoff", ship="sickly")
    t2 = ms.event("ready_timeout", ship="stuck")
    assert t2["msg"] == (f'ship "stuck" not ready after 2500ms (waiting for tcp://127.0.0.1:{port} '
                         f'to accept connections; last: connection refused)'), t2
    sd = ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: ship "stuck" did not become ready', sd
    assert ms.wait_exit() == 1, ms.output()


def test_command_not_found(fleet, tmp_path):
    ms = fleet("""
        [[fleet.web]]
        name = "ghost"
        command = "no-such-command-zz9"
    """)
    e = ms.event("spawn_failed", ship="ghost")
    assert e["msg"] == f'ship "ghost": command "no-such-command-zz9" not found on PATH (from {tmp_path})', e
    sd = ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: ship "ghost" could not be started', sd
    assert ms.wait_exit() == 1, ms.output()

    ms = fleet("""
        [[fleet.web]]
        name = "ghost"
        command = "./bin/missing"
    """)
    e = ms.event("spawn_failed", ship="ghost")
    assert 'command "./bin/missing" not found or not executable' in e["msg"], e
    assert ms.wait_exit() == 1, ms.output()


# ------------------------------------------------------------------ tag filtering
def sleeper(group, name, *keys):
    """A [[fleet.group]] entry that sleeps, ready at once; keys: more lines."""
    lines = [f"[[fleet.{group}]]", f'name = "{name}"', 'command = "sleep"', 'args = ["100"]',
             'ready_after = "50ms"', *keys]
    return "\n" + "".join(f"    {line}\n" for line in lines)


def assert_launched(ms, expect):
    """The fleet, ready, launched the ships expect of its four and no other."""
    ready = ms.event("fleet_ready")
    assert re.match(rf"fleet ready: {len(expect)} entr(y|ies) ", ready["msg"]), ready
    assert ms.events("launch")[0]["msg"].startswith(f"launching {len(expect)} of 4 entries"), ms.output()
    assert set(started_names(ms)) == expect, ms.output()


TAGGED = ("""
    [mothership]
    metrics_port = {mport}
""" + sleeper("data", "db", 'tags = ["data"]')
          + sleeper("web", "app", 'depends_on = ["db"]', 'tags = ["web"]')
          + sleeper("bg", "worker", 'tags = ["bg"]')
          + sleeper("bg", "cron", 'tags = ["bg", "nightly"]'))


@pytest.mark.parametrize("args, expect", [
    (["--only", "web"], {"db", "app"}),             # pulls in its dependency
    (["--except", "bg"], {"db", "app"}),
    (["--only", "web,bg", "--except", "nightly"], {"db", "app", "worker"}),
])
def test_tag_filtering(fleet, args, expect):
    mport = free_port()
    ms = fleet(TAGGED.format(mport=mport), *args)
    assert_launched(ms, expect)
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_fleet_ships_total") == len(expect)
    assert ms.stop() == 0, ms.output()
    assert set(started_names(ms)) == expect


def test_tag_filtering_errors(manifest):
    path = manifest(TAGGED.format(mport=free_port()))
    r = run_ms("run", "-c", path, "--except", "data", timeout=10)
    assert r.code == 1, r
    assert 'mothership: --except removes ship "db", but ship "app" depends on it' in r.err, r
    assert "started" not in r.out
    r = run_ms("run", "-c", path, "--only", "web", "--except", "data", timeout=10)
    assert r.code == 1, r
    assert '"db"' in r.err and '"app"' in r.err, r
    r = run_ms("run", "-c", path, "--only", "web,nope", timeout=10)
    assert r.code == 1, r
    assert 'mothership: --only: no ship or bay has the tag or group "nope" (tags: data, web, bg, nightly; ' \
           'groups: data, web, bg)' in r.err, r
    r = run_ms("run", "-c", path, "--except", "nope", timeout=10)
    assert r.code == 1, r
    assert '--except: no ship or bay has the tag or group "nope"' in r.err, r
    r = run_ms("run", "-c", path, "--except", "data,web,bg", timeout=10)
    assert r.code == 1, r
    assert "leaves nothing to launch" in r.err, r


# The seed's own examples: groups without any tags.
GROUPED = (sleeper("data", "db")
           + sleeper("web", "app", 'depends_on = ["db"]')
           + sleeper("workers", "mailer", 'tags = ["mail"]')
           + sleeper("workers", "indexer"))


@pytest.mark.parametrize("args, expect", [
    (["--only", "web"], {"db", "app"}),                     # a group, with its dependency
    (["--except", "workers"], {"db", "app"}),               # a whole group out
    (["--only", "workers", "--except", "mail"], {"indexer"}),  # a group, then a tag out of it
])
def test_group_filtering(fleet, args, expect):
    ms = fleet(GROUPED, *args)
    assert_launched(ms, expect)
    assert ms.stop() == 0, ms.output()


def test_group_filtering_errors(manifest):
    path = manifest(GROUPED)
    r = run_ms("run", "-c", path, "--only", "wbe", timeout=10)
    assert r.code == 1, r
    assert 'mothership: --only: no ship or bay has the tag or group "wbe" (tags: mail; ' \
           'groups: data, web, workers)' in r.err, r
    assert "started" not in r.out
    r = run_ms("run", "-c", path, "--except", "data", timeout=10)
    assert r.code == 1, r
    assert 'mothership: --except removes ship "db", but ship "app" depends on it' in r.err, r


def test_a_bays_type_is_its_group(manifest):
    path = manifest(GROUPED + """
    [[bays.websocket]]
    name = "chat"
    command = "sleep"
    depends_on = ["db"]
    """)
    r = run_ms("run", "-c", path, "--only", "nope", timeout=10)
    assert r.code == 1, r
    assert "(tags: mail; groups: data, web, workers, websocket)" in r.err, r
    # the type selects the bay: leaving it out, and its dependency, leaves it alone
    r = run_ms("run", "-c", path, "--except", "websocket,data", "--only", "websocket", timeout=10)
    assert r.code == 1, r
    assert "leaves nothing to launch" in r.err, r


# ------------------------------------------------------------------ environment
def test_env_precedence(fleet, tmp_path):
    out = tmp_path / "env.json"
    sub = tmp_path / "sub"
    sub.mkdir()
    ms = fleet(f"""
        [mothership.env]
        B = "global"
        C = "global"
        D = "global"

        [base.ship]
        env = {{ C = "base", D = "base", E = "base" }}

        [[fleet.jobs]]
        name = "dump"
        command = {toml_str(PY)}
        args = [{toml_str(app("envdump.py"))}, "{out}"]
        oneshot = true
        cwd = "sub"
        env = {{ D = "ship", F = 42 }}
    """, env={"A": "process", "B": "process", "C": "process", "D": "process"})
    ms.event("done", ship="dump")
    env = json.loads(out.read_text())
    assert {k: env.get(k) for k in "ABCDEF"} == {
        "A": "process", "B": "global", "C": "base", "D": "ship", "E": "base", "F": "42"}, env
    assert env["__cwd__"] == str(sub)
    assert "PATH" in env  # Mothership's own environment is passed on
    assert ms.stop() == 0, ms.output()


def test_ships_start_with_no_signal_ignored(fleet, tmp_path):
    """Mothership was started with real-time signals and SIGUSR2 ignored (a
    parent may do that, and Mothership ignores some itself): its ships do not
    inherit that (libuv resets only signals 1..31 when it spawns)."""
    out = tmp_path / "status"
    path = fleet.write(f"""
        [[fleet.jobs]]
        name = "status"
        command = "sh"
        args = ["-c", "cat /proc/self/status > {out}.tmp && mv {out}.tmp {out}"]
        oneshot = true
    """)

    def ignore_some():
        for sig in [signal.SIGUSR2, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1)]:
            signal.signal(sig, signal.SIG_IGN)

    ms = subprocess.Popen([BINARY, "run", "-c", path], cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ignore_some)
    try:
        status = wait_file(out)
    finally:
        ms.send_signal(signal.SIGTERM)
        ms.wait(10)
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    # 32 and 33 are glibc's own: no process can reset them through libc, and
    # glibc's posix_spawn (make uses it) starts children with 32 ignored
    ignored &= ~((1 << 31) | (1 << 32))
    assert ignored == 0, f"signals ignored in a ship: {ignored:#x}"


def test_bay_env_and_bay_ready_once_docked(fleet, tmp_path):
    sockdir = tmp_path / "sockets"
    envfile, gate = tmp_path / "bay-env.json", tmp_path / "gate"
    ms = fleet(f"""
        [mothership]
        socket_dir = "{sockdir}"

        [[bays.websocket]]
        name = "chat"
        command = {toml_str(PY)}
        args = [{toml_str(app("bay.py"))}, "{envfile}", "{gate}"]
        env = {{ OWN = "yes" }}

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        depends_on = ["chat"]
        ready_after = "50ms"
    """, env={"MS_SHIP": "impostor", "MS_BAY_TYPE": "impostor"})
    ms.event("started", ship="chat")
    env = json.loads(wait_file(envfile))
    sock = f"{sockdir}/chat.sock"
    assert env["MS_PID"] == str(ms.pid)
    assert env["MS_SHIP"] == "chat"
    assert env["MS_SOCKET_DIR"] == str(sockdir)
    assert env["MS_SOCKET_PATH"] == sock
    assert env["MS_BAY_TYPE"] == "websocket"
    assert env["OWN"] == "yes"
    assert os.path.isdir(sockdir)
    assert "app" not in started_names(ms), ms.output()
    gate.write_text("")
    r = ms.event("ready", ship="chat")
    assert r["msg"].startswith('bay "chat" ready in ') and f"docked on {sock}, protocol v1 (text only)" in r["msg"], r
    a = ms.event("started", ship="app")
    assert a["_i"] > r["_i"]
    ms.event("fleet_ready")
    assert ms.stop() == 0, ms.output()


# ------------------------------------------------------------------ uplinks gate `run`
class Listener:
    """A TCP listener counting accepted connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.accepts += 1
                self.cond.notify_all()
            c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    ls = []

    def make():
        ls.append(Listener())
        return ls[-1]
    yield make
    for l in ls:
        l.close()


def test_uplinks_up_and_deduplicated_then_launch(fleet, listener):
    db, cache = listener(), listener()
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[uplinks]]
        name = "primary"
        url = "tcp://127.0.0.1:{db.port}"
        timeout = "1s"

        [[uplinks]]
        name = "replica"
        url = "tcp://127.0.0.1:{db.port}"
        timeout = "1s"

        [[uplinks]]
        name = "cache"
        url = "tcp://127.0.0.1:{cache.port}"
        timeout = "1s"

        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"
    """)
    ups = {}
    for _ in range(3):
        e = ms.event("uplink_up", start=max([u["_i"] for u in ups.values()], default=-1) + 1)
        ups[re.match(r'uplink "(\w+)"', e["msg"]).group(1)] = e
    assert set(ups) == {"primary", "replica", "cache"}, ms.output()
    assert ups["cache"]["msg"].startswith(f'uplink "cache" (tcp://127.0.0.1:{cache.port}) is up: '), ups
    dup = [n for n in ("primary", "replica") if "(same host:port, checked once)" in ups[n]["msg"]]
    assert len(dup) == 1, ups
    assert "checked once" not in ups["cache"]["msg"]
    started = ms.event("started", ship="app")
    assert started["_i"] > max(u["_i"] for u in ups.values())
    ms.event("fleet_ready")
    with db.cond:
        db.cond.wait_for(lambda: db.accepts >= 1, timeout=5)
    assert db.accepts == 1, "the same host:port was checked twice"
    m = parse_metrics(http_get(mport, "/metrics")[1])
    assert metric(m, "mothership_uplink_up", uplink="primary", address=f"tcp://127.0.0.1:{db.port}") == 1, m
    assert metric(m, "mothership_uplink_up", uplink="replica", address=f"tcp://127.0.0.1:{db.port}") == 1, m
    assert metric(m, "mothership_uplink_up", uplink="cache", address=f"tcp://127.0.0.1:{cache.port}") == 1, m
    assert metric(m, "mothership_uplink_check_seconds", uplink="cache",
                  address=f"tcp://127.0.0.1:{cache.port}") is not None
    assert ms.stop() == 0, ms.output()


def test_uplink_down_aborts_run_before_anything_starts(fleet, listener, tmp_path):
    up = listener()
    down = free_port()
    marker = tmp_path / "ran"
    ms = fleet(f"""
        [[uplinks]]
        name = "cache"
        url = "tcp://127.0.0.1:{up.port}"
        timeout = "1s"

        [[uplinks]]
        name = "db"
        url = "tcp://127.0.0.1:{down}"
        timeout = "300ms"

        [[fleet.jobs]]
        name = "migrate"
        command = "sh"
        args = ["-c", "touch {marker}"]
        oneshot = true
    """)
    d = ms.event("uplink_down")
    assert d["msg"] == f'uplink "db" (tcp://127.0.0.1:{down}) is down: connection refused', d
    a = ms.event("launch_aborted")
    assert "nothing was started" in a["msg"], a
    assert ms.wait_exit() == 1, ms.output()
    assert not ms.events("started") and not ms.events("launch"), ms.output()
    assert not marker.exists()
    assert [e for e in ms.events("uplink_up") if '"cache"' in e["msg"]], ms.output()
