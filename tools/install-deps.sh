#!/bin/sh
# Installs every Debian 12 package mqhub needs to build, test, run and package
# (dpkg-dev and file: `make package`'s CPack and dpkg-shlibdeps; jq and curl: the
# docs' runnable examples, tests/docs, examples/cluster; prometheus: its promtool
# checks examples/grafana's PromQL, tests/examples/grafana_test.py).
# Adds bookworm-backports (same archive as the machine's sources) for libraft-dev 0.22,
# then rebuilds that libraft with mqhub's two speed patches (tools/raft/: a faster
# CRC-32 and no io_destroy on the event loop; autoconf, automake, libtool, liblz4-dev
# and patch are for that build). If the rebuild fails, Debian's build stays and
# mqhub works the same, only slower: the script says so and goes on.
# Then the npm packages the tests use, into .deps/node/ of the source tree (ignored
# by git; tests never reach a registry, they skip naming this script when it is
# missing): cmq-sdk 2.1.0 for tests/cmq/cmq_node_sdk_test.py.
# Idempotent: does nothing when everything is already there. Needs root (or sudo)
# for the Debian packages.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODE_DEPS="$ROOT/.deps/node"
NODE_PKGS="cmq-sdk@2.1.0"

PKGS="build-essential cmake pkg-config git ca-certificates dpkg-dev file
liblua5.4-dev lua5.4 libwebsockets-dev libwebsockets-evlib-uv libmsgpack-dev
libkyotocabinet-dev kyotocabinet-utils libuv1-dev libjansson-dev libcmocka-dev
libssl-dev libcurl4-openssl-dev clang libclang-rt-14-dev python3 python3-websockets
python3-msgpack chromium nodejs openssl jq curl prometheus
autoconf automake libtool liblz4-dev patch"

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
# ... rebuilt with tools/raft/'s patches (build-libraft.sh is idempotent too).
raft_patched() {
    dpkg-query -W -f='${Version}' libraft0 2>/dev/null | grep -q '+mqhub'
}

# The npm packages (network needed here, never in the tests), owned by whoever
# owns the source tree; skipped when each is there at its version.
install_node_deps() {
    need=""
    for spec in $NODE_PKGS; do
        name=${spec%@*} version=${spec##*@}
        pj="$NODE_DEPS/node_modules/$name/package.json"
        grep -qs "\"version\": *\"$version\"" "$pj" || need="$need $spec"
    done
    [ -n "$need" ] || return 0
    echo "install-deps: npm installing into $NODE_DEPS:$need"
    mkdir -p "$NODE_DEPS"
    npm install --prefix "$NODE_DEPS" --no-audit --no-fund --no-save --loglevel=error $need
    owner=$(stat -c %u:%g "$ROOT")
    [ "$(id -u)" != 0 ] || [ "$owner" = 0:0 ] || chown -R "$owner" "$ROOT/.deps"
}

# The Debian archive the machine already uses (for backports and raft's source).
mirror=$(grep -rhs -E '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
         /etc/apt/sources.list.d/*.list 2>/dev/null |
         grep -Eo 'https?://[^ ]+/debian/?' | grep -v security | head -n1)
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"

patch_raft() {
    raft_patched && return 0
    MIRROR=${mirror%/} "$ROOT/tools/raft/build-libraft.sh" ||
        echo "install-deps: WARNING: could not rebuild libraft with tools/raft/'s patches;" \
             "mqhub runs on Debian's build, slower (docs/operations.md \"libraft\")" >&2
}

if [ -z "$missing" ]; then
    patch_raft
    install_node_deps
    exit 0
fi
echo "install-deps: installing:$missing"

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb $mirror bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/mqhub-backports.list >/dev/null
fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $PKGS
raft_patched ||
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports libraft-dev
patch_raft
install_node_deps
