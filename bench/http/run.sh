#!/usr/bin/env bash
# bench/http/run.sh BUILD - Mothership's HTTP data plane against nginx and
# HAProxy on loopback: a backend nginx (`return 200 "hello"`) proxied over a
# TCP and a Unix-socket upstream, with keep-alive and `Connection: close`
# clients, plus static files against nginx. Prints req/s, p50/p99, the
# server's CPU µs per request and ratios (medians of ROUNDS alternating
# rounds), and idle RSS. The work is done by bench.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
if [ ! -x "$bin" ]; then
    echo "http: not built ($bin)"
    exit 0
fi
missing=
for t in nginx haproxy wrk python3; do
    command -v "$t" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "http: skipped, missing:$missing (DEPS_BENCH=1 scripts/deps.sh installs nginx-light and haproxy; wrk from your distribution)"
    exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)
# bench.py stops every server it started (by pid) on exit and on
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
