#!/usr/bin/env python3
"""bay.py ENVFILE [GATE]: a stand-in bay. Writes its environment as JSON to
ENVFILE, waits for GATE to exist (if given), then listens on the Unix socket
in $MS_SOCKET_PATH, docks over every connection Mothership opens (Dock, then
it reads Moored and whatever follows) until signalled."""
import json
import os
import signal
import socket
import struct
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump(dict(os.environ), f)
os.rename(tmp, sys.argv[1])
if len(sys.argv) > 2:
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
path = os.environ["MS_SOCKET_PATH"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s.bind(path)
s.listen(16)
print(f"bay listening on {path}", flush=True)
while True:
    c, _ = s.accept()
    hello = json.dumps({"version": 1, "ship": os.environ["MS_SHIP"]}).encode()
    c.sendall(struct.pack(">BI", 0x01, len(hello)) + hello)
    while c.recv(65536):
        pass
    c.close()
