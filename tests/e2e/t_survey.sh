#!/bin/bash
# hikyakuctl suppression survey (SPEC §8) end to end, as an operator runs
# it before a shop moves to the delivery service: the old mail logs — the
# shop's Postfix log (lines a real Postfix 3.7 wrote, kept in
# tests/e2e/data/survey/, in its three prefixes, rotated and gzipped,
# overlapping) and the log of a hikyaku that delivered directly to a
# rejecting MX — are surveyed; the addresses whose last outcome was a
# 5.1.x/5.2.1 failure are listed, then imported, and the next mail on the
# service route to each of them is suppressed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""
DATA=$ROOT/tests/e2e/data/survey
export TZ=UTC

# ---- 1. the old relay: hikyaku delivering directly to a rejecting MX ----
start_upstream mx --addr 127.0.0.2 \
	--reject-rcpt 'unknown@dest.test=550 5.1.1 <UNKNOWN@dest.test>: Recipient address rejected: User unknown' \
	--reject-rcpt 'ok1@dest.test=550 5.1.1 <ok1@dest.test>: Recipient address rejected: User unknown' \
	--reject-rcpt 'hk.new@dest.test=550 5.1.1 <hk.new@dest.test>: User unknown (see https://help.test/x(1))' \
	--reject-rcpt 'hk.disabled@dest.test=550 5.2.1 Mailbox disabled for this recipient' \
	--reject-rcpt 'hk.policy@dest.test=554 5.7.1 Message rejected by policy' \
	--reject-rcpt 'hk.grey@dest.test=451 4.7.1 Greylisted, try again later' \
	--reject-rcpt 'hk.revived@dest.test=550 5.1.1 <hk.revived@dest.test>: User unknown' || { finish; exit 1; }
start_upstream sender --addr 127.0.0.3 --port "$UP_PORT_mx" || { finish; exit 1; }
start_upstream svc || { finish; exit 1; }
# The shop's own domain receives hikyaku's bounce notices (MAILER-DAEMON).
start_dns --mx-host=dest.test,mx.dest.test,10 --host-record=mx.dest.test,127.0.0.2 \
	--mx-host=shop.test,mx.shop.test,10 --host-record=mx.shop.test,127.0.0.3 || { finish; exit 1; }
