#!/bin/bash
# bench/survey_bench.sh — time and peak memory of `hikyakuctl suppression
# survey` on a large generated Postfix log.
#
#   bench/survey_bench.sh [SIZE_MB] [BUILD]      (defaults: 1024, build)
#
# Generates SIZE_MB of Postfix syslog lines under /var/tmp (traditional
# prefix; per mail: smtpd connect/client/disconnect, cleanup, qmgr from= and
# removed, one delivery record per recipient; 400 000 distinct recipients
# of which 3 % always bounce with 5.1.1, some with 5.7.1, some deferred
# with 4.x.x first; bounce notices to the sender), then runs the survey on
# it under /usr/bin/time -v and prints the elapsed time, the peak RSS and
# the survey's total. The generated file is deleted afterwards.
#
# SURVEY_BENCH_FORMAT=hikyaku generates hikyaku's own JSON lines instead
# (received, delivered, deferred, bounced, learned); SURVEY_BENCH_GZIP=1
# also surveys the file gzip-compressed (as logrotate leaves it).
set -eu
SIZE_MB=${1:-1024}
BUILD=${2:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CTL=$ROOT/$BUILD/hikyakuctl
[ -x "$CTL" ] || { echo "survey_bench: $CTL is missing: build first" >&2; exit 1; }
W=$(mktemp -d /var/tmp/hikyaku-survey-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
LOG=$W/mail.log

echo "survey_bench: generating $SIZE_MB MB in $LOG"
/usr/bin/python3 - "$LOG" "$SIZE_MB" "${SURVEY_BENCH_FORMAT:-postfix}" <<'PYEOF'
import json, random, sys
path, size_mb, fmt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = size_mb * 1024 * 1024
rnd = random.Random(20261202)
N = 400000
bad = set(rnd.sample(range(N), N * 3 // 100))
policy = set(rnd.sample(range(N), N // 200))
months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
addr = lambda i: "member%06d@%s" % (i, ("docomo.ne.jp", "ezweb.ne.jp", "gmail.com", "yahoo.co.jp", "example.jp")[i % 5])
t = 0  # seconds since 1 January, 00:00
written = 0
qn = 0x1000000
out = open(path, "w", buffering=1 << 22)
buf = []
def stamp(s):
    d, r = divmod(s, 86400)
    m, day = 0, d + 1
    for m, ml in enumerate((31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)):
        if day <= ml:
            break
        day -= ml
    return "%s %2d %02d:%02d:%02d" % (months[m], day, r // 3600, r // 60 % 60, r % 60)
while written < limit:
    t += rnd.randint(0, 3)
    if t >= 364 * 86400:
        t = 0
    ts = stamp(t)
    qn = (qn * 1103515245 + 12345) & 0xFFFFFFFFFF
    q = "%010X" % qn
    pid = rnd.randint(1000, 60000)
    h = "%s mail postfix/" % ts
    rcpts = [rnd.randrange(N) for _ in range(1 if rnd.random() < 0.9 else rnd.randint(2, 5))]
    lines = [
        "%ssmtpd[%d]: connect from localhost[127.0.0.1]" % (h, pid),
        "%ssmtpd[%d]: %s: client=localhost[127.0.0.1]" % (h, pid, q),
        "%scleanup[%d]: %s: message-id=<%s.%d@shop.example.jp>" % (h, pid + 1, q, q, t),
        "%sqmgr[812]: %s: from=<order@shop.example.jp>, size=%d, nrcpt=%d (queue active)" % (h, q, rnd.randint(2000, 40000), len(rcpts)),
        "%ssmtpd[%d]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=%d data=1 quit=1 commands=%d" % (h, pid, len(rcpts), 4 + len(rcpts)),
    ]
    bounced = False
    for r in rcpts:
        a = addr(r)
        relay = "mx%d.%s[203.0.113.%d]:25" % (r % 3, a.split("@")[1], r % 250 + 1)
        if r in bad:
            lines.append("%ssmtp[%d]: %s: to=<%s>, relay=%s, delay=0.4, delays=0.01/0/0.2/0.2, dsn=5.1.1, status=bounced (host %s said: 550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command))" % (h, pid + 2, q, a, relay, relay.rsplit(":", 1)[0], a))
            bounced = True
        elif r in policy:
            lines.append("%ssmtp[%d]: %s: to=<%s>, relay=%s, delay=0.4, delays=0.01/0/0.2/0.2, dsn=5.7.1, status=bounced (host %s said: 554 5.7.1 Service unavailable; client host blocked (in reply to RCPT TO command))" % (h, pid + 2, q, a, relay, relay.rsplit(":", 1)[0]))
            bounced = True
        else:
            if rnd.random() < 0.05:
                lines.append("%ssmtp[%d]: %s: to=<%s>, relay=%s, delay=0.3, delays=0.01/0/0.1/0.2, dsn=4.7.1, status=deferred (host %s said: 451 4.7.1 Greylisted, try again later (in reply to RCPT TO command))" % (h, pid + 2, q, a, relay, relay.rsplit(":", 1)[0]))
            lines.append("%ssmtp[%d]: %s: to=<%s>, relay=%s, delay=0.5, delays=0.01/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK %d %s - gsmtp)" % (h, pid + 2, q, a, relay, t, q.lower()))
    if fmt == "hikyaku":
        iso = "2026-%02d-%02dT%s.%03dZ" % (1 + months.index(ts[:3]), int(ts[4:6]), ts[7:], rnd.randrange(1000))
        hq = "%018X" % qn
        hl = ['{"ts":"%s","event":"received","queue_id":"%s","session":"%08x","client":"127.0.0.1","helo":"shop.example.jp","from":"order@shop.example.jp","header_from":"order@shop.example.jp","message_id":"<%s@shop.example.jp>","rcpts":%d,"size":%d,"tls":false,"route":"direct","matched":null,"dkim":null}' % (iso, hq, pid, hq, len(rcpts), rnd.randint(2000, 40000))]
        for l in lines[5:]:
            if "status=" not in l:
                continue
            to = l.split("to=<", 1)[1].split(">", 1)[0]
            st = l.split("dsn=", 1)[1].split(",", 1)[0]
            ev = {"sent": "delivered", "bounced": "bounced", "deferred": "deferred"}[l.split("status=", 1)[1].split(" ", 1)[0]]
            resp = l.rsplit(" said: ", 1)[-1].rstrip(")") if " said: " in l else l.split("status=sent (", 1)[-1].rstrip(")")
            hl.append('{"ts":"%s","event":"%s","queue_id":"%s","to":%s,"route":"direct","relay":"mx.example[203.0.113.1]:25","status":"%s","response":%s,"tls":true,"attempt":1,"delay_ms":412}' % (iso, ev, hq, json.dumps(to), st, json.dumps(resp)))
            if ev == "bounced" and st.startswith("5.1."):
                hl.append('{"ts":"%s","event":"learned","to":%s,"source":"delivery","status":"%s","response":%s}' % (iso, json.dumps(to), st, json.dumps(resp)))
        s = "\n".join(hl) + "\n"
        written += len(s)
        buf.append(s)
        if len(buf) >= 2000:
            out.write("".join(buf))
            buf = []
        continue
    if bounced:
        lines.append("%sbounce[%d]: %s: sender non-delivery notification: %sB" % (h, pid + 3, q, q))
        lines.append("%ssmtp[%d]: %sB: to=<order@shop.example.jp>, relay=mail.shop.example.jp[192.0.2.10]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4F1A2B)" % (h, pid + 2, q))
    lines.append("%sqmgr[812]: %s: removed" % (h, q))
    s = "\n".join(lines) + "\n"
    written += len(s)
    buf.append(s)
    if len(buf) >= 2000:
        out.write("".join(buf))
        buf = []
out.write("".join(buf))
out.close()
PYEOF
ls -l "$LOG" | awk '{printf "survey_bench: %d bytes, ", $5}'
wc -l <"$LOG" | awk '{print $1 " lines"}'
# The reference time for the lines without a year: the end of the year.
touch -d "$(date +%Y)-12-31 23:59:59" "$LOG"
/usr/bin/time -v "$CTL" suppression survey "$LOG" >"$W/out" 2>"$W/err" || true
tail -n 1 "$W/out"
grep -E '^hikyakuctl: read' "$W/err"
grep -E 'Elapsed \(wall clock\)|Maximum resident set size|User time|System time' "$W/err" | sed 's/^[[:space:]]*/survey_bench: /'
if [ -n "${SURVEY_BENCH_GZIP:-}" ]; then
	gzip -1 "$LOG"
	ls -l "$LOG.gz" | awk '{printf "survey_bench: gzip -1: %d bytes\n", $5}'
	/usr/bin/time -v "$CTL" suppression survey "$LOG.gz" >"$W/out" 2>"$W/err" || true
	tail -n 1 "$W/out"
	grep -E 'Elapsed \(wall clock\)|Maximum resident set size|User time|System time' "$W/err" | sed 's/^[[:space:]]*/survey_bench: .gz: /'
fi
