#!/bin/bash
# DKIM signing end to end (SPEC §5 DKIM, §7 received.dkim): swaks ->
# hikyaku -> an aiosmtpd MX and delivery service on loopback; the mails
# that arrive are checked by python3-dkim (an independent verifier)
# against the TXT records dnsmasq serves, published as hikyakuctl dkim
# keygen printed them.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
VERIFY="$PY $ROOT/tests/e2e/dkim_verify.py"

# Keys, and their records as dnsmasq takes them (strings split by commas).
txt_of() { sed 's/^[^"]*"//; s/"$//; s/" "/,/g' "$1"; }
"$HIKYAKUCTL" dkim keygen shop.test s1 "$T/shop.pem" >"$T/shop.txt" 2>"$T/keygen.err"
"$HIKYAKUCTL" dkim keygen ed.test e1 "$T/ed.pem" --type ed25519 >"$T/ed.txt" 2>>"$T/keygen.err"
"$HIKYAKUCTL" dkim keygen service.test v1 "$T/svc.pem" >"$T/svc.txt" 2>>"$T/keygen.err"
check "keygen writes the key with mode 0640" test "$(stat -c %a "$T/shop.pem")" = 640
check "keygen prints the record in strings of at most 255 octets" $PY -c '
import re, sys
l = open(sys.argv[1]).read()
assert l.startswith("s1._domainkey.shop.test. IN TXT \"v=DKIM1; k=rsa; p="), l
parts = re.findall(r"\"([^\"]*)\"", l)
assert len(parts) == 2 and all(len(p) <= 255 for p in parts) and len(parts[0]) == 255, parts
' "$T/shop.txt"
check "keygen --type ed25519 prints k=ed25519" grep -Eq '^e1._domainkey.ed.test. IN TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="$' "$T/ed.txt"
"$HIKYAKUCTL" dkim keygen shop.test s1 "$T/shop.pem" >"$T/out" 2>"$T/err"
rc=$?
check "keygen never overwrites a key (exit 2)" test "$rc" = 2
expect "keygen says why" "$T/err" "exists; a key file is never overwritten"
"$HIKYAKUCTL" dkim keygen shop.test s9 "$T/x.pem" --type ed25519 --bits 2048 >"$T/out" 2>"$T/err"
check "keygen: --bits with ed25519 is a usage error" test $? = 2

start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_upstream svc || { finish; exit 1; }
start_dns --mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	"--txt-record=s1._domainkey.shop.test,$(txt_of "$T/shop.txt")" \
	"--txt-record=e1._domainkey.ed.test,$(txt_of "$T/ed.txt")" \
	"--txt-record=v1._domainkey.service.test,$(txt_of "$T/svc.txt")" || { finish; exit 1; }

conf() { # conf SIGN
	write_config "" "[routing]
verified_domains = service.test

[service]
host = 127.0.0.1
port = $UP_PORT_svc
tls = none
envelope_from = bounces@service.test

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none

[dkim]
keys = shop.test s1 $T/shop.pem
    ed.test e1 ed.pem
    service.test v1 $T/svc.pem
sign = $1

[queue]
retry_min = 1s
retry_max = 2s"
}
conf direct
cp "$T/ed.pem" "$T/ed.pem.keep"
"$HIKYAKU" -c "$T/hikyaku.conf" --check >"$T/out" 2>&1
check "--check accepts the keys (a relative key path too)" test $? = 0
start_hikyaku || { finish; exit 1; }

N=0
# send NAME FROM [swaks options...]: one mail to user@dest.test; waits for it at mx
send() {
	local from=$1
	shift
	smtp --from "shop@shop.test" --to user@dest.test --header "From: $from" "$@" >"$T/swaks.out" 2>&1
	N=$((N + 1))
	wait_upstream_count mx "$N" 30 || nok "mail $N arrives" "$T/swaks.out"
	upstream_message mx -1 >"$T/m$N.eml"
}
verify() { $VERIFY "$1" --dns "127.0.0.1:$DNS_PORT" >"$T/verify.out" 2>&1; }
last_received() { grep '"event":"received"' "$T/log.jsonl" | tail -1; }

