#!/usr/bin/env python3
"""http_bay.py: an HTTP bay speaking docking v3 with the Python standard
library only (see docs/docking-protocol.md, "HTTP bays"). It serves a WSGI
application over Mothership's links instead of an HTTP server of its own.

Usage, as a [[bays.http]] bay (Mothership sets MS_SOCKET_PATH, MS_SHIP,
MS_BAY_WORKERS, MS_BAY_THREADS, MS_BAY_DRAIN_TIMEOUT):

    python3 examples/bays/http_bay.py package.module:app

Without an argument it serves the demo app below ("/" hello, "/echo",
"/headers", "/file", "/stream", "/ws"). For a [[mothership.upstreams]] entry
(an app Mothership did not start) give the socket yourself:

    python3 http_bay.py --socket /run/app.sock [--threads N] [--workers N] module:app

The bay binds and listens on the socket (a stale one is removed first).
MS_BAY_THREADS threads (default 4) each accept and serve one link at a time;
with MS_BAY_WORKERS > 0 that many processes are forked after the bind, each
with its threads. Every link: DOCK (version 3, this process's pid, threads),
MOORED (version 3 or more, else the link is closed), then per request HAIL,
the body's HAULs, REPLY, the response's HAULs, READY. SIGTERM drains: no new
links, idle links closed, running requests finish (MS_BAY_DRAIN_TIMEOUT
seconds at most), then exit.

WSGI mapping:
- environ holds the HAIL params as sent (names and values decoded as
  latin-1, so bytes pass through unchanged); wsgi.input is the whole body
  (in memory, or a temporary file above 1 MiB); environ["mothership.config"]
  is the MOORED config (a dict of strings).
- REPLY kinds: empty for HEAD, 1xx, 204 and 304 (any body the app yields is
  dropped); file when the app returns environ["wsgi.file_wrapper"](f) for a
  regular file f opened by name, at offset 0, with status 200 and no
  Content-Range (Mothership sends the file; the bay sends its absolute
  path); stream otherwise (HAULs of at most 64 KiB, then an empty HAUL with
  FIN).
- An exception before the head: REPLY 500 (stream, text/plain,
  "Internal Server Error"), READY, and the link stays usable. An exception
  after the head: the link is closed with no FIN (an aborted response).
- Tunnels (the extension environ["mothership.tunnel"]): an app that wants
  the raw bytes of an upgraded connection calls
      tunnel = environ["mothership.tunnel"]("101 Switching Protocols", headers)
  instead of start_response. That sends REPLY kind tunnel; then
  tunnel.recv() returns the client's next bytes (b"" once the client's side
  ended), tunnel.send(data) sends bytes to the client, tunnel.close() ends
  the bay's side (FIN). The app returns an empty iterable when done; the
  link is then closed (no READY follows a tunnel). "/ws" in the demo app is
  a WebSocket echo built on it.
"""
import base64
import hashlib
import importlib
import io
import json
import os
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading

DOCK, MOORED = 0x01, 0x02
HAIL, HAUL, REPLY, READY = 0x20, 0x21, 0x22, 0x23
KIND_EMPTY, KIND_STREAM, KIND_FILE, KIND_TUNNEL = 0, 1, 2, 4
FIN = 0x01
VERSION = 3
CHUNK = 64 * 1024           # HAUL data per frame, at most
MAX_FRAME = 1024 * 1024     # any frame's payload, at most
BODY_IN_MEMORY = 1024 * 1024
MAX_PARAMS = 1024
SOFTWARE = "mothership-http-bay.py"


class ProtocolError(Exception):
    """The peer broke docking v3: the link must be closed."""


# ---- framing --------------------------------------------------------------

