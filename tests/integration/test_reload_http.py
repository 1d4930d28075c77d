"""Reload on the data plane, through the real binary: the manifest file is
rewritten and Mothership gets SIGHUP. A route added while a client sends
requests throughout (no failed request, no non-2xx), a route removed, a
limit changed (new requests see it), a request whose body is still coming
when its route is removed (it finishes where it started), a bind added and
removed. A build whose SIGHUP does not reload the manifest skips these
(one reload line is the sign that it does). Each test ends with a stop
and no sanitizer report (run on build-asan, that checks that the older
configurations are freed, once, after the requests that used them)."""
import re
import signal
import socket
import threading
import time

import pytest
import requests

from http_helpers import Raw, echo_ship, free_port, raw_request, start_proxy


def manifest_path(p):
    args = p.ms.cmd
    return args[args.index("-c") + 1]


def is_reload_line(e):
    msg = e.get("msg", "")
    return e.get("event") in ("reload", "config_reload") or re.match(r"reload\b", msg) is not None


def reload(p, edit, applied, what):
    """Rewrite the manifest with edit(text), send SIGHUP, and wait until
    applied() holds."""
    path = manifest_path(p)
    with open(path) as f:
        old = f.read()
    new = edit(old)
    assert new != old
    with open(path, "w") as f:
        f.write(new)
    start = len(p.ms.events())
    p.ms.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if applied():
            return
        time.sleep(0.02)
    if not any(is_reload_line(e) for e in p.ms.events()[start:]):
        pytest.skip("SIGHUP does not reload the manifest in this build")
    pytest.fail(f"timed out waiting for {what} after the reload")


def stop_clean(p):
    p.ms.stop()
    text = p.ms.output()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]


def replace(a, b):
    def edit(text):
        assert a in text, (a, text)
        return text.replace(a, b)
    return edit


def status(url):
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


def served_by(url):
    r = requests.get(url, timeout=5)
    return r.json()["name"] if r.status_code == 200 else None


def test_route_added_under_load(fleet):
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]), echo_ship("b", routes=["http:/nothing-here"]),
                    mothership={"workers": 2})
    results = {"ok": 0, "bad": []}
    stop = threading.Event()

    def load():
        s = requests.Session()  # keep-alive: requests before and after the reload share connections
        while not stop.is_set():
            try:
                r = s.get(p.url("/a/x"), timeout=5)
                if r.status_code == 200 and r.json()["name"] == "a":
                    results["ok"] += 1
                else:
                    results["bad"].append(r.status_code)
            except requests.RequestException as e:
                results["bad"].append(repr(e))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while results["ok"] < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status(p.url("/b/x")) == 404
        reload(p, replace('"http:/nothing-here"', '"http:/b/.*"'), lambda: status(p.url("/b/x")) == 200,
               "the new route")
        assert served_by(p.url("/b/x")) == "b"
        after = results["ok"]
        deadline = time.monotonic() + 10
        while results["ok"] < after + 50 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(10)
    assert results["bad"] == []
    assert results["ok"] > 70
    stop_clean(p)


def test_route_removed_and_limit_changed(fleet):
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]), echo_ship("b", routes=["http:/b/.*"]),
                    http={"max_uri_length": "8KiB"})
    long_path = "/a/" + "x" * 400
    assert served_by(p.url("/b/x")) == "b"
    assert status(p.url(long_path)) == 200

    def edit(text):
        text = replace('"http:/b/.*"', '"http:/nothing-here"')(text)
        return replace('max_uri_length = "8KiB"', 'max_uri_length = 256')(text)

    reload(p, edit, lambda: status(p.url("/b/x")) == 404, "the route to be gone")
    assert status(p.url(long_path)) == 414
    assert served_by(p.url("/a/x")) == "a"
    stop_clean(p)


def test_request_in_flight_finishes_on_its_configuration(fleet):
    p = start_proxy(fleet, echo_ship("a", routes=["http:/a/.*"]))
    with Raw(p.port) as c:
        # the 100 says the worker has begun the request (on the old routes)
        c.send(raw_request("POST", "/a/upload", headers=[("Content-Length", "10"), ("Expect", "100-continue")]))
        assert c.response(head_only=True).status == 100
        c.send(b"12345")
        reload(p, replace('"http:/a/.*"', '"http:/nothing-here"'), lambda: status(p.url("/a/x")) == 404,
               "the route to be gone")
        c.send(b"67890")
        r = c.response()
    assert r.status == 200, r
    assert r.json()["name"] == "a"
    stop_clean(p)


def test_bind_added_and_removed(fleet):
    port = free_port()
    p = start_proxy(fleet, echo_ship("a", routes=["http:/.*"]), mothership={"workers": 2})
    url = f"http://127.0.0.1:{port}/x"
    assert status(url) is None

    def add(text):
        text = replace("[mothership.bind]\n", f'[mothership.bind]\nadmin = "127.0.0.1:{port}"\n')(text)
        return replace('routes = ["http:/.*"]', 'routes = ["http:/.*", "admin:/.*"]')(text)

    reload(p, add, lambda: status(url) == 200, "the new bind to answer")
    assert served_by(url) == "a"
    assert served_by(p.url("/y")) == "a"

    def remove(text):
        text = replace(f'admin = "127.0.0.1:{port}"\n', "")(text)
        return replace('routes = ["http:/.*", "admin:/.*"]', 'routes = ["http:/.*"]')(text)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return False
        except OSError:
            return True

    reload(p, remove, refused, "the removed bind to refuse connections")
    assert served_by(p.url("/y")) == "a"
    stop_clean(p)
