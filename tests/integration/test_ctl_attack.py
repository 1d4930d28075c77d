"""The control socket attacked by local users, through the real binary:
refused peers flooding it, a control_group member hogging it, a peer whose
connecting process is gone before it is checked, names that try to forge log
lines, a socket dir that belongs to someone else."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from conftest import BINARY
from fleet_helpers import Mothership, free_port
from test_ctl import NOBODY, SHIPS, curl, launch, raw, sockdir, status_of  # noqa: F401 (sockdir: a fixture)

PY = sys.executable
MEMBER = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=100"]  # supplementary group "users"


def helper(code, user, *args):
    """A Python helper running as user; stdout is a pipe of lines."""
    return subprocess.Popen([*user, PY, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


FLOOD = """
    import socket, sys, time
    sock, seconds = sys.argv[1], float(sys.argv[2])
    held, n = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(sock)
        except OSError:
            s.close()
            continue
        n += 1
        held.append(s)  # never closed: the server must not wait for it
        if len(held) > 400:
            held.pop(0).close()
    print(n, flush=True)
"""


def test_refused_peers_do_not_take_the_owners_slots(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    os.chmod(sock, 0o666)  # only the peer check keeps nobody out now
    flood = helper(FLOOD, NOBODY, sock, "4")
    try:
        answers = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            r = subprocess.run([BINARY, "status", "--json", "-c", path], capture_output=True, text=True,
                               timeout=15, cwd=os.path.dirname(path))
            answers.append((r.returncode, r.stderr))
        n = int(flood.communicate(timeout=20)[0])
    finally:
        if flood.poll() is None:
            flood.kill()
    assert n > 50, n
    assert answers and {a for a in answers if a[0] != 0} == set(), answers
    # the refusals are logged, but not one line each
    refused = ms.events("control_refused")
    assert 1 <= len(refused) <= 10, len(refused)
    assert refused[0]["msg"].startswith("control socket: refused uid 65534 pid ")
    # once the flood is over, a later refusal says how many were not logged
    deadline = time.monotonic() + 15
    while not ms.events("control_refused")[-1]["msg"].endswith("not logged before this one)"):
        assert time.monotonic() < deadline, ms.events("control_refused")
        # (refused: 403, or reset while the server still closes the flood's connections)
        subprocess.run([*NOBODY, "curl", "-s", "--unix-socket", sock, "http://m/v1/status"], timeout=15,
                       capture_output=True)
        time.sleep(0.5)


def test_a_member_cannot_take_every_slot(fleet, sockdir):
    text = SHIPS.replace('socket_dir = "{sockdir}"', 'socket_dir = "{sockdir}"\ncontrol_group = "users"')
    ms, path, sock = launch(fleet, sockdir, text)
    hog = helper("""
        import socket, sys
        held = []
        for i in range(40):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            s.sendall(b"GET /v1/status HTTP/1.1\\r\\n")  # half-sent, forever
            held.append(s)
        print("holding", flush=True)
        sys.stdin.read()
    """, MEMBER, sock)
    try:
        assert hog.stdout.readline() == "holding\n", hog.stderr.read()
        code, body = curl(sock, "GET", "/v1/status")
        assert code == 200, body
        r = subprocess.run([BINARY, "status", "--json", "-c", path], capture_output=True, text=True,
                           timeout=15, cwd=os.path.dirname(path))
        assert r.returncode == 0, r
    finally:
        hog.kill()
        hog.wait()


def test_group_check_uses_the_credentials_of_the_connect(fleet, sockdir):
    """The process that connected is gone (and its pid could be anyone's)
    when the server looks: the check must use what the kernel recorded at
    connect(), not /proc/<pid>."""
    text = SHIPS.replace('socket_dir = "{sockdir}"', 'socket_dir = "{sockdir}"\ncontrol_group = "users"')
    ms, path, sock = launch(fleet, sockdir, text)
    late = helper("""
        import os, socket, sys
        s = socket.socket(socket.AF_UNIX)
        pid = os.fork()
        if pid == 0:
            s.connect(sys.argv[1])  # the peer credentials are this child's
            os._exit(0)
        os.waitpid(pid, 0)
        print("connected", flush=True)
        sys.stdin.readline()
        s.sendall(b"GET /v1/status HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        print(out.split(b"\\r\\n")[0].decode(), flush=True)
    """, MEMBER, sock)
    os.kill(ms.pid, signal.SIGSTOP)  # the connection waits, unaccepted, until the child is gone
    try:
        assert late.stdout.readline() == "connected\n", late.stderr.read()
    finally:
        os.kill(ms.pid, signal.SIGCONT)
    out, err = late.communicate("go\n", timeout=20)
    assert out.strip() == "HTTP/1.1 200 OK", (out, err)


def test_names_cannot_forge_log_lines(fleet, sockdir):
    ms = fleet(SHIPS.format(sockdir=sockdir), name="ship-manifest.toml", json_logs=False)
    ms.wait_for(r"fleet ready", timeout=15)
    sock = os.path.join(sockdir, "mothership.ctl")
    forged = '00:00:00.000 mothership   | uid 0 pid 1: stop ship "db"'
    code, _ = curl(sock, "POST", "/v1/entries/restart", {"names": ["web\n" + forged]})
    assert code == 404
    code, _ = curl(sock, "POST", "/v1/entries/stop", {"names": ["@\x1b[2J\rfront"]})
    assert code == 404
    ms.wait_for(r"stop: no entry has the tag")
    line = ms.wait_for(r"restart: no entry is named.*").text
    assert "\\n00:00:00.000" in line, line
    out = ms.output()
    assert not any(l.startswith("00:00:00.000") for l in out.splitlines()), out
    assert "\x1b[2J" not in out and "\r" not in out


def test_a_socket_dir_of_another_user_is_refused(fleet):
    d = tempfile.mkdtemp(prefix="msctl-other-")
    try:
        os.chown(d, 65534, 65534)  # made by someone else, as /tmp/mothership could be
        os.chmod(d, 0o777)
        ms = fleet(SHIPS.replace('socket_dir = "{sockdir}"', "").format(), env={"MS_SOCKET_DIR": d},
                   name="ship-manifest.toml")
        assert ms.wait_exit(15) == 1, ms.output()
        assert "belongs to uid 65534" in ms.output(), ms.output()
        assert os.listdir(d) == []
        # a world-writable dir without the sticky bit, even our own
        os.chown(d, 0, 0)
        ms = fleet(SHIPS.replace('socket_dir = "{sockdir}"', "").format(), env={"MS_SOCKET_DIR": d},
                   name="ship-manifest.toml")
        assert ms.wait_exit(15) == 1, ms.output()
        assert "others may write to it" in ms.output(), ms.output()
        assert os.listdir(d) == []
        # group-writable by our own group is fine (umask 002)
        os.chmod(d, 0o770)
        ms = fleet(SHIPS.replace('socket_dir = "{sockdir}"', "").format(), env={"MS_SOCKET_DIR": d},
                   name="ship-manifest.toml")
        ms.wait_for(r"fleet ready", timeout=15)
        assert os.path.exists(os.path.join(d, "mothership.ctl"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_what_is_not_a_socket_is_never_removed(fleet, sockdir, kind):
    sock = os.path.join(sockdir, "mothership.ctl")
    target = os.path.join(sockdir, "precious")
    with open(target, "w") as f:
        f.write("keep me")
    if kind == "file":
        shutil.copy(target, sock)
    elif kind == "dir":
        os.mkdir(sock)
    else:
        os.symlink(target, sock)
    ms = fleet(SHIPS.format(sockdir=sockdir), name="ship-manifest.toml")
    assert ms.wait_exit(15) == 1, ms.output()
    assert f"{sock} exists and is not a socket" in ms.output(), ms.output()
    assert os.path.lexists(sock) and open(target).read() == "keep me"


def test_protocol_edges_change_nothing(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    before, _ = status_of(path)
    for n in ["-1", "abc", "99999999999999999999", "100001", "1e3", " 1"]:
        out = raw(sock, f"GET /v1/logs?n={n} HTTP/1.1\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 400 "), (n, out)
    for sig in [0, -1, 999, "STOP0", "", None, 1.5]:
        code, body = curl(sock, "POST", "/v1/entries/signal", {"name": "web", "signal": sig})
        assert code == 400, (sig, body)
    for names in [["@"], [""], "web", [1], ["a" * 300]]:
        code, body = curl(sock, "POST", "/v1/entries/stop", {"names": names})
        assert code in (400, 404), (names, body)
    # chunked body; a pipelined pair, answered in order
    out = raw(sock, b"POST /v1/entries/stop HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\n{\"nam\r\n0c\r\nes\": [\"zz\"]}\r\n0\r\n\r\n"
                    b"GET /v1/nope HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 404 ") and out.count(b"HTTP/1.1 404 ") == 2, out
    # a huge names array
    body = json.dumps({"names": ["web"] * 100000 + ["zz"]}).encode()
    out = raw(sock, b"POST /v1/entries/restart HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert out.startswith(b"HTTP/1.1 404 "), out[:200]
    after, _ = status_of(path)
    assert {n: e["pid"] for n, e in after.items()} == {n: e["pid"] for n, e in before.items()}
    # a signal to an entry that is not running reaches nobody
    assert curl(sock, "POST", "/v1/entries/stop", {"names": ["db"]})[0] == 200
    code, body = curl(sock, "POST", "/v1/entries/signal", {"name": "db", "signal": "KILL"})
    assert code == 409 and "not running" in body["error"], body


def test_followers_that_never_read(fleet, sockdir):
    text = SHIPS.replace("sleep 0.1; done", "done", 1)  # web: as many lines as it can
    ms, path, sock = launch(fleet, sockdir, text)
    stuck = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(sock)
            s.sendall(b"GET /v1/logs?follow=1&n=0 HTTP/1.1\r\n\r\n")
            stuck.append(s)
        # the control loop goes on answering while they are dropped
        for _ in range(20):
            assert curl(sock, "GET", "/v1/status")[0] == 200
        # each is dropped once 4 MiB behind, and the log says so
        deadline = time.monotonic() + 30
        while True:
            dropped = [e["msg"] for e in ms.events("control") if "log follower" in e["msg"]]
            if len(dropped) == 8:
                break
            assert time.monotonic() < deadline, dropped
            time.sleep(0.1)
        assert all(re.fullmatch(r"uid 0 pid \d+: log follower disconnected: it is more than 4 MiB behind", m)
                   for m in dropped), dropped
    finally:
        for s in stuck:
            s.close()
    assert curl(sock, "GET", "/v1/status")[0] == 200


def test_runs_racing_for_one_socket(fleet, sockdir):
    """Runs started at once on one socket (a stale one there): one keeps it
    and answers on it, the others refuse to start."""
    sock = os.path.join(sockdir, "mothership.ctl")
    for _ in range(8):
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock)  # stale: nobody listens
        s.close()
        path = fleet.write(SHIPS.format(sockdir=sockdir), name="ship-manifest.toml")
        runs = [Mothership(["-c", path], cwd=str(fleet.tmp)) for _ in range(6)]
        fleet.started.extend(runs)
        deadline = time.monotonic() + 20
        while sum(m.proc.poll() is not None for m in runs) < 5:
            assert time.monotonic() < deadline, "\n\n".join(m.output()[-600:] for m in runs)
            time.sleep(0.05)
        alive = [m for m in runs if m.proc.poll() is None]
        assert len(alive) == 1, [m.output() for m in runs]
        for m in runs:
            if m is not alive[0]:
                assert m.proc.returncode == 1 and "another Mothership is running" in m.output(), m.output()
        alive[0].wait_for(r"fleet ready", timeout=15)
        _, doc = status_of(path)
        assert doc["fleet"]["pid"] == alive[0].pid
        assert alive[0].stop() == 0
        assert not os.path.exists(sock)


def test_a_pipelining_client_that_never_reads(fleet, sockdir):
    """Requests are small and answers bigger: a client that sends requests
    without reading the answers must not make the fleet buffer answers
    without bound; it is simply not read from any more."""
    ms, path, sock = launch(fleet, sockdir)

    def rss_kib():
        return int(open(f"/proc/{ms.pid}/status").read().split("VmRSS:")[1].split()[0])

    base = rss_kib()
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(sock)
    s.setblocking(False)
    req = b"GET /v1/status HTTP/1.1\r\n\r\n" * 40000  # 1 MiB asking for some 50 MiB
    sent, progress = 0, time.monotonic()
    while sent < len(req) and time.monotonic() - progress < 3.0:  # until it is all sent, or not read any more
        try:
            sent += s.send(req[sent:])
            progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    assert curl(sock, "GET", "/v1/status")[0] == 200
    grown = rss_kib() - base
    s.close()
    with open(f"/proc/{ms.pid}/maps") as f:
        sanitized = "libasan" in f.read()  # ASan keeps freed memory in quarantine: RSS says nothing there
    assert sent < len(req) and (sanitized or grown < 16 * 1024), (sent, base, grown)
    assert curl(sock, "GET", "/v1/status")[0] == 200


def test_a_connection_goes_on_after_a_drain(fleet, sockdir):
    """Keep-alive: the request after a drain on the same connection is
    answered (reading paused during the drain starts again)."""
    port = free_port()
    ms = fleet(f"""
        [mothership]
        socket_dir = "{sockdir}"
        [mothership.bind]
        http = "127.0.0.1:{port}"
        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", "while true; do sleep 0.1; done"]
        ready_after = "100ms"
    """, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=15)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(sockdir, "mothership.ctl"))
    s.sendall(b"POST /v1/drain HTTP/1.1\r\n\r\n")
    out = b""
    while b'"drained":true}\n' not in out:
        out += s.recv(65536)
    s.sendall(b"GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n")
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2, out
