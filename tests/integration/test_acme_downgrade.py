"""An ACME CA reached over https may not send Mothership to plain http:
a directory (or an order) naming http:// URLs would carry the signed
requests and the certificate where anyone on the path reads and changes
them. A fake CA here serves its directory over TLS (its CA trusted through
ca_root) with every URL plain http, pointing at a second server that counts
what reaches it: nothing may."""
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fleet_helpers import free_port, toml_str
from pebble_helpers import make_pebble_tls


class Counter(BaseHTTPRequestHandler):
    hits = 0

    def _any(self):
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Replay-Nonce", "bm9uY2U")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _any

    def log_message(self, *a):
        pass


def serve(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


def test_an_https_directory_naming_http_urls_is_refused(fleet, tmp_path):
    plain = serve(ThreadingHTTPServer(("127.0.0.1", 0), Counter))
    base = f"http://127.0.0.1:{plain.server_address[1]}"
    directory = {"newNonce": base + "/nonce", "newAccount": base + "/account", "newOrder": base + "/order"}

    class Directory(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(directory).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ca, cert, key = make_pebble_tls(tmp_path / "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    https = ThreadingHTTPServer(("127.0.0.1", 0), Directory)
    https.socket = ctx.wrap_socket(https.socket, server_side=True)
    serve(https)
    try:
        ms = fleet("\n".join([
            "[mothership]",
            f"state_dir = {toml_str(str(tmp_path / 'state'))}",
            "[mothership.bind]",
            f'http = "127.0.0.1:{free_port()}"',
            f'https = "127.0.0.1:{free_port()}"',
            "[mothership.acme]",
            'domains = ["site.example.com"]',
            f'directory = "https://127.0.0.1:{https.server_address[1]}/dir"',
            f"ca_root = {toml_str(ca)}",
            'backoff = "1s"',
            "",
        ]), name="ship-manifest.toml")
        ev = ms.event("acme_account_failed", timeout=30)
        assert "plain http URLs: refused under an https directory" in ev["error"], ev
        assert Counter.hits == 0
    finally:
        https.shutdown()
        plain.shutdown()
