#!/bin/sh
# run.sh: payments with risk control, start to finish (examples/payments-risk/README.md).
#
# Starts its own mqhubd (client 127.0.0.1:$PORT, dashboard http://127.0.0.1:$((PORT+2))/,
# data in $DIR), then:
#   1. payments_risk setup: topic orders fanned out to the queues risk (all),
#      promotion (tag vip) and notify (routing keys order.paid.#); topic
#      risk-alerts delivered to the queue risk-desk; a queue refunds;
#   2. payments_risk history: yesterday's orders, no rule attached yet;
#   3. loads scripts/risk/merchant_spike.lua (its BLOCK_TTL cut from 600 s to
#      $TTL s, so the block's end is seen within the run) and backtests it on
#      yesterday's orders with `mqhub script test`;
#   4. attaches it to orders as a hook and runs payments_risk live: today's
#      orders with a spike from merchant m-7, and the checks (exit 0 when all hold).
# KEEP=1 leaves the hub running at the end (for the dashboard); stop it with
# `kill $(cat $DIR/mqhubd.pid)`.
#
# Environment: BUILD (default ./build), DIR (default ./mqhub-payments-risk; wiped
# first), PORT (default 6420; raft PORT+1, dashboard PORT+2), TTL (default 8).
set -eu

DIR=${DIR:-./mqhub-payments-risk}
PORT=${PORT:-6420}
TTL=${TTL:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/hub.sh"
RULE=$HERE/../../scripts/risk/merchant_spike.lua
PR="$BUILD/examples/payments-risk/payments_risk --server 127.0.0.1:$PORT"

[ -x "$BUILD/examples/payments-risk/payments_risk" ] ||
    fail "build first (make build), or set BUILD"
[ -f "$RULE" ] || fail "no $RULE"
start_hub
$PR setup
$PR history

# The rule as shipped blocks for 600 s; the example shortens only that.
sed "s/^local BLOCK_TTL = 600 /local BLOCK_TTL = $TTL /" "$RULE" > "$DIR/merchant_spike.lua"
grep -q "^local BLOCK_TTL = $TTL " "$DIR/merchant_spike.lua" ||
    fail "BLOCK_TTL not found in $RULE"
$MQHUB script load merchant_spike "$DIR/merchant_spike.lua"
say "backtest on yesterday's orders: mqhub script test merchant_spike --topic orders --since 1d"
$MQHUB script test merchant_spike --topic orders --since 1d | tee "$DIR/backtest.txt"
grep -q "hook over 54 messages: 52 calls, 0 errors, 3 refused" "$DIR/backtest.txt" ||
    fail "the backtest did not find yesterday's burst (54 messages, 52 calls, 3 refused)"
[ "$(grep -c '^would block merchant=' "$DIR/backtest.txt")" = 1 ] &&
    grep -q '^would block merchant=m-5:' "$DIR/backtest.txt" ||
    fail "the backtest should block m-5 and nobody else"

$MQHUB topic set orders --hook merchant_spike > /dev/null
say "merchant_spike attached to orders as a hook (blocks last $TTL s)"
$PR live --ttl-wait $((TTL + 20)) || fail "live checks"
# The live hook's own counters: 40 orders, 6 refused by the block before the hook
# ran, so 34 calls; it refused one order itself, made one block, sent one alert.
$MQHUB script get merchant_spike | grep -E "^(calls|refused|blocks|publishes|users) " |
    tee "$DIR/stats.txt"
[ "$(grep -E '^(calls|refused|blocks|publishes) ' "$DIR/stats.txt" | tr -s ' ' | tr '\n' ' ')" = \
    "calls 34 refused 1 blocks 1 publishes 1 " ] || fail "the hook's counters"
say "RESULT ok"
