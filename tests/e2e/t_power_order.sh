#!/bin/bash
# Power-loss ordering: what a 250 promises must already be on disk, in an
# order that a power cut at any moment cannot undo. The relay runs under
# strace (every thread, one trace file); tests/e2e/power_order.py reads the
# trace and checks, for mails answered 250 (the ids as the clients saw them):
#   1. a mail held in memory: its M record was written to a segment
#      (pwritev), then an fdatasync of that segment began and returned 0,
#      all before the "250 ... queued as ID" bytes went to the client;
#   2. a spilled mail (> 256 KiB): tmp/ID fdatasync'd, renamed into mail/,
#      mail/ fsynced, then the 250;
#   3. a deferred mail (451 at the end of DATA, or a peer that is down):
#      moved out (mail/ID renamed in and mail/ fsynced) before its state
#      file is renamed into state/ and before its D record is written (a
#      mail deferred without an attempt, its destination suspended, stays
#      in its segment untouched);
#   4. no removal before delivery: a D record or an unlink of mail/ID only
#      after the peer's 250 for that mail was read (or, for a D record,
#      after the mail's move out, 3).
# Each check is shown able to fail, on every run: the parser is run again
# on scratch copies of the trace with one step deleted (the fdatasync
# calls) or moved out of order (M records after the 250s, the spilled
# mail's rename last, the state renames first, D records before the
# peers' 250s), and must then report that check as failed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

if ! strace -f -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=1000 true 2>"$T/strace.err"; then
	nok "strace can trace a process here (see scripts/install-deps.sh)" "$T/strace.err"
	finish
	exit 1
fi

start_upstream mx --addr 127.0.0.2 || { finish; exit 1; }
start_upstream later --addr 127.0.0.3 --port "$UP_PORT_mx" --data-reply '451 4.3.0 Try again later' ||
	{ finish; exit 1; }
# down.test is 127.0.0.4, where nothing listens: connection refused.
start_dns --mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	--mx-host=later.test,mx.later.test,10 --host-record=mx.later.test,127.0.0.3 \
	--mx-host=down.test,mx.down.test,10 --host-record=mx.down.test,127.0.0.4 || { finish; exit 1; }
write_config "max_connections_per_client = 50" "
[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 30s
retry_max = 60s"

# The relay under strace, all threads in one file (its line order is the
# order the parser relies on). -s 256: a pwritev shows up to 256 iovecs, a
# record's 52-byte header is one, a mail from memory 4 in all. The disk is
# made slow (each fdatasync returns 20 ms late) so that commits queue up
# behind the 4 batches in flight. LeakSanitizer stops the world with ptrace
# at exit, which fails under a tracer: leaks are left to the other tests.
TRACE_SET=openat,close,socket,connect,accept,accept4,dup,dup2,dup3
TRACE_SET=$TRACE_SET,read,recvfrom,write,writev,sendmsg,sendto,pwritev,pwrite64,copy_file_range
TRACE_SET=$TRACE_SET,fdatasync,fsync,rename,renameat2,unlink,unlinkat
ASAN_OPTIONS="detect_leaks=0:log_path=$T/asan" strace -f -tt -s 256 -e trace="$TRACE_SET" \
	-e inject=fdatasync:delay_exit=20000 \
	-o "$T/trace" "$HIKYAKU" -c "$T/hikyaku.conf" >>"$T/hikyaku.out" 2>&1 &
SPID=$!
HPID=""
for _ in $(seq 1 50); do
	HPID=$(pgrep -P "$SPID") && break # the relay itself (lib.sh's EXIT trap kills it)
	sleep 0.1
done
wait_port "$PORT" || { nok "hikyaku starts under strace" "$T/hikyaku.out"; finish; exit 1; }
sleep 0.2

# At once: 20 mails to dest.test over 5 sessions, 6 to later.test (451 at
# the end of DATA), 4 to down.test and one large mail; then 12 sessions to
# dest.test that end their DATA together: more commits than the 4 batches
# in flight (relay/queue.c), so that a batch holds several records.
LOAD="$PY $ROOT/tests/e2e/load_gen.py send 127.0.0.1 $PORT"
$LOAD 20 5 ok "$T/ok.res" >"$T/ok.out" 2>&1 &
P1=$!
$LOAD 6 3 later "$T/later.res" --rcpt 'user{i}@later.test' >"$T/later.out" 2>&1 &
P2=$!
$LOAD 4 2 down "$T/down.res" --rcpt 'user{i}@down.test' >"$T/down.out" 2>&1 &
P3=$!
head -c 400000 /dev/zero | tr '\0' 'b' | fold -w 76 >"$T/big.body"
smtp --to big@dest.test --body "@$T/big.body" >"$T/big.out" 2>&1
wait $P1 $P2 $P3
$PY - "$PORT" 12 >"$T/burst.res" 2>"$T/burst.err" <<'EOF'
import socket, sys
conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), 20) for _ in range(int(sys.argv[2]))]
def reply(c):
    buf = b""
    while not buf.endswith(b"\r\n") or buf.split(b"\r\n")[-2][3:4] == b"-":
        buf += c.recv(4096) or sys.exit("closed")
    return buf.split(b"\r\n")[-2].decode()
