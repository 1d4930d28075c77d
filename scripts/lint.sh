#!/usr/bin/env bash
# scripts/lint.sh BUILD SCAN_BUILD: static analysis of src/, failing on any
# finding. cppcheck reads BUILD/compile_commands.json (the flags meson
# compiles with); the clang static analyzer (scan-build) rebuilds everything
# in SCAN_BUILD, a build dir of its own, and keeps its HTML reports in
# SCAN_BUILD/reports. A false positive is suppressed where it is, with the
# reason beside it: `// cppcheck-suppress <id> ; why` for cppcheck; for the
# analyzer, code that states the invariant (an assert, an explicit return).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scan=${2:-build-scan}
jobs=$(nproc 2>/dev/null || echo 2)
status=0

if [ ! -f "$build/compile_commands.json" ]; then
  echo "lint: $build/compile_commands.json is missing (run make build first)" >&2
  exit 2
fi

echo "==> cppcheck over src/"
if ! cppcheck --project="$build/compile_commands.json" --file-filter='src/*' \
     --enable=warning,portability,performance --inline-suppr --error-exitcode=1 \
     --quiet -j "$jobs" --template='{file}:{line}:{column}: {severity}: {id}: {message}'; then
  echo "lint: cppcheck found problems (above)"
  status=1
fi

echo "==> scan-build (clang static analyzer) over src/, in $scan"
if [ ! -f "$scan/build.ninja" ]; then
  scan-build --use-cc=clang meson setup "$scan" --buildtype=debugoptimized >/dev/null
fi
ninja -C "$scan" -t clean >/dev/null   # analyse every file, not only the changed ones
rm -rf "$scan/reports"
if ! scan-build --use-cc=clang --status-bugs -o "$scan/reports" \
     --exclude "$PWD/tests" --exclude "$PWD/examples" --exclude "$PWD/tools" --exclude "$PWD/bench" \
     --exclude "$PWD/$scan/../tests" --exclude "$PWD/$scan/../examples" --exclude "$PWD/$scan/../tools" \
     ninja -C "$scan" -j "$jobs" >"$scan/lint.log" 2>&1; then
  grep -E ': (warning|error):' "$scan/lint.log" | sort -u || tail -n 40 "$scan/lint.log"
  echo "lint: scan-build found problems (above; reports in $scan/reports)"
  status=1
else
  grep -E '^scan-build: ' "$scan/lint.log" | tail -n 1
fi

[ $status -eq 0 ] && echo "lint: clean"
exit $status
