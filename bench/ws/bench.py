#!/usr/bin/python3
"""bench/ws/bench.py MOTHERSHIP WSLOAD BAYS_DIR [NODE_MODULES] - WebSocket
clients through Mothership's bays on loopback, driven by wsload
(bench/ws/wsload.c), against a Node.js `ws` server alone and nginx in front
of it.

One Mothership with two bays (the example C bays of BAYS_DIR): "echo" on
/echo (each message back to its sender) and "chat" on /chat (each message to
every client); the same with workers = 2; node-peer.js (ws from NODE_MODULES)
doing the same on the same paths; nginx (1 worker) proxying to it; and, when
wsload has -z and Mothership takes ws_compression, both with
permessage-deflate (echo and idle memory). Measured, in ROUNDS alternating
rounds (who goes first rotates), medians, each as a ratio against Mothership;
every figure is also a BENCH-JSON line (benchlib.emit):

- echo: ECHO_CONNS clients, each sending a SIZE-byte text message and
  waiting for its echo, for DURATION s: round trips/s, p50/p99 round-trip
  latency, Mothership's CPU µs per round trip (utime + stime of the process,
  all its threads, from /proc/PID/stat) and the bay's, separately;
- fan-out: FANOUT_CONNS clients on the chat bay, client 0 sends numbered
  SIZE-byte messages for DURATION s, at most WINDOW ahead of the last one
  that every client has received (so as fast as the receivers keep up);
  every client must get each one once, in order: deliveries/s (messages
  received by all clients / time), delivery latency (send to receipt),
  Mothership's and the bay's CPU µs per delivery;
- idle memory: for each round a fresh Mothership; RSS and PSS (from
  /proc/PID/smaps_rollup) with 0 clients, then with IDLE_CONNS idle clients
  (handshake done, nothing sent): KiB per client against the 4 KiB target;
  then again once Mothership has pinged each of them once (and they have
  answered: ws_ping_interval is IDLE_PING s in these runs, 30 s by
  default), and what is left once they have closed.

Every run is checked: all clients connected (101 with the right
Sec-WebSocket-Accept), no close frame, error or wrong message, and
Mothership's own message counters agree. Every process started (Mothership,
through it the bays, wsload) is stopped by pid on exit and on
SIGINT/SIGTERM/SIGHUP.

Environment: ROUNDS (3), DURATION (5), WARM (1), ECHO_CONNS (50),
FANOUT_CONNS (100), SIZE (32), ZSIZE (512: the deflate rows), WINDOW (32),
IDLE_CONNS (10000), IDLE_PING (seconds, 3), HOLD (seconds after the pings,
1), WORKERS (Mothership's `workers`, default its own), PEERS (node,nginx),
WORKERS2=0, COMPRESSION=0, PEER_IDLE=0, QUICK=1 (1 round of 2 s, 2,000 idle
clients), KEEP_TMP=1. See bench/README.md.
"""
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (children, cleanup, cpu_ticks_of, emit, free_port, live, median,  # noqa: E402
                      pss_kb, read, rss_kb, set_tmpdir, stop_on_signals, wait_until)

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
DURATION = float(os.environ.get("DURATION", "2" if QUICK else "5"))
WARM = float(os.environ.get("WARM", "0.3" if QUICK else "1"))
ECHO_CONNS = int(os.environ.get("ECHO_CONNS", "50"))
FANOUT_CONNS = int(os.environ.get("FANOUT_CONNS", "100"))
SIZE = int(os.environ.get("SIZE", "32"))
ZSIZE = int(os.environ.get("ZSIZE", "512"))     # bytes of a message in the deflate rows
WINDOW = int(os.environ.get("WINDOW", "32"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "2000" if QUICK else "10000"))
HOLD = float(os.environ.get("HOLD", "1"))
IDLE_PING = os.environ.get("IDLE_PING", "3")    # seconds: ws_ping_interval of the idle runs
PING_S = float(IDLE_PING)
WORKERS = os.environ.get("WORKERS", "")
TARGET_KIB = 4.0
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = [p for p in os.environ.get("PEERS", "node,nginx").split(",") if p]
COMPRESSION = os.environ.get("COMPRESSION", "1") == "1"
WORKERS2 = os.environ.get("WORKERS2", "1") == "1"
PEER_IDLE = int(os.environ.get("PEER_IDLE", "1"))   # 0: no idle rounds for peers
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

tmpdir = None


# ------------------------------------------------------------ processes ----

