#!/usr/bin/env python3
"""probe_bay.py LOGFILE: a scripted bay for the docking tests.

Docks ($PROBE_FEATURES="binary" asks for binary messages; default none, a
pure v1 bay), appends every frame it receives to LOGFILE as one JSON line
({"type": "Boarding", ...payload...} or {"type": "Cargo", "conn_id": N,
"text": "..."}), and echoes Cargo. Text commands from a client:
  "disembark <code> <reason>"  close this client with Disembark
  "to <conn_id> <text>"        Cargo to another (maybe unknown) conn_id
  "garbage"                    send a frame of unknown type 0x7f
  "oversize"                   send a frame header announcing 64 MiB
  "truncate"                   send half a frame, then close the link
  "badutf8"                    answer with Cargo (text) that is not UTF-8
  "die"                        stop reading for 0.5 s, then exit 1 with
                               whatever came meanwhile unread (the link
                               is reset, not closed)
On SIGTERM it reads and logs what is already in its socket, then exits 0.
$PROBE_MODE=nodock: accept the link but never send Dock."""
import json
import os
import signal
import socket
import struct
import sys
import time

DOCK, MOORED, BOARDING, DISEMBARK, CARGO, CARGO_BINARY = 0x01, 0x02, 0x10, 0x11, 0x12, 0x13
NAMES = {MOORED: "Moored", BOARDING: "Boarding", DISEMBARK: "Disembark", CARGO: "Cargo", CARGO_BINARY: "CargoBinary"}

log_path = sys.argv[1]


stopping = False


def on_term(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)


def log(obj):
    with open(log_path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def read_exact(c, n, frame_start=False):
    """n bytes, or None at the end of the link (or, between frames, once
    SIGTERM came and nothing more is waiting)."""
    buf = b""
    while len(buf) < n:
        try:
            chunk = c.recv(n - len(buf))
        except socket.timeout:
            if stopping and frame_start and not buf:
                return None
            continue
        if not chunk:
            return None
        buf += chunk
    return buf


def send(c, t, payload):
    # blocking: Mothership may push back for longer than the 0.1 s the
    # link's reads wait (big echoes while a client does not read)
    c.settimeout(None)
    try:
        c.sendall(struct.pack(">BI", t, len(payload)) + payload)
    finally:
        c.settimeout(0.1)


def serve(c):
    if os.environ.get("PROBE_MODE") == "nodock":
        while not stopping:
            try:
                if not c.recv(65536):
                    return
            except socket.timeout:
                pass
        return
    hello = {"version": 1, "ship": os.environ["MS_SHIP"]}
    if os.environ.get("PROBE_FEATURES"):
        hello["features"] = os.environ["PROBE_FEATURES"].split(",")
    send(c, DOCK, json.dumps(hello).encode())
    frames(c)


def frames(c):
    """Log and answer frames until the link ends."""
    while True:
        head = read_exact(c, 5, frame_start=True)
        if head is None:
            return
        t, n = head[0], struct.unpack(">I", head[1:])[0]
        body = read_exact(c, n) if n else b""
        if body is None:
            return
        if t in (CARGO, CARGO_BINARY):
            cid = struct.unpack(">I", body[:4])[0]
            msg = body[4:]
            entry = {"type": NAMES[t], "conn_id": cid}
            if t == CARGO:
                entry["text"] = msg.decode()
            else:
                entry["hex"] = msg.hex()
            log(entry)
            text = msg.decode(errors="replace") if t == CARGO else ""
            if text.startswith("disembark "):
                _, code, reason = text.split(" ", 2)
                send(c, DISEMBARK, json.dumps({"conn_id": cid, "code": int(code), "reason": reason}).encode())
            elif text.startswith("to "):
                _, other, rest = text.split(" ", 2)
                send(c, CARGO, struct.pack(">I", int(other)) + rest.encode())
            elif text == "garbage":
                send(c, 0x7F, b"??")
            elif text == "oversize":
                c.sendall(struct.pack(">BI", CARGO, 64 << 20))
            elif text == "die":
                time.sleep(0.5)
                os._exit(1)
            elif text == "badutf8":
                send(c, CARGO, struct.pack(">I", cid) + b"\xff\xfe")
            elif text == "truncate":
                c.sendall(struct.pack(">BI", CARGO, 100) + b"abc")
                c.close()
                return
            else:
                send(c, t, body)
        else:
            entry = {"type": NAMES.get(t, hex(t))}
            entry.update(json.loads(body))
            log(entry)


path = os.environ["MS_SOCKET_PATH"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s.bind(path)
s.listen(4)
s.settimeout(0.1)
while not stopping:
    try:
        conn, _ = s.accept()
    except socket.timeout:
        continue
    conn.settimeout(0.1)  # so that SIGTERM is noticed between frames, after what was sent before it
    try:
        serve(conn)
    except OSError:
        pass
    conn.close()
os._exit(0)
