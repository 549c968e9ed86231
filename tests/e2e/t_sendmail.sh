#!/bin/bash
# hikyaku-sendmail end to end (SPEC §10): PHP's mail() and mb_send_mail()
# with sendmail_path pointing at it, -t/-i/-f/-F, bare LF, a 25 MB
# message in bounded memory, the sysexits exit codes; the mails go
# through a running hikyaku to aiosmtpd sinks (the MX of dest.test and
# the delivery service), routed by their From as any SMTP submission.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
SM=$ROOT/$BUILD/hikyaku-sendmail

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
echo 'pw' >"$T/svc.pass"
chmod 600 "$T/svc.pass"
start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw || { finish; exit 1; }
start_upstream mx --addr 127.0.0.2 --size 0 || { finish; exit 1; }
start_dns --host-record=smtp.service.test,127.0.0.1 \
	--mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 || { finish; exit 1; }

# [direct] internal_destinations = any lets the direct route reach the
# loopback sink (SPEC §3).
INTERNAL="internal_destinations = any"

conf() { # conf [SERVER_LINES]
	write_config "max_message_size = ${MAXSIZE:-40M}
${1:-}" "
[routing]
verified_domains = verified.test

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
connect_timeout = 3s
timeout = 20s

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 60s
$INTERNAL

[queue]
retry_min = 1s
retry_max = 2s"
}
# A "daemon" that never says a word: started now, judged at the end (the
# reply timeout is 2 minutes).
start_fault_peer stall --mode stall-greeting || { finish; exit 1; }
printf '[server]\nlisten = 127.0.0.1:%s\n' "$UP_PORT_stall" >"$T/stall.conf"
STALL_T0=$(date +%s)
(printf 'x\n' | "$SM" -c "$T/stall.conf" a@dest.test >"$T/stall.out" 2>&1; echo $? >"$T/stall.rc") &
STALL_PID=$!

conf
check "the test configuration is valid" "$HIKYAKU" -c "$T/hikyaku.conf" --check
start_hikyaku || { finish; exit 1; }
CONF=$T/hikyaku.conf
sm() { "$SM" -c "$CONF" "$@"; }
reload() { kill -HUP "$HPID"; sleep 0.7; }

# wait_rcpt SINK ADDR: the sink got a message for ADDR (30 s).
wait_rcpt() {
	for _ in $(seq 1 300); do upstream_rcpts "$1" 2>/dev/null | grep -qxF "$2" && return 0; sleep 0.1; done
	return 1
}
# msg_of SINK ADDR CODE: CODE run on m, the last message for ADDR.
msg_check() { upstream_check "$1" "m = [x for x in msgs if '$2' in x['rcpt_tos']][-1]; $3"; }
# The body (after the header) of the last message for ADDR, raw, to a file.
body_of() {
	$PY - "$(upstream_file "$1")" "$2" <<'PYEOF'
import base64, json, sys
m = [json.loads(l) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)["rcpt_tos"]][-1]
d = base64.b64decode(m["data_b64"])
sys.stdout.buffer.write(d[d.index(b"\r\n\r\n") + 4:])
PYEOF
}
header_of() {
	$PY - "$(upstream_file "$1")" "$2" <<'PYEOF'
import base64, json, sys
m = [json.loads(l) for l in open(sys.argv[1]) if sys.argv[2] in json.loads(l)["rcpt_tos"]][-1]
d = base64.b64decode(m["data_b64"])
sys.stdout.buffer.write(d[:d.index(b"\r\n\r\n") + 2])
PYEOF
}

# ---- PHP's mail() -------------------------------------------------------
# The shop's way: sendmail_path, mb_send_mail with a Japanese subject,
# mail() with additional headers and the -f fifth parameter.
cat >"$T/shop.php" <<'PHP'
<?php
// php shop.php OUTDIR: sends three mails, writes the bodies it gave to mail().
mb_language("Japanese");
mb_internal_encoding("UTF-8");
$out = $argv[1];

