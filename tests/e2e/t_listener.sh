#!/bin/bash
# The listener answers every row of SPEC §5's table the way it says.
. "$(dirname "$0")/lib.sh"

write_config "allow_networks = 127.0.0.1/32, ::1/128
max_recipients = 3
max_message_size = 20K"
sed -i "s|^db = .*|&\nbounce_address = bounces@mail.shop.example|" "$T/hikyaku.conf"
start_hikyaku || { finish; exit 1; }

# Greeting.
$RAW 127.0.0.1 "$PORT" '<220' '>QUIT\r\n' '<221' >"$T/greet.out" 2>&1
expect "greeting names the host" "$T/greet.out" '^220 relay\.test\.example ESMTP hikyaku$'

# EHLO advertises exactly the extensions of SPEC §5 (no TLS configured here).
$RAW 127.0.0.1 "$PORT" '<220' '>EHLO client.test.example\r\n' '<250' '>QUIT\r\n' '<221' >"$T/ehlo.out" 2>&1
for ext in PIPELINING 'SIZE 20480' 8BITMIME ENHANCEDSTATUSCODES SMTPUTF8; do
	expect "EHLO advertises $ext" "$T/ehlo.out" "^250[- ]$ext\$"
done
expect_not "no STARTTLS without a certificate" "$T/ehlo.out" 'STARTTLS'
expect_not "no AUTH without TLS" "$T/ehlo.out" 'AUTH'
session "HELO localhost is accepted" '<220' '>HELO localhost\r\n' '<250 relay.test.example' '>QUIT\r\n' '<221'
session "EHLO with an address literal" '<220' '>EHLO [127.0.0.1]\r\n' '<250' '>QUIT\r\n' '<221'
session "EHLO without a name is a syntax error" '<220' '>EHLO\r\n' '<501 5.5.4' '>QUIT\r\n' '<221'

# A mail safely queued.
smtp --body "hello" >"$T/queued.out" 2>&1
expect "250 queued as ID" "$T/queued.out" '<- +250 2\.0\.0 Ok: queued as [0-9A-F]{18}$'
id=$(grep -oE 'queued as [0-9A-F]{18}' "$T/queued.out" | awk '{print $3}')
check "the queued mail is in the spool" queued_has "$id"

# Relay access denied from outside allow_networks, but the bounce address
# is accepted from anyone (SPEC §6).
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from a@example.jp \
	--to user@example.com --timeout 20 >"$T/relay.out" 2>&1
expect "554 5.7.1 outside allow_networks" "$T/relay.out" '<\*\* +554 5\.7\.1 Relay access denied'
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from a@ses.example \
	--to bounces+0123@mail.shop.example --timeout 20 >"$T/bounce.out" 2>&1
expect "bounce address (+tag) accepted from outside" "$T/bounce.out" 'queued as'
swaks --server 127.0.0.1 --port "$PORT" --local-interface 127.0.0.9 --from a@ses.example \
	--to 'user%example.com@mail.shop.example' --timeout 20 >"$T/pct.out" 2>&1
expect "%-hack refused from outside" "$T/pct.out" '554 5\.7\.1'
session "quoted @ in the local part refused from outside" --source 127.0.0.9 '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>RCPT TO:<"bounces@mail.shop.example"@evil.example>\r\n' '<554 5.7.1' \
	'>RCPT TO:<@mail.shop.example:user@evil.example>\r\n' '<554 5.7.1' '>QUIT\r\n' '<221'

# Size: at MAIL (SIZE=) and while streaming.
session "552 5.3.4 for SIZE= over the limit" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp> SIZE=30000\r\n' '<552 5.3.4' '>QUIT\r\n' '<221'
big=$(head -c 30000 /dev/zero | tr '\0' 'x' | fold -w 100)
smtp --body "$big" >"$T/size2.out" 2>&1
expect "552 5.3.4 for a message over the limit" "$T/size2.out" '<\*\* +552 5\.3\.4'

