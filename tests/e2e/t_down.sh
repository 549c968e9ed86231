#!/bin/bash
# A destination that is down costs one attempt, not one per mail: after a
# connection-level failure (here the MX answers with an HTTP greeting)
# the mails for it are deferred without connecting, "delivery temporarily
# suspended", until the destination may be tried again (retry_min,
# doubling up to retry_max); once it works, every mail goes, once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
N=40

start_fault_peer down --addr 127.0.0.2 --mode greeting-http || { finish; exit 1; }
start_dns --mx-host=down.test,mx.down.test,10 --host-record=mx.down.test,127.0.0.2 || { finish; exit 1; }
write_config "" "
[direct]
port = $UP_PORT_down
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
max_connections_per_domain = 10
connect_timeout = 3s
timeout = 5s

[queue]
retry_min = 2s
retry_max = 4s"
start_hikyaku || { finish; exit 1; }

$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" "$N" 10 down "$T/down.res" \
	--rcpt 'user{i}@down.test' >"$T/load.out" 2>&1
check "all $N mails are taken" test "$(grep -c ' OK ' "$T/down.res")" -eq "$N"
sleep 1.5
SESS=$(upstream_count down sessions)
check "while down, at most max_connections_per_domain connections were made ($SESS for $N mails)" \
	test "$SESS" -le 10
DEF=$(grep -c '"event":"deferred"' "$T/log.jsonl")
check "every mail is deferred ($DEF deferred events)" test "$DEF" -ge "$N"
expect "later mails are deferred without a connection, saying why" "$T/log.jsonl" \
	'"event":"deferred".*"response":"delivery temporarily suspended: protocol error: .*HTTP'
expect_not "nothing bounces" "$T/log.jsonl" '"event":"bounced"'
"$HIKYAKUCTL" -c "$T/hikyaku.conf" queue list >"$T/list.out" 2>&1
expect "queue list shows the suspension" "$T/list.out" '^    to user[0-9]+@down.test: .*(temporarily suspended|protocol error)'

# Some seconds more of downtime: a probe per retry, not a storm.
sleep 4
SESS2=$(upstream_count down sessions)
check "after 5.5 s down, still few connections ($SESS2)" test "$SESS2" -le 30

heal_peer down
for _ in $(seq 1 200); do
	[ "$(upstream_count down)" -ge "$N" ] && [ "$(queued_count)" -eq 0 ] && break
	sleep 0.1
done
check "once the MX works, every mail is delivered ($(upstream_count down) of $N)" test "$(upstream_count down)" -eq "$N"
check "and the queue is empty" test "$(queued_count)" -eq 0
check "one copy each" upstream_check down \
	'rc = [r for m in msgs for r in m["rcpt_tos"]]; len(rc) == len(set(rc))'
stop_upstreams
stop_dns
finish
