#!/usr/bin/env bash
# bench/ws/run.sh BUILD - WebSocket clients through Mothership's bays on
# loopback: echo round trips through the echo bay, broadcast fan-out through
# the chat bay, and Mothership's memory per idle client (10,000 of them),
# against a Node.js `ws` server alone and nginx in front of it, with
# workers = 2 and with permessage-deflate as extra rows.
# Prints rates, latencies, CPU µs per message (Mothership and the bay
# separately) and KiB per idle client (medians of ROUNDS rounds). The load
# generator, wsload (bench/ws/wsload.c, epoll, plain sockets), is compiled
# here into BUILD/bench/wsload; the work is done by bench.py. See
# bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bays="$build/examples/bays"
bench_need_built ws "$bin" "$bays/echo-bay" "$bays/chat-bay"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build/bench"
wsload="$build/bench/wsload"
if [ ! -x "$wsload" ] || [ "$here/wsload.c" -nt "$wsload" ]; then
    ${CC:-cc} -std=gnu17 -O2 -Wall -Wextra -Werror -o "$wsload.tmp" "$here/wsload.c" -lcrypto -lz
    mv "$wsload.tmp" "$wsload"
fi
# The peers: Node.js `ws` (pinned by bench/ws/package.json, installed by npm
# into BUILD/bench/node_modules when missing or another version) and nginx in
# front of it; without them the rows say why and Mothership is measured alone.
bench_install_peers ws "measuring without nginx"
mods="$build/bench/node_modules"
want=$(sed -n 's/.*"ws": "\(.*\)".*/\1/p' "$here/package.json")
have=$(sed -n 's/^  "version": "\(.*\)".*/\1/p' "$mods/ws/package.json" 2>/dev/null || true)
if command -v npm >/dev/null 2>&1 && [ "$have" != "$want" ]; then
    cp "$here/package.json" "$build/bench/package.json"
    (cd "$build/bench" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
        echo "ws: npm could not install ws $want; the Node.js rows are left out"
fi
bench_run /usr/bin/python3 "$here/bench.py" "$bin" "$wsload" "$bays" "$mods"
