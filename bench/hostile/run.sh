#!/usr/bin/env bash
# bench/hostile/run.sh BUILD - the hostile-input table of the integration
# suite through Mothership, nginx and HAProxy, each in front of recording
# upstreams: what each answered and what each let through. Installs the
# peers first when missing (DEPS_BENCH=1 scripts/deps.sh). The work is done
# by compare.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
bin="$build/mothership"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ ! -x "$bin" ]; then
    echo "hostile: not built ($bin)"
    exit 0
fi
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v nginx >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
    DEPS_BENCH=1 "$root/scripts/deps.sh" || echo "hostile: could not install the peers; comparing what is there"
fi
# compare.py stops every process it started (by pid) on exit and on
# SIGINT/SIGTERM/SIGHUP; run it in the background so that a signal to this
# script is forwarded at once.
pid=
forward() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    exit 130
}
trap forward INT TERM HUP
/usr/bin/python3 "$here/compare.py" "$bin" &
pid=$!
wait "$pid"