def read_exact(sock, n):
    """n bytes, or None when the link ended before the first of them."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            if buf:
                raise EOFError("link ended inside a frame")
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock, max_frame=MAX_FRAME):
    """(type, payload), or None when the link ended between frames."""
    head = read_exact(sock, 5)
    if head is None:
        return None
    ftype, length = head[0], struct.unpack(">I", head[1:])[0]
    if length > max_frame:
        raise ProtocolError("frame of %d bytes is over the maximum" % length)
    payload = read_exact(sock, length) if length else b""
    if payload is None:
        raise EOFError("link ended inside a frame")
    return ftype, payload


def frame(ftype, payload):
    return struct.pack(">BI", ftype, len(payload)) + payload


def send_frame(sock, ftype, payload):
    sock.sendall(frame(ftype, payload))


def pack_string(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return struct.pack(">I", len(s)) + s


def _take_string(p, off):
    if off + 4 > len(p):
        raise ProtocolError("string length cut short")
    n = struct.unpack_from(">I", p, off)[0]
    off += 4
    if off + n > len(p):
        raise ProtocolError("string of %d bytes cut short" % n)
    return p[off:off + n], off + n


# ---- messages ---------------------------------------------------------------

def encode_dock(ship, pid, threads):
    """DOCK payload: exactly {"version": 3, "ship": ..., "pid": ..., "threads": ...}."""
    return json.dumps({"version": VERSION, "ship": ship, "pid": pid, "threads": threads}).encode()


def parse_moored(payload):
    """The config dict of a MOORED; ProtocolError below version 3."""
    try:
        obj = json.loads(payload)
    except ValueError as e:
        raise ProtocolError("MOORED is not JSON: %s" % e)
    if not isinstance(obj, dict) or not isinstance(obj.get("version"), int) or obj["version"] < VERSION:
        raise ProtocolError("MOORED version below %d" % VERSION)
    config = obj.get("config", {})
    if not isinstance(config, dict):
        raise ProtocolError("MOORED config is not an object")
    return config


def encode_moored(config=None):
    return json.dumps({"version": VERSION, "config": config or {}}).encode()


def encode_hail(request_id, content_length, params):
    out = [struct.pack(">IQI", request_id, content_length, len(params))]
    for name, value in params:
        out.append(pack_string(name))
        out.append(pack_string(value))
    return b"".join(out)


def parse_hail(payload, max_params=MAX_PARAMS):
    """(request_id, content_length, [(name bytes, value bytes), ...])."""
    if len(payload) < 16:
        raise ProtocolError("HAIL shorter than its 16 fixed bytes")
    rid, clen, count = struct.unpack_from(">IQI", payload, 0)
    if count > max_params:
        raise ProtocolError("HAIL with %d params" % count)
    off, params = 16, []
    for _ in range(count):
        name, off = _take_string(payload, off)
        value, off = _take_string(payload, off)
        params.append((name, value))
    if off != len(payload):
        raise ProtocolError("HAIL with %d bytes left over" % (len(payload) - off))
    return rid, clen, params


def encode_haul(request_id, data=b"", fin=False):
    return struct.pack(">IB", request_id, FIN if fin else 0) + data


def parse_haul(payload):
    """(request_id, fin, data)."""
    if len(payload) < 5:
        raise ProtocolError("HAUL shorter than 5 bytes")
    rid, flags = struct.unpack_from(">IB", payload, 0)
    if flags & ~FIN:
        raise ProtocolError("HAUL with unknown flags 0x%02x" % flags)
    return rid, bool(flags & FIN), payload[5:]


def encode_reply(request_id, status, kind, headers, path=None):
    """headers: [(name, value)] of str (latin-1) or bytes; path for kind file."""
    out = [struct.pack(">IHBI", request_id, status, kind, len(headers))]
    for name, value in headers:
        out.append(pack_string(name))
        out.append(pack_string(value))
    if kind == KIND_FILE:
        out.append(pack_string(os.fsencode(path)))
    return b"".join(out)


def parse_reply(payload):
    """(request_id, status, kind, [(name, value)], path or None)."""
    if len(payload) < 11:
        raise ProtocolError("REPLY shorter than its 11 fixed bytes")
    rid, status, kind, count = struct.unpack_from(">IHBI", payload, 0)
    off, headers = 11, []
    for _ in range(count):
        name, off = _take_string(payload, off)
        value, off = _take_string(payload, off)
        headers.append((name, value))
    path = None
    if kind == KIND_FILE:
        path, off = _take_string(payload, off)
    if off != len(payload):
        raise ProtocolError("REPLY with bytes left over")
    return rid, status, kind, headers, path


def encode_ready(request_id):
    return struct.pack(">I", request_id)


def send_dock(sock, ship, pid, threads):
    send_frame(sock, DOCK, encode_dock(ship, pid, threads))


def send_reply(sock, request_id, status, kind, headers, path=None):
    send_frame(sock, REPLY, encode_reply(request_id, status, kind, headers, path))


def send_haul(sock, request_id, data=b"", fin=False):
    """data in frames of at most CHUNK bytes; FIN on the last one."""
    view = memoryview(data)
    while len(view) > CHUNK:
        send_frame(sock, HAUL, encode_haul(request_id, bytes(view[:CHUNK])))
        view = view[CHUNK:]
    if len(view) or fin:
        send_frame(sock, HAUL, encode_haul(request_id, bytes(view), fin))


def send_ready(sock, request_id):
    send_frame(sock, READY, encode_ready(request_id))


# ---- one link -----------------------------------------------------------------

def read_body(sock, request_id, content_length):
    """The request body that follows a HAIL: a file object at offset 0."""
    body = (tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY)
            if content_length > BODY_IN_MEMORY else io.BytesIO())
    got = 0
    if content_length == 0:
        return body
    while True:
        fr = read_frame(sock)
        if fr is None:
            raise EOFError("link ended inside a request body")
        ftype, payload = fr
        if ftype != HAUL:
            raise ProtocolError("frame 0x%02x inside a request body" % ftype)
        rid, fin, data = parse_haul(payload)
        if rid != request_id:
            raise ProtocolError("HAUL for request %d inside request %d" % (rid, request_id))
        got += len(data)
        if got > content_length:
            raise ProtocolError("more body than the %d bytes announced" % content_length)
        body.write(data)
        if fin:
            if got != content_length:
                raise ProtocolError("FIN after %d of %d body bytes" % (got, content_length))
            body.seek(0)
            return body


class FileWrapper:
    """wsgi.file_wrapper: iterates the file; the bay replies with kind file
    when it can."""

    def __init__(self, filelike, blksize=CHUNK):
        self.filelike = filelike
        self.blksize = min(blksize, CHUNK)

    def __iter__(self):
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data

    def close(self):
        if hasattr(self.filelike, "close"):
            self.filelike.close()

    def sendable_path(self):
        """The file's absolute path when Mothership may send it, else None."""
        f = self.filelike
        name = getattr(f, "name", None)
        if not isinstance(name, (str, bytes)):
            return None
        try:
            st = os.fstat(f.fileno())
            if f.tell() != 0:
                return None
        except (OSError, AttributeError, io.UnsupportedOperation):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        path = os.path.abspath(name)
        try:
            same = os.stat(path)
        except OSError:
            return None
        if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
            return None
        return path


