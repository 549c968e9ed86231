#!/bin/bash
# The tests' spool reader (tests/e2e/spool.py, behind queued_ids,
# queued_has, queued_data and queued_envelope) reads what relay/queue_wal.h
# says: mail files in DIR/mail, live records of the segment log DIR/wal,
# a torn or corrupt tail ignored, DIR/mail/ID winning over a record. No
# hikyaku here: the spools are made by hand.
. "$(dirname "$0")/lib.sh"

# mkspool DIR: writes synthetic spools with Python. A record is the
# 52-byte header "HKW1 T ID LEN16 CRC8\n" then its payload; rec() makes
# good ones, the cases below spoil some on purpose.
mkspool() {
	$PY - "$1" <<'PYEOF'
import os, sys, zlib
root = sys.argv[1]

def mailfile(qid, body, rcpt="u@example.com"):
    env = '{"id":"%s","from":"shop@example.jp","rcpts":[{"addr":"%s"}]}' % (qid, rcpt)
    return b"HIKYAKU-QUEUE 1\n" + env.encode() + b"\n" + body

def rec(t, qid, payload=b""):
    h = "HKW1 %s %s %016X %08X\n" % (t, qid, len(payload), zlib.crc32(payload) if payload else 0)
    assert len(h) == 52
    return h.encode() + payload

def spool(name, segments, mail=None):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "wal"))
    os.makedirs(os.path.join(d, "mail"))
    for seq, data in segments.items():
        open(os.path.join(d, "wal", seq), "wb").write(data)
    for qid, data in (mail or {}).items():
        open(os.path.join(d, "mail", qid), "wb").write(data)

A, B, C, E, F, G = ("0006%014X" % i for i in range(0xA, 0x10))
S1, S2 = "0000000000000001", "0000000000000002"
# Bodies with CRLF, 8-bit bytes and a line that looks like a header line.
body_b = b"Received: from x\r\nSubject: =?UTF-8?B?5rOo5paH?=\r\n\r\n\xe3\x81\x82 B\r\nHKW1 D " + B.encode() + b"\r\n"
body_c = b"Subject: c\r\n\r\nC\r\n"

# basic: M(A), M(B), D(A), then a record torn mid-payload (a batch never
# acknowledged): B only.
torn = rec("M", C, mailfile(C, body_c))
spool("basic", {S1: rec("M", A, mailfile(A, b"A\r\n")) + rec("M", B, mailfile(B, body_b, "b@example.com"))
                    + rec("D", A) + torn[:-5]})
# shadow: the same log, and DIR/mail/B (a mail moved out before its D
# record) with other bytes: the file wins. Names that are no queue id in
# DIR/mail or DIR/wal are not mails.
spool("shadow", {S1: rec("M", A, mailfile(A, b"A\r\n")) + rec("M", B, mailfile(B, body_b)) + rec("D", A),
                 "garbage": rec("M", G, mailfile(G, b"G\r\n"))},
      {B: mailfile(B, b"from the file\r\n"), E: mailfile(E, b"E only a file\r\n"),
       E.lower(): b"x", "tmp.1": b"x"})
# stop: reading stops at a record whose CRC fails, a header in lower-case
# hex, a D record with a payload length, or a header cut short; the good
# records after them are not read. Two segments, read in order.
bad_crc = bytearray(rec("M", C, mailfile(C, body_c)))
bad_crc[-3] ^= 1
lower = rec("M", F, mailfile(F, b"F\r\n")).replace(b"HKW1 M " + F.encode(), b"HKW1 M " + F.lower().encode())
d_len = b"HKW1 D %s 0000000000000001 %08X\nx" % (A.encode(), zlib.crc32(b"x"))
spool("stop", {S1: rec("M", A, mailfile(A, b"A\r\n")) + bytes(bad_crc) + rec("M", E, mailfile(E, b"E\r\n")),
               S2: rec("M", B, mailfile(B, body_b)) + lower + rec("M", G, mailfile(G, b"G\r\n"))})
spool("dlen", {S1: rec("M", A, mailfile(A, b"A\r\n")) + d_len + rec("D", A)})
spool("shorthdr", {S1: rec("M", A, mailfile(A, b"A\r\n")) + rec("D", A)[:30]})
# M, D, M again of one id in a segment: live (the last M has no D after it).
spool("again", {S1: rec("M", A, mailfile(A, b"first\r\n")) + rec("D", A) + rec("M", A, mailfile(A, b"second\r\n"))})
os.makedirs(os.path.join(root, "empty"))
print("\n".join((A, B, C, E, F, G)))
PYEOF
}

