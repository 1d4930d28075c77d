"""Rolling restarts, through the real binary: `mothership restart` of a ship
with a bind replaces its process one step at a time and answers once the new
one is ready (exit 0), or once the roll has stopped (exit 1 with the reason);
reload and SIGUSR1 roll the same way. The order of the steps is read from
the JSON log's events."""
import json
import shutil
import signal
import tempfile
import threading

import pytest

from fleet_helpers import PY, app, ctl, ctl_status as status_of, free_port, free_port_run, http_get, toml_str
from http_helpers import wait_until

BOUND = app("bound.py")


def slow_ship(name, port, pidfile, delay="0.8", fail_marker=None, extra=""):
    """A ship with a bind that takes `delay` seconds to listen; with
    fail_marker, every run after the first exits 3 at once."""
    script = f"sleep {delay}; exec {PY} {BOUND} {port} {pidfile}"
    if fail_marker:
        script = (f"if [ -e {fail_marker} ]; then echo broken >&2; exit 3; fi; : > {fail_marker}; " + script)
    return f"""
        [[fleet.web]]
        name = {toml_str(name)}
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{port}"
        critical = false
        restart = {{ backoff = "5s" }}
        {extra}
    """


def launch(fleet, text, global_extra=""):
    sockdir = tempfile.mkdtemp(prefix="msroll-")
    fleet.sockdirs = getattr(fleet, "sockdirs", []) + [sockdir]
    text = f"""
        [mothership]
        socket_dir = {toml_str(sockdir)}
        {global_extra}
    """ + text
    ms = fleet(text, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=20)
    return ms, str(fleet.tmp / "ship-manifest.toml")


@pytest.fixture(autouse=True)
def _sockdirs(fleet):
    yield
    for d in getattr(fleet, "sockdirs", []):
        shutil.rmtree(d, ignore_errors=True)


def test_restart_of_a_ship_with_a_bind_answers_once_the_new_one_is_ready(fleet, tmp_path):
    port = free_port()
    ms, path = launch(fleet, slow_ship("web", port, tmp_path / "web.pid"))
    before = status_of(path)["web"]
    assert before["state"] == "ready"
    r = ctl(path, "restart", "web")
    assert r.returncode == 0, r
    assert r.stdout == "restart: web\n"
    # the answer came once the new process was ready: no polling needed
    after = status_of(path)["web"]
    assert after["state"] == "ready" and after["pid"] not in (0, before["pid"])
    assert after["restarts"] == 1
    # steps, in order: drain, stop, start, ready, done
    steps = [e["msg"] for e in ms.events() if e.get("ship") in ("web", None)
             and e.get("event") in ("roll", "stopping", "stopped", "started", "ready")]
    tail = steps[[i for i, m in enumerate(steps) if "rolling restart" in m][0]:]
    kinds = []
    for m in tail:
        for word, kind in (("rolling restart", "begin"), ("no new requests", "drain"), ("restarting in place", "restart"),
                           ("stopping ship", "stopping"), ("stopped", "stopped"), ("started (pid", "started"),
                           ("ready in", "ready"), (f"pid {after['pid']} ready", "rolled"), ("roll done", "done")):
            if word in m:
                kinds.append(kind)
                break
    assert kinds == ["begin", "drain", "restart", "stopping", "stopped", "started", "ready", "rolled", "done"], tail
    assert ms.proc.poll() is None


def test_a_roll_whose_new_process_fails_exits_1_with_the_reason(fleet, tmp_path):
    port = free_port()
    ms, path = launch(fleet, slow_ship("web", port, tmp_path / "web.pid", fail_marker=tmp_path / "ran"))
    r = ctl(path, "restart", "web")
    assert r.returncode == 1, r
    assert r.stderr == ("mothership: web: the new process exited with status 3 before it was ready; "
                        "the roll stopped there (0 of 1 replaced)\n"), r.stderr
    e = ms.event("roll_failed", ship="web")
    assert "roll stopped at \"web\" (0 of 1 replaced)" in e["msg"]
    # the failed one goes on under its restart policy: a backoff, not stopped for good
    ms.event("backoff", ship="web")
    assert ms.proc.poll() is None