class Tunnel:
    """The bytes of an upgraded connection (see the module's docstring)."""

    def __init__(self, link, request_id):
        self.link = link
        self.request_id = request_id
        self.peer_done = False
        self.closed = False

    def recv(self):
        """The client's next bytes; b"" once its side ended."""
        while not self.peer_done:
            fr = read_frame(self.link.sock)
            if fr is None:
                self.peer_done = True
                break
            ftype, payload = fr
            if ftype != HAUL:
                raise ProtocolError("frame 0x%02x inside a tunnel" % ftype)
            rid, fin, data = parse_haul(payload)
            if rid != self.request_id:
                raise ProtocolError("HAUL for request %d inside tunnel %d" % (rid, self.request_id))
            if fin:
                self.peer_done = True
            if data:
                return data
        return b""

    def send(self, data):
        if self.closed:
            raise OSError("tunnel already closed")
        if data:
            send_haul(self.link.sock, self.request_id, data)

    def close(self):
        if not self.closed:
            self.closed = True
            send_haul(self.link.sock, self.request_id, b"", fin=True)


def _status_code(status):
    try:
        code = int(str(status).split(" ", 1)[0])
    except ValueError:
        raise ValueError("bad WSGI status %r" % (status,))
    if not 100 <= code <= 599:
        raise ValueError("status %d out of range" % code)
    return code


