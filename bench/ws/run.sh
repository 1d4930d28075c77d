#!/usr/bin/env bash
# bench/ws/run.sh BUILD - WebSocket clients through Mothership's bays on
# loopback: echo round trips through the echo bay, broadcast fan-out through
# the chat bay, and Mothership's memory per idle client (10,000 of them).
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
bench_run /usr/bin/python3 "$here/bench.py" "$bin" "$wsload" "$bays"
