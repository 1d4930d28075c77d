#!/usr/bin/env python3
"""python_bay.py: an echo bay speaking the docking protocol with the Python
standard library only (see docs/docking-protocol.md).

Every text or binary message a client sends comes back to it; the text
message "/close" makes the bay close that client with code 4000. Run it as a
[[bays.websocket]] bay: Mothership sets MS_SOCKET_PATH and MS_SHIP.

With DOCK_RESUME=1 it offers the "resume" feature: when it exits (or
crashes) Mothership keeps its clients open, and once it has docked again
sends a Boarding with "resumed": true for each of them; this bay then
sends such a client the text message "resumed"."""
import json
import os
import socket
import struct
import sys

DOCK, MOORED, BOARDING, DISEMBARK, CARGO, CARGO_BINARY = 0x01, 0x02, 0x10, 0x11, 0x12, 0x13
MAX_FRAME = 16 * 1024 * 1024


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            if buf:
                raise EOFError("link ended inside a frame")
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    """(type, payload), or None when the link ended between frames."""
    head = read_exact(sock, 5)
    if head is None:
        return None
    ftype, length = head[0], struct.unpack(">I", head[1:])[0]
    if length > MAX_FRAME:
        raise ValueError("frame of %d bytes is too large" % length)
    payload = read_exact(sock, length) if length else b""
    if payload is None:
        raise EOFError("link ended inside a frame")
    return ftype, payload


def send_frame(sock, ftype, payload):
    sock.sendall(struct.pack(">BI", ftype, len(payload)) + payload)


def send_json(sock, ftype, obj):
    send_frame(sock, ftype, json.dumps(obj, separators=(",", ":")).encode())


def send_cargo(sock, conn_id, data, binary=False):
    send_frame(sock, CARGO_BINARY if binary else CARGO, struct.pack(">I", conn_id) + data)


def main():
    path = os.environ.get("MS_SOCKET_PATH")
    if not path:
        sys.exit("python_bay: MS_SOCKET_PATH is not set (run me under Mothership)")
    ship = os.environ.get("MS_SHIP", "python_bay")
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    link, _ = listener.accept()
    listener.close()

    features = ["binary"] + (["resume"] if os.environ.get("DOCK_RESUME") == "1" else [])
    send_json(link, DOCK, {"version": 1, "ship": ship, "features": features})
    frame = read_frame(link)
    if frame is None or frame[0] != MOORED:
        sys.exit("python_bay: expected Moored")
    moored = json.loads(frame[1])
    binary = "binary" in moored.get("features", [])
    print("python_bay: docked, config=%r binary=%s resume=%s" % (
        moored.get("config", {}), binary, "resume" in moored.get("features", [])), file=sys.stderr, flush=True)

    clients = {}
    while True:
        frame = read_frame(link)
        if frame is None:
            return  # Mothership closed the link: exit, we will be restarted
        ftype, payload = frame
        if ftype == BOARDING:
            b = json.loads(payload)
            clients[b["conn_id"]] = b["path"]
            if b.get("resumed"):  # a client of our previous run, kept open meanwhile
                send_cargo(link, b["conn_id"], b"resumed")
        elif ftype == DISEMBARK:
            clients.pop(json.loads(payload)["conn_id"], None)
        elif ftype in (CARGO, CARGO_BINARY):
            if len(payload) < 4:
                sys.exit("python_bay: short Cargo")
            conn_id = struct.unpack(">I", payload[:4])[0]
            if conn_id not in clients:
                continue  # departed client: drop
            data = payload[4:]
            if ftype == CARGO and data == b"/close":
                send_json(link, DISEMBARK, {"conn_id": conn_id, "code": 4000, "reason": "bye"})
                clients.pop(conn_id, None)
            else:
                send_cargo(link, conn_id, data, binary=(ftype == CARGO_BINARY))
        else:
            sys.exit("python_bay: unexpected frame type 0x%02x" % ftype)


if __name__ == "__main__":
    main()
