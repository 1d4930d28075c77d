#!/usr/bin/env bash
# bench/bays/run.sh BUILD - the same WSGI application served as an HTTP bay
# (docking v3, examples/bays/http_bay.py) and by gunicorn on a Unix socket
# behind Mothership's proxy, the same wrk load; req/s, latency and CPU per
# request of the app and of Mothership, ratios, one JSON object per figure.
# The work is done by bench.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bench_need_built bays "$bin"
bench_need_tools bays "from your distribution" wrk
here=$(cd "$(dirname "$0")" && pwd)
bench_run /usr/bin/python3 "$here/bench.py" "$bin"
