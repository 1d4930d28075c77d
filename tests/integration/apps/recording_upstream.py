#!/usr/bin/env python3
"""A lenient HTTP/1.1 backend ship that records every byte it receives, for
the hostile-input suite (test_http_hostile.py) and bench/hostile/compare.py.

    recording_upstream.py (--port N | --unix PATH) --name NAME --record DIR

Recording, in DIR (created if missing):
    NAME.c<N>.raw        the exact bytes of connection N, appended as they
                         arrive (flushed on every read)
    NAME.requests.jsonl  one JSON object per request it understood and
                         answered: {"conn", "method", "target", "path",
                         "version", "headers": [[name, value], ...], "body"
                         (latin-1), "error"}; "error" (and nothing else but
                         "conn") when it gave up on a connection

It parses the way a typical lenient backend does, which is what makes a
proxy's holes visible: the request line is split on any run of whitespace
(space, TAB, VT, FF), a header name has the blanks around it stripped
(`Transfer-Encoding : chunked` counts), a Transfer-Encoding that mentions
`chunked` anywhere means chunked, Content-Length is read with int() (`+5`,
` 5 `), chunk sizes likewise, lines may end in LF alone. "path" is the path
as such a server would serve it: every %XX decoded, `\\` read as `/`, a
`#...` and `;...` parameters dropped, repeated slashes merged, dot segments
removed.

Every request is answered 200, keep-alive, with a text body naming what it
understood: "NAME METHOD PATH\\n". A query parameter mode= changes the
answer's framing:
    mode=conncl   Content-Length and `Connection: Content-Length`
    mode=connte   chunked and `Connection: Transfer-Encoding`
SIGTERM exits 0 at once."""
import argparse
import json
import os
import signal
import socket
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int)
ap.add_argument("--unix")
ap.add_argument("--name", default="ship")
ap.add_argument("--record", default=os.environ.get("RECORD_DIR"))
a = ap.parse_args()
if not a.record:
    ap.error("--record DIR (or RECORD_DIR) is required")
os.makedirs(a.record, exist_ok=True)

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

lock = threading.Lock()
counter = [0]
LOG = os.path.join(a.record, f"{a.name}.requests.jsonl")


def log(obj):
    line = json.dumps(obj) + "\n"
    with lock:
        with open(LOG, "a") as f:
            f.write(line)


def lenient_path(target):
    """The path a lenient, normalising server would serve for target."""
    path = target.split("#", 1)[0].split("?", 1)[0]
    path = urllib.parse.unquote(path, encoding="latin-1").replace("\\", "/")
    segs = []
    for seg in path.split("/"):
        seg = seg.split(";", 1)[0]
        if seg in ("", "."):
            continue
        if seg == "..":
            if segs:
                segs.pop()
            continue
        segs.append(seg)
    out = "/" + "/".join(segs)
    if segs and path.endswith(("/", "/.", "/..")):
        out += "/"
    return out


class Conn:
    def __init__(self, sock, n):
        self.s = sock
        self.n = n
        self.buf = b""
        self.raw = open(os.path.join(a.record, f"{a.name}.c{n}.raw"), "ab", buffering=0)

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.raw.write(d)
        self.buf += d

    def line(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln[:-1] if ln.endswith(b"\r") else ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_body(c, headers):
    te = " ".join(v for k, v in headers if k.lower() == "transfer-encoding")
    if "chunked" in te.lower():
        parts = []
        while True:
            size = int(c.line().split(b";")[0].strip() or b"0", 16)
            if size <= 0:
                while c.line() != b"":  # trailers
                    pass
                return b"".join(parts)
            parts.append(c.exact(size))
            c.line()
    cls = [v for k, v in headers if k.lower() == "content-length"]
    n = int(cls[0]) if cls else 0
    return c.exact(max(n, 0))


def answer(c, method, target, path, version, headers):
    q = dict(urllib.parse.parse_qsl(target.partition("?")[2], keep_blank_values=True))
    mode = q.get("mode", "")
    body = f"{a.name} {method} {path}\n".encode("latin-1", "replace")
    head = ["HTTP/1.1 200 OK", "Content-Type: text/plain", f"X-Upstream: {a.name}"]
    if mode == "connte":
        head += ["Transfer-Encoding: chunked", "Connection: Transfer-Encoding"]
        out = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        if mode == "conncl":
            head.append("Connection: Content-Length")
        out = body
    close = version == "HTTP/1.0" or any(k.lower() == "connection" and "close" in v.lower() for k, v in headers)
    if close:
        head.append("Connection: close")
    c.s.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else out))
    return close


def serve(sock, n):
    c = Conn(sock, n)
    try:
        while True:
            ln = c.line()
            if not ln.strip():
                continue
            parts = ln.split()  # any whitespace, as lenient servers do
            method = parts[0].decode("latin-1")
            target = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            version = parts[2].decode("latin-1") if len(parts) > 2 else "HTTP/0.9"
            headers = []
            while True:
                h = c.line()
                if h == b"":
                    break
                if b":" not in h:
                    continue
                k, v = h.decode("latin-1").split(":", 1)
                headers.append([k.strip(), v.strip(" \t")])
            body = read_body(c, headers)
            path = lenient_path(target)
            log({"conn": n, "method": method, "target": target, "path": path, "version": version,
                 "headers": headers, "body": body.decode("latin-1")})
            if answer(c, method, target, path, version, headers):
                return
    except EOFError:
        pass
    except (ValueError, IndexError, ConnectionError, OSError) as e:
        log({"conn": n, "error": f"{type(e).__name__}: {e}"})
    finally:
        c.raw.close()
        try:
            sock.close()
        except OSError:
            pass


def main():
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
        s, _ = listener.accept()
        with lock:
            counter[0] += 1
            n = counter[0]
        threading.Thread(target=serve, args=(s, n), daemon=True).start()


if __name__ == "__main__":
    main()
