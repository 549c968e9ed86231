#!/bin/bash
# A full queue disk: the listener answers 452 4.3.1 and nothing is
# half-written (SPEC §5). Needs root for a small tmpfs.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/small"
if ! mount -t tmpfs -o size=256k tmpfs "$T/small" 2>"$T/mount.err"; then
	nok "mount a 256 KiB tmpfs for the queue (needs root)" "$T/mount.err"
	finish
	exit 1
fi
trap 'umount "$T/small" 2>/dev/null; if [ -n "$HPID" ]; then kill -9 "$HPID" 2>/dev/null; fi' EXIT
write_config "max_message_size = 1M"
sed -i "s|^dir = .*|dir = $T/small/queue|" "$T/hikyaku.conf"
start_hikyaku || { finish; exit 1; }

head -c 150000 /dev/urandom | base64 -w 76 >"$T/body"
smtp --body "@$T/body" >"$T/one.out" 2>&1
expect "the first mail fits" "$T/one.out" 'queued as'
smtp --body "@$T/body" >"$T/two.out" 2>&1
expect "the second one gets 452 4.3.1" "$T/two.out" '<\*\* +452 4\.3\.1'
check "nothing half-written in the queue" test "$(ls "$T/small/queue/mail" | wc -l)" -eq 1
check "no temporary left behind" test "$(ls "$T/small/queue/tmp" | wc -l)" -eq 0
smtp --body "small" >"$T/three.out" 2>&1
expect "a small mail still fits afterwards" "$T/three.out" 'queued as'
stop_hikyaku
umount "$T/small"
finish
