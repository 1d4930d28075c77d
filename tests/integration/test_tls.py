"""TLS on binds, with real clients: curl --cacert, Python's ssl module,
openssl s_client and websockets over wss. A CA and a server certificate
(localhost, 127.0.0.1) are made with the openssl CLI for the module.

Covered: static files (small, and large ones that go through the TLS
transport's buffer instead of sendfile) and proxied requests, bodies both
ways, X-Forwarded-Proto to ships (https on the TLS bind, http on the plain
one, the client's own dropped) and to bays, wss:// to a ship and to a bay,
TLS 1.0/1.1 refused and 1.2/1.3 served, no renegotiation, ALPN http/1.1,
plain HTTP on the TLS port answered with a short 400, bad and slow
handshakes closed and counted, resumption counted."""
import asyncio
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest
import websockets

from fleet_helpers import PY, app, toml_str
from http_helpers import ModuleFleet, Raw, echo_ship, free_port, msum, start_proxy, toml_value, wait_until

PROBE = app("probe_bay.py")
BIG = os.urandom(2 * 1024 * 1024 + 333)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=Mothership Test CA", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


@pytest.fixture(scope="module")
def px(tmp_path_factory, certs):
    site = tmp_path_factory.mktemp("site")
    (site / "hello.txt").write_bytes(b"hello over tls\n")
    (site / "big.bin").write_bytes(BIG)
    log = site / "probe.jsonl"
    bay = "\n".join(["[[bays.websocket]]", 'name = "probe"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([PROBE, str(log)])}", 'routes = ["https:/bay.*"]', ""])
    tls = f"[mothership.tls]\ncert = {toml_str(str(certs / 'server.pem'))}\nkey = {toml_str(str(certs / 'server.key'))}\n"
    f = ModuleFleet(tmp_path_factory, "tls")
    p = start_proxy(f, echo_ship("app", routes=["https:/app.*", "http:/app.*", "https:/ws"]),
                    binds={"https": free_port(), "http": free_port()},
                    http={"header_timeout": "2s"},
                    static=[{"path": str(site), "prefix": "/s"}],
                    mothership={"socket_dir": f"/tmp/mstls{os.getpid()}"},
                    extra=bay + tls, wait=False)
    p.ms.event("ready", ship="app", timeout=15)
    p.ms.event("ready", ship="probe", timeout=15)
    p.probe_log = log
    yield p
    f.cleanup()


def ctx(certs):
    c = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    return c


def https(px, certs, method, path, body=None, headers=None):
    conn = http.client.HTTPSConnection("localhost", px.binds["https"], context=ctx(certs), timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def handshakes(px, result):
    return msum(px.metrics(), "mothership_tls_handshakes_total", bind="https", result=result)


def s_client(px, certs, *args, data=b"", timeout=10):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{px.binds['https']}", "-CAfile", str(certs / "ca.pem"),
           "-servername", "localhost", "-ign_eof", *args]
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


REQ = b"GET /s/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


# ------------------------------------------------------------------ clients
def test_curl_gets_static_files_and_proxied_answers_over_tls(px, certs):
    out = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", str(certs / "ca.pem"), "-w", "\n%{http_code}",
                          f"https://localhost:{px.binds['https']}/s/hello.txt"], capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello over tls\n\n200"
    # a file larger than the transport's queue: read through a buffer, with backpressure
    out = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"), "--limit-rate", "4M",
                          f"https://127.0.0.1:{px.binds['https']}/s/big.bin"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(BIG).digest()
    out = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"),
                          f"https://localhost:{px.binds['https']}/app/x?size=300000"], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout == bytes(i % 251 for i in range(300000))


