#!/bin/bash
# Security regressions, as a mail administrator would check them: no open
# relay (whatever the address tricks or AUTH attempts), no SMTP smuggling,
# no command injection behind STARTTLS, no plain-text AUTH, no CR/LF
# injection into the queue or the Received: header, bounded memory under
# huge lines, and a fair share of the listener under slow clients and
# connection floods. Each check looks at the replies, the queue on disk
# (tests/e2e/spool.py) and the relay log's "rejected" events.
. "$(dirname "$0")/lib.sh"

OUT=127.0.0.2   # a client outside allow_networks
# Nothing leaves: DNS is dead, and address literals ([127.0.0.1]) meet a
# closed port rather than whatever listens on port 25 of this machine.
# shellcheck disable=SC2034 # read by write_config in lib.sh
DEFAULT_DIRECT="[direct]
dns_servers = 127.0.0.1:9
port = 9"

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs"
PASSWORD='right horse'
echo "shop:$(openssl passwd -6 "$PASSWORD")" >"$T/auth"
AUTH_OK=$(printf '\0shop\0%s' "$PASSWORD" | base64 -w0)
AUTH_BAD=$(printf '\0shop\0wrong horse' | base64 -w0)
USER_B64=$(printf 'shop' | base64 -w0)
PASS_B64=$(printf '%s' "$PASSWORD" | base64 -w0)

main_config() {
	write_config "allow_networks = 127.0.0.1/32
tls_cert = $T/certs/server.pem
tls_key = $T/certs/server.key
auth_file = $T/auth"
	sed -i "s|^db = .*|&\nbounce_address = bounces@mail.shop.example|" "$T/hikyaku.conf"
}

# Queue helpers: mails queued since the last snap (client mails only, not
# the DSNs hikyaku may write itself), and fields of a queued envelope.
cat >"$T/q.py" <<'PYEOF'
import json, os, re, sys
sys.path.insert(0, sys.argv[1])
import spool     # tests/e2e/spool.py: DIR/mail and the segment log DIR/wal
qdir = os.path.join(sys.argv[2], "queue")
cmd = sys.argv[3]
def ids():
    return spool.ids(qdir)
def raw(i):
    d = spool.read_file(qdir, i)
    if d is None:
        raise FileNotFoundError("%s is not queued" % i)
    return d
def env(i):
    return json.loads(raw(i).split(b"\n", 2)[1])
if cmd == "snap":
    print("\n".join(ids()))
elif cmd == "new":
    old = set(open(sys.argv[4]).read().split())
    for i in ids():
        if i not in old:
            try:
                if env(i).get("from"):
                    print(i)
            except (OSError, ValueError):
                print(i)
elif cmd == "rcpts":
    for r in env(sys.argv[4])["rcpts"]:
        print(r["addr"])
elif cmd == "field":
    v = env(sys.argv[4]).get(sys.argv[5])
    print("" if v is None else v)
elif cmd == "all_envelopes":
    for i in ids():
        try:
            print(raw(i).split(b"\n", 2)[1].decode("utf-8", "replace"))
        except (OSError, IndexError):
            pass
elif cmd == "structure":
    # The file is: magic line, one JSON envelope line, the message; the
    # message starts with hikyaku's Received: and has CRLF line ends only;
    # no line anywhere begins with the injected header name.
    d = raw(sys.argv[4])
    magic, envl, msg = d.split(b"\n", 2)
    assert magic.startswith(b"HIKYAKU-QUEUE"), magic
    e = json.loads(envl)
    assert msg.startswith(b"Received: from "), msg[:80]
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", msg), "bare CR or LF in the message"
    for line in d.split(b"\n"):
        assert not line.lstrip(b"\r\t ").lower().startswith(b"x-injected"), line
    # The Received: header is its first field with its folded lines.
    rec = [msg.split(b"\r\n")[0]]
    for l in msg.split(b"\r\n")[1:]:
        if l[:1] in (b" ", b"\t"):
            rec.append(l)
        else:
            break
    print("envelope:", json.dumps(e))
    print("received:", b" | ".join(rec).decode("utf-8", "replace"))
PYEOF
q() { PYTHONDONTWRITEBYTECODE=1 $PY "$T/q.py" "$ROOT/tests/e2e" "$T" "$@"; }
snap() { q snap >"$T/snap"; }
new_ids() { q new "$T/snap"; }
new_count() { new_ids | wc -l; }
last_id() { grep -oE 'queued as [0-9A-F]{18}' "$T/session.out" | tail -n 1 | awk '{print $3}'; }
# rcpts_are ID ADDR...: the queued envelope has exactly these recipients, in order.
rcpts_are() {
	local id=$1
	shift
	[ -n "$id" ] || { echo "no queue id"; return 1; }
	q rcpts "$id" >"$T/rcpts.got" || return 1
	printf '%s\n' "$@" >"$T/rcpts.want"
	diff "$T/rcpts.want" "$T/rcpts.got"
}
field_is() {
	[ -n "$1" ] || { echo "no queue id"; return 1; }
	local v
	v=$(q field "$1" "$2")
	[ "$v" = "$3" ] || { echo "$2 is '$v', want '$3'"; return 1; }
}
nothing_new() {
	local ids
	ids=$(new_ids)
	[ -z "$ids" ] || { echo "queued: $ids"; for i in $ids; do q rcpts "$i"; done; return 1; }
}

main_config
start_hikyaku || { finish; exit 1; }

# ---- 1. Open relay: a client outside allow_networks ---------------------

