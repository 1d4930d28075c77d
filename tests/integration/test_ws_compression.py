"""permessage-deflate (RFC 7692) between WebSocket clients and Mothership
on routes to bays with ws_compression = true: python websockets (which
offers it by default) and a raw client that builds compressed frames with
zlib, through the probe bay (which logs what reaches it and echoes it).

Covers: the answer to an offer (client_no_context_takeover always,
server_* echoed), declined offers (no header, plain frames), compressed
messages both ways while the bay sees plain text, short messages sent
plain, a route without the key, and hostile input: a decompression bomb
(1009), bad deflate data and non-UTF-8 text once inflated (1007), RSV1 on a
control frame, a continuation frame or without the agreement (1002); each
checks what the client got and that nothing of it reached the bay."""
import asyncio
import socket
import struct
import zlib

import pytest
import websockets

from fleet_helpers import PY, app
from hbay_helpers import bay_log
from http_helpers import ws_upgrade
from test_bays import bay_toml, close_or_none, read_frame, start, ws_url

PROBE = app("probe_bay.py")
TAIL = b"\x00\x00\xff\xff"
ROUTES = ({"bind": "http", "pattern": "/z.*", "ws_compression": True}, "http:/ws.*")
BIG = ("{\"chat\": \"hello there, general kenobi\", \"n\": 12345} " * 40)


STARTED = []


@pytest.fixture(autouse=True)
def still_sound(fleet):
    """After each test (before the fleet fixture stops it): Mothership runs,
    and (under ASan) reported nothing."""
    STARTED.clear()
    yield
    for px in STARTED:
        assert px.ms.proc.poll() is None
        err = "\n".join(line for _, line in px.ms.err_lines)
        assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


def probe(fleet, tmp_path, http=None):
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)], routes=ROUTES), http=http)
    STARTED.append(px)
    return px, log


def connect(px, path="/z", ext=b"permessage-deflate; client_max_window_bits"):
    """A raw client: the socket and the 101's head (lower-cased)."""
    s = socket.create_connection(("127.0.0.1", px.port))
    head = ws_upgrade(s, path, b"Sec-WebSocket-Extensions: " + ext + b"\r\n" if ext else b"")
    return s, head.decode().lower()


def extension_header(head):
    for line in head.split("\r\n"):
        if line.startswith("sec-websocket-extensions:"):
            return line.split(":", 1)[1].strip()
    return None


def wsframe(opcode, payload, fin=True, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    hdr = bytes([b0]) + (bytes([0x80 | n]) if n < 126 else
                         bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                         bytes([0x80 | 127]) + struct.pack(">Q", n))
    key = b"\x11\x22\x33\x44"
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def deflate(data, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(data):
    return zlib.decompressobj(-15).decompress(data + TAIL)


def read_frame_rsv(s):
    """(rsv1, opcode, payload) of the next frame from Mothership."""
    b0 = s.recv(1, socket.MSG_PEEK)
    assert b0, "connection closed"
    op, payload = read_frame(s)
    return bool(b0[0] & 0x40), op, payload


def cargo(log, n):
    frames = bay_log(log, lambda f: sum(x["type"] == "Cargo" for x in f) >= n)
    return [x["text"] for x in frames if x["type"] == "Cargo"]


# ------------------------------------------------------------------ the offer and its answer
@pytest.mark.parametrize("offer,answer", [
    (b"permessage-deflate; client_max_window_bits", "permessage-deflate; client_no_context_takeover"),
    (b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    (b"permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"),
    (b"permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus, x-webkit-deflate-frame", None),
    (b"permessage-deflate; server_max_window_bits=8, permessage-deflate",
     "permessage-deflate; client_no_context_takeover"),
    (b"permessage-deflate;;", None),
], ids=["plain", "nct-both", "server-bits", "all-declined", "next-offer", "malformed"])
def test_the_offer_is_answered_or_declined_and_the_handshake_never_fails(fleet, tmp_path, offer, answer):
    px, log = probe(fleet, tmp_path)
    s, head = connect(px, ext=offer)
    assert extension_header(head) == answer
    # declined: a compressed frame is a protocol error (1002) and the bay gets nothing of it
    s.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True) if answer is None else wsframe(1, b"plain still works"))
    if answer is None:
        assert close_or_none(s) == 1002
        frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
        assert not any(x["type"] == "Cargo" for x in frames)
    else:
        rsv1, op, payload = read_frame_rsv(s)
        assert (rsv1, op, payload) == (False, 1, b"plain still works")


def test_a_route_without_the_key_never_compresses(fleet, tmp_path):
    px, log = probe(fleet, tmp_path)
    s, head = connect(px, path="/ws")
    assert extension_header(head) is None
    s.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True))
    assert close_or_none(s) == 1002
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1002]
    assert not any(x["type"] == "Cargo" for x in frames)


