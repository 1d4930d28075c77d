"""Hostile HTTP/2 clients against the h2 -> HTTP/1.1 translation, through
the real binary: requests cut in the middle of their body (a reset, a
Content-Length the DATA falls short of) must not leave a ship connection
half-written in the pool, where the next request would be read as the
rest of the body; a body that looks like HTTP/1.1 framing stays a body;
a response the client resets closes its ship connection. Each case
asserts what the client gets and what reaches the ship (a recording ship,
apps/raw_recorder.py)."""
import os
import time

import pytest
from hyperframe.frame import DataFrame, RstStreamFrame

from fleet_helpers import PY, free_port, toml_str
from http_helpers import ModuleFleet, start_proxy, toml_value, wait_until
from test_h2 import CANCEL, H2, PROTOCOL_ERROR, RECORDER, recorded


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    """An h2c bind before a recording ship, request bodies streamed as they come."""
    f = ModuleFleet(tmp_path_factory, "h2hostile")
    rec_dir = str(tmp_path_factory.mktemp("h2hrec"))
    rport = free_port()
    rec = "\n".join(["[[fleet.rec]]", 'name = "rec"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([RECORDER, '--port', str(rport), '--dir', rec_dir])}",
                     f'bind = "tcp://127.0.0.1:{rport}"', 'routes = ["http:/rec/.*"]'])
    p = start_proxy(f, binds={"http": {"port": free_port(), "h2c": True}},
                    http={"request_buffering": False, "h2_max_header_list_size": "8KiB"},
                    mothership={"socket_dir": f"/tmp/msh2h-{os.getpid()}"}, extra=rec)
    p.ms.event("ready", ship="rec", timeout=15)
    p.rec_dir = rec_dir
    yield p
    f.cleanup()


def conn_with(px, needle):
    """The recording ship's connection file that carried these bytes."""
    for name in sorted(os.listdir(px.rec_dir)):
        if name.startswith("conn-"):
            with open(os.path.join(px.rec_dir, name), "rb") as fh:
                if needle in fh.read():
                    return name
    return None


def ship_closed(px, name):
    try:
        with open(os.path.join(px.rec_dir, "closed.txt")) as fh:
            return name in fh.read().split()
    except FileNotFoundError:
        return False


def follow_up_is_clean(px, path):
    """A new request after the cut reaches the ship as a request of its own."""
    for _ in range(3):  # enough to reach any connection the pool holds
        c = H2(px.port)
        c.request(1, path)
        status, _, body, end = c.response(1)
        c.close()
        assert status == 200 and end == "end" and body == b"ok " + path.encode() + b"\n", (status, body, end)
    wait_until(lambda: len(recorded(px, path)) == 3, timeout=5)


def cut_body(px, tag, extra, cut):
    c = H2(px.port)
    c.request(1, f"/rec/{tag}", method="POST", extra=extra, end_stream=False)
    marker = f"PARTIAL-{tag}-".encode()
    c.send(DataFrame(1, marker + b"x" * 10))
    assert wait_until(lambda: conn_with(px, marker) is not None, timeout=5)
    name = conn_with(px, marker)
    end = cut(c)
    c.close()
    # the ship's connection holds half a request: it is closed, never reused
    assert wait_until(lambda: ship_closed(px, name), timeout=5), name
    assert recorded(px, f"/rec/{tag}") == []
    follow_up_is_clean(px, f"/rec/after-{tag}")
    return end


def reset(c):
    c.send(RstStreamFrame(1, error_code=CANCEL))


def test_reset_mid_body_closes_the_ship_connection(px):
    cut_body(px, "rst-cl", [("content-length", "1000")], reset)


def test_reset_mid_chunked_body_closes_the_ship_connection(px):
    cut_body(px, "rst-chunked", [], reset)


def test_short_content_length_closes_the_ship_connection(px):
    def short(c):
        c.send(DataFrame(1, b"", flags=["END_STREAM"]))
        return c.response(1)[3]
    end = cut_body(px, "short-cl", [("content-length", "1000")], short)
    assert end == ("rst", PROTOCOL_ERROR), end


def test_a_body_that_looks_like_http1_stays_a_body(px):
    smuggled = b"0\r\n\r\nGET /rec/smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
    for tag, extra in (("cl", [("content-length", str(len(smuggled)))]), ("chunked", [])):
        c = H2(px.port)
        c.request(1, f"/rec/body-{tag}", method="POST", extra=extra, end_stream=False)
        c.send(DataFrame(1, smuggled[:7]), DataFrame(1, smuggled[7:], flags=["END_STREAM"]))
        status, _, body, end = c.response(1)
        c.close()
        assert status == 200 and end == "end", (status, body, end)
        [r] = recorded(px, f"/rec/body-{tag}")
        assert r["body"] == smuggled.decode(), r
    follow_up_is_clean(px, "/rec/after-body")
    assert recorded(px, "/rec/smuggled") == []


def extended_connect(c, sid, path, protocol="websocket"):
    c.send(c.headers(sid, [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"),
                           (":authority", "test"), (":path", path), ("sec-websocket-version", "13")],
                     end_stream=False))


def test_extended_connect_the_ship_does_not_upgrade_is_not_a_tunnel(px):
    # RFC 8441 4: a 2xx answer to an extended CONNECT means the tunnel is open.
    # A ship that answers its HTTP/1.1 upgrade with a plain 200 opened none.
    c = H2(px.port)
    extended_connect(c, 1, "/rec/not-ws")
    status, _, body, end = c.response(1)
    c.close()
    assert status is not None and not 200 <= status < 300, (status, body, end)
    [r] = recorded(px, "/rec/not-ws")
    assert ["Upgrade", "websocket"] in r["headers"]


def test_extended_connect_other_protocol_is_501(px):
    c = H2(px.port)
    extended_connect(c, 1, "/rec/other-proto", protocol="connect-udp")
    status, _, body, end = c.response(1)
    c.close()
    assert status == 501 and end == "end", (status, body, end)
    assert recorded(px, "/rec/other-proto") == []