send "Shop <info@shop.test>" --header "Subject: order 1"
check "RSA: the mail on the direct route verifies (python3-dkim, key from DNS)" verify "$T/m$N.eml"
expect "RSA: rsa-sha256, d= and s= of the key" "$T/verify.out" "^pass d=shop.test s=s1 a=rsa-sha256 "
check "From is signed twice (oversigned), and the fields present once" $PY -c '
import sys
h = open(sys.argv[1]).read().split(" h=")[1].split()[0].lower().split(":")
assert h.count("from") == 2, h
assert all(h.count(f) == 1 for f in ("to", "subject", "date", "message-id")), h
assert "received" not in h and "x-mailer" not in h, h
' "$T/verify.out"
check "c=relaxed/relaxed" grep -q "c=relaxed/relaxed" "$T/m$N.eml"
check "the signature is the first field" bash -c "head -1 '$T/m$N.eml' | grep -q '^DKIM-Signature: '"
last_received >"$T/rcv"
expect "received.dkim names the key" "$T/rcv" '"dkim":"shop.test s1"'
expect_not "… and no dkim_skipped" "$T/rcv" 'dkim_skipped'
check "… the logged size counts the signature (= the bytes delivered)" $PY -c '
import json, os, sys
r = json.loads(open(sys.argv[1]).read())
assert r["size"] == os.path.getsize(sys.argv[2]), (r["size"], os.path.getsize(sys.argv[2]))
' "$T/rcv" "$T/m$N.eml"
cp "$T/m$N.eml" "$T/rsa.eml"

# A From added after signing (at the top, or after the first) breaks it.
{ printf 'From: attacker@evil.test\r\n'; cat "$T/rsa.eml"; } >"$T/evil1.eml"
check "a second From added on top fails verification" bash -c "! $VERIFY '$T/evil1.eml' --dns 127.0.0.1:$DNS_PORT"
$PY -c '
import sys
d = open(sys.argv[1], "rb").read()
i = d.index(b"\r\nFrom:") + 2
sys.stdout.buffer.write(d[:i] + b"From: attacker@evil.test\r\n" + d[i:])' "$T/rsa.eml" >"$T/evil2.eml"
check "a second From added below the first fails verification" bash -c "! $VERIFY '$T/evil2.eml' --dns 127.0.0.1:$DNS_PORT"

send "info@ed.test" --header "Subject: ed"
check "Ed25519 (RFC 8463): the mail verifies" verify "$T/m$N.eml"
expect "Ed25519: ed25519-sha256" "$T/verify.out" "^pass d=ed.test s=e1 a=ed25519-sha256 "

send "news@news.shop.test"
check "a subdomain From is signed by the parent's key" verify "$T/m$N.eml"
expect "the subdomain's signature has d= of the parent" "$T/verify.out" "^pass d=shop.test s=s1 "

send "a@shop.test, b@ed.test"
check "From with mailboxes that need two keys: sent unsigned" bash -c "! grep -qi '^DKIM-Signature:' '$T/m$N.eml'"
last_received >"$T/rcv"
expect "… received.dkim is null" "$T/rcv" '"dkim":null'
expect "… and the log says why" "$T/rcv" '"dkim_skipped":"the From mailboxes need different keys \(shop.test and ed.test\)"'

send "someone@example.org"
check "a From domain without a key: unsigned" bash -c "! grep -qi '^DKIM-Signature:' '$T/m$N.eml'"
last_received >"$T/rcv"
expect "… with the reason in the log" "$T/rcv" '"dkim_skipped":"no \[dkim\] key covers the From domain example.org"'

# The shop's real mails: a Japanese subject, ISO-2022-JP and UTF-8
# bodies, 8-bit text, lines starting with a dot (swaks dot-stuffs them).
$PY - "$T/jis.eml" "$T/utf8.eml" <<'PYEOF'
import sys
from email.header import Header
subj = "ご注文ありがとうございます【注文番号 1234】"
body = "山田様\n\nこの度はご注文ありがとうございます。\n.ドットで始まる行\n..二つのドット\n.\n最後の行   \n\n"
jis = ("From: ショップ <info@shop.test>\r\nTo: user@dest.test\r\n"
       "Subject: " + Header(subj, "iso-2022-jp").encode() + "\r\n"
       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
       "Content-Transfer-Encoding: 7bit\r\n\r\n").encode() + body.replace("\n", "\r\n").encode("iso-2022-jp")
utf = ("From: info@shop.test\r\nTo: user@dest.test\r\nSubject: " + subj + "\r\n"
       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\nList-Unsubscribe: <mailto:unsub@shop.test>\r\n"
       "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n").encode() + body.replace("\n", "\r\n").encode()
