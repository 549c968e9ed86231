#!/bin/bash
# Reports that come back for bounce_address (issue 11 "forged bounces",
# issue 20 finding 3; SPEC §3 verp, §6.1):
#   - the VERP tag and ENVID are QUEUEID-TAG, TAG 16 lower-case hex digits
#     that are not the queue id;
#   - a report naming a mail by its bare queue id (VERP or
#     Original-Envelope-Id) names nothing: nothing is learned, no notice;
#   - a report with 1,000 identical failed blocks for one recipient sends
#     the original sender ONE notice; the same report again sends none.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
echo 'pw' >"$T/svc.pass"
start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw --dsn \
	--reply-message-id || { finish; exit 1; }
start_upstream sender --addr 127.0.0.3 || { finish; exit 1; }
start_dns --host-record=smtp.service.test,127.0.0.1 \
	--mx-host=interfactory1.co.jp,mx.sender.test,10 --host-record=mx.sender.test,127.0.0.3 ||
	{ finish; exit 1; }
write_config "" "
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
port = $UP_PORT_sender
dns_servers = 127.0.0.1:$DNS_PORT
tls = none

[queue]
retry_min = 1s
retry_max = 2s

[suppression]
bounce_address = bounces@mail.shop.test"
start_hikyaku || { finish; exit 1; }
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
log_count() { grep -c "$1" "$T/log.jsonl" 2>/dev/null || true; }
wait_log() { for _ in $(seq 1 150); do grep -q "$1" "$T/log.jsonl" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
notices() { upstream_eval sender 'len([m for m in msgs if m["mail_from"] == "" and "gone@dest.test" in data(m)])'; }

swaks --server 127.0.0.1 --port "$PORT" --from test@interfactory1.co.jp --to gone@dest.test \
	--timeout 20 >"$T/send.out" 2>&1
qid=$(grep -oE 'queued as [0-9A-F]{18}' "$T/send.out" | awk '{print $3}')
check "a mail through the service is queued" test -n "$qid"
check "the service accepts it" wait_upstream_count svc 1 20
verp=$(upstream_field svc 1 mail_from)
envid=$(upstream_field svc 1 envid)
echo "# queue id $qid, VERP $verp, ENVID $envid"
check "the VERP sender is bounces+QUEUEID-TAG@ with 16 lower-case hex digits" \
	$PY -c "import re,sys; sys.exit(0 if re.fullmatch(r'bounces\+$qid-[0-9a-f]{16}@mail\.shop\.test', '$verp') else 1)"
check "ENVID is the same QUEUEID-TAG" test "bounces+$envid@mail.shop.test" = "$verp"
tag=${envid#*-}
check "the tag is not the queue id" test "$tag" != "$(echo "$qid" | tr A-F a-f | cut -c1-16)"

# report FILE TO ENVID NBLOCKS: an RFC 3464 report for gone@dest.test.
report() {
	$PY - "$1" "$2" "$3" "$4" <<'PYEOF'
import sys, uuid
path, to, envid, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b = "b-" + uuid.uuid4().hex
per = []
for _ in range(n):
    per += ["", "Final-Recipient: rfc822; gone@dest.test", "Action: failed", "Status: 5.1.1",
            "Diagnostic-Code: smtp; 550 5.1.1 user unknown"]
msg = ["From: MAILER-DAEMON@forger.example", "To: " + to, "Subject: failure",
       "Message-ID: <%s@forger.example>" % uuid.uuid4(), "MIME-Version: 1.0",
       'Content-Type: multipart/report; report-type=delivery-status; boundary="%s"' % b, "",
       "--" + b, "Content-Type: text/plain", "", "failed", "",
       "--" + b, "Content-Type: message/delivery-status", "",
       "Reporting-MTA: dns; forger.example"] + (["Original-Envelope-Id: " + envid] if envid else []) + \
      per + ["", "--" + b + "--", ""]
open(path, "w").write("\r\n".join(msg))
PYEOF
}
send_report() {
	swaks --server 127.0.0.1 --port "$PORT" --from '' --to "$2" --data "@$1" --timeout 20 \
		>"$T/report.out" 2>&1
	grep -q 'queued as' "$T/report.out"
}

# A bare queue id, by VERP and by Original-Envelope-Id: names nothing.
report "$T/bare.eml" "bounces+$qid@mail.shop.test" "$qid" 1
check "a report naming the bare queue id is accepted" send_report "$T/bare.eml" "bounces+$qid@mail.shop.test"
report "$T/bare2.eml" "bounces@mail.shop.test" "$qid" 1
check "... and one naming it by Original-Envelope-Id" send_report "$T/bare2.eml" "bounces@mail.shop.test"
for _ in $(seq 1 50); do grep -q 'not learned' "$T/hikyaku.out" && break; sleep 0.1; done
sleep 1
check "a bare queue id names nothing: nothing learned" test "$(log_count '"event":"learned","to":"gone@dest.test"')" -eq 0
check "... and the sender gets no notice" test "$(notices)" -eq 0
expect "the refusal is reported" "$T/hikyaku.out" 'not learned'

# 1,000 identical failed blocks, by the right reference: one notice.
report "$T/bomb.eml" "$verp" "$envid" 1000
check "a report with 1,000 identical blocks is accepted" send_report "$T/bomb.eml" "$verp"
check "the recipient is learned" wait_log '"event":"learned","to":"gone@dest.test","source":"dsn"'
wait_upstream_count sender 1 20
sleep 3
n=$(notices)
echo "# notices after 1,000 identical blocks: $n"
check "the sender gets one notice for 1,000 blocks ($n)" test "$n" -eq 1
check "learned once" test "$(log_count '"event":"learned","to":"gone@dest.test"')" -eq 1
check "the same report again is accepted" send_report "$T/bomb.eml" "$verp"
sleep 4
n=$(notices)
check "... and sends no further notice ($n)" test "$n" -eq 1
for _ in $(seq 1 100); do [ "$(queued_count)" -eq 0 ] && break; sleep 0.1; done
check "the reports are consumed (the queue drains)" test "$(queued_count)" -eq 0
# After a restart too: the record of who was told is on disk.
stop_hikyaku
start_hikyaku || { finish; exit 1; }
check "after a restart the same report is accepted" send_report "$T/bomb.eml" "$verp"
sleep 4
check "... and still sends no further notice" test "$(notices)" -eq 1
finish
