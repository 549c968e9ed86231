#!/bin/bash
# Metrics and health over HTTP (SPEC §9): after a scripted flow (mails
# delivered, deferred, bounced, suppressed, rejected; the service paused
# by 454) every counter and gauge of /metrics equals what the log and
# hikyakuctl status say, promtool accepts the output, /health follows the
# spool's free space, hostile HTTP clients cost bounded memory while the
# relay keeps taking mail, a reload moves the listener, and the Grafana
# dashboard queries only metrics that exist.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
TOOL="$PY $ROOT/tests/e2e/metrics_tool.py"
MPORT=$(free_port)

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
echo 'pw' >"$T/svc.pass"
# The service: its first transaction gets 454 (throttling), bad@dest.test 550 5.1.1.
start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw \
	--throttle 1 --reject-rcpt 'bad@dest.test=550 5.1.1 <bad@dest.test>: User unknown' || { finish; exit 1; }
start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_upstream sender --addr 127.0.0.3 --port "$UP_PORT_mx" || { finish; exit 1; }
# later.test's MX (127.0.0.5) has nobody listening: deferred.
start_dns --host-record=smtp.service.test,127.0.0.1 \
	--mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	--mx-host=interfactory1.co.jp,mx.sender.test,10 --mx-host=example.com,mx.sender.test,10 \
	--host-record=mx.sender.test,127.0.0.3 \
	--mx-host=later.test,mx.later.test,10 --host-record=mx.later.test,127.0.0.5 || { finish; exit 1; }

# Delivering to MX hosts on loopback needs [direct] internal_destinations = any.
INTERNAL="internal_destinations = any"

conf() { # conf METRICS_LISTEN
	write_config "allow_networks = 127.0.0.1/32
max_message_size = 100K
${SERVER_EXTRA:-}" "
[routing]
verified_domains = interfactory1.co.jp

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
pause = 1h

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
$INTERNAL

[queue]
retry_min = 1h
retry_max = 1h

[metrics]
listen = $1"
}
conf "127.0.0.1:$MPORT"
check "the configuration with [metrics] listen is valid" "$HIKYAKU" -c "$T/hikyaku.conf" --check
start_hikyaku || { finish; exit 1; }
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
get() { $TOOL get 127.0.0.1 "$MPORT" "$@"; }
metric() { get /metrics | grep -E "^$1 " | awk '{print $2}'; }
send() { # send FROM TO [swaks args]
	local from=$1 to=$2
	shift 2
	swaks --server 127.0.0.1 --port "$PORT" --from "$from" --to "$to" --timeout 20 "$@" >"$T/send.out" 2>&1
	grep -q '250 2.0.0 Ok: queued as' "$T/send.out"
}
wait_log() { for _ in $(seq 1 200); do grep -q "$1" "$T/log.jsonl" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_metric() { # wait_metric SERIES VALUE
	for _ in $(seq 1 100); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.2; done
	echo "$1 is $(metric "$1"), not $2"
	return 1
}

get /health >"$T/health.out"
expect "/health is 200 ok" "$T/health.out" '^200$'
expect "with the body ok" "$T/health.out" '^ok$'
get /metrics >"$T/m0.out"
expect "/metrics is 200" "$T/m0.out" '^200$'
tail -n +2 "$T/m0.out" >"$T/m0.txt"
check "promtool check metrics passes on a fresh daemon" sh -c "promtool check metrics <'$T/m0.txt'"
get /nothing >"$T/404.out"
expect "another path is 404" "$T/404.out" '^404$'
get /metrics --method POST >"$T/405.out"
expect "POST is 405" "$T/405.out" '^405$'
get /metrics --method DELETE >"$T/405b.out"
expect "DELETE is 405" "$T/405b.out" '^405$'
get /metrics --method HEAD >"$T/head.out"
expect "HEAD /metrics is 200" "$T/head.out" '^200$'
get /../../etc/passwd >"$T/trav.out"
expect "a path outside the two is 404 (no file system)" "$T/trav.out" '^404$'

# ---- the scripted flow --------------------------------------------------
# A: the service answers 454: deferred, and the route pauses (1 h).
check "mail A (service) is accepted" send test@interfactory1.co.jp ok1@dest.test
check "A is deferred by the 454" wait_log '"event":"deferred".*"to":"ok1@dest.test".*"status":"4.7.0"'
check "hikyaku_service_paused becomes 1" wait_metric hikyaku_service_paused 1
ctl status --json >"$T/status-paused.json"
check "and hikyakuctl status shows the pause" $PY -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not s['service']['paused_until'])" "$T/status-paused.json"
# queue retry --all lifts the pause: A goes.
check "queue retry --all" ctl queue retry --all
check "A is delivered after the pause is lifted" wait_log '"event":"delivered".*"to":"ok1@dest.test"'
check "hikyaku_service_paused is 0 again" wait_metric hikyaku_service_paused 0
# B: 550 5.1.1 from the service: bounced, learned, the sender gets a DSN.
check "mail B (service, invalid recipient) is accepted" send test@interfactory1.co.jp bad@dest.test
check "B bounces" wait_log '"event":"bounced".*"to":"bad@dest.test"'
check "the DSN reaches the sender" wait_upstream_count sender 1 20
# C: the same address again: suppressed.
check "mail C (suppressed recipient) is accepted" send test@interfactory1.co.jp bad@dest.test
check "C is suppressed" wait_log '"event":"suppressed".*"to":"bad@dest.test"'
# D: direct, delivered; E: direct, deferred (nobody at later.test's MX).
check "mail D (direct) is accepted" send test@example.com good@dest.test
check "D is delivered" wait_log '"event":"delivered".*"to":"good@dest.test"'
check "mail E (direct, a dead MX) is accepted" send test@example.com x@later.test
check "E is deferred" wait_log '"event":"deferred".*"to":"x@later.test"'
# Rejected: a relay attempt from outside allow_networks, and a mail too big.
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.10 --from spam@outside.test \
	--to someone@dest.test --timeout 20 >"$T/relay.out" 2>&1
