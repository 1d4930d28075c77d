#!/usr/bin/python3
"""bench/bays/bench.py MOTHERSHIP - an HTTP bay against a plain HTTP
upstream, in one run: the same WSGI application (bench/bays/app.py: "/"
answers "hello", "/json" a 16 KiB JSON document) served

- as an HTTP bay: `[[bays.http]]` running examples/bays/http_bay.py, the
  requests reaching it over docking v3 links;
- by gunicorn (gthread worker, the same thread count) on a Unix socket,
  a ship with `bind = "unix:///..."` behind Mothership's HTTP proxy;

the same Mothership binary and manifest settings, the same wrk load over
HTTP/1.1. For each target and path: a check (one request answered
correctly), WARM seconds of warm-up, then DURATION seconds of wrk, with
the CPU time (utime + stime from /proc/<pid>/stat) of the application's
processes (the entry's process and its children) and of Mothership read
before and after. Figures: req/s, p50, p99, CPU per request of the app and
of Mothership (microseconds), non-2xx and socket errors; the ratios
gunicorn / HTTP bay; then one BENCH-JSON line per figure.

Environment: DURATION (seconds of each measured run, default 5), WARM (1),
CONNS (wrk connections, default 16), THREADS (the app's threads, default
4), HTTP_BAY (another docking v3 bay script taking `module:app`; default
examples/bays/http_bay.py), WORKERS (Mothership's data-plane workers, default 1), ONLY (a comma
list of http-bay, gunicorn), QUICK=1 (DURATION=2, WARM=0.5), KEEP_TMP=1.
A target that cannot start or serve is reported as FAILED and the others
still run. See bench/README.md.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (children, cleanup, cpu_ticks_of, emit_rows, free_port, read,  # noqa: E402
                      set_tmpdir, spawn, stop, stop_on_signals, wait_until)

QUICK = os.environ.get("QUICK") == "1"
DURATION = int(os.environ.get("DURATION", "2" if QUICK else "5"))
WARM = float(os.environ.get("WARM", "0.5" if QUICK else "1"))
CONNS = int(os.environ.get("CONNS", "16"))
THREADS = int(os.environ.get("THREADS", "4"))
WORKERS = int(os.environ.get("WORKERS", "1"))
ONLY = [x for x in os.environ.get("ONLY", "").split(",") if x]
PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HTTP_BAY = os.environ.get("HTTP_BAY") or os.path.join(ROOT, "examples", "bays", "http_bay.py")
PATHS = [("hello", "/"), ("json16k", "/json")]
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

tmpdir = None


# ------------------------------------------------------------ processes ----

def get(port, path):
    """(status, body bytes) of one GET, or (None, error)."""
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
        return None, str(e).encode()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, data[:200]
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def cpu_seconds(pids):
    return sum(cpu_ticks_of(f"/proc/{p}/stat") for p in pids) / HZ


# ------------------------------------------------------------------ wrk ----

WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%d,\"duration_us\":%d,\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def run_wrk(port, path, duration):
    argv = ["wrk", "-t", "1", "-c", str(CONNS), "-d", f"{duration}s", "--timeout", "30s",
            "-s", os.path.join(tmpdir, "report.lua"), f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=duration + 60)
    text = r.stdout.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            w = json.loads(line[len("BENCHJSON "):])
            w["socket_errors"] = w["connect"] + w["read"] + w["write"] + w["timeout"]
            w["rps"] = w["requests"] / max(1e-9, w["duration_us"] / 1e6)
            return w
    raise RuntimeError(f"wrk gave no figures:\n{text}")


# -------------------------------------------------------------- targets ----

class Target:
    """One Mothership running the application one way."""
    key = title = None

    def __init__(self, binary):
        self.binary = binary
        self.port = free_port()
        self.dir = os.path.join(tmpdir, self.key)
        os.makedirs(self.dir)
        self.ctl_sock = os.path.join(self.dir, "ms.ctl")
        self.log = os.path.join(self.dir, "mothership.out")
        self.proc = None

    def entry(self):
        raise NotImplementedError

    def start(self):
        manifest = f"""[mothership]
workers = {WORKERS}
control_socket = "{self.ctl_sock}"
socket_dir = "{self.dir}"

[mothership.http]
upstream_keepalive = 64

[mothership.bind]
http = "127.0.0.1:{self.port}"

{self.entry()}"""
        path = os.path.join(self.dir, "mothership.toml")
        with open(path, "w") as f:
            f.write(manifest)
        self.proc = spawn([self.binary, "run", "-c", path], self.log)
        wait_until(lambda: "fleet ready" in read(self.log), 60, f"{self.title}: mothership's fleet ready",
                   self.proc, self.log)

    def app_pid(self):
        r = subprocess.run([self.binary, "status", "--json", "--socket", self.ctl_sock], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"mothership status: {r.stdout}")
        for e in json.loads(r.stdout)["entries"]:
            if e["name"] == "app" and e.get("pid"):
                return e["pid"]
        raise RuntimeError(f"no pid for the app in mothership status: {r.stdout}")

    def stop(self):
        if self.proc:
            stop(self.proc)


class HttpBay(Target):
    key, title = "http-bay", f"HTTP bay (docking v3, {os.path.basename(HTTP_BAY)})"

    def entry(self):
        return f"""[[bays.http]]
name = "app"
command = "{PY}"
args = ["{HTTP_BAY}", "app:app"]
cwd = "{HERE}"
env = {{ PYTHONPATH = "{HERE}" }}
threads = {THREADS}
routes = ["http:/.*"]
"""


class Gunicorn(Target):
    key, title = "gunicorn", "gunicorn gthread on a Unix socket, proxied"

    def entry(self):
        sock = os.path.join(self.dir, "gunicorn.sock")
        return f"""[[fleet.app]]
