#!/usr/bin/python3
"""bench/tls/bench.py MOTHERSHIP - TLS termination by Mothership, nginx and
HAProxy on loopback, configured alike, in one run.

Each server gets the same certificate (generated here with openssl), TLS 1.2
and 1.3 only, the same cipher preferences, session tickets on (no session
cache: resumption is by ticket), ALPN h2 and http/1.1, and serves the same
two things on one TLS port: a static 4 KiB file (/4k.bin) and a proxied route
(/hello) to one backend nginx (`return 200 "hello"`, plain HTTP; Mothership's
ship, or started alone when Mothership is skipped). Measured,
target after target, in ROUNDS rounds (who goes first rotates):

- new connections/s with a full TLS 1.3 handshake: bursts of `h2load --h1
  -c BURST -n BURST` (each client opens one connection, fetches /4k.bin,
  closes; h2load keeps a session per client, so a client that makes one
  connection never resumes);
- new connections/s with a resumed handshake (session ticket): runs of
  `h2load --h1 -c CONNS_RESUME -n CONNS_RESUME*RESUME_EACH -H 'Connection:
  close'` (every client reconnects after each response and offers the
  session of its previous connection: all but its first are resumed);
- keep-alive requests/s over TLS and HTTP/1.1: `wrk -t1 -c CONNS`;
- HTTP/2: `h2load -c H2_CONNS -m H2_STREAMS -D DURATION` (ALPN h2);
- CPU µs per request or per new connection: utime + stime of the server's
  processes (/proc/PID/stat) across the run, divided by what was served;
- memory per idle TLS connection: IDLE_CONNS connections, each after one
  request, held open; (RSS with them - RSS before) / IDLE_CONNS.

Every target first passes checks (the body of each route over TLS 1.3 and
1.2, the negotiated cipher, ticket resumption on 1.3 and 1.2, ALPN h2); a
target that fails one is reported and its rows are marked FAILED.
Mothership's column is skipped with one line when `run` refuses TLS binds.

Environment: ROUNDS (2), DURATION (3 s), CONNS (50), BURST (100),
CONNS_RESUME (50), RESUME_EACH (50), H2_CONNS (10), H2_STREAMS (32), IDLE_CONNS (1000),
KEY (ec: ECDSA P-256, or rsa: RSA 2048), ONLY (e.g. nginx,haproxy),
QUICK=1 (1 round of 2 s, 300 idle connections), KEEP_TMP=1. See
bench/README.md.
"""
import http.client
import json
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (children, cleanup, cpu_ticks_of, emit, emit_rows, free_port, median,  # noqa: E402
                      pss_kb, read, rss_kb, set_tmpdir, spawn, stop_on_signals)

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "2"))
DURATION = int(os.environ.get("DURATION", "2" if QUICK else "3"))
CONNS = int(os.environ.get("CONNS", "50"))
BURST = int(os.environ.get("BURST", "100"))
CONNS_RESUME = int(os.environ.get("CONNS_RESUME", "50"))
RESUME_EACH = int(os.environ.get("RESUME_EACH", "50"))
H2_CONNS = int(os.environ.get("H2_CONNS", "10"))
H2_STREAMS = int(os.environ.get("H2_STREAMS", "32"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "300" if QUICK else "1000"))
KEY = os.environ.get("KEY", "ec")
ONLY = [x for x in os.environ.get("ONLY", "").split(",") if x]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# The same preferences everywhere: forward-secret AEAD suites only and the
# key exchange groups, as Mothership's TLS context has them (it takes no
# cipher settings).
CIPHERS_12 = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
SUITES_13 = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
GROUPS = "X25519:P-256:P-384"

TARGETS = ("mothership", "nginx", "haproxy")
tmpdir = None


def say(*a):
    print(*a, flush=True)


# ------------------------------------------------------------ set-up ----

def make_cert():
    """A self-signed certificate for localhost and 127.0.0.1, as every
    server's; haproxy.pem is the same pair in one file."""
    key = os.path.join(tmpdir, "server.key")
    crt = os.path.join(tmpdir, "server.crt")
    if KEY == "rsa":
        newkey = ["-newkey", "rsa:2048"]
    else:
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(tmpdir, "haproxy.pem"), "w") as out:
        for p in (crt, key):
            with open(p) as f:
                out.write(f.read())
    return crt, key


