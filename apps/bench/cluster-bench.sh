#!/bin/sh
# cluster-bench.sh BUILD BASEPORT [mqhub-bench produce args]: starts three
# mqhubd from the build tree BUILD on loopback (clients on BASEPORT+1..3,
# raft on BASEPORT+101..103) with one cluster secret — and with TLS=1 also
# mutual peer TLS from a throwaway CA — waits for a leader, runs
# `mqhub-bench produce` against the three, then stops them. Everything lives
# in a temporary folder removed at the end (docs/benchmarks.md "Peer TLS").
set -eu
B=$1 base=$2
shift 2
D=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-cluster-bench.XXXXXX")
trap 'for p in "$D"/n*/pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; sleep 1; rm -rf "$D"' EXIT
openssl rand -hex 32 >"$D/cluster.secret"
chmod 600 "$D/cluster.secret"
tls=""
if [ "${TLS:-0}" = 1 ]; then
    (cd "$D" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node" \
            -keyout node.key -out node.csr 2>/dev/null &&
        openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -out node.pem 2>/dev/null)
    tls=", peer_tls_cert = \"$D/node.pem\", peer_tls_key = \"$D/node.key\", peer_tls_ca = \"$D/ca.pem\""
fi
for n in 1 2 3; do
    mkdir -p "$D/n$n"
    {
        echo "node { id = $n, data = \"$D/n$n/data\", raft = \"127.0.0.1:$((base + 100 + n))\","
        echo "       client = \"127.0.0.1:$((base + n))\", cluster_secret_file = \"$D/cluster.secret\"$tls }"
        echo "transport \"tcp\" { listen = \"127.0.0.1:$((base + n))\" }"
        echo "log { level = \"warn\" }"
        echo "peers {"
        for p in 1 2 3; do
            [ $p = $n ] ||
                echo "  [$p] = { raft = \"127.0.0.1:$((base + 100 + p))\", client = \"127.0.0.1:$((base + p))\" },"
        done
        echo "}"
    } >"$D/n$n/config.lua"
    "$B/apps/mqhubd/mqhubd" --config "$D/n$n/config.lua" >>"$D/n$n/mqhubd.log" 2>&1 &
    echo $! >"$D/n$n/pid"
done
S=127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))
i=0
until "$B/apps/mqhub/mqhub" --server "$S" --timeout 1000 cluster status 2>/dev/null | grep -q "leader: node"; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "no leader after 10 s; logs in $D/n*/mqhubd.log:" >&2; cat "$D"/n*/mqhubd.log >&2; exit 1; }
    sleep 0.1
done
"$B/apps/bench/mqhub-bench" produce --server "$S" "$@"
