#!/usr/bin/env python3
"""bound.py PORT PIDFILE [--fork] [--setsid]: a ship that holds a port.

Listens on 127.0.0.1:PORT (no SO_REUSEPORT: a second listener fails with
"Address already in use") and answers every connection with its own pid as
a tiny HTTP/1.0 response. With --fork it also forks a grandchild that keeps
the listening socket open (it inherits it) and only sleeps; with --setsid a
double-forked daemon in a session of its own that keeps it too. Writes every
pid (its own first) to PIDFILE, one a line, atomically, once listening.
SIGTERM exits 0."""
import os
import signal
import socket
import sys
import time

port, out = int(sys.argv[1]), sys.argv[2]
flags = sys.argv[3:]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
pids = [os.getpid()]


def hold_forever():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        time.sleep(60)


if "--fork" in flags:
    child = os.fork()
    if child == 0:
        hold_forever()
    pids.append(child)
if "--setsid" in flags:
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        os.close(r)
        if os.fork() == 0:
            os.setsid()
            os.write(w, f"{os.getpid()}\n".encode())
            os.close(w)
            hold_forever()
        os._exit(0)
    os.close(w)
    os.waitpid(mid, 0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    pids.append(int(data))
with open(out + ".tmp", "w") as f:
    f.write("".join(f"{p}\n" for p in pids))
os.rename(out + ".tmp", out)
print(f"listening on {port} as {' '.join(map(str, pids))}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    conn, _ = srv.accept()
    body = f"{os.getpid()}".encode()
    try:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass
    conn.close()
