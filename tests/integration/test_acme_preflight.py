"""`mothership preflight` with [mothership.acme]: besides the uplinks it GETs
the ACME directory (trusting ca_root when set) and prints one more row,

    acme  <directory URL>  up|down  <ms>ms  ACME directory[, terms of service: URL] or why

exiting 1 when the directory is down. The directories: pebble's (HTTPS,
its certificate signed by the CA file that is ca_root), and a plain
http.server on a thread answering what a test wants."""
import http.server
import json
import re
import threading

import pytest

from conftest import run_ms
from fleet_helpers import free_port, toml_str
from pebble_helpers import pebble  # noqa: F401 (the fixture)

ROW = re.compile(r"^  (\S+)\s+(\S+)\s+(up|down)\s+(\d+)ms\s+(.*)$")


def rows(out):
    """name -> dict(address, state, text) of every result row."""
    found = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            found[m.group(1)] = dict(address=m.group(2), state=m.group(3), text=m.group(5))
    return found


def preflight(tmp_path, directory, ca_root=None, uplinks=""):
    text = "\n".join([
        "[mothership.bind]",
        f'http = "127.0.0.1:{free_port()}"',
        f'https = "127.0.0.1:{free_port()}"',
        "",
        "[mothership.acme]",
        'domains = ["example.com"]',
        f"directory = {toml_str(directory)}",
        f'state_dir = {toml_str(tmp_path / "acme")}',
        f"ca_root = {toml_str(ca_root)}" if ca_root else "",
        "",
        uplinks,
    ])
    path = tmp_path / "ship-manifest.toml"
    path.write_text(text)
    r = run_ms("preflight", "-c", str(path), env={"MS_STATE_DIR": str(tmp_path / "state")})
    assert "Sanitizer" not in r.err and "runtime error" not in r.err, r
    return r


@pytest.fixture
def http_dir():
    """A factory: http_dir(status, body) serves body with status on every
    GET from a thread; returns its URL /directory. Stopped at teardown."""
    servers = []

    def start(status, body, content_type="application/json"):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/directory"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_pebble_directory_is_up_through_ca_root(pebble, tmp_path):  # noqa: F811
    pb = pebble()
    r = preflight(tmp_path, pb.directory, ca_root=pb.ca_root)
    assert r.code == 0, r
    row = rows(r.out)["acme"]
    assert row["address"] == pb.directory, r
    assert row["state"] == "up", r
    # pebble's terms of service are a data: URL
    assert row["text"].startswith("ACME directory, terms of service: data:"), r
    assert r.out.startswith(f"{tmp_path / 'ship-manifest.toml'}: checking the ACME directory\n"), r
    assert "the ACME directory is up" in r.out, r
    assert "no uplinks to check" not in r.out, r


def test_directory_row_aligned_with_the_uplinks(pebble, tmp_path):  # noqa: F811
    pb = pebble()
    down = free_port()
    r = preflight(tmp_path, pb.directory, ca_root=pb.ca_root,
                  uplinks=f'[[uplinks]]\nname = "db"\nurl = "tcp://127.0.0.1:{down}"\ntimeout = "500ms"\n')
    assert r.code == 1, r  # the uplink is down, the directory up
    got = rows(r.out)
    assert got["db"]["state"] == "down" and got["acme"]["state"] == "up", r
    assert "checking 1 uplink and the ACME directory" in r.out, r
    assert "1 of 1 uplink down" in r.out and "the ACME directory is up" in r.out, r
    lines = [l for l in r.out.splitlines() if ROW.match(l)]
    assert len(lines) == 2
    # the state column starts at the same place on both rows
    assert len({re.search(r"  (up|down) ", l).start() for l in lines}) == 1, r


def test_pebble_directory_without_ca_root_fails_verification(pebble, tmp_path):  # noqa: F811
    pb = pebble()
    r = preflight(tmp_path, pb.directory)
    assert r.code == 1, r
    row = rows(r.out)["acme"]
    assert row["state"] == "down", r
    assert "certificate verify failed" in row["text"], r
    assert "the ACME directory is down" in r.out, r


def test_http_status_is_the_reason(http_dir, tmp_path):
    url = http_dir(404, "not here", content_type="text/plain")
    r = preflight(tmp_path, url)
    assert r.code == 1, r
    assert rows(r.out)["acme"] == dict(address=url, state="down", text="HTTP 404"), r


def test_http_status_with_a_problem_document(http_dir, tmp_path):
    url = http_dir(503, json.dumps({"type": "urn:ietf:params:acme:error:serverInternal", "detail": "maintenance"}),
                   content_type="application/problem+json")
    r = preflight(tmp_path, url)
    assert r.code == 1, r
    assert rows(r.out)["acme"]["text"] == "HTTP 503: urn:ietf:params:acme:error:serverInternal: maintenance", r


def test_json_that_is_not_a_directory(http_dir, tmp_path):
    r = preflight(tmp_path, http_dir(200, json.dumps({"hello": "world"})))
    assert r.code == 1, r
    assert rows(r.out)["acme"]["text"] == 'not an ACME directory: "newNonce" is missing', r


def test_not_json(http_dir, tmp_path):
    r = preflight(tmp_path, http_dir(200, "<html>a web page</html>", content_type="text/html"))
    assert r.code == 1, r
    assert rows(r.out)["acme"]["text"].startswith("not JSON: "), r


def test_a_real_directory_over_plain_http(http_dir, tmp_path):
    base = "http://127.0.0.1:1"
    url = http_dir(200, json.dumps({"newNonce": base + "/nonce", "newAccount": base + "/acct",
                                    "newOrder": base + "/order"}))
    r = preflight(tmp_path, url)
    assert r.code == 0, r
    assert rows(r.out)["acme"]["text"] == "ACME directory", r


def test_unreachable_port(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/directory"
    r = preflight(tmp_path, url)
    assert r.code == 1, r
    row = rows(r.out)["acme"]
    assert row["state"] == "down" and "connection refused" in row["text"], r
