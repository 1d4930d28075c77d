# bench/lib.sh - the set-up every bench/*/run.sh repeats, sourced by each:
# the check that the binary is built, the check for missing tools, the
# installation of the peers (nginx, HAProxy) and the run of the bench's
# Python script in the background with signals forwarded to it.

# bench_need_built NAME FILE...: exit 0 with "NAME: not built (LIST)" unless
# every FILE is executable.
bench_need_built() {
    local name=$1 f list
    shift
    for f in "$@"; do
        if [ ! -x "$f" ]; then
            list=$(printf ', %s' "$@")
            echo "$name: not built (${list:2})"
            exit 0
        fi
    done
}

# bench_need_tools NAME HINT TOOL...: exit 0 with "NAME: skipped,
# missing: TOOLS (HINT)" when a TOOL is not on PATH (nor in /usr/sbin, /sbin).
bench_need_tools() {
    local name=$1 hint=$2 missing= t
    shift 2
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
    done
    if [ -n "$missing" ]; then
        echo "$name: skipped, missing:$missing${hint:+ ($hint)}"
        exit 0
    fi
}

# bench_install_peers NAME WHAT: install nginx and HAProxy when missing
# (DEPS_BENCH=1 scripts/deps.sh); on failure say so and go on with WHAT.
bench_install_peers() {
    export PATH="$PATH:/usr/sbin:/sbin"
    if ! command -v nginx >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
        DEPS_BENCH=1 "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/deps.sh" ||
            echo "$1: could not install the peers; $2"
    fi
}

# bench_run CMD...: run CMD (the bench's script, which stops every process it
# started, by pid, on exit and on SIGINT/SIGTERM/SIGHUP) in the background so
# that a signal to the calling script is forwarded at once rather than after
# it finishes; returns CMD's status.
bench_pid=
bench_forward() {
    [ -n "$bench_pid" ] && kill -TERM "$bench_pid" 2>/dev/null || true
    [ -n "$bench_pid" ] && wait "$bench_pid" 2>/dev/null || true
    exit 130
}
bench_run() {
    trap bench_forward INT TERM HUP
    "$@" &
    bench_pid=$!
    wait "$bench_pid"
}