name = "app"
command = "{PY}"
args = ["-m", "gunicorn", "--bind", "unix:{sock}", "--workers", "1", "--worker-class", "gthread",
        "--threads", "{THREADS}", "--chdir", "{HERE}", "app:app"]
bind = "unix://{sock}"
routes = ["http:/.*"]
"""


def check(t):
    """One request of each path answered as the application answers it."""
    sys.path.insert(0, HERE)
    import app    # noqa: E402 - the application's own bodies are the reference
    want = {"/": app.HELLO, "/json": app.JSON_BODY}
    for _, path in PATHS:
        status, body = get(t.port, path)
        if status != 200 or body != want[path]:
            raise RuntimeError(f"{t.title}: GET {path} gave {status} {body[:120]!r}, not the app's 200 answer")


def measure(t):
    t.start()
    try:
        check(t)
        out = {}
        for name, path in PATHS:
            if WARM > 0:
                run_wrk(t.port, path, max(1, int(WARM + 0.999)))
            app_pids = tree(t.app_pid())        # forks and threads are up now
            a0, m0 = cpu_seconds(app_pids), cpu_seconds([t.proc.pid])
            w = run_wrk(t.port, path, DURATION)
            a1, m1 = cpu_seconds(app_pids), cpu_seconds([t.proc.pid])
            n = max(1, w["requests"])
            w["app_cpu_us"] = (a1 - a0) * 1e6 / n
            w["ms_cpu_us"] = (m1 - m0) * 1e6 / n
            w["app_processes"] = len(app_pids)
            out[name] = w
        return out
    finally:
        t.stop()


# the figures printed as BENCH-JSON lines (benchlib.emit_rows)
FIGURES = [("rps", "rps", "req/s"), ("p50", "p50", "µs"), ("p99", "p99", "µs"),
           ("app_cpu_per_request", "app_cpu_us", "µs"),
           ("mothership_cpu_per_request", "ms_cpu_us", "µs"),
           ("non_2xx", "status", "requests"), ("socket_errors", "socket_errors", "requests")]


def fmt_ms(us):
    return f"{us / 1000:.2f} ms"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def main():
    global tmpdir
    if len(sys.argv) != 2:
        sys.exit("usage: bench.py MOTHERSHIP")
    binary = os.path.abspath(sys.argv[1])
    tmpdir = tempfile.mkdtemp(prefix="ms-bench-bays-")
    set_tmpdir(tmpdir)
    stop_on_signals()
    with open(os.path.join(tmpdir, "report.lua"), "w") as f:
        f.write(WRK_LUA)
    print(f"bays: {NCPU} CPUs, wrk -t1 -c{CONNS} over HTTP/1.1, {DURATION} s per run after {WARM:g} s of warm-up, "
          f"the app with {THREADS} threads, Mothership with {WORKERS} worker(s); CPU per request from "
          f"/proc/<pid>/stat", flush=True)
    targets = [("http-bay", HttpBay), ("gunicorn", Gunicorn)]
    results, failed = {}, {}
    for key, cls in targets:
        if ONLY and key not in ONLY:
            continue
        if key == "http-bay" and not os.path.exists(HTTP_BAY):
            failed[key] = f"{HTTP_BAY} is not there yet"
            print(f"bays: {cls.title} skipped: {failed[key]}", flush=True)
            continue
        if key == "gunicorn" and subprocess.run([PY, "-c", "import gunicorn"], capture_output=True).returncode:
            failed[key] = "gunicorn is not installed (Debian: python3-gunicorn)"
            print(f"bays: {cls.title} skipped: {failed[key]}", flush=True)
            continue
        t = cls(binary)
        try:
            results[key] = (t.title, measure(t))
        except Exception as e:    # noqa: BLE001 - one target failing is reported, the others run
            failed[key] = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"bays: {t.title} FAILED: {e}", flush=True)
        else:
            print(f"  {t.title} done", flush=True)

    print()
    print("### the same WSGI app: HTTP bay vs HTTP proxy over a Unix socket")
    print()
    print("| target | path | req/s | p50 | p99 | app CPU/req | Mothership CPU/req | total CPU/req "
          "| non-2xx | socket errors |")
    print("|" + "---|" * 10)
    for key, (title, m) in results.items():
        for name, _ in PATHS:
            r = m[name]
            print(f"| {key} | {name} | {r['rps']:.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} "
                  f"| {r['app_cpu_us']:.0f} us | {r['ms_cpu_us']:.0f} us | {r['app_cpu_us'] + r['ms_cpu_us']:.0f} us "
                  f"| {r['status']} | {r['socket_errors']} |")
    for key, why in failed.items():
        print(f"\n{key}: not measured: {why}")
    if "http-bay" in results and "gunicorn" in results:
        b, g = results["http-bay"][1], results["gunicorn"][1]
        for name, _ in PATHS:
            print(f"\n{name}: gunicorn / HTTP bay: app CPU/req {ratio(g[name]['app_cpu_us'], b[name]['app_cpu_us'])}, "
                  f"Mothership CPU/req {ratio(g[name]['ms_cpu_us'], b[name]['ms_cpu_us'])}, "
                  f"req/s {ratio(g[name]['rps'], b[name]['rps'])}, p99 {ratio(g[name]['p99'], b[name]['p99'])}")

    for key, (title, m) in results.items():
        for name, _ in PATHS:
            emit_rows("bays", name, key, [m[name]], FIGURES)
    return 0 if results else 1


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    except Exception as e:    # noqa: BLE001 - report and clean up
        try:
            print(f"bays: {e}", file=sys.stderr)
        except OSError:
            pass
    finally:
        cleanup(grace=20)
    sys.exit(rc)
