#!/bin/bash
# Hostile MX hosts and DNS (issue 20 findings 1 and 4, SPEC §3
# internal_destinations, §5 "One destination never holds up another", the
# 5-address / 2-session limit and "never delivers to itself"):
#   1. hundreds of mails to a domain whose MX holds the reply to the final
#      dot (each also to a second, healthy domain: its round then only
#      waits for the holding MX): mail to a third domain is still delivered
#      on time, and the wait after the dot follows [direct] timeout (twice);
#   2. 20 MX x 16 A records, all silent: one attempt tries 5 addresses;
#      MX hosts that answer 421: 2 sessions;
#   3. loopback, unspecified, link-local, multicast (and, under public,
#      private) addresses from MX/A records and address literals bounce
#      5.4.4 without a connection;
#   4. an MX that is hikyaku itself bounces 5.4.6 at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
HOSTILE_MAILS=${HOSTILE_MAILS:-600}

ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }

# log_count and wait_log: tests/e2e/lib.sh.

# ---- 1. one holding MX, hundreds of mails; a healthy domain on time ----
start_fault_peer hold --addr 127.0.0.9 --mode stall-dot --stall 20 || { finish; exit 1; }
start_upstream ok --addr 127.0.0.10 --port "$UP_PORT_hold" || { finish; exit 1; }
start_dns --mx-host=hostile.test,mx.hostile.test,10 --host-record=mx.hostile.test,127.0.0.9 \
	--mx-host=healthy.test,mx.healthy.test,10 --host-record=mx.healthy.test,127.0.0.10 \
	--mx-host=fanout.test,mx.healthy.test,10 ||
	{ finish; exit 1; }
write_config "max_connections_per_client = 200" "
[direct]
port = $UP_PORT_hold
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 3s

[queue]
retry_min = 1s
retry_max = 2s"
start_hikyaku || { finish; exit 1; }
$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" "$HOSTILE_MAILS" 20 hostile "$T/hostile.res" \
	--rcpt 'victim{i}@hostile.test,fan{i}@fanout.test' >"$T/load.out" 2>&1
check "$HOSTILE_MAILS mails for the holding MX are queued" \
	test "$(grep -c ' OK ' "$T/hostile.res")" -eq "$HOSTILE_MAILS"
# The MX holds its connections (10, max_connections_per_domain) now.
for _ in $(seq 1 100); do
	[ "$($PY -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["dot_seen"]))' \
		"$(upstream_sessions hold)")" -ge 1 ] && break
	sleep 0.1
done
ctl status >"$T/status1.out" 2>&1
start=$(date +%s.%N)
$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" 5 5 healthy "$T/healthy.res" \
	--rcpt 'customer{i}@healthy.test' >"$T/load2.out" 2>&1
healthy() { upstream_eval ok 'len([r for m in msgs for r in m["rcpt_tos"] if r.endswith("@healthy.test")])'; }
for _ in $(seq 1 600); do [ "$(healthy)" -ge 5 ] && break; sleep 0.1; done
took=$($PY -c "import time; print(round(time.time() - $start, 1))")
delays=$(log_count delivered '"healthy.test" in e["to"]')
maxdelay=$($PY - "$T/log.jsonl" <<'PYEOF'
import json, sys
d = [json.loads(l)["delay_ms"] for l in open(sys.argv[1])
     if '"delivered"' in l and "healthy.test" in l]
print(max(d) if d else -1)
PYEOF
)
echo "# healthy-domain mails: $delays delivered in ${took} s after submission, largest delay_ms $maxdelay, with $HOSTILE_MAILS mails held by hostile.test"
check "5 mails to the healthy domain are delivered while the MX holds" test "$(healthy)" -eq 5
check "... on time (largest delay $maxdelay ms, under 15 s)" test "$maxdelay" -ge 0 -a "$maxdelay" -lt 15000
active=$(sed -n 's/.* \([0-9]*\) being delivered$/\1/p' "$T/status1.out")
check "mails waiting for the holding MX take no global share (active: $active)" \
	test -n "$active" -a "${active:-999}" -le 40