// 1. mb_send_mail: subject and body in ISO-2022-JP, the From: as a header.
$ok1 = mb_send_mail("order1@dest.test", "ご注文ありがとうございます",
	"山田様\nご注文を承りました。\n注文番号: 1001\n",
	"From: shop@example.jp", "-f bounce@example.jp");

// 2. mail(): a UTF-8 body in 8 bits, headers as an array, -f.
$body = "山田 太郎 様\r\n\r\nご注文番号 1002 を発送しました。\r\n.\r\n..dots stay\r\n"
	. "Total: ¥3,300\r\n";
file_put_contents("$out/body2", $body);
$ok2 = mail("order2@dest.test", mb_encode_mimeheader("発送のお知らせ", "UTF-8", "B"), $body, [
	"From" => mb_encode_mimeheader("ショップ", "UTF-8", "B") . " <shop@example.jp>",
	"Reply-To" => "support@example.jp",
	"X-Order-Id" => "1002",
	"MIME-Version" => "1.0",
	"Content-Type" => "text/plain; charset=UTF-8",
	"Content-Transfer-Encoding" => "8bit",
], "-fbounce@example.jp");

// 3. A verified From: through the delivery service.
$ok3 = mail("member@dest.test", "Welcome", "Thanks for joining.\n",
	"From: info@verified.test", "-f bounces@verified.test");
echo ($ok1 ? "ok1" : "fail1"), " ", ($ok2 ? "ok2" : "fail2"), " ", ($ok3 ? "ok3" : "fail3"), "\n";
PHP
php -d "sendmail_path=$SM -c $CONF -t -i" "$T/shop.php" "$T" >"$T/php.out" 2>&1
expect "PHP's mail() and mb_send_mail() return true for each mail" "$T/php.out" '^ok1 ok2 ok3$'
check "mb_send_mail's mail reaches the MX of dest.test" wait_rcpt mx order1@dest.test
check "with the -f fifth parameter as MAIL FROM and the To: as RCPT TO" \
	msg_check mx order1@dest.test 'm["mail_from"] == "bounce@example.jp" and m["rcpt_tos"] == ["order1@dest.test"]'
check "its Japanese subject and body decode as written" msg_check mx order1@dest.test '
import email, email.header
e = email.message_from_bytes(__import__("base64").b64decode(m["data_b64"]))
subj = str(email.header.make_header(email.header.decode_header(e["Subject"])))
body = e.get_payload(decode=True).decode(e.get_content_charset())
subj == "ご注文ありがとうございます" and "注文番号: 1001" in body and e["From"] == "shop@example.jp"'
check "mail() with headers and -fADDR reaches the MX" wait_rcpt mx order2@dest.test
check "its envelope: MAIL FROM bounce@example.jp, RCPT TO order2@dest.test" \
	msg_check mx order2@dest.test 'm["mail_from"] == "bounce@example.jp" and m["rcpt_tos"] == ["order2@dest.test"]'
body_of mx order2@dest.test >"$T/body2.got"
# PHP's mail() writes the message and a line end of its own.
printf '\r\n' >>"$T/body2"
check "its 8-bit body arrives byte-identical (lone dot and dots kept)" cmp "$T/body2" "$T/body2.got"
header_of mx order2@dest.test >"$T/head2.got"
expect "the additional headers arrive" "$T/head2.got" '^X-Order-Id: 1002'
expect "Reply-To arrives" "$T/head2.got" '^Reply-To: support@example.jp'
expect "the encoded subject arrives as PHP wrote it" "$T/head2.got" '^Subject: =\?UTF-8\?B\?'
check "one From: (PHP's), none added" test "$(grep -c '^From:' "$T/head2.got")" -eq 1
check "the verified From goes through the delivery service" wait_rcpt svc member@dest.test
check "with its envelope: MAIL FROM bounces@verified.test, RCPT TO member@dest.test" \
	msg_check svc member@dest.test 'm["mail_from"] == "bounces@verified.test" and m["rcpt_tos"] == ["member@dest.test"] and m["tls"]'
