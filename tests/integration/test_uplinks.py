"""Uplinks and `mothership preflight`: the real binary checks real local
listeners made here (plain TCP, fake redis/postgres/mysql speaking just
enough of their protocols, http.server over HTTP and HTTPS with a fresh
self-signed certificate). Each row of the preflight output is

    name  scheme://host:port  up|down  <ms>ms  detail-or-error [(N attempts)] [(same as X)]

and the exit status is 0 when every uplink is up, 1 otherwise. Timeouts are a
few hundred ms so the suite stays fast."""
import http.server
import os
import re
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import run_ms

ROW = re.compile(r"^  (\S+)\s+(\S+)\s+(up|down)\s+(\d+)ms\s+(.*)$")


def rows(out):
    """name -> dict(address, state, ms, text) for every result row."""
    found = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            found[m.group(1)] = dict(address=m.group(2), state=m.group(3),
                                     ms=int(m.group(4)), text=m.group(5))
    return found


def preflight(manifest, text, **kw):
    path = manifest(text)
    r = run_ms("preflight", "-c", path, **kw)
    # under a sanitizer build (MS_BUILD=build-asan) a report fails the test
    assert "Sanitizer" not in r.err and "runtime error" not in r.err, r
    return r


class Server:
    """A TCP listener on 127.0.0.1 whose every connection is given to
    handler(conn) on its own thread. Counts accepted connections; closes
    everything (listener and connections) on stop()."""

    def __init__(self, handler, port=0, start=True):
        self.handler = handler
        self.accepts = 0
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.sock = None
        self.port = port
        self.thread = None
        if start:
            self.start()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.sock = s
        self.port = s.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.stopping:
                    conn.close()
                    return
                self.accepts += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(conn)
        except OSError:
            pass

    def stop(self):
        with self.lock:
            self.stopping = True
            conns, self.conns = self.conns, []
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        if self.thread:
            self.thread.join(timeout=5)


@pytest.fixture
def servers():
    made = []

    def make(handler, **kw):
        s = Server(handler, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def closed_port():
    """A port nothing listens on: bind, read the port, close."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_some(conn, n=1024):
    try:
        return conn.recv(n)
    except OSError:
        return b""


# ---------------------------------------------------------------- handlers
def hold(conn):
    """Accept and never answer; return when the peer closes."""
    while read_some(conn):
        pass


def answer(reply, expect=None):
    """Read the request (checking it when expect is given), send reply, wait
    for the peer to close."""
    def handler(conn):
        data = b""
        if expect is not None:
            while len(data) < len(expect):
                chunk = read_some(conn)
                if not chunk:
                    return
                data += chunk
            if data != expect:
                conn.sendall(b"?? unexpected request " + data[:40])
                return
        conn.sendall(reply)
        hold(conn)
    return handler


def greet(greeting):
    """Speak first (mysql), then wait for the peer to close."""
    def handler(conn):
        conn.sendall(greeting)
        hold(conn)
    return handler


def mysql_greeting(version=b"8.0.36-mothership-test"):
    payload = bytes([10]) + version + b"\0" + (42).to_bytes(4, "little") + b"abcdefgh\0" + b"\xff\xf7"
    return len(payload).to_bytes(3, "little") + b"\0" + payload


# ---------------------------------------------------------------- tests
def test_no_uplinks(manifest):
    r = preflight(manifest, '[mothership]\ncompression = true\n')
    assert r.code == 0, r
    assert "no uplinks to check" in r.out


def test_tcp_up_and_down(manifest, servers):
    up = servers(hold)
    down = closed_port()
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "alive"
        url = "tcp://127.0.0.1:{up.port}"
        timeout = "500ms"

        [[uplinks]]
        name = "dead"
        url = "tcp://127.0.0.1:{down}"
        timeout = "500ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)
    assert got["alive"]["state"] == "up", r
    assert got["alive"]["address"] == f"tcp://127.0.0.1:{up.port}"
    assert got["alive"]["text"] == "connected"
    assert got["dead"]["state"] == "down", r
    assert got["dead"]["text"] == "connection refused", r
    assert "1 of 2 uplinks down" in r.out
    assert up.accepts == 1


def test_all_up_exits_zero_and_rows_are_aligned(manifest, servers):
    a = servers(hold)
    b = servers(answer(b"+PONG\r\n", expect=b"PING\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "a-rather-long-uplink-name"
        url = "tcp://127.0.0.1:{a.port}"

        [[uplinks]]
        name = "cache"
        url = "redis://127.0.0.1:{b.port}"
    """)
    assert r.code == 0, r
    assert "all 2 uplinks up" in r.out
    lines = [l for l in r.out.splitlines() if ROW.match(l)]
    assert len(lines) == 2
    # the address column starts at the same offset on every row
    assert len({l.index("tcp://") if "tcp://" in l else l.index("redis://") for l in lines}) == 1