write_config "" "
[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none

[queue]
retry_min = 1s
retry_max = 2s"
start_hikyaku || { finish; exit 1; }
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
send() { # FROM TO[,TO...]
	swaks --server 127.0.0.1 --port "$PORT" --from "$1" --to "$2" --timeout 20 >"$T/send.out" 2>&1 &&
		grep -q '250 2.0.0 Ok: queued as' "$T/send.out"
}
nlog() { grep -c "$1" "${2:-$T/log.jsonl}" 2>/dev/null || true; }
wait_log() { # PATTERN [N [FILE]]
	for _ in $(seq 1 200); do [ "$(nlog "$1" "${3:-}")" -ge "${2:-1}" ] && return 0; sleep 0.1; done
	return 1
}
# UNKNOWN@ in upper case: Postfix's log spells it unknown@.
check "the old relay accepts the mails" send shop@shop.test \
	UNKNOWN@dest.test,ok1@dest.test,hk.new@dest.test,hk.disabled@dest.test,hk.policy@dest.test,hk.grey@dest.test,disabled@dest.test,hk.revived@dest.test
check "the rejections are logged as bounced" wait_log '"event":"bounced"' 6
check "the 451 is logged as deferred" wait_log '"event":"deferred".*"to":"hk.grey@dest.test"'
check "disabled@ (bounced 5.2.1 in Postfix's log) is delivered now" wait_log '"event":"delivered".*"to":"disabled@dest.test"'
# hk.revived@: bounced once, then the mailbox exists again and a later mail is delivered.
stop_upstream mx
start_upstream mx --addr 127.0.0.2 --port "$UP_PORT_mx" || true
sleep 1.1
check "a later mail to hk.revived@ is accepted" send shop@shop.test hk.revived@dest.test
check "and delivered" wait_log '"event":"delivered".*"to":"hk.revived@dest.test"'
stop_hikyaku
cp "$T/log.jsonl" "$T/hikyaku-old.jsonl"

# ---- 2. the shop's Postfix logs, as logrotate leaves them ----
mkdir -p "$T/logs"
# Postfix's maillog_file, whole.
cp "$DATA/postfix-maillog.log" "$T/logs/maillog"
# Traditional syslog, rotated: the older half gzipped, the newer half
# plain, overlapping by 40 lines (copytruncate).
n=$(wc -l <"$DATA/postfix-syslog.log")
head -n $((n / 2 + 20)) "$DATA/postfix-syslog.log" | gzip -c >"$T/logs/mail.log.2.gz"
tail -n +$((n / 2 - 20)) "$DATA/postfix-syslog.log" >"$T/logs/mail.log.1"
# Debian 12 rsyslog, the same lines again, with foreign and broken ones.
{
	echo '2026-12-02T06:17:01.000000+00:00 mail CRON[1234]: (root) CMD (run-parts /etc/cron.hourly)'
	echo 'this line is not a log line'
	cat "$DATA/postfix-rsyslog.log"
	echo '2026-12-02T06:49:41.000000+00:00 mail postfix/smtp[1]: ABCDEF123: to=<broken@dest.test>, relay=x'
} >"$T/logs/mail-rsyslog.log"
# The lines carry no year: the files say when they were written.
touch -d '2026-12-03 00:00:00 UTC' "$T/logs/maillog" "$T/logs/mail.log.2.gz" "$T/logs/mail.log.1"
# Lines a hikyaku log may hold that this relay did not write: a bounce
# learned from the delivery service's DSN, a response with control
# characters, a broken line.
{
	printf '{"ts":"%s","event":"learned","to":"svc.bounced@dest.test","source":"dsn","status":"5.1.1","response":"Amazon SES: 5.1.1 mailbox does not exist"}\n' \
		"$(date -u -d '-5 min' +%Y-%m-%dT%H:%M:%S.000Z)"
	printf '{"ts":"%s","event":"bounced","queue_id":"0123456789ABCDEF01","to":"esc@dest.test","route":"direct","status":"5.1.1","response":"550 5.1.1 \\u001b[31mred\\u001b[0m \\u009b2J and a\\ttab"}\n' \
		"$(date -u -d '-4 min' +%Y-%m-%dT%H:%M:%S.000Z)"
	printf '{"ts":"%s","event":"learned","to":"admin.added@dest.test","source":"admin","status":null,"response":null}\n' \
		"$(date -u -d '-4 min' +%Y-%m-%dT%H:%M:%S.000Z)"
	echo '{"ts":"not a time","event":"bounced","to":"x@dest.test"}'
} >"$T/logs/hikyaku-other.jsonl"
FILES=("$T/logs/mail.log.1" "$T/hikyaku-old.jsonl" "$T/logs/mail.log.2.gz" "$T/logs/maillog"
	"$T/logs/mail-rsyslog.log" "$T/logs/hikyaku-other.jsonl")

# ---- 3. the survey ----
ctl suppression survey "${FILES[@]}" >"$T/survey.out" 2>"$T/survey.err"
check "survey exits 0 when addresses would be suppressed" test $? -eq 0
cat "$T/survey.out" "$T/survey.err" >"$T/survey.all"
echo "# the survey of the test logs:"
sed 's/^/#   /' "$T/survey.all"
expect "the table has a header" "$T/survey.out" '^ADDRESS +FAILURES +FIRST +LAST +STATUS +LAST RESPONSE$'
row() { grep -E "^$1 " "$T/survey.out"; }
check "unknown@: 2 bounces in Postfix's log and 1 in hikyaku's, counted once each across overlapping files" \
	sh -c "grep -Ei '^unknown@dest\.test +3 ' '$T/survey.out'"
check "... shown in the spelling of its last failure (hikyaku's UNKNOWN@)" row 'UNKNOWN@dest\.test'
check "ok1@: delivered by Postfix, bounced later by hikyaku: listed" row 'ok1@dest\.test +1 '
check "disabled@: bounced 5.2.1 by Postfix, delivered later by hikyaku: not listed" \
	sh -c "! grep -q '^disabled@' '$T/survey.out'"
check "revived@ (Postfix) and hk.revived@ (hikyaku): bounced then delivered: not listed" \
	sh -c "! grep -Eq '^(hk\.)?revived@' '$T/survey.out'"
check "5.7.1 policy rejections are not listed" sh -c "! grep -Eq '^(hk\.)?policy@' '$T/survey.out'"
check "4xx deferrals are not listed" sh -c "! grep -Eq '^(hk\.)?grey@|^later@' '$T/survey.out'"
check "550 without an enhanced code (dsn=5.0.0) is not listed" sh -c "! grep -q '^noenh@' '$T/survey.out'"
check "5.2.1 is listed (hikyaku)" row 'hk\.disabled@dest\.test +1 .* 5\.2\.1 '
check "5.1.10 is listed" row 'ms@dest\.test +1 .* 5\.1\.10 '
check "orig_to=: the address delivered to is listed" row 'real\.target@dest\.test'
check "the original case of Postfix's address is kept" row 'Taro\.Yamada@Dest\.TEST +1 '
check "an IPv6 relay's rejection is listed" row 'gone@v6\.test'
check "a response with parentheses" row 'paren@dest\.test'
check "an address only in the rotated .gz file is listed" sh -c "zgrep -q 'Taro.Yamada' '$T/logs/mail.log.2.gz' && ! grep -q 'Taro.Yamada' '$T/logs/mail.log.1' && grep -q '^Taro' '$T/survey.out'"
check "a bounce learned from the delivery service's DSN is listed" row 'svc\.bounced@dest\.test'
check "an address the administrator added is no failure" sh -c "! grep -q '^admin.added@' '$T/survey.out'"
check "the sender got hikyaku's bounce notices" wait_upstream_count sender 1
check "the sender of the bounce notices (Postfix's and hikyaku's) is not listed" sh -c "! grep -q '^shop@' '$T/survey.out'"
check "hikyaku's own bounce with parentheses in the response" row 'hk\.new@dest\.test'
expect "the total" "$T/survey.out" '^total: 1[0-9] addresses would be suppressed \([0-9]+ failures\)$'
expect "control characters from the log are shown escaped" "$T/survey.out" '^esc@dest\.test .*\\x1b\[31mred\\x1b\[0m \\u009b2J and a\\ttab$'
check "no raw control character reaches the terminal" sh -c "! LC_ALL=C grep -q \$'[\x01-\x08\x0b-\x1f\x7f]' '$T/survey.all' && ! grep -qP '\x{9b}' '$T/survey.all'"
expect "malformed and foreign lines are skipped and counted" "$T/survey.err" 'skipped 3 malformed and 1 foreign line'

# The same file read twice counts once; the order of the files does not matter.
ctl suppression survey --json "${FILES[@]}" >"$T/a.json" 2>/dev/null
ctl suppression survey --json "$T/logs/hikyaku-other.jsonl" "$T/logs/maillog" "${FILES[@]}" "$T/hikyaku-old.jsonl" >"$T/b.json" 2>/dev/null
check "files read twice and in another order: the same rows" $PY -c '
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
strip = lambda d: [{k: v for k, v in r.items() if k != "file"} for r in d["addresses"]]
assert strip(a) == strip(b), (strip(a), strip(b))
assert a["failures"] == b["failures"] and a["total"] == b["total"]' "$T/a.json" "$T/b.json"
check "--json: no raw C1 control or DEL either" sh -c "! grep -qP '[\x{80}-\x{9f}\x7f]' '$T/a.json' && grep -q 'u009b2J' '$T/a.json'"
check "--json: the rows and their fields" $PY -c '
import json, re, sys
d = json.load(open(sys.argv[1]))
rows = {r["address"]: r for r in d["addresses"]}
u = rows["UNKNOWN@dest.test"]
assert u["count"] == 3 and u["status"] == "5.1.1", u
assert "User unknown" in u["response"], u
for k in ("first", "last"):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", u[k]), u
assert u["first"].startswith("2026-12-02T06:49:28") and u["first"] < u["last"], u
assert rows["ms@dest.test"]["status"] == "5.1.10"
assert rows["paren@dest.test"]["response"].endswith("(see https://support.example/answer(6596)) for more (in reply to RCPT TO command)"), rows["paren@dest.test"]
assert rows["esc@dest.test"]["response"] == "550 5.1.1 \x1b[31mred\x1b[0m \x9b2J and a\ttab"
assert d["total"] == len(d["addresses"]) and d["failures"] == sum(r["count"] for r in d["addresses"])
assert not any(a.lower() in ("disabled@dest.test", "revived@dest.test", "policy@dest.test", "noenh@dest.test") for a in rows)
l = d["lines"]
assert l["malformed"] == 3 and l["foreign"] == 1 and l["read"] > 600, l
' "$T/a.json"

# --since: only what is at most DUR old.
{
	echo "$(LC_ALL=C date -d '-3 hours' '+%b %d %H:%M:%S') mail postfix/smtp[1]: 1A2B3C4D5E: to=<since.old@dest.test>, relay=mx[192.0.2.1]:25, delay=1, delays=1/0/0/0, dsn=5.1.1, status=bounced (host mx said: 550 5.1.1 no such user (in reply to RCPT TO command))"
	echo "$(LC_ALL=C date -d '-10 min' '+%b %d %H:%M:%S') mail postfix/smtp[1]: 1A2B3C4D5F: to=<since.new@dest.test>, relay=mx[192.0.2.1]:25, delay=1, delays=1/0/0/0, dsn=5.1.1, status=bounced (host mx said: 550 5.1.1 no such user (in reply to RCPT TO command))"
} >"$T/logs/recent.log"
ctl suppression survey --since 1h "$T/logs/recent.log" >"$T/since.out" 2>&1
expect "--since 1h keeps a bounce 10 minutes old" "$T/since.out" '^since\.new@dest\.test '
expect_not "--since 1h drops one 3 hours old" "$T/since.out" '^since\.old@'
ctl suppression survey --since 4h "$T/logs/recent.log" >"$T/since4.out" 2>&1
expect "--since 4h keeps both" "$T/since4.out" '^since\.old@dest\.test '

# Standard input, compressed or not.
ctl suppression survey - <"$T/logs/mail.log.2.gz" >"$T/stdin.out" 2>&1
expect "a .gz file on standard input (\"-\")" "$T/stdin.out" '^Taro\.Yamada@Dest\.TEST '

# The default: the configuration's [log] file.
ctl suppression survey >"$T/default.out" 2>&1
expect "without FILE the [log] file is surveyed" "$T/default.out" '^hk\.new@dest\.test '
expect_not "... and only it" "$T/default.out" '^Taro'

# Exit status and errors.
grep 'status=sent' "$DATA/postfix-maillog.log" >"$T/logs/sent-only.log"
ctl suppression survey "$T/logs/sent-only.log" >"$T/none.out" 2>&1
check "nothing to suppress: exit 1" test $? -eq 1
expect "... and it says so" "$T/none.out" '^total: no address in these logs would be suppressed$'
ctl suppression survey "$T/logs/missing.log" >"$T/missing.out" 2>&1
check "an unreadable file: exit 2" test $? -eq 2
expect "... named in one sentence" "$T/missing.out" "cannot read $T/logs/missing.log: No such file or directory"
head -c 400 "$T/logs/mail.log.2.gz" >"$T/logs/cut.gz"
ctl suppression survey "$T/logs/maillog" "$T/logs/cut.gz" --import >"$T/cut.out" 2>&1
check "a truncated .gz file: exit 2" test $? -eq 2
expect "... which it says" "$T/cut.out" "cannot read $T/logs/cut.gz: the compressed data ends early"
expect "... and nothing is imported" "$T/cut.out" 'stopped; nothing was imported'
ctl suppression export >"$T/export0.csv"
expect_not "... the list holds no imported entry" "$T/export0.csv" ',import,'
ctl suppression survey --frobnicate >"$T/usage.out" 2>&1
check "an unknown option: exit 2" test $? -eq 2
ctl suppression survey --since soon "$T/logs/maillog" >"$T/usage2.out" 2>&1
check "a bad duration: exit 2" test $? -eq 2

# ---- 4. import into the new relay's list, then send through the service ----
rm -f "$T/suppression.db" "$T/suppression.db-wal" "$T/suppression.db-shm"
mv "$T/log.jsonl" "$T/log-old-relay.jsonl"
write_config "" "
[routing]
verified_domains = interfactory1.co.jp

[service]
host = 127.0.0.1
port = $UP_PORT_svc
tls = none

[direct]
port = $UP_PORT_mx
dns_servers = 127.0.0.1:$DNS_PORT
tls = none"
ctl suppression survey --import "${FILES[@]}" >"$T/import.out" 2>"$T/import.err"
check "survey --import exits 0" test $? -eq 0
listed=$(grep -cE '^[^ ]+@[^ ]+ +[0-9]+ ' "$T/import.out")
expect "it says how many were new" "$T/import.out" "^imported: $listed new addresses added to the suppression list, 0 already listed \(not changed\)$"
ctl suppression export >"$T/export.csv"
check "every row is on the list" test "$(grep -c '@' "$T/export.csv")" -eq "$listed"
check "with source import, reason bounced, the status and response kept" sh -c "grep -i '^unknown@dest.test,bounced,5.1.1,.*User unknown.*,import,2026-12-02T06:49:28.000Z,.*,3$' '$T/export.csv'"
check "the import is logged as learned events" test "$(nlog '"event":"learned".*"source":"import"')" -eq "$listed"
ctl suppression survey --import "${FILES[@]}" >"$T/import2.out" 2>&1
check "a second --import exits 0" test $? -eq 0
expect "... and adds nothing" "$T/import2.out" "^imported: 0 new addresses added to the suppression list, $listed already listed \(not changed\)$"
ctl suppression export >"$T/export2.csv"
check "... and changes nothing" cmp "$T/export.csv" "$T/export2.csv"
ctl suppression survey --import --json "${FILES[@]}" >"$T/import3.json" 2>/dev/null
check "--import --json reports the import" $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["import"] == {"new": 0, "already_listed": int(sys.argv[2]), "invalid": 0}, d["import"]' "$T/import3.json" "$listed"

start_hikyaku || { finish; exit 1; }
rcpts=$(grep -oE '^[^ ]+@[^ ]+' "$T/import.out" | paste -sd, -)
check "a service-route mail to every listed address and a good one is accepted" send test@interfactory1.co.jp "$rcpts,good@dest.test"
check "the good recipient is delivered through the service" sh -c "for i in \$(seq 1 150); do grep -q 'good@dest.test' '$T/up-svc/messages.jsonl' && exit 0; sleep 0.1; done; exit 1"
nr=$(echo "$rcpts" | tr , '\n' | wc -l)
check "each listed address is suppressed ($nr)" wait_log '"event":"suppressed".*"route":"service"' "$nr"
check "none of them reached the service" upstream_check svc "not any(r.lower() in '$rcpts'.lower().split(',') for m in msgs for r in m['rcpt_tos'])"
stop_hikyaku

finish
