#!/usr/bin/python3
"""Run every test suite of Mothership and add up the results.

Usage: run_tests.py BUILD

Suites: the cmocka unit tests (each binary in BUILD/tests/unit), the TOML
conformance suite (toml-test, via BUILD/toml-test-decoder), the WebAssembly
spec tests, and the pytest integration tests (which run the real
BUILD/mothership). The two conformance suites live in ../shared, next to the
clone: without it they are reported as skipped, one line each. Each suite
prints its own report; the last line is the total, "N passed, N failed".
Exit status 1 if anything failed or a suite could not run.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def run(cmd, env=None):
    print("==> " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, cwd=ROOT, text=True, errors="replace")
    sys.stdout.write(p.stdout)
    sys.stdout.flush()
    return p.returncode, p.stdout


def counts(text, passed_re, failed_re):
    p = sum(int(m) for m in re.findall(passed_re, text))
    f = sum(int(m) for m in re.findall(failed_re, text))
    return p, f


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    total_p = total_f = 0
    broken = []
    skipped = []

    # 1. unit tests (cmocka)
    unit_dir = os.path.join(build, "tests", "unit")
    units = sorted(f for f in os.listdir(unit_dir) if f.startswith("test_")
                   and os.path.isfile(os.path.join(unit_dir, f))
                   and os.access(os.path.join(unit_dir, f), os.X_OK)) if os.path.isdir(unit_dir) else []
    for u in units:
        rc, out = run([os.path.join(unit_dir, u)])
        p, f = counts(out, r"\[  PASSED  \] (\d+) test", r"\[  FAILED  \] (\d+) test\(s\), listed")
        if rc != 0 and f == 0:
            f = 1
            broken.append(u)
        total_p += p
        total_f += f

    # 2. TOML conformance (the suite lives in ../shared)
    decoder = os.path.join(build, "toml-test-decoder")
    runner = os.path.join(SHARED, "conformance", "run-toml-test")
    if not os.path.exists(runner):
        skipped.append(f"toml-test: {runner} not found (the suite lives in ../shared, next to the clone)")
    elif not os.path.exists(decoder):
        broken.append("toml-test (no toml-test-decoder in the build)")
        total_f += 1
    else:
        rc, out = run(["/usr/bin/python3", runner, "--", decoder])
        p, f = counts(out, r"(\d+) passed", r"(\d+) failed")
        total_p += p
        total_f += f
        if rc != 0 and f == 0:
            broken.append("toml-test")
            total_f += 1

    # 3. WebAssembly spec tests (the suite lives in ../shared)
    spec_runner = os.path.join(ROOT, "tests", "conformance", "run-wasm-spec.sh")
    spec_suite = os.path.join(SHARED, "conformance", "wasm-spec")
    if not os.path.isdir(spec_suite):
        skipped.append(f"wasm-spec: {spec_suite} not found (the suite lives in ../shared, next to the clone)")
    else:
        rc, out = run([spec_runner, build])
        m = re.findall(r"^wasm-spec: (\d+) passed, (\d+) failed", out, re.M)
        if m:
            total_p += int(m[-1][0])
            total_f += int(m[-1][1])
        if rc != 0 and not (m and int(m[-1][1])):
            broken.append("wasm-spec")
            total_f += 1

    # 4. integration tests (real binary, real processes)
    env = dict(os.environ, MS_BUILD=build)
    rc, out = run(["/usr/bin/python3", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                   os.path.join(ROOT, "tests", "integration")], env=env)
    tail = out.strip().splitlines()[-1] if out.strip() else ""
    p, f = counts(tail, r"(\d+) passed", r"(\d+) failed")
    _, e = counts(tail, r"$^", r"(\d+) errors?")
    total_p += p
    total_f += f + e
    if rc not in (0, 1) or (rc == 1 and f + e == 0):
        broken.append("pytest")
        total_f += 1

    for s in skipped:
        print("skipped: " + s)
    if broken:
        print("suites that did not run cleanly: " + ", ".join(broken))
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
