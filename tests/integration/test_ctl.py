"""The control socket and the fleet commands, through the real binary: every
verb and its JSON, `curl --unix-socket`, the socket's permissions (another
uid is refused), a fleet that is not running (exit 3), unknown names."""
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import BINARY, run_ms
from fleet_helpers import free_port, http_get

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def sockdir():
    """A socket dir other users can reach (pytest's tmp dirs are 0700), so
    that the socket's own mode and the peer check are what is tested."""
    d = tempfile.mkdtemp(prefix="msctl-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def ctl(manifest_path, *args, timeout=15, user=None):
    cmd = [BINARY, *args, "-c", manifest_path]
    if user:
        cmd = [*user, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(manifest_path))


def curl(sock, method, path, body=None, user=None):
    """(status, parsed JSON body) of one request on the control socket."""
    cmd = ["curl", "-sS", "--max-time", "10", "--unix-socket", sock, "-X", method,
           "-w", "\n%{http_code}", f"http://mothership{path}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    if user:
        cmd = [*user, *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


SHIPS = """
    [mothership]
    socket_dir = "{sockdir}"

    [[fleet.web]]
    name = "web"
    command = "sh"
    args = ["-c", "trap 'echo got-hup' HUP; i=0; while true; do i=$((i+1)); echo web-line-$i; sleep 0.1; done"]
    tags = ["front"]
    critical = false
    ready_after = "200ms"

    [[fleet.web]]
    name = "api"
    command = "sh"
    args = ["-c", "echo api-up; while true; do sleep 0.1; done"]
    tags = ["front", "back"]
    critical = false
    ready_after = "200ms"

    [[fleet.jobs]]
    name = "db"
    command = "sh"
    args = ["-c", "while true; do sleep 0.1; done"]
    critical = false
    ready_after = "200ms"
"""


def launch(fleet, sockdir, text=SHIPS):
    ms = fleet(text.format(sockdir=sockdir), name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=15)
    return ms, str(fleet.tmp / "ship-manifest.toml"), os.path.join(sockdir, "mothership.ctl")


def status_of(manifest_path):
    r = ctl(manifest_path, "status", "--json")
    assert r.returncode == 0, r
    return {e["name"]: e for e in json.loads(r.stdout)["entries"]}, json.loads(r.stdout)


def wait_until(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_status_json_text_and_curl(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    entries, doc = status_of(path)
    assert doc["fleet"]["phase"] == "running"
    assert doc["fleet"]["pid"] == ms.pid
    assert doc["fleet"]["manifest"] == os.path.realpath(path)
    assert doc["fleet"]["socket"] == sock
    assert doc["fleet"]["ready"] is True
    assert list(entries) == ["web", "api", "db"]
    web = entries["web"]
    assert web["kind"] == "ship" and web["group"] == "web" and web["tags"] == ["front"]
    assert web["state"] == "ready" and web["pid"] > 0 and web["restarts"] == 0
    assert web["health"] == "none" and web["breaker"] == "closed" and web["instances"] == 1
    assert web["last_exit"] is None and web["uptime_s"] >= 0
    assert web["rss_bytes"] > 0 and web["cpu_percent"] >= 0
    text = ctl(path, "status")
    assert text.returncode == 0, text
    assert text.stdout.startswith(f"fleet running, pid {ms.pid}, ")
    assert [l.split()[0] for l in text.stdout.splitlines()[1:]] == ["NAME", "web", "api", "db"]
    code, body = curl(sock, "GET", "/v1/status")
    assert code == 200 and [e["name"] for e in body["entries"]] == ["web", "api", "db"]
    # the socket is the user's alone
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(sock).st_mode)


def test_restart_stop_start_by_name_and_tag(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    before, _ = status_of(path)
    r = ctl(path, "restart", "@back")
    assert r.returncode == 0, r
    assert r.stdout == "restart: api\n"
    ms.event("control", ship="api", msg=r"^uid 0 pid \d+: restart ship \"api\"$")
    after = wait_until(lambda: (lambda e: e if e["api"]["state"] == "ready" else None)(status_of(path)[0]),
                       "api ready again")
    assert after["api"]["pid"] != before["api"]["pid"]
    assert after["api"]["restarts"] == 1
    assert after["web"]["pid"] == before["web"]["pid"] and after["db"]["pid"] == before["db"]["pid"]

    r = ctl(path, "stop", "@front", "db")
    assert r.returncode == 0, r
    assert r.stdout == "stop: web, api, db\n"
    wait_until(lambda: all(e["state"] == "stopped" for e in status_of(path)[0].values()), "all stopped")
    # stopped for good: not restarted by policy
    time.sleep(0.3)
    assert all(e["state"] == "stopped" and e["pid"] == 0 for e in status_of(path)[0].values())

    code, body = curl(sock, "POST", "/v1/entries/start", {"names": ["web"]})
    assert code == 200 and body == {"action": "start", "entries": ["web"], "failed": []}
    wait_until(lambda: status_of(path)[0]["web"]["state"] == "ready", "web started")
    assert status_of(path)[0]["api"]["state"] == "stopped"
    for name, verb in (("api", "restart"), ("web", "stop"), ("db", "stop"), ("web", "start")):
        ms.event("control", ship=name, msg=rf"^uid 0 pid \d+: {verb} ship \"{name}\"$")
    assert ms.proc.poll() is None


def test_unknown_names_change_nothing(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    before, _ = status_of(path)
    r = ctl(path, "restart", "web", "nope")
    assert r.returncode == 1, r
    assert r.stderr == ('mothership: no entry is named "nope"\n'
                        "mothership: known entries: web, api, db, @front, @back\n")
    code, body = curl(sock, "POST", "/v1/entries/stop", {"names": ["@nobody"]})
    assert code == 404
    assert body == {"error": 'no entry has the tag "nobody"', "known": ["web", "api", "db"],
                    "tags": ["front", "back"]}
    code, body = curl(sock, "POST", "/v1/entries/stop", {"names": []})
    assert code == 400 and "no entry named" in body["error"]
    code, body = curl(sock, "POST", "/v1/entries/signal", {"name": "nope", "signal": "HUP"})
    assert code == 404 and body["known"] == ["web", "api", "db"]
    r = ctl(path, "logs", "nope")
    assert r.returncode == 1 and 'no entry is named "nope"' in r.stderr
    after, _ = status_of(path)
    assert {n: e["pid"] for n, e in after.items()} == {n: e["pid"] for n, e in before.items()}


def test_signal(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    r = ctl(path, "signal", "web", "HUP")
    assert r.returncode == 0, r
    pid = status_of(path)[0]["web"]["pid"]
    assert r.stdout == f"sent HUP to web (pid {pid})\n"
    ms.wait_for(r'"got-hup"', timeout=10)
    ms.event("control", ship="web", msg=r"^uid 0 pid \d+: signal SIGHUP ship \"web\"$")
    code, body = curl(sock, "POST", "/v1/entries/signal", {"name": "web", "signal": 1})
    assert code == 200 and body == {"action": "signal", "name": "web", "signal": 1, "pid": pid}
    assert ctl(path, "signal", "web", "BOGUS").returncode == 2
    assert ctl(path, "stop", "db").returncode == 0
    wait_until(lambda: status_of(path)[0]["db"]["state"] == "stopped", "db stopped")
    r = ctl(path, "signal", "db", "USR1")
    assert r.returncode == 1 and r.stderr == 'mothership: ship "db" is not running\n', r
    ms.event("control", ship="db", msg=r'^uid 0 pid \d+: cannot signal: ship "db" is not running$')


def test_logs_tail_and_follow(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    ms.wait_for(r"web-line-5\b", timeout=10)
    r = ctl(path, "logs", "web", "-n", "3")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(l.startswith("web | web-line-") for l in lines), r.stdout
    nums = [int(l.rsplit("-", 1)[1]) for l in lines]
    assert nums == list(range(nums[0], nums[0] + 3))
    r = ctl(path, "logs", "--json")
    assert r.returncode == 0, r
    objs = [json.loads(l) for l in r.stdout.splitlines()]
    assert {"api", "web"} <= {o["name"] for o in objs}
    assert [o["seq"] for o in objs] == sorted(o["seq"] for o in objs)
    assert {"name": "api", "stream": "stdout", "line": "api-up"}.items() <= \
        next(o for o in objs if o["name"] == "api").items()
    assert ctl(path, "logs", "-n", "0").stdout == ""
    # follow: the tail, then live lines, until the client goes
    p = subprocess.Popen([BINARY, "logs", "web", "-f", "-n", "1", "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        got = [p.stdout.readline() for _ in range(4)]
        nums = [int(l.strip().rsplit("-", 1)[1]) for l in got]
        assert nums == list(range(nums[0], nums[0] + 4)), got
    finally:
        p.kill()
        p.wait()
    # the server dropped the follower: status still answers
    assert ctl(path, "status").returncode == 0


def test_reload_answers_with_the_reload_result(fleet, sockdir):
    """The manifest unchanged: a check and a reload are both good and plan
    nothing (the edits and the refusals: test_ctl_reload.py)."""
    ms, path, sock = launch(fleet, sockdir)
    pids = {n: e["pid"] for n, e in status_of(path)[0].items()}
    nothing = {"restart": [], "why": {}, "start": [], "stop": [], "unchanged": ["web", "api", "db"],
               "swap": [], "needs_restart": []}
    code, body = curl(sock, "POST", "/v1/reload", {"check": True})
    assert (code, body) == (200, {"result": "checked", "problems": [], "plan": nothing}), body
    code, body = curl(sock, "POST", "/v1/reload", {})
    assert (code, body) == (200, {"result": "applied", "problems": [], "plan": nothing}), body
    r = ctl(path, "reload")
    assert (r.returncode, r.stdout, r.stderr) == (0, "unchanged: 3 entries\nnothing to change\n", ""), r
    r = ctl(path, "reload", "--check")
    assert (r.returncode, r.stdout, r.stderr) == (0, "unchanged: 3 entries\nnothing to change\n", ""), r
    assert ctl(path, "status", "--check").returncode == 2
    ms.event("control", msg=r"^uid 0 pid \d+: reload$")
    ms.event("control", msg=r"^uid 0 pid \d+: reload --check$")
    assert status_of(path)[1]["fleet"]["reloads"] == {"success": 2, "failure": 0}
    assert {n: e["pid"] for n, e in status_of(path)[0].items()} == pids
    code, body = curl(sock, "POST", "/v1/reload", {"check": "maybe"})
    assert code == 400


def test_drain_turns_ready_off(fleet, sockdir):
    port, metrics = free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        socket_dir = "{sockdir}"
        metrics_port = {metrics}
        [mothership.bind]
        http = "127.0.0.1:{port}"
        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", "while true; do sleep 0.1; done"]
        ready_after = "100ms"
    """, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=15)
    path = str(fleet.tmp / "ship-manifest.toml")
    assert http_get(metrics, "/ready")[0] == 200
    r = ctl(path, "drain")
    assert r.returncode == 0, r
    assert r.stdout.startswith("drained")
    assert http_get(metrics, "/ready")[0] == 503
    ms.event("control", msg=r"^uid 0 pid \d+: drain")
    code, body = curl(os.path.join(sockdir, "mothership.ctl"), "POST", "/v1/drain")
    assert code == 200 and body == {"action": "drain", "drained": True}
    assert ms.proc.poll() is None


def test_another_uid_is_refused(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    # the socket's mode keeps nobody out
    r = subprocess.run([*NOBODY, BINARY, "status", "--socket", sock], capture_output=True, text=True, timeout=15)
    assert r.returncode == 1, r
    assert r.stderr.startswith(f"mothership: cannot use the control socket {sock}: Permission denied"), r
    # and when the mode is opened up, the peer check still does
    os.chmod(sock, 0o666)
    code, body = curl(sock, "GET", "/v1/status", user=NOBODY)
    assert code == 403
    assert body["error"].startswith("refused: only root, uid 0")
    code, body = curl(sock, "POST", "/v1/entries/stop", {"names": ["web"]}, user=NOBODY)
    assert code == 403
    ms.event("control_refused", msg=r"^control socket: refused uid 65534 pid \d+")
    assert status_of(path)[0]["web"]["state"] == "ready"


def test_control_group_lets_members_in(fleet, sockdir):
    text = SHIPS.replace('socket_dir = "{sockdir}"', 'socket_dir = "{sockdir}"\ncontrol_group = "nogroup"')
    ms, path, sock = launch(fleet, sockdir, text)
    st = os.stat(sock)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 65534
    code, body = curl(sock, "GET", "/v1/status", user=NOBODY)
    assert code == 200 and len(body["entries"]) == 3


def test_not_running_is_exit_3(tmp_path, sockdir, manifest):
    path = manifest(SHIPS.format(sockdir=sockdir))
    r = run_ms("status", "-c", path)
    sock = os.path.join(sockdir, "mothership.ctl")
    assert r.code == 3, r
    assert r.err == f"mothership: no fleet is running (control socket {sock}: No such file or directory)\n"
    assert r.out == ""
    # a socket nobody answers on (left by a killed Mothership)
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    r = run_ms("restart", "web", "--socket", sock)
    assert r.code == 3, r
    assert r.err == f"mothership: no fleet is running (control socket {sock}: Connection refused)\n"
    # a manifest that does not load: its problems, exit 1
    bad = manifest("[[fleet.web]]\nname = 1\n", name="bad.toml")
    r = run_ms("status", "-c", bad)
    assert r.code == 1 and "bad.toml:" in r.err, r
    assert run_ms("restart", "--socket", sock).code == 2


def test_one_fleet_per_socket_and_cleanup(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    r = run_ms("run", "-c", path, timeout=20)
    assert r.code == 1, r
    assert f"another Mothership is running on the control socket {sock}; nothing was started" in r.out, r
    assert ctl(path, "status").returncode == 0
    assert ms.stop() == 0, ms.output()
    assert not os.path.exists(sock)
    # a stale socket is replaced
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    ms2 = fleet(SHIPS.format(sockdir=sockdir), name="ship-manifest.toml")
    ms2.wait_for(r"fleet ready", timeout=15)
    assert ctl(path, "status").returncode == 0


def test_control_group_must_exist(manifest):
    path = manifest('[mothership]\ncontrol_group = "no-such-group-xyz"\n\n'
                    '[[fleet.web]]\nname = "web"\ncommand = "true"\n')
    r = run_ms("clearance", "-c", path)
    assert r.code == 1, r
    assert r.err == (f'{path}:2:17: [mothership]: "control_group": no group is named '
                     '"no-such-group-xyz" on this host\n')


def raw(sock, data, shut=True):
    """Send bytes on a fresh connection; everything the server sends back."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def test_hostile_requests_get_clear_errors(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    before, _ = status_of(path)
    out = raw(sock, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b'{"error":"malformed HTTP request"}' in out
    out = raw(sock, b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    out = raw(sock, b"POST /v1/entries/stop HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 1000)
    assert out.startswith(b"HTTP/1.1 413 ")
    out = raw(sock, b"POST /v1/entries/stop HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"names\":")
    assert out.startswith(b"HTTP/1.1 400 ") and b"not JSON" in out
    # keep-alive: two requests on one connection, answered in order
    out = raw(sock, b"GET /v1/status HTTP/1.1\r\n\r\nPOST /v1/entries/stop HTTP/1.1\r\n"
                    b"Content-Length: 18\r\nConnection: close\r\n\r\n{\"names\": [\"zzz\"]}")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 404 Not Found\r\n" in out and b"Connection: close\r\n" in out
    # none of it reached the ships
    after, _ = status_of(path)
    assert {n: (e["pid"], e["state"]) for n, e in after.items()} == \
        {n: (e["pid"], e["state"]) for n, e in before.items()}
    msgs = [e["msg"] for e in ms.events("control")]
    assert len(msgs) == 1 and re.fullmatch(r'uid 0 pid \d+: stop: no entry is named "zzz"', msgs[0]), msgs


def test_a_follower_ends_when_the_fleet_stops(fleet, sockdir):
    ms, path, sock = launch(fleet, sockdir)
    p = subprocess.Popen([BINARY, "logs", "-f", "-n", "0", "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("web | web-line-")
        assert ms.stop() == 0, ms.output()
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not os.path.exists(sock)
