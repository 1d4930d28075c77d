"""Data plane under load and over time: a keep-alive soak (10,000 requests
over 50 connections, 0 errors, a stable fd count), /metrics series that
change by exactly what flowed (requests, status classes, duration
histogram, bytes, connections), and a graceful drain (a slow request in
flight when SIGTERM arrives completes before its ship is stopped)."""
import http.client
import signal
import threading
import time

import requests

from http_helpers import Raw, echo_ship, fd_count, msum, raw_request, start_proxy, wait_until

CONNS = 50
PER_CONN = 200            # 50 x 200 = 10,000


def hammer(port, conns, per_conn, path="/soak"):
    """conns threads, each with one keep-alive http.client connection doing
    per_conn GETs; returns (ok, errors)."""
    errors = []
    ok = [0] * conns
    start = threading.Barrier(conns)

    def run(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            start.wait()
            for k in range(per_conn):
                p = f"{path}/{i}/{k}?n={k}"
                c.request("GET", p)
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or f'"target": "{p}"'.encode() not in body or r.will_close:
                    errors.append((i, k, r.status, body[:200]))
                    return
                ok[i] += 1
        except Exception as e:   # noqa: BLE001 - every failure counts as an error
            errors.append((i, "exception", repr(e)))
        finally:
            c.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return sum(ok), errors


def settled_fds(px, target=None):
    """Mothership's fd count once client connections are all closed."""
    wait_until(lambda: msum(px.metrics(), "mothership_http_connections_open") == 0, timeout=10,
               what="connections_open to drop to 0")
    return fd_count(px.pid())


def test_keep_alive_soak_and_metrics(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/soak/.*", "http:/other"]),
                     http={"upstream_keepalive": 8})
    # warm up: one request so every lazily opened thing exists
    assert requests.get(px.url("/soak/warm"), timeout=5).status_code == 200
    fds0 = settled_fds(px)
    m0 = px.metrics()

    ok, errors = hammer(px.port, CONNS, PER_CONN)
    assert errors == [], errors[:5]
    assert ok == CONNS * PER_CONN

    fds1 = settled_fds(px)
    m1 = px.metrics()
    lab = dict(bind="http", route="/soak/.*", target="app")
    n = CONNS * PER_CONN
    assert msum(m1, "mothership_requests_total", **lab) - msum(m0, "mothership_requests_total", **lab) == n
    assert msum(m1, "mothership_responses_total", code="2xx", **lab) - \
        msum(m0, "mothership_responses_total", code="2xx", **lab) == n
    for cls in ("1xx", "3xx", "4xx", "5xx"):
        assert msum(m1, "mothership_responses_total", code=cls, **lab) == \
            msum(m0, "mothership_responses_total", code=cls, **lab), cls
    assert msum(m1, "mothership_request_duration_seconds_count", **lab) - \
        msum(m0, "mothership_request_duration_seconds_count", **lab) == n
    assert msum(m1, "mothership_request_duration_seconds_bucket", le="+Inf", **lab) - \
        msum(m0, "mothership_request_duration_seconds_bucket", le="+Inf", **lab) == n
    assert msum(m1, "mothership_request_bytes_total", **lab) - msum(m0, "mothership_request_bytes_total", **lab) \
        >= n * len("GET /soak/0/0?n=0 HTTP/1.1\r\n\r\n")
    assert msum(m1, "mothership_response_bytes_total", **lab) - msum(m0, "mothership_response_bytes_total", **lab) \
        >= n * 300
    assert msum(m1, "mothership_http_connections_total") - msum(m0, "mothership_http_connections_total") == CONNS
    assert msum(m1, "mothership_upstream_errors_total") == msum(m0, "mothership_upstream_errors_total")
    # the other route saw nothing
    assert msum(m1, "mothership_requests_total", route="/other") == 0

    # fds: what is left is at most the upstream pool (upstream_keepalive = 8) ...
    assert fds0 <= fds1 <= fds0 + 8, (fds0, fds1)
    # ... and more rounds do not grow it past that bound
    for rnd in range(2):
        ok, errors = hammer(px.port, CONNS, 20, path=f"/soak/again{rnd}")
        assert errors == [] and ok == CONNS * 20
        fds2 = settled_fds(px)
        assert fds0 <= fds2 <= fds0 + 8, (fds0, fds1, fds2)


def test_status_classes_and_unmatched_requests_are_counted(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/api/.*"]))
    m0 = px.metrics()
    with requests.Session() as s:
        for st, k in ((200, 3), (404, 2), (503, 1), (302, 1)):
            for _ in range(k):
                assert s.get(px.url(f"/api/x?status={st}"), allow_redirects=False, timeout=5).status_code == st
        for _ in range(4):
            assert s.get(px.url("/nowhere"), timeout=5).status_code == 404
    m1 = px.metrics()
    lab = dict(bind="http", route="/api/.*", target="app")

    def d(name, **kw):
        return msum(m1, name, **kw) - msum(m0, name, **kw)
    assert d("mothership_requests_total", **lab) == 7
    assert d("mothership_responses_total", code="2xx", **lab) == 3
    assert d("mothership_responses_total", code="3xx", **lab) == 1
    assert d("mothership_responses_total", code="4xx", **lab) == 2
    assert d("mothership_responses_total", code="5xx", **lab) == 1
    # no route: counted on the bind's "no match" series, not as an invented route
    none = dict(bind="http", route="", target="none")
    assert d("mothership_requests_total", **none) == 4
    assert d("mothership_responses_total", code="4xx", **none) == 4
    routes = {dict(ls).get("route") for (n, ls) in m1 if n == "mothership_requests_total"}
    assert routes == {"", "/api/.*"}, routes   # bounded cardinality: no paths as labels


def test_open_connections_gauge_follows_clients(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    held = [Raw(px.port) for _ in range(5)]
    try:
        for c in held:
            c.send(raw_request("GET", "/x"))
            assert c.response().status == 200
        assert msum(px.metrics(), "mothership_http_connections_open") == 5
    finally:
        for c in held:
            c.close()
    wait_until(lambda: msum(px.metrics(), "mothership_http_connections_open") == 0, timeout=5,
               what="connections_open back to 0")


def test_graceful_drain_completes_the_request_in_flight(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]))
    result = {}

    def slow():
        try:
            r = requests.get(px.url("/slow?delay=1200"), timeout=10)
            result["status"] = r.status_code
            result["path"] = r.json()["path"]
        except Exception as e:   # noqa: BLE001
            result["error"] = repr(e)
        result["t"] = time.monotonic()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: msum(px.metrics(), "mothership_http_connections_open") >= 1, timeout=5,
               what="the slow request to be accepted")
    time.sleep(0.2)   # let it reach the backend: there is no event for "the upstream has the request"
    px.ms.signal(signal.SIGTERM)
    t.join(10)
    assert result.get("status") == 200, result
    assert result.get("path") == "/slow"
    stopping = px.ms.event("stopping", ship="app", timeout=10)
    assert stopping["_t"] >= result["t"] - 0.05, "the ship was stopped before the request in flight finished"
    drained = px.ms.event("drained", timeout=10)
    assert drained["_i"] < stopping["_i"]
    assert px.ms.wait_exit(10) == 0, px.ms.output()
