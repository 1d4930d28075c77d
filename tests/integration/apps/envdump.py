#!/usr/bin/env python3
"""envdump.py FILE [stay]: write the environment (and cwd) as JSON to FILE
(atomically), then exit 0, or with "stay" keep running until signalled."""
import json
import os
import signal
import sys

data = dict(os.environ)
data["__cwd__"] = os.getcwd()
data["__pid__"] = str(os.getpid())
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f)
os.rename(tmp, sys.argv[1])
print("env written", flush=True)
if len(sys.argv) > 2 and sys.argv[2] == "stay":
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()