def test_restart_of_two_ships_rolls_each_and_leaves_ships_without_a_bind_as_before(fleet, tmp_path):
    a, b = free_port(), free_port()
    text = (slow_ship("web", a, tmp_path / "a.pid") + slow_ship("api", b, tmp_path / "b.pid", delay="0.3")
            + """
        [[fleet.jobs]]
        name = "worker"
        command = "sh"
        args = ["-c", "while true; do sleep 0.1; done"]
        critical = false
        ready_after = "100ms"
    """)
    ms, path = launch(fleet, text)
    before = status_of(path)
    r = ctl(path, "restart", "web", "api", "worker")
    assert r.returncode == 0, r
    assert sorted(r.stdout.strip().split(": ")[1].split(", ")) == ["api", "web", "worker"]
    after = status_of(path)
    for name in ("web", "api"):
        assert after[name]["state"] == "ready" and after[name]["pid"] != before[name]["pid"], after
    assert len([e for e in ms.events("roll") if "rolling restart" in e["msg"]]) == 2
    assert not [e for e in ms.events("roll") if e.get("ship") == "worker"]


def test_a_second_restart_while_rolling_is_refused(fleet, tmp_path):
    port = free_port()
    ms, path = launch(fleet, slow_ship("web", port, tmp_path / "web.pid", delay="2"))
    first = {}
    t = threading.Thread(target=lambda: first.update(r=ctl(path, "restart", "web")))
    t.start()
    ms.event("roll", ship="web", msg="restarting in place")
    r = ctl(path, "restart", "web")
    assert r.returncode == 1, r
    assert "ship \"web\" is already rolling" in r.stderr
    t.join(30)
    assert first["r"].returncode == 0, first["r"]


def test_sigusr1_rolls_every_ship_with_a_bind(fleet, tmp_path):
    a, b = free_port(), free_port()
    text = (slow_ship("web", a, tmp_path / "a.pid", delay="0.3") + slow_ship("api", b, tmp_path / "b.pid", delay="0.3")
            + """
        [[fleet.jobs]]
        name = "worker"
        command = "sh"
        args = ["-c", "while true; do sleep 0.1; done"]
        critical = false
        ready_after = "100ms"
    """)
    ms, path = launch(fleet, text)
    before = status_of(path)
    ms.signal(signal.SIGUSR1)
    ms.event("signal", msg=r"^received SIGUSR1: phased restart of the ships with a bind$")
    for name in ("web", "api"):
        ms.event("roll", ship=name, msg=r"^SIGUSR1: rolling restart of 1 entry")
    wait_until(lambda: len([e for e in ms.events("roll") if e["msg"].startswith("roll done")]) == 2, timeout=15,
               what="both rolls done")
    after = status_of(path)
    for name in ("web", "api"):
        assert after[name]["state"] == "ready" and after[name]["pid"] != before[name]["pid"], after
    assert after["worker"]["pid"] == before["worker"]["pid"]
    assert ms.proc.poll() is None


def test_a_reload_that_changes_a_ship_with_a_bind_rolls_it(fleet, tmp_path):
    port = free_port()
    ms, path = launch(fleet, slow_ship("web", port, tmp_path / "web.pid", delay="0.3"))
    before = status_of(path)["web"]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('critical = false', 'critical = false\nenv = { FLAVOUR = "new" }', 1))
    r = ctl(path, "reload")
    assert r.returncode == 0, r
    ms.event("roll", ship="web", msg=r"^reload: rolling restart of 1 entry")
    ms.event("roll", msg=r"^roll done: 1 entry replaced", timeout=15)
    after = status_of(path)["web"]
    assert after["state"] == "ready" and after["pid"] != before["pid"]
    assert after["restarts"] == 0  # a new definition, not counted as a restart
    with open(f"/proc/{after['pid']}/environ", "rb") as f:
        assert b"FLAVOUR=new" in f.read().split(b"\0")


