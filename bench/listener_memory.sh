#!/bin/bash
# bench/listener_memory.sh - the listener's memory while many clients send
# large mails at once (SPEC §5: a session holds at most a bounded part of a
# message in memory, whatever max_message_size is; issue 11).
#
#   bench/listener_memory.sh [SESSIONS [MEGABYTES]]      (default 200 20)
#
# Starts $BENCH_BUILD/hikyaku (default build/) on a free loopback port with
# a spool in a temporary directory under /var/tmp and no way out (DNS
# dead: every mail stays queued), opens SESSIONS connections, takes each
# to the 354 of DATA, then lets all of them send a MEGABYTES mail at the
# same moment. Prints the daemon's resident memory before; its peak
# (VmHWM, the kernel's high-water mark) once every session has sent its
# whole message but the final dot (the listener's part: what the sessions
# hold while receiving); then, after the dots, the peak of the whole run
# (VmHWM and the largest VmRSS sampled every 50 ms: this includes the
# commits and whatever the runner does with the new mails), how many
# mails were answered 250, and the time taken. A figure for docs/performance.md, not a pass/fail test:
# the spool needs SESSIONS x MEGABYTES x 2 of free space while it runs
# (spilled data, then the queued mails); it is removed afterwards
# (BENCH_KEEP=1 keeps it).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-200}
MB=${2:-20}
BUILD=${BENCH_BUILD:-build}
HIKYAKU=$ROOT/$BUILD/hikyaku
PY=/usr/bin/python3
[ -x "$HIKYAKU" ] || { echo "listener_memory.sh: no $HIKYAKU (build it first)" >&2; exit 2; }
W=$(mktemp -d /var/tmp/hikyaku-membench.XXXXXX)
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/hikyaku.conf" <<CONF
[server]
listen = 127.0.0.1:$PORT
hostname = relay.bench.example
max_connections_per_client = $((N + 10))
max_message_size = $((MB + 5))M
idle_timeout = 10m

[queue]
dir = $W/queue

[suppression]
db = $W/suppression.db

[log]
file = $W/log.jsonl

[control]
socket = $W/control.sock

[direct]
dns_servers = 127.0.0.1:9
CONF
"$HIKYAKU" -c "$W/hikyaku.conf" >"$W/hikyaku.out" 2>&1 &
HPID=$!
cleanup() {
	kill -TERM "$HPID" 2>/dev/null || true
	wait "$HPID" 2>/dev/null || true
	[ -n "${BENCH_KEEP:-}" ] && echo "# kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	$PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null && break
	sleep 0.1
done
sleep 0.3
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$HPID/status"; }
RSS0=$(kb VmRSS)
# Sample VmRSS every 50 ms while the clients run.
(
	max=0
	while [ ! -e "$W/done" ]; do
		r=$(kb VmRSS 2>/dev/null || echo 0)
		[ "${r:-0}" -gt "$max" ] && max=$r
		echo "$max" >"$W/rss.max"
		sleep 0.05
	done
) &
SAMPLER=$!
T0=$(date +%s.%N)
$PY - "$PORT" "$N" "$MB" "$HPID" >"$W/clients.out" 2>&1 <<'EOF'
import asyncio, sys, time
port, n, mb, hpid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = b"0123456789" * 7 + b"abcd\r\n"          # 76 octets, CRLF
body = line * (mb * 1024 * 1024 // len(line))
msg = b"From: <shop@example.jp>\r\nSubject: large\r\n\r\n" + body
ready = 0
sent = 0
go = asyncio.Event()
dots = asyncio.Event()

def proc(path, key):
    for l in open("/proc/%d/%s" % (hpid, path)):
        if l.startswith(key):
            return int(l.split()[1])

async def received_all(start):
    # Every body byte read by the daemon (its read() count), or 120 s.
    want = start + n * len(msg) * 99 // 100
    for _ in range(2400):
        if proc("io", "rchar:") >= want:
            break
        await asyncio.sleep(0.05)

async def reply(r):
    while True:
        l = await r.readline()
        if not l or l[3:4] != b"-":
            return l

async def one(i):
    global ready
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await reply(r)
    for c in (b"EHLO bench.example\r\n", b"MAIL FROM:<shop@example.jp>\r\n",
              b"RCPT TO:<user%d@example.com>\r\n" % i, b"DATA\r\n"):
        w.write(c)
        l = await reply(r)
    assert l.startswith(b"354"), l
    ready += 1
    if ready == n:
        go.set()
    await go.wait()
    global sent
    for off in range(0, len(msg), 1 << 20):
        w.write(msg[off:off + (1 << 20)])
        await w.drain()
    sent += 1
    await dots.wait()
    w.write(b".\r\n")
    l = await reply(r)
    w.write(b"QUIT\r\n")
    await w.drain()
    w.close()
    return l

async def phases():
    await go.wait()
    t0 = time.time()
    start = proc("io", "rchar:")
    while sent < n:
        await asyncio.sleep(0.05)
    await received_all(start)
    await asyncio.sleep(0.5)
    print("receipt: %d sessions each holding %d MB of an unfinished mail after %.1f s: "
          "VmHWM %d kB, VmRSS %d kB" % (n, mb, time.time() - t0, proc("status", "VmHWM:"),
                                        proc("status", "VmRSS:")), flush=True)
    dots.set()

async def main():
    ph = asyncio.ensure_future(phases())
    res = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    await ph
    ok = sum(1 for x in res if isinstance(x, bytes) and x.startswith(b"250 "))
    bad = [x for x in res if not (isinstance(x, bytes) and x.startswith(b"250 "))]
    print("answered 250: %d of %d" % (ok, n))
    for x in bad[:3]:
        print("other: %r" % (x,))

asyncio.run(main())
EOF
T1=$(date +%s.%N)
touch "$W/done"
wait "$SAMPLER" 2>/dev/null || true
HWM=$(kb VmHWM)
RSSMAX=$(cat "$W/rss.max" 2>/dev/null || echo "?")
cat "$W/clients.out"
QUEUED=$(find "$W/queue/mail" -maxdepth 1 -type f -name '[0-9A-F]*' | wc -l)
printf 'sessions %d x %d MB at once: hikyaku VmRSS before %d kB, peak VmHWM %d kB (%d MB), largest VmRSS sampled %s kB; %d mails queued; %.1f s\n' \
	"$N" "$MB" "$RSS0" "$HWM" "$((HWM / 1024))" "$RSSMAX" "$QUEUED" "$(echo "$T1 - $T0" | bc)"
