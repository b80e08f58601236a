#!/bin/sh
# run.sh: the image pipeline, start to finish (examples/image-pipeline/README.md).
#
# Starts its own mqhubd (client 127.0.0.1:$PORT, dashboard http://127.0.0.1:$((PORT+2))/,
# data in $DIR), creates `img-dlq` and `img-requests` (visibility timeout 5 s,
# dead letter after 3 receives), then:
#   - workers w1, w2 (100 ms per request) and w3 (a slow one, 3 s per request);
#   - front ends f1 (150 requests + 1 poison) and f2 (150 requests); f1 also
#     replays a request and sends an oversized one, and two forged answers are
#     put on its reply queue;
#   - w3 is killed with SIGKILL in the middle of its first request;
#   - w4 joins, then w1 leaves (SIGTERM: it finishes its request first);
#   - the front ends check that every request was answered exactly once;
#   - img_audit checks the hub's totals: nothing left, the poison dead-lettered.
# Exit 0 when every check holds. KEEP=1 leaves the hub running at the end (for
# the dashboard); stop it with `kill $(cat $DIR/mqhubd.pid)`.
#
# Environment: BUILD (default ./build), DIR (default ./mqhub-image-pipeline; wiped
# first), PORT (default 6410; raft PORT+1, dashboard PORT+2).
set -eu

DIR=${DIR:-./mqhub-image-pipeline}
PORT=${PORT:-6410}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/hub.sh"
EX=$BUILD/examples/image-pipeline
HUB=127.0.0.1:$PORT

worker() { # worker NAME WORK_MS
    "$EX/img_worker" --server "$HUB" --name "$1" --work-ms "$2" > "$DIR/$1.log" 2>&1 &
    eval "PID_$1=$!"
    PIDS="$PIDS $!"
}

[ -x "$EX/img_worker" ] || fail "build first (make build), or set BUILD"
start_hub
$MQHUB queue create img-dlq > /dev/null
$MQHUB queue create img-requests --visibility-timeout 5 --dead-letter img-dlq:3 > /dev/null
say "queues: img-requests (visibility 5 s, dead letter img-dlq after 3 receives), img-dlq"

worker w1 100
worker w2 100
worker w3 3000
say "workers w1, w2 (100 ms per request) and w3 (3 s per request)"

"$EX/img_frontend" --server "$HUB" --name f1 --count 150 --poison 1 --misbehave \
    > "$DIR/f1.log" 2>&1 &
F1=$!
"$EX/img_frontend" --server "$HUB" --name f2 --count 150 > "$DIR/f2.log" 2>&1 &
F2=$!
PIDS="$PIDS $F1 $F2"
say "front ends f1 (150 requests + 1 poison) and f2 (150 requests)"

# Someone forges answers on f1's reply queue: one naming a request f1 never
# made, one naming f2's request. f1 must ignore both (and not count f2-3 as its
# own), and f1 replays a request and sends a 2 MiB one (--misbehave).
wait_for "$DIR/f1.log" "put 150 requests" 20
$MQHUB send img-replies-f1 forged --attr request=f1-9999 --attr worker=mallory > /dev/null
$MQHUB send img-replies-f1 forged --attr request=f2-3 --attr worker=mallory > /dev/null
say "two forged answers put on img-replies-f1"

wait_for "$DIR/w3.log" " begin " 20
KILLED=$(grep " begin " "$DIR/w3.log" | head -n 1 | cut -d' ' -f3)
kill -KILL "$PID_w3"
say "w3 killed with SIGKILL in the middle of $KILLED"

sleep 1
worker w4 100
say "w4 joins"
sleep 1
kill -TERM "$PID_w1"
wait_for "$DIR/w1.log" "stopped after" 10
say "w1 leaves: $(grep 'stopped after' "$DIR/w1.log")"

rc=0
wait "$F1" || rc=1
wait "$F2" || rc=1
cat "$DIR/f1.log" "$DIR/f2.log"
[ $rc = 0 ] || fail "a front end's request was not answered exactly once"
grep -q "2 forged answers ignored" "$DIR/f1.log" || fail "f1 did not ignore the 2 forged answers"
grep -q "msg_id .* both times; a 2 MiB request: TOO_LARGE" "$DIR/f1.log" ||
    fail "the replayed or the oversized request was not refused as it should be"

# The killed worker's request came back after the visibility timeout and another
# worker did it.
grep -q "^f[12]: $KILLED answered by w[124] after a retry" "$DIR/f1.log" "$DIR/f2.log" ||
    fail "$KILLED (w3's request when it was killed) was not redone by another worker"
grep -q "w4=[1-9]" "$DIR/f1.log" "$DIR/f2.log" || fail "w4 answered nothing"
POISON=$(grep -c " poison " "$DIR"/w*.log | awk -F: '{ n += $2 } END { print n }')
say "the poison request was received $POISON times, then parked on img-dlq"
[ "$POISON" = 3 ] || fail "the poison request was received $POISON times, not 3"

"$EX/img_audit" --server "$HUB" --expect-done 300 --expect-dead 1 || fail "audit"
for w in w2 w4; do eval "kill -TERM \$PID_$w"; done
sleep 1.5
cat "$DIR/w2.log" "$DIR/w4.log" | grep "stopped after" || true
say "RESULT ok: 300 requests answered exactly once, 1 poison request dead-lettered, none lost"
