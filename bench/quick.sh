#!/usr/bin/env bash
# bench/quick.sh BUILD - `make bench-quick`: every benchmark in quick mode
# (QUICK=1 and the shorter knobs below), one after the other, in about two
# minutes; a smoke run of the benches and a rough figure of each, not a
# measurement to publish (bench/README.md). Every figure is a BENCH-JSON
# line in the output and, one object a line, in the file BENCH_JSON names
# (default BUILD/bench/quick.jsonl, emptied first), ready for
# `bench/compare.py OLD NEW`. Prints each bench's time and the total; exits
# 1 if a bench failed (the others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
mkdir -p "$build/bench"
export BENCH_JSON=${BENCH_JSON:-$build/bench/quick.jsonl}
: > "$BENCH_JSON"
export QUICK=1
now() { date +%s.%N; }
t0=$(now)
times= failed=
# the short ones first; a bench added later (any bench/*/run.sh) runs last
order="wasm hostile fleet bays ws http tls deploy"
for d in bench/*/run.sh; do
    n=$(basename "$(dirname "$d")")
    case " $order " in *" $n "*) ;; *) order="$order $n" ;; esac
done
for b in $order; do
    [ -x "bench/$b/run.sh" ] || continue
    echo "==> bench/$b (quick)"
    s=$(now)
    case $b in
        # fewer, shorter runs where the bench's own QUICK=1 is still long
        ws)     env DURATION=1 IDLE_CONNS=1000 IDLE_PING=2 HOLD=0.5 "bench/$b/run.sh" "$build" ;;
        http)   env DURATION=1 WARMUP=0 "bench/$b/run.sh" "$build" ;;
        tls)    env DURATION=1 IDLE_CONNS=200 ONLY=mothership,nginx "bench/$b/run.sh" "$build" ;;
        bays)   env DURATION=1 WARM=0.3 "bench/$b/run.sh" "$build" ;;
        deploy) env ONLY=mothership,nginx-tuned STEADY=1 "bench/$b/run.sh" "$build" ;;
        hostile) env ONLY=mothership,nginx "bench/$b/run.sh" "$build" ;;
        fleet)  env N=30 "bench/$b/run.sh" "$build" ;;
        *)      "bench/$b/run.sh" "$build" ;;
    esac
    rc=$?
    [ $rc = 0 ] || failed="$failed $b"
    times="$times $b $(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')s"
done
total=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
echo
echo "bench-quick: $total s in all (${times# }); $(wc -l < "$BENCH_JSON") figures in $BENCH_JSON"
echo "bench-quick: compare with an earlier run: bench/compare.py OLD.jsonl $BENCH_JSON"
if [ -n "$failed" ]; then
    echo "bench-quick: FAILED:$failed"
    exit 1
fi
