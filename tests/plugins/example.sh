#!/bin/sh
# example.sh MQHUBD SOURCE_DIR: builds examples/plugin-minimal out of tree
# with its own Makefile (headers from SOURCE_DIR/include, as if installed),
# runs mqhubd with it, and passes when it loads, beats, and mqhubd stops
# with exit code 0 on SIGTERM.
set -u
mqhubd=$1 src=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-example.XXXXXX")
trap 'rm -rf "$dir"' EXIT
make -s -C "$src/examples/plugin-minimal" MQHUB_INCLUDE="$src/include" OUT="$dir" ||
    { echo "FAIL: the example does not build"; exit 1; }
port=$((22000 + $$ % 4000 * 2))
cat >"$dir/mqhub.conf" <<CONF
node { id = 1, data = "$dir/data", raft = "127.0.0.1:$((port + 1))" }
transport "tcp" { listen = "127.0.0.1:$port" }
transport "heartbeat" { path = "$dir/heartbeat.so", interval = 1 }
CONF
"$mqhubd" --config "$dir/mqhub.conf" 2>"$dir/log" &
pid=$!
i=0
while [ $i -lt 50 ] && ! grep -q 'msg="beat 1"' "$dir/log"; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
rc=$?
cat "$dir/log"
[ $rc -eq 0 ] || { echo "FAIL: mqhubd exited $rc"; exit 1; }
grep -q 'comp=heartbeat msg="beat 1"' "$dir/log" || { echo "FAIL: no beat"; exit 1; }
echo "ok: the out-of-tree plugin loaded and ran"
