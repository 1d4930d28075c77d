"""Hostile clients against the zero-downtime paths, through the real binary:
requests held while a ship restarts in place, and what reaches the ship."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BINARY
from fleet_helpers import PY, app, free_port, http_get, parse_metrics, toml_str
from http_helpers import Raw, fd_count, recv_to_eof, wait_until
from fleet_helpers import free_port_run

RECORDER = app("recording_backend.py")


def ctl(manifest_path, *args, timeout=30):
    return subprocess.run([BINARY, *args, "-c", manifest_path], capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(manifest_path))


def held_fleet(fleet, tmp_path, delay="4", extra="", http="upstream_keepalive = 2", h2c=False):
    """One recording ship (no second address: a restart holds requests)
    whose every start after the first takes `delay` seconds to listen."""
    port, hport, mport = free_port(), free_port(), free_port()
    events = tmp_path / "events.jsonl"
    marker = tmp_path / "started"
    script = (f"if [ -e {marker} ]; then sleep {delay}; fi; : > {marker}; "
              f"exec {PY} {RECORDER} --port {port} --events {events}")
    sockdir = tempfile.mkdtemp(prefix="msatk-", dir="/tmp")
    text = f"""
        [mothership]
        socket_dir = {toml_str(sockdir)}
        shutdown_timeout = "10s"
        metrics_port = {mport}
        {extra}

        [mothership.http]
        {http}

        [mothership.bind]
        http = {{ address = "127.0.0.1:{hport}", h2c = {"true" if h2c else "false"} }}

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
    ms.mport = mport
    return ms, str(fleet.tmp / "ship-manifest.toml"), hport, events


def in_flight(mport):
    """mothership_upstream_in_flight summed over every instance."""
    status, body = http_get(mport, "/metrics")
    assert status == 200, body
    return sum(v for (name, _), v in parse_metrics(body).items() if name == "mothership_upstream_in_flight")


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
    wait_until(lambda: in_flight(ms.mport) == 0, what="nothing in flight")


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


