#!/usr/bin/env python3
"""signal_logger.py PIDFILE [PORT]: a ship that says which signals it gets.

Prints "got SIGHUP" (and so on) for HUP, USR1, USR2, WINCH, TTIN, TTOU,
QUIT and TERM, and goes on running: SIGTERM in particular is only logged,
as PostgreSQL's "smart shutdown" waits for clients. SIGINT is its only way
out: it prints "clean exit on SIGINT" and exits 0. With PORT it listens on
127.0.0.1:PORT first. Writes its pid to PIDFILE (atomically) once set up; every line it prints
goes to PIDFILE.log too."""
import os
import signal
import socket
import sys

LOGGED = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU,
          signal.SIGQUIT, signal.SIGTERM]


def say(text):
    """To stdout (Mothership's log) and to PIDFILE.log (for a test that
    cannot read the log, under the dashboard)."""
    sys.stdout.write(text + "\n")  # one write: a handler cannot cut the line in two
    sys.stdout.flush()
    with open(sys.argv[1] + ".log", "a") as f:
        f.write(text + "\n")


def log(sig, frame):
    say(f"got {signal.Signals(sig).name}")


def leave(sig, frame):
    say("clean exit on SIGINT")
    sys.exit(0)


for s in LOGGED:
    signal.signal(s, log)
signal.signal(signal.SIGINT, leave)
srv = None
if len(sys.argv) > 2:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[2])))
    srv.listen(16)
say("up")
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{os.getpid()}\n")
os.rename(tmp, sys.argv[1])
while True:
    signal.pause()
