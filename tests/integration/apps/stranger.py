#!/usr/bin/env python3
"""stranger.py PORT [TRIGGER]: a process that is not a ship holding a port.

Listens on 127.0.0.1:PORT (with TRIGGER: only once that file exists),
prints "listening" and sleeps until killed. Connections wait in the
backlog: a connect() to it succeeds, as it would to any server."""
import os
import socket
import sys
import time

port = int(sys.argv[1])
if len(sys.argv) > 2:
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.02)
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
print("listening", flush=True)
while True:
    time.sleep(60)
