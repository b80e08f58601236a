#!/bin/sh
# install_test.sh BUILD SOURCE BINDIR LIBDIR DATADIR INCLUDEDIR SYSCONFDIR
# What `cmake --install` gives a user, used from a temporary prefix (no
# DESTDIR; nothing of this build tree is run):
#   1. the files land where docs/operations.md "Install" says, and only those
#      (no test plugin, no version.h.in);
#   2. a plugin built with the installed mqhub-plugin.pc goes into its
#      plugindir;
#   3. the installed mqhubd starts from the installed mqhub.conf changed only
#      in ports and data folder (installed.sh): it finds the prefix's plugins
#      (tcp, websocket and that plugin, by name) and the prefix's dashboard
#      by itself;
#   4. the installed mqhub CLI pings, creates a queue, sends and receives
#      (with XDG_CONFIG_HOME in the temp dir: no saved context of the user's
#      applies); the installed mqhub-bench runs (--help); tcp.so and
#      websocket.so were loaded from the prefix, the dashboard is served from
#      the prefix;
#   5. tiny_client.c, built with the installed mqhub.pc and with
#      find_package(mqhub), sends to it through the installed libmqhub;
#   6. SIGTERM stops mqhubd with exit status 0.
# BINDIR..SYSCONFDIR are this build's CMAKE_INSTALL_* folders (relative).
set -u
build=$1 src=$2 bindir=$3 libdir=$4 datadir=$5 includedir=$6 sysconfdir=$7
for d in "$bindir" "$libdir" "$datadir" "$includedir" "$sysconfdir"; do
    case $d in
    /*) echo "skip: $d is absolute, this tree does not install under a prefix"; exit 77 ;;
    esac
done
. "$src/tests/install/installed.sh"

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
export XDG_CONFIG_HOME="$tmp/config"

# 1. The layout.
cmake --install "$build" --prefix "$p" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install"; }
for f in "$bindir/mqhubd" "$bindir/mqhub" "$bindir/mqhub-bench" "$libdir/mqhub/tcp.so" \
    "$libdir/mqhub/websocket.so" "$datadir/mqhub/www/index.html" "$includedir/mqhub/client.h" \
    "$includedir/mqhub/plugin.h" \
    "$includedir/mqhub/version.h" "$libdir/libmqhub.so" "$libdir/pkgconfig/mqhub.pc" \
    "$libdir/pkgconfig/mqhub-plugin.pc" "$libdir/cmake/mqhub/mqhubConfig.cmake" \
    "$libdir/cmake/mqhub/mqhubConfigVersion.cmake" "$libdir/cmake/mqhub/mqhubTargets.cmake" \
    "$sysconfdir/mqhub/mqhub.conf" lib/systemd/system/mqhubd.service \
    "$datadir/bash-completion/completions/mqhub"; do
    [ -e "$p/$f" ] || fail "not installed: $f"
done
for f in "$libdir/mqhub/good.so" "$libdir/mqhub/noentry.so" "$libdir/mqhub/oldabi.so" \
    "$libdir/mqhub/badinit.so" "$includedir/mqhub/version.h.in"; do
    [ ! -e "$p/$f" ] || fail "installed, should not be: $f"
done

# 2. A plugin, built as mqhub-plugin.pc says, into its plugindir.
plugindir=$(pkg-config --variable=plugindir mqhub-plugin) || fail "pkg-config mqhub-plugin"
[ "$(cd "$plugindir" && pwd -P)" = "$(cd "$p/$libdir/mqhub" && pwd -P)" ] ||
    fail "mqhub-plugin.pc: plugindir $plugindir is not $p/$libdir/mqhub"
cc -shared -fPIC $(pkg-config --cflags mqhub-plugin) -o "$plugindir/heartbeat.so" \
    "$src/examples/plugin-minimal/heartbeat.c" || fail "heartbeat.c does not build with mqhub-plugin.pc"

# 3. The installed daemon, defaults as installed.
extra_conf='transport "heartbeat" { interval = 1 }'
installed_start "$p/$bindir" "$p/$sysconfdir/mqhub/mqhub.conf" "$tmp"

# 4. The CLI, mqhub-bench and the dashboard.
"$p/$bindir/mqhub-bench" --help >"$tmp/bench-help.out" 2>&1 ||
    { cat "$tmp/bench-help.out"; fail "installed mqhub-bench --help does not exit 0"; }
grep -q "usage: mqhub-bench" "$tmp/bench-help.out" ||
    fail "installed mqhub-bench --help printed: $(head -3 "$tmp/bench-help.out")"
cli queue create install-q || fail "mqhub queue create"
cli send install-q 'hello from the install test' || fail "mqhub send"
out=$(cli recv install-q --visibility 30) || fail "mqhub recv"
case $out in
*'hello from the install test'*) ;;
*) fail "mqhub recv printed: $out" ;;
esac
installed_plugins "$p/$libdir/mqhub"
installed_dashboard "$p/$datadir/mqhub/www"
i=0
until grep -q 'comp=heartbeat msg="beat 1"' "$tmp/mqhubd.log"; do
    i=$((i + 1))
    [ $i -lt 50 ] || fail "the heartbeat plugin did not beat"
    sleep 0.1
done

# 5. A client program, built with pkg-config and with CMake.
cc -o "$tmp/tiny_pc" "$src/tests/install/tiny_client.c" $(pkg-config --cflags --libs mqhub) ||
    fail "tiny_client does not build with pkg-config mqhub"
LD_LIBRARY_PATH="$p/$libdir" "$tmp/tiny_pc" "127.0.0.1:$tcp" install-q || fail "tiny_client (pkg-config)"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$p" \
    >"$tmp/consumer.log" 2>&1 && cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 ||
    { cat "$tmp/consumer.log"; fail "tiny_client does not build with find_package(mqhub)"; }
grep -qx "mqhub_DIR:PATH=$p/$libdir/cmake/mqhub" "$tmp/consumer/CMakeCache.txt" ||
    fail "find_package(mqhub) found another mqhub: $(grep mqhub_DIR "$tmp/consumer/CMakeCache.txt")"
"$tmp/consumer/tiny_client" "127.0.0.1:$tcp" install-q || fail "tiny_client (CMake)"

# 6. A graceful stop.
installed_stop
echo "ok: installed in $p, the installed mqhubd served the CLI, the dashboard, a plugin and two clients"
