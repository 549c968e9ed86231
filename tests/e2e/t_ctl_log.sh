#!/bin/bash
# hikyakuctl log reads the relay log (SPEC §7) and shows it the way SPEC §8
# says: a table by default, the lines themselves with --json, filtered by
# time, queue id, recipient, sender and event, and followed across a
# rotation. No daemon: the log is generated here.
. "$(dirname "$0")/lib.sh"

write_config
LOG=$T/log.jsonl
ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" log "$@"; }

# A few hundred events over the last three days, every event type, and
# the expected answers of each query below (computed here, independently).
$PY - "$LOG" "$T" <<'PY'
import json, random, sys, datetime as dt
random.seed(7)
log, tdir = sys.argv[1], sys.argv[2]
now = dt.datetime.now(dt.timezone.utc)
def ts(ago_s):
    t = now - dt.timedelta(seconds=ago_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
ev = []   # (ago_s, dict)
def add(ago, event, **f):
    d = {"ts": ts(ago), "event": event}
    d.update(f)
    ev.append((ago, d))
def out(ago, event, qid, to, route="service", status="2.0.0", resp="250 2.0.0 Ok", **more):
    f = dict(queue_id=qid, to=to, route=route, relay="smtp.ses.example[192.0.2.7]:587",
             status=status, response=resp, tls=True, attempt=1, delay_ms=800)
    f.update(more)
    add(ago, event, **f)

# The mail the checks follow: from Orders@Shop.example two hours ago.
QA = "0000000000000000AA"
add(7200, "received", queue_id=QA, session="S1", client="127.0.0.1", helo="shop",
    **{"from": "Orders@Shop.example"}, header_from="Orders@Shop.example",
    message_id="<a@shop.example>", rcpts=2, size=1234, tls=False, route="service",
    matched="shop.example")
out(7190, "delivered", QA, "alice@example.com", resp="250 2.0.0 Ok: queued as " + "x" * 80)
out(7180, "deferred", QA, "bob@example.com", status="4.4.1", resp="421 4.4.1 try later",
    next_retry=ts(6000))
# SPEC §7 "delayed": the delay warning, naming the recipients still pending.
add(3600 * 1.5, "delayed", queue_id=QA, to=["bob@example.com", "Alice@Example.com"],
    response="421 4.4.1 try later")
out(600, "bounced", QA, "bob@example.com", status="5.1.1", resp="550 5.1.1 no such user")
# Non-ASCII (SMTPUTF8) recipient and response.
QU = "0000000000000000BB"
add(3000, "received", queue_id=QU, session="S2", client="127.0.0.1", helo="shop",
    **{"from": "info@example.jp"}, header_from="info@example.jp", message_id=None,
    rcpts=1, size=999, tls=True, route="direct", matched=None)
out(2990, "delivered", QU, "山田@例え.jp", route="direct", resp="250 配達済み")
# Filler: many mails from several senders to several recipients.
senders = ["shop@example.jp", "news@example.jp", "orders@shop.example"]
rcpts = ["alice@example.com", "Carol@Example.org", "dave@example.net", "erin@example.com"]
for i in range(90):
    qid = "%018X" % (0x1000 + i)
    t0 = random.randint(120, 3 * 86400)
    if abs(t0 - 3600) < 300 or abs(t0 - 86400) < 300:
        t0 += 600
    frm = random.choice(senders)
    tos = random.sample(rcpts, random.randint(1, 3))
    add(t0, "received", queue_id=qid, session="S%d" % i, client="127.0.0.1", helo="shop",
        **{"from": frm}, header_from=frm, message_id="<%d@x>" % i, rcpts=len(tos),
        size=1000 + i, tls=False, route="service", matched=None)
    for j, to in enumerate(tos):
        k = random.choice(["delivered", "deferred", "bounced", "expired", "suppressed", "deleted"])
        t = t0 - 5 - j
        if k == "expired":
            add(t, k, queue_id=qid, to=to, route="service", attempt=9, response="421 gone")
        elif k == "suppressed":
            add(t, k, queue_id=qid, to=to, route="service", reason="bounced (5.1.1)")
        elif k == "deleted":
            add(t, k, queue_id=qid, to=to)
        else:
            out(t, k, qid, to, status={"delivered": "2.0.0", "deferred": "4.7.0",
                                        "bounced": "5.7.1"}[k])
for i in range(15):
    t = random.randint(120, 3 * 86400)
    add(t, "rejected", session="R%d" % i, client="192.0.2.%d" % i,
        **{"from": random.choice(senders + [None])}, to="x%d@example.com" % i,
        status="5.7.1", response="554 5.7.1 Relay access denied")
    add(t - 1, "learned", to="x%d@example.com" % i, source="delivery", status="5.1.1",
        response=None)
ev.sort(key=lambda e: -e[0])
lines = [json.dumps(d, ensure_ascii=False, separators=(",", ":")) for _, d in ev]
lines.insert(len(lines) // 2, '{"ts":"2026-01-01T00:00:00.000Z","event":"delivered",')
open(log, "w", encoding="utf-8").write("\n".join(lines) + "\n")

# The expected answers.
ds = [d for _, d in ev]
def tos(d):   # "to" is one address, or a list of them ("deleted", "delayed")
    t = d.get("to") or []
    return [x.lower() for x in (t if isinstance(t, list) else [t])]
agos = [a for a, _ in ev]
rcv_from = {}
def from_ok(d, addr):
    if "from" in d:
        return d["from"] is not None and d["from"].lower() == addr
    return d.get("queue_id") in rcv_from
expect = {"all": len(ds), "since1h": sum(1 for a in agos if a <= 3600),
          "since1d": sum(1 for a in agos if a <= 86400),
          "qa": sum(1 for d in ds if d.get("queue_id") == QA),
          "alice": sum(1 for d in ds if "alice@example.com" in tos(d)),
          "carol": sum(1 for d in ds if "carol@example.org" in tos(d)),
          "delayed": sum(1 for d in ds if d["event"] == "delayed"),
          "events": sum(1 for d in ds if d["event"] in ("bounced", "expired", "suppressed")),
          "alice_delivered_1d": sum(1 for a, d in ev if a <= 86400 and d["event"] == "delivered"
                                    and d.get("to") == "alice@example.com")}
n = 0
for d in ds:   # in file order: a received comes before its outcomes
    if d["event"] == "received" and d["from"].lower() == "orders@shop.example":
        rcv_from[d["queue_id"]] = 1
    if from_ok(d, "orders@shop.example"):
        n += 1
expect["from"] = n
for k, v in expect.items():
    open("%s/exp_%s" % (tdir, k), "w").write("%d\n" % v)
PY
exp() { cat "$T/exp_$1"; }
check "the log was generated with every event type" \
	bash -c "for e in received delivered deferred bounced expired suppressed rejected deleted learned delayed; do grep -q \"\\\"event\\\":\\\"\$e\\\"\" '$LOG' || exit 1; done"

# --- The table ---
TZ=Asia/Tokyo ctl >"$T/table.out" 2>"$T/table.err"
rc=$?
check "the table exits 0" test "$rc" -eq 0
expect "a header line" "$T/table.out" '^TIME +QUEUE ID +EVENT +RECIPIENT +ROUTE +STATUS +RESPONSE$'
check "one row per well-formed event" test "$(($(wc -l <"$T/table.out") - 1))" -eq "$(exp all)"
expect "the malformed line is counted on stderr" "$T/table.err" '^hikyakuctl: 1 malformed line skipped\.$'
# The columns line up: every column starts where its header does (display
# width, so that 山田 counts as four columns).
$PY - "$T/table.out" >"$T/align.out" 2>&1 <<'PY'
import sys, unicodedata
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
hdr = lines[0]
starts = [hdr.index(h) for h in ("QUEUE ID", "EVENT", "RECIPIENT", "ROUTE", "STATUS", "RESPONSE")]
def cols(s):
    out, w = [], 0
    for ch in s:
        out.append(w)
        w += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return out, w
bad = 0
for l in lines[1:]:
    pos, _ = cols(l)
    at = {p: i for i, p in enumerate(pos)}
    for s in starts:
        i = at.get(s)
        if i is None or l[i] == " " or l[i - 1] != " " or l[i - 2] != " ":
            print("misaligned:", l); bad += 1; break
sys.exit(1 if bad else 0)
PY
if [ $? -eq 0 ]; then ok "columns are aligned, separated by two spaces"; else nok "columns are aligned" "$T/align.out"; fi
# Local time: the ts of the received event of QA, shown in Asia/Tokyo.
qa_ts=$(grep -F '"queue_id":"0000000000000000AA"' "$LOG" | grep -F '"received"' | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())["ts"])')
qa_local=$(TZ=Asia/Tokyo date -d "$qa_ts" '+%Y-%m-%d %H:%M:%S')
expect "time in local time" "$T/table.out" "^$qa_local  0000000000000000AA  received +Orders@Shop\\.example +service +- +2 rcpts, 1234 bytes\$"
expect "delivered: recipient, route, status, response" "$T/table.out" \
	'  0000000000000000AA  delivered +alice@example\.com +service +2\.0\.0 +250 2\.0\.0 Ok: queued as x+\.\.\.$'
check "the response is cut at 60 characters" \
	bash -c "grep -F '0000000000000000AA  delivered' '$T/table.out' | grep -qE '  250 2\\.0\\.0 Ok: queued as x{36}\\.\\.\\.\$'"
expect "suppressed shows the reason" "$T/table.out" '  suppressed +[^ ]+ +service +- +bounced \(5\.1\.1\)$'
expect "rejected without a queue id" "$T/table.out" '  -  +rejected +x[0-9]+@example\.com +- +5\.7\.1 +554 5\.7\.1 Relay access denied$'
expect "learned" "$T/table.out" '  learned +x[0-9]+@example\.com +- +5\.1\.1 +\(delivery\)$'
expect "non-ASCII recipient and response" "$T/table.out" '  delivered +山田@例え\.jp +direct +2\.0\.0 +250 配達済み$'

# --- --json: the lines as they are ---
ctl --json --queue-id 0000000000000000AA >"$T/qa.json" 2>"$T/qa.err"
grep -F '"queue_id":"0000000000000000AA"' "$LOG" >"$T/qa.want"
check "--json --queue-id prints the file's own lines" cmp "$T/qa.json" "$T/qa.want"
check "--queue-id: the expected number of events" test "$(wc -l <"$T/qa.json")" -eq "$(exp qa)"
ctl --json >"$T/all.json" 2>/dev/null
check "--json without filters: every well-formed line" test "$(wc -l <"$T/all.json")" -eq "$(exp all)"
check "--json keeps the non-ASCII bytes" grep -qF '"to":"山田@例え.jp"' "$T/all.json"

# --- Filters ---
n=$(ctl --json --since 1h | wc -l)
check "--since 1h ($n, want $(exp since1h))" test "$n" -eq "$(exp since1h)"
n=$(ctl --json --since=1d | wc -l)
check "--since=1d ($n, want $(exp since1d))" test "$n" -eq "$(exp since1d)"
n=$(ctl --json --to ALICE@example.COM | wc -l)
check "--to is case-insensitive ($n, want $(exp alice))" test "$n" -eq "$(exp alice)"
n=$(ctl --json --to carol@example.org | wc -l)
check "--to matches a mixed-case address in the log ($n, want $(exp carol))" test "$n" -eq "$(exp carol)"
n=$(ctl --json --to alice@example | wc -l)
check "--to is an exact address, not a substring" test "$n" -eq 0
ctl --json --from orders@shop.example >"$T/from.json" 2>/dev/null
n=$(wc -l <"$T/from.json")
check "--from follows the queue id to its outcomes ($n, want $(exp from))" test "$n" -eq "$(exp from)"
expect "--from includes the bounce of QA" "$T/from.json" '"event":"bounced","queue_id":"0000000000000000AA"'
expect_not "--from excludes other senders" "$T/from.json" '"from":"(shop|news)@example\.jp"'
n=$(ctl --json --event bounced,expired --event suppressed | wc -l)
check "--event, repeated and comma-separated ($n, want $(exp events))" test "$n" -eq "$(exp events)"
n=$(ctl --json --event delayed | wc -l)
check "--event delayed ($n, want $(exp delayed))" test "$n" -eq "$(exp delayed)"
ctl --event delayed >"$T/delayed.out"
expect "a delayed row lists its recipients and the last response" "$T/delayed.out" \
	'0000000000000000AA +delayed +bob@example\.com,Alice@Example\.com .*421 4\.4\.1 try later'
n=$(ctl --json --to alice@example.com --event delivered --since 1d | wc -l)
check "filters combine ($n, want $(exp alice_delivered_1d))" test "$n" -eq "$(exp alice_delivered_1d)"
ctl --queue-id 0000000000000000AA --event delivered >"$T/one.out"
check "table of one event: header and one row" test "$(wc -l <"$T/one.out")" -eq 2
n=$(ctl --json --to '山田@例え.jp' | wc -l)
check "--to with a non-ASCII address" test "$n" -eq 1
ctl --queue-id FFFFFFFFFFFFFFFFFF >"$T/none.out" 2>"$T/none.err"
rc=$?
check "no match: exit 0" test "$rc" -eq 0
check "no match: nothing on stdout" test ! -s "$T/none.out"

# --- Errors ---
ctl --since 5x >/dev/null 2>"$T/e1"; rc=$?
check "a bad duration is a usage error" test "$rc" -eq 2
expect "and says so" "$T/e1" '^hikyakuctl: log: --since "5x" is not a duration'
ctl --event nope >/dev/null 2>"$T/e2"; rc=$?
check "an unknown event is a usage error" test "$rc" -eq 2
ctl --bogus >/dev/null 2>"$T/e3"; rc=$?
check "an unknown option is a usage error" test "$rc" -eq 2
ctl --to >/dev/null 2>"$T/e4"; rc=$?
check "an option without its value is a usage error" test "$rc" -eq 2
sed -i "s|^file = .*|file = $T/missing.jsonl|" "$T/hikyaku.conf"
ctl >/dev/null 2>"$T/e5"; rc=$?
check "a missing log: exit 2" test "$rc" -eq 2
expect "a missing log: one sentence" "$T/e5" "^hikyakuctl: cannot read the log $T/missing\\.jsonl: No such file or directory\\.$"
sed -i "s|^file = .*|file = $LOG|" "$T/hikyaku.conf"

# --- --follow across a rotation (hikyakuctl itself in the background, so
# that the signals reach it, not a subshell) ---
line1='{"ts":"2026-11-26T00:00:01.000Z","event":"delivered","queue_id":"F00000000000000001","to":"f1@example.com"}'
line2='{"ts":"2026-11-26T00:00:02.000Z","event":"delivered","queue_id":"F00000000000000002","to":"f2@example.com"}'
line3='{"ts":"2026-11-26T00:00:03.000Z","event":"bounced","queue_id":"F00000000000000003","to":"f3@example.com"}'
"$HIKYAKUCTL" -c "$T/hikyaku.conf" log --follow --json --event delivered,bounced >"$T/follow.out" 2>"$T/follow.err" &
FPID=$!
sleep 0.5
echo "$line1" >>"$LOG"
sleep 0.5
mv "$LOG" "$LOG.1"
echo "$line2" >>"$LOG.1"        # written to the old file after the rename
: >"$LOG"
echo "$line3" >>"$LOG"
for _ in $(seq 1 30); do
	grep -q F00000000000000003 "$T/follow.out" && break
	sleep 0.1
done
kill -TERM "$FPID"
rc=0
wait "$FPID" || rc=$?
check "--follow exits 0 on SIGTERM" test "$rc" -eq 0
check "--follow printed the existing lines first" \
	test "$(grep -c '"event":"\(delivered\|bounced\)"' "$LOG.1")" -le "$(wc -l <"$T/follow.out")"
expect "--follow printed the appended line" "$T/follow.out" "^$line1\$"
expect "--follow read the old file to its end" "$T/follow.out" "^$line2\$"
expect "--follow reopened the rotated log" "$T/follow.out" "^$line3\$"
check "each line once" test "$(grep -c F0000000000000000 "$T/follow.out")" -eq 3
# Truncation: the same file, shorter; and SIGINT.
: >"$T/t.jsonl"
sed -i "s|^file = .*|file = $T/t.jsonl|" "$T/hikyaku.conf"
printf '%s\n%s\n' "$line1" "$line2" >"$T/t.jsonl"
"$HIKYAKUCTL" -c "$T/hikyaku.conf" log --follow --to f3@example.com >"$T/trunc.out" 2>&1 &
FPID=$!
sleep 0.5
: >"$T/t.jsonl"
sleep 0.5
echo "$line3" >>"$T/t.jsonl"
for _ in $(seq 1 30); do
	grep -q F00000000000000003 "$T/trunc.out" && break
	sleep 0.1
done
kill -INT "$FPID"
rc=0
wait "$FPID" || rc=$?
check "--follow exits 0 on SIGINT" test "$rc" -eq 0
expect "--follow table after a truncation" "$T/trunc.out" '  F00000000000000003  bounced +f3@example\.com +- +- +-$'

finish