def test_status_and_metrics_show_a_roll_under_way(fleet, tmp_path):
    port, mport = free_port(), free_port()
    # the new process takes 6 s to listen: the window in which the roll is
    # seen under way, wide enough for three CLI runs on a loaded machine
    ms, path = launch(fleet, slow_ship("web", port, tmp_path / "web.pid", delay="6"),
                      global_extra=f"metrics_port = {mport}")
    web = status_of(path)["web"]
    assert (web["ship"], web["instance"], web["instances"], web["rolling"], web["draining"]) == ("web", 0, 1, False,
                                                                                                  False)
    assert "mothership_ship_rolling{ship=\"web\",group=\"web\"} 0" in http_get(mport, "/metrics")[1]
    t = threading.Thread(target=lambda: ctl(path, "restart", "web"))
    t.start()
    ms.event("roll", ship="web", msg="restarting in place")
    web = status_of(path)["web"]
    assert web["rolling"] is True and web["draining"] is True, web
    table = ctl(path, "status").stdout.splitlines()
    row = next(l for l in table if l.split()[0] == "web")
    assert f"{web['state']} (draining)" in row, table
    assert "mothership_ship_rolling{ship=\"web\",group=\"web\"} 1" in http_get(mport, "/metrics")[1]
    t.join(30)
    web = status_of(path)["web"]
    assert web["rolling"] is False and web["draining"] is False and web["state"] == "ready", web
    row = next(l for l in ctl(path, "status").stdout.splitlines() if l.split()[0] == "web")
    assert row.split()[2] == "ready" and "(" not in row, row


# ------------------------------------------------------------------ instances


def replicated(port, instances=3, script=None, bind=None, extra=""):
    """A ship `web` with instances, each an echo backend at {port} (or the
    script given, run by sh with {port} as $0)."""
    echo = app("echo_backend.py")
    if script is None:
        args = f'[{toml_str(echo)}, "--port", "{{port}}", "--name", "web-{{instance}}"]'
        command = toml_str(PY)
    else:
        args = f'["-c", {toml_str(script)}, "{{port}}"]'
        command = '"sh"'
    return f"""
        [[fleet.web]]
        name = "web"
        command = {command}
        args = {args}
        bind = {toml_str(bind or "tcp://127.0.0.1:{port}")}
        port = {port}
        instances = {instances}
        critical = false
        restart = {{ backoff = "5s" }}
        {extra}
    """


def listening(port):
    import socket
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def roll_steps(ms, since=0):
    """(ship, step word) of each roll event after line since, in order."""
    out = []
    for e in ms.events("roll"):
        if e["_i"] < since or not e.get("ship"):
            continue
        m = __import__("re").match(r"roll \d+/\d+: (\w+) ", e["msg"])
        if m:
            out.append((e["ship"], m.group(1)))
    return out


def test_restart_of_three_instances_surges_each_in_turn(fleet, tmp_path):
    port = free_port_run(6)
    mport = free_port()
    ms, path = launch(fleet, replicated(port), global_extra=f"metrics_port = {mport}")
    before = status_of(path)
    assert sorted(before) == ["web#0", "web#1", "web#2"]
    assert [(before[n]["ship"], before[n]["instance"], before[n]["instances"]) for n in sorted(before)] == \
        [("web", 0, 3), ("web", 1, 3), ("web", 2, 3)]
    samples = http_get(mport, "/metrics")[1]
    for i in range(3):
        assert f'mothership_ship_status{{ship="web",group="web",instance="{i}"}} 1' in samples, samples
    mark = len(ms.lines)
    r = ctl(path, "restart", "web")
    assert r.returncode == 0, r
    assert r.stdout == "restart: web#0, web#1, web#2\n"
    after = status_of(path)
    for i in range(3):
        e = after[f"web#{i}"]
        assert e["state"] == "ready" and e["pid"] not in (0, before[f"web#{i}"]["pid"]), after
        assert e["restarts"] == 1 and e["rolling"] is False
        # the new processes listen at the second addresses, the old ones are gone
        assert listening(port + 3 + i)
        assert not listening(port + i)
    # one instance at a time: surge, drain, next
    assert roll_steps(ms, mark) == [("web#0", "surge"), ("web#0", "drain"), ("web#1", "surge"), ("web#1", "drain"),
                                    ("web#2", "surge"), ("web#2", "drain")]
    # each old process stopped before the next instance's new one started
    evs = [e for e in ms.events() if e["_i"] >= mark and e.get("event") in ("stopped", "started")]
    order = [(e["event"], e["ship"]) for e in evs]
    assert order == [("started", "web#0"), ("stopped", "web#0"), ("started", "web#1"), ("stopped", "web#1"),
                     ("started", "web#2"), ("stopped", "web#2")], order
    # and back to the first addresses
    r = ctl(path, "restart", "web")
    assert r.returncode == 0, r
    for i in range(3):
        assert listening(port + i) and not listening(port + 3 + i)
    assert ms.proc.poll() is None


