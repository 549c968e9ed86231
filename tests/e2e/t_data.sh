#!/bin/bash
# DATA is read safely (SPEC §5): only CRLF.CRLF ends it, no smuggling,
# refused content leaves nothing in the queue, and what is queued is
# exactly what was sent plus the headers hikyaku adds.
. "$(dirname "$0")/lib.sh"

write_config
start_hikyaku || { finish; exit 1; }

last_id() { grep -oE 'queued as [0-9A-F]{18}' "$T/session.out" | tail -n 1 | awk '{print $3}'; }

# The bytes on disk: the message as sent, with Received: prepended and
# Message-ID:/Date: added because the message has neither.
printf 'From: Shop <shop@example.jp>\r\nTo: user@example.com\r\nSubject: order 42\r\n\r\nline one\r\n..dot line\r\nline three\r\n' >"$T/msg1"
session "a plain mail is queued" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<shop@example.jp>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>From: Shop <shop@example.jp>\r\nTo: user@example.com\r\nSubject: order 42\r\n\r\nline one\r\n..dot line\r\nline three\r\n.\r\n' \
	'<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
id=$(last_id)
queued_data "$id" >"$T/disk1"
printf 'From: Shop <shop@example.jp>\r\nTo: user@example.com\r\nSubject: order 42\r\n\r\nline one\r\n.dot line\r\nline three\r\n' >"$T/want1"
# Strip the added headers (Received: with its folded lines, Date:, Message-ID:).
$PY - "$T/disk1" "$T/orig1" "$T/added1" <<'PYEOF'
import sys
data = open(sys.argv[1], "rb").read()
lines = data.split(b"\r\n")
added = []
i = 0
while i < len(lines):
    l = lines[i]
    if l.startswith((b"Received:", b"Date:", b"Message-ID:")) or (added and l[:1] in (b"\t", b" ")):
        if l[:1] in (b"\t", b" ") and not added:
            break
        added.append(l)
        i += 1
        continue
    break
open(sys.argv[2], "wb").write(b"\r\n".join(lines[i:]))
open(sys.argv[3], "wb").write(b"\n".join(added))
PYEOF
check "queued bytes equal the sent message (dot-unstuffed) after the added headers" cmp "$T/want1" "$T/orig1"
expect "Received: names the client and the queue id" "$T/added1" "^Received: from c\.example \(\[127\.0\.0\.1\]\)"
expect "Received: has the id" "$T/added1" "with ESMTP id $id"
expect "Message-ID: added when missing" "$T/added1" "^Message-ID: <$id@relay\.test\.example>"
expect "Date: added when missing" "$T/added1" '^Date: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} '
check "no bare CR or LF in the queued message" $PY -c '
import sys,re; d=open(sys.argv[1],"rb").read()
sys.exit(1 if re.search(rb"\r(?!\n)|(?<!\r)\n", d) else 0)' "$T/disk1"

# A mail that has Date: and Message-ID: keeps them (and gets no second one).
session "existing Message-ID and Date are kept" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>Message-ID: <abc@shop.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0900\r\nSubject: x\r\n\r\nbody\r\n.\r\n' \
	'<250 2.0.0' '>QUIT\r\n' '<221'
queued_data "$(last_id)" >"$T/disk2"
check "one Message-ID" test "$(grep -c '^Message-ID:' "$T/disk2")" -eq 1
check "one Date" test "$(grep -c '^Date:' "$T/disk2")" -eq 1
expect "the client's Message-ID" "$T/disk2" '^Message-ID: <abc@shop\.example>'

# SMTP smuggling: none of these sequences ends DATA. With bare_lf =
# normalize a bare LF ends a line but never the message, so the smuggled
# "MAIL FROM" is content of exactly one mail; a bare CR refuses the whole
# message. In no case is the smuggled transaction queued.
for case in 'queued:\n.\n' 'queued:\n.\r\n' 'queued:\r\n.\n' 'refused:\r.\r\n' 'refused:\r\n.\r'; do
	want=${case%%:*}
	seq=${case#*:}
	before=$(queued_count)
	if [ "$want" = queued ]; then final='<250 2.0.0'; else final='<5'; fi
	session "smuggling ${seq} does not end DATA ($want)" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
		'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
		">Subject: smuggle\r\n\r\nhello${seq}MAIL FROM:<admin@example.jp>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n" \
		"$final" '>QUIT\r\n' '<221'
	after=$(queued_count)
	if [ "$want" = queued ]; then
		check "smuggling ${seq}: exactly one mail queued" test $((after - before)) -eq 1
		queued_data "$(last_id)" >"$T/smug"
		expect "smuggling ${seq}: the smuggled commands are content" "$T/smug" '^MAIL FROM:<admin@example\.jp>'
		queued_envelope "$(last_id)" >"$T/smug.env"
		expect_not "smuggling ${seq}: the victim is no recipient" "$T/smug.env" 'victim'
	else
		check "smuggling ${seq}: nothing queued" test $((after - before)) -eq 0
	fi
done

# Bare CR, NUL, over-long lines: refused, nothing queued.
for case in 'bare CR:a\rb\r\n' 'NUL:a\x00b\r\n' "long line:$(printf 'x%.0s' $(seq 1 999))\r\n"; do
	name=${case%%:*}
	body=${case#*:}
	before=$(queued_count)
	session "$name is refused with 5xx" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
		'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' ">Subject: x\r\n\r\n${body}.\r\n" '<5' \
		'>NOOP\r\n' '<250' '>QUIT\r\n' '<221'
	check "$name: nothing queued" test "$(queued_count)" -eq "$before"
done
session "a 998-octet line is fine" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' ">Subject: x\r\n\r\n$(printf 'y%.0s' $(seq 1 998))\r\n.\r\n" '<250 2.0.0'

# Bare LF is normalised by default...
session "bare LF normalised (default)" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' '>Subject: lf\n\nline1\nline2\r\n.\r\n' '<250 2.0.0'
queued_data "$(last_id)" >"$T/lf"
check "bare LF stored as CRLF" $PY -c '
import sys; d=open(sys.argv[1],"rb").read(); sys.exit(0 if d.endswith(b"Subject: lf\r\n\r\nline1\r\nline2\r\n") else 1)' "$T/lf"

# ... and refused with bare_lf = reject.
stop_hikyaku
write_config "bare_lf = reject"
start_hikyaku || { finish; exit 1; }
before=$(queued_count)
session "bare LF refused with bare_lf = reject" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' '>Subject: lf\n\nline1\r\n.\r\n' '<554 5.6.0' '>QUIT\r\n' '<221'
check "bare LF reject: nothing queued" test "$(queued_count)" -eq "$before"

# A raw Shift_JIS From: header (old shop systems send them) is accepted.
session "raw 8-bit (Shift_JIS) From: header accepted" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>From: \x83\x56\x83\x87\x83\x62\x83\x76 <shop@example.jp>\r\nSubject: sjis\r\n\r\nbody\r\n.\r\n' '<250 2.0.0'

# 8-bit content without BODY=8BITMIME is accepted as is (SPEC §5).
session "8-bit body without BODY=8BITMIME accepted" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' '>Subject: 8bit\r\n\r\nご注文ありがとうございます\r\n.\r\n' '<250 2.0.0'
queued_data "$(last_id)" >"$T/8bit"
expect "8-bit bytes kept as sent" "$T/8bit" 'ご注文ありがとうございます'

finish
