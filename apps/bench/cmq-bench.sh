#!/bin/sh
# cmq-bench.sh BUILD BASEPORT [SECONDS [CONNECTIONS]]: the CMQ HTTP API beside
# the native protocol, one run, one node (docs/benchmarks.md "CMQ HTTP").
# Starts one mqhubd from the build tree BUILD on loopback — native TCP on
# BASEPORT+1, the cmq transport on BASEPORT+2 (raft BASEPORT+100, unused) —
# and measures, with 1 KiB bodies and CONNECTIONS (4) connections with one
# request in flight each (what a keep-alive HTTP client has):
#   native  send (window 1), send_batch 16, receive 16 + delete
#           (mqhub-bench produce / consume --count: each consume takes exactly
#           what the produce before it sent)
#   CMQ     SendMessage, BatchSendMessage (16), BatchReceiveMessage (16) +
#           BatchDeleteMessage (mqhub-cmq-bench; receive-delete drains what
#           the send before it sent)
# and the native send pipelined (window 64) for reference. Each phase runs
# SECONDS (5); one JSON line per phase. Everything lives in a temporary
# folder removed at the end.
set -eu
B=$1 base=$2 secs=${3:-5} conns=${4:-4}
D=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-cmq-bench.XXXXXX")
trap '[ -f "$D/pid" ] && kill "$(cat "$D/pid")" 2>/dev/null; sleep 1; rm -rf "$D"' EXIT
key=$(openssl rand -hex 24)
cat >"$D/config.lua" <<EOF
node { id = 1, data = "$D/data", raft = "127.0.0.1:$((base + 100))" }
transport "tcp" { listen = "127.0.0.1:$((base + 1))" }
transport "cmq" { listen = "127.0.0.1:$((base + 2))", secret_id = "AKIDbench", secret_key = "$key" }
log { level = "warn" }
EOF
"$B/apps/mqhubd/mqhubd" --config "$D/config.lua" >>"$D/mqhubd.log" 2>&1 &
echo $! >"$D/pid"
S=127.0.0.1:$((base + 1))
i=0
until "$B/apps/mqhub/mqhub" --server "$S" queue create bench >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "mqhubd not ready after 10 s:" >&2; cat "$D/mqhubd.log" >&2; exit 1; }
    sleep 0.1
done
native() { # label, mqhub-bench args: one JSON line
    printf '{"run":"%s","result":' "$1"
    shift
    "$B/apps/bench/mqhub-bench" "$@" --server "$S" --size 1024 --connections "$conns" --json
    echo "}"
}
produced() { jq -r '.result.produced' "$D/last"; }
cmq() { # mode: one JSON line
    printf '{"run":"cmq %s","result":' "$1"
    "$B/apps/bench/mqhub-cmq-bench" "$1" --url "http://127.0.0.1:$((base + 2))/v2/index.php" \
        --secret-id AKIDbench --secret-key "$key" --connections "$conns" --duration "$secs" --json
    echo "}"
}
native "native send" produce --window 1 --duration "$secs" | tee "$D/last"
native "native receive+delete" consume --window 1 --recv-max 16 --count "$(produced)"
native "native send_batch 16" produce --window 1 --batch 16 --duration "$secs" | tee "$D/last"
native "native receive+delete" consume --window 1 --recv-max 16 --count "$(produced)"
cmq send
cmq receive-delete
cmq batch-send
cmq receive-delete
native "native send, window 64" produce --window 64 --duration "$secs" | tee "$D/last"
native "native receive+delete, window 64" consume --window 64 --recv-max 16 --count "$(produced)"
