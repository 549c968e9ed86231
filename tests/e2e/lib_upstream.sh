# Fixtures of the delivery tests, sourced after lib.sh: upstream SMTP
# servers (tests/e2e/upstream.py: the delivery service, MX hosts, a bounce
# sink) and a DNS server (dnsmasq) answering for the zone "test".
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib_upstream.sh"
#   start_dns --mx-host=shop.test,mx1.shop.test,10 --host-record=mx1.shop.test,127.0.0.2
#   start_upstream mx1 --addr 127.0.0.2
#   write_config "" "[direct]
#   port = $UP_PORT_mx1
#   dns_servers = 127.0.0.1:$DNS_PORT
#   tls = none"
#
# Every upstream and dnsmasq is stopped when the script exits (this file
# chains cleanup_upstreams in front of lib.sh's EXIT trap); a test that
# sets its own EXIT trap must call cleanup_upstreams in it.
# shellcheck shell=bash

UPSTREAM_PY=$ROOT/tests/e2e/upstream.py
UP_PIDS=()
DNS_PID=""
DNS_PORT=""

# start_upstream NAME [--addr IP] [--port PORT] [upstream.py options...]
# Starts upstream.py on IP:PORT (default 127.0.0.1 and a free port), with
# its records in $T/up-NAME/ (messages.jsonl, sessions.jsonl, refused.jsonl,
# bounces.jsonl; stdout/stderr in $T/up-NAME.out and .err). Sets
# UP_PORT_NAME, UP_PID_NAME and UP_ADDR_NAME; NAME is letters, digits, _.
# MX hosts of one test share a port on different 127.0.0.x addresses,
# because [direct] port applies to every MX:
#   start_upstream mx1 --addr 127.0.0.2
#   start_upstream mx2 --addr 127.0.0.3 --port "$UP_PORT_mx1"
# Returns 1 (and reports "not ok") when it is not READY within 10 s.
start_upstream() {
	local name=$1
	shift
	local addr=127.0.0.1 port=""
	while [ $# -gt 0 ]; do
		case $1 in
		--addr) addr=$2; shift 2 ;;
		--port) port=$2; shift 2 ;;
		*) break ;;
		esac
	done
	if [ -z "$port" ]; then
		case $addr in
		*:*) port=$(free_port :) ;;
		*) port=$(free_port) ;;
		esac
	fi
	local listen=$addr:$port
	case $addr in *:*) listen="[$addr]:$port" ;; esac
	$PY "$UPSTREAM_PY" --listen "$listen" --spool "$T/up-$name" "$@" >"$T/up-$name.out" 2>"$T/up-$name.err" &
	local pid=$!
	UP_PIDS+=("$pid")
	printf -v "UP_PORT_$name" %s "$port"
	printf -v "UP_PID_$name" %s "$pid"
	printf -v "UP_ADDR_$name" %s "$addr"
	local _
	for _ in $(seq 1 100); do
		grep -q '^READY$' "$T/up-$name.out" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	nok "upstream $name starts" "$T/up-$name.err"
	return 1
}

# start_upstream6 NAME [--port PORT] [options...]: the same on [::1].
start_upstream6() {
	local name=$1
	shift
	start_upstream "$name" --addr ::1 "$@"
}

# stop_upstream NAME: SIGTERM and wait (its connections still open are
# recorded in sessions.jsonl with "open": true). The spool stays: to bring
# it back on the same port, start_upstream NAME --port "$UP_PORT_NAME" ...
# (its records are appended to).
stop_upstream() {
	local var=UP_PID_$1
	local pid=${!var:-} p rest=()
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	printf -v "$var" %s ""
	for p in "${UP_PIDS[@]}"; do
		[ "$p" = "$pid" ] || rest+=("$p")
	done
	UP_PIDS=("${rest[@]}")
	return 0
}

stop_upstreams() {
	local pid
	for pid in "${UP_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${UP_PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	UP_PIDS=()
	return 0
}

# The records of an upstream.
upstream_file() { echo "$T/up-$1/${2:-messages}.jsonl"; }
upstream_sessions() { upstream_file "$1" sessions; }
upstream_bounces() { upstream_file "$1" bounces; }

# upstream_count NAME [FILE]: number of messages accepted (or of lines of
# FILE: sessions, refused, bounces).
upstream_count() {
	local f
	f=$(upstream_file "$1" "${2:-messages}")
	if [ -f "$f" ]; then wc -l <"$f"; else echo 0; fi
}

# wait_upstream_count NAME N [SECONDS [FILE]]: waits (default 20 s) until
# NAME has accepted at least N messages (or FILE has N lines); 1 on timeout.
wait_upstream_count() {
	local i tries=$(((${3:-20}) * 10))
	for ((i = 0; i < tries; i++)); do
		[ "$(upstream_count "$1" "${4:-messages}")" -ge "$2" ] && return 0
		sleep 0.1
	done
	[ "$(upstream_count "$1" "${4:-messages}")" -ge "$2" ]
}

