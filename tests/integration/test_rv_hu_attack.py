"""Hostile clients against the accept cap (64 per listener per turn) and
the per-worker pool of spare connection buffers: a burst of connections
while keep-alive clients are served (TCP, Unix, TLS binds), buffers reused
across a reload that changes max_header_size, and no byte of one
connection's request reaching another's upstream request."""
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from http_helpers import Raw, echo_ship, free_port, raw_request, short_tmpdir, toml_str, wait_until, start_proxy
from test_reload_http import reload, replace, stop_clean


def echoed(r):
    assert r.status == 200, r
    return r.json()


def connect(px, bind, unix, tls_ctx=None):
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(px.binds[bind])
        return s
    s = socket.create_connection(("127.0.0.1", px.binds[bind]), timeout=30)
    if tls_ctx:
        s = tls_ctx.wrap_socket(s, server_hostname="localhost")
    return s


def burst(px, bind="http", unix=False, tls_ctx=None, n=1000, workers=1):
    """n connections opened at once (all connected before any request, into
    the backlog while Mothership is stopped), while 8 keep-alive clients
    keep asking: every one is answered."""
    stop = threading.Event()
    errors, kept = [], [0]

    def keepalive(i):
        try:
            c = Raw.wrap(connect(px, bind, unix, tls_ctx))
            while not stop.is_set():
                c.send(raw_request("GET", f"/ka/{i}"))
                assert echoed(c.response())["path"] == f"/ka/{i}"
                kept[0] += 1
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"keepalive {i}: {e!r}")
    ths = [threading.Thread(target=keepalive, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    socks = []
    wait_until(lambda: kept[0] > 20, what="the keep-alive clients to run")
    px.ms.signal(signal.SIGSTOP)
    if tls_ctx:  # handshakes one by one would serialize: raw TCP connects first
        raw = [socket.create_connection(("127.0.0.1", px.binds[bind]), timeout=60) for _ in range(n)]
        socks = [None] * n

        def hs(i):
            try:
                socks[i] = tls_ctx.wrap_socket(raw[i], server_hostname="localhost")
            except Exception as e:  # noqa: BLE001
                errors.append(f"handshake {i}: {e!r}")
        px.ms.signal(signal.SIGCONT)
        hts = [threading.Thread(target=hs, args=(i,)) for i in range(n)]
        for t in hts:
            t.start()
        for t in hts:
            t.join()
    else:
        socks = [connect(px, bind, unix) for _ in range(n)]
        for i, s in enumerate(socks):  # the requests too, before Mothership runs again
            s.sendall(raw_request("GET", f"/b/{i}", headers={"Connection": "close"}))
        px.ms.signal(signal.SIGCONT)
    for i, s in enumerate(socks):
        if s is not None and tls_ctx:
            s.sendall(raw_request("GET", f"/b/{i}", headers={"Connection": "close"}))
    got = 0
    for i, s in enumerate(socks):
        if s is None:
            continue
        try:
            r = Raw.wrap(s).response()
            assert echoed(r)["path"] == f"/b/{i}"
            got += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"burst {i}: {e!r}")
        s.close()
    stop.set()
    for t in ths:
        t.join()
    assert not errors, errors[:10]
    assert got == n
    assert kept[0] > 0


def test_burst_of_1000_tcp_while_keepalive_served(fleet):
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), mothership={"workers": 1})
    burst(px)
    stop_clean(px)


def test_burst_of_1000_unix_two_workers(fleet):
    d = short_tmpdir()
    sock = os.path.join(d, "in.sock")
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), binds={"http": f"unix://{sock}"},
                     mothership={"workers": 2})
    burst(px, unix=True)
    stop_clean(px)


def test_burst_of_300_tls(fleet, tmp_path):
    d = tmp_path

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem",
            "-out", "c.pem", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")
    tls = f"[mothership.tls]\ncert = {toml_str(str(d / 'c.pem'))}\nkey = {toml_str(str(d / 'k.pem'))}\n"
    px = start_proxy(fleet, echo_ship("app", routes=["https:/.*"]),
                     binds={"https": {"port": free_port(), "tls": True, "h2": False}}, extra=tls,
                     mothership={"workers": 1})
    ctx = ssl.create_default_context(cafile=str(d / "c.pem"))
    burst(px, bind="https", tls_ctx=ctx, n=300)
    stop_clean(px)


