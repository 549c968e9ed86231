#!/bin/bash
# Delivery end to end (SPEC §4, §5 outbound): swaks -> hikyaku -> real SMTP
# servers on loopback (aiosmtpd as the delivery service with STARTTLS and
# AUTH, and as MX hosts), dnsmasq serving the MX and A records.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
CERT="$T/certs/server.pem,$T/certs/server.key"
echo 'right-pass' >"$T/svc.pass"

# The service, and MX hosts sharing one port on 127.0.0.2-5.
start_upstream svc --tls "$CERT" --auth shop:right-pass || { finish; exit 1; }
start_upstream mx --addr 127.0.0.2 --reject-rcpt 'bad@dest.test=550 5.1.1 User unknown' || { finish; exit 1; }
MXP=$UP_PORT_mx
start_upstream sender --addr 127.0.0.3 --port "$MXP" || { finish; exit 1; }
start_upstream flaky --addr 127.0.0.4 --port "$MXP" --fail-first '1=451 4.3.0 Try again later' || { finish; exit 1; }
start_dns --host-record=smtp.service.test,127.0.0.1 \
	--mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	--mx-host=sender.test,mx.sender.test,10 --host-record=mx.sender.test,127.0.0.3 \
	--mx-host=example.com,mx.sender.test,10 --mx-host=interfactory1.co.jp,mx.sender.test,10 \
	--mx-host=flaky.test,mx.flaky.test,10 --host-record=mx.flaky.test,127.0.0.4 \
	--mx-host=later.test,mx.later.test,10 --host-record=mx.later.test,127.0.0.5 \
	--mx-host=dead.test,mx.dead.test,10 --host-record=mx.dead.test,127.0.0.6 \
	--mx-host=v6.test,mx.v6.test,10 --host-record=mx.v6.test,::1 \
	--mx-host=nullmx.test,.,0 || { finish; exit 1; }

conf() { # conf VERIFIED_DOMAINS_LINES [EXTRA]
	write_config "max_recipients = 200" "
[routing]
verified_domains = $1

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
rate = ${RATE:-100/s}
pause = 2s
connect_timeout = 3s
timeout = 10s

[direct]
port = $MXP
dns_servers = 127.0.0.1:$DNS_PORT
tls = may
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 1s
retry_max = 2s
lifetime = ${LIFETIME:-1h}
${2:-}"
}
conf "interfactory1.co.jp, example.co.jp
    test.com"
check "the test configuration is valid" "$HIKYAKU" -c "$T/hikyaku.conf" --check
start_hikyaku || { finish; exit 1; }

send() { # send FROM TO [swaks args]
	local from=$1 to=$2
	shift 2
	swaks --server 127.0.0.1 --port "$PORT" --from "$from" --to "$to" --timeout 20 "$@" >"$T/send.out" 2>&1
	grep -q 'queued as' "$T/send.out" || nok "swaks from $from to $to queued" "$T/send.out"
}
got() { upstream_rcpts "$1" | grep -qx "$2"; }
wait_rcpt() { # wait_rcpt UPSTREAM ADDR
	for _ in $(seq 1 150); do got "$1" "$2" && return 0; sleep 0.1; done
	return 1
}

# SPEC §4 rows 1-6 with verified_domains = interfactory1.co.jp, example.co.jp / test.com.
send test@interfactory1.co.jp row1@dest.test
send test@example.com row2@dest.test
send test@test.interfactory1.co.jp row3@dest.test
send test@testinterfactory1.co.jp row4@dest.test
check "row 1: test@interfactory1.co.jp goes through the service" wait_rcpt svc row1@dest.test
check "row 2: test@example.com goes direct" wait_rcpt mx row2@dest.test

# A recipient domain spelled like the service's destination is a domain
# like any other: the direct route's mail to it never reaches the service.
# (From the null sender: they wait, unreachable, and their expiry later
# must not send notices that other checks would count.)
send '<>' x@service
send '<>' y@invalid
for _ in $(seq 1 50); do grep -q '"to":"y@invalid"' "$T/log.jsonl" && grep -q '"to":"x@service"' "$T/log.jsonl" && break; sleep 0.1; done
check "x@service (direct route) is not sent to the delivery service" upstream_check svc 'not any(r in ("x@service", "y@invalid") for m in msgs for r in m["rcpt_tos"])'
expect "x@service is tried on the direct route" "$T/log.jsonl" '"to":"x@service","route":"direct"'

