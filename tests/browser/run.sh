#!/bin/sh
# run.sh MQHUBD MQHUB_CLI BUILD_DIR: install playwright-core into
# BUILD_DIR/npm-cache (once), then run dashboard_test.mjs. Screenshots land in
# BUILD_DIR/artifacts. Exit 77 (skipped) without node, npm or chromium.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mqhubd=$1 cli=$2 out=$3
for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "skip: $tool not installed"; exit 77; }
done
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "skip: $chromium not installed (tools/install-deps.sh)"; exit 77; }
deps="$out/npm-cache"
if [ ! -d "$deps/node_modules/playwright-core" ]; then
    mkdir -p "$deps"
    (cd "$deps" && [ -f package.json ] || echo '{"private": true}' > package.json)
    (cd "$deps" && npm install --no-audit --no-fund --silent playwright-core@1) || {
        echo "npm install playwright-core failed"; exit 1; }
fi
mkdir -p "$out/artifacts"
NODE_PATH="$deps/node_modules" MQHUBD="$mqhubd" MQHUB_CLI="$cli" CHROMIUM="$chromium" \
    ARTIFACTS="$out/artifacts" node "$here/dashboard_test.mjs"