check "and never went direct" upstream_check mx 'not any("member@dest.test" in m["rcpt_tos"] for m in msgs)'
upstream_eval mx 'm = [x for x in msgs if "order2@dest.test" in x["rcpt_tos"]][-1]; "MAIL FROM:<%s> RCPT TO:%s" % (m["mail_from"], ",".join("<%s>" % r for r in m["rcpt_tos"]))' >"$T/envelope.txt"
upstream_eval svc 'm = [x for x in msgs if "member@dest.test" in x["rcpt_tos"]][-1]; "MAIL FROM:<%s> RCPT TO:%s" % (m["mail_from"], ",".join("<%s>" % r for r in m["rcpt_tos"]))' >>"$T/envelope.txt"
sed 's/^/# envelope at the sink: /' "$T/envelope.txt"

# ---- -t with To, Cc and Bcc ----------------------------------------------
printf 'From: shop@example.jp\nTo: Taro <to1@dest.test>\nCc: cc1@dest.test, "Cc Two" <cc2@dest.test>\nBcc: bcc1@dest.test,\n bcc2@dest.test\nSubject: t\n\nhello\n' |
	sm -t arg1@dest.test >"$T/t.out" 2>&1
check "-t exits 0" test $? -eq 0
check "-t: To, Cc, Bcc and the argument are the recipients" wait_rcpt mx bcc2@dest.test
check "-t: in one transaction with all six" msg_check mx bcc2@dest.test 'sorted(m["rcpt_tos"]) == ["arg1@dest.test", "bcc1@dest.test", "bcc2@dest.test", "cc1@dest.test", "cc2@dest.test", "to1@dest.test"]'
header_of mx bcc2@dest.test >"$T/t.head"
expect_not "-t: the Bcc header is gone at the sink (and its folded line)" "$T/t.head" '^(Bcc:| bcc2@)'
expect "-t: To and Cc are kept" "$T/t.head" '^Cc: cc1@dest.test, "Cc Two" <cc2@dest.test>'
# Bcc is removed without -t too: blind copies are never shown.
printf 'From: shop@example.jp\nTo: to@dest.test\nBcc: other@dest.test\n\nx\n' | sm nobcc@dest.test
check "without -t: only the argument is a recipient" wait_rcpt mx nobcc@dest.test
check "without -t: the Bcc header is removed as well" msg_check mx nobcc@dest.test 'm["rcpt_tos"] == ["nobcc@dest.test"] and "Bcc:" not in data(m)'

# ---- -i and the lone dot ---------------------------------------------------
printf 'From: shop@example.jp\nSubject: dots\n\nline1\n.\nline3\n' | sm -i dot-i@dest.test
check "-i: the mail goes" wait_rcpt mx dot-i@dest.test
body_of mx dot-i@dest.test >"$T/dot-i.got"
check "-i: a line with a single dot is kept, and what follows it" cmp "$T/dot-i.got" <(printf 'line1\r\n.\r\nline3\r\n')
printf 'From: shop@example.jp\nSubject: dots\n\nline1\n.\nline3\n' | sm -oi dot-oi@dest.test
check "-oi does the same" wait_rcpt mx dot-oi@dest.test
check "-oi: the lone dot is kept" msg_check mx dot-oi@dest.test 'data(m).endswith("line1\r\n.\r\nline3\r\n")'
printf 'From: shop@example.jp\nSubject: dots\n\nline1\n.\nline3\n' | sm dot@dest.test
check "without -i the mail goes too" wait_rcpt mx dot@dest.test
body_of mx dot@dest.test >"$T/dot.got"
check "without -i a lone dot ends the input (sendmail's rule)" cmp "$T/dot.got" <(printf 'line1\r\n')

