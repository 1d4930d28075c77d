"""`mothership run` as PID 1 of a PID namespace, as in a container without
tini (`unshare --user --map-root-user --pid --fork --mount-proc`): orphans
are reaped, those of a ship that double-forks and those a `docker exec`
style process leaves behind (handed to PID 1 by the kernel), so no zombie
stays in /proc; SIGTERM, which PID 1 only gets through a handler (the
kernel drops a signal left at its default), from inside the namespace and
from outside, stops the fleet gracefully with exit 0; a critical ship's
crash gives exit 1 as it does anywhere else. Skipped where unprivileged
namespaces cannot be made."""
import os
import shutil
import signal
import subprocess
import time

import pytest

import fleet_helpers

pytestmark = pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("nsenter"),
                                reason="unshare/nsenter (util-linux) not installed")

UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


@pytest.fixture(scope="module", autouse=True)
def namespaces_work():
    r = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"cannot make a user and PID namespace here: {r.stderr.strip()}")


@pytest.fixture
def as_pid1(monkeypatch, tmp_path):
    """The fleet fixture, with `mothership` started as PID 1 of a new PID
    namespace (a wrapper around the binary)."""
    wrapper = tmp_path / "ms-pid1"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(UNSHARE) + f" {os.path.abspath(fleet_helpers.BINARY)} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(fleet_helpers, "BINARY", str(wrapper))


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def stat_of(pid):
    """(state, ppid) of pid, or None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def pid1_of(ms):
    """Mothership's host pid: unshare's only child; check that it is PID 1
    of its namespace."""
    deadline = time.monotonic() + 5
    while not children(ms.pid):
        assert time.monotonic() < deadline, "unshare started nothing"
        time.sleep(0.02)
    pid = children(ms.pid)[0]
    with open(f"/proc/{pid}/status") as f:
        nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
    assert nspid[-1] == "1", nspid
    return pid


def in_namespace(pid1, *cmd):
    """Run cmd inside pid1's PID and mount namespaces (as `docker exec`
    does): its orphans go to PID 1."""
    return subprocess.run(["nsenter", "-t", str(pid1), "-p", "-m", "--", *cmd], capture_output=True, text=True,
                          timeout=10)


def zombies_under(pid1):
    """Host pids of the zombies in pid1's PID namespace."""
    ns = os.readlink(f"/proc/{pid1}/ns/pid")
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != ns:
                continue
        except OSError:
            continue
        st = stat_of(int(d))
        if st and st[0] == "Z":
            out.append(int(d))
    return out


def wait_reaped(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if stat_of(p) is not None]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


FORKER = """
    [mothership]
    shutdown_timeout = "3s"

    [[fleet.workers]]
    name = "forker"
    command = "sh"
    # grandchildren left behind at once (a double fork), then every 50 ms
    args = ["-c", "(sleep 0.01 &); (sleep 0.02 &); echo forked; while true; do (true &); sleep 0.05; done"]
    ready_after = "100ms"
"""


def test_as_pid1_orphans_are_reaped_and_sigterm_from_inside_stops_gracefully(fleet, as_pid1, tmp_path):
    ms = fleet(FORKER)
    ms.event("fleet_ready", timeout=15)
    pid1 = pid1_of(ms)
    # a process entering the namespace leaves an orphan: the kernel hands it to PID 1
    r = in_namespace(pid1, "sh", "-c", "sleep 0.2 & echo $!")
    assert r.returncode == 0, r.stderr
    ns_orphan = int(r.stdout.strip())
    # find it on the host: the sleep in the namespace whose NSpid ends with ns_orphan
    host_orphan = None
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    nspid = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
            except (OSError, IndexError):
                continue
            if len(nspid) > 1 and nspid[-1] == str(ns_orphan) and os.readlink(f"/proc/{d}/ns/pid") == \
                    os.readlink(f"/proc/{pid1}/ns/pid"):
                host_orphan = int(d)
    if host_orphan is not None:   # it may be gone already
        assert not wait_reaped([host_orphan]), f"the orphan {host_orphan} was not reaped: {stat_of(host_orphan)}"
    ms.wait_for(r"\"source\":\"forker\".*forked")
    # the ship keeps double-forking: no zombie stays (each is reaped within the deadline)
    deadline = time.monotonic() + 5
    while True:
        z = zombies_under(pid1)
        if not z or not wait_reaped(z, timeout=1.0):
            break
        assert time.monotonic() < deadline, f"zombies stay: {[(p, stat_of(p)) for p in z]}"
    # SIGTERM from inside: PID 1 gets it only through its handler
    r = in_namespace(pid1, "kill", "-TERM", "1")
    # when PID 1 exits the kernel kills what is left in its namespace: the
    # kill command too, if it has not exited yet
    assert r.returncode in (0, -signal.SIGKILL), r.stderr
    ms.event("shutdown", msg="SIGTERM received")
    ms.event("stopped", ship="forker")
    assert ms.wait_exit() == 0, ms.output()
    assert stat_of(pid1) is None


