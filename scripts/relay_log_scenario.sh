#!/bin/bash
# One scripted run of the relay, for scripts/relay_log_diff.sh: the same
# mails, one after another, against real peers on loopback (the delivery
# service with STARTTLS and AUTH, MX hosts, dnsmasq), then the relay log,
# normalised, on standard output.
#
#   HIKYAKU_BIN=/path/to/hikyaku scripts/relay_log_scenario.sh >log.txt
#
# It uses only configuration keys and behaviour that every build since the
# first release has, so that two builds can be compared. Each step waits for
# its outcome before the next starts, so the log's order is the steps'.
# Normalised (and sorted): times, durations, queue ids (numbered in order of first
# appearance), tags, ports, message ids and the peers' reply texts' ids are
# replaced; everything else is compared as written.
set -u
export E2E_BUILD=${E2E_BUILD:-build}
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lib_upstream.sh"
HIKYAKU=${HIKYAKU_BIN:?HIKYAKU_BIN: the hikyaku binary to run}
DEFAULT_DIRECT=""

mkdir -p "$T/certs"
"$ROOT/tests/e2e/mkcerts.sh" "$T/certs" smtp.service.test >/dev/null 2>&1
echo 'right-pass' >"$T/svc.pass"
{
	start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:right-pass \
		--reject-rcpt 'gone@dest.test=550 5.1.1 <gone@dest.test>: Recipient address rejected' &&
		start_upstream mx --addr 127.0.0.2 --reject-rcpt 'bad@dest.test=550 5.1.1 User unknown' \
			--reject-rcpt 'full@dest.test=552 5.2.2 Mailbox full' &&
		start_upstream sender --addr 127.0.0.3 --port "$UP_PORT_mx" &&
		start_upstream flaky --addr 127.0.0.4 --port "$UP_PORT_mx" --fail-first '1=451 4.3.0 Try again later' &&
		start_dns --host-record=smtp.service.test,127.0.0.1 \
			--mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
			--mx-host=sender.test,mx.sender.test,10 --host-record=mx.sender.test,127.0.0.3 \
			--mx-host=flaky.test,mx.flaky.test,10 --host-record=mx.flaky.test,127.0.0.4
} >/dev/null || { echo "relay_log_scenario: the peers did not start" >&2; exit 2; }

write_config "" "
[routing]
verified_domains = shop.test

[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/svc.pass
connect_timeout = 3s
timeout = 10s

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = may
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 1s
retry_max = 2s
lifetime = 1h"
# Builds older than [direct] internal_destinations allowed loopback peers.
"$HIKYAKU" -c "$T/hikyaku.conf" --check 2>&1 | grep -q 'unknown key "internal_destinations"' &&
	sed -i '/^internal_destinations/d' "$T/hikyaku.conf"
start_hikyaku >/dev/null || { cat "$T/hikyaku.out" >&2; exit 2; }

events() { grep -c "\"event\":\"$1\"" "$T/log.jsonl" 2>/dev/null || true; }
# step N EVENT COUNT SWAKS_ARGS...: send, then wait until the log has COUNT
# events EVENT in all.
step() {
	local event=$1 count=$2
	shift 2
	swaks --server 127.0.0.1 --port "$PORT" --helo client.test --timeout 20 "$@" >"$T/send.out" 2>&1
	for _ in $(seq 1 200); do
		[ "$(events "$event")" -ge "$count" ] && { sleep 0.3; return 0; }
		sleep 0.1
	done
	echo "relay_log_scenario: no $count x $event after: $*" >&2
}

step delivered 1 --from a@shop.test --to one@dest.test                   # the service
step delivered 2 --from a@other.test --to two@dest.test                  # direct
step bounced 1 --from a@sender.test --to bad@dest.test                   # 550 5.1.1 direct, DSN to sender.test
step bounced 2 --from a@sender.test --to full@dest.test                  # 552 5.2.2: bounced, not learned
step learned 1 --from a@shop.test --to gone@dest.test                    # 5.1.1 at the service: learned
step suppressed 1 --from a@shop.test --to gone@dest.test                 # now suppressed
step delivered 5 --from a@other.test --to x@flaky.test                   # 451 once, then delivered (+ DSNs before)
step delivered 7 --from a@shop.test --to m1@dest.test,m2@dest.test --header 'From: <a@other.test>'
step rejected 1 --from a@shop.test --to 'bad address@dest.test' --quit-after RCPT
step delivered 8 --from '<>' --to null@dest.test                         # null sender
sleep 1
stop_hikyaku

# Normalise: volatile values out, queue ids and tags numbered; sorted, since
# what runs on the thread pool (learning, a notice's queueing) may log in
# either order.
$PY - "$T/log.jsonl" <<'PYEOF'
import json, re, sys
ids = {}
def qid(m):
    return ids.setdefault(m.group(0), "Q%d" % (len(ids) + 1))
VOLATILE = {"ts", "time", "duration_ms", "delay_ms", "delay", "elapsed_ms", "pid", "port",
            "size", "message_id", "session", "next_retry"}
def norm(v):
    if isinstance(v, dict):
        return {k: ("*" if k in VOLATILE else norm(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        v = re.sub(r"\b[0-9A-F]{18}\b", qid, v)
        v = re.sub(r"(Q\d+)-[0-9A-Za-z]+", r"\1-TAG", v)
        v = re.sub(r"\]:\d+", "]:PORT", v)
        v = re.sub(r"<[^<>@\s]+@relay\.test\.example>", "<MSGID@relay.test.example>", v)
        v = re.sub(r"\b\d{4}-\d\d-\d\dT[0-9:.]+Z\b", "TIME", v)
    return v
out = [json.dumps(norm(json.loads(line)), sort_keys=True, ensure_ascii=False) for line in open(sys.argv[1])]
print("\n".join(sorted(out)))
PYEOF
