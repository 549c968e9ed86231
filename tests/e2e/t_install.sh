#!/bin/bash
# cmake --install (into a DESTDIR, as a package build does): the programs,
# the example configuration, the systemd unit naming the installed daemon,
# the sysusers and logrotate snippets, the man pages and the guide; and
# the installed programs run.
. "$(dirname "$0")/lib.sh"

DEST=$T/root
if DESTDIR=$DEST cmake --install "$ROOT/$BUILD" >"$T/install.out" 2>&1; then
	ok "cmake --install succeeds"
else
	nok "cmake --install succeeds" "$T/install.out"
fi
P=$DEST/usr/local
for f in sbin/hikyaku bin/hikyakuctl; do
	check "$f is installed and executable" test -x "$P/$f"
done
for f in etc/hikyaku/hikyaku.conf.example lib/systemd/system/hikyaku.service \
	lib/sysusers.d/hikyaku.conf etc/logrotate.d/hikyaku \
	share/man/man8/hikyaku.8 share/man/man8/hikyakuctl.8 share/man/man5/hikyaku.conf.5 \
	share/doc/hikyaku/admin-guide.md share/doc/hikyaku/ja/admin-guide.md \
	share/doc/hikyaku/configuration.md share/doc/hikyaku/routing.md; do
	check "$f is installed" test -s "$P/$f"
done
UNIT=$P/lib/systemd/system/hikyaku.service
expect "the unit runs the installed daemon on the installed configuration" "$UNIT" \
	'^ExecStart=/usr/local/sbin/hikyaku -c /usr/local/etc/hikyaku/hikyaku.conf$'
expect "the unit is Type=notify" "$UNIT" '^Type=notify$'
expect "the unit reloads with SIGHUP" "$UNIT" '^ExecReload=/bin/kill -HUP \$MAINPID$'
expect "the unit runs as a dedicated user" "$UNIT" '^User=hikyaku$'
for h in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes; do
	expect "the unit is hardened: $h" "$UNIT" "^$h\$"
done
expect_not "no @VARIABLE@ is left in the unit" "$UNIT" '@[A-Z_]+@'
# verify wants the binary where ExecStart says: check a copy that points into DESTDIR.
sed "s#/usr/local/sbin/hikyaku#$P/sbin/hikyaku#" "$UNIT" >"$T/hikyaku.service"
if systemd-analyze verify --man=no "$T/hikyaku.service" >"$T/verify.out" 2>&1; then
	ok "systemd-analyze verify finds nothing wrong with the unit"
else
	nok "systemd-analyze verify finds nothing wrong with the unit" "$T/verify.out"
fi
expect "logrotate signals the daemon to reopen its log" "$P/etc/logrotate.d/hikyaku" 'USR1'

# The installed programs run: the daemon validates the example configuration,
# hikyakuctl reads it, and the man pages open.
"$P/sbin/hikyaku" --check -c "$P/etc/hikyaku/hikyaku.conf.example" >"$T/check.out" 2>&1
RC=$?
check "the installed daemon accepts the example configuration (--check exits 0)" test "$RC" -eq 0
"$P/bin/hikyakuctl" -c "$P/etc/hikyaku/hikyaku.conf.example" route someone@example.com >"$T/route.out" 2>&1
expect "the installed hikyakuctl reads it" "$T/route.out" '^direct'
MANWIDTH=80 man -l "$P/share/man/man8/hikyakuctl.8" >"$T/man.out" 2>&1
expect "man hikyakuctl documents queue retry" "$T/man.out" 'queue retry'
finish
