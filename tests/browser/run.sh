#!/bin/sh
# run.sh MQHUBD MQHUB_CLI BUILD_DIR [TEST]: install playwright-core into
# BUILD_DIR/npm-cache/node_modules (once; npm's download cache is kept in
# BUILD_DIR/npm-cache/.npm, so nothing is written outside the build tree),
# then run TEST (default dashboard_test.mjs; console_test.mjs) against
# Debian's chromium. Screenshots land in
# BUILD_DIR/artifacts.
# Exit 77 (skipped) only when node, npm or chromium is not installed; a
# failing npm install (no registry, no cached copy) is a failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mqhubd=$1 cli=$2 out=$3 test=${4:-dashboard_test.mjs}
for tool in node npm; do
    command -v "$tool" >/dev/null ||
        { echo "skip: $tool is not installed (tools/install-deps.sh installs it)"; exit 77; }
done
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] ||
    { echo "skip: $chromium is not installed (tools/install-deps.sh installs it)"; exit 77; }
deps="$out/npm-cache"
if [ ! -f "$deps/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$deps"
    [ -f "$deps/package.json" ] || echo '{"private": true}' > "$deps/package.json"
    echo "installing playwright-core into $deps"
    # ~1.61: the last line that runs on Debian 12's Node.js 18 (1.62+ need Node 20).
    (cd "$deps" && npm install --cache "$deps/.npm" --no-audit --no-fund --no-save \
        --loglevel=error playwright-core@~1.61) ||
        { echo "FAIL: npm install playwright-core failed (registry unreachable?)"; exit 1; }
fi
mkdir -p "$out/artifacts"
NODE_PATH="$deps/node_modules" MQHUBD="$mqhubd" MQHUB_CLI="$cli" CHROMIUM="$chromium" \
    ARTIFACTS="$out/artifacts" node "$here/$test"
