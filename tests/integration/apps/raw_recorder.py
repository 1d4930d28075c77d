#!/usr/bin/env python3
"""An HTTP/1.1 ship that records the exact bytes it receives (the framing
tests, test_http_framing.py).

    raw_recorder.py --port N --dir DIR

Every accepted connection gets a number; the bytes it receives are appended
to DIR/conn-NNNNNN.bin as they arrive (so a test reads what reached the ship
even when no request was complete). Each request the ship itself can parse
(Content-Length or chunked body, as it reads them) is logged as one JSON
line in DIR/requests.jsonl ({"conn", "method", "target", "headers", "body"})
and answered with 200 and the body "ok <target>\\n", keep-alive. When a
connection ends, its file name is appended to DIR/closed.txt.

Query parameters of the target change the answer:
    connhdr=V    add "Connection: V" to the answer (a ship naming its own
                 framing header as hop-by-hop)
    size=N       pad the body to N bytes with dots
    hdr=NAME:VALUE:COUNT  add the header (COUNT > 1: NAME0..NAME<COUNT-1>)
SIGTERM exits 0 at once."""
import argparse
import json
import os
import signal
import socket
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--dir", required=True)
a = ap.parse_args()

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
os.makedirs(a.dir, exist_ok=True)
log_lock = threading.Lock()
seq_lock = threading.Lock()
seq = [0]


class Conn:
    def __init__(self, sock, n):
        self.s = sock
        self.n = n
        self.buf = b""
        self.rec = open(os.path.join(a.dir, f"conn-{n:06d}.bin"), "ab", buffering=0)

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.rec.write(d)
        self.buf += d

    def line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self.fill()
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def serve(c):
    while True:
        start = c.line()
        if start == b"":
            continue
        method, target, _ = start.decode("latin-1").split(" ", 2)
        headers = []
        while True:
            ln = c.line()
            if ln == b"":
                break
            k, v = ln.decode("latin-1").split(":", 1)
            headers.append([k.strip(), v.strip()])
        low = {k.lower(): v for k, v in headers}
        body = b""
        if "chunked" in low.get("transfer-encoding", "").lower():
            while True:
                size = int(c.line().split(b";")[0], 16)
                if size == 0:
                    while c.line() != b"":
                        pass
                    break
                body += c.exact(size)
                c.exact(2)
        elif "content-length" in low:
            body = c.exact(int(low["content-length"]))
        entry = {"conn": c.n, "method": method, "target": target, "headers": headers,
                 "body": body.decode("latin-1")}
        with log_lock:
            with open(os.path.join(a.dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        out = f"ok {target}\n".encode("latin-1")
        out += b"." * (int(q.get("size", ["0"])[0]) - len(out))
        extra = "".join(f"Connection: {v}\r\n" for v in q.get("connhdr", []))
        for name, value, count in (h.split(":", 2) for h in q.get("hdr", [])):
            extra += "".join(f"{name}{i}: {value}\r\n" if int(count) > 1 else f"{name}: {value}\r\n"
                             for i in range(int(count)))
        c.s.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(out)}\r\n{extra}\r\n"
                    .encode("latin-1") + out)


def handle(sock):
    with seq_lock:
        seq[0] += 1
        n = seq[0]
    c = Conn(sock, n)
    try:
        serve(c)
    except (EOFError, ConnectionError, ValueError, OSError):
        pass
    finally:
        c.rec.close()
        with log_lock:
            with open(os.path.join(a.dir, "closed.txt"), "a") as f:
                f.write(f"conn-{n:06d}.bin\n")
        try:
            sock.close()
        except OSError:
            pass


ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", a.port))
ls.listen(128)
while True:
    s, _ = ls.accept()
    threading.Thread(target=handle, args=(s,), daemon=True).start()
