"""Hostile HTTP/2 clients against the h2 -> HTTP/1.1 translation, through
the real binary: requests cut in the middle of their body (a reset, a
Content-Length the DATA falls short of) must not leave a ship connection
half-written in the pool, where the next request would be read as the
rest of the body; a body that looks like HTTP/1.1 framing stays a body;
a response the client resets closes its ship connection. Each case
asserts what the client gets and what reaches the ship (a recording ship,
apps/raw_recorder.py)."""
import os
import socket
import time

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, PriorityFrame, RstStreamFrame, WindowUpdateFrame

from fleet_helpers import PY, free_port, toml_str
from http_helpers import ModuleFleet, echo_ship, recv_to_eof, start_proxy, toml_value, wait_until
from test_http_paths import module_toml
from test_h2 import CANCEL, H2, PROTOCOL_ERROR, RECORDER, recorded

FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x3, 0x5


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    """An h2c bind "http" and a plain bind "plain" before a recording ship,
    request bodies streamed as they come, the auth payload on /rec/admin."""
    f = ModuleFleet(tmp_path_factory, "h2hostile")
    rec_dir = str(tmp_path_factory.mktemp("h2hrec"))
    rport = free_port()
    rec = "\n".join(["[[fleet.rec]]", 'name = "rec"', f"command = {toml_str(PY)}",
                     f"args = {toml_value([RECORDER, '--port', str(rport), '--dir', rec_dir])}",
                     f'bind = "tcp://127.0.0.1:{rport}"', 'routes = ["http:/rec/.*", "plain:/rec/.*"]'])
    rec += "\n\n" + module_toml("auth", "auth.wasm", ["/rec/admin(/.*)?"], config={"token": "s3cret"})
    plain = free_port()
    p = start_proxy(f, binds={"http": {"port": free_port(), "h2c": True}, "plain": plain},
                    http={"request_buffering": False, "h2_max_header_list_size": "8KiB"},
                    mothership={"socket_dir": f"/tmp/msh2h-{os.getpid()}"}, extra=rec)
    p.ms.event("ready", ship="rec", timeout=15)
    p.rec_dir = rec_dir
    p.plain_port = plain
    yield p
    f.cleanup()


@pytest.fixture(autouse=True)
def still_sound(px):
    """After each attack: Mothership runs, and (under ASan) reported nothing."""
    yield
    assert px.ms.proc.poll() is None
    err = "\n".join(px.ms.err_lines)
    assert "Sanitizer" not in err and "runtime error" not in err, err[-4000:]


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


def test_reset_mid_response_closes_the_ship_connection(px):
    c = H2(px.port)
    c.request(1, "/rec/big-rst?size=30000000")
    assert c.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1) is not None
    # the client never opens its window: the ship is mid-response when the stream goes
    assert wait_until(lambda: conn_with(px, b"/rec/big-rst") is not None, timeout=5)
    name = conn_with(px, b"/rec/big-rst")
    c.send(RstStreamFrame(1, error_code=CANCEL), WindowUpdateFrame(0, 1 << 20))
    assert wait_until(lambda: ship_closed(px, name), timeout=5), name
    c.request(3, "/rec/after-big-rst")
    status, _, body, end = c.response(3)
    c.close()
    assert status == 200 and body == b"ok /rec/after-big-rst\n", (status, body, end)
    follow_up_is_clean(px, "/rec/after-big-rst2")


def test_hpack_bomb_is_bounded_by_the_header_list_size(px):
    c = H2(px.port)
    # one 4000-byte entry in the dynamic table, then referenced 2000 times (a byte each)
    first = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "test"),
                          (":path", "/rec/bomb"), ("x-bomb", "b" * 4000)])
    idx = 62  # the newest dynamic entry
    refs = bytes([0x80 | idx]) * 2000 if idx < 127 else b""
    c.send(HeadersFrame(1, data=first + refs, flags=["END_STREAM", "END_HEADERS"]))
    status, _, body, end = c.response(1)
    assert status == 431 and end == "end", (status, body, end)
    c.request(3, "/rec/after-bomb")
    assert c.response(3)[0] == 200
    c.close()
    assert recorded(px, "/rec/bomb") == []


def test_window_update_overflow_is_a_flow_control_error(px):
    c = H2(px.port)
    c.send(WindowUpdateFrame(0, 2**31 - 1))
    f = c.until(lambda f: isinstance(f, GoAwayFrame))
    assert f is None or f.error_code == FLOW_CONTROL_ERROR, f
    c.close()
    c = H2(px.port)
    c.request(1, "/rec/wu-stream?size=100", end_stream=True)
    c.send(WindowUpdateFrame(1, 2**31 - 1))
    f = c.until(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)) or
                (isinstance(f, DataFrame) and "END_STREAM" in f.flags))
    assert f is None or isinstance(f, DataFrame) or f.error_code == FLOW_CONTROL_ERROR, f
    c.close()


