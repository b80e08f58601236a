#!/bin/sh
# A local mqhub cluster in one command (docs/operations.md "A 3-node cluster
# on one machine").
#
#   ./cluster.sh start        start nodes 1-3 (bootstrapped together)
#   ./cluster.sh status       the leader's view, each node marked by what it
#                             answers itself (unreachable when it does not)
#   ./cluster.sh kill N       kill -9 node N (try it under load)
#   ./cluster.sh restart N    start node N again on its data
#   ./cluster.sh join N       start node N (4..9) empty with join = true and
#                             add it with `mqhub cluster add`
#   ./cluster.sh stop         stop every node (SIGTERM) and wait for them
#   ./cluster.sh clean        stop, then remove the data
#
# Node N: client 127.0.0.1:620N, raft 127.0.0.1:630N, dashboard, /metrics,
# /healthz and /readyz on http://127.0.0.1:628N/ (with $PORT other than 6200:
# PORT+N, PORT+100+N, PORT+80+N), data and log in $DIR/nN (DIR defaults to
# ./mqhub-cluster), the cluster secret in $DIR/cluster.secret.
# Every node of 1-3 gets the same peers table, itself included.
# Binaries: $BUILD (default ./build) /apps/mqhubd/mqhubd and /apps/mqhub/mqhub.
# $EXTRA, when set, is appended to every config, e.g. EXTRA='snapshot { ... }'.
# Exit status: 0 done, 1 failed, 2 usage error.
set -eu

DIR=${DIR:-./mqhub-cluster}
BUILD=${BUILD:-./build}
MQHUBD=${MQHUBD:-$BUILD/apps/mqhubd/mqhubd}
MQHUB=${MQHUB:-$BUILD/apps/mqhub/mqhub}
PORT=${PORT:-6200}
STOP_WAIT=${STOP_WAIT:-20}   # seconds `stop` waits for each node to exit

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() {
    [ $# -eq 0 ] || echo "cluster.sh: $*" >&2
    echo "usage: cluster.sh start | status | stop | clean | kill N | restart N | join N" >&2
    echo "       (N: 1-3, or 4-9 once joined; \`cluster.sh help\` for more)" >&2
    exit 2
}

# node_arg CMD [N]: N is a node number 1-9 (4-9 only once joined or for join).
node_arg() {
    case "${2:-}" in
    [1-9]) ;;
    '') usage "$1: which node? a number from 1 to 9" ;;
    *) usage "$1: '$2' is not a node number (1-9)" ;;
    esac
    if [ "$1" = join ] && [ "$2" -le 3 ]; then
        usage "join: a new node's number is 4 to 9 (1-3 start with start)"
    fi
    if [ "$1" != join ] && [ ! -f "$DIR/n$2/config.lua" ] && [ "$2" -gt 3 ]; then
        usage "$1: node $2 was never started (join it first: cluster.sh join $2)"
    fi
}

client_of() { echo "127.0.0.1:$((PORT + $1))"; }
raft_of() { echo "127.0.0.1:$((PORT + 100 + $1))"; }
http_of() { echo "127.0.0.1:$((PORT + 80 + $1))"; }

peer_line() { # peer_line N: node N's entry of the peers table
    echo "  [$1] = { raft = \"$(raft_of "$1")\", client = \"$(client_of "$1")\"," \
        "http = \"$(http_of "$1")\" },"
}

config() { # config N JOIN
    n=$1
    mkdir -p "$DIR/n$n"
    {
        echo "-- node $n; nodes 1-3 share the peers table (each entry: raft, client, http)"
        echo "node { id = $n, data = \"$DIR/n$n/data\", cluster_secret_file = \"$DIR/cluster.secret\""
        echo "       $([ "$2" = join ] && echo ', join = true') }"
        echo "transport \"tcp\" { listen = \"$(client_of "$n")\" }"
        echo "transport \"websocket\" { listen = \"$(http_of "$n")\", dashboard = true }"
        echo "peers {"
        for p in 1 2 3; do peer_line $p; done
        [ "$2" = join ] && peer_line "$n"
        echo "}"
        echo "${EXTRA:-}"
    } > "$DIR/n$n/config.lua"
}

alive() { # alive N: node N's process runs (from its pid file)
    [ -f "$DIR/n$1/pid" ] && kill -0 "$(cat "$DIR/n$1/pid")" 2>/dev/null
}

run() { # run N
    n=$1
    if alive "$n"; then
        echo "node $n is already running (pid $(cat "$DIR/n$n/pid"))"
        return
    fi
    "$MQHUBD" --config "$DIR/n$n/config.lua" >> "$DIR/n$n/mqhubd.log" 2>&1 &
    echo $! > "$DIR/n$n/pid"
    echo "node $n: pid $!, client $(client_of "$n"), dashboard http://$(http_of "$n")/," \
        "log $DIR/n$n/mqhubd.log"
}

ask() { # ask ADDRESS: that node's own cluster.status as JSON, or nothing
    "$MQHUB" --server "$1" --timeout 1000 --json cluster status 2>/dev/null || true
}

# The leader's client address, asked of every node that answers.
find_leader() {
    for n in 1 2 3 4 5 6 7 8 9; do
        [ -f "$DIR/n$n/config.lua" ] || continue
        l=$(ask "$(client_of "$n")" | jq -r '.leader // empty' 2>/dev/null)
        [ -n "$l" ] && { echo "$l"; return 0; }
    done
    return 1
}

