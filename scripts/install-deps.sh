#!/bin/sh
# Installs the Debian 12 packages hikyaku needs to build, run and test,
# but only those that are missing (apt-get runs only when something is).
# Runs as root, or through sudo.
set -eu

PACKAGES="
build-essential cmake pkg-config
libuv1-dev libssl-dev openssl libc-ares-dev libsqlite3-dev sqlite3
libinih-dev libidn2-dev libcrypt-dev libjansson-dev libgmime-3.0-dev libglib2.0-dev
libcsv-dev check libsubunit-dev
swaks python3 python3-aiosmtpd dnsmasq-base procps whois
scdoc libsystemd-dev clang libclang-rt-14-dev llvm
"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

[ -z "$missing" ] && exit 0

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
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
