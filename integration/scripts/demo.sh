#!/usr/bin/env bash
# make demo: a local mesh of real herd agents on loopback (2 IDCs), then the
# main views from two different nodes. DEMO_KEEP=1 leaves the mesh running.
set -euo pipefail
HERD=${1:?usage: demo.sh path/to/herd}
NODES=${DEMO_NODES:-6}
IDCS=${DEMO_IDCS:-2}
DIR=$(mktemp -d /tmp/herd-demo.XXXXXX)
LOG="$DIR/dev.out"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "starting a dev mesh: $NODES agents in $IDCS IDCs (logs in $DIR)"
"$HERD" dev --nodes "$NODES" --idcs "$IDCS" --dir "$DIR" >"$LOG" 2>&1 &
DEV=$!
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ]; then return; fi
  kill -INT "$DEV" 2>/dev/null || true
  wait "$DEV" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  [ -s "$DIR/env" ] && break
  if ! kill -0 "$DEV" 2>/dev/null; then echo "herd dev failed:"; cat "$LOG"; exit 1; fi
  sleep 0.1
done
[ -s "$DIR/env" ] || { echo "herd dev did not become ready:"; cat "$LOG"; exit 1; }
cat "$LOG"
# shellcheck disable=SC1091
source "$DIR/env"
node_api() { python3 -c "import json,sys; print(json.load(open('$DIR/cluster.json'))['nodes'][$1]['api'])"; }
first=$(node_api 0); second=$(node_api 1); third=$(node_api 2)

step "herd members, asked of node1 ($first, IDC dc1)"
"$HERD" members --node "$first" --wide
step "herd members, asked of node3 ($third, IDC dc1): the same set, from gossip"
"$HERD" members --node "$third"
step "herd members, asked of node2 ($second, IDC dc2)"
"$HERD" members --node "$second"
step "a selector over live metadata: 'slot in (1,3),status=alive'"
"$HERD" members --node "$first" --select 'slot in (1,3),status=alive'
step "node1 pings node3 over an authenticated, encrypted node stream"
"$HERD" ping --node "$first" node3
step "node3 described by node1, forwarded over node streams (--on)"
"$HERD" self --node "$first" --on node3

step "each IDC elects its own control group (Raft) among its nodes; waiting for both"
for node in "$first" "$second"; do
  for _ in $(seq 1 150); do
    if "$HERD" control status --node "$node" --json 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("leader") else 1)'; then
      break
    fi
    sleep 0.2
  done
done
"$HERD" control status --node "$first"
step "the control group of dc2, asked of a dc1 node (forwarded once across the WAN pool)"
"$HERD" control status --node "$first" --idc dc2

step "a global config object written in dc1 (the primary IDC), with compare-and-set"
"$HERD" kv put --node "$third" app/web/version 41
"$HERD" kv put --node "$third" --cas 1 app/web/version 42
if "$HERD" kv put --node "$third" --cas 1 app/web/version 43; then
  echo "unexpected: a stale --cas was accepted"; exit 1
else
  echo "(a second --cas 1 is refused: somebody changed the object meanwhile)"
fi
step "read back in dc2: replicated from the primary IDC"
for _ in $(seq 1 100); do
  [ "$("$HERD" kv get --node "$second" --stale app/web/version 2>/dev/null)" = 42 ] && break
  sleep 0.1
done
printf 'app/web/version in dc2 = '; "$HERD" kv get --node "$second" --stale app/web/version; echo
step "an IDC-scoped object stays in its IDC"
"$HERD" kv put --node "$second" --idc dc2 lb/pool "10 backends"
"$HERD" kv list --node "$second" --idc dc2

step "a script on every node of dc1, as the agents' own user; output grouped by host"
"$HERD" run --node "$first" --all -- 'echo "$HERD_HOST: $(uname -s) up $(cut -d. -f1 /proc/uptime)s"'
step "a python script on the nodes a selector picks, from a node of dc2 (the run lives in dc1)"
"$HERD" run --node "$second" --idc dc1 --select 'name in (node1,node5)' --lang python -- 'import platform; print(platform.python_version())'
step "a failing host is reported with its exit code; herd run exits 1"
if "$HERD" run --node "$first" --all -- 'test "$HERD_HOST" != node3 || exit 7'; then
  echo "unexpected: a failed host did not fail the run"; exit 1
else
  echo "(exit code $? as scripts expect)"
fi
step "rerun only the failed host"
last=$("$HERD" runs --node "$first" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')
"$HERD" rerun --node "$first" "$last" --failed || true
step "a 40 MB file pushed to every node of dc1 over the private swarm (uploaded from this shell first)"
head -c 40000000 /dev/urandom >"$DIR/payload.bin"
"$HERD" push --node "$first" "$DIR/payload.bin" /opt --all --mkdir --mode 0644
step "the same push again: every host already identical, nothing moves"
"$HERD" push --node "$first" "$DIR/payload.bin" /opt --all
"$HERD" file list --node "$first"

if [ "${DEMO_KEEP:-0}" = 1 ]; then
  step "the mesh keeps running (herd dev pid $DEV)"
  echo "  source $DIR/env && $HERD members"
  echo "  stop it with: kill -INT $DEV"
else
  step "done: the mesh stops now"
  echo "  to keep one running:  DEMO_KEEP=1 make demo"
  echo "  or run your own:      $HERD dev --nodes 5 --idcs 2 --dir /tmp/herd-dev"
  echo "                        source /tmp/herd-dev/env && $HERD members"
fi
