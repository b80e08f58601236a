#!/bin/sh
# install_test.sh BUILD SOURCE BINDIR LIBDIR DATADIR INCLUDEDIR SYSCONFDIR
# What `cmake --install` gives a user, used from a temporary prefix (no
# DESTDIR; nothing of this build tree is run):
#   1. the files land where docs/operations.md "Install" says;
#   2. the installed mqhub.conf, moved to free loopback ports, a temporary data
#      folder and the prefix's plugin folder and dashboard, starts the
#      installed mqhubd, which also loads examples/plugin-minimal by name
#      (built with the installed mqhub-plugin.pc, put in its plugindir);
#   3. the installed mqhub CLI pings, creates a queue, sends and receives; GET /
#      answers the dashboard's page;
#   4. tiny_client.c, built with the installed mqhub.pc and with
#      find_package(mqhub), sends to it through the installed libmqhub;
#   5. SIGTERM stops mqhubd with exit status 0.
# BINDIR..SYSCONFDIR are this build's CMAKE_INSTALL_* folders (relative).
set -u
build=$1 src=$2 bindir=$3 libdir=$4 datadir=$5 includedir=$6 sysconfdir=$7
for d in "$bindir" "$libdir" "$datadir" "$includedir" "$sysconfdir"; do
    case $d in
    /*) echo "skip: $d is absolute, this tree does not install under a prefix"; exit 77 ;;
    esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-install.XXXXXX")
p=$tmp/prefix
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$tmp/mqhubd.log" ] && cat "$tmp/mqhubd.log"
    exit 1
}
export PKG_CONFIG_PATH="$p/$libdir/pkgconfig"

# 1. The layout.
cmake --install "$build" --prefix "$p" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install"; }
for f in "$bindir/mqhubd" "$bindir/mqhub" "$libdir/mqhub/tcp.so" "$libdir/mqhub/websocket.so" \
    "$datadir/mqhub/www/index.html" "$includedir/mqhub/client.h" "$includedir/mqhub/plugin.h" \
    "$includedir/mqhub/version.h" "$libdir/libmqhub.so" "$libdir/pkgconfig/mqhub.pc" \
    "$libdir/pkgconfig/mqhub-plugin.pc" "$libdir/cmake/mqhub/mqhubConfig.cmake" \
    "$libdir/cmake/mqhub/mqhubConfigVersion.cmake" "$sysconfdir/mqhub/mqhub.conf" \
    lib/systemd/system/mqhubd.service; do
    [ -e "$p/$f" ] || fail "not installed: $f"
done
for f in good noentry oldabi badinit; do # tests/plugins' plugins stay in the build tree
    [ ! -e "$p/$libdir/mqhub/$f.so" ] || fail "test plugin installed: $f.so"
done

# 2. The plugin example against the installed mqhub-plugin.pc, into its plugindir.
make -s -C "$src/examples/plugin-minimal" OUT="$tmp" install >"$tmp/example.log" 2>&1 ||
    { cat "$tmp/example.log"; fail "examples/plugin-minimal does not build and install"; }
[ -f "$p/$libdir/mqhub/heartbeat.so" ] || fail "heartbeat.so not in the plugindir"

# The installed configuration, moved off its fixed ports and /var/lib/mqhub.
set -- $(python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
tcp=$1 raft=$2 ws=$3
sed -e "s/127\.0\.0\.1:6200/127.0.0.1:$tcp/" -e "s/127\.0\.0\.1:6300/127.0.0.1:$raft/" \
    -e "s/127\.0\.0\.1:6280/127.0.0.1:$ws/" \
    -e "s|\"/var/lib/mqhub\"|\"$tmp/data\", plugin_dir = \"$p/$libdir/mqhub\"|" \
    -e "s|^transport \"websocket\" {|transport \"websocket\" { www = \"$p/$datadir/mqhub/www\",|" \
    "$p/$sysconfdir/mqhub/mqhub.conf" >"$tmp/mqhub.conf"
echo 'transport "heartbeat" { interval = 1 }' >>"$tmp/mqhub.conf"
grep -v '^ *--' "$tmp/mqhub.conf" | grep -Eq ':6200|:6280|:6300|/var/lib' &&
    fail "the installed mqhub.conf changed; teach this test its new form: $(cat "$tmp/mqhub.conf")"
grep -q 'plugin_dir = ' "$tmp/mqhub.conf" && grep -q 'www = ' "$tmp/mqhub.conf" ||
    fail "node or websocket line not found in the installed mqhub.conf"

"$p/$bindir/mqhubd" --config "$tmp/mqhub.conf" >"$tmp/mqhubd.log" 2>&1 &
pid=$!
cli() { "$p/$bindir/mqhub" --server "127.0.0.1:$tcp" --timeout 2000 "$@"; }
i=0
until cli ping >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { wait $pid; pid=; fail "mqhubd exited"; }
    i=$((i + 1))
    [ $i -lt 100 ] || fail "mqhubd not ready after 10 s"
    sleep 0.1
done

# 3. The CLI and the dashboard.
cli ping || fail "mqhub ping"
cli queue create install-q || fail "mqhub queue create"
cli send install-q 'hello from the install test' || fail "mqhub send"
out=$(cli recv install-q --visibility 30) || fail "mqhub recv"
case $out in
*'hello from the install test'*) ;;
*) fail "mqhub recv printed: $out" ;;
esac
page=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://127.0.0.1:$ws/") ||
    fail "GET / of the dashboard"
case $page in
*'<title>mqhub dashboard</title>'*) ;;
*) fail "GET / is not the dashboard: $page" ;;
esac
i=0
until grep -q 'comp=heartbeat msg="beat 1"' "$tmp/mqhubd.log"; do
    i=$((i + 1))
    [ $i -lt 50 ] || fail "the heartbeat plugin did not beat"
    sleep 0.1
done

# 4. A client program, built with pkg-config and with CMake.
cc -o "$tmp/tiny_pc" "$src/tests/install/tiny_client.c" $(pkg-config --cflags --libs mqhub) ||
    fail "tiny_client does not build with pkg-config mqhub"
LD_LIBRARY_PATH="$p/$libdir" "$tmp/tiny_pc" "127.0.0.1:$tcp" install-q || fail "tiny_client (pkg-config)"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$p" \
    >"$tmp/consumer.log" 2>&1 && cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 ||
    { cat "$tmp/consumer.log"; fail "tiny_client does not build with find_package(mqhub)"; }
grep -qx "mqhub_DIR:PATH=$p/$libdir/cmake/mqhub" "$tmp/consumer/CMakeCache.txt" ||
    fail "find_package(mqhub) found another mqhub: $(grep mqhub_DIR "$tmp/consumer/CMakeCache.txt")"
"$tmp/consumer/tiny_client" "127.0.0.1:$tcp" install-q || fail "tiny_client (CMake)"

# 5. A graceful stop.
kill -TERM $pid
wait $pid
rc=$?
pid=
[ $rc -eq 0 ] || fail "mqhubd exited $rc on SIGTERM"
echo "ok: installed in $p, the installed mqhubd served the CLI, the dashboard, a plugin and two clients"