# upstream_eval NAME CODE: runs Python CODE with msgs, refused, sessions
# and bounces (lists of dicts, as recorded) and data(m) (the bytes of a
# message record as text) and prints the value of its last expression (a
# list or tuple one item per line). CODE may start with statements:
#   upstream_eval svc 's = sessions[-1]; s["commands"]'
# Exit 1 if CODE raises.
upstream_eval() { _upstream_py "$1" eval "$2"; }

# upstream_check NAME CODE: succeeds when the last expression of CODE is
# true; prints its value (for `check`'s report) either way.
#   check "every message over TLS" upstream_check svc 'all(m["tls"] for m in msgs)'
upstream_check() { _upstream_py "$1" check "$2"; }

_upstream_py() {
	$PY - "$T/up-$1" "$2" "$3" <<'PYEOF'
import ast, base64, json, os, sys
d, mode, code = sys.argv[1:4]
def load(n):
    p = os.path.join(d, n + ".jsonl")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def data(m):
    return base64.b64decode(m["data_b64"]).decode("utf-8", "replace")
env = {"msgs": load("messages"), "refused": load("refused"), "sessions": load("sessions"),
       "bounces": load("bounces"), "data": data, "json": json}
tree = ast.parse(code)
last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
exec(compile(tree, "<code>", "exec"), env)
v = eval(compile(ast.Expression(last.value), "<code>", "eval"), env) if last else None
if mode == "check":
    print(repr(v))
    sys.exit(0 if v else 1)
for x in (v if isinstance(v, (list, tuple)) else [v]):
    print(x)
PYEOF
}

# upstream_rcpts NAME: every recipient of every accepted message, one a line.
upstream_rcpts() { upstream_eval "$1" '[r for m in msgs for r in m["rcpt_tos"]]'; }

# upstream_message NAME INDEX: the raw bytes of message INDEX (1 is the
# first, -1 the last) as received (dot-unstuffed, CRLF line ends).
upstream_message() {
	$PY - "$(upstream_file "$1")" "$2" <<'PYEOF'
import base64, json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
i = int(sys.argv[2])
sys.stdout.buffer.write(base64.b64decode(msgs[i - 1 if i > 0 else i]["data_b64"]))
PYEOF
}

# upstream_field NAME INDEX FIELD: one field of message INDEX (JSON for
# lists and objects, true/false, null).
upstream_field() {
	$PY - "$(upstream_file "$1")" "$2" "$3" <<'PYEOF'
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
i = int(sys.argv[2])
v = msgs[i - 1 if i > 0 else i][sys.argv[3]]
print(v if isinstance(v, str) else json.dumps(v))
PYEOF
}

# start_dns DNSMASQ_OPTIONS...: dnsmasq authoritative-ish for the zone
# "test" on 127.0.0.1:$DNS_PORT (UDP and TCP), nothing else: names outside
# .test get REFUSED, unknown names under .test NXDOMAIN, a known name
# without the asked type NOERROR with no answer (NODATA). Records:
#   --mx-host=shop.test,mx1.shop.test,10   MX (repeat for more; any order)
#   --host-record=mx1.shop.test,127.0.0.2  A (and AAAA: --host-record=n.test,::1)
#   --mx-host=nullmx.test,.,0              null MX (RFC 7505): dnsmasq 2.90
#                                          answers "MX 0 ." (rdata 00 00 00)
#   --server=/down.test/127.0.0.1#1        a forwarded zone whose server is
#                                          dead: queries under down.test get
#                                          no answer at all (a DNS timeout)
# Sets DNS_PORT and DNS_PID; the query log is $T/dnsmasq.log.
start_dns() {
	DNS_PORT=$($PY -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    t = socket.socket(); p = u.getsockname()[1]
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass')
	# --user/--group: stay who we are (as root dnsmasq would become
	# nobody:dip and could not write its log in $T); --pid-file with no
	# value: none (never /run/dnsmasq.pid, shared with other instances).
	dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --pid-file \
		--user="$(id -un)" --group="$(id -gn)" \
		--listen-address=127.0.0.1 --bind-interfaces --port="$DNS_PORT" --local=/test/ \
		--log-queries --log-facility="$T/dnsmasq.log" "$@" >"$T/dnsmasq.out" 2>&1 &
	DNS_PID=$!
	if dns_query _ready.test A --wait >/dev/null 2>&1; then return 0; fi
	nok "dnsmasq starts" "$T/dnsmasq.out"
	return 1
}

stop_dns() {
	[ -n "$DNS_PID" ] || return 0
	kill -TERM "$DNS_PID" 2>/dev/null
	wait "$DNS_PID" 2>/dev/null
	DNS_PID=""
	return 0
}

# dns_query NAME TYPE [--wait]: asks 127.0.0.1:$DNS_PORT over UDP and prints
# the rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED …) then one line per
# answer: "MX 10 mx1.shop.test", "MX 0 ." (null MX), "A 127.0.0.2",
# "AAAA ::1", "CNAME x.test", other types as "TYPEn HEX". TYPE is A, AAAA,
# MX, CNAME, TXT or a number. Exit 1 without an answer in 2 s (with
# --wait: keep asking for 5 s).
dns_query() {
	$PY - "$DNS_PORT" "$@" <<'PYEOF'
import random, socket, struct, sys, time
port, name, qtype = int(sys.argv[1]), sys.argv[2], sys.argv[3]
wait = "--wait" in sys.argv[4:]
TYPES = {"A": 1, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]
qt = TYPES.get(qtype.upper()) or int(qtype)
qname = b"".join(bytes([len(l)]) + l for l in name.rstrip(".").encode("idna").split(b".") if l) + b"\0"

def read_name(msg, off):
    labels, end = [], None
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:  # compression pointer
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels) or ".", (end if end is not None else off)

deadline = time.time() + (5 if wait else 2)
while True:
    tid = random.randrange(65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5 if wait else 2)
    s.sendto(struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qt, 1), ("127.0.0.1", port))
    try:
        msg = s.recv(65535)
        if struct.unpack(">H", msg[:2])[0] == tid:
            break
    except OSError:
        pass
    if time.time() >= deadline:
        print("no answer")
        sys.exit(1)
    time.sleep(0.1)
