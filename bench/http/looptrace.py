#!/usr/bin/python3
"""bench/http/looptrace.py TID [SECONDS]: where one event-loop thread's time
goes, iteration by iteration, from a system-wide `perf record` of
epoll_wait's entries and returns, accept4 and the scheduler's switches.

An iteration runs from epoll_wait's return to its next call. For each one:
the batch (events returned), the wall time, the part of it the thread spent
off the CPU while runnable (preempted: the kernel's doing, a neighbour's or
a woken peer's), the on-CPU rest (the loop's own work, its syscalls
included: what a fix in the program can shorten), the accepts, and the time blocked in epoll_wait before
it. A tail that lives in "off-CPU" is the scheduler's; one in "on-CPU" is
ours. Works for any epoll loop (Mothership's worker, an nginx worker,
HAProxy's thread). Needs perf and root (or perf_event_paranoid <= -1).
See bench/README.md (bench/http, "Where the tail comes from").
"""
import os
import re
import subprocess
import sys
import tempfile

EVENTS = ("syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait,"
          "syscalls:sys_enter_accept4,sched:sched_switch")
LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$")


def record(seconds, out):
    subprocess.run(["timeout", str(seconds), "perf", "record", "-q", "-a",
                    "-e", EVENTS, "-o", out],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def lost(data):
    """Events perf could not keep (its buffers overflowed: a busy machine)."""
    text = subprocess.run(["perf", "report", "-i", data, "--stats"],
                          capture_output=True, text=True).stdout
    return sum(int(m.group(1)) for m in
               re.finditer(r"^\s*LOST\s+events:\s+(\d+)", text, re.M))


def iterations(data, tid):
    """[(events, wall_us, off_us, preemptions, accepts)], [epoll_us]"""
    text = subprocess.run(["perf", "script", "-i", data],
                          capture_output=True, text=True).stdout
    its, waits = [], []
    start = enter = out_at = None
    ev = npre = nacc = 0
    off = 0.0
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m.group(2) != tid:
            continue              # events of this thread only: it is on a CPU
        t = float(m.group(4)) * 1e6
        what, rest = m.group(5), m.group(6)
        if out_at is not None:
            off += t - out_at     # it runs again: preempted until now
            out_at = None
        if what.endswith("sys_exit_epoll_wait"):
            ev = int(rest.rsplit(" ", 1)[-1], 16)
            start, off, npre, nacc = t, 0.0, 0, 0
            if enter is not None:
                waits.append(t - enter)
        elif what.endswith("sys_enter_epoll_wait"):
            enter = t
            if start is not None:
                its.append((ev, t - start, off, npre, nacc))
            start = None
        elif what.endswith("sys_enter_accept4"):
            nacc += 1
        elif what == "sched:sched_switch" and start is not None:
            if "prev_state=R" in rest:
                npre += 1
                out_at = t
    return its, waits


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def report(its, waits):
    n = len(its)
    if n == 0:
        print("no iterations seen: is the thread id right, and is it busy?")
        return
    print(f"{n} iterations")
    rows = [("events returned", [x[0] for x in its]),
            ("wall µs", [x[1] for x in its]),
            ("off-CPU µs (preempted)", [x[2] for x in its]),
            ("on-CPU µs (own work)", [x[1] - x[2] for x in its]),
            ("preemptions", [x[3] for x in its]),
            ("accepts", [x[4] for x in its]),
            ("µs in epoll_wait before", waits or [float("nan")])]
    print(f"| {'per iteration':24} | p50 | p90 | p99 | max | mean |")
    print("|---|---|---|---|---|---|")
    for name, xs in rows:
        print(f"| {name:24} | {pct(xs, 50):.1f} | {pct(xs, 90):.1f} | "
              f"{pct(xs, 99):.1f} | {max(xs):.1f} | {sum(xs) / len(xs):.2f} |")
    ev = sum(x[0] for x in its)
    on = sum(x[1] - x[2] for x in its)
    print(f"on-CPU µs per event: {on / max(1, ev):.2f}")
    top = sorted(its, key=lambda x: x[1] - x[2])[-5:]
    print("longest on-CPU iterations (events, wall µs, off-CPU µs, "
          "preemptions, accepts):",
          [(a, round(b), round(c), d, e) for a, b, c, d, e in reversed(top)])


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: looptrace.py TID [SECONDS]")
    tid = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) == 3 else 2.0
    with tempfile.TemporaryDirectory(prefix="looptrace-") as d:
        data = os.path.join(d, "perf.data")
        record(seconds, data)
        its, waits = iterations(data, tid)
        nlost = lost(data)
    report(its, waits)
    if nlost:
        print(f"perf lost {nlost} event records: an iteration that spans a "
              "loss looks longer than it was; trust the percentiles more "
              "than the maxima")


if __name__ == "__main__":
    main()
