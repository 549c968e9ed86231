#!/bin/bash
# tests/e2e/data/survey/make_postfix_log.sh — how postfix-maillog.log was made.
#
# Not run by the tests (they need no Postfix): run by hand, as root, on a
# Debian 12 machine with the postfix package installed (without the
# system instance: debconf "No configuration", see bench/run.sh), to
# regenerate the Postfix log lines the survey tests read.
#
# Runs a private Postfix instance (its own config_directory and
# queue_directory under a temporary directory, maillog_file set, smtpd
# on a free loopback port) that relays everything to two peers,
# tests/e2e/upstream.py on 127.0.0.1 and on [::1], which reject some
# recipients (550 5.1.1, 550 without an enhanced code, 5.1.10, 5.2.1,
# 5.7.1, 451) and accept the others. Then it changes the peers' rules
# and flushes the queue, so that some deferred recipients are delivered
# later and an address that bounced is delivered later. It stops only the
# master it started (the PID in its own queue directory).
#
# Output: postfix-maillog.log (the maillog_file lines, as Postfix wrote
# them) and, from it, postfix-rsyslog.log (Debian 12 rsyslog's RFC 3339
# prefix) and postfix-syslog.log (traditional syslog, space-padded day).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
PY=/usr/bin/python3
W=$(mktemp -d /tmp/hikyaku-pfsurvey.XXXXXX)
chmod 755 "$W"
PF_PID=""
UP_PIDS=()
cleanup() {
	if [ -n "$PF_PID" ] && [ -d "/proc/$PF_PID" ]; then
		postfix -c "$W/etc" stop >/dev/null 2>&1 || kill -TERM "$PF_PID"
		for _ in $(seq 1 100); do [ -d "/proc/$PF_PID" ] || break; sleep 0.1; done
	fi
	for p in "${UP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

free_port() {
	$PY -c 'import socket,sys; s=socket.socket(socket.AF_INET6 if sys.argv[1]==":" else socket.AF_INET); s.bind(("::1" if sys.argv[1]==":" else "127.0.0.1",0)); print(s.getsockname()[1])' "${1:-.}"
}

UP4=$(free_port)
UP6=$(free_port :)
SMTPD=$(free_port)

# Replies of the peer on 127.0.0.1 in the first round.
LONG="550 5.1.1 <long.response@dest.test>: Recipient address rejected: User unknown in virtual mailbox table; $(printf 'this mailbox does not exist and never did, please check the address %.0s' 1 2 3 4 5)end"
RULES4=(
	--reject-rcpt 'unknown@dest.test=550 5.1.1 <unknown@dest.test>: Recipient address rejected: User unknown'
	--reject-rcpt 'Taro.Yamada@Dest.TEST=550 5.1.1 <Taro.Yamada@Dest.TEST>: Recipient address rejected: User unknown'
	--reject-rcpt 'paren@dest.test=550 5.1.1 The email account that you tried to reach does not exist (see https://support.example/answer(6596)) for more'
	--reject-rcpt 'noenh@dest.test=550 No such user here'
	--reject-rcpt 'ms@dest.test=550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'
	--reject-rcpt 'disabled@dest.test=550 5.2.1 The email account that you tried to reach is disabled'
	--reject-rcpt 'policy@dest.test=554 5.7.1 <policy@dest.test>: Recipient address rejected: Access denied'
	--reject-rcpt 'grey@dest.test=451 4.7.1 <grey@dest.test>: Recipient address rejected: Greylisted, try again later'
	--reject-rcpt 'later@dest.test=450 4.2.0 <later@dest.test>: Recipient address rejected: Mailbox busy'
	--reject-rcpt 'revived@dest.test=550 5.1.1 <revived@dest.test>: Recipient address rejected: User unknown'
	--reject-rcpt 'real.target@dest.test=550 5.1.1 <real.target@dest.test>: Recipient address rejected: User unknown'
	--reject-rcpt "long.response@dest.test=$LONG"
)
RULES6=(
	--reject-rcpt 'gone@v6.test=550 5.1.1 <gone@v6.test>: Recipient address rejected: User unknown'
)

start_peer() { # NAME LISTEN ARGS...
	local name=$1 listen=$2
	shift 2
	$PY "$ROOT/tests/e2e/upstream.py" --listen "$listen" --spool "$W/up-$name" "$@" \
		>"$W/up-$name.out" 2>"$W/up-$name.err" &
	UP_PIDS+=($!)
	for _ in $(seq 1 100); do grep -q '^READY$' "$W/up-$name.out" 2>/dev/null && return 0; sleep 0.1; done
	echo "peer $name did not start" >&2
	exit 1
}
start_peer v4 "127.0.0.1:$UP4" "${RULES4[@]}"
start_peer v6 "[::1]:$UP6" "${RULES6[@]}"

mkdir -p "$W/etc" "$W/queue" "$W/data"
chown postfix "$W/data"
cat >"$W/etc/master.cf" <<CF
127.0.0.1:$SMTPD inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
: >"$W/etc/main.cf"
MAILLOG=$W/maillog
pfconf() {
	postconf -c "$W/etc" -e \
		"compatibility_level=3.6" \
		"queue_directory=$W/queue" "data_directory=$W/data" \
		"inet_interfaces=127.0.0.1" "inet_protocols=all" \
		"myhostname=mail.shop.test" "mydomain=shop.test" "myorigin=shop.test" "mydestination=" \
		"local_recipient_maps=" "alias_maps=" "alias_database=" "biff=no" \
		"mynetworks=127.0.0.0/8" \
		"relayhost=[127.0.0.1]:$UP4" \
		"transport_maps=inline:{ v6.test=smtp:[::1]:$UP6 }" \
		"recipient_canonical_maps=inline:{ alias@shop.test=real.target@dest.test, member@shop.test=member.ok@dest.test }" \
		"smtp_tls_security_level=none" \
		"minimal_backoff_time=1s" "maximal_backoff_time=2s" "queue_run_delay=1s" \
		"maillog_file=$MAILLOG" "maillog_file_prefixes=$W" \
		"$@"
}
pfconf enable_long_queue_ids=no
postfix -c "$W/etc" check
postfix -c "$W/etc" start
PF_PID=$(tr -d ' ' <"$W/queue/pid/master.pid")
for _ in $(seq 1 100); do
	$PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$SMTPD" 2>/dev/null && break
	sleep 0.1
done

send() { # FROM TO[,TO...]
	swaks --server 127.0.0.1 --port "$SMTPD" --from "$1" --to "$2" --timeout 20 \
		--header "Subject: survey sample" >/dev/null
}
settle() { # wait until the active and incoming queues are empty
	for _ in $(seq 1 200); do
		[ -z "$(find "$W/queue/incoming" "$W/queue/active" -type f 2>/dev/null)" ] && return 0
		sleep 0.1
	done
}

# Round 1: short queue ids.
send shop@shop.test unknown@dest.test
send shop@shop.test Taro.Yamada@Dest.TEST
send shop@shop.test paren@dest.test,ok1@dest.test
send shop@shop.test noenh@dest.test
send shop@shop.test ms@dest.test
send shop@shop.test disabled@dest.test
send shop@shop.test policy@dest.test
send shop@shop.test grey@dest.test,later@dest.test
send shop@shop.test revived@dest.test
send shop@shop.test alias@shop.test
send shop@shop.test member@shop.test
send shop@shop.test gone@v6.test,fine@v6.test
send shop@shop.test long.response@dest.test
settle
sleep 2

# Round 2: long queue ids; the peer now accepts later@ and revived@
# (deferred then sent; bounced then delivered), grey@ still greylisted.
kill -TERM "${UP_PIDS[0]}"
wait "${UP_PIDS[0]}" 2>/dev/null || true
R2=()
for r in "${RULES4[@]}"; do
	case $r in later@*|revived@*) unset 'R2[${#R2[@]}-1]' ;; *) R2+=("$r") ;; esac
