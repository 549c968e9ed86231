#!/bin/bash
# The operator's view of the running daemon (SPEC §8): hikyakuctl queue
# list/show/retry/delete and status through the control socket, queue list
# from the spool while the daemon is down, SIGUSR1 reopening the log, and
# systemd's notify protocol. Real peers: aiosmtpd as MX hosts and as the
# delivery service, dnsmasq for MX records.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }

# An MX that refuses the first transaction (451), one address with no
# server at all, and a delivery service that throttles its first mail.
start_upstream mx --addr 127.0.0.2 --fail-first '1=451 4.3.0 Greylisted, try again later' || { finish; exit 1; }
start_upstream svc --throttle '1=454 4.7.0 Throttling failure: Maximum sending rate exceeded.' || { finish; exit 1; }
start_dns --mx-host=flaky.test,mx.flaky.test,10 --host-record=mx.flaky.test,127.0.0.2 \
	--mx-host=dead.test,mx.dead.test,10 --host-record=mx.dead.test,127.0.0.9 \
	--host-record=smtp.service.test,127.0.0.1 || { finish; exit 1; }

# Retries are an hour away: only an operator's retry makes a mail go now.
write_config "" "
[routing]
verified_domains = shop.test

[service]
host = smtp.service.test
port = $UP_PORT_svc
tls = none
pause = 1h
connect_timeout = 3s
timeout = 10s

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 1h
retry_max = 2h"

# The daemon reports to systemd through NOTIFY_SOCKET (Type=notify).
$PY -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("BOUND", flush=True)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
' "$T/notify.sock" >"$T/notify.out" 2>&1 &
NOTIFY_PID=$!
for _ in $(seq 1 50); do grep -q BOUND "$T/notify.out" 2>/dev/null && break; sleep 0.1; done
NOTIFY_SOCKET=$T/notify.sock start_hikyaku || { finish; exit 1; }

