#!/bin/sh
# scenarios.sh BUILD PORT OUT: the single-node and 3-node scenarios of
# docs/benchmarks.md "Quiet machine: before and after" against the mqhubd of the
# build tree BUILD, each on a fresh hub (clients on PORT, PORT+11.., PORT+21..),
# one JSON line per scenario appended to OUT (mqhub-bench --json plus
# "scenario"). BENCH (default BUILD's mqhub-bench) drives the single-node runs,
# so two builds can be compared with one client; LD_LIBRARY_PATH picks a
# libraft (e.g. an unpatched build, docs/operations.md "libraft").
set -eu
B=$1 port=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
bench=${BENCH:-$B/apps/bench/mqhub-bench}
S="--server 127.0.0.1:$port --size 1024 --connections 4 --window 64 --json"
d=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-scenarios.XXXXXX")
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$d"' EXIT
hub() {
    rm -rf "$d/data"
    printf 'node { id = 1, data = "%s/data", plugin_dir = "%s/plugins-out" }\n' "$d" "$B" >"$d/c.conf"
    printf 'transport "tcp" { listen = "127.0.0.1:%s" }\nlog { level = "warn" }\n' "$port" >>"$d/c.conf"
    "$B/apps/mqhubd/mqhubd" --config "$d/c.conf" >"$d/log" 2>&1 &
    pid=$!
    i=0
    until "$bench" produce --server "127.0.0.1:$port" --count 1 --queue warmup >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "mqhubd did not start: $(cat "$d/log")" >&2; exit 1; }
        sleep 0.1
    done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
rec() {
    python3 -c 'import json,sys
j = json.loads(sys.stdin.read().strip().splitlines()[-1]); j["scenario"] = sys.argv[1]
print(json.dumps(j))' "$1" >>"$out"
}
hub; $bench produce $S --duration 10 | rec produce; stop
hub; $bench produce $S --count 600000 >/dev/null
$bench consume $S --recv-max 32 --duration 10 | rec consume; stop
hub; $bench both $S --recv-max 32 --duration 10 | rec both; stop
hub; $bench produce $S --rate 30000 --duration 10 | rec produce_30k; stop
NODES=3 "$here/cluster-bench.sh" "$B" $((port + 10)) --size 1024 --connections 1 --window 1 \
    --duration 10 --json | rec nodes3_window1
NODES=3 "$here/cluster-bench.sh" "$B" $((port + 20)) --size 1024 --connections 4 --window 64 \
    --duration 10 --json | rec nodes3_window64