# Too many recipients.
smtp --to a@example.com,b@example.com,c@example.com,d@example.com >"$T/rcpt.out" 2>&1
expect "452 4.5.3 beyond max_recipients" "$T/rcpt.out" '<\*\* +452 4\.5\.3'
expect "the mail to the first three is still queued" "$T/rcpt.out" 'queued as'

# Unknown command, bad sequence, bad syntax, unknown parameter, VRFY, HELP.
session "500, 503, 501, 555, 252, 214 as in SPEC §5" '<220' '>FOO bar\r\n' '<500 5.5.2' \
	'>MAIL FROM:<a@example.jp>\r\n' '<503 5.5.1' \
	'>EHLO c.example\r\n' '<250' '>RCPT TO:<b@example.com>\r\n' '<503 5.5.1' '>DATA\r\n' '<503 5.5.1' \
	'>MAIL FROM:<not an address>\r\n' '<501 5.5.4' '>MAIL FROM:<a@example.jp> FOO=BAR\r\n' '<555 5.5.4' \
	'>MAIL FROM:<a@example.jp>\r\n' '<250' '>MAIL FROM:<a@example.jp>\r\n' '<503 5.5.1' \
	'>RCPT TO:<b@example.com> NOTIFY=NEVER\r\n' '<555 5.5.4' '>DATA\r\n' '<503 5.5.1' \
	'>VRFY someone\r\n' '<252' '>HELP\r\n' '<214' '>NOOP\r\n' '<250' '>RSET\r\n' '<250' '>QUIT\r\n' '<221'

# UTF-8 addresses need SMTPUTF8.
session "UTF-8 addresses accepted under SMTPUTF8 only" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<店長@例え.jp>\r\n' '<553 5.6.7' \
	'>MAIL FROM:<店長@例え.jp> SMTPUTF8\r\n' '<250' '>RCPT TO:<お客様@example.com>\r\n' '<250' \
	'>DATA\r\n' '<354' '>Subject: utf8\r\n\r\nこんにちは\r\n.\r\n' '<250 2.0.0 Ok: queued as' \
	'>QUIT\r\n' '<221'

# Pipelining: swaks's own, and a client that sends everything in one packet.
smtp --pipeline --to a@example.com,b@example.com >"$T/pipe.out" 2>&1
expect "swaks --pipeline transaction queued" "$T/pipe.out" 'queued as'
session "commands pipelined behind the final dot run after the 250" '<220' '>EHLO c.example\r\n' '<250' \
	'>MAIL FROM:<a@example.jp>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n' \
	'<250 2.1.0' '<250 2.1.5' '<250 2.1.5' '<354' \
	'>Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<x@example.jp>\r\nRCPT TO:<y@example.com>\r\nRSET\r\nQUIT\r\n' \
	'<250 2.0.0 Ok: queued' '<250 2.1.0' '<250 2.1.5' '<250 2.0.0' '<221' 'eof'

# Per-client connection limit, then the global one.
stop_hikyaku
write_config "max_connections_per_client = 2"
start_hikyaku || { finish; exit 1; }
$RAW 127.0.0.1 "$PORT" '<220' 'sleep:3' >/dev/null 2>&1 &
p1=$!
$RAW 127.0.0.1 "$PORT" '<220' 'sleep:3' >/dev/null 2>&1 &
p2=$!
sleep 0.5
session "421 4.7.0 beyond max_connections_per_client" '<421 4.7.0' 'eof'
session "another client address still gets in" --source 127.0.0.2 '<220' '>QUIT\r\n' '<221'
wait $p1 $p2
stop_hikyaku
write_config "max_connections = 2"
start_hikyaku || { finish; exit 1; }
$RAW 127.0.0.1 "$PORT" '<220' 'sleep:3' >/dev/null 2>&1 &
p1=$!
$RAW --source 127.0.0.3 127.0.0.1 "$PORT" '<220' 'sleep:3' >/dev/null 2>&1 &
p2=$!
sleep 0.5
session "421 4.3.2 beyond max_connections" --source 127.0.0.4 '<421 4.3.2' 'eof'
wait $p1 $p2
sleep 0.3
session "a slot frees when a client leaves" --source 127.0.0.4 '<220' '>QUIT\r\n' '<221'

