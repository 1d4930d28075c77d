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
