#!/bin/bash
# Faults end to end (SPEC §5 outbound, §7 log; docs/delivery.md): hikyaku
# relays to real peers that misbehave — they stall, hang up in the middle of
# DATA, answer garbage, break TLS, throttle — and to a DNS server that
# fails. What an administrator checks each time: the relay log (deferred
# with a clear response and a next_retry, never bounced for a transient
# fault, delivered once the peer behaves), the queue on disk (the mail kept
# until it is delivered, removed after), exactly one copy in the end, and a
# relay that keeps answering new mail with 250 while a fault lasts.
#
# Peers: tests/e2e/fault_peer.py (raw asyncio; a faulty peer is healed with
# SIGUSR1 and then behaves), upstream.py as the delivery service and as the
# sink for probes and DSNs, dnsmasq behind tests/e2e/dns_fault.py (which
# answers SERVFAIL or nothing for the names its rules file names).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
START_NS=$(date +%s%N)

TIMEOUT=3     # [service]/[direct] timeout, seconds
PAUSE=2       # [service] pause, seconds

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test
GOOD="$T/certs/server.pem,$T/certs/server.key"
EXPIRED="$T/certs/expired.pem,$T/certs/expired.key"
WRONG="$T/certs/wrong.pem,$T/certs/wrong.key"
echo 'svc-pass' >"$T/svc.pass"

# The sink (probes, DSNs, mail for the DNS-fault domains once DNS works)
# and the faulty MX hosts share one port on 127.0.0.9 and up: [direct]
# port applies to every MX.
start_upstream sink --addr 127.0.0.9 || { finish; exit 1; }
MXP=$UP_PORT_sink
DNS_ARGS=(--host-record=smtp.service.test,127.0.0.1
	--mx-host=sink.test,mx.sink.test,10 --mx-host=shop.test,mx.sink.test,10
	--host-record=mx.sink.test,127.0.0.9
	--mx-host=dnsfail.test,mx.sink.test,10 --mx-host=dnsslow.test,mx.sink.test,10)
ip=10
# peer NAME MODE [fault_peer.py options]: a faulty MX for the domain NAME.test.
peer() {
	local name=$1 mode=$2
	shift 2
	start_fault_peer "$name" --addr "127.0.0.$ip" --port "$MXP" --mode "$mode" "$@" || { finish; exit 1; }
	DNS_ARGS+=("--mx-host=$name.test,mx.$name.test,10" "--host-record=mx.$name.test,127.0.0.$ip")
	ip=$((ip + 1))
}
peer huge hugeline
peer drop drop-in-data
peer sgreet stall-greeting
peer smail stall-mail
peer sdot stall-dot --stall 14
peer http greeting-http
peer nocode nocode
peer badcont badcont
peer data250 data250
peer early250 early250
peer tlsmay starttls-broken
start_dns "${DNS_ARGS[@]}" || { finish; exit 1; }
: >"$T/dns.rules"
start_dns_fault "$T/dns.rules" || { finish; exit 1; }
# The delivery service starts with an expired certificate (section 4).
start_upstream svc --tls "$EXPIRED" --auth shop:svc-pass || { finish; exit 1; }

write_config "" "
[routing]
verified_domains = shop-verified.test

[service]
host = smtp.service.test
port = $UP_PORT_svc
tls = starttls
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
rate = 100/s
pause = ${PAUSE}s
connect_timeout = 2s
timeout = ${TIMEOUT}s

[direct]
port = $MXP
dns_servers = 127.0.0.1:$DNSF_PORT
tls = may
connect_timeout = 2s
timeout = ${TIMEOUT}s

[queue]
retry_min = 1s
retry_max = 2s
lifetime = 1h"
check "the test configuration is valid" "$HIKYAKU" -c "$T/hikyaku.conf" --check
start_hikyaku || { finish; exit 1; }

# ---- helpers ---------------------------------------------------------

