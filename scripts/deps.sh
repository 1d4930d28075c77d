#!/usr/bin/env bash
# scripts/deps.sh: install the Debian 12 packages Mothership builds and tests
# with (DESIGN.md section 2), only those that are missing. Idempotent: a
# machine that has everything runs no apt-get at all.
set -euo pipefail

PKGS=(
  build-essential meson ninja-build pkg-config clang lld
  libuv1-dev libhttp-parser-dev libssl-dev libwslay-dev zlib1g-dev
  libbrotli-dev libzstd-dev libpcre2-dev libjansson-dev libncurses-dev libcmocka-dev
  python3 python3-pytest python3-requests python3-websockets python3-brotli
  # zstd: the CLI and the Python decoder the content-coding tests check with
  zstd python3-zstandard
  wabt curl wrk tmux procps iproute2
  # HTTP/2: the library, and the clients the tests drive (nghttp, h2load, python3-h2)
  libnghttp2-dev nghttp2-client python3-h2
  cppcheck clang-tools
  # real servers the fleet tests start as ships (test_fleet_real_servers.py,
  # test_http_streaming.py)
  postgresql redis-server gunicorn python3-flask
  # the TLS conformance scan of test_testssl.py; the openssl CLI for test
  # certificates and s_client
  testssl.sh openssl
  # ACME end to end (test_acme.py): pebble, the test ACME server, and its
  # pebble-challtestsrv as the DNS server that resolves every name here;
  # python3-cryptography for the harness's own reference ACME client
  pebble python3-cryptography
  # a real browser: a page over HTTP/2 and its WebSockets (test_browser.py)
  chromium
  # packaging: the Debian package (dpkg-buildpackage, lintian), the unit's
  # checker (systemd-analyze), promtool for the metrics lint
  debhelper dpkg-dev fakeroot lintian systemd prometheus
  # the man pages' checks (groff -ww, man --warnings) and the shells the
  # completion tests drive (test_man.py, test_completions.py)
  groff-base man-db bash zsh fish
)
# Node for the Express and ws ships (test_node_ships.py; scripts/node-deps.sh
# installs those two from npm). Asked for only when the command is missing:
# a Node from elsewhere (NodeSource's nodejs carries its own npm) is kept.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
# Benchmark peers: only for `make bench` (DEPS_BENCH=1).
if [ "${DEPS_BENCH:-0}" = 1 ]; then
  PKGS+=(nginx-light haproxy supervisor)
fi

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
