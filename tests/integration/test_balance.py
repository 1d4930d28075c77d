"""Balancing a route over a ship's instances, through the real binary and
real echo backends (apps/echo_backend.py, each answering with its name):
round robin over 3 instances, least_conn sending to the idle one, passive
health (an instance stopped with SIGSTOP times out once, is ejected and
counted, the others go on), retries (a GET to an instance that refuses is
answered by another one, a POST with a body gets its 502), and a kill -9 of
an instance under a request loop without one failure."""
import os
import re
import signal
import threading

import requests

from fleet_helpers import PY, free_port, free_port_run, toml_str
from http_helpers import ECHO, echo_ship, metric, start_proxy, toml_value, wait_until

N = 3


def web_toml(port, balance=None, extra=None):
    """A ship "web" with N instances, instance i named web-i at port + i."""
    lines = ["[[fleet.web]]", 'name = "web"', f"command = {toml_str(PY)}",
             f"args = {toml_value([ECHO, '--name', 'web-{instance}', '--port', '{port}'])}",
             'bind = "tcp://127.0.0.1:{port}"', f"port = {port}", f"instances = {N}",
             'routes = ["http:/.*"]']
    if balance:
        lines.append(f"balance = {toml_str(balance)}")
    lines += [f"{k} = {toml_value(v)}" for k, v in (extra or {}).items()]
    return "\n".join(lines) + "\n"


def start_web(fleet, balance=None, http=None, extra=None):
    port = free_port_run(2 * N)
    px = start_proxy(fleet, http=http, extra=web_toml(port, balance, extra), wait=False)
    px.ms.event("fleet_ready", timeout=20)
    return px



def pids(px):
    """{instance name: pid} from the fleet's "started" events."""
    out = {}
    for e in px.ms.events("started"):
        m = re.search(r"pid (\d+)", e["msg"])
        if m and e.get("ship", "").startswith("web#"):
            out[e["ship"]] = int(m.group(1))
    return out


