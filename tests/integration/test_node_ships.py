"""Node ships: a real Express app with a `ws` WebSocket server on the same
HTTP server (apps/express_ship.js; Express and ws from npm, pinned by
tests/integration/node/package.json and installed by scripts/node-deps.sh,
which `make test` runs) behind Mothership:

- a streamed text/plain answer (five res.write() calls, each released by
  the test once the one before arrived, decompressed) arrives piece by
  piece under gzip and br: the compressor is flushed after each read;
- a HEAD of that answer gets the head its GET gets;
- WebSocket messages echo through the tunnel, and when it closes the
  tunnel series count its exact bytes both ways and one closed tunnel;
- at shutdown an open WebSocket to the ship gets a 1001 close frame;
- `kill -HUP` sent to the ship's shim reaches node, which keeps serving,
  and the default stop signal (SIGTERM) stops it cleanly.

Skipped, with the reason, when node or the npm modules are missing."""
import asyncio
import os
import re
import shutil
import signal

import pytest
import websockets

from fleet_helpers import app, free_port, http_get, metric, toml_str
from http_helpers import ModuleFleet, Raw, raw_request, start_proxy, toml_value
from test_fleet_shim_signals import parent_of
from test_http_streaming import PIECES, framing_of, stream, tmp  # noqa: F401 (tmp is a fixture)
from test_http_traffic_metrics import poll

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = shutil.which("node") or shutil.which("nodejs")
SHIP = app("express_ship.js")


def node_modules():
    """The node_modules that holds express and ws: $MS_NODE_MODULES, else
    the one scripts/node-deps.sh fills in $MS_BUILD or in ./build."""
    cands = [os.environ.get("MS_NODE_MODULES")]
    if os.environ.get("MS_BUILD"):
        cands.append(os.path.join(os.environ["MS_BUILD"], "node", "node_modules"))
    cands.append(os.path.join(ROOT, "build", "node", "node_modules"))
    for d in cands:
        if d and all(os.path.isfile(os.path.join(d, m, "package.json")) for m in ("express", "ws")):
            return d
    return None


MODULES = node_modules()
if NODE is None:
    pytest.skip("node tests: node is not installed (scripts/deps.sh installs nodejs and npm)",
                allow_module_level=True)
if MODULES is None:
    pytest.skip("node tests: express and ws are not installed (scripts/node-deps.sh, run by make test)",
                allow_module_level=True)


def express_ship(port, name="express"):
    args = [SHIP, "--modules", MODULES, "--port", str(port)]
    return "\n".join([
        "[[fleet.web]]", f'name = "{name}"', f"command = {toml_str(NODE)}",
        f"args = {toml_value(args)}", f'bind = "tcp://127.0.0.1:{port}"', 'routes = ["http:/.*"]', ""])


def start(fleet, **mothership):
    px = start_proxy(fleet, mothership=mothership or None, extra=express_ship(free_port()))
    px.ms.event("fleet_ready", timeout=20)
    return px


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    f = ModuleFleet(tmp_path_factory, "express")
    p = start(f, compression=True)
    yield p
    f.cleanup()


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("enc", ["gzip", "br"])
def test_express_stream_arrives_piece_by_piece_compressed(px, tmp, enc):
    resp, arrivals = stream(px, tmp, enc, "text/plain")
    assert resp.header("content-encoding") == enc, resp.headers
    assert resp.header("x-powered-by") == "Express", resp.headers
    assert len(arrivals) == PIECES


def test_express_stream_arrives_piece_by_piece_uncompressed(px, tmp):
    resp, arrivals = stream(px, tmp, None, "text/plain")
    assert resp.header("content-encoding") is None, resp.headers
    assert len(arrivals) == PIECES