def test_bodies_both_ways_and_forwarded_proto_reach_the_ship(px, certs):
    body = os.urandom(1500000)
    r, data = https(px, certs, "POST", "/app/up?echo=1", body=body,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200 and data == body
    r, data = https(px, certs, "GET", "/app/who", headers={"X-Forwarded-Proto": "http"})
    seen = json.loads(data)
    protos = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-proto"]
    assert protos == ["https"]  # the client's own claim is dropped
    # the plain bind of the same Mothership says http
    conn = http.client.HTTPConnection("127.0.0.1", px.binds["http"], timeout=10)
    conn.request("GET", "/app/who", headers={"X-Forwarded-Proto": "https"})
    seen = json.loads(conn.getresponse().read())
    assert [v for k, v in seen["headers"] if k.lower() == "x-forwarded-proto"] == ["http"]


def test_keep_alive_requests_on_one_tls_connection(px, certs):
    conn = http.client.HTTPSConnection("localhost", px.binds["https"], context=ctx(certs), timeout=10)
    for i in range(20):
        conn.request("GET", f"/app/k{i}" if i % 2 else "/s/hello.txt")
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200
        if i % 2:
            assert json.loads(data)["path"] == f"/app/k{i}"
        else:
            assert data == b"hello over tls\n"
    conn.close()


def test_tls_1_0_and_1_1_are_refused_1_2_and_1_3_served(px, certs):
    for v in ("-tls1", "-tls1_1"):
        rc, out = s_client(px, certs, v, "-cipher", "DEFAULT@SECLEVEL=0", data=REQ)
        assert rc != 0 and b"hello over tls" not in out, out[-2000:]
        assert b"alert protocol version" in out, out[-2000:]  # the server refused it
    for v, name in (("-tls1_2", b"TLSv1.2"), ("-tls1_3", b"TLSv1.3")):
        rc, out = s_client(px, certs, v, data=REQ)
        assert b"HTTP/1.1 200 OK" in out and b"hello over tls" in out, out[-2000:]
        assert b"Protocol  : " + name in out or b"New, " + name in out, out[-2000:]


def test_renegotiation_is_refused(px, certs):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{px.binds['https']}", "-CAfile", str(certs / "ca.pem"),
           "-tls1_2"]  # (with -ign_eof, s_client takes no commands)
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        p.stdin.write(b"GET /s/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        p.stdin.flush()
        seen = b""
        while b"hello over tls" not in seen:
            line = p.stdout.readline()
            assert line, seen[-2000:]
            seen += line
        p.stdin.write(b"R\n")  # s_client: renegotiate
        p.stdin.flush()
        rest = b""
        while b"renegotiation" not in rest:
            line = p.stdout.readline()
            if not line:
                break
            rest += line
    finally:
        p.kill()
        p.wait()
    assert b"RENEGOTIATING" in rest and b"no renegotiation" in rest, rest[-2000:]


def test_alpn_chooses_http_1_1_and_a_client_without_alpn_is_served(px, certs):
    rc, out = s_client(px, certs, "-alpn", "http/1.1", data=REQ)
    assert b"ALPN protocol: http/1.1" in out and b"hello over tls" in out, out[-2000:]
    rc, out = s_client(px, certs, "-alpn", "h2,http/1.1", data=REQ)  # not HTTP/2: the session ends
    assert b"ALPN protocol: h2" in out, out[-2000:]  # HTTP/2 first when offered (test_h2.py)
    rc, out = s_client(px, certs, "-alpn", "spdy/3", data=REQ)
    assert b"No ALPN negotiated" in out and b"hello over tls" in out, out[-2000:]
    rc, out = s_client(px, certs, data=REQ)
    assert b"hello over tls" in out, out[-2000:]


# ------------------------------------------------------------------ hostile and broken clients
def test_plain_http_on_the_tls_port_gets_a_short_400(px, certs):
    failed = handshakes(px, "failed")
    to_app = msum(px.metrics(), "mothership_requests_total", target="app")
    with Raw(px.binds["https"]) as r:
        r.send(b"GET /app/plain HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = r.response()
        assert resp.status == 400
        assert b"https://" in resp.body and len(resp.body) < 200
        assert resp.header("Connection") == "close"
        assert r.closed()
    wait_until(lambda: handshakes(px, "failed") == failed + 1, what="the failed handshake counted")
    assert msum(px.metrics(), "mothership_requests_total", target="app") == to_app  # nothing reached the ship


def test_garbage_and_stalled_handshakes_are_closed_and_counted(px, certs):
    failed = handshakes(px, "failed")
    # a handshake record of nonsense
    with Raw(px.binds["https"]) as r:
        r.send(b"\x16\x03\x01\x00\x20" + b"\xff" * 32)
        assert r.closed(timeout=5)
        assert r.buf[:1] in (b"", b"\x15")  # at most an alert record, then the close
    # half a ClientHello, then silence: the head timeout (2s here) ends it
    t0 = time.monotonic()
    with Raw(px.binds["https"], timeout=10) as r:
        r.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert r.closed(timeout=8)
    assert time.monotonic() - t0 < 8
    wait_until(lambda: handshakes(px, "failed") >= failed + 2, what="both failures counted")
    # and the bind still serves
    r, data = https(px, certs, "GET", "/s/hello.txt")
    assert data == b"hello over tls\n"


def test_a_client_that_closes_with_close_notify_still_gets_its_answer(px, certs):
    raw = socket.create_connection(("127.0.0.1", px.binds["https"]), timeout=10)
    s = ctx(certs).wrap_socket(raw, server_hostname="localhost")
    s.sendall(b"GET /app/cn HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break  # our close_notify (or EOF) after the answer
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and b'"/app/cn"' in data
    s.close()


def test_handshakes_are_counted_ok_and_resumed(px, certs):
    ok, resumed = handshakes(px, "ok"), handshakes(px, "resumed")
    c = ctx(certs)
    c.maximum_version = ssl.TLSVersion.TLSv1_2  # a session is there right after the handshake
    s1 = c.wrap_socket(socket.create_connection(("127.0.0.1", px.binds["https"])), server_hostname="localhost")
    s1.sendall(REQ)
    while s1.recv(65536):
        pass
    session = s1.session
    s1.close()
    s2 = c.wrap_socket(socket.create_connection(("127.0.0.1", px.binds["https"])), server_hostname="localhost",
                       session=session)
    assert s2.session_reused
    s2.close()
    wait_until(lambda: handshakes(px, "ok") >= ok + 1 and handshakes(px, "resumed") >= resumed + 1,
               what="handshakes counted")


# ------------------------------------------------------------------ WebSockets over TLS
def test_wss_to_a_ship_and_to_a_bay(px, certs):
    async def go():
        async with websockets.connect(f"wss://localhost:{px.binds['https']}/ws", ssl=ctx(certs)) as ws:
            await ws.send("to the ship")
            assert await ws.recv() == "to the ship"
            await ws.send(b"\x00\x01" * 40000)
            assert await ws.recv() == b"\x00\x01" * 40000
        async with websockets.connect(f"wss://localhost:{px.binds['https']}/bay/room",
                                      ssl=ctx(certs), extra_headers={"X-Forwarded-Proto": "http"}) as ws:
            await ws.send("hello bay")
            assert await ws.recv() == "hello bay"
    asyncio.run(asyncio.wait_for(go(), 30))

    def boardings():
        try:
            with open(px.probe_log) as f:
                return [x for x in (json.loads(l) for l in f if l.strip()) if x["type"] == "Boarding"]
        except FileNotFoundError:
            return []
    b = wait_until(boardings, what="the bay's Boarding")
    hdrs = [(k.lower(), v) for k, v in b[0]["headers"].items()]
    assert [v for k, v in hdrs if k == "x-forwarded-proto"] == ["https"]