expect "a relay attempt from outside is refused 554 5.7.1" "$T/relay.out" '<\*\* +554 5\.7\.1'
head -c 200000 /dev/zero | tr '\0' 'a' | fold -w 76 >"$T/big"
swaks --server 127.0.0.1 --port "$PORT" --from test@example.com --to good@dest.test \
	--body "@$T/big" --timeout 20 >"$T/big.out" 2>&1
expect "a mail over max_message_size is refused 552" "$T/big.out" '<\*\* +552'
check "both refusals are logged" wait_log '"event":"rejected".*"status":"5.3.4"'
# One SMTP client stays connected (hikyaku_connections{side="in"} 1).
$PY -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(512)
time.sleep(120)' "$PORT" &
IDLE_PID=$!
sleep 1
check "the suppression list has the learned address" sh -c "\"$HIKYAKUCTL\" -c '$T/hikyaku.conf' suppression list | grep -q bad@dest.test"

# ---- every counter and gauge agrees ------------------------------------
# Idle outbound connections close after a few seconds; then nothing moves.
sleep 6
agree() {
	get /metrics | tail -n +2 >"$T/m1.txt"
	ctl status --json >"$T/status.json"
	ctl queue list --json >"$T/queue.json"
	cp "$T/log.jsonl" "$T/log.copy"
	get /metrics | tail -n +2 >"$T/m2.txt"
	# Stable: the two scrapes around the reads are the same (but the age).
	diff <(grep -v oldest_seconds "$T/m1.txt") <(grep -v oldest_seconds "$T/m2.txt") >/dev/null &&
		$TOOL agree "$T/m2.txt" "$T/log.copy" "$T/status.json" "$T/queue.json" >"$T/agree.out" 2>&1
}
ok_agree=1
for _ in $(seq 1 10); do agree && { ok_agree=0; break; }; sleep 2; done
if [ $ok_agree -eq 0 ]; then ok "every counter and gauge equals the log and hikyakuctl status"; else
	nok "every counter and gauge equals the log and hikyakuctl status" "$T/agree.out"; fi
check "the service route delivered 1, deferred by 454, bounced 1, suppressed 1" sh -c "
	grep -qx 'hikyaku_recipients_total{route=\"service\",outcome=\"delivered\"} 1' '$T/m2.txt' &&
	grep -q '^hikyaku_recipients_total{route=\"service\",outcome=\"deferred\"} [1-9]' '$T/m2.txt' &&
	grep -qx 'hikyaku_recipients_total{route=\"service\",outcome=\"bounced\"} 1' '$T/m2.txt' &&
	grep -qx 'hikyaku_recipients_total{route=\"service\",outcome=\"suppressed\"} 1' '$T/m2.txt'"
