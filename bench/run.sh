#!/bin/bash
# bench/run.sh — hikyaku and Postfix side by side on this machine (`make bench`).
#
# Installs Postfix (with smtp-source and smtp-sink), dnsmasq and libssl-dev
# when missing — without starting the system's Postfix — then runs
# bench/bench.py: a private Postfix instance and hikyaku, each with its own
# spool in a temporary directory under /var/tmp, relay the same loads to
# Postfix's smtp-sink on loopback, alternately, BENCH_REPS times. Prints one
# line per run, then a table: hikyaku median (min-max), Postfix median
# (min-max), ratio of the medians; the same goes to bench/results/latest.txt.
# The method and what each figure means: docs/performance.md.
#
# Must run as root (Postfix's master starts as root). Uses $BENCH_BUILD/hikyaku
# as it is: `make bench` builds build/ first.
#
# Parameters (environment variables; the defaults are those of `make bench`):
#   BENCH_QUICK=1           a smoke run of about 2 minutes: 1 repetition,
#                           1000 messages, 3 s of latency load, 2000 deferred
#                           (each still overridable by the variables below)
#   BENCH_REPS=3            repetitions of every figure, per relay
#   BENCH_MESSAGES=10000    messages per 1 KiB throughput run
#   BENCH_LARGE_MESSAGES=   messages per 64 KiB run (default BENCH_MESSAGES/5)
#   BENCH_SESSIONS=20       concurrent client sessions (smtp-source -s)
#   BENCH_SIZE=1024         body bytes of the small messages (smtp-source -l)
#   BENCH_LARGE_SIZE=65536  body bytes of the large messages
#   BENCH_RATE=1000         offered messages/s of the latency figure
#   BENCH_LATENCY_SECONDS=10  how long the latency load lasts
#   BENCH_DEFERRED=100000   mails deferred in each relay's queue before the
#                           "deferred" figure (0: skip that figure)
#   BENCH_OUT_CONNS=10      outbound connections per destination, both relays
#   BENCH_WARMUP=500        messages sent (not measured) to each relay first
#   BENCH_STALL=90          seconds without progress at the sink before a run
#                           gives up and reports the rest as lost
#   BENCH_FIGURES="new reuse large latency tls deferred"   which figures
#   BENCH_SERVERS="hikyaku postfix"                       which relays
#   BENCH_POSTFIX_TLS_REUSE=1  let Postfix reuse TLS connections
#                           (smtp_tls_connection_reuse; Postfix's default: no)
#   BENCH_BUILD=build       the build directory holding hikyaku
#   BENCH_OUT=bench/results/latest.txt   where the report goes
#   BENCH_KEEP=1            keep the work directory (spools, logs, configs)
# Examples:
#   make bench
#   BENCH_QUICK=1 make bench
#   BENCH_FIGURES=latency BENCH_RATE=2000 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: run as root (Postfix's master must start as root)" >&2
	exit 1
fi

# The Debian packages the benchmark needs beyond `make build`'s.
PACKAGES="postfix dnsmasq-base gcc libc6-dev libssl-dev python3 openssl util-linux"
missing=""
for p in $PACKAGES; do
	case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

# Installs without starting anything: Postfix's package would start the
# system instance; a policy-rc.d returning 101 forbids that while apt runs
# (one that was there already is put back afterwards).
PRC=/usr/sbin/policy-rc.d
PRC_SAVED=""
restore_policy_rc() {
	if [ -n "$PRC_SAVED" ]; then cp -p "$PRC_SAVED" "$PRC" && rm -f "$PRC_SAVED"; else rm -f "$PRC"; fi
}
install_missing() {
	if [ -e "$PRC" ]; then
		PRC_SAVED=$(mktemp)
		cp -p "$PRC" "$PRC_SAVED"
	fi
	trap restore_policy_rc EXIT
	printf '#!/bin/sh\n# bench/run.sh: no service starts while packages install\nexit 101\n' >"$PRC"
	chmod 755 "$PRC"
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string bench.invalid" | debconf-set-selections
	echo "bench: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	restore_policy_rc
	trap - EXIT
}
[ -z "$missing" ] || install_missing

# No system-wide Postfix may run because of us: stop the default instance
# if its master is up (its pid file names it; nothing else is touched).
sys_pid=$( (tr -d ' ' </var/spool/postfix/pid/master.pid) 2>/dev/null || true)
if [ -n "$sys_pid" ] && [ "$(cat "/proc/$sys_pid/comm" 2>/dev/null)" = master ]; then
	echo "bench: stopping the system Postfix (master $sys_pid)"
	postfix stop >/dev/null 2>&1 || kill -TERM "$sys_pid"
fi

BUILD=${BENCH_BUILD:-build}
if [ ! -x "$BUILD/hikyaku" ] && [[ " ${BENCH_SERVERS:-hikyaku} " == *" hikyaku "* ]]; then
	echo "bench: $BUILD/hikyaku is missing: run make build (or make bench)" >&2
	exit 1
fi

# The spools, logs, and the helpers bench.py compiles (bench/smtp_latency.c,
# bench/tls_sink.c): on disk, not tmpfs, so that fsync costs what it costs.
WORK=$(mktemp -d /var/tmp/hikyaku-bench.XXXXXX)
chmod 755 "$WORK"
export BENCH_WORK=$WORK BENCH_BUILD=$BUILD
rc=0
/usr/bin/python3 bench/bench.py || rc=$?
if [ -z "${BENCH_KEEP:-}" ] || [ "${BENCH_KEEP:-}" = 0 ]; then
	rm -rf "$WORK"
else
	echo "bench: work directory kept: $WORK"
fi
exit $rc