@pytest.mark.parametrize("settings", [{0x4: 2**31}, {0x5: 2**24}, {0x5: 100}])
def test_settings_out_of_range_end_the_connection(px, settings):
    c = H2(px.port, settings=settings)
    f = c.until(lambda f: isinstance(f, GoAwayFrame))
    assert f is None or f.error_code in (PROTOCOL_ERROR, FLOW_CONTROL_ERROR), f
    c.close()


def test_settings_extremes_in_range_still_serve(px):
    # a huge header table, the largest frame, a one-byte window then opened wide
    c = H2(px.port, settings={0x1: 2**32 - 1, 0x5: 2**24 - 1, 0x4: 1, 0x6: 2**32 - 1})
    c.request(1, "/rec/extreme?size=200000")
    first = c.until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
    assert len(first.data) == 1
    c.send(WindowUpdateFrame(1, 1 << 20), WindowUpdateFrame(0, 1 << 20))
    _, _, body, end = c.response(1, timeout=10)
    c.close()
    assert end == "end" and 1 + len(body) == 200000, (len(body), end)


def test_headers_on_a_closed_stream_reach_no_ship(px):
    c = H2(px.port)
    c.request(1, "/rec/closed-1")
    assert c.response(1)[0] == 200
    c.request(1, "/rec/closed-again")
    c.request(3, "/rec/closed-3")
    # ignored (nghttp2 takes it for a race with its own reset) or a connection error
    status, _, _, end = c.response(3)
    assert (status, end) == (200, "end") or end == ("goaway", PROTOCOL_ERROR) or end == "closed", (status, end)
    c.close()
    assert recorded(px, "/rec/closed-again") == []


def test_data_after_end_stream_is_refused(px):
    c = H2(px.port)
    c.request(1, "/rec/after-end?size=300000", method="POST", extra=[("content-length", "3")], end_stream=False)
    c.send(DataFrame(1, b"abc", flags=["END_STREAM"]), DataFrame(1, b"GET /rec/smuggled2 HTTP/1.1\r\n\r\n"))
    f = c.until(lambda f: isinstance(f, (GoAwayFrame, RstStreamFrame)))
    assert f is None or f.error_code == STREAM_CLOSED, f
    c.close()
    time.sleep(0.2)
    assert all(r["body"] == "abc" for r in recorded(px, "/rec/after-end"))
    assert recorded(px, "/rec/smuggled2") == []


def test_priority_and_empty_data_floods_leave_the_connection_serving(px):
    c = H2(px.port)
    c.send(*[PriorityFrame(2 * i + 101, depends_on=2 * i + 99, stream_weight=255) for i in range(5000)])
    c.request(1, "/rec/flood", method="POST", extra=[("content-length", "1")], end_stream=False)
    c.send(*[DataFrame(1, b"") for _ in range(5000)], DataFrame(1, b"z", flags=["END_STREAM"]))
    status, _, body, end = c.response(1, timeout=10)
    c.close()
    assert status == 200 and end == "end", (status, body, end)
    assert [r["body"] for r in recorded(px, "/rec/flood")] == ["z"]


def h1_status(px, target, hdrs=""):
    with socket.create_connection(("127.0.0.1", px.plain_port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: test\r\n{hdrs}Connection: close\r\n\r\n".encode())
        data = recv_to_eof(s)
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("target", ["/rec/admin", "/rec/%61dmin", "/rec//admin", "/rec/x/../admin", "/rec/./admin",
                                    "/rec/admin/x/..", "/rec/%2e%2e/rec/admin", "/rec/admin;x", "/rec/admin%2f",
                                    "/rec/admin#x", "/rec/adm%69n/panel", "/rec/admin?x=1"])
def test_the_payload_applies_over_h2_as_over_http1(px, target):
    before = len(recorded(px, "/"))
    c = H2(px.port)
    c.request(1, target)
    status, _, body, end = c.response(1)
    c.close()
    assert status in (400, 401) and status == h1_status(px, target), (target, status, body)
    time.sleep(0.1)
    assert len(recorded(px, "/")) == before
    # with the token: the same answer over both
    c = H2(px.port)
    c.request(1, target, extra=[("authorization", "Bearer s3cret")])
    status, _, body, end = c.response(1)
    c.close()
    assert status == h1_status(px, target, "Authorization: Bearer s3cret\r\n"), (target, status, body)


def test_a_header_block_left_open_gets_the_header_timeout(fleet):
    px = start_proxy(fleet, echo_ship("app"), http={"header_timeout": "1s", "idle_timeout": "30s"},
                     binds={"http": {"port": free_port(), "h2c": True}})
    c = H2(px.port)
    c.request(1, "/first")  # the connection has had a stream: only the idle time limit is left
    assert c.response(1)[0] == 200
    # HEADERS without END_HEADERS, then nothing: the block never ends
    c.send(c.headers(3, [(":method", "GET"), (":scheme", "http")], end_headers=False))
    assert wait_closed_by_server(c.s, timeout=6), "the header block stayed open past header_timeout"
    c.close()
    assert px.ms.stop() == 0


def wait_closed_by_server(sock, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False
