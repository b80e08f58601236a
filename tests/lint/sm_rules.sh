#!/bin/sh
# sm_rules.sh <source dir> <libmqhub_sm.a>: the state machine's rule, checked.
# Everything under core/sm/ runs inside raft apply and must give the same
# result on every node: no libuv, no clock, no random source, no I/O besides
# its Kyoto Cabinet store. Two checks:
#   1. no file under core/sm/ includes <uv.h> (or any libuv header);
#   2. the compiled library calls no clock, random or libuv function: its
#      undefined symbols are read with nm, so a call through any header or
#      macro is caught too.
set -eu
src=$1
lib=$2
fail=0

hits=$(grep -rnE '#[[:space:]]*include[[:space:]]*[<"](uv\.h|uv/|raft/uv\.h)' "$src/core/sm" || true)
if [ -n "$hits" ]; then
    echo "sm_rules: core/sm/ must not include libuv headers:"
    echo "$hits"
    fail=1
fi

banned='^(uv_[a-z_]+|clock_gettime|clock|gettimeofday|time|ftime|times|rand|rand_r|srand|random|srandom|drand48|erand48|lrand48|nrand48|mrand48|jrand48|srand48|getrandom|getentropy|arc4random[a-z_]*|RAND_bytes|RAND_priv_bytes|getpid|sleep|usleep|nanosleep|socket|connect|getenv|secure_getenv)$'
syms=$(nm -u --format=posix "$lib" | awk '{print $1}' | sed 's/@.*//' | sort -u |
       grep -E "$banned" || true)
if [ -n "$syms" ]; then
    echo "sm_rules: the state machine calls functions whose result differs between nodes:"
    echo "$syms" | sed 's/^/  /'
    echo "  (take the time from the entry, randomness from a seed in the entry)"
    fail=1
fi
[ "$fail" = 0 ] && echo "sm_rules: core/sm/ is deterministic by construction (no libuv, clock, random)"
exit $fail
