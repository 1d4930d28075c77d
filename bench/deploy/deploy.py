#!/usr/bin/python3
"""bench/deploy/deploy.py MOTHERSHIP - a rolling restart under load, in one
run: Mothership (a ship with `instances = 2`, `mothership restart app`)
against nginx in front of two upstreams run by supervisord (`supervisorctl
restart` of one program, then of the other, with `proxy_next_upstream`),
the same application (bench/deploy/app.py, which takes BOOT seconds to
start and stops gracefully on SIGTERM) and the same wrk load.

For each target: a check (one request answered by the application), a
steady run (no deploy), then the deploy run: wrk starts, WARM seconds
later the deploy starts, TAIL seconds after it is done wrk is stopped
(SIGINT: it reports what it did until then). Figures: requests failed
(non-2xx answers and socket errors), p50/p99/max latency, req/s, how long
the deploy took, whether every process was replaced; ratios against
Mothership; then one BENCH-JSON line per figure.

Environment: CONNS (wrk connections, default 16), BOOT (the application's
start-up, seconds, default 2), WARM (1), TAIL (1), STEADY (seconds of the
steady run, default 3), CLOSE=1 (wrk sends `Connection: close`: a new
connection per request), ONLY (a comma list of mothership, nginx,
nginx-tuned), QUICK=1 (STEADY=1, WARM=0.5, TAIL=0.5, BOOT=0.5), KEEP_TMP=1.
See bench/README.md.
"""
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
from benchlib import (cleanup, emit_rows, free_port, live, read, set_tmpdir, spawn, stop,  # noqa: E402
                      stop_on_signals, wait_until)

QUICK = os.environ.get("QUICK") == "1"
CONNS = int(os.environ.get("CONNS", "16"))
BOOT = float(os.environ.get("BOOT", "0.5" if QUICK else "2"))
WARM = float(os.environ.get("WARM", "0.5" if QUICK else "1"))
TAIL = float(os.environ.get("TAIL", "0.5" if QUICK else "1"))
STEADY = int(os.environ.get("STEADY", "1" if QUICK else "3"))
CLOSE = os.environ.get("CLOSE") == "1"
ONLY = [x for x in os.environ.get("ONLY", "").split(",") if x]
INSTANCES = 2
PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "app.py")
NCPU = os.cpu_count() or 1
# supervisord's own default; the tuned peer waits past the application's
# boot, and its nginx never marks an upstream failed (max_fails=0): each
# request tries the one that is down, then the other
STARTSECS_DEFAULT = 1
STARTSECS_TUNED = int(BOOT) + 1

tmpdir = None
app_pids = set()     # every application process seen: none may outlive the run


# ------------------------------------------------------------ processes ----

def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def get(port, path="/"):
    """(status, body) of one GET, or (None, error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    except OSError as e:
        return None, str(e)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")
    except (IndexError, ValueError):
        return None, repr(data[:100])


# ------------------------------------------------------------------ wrk ----

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d," ..
    "\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_argv(port, duration):
    argv = ["wrk", "-t", "1", "-c", str(CONNS), "-d", f"{duration}s", "--timeout", "30s",
            "-s", f"{tmpdir}/report.lua"]
    if CLOSE:
        argv += ["-H", "Connection: close"]
    return argv + [f"http://127.0.0.1:{port}/"]


def wrk_result(text):
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            r["failed"] = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
            r["socket_errors"] = r["failed"] - r["status"]
            r["rps"] = r["requests"] / max(1e-9, r["duration_us"] / 1e6)
            return r
    raise RuntimeError(f"wrk gave no figures:\n{text}")


def run_wrk(port, duration):
    r = subprocess.run(wrk_argv(port, duration), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=duration + 60)
    return wrk_result(r.stdout.decode("utf-8", "replace"))


def under_load(port, deploy):
    """wrk from WARM seconds before deploy() until TAIL seconds after it;
    returns (wrk figures, seconds deploy() took, what deploy() returned)."""
    out = open(f"{tmpdir}/wrk.out", "wb")
    w = subprocess.Popen(wrk_argv(port, 3600), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    live.append(w)
    try:
        time.sleep(WARM)
        t0 = time.monotonic()
        what = deploy()
        took = time.monotonic() - t0
        time.sleep(TAIL)
    finally:
        w.send_signal(signal.SIGINT)
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(5)
        live.remove(w)
    return wrk_result(read(f"{tmpdir}/wrk.out")), took, what


# -------------------------------------------------------------- targets ----

class Mothership:
    title = "Mothership"

    def __init__(self, binary):
        self.binary = binary
        self.base = None
        self.port = free_port()
        self.ctl_sock = os.path.join(tmpdir, "ms.ctl")
        self.log = os.path.join(tmpdir, "mothership.out")
        self.proc = None

    def ctl(self, *args, timeout=300):
        return subprocess.run([self.binary, *args, "--socket", self.ctl_sock], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def start(self):
        self.base = free_run(2 * INSTANCES)
        manifest = f"""[mothership]
