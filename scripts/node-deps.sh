#!/usr/bin/env bash
# scripts/node-deps.sh [BUILD]: install Express and ws, pinned by
# tests/integration/node/package-lock.json, into BUILD/node/node_modules for
# the tests that run Node ships (test_node_ships.py). Does nothing when the
# pinned versions are there already. Without node or npm, or when npm cannot
# reach its registry, it prints one line saying the Node tests will be
# skipped and exits 0: those tests skip themselves when the modules are
# missing.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SRC=tests/integration/node
DEST=$BUILD/node

installed() {   # installed NAME: the version of NAME in DEST, or nothing
  node -p "require(require('path').resolve('$DEST/node_modules/$1/package.json')).version" 2>/dev/null
}
pinned() {      # pinned NAME: the version package.json asks for
  node -p "require(require('path').resolve('$SRC/package.json')).dependencies['$1']" 2>/dev/null
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node tests: skipped (node or npm is not installed: scripts/deps.sh installs nodejs and npm)"
  exit 0
fi
if [ "$(installed express)" = "$(pinned express)" ] && [ "$(installed ws)" = "$(pinned ws)" ]; then
  exit 0
fi
mkdir -p "$DEST"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
echo "node tests: installing express $(pinned express) and ws $(pinned ws) into $DEST" >&2
if ! log=$(cd "$DEST" && npm ci --no-audit --no-fund --loglevel=error 2>&1); then
  echo "node tests: skipped (npm could not install express and ws: $(printf '%s' "$log" | grep -m1 -i 'err' || printf '%s' "$log" | tail -n1))"
  exit 0
fi
