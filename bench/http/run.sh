#!/usr/bin/env bash
# bench/http/run.sh BUILD - Mothership's HTTP data plane against nginx and
# HAProxy on loopback: a backend nginx (`return 200 "hello"`) proxied over a
# TCP and a Unix-socket upstream, with keep-alive and `Connection: close`
# clients, plus static files against nginx. Prints req/s, p50/p99, the
# server's CPU µs per request and ratios (medians of ROUNDS alternating
# rounds), and idle RSS. The work is done by bench.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bench_need_built http "$bin"
bench_need_tools http "DEPS_BENCH=1 scripts/deps.sh installs nginx-light and haproxy; wrk from your distribution" nginx haproxy wrk python3
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)
bench_run /usr/bin/python3 "$here/bench.py" "$bin"
