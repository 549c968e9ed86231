#!/bin/bash
# hikyakuctl domain check (SPEC §8) against a zone served by dnsmasq:
# everything right; each failure and warning on its own domain; the zone
# appended twice in --expect; a subdomain covered by its organisational
# domain's DMARC; the --json fields; the exit codes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_upstream.sh"
DEFAULT_DIRECT=""

CTL() { "$HIKYAKUCTL" -c "$T/hikyaku.conf" "$@"; }

# keygen prints NAME. IN TXT "a" "b"; dnsmasq takes the strings as a,b.
txt_of() { sed 's/^[^"]*"//; s/"$//; s/" "/,/g' "$1"; }
"$HIKYAKUCTL" dkim keygen good.test s1 "$T/good.pem" >"$T/good.txt" 2>/dev/null
"$HIKYAKUCTL" dkim keygen good.test e1 "$T/good-ed.pem" --type ed25519 >"$T/good-ed.txt" 2>/dev/null
"$HIKYAKUCTL" dkim keygen wrongkey.test s1 "$T/wrong.pem" >/dev/null 2>&1
"$HIKYAKUCTL" dkim keygen other.test s1 "$T/other.pem" >"$T/other.txt" 2>/dev/null
"$HIKYAKUCTL" dkim keygen nokey.test s1 "$T/nokey.pem" >/dev/null 2>&1

# A complete domain: MX, SPF, DMARC. Each broken domain starts from this
# and changes one thing.
whole() { # whole DOMAIN [no-mx] [no-spf] [no-dmarc]
	local d=$1 a
	shift
	local mx=1 spf=1 dmarc=1
	for a in "$@"; do
		case $a in no-mx) mx=0 ;; no-spf) spf=0 ;; no-dmarc) dmarc=0 ;; esac
	done
	[ $mx = 1 ] && echo "--mx-host=$d,mx.good.test,10"
	[ $spf = 1 ] && echo "--txt-record=$d,v=spf1 ip4:192.0.2.0/24 -all"
	[ $dmarc = 1 ] && echo "--txt-record=_dmarc.$d,v=DMARC1; p=reject; rua=mailto:dmarc@$d"
	# every name must exist for NODATA rather than NXDOMAIN answers
	echo "--txt-record=$d,site-verification=1"
}
ARGS=()
while IFS= read -r l; do ARGS+=("$l"); done < <(
	whole good.test no-spf
	echo "--txt-record=good.test,v=spf1 include:_spf.good.test include:amazonses.test ~all"
	echo "--txt-record=_spf.good.test,v=spf1 ip4:192.0.2.0/24 mx -all"
	echo "--txt-record=amazonses.test,v=spf1 ip4:198.51.100.0/24 -all"
	echo "--host-record=mx.good.test,192.0.2.25"
	echo "--txt-record=s1._domainkey.good.test,$(txt_of "$T/good.txt")"
	echo "--txt-record=e1._domainkey.good.test,$(txt_of "$T/good-ed.txt")"
	# the service's records: DKIM CNAMEs (one doubled), custom MAIL FROM
	echo "--cname=tok1._domainkey.good.test,tok1.dkim.amazonses.test"
	echo "--cname=tok2._domainkey.good.test.good.test,tok2.dkim.amazonses.test"
	echo "--host-record=tok1.dkim.amazonses.test,192.0.2.1"
	echo "--host-record=tok2.dkim.amazonses.test,192.0.2.2"
	echo "--mx-host=bounce.good.test,feedback-smtp.amazonses.test,10"
	echo "--host-record=feedback-smtp.amazonses.test,192.0.2.3"
	echo "--txt-record=bounce.good.test,v=spf1 include:amazonses.test ~all"
	# a subdomain with an address only and no DMARC of its own
	echo "--host-record=sub.good.test,192.0.2.26"
	echo "--txt-record=sub.good.test,v=spf1 a -all"
	# one failure or warning each
	whole nomx.test no-mx
	echo "--host-record=aonly.test,192.0.2.27"
	whole aonly.test no-mx
	whole nullmx.test no-mx
	echo "--mx-host=nullmx.test,.,0"
	whole nospf.test no-spf
	whole twospf.test
	echo "--txt-record=twospf.test,v=spf1 mx -all"
	whole badspf.test no-spf
	echo "--txt-record=badspf.test,v=spf1 ip4:300.1.1.1 -all"
	whole plusall.test no-spf
	echo "--txt-record=plusall.test,v=spf1 mx +all"
	whole noall.test no-spf
	echo "--txt-record=noall.test,v=spf1 mx"
	whole redir.test no-spf
	echo "--txt-record=redir.test,v=spf1 redirect=_spf.redir.test"
	echo "--txt-record=_spf.redir.test,v=spf1 mx ?all"
	whole deadinc.test no-spf
	echo "--txt-record=deadinc.test,v=spf1 include:gone.deadinc.test -all"
	whole many.test no-spf
	echo "--txt-record=many.test,v=spf1 include:i1.many.test include:i2.many.test a mx -all"
	echo "--txt-record=i1.many.test,v=spf1 a mx ptr include:i3.many.test -all"
	echo "--txt-record=i2.many.test,v=spf1 a mx exists:x.many.test -all"
	echo "--txt-record=i3.many.test,v=spf1 a -all"
	whole ten.test no-spf
	echo "--txt-record=ten.test,v=spf1 include:i1.ten.test a mx a:x.ten.test mx:y.ten.test exists:z.ten.test ptr -all"
	echo "--txt-record=i1.ten.test,v=spf1 a mx ptr -all"
	whole nodmarc.test no-dmarc
	whole nonedmarc.test no-dmarc
	echo "--txt-record=_dmarc.nonedmarc.test,v=DMARC1; p=none"
	whole twodmarc.test
	echo "--txt-record=_dmarc.twodmarc.test,v=DMARC1; p=none"
	whole baddmarc.test no-dmarc
	echo "--txt-record=_dmarc.baddmarc.test,v=DMARC1; p=sometimes"
	whole wrongkey.test
	echo "--txt-record=s1._domainkey.wrongkey.test,$(txt_of "$T/other.txt")"
	whole nokey.test
)
start_dns "${ARGS[@]}" || { finish; exit 1; }

