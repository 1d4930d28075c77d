"""Bays through the real binary (issue 5): WebSocket clients (python
websockets and raw sockets) -> Mothership -> docking link -> the example C
bays (build/examples/bays) or the scripted probe bay (apps/probe_bay.py).

Covers: echo of text and binary, large fragmented messages, the message
size limit, broadcast to 100 clients (every message once, in order per
sender), close codes both ways as Disembark, a client that vanishes (1006),
Boarding contents, v1 bays and binary, a bay that is not docked (503),
handshake checks (400/426), malformed client frames (1002/1007), malformed
frames from a bay (the bay fails, its clients get 1011, it re-docks), a bay
crash (1012, restart, re-dock), a client that does not read (1008), idle
pings and the idle timeout, shutdown (1001), several workers, 1,000
clients on one link, and the bay metrics."""
import asyncio
import itertools
import os
import re
import resource
import signal
import socket
import struct

import pytest
import websockets

from conftest import BUILD
from fleet_helpers import PY, app, toml_str
from hbay_helpers import bay_log
from http_helpers import msum, start_proxy, toml_value, wait_until, ws_upgrade

BAYS = os.path.join(BUILD, "examples", "bays")
ECHO_BAY = os.path.join(BAYS, "echo-bay")
CHAT_BAY = os.path.join(BAYS, "chat-bay")
PROBE = app("probe_bay.py")


def bay_toml(name, command, args=(), routes=("http:/ws.*",), env=None, config=None, extra=None):
    lines = ["[[bays.websocket]]", f"name = {toml_str(name)}", f"command = {toml_str(command)}",
             f"args = {toml_value(list(args))}", f"routes = {toml_value(list(routes))}"]
    if env:
        lines.append(f"env = {toml_value(env)}")
    if config:
        lines.append(f"config = {toml_value(config)}")
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


_SOCKET_DIRS = itertools.count()


def start(fleet, *bays, http=None, mothership=None, wait=True):
    mo = {"socket_dir": f"/tmp/msb{os.getpid()}-{next(_SOCKET_DIRS)}"}  # never one an earlier fleet used
    mo.update(mothership or {})
    px = start_proxy(fleet, http=http, mothership=mo, extra="\n".join(bays))
    if wait:
        for b in bays:
            name = b.split("name = ", 1)[1].split("\n", 1)[0].strip('"')
            px.ms.event("ready", ship=name, timeout=15)
    return px


def ws_url(px, path="/ws"):
    return f"ws://127.0.0.1:{px.port}{path}"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ------------------------------------------------------------------ raw WebSocket client
def raw_connect(px, path="/ws", rcvbuf=None, extra_headers=b""):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", px.port))
    head = ws_upgrade(s, path, extra_headers)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head, head
    return s


def frame(opcode, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    hdr = bytes([b0]) + (bytes([(0x80 if mask else 0) | n]) if n < 126 else
                         bytes([(0x80 if mask else 0) | 126]) + struct.pack(">H", n) if n < 65536 else
                         bytes([(0x80 if mask else 0) | 127]) + struct.pack(">Q", n))
    if not mask:
        return hdr + payload
    key = b"\x11\x22\x33\x44"
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_frame(s):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError(buf)
            buf += chunk
        return buf
    h = exact(2)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", exact(8))[0]
    return h[0] & 0x0F, exact(n)


def close_code(payload):
    return struct.unpack(">H", payload[:2])[0], payload[2:].decode()


def read_until_close(s):
    while True:
        op, payload = read_frame(s)
        if op == 8:
            return close_code(payload)


# ------------------------------------------------------------------ echo
def test_echo_text_and_binary_through_the_c_echo_bay(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY, config={"motd": "hello"}))
    ready = px.ms.events("ready", ship="echo")[0]["msg"]
    assert "with binary messages" in ready, ready

    async def go():
        async with websockets.connect(ws_url(px, "/ws/room?x=1")) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            await ws.send("")
            assert await ws.recv() == ""
    run(go())
    m = px.metrics()
    assert msum(m, "mothership_bay_messages_total", bay="echo", direction="in") == 3
    assert msum(m, "mothership_bay_messages_total", bay="echo", direction="out") == 3
    assert msum(m, "mothership_bay_bytes_total", bay="echo", direction="in") == len("héllo".encode()) + len(b"\x00\xffbinary")
    assert msum(m, "mothership_bay_boardings_total", bay="echo") == 1
    wait_until(lambda: msum(px.metrics(), "mothership_bay_clients", bay="echo") == 0, what="client gone")
    assert msum(m, "mothership_bay_docked", bay="echo") == 1


