#!/bin/sh
# run.sh: reconciliation by rewinding, start to finish
# (examples/reconciliation-rewind/README.md).
#
# Starts its own mqhubd (client 127.0.0.1:$PORT, dashboard http://127.0.0.1:$((PORT+2))/,
# data in $DIR) and runs recon_rewind: a day of usage records on the queue
# rr-usage (rewind_window $WINDOW s), billed by a buggy v1; the queue rewound by
# time to 13:00 and re-billed by v2; a rewind after the window finds nothing; the
# tax service's subscription to rr-invoices rewound by seq. Exit 0 when the
# recomputed totals and every count match.
# KEEP=1 leaves the hub running at the end (for the dashboard); stop it with
# `kill $(cat $DIR/mqhubd.pid)`.
#
# Environment: BUILD (default ./build), DIR (default ./mqhub-reconciliation; wiped
# first), PORT (default 6470; raft PORT+1, dashboard PORT+2), WINDOW (default 10),
# PER_HOUR (default 250).
set -eu

DIR=${DIR:-./mqhub-reconciliation}
PORT=${PORT:-6470}
WINDOW=${WINDOW:-10}
PER_HOUR=${PER_HOUR:-250}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/hub.sh"
RR=$BUILD/examples/reconciliation-rewind/recon_rewind

[ -x "$RR" ] || fail "build first (make build), or set BUILD"
start_hub
$RR --server "127.0.0.1:$PORT" --window "$WINDOW" --per-hour "$PER_HOUR" |
    tee "$DIR/recon_rewind.out"
grep -q '^RESULT ok$' "$DIR/recon_rewind.out" || fail "recon_rewind did not say RESULT ok"
say "the tax subscription as the hub sees it:"
$MQHUB sub get rr-invoices tax
say "RESULT ok"
