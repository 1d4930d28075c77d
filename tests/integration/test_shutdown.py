"""`mothership run` stopping with work in flight: one shutdown_timeout for
the whole stop (the drain, then what is left for the ships, with a floor),
a 503 for a request not yet answered when the drain's time is up, a cut
connection for a response under way, a 1001 close frame for a WebSocket
tunnelled to a ship."""
import base64
import os
import signal

from fleet_helpers import PY, event_ms, free_port, toml_str
from http_helpers import Raw, raw_request

# An HTTP ship that ignores SIGTERM: /slow answers after 10 s, /started
# sends its head and part of its body, then waits 10 s.
SLOW_SHIP = r'''
import signal, socket, sys, threading, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def serve(s):
    f = s.makefile("rb")
    line = f.readline().decode()
    while f.readline() not in (b"\r\n", b""):
        pass
    path = line.split(" ")[1]
    print("got", path, flush=True)
    if path == "/started":
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    time.sleep(10)
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# A WebSocket echo ship (the websockets library).
WS_SHIP = r'''
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
'''


def ws_handshake(port, path="/ws"):
    key = base64.b64encode(os.urandom(16)).decode()
    c = Raw(port, timeout=10)
    c.send(raw_request("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                     ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
    r = c.response(head_only=True)
    assert r.status == 101, r
    return c


def read_to_eof(c):
    try:
        while True:
            c._fill()
    except (EOFError, ConnectionResetError):
        pass
    return c.buf


def test_one_budget_503_cut_response_and_websocket_1001(fleet, tmp_path):
    """shutdown_timeout = 2s; a request whose ship answers after 10 s, a
    response under way, a WebSocket to a ship, and a ship that ignores
    SIGTERM: the not-yet-answered request gets a 503, the response under
    way is cut, the WebSocket gets a 1001 close frame, the ship gets what
    is left of the budget (the floor: 1 s) and Mothership exits well within
    budget + 2 s of the signal."""
    slow_py = tmp_path / "slow_ship.py"
    slow_py.write_text(SLOW_SHIP)
    ws_py = tmp_path / "ws_ship.py"
    ws_py.write_text(WS_SHIP)
    port, slow_port, ws_port = free_port(), free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        shutdown_timeout = "2s"

        [mothership.bind]
        http = "127.0.0.1:{port}"

        [[fleet.web]]
        name = "wsecho"
        command = {toml_str(PY)}
        args = [{toml_str(str(ws_py))}, "{ws_port}"]
        bind = "tcp://127.0.0.1:{ws_port}"
        routes = ["http:/ws"]

        [[fleet.web]]
        name = "slow"
        command = {toml_str(PY)}
        args = ["-u", {toml_str(str(slow_py))}, "{slow_port}"]
        bind = "tcp://127.0.0.1:{slow_port}"
        routes = ["http:/.*"]
    """)
    ms.event("fleet_ready", timeout=15)
    waiting = Raw(port, timeout=10)
    waiting.send(raw_request("GET", "/slow", []))
    ms.wait_for(r'"msg":"got /slow"')
    started = Raw(port, timeout=10)
    started.send(raw_request("GET", "/started", []))
    head = started.response(head_only=True)
    assert head.status == 200, head
    ms.wait_for(r'"msg":"got /started"')
    ws = ws_handshake(port)
    ws.send(bytes([0x81, 0x80 | 2]) + b"\0\0\0\0" + b"hi")       # masked (zero mask) text "hi"
    while len(ws.buf) < 4:
        ws._fill()
    assert ws.buf[:4] == bytes([0x81, 2]) + b"hi"
    ws.buf = b""

    ms.signal(signal.SIGTERM)
    sd = ms.event("shutdown")

    r = waiting.response()
    assert r.status == 503, r
    assert (r.header("connection") or "").lower() == "close", r
    assert r.header("retry-after"), r
    assert b"shutdown_timeout" in r.body, r
    assert read_to_eof(waiting) == b"", "the connection closes after the 503"

    rest = read_to_eof(started)
    assert len(rest) < 100, "the response under way is cut, not completed"

    frames = read_to_eof(ws)
    assert frames == bytes([0x88, 0x02, 0x03, 0xE9]), frames   # unmasked close, code 1001

    stopping = ms.event("stopping", ship="slow", timeout=10)
    assert "SIGKILL in 1000ms" in stopping["msg"], stopping
    kill = ms.event("kill", ship="slow", timeout=10)
    assert kill["msg"].endswith("did not stop within 1000ms: SIGKILL"), kill
    assert ms.wait_exit(timeout=10) == 0
    stopped = ms.event("stopped")
    assert event_ms(stopped) - event_ms(sd) <= 2 + 2, (sd, stopped)


def test_websocket_1001_after_large_client_frames(fleet, tmp_path):
    """The client's tunnelled frames land where its request head was: a
    WebSocket whose client sent a frame longer than that head still gets
    the 1001 close frame when the drain's time is up, not a bare close."""
    ws_py = tmp_path / "ws_ship.py"
    ws_py.write_text(WS_SHIP)
    port, ws_port = free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        shutdown_timeout = "1s"

        [mothership.bind]
        http = "127.0.0.1:{port}"

        [[fleet.web]]
        name = "wsecho"
        command = {toml_str(PY)}
        args = [{toml_str(str(ws_py))}, "{ws_port}"]
        bind = "tcp://127.0.0.1:{ws_port}"
        routes = ["http:/ws"]
    """)
    ms.event("fleet_ready", timeout=15)
    ws = ws_handshake(port)
    payload = b"y" * 400                                          # longer than the request head
    ws.send(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload)
    want = bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload
    while len(ws.buf) < len(want):
        ws._fill()
    assert ws.buf == want
    ws.buf = b""

    ms.signal(signal.SIGTERM)
    frames = read_to_eof(ws)
    assert frames == bytes([0x88, 0x02, 0x03, 0xE9]), frames   # unmasked close, code 1001
    assert ms.wait_exit(timeout=15) == 0


# A ship that answers the upgrade with a 101 and then the start of a 256-byte
# text frame (its header and 10 bytes), or with "close" a close frame (1000),
# and sends nothing more.
HALF_FRAME_SHIP = r'''
import base64, hashlib, socket, sys, threading, time
FIRST = bytes([0x88, 2, 3, 0xE8]) if sys.argv[2:] == ["close"] else bytes([0x81, 126, 1, 0]) + b"z" * 10
def serve(c):
    f = c.makefile("rb")
    key = b""
    while True:
        ln = f.readline()
        if ln in (b"\r\n", b""):
            break
        if ln.lower().startswith(b"sec-websocket-key:"):
            key = ln.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + FIRST)
    time.sleep(30)
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