def write_configs(ports, crt, key, www):
    nginx_bin = shutil.which("nginx") or "nginx"
    user = "user root;\n" if os.geteuid() == 0 else ""

    def nginx_head(name):
        return f"""{user}pid {tmpdir}/{name}.pid;
error_log {tmpdir}/{name}.error.log warn;
daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
events {{ worker_connections 8000; }}
"""

    def nginx_http(name):
        for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmpdir, f"{name}-{t}"), exist_ok=True)
        return f"""    access_log off;
    client_body_temp_path {tmpdir}/{name}-body;
    proxy_temp_path {tmpdir}/{name}-proxy;
    fastcgi_temp_path {tmpdir}/{name}-fastcgi;
    uwsgi_temp_path {tmpdir}/{name}-uwsgi;
    scgi_temp_path {tmpdir}/{name}-scgi;
    default_type application/octet-stream;
    keepalive_requests 1000000;
"""

    backend = nginx_head("backend").replace("daemon off;", "daemon off;\nmaster_process off;") + f"""http {{
{nginx_http("backend")}    server {{
        listen 127.0.0.1:{ports["backend"]} backlog=4096;
        location / {{ return 200 "hello"; }}
    }}
}}
"""
    nginx = nginx_head("nginx") + f"""http {{
{nginx_http("nginx")}    sendfile on;
    keepalive_timeout 75s;
    http2_max_concurrent_streams 128;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS_12};
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites {SUITES_13};
    ssl_ecdh_curve {GROUPS};
    ssl_session_tickets on;
    ssl_session_cache off;
    upstream be {{
        server 127.0.0.1:{ports["backend"]};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{ports["nginx"]} ssl http2 backlog=4096;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        root {www};
        location = /hello {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    haproxy = f"""global
    nbthread 1
    maxconn 8000
    tune.ssl.cachesize 0
    ssl-default-bind-ciphers {CIPHERS_12}
    ssl-default-bind-ciphersuites {SUITES_13}
    ssl-default-bind-curves {GROUPS}
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 30s
    timeout http-keep-alive 75s

frontend tls
    bind 127.0.0.1:{ports["haproxy"]} ssl crt {tmpdir}/haproxy.pem alpn h2,http/1.1
    http-request return status 200 content-type application/octet-stream file {www}/4k.bin if {{ path /4k.bin }}
    default_backend be

backend be
    server backend 127.0.0.1:{ports["backend"]}
"""
    # Mothership as the TLS keys have it: an `https` bind, [mothership.tls]
    # cert/key, [mothership.http] left at its defaults. Its ship is the
    # backend nginx itself (Mothership refuses a ship whose port another
    # process holds), which nginx and HAProxy then proxy to as well: one
    # backend for all three.
    mothership = f"""[mothership]
workers = 1

# [mothership.http]: the defaults (idle_timeout 60s, upstream_keepalive 128,
# max_connections 10000).

[mothership.bind]
https = "127.0.0.1:{ports["mothership"]}"

[mothership.tls]
cert = "{crt}"
key = "{key}"

[[mothership.static_dirs]]
path = "{www}"
prefix = "/"
bind = "https"

