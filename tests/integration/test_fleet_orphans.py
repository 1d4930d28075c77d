"""`mothership run`: no process of a ship outlives its launch shim. A
`kill -9` of the shim (the ship's parent) takes the ship's process, a
grandchild in its process group and a daemon in a session of its own with
it; the ship is restarted and binds its port again; Mothership's clean exit
after that leaves nothing behind. The pid shown in the logs is the ship's
own process, not the shim's."""
import os
import re
import signal

from fleet_helpers import (PY, alive, app, describe, free_port, http_get,
                           toml_str, wait_file, wait_gone)

SHIP = """
    [[fleet.web]]
    name = "web"
    command = {py}
    args = [{bound}, "{port}", "{pidfile}"{extra}]
    bind = "127.0.0.1:{port}"
    critical = false
    restart = {{ backoff = "{backoff}" }}
    shutdown_timeout = "2s"
"""


def pid_of(event):
    return int(re.search(r"\(pid (\d+)\)", event["msg"]).group(1))


def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def bound_fleet(fleet, tmp_path, extra=', "--fork", "--setsid"', backoff="100ms"):
    port = free_port()
    pidfile = tmp_path / "web.pids"
    ms = fleet(SHIP.format(py=toml_str(PY), bound=toml_str(app("bound.py")), port=port, pidfile=pidfile,
                           extra=extra, backoff=backoff))
    fleet.pids_from(pidfile)
    ms.event("ready", ship="web")
    pids = [int(p) for p in wait_file(pidfile).split()]
    shim = ppid(pids[0])
    assert b"--ms-shim" in cmdline(shim), describe([shim])
    return ms, port, pidfile, shim, pids


def test_kill_9_of_the_shim_takes_the_ship_with_it_and_it_binds_again(fleet, tmp_path):
    ms, port, pidfile, shim, pids = bound_fleet(fleet, tmp_path)
    assert len(pids) == 3, pids  # itself, a grandchild holding the port, a daemon holding it too
    assert http_get(port, "/") == (200, str(pids[0]))
    start = len(ms.lines)
    pidfile.unlink()
    os.kill(shim, signal.SIGKILL)
    left = wait_gone(pids, timeout=5)
    assert not left, f"survivors of the shim: {describe(left)}"
    ms.event("exited", ship="web", start=start)
    ms.event("ready", ship="web", start=start, timeout=10)
    new = [int(p) for p in wait_file(pidfile).split()]
    assert new[0] not in pids
    assert http_get(port, "/") == (200, str(new[0]))
    assert not [e for e in ms.events() if "Address already in use" in e.get("msg", "")], ms.output()
    assert not [l for l in ms.output().splitlines() if "Address already in use" in l], ms.output()
    assert ms.stop() == 0, ms.output()
    left = wait_gone(new, timeout=5)
    assert not left, f"survivors of the clean exit: {describe(left)}"


def test_clean_exit_after_kill_9_of_the_shim_leaves_no_process(fleet, tmp_path):
    """The shim dies and the fleet is stopped before the restart (a long
    backoff): nothing of the ship's family survives Mothership."""
    ms, port, pidfile, shim, pids = bound_fleet(fleet, tmp_path, backoff="30s")
    start = len(ms.lines)
    os.kill(shim, signal.SIGKILL)
    ms.event("exited", ship="web", start=start)
    assert ms.stop() == 0, ms.output()
    left = wait_gone(pids + [shim], timeout=5)
    assert not left, f"survivors: {describe(left)}"


def test_the_pid_shown_is_the_ships_own_process(fleet, tmp_path):
    ms, port, pidfile, shim, pids = bound_fleet(fleet, tmp_path, extra="")
    started = ms.events("started", ship="web")
    assert len(started) == 1, started
    shown = pid_of(started[0])
    assert shown == pids[0], (shown, pids, describe([shown]))
    assert alive(shown)
    cmd = cmdline(shown)
    assert cmd[0] == PY.encode() or cmd[0].endswith(b"python3"), cmd
    assert cmd[1] == app("bound.py").encode(), cmd
    assert ms.stop() == 0, ms.output()
    stopping = ms.events("stopping", ship="web")
    stopped = ms.events("stopped", ship="web")
    assert stopping and pid_of(stopping[0]) == shown, stopping
    assert stopped and pid_of(stopped[0]) == shown, stopped



