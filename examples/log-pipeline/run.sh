#!/bin/sh
# run.sh: the log pipeline, start to finish (examples/log-pipeline/README.md).
#
# Starts its own mqhubd (client 127.0.0.1:$PORT, dashboard http://127.0.0.1:$((PORT+2))/,
# data in $DIR) and runs log_pipeline: 8 collectors send $MESSAGES log lines in
# batches to the queue lp-archive and the topic lp-logs; a stream consumer
# follows lp-logs' push subscription lp-live and counts ERROR lines; a batch
# consumer long-polls lp-archive 256 at a time, held to $LAG_RATE lines/s while
# the collectors run, so the backlog peaks at >= $MIN_BACKLOG and then drains.
# A progress line every second; exit 0 when every count matches.
# KEEP=1 leaves the hub running at the end (for the dashboard); stop it with
# `kill $(cat $DIR/mqhubd.pid)`.
#
# Environment: BUILD (default ./build), DIR (default ./mqhub-log-pipeline; wiped
# first), PORT (default 6460; raft PORT+1, dashboard PORT+2), MESSAGES (default
# 1048576), MIN_BACKLOG (default 1000000), LAG_RATE (default 256).
set -eu

DIR=${DIR:-./mqhub-log-pipeline}
PORT=${PORT:-6460}
MESSAGES=${MESSAGES:-1048576}
MIN_BACKLOG=${MIN_BACKLOG:-1000000}
LAG_RATE=${LAG_RATE:-256}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/hub.sh"
LP=$BUILD/examples/log-pipeline/log_pipeline

[ -x "$LP" ] || fail "build first (make build), or set BUILD"
start_hub
$LP --server "127.0.0.1:$PORT" --messages "$MESSAGES" --min-backlog "$MIN_BACKLOG" \
    --lag-rate "$LAG_RATE" | tee "$DIR/log_pipeline.out"
grep -q '^RESULT ok$' "$DIR/log_pipeline.out" || fail "log_pipeline did not say RESULT ok"
say "the hub's own counters of lp-archive and lp-live:"
$MQHUB queue get lp-archive | grep -E '^(ready|inflight|sent_total|deleted_total) '
$MQHUB sub get lp-logs lp-live | grep -E '^(matched_total|pending|acked_total|dropped_total) '
say "RESULT ok"