[[fleet.backend]]
name = "backend"
command = "{nginx_bin}"
args = ["-p", "{tmpdir}", "-c", "{tmpdir}/backend.conf"]
bind = "127.0.0.1:{ports["backend"]}"
routes = ["https:/hello"]
"""
    for name, text in (("backend.conf", backend), ("nginx.conf", nginx),
                       ("haproxy.cfg", haproxy), ("mothership.toml", mothership)):
        with open(os.path.join(tmpdir, name), "w") as f:
            f.write(text)


def wait_accepts(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    def __init__(self, name, proc, port):
        self.name = name
        self.proc = proc
        self.port = port
        self.cpu_pids = [proc.pid]     # whose utime+stime is its CPU
        self.mem_pids = [proc.pid]     # whose RSS grows with connections


def start_mothership(ms_bin, port):
    """Mothership, or (None, why) when it does not get ready; a build that
    refuses TLS binds says so in its log before exiting."""
    log = f"{tmpdir}/mothership.out"
    p = spawn([ms_bin, "run", "-c", f"{tmpdir}/mothership.toml"], log)
    deadline = time.time() + 30
    while True:
        text = read(log)
        if "fleet ready" in text and wait_accepts(port, p, 2):
            return Server("mothership", p, port), None
        if p.poll() is not None or time.time() > deadline:
            if p.poll() is None:
                p.terminate()
            lines = [x for x in text.splitlines() if x.strip()]
            refusal = [x for x in lines if "TLS" in x and "not serve" in x]
            if refusal:
                return None, ("`run` refuses TLS binds in this build ("
                              + refusal[0].split("|", 1)[-1].strip() + ")")
            return None, "did not get ready: " + (" / ".join(lines[-4:]) if lines else "no output")
        time.sleep(0.02)


# ------------------------------------------------------------ checks ----

def client_ctx(crt, version=None, alpn=None):
    ctx = ssl.create_default_context(cafile=crt)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def get(port, ctx, path, session=None):
    """One request on a new TLS connection (offering `session` when given):
    (status, body, facts of the connection)."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5),
                        server_hostname="localhost", session=session)
    c = http.client.HTTPConnection("localhost", port, timeout=5)
    c.sock = s
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body, {"version": s.version(), "cipher": s.cipher()[0],
                                "reused": s.session_reused, "session": s.session}
    finally:
        c.close()


def check(srv, crt, www):
    """The facts of a target (None where one is missing) and what is wrong,
    if anything."""
    with open(os.path.join(www, "4k.bin"), "rb") as f:
        static = f.read()
    facts = {}
    try:
        for label, ver in (("1.3", ssl.TLSVersion.TLSv1_3), ("1.2", ssl.TLSVersion.TLSv1_2)):
            ctx = client_ctx(crt, ver)
            st, body, f1 = get(srv.port, ctx, "/4k.bin")
            if st != 200 or body != static:
                return facts, f"TLS {label} /4k.bin: status {st}, {len(body)} bytes"
            st, body, _ = get(srv.port, ctx, "/hello")
            if st != 200 or body != b"hello":
                return facts, f"TLS {label} /hello: status {st}, body {body[:40]!r}"
            _, _, f2 = get(srv.port, ctx, "/4k.bin", session=f1["session"])
            facts[f"cipher {label}"] = f1["cipher"]
            facts[f"resumed {label}"] = f2["reused"]
        s = client_ctx(crt, alpn=["h2", "http/1.1"]).wrap_socket(
            socket.create_connection(("127.0.0.1", srv.port), 5),
            server_hostname="localhost")
        facts["ALPN"] = s.selected_alpn_protocol() or "none"
        s.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        return facts, f"{type(e).__name__}: {e}"
    return facts, None


# ------------------------------------------------------------- loads ----

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"p50\":%.1f,\"p99\":%.1f," ..
    "\"errors\":%d,\"status\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def run_wrk(url):
    r = subprocess.run(["wrk", "-t", "1", "-c", str(CONNS), "-d", f"{DURATION}s",
                        "-s", f"{tmpdir}/report.lua", url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=DURATION + 30)
    text = r.stdout.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            j = json.loads(line[len("BENCHJSON "):])
            return {"n": j["requests"], "secs": j["duration_us"] / 1e6,
                    "p50": j["p50"], "p99": j["p99"],
                    "errors": j["errors"] + j["status"]}
    raise RuntimeError(f"wrk gave no figures for {url}:\n{text}")


H2_FINISHED = re.compile(r"finished in ([0-9.]+)(ms|s),")
H2_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                     r"(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")
H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


H2_PROTO = re.compile(r"Application protocol: (\S+)")


