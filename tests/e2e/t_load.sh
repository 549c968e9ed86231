#!/bin/bash
# Load (issue: hardening): 10,000 idle connections held open at once and
# 1,000 sessions submitting at once. The daemon keeps answering, takes
# every mail, and its memory stays bounded; the bytes per idle connection
# are printed (measured on this build: ASan inflates them).
. "$(dirname "$0")/lib.sh"

IDLE=${LOAD_IDLE:-10000}
BURST=${LOAD_BURST:-1000}
ulimit -n 20000 2>/dev/null
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$HPID/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$HPID/status"; }

# Nothing leaves (DNS is dead): every mail stays queued.
write_config "max_connections = $((IDLE + 500))
max_connections_per_client = $((IDLE + 500))
idle_timeout = 5m"
start_hikyaku || { finish; exit 1; }
smtp >/dev/null 2>&1 # warm up: first TLS/DNS/library allocations
sleep 0.5
R0=$(rss_kb)

# ---- idle connections --------------------------------------------------
mkfifo "$T/hold"
$PY "$ROOT/tests/e2e/load_gen.py" idle 127.0.0.1 "$PORT" "$IDLE" <"$T/hold" >"$T/idle.out" 2>&1 &
IPID=$!
exec 7>"$T/hold"
for _ in $(seq 1 600); do grep -q '^READY' "$T/idle.out" && break; sleep 0.1; done
GOT=$(sed -n 's/^READY //p' "$T/idle.out")
check "$IDLE connections are open and greeted (got ${GOT:-0})" test "${GOT:-0}" -eq "$IDLE"
sleep 0.5
R1=$(rss_kb)
PER=$(( (R1 - R0) * 1024 / IDLE ))
echo "# RSS before ${R0} KiB, with $IDLE idle connections ${R1} KiB: $PER bytes per idle connection ($BUILD)"
LIMIT=$([ "$BUILD" = build ] && echo 16384 || echo 65536)
check "memory per idle connection is bounded ($PER bytes, limit $LIMIT)" test "$PER" -lt "$LIMIT"
ctl status --json >"$T/status-idle.json" 2>&1
check "status counts them" $PY -c '
import json, sys
s = json.load(open(sys.argv[1])); n = s["connections"]["open"]
assert n >= int(sys.argv[2]), n' "$T/status-idle.json" "$IDLE"
smtp >"$T/during-idle.out" 2>&1
expect "a mail is taken while $IDLE connections sit idle" "$T/during-idle.out" 'queued as'
session "one more connection still gets its greeting" '<220' '>QUIT\r\n' '<221'

exec 7>&-
wait "$IPID"
expect "the idle connections are closed by the client" "$T/idle.out" '^CLOSED'
for _ in $(seq 1 100); do
	ctl status --json >"$T/status-after.json" 2>&1
	$PY -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["connections"]["open"] == 0 else 1)' \
		"$T/status-after.json" 2>/dev/null && break
	sleep 0.1
done
check "every session is gone afterwards" $PY -c '
import json, sys; assert json.load(open(sys.argv[1]))["connections"]["open"] == 0' "$T/status-after.json"

# ---- a burst of submissions --------------------------------------------
B0=$(queued_count)
$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" "$BURST" "$BURST" burst "$T/burst.res" >"$T/burst.out" 2>&1
OKS=$(grep -c ' OK ' "$T/burst.res")
check "$BURST sessions at once: every mail gets 250 ($OKS)" test "$OKS" -eq "$BURST"
expect_not "no failure" "$T/burst.res" ' FAIL '
Q=$(( $(queued_count) - B0 ))
check "every mail answered 250 is in the queue ($Q)" test "$Q" -eq "$BURST"
UNIQ=$(awk '/ OK / {print $3}' "$T/burst.res" | sort -u | wc -l)
check "each got its own queue id" test "$UNIQ" -eq "$BURST"
echo "# $(cat "$T/burst.out"); peak RSS $(hwm_kb) KiB ($BUILD)"
smtp >"$T/after-burst.out" 2>&1
expect "the daemon still answers after the burst" "$T/after-burst.out" 'queued as'
finish
