#!/usr/bin/env python3
"""An HTTP/1.1 ship that writes down when things reach it, for the request
body tests (test_http_bodies.py).

    recording_backend.py --port N --events FILE

Each event is one JSON line appended to FILE, flushed at once:
    {"ev": "accept", "conn": i}                          a connection was accepted
    {"ev": "head", "conn": i, "target", "headers"}       a request head was read
    {"ev": "body", "conn": i, "len", "sha256", "chunked"}  its body was read whole
Every request is answered 200 with the body event as JSON (a target with
"noread" in it: the body is never read, nor the request answered; "early": the
answer, of size=N bytes, goes out at once and the body is discarded;
"partial": the head of a 100-byte answer and 10 bytes of it go out at once,
then the body is discarded and the answer never finished); a request with
`Expect: 100-continue` gets "100 Continue" first (as a real server would).
Connections are kept alive. The readiness probe's connections show up as
accept events too: tests count from a mark taken after the fleet is ready."""
import argparse
import hashlib
import json
import socket
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--events", required=True)
a = ap.parse_args()

lock = threading.Lock()
events = open(a.events, "a", buffering=1)


def record(**ev):
    with lock:
        events.write(json.dumps(ev) + "\n")
        events.flush()


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def serve(sock, conn_id):
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
            record(ev="head", conn=conn_id, method=method, target=target, headers=headers)
            if "noread" in target:
                threading.Event().wait(3600)  # a ship that never reads the body
            if "early" in target:
                # answers at once without reading the body, then discards it
                size = int(urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("size", ["5"])[0])
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"e" * size)
                record(ev="early", conn=conn_id, target=target, len=size)
                while sock.recv(65536):
                    pass
                return
            if "partial" in target:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"p" * 10)
                record(ev="partial", conn=conn_id, target=target)
                while sock.recv(65536):
                    pass
                return
            h = {k.lower(): v for k, v in headers}
            if h.get("expect", "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            chunked = "chunked" in h.get("transfer-encoding", "").lower()
            digest = hashlib.sha256()
            n = 0
            if chunked:
                while True:
                    size = int(c.line().split(b";")[0].strip(), 16)
                    if size == 0:
                        while c.line() != b"":
                            pass
                        break
                    piece = c.exact(size)
                    digest.update(piece)
                    n += size
                    if c.exact(2) != b"\r\n":
                        raise ValueError("bad chunk end")
            else:
                left = int(h.get("content-length", "0") or 0)
                while left:
                    if not c.buf:
                        c.fill()
                    piece, c.buf = c.buf[:left], c.buf[left:]
                    digest.update(piece)
                    n += len(piece)
                    left -= len(piece)
            ev = {"ev": "body", "conn": conn_id, "target": target, "len": n, "sha256": digest.hexdigest(),
                  "chunked": chunked}
            record(**ev)
            out = json.dumps(ev).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % len(out) + out)
    except (EOFError, ConnectionError, ValueError, OSError):
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.port))
    listener.listen(256)
    print("recording backend listening", flush=True)
    n = 0
    while True:
        s, _ = listener.accept()
        n += 1
        record(ev="accept", conn=n)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(s, n), daemon=True).start()


main()