def test_a_flood_of_requests_while_held_is_bounded_and_each_reaches_the_ship_once(fleet, tmp_path):
    """3000 requests while the ship restarts: each gets an answer (200 once
    it is back, or 503 with Retry-After when the hold queue is full), the
    ship sees exactly the ones answered 200, once each, and the proxy's
    fds go back down."""
    ms, path, hport, events = held_fleet(fleet, tmp_path, delay="3")
    base = fd_count(ms.pid)
    roll = start_roll(path)
    n = 3000
    socks = []
    try:
        wait_holding(hport, events)
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", hport))
            s.sendall(b"GET /flood-%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % i)
            socks.append(s)
        status = {}
        for i, s in enumerate(socks):
            s.settimeout(20)
            data = recv_to_eof(s)
            head = data.split(b"\r\n\r\n", 1)[0]
            code = int(head.split(b" ", 2)[1]) if head else 0
            if code == 503:
                assert b"Retry-After" in head, head
            status[i] = code
            s.close()
    finally:
        for s in socks:
            s.close()
        assert roll.wait(30) == 0, roll.communicate()
    assert set(status.values()) <= {200, 503}, {c for c in status.values()}
    ok = {f"/flood-{i}" for i, c in status.items() if c == 200}
    assert ok, "none was held"
    got = [h["target"] for h in heads(events) if h["target"].startswith("/flood-")]
    assert sorted(got) == sorted(ok)
    # what may stay: a few idle pooled connections to the ship per worker
    wait_until(lambda: fd_count(ms.pid) <= base + 16, timeout=5, what="fds back down")
    wait_until(lambda: in_flight(ms.mport) == 0, what="nothing in flight")


RESETTER = """
import json, socket, struct, sys
port, events = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
out = open(events, "a", buffering=1)
while True:
    c, _ = srv.accept()
    buf = b""
    c.settimeout(2)
    try:
        while b"\\r\\n\\r\\n" not in buf:
            d = c.recv(65536)
            if not d:
                break
            buf += d
    except OSError:
        pass
    if buf:
        line = buf.split(b"\\r\\n", 1)[0].decode("latin-1").split(" ")
        out.write(json.dumps({"ev": "head", "method": line[0], "target": line[1]}) + "\\n")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"""


def test_a_request_with_a_body_never_reaches_two_instances(fleet, tmp_path):
    """Three instances, one of which accepts, reads the request and resets:
    a POST with a body that went to it gets a 502 and reaches no other
    instance; a GET that went to it is retried on another and gets 200."""
    base_port, hport, mport = free_port_run(6), free_port(), free_port()
    resetter = tmp_path / "resetter.py"
    resetter.write_text(RESETTER)
    ev = tmp_path / "ev-{instance}.jsonl"
    script = (f'if [ "$MS_INSTANCE" = 0 ]; then exec {PY} {resetter} {{port}} {ev}; fi; '
              f"exec {PY} {RECORDER} --port {{port}} --events {ev}")
    sockdir = tempfile.mkdtemp(prefix="msatk-", dir="/tmp")
    text = f"""
        [mothership]
        socket_dir = {toml_str(sockdir)}
        metrics_port = {mport}

        [mothership.http]
        eject_cooldown = "0s"

        [mothership.bind]
        http = "127.0.0.1:{hport}"

        [[fleet.web]]
        name = "web"
        command = "sh"
        args = ["-c", {toml_str(script)}]
        instances = 3
        port = {base_port}
        bind = "tcp://127.0.0.1:{{port}}"
        routes = ["http:/.*"]
        critical = false
    """
    ms = fleet(text, name="ship-manifest.toml")
    ms.wait_for(r"fleet ready", timeout=20)
    codes = {}
    for i in range(12):
        for method, body in (("POST", b"x" * 1000), ("GET", b"")):
            target = f"/{method.lower()}-{i}"
            with Raw(hport, timeout=10) as r:
                hdr = f"{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                if body:
                    hdr += f"Content-Length: {len(body)}\r\n"
                r.send(hdr.encode() + b"\r\n" + body)
                codes[target] = r.response().status
    seen = {}
    for k in range(3):
        for h in heads(str(tmp_path / f"ev-{k}.jsonl")):
            seen.setdefault(h["target"], []).append(k)
    for target, code in codes.items():
        where = seen.get(target, [])
        if target.startswith("/post-"):
            assert len(where) == 1, (target, code, where)
            assert code == (502 if where == [0] else 200), (target, code, where)
        else:
            assert code == 200, (target, code, where)
            assert where in ([1], [2], [0, 1], [0, 2]), (target, where)
    assert any(w == [0] for t, w in seen.items() if t.startswith("/post-")), (seen, codes)
    wait_until(lambda: in_flight(mport) == 0, what="nothing in flight")


def test_requests_with_a_body_are_balanced_over_every_instance(fleet, tmp_path):
    """Round robin over two instances with only POSTs (bodies read whole
    first, the default): both instances get some. The choice must be made
    once per request, not again when the body is in."""
    base_port, hport = free_port_run(6), free_port()
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


def test_http2_streams_held_then_sent_or_let_go(fleet, tmp_path):
    """HTTP/2 streams held while the ship restarts: a POST with its body
    goes once the ship is back (once); a stream the client resets while
    held, and the streams of a connection that goes, never reach it."""
    from hyperframe.frame import DataFrame, RstStreamFrame
    from test_h2 import H2
    ms, path, hport, events = held_fleet(fleet, tmp_path, delay="3", h2c=True)
    roll = start_roll(path)
    try:
        wait_holding(hport, events)
        gone = H2(hport)
        for sid in (1, 3, 5):
            gone.request(sid, f"/h2-gone-{sid}")
        h = H2(hport)
        h.request(1, "/h2-post", method="POST", extra=[("content-length", "5")], end_stream=False)
        h.send(DataFrame(1, data=b"hello", flags=["END_STREAM"]))
        h.request(3, "/h2-reset")
        time.sleep(0.3)
        h.send(RstStreamFrame(3, error_code=0x8))
        gone.close()
        status, _, body, how = h.response(1, timeout=20)
        assert (status, how) == (200, "end"), (status, body, how)
        h.close()
    finally:
        assert roll.wait(30) == 0, roll.communicate()
    got = [x["target"] for x in heads(events)]
    assert got.count("/h2-post") == 1, got
    assert not [t for t in got if t.startswith("/h2-gone") or t == "/h2-reset"], got


HALF_FRAME_BAY = """
import os, struct, sys
sys.path.insert(0, sys.argv[1])
import python_bay as pb
marker = sys.argv[2]
echo = pb.send_cargo


def send_cargo(sock, conn_id, data, binary=False):
    if data == b"die" and not os.path.exists(marker):
        open(marker, "w").close()
        sock.sendall(struct.pack(">BI", pb.CARGO, 100) + b"\\0\\0")  # killed while writing a frame
        os._exit(1)
    echo(sock, conn_id, data, binary)


pb.send_cargo = send_cargo
pb.main()
"""


def test_a_resuming_bay_killed_in_the_middle_of_a_frame_keeps_its_clients(fleet, tmp_path):
    """A bay that agreed to resume and dies while writing a frame to the
    link (kill -9 under load does that) went away like any crash: its
    clients are held and boarded again, not closed."""
    import asyncio

    import websockets
    from test_bay_resume import PY_BAY, RESTARTS, metric
    from test_bays import bay_toml, run, start, ws_url
    script = tmp_path / "half_frame_bay.py"
    script.write_text(HALF_FRAME_BAY)
    px = start(fleet, bay_toml("py", PY, [str(script), os.path.dirname(os.path.abspath(PY_BAY)),
                                          str(tmp_path / "died")],
                               env={"DOCK_RESUME": "1"}, extra=RESTARTS))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.send("die")
            assert await asyncio.wait_for(ws.recv(), 15) == "resumed"
            await ws.send("two")
            assert await ws.recv() == "two"
    run(go())
    assert metric(px, "mothership_bay_resumed_total", "py") == 1


def test_shutdown_while_requests_are_held_answers_them_and_exits(fleet, tmp_path):
    """SIGTERM while requests wait for a ship restarting in place: each
    held client gets an answer (503) well before shutdown_timeout, the
    ship never sees them, and Mothership exits."""
    ms, path, hport, events = held_fleet(fleet, tmp_path, delay="30")
    roll = start_roll(path)
    socks = []
    try:
        wait_holding(hport, events)
        for i in range(5):
            s = socket.create_connection(("127.0.0.1", hport))
            s.sendall(b"GET /held-%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % i)
            socks.append(s)
        time.sleep(0.2)
        t0 = time.monotonic()
        ms.signal(signal.SIGTERM)
        for s in socks:
            s.settimeout(8)
            data = recv_to_eof(s)
            assert data.startswith(b"HTTP/1.1 503"), data[:200]
        assert time.monotonic() - t0 < 8
        ms.wait_exit(12)
    finally:
        for s in socks:
            s.close()
        roll.wait(30)
    assert not [h for h in heads(events) if h["target"].startswith("/held-")]


def test_shutdown_while_websocket_clients_are_held_or_waiting_closes_them(fleet, tmp_path):
    """SIGTERM while a resuming bay is away, with a client held and one
    waiting: both get a close frame (1001, going away) at once and
    Mothership exits; nothing waits for handover_timeout."""
    import asyncio

    import websockets
    from test_bay_resume import ctl as bay_ctl, metric
    from test_bays import ECHO_BAY, bay_toml, run, start, ws_url
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_RESUME": "1"},
                               extra={"critical": False, "handover_timeout": "60s"}),
               mothership={"shutdown_timeout": "20s"})

    async def go():
        async with websockets.connect(ws_url(px)) as held:
            await held.send("x")
            assert await held.recv() == "x"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: bay_ctl(fleet, "stop", "echo"))
            async with websockets.connect(ws_url(px)) as waiting:
                await loop.run_in_executor(None, lambda: wait_until(
                    lambda: metric(px, "mothership_bay_held_clients", "echo") == 2, what="both held"))
                t0 = time.monotonic()
                px.ms.signal(signal.SIGTERM)
                for ws in (held, waiting):
                    try:
                        await asyncio.wait_for(ws.recv(), 8)
                        raise AssertionError("a held client got a message")
                    except websockets.ConnectionClosed as e:
                        assert e.rcvd is not None and e.rcvd.code == 1001, e
                assert time.monotonic() - t0 < 8
    run(go())
    px.ms.wait_exit(15)


