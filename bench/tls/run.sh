#!/usr/bin/env bash
# bench/tls/run.sh BUILD - TLS termination by Mothership, nginx and HAProxy on
# loopback, configured alike (one certificate, TLS 1.2/1.3, the same ciphers,
# session tickets, a static file and a proxied route): new connections/s with
# full and resumed handshakes, keep-alive req/s over TLS, HTTP/2 with h2load,
# CPU µs per request and per connection, memory per idle TLS connection, and
# ratios. Installs the peers first when missing (DEPS_BENCH=1 scripts/deps.sh).
# The work is done by bench.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ ! -x "$bin" ]; then
    echo "tls: not built ($bin)"
    exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v nginx >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
    DEPS_BENCH=1 "$root/scripts/deps.sh" || echo "tls: could not install the peers; measuring what is there"
fi
missing=
for t in openssl wrk h2load python3; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "tls: skipped, missing:$missing (scripts/deps.sh installs them)"
    exit 0
fi
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