def wrap_binary(monkeypatch, tmp_path, before="", prefix=""):
    """Run `mothership` through a shell script that runs `before`, then
    execs `prefix` and the real binary with the arguments."""
    import fleet_helpers
    script = tmp_path / "wrap.sh"
    script.write_text(f"#!/bin/sh\n{before}\nexec {prefix} {fleet_helpers.BINARY} \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setattr(fleet_helpers, "BINARY", str(script))


JOB = """
    [[fleet.web]]
    name = "job"
    command = "true"
    oneshot = true
    critical = false
"""


def test_a_child_it_did_not_start_is_left_alone(fleet, tmp_path, monkeypatch):
    """`sidecar & exec mothership run`: the sidecar is Mothership's child
    from the start, but no ship's: the orphan sweep reaps such a child when
    it ends and never kills it."""
    sidecar = tmp_path / "sidecar.pid"
    wrap_binary(monkeypatch, tmp_path, before=f"sleep 300 & echo $! > {sidecar}")
    ms = fleet(JOB)
    fleet.pids_from(sidecar)
    pid = int(wait_file(sidecar, predicate=str.strip).split()[0])
    ms.event("done", ship="job")  # its exit ran the sweep
    ms.event("fleet_ready")
    assert wait_gone([pid], timeout=1) == [pid], f"the sidecar was killed:\n{ms.output()}"
    assert ppid(pid) == ms.pid
    assert ms.stop() == 0, ms.output()
    assert alive(pid)


def outer_pids(marker):
    """Processes with `marker` as one of their arguments (pids as seen from
    outside any pid namespace)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if marker.encode() in cmdline(int(d)):
                    found.append(int(d))
            except OSError:
                pass
    return found


def test_as_pid_1_a_daemon_of_the_ship_dies_with_its_shim(fleet, tmp_path, monkeypatch):
    """As PID 1 of its own pid namespace, Mothership still kills a ship's
    daemon (a session of its own) once the shim is gone: it would hold the
    port, and every restart would fail."""
    import subprocess
    import pytest
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    wrap_binary(monkeypatch, tmp_path, prefix="unshare --pid --fork --mount-proc --kill-child")
    port = free_port()
    pidfile = tmp_path / "web.pids"
    ms = fleet(SHIP.format(py=toml_str(PY), bound=toml_str(app("bound.py")), port=port, pidfile=pidfile,
                           extra=', "--fork", "--setsid"', backoff="30s"))
    ms.event("ready", ship="web")
    wait_file(pidfile)
    family = outer_pids(str(port))
    shims = [p for p in family if b"--ms-shim" in cmdline(p)]
    ship = [p for p in family if p not in shims]
    assert len(ship) == 3 and len(shims) == 1, describe(family)
    inner = [p for p in outer_pids("run") if ppid(p) == ms.pid]  # Mothership, PID 1 inside
    assert len(inner) == 1, describe(inner)
    start = len(ms.lines)
    os.kill(shims[0], signal.SIGKILL)
    ms.event("exited", ship="web", start=start)
    left = wait_gone(ship, timeout=5)
    assert not left, f"survivors of the shim: {describe(left)}\n{ms.output()}"
    os.kill(inner[0], signal.SIGTERM)
    assert ms.proc.wait(5) == 0, ms.output()


def test_a_daemon_that_dropped_its_environment_dies_with_its_shim(fleet, tmp_path):
    """Not PID 1: a child that is neither a shim nor one Mothership had
    before it started is a ship's, even without MS_FLEET_PID in its
    environment (`env -i`, or setproctitle writing over it)."""
    pidfile = tmp_path / "daemon.pid"
    ms = fleet(f"""
        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", "setsid env -i sleep 300 & echo $! > {pidfile}; exec sleep 300"]
        critical = false
        ready_after = "50ms"
        restart = {{ backoff = "30s" }}
    """)
    fleet.pids_from(pidfile)
    ms.event("ready", ship="web")
    daemon = int(wait_file(pidfile, predicate=str.strip).split()[0])

    def bare():
        with open(f"/proc/{daemon}/environ", "rb") as f:
            return cmdline(daemon)[0] == b"sleep" and f.read() == b""
    wait_file(pidfile, predicate=lambda _: bare())
    command = ppid(daemon)
    shim = ppid(command)
    assert b"--ms-shim" in cmdline(shim), describe([daemon, command, shim])
    start = len(ms.lines)
    os.kill(shim, signal.SIGKILL)
    ms.event("exited", ship="web", start=start)
    left = wait_gone([daemon, command], timeout=5)
    assert not left, f"survivors of the shim: {describe(left)}\n{ms.output()}"
    assert ms.stop() == 0, ms.output()