STALLING_BAY = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import python_bay as pb
runs, log = sys.argv[2], sys.argv[3]
with open(runs, "a") as f:
    f.write("x")
run = os.path.getsize(runs)
path = os.environ["MS_SOCKET_PATH"]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
import socket
lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lst.bind(path)
lst.listen(1)
link, _ = lst.accept()
pb.send_json(link, pb.DOCK, {"version": 1, "ship": os.environ["MS_SHIP"], "features": ["resume"]})
assert pb.read_frame(link)[0] == pb.MOORED
if run == 2:
    time.sleep(3600)  # docked, reads nothing
while True:
    fr = pb.read_frame(link)
    if fr is None:
        sys.exit(0)
    t, payload = fr
    if t == pb.BOARDING and run >= 3:
        b = json.loads(payload)
        with open(log, "a") as f:
            f.write(json.dumps({"conn_id": b["conn_id"], "resumed": b.get("resumed", False)}) + "\\n")
    if t == pb.CARGO and payload[4:] == b"stall":
        time.sleep(3600)  # reads nothing more
    if t == pb.CARGO and run >= 3:
        pb.send_cargo(link, int.from_bytes(payload[:4], "big"), payload[4:])
"""


def test_a_bay_that_goes_again_before_taking_the_boardings_gets_each_once(fleet, tmp_path):
    """A resuming bay docks again, reads nothing (its link filling with the
    held clients' Boardings and messages) and goes again; when it is back
    for good, each client is boarded once and every client flows again."""
    import asyncio

    import websockets
    from test_bay_resume import PY_BAY, bay_pid, metric
    from test_bays import bay_toml, run, start, ws_url
    script = tmp_path / "stalling_bay.py"
    script.write_text(STALLING_BAY)
    log = tmp_path / "boardings.jsonl"
    px = start(fleet, bay_toml("st", PY, [str(script), os.path.dirname(os.path.abspath(PY_BAY)),
                                          str(tmp_path / "runs"), str(log)],
                               extra={"critical": False, "restart": {"backoff": "50ms"},
                                      "handover_timeout": "60s"}),
               http={"ws_max_message_size": "2MiB"})
    n = 24

    async def go():
        loop = asyncio.get_running_loop()
        conns = [await websockets.connect(ws_url(px), max_size=None) for _ in range(n)]
        await conns[0].send("stall")
        big = "m" * (1 << 20)
        for ws in conns:  # 24 MiB: more than the link and its queue take
            await ws.send(big)
        await asyncio.sleep(1)
        for k in (1, 2):
            since = len(px.ms.lines)
            os.kill(bay_pid(px, "st"), signal.SIGKILL)
            await loop.run_in_executor(None, lambda: px.ms.event("ready", ship="st", start=since, timeout=20))
            await asyncio.sleep(1)
        await loop.run_in_executor(None, lambda: wait_until(
            lambda: os.path.exists(log) and len(open(log).read().splitlines()) >= n, timeout=20,
            what="every client boarded"))
        for i, ws in enumerate(conns):
            await ws.send(f"after-{i}")
            while (m := await asyncio.wait_for(ws.recv(), 10)) != f"after-{i}":
                assert m == big
        for ws in conns:
            await ws.close()
    run(go(), timeout=90)
    got = [json.loads(x)["conn_id"] for x in open(log).read().splitlines()]
    assert sorted(got) == sorted(set(got)), sorted(got)
    assert len(got) == n
    assert metric(px, "mothership_bay_held_clients", "st") == 0


def test_many_held_and_waiting_clients_at_the_handover_timeout(fleet, tmp_path):
    """150 held clients (one sending while held) and 50 waiting ones when a
    resuming bay does not come back: at handover_timeout every one is
    closed with 1012, the gauges go back to 0 and so do the fds."""
    import asyncio

    import websockets
    from test_bay_resume import ctl as bay_ctl, metric
    from test_bays import ECHO_BAY, bay_toml, run, start, ws_url
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_RESUME": "1"},
                               extra={"critical": False, "handover_timeout": "2s"}))
    base = px.fds()

    async def go():
        loop = asyncio.get_running_loop()
        held = [await websockets.connect(ws_url(px)) for _ in range(150)]
        await loop.run_in_executor(None, lambda: wait_until(
            lambda: metric(px, "mothership_bay_clients", "echo") == 150, what="150 clients"))
        await loop.run_in_executor(None, lambda: bay_ctl(fleet, "stop", "echo"))
        waiting = [await websockets.connect(ws_url(px)) for _ in range(50)]
        for _ in range(50):
            await held[0].send("x" * 60000)  # sent while held: not read, not buffered
        codes = []
        for ws in held + waiting:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as e:
                codes.append(e.rcvd.code if e.rcvd else None)
        assert codes == [1012] * 200, codes
    run(go(), timeout=60)
    wait_until(lambda: metric(px, "mothership_bay_held_clients", "echo") == 0, what="no held client")
    assert metric(px, "mothership_bay_held_expired_total", "echo") == 200
    wait_until(lambda: px.fds() <= base + 2, what="fds back")


RESUME_ONCE_BAY = """
import os, sys
sys.path.insert(0, sys.argv[1])
import python_bay as pb
with open(sys.argv[2], "a") as f:
    f.write("x")
os.environ["DOCK_RESUME"] = "1" if os.path.getsize(sys.argv[2]) == 1 else "0"
pb.main()
"""


def test_a_bay_that_docks_again_without_resume(fleet, tmp_path):
    """A bay that resumed goes away and docks again without the feature:
    its held clients are closed with 1012, a client that waited is boarded
    as a new one and talks to it, and nothing is left held."""
    import asyncio

    import websockets
    from test_bay_resume import PY_BAY, bay_pid, metric
    from test_bays import bay_toml, run, start, ws_url
    script = tmp_path / "resume_once_bay.py"
    script.write_text(RESUME_ONCE_BAY)
    px = start(fleet, bay_toml("py", PY, [str(script), os.path.dirname(os.path.abspath(PY_BAY)),
                                          str(tmp_path / "runs")],
                               extra={"critical": False, "restart": {"backoff": "1s"}}))

    async def go():
        loop = asyncio.get_running_loop()
        async with websockets.connect(ws_url(px)) as old:
            await old.send("one")
            assert await old.recv() == "one"
            since = len(px.ms.lines)
            os.kill(bay_pid(px, "py"), signal.SIGKILL)
            await loop.run_in_executor(None, lambda: px.ms.event("exited", ship="py", start=since))
            async with websockets.connect(ws_url(px)) as new:
                await new.send("while away")
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await asyncio.wait_for(old.recv(), 15)
                assert e.value.rcvd.code == 1012
                assert await asyncio.wait_for(new.recv(), 15) == "while away"
                await new.send("two")
                assert await new.recv() == "two"
    run(go())
    assert metric(px, "mothership_bay_held_clients", "py") == 0
    assert metric(px, "mothership_bay_resumed_total", "py") == 0


@pytest.mark.parametrize("buffering", [True, False])
def test_a_held_post_with_a_large_body_reaches_the_ship_whole(fleet, tmp_path, buffering):
    """A POST of 2 MiB sent while the ship restarts (the client's writes
    stall once the proxy stops reading): once the ship is back the body
    reaches it whole, once, buffered or streamed."""
    import hashlib
    ms, path, hport, events = held_fleet(fleet, tmp_path, delay="2",
                                         http=f"upstream_keepalive = 2\nrequest_buffering = {str(buffering).lower()}")
    body = os.urandom(2 << 20)
    roll = start_roll(path)
    try:
        wait_holding(hport, events)
        s = socket.create_connection(("127.0.0.1", hport))
        s.settimeout(20)
        s.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        data = recv_to_eof(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:300]
    finally:
        assert roll.wait(30) == 0, roll.communicate()
    got = [e for e in map(json.loads, open(events)) if e["ev"] == "body" and e["len"]]  # probes have none
    assert [(g["len"], g["sha256"]) for g in got] == [(len(body), hashlib.sha256(body).hexdigest())], got
