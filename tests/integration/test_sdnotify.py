"""`mothership run` under a service manager (systemd's Type=notify): the
test plays systemd's part with a datagram socket in $NOTIFY_SOCKET (a path
or an @abstract name) and reads what Mothership tells it, in order: READY=1
with MAINPID once the fleet is ready, RELOADING=1 with MONOTONIC_USEC then
READY=1 around each reload (SIGHUP and the control socket), STOPPING=1 when
the shutdown begins, a STATUS= summary, WATCHDOG=1 at half of
$WATCHDOG_USEC when it is meant for Mothership; and ships never see those
variables."""
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import BINARY
from fleet_helpers import http_get, wait_file
from http_helpers import echo_ship, short_tmpdir, start_proxy


# A fleet of one long-running ship, for the tests about Mothership's own
# messages.
IDLE = """
        [[fleet.workers]]
        name = "idle"
        command = "sleep"
        args = ["60"]
        ready_after = "50ms"
"""


class Notify:
    """The service manager's end: a datagram socket and what came on it."""

    def __init__(self, abstract=False):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "ms-notify-" + uuid.uuid4().hex
            self.s.bind("\0" + name)
            self.env = "@" + name
        else:
            self.dir = short_tmpdir()
            self.env = os.path.join(self.dir, "notify")
            self.s.bind(self.env)
        self.got = []        # every datagram, parsed: [{key: value}]

    def next(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.s.settimeout(left)
        try:
            data = self.s.recv(4096).decode()
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.got.append(msg)
        return msg

    def wait(self, key, timeout=15.0, what=None):
        """The next datagram with key (earlier ones are kept in self.got)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(deadline)
            if msg is None:
                pytest.fail(f"no {what or key} within {timeout}s; got {self.got}")
            if key in msg:
                return msg

    def states(self):
        """The state changes told so far, in order (STATUS-only and
        WATCHDOG datagrams left out)."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [k for m in self.got for k in keys if k in m]

    def close(self):
        self.s.close()


@pytest.fixture
def notify():
    made = []

    def make(abstract=False):
        n = Notify(abstract)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def test_ready_reloading_stopping_in_order(fleet, notify):
    n = notify()
    px = start_proxy_env(fleet, {"NOTIFY_SOCKET": n.env})
    ms = px.ms

    ready = n.wait("READY")
    # READY=1 comes when /ready turns 200, not before
    assert http_get(px.mport, "/ready")[0] == 200
    assert ms.events("fleet_ready"), ms.output()
    assert ready["READY"] == "1" and ready["MAINPID"] == str(ms.pid), ready
    assert ready["STATUS"] == "1/1 up, 1 bind, 0 req/s", ready
    assert n.states() == ["READY"], n.got

    ms.signal(signal.SIGHUP)
    before = time.monotonic()
    reloading = n.wait("RELOADING")
    assert reloading["RELOADING"] == "1", reloading
    # CLOCK_MONOTONIC in microseconds, the clock systemd compares it with
    usec = int(reloading["MONOTONIC_USEC"])
    assert abs(usec / 1e6 - before) < 5, (usec, before)
    assert n.wait("READY")["READY"] == "1"
    assert n.states() == ["READY", "RELOADING", "READY"], n.got

    # a reload through the control socket
    r = subprocess.run([BINARY, "reload", "-c", px.manifest_path], capture_output=True, text=True,
                       timeout=15, env=dict(os.environ, MS_SOCKET_DIR=ms.own_sockdir))
    assert r.returncode == 0, (r.stdout, r.stderr)
    n.wait("READY")
    assert n.states() == ["READY", "RELOADING", "READY", "RELOADING", "READY"], n.got

    ms.signal(signal.SIGTERM)
    stopping = n.wait("STOPPING")
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("stopping: "), stopping
    assert ms.wait_exit() == 0, ms.output()
    assert n.states() == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"], n.got
    assert not [m for m in n.got if "WATCHDOG" in m], n.got   # no $WATCHDOG_USEC: no watchdog


def start_proxy_env(fleet, env):
    """start_proxy with env for Mothership: the fleet fixture's factory
    takes env, start_proxy does not, so it is wrapped."""
    def with_env(text, *args, **kw):
        kw.setdefault("env", env)
        return fleet(text, *args, **kw)
    with_env.tmp = fleet.tmp
    px = start_proxy(with_env, echo_ship("app", routes=["http:/.*"]))
    px.manifest_path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    return px


def test_watchdog_at_half_the_interval_and_ships_see_no_notify_variables(fleet, notify, tmp_path):
    n = notify(abstract=True)
    dump = tmp_path / "env.txt"
    ms = fleet(f"""
        [[fleet.jobs]]
        name = "dump"
        command = "sh"
        args = ["-c", "env > {dump}.tmp && mv {dump}.tmp {dump}"]
        oneshot = true
    """ + IDLE, env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "200000"})
    n.wait("READY")
    # a WATCHDOG=1 every 100 ms: wait for five of them
    seen = sum("WATCHDOG" in m for m in n.got)
    deadline = time.monotonic() + 10
    while seen < 5:
        msg = n.next(deadline)
        assert msg is not None, f"watchdog pings stopped at {seen}: {n.got}"
        seen += "WATCHDOG" in msg
    assert all(m["WATCHDOG"] == "1" for m in n.got if "WATCHDOG" in m)
    env = wait_file(str(dump))
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}, env
    assert ms.stop() == 0, ms.output()
    n.wait("STOPPING")


