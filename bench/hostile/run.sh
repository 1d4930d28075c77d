#!/usr/bin/env bash
# bench/hostile/run.sh BUILD - the hostile-input table of the integration
# suite through Mothership, nginx and HAProxy, each in front of recording
# upstreams: what each answered and what each let through. Installs the
# peers first when missing (DEPS_BENCH=1 scripts/deps.sh). The work is done
# by compare.py; see bench/README.md.
set -euo pipefail
build=${1:-build}
. "$(dirname "$0")/../lib.sh"
bin="$build/mothership"
here=$(cd "$(dirname "$0")" && pwd)
bench_need_built hostile "$bin"
bench_install_peers hostile "comparing what is there"
bench_run /usr/bin/python3 "$here/compare.py" "$bin"
