#!/usr/bin/python3
"""Run every test suite of Mothership and add up the results.

Usage: run_tests.py BUILD [FUZZ_BUILD]

Suites: the cmocka unit tests (each binary in BUILD/tests/unit), the TOML
conformance suite (toml-test, via BUILD/toml-test-decoder), the WebAssembly
spec tests, the pytest integration tests (which run the real
BUILD/mothership), and a smoke run of each libFuzzer target in
FUZZ_BUILD/tests/fuzz on its seed corpus (one pass per target). The two
conformance suites live in ../shared, next to the clone: without it they are
reported as skipped, one line each. Each suite prints its own report; the
last line is the total, "N passed, N failed". Exit status 1 if anything
failed or a suite could not run.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
FUZZ_SECONDS = 3     # of fuzzing per target, after its whole seed corpus has run
FUZZ_DEADLINE = 120  # a target still running after this many seconds has hung


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


def fuzz_seeds(name):
    """The seed corpus of fuzz_<name>: tests/fuzz/corpus/<name>, else the
    corpus of its first word (fuzz_wasm_run -> corpus/wasm), as fuzz.sh."""
    corpus = os.path.join(ROOT, "tests", "fuzz", "corpus")
    for d in (name, name.split("_")[0]):
        if os.path.isdir(os.path.join(corpus, d)):
            return os.path.join(corpus, d)
    return None


def fuzz_smoke(fuzz_build):
    """Run each fuzz target on a scratch copy of its seed corpus (every seed
    once, then FUZZ_SECONDS of fuzzing). Returns (passed, failed), or a
    reason string when there is nothing to run."""
    fdir = os.path.join(fuzz_build, "tests", "fuzz")
    targets = sorted(f for f in os.listdir(fdir) if f.startswith("fuzz_")
                     and os.path.isfile(os.path.join(fdir, f))
                     and os.access(os.path.join(fdir, f), os.X_OK)) if os.path.isdir(fdir) else []
    if not targets:
        why = "clang is not installed" if not shutil.which("clang") else "not built: make fuzz-targets"
        return f"no fuzz targets in {fuzz_build}/tests/fuzz ({why})"
    env = dict(os.environ, UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    passed = failed = 0
    for t in targets:
        name = t[len("fuzz_"):]
        seeds = fuzz_seeds(name)
        work = tempfile.mkdtemp(prefix=f"ms-fuzz-{name}-")
        nseeds = 0
        if seeds:
            shutil.copytree(seeds, work, dirs_exist_ok=True)
            nseeds = len(os.listdir(work))
        cmd = [os.path.join(fdir, t), f"-max_total_time={FUZZ_SECONDS}", "-timeout=10",
               "-rss_limit_mb=2048", "-max_len=65536", f"-artifact_prefix={work}/", work]
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               cwd=ROOT, text=True, errors="replace", timeout=FUZZ_DEADLINE)
            rc, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            rc = None
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        took = time.monotonic() - start
        done = re.findall(r"^Done (\d+) runs", out, re.M)
        if rc == 0 and re.search(r"^#\d+\s+INITED", out, re.M):
            passed += 1
            print(f"fuzz smoke: {t}: ok, {nseeds} seeds, {done[-1] if done else '?'} runs in {took:.1f}s",
                  flush=True)
            shutil.rmtree(work, ignore_errors=True)
        else:
            failed += 1
            sys.stdout.write("\n".join(out.splitlines()[-40:]) + "\n")
            what = f"hung for {FUZZ_DEADLINE}s" if rc is None else f"exit status {rc}"
            print(f"FAIL fuzz smoke: {t}: {what}; seeds and artifacts in {work}", flush=True)
    return passed, failed


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    fuzz_build = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
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

    # 5. fuzz targets: a smoke run on their seed corpora
    if fuzz_build:
        print(f"==> fuzz smoke: each target in {fuzz_build}/tests/fuzz on its corpus, then {FUZZ_SECONDS}s",
              flush=True)
        r = fuzz_smoke(fuzz_build)
        if isinstance(r, str):
            skipped.append(f"fuzz smoke: {r}")
        else:
            total_p += r[0]
            total_f += r[1]
    else:
        skipped.append("fuzz smoke: no fuzz build given (make test passes build-fuzz)")

    for s in skipped:
        print("skipped: " + s)
    if broken:
        print("suites that did not run cleanly: " + ", ".join(broken))
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
