"""hostile_hbay.py: an HTTP bay (docking v3) that breaks the protocol on
purpose, built on the frame functions of examples/bays/http_bay.py. It docks
like a good bay on every link (threads from MS_BAY_THREADS), reads each
request (HAIL + body) and then misbehaves as HBAY_MODE says:

  ok               REPLY 200 "ok" (Content-Length 2), READY (a good bay)
  garbage          bytes that are no v3 frame instead of a REPLY
  no-ready         REPLY 200 "ok" and FIN, then never READY (the link stays)
  silent           never answers (the link stays open)
  exit-mid-stream  REPLY 200 with Content-Length 100000, 1000 bytes, exit(3)
  close-mid-stream REPLY 200 stream (no length), 1000 bytes, the link closed
  wrong-id         REPLY for another request id
  reply-twice      two REPLYs
  haul-after-fin   REPLY, HAUL with FIN, another HAUL
  ready-early      REPLY stream, READY before the FIN
  nul-header       REPLY with a header value holding a NUL byte
  file             REPLY kind file with the path in HBAY_FILE
  tunnel-unasked   REPLY 101 kind tunnel to a request that asked for no
                   upgrade, then "hi" as tunnel bytes and FIN
  dock-again       a second DOCK instead of a REPLY
  many-headers     REPLY with 5000 headers (a head far over any bound)
  v1-dock-later    the first link (the readiness handshake) docks with
                   v3; every later link sends a v1 Dock and waits
  short-length     REPLY with Content-Length 10, 3 bytes and FIN, READY
  long-length      REPLY with Content-Length 2, 6 bytes and FIN, READY
  framing-headers  REPLY with Transfer-Encoding: chunked and Connection:
                   close of its own, "ok" and FIN, READY
  break-first      the first request's link is closed before any REPLY;
                   later requests are served as "ok"
  break            every link closed before the REPLY

Each event is appended as a JSON line to HBAY_LOG: {"event": "link"} per
accepted link, {"event": "hail", "params": {...}, "body_len": n, "rid": n}
per request read (values as latin-1), {"event": "eof"} when Mothership
closed a link."""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "examples", "bays"))
import http_bay as hb  # noqa: E402

MODE = os.environ.get("HBAY_MODE", "ok")
LOG = os.environ.get("HBAY_LOG")
lock = threading.Lock()
served = [0]
links_seen = [0]


def log(**event):
    if not LOG:
        return
    with lock:
        with open(LOG, "a") as f:
            f.write(json.dumps(event) + "\n")


def reply_ok(sock, rid):
    hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Length", "2")])
    hb.send_haul(sock, rid, b"ok", fin=True)
    hb.send_ready(sock, rid)