write_config "" "[routing]
verified_domains = good.test
    sub.good.test
[service]
host = smtp.service.test
envelope_from = bounces@bounce.good.test
[dkim]
keys = good.test s1 $T/good.pem
    wrongkey.test s1 $T/wrong.pem
    nokey.test s1 $T/nokey.pem
    sub.good.test e1 $T/good-ed.pem
[direct]
dns_servers = 127.0.0.1:$DNS_PORT"
# sub.good.test's Ed25519 key is published under good.test: its own
# e1._domainkey.sub.good.test is missing (the row for that is checked below).
cat >"$T/expect.txt" <<'EOF'
# Amazon SES: Easy DKIM and the custom MAIL FROM domain
tok1._domainkey.good.test CNAME tok1.dkim.amazonses.test
tok2._domainkey.good.test CNAME tok2.dkim.amazonses.test.
tok3._domainkey.good.test CNAME tok3.dkim.amazonses.test
bounce.good.test MX 10 feedback-smtp.amazonses.test
bounce.good.test TXT "v=spf1 include:amazonses.test ~all"
good.test TXT "v=spf1 include:amazonses.test ~all"
EOF

# row DOMAIN CHECK: the line of the table for it
row() { awk -v d="$1" -v c="$2" '$1 == d && ($2 " " $3 == c || $2 == c) {print; exit}' "$T/out"; }
expect_row() { # NAME DOMAIN CHECK RESULT REGEX
	local r
	r=$(row "$2" "$3")
	if [ -n "$r" ] && echo "$r" | grep -Eq -- " $4 +.*$5"; then ok "$1"; else
		echo "row: $r" >"$T/why"; cat "$T/out" >>"$T/why"; nok "$1" "$T/why"; fi
}