check "rejected by status: 5.7.1 and 5.3.4" sh -c "
	grep -qx 'hikyaku_rejected_total{status=\"5.7.1\"} 1' '$T/m2.txt' &&
	grep -qx 'hikyaku_rejected_total{status=\"5.3.4\"} 1' '$T/m2.txt'"
check "one mail waits in the queue (E, direct)" sh -c "
	grep -qx 'hikyaku_queue_messages{route=\"direct\"} 1' '$T/m2.txt' &&
	grep -qx 'hikyaku_queue_recipients{route=\"direct\"} 1' '$T/m2.txt' &&
	grep -qx 'hikyaku_queue_messages{route=\"service\"} 0' '$T/m2.txt'"
check "the oldest mail's age is counted" sh -c "awk '/^hikyaku_queue_oldest_seconds /{exit !(\$2 > 5 && \$2 < 600)}' '$T/m2.txt'"
check "one client connected" grep -qx 'hikyaku_connections{side="in"} 1' "$T/m2.txt"
n_supp=$(ctl suppression list | grep -c '@')
check "hikyaku_suppression_entries equals hikyakuctl suppression list ($n_supp)" \
	grep -qx "hikyaku_suppression_entries $n_supp" "$T/m2.txt"
check "promtool check metrics passes after the flow" sh -c "promtool check metrics <'$T/m2.txt'"
check "the suppression count follows an add" ctl suppression add added@dest.test
for _ in $(seq 1 20); do metric hikyaku_suppression_entries >/dev/null; sleep 0.3
	[ "$(metric hikyaku_suppression_entries)" = "$((n_supp + 1))" ] && break; done
check "hikyaku_suppression_entries is $((n_supp + 1)) after the add" test "$(metric hikyaku_suppression_entries)" = "$((n_supp + 1))"
cp "$T/m2.txt" "$T/metrics-after-flow.txt"
kill "$IDLE_PID" 2>/dev/null; wait "$IDLE_PID" 2>/dev/null

# ---- hostile HTTP clients ------------------------------------------------
rss() { awk '/^VmRSS/{print $2}' "/proc/$HPID/status"; }
rss0=$(rss)
$TOOL huge 127.0.0.1 "$MPORT" 1000000 >"$T/huge.out" 2>&1
expect "a 1 MB header is refused (431) or cut" "$T/huge.out" '^(HTTP/1\.[01] 431|HTTP/1\.[01] 413|closed)'
$TOOL huge 127.0.0.1 "$MPORT" 20000 >"$T/huge2.out" 2>&1
expect "a 20 KB header line gets 431" "$T/huge2.out" '^HTTP/1\.[01] 431'
printf 'GARBAGE\x00\xff\r\n\r\n' | timeout 10 $PY -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(sys.stdin.buffer.read()); s.settimeout(5)
d = b""
try:
    while True:
        b = s.recv(4096)
        if not b: break
        d += b
except OSError: pass
print(d.split(b"\r\n", 1)[0].decode("latin-1") or "closed")' "$MPORT" >"$T/garbage.out" 2>&1
expect "a malformed request line gets 400 (or is closed)" "$T/garbage.out" '^(HTTP/1\.[01] 400|closed)'
# A client dripping its request is cut off (15 s per request, 10 s idle).
$TOOL slow 127.0.0.1 "$MPORT" >"$T/slow.out" 2>&1 &
SLOW_PID=$!
# A flood: 300 connections, silent, dripping and garbage, held 12 s.
$TOOL flood 127.0.0.1 "$MPORT" 300 12 >"$T/flood.out" 2>&1 &
FLOOD_PID=$!
sleep 2
check "during the flood swaks still gets its mail queued" send test@example.com flood1@dest.test
# The listener is bound to 127.0.0.1; a client from another source address
# has its own share of the connection limit.
$PY - "$MPORT" >"$T/health-flood.out" 2>&1 <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10, ("127.0.0.2", 0))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
s.settimeout(10)
print(s.recv(4096).split(b"\r\n", 1)[0].decode())
EOF
expect "during the flood a scraper from another address gets /health 200" "$T/health-flood.out" '^HTTP/1\.1 200'
wait "$FLOOD_PID"
wait "$SLOW_PID"
expect "the flood: connections beyond the limit are closed by the server" "$T/flood.out" 'closed-by-server [1-9]'
check "the dripping client was cut off within 30 s ($(cat "$T/slow.out") s)" \
	$PY -c "import sys; sys.exit(not float(open(sys.argv[1]).read()) <= 30)" "$T/slow.out"