# Every syntactically valid recipient but the bounce address gets 554 5.7.1;
# malformed ones get a 5xx; DATA then finds no recipient (503).
relay_refused() { # NAME ADDRESS WANT
	session "outside client: $1 refused ($3)" --source $OUT '<220' '>EHLO outside.example\r\n' '<250' \
		'>MAIL FROM:<a@example.jp>\r\n' '<250' ">RCPT TO:<$2>\r\n" "<$3" '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
}
snap
relay_refused "plain foreign recipient" 'user@example.com' '554 5.7.1'
relay_refused "source route" '@relay.example,@other.example:victim@target.example' '554 5.7.1'
relay_refused "source route through the bounce domain" '@mail.shop.example:victim@target.example' '554 5.7.1'
relay_refused "%-hack to our own host name" 'victim%target.example@relay.test.example' '554 5.7.1'
relay_refused "%-hack to localhost" 'victim%target.example@localhost' '554 5.7.1'
relay_refused "%-hack on the bounce domain" 'bounces%target.example@mail.shop.example' '554 5.7.1'
relay_refused "quoted @ in the local part" '"victim@target.example"@relay.test.example' '554 5.7.1'
relay_refused "quoted bounce address at a foreign domain" '"bounces@mail.shop.example"@target.example' '554 5.7.1'
relay_refused "bang path with a domain" 'target.example!victim@relay.test.example' '554 5.7.1'
relay_refused "bang path without a domain" 'target.example!victim' '5'
relay_refused "trailing dot" 'victim@target.example.' '5'
relay_refused "IPv4 address literal" 'victim@[127.0.0.1]' '554 5.7.1'
relay_refused "IPv6 address literal" 'victim@[IPv6:::1]' '554 5.7.1'
relay_refused "two @" 'bounces@mail.shop.example@target.example' '5'
relay_refused "two paths, bounce address first" 'bounces@mail.shop.example>,<victim@target.example' '5'
relay_refused "NUL after the bounce address" 'bounces@mail.shop.example\x00victim@target.example' '5'
check "outside client: nothing queued by any of these" nothing_new

# A transaction that mixes the bounce address (allowed from anyone, SPEC §6)
# and a foreign recipient queues the bounce address only.
snap
session "outside client: bounce address 250, foreign recipient 554 in one transaction" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' '>MAIL FROM:<a@ses.example>\r\n' '<250' \
	'>RCPT TO:<bounces@mail.shop.example>\r\n' '<250 2.1.5' '>RCPT TO:<victim@target.example>\r\n' '<554 5.7.1' \
	'>RCPT TO:<@mail.shop.example:victim@target.example>\r\n' '<554 5.7.1' \
	'>DATA\r\n' '<354' '>Subject: x\r\n\r\nnot a DSN\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
# A mail to the bounce address is read, not relayed, and may leave the queue
# at once: its received event tells how many recipients were queued.
id=$(last_id)
check "mixed transaction: one recipient queued (received event rcpts = 1)" $PY -c '
import json, sys
r = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "received" and e["queue_id"] == sys.argv[2]]
sys.exit(0 if len(r) == 1 and r[0]["client"] == "127.0.0.2" and r[0]["rcpts"] == 1 else 1)' "$T/log.jsonl" "$id"
if queued_has "$id"; then
	check "mixed transaction: exactly the bounce address queued" rcpts_are "$id" bounces@mail.shop.example
fi

# Nothing the client says makes it an allowed network: not its HELO name,
# not XCLIENT or a PROXY header, not a local-looking sender.
session "outside client: PROXY header, XCLIENT, EHLO [127.0.0.1], local sender: still 554 5.7.1" --source $OUT '<220' \
	'>PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n' '<500 5.5.2' '>EHLO [127.0.0.1]\r\n' '<250' \
	'>XCLIENT ADDR=127.0.0.1 NAME=localhost\r\n' '<500 5.5.2' '>MAIL FROM:<bounces@mail.shop.example>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'
# Relay probing is cut off: 20 refusals in one session, then 421 and close
# (docs/listener.md: 20 bad commands).
probe=()
for i in $(seq 1 19); do probe+=(">RCPT TO:<probe$i@target.example>\r\n" '<554 5.7.1'); done
session "outside client: relay probing cut off after 20 refusals (421 4.7.0, closed)" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' "${probe[@]}" \
	'>RCPT TO:<probe20@target.example>\r\n' '<554 5.7.1' '<421 4.7.0' 'eof'

# AUTH from outside: refused before TLS (even with the right password, and
# the would-be continuation lines are not read as credentials), wrong
# password after TLS refused, right password after TLS allows relaying.
session "outside client: AUTH PLAIN before TLS (right password) gets 530 5.7.0, then 554 5.7.1" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' ">AUTH PLAIN $AUTH_OK\r\n" '<530 5.7.0' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'
session "outside client: AUTH LOGIN before TLS gets 530, credentials lines are unknown commands, then 554" --source $OUT \
	'<220' '>EHLO outside.example\r\n' '<250' '>AUTH LOGIN\r\n' '<530 5.7.0' ">$USER_B64\r\n" '<500 5.5.2' \
	">$PASS_B64\r\n" '<500 5.5.2' '>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' \
	'>QUIT\r\n' '<221'
session "outside client: AUTH before EHLO and before TLS gets 530 or 503" --source $OUT '<220' \
	">AUTH PLAIN $AUTH_OK\r\n" '<5' '>EHLO outside.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'
