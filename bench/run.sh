#!/usr/bin/env bash
# bench/run.sh BUILD: run every benchmark that exists, each of which prints
# its own figures and ratios against its peers (see bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ran=0
for b in bench/*/run.sh; do
  [ -x "$b" ] || continue
  echo "==> $b"
  "$b" "$build"
  ran=1
done
[ $ran = 1 ] || echo "bench: no benchmarks are built yet"
