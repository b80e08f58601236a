# hub.sh: what every examples/*/run.sh shares, sourced (`. "$HERE/../lib/hub.sh"`).
#
# Provides:
#   say MSG...               a "== MSG" progress line
#   fail MSG...              "FAIL: MSG" on stderr, exit 1
#   wait_for FILE PAT SECS   until a line of FILE matches PAT, else fail
#   start_hub                wipes $DIR, writes $DIR/config.lua (client
#                            127.0.0.1:$PORT, raft PORT+1, dashboard PORT+2),
#                            starts mqhubd (pid in $DIR/mqhubd.pid, log in
#                            $DIR/mqhubd.log) and waits up to 10 s until it answers
#   hub_cleanup              the EXIT trap it installs: SIGKILLs $PIDS (the
#                            script's own programs), then, unless KEEP=1, stops
#                            every hub of $DIR/mqhubd.pid and $DIR/n*/pid and
#                            WAITS for it to exit, so that whoever removes $DIR
#                            next does not race the hub's last writes
# Reads: BUILD (default ./build), DIR and PORT (the script sets its defaults
# before sourcing), KEEP (1: leave the hubs running). Sets BUILD's default,
# MQHUB (the CLI aimed at 127.0.0.1:$PORT; a cluster script resets it after)
# and PIDS="".

BUILD=${BUILD:-./build}
MQHUB="$BUILD/apps/mqhub/mqhub --server 127.0.0.1:$PORT"
PIDS=""

say() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

hub_cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    [ "${KEEP:-0}" != 1 ] || return 0
    for f in "$DIR/mqhubd.pid" "$DIR"/n*/pid; do
        [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
    for f in "$DIR/mqhubd.pid" "$DIR"/n*/pid; do
        [ -f "$f" ] && wait "$(cat "$f")" 2>/dev/null || true
    done
}
trap hub_cleanup EXIT

wait_for() {
    i=0
    while [ $i -lt $(($3 * 10)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        i=$((i + 1))
        sleep 0.1
    done
    fail "no '$2' in $1 within $3 s"
}

start_hub() {
    rm -rf "$DIR"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    cat > "$DIR/config.lua" <<CONF
node { id = 1, data = "$DIR/data", raft = "127.0.0.1:$((PORT + 1))" }
transport "tcp" { listen = "127.0.0.1:$PORT" }
transport "websocket" { listen = "127.0.0.1:$((PORT + 2))" }
log { level = "warn" }
CONF
    "$BUILD/apps/mqhubd/mqhubd" --config "$DIR/config.lua" > "$DIR/mqhubd.log" 2>&1 &
    echo $! > "$DIR/mqhubd.pid"
    i=0
    until $MQHUB queue list > /dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 100 ] || { cat "$DIR/mqhubd.log"; fail "mqhubd not ready within 10 s"; }
        sleep 0.1
    done
    say "mqhubd on 127.0.0.1:$PORT, dashboard http://127.0.0.1:$((PORT + 2))/, data in $DIR"
}
