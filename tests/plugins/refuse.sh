#!/bin/sh
# refuse.sh MQHUBD PLUGIN EXPECTED [FIELDS]: run mqhubd with a config whose
# one transport is PLUGIN (FIELDS, e.g. 'backlog = "lots"', added to its
# table); pass when it exits 78 (EX_CONFIG) printing EXPECTED.
set -u
mqhubd=$1 plugin=$2 want=$3 fields=${4:+, $4}
dir=$(mktemp -d "${TMPDIR:-/tmp}/mqhub-refuse.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cat >"$dir/mqhub.conf" <<CONF
node { id = 1, data = "$dir/data", raft = "127.0.0.1:1" }
transport "t" { path = "$plugin"$fields }
CONF
out=$("$mqhubd" --config "$dir/mqhub.conf" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 78 ] || { echo "FAIL: exit code $rc, want 78"; exit 1; }
case "$out" in
*"$want"*) echo "ok: refused with the expected message" ;;
*) echo "FAIL: the output lacks: $want"; exit 1 ;;
esac
