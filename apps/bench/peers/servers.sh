# servers.sh: start and stop the peer servers on loopback, for run.sh and
# smoke.sh (sourced; POSIX sh). Everything lives under $PEERS_DIR (a temp
# folder the caller makes and removes); peers_stop_all, from the caller's
# trap, stops every daemon started here and removes their data. Ports:
# $PEERS_BASE + the offsets below.
#
#   peers_start_redis             -> REDIS_URL     (appendonly, appendfsync always)
#   peers_start_nats N            -> NATS_URL      (JetStream; N = 1 or 3, routes)
#   peers_start_rabbit N          -> RABBIT_URL    (N = 1 or 3: join_cluster)
#   peers_stop_all
#   peers_pick_base               -> a free PEERS_BASE
#   peers_with_mqhub N CMD        -> MQHUB_URL     (cluster-bench.sh; CMD runs meanwhile)

# shellcheck disable=SC2034 # REDIS_URL & co are read by the sourcing script
peers_log() { printf '%s peers: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# A base port with BASE..BASE+210 free on loopback.
peers_pick_base() {
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        b=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000))
        [ -z "$(ss -Htln "sport >= :$b and sport <= :$((b + 210))")" ] && { echo "$b"; return 0; }
    done
    return 1
}

# Wait up to $2 tenths of a second for command $1 (eval'd) to succeed.
peers_wait() {
    i=0
    until eval "$1" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt "$2" ] || return 1
        sleep 0.1
    done
}

peers_start_redis() {
    port=$((PEERS_BASE + 10))
    mkdir -p "$PEERS_DIR/redis"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$PEERS_DIR/redis" --save "" \
        --appendonly yes --appendfsync always --protected-mode yes \
        --logfile "$PEERS_DIR/redis/redis.log" &
    echo $! >"$PEERS_DIR/redis/pid"
    REDIS_URL=127.0.0.1:$port
    # timeout: a redis-cli ping never returns from a server that accepted
    # and then stopped (smoke_signal_test freezes it as soon as it starts),
    # and sh runs the caller's TERM trap only between commands.
    peers_wait "timeout 2 redis-cli -p $port ping | grep -q PONG" 100 ||
        { peers_log "redis did not start"; cat "$PEERS_DIR/redis/redis.log" >&2; return 1; }
}

# Client ports BASE+21..23, cluster routes BASE+31..33.
peers_start_nats() {
    n=$1 NATS_URL=""
    for i in $(seq 1 "$n"); do
        d="$PEERS_DIR/nats$i"
        mkdir -p "$d"
        set -- -js -a 127.0.0.1 -p $((PEERS_BASE + 20 + i)) -sd "$d/js" -n "n$i" -l "$d/nats.log"
        if [ "$n" -gt 1 ]; then
            routes=""
            for j in $(seq 1 "$n"); do
                [ "$j" = "$i" ] || routes="$routes${routes:+,}nats://127.0.0.1:$((PEERS_BASE + 30 + j))"
            done
            set -- "$@" --cluster_name peers --cluster "nats://127.0.0.1:$((PEERS_BASE + 30 + i))" \
                --routes "$routes"
        fi
        nats-server "$@" &
        echo $! >"$d/pid"
        NATS_URL="$NATS_URL${NATS_URL:+,}nats://127.0.0.1:$((PEERS_BASE + 20 + i))"
    done
    # JetStream is ready once a meta leader is elected (clusters take seconds).
    for i in $(seq 1 "$n"); do
        peers_wait "grep -q 'Server is ready' '$PEERS_DIR/nats$i/nats.log'" 150 ||
            { peers_log "nats $i did not start"; cat "$PEERS_DIR/nats$i/nats.log" >&2; return 1; }
    done
    [ "$n" -eq 1 ] ||
        peers_wait "grep -qE 'JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader' '$PEERS_DIR'/nats*/nats.log" 300 ||
        { peers_log "nats: no JetStream leader"; return 1; }
}

# One node's environment: AMQP BASE+40+i, distribution BASE+50+i, a private
# epmd on BASE+49 and a private cookie (HOME), loopback only.
peers_rabbit_env() {
    rn=$1
    shift
    env HOME="$PEERS_DIR/rabbit-home" ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$((PEERS_BASE + 49)) \
        RABBITMQ_NODENAME="r$rn@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT=$((PEERS_BASE + 40 + rn)) RABBITMQ_DIST_PORT=$((PEERS_BASE + 50 + rn)) \
        RABBITMQ_MNESIA_BASE="$PEERS_DIR/rabbit$rn/mnesia" RABBITMQ_LOG_BASE="$PEERS_DIR/rabbit$rn/log" \
        RABBITMQ_PID_FILE="$PEERS_DIR/rabbit$rn/rabbit.pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$PEERS_DIR/rabbit-home/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$PEERS_DIR/rabbit-home/rabbitmq" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_CTL_DIST_PORT_MIN=$((PEERS_BASE + 60)) RABBITMQ_CTL_DIST_PORT_MAX=$((PEERS_BASE + 69)) \
        "$@"
}