def big_ok(px, n):
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/probe", headers={"X-Big": "b" * n}))
        return c.response().status == 200


def test_spare_buffers_across_max_header_size_reloads(fleet):
    """Buffers sized for one max_header_size go to the pool; after a reload
    to a larger one, a head of the new size is read whole and sent exactly;
    after a reload to a smaller one, the old limit is enforced again."""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), http={"max_header_size": 8192},
                     mothership={"workers": 1})
    conns = [Raw(px.port) for _ in range(40)]
    for i, c in enumerate(conns):  # each conn leaves its buffers to the pool when idle
        c.send(raw_request("GET", f"/warm/{i}", headers={"X-Fill": chr(65 + i % 26) * 6000}))
        assert echoed(c.response())["path"] == f"/warm/{i}"
    reload(px, replace("max_header_size = 8192", "max_header_size = 65536"), lambda: big_ok(px, 30000), "reload")
    for i, c in enumerate(conns):
        v = "%05d" % i + "z" * 50000
        c.send(raw_request("GET", f"/big/{i}", headers={"X-Big": v}))
        j = echoed(c.response())
        assert [h for h in j["headers"] if h[0] == "X-Big"] == [["X-Big", v]]
        assert not any(h[0] == "X-Fill" for h in j["headers"])
    reload(px, replace("max_header_size = 65536", "max_header_size = 8192"), lambda: not big_ok(px, 10000), "reload")
    for i, c in enumerate(conns[:10]):
        c.send(raw_request("GET", f"/small/{i}", headers={"X-Mid": "m" * 10000}))
        r = c.response()
        assert r.status == 431, r
    stop_clean(px)


def test_no_bytes_of_one_connection_reach_anothers_request(fleet):
    """Connections that take turns with pooled buffers: each upstream request
    carries exactly the headers its client sent, whatever sizes came before;
    a pipelined tail stays with its own connection."""
    px = start_proxy(fleet, echo_ship("app", routes=["http:/.*"]), mothership={"workers": 1})
    conns = [Raw(px.port) for _ in range(70)]
    for rnd in range(4):
        for i, c in enumerate(conns):
            size = (i * 7919 + rnd * 104729) % 12000 + 1
            mine = {"X-Who": f"{rnd}-{i}", "X-Pad": "p" * size}
            if (i + rnd) % 3 == 0:  # pipelined: two requests, the second's head cut in two
                second = raw_request("GET", f"/p2/{rnd}/{i}", headers={"X-Who": f"second-{rnd}-{i}"})
                c.send(raw_request("GET", f"/p1/{rnd}/{i}", headers=mine) + second[:20])
                time.sleep(0.01)
                c.send(second[20:])
                j1, j2 = echoed(c.response()), echoed(c.response())
                assert j1["path"] == f"/p1/{rnd}/{i}" and j2["path"] == f"/p2/{rnd}/{i}"
                names2 = [h[0].lower() for h in j2["headers"]]
                assert "x-pad" not in names2 and dict((k.lower(), v) for k, v in j2["headers"])["x-who"] == f"second-{rnd}-{i}"
                j = j1
            else:
                c.send(raw_request("GET", f"/one/{rnd}/{i}", headers=mine))
                j = echoed(c.response())
            got = [(k, v) for k, v in j["headers"] if not k.lower().startswith("x-forwarded") and
                   k.lower() not in ("x-request-id", "x-request-start", "host", "connection")]
            assert got == list(mine.items()), (rnd, i, [(k, v[:40]) for k, v in got])
    stop_clean(px)


