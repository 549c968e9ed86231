#!/bin/bash
# Several relays, one suppression list (SPEC §6.6): two hikyaku daemons,
# A and B, each with its own spool and listener, share a real PostgreSQL 15
# cluster that this test starts (lib_pg.sh). What A learns suppresses on B,
# what B removes is mailed again by A, a bounce for A's mail that comes back
# to B is matched; with the database stopped mail still flows, and what is
# learned meanwhile reaches the database when it is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
. "$(dirname "$0")/lib_pg.sh"

[ -x "$PG_BIN/initdb" ] || { echo "ok - $TEST_NAME: skipped (no $PG_BIN/initdb)"; rm -rf "$T"; exit 0; }
start_pg || { nok "the PostgreSQL cluster starts"; finish; exit 1; }
ok "a private PostgreSQL cluster runs on 127.0.0.1:$PG_PORT"
# The store's unit tests against the real server (they skip without one).
if [ -x "$ROOT/$BUILD/test_suppression_pg" ]; then
	check "test_suppression_pg against the server" env HIKYAKU_TEST_PG_URI="$PG_URI" CK_FORK=yes \
		"$ROOT/$BUILD/test_suppression_pg"
fi

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
echo 'pw' >"$T/svc.pass"
svc_args=(--tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw
	--reject-rcpt 'bad@dest.test=550 5.1.1 <bad@dest.test>: Recipient address rejected: User unknown'
	--reject-rcpt 'bad2@dest.test=550 5.1.1 <bad2@dest.test>: Recipient address rejected: User unknown')
start_upstream svc "${svc_args[@]}" || { finish; exit 1; }
start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_upstream sender --addr 127.0.0.3 --port "$UP_PORT_mx" || { finish; exit 1; }
start_dns --host-record=smtp.service.test,127.0.0.1 \
	--mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	--mx-host=interfactory1.co.jp,mx.sender.test,10 --host-record=mx.sender.test,127.0.0.3 ||
	{ finish; exit 1; }

PORT_A=$PORT
PORT_B=$(free_port)
PID_A=""
PID_B=""
# A reads its password from a passfile named in the URI; B has it in the
# URI itself, which must never be shown.
DB_A=$PG_URI
DB_B="postgresql://hikyaku:hikyaku-pw@127.0.0.1:$PG_PORT/hikyaku"

relay_conf() {
	local r=$1 port=$2 db=$3
	mkdir -p "$T/$r"
	cat >"$T/$r/hikyaku.conf" <<CONF
[server]
listen = 127.0.0.1:$port
hostname = relay-$r.test.example

[routing]
verified_domains = interfactory1.co.jp

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
envelope_from = bounces@mail.shop.test
verp = yes

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
internal_destinations = any

[queue]
dir = $T/$r/queue
retry_min = 1s
retry_max = 2s

[suppression]
db = $db
bounce_address = bounces@mail.shop.test

[log]
file = $T/$r/log.jsonl

[control]
socket = $T/$r/control.sock
CONF
}
relay_conf A "$PORT_A" "$DB_A"
relay_conf B "$PORT_B" "$DB_B"

start_relay() {
	local r=$1 port
	port=$([ "$r" = A ] && echo "$PORT_A" || echo "$PORT_B")
	"$HIKYAKU" -c "$T/$r/hikyaku.conf" >>"$T/$r/hikyaku.out" 2>&1 &
	eval "PID_$r=$!"
	wait_port "$port" || { nok "relay $r starts" "$T/$r/hikyaku.out"; return 1; }
	sleep 0.2
}
stop_relay() {
	local r=$1 pid
	pid=$(eval echo "\${PID_$r}")
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	local rc=0
	wait "$pid" || rc=$?
	eval "PID_$r="
	[ "$rc" -eq 0 ] || nok "relay $r exits 0 on SIGTERM (got $rc)" "$T/$r/hikyaku.out"
}
# The relays go before the cluster and the peers (traps run in this order).
eval "set -- $(trap -p EXIT)"
trap "[ -n \"\$PID_A\" ] && kill -9 \$PID_A 2>/dev/null; [ -n \"\$PID_B\" ] && kill -9 \$PID_B 2>/dev/null; ${3:-}" EXIT

