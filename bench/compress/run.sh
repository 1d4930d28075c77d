#!/usr/bin/env bash
# bench/compress/run.sh BUILD - what each content-coding (identity, gzip, br,
# zstd) costs and gains when Mothership compresses on the fly: responses/s,
# p50/p99, CPU per response, bytes on the wire and ratio, for a 128 KiB HTML
# page and an 8 KiB JSON document. The work is done by bench.py; see
# bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bench_need_built compress "$bin"
bench_need_tools compress "wrk from your distribution" wrk python3
here=$(cd "$(dirname "$0")" && pwd)
bench_run /usr/bin/python3 "$here/bench.py" "$bin"