check "the holding MX never has more than its 10 connections" $PY - "$(upstream_sessions hold)" <<'PYEOF'
import json, sys
ev = []
for l in open(sys.argv[1]):
    s = json.loads(l)
    ev += [(s["start"], 1), (s.get("end", s["start"]), -1)]
cur = peak = 0
for _, d in sorted(ev):
    cur += d
    peak = max(peak, cur)
print("peak", peak)
sys.exit(0 if peak <= 10 else 1)
PYEOF
# The wait after the final dot follows [direct] timeout (2 x 3 s), not a
# fixed 10 minutes: hikyaku hangs up on the held dot, before the peer's 20 s.
check "the wait after the final dot is twice [direct] timeout" $PY - "$(upstream_sessions hold)" <<'PYEOF'
import json, sys
held = [json.loads(l) for l in open(sys.argv[1])]
held = [s for s in held if s["dot_seen"] and "end" in s]
waits = [s["end"] - s["start"] for s in held]
print(len(held), "held sessions, longest", round(max(waits), 1) if waits else None)
sys.exit(0 if held and all(s["closed_by"] == "client" for s in held) and max(waits) < 15 else 1)
PYEOF
stop_hikyaku
stop_upstreams
stop_dns

# ---- 2. 20 MX x 16 A records, all silent: 5 addresses per attempt ------
rm -rf "$T/queue" "$T/log.jsonl"
also=()
dnsargs=()
for a in $(seq 1 16); do also+=(--also-listen "127.0.1.$a"); done
start_fault_peer silent --addr 127.0.1.100 --mode stall-greeting "${also[@]}" || { finish; exit 1; }
for h in $(seq 1 20); do
	dnsargs+=(--mx-host=many.test,mx$h.many.test,$((h * 10)))
	for a in $(seq 1 16); do dnsargs+=(--host-record=mx$h.many.test,127.0.1.$a); done
done
start_fault_peer busy --addr 127.0.2.1 --port "$UP_PORT_silent" --mode greeting-421 \
	--also-listen 127.0.2.2 --also-listen 127.0.2.3 --also-listen 127.0.2.4 || { finish; exit 1; }
for h in 1 2 3 4; do
	dnsargs+=(--mx-host=busy.test,mx$h.busy.test,$((h * 10)) --host-record=mx$h.busy.test,127.0.2.$h)
done
start_dns "${dnsargs[@]}" || { finish; exit 1; }
write_config "" "
[direct]
port = $UP_PORT_silent
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 2s
timeout = 1s

[queue]
retry_min = 1h"
start_hikyaku || { finish; exit 1; }
start=$(date +%s.%N)
smtp --to user@many.test >"$T/many.out" 2>&1
expect "a mail for the 20 x 16 domain is queued" "$T/many.out" 'queued as'
wait_log deferred '"many.test" in e["to"]' 1 120
took=$($PY -c "import time; print(round(time.time() - $start, 1))")
sleep 0.5
conns=$(upstream_count silent sessions)
echo "# 20 MX x 16 A, all silent: deferred after ${took} s, $conns connections"
check "the attempt ends deferred (after ${took} s)" test "$(log_count deferred '"many.test" in e["to"]')" -eq 1
check "... having tried 5 addresses ($conns)" test "$conns" -eq 5
check "... within a bounded time (${took} s < 30 s)" $PY -c "import sys; sys.exit(0 if $took < 30 else 1)"
smtp --to user@busy.test >"$T/busy.out" 2>&1
wait_log deferred '"busy.test" in e["to"]' 1 60
sleep 0.5
check "4 MX hosts answering 421: 2 SMTP sessions, then deferred" \
	test "$(upstream_count busy sessions)" -eq 2 -a "$(log_count deferred '"busy.test" in e["to"]')" -eq 1
stop_hikyaku
stop_upstreams
stop_dns