# ---- bare LF, no header, From: added ---------------------------------------
printf 'Subject: lf\nTo: lf@dest.test\n\nfirst\nsecond\r\nthird' | sm -t -F '山田 太郎' >"$T/lf.out" 2>&1
check "bare LF input: the mail goes" wait_rcpt mx lf@dest.test
check "bare LF input arrives with CRLF only" msg_check mx lf@dest.test 'd = data(m); "\n" not in d.replace("\r\n", "") and d.endswith("\r\n\r\nfirst\r\nsecond\r\nthird\r\n")'
me=$(id -un)
check "no From: in the message: envelope USER@HOSTNAME" msg_check mx lf@dest.test "m['mail_from'] == '$me@relay.test.example'"
check "and a From: with -F's name, RFC 2047-encoded" msg_check mx lf@dest.test "
import email, email.header, email.utils
e = email.message_from_bytes(__import__('base64').b64decode(m['data_b64']))
n, a = email.utils.parseaddr(str(email.header.make_header(email.header.decode_header(e['From']))))
n == '山田 太郎' and a == '$me@relay.test.example' and e['From'].isascii()"
printf 'hello without a header\n' | sm -f owner@example.jp nohdr@dest.test
check "a message without a header gets one, then its text" wait_rcpt mx nohdr@dest.test
check "From: the -f address, and the text in the body" msg_check mx nohdr@dest.test 'm["mail_from"] == "owner@example.jp" and "From: owner@example.jp\r\n" in data(m) and data(m).endswith("\r\n\r\nhello without a header\r\n")'

# ---- -f forms -----------------------------------------------------------------
printf 'From: shop@example.jp\n\nx\n' | sm -f '<>' null1@dest.test
printf 'From: shop@example.jp\n\nx\n' | sm -f '' null2@dest.test
printf 'From: Shop <shop@example.jp>\n\nx\n' | sm nofrom@dest.test
check "-f '<>' is the null sender" wait_rcpt mx null1@dest.test
check "-f '<>': MAIL FROM:<>" msg_check mx null1@dest.test 'm["mail_from"] == ""'
check "-f '' is the null sender too" wait_rcpt mx null2@dest.test
check "-f '': MAIL FROM:<>" msg_check mx null2@dest.test 'm["mail_from"] == ""'
check "without -f: the From: address is the envelope sender" wait_rcpt mx nofrom@dest.test
check "without -f: MAIL FROM:<shop@example.jp>" msg_check mx nofrom@dest.test 'm["mail_from"] == "shop@example.jp"'

# ---- a slow writer (cron passes a job's output on as it comes) -------------------
# The input is read before connecting: a pause longer than the daemon's
# idle_timeout costs nothing.
conf "idle_timeout = 1s" && reload
(printf 'From: shop@example.jp\nSubject: cron job\n\nstarting\n'; sleep 3; printf 'done\n') | sm slow@dest.test >"$T/slow.out" 2>&1
check "a writer pausing 3 s (idle_timeout 1s) gets exit 0" test $? -eq 0
check "and the whole output arrives" wait_rcpt mx slow@dest.test
check "both parts" msg_check mx slow@dest.test 'data(m).endswith("\r\n\r\nstarting\r\ndone\r\n")'
conf && reload

# ---- ignored flags ----------------------------------------------------------------
printf 'From: shop@example.jp\n\nx\n' | sm -odi -oem -v -oQ/var/spool -B8BITMIME -bm -em -N never -U flags@dest.test >"$T/flags.out" 2>&1
check "-odi -oem -v -oXXX -B8BITMIME -bm -em -N -U are accepted (exit 0)" test $? -eq 0
check "and the mail goes" wait_rcpt mx flags@dest.test

# ---- a 25 MB message in bounded memory ---------------------------------------------
$PY - "$T/big.eml" "$T/big.body" 25 <<'PYEOF'
import sys
mb = int(sys.argv[3])
line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,-+=/|~_()[]<>\n"
n = mb * 1024 * 1024 // len(line) + 1
with open(sys.argv[1], "wb") as f, open(sys.argv[2], "wb") as g:
    f.write(b"From: shop@example.jp\nTo: big@dest.test\nSubject: big\n\n")
    for i in range(n):
        l = (b"." if i % 1000 == 0 else b"") + line   # some lines start with a dot
        f.write(l)
        g.write(l.replace(b"\n", b"\r\n"))
