#!/usr/bin/python3
"""bench/http/bench.py MOTHERSHIP - Mothership's HTTP data plane against nginx
and HAProxy on loopback, in one run, alternating targets round by round.

A backend nginx (`return 200 "hello"`, listening on TCP and on a Unix socket)
is proxied by Mothership, by nginx (1 worker, upstream keepalive) and by
HAProxy (1 thread), each over a TCP and over a Unix-socket upstream; the
backend is also measured directly. Static files (4 KiB and 1 MiB) are served
by Mothership and by nginx. wrk (1 thread, 50 connections) drives each
target; the table gives the median over ROUNDS rounds of req/s, p50/p99
latency and the server's CPU time per request (utime + stime of its
processes, from /proc/PID/stat), with ratios against the peers, and the idle
RSS of each server.

Environment: ROUNDS (default 3), DURATION (seconds per wrk run, default 5),
CONNS (default 50), WARMUP (seconds per target before round 1, default 1),
PIN (1 = wrk on CPU 0, the servers on the other CPUs; default 0),
PERF (1 = afterwards, one extra keep-alive run of Mothership under
`perf record -g`, and print the top of the report), QUICK=1 (ROUNDS=1,
DURATION=2: a smoke run).
Modes (instead of the default scenarios): NEIGHBOUR=free|pinned (or 1 =
free): the keep-alive TCP scenario, each target measured quiet and with a
CPU-bound busy loop on the machine (pinned to the last CPU, or free),
alternating, p99 and p99.9 compared; CORES=1: Mothership workers = 1 and
"auto", nginx worker_processes 1 and auto, HAProxy nbthread 1 and 2, wrk
-t2 -c CORES_CONNS (default 50: below every upstream pool's 64, so no
proxy opens upstream connections in steady state), scaling 1 -> 2
reported. See
bench/README.md.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (children, cleanup, cpu_ticks_of, free_port, live, median, pss_kb,  # noqa: E402
                      rss_kb, set_tmpdir, stop_on_signals)
from benchlib import emit_http  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
DURATION = int(os.environ.get("DURATION", "2" if QUICK else "5"))
CONNS = int(os.environ.get("CONNS", "50"))
WARMUP = float(os.environ.get("WARMUP", "1"))
PIN = os.environ.get("PIN", "0") == "1"
PERF = os.environ.get("PERF", "0") == "1"
NEIGHBOUR = {"1": "free", "free": "free", "pinned": "pinned"}.get(
    os.environ.get("NEIGHBOUR", ""), "")
CORES = os.environ.get("CORES", "0") == "1"
CORES_CONNS = int(os.environ.get("CORES_CONNS", "50"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

tmpdir = None


# ------------------------------------------------------------ processes ----

def server_cpus():
    """taskset prefix for the servers (PIN=1: every CPU but 0)."""
    if PIN and NCPU >= 2:
        return ["taskset", "-c", f"1-{NCPU - 1}"]
    return []


def wrk_cpus():
    if PIN and NCPU >= 2:
        return ["taskset", "-c", "0"]
    return []


def spawn(argv, log):
    out = open(log, "wb")
    p = subprocess.Popen(server_cpus() + argv, stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT, cwd=tmpdir)
    out.close()
    live.append(p)
    return p


def wait_accepts(addr, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if isinstance(addr, str):
                s = socket.socket(socket.AF_UNIX)
            else:
                s = socket.socket()
            s.settimeout(0.5)
            s.connect(addr)
            s.close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_ticks(pids, kernel_only=False):
    """utime + stime (or stime alone) of these processes (all their
    threads), in ticks."""
    return sum(cpu_ticks_of(f"/proc/{pid}/stat", kernel_only) for pid in pids)


def tcp_active_opens():
    """System-wide count of TCP connect()s (Tcp: ActiveOpens)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def nginx_common(name):
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}pid {tmpdir}/{name}.pid;
error_log {tmpdir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
"""


def nginx_http_common(name):
    return f"""    access_log off;
    client_body_temp_path {tmpdir}/{name}-body;
    proxy_temp_path {tmpdir}/{name}-proxy;
    fastcgi_temp_path {tmpdir}/{name}-fastcgi;
    uwsgi_temp_path {tmpdir}/{name}-uwsgi;
    scgi_temp_path {tmpdir}/{name}-scgi;
    default_type application/octet-stream;
"""


# The global and defaults sections of every HAProxy config here ({n} threads).
HAPROXY_HEAD = """global
    nbthread {n}
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

"""


def write_configs(ports, sock, www, mime_types):
    backend = nginx_common("backend") + f"""daemon off;
master_process off;
worker_processes 1;
http {{
{nginx_http_common("backend")}    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{ports["backend"]} backlog=4096;
        listen unix:{sock} backlog=4096;
        location / {{ return 200 "hello"; }}
    }}
}}
"""
    proxy = nginx_common("nginx") + f"""daemon off;
