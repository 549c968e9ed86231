#!/bin/bash
# Measures hikyaku end to end on this machine: N mails of ~1 KiB from 20
# concurrent clients (new connection per mail) through hikyaku to an
# upstream SMTP server on loopback, per route. Prints the accept rate
# (submission, 250 after fsync) and the relay rate (until the upstream has
# them all), and hikyaku's peak RSS.
#   bench/relay_throughput.sh [MESSAGES]    (uses build/, the release build)
set -u
cd "$(dirname "$0")/.."
export E2E_BUILD=build
N=${1:-3000}
. tests/e2e/lib.sh
. tests/e2e/lib_upstream.sh
DEFAULT_DIRECT=""
mkdir -p "$T/certs"
tests/e2e/mkcerts.sh "$T/certs" smtp.service.test
start_upstream svc --tls "$T/certs/server.pem,$T/certs/server.key" --auth shop:pw >/dev/null
start_upstream mx --addr 127.0.0.2 >/dev/null
start_dns --host-record=smtp.service.test,127.0.0.1 --mx-host=dest.test,mx.dest.test,10 \
	--host-record=mx.dest.test,127.0.0.2 >/dev/null
echo pw >"$T/pw"
write_config "max_connections_per_client = 1000" "
[routing]
verified_domains = shop.example.jp
[service]
host = smtp.service.test
port = $UP_PORT_svc
ca_file = $T/certs/ca.pem
username = shop
password_file = $T/pw
rate = 100000/s
max_connections = 10
[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
max_connections_per_domain = 10"
start_hikyaku >/dev/null
for route in direct service; do
	up=mx
	from=bench@other.example
	[ "$route" = service ] && { up=svc; from=bench@shop.example.jp; }
	before=$(upstream_count $up)
	t0=$(date +%s.%N)
	$PY bench/smtp_load.py 127.0.0.1 "$PORT" --clients 20 --messages "$N" --from "$from" --to-domain dest.test
	wait_upstream_count $up $((before + N)) 600 >/dev/null
	t1=$(date +%s.%N)
	$PY -c 'import sys; n, a, b, r = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("route %s: %d mails relayed end to end in %.2f s: %.0f mails/s" % (r, n, b - a, n / (b - a)))' "$N" "$t0" "$t1" "$route"
done
echo "hikyaku peak RSS: $(grep VmHWM /proc/$HPID/status | awk '{print $2, $3}')"
stop_hikyaku
cleanup_upstreams
rm -rf "$T"
