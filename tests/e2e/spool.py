#!/usr/bin/python3
"""What is queued in a hikyaku spool, read from the files alone: the tests'
second, independent reading of the spool format, written from the contract
in relay/queue.h (DIR/mail/ID) and relay/queue_wal.h (the segment log
DIR/wal/SEQ), not from the C code that implements it. Standard library
only; run it with /usr/bin/python3.

usage: spool.py DIR ids           the live queue ids, sorted, one a line
       spool.py DIR file ID       the whole mail file (magic line, envelope
                                  line, message), from DIR/mail/ID or its
                                  live WAL record
       spool.py DIR data ID       the message bytes after those two lines
       spool.py DIR envelope ID   the JSON envelope line (with its newline)
Exit 0; 1 when ID is not queued; 2 on a usage error or a mail that is not
in the format.

The format, as this reader takes it:
  * DIR/mail/ID, ID exactly 18 upper-case hex digits, is a queued mail;
    other names there are not mails.
  * DIR/wal/SEQ, SEQ exactly 16 upper-case hex digits, read in SEQ order.
    A segment is records and nothing else. A record is a 52-byte header
        "HKW1 T IIIIIIIIIIIIIIIIII LLLLLLLLLLLLLLLL CCCCCCCC\\n"
    (T is M or D; I the queue id; L the payload length and C the payload's
    zlib CRC-32, upper hex) then L payload bytes. D records have L and C
    zero. Reading a segment stops at its first record that is short,
    malformed or fails its CRC (a torn tail: also what a segment being
    written at this moment may end in).
  * In a segment, a mail is live when it has an M record with no D record
    for its id after it (a D names the mail in its own segment). An M
    payload is byte for byte what DIR/mail/ID would hold.
  * DIR/mail/ID wins over the log: a mail moved out is the file's, even
    while its M record has no D yet.
The log is read before DIR/mail, so that a mail being moved out of the log
at that moment is seen in one place or the other.
"""
import os
import re
import sys
import zlib

HDR_LEN = 52
ID_RE = re.compile(r"[0-9A-F]{18}")
SEQ_RE = re.compile(r"[0-9A-F]{16}")
HDR_RE = re.compile(rb"HKW1 ([MD]) ([0-9A-F]{18}) ([0-9A-F]{16}) ([0-9A-F]{8})\n")
MAGIC = b"HIKYAKU-QUEUE 1"


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def segment_records(data):
    """The valid records of one segment's bytes, in order, up to the first
    short, malformed or CRC-failing one: (type, id, payload) tuples."""
    off = 0
    while len(data) - off >= HDR_LEN:
        m = HDR_RE.fullmatch(data, off, off + HDR_LEN)
        if not m:
            return
        typ, qid = m.group(1).decode(), m.group(2).decode()
        n, crc = int(m.group(3), 16), int(m.group(4), 16)
        start = off + HDR_LEN
        if typ == "D" and (n or crc):
            return
        if len(data) - start < n:
            return
        payload = data[start:start + n]
        if zlib.crc32(payload) != crc:
            return
        yield typ, qid, payload
        off = start + n


def segment_live(data):
    """{id: payload} of the mails live in one segment."""
    live = {}
    for typ, qid, payload in segment_records(data):
        if typ == "M":
            live[qid] = payload
        else:
            live.pop(qid, None)
    return live


def wal_live(spool):
    """{id: payload} of every live record of DIR/wal, before DIR/mail is
    taken into account (a later segment's record of an id wins)."""
    live = {}
    wal = os.path.join(spool, "wal")
    for seq in sorted(s for s in _listdir(wal) if SEQ_RE.fullmatch(s)):
        try:
            with open(os.path.join(wal, seq), "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError):
            continue        # removed meanwhile (recovered, or all finished)
        live.update(segment_live(data))
    return live


def mail_ids(spool):
    return {i for i in _listdir(os.path.join(spool, "mail")) if ID_RE.fullmatch(i)}


def ids(spool):
    """The queued ids, sorted."""
    return sorted(set(wal_live(spool)) | mail_ids(spool))


def read_file(spool, qid):
    """The mail file's bytes of queue id qid, or None when it is not queued."""
    if not ID_RE.fullmatch(qid):
        return None
    live = wal_live(spool)
    try:
        with open(os.path.join(spool, "mail", qid), "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        return live.get(qid)


def split(raw):
    """(envelope line with its newline, message bytes) of a mail file;
    ValueError when it is not magic line, envelope line, message."""
    parts = raw.split(b"\n", 2)
    if len(parts) < 3 or parts[0] != MAGIC:
        raise ValueError("not a HIKYAKU-QUEUE 1 mail file")
    return parts[1] + b"\n", parts[2]


def main(argv):
    if len(argv) == 3 and argv[2] == "ids":
        for i in ids(argv[1]):
            print(i)
        return 0
    if len(argv) != 4 or argv[2] not in ("file", "data", "envelope"):
        sys.stderr.write("usage: spool.py DIR ids | spool.py DIR file|data|envelope ID\n")
        return 2
    spool, what, qid = argv[1:]
    raw = read_file(spool, qid)
    if raw is None:
        sys.stderr.write("spool.py: %s is not queued in %s\n" % (qid, spool))
        return 1
    out = sys.stdout.buffer
    if what == "file":
        out.write(raw)
        return 0
    try:
        env, msg = split(raw)
    except ValueError as e:
        sys.stderr.write("spool.py: %s: %s\n" % (qid, e))
        return 2
    out.write(env if what == "envelope" else msg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