def test_large_fragmented_message_is_reassembled_and_the_limit_is_1009(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY), http={"ws_max_message_size": "4MiB"})
    big = os.urandom(3 << 20)

    async def go():
        async with websockets.connect(ws_url(px), max_size=8 << 20) as ws:
            # 3 MiB in 48 fragments of 64 KiB
            await ws.send([big[i:i + 65536] for i in range(0, len(big), 65536)])
            assert await ws.recv() == big
            text = "ü" * (1 << 20)  # 2 MiB of UTF-8 in 27 text fragments
            await ws.send([text[i:i + 40000] for i in range(0, len(text), 40000)])
            assert await ws.recv() == text
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.send(b"x" * ((4 << 20) + 1))   # the close may come while it is still sending
                await ws.recv()
            assert e.value.rcvd.code == 1009
    run(go())


# ------------------------------------------------------------------ broadcast
@pytest.mark.parametrize("workers", [1, 2])
def test_broadcast_to_100_clients_every_message_once_in_order(fleet, workers):
    px = start(fleet, bay_toml("chat", CHAT_BAY), mothership={"workers": workers})
    senders, per_sender, clients = 5, 20, 100

    async def go():
        conns = [await websockets.connect(ws_url(px)) for _ in range(clients)]
        # every client is boarded before anyone speaks
        await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(
            lambda: msum(px.metrics(), "mothership_bay_clients", bay="chat") == clients, what="100 clients"))
        for k in range(per_sender):
            for s in range(senders):
                await conns[s].send(f"{s}:{k}")
        total = senders * per_sender

        async def collect(ws):
            got = [await ws.recv() for _ in range(total)]
            return got
        results = await asyncio.gather(*(collect(ws) for ws in conns))
        for got in results:
            assert sorted(got) == sorted(f"{s}:{k}" for s in range(senders) for k in range(per_sender))
            for s in range(senders):
                mine = [int(x.split(":")[1]) for x in got if x.startswith(f"{s}:")]
                assert mine == list(range(per_sender))
        for ws in conns:
            await ws.close()
    run(go())
    m = px.metrics()
    assert msum(m, "mothership_bay_messages_total", bay="chat", direction="out") == clients * senders * per_sender


def test_subprotocol_is_chosen_from_the_bays_list(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY, extra={"subprotocols": ["actioncable-v1-json", "v2.chat"]}))

    async def go():
        async with websockets.connect(ws_url(px), subprotocols=["actioncable-unsupported", "actioncable-v1-json"]) as ws:
            assert ws.subprotocol == "actioncable-v1-json"
            await ws.send("x")
            assert await ws.recv() == "x"
        async with websockets.connect(ws_url(px), subprotocols=["v2.chat"]) as ws:
            assert ws.subprotocol == "v2.chat"
        async with websockets.connect(ws_url(px), subprotocols=["other"]) as ws:
            assert ws.subprotocol is None   # none in common: the header is left out (RFC 6455 4.2.2)
        async with websockets.connect(ws_url(px)) as ws:
            assert ws.subprotocol is None
    run(go())


def test_chat_greeting_from_config(fleet):
    px = start(fleet, bay_toml("chat", CHAT_BAY, config={"greeting": "welcome aboard"}))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            assert await ws.recv() == "welcome aboard"
    run(go())


