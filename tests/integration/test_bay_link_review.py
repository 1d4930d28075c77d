"""Review of slice L: workers write big frames to a bay's socket
themselves; a partial write's rest must go before any other client's
frame, so the bay reads whole frames and each client gets its own answers
back in order."""
import asyncio
import os

import pytest
import websockets

from test_bays import ECHO_BAY, PROBE, PY, bay_toml, run, start, ws_url


@pytest.mark.parametrize("bay", ["c", "probe"])
def test_big_frames_from_clients_on_two_workers_stay_whole(fleet, tmp_path, bay):
    cmd = (ECHO_BAY, []) if bay == "c" else (PY, [PROBE, str(tmp_path / "probe.jsonl")])
    px = start(fleet, bay_toml("echo", cmd[0], cmd[1]), mothership={"workers": 2})

    async def client(i):
        async with websockets.connect(ws_url(px), max_size=None) as ws:
            msgs = [(f"c{i}m{k}:" + chr(ord("a") + (i + k) % 26) * (150000 + 7 * k)) for k in range(12)]

            async def sender():
                for m in msgs:
                    await ws.send(m)
            t = asyncio.ensure_future(sender())
            for m in msgs:
                got = await ws.recv()
                assert got == m, (i, got[:20], m[:20])
            await t

    async def go():
        await asyncio.gather(*(client(i) for i in range(8)))
    run(go(), timeout=120)
    assert not px.ms.events("link_failed", ship="echo"), px.ms.output()


def test_without_a_data_plane_a_bay_that_leaves_its_link_is_still_noticed(fleet, tmp_path):
    """No bind, so no data plane and no worker to read a docked link: the
    control loop must keep reading it, or a bay that closes its link (and
    lingers) is never noticed, nor killed."""
    from test_bays import LEAVING_BAY
    bay = tmp_path / "lingering_bay.py"
    bay.write_text(LEAVING_BAY.replace("time.sleep(0.3)", "time.sleep(30)"))
    ms = fleet("[mothership]\nsocket_dir = " + repr(f"/tmp/msl{os.getpid()}") + "\n\n"
               + bay_toml("linger", PY, [str(bay)], routes=(), extra={"critical": False, "restart": {"backoff": "10s"}}))
    ms.event("ready", ship="linger", timeout=15)
    lost = ms.event("link_failed", ship="linger", timeout=10)
    kill = ms.event("kill", ship="linger", start=lost["_i"], timeout=10)
    assert "is still running without its link" in kill["msg"], kill