# swaks prints "queued as ID"; the id is what the shop would quote.
submit() { # submit FROM TO -> the queue id on stdout
	smtp --from "$1" --to "$2" --header "Subject: order $2" >"$T/swaks.out" 2>&1
	sed -n 's/.*queued as \([0-9A-F]\{18\}\).*/\1/p' "$T/swaks.out" | head -n 1
}
wait_log() { # wait_log REGEX: up to 15 s for a log line
	for _ in $(seq 1 150); do grep -Eq -- "$1" "$T/log.jsonl" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

check "READY=1 is sent to systemd once the daemon listens" grep -q 'READY=1' "$T/notify.out"
SOCK_MODE=$(stat -c %a "$T/control.sock")
check "the control socket is mode 0660 (the daemon's user and group)" test "$SOCK_MODE" = 660

ctl status >"$T/status0.out" 2>&1
check "status answers while the daemon runs" grep -Eq '^hikyaku .* running, pid [0-9]+' "$T/status0.out"
expect "status: nothing queued at start" "$T/status0.out" '^queue: +0 mails'
expect "status: the service route and its host" "$T/status0.out" "^service: +smtp.service.test:$UP_PORT_svc"

A=$(submit shop@example.jp alice@flaky.test)
B=$(submit shop@example.jp bob@dead.test)
check "swaks got a queue id for both mails" test -n "$A" -a -n "$B"
wait_log "\"deferred\".*\"$A\"" && wait_log "\"deferred\".*\"$B\""
check "both mails were tried once and deferred" grep -q "\"deferred\".*\"$B\"" "$T/log.jsonl"

ctl queue list >"$T/list.out" 2>&1
check "queue list exits 0" test $? -eq 0
expect "queue list has a header row" "$T/list.out" '^QUEUE ID +ARRIVED +SIZE +ROUTE +TRIES +NEXT TRY +FROM'
expect "queue list shows mail A with its route, one try and the sender" "$T/list.out" "^$A +[0-9-]+ [0-9:]+ +[0-9.]+( B|K|M) +direct +1 +[0-9-]+ [0-9:]+ +shop@example.jp"
expect "queue list shows why A waits (the MX's 451)" "$T/list.out" '^    to alice@flaky.test: 451 4.3.0 Greylisted'
expect "queue list shows why B waits (no server)" "$T/list.out" '^    to bob@dead.test: .*(refused|connect)'
expect "queue list: a total" "$T/list.out" '^-- 2 mails, 2 recipients pending'
LINE_A=$(grep -n "^$A" "$T/list.out" | cut -d: -f1)
LINE_B=$(grep -n "^$B" "$T/list.out" | cut -d: -f1)
check "queue list is oldest first" test "$LINE_A" -lt "$LINE_B"

ctl queue list --json >"$T/list.json" 2>&1
check "queue list --json: both mails with their pending recipient" $PY -c '
import json, sys
m = {x["queue_id"]: x for x in json.load(open(sys.argv[1]))}
a, b = m[sys.argv[2]], m[sys.argv[3]]
assert a["rcpts"][0]["to"] == "alice@flaky.test" and a["rcpts"][0]["state"] == "pending"
assert a["attempts"] == 1 and a["route"] == "direct" and a["from"] == "shop@example.jp"
assert a["next_try"] and b["pending"] == 1
' "$T/list.json" "$A" "$B"

ctl queue show "$A" >"$T/show.out" 2>&1
check "queue show exits 0 for a queued mail" test $? -eq 0
expect "queue show: the queue id" "$T/show.out" "^Queue ID: +$A\$"
expect "queue show: the envelope sender" "$T/show.out" '^Sender: +shop@example.jp$'
expect "queue show: the route" "$T/show.out" '^Route: +direct$'
expect "queue show: attempts and the next try" "$T/show.out" '^Attempts: +1, last .*, next '
expect "queue show: the recipient, its state and last response" "$T/show.out" '^  alice@flaky.test +pending +451 4.3.0 Greylisted'

ctl queue show 0000000000000000AA >"$T/show-none.out" 2>&1
RC=$?
check "queue show of an unknown id exits 1" test "$RC" -eq 1
expect "queue show of an unknown id says so" "$T/show-none.out" 'no mail 0000000000000000AA in the queue'
ctl queue show '../../etc/passwd' >"$T/show-bad.out" 2>&1
check "queue show of a path exits 1 and reads nothing" test $? -eq 1

# retry: A goes now (the MX accepts its second transaction), not in an hour.
ctl queue retry "$A" >"$T/retry.out" 2>&1
check "queue retry ID exits 0" test $? -eq 0
expect "queue retry says what it did" "$T/retry.out" '^retry scheduled for 1 mail$'
check "after retry, A is delivered at once" wait_upstream_count mx 1 15
check "the log has A delivered on its second attempt" wait_log "\"delivered\".*\"$A\".*\"attempt\":2"
ctl queue retry 0000000000000000AA >"$T/retry-none.out" 2>&1
check "queue retry of an unknown id exits 1" test $? -eq 1

ctl status >"$T/status1.out" 2>&1
expect "status: received counts both mails" "$T/status1.out" '^since start: +received 2, rejected 0, delivered 1, deferred 2,'
expect "status: one mail left in the queue" "$T/status1.out" '^queue: +1 mail, 1 recipient pending'
expect "status: connections since start counted" "$T/status1.out" '^connections: +[0-9]+ open \(limit 1000\), [1-9][0-9]* since start'
ctl status --json >"$T/status1.json" 2>&1
check "status --json has the same figures" $PY -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["counts"]["received"] == 2 and s["counts"]["delivered"] == 1, s
assert s["queue"]["mails"] == 1 and s["queue"]["recipients"] == 1, s
assert s["uptime_s"] >= 0 and s["pid"] > 0
' "$T/status1.json"

# delete: B leaves the queue without a DSN, and the log says so.
ctl queue delete "$B" >"$T/delete.out" 2>&1
check "queue delete exits 0" test $? -eq 0
expect "queue delete says what it did" "$T/delete.out" "^deleted $B\$"
check "the log has a deleted event naming B's recipient" wait_log "\"event\":\"deleted\",\"queue_id\":\"$B\",\"to\":\\[\"bob@dead.test\"\\]"
for _ in $(seq 1 50); do queued_has "$B" || break; sleep 0.1; done
check "B is gone from the spool" not queued_has "$B"
ctl queue list >"$T/list2.out" 2>&1
expect "an empty queue says so" "$T/list2.out" '^The queue is empty\.$'
ctl queue delete "$B" >"$T/delete2.out" 2>&1
check "deleting it again exits 1" test $? -eq 1
"$HIKYAKUCTL" -c "$T/hikyaku.conf" log --event deleted >"$T/log-deleted.out" 2>&1
expect "hikyakuctl log shows the deletion" "$T/log-deleted.out" "$B +deleted +bob@dead.test"
ctl status --json >"$T/status2.json" 2>&1
check "status counts the deletion" $PY -c '
import json, sys
s = json.load(open(sys.argv[1])); assert s["counts"]["deleted"] == 1 and s["queue"]["mails"] == 0, s
' "$T/status2.json"

# The service throttles (454): its route pauses for an hour; an operator's
# retry --all lifts the pause and the mail goes now.
C=$(submit news@shop.test carol@dead.test)
check "the throttled mail is deferred" wait_log "\"deferred\".*\"$C\".*454 4.7.0"
ctl status >"$T/status3.out" 2>&1
expect "status shows the service route paused and why" "$T/status3.out" '^service: .*PAUSED until .*454 4.7.0 Throttling'
ctl queue retry --all >"$T/retry-all.out" 2>&1
expect "queue retry --all counts the mails" "$T/retry-all.out" '^retry scheduled for 1 mail$'
check "after retry --all, the service gets the mail" wait_upstream_count svc 1 15
ctl status >"$T/status4.out" 2>&1
expect_not "the pause is lifted" "$T/status4.out" 'PAUSED'

# Errors are one sentence; a malformed request gets a JSON refusal.
printf 'not json\n' | $PY -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
print(s.recv(4096).decode())' "$T/control.sock" >"$T/bad-req.out" 2>&1
expect "a malformed request is refused in JSON" "$T/bad-req.out" '"ok": ?false.*"bad_request"'
$PY -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{" + b" " * 10000)
print(s.recv(4096).decode())' "$T/control.sock" >"$T/long-req.out" 2>&1
expect "a request over 4096 bytes is refused" "$T/long-req.out" 'longer than 4096 bytes'
# A refusal that cuts a name at 40 octets cuts between characters: a
# non-empty JSON answer (an empty one when the cut split a character).
$PY -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"cmd": "queue.show", "id": "\u3042" * 14}).encode() + b"\n")
print(s.recv(4096).decode())' "$T/control.sock" >"$T/cut-req.out" 2>&1
expect "an id cut at 40 octets: a JSON refusal naming whole characters" "$T/cut-req.out" '"no mail (あ){13} in the queue"'
$PY -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"cmd": "\u3042" * 40}).encode() + b"\n")
print(s.recv(4096).decode())' "$T/control.sock" >"$T/cut-cmd.out" 2>&1
expect "an unknown command cut at 100 octets: a JSON refusal" "$T/cut-cmd.out" '"unknown command \\"(あ){33}\\""'