# ------------------------------------------------------------------ Boarding, Disembark, close codes
def test_boarding_carries_path_query_address_and_headers_and_close_codes_travel_both_ways(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))

    async def go():
        async with websockets.connect(ws_url(px, "/ws/chat?room=1&x=%20"),
                                      extra_headers={"X-Token": "abc", "Cookie": "a=1"}) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(4001, "see you")
        # the bay closes the next client
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("disembark 4002 go away")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (4002, "go away")
    run(go())
    frames = bay_log(log, lambda f: sum(x["type"] == "Disembark" for x in f) >= 1 and
                       sum(x["type"] == "Boarding" for x in f) == 2)
    b = [f for f in frames if f["type"] == "Boarding"]
    assert b[0]["path"] == "/ws/chat?room=1&x=%20"
    assert b[0]["remote_addr"].startswith("127.0.0.1:") and int(b[0]["remote_addr"].split(":")[1]) > 0
    hdrs = {k.lower(): v for k, v in b[0]["headers"].items()}
    assert hdrs["x-token"] == "abc" and hdrs["cookie"] == "a=1" and hdrs["upgrade"] == "websocket"
    assert b[0]["conn_id"] != b[1]["conn_id"]
    d = [f for f in frames if f["type"] == "Disembark"]
    # the client's close code reaches the bay; a close the bay asked for is not echoed back
    assert [(x["conn_id"], x["code"]) for x in d] == [(b[0]["conn_id"], 4001)]


def test_bay_text_that_is_not_utf8_goes_as_binary_and_long_reasons_are_cut_at_a_character(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("badutf8")
            assert await ws.recv() == b"\xff\xfe"
            await ws.send("disembark 4000 " + "é" * 100)
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (4000, "é" * 61)
    run(go())


def test_header_values_that_are_not_utf8_are_left_out_of_boarding(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    s = raw_connect(px, extra_headers=b"X-Bin: \xff\xfe\r\nX-Ok: fine\r\n")
    s.sendall(frame(1, b"x"))
    assert read_frame(s) == (1, b"x")
    b = [f for f in bay_log(log, lambda f: any(x["type"] == "Boarding" for x in f)) if f["type"] == "Boarding"]
    assert b[0]["headers"]["X-Ok"] == "fine" and "X-Bin" not in b[0]["headers"]


def test_a_client_that_vanishes_is_disembarked_with_1006(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    s = raw_connect(px)
    s.sendall(frame(1, b"ping?"))
    assert read_frame(s) == (1, b"ping?")
    s.close()
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1006]


def test_cargo_for_an_unknown_client_is_dropped_and_counted(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("to 999999 lost")
            await ws.send("still here")
            assert await ws.recv() == "still here"
    run(go())
    assert msum(px.metrics(), "mothership_bay_dropped_cargo_total", bay="probe") == 1


# ------------------------------------------------------------------ v1 bays and binary
def test_a_v1_bay_gets_exactly_v1_and_a_binary_message_closes_the_client_with_1003(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    assert "(text only)" in px.ms.events("ready", ship="probe")[0]["msg"]
    moored = bay_log(log, lambda f: any(x["type"] == "Moored" for x in f))[0]
    assert moored == {"type": "Moored", "version": 1, "config": {}}

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("text is fine")
            assert await ws.recv() == "text is fine"
            await ws.send(b"\x01\x02")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 1003
    run(go())
    assert not any(x["type"] == "CargoBinary" for x in bay_log(log))


def test_an_extended_bay_gets_binary_as_cargo_binary(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)], env={"PROBE_FEATURES": "binary"},
                               config={"room": "main", "n": "3"}))
    moored = bay_log(log, lambda f: any(x["type"] == "Moored" for x in f))[0]
    assert moored == {"type": "Moored", "version": 1, "config": {"room": "main", "n": "3"}, "features": ["binary"]}

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"
            await ws.send("txt")
            assert await ws.recv() == "txt"
    run(go())
    kinds = [(x["type"], x.get("hex", x.get("text"))) for x in bay_log(log) if x["type"].startswith("Cargo")]
    assert kinds == [("CargoBinary", "000102"), ("Cargo", "txt")]


def test_the_c_echo_bay_as_a_v1_bay(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY, env={"DOCK_V1": "1"}))
    assert "(text only)" in px.ms.events("ready", ship="echo")[0]["msg"]

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("v1")
            assert await ws.recv() == "v1"
    run(go())