def test_no_1001_inside_a_frame_the_ship_left_half_sent(fleet, tmp_path):
    """The 1001 close frame goes out only at a frame boundary: put inside a
    frame the ship left half sent, its bytes would be read as that frame's
    payload. There the connection is only closed."""
    ship_py = tmp_path / "half_frame_ship.py"
    ship_py.write_text(HALF_FRAME_SHIP)
    port, ws_port = free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        shutdown_timeout = "1s"

        [mothership.bind]
        http = "127.0.0.1:{port}"

        [[fleet.web]]
        name = "half"
        command = {toml_str(PY)}
        args = [{toml_str(str(ship_py))}, "{ws_port}"]
        bind = "tcp://127.0.0.1:{ws_port}"
        routes = ["http:/ws"]
    """)
    ms.event("fleet_ready", timeout=15)
    ws = ws_handshake(port)
    while len(ws.buf) < 14:
        ws._fill()
    assert ws.buf == bytes([0x81, 126, 1, 0]) + b"z" * 10
    ws.buf = b""
    ms.signal(signal.SIGTERM)
    assert read_to_eof(ws) == b"", "nothing more inside the half-sent frame"
    assert ms.wait_exit(timeout=15) == 0


def test_no_1001_after_the_ships_own_close_frame(fleet, tmp_path):
    """A ship that sent its close frame has ended the WebSocket's frames
    from the server side: the drain's end sends no second close frame."""
    ship_py = tmp_path / "half_frame_ship.py"
    ship_py.write_text(HALF_FRAME_SHIP)
    port, ws_port = free_port(), free_port()
    ms = fleet(f"""
        [mothership]
        shutdown_timeout = "1s"

        [mothership.bind]
        http = "127.0.0.1:{port}"

        [[fleet.web]]
        name = "closer"
        command = {toml_str(PY)}
        args = [{toml_str(str(ship_py))}, "{ws_port}", "close"]
        bind = "tcp://127.0.0.1:{ws_port}"
        routes = ["http:/ws"]
    """)
    ms.event("fleet_ready", timeout=15)
    ws = ws_handshake(port)
    while len(ws.buf) < 4:
        ws._fill()
    assert ws.buf == bytes([0x88, 2, 3, 0xE8])
    ws.buf = b""
    ms.signal(signal.SIGTERM)
    assert read_to_eof(ws) == b"", "one close frame from the server side"
    assert ms.wait_exit(timeout=15) == 0
