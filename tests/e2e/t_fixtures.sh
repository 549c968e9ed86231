#!/bin/bash
# The fixtures of the delivery tests work: upstream.py (lib_upstream.sh)
# records what it receives and answers as configured, dnsmasq answers the
# MX, A/AAAA, NXDOMAIN and null MX questions. No hikyaku here: swaks and
# smtp_raw.py talk to the fixtures directly.
# shellcheck disable=SC2154 # UP_PORT_NAME are set by start_upstream
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.example
CERT=$T/certs/server.pem,$T/certs/server.key

# The DNS of the direct route.
start_dns --mx-host=shop.test,mx2.shop.test,20 --mx-host=shop.test,mx1.shop.test,10 \
	--host-record=mx1.shop.test,127.0.0.2 --host-record=mx2.shop.test,127.0.0.3 \
	--host-record=aonly.test,127.0.0.4 --host-record=v6.test,::1 \
	--mx-host=nullmx.test,.,0 || { finish; exit 1; }

# The delivery service (STARTTLS, AUTH, SES replies and bounces), two MX
# hosts sharing a port, an IPv6 one, an implicit-TLS one, a bounce sink.
start_upstream sink || { finish; exit 1; }
start_upstream svc --tls "$CERT" --require-tls --auth shop:s3cret --dsn --reply-message-id \
	--reject-rcpt 'bad@x.test=550 5.1.1 User unknown' --bounce-to "127.0.0.1:$UP_PORT_sink" \
	--bounce-rcpt gone@x.test --bounce-delay 0.1 || { finish; exit 1; }
start_upstream mx1 --addr 127.0.0.2 --fail-first 1 --max-rcpts 2 || { finish; exit 1; }
start_upstream mx2 --addr 127.0.0.3 --port "$UP_PORT_mx1" --no-smtputf8 || { finish; exit 1; }
start_upstream6 v6 || { finish; exit 1; }
start_upstream smtps --smtps "$CERT" --data-reply '554 5.7.1 Message rejected' || { finish; exit 1; }
check "MX hosts share a port" test "$UP_PORT_mx1" = "$UP_PORT_mx2"

# --- DNS ---------------------------------------------------------------
dns_query shop.test MX >"$T/mx.out" 2>&1
check "MX answers in preference order" "$PY" -c 'import sys
l = open(sys.argv[1]).read().split("\n")
assert l[0] == "NOERROR", l
mx = sorted((int(x.split()[1]), x.split()[2]) for x in l[1:] if x.startswith("MX"))
assert mx == [(10, "mx1.shop.test"), (20, "mx2.shop.test")], mx' "$T/mx.out"
dns_query mx1.shop.test A >"$T/a.out" 2>&1
expect "A record of an MX host" "$T/a.out" '^A 127\.0\.0\.2$'
dns_query v6.test AAAA >"$T/aaaa.out" 2>&1
expect "AAAA record" "$T/aaaa.out" '^AAAA ::1$'
dns_query aonly.test MX >"$T/nodata.out" 2>&1
check "no MX but an A record: NOERROR, no answer" test "$(cat "$T/nodata.out")" = NOERROR
dns_query nosuch.test MX >"$T/nx.out" 2>&1
expect "unknown name under .test: NXDOMAIN" "$T/nx.out" '^NXDOMAIN$'
dns_query nullmx.test MX >"$T/null.out" 2>&1
check "null MX (RFC 7505): exactly MX 0 ." test "$(cat "$T/null.out")" = "NOERROR
MX 0 ."

# --- the delivery service ---------------------------------------------
swaks --server 127.0.0.1 --port "$UP_PORT_svc" --helo relay.test.example --from bounces@mail.shop.example \
	--to user@x.test,bad@x.test,gone@x.test --tls --tls-verify --tls-ca-path "$T/certs/ca.pem" \
	--tls-sni smtp.service.example --auth PLAIN --auth-user shop --auth-password s3cret --pipeline \
	--header 'Message-ID: <orig.1@shop.example>' --body $'line\r\n.starts with a dot' --timeout 10 >"$T/svc.out" 2>&1
expect "STARTTLS with a certificate the test CA verifies" "$T/svc.out" 'TLS started with cipher TLSv1\.[23]'
expect "AUTH PLAIN accepted" "$T/svc.out" '235 2\.7\.0'
expect "--reject-rcpt gives the configured reply" "$T/svc.out" '<~\* +550 5\.1\.1 User unknown'
expect "--reply-message-id: 250 Ok ID as SES" "$T/svc.out" '<~ +250 Ok 0101[0-9a-f]{12}-[0-9a-f-]{36}-000000$'
check "recorded: tls, auth_user, the two accepted rcpts, service_id" upstream_check svc \
	'len(msgs) == 1 and msgs[0]["tls"] is True and msgs[0]["auth_user"] == "shop" and msgs[0]["rcpt_tos"] == ["user@x.test", "gone@x.test"] and msgs[0]["reply"] == "250 Ok " + msgs[0]["service_id"]'
