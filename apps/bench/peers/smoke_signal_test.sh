#!/bin/sh
# smoke_signal_test.sh BUILD: the CTest entry bench_peers_signal (labels
# bench;nosan). smoke.sh stopped by SIGTERM (a Ctrl-C, a CTest timeout) at
# its Redis step, with Redis frozen (SIGSTOP, as its frozen() step leaves it
# mid-phase), must still stop that Redis and remove its temp folder: sh runs
# an EXIT trap on a signal only when the signal is trapped, and a stopped
# daemon acts on SIGTERM only once continued (servers.sh peers_stop_all).
# Redis may be frozen while smoke.sh still waits for its first PONG: that
# wait gives up on each ping after 2 s (servers.sh peers_start_redis).
# Skipped (77) without redis-server or peer_redis.
set -u
BUILD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
command -v redis-server >/dev/null 2>&1 && [ -x "$BUILD/apps/bench/peer_redis" ] ||
    { echo "skipped: redis-server or peer_redis missing"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-smoke-signal.XXXXXX")
rpid=""
TMPDIR=$T sh "$HERE/smoke.sh" "$BUILD" >"$T/smoke.log" 2>&1 &
smoke=$!
trap 'kill "$smoke" 2>/dev/null; [ -z "$rpid" ] || { kill "$rpid"; kill -CONT "$rpid"; } 2>/dev/null; rm -rf "$T"' EXIT

alive() { # alive PID: running or stopped, not a zombie
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

# smoke.sh's Redis step: silent servers and mqhub come first (up to ~90 s).
i=0
while [ -z "$rpid" ]; do
    f=$(ls "$T"/mqhub-peers-smoke.*/redis/pid 2>/dev/null | head -n 1)
    [ -z "$f" ] || rpid=$(cat "$f")
    [ -n "$rpid" ] && break
    alive "$smoke" || { echo "FAIL: smoke.sh ended before its Redis step"; cat "$T/smoke.log"; exit 1; }
    i=$((i + 1))
    [ "$i" -lt 1500 ] || { echo "FAIL: no Redis step in 150 s"; exit 1; }
    sleep 0.1
done
kill -STOP "$rpid"
kill -TERM "$smoke"
t0=$(date +%s)
i=0
while alive "$smoke" && [ "$i" -lt 600 ]; do # its trap waits for the driver: <= 10 s
    sleep 0.1
    i=$((i + 1))
done
echo "smoke.sh ended $(($(date +%s) - t0)) s after SIGTERM"
alive "$smoke" && { echo "FAIL: smoke.sh still runs 60 s after SIGTERM"; exit 1; }
i=0
while alive "$rpid" && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
fail=0
alive "$rpid" && { echo "FAIL: the frozen redis-server $rpid survived smoke.sh"; fail=1; }
left=$(ls -d "$T"/mqhub-peers-smoke.* 2>/dev/null)
[ -z "$left" ] || { echo "FAIL: smoke.sh left $left"; fail=1; }
[ "$fail" = 1 ] || echo "ok: Redis stopped, temp folder removed"
exit $fail
