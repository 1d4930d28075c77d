#!/usr/bin/python3
"""bench/deploy/app.py --port N [--name NAME] [--boot SECONDS]: the
application deployed in bench/deploy, the same under Mothership and under
supervisord. It boots (sleeps BOOT seconds, as an application loads its
code and connects to its services), then listens on 127.0.0.1:N and answers
every request with 200 and "hello from NAME" over HTTP/1.1 keep-alive, one
thread per connection.

SIGTERM is a graceful stop, as application servers do it: the listening
socket is closed at once (new connections are refused), requests being
answered are finished, idle kept-alive connections are closed, then it
exits 0 (after 10 s at most)."""
import argparse
import os
import signal
import socket
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--name", default="app")
ap.add_argument("--boot", type=float, default=0.0)
a = ap.parse_args()

lock = threading.Lock()
busy = 0                 # requests being answered
conns = set()            # every open client socket
stopping = threading.Event()
listener = None


def answer_for(name):
    body = f"hello from {name}\n".encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


ANSWER = answer_for(a.name)
ANSWER_CLOSE = ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


def serve(s):
    global busy
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                if stopping.is_set():
                    return
                d = s.recv(65536)
                if not d:
                    return
                buf += d
                if len(buf) > 65536:
                    return
            with lock:
                busy += 1
            try:
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                close = False
                length = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        length = int(v.strip())
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                while len(buf) < length:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[length:]
                close = close or stopping.is_set()
                s.sendall(ANSWER_CLOSE if close else ANSWER)
            finally:
                with lock:
                    busy -= 1
            if close:
                return
    except (OSError, ValueError):
        pass


def on_term(*_):
    stopping.set()
    if listener is not None:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    global listener
    signal.signal(signal.SIGTERM, on_term)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_term)
    time.sleep(a.boot)
    if stopping.is_set():
        os._exit(0)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", a.port))
    listener.listen(1024)
    print(f"{a.name} listening on 127.0.0.1:{a.port} (pid {os.getpid()})", flush=True)
    while not stopping.is_set():
        try:
            s, _ = listener.accept()
        except OSError:
            break
        if stopping.is_set():
            s.close()
            break
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a short timeout: an idle kept-alive connection notices the stop
        s.settimeout(0.2)
        with lock:
            conns.add(s)
        threading.Thread(target=serve_timeouts, args=(s,), daemon=True).start()
    listener.close()
    # the graceful part: what is being answered finishes, idle ones close
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if busy == 0 and not conns:
                break
        time.sleep(0.01)
    print(f"{a.name} stopped", flush=True)
    os._exit(0)


class Patient:
    """A client socket whose recv waits for data in short slices, so that a
    connection idle between requests sees the stop and ends."""

    def __init__(self, sock):
        self.sock = sock

    def recv(self, n):
        while True:
            try:
                return self.sock.recv(n)
            except socket.timeout:
                if stopping.is_set():
                    return b""

    def sendall(self, data):
        self.sock.settimeout(None)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.2)


def serve_timeouts(s):
    try:
        serve(Patient(s))
    finally:
        with lock:
            conns.discard(s)
        try:
            s.close()
        except OSError:
            pass

main()