session "outside client: wrong password after STARTTLS gets 535 5.7.8, then 554 5.7.1" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO outside.example\r\n' '<250' \
	">AUTH PLAIN $AUTH_BAD\r\n" '<535 5.7.8' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'
guess=()
for i in $(seq 1 2); do guess+=(">AUTH PLAIN $AUTH_BAD\r\n" '<535 5.7.8' '>NOOP\r\n' '<250'); done
session "outside client: password guessing cut off at the third failure (421 4.7.0, closed)" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO outside.example\r\n' '<250' \
	"${guess[@]}" ">AUTH PLAIN $AUTH_BAD\r\n" '<535 5.7.8' '<421 4.7.0' 'eof'
snap
session "outside client: right password after STARTTLS gets 235, relaying allowed" --source $OUT '<220' \
	'>EHLO outside.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO outside.example\r\n' '<250' \
	">AUTH PLAIN $AUTH_OK\r\n" '<235 2.7.0' '>MAIL FROM:<shop@example.jp>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<250 2.1.5' '>DATA\r\n' '<354' '>Subject: authed\r\n\r\nhi\r\n.\r\n' \
	'<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
id=$(last_id)
check "authenticated mail: queued to exactly the recipient" rcpts_are "$id" user@example.com
check "authenticated mail: envelope names the user" field_is "$id" auth_user shop
[ -n "$id" ] && q structure "$id" >"$T/authed.struct" 2>&1
expect "authenticated mail: Received: says ESMTPSA" "$T/authed.struct" '^received: .* with ESMTPSA id '
check "the password is in no log, queue file or daemon output" \
	bash -c '! grep -rqF -e "$1" -e "$2" -e "$3" "$4/log.jsonl" "$4/hikyaku.out" "$4/queue"' _ "$PASSWORD" "$AUTH_OK" "$PASS_B64" "$T"

# An allowed client: the odd forms are queued exactly as given (a source
# route is dropped, RFC 5321 §4.1.1.3) or refused with 501/553; none ever
# becomes another recipient.
snap
session "allowed client: odd but valid recipient forms accepted" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<shop@example.jp>\r\n' '<250' \
	'>RCPT TO:<@relay.example,@other.example:victim@target.example>\r\n' '<250 2.1.5' \
	'>RCPT TO:<victim%target.example@relay.test.example>\r\n' '<250 2.1.5' \
	'>RCPT TO:<victim%target.example@localhost>\r\n' '<250 2.1.5' \
	'>RCPT TO:<"victim@target.example"@relay.test.example>\r\n' '<250 2.1.5' \
	'>RCPT TO:<target.example!victim@relay.test.example>\r\n' '<250 2.1.5' \
	'>RCPT TO:<victim@[127.0.0.1]>\r\n' '<250 2.1.5' \
	'>RCPT TO:<victim@[IPv6:::1]>\r\n' '<250 2.1.5' \
	'>DATA\r\n' '<354' '>Subject: odd\r\n\r\nodd forms\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
check "allowed client: the odd forms queued exactly as given, source route dropped, nothing split" \
	rcpts_are "$(last_id)" 'victim@target.example' 'victim%target.example@relay.test.example' \
	'victim%target.example@localhost' '"victim@target.example"@relay.test.example' \
	'target.example!victim@relay.test.example' 'victim@[127.0.0.1]' 'victim@[IPv6:::1]'
session "allowed client: a source route and the same plain address are one recipient" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<shop@example.jp>\r\n' '<250' '>RCPT TO:<@a.example:victim@target.example>\r\n' '<250 2.1.5' \
	'>RCPT TO:<victim@target.example>\r\n' '<250 2.1.5' \
	'>DATA\r\n' '<354' '>Subject: dup\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
check "allowed client: one copy for the route and the plain address" rcpts_are "$(last_id)" 'victim@target.example'
session "allowed client: quoted @ alone is one recipient, Received: for names it whole" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<shop@example.jp>\r\n' '<250' '>RCPT TO:<"victim@target.example"@relay.test.example>\r\n' '<250 2.1.5' \
	'>DATA\r\n' '<354' '>Subject: q\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
id=$(last_id)
check "allowed client: quoted local part queued as given" rcpts_are "$id" '"victim@target.example"@relay.test.example'
[ -n "$id" ] && q structure "$id" >"$T/quoted.struct" 2>&1
expect "allowed client: Received: for <\"victim@target.example\"@relay.test.example>" "$T/quoted.struct" \
	'for <"victim@target\.example"@relay\.test\.example>; '
snap
for bad in 'target.example!victim' 'victim@target.example.' 'victim@@target.example' 'victim@target.example@relay.test.example' \
	'@relay.example:' '@relay.example victim@target.example' 'victim@[127.0.0.1' 'victim@[300.0.0.1]' '"victim@target.example'; do
	session "allowed client: <$bad> refused with 501 or 553" '<220' '>EHLO c.example\r\n' '<250' \
		'>MAIL FROM:<shop@example.jp>\r\n' '<250' ">RCPT TO:<$bad>\r\n" '<5' '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
	expect "allowed client: <$bad> gets 501 or 553" "$T/session.out" '^(501|553) 5\.'
done
check "allowed client: nothing queued for the refused forms" nothing_new

# ---- 2. SMTP smuggling --------------------------------------------------