# ------------------------------------------------------------------ not docked, handshakes
def test_a_bay_that_has_not_docked_answers_503(fleet, tmp_path):
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(tmp_path / "p.jsonl")], env={"PROBE_MODE": "nodock"},
                               extra={"ready_timeout": "60s"}), wait=False)
    s = socket.create_connection(("127.0.0.1", px.port))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    assert resp.startswith(b"HTTP/1.1 503 "), resp
    assert b"Retry-After: 1\r\n" in resp and b'bay \\"probe\\" is not docked' not in resp
    assert b'bay "probe" is not docked' in resp
    assert msum(px.metrics(), "mothership_bay_rejected_total", bay="probe") == 1
    assert msum(px.metrics(), "mothership_bay_docked", bay="probe") == 0


@pytest.mark.parametrize("headers,status,detail", [
    ({}, 426, b"use a WebSocket client"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}, 400, b"Sec-WebSocket-Key"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "short"}, 400, b"Sec-WebSocket-Key"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 426, b"version 13"),
    ({"Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 400, b"Connection: Upgrade"),
])
def test_handshake_checks(fleet, headers, status, detail):
    px = start(fleet, bay_toml("echo", ECHO_BAY))
    s = socket.create_connection(("127.0.0.1", px.port))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\n" +
              b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n")
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        assert chunk, resp
        resp += chunk
    while detail not in resp:
        chunk = s.recv(4096)
        assert chunk, resp
        resp += chunk
    assert resp.startswith(f"HTTP/1.1 {status} ".encode()), resp
    if status == 426:
        assert b"Upgrade: websocket\r\n" in resp and b"Sec-WebSocket-Version: 13\r\n" in resp


def test_post_upgrade_is_refused(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY))
    s = socket.create_connection(("127.0.0.1", px.port))
    s.sendall(b"POST /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 400 ")


# ------------------------------------------------------------------ malformed client frames
def close_or_none(s):
    """The close frame's code (1005 when it has none)."""
    while True:
        op, payload = read_frame(s)
        if op == 8:
            return close_code(payload)[0] if payload else 1005


@pytest.mark.parametrize("data,client_code,bay_code", [
    (frame(1, b"unmasked", mask=False), 1002, 1002),
    (frame(1, b"\xff\xfe not utf-8"), 1007, 1007),
    (frame(1, b"half", fin=False) + frame(2, b"new message inside a fragmented one"), 1002, 1002),
    (frame(3, b"reserved opcode"), 1002, 1002),
    # a frame wslay cannot parse (a control frame over 125 bytes): its close
    # frame carries no code; the bay is told 1002
    (frame(9, b"p" * 126), 1005, 1002),
])
def test_malformed_client_frames_close_with_the_right_code(fleet, tmp_path, data, client_code, bay_code):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    s = raw_connect(px)
    s.sendall(data)
    assert close_or_none(s) == client_code
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [bay_code]
    assert not any(x["type"] == "Cargo" for x in frames)


