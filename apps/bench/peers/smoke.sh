#!/bin/sh
# smoke.sh BUILD: the CTest entry bench_peers_smoke (labels bench;nosan).
# 0. Bad settings ("--duration nan") are refused with status 2.
# 1. Silent server: each driver built in BUILD, pointed at a listener that
#    accepts and never answers, must give up by itself (non-zero status)
#    instead of hanging.
# 2. Each system (mqhub, Redis, RabbitMQ, NATS) started with one node as
#    run.sh does, its driver run for 1 s of `both`: it must exit 0 having
#    confirmed a non-zero rate each way. Then mqhub and Redis are frozen
#    (SIGSTOP) half a second into a phase: their drivers must still end, by
#    themselves, with status 3 (errors counted).
#    Skipped (77) when the peer servers or their client libraries are
#    missing (make bench-peers installs them).
# Internal: `smoke.sh --mqhub URL` is step 2 for mqhub, run while
# cluster-bench.sh holds the node (servers.sh peers_with_mqhub).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/servers.sh"

run() { # run DRIVER URL: 1 s of both, which must exit 0 (sanitizers: no report)
    timeout 60 "$BIN/peer_$1" both --url "$2" --duration 1 --idle-ms 300 >"$PEERS_DIR/$1.json" ||
        { echo "FAIL: peer_$1 exited $?"; return 1; }
}

frozen() { # frozen DRIVER URL PID: the server stops answering mid-phase
    t0=$(date +%s)
    timeout 40 "$BIN/peer_$1" both --url "$2" --duration 1 >/dev/null 2>&1 &
    drv=$!
    sleep 0.5
    kill -STOP "$3"
    wait "$drv"
    rc=$?
    kill -CONT "$3"
    echo "frozen server: peer_$1 exited $rc after $(($(date +%s) - t0)) s"
    [ "$rc" -eq 3 ] || { echo "FAIL: peer_$1 on a frozen server: not 3 (ended, with errors)"; return 1; }
}

if [ "${1:-}" = --mqhub ]; then
    # cluster-bench.sh's node: the only mqhubd under $PEERS_DIR.
    pid=$(cat "$PEERS_DIR"/mqhub-cluster-bench.*/n1/pid)
    run mqhub "$2" && frozen mqhub "$2" "$pid"
    exit
fi

PEERS_ROOT=$(cd "$HERE/../../.." && pwd)
PEERS_BUILD=$1
BIN=$PEERS_BUILD/apps/bench
PEERS_BASE=$(peers_pick_base) || { echo "no free ports"; exit 1; }
PEERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-peers-smoke.XXXXXX")
export PEERS_ROOT PEERS_BUILD BIN PEERS_BASE PEERS_DIR
silent_pid=""
trap '[ -z "$silent_pid" ] || kill "$silent_pid" 2>/dev/null; peers_stop_all; rm -rf "$PEERS_DIR"' EXIT
trap 'exit 130' INT TERM # sh runs the EXIT trap on a signal only when it is trapped
fail=0

# 0. Settings no phase can run with are refused (usage: 2) before connecting,
#    "nan" too (every comparison with it is false).
for d in mqhub redis rabbit nats; do
    [ -x "$BIN/peer_$d" ] || continue
    for bad in "--duration nan" "--duration 0" "--window 0"; do
        # shellcheck disable=SC2086 # $bad is an option and its value
        timeout 10 "$BIN/peer_$d" produce --url 127.0.0.1:1 $bad >/dev/null 2>&1
        rc=$?
        [ "$rc" -eq 2 ] || { echo "FAIL: peer_$d produce $bad: exit $rc, not 2 (usage)"; fail=1; }
    done
done

# 1. A silent server on BASE+90: accepts, never reads, never writes.
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
s.settimeout(1)
held, end = [], time.time() + 85
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' $((PEERS_BASE + 90)) &
silent_pid=$!
peers_wait "ss -Htln 'sport = :$((PEERS_BASE + 90))' | grep -q ." 100 || { echo "no silent listener"; exit 1; }
silent() { # silent DRIVER URL
    t0=$(date +%s)
    timeout 40 "$BIN/peer_$1" produce --url "$2" --duration 1 --producers 1 >/dev/null \
        2>"$PEERS_DIR/silent-$1.err"
    rc=$?
    echo "silent server: peer_$1 exited $rc after $(($(date +%s) - t0)) s: $(head -c 200 "$PEERS_DIR/silent-$1.err")"
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "FAIL: peer_$1 did not give up by itself"; return 1; }
}
jobs=""
for d in mqhub redis rabbit nats; do
    [ -x "$BIN/peer_$d" ] || continue
    url=127.0.0.1:$((PEERS_BASE + 90))
    [ "$d" = nats ] && url=nats://$url
    silent "$d" "$url" &
    jobs="$jobs $!"
done
for j in $jobs; do wait "$j" || fail=1; done
kill "$silent_pid" 2>/dev/null
silent_pid=""

missing=""
for f in peer_redis peer_rabbit peer_nats; do [ -x "$BIN/$f" ] || missing="$missing $f"; done
for f in redis-server nats-server /usr/lib/rabbitmq/bin/rabbitmq-server; do
    command -v "$f" >/dev/null 2>&1 || missing="$missing $f"
done
if [ -n "$missing" ]; then
    echo "skipped: not installed:$missing (make bench-peers installs them)"
    [ "$fail" = 0 ] && exit 77
    exit 1
fi

# 2. One second of `both` against each, one node.
check() { # check NAME FILE: a result line with non-zero rates both ways
    line=$(grep '^{' "$2" | tail -1)
    echo "$1: $line"
    rin=$(echo "$line" | sed -n 's/.*"rate_in":\([0-9]*\).*/\1/p')
    rout=$(echo "$line" | sed -n 's/.*"rate_out":\([0-9]*\).*/\1/p')
    [ "${rin:-0}" -gt 0 ] && [ "${rout:-0}" -gt 0 ] || { echo "FAIL: $1 rates $rin / $rout"; fail=1; }
}
peers_with_mqhub 1 "sh '$HERE/smoke.sh' --mqhub \"\$MQHUB_URL\"" || fail=1
check mqhub "$PEERS_DIR/mqhub.json"
{ peers_start_redis && run redis "$REDIS_URL" &&
    frozen redis "$REDIS_URL" "$(cat "$PEERS_DIR/redis/pid")"; } || fail=1
check redis "$PEERS_DIR/redis.json"
{ peers_start_nats 1 && run nats "$NATS_URL"; } || fail=1
check nats "$PEERS_DIR/nats.json"
{ peers_start_rabbit 1 && run rabbit "$RABBIT_URL"; } || fail=1
check rabbitmq "$PEERS_DIR/rabbit.json"
exit $fail