def _empty_kind(method, code):
    return method == "HEAD" or code < 200 or code in (204, 304)


class Link:
    """One accepted link: DOCK, MOORED, then requests one at a time."""

    def __init__(self, sock, app, ship, threads, on_state=None):
        self.sock = sock
        self.app = app
        self.ship = ship
        self.threads = threads
        self.config = {}
        self.on_state = on_state or (lambda link, busy: None)

    def serve(self):
        """Until the link ends; False when it ended on an error."""
        try:
            send_dock(self.sock, self.ship, os.getpid(), self.threads)
            fr = read_frame(self.sock)
            if fr is None:
                return True
            if fr[0] != MOORED:
                raise ProtocolError("frame 0x%02x instead of MOORED" % fr[0])
            self.config = parse_moored(fr[1])
            while True:
                self.on_state(self, False)
                fr = read_frame(self.sock)
                if fr is None:
                    return True
                self.on_state(self, True)
                ftype, payload = fr
                if ftype != HAIL:
                    raise ProtocolError("frame 0x%02x where a HAIL was due" % ftype)
                rid, clen, params = parse_hail(payload)
                body = read_body(self.sock, rid, clen)
                if not self.handle(rid, clen, params, body):
                    return True
        except (ProtocolError, EOFError, OSError) as e:
            sys.stderr.write("http_bay: link closed: %s\n" % e)
            return False
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def environ(self, rid, clen, params, body):
        env = {}
        for name, value in params:
            env[name.decode("latin-1")] = value.decode("latin-1")
        env.setdefault("REQUEST_METHOD", "GET")
        env.setdefault("SCRIPT_NAME", "")
        env.setdefault("PATH_INFO", "")
        env.setdefault("QUERY_STRING", "")
        env.setdefault("SERVER_NAME", "localhost")
        env.setdefault("SERVER_PORT", "80")
        env.setdefault("SERVER_PROTOCOL", "HTTP/1.1")
        env.update({
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if env.get("HTTPS") == "on" else "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.threads > 1,
            "wsgi.multiprocess": int(os.environ.get("MS_BAY_WORKERS", "0") or 0) > 0,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "mothership.config": self.config,
            "mothership.request_id": rid,
            "mothership.content_length": clen,
        })
        return env

    def handle(self, rid, clen, params, body):
        """Runs the app for one request; False when the link must close."""
        env = self.environ(rid, clen, params, body)
        method = env["REQUEST_METHOD"]
        state = {"status": None, "headers": None, "sent": False, "tunnel": None}
        sock = self.sock

        def start_response(status, headers, exc_info=None):
            if exc_info and state["sent"]:
                raise exc_info[1].with_traceback(exc_info[2])
            if state["status"] is not None and not exc_info:
                raise AssertionError("start_response called twice")
            state["status"] = _status_code(status)
            state["headers"] = [(n, v) for n, v in headers]
            return write

        def send_head(kind, path=None):
            payload = encode_reply(rid, state["status"], kind, state["headers"], path)
            if len(payload) > MAX_FRAME:
                raise ValueError("response head over the maximum frame size")
            send_frame(sock, REPLY, payload)
            state["sent"] = True
            state["kind"] = kind

        def write(data):
            if state["status"] is None:
                raise AssertionError("write() before start_response")
            if not state["sent"]:
                send_head(KIND_EMPTY if _empty_kind(method, state["status"]) else KIND_STREAM)
            if state["kind"] == KIND_STREAM and data:
                send_haul(sock, rid, bytes(data))

        def tunnel(status, headers):
            if state["status"] is not None:
                raise AssertionError("tunnel after start_response")
            start_response(status, headers)
            send_head(KIND_TUNNEL)
            state["tunnel"] = Tunnel(self, rid)
            return state["tunnel"]

        env["mothership.tunnel"] = tunnel
        result = None
        try:
            result = self.app(env, start_response)
            if state["tunnel"] is not None:
                for _ in result:
                    pass
                state["tunnel"].close()
                return False
            if state["status"] is None:
                raise AssertionError("the app returned without start_response")
            path = None
            if (isinstance(result, FileWrapper) and not state["sent"] and state["status"] == 200
                    and method != "HEAD"
                    and not any(n.lower() == "content-range" for n, _ in state["headers"])):
                path = result.sendable_path()
            if path is not None:
                send_head(KIND_FILE, path)
            else:
                for data in result:
                    if not data:
                        continue
                    write(data)
                if not state["sent"]:
                    send_head(KIND_EMPTY if _empty_kind(method, state["status"]) else KIND_STREAM)
                if state["kind"] == KIND_STREAM:
                    send_haul(sock, rid, b"", fin=True)
        except Exception as e:
            if isinstance(e, (ProtocolError, EOFError, ConnectionError)):
                raise             # the link itself failed
            sys.stderr.write("http_bay: request %d: %s: %s\n" % (rid, type(e).__name__, e))
            if state["sent"]:
                return False      # after the head: close the link, no FIN
            body500 = b"Internal Server Error"
            send_reply(sock, rid, 500, KIND_STREAM,
                       [("content-type", "text/plain"), ("content-length", str(len(body500)))])
            send_haul(sock, rid, body500, fin=True)
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception as e:
                    sys.stderr.write("http_bay: close(): %s\n" % e)
            body.close()
        send_ready(sock, rid)
        return True


