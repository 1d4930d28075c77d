"""HTTP/2: streams reset in the middle of their zstd responses (their
contexts go back to the worker's cache), while others on the connection
go on; those that finish decode to the ship's bytes."""
import os
import socket

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from http_helpers import ModuleFleet, echo_ship, free_port, start_proxy, zstd_decompress as zd

TEXT = b"".join(b"line %05d: the quick brown fox jumps over the lazy dog\n" % i for i in range(1500))


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    (root / "big.js").write_bytes(TEXT)
    huge = b"".join(os.urandom(16).hex().encode() + b"\n" for _ in range(100000))
    (root / "huge.txt").write_bytes(huge)
    f = ModuleFleet(tmp_path_factory, "rvz2")
    p = start_proxy(f, echo_ship("app", routes=["http:/.*"]), binds={"http": {"port": free_port(), "h2c": True}},
                    mothership={"compression": True}, static=[{"path": str(root), "prefix": "/static"}])
    p.huge = huge
    yield p
    f.cleanup()


def test_reset_streams_mid_zstd(px):
    for rnd in range(5):
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        cfg = h2.config.H2Configuration(client_side=True)
        c = h2.connection.H2Connection(cfg)
        c.initiate_connection()
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2000})
        s.sendall(c.data_to_send())
        want = {}
        for i in range(6):
            sid = c.get_next_available_stream_id()
            path = ["/static/huge.txt", "/p?size=2000000&ctype=text/plain", "/static/big.js"][i % 3]
            c.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                 (":authority", "x"), ("accept-encoding", "zstd")], end_stream=True)
            want[sid] = path
        s.sendall(c.data_to_send())
        bodies = {sid: b"" for sid in want}
        done, reset = set(), set()
        while len(done | reset) < len(want):
            d = s.recv(65536)
            assert d, "closed"
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    if ev.stream_id % 4 == 1 and ev.stream_id not in reset and ev.stream_id not in done:
                        try:
                            c.reset_stream(ev.stream_id)
                            reset.add(ev.stream_id)
                        except h2.exceptions.StreamClosedError:
                            pass
                    elif ev.stream_id not in reset:
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    done.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    reset.add(ev.stream_id)
            s.sendall(c.data_to_send())
        for sid in done - reset:
            out = zd(bodies[sid])
            if want[sid] == "/static/big.js":
                assert out == TEXT
            elif want[sid] == "/static/huge.txt":
                assert out == px.huge
        s.close()