PYEOF
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
printf 'From: shop@example.jp\n\nsmall\n' | /usr/bin/time -v "$SM" -c "$CONF" small@dest.test 2>"$T/small.time"
/usr/bin/time -v "$SM" -c "$CONF" -t -i <"$T/big.eml" 2>"$T/big.time"
check "the 25 MB message is queued (exit 0)" grep -q 'Exit status: 0' "$T/big.time"
small_kb=$(rss "$T/small.time")
big_kb=$(rss "$T/big.time")
echo "# max RSS of hikyaku-sendmail ($BUILD): small message ${small_kb} kB, 25 MB message ${big_kb} kB"
check "the peak RSS of both runs was measured (GNU time)" test -n "$small_kb" -a -n "$big_kb"
check "25 MB: the sendmail process needs < 8 MB more memory than for a small mail" test $((big_kb - small_kb)) -lt 8192
case $BUILD in *asan*) ;; *) check "25 MB: max RSS of the sendmail process < 20 MB" test "$big_kb" -lt 20480 ;; esac
check "the 25 MB message arrives" wait_rcpt mx big@dest.test
$PY - "$(upstream_file mx)" "$T/big.body" >"$T/big.cmp" <<'PYEOF'
import base64, hashlib, json, sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if "big@dest.test" in m["rcpt_tos"]:
        d = base64.b64decode(m["data_b64"])
        body = d[d.index(b"\r\n\r\n") + 4:]
        want = open(sys.argv[2], "rb").read()   # the sink shows it unstuffed
        print("same" if hashlib.sha256(body).digest() == hashlib.sha256(want).digest() else "differ %d %d" % (len(body), len(want)))
PYEOF
expect "the 25 MB body arrives byte-identical" "$T/big.cmp" '^same$'

# Streaming when no temporary file can be made: the same, sent as read.
TMPDIR=/nonexistent/dir /usr/bin/time -v "$SM" -c "$CONF" -t -i <"$T/big.eml" 2>"$T/big2.time"
check "streaming (no temporary file): the 25 MB message is queued" grep -q 'Exit status: 0' "$T/big2.time"
big2_kb=$(rss "$T/big2.time")
echo "# max RSS streaming: ${big2_kb} kB"
check "the peak RSS of the streaming run was measured" test -n "$big2_kb"
check "streaming: < 8 MB more memory than for a small mail" test $((big2_kb - small_kb)) -lt 8192

# ---- exit codes --------------------------------------------------------------------
# 64: usage.
for args in "-x" "-bs" "-bp" "-q" "-f" "-C /etc/mail/sendmail.cf"; do
	# shellcheck disable=SC2086
	printf 'x\n' | sm $args a@dest.test >"$T/usage.out" 2>&1
	rc=$?
	check "usage error $args exits 64" test "$rc" -eq 64
done
sm </dev/null >"$T/usage.out" 2>&1
check "no recipient and no -t exits 64" test $? -eq 64
expect "with one sentence" "$T/usage.out" '^hikyaku-sendmail: no recipients: .*nothing was sent$'
check "and one line only" test "$(wc -l <"$T/usage.out")" -eq 1

# 67: a refused recipient (a local name such as cron's "root" is no address
# the relay takes).
printf 'From: shop@example.jp\nSubject: cron\n\nout\n' | sm root >"$T/67.out" 2>&1
check "a recipient the daemon refuses (5xx at RCPT) exits 67" test $? -eq 67
expect "with the recipient and the reply" "$T/67.out" '^hikyaku-sendmail: the recipient root was refused: 5[0-9][0-9] .*nothing was sent$'
printf 'From: shop@example.jp\n\nout\n' | sm ok67@dest.test postmaster >"$T/67b.out" 2>&1
check "postmaster without a domain: 550 at RCPT exits 67" test $? -eq 67
sleep 1
check "and nothing of that mail was queued for the good recipient either" sh -c "! grep -q ok67@dest.test '$T/log.jsonl'"

