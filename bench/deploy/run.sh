#!/usr/bin/env bash
# bench/deploy/run.sh BUILD - a rolling restart under load: Mothership (a
# ship with two instances, `mothership restart`) against nginx in front of
# two upstreams restarted one after the other by supervisorctl, the same
# application and the same wrk load. Prints the requests that failed, p99
# and the deploy's duration for each, ratios, and one JSON object per
# figure. The work is done by deploy.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
bench_need_built deploy "$bin"
bench_need_tools deploy "wrk from your distribution" wrk python3
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)
bench_run /usr/bin/python3 "$here/deploy.py" "$bin"
