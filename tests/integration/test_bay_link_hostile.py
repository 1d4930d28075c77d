"""A WebSocket bay's docking link, read on its home worker and written by
every worker, against a hostile bay (tests/integration/apps/hostile_bay.py)
and hostile clients, with one worker and two: garbage or a huge frame in
the hand-over to the worker, a bay that stops reading, frames larger than
the socket buffer from many clients at once (the bay checks each client's
stream whole and in order), a kill -9 under traffic with resume."""
import json
import os
import signal
import socket
import struct
import threading
import time

import pytest

from fleet_helpers import PY, app, rss_kib
from http_helpers import msum, wait_until
from test_bay_resume import bay_pid
from test_bays import ECHO_BAY, bay_toml, frame, raw_connect, read_frame, read_until_close, start

HOSTILE = app("hostile_bay.py")
RESTARTS = {"critical": False, "restart": {"backoff": "50ms"}}


def hostile(tmp_path, mode, features=None, name="h", extra=RESTARTS, routes=("http:/ws.*",)):
    log = tmp_path / f"{name}.jsonl"
    env = {"HOSTILE_MODE": mode}
    if features:
        env["PROBE_FEATURES"] = features
    return bay_toml(name, PY, [HOSTILE, str(log)], routes=routes, env=env, extra=extra), log


def entries(log):
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def kill_bay_h(px, times, pause):
    """SIGKILL bay h `times` times, each time waiting for it to be ready again
    and then `pause` seconds more."""
    for _ in range(times):
        since = len(px.ms.events())
        os.kill(bay_pid(px, "h"), signal.SIGKILL)
        px.ms.event("ready", ship="h", start=since, timeout=20)
        time.sleep(pause)


def violations(log):
    return [e for e in entries(log) if "violation" in e or "error" in e]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode,why", [
    ("garbage_with_dock", "unknown frame type 0x7f"),
    ("huge_with_dock", "exceeds the maximum"),
    ("garbage_after_moored", "unknown frame type 0x7f"),
    ("half_with_dock", "inside a frame"),
])
def test_a_bad_frame_in_the_hand_over_fails_the_link_and_it_docks_again(fleet, tmp_path, workers, mode, why):
    toml, log = hostile(tmp_path, mode)
    px = start(fleet, toml, mothership={"workers": workers}, wait=False)
    failed = px.ms.event("link_failed", ship="h", timeout=15)
    assert why in failed["msg"], failed
    # it is restarted, docks and fails again: Mothership goes on
    px.ms.event("link_failed", ship="h", start=failed["_i"] + 1, timeout=15)
    assert msum(px.metrics(), "mothership_bay_protocol_errors_total", bay="h") >= 2
    assert px.ms.proc.poll() is None