# smuggle NAME WANT STEP...: a transaction whose data hides a second one;
# WANT is 250 (one mail, the smuggled commands in its body) or 554 (refused,
# nothing queued). HELP must then get 214: the smuggled commands were never
# answered.
SMUG='MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<smuggled@victim.example>\r\nDATA\r\n\r\nsmuggled\r\n'
smuggle() {
	local name=$1 want=$2
	shift 2
	snap
	session "smuggling $name: answered $want, the smuggled commands never run" '<220' '>EHLO c.example\r\n' '<250' \
		'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
		"$@" "<$want" '>HELP\r\n' '<214' '>QUIT\r\n' '<221'
	local n
	n=$(new_count)
	if [ "$want" = 250 ]; then
		check "smuggling $name: exactly one mail queued" test "$n" -eq 1
		local id
		id=$(new_ids | tail -n 1)
		check "smuggling $name: to b@example.com only" rcpts_are "$id" b@example.com
		if [ -n "$id" ]; then
			queued_data "$id" >"$T/smug"
			expect "smuggling $name: the smuggled MAIL FROM is body text" "$T/smug" '^MAIL FROM:<smuggler@evil\.example>'
			check "smuggling $name: stored without bare CR or LF" q structure "$id"
		fi
	else
		check "smuggling $name: nothing queued" test "$n" -eq 0
	fi
}
smuggle_all() { # MODE: normalize or reject
	local lf=250 mode=$1
	[ "$mode" = reject ] && lf=554
	local seq
	for seq in '\n.\n' '\n.\r\n' '\r\n.\n'; do
		smuggle "$seq ($mode)" $lf ">Subject: s\r\n\r\nhello${seq}${SMUG}.\r\n"
	done
	for seq in '\r.\r' '\r.\r\n' '\n.\r' '\r\n.\r' '\r\n.\r\r\n' '\r\n\x00.\r\n'; do
		smuggle "$seq ($mode)" 554 ">Subject: s\r\n\r\nhello${seq}${SMUG}.\r\n"
	done
	smuggle ".\\n right after DATA ($mode)" $lf ">.\n${SMUG}.\r\n"
	smuggle "\\r\\n | . | \\n split over packets ($mode)" $lf '>Subject: s\r\n\r\nhello\r\n' 'sleep:0.2' '>.' \
		'sleep:0.2' ">\n${SMUG}.\r\n"
	smuggle "\\r\\n. | \\r | text split over packets ($mode)" 554 '>Subject: s\r\n\r\nhello\r\n.' 'sleep:0.2' '>\r' \
		'sleep:0.2' ">${SMUG}.\r\n"
	# The real end split over packets still ends the data.
	snap
	session "CRLF.CRLF split over four packets ends DATA ($mode)" '<220' '>EHLO c.example\r\n' '<250' \
		'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
		'>Subject: s\r\n\r\nhello\r' 'sleep:0.1' '>\n' 'sleep:0.1' '>.' 'sleep:0.1' '>\r' 'sleep:0.1' '>\n' \
		'<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
	check "split CRLF.CRLF ($mode): one mail" test "$(new_count)" -eq 1
}
smuggle_all normalize

# ---- 3. STARTTLS command injection ---------------------------------------

# smtp_raw's "tls" step fails when any byte follows the 220: an injected
# command answered in plain text is caught there too.
session "STARTTLS injection: MAIL behind STARTTLS is not run after the handshake" '<220' '>EHLO c.example\r\n' '<250' \
	'>STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n' '<220' 'tls' '>EHLO c.example\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "STARTTLS injection: EHLO behind STARTTLS is not run (MAIL then needs EHLO)" '<220' '>EHLO c.example\r\n' '<250' \
	'>STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@target.example>\r\nDATA\r\n' \
	'<220' 'tls' '>MAIL FROM:<a@example.jp>\r\n' '<503 5.5.1' '>EHLO c.example\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "STARTTLS injection: EHLO, STARTTLS and MAIL in the first packet" '<220' \
	'>EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n' '<250' '<220' 'tls' '>EHLO c.example\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
snap
session "STARTTLS injection: behind a pipelined mail (STARTTLS read from the buffer)" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n' '<250' '<250' '<354' \
	'>Subject: p\r\n\r\nbody\r\n.\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@target.example>\r\nDATA\r\n' \
	'<250 2.0.0 Ok: queued as' '<220' 'tls' '>EHLO c.example\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' \
	'>QUIT\r\n' '<221'
check "STARTTLS injection behind a mail: only the first mail, to b@example.com" rcpts_are "$(new_ids)" b@example.com
$RAW --source $OUT 127.0.0.1 "$PORT" '<220' '>EHLO outside.example\r\n' '<250' ">STARTTLS\r\nAUTH PLAIN $AUTH_OK\r\n" \
	'<220' 'tls' '>EHLO outside.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<user@example.com>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221' >"$T/inj_auth.out" 2>&1
expect "STARTTLS injection: AUTH behind STARTTLS does not authenticate (554 5.7.1)" "$T/inj_auth.out" '^554 5\.7\.1'
sed -n '/^TLS /,$p' "$T/inj_auth.out" >"$T/inj_auth2.out"
expect "STARTTLS injection: AUTH still offered after the handshake (not authenticated)" "$T/inj_auth2.out" '^250[- ]AUTH PLAIN LOGIN$'
session "plain text sent after the 220 of STARTTLS is not a command: handshake fails, connection closed" '<220' \
	'>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' '>MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@target.example>\r\n' \
	'closed'
expect_not "plain text after STARTTLS: never answered as SMTP" "$T/session.out" 'CLOSED .*(250 2\.|503 5\.|554 5\.|501 5\.)'
session "STARTTLS twice is refused inside TLS" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' \
	'>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'

