"""Bays that keep their clients across a restart (the docking protocol's
"resume" feature) through the real binary: 100 chat clients across
`mothership restart chat` and a kill -9 of the bay (all stay connected, are
members of the room again, per-client order kept), the "resumed" flag on
the wire (the Python bay), clients that arrive while the bay is away (they
wait, then are boarded), the handover_timeout (held clients closed with
1012), and a bay without the feature (1012 at once, as before)."""
import asyncio
import os
import re
import select
import signal
import subprocess
import threading

import websockets

from conftest import BINARY
from fleet_helpers import PY
from http_helpers import msum, wait_until
from test_bays import CHAT_BAY, ECHO_BAY, bay_toml, frame, raw_connect, read_frame, run, start, ws_url

PY_BAY = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bays", "python_bay.py")
RESTARTS = {"critical": False, "restart": {"backoff": "50ms"}}


def manifest_of(fleet):
    return str(fleet.tmp / f"ship-manifest-{fleet.n}.toml")


def ctl(fleet, *args):
    r = subprocess.run([BINARY, *args, "-c", manifest_of(fleet)], capture_output=True, text=True, timeout=30,
                       cwd=str(fleet.tmp))
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


def bay_pid(px, name):
    return int(re.search(r"\(pid (\d+)\)", px.ms.events("started", ship=name)[-1]["msg"]).group(1))


def metric(px, name, bay):
    return msum(px.metrics(), name, bay=bay)


def back(px, name, since, resumed):
    """Wait until the bay docked again after log line since, and the held
    clients were boarded again (resumed in all since the start)."""
    px.ms.event("ready", ship=name, start=since, timeout=20)
    wait_until(lambda: metric(px, "mothership_bay_resumed_total", name) == resumed, timeout=20,
               what=f"{resumed} resumed clients")
    assert metric(px, "mothership_bay_held_clients", name) == 0


async def chat_round(conns, tag, per_sender=2):
    """Every client sends per_sender messages; each client receives every
    message of the round once, each sender's in order."""
    n = len(conns)
    for k in range(per_sender):
        for i, ws in enumerate(conns):
            await ws.send(f"{tag}:{i}:{k}")

    async def collect(ws):
        return [await ws.recv() for _ in range(n * per_sender)]
    results = await asyncio.gather(*(collect(ws) for ws in conns))
    for got in results:
        assert sorted(got) == sorted(f"{tag}:{i}:{k}" for i in range(n) for k in range(per_sender))
        for i in range(n):
            mine = [int(x.rsplit(":", 1)[1]) for x in got if x.startswith(f"{tag}:{i}:")]
            assert mine == list(range(per_sender))


def test_100_chat_clients_stay_in_the_room_across_restart_and_kill_9(fleet):
    px = start(fleet, bay_toml("chat", CHAT_BAY, extra=RESTARTS))
    assert ", resume" in px.ms.events("ready", ship="chat")[0]["msg"]
    clients = 100

    async def go():
        conns = [await websockets.connect(ws_url(px), max_queue=None) for _ in range(clients)]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: wait_until(
            lambda: metric(px, "mothership_bay_clients", "chat") == clients, what="100 clients"))
        await chat_round(conns, "before")

        since = len(px.ms.lines)
        await loop.run_in_executor(None, lambda: ctl(fleet, "restart", "chat"))
        await loop.run_in_executor(None, lambda: back(px, "chat", since, clients))
        await chat_round(conns, "restarted")

        since = len(px.ms.lines)
        os.kill(bay_pid(px, "chat"), signal.SIGKILL)
        await loop.run_in_executor(None, lambda: back(px, "chat", since, 2 * clients))
        await chat_round(conns, "killed")

        for ws in conns:
            assert ws.close_code is None
            await ws.close()
    run(go(), timeout=120)
    m = px.metrics()
    assert msum(m, "mothership_bay_resumed_total", bay="chat") == 2 * clients
    assert msum(m, "mothership_bay_held_expired_total", bay="chat") == 0
    assert msum(m, "mothership_bay_redocks_total", bay="chat") == 2