def test_bind_removed_while_a_burst_waits_in_it(fleet):
    """A reload removes a bind whose backlog holds 500 connections with
    their requests (more than one turn's accepts): every client gets an
    answer or a close, none hangs; the other bind goes on; no descriptor
    is left behind and the sanitizers stay quiet."""
    port = free_port()
    px = start_proxy(fleet, echo_ship("a", routes=["http:/.*", "admin:/.*"]),
                     binds={"http": free_port(), "admin": port}, mothership={"workers": 1})
    px.ms.signal(signal.SIGSTOP)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(500)]
    for s in socks:
        s.sendall(raw_request("GET", "/x"))
    path = px.ms.cmd[px.ms.cmd.index("-c") + 1]
    text = open(path).read()
    text = text.replace(f'admin = "127.0.0.1:{port}"\n', "").replace('"http:/.*", "admin:/.*"', '"http:/.*"')
    open(path, "w").write(text)
    px.ms.signal(signal.SIGHUP)
    px.ms.signal(signal.SIGCONT)
    answered = closed = 0
    for s in socks:
        c = Raw.wrap(s)
        try:
            r = c.response()
            answered += 1
            assert r.status in (200, 404, 503), r
        except (EOFError, ConnectionResetError):
            closed += 1
        c.close()
    assert answered + closed == 500
    with Raw(px.port) as c:
        c.send(raw_request("GET", "/after"))
        assert echoed(c.response())["path"] == "/after"
    def held_on_removed_bind():
        out = subprocess.run(["ss", "-Htanp", "state", "all", f"( sport = :{port} )"], capture_output=True,
                             text=True).stdout
        return [ln for ln in out.splitlines() if f"pid={px.pid()}," in ln]
    wait_until(lambda: not held_on_removed_bind(), what=f"no socket of the removed bind: {held_on_removed_bind()}")
    stop_clean(px)


def test_shutdown_while_a_burst_waits(fleet):
    px = start_proxy(fleet, echo_ship("a", routes=["http:/.*"]), mothership={"workers": 1})
    px.ms.signal(signal.SIGSTOP)
    socks = [socket.create_connection(("127.0.0.1", px.port), timeout=10) for _ in range(500)]
    for s in socks:
        s.sendall(raw_request("GET", "/x"))
    px.ms.signal(signal.SIGTERM)
    px.ms.signal(signal.SIGCONT)
    for s in socks:
        c = Raw.wrap(s)
        try:
            c.response()
        except (EOFError, ConnectionResetError):
            pass
        c.close()
    assert px.ms.wait_exit(20) == 0
    text = px.ms.output()
    assert "Sanitizer" not in text and "runtime error" not in text, text[-4000:]


def test_content_length_edges_reach_the_ship_exactly(fleet):
    px = start_proxy(fleet, echo_ship("a", routes=["http:/.*"]), http={"max_body_size": "2MiB"})
    with Raw(px.port) as c:
        for n in (0, 1, 9, 10, 99, 100, 101, 999, 1000, 65535, 65536, 100000, 1048576, 2097152):
            c.send(raw_request("POST", f"/cl/{n}", headers={"Content-Length": str(n)}, body=b"x" * n))
            j = echoed(c.response())
            assert j["body_len"] == n
            cl = [v for k, v in j["headers"] if k.lower() == "content-length"]
            assert cl == ([str(n)] if n or True else []), (n, cl)
    for v in ("18446744073709551615", "18446744073709551616", "99999999999999999999999", "2097153"):
        with Raw(px.port) as c:
            c.send(raw_request("POST", "/huge", headers={"Content-Length": v}))
            r = c.response()
            assert r.status in (400, 413), (v, r)
    stop_clean(px)


def test_connection_tokens_of_the_client_strip_what_they_name(fleet):
    px = start_proxy(fleet, echo_ship("a", routes=["http:/.*"]))
    cases = [
        ([("Connection", "close, X-A"), ("X-A", "1"), ("x-b", "2")], {"x-b"}),
        ([("Connection", "keep-alive"), ("Connection", "x-a"), ("X-A", "1"), ("X-B", "2")], {"x-b"}),
        ([("Connection", ",\t, x-A ,,x-b\t"), ("X-a", "1"), ("X-B", "2"), ("X-C", "3")], {"x-c"}),
        ([("Connection", "x"), ("X", "1"), ("Xx", "2"), ("x-", "3")], {"xx", "x-"}),
        ([("Connection", "X-Ab"), ("X-A", "1"), ("X-Abc", "2"), ("x-ab", "3")], {"x-a", "x-abc"}),
        ([("Connection", "keep-alive, close"), ("Keep-Alive", "timeout=5"), ("Y", "1")], {"y"}),
    ]
    for headers, kept in cases:
        with Raw(px.port) as c:
            c.send(raw_request("GET", "/t", headers=headers))
            j = echoed(c.response())
            got = {k.lower() for k, v in j["headers"]} - {"host", "x-forwarded-for", "x-forwarded-proto",
                                                          "x-forwarded-host", "x-request-id", "x-request-start"}
            assert got == kept, (headers, j["headers"])
    stop_clean(px)

