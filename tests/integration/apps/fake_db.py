#!/usr/bin/env python3
"""A stand-in database server that listens at once but is not ready until a
test says so, the way PostgreSQL, redis and mysql start.

    fake_db.py --proto postgres|redis|mysql --port N --not-ready FILE

While FILE exists, each client gets what the real server says while it
starts: postgres an ErrorResponse with SQLSTATE 57P03 (after reading the
startup message), redis -LOADING (after PING), mysql an ERR packet 1040.
Otherwise it gets the ready answer: postgres an authentication request
(SASL), redis +PONG, mysql a protocol-10 greeting. Each answer is logged on
stdout as "<proto> answered ready" or "<proto> answered not-ready", so a
test can tell that the server was asked while it was not ready."""
import argparse
import os
import signal
import socket
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--proto", required=True, choices=["postgres", "redis", "mysql"])
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--not-ready", required=True)
a = ap.parse_args()

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def pg_msg(kind, body):
    return kind + struct.pack(">I", len(body) + 4) + body


def read_exact(c, n):
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(c):
    ready = not os.path.exists(a.not_ready)
    if a.proto == "postgres":
        head = read_exact(c, 4)
        if head is None:
            return
        rest = read_exact(c, struct.unpack(">I", head)[0] - 4)
        if rest is None or struct.unpack(">I", rest[:4])[0] != 196608 or b"user\0" not in rest:
            return  # not a protocol 3.0 startup message
        if ready:
            c.sendall(pg_msg(b"R", struct.pack(">I", 10) + b"SCRAM-SHA-256\0\0"))
        else:
            c.sendall(pg_msg(b"E", b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"))
    elif a.proto == "redis":
        if read_exact(c, 6) != b"PING\r\n":
            return
        c.sendall(b"+PONG\r\n" if ready else b"-LOADING Redis is loading the dataset in memory\r\n")
    else:
        if ready:
            payload = b"\x0a8.0.36-fake\0" + struct.pack("<I", 1) + b"abcdefgh\0"
        else:
            payload = b"\xff" + struct.pack("<H", 1040) + b"Too many connections"
        c.sendall(struct.pack("<I", len(payload))[:3] + b"\0" + payload)
    sys.stdout.write(f"{a.proto} answered {'ready' if ready else 'not-ready'}\n")
    sys.stdout.flush()


s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", a.port))
s.listen(16)
while True:
    conn, _ = s.accept()
    conn.settimeout(5)
    try:
        serve(conn)
    except OSError:
        pass
    finally:
        conn.close()