def name_of(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["name"]


# ------------------------------------------------------------------ a single ship (no instances)
def test_a_stopped_ship_times_out_once_and_is_ejected(fleet):
    px = start_proxy(fleet, echo_ship("app"), http={"upstream_timeout": "1s", "eject_cooldown": "1m"})
    pid = int(re.search(r"pid (\d+)", px.ms.event("started", ship="app")["msg"]).group(1))
    assert requests.get(px.url("/a"), timeout=5).status_code == 200
    os.kill(pid, signal.SIGSTOP)
    try:
        assert requests.get(px.url("/b"), timeout=10).status_code == 504
        assert metric(px.metrics(), "mothership_upstream_ejections_total", ship="app", instance="0") == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    # alone, it is used anyway while ejected, and not ejected twice
    assert requests.get(px.url("/c"), timeout=5).status_code == 200
    m = px.metrics()
    assert metric(m, "mothership_upstream_ejections_total", ship="app", instance="0") == 1
    assert metric(m, "mothership_upstream_in_flight", ship="app", instance="0") == 0


# ------------------------------------------------------------------ instances
def test_round_robin_over_three_instances(fleet):
    px = start_web(fleet)
    s = requests.Session()
    names = [name_of(s.get(px.url(f"/r{i}"), timeout=5)) for i in range(3 * N)]
    assert sorted(set(names)) == [f"web-{i}" for i in range(N)], names
    assert names[:N] * 3 == names, names  # each in turn, the same order every round
    m = px.metrics()
    for i in range(N):
        assert metric(m, "mothership_upstream_in_flight", ship="web", instance=str(i)) == 0


def test_least_conn_sends_to_the_idle_one(fleet):
    px = start_web(fleet, balance="least_conn")
    slow = {}

    def hold():
        slow["r"] = requests.get(px.url("/slow?delay=1500"), timeout=10)

    t = threading.Thread(target=hold)
    t.start()
    wait_until(lambda: sum(metric(px.metrics(), "mothership_upstream_in_flight", ship="web", instance=str(i))
                           for i in range(N)) == 1, what="the slow request in flight")
    busy = [i for i in range(N)
            if metric(px.metrics(), "mothership_upstream_in_flight", ship="web", instance=str(i)) == 1]
    quick = [name_of(requests.get(px.url(f"/q{i}"), timeout=5)) for i in range(2 * N)]
    t.join()
    assert name_of(slow["r"]) == f"web-{busy[0]}"
    assert f"web-{busy[0]}" not in quick, (busy, quick)
    assert len(set(quick)) == N - 1, quick  # the idle ones share the rest


def test_a_stopped_instance_times_out_once_and_the_others_go_on(fleet):
    px = start_web(fleet, http={"upstream_timeout": "1s", "eject_cooldown": "1m"})
    p = pids(px)
    os.kill(p["web#1"], signal.SIGSTOP)
    try:
        statuses, names = [], []
        for i in range(4 * N):
            r = requests.get(px.url(f"/s{i}"), timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 200:
                names.append(r.json()["name"])
        assert statuses.count(504) == 1, statuses  # once: then it is ejected
        assert statuses.count(200) == 4 * N - 1, statuses
        assert "web-1" not in names and set(names) == {"web-0", "web-2"}, names
        m = px.metrics()
        assert metric(m, "mothership_upstream_ejections_total", ship="web", instance="1") == 1
        assert metric(m, "mothership_upstream_ejections_total", ship="web", instance="0") == 0
    finally:
        os.kill(p["web#1"], signal.SIGCONT)


def test_refused_get_is_retried_on_another_and_post_gets_502(fleet):
    # no ejection: the refusing instance keeps its turn, so every round meets it
    px = start_web(fleet, http={"eject_cooldown": "0s"})
    s = requests.Session()
    gone = name_of(requests.get(px.url("/_stop_listening"), timeout=5))
    wait_until(lambda: requests.get(px.url("/probe"), timeout=5).status_code == 200, what="a GET")
    names = [name_of(s.get(px.url(f"/g{i}"), timeout=5)) for i in range(3 * N)]
    assert gone not in names, names
    m = px.metrics()
    assert metric(m, "mothership_upstream_retries_total", ship="web") >= N
    assert metric(m, "mothership_upstream_ejections_total", ship="web", instance=gone[-1]) == 0
    posts = [requests.post(px.url(f"/p{i}"), data=b"body", timeout=5).status_code for i in range(N)]
    assert sorted(posts) == [200] * (N - 1) + [502], posts
    puts = [requests.put(px.url(f"/u{i}"), data=b"body", timeout=5).status_code for i in range(N)]
    assert puts == [200] * N, puts  # read whole first, never sent to the refusing one: retried


def test_kill_9_of_an_instance_under_load_fails_nothing(fleet):
    px = start_web(fleet, extra={"critical": False})
    p = pids(px)
    stop = threading.Event()
    results, errors = [], []

    def loop(keep_alive):
        s = requests.Session() if keep_alive else requests
        while not stop.is_set():
            try:
                results.append(s.get(px.url("/k"), timeout=10).status_code)
            except requests.RequestException as e:  # a failure the client saw
                errors.append(repr(e))

    threads = [threading.Thread(target=loop, args=(k,)) for k in (True, True, False, False)]
    for t in threads:
        t.start()
    wait_until(lambda: len(results) > 50, timeout=60.0, what="requests flowing")
    start = px.ms.events("started")[-1]["_i"]
    os.kill(p["web#0"], signal.SIGKILL)
    px.ms.event("ready", ship="web#0", start=start + 1, timeout=20)
    n = len(results)
    wait_until(lambda: len(results) > n + 50, timeout=60.0, what="requests after the restart")
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}


# ------------------------------------------------------------------ a surge's process after a reload
def test_a_surge_process_is_reached_after_a_reload_drops_the_second_address(fleet, tmp_path):
    """After a roll, the entry's process is its surge twin (parity 1). A
    reload that gives the ship a bind without {port} restarts it in place
    at that bind: the data plane must send to it there, not give up on it
    for want of a second address."""
    import subprocess
    import tempfile
    from conftest import BINARY
    port = free_port_run(2)
    fixed = free_port()
    sockdir = tempfile.mkdtemp(prefix="msreview-")
    web = "\n".join(["[[fleet.web]]", 'name = "web"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([ECHO, '--name', 'web', '--port', '{port}'])}",
                     'bind = "tcp://127.0.0.1:{port}"', f"port = {port}", 'routes = ["http:/.*"]',
                     "critical = false"]) + "\n"
    px = start_proxy(fleet, mothership={"socket_dir": sockdir}, extra=web, wait=False)
    px.ms.event("fleet_ready", timeout=20)
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    assert requests.get(px.url("/a"), timeout=5).status_code == 200
    r = subprocess.run([BINARY, "restart", "web", "-c", path], capture_output=True, text=True, timeout=30,
                       cwd=os.path.dirname(path))
    assert r.returncode == 0, r
    assert requests.get(px.url("/b"), timeout=5).status_code == 200  # served by the surge, at port + 1
    with open(path) as f:
        text = f.read()
    new = (text.replace('bind = "tcp://127.0.0.1:{port}"', f'bind = "tcp://127.0.0.1:{fixed}"')
           .replace(f"port = {port}\n", "").replace('"{port}"', f'"{fixed}"'))
    assert new != text
    with open(path, "w") as f:
        f.write(new)
    start = len(px.ms.lines)
    px.ms.signal(signal.SIGHUP)
    px.ms.event("ready", ship="web", start=start, timeout=20)
    codes = []

    def answered():
        codes.append(requests.get(px.url("/c"), timeout=5).status_code)
        return codes[-1] == 200
    try:
        wait_until(answered, timeout=10, what="the restarted ship answering through the proxy")
    finally:
        import shutil
        shutil.rmtree(sockdir, ignore_errors=True)
    assert codes[-1] == 200, codes[-5:]