# submit NAME TO [swaks args]: queues one mail from $FROM (default
# shop@shop.test, whose MX is the sink); QID_NAME is its queue id.
submit() {
	local name=$1 to=$2
	shift 2
	swaks --server 127.0.0.1 --port "$PORT" --helo client.test.example --from "${FROM:-shop@shop.test}" \
		--to "$to" --timeout 20 "$@" >"$T/send-$name.out" 2>&1
	local q
	q=$(grep -oE 'queued as [0-9A-F]{18}' "$T/send-$name.out" | awk '{print $3}' | tail -n 1)
	printf -v "QID_$name" %s "$q"
	[ -n "$q" ] || nok "$name: the mail to $to is queued" "$T/send-$name.out"
}
qid() { local v=QID_$1; echo "${!v:-none}"; }

# probe WHAT: a new submission while a fault lasts gets 250 within 5 s.
NPROBE=0
probe() {
	NPROBE=$((NPROBE + 1))
	local t0 ms
	t0=$(date +%s%N)
	swaks --server 127.0.0.1 --port "$PORT" --helo client.test.example --from shop@shop.test \
		--to "probe$NPROBE@sink.test" --timeout 20 >"$T/probe.out" 2>&1
	ms=$((($(date +%s%N) - t0) / 1000000))
	if grep -qE '^<- +250 .*queued as' "$T/probe.out" && [ "$ms" -lt 5000 ]; then
		ok "$1: meanwhile a new submission gets 250 ($ms ms)"
	else
		nok "$1: meanwhile a new submission gets 250 within 5 s (took $ms ms)" "$T/probe.out"
	fi
}

