#!/usr/bin/env bash
# bench/fleet/run.sh BUILD - start N trivial ships (default 100) under
# Mothership and the same N programs under supervisord, alternating ROUNDS
# rounds (default 5), and print medians of start-to-ready time, the
# supervisor's memory while supervising them, and stop time, with ratios.
# The work is done by fleet.py; see bench/README.md for what is measured.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bench_need_built fleet "$bin"
here=$(cd "$(dirname "$0")" && pwd)
# fleet.py kills every supervisor it started, and everything below them.
bench_run python3 "$here/fleet.py" "$bin"