def pump_until_blocked(s, payload, limit_s):
    """Send frames until the socket stops taking them for 1 s (or limit_s
    passes): the bytes sent and whether it blocked."""
    s.settimeout(1.0)
    sent, t0 = 0, time.monotonic()
    data = frame(1, payload)
    while time.monotonic() - t0 < limit_s:
        try:
            s.sendall(data)
        except socket.timeout:
            return sent, True
        sent += len(data)
    return sent, False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bay_that_stops_reading_pushes_back_on_its_clients_and_blocks_nobody_else(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "noread")
    px = start(fleet, toml, bay_toml("echo", ECHO_BAY, routes=("http:/echo.*",)), mothership={"workers": workers})
    wait_until(lambda: any(e.get("noread") for e in entries(log)), timeout=10, what="the bay docked")
    base = rss_kib(px.ms.pid)
    clients = [raw_connect(px) for _ in range(8)]
    results = [None] * len(clients)

    def flood(i):
        results[i] = pump_until_blocked(clients[i], b"%d:" % i + b"x" * 65000, 30)
    threads = [threading.Thread(target=flood, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    # meanwhile the other bay's clients, on the same workers, are served
    for k in range(20):
        e = raw_connect(px, "/echo")
        e.settimeout(5)
        e.sendall(frame(1, b"still here %d" % k))
        assert read_frame(e) == (1, b"still here %d" % k)
        e.close()
    for t in threads:
        t.join()
    assert all(blocked for _, blocked in results), results
    grown = rss_kib(px.ms.pid) - base
    assert grown < 64 * 1024, f"Mothership grew by {grown} KiB for a bay that does not read"
    assert px.ms.proc.poll() is None
    for s in clients:
        s.close()


def stream_client(px, tag, count, size, out):
    """Send count frames "TAG:SEQ" padded to about size bytes while reading
    the echoes on another thread: out[tag] = (echoed seqs, close code)."""
    s = raw_connect(px)
    got = []
    done = threading.Event()

    def reader():
        s.settimeout(30)
        try:
            while len(got) < count:
                op, p = read_frame(s)
                if op == 8:
                    out[tag] = (got, struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None)
                    return
                t, seq = p.decode().rsplit(":", 1)
                assert t.rstrip("x") == tag, (t[:40], tag)
                got.append(int(seq))
            out[tag] = (got, None)
        except Exception as e:  # noqa
            out[tag] = (got, repr(e))
        finally:
            done.set()
    th = threading.Thread(target=reader)
    th.start()
    try:
        for k in range(count):
            pad = "x" * (size - len(tag)) if size > len(tag) else ""
            s.sendall(frame(1, f"{tag}{pad}:{k}".encode()))
    except OSError:
        pass
    th.join(60)
    s.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_large_frames_from_many_clients_reach_the_bay_whole_and_in_order(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "verify")
    px = start(fleet, toml, mothership={"workers": workers})
    out = {}
    sizes = [10, 3000, 70000, 300000]  # over the socket's buffer: partial writes
    threads = [threading.Thread(target=stream_client, args=(px, f"c{i}", 40, sizes[i % len(sizes)], out))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 16
    for tag, (got, err) in out.items():
        assert err is None and got == list(range(40)), (tag, got[:5], len(got), err)
    assert violations(log) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_a_resuming_bay_killed_under_traffic_loses_nothing_it_answered_and_mixes_nothing(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "verify", features="resume")
    px = start(fleet, toml, mothership={"workers": workers})
    out = {}
    stop = threading.Event()

    def client(tag):
        """One message at a time; one the killed bay never read is lost (the
        docking protocol, section 12): after 5 s without its echo the next
        goes. Echoes: its own, each once, in order."""
        s = raw_connect(px)
        s.settimeout(5)
        got, k, late = [], 0, 0
        try:
            while not stop.is_set():
                s.sendall(frame(1, f"{tag}:{k}".encode()))
                k += 1
                try:
                    op, p = read_frame(s)
                except socket.timeout:
                    late += 1
                    continue
                if op == 8:
                    out[tag] = (got, struct.unpack(">H", p[:2])[0], late)
                    return
                t, seq = p.decode().rsplit(":", 1)
                assert t == tag
                got.append(int(seq))
            out[tag] = (got, None, late)
        except Exception as e:  # noqa
            out[tag] = (got, repr(e), late)
        finally:
            s.close()
    threads = [threading.Thread(target=client, args=(f"c{i}",)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    kill_bay_h(px, 2, pause=0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(out) == 20
    for tag, (got, err, late) in out.items():
        assert err is None and got == sorted(set(got)) and len(got) > 10, (tag, len(got), err, late)
        assert late <= 2, (tag, late)  # at most one lost per kill
    assert violations(log) == []


async def echo_until_closed(url, tag, got, codes, window=4):
    """Keep window messages "TAG:SEQ" in flight until the connection closes:
    the echoes must be this client's, each once, in order."""
    import websockets
    async with websockets.connect(url, max_queue=None) as ws:
        k = 0
        try:
            for _ in range(window):
                await ws.send(f"{tag}:{k}")
                k += 1
            while True:
                m = await ws.recv()
                t, seq = m.rsplit(":", 1)
                assert t == tag, (t, tag)
                got.append(int(seq))
                await ws.send(f"{tag}:{k}")
                k += 1
        except websockets.ConnectionClosed as e:
            codes[tag] = e.rcvd.code if e.rcvd else None


def run_clients(px, n, action, path="/ws"):
    import asyncio
    from test_bays import ws_url

    got = {f"c{i}": [] for i in range(n)}
    codes = {}

    async def go():
        tasks = [asyncio.create_task(echo_until_closed(ws_url(px, path), t, got[t], codes)) for t in got]
        await asyncio.sleep(1.0)
        await asyncio.get_running_loop().run_in_executor(None, action)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    asyncio.run(go())
    for t, g in got.items():
        assert g == list(range(len(g))) and len(g) > 0, (t, len(g), g[:5])
    return codes


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("how", ["remove", "rename"])
def test_a_reload_that_removes_the_bay_under_200_sending_clients_closes_them_with_1001(fleet, workers, how):
    from test_bay_resume import ctl, manifest_of
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_RESUME": "1"}, extra=RESTARTS),
               bay_toml("other", ECHO_BAY, routes=("http:/other.*",)), mothership={"workers": workers})

    def reload():
        path = manifest_of(fleet)
        text = open(path).read()
        head, rest = text.split("[[bays.websocket]]\nname = \"echo\"", 1)
        rest = rest.split("[[bays.websocket]]", 1)[1]
        new = head + "[[bays.websocket]]" + rest
        if how == "rename":
            new += "\n" + bay_toml("echo2", ECHO_BAY, extra=RESTARTS)
        open(path, "w").write(new)
        ctl(fleet, "reload")
    codes = run_clients(px, 200, reload)
    assert len(codes) == 200 and set(codes.values()) == {1001}, {c for c in codes.values()}
    assert px.ms.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_under_traffic_closes_every_client_with_1001(fleet, workers):
    px = start(fleet, bay_toml("echo", ECHO_BAY), mothership={"workers": workers})
    codes = run_clients(px, 100, lambda: px.ms.signal(signal.SIGTERM))
    assert len(codes) == 100 and set(codes.values()) == {1001}, {c for c in codes.values()}
    assert px.ms.wait_exit(15) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_clients_that_never_read_do_not_stall_the_others(fleet, workers):
    px = start(fleet, bay_toml("echo", ECHO_BAY), mothership={"workers": workers})
    hogs = [raw_connect(px, rcvbuf=4096) for _ in range(6)]
    stop = threading.Event()
    hog_codes = []

    def hog(s):
        data = frame(2, b"h" * 60000)
        try:
            while not stop.is_set():
                s.sendall(data)  # blocks once Mothership stops reading it
        except OSError as ex:
            hog_codes.append(type(ex).__name__)  # Mothership closed it
    threads = [threading.Thread(target=hog, args=(s,)) for s in hogs]
    for t in threads:
        t.start()
    try:
        for k in range(200):
            e = raw_connect(px)
            e.settimeout(5)
            e.sendall(frame(1, b"m%d" % k))
            assert read_frame(e) == (1, b"m%d" % k)
            e.sendall(frame(8, b"\x03\xe8"))
            assert read_until_close(e)[0] == 1000
            e.close()
        wait_until(lambda: len(hog_codes) == len(hogs), timeout=20, what="the hogs closed")
    finally:
        stop.set()
        for s in hogs:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        for t in threads:
            t.join()
        for s in hogs:
            s.close()
    assert px.ms.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_clients_connecting_and_closing_in_a_loop_while_the_bay_echoes(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "verify")
    px = start(fleet, toml, mothership={"workers": workers})
    out = {}
    steady = [threading.Thread(target=stream_client, args=(px, f"s{i}", 300, 2000, out)) for i in range(4)]
    for t in steady:
        t.start()

    def churn(j):
        for k in range(60):
            s = raw_connect(px)
            s.settimeout(10)
            tag = f"x{j}_{k}"
            n = k % 4
            for q in range(n):
                s.sendall(frame(1, f"{tag}:{q}".encode()))
            if k % 3 == 0:
                for q in range(n):
                    assert read_frame(s) == (1, f"{tag}:{q}".encode())
                s.sendall(frame(8, b"\x03\xe8"))
            elif k % 3 == 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
            s.close()
    churners = [threading.Thread(target=churn, args=(j,)) for j in range(4)]
    for t in churners:
        t.start()
    for t in churners + steady:
        t.join()
    assert len(out) == 4
    for tag, (got, err) in out.items():
        assert err is None and got == list(range(300)), (tag, len(got), err)
    assert violations(log) == []
    assert px.ms.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_with_a_bay_that_stopped_reading_under_traffic(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "noread")
    px = start(fleet, toml, mothership={"workers": workers})
    wait_until(lambda: any(e.get("noread") for e in entries(log)), timeout=10, what="the bay docked")
    clients = [raw_connect(px) for _ in range(6)]
    results = [None] * len(clients)

    def flood(i):
        results[i] = pump_until_blocked(clients[i], b"%d:" % i + b"x" * 65000, 10)
    threads = [threading.Thread(target=flood, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(blocked for _, blocked in results), results
    t0 = time.monotonic()
    px.ms.signal(signal.SIGTERM)
    for s in clients:
        s.settimeout(10)
        assert read_until_close(s)[0] == 1001
        s.close()
    assert px.ms.wait_exit(15) == 0
    assert time.monotonic() - t0 < 8


@pytest.mark.parametrize("workers", [1, 2])
def test_a_resuming_bay_killed_under_pipelined_large_frames_gets_only_whole_frames(fleet, tmp_path, workers):
    toml, log = hostile(tmp_path, "verify", features="resume")
    px = start(fleet, toml, mothership={"workers": workers})
    stop = threading.Event()
    out = {}

    def client(tag, size):
        s = raw_connect(px)
        got = []
        pad = "x" * size

        def reader():
            s.settimeout(30)
            try:
                while True:
                    op, p = read_frame(s)
                    if op == 8:
                        return
                    t, seq = p.decode().rsplit(":", 1)
                    assert t.rstrip("x") == tag
                    got.append(int(seq))
            except Exception as e:  # noqa
                out.setdefault(tag + "!", repr(e))
        th = threading.Thread(target=reader)
        th.start()
        k = 0
        while not stop.is_set():
            s.sendall(frame(1, f"{tag}{pad}:{k}".encode()))
            k += 1
            if k - len(got) > 8:
                time.sleep(0.005)
        time.sleep(1)
        s.sendall(frame(8, b"\x03\xe8"))
        th.join(30)
        s.close()
        out[tag] = got
    threads = [threading.Thread(target=client, args=(f"c{i}", [100, 50000, 250000][i % 3])) for i in range(9)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    kill_bay_h(px, 3, pause=0.4)
    stop.set()
    for t in threads:
        t.join(60)
    assert not [k for k in out if k.endswith("!")], out
    for i in range(9):
        got = out[f"c{i}"]
        assert got == sorted(set(got)) and len(got) > 5, (i, len(got))
    assert violations(log) == []


@pytest.mark.parametrize("mode,why", [
    ("garbage_after_moored", "unknown frame type 0x7f"),
    ("close_after_moored", "closed the docking link"),
])
def test_a_fleet_without_binds_still_reads_its_bays_links(fleet, tmp_path, mode, why):
    """No data plane, so no worker to hand the reading to: the control loop
    goes on reading the link itself, and a bay that breaks it is seen."""
    toml, log = hostile(tmp_path, mode, routes=())
    ms = fleet(f'[mothership]\nsocket_dir = "/tmp/msnb{os.getpid()}"\n\n' + toml)
    ms.event("ready", ship="h", timeout=15)
    failed = ms.event("link_failed", ship="h", timeout=10)
    assert why in failed["msg"], failed



@pytest.mark.parametrize("round_", range(4))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_chat_room_of_20_senders_gets_every_message(fleet, workers, round_):
    """20 clients each send 15 messages of 4 KB to the chat bay while
    reading: every client gets all 300 once, each sender's in order.
    The room sends 24 MB, more than libdock's 16 MiB output cap: while
    Mothership held off reading the bay (a worker's inbox over budget)
    libdock read on, and chat-bay dropped whole broadcasts for "output
    buffer full". libdock now stops reading at half the cap, so the bay's
    backpressure reaches the clients instead."""
    import asyncio
    import websockets
    from test_bays import CHAT_BAY, ws_url
    px = start(fleet, bay_toml("chat", CHAT_BAY, env={"DOCK_RESUME": "0"}), mothership={"workers": workers})
    n, per, pad = 20, 15, "p" * 4000

    async def go():
        conns = [await websockets.connect(ws_url(px), max_queue=None, max_size=None) for _ in range(n)]

        async def collect(ws):
            got = []
            while len(got) < n * per:
                got.append(await ws.recv())
            return got
        readers = [asyncio.create_task(collect(ws)) for ws in conns]
        for k in range(per):
            for i, ws in enumerate(conns):
                await ws.send(f"m:{i}:{k}:{pad}")
        results = await asyncio.wait_for(asyncio.gather(*readers), 20)
        for got in results:
            assert len(got) == n * per == len(set(got))
            for i in range(n):
                assert [int(m.split(":")[2]) for m in got if m.split(":")[1] == str(i)] == list(range(per))
        for ws in conns:
            await ws.close()
    asyncio.run(go())
