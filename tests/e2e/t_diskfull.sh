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
check "nothing half-written in the queue" test "$(SPOOL_DIR=$T/small/queue queued_count)" -eq 1
check "no temporary left behind" test "$(ls "$T/small/queue/tmp" | wc -l)" -eq 0
smtp --body "small" >"$T/three.out" 2>&1
expect "a small mail still fits afterwards" "$T/three.out" 'queued as'
check "... and is read back from the spool: two mails queued" test "$(SPOOL_DIR=$T/small/queue queued_count)" -eq 2
stop_hikyaku
umount "$T/small"

# State writes that fail on a full disk are tried again from a loop timer,
# not by sleeping on the thread pool: a new mail still gets its 452 4.3.1
# at once instead of waiting behind dozens of sleeping retries.
mount -t tmpfs -o size=2m tmpfs "$T/small" 2>"$T/mount.err" || nok "mount a 2 MiB tmpfs" "$T/mount.err"
write_config "max_connections_per_client = 200" "
[queue]
retry_min = 1s
retry_max = 1s"
sed -i "s|^dir = .*|dir = $T/small/queue|" "$T/hikyaku.conf"
start_hikyaku || { finish; exit 1; }
$PY "$ROOT/tests/e2e/load_gen.py" send 127.0.0.1 "$PORT" 100 10 full "$T/full.res" >"$T/load.out" 2>&1
check "100 mails queued (each deferred: DNS is unreachable)" test "$(grep -c ' OK ' "$T/full.res")" -eq 100
sleep 1.5
dd if=/dev/zero of="$T/small/filler" bs=4k >/dev/null 2>&1 || true
sleep 3
start=$(date +%s.%N)
smtp --body "small" >"$T/four.out" 2>&1
took=$($PY -c "import time; print(round(time.time() - $start, 1))")
echo "# a mail on the full disk answered in $took s"
expect "on the full disk a new mail gets 452 4.3.1" "$T/four.out" '<\*\* +452 4\.3\.1'
check "... at once, not behind the retries of the state writes ($took s < 5 s)" \
	$PY -c "import sys; sys.exit(0 if $took < 5 else 1)"
expect "the failing state writes are reported" "$T/hikyaku.out" 'cannot record the state of'
rm -f "$T/small/filler"
sleep 1
start=$(date +%s.%N)
smtp --body "small" >"$T/five.out" 2>&1
took=$($PY -c "import time; print(round(time.time() - $start, 1))")
echo "# with room again, a mail committed in $took s"
expect "with room again, mail is accepted" "$T/five.out" 'queued as'
check "... at once: its commit does not wait behind sleeping retries ($took s < 5 s)" \
	$PY -c "import sys; sys.exit(0 if $took < 5 else 1)"
stop_hikyaku
umount "$T/small"
finish