def cpu_ticks(pid, tid=None):
    """utime + stime of this process (all its threads), or of its thread
    tid, in ticks."""
    return cpu_ticks_of(f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat")


# ----------------------------------------------------------- mothership ----

class Mothership:
    """A Mothership with the echo and chat bays; start() waits until both
    are docked (per /metrics)."""

    is_ms = True

    def __init__(self, ms_bin, bays_dir, tag, http_extra="", workers=None,
                 compression=False, label="mothership"):
        self.label = label
        self.port = free_port()
        self.mport = free_port()
        d = os.path.join(tmpdir, tag)
        os.makedirs(d)
        self.log = os.path.join(d, "mothership.log")
        workers = workers or WORKERS
        workers = f"workers = {workers}\n" if workers else ""
        z = ", ws_compression = true" if compression == "route" else ""
        zb = "ws_compression = true\n" if compression == "bay" else ""
        manifest = f"""[mothership]
metrics_port = {self.mport}
socket_dir = "{d}/run"
shutdown_timeout = "5s"
{workers}
[mothership.bind]
http = "127.0.0.1:{self.port}"

[mothership.http]
max_connections = {max(20000, IDLE_CONNS + 1000)}
{http_extra}
[[bays.websocket]]
name = "echo"
command = "{bays_dir}/echo-bay"
{zb}routes = [{{ bind = "http", pattern = "/echo.*"{z} }}]

[[bays.websocket]]
name = "chat"
command = "{bays_dir}/chat-bay"
{zb}routes = [{{ bind = "http", pattern = "/chat.*"{z} }}]
"""
        self.toml = os.path.join(d, "mothership.toml")
        with open(self.toml, "w") as f:
            f.write(manifest)
        out = open(self.log, "wb")
        self.proc = subprocess.Popen([ms_bin, "run", "-c", self.toml],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=d)
        out.close()
        live.append(self.proc)
        self.pid = self.proc.pid
        deadline = time.time() + 20
        while True:
            m = self.metrics(quiet=True)
            if m and m.get(("mothership_bay_docked", "echo")) == 1 \
                    and m.get(("mothership_bay_docked", "chat")) == 1:
                break
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mothership: the bays did not dock:\n"
                                   + open(self.log, errors="replace").read())
            time.sleep(0.05)
        # the bays: below their launch shims, children of Mothership
        self.bay_pid = {}
        for shim in children(self.pid):
            for pid in children(shim) or [shim]:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv0 = f.read().split(b"\0")[0].decode()
                except OSError:
                    continue
                for name in ("echo", "chat"):
                    if argv0.endswith(f"/{name}-bay"):
                        self.bay_pid[name] = pid
        if set(self.bay_pid) != {"echo", "chat"}:
            raise RuntimeError(f"mothership: bay processes not found "
                               f"({self.bay_pid})")

    def cpu_pids(self, bay):
        """{label: (pid, tid)} of the server side for a run on bay: all of
        Mothership, its main thread apart (not summed), the bay."""
        return {"ms": (self.pid, None), "main": (self.pid, self.pid),
                "bay": (self.bay_pid[bay], None)}

    def mem_kb(self):
        """(RSS, PSS) of Mothership alone, in KiB."""
        return rss_kb(self.pid), pss_kb(self.pid)

    def metrics(self, quiet=False):
        """{(name, bay-or-""): value} of Mothership's /metrics."""
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.mport}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            if quiet:
                return None
            raise
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r'^(\w+)(?:\{([^}]*)\})?\s+(\S+)$', line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            key = (m.group(1), labels.get("bay", ""))
            if "direction" in labels:
                key = key + (labels["direction"],)
            out[key] = out.get(key, 0) + float(m.group(3))
        return out

    def wait_clients(self, bay, n, timeout=30):
        deadline = time.time() + timeout
        while True:
            got = self.metrics().get(("mothership_bay_clients", bay))
            if got == n:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{bay}: {got} clients on the bay, not {n}")
            time.sleep(0.05)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"mothership exited (status "
                               f"{self.proc.returncode}):\n"
                               + open(self.log, errors="replace").read()[-3000:])
        for name, pid in self.bay_pid.items():
            if not os.path.exists(f"/proc/{pid}"):
                raise RuntimeError(f"bay {name} (pid {pid}) is gone")

    def stop(self):
        self.proc.terminate()
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        live.remove(self.proc)
        return rc

    def odd_log_lines(self):
        """Log lines other than the expected start/stop chatter."""
        usual = re.compile(r"metrics on|listening on|launching|started \(pid|"
                           r"ready in|fleet ready|docked as|stopping|stopped|control socket|"
                           r"is away: its clients are held|"
                           r"exited|shutdown|signal|SIGTERM|received|bye|drained")
        with open(self.log, errors="replace") as f:
            return [l.rstrip() for l in f if not usual.search(l)]


# ---------------------------------------------------------------- peers ----

class NodeWs:
    """The Node.js `ws` peer (bench/ws/node-peer.js): /echo and /chat as the
    example bays, perMessageDeflate on when deflate."""
    is_ms = False

    def __init__(self, node, modules, tag, deflate=False, label="node-ws"):
        self.label = label
        self.port = free_port()
        d = os.path.join(tmpdir, tag)
        os.makedirs(d)
        self.log = os.path.join(d, "node.log")
        env = dict(os.environ, NODE_PATH=modules)
        out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [node, os.path.join(HERE, "node-peer.js"), str(self.port)]
            + (["deflate"] if deflate else []),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=d, env=env)
        out.close()
        live.append(self.proc)
        self.pid = self.proc.pid
        wait_until(lambda: "listening" in read(self.log), 20,
                   f"{label}: not listening", self.proc, self.log)

    def cpu_pids(self, _bay):
        return {"node": (self.pid, None)}

    def mem_kb(self):
        return rss_kb(self.pid), pss_kb(self.pid)

    def wait_clients(self, _bay, _n, timeout=30):
        """ws adds a client before its 101 is written: nothing to wait for."""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.label} exited (status "
                               f"{self.proc.returncode}):\n" + read(self.log)[-3000:])

    def stop(self):
        rc = stop_proc(self.proc)
        return rc


