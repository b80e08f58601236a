#!/bin/sh
# run.sh: mqhub side by side with Redis, RabbitMQ and NATS (`make bench-peers`;
# docs/benchmarks.md "Side by side with RabbitMQ, NATS and Redis").
#
# 1. installs the peer servers and client libraries when missing (apt-get),
#    builds mqhub (Release) and the drivers into $BUILD;
# 2. for each system, starts it on loopback in a temp folder (servers.sh),
#    runs the phases with its driver, and stops it (also on exit: trap);
# 3. writes the raw JSON lines to $RESULTS and, through report.py, the tables
#    and the chart into docs/benchmarks.md (between its peers markers) and
#    docs/images/peers.svg.
# The method (issue 14): 1 KiB bodies, 4 producers + 4 consumers with 64
# unconfirmed each; produce (into an empty queue), consume (draining what
# produce left), both (a fresh queue), and at 3 nodes window1 (1 producer,
# 1 in flight). Each phase lasts $DURATION s (or less, when drained).
#   BUILD=build-peers DURATION=10 SYSTEMS="mqhub redis rabbitmq nats"
#   NODES="1 3" NO_INSTALL=1 (skip apt) NO_DOC=1 (leave the docs alone)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS_ROOT=$(cd "$HERE/../../.." && pwd)
PEERS_BUILD=${BUILD:-$PEERS_ROOT/build-peers}
case $PEERS_BUILD in /*) ;; *) PEERS_BUILD=$PEERS_ROOT/$PEERS_BUILD ;; esac
DURATION=${DURATION:-10}
SYSTEMS=${SYSTEMS:-mqhub redis rabbitmq nats}
NODES_LIST=${NODES:-1 3}
RESULTS=${RESULTS:-$PEERS_BUILD/peers-results.jsonl}
export PEERS_ROOT PEERS_BUILD DURATION RESULTS
. "$HERE/servers.sh"

install_missing() {
    missing=""
    for p in rabbitmq-server nats-server redis-server librabbitmq-dev libnats-dev libhiredis-dev; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    peers_log "installing$missing"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

# phases SYSTEM NODES URL: the phases with driver $PEERS_BUILD/apps/bench/peer_SYSTEM.
phases() {
    drv="$PEERS_BUILD/apps/bench/peer_$1"
    for ph in produce consume both; do
        q=peers
        [ "$ph" = both ] && q=both
        peers_log "$1 $2 node(s): $ph"
        timeout $((DURATION + 120)) "$drv" "$ph" --url "$3" --nodes "$2" --queue "$q" \
            --duration "$DURATION" >>"$RESULTS" || peers_log "$1 $ph: exit status $?"
    done
    if [ "$2" -gt 1 ]; then
        peers_log "$1 $2 nodes: window 1"
        timeout $((DURATION + 120)) "$drv" produce --url "$3" --nodes "$2" --queue w1 \
            --producers 1 --window 1 --label window1 --duration "$DURATION" >>"$RESULTS" ||
            peers_log "$1 window1: exit status $?"
    fi
}

# One system at N nodes, stopped before the next starts.
run_system() {
    case $1 in
    mqhub) peers_with_mqhub "$2" "sh '$HERE/run.sh' --phases mqhub $2 \"\$MQHUB_URL\"" ;;
    redis) [ "$2" = 1 ] || return 0; peers_start_redis && phases redis 1 "$REDIS_URL" ;;
    nats) peers_start_nats "$2" && phases nats "$2" "$NATS_URL" ;;
    rabbitmq) peers_start_rabbit "$2" && phases rabbit "$2" "$RABBIT_URL" ;;
    esac
    status=$?
    peers_stop_all
    return $status
}

# The shim of peers_with_mqhub comes back here for the mqhub phases.
if [ "${1:-}" = --phases ]; then
    phases "$2" "$3" "$4"
    exit 0
fi

[ "${NO_INSTALL:-0}" = 1 ] || install_missing
cmake -S "$PEERS_ROOT" -B "$PEERS_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$PEERS_BUILD" -j"$(nproc)" --target mqhubd mqhub tcp peer_mqhub peer_redis \
    peer_nats peer_rabbit

# The packages' own services (started by their postinst where systemd runs)
# would share the CPU with the measured servers: say so rather than stop them.
for svc in rabbitmq-server redis-server nats-server; do
    ! systemctl is-active --quiet "$svc" 2>/dev/null ||
        peers_log "warning: the system service $svc is running and shares the CPU (systemctl stop $svc)"
done
PEERS_BASE=$(peers_pick_base)
PEERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-peers.XXXXXX")
export PEERS_BASE PEERS_DIR
trap 'peers_stop_all; rm -rf "$PEERS_DIR"' EXIT
trap 'exit 130' INT TERM
: >"$RESULTS"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
for n in $NODES_LIST; do
    for s in $SYSTEMS; do
        run_system "$s" "$n" || peers_log "$s at $n node(s) failed: its cells stay empty"
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
peers_log "all phases done in $(($(date +%s) - t0)) s; results in $RESULTS"
[ "${NO_DOC:-0}" = 1 ] && exit 0
python3 "$HERE/report.py" --results "$RESULTS" --doc "$PEERS_ROOT/docs/benchmarks.md" \
    --svg "$PEERS_ROOT/docs/images/peers.svg" --duration "$DURATION" \
    --load-start "$load_start" --load-end "$load_end"