status() {
    leader=$(find_leader) || {
        echo "no leader: no node that answers knows one (quorum lost, or all stopped)"
        for n in 1 2 3 4 5 6 7 8 9; do
            [ -f "$DIR/n$n/config.lua" ] || continue
            st=$(ask "$(client_of "$n")")
            if [ -z "$st" ]; then
                echo "node $n: unreachable"
            else
                echo "node $n: $(echo "$st" | jq -r '"\(.role), term \(.term)"')"
            fi
        done
        return 1
    }
    view=$(ask "$leader")
    [ -n "$view" ] || die "the leader at $leader does not answer; try again"
    echo "$view" | jq -r '"leader: node \(.leader_id) at \(.leader), term \(.term),"
        + " commit \(.commit_index) (asked the leader)"'
    printf '%-5s %-8s %-12s %-16s %-24s %s\n' node member state client dashboard match_index
    echo "$view" | jq -r '.nodes[] | "\(.id) \(.role) \(.client // "-") \(.http // "-")'\
' \(.match_index // "-")"' | while read -r id member client http match; do
        own=$(ask "$client")
        state=$(echo "$own" | jq -r '.role // empty' 2>/dev/null)
        [ -n "$state" ] || state=unreachable
        # The CLI's JSON may lack http: this script's own layout then.
        [ "$http" != - ] || http=$(http_of "$id")
        printf '%-5s %-8s %-12s %-16s %-24s %s\n' "$id" "$member" "$state" "$client" \
            "http://$http/" "$match"
    done
    # Nodes of this directory that still run but are no longer members.
    for n in 1 2 3 4 5 6 7 8 9; do
        alive "$n" || continue
        echo "$view" | jq -e ".nodes[] | select(.id == $n)" > /dev/null && continue
        echo "node $n: running, not a member ($(ask "$(client_of "$n")" |
            jq -r '.role // "unreachable"'))"
    done
}

wait_leader() {
    i=0
    while [ $i -lt 100 ]; do
        if find_leader > /dev/null; then
            status
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
    die "no leader after 10 s; see $DIR/n*/mqhubd.log"
}

gone() { # gone N SECONDS: wait until node N's process has exited
    i=0
    while alive "$1"; do
        [ $i -lt $(($2 * 10)) ] || return 1
        i=$((i + 1))
        sleep 0.1
    done
    rm -f "$DIR/n$1/pid"
}

kill_node() { # kill_node N: SIGKILL, and wait until it is gone
    alive "$1" || { rm -f "$DIR/n$1/pid"; die "node $1 is not running"; }
    kill -KILL "$(cat "$DIR/n$1/pid")" 2>/dev/null || true
    gone "$1" 5 || die "node $1 (pid $(cat "$DIR/n$1/pid")) survived kill -9 for 5 s"
}

# SIGTERM to every node, then wait (STOP_WAIT s) until each has exited.
stop_all() {
    pids=""
    for n in 1 2 3 4 5 6 7 8 9; do
        alive "$n" || { rm -f "$DIR/n$n/pid"; continue; }
        kill -TERM "$(cat "$DIR/n$n/pid")" 2>/dev/null || true
        pids="$pids $n"
    done
    i=0 left=$pids
    while [ -n "$left" ] && [ $i -lt $((STOP_WAIT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
        now=""
        for n in $left; do alive "$n" && now="$now $n"; done
        left=$now
    done
    for n in $pids; do
        case " $left " in
        *" $n "*) echo "node $n (pid $(cat "$DIR/n$n/pid")) still runs after ${STOP_WAIT} s" ;;
        *) rm -f "$DIR/n$n/pid"; echo "node $n stopped" ;;
        esac
    done
    [ -z "$left" ] || die "some nodes did not stop; kill -9 them: cluster.sh kill N"
    [ -n "$pids" ] || echo "no node was running"
}

case $PORT in
'' | *[!0-9]*) usage "PORT must be a port number (the base, default 6200)" ;;
esac
SEEDS=$(client_of 1),$(client_of 2),$(client_of 3)
case "${1:-}" in
start | status | stop | clean) [ $# -eq 1 ] || usage "$1 takes no argument" ;;
kill | restart | join) [ $# -le 2 ] || usage "$1 takes one node number"; node_arg "$@" ;;
help | -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0 ;;
'') usage ;;
*) usage "unknown command '$1'" ;;
esac

[ -x "$MQHUBD" ] && [ -x "$MQHUB" ] || die "build first (make build), or set BUILD"
command -v jq > /dev/null || die "needs jq (tools/install-deps.sh)"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# One cluster secret shared by every node (docs/security.md "Peers").
if [ ! -f "$DIR/cluster.secret" ]; then
    (umask 077 && openssl rand -hex 32 > "$DIR/cluster.secret")
fi

case "$1" in
start)
    for n in 1 2 3; do [ -f "$DIR/n$n/config.lua" ] || config $n boot; done
    for n in 1 2 3; do run $n; done
    wait_leader ;;
status)
    status ;;
kill)
    kill_node "$2"; echo "killed node $2" ;;
restart)
    run "$2"; wait_leader ;;
join)
    n=$2
    [ -f "$DIR/n$n/config.lua" ] || config "$n" join
    run "$n"
    sleep 0.5
    "$MQHUB" --server "$SEEDS" cluster add "$n" "$(raft_of "$n")" "$(client_of "$n")" \
        --http "$(http_of "$n")"
    wait_leader ;;
stop)
    stop_all ;;
clean)
    stop_all
    rm -rf "$DIR"
    echo "removed $DIR" ;;
esac