class NginxNode:
    """nginx (1 worker) in front of a NodeWs: proxy_pass with the Upgrade
    and Connection headers, as nginx's WebSocket proxying documents."""
    is_ms = False

    def __init__(self, node, tag, label="nginx+node-ws"):
        self.label = label
        self.node = node
        self.port = free_port()
        d = os.path.join(tmpdir, tag)
        os.makedirs(d)
        self.log = os.path.join(d, "error.log")
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections {2 * nginx_idle_conns() + 1900}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    upstream node {{ server 127.0.0.1:{node.port}; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location / {{
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
""")
        out = open(os.path.join(d, "nginx.out"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", d, "-c", conf, "-e", self.log],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=d,
                                     preexec_fn=raise_nofile)
        out.close()
        live.append(self.proc)
        self.pid = self.proc.pid
        wait_until(lambda: port_open(self.port) and children(self.pid), 20,
                   "nginx: not listening", self.proc, self.log)
        self.worker = children(self.pid)[0]

    def cpu_pids(self, bay):
        return {"nginx": (self.worker, None), "nginx_master": (self.pid, None),
                "node": (self.node.pid, None)}

    def mem_kb(self):
        r, p = self.node.mem_kb()
        return (r + rss_kb(self.pid) + rss_kb(self.worker),
                p + pss_kb(self.pid) + pss_kb(self.worker))

    def wait_clients(self, _bay, _n, timeout=30):
        """The 101 comes from Node, which has added the client by then."""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited (status {self.proc.returncode}):\n"
                               + read(self.log)[-3000:])
        self.node.check_alive()

    def stop(self):
        return stop_proc(self.proc)

    def odd_log_lines(self):
        return [l for l in read(self.log).splitlines()
                if re.search(r"\[(alert|crit|emerg|error)\]", l)]


def raise_nofile():
    """In nginx's child before exec: the soft descriptor limit up to the hard
    one (nginx's worker, no longer root, could not raise it itself)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


def nginx_idle_conns():
    """As many idle clients as nginx's worker can hold within the hard
    descriptor limit (2 sockets each: the client's and Node's), at most
    IDLE_CONNS."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return IDLE_CONNS
    return max(1, min(IDLE_CONNS, (hard - 2000) // 2))


def stop_proc(p):
    p.terminate()
    try:
        rc = p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(5)
    if p in live:
        live.remove(p)
    return rc


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def offers_deflate(port, path="/echo"):
    """Does the server at port answer an upgrade that offers
    permessage-deflate (no context takeover either way) with the extension?"""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; "
           "client_no_context_takeover; server_no_context_takeover\r\n\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(req.encode())
            got = b""
            while b"\r\n\r\n" not in got and len(got) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
            c.sendall(b"\x88\x82abcd" + bytes(x ^ y for x, y in zip(b"\x03\xe8", b"ab")))
    except OSError:
        return False
    head = got.split(b"\r\n\r\n")[0].decode("latin-1").lower()
    return head.startswith("http/1.1 101") and re.search(
        r"^sec-websocket-extensions:.*permessage-deflate", head, re.M) is not None


def wsload_has_z(wsload):
    """wsload's usage (no arguments) names -z once slice D's
    permessage-deflate support is in."""
    p = subprocess.run([wsload], capture_output=True, text=True, timeout=10)
    return re.search(r"\[-z\]|(^|\s)-z(\s|$)", p.stderr + p.stdout) is not None


def ms_takes_compression(ms_bin):
    """Where this Mothership takes ws_compression: "route" (a key of a bay's
    route table, as slice D's docs/manifest.md has it), "bay" (a key of the
    bay), or "" when it refuses both (`mothership clearance`)."""
    d = tempfile.mkdtemp(dir=tmpdir)
    toml = os.path.join(d, "z.toml")
    for where, route, bay in (("route", ", ws_compression = true", ""),
                              ("bay", "", "ws_compression = true\n")):
        with open(toml, "w") as f:
            f.write(f"""[mothership]
socket_dir = "{d}/run"
[mothership.bind]
http = "127.0.0.1:{free_port()}"
[[bays.websocket]]
name = "echo"
command = "/bin/true"
{bay}routes = [{{ bind = "http", pattern = "/echo.*"{route} }}]
""")
        p = subprocess.run([ms_bin, "clearance", "-c", toml], capture_output=True,
                           text=True, timeout=30, cwd=d)
        if p.returncode == 0:
            return where
    return ""


# --------------------------------------------------------------- wsload ----

class Load:
    """One wsload process: connect, then go / close on request."""

    def __init__(self, wsload, mode, port, path, conns, extra=()):
        argv = [wsload, mode, "-p", str(port), "-u", path, "-c", str(conns),
                "-d", str(DURATION), "-s", str(SIZE), "-w", str(WINDOW)]
        self.proc = subprocess.Popen(argv + list(extra), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        live.append(self.proc)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline().split()
        if len(line) != 4 or line[0] != "connected":
            raise RuntimeError(f"wsload {mode}: no connect report ({line})")
        self.ok, self.failed = int(line[1]), int(line[2])
        self.connect_s = float(line[3])
        if self.ok != conns:
            self.close()
            raise RuntimeError(f"wsload {mode}: {self.ok} of {conns} clients "
                               f"connected, {self.failed} failed: "
                               f"{self.closed.get('first_error')}")

    def _cmd(self, cmd, want):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith(want + " "):
            raise RuntimeError(f"wsload: expected {want}, got {line!r}")
        return json.loads(line[len(want) + 1:])

    def go(self):
        return self._cmd("go", "RESULT")

    def stats(self):
        return self._cmd("stats", "STATS")

    def close(self):
        self.closed = self._cmd("close", "CLOSED")
        self.proc.stdin.close()
        self.proc.wait(10)
        live.remove(self.proc)
        return self.closed


def problems(r):
    """What went wrong in a RESULT/CLOSED report (empty when all is well)."""
    out = []
    for k in ("errors", "bad", "eof", "undelivered"):
        if r.get(k):
            out.append(f"{k} {r[k]}")
    if r.get("server_closes"):
        out.append(f"close frames from the server {r['server_closes']}")
    if r.get("close_other"):
        out.append(f"{r['close_other']} answered our close with another code")
    if r.get("not_closed_by_server_in_5s"):
        out.append(f"{r['not_closed_by_server_in_5s']} not closed by the "
                   "server within 5 s")
    if r.get("first_error"):
        out.append(f"first error: {r['first_error']}")
    return out


def measured(t, load, bay, fn):
    """Run fn() (a wsload run) between two CPU readings of the server side
    of target t and of wsload."""
    pids = dict(t.cpu_pids(bay), load=(load.pid, None))
    before = {k: cpu_ticks(*p) for k, p in pids.items()}
    r = fn()
    after = {k: cpu_ticks(*p) for k, p in pids.items()}
    r["cpu_server_s"] = 0.0
    for k in pids:
        r[f"cpu_{k}_s"] = (after[k] - before[k]) / CLK_TCK
        if k not in ("main", "load"):
            r["cpu_server_s"] += r[f"cpu_{k}_s"]
    return r


def add_rates(r):
    """Rate, CPU µs per message and CPU shares of a measured run; returns
    its message count."""
    n = r["messages"]
    r["rate"] = n / r["seconds"]
    r["server_us"] = r["cpu_server_s"] * 1e6 / max(1, n)
    r["load_pct"] = 100 * r["cpu_load_s"] / r["seconds"]
    r["server_pct"] = 100 * r["cpu_server_s"] / r["seconds"]
    if "cpu_ms_s" in r:
        r["ms_us"] = r["cpu_ms_s"] * 1e6 / max(1, n)
        r["bay_us"] = r["cpu_bay_s"] * 1e6 / max(1, n)
        r["ms_pct"] = 100 * r["cpu_ms_s"] / r["seconds"]
        r["main_pct"] = 100 * r["cpu_main_s"] / r["seconds"]
    return n


def ms_count_check(t, m0, m1, bay, want, what, issues):
    """Mothership's mothership_bay_messages_total moved by want[dir]."""
    for d in ("in", "out"):
        got = m1.get(("mothership_bay_messages_total", bay, d), 0) \
            - m0.get(("mothership_bay_messages_total", bay, d), 0)
        if got != want[d]:
            issues.append(f"{t.label} {what}: Mothership counted {got:.0f} "
                          f"messages {d}, wsload {want[d]}")


def run_echo(t, wsload, issues, warm=False, z=()):
    if z:   # deflate rows: a message worth compressing (ZSIZE bytes)
        z = list(z) + ["-s", str(ZSIZE)]
    load = Load(wsload, "echo", t.port, "/echo", ECHO_CONNS,
                list(z) + (["-d", f"{WARM:g}"] if warm else []))
    if warm:
        load.go()
        load.close()
        return None
    m0 = t.metrics() if t.is_ms else None
    r = measured(t, load, "echo", load.go)
    m1 = t.metrics() if t.is_ms else None
    c = load.close()
    n = add_rates(r)
    if t.is_ms:
        ms_count_check(t, m0, m1, "echo", {"in": n, "out": n}, "echo", issues)
    if z:
        # wsload counts the messages that came compressed (RSV1)
        r["zshare"] = 100 * r.get("compressed_in", 0) / max(1, n)
        r["zratio"] = (r.get("compressed_in_wire_bytes", 0)
                       / max(1, r.get("compressed_in_plain_bytes", 0)))
        if not r.get("compressed_in"):
            issues.append(f"{t.label} echo: -z, but no message from the "
                          "server came compressed")
    for p in problems(r) + problems(c):
        issues.append(f"{t.label} echo: {p}")
    return r


def run_fanout(t, wsload, issues, warm=False):
    load = Load(wsload, "fanout", t.port, "/chat", FANOUT_CONNS,
                ["-d", f"{WARM:g}"] if warm else [])
    t.wait_clients("chat", FANOUT_CONNS)   # every client boarded first
    if warm:
        load.go()
        load.close()
        return None
    m0 = t.metrics() if t.is_ms else None
    r = measured(t, load, "chat", load.go)
    m1 = t.metrics() if t.is_ms else None
    c = load.close()
    n = add_rates(r)
    if n != r["sent"] * FANOUT_CONNS:
        issues.append(f"{t.label} fan-out: {n} deliveries for {r['sent']} "
                      f"messages x {FANOUT_CONNS} clients")
    if t.is_ms:
        ms_count_check(t, m0, m1, "chat", {"in": r["sent"], "out": n},
                       "fan-out", issues)
    for p in problems(r) + problems(c):
        issues.append(f"{t.label} fan-out: {p}")
    return r


def run_idle(t, wsload, issues, z=(), ping=True, n=IDLE_CONNS):
    """Memory of a fresh server t with 0, then n idle clients: RSS
    and PSS of Mothership alone (rss*, pss*) and of the whole server side
    (all_*: Mothership and the echo bay; Node; nginx and Node); with ping,
    again once Mothership has pinged every client (Mothership only)."""
    warm = Load(wsload, "echo", t.port, "/echo", 2, ["-d", "0.2"] + list(z))
    warm.go()
    warm.close()
    t.wait_clients("echo", 0)
    time.sleep(0.5)

    def side():
        rss, pss = t.mem_kb()
        if t.is_ms:
            b = t.bay_pid["echo"]
            return rss, pss, rss + rss_kb(b), pss + pss_kb(b)
        return rss, pss, rss, pss
    r = {}
    r["rss0"], r["pss0"], r["all_rss0"], r["all_pss0"] = side()
    load = Load(wsload, "idle", t.port, "/echo", n, z)
    r["connect_s"] = load.connect_s
    t.wait_clients("echo", n)
    time.sleep(0.5)
    # nothing sent yet, and no ping: the first comes IDLE_PING after the
    # handshake, and connecting takes well under that
    r["rss1"], r["pss1"], r["all_rss1"], r["all_pss1"] = side()
    for k in ("rss", "pss", "all_rss", "all_pss"):
        r[f"per_{k}"] = (r[f"{k}1"] - r[f"{k}0"]) / n
    if t.is_ms and ping:
        pings0 = load.stats()["pings"]
        # then each client gets Mothership's ping and answers it (wsload does)
        deadline = time.time() + 3 * PING_S + 10
        while load.stats()["pings"] < n:
            if time.time() > deadline:
                issues.append(f"idle: only {load.stats()['pings']} pings for "
                              f"{n} clients")
                break
            time.sleep(0.2)
        time.sleep(HOLD)
        t.check_alive()
        t.wait_clients("echo", n)      # nobody was dropped meanwhile
        r["rss_p"], r["pss_p"] = t.mem_kb()
        if pings0:
            issues.append(f"idle: {pings0} pings before the first measurement "
                          "(raise IDLE_PING)")
        r["per_rss_p"] = (r["rss_p"] - r["rss0"]) / n
        r["per_pss_p"] = (r["pss_p"] - r["pss0"]) / n
    t.check_alive()
    c = load.close()
    t.wait_clients("echo", 0)
    time.sleep(0.3 if QUICK else 1)
    r["rss2"] = t.mem_kb()[0]
    for p in problems(c):
        issues.append(f"{t.label} idle: {p}")
    return r


def final_checks(ms, issues, label):
    if not ms.is_ms:
        rc = ms.stop()
        if rc != 0:
            issues.append(f"{label}: {ms.label} exited with status {rc}")
        for line in getattr(ms, "odd_log_lines", lambda: [])():
            issues.append(f"{label}: {ms.label} log: {line}")
        return
    m = ms.metrics()
    for key, what in (("mothership_bay_dropped_cargo_total", "dropped cargo"),
                      ("mothership_bay_protocol_errors_total", "protocol errors"),
                      ("mothership_bay_redocks_total", "re-docks"),
                      ("mothership_bay_rejected_total", "upgrades rejected (503)"),
                      ("mothership_bay_slow_clients_closed_total", "slow clients closed (1008)")):
        for bay in ("echo", "chat"):
            v = m.get((key, bay), 0)
            if v:
                issues.append(f"{label}: {bay}: {v:.0f} {what}")
    v = m.get(("mothership_http_connections_rejected_total", ""), 0)
    if v:
        issues.append(f"{label}: {v:.0f} client connections rejected")
    rc = ms.stop()
    if rc != 0:
        issues.append(f"{label}: mothership exited with status {rc}")
    for line in ms.odd_log_lines():
        issues.append(f"{label}: log: {line}")


# ----------------------------------------------------------------- main ----

def fmt_us(us):
    if us != us:
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def med(rs, key):
    return median([r[key] for r in rs if key in r])


def ratio(a, b):
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def emit_runs(scenario, label, rs, unit_rate):
    """The JSON figures of one target's rounds of a scenario."""
    if not rs:
        return
    emit("ws", scenario, label, "rate", [r["rate"] for r in rs], unit_rate)
    emit("ws", scenario, label, "p50", [r["p50_us"] for r in rs], "µs")
    emit("ws", scenario, label, "p99", [r["p99_us"] for r in rs], "µs")
    emit("ws", scenario, label, "cpu_per_msg", [r["server_us"] for r in rs], "µs")
    if "ms_us" in rs[0]:
        emit("ws", scenario, label, "cpu_per_msg_mothership", [r["ms_us"] for r in rs], "µs")
        emit("ws", scenario, label, "cpu_per_msg_bay", [r["bay_us"] for r in rs], "µs")
    emit("ws", scenario, label, "client_cpu", [r["load_pct"] for r in rs], "%")


def throughput_table(title, what, unit, res, order):
    """One row per target with its medians, then each as a ratio against
    Mothership (workers 1)."""
    print()
    print(f"### {title}")
    print()
    print(f"| server | {unit} (min-max) | p50 | p99 | server CPU µs/{what} "
          f"(Mothership; bay) | server CPU | wsload CPU |")
    print("|---|---|---|---|---|---|---|")
    for label in order:
        rs = res.get(label)
        if not rs:
            print(f"| {label} | not available | | | | | |")
            continue
        v = [r["rate"] for r in rs]
        split = (f" ({med(rs, 'ms_us'):.2f}; {med(rs, 'bay_us'):.2f})"
                 if "ms_us" in rs[0] else "")
        main_t = (f" (main thread {med(rs, 'main_pct'):.0f} %)"
                  if "main_pct" in rs[0] else "")
        print(f"| {label} | {median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f}) "
              f"| {fmt_us(med(rs, 'p50_us'))} | {fmt_us(med(rs, 'p99_us'))} "
              f"| {med(rs, 'server_us'):.2f}{split} "
              f"| {med(rs, 'server_pct'):.0f} % of a core{main_t} "
              f"| {med(rs, 'load_pct'):.0f} % |")
    base = order[0]
    if not res.get(base) or not any(res.get(lb) for lb in order[1:]):
        return
    print()
    print(f"{base} against each: rate (higher is better), p50, p99 and CPU "
          f"per {what} (lower is better), as {base} / other:")
    print()
    print("| against | rate | p50 | p99 | CPU |")
    print("|---|---|---|---|---|")
    b = res[base]
    for label in order[1:]:
        rs = res.get(label)
        if not rs:
            continue
        print(f"| {label} | {ratio(med(b, 'rate'), med(rs, 'rate'))} "
              f"| {ratio(med(b, 'p50_us'), med(rs, 'p50_us'))} "
              f"| {ratio(med(b, 'p99_us'), med(rs, 'p99_us'))} "
              f"| {ratio(med(b, 'server_us'), med(rs, 'server_us'))} |")


def idle_rounds(label, make, wsload, issues, z=(), ping=True, n=IDLE_CONNS):
    out = []
    for rnd in range(ROUNDS):
        t = make(rnd)
        try:
            out.append(run_idle(t, wsload, issues, z, ping, n))
        except RuntimeError as e:     # a peer failing is reported, the rest runs
            if label == "mothership":
                raise
            issues.append(f"{label} idle round {rnd + 1}: {e}")
            for p in list(live):
                if p.args and os.path.basename(str(p.args[0])) == "wsload":
                    stop_proc(p)
            continue
        finally:
            for x in (t, getattr(t, "node", None)):
                if x is not None:
                    final_checks(x, issues, f"{label} idle round {rnd + 1}")
        r = out[-1]
        print(f"  idle {label} round {rnd + 1}/{ROUNDS}: {r['per_all_rss']:.2f} "
              f"KiB RSS, {r['per_all_pss']:.2f} KiB PSS per client "
              f"(server side)", flush=True)
    return out


def main():
    global tmpdir
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: bench.py MOTHERSHIP WSLOAD BAYS_DIR [NODE_MODULES]")
    ms_bin, wsload, bays = (os.path.abspath(a) for a in sys.argv[1:4])
    modules = os.path.abspath(sys.argv[4]) if len(sys.argv) == 5 else ""
    stop_on_signals(grace=15)
    tmpdir = tempfile.mkdtemp(prefix="msbench-ws-")
    set_tmpdir(tmpdir)
    issues, notes = [], []
    t_all = time.time()

    print(f"ws: {NCPU} CPUs (shared by the servers and wsload), "
          f"{ROUNDS} round(s) of {DURATION:g} s, {SIZE}-byte text messages; "
          f"echo {ECHO_CONNS} clients; fan-out {FANOUT_CONNS} clients, "
          f"window {WINDOW}; idle {IDLE_CONNS} clients"
          + (f"; workers = {WORKERS}" if WORKERS else ""), flush=True)

    node = shutil.which("node")
    have_node = bool(node and modules and os.path.isfile(
        os.path.join(modules, "ws", "package.json")))
    if PEERS and not have_node:
        notes.append("Node.js ws peer: not available (node or the ws module "
                     f"missing: {modules or 'no NODE_MODULES given'})")
    want_nginx = "nginx" in PEERS and have_node
    if want_nginx and not NGINX:
        notes.append("nginx in front of Node ws: not available (nginx is not "
                     "installed: DEPS_BENCH=1 scripts/deps.sh)")
        want_nginx = False
    z_load = wsload_has_z(wsload) if COMPRESSION else False
    z_ms = ms_takes_compression(ms_bin) if COMPRESSION else False
    if COMPRESSION and not z_load:
        notes.append("compression rows: not available (wsload has no -z: "
                     "permessage-deflate support in bench/ws/wsload.c)")
    if COMPRESSION and z_load and not z_ms:
        notes.append("Mothership with ws_compression: not available (this "
                     "Mothership does not accept ws_compression on a route or a bay)")

    # --- the targets of the throughput rounds, all up at once
    targets = {}          # label -> target
    scen = {}             # label -> (echo?, fanout?, wsload extra args)
    targets["mothership"] = Mothership(ms_bin, bays, "main")
    scen["mothership"] = (True, True, ())
    if WORKERS2 and WORKERS != "2":
        targets["mothership-w2"] = Mothership(ms_bin, bays, "w2", workers=2,
                                              label="mothership-w2")
        scen["mothership-w2"] = (True, True, ())
    if have_node and "node" in PEERS or want_nginx:
        targets["node-ws"] = NodeWs(node, modules, "node")
        scen["node-ws"] = (True, True, ())
    if want_nginx:
        targets["nginx+node-ws"] = NginxNode(targets["node-ws"], "nginx")
        scen["nginx+node-ws"] = (True, True, ())
    if z_load and z_ms:
        targets["mothership-deflate"] = Mothership(
            ms_bin, bays, "z", compression=z_ms, label="mothership-deflate")
        scen["mothership-deflate"] = (True, False, ("-z",))
        if not offers_deflate(targets["mothership-deflate"].port):
            notes.append("mothership-deflate: the handshake did not "
                         "negotiate permessage-deflate")
    if z_load and have_node:
        targets["node-ws-deflate"] = NodeWs(node, modules, "nodez", deflate=True,
                                            label="node-ws-deflate")
        scen["node-ws-deflate"] = (True, False, ("-z",))
    labels = list(targets)
    for label in labels:
        t = targets[label]
        e, f, z = scen[label]
        if e:
            run_echo(t, wsload, issues, warm=True, z=z)
        if f:
            run_fanout(t, wsload, issues, warm=True)
    echo = {label: [] for label in labels}
    fan = {label: [] for label in labels}
    for rnd in range(ROUNDS):
        order = labels[rnd % len(labels):] + labels[:rnd % len(labels)]
        if rnd % 2:
            order.reverse()
        for label in order:
            t = targets[label]
            e, f, z = scen[label]
            if e:
                echo[label].append(run_echo(t, wsload, issues, z=z))
            if f:
                fan[label].append(run_fanout(t, wsload, issues))
            t.check_alive()
        print(f"  round {rnd + 1}/{ROUNDS}: echo round trips/s "
              + ", ".join(f"{label} {echo[label][-1]['rate']:,.0f}"
                          for label in labels if echo[label])
              + "; fan-out deliveries/s "
              + ", ".join(f"{label} {fan[label][-1]['rate']:,.0f}"
                          for label in labels if fan[label]), flush=True)
    ms_rss_after = targets["mothership"].mem_kb()
    for label in reversed(labels):
        final_checks(targets[label], issues, f"{label} throughput run")

    # --- idle memory: a fresh server each round
    idle = {}
    idle["mothership"] = idle_rounds("mothership", lambda rnd: Mothership(
        ms_bin, bays, f"idle{rnd}", http_extra=(
            f'ws_ping_interval = "{IDLE_PING}s"\n'
            f'ws_idle_timeout = "{max(10.0, 5 * PING_S):g}s"\n')),
        wsload, issues)
    if PEER_IDLE and "node-ws" in targets:
        idle["node-ws"] = idle_rounds("node-ws", lambda rnd: NodeWs(
            node, modules, f"idle-node{rnd}"), wsload, issues)
    if PEER_IDLE and "nginx+node-ws" in targets:
        idle["nginx+node-ws"] = idle_rounds("nginx+node-ws", lambda rnd: NginxNode(
            NodeWs(node, modules, f"idle-nn{rnd}"), f"idle-nginx{rnd}"),
            wsload, issues, n=nginx_idle_conns())
        if nginx_idle_conns() < IDLE_CONNS:
            notes.append(f"nginx+node-ws idle: {nginx_idle_conns():,} clients, "
                         "not more: 2 descriptors each in nginx's worker within "
                         "the hard RLIMIT_NOFILE")
    if PEER_IDLE and "mothership-deflate" in targets:
        idle["mothership-deflate"] = idle_rounds(
            "mothership-deflate", lambda rnd: Mothership(
                ms_bin, bays, f"idle-z{rnd}", compression=z_ms,
                label="mothership-deflate"), wsload, issues, ("-z",), ping=False)
    if PEER_IDLE and "node-ws-deflate" in targets:
        idle["node-ws-deflate"] = idle_rounds("node-ws-deflate", lambda rnd: NodeWs(
            node, modules, f"idle-nodez{rnd}", deflate=True,
            label="node-ws-deflate"), wsload, issues, ("-z",))

    # --- tables
    plain = [lb for lb in ("mothership", "node-ws", "nginx+node-ws") if lb in labels]
    throughput_table(f"echo: {ECHO_CONNS} clients, one {SIZE}-byte message in "
                     "flight each (medians of the rounds)", "round trip",
                     "round trips/s", echo, plain)
    throughput_table(f"fan-out: {FANOUT_CONNS} clients, one sender, at most "
                     f"{WINDOW} messages ahead of the slowest receiver",
                     "delivery", "deliveries/s", fan, plain)
    if "mothership-w2" in labels:
        throughput_table("workers: Mothership with workers = 1 against "
                         "workers = 2, echo", "round trip", "round trips/s",
                         echo, ["mothership", "mothership-w2"])
        throughput_table("workers: Mothership with workers = 1 against "
                         "workers = 2, fan-out", "delivery", "deliveries/s",
                         fan, ["mothership", "mothership-w2"])
    zl = ["mothership-deflate", "node-ws-deflate"]
    if any(lb in labels for lb in zl):
        throughput_table(f"permessage-deflate (no context takeover), echo, "
                         f"{ZSIZE}-byte messages", "round trip", "round trips/s",
                         echo, zl)
        for lb in zl:
            if echo.get(lb):
                print(f"{lb}: {med(echo[lb], 'zshare'):.0f} % of the answers "
                      f"came compressed, to {100 * med(echo[lb], 'zratio'):.0f} % "
                      "of their size")
    else:
        print()
        print("### permessage-deflate: not available"
              + (" (COMPRESSION=0)" if not COMPRESSION else " (why: below)"))
    for label in labels:
        emit_runs("echo-deflate" if "deflate" in label else "echo",
                  label.replace("-deflate", ""), echo[label], "round trips/s")
        emit_runs("fanout", label, fan[label], "deliveries/s")

    print()
    print(f"### idle clients: memory with {IDLE_CONNS:,} idle clients on /echo, "
          f"a fresh server per round (target for Mothership alone: "
          f"<= {TARGET_KIB:g} KiB per client)")
    print()
    print("| server | KiB/client, whole server side: RSS (PSS) | Mothership "
          "alone: RSS (PSS) | after one ping each (Mothership) | RSS at 0 "
          "clients | connect time |")
    print("|---|---|---|---|---|---|")
    later = []
    for label, rs in idle.items():
        if not rs:
            continue
        alone = (f"{med(rs, 'per_rss'):.2f} ({med(rs, 'per_pss'):.2f})"
                 if label.startswith("mothership") else "-")
        pinged = (f"{med(rs, 'per_rss_p'):.2f} ({med(rs, 'per_pss_p'):.2f})"
                  if "per_rss_p" in rs[0] else "-")
        print(f"| {label} | **{med(rs, 'per_all_rss'):.2f} "
              f"({med(rs, 'per_all_pss'):.2f})** | {alone} | {pinged} "
              f"| {med(rs, 'all_rss0') / 1024:.1f} MB "
              f"| {med(rs, 'connect_s'):.2f} s |")
        later.append((label, rs))
    for label, rs in later:
        sc = "idle-deflate" if "deflate" in label else "idle"
        lb = label.replace("-deflate", "")
        emit("ws", sc, lb, "mem_per_client_rss", [r["per_all_rss"] for r in rs], "KiB")
        emit("ws", sc, lb, "mem_per_client_pss", [r["per_all_pss"] for r in rs], "KiB")
        if label == "mothership":
            emit("ws", sc, "mothership-alone", "mem_per_client_rss",
                 [r["per_rss"] for r in rs], "KiB")
            emit("ws", sc, "mothership-alone", "mem_per_client_pss",
                 [r["per_pss"] for r in rs], "KiB")
            emit("ws", "idle-pinged", "mothership-alone", "mem_per_client_rss",
                 [r["per_rss_p"] for r in rs if "per_rss_p" in r], "KiB")
    ms_idle = idle.get("mothership")
    if ms_idle:
        print()
        for label in ("node-ws", "nginx+node-ws"):
            if idle.get(label):
                print(f"Mothership (with its bay) per idle client against "
                      f"{label}: {ratio(med(ms_idle, 'per_all_rss'), med(idle[label], 'per_all_rss'))}"
                      f" RSS, {ratio(med(ms_idle, 'per_all_pss'), med(idle[label], 'per_all_pss'))} PSS")
        if idle.get("mothership-deflate") and idle.get("node-ws-deflate"):
            a, b = idle["mothership-deflate"], idle["node-ws-deflate"]
            print(f"compressed idle client, Mothership against Node ws: "
                  f"{ratio(med(a, 'per_all_rss'), med(b, 'per_all_rss'))} RSS, "
                  f"{ratio(med(a, 'per_all_pss'), med(b, 'per_all_pss'))} PSS")
        per = med(ms_idle, "per_rss")
        print(f"Mothership alone: {per:.2f} KiB RSS per idle client: "
              f"{'within' if per <= TARGET_KIB else 'OVER'} the "
              f"{TARGET_KIB:g} KiB target")
    print(f"Mothership after the throughput rounds: RSS "
          f"{ms_rss_after[0] / 1024:.1f} MB, PSS {ms_rss_after[1] / 1024:.1f} MB")
    print()
    for n in notes:
        print(n)
    if issues:
        print(f"problems ({len(issues)}):")
        for i in issues[:40]:
            print(f"  - {i}")
        if len(issues) > 40:
            print(f"  ... and {len(issues) - 40} more")
    else:
        print("no errors, close frames, lost or wrong messages; Mothership's "
              "counters agree with wsload's; clean exits")
    print(f"(total {time.time() - t_all:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:    # noqa: BLE001 - report and clean up
        try:
            print(f"ws: {e}", file=sys.stderr)
        except OSError:
            pass
        sys.exit(1)
    finally:
        cleanup(grace=15)     # every process started, by pid, whatever happened
