#!/usr/bin/env python3
"""A tiny HTTP ship for the fleet tests.

    health_app.py (--port N | --unix PATH) [--sick FILE] [--gate FILE] [--pids FILE]

GET /health answers 200 "ok", or 503 while FILE (--sick) exists. With --gate
it only starts listening once that file exists, so a test decides when the
ship becomes ready. --pids appends its pid to a file at start. Any other
path answers 200 with the ship's name."""
import argparse
import http.server
import os
import signal
import socketserver
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int)
ap.add_argument("--unix")
ap.add_argument("--sick")
ap.add_argument("--gate")
ap.add_argument("--pids")
a = ap.parse_args()

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

if a.pids:
    with open(a.pids, "a") as f:
        f.write(f"{os.getpid()}\n")

if a.gate:
    while not os.path.exists(a.gate):
        time.sleep(0.01)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health" and a.sick and os.path.exists(a.sick):
            code, body = 503, b"sick\n"
        else:
            code, body = 200, b"ok\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def address_string(self):
        return "client"

    def log_message(self, fmt, *args):
        sys.stdout.write("%s\n" % (fmt % args))
        sys.stdout.flush()


class TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def server_bind(self):
        try:
            os.unlink(self.server_address)
        except FileNotFoundError:
            pass
        socketserver.UnixStreamServer.server_bind(self)


if a.unix:
    srv = UnixServer(a.unix, Handler)
    where = f"unix:{a.unix}"
else:
    srv = TCPServer(("127.0.0.1", a.port), Handler)
    where = f"127.0.0.1:{a.port}"
print(f"listening on {where}", flush=True)
srv.serve_forever()