# A quoted local part with a space (RFC 5321 Quoted-string) is taken by
# the listener, and sent on as it is, next to a plain recipient.
send test@example.com '"john doe"@dest.test' --to '"john doe"@dest.test,plain@dest.test'
check "a quoted local part with a space is relayed as given" wait_rcpt mx '"john doe"@dest.test'
check "and the plain recipient of the same mail too" wait_rcpt mx plain@dest.test
check "row 3: a subdomain goes through the service" wait_rcpt svc row3@dest.test
check "row 4: testinterfactory1.co.jp (no dot boundary) goes direct" wait_rcpt mx row4@dest.test
send shop@example.co.jp row5@dest.test
check "row 5: the second entry of a comma list matches" wait_rcpt svc row5@dest.test
send shop@test.com row6@dest.test
check "row 6: the entry on the continuation line matches" wait_rcpt svc row6@dest.test
check "no service mail went direct" upstream_check mx 'not any(r.startswith(("row1@","row3@","row5@","row6@")) for m in msgs for r in m["rcpt_tos"])'
check "the service is used over TLS with AUTH" upstream_check svc 'all(m["tls"] and m["auth_user"] == "shop" for m in msgs)'
check "the message reaches the service intact" upstream_check svc 'any("X-Mailer: swaks" in data(m) and "Received: from" in data(m) for m in msgs)'
check "hikyakuctl route names the entry" sh -c "\"$HIKYAKUCTL\" -c \"$T/hikyaku.conf\" route test@test.interfactory1.co.jp | grep -qx 'service (matched \"interfactory1.co.jp\")'"
"$HIKYAKUCTL" -c "$T/hikyaku.conf" route test@testinterfactory1.co.jp >"$T/route.out" 2>&1
check "hikyakuctl route: no match exits 1 and says direct" test $? -eq 1
expect "hikyakuctl route prints direct" "$T/route.out" '^direct$'

# The header From decides, not the envelope (match_on = header_from).
send bounce-handler@example.com row1h@dest.test --header 'From: "Shop" <test@interfactory1.co.jp>'
check "header From decides the route" wait_rcpt svc row1h@dest.test
send test@interfactory1.co.jp row2h@dest.test --header 'From: "test@interfactory1.co.jp" <evil@example.com>'
check "a display name never decides" wait_rcpt mx row2h@dest.test

# Rows 7-8 (a single verified address) and 9 (empty), after a reload.
conf "test@testinterfactory1.co.jp"
kill -HUP "$HPID"; sleep 0.5
send test@testinterfactory1.co.jp row7@dest.test
send test@example.com row8@dest.test
check "row 7: the verified address goes through the service" wait_rcpt svc row7@dest.test
check "row 8: another address goes direct" wait_rcpt mx row8@dest.test
sed -i 's/^verified_domains = .*/verified_domains =/' "$T/hikyaku.conf"
kill -HUP "$HPID"; sleep 0.5
send test@testinterfactory1.co.jp row9@dest.test
check "row 9: no verified domain: direct" wait_rcpt mx row9@dest.test
sed -i 's/^verified_domains =.*/verified_domains = interfactory1.co.jp/' "$T/hikyaku.conf"
kill -HUP "$HPID"; sleep 0.5

# 120 recipients reach the service in transactions of at most 50.
rcpts=$(for i in $(seq 1 120); do printf 'many%d@dest.test,' "$i"; done)
send test@interfactory1.co.jp "${rcpts%,}" --header 'To: undisclosed-recipients:;'
check "120 recipients all reach the service" wait_rcpt svc many120@dest.test
sleep 0.5
check "in transactions of at most 50 recipients" upstream_check svc 'ms=[m for m in msgs if any(r.startswith("many") for r in m["rcpt_tos"])]; len(ms) >= 3 and all(len(m["rcpt_tos"]) <= 50 for m in ms) and sum(len(m["rcpt_tos"]) for m in ms) == 120'