workers = 1
control_socket = "{self.ctl_sock}"
shutdown_timeout = "15s"

[mothership.http]
upstream_keepalive = 32    # as nginx's `keepalive 32`

[mothership.bind]
http = "127.0.0.1:{self.port}"

[[fleet.app]]
name = "app"
command = "{PY}"
args = ["{APP}", "--port", "{{port}}", "--name", "app-{{instance}}", "--boot", "{BOOT}"]
bind = "tcp://127.0.0.1:{{port}}"
port = {self.base}
instances = {INSTANCES}
routes = ["http:/.*"]
critical = false
"""
        path = os.path.join(tmpdir, "mothership.toml")
        with open(path, "w") as f:
            f.write(manifest)
        self.proc = spawn([self.binary, "run", "-c", path], self.log)
        wait_until(lambda: "fleet ready" in read(self.log), 60 + BOOT, "mothership's fleet ready", self.proc,
                   self.log)

    def pids(self):
        r = self.ctl("status", "--json", timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"mothership status: {r.stdout}")
        doc = json.loads(r.stdout)
        return {e["name"]: e["pid"] for e in doc["entries"] if e["kind"] == "ship"}

    def deploy(self):
        r = self.ctl("restart", "app")
        return None if r.returncode == 0 else f"`mothership restart app` exited {r.returncode}: {r.stdout.strip()}"

    def stop(self):
        stop(self.proc)


class NginxSupervisord:
    def __init__(self, key, startsecs, tuned):
        self.key = key
        self.startsecs = startsecs
        self.max_fails = "max_fails=0" if tuned else ""
        self.title = (f"nginx + supervisord, tuned (startsecs = {startsecs}, max_fails=0)" if tuned else
                      f"nginx + supervisord, defaults (startsecs = {startsecs}, max_fails=1 fail_timeout=10s)")
        self.port = free_port()
        self.ports = [free_port() for _ in range(INSTANCES)]
        self.dir = os.path.join(tmpdir, key)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.sup = self.nginx = None

    def start(self):
        d = self.dir
        sock = os.path.join(d, "supervisor.sock")
        user = "user = root\n" if os.geteuid() == 0 else ""
        text = f"""[unix_http_server]
file = {sock}

[supervisord]
nodaemon = true
logfile = {d}/supervisord.log
pidfile = {d}/supervisord.pid
childlogdir = {d}
{user}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{sock}

"""
        for i, port in enumerate(self.ports):
            text += f"""[program:app_{i}]
command = {PY} {APP} --port {port} --name app-{i} --boot {BOOT}
startsecs = {self.startsecs}
stopsignal = TERM
stopwaitsecs = 15
autorestart = true
redirect_stderr = true
stdout_logfile = {d}/app_{i}.log