def test_a_failed_surge_stops_the_roll_and_leaves_the_rest_untouched(fleet, tmp_path):
    port = free_port_run(6)
    bad = port + 3 + 1  # web#1's second address
    script = f'if [ "$0" = "{bad}" ]; then echo broken >&2; exit 3; fi; exec {PY} {app("echo_backend.py")} --port "$0"'
    ms, path = launch(fleet, replicated(port, script=script))
    before = status_of(path)
    r = ctl(path, "restart", "web")
    assert r.returncode == 1, r
    assert r.stderr == ("mothership: web#1: the new process exited with status 3 before it was ready; "
                        "the roll stopped there (1 of 3 replaced)\n"), r.stderr
    after = status_of(path)
    assert after["web#0"]["pid"] != before["web#0"]["pid"] and listening(port + 3)
    for n in ("web#1", "web#2"):
        assert after[n]["pid"] == before[n]["pid"] and after[n]["state"] == "ready", after
        assert after[n]["draining"] is False and after[n]["rolling"] is False
    assert listening(port + 1) and listening(port + 2)
    assert not listening(bad)
    e = ms.event("roll_failed", ship="web#1")
    assert "(0 of 3 replaced)" not in e["msg"] and "(1 of 3 replaced)" in e["msg"], e
    assert ms.proc.poll() is None


def test_instances_without_a_second_address_restart_in_place_one_at_a_time(fleet, tmp_path):
    d = tempfile.mkdtemp(prefix="msr-", dir="/tmp")
    fleet.sockdirs = getattr(fleet, "sockdirs", []) + [d]
    echo = app("echo_backend.py")
    text = f"""
        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(echo)}, "--unix", "{d}/w-{{instance}}.sock"]
        bind = "unix://{d}/w-{{instance}}.sock"
        instances = 3
        critical = false
    """
    ms, path = launch(fleet, text)
    before = status_of(path)
    mark = len(ms.lines)
    r = ctl(path, "restart", "web#1", "web#2")
    assert r.returncode == 0, r
    assert r.stdout == "restart: web#1, web#2\n"
    after = status_of(path)
    assert after["web#0"]["pid"] == before["web#0"]["pid"]
    for n in ("web#1", "web#2"):
        assert after[n]["pid"] != before[n]["pid"] and after[n]["state"] == "ready"
    assert roll_steps(ms, mark) == [("web#1", "drain"), ("web#1", "restart"), ("web#1", "restart"),
                                    ("web#2", "drain"), ("web#2", "restart"), ("web#2", "restart")]
    evs = [(e["event"], e["ship"]) for e in ms.events() if e["_i"] >= mark and e.get("event") in ("stopped", "ready")]
    assert evs == [("stopped", "web#1"), ("ready", "web#1"), ("stopped", "web#2"), ("ready", "web#2")], evs


def test_a_reload_that_changes_a_replicated_ship_rolls_every_instance(fleet, tmp_path):
    port = free_port_run(6)
    ms, path = launch(fleet, replicated(port))
    before = status_of(path)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("critical = false", 'critical = false\nenv = { FLAVOUR = "new-{instance}" }', 1))
    mark = len(ms.lines)
    r = ctl(path, "reload")
    assert r.returncode == 0, r
    ms.event("roll", msg=r"^roll done: 3 entries replaced", timeout=20, start=mark)
    after = status_of(path)
    for i in range(3):
        e = after[f"web#{i}"]
        assert e["state"] == "ready" and e["pid"] != before[f"web#{i}"]["pid"] and e["restarts"] == 0, after
        with open(f"/proc/{e['pid']}/environ", "rb") as f:
            assert f"FLAVOUR=new-{i}".encode() in f.read().split(b"\0")
        assert listening(port + 3 + i)
    assert [s for s in roll_steps(ms, mark) if s[1] == "surge"] == [("web#0", "surge"), ("web#1", "surge"),
                                                                    ("web#2", "surge")]
    # SIGUSR1 rolls them back to the first addresses
    mark = len(ms.lines)
    ms.signal(signal.SIGUSR1)
    ms.event("roll", msg=r"^roll done: 3 entries replaced", timeout=20, start=mark)
    for i in range(3):
        assert listening(port + i) and not listening(port + 3 + i)
    # a second change: the twins (stopped, at the second addresses) take the
    # new definition too
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('"new-{instance}"', '"newer-{instance}"'))
    mark = len(ms.lines)
    r = ctl(path, "reload")
    assert r.returncode == 0, r
    ms.event("roll", msg=r"^roll done: 3 entries replaced", timeout=20, start=mark)
    for i in range(3):
        pid = status_of(path)[f"web#{i}"]["pid"]
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert f"FLAVOUR=newer-{i}".encode() in f.read().split(b"\0")
        assert listening(port + 3 + i)


