#!/usr/bin/env python3
"""A ship that streams its answer a piece at a time, each piece released by
the test: for the tests of streamed responses (test_http_streaming.py).

    stream_app.py --port N

GET /stream?fifo=PATH&n=N&ctype=T[&framing=chunked|eof]
    answers 200 with Content-Type T, framed with Transfer-Encoding: chunked
    (default) or by the close (framing=eof), then writes N pieces (piece(i)
    below), each as its own write (one chunk each when chunked). Piece 0 goes
    at once; before piece i (i > 0) it reads one byte from the FIFO at PATH,
    so the test decides when each piece is written. The FIFO is opened
    read-write, so opening never blocks and a test that gave up leaves only
    a thread waiting on its own FIFO.
HEAD /stream?...: the same head, no body, no FIFO.

Threaded, one thread per connection, written by hand so that the ship's
writes are exactly the pieces."""
import argparse
import os
import signal
import socket
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
a = ap.parse_args()
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def piece(i, ctype):
    """Piece i of a streamed answer, in the answer's own format."""
    if ctype == "text/event-stream":
        return b"data: event %d\n\n" % i
    if "json" in ctype:
        return b'{"piece": %d, "text": "the quick brown fox jumps over the lazy dog"}\n' % i
    return b"piece %d: the quick brown fox jumps over the lazy dog\n" % i


def read_head(f):
    line = f.readline()
    if not line:
        return None
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
    return line.decode("latin-1").split()


def serve(sock):
    f = sock.makefile("rb")
    try:
        while True:
            req = read_head(f)
            if not req:
                return
            method, target = req[0], req[1]
            q = dict(urllib.parse.parse_qsl(target.partition("?")[2]))
            ctype = q.get("ctype", "text/plain")
            eof = q.get("framing") == "eof"
            head = ["HTTP/1.1 200 OK", f"Content-Type: {ctype}", "Cache-Control: no-cache"]
            head.append("Connection: close" if eof else "Transfer-Encoding: chunked")
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            if method == "HEAD":
                continue
            fd = os.open(q["fifo"], os.O_RDWR)
            try:
                for i in range(int(q.get("n", "5"))):
                    if i > 0 and os.read(fd, 1) == b"":
                        return
                    p = piece(i, ctype)
                    sock.sendall(p if eof else b"%x\r\n%s\r\n" % (len(p), p))
            finally:
                os.close(fd)
            if eof:
                return
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    finally:
        sock.close()


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(64)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


main()
