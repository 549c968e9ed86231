#!/bin/bash
# bench/dup_window.sh - the duplicate window: how long after the next hop's
# 250 for a mail a crash (kill -9, power loss) would still send it again.
#
#   bench/dup_window.sh [MAILS [SESSIONS]]               (default 3000 10)
#
# A mail is delivered at least once (issue 18: "the duplicate window as
# small as now"): it leaves the queue only after the peer's 250, and until
# its removal is durable a restart sends it again. This runs
# $BENCH_BUILD/hikyaku (default build/) under strace (every thread, one
# trace), relaying MAILS 1 KiB mails from smtp-source (SESSIONS at once)
# to smtp-sink, both on free loopback ports, with a spool in a temporary
# directory under /var/tmp; then bench/dup_window.py reads the trace and
# prints, over the mails, the time from the read of the peer's final 250
# to the end of the first fdatasync of the mail's segment that began after
# its D record was written (these mails are delivered at once, so all
# are in the segment log, relay/queue_wal.h), as p50/p90/p99/max, and the
# number of fdatasync calls.
#
# strace slows the daemon several times over, so the figures are for
# comparing two builds run in turn (BENCH_BUILD=... each), not absolute.
# Needs smtp-sink and smtp-source (Postfix; bench/run.sh installs them)
# and strace. BENCH_KEEP=1 keeps the directory (trace, log, spool).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-3000}
S=${2:-10}
BUILD=${BENCH_BUILD:-build}
case "$BUILD" in /*) HIKYAKU=$BUILD/hikyaku ;; *) HIKYAKU=$ROOT/$BUILD/hikyaku ;; esac
PY=/usr/bin/python3
[ -x "$HIKYAKU" ] || { echo "dup_window.sh: no $HIKYAKU (build it first)" >&2; exit 2; }
for tool in strace smtp-sink smtp-source; do
	command -v "$tool" >/dev/null || { echo "dup_window.sh: $tool is missing (bench/run.sh installs Postfix's tools)" >&2; exit 2; }
done
W=$(mktemp -d /var/tmp/hikyaku-dupwin.XXXXXX)
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port)
PORT=$(free_port)
SINK=
TRACER=
cleanup() {
	[ -n "$TRACER" ] && kill "$TRACER" 2>/dev/null || true
	pkill -f -- "-c $W/hikyaku.conf" 2>/dev/null || true
	[ -n "$SINK" ] && kill "$SINK" 2>/dev/null || true
	wait 2>/dev/null || true
	[ "${BENCH_KEEP:-}" = 1 ] && echo "dup_window.sh: kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
cat >"$W/hikyaku.conf" <<CONF
[server]
listen = 127.0.0.1:$PORT
hostname = relay.bench.example
max_connections_per_client = $((S + 10))

[routing]
verified_domains = shop.bench.example

[service]
host = 127.0.0.1
port = $SINK_PORT
tls = none
rate = 100000/s
max_connections = 10

[direct]
internal_destinations = any

[queue]
dir = $W/queue

[suppression]
db = $W/suppression.db

[log]
file = $W/hikyaku.jsonl

[control]
socket = $W/control.sock
CONF
smtp-sink -u nobody 127.0.0.1:"$SINK_PORT" 256 >"$W/sink.out" 2>&1 &
SINK=$!
strace -f -tt -s 400 -e trace=read,write,writev,pwritev,fdatasync \
	-o "$W/trace" "$HIKYAKU" -c "$W/hikyaku.conf" >"$W/hikyaku.err" 2>&1 &
TRACER=$!
for _ in $(seq 100); do
	$PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null && break
	sleep 0.1
done
smtp-source -s "$S" -m "$N" -l 1024 -f shop@shop.bench.example -t to@example.test 127.0.0.1:"$PORT"
# Until every mail is delivered, or 60 s without progress.
last=-1 still=0
while :; do
	n=$(grep -c '"event":"delivered"' "$W/hikyaku.jsonl" 2>/dev/null || true)
	[ "$n" -ge "$N" ] && break
	if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0; last=$n; fi
	[ $still -ge 600 ] && { echo "dup_window.sh: only $n of $N delivered" >&2; break; }
	sleep 0.1
done
sleep 0.5
pkill -f -- "-c $W/hikyaku.conf" 2>/dev/null || true
wait "$TRACER" 2>/dev/null || true
TRACER=
echo "build $HIKYAKU, $N mails, $S sessions: $($PY "$ROOT/bench/dup_window.py" "$W/trace")"
