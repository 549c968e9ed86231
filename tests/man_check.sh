#!/bin/sh
# The man pages built from docs/man/*.scd: each of hikyaku(8), hikyakuctl(8),
# hikyaku.conf(5) and hikyaku-sendmail(8) exists, is a man page with the
# usual sections, and renders without a warning (groff -ww when groff is there).
set -u
dir=$1
rc=0
for page in hikyaku.8 hikyakuctl.8 hikyaku.conf.5 hikyaku-sendmail.8; do
	f=$dir/$page
	if [ ! -s "$f" ]; then
		echo "FAIL: $page was not built" >&2; rc=1; continue
	fi
	name=${page%.*}
	sect=${page##*.}
	grep -q "^\.TH \"$name\" \"$sect\"" "$f" || { echo "FAIL: $page: no .TH $name $sect" >&2; rc=1; }
	for s in NAME SYNOPSIS DESCRIPTION; do
		[ "$page" = hikyaku.conf.5 ] && [ "$s" = SYNOPSIS ] && continue
		grep -q "^\.SH $s" "$f" || { echo "FAIL: $page: no $s section" >&2; rc=1; }
	done
	if command -v groff >/dev/null 2>&1; then
		w=$(groff -k -man -ww -z -Tutf8 "$f" 2>&1)
		[ -z "$w" ] || { echo "FAIL: $page renders with warnings: $w" >&2; rc=1; }
	fi
	echo "ok: $page"
done
exit $rc