# Issue 11: a TLS client that drops while its mail is being committed. The
# envelope kept a pointer into the TLS engine, which the drop freed (a use
# after free under ASan; the mail could sit undelivered until a restart).
snap
$PY "$ROOT/tests/e2e/tls_drop.py" 127.0.0.1 "$PORT" 5 >"$T/tls_drop.out" 2>&1
expect "TLS client dropping during the commit: 5 mails sent up to the dot" "$T/tls_drop.out" '^sent 5$'
sleep 1
check "TLS client dropping during the commit: the daemon is still running" kill -0 "$HPID"
check "TLS client dropping during the commit: no sanitizer report" bash -c '! ls "$1"/asan* "$1"/ubsan* 2>/dev/null | grep -q .' _ "$T"
# The data was complete: each mail is queued (and given to the runner),
# its envelope noting TLS.
check "TLS client dropping during the commit: all 5 mails queued" test "$(new_count)" -eq 5
tls_noted=yes
for i in $(new_ids); do [ -n "$(q field "$i" tls)" ] || tls_noted=no; done
check "TLS client dropping during the commit: each queued envelope notes TLS" test "$tls_noted" = yes

# SPEC §5: a mail that already carries more than 50 Received: fields is
# looping: 554 5.4.6 at the end of DATA, nothing queued; 50 still pass.
hops() { local i; for i in $(seq 1 "$1"); do printf 'Received: from hop%s.example by relay%s.example; Tue, 1 Dec 2026 00:00:00 +0000\\r\\n' "$i" "$i"; done; }
snap
session "51 Received: fields (a loop): 554 5.4.6 after the dot, session goes on" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	">$(hops 51)Subject: loop\\r\\n\\r\\nx\\r\\n.\\r\\n" '<554 5.4.6' '>NOOP\r\n' '<250' '>QUIT\r\n' '<221'
check "51 Received: fields: nothing queued" nothing_new
session "50 Received: fields: queued" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	">$(hops 50)Subject: not yet\\r\\n\\r\\nx\\r\\n.\\r\\n" '<250 2.0.0 Ok: queued' '>QUIT\r\n' '<221'

# ---- 4. AUTH before TLS ----------------------------------------------------

$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>QUIT\r\n' '<221' >"$T/ehlo.out" 2>&1
expect_not "AUTH not advertised before TLS" "$T/ehlo.out" 'AUTH'
session "AUTH PLAIN with initial response before TLS: 530 5.7.0" '<220' '>EHLO c.example\r\n' '<250' \
	">AUTH PLAIN $AUTH_OK\r\n" '<530 5.7.0 Must issue a STARTTLS command first' '>NOOP\r\n' '<250' '>QUIT\r\n' '<221'
session "AUTH PLAIN without initial response before TLS: 530, the next line is not read as credentials" '<220' \
	'>EHLO c.example\r\n' '<250' '>AUTH PLAIN\r\n' '<530 5.7.0' ">$AUTH_OK\r\n" '<500 5.5.2' '>QUIT\r\n' '<221'
session "AUTH LOGIN with initial response before TLS: 530" '<220' '>EHLO c.example\r\n' '<250' \
	">AUTH LOGIN $USER_B64\r\n" '<530 5.7.0' ">$PASS_B64\r\n" '<500 5.5.2' '>QUIT\r\n' '<221'
session "AUTH of an unknown mechanism before TLS: 530 (no hint what is offered)" '<220' '>EHLO c.example\r\n' '<250' \
	'>AUTH CRAM-MD5\r\n' '<530 5.7.0' '>QUIT\r\n' '<221'

# ---- 5. CR/LF and shell injection through addresses and parameters -------

snap
session "CVE-2020-7247 payload <;sleep 1;> refused" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<;sleep 1;>\r\n' '<501' '>MAIL FROM:<;sleep 1;@x.example>\r\n' '<501' '>QUIT\r\n' '<221'
session "shell metacharacters in a quoted local part are queued literally" '<220' '>EHLO c.example\r\n' '<250' \
	">MAIL FROM:<\";touch $T/pwned;\"@x.example>\r\n" '<250' '>RCPT TO:<b@example.com>\r\n' '<250' \
	'>DATA\r\n' '<354' '>Subject: x\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
check "the quoted sender is kept byte for byte" field_is "$(last_id)" from "\";touch $T/pwned;\"@x.example"
check "no sender/recipient queued from the refused payloads" test "$(new_count)" -eq 1
session "bare LF inside MAIL FROM: the fragment is refused" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<evil\n@x.example>\r\n' '<501' '<500' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "bare CR inside MAIL FROM: refused whole" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<evil\r@x.example>\r\n' '<501 5.5.4' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "bare CR before a second command inside MAIL: refused whole" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp> SIZE=10\rRCPT TO:<victim@target.example>\r\n' '<501 5.5.4' \
	'>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "bare CR inside RCPT: refused whole" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\rRCPT TO:<victim@target.example>\r\n' '<501 5.5.4' '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "NUL bytes inside RCPT: refused whole" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<victim@target.example\x00@example.com>\r\n' '<501 5.5.4' \
	'>RCPT TO:<b@example.com>\x00<victim@target.example>\r\n' '<501 5.5.4' \
	'>RCPT TO:\x00<b@example.com>\r\n' '<501 5.5.4' '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "NUL inside MAIL FROM: refused whole" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp\x00>\r\n' '<501 5.5.4' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "CR inside the EHLO name: refused" '<220' '>EHLO c.example\rX-Injected: yes\r\n' '<501 5.5.4' \
	'>MAIL FROM:<a@example.jp>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