# --- the configured domains, the MAIL FROM domain and the SES records ---
CTL domain check --expect "$T/expect.txt" >"$T/out" 2>"$T/err"
rc=$?
expect_row "MX found" good.test mx ok "MX 10 mx.good.test"
expect_row "SPF with includes: one record, lookups counted, ~all" good.test spf ok "\(3 DNS lookups\)"
expect_row "DMARC p=reject" good.test dmarc ok "p=reject at _dmarc.good.test"
expect_row "DKIM key published with the configured public key" good.test "dkim s1" ok "p= matches the configured key"
expect_row "the MAIL FROM domain has its MX" bounce.good.test "mail-from mx" ok "feedback-smtp.amazonses.test"
expect_row "the MAIL FROM domain has its SPF" bounce.good.test "mail-from spf" ok "include:amazonses.test ~all"
expect_row "a subdomain with only an A record passes mx" sub.good.test mx ok "no MX, but A 192.0.2.26"
expect_row "a subdomain is covered by the organisational domain's DMARC" sub.good.test dmarc ok "p=reject at _dmarc.good.test \(the organisational domain's\)"
expect_row "a key record missing at SELECTOR._domainkey.DOMAIN fails" sub.good.test "dkim e1" fail "no DKIM key record at e1._domainkey.sub.good.test"
check "expect: the CNAME that is right" grep -Eq "^good.test +expect CNAME +ok +tok1._domainkey.good.test CNAME tok1.dkim.amazonses.test" "$T/out"
check "expect: the zone appended twice is named as the mistake" grep -Eq "^good.test +expect CNAME +fail +tok2._domainkey.good.test CNAME is missing, but tok2._domainkey.good.test.good.test has it: the DNS console appended the zone good.test a second time" "$T/out"
check "expect: a missing CNAME fails" grep -Eq "^good.test +expect CNAME +fail +no CNAME record at tok3._domainkey.good.test" "$T/out"
check "expect: the MX of the MAIL FROM domain, shown under it" grep -Eq "^bounce.good.test +expect MX +ok +bounce.good.test MX 10 feedback-smtp.amazonses.test" "$T/out"
check "expect: a TXT value written in quotes" grep -Eq "^bounce.good.test +expect TXT +ok +bounce.good.test TXT v=spf1 include:amazonses.test ~all" "$T/out"
check "expect: a TXT that differs fails with what is there" grep -Eq "^good.test +expect TXT +fail +good.test TXT is .*v=spf1 include:_spf.good.test include:amazonses.test ~all.*; expected v=spf1 include:amazonses.test ~all" "$T/out"
expect_row "a key record with another key fails" wrongkey.test "dkim s1" fail "p= is not the public half of the configured key"
expect_row "no key record fails" nokey.test "dkim s1" fail "no DKIM key record at s1._domainkey.nokey.test"
check "the table is aligned (RESULT in one column)" $PY -c '
import sys
lines = open(sys.argv[1]).read().splitlines()
i = lines[0].index("RESULT")
assert lines[0].startswith("DOMAIN") and lines[0].index("DETAIL") == i + 8, lines[0]
for l in lines[1:-1]:
    assert l[i:i + 4] in ("ok  ", "warn", "fail") and l[i - 2:i] == "  ", l
' "$T/out"
check "a summary line" grep -Eq "^[0-9]+ checks: [0-9]+ ok, 0 warnings, [0-9]+ failed$" "$T/out"
check "exit 1 when a check failed" test "$rc" = 1

# --- all good: exit 0 ---
CTL domain check good.test >"$T/out" 2>"$T/err"
rc=$?
expect_row "a named domain is checked" good.test mx ok "MX"
check "the MAIL FROM domain under a named domain is checked too" grep -Eq "^bounce.good.test +mail-from mx +ok" "$T/out"
check "exit 0 when nothing failed (DNS all good)" test "$rc" = 0
check "sub.good.test is not checked when only good.test is named" bash -c "! grep -q '^sub.good.test' '$T/out'"