ctl() { local r=$1; shift; "$HIKYAKUCTL" -c "$T/$r/hikyaku.conf" "$@"; }
send() {
	local r=$1 from=$2 to=$3 port
	port=$([ "$r" = A ] && echo "$PORT_A" || echo "$PORT_B")
	swaks --server 127.0.0.1 --port "$port" --from "$from" --to "$to" --timeout 20 >"$T/send.out" 2>&1
	grep -q '250 2.0.0 Ok: queued as' "$T/send.out"
}
log_count() { grep -c -- "$2" "$T/$1/log.jsonl" 2>/dev/null || true; }
wait_log() { for _ in $(seq 1 200); do grep -q -- "$2" "$T/$1/log.jsonl" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_out() { for _ in $(seq 1 300); do grep -q -- "$2" "$T/$1/hikyaku.out" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_more() { # RELAY REGEX COUNT: more than COUNT matching log lines
	for _ in $(seq 1 200); do [ "$(log_count "$1" "$2")" -gt "$3" ] && return 0; sleep 0.1; done; return 1; }
got() { upstream_rcpts "$1" | grep -qx "$2"; }
wait_rcpt() { for _ in $(seq 1 200); do got "$1" "$2" && return 0; sleep 0.1; done; return 1; }
wait_pg() { for _ in $(seq 1 100); do [ "$(pg_sql "$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.1; done; return 1; }
# The address is in B's (or A's) local copy, i.e. the NOTIFY arrived.
in_copy() { # RELAY ADDRESS YES|NO
	local db="$T/$1/queue/suppression-pg.db" want=$3
	for _ in $(seq 1 100); do
		n=$($PY -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("select count(*) from entries where address = ? collate nocase",(sys.argv[2],)).fetchone()[0])' "$db" "$2" 2>/dev/null)
		{ [ "$want" = yes ] && [ "${n:-0}" -eq 1 ]; } && return 0
		{ [ "$want" = no ] && [ "${n:-1}" -eq 0 ]; } && return 0
		sleep 0.1
	done
	return 1
}

check "relay A's configuration with a postgresql:// URI is valid" "$HIKYAKU" -c "$T/A/hikyaku.conf" --check
start_relay A || { finish; exit 1; }
start_relay B || { finish; exit 1; }
check "A connects to the database" wait_out A 'suppression database postgresql://hikyaku@127.0.0.1:[0-9]*/hikyaku.* is connected'
check "B connects to the database" wait_out B 'suppression database postgresql://hikyaku@127.0.0.1:[0-9]*/hikyaku is connected'
check "both starting at once made the tables once, with a schema version" \
	test "$(pg_sql 'SELECT version FROM hikyaku_schema' | tr '\n' ' ')" = "1 "
ctl B status --json >"$T/statusB.json" 2>&1
check "status says which store is in use and that it is reachable" $PY -c '
import json,sys; s=json.load(open(sys.argv[1]))["suppression"]
assert s["store"] == "postgresql" and s["reachable"] is True, s' "$T/statusB.json"
ctl B status >"$T/statusB.txt" 2>&1
expect "the human status has a suppression line" "$T/statusB.txt" '^suppression: +postgresql postgresql://hikyaku@127\.0\.0\.1:[0-9]+/hikyaku, reachable'

# 1. A 5.1.1 bounce through A suppresses the next mail submitted to B.
check "A: a mail to the invalid address is accepted" send A test@interfactory1.co.jp bad@dest.test
check "A learns the address from the delivery" wait_log A '"event":"learned","to":"bad@dest.test","source":"delivery"'
check "it is in the database" wait_pg "SELECT count(*) FROM hikyaku_suppression WHERE address_key = 'bad@dest.test'" 1
check "the address reaches B's copy within seconds (NOTIFY)" in_copy B bad@dest.test yes
n0=$(upstream_count sender)
check "B: the next mail to it gets 250" send B test@interfactory1.co.jp bad@dest.test,good@dest.test
check "B suppresses it" wait_log B '"event":"suppressed","queue_id":"[0-9A-F]*","to":"bad@dest.test","route":"service"'
check "B delivers the other recipient" wait_rcpt svc good@dest.test
check "the sender gets B's notice" wait_upstream_count sender $((n0 + 1)) 20
check "one delivery attempt for the address in all, A's" sh -c "
	[ \"\$(grep -c '\"event\":\"bounced\".*\"to\":\"bad@dest.test\"' '$T/A/log.jsonl')\" = 1 ] &&
	! grep -q '\"event\":\"bounced\".*\"to\":\"bad@dest.test\"' '$T/B/log.jsonl'"

# 2. suppression remove on B lets A mail it again.
check "B: suppression remove" ctl B suppression remove bad@dest.test
check "the removal reaches A's copy" in_copy A bad@dest.test no
before=$(log_count A '"event":"bounced".*"to":"bad@dest.test"')
check "A: a mail to the removed address is accepted" send A test@interfactory1.co.jp bad@dest.test
check "A attempts it again (and it bounces again)" wait_more A '"event":"bounced".*"to":"bad@dest.test"' "$before"

# 3. A VERP bounce for a mail that A sent, arriving at B, is matched.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" "${svc_args[@]}" --reply-message-id \
	--bounce-to "127.0.0.1:$PORT_B" --bounce-delay 2 --bounce-rcpt invalid@dest.test || true
n0=$(upstream_count sender)
check "A: a mail the service will bounce later gets 250" send A test@interfactory1.co.jp invalid@dest.test
qid=$(grep -oE 'queued as [0-9A-F]{18}' "$T/send.out" | awk '{print $3}')
check "the service accepts it from A with A's VERP sender" wait_rcpt svc invalid@dest.test
check "A's record of the mail is in the database" \
	wait_pg "SELECT count(*) FROM hikyaku_sent WHERE queue_id LIKE '$qid-%' AND rcpt_key = 'invalid@dest.test'" 1
check "the bounce comes back to B and B learns the address from it" \
	wait_log B '"event":"learned","to":"invalid@dest.test","source":"dsn"'
check "B sends the original sender its notice" wait_upstream_count sender $((n0 + 1)) 20
check "the notice names the recipient and A's queue id" upstream_check sender \
	"any('invalid@dest.test' in data(m) and '5.1.1' in data(m) and '$qid' in data(m) for m in msgs)"
expect_not "B did not call the report unmatched" "$T/B/hikyaku.out" 'not learned'

# 4. The database stops in the middle of a flow.
stop_pg
check "A logs that the database went away" wait_out A 'suppression database .* is unreachable'
check "B logs it too" wait_out B 'suppression database .* is unreachable'
ctl A status --json >"$T/statusA.json" 2>&1
check "A's status says the database is unreachable" $PY -c '
import json,sys; s=json.load(open(sys.argv[1]))["suppression"]
assert s["store"] == "postgresql" and s["reachable"] is False and s.get("error"), s' "$T/statusA.json"
d0=$(log_count A '"event":"delivered"')
t0=$(date +%s%N)
for i in 1 2 3; do send A test@interfactory1.co.jp "down$i@dest.test" || true; done
check "A: mail to the bad address during the outage is accepted" send A test@interfactory1.co.jp bad2@dest.test
check "A: and mail to a listed address too" send A test@interfactory1.co.jp invalid@dest.test
check "mail submitted during the outage is delivered" wait_rcpt svc down3@dest.test
t1=$(date +%s%N)
check "A learns the bad address meanwhile (kept locally)" wait_log A '"event":"learned","to":"bad2@dest.test","source":"delivery"'
check "A still suppresses what it saw before (from its local copy)" \
	wait_log A '"event":"suppressed","queue_id":"[0-9A-F]*","to":"invalid@dest.test"'
check "no delivery during the outage waited on the database (delay_ms < 5000)" $PY -c '
import json,sys
ev=[json.loads(l) for l in open(sys.argv[1])]
d=[e for e in ev if e["event"]=="delivered" and e["to"].startswith("down")]
assert len(d)==3 and all(e["delay_ms"] < 5000 for e in d), [(e["to"], e["delay_ms"]) for e in d]' "$T/A/log.jsonl"
echo "# outage: 3 mails submitted and delivered in $(( (t1 - t0) / 1000000 )) ms"
ctl A status --json >"$T/statusA2.json" 2>&1
check "A's status counts the change waiting to be written" $PY -c '
import json,sys; s=json.load(open(sys.argv[1]))["suppression"]
assert s["pending"] >= 1, s' "$T/statusA2.json"
start_pg || nok "the cluster starts again"
check "A logs that the database is back" wait_out A 'suppression database .* is reachable again'
check "the address learned during the outage is in the database" \
	wait_pg "SELECT count(*) FROM hikyaku_suppression WHERE address_key = 'bad2@dest.test'" 1
check "and A's records of mail sent meanwhile" wait_pg "SELECT count(*) FROM hikyaku_sent WHERE rcpt_key LIKE 'down%'" 3
check "B reconnects and reads the list again: it has the address" in_copy B bad2@dest.test yes
check "B suppresses it" sh -c "swaks --server 127.0.0.1 --port $PORT_B --from test@interfactory1.co.jp --to bad2@dest.test --timeout 20 >/dev/null 2>&1"
check "B logs suppressed for it" wait_log B '"event":"suppressed","queue_id":"[0-9A-F]*","to":"bad2@dest.test"'
ctl A status --json >"$T/statusA3.json" 2>&1
check "A's status: reachable, nothing pending" $PY -c '
import json,sys; s=json.load(open(sys.argv[1]))["suppression"]
assert s["reachable"] is True and s["pending"] == 0, s' "$T/statusA3.json"
check "the learned event was logged once for the address" test "$(log_count A '"event":"learned","to":"bad2@dest.test"')" -eq 1
check "each mail of the outage was delivered once" upstream_check svc \
	'all(sum(1 for m in msgs if ("down%d@dest.test" % i) in m["rcpt_tos"]) == 1 for i in (1,2,3))'

# 5. Import / export between the SQLite and the PostgreSQL store.
sed "s|^db = .*|db = $T/sq.db|" "$T/A/hikyaku.conf" >"$T/sq.conf"
sed "s|^db = .*|db = $T/sq2.db|" "$T/A/hikyaku.conf" >"$T/sq2.conf"
printf 'address,reason,status,response,source,first_seen,last_seen,count\nold1@dest.test,bounced,5.1.1,"550 5.1.1 <old1@dest.test>: no, such user",delivery,2025-01-01T00:00:00.000Z,2025-02-01T00:00:00.000Z,3\nOld2@Dest.test,complaint,,,admin,2025-03-01T10:00:00.000Z,2025-03-01T10:00:00.000Z,1\n' >"$T/seed.csv"
check "SQLite store: import" "$HIKYAKUCTL" -c "$T/sq.conf" suppression import "$T/seed.csv"
"$HIKYAKUCTL" -c "$T/sq.conf" suppression export >"$T/sq.csv"
check "SQLite export | PostgreSQL import" sh -c "'$HIKYAKUCTL' -c '$T/A/hikyaku.conf' suppression import '$T/sq.csv'"
ctl B suppression export >"$T/pg.csv"
check "the PostgreSQL export has the SQLite rows unchanged" sh -c "tail -n +2 '$T/sq.csv' | while read -r l; do grep -qxF \"\$l\" '$T/pg.csv' || exit 1; done"
check "case-insensitive on the shared store" sh -c "'$HIKYAKUCTL' -c '$T/B/hikyaku.conf' suppression list --search OLD2@dest | grep -q Old2@Dest.test"
check "PostgreSQL export | SQLite import" "$HIKYAKUCTL" -c "$T/sq2.conf" suppression import "$T/pg.csv"
"$HIKYAKUCTL" -c "$T/sq2.conf" suppression export >"$T/sq2.csv"
check "round trip: the SQLite export equals the PostgreSQL export" diff "$T/pg.csv" "$T/sq2.csv"
check "importing the same file twice changes nothing" sh -c "'$HIKYAKUCTL' -c '$T/A/hikyaku.conf' suppression import '$T/pg.csv' >/dev/null &&
	'$HIKYAKUCTL' -c '$T/A/hikyaku.conf' suppression export | diff '$T/pg.csv' -"

# 6. Concurrent adds from both relays while mail flows through both.
pids=()
for i in $(seq 1 8); do
	swaks --server 127.0.0.1 --port "$PORT_A" --from test@interfactory1.co.jp --to "flowa$i@dest.test" --timeout 20 >/dev/null 2>&1 &
	pids+=($!)
	swaks --server 127.0.0.1 --port "$PORT_B" --from test@interfactory1.co.jp --to "flowb$i@dest.test" --timeout 20 >/dev/null 2>&1 &
	pids+=($!)
done
( f=0; for i in $(seq 1 25); do ctl A suppression add "conc$i@dest.test" --reason a >/dev/null 2>&1 || f=$((f + 1)); done; echo $f >"$T/failsA" ) &
pids+=($!)
( f=0; for i in $(seq 1 25); do ctl B suppression add "conc$i@dest.test" --reason b >/dev/null 2>&1 || f=$((f + 1)); done; echo $f >"$T/failsB" ) &
pids+=($!)
wait "${pids[@]}"
check "25 + 25 concurrent adds of the same addresses from both relays: no failure" test "$(cat "$T/failsA")$(cat "$T/failsB")" = 00
check "each listed once, counted twice" test "$(pg_sql "SELECT count(*) FROM hikyaku_suppression WHERE address_key LIKE 'conc%' AND count = 2")" = 25
check "the mails flowing meanwhile arrive (A)" wait_rcpt svc flowa8@dest.test
check "the mails flowing meanwhile arrive (B)" wait_rcpt svc flowb8@dest.test
check "the adds reach A's copy" in_copy A conc25@dest.test yes

# The password is never shown: not in the log, stderr, status or config.
ctl B status --json >"$T/statusB2.json" 2>&1
ctl B config >"$T/configB.txt" 2>&1
check "B's password appears nowhere it writes" sh -c "! grep -l 'hikyaku-pw' '$T/B/hikyaku.out' '$T/B/log.jsonl' '$T/statusB2.json' '$T/configB.txt' '$T/statusB.txt'"
stop_pg
ctl B suppression list >"$T/listdown.out" 2>&1
check "hikyakuctl against a stopped database: exit 2" test $? -eq 2
expect "with one clear sentence" "$T/listdown.out" 'cannot open the suppression list postgresql://hikyaku@127.0.0.1:[0-9]+/hikyaku: the PostgreSQL database cannot be reached'
expect_not "without the password" "$T/listdown.out" 'hikyaku-pw'

# A server that accepts the connection and never answers: hikyakuctl gives
# up after the connect timeout (3 s), not never.
SILENT_PORT=$(free_port)
$PY -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(60)' "$SILENT_PORT" &
SILENT_PID=$!
wait_port "$SILENT_PORT"
sed "s|^db = .*|db = postgresql://hikyaku@127.0.0.1:$SILENT_PORT/hikyaku|" "$T/A/hikyaku.conf" >"$T/silent.conf"
t0=$(date +%s%N)
"$HIKYAKUCTL" -c "$T/silent.conf" suppression add x@dest.test >"$T/silent.out" 2>&1
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "a silent server: hikyakuctl exits 2" test "$rc" -eq 2
check "after the connect timeout, within 6 s (took $ms ms)" test "$ms" -lt 6000
expect "saying it could not be reached" "$T/silent.out" 'cannot be reached|did not answer'
# A relay whose database never answers still delivers without waiting.
PORT_C=$(free_port)
relay_conf C "$PORT_C" "postgresql://hikyaku@127.0.0.1:$SILENT_PORT/hikyaku"
"$HIKYAKU" -c "$T/C/hikyaku.conf" >>"$T/C/hikyaku.out" 2>&1 &
PID_C=$!
if wait_port "$PORT_C"; then
	swaks --server 127.0.0.1 --port "$PORT_C" --from test@interfactory1.co.jp --to silent1@dest.test --timeout 20 >/dev/null 2>&1
	check "relay C (silent database) delivers" wait_rcpt svc silent1@dest.test
	# The sink has the mail a moment before C logs "delivered": wait for the line.
	check "without waiting on the database (delay_ms < 5000)" $PY -c '
import json,sys,time
for _ in range(100):
    d=[json.loads(l) for l in open(sys.argv[1]) if "\"delivered\"" in l]
    if d: break
    time.sleep(0.1)
assert d and all(e["delay_ms"] < 5000 for e in d), d' "$T/C/log.jsonl"
	check "C logs the database as unreachable" wait_out C 'suppression database .* is unreachable'
	kill -TERM "$PID_C"; wait "$PID_C"
else
	nok "relay C starts" "$T/C/hikyaku.out"
	kill -9 "$PID_C" 2>/dev/null
fi
kill "$SILENT_PID" 2>/dev/null; wait "$SILENT_PID" 2>/dev/null

stop_relay A
stop_relay B
finish