# The relay log. log_check CODE [QID]: Python CODE over ev (every event),
# of(qid, *events), to(addr, *events) and t(ts) (RFC 3339 -> epoch s);
# succeeds when its last expression is true; prints it, and on failure
# the events of QID.
_log_py() {
	$PY - "$T/log.jsonl" "$@" <<'PYEOF'
import ast, datetime, json, re, sys
path, mode, code = sys.argv[1:4]
qid = sys.argv[4] if len(sys.argv) > 4 else None
ev = []
for l in open(path):
    try:
        ev.append(json.loads(l))
    except ValueError:
        pass
def t(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
def of(q, *events):
    return [e for e in ev if e.get("queue_id") == q and (not events or e["event"] in events)]
def to(a, *events):
    return [e for e in ev if e.get("to") == a and (not events or e["event"] in events)]
env = {"ev": ev, "t": t, "of": of, "to": to, "re": re, "json": json}
tree = ast.parse(code.strip())
last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
exec(compile(tree, "<code>", "exec"), env)
v = eval(compile(ast.Expression(last.value), "<code>", "eval"), env) if last else None
if mode == "check":
    print(repr(v))
    if not v and qid:
        print("events of %s:" % qid)
        for e in of(qid):
            print(json.dumps(e))
    sys.exit(0 if v else 1)
for x in (v if isinstance(v, (list, tuple)) else [v]):
    print(x)
PYEOF
}
log_check() { _log_py check "$@"; }
log_eval() { _log_py eval "$@"; }

has_event() { # has_event QID EVENT...
	local q=$1 e
	shift
	for e in "$@"; do
		grep -F "\"queue_id\":\"$q\"" "$T/log.jsonl" 2>/dev/null | grep -qF "\"event\":\"$e\"" && return 0
	done
	return 1
}
# wait_event QID SECONDS EVENT...: 1 when none was logged in time.
wait_event() {
	local q=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		has_event "$q" "$@" && return 0
		sleep 0.1
	done
	has_event "$q" "$@"
}
events_of() { grep -F "\"queue_id\":\"$1\"" "$T/log.jsonl" >"$T/events.out" 2>/dev/null; echo "$T/events.out"; }

# deferred LABEL NAME REGEX [SECONDS]: the first outcome of NAME's mail is
# "deferred" (not delivered, not bounced), its response matches REGEX
# (case-insensitive), it has a next_retry after its ts and a status that
# is not permanent, and the mail is still in the queue.
deferred() {
	local label=$1 q re=$3
	q=$(qid "$2")
	if ! wait_event "$q" "${4:-20}" deferred delivered bounced expired; then
		nok "$label: an outcome is logged within ${4:-20} s" "$(events_of "$q")"
		return 1
	fi
	check "$label: deferred (not delivered, not bounced)" log_check "
e = of('$q', 'deferred', 'delivered', 'bounced', 'expired')
e[0]['event'] == 'deferred' and not of('$q', 'bounced', 'expired')" "$q"
	check "$label: the log says why and when it is retried" log_check "
# The first attempt, or (when the destination was already down from an
# earlier case) the one after the suspension, says what went wrong.
ds = of('$q', 'deferred')
any(re.search(r'''$re''', d['response'], re.I) for d in ds) and all('next_retry' in d and t(d['next_retry']) > t(d['ts']) and not (d['status'] or '').startswith('5') for d in ds)" "$q"
	check "$label: the mail stays in the queue" queued_has "$q"
}

# delivered LABEL NAME [SECONDS]: logged delivered after being deferred,
# never bounced, gone from the queue.
removed() { ! queued_has "$1" && test ! -e "$T/queue/state/$1"; }
delivered() {
	local label=$1 q
	q=$(qid "$2")
	if ! wait_event "$q" "${3:-20}" delivered; then
		nok "$label: delivered once the peer behaves" "$(events_of "$q")"
		return 1
	fi
	check "$label: delivered once the peer behaves, after the deferral" log_check "
d = of('$q', 'delivered')
f = of('$q', 'deferred')
len(d) == 1 and f and t(f[0]['ts']) <= t(d[0]['ts']) and not of('$q', 'bounced', 'expired')" "$q"
	check "$label: removed from the queue after delivery" removed "$q"
}

# copies UPSTREAM RCPT: copies of RCPT accepted (with 250) by UPSTREAM.
copies() { upstream_rcpts "$1" | grep -cxF "$2"; }
one_copy() { # one_copy LABEL UPSTREAM RCPT
	local n
	n=$(copies "$2" "$3")
	if [ "$n" -eq 1 ]; then ok "$1: exactly one copy arrived"; else
		upstream_eval "$2" '[(m["rcpt_tos"], m.get("reply")) for m in msgs]' >"$T/copies.out" 2>&1
		nok "$1: exactly one copy arrived (got $n)" "$T/copies.out"
	fi
}

# first_session_check NAME CODE: CODE over s, the first faulty session of
# fault peer NAME (waits up to 3 s for its record).
first_session_check() {
	local i
	for ((i = 0; i < 30; i++)); do
		upstream_check "$1" 'any(x["mode"] != "ok" for x in sessions)' >/dev/null 2>&1 && break
		sleep 0.1
	done
	upstream_check "$1" "s = [x for x in sessions if x['mode'] != 'ok'][0]
$2"
}

vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$HPID/status"; }

# ---- 3d. a 10 MB reply line, alone (memory is measured) ---------------

# Warm up: one ordinary delivery, so that what the first connection costs
# is not counted against the fault.
submit warm warm@sink.test
wait_event "$(qid warm)" 20 delivered >/dev/null
sleep 0.5
rss0=$(vm VmRSS)
hwm0=$(vm VmHWM)
submit huge user@huge.test
deferred "10 MB reply line without CRLF" huge 'longer than|too long'
sleep 0.3
rss1=$(vm VmRSS)
hwm1=$(vm VmHWM)
check "10 MB reply line: hikyaku does not buffer it (VmRSS $rss0 -> $rss1 kB, VmHWM $hwm0 -> $hwm1 kB; < 6 MB growth)" \
	test $((rss1 - rss0)) -lt 6144 -a $((hwm1 - hwm0)) -lt 6144
check "10 MB reply line: hikyaku hangs up instead of reading on" \
	first_session_check huge 's["closed_by"] == "client" and s["end"] - s["start"] < 2'
probe "10 MB reply line"
heal_peer huge

# ---- 1-3, 4c, 6: direct route faults, all at once ---------------------

mkdir -p "$T/body"
$PY -c 'import sys; sys.stdout.write("".join("line %05d of a long message body, long enough to be cut in the middle\n" % i for i in range(1500)))' >"$T/body/big"
# The slow ones first: a DNS query that gets no answer, the stalls.
: >"$T/dns.rules"
printf 'servfail dnsfail.test MX\ndrop dnsslow.test MX\n' >"$T/dns.rules"
submit dnsslow user@dnsslow.test
T_SDOT=$(date +%s.%N)
submit sdot user@sdot.test
submit sgreet user@sgreet.test
submit smail user@smail.test
probe "stalled peers (greeting, MAIL FROM, final dot) and a DNS query without answer"
submit drop user@drop.test --body "@$T/body/big"
submit http user@http.test
submit nocode user@nocode.test
submit badcont user@badcont.test
submit data250 user@data250.test
submit early250 user@early250.test
submit tlsmay user@tlsmay.test
submit dnsfail user@dnsfail.test
submit nxdomain user@nosuch.test

# 1. The peer hangs up in the middle of DATA.
deferred "drop in the middle of DATA" drop 'connection|closed|reset|broken pipe|write'
check "drop in the middle of DATA: the peer got part of the message, not the final dot" \
	first_session_check drop 's["data_bytes"] >= 1000 and not s["dot_seen"] and s["closed_by"] == "peer"'
probe "drop in the middle of DATA"
heal_peer drop

# 3. Garbage.
deferred "greeting 'HTTP/1.1 400 Bad Request'" http 'greeting'
probe "HTTP greeting"
heal_peer http
deferred "reply line without a code" nocode 'malformed|protocol'
probe "reply line without a code"
heal_peer nocode
deferred "multi-line reply whose continuation changes the code (250-/550)" badcont 'malformed|protocol'
probe "invalid multi-line continuation"
heal_peer badcont
deferred "250 to DATA instead of 354 (the message never sent)" data250 'DATA|protocol|unexpected'
probe "250 to DATA"
heal_peer data250
deferred "250 to the end of data sent before the message" early250 'DATA|protocol|unexpected|before'
probe "early 250"
heal_peer early250

# 4c. [direct] tls = may, a broken handshake: plain-text fallback at once
# (docs/delivery.md: "plain text if it does not, or if the handshake fails").
if wait_event "$(qid tlsmay)" 20 delivered deferred bounced; then
	check "tls = may, broken handshake: delivered in plain text in the same attempt, no deferral" log_check "
d = of('$(qid tlsmay)', 'delivered')
len(d) == 1 and d[0]['tls'] is False and not of('$(qid tlsmay)', 'deferred', 'bounced')" "$(qid tlsmay)"
else
	nok "tls = may, broken handshake: an outcome is logged" "$(events_of "$(qid tlsmay)")"
fi
check "tls = may: STARTTLS was tried, then a new plain-text connection carried the mail" upstream_check tlsmay "
st = [x for x in sessions if x['starttls']]
m = [x for x in msgs if 'user@tlsmay.test' in x['rcpt_tos']]
st and m and not m[0]['tls'] and st[0]['end'] <= m[0]['ts']"
check "tls = may: nothing of the mail was sent on the broken connection" upstream_check tlsmay \
	'not any(c.startswith(("MAIL", "RCPT", "DATA")) for x in sessions if x["starttls"] for c in x["commands"])'

# 6a. SERVFAIL for the MX query.
deferred "DNS SERVFAIL for MX" dnsfail 'SERVFAIL'
check "DNS SERVFAIL: status 4.4.x" log_check "(of('$(qid dnsfail)', 'deferred')[0]['status'] or '').startswith('4.4.')" "$(qid dnsfail)"
probe "DNS SERVFAIL"
printf 'drop dnsslow.test MX\n' >"$T/dns.rules"

# 6c. NXDOMAIN: bounced at once, DSN to the sender.
if wait_event "$(qid nxdomain)" 20 bounced deferred delivered; then
	check "NXDOMAIN: bounced with 5.1.2, never deferred" log_check "
b = of('$(qid nxdomain)', 'bounced')
len(b) == 1 and b[0]['status'] == '5.1.2' and not of('$(qid nxdomain)', 'deferred', 'delivered')" "$(qid nxdomain)"
else
	nok "NXDOMAIN: an outcome is logged" "$(events_of "$(qid nxdomain)")"
fi

# 2a/2b. Stalls past the timeout: hikyaku gives up after `timeout` and
# closes its connection.
deferred "no greeting (stall)" sgreet 'time.?out.*greeting'
check "no greeting: hikyaku closed its connection after ~${TIMEOUT} s" \
	first_session_check sgreet "s['closed_by'] == 'client' and $TIMEOUT - 0.5 <= s['end'] - s['start'] <= $TIMEOUT + 2.5"
probe "no greeting"
heal_peer sgreet
deferred "stall after MAIL FROM" smail 'time.?out.*MAIL'
check "stall after MAIL FROM: hikyaku closed its connection after ~${TIMEOUT} s" \
	first_session_check smail "s['closed_by'] == 'client' and $TIMEOUT - 0.5 <= s['end'] - s['start'] <= $TIMEOUT + 2.5"
probe "stall after MAIL FROM"
heal_peer smail

# 2c. No reply to the final dot. hikyaku waits twice `timeout` there
# ([direct] timeout = 3 s: 6 s; RFC 5321 §4.5.3.2's 10 minutes at the
# default 5m), longer than for any other reply; the peer would hang up
# only after 14 s. What is checked: hikyaku waits the full 2 x timeout
# after the final dot (so past a single `timeout`), then hangs up itself,
# defers (never bounces) and delivers exactly once. The wait is measured
# from the records, not at a moment of the script's choosing (on a loaded
# machine the script may get there late): the peer's own record of when
# the dot arrived (dot_at) and when hikyaku hung up (end), and the relay
# log's deferral: its response, its ts against dot_at, its delay_ms
# (counted from the submission, so at least the wait). The peer reads the
# dot a little after hikyaku has sent it and started its clock, hence
# the margins (0.5 s; 0.2 s on delay_ms); a single `timeout` would be 3 s
# short.
# The probe is meant to come while hikyaku still waits, past `timeout`;
# that moment is not asserted.
sleep "$($PY -c "import time; print(max(0, $T_SDOT + $TIMEOUT + 1.5 - time.time()))")"
probe "no reply to the final dot"
deferred "no reply to the final dot: deferred at 2 x timeout" sdot 'timeout waiting for the reply to the end of data'
check "no reply to the final dot: hikyaku hung up 2 x ${TIMEOUT} s after the dot arrived, before the peer" \
	first_session_check sdot "print('dot to hang-up: %.3f s' % (s['end'] - s['dot_at']))
s['dot_seen'] and s['closed_by'] == 'client' and 2 * $TIMEOUT - 0.5 <= s['end'] - s['dot_at'] <= 2 * $TIMEOUT + 4"
sdot_dot_at=$(upstream_eval sdot "[x for x in sessions if x['mode'] != 'ok'][0].get('dot_at', 0)" 2>/dev/null)
echo "# no reply to the final dot: hang-up $(upstream_eval sdot "s = [x for x in sessions if x['mode'] != 'ok'][0]; '%.3f' % (s['end'] - s['dot_at'])" 2>/dev/null) s after the dot, deferral $(log_eval "'%.3f' % (t(of('$(qid sdot)', 'deferred')[0]['ts']) - ${sdot_dot_at:-0})" 2>/dev/null) s after it, delay_ms $(log_eval "of('$(qid sdot)', 'deferred')[0]['delay_ms']" 2>/dev/null)"
check "no reply to the final dot: the log defers it with the timeout at the end of data, 2 x ${TIMEOUT} s after the dot arrived" log_check "
d = of('$(qid sdot)', 'deferred')[0]
print('response %r, %.3f s after the dot, delay_ms %d' % (d['response'], t(d['ts']) - ${sdot_dot_at:-0}, d['delay_ms']))
d['response'] == 'timeout waiting for the reply to the end of data' and ${sdot_dot_at:-0} > 0 and t(d['ts']) - ${sdot_dot_at:-0} >= 2 * $TIMEOUT - 0.5 and d['delay_ms'] >= 2 * $TIMEOUT * 1000 - 200" "$(qid sdot)"
heal_peer sdot

# 6b. No DNS answer at all: deferred after the resolver's timeout.
deferred "DNS query without answer (timeout)" dnsslow 'time.?out' 40
probe "DNS timeout"
: >"$T/dns.rules"

# Every healed peer now gets its mail, once.
delivered "10 MB reply line" huge
delivered "drop in the middle of DATA" drop
delivered "HTTP greeting" http
delivered "reply line without a code" nocode
delivered "invalid multi-line continuation" badcont
delivered "250 to DATA" data250
delivered "early 250" early250
delivered "no greeting" sgreet
delivered "stall after MAIL FROM" smail
delivered "no reply to the final dot" sdot
delivered "DNS SERVFAIL" dnsfail
delivered "DNS timeout" dnsslow
sleep 1.5
one_copy "10 MB reply line" huge user@huge.test
one_copy "drop in the middle of DATA" drop user@drop.test
check "drop in the middle of DATA: the copy is complete" upstream_check drop \
	'm = [x for x in msgs if "user@drop.test" in x["rcpt_tos"]]; len(m) == 1 and "line 01499 of a long" in data(m[0])'
one_copy "HTTP greeting" http user@http.test
one_copy "reply line without a code" nocode user@nocode.test
one_copy "invalid multi-line continuation" badcont user@badcont.test
one_copy "250 to DATA" data250 user@data250.test
one_copy "early 250" early250 user@early250.test
one_copy "no greeting" sgreet user@sgreet.test
one_copy "stall after MAIL FROM" smail user@smail.test
one_copy "no reply to the final dot" sdot user@sdot.test
one_copy "tls = may fallback" tlsmay user@tlsmay.test
one_copy "DNS SERVFAIL" sink user@dnsfail.test
one_copy "DNS timeout" sink user@dnsslow.test
check "NXDOMAIN: the sender got one DSN naming the recipient and 5.1.2" upstream_check sink \
	'd = [m for m in msgs if m["mail_from"] == "" and "user@nosuch.test" in data(m)]; len(d) == 1 and "shop@shop.test" in d[0]["rcpt_tos"] and "5.1.2" in data(d[0]) and "report-type=delivery-status" in data(d[0])'

# ---- 4. TLS faults on the service route --------------------------------

svc_plain_check() { # nothing but EHLO/STARTTLS/QUIT ever went in plain text, nothing accepted
	upstream_check svc 'bad = [c for x in sessions if not x["tls"] for c in x["commands"] if not c.startswith(("EHLO", "STARTTLS", "QUIT", "NOOP"))]; print(bad); not bad and not msgs'
}
# svc_next CERT_PAIR SAVE_AS [upstream.py options]: the service stops (its
# records move to $T/up-SAVE_AS) and starts again on its port.
svc_next() {
	local cert=$1 save=$2
	shift 2
	stop_upstream svc
	mv "$T/up-svc" "$T/up-$save"
	start_upstream svc --port "$UP_PORT_svc" --tls "$cert" --auth shop:svc-pass "$@" || true
}

FROM=news@shop-verified.test submit svcexp expired@dest.test
deferred "service, expired certificate" svcexp 'certificate.*expired'
probe "service with an expired certificate"
stop_upstream svc
check "service, expired certificate: nothing sent in plain text, nothing accepted" svc_plain_check
svc_next "$WRONG" svc-expired
# After that failure the service route is down for up to retry_max (2 s):
# mail meanwhile is deferred without a connection. Wait it out, so that the
# next mail meets the new certificate.
sleep 2.5
FROM=news@shop-verified.test submit svcwrong wrongname@dest.test
deferred "service, wrong-name certificate" svcwrong 'certificate.*(host ?name|mismatch)'
probe "service with a wrong-name certificate"
stop_upstream svc
check "service, wrong-name certificate: nothing sent in plain text, nothing accepted" svc_plain_check
svc_next "$GOOD" svc-wrong
delivered "service, expired certificate" svcexp
delivered "service, wrong-name certificate" svcwrong
sleep 1
one_copy "service, expired certificate" svc expired@dest.test
one_copy "service, wrong-name certificate" svc wrongname@dest.test
check "service: the copies went over TLS with AUTH" upstream_check svc 'msgs and all(m["tls"] and m["auth_user"] == "shop" for m in msgs)'

# ---- 5. repeated 454 throttling ----------------------------------------

svc_next "$GOOD" svc-certs --throttle 3
FROM=news@shop-verified.test submit thr1 throttled1@dest.test
wait_event "$(qid thr1)" 10 deferred >/dev/null
# A second mail while the route is paused waits; it does not go to the service.
FROM=news@shop-verified.test submit thr2 throttled2@dest.test
probe "454 throttling"
delivered "454 three times" thr1 30
delivered "454: the mail queued during the pause" thr2 30
check "454: the log shows deferred (454), deferred again, then delivered" log_check "
e = [x['event'] + ' ' + x['response'][:3] for x in of('$(qid thr1)', 'deferred', 'delivered')]
print(e)
e[0] == 'deferred 454' and e[-1].startswith('delivered') and len(e) >= 3" "$(qid thr1)"
check "454: the mail submitted during the pause waited for it (not sent)" log_check "
e = of('$(qid thr2)', 'deferred', 'delivered')
e[0]['event'] == 'deferred' and 'paused' in e[0]['response']" "$(qid thr2)"
check "454: after a 454 the next attempt of the mail comes after the ${PAUSE} s pause" log_check "
ok = True
for q in ('$(qid thr1)', '$(qid thr2)'):
    a = [x for x in of(q, 'deferred', 'delivered') if 'paused' not in x['response']]
    for x, y in zip(a, a[1:]):
        if x['response'].startswith('454') and t(y['ts']) - t(x['ts']) < $PAUSE - 0.3:
            print('too early:', x['ts'], y['ts'])
            ok = False
ok"
check "454: next_retry is at least the pause away" log_check "
d = [x for x in ev if x['event'] == 'deferred' and x.get('to', '').startswith('throttled') and x['response'].startswith('454')]
d and all(t(x['next_retry']) - t(x['ts']) >= $PAUSE - 0.1 for x in d)"
sleep 1
one_copy "454 three times" svc throttled1@dest.test
one_copy "454: the mail queued during the pause" svc throttled2@dest.test

# ---- the whole run ------------------------------------------------------

check "every probe arrived exactly once" upstream_check sink "
r = [x for m in msgs for x in m['rcpt_tos'] if x.startswith('probe')]
print(sorted(r))
sorted(r) == sorted(set(r)) and len(r) == $NPROBE"
check "no transient fault bounced anything (only NXDOMAIN did)" log_check "
b = [x['to'] for x in ev if x['event'] in ('bounced', 'expired')]
print(b)
b == ['user@nosuch.test']"
check "every deferred line has a response and a next_retry" log_check "
d = [x for x in ev if x['event'] == 'deferred']
d and all(x.get('response') and x.get('next_retry') for x in d)"
check "the queue is empty at the end" test "$(queued_count)" -eq 0
echo "# run time: $((($(date +%s%N) - START_NS) / 1000000)) ms"
finish