# Issue 11: "EHLO [x:" + 2,000 "A" + "]" overflowed the session's EHLO name
# (a heap overflow before any authentication); 260-290 octets overwrote the
# fields behind it, the AUTH user among them. SPEC §5: over 255 octets is
# 501 5.5.4, and the daemon goes on.
LIT2000="[x:$(printf 'A%.0s' $(seq 1 2000))]"
LIT270="[x:$(printf 'A%.0s' $(seq 1 270))]"
LIT255="[x:$(printf 'A%.0s' $(seq 1 251))]"
session "EHLO with a 2,000-octet address literal: 501 5.5.4, the session goes on" '<220' ">EHLO $LIT2000\r\n" '<501 5.5.4' \
	">HELO $LIT2000\r\n" '<501 5.5.4' '>EHLO c.example\r\n' '<250' '>QUIT\r\n' '<221'
check "EHLO with a 2,000-octet address literal: the daemon is still running" kill -0 "$HPID"
session "EHLO with a 270-octet literal from outside: 501, and relaying stays refused" --source $OUT '<220' \
	">EHLO $LIT270\r\n" '<501 5.5.4' '>EHLO outside.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<victim@target.example>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'
session "EHLO with a literal of exactly 255 octets is accepted" '<220' ">EHLO $LIT255\r\n" '<250' '>QUIT\r\n' '<221'
session "MAIL FROM with a 2,000-octet domain literal: refused" '<220' '>EHLO c.example\r\n' '<250' \
	">MAIL FROM:<a@$LIT2000>\r\n" '<5' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
check "the daemon survived every over-long literal" kill -0 "$HPID"
# RCPT parameters (ORCPT) and ENVID are not offered (no DSN): 555.
session "ORCPT with an xtext-encoded CRLF: 555 5.5.4" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com> ORCPT=rfc822;a+0D+0AX-Injected:+20yes@b\r\n' \
	'<555 5.5.4' '>DATA\r\n' '<503 5.5.1' '>QUIT\r\n' '<221'
session "ENVID with an xtext-encoded CRLF: 555 5.5.4" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp> ENVID=a+0D+0AX-Injected:+20yes\r\n' '<555 5.5.4' '>QUIT\r\n' '<221'
# AUTH= (RFC 4954 §5) is accepted and ignored: its encoded CRLF goes nowhere.
snap
session "AUTH= with an xtext-encoded CRLF is accepted and ignored" '<220' '>EHLO inject.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp> AUTH=a+0D+0AX-Injected:+20yes@b\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' \
	'>DATA\r\n' '<354' '>Subject: x\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued as' '>QUIT\r\n' '<221'
id=$(last_id)
check "AUTH= injection: the queue file has one envelope line and a clean Received:" q structure "$id"
check "AUTH= injection: the sender is exactly a@example.jp" field_is "$id" from a@example.jp
check "AUTH= injection: no auth_user from an unauthenticated AUTH=" field_is "$id" auth_user ""
q structure "$id" >"$T/inj.struct" 2>&1
expect "AUTH= injection: Received: is from inject.example ([127.0.0.1]) for <b@example.com>" "$T/inj.struct" \
	'^received: Received: from inject\.example \(\[127\.0\.0\.1\]\) \|[[:space:]]+by relay\.test\.example \(hikyaku\) with ESMTP id [0-9A-F]{18} \|[[:space:]]+for <b@example\.com>; [^|]*$'
check "no queued envelope or message anywhere has an injected line" bash -c '! grep -rqai "^X-Injected" "$1/queue"' _ "$T"
check "the shell payload never ran" test ! -e "$T/pwned"

# ---- 6. A 10 MB line ------------------------------------------------------

rss() { awk '/^VmRSS/ {print $2}' "/proc/$HPID/status"; }
session "warm-up mail" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' '>Subject: w\r\n\r\nw\r\n.\r\n' '<250 2.0.0' '>QUIT\r\n' '<221'
RSS0=$(rss)
$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>>10485760:x' '<5' '>\r\nNOOP\r\n' '<' '>QUIT\r\n' '<' \
	>"$T/long_cmd.out" 2>&1
if grep -Eq '^5[0-9][0-9] ' "$T/long_cmd.out" || grep -q 'connection closed' "$T/long_cmd.out"; then
	ok "10 MB command line: 5xx or closed"
else
	nok "10 MB command line: 5xx or closed" "$T/long_cmd.out"
fi
expect_not "10 MB command line: never 250 for the line itself" "$T/long_cmd.out" '^250 2\.1\.0'
snap
session "10 MB line inside DATA: 554 5.6.0 after the final dot, session goes on" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>Subject: long\r\n\r\n' '>>10485760:y' '>\r\n.\r\n' '<554 5.6.0' '>NOOP\r\n' '<250' '>QUIT\r\n' '<221'
check "10 MB line inside DATA: nothing queued" nothing_new
session "10 MB without any LF inside DATA, then the end: refused" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>>1048576:zzzzzzzzzz' '>\r\n.\r\n' '<554 5.6.0' '>QUIT\r\n' '<221'
session "10 MB command line inside TLS: 500 5.5.2, session goes on" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' \
	'tls' '>EHLO c.example\r\n' '<250' '>>10485760:w' '<500 5.5.2' '>\r\nNOOP\r\n' '<250' '>QUIT\r\n' '<221'
