#!/bin/bash
# An outbound connection carries its next mail as soon as the peer has
# answered the last one: it does not wait for that mail's removal from the
# queue to be durable (what waits for it is the mail's log line and its
# round's end). Each fdatasync is made 500 ms slow (strace); with one
# connection to the destination, the mails after the first go back to back
# at the peer, where a connection kept idle through each removal's sync
# would space them 500 ms or more apart. What the disk promises does not
# change: every mail is delivered once, logged once, and gone from the
# queue, each log line after its removal.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

if ! strace -f -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=1000 true 2>"$T/strace.err"; then
	nok "strace can trace a process here (see scripts/install-deps.sh)" "$T/strace.err"
	finish
	exit 1
fi

start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_dns --mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 || { finish; exit 1; }
write_config "max_connections_per_client = 50" "
[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
max_connections_per_domain = 1
timeout = 20s"

ASAN_OPTIONS="detect_leaks=0:log_path=$T/asan" strace -f -o /dev/null -e trace=fdatasync \
	-e inject=fdatasync:delay_exit=500000 "$HIKYAKU" -c "$T/hikyaku.conf" >>"$T/hikyaku.out" 2>&1 &
SPID=$!
HPID=""
for _ in $(seq 1 50); do
	HPID=$(pgrep -P "$SPID") && break # the relay itself (lib.sh's EXIT trap kills it)
	sleep 0.1
done
wait_port "$PORT" || { nok "hikyaku starts under strace" "$T/hikyaku.out"; finish; exit 1; }
sleep 0.2

# Eight mails over eight sessions at once: they commit in one or two
# batches, then wait for the one connection.
$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" 8 8 reuse "$T/reuse.res" >"$T/reuse.out" 2>&1
check "8 mails answered 250" test "$(awk '$2 == "OK"' "$T/reuse.res" | wc -l)" -eq 8
wait_upstream_count mx 8 60
check "8 mails reached the peer" test "$(upstream_count mx)" -eq 8

# The arrivals after the first two (the first mails may come while the
# others still commit): back to back, not one per removal sync.
gaps=$(upstream_eval mx 'repr(sorted(m["ts"] for m in msgs))' | $PY -c '
import ast, sys
ts = ast.literal_eval(sys.stdin.read())
print(" ".join("%.0f" % ((b - a) * 1000) for a, b in zip(ts[1:], ts[2:])))')
longest=$(echo "$gaps" | tr " " "\n" | sort -n | tail -1)
check "the mails after the second came without a wait for each removal's 500 ms sync (gaps ms: $gaps)" \
	test "${longest:-9999}" -lt 250

for _ in $(seq 1 100); do
	[ "$(log_count delivered True)" -ge 8 ] && [ "$(queued_count)" -eq 0 ] && break
	sleep 0.1
done
check "8 delivered lines in the log, one per mail" \
	test "$($PY -c 'import json, sys
print(len(set(e["queue_id"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "delivered")))' "$T/log.jsonl")" -eq 8
check "8 delivered lines in all" test "$(log_count delivered True)" -eq 8
check "the queue is empty once the removals are durable" test "$(queued_count)" -eq 0
check "each mail reached the peer once" \
	test "$(upstream_eval mx 'len(set(m["data_b64"] for m in msgs))')" -eq 8

kill -TERM "$HPID"
rc=0
wait "$SPID" || rc=$?
HPID=""
check "the relay stopped cleanly (strace's status $rc)" test "$rc" -eq 0
# Its connection closed with it: the peer has recorded the session.
wait_upstream_count mx 1 10 sessions
check "all 8 went over one connection" upstream_check mx 'len(sessions) == 1 and sessions[0]["transactions"] == 8'
finish
