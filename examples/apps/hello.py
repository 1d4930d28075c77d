#!/usr/bin/python3
"""A tiny web ship for the example fleet: answers every GET with a short
text that names the ship, and /health with "ok". Listens on the TCP port in
$PORT, or on the Unix socket in $SOCKET."""
import http.server
import os
import socketserver
import sys

NAME = os.environ.get("SHIP_NAME", "hello")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n" if self.path == "/health" else f"hello from {NAME}: {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.command, self.path))
        sys.stdout.flush()


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("unix", 0)


def main():
    sock = os.environ.get("SOCKET")
    if sock:
        if os.path.exists(sock):
            os.unlink(sock)
        srv = UnixServer(sock, Handler)
    else:
        port = int(os.environ.get("PORT", "3000"))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"{NAME} listening on {sock or port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