session "10 MB line as an AUTH continuation: refused, not authenticated" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' \
	'<220' 'tls' '>EHLO c.example\r\n' '<250' '>AUTH PLAIN\r\n' '<334' '>>10485760:A' '<5' '>\r\nNOOP\r\n' '<' \
	'>MAIL FROM:<a@example.jp>\r\n' '<' '>QUIT\r\n' '<221'
expect_not "10 MB AUTH continuation: never 235" "$T/session.out" '^235'
RSS1=$(rss)
check "memory stays bounded after 50 MB of long lines (VmRSS ${RSS0} kB -> ${RSS1} kB)" \
	test "$((${RSS1:-999999} - ${RSS0:-0}))" -lt 6144
session "and the daemon still serves a whole mail" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' '>Subject: after\r\n\r\nafter\r\n.\r\n' '<250 2.0.0 Ok: queued' \
	'>QUIT\r\n' '<221'

# A client that pipelines 65536 EHLOs (10 MB of replies) before it reads
# anything: the daemon stops reading while its replies wait (bounded
# memory), and goes on once the client reads: every EHLO is answered.
$PY - "$PORT" >"$T/slowreader.out" 2>&1 <<'EOF'
import socket, sys, threading, time
n = 65536
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.settimeout(6)
f = s.makefile("rb")
f.readline()
threading.Thread(target=lambda: s.sendall(b"EHLO pipeline.example\r\n" * n + b"QUIT\r\n"), daemon=True).start()
time.sleep(2)
got, last = 0, b""
try:
    while True:
        l = f.readline()
        if not l:
            break
        last = l
        got += l.startswith(b"250 ")
except socket.timeout:
    print("timed out waiting for replies")
print("EHLO answered %d of %d, last %r" % (got, n, last))
EOF
expect "a client that reads its replies late: all 65536 pipelined EHLOs answered, then 221" "$T/slowreader.out" \
	"^EHLO answered 65536 of 65536, last b'221 "

# ---- the relay log: every refusal above is a "rejected" event -----------

cat >"$T/logcheck.py" <<'PYEOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
rej = [e for e in ev if e["event"] == "rejected"]
relay = [e for e in rej if e.get("status") == "5.7.1" and e.get("client") == "127.0.0.2"]
tos = {e["to"] for e in relay}
want = {"user@example.com", "victim@target.example", "victim%target.example@relay.test.example",
        "victim%target.example@localhost", "bounces%target.example@mail.shop.example",
        '"victim@target.example"@relay.test.example', '"bounces@mail.shop.example"@target.example',
        "target.example!victim@relay.test.example", "victim@[127.0.0.1]", "victim@[IPv6:::1]"}
missing = want - tos
assert not missing, "no 5.7.1 rejected event for %r (have %r)" % (missing, tos)
for e in relay:
    assert e["response"] == "554 5.7.1 Relay access denied", e
    assert e["from"] in ("a@example.jp", "a@ses.example", "bounces@mail.shop.example"), e
smug = [e for e in rej if e.get("status") == "5.6.0" and e.get("to") == "b@example.com"]
assert len(smug) >= 6, "only %d 5.6.0 rejected events for the smuggling refusals" % len(smug)
rec = [e for e in ev if e["event"] == "received"]
assert not [e for e in rec if e.get("from") in ("smuggler@evil.example", "evil@x.example")], "smuggled mail received"
# What an unauthenticated outside client got queued (the bounce address
# only) is never relayed: no delivery attempt for it at all.
outside = {e["queue_id"] for e in rec if e["client"] == "127.0.0.2" and not e["tls"]}
assert outside, "no mail from the outside client to the bounce address"
out = [e for e in ev if e["event"] in ("delivered", "deferred", "bounced") and e.get("queue_id") in outside]
assert not out, "delivery attempted for %r" % out
print("log ok: %d rejected (%d relay, %d 5.6.0), %d received" % (len(rej), len(relay), len(smug), len(rec)))
PYEOF
$PY "$T/logcheck.py" "$T/log.jsonl" >"$T/log.out" 2>&1
expect "rejected events: each 554 5.7.1 (client, from, to as parsed) and each 5.6.0 refusal is logged" "$T/log.out" '^log ok'
q all_envelopes >"$T/envs"
expect_not "no queued mail from a smuggled or injected sender, or to a smuggled recipient" "$T/envs" \
	'smuggler@evil|smuggled@victim|evil@x\.example'

# ---- 2 (again) and 5: bare_lf = reject -------------------------------------

stop_hikyaku
write_config "allow_networks = 127.0.0.1/32
tls_cert = $T/certs/server.pem
tls_key = $T/certs/server.key
bare_lf = reject"
start_hikyaku || { finish; exit 1; }
smuggle_all reject
# With bare_lf = reject a bare LF is no line end anywhere: an address with
# a bare LF inside is one bad line, never two commands (RFC 5321 §2.3.8:
# no other sequence than CRLF is a line terminator). The client pipelines
# the rest, so what was queued shows what the daemon made of it.
snap
$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<250' \
	'>RCPT TO:<b@example.com>\r\n' '<250' \
	'>RCPT TO:<c@example.com\nRCPT TO:<victim@target.example>\r\nDATA\r\nSubject: lf\r\n\r\nx\r\n.\r\nQUIT\r\n' \
	'<' '<' '<' '<' '<' >"$T/lfcmd.out" 2>&1
expect "bare_lf = reject: the RCPT line with a bare LF inside is refused (5xx)" "$T/lfcmd.out" '^5[0-9][0-9] '
check "bare_lf = reject: the mail is queued to b@example.com only, no LF-split recipient" \
	rcpts_are "$(new_ids | tail -n 1)" b@example.com
