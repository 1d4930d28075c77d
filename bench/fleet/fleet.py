#!/usr/bin/env python3
"""bench/fleet/fleet.py MOTHERSHIP - start N trivial ships under Mothership
and the same N programs under supervisord, alternating rounds, and print the
medians: time from exec until all N are up, the supervisor's memory while it
supervises them, and time from SIGTERM until everything is gone.

Environment: N (ships, default 100), ROUNDS (default 5), SETTLE (seconds to
wait after ready before sampling memory, default 0.5), QUICK=1 (1 round).
Every figure is also printed as a BENCH-JSON line. See bench/README.md.
"""
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import emit_rows  # noqa: E402

N = int(os.environ.get("N", "100"))
QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "1" if QUICK else "5"))
SETTLE = float(os.environ.get("SETTLE", "0.5"))
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

live = []  # Popen objects of supervisors currently running (for cleanup)


# ---------------------------------------------------------------- /proc ----

def proc_table():
    """{pid: (ppid, comm)} for every process visible now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # comm may hold spaces and parentheses: split on the last ')'
        lp, rp = data.index("("), data.rindex(")")
        comm = data[lp + 1:rp]
        ppid = int(data[rp + 2:].split()[1])
        table[int(name)] = (ppid, comm)
    return table


def descendants(root):
    """pids whose parent chain leads to root (root excluded)."""
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out, table


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Pss from smaps_rollup, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_tree(p):
    """SIGKILL a supervisor and everything below it (shims live in their
    own process groups, so a killpg of the supervisor's group is not
    enough)."""
    if p.poll() is None:
        pids, _ = descendants(p.pid)
        for pid in [p.pid] + pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()


def cleanup(*_):
    for p in list(live):
        kill_tree(p)
    live.clear()


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


# ------------------------------------------------------------ one run -----

class LineReader:
    """Line reader over a pipe with a deadline, no threads."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def lines(self, deadline):
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                yield line.decode("utf-8", "replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no ready line before the deadline")
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("supervisor output closed before ready")
            self.buf += chunk

    def drain(self):
        """Keep the pipe from filling while we measure."""
        while select.select([self.fd], [], [], 0)[0]:
            if not os.read(self.fd, 65536):
                break


def measure(name, argv, is_ready, leaf_comm, ship_filter, cwd):
    """Start argv, wait for readiness (is_ready(line, state) -> bool),
    sample memory, SIGTERM, time the stop. Returns a dict of figures."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    live.append(p)
    reader = LineReader(p.stdout.fileno())
    state = {}
    try:
        for line in reader.lines(t0 + READY_TIMEOUT):
            if is_ready(line, state):
                break
    except (TimeoutError, EOFError) as e:
        cleanup()
        sys.exit(f"fleet: {name}: {e}")
    ready_ms = (time.monotonic() - t0) * 1000.0
    # When the Nth child was reported spawned (before any readiness wait).
    spawned_ms = (state.get("spawned_at", time.monotonic()) - t0) * 1000.0

    time.sleep(SETTLE)
    reader.drain()
    pids, table = descendants(p.pid)
    leaves = [q for q in pids if table[q][1] == leaf_comm]
    middles = [q for q in pids if ship_filter(q)]
    if len(leaves) != N:
        cleanup()
        sys.exit(f"fleet: {name}: expected {N} '{leaf_comm}' processes "
                 f"below pid {p.pid}, found {len(leaves)}")
    rss = status_kb(p.pid, "VmRSS")
    pss = pss_kb(p.pid)
    mid_rss = sum(status_kb(q, "VmRSS") for q in middles)
    mid_pss = [pss_kb(q) for q in middles]
    mid_pss = None if any(x is None for x in mid_pss) else sum(mid_pss)

    # Stop: SIGTERM, then wait for the supervisor to exit and for every
    # process that was below it to be gone.
    everyone = [p.pid] + pids
    t1 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    deadline = t1 + STOP_TIMEOUT
    while True:
        reader.drain()
        if p.poll() is not None and not any(alive(q) for q in pids):
            break
        if time.monotonic() > deadline:
            cleanup()
            sys.exit(f"fleet: {name}: not stopped {STOP_TIMEOUT}s after SIGTERM")
        time.sleep(0.001)
    stop_ms = (time.monotonic() - t1) * 1000.0
    live.remove(p)
    p.stdout.close()
    if p.returncode != 0:
        sys.exit(f"fleet: {name}: exit status {p.returncode} after SIGTERM")
    leftover = [q for q in everyone if alive(q)]
    if leftover:
        sys.exit(f"fleet: {name}: processes left behind: {leftover}")
    return {"ready": ready_ms, "spawned": spawned_ms, "rss": rss, "pss": pss, "mid_rss": mid_rss,
            "mid_pss": mid_pss, "mid_n": len(middles), "stop": stop_ms}


# ------------------------------------------------------ Mothership -------

def write_manifest(d):
    path = os.path.join(d, "fleet.toml")
    with open(path, "w") as f:
        # its own socket_dir: another Mothership on the machine (the default
        # control socket /tmp/mothership/mothership.ctl) must not stop the run
        f.write("# bench/fleet: N trivial ships\n[mothership]\n"
                f'socket_dir = "{d}/run"\nshutdown_timeout = "5s"\n\n')
        for i in range(N):
            f.write(f'[[fleet.ships]]\nname = "s{i:03d}"\ncommand = "sleep"\n'
                    f'args = ["1000"]\nready_after = "0s"\ncritical = true\n\n')
    return path


def mothership_ready(line, state):
    # {"ts":...,"event":"started","msg":"ship \"s042\" started (pid 123)"}
    if '"event":"started"' in line:
        state["spawned"] = state.get("spawned", 0) + 1
        if state["spawned"] == N:
            state["spawned_at"] = time.monotonic()
    return '"event":"fleet_ready"' in line


def run_mothership(binary, d, manifest):
    binary = os.path.realpath(binary)

    def is_shim(pid):
        argv = cmdline(pid)
        return len(argv) > 1 and argv[1] == b"--ms-shim"

    return measure("mothership",
                   [binary, "run", "-c", manifest, "--log-format", "json"],
                   mothership_ready, "sleep", is_shim, d)


# ----------------------------------------------------- supervisord -------

def write_supervisord_conf(d):
    path = os.path.join(d, "supervisord.conf")
    sock = os.path.join(d, "supervisor.sock")
    with open(path, "w") as f:
        f.write(f"""[unix_http_server]