def test_same_host_port_is_checked_once(manifest, servers):
    srv = servers(answer(b"N", expect=b"\x00\x00\x00\x08\x04\xd2\x16\x2f"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "primary"
        url = "postgres://127.0.0.1:{srv.port}/app_production"
        timeout = "500ms"

        [[uplinks]]
        name = "replica"
        url = "postgres://127.0.0.1:{srv.port}/app_replica"
        timeout = "500ms"
    """)
    assert r.code == 0, r
    got = rows(r.out)
    assert got["primary"]["state"] == "up" and got["replica"]["state"] == "up", r
    assert "(same as primary)" in got["replica"]["text"], r
    assert "same as" not in got["primary"]["text"]
    assert srv.accepts == 1, r


def test_same_host_port_other_scheme_is_checked_on_its_own(manifest, servers):
    """Deduplication keys on scheme, host and port: a redis server's port
    named again as http:// gets its own (HTTP) check, which fails."""
    srv = servers(answer(b"+PONG\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "cache"
        url = "redis://127.0.0.1:{srv.port}"
        timeout = "2s"

        [[uplinks]]
        name = "web"
        url = "http://127.0.0.1:{srv.port}/health"
        timeout = "2s"
    """)
    assert r.code == 1, r
    got = rows(r.out)
    assert got["cache"]["state"] == "up", r
    assert got["web"]["state"] == "down", r
    assert "same as" not in got["web"]["text"], r
    assert srv.accepts == 2, r


def test_redis_timeout(manifest, servers):
    srv = servers(hold)
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "cache"
        url = "redis://127.0.0.1:{srv.port}"
        timeout = "300ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)["cache"]
    assert got["state"] == "down"
    assert got["text"] == "timed out after 300ms", r
    assert 250 <= got["ms"] < 3000, r


def test_redis_pong_and_noauth_are_up(manifest, servers):
    pong = servers(answer(b"+PONG\r\n", expect=b"PING\r\n"))
    noauth = servers(answer(b"-NOAUTH Authentication required.\r\n", expect=b"PING\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "open"
        url = "redis://127.0.0.1:{pong.port}"
        timeout = "500ms"

        [[uplinks]]
        name = "locked"
        url = "redis://:secret@127.0.0.1:{noauth.port}/0"
        timeout = "500ms"
    """)
    assert r.code == 0, r
    got = rows(r.out)
    assert got["open"]["text"] == "+PONG"
    assert got["locked"]["state"] == "up"
    assert "-NOAUTH" in got["locked"]["text"], r


def test_redis_garbage_is_down(manifest, servers):
    srv = servers(answer(b"HTTP/1.1 400 Bad Request\r\n\r\n", expect=b"PING\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "cache"
        url = "redis://127.0.0.1:{srv.port}"
        timeout = "500ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)["cache"]
    assert got["state"] == "down"
    assert got["text"].startswith("not a redis server"), r
    assert "HTTP/1.1 400" in got["text"]


def test_postgres_ssl_request(manifest, servers):
    yes = servers(answer(b"S", expect=b"\x00\x00\x00\x08\x04\xd2\x16\x2f"))
    garbage = servers(answer(b"X", expect=b"\x00\x00\x00\x08\x04\xd2\x16\x2f"))
    silent_close = servers(lambda conn: (read_some(conn), conn.close()))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "pg"
        url = "postgresql://user:pw@127.0.0.1:{yes.port}/db"
        timeout = "500ms"

        [[uplinks]]
        name = "impostor"
        url = "postgres://127.0.0.1:{garbage.port}/db"
        timeout = "500ms"

        [[uplinks]]
        name = "closer"
        url = "postgres://127.0.0.1:{silent_close.port}/db"
        timeout = "500ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)
    assert got["pg"]["state"] == "up" and "SSL available" in got["pg"]["text"], r
    assert got["impostor"]["state"] == "down"
    assert got["impostor"]["text"].startswith("not a postgres server"), r
    assert got["closer"]["state"] == "down"
    assert got["closer"]["text"] == "connection closed without an answer", r


def test_mysql_greeting(manifest, servers):
    good = servers(greet(mysql_greeting()))
    bad = servers(greet(b"SSH-2.0-OpenSSH_9.2\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "db"
        url = "mysql://root@127.0.0.1:{good.port}/app"
        timeout = "500ms"

        [[uplinks]]
        name = "ssh"
        url = "mysql://127.0.0.1:{bad.port}"
        timeout = "500ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)
    assert got["db"]["state"] == "up", r
    assert got["db"]["text"] == "mysql 8.0.36-mothership-test"
    assert got["ssh"]["state"] == "down"
    assert got["ssh"]["text"].startswith("not a mysql server"), r


class Handler(http.server.BaseHTTPRequestHandler):
    paths = []

    def do_GET(self):
        Handler.paths.append((self.path, self.headers.get("Host"), self.headers.get("Connection")))
        code = 503 if self.path.startswith("/down") else 200
        body = b"ok\n" if code == 200 else b"unavailable\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    made = []

    def make(context=None):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context:
            srv.socket = context.wrap_socket(srv.socket, server_side=True)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        made.append((srv, t))
        return srv.server_address[1]
    yield make
    for srv, t in made:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def test_http_200_and_503(manifest, http_server):
    Handler.paths = []
    port = http_server()
    # two paths on one host:port would be deduplicated, so use two hosts
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "api"
        url = "http://127.0.0.1:{port}/health?deep=1"
        timeout = "1s"

        [[uplinks]]
        name = "sick"
        url = "http://localhost:{port}/down"
        timeout = "1s"
    """)
    assert r.code == 1, r
    got = rows(r.out)
    assert got["api"]["state"] == "up" and got["api"]["text"] == "HTTP 200", r
    assert got["sick"]["state"] == "down" and got["sick"]["text"] == "HTTP 503", r
    assert ("/health?deep=1", f"127.0.0.1:{port}", "close") in Handler.paths
    assert ("/down", f"localhost:{port}", "close") in Handler.paths


def test_http_garbage_answer(manifest, servers):
    srv = servers(answer(b"this is not http at all\r\n\r\n"))
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "web"
        url = "http://127.0.0.1:{srv.port}/"
        timeout = "500ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)["web"]
    assert got["state"] == "down"
    assert got["text"].startswith("invalid HTTP response"), r


def test_https_self_signed_is_down(manifest, http_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    port = http_server(ctx)
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "secure"
        url = "https://localhost:{port}/"
        timeout = "2s"
    """)
    assert r.code == 1, r
    got = rows(r.out)["secure"]
    assert got["state"] == "down", r
    assert got["address"] == f"https://localhost:{port}"
    assert got["text"].startswith("certificate verify failed: self"), r


def make_ca_and_leaf(tmp_path):
    """A throwaway CA and a localhost certificate it signed (SAN DNS:localhost only)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=tmp_path)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mothership-test-ca", "-days", "1",
         "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "leaf.key",
         "-out", "leaf.csr")
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "1", "-out", "leaf.pem", "-extfile", "ext.cnf")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "leaf.pem"), str(tmp_path / "leaf.key"))
    return str(tmp_path / "ca.pem"), ctx


def test_https_and_rediss_with_a_trusted_ca(manifest, http_server, servers, tmp_path):
    ca, ctx = make_ca_and_leaf(tmp_path)
    port = http_server(ctx)

    def tls_redis(conn):
        with ctx.wrap_socket(conn, server_side=True) as t:
            if read_some(t) == b"PING\r\n":
                t.sendall(b"+PONG\r\n")
            hold(t)
    rs = servers(tls_redis)
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "trusted"
        url = "https://localhost:{port}/health"
        timeout = "2s"

        [[uplinks]]
        name = "wrong-name"
        url = "https://127.0.0.1:{port}/health"
        timeout = "2s"

        [[uplinks]]
        name = "cache"
        url = "rediss://localhost:{rs.port}"
        timeout = "2s"
    """, env={"SSL_CERT_FILE": ca})  # OpenSSL's default verify paths honour SSL_CERT_FILE
    assert r.code == 1, r
    got = rows(r.out)
    assert got["trusted"]["state"] == "up" and got["trusted"]["text"] == "HTTP 200", r
    assert got["wrong-name"]["state"] == "down", r
    assert got["wrong-name"]["text"].startswith("certificate verify failed: IP address mismatch"), r
    assert got["cache"]["state"] == "up" and got["cache"]["text"] == "+PONG", r
    assert got["cache"]["address"] == f"rediss://localhost:{rs.port}"


def test_dns_failure(manifest):
    r = preflight(manifest, """
        [[uplinks]]
        name = "ghost"
        url = "redis://nonexistent.invalid:6379"
        timeout = "3s"
    """)
    assert r.code == 1, r
    got = rows(r.out)["ghost"]
    assert got["state"] == "down"
    assert got["text"].startswith("DNS: "), r


def test_env_expanded_url(manifest, servers):
    srv = servers(hold)
    r = preflight(manifest, """
        [[uplinks]]
        name = "from-env"
        url = "$MS_TEST_UPLINK_URL"
        timeout = "500ms"
    """, env={"MS_TEST_UPLINK_URL": f"tcp://127.0.0.1:{srv.port}"})
    assert r.code == 0, r
    assert rows(r.out)["from-env"]["state"] == "up"


def test_wait_retries_until_the_listener_appears(manifest):
    port = closed_port()
    late = Server(hold, port=port, start=False)
    timer = threading.Timer(0.8, late.start)
    timer.start()
    try:
        r = preflight(manifest, f"""
            [[uplinks]]
            name = "late"
            url = "tcp://127.0.0.1:{port}"
            timeout = "300ms"
            wait = "5s"
        """)
    finally:
        timer.cancel()
        timer.join()
        late.stop()
    assert r.code == 0, r
    got = rows(r.out)["late"]
    assert got["state"] == "up", r
    m = re.search(r"\((\d+) attempts\)", got["text"])
    assert m and int(m.group(1)) > 1, r
    assert got["ms"] >= 700, r


def test_wait_gives_up(manifest):
    port = closed_port()
    r = preflight(manifest, f"""
        [[uplinks]]
        name = "never"
        url = "tcp://127.0.0.1:{port}"
        timeout = "300ms"
        wait = "600ms"
    """)
    assert r.code == 1, r
    got = rows(r.out)["never"]
    assert got["state"] == "down"
    # attempts at about 0, 250 and 600ms (the last at the deadline)
    assert re.search(r"connection refused \(3 attempts\)", got["text"]), r
    assert 550 <= got["ms"] < 3000, r


def test_bad_manifest_fails_before_checking(manifest):
    r = preflight(manifest, """
        [[uplinks]]
        name = "weird"
        url = "ftp://example.com"
    """)
    assert r.code == 1, r
    assert "unsupported scheme" in r.err
