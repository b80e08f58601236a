#!/bin/sh
# cluster_test.sh: examples/cluster/cluster.sh as an operator runs it, on free
# ports (run_example.sh gives BUILD, DIR and a base PORT with 110 free ports):
# argument errors exit 2 with the usage line before anything starts; start
# elects a leader and every node serves /readyz, /healthz, /metrics and the
# dashboard on its own port; a second start says the nodes run; status asks
# the leader and marks a killed node unreachable (kill 2); restart brings it
# back; stop returns only once every process has exited.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CL="$HERE/../../examples/cluster/cluster.sh"
export BUILD DIR PORT
OUT=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-cluster-test.XXXXXX")

cleanup() {
    for f in "$DIR"/n*/pid; do
        [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$OUT"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$OUT"/*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; } >&2; done
    exit 1
}
say() { echo "== $*"; }

http() { echo "127.0.0.1:$((PORT + 80 + $1))"; }

# status until it names a leader (an election takes 1-2 s), at most 15 s.
status_with_leader() {
    i=0
    while [ $i -lt 30 ]; do
        sh "$CL" status > "$OUT/status.out" 2>&1 || true
        grep -q "^leader: node [1-3]" "$OUT/status.out" && return 0
        i=$((i + 1))
        sleep 0.5
    done
    fail "status names no leader within 15 s"
}

# The state column of node $1's row in the last status.
state_of() {
    awk -v id="$1" '$1 == id && $2 == "voter" { print $3 }' "$OUT/status.out"
}

say "argument errors: usage line, exit 2, nothing started"
for args in "" "foo" "kill" "kill 12" "kill x" "restart 0" "status extra" "join 2 3" \
    "kill 5" "join 2"; do
    set +e
    # shellcheck disable=SC2086 # word splitting of $args is the point
    sh "$CL" $args > "$OUT/args.out" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "cluster.sh $args exited $rc, not 2"
    grep -q "^usage: cluster.sh" "$OUT/args.out" || fail "cluster.sh $args: no usage line"
done
for bad in x 6x -1; do
    set +e
    PORT=$bad sh "$CL" status > "$OUT/args.out" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "PORT='$bad': exit $rc, not 2"
done
[ ! -d "$DIR/n1" ] || fail "an argument error started a node"

say "start: a leader, every node with its own HTTP endpoints"
sh "$CL" start > "$OUT/start.out" 2>&1 || fail "start failed"
grep -q "^leader: node [1-3]" "$OUT/start.out" || fail "start printed no leader"
for n in 1 2 3; do
    i=0
    until curl -fsS "http://$(http $n)/readyz" > "$OUT/readyz.out" 2>&1; do
        i=$((i + 1))
        [ $i -lt 50 ] || fail "node $n: /readyz not 200 within 10 s"
        sleep 0.2
    done
    grep -q "^ready: leader 127.0.0.1:" "$OUT/readyz.out" || fail "node $n: /readyz body"
    curl -fsS "http://$(http $n)/healthz" > /dev/null || fail "node $n: /healthz"
    curl -fsS "http://$(http $n)/metrics" > "$OUT/metrics.out" || fail "node $n: /metrics"
    grep -q "^mqhub_raft_term " "$OUT/metrics.out" || fail "node $n: no mqhub_raft_term"
    curl -fsS "http://$(http $n)/" > "$OUT/index.out" || fail "node $n: /"
    grep -qi "<html" "$OUT/index.out" || fail "node $n: no dashboard at /"
    grep -q "http = \"$(http $n)\"" "$DIR/n1/config.lua" || fail "node $n's http not in the table"
done
for n in 2 3; do
    [ "$(sed -n '/^peers/,/^}/p' "$DIR/n1/config.lua")" = \
        "$(sed -n '/^peers/,/^}/p' "$DIR/n$n/config.lua")" ] ||
        fail "node $n's peers table differs from node 1's"
done

say "start again: the nodes run already"
sh "$CL" start > "$OUT/again.out" 2>&1 || fail "second start failed"
[ "$(grep -c "is already running" "$OUT/again.out")" -eq 3 ] || fail "second start"

say "status: the leader's view, three reachable voters"
status_with_leader
cat "$OUT/status.out"
for n in 1 2 3; do
    case $(state_of $n) in
    leader | follower) ;;
    *) fail "node $n: state '$(state_of $n)'" ;;
    esac
    grep -q "http://$(http $n)/" "$OUT/status.out" || fail "node $n: no dashboard column"
done

say "kill 2: status marks it unreachable"
sh "$CL" kill 2 > "$OUT/kill.out" 2>&1 || fail "kill 2 failed"
status_with_leader
cat "$OUT/status.out"
[ "$(state_of 2)" = unreachable ] || fail "node 2 is '$(state_of 2)', not unreachable"
for n in 1 3; do
    case $(state_of $n) in leader | follower) ;; *) fail "node $n: '$(state_of $n)'" ;; esac
done
set +e
sh "$CL" kill 2 > "$OUT/kill2.out" 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "node 2 is not running" "$OUT/kill2.out" || fail "kill of a dead node"

say "restart 2: reachable again"
sh "$CL" restart 2 > "$OUT/restart.out" 2>&1 || fail "restart 2 failed"
i=0
while :; do
    status_with_leader
    case $(state_of 2) in leader | follower) break ;; esac
    i=$((i + 1))
    [ $i -lt 20 ] || fail "node 2 not back: '$(state_of 2)'"
    sleep 0.5
done

say "stop: returns once every process has exited"
pids=$(cat "$DIR"/n*/pid)
t0=$(date +%s)
sh "$CL" stop > "$OUT/stop.out" 2>&1 || fail "stop failed"
echo "stop took $(($(date +%s) - t0)) s"
for p in $pids; do
    ! kill -0 "$p" 2>/dev/null || fail "pid $p still runs after stop returned"
done
[ "$(grep -c "^node [1-3] stopped" "$OUT/stop.out")" -eq 3 ] || fail "stop's report"
ls "$DIR"/n*/pid > /dev/null 2>&1 && fail "pid files left after stop"
sh "$CL" stop > "$OUT/stop2.out" 2>&1 || fail "stop of a stopped cluster"
grep -q "no node was running" "$OUT/stop2.out" || fail "second stop's report"
say "ok"
