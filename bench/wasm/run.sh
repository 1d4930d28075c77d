#!/usr/bin/env bash
# bench/wasm/run.sh BUILD - WebAssembly interpreter microbenchmarks: our
# figures (bench-wasm) and, for the tight loop, wabt's wasm-interp as a peer
# (same loop, same instruction count; skipped if wabt is not installed).
set -euo pipefail
build=${1:-build}
bin="$build/src/payload/wasm/bench-wasm"
if [ ! -x "$bin" ]; then
    echo "bench-wasm: not built ($bin)"
    exit 0
fi
N=20000000
out=$("$bin" "$N" 1000000)
echo "$out"
ours=$(printf '%s\n' "$out" | sed -n 's/.*: \([0-9.]*\) ns\/instruction.*/\1/p')
call=$(printf '%s\n' "$out" | sed -n 's/.*typical payload call.*: \([0-9.]*\) ns\/call.*/\1/p')
emit() { python3 "$(dirname "$0")/../benchlib.py" emit "$@"; }   # BENCH-JSON lines
[ -n "$ours" ] && emit wasm "tight loop" mothership ns_per_instruction ns "$ours"
[ -n "$call" ] && emit wasm "payload call" mothership ns_per_call ns "$call"
if command -v wat2wasm >/dev/null && command -v wasm-interp >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cat > "$tmp/loop.wat" <<WAT
(module (func (export "loop") (result i32) (local \$n i32) (local \$acc i32)
  (local.set \$n (i32.const $N))
  (block (loop
    (br_if 1 (i32.eqz (local.get \$n)))
    (local.set \$acc (i32.add (local.get \$acc) (local.get \$n)))
    (local.set \$n (i32.sub (local.get \$n) (i32.const 1)))
    (br 0)))
  (local.get \$acc)))
WAT
    wat2wasm "$tmp/loop.wat" -o "$tmp/loop.wasm"
    t0=$(date +%s%N)
    wasm-interp --run-all-exports "$tmp/loop.wasm" >/dev/null
    t1=$(date +%s%N)
    peer=$(awk -v ns=$((t1 - t0)) -v n=$N 'BEGIN { printf "%.2f", ns / (n * 12) }')
    ratio=$(awk -v a="$peer" -v b="$ours" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "?" }')
    echo "bench-wasm: peer wabt wasm-interp tight loop: $peer ns/instruction (ours is ${ratio}x faster)"
    emit wasm "tight loop" wasm-interp ns_per_instruction ns "$peer"
fi
