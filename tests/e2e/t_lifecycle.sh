#!/bin/bash
# The daemon's life: --check and hikyakuctl check/config, IPv6, kill -9
# right after a 250 (the mail survives), SIGTERM, SIGHUP reload.
. "$(dirname "$0")/lib.sh"

PORT6=$(free_port :)
write_config "listen = 127.0.0.1:$PORT, [::1]:$PORT6"
sed -i "0,/^listen = 127.0.0.1:$PORT\$/{/^listen = 127.0.0.1:$PORT\$/d}" "$T/hikyaku.conf"

# --check and hikyakuctl check: 0 for a valid file, 2 with FILE:LINE for a bad one.
check "hikyaku --check accepts a valid file" "$HIKYAKU" -c "$T/hikyaku.conf" --check
check "hikyakuctl check accepts a valid file" "$HIKYAKUCTL" -c "$T/hikyaku.conf" check
cp "$T/hikyaku.conf" "$T/bad.conf"
printf '\n[server]\nmax_connections = many\n[nosuch]\nx = 1\n' >>"$T/bad.conf"
"$HIKYAKU" -c "$T/bad.conf" --check >"$T/bad.out" 2>&1
check "hikyaku --check exits 2 on errors" test $? -eq 2
badline=$(grep -n '^max_connections = many' "$T/bad.conf" | cut -d: -f1)
expect "the error names FILE:LINE" "$T/bad.out" "^$T/bad.conf:$badline: "
expect "every error is reported, not only the first" "$T/bad.out" "nosuch"
"$HIKYAKUCTL" -c "$T/bad.conf" check >"$T/bad2.out" 2>&1
check "hikyakuctl check exits 2 on errors" test $? -eq 2
HIKYAKU_CONFIG="$T/hikyaku.conf" "$HIKYAKUCTL" config >"$T/config.out" 2>&1
expect "hikyakuctl config (via \$HIKYAKU_CONFIG) prints the effective configuration" "$T/config.out" '^hostname = relay\.test\.example'
expect "hikyakuctl config shows defaults" "$T/config.out" '^max_recipients = 100'

start_hikyaku || { finish; exit 1; }

# IPv6.
swaks --server ::1 --port "$PORT6" --from shop@example.jp --to user@example.com --timeout 20 >"$T/v6.out" 2>&1
expect "a mail over IPv6 is queued" "$T/v6.out" 'queued as'

# kill -9 right after the 250: the mail is on disk and survives a restart.
smtp --body "survive me" >"$T/k9.out" 2>&1
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=""
id=$(grep -oE 'queued as [0-9A-F]{18}' "$T/k9.out" | awk '{print $3}')
check "the 250-answered mail is on disk after kill -9" queued_has "$id"
queued_data "$id" >"$T/k9.data"
expect "with its body" "$T/k9.data" '^survive me'
start_hikyaku || { finish; exit 1; }
check "still queued after the restart" queued_has "$id"
smtp --body "after restart" >"$T/after.out" 2>&1
expect "the restarted relay accepts mail" "$T/after.out" 'queued as'
id2=$(grep -oE 'queued as [0-9A-F]{18}' "$T/after.out" | awk '{print $3}')
check "queue ids sort by arrival" test "$id" \< "$id2"

# SIGHUP: a valid new file takes effect, an invalid one is refused.
sed -i 's/^hostname = relay.test.example/hostname = reloaded.test.example/' "$T/hikyaku.conf"
kill -HUP "$HPID"
sleep 0.5
session "SIGHUP reload takes effect" '<220 reloaded.test.example' '>QUIT\r\n' '<221'
echo "max_recipients = lots" >>"$T/hikyaku.conf"
kill -HUP "$HPID"
sleep 0.5
session "an invalid file is refused, the old configuration stays" '<220 reloaded.test.example' '>QUIT\r\n' '<221'
expect "the refusal is logged" "$T/hikyaku.out" 'reload refused'
check "the daemon is still running" kill -0 "$HPID"

# SIGTERM: an idle session is told 421, the daemon exits 0.
$RAW 127.0.0.1 "$PORT" '<220' '>EHLO c.example\r\n' '<250' '<421' 'eof' >"$T/term.out" 2>&1 &
rawpid=$!
sleep 0.5
stop_hikyaku
wait $rawpid
check "SIGTERM tells an idle session 421" test $? -eq 0


# A listen port in use at start: exit 1 with the reason, and everything
# already started (the PostgreSQL store's sync thread among them) is
# stopped first: no sanitizer report (finish checks), no crash.
$PY -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(15)' "$PORT" &
BLOCK_PID=$!
sleep 0.5
write_config
sed 's#^db = .*#db = postgresql://hikyaku@127.0.0.1:1/hikyaku#' "$T/hikyaku.conf" >"$T/inuse.conf"
timeout 20 "$HIKYAKU" -c "$T/inuse.conf" >"$T/inuse.out" 2>&1
rc=$?
kill "$BLOCK_PID" 2>/dev/null; wait "$BLOCK_PID" 2>/dev/null
check "the SMTP port in use at start: exit 1 (got $rc)" test "$rc" -eq 1
expect "with a clear message" "$T/inuse.out" "cannot listen on 127\.0\.0\.1:$PORT: address already in use"

finish
