#!/bin/bash
# Delay warnings (SPEC §3 [queue] delay_warning, §5, §7 "delayed"), end to
# end: with delay_warning = 3s and an MX host answering 451, the sender of
# a mail still pending gets exactly one RFC 3464 report with Action:
# delayed (Status 4.x.x, the last response as Diagnostic-Code,
# Will-Retry-Until the end of the lifetime) for the recipients still
# pending; a restart does not send it again (the state file records it);
# once the host accepts, the mail is delivered and nothing more is sent;
# a mail from the null sender is never warned; and a mail that stays
# undeliverable still expires at its lifetime, with its failure report.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

ctl() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }
qid_of() { grep -oE 'queued as [0-9A-F]{18}' "$1" | awk '{print $3}'; }
got() { upstream_rcpts "$1" | grep -cx "$2"; }
wait_rcpt() { # wait_rcpt UPSTREAM ADDR [SECONDS]
	local i
	for ((i = 0; i < ${3:-20} * 10; i++)); do [ "$(got "$1" "$2")" -ge 1 ] && return 0; sleep 0.1; done
	return 1
}

# reports QID: the reports the sender's mailbox holds about mail QID, one
# JSON line each, parsed with Python's email package: subject, envelope,
# and per recipient the fields of the message/delivery-status part.
reports() {
	$PY - "$(upstream_file sender)" "$1" <<'PYEOF'
import base64, email, email.policy, json, sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    msg = email.message_from_bytes(base64.b64decode(m["data_b64"]), policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        continue
    parts = list(msg.iter_parts())
    st = parts[1]
    # RFC 3464 §2.1: the per-message block, then one block per recipient.
    raw = st.get_payload()
    if isinstance(raw, list):   # email parses message/delivery-status into blocks
        blocks = [dict((k, str(v)) for k, v in b.items()) for b in raw]
    else:
        blocks = [dict(ln.split(": ", 1) for ln in b.splitlines() if ": " in ln)
                  for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if blocks[0].get("X-Hikyaku-Queue-ID") != sys.argv[2]:
        continue
    print(json.dumps({"subject": str(msg["Subject"]), "mail_from": m["mail_from"],
                      "rcpt_tos": m["rcpt_tos"], "report_type": msg.get_param("report-type"),
                      "text": parts[0].get_content(), "rcpts": blocks[1:], "ts": m["ts"]}))
PYEOF
}
count_reports() { reports "$1" | grep -c '"rcpts"'; }

start_upstream late --addr 127.0.0.2 --reject-mail '451 4.3.0 Try again later' || { finish; exit 1; }
P=$UP_PORT_late
start_upstream sender --addr 127.0.0.3 --port "$P" || { finish; exit 1; }
start_upstream fine --addr 127.0.0.4 --port "$P" || { finish; exit 1; }
start_dns --mx-host=late.test,mx.late.test,10 --host-record=mx.late.test,127.0.0.2 \
	--mx-host=sender.test,mx.sender.test,10 --host-record=mx.sender.test,127.0.0.3 \
	--mx-host=fine.test,mx.fine.test,10 --host-record=mx.fine.test,127.0.0.4 || { finish; exit 1; }

conf() { # conf LIFETIME
	write_config "" "
[direct]
port = $P
dns_servers = 127.0.0.1:$DNS_PORT
tls = none
connect_timeout = 3s
timeout = 10s

[queue]
retry_min = 1s
retry_max = 2s
lifetime = $1
delay_warning = 3s"
}
conf 1h
check "the configuration with delay_warning = 3s is valid" "$HIKYAKU" -c "$T/hikyaku.conf" --check
start_hikyaku || { finish; exit 1; }

# A: two recipients at the 451 host, one that is delivered at once.
swaks --server 127.0.0.1 --port "$PORT" --from shop@sender.test --to u1@late.test,u2@late.test,v@fine.test \
	--header 'Subject: order 1234' --timeout 20 >"$T/a.out" 2>&1
A=$(qid_of "$T/a.out")
check "mail A is queued" test -n "$A"
# N: the null sender. (swaks --from '' would send root@host: '<>' is the null sender.)
swaks --server 127.0.0.1 --port "$PORT" --from '<>' --to n1@late.test --timeout 20 >"$T/n.out" 2>&1
N=$(qid_of "$T/n.out")
check "mail N from the null sender is queued" test -n "$N"
check "N really has the null sender (received: from \"\")" \
	test "$(log_count received "e['queue_id'] == '$N' and e['from'] == ''")" -eq 1
check "v@fine.test is delivered" wait_rcpt fine v@fine.test
check "u1 and u2 are deferred with 451" wait_log deferred "e['queue_id'] == '$A' and e['response'].startswith('451')" 2 10

check "the delay warning of A is logged (delayed)" wait_log delayed "e['queue_id'] == '$A'" 1 20
check "... and reaches the sender's mailbox" wait_upstream_count sender 1 10
sleep 0.5
reports "$A" >"$T/rep1.jsonl"
check "exactly one report about A" test "$(count_reports "$A")" -eq 1
check "it is an RFC 3464 report: Action: delayed, Status 4.3.0, the 451 as Diagnostic-Code, Will-Retry-Until about 1h after arrival, for u1 and u2 only" \
	$PY - "$T/rep1.jsonl" "$T/log.jsonl" "$A" <<'PYEOF'
import email.utils, json, sys
r = json.loads(open(sys.argv[1]).readline())
ev = [json.loads(l) for l in open(sys.argv[2])]
arr = [e for e in ev if e["event"] == "received" and e["queue_id"] == sys.argv[3]][0]
import datetime
t_arr = datetime.datetime.fromisoformat(arr["ts"].replace("Z", "+00:00")).timestamp()
print(json.dumps(r, ensure_ascii=False)[:1500])
assert r["report_type"] == "delivery-status", r
assert r["mail_from"] == "" and r["rcpt_tos"] == ["shop@sender.test"], r
assert r["subject"].startswith("Delayed Mail"), r["subject"]
assert "warning only" in r["text"] and "order 1234" in r["text"], r["text"]
rc = {x["Final-Recipient"]: x for x in r["rcpts"]}
assert sorted(rc) == ["rfc822; u1@late.test", "rfc822; u2@late.test"], rc
for x in rc.values():
    assert x["Action"] == "delayed", x
    assert x["Status"].startswith("4.") and x["Status"] == "4.3.0", x
    assert x["Diagnostic-Code"] == "smtp; 451 4.3.0 Try again later", x
    until = email.utils.parsedate_to_datetime(x["Will-Retry-Until"]).timestamp()
    assert abs(until - (t_arr + 3600)) < 2, (until, t_arr)
    assert "Last-Attempt-Date" in x, x
print("ok")
PYEOF
ctl queue show "$A" --json >"$T/show_a.json" 2>&1
check "the delayed event names the pending recipients and the last response (SPEC §7), at delay_warning after arrival" \
	$PY - "$T/log.jsonl" "$A" "$T/show_a.json" <<'PYEOF'
import datetime, json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ts = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
d = [e for e in ev if e["event"] == "delayed" and e["queue_id"] == sys.argv[2]]
arrival = ts(json.load(open(sys.argv[3]))["arrival"])   # the mail's own arrival time
print(d, round(ts(d[0]["ts"]) - arrival, 2), "s after arrival")
assert len(d) == 1 and sorted(d[0]["to"]) == ["u1@late.test", "u2@late.test"], d
assert d[0]["response"] == "451 4.3.0 Try again later", d
assert 3.0 <= ts(d[0]["ts"]) - arrival < 8, "not at delay_warning"
PYEOF
echo "# the delayed event: $(grep '"event":"delayed"' "$T/log.jsonl")"
ctl queue show "$A" >"$T/show.out" 2>&1
expect "queue show says the warning was sent" "$T/show.out" '^Delayed: +a delay warning was sent to the sender '
check "the state file records it (warned_ms)" grep -q '"warned_ms":[0-9]' "$T/queue/state/$A"

# More retries: no second warning.
sleep 4
check "after more retries still one report and one delayed event" \
	test "$(count_reports "$A")$(log_count delayed "e['queue_id'] == '$A'")" = 11
check "A was retried meanwhile" test "$(log_count deferred "e['queue_id'] == '$A'")" -ge 6

# A restart (kill -9: the state file is all there is) sends none again.
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=""
start_hikyaku || { finish; exit 1; }
n0=$(log_count deferred "e['queue_id'] == '$A'")
for _ in $(seq 1 100); do [ "$(log_count deferred "e['queue_id'] == '$A'")" -ge $((n0 + 4)) ] && break; sleep 0.1; done
sleep 1
check "after a restart A is retried ($(log_count deferred "e['queue_id'] == '$A'") deferrals)" \
	test "$(log_count deferred "e['queue_id'] == '$A'")" -ge $((n0 + 4))
check "... and no second warning is sent" test "$(count_reports "$A")$(log_count delayed "e['queue_id'] == '$A'")" = 11

# The null sender is never warned.
check "N (null sender) is past delay_warning and still queued" queued_has "$N"
check "N got no delayed event" test "$(log_count delayed "e['queue_id'] == '$N'")" -eq 0
check "and nothing went to a null address" upstream_check sender 'all(m["rcpt_tos"] == ["shop@sender.test"] for m in msgs)'

# The host accepts again: delivered, and nothing more reaches the sender.
stop_upstream late
start_upstream late --addr 127.0.0.2 --port "$P" || { finish; exit 1; }
check "u1 is delivered once the host accepts" wait_rcpt late u1@late.test 20
check "... and u2" wait_rcpt late u2@late.test 10
check "... and N's n1" wait_rcpt late n1@late.test 10
sleep 3
check "A's sender got exactly the one warning, no failure report" \
	test "$(count_reports "$A")$(upstream_count sender)" = 11
check "one delayed event in all" test "$(log_count delayed 'True')" -eq 1
check "A has left the queue" not queued_has "$A"

# ---- the lifetime still ends it: a warning, then the failure report ------
stop_hikyaku
stop_upstream late
start_upstream late --addr 127.0.0.2 --port "$P" --reject-mail '451 4.3.0 Try again later' || { finish; exit 1; }
conf 8s
start_hikyaku || { finish; exit 1; }
swaks --server 127.0.0.1 --port "$PORT" --from shop@sender.test --to x@late.test --timeout 20 >"$T/b.out" 2>&1
B=$(qid_of "$T/b.out")
swaks --server 127.0.0.1 --port "$PORT" --from '<>' --to y@late.test --timeout 20 >"$T/n2.out" 2>&1
N2=$(qid_of "$T/n2.out")
check "B is warned at 3 s" wait_log delayed "e['queue_id'] == '$B'" 1 15
check "B expires at its lifetime (8 s)" wait_log expired "e['queue_id'] == '$B'" 1 20
check "... and its sender gets the failure report" wait_upstream_count sender 3 15
sleep 0.5
reports "$B" >"$T/rep2.jsonl"
check "B's sender got two reports: delayed (Will-Retry-Until its 8 s lifetime), then failed 4.4.7" \
	$PY - "$T/rep2.jsonl" <<'PYEOF'
import email.utils, json, sys
rs = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: r["ts"])
print([(r["subject"], r["rcpts"]) for r in rs])
assert len(rs) == 2, rs
d, f = rs
assert d["rcpts"][0]["Action"] == "delayed" and d["rcpts"][0]["Status"] == "4.3.0", d
assert f["rcpts"][0]["Action"] == "failed" and f["rcpts"][0]["Status"] == "4.4.7", f
assert f["subject"] == "Undelivered Mail Returned to Sender", f
until = email.utils.parsedate_to_datetime(d["rcpts"][0]["Will-Retry-Until"]).timestamp()
assert 0 <= f["ts"] - until < 4, (f["ts"], until)
PYEOF
check "N2 (null sender) expired too" wait_log expired "e['queue_id'] == '$N2'" 1 10
sleep 1
check "N2 got neither a warning nor a failure report" \
	test "$(log_count delayed "e['queue_id'] == '$N2'")$(upstream_count sender)" = 03
finish