def test_watchdog_meant_for_another_process_is_left_alone(fleet, notify):
    n = notify()
    ms = fleet(IDLE, env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    n.wait("READY")
    assert ms.stop() == 0, ms.output()
    n.wait("STOPPING")
    # the watchdog timer's first ping would come at once, long before READY
    assert not [m for m in n.got if "WATCHDOG" in m], n.got


def test_malformed_notify_socket_is_a_warning_and_the_fleet_runs(fleet):
    ms = fleet(IDLE, env={"NOTIFY_SOCKET": "relative/notify"})
    e = ms.event("notify_failed")
    assert e["level"] == "warn" and "relative/notify" in e["msg"], e
    ms.event("fleet_ready")
    assert ms.stop() == 0, ms.output()


def test_a_notify_socket_nobody_listens_on_is_one_warning(fleet, tmp_path):
    ms = fleet(IDLE, env={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    ms.event("fleet_ready")
    ms.signal(signal.SIGHUP)       # RELOADING=1, READY=1: more failed sends
    ms.event("reloaded")
    assert ms.stop() == 0, ms.output()
    failed = ms.events("notify_failed")
    assert len(failed) == 1 and failed[0]["level"] == "warn", failed
    assert "not logged again" in failed[0]["msg"], failed


def test_status_follows_traffic(fleet, notify):
    import requests
    n = notify()
    px = start_proxy_env(fleet, {"NOTIFY_SOCKET": n.env})
    assert n.wait("READY")["STATUS"] == "1/1 up, 1 bind, 0 req/s"
    # requests until a STATUS update (at most one per 2 s) shows them
    deadline = time.monotonic() + 15
    with requests.Session() as s:
        while True:
            assert s.get(px.url("/x"), timeout=5).status_code == 200
            n.s.settimeout(0.01)
            try:
                data = n.s.recv(4096).decode()
            except socket.timeout:
                data = ""
            if data:
                msg = dict(line.split("=", 1) for line in data.split("\n") if line)
                n.got.append(msg)
                m = re.fullmatch(r"1/1 up, 1 bind, (\d+) req/s", msg.get("STATUS", ""))
                if m and int(m.group(1)) > 0:
                    break
            assert time.monotonic() < deadline, f"no STATUS with req/s: {n.got}"
    assert px.ms.stop() == 0
