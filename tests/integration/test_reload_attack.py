"""Reload attacked through the real binary (SIGHUP): a WebSocket client of
an unchanged bay keeps echoing across reloads that add and remove another
ship; a payload module whose file changed under the same path is loaded
again (the manifest text did not change). Each test ends with a stop, exit
0 and no sanitizer report (run on build-asan too)."""
import asyncio
import os
import shutil
import signal

import pytest
import requests
import websockets

from conftest import BUILD
from fleet_helpers import rss_kib
from http_helpers import echo_ship, start_proxy, toml_str

ECHO_BAY = os.path.join(BUILD, "examples", "bays", "echo-bay")
WASM = os.path.join(BUILD, "examples", "payloads")


def manifest_path(p):
    args = p.ms.cmd
    return args[args.index("-c") + 1]


def sighup(p, text=None):
    """Rewrite the manifest (unless text is None), SIGHUP, and wait for the
    reload's outcome line; return it."""
    if text is not None:
        with open(manifest_path(p), "w") as f:
            f.write(text)
    start = len(p.ms.lines)
    p.ms.signal(signal.SIGHUP)
    return p.ms.event(None, start=start, timeout=15, msg=r"^reload (\(|refused)")


def stop_clean(p):
    assert p.ms.stop() == 0, p.ms.output()[-4000:]
    text = p.ms.output()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]


def bay_toml(name="echo"):
    return (f'[[bays.websocket]]\nname = "{name}"\ncommand = {toml_str(ECHO_BAY)}\n'
            'routes = ["http:/ws.*"]\n')


def test_a_websocket_of_an_unchanged_bay_keeps_echoing_across_ten_reloads(fleet):
    if not os.path.exists(ECHO_BAY):
        pytest.skip("the example bays are not built")
    b = echo_ship("b", routes=["http:/b/.*"])
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]),
                    mothership={"socket_dir": f"/tmp/msra{os.getpid()}"}, extra=bay_toml())
    p.ms.event("ready", ship="echo", timeout=15)
    with open(manifest_path(p)) as f:
        without_b = f.read()
    with_b = without_b + "\n" + b.toml()

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{p.port}/ws") as ws:
            for i in range(10):
                e = await asyncio.to_thread(sighup, p, with_b if i % 2 == 0 else without_b)
                assert e["event"] == "reloaded", e
                await ws.send(f"m{i}")
                assert await asyncio.wait_for(ws.recv(), 10) == f"m{i}"
    asyncio.run(asyncio.wait_for(go(), 120))
    assert not [e for e in p.ms.events("stopping") if e.get("ship") == "echo"]
    stop_clean(p)


def test_a_payload_whose_file_changed_is_loaded_again(fleet, tmp_path):
    wasm = tmp_path / "mod.wasm"
    shutil.copy(os.path.join(WASM, "rewrite.wasm"), wasm)
    module = f'[[modules]]\nname = "m"\nwasm = {toml_str(str(wasm))}\nroutes = ["/a/.*"]\n'
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]), extra=module)
    assert requests.get(p.url("/a/x"), timeout=5).status_code == 200
    # the same manifest; the module's file now holds the auth payload (no token: 401)
    shutil.copy(os.path.join(WASM, "auth.wasm"), str(wasm) + ".new")
    os.rename(str(wasm) + ".new", wasm)
    e = sighup(p)
    assert e["event"] == "reloaded", e
    assert requests.get(p.url("/a/x"), timeout=5).status_code == 401
    stop_clean(p)


def test_a_reload_that_restarts_a_starting_ship_does_not_end_the_launch(fleet, tmp_path):
    gate = tmp_path / "gate"
    g = echo_ship("g", routes=["http:/g/.*"], gate=str(gate), extra={"ready_timeout": "60s"})
    d = echo_ship("d", routes=["http:/d/.*"], extra={"depends_on": ["g"]})
    p = start_proxy(fleet, g, d, wait=False)
    p.ms.event("started", ship="g", timeout=15)
    with open(manifest_path(p)) as f:
        text = f.read()
    # g changes while it is still starting (its port is not open: no gate yet)
    e = sighup(p, text.replace('ready_timeout = "60s"', 'ready_timeout = "60s"\nenv = { X = "1" }'))
    assert "1 restarted (g: env.X)" in e["msg"], e
    p.ms.event("started", ship="g", start=e["_i"], timeout=15)
    assert p.ms.events("fleet_ready") == [], p.ms.events("fleet_ready")
    gate.touch()
    ready = p.ms.event("fleet_ready", timeout=15)
    assert "not up" not in ready["msg"], ready
    assert p.ms.events("ready", ship="d"), p.ms.output()
    stop_clean(p)