def test_requests_keep_flowing_through_rolls_of_three_instances(fleet, tmp_path):
    """The fleet's side of a roll with the data plane in front: a client
    loop (keep-alive and new connections) across a restart and SIGUSR1
    gets no error at all."""
    import requests
    port, hport = free_port_run(6), free_port()
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"
    """ + replicated(port, extra='routes = ["http:/.*"]')
    ms, path = launch(fleet, text)
    url = f"http://127.0.0.1:{hport}/x"
    stop = threading.Event()
    got = {"ok": 0, "bad": []}
    lock = threading.Lock()

    def loop(keep_alive):
        s = requests.Session() if keep_alive else requests
        while not stop.is_set():
            try:
                r = s.get(url, timeout=10)
                with lock:
                    if r.status_code == 200:
                        got["ok"] += 1
                    else:
                        got["bad"].append(r.status_code)
            except Exception as e:  # noqa: BLE001
                with lock:
                    got["bad"].append(repr(e))

    threads = [threading.Thread(target=loop, args=(k,)) for k in (True, False, True)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: got["ok"] >= 20, timeout=10, what="requests flowing")
        r = ctl(path, "restart", "web")
        assert r.returncode == 0, r
        mark = len(ms.lines)
        ms.signal(signal.SIGUSR1)
        ms.event("roll", msg=r"^roll done: 3 entries replaced", timeout=30, start=mark)
        n = got["ok"]
        wait_until(lambda: got["ok"] >= n + 20, timeout=10, what="requests after the rolls")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert got["bad"] == [], got["bad"][:10]


def test_requests_wait_for_a_single_instance_restarted_in_place(fleet, tmp_path):
    """One instance and no second address: the roll holds the requests
    that come while the ship restarts; none fails."""
    import requests
    port, hport = free_port(), free_port()
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"
    """ + slow_ship("web", port, tmp_path / "web.pid", delay="0.5", extra='routes = ["http:/.*"]')
    ms, path = launch(fleet, text)
    url = f"http://127.0.0.1:{hport}/x"
    stop = threading.Event()
    got = {"ok": 0, "bad": []}

    def loop():
        while not stop.is_set():
            try:
                r = requests.get(url, timeout=10)
                got["ok" if r.status_code == 200 else "bad"] = (got["ok"] + 1 if r.status_code == 200
                                                               else got["bad"] + [r.status_code])
            except Exception as e:  # noqa: BLE001
                got["bad"] = got["bad"] + [repr(e)]

    t = threading.Thread(target=loop)
    t.start()
    try:
        wait_until(lambda: got["ok"] >= 10, timeout=10, what="requests flowing")
        r = ctl(path, "restart", "web")
        assert r.returncode == 0, r
        n = got["ok"]
        wait_until(lambda: got["ok"] >= n + 10, timeout=10, what="requests after the roll")
    finally:
        stop.set()
        t.join(15)
    assert got["bad"] == [], got["bad"][:10]