@pytest.mark.parametrize("enc", ["gzip", "br"])
def test_express_head_of_the_stream_gets_its_gets_headers(px, tmp, enc):
    get, _ = stream(px, tmp, enc, "text/plain")
    with Raw(px.port) as c:
        c.send(raw_request("HEAD", "/stream?n=5&ctype=text/plain", [("Accept-Encoding", enc)]))
        head = c.response(head_only=True)
        assert head.status == 200, head
        assert framing_of(head) == framing_of(get), (head.headers, get.headers)
        assert c.closed(0.3) is False and c.buf == b""          # and no body bytes
        c.send(raw_request("GET", "/hello"))                     # the connection goes on
        assert c.response().body == b"hello from express\n"


# ------------------------------------------------------------------ WebSocket
async def ws_connect(port):
    return await websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None,
                                    ping_interval=None, close_timeout=5)


def test_ws_echo_and_the_tunnel_bytes_both_ways(fleet):
    px = start(fleet)
    lab = dict(bind="http", route="/.*", target="express")
    text, blob = "hello", bytes(range(200))

    async def talk():
        ws = await ws_connect(px.port)
        await ws.send(text)
        assert await ws.recv() == text
        await ws.send(blob)
        assert await ws.recv() == blob
        await ws.close()
        assert ws.close_code == 1000, ws.close_code

    asyncio.run(talk())
    m = poll(lambda: (lambda m: m if metric(m, "mothership_tunnels_closed_total", **lab) == 1 else None)(
        px.metrics()), "the tunnel's end is counted")
    # client frames are masked (4 bytes), a 200-byte payload takes 2 more
    # length bytes; the close carries code 1000 each way
    up = (2 + 4 + len(text)) + (2 + 2 + 4 + len(blob)) + (2 + 4 + 2)
    down = (2 + len(text)) + (2 + 2 + len(blob)) + (2 + 2)
    assert metric(m, "mothership_tunnel_bytes_total", direction="client_to_ship", **lab) == up
    assert metric(m, "mothership_tunnel_bytes_total", direction="ship_to_client", **lab) == down
    assert metric(m, "mothership_tunnels_closed_total", **lab) == 1
    assert metric(m, "mothership_responses_total", code="1xx", **lab) == 1
    assert px.ms.stop() == 0, px.ms.output()


def test_an_open_websocket_gets_1001_at_shutdown(fleet):
    """express_ship.js drops its WebSockets without a close frame on
    SIGTERM: the 1001 is Mothership's."""
    px = start(fleet)

    async def talk():
        ws = await ws_connect(px.port)
        await ws.send("before")
        assert await ws.recv() == "before"
        px.ms.signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code

    assert asyncio.run(talk()) == 1001
    assert px.ms.wait_exit(timeout=15) == 0, px.ms.output()


# ------------------------------------------------------------------ signals
def test_a_hup_sent_to_the_shim_reaches_node_which_keeps_serving(fleet):
    px = start(fleet)
    ms = px.ms
    pid = int(re.search(r"\(pid (\d+)\)", ms.event("started", ship="express")["msg"]).group(1))
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[1] == SHIP.encode(), "the pid logged is node's own"
    shim = parent_of(pid)
    assert shim not in (pid, ms.pid)
    for _ in range(2):
        mark = len(ms.lines)
        os.kill(shim, signal.SIGHUP)
        ms.wait_for(r'"source":"express".*"msg":"got SIGHUP"', start=mark)
        assert http_get(px.port, "/hello") == (200, "hello from express\n")
    assert parent_of(pid) == shim
    assert len(ms.events("started", ship="express")) == 1 and not ms.events("exited"), ms.output()
    # the default stop_signal, SIGTERM: Express closes and exits 0, no SIGKILL
    assert ms.stop() == 0, ms.output()
    stopped = ms.event("stopped", ship="express")
    assert re.fullmatch(rf'ship "express" \(pid {pid}\) stopped \(exit 0\) in \d+ms', stopped["msg"]), stopped
    assert "closed on SIGTERM" in [e["msg"] for e in ms.child_lines("express")], ms.output()
    assert not ms.events("kill"), ms.output()