# ------------------------------------------------------------------ a bay that fails
@pytest.mark.parametrize("command,why", [
    ("garbage", "unknown frame type 0x7f"),
    ("oversize", "exceeds the maximum"),
    ("truncate", "inside a frame"),
])
def test_malformed_frames_from_a_bay_fail_it_and_it_docks_again(fleet, tmp_path, command, why):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)],
                               extra={"critical": False, "restart": {"backoff": "50ms"}}))

    async def go():
        async with websockets.connect(ws_url(px)) as bystander, websockets.connect(ws_url(px)) as ws:
            await ws.send(command)
            for c in (ws, bystander):
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await c.recv()
                assert e.value.rcvd.code == 1011
    run(go())
    failed = px.ms.event("link_failed", ship="probe")
    assert why in failed["msg"], failed
    px.ms.event("ready", ship="probe", start=failed["_i"], timeout=15)

    async def again():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("back")
            assert await ws.recv() == "back"
    run(again())
    m = px.metrics()
    assert msum(m, "mothership_bay_protocol_errors_total", bay="probe") == 1
    assert msum(m, "mothership_bay_redocks_total", bay="probe") == 1


def test_a_bay_crash_closes_its_clients_with_1012_and_it_is_restarted_and_docks_again(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY, extra={"critical": False, "restart": {"backoff": "50ms"}}))

    async def go():
        async with websockets.connect(ws_url(px)) as bystander, websockets.connect(ws_url(px)) as ws:
            await ws.send("/crash")
            for c in (ws, bystander):
                with pytest.raises(websockets.ConnectionClosed) as e:
                    await c.recv()
                assert e.value.rcvd.code == 1012
    run(go())
    exited = px.ms.event("exited", ship="echo")
    px.ms.event("ready", ship="echo", start=exited["_i"], timeout=15)

    async def again():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("after the crash")
            assert await ws.recv() == "after the crash"
    run(again())
    assert msum(px.metrics(), "mothership_bay_redocks_total", bay="echo") == 1


LEAVING_BAY = r"""
import json, os, socket, struct, sys, time
path = os.environ["MS_SOCKET_PATH"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1)
c, _ = s.accept()
hello = json.dumps({"version": 1, "ship": os.environ["MS_SHIP"]}).encode()
c.sendall(struct.pack(">BI", 0x01, len(hello)) + hello)
c.recv(65536)  # Moored
time.sleep(0.2)
c.close()      # the link goes first, as a bay's does when it exits ...
s.close()
time.sleep(0.3)
sys.exit(3)    # ... and the process a moment later
"""


def leaving_bay(tmp_path):
    path = tmp_path / "leaving_bay.py"
    path.write_text(LEAVING_BAY)
    return str(path)


def test_a_bay_that_exits_on_its_own_reports_its_own_status(fleet, tmp_path):
    """The bay closes its link, then exits with status 3: Mothership sees
    the link go first, but waits for the exit rather than killing it, so
    the exit is reported as the bay's own."""
    px = start(fleet, bay_toml("leaving", PY, [leaving_bay(tmp_path)],
                               extra={"critical": False, "restart": {"backoff": "10s"}}))
    lost = px.ms.event("link_failed", ship="leaving")
    exited = px.ms.event("exited", ship="leaving", start=lost["_i"])
    assert re.fullmatch(r'bay "leaving" \(pid \d+\) exited with status 3 after \d+ms', exited["msg"]), exited
    assert not px.ms.events("kill", ship="leaving"), px.ms.output()
    back = px.ms.event("backoff", ship="leaving")
    assert 'bay "leaving" exited with status 3; restarting in' in back["msg"], back
    assert px.ms.stop() == 0, px.ms.output()


def test_a_critical_bay_that_exits_on_its_own_stops_the_fleet_with_its_status(fleet, tmp_path):
    px = start(fleet, bay_toml("leaving", PY, [leaving_bay(tmp_path)]))
    sd = px.ms.event("shutdown")
    assert sd["msg"] == 'stopping the fleet: critical bay "leaving" exited with status 3', sd
    assert px.ms.wait_exit(timeout=15) == 1, px.ms.output()


