#!/usr/bin/env bash
# bench/bays/run.sh BUILD - the same WSGI application served as an HTTP bay
# (docking v3, examples/bays/http_bay.py) and by gunicorn on a Unix socket
# behind Mothership's proxy, the same wrk load; req/s, latency and CPU per
# request of the app and of Mothership, ratios, one JSON object per figure.
# The work is done by bench.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
if [ ! -x "$bin" ]; then
    echo "bays: not built ($bin)"
    exit 0
fi
if ! command -v wrk >/dev/null 2>&1; then
    echo "bays: skipped, missing: wrk (from your distribution)"
    exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
# bench.py stops every process it started (by pid) on exit and on
# SIGINT/SIGTERM/SIGHUP; run it in the background so that a signal to this
# script is forwarded at once.
pid=
forward() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    exit 130
}
trap forward INT TERM HUP
/usr/bin/python3 "$here/bench.py" "$bin" &
pid=$!
wait "$pid"
