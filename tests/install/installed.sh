# installed.sh: sourced by install_test.sh and package_test.sh. Runs an
# installed mqhubd as its installed configuration has it, changed only where
# a test must: free loopback ports, a temporary data folder and the debug log
# level (which names the plugin files loaded). Nothing else, so the daemon's
# own defaults must find the plugins and the dashboard.
#   installed_start BINDIR CONF TMP  copy CONF to TMP/mqhub.conf (ports, data,
#                    log), append $extra_conf, start BINDIR/mqhubd, wait until
#                    the CLI pings; sets tcp, ws, pid; log in TMP/mqhubd.log
#   cli ARGS...      the installed CLI against it
#   installed_plugins DIR  tcp.so and websocket.so were loaded from DIR
#   installed_dashboard WWW  GET / answers the dashboard's page, and a file
#                    put in WWW is served: WWW is the folder served
#   installed_stop   SIGTERM; fails unless mqhubd exits 0
# The caller defines fail() and kills $pid on exit.

installed_start() {
    bin=$1 conf=$2 tmp=$3
    set -- $(python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
    tcp=$1 raft=$2 ws=$3
    sed -e "s/127\.0\.0\.1:6200/127.0.0.1:$tcp/" -e "s/127\.0\.0\.1:6300/127.0.0.1:$raft/" \
        -e "s/127\.0\.0\.1:6280/127.0.0.1:$ws/" -e "s|\"/var/lib/mqhub\"|\"$tmp/data\"|" \
        "$conf" >"$tmp/mqhub.conf"
    grep -v '^ *--' "$tmp/mqhub.conf" | grep -Eq ':6200|:6280|:6300|/var/lib|plugin_dir|www' &&
        fail "the installed mqhub.conf changed; teach installed.sh its new form: $(cat "$tmp/mqhub.conf")"
    printf '%s\n' 'log { level = "debug" }' "${extra_conf:-}" >>"$tmp/mqhub.conf"
    "$bin/mqhubd" --config "$tmp/mqhub.conf" >"$tmp/mqhubd.log" 2>&1 &
    pid=$!
    i=0
    until cli ping >/dev/null 2>&1; do
        kill -0 $pid 2>/dev/null || { wait $pid; pid=; fail "mqhubd exited"; }
        i=$((i + 1))
        [ $i -lt 100 ] || fail "mqhubd not ready after 10 s"
        sleep 0.1
    done
}

cli() { "$bin/mqhub" --server "127.0.0.1:$tcp" --timeout 2000 "$@"; }

installed_plugins() {
    for so in tcp websocket; do
        path=$(sed -n "s|.*msg=\"loaded \(.*/$so\.so\) ($so)\".*|\1|p" "$tmp/mqhubd.log")
        [ -n "$path" ] && [ "$(cd "${path%/*}" && pwd -P)" = "$(cd "$1" && pwd -P)" ] ||
            fail "$so.so loaded from ${path:-nowhere}, not from $1"
    done
}

installed_dashboard() {
    echo "served from $1" >"$1/install-test.txt"
    out=$(python3 -c 'import sys, urllib.request
for path in "/", "/install-test.txt":
    print(urllib.request.urlopen(sys.argv[1] + path, timeout=5).read().decode())' \
        "http://127.0.0.1:$ws" 2>&1)
    rm -f "$1/install-test.txt"
    case $out in
    *'<title>mqhub dashboard</title>'*"served from $1"*) ;;
    *) fail "the dashboard is not served from $1: $out" ;;
    esac
}

installed_stop() {
    kill -TERM $pid
    wait $pid
    rc=$?
    pid=
    [ $rc -eq 0 ] || fail "mqhubd exited $rc on SIGTERM"
}
