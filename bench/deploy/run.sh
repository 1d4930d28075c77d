#!/usr/bin/env bash
# bench/deploy/run.sh BUILD - a rolling restart under load: Mothership (a
# ship with two instances, `mothership restart`) against nginx in front of
# two upstreams restarted one after the other by supervisorctl, the same
# application and the same wrk load. Prints the requests that failed, p99
# and the deploy's duration for each, ratios, and one JSON object per
# figure. The work is done by deploy.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
if [ ! -x "$bin" ]; then
    echo "deploy: not built ($bin)"
    exit 0
fi
missing=
for t in wrk python3; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "deploy: skipped, missing:$missing (wrk from your distribution)"
    exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)
# deploy.py stops every server it started (by pid) on exit and on
# SIGINT/SIGTERM/SIGHUP; run it in the background so that a signal to this
# script is forwarded at once.
pid=
forward() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    exit 130
}
trap forward INT TERM HUP
/usr/bin/python3 "$here/deploy.py" "$bin" &
pid=$!
wait "$pid"
