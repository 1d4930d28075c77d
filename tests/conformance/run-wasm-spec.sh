#!/usr/bin/env bash
# run-wasm-spec.sh BUILD - the WebAssembly spec test suite (Wasm 2.0, no SIMD)
# against src/payload/wasm.
#
# Converts every .wast of ../shared/conformance/wasm-spec (the repo is cloned
# next to shared/) with wast2json into BUILD/wasm-spec-json/, runs
# wasm-spec-runner on each, prints per-file failures and ends with
#   wasm-spec: N passed, M failed
# (N/M count commands and assertions).  Exit 0 iff M == 0.
#
# Exclusions: no file and no assertion is excluded.  The only commands not
# run are assert_malformed on *text* modules (.wat): they test the WAT text
# parser, which is not part of a binary-only interpreter; they are counted
# and printed as "skipped (text format)", never as passed.
set -u

BUILD=${1:-build}
SUITE="$(dirname "$0")/../../../shared/conformance/wasm-spec"
OUT="$BUILD/wasm-spec-json"
# wabt 1.0.32 enables every Wasm 2.0 feature this suite uses by default.
WAST2JSON_FLAGS=()
# Files excluded, as "name.wast: reason" (none).
EXCLUDED=()

RUNNER="$BUILD/wasm-spec-runner"
[ -x "$RUNNER" ] || RUNNER="$BUILD/tests/conformance/wasm-spec-runner"
if [ ! -x "$RUNNER" ]; then
    echo "run-wasm-spec: no wasm-spec-runner in $BUILD" >&2
    echo "wasm-spec: 0 passed, 1 failed"
    exit 1
fi
if [ ! -d "$SUITE" ]; then
    echo "run-wasm-spec: suite not found at $SUITE" >&2
    echo "wasm-spec: 0 passed, 1 failed"
    exit 1
fi
if ! command -v wast2json >/dev/null; then
    echo "run-wasm-spec: wast2json (wabt) not installed" >&2
    echo "wasm-spec: 0 passed, 1 failed"
    exit 1
fi
mkdir -p "$OUT"

for e in "${EXCLUDED[@]+"${EXCLUDED[@]}"}"; do
    echo "wasm-spec: excluded $e"
done

passed=0 failed=0 skipped=0 files=0 badfiles=() msg_same=0 msg_all=0
for wast in "$SUITE"/*.wast; do
    name=$(basename "$wast" .wast)
    skip=0
    for e in "${EXCLUDED[@]+"${EXCLUDED[@]}"}"; do
        [ "${e%%:*}" = "$name.wast" ] && skip=1
    done
    [ $skip = 1 ] && continue
    files=$((files + 1))
    json="$OUT/$name.json"
    if ! wast2json "${WAST2JSON_FLAGS[@]+"${WAST2JSON_FLAGS[@]}"}" "$wast" -o "$json" 2>"$OUT/$name.wast2json.err"; then
        echo "FAIL $name.wast: wast2json could not convert it:"
        sed 's/^/  /' "$OUT/$name.wast2json.err"
        failed=$((failed + 1))
        badfiles+=("$name")
        continue
    fi
    out=$("$RUNNER" "$json" 2>&1)
    rc=$?
    summary=$(printf '%s\n' "$out" | grep -E '^[^ ].*: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' | tail -1)
    if [ -z "$summary" ]; then
        echo "FAIL $name.wast: runner crashed (status $rc)"
        printf '%s\n' "$out" | tail -20 | sed 's/^/  /'
        failed=$((failed + 1))
        badfiles+=("$name")
        continue
    fi
    p=$(printf '%s' "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1/')
    f=$(printf '%s' "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\2/')
    s=$(printf '%s' "$summary" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\3/')
    msgline=$(printf '%s\n' "$out" | grep -E "rejections with the spec's message: [0-9]+ of [0-9]+" | tail -1)
    if [ -n "$msgline" ]; then
        msg_same=$((msg_same + $(printf '%s' "$msgline" | sed -E 's/.*: ([0-9]+) of ([0-9]+).*/\1/')))
        msg_all=$((msg_all + $(printf '%s' "$msgline" | sed -E 's/.*: ([0-9]+) of ([0-9]+).*/\2/')))
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$f" != 0 ] || [ $rc != 0 ]; then
        printf '%s\n' "$out" | grep -E '^  FAIL' | head -50
        echo "FAIL $summary"
        badfiles+=("$name")
        if [ "$f" = 0 ]; then
            failed=$((failed + 1))
        fi
    fi
done

echo "wasm-spec: invalid/malformed binaries rejected with the spec's own message: $msg_same of $msg_all (the rest are rejected too, with another message; -v on the runner lists them)"
echo "wasm-spec: $files files; skipped (text format): $skipped assert_malformed text modules (WAT parser not part of the interpreter)"
if [ ${#badfiles[@]} -gt 0 ]; then
    echo "wasm-spec: files with failures: ${badfiles[*]}"
fi
echo "wasm-spec: $passed passed, $failed failed"
[ "$failed" = 0 ]