# ---- 3. internal_destinations: refused addresses bounce 5.4.4 -----------
start_upstream lo --addr 127.0.0.2 || { finish; exit 1; }
start_dns --mx-host=lo.test,mx.lo.test,10 --host-record=mx.lo.test,127.0.0.2 \
	--mx-host=zero.test,mx.zero.test,10 --host-record=mx.zero.test,0.0.0.0 \
	--mx-host=ll.test,mx.ll.test,10 --host-record=mx.ll.test,169.254.7.7 \
	--mx-host=mc.test,mx.mc.test,10 --host-record=mx.mc.test,224.0.0.251 \
	--mx-host=lo6.test,mx.lo6.test,10 --host-record=mx.lo6.test,::1 \
	--mx-host=priv.test,mx.priv.test,10 --host-record=mx.priv.test,10.20.30.40 \
	--mx-host=ula.test,mx.ula.test,10 --host-record=mx.ula.test,fd00::25 || { finish; exit 1; }
refused_common="u@lo.test u@zero.test u@ll.test u@mc.test u@lo6.test u@[127.0.0.2] u@[0.0.0.0]
u@[169.254.1.1] u@[224.0.0.1] u@[IPv6:::1] u@[IPv6:fe80::1] u@[IPv6:ff02::1] u@[IPv6:::]"
for policy in private public; do
	rm -rf "$T/queue" "$T/log.jsonl"
	write_config "" "
[direct]
internal_destinations = $policy
port = $UP_PORT_lo
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 2s
timeout = 2s

[queue]
retry_min = 1h"
	start_hikyaku || { finish; exit 1; }
	list=$refused_common
	[ "$policy" = public ] && list="$list u@priv.test u@ula.test u@[10.1.2.3] u@[192.168.1.1] u@[172.16.0.1] u@[IPv6:fd00::1]"
	n=0
	for r in $list; do
		smtp --to "$r" >"$T/ref.out" 2>&1 || true
		grep -q 'queued as' "$T/ref.out" || nok "$policy: a mail to $r is queued" "$T/ref.out"
		n=$((n + 1))
	done
	wait_log bounced 'e["status"] == "5.4.4"' "$n" 60
	for r in $list; do
		check "$policy: $r bounces 5.4.4 without a connection" \
			test "$(log_count bounced "e['to'] == '$r' and e['status'] == '5.4.4'")" -eq 1
	done
	check "$policy: the loopback peer got no connection" test "$(upstream_count lo sessions)" -eq 0
	stop_hikyaku
done
# any: loopback allowed again (what every other test relies on)
rm -rf "$T/queue" "$T/log.jsonl"
write_config "" "
[direct]
internal_destinations = any
port = $UP_PORT_lo
dns_servers = 127.0.0.1:$DNS_PORT
tls = none"
start_hikyaku || { finish; exit 1; }
smtp --to u@lo.test >"$T/any.out" 2>&1
check "any: the loopback MX gets the mail" wait_upstream_count lo 1 30
stop_hikyaku

# ---- 4. never to itself --------------------------------------------------
rm -rf "$T/queue" "$T/log.jsonl"
stop_dns
start_dns --mx-host=loop.test,mx.loop.test,10 --host-record=mx.loop.test,127.0.0.1 || { finish; exit 1; }
write_config "" "
[direct]
internal_destinations = any
port = $PORT
dns_servers = 127.0.0.1:$DNS_PORT
tls = none

[queue]
retry_min = 1h"
start_hikyaku || { finish; exit 1; }
smtp --to u@loop.test >"$T/loop1.out" 2>&1
smtp --to 'v@[127.0.0.1]' >"$T/loop2.out" 2>&1
wait_log bounced 'e["status"] == "5.4.6"' 2 30
check "an MX that is hikyaku itself bounces 5.4.6 at once" \
	test "$(log_count bounced "e['to'] == 'u@loop.test' and e['status'] == '5.4.6'")" -eq 1
check "an address literal of hikyaku itself bounces 5.4.6 at once" \
	test "$(log_count bounced "e['to'] == 'v@[127.0.0.1]' and e['status'] == '5.4.6'")" -eq 1
check "the mails did not come back to hikyaku (received: 2 mails and their 2 DSNs)" \
	test "$(log_count received 'True')" -eq 4
expect "the reason names the loop" "$T/log.jsonl" 'loops back to myself'
finish