rss1=$(rss)
check "memory stays bounded under hostile clients (RSS ${rss0} -> ${rss1} KiB)" test $((rss1 - rss0)) -lt 51200
get /health >"$T/health2.out"
expect "after the flood /health is 200 again" "$T/health2.out" '^200$'
check "and mail still flows" send test@example.com flood2@dest.test

# ---- the dashboard --------------------------------------------------------
check "contrib/grafana-dashboard.json queries only metrics hikyaku exports" \
	$TOOL dashboard "$ROOT/contrib/grafana-dashboard.json" "$T/metrics-after-flow.txt"

for g in admin-guide.md ja/admin-guide.md; do
	sed -n '/^groups:/,/^```/p' "$ROOT/docs/$g" | sed '$d' >"$T/rules.yml"
	check "the alerting rules of docs/$g pass promtool check rules" \
		sh -c "grep -q HikyakuQueueOld '$T/rules.yml' && promtool check rules '$T/rules.yml'"
done

# ---- reload moves the listener; empty turns it off ----------------------
MPORT6=$(free_port :)
conf "[::1]:$MPORT6"
kill -HUP "$HPID"
for _ in $(seq 1 50); do grep -q "metrics on http://\[::1\]:$MPORT6" "$T/hikyaku.out" && break; sleep 0.1; done
$TOOL get ::1 "$MPORT6" /health >"$T/h6.out" 2>&1
expect "after a reload /health answers on [::1]:$MPORT6" "$T/h6.out" '^200$'
check "the old address is closed" sh -c "! $TOOL get 127.0.0.1 $MPORT /health >/dev/null 2>&1"
conf ""
kill -HUP "$HPID"
sleep 1
check "listen = (empty) turns it off" sh -c "! $TOOL get ::1 $MPORT6 /health >/dev/null 2>&1"
conf "127.0.0.1:$MPORT"
kill -HUP "$HPID"
sleep 1
get /health >"$T/h4.out" 2>&1
expect "and a reload turns it on again" "$T/h4.out" '^200$'
check "the counters survive the reloads" test "$(metric hikyaku_messages_received_total)" -ge 7
# After a restart the queue gauges come from the spool the runner loaded.
stop_hikyaku
start_hikyaku || { finish; exit 1; }
gauges_agree() {
	get /metrics | tail -n +2 >"$T/g.txt"
	ctl status --json >"$T/status.json"
	ctl queue list --json >"$T/queue.json"
	$TOOL agree "$T/g.txt" "$T/log.jsonl" "$T/status.json" "$T/queue.json" --gauges-only >"$T/gagree.out" 2>&1
}
ok_g=1
for _ in $(seq 1 10); do gauges_agree && { ok_g=0; break; }; sleep 1; done
if [ $ok_g -eq 0 ] && grep -qx 'hikyaku_queue_messages{route="direct"} 1' "$T/g.txt"; then
	ok "after a restart the queue gauges equal hikyakuctl status (E still queued)"
else nok "after a restart the queue gauges equal hikyakuctl status (E still queued)" "$T/gagree.out"; fi
qid_e=$(grep '"event":"deferred".*"to":"x@later.test"' "$T/log.jsonl" | head -1 | sed 's/.*"queue_id":"\([0-9A-F]*\)".*/\1/')
check "queue delete E" ctl queue delete "$qid_e"
for _ in $(seq 1 20); do [ "$(metric 'hikyaku_queue_messages{route="direct"}')" = 0 ] && break; sleep 0.2; done
ok_g=1
for _ in $(seq 1 10); do gauges_agree && { ok_g=0; break; }; sleep 1; done
if [ $ok_g -eq 0 ] && grep -qx 'hikyaku_queue_messages{route="direct"} 0' "$T/g.txt" &&
	grep -qx 'hikyaku_queue_recipients{route="direct"} 0' "$T/g.txt" &&
	grep -qx 'hikyaku_queue_oldest_seconds 0' "$T/g.txt"; then
	ok "after queue delete the queue is empty in the gauges and in hikyakuctl status"
else nok "after queue delete the queue is empty in the gauges and in hikyakuctl status" "$T/gagree.out"; fi
stop_hikyaku

# ---- /health: at max_connections, and while stopping -------------------
SERVER_EXTRA="max_connections = 2" conf "127.0.0.1:$MPORT"
start_hikyaku || { finish; exit 1; }
# Two clients in the middle of a transaction (DATA begun, not finished).
hold() {
	$PY - "$PORT" "$1" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10)
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if len(l) < 4 or l[3:4] != b"-":
            return l