peers_rabbitmqctl() {
    rq=$1
    shift
    peers_rabbit_env "$rq" /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "r$rq@localhost" "$@"
}

peers_start_rabbit() {
    n=$1
    mkdir -p "$PEERS_DIR/rabbit-home"
    [ -f "$PEERS_DIR/rabbit-home/.erlang.cookie" ] || {
        openssl rand -hex 20 >"$PEERS_DIR/rabbit-home/.erlang.cookie"
        chmod 400 "$PEERS_DIR/rabbit-home/.erlang.cookie"
    }
    echo "[]." >"$PEERS_DIR/rabbit-home/enabled_plugins"
    echo "loopback_users = none" >"$PEERS_DIR/rabbit-home/rabbitmq.conf"
    for i in $(seq 1 "$n"); do
        mkdir -p "$PEERS_DIR/rabbit$i"
        peers_rabbit_env "$i" /usr/lib/rabbitmq/bin/rabbitmq-server >"$PEERS_DIR/rabbit$i/out.log" 2>&1 &
        echo $! >"$PEERS_DIR/rabbit$i/pid"
    done
    for i in $(seq 1 "$n"); do
        peers_rabbitmqctl "$i" wait --timeout 120 "$PEERS_DIR/rabbit$i/rabbit.pid" >/dev/null &&
            peers_rabbitmqctl "$i" await_startup --timeout 120 ||
            { peers_log "rabbitmq $i did not start"; tail -30 "$PEERS_DIR/rabbit$i/out.log" >&2; return 1; }
    done
    for i in $(seq 2 "$n"); do
        peers_rabbitmqctl "$i" stop_app && peers_rabbitmqctl "$i" join_cluster r1@localhost &&
            peers_rabbitmqctl "$i" start_app ||
            { peers_log "rabbitmq $i did not join"; return 1; }
    done
    RABBIT_URL=127.0.0.1:$((PEERS_BASE + 41))
}

peers_stop_rabbit() {
    for p in "$PEERS_DIR"/rabbit[0-9]*/pid; do
        [ -f "$p" ] || continue
        i=${p%/pid}
        i=${i##*rabbit}
        peers_rabbitmqctl "$i" shutdown >/dev/null 2>&1 || {
            [ ! -f "${p%/pid}/rabbit.pid" ] || kill "$(cat "${p%/pid}/rabbit.pid")" 2>/dev/null
            kill "$(cat "$p")" 2>/dev/null
        }
        rm -f "$p"
    done
    peers_rabbit_env 1 epmd -kill >/dev/null 2>&1 || true
}

# A daemon frozen by smoke.sh (SIGSTOP) only acts on SIGTERM once continued.
# The mqhubd of peers_with_mqhub are cluster-bench.sh's, which stops them
# itself unless a signal killed it first: stopped here too.
peers_stop_all() {
    [ -d "${PEERS_DIR:-}" ] || return 0
    [ ! -d "$PEERS_DIR/rabbit-home" ] || peers_stop_rabbit
    for p in "$PEERS_DIR"/redis/pid "$PEERS_DIR"/nats*/pid "$PEERS_DIR"/mqhub-cluster-bench.*/n*/pid; do
        [ ! -f "$p" ] || { kill "$(cat "$p")" && kill -CONT "$(cat "$p")"; } 2>/dev/null || true
        rm -f "$p"
    done
    sleep 1
    # The next start (another node count) begins with empty data.
    rm -rf "$PEERS_DIR"/redis "$PEERS_DIR"/nats* "$PEERS_DIR"/rabbit*
}

# peers_with_mqhub NODES COMMAND: start NODES mqhubd (1 or 3, fsync before
# ack: the default) through apps/bench/cluster-bench.sh — its configs,
# cluster secret, leader wait and cleanup — and run COMMAND (eval'd) with
# $MQHUB_URL set to the node list; the nodes stop when it returns. The hook:
# cluster-bench.sh runs "$B/apps/bench/mqhub-bench produce --server LIST",
# so B is a folder of links to $PEERS_BUILD whose mqhub-bench is COMMAND.
peers_with_mqhub() {
    shim="$PEERS_DIR/mqhub-shim"
    mkdir -p "$shim/apps/mqhubd" "$shim/apps/mqhub" "$shim/apps/bench"
    ln -sf "$PEERS_BUILD/apps/mqhubd/mqhubd" "$shim/apps/mqhubd/mqhubd"
    ln -sf "$PEERS_BUILD/apps/mqhub/mqhub" "$shim/apps/mqhub/mqhub"
    printf '#!/bin/sh\n# cluster-bench.sh calls: mqhub-bench produce --server LIST\nMQHUB_URL=$3\n%s\n' \
        "$2" >"$shim/apps/bench/mqhub-bench"
    chmod +x "$shim/apps/bench/mqhub-bench"
    NODES=$1 TMPDIR="$PEERS_DIR" sh "$PEERS_ROOT/apps/bench/cluster-bench.sh" "$shim" \
        $((PEERS_BASE + 100))
}