open(sys.argv[1], "wb").write(jis)
open(sys.argv[2], "wb").write(utf)
PYEOF
smtp --from shop@shop.test --to user@dest.test --data "$T/jis.eml" >"$T/swaks.out" 2>&1
N=$((N + 1)); wait_upstream_count mx "$N" 30; upstream_message mx -1 >"$T/m$N.eml"
check "ISO-2022-JP body and encoded Japanese subject: verifies" verify "$T/m$N.eml"
check "… and the dotted lines arrived as written" grep -qa '^\.\.' "$T/m$N.eml"
smtp --from shop@shop.test --to user@dest.test --data "$T/utf8.eml" >"$T/swaks.out" 2>&1
N=$((N + 1)); wait_upstream_count mx "$N" 30; upstream_message mx -1 >"$T/m$N.eml"
check "UTF-8 8-bit subject and body with dot lines: verifies" verify "$T/m$N.eml"
expect "List-Unsubscribe and List-Unsubscribe-Post are signed" "$T/verify.out" "[Ll]ist-[Uu]nsubscribe:[Ll]ist-[Uu]nsubscribe-[Pp]ost"
check "… the 8-bit body arrived byte for byte" grep -q "この度はご注文ありがとうございます。" "$T/m$N.eml"

# A mail larger than what a session keeps in memory (it is spilled to the
# spool while it arrives): the signature covers the spilled part too.
$PY -c '
import sys
lines = ["From: Shop <info@shop.test>", "To: user@dest.test", "Subject: a large invoice", ""]
lines += ["line %06d of the attached price list, with some words to fill it" % i for i in range(12000)]
open(sys.argv[1], "w").write("\r\n".join(lines) + "\r\n")' "$T/big.eml"
smtp --from shop@shop.test --to user@dest.test --data "$T/big.eml" >"$T/swaks.out" 2>&1
N=$((N + 1)); wait_upstream_count mx "$N" 30; upstream_message mx -1 >"$T/m$N.eml"
check "a large (spilled) mail of $(stat -c %s "$T/big.eml") bytes is signed and verifies" verify "$T/m$N.eml"
check "… and arrived whole" grep -q '^line 011999 of the attached' "$T/m$N.eml"

# The service route: unsigned with sign = direct, signed with sign = all.
smtp --from bounces@service.test --to user@dest.test --header "From: shop@service.test" >"$T/swaks.out" 2>&1
wait_upstream_count svc 1 30 || nok "the service mail arrives" "$T/swaks.out"
upstream_message svc -1 >"$T/s1.eml"
check "sign = direct: the service route mail is not signed" bash -c "! grep -qi '^DKIM-Signature:' '$T/s1.eml'"
last_received >"$T/rcv"
expect "… received says route service, dkim null" "$T/rcv" '"route":"service".*"dkim":null'
expect_not "… and gives no reason: it is as configured" "$T/rcv" 'dkim_skipped'

conf all
kill -HUP "$HPID"
sleep 1
smtp --from bounces@service.test --to user@dest.test --header "From: shop@service.test" >"$T/swaks.out" 2>&1
wait_upstream_count svc 2 30 || nok "the second service mail arrives" "$T/swaks.out"
upstream_message svc -1 >"$T/s2.eml"
check "sign = all (after a reload): the service route mail is signed and verifies" verify "$T/s2.eml"
expect "… with the service.test key" "$T/verify.out" "^pass d=service.test s=v1 "

conf none
kill -HUP "$HPID"
sleep 1
send "info@shop.test"
check "sign = none: nothing is signed" bash -c "! grep -qi '^DKIM-Signature:' '$T/m$N.eml'"

# A bad key: --check names FILE:LINE; a reload with it is refused and the
# old keys keep signing.
conf direct
kill -HUP "$HPID"
sleep 1
echo "not a key" >"$T/ed.pem"
"$HIKYAKU" -c "$T/hikyaku.conf" --check >"$T/out" 2>&1
rc=$?
check "--check: a bad key exits 2" test "$rc" = 2
expect "--check: the bad key is FILE:LINE" "$T/out" "hikyaku.conf:[0-9]+: keys: \"$T/ed.pem\" holds no PEM private key"
kill -HUP "$HPID"
sleep 1
send "info@ed.test"
check "a reload with a bad key is refused; the old key still signs" verify "$T/m$N.eml"
cp "$T/ed.pem.keep" "$T/ed.pem"

finish