worker_processes 1;
http {{
{nginx_http_common("nginx")}    include {mime_types};
    keepalive_requests 1000000;
    sendfile on;
    tcp_nopush on;
    upstream be_tcp {{
        server 127.0.0.1:{ports["backend"]};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    upstream be_unix {{
        server unix:{sock};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{ports["nginx_tcp"]} backlog=4096;
        location / {{
            proxy_pass http://be_tcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{ports["nginx_unix"]} backlog=4096;
        location / {{
            proxy_pass http://be_unix;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{ports["nginx_static"]} backlog=4096;
        root {www};
    }}
}}
"""
    haproxy = HAPROXY_HEAD.format(n=1) + f"""frontend ka_tcp
    bind 127.0.0.1:{ports["haproxy_tcp"]}
    default_backend be_tcp

frontend ka_unix
    bind 127.0.0.1:{ports["haproxy_unix"]}
    default_backend be_unix

backend be_tcp
    server backend 127.0.0.1:{ports["backend"]}

backend be_unix
    server backend unix@{sock}
"""
    # One Mothership with three binds: one per scenario, so that each bind
    # only ever sees the traffic of its scenario. The TCP ship is the
    # backend nginx itself (Mothership refuses a ship whose TCP port another
    # process holds); the Unix-socket ship is a placeholder (`sleep`), ready
    # when the backend's socket accepts.
    mothership = f"""[mothership]
workers = 1
socket_dir = "{tmpdir}/ms-sock"    # its own control socket: another run may be on

[mothership.http]
upstream_keepalive = 64    # as nginx's `keepalive 64` (the default is 128; 32,
                           # the first default, was below wrk's 50 connections)

[mothership.bind]
tcpup = "127.0.0.1:{ports["ms_tcp"]}"
unixup = "127.0.0.1:{ports["ms_unix"]}"
files = "127.0.0.1:{ports["ms_static"]}"

[[mothership.static_dirs]]
path = "{www}"
prefix = "/"
bind = "files"

[[fleet.backend]]
name = "backend"
command = "nginx"
args = ["-p", "{tmpdir}", "-c", "{tmpdir}/backend.conf"]
bind = "127.0.0.1:{ports["backend"]}"
routes = ["tcpup:/.*"]

[[fleet.backend]]
name = "backend-unix"
command = "sleep"
args = ["100000"]
bind = "unix://{sock}"
routes = ["unixup:/.*"]
"""
    files = {"backend.conf": backend, "nginx.conf": proxy,
             "haproxy.cfg": haproxy, "mothership.toml": mothership}
    for name, text in files.items():
        with open(os.path.join(tmpdir, name), "w") as f:
            f.write(text)
    for d in ("backend", "nginx"):
        for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmpdir, f"{d}-{t}"), exist_ok=True)


# ------------------------------------------------------------------ wrk ----

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_wrk(url, duration, close=False, threads=1, conns=None):
    argv = wrk_cpus() + ["wrk", "-t", str(threads), "-c", str(conns or CONNS),
                         "-d", f"{duration}s", "-s", f"{tmpdir}/report.lua"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=duration + 30)
    text = r.stdout.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk gave no figures for {url}:\n{text}")


# -------------------------------------------------------------- targets ----

class Server:
    def __init__(self, name, proc, cpu_pids, rss_pids):
        self.name = name
        self.proc = proc
        self.cpu_pids = cpu_pids     # whose utime+stime is "the server's CPU"
        self.rss_pids = rss_pids     # {label: pid} for the RSS table


def check(url, want_body=None, want_file=None):
    """Two requests through the target on one keep-alive connection (as wrk
    sends them): status 200 and the right body both times. Returns None when
    all is well, else what went wrong."""
    if want_file is not None:
        with open(want_file, "rb") as f:
            want_body = f.read()
    rest = url[len("http://"):]
    hostport, path = rest.split("/", 1)
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for i in (1, 2):
            try:
                conn.request("GET", "/" + path)
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                return (f"request {i} on one keep-alive connection: "
                        f"{type(e).__name__} {e}".rstrip())
            if r.status != 200:
                return f"request {i}: status {r.status}"
            if body != want_body:
                return (f"request {i}: body {body[:40]!r} "
                        f"({len(body)} bytes), not the expected one")
    finally:
        conn.close()
    return None


def fmt_us(us):
    if us != us:
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def main():
    global tmpdir
    if len(sys.argv) != 2:
        sys.exit("usage: bench.py MOTHERSHIP")
    ms_bin = os.path.abspath(sys.argv[1])
    stop_on_signals()

    tmpdir = tempfile.mkdtemp(prefix="msbench-http-")
    set_tmpdir(tmpdir)
    os.chmod(tmpdir, 0o755)
    sock = os.path.join(tmpdir, "backend.sock")
    www = os.path.join(tmpdir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    with open(os.path.join(tmpdir, "report.lua"), "w") as f:
        f.write(WRK_LUA)
    mime = "/etc/nginx/mime.types"
    if not os.path.exists(mime):
        mime = os.path.join(tmpdir, "mime.types")
        with open(mime, "w") as f:
            f.write("types { application/octet-stream bin; }\n")

    ports = {k: free_port() for k in (
        "backend", "nginx_tcp", "nginx_unix", "nginx_static",
        "haproxy_tcp", "haproxy_unix", "ms_tcp", "ms_unix", "ms_static")}
    if len(set(ports.values())) != len(ports):
        sys.exit("http: could not get distinct free ports")
    write_configs(ports, sock, www, mime)

    # --- start: the peers, then Mothership, which starts the backend nginx
    servers = {}
    p = spawn(["nginx", "-p", tmpdir, "-c", f"{tmpdir}/nginx.conf"],
              f"{tmpdir}/nginx.out")
    for k in ("nginx_tcp", "nginx_unix", "nginx_static"):
        if not wait_accepts(("127.0.0.1", ports[k]), proc=p):
            raise RuntimeError("nginx did not start: "
                               + open(f"{tmpdir}/nginx.out").read())
    servers["nginx"] = Server("nginx", p, None, None)

    p = spawn(["haproxy", "-db", "-f", f"{tmpdir}/haproxy.cfg"],
              f"{tmpdir}/haproxy.out")
    for k in ("haproxy_tcp", "haproxy_unix"):
        if not wait_accepts(("127.0.0.1", ports[k]), proc=p):
            raise RuntimeError("haproxy did not start: "
                               + open(f"{tmpdir}/haproxy.out").read())
    servers["haproxy"] = Server("haproxy", p, [p.pid], {"haproxy": p.pid})

    t0 = time.time()
    p = spawn([ms_bin, "run", "-c", f"{tmpdir}/mothership.toml"],
              f"{tmpdir}/mothership.out")
    deadline = time.time() + 30
    while True:
        with open(f"{tmpdir}/mothership.out", "rb") as f:
            log = f.read().decode("utf-8", "replace")
        if "fleet ready" in log:
            break
        if p.poll() is not None or time.time() > deadline:
            raise RuntimeError("mothership did not get ready:\n" + log)
        time.sleep(0.02)
    ms_ready = time.time() - t0
    servers["mothership"] = Server("mothership", p, [p.pid],
                                   {"mothership": p.pid})
    # the backend: the nginx below one of Mothership's launch shims
    backend = [g for shim in children(p.pid) for g in children(shim)
               if open(f"/proc/{g}/comm").read().strip() == "nginx"]
    if len(backend) != 1 or not wait_accepts(sock):
        raise RuntimeError(f"backend nginx did not start (found {backend}): "
                           + open(f"{tmpdir}/backend.error.log").read())
    servers["backend"] = Server("backend", None, backend, {"backend": backend[0]})

    # nginx: the master and its worker (the worker does all the work; the
    # master is idle and counted too, it costs nothing measurable).
    ng = servers["nginx"]
    workers = children(ng.proc.pid)
    if len(workers) != 1:
        raise RuntimeError(f"nginx: expected 1 worker, found {workers}")
    ng.cpu_pids = [ng.proc.pid] + workers
    ng.rss_pids = {"nginx master": ng.proc.pid, "nginx worker": workers[0]}

    # --- what is measured: scenario -> [(target, server, url, close)]
    def u(k, path="/"):
        return f"http://127.0.0.1:{ports[k]}{path}"
    scenarios = [
        ("keep-alive, TCP upstream", False, [
            ("backend direct", "backend", u("backend")),
            ("mothership", "mothership", u("ms_tcp")),
            ("nginx", "nginx", u("nginx_tcp")),
            ("haproxy", "haproxy", u("haproxy_tcp"))]),
        ("keep-alive, Unix-socket upstream", False, [
            ("mothership", "mothership", u("ms_unix")),
            ("nginx", "nginx", u("nginx_unix")),
            ("haproxy", "haproxy", u("haproxy_unix"))]),
        ("Connection: close (client side), TCP upstream", True, [
            ("backend direct", "backend", u("backend")),
            ("mothership", "mothership", u("ms_tcp")),
            ("nginx", "nginx", u("nginx_tcp")),
            ("haproxy", "haproxy", u("haproxy_tcp"))]),
        ("static 4 KiB file", False, [
            ("mothership", "mothership", u("ms_static", "/4k.bin")),
            ("nginx", "nginx", u("nginx_static", "/4k.bin"))]),
        ("static 4 KiB file, Connection: close", True, [
            ("mothership", "mothership", u("ms_static", "/4k.bin")),
            ("nginx", "nginx", u("nginx_static", "/4k.bin"))]),
        ("static 1 MiB file", False, [
            ("mothership", "mothership", u("ms_static", "/1m.bin")),
            ("nginx", "nginx", u("nginx_static", "/1m.bin"))]),
    ]

    # --- every target really serves what it should, before any load
    # ("hello" exists only in the backend, so a proxy that answers it has
    # proxied; the backend's CPU per request, in the tables, moves too). A
    # target that fails is reported as such and not measured.
    broken = {}
    for si, (_title, _close, targets) in enumerate(scenarios):
        for target, _srv, url in targets:
            if url.endswith(".bin"):
                err = check(url, want_file=os.path.join(
                    www, url.rsplit("/", 1)[1]))
            else:
                err = check(url, want_body=b"hello")
            if err:
                broken[(si, target)] = err
                print(f"http: {target} at {url} FAILED the check: {err}",
                      flush=True)

    if NEIGHBOUR or CORES:
        run_mode(servers, ports, broken, ms_bin)
        return

    time.sleep(0.5)
    idle = {}
    for s in servers.values():
        for label, pid in s.rss_pids.items():
            idle[label] = (rss_kb(pid), pss_kb(pid))
    shims = children(servers["mothership"].proc.pid)
    shim_rss = [(rss_kb(x), pss_kb(x)) for x in shims]

    print(f"http: {NCPU} CPUs, wrk -t1 -c{CONNS}, {ROUNDS} round(s) of "
          f"{DURATION} s per target, pinning {'wrk on CPU 0, servers on the rest' if PIN and NCPU >= 2 else 'none'}; "
          f"mothership ready in {ms_ready * 1000:.0f} ms", flush=True)

    if WARMUP > 0:
        for si, (_title, close, targets) in enumerate(scenarios):
            for t, _s, url in targets:
                if (si, t) not in broken:
                    run_wrk(url, max(1, int(WARMUP)), close)

    results = {}   # (scenario index, target) -> list of dicts
    for rnd in range(ROUNDS):
        for si, (title, close, targets) in enumerate(scenarios):
            k = rnd % len(targets)
            order = targets[k:] + targets[:k]    # who goes first rotates
            for target, srv, url in order:
                if (si, target) in broken:
                    continue
                s = servers[srv]
                b = servers["backend"]
                o0 = tcp_active_opens()
                c0, b0 = cpu_ticks(s.cpu_pids), cpu_ticks(b.cpu_pids)
                k0 = cpu_ticks(s.cpu_pids, kernel_only=True)
                r = run_wrk(url, DURATION, close)
                c1, b1 = cpu_ticks(s.cpu_pids), cpu_ticks(b.cpu_pids)
                k1 = cpu_ticks(s.cpu_pids, kernel_only=True)
                r["connects"] = tcp_active_opens() - o0
                n = max(1, r["requests"])
                r["cpu_us"] = (c1 - c0) * 1e6 / CLK_TCK / n
                r["kernel_us"] = (k1 - k0) * 1e6 / CLK_TCK / n
                r["backend_cpu_us"] = (b1 - b0) * 1e6 / CLK_TCK / n
                r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                r["errors"] = (r["connect"] + r["read"] + r["write"]
                               + r["timeout"] + r["status"])
                results.setdefault((si, target), []).append(r)
                for x in servers.values():
                    if x.proc is not None and x.proc.poll() is not None:
                        raise RuntimeError(f"{x.name} exited during the run "
                                           f"(status {x.proc.returncode})")
        print(f"  round {rnd + 1}/{ROUNDS} done", flush=True)

    after = {}
    time.sleep(0.5)
    for s in servers.values():
        for label, pid in s.rss_pids.items():
            after[label] = (rss_kb(pid), pss_kb(pid))

    # --- tables
    for si, (title, close, targets) in enumerate(scenarios):
        med = {}
        for target, _srv, _url in targets:
            rs = results.get((si, target))
            if not rs:
                continue
            med[target] = {
                "rps": median([r["rps"] for r in rs]),
                "rps_min": min(r["rps"] for r in rs),
                "rps_max": max(r["rps"] for r in rs),
                "conn_per_kreq": median([r["connects"] * 1000 / max(1, r["requests"]) for r in rs]),
                "p50": median([r["p50"] for r in rs]),
                "p99": median([r["p99"] for r in rs]),
                "cpu": median([r["cpu_us"] for r in rs]),
                "kcpu": median([r["kernel_us"] for r in rs]),
                "bcpu": median([r["backend_cpu_us"] for r in rs]),
                "err": sum(r["errors"] for r in rs),
                "non2xx": sum(r["status"] for r in rs),
                "sock": sum(r["connect"] + r["read"] + r["write"]
                            + r["timeout"] for r in rs),
                "n": sum(r["requests"] for r in rs),
            }
        peers = [p for p in ("nginx", "haproxy") if p in med]
        proxied = not targets[0][2].endswith(".bin")
        print()
        print(f"### {title}" + (" (wrk -H 'Connection: close')" if close else ""))
        print()
        head = ["target", "req/s (min-max)", "p50", "p99", "CPU µs/req", "of which kernel"]
        if proxied:
            head += ["backend CPU µs/req", "TCP connects /1k req"]
        for p in peers:
            head += [f"req/s vs {p}", f"CPU vs {p}"]
        head.append("errors")
        rows = [head]
        for target, _srv, _url in targets:
            if target not in med:
                why = broken.get((si, target), "not measured")
                row = [target] + ["-"] * (len(head) - 2) + [f"FAILED: {why}"]
                rows.append(row)
                continue
            m = med[target]
            row = [target, f"{m['rps']:.0f} ({m['rps_min'] / 1000:.1f}k-"
                   f"{m['rps_max'] / 1000:.1f}k)", fmt_us(m["p50"]),
                   fmt_us(m["p99"]), f"{m['cpu']:.1f}", f"{m['kcpu']:.1f}"]
            if proxied:
                row += [f"{m['bcpu']:.1f}", f"{m['conn_per_kreq']:.1f}"]
            for p in peers:
                if p == target:
                    row += ["-", "-"]
                else:
                    row += [f"{m['rps'] / med[p]['rps']:.2f}x",
                            f"{m['cpu'] / med[p]['cpu']:.2f}x"
                            if med[p]["cpu"] > 0 else "-"]
            row.append("0" if m["err"] == 0 else
                       f"{m['non2xx']} non-2xx, {m['sock']} socket "
                       f"(of {m['n']})")
            rows.append(row)
        print("| " + " | ".join(rows[0]) + " |")
        print("|" + "---|" * len(rows[0]))
        for row in rows[1:]:
            print("| " + " | ".join(row) + " |")

    print()
    print("### idle memory (RSS, PSS in parentheses)")
    print()
    print("| process | at start | after the runs |")
    print("|---|---|---|")
    for label in idle:
        a, b = idle[label], after[label]
        print(f"| {label} | {a[0] / 1024:.1f} MB ({a[1] / 1024:.1f}) "
              f"| {b[0] / 1024:.1f} MB ({b[1] / 1024:.1f}) |")
    ng = [k for k in idle if k.startswith("nginx")]
    print(f"| nginx master + worker | "
          f"{sum(idle[k][0] for k in ng) / 1024:.1f} MB "
          f"({sum(idle[k][1] for k in ng) / 1024:.1f}) | "
          f"{sum(after[k][0] for k in ng) / 1024:.1f} MB "
          f"({sum(after[k][1] for k in ng) / 1024:.1f}) |")
    if shim_rss:
        print(f"| mothership's {len(shim_rss)} launch shims (of the "
              f"backend and of the placeholder ship) | "
              f"{sum(x[0] for x in shim_rss) / 1024:.1f} MB "
              f"({sum(x[1] for x in shim_rss) / 1024:.1f}) | |")

    emit_http(results, [sc[0] for sc in scenarios], idle, after)   # BENCH-JSON lines
    if PERF:
        perf_mothership(servers["mothership"].proc.pid, u("ms_tcp"))


# ------------------------------------------------- NEIGHBOUR and CORES ----

def measure(server, backend, url, close=False, threads=1, conns=None):
    """One wrk run against url: its figures plus the server's and the
    backend's CPU µs per request."""
    c0, b0 = cpu_ticks(server.cpu_pids), cpu_ticks(backend.cpu_pids)
    k0 = cpu_ticks(server.cpu_pids, kernel_only=True)
    o0 = tcp_active_opens()
    r = run_wrk(url, DURATION, close, threads, conns)
    r["connects"] = tcp_active_opens() - o0
    c1, b1 = cpu_ticks(server.cpu_pids), cpu_ticks(backend.cpu_pids)
    k1 = cpu_ticks(server.cpu_pids, kernel_only=True)
    n = max(1, r["requests"])
    r["cpu_us"] = (c1 - c0) * 1e6 / CLK_TCK / n
    r["kernel_us"] = (k1 - k0) * 1e6 / CLK_TCK / n
    r["backend_cpu_us"] = (b1 - b0) * 1e6 / CLK_TCK / n
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = (r["connect"] + r["read"] + r["write"] + r["timeout"]
                   + r["status"])
    if server.proc is not None and server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited during the run "
                           f"(status {server.proc.returncode})")
    return r


def start_neighbour():
    """A CPU-bound busy loop (a shell spinning, nothing else): pinned to
    the last CPU (NEIGHBOUR=pinned) or wherever the scheduler puts it."""
    pin = (["taskset", "-c", str(NCPU - 1)]
           if NEIGHBOUR == "pinned" and NCPU >= 2 else [])
    p = subprocess.Popen(pin + ["sh", "-c", "while :; do :; done"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    live.append(p)
    return p


def stop_neighbour(p):
    p.kill()
    p.wait(5)
    live.remove(p)


def summarise(rs):
    return {
        "rps": median([r["rps"] for r in rs]),
        "rps_min": min(r["rps"] for r in rs),
        "rps_max": max(r["rps"] for r in rs),
        "p50": median([r["p50"] for r in rs]),
        "p99": median([r["p99"] for r in rs]),
        "p99_max": max(r["p99"] for r in rs),
        "p999": median([r.get("p999", float("nan")) for r in rs]),
        "max": median([r["max"] for r in rs]),
        "cpu": median([r["cpu_us"] for r in rs]),
        "kcpu": median([r["kernel_us"] for r in rs]),
        "err": sum(r["errors"] for r in rs),
        "n": sum(r["requests"] for r in rs),
        "conn_per_kreq": median([r["connects"] * 1000 / max(1, r["requests"]) for r in rs]),
    }


def print_table(title, heads, rows):
    print()
    print(f"### {title}")
    print()
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def run_neighbour(servers, ports, broken):
    """Each proxy over keep-alive TCP, quiet and with the busy loop,
    alternating (who goes first and whether the neighbour runs first
    rotate round by round)."""
    targets = [("mothership", f"http://127.0.0.1:{ports['ms_tcp']}/"),
               ("nginx", f"http://127.0.0.1:{ports['nginx_tcp']}/"),
               ("haproxy", f"http://127.0.0.1:{ports['haproxy_tcp']}/")]
    targets = [t for t in targets if (0, t[0]) not in broken]
    print(f"http: NEIGHBOUR={NEIGHBOUR}: {NCPU} CPUs, wrk -t1 -c{CONNS}, "
          f"{ROUNDS} round(s) of {DURATION} s per target and condition",
          flush=True)
    for _t, url in targets:
        run_wrk(url, max(1, int(WARMUP)))
    results = {}
    for rnd in range(ROUNDS):
        k = rnd % len(targets)
        for name, url in targets[k:] + targets[:k]:
            conds = ["quiet", "neighbour"]
            if rnd % 2:
                conds.reverse()
            for cond in conds:
                nb = start_neighbour() if cond == "neighbour" else None
                try:
                    r = measure(servers[name], servers["backend"], url)
                finally:
                    if nb is not None:
                        stop_neighbour(nb)
                results.setdefault((name, cond), []).append(r)
        print(f"  round {rnd + 1}/{ROUNDS} done", flush=True)
    med = {k: summarise(v) for k, v in results.items()}
    heads = ["target", "condition", "req/s (min-max)", "p50", "p99 (worst round)",
             "p99.9", "max", "CPU µs/req", "TCP connects /1k req", "p99 vs nginx",
             "errors"]
    rows = []
    for name, _url in targets:
        for cond in ("quiet", "neighbour"):
            m = med[(name, cond)]
            ng = med.get(("nginx", cond))
            rows.append([name, cond, f"{m['rps']:.0f} ({m['rps_min'] / 1000:.1f}k-"
                         f"{m['rps_max'] / 1000:.1f}k)", fmt_us(m["p50"]),
                         f"{fmt_us(m['p99'])} ({fmt_us(m['p99_max'])})",
                         fmt_us(m["p999"]), fmt_us(m["max"]), f"{m['cpu']:.1f}",
                         f"{m['conn_per_kreq']:.1f}",
                         f"{m['p99'] / ng['p99']:.2f}x" if ng and name != "nginx" else "-",
                         str(m["err"])])
    print_table(f"keep-alive, TCP upstream, quiet and with a busy-loop "
                f"neighbour ({NEIGHBOUR})", heads, rows)


CORES_HAPROXY = HAPROXY_HEAD + """frontend ka_tcp
    bind 127.0.0.1:{port}
    default_backend be_tcp

backend be_tcp
    server backend 127.0.0.1:{backend}
"""


def start_cores_servers(ms_bin, ports, servers):
    """nginx worker_processes auto, HAProxy nbthread 2 and two Motherships
    (workers = 1 and "auto") proxying the backend as an HTTP upstream."""
    for k in ("nginx_auto", "haproxy_2", "ms_w1", "ms_auto"):
        ports[k] = free_port()
    conf = nginx_common("nginx-auto") + f"""daemon off;
worker_processes auto;
http {{
{nginx_http_common("nginx-auto")}    keepalive_requests 1000000;
    upstream be_tcp {{
        server 127.0.0.1:{ports["backend"]};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{ports["nginx_auto"]} backlog=4096;
        location / {{
            proxy_pass http://be_tcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(tmpdir, f"nginx-auto-{t}"), exist_ok=True)
    with open(f"{tmpdir}/nginx-auto.conf", "w") as f:
        f.write(conf)
    with open(f"{tmpdir}/haproxy2.cfg", "w") as f:
        f.write(CORES_HAPROXY.format(n=2, port=ports["haproxy_2"],
                                     backend=ports["backend"]))
    p = spawn(["nginx", "-p", tmpdir, "-c", f"{tmpdir}/nginx-auto.conf"],
              f"{tmpdir}/nginx-auto.out")
    if not wait_accepts(("127.0.0.1", ports["nginx_auto"]), proc=p):
        raise RuntimeError("nginx (auto) did not start: "
                           + open(f"{tmpdir}/nginx-auto.out").read())
    time.sleep(0.3)
    ws = children(p.pid)
    servers["nginx auto"] = Server("nginx auto", p, [p.pid] + ws, {})
    print(f"http: nginx worker_processes auto: {len(ws)} workers", flush=True)
    p = spawn(["haproxy", "-db", "-f", f"{tmpdir}/haproxy2.cfg"],
              f"{tmpdir}/haproxy2.out")
    if not wait_accepts(("127.0.0.1", ports["haproxy_2"]), proc=p):
        raise RuntimeError("haproxy (2 threads) did not start: "
                           + open(f"{tmpdir}/haproxy2.out").read())
    servers["haproxy 2"] = Server("haproxy 2", p, [p.pid], {})
    for name, workers in (("ms_w1", "1"), ("ms_auto", '"auto"')):
        with open(f"{tmpdir}/{name}.toml", "w") as f:
            f.write(f"""[mothership]
workers = {workers}
socket_dir = "{tmpdir}/{name}-sock"

[mothership.http]
upstream_keepalive = 64

[mothership.bind]
web = "127.0.0.1:{ports[name]}"

[[mothership.upstreams]]
name = "backend"
bind = "127.0.0.1:{ports["backend"]}"
protocol = "http"
routes = ["web:/.*"]
""")
        p = spawn([ms_bin, "run", "-c", f"{tmpdir}/{name}.toml"],
                  f"{tmpdir}/{name}.out")
        if not wait_accepts(("127.0.0.1", ports[name]), proc=p):
            raise RuntimeError(f"mothership ({name}) did not start: "
                               + open(f"{tmpdir}/{name}.out").read())
        servers[name] = Server(name, p, [p.pid], {})


def run_cores(ms_bin, servers, ports, broken):
    """1 and 2 workers (threads) of each proxy, keep-alive TCP upstream,
    wrk with 2 threads and CORES_CONNS connections."""
    start_cores_servers(ms_bin, ports, servers)
    fam = [("mothership", "ms_w1", "ms_auto", "workers = 1", 'workers = "auto"'),
           ("nginx", "nginx", "nginx auto", "worker_processes 1",
            "worker_processes auto"),
           ("haproxy", "haproxy", "haproxy 2", "nbthread 1", "nbthread 2")]
    url = {"ms_w1": ports["ms_w1"], "ms_auto": ports["ms_auto"],
           "nginx": ports["nginx_tcp"], "nginx auto": ports["nginx_auto"],
           "haproxy": ports["haproxy_tcp"], "haproxy 2": ports["haproxy_2"]}
    url = {k: f"http://127.0.0.1:{v}/" for k, v in url.items()}
    targets = []
    for _f, one, two, _l1, _l2 in fam:
        for t in (one, two):
            err = check(url[t], want_body=b"hello")
            if err:
                print(f"http: {t} FAILED the check: {err}", flush=True)
            else:
                targets.append(t)
    print(f"http: CORES=1: {NCPU} CPUs, wrk -t2 -c{CORES_CONNS}, {ROUNDS} "
          f"round(s) of {DURATION} s per target", flush=True)
    for t in targets:
        run_wrk(url[t], max(1, int(WARMUP)), threads=2, conns=CORES_CONNS)
    results = {}
    for rnd in range(ROUNDS):
        k = rnd % len(targets)
        for t in targets[k:] + targets[:k]:
            r = measure(servers[t], servers["backend"], url[t], threads=2,
                        conns=CORES_CONNS)
            results.setdefault(t, []).append(r)
        print(f"  round {rnd + 1}/{ROUNDS} done", flush=True)
    med = {k: summarise(v) for k, v in results.items()}
    heads = ["server", "setting", "req/s (min-max)", "p50", "p99 (worst round)",
             "CPU µs/req", "TCP connects /1k req", "1 -> 2 scaling", "req/s vs nginx auto",
             "p99 vs nginx auto", "errors"]
    rows = []
    ref = med.get("nginx auto")
    for f, one, two, l1, l2 in fam:
        for t, label in ((one, l1), (two, l2)):
            if t not in med:
                rows.append([f, label] + ["-"] * 8 + ["FAILED"])
                continue
            m = med[t]
            sc = (f"{m['rps'] / med[one]['rps']:.2f}x"
                  if t == two and one in med else "-")
            rows.append([f, label, f"{m['rps']:.0f} ({m['rps_min'] / 1000:.1f}k-"
                         f"{m['rps_max'] / 1000:.1f}k)", fmt_us(m["p50"]),
                         f"{fmt_us(m['p99'])} ({fmt_us(m['p99_max'])})",
                         f"{m['cpu']:.1f}", f"{m['conn_per_kreq']:.1f}", sc,
                         f"{m['rps'] / ref['rps']:.2f}x" if ref else "-",
                         f"{m['p99'] / ref['p99']:.2f}x" if ref else "-",
                         str(m["err"])])
    print_table("cores: 1 and 2 workers, keep-alive, TCP upstream "
                f"(wrk -t2 -c{CORES_CONNS})", heads, rows)


def run_mode(servers, ports, broken, ms_bin):
    if NEIGHBOUR:
        run_neighbour(servers, ports, broken)
    if CORES:
        run_cores(ms_bin, servers, ports, broken)


def perf_mothership(pid, url):
    if not shutil.which("perf"):
        print("\nperf: not installed")
        return
    data = os.path.join(tmpdir, "perf.data")
    print(f"\n### perf: Mothership during a {DURATION} s keep-alive run "
          "(TCP upstream)\n", flush=True)
    rec = subprocess.Popen(["perf", "record", "-g", "-o", data, "-p",
                            str(pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    live.append(rec)
    time.sleep(0.5)
    run_wrk(url, DURATION)
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    for sort in ("dso", "dso,symbol"):
        r = subprocess.run(["perf", "report", "-i", data, "--no-children",
                            "--sort", sort, "--stdio", "-g", "none",
                            "--percent-limit", "0.8"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lines = [x for x in r.stdout.decode("utf-8", "replace").splitlines()
                 if x.strip() and not x.startswith("#")]
        print("\n".join(lines[:40]))
        print()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:    # noqa: BLE001 - report and clean up
        try:
            print(f"http: {e}", file=sys.stderr)
        except OSError:       # stderr gone too (a closed pipe)
            pass
        sys.exit(1)
    finally:
        cleanup()             # every server started, by pid, whatever happened