# SIGUSR1 (logrotate): the daemon writes to a new file at the same path.
mv "$T/log.jsonl" "$T/log.jsonl.1"
kill -USR1 "$HPID"
sleep 0.3
D=$(submit shop@example.jp dave@dead.test)
check "swaks got a queue id" test -n "$D"
check "after SIGUSR1, new events go to a new log file" wait_log "\"received\".*\"$D\""
expect_not "the rotated file gets nothing new" "$T/log.jsonl.1" "$D"

# SIGHUP: systemd hears RELOADING=1 then READY=1.
kill -HUP "$HPID"
for _ in $(seq 1 50); do grep -q 'RELOADING=1' "$T/notify.out" && break; sleep 0.1; done
expect "a reload is reported to systemd" "$T/notify.out" 'RELOADING=1'

# While the daemon is down, queue list and show read the spool; the rest
# say that the daemon is not running.

# SPEC §8 (issue 20 finding 5): control characters from mail, peers or the
# log never reach the operator's terminal, in any command. A display name
# with a title change (ESC ]2;...BEL), a clear screen (ESC [2J), an OSC-8
# link and a C1 CSI (U+009B); the same in Message-ID and in a reason.
EVIL=$'Shop \e]2;owned\a \e[2J \e]8;;http://evil.test/\e\\click\e]8;;\e\\ \xc2\x9b2J'
smtp --from shop@example.jp --to esc@dead.test --header "From: \"$EVIL\" <shop@example.jp>" \
	--header "Message-ID: <$EVIL@shop.test>" --header "Subject: esc" >"$T/swaks-esc.out" 2>&1
