#!/usr/bin/python3
"""bench/compress/bench.py MOTHERSHIP - what each content-coding costs and
gains when Mothership compresses on the fly: identity, gzip, br and zstd,
side by side in one run, alternating codings round by round.

Mothership (1 worker, `compression = true`) serves two static files built
from this tree's docs: a 128 KiB HTML page and an 8 KiB JSON document, both
compressed on the fly by compress.c (the same streaming compressors that
proxied and bay responses go through). wrk (1 thread, CONNS connections,
`Accept-Encoding: <coding>`) drives each coding; the table gives the median
over ROUNDS rounds of responses/s, p50/p99, Mothership's CPU per response
(utime + stime from /proc/PID/stat), the bytes on the wire per response and
the ratio to the plain file, the input it compresses per CPU second, and the
CPU per response as a ratio against gzip. Every figure is also printed as
one JSON object on a line of its own (bench/README.md, "Figures as JSON").

Environment: ROUNDS (default 3), DURATION (seconds per wrk run, default 3),
CONNS (default 8: compression is CPU-bound, more connections only queue),
QUICK=1 (ROUNDS=1, DURATION=1: a smoke run). See bench/README.md.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import (cleanup, cpu_ticks_of, emit, free_port, median, set_tmpdir, spawn,  # noqa: E402
                      stop_on_signals, wait_until)

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "3"))
DURATION = int(os.environ.get("DURATION", "1" if QUICK else "3"))
CONNS = int(os.environ.get("CONNS", "8"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
CODINGS = ["identity", "gzip", "br", "zstd"]
TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRK_LUA = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    "WRK {\"requests\":%d,\"duration_us\":%d,\"p50\":%.1f,\"p99\":%.1f,\"errors\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
"""


def corpus():
    """Deterministic text from this tree's docs: an HTML page and a JSON one."""
    docs = os.path.join(TREE, "docs")
    text = b""
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md"):
            with open(os.path.join(docs, name), "rb") as f:
                text += f.read()
    paras = [p for p in text.split(b"\n\n") if p.strip()]
    html, i = b"<!doctype html><html><body>\n", 0
    while len(html) < 128 << 10:
        html += b'<div class="para" id="p%d"><p>%s</p></div>\n' % (i, paras[i % len(paras)])
        i += 1
    items, i = [], 0
    while sum(len(x) for x in items) < 8 << 10:
        line = paras[i % len(paras)].split(b"\n")[0][:120].decode("utf-8", "replace")
        items.append(json.dumps({"id": i, "title": line, "done": i % 3 == 0}).encode())
        i += 1
    return {"page.html": html[:128 << 10], "api.json": b"[" + b",\n".join(items) + b"]"}


def fetch_size(port, path, coding):
    """Bytes of the body on the wire (after de-chunking) for one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers={"Accept-Encoding": coding})
        r = c.getresponse()
        body = r.read()
        got = r.getheader("Content-Encoding") or "identity"
        if r.status != 200 or got != coding:
            raise RuntimeError(f"{path} with {coding}: status {r.status}, Content-Encoding {got}")
        return len(body)
    finally:
        c.close()


def run_wrk(tmpdir, url, coding):
    argv = ["wrk", "-t", "1", "-c", str(CONNS), "-d", f"{DURATION}s", "-s", f"{tmpdir}/report.lua",
            "-H", f"Accept-Encoding: {coding}", url]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=DURATION + 30)
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("WRK "):
            return json.loads(line[4:])
    raise RuntimeError(f"wrk gave no figures for {url}:\n{r.stdout.decode('utf-8', 'replace')}")




def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench.py MOTHERSHIP")
    ms_bin = os.path.abspath(sys.argv[1])
    tmpdir = tempfile.mkdtemp(prefix="ms-bench-compress-")
    set_tmpdir(tmpdir)
    stop_on_signals()
    try:
        www = os.path.join(tmpdir, "www")
        os.makedirs(www)
        files = corpus()
        for name, data in files.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(data)
        with open(os.path.join(tmpdir, "report.lua"), "w") as f:
            f.write(WRK_LUA)
        port = free_port()
        with open(os.path.join(tmpdir, "mothership.toml"), "w") as f:
            f.write(f"""[mothership]
workers = 1
compression = true
socket_dir = "{tmpdir}/run"

[mothership.bind]
files = "127.0.0.1:{port}"

[[mothership.static_dirs]]
path = "{www}"
prefix = "/"
bind = "files"
""")
        log = os.path.join(tmpdir, "mothership.log")
        ms = spawn([ms_bin, "run", "-c", f"{tmpdir}/mothership.toml"], log)

        def up():
            try:
                fetch_size(port, "/api.json", "identity")
                return True
            except (OSError, RuntimeError, http.client.HTTPException):
                return False
        wait_until(up, 15, "Mothership serving files", proc=ms, log=log)
        stat = f"/proc/{ms.pid}/stat"
        sizes = {(n, c): fetch_size(port, "/" + n, c) for n in files for c in CODINGS}
        res = {}   # (file, coding) -> {metric: [values]}
        for rnd in range(ROUNDS):
            codings = CODINGS if rnd % 2 == 0 else CODINGS[::-1]
            for name in files:
                for coding in codings:
                    t0 = cpu_ticks_of(stat)
                    w = run_wrk(tmpdir, f"http://127.0.0.1:{port}/{name}", coding)
                    ticks = cpu_ticks_of(stat) - t0
                    n = max(1, w["requests"])
                    if w["errors"]:
                        raise RuntimeError(f"wrk errors on {name} {coding}: {w}")
                    cpu_us = ticks / CLK_TCK * 1e6 / n
                    r = res.setdefault((name, coding), {"rps": [], "p50": [], "p99": [], "cpu": [], "mbs": []})
                    r["rps"].append(n / (w["duration_us"] / 1e6))
                    r["p50"].append(w["p50"])
                    r["p99"].append(w["p99"])
                    r["cpu"].append(cpu_us)
                    r["mbs"].append(len(files[name]) / cpu_us if cpu_us > 0 else 0.0)
        print(f"\nOn-the-fly compression, Mothership 1 worker, wrk 1 thread x {CONNS} connections, "
              f"{ROUNDS} round(s) of {DURATION}s (medians)")
        print(f"{'file':<10} {'coding':<9} {'resp/s':>8} {'p50':>9} {'p99':>9} {'CPU/resp':>9} "
              f"{'bytes':>7} {'ratio':>6} {'in MB/CPU-s':>11} {'CPU vs gzip':>11}")
        for name in files:
            gz = median(res[(name, "gzip")]["cpu"])
            for coding in CODINGS:
                r = res[(name, coding)]
                cpu = median(r["cpu"])
                size = sizes[(name, coding)]
                ratio = size / len(files[name])
                print(f"{name:<10} {coding:<9} {median(r['rps']):>8.0f} {median(r['p50']):>7.0f}µs "
                      f"{median(r['p99']):>7.0f}µs {cpu:>7.0f}µs {size:>7} {ratio:>6.3f} "
                      f"{median(r['mbs']):>11.1f} {cpu / gz if gz else float('nan'):>10.2f}x")
                sc = f"{name}:{coding}"
                emit("compress", sc, "mothership", "responses_per_s", r["rps"], "req/s")
                emit("compress", sc, "mothership", "p50", r["p50"], "µs")
                emit("compress", sc, "mothership", "p99", r["p99"], "µs")
                emit("compress", sc, "mothership", "cpu_per_response", r["cpu"], "µs")
                emit("compress", sc, "mothership", "ratio", [ratio], "1")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
