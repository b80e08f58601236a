#!/bin/sh
# cluster-bench.sh BUILD BASEPORT [mqhub-bench produce args]: starts NODES (3,
# or 1) mqhubd from the build tree BUILD on loopback (clients on
# BASEPORT+1..3, raft on BASEPORT+101..103) with one cluster secret, waits for
# a leader, runs `mqhub-bench produce` against them, then stops them.
#   TLS=1         mutual peer TLS (node.peer_tls_*; 3 nodes only)
#   CLIENT_TLS=1  the TCP transport speaks TLS; the bench verifies it (--ca)
#   AUTH=1        a root token, and the bench says hello as a named user with
#                 send, receive and manage on its queue only
#   SECURE=1      all three (docs/benchmarks.md "TLS + auth")
#   LOG_LEVEL=info    each node's log level (default warn)
#   HTTP=1        each node's WebSocket transport (/metrics) on BASEPORT+201..203
#   EXTRA_CONFIG='snapshot { threshold = 65536 }'   appended to each config
# Certificates come from a throwaway CA (one key and certificate, for
# 127.0.0.1, serves both the peers and the clients). Everything lives in a
# temporary folder removed at the end (docs/benchmarks.md "Peer TLS").
set -eu
B=$1 base=$2
shift 2
nodes=${NODES:-3}
if [ "${SECURE:-0}" = 1 ]; then
    TLS=1 CLIENT_TLS=1 AUTH=1
    [ "$nodes" -gt 1 ] || TLS=0
fi
D=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-cluster-bench.XXXXXX")
trap 'for p in "$D"/n*/pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; sleep 1; rm -rf "$D"' EXIT
openssl rand -hex 32 >"$D/cluster.secret"
chmod 600 "$D/cluster.secret"
if [ "${TLS:-0}" = 1 ] || [ "${CLIENT_TLS:-0}" = 1 ]; then
    (cd "$D" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node" \
            -keyout node.key -out node.csr 2>/dev/null &&
        printf 'subjectAltName = IP:127.0.0.1\n' >san.ext &&
        openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out node.pem 2>/dev/null)
fi
tls="" tcp_tls="" ca="" root="" user=""
[ "${TLS:-0}" = 1 ] &&
    tls=", peer_tls_cert = \"$D/node.pem\", peer_tls_key = \"$D/node.key\", peer_tls_ca = \"$D/ca.pem\""
if [ "${CLIENT_TLS:-0}" = 1 ]; then
    tcp_tls=", tls_cert = \"$D/node.pem\", tls_key = \"$D/node.key\""
    ca="$D/ca.pem"
fi
[ "${AUTH:-0}" = 1 ] && root=$(openssl rand -hex 32)
for n in $(seq 1 "$nodes"); do
    mkdir -p "$D/n$n"
    {
        echo "node { id = $n, data = \"$D/n$n/data\", raft = \"127.0.0.1:$((base + 100 + n))\","
        echo "       client = \"127.0.0.1:$((base + n))\", cluster_secret_file = \"$D/cluster.secret\"$tls }"
        echo "transport \"tcp\" { listen = \"127.0.0.1:$((base + n))\"$tcp_tls }"
        [ "${HTTP:-0}" = 1 ] && echo "transport \"websocket\" { listen = \"127.0.0.1:$((base + 200 + n))\" }"
        echo "log { level = \"${LOG_LEVEL:-warn}\" }"
        echo "${EXTRA_CONFIG:-}"
        [ -z "$root" ] || echo "auth { token = \"$root\" }"
        if [ "$nodes" -gt 1 ]; then
            echo "peers {"
            for p in $(seq 1 "$nodes"); do
                [ "$p" = "$n" ] ||
                    echo "  [$p] = { raft = \"127.0.0.1:$((base + 100 + p))\", client = \"127.0.0.1:$((base + p))\" },"
            done
            echo "}"
        fi
    } >"$D/n$n/config.lua"
    "$B/apps/mqhubd/mqhubd" --config "$D/n$n/config.lua" >>"$D/n$n/mqhubd.log" 2>&1 &
    echo $! >"$D/n$n/pid"
done
S=$(for n in $(seq 1 "$nodes"); do printf '127.0.0.1:%s,' $((base + n)); done)
S=${S%,}
mqhub() { "$B/apps/mqhub/mqhub" --server "$S" ${ca:+--ca "$ca"} ${root:+--token "$root"} "$@"; }
i=0
until mqhub --timeout 1000 cluster status 2>/dev/null | grep -q "leader: node"; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "no leader after 10 s; logs in $D/n*/mqhubd.log:" >&2; cat "$D"/n*/mqhubd.log >&2; exit 1; }
    sleep 0.1
done
if [ -n "$root" ]; then
    user=$(openssl rand -hex 32)
    mqhub user add bench --user-token "$user" --grant send:bench --grant receive:bench \
        --grant manage:bench >/dev/null
    # A follower knows the user once it applied user.create: wait for each.
    for n in $(seq 1 "$nodes"); do
        i=0
        until "$B/apps/mqhub/mqhub" --server "127.0.0.1:$((base + n))" ${ca:+--ca "$ca"} --token "$user" \
            ping >/dev/null 2>&1; do
            i=$((i + 1))
            [ $i -lt 100 ] || { echo "node $n does not know user bench after 10 s" >&2; exit 1; }
            sleep 0.1
        done
    done
fi
"$B/apps/bench/mqhub-bench" produce --server "$S" ${ca:+--ca "$ca"} ${user:+--token "$user"} "$@"