def run_h2load(argv, want_proto=None):
    r = subprocess.run(["h2load", *argv], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=DURATION + 30)
    text = r.stdout.decode("utf-8", "replace")
    m, q, s = H2_FINISHED.search(text), H2_REQS.search(text), H2_STATUS.search(text)
    if not (m and q):
        raise RuntimeError("h2load gave no figures: " + " / ".join(text.splitlines()[-3:]))
    proto = H2_PROTO.search(text)
    if want_proto and (not proto or proto.group(1) != want_proto):
        # h2load falls back to HTTP/1.1 when ALPN chooses it
        raise RuntimeError(f"ALPN chose {proto.group(1) if proto else 'nothing'}, not {want_proto}")
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    ok = int(s.group(1)) if s else 0
    if "No protocol negotiated" in text or ok == 0:
        raise RuntimeError("no request succeeded" +
                           (" (no protocol negotiated by ALPN)" if "No protocol" in text else ""))
    # failed (errored ones included) + timed out + answered but not 2xx
    errors = int(q.group(5)) + int(q.group(7)) + sum(int(s.group(i)) for i in (2, 3, 4))
    return {"n": ok, "secs": secs, "errors": errors}


def load_full(url):
    """Bursts of BURST one-connection clients for DURATION s: each connection
    is a full handshake. The rate is over h2load's own time, without its
    start-up."""
    n = secs = errors = 0
    end = time.time() + DURATION
    while time.time() < end:
        r = run_h2load(["--h1", "-t", "1", "-c", str(BURST), "-n", str(BURST), url])
        n += r["n"]
        secs += r["secs"]
        errors += r["errors"]
    return {"n": n, "secs": secs, "errors": errors}


def load_resumed(url):
    """Runs of CONNS_RESUME clients, RESUME_EACH connections each, for
    DURATION s: every connection after a client's first offers the ticket of
    the one before (h2load's -D mode does not reconnect after
    `Connection: close`, so -n it is)."""
    n = secs = errors = 0
    end = time.time() + DURATION
    while time.time() < end:
        r = run_h2load(["--h1", "-t", "1", "-c", str(CONNS_RESUME),
                        "-n", str(CONNS_RESUME * RESUME_EACH),
                        "-H", "Connection: close", url])
        n += r["n"]
        secs += r["secs"]
        errors += r["errors"]
    return {"n": n, "secs": secs, "errors": errors}


def load_h2(url):
    return run_h2load(["-t", "1", "-c", str(H2_CONNS), "-m", str(H2_STREAMS),
                       "-D", str(DURATION), url], want_proto="h2")


