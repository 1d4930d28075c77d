#!/usr/bin/env python3
"""An HTTP/1.1 backend ship for the data-plane tests (test_http_*.py).

    echo_backend.py (--port N | --unix PATH) [--name NAME] [--gate FILE]

Threaded, one thread per connection, keep-alive, written by hand (no
http.server) so that every byte on the wire is under the test's control.
Every request is answered with JSON describing what arrived:

    {"name", "method", "target", "path", "query", "version",
     "headers": [[name, value], ...] (in order, as received),
     "body_len", "body_sha256", "body" (text, when under 64 KiB), "chunked"}

Query parameters change the answer:
    status=N     answer with status N (no body for 1xx/204/304)
    size=N       answer with N bytes of a fixed pattern (bytes(i % 251))
    echo=1       answer with the request body itself, byte for byte
    chunked=1    frame the answer with Transfer-Encoding: chunked
                 (several chunks); eof=1: no length at all, close after
    delay=MS     wait that long before answering
    reset=1      close the connection with a RST instead of answering
    hop=1        add hop-by-hop response headers (Keep-Alive,
                 Proxy-Connection, a header named in Connection)
    close=1      answer with Connection: close and close
    ctype=T      use Content-Type T;  ce=E: send Content-Encoding: E (body as is)
An `Expect: 100-continue` request gets "100 Continue" before its body is
read. GET /ws with a WebSocket handshake (or /ws?force=1, whatever the headers) is a WebSocket echo (text and
binary frames are sent back, ping is ponged, close is answered).
GET /_stop_listening closes the listening socket (and every connection
after its current answer): from then on, connecting is refused.
With --gate FILE it only starts listening once FILE exists. SIGTERM exits 0
at once (so a request cut by a ship stop shows up as a failure)."""
import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import threading
import time
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int)
ap.add_argument("--unix")
ap.add_argument("--name", default="echo")
ap.add_argument("--gate")
a = ap.parse_args()

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATTERN = bytes(i % 251 for i in range(251))
stopping = threading.Event()
listener = None


def pattern(n):
    reps = n // len(PATTERN) + 1
    return (PATTERN * reps)[:n]


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_body(c, headers):
    h = {k.lower(): v for k, v in headers}
    if "chunked" in h.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int(c.line().split(b";")[0].strip(), 16)
            if size == 0:
                while c.line() != b"":   # trailers
                    pass
                return b"".join(parts), True
            parts.append(c.exact(size))
            if c.exact(2) != b"\r\n":
                raise ValueError("bad chunk end")
    n = int(h.get("content-length", "0") or 0)
    return c.exact(n), False


def send_chunked(sock, body, eof=False):
    if eof:
        sock.sendall(body)
        return
    out = []
    step = max(1, len(body) // 4) if body else 1
    for i in range(0, len(body), step):
        piece = body[i:i + step]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    out.append(b"0\r\n\r\n")
    sock.sendall(b"".join(out))


def ws_echo(c, headers):
    h = {k.lower(): v for k, v in headers}
    key = h.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    c.s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        b0, b1 = c.exact(2)
        op = b0 & 0x0F
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", c.exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", c.exact(8))[0]
        mask = c.exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(c.exact(n)))
        if op == 0x8:
            c.s.sendall(frame(0x8, data[:2]))
            return
        if op == 0x9:
            c.s.sendall(frame(0xA, data))
        elif op in (0x0, 0x1, 0x2):
            c.s.sendall(frame(op, data, fin=bool(b0 & 0x80)))


def frame(op, data, fin=True):
    hd = bytes([(0x80 if fin else 0) | op])
    n = len(data)
    if n < 126:
        hd += bytes([n])
    elif n < 65536:
        hd += bytes([126]) + struct.pack("!H", n)
    else:
        hd += bytes([127]) + struct.pack("!Q", n)
    return hd + data


def serve(sock):
    c = Conn(sock)
    try:
        while True:
            req = c.line().decode("latin-1")
            if not req:
                continue
            method, target, version = req.split(" ", 2)
            headers = []
            while True:
                ln = c.line()
                if ln == b"":
                    break
                k, v = ln.decode("latin-1").split(":", 1)
                headers.append([k.strip(), v.strip()])
            h = {k.lower(): v for k, v in headers}
            path, _, query = target.partition("?")
            q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            if path == "/ws" and (h.get("upgrade", "").lower() == "websocket" or "force" in q):
                ws_echo(c, headers)
                return
            if h.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body, was_chunked = read_body(c, headers)
            if "delay" in q:
                time.sleep(int(q["delay"]) / 1000)
            if "reset" in q:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if path == "/_stop_listening":
                stopping.set()
                try:
                    listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                listener.close()
            status = int(q.get("status", "200"))
            ctype = "application/json"
            if "size" in q:
                out, ctype = pattern(int(q["size"])), "application/octet-stream"
            elif "echo" in q:
                out, ctype = body, "application/octet-stream"
            else:
                info = {"name": a.name, "method": method, "target": target, "path": path, "query": query,
                        "version": version, "headers": headers, "body_len": len(body),
                        "body_sha256": hashlib.sha256(body).hexdigest(), "chunked": was_chunked}
                if len(body) < 65536:
                    info["body"] = body.decode("latin-1")
                out = json.dumps(info).encode()
            if "ctype" in q:
                ctype = q["ctype"]
            no_body = status < 200 or status in (204, 304)
            close = "close" in q or stopping.is_set() or version == "HTTP/1.0" or \
                h.get("connection", "").lower() == "close"
            head = [f"HTTP/1.1 {status} Status{status}", "Server: echo-backend", f"Content-Type: {ctype}",
                    f"X-Backend: {a.name}"]
            if "ce" in q:
                head.append(f"Content-Encoding: {q['ce']}")
            if "hop" in q:
                head += ["Connection: X-Hop-Resp", "X-Hop-Resp: secret", "Keep-Alive: timeout=5",
                         "Proxy-Connection: keep-alive", "X-End-To-End: kept"]
            chunked = "chunked" in q and not no_body
            eof = "eof" in q and not no_body
            if eof:
                close = True
            elif chunked:
                head.append("Transfer-Encoding: chunked")
            elif not no_body:
                head.append(f"Content-Length: {len(out)}")
            if close:
                head.append("Connection: close")
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD" and not no_body:
                if chunked or eof:
                    send_chunked(sock, out, eof=eof)
                else:
                    sock.sendall(out)
            if close:
                return
    except (EOFError, ConnectionError, ValueError, OSError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    global listener
    if a.gate:
        while not os.path.exists(a.gate):
            time.sleep(0.01)
    if a.unix:
        try:
            os.unlink(a.unix)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(a.unix)
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", a.port))
    listener.listen(256)
    print(f"{a.name} listening", flush=True)
    while True:
        try:
            s, _ = listener.accept()
        except OSError:
            if stopping.is_set():
                # keep the process alive (it is a ship) but accept nothing
                while True:
                    time.sleep(3600)
            raise
        if a.unix is None:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(s,), daemon=True).start()


main()
