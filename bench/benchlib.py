"""benchlib.py: what the benchmark drivers (bench/*/bench.py) share: the
processes a run started (stopped by pid at exit and on SIGINT, SIGTERM and
SIGHUP), the run's temporary directory, free ports, waiting for a
condition, /proc readings, and the machine-readable figures (emit())."""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

live = []              # Popen objects to stop at exit, in start order
_tmp = {"dir": None}   # the run's temporary directory


def set_tmpdir(path):
    """Removed by cleanup() unless KEEP_TMP=1."""
    _tmp["dir"] = path


def cleanup(grace=5.0):
    """SIGTERM every process started (newest first), SIGKILL what is left
    after grace seconds, remove the temporary directory."""
    for p in reversed(live):
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.time() + grace
    for p in reversed(live):
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                p.kill()
                p.wait(2)
            except (OSError, subprocess.TimeoutExpired):
                pass
    live.clear()
    if _tmp["dir"] and os.environ.get("KEEP_TMP") != "1":
        shutil.rmtree(_tmp["dir"], ignore_errors=True)


def stop_on_signals(grace=5.0):
    def on_signal(signum, _frame):
        cleanup(grace)
        sys.exit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def spawn(argv, log):
    """Start argv in the run's temporary directory, its output in log; it is
    stopped by cleanup() unless stop() stops it first."""
    out = open(log, "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, cwd=_tmp["dir"])
    out.close()
    live.append(p)
    return p


def stop(p, timeout=30):
    """SIGTERM p (a supervisor: it stops what it runs) and wait for it."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p in live:
        live.remove(p)


def read(path):
    """A log's text, or "" when it is not there."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_until(pred, timeout, what, proc=None, log=None):
    """Poll pred until it is true; raise RuntimeError naming what (with the
    tail of log) when timeout passes or proc exits first."""
    deadline = time.monotonic() + timeout
    why = f"not within {timeout:.0f} s"
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            why = f"{os.path.basename(proc.args[0])} exited with status {proc.returncode}"
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what}: {why}" + (f"\n{read(log)[-3000:]}" if log else ""))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stat_fields(path):
    """The fields of a /proc/.../stat file after the command name (field 3
    first), or None when it is gone."""
    try:
        with open(path) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(f"/proc/{name}/stat")
            if fields and int(fields[1]) == pid:
                out.append(int(name))
    return out


def cpu_ticks_of(path, kernel_only=False):
    """utime + stime (or stime alone) from a /proc stat file, in ticks."""
    fields = stat_fields(path)
    if not fields:
        return 0
    return (0 if kernel_only else int(fields[11])) + int(fields[12])   # fields 14 and 15


def _status_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid):
    return _status_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid):
    return _status_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------- figures ----

_commit = {}


def commit():
    """The short hash of the checkout being measured (BENCH_COMMIT overrides;
    "-dirty" when the tree has changes), or "unknown"."""
    if "c" not in _commit:
        c = os.environ.get("BENCH_COMMIT")
        if not c:
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            try:
                c = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
                dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                        "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=5).stdout.strip()
                if c and dirty:
                    c += "-dirty"
            except (OSError, subprocess.SubprocessError):
                c = ""
        _commit["c"] = c or "unknown"
    return _commit["c"]


def figure(bench, scenario, server, metric, values, unit):
    """One figure as a dict: the median of values (a number or a list of the
    rounds' values; NaNs are left out), with rounds, min and max."""
    if not isinstance(values, (list, tuple)):
        values = [values]
    vs = [float(v) for v in values if v is not None and v == v]
    return {"bench": bench, "scenario": scenario, "server": server,
            "metric": metric,
            "value": round(statistics.median(vs), 6) if vs else None,
            "unit": unit, "rounds": len(vs),
            "min": round(min(vs), 6) if vs else None,
            "max": round(max(vs), 6) if vs else None,
            "commit": commit()}


def emit(bench, scenario, server, metric, values, unit):
    """Print one figure as a line "BENCH-JSON {...}" (bench/README.md, "Figures
    as JSON"), and append the bare object to the file BENCH_JSON names, if
    set. A figure without a value (no rounds) is not emitted."""
    f = figure(bench, scenario, server, metric, values, unit)
    if f["value"] is None:
        return
    line = json.dumps(f, ensure_ascii=False, sort_keys=False)
    print("BENCH-JSON " + line, flush=True)
    path = os.environ.get("BENCH_JSON")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def emit_rows(bench, scenario, server, rows, spec):
    """emit() one figure per (metric, key, unit[, scale]) of spec, from the
    rounds' dicts rows (r[key] * scale; rounds without the key, or with
    None, are left out)."""
    for item in spec:
        metric, key, unit = item[:3]
        scale = item[3] if len(item) > 3 else 1
        emit(bench, scenario, server, metric,
             [r[key] * scale for r in rows
              if isinstance(r, dict) and r.get(key) is not None], unit)


# bench/http's figures per target and scenario (its rounds' dicts)
HTTP_FIGURES = [("rps", "rps", "req/s"), ("p50", "p50", "µs"), ("p99", "p99", "µs"),
                ("cpu_per_request", "cpu_us", "µs"),
                ("kernel_cpu_per_request", "kernel_us", "µs"),
                ("user_cpu_per_request", "user_us", "µs"),
                ("backend_cpu_per_request", "backend_cpu_us", "µs"),
                ("errors", "errors", "requests")]


def emit_http(results, titles, idle, after):
    """bench/http's BENCH-JSON lines: results {(scenario index, target):
    [round dicts]}, titles the scenarios' titles, idle and after {process:
    (RSS, PSS)} at the start and after the runs."""
    for (si, target), rs in results.items():
        rows = [dict(r, user_us=r["cpu_us"] - r["kernel_us"])
                if "cpu_us" in r and "kernel_us" in r else r for r in rs]
        emit_rows("http", titles[si], target, rows, HTTP_FIGURES)
    for when, mem in (("idle", idle), ("after the runs", after)):
        for label, (rss, pss) in mem.items():
            emit("http", when, label, "rss", rss, "KiB")
            emit("http", when, label, "pss", pss, "KiB")


if __name__ == "__main__":
    # For the shell benches: benchlib.py emit BENCH SCENARIO SERVER METRIC UNIT VALUE...
    if len(sys.argv) >= 8 and sys.argv[1] == "emit":
        emit(*sys.argv[2:6], [float(v) for v in sys.argv[7:]], sys.argv[6])
    else:
        sys.exit("usage: benchlib.py emit BENCH SCENARIO SERVER METRIC UNIT VALUE...")
