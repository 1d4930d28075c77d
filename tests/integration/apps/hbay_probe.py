#!/usr/bin/env python3
"""hbay_probe.py LOGFILE [SOCKET]: a scripted HTTP bay (docking v3) for the
data plane tests, standard library only.

Listens on SOCKET (default $MS_SOCKET_PATH), $MS_BAY_THREADS threads (default
4) each accepting and serving one link (its DOCK $MS_BAY_DOCK_DELAY_MS late while
LOGFILE.slowdock exists): DOCK v3, MOORED, then per request
HAIL + body HAULs, a reply, READY. Every request is appended to LOGFILE as
one JSON line {"params": {...}, "body_len": n, "body_sha": hex, "link": k,
"id": request_id}. The path (PATH_INFO) says what to answer:
  /empty         REPLY 204, kind empty
  /stream?n=K    200 text/plain, K HAUL chunks "chunk i\\n" (no length)
  /big?kb=K      200 application/octet-stream with Content-Length, K KiB
                 (LOGFILE.sent holds the bytes sent so far, every MiB)
  /sleep?ms=M    sleeps M ms, then as /echo
  /break         closes the link before any REPLY
  /cut           REPLY 200 (Content-Length 100), one 10-byte HAUL, then closes
  /noready       REPLY 200 "x", FIN, and never READY (the link hangs)
  /hang          never answers (the link hangs)
  /garbage       a frame of unknown type 0x7f
  /twice         two REPLYs
  /cookies       two set-cookie headers
  /file?path=P   REPLY kind file naming P
  /ws            REPLY 101 kind tunnel, then echoes HAUL bytes; "bye" ends it
                 with FIN, "garbage" with a frame of unknown type 0x7f
  /ws-deaf       REPLY 101 kind tunnel, reads nothing for 1 s, then shuts its
                 read side (Mothership's writes fail) and holds the link 20 s
  anything else  /echo: 200 application/json of the params and body length
"""
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

DOCK, MOORED, HAIL, HAUL, REPLY, READY = 0x01, 0x02, 0x20, 0x21, 0x22, 0x23
log_path = sys.argv[1]
sock_path = sys.argv[2] if len(sys.argv) > 2 else os.environ["MS_SOCKET_PATH"]
threads = int(os.environ.get("MS_BAY_THREADS", "4") or 4)
dock_delay = int(os.environ.get("MS_BAY_DOCK_DELAY_MS", "0") or 0) / 1000
lock = threading.Lock()


