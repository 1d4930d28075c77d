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

from fleet_helpers import PY, free_port, toml_str
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


def start_web(fleet, balance=None, http=None):
    port = free_port()
    while any(not _free(port + k) for k in range(1, 2 * N)):
        port = free_port()
    px = start_proxy(fleet, http=http, extra=web_toml(port, balance), wait=False)
    px.ms.event("fleet_ready", timeout=20)
    return px


def _free(port):
    import socket
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


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