E=$(sed -n 's/.*queued as \([0-9A-F]\{18\}\).*/\1/p' "$T/swaks-esc.out" | head -n 1)
check "the mail with escape sequences in From: is queued" test -n "$E"
wait_log "\"deferred\".*\"$E\""
ctl suppression add esc@dead.test --reason "$EVIL" >/dev/null 2>&1
cat >"$T/noctl.py" <<'PY'
# Fails when a file has a control character (C0 but LF, or CR for a
# terminal's CRLF with --tty; DEL; C1 as UTF-8 or as a raw byte).
import sys
tty = sys.argv[1] == "--tty"
bad = []
for path in sys.argv[2:] if tty else sys.argv[1:]:
    data = open(path, "rb").read()
    text = data.decode("utf-8", errors="surrogateescape")
    for i, ch in enumerate(text):
        c = ord(ch)
        if (c < 0x20 and ch != "\n" and not (tty and ch == "\r")) or 0x7f <= c <= 0x9f \
                or 0xdc80 <= c <= 0xdcff:
            bad.append("%s: U+%04X at %d: %r" % (path, c, i, text[max(0, i - 20):i + 20]))
            break
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
outs=()
run_out() { # run_out NAME ARGS...: hikyakuctl's stdout and stderr to $T/esc-NAME.out
	local n=$1
	shift
	ctl "$@" >"$T/esc-$n.out" 2>&1
	outs+=("$T/esc-$n.out")
}
run_out qlist queue list
run_out qlistj queue list --json
run_out qshow queue show "$E"
run_out qshowj queue show "$E" --json
run_out log log
run_out logj log --json
run_out logq log --queue-id "$E"
run_out status status
run_out statusj status --json
run_out slist suppression list
run_out ssearch suppression list --search "$EVIL"
run_out route route "$EVIL@shop.test"
run_out config config
run_out qshowbad queue show "$EVIL"
expect "queue show names the escape sequence, escaped" "$T/esc-qshow.out" '^From: +"Shop \\x1b\]2;owned\\x07 \\x1b\[2J \\x1b\]8;;http://evil\.test/\\x1b\\click'
expect "queue show shows the C1 CSI escaped" "$T/esc-qshow.out" '\\u009b2J'
expect "suppression list shows the reason escaped" "$T/esc-slist.out" '^esc@dead\.test +Shop \\x1b\]2;owned'
check "queue show --json is JSON with the same From:" $PY -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert m["header_from"].startswith("\"Shop \x1b]2;owned\x07 \x1b[2J"), m["header_from"]
assert "\u009b2J" in m["header_from"]' "$T/esc-qshowj.out"
check "no hikyakuctl output has a raw control character" $PY "$T/noctl.py" "${outs[@]}"
# On a terminal (script(1) gives the command one), export escapes too; to a
# file it keeps the bytes, so that import gives the list back exactly.
script -qec "\"$HIKYAKUCTL\" -c \"$T/hikyaku.conf\" suppression export" /dev/null >"$T/esc-export-tty.out" 2>&1
script -qec "\"$HIKYAKUCTL\" -c \"$T/hikyaku.conf\" queue show $E" /dev/null >"$T/esc-qshow-tty.out" 2>&1
expect "export on a terminal has the entry" "$T/esc-export-tty.out" '^esc@dead\.test,'
check "nothing raw on a terminal either (export, queue show)" $PY "$T/noctl.py" --tty "$T/esc-export-tty.out" "$T/esc-qshow-tty.out"
ctl suppression export >"$T/esc-export.csv" 2>&1
check "export to a file keeps the reason's bytes" grep -qF "$EVIL" "$T/esc-export.csv"
ctl suppression remove esc@dead.test >/dev/null 2>&1
ctl queue delete "$E" >/dev/null 2>&1

