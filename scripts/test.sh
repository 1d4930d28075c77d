#!/usr/bin/env bash
# scripts/test.sh BUILD [FUZZ_BUILD]: run every suite against the binaries in
# BUILD (and a smoke run of the fuzz targets in FUZZ_BUILD) and print one
# closing line "N passed, N failed" over all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/run_tests.py "${1:-build}" ${2:+"$2"}