def test_a_held_request_with_a_body_goes_once_the_ship_is_ready(fleet, tmp_path):
    """A POST whose head and body arrive while its ship restarts in place
    is held; when the ship is ready, its body (read already, buffered by
    default) must still reach the ship, not wait for the client's next
    bytes until body_timeout."""
    import socket
    port, hport = free_port(), free_port()
    script = f"sleep 1; exec {PY} {app('echo_backend.py')} --port {port} --name web"
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [mothership.http]
        body_timeout = "3s"

        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{port}"
        routes = ["http:/.*"]
        critical = false
    """
    ms, path = launch(fleet, text)
    mark = len(ms.lines)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", ctl(path, "restart", "web")))
    t.start()
    try:
        ms.event("roll", msg=r"no new requests to pid", start=mark, timeout=10)
        with socket.create_connection(("127.0.0.1", hport), timeout=10) as s:
            s.sendall(b"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    finally:
        t.join(30)
    assert out["r"].returncode == 0, out["r"]
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), got[:300]
    answer = json.loads(body)
    assert answer["method"] == "POST" and answer["body"] == "hello", answer


def test_a_held_request_waits_for_the_drain_and_the_new_process(fleet, tmp_path):
    """A request held while the old process drains a request slower than
    the ship's ready_timeout waits on (drain_timeout + ready_timeout) and
    reaches the new process, instead of a 503 after ready_timeout."""
    import socket
    port, hport, mport = free_port(), free_port(), free_port()
    script = f"exec {PY} {app('echo_backend.py')} --port {port} --name web"
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{port}"
        routes = ["http:/.*"]
        critical = false
        ready_timeout = "1s"
        drain_timeout = "10s"
    """
    ms, path = launch(fleet, text, global_extra=f"metrics_port = {mport}")

    def get(target):
        with socket.create_connection(("127.0.0.1", hport), timeout=20) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk

    out = {}
    slow = threading.Thread(target=lambda: out.setdefault("slow", get("/slow?delay=3000")))
    slow.start()
    wait_until(lambda: 'mothership_upstream_in_flight{ship="web",instance="0"} 1' in http_get(mport, "/metrics")[1],
               timeout=10, what="the slow request in flight")
    mark = len(ms.lines)
    roll = threading.Thread(target=lambda: out.setdefault("r", ctl(path, "restart", "web")))
    roll.start()
    try:
        ms.event("roll", msg=r"no new requests to pid", start=mark, timeout=10)
        held = get("/held")
    finally:
        slow.join(30)
        roll.join(30)
    assert out["r"].returncode == 0, out["r"]
    assert out["slow"].startswith(b"HTTP/1.1 200"), out["slow"][:300]
    assert held.startswith(b"HTTP/1.1 200"), held[:300]
    assert json.loads(held.partition(b"\r\n\r\n")[2])["path"] == "/held"


def test_a_held_request_on_an_entry_a_reload_retires_gets_its_503_at_once(fleet, tmp_path):
    """A reload that removes a ship while it restarts in place ends the
    roll: the requests held for it get their 503 then, not after the
    ship's drain_timeout + ready_timeout (here a minute and more)."""
    import socket
    port, hport, mport = free_port(), free_port(), free_port()
    script = f"exec {PY} {app('echo_backend.py')} --port {port} --name web"
    web = f"""
        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{port}"
        routes = ["http:/.*"]
        critical = false
        ready_timeout = "60s"
        drain_timeout = "60s"
    """
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.other]]
        name = "other"
        command = "sleep"
        args = ["600"]
        critical = false
    """
    ms, path = launch(fleet, text + web, global_extra=f"metrics_port = {mport}")

    def get(target, timeout):
        with socket.create_connection(("127.0.0.1", hport), timeout=timeout) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk

    def metric(text):
        return text in http_get(mport, "/metrics")[1]

    out = {}
    threads = [threading.Thread(target=lambda: out.setdefault("slow", get("/slow?delay=20000", 40)))]
    threads[0].start()
    try:
        wait_until(lambda: metric('mothership_upstream_in_flight{ship="web",instance="0"} 1'), timeout=10,
                   what="the slow request in flight")
        mark = len(ms.lines)
        threads.append(threading.Thread(target=lambda: out.setdefault("r", ctl(path, "restart", "web"))))
        threads[-1].start()
        ms.event("roll", msg=r"no new requests to pid", start=mark, timeout=10)
        # the held request's own deadline is a minute away: 15 s without an
        # answer means it still waits
        threads.append(threading.Thread(target=lambda: out.setdefault("held", get("/held", 15))))
        threads[-1].start()
        wait_until(lambda: metric("mothership_requests_held_total 1"), timeout=10, what="the request held")
        with open(path) as f:
            manifest = f.read()
        with open(path, "w") as f:
            f.write(manifest[:manifest.index("[[fleet.web]]")])  # the last entry
        r = ctl(path, "reload")
        assert r.returncode == 0, r
        threads[-1].join(20)
        assert "held" in out, ("no answer to the held request", ms.lines[mark:])
        assert out["held"].startswith(b"HTTP/1.1 503"), out["held"][:300]
    finally:
        for t in threads:
            t.join(45)
    assert out["r"].returncode == 1, out["r"]


def test_a_reload_that_adds_an_instance_after_a_roll_keeps_every_instance_serving(fleet, tmp_path):
    """After a roll the processes listen at their second addresses (port +
    i + N). A reload that changes N moves those addresses; an instance kept
    running must still be reached where it listens, and the new instance's
    address must not be one a kept process holds."""
    import requests
    port, hport = free_port_run(8), free_port()
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"
    """ + replicated(port, instances=2, extra='routes = ["http:/.*"]')
    ms, path = launch(fleet, text)
    r = ctl(path, "restart", "web")
    assert r.returncode == 0, r
    assert listening(port + 2) and listening(port + 3)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("instances = 2", "instances = 3"))
    mark = len(ms.lines)
    r = ctl(path, "reload")
    assert r.returncode == 0, r
    ms.event("ready", ship="web#2", start=mark, timeout=20)
    url = f"http://127.0.0.1:{hport}/x"
    seen = {}

    def all_answer():
        for _ in range(6):
            resp = requests.get(url, timeout=5)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            if resp.status_code == 200:
                seen.setdefault("names", set()).add(resp.json()["name"])
        return seen.get("names", set()) == {"web-0", "web-1", "web-2"}
    wait_until(all_answer, timeout=10, what=f"every instance answering (seen {seen})")
    st = status_of(path)
    assert all(st[f"web#{i}"]["state"] == "ready" for i in range(3)), st