# No auth_file here: AUTH is neither offered nor accepted, even inside TLS.
$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '>STARTTLS\r\n' '<220' 'tls' '>EHLO c.example\r\n' '<250' \
	">AUTH PLAIN $AUTH_OK\r\n" '<50' '>QUIT\r\n' '<221' >"$T/noauth.out" 2>&1
expect_not "no auth_file: AUTH not offered inside TLS" "$T/noauth.out" 'AUTH'
expect "no auth_file: AUTH inside TLS refused with 50x" "$T/noauth.out" '^50[0-9] 5\.'

# ---- 7 and 8. Slow clients and connection floods ---------------------------

stop_hikyaku
write_config "max_connections = 20
max_connections_per_client = 2"
start_hikyaku || { finish; exit 1; }

session "no TLS, no auth_file: AUTH is refused (50x), never accepted" '<220' '>EHLO c.example\r\n' '<250' \
	">AUTH PLAIN $AUTH_OK\r\n" '<50' '>QUIT\r\n' '<221'
expect_not "no TLS, no auth_file: neither STARTTLS nor AUTH offered" "$T/session.out" 'AUTH|STARTTLS'

# Two clients from 127.0.0.5 drip "NOOP\r\n" one byte a second.
for i in 1 2; do
	$RAW --source 127.0.0.5 127.0.0.1 "$PORT" '<220' 'drip:1:NOOP\r\n' '<250' '>QUIT\r\n' '<221' >"$T/drip$i.out" 2>&1 &
	eval "DRIP$i=\$!"
done
sleep 1
session "slow drip: a third connection from the dripping address gets 421 4.7.0" --source 127.0.0.5 '<421 4.7.0' 'eof'
t0=$(date +%s%N)
snap
session "slow drip: meanwhile another client sends a whole mail" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>Subject: meanwhile\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued' '>QUIT\r\n' '<221'
t1=$(date +%s%N)
check "slow drip: the other client's mail took under 3 s ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -lt 3000
session "slow drip: a client from another address gets in and says EHLO" --source 127.0.0.6 '<220' \
	'>EHLO c.example\r\n' '<250' '>QUIT\r\n' '<221'
wait "$DRIP1"
rc1=$?
wait "$DRIP2"
rc2=$?
check "slow drip: both dripped NOOPs answered 250 once complete" test "$rc1$rc2" = 00
sleep 0.3
session "slow drip: once the drips are gone their address gets in again" --source 127.0.0.5 '<220' '>QUIT\r\n' '<221'

# flood N SRC_PREFIX: holds N connections, one from each of SRC_PREFIX.1..N
# (or all from SRC_PREFIX when it is a full address), prints each one's
# first reply line and whether the server then closed it; then holds the
# rest open until $T/flood.stop exists.
flood() {
	rm -f "$T/flood.stop" "$T/flood.ready"
	$PY - "$PORT" "$T" "$1" "$2" <<'PYEOF' &
import os, socket, sys, time
port, t, n, src = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
socks = []
for i in range(1, n + 1):
    a = src if src.count(".") == 3 else "%s.%d" % (src, i)
    s = socket.socket()
    s.bind((a, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        line += d
    closed = ""
    if line.startswith(b"421"):
        try:
            closed = " closed" if s.recv(100) == b"" else " open"
        except OSError:
            closed = " closed"
    print("%d %s %s%s" % (i, a, line.decode().strip(), closed), flush=True)
    socks.append(s)
open(os.path.join(t, "flood.ready"), "w").close()
end = time.time() + 20
while not os.path.exists(os.path.join(t, "flood.stop")) and time.time() < end:
    time.sleep(0.05)
for s in socks:
    s.close()
PYEOF
	FLOOD=$!
	for _ in $(seq 1 100); do
		[ -e "$T/flood.ready" ] && return 0
		sleep 0.1
	done
}
flood_end() {
	touch "$T/flood.stop"
	wait "$FLOOD"
	sleep 0.5
}

flood 20 127.0.1 >"$T/flood1.out" 2>&1
check "flood: 20 connections (max_connections) all greeted" test "$(grep -c ' 220 ' "$T/flood1.out")" -eq 20
session "flood: connection 21 gets 421 and is closed" --source 127.0.1.21 '<421' 'eof'
expect "flood: connection 21's 421 is 4.3.2 or 4.7.0" "$T/session.out" '^421 4\.(3\.2|7\.0) '
session "flood: the allowed shop address is refused too while full" '<421' 'eof'
flood_end
session "flood gone: a new client is served a whole mail" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<250' '>DATA\r\n' '<354' \
	'>Subject: after flood\r\n\r\nx\r\n.\r\n' '<250 2.0.0 Ok: queued' '>QUIT\r\n' '<221'
flood 20 127.0.3 >"$T/flood2.out" 2>&1
check "flood gone: all 20 slots are free again (refused connections leaked none)" \
	test "$(grep -c ' 220 ' "$T/flood2.out")" -eq 20
flood_end
flood 5 127.0.2.1 >"$T/flood3.out" 2>&1
check "one address, 5 connections: 2 greeted" test "$(grep -c ' 220 ' "$T/flood3.out")" -eq 2
check "one address, 5 connections: 3 get 421 4.7.0 and are closed" \
	test "$(grep -cE ' 421 4\.7\.0 .* closed$' "$T/flood3.out")" -eq 3
flood_end
session "one address: after its connections left, it gets in again" --source 127.0.2.1 '<220' '>QUIT\r\n' '<221'

finish