stop_hikyaku
expect "STOPPING=1 is sent to systemd" "$T/notify.out" 'STOPPING=1'
check "the control socket is removed at stop" test ! -e "$T/control.sock"
ctl queue list >"$T/list-down.out" 2>"$T/list-down.err"
check "queue list works with the daemon down" test $? -eq 0
expect "it says where it read from" "$T/list-down.err" "hikyaku is not running; read from the spool $T/queue"
# (dead.test is known to be down: D was deferred without a new attempt.)
expect "it still lists the mail left" "$T/list-down.out" "^$D +.* direct +[01] "
expect "and its recipient" "$T/list-down.out" '^    to dave@dead.test: '
ctl queue show "$D" >"$T/show-down.out" 2>/dev/null
expect "queue show works with the daemon down" "$T/show-down.out" '^  dave@dead.test +pending'
ctl status >"$T/status-down.out" 2>&1
check "status with the daemon down exits 2" test $? -eq 2
expect "status says the daemon is not running" "$T/status-down.out" '^hikyakuctl: hikyaku is not running \(cannot connect to .*control.sock'
ctl queue retry --all >/dev/null 2>&1
check "queue retry with the daemon down exits 2" test $? -eq 2

# A stale socket left by kill -9 does not keep the next daemon from it.
start_hikyaku || { finish; exit 1; }
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=""
check "kill -9 leaves the socket behind" test -S "$T/control.sock"
start_hikyaku || { finish; exit 1; }
ctl status >"$T/status5.out" 2>&1
check "the next daemon takes the stale socket over" grep -q 'running' "$T/status5.out"
expect "and has the mail left in its queue" "$T/status5.out" '^queue: +1 mail'

# One daemon per spool: a second one on the same queue directory refuses.
timeout 10 "$HIKYAKU" -c "$T/hikyaku.conf" >"$T/second.out" 2>&1
RC=$?
check "a second daemon on the same spool exits 1" test "$RC" -eq 1
expect "and says the queue is in use" "$T/second.out" 'is in use by another hikyaku'
ctl status >"$T/status6.out" 2>&1
check "the first daemon still answers" grep -q 'running' "$T/status6.out"

# An operator's retry also forgets that a destination did not answer:
# with retry_min = 1h, dead.test stays "down" for an hour after F's
# attempt, and without that the retried mails would be put off again at
# once. Once a server listens there, retry --all sends D and F now.
F=$(submit shop@example.jp fred@dead.test)
check "F is deferred: dead.test has no server" wait_log "\"event\":\"deferred\",\"queue_id\":\"$F\""
start_upstream dead --addr 127.0.0.9 --port "$UP_PORT_mx" || { finish; exit 1; }
ctl queue retry --all >"$T/retry-down.out" 2>&1
expect "retry --all counts both mails" "$T/retry-down.out" '^retry scheduled for 2 mails$'
check "after retry --all, the destination that was down gets both mails at once" wait_upstream_count dead 2 15
check "F is logged delivered" wait_log "\"event\":\"delivered\",\"queue_id\":\"$F\""
check "D is logged delivered" wait_log "\"event\":\"delivered\",\"queue_id\":\"$D\""

kill "$NOTIFY_PID" 2>/dev/null
wait "$NOTIFY_PID" 2>/dev/null
stop_upstreams
stop_dns
finish