# Idle clients are dropped after idle_timeout.
stop_hikyaku
write_config "idle_timeout = 1s"
start_hikyaku || { finish; exit 1; }
session "421 4.4.2 after idle_timeout" '<220' '>EHLO c.example\r\n' '<250' 'sleep:2' '<421 4.4.2' 'eof'

# The relay log has the received and rejected events.
stop_hikyaku
$PY - "$T/log.jsonl" >"$T/log.out" 2>&1 <<'PYEOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
rec = [e for e in ev if e["event"] == "received"]
rej = [e for e in ev if e["event"] == "rejected"]
assert rec, "no received event"
for e in rec:
    for k in ("ts", "queue_id", "session", "client", "helo", "from", "header_from",
              "message_id", "rcpts", "size", "tls", "route", "matched"):
        assert k in e, "received lacks %s: %r" % (k, e)
relay = [e for e in rej if e["status"] == "5.7.1"]
assert relay and relay[0]["client"] == "127.0.0.9" and relay[0]["to"] == "user@example.com", rej
for k in ("session", "client", "from", "to", "status", "response"):
    assert k in relay[0], k
assert relay[0]["from"] == "a@example.jp", relay[0]
assert any(e["status"] == "5.3.4" for e in rej), "no 5.3.4 rejected event"
assert any(e["status"] == "4.5.3" for e in rej), "no 4.5.3 rejected event"
print("log ok: %d received, %d rejected" % (len(rec), len(rej)))
PYEOF
if grep -q 'log ok' "$T/log.out"; then ok "received and rejected events carry SPEC §7 fields"; else nok "received and rejected events carry SPEC §7 fields" "$T/log.out"; fi

# SPEC §4: the route is decided with the configuration in force when the
# mail is queued: after a reload, the next mail of a session that was
# already open follows the new verified_domains (issue 11: it kept the old
# rule for as long as the connection lived).
stop_hikyaku
write_config "" "[service]
host = 127.0.0.1
port = 9
tls = none"
start_hikyaku || { finish; exit 1; }
rm -f "$T/reload.go" "$T/reload.first"
$PY - "$PORT" "$T" >"$T/reload.out" 2>&1 <<'EOF' &
import os, socket, sys, time
port, t = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), 10)
f = s.makefile("rb")
def cmd(line):
    if line is not None:
        s.sendall(line)
    while True:
        l = f.readline().decode().rstrip()
        print(l, flush=True)
        if l[3:4] != "-":
            return l
cmd(None)
cmd(b"EHLO shop.example\r\n")
def mail(subject):
    cmd(b"MAIL FROM:<orders@shop.example>\r\n")
    cmd(b"RCPT TO:<customer@example.com>\r\n")
    cmd(b"DATA\r\n")
    return cmd(b"From: Shop <orders@shop.example>\r\nSubject: " + subject + b"\r\n\r\nx\r\n.\r\n")
mail(b"before")
open(os.path.join(t, "reload.first"), "w").close()
for _ in range(200):
    if os.path.exists(os.path.join(t, "reload.go")):
        break
    time.sleep(0.1)
mail(b"after")
cmd(b"QUIT\r\n")
EOF
RL=$!
for _ in $(seq 1 100); do [ -e "$T/reload.first" ] && break; sleep 0.1; done
sed -i 's/^\[service\]$/[routing]\nverified_domains = shop.example\n\n[service]/' "$T/hikyaku.conf"
kill -HUP "$HPID"
for _ in $(seq 1 100); do grep -q 'configuration reloaded' "$T/hikyaku.out" && break; sleep 0.1; done
touch "$T/reload.go"
wait "$RL"
check "reload: both mails of the open session queued" test "$(grep -c '^250 2.0.0 Ok: queued' "$T/reload.out")" -eq 2
$PY - "$T/log.jsonl" >"$T/reload.routes" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "received" and e.get("from") == "orders@shop.example":
        print(e["route"], e.get("matched"))
EOF
check "reload: the mail before it went direct, the next one on the same connection by the service" \
	test "$(tr '\n' ' ' <"$T/reload.routes")" = "direct None service shop.example "

finish