# 65: the message refused. Over max_message_size: at MAIL (SIZE) when spooled,
# at the end of DATA when streamed; a bare CR at the end of DATA.
MAXSIZE=1M conf && reload
$PY -c 'import sys; sys.stdout.write("From: shop@example.jp\nSubject: big\n\n" + ("x" * 70 + "\n") * 30000)' >"$T/2mb.eml"
sm big65@dest.test <"$T/2mb.eml" >"$T/65.out" 2>&1
check "over max_message_size exits 65" test $? -eq 65
expect "with the daemon's 552 in one sentence" "$T/65.out" '^hikyaku-sendmail: the message was refused at MAIL: 552 5\.3\.4 .*not queued$'
TMPDIR=/nonexistent/dir sm big65s@dest.test <"$T/2mb.eml" >"$T/65s.out" 2>&1
check "over max_message_size, streamed: 552 at the end of DATA exits 65" test $? -eq 65
expect "with the daemon's 552" "$T/65s.out" 'refused at the end of DATA: 552 5\.3\.4'
MAXSIZE=40M conf && reload
printf 'From: shop@example.jp\n\nbare\rCR\n' | sm barecr@dest.test >"$T/65c.out" 2>&1
check "a bare CR (554 at the end of DATA) exits 65" test $? -eq 65
expect "with the daemon's reply" "$T/65c.out" 'refused at the end of DATA: 554 5\.6\.0'

# 75: the daemon answers 4xx (too many recipients: 452).
conf "max_recipients = 2" && reload
printf 'From: shop@example.jp\n\nx\n' | sm r1@dest.test r2@dest.test r3@dest.test >"$T/75a.out" 2>&1
check "a 4xx (452 too many recipients) exits 75" test $? -eq 75
expect "and says to try again later" "$T/75a.out" '452 4\.5\.3 .*try again later$'
conf && reload

# 75: the daemon down.
stop_hikyaku
$PY -c 'import sys; sys.stdout.write("From: shop@example.jp\n\n" + ("y" * 70 + "\n") * 20000)' |
	sm down@dest.test >"$T/75.out" 2>&1
check "daemon down exits 75" test $? -eq 75
expect "with one sentence naming the listener" "$T/75.out" '^hikyaku-sendmail: cannot reach hikyaku at 127\.0\.0\.1:[0-9]+: .*refused.*try again later$'
start_hikyaku || { finish; exit 1; }

# ---- an unprivileged user (PHP-FPM's) ------------------------------------------
# The configuration is readable, the password file it names is not
# (config_load fails for this user): the listener is still found.
chmod 711 "$T"
chmod 644 "$CONF"
printf 'From: shop@example.jp\n\nfrom nobody\n' |
	setpriv --reuid=65534 --regid=65534 --clear-groups "$SM" -c "$CONF" nobody@dest.test >"$T/nobody.out" 2>&1
check "as nobody, with an unreadable password file in the configuration: exit 0" test $? -eq 0
check "and the mail arrives" wait_rcpt mx nobody@dest.test
check "with the envelope of its From:" msg_check mx nobody@dest.test 'm["mail_from"] == "shop@example.jp"'
# The configuration itself unreadable: the default listener is tried, and
# the sentence says why (only when nothing listens on 127.0.0.1:2525).
chmod 600 "$CONF"
if ! $PY -c 'import socket; socket.create_connection(("127.0.0.1", 2525), 1)' 2>/dev/null; then
	printf 'x\n' | setpriv --reuid=65534 --regid=65534 --clear-groups "$SM" -c "$CONF" a@dest.test >"$T/noconf.out" 2>&1
	check "as nobody, an unreadable configuration: exit 75 when the default listener is down" test $? -eq 75
	expect "and the sentence names the file and the reason" "$T/noconf.out" 'cannot be read: Permission denied, so the default listener was tried'
fi
chmod 700 "$T"

# A small file of the callers' own with only [server] listen (the admin
# guide's advice when the listener is not the default one).
printf '[server]\nlisten = 127.0.0.1:%s\nhostname = web1.shop.test\n' "$PORT" >"$T/client.conf"
printf 'Subject: client conf\n\nx\n' | "$SM" -c "$T/client.conf" client@dest.test >"$T/client.out" 2>&1
check "a configuration with only [server] listen is enough" test $? -eq 0
check "and its hostname names the sender" wait_rcpt mx client@dest.test
check "USER@HOSTNAME from it" msg_check mx client@dest.test "m['mail_from'] == '$me@web1.shop.test'"
# The first listener decides (here IPv6).
P6=$(free_port :)
printf '[server]\nlisten = [::1]:%s, 127.0.0.1:%s\n' "$P6" "$PORT" >"$T/v6.conf"
printf 'x\n' | "$SM" -c "$T/v6.conf" a@dest.test >"$T/v6.out" 2>&1
check "the first listener is used ([::1], nothing there: 75)" test $? -eq 75
expect "and named in the sentence" "$T/v6.out" "cannot reach hikyaku at \[::1\]:$P6: "

