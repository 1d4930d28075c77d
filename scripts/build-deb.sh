#!/usr/bin/env bash
# scripts/build-deb.sh [OUT]: build the Debian packages (mothership, libdock1,
# libdock-dev) from a copy of the source tree in OUT/src, so the tree itself
# (its build/ and debian/) is left as it is. The .deb files land in OUT
# (default build-deb/). Tests are not run in the package build (nocheck):
# make test runs them from the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build-deb}")
rm -rf "$out"
mkdir -p "$out/src"
# The files of the checkout (tracked or not, minus what .gitignore drops);
# outside a git checkout, everything but the build directories.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
    | tar --null -T - -cf - | tar -C "$out/src" -xf -
else
  tar --exclude='./build*' --exclude=./.git -cf - . | tar -C "$out/src" -xf -
fi
cd "$out/src"
export DEB_BUILD_OPTIONS="nocheck parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}"
dpkg-buildpackage -us -uc -b
ls "$out"/*.deb