reply()
for c in (b"EHLO held.test", b"MAIL FROM:<test@example.com>", b"RCPT TO:<good@dest.test>", b"DATA"):
    s.sendall(c + b"\r\n")
    reply()
s.sendall(b"Subject: held\r\n\r\nbody\r\n")
time.sleep(float(sys.argv[2]))
s.sendall(b".\r\n")
print(reply().decode().strip())
s.sendall(b"QUIT\r\n")
EOF
}
hold 4 >"$T/hold1.out" 2>&1 &
H1=$!
hold 4 >"$T/hold2.out" 2>&1 &
H2=$!
sleep 1.5
get /health >"$T/hmax.out"
expect "two sessions open with max_connections = 2: /health is 503" "$T/hmax.out" '^503$'
expect "saying at max_connections" "$T/hmax.out" 'at max_connections'
wait "$H1" "$H2"
expect "the held mails are queued all the same" "$T/hold1.out" '^250 '
for _ in $(seq 1 20); do [ "$(get /health | head -1)" = 200 ] && break; sleep 0.2; done
check "both gone: /health is 200" test "$(get /health | head -1)" = 200
# SIGTERM while a session finishes its mail: 503 stopping until it is done.
hold 4 >"$T/hold3.out" 2>&1 &
H3=$!
sleep 1.5
kill -TERM "$HPID"
sleep 0.5
get /health >"$T/hstop.out" 2>&1
expect "after SIGTERM, while a session finishes its mail: /health is 503 stopping" "$T/hstop.out" '^stopping$'
wait "$H3"
expect "and that mail is still queued" "$T/hold3.out" '^250 '
# The first SIGTERM stops it: wait for that (a second one could find the
# signal handlers already closed).
rc=0
wait "$HPID" || rc=$?
HPID=""
check "and the daemon then exits 0" test "$rc" -eq 0

# ---- /health and a full spool (needs root for a small tmpfs) -----------
mkdir -p "$T/small"
if mount -t tmpfs -o size=512k tmpfs "$T/small" 2>"$T/mount.err"; then
	trap 'umount "$T/small" 2>/dev/null; cleanup_upstreams; if [ -n "$HPID" ]; then kill -9 "$HPID" 2>/dev/null; fi' EXIT
	conf "127.0.0.1:$MPORT"
	sed -i "s|^dir = .*|dir = $T/small/queue|" "$T/hikyaku.conf"
	start_hikyaku || { finish; exit 1; }
	get /health >"$T/hd0.out"
	expect "on a fresh tmpfs spool /health is 200" "$T/hd0.out" '^200$'
	dd if=/dev/zero of="$T/small/filler" bs=4k 2>/dev/null
	hd=""
	for _ in $(seq 1 30); do hd=$(get /health | head -1); [ "$hd" = 503 ] && break; sleep 0.2; done
	check "the spool's file system full: /health is 503" test "$hd" = 503
	get /health >"$T/hd1.out"
	expect "saying why" "$T/hd1.out" 'queue is full'
	swaks --server 127.0.0.1 --port "$PORT" --from test@example.com --to good@dest.test \
		--timeout 20 >"$T/full.out" 2>&1
	expect "and the listener answers 452 4.3.1 at the same time" "$T/full.out" '<\*\* +452 4\.3\.1'
	rm -f "$T/small/filler"
	for _ in $(seq 1 30); do hd=$(get /health | head -1); [ "$hd" = 200 ] && break; sleep 0.2; done
	check "room again: /health is back to 200" test "$hd" = 200
	stop_hikyaku
	umount "$T/small"
else
	nok "mount a tmpfs for the full-spool case (needs root)" "$T/mount.err"
fi

# ---- a port in use at start is a clear error ----------------------------
$PY -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(15)' "$MPORT" &
BLOCK_PID=$!
sleep 0.5
timeout 20 "$HIKYAKU" -c "$T/hikyaku.conf" >"$T/inuse.out" 2>&1
rc=$?
kill "$BLOCK_PID" 2>/dev/null; wait "$BLOCK_PID" 2>/dev/null
check "a metrics port in use at start: exit 1" test "$rc" -eq 1
expect "with a clear message" "$T/inuse.out" "\[metrics\] cannot listen on 127\.0\.0\.1:$MPORT"
finish