flags, qd, an = struct.unpack(">HHH", msg[2:8])
rc = flags & 15
print(RCODES[rc] if rc < len(RCODES) else "RCODE%d" % rc)
off = 12
for _ in range(qd):
    off = read_name(msg, off)[1] + 4
for _ in range(an):
    _, off = read_name(msg, off)
    t, _, _, ln = struct.unpack(">HHIH", msg[off:off + 10])
    off += 10
    rd = msg[off:off + ln]
    if t == 1:
        print("A " + socket.inet_ntop(socket.AF_INET, rd))
    elif t == 28:
        print("AAAA " + socket.inet_ntop(socket.AF_INET6, rd))
    elif t == 15:
        print("MX %d %s" % (struct.unpack(">H", rd[:2])[0], read_name(msg, off + 2)[0]))
    elif t == 5:
        print("CNAME " + read_name(msg, off)[0])
    else:
        print("TYPE%d %s" % (t, rd.hex()))
    off += ln
PYEOF
}

# start_fault_peer NAME [--addr IP] [--port PORT] --mode MODE [options...]:
# like start_upstream, with tests/e2e/fault_peer.py (a raw peer that
# stalls, drops, answers garbage; see its --help). Its records are in
# $T/up-NAME/ (messages.jsonl in upstream.py's format, sessions.jsonl its
# own), so upstream_count, upstream_rcpts and upstream_eval work on it.
start_fault_peer() {
	UPSTREAM_PY=$ROOT/tests/e2e/fault_peer.py start_upstream "$@"
}

# heal_peer NAME: from now on fault_peer NAME behaves (SIGUSR1).
heal_peer() {
	local var=UP_PID_$1
	[ -n "${!var:-}" ] && kill -USR1 "${!var}"
}

# start_dns_fault RULES_FILE: tests/e2e/dns_fault.py on 127.0.0.1:$DNSF_PORT
# (UDP), answering SERVFAIL, NXDOMAIN or nothing for the names RULES_FILE
# names (re-read when it changes) and forwarding the rest to dnsmasq
# ($DNS_PORT: call start_dns first). Queries are logged in $T/dnsf.err.
# Stopped with the upstreams.
DNSF_PORT=""
DNSF_PID=""
start_dns_fault() {
	DNSF_PORT=$($PY -c 'import socket; u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); print(u.getsockname()[1])')
	$PY "$ROOT/tests/e2e/dns_fault.py" --listen "127.0.0.1:$DNSF_PORT" --forward "127.0.0.1:$DNS_PORT" \
		--rules "$1" >"$T/dnsf.out" 2>"$T/dnsf.err" &
	DNSF_PID=$!
	UP_PIDS+=("$DNSF_PID")
	local _
	for _ in $(seq 1 100); do
		grep -q '^READY$' "$T/dnsf.out" 2>/dev/null && return 0
		kill -0 "$DNSF_PID" 2>/dev/null || break
		sleep 0.1
	done
	nok "dns_fault.py starts" "$T/dnsf.err"
	return 1
}

# cleanup_upstreams: stops every upstream and dnsmasq (runs at EXIT).
cleanup_upstreams() {
	stop_upstreams
	stop_dns
}

# Chain in front of lib.sh's EXIT trap (which kills a hikyaku left running);
# "trap -p" prints it quoted for the shell, so "set --" splits it back.
# shellcheck disable=SC2120,SC2064
_up_chain_exit_trap() {
	eval "set -- $(trap -p EXIT)"
	trap "cleanup_upstreams; ${3:-}" EXIT
}
# shellcheck disable=SC2119
_up_chain_exit_trap
