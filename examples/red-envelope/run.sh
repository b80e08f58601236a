#!/bin/sh
# run.sh: the red-envelope campaign, start to finish (examples/red-envelope/README.md).
#
# Starts a three-node cluster laid out like examples/cluster/cluster.sh, on its
# own ports: node N (1-3) serves clients on 127.0.0.1:$((PORT+N)), raft on
# $((PORT+10+N)), the dashboard on $((PORT+20+N)); data and logs in $DIR/nN. Then:
#   - creates env-credits (visibility timeout 20 s: longer than a failover on a
#     loaded machine, so a crediter's delete lands before its lock runs out);
#   - starts two crediters (c1, c2) and the grab of $COUNT envelopes;
#   - kills the leader with SIGKILL once a fifth of the envelopes are credited;
#   - reconciles the account ledger against the issued envelopes;
#   - restarts the killed node and checks that every node's state digest is equal.
# Exit 0 when every check holds. KEEP=1 leaves the cluster running.
#
# Environment: BUILD (default ./build), DIR (default ./mqhub-red-envelope; wiped
# first), PORT (default 6430), COUNT (default 300).
set -eu

DIR=${DIR:-./mqhub-red-envelope}
PORT=${PORT:-6430}
COUNT=${COUNT:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/hub.sh"
SEEDS=127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2)),127.0.0.1:$((PORT + 3))
MQHUB="$BUILD/apps/mqhub/mqhub --server $SEEDS --timeout 3000"
RE=$BUILD/examples/red-envelope/red_envelope

config() { # config N
    n=$1
    mkdir -p "$DIR/n$n"
    {
        echo "node { id = $n, data = \"$DIR/n$n/data\","
        echo "       raft = \"127.0.0.1:$((PORT + 10 + n))\", client = \"127.0.0.1:$((PORT + n))\","
        echo "       cluster_secret_file = \"$DIR/cluster.secret\" }"
        echo "transport \"tcp\" { listen = \"127.0.0.1:$((PORT + n))\" }"
        echo "transport \"websocket\" { listen = \"127.0.0.1:$((PORT + 20 + n))\" }"
        echo "log { level = \"warn\" }"
        echo "peers {"
        for p in 1 2 3; do
            [ "$p" = "$n" ] || echo "  [$p] = { raft = \"127.0.0.1:$((PORT + 10 + p))\"," \
                "client = \"127.0.0.1:$((PORT + p))\" },"
        done
        echo "}"
    } > "$DIR/n$n/config.lua"
}

run_node() { # run_node N
    "$BUILD/apps/mqhubd/mqhubd" --config "$DIR/n$1/config.lua" >> "$DIR/n$1/mqhubd.log" 2>&1 &
    echo $! > "$DIR/n$1/pid"
}

leader() { # leader [NOT]: the leader's node id (not NOT), waiting up to 15 s for one
    i=0
    while [ $i -lt 150 ]; do
        id=$($MQHUB cluster status 2>/dev/null | sed -n 's/.*leader: node \([0-9]*\).*/\1/p')
        [ -n "$id" ] && [ "$id" != "${1:-0}" ] && { echo "$id"; return 0; }
        i=$((i + 1))
        sleep 0.1
    done
    fail "no leader within 15 s; see $DIR/n*/mqhubd.log"
}

wait_lines() { # wait_lines FILE N SECONDS
    i=0
    while [ $i -lt $(($3 * 10)) ]; do
        [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
        i=$((i + 1))
        sleep 0.1
    done
    fail "$1 did not reach $2 lines within $3 s"
}

[ -x "$RE" ] || fail "build first (make build), or set BUILD"
rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
(umask 077 && openssl rand -hex 32 > "$DIR/cluster.secret")
for n in 1 2 3; do config $n; run_node $n; done
say "cluster: nodes 1-3 on $SEEDS, leader node $(leader), data in $DIR"
$MQHUB queue create env-credits --visibility-timeout 20 > /dev/null
say "queue env-credits (visibility 20 s)"

for c in c1 c2; do
    "$RE" credit --server "$SEEDS" --dir "$DIR" --name $c > "$DIR/$c.log" 2>&1 &
    eval "PID_$c=$!"
    PIDS="$PIDS $!"
done
"$RE" grab --server "$SEEDS" --dir "$DIR" --count "$COUNT" > "$DIR/grab.log" 2>&1 &
GRAB=$!
PIDS="$PIDS $GRAB"
say "crediters c1, c2 and the grab of $COUNT envelopes started"

wait_lines "$DIR/ledger" $((COUNT / 5)) 60
KILLED=$(leader)
kill -KILL "$(cat "$DIR/n$KILLED/pid")"
rm -f "$DIR/n$KILLED/pid"
say "leader node $KILLED killed with SIGKILL after $(wc -l < "$DIR/ledger") credits"
say "new leader: node $(leader "$KILLED")"

wait "$GRAB" || { cat "$DIR/grab.log"; fail "the grab failed"; }
cat "$DIR/grab.log"
rc=0
"$RE" reconcile --server "$SEEDS" --dir "$DIR" --count "$COUNT" --wait 90 |
    tee "$DIR/reconcile.txt"
grep -q "RESULT ok" "$DIR/reconcile.txt" || rc=1
for c in c1 c2; do eval "kill -TERM \$PID_$c"; done
for c in c1 c2; do eval "wait \$PID_$c" || true; done
cat "$DIR/c1.log" "$DIR/c2.log"
[ $rc = 0 ] || fail "reconciliation"
# Every message env-credits ever stored is a grab or a queued retry: the grabs
# resent after a lost answer and the replayed ones stored nothing.
RETRIES=$(sed -n 's/.* credited, \([0-9]*\) retries queued.*/\1/p' "$DIR/c1.log" "$DIR/c2.log" |
    awk '{ n += $1 } END { print n }')
SENT=$(sed -n 's/.*env-credits sent \([0-9]*\) .*/\1/p' "$DIR/reconcile.txt")
say "env-credits stored $SENT messages = $COUNT grabs + $RETRIES retries"
[ "$SENT" = $((COUNT + RETRIES)) ] || fail "env-credits stored $SENT, not $COUNT + $RETRIES"

run_node "$KILLED"
say "node $KILLED restarted"
digest() { # digest N: node N's state digest line, "" when it does not answer
    "$BUILD/apps/mqhub/mqhub" --server "127.0.0.1:$((PORT + $1))" cluster status digest \
        2>/dev/null | grep -i digest || true
}
i=0
while :; do
    D1=$(digest 1)
    D2=$(digest 2)
    D3=$(digest 3)
    [ -n "$D1" ] && [ "$D1" = "$D2" ] && [ "$D2" = "$D3" ] && break
    i=$((i + 1))
    [ $i -lt 100 ] || fail "state digests differ after 20 s: '$D1' '$D2' '$D3'"
    sleep 0.2
done
say "node $KILLED caught up: all three nodes' state digest ${D1##* }"
say "RESULT ok"
