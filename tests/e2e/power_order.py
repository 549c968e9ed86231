#!/usr/bin/python3
"""The order of the spool's writes and syncs, read from an strace of the
daemon (tests/e2e/t_power_order.sh): what a power loss could expose.

usage: power_order.py TRACE SPOOL_DIR IDS
  TRACE is `strace -f -tt -s 256 -o TRACE` output (one file, every
  thread); IDS has one line "KIND QUEUEID" per mail answered 250, KIND one
  of small (delivered), big (spilled, delivered), later (deferred by a
  451) or down (deferred: its peer is down). Prints one line per check,
  "ok N: ..." or "FAIL N: ..." (then the first problems), and exits 1
  when a check fails.

Order is the order of the trace's lines, not their times: strace reports a
thread's syscall entry before the kernel runs it and its exit after, so a
call whose exit line comes before another's entry line ended before that
one began, whichever threads made them. The daemon is one process (its
threads share one fd table): fds are resolved through the traced openat,
socket, accept4, connect, dup and close calls.
"""
import re
import sys

LINE = re.compile(r"^(\d+)\s+[\d:.]+\s+(.*)$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
UNFINISHED = re.compile(r"^(\w+)\((.*) <unfinished \.\.\.>$")
COMPLETE = re.compile(r"^(\w+)\((.*)\)\s+= (-?\d+|\?)(.*)$")
ENDED = re.compile(r"^(.*)\)\s+= (-?\d+|\?)(.*)$")
OPENERS = ("openat", "socket", "accept4", "accept", "dup", "dup2", "dup3")
WRITES = ("pwritev", "pwrite64", "write", "writev", "copy_file_range")


class Call:
    def __init__(self, name, tid, args, start):
        self.name, self.tid, self.args, self.start = name, tid, args, start
        self.end = None  # line of the exit; None: never returned
        self.ret = None
        self.fd = self.file = None  # the fd argument and what it was

    def ok(self):
        return self.ret is not None and self.ret >= 0


def parse(path):
    """Every syscall of the trace, in order of entry."""
    calls, pending = [], {}
    for n, raw in enumerate(open(path, errors="replace")):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        tid, rest = m.groups()
        r = RESUMED.match(rest)
        if r:
            c = pending.pop(tid, None)
            e = ENDED.match(r.group(2))
            if c and c.name == r.group(1) and e:  # an orphan (an edited trace) is dropped
                c.args += e.group(1)
                c.end, c.ret = n, None if e.group(2) == "?" else int(e.group(2))
            continue
        u = UNFINISHED.match(rest)
        if u:
            pending[tid] = Call(u.group(1), tid, u.group(2), n)
            calls.append(pending[tid])
            continue
        c = COMPLETE.match(rest)
        if c:
            call = Call(c.group(1), tid, c.group(2), n)
            call.end, call.ret = n, None if c.group(3) == "?" else int(c.group(3))
            calls.append(call)
    return calls


class File:
    """One open file description: what the fd was, from its open to its close."""
    def __init__(self, path, opener):
        self.path, self.opener = path, opener


def resolve(calls):
    """Sets c.fd and c.file for every call with an fd argument. An fd is
    named at its opener's exit, unnamed at close's entry (once close has
    begun its number may be handed out again): events are replayed in line
    order."""
    events = sorted([(c.start, 0, c) for c in calls] +
                    [(c.end, 1, c) for c in calls if c.end is not None], key=lambda e: e[:2])
    fds, files = {}, []
    for _, is_exit, c in events:
        first = c.args.split(",", 1)[0].strip()
        if not is_exit:
            if c.name == "copy_file_range":  # the destination is the third
                first = c.args.split(",")[2].strip()
            if first.isdigit():
                c.fd, c.file = int(first), fds.get(int(first))
            if c.name == "close" and c.fd is not None:
                fds.pop(c.fd, None)
            if c.name == "connect" and c.file:
                c.file.path = "connect:" + c.args
            continue
        if c.name in OPENERS and c.ok():
            if c.name == "openat":
                d, p = re.match(r'(\w+), "([^"]*)"', c.args).groups()
                if not p.startswith("/"):
                    base = fds.get(int(d)) if d.isdigit() else None
                    p = (base.path if base else "?") + "/" + p
                if "O_TMPFILE" in c.args:
                    p += "#tmpfile"
                fds[c.ret] = File(p, c)
            elif c.name.startswith("dup"):
                fds[c.ret] = fds.get(c.fd) or File("?", c)
            else:
                fds[c.ret] = File("accept" if c.name.startswith("accept") else "socket", c)
            files.append(fds[c.ret])
    return files


def main(trace, spool, idfile):
    kinds = {}
    for line in open(idfile):
        k, i = line.split()
        kinds[i] = k
    calls = parse(trace)
    files = resolve(calls)
    path = lambda c: c.file.path if c.file else None  # noqa: E731
    seg = re.compile(re.escape(spool) + r"/wal/[0-9A-F]{16}$")
    mail_dir, state_dir = spool + "/mail", spool + "/state"

    # What each call is, per queue id.
    reply, mrec, drec, moved, state_mv, unlinked, acks = {}, {}, {}, {}, {}, {}, {}
    batch_max = 0
    out_cur = {}  # outbound socket -> the id whose message was last written to it
    for c in calls:
        p = path(c)
        if c.name in ("write", "writev", "sendmsg", "sendto") and p == "accept" and c.ok():
            for i in re.findall(r"250 2\.0\.0 Ok: queued as ([0-9A-F]{18})", c.args):
                reply.setdefault(i, c)
        elif c.name == "pwritev" and p and seg.match(p) and c.ok():
            recs = re.findall(r'"HKW1 ([MD]) ([0-9A-F]{18}) ', c.args)
            batch_max = max(batch_max, sum(t == "M" for t, _ in recs))
            for t, i in recs:
                (mrec if t == "M" else drec).setdefault(i, c)
        elif c.name in ("renameat2", "rename") and c.ok():
            src, dst = re.findall(r'"([^"]*)"', c.args)[:2]
            if dst.startswith(mail_dir + "/"):
                moved.setdefault(dst.rsplit("/", 1)[1], (c, src))
            elif dst.startswith(state_dir + "/"):
                state_mv.setdefault(dst.rsplit("/", 1)[1], (c, src))
        elif c.name in ("unlink", "unlinkat") and c.ok():
            m = re.search(r'"' + re.escape(mail_dir) + r'/([0-9A-F]{18})"', c.args)
            if m:
                unlinked.setdefault(m.group(1), c)
        elif p and p.startswith("connect:") and c.ok():
            if c.name in WRITES:
                m = re.search(r"\(hikyaku\) with \w+ id ([0-9A-F]{18})", c.args)
                if m:
                    out_cur[c.file] = m.group(1)
            elif c.name in ("read", "recvfrom") and out_cur.get(c.file):
                if re.match(r'\d+, "250[ -]', c.args):
                    acks.setdefault(out_cur[c.file], c)
                out_cur[c.file] = None

    def synced(name, file_ok, after, before):
        """A successful sync call (name) of a file (file_ok) that began after
        the call after ended and ended before the call before began."""
        return any(c.name == name and c.ok() and c.file and file_ok(c) and
                   c.start > after.end and c.end < before.start for c in calls)

    def fsync_mail_dir(after, before):
        return synced("fsync", lambda c: c.file.path == mail_dir, after, before)

    def file_durable(i, rename):
        """tmp/ID of a move into mail/: every write done and fdatasync'd
        before the rename began (the last open of that name before it)."""
        opened = [f for f in files if f.path == spool + "/tmp/" + i and f.opener.end < rename.start]
        if not opened:
            return False
        f = opened[-1]
        sync = [c for c in calls if c.file is f and c.name == "fdatasync" and c.ok()
                and c.end < rename.start]
        writes = [c for c in calls if c.file is f and c.name in WRITES]
        return bool(sync) and bool(writes) and all(w.end < sync[-1].start for w in writes)

    results = []

    def report(n, what, items, problems):
        results.append(not problems)
        print("%s %d: %s (%d mails)" % ("ok" if not problems else "FAIL", n, what, len(items)))
        for p in problems[:10]:
            print("    " + p)

    # 1. A mail answered 250 from memory: its M record's write ended, then
    # an fdatasync of that segment began and returned 0, all before the 250.
    small = [i for i, k in kinds.items() if k != "big"]
    probs = []
    for i in small:
        r, m = reply.get(i), mrec.get(i)
        if not r or not m:
            probs.append("%s: %s" % (i, "no 250 reply" if not r else "no M record"))
        elif not synced("fdatasync", lambda c: c.file is m.file, m, r):
            probs.append("%s: no fdatasync of %s between its M record (line %d) and its 250 "
                         "(line %d)" % (i, m.file.path, m.end + 1, r.start + 1))
    if batch_max < 2:
        probs.append("no batch held more than one M record")
    report(1, "M record written, then its segment fdatasync'd, before the 250; largest "
           "batch %d records" % batch_max, small, probs)

    # 2. A spilled mail: tmp/ID written and fdatasync'd, renamed into mail/,
    # mail/ fsynced, then the 250.
    big = [i for i, k in kinds.items() if k == "big"]
    probs = []
    for i in big:
        r, mv = reply.get(i), moved.get(i)
        if not r or not mv or i in mrec:
            probs.append("%s: %s" % (i, "no 250" if not r else "no rename into mail/"
                                     if not mv else "took the segment path"))
        elif not (mv[0].end < r.start and file_durable(i, mv[0]) and fsync_mail_dir(mv[0], r)):
            probs.append("%s: file sync, rename (line %d), mail/ fsync not all before its 250 "
                         "(line %d)" % (i, mv[0].start + 1, r.start + 1))
    report(2, "spilled mail: fdatasync, rename into mail/, mail/ fsync before the 250", big, probs)

    # 3. A deferred mail: moved out (tmp/ID fdatasync'd, renamed to mail/ID,
    # mail/ fsynced) before its state file's rename and before its D record;
    # the state file fdatasync'd before its own rename. A mail to "down"
    # may instead have been deferred without an attempt (its destination
    # suspended): then it is still only in its segment, untouched.
    deferred = [i for i, k in kinds.items() if k in ("later", "down")]
    probs, stayed = [], 0
    for i in deferred:
        mv, st, d = moved.get(i), state_mv.get(i), drec.get(i)
        if kinds[i] == "down" and not mv and not st and not d:
            stayed += 1
            continue
        if not mv or not st or not d:
            probs.append("%s: %s" % (i, "never moved out to mail/" if not mv else
                                     "no state file" if not st else "no D record"))
            continue
        if not file_durable(i, mv[0]):
            probs.append("%s: mail/ file renamed before its data was synced" % i)
        if not fsync_mail_dir(mv[0], st[0]):
            probs.append("%s: state renamed (line %d) before the move out was durable" % (i, st[0].start + 1))
        if not fsync_mail_dir(mv[0], d):
            probs.append("%s: D record (line %d) before the move out was durable" % (i, d.start + 1))
        if not synced("fdatasync", lambda c: c.file.path == st[1], mv[0], st[0]):
            probs.append("%s: state file renamed before its data was synced" % i)
    report(3, "deferred mail: mail/ file durable before its state file and its D record; "
           "%d left in the segment by a suspension" % stayed, deferred, probs)

    # 4. No removal before delivery: every D record follows the peer's 250
    # for that mail or the mail's durable move out (3); every unlink of
    # mail/ID follows the peer's 250. Each delivered mail was removed.
    delivered = [i for i, k in kinds.items() if k in ("small", "big")]
    probs = []
    for i, d in drec.items():
        a, mv = acks.get(i), moved.get(i)
        if not (a and a.end < d.start) and not (mv and fsync_mail_dir(mv[0], d)):
            probs.append("%s: D record (line %d) without the peer's 250 before it%s" % (
                i, d.start + 1, " (line %d)" % (a.end + 1) if a else ""))
    for i, u in unlinked.items():
        a = acks.get(i)
        if not (a and a.end < u.start):
            probs.append("%s: mail/%s unlinked (line %d) without the peer's 250 before it" % (i, i, u.start + 1))
    for i in delivered:
        if i not in acks or (i not in drec and i not in unlinked):
            probs.append("%s: %s" % (i, "no 250 from the peer seen" if i not in acks else "never removed"))
    for i in deferred:
        if i in acks:
            probs.append("%s: meant to be deferred, but the peer said 250" % i)
    report(4, "removal (D record, unlink) only after the peer's 250 (%d D records, %d unlinks)" % (
        len(drec), len(unlinked)), delivered, probs)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