# ---- a broken daemon ---------------------------------------------------------
# Each answers 75 (the caller may retry) with a sentence, in bounded memory
# and time. fault_peer.py plays the daemon.
fault() { # fault NAME MODE [options]: a fault peer and a configuration naming it
	start_fault_peer "$1" --mode "$2" "${@:3}" || return 1
	local v=UP_PORT_$1
	printf '[server]\nlisten = 127.0.0.1:%s\n' "${!v}" >"$T/$1.conf"
}
fault http greeting-http
printf 'x\n' | "$SM" -c "$T/http.conf" a@dest.test >"$T/http.out" 2>&1
check "a greeting that is no SMTP reply: exit 75" test $? -eq 75
expect "a protocol error, said" "$T/http.out" 'protocol error.*try again later$'
fault huge hugeline
printf 'x\n' | /usr/bin/time -v "$SM" -c "$T/huge.conf" a@dest.test >"$T/huge.out" 2>"$T/huge.time"
check "a 10 MB greeting line: exit 75" grep -q 'Exit status: 75' "$T/huge.time"
huge_kb=$(rss "$T/huge.time")
check "read in bounded memory (< 8 MB more than a small mail; ${huge_kb:-not measured} kB)" test -n "$huge_kb" -a $((${huge_kb:-0} - small_kb)) -lt 8192
fault drop drop-in-data --drop-after 1000
$PY -c 'import sys; sys.stdout.write("From: shop@example.jp\n\n" + ("z" * 70 + "\n") * 5000)' |
	"$SM" -c "$T/drop.conf" a@dest.test >"$T/drop.out" 2>&1
check "the connection dropped in DATA: exit 75" test $? -eq 75
expect "the mail was not queued, said" "$T/drop.out" 'not queued|may or may not'
fault early early250
printf 'From: shop@example.jp\n\nx\n' | "$SM" -c "$T/early.conf" a@dest.test >"$T/early.out" 2>&1
check "a 250 behind the 354, before the message: exit 75, never 0" test $? -eq 75
fault d250 data250
printf 'From: shop@example.jp\n\nx\n' | "$SM" -c "$T/d250.conf" a@dest.test >"$T/d250.out" 2>&1
check "250 to DATA itself: exit 75" test $? -eq 75
expect "an unexpected reply, said" "$T/d250.out" 'unexpected reply'

# The silent daemon of the start: the reply timeout ended it.
for _ in $(seq 1 1800); do [ -s "$T/stall.rc" ] && break; sleep 0.1; done
STALL_T=$(($(date +%s) - STALL_T0))
check "a daemon that never answers: exit 75" test "$(cat "$T/stall.rc" 2>/dev/null)" = 75
expect "after the reply timeout, said" "$T/stall.out" 'timeout waiting for a reply \(120 s\).*try again later$'
check "within the timeout and a margin (${STALL_T} s)" test "$STALL_T" -ge 115 -a "$STALL_T" -le 180
wait "$STALL_PID" 2>/dev/null

# ---- installed -----------------------------------------------------------------
cmake --install "$ROOT/$BUILD" --prefix "$T/prefix" >"$T/install.out" 2>&1
check "cmake --install puts hikyaku-sendmail in sbin/" test -x "$T/prefix/sbin/hikyaku-sendmail"
check "and its man page in man8/" test -s "$T/prefix/share/man/man8/hikyaku-sendmail.8"
if command -v man >/dev/null; then
	MANWIDTH=80 man -l "$T/prefix/share/man/man8/hikyaku-sendmail.8" >"$T/man.out" 2>&1
	expect "man hikyaku-sendmail documents exit 75" "$T/man.out" 'EX_TEMPFAIL'
fi

finish
