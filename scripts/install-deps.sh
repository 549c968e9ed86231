#!/bin/sh
# Installs the Debian 12 packages hikyaku needs to build, run and test, but
# only those that are missing (apt-get runs only when something is), then
# checks that every tool the tests drive can do what they ask of it: a
# package that is installed is not yet a capability (swaks without its
# Perl modules has no TLS, python3-dkim without PyNaCl no Ed25519, php-cli
# without mbstring no mb_send_mail). Runs as root, or through sudo.
#
# Packages are installed without their Recommends, so that what the project
# needs is named here and nowhere else: a fresh machine gets exactly this.
# No daemon is started by the installation (policy-rc.d answers 101 while
# apt runs): the tests start their own private instances.
set -eu

# build: the compiler, CMake, the libraries (SPEC: libuv, OpenSSL 3, c-ares,
# SQLite, libinih, libidn2, libxcrypt, jansson, GMime 3, GLib, libcsv,
# libsystemd; DKIM, PSL, SPF, DMARC, HTTP, PostgreSQL) and libcheck.
BUILD="
build-essential cmake pkg-config
libuv1-dev libssl-dev openssl libc-ares-dev libsqlite3-dev sqlite3
libinih-dev libidn2-dev libcrypt-dev libjansson-dev libgmime-3.0-dev libglib2.0-dev
libcsv-dev check libsubunit-dev libsystemd-dev zlib1g-dev
libopendkim-dev libpsl-dev publicsuffix libspf2-dev libopendmarc-dev
libmicrohttpd-dev libpq-dev
scdoc clang libclang-rt-14-dev llvm
"
# tests: swaks and the Perl modules behind its TLS, IPv6 and AUTH; the
# Python peers (aiosmtpd, dnspython, the independent DKIM verifier with
# PyNaCl for Ed25519); dnsmasq; a PostgreSQL server; PHP with mbstring for
# mail(); promtool; systemd-analyze and man for the installation test;
# GNU time for the peak memory of a process; strace for the order of the
# spool's writes and syncs (t_power_order).
TEST="
swaks libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl
libauthen-sasl-perl libdigest-hmac-perl
python3 python3-aiosmtpd python3-dnspython python3-dkim python3-nacl
dnsmasq-base procps whois util-linux time strace
postgresql postgresql-client
php-cli php-mbstring
prometheus
systemd man-db
"
PACKAGES="$BUILD $TEST"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			SUDO="sudo"
		else
			echo "install-deps: need root or sudo to install:$missing" >&2
			exit 1
		fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	# No service starts while packages are installed (postgresql, prometheus).
	policy=/usr/sbin/policy-rc.d
	own_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		own_policy=1
	fi
	rc=0
	$SUDO apt-get update -qq || rc=$?
	# shellcheck disable=SC2086
	[ "$rc" -ne 0 ] || $SUDO apt-get install -y -qq --no-install-recommends $missing || rc=$?
	[ -z "$own_policy" ] || $SUDO rm -f "$policy"
	if [ "$rc" -ne 0 ]; then
		echo "install-deps: apt-get failed (exit $rc)" >&2
		exit 1
	fi
fi

# Capabilities: each line is one thing a test relies on, checked directly.
failed=0
need() {
	what=$1
	shift
	if ! "$@" >/dev/null 2>&1; then
		echo "install-deps: missing capability: $what" >&2
		failed=1
	fi
}
swaks_can() { swaks --support 2>&1 | grep -q "^=== $1 supported"; }
fuzz_links() {
	d=$(mktemp -d)
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$d/f.c"
	r=0
	clang -fsanitize=fuzzer,address,undefined "$d/f.c" -o "$d/f" || r=1
	rm -rf "$d"
	return $r
}
pg_bin=/usr/lib/postgresql/15/bin

need "swaks can do TLS (Net::SSLeay, IO::Socket::SSL)" swaks_can TLS
need "swaks can do IPv6 (IO::Socket::INET6)" swaks_can IPv6
need "swaks can do AUTH (Authen::SASL)" swaks_can "Basic AUTH"
need "swaks can do AUTH CRAM-MD5 (Digest::HMAC)" swaks_can "AUTH CRAM-MD5"
need "python3 has aiosmtpd" /usr/bin/python3 -c 'import aiosmtpd.controller'
need "python3 has dnspython" /usr/bin/python3 -c 'import dns.resolver'
need "python3 has dkim with Ed25519 (PyNaCl)" /usr/bin/python3 -c 'import dkim, nacl.signing'
need "dnsmasq runs" dnsmasq --version
need "strace runs" strace -V
need "strace traces every thread of a process and delays a syscall (ptrace allowed, inject)" \
	strace -f -o /dev/null -e trace=fdatasync -e inject=fdatasync:delay_exit=1000 true
need "/usr/bin/time reports the peak RSS (GNU time)" sh -c '/usr/bin/time -v true 2>&1 | grep -q "Maximum resident set size"'
need "openssl makes Ed25519 and RSA keys" sh -c 'openssl genpkey -algorithm ed25519 && openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024'
need "php has mail() (the sendmail interface's caller)" php -r 'exit(function_exists("mail") ? 0 : 1);'
need "php has mb_send_mail (mbstring)" php -r 'exit(function_exists("mb_send_mail") ? 0 : 1);'
need "promtool checks metrics" sh -c 'printf "# HELP x_total A counter.\n# TYPE x_total counter\nx_total 1\n" | promtool check metrics'
need "PostgreSQL 15 server programs (initdb, pg_ctl, postgres)" test -x "$pg_bin/initdb" -a -x "$pg_bin/pg_ctl" -a -x "$pg_bin/postgres"
need "a postgres user to run the test cluster" id postgres
need "systemd-analyze verifies units" systemd-analyze --version
need "man reads a local page" sh -c 'command -v man'
need "scdoc builds man pages" sh -c 'command -v scdoc'
need "clang builds libFuzzer targets with ASan+UBSan" fuzz_links
need "the Public Suffix List for libpsl" test -s /usr/share/publicsuffix/public_suffix_list.dat
if [ "$failed" -ne 0 ]; then
	echo "install-deps: the packages above are installed but a capability is missing; see the lines above" >&2
	exit 1
fi
exit 0
