"""Docking v3 (HTTP bays) frames written and read byte for byte over a
bay's Unix socket: Mothership's side for tests of bays, and the bay's side
(REPLY, READY, a HAIL's parameters) for tests that script a bay."""
import json
import socket
import struct
import time

DOCK, MOORED, HAIL, HAUL, REPLY, READY = 0x01, 0x02, 0x20, 0x21, 0x22, 0x23


def frame(t, payload):
    return struct.pack(">BI", t, len(payload)) + payload


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def hail(rid, params, body_len=0):
    return frame(HAIL, struct.pack(">IQI", rid, body_len, len(params))
                 + b"".join(s(k) + s(v) for k, v in params))


def haul(rid, data=b"", fin=False):
    return frame(HAUL, struct.pack(">IB", rid, 1 if fin else 0) + data)


def reply(rid, status, kind, headers=(), path=None):
    """The bay's side: a REPLY with (name, value) headers and, for a file
    reply, its path."""
    p = struct.pack(">IHBI", rid, status, kind, len(headers))
    for k, v in headers:
        p += s(k) + s(v)
    if path is not None:
        p += s(path)
    return frame(REPLY, p)


def ready(rid):
    return frame(READY, struct.pack(">I", rid))


def parse_hail(p):
    """A HAIL's payload as (id, body length, {param: value})."""
    rid, blen, n = struct.unpack(">IQI", p[:16])
    off, params = 16, {}
    for _ in range(n):
        (ln,) = struct.unpack(">I", p[off:off + 4])
        k = p[off + 4:off + 4 + ln]
        off += 4 + ln
        (lv,) = struct.unpack(">I", p[off:off + 4])
        v = p[off + 4:off + 4 + lv]
        off += 4 + lv
        params[k.decode("latin-1")] = v.decode("latin-1")
    return rid, blen, params


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"link closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_frame(sock):
    t, n = struct.unpack(">BI", recv_exact(sock, 5))
    return t, recv_exact(sock, n)


def parse_reply(p):
    rid, status, kind, n = struct.unpack(">IHBI", p[:11])
    off, headers = 11, []
    for _ in range(2 * n):
        (ln,) = struct.unpack(">I", p[off:off + 4])
        headers.append(p[off + 4:off + 4 + ln].decode("latin-1"))
        off += 4 + ln
    pairs = list(zip(headers[0::2], headers[1::2]))
    path = None
    if kind == 2:
        (ln,) = struct.unpack(">I", p[off:off + 4])
        path = p[off + 4:off + 4 + ln].decode()
        off += 4 + ln
    assert off == len(p)
    return rid, status, kind, pairs, path


def response(sock, rid):
    """REPLY, then the body (stream HAULs up to FIN), then READY."""
    t, p = read_frame(sock)
    assert t == REPLY, (t, p)
    got_id, status, kind, headers, path = parse_reply(p)
    assert got_id == rid
    body = b""
    if kind == 1:
        while True:
            t, p = read_frame(sock)
            assert t == HAUL
            hid, flags = struct.unpack(">IB", p[:5])
            assert hid == rid and len(p) - 5 <= 64 * 1024
            body += p[5:]
            if flags & 1:
                break
    t, p = read_frame(sock)
    assert (t, p) == (READY, struct.pack(">I", rid))
    return status, kind, headers, body, path


def wait_for(cond, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def dock(path, config=None, pid=None, threads=2):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(path)
    t, p = read_frame(c)
    assert t == DOCK
    d = json.loads(p)
    assert list(d) == ["version", "ship", "pid", "threads"]
    assert d["version"] == 3 and d["ship"] == "web" and d["threads"] == threads
    if pid is not None:
        assert d["pid"] == pid
    c.sendall(frame(MOORED, json.dumps({"version": 3, "config": config or {}}).encode()))
    return c, d