@pytest.mark.parametrize("instances", [1, 3])
def test_a_stop_during_the_drain_of_a_roll_ends_it_and_the_ship_stays_stopped(fleet, tmp_path, instances):
    """`mothership stop web` while a roll of web waits for the old process's
    requests in flight ends the roll there: the restart answers 1 saying the
    entry was stopped, no process of web starts again and no request is held
    for it."""
    import socket
    hport, mport = free_port(), free_port()
    echo = app("echo_backend.py")
    if instances == 1:
        port = free_port()
        where, bind = f'"--port", "{port}"', f"tcp://127.0.0.1:{port}"
    else:
        d = tempfile.mkdtemp(prefix="msr-", dir="/tmp")
        fleet.sockdirs = getattr(fleet, "sockdirs", []) + [d]
        where, bind = f'"--unix", "{d}/w-{{instance}}.sock"', f"unix://{d}/w-{{instance}}.sock"
    text = f"""
        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(echo)}, {where}]
        bind = {toml_str(bind)}
        instances = {instances}
        routes = ["http:/.*"]
        critical = false
        drain_timeout = "30s"
        ready_timeout = "30s"
    """
    ms, path = launch(fleet, text, global_extra=f"metrics_port = {mport}")
    names = ["web"] if instances == 1 else [f"web#{k}" for k in range(instances)]

    def get(target, timeout):
        with socket.create_connection(("127.0.0.1", hport), timeout=timeout) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return got
                got += chunk

    out = {}
    threads = []
    for k in range(instances):  # one slow request per instance: the first rolled has one
        threads.append(threading.Thread(target=lambda k=k: out.setdefault(f"slow{k}", get("/slow?delay=8000", 40))))
        threads[-1].start()
    try:
        wait_until(lambda: 'mothership_upstream_in_flight{ship="web",instance="0"} 1'
                   in http_get(mport, "/metrics")[1], timeout=10, what="a slow request in flight on web#0")
        mark = len(ms.lines)
        threads.append(threading.Thread(target=lambda: out.setdefault("r", ctl(path, "restart", "web", timeout=60))))
        threads[-1].start()
        ms.event("roll", msg=r"no new requests to pid", start=mark, timeout=10)
        r = ctl(path, "stop", "web")
        assert r.returncode == 0, r
        ms.event("roll_failed", start=mark, timeout=20)
        threads[-1].join(30)
        assert "r" in out, "the restart did not answer"
        assert out["r"].returncode == 1, out["r"]
        assert "it was stopped meanwhile" in out["r"].stderr, out["r"]
        wait_until(lambda: all(status_of(path)[n]["state"] == "stopped" for n in names), timeout=20,
                   what="every instance of web stopped")
        # nothing holds requests for web: one gets its answer (no process) at once
        answer = get("/after", 10)
        assert answer.startswith(b"HTTP/1.1 5"), answer[:300]
        spawned = [e for e in ms.events() if e["_i"] >= mark and e.get("event") in ("spawned", "started", "ready")]
        assert spawned == [], spawned
        st = status_of(path)
        assert all(st[n]["state"] == "stopped" for n in names), st
    finally:
        for t in threads:
            t.join(45)