# The rate (recipients per second) is never exceeded: with 20/s the bucket
# holds 20, so 100 recipients go in transactions of at most 20, spread
# over at least 4 seconds.
RATE=20/s conf "interfactory1.co.jp"
kill -HUP "$HPID"; sleep 0.5
rcpts=$(for i in $(seq 1 100); do printf 'rate%d@dest.test,' "$i"; done)
send test@interfactory1.co.jp "${rcpts%,}" --header 'To: undisclosed-recipients:;'
check "100 recipients at 20/s all arrive" wait_rcpt svc rate100@dest.test
sleep 0.5
check "at most 20 recipients per transaction at 20/s" upstream_check svc 'ms=[m for m in msgs if any(r.startswith("rate") for r in m["rcpt_tos"])]; all(len(m["rcpt_tos"]) <= 20 for m in ms) and sum(len(m["rcpt_tos"]) for m in ms) == 100'
check "and spread over at least 3.5 s (no burst above the rate)" upstream_check svc 'ts=[m["ts"] for m in msgs if any(r.startswith("rate") for r in m["rcpt_tos"])]; max(ts) - min(ts) >= 3.5'
conf "interfactory1.co.jp"
kill -HUP "$HPID"; sleep 0.5

# 5xx: bounced, and the DSN reaches the sender's MX.
send shop@sender.test bad@dest.test
check "a 550 5.1.1 bounces: the DSN reaches the sender's MX" wait_rcpt sender shop@sender.test
check "the DSN is a delivery-status report naming the recipient" upstream_check sender 'd=data(msgs[-1]); "multipart/report" in d and "report-type=delivery-status" in d and "bad@dest.test" in d and "Status: 5.1.1" in d'
check "the DSN comes from MAILER-DAEMON with the null sender" upstream_check sender 'msgs[-1]["mail_from"] == "" and "MAILER-DAEMON@relay.test.example" in data(msgs[-1])'

# A bounce (null sender) that fails is never bounced again. (swaks --from ''
# sends root@HOST, not the null sender: '<>' is.)
n0=$(upstream_count sender)
dsn_count() { $PY -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if (e := json.loads(l))["event"] == "received" and e["session"] is None))' "$T/log.jsonl"; }
d0=$(dsn_count)
swaks --server 127.0.0.1 --port "$PORT" --from '<>' --to bad@dest.test --timeout 20 >"$T/null.out" 2>&1
expect "a mail from the null sender is queued" "$T/null.out" 'queued as'
nqid=$(grep -oE 'queued as [0-9A-F]{18}' "$T/null.out" | awk '{print $3}')
check "it really has the null sender (received: from \"\")" grep -q "\"event\":\"received\",\"queue_id\":\"$nqid\".*\"from\":\"\"," "$T/log.jsonl"
for _ in $(seq 1 100); do grep -q "\"event\":\"bounced\",\"queue_id\":\"$nqid\"" "$T/log.jsonl" && break; sleep 0.1; done
expect "its recipient bounces (550 5.1.1)" "$T/log.jsonl" "\"event\":\"bounced\",\"queue_id\":\"$nqid\",\"to\":\"bad@dest.test\".*\"status\":\"5.1.1\""
sleep 1.5
check "its failure sends no DSN (none queued, none at the MX)" test "$(dsn_count) $(upstream_count sender)" = "$d0 $n0"

# Null MX and a domain that does not exist bounce at once.
n0=$(upstream_count sender)
send shop@sender.test user@nullmx.test
send shop@sender.test user@nosuch.test
wait_upstream_count sender $((n0 + 2)) 20
check "null MX: DSN with 5.1.10" upstream_check sender 'any("user@nullmx.test" in data(m) and "5.1.10" in data(m) for m in msgs)'
check "NXDOMAIN: DSN with 5.1.2" upstream_check sender 'any("user@nosuch.test" in data(m) and "5.1.2" in data(m) for m in msgs)'

# 4xx then success: deferred, retried, delivered.
send shop@sender.test once@flaky.test
check "a 451 then a retry delivers" wait_rcpt flaky once@flaky.test

