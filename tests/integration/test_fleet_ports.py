"""A ship's TCP port held by another process. Before a ship with a TCP
`bind` starts, Mothership checks that nothing listens there: a stranger on
the port (a leftover server, another copy of the app) is named by pid and
command, and the ship is not started (critical: the fleet stops;
non-critical: backoff, and it starts once the port is free). A readiness
probe counts only a listener of the ship's own process tree: a stranger
that takes the port after the check does not make the ship ready. A real
redis-server serves as the stranger too."""
import re
import shutil
import socket
import subprocess
import time

import pytest

from fleet_helpers import PY, app, free_port, toml_str

STRANGER = app("stranger.py")


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


@pytest.fixture
def stranger():
    """stranger(port, trigger=None): start stranger.py; returns its Popen
    once it listens (or at once, with a trigger file)."""
    procs = []

    def start(port, trigger=None):
        args = [PY, STRANGER, str(port)] + ([str(trigger)] if trigger else [])
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        procs.append(p)
        if trigger is None:
            assert p.stdout.readline() == b"listening\n"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def assert_names_the_stranger(msg, prefix, pid):
    m = re.fullmatch(re.escape(prefix) + rf" by pid {pid} \((.+)\)", msg)
    assert m, (msg, prefix, pid)
    shown = m.group(1)
    assert cmdline(pid).startswith(shown) and "stranger.py" in shown, (shown, cmdline(pid))


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_critical_ship_is_not_started_on_a_port_a_stranger_holds(fleet, tmp_path, stranger, host):
    port = free_port()
    other = stranger(port)
    pidfile = tmp_path / "app.pid"
    ms = fleet(f"""
        [[fleet.web]]
        name = "app"
        command = {toml_str(PY)}
        args = [{toml_str(app("bound.py"))}, "{port}", {toml_str(pidfile)}]
        bind = "{host}:{port}"
    """)
    e = ms.event("port_in_use", ship="app")
    assert e["level"] == "error", e
    assert_names_the_stranger(e["msg"], f'ship "app": {host}:{port} is already in use', other.pid)
    assert ms.wait_exit() == 1, ms.output()
    out = ms.output()
    assert ms.event("shutdown")["msg"] == 'stopping the fleet: ship "app" could not be started', out
    assert not ms.events("ready") and not ms.events("started"), out
    assert not pidfile.exists(), "the ship's command must not have run"
    assert other.poll() is None, "the stranger is left alone"


def test_a_non_critical_ship_backs_off_and_starts_once_the_port_is_free(fleet, tmp_path, stranger):
    port = free_port()
    other = stranger(port)
    pidfile = tmp_path / "app.pid"
    ms = fleet(f"""
        [[fleet.web]]
        name = "app"
        command = {toml_str(PY)}
        args = [{toml_str(app("bound.py"))}, "{port}", {toml_str(pidfile)}]
        bind = "127.0.0.1:{port}"
        critical = false
        restart = {{ backoff = "200ms", max_backoff = "400ms" }}
    """)
    e = ms.event("port_in_use", ship="app")
    assert_names_the_stranger(e["msg"], f'ship "app": 127.0.0.1:{port} is already in use', other.pid)
    b = ms.event("backoff", ship="app")
    assert re.match(r'ship "app" could not be started; restarting in \d+ms', b["msg"]), b
    ms.event("fleet_ready")  # a non-critical ship in backoff does not hold the launch
    assert not ms.events("ready", ship="app") and not pidfile.exists(), ms.output()
    second = ms.event("port_in_use", ship="app", start=e["_i"] + 1)
    other.kill()
    other.wait()
    ready = ms.event("ready", ship="app", timeout=10, start=second["_i"] + 1)
    assert ready["msg"].endswith(f"(tcp://127.0.0.1:{port} accepts connections)"), ready
    started = ms.events("started", ship="app")
    assert len(started) == 1, ms.output()  # the command ran only once the port was free
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(100)
    assert ms.stop() == 0, ms.output()


def test_a_stranger_that_takes_the_port_after_the_check_does_not_make_it_ready(fleet, tmp_path, stranger):
    """The stranger is older than the ship and listens only once the ship
    has started (the ship never listens): its probe reaches the stranger,
    which does not count."""
    port = free_port()
    trigger = tmp_path / "go"
    other = stranger(port, trigger)
    ms = fleet(f"""
        [[fleet.web]]
        name = "app"
        command = "sh"
        args = ["-c", "touch {trigger}; exec sleep 1000"]
        bind = "127.0.0.1:{port}"
        ready_timeout = "4s"
    """)
    assert other.stdout.readline() == b"listening\n"
    warn = ms.event("port_stranger", ship="app")
    assert warn["level"] == "warn", warn
    prefix = f'ship "app": 127.0.0.1:{port} is answered'
    m = re.fullmatch(re.escape(prefix) + rf" by pid {other.pid} \((.+)\), not by the ship's own processes; not ready",
                     warn["msg"])
    assert m and cmdline(other.pid).startswith(m.group(1)), warn
    timeout = ms.event("ready_timeout", ship="app")
    assert f"last: 127.0.0.1:{port} is answered by pid {other.pid} (" in timeout["msg"], timeout
    assert ms.wait_exit() == 1, ms.output()
    assert not ms.events("ready"), ms.output()
    assert len(ms.events("port_stranger")) == 1, ms.output()


def test_a_listener_held_by_a_grandchild_of_the_ship_is_its_own(fleet, tmp_path):
    """The listener may be held deeper in the ship's tree (a shell runs the
    server, a master forks workers): still the ship's, ready as before."""
    port = free_port()
    pidfile = tmp_path / "app.pid"
    ms = fleet(f"""
        [[fleet.web]]
        name = "app"
        command = "sh"
        args = ["-c", {toml_str(f"{PY} {app('bound.py')} {port} {pidfile} --fork; true")}]
        bind = "127.0.0.1:{port}"
    """)
    ready = ms.event("ready", ship="app")
    assert ready["msg"].endswith(f"(tcp://127.0.0.1:{port} accepts connections)"), ready
    assert not ms.events("port_stranger") and not ms.events("port_in_use"), ms.output()
    assert ms.stop() == 0, ms.output()


REDIS = shutil.which("redis-server")


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
def test_a_second_redis_on_a_taken_port_is_not_started_and_the_first_is_named(fleet, tmp_path):
    """A real server as the stranger: a redis-server already on the port.
    The ship (another redis-server) is refused with the first one's pid
    and its command line as redis shows it; the first one keeps serving."""
    port = free_port()
    first = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16) == b"+PONG\r\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        ms = fleet(f"""
            [[fleet.data]]
            name = "cache"
            command = {toml_str(REDIS)}
            args = ["--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--dir", {toml_str(tmp_path)}]
            bind = "127.0.0.1:{port}"
        """)
        e = ms.event("port_in_use", ship="cache")
        m = re.fullmatch(rf'ship "cache": 127\.0\.0\.1:{port} is already in use by pid {first.pid} \((.+)\)', e["msg"])
        assert m and "redis-server" in m.group(1), e
        assert cmdline(first.pid).startswith(m.group(1)), (m.group(1), cmdline(first.pid))
        assert ms.wait_exit() == 1, ms.output()
        assert not ms.events("started"), ms.output()
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(16) == b"+PONG\r\n"
    finally:
        first.kill()
        first.wait()
