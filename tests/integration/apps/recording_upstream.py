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
One thread serves every connection (see main). SIGTERM exits 0 at once."""
import argparse
import json
import os
import selectors
import signal
import socket
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

LOG = os.path.join(a.record, f"{a.name}.requests.jsonl")


def log(obj):
    with open(LOG, "a") as f:
        f.write(json.dumps(obj) + "\n")


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


class NeedMore(Exception):
    """The request is not all there yet."""


class Conn:
    """One connection: its raw recording and what is buffered. Parsing runs
    on the buffer from its start and raises NeedMore when it runs out; a
    request is taken off the buffer only once it is whole."""

    def __init__(self, sock, n):
        self.s = sock
        self.n = n
        self.buf = b""
        self.pos = 0
        self.raw = open(os.path.join(a.record, f"{a.name}.c{n}.raw"), "ab", buffering=0)

    def line(self, limit=65536):
        end = self.buf.find(b"\n", self.pos)
        if end < 0:
            if len(self.buf) - self.pos > limit:
                raise ValueError("line too long")
            raise NeedMore
        ln, self.pos = self.buf[self.pos:end], end + 1
        return ln[:-1] if ln.endswith(b"\r") else ln

    def exact(self, n):
        if len(self.buf) - self.pos < n:
            raise NeedMore
        out, self.pos = self.buf[self.pos:self.pos + n], self.pos + n
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


def parse_one(c):
    """The next whole request in c's buffer as (method, target, version,
    headers, body), taken off the buffer; NeedMore if it is not all there."""
    c.pos = 0
    ln = c.line()
    while not ln.strip():
        ln = c.line()
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
    c.buf, c.pos = c.buf[c.pos:], 0
    return method, target, version, headers, body


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


def on_readable(c):
    """Record what arrived; answer every request now whole. False once the
    connection is over."""
    try:
        d = c.s.recv(65536)
    except OSError:
        d = b""
    if not d:
        return False
    c.raw.write(d)
    c.buf += d
    return True


def answer_all(c):
    try:
        while True:
            try:
                method, target, version, headers, body = parse_one(c)
            except NeedMore:
                return True
            path = lenient_path(target)
            log({"conn": c.n, "method": method, "target": target, "path": path, "version": version,
                 "headers": headers, "body": body.decode("latin-1")})
            if answer(c, method, target, path, version, headers):
                return False
    except (ValueError, IndexError, OSError) as e:
        log({"conn": c.n, "error": f"{type(e).__name__}: {e}"})
        return False


def close(sel, c):
    sel.unregister(c.s)
    c.raw.close()
    try:
        c.s.close()
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
    # One thread for every connection: each turn records what every ready
    # connection got before it answers any request, so once a request is in
    # the log, whatever reached any connection before it is recorded too.
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    n = 0
    while True:
        ready = sel.select()
        got = []
        for key, _ in ready:
            if key.fileobj is listener:
                s, _ = listener.accept()
                n += 1
                sel.register(s, selectors.EVENT_READ, Conn(s, n))
                continue
            c = key.data
            if on_readable(c):
                got.append(c)
            else:
                close(sel, c)
        for c in got:
            if not answer_all(c):
                close(sel, c)


if __name__ == "__main__":
    main()
