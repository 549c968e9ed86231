#!/bin/bash
# An upgrade keeps the queue: the spool of the file-per-mail release
# (tests/e2e/fixtures/spool-r1, made by fixtures/make_spool_r1.sh: three
# mails, each tried once and deferred) is read by this build. What the
# operator checks: hikyakuctl lists the three mails, with the daemon down
# and then running while their MX is still down; once the MX is up and
# the operator retries, each mail arrives once, with its recipients and
# its message bytes as queued, and the spool empties.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
# shellcheck disable=SC2034 # read by write_config in lib.sh
DEFAULT_DIRECT=""
FIX=$ROOT/tests/e2e/fixtures/spool-r1

ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
mapfile -t IDS < <(ls "$FIX/mail")
check "the fixture has three mails" test "${#IDS[@]}" -eq 3
A=${IDS[0]} # alice@ and bob@upgrade.test
B=${IDS[1]} # carol@, a raw 8-bit UTF-8 Subject:
C=${IDS[2]} # dave@, a line starting with a dot

mkdir -p "$T/queue"
cp -R "$FIX/mail" "$FIX/state" "$T/queue/"

# The MX of upgrade.test is 127.0.0.2:$P, down until the operator's retry.
P=$(free_port)
start_dns --mx-host=upgrade.test,mx.upgrade.test,10 --host-record=mx.upgrade.test,127.0.0.2 || { finish; exit 1; }
# The lifetime is long enough for the fixture's arrival times (December
# 2026) to stay inside it for years (no maximum is enforced:
# config/config_value.c); delay warnings are off (the default). Retries are
# seconds apart: a mail that is due at the start (its state file's next try
# is past, as it is on any day after the fixture was made) meets the MX
# down, and its domain is then "down" (docs/delivery.md) until retry_min,
# which an operator's retry does not lift.
write_config "" "[direct]
port = $P
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 2s
retry_max = 4s
lifetime = 3650d"

# The daemon down: hikyakuctl reads the old spool itself.
ctl queue list >"$T/list0.out" 2>"$T/list0.err"
check "queue list of the old spool, daemon down, exits 0" test $? -eq 0
expect "it says it read the spool" "$T/list0.err" "read from the spool $T/queue"
for id in "$A" "$B" "$C"; do
	expect "it lists $id" "$T/list0.out" "^$id +.* direct +1 "
done
expect "with the old deferral's reason" "$T/list0.out" '^    to alice@upgrade.test: DNS lookup of MX for upgrade.test failed'
expect "a total of 3 mails, 4 recipients" "$T/list0.out" '^-- 3 mails, 4 recipients pending'
check "the tests' reader sees the same three" test "$(queued_ids | tr '\n' ' ')" = "$A $B $C "

# The new daemon on the old spool, the MX still down: all three stay.
# Their state files say when they are due (an hour after the old try):
# the daemon waits until then, or tries them at once when that is past
# (the MX is down: deferred again, and again).
start_hikyaku || { finish; exit 1; }
ctl queue list >"$T/list1.out" 2>&1
check "queue list through the daemon exits 0" test $? -eq 0
for id in "$A" "$B" "$C"; do
	expect "the daemon lists $id" "$T/list1.out" "^$id +.* direct +[1-9][0-9]* "
done
expect "with the recipients pending" "$T/list1.out" '^-- 3 mails, 4 recipients pending'
ctl queue show "$B" >"$T/show.out" 2>&1
expect "queue show: the old mail's recipient" "$T/show.out" '^  carol@upgrade.test +pending'
ctl status >"$T/status.out" 2>&1
expect "status counts them" "$T/status.out" '^queue: +3 mails, 4 recipients pending'
check "nothing expired or bounced" test "$(log_count expired True)$(log_count bounced True)" = 00

# The MX comes up; the operator retries now (or, for a domain found down
# a moment ago, the next retry in a few seconds sends them).
start_upstream mx --addr 127.0.0.2 --port "$P" || { finish; exit 1; }
ctl queue retry --all >"$T/retry.out" 2>&1
expect "queue retry --all counts the three" "$T/retry.out" '^retry scheduled for 3 mails$'
check "the MX gets three messages" wait_upstream_count mx 3 20
for id in "$A" "$B" "$C"; do
	check "$id is logged delivered" wait_log delivered "e['queue_id'] == '$id'" 1 10
done
sleep 1
check "each mail arrived once, from its sender, to its recipients, with its message bytes as queued" \
	$PY - "$(upstream_file mx)" "$FIX/mail" <<'PYEOF'
import base64, json, os, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
assert len(msgs) == 3, [m["rcpt_tos"] for m in msgs]
got = {}
for m in msgs:
    data = base64.b64decode(m["data_b64"])
    got.setdefault(data, []).append(m)
for qid in sorted(os.listdir(sys.argv[2])):
    raw = open(os.path.join(sys.argv[2], qid), "rb").read()
    magic, env, msg = raw.split(b"\n", 2)
    env = json.loads(env)
    same = got.get(msg, [])
    assert len(same) == 1, (qid, len(same), msg[:200])
    m = same[0]
    assert m["mail_from"] == env["from"], (qid, m["mail_from"])
    assert sorted(m["rcpt_tos"]) == sorted(r["addr"] for r in env["rcpts"]), (qid, m["rcpt_tos"])
    print(qid, "ok:", m["rcpt_tos"], len(msg), "bytes")
PYEOF
check "the 8-bit Subject: arrived as its UTF-8 bytes" upstream_check mx \
	'any("Subject: ご注文ありがとうございます\r\n" in data(m) for m in msgs)'
check "the line with a leading dot arrived unstuffed" upstream_check mx \
	'any("\r\n.A line with a leading dot.\r\n" in data(m) for m in msgs)'
for _ in $(seq 1 50); do [ "$(queued_count)" -eq 0 ] && break; sleep 0.1; done
check "the spool is empty" test "$(queued_count)" -eq 0
check "and no state file is left" test -z "$(ls "$T/queue/state" 2>/dev/null)"
ctl queue list >"$T/list2.out" 2>&1
expect "queue list says the queue is empty" "$T/list2.out" '^The queue is empty\.$'

# A mail queued after the upgrade goes too, and gets a later id.
smtp --from shop@example.jp --to eve@upgrade.test --body "after the upgrade" >"$T/new.out" 2>&1
N=$(sed -n 's/.*queued as \([0-9A-F]\{18\}\).*/\1/p' "$T/new.out" | head -n 1)
check "a new mail is queued" test -n "$N"
check "with an id above the old ones" test "$N" \> "$C"
check "and is delivered" wait_upstream_count mx 4 20
check "nothing expired or bounced at all" test "$(log_count expired True)$(log_count bounced True)" = 00
stop_hikyaku
check "the spool is empty at the end" test "$(queued_count)" -eq 0
stop_upstreams
stop_dns
finish