file = {sock}

[supervisord]
nodaemon = true
logfile = {d}/supervisord.log
loglevel = info
pidfile = {d}/supervisord.pid
childlogdir = {d}
user = root

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{sock}

""")
        for i in range(N):
            f.write(f"[program:s{i:03d}]\ncommand = sleep 1000\nstartsecs = 0\n"
                    "autorestart = false\nstdout_logfile = NONE\n"
                    "stderr_logfile = NONE\nstopwaitsecs = 5\n\n")
    return path


def supervisord_ready(line, state):
    # "INFO success: s042 entered RUNNING state, process has stayed up ..."
    # supervisord writes each log line to its logfile and, with nodaemon,
    # echoes it to stdout: count distinct program names.
    if "INFO spawned: '" in line:
        state.setdefault("spawned", set()).add(line.split("spawned: '", 1)[1])
        if len(state["spawned"]) == N:
            state["spawned_at"] = time.monotonic()
    if "entered RUNNING state" in line and "success: " in line:
        state.setdefault("running", set()).add(
            line.split("success: ", 1)[1].split()[0])
    return len(state.get("running", ())) >= N


def run_supervisord(d, conf, check):
    argv = [shutil.which("supervisord"), "-n", "-c", conf]
    if check:
        # Once, outside the timing: supervisorctl agrees that all N run.
        # Run in a separate start so it does not perturb the timed rounds.
        p = subprocess.Popen(argv, cwd=d, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        live.append(p)
        reader = LineReader(p.stdout.fileno())
        state = {}
        for line in reader.lines(time.monotonic() + READY_TIMEOUT):
            if supervisord_ready(line, state):
                break
        out = subprocess.run(["supervisorctl", "-c", conf, "status"],
                             capture_output=True, text=True).stdout
        running = sum(1 for l in out.splitlines() if " RUNNING " in l)
        kill_tree(p)
        live.remove(p)
        p.stdout.close()
        if running != N:
            sys.exit(f"fleet: supervisorctl status shows {running} RUNNING, "
                     f"expected {N}")

    def never(_pid):
        return False

    return measure("supervisord", argv, supervisord_ready, "sleep", never, d)


# ------------------------------------------------------------ report -----

# the figures printed as BENCH-JSON lines (benchlib.emit_rows)
FIGURES = [("start_to_ready", "ready", "ms"), ("all_spawned", "spawned", "ms"),
           ("stop", "stop", "ms"), ("rss", "rss", "KiB"), ("pss", "pss", "KiB"),
           ("shims_rss", "mid_rss", "KiB"), ("shims_pss", "mid_pss", "KiB")]


def fmt_ms(xs):
    return (f"{statistics.median(xs):8.1f} {min(xs):8.1f} {max(xs):8.1f}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fleet.py MOTHERSHIP-BINARY")
    binary = sys.argv[1]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    d = tempfile.mkdtemp(prefix="ms-bench-fleet-")
    try:
        manifest = write_manifest(d)
        conf = write_supervisord_conf(d)
        res = {"mothership": [], "supervisord": []}
        peer = shutil.which("supervisord") and shutil.which("supervisorctl")
        if not peer:
            print("fleet: supervisord not installed (DEPS_BENCH=1 "
                  "scripts/deps.sh installs it); Mothership figures only",
                  flush=True)
        for r in range(ROUNDS):
            # Alternate who goes first so neither always gets a warm cache.
            order = ["mothership", "supervisord"] if peer else ["mothership"]
            if r % 2:
                order.reverse()
            for who in order:
                if who == "mothership":
                    res[who].append(run_mothership(binary, d, manifest))
                else:
                    res[who].append(run_supervisord(d, conf, check=(r == 0)))
            line = f"round {r + 1}/{ROUNDS}:"
            for who in ("mothership", "supervisord"):
                if res[who]:
                    x = res[who][-1]
                    line += (f" {who} ready {x['ready']:.1f} ms, "
                             f"stop {x['stop']:.1f} ms;")
            print(line.rstrip(";"), flush=True)
        report(res)
        for who, rs in res.items():
            emit_rows("fleet", f"{N} ships", who, rs,
                      FIGURES if who == "mothership" else FIGURES[:5])
    finally:
        cleanup()
        shutil.rmtree(d, ignore_errors=True)


def med(rs, key):
    xs = [r[key] for r in rs]
    if any(x is None for x in xs):
        return None
    return statistics.median(xs)


def report(res):
    m, s = res["mothership"], res["supervisord"]
    both = [("mothership", m)] + ([("supervisord", s)] if s else [])
    mb = 1024.0
    print()
    print(f"fleet: {N} trivial ships (sleep 1000, ready at once), "
          f"{ROUNDS} alternating rounds, medians")
    print(f"{'':28}{'median':>8} {'min':>8} {'max':>8}")
    for name, rs in both:
        print(f"{name + ' start-to-ready ms':28}{fmt_ms([r['ready'] for r in rs])}")
    for name, rs in both:
        print(f"{name + ' all-spawned ms':28}{fmt_ms([r['spawned'] for r in rs])}")
    for name, rs in both:
        print(f"{name + ' stop ms':28}{fmt_ms([r['stop'] for r in rs])}")
    print()
    m_rss, m_pss = med(m, "rss") / mb, med(m, "pss")
    print(f"{'mothership RSS':28}{m_rss:8.1f} MB"
          + (f"   (PSS {m_pss / mb:.1f} MB)" if m_pss is not None else ""))
    shim_n = m[-1]["mid_n"]
    shim_pss = med(m, "mid_pss")
    print(f"{'  + ' + str(shim_n) + ' shims total':28}"
          f"{med(m, 'mid_rss') / mb:8.1f} MB RSS"
          + (f"   (PSS {shim_pss / mb:.1f} MB, "
             f"{shim_pss / max(shim_n, 1):.0f} kB each)"
             if shim_pss is not None else ""))
    if m_pss is not None and shim_pss is not None:
        print(f"{'  = mothership + shims':28}{(m_pss + shim_pss) / mb:8.1f} MB PSS")
    if not s:
        return
    s_rss, s_pss = med(s, "rss") / mb, med(s, "pss")
    print(f"{'supervisord RSS':28}{s_rss:8.1f} MB"
          + (f"   (PSS {s_pss / mb:.1f} MB)" if s_pss is not None else ""))
    print()
    r_ready = med(s, "ready") / med(m, "ready")
    r_stop = med(s, "stop") / med(m, "stop")
    print("ratios (supervisord / mothership):")
    print(f"  start-to-ready   {r_ready:6.1f}x")
    print(f"  all-spawned      {med(s, 'spawned') / med(m, 'spawned'):6.1f}x")
    print(f"  RSS              {s_rss / m_rss:6.1f}x   (supervisor process alone)")
    if m_pss is not None and shim_pss is not None and s_pss is not None:
        print(f"  PSS incl. shims  {s_pss / (m_pss + shim_pss):6.1f}x   "
              "(mothership + its shims vs supervisord)")
    print(f"  stop             {r_stop:6.1f}x")


if __name__ == "__main__":
    main()
