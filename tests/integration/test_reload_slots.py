"""Reloads that add and remove entries, through the real binary: a removed
ship's or bay's process is freed once it has stopped and no configuration
of the data plane points at it, and its slot goes to the next new entry.
So reloads keep being applied past 1024 entries over the fleet's life (at
most 1024 at once), a bay in a reused slot docks and echoes with counters
of its own, and Mothership's memory stays where a few rounds left it. Each
round swaps every ship and the bay for new names."""
import asyncio
import os
import signal

import websockets

from conftest import BUILD
from fleet_helpers import free_port, http_get, parse_metrics, toml_str
from http_helpers import msum, wait_until

ECHO_BAY = os.path.join(BUILD, "examples", "bays", "echo-bay")
SHIPS = 100      # per round
ROUNDS = 11      # 1,100 ship names, and a bay per round, over the fleet's life


def entries(k):
    out = [f'[[bays.websocket]]\nname = "bay{k}"\ncommand = {toml_str(ECHO_BAY)}\nroutes = ["http:/ws.*"]\n']
    for j in range(SHIPS):
        out.append(f'[[fleet.web]]\nname = "s{k}x{j}"\ncommand = "sleep"\nargs = ["100"]\n'
                   f'ready_after = "10ms"\ncritical = false\n')
    return "\n".join(out)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def under_asan():
    with open(os.path.join(BUILD, "mothership"), "rb") as f:
        return b"__asan_init" in f.read()


def echo(port, text):
    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(text)
            return await ws.recv()
    return asyncio.run(asyncio.wait_for(go(), 15))


def test_reloads_past_1024_entries_reuse_slots_and_stay_bounded(fleet, tmp_path):
    port, mport = free_port(), free_port()
    head = (f'[mothership]\nmetrics_port = {mport}\nsocket_dir = "/tmp/msrs{os.getpid()}"\n'
            f'shutdown_timeout = "5s"\n\n[mothership.bind]\nhttp = "127.0.0.1:{port}"\n\n')
    path = tmp_path / "ship-manifest.toml"
    path.write_text(head + entries(0))
    ms = fleet(path.read_text(), name="ship-manifest.toml")
    ms.event("fleet_ready", timeout=30)
    rss = {}
    for k in range(1, ROUNDS + 1):
        start = len(ms.lines)
        path.write_text(head + entries(k))
        ms.signal(signal.SIGHUP)
        out = wait_until(lambda: next((e for e in ms.events()
                                       if e["_i"] >= start and e.get("event") in ("reloaded", "reload_refused")),
                                      None), timeout=20, what=f"reload {k}")
        assert out["event"] == "reloaded", (k, out, [e["msg"] for e in ms.events() if e["_i"] >= start][:5])
        ms.event("ready", ship=f"bay{k}", start=start, timeout=20)
        # the last round's entries stopped (what frees them once no configuration has them)
        gone = {f"s{k - 1}x{j}" for j in range(SHIPS)} | {f"bay{k - 1}"}
        wait_until(lambda: gone <= {e.get("ship") for e in ms.events("stopped") if e["_i"] >= start},
                   timeout=20, what=f"round {k - 1} stopped")
        # the bay of this round, in whatever slot it got, docks and echoes with counters of its own
        assert echo(port, f"hello {k}") == f"hello {k}"
        m = parse_metrics(http_get(mport, "/metrics")[1])
        assert msum(m, "mothership_bay_docked", bay=f"bay{k}") == 1
        assert msum(m, "mothership_bay_messages_total", bay=f"bay{k}", direction="in") == 1, k
        assert msum(m, "mothership_bay_boardings_total", bay=f"bay{k}") == 1, k
        assert msum(m, "mothership_bay_docked", bay=f"bay{k - 1}") == 0
        rss[k] = rss_kib(ms.pid)
    # 1,100 ship names and 12 bays went through a fleet that takes 1,024 at once
    assert (ROUNDS + 1) * (SHIPS + 1) > 1024
    if not under_asan():  # ASan's quarantine holds freed memory on purpose
        # a process kept for good costs ~11 KiB: 100 a round would be ~8 MiB over these rounds
        assert rss[ROUNDS] - rss[3] < 3 * 1024, rss
    assert ms.stop() == 0, ms.output()[-4000:]
    text = ms.output()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]
