#!/usr/bin/env python3
"""spawner.py PIDFILE [--setsid]: a ship that leaves descendants behind.

Starts a plain child (sleep), a double-forked grandchild whose parent has
exited (reparented away from us; still in our process group), and with
--setsid also a double-forked daemon in a session of its own. Writes every
pid (its own first) to PIDFILE, one a line, atomically; then waits for a
signal. SIGTERM is ignored by the descendants only as far as `sleep` does."""
import os
import signal
import subprocess
import sys

out = sys.argv[1]
modes = ["plain"] + (["setsid"] if "--setsid" in sys.argv[2:] else [])
pids = [os.getpid()]
child = subprocess.Popen(["sleep", "300"])
pids.append(child.pid)
for mode in modes:
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        os.close(r)
        if os.fork() == 0:
            if mode == "setsid":
                os.setsid()
            os.write(w, f"{os.getpid()}\n".encode())
            os.close(w)
            os.execvp("sleep", ["sleep", "301"])
        os._exit(0)
    os.close(w)
    os.waitpid(mid, 0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    pids.append(int(data))
with open(out + ".tmp", "w") as f:
    f.write("".join(f"{p}\n" for p in pids))
os.rename(out + ".tmp", out)
print(f"spawned {' '.join(map(str, pids))}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    signal.pause()