# Throttling (454) by the service: deferred and paused, never lost.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass --throttle '1=454 4.7.0 Throttling failure: Maximum sending rate exceeded.' || true
send test@interfactory1.co.jp throttled@dest.test
check "a throttled mail is delivered after the pause" wait_rcpt svc throttled@dest.test

# A certificate with the wrong name: deferred, never sent in plain text.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$T/certs/wrong.pem,$T/certs/wrong.key" --auth shop:right-pass || true
send test@interfactory1.co.jp wrongcert@dest.test
sleep 3
check "wrong-name certificate: nothing delivered" sh -c "! grep -q wrongcert@dest.test '$T'/up-svc/messages.jsonl"
# Service down, then back with the right certificate: delivered.
stop_upstream svc
sleep 1
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass || true
check "once the service is back (right certificate) the mail goes" wait_rcpt svc wrongcert@dest.test

# A wrong password defers and pauses; after the fix and a reload, it goes.
echo 'wrong-pass' >"$T/svc.pass"
kill -HUP "$HPID"; sleep 0.5
send test@interfactory1.co.jp authfix@dest.test
sleep 2
check "wrong password: nothing delivered" sh -c "! grep -q authfix@dest.test '$T'/up-svc/messages.jsonl"
echo 'right-pass' >"$T/svc.pass"
kill -HUP "$HPID"
check "after the fix and a reload the mail goes" wait_rcpt svc authfix@dest.test

# ENVID= goes to a service that offers DSN (SPEC §5), with the queue id.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass --dsn || true
send test@interfactory1.co.jp envid@dest.test
check "a service offering DSN gets the mail" wait_rcpt svc envid@dest.test
qid=$(grep -oE 'queued as [0-9A-F]{18}' "$T/send.out" | awk '{print $3}')
check "with ENVID= set to the queue id and its tag (QUEUEID-TAG)" upstream_check svc "import re; any(re.fullmatch('$qid-[0-9a-f]{16}', m.get('envid') or '') for m in msgs)"

# Bytes behind the STARTTLS reply: the connection is dropped, the mail waits.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass --starttls-junk '250 injected' || true
send test@interfactory1.co.jp junk@dest.test
sleep 2.5
check "a server injecting bytes after its STARTTLS reply gets nothing" sh -c "! grep -q junk@dest.test '$T'/up-svc/messages.jsonl"

stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass || true
check "the mail deferred by the injecting server goes once the service is sane" wait_rcpt svc junk@dest.test

# A service that does not offer STARTTLS: deferred, never plain text.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --auth shop:right-pass || true
send test@interfactory1.co.jp notls@dest.test
sleep 2.5
check "a service without STARTTLS gets nothing in plain text" sh -c "! grep -q notls@dest.test '$T'/up-svc/messages.jsonl"
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass || true
check "and the mail goes once STARTTLS is back" wait_rcpt svc notls@dest.test

# 554 for an unverified identity bounces, and says so loudly.
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass \
	--reject-mail '554 Message rejected: Email address is not verified. The following identities failed the check: test@interfactory1.co.jp' || true
n0=$(upstream_count sender)
send test@interfactory1.co.jp unverified@dest.test
wait_upstream_count sender $((n0 + 1)) 20
check "554 unverified: the sender gets a DSN" upstream_check sender 'any("unverified@dest.test" in data(m) and "not verified" in data(m) for m in msgs)'
expect "554 unverified is logged loudly" "$T/hikyaku.out" 'ALERT.*not verified'
stop_upstream svc
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass || true


# IPv6: an MX with only an AAAA record.
start_upstream6 v6 --port "$MXP" || true
send shop@sender.test user@v6.test
check "an IPv6-only MX gets its mail" wait_rcpt v6 user@v6.test

# A restart mid-queue sends nothing twice.
send shop@sender.test "once1@dest.test,later@later.test"
check "the reachable recipient is delivered" wait_rcpt mx once1@dest.test
sleep 0.5
kill -9 "$HPID"; wait "$HPID" 2>/dev/null; HPID=""
start_upstream later --addr 127.0.0.5 --port "$MXP" || true
start_hikyaku || { finish; exit 1; }
check "after the restart the deferred recipient is delivered" wait_rcpt later later@later.test
sleep 1
check "and the delivered one got exactly one copy" test "$(upstream_rcpts mx | grep -cx once1@dest.test)" -eq 1

