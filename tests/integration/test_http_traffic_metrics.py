"""Traffic the request counters used to miss: responses the client abandons
(an SSE stream always ends that way), the bytes and time of a WebSocket
tunnelled to a ship, and the 502/504 answers of the proxy in the log (with
the request id, the ship and the reason, rate-limited)."""
import time

from fleet_helpers import PY, free_port, metric, toml_str
from http_helpers import Raw, echo_ship, raw_request, start_proxy
from test_shutdown import ws_handshake

# An SSE ship: /events sends an event every 50 ms until the client is gone.
SSE_SHIP = r'''
import socket, sys, threading, time
def serve(s):
    f = s.makefile("rb")
    f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        for i in range(100000):
            ev = b"data: %d\n\n" % i
            s.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            time.sleep(0.05)
    except OSError:
        print("client gone", flush=True)
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# A ship that sends a head and part of its body, then closes the connection.
CUT_SHIP = r'''
import socket, sys
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = ls.accept()
    f = c.makefile("rb")
    while f.readline() not in (b"\r\n", b""):
        pass
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    f.close()
    c.close()
'''


def poll(fn, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_an_abandoned_sse_stream_is_counted_with_its_status(fleet, tmp_path):
    sse_py = tmp_path / "sse_ship.py"
    sse_py.write_text(SSE_SHIP)
    sport = free_port()
    extra = f"""
[[fleet.web]]
name = "sse"
command = {toml_str(PY)}
args = [{toml_str(str(sse_py))}, "{sport}"]
bind = "tcp://127.0.0.1:{sport}"
routes = ["http:/events"]
"""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/other"]), extra=extra)
    lab = dict(bind="http", route="/events", target="sse")
    c = Raw(px.port)
    c.send(raw_request("GET", "/events", [("Accept", "text/event-stream")]))
    r = c.response(head_only=True)
    assert r.status == 200, r
    while b"data: 1\n" not in c.buf:
        c._fill()
    c.s.close()
    m = poll(lambda: (lambda m: m if metric(m, "mothership_responses_abandoned_total", code="2xx", **lab) == 1
                      else None)(px.metrics()), "the abandoned SSE stream is counted")
    assert metric(m, "mothership_responses_total", code="2xx", **lab) == 1
    assert metric(m, "mothership_requests_total", proto="http1", **lab) == 1
    assert metric(m, "mothership_response_bytes_total", **lab) > len(r.raw_head)
    assert metric(m, "mothership_responses_abandoned_total", code="5xx", **lab) == 0
    assert px.ms.stop() == 0

def test_websocket_tunnel_bytes_and_duration_are_counted_when_it_ends(fleet):
    px = start_proxy(fleet, echo_ship("app"))
    lab = dict(bind="http", route="/.*", target="app")
    ws = ws_handshake(px.port)
    hello = bytes([0x81, 0x80 | 5]) + b"\0\0\0\0" + b"hello"       # 11 bytes, masked (zero mask)
    ws.send(hello)
    while len(ws.buf) < 7:
        ws._fill()
    assert ws.buf[:7] == bytes([0x81, 5]) + b"hello"
    m = px.metrics()
    assert metric(m, "mothership_tunnel_bytes_total", direction="client_to_ship", **lab) == 0, "counted at the end"
    close = bytes([0x88, 0x80 | 2]) + b"\0\0\0\0" + b"\x03\xe8"   # 8 bytes: close 1000
    ws.send(close)
    while len(ws.buf) < 7 + 4:
        ws._fill()
    assert ws.buf[7:11] == bytes([0x88, 2]) + b"\x03\xe8"
    m = poll(lambda: (lambda m: m if metric(m, "mothership_tunnels_closed_total", **lab) == 1 else None)(
        px.metrics()), "the tunnel's end is counted")
    assert metric(m, "mothership_tunnel_bytes_total", direction="client_to_ship", **lab) == len(hello) + len(close)
    assert metric(m, "mothership_tunnel_bytes_total", direction="ship_to_client", **lab) == 7 + 4
    assert metric(m, "mothership_tunnel_seconds_total", **lab) > 0
    assert metric(m, "mothership_responses_total", code="1xx", **lab) == 1
    assert px.ms.stop() == 0

def test_a_502_is_logged_with_the_request_id_and_rate_limited(fleet):
    px = start_proxy(fleet, echo_ship("app"))
    c = Raw(px.port)
    c.send(raw_request("GET", "/x?reset=1", [("X-Request-Id", "req-502-first")]))
    r = c.response()
    assert r.status == 502 and r.header("x-request-id") == "req-502-first", r
    e = px.ms.event("upstream_error", ship="app")
    assert e["msg"] == '502 Bad Gateway: ship "app" closed the connection before answering ' \
                       '(request id req-502-first)', e
    # a burst: at most 10 lines a second per worker, then a count of those left out
    sent = 1
    deadline = time.monotonic() + 20
    while not any("were not logged" in x["msg"] for x in px.ms.events("upstream_error")):
        assert time.monotonic() < deadline, "no line says how many were left out"
        c.send(raw_request("GET", "/x?reset=1", [("X-Request-Id", f"req-{sent}")]))
        assert c.response().status == 502
        sent += 1
    per_request = [x for x in px.ms.events("upstream_error") if "request id" in x["msg"]]
    assert len(per_request) < sent, (len(per_request), sent)
    assert px.ms.stop() == 0

def test_a_response_the_ship_cuts_is_counted_with_its_status(fleet, tmp_path):
    cut_py = tmp_path / "cut_ship.py"
    cut_py.write_text(CUT_SHIP)
    cport = free_port()
    extra = f"""
[[fleet.web]]
name = "cut"
command = {toml_str(PY)}
args = [{toml_str(str(cut_py))}, "{cport}"]
bind = "tcp://127.0.0.1:{cport}"
routes = ["http:/cut"]
"""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/other"]), extra=extra)
    lab = dict(bind="http", route="/cut", target="cut")
    c = Raw(px.port)
    c.send(raw_request("GET", "/cut", []))
    r = c.response(head_only=True)
    assert r.status == 200, r
    try:
        while True:
            c._fill()
    except (EOFError, ConnectionResetError):
        pass
    assert len(c.buf) < 100, "the response is cut"
    m = poll(lambda: (lambda m: m if metric(m, "mothership_responses_total", code="2xx", **lab) == 1 else None)(
        px.metrics()), "the cut response is counted")
    assert metric(m, "mothership_requests_total", proto="http1", **lab) == 1
    assert metric(m, "mothership_responses_abandoned_total", code="2xx", **lab) == 0
    assert metric(m, "mothership_upstream_errors_total", kind="reset") == 1
    assert px.ms.stop() == 0


def test_an_upgrade_requests_body_is_not_counted_as_tunnel_bytes(fleet):
    """The body of an upgrade request goes up as that request's body, not
    through the tunnel: client_to_ship counts only what followed it."""
    px = start_proxy(fleet, echo_ship("app"))
    lab = dict(bind="http", route="/.*", target="app")
    close = bytes([0x88, 0x80 | 2]) + b"\0\0\0\0" + b"\x03\xe8"   # the ship reads the body as a close frame
    ws = Raw(px.port, timeout=10)
    ws.send(raw_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                       ("Sec-WebSocket-Version", "13"), ("Content-Length", str(len(close)))])
            + close)
    r = ws.response(head_only=True)
    assert r.status == 101, r
    m = poll(lambda: (lambda m: m if metric(m, "mothership_tunnels_closed_total", **lab) == 1 else None)(
        px.metrics()), "the tunnel's end is counted")
    assert metric(m, "mothership_tunnel_bytes_total", direction="client_to_ship", **lab) == 0
    assert px.ms.stop() == 0