# ---- the server -----------------------------------------------------------------

def listen(path, backlog=1024):
    """A listening Unix socket at path; a stale socket there is removed."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(backlog)
    return s


class Server:
    """threads threads, each accepting and serving one link at a time."""

    def __init__(self, listener, app, ship, threads):
        self.listener = listener
        self.app = app
        self.ship = ship
        self.threads = threads
        self.draining = threading.Event()
        self.lock = threading.Lock()
        self.idle = set()
        self.workers = []

    def _state(self, link, busy):
        with self.lock:
            if busy:
                self.idle.discard(link)
            elif self.draining.is_set():
                link.sock.shutdown(socket.SHUT_RDWR)
            else:
                self.idle.add(link)

    def _accept_loop(self):
        while not self.draining.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self.draining.is_set():
                    return
                continue
            link = Link(sock, self.app, self.ship, self.threads, self._state)
            link.serve()
            with self.lock:
                self.idle.discard(link)

    def start(self):
        for _ in range(self.threads):
            t = threading.Thread(target=self._accept_loop, daemon=True)
            t.start()
            self.workers.append(t)

    def drain(self):
        """No new links; idle links closed; busy ones end after their request."""
        self.draining.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.lock:
            for link in list(self.idle):
                try:
                    link.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def join(self, timeout=None):
        for t in self.workers:
            t.join(timeout)


def run_process(listener, app, ship, threads, drain_timeout):
    server = Server(listener, app, ship, threads)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    while not stop.wait(0.5):
        if not any(t.is_alive() for t in server.workers):
            break
    server.drain()
    server.join(drain_timeout)


def serve(app, path, ship="http_bay", threads=4, workers=0, drain_timeout=60.0):
    """Binds path and serves app until SIGTERM (the bay's whole life)."""
    listener = listen(path)
    if workers <= 0:
        run_process(listener, app, ship, threads, drain_timeout)
        return
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                run_process(listener, app, ship, threads, drain_timeout)
            finally:
                os._exit(0)
        children.append(pid)
    listener.close()

    def forward(sig, _frame):
        for child in children:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue


# ---- the demo app -----------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_frames(tunnel):
    """Client frames from a tunnel: (fin, opcode, payload) after unmasking."""
    buf = b""

    def need(n):
        nonlocal buf
        while len(buf) < n:
            more = tunnel.recv()
            if not more:
                return False
            buf += more
        return True

    while True:
        if not need(2):
            return
        b0, b1 = buf[0], buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if not need(4):
                return
            n, off = struct.unpack_from(">H", buf, 2)[0], 4
        elif n == 127:
            if not need(10):
                return
            n, off = struct.unpack_from(">Q", buf, 2)[0], 10
        if n > 16 * 1024 * 1024:
            return
        masked = b1 & 0x80
        if not need(off + (4 if masked else 0) + n):
            return
        mask = buf[off:off + 4] if masked else b"\0\0\0\0"
        off += 4 if masked else 0
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(buf[off:off + n]))
        buf = buf[off + n:]
        yield bool(b0 & 0x80), b0 & 0x0F, data


