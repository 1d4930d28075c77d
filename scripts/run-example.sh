#!/usr/bin/env bash
# scripts/run-example.sh BUILD MANIFEST: what `make run` does: check the
# example manifest, show where requests will go, then launch the fleet.
set -euo pipefail
build=${1:-build}
manifest=${2:-examples/ship-manifest.toml}
"$build/mothership" clearance -c "$manifest"
echo
"$build/mothership" chart -c "$manifest"
echo
exec "$build/mothership" run -c "$manifest"
