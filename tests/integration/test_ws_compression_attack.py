"""permessage-deflate against a hostile client (review of slice D): what
Mothership keeps for it and what the bay gets. Uses the helpers of
test_ws_compression.py (probe bay, raw client)."""
import os
import signal
import struct
import time

from fleet_helpers import PY
from hbay_helpers import bay_log
from test_bay_resume import bay_pid
from test_bays import bay_toml, close_or_none, start
from test_ws_compression import (PROBE, ROUTES, STARTED, connect, deflate, read_frame_rsv, still_sound,  # noqa: F401
                                 wsframe)

MASK = b"\x11\x22\x33\x44"


def fast_frame(opcode, payload, fin=True, rsv1=False):
    """wsframe, masked with int arithmetic (wsframe's loop is slow for MiBs)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    hdr = bytes([b0]) + (bytes([0x80 | n]) if n < 126 else
                         bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                         bytes([0x80 | 127]) + struct.pack(">Q", n))
    key = (MASK * (n // 4 + 1))[:n]
    x = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return hdr + MASK + x


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def probe(fleet, tmp_path, http=None):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)], routes=ROUTES), http=http)
    STARTED.append(px)
    return px, log


def test_bombs_pended_for_a_slow_bay_stay_bounded(fleet, tmp_path):
    """A bay that does not read: its queue (8 MiB) fills and the client's
    further messages wait in its pending list while Mothership stops
    reading it. Uncompressed, that list holds at most what one read
    brought (64 KiB) and one message; compressed, each KiB of one read
    inflates to 1 MiB (ws_max_message_size), so one 64 KiB read must not
    pin some 60 MiB per client."""
    px, log = probe(fleet, tmp_path)
    bomb = fast_frame(1, deflate(b"a" * ((1 << 20) - 16), 9), rsv1=True)
    s, _ = connect(px)
    s.sendall(fast_frame(1, b"hello"))
    assert read_frame_rsv(s) == (False, 1, b"hello")
    os.kill(bay_pid(px, "probe"), signal.SIGSTOP)
    try:
        # fill the bay's queue and its socket (a few MiB each) with bombs,
        # one at a time so each read holds one
        for _ in range(40):
            s.sendall(bomb)
            time.sleep(0.02)
        base = rss_kib(px.ms.proc.pid)
        clients = []
        for _ in range(4):
            c, _ = connect(px)
            c.sendall(bomb * ((60 << 10) // len(bomb)))
            clients.append(c)
        time.sleep(1.5)
        grown = (rss_kib(px.ms.proc.pid) - base) // 1024
        assert grown < 64, f"{grown} MiB more for 4 clients' 240 KiB of bombs"
    finally:
        os.kill(bay_pid(px, "probe"), signal.SIGCONT)


def test_pended_compressed_messages_reach_the_bay_in_order_and_stop_at_a_bomb(fleet, tmp_path):
    """Compressed messages that waited for a bay that did not read reach it
    whole and in order once it reads; one over the limit once inflated
    closes the client (1009) and nothing after it reaches the bay."""
    px, log = probe(fleet, tmp_path)
    s, _ = connect(px)
    s.sendall(fast_frame(1, b"hello"))
    assert read_frame_rsv(s) == (False, 1, b"hello")
    pid = bay_pid(px, "probe")
    os.kill(pid, signal.SIGSTOP)
    try:
        fill = fast_frame(1, deflate(b"f" * ((1 << 20) - 16), 9), rsv1=True)
        for _ in range(40):  # 40 MiB: past the bay's socket and its 8 MiB queue
            s.sendall(fill)
            time.sleep(0.01)
        s.sendall(wsframe(1, deflate(b"mark1 " * 20), rsv1=True) + wsframe(1, b"plain2") +
                  fast_frame(1, deflate(b"b" * (2 << 20), 9), rsv1=True) + wsframe(1, deflate(b"mark3 " * 20), rsv1=True))
        time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    s.settimeout(30)
    assert close_or_none(s) == 1009
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f), timeout=30)
    texts = [x["text"] for x in frames if x["type"] == "Cargo"]
    assert texts[0] == "hello" and texts[1:41] == ["f" * ((1 << 20) - 16)] * 40
    assert texts[41:] == ["mark1 " * 20, "plain2"]
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1009]
