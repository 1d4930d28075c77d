#!/usr/bin/env python3
"""hostile_bay.py LOGFILE: a v1 bay that attacks its docking link.

$HOSTILE_MODE:
  garbage_with_dock  Dock and a frame of unknown type in one write
  half_with_dock     Dock and 3 bytes of a frame header, then its side closed
  huge_with_dock     Dock and a header announcing 64 MiB in one write
  garbage_after_moored  Dock, wait for Moored, then a frame of unknown type
  close_after_moored Dock, read Moored, close the link, linger
  noread             Dock, read Moored, then never read again (sleeps)
  verify             echo Cargo, checking each client's stream: a client
                     sends "TAG:SEQ" (TAG its own, SEQ 0, 1, 2...); a
                     conn_id whose TAG changes or whose SEQ skips is logged
                     as {"violation": ...}
$PROBE_FEATURES: comma-separated features to ask for (resume, binary).
Every line of LOGFILE is JSON."""
import json
import os
import socket
import struct
import sys
import time

DOCK, MOORED, BOARDING, DISEMBARK, CARGO, CARGO_BINARY = 0x01, 0x02, 0x10, 0x11, 0x12, 0x13
log_path = sys.argv[1]
mode = os.environ.get("HOSTILE_MODE", "verify")


def log(obj):
    with open(log_path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def hdr(t, n):
    return struct.pack(">BI", t, n)


def read_exact(c, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def serve(c):
    hello = {"version": 1, "ship": os.environ["MS_SHIP"]}
    if os.environ.get("PROBE_FEATURES"):
        hello["features"] = os.environ["PROBE_FEATURES"].split(",")
    dock = json.dumps(hello).encode()
    dock = hdr(DOCK, len(dock)) + dock
    if mode == "garbage_with_dock":
        c.sendall(dock + hdr(0x7F, 2) + b"??")
    elif mode == "half_with_dock":  # then closes the link inside that frame
        c.sendall(dock + hdr(CARGO, 100)[:3])
        read_exact(c, 5)  # Moored read (else the close resets the link)
        c.shutdown(socket.SHUT_WR)
        while True:
            time.sleep(10)
    elif mode == "huge_with_dock":
        c.sendall(dock + hdr(CARGO, 64 << 20))
    else:
        c.sendall(dock)
    head = read_exact(c, 5)
    if head is None or head[0] != MOORED:
        log({"error": "no Moored", "head": head.hex() if head else None})
        return
    read_exact(c, struct.unpack(">I", head[1:])[0])
    log({"type": "Moored"})
    if mode == "garbage_after_moored":
        c.sendall(hdr(0x7F, 2) + b"??")
    if mode == "close_after_moored":
        c.close()
        while True:
            time.sleep(10)
    if mode == "noread":
        log({"noread": True})
        while True:
            time.sleep(10)
    streams = {}
    bad = 0
    while True:
        head = read_exact(c, 5)
        if head is None:
            log({"eof": True, "streams": len(streams)})
            return
        t, n = head[0], struct.unpack(">I", head[1:])[0]
        body = read_exact(c, n) if n else b""
        if body is None:
            log({"eof": "inside a frame"})
            return
        if t not in (BOARDING, DISEMBARK, CARGO, CARGO_BINARY):
            log({"violation": "unknown frame type %#x len %d" % (t, n)})
            continue
        if t == BOARDING:
            b = json.loads(body)
            streams[b["conn_id"]] = None
            continue
        if t == DISEMBARK:
            streams.pop(json.loads(body)["conn_id"], None)
            continue
        cid = struct.unpack(">I", body[:4])[0]
        msg = body[4:]
        try:
            tag, seq = msg.decode().rsplit(":", 1)
            seq = int(seq)
        except Exception:
            bad += 1
            log({"violation": "not TAG:SEQ", "conn_id": cid, "msg": msg[:80].hex(), "len": len(msg)})
            c.sendall(head + body)
            continue
        if cid not in streams:
            log({"violation": "Cargo of a conn_id not boarded", "conn_id": cid})
        prev = streams.get(cid)
        if prev is not None and (prev[0] != tag or seq != prev[1] + 1):
            log({"violation": "stream", "conn_id": cid, "had": prev, "got": [tag, seq]})
        streams[cid] = (tag, seq)
        c.sendall(head + body)


path = os.environ["MS_SOCKET_PATH"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s.bind(path)
s.listen(4)
while True:
    conn, _ = s.accept()
    try:
        serve(conn)
    except OSError as e:
        log({"oserror": str(e)})
    conn.close()