def log(obj):
    with lock, open(log_path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def read_exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(c):
    h = read_exact(c, 5)
    if h is None:
        return None, None
    t, n = struct.unpack(">BI", h)
    p = read_exact(c, n) if n else b""
    return t, p


def frame(t, payload):
    return struct.pack(">BI", t, len(payload)) + payload


def string(b):
    return struct.pack(">I", len(b)) + b


def reply(rid, status, kind, headers=()):
    p = struct.pack(">IHBI", rid, status, kind, len(headers))
    for k, v in headers:
        p += string(k.encode()) + string(v.encode() if isinstance(v, str) else v)
    return frame(REPLY, p)


def haul(rid, data, fin=False):
    return frame(HAUL, struct.pack(">IB", rid, 1 if fin else 0) + data)


def ready(rid):
    return frame(READY, struct.pack(">I", rid))


def parse_hail(p):
    rid, clen, n = struct.unpack(">IQI", p[:16])
    off = 16
    params = {}
    for _ in range(n):
        (ln,) = struct.unpack(">I", p[off:off + 4])
        name = p[off + 4:off + 4 + ln]
        off += 4 + ln
        (lv,) = struct.unpack(">I", p[off:off + 4])
        val = p[off + 4:off + 4 + lv]
        off += 4 + lv
        params[name.decode()] = val.decode("latin-1")
    return rid, clen, params


def serve_link(c, k):
    if os.path.exists(log_path + ".slowdock"):
        time.sleep(dock_delay)
    c.sendall(frame(DOCK, json.dumps({"version": 3, "ship": os.environ.get("MS_SHIP", "probe"),
                                      "pid": os.getpid(), "threads": threads}).encode()))
    t, p = read_frame(c)
    if t != MOORED:
        return
    while True:
        t, p = read_frame(c)
        if t is None:
            return
        if t != HAIL:
            return
        rid, clen, params = parse_hail(p)
        body = b""
        while len(body) < clen:
            t, p = read_frame(c)
            if t != HAUL:
                return
            hid, flags = struct.unpack(">IB", p[:5])
            body += p[5:]
            if flags & 1:
                break
        log({"params": params, "body_len": len(body), "body_sha": hashlib.sha256(body).hexdigest(),
             "link": k, "id": rid, "pid": os.getpid()})
        path = params.get("PATH_INFO", "")
        q = dict(urllib.parse.parse_qsl(params.get("QUERY_STRING", "")))
        if path == "/empty":
            c.sendall(reply(rid, 204, 0) + ready(rid))
        elif path == "/stream":
            out = reply(rid, 200, 1, [("Content-Type", "text/plain")])
            c.sendall(out)
            for i in range(int(q.get("n", "3"))):
                c.sendall(haul(rid, b"chunk %d\n" % i))
            c.sendall(haul(rid, b"", True) + ready(rid))
        elif path == "/big":
            n = int(q.get("kb", "1")) * 1024
            c.sendall(reply(rid, 200, 1, [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(n))]))
            sent = 0
            while sent < n:
                k2 = min(65536, n - sent)
                c.sendall(haul(rid, bytes([sent % 251]) * k2, sent + k2 == n))
                sent += k2
                if sent % (1 << 20) == 0:  # progress, for the backpressure test
                    with open(log_path + ".sent", "w") as f:
                        f.write(str(sent))
            c.sendall(ready(rid))
        elif path == "/break":
            c.close()
            return
        elif path == "/cut":
            c.sendall(reply(rid, 200, 1, [("Content-Length", "100")]) + haul(rid, b"0123456789"))
            time.sleep(0.1)
            c.close()
            return
        elif path == "/noready":
            c.sendall(reply(rid, 200, 1, [("Content-Length", "1")]) + haul(rid, b"x", True))
            time.sleep(3600)
        elif path == "/hang":
            time.sleep(3600)
        elif path == "/garbage":
            c.sendall(frame(0x7f, b"junk"))
            time.sleep(1)
            return
        elif path == "/twice":
            c.sendall(reply(rid, 200, 0) + reply(rid, 200, 0))
            time.sleep(1)
            return
        elif path == "/file":
            c.sendall(frame(REPLY, struct.pack(">IHBI", rid, 200, 2, 1) + string(b"Content-Type")
                            + string(b"text/plain") + string(q["path"].encode())) + ready(rid))
        elif path == "/ws":
            c.sendall(reply(rid, 101, 4, [("Upgrade", "websocket"), ("Connection", "Upgrade")]))
            while True:
                t, p = read_frame(c)
                if t != HAUL:
                    return
                data = p[5:]
                if data == b"bye":
                    c.sendall(haul(rid, b"bye!", True))
                    return
                if data == b"garbage":
                    c.sendall(frame(0x7f, b"junk"))
                    time.sleep(1)
                    return
                c.sendall(haul(rid, data))
        elif path == "/ws-deaf":
            c.sendall(reply(rid, 101, 4, [("Upgrade", "websocket"), ("Connection", "Upgrade")]))
            time.sleep(1)  # unread: Mothership's writes back up
            c.shutdown(socket.SHUT_RD)  # its writes fail from now on, the link stays open
            c.settimeout(1)
            try:
                while c.recv(1 << 16):
                    pass
            except OSError:
                pass
            time.sleep(20)
            return
        elif path == "/cookies":
            c.sendall(reply(rid, 200, 0, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]) + ready(rid))
        else:
            if path == "/sleep":
                time.sleep(int(q.get("ms", "100")) / 1000)
            data = json.dumps({"params": params, "body_len": len(body),
                               "body_sha": hashlib.sha256(body).hexdigest()}).encode()
            c.sendall(reply(rid, 200, 1, [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(data)))])
                      + haul(rid, data, True) + ready(rid))


def worker(srv, k):
    while True:
        c, _ = srv.accept()
        try:
            serve_link(c, k)
        except OSError:
            pass
        finally:
            c.close()


def main():
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1024)
    ts = [threading.Thread(target=worker, args=(srv, k), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