def test_resumed_boarding_reaches_the_bay_and_clients_that_come_meanwhile_wait(fleet):
    px = start(fleet, bay_toml("py", PY, [PY_BAY], env={"DOCK_RESUME": "1"},
                               extra={"critical": False, "restart": {"backoff": "2s"}}))

    async def go():
        async with websockets.connect(ws_url(px)) as old:
            await old.send("one")
            assert await old.recv() == "one"
            since = len(px.ms.lines)
            os.kill(bay_pid(px, "py"), signal.SIGKILL)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: px.ms.event("exited", ship="py", start=since))
            await loop.run_in_executor(None, lambda: wait_until(
                lambda: metric(px, "mothership_bay_docked", "py") == 0, what="the bay away"))
            # the bay is away (restarting after its backoff): a new client
            # gets its handshake and waits instead of a 503
            async with websockets.connect(ws_url(px)) as new:
                await new.send("while away")
                await loop.run_in_executor(None, lambda: wait_until(
                    lambda: metric(px, "mothership_bay_held_clients", "py") == 2, what="both clients held"))
                assert await new.recv() == "while away"   # not "resumed": it is new to the bay
                assert await old.recv() == "resumed"      # the bay saw "resumed": true
                await old.send("two")
                assert await old.recv() == "two"
    run(go())
    m = px.metrics()
    assert msum(m, "mothership_bay_resumed_total", bay="py") == 1
    assert msum(m, "mothership_bay_rejected_total", bay="py") == 0


def test_held_clients_are_closed_with_1012_at_the_handover_timeout(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_RESUME": "1"},
                               extra={"critical": False, "handover_timeout": "1s"}))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: ctl(fleet, "stop", "echo"))
            # the bay is gone and does not come back: held, then closed
            # (held_expired_total below says it was held)
            try:
                await ws.recv()
                raise AssertionError("the held client got a message")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1012
    run(go())
    m = px.metrics()
    assert msum(m, "mothership_bay_held_expired_total", bay="echo") == 1
    assert msum(m, "mothership_bay_held_clients", bay="echo") == 0


def test_a_bay_without_resume_still_closes_its_clients_with_1012(fleet):
    px = start(fleet, bay_toml("chat", CHAT_BAY, env={"DOCK_RESUME": "0"}, extra=RESTARTS))
    assert ", resume" not in px.ms.events("ready", ship="chat")[0]["msg"]

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: ctl(fleet, "restart", "chat"))
            try:
                await ws.recv()
                raise AssertionError("the client got a message")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1012
    run(go())
    assert msum(px.metrics(), "mothership_bay_held_clients", bay="chat") == 0


def test_a_reload_that_changes_the_bay_keeps_its_clients_in_the_room(fleet):
    px = start(fleet, bay_toml("chat", CHAT_BAY, config={"greeting": "hello v1"}, extra=RESTARTS))

    async def go():
        async with websockets.connect(ws_url(px)) as a:
            assert await a.recv() == "hello v1"
            await a.send("a1")
            assert await a.recv() == "a1"
            path = manifest_of(fleet)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace("hello v1", "hello v2"))
            since = len(px.ms.lines)
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(None, lambda: ctl(fleet, "reload"))
            assert "restart: chat (config.greeting)" in out.splitlines(), out
            await loop.run_in_executor(None, lambda: back(px, "chat", since, 1))
            await a.send("a2")
            assert await a.recv() == "a2"          # back in the room, not greeted again
            async with websockets.connect(ws_url(px)) as b:
                assert await b.recv() == "hello v2"
                await a.send("a3")
                assert await a.recv() == "a3" and await b.recv() == "a3"
    run(go())
    assert msum(px.metrics(), "mothership_bay_resumed_total", bay="chat") == 1


def test_shutdown_closes_the_clients_of_a_resuming_bay_with_1001(fleet):
    px = start(fleet, bay_toml("chat", CHAT_BAY))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            px.ms.signal(signal.SIGTERM)
            try:
                await ws.recv()
                raise AssertionError("the client got a message")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1001
    run(go())
    assert px.ms.wait_exit() == 0


def test_a_held_client_is_not_read_and_flows_in_order_once_the_bay_is_back(fleet):
    """While held, nothing more is read from a client (its sends stall in
    the kernel's buffers instead of piling up in Mothership); once the bay
    is back every message reaches it, in order."""
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_RESUME": "1"}, extra={"critical": False}))
    s = raw_connect(px)
    s.sendall(frame(1, b"first"))
    assert read_frame(s) == (1, b"first")
    ctl(fleet, "stop", "echo")
    wait_until(lambda: metric(px, "mothership_bay_held_clients", "echo") == 1, what="the client held")

    pad = b"p" * 16376
    s.setblocking(False)
    n, sent, pending = 0, 0, b""
    while True:
        if not pending:
            pending = frame(1, b"%08d" % n + pad)
            n += 1
        try:
            k = s.send(pending)
        except BlockingIOError:
            # full: it stays full, since nobody reads the other end
            if not select.select([], [s], [], 0.5)[1]:
                break
            continue
        pending = pending[k:]
        sent += k
        assert sent < 64 << 20, "Mothership went on reading a held client"
    assert n > 1
    s.setblocking(True)
    s.settimeout(30)

    got = []

    def reader():
        while len(got) < n:
            got.append(read_frame(s))
    t = threading.Thread(target=reader)
    t.start()
    ctl(fleet, "start", "echo")
    s.sendall(pending)
    t.join(60)
    assert not t.is_alive()
    assert [op for op, _ in got] == [1] * n
    assert [int(p[:8]) for _, p in got] == list(range(n))
    assert metric(px, "mothership_bay_resumed_total", "echo") == 1


