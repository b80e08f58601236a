#!/bin/sh
# run_example.sh: run one examples/<name>/run.sh as a test (tests/examples/CMakeLists.txt).
#
#   run_example.sh BUILD_DIR EXAMPLE_RUN_SH PORTS
#
# Gives the example a fresh temporary data directory (removed when it passes,
# kept and named when it fails) and a base port PORT such that PORT..PORT+PORTS-1
# are free on loopback now, then runs it with BUILD, DIR and PORT set, and
# XDG_CONFIG_HOME in its temporary folder (MQHUB_CONTEXT unset): the mqhub
# CLI it runs never reads the developer's saved contexts. The example's exit
# code is the test's.
set -eu
BUILD=$1
RUN=$2
SPAN=$3

# A base port whose whole span is free (bind test, loopback only; 50 tries),
# below the kernel's ephemeral range: a node restarted in the middle of a run
# must find its ports still free, not taken by some client's outgoing socket.
PORT=$(python3 - "$SPAN" <<'PY'
import random, socket, sys
span = int(sys.argv[1])
with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    ephemeral_low = int(f.read().split()[0])
top = min(ephemeral_low, 65536) - span
for _ in range(50):
    base = random.randrange(min(10000, top - 1000), top)
    socks = []
    try:
        for p in range(base, base + span):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
else:
    sys.exit("no free span of %d ports" % span)
PY
)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-example.XXXXXX")
echo "example $RUN: BUILD=$BUILD DIR=$DIR/data PORT=$PORT"
unset MQHUB_CONTEXT
if BUILD=$BUILD DIR=$DIR/data PORT=$PORT XDG_CONFIG_HOME=$DIR/config-home "$RUN"; then
    rm -rf "$DIR"
else
    rc=$?
    echo "example failed (exit $rc); its data and logs are kept in $DIR/data" >&2
    exit $rc
fi