for i, c in enumerate(conns):
    reply(c)
    for cmd in ("EHLO burst.test", "MAIL FROM:<shop@example.jp>", "RCPT TO:<b%d@dest.test>" % i, "DATA"):
        c.sendall(cmd.encode() + b"\r\n")
        reply(c)
    c.sendall(b"Subject: burst %d\r\n\r\n" % i + b"y" * 500 + b"\r\n")
for c in conns:
    c.sendall(b".\r\n")
for i, c in enumerate(conns):
    r = reply(c)
    print("burst-%d %s %s" % (i, "OK" if r.startswith("250 ") else "FAIL", r.split()[-1]))
EOF

{
	awk '$2 == "OK" { print "small", $3 }' "$T/ok.res" "$T/burst.res"
	awk '$2 == "OK" { print "later", $3 }' "$T/later.res"
	awk '$2 == "OK" { print "down", $3 }' "$T/down.res"
	grep -oE 'queued as [0-9A-F]{18}' "$T/big.out" | awk '{ print "big", $3 }'
} >"$T/ids"
check "all 43 mails were answered 250 ($(wc -l <"$T/ids"))" test "$(wc -l <"$T/ids")" -eq 43

# Until the 33 are delivered and removed, the 6 to later.test have a state
# file, and each of the 4 to down.test has one or was deferred without an
# attempt (the destination was suspended: such a mail stays in its segment).
waiting() {
	local i
	[ "$(upstream_count mx)" -eq 33 ] && [ "$(queued_count)" -eq 10 ] || return 0
	for i in $(awk '$1 == "later" { print $2 }' "$T/ids"); do
		[ -e "$T/queue/state/$i" ] || return 0
	done
	for i in $(awk '$1 == "down" { print $2 }' "$T/ids"); do
		[ -e "$T/queue/state/$i" ] ||
			[ "$(log_count deferred "e['queue_id'] == '$i' and e['attempt'] == 0")" -gt 0 ] || return 0
	done
	return 1
}
for _ in $(seq 1 300); do
	waiting || break
	sleep 0.1
done
check "33 delivered, 10 deferred" not waiting

kill -TERM "$HPID"
rc=0
wait "$SPID" || rc=$?
HPID=""
check "hikyaku exits 0 on SIGTERM under strace (got $rc)" test "$rc" -eq 0

ORDER="$PY $ROOT/tests/e2e/power_order.py"
$ORDER "$T/trace" "$T/queue" "$T/ids" >"$T/order.out" 2>&1
sed 's/^/# /' "$T/order.out"
expect "1. each M record is fdatasync'd before its 250" "$T/order.out" '^ok 1: '
expect "2. a spilled mail is synced, renamed and mail/ synced before its 250" "$T/order.out" '^ok 2: '
expect "3. a deferred mail's file is durable before its state and its D record" "$T/order.out" '^ok 3: '
expect "4. no removal before the peer's 250" "$T/order.out" '^ok 4: '

# Each check can fail: the parser is run on scratch copies of the trace in
# which one step is taken out or put in the wrong place, and must report
# that check failed. move WHERE REGEX prints the trace with the calls whose
# line matches REGEX (each with its "<... resumed>" line) moved to the
# start (first), the end (last) or just after the last other line matching
# REGEX2 (after:REGEX2; moves far from where the fds were open would only
# hide the calls from the parser, not reorder them).
move() {
	$PY - "$T/trace" "$1" "$2" <<'EOF'
import re, sys
moved, keep, split = [], [], set()
for l in open(sys.argv[1]):
    tid = l.split(" ", 1)[0]
    if tid in split and "<... " in l:  # the rest of a moved call
        split.discard(tid)
        moved.append(l)
    elif re.search(sys.argv[3], l):
        moved.append(l)
        if l.rstrip().endswith("<unfinished ...>"):
            split.add(tid)
    else:
        keep.append(l)
where = sys.argv[2]
if where.startswith("after:"):
    at = max(k + 1 for k, l in enumerate(keep) if re.search(where[6:], l))
    keep[at:at] = moved
else:
    keep = moved + keep if where == "first" else keep + moved
sys.stdout.writelines(keep)
EOF
}
# mutant N WHAT COMMAND...: on the trace as COMMAND prints it, check N fails.
MUTANTS=0
mutant() {
	local n=$1 what=$2
	shift 2
	MUTANTS=$((MUTANTS + 1))
	"$@" >"$T/trace.mutant"
	$ORDER "$T/trace.mutant" "$T/queue" "$T/ids" >"$T/order.m$MUTANTS" 2>&1
	expect "$what: check $n fails" "$T/order.m$MUTANTS" "^FAIL $n: "
}
BIG=$(awk '$1 == "big" { print $2 }' "$T/ids")
mutant 1 "the fdatasync calls deleted" grep -v 'fdatasync(' "$T/trace"
mutant 1 "the M records written after the last 250 to a client" \
	move 'after:write\([0-9]+, "250 2\.0\.0 Ok: queued as' 'pwritev\(.*"HKW1 M'
mutant 2 "the spilled mail renamed into mail/ last" move last "renameat2\(.*/tmp/$BIG\""
mutant 3 "the state files renamed first" move first ' rename\('
mutant 4 "the D records written right after the last M record" \
	move 'after:pwritev\(.*"HKW1 M' 'pwritev\(.*"HKW1 D'
rm -f "$T/trace.mutant"
finish
