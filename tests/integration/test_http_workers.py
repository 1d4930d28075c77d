"""Several data-plane workers (`workers = 2` and "auto"): every worker
accepts on its own SO_REUSEPORT listener (or the shared Unix socket),
requests spread over them, and the counters summed at scrape are exact."""
import http.client
import threading

import pytest

from http_helpers import echo_ship, msum, recv_to_eof, start_proxy


def hammer(port, conns, per_conn, path="/w"):
    errors = []

    def one():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(per_conn):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
            c.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("workers", [2, "auto"])
def test_requests_spread_over_workers_and_are_counted_exactly(fleet, workers):
    px = start_proxy(fleet, echo_ship("app"), mothership={"workers": workers})
    tasks = len(__import__("os").listdir(f"/proc/{px.pid()}/task"))
    # control loop + log writer + the workers
    assert tasks >= 4, tasks
    errors = hammer(px.port, conns=20, per_conn=50)
    assert errors == []
    m = px.metrics()
    assert msum(m, "mothership_requests_total", route="/.*") == 1000
    assert msum(m, "mothership_responses_total", route="/.*", code="2xx") == 1000
    assert msum(m, "mothership_http_connections_total") >= 20


def test_unix_bind_with_two_workers(fleet, tmp_path):
    sock = f"/tmp/ms-w-{tmp_path.name[-20:]}.sock"
    px = start_proxy(fleet, echo_ship("app"), binds={"http": f"unix://{sock}"}, mothership={"workers": 2})
    done = []
    for _ in range(30):
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.sendall(b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_to_eof(s)
        s.close()
        done.append(data.split(b" ", 2)[1])
    assert done == [b"200"] * 30
    assert msum(px.metrics(), "mothership_requests_total", route="/.*") == 30
