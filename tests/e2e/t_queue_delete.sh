#!/bin/bash
# queue delete during delivery (issue 11): a mail whose job waits for a
# connection is not sent at all, and the remaining split transactions of
# a mail being delivered are not sent.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
echo 'pw' >"$T/svc.pass"
start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw --delay 2 ||
	{ finish; exit 1; }
start_dns --host-record=smtp.service.test,127.0.0.1 || { finish; exit 1; }
write_config "" "
[routing]
verified_domains = interfactory1.co.jp

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
max_connections = 1
max_recipients_per_message = 1

[queue]
retry_min = 1h"
sed -i "s/^dns_servers = .*/dns_servers = 127.0.0.1:$DNS_PORT/" "$T/hikyaku.conf"
start_hikyaku || { finish; exit 1; }
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
send() {
	swaks --server 127.0.0.1 --port "$PORT" --from test@interfactory1.co.jp --to "$1" \
		--timeout 20 >"$T/send.out" 2>&1
	grep -oE 'queued as [0-9A-F]{18}' "$T/send.out" | awk '{print $3}'
}
count() { upstream_eval svc "len([r for m in msgs for r in m['rcpt_tos'] if r.startswith('$1')])"; }

# A: 5 recipients, one transaction each, 2 s each at the service's dot.
a=$(send a1@dest.test,a2@dest.test,a3@dest.test,a4@dest.test,a5@dest.test)
# B: queued behind A's connection (max_connections = 1).
b=$(send b1@dest.test,b2@dest.test)
check "two mails queued" test -n "$a" -a -n "$b"
# A's first transaction is delivered; its second is under way, B waits.
check "A's first transaction arrives" wait_upstream_count svc 1 20
ctl queue delete "$b" >"$T/delb.out" 2>&1
check "queue delete of the waiting mail succeeds" test $? -eq 0
ctl queue delete "$a" >"$T/dela.out" 2>&1
check "queue delete of the mail being delivered succeeds" test $? -eq 0
expect "... after the transaction under way" "$T/dela.out" 'being delivered now'
sleep 6
na=$(count a)
nb=$(count b)
echo "# delivered after delete: A $na of 5 split transactions, B $nb of 2"
check "the deleted waiting mail is not sent ($nb)" test "$nb" -eq 0
check "the remaining split transactions are not sent ($na of 5)" test "$na" -ge 1 -a "$na" -le 2
check "both are gone from the queue" test "$(queued_count)" -eq 0
check "both logged as deleted" test "$(grep -c '"event":"deleted"' "$T/log.jsonl")" -eq 2
finish
