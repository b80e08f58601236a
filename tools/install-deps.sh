#!/bin/sh
# Installs every Debian 12 package mqhub needs to build, test, run and package
# (dpkg-dev and file: `make package`'s CPack and dpkg-shlibdeps).
# Adds bookworm-backports (same archive as the machine's sources) for libraft-dev 0.22.
# Idempotent: does nothing when everything is already there. Needs root (or sudo).
set -eu

PKGS="build-essential cmake pkg-config git ca-certificates dpkg-dev file
liblua5.4-dev lua5.4 libwebsockets-dev libwebsockets-evlib-uv libmsgpack-dev
libkyotocabinet-dev kyotocabinet-utils libuv1-dev libjansson-dev libcmocka-dev
libssl-dev libcurl4-openssl-dev clang libclang-rt-14-dev python3 python3-websockets
python3-msgpack chromium nodejs openssl jq"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=""
for p in $PKGS libraft-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# npm for the browser tests: Debian's package, unless a Node.js install brought its own.
if ! command -v npm >/dev/null 2>&1; then
    PKGS="$PKGS npm"
    missing="$missing npm"
fi
# libraft-dev must be the 0.22 line (cowsql fork) from backports, never 0.15.
if dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null | grep -q '^0\.1'; then
    missing="$missing libraft-dev"
fi
[ -n "$missing" ] || exit 0
echo "install-deps: installing:$missing"

# Find the Debian archive the machine already uses and add bookworm-backports from it.
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(grep -rhs -E '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null |
             grep -Eo 'https?://[^ ]+/debian/?' | grep -v security | head -n1)
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    echo "deb $mirror bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/mqhub-backports.list >/dev/null
fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $PKGS
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports libraft-dev