check "upstream_rcpts lists them" test "$(upstream_rcpts svc | tr '\n' ' ')" = "user@x.test gone@x.test "
upstream_message svc 1 >"$T/svc.msg"
expect "the data as received, dot-unstuffed" "$T/svc.msg" $'^\\.starts with a dot\r$'
wait_upstream_count svc 1 5 sessions
check "session record: TLS 1.2+, SNI, auth, pipelined MAIL" upstream_check svc \
	's = sessions[0]; s["tls"] and s["tls_version"] in ("TLSv1.2", "TLSv1.3") and s["sni"] == "smtp.service.example" and s["auth"] == "shop" and s["transactions"] == 1 and s["ahead"][s["commands"].index("MAIL FROM:<bounces@mail.shop.example>")] > 0'
swaks --server 127.0.0.1 --port "$UP_PORT_svc" --from a@x.test --to user@x.test --tls \
	--auth LOGIN --auth-user shop --auth-password wrong --timeout 10 >"$T/badauth.out" 2>&1
expect "wrong credentials: 535 5.7.8" "$T/badauth.out" '535 5\.7\.8'
session_svc() { $RAW 127.0.0.1 "$UP_PORT_svc" "$@" >"$T/raw.out" 2>&1; }
if session_svc '<220' '>EHLO r.test\r\n' '<250' '>MAIL FROM:<a@x.test>\r\n' '<530' '>QUIT\r\n' '<221'; then
	ok "--require-tls: 530 before STARTTLS"
else nok "--require-tls: 530 before STARTTLS" "$T/raw.out"; fi
expect_not "AUTH not offered before STARTTLS" "$T/raw.out" 'AUTH'

# The SES-style bounce reaches the sink with the null sender.
if wait_upstream_count sink 1 10; then ok "bounce for --bounce-rcpt delivered to --bounce-to"; else nok "bounce delivered" "$T/up-svc.err"; fi
check "bounce envelope: <> to the envelope sender" upstream_check sink \
	'msgs[0]["mail_from"] == "" and msgs[0]["rcpt_tos"] == ["bounces@mail.shop.example"]'
upstream_message sink 1 >"$T/bounce.msg"
for re in '^From: MAILER-DAEMON@service\.example' '^Content-Type: multipart/report; report-type=delivery-status' \
	'^Final-Recipient: rfc822; gone@x\.test' '^Action: failed' '^Status: 5\.1\.1' \
	'^Diagnostic-Code: smtp; 550 5\.1\.1 user unknown' '^Content-Type: text/rfc822-headers'; do
	expect "bounce has /$re/" "$T/bounce.msg" "$re"
done
sid=$(upstream_field svc 1 service_id)
expect "the bounced headers carry the service's message id" "$T/bounce.msg" "^Message-ID: <$sid@service\\.example>"
check "bounces.jsonl records it" upstream_check svc 'bounces[0]["sent"] and bounces[0]["rcpt"] == "gone@x.test"'

# DSN parameters (RFC 3461) are taken and recorded; Original-Envelope-Id
# follows in the bounce.
if session_svc '<220' '>EHLO r.test\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO r.test\r\n' '<250' \
	'>AUTH PLAIN AHNob3AAczNjcmV0\r\n' '<235' \
	'>MAIL FROM:<shop@example.jp> ENVID=0123456789ABCDEF01 RET=HDRS\r\nRCPT TO:<gone@x.test> NOTIFY=FAILURE ORCPT=rfc822;gone@x.test\r\nDATA\r\n' \
	'<250' '<250' '<354' '>Subject: dsn\r\n\r\nbody\r\n.\r\n' '<250 Ok' '>QUIT\r\n' '<221'; then
	ok "MAIL ENVID/RET and RCPT NOTIFY/ORCPT accepted with --dsn"
else nok "MAIL ENVID/RET and RCPT NOTIFY/ORCPT accepted with --dsn" "$T/raw.out"; fi
expect "--dsn: DSN advertised" "$T/raw.out" '^250-DSN$'
check "DSN parameters recorded" upstream_check svc \
	'm = msgs[-1]; m["envid"] == "0123456789ABCDEF01" and m["ret"] == "HDRS" and m["notify"] == ["FAILURE"] and m["orcpt"] == ["rfc822;gone@x.test"] and "ENVID=0123456789ABCDEF01" in m["mail_options"]'
