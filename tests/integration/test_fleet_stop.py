"""`mothership run`, stopping: dependents stop before their dependencies,
SIGTERM then SIGKILL after shutdown_timeout, the "shutdown waiting for" line,
/health while stopping, a second SIGINT, and no process left behind after a
normal stop, a critical crash or `kill -9` of Mothership itself (children,
grandchildren, a double-forked grandchild, a daemon in its own session)."""
import json
import re
import signal
import time

from fleet_helpers import (PY, app, describe, event_ms, free_port, http_get,
                           toml_str, wait_file, wait_gone)


def pid_of(event):
    return int(re.search(r"\(pid (\d+)\)", event["msg"]).group(1))


def shim_of(pid):
    """The launch shim of a ship's process: its parent."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_ordered_shutdown_with_a_slow_child_and_one_ignoring_term(fleet, tmp_path):
    """web <- app <- db. web stops first; app ignores SIGTERM and is killed
    after its shutdown_timeout; db then drains for ~1.9s, long enough for the
    "shutdown waiting for" line; everything is gone and the exit is 0."""
    mport = free_port()
    ms = fleet(f"""
        [mothership]
        metrics_port = {mport}

        [[fleet.data]]
        name = "db"
        command = "sh"
        args = ["-c", "trap 'echo db draining; sleep 1.9; echo db drained; exit 0' TERM; echo db up; while :; do sleep 0.05; done"]
        ready_after = "50ms"
        shutdown_timeout = "10s"

        [[fleet.app]]
        name = "app"
        command = "sh"
        args = ["-c", "trap '' TERM; echo app up; while :; do sleep 0.05; done"]
        depends_on = ["db"]
        ready_after = "50ms"
        shutdown_timeout = "500ms"

        [[fleet.web]]
        name = "web"
        command = "sleep"
        args = ["100"]
        depends_on = ["app"]
        ready_after = "50ms"
    """)
    ms.event("fleet_ready")
    pids = {e["ship"]: pid_of(e) for e in ms.events("started")}
    ms.signal(signal.SIGTERM)
    sd = ms.event("shutdown")
    assert sd["msg"] == "stopping the fleet: SIGTERM received", sd
    web_stopping = ms.event("stopping", ship="web")
    assert web_stopping["msg"] == f'stopping ship "web" (pid {pids["web"]}): SIGTERM', web_stopping
    web_stopped = ms.event("stopped", ship="web")
    app_stopping = ms.event("stopping", ship="app")
    assert app_stopping["_i"] > web_stopped["_i"], ms.output()
    kill = ms.event("kill", ship="app")
    assert kill["msg"] == f'ship "app" (pid {pids["app"]}) did not stop within 500ms: SIGKILL', kill
    assert 0.45 <= event_ms(kill) - event_ms(app_stopping) <= 0.8, (app_stopping, kill)
    app_stopped = ms.event("stopped", ship="app")
    db_stopping = ms.event("stopping", ship="db")
    assert db_stopping["_i"] > app_stopped["_i"], ms.output()
    # /health says the fleet is stopping
    status, body = http_get(mport, "/health")
    assert status == 503 and json.loads(body)["status"] == "stopping", body
    waiting = ms.event("waiting", timeout=5)
    assert re.fullmatch(rf"shutdown waiting for db \(pid {pids['db']}, \d+ms\)", waiting["msg"]), waiting
    db_stopped = ms.event("stopped", ship="db", timeout=5)
    drained = ms.wait_for(r'"source":"db".*"msg":"db drained"')
    assert drained.index < db_stopped["_i"]
    assert ms.wait_exit() == 0, ms.output()
    assert ms.events("stopped")[-1]["msg"] == "fleet stopped (exit 0)"
    assert not wait_gone(list(pids.values()), timeout=2)


def test_second_sigint_kills_at_once(fleet, tmp_path):
    pidfile = tmp_path / "pid"
    ms = fleet(f"""
        [[fleet.app]]
        name = "stubborn"
        command = "sh"
        args = ["-c", "trap '' TERM INT; echo $$ > {pidfile}; while :; do sleep 0.05; done"]
        ready_after = "50ms"
        shutdown_timeout = "30s"
    """)
    fleet.pids_from(pidfile)
    ms.event("fleet_ready")
    pid = int(wait_file(pidfile).strip() or 0)
    ms.signal(signal.SIGINT)
    sd = ms.event("shutdown")
    assert sd["msg"] == "stopping the fleet: SIGINT received", sd
    ms.event("stopping", ship="stubborn")
    t0 = time.monotonic()
    ms.signal(signal.SIGINT)
    ka = ms.event("kill_all", timeout=2)
    assert ka["msg"] == "second SIGINT: killing everything now", ka
    ms.wait_exit(timeout=3)
    assert time.monotonic() - t0 < 2.0
    assert not wait_gone([pid], timeout=2), describe([pid])


# ------------------------------------------------------------------ no orphans
SPAWNER = """
    [[fleet.family]]
    name = "family"
    command = {py}
    args = [{spawner}, "{pidfile}"{extra}]
    ready_after = "100ms"
    shutdown_timeout = "3s"