IDS=$(mkspool "$T/s") || { nok "the synthetic spools are made"; finish; exit 1; }
read -r A B C E F G <<<"${IDS//$'\n'/ }"
S=$T/s
sp() { $SPOOL_PY "$@"; }

check "basic: only B is live (A has its D, C's record is torn)" test "$(sp "$S/basic" ids)" = "$B"
sp "$S/basic" data "$B" >"$T/b.data"
check "basic: B's message bytes, exactly" $PY -c '
import sys
want = b"Received: from x\r\nSubject: =?UTF-8?B?5rOo5paH?=\r\n\r\n\xe3\x81\x82 B\r\nHKW1 D " + sys.argv[2].encode() + b"\r\n"
got = open(sys.argv[1], "rb").read()
assert got == want, got' "$T/b.data" "$B"
check "basic: B's envelope line" test "$(sp "$S/basic" envelope "$B")" = "{\"id\":\"$B\",\"from\":\"shop@example.jp\",\"rcpts\":[{\"addr\":\"b@example.com\"}]}"
sp "$S/basic" file "$B" >"$T/b.file"
check "basic: B's whole file is the magic line, the envelope line, the message" \
	sh -c 'f=$1 id=$2; shift 2; { printf "HIKYAKU-QUEUE 1\n"; "$@" envelope "$id"; "$@" data "$id"; } | cmp - "$f"' \
	_ "$T/b.file" "$B" $SPOOL_PY "$S/basic"
sp "$S/basic" data "$A" >"$T/a.out" 2>&1
check "basic: A (removed) is not queued: exit 1" test $? -eq 1
sp "$S/basic" file "$C" >"$T/c.out" 2>&1
check "basic: C (torn) is not queued: exit 1" test $? -eq 1

check "shadow: ids are B and E (files), not A, not the odd names" test "$(sp "$S/shadow" ids | tr '\n' ' ')" = "$B $E "
check "shadow: DIR/mail/B wins over B's record" test "$(sp "$S/shadow" data "$B")" = $'from the file\r'
check "shadow: E, a file only" test "$(sp "$S/shadow" data "$E")" = $'E only a file\r'
sp "$S/shadow" file "$(echo "$E" | tr A-F a-f)" >/dev/null 2>&1
check "shadow: a lower-case id is no queue id: exit 1" test $? -eq 1
sp "$S/shadow" file "../shadow/mail/$B" >/dev/null 2>&1
check "shadow: a path is no queue id: exit 1" test $? -eq 1

check "stop: a CRC failure and a lower-case header end their segments (A, B live; not C, E, F, G)" \
	test "$(sp "$S/stop" ids | tr '\n' ' ')" = "$A $B "
sp "$S/stop" file "$G" >/dev/null 2>&1
check "stop: G, a good record after a malformed one, is not queued" test $? -eq 1
sp "$S/stop" file "$F" >/dev/null 2>&1
check "stop: F, in a header with a lower-case id, is not queued" test $? -eq 1
check "dlen: a D record with a length is malformed: A stays live" test "$(sp "$S/dlen" ids)" = "$A"
check "shorthdr: a header cut short is the end: A stays live" test "$(sp "$S/shorthdr" ids)" = "$A"
check "again: M, D, M of one id: live, with the last M's bytes" test "$(sp "$S/again" data "$A")" = $'second\r'
check "an empty spool: no ids, exit 0" test -z "$(sp "$S/empty" ids)"
check "a missing spool: no ids, exit 0" test -z "$(sp "$S/none" ids)"
sp "$S/basic" frobnicate >/dev/null 2>&1
check "a usage error exits 2" test $? -eq 2

# The lib.sh helpers, on another spool through SPOOL_DIR.
export SPOOL_DIR=$S/shadow
check "queued_count (SPOOL_DIR)" test "$(queued_count)" -eq 2
check "queued_has a file and a record's mail" queued_has "$B"
check "not queued_has a removed mail" not queued_has "$A"
check "queued_envelope reads the file's envelope" sh -c '[ "$1" = "{\"id\":\"$2\",\"from\":\"shop@example.jp\",\"rcpts\":[{\"addr\":\"u@example.com\"}]}" ]' _ "$(queued_envelope "$B")" "$B"
unset SPOOL_DIR
check "queued_count of \$T/queue (none): 0" test "$(queued_count)" -eq 0
finish