# [service] max_connections: 12 mails at once never open more than 2.
conf "interfactory1.co.jp"
sed -i 's/^rate = .*/&\nmax_connections = 2/' "$T/hikyaku.conf"
kill -HUP "$HPID"; sleep 0.5
t0=$(date +%s.%N)
pids=()
for i in $(seq 1 12); do
	swaks --server 127.0.0.1 --port "$PORT" --from test@interfactory1.co.jp --to "par$i@dest.test" \
		--timeout 20 >/dev/null 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
for i in $(seq 1 12); do wait_rcpt svc "par$i@dest.test" || break; done
check "12 mails submitted at once all reach the service" wait_rcpt svc par12@dest.test
stop_upstream svc
check "over at most max_connections = 2 connections at a time" upstream_check svc "
ss = [x for x in sessions if x['start'] >= $t0]
ev = sorted([(x['start'], 1) for x in ss] + [(x.get('end') or 1e12, -1) for x in ss])
peak = cur = 0
for _, d in ev:
    cur += d
    peak = max(peak, cur)
len(ss) >= 1 and peak <= 2"
start_upstream svc --port "$UP_PORT_svc" --tls "$CERT" --auth shop:right-pass || true
conf "interfactory1.co.jp"
kill -HUP "$HPID"; sleep 0.5

# Expiry: a destination that never answers, a short lifetime.
LIFETIME=3s conf "interfactory1.co.jp"
kill -HUP "$HPID"; sleep 0.5
n0=$(upstream_count sender)
send shop@sender.test user@dead.test
wait_upstream_count sender $((n0 + 1)) 20
check "after lifetime the mail expires and the sender gets a DSN" upstream_check sender 'any("user@dead.test" in data(m) and "4.4.7" in data(m) for m in msgs)'

stop_hikyaku
stop_upstream svc
check "connections to the service are reused across transactions" upstream_check svc 'any(x.get("transactions", 0) >= 2 for x in sessions)'
# The log has every outcome with the fields of SPEC §7.
$PY - "$T/log.jsonl" >"$T/log.out" 2>&1 <<'PYEOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
by = lambda e: [x for x in ev if x["event"] == e]
for e in by("delivered") + by("bounced") + by("deferred"):
    for k in ("queue_id", "to", "route", "relay", "status", "response", "tls", "attempt", "delay_ms"):
        assert k in e, (k, e)
for e in by("deferred"):
    assert "next_retry" in e, e
r = {e["to"]: e for e in by("delivered")}
assert r["row1@dest.test"]["route"] == "service" and r["row1@dest.test"]["tls"] is True, r["row1@dest.test"]
assert r["row2@dest.test"]["route"] == "direct", r["row2@dest.test"]
assert "[127.0.0.2]" in r["row2@dest.test"]["relay"], r["row2@dest.test"]
b = {e["to"]: e for e in by("bounced")}
assert b["bad@dest.test"]["status"] == "5.1.1", b
assert b["user@nullmx.test"]["status"] == "5.1.10", b
assert b["user@nosuch.test"]["status"] == "5.1.2", b
assert b["unverified@dest.test"]["response"].startswith("554"), b
assert any(e["to"] == "junk@dest.test" for e in by("deferred")), "junk not deferred"
d = [e for e in by("deferred") if e["to"] == "throttled@dest.test"]
assert d and d[0]["response"].startswith("454"), d
rec = {e["queue_id"]: e for e in by("received")}
assert any(e["route"] == "service" and e["matched"] == "interfactory1.co.jp" for e in rec.values())
x = [e for e in by("expired") if e["to"] == "user@dead.test"]
assert x, "no expired event"
for k in ("queue_id", "to", "route", "attempt", "response"):
    assert k in x[0], (k, x[0])
assert any(e["to"] == "user@dead.test" for e in by("deferred")), "no deferred before the expiry"
print("log ok")
PYEOF
if grep -q 'log ok' "$T/log.out"; then ok "delivered/deferred/bounced events carry SPEC §7 fields"; else nok "delivered/deferred/bounced events carry SPEC §7 fields" "$T/log.out"; fi

finish