def test_as_pid1_sigterm_and_sigint_from_outside_stop_gracefully(fleet, as_pid1):
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        ms = fleet(FORKER)
        ms.event("fleet_ready", timeout=15)
        pid1 = pid1_of(ms)
        os.kill(pid1, sig)   # as `docker stop` does, from the parent namespace
        ms.event("shutdown", msg=f"{name} received")
        assert ms.wait_exit() == 0, ms.output()


def test_as_pid1_a_critical_crash_exits_1(fleet, as_pid1):
    ms = fleet("""
        [[fleet.web]]
        name = "app"
        command = "sh"
        args = ["-c", "sleep 0.3; exit 3"]
        ready_after = "50ms"
    """)
    ms.event("fleet_ready", timeout=15)
    assert ms.wait_exit() == 1, ms.output()


def host_pid_of(pid1, nspid):
    """The host pid of the process whose pid in pid1's namespace is nspid."""
    ns = os.readlink(f"/proc/{pid1}/ns/pid")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                ids = [l.split()[1:] for l in f if l.startswith("NSpid:")][0]
            if len(ids) > 1 and ids[-1] == str(nspid) and os.readlink(f"/proc/{d}/ns/pid") == ns:
                return int(d)
        except (OSError, IndexError):
            continue
    return None


def test_as_pid1_before_the_launch_orphans_are_reaped_and_sigterm_exits(fleet, as_pid1, tmp_path):
    """While uplinks are checked (before the fleet exists) an orphan handed
    to PID 1 is reaped all the same, and a SIGTERM stops Mothership at once
    with 143: a handler is installed there too."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)   # accepted by the kernel, never answered: the HTTP check waits
    port = s.getsockname()[1]
    try:
        ms = fleet(f"""
            [[uplinks]]
            name = "api"
            url = "http://127.0.0.1:{port}/health"
            timeout = "20s"

            [[fleet.web]]
            name = "app"
            command = "sleep"
            args = ["60"]
        """)
        ms.event("preflight", timeout=15)
        pid1 = pid1_of(ms)
        r = in_namespace(pid1, "sh", "-c", "sleep 0.1 & echo $!")
        assert r.returncode == 0, r.stderr
        orphan = host_pid_of(pid1, int(r.stdout.strip()))
        if orphan is not None:
            assert not wait_reaped([orphan]), f"the orphan {orphan} was not reaped: {stat_of(orphan)}"
        assert not ms.events("launch"), ms.output()   # still checking the uplink
        os.kill(pid1, signal.SIGTERM)
        assert ms.wait_exit() == 143, ms.output()
    finally:
        s.close()


def test_as_pid1_sigterm_before_any_handler_is_not_lost(fleet, as_pid1, tmp_path):
    """A SIGTERM that comes while the manifest is being read (here: a FIFO
    nobody writes yet, so Mothership waits in open) is kept until the
    handlers are in place, then stops the fleet: the kernel would drop it
    for a PID 1 that left it at its default action."""
    fifo = tmp_path / "ship-manifest.toml"
    os.mkfifo(fifo)
    ms = fleet_helpers.Mothership(["-c", str(fifo)], cwd=str(tmp_path))
    fleet.started.append(ms)
    pid1 = pid1_of(ms)
    deadline = time.monotonic() + 10
    while True:   # blocked in the FIFO's open, long before any handler
        try:
            with open(f"/proc/{pid1}/wchan") as f:
                if f.read().strip() in ("wait_for_partner", "fifo_open"):
                    break
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, "mothership did not reach the manifest's open"
        time.sleep(0.02)
    os.kill(pid1, signal.SIGTERM)
    with open(fifo, "w") as f:
        f.write('[[fleet.workers]]\nname = "idle"\ncommand = "sleep"\nargs = ["60"]\nready_after = "50ms"\n')
    ms.event("shutdown", msg="SIGTERM")
    assert ms.wait_exit() == 0, ms.output()


def test_as_pid1_ships_start_with_no_signal_blocked_or_ignored(fleet, as_pid1):
    """PID 1 holds the stop signals while it launches, and ignores some of
    its own: a ship started in the launch and one restarted later from the
    loop both start with nothing blocked and nothing ignored."""
    ms = fleet("""
        [[fleet.workers]]
        name = "sig"
        command = "cat"
        args = ["/proc/self/status"]
        critical = false
        restart = { backoff = "50ms" }
    """)
    deadline = time.monotonic() + 10
    while True:
        got = [r["msg"] for r in ms.child_lines("sig") if r["msg"].startswith(("SigBlk:", "SigIgn:"))]
        if len(got) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(got) >= 4, ms.output()  # the launch's run and at least one restart
    for line in got:
        assert int(line.split()[1], 16) == 0, (line, ms.output())
    os.kill(pid1_of(ms), signal.SIGTERM)
    assert ms.wait_exit() == 0, ms.output()