def _ws_frame(opcode, data, fin=True):
    n = len(data)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack(">BB", b0, n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, 126, n)
    else:
        head = struct.pack(">BBQ", b0, 127, n)
    return head + data


def websocket_echo(environ, start_response):
    """A WebSocket echo over the tunnel extension (RFC 6455, minimal)."""
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if "mothership.tunnel" not in environ or not key or \
            "websocket" not in environ.get("HTTP_UPGRADE", "").lower():
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"a WebSocket upgrade is expected here\n"]
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    tunnel = environ["mothership.tunnel"]("101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)])
    for fin, opcode, data in _ws_frames(tunnel):
        if opcode == 0x8:
            tunnel.send(_ws_frame(0x8, data[:2] if len(data) >= 2 else b""))
            break
        if opcode == 0x9:
            tunnel.send(_ws_frame(0xA, data))
        elif opcode in (0x0, 0x1, 0x2):
            tunnel.send(_ws_frame(opcode, data, fin))
    tunnel.close()
    return []


def demo_app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path in ("", "/"):
        body = b"hello from an HTTP bay\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo":
        data = environ["wsgi.input"].read()
        head = "%s %s?%s\n" % (environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
        body = head.encode("latin-1") + data
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/headers":
        params = {k: v for k, v in environ.items() if isinstance(v, str)}
        body = json.dumps(params, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/file":
        f = open(os.path.abspath(__file__), "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (("chunk %d\n" % i).encode() for i in range(5))
    if path == "/ws":
        return websocket_echo(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def load_app(spec):
    """'package.module:app' (app defaults to 'app'); the cwd is importable."""
    module, _, attr = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj = importlib.import_module(module)
    for part in (attr or "app").split("."):
        obj = getattr(obj, part)
    return obj


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Serve a WSGI app as a docking v3 HTTP bay.")
    ap.add_argument("app", nargs="?", help="module:callable (default: the demo app)")
    ap.add_argument("--socket", default=os.environ.get("MS_SOCKET_PATH"),
                    help="the Unix socket to listen on (default: MS_SOCKET_PATH)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("MS_BAY_THREADS", "4") or 4))
    ap.add_argument("--workers", type=int, default=int(os.environ.get("MS_BAY_WORKERS", "0") or 0))
    ap.add_argument("--ship", default=os.environ.get("MS_SHIP", "http_bay"))
    args = ap.parse_args(argv)
    if not args.socket:
        ap.error("no socket: MS_SOCKET_PATH is not set (run me under Mothership) and no --socket")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    app = load_app(args.app) if args.app else demo_app
    drain = float(os.environ.get("MS_BAY_DRAIN_TIMEOUT", "60") or 60)
    serve(app, args.socket, args.ship, args.threads, args.workers, drain)


if __name__ == "__main__":
    main()
