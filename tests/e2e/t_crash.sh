#!/bin/bash
# kill -9 at random moments under load (SPEC §5: "a mail answered 250
# survives kill -9"): 1,000 mails submitted by 20 clients at once to a
# relay that is killed and restarted several times while it accepts and
# delivers, to a real MX (aiosmtpd) found through dnsmasq. The clients
# resubmit what got no 250, as a shop application does. In the end every
# mail answered 250 has been delivered; duplicates (a delivery done just
# before a kill, not yet recorded) are counted and printed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

N=${CRASH_MAILS:-2000}
KILLS=${CRASH_KILLS:-4}
start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_dns --mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 || { finish; exit 1; }
write_config "max_connections_per_client = 200" "
[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 1s
retry_max = 2s"
start_hikyaku || { finish; exit 1; }

$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" "$N" 20 crash "$T/crash.res" --retry \
	>"$T/load.out" 2>&1 &
LPID=$!

# Kill at random moments while the load runs; restart at once (the port
# is free again as soon as the process is gone). The moments are early and
# close together, so that a fast machine still sees several kills.
kills=0
for _ in $(seq 1 "$KILLS"); do
	sleep "$($PY -c 'import random; print(round(random.uniform(0.05, 0.4), 2))')"
	kill -0 "$LPID" 2>/dev/null || break
	kill -9 "$HPID"
	wait "$HPID" 2>/dev/null
	HPID=""
	kills=$((kills + 1))
	start_hikyaku || break
done
wait "$LPID"
echo "# $(cat "$T/load.out"), $kills kills"
check "the relay was killed at least twice under load ($kills)" test "$kills" -ge 2
ANSWERED=$(grep -c ' OK ' "$T/crash.res")
check "every mail was answered 250 in the end ($ANSWERED of $N)" test "$ANSWERED" -eq "$N"

# Let the queue drain: everything answered 250 goes out.
for _ in $(seq 1 300); do
	[ "$(queued_count)" -eq 0 ] && break
	sleep 0.2
done
check "the queue drains" test "$(queued_count)" -eq 0

upstream_eval mx '
import re, collections
tags = collections.Counter()
for m in msgs:
    t = re.search(r"^X-Load-Tag: (\S+)", data(m), re.M)
    if t:
        tags[t.group(1)] += 1
[ "%s %d" % (k, v) for k, v in sorted(tags.items()) ]' >"$T/delivered.txt"
$PY - "$T/crash.res" "$T/delivered.txt" >"$T/count.txt" <<'EOF'
import sys
answered = {l.split()[0] for l in open(sys.argv[1]) if " OK " in l}
got = {}
for l in open(sys.argv[2]):
    k, v = l.split()
    got[k] = int(v)
lost = sorted(answered - set(got))
dups = sum(v - 1 for v in got.values() if v > 1)
extra = sorted(set(got) - answered)
print("answered %d delivered %d lost %d duplicated %d unanswered-but-delivered %d"
      % (len(answered), len(got), len(lost), dups, len(extra)))
print("LOST", " ".join(lost[:20]))
EOF
echo "# $(head -n 1 "$T/count.txt")"
expect "no mail answered 250 is lost" "$T/count.txt" ' lost 0 '
finish
