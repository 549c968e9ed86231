#!/bin/bash
# The cost of a /metrics scrape with a large queue (issue 15): fills the
# queue with N mails for a delivery service that is down (deferred, they
# stay), then times scrapes and measures SMTP latency (bench/smtp_latency)
# with and without scrapes running in a tight loop, to see whether a
# scrape stalls the event loop.
#
# usage: bench/metrics_scrape.sh [BUILD_DIR] [N]     (defaults: build 100000)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
N=${2:-100000}
W=$(mktemp -d /var/tmp/hikyaku-scrape.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); M=$(port); DEAD=$(port)
cat >"$W/hikyaku.conf" <<CONF
[server]
listen = 127.0.0.1:$P
hostname = relay.bench.test
max_connections_per_client = 1000
[routing]
verified_domains = bench.test
[service]
host = 127.0.0.1
port = $DEAD
tls = none
[queue]
dir = $W/queue
retry_min = 1h
retry_max = 1h
[suppression]
db = $W/suppression.db
[log]
file = $W/log.jsonl
[control]
socket = $W/control.sock
[metrics]
listen = 127.0.0.1:$M
CONF
"$ROOT/$BUILD/hikyaku" -c "$W/hikyaku.conf" >"$W/hikyaku.out" 2>&1 &
HPID=$!
trap 'kill $HPID 2>/dev/null; wait $HPID 2>/dev/null; rm -rf "$W"' EXIT
sleep 1
gcc -O2 -Wall -o "$W/smtp_latency" "$ROOT/bench/smtp_latency.c"
t0=$(date +%s.%N)
smtp-source -s 20 -m "$N" -l 1024 -N -M source.bench.test -f shop@bench.test -t user@dest.test \
	"127.0.0.1:$P" || echo "smtp-source failed"
t1=$(date +%s.%N)
echo "filled: $N mails in $(echo "$t1 - $t0" | bc) s"
# Wait for every first attempt (deferred: the service is down).
for _ in $(seq 1 600); do
	d=$(grep -c '"event":"deferred"' "$W/log.jsonl")
	[ "$d" -ge "$N" ] && break
	sleep 1
done
echo "deferred once: $d"
scrape() { curl -s -o "$W/m.txt" -w '%{time_total}\n' "http://127.0.0.1:$M/metrics"; }
scrape >/dev/null
grep -E '^hikyaku_queue_(messages|recipients)\{|^hikyaku_queue_bytes|^hikyaku_recipients_total\{route="service",outcome="deferred"' "$W/m.txt"
echo "scrape size: $(wc -c <"$W/m.txt") bytes"
for _ in $(seq 1 20); do scrape; done | sort -n | awk '{a[NR]=$1} END {printf "scrape time over 20: min %.1f ms, median %.1f ms, max %.1f ms\n", a[1]*1000, a[int((NR+1)/2)]*1000, a[NR]*1000}'
lat() { "$W/smtp_latency" -r 50 -d 10 -l 1024 -f shop@example.jp -t dest.test 127.0.0.1 "$P"; }
echo "SMTP latency without scrapes: $(lat)"
# Scrapes from one process (no fork per scrape): RATE a second.
scraper() {
	exec python3 - "$M" "$1" <<'EOF'
import socket, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
while True:
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
    time.sleep(max(0, 1 / rate - (time.monotonic() - t)))
EOF
}
for rate in 1 20; do
	scraper $rate &
	LOOP=$!
	echo "SMTP latency with $rate scrapes a second: $(lat)"
	kill $LOOP
	wait $LOOP 2>/dev/null
done