wait_upstream_count sink 2 10
upstream_message sink 2 >"$T/bounce2.msg" 2>&1
expect "Original-Envelope-Id in the bounce" "$T/bounce2.msg" '^Original-Envelope-Id: 0123456789ABCDEF01'

# --- MX hosts ----------------------------------------------------------
swaks --server 127.0.0.2 --port "$UP_PORT_mx1" --from shop@example.jp --to a@shop.test --timeout 10 >"$T/mx1a.out" 2>&1
expect "--fail-first 1: the first transaction gets 451 4.3.0" "$T/mx1a.out" '<\*\* +451 4\.3\.0'
if $RAW 127.0.0.2 "$UP_PORT_mx1" '<220' '>EHLO r.test\r\n' '<250' \
	'>MAIL FROM:<>\r\nRCPT TO:<a@shop.test>\r\nRCPT TO:<b@shop.test>\r\nRCPT TO:<c@shop.test>\r\nDATA\r\n' \
	'<250' '<250' '<250' '<452 4.5.3' '<354' '>Subject: x\r\n\r\n..dot\r\n.\r\n' '<250' '>QUIT\r\n' '<221' >"$T/mx1.out" 2>&1; then
	ok "then accepted; --max-rcpts 2: the third RCPT gets 452 4.5.3; null sender accepted"
else nok "then accepted; --max-rcpts 2: 452 4.5.3 for the third RCPT" "$T/mx1.out"; fi
expect "PIPELINING advertised" "$T/mx1.out" '^250-PIPELINING$'
check "mx1 recorded the null sender and two recipients" upstream_check mx1 \
	'len(msgs) == 1 and msgs[0]["mail_from"] == "" and msgs[0]["rcpt_tos"] == ["a@shop.test", "b@shop.test"] and data(msgs[0]) == "Subject: x\r\n\r\n.dot\r\n" and msgs[0]["tls"] is False'
swaks --server 127.0.0.3 --port "$UP_PORT_mx2" --from shop@example.jp --to a@shop.test --timeout 10 >"$T/mx2.out" 2>&1
check "the other MX on the same port got its own mail" test "$(upstream_count mx2):$(upstream_count mx1)" = 1:1
wait_upstream_count mx2 1 5 sessions
check "peer and local address recorded" upstream_check mx2 \
	"msgs[0]['peer'] == '127.0.0.1' and sessions[0]['local'] == '127.0.0.3:$UP_PORT_mx2'"
$RAW 127.0.0.3 "$UP_PORT_mx2" '<220' '>EHLO r.test\r\n' '<250' '>MAIL FROM:<a@x.test> SMTPUTF8\r\n' '<' '>QUIT\r\n' '<221' >"$T/utf8.out" 2>&1
expect_not "--no-smtputf8: not advertised" "$T/utf8.out" 'SMTPUTF8$'
expect "--no-smtputf8: MAIL ... SMTPUTF8 refused" "$T/utf8.out" '^5[0-9][0-9] '
swaks -6 --server ::1 --port "$UP_PORT_v6" --from shop@example.jp --to a@v6.test --timeout 10 >"$T/v6.out" 2>&1
check "IPv6 upstream on [::1]" upstream_check v6 'len(msgs) == 1 and msgs[0]["peer"] == "::1"'

# --- implicit TLS and --data-reply ------------------------------------
swaks --server 127.0.0.1 --port "$UP_PORT_smtps" --tls-on-connect --tls-verify --tls-ca-path "$T/certs/ca.pem" \
	--tls-sni smtp.service.example --from shop@example.jp --to a@x.test --timeout 10 >"$T/smtps.out" 2>&1
expect "--smtps: TLS from the first byte" "$T/smtps.out" 'TLS started with cipher'
expect "--data-reply: the configured reply at the end of DATA" "$T/smtps.out" '<~\* +554 5\.7\.1 Message rejected'
check "a refused message goes to refused.jsonl, not messages.jsonl" \
	test "$(upstream_count smtps):$(upstream_count smtps refused)" = 0:1

# --- stopping records the connections still open ----------------------
$RAW 127.0.0.1 "$UP_PORT_sink" '<220' '>EHLO held.test\r\n' '<250' 'sleep:3' >/dev/null 2>&1 &
held=$!
sleep 0.5
stop_upstream sink
check "an open connection is recorded at SIGTERM" upstream_check sink \
	'any(s.get("open") and s["commands"] == ["EHLO held.test"] for s in sessions)'
kill "$held" 2>/dev/null
wait "$held" 2>/dev/null

finish