STALL_BAY = r'''
import json, os, sys, time
sys.path.insert(0, os.environ["PY_BAYS"])
from python_bay import *

path = os.environ["MS_SOCKET_PATH"]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(1)
link, _ = listener.accept()
send_json(link, DOCK, {"version": 1, "ship": "py", "features": ["resume"]})
assert read_frame(link)[0] == MOORED
if os.path.exists(os.environ["STALL"]):  # docked, then reads nothing more
    while True:
        time.sleep(60)
log = open(os.environ["LOG"], "a", buffering=1)
while True:
    frame = read_frame(link)
    if frame is None:
        sys.exit(0)
    ftype, payload = frame
    if ftype == BOARDING:
        log.write("%d boarding %d %d\n" % (os.getpid(), json.loads(payload)["conn_id"], len(payload)))
    elif ftype == CARGO and payload[4:].startswith(b"mark"):
        log.write("%d mark %d\n" % (os.getpid(), struct.unpack(">I", payload[:4])[0]))
'''


def test_a_boarding_still_pending_when_the_bay_goes_again_is_sent_once(fleet, tmp_path):
    """Held clients with big messages read before the hold are boarded on a
    bay that docks and then reads nothing: the bay's queue fills while
    their Boardings go, so the last ones wait in their pending frames. That
    bay goes too; the next one gets every client's Boarding exactly once."""
    script, stall, log = tmp_path / "stall_bay.py", tmp_path / "stall", tmp_path / "boardings.log"
    script.write_text(STALL_BAY)
    env = {"PY_BAYS": os.path.dirname(PY_BAY), "STALL": str(stall), "LOG": str(log)}
    px = start(fleet, bay_toml("py", PY, [str(script)], env=env, extra=RESTARTS),
               http={"ws_max_message_size": "5MiB"})
    clients = 12
    socks = [raw_connect(px) for _ in range(clients)]
    wait_until(lambda: metric(px, "mothership_bay_clients", "py") == clients, what="the clients boarded")
    wait_until(lambda: log.exists() and log.read_text().count("boarding") == clients, what="the Boardings at the bay")

    # the bay stops reading: the clients' big messages fill its queue,
    # then wait in the clients' pending frames
    os.kill(bay_pid(px, "py"), signal.SIGSTOP)
    # a held client's Boarding (resumed: 15 bytes more) and its message
    # cost 4 MiB less a few bytes in the bay's queue (messages: 32 bytes of
    # header; Boarding and Cargo frames: 5 and 9): two clients fill its
    # 8 MiB but for less than a Boarding, so the third one's waits
    boarding = max(int(ln.split()[3]) for ln in log.read_text().splitlines()) + 15 + 5 + 32
    big = b"x" * ((4 << 20) - boarding - 40 - 9 - 32)
    pending = []
    for s in socks:  # each sends until Mothership no longer reads it
        s.setblocking(False)
        left, sent = b"", 0
        while True:
            if not left:
                left = frame(1, big)
            try:
                k = s.send(left)
            except BlockingIOError:
                if not select.select([], [s], [], 0.5)[1]:
                    break
                continue
            left, sent = left[k:], sent + k
            assert sent < 64 << 20, "Mothership went on reading a client of a bay that does not read"
        pending.append(left)

    stall.write_text("")
    since = len(px.ms.lines)
    os.kill(bay_pid(px, "py"), signal.SIGKILL)
    px.ms.event("ready", ship="py", start=since, timeout=20)
    wait_until(lambda: metric(px, "mothership_bay_held_clients", "py") == 0, what="boarded on the stalled bay")

    stall.unlink()
    since = len(px.ms.lines)
    os.kill(bay_pid(px, "py"), signal.SIGKILL)
    px.ms.event("ready", ship="py", start=since, timeout=20)
    wait_until(lambda: metric(px, "mothership_bay_held_clients", "py") == 0, what="boarded on the last bay")
    for i, s in enumerate(socks):
        s.setblocking(True)
        s.settimeout(30)
        s.sendall(pending[i] + frame(1, b"mark%d" % i))
    wait_until(lambda: log.exists() and log.read_text().count("mark ") == clients, timeout=30,
               what="every client's mark at the last bay")
    last = str(bay_pid(px, "py"))
    lines = [ln.split() for ln in log.read_text().splitlines()]
    boardings = [int(ln[2]) for ln in lines if ln[0] == last and ln[1] == "boarding"]
    assert sorted(boardings) == sorted(set(boardings)), "a client boarded twice"
    assert len(boardings) == clients
