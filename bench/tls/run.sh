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
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
here=$(cd "$(dirname "$0")" && pwd)
bench_need_built tls "$bin"
bench_install_peers tls "measuring what is there"
bench_need_tools tls "scripts/deps.sh installs them" openssl wrk h2load python3
bench_run /usr/bin/python3 "$here/bench.py" "$bin"