"""
        with open(self.conf, "w") as f:
            f.write(text)
        nuser = "user root;\n" if os.geteuid() == 0 else ""
        servers = "".join(f"        server 127.0.0.1:{p} {self.max_fails};\n" for p in self.ports)
        nginx = f"""{nuser}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx)
        self.sup = spawn(["supervisord", "-n", "-c", self.conf], os.path.join(d, "supervisord.out"))
        wait_until(lambda: all(accepts(p) for p in self.ports), 60 + BOOT, "supervisord's programs listening",
                   self.sup, os.path.join(d, "supervisord.log"))
        wait_until(lambda: self.running() == INSTANCES, 60 + self.startsecs, "supervisord's programs RUNNING",
                   self.sup, os.path.join(d, "supervisord.log"))
        self.nginx = spawn(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")], os.path.join(d, "nginx.out"))
        wait_until(lambda: accepts(self.port), 30, "nginx listening", self.nginx, os.path.join(d, "nginx.out"))

    def supervisorctl(self, *args, timeout=300):
        return subprocess.run(["supervisorctl", "-c", self.conf, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def running(self):
        out = self.supervisorctl("status", timeout=30).stdout
        return sum(1 for line in out.splitlines() if " RUNNING " in f" {line} ")

    def pids(self):
        out = {}
        for i in range(INSTANCES):
            r = self.supervisorctl("pid", f"app_{i}", timeout=30)
            out[f"app_{i}"] = int(r.stdout.strip() or 0) if r.stdout.strip().isdigit() else 0
        return out

    def deploy(self):
        # a rolling restart the way supervisord does it: one program, then
        # the next; `restart` stops it (SIGTERM, waits for the exit), starts
        # it and returns once it has stayed up `startsecs`
        for i in range(INSTANCES):
            r = self.supervisorctl("restart", f"app_{i}")
            if r.returncode != 0 or "ERROR" in r.stdout:
                return f"supervisorctl restart app_{i}: {r.stdout.strip()}"
        return None

    def stop(self):
        for p in (self.nginx, self.sup):
            if p is not None:
                stop(p)


def free_run(n):
    """A base port with n consecutive free ports, below the ephemeral range
    (wrk's and the proxies' own connections use that)."""
    import random
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no run of free ports")


# ------------------------------------------------------------------ run ----

def measure(t):
    """Start t, check it, a steady run, the deploy run, stop it."""
    t.start()
    try:
        status, body = get(t.port)
        if status != 200 or not body.startswith("hello from app-"):
            raise RuntimeError(f"the check failed: {status} {body[:200]!r}")
        run_wrk(t.port, 1)                      # warm-up: pools, caches
        steady = run_wrk(t.port, STEADY)
        before = t.pids()
        app_pids.update(before.values())
        r, took, problem = under_load(t.port, t.deploy)
        after = t.pids()
        app_pids.update(after.values())
        replaced = sum(1 for k, v in before.items() if v and after.get(k) and after[k] != v)
        status, body = get(t.port)
        if status != 200:
            problem = ((problem + "; " if problem else "") + f"a request right after the deploy: {status} "
                       f"{body.splitlines()[0][:100] if body else ''}".rstrip())
        return {"steady": steady, "deploy": r, "took": took, "replaced": replaced, "problem": problem}
    finally:
        t.stop()


def fmt_ms(us):
    return "-" if us != us else f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def ratio(a, b):
    return f"{a / b:.2f}x" if b > 0 else "-"


def main():
    global tmpdir
    if len(sys.argv) != 2:
        sys.exit("usage: deploy.py MOTHERSHIP")
    binary = os.path.abspath(sys.argv[1])
    stop_on_signals(grace=20)
    tmpdir = tempfile.mkdtemp(prefix="msbench-deploy-")
    set_tmpdir(tmpdir)
    os.chmod(tmpdir, 0o755)
    with open(os.path.join(tmpdir, "report.lua"), "w") as f:
        f.write(WRK_LUA)

    targets = [("mothership", lambda: Mothership(binary)),
               ("nginx", lambda: NginxSupervisord("nginx", STARTSECS_DEFAULT, False)),
               ("nginx-tuned", lambda: NginxSupervisord("nginx-tuned", STARTSECS_TUNED, True))]
    peers = shutil.which("nginx") and shutil.which("supervisord") and shutil.which("supervisorctl")
    print(f"deploy: {NCPU} CPUs, wrk -t1 -c{CONNS}{' with Connection: close' if CLOSE else ''}, "
          f"{INSTANCES} instances of an application that boots in {BOOT:g} s, deploy run = {WARM:g} s + the "
          f"deploy + {TAIL:g} s, steady run {STEADY} s", flush=True)
    results = {}
    for key, make in targets:
        if ONLY and key not in ONLY:
            continue
        if key != "mothership" and not peers:
            print(f"deploy: {key} skipped: nginx or supervisord not installed (DEPS_BENCH=1 scripts/deps.sh)")
            continue
        t = make()
        try:
            results[key] = (t.title, measure(t))
        except Exception as e:    # noqa: BLE001 - one target failing is reported, the others run
            print(f"deploy: {t.title} FAILED: {e}", flush=True)
        else:
            print(f"  {t.title} done", flush=True)

    print()
    print("### rolling restart under load")
    print()
    print("| target | deploy took | processes replaced | requests | failed (non-2xx, socket) | req/s | p50 | p99 "
          "| p99.9 | max | steady p99 | steady req/s |")
    print("|" + "---|" * 12)
    for key, (title, m) in results.items():
        r, s = m["deploy"], m["steady"]
        print(f"| {title} | {m['took']:.2f} s | {m['replaced']}/{INSTANCES} | {r['requests']} | {r['failed']} "
              f"({r['status']}, {r['socket_errors']}) | {r['rps']:.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} "
              f"| {fmt_ms(r['p999'])} | {fmt_ms(r['max'])} | {fmt_ms(s['p99'])} | {s['rps']:.0f} |")
    for key, (title, m) in results.items():
        if m["problem"]:
            print(f"\n{title}: {m['problem']}")
    if "mothership" in results:
        m = results["mothership"][1]["deploy"]
        for key, (title, x) in results.items():
            if key == "mothership":
                continue
            r = x["deploy"]
            print(f"\n{title} / Mothership: failed {r['failed']} vs {m['failed']}"
                  f" ({ratio(r['failed'], m['failed'])}), p99 {ratio(r['p99'], m['p99'])},"
                  f" max {ratio(r['max'], m['max'])}, req/s {ratio(r['rps'], m['rps'])}")

    for key, (title, m) in results.items():
        r = dict(m["deploy"], took=m["took"], not_replaced=INSTANCES - m["replaced"],
                 steady_p99=m["steady"]["p99"], steady_rps=m["steady"]["rps"])
        emit_rows("deploy", "rolling restart" + (" close" if CLOSE else ""), key, [r], FIGURES)


# the figures printed as BENCH-JSON lines (benchlib.emit_rows)
FIGURES = [("failed_requests", "failed", "requests"), ("non_2xx", "status", "requests"),
           ("socket_errors", "socket_errors", "requests"), ("p50", "p50", "µs"),
           ("p99", "p99", "µs"), ("p999", "p999", "µs"), ("max", "max", "µs"),
           ("rps", "rps", "req/s"), ("deploy_time", "took", "s"),
           ("not_replaced", "not_replaced", "processes"), ("steady_p99", "steady_p99", "µs"),
           ("steady_rps", "steady_rps", "req/s")]


def leftovers():
    """SIGKILL any application process still alive (a supervisor killed
    before it could stop its children)."""
    for pid in app_pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if APP.encode() not in f.read():
                    continue
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    try:
        main()
    except Exception as e:    # noqa: BLE001 - report and clean up
        try:
            print(f"deploy: {e}", file=sys.stderr)
        except OSError:
            pass
        sys.exit(1)
    finally:
        cleanup(grace=20)
        leftovers()