def idle_memory(srv, crt):
    """(KiB RSS, KiB PSS) per idle TLS connection: IDLE_CONNS connections,
    each after one keep-alive request, held while the server is read."""
    ctx = client_ctx(crt)
    req = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def one():
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), 5),
                            server_hostname="localhost")
        s.sendall(req)
        got = b""
        while not got.endswith(b"hello"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed before the response ended")
            got += chunk
        return s
    for _ in range(20):              # warm-up: pools and buffers exist
        one().close()
    time.sleep(0.3)
    rss0 = sum(rss_kb(p) for p in srv.mem_pids)
    pss0 = sum(pss_kb(p) for p in srv.mem_pids)
    held = []
    try:
        for _ in range(IDLE_CONNS):
            held.append(one())
        time.sleep(0.5)
        rss1 = sum(rss_kb(p) for p in srv.mem_pids)
        pss1 = sum(pss_kb(p) for p in srv.mem_pids)
        # every connection is still there (one byte of the next request
        # would be answered; a closed one reads EOF at once)
        alive = 0
        for s in held:
            s.setblocking(False)
            try:
                alive += 0 if s.recv(1) == b"" else 1
            except (ssl.SSLWantReadError, BlockingIOError):
                alive += 1
            except OSError:
                pass
    finally:
        for s in held:
            s.close()
    return {"rss": (rss1 - rss0) / IDLE_CONNS, "pss": (pss1 - pss0) / IDLE_CONNS,
            "rss0": rss0, "alive": alive}


# -------------------------------------------------------------- main ----

def fmt_ms(us):
    return "-" if us != us else (f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs")


def main():
    global tmpdir
    if len(sys.argv) != 2:
        sys.exit("usage: bench.py MOTHERSHIP")
    ms_bin = os.path.abspath(sys.argv[1])
    stop_on_signals()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < IDLE_CONNS + 100:
        sys.exit(f"tls: IDLE_CONNS={IDLE_CONNS} needs more descriptors than "
                 f"the hard limit {hard}")

    tmpdir = tempfile.mkdtemp(prefix="msbench-tls-")
    set_tmpdir(tmpdir)
    os.chmod(tmpdir, 0o755)
    www = os.path.join(tmpdir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    with open(os.path.join(tmpdir, "report.lua"), "w") as f:
        f.write(WRK_LUA)
    crt, key = make_cert()
    ports = {k: free_port() for k in ("backend",) + TARGETS}
    if len(set(ports.values())) != len(ports):
        sys.exit("tls: could not get distinct free ports")
    write_configs(ports, crt, key, www)
    wanted = [t for t in TARGETS if not ONLY or t in ONLY]

    servers = {}
    skipped = {}
    if "mothership" in wanted:
        s, why = start_mothership(ms_bin, ports["mothership"])
        if s:
            servers["mothership"] = s
        else:
            skipped["mothership"] = ("skipped: `run` refuses TLS binds" if "refuses TLS" in why
                                     else "skipped: did not start")
            say(f"tls: mothership skipped: {why}")
    def start_backend():
        """The backend on its own: without Mothership, whose ship it is."""
        p = spawn(["nginx", "-p", tmpdir, "-c", f"{tmpdir}/backend.conf"], f"{tmpdir}/backend.out")
        if not wait_accepts(ports["backend"], p):
            raise RuntimeError("backend nginx did not start: " + read(f"{tmpdir}/backend.out")
                               + read(f"{tmpdir}/backend.error.log"))
    if "mothership" not in servers:
        start_backend()
    if "nginx" in wanted:
        p = spawn(["nginx", "-p", tmpdir, "-c", f"{tmpdir}/nginx.conf"], f"{tmpdir}/nginx.out")
        if not wait_accepts(ports["nginx"], p):
            raise RuntimeError("nginx did not start: " + read(f"{tmpdir}/nginx.out")
                               + read(f"{tmpdir}/nginx.error.log"))
        s = Server("nginx", p, ports["nginx"])
        workers = children(p.pid)
        if len(workers) != 1:
            raise RuntimeError(f"nginx: expected 1 worker, found {workers}")
        s.cpu_pids = [p.pid] + workers
        s.mem_pids = workers
        servers["nginx"] = s
    if "haproxy" in wanted:
        p = spawn(["haproxy", "-db", "-f", f"{tmpdir}/haproxy.cfg"], f"{tmpdir}/haproxy.out")
        if not wait_accepts(ports["haproxy"], p):
            raise RuntimeError("haproxy did not start: " + read(f"{tmpdir}/haproxy.out"))
        servers["haproxy"] = Server("haproxy", p, ports["haproxy"])
    if not servers:
        raise RuntimeError("no server to measure")

    # --- checks: every target serves the same things the same way
    say(f"tls: {NCPU} CPUs, {KEY} certificate, {ROUNDS} round(s) of {DURATION} s; "
        f"full handshakes in bursts of {BURST}, resumed with {CONNS_RESUME} clients, "
        f"wrk -t1 -c{CONNS}, h2load -c{H2_CONNS} -m{H2_STREAMS}, {IDLE_CONNS} idle connections")
    facts = {}
    for name in list(servers):
        f, err = check(servers[name], crt, www)
        facts[name] = f
        if err:
            say(f"tls: {name} FAILED the checks: {err}")
            skipped[name] = "FAILED the checks (see above)"
            del servers[name]
    keys = ["cipher 1.3", "cipher 1.2", "resumed 1.3", "resumed 1.2", "ALPN"]
    say()
    say("### what each server negotiated (python ssl client)")
    say()
    say("| target | " + " | ".join(keys) + " |")
    say("|---|" + "---|" * len(keys))
    for name in facts:
        say(f"| {name} | " + " | ".join(str(facts[name].get(k, "-")) for k in keys) + " |")
    for k in keys:
        seen = {str(f.get(k)) for f in facts.values() if f.get(k) is not None}
        if len(seen) > 1:
            say(f"tls: the servers differ in {k}: " + ", ".join(
                f"{n} {facts[n].get(k)}" for n in facts) + " (the comparison is less alike)")

    base = {n: f"https://localhost:{s.port}" for n, s in servers.items()}
    scenarios = [
        ("new connections, full TLS 1.3 handshake (+ GET /4k.bin)", "conn", load_full, "/4k.bin"),
        ("new connections, resumed by ticket (+ GET /4k.bin)", "conn", load_resumed, "/4k.bin"),
        ("keep-alive HTTP/1.1 over TLS, static /4k.bin", "req", run_wrk, "/4k.bin"),
        ("keep-alive HTTP/1.1 over TLS, proxied /hello", "req", run_wrk, "/hello"),
        ("HTTP/2, static /4k.bin", "req", load_h2, "/4k.bin"),
        ("HTTP/2, proxied /hello", "req", load_h2, "/hello"),
    ]
    names = [n for n in TARGETS if n in servers]
    # idle memory first, while each heap holds no more than a warm-up's
    # connections (freed memory an allocator keeps would hide the growth)
    mem = {}
    for n in names:
        try:
            mem[n] = idle_memory(servers[n], crt)
        except (OSError, ssl.SSLError, RuntimeError) as e:
            mem[n] = {"error": f"{type(e).__name__}: {e}"}

    failed = {}
    died = {}
    results = {}
    # warm-up: one short pass of every load (pools, caches, page faults)
    for path in ("/4k.bin", "/hello"):
        for n in names:
            try:
                run_h2load(["--h1", "-t", "1", "-c", "10", "-n", "200", base[n] + path])
            except RuntimeError:
                pass
    for rnd in range(ROUNDS):
        for si, (title, _unit, fn, path) in enumerate(scenarios):
            k = rnd % len(names)
            for n in names[k:] + names[:k]:
                if (si, n) in failed or n in died:
                    continue
                if fn is load_h2 and facts[n].get("ALPN") != "h2":
                    # h2load would fall back to pipelined HTTP/1.1
                    failed[(si, n)] = f"FAILED: ALPN chose {facts[n].get('ALPN')}, not h2"
                    continue
                s = servers[n]
                c0 = sum(cpu_ticks_of(f"/proc/{p}/stat") for p in s.cpu_pids)
                try:
                    r = fn(base[n] + path)
                except RuntimeError as e:
                    failed[(si, n)] = "FAILED: " + str(e).replace("|", "/")
                    r = None
                if s.proc.poll() is not None:
                    # a server that dies is reported and left out of what
                    # follows; the others are still measured
                    log = [x for x in read(f"{tmpdir}/{n}.out").splitlines() if x.strip()]
                    died[n] = f"FAILED: exited (status {s.proc.returncode}) during: {title}"
                    say(f"tls: {n} exited (status {s.proc.returncode}) during \"{title}\"; "
                        f"the end of its log: " + " / ".join(log[-2:]))
                    results.pop((si, n), None)
                    if n == "mothership":
                        # its ship, the backend, went with it
                        socket_free = time.time() + 5
                        while time.time() < socket_free:
                            try:
                                socket.create_connection(("127.0.0.1", ports["backend"]), 0.2).close()
                                time.sleep(0.05)
                            except OSError:
                                break
                        start_backend()
                    continue
                if r is None:
                    continue
                c1 = sum(cpu_ticks_of(f"/proc/{p}/stat") for p in s.cpu_pids)
                r["cpu"] = (c1 - c0) * 1e6 / CLK_TCK / max(1, r["n"])
                r["rate"] = r["n"] / r["secs"] if r["secs"] > 0 else 0.0
                results.setdefault((si, n), []).append(r)
        say(f"  round {rnd + 1}/{ROUNDS} done")

    # --- tables: medians, and Mothership's ratios against each peer
    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "-"
    peers = [p for p in ("nginx", "haproxy") if p in names]
    for si, (title, unit, fn, _path) in enumerate(scenarios):
        say()
        say(f"### {title}")
        say()
        head = ["target", f"{unit}s/s (min-max)", f"CPU µs/{unit}"]
        if fn is run_wrk:
            head += ["p50", "p99"]
        if "mothership" in names:
            for p in peers:
                head += [f"{unit}s/s vs {p}", f"CPU vs {p}"]
        head.append("errors")
        say("| " + " | ".join(head) + " |")
        say("|" + "---|" * len(head))
        med = {n: {"rate": median([r["rate"] for r in rs]), "cpu": median([r["cpu"] for r in rs])}
               for n in TARGETS for rs in [results.get((si, n))] if rs}
        for n in TARGETS:
            rs = results.get((si, n))
            if not rs:
                why = failed.get((si, n)) or died.get(n) or skipped.get(n) or "not measured"
                if n in wanted:
                    say(f"| {n} | " + " | ".join(["-"] * (len(head) - 2)) + f" | {why} |")
                continue
            row = [n, f"{med[n]['rate']:.0f} ({min(r['rate'] for r in rs):.0f}-"
                   f"{max(r['rate'] for r in rs):.0f})", f"{med[n]['cpu']:.1f}"]
            if fn is run_wrk:
                row += [fmt_ms(median([r["p50"] for r in rs])),
                        fmt_ms(median([r["p99"] for r in rs]))]
            if "mothership" in names:
                for p in peers:
                    if n == "mothership" and p in med:
                        row += [ratio(med[n]["rate"], med[p]["rate"]),
                                ratio(med[n]["cpu"], med[p]["cpu"])]
                    else:
                        row += ["-", "-"]
            err = sum(r["errors"] for r in rs)
            row.append(str(err) if err == 0 else f"{err} of {sum(r['n'] for r in rs) + err}")
            say("| " + " | ".join(row) + " |")
        if "mothership" not in med and len(med) == 2:
            say(f"\n(nginx / HAProxy: {ratio(med['nginx']['rate'], med['haproxy']['rate'])} "
                f"the rate, {ratio(med['nginx']['cpu'], med['haproxy']['cpu'])} the CPU)")

    say()
    say(f"### memory per idle TLS connection ({IDLE_CONNS} connections, each after one request)")
    say()
    head = ["target", "KiB RSS / conn", "KiB PSS / conn", "RSS before", "still open"]
    if "mothership" in names:
        head += [f"vs {p}" for p in peers]
    say("| " + " | ".join(head) + " |")
    say("|" + "---|" * len(head))
    for n in TARGETS:
        if n not in mem:
            if n in wanted:
                say(f"| {n} | " + " | ".join(["-"] * (len(head) - 2)) + f" | {skipped.get(n, '-')} |")
            continue
        m = mem[n]
        if "error" in m:
            say(f"| {n} | " + " | ".join(["-"] * (len(head) - 2)) + f" | {m['error']} |")
            continue
        row = [n, f"{m['rss']:.2f}", f"{m['pss']:.2f}", f"{m['rss0'] / 1024:.1f} MB",
               f"{m['alive']}/{IDLE_CONNS}"]
        if "mothership" in names:
            for p in peers:
                ok = n == "mothership" and p in mem and "error" not in mem[p]
                row.append(ratio(m["rss"], mem[p]["rss"]) if ok else "-")
        say("| " + " | ".join(row) + " |")
    say()
    say("(nginx: its worker; HAProxy: its process; Mothership: its process, all threads.)")
    # the figures as BENCH-JSON lines (bench/README.md)
    for (si, n), rs in results.items():
        title, unit = scenarios[si][0], scenarios[si][1]
        emit_rows("tls", title, n, rs, [("rate", "rate", f"{unit}s/s"),
                                        (f"cpu_per_{unit}", "cpu", "µs"),
                                        ("p50", "p50", "µs"), ("p99", "p99", "µs")])
    for n, m in mem.items():
        if "error" not in m:
            emit("tls", "idle connection", n, "rss_per_conn", m["rss"], "KiB")
            emit("tls", "idle connection", n, "pss_per_conn", m["pss"], "KiB")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:    # noqa: BLE001 - report and clean up
        try:
            print(f"tls: {e}", file=sys.stderr)
        except OSError:
            pass
        sys.exit(1)
    finally:
        cleanup()