done
start_peer v4 "127.0.0.1:$UP4" "${R2[@]}"
pfconf enable_long_queue_ids=yes
postfix -c "$W/etc" reload >/dev/null
sleep 1
postqueue -c "$W/etc" -f
send shop@shop.test revived@dest.test
send shop@shop.test unknown@dest.test,ok2@dest.test
settle
sleep 3
postqueue -c "$W/etc" -f
sleep 3

postfix -c "$W/etc" stop
for _ in $(seq 1 100); do [ -d "/proc/$PF_PID" ] || break; sleep 0.1; done
PF_PID=""

# The maillog_file lines, with the work directory's path (in postfix's
# process names, maillog_file_prefixes) left out.
cp "$MAILLOG" "$HERE/postfix-maillog.log"
# "Dec 02 02:29:18 host prog[pid]: text" -> rsyslog's RFC 3339 (this
# year, UTC) and traditional syslog ("Dec  2").
$PY - "$HERE/postfix-maillog.log" "$HERE/postfix-rsyslog.log" "$HERE/postfix-syslog.log" <<'PYEOF'
import datetime, re, sys
src, rsys, trad = sys.argv[1:4]
year = datetime.date.today().year
with open(src) as f, open(rsys, "w") as r, open(trad, "w") as t:
    for n, line in enumerate(f):
        m = re.match(r"([A-Z][a-z]{2}) (\d\d) (\d\d:\d\d:\d\d) (.*)", line)
        if not m:
            continue
        d = datetime.datetime.strptime("%d %s %s %s" % (year, m[1], m[2], m[3]), "%Y %b %d %H:%M:%S")
        r.write("%s.%06d+00:00 %s\n" % (d.strftime("%Y-%m-%dT%H:%M:%S"), (n * 7919) % 1000000, m[4]))
        t.write("%s %2d %s %s\n" % (m[1], int(m[2]), m[3], m[4]))
PYEOF
echo "wrote $(wc -l <"$HERE/postfix-maillog.log") lines"
