#!/bin/sh
# package_test.sh SOURCE WORK: runs `make package` (the .deb, built in
# WORK/build-deb from a tree configured for /usr; kept between runs, so a rerun
# is incremental) and checks the package with dpkg-deb:
#   - the files are in place, /etc/mqhub/mqhub.conf is a conffile, the
#     maintainer scripts are there and executable;
#   - the package's mqhubd, run from the unpacked package with its
#     configuration changed only in ports and data folder (installed.sh),
#     loads the package's plugins and serves the package's dashboard;
#   - the unit starts the package's mqhubd with the package's configuration
#     (and passes systemd-analyze verify, where systemd is installed);
#   - Depends names every package dpkg-shlibdeps finds for the binaries,
#     and libcurl4 (>= 7.85) for the webhook plugin.
set -u
src=$1 work=$2
. "$src/tests/install/installed.sh"
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$work/run/mqhubd.log" ] && cat "$work/run/mqhubd.log"
    exit 1
}
mkdir -p "$work"
rm -rf "$work/root" "$work/control" "$work/shlibdeps" "$work/run" "$work"/build-deb/mqhub_*.deb
env -u MAKEFLAGS -u MFLAGS make -C "$src" package DEB="$work/build-deb" >"$work/make.log" 2>&1 ||
    { tail -n 60 "$work/make.log"; fail "make package"; }
set -- "$work"/build-deb/mqhub_*.deb
[ $# -eq 1 ] && [ -f "$1" ] || fail "expected one mqhub_*.deb in $work/build-deb, found: $*"
deb=$1
dpkg-deb -I "$deb"
[ "$(dpkg-deb -f "$deb" Package)" = mqhub ] || fail "Package is not mqhub"

# Control files.
dpkg-deb -e "$deb" "$work/control" || fail "dpkg-deb -e"
grep -qx /etc/mqhub/mqhub.conf "$work/control/conffiles" ||
    fail "/etc/mqhub/mqhub.conf is not a conffile: $(cat "$work/control/conffiles")"
for s in postinst prerm postrm; do
    [ -x "$work/control/$s" ] || fail "no executable $s"
done
grep -qx 'activate-noawait ldconfig' "$work/control/triggers" || fail "no ldconfig trigger"

# Files.
dpkg-deb -c "$deb" >"$work/contents" || fail "dpkg-deb -c"
for f in ./usr/bin/mqhubd ./usr/bin/mqhub ./etc/mqhub/mqhub.conf \
    ./usr/lib/systemd/system/mqhubd.service ./usr/share/mqhub/www/index.html \
    ./usr/include/mqhub/client.h ./usr/include/mqhub/plugin.h ./usr/include/mqhub/version.h \
    ./usr/share/doc/mqhub/copyright; do
    grep -q " $f\$" "$work/contents" || fail "not in the package: $f"
done
for f in /mqhub/tcp.so /mqhub/websocket.so /libmqhub.so.0 /pkgconfig/mqhub.pc \
    /pkgconfig/mqhub-plugin.pc /cmake/mqhub/mqhubConfig.cmake; do
    grep -Eq " \./usr/lib/.*$f( -> .*)?\$" "$work/contents" || fail "not in the package: /usr/lib/...$f"
done
dpkg-deb -x "$deb" "$work/root" || fail "dpkg-deb -x"
root=$work/root

# The package's daemon finds the package's plugins and dashboard by itself.
mkdir -p "$work/run"
installed_start "$root/usr/bin" "$root/etc/mqhub/mqhub.conf" "$work/run"
plugindir=$(dirname "$(find "$root/usr/lib" -name tcp.so)")
installed_plugins "$plugindir"
installed_dashboard "$root/usr/share/mqhub/www"
installed_stop

# The unit: the package's mqhubd and configuration.
unit=$root/usr/lib/systemd/system/mqhubd.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "$exec_start" = "/usr/bin/mqhubd --config /etc/mqhub/mqhub.conf" ] ||
    fail "ExecStart=$exec_start"
grep -qx 'User=mqhub' "$unit" && grep -qx 'StateDirectory=mqhub' "$unit" &&
    grep -qx 'Restart=on-failure' "$unit" || fail "the unit lost User, StateDirectory or Restart"
grep -q '"/var/lib/mqhub"' "$root/etc/mqhub/mqhub.conf" || fail "mqhub.conf keeps data elsewhere"
if command -v systemd-analyze >/dev/null; then # systemd's own check, where installed
    out=$(systemd-analyze verify "$unit" 2>&1 | grep -v '/usr/bin/mqhubd is not executable')
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi

# Depends covers what the binaries link.
mkdir -p "$work/shlibdeps/debian"
printf 'Source: mqhub\n\nPackage: mqhub\nArchitecture: any\n' >"$work/shlibdeps/debian/control"
elfs=$(find "$root" -type f \( -name '*.so*' -o -path '*/bin/*' \))
found=$(cd "$work/shlibdeps" && dpkg-shlibdeps -O $elfs 2>/dev/null) ||
    fail "dpkg-shlibdeps failed"
depends=$(dpkg-deb -f "$deb" Depends)
for pkg in $(echo "${found#shlibs:Depends=}" | tr ',' '\n' | sed 's/ *(.*//; s/^ *//'); do
    case ", $depends," in
    *", $pkg "* | *", $pkg,"*) ;;
    *) fail "Depends lacks $pkg (dpkg-shlibdeps: $found)" ;;
    esac
done
# ... and the libcurl the webhook plugin needs, which dpkg-shlibdeps puts
# lower (7.16.3): the plugin refuses a libcurl before 7.85 at start.
case ", $depends," in
*", libcurl4 (>= 7.85),"*) ;;
*) fail "Depends lacks libcurl4 (>= 7.85): $depends" ;;
esac
echo "ok: $deb"
