# Shared helpers of the end-to-end tests: each test script sources this,
# writes a configuration, starts hikyaku on a free loopback port, talks to
# it with swaks (or smtp_raw.py where exact bytes matter) and checks what
# a user would check: the replies, the queue on disk, the relay log.
# shellcheck shell=bash
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${E2E_BUILD:-build-asan}
HIKYAKU=$ROOT/$BUILD/hikyaku
HIKYAKUCTL=$ROOT/$BUILD/hikyakuctl
PY=/usr/bin/python3
RAW="$PY $ROOT/tests/e2e/smtp_raw.py"
T=$(mktemp -d /tmp/hikyaku-e2e.XXXXXX)
PASS=0
FAIL=0
HPID=""
TEST_NAME=$(basename "$0" .sh)

# Sanitizer reports go to files; a test run with any report fails.
export ASAN_OPTIONS="detect_leaks=1:log_path=$T/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$T/ubsan"
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"

ok() { PASS=$((PASS + 1)); echo "ok - $TEST_NAME: $1"; }
nok() {
	FAIL=$((FAIL + 1))
	echo "not ok - $TEST_NAME: $1"
	[ $# -gt 1 ] && [ -f "$2" ] && sed 's/^/    | /' "$2" | tail -n 30
	return 0
}

# check NAME COMMAND...: passes when the command succeeds.
check() {
	local name=$1
	shift
	if "$@" >"$T/check.out" 2>&1; then ok "$name"; else nok "$name" "$T/check.out"; fi
}

# not COMMAND...: succeeds when the command fails (check NAME not queued_has ID).
not() { ! "$@"; }

# expect NAME FILE REGEX: passes when FILE has a line matching REGEX.
expect() {
	if grep -Eq -- "$3" "$2"; then ok "$1"; else nok "$1 (no /$3/)" "$2"; fi
}

# expect_not NAME FILE REGEX: passes when no line of FILE matches.
expect_not() {
	if grep -Eq -- "$3" "$2"; then nok "$1 (found /$3/)" "$2"; else ok "$1"; fi
}

# session NAME [--source IP] STEP...: one scripted SMTP session (smtp_raw.py)
# against the relay; passes when every step held.
session() {
	local name=$1
	shift
	local src=()
	if [ "${1:-}" = "--source" ]; then src=(--source "$2"); shift 2; fi
	if $RAW "${src[@]}" 127.0.0.1 "$PORT" "$@" >"$T/session.out" 2>&1; then
		ok "$name"
	else
		nok "$name" "$T/session.out"
	fi
}

# free_port [:]: a loopback TCP port free now (":" for [::1]), never one
# this script was given before (they are bound later, so the kernel could
# hand out the same one twice: $T/ports remembers them).
free_port() {
	local p _
	for _ in $(seq 1 50); do
		p=$($PY -c 'import socket,sys; s=socket.socket(socket.AF_INET6 if sys.argv[1]==":" else socket.AF_INET); s.bind(("::1" if sys.argv[1]==":" else "127.0.0.1",0)); print(s.getsockname()[1])' "${1:-.}")
		if ! grep -qx "$p" "$T/ports" 2>/dev/null; then
			echo "$p" >>"$T/ports"
			echo "$p"
			return 0
		fi
	done
	return 1
}

PORT=$(free_port)

# Unless a test routes mail itself, nothing leaves: DNS goes to a closed
# port, so every delivery is deferred and the queue keeps what it got.
DEFAULT_DIRECT="[direct]
dns_servers = 127.0.0.1:9"

# write_config [SERVER_LINES] [MORE_SECTIONS]: a configuration in $T.
write_config() {
	cat >"$T/hikyaku.conf" <<CONF
[server]
listen = 127.0.0.1:$PORT
hostname = relay.test.example
${1:-}

[queue]
dir = $T/queue

[suppression]
db = $T/suppression.db

[log]
file = $T/log.jsonl

[control]
socket = $T/control.sock

$DEFAULT_DIRECT
${2:-}
CONF
	# The tests' MX hosts are loopback peers (SPEC §3 internal_destinations).
	grep -q '^internal_destinations' "$T/hikyaku.conf" ||
		sed -i '0,/^\[direct\]$/s//[direct]\ninternal_destinations = any/' "$T/hikyaku.conf"
}

wait_port() {
	local host=${2:-127.0.0.1}
	for _ in $(seq 1 100); do
		if $PY -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$host" "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

start_hikyaku() {
	"$HIKYAKU" -c "$T/hikyaku.conf" >>"$T/hikyaku.out" 2>&1 &
	HPID=$!
	if ! wait_port "$PORT"; then
		nok "hikyaku starts" "$T/hikyaku.out"
		return 1
	fi
	# The probe connection above is a session too: let it go away.
	sleep 0.2
}

stop_hikyaku() {
	[ -n "$HPID" ] || return 0
	kill -TERM "$HPID" 2>/dev/null
	local rc=0
	wait "$HPID" || rc=$?
	HPID=""
	[ "$rc" -eq 0 ] || nok "hikyaku exits 0 on SIGTERM (got $rc)" "$T/hikyaku.out"
}

# swaks with our defaults; the rest of the arguments are swaks's own.
smtp() {
	swaks --server 127.0.0.1 --port "$PORT" --helo client.test.example \
		--from shop@example.jp --to user@example.com --timeout 20 "$@"
}

# log_count EVENT COND: the relay log's EVENT lines for which the Python
# expression COND on e (the line as a dict) holds, counted.
#   log_count deferred "e['to'] == 'a@x.test' and 'suspended' in e['response']"
log_count() {
	$PY - "$T/log.jsonl" "$1" "$2" <<'PYEOF'
import json, sys
n = 0
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == sys.argv[2] and eval(sys.argv[3], {"e": e}):
        n += 1
print(n)
PYEOF
}
# wait_log EVENT COND N SECONDS: until log_count EVENT COND reaches N (1 on timeout).
wait_log() {
	local i
	for ((i = 0; i < $4 * 10; i++)); do
		[ "$(log_count "$1" "$2")" -ge "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

# What is queued, read from the spool's files by tests/e2e/spool.py (the
# mail files of DIR/mail and the live records of the segment log DIR/wal):
# never by looking at DIR/mail alone, where a fresh mail may not be yet.
# The spool is $T/queue, or $SPOOL_DIR when set (SPOOL_DIR=$T/other/queue
# queued_count).
SPOOL_PY="$PY $ROOT/tests/e2e/spool.py"
spool_read() { $SPOOL_PY "${SPOOL_DIR:-$T/queue}" "$@"; }
queued_ids() { spool_read ids; }
queued_count() { queued_ids | wc -l; }
# queued_has ID: exit 0 when mail ID is queued.
queued_has() { spool_read file "$1" >/dev/null 2>&1; }

# The message bytes of a queued mail (after the magic and envelope lines).
queued_data() { spool_read data "$1"; }
queued_envelope() { spool_read envelope "$1"; }

finish() {
	stop_hikyaku
	local f
	for f in "$T"/asan* "$T"/ubsan*; do
		[ -e "$f" ] || continue
		nok "sanitizer report $(basename "$f")" "$f"
	done
	echo "$PASS passed, $FAIL failed"
	if [ "$FAIL" -eq 0 ] && [ -z "${KEEP_E2E:-}" ]; then rm -rf "$T"; else echo "# files kept in $T"; fi
	[ "$FAIL" -eq 0 ]
}
trap 'if [ -n "$HPID" ]; then kill -9 "$HPID" 2>/dev/null; fi' EXIT
