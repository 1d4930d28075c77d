"""permessage-deflate against a hostile client (review of slice D): what
Mothership keeps for it and what the bay gets. Uses the helpers of
test_ws_compression.py (probe bay, raw client)."""
import os
import signal
import socket
import struct
import time
import zlib

from fleet_helpers import PY, rss_kib
from hbay_helpers import bay_log
from test_bay_resume import bay_pid
from test_bays import bay_toml, close_or_none, start
from test_ws_compression import (BIG, PROBE, ROUTES, STARTED, TAIL, cargo, connect, deflate,  # noqa: F401
                                 extension_header, inflate, read_frame_rsv, still_sound, wsframe)

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


def sanitized(pid):
    """ASan keeps freed memory in quarantine: RSS says nothing there."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


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
        assert sanitized(px.ms.proc.pid) or grown < 64, f"{grown} MiB more for 4 clients' 240 KiB of bombs"
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


def test_a_text_message_cut_inside_a_stored_block_is_refused(fleet, tmp_path):
    """A stored block announcing more bytes than the message holds: the
    tail the server appends is read as its data (00 00 ff ff), which is not
    UTF-8, so a text message ends with 1007 and the bay gets nothing. (A
    binary one reaches the bay with those 4 bytes, as zlib reads it.)"""
    px, log = probe(fleet, tmp_path)
    s, _ = connect(px)
    payload = b"\x00" + struct.pack("<HH", 8, 0xffff ^ 8) + b"abcd"
    s.sendall(wsframe(1, payload, rsv1=True) + wsframe(1, b"after"))
    s.settimeout(10)
    assert close_or_none(s) == 1007
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert not any(x["type"] == "Cargo" for x in frames)


def test_server_max_window_bits_9_is_honoured(fleet, tmp_path):
    px, log = probe(fleet, tmp_path)
    s, head = connect(px, ext=b"permessage-deflate; server_max_window_bits=9")
    assert extension_header(head) == "permessage-deflate; client_no_context_takeover; server_max_window_bits=9"
    msg = os.urandom(200).hex() * 20  # repeats 400 bytes apart: inside 512
    s.sendall(wsframe(1, deflate(msg.encode()), rsv1=True))
    rsv1, op, payload = read_frame_rsv(s)
    assert rsv1 and zlib.decompressobj(-9).decompress(payload + TAIL) == msg.encode()


def test_pings_inside_a_fragmented_compressed_message(fleet, tmp_path):
    px, log = probe(fleet, tmp_path)
    s, _ = connect(px)
    z = deflate(BIG.encode())
    s.sendall(wsframe(1, z[:7], fin=False, rsv1=True) + wsframe(9, b"p1") + wsframe(0, z[7:20], fin=False) +
              wsframe(9, b"p2") + wsframe(0, z[20:]))
    got = [read_frame_rsv(s) for _ in range(3)]
    assert got[0] == (False, 10, b"p1") and got[1] == (False, 10, b"p2")
    assert got[2][0] and inflate(got[2][2]) == BIG.encode()
    assert cargo(log, 1) == [BIG]


def test_a_bad_stream_mid_burst_does_not_corrupt_the_next_clients_message(fleet, tmp_path):
    """The worker's inflater after an error inside a message, and after a
    stream left mid-block: the next message (another client's) is read
    afresh."""
    px, log = probe(fleet, tmp_path, http={"ws_max_message_size": "64KiB"})
    cases = [
        deflate(BIG.encode())[:30] + b"\xff\xff\xff",          # error mid-stream
        deflate(b"a" * (1 << 20), 9),                         # too big, inflater left mid-block
        deflate(BIG.encode())[:-3],                            # a block cut short (no error)
    ]
    for bad in cases:
        s, _ = connect(px)
        s.sendall(wsframe(1, bad, rsv1=True))
        s.settimeout(5)
        try:
            close_or_none(s)
        except (EOFError, socket.timeout, ConnectionError):
            pass
        s2, _ = connect(px)
        s2.sendall(wsframe(1, deflate(b"next client " * 10), rsv1=True))
        rsv1, op, payload = read_frame_rsv(s2)
        assert op == 1 and inflate(payload) == b"next client " * 10
    texts = [x["text"] for x in bay_log(log, lambda f: sum(
        x["type"] == "Cargo" and x["text"].startswith("next client") for x in f) >= 3) if x["type"] == "Cargo"]
    assert texts.count("next client " * 10) == 3


def test_many_small_bombs_reach_the_bay_whole_and_memory_returns(fleet, tmp_path):
    px, log = probe(fleet, tmp_path, http={"ws_max_message_size": "256KiB"})
    s, _ = connect(px)
    one = b"x" * (256 << 10)
    z = fast_frame(1, deflate(one, 9), rsv1=True)
    n = 40
    base = rss_kib(px.ms.proc.pid)
    for _ in range(n):
        s.sendall(z)
        rsv1, op, payload = read_frame_rsv(s)
        assert inflate(payload) == one
    s.close()
    time.sleep(0.5)
    assert sanitized(px.ms.proc.pid) or (rss_kib(px.ms.proc.pid) - base) // 1024 < 32


def test_over_h2_the_offer_is_answered_and_a_bomb_is_refused(fleet, tmp_path):
    """RFC 8441 extended CONNECT on an h2c bind: the same agreement, a
    compressed message round trip, and a bomb closed with 1009 with
    nothing at the bay."""
    from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame
    from fleet_helpers import free_port
    from http_helpers import start_proxy
    from test_h2 import H2
    log = tmp_path / "probe.jsonl"
    port = free_port()
    px = start_proxy(fleet, binds={"http": {"port": port, "h2c": True}},
                     http={"ws_max_message_size": "64KiB"},
                     mothership={"socket_dir": f"/tmp/msbh{os.getpid()}"},
                     extra=bay_toml("probe", PY, [PROBE, str(log)], routes=ROUTES))
    STARTED.append(px)
    px.ms.event("ready", ship="probe", timeout=15)
    c = H2(port)
    try:
        c.until(lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags)
        c.send(c.headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                             (":authority", "test"), (":path", "/z"), ("sec-websocket-version", "13"),
                             ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")],
                         end_stream=False))
        h = c.until(lambda f: isinstance(f, (HeadersFrame, RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
        assert isinstance(h, HeadersFrame), h
        hd = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in h.decoded}
        assert hd[":status"] == "200"
        assert hd.get("sec-websocket-extensions") == "permessage-deflate; client_no_context_takeover", hd

        def data():
            """One WebSocket frame's bytes from stream 1."""
            got = b""
            while True:
                f = c.until(lambda f: isinstance(f, (DataFrame, RstStreamFrame, GoAwayFrame)) and f.stream_id in (0, 1))
                assert isinstance(f, DataFrame), (f, got)
                got += bytes(f.data)
                if f.data:
                    c.send(WindowUpdateFrame(0, len(f.data)), WindowUpdateFrame(1, len(f.data)))
                if len(got) >= 4 or (len(got) >= 2 and got[1] & 0x7f < 126):
                    n = got[1] & 0x7f
                    hl = 4 if n == 126 else 2
                    n = struct.unpack(">H", got[2:4])[0] if n == 126 else n
                    if len(got) >= hl + n:
                        return got, None

        c.send(DataFrame(1, wsframe(1, deflate(BIG.encode()), rsv1=True)))
        got, _ = data()
        assert got[0] == 0xC1, got[:4]  # FIN, RSV1, text
        hl = 4 if got[1] & 0x7f == 126 else 2
        assert inflate(got[hl:]) == BIG.encode()
        wire = fast_frame(1, deflate(b"a" * (1 << 20), 9), rsv1=True)
        c.send(*[DataFrame(1, wire[i:i + 16384]) for i in range(0, len(wire), 16384)])
        got, _ = data()
        assert got[0] == 0x88 and struct.unpack(">H", got[2:4])[0] == 1009, got[:16]
    finally:
        c.close()
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["text"] for x in frames if x["type"] == "Cargo"] == [BIG]
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1009]
