#!/usr/bin/env bash
# scripts/fuzz.sh BUILD SECONDS: run every libFuzzer target in BUILD/tests/fuzz
# for SECONDS each, starting from its seed corpus (tests/fuzz/corpus/<name>),
# with new inputs kept in a scratch copy. Fails on any crash, leak or timeout.
# (make test's smoke run, in run_tests.py, finds the seeds the same way.)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
secs=${2:-30}
status=0
for t in "$build"/tests/fuzz/fuzz_*; do
  { [ -f "$t" ] && [ -x "$t" ]; } || continue
  name=$(basename "$t")
  seeds=tests/fuzz/corpus/${name#fuzz_}
  [ -d "$seeds" ] || seeds=tests/fuzz/corpus/$(echo "${name#fuzz_}" | cut -d_ -f1)
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "==> $name for ${secs}s (seeds: $seeds)"
  if ! "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$work/" "$work" 2>"$work.log"; then
    tail -n 40 "$work.log"
    echo "FAIL $name: artifacts in $work"
    status=1
  else
    grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$work.log" | tail -n 1 || true
    rm -rf "$work"
  fi
  rm -f "$work.log"
done
exit $status