"""


def spawner_fleet(fleet, tmp_path, extra="", more=""):
    pidfile = tmp_path / "family.pids"
    ms = fleet(SPAWNER.format(py=toml_str(PY), spawner=toml_str(app("spawner.py")), pidfile=pidfile,
                              extra=extra) + more)
    fleet.pids_from(pidfile)
    ms.event("started", ship="family")
    pids = [int(p) for p in wait_file(pidfile).split()]
    assert pid_of(ms.events("started", ship="family")[0]) == pids[0]  # the ship's own pid is shown
    family = [shim_of(pids[0])] + pids
    assert len(pids) == (4 if extra else 3), pids  # itself, a child, a double-forked one (+ a daemon)
    assert all(p > 0 for p in pids)
    return ms, family


def test_no_orphans_after_normal_stop(fleet, tmp_path):
    ms, family = spawner_fleet(fleet, tmp_path)
    ms.event("fleet_ready")
    assert wait_gone(family, timeout=0) == family, "the whole family should be running"
    assert ms.stop() == 0, ms.output()
    left = wait_gone(family, timeout=5)
    assert not left, f"survivors: {describe(left)}"


def test_no_orphans_after_a_critical_crash(fleet, tmp_path):
    gate = tmp_path / "gate"
    ms, family = spawner_fleet(fleet, tmp_path, more=f"""
        [[fleet.core]]
        name = "core"
        command = "sh"
        args = ["-c", "while [ ! -f {gate} ]; do sleep 0.02; done; exit 3"]
        ready_after = "50ms"
    """)
    ms.event("fleet_ready")
    gate.write_text("")
    ms.event("exited", ship="core")
    assert ms.wait_exit() == 1, ms.output()
    left = wait_gone(family, timeout=5)
    assert not left, f"survivors: {describe(left)}"


def test_no_orphans_after_kill_9_of_mothership(fleet, tmp_path):
    ms, family = spawner_fleet(fleet, tmp_path)
    ms.event("fleet_ready")
    ms.signal(signal.SIGKILL)
    assert ms.wait_exit() == -signal.SIGKILL
    left = wait_gone(family, timeout=5)
    assert not left, f"survivors: {describe(left)}"


def test_no_orphans_when_a_grandchild_daemonizes_into_its_own_session(fleet, tmp_path):
    """A grandchild that double-forks and calls setsid leaves the ship's
    process group; it must still not outlive Mothership."""
    ms, family = spawner_fleet(fleet, tmp_path, extra=', "--setsid"')
    ms.event("fleet_ready")
    assert ms.stop() == 0, ms.output()
    left = wait_gone(family, timeout=5)
    assert not left, f"survivors: {describe(left)}"


def test_no_orphans_when_a_daemonized_grandchild_and_mothership_is_killed(fleet, tmp_path):
    ms, family = spawner_fleet(fleet, tmp_path, extra=', "--setsid"')
    ms.event("fleet_ready")
    ms.signal(signal.SIGKILL)
    ms.wait_exit()
    left = wait_gone(family, timeout=5)
    assert not left, f"survivors: {describe(left)}"