def test_a_bay_that_keeps_running_without_its_link_is_killed(fleet, tmp_path):
    """The grace is only a grace: a bay that closed its link and lingers
    is killed a second later and restarted as a crash."""
    bay = tmp_path / "lingering_bay.py"
    bay.write_text(LEAVING_BAY.replace("time.sleep(0.3)", "time.sleep(30)"))
    px = start(fleet, bay_toml("linger", PY, [str(bay)], extra={"critical": False, "restart": {"backoff": "10s"}}))
    lost = px.ms.event("link_failed", ship="linger")
    kill = px.ms.event("kill", ship="linger", start=lost["_i"])
    assert "is still running without its link after 1000ms: SIGKILL" in kill["msg"], kill
    exited = px.ms.event("exited", ship="linger", start=kill["_i"])
    assert "was killed by signal 9 (KILL)" in exited["msg"], exited
    assert px.ms.stop() == 0, px.ms.output()


# ------------------------------------------------------------------ slow and idle clients, shutdown
def test_a_client_that_does_not_read_is_closed_with_1008(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY), http={"ws_send_queue": "64KiB"})
    s = raw_connect(px, rcvbuf=4096)
    chunk = frame(2, b"z" * 16384)
    try:
        for _ in range(2000):   # 32 MiB echoed back at a client that never reads
            s.sendall(chunk)
            if msum(px.metrics(), "mothership_bay_slow_clients_closed_total", bay="echo") >= 1:
                break
    except OSError:
        pass
    wait_until(lambda: msum(px.metrics(), "mothership_bay_slow_clients_closed_total", bay="echo") == 1,
               what="the slow client closed")
    wait_until(lambda: msum(px.metrics(), "mothership_bay_clients", bay="echo") == 0, what="client gone")


def test_idle_clients_are_pinged_and_a_silent_one_is_dropped(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]),
               http={"ws_ping_interval": "200ms", "ws_idle_timeout": "1s"})
    silent = raw_connect(px)
    op, _ = read_frame(silent)       # a ping, which it does not answer
    assert op == 9

    async def go():
        async with websockets.connect(ws_url(px)) as ws:   # answers pings by itself
            await asyncio.sleep(2.0)  # two idle timeouts: it must still be served
            await ws.send("alive")
            assert await ws.recv() == "alive"
    run(go())
    frames = bay_log(log, lambda f: sum(x["type"] == "Disembark" for x in f) >= 2)
    codes = [x["code"] for x in frames if x["type"] == "Disembark"]
    assert codes[0] == 1006 and len(codes) == 2


def test_shutdown_closes_clients_with_1001_and_the_bay_hears_it_before_it_is_stopped(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)]))
    s = raw_connect(px)
    s.sendall(frame(1, b"x"))
    assert read_frame(s) == (1, b"x")
    px.ms.signal(signal.SIGTERM)
    assert read_until_close(s) == (1001, "Mothership is shutting down")
    s.sendall(frame(8, struct.pack(">H", 1001)))
    assert px.ms.wait_exit() == 0
    frames = bay_log(log)
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1001], (frames, px.ms.output())


def test_a_client_that_pings_but_does_not_read_is_closed_with_1008(fleet):
    """wslay answers every ping with a pong: they must not pile up without
    bound for a client that never reads them."""
    px = start(fleet, bay_toml("echo", ECHO_BAY), http={"ws_send_queue": "64KiB"})
    s = raw_connect(px, rcvbuf=4096)
    pings = frame(9, b"p" * 125) * 1000
    try:
        for _ in range(400):  # up to 130 MB of pings
            s.sendall(pings)
            if msum(px.metrics(), "mothership_bay_slow_clients_closed_total", bay="echo") >= 1:
                break
    except OSError:
        pass  # closed: what we want
    wait_until(lambda: msum(px.metrics(), "mothership_bay_slow_clients_closed_total", bay="echo") == 1,
               what="the client closed once for not reading")
    wait_until(lambda: msum(px.metrics(), "mothership_bay_clients", bay="echo") == 0, what="client gone")
    with open(f"/proc/{px.ms.pid}/maps") as f:
        sanitized = "libasan" in f.read()   # ASan keeps freed memory in quarantine: RSS says nothing there
    with open(f"/proc/{px.ms.pid}/status") as f:
        rss_kb = int(next(l for l in f if l.startswith("VmRSS")).split()[1])
    assert sanitized or rss_kb < 64 * 1024, f"Mothership grew to {rss_kb} kB"


