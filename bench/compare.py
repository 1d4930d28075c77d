#!/usr/bin/python3
"""bench/compare.py OLD NEW - the change of every figure between two bench
runs. OLD and NEW are files holding a run's figures: either the output of
the benches (the lines starting "BENCH-JSON ", the rest is ignored) or the
file a run wrote with BENCH_JSON=path (one JSON object a line). A figure is
identified by (bench, scenario, server, metric); when a run has the same one
twice, the last wins. Prints one line per figure: old and new value, the
change in per cent, and "better"/"worse" when the change is larger than the
old run's own spread between rounds (min-max) and than NOISE per cent
(default 5): rates (units ending in "/s") are better higher, everything
else (latency, CPU, memory) lower. Figures in only one run are listed at the
end. Exit status 0; 2 on unreadable input. See bench/README.md."""
import json
import os
import sys

NOISE = float(os.environ.get("NOISE", "5"))
PREFIX = "BENCH-JSON "


def load(path):
    figs = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith(PREFIX):
                    line = line[len(PREFIX):]
                elif not line.startswith("{"):
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(d, dict) or not isinstance(d.get("value"), (int, float)):
                    continue
                key = tuple(str(d.get(k, "")) for k in ("bench", "scenario", "server", "metric"))
                figs[key] = d
    except OSError as e:
        sys.exit(f"compare: {path}: {e.strerror}")
    return figs


def fmt(v):
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def verdict(old, new, unit):
    o, n = old["value"], new["value"]
    if o == 0:
        return ""
    change = (n - o) / abs(o) * 100
    spread = 0.0
    if isinstance(old.get("min"), (int, float)) and isinstance(old.get("max"), (int, float)):
        spread = (old["max"] - old["min"]) / abs(o) * 100
    if abs(change) <= max(NOISE, spread):
        return "~"
    higher_better = str(unit).endswith("/s")
    return "better" if (change > 0) == higher_better else "worse"


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        sys.exit(2)
    old, new = load(sys.argv[1]), load(sys.argv[2])
    if not old and not new:
        print("compare: no figures in either file (BENCH-JSON lines)", file=sys.stderr)
        sys.exit(2)
    both = [k for k in new if k in old]
    print(f"{'bench':8} {'scenario':28} {'server':22} {'metric':28} "
          f"{'old':>12} {'new':>12} {'change':>8}  unit")
    counts = {"better": 0, "worse": 0, "~": 0, "": 0}
    for k in sorted(both):
        o, n = old[k], new[k]
        unit = n.get("unit", "")
        ch = "" if o["value"] == 0 else f"{(n['value'] - o['value']) / abs(o['value']) * 100:+.1f}%"
        v = verdict(o, n, unit)
        counts[v] += 1
        print(f"{k[0]:8} {k[1]:28} {k[2]:22} {k[3]:28} {fmt(o['value']):>12} "
              f"{fmt(n['value']):>12} {ch:>8}  {unit} {v}".rstrip())
    only_old = sorted(k for k in old if k not in new)
    only_new = sorted(k for k in new if k not in old)
    for label, ks in (("only in OLD", only_old), ("only in NEW", only_new)):
        if ks:
            print(f"\n{label} ({len(ks)}):")
            for k in ks:
                print("  " + " / ".join(k))
    print(f"\n{len(both)} figures in both: {counts['better']} better, "
          f"{counts['worse']} worse, {counts['~']} within noise "
          f"(NOISE={NOISE:g} % or the old run's min-max spread)")


if __name__ == "__main__":
    main()
