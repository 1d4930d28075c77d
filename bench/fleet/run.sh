#!/usr/bin/env bash
# bench/fleet/run.sh BUILD - start N trivial ships (default 100) under
# Mothership and the same N programs under supervisord, alternating ROUNDS
# rounds (default 5), and print medians of start-to-ready time, the
# supervisor's memory while supervising them, and stop time, with ratios.
# The work is done by fleet.py; see bench/README.md for what is measured.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
if [ ! -x "$bin" ]; then
    echo "fleet: not built ($bin)"
    exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
# fleet.py kills every supervisor it started, and everything below them, on
# exit, SIGINT, SIGTERM and SIGHUP; run it in the background so that a
# signal to this script is forwarded at once rather than after it finishes.
pid=
forward() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    exit 130
}
trap forward INT TERM HUP
python3 "$here/fleet.py" "$bin" &
pid=$!
wait "$pid"
