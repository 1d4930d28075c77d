#!/usr/bin/python3
"""bench/http/acceptburst.py PID PORT [N] [ROUNDS]: what a burst of new
connections does to a connection already open, on a proxy listening on
127.0.0.1:PORT whose event loop runs in process (or thread) PID.

Each round stops the proxy (SIGSTOP), as the scheduler does on a loaded
machine, opens N connections that each send a request, sends a request on
a kept-alive connection opened before, resumes the proxy (SIGCONT) and
times how long the kept-alive request takes to be answered, then how long
until the whole burst is. A proxy that accepts the whole backlog before it
reads the open connections answers the kept-alive request last. Any
proxy whose answer contains "hello" (bench/http's backend) works: run it
against Mothership and against nginx's worker in alternation. The figures
are medians (and max) over ROUNDS (default 10); N defaults to 500 (the
listen backlog must hold them: Mothership's is 1024). Needs the right to
signal PID. See bench/README.md (bench/http, "Where the tail comes from").
"""
import os
import signal
import socket
import statistics
import sys
import time

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def answered(s):
    got = b""
    while b"hello" not in got:
        more = s.recv(4096)
        if not more:
            raise OSError("the proxy closed the connection")
        got += more


def one_round(pid, port, n, kept):
    """(µs until the kept-alive request is answered, µs until the burst is)"""
    os.kill(pid, signal.SIGSTOP)
    try:
        burst = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            burst.append(s)
        time.sleep(0.05)          # the handshakes complete in the backlog
        for s in burst:
            try:
                s.send(REQ)
            except OSError:
                pass
        kept.sendall(REQ)
        t0 = time.perf_counter()
    finally:
        os.kill(pid, signal.SIGCONT)
    answered(kept)
    t_kept = time.perf_counter() - t0
    for s in burst:
        s.setblocking(True)
        s.settimeout(10)
        answered(s)
        s.close()
    return t_kept * 1e6, (time.perf_counter() - t0) * 1e6


def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.exit("usage: acceptburst.py PID PORT [N] [ROUNDS]")
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    kept = socket.create_connection(("127.0.0.1", port))
    kept.sendall(REQ)
    answered(kept)
    ka, whole = [], []
    for _ in range(rounds):
        a, b = one_round(pid, port, n, kept)
        ka.append(a)
        whole.append(b)
        time.sleep(0.05)
    kept.close()
    print(f"burst of {n}: kept-alive request answered after "
          f"{statistics.median(ka) / 1000:.1f} ms (max {max(ka) / 1000:.1f}), "
          f"the whole burst after {statistics.median(whole) / 1000:.1f} ms "
          f"(max {max(whole) / 1000:.1f}), medians of {rounds}")


if __name__ == "__main__":
    main()