# ------------------------------------------------------------------ messages both ways
def test_a_reused_context_keeps_no_agreement_of_its_last_client(fleet, tmp_path):
    """A worker reuses the wslay context of a client between messages for
    the next one: RSV1 allowed for a compressing client must not carry over
    to one that agreed to nothing (1002, nothing reaches the bay)."""
    log = tmp_path / "probe.jsonl"
    px = start(fleet, bay_toml("probe", PY, [PROBE, str(log)], routes=ROUTES), mothership={"workers": 1})
    STARTED.append(px)
    a, head = connect(px)
    assert extension_header(head) is not None
    for _ in range(3):  # each answer leaves a's context idle: back to the worker's pool
        a.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True))
        rsv1, op, payload = read_frame_rsv(a)
        assert rsv1 and inflate(payload) == BIG.encode()
    b, head = connect(px, path="/ws")
    assert extension_header(head) is None
    b.sendall(wsframe(1, b"plain"))
    assert read_frame_rsv(b) == (False, 1, b"plain")
    b.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True))
    assert close_or_none(b) == 1002
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [1002]
    assert cargo(log, 4) == [BIG] * 3 + ["plain"]
    # and the compressing client still compresses on a context made or reused after b's
    a.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True))
    rsv1, op, payload = read_frame_rsv(a)
    assert rsv1 and inflate(payload) == BIG.encode()


def test_compressed_both_ways_and_the_bay_sees_plain_text(fleet, tmp_path):
    px, log = probe(fleet, tmp_path)
    s, head = connect(px)
    assert "permessage-deflate" in extension_header(head)
    # compressed from the client (two messages: no context is kept between them)
    for _ in range(2):
        s.sendall(wsframe(1, deflate(BIG.encode()), rsv1=True))
        rsv1, op, payload = read_frame_rsv(s)
        assert rsv1 and op == 1 and len(payload) < len(BIG) // 4
        assert inflate(payload) == BIG.encode()  # a fresh inflater: no context from the first
    # a fragmented compressed message: RSV1 on the first frame only
    z = deflate(BIG.encode())
    s.sendall(wsframe(1, z[:10], fin=False, rsv1=True) + wsframe(0, z[10:]))
    rsv1, op, payload = read_frame_rsv(s)
    assert rsv1 and inflate(payload) == BIG.encode()
    # plain from the client on a compressed connection; short replies go plain
    s.sendall(wsframe(1, b"short"))
    assert read_frame_rsv(s) == (False, 1, b"short")
    # an empty compressed message
    s.sendall(wsframe(1, b"", rsv1=True))
    assert read_frame_rsv(s) == (False, 1, b"")
    assert cargo(log, 5) == [BIG, BIG, BIG, "short", ""]


def test_python_websockets_negotiates_and_round_trips(fleet, tmp_path):
    px, log = probe(fleet, tmp_path)

    async def go():
        async with websockets.connect(ws_url(px, "/z")) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            assert ext and ext.startswith("permessage-deflate") and "client_no_context_takeover" in ext
            for i in range(3):
                msg = BIG + str(i)
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.send("é" * 10)
            assert await ws.recv() == "é" * 10
        async with websockets.connect(ws_url(px, "/z"), compression=None) as ws:
            assert ws.response_headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(BIG)
            assert await ws.recv() == BIG
    asyncio.run(asyncio.wait_for(go(), 60))
    assert cargo(log, 5) == [BIG + "0", BIG + "1", BIG + "2", "é" * 10, BIG]


# ------------------------------------------------------------------ hostile
def compressed_bomb(n):
    return deflate(b"a" * n, 9)


@pytest.mark.parametrize("data,client_code", [
    # 4 MiB of "a" in about 4 KiB: over ws_max_message_size (64 KiB) once inflated
    (wsframe(1, compressed_bomb(4 << 20), rsv1=True), 1009),
    # just over the limit, fragmented
    (wsframe(1, compressed_bomb((64 << 10) + 1)[:5], fin=False, rsv1=True) +
     wsframe(0, compressed_bomb((64 << 10) + 1)[5:]), 1009),
    # not deflate: a reserved block type
    (wsframe(1, b"\xff\xff\xff\xff", rsv1=True), 1007),
    # deflate of bytes that are not UTF-8, as text
    (wsframe(1, deflate(b"\xff\xfe not utf-8 " * 10), rsv1=True), 1007),
    # RSV1 on a control frame, on a continuation frame
    (wsframe(9, b"", rsv1=True), 1002),
    (wsframe(1, b"half", fin=False) + wsframe(0, b"rest", rsv1=True), 1002),
], ids=["bomb", "bomb-fragmented", "bad-deflate", "not-utf8", "rsv1-ping", "rsv1-continuation"])
def test_hostile_compressed_frames_close_the_client_and_nothing_reaches_the_bay(fleet, tmp_path, data, client_code):
    px, log = probe(fleet, tmp_path, http={"ws_max_message_size": "64KiB"})
    s, head = connect(px)
    assert "permessage-deflate" in extension_header(head)
    s.sendall(data)
    assert close_or_none(s) == client_code
    frames = bay_log(log, lambda f: any(x["type"] == "Disembark" for x in f))
    assert [x["code"] for x in frames if x["type"] == "Disembark"] == [client_code]
    assert not any(x["type"] in ("Cargo", "CargoBinary") for x in frames)
    # the worker is fine: the next client is served
    s2, _ = connect(px)
    s2.sendall(wsframe(1, deflate(b"still here " * 10), rsv1=True))
    rsv1, op, payload = read_frame_rsv(s2)
    assert inflate(payload) == b"still here " * 10


def test_exactly_the_limit_once_inflated_passes(fleet, tmp_path):
    px, log = probe(fleet, tmp_path, http={"ws_max_message_size": "64KiB"})
    s, _ = connect(px)
    msg = b"b" * (64 << 10)
    s.sendall(wsframe(1, deflate(msg), rsv1=True))
    rsv1, op, payload = read_frame_rsv(s)
    assert rsv1 and inflate(payload) == msg
    assert cargo(log, 1) == [msg.decode()]