def test_a_removed_ship_does_not_keep_its_log_history(fleet, tmp_path):
    """Each removed ship wrote 64 KiB of log lines (its whole dashboard
    history); removed 30 times, that history must not stay behind (30 x
    64 KiB held would be 1.9 MiB)."""
    path = tmp_path / "ship-manifest.toml"
    head = (f'[mothership]\nsocket_dir = "/tmp/msrl{os.getpid()}"\n\n'
            '[[fleet.web]]\nname = "keep"\ncommand = "sleep"\nargs = ["1000"]\nready_after = "10ms"\n')
    chatty = ("import sys, time\nfor i in range(700): print('x' * 100)\n"
              "print('written', flush=True)\ntime.sleep(1000)\n")

    def with_chatty(i):
        return head + (f'\n[[fleet.web]]\nname = "chatty{i}"\ncommand = "/usr/bin/python3"\n'
                       f'args = ["-c", {toml_str(chatty)}]\nready_after = "10ms"\ncritical = false\n')

    path.write_text(head)
    ms = fleet(path.read_text(), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=15)
    manifest = ms.cmd[ms.cmd.index("-c") + 1]

    def cycle(i):
        for text in (with_chatty(i), head):
            with open(manifest, "w") as f:
                f.write(text)
            start = len(ms.lines)
            ms.signal(signal.SIGHUP)
            ms.event("reloaded", start=start, timeout=15)
            if text != head:
                ms.wait_for(rf'"source":"chatty{i}".*"msg":"written"', start=start, timeout=15)
            else:
                ms.event("stopped", ship=f"chatty{i}", start=start, timeout=15)

    for i in range(5):  # warm up: allocator arenas, the reload paths
        cycle(i)
    before = rss_kib(ms.pid)
    for i in range(5, 35):
        cycle(i)
    grown = rss_kib(ms.pid) - before
    with open(f"/proc/{ms.pid}/maps") as f:
        sanitized = "libasan" in f.read()  # ASan keeps freed memory in quarantine: RSS says nothing there
    assert sanitized or grown < 1024, f"RSS grew by {grown} KiB over 30 removed ships"
    assert ms.stop() == 0, ms.output()[-4000:]


def test_clients_of_a_removed_bay_are_told_it_went_away_and_of_a_changed_one_to_come_back(fleet):
    """1012 (restart: come back) for a bay that changed, 1001 (going away)
    for one the reload removed: a client that reconnects on 1012 would
    only find a 404."""
    if not os.path.exists(ECHO_BAY):
        pytest.skip("the example bays are not built")
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]),
                    mothership={"socket_dir": f"/tmp/msrb{os.getpid()}"}, extra=bay_toml())
    p.ms.event("ready", ship="echo", timeout=15)
    with open(manifest_path(p)) as f:
        text = f.read()
    changed = text.replace('routes = ["http:/ws.*"]', 'routes = ["http:/ws.*"]\nenv = { X = "1" }')
    removed = text[:text.index("[[bays.websocket]]")]

    async def closed_by(new_text):
        async with websockets.connect(f"ws://127.0.0.1:{p.port}/ws") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            e = await asyncio.to_thread(sighup, p, new_text)
            assert e["event"] == "reloaded", e
            with pytest.raises(websockets.ConnectionClosed) as c:
                await asyncio.wait_for(ws.recv(), 15)
            return c.value.rcvd.code if c.value.rcvd else None

    start = len(p.ms.lines)
    assert asyncio.run(closed_by(changed)) == 1012
    p.ms.event("ready", ship="echo", start=start, timeout=15)
    assert asyncio.run(closed_by(removed)) == 1001
    assert requests.get(p.url("/ws"), timeout=5).status_code == 404
    stop_clean(p)
