"""redirect_to_https on a plain bind: every request is answered 308 with
the same host, path and query on the TLS bind, before static files,
payloads and routes (nothing reaches a ship); a Host that cannot be made
into an https address gets a 400; curl -L follows it to the TLS bind."""
import os
import subprocess

import pytest

from http_helpers import ModuleFleet, Raw, echo_ship, free_port, msum, start_proxy
from test_tls import certs  # noqa: F401 (the module's CA and server certificate)


@pytest.fixture(scope="module")
def px(tmp_path_factory, certs):  # noqa: F811
    site = tmp_path_factory.mktemp("site")
    (site / "hello.txt").write_bytes(b"hello\n")
    tls = f"[mothership.tls]\ncert = \"{certs / 'server.pem'}\"\nkey = \"{certs / 'server.key'}\"\n"
    f = ModuleFleet(tmp_path_factory, "redirect")
    p = start_proxy(f, echo_ship("app", routes=["https:/app.*", "web:/app.*"]),
                    binds={"https": free_port(), "web": {"port": free_port(), "redirect_to_https": True}},
                    static=[{"path": str(site), "prefix": "/s"}],
                    mothership={"socket_dir": f"/tmp/msrd{os.getpid()}"}, extra=tls)
    yield p
    f.cleanup()


def ship_requests(px):
    return msum(px.metrics(), "mothership_requests_total", target="app")


def test_every_request_on_the_plain_bind_is_sent_to_https(px):
    before = ship_requests(px)
    r = Raw(px.binds["web"])
    r.send(b"GET /app/x?a=1&b=2 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n")
    resp = r.response()
    assert resp.status == 308
    assert resp.header("Location") == f"https://localhost:{px.binds['https']}/app/x?a=1&b=2"
    # the connection is kept: a static path gets the same
    r.send(b"GET /s/hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    resp = r.response()
    assert resp.status == 308 and resp.header("Location") == f"https://127.0.0.1:{px.binds['https']}/s/hello.txt"
    # the path the Location carries is the normalised one
    r.send(b"GET /app/../s/./hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    resp = r.response()
    assert resp.header("Location") == f"https://localhost:{px.binds['https']}/s/hello.txt"
    # a request with a body: answered, and the connection closed (its body is not read)
    r = Raw(px.binds["web"])
    r.send(b"POST /app/y HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
    resp = r.response()
    assert resp.status == 308 and resp.header("Location") == f"https://localhost:{px.binds['https']}/app/y"
    assert ship_requests(px) == before
    # the same request on the TLS bind does reach the ship (the count is the right one)
    out = subprocess.run(["curl", "-sS", "-k", "-o", "/dev/null", f"https://127.0.0.1:{px.binds['https']}/app/z"],
                         capture_output=True, timeout=10)
    assert out.returncode == 0 and ship_requests(px) == before + 1


@pytest.mark.parametrize("host", [b"evil.com/x", b"a@b", b"", b"[::1", b"x:y"])
def test_a_host_that_is_no_address_gets_a_400_and_no_location(px, host):
    before = ship_requests(px)
    r = Raw(px.binds["web"])
    r.send(b"GET /app/x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    resp = r.response()
    assert resp.status == 400 and resp.header("Location") is None
    assert ship_requests(px) == before


def test_curl_follows_it_to_the_tls_bind(px, certs):  # noqa: F811
    out = subprocess.run(["curl", "-sS", "-L", "--cacert", str(certs / "ca.pem"),
                          f"http://localhost:{px.binds['web']}/s/hello.txt"], capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello\n"
