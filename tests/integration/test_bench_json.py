"""test_bench_json.py - the benches' machine-readable figures: benchlib.emit
prints one BENCH-JSON line per figure (and appends it to BENCH_JSON), and
bench/compare.py holds two runs' figures against each other (issue 17).
No benchmark runs here; these check the format and the comparison."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
KEYS = ["bench", "scenario", "server", "metric", "value", "unit", "rounds", "min", "max", "commit"]


def run_emit(tmp_path, *args, env=None):
    e = dict(os.environ, BENCH_COMMIT="abc123", **(env or {}))
    return subprocess.run([sys.executable, os.path.join(BENCH, "benchlib.py"), "emit", *args],
                          capture_output=True, text=True, env=e, cwd=tmp_path, timeout=30)


def test_emit_prints_one_object_with_every_key(tmp_path):
    out = tmp_path / "figs.jsonl"
    r = run_emit(tmp_path, "ws", "echo", "node-ws", "p99", "µs", "3", "1", "2",
                 env={"BENCH_JSON": str(out)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("BENCH-JSON ")
    fig = json.loads(lines[0][len("BENCH-JSON "):])
    assert list(fig) == KEYS
    assert fig == {"bench": "ws", "scenario": "echo", "server": "node-ws", "metric": "p99",
                   "value": 2.0, "unit": "µs", "rounds": 3, "min": 1.0, "max": 3.0,
                   "commit": "abc123"}
    # the same object, bare, in the BENCH_JSON file; a second figure is appended
    run_emit(tmp_path, "ws", "echo", "node-ws", "rate", "round trips/s", "5",
             env={"BENCH_JSON": str(out)})
    objs = [json.loads(x) for x in out.read_text().splitlines()]
    assert objs[0] == fig and objs[1]["metric"] == "rate" and len(objs) == 2


def test_emit_without_a_value_prints_nothing(tmp_path):
    r = run_emit(tmp_path, "ws", "echo", "x", "p50", "µs", "nan")
    assert r.returncode == 0 and r.stdout == ""


def fig(metric, value, unit, lo=None, hi=None, server="mothership"):
    return json.dumps({"bench": "http", "scenario": "keep-alive", "server": server,
                       "metric": metric, "value": value, "unit": unit, "rounds": 3,
                       "min": value if lo is None else lo, "max": value if hi is None else hi,
                       "commit": "x"})


def test_compare_marks_better_worse_and_noise(tmp_path):
    old = tmp_path / "old.log"
    new = tmp_path / "new.jsonl"
    # OLD: a bench's output (tables and BENCH-JSON lines); NEW: a BENCH_JSON file
    old.write_text("| a table | 1 |\n" + "\n".join("BENCH-JSON " + x for x in [
        fig("rps", 1000, "req/s"), fig("p99", 100, "µs"), fig("cpu", 10, "µs", 8, 12),
        fig("gone", 1, "µs")]) + "\nnot json {\n")
    new.write_text("\n".join([
        fig("rps", 1200, "req/s"),      # a rate up 20 %: better
        fig("p99", 150, "µs"),          # a latency up 50 %: worse
        fig("cpu", 11, "µs"),           # +10 %, within the old run's 8-12 spread
        fig("new", 2, "KiB")]) + "\n")
    r = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), str(old), str(new)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[3]: line for line in r.stdout.splitlines()
            if line.startswith("http ")}
    assert "+20.0%" in rows["rps"] and rows["rps"].endswith("better")
    assert "+50.0%" in rows["p99"] and rows["p99"].endswith("worse")
    assert rows["cpu"].endswith("~")
    assert "only in OLD (1):" in r.stdout and "keep-alive / mothership / gone" in r.stdout
    assert "only in NEW (1):" in r.stdout and "keep-alive / mothership / new" in r.stdout
    assert "3 figures in both: 1 better, 1 worse, 1 within noise" in r.stdout


def test_compare_refuses_files_without_figures(tmp_path):
    a = tmp_path / "a"
    a.write_text("no figures here\n")
    r = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), str(a), str(a)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no figures" in r.stderr
