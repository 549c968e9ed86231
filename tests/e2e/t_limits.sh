#!/bin/bash
# Resource limits under abuse (SPEC §5): a cap on the bytes queued
# ([queue] max_size) answered with 452 4.3.1 (at MAIL FROM when SIZE= says
# the mail will not fit, else at the end of DATA); a
# client dripping a command one byte at a time is cut off by idle_timeout
# as if it sent nothing, while other clients are served.
. "$(dirname "$0")/lib.sh"

ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }

# Nothing leaves (DNS is dead): every mail stays queued.
write_config "idle_timeout = 2s" "
[queue]
max_size = 5K"
start_hikyaku || { finish; exit 1; }

head -c 1500 /dev/zero | tr '\0' 'x' | fold -w 75 >"$T/body"
ids=()
for i in 1 2 3 4; do
	smtp --body "@$T/body" >"$T/m$i.out" 2>&1
	id=$(sed -n 's/.*queued as \([0-9A-F]\{18\}\).*/\1/p' "$T/m$i.out" | head -n 1)
	[ -n "$id" ] && ids+=("$id")
done
check "mails are taken while the queue is under max_size" test "${#ids[@]}" -ge 2
expect "the mail that would pass max_size gets 452 4.3.1" "$T/m3.out" '<\*\* +452 4\.3\.1 '
Q=$(queued_count)
check "the queue holds only what fits (${#ids[@]} mails)" test "$Q" -eq "${#ids[@]}"
# With SIZE= the client learns it before sending the data.
session "SIZE= larger than the room left gets 452 4.3.1 at MAIL FROM" '<220' '>EHLO client.example\r\n' '<250' \
	'>MAIL FROM:<shop@example.jp> SIZE=2000\r\n' '<452 4.3.1' \
	'>MAIL FROM:<shop@example.jp> SIZE=100\r\n' '<250' '>QUIT\r\n' '<221'

ctl queue delete "${ids[0]}" >/dev/null 2>&1
smtp --body "@$T/body" >"$T/m5.out" 2>&1
expect "after a mail leaves the queue, there is room again" "$T/m5.out" 'queued as'
expect "the refusal is logged" "$T/log.jsonl" '"event":"rejected".*452 4\.3\.1'

# A slow drip: "EHLO" one byte every 0.4 s never completes a line within
# idle_timeout (2 s), so the daemon says 421 and closes, although bytes
# keep coming.
$PY - "$PORT" >"$T/drip.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(15)
t0 = time.time()
greeting = s.recv(1000)
line = b"EHLO drip.client.example.and.some.more.bytes\r\n"
reply = b""
try:
    for b in line:
        s.send(bytes([b]))
        time.sleep(0.4)
        s.setblocking(False)
        try:
            reply += s.recv(1000)
        except BlockingIOError:
            pass
        s.setblocking(True)
        if reply:
            break
    s.settimeout(10)
    while b"\n" not in reply:
        d = s.recv(1000)
        if not d:
            break
        reply += d
except (BrokenPipeError, ConnectionResetError):
    pass
print("REPLY", reply.decode(errors="replace").strip())
print("AFTER %.1f" % (time.time() - t0))
EOF
DRIP=$!
sleep 0.5
smtp >"$T/during.out" 2>&1
expect "another client is served while one drips" "$T/during.out" 'queued as'
wait "$DRIP"
expect "the dripping client gets 421 4.4.2 (timeout)" "$T/drip.out" '^REPLY 421 4\.4\.2 '
AFTER=$(sed -n 's/^AFTER //p' "$T/drip.out")
check "within idle_timeout and a little, not after the whole line ($AFTER s)" \
	$PY -c 'import sys; sys.exit(0 if 1.5 <= float(sys.argv[1]) <= 6 else 1)' "${AFTER:-99}"

# A slow but steady client that completes each line in time is not cut off.
$PY - "$PORT" >"$T/steady.out" 2>&1 <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
f.readline()
for cmd in [b"EHLO steady.example", b"NOOP", b"NOOP", b"NOOP", b"QUIT"]:
    time.sleep(1.2)
    s.sendall(cmd + b"\r\n")
    while True:
        l = f.readline()
        print(l.decode().strip())
        if l[3:4] != b"-":
            break
EOF
expect "commands 1.2 s apart keep the session (idle_timeout 2 s)" "$T/steady.out" '^221 '
expect_not "and it is never timed out" "$T/steady.out" '^421'
# SPEC §3 outside_connections: clients outside allow_networks (they may
# only write to the bounce address) hold at most that many connections
# together; beyond it they get 421 4.3.2, while the shop's own clients are
# still served.
stop_hikyaku
write_config "allow_networks = 127.0.0.1/32
outside_connections = 3"
start_hikyaku || { finish; exit 1; }
rm -f "$T/hold.stop" "$T/hold.ready"
$PY - "$PORT" "$T" >"$T/outside.out" 2>&1 <<'EOF' &
import os, socket, sys, time
port, t = int(sys.argv[1]), sys.argv[2]
socks = []
def first_line(src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        line += d
    return s, line.decode().strip()
for i in range(2, 6):
    s, l = first_line("127.0.0.%d" % i)
    socks.append(s)
    print("outside 127.0.0.%d %s" % (i, l), flush=True)
open(os.path.join(t, "hold.ready"), "w").close()
while not os.path.exists(os.path.join(t, "hold.stop")):
    time.sleep(0.1)
socks[0].close()
time.sleep(0.5)
s, l = first_line("127.0.0.9")
print("after one left: 127.0.0.9 %s" % l, flush=True)
EOF
HOLD=$!
for _ in $(seq 1 100); do [ -e "$T/hold.ready" ] && break; sleep 0.1; done
expect "outside_connections = 3: three outside clients are greeted" "$T/outside.out" '^outside 127\.0\.0\.4 220 '
expect "outside_connections = 3: the fourth outside client gets 421 4.3.2" "$T/outside.out" '^outside 127\.0\.0\.5 421 4\.3\.2 '
smtp >"$T/inside.out" 2>&1
expect "outside_connections full: an allowed client still sends its mail" "$T/inside.out" 'queued as'
touch "$T/hold.stop"
wait "$HOLD"
expect "outside_connections: once one outside client left, another gets in" "$T/outside.out" '^after one left: 127\.0\.0\.9 220 '
finish
