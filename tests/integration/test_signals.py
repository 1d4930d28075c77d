"""Signals of `mothership run` (the table in docs/cli.md): the ones that
used to kill it at once are logged and ignored while it goes on serving; SIGQUIT is a graceful stop
like SIGTERM; and ships start with every disposition at its default, however
Mothership itself was started."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

import fleet_helpers
from fleet_helpers import free_port, http_get
from http_helpers import echo_ship, msum, start_proxy, wait_until

# signal, the message logged, logged again each time (else once)
IGNORED = [
    (signal.SIGHUP, "received SIGHUP: reloading the manifest", True),
    (signal.SIGUSR2, "received SIGUSR2: ignored (further ones are not logged)", False),
    (signal.SIGALRM, "received SIGALRM: ignored (further ones are not logged)", False),
    (signal.SIGPWR, "received SIGPWR: ignored (further ones are not logged)", False),
    (signal.SIGVTALRM, "received SIGVTALRM: ignored (further ones are not logged)", False),
    (signal.SIGRTMIN + 3, "received SIGRTMIN+3: ignored (further ones are not logged)", False),
    (signal.SIGRTMAX, f"received SIGRTMIN+{signal.SIGRTMAX - signal.SIGRTMIN}: ignored (further ones are not logged)",
     False),
]


@pytest.mark.parametrize("sig,msg,every_time", IGNORED,
                         ids=["HUP", "USR2", "ALRM", "PWR", "VTALRM", "RTMIN+3", "RTMAX"])
def test_ignored_signal_is_logged_and_the_fleet_keeps_serving(fleet, sig, msg, every_time):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    px.ms.signal(sig)
    first = px.ms.event("signal", msg="^" + re.escape(msg) + "$")
    assert first["level"] == ("info" if every_time else "warn"), first
    r = requests.get(px.url("/after"), timeout=5)
    assert r.status_code == 200 and r.json()["path"] == "/after"
    assert px.ms.proc.poll() is None, px.ms.output()
    # a second one: logged again only for SIGHUP (a SIGHUP, which reloads
    # the same manifest, as a marker shows that the second one has been handled)
    px.ms.signal(sig)
    if every_time:
        px.ms.event("signal", msg="^" + re.escape(msg) + "$", start=first["_i"] + 1)
    else:
        # no event for a signal logged once: a SIGHUP sent after it is the
        # marker (with several threads the two may be handled in either
        # order, so this can only miss a second line, never invent one)
        px.ms.signal(signal.SIGHUP)
        px.ms.event("signal", msg="SIGHUP", start=first["_i"] + 1)
    same = [e for e in px.ms.events("signal") if e["msg"] == msg]
    assert len(same) == (2 if every_time else 1), same
    assert requests.get(px.url("/again"), timeout=5).status_code == 200
    assert http_get(px.mport, "/health")[0] == 200
    assert not px.ms.events("shutdown"), px.ms.output()
    assert px.ms.stop() == 0, px.ms.output()


def test_sigquit_drains_the_request_in_flight_and_exits_0(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    result = {}

    def slow():
        try:
            r = requests.get(px.url("/slow?delay=1200"), timeout=10)
            result["status"] = r.status_code
        except Exception as e:   # noqa: BLE001
            result["error"] = repr(e)
        result["t"] = time.monotonic()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: msum(px.metrics(), "mothership_http_connections_open") >= 1, timeout=5,
               what="the slow request to be accepted")
    time.sleep(0.2)   # let it reach the backend: there is no event for "the upstream has the request"
    px.ms.signal(signal.SIGQUIT)
    sd = px.ms.event("shutdown")
    assert sd["msg"] == "stopping the fleet: SIGQUIT received", sd
    t.join(10)
    assert result.get("status") == 200, result
    stopping = px.ms.event("stopping", ship="app", timeout=10)
    assert stopping["_t"] >= result["t"] - 0.05, "the ship was stopped before the request in flight finished"
    assert px.ms.wait_exit(10) == 0, px.ms.output()
    assert px.ms.events("stopped")[-1]["msg"] == "fleet stopped (exit 0)"


def test_sigquit_during_uplink_checks_stops_at_once(fleet):
    """Before the launch (uplinks being checked) SIGQUIT stops like SIGTERM,
    and SIGUSR2 is ignored there too."""
    port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(1)   # accepts, never answers: the HTTP check hangs until its timeout
    try:
        ms = fleet(f"""
            [[uplinks]]
            name = "slow"
            url = "http://127.0.0.1:{port}/"
            timeout = "20s"

            [[fleet.web]]
            name = "app"
            command = "sleep"
            args = ["100"]
        """)
        ms.event("preflight")
        ms.signal(signal.SIGUSR2)
        ms.event("signal", msg="SIGUSR2")
        assert ms.proc.poll() is None
        ms.signal(signal.SIGQUIT)
        sd = ms.event("shutdown")
        assert sd["msg"] == "SIGQUIT before launch: stopping", sd
        assert ms.wait_exit(5) == 128 + signal.SIGQUIT, ms.output()
    finally:
        srv.close()


# Signals 32 and 33 are glibc's own (thread cancellation, setxid): no
# process can set or reset them through libc, and glibc's posix_spawn (make
# uses it) starts its children with 32 ignored; they are not compared.
LIBC_OWN = (1 << 31) | (1 << 32)


def sig_masks(text):
    """{"SigIgn": int, "SigBlk": int} of a /proc/<pid>/status text."""
    out = {}
    for line in text.splitlines():
        m = re.search(r"(SigIgn|SigBlk):\s*([0-9a-f]+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2), 16) & ~LIBC_OWN
    assert set(out) == {"SigIgn", "SigBlk"}, text
    return out


def names(mask):
    def name(n):
        if n >= signal.SIGRTMIN:
            return f"SIGRTMIN+{n - signal.SIGRTMIN}"
        try:
            return signal.Signals(n).name
        except ValueError:
            return str(n)
    return [name(n) for n in range(1, 65) if mask >> (n - 1) & 1]


def test_ships_start_with_default_signal_dispositions(fleet, tmp_path):
    """Mothership started with signals ignored (as nohup and some init
    systems do), and after it has caught every kind: a ship's SigIgn and
    SigBlk are empty (every signal at its default, nothing blocked), and so
    are the process whose pid is logged. Not compared with a process the
    test starts: under a shell that runs the tests in the background, that
    one inherits SIGINT and SIGQUIT ignored, while the shim resets them."""
    fresh = {"SigIgn": 0, "SigBlk": 0}
    path = fleet.write("""
        [[fleet.web]]
        name = "app"
        command = "sleep"
        args = ["100"]
        ready_after = "50ms"

        [[fleet.workers]]
        name = "probe"
        command = "cat"
        args = ["/proc/self/status"]
        critical = false
        ready_after = "10s"
        restart = { backoff = "100ms", max_backoff = "100ms", loop_limit = 1000 }
    """)
    pre = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGTTOU, signal.SIGRTMIN + 5,
           signal.SIGRTMAX)

    def ignore_some():
        for s in pre:
            signal.signal(s, signal.SIG_IGN)

    orig = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = ignore_some
        return orig(*a, **kw)

    subprocess.Popen = popen
    try:
        ms = fleet_helpers.Mothership(["-c", path], cwd=str(tmp_path))
    finally:
        subprocess.Popen = orig
    fleet.started.append(ms)
    started = ms.event("started", ship="app")
    ms.event("ready", ship="app")

    def probe_runs_after(start):
        """The masks of the probe's next two runs that start at or after
        line start (each run prints its whole /proc/self/status)."""
        ms.event("started", ship="probe", start=start)
        deadline = time.monotonic() + 10
        while True:
            with ms.cond:
                raw = [line for _, line in ms.lines[start:]]
            lines = [json.loads(l)["msg"] for l in raw if l.startswith('{"ts"') and '"source":"probe"' in l]
            runs = [r for r in "\n".join(lines).split("Name:")[1:] if "SigBlk" in r]
            if len(runs) >= 2 or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert len(runs) >= 2, ms.output()
        return [sig_masks(r) for r in runs]

    def check(got):
        assert got == fresh, (f"ship: ignored {names(got['SigIgn'])} blocked {names(got['SigBlk'])}; "
                              f"fresh: ignored {names(fresh['SigIgn'])} blocked {names(fresh['SigBlk'])}")

    for got in probe_runs_after(0):
        check(got)
    # and after Mothership has caught one of each kind
    for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGALRM, signal.SIGRTMIN + 5):
        ms.signal(s)
    mark = ms.event("signal", msg="SIGRTMIN\\+5")["_i"]
    for got in probe_runs_after(mark):
        check(got)
    pid = int(re.search(r"pid (\d+)", started["msg"]).group(1))
    with open(f"/proc/{pid}/status") as f:
        assert sig_masks(f.read()) == fresh
    assert ms.stop() == 0, ms.output()
