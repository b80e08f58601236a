#!/bin/sh
# build-libraft.sh: Debian's libraft 0.22.1 with mqhub's two patches, installed
# as the packages libraft0 and libraft-dev at version $VERSION (Debian's
# bookworm-backports version + "+mqhub1", so apt keeps it over the unpatched
# build until Debian ships a newer one). Called by tools/install-deps.sh.
#
# The patches (this folder, *.patch) change speed only, never formats:
#   0001  raft_uv's CRC-32 eight bytes per step (was a byte at a time)
#   0002  a closed segment's io_destroy() in the threadpool (was on the loop)
# docs/benchmarks.md "libraft patched" has the figures, docs/operations.md
# "libraft" how to go back to Debian's build.
#
# The source is Debian's upstream tarball of the package (pool/main/r/raft),
# checked against the SHA-256 of its .dsc; the build is raft's own autotools
# build with the flags Debian uses (-O2 -g, the same configure features).
# Idempotent: exits at once when $VERSION is installed. Needs root (or sudo),
# the network, and the build tools install-deps.sh installs first.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
UPSTREAM=0.22.1
DEBIAN_VERSION=0.22.1-1~bpo12+1
VERSION=$DEBIAN_VERSION+mqhub1
ORIG_SHA256=7e45b6f24f3671c9bfd5b146814493f87cb2e560712bd469c1f5969a4b94291a
MIRROR=${MIRROR:-http://deb.debian.org/debian}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

installed() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
if [ "$(installed libraft0)" = "$VERSION" ] && [ "$(installed libraft-dev)" = "$VERSION" ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
orig="raft_$UPSTREAM.orig.tar.gz"

echo "build-libraft: fetching $MIRROR/pool/main/r/raft/$orig"
curl -fsS --retry 3 -o "$work/$orig" "$MIRROR/pool/main/r/raft/$orig"
echo "$ORIG_SHA256  $work/$orig" | sha256sum -c --quiet
tar -xzf "$work/$orig" -C "$work"
src="$work/raft-$UPSTREAM"
for p in "$here"/*.patch; do
    echo "build-libraft: applying $(basename "$p")"
    patch -s -p1 -d "$src" < "$p"
done

echo "build-libraft: building (autoreconf, configure, make)"
(cd "$src" && autoreconf -i >/dev/null 2>&1 &&
    CFLAGS="-g -O2" ./configure -q --prefix=/usr --libdir="/usr/lib/$multiarch" \
        --disable-example --disable-benchmark >/dev/null &&
    make -s -j"$(nproc)" >/dev/null && make -s install DESTDIR="$work/stage" >/dev/null)
rm -f "$work/stage/usr/lib/$multiarch"/*.la

# Two package trees, split the way Debian splits them.
lib="$work/libraft0" dev="$work/libraft-dev"
mkdir -p "$lib/DEBIAN" "$lib/usr/lib/$multiarch" "$lib/usr/share/doc/libraft0" \
    "$dev/DEBIAN" "$dev/usr/lib/$multiarch" "$dev/usr/share/doc/libraft-dev"
mv "$work/stage/usr/lib/$multiarch"/libraft.so.0* "$lib/usr/lib/$multiarch/"
mv "$work/stage/usr/include" "$dev/usr/"
mv "$work/stage/usr/lib/$multiarch"/* "$dev/usr/lib/$multiarch/"
for d in "$lib/usr/share/doc/libraft0" "$dev/usr/share/doc/libraft-dev"; do
    cp "$src/LICENSE" "$d/copyright"
    cp "$here"/*.patch "$d/"
done

cat > "$lib/DEBIAN/control" <<EOF
Package: libraft0
Source: raft
Version: $VERSION
Architecture: $arch
Multi-Arch: same
Maintainer: mqhub developers <mqhub@localhost>
Depends: libc6 (>= 2.17), liblz4-1 (>= 0.0~r127), libuv1 (>= 1.4.2)
Section: libs
Priority: optional
Description: Raft consensus protocol implementation - shared library (mqhub patches)
 Debian's libraft $DEBIAN_VERSION rebuilt with mqhub's patches: a faster CRC-32
 in raft_uv and segment AIO contexts released off the event loop.
EOF
echo "libraft 0 libraft0 (>= $UPSTREAM)" > "$lib/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$lib/DEBIAN/triggers"

cat > "$dev/DEBIAN/control" <<EOF
Package: libraft-dev
Source: raft
Version: $VERSION
Architecture: $arch
Multi-Arch: same
Maintainer: mqhub developers <mqhub@localhost>
Depends: libraft0 (= $VERSION), libuv1-dev, liblz4-dev
Section: libdevel
Priority: optional
Description: Raft consensus protocol implementation - development files (mqhub patches)
 Headers, static library and pkg-config file of Debian's libraft $DEBIAN_VERSION
 rebuilt with mqhub's patches.
EOF

dpkg-deb --root-owner-group -Zxz --build "$lib" "$work/libraft0_${VERSION}_$arch.deb" >/dev/null
dpkg-deb --root-owner-group -Zxz --build "$dev" "$work/libraft-dev_${VERSION}_$arch.deb" >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "$work/libraft0_${VERSION}_$arch.deb" "$work/libraft-dev_${VERSION}_$arch.deb"
echo "build-libraft: installed libraft0 and libraft-dev $VERSION"