def misbehave(sock, rid, mode):
    """False when the link must be closed now."""
    if mode == "ok":
        reply_ok(sock, rid)
    elif mode == "garbage":
        sock.sendall(b"\xde\xad\xbe\xef" * 8)
        return wait_eof(sock)
    elif mode == "no-ready":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Length", "2")])
        hb.send_haul(sock, rid, b"ok", fin=True)
        return wait_eof(sock)
    elif mode == "silent":
        return wait_eof(sock)
    elif mode == "exit-mid-stream":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Length", "100000")])
        hb.send_haul(sock, rid, b"x" * 1000)
        os._exit(3)
    elif mode == "close-mid-stream":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Type", "text/plain")])
        hb.send_haul(sock, rid, b"x" * 1000)
        return False
    elif mode == "wrong-id":
        hb.send_reply(sock, rid + 1, 200, hb.KIND_EMPTY, [])
        return wait_eof(sock)
    elif mode == "reply-twice":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [])
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [])
        return wait_eof(sock)
    elif mode == "haul-after-fin":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [])
        hb.send_haul(sock, rid, b"ok", fin=True)
        hb.send_haul(sock, rid, b"more")
        hb.send_ready(sock, rid)
        return wait_eof(sock)
    elif mode == "ready-early":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [])
        hb.send_haul(sock, rid, b"ok")
        hb.send_ready(sock, rid)
        return wait_eof(sock)
    elif mode == "nul-header":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("X-Bad", b"a\x00b"), ("Content-Length", "2")])
        hb.send_haul(sock, rid, b"ok", fin=True)
        hb.send_ready(sock, rid)
    elif mode == "file":
        hb.send_reply(sock, rid, 200, hb.KIND_FILE, [], path=os.environ["HBAY_FILE"])
        hb.send_ready(sock, rid)
    elif mode == "tunnel-unasked":
        hb.send_reply(sock, rid, 101, hb.KIND_TUNNEL, [("Upgrade", "websocket"), ("Connection", "Upgrade")])
        hb.send_haul(sock, rid, b"hi")
        hb.send_haul(sock, rid, b"", fin=True)
        return wait_eof(sock)
    elif mode == "dock-again":
        hb.send_dock(sock, "again", os.getpid(), 1)
        return wait_eof(sock)
    elif mode == "many-headers":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM,
                      [("X-H%d" % i, "v" * 8) for i in range(5000)] + [("Content-Length", "2")])
        hb.send_haul(sock, rid, b"ok", fin=True)
        hb.send_ready(sock, rid)
    elif mode == "short-length":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Length", "10")])
        hb.send_haul(sock, rid, b"abc", fin=True)
        hb.send_ready(sock, rid)
    elif mode == "long-length":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Content-Length", "2")])
        hb.send_haul(sock, rid, b"okHTTP", fin=True)
        hb.send_ready(sock, rid)
    elif mode == "framing-headers":
        hb.send_reply(sock, rid, 200, hb.KIND_STREAM, [("Transfer-Encoding", "chunked"),
                                                       ("Connection", "close")])
        hb.send_haul(sock, rid, b"ok", fin=True)
        hb.send_ready(sock, rid)
    elif mode == "break":
        return False
    elif mode == "break-first":
        with lock:
            served[0] += 1
            first = served[0] == 1
        if first:
            return False
        reply_ok(sock, rid)
    else:
        raise SystemExit("hostile_hbay: unknown HBAY_MODE %r" % mode)
    return True


def wait_eof(sock):
    """Reads until Mothership closes the link (what it sends is dropped)."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    log(event="eof")
    return False


def serve_link(sock, threads):
    log(event="link")
    with lock:
        links_seen[0] += 1
        later = links_seen[0] > 1
    try:
        if MODE == "v1-dock-later" and later:
            hb.send_frame(sock, hb.DOCK, b'{"version": 1, "ship": "hostile", "features": []}')
            wait_eof(sock)
            return
        hb.send_dock(sock, os.environ.get("MS_SHIP", "hostile"), os.getpid(), threads)
        fr = hb.read_frame(sock)
        if fr is None or fr[0] != hb.MOORED:
            log(event="eof")
            return
        hb.parse_moored(fr[1])
        while True:
            fr = hb.read_frame(sock)
            if fr is None:
                log(event="eof")
                return
            if fr[0] != hb.HAIL:
                log(event="unexpected", type=fr[0])
                return
            rid, clen, params = hb.parse_hail(fr[1])
            body = hb.read_body(sock, rid, clen).read()
            log(event="hail", rid=rid, body_len=len(body), content_length=clen,
                params={n.decode("latin-1"): v.decode("latin-1") for n, v in params})
            if not misbehave(sock, rid, MODE):
                return
    except (hb.ProtocolError, EOFError, OSError) as e:
        log(event="error", error=str(e))
    finally:
        sock.close()


def main():
    threads = int(os.environ.get("MS_BAY_THREADS", "1") or 1)
    listener = hb.listen(os.environ["MS_SOCKET_PATH"])

    def accept_loop():
        while True:
            sock, _ = listener.accept()
            serve_link(sock, threads)

    for _ in range(threads):
        threading.Thread(target=accept_loop, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