# --- each failure and warning on its own ---
one() { # NAME DOMAIN CHECK RESULT REGEX [EXIT]
	CTL domain check "$2" >"$T/out" 2>"$T/err"
	local rc=$? others
	expect_row "$1" "$2" "$3" "$4" "$5"
	# every other row of the domain is ok
	others=$(awk -v c="$3" 'NR>1 && !/ checks: / && $2 != c && $3 != "ok"' "$T/out" | grep -c . || true)
	if [ "$others" = 0 ]; then ok "$1: the other checks pass"; else nok "$1: the other checks pass" "$T/out"; fi
	if [ "$rc" = "${6:-1}" ]; then ok "$1: exit ${6:-1}"; else nok "$1: exit ${6:-1} (got $rc)" "$T/out"; fi
}
one "no MX and no A/AAAA fails" nomx.test mx fail "no MX and no A/AAAA record: receivers such as docomo refuse"
one "no MX but an A record is enough" aonly.test mx ok "no MX, but A 192.0.2.27" 0
one "a null MX warns" nullmx.test mx warn "a null MX \(RFC 7505\)" 0
one "no SPF fails" nospf.test spf fail "no SPF record"
one "two SPF records fail" twospf.test spf fail "twospf.test has 2 SPF records"
one "an SPF record that does not parse fails (libspf2)" badspf.test spf fail "does not parse"
one "+all fails" plusall.test spf fail "ends in \+all"
one "no all fails" noall.test spf fail "has no -all or ~all"
one "redirect= to ?all fails" redir.test spf fail "ends in \?all"
one "an include without SPF fails" deadinc.test spf fail "include:gone.deadinc.test has no SPF record"
one "more than 10 lookups through includes fail" many.test spf fail "needs 12 DNS lookups .* receivers stop at 10"
one "exactly 10 lookups pass" ten.test spf ok "\(10 DNS lookups\)" 0
one "no DMARC fails" nodmarc.test dmarc fail "no DMARC record at _dmarc.nodmarc.test"
one "p=none warns" nonedmarc.test dmarc warn "p=none at _dmarc.nonedmarc.test: monitoring only" 0
one "two DMARC records fail" twodmarc.test dmarc fail "2 DMARC records at _dmarc.twodmarc.test"
one "a bad p= fails (libopendmarc)" baddmarc.test dmarc fail "does not parse"

# --- --json ---
CTL domain check --json nonedmarc.test >"$T/out.json" 2>"$T/err"
rc=$?
check "--json: one object per row with the documented fields" $PY -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["check"] for r in rows] == ["mx", "spf", "dmarc"], rows
for r in rows:
    assert set(r) == {"domain", "check", "result", "text", "name", "record"}, r
    assert r["domain"] == "nonedmarc.test"
d = rows[2]
assert d["result"] == "warn" and d["name"] == "_dmarc.nonedmarc.test" and d["record"] == "v=DMARC1; p=none", d
assert rows[0]["result"] == "ok" and rows[0]["record"] == "10 mx.good.test", rows[0]
' "$T/out.json"
check "--json: exit 0 with a warning only" test "$rc" = 0

# --- usage errors: exit 2 ---
CTL domain check --expect "$T/missing.txt" good.test >"$T/out" 2>"$T/err"
check "a missing --expect file: exit 2" test $? = 2
echo "tok1._domainkey.good.test A 192.0.2.1" >"$T/bad-expect.txt"
CTL domain check --expect "$T/bad-expect.txt" >"$T/out" 2>"$T/err"
check "a bad --expect line: exit 2" test $? = 2
expect "a bad --expect line is FILE:LINE" "$T/err" "bad-expect.txt:1: type \"A\" is not CNAME, TXT or MX"
CTL domain check "not a domain!" >"$T/out" 2>"$T/err"
check "a bad domain: exit 2" test $? = 2
CTL domain >"$T/out" 2>"$T/err"
check "no subcommand: exit 2" test $? = 2

# --- DNS down: a failure, not a hang ---
write_config "" "[direct]
dns_servers = 127.0.0.1:9"
timeout 60 "$HIKYAKUCTL" -c "$T/hikyaku.conf" domain check good.test >"$T/out" 2>"$T/err"
rc=$?
check "an unreachable DNS server fails the checks (exit 1, bounded time)" test "$rc" = 1
expect "an unreachable DNS server is named" "$T/out" "cannot ask DNS"

finish