def test_clients_that_reset_right_after_the_handshake_leave_mothership_unharmed(fleet):
    px = start(fleet, bay_toml("echo", ECHO_BAY))
    for _ in range(200):
        c = socket.create_connection(("127.0.0.1", px.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        c.close()  # RST: the 101 may meet a dead socket
    wait_until(lambda: msum(px.metrics(), "mothership_bay_clients", bay="echo") == 0, what="all gone")

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("still serving")
            assert await ws.recv() == "still serving"
    run(go())


def test_a_bay_that_dies_with_frames_unread_closes_its_clients_with_1012(fleet, tmp_path):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)],
                               extra={"critical": False, "restart": {"backoff": "50ms"}}))

    async def go():
        async with websockets.connect(ws_url(px)) as bystander, websockets.connect(ws_url(px)) as ws:
            await ws.send("die")
            for i in range(50):  # unread by the bay when it exits: its link is reset
                await bystander.send(f"m{i}")
            for c in (ws, bystander):
                with pytest.raises(websockets.ConnectionClosed) as e:
                    while True:
                        await c.recv()
                assert e.value.rcvd.code == 1012
    run(go())
    px.ms.event("exited", ship="probe")


# ------------------------------------------------------------------ many clients on one link
def test_1000_concurrent_clients_on_one_link(fleet):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"the descriptor limit (hard {hard}) is too low for 1,000 clients and their server")
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    px = start(fleet, bay_toml("echo", ECHO_BAY))
    n = 1000

    async def go():
        sem = asyncio.Semaphore(200)

        async def open_one(i):
            async with sem:
                return await websockets.connect(ws_url(px), ping_interval=None)
        conns = await asyncio.gather(*(open_one(i) for i in range(n)))
        await asyncio.gather(*(ws.send(f"m{i}") for i, ws in enumerate(conns)))
        got = await asyncio.gather(*(ws.recv() for ws in conns))
        assert got == [f"m{i}" for i in range(n)]
        assert msum(px.metrics(), "mothership_bay_clients", bay="echo") == n
        await asyncio.gather(*(ws.close() for ws in conns))
    run(go(), timeout=120)
    wait_until(lambda: msum(px.metrics(), "mothership_bay_clients", bay="echo") == 0, what="clients gone")


def test_a_launch_that_fails_with_a_bay_in_the_manifest_exits_at_once(fleet, tmp_path):
    """The docking links' handles must not keep Mothership alive when the
    listeners cannot be opened."""
    from fleet_helpers import free_port
    port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", port))
    busy.listen(1)
    ms = fleet(f"""
        [mothership]
        socket_dir = "{tmp_path}/sock"
        [mothership.bind]
        http = "127.0.0.1:{port}"
        {bay_toml("echo", ECHO_BAY)}
    """)
    assert ms.wait_exit(timeout=10) == 1, ms.output()
    assert ms.events("launch_failed"), ms.output()
    busy.close()


def test_a_critical_bay_that_crashes_stops_the_fleet_only_after_the_data_plane_has_drained(fleet):
    """The docking links are closed when the fleet is done; the fleet must not
    be done while workers still drain (they use the links)."""
    px = start(fleet, bay_toml("echo", ECHO_BAY))   # critical: the default

    async def go():
        async with websockets.connect(ws_url(px)) as ws:
            await ws.send("/crash")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
    run(go())
    assert px.ms.wait_exit() == 1, px.ms.output()
    drained = px.ms.events("drained")
    done = [e for e in px.ms.events("stopped") if not e.get("ship")]
    assert drained and done and drained[0]["_i"] < done[0]["_i"], px.ms.output()
