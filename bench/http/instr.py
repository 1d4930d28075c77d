#!/usr/bin/python3
"""bench/http/instr.py MOTHERSHIP [BASE] - user-space instructions per
proxied request, counted by callgrind: Mothership (and BASE, another build
of it, for an A/B) against nginx, each with 1 worker, keep-alive, proxying
a backend nginx (`return 200 "hello"`) over a TCP and a Unix-socket
upstream, driven by wrk (1 thread, 10 connections) for DURATION seconds (default 8)
each.

Why: wall-clock CPU figures on a shared 2-core machine are noisy, and the
hardware counters of `perf stat -e instructions:u` are not there in every
VM; callgrind counts every user-space instruction (the server's own, its
libraries', libc's) the same way whatever else runs. It runs the server
some 50 times slower, so the counts are per request, not per second: the
user-space part of the CPU per request, the part the kernel's floor does
not hide. The counters are zeroed after a warm-up and read once the wrk
run is over (callgrind_control), so start-up is not counted.

Prints one line per server and upstream, the ratio against nginx, and the
top functions of Mothership's profile with PROFILE=1. Needs valgrind,
nginx (DEPS_BENCH=1 scripts/deps.sh), wrk.
"""
import glob
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import cleanup, free_port, set_tmpdir, spawn, stop_on_signals  # noqa: E402

DURATION = int(os.environ.get("DURATION", "8"))
PROFILE = os.environ.get("PROFILE") == "1"
VG = ["valgrind", "--tool=callgrind", "--dump-instr=no"]


def nginx_common(tmp, name):
    user = "user root;\n" if os.geteuid() == 0 else ""
    for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(f"{tmp}/{name}-{t}", exist_ok=True)
    return (f"{user}pid {tmp}/{name}.pid;\nerror_log {tmp}/{name}.err warn;\n"
            "events { worker_connections 4096; }\ndaemon off; master_process off; worker_processes 1;\n"
            f"http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {tmp}/{name}-body;\n"
            f"  proxy_temp_path {tmp}/{name}-proxy; fastcgi_temp_path {tmp}/{name}-fastcgi;\n"
            f"  uwsgi_temp_path {tmp}/{name}-uwsgi; scgi_temp_path {tmp}/{name}-scgi;\n")


def wait_port(port, proc, what):
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)


def count(tmp, proc, port):
    """Ir per request of proc during a wrk run; the profile file."""
    lua = f"{tmp}/count.lua"
    with open(lua, "w") as f:
        f.write('done = function(s, l, r) io.write(string.format("REQS %d\\n", s.requests)) end\n')
    wrk = ["wrk", "-t1", "-c10", "-s", lua, f"http://127.0.0.1:{port}/"]
    subprocess.run(wrk[:3] + ["-d2s"] + wrk[3:], stdout=subprocess.DEVNULL, check=True)  # warm-up
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    out = subprocess.run(wrk[:3] + [f"-d{DURATION}s"] + wrk[3:], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    reqs = int([x for x in out.splitlines() if x.startswith("REQS ")][0].split()[1])
    deadline = time.time() + 30
    while True:
        files = [f for f in glob.glob(f"{tmp}/cg.{proc.pid}*") if os.path.getsize(f) > 0]
        if files:
            break
        if time.time() > deadline:
            raise RuntimeError("callgrind wrote no profile")
        time.sleep(0.2)
    path = max(files, key=os.path.getmtime)
    time.sleep(0.5)  # written whole
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return total / max(reqs, 1), path


def run_one(what, up):
    """(Ir per request, profile) of one server proxying over up."""
    tmp = tempfile.mkdtemp(prefix="msbench-instr-")
    set_tmpdir(tmp)
    os.chmod(tmp, 0o755)
    try:
        bport, port, other = free_port(), free_port(), free_port()
        sock = f"{tmp}/be.sock"
        with open(f"{tmp}/be.conf", "w") as f:
            f.write(nginx_common(tmp, "be") + f"  server {{ listen 127.0.0.1:{bport} backlog=4096;"
                    f" listen unix:{sock} backlog=4096; location / {{ return 200 \"hello\"; }} }} }}\n")
        vg = VG + [f"--callgrind-out-file={tmp}/cg.%p"]
        if what == "nginx":
            spawn(["nginx", "-p", tmp, "-c", f"{tmp}/be.conf"], f"{tmp}/be.out")
            ups = f"unix:{sock}" if up == "unix" else f"127.0.0.1:{bport}"
            with open(f"{tmp}/ng.conf", "w") as f:
                f.write(nginx_common(tmp, "ng") + f"  upstream be {{ server {ups}; keepalive 64;"
                        " keepalive_requests 1000000; }\n"
                        f"  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_pass http://be;"
                        " proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }\n")
            p = spawn(vg + ["nginx", "-p", tmp, "-c", f"{tmp}/ng.conf"], f"{tmp}/ng.out")
        else:
            tcp_port, unix_port = (port, other) if up == "tcp" else (other, port)
            with open(f"{tmp}/ms.toml", "w") as f:
                f.write(f"""[mothership]
workers = 1
socket_dir = "{tmp}/sockets"

[mothership.http]
upstream_keepalive = 64

[mothership.bind]
tcpup = "127.0.0.1:{tcp_port}"
unixup = "127.0.0.1:{unix_port}"

[[fleet.backend]]
name = "backend"
command = "nginx"
args = ["-p", "{tmp}", "-c", "{tmp}/be.conf"]
bind = "127.0.0.1:{bport}"
routes = ["tcpup:/.*"]

[[fleet.backend]]
name = "backend-unix"
command = "sleep"
args = ["100000"]
bind = "unix://{sock}"
routes = ["unixup:/.*"]
""")
            p = spawn(vg + [what, "run", "-c", f"{tmp}/ms.toml"], f"{tmp}/ms.out")
        wait_port(port, p, what)
        if what != "nginx":  # the backend too: Mothership starts it
            deadline = time.time() + 120
            while "fleet ready" not in open(f"{tmp}/ms.out", errors="replace").read():
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mothership did not get ready")
                time.sleep(0.2)
        ir, path = count(tmp, p, port)
        report = None
        if PROFILE and what != "nginx":
            report = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=90", path],
                                    stdout=subprocess.PIPE, text=True).stdout
        return ir, report
    finally:
        cleanup()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: instr.py BUILD|MOTHERSHIP [BASE_BUILD|BASE_MOTHERSHIP]")
    stop_on_signals()
    def binary(arg):  # a build directory (as the other benches take) or the binary itself
        path = os.path.abspath(arg)
        return os.path.join(path, "mothership") if os.path.isdir(path) else path

    builds = [("mothership", binary(sys.argv[1]))]
    if len(sys.argv) == 3:
        builds.append(("base", binary(sys.argv[2])))
    print(f"http instr: callgrind, wrk -t1 -c10 -d{DURATION}s, keep-alive, 1 worker each; "
          "user-space instructions per proxied request\n")
    print("| upstream | server | instructions/req | vs nginx |")
    print("|---|---|---|---|")
    for up in ("tcp", "unix"):
        ng, _ = run_one("nginx", up)
        for name, path in builds:
            ir, report = run_one(path, up)
            print(f"| {up} | {name} | {ir:.0f} | {ir / ng:.2f}x |", flush=True)
            if report:
                print("\n".join(report.splitlines()[20:50]))
        print(f"| {up} | nginx | {ng:.0f} | - |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report and clean up
        print(f"http instr: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        cleanup()
