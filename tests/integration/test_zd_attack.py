"""Hostile clients against the zero-downtime paths, through the real binary:
requests held while a ship restarts in place, and what reaches the ship."""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BINARY
from fleet_helpers import PY, app, free_port, toml_str
from http_helpers import Raw, fd_count, wait_until

RECORDER = app("recording_backend.py")


def ctl(manifest_path, *args, timeout=30):
    return subprocess.run([BINARY, *args, "-c", manifest_path], capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(manifest_path))


def held_fleet(fleet, tmp_path, delay="4", extra="", http="upstream_keepalive = 2"):
    """One recording ship (no second address: a restart holds requests)
    whose every start after the first takes `delay` seconds to listen."""
    port, hport = free_port(), free_port()
    events = tmp_path / "events.jsonl"
    marker = tmp_path / "started"
    script = (f"if [ -e {marker} ]; then sleep {delay}; fi; : > {marker}; "
              f"exec {PY} {RECORDER} --port {port} --events {events}")
    sockdir = tempfile.mkdtemp(prefix="msatk-", dir="/tmp")
    text = f"""
        [mothership]
        socket_dir = {toml_str(sockdir)}
        shutdown_timeout = "10s"
        {extra}

        [mothership.http]
        {http}

        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        bind = "tcp://127.0.0.1:{port}"
        routes = ["http:/.*"]
        critical = false
        ready_timeout = "20s"
    """
    ms = fleet(text, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=20)
    return ms, str(fleet.tmp / "ship-manifest.toml"), hport, events


def heads(events):
    if not os.path.exists(events):
        return []
    out = []
    with open(events) as f:
        for line in f:
            ev = json.loads(line)
            if ev["ev"] == "head":
                out.append(ev)
    return out


def start_roll(path):
    """`mothership restart web` in the background (it answers once the roll
    is done); the roll's hold is on once the old process is gone."""
    return subprocess.Popen([BINARY, "restart", "web", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(path))


def wait_holding(hport, events, timeout=10):
    """Until a probe request is held (the ship is away): a GET that does not
    answer within 0.3 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.create_connection(("127.0.0.1", hport))
        s.settimeout(0.3)
        s.sendall(b"GET /probe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        try:
            s.recv(1)
        except socket.timeout:
            s.close()
            return
        s.close()
        time.sleep(0.05)
    raise AssertionError("no request was held")


def test_clients_that_close_while_held_are_let_go_at_once(fleet, tmp_path):
    """Clients that give up while their request is held must not keep their
    connection (fd) and their place in the bounded hold queue until the
    ship is back, nor have their request sent to it afterwards."""
    ms, path, hport, events = held_fleet(fleet, tmp_path)
    roll = start_roll(path)
    try:
        wait_holding(hport, events)
        time.sleep(0.3)  # the probe's own close is settled
        base = fd_count(ms.pid)
        socks = []
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", hport))
            s.sendall(b"POST /gone-%d HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" % i)
            socks.append(s)
        wait_until(lambda: fd_count(ms.pid) >= base + 60, timeout=5, what="the clients accepted")
        for s in socks:
            s.close()
        # the ship is still away (it takes 4 s): the proxy lets them go now
        wait_until(lambda: fd_count(ms.pid) <= base + 2, timeout=2, what="held clients that closed let go")
    finally:
        assert roll.wait(30) == 0, roll.communicate()
    # a request after the roll goes through; none of the abandoned ones went
    with Raw(hport) as r:
        r.send(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert r.response().status == 200
    got = [h["target"] for h in heads(events)]
    assert "/after" in got
    assert not [t for t in got if t.startswith("/gone-")], got


def test_a_held_post_with_its_body_already_sent_goes_once_the_ship_is_back(fleet, tmp_path):
    """A POST whose small body came with its head (request buffering, the
    default) is held while the ship restarts; once it is back the request
    reaches it exactly once, body whole, and the client gets its answer."""
    ms, path, hport, events = held_fleet(fleet, tmp_path, delay="2")
    roll = start_roll(path)
    try:
        wait_holding(hport, events)
        with Raw(hport, timeout=15) as r:
            r.send(b"POST /held-post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            resp = r.response()
            assert resp.status == 200, (resp.status, resp.body)
    finally:
        assert roll.wait(30) == 0, roll.communicate()
    got = [h for h in heads(events) if h["target"] == "/held-post"]
    assert len(got) == 1, got


def test_requests_with_a_body_are_balanced_over_every_instance(fleet, tmp_path):
    """Round robin over two instances with only POSTs (bodies read whole
    first, the default): both instances get some. The choice must be made
    once per request, not again when the body is in."""
    base_port, hport = free_port(), free_port()
    ev = tmp_path / "ev-{instance}.jsonl"
    sockdir = tempfile.mkdtemp(prefix="msatk-", dir="/tmp")
    text = f"""
        [mothership]
        socket_dir = {toml_str(sockdir)}

        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.web]]
        name = "web"
        command = {toml_str(PY)}
        args = [{toml_str(RECORDER)}, "--port", "{{port}}", "--events", {toml_str(str(ev))}]
        instances = 2
        port = {base_port}
        bind = "tcp://127.0.0.1:{{port}}"
        routes = ["http:/.*"]
        critical = false
    """
    ms = fleet(text, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=20)
    for i in range(10):
        with Raw(hport, timeout=10) as r:
            r.send(b"POST /p-%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc" % i)
            assert r.response().status == 200
    per = [[h["target"] for h in heads(str(tmp_path / f"ev-{k}.jsonl"))] for k in range(2)]
    assert sorted(per[0] + per[1]) == sorted(f"/p-{i}" for i in range(10))
    assert per[0] and per[1], per
