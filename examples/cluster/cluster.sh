#!/bin/sh
# A local mqhub cluster in one command (docs/operations.md "A 3-node cluster
# on one machine").
#
#   ./cluster.sh start        start nodes 1-3 (bootstrapped together)
#   ./cluster.sh status       `mqhub cluster status` as node 1 sees it
#   ./cluster.sh kill N       kill -9 node N (try it under load)
#   ./cluster.sh restart N    start node N again on its data
#   ./cluster.sh join N       start node N (4..9) empty with join = true and
#                             add it with `mqhub cluster add`
#   ./cluster.sh stop         stop every node (SIGTERM)
#   ./cluster.sh clean        stop, then remove the data
#
# Node N: client 127.0.0.1:620N, raft 127.0.0.1:630N, data and log in $DIR/nN
# (DIR defaults to ./mqhub-cluster), the cluster secret in $DIR/cluster.secret.
# Binaries: $BUILD (default ./build) /apps/mqhubd/mqhubd and /apps/mqhub/mqhub.
# $EXTRA, when set, is appended to every config, e.g. EXTRA='snapshot { ... }'.
set -eu

DIR=${DIR:-./mqhub-cluster}
BUILD=${BUILD:-./build}
MQHUBD=${MQHUBD:-$BUILD/apps/mqhubd/mqhubd}
MQHUB=${MQHUB:-$BUILD/apps/mqhub/mqhub}
SEEDS=127.0.0.1:6201,127.0.0.1:6202,127.0.0.1:6203

die() { echo "cluster.sh: $*" >&2; exit 1; }

config() { # config N JOIN
    n=$1
    mkdir -p "$DIR/n$n"
    {
        echo "node { id = $n, data = \"$DIR/n$n/data\", raft = \"127.0.0.1:630$n\","
        echo "       client = \"127.0.0.1:620$n\", cluster_secret_file = \"$DIR/cluster.secret\""
        echo "       $([ "$2" = join ] && echo ', join = true') }"
        echo "transport \"tcp\" { listen = \"127.0.0.1:620$n\" }"
        echo "peers {"
        for p in 1 2 3; do
            [ "$p" = "$n" ] || echo "  [$p] = { raft = \"127.0.0.1:630$p\", client = \"127.0.0.1:620$p\" },"
        done
        echo "}"
        echo "${EXTRA:-}"
    } > "$DIR/n$n/config.lua"
}

run() { # run N
    n=$1
    pidf="$DIR/n$n/pid"
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        echo "node $n is running (pid $(cat "$pidf"))"
        return
    fi
    "$MQHUBD" --config "$DIR/n$n/config.lua" >> "$DIR/n$n/mqhubd.log" 2>&1 &
    echo $! > "$pidf"
    echo "node $n: pid $!, client 127.0.0.1:620$n, log $DIR/n$n/mqhubd.log"
}

wait_leader() {
    i=0
    while [ $i -lt 100 ]; do
        if "$MQHUB" --server "$SEEDS" --timeout 1000 cluster status 2>/dev/null |
            grep -q "leader: node"; then
            "$MQHUB" --server "$SEEDS" cluster status
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    die "no leader after 10 s; see $DIR/n*/mqhubd.log"
}

signal_node() { # signal_node SIG N
    pidf="$DIR/n$2/pid"
    [ -f "$pidf" ] || die "node $2 was never started"
    kill "-$1" "$(cat "$pidf")" 2>/dev/null || true
    rm -f "$pidf"
}

[ -x "$MQHUBD" ] && [ -x "$MQHUB" ] || die "build first (make build), or set BUILD"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# One cluster secret shared by every node (docs/security.md "Peers").
if [ ! -f "$DIR/cluster.secret" ]; then
    (umask 077 && openssl rand -hex 32 > "$DIR/cluster.secret")
fi

case "${1:-}" in
start)
    for n in 1 2 3; do [ -f "$DIR/n$n/config.lua" ] || config $n boot; done
    for n in 1 2 3; do run $n; done
    wait_leader ;;
status)
    "$MQHUB" --server "${2:-$SEEDS}" cluster status ;;
kill)
    signal_node KILL "${2:?node}"; echo "killed node $2" ;;
restart)
    run "${2:?node}"; wait_leader ;;
join)
    n=${2:?node}
    [ "$n" -ge 4 ] && [ "$n" -le 9 ] || die "join: a node number from 4 to 9"
    [ -f "$DIR/n$n/config.lua" ] || config "$n" join
    run "$n"
    sleep 0.5
    "$MQHUB" --server "$SEEDS" cluster add "$n" "127.0.0.1:630$n" "127.0.0.1:620$n"
    wait_leader ;;
stop)
    for f in "$DIR"/n*/pid; do
        [ -f "$f" ] && { kill -TERM "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
    done
    echo "stopped" ;;
clean)
    "$0" stop
    rm -rf "$DIR"
    echo "removed $DIR" ;;
*)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
