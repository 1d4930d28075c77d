#!/usr/bin/python3
"""bench/ws/bench.py MOTHERSHIP WSLOAD BAYS_DIR - WebSocket clients through
Mothership's bays on loopback, driven by wsload (bench/ws/wsload.c).

One Mothership with two bays (the example C bays of BAYS_DIR): "echo" on
/echo (each message back to its sender) and "chat" on /chat (each message to
every client). Measured, in ROUNDS alternating rounds (who goes first swaps),
medians:

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

Environment: ROUNDS (3), DURATION (5), ECHO_CONNS (50), FANOUT_CONNS (100),
SIZE (32), WINDOW (32), IDLE_CONNS (10000), IDLE_PING (seconds, 3), HOLD
(seconds after the pings, 1), WORKERS (Mothership's
`workers`, default its own "auto"), QUICK=1 (1 round of 2 s, 2,000 idle
clients), KEEP_TMP=1. See bench/README.md.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (children, cleanup, cpu_ticks_of, free_port, live, median, pss_kb,  # noqa: E402
                      rss_kb, set_tmpdir, stop_on_signals)

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
DURATION = float(os.environ.get("DURATION", "2" if QUICK else "5"))
ECHO_CONNS = int(os.environ.get("ECHO_CONNS", "50"))
FANOUT_CONNS = int(os.environ.get("FANOUT_CONNS", "100"))
SIZE = int(os.environ.get("SIZE", "32"))
WINDOW = int(os.environ.get("WINDOW", "32"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "2000" if QUICK else "10000"))
HOLD = float(os.environ.get("HOLD", "1"))
IDLE_PING = os.environ.get("IDLE_PING", "3")    # seconds: ws_ping_interval of the idle runs
PING_S = float(IDLE_PING)
WORKERS = os.environ.get("WORKERS", "")
TARGET_KIB = 4.0
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

    def __init__(self, ms_bin, bays_dir, tag, http_extra=""):
        self.port = free_port()
        self.mport = free_port()
        d = os.path.join(tmpdir, tag)
        os.makedirs(d)
        self.log = os.path.join(d, "mothership.log")
        workers = f"workers = {WORKERS}\n" if WORKERS else ""
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
routes = ["http:/echo.*"]

[[bays.websocket]]
name = "chat"
command = "{bays_dir}/chat-bay"
routes = ["http:/chat.*"]
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
                           r"ready in|fleet ready|docked as|stopping|stopped|"
                           r"exited|shutdown|signal|SIGTERM|received|bye|drained")
        with open(self.log, errors="replace") as f:
            return [l.rstrip() for l in f if not usual.search(l)]


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


def measured(ms, load, bay, fn):
    """Run fn() (a wsload run) between two CPU readings."""
    pids = {"ms": (ms.pid, None), "main": (ms.pid, ms.pid),
            "bay": (ms.bay_pid[bay], None), "load": (load.pid, None)}
    before = {k: cpu_ticks(*p) for k, p in pids.items()}
    r = fn()
    after = {k: cpu_ticks(*p) for k, p in pids.items()}
    for k in pids:
        r[f"cpu_{k}_s"] = (after[k] - before[k]) / CLK_TCK
    return r


def add_rates(r):
    """Rate, CPU µs per message and CPU shares of a measured run; returns
    its message count."""
    n = r["messages"]
    r["rate"] = n / r["seconds"]
    r["ms_us"] = r["cpu_ms_s"] * 1e6 / max(1, n)
    r["bay_us"] = r["cpu_bay_s"] * 1e6 / max(1, n)
    r["load_pct"] = 100 * r["cpu_load_s"] / r["seconds"]
    r["ms_pct"] = 100 * r["cpu_ms_s"] / r["seconds"]
    r["main_pct"] = 100 * r["cpu_main_s"] / r["seconds"]
    return n


def run_echo(ms, wsload, issues, warm=False):
    load = Load(wsload, "echo", ms.port, "/echo", ECHO_CONNS)
    m0 = ms.metrics()
    if warm:
        load.go()
        load.close()
        return None
    r = measured(ms, load, "echo", load.go)
    m1 = ms.metrics()
    c = load.close()
    n = add_rates(r)
    for d in ("in", "out"):
        got = m1.get(("mothership_bay_messages_total", "echo", d), 0) \
            - m0.get(("mothership_bay_messages_total", "echo", d), 0)
        if got != n:
            issues.append(f"echo: Mothership counted {got:.0f} messages "
                          f"{d}, wsload {n} round trips")
    for p in problems(r) + problems(c):
        issues.append(f"echo: {p}")
    return r


def run_fanout(ms, wsload, issues, warm=False):
    load = Load(wsload, "fanout", ms.port, "/chat", FANOUT_CONNS)
    ms.wait_clients("chat", FANOUT_CONNS)   # every client boarded first
    m0 = ms.metrics()
    if warm:
        load.go()
        load.close()
        return None
    r = measured(ms, load, "chat", load.go)
    m1 = ms.metrics()
    c = load.close()
    n = add_rates(r)
    if n != r["sent"] * FANOUT_CONNS:
        issues.append(f"fan-out: {n} deliveries for {r['sent']} messages "
                      f"x {FANOUT_CONNS} clients")
    want = {"in": r["sent"], "out": n}
    for d in ("in", "out"):
        got = m1.get(("mothership_bay_messages_total", "chat", d), 0) \
            - m0.get(("mothership_bay_messages_total", "chat", d), 0)
        if got != want[d]:
            issues.append(f"fan-out: Mothership counted {got:.0f} messages "
                          f"{d}, wsload {want[d]}")
    for p in problems(r) + problems(c):
        issues.append(f"fan-out: {p}")
    return r


def run_idle(ms, wsload, issues):
    """RSS/PSS of a fresh Mothership with 0, then IDLE_CONNS idle clients."""
    warm = Load(wsload, "echo", ms.port, "/echo", 2, ["-d", "0.2"])
    warm.go()
    warm.close()
    ms.wait_clients("echo", 0)
    time.sleep(0.5)
    r = {"rss0": rss_kb(ms.pid), "pss0": pss_kb(ms.pid),
         "bay_rss0": rss_kb(ms.bay_pid["echo"])}
    load = Load(wsload, "idle", ms.port, "/echo", IDLE_CONNS)
    r["connect_s"] = load.connect_s
    ms.wait_clients("echo", IDLE_CONNS)
    time.sleep(0.5)
    # nothing sent yet, and no ping: the first comes IDLE_PING after the
    # handshake, and connecting takes well under that
    r["rss1"], r["pss1"] = rss_kb(ms.pid), pss_kb(ms.pid)
    r["bay_rss1"] = rss_kb(ms.bay_pid["echo"])
    pings0 = load.stats()["pings"]
    # then each client gets Mothership's ping and answers it (wsload does)
    deadline = time.time() + 3 * PING_S + 10
    while load.stats()["pings"] < IDLE_CONNS:
        if time.time() > deadline:
            issues.append(f"idle: only {load.stats()['pings']} pings for "
                          f"{IDLE_CONNS} clients")
            break
        time.sleep(0.2)
    time.sleep(HOLD)
    ms.check_alive()
    ms.wait_clients("echo", IDLE_CONNS)      # nobody was dropped meanwhile
    r["rss_p"], r["pss_p"] = rss_kb(ms.pid), pss_kb(ms.pid)
    r["pings_early"] = pings0
    if pings0:
        issues.append(f"idle: {pings0} pings before the first measurement "
                      "(raise IDLE_PING)")
    c = load.close()
    ms.wait_clients("echo", 0)
    time.sleep(1)
    r["rss2"], r["pss2"] = rss_kb(ms.pid), pss_kb(ms.pid)
    r["per_rss"] = (r["rss1"] - r["rss0"]) / IDLE_CONNS
    r["per_pss"] = (r["pss1"] - r["pss0"]) / IDLE_CONNS
    r["bay_per"] = (r["bay_rss1"] - r["bay_rss0"]) / IDLE_CONNS
    r["per_rss_p"] = (r["rss_p"] - r["rss0"]) / IDLE_CONNS
    r["per_pss_p"] = (r["pss_p"] - r["pss0"]) / IDLE_CONNS
    for p in problems(c):
        issues.append(f"idle: {p}")
    return r


def final_checks(ms, issues, label):
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


def main():
    global tmpdir
    if len(sys.argv) != 4:
        sys.exit("usage: bench.py MOTHERSHIP WSLOAD BAYS_DIR")
    ms_bin, wsload, bays = (os.path.abspath(a) for a in sys.argv[1:])
    stop_on_signals(grace=15)
    tmpdir = tempfile.mkdtemp(prefix="msbench-ws-")
    set_tmpdir(tmpdir)
    issues = []
    t_all = time.time()

    print(f"ws: {NCPU} CPUs (shared by Mothership, the bays and wsload), "
          f"{ROUNDS} round(s) of {DURATION:g} s, {SIZE}-byte text messages; "
          f"echo {ECHO_CONNS} clients; fan-out {FANOUT_CONNS} clients, "
          f"window {WINDOW}; idle {IDLE_CONNS} clients"
          + (f"; workers = {WORKERS}" if WORKERS else ""), flush=True)

    # --- throughput: one Mothership, echo and fan-out alternating
    ms = Mothership(ms_bin, bays, "main")
    run_echo(ms, wsload, issues, warm=True)
    run_fanout(ms, wsload, issues, warm=True)
    echo, fan = [], []
    for rnd in range(ROUNDS):
        order = [("echo", run_echo, echo), ("fanout", run_fanout, fan)]
        if rnd % 2:
            order.reverse()
        for _name, fn, acc in order:
            acc.append(fn(ms, wsload, issues))
            ms.check_alive()
        print(f"  round {rnd + 1}/{ROUNDS}: echo {echo[-1]['rate']:,.0f} "
              f"round trips/s, fan-out {fan[-1]['rate']:,.0f} deliveries/s",
              flush=True)
    ms_rss_after = (rss_kb(ms.pid), pss_kb(ms.pid))
    final_checks(ms, issues, "throughput run")

    # --- idle memory: a fresh Mothership each round
    idle = []
    for rnd in range(ROUNDS):
        ims = Mothership(ms_bin, bays, f"idle{rnd}", http_extra=(
            f'ws_ping_interval = "{IDLE_PING}s"\n'
            f'ws_idle_timeout = "{max(10.0, 5 * PING_S):g}s"\n'))
        idle.append(run_idle(ims, wsload, issues))
        final_checks(ims, issues, f"idle round {rnd + 1}")
        r = idle[-1]
        print(f"  idle round {rnd + 1}/{ROUNDS}: {r['per_rss']:.2f} KiB RSS, "
              f"{r['per_pss']:.2f} KiB PSS per client; after a ping "
              f"{r['per_rss_p']:.2f} / {r['per_pss_p']:.2f}", flush=True)

    # --- tables
    def row(rs, key, f):
        v = [r[key] for r in rs]
        return f(median(v)), f(min(v)), f(max(v))

    print()
    print(f"### echo: {ECHO_CONNS} clients, one {SIZE}-byte message in "
          "flight each (medians of the rounds, min-max)")
    print()
    print("| round trips/s | p50 | p99 | Mothership CPU µs/round trip | "
          "bay CPU µs/round trip | Mothership CPU (main thread) | wsload CPU |")
    print("|---|---|---|---|---|---|---|")
    rate = row(echo, "rate", lambda x: f"{x:,.0f}")
    print(f"| {rate[0]} ({rate[1]}-{rate[2]}) "
          f"| {fmt_us(median([r['p50_us'] for r in echo]))} "
          f"| {fmt_us(median([r['p99_us'] for r in echo]))} "
          f"| {median([r['ms_us'] for r in echo]):.2f} "
          f"| {median([r['bay_us'] for r in echo]):.2f} "
          f"| {median([r['ms_pct'] for r in echo]):.0f} % of a core "
          f"({median([r['main_pct'] for r in echo]):.0f} %) "
          f"| {median([r['load_pct'] for r in echo]):.0f} % |")

    print()
    print(f"### fan-out: {FANOUT_CONNS} clients on the chat bay, one sender, "
          f"at most {WINDOW} messages ahead of the slowest receiver")
    print()
    print("| deliveries/s | messages sent/s | delivery p50 | p99 | "
          "Mothership CPU µs/delivery | bay CPU µs/delivery | Mothership CPU "
          "(main thread) | wsload CPU |")
    print("|---|---|---|---|---|---|---|---|")
    rate = row(fan, "rate", lambda x: f"{x:,.0f}")
    print(f"| {rate[0]} ({rate[1]}-{rate[2]}) "
          f"| {median([r['sent'] / r['seconds'] for r in fan]):,.0f} "
          f"| {fmt_us(median([r['p50_us'] for r in fan]))} "
          f"| {fmt_us(median([r['p99_us'] for r in fan]))} "
          f"| {median([r['ms_us'] for r in fan]):.2f} "
          f"| {median([r['bay_us'] for r in fan]):.2f} "
          f"| {median([r['ms_pct'] for r in fan]):.0f} % of a core "
          f"({median([r['main_pct'] for r in fan]):.0f} %) "
          f"| {median([r['load_pct'] for r in fan]):.0f} % |")

    print()
    print(f"### idle clients: Mothership's memory with {IDLE_CONNS:,} idle "
          f"clients on the echo bay (a fresh Mothership per round; target "
          f"<= {TARGET_KIB:g} KiB per client)")
    print()
    print("| round | RSS (PSS), 0 clients | with the clients | KiB/client "
          "RSS (PSS) | after one ping each | KiB/client RSS (PSS) | RSS once "
          "they left | connect time | echo bay KiB/client |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(idle):
        print(f"| {i + 1} | {r['rss0'] / 1024:.1f} MB ({r['pss0'] / 1024:.1f}) "
              f"| {r['rss1'] / 1024:.1f} MB ({r['pss1'] / 1024:.1f}) "
              f"| {r['per_rss']:.2f} ({r['per_pss']:.2f}) "
              f"| {r['rss_p'] / 1024:.1f} MB ({r['pss_p'] / 1024:.1f}) "
              f"| {r['per_rss_p']:.2f} ({r['per_pss_p']:.2f}) "
              f"| {r['rss2'] / 1024:.1f} MB | {r['connect_s']:.2f} s "
              f"| {r['bay_per']:.2f} |")
    per_rss = median([r["per_rss"] for r in idle])
    per_pss = median([r["per_pss"] for r in idle])
    per_rss_p = median([r["per_rss_p"] for r in idle])
    per_pss_p = median([r["per_pss_p"] for r in idle])
    print(f"| median | | | **{per_rss:.2f} ({per_pss:.2f})** | "
          f"| **{per_rss_p:.2f} ({per_pss_p:.2f})** | | | |")
    print()

    def verdict(*xs):
        return "within" if max(xs) <= TARGET_KIB else "OVER"
    print(f"idle memory per client, handshake done and nothing sent: "
          f"{per_rss:.2f} KiB RSS, {per_pss:.2f} KiB PSS: "
          f"{verdict(per_rss, per_pss)} the {TARGET_KIB:g} KiB target")
    print(f"the same clients once each has had one ping (ws_ping_interval = "
          f"{IDLE_PING}s here, 30s by default): {per_rss_p:.2f} KiB RSS, "
          f"{per_pss_p:.2f} KiB PSS: {verdict(per_rss_p, per_pss_p)} the "
          f"target")
    print(f"Mothership after the throughput rounds: RSS "
          f"{ms_rss_after[0] / 1024:.1f} MB, PSS {ms_rss_after[1] / 1024:.1f} MB")
    print()
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
