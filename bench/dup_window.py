#!/usr/bin/python3
"""bench/dup_window.py TRACE - the duplicate window, from an strace of
hikyaku (strace -f -tt -s 400, bench/dup_window.sh).

Per mail: the read of the peer's final 250 (the first read starting
"250 " on the outbound connection after the write of the message, whose
Received field names the queue id); the write of its D record
("HKW1 D ID", a pwritev on its segment); the first fdatasync of that
segment, returning 0, that began after that write. The window is the end
of that fdatasync minus the 250's read. Prints the count, p50, p90, p99,
max and mean in milliseconds, and the number of fdatasync calls."""
import bisect
import re
import statistics
import sys


def seconds(ts):
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def calls(path):
    """(start, end, text) of each call, an unfinished one joined with its
    resumption."""
    unfinished = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"(\d+)\s+(\d+:\d+:\d+\.\d+) (.*)$", line.rstrip("\n"))
            if not m:
                continue
            tid, ts, rest = m.group(1), seconds(m.group(2)), m.group(3)
            if rest.endswith("<unfinished ...>"):
                unfinished[tid] = (ts, rest[: -len("<unfinished ...>")])
                continue
            r = re.match(r"<\.\.\. (\w+) resumed>\s*(.*)$", rest)
            if r:
                start, head = unfinished.pop(tid, (ts, r.group(1) + "("))
                yield start, ts, head + r.group(2)
            else:
                yield ts, ts, rest


def main(path):
    sending, got250, d_written, syncs = {}, {}, {}, {}
    for start, end, c in calls(path):
        m = re.match(r'write\((\d+),\s*"Received: .*?SMTP id ([0-9A-F]{18})', c)
        if m:
            sending[m.group(1)] = m.group(2)
            continue
        m = re.match(r'read\((\d+),\s*"250 ', c)
        if m and m.group(1) in sending:
            got250.setdefault(sending.pop(m.group(1)), end)
            continue
        m = re.match(r"pwritev\((\d+),\s*\[(.*)", c)
        if m:
            for qid in re.findall(r"HKW1 D ([0-9A-F]{18})", m.group(2)):
                d_written.setdefault(qid, (end, m.group(1)))
            continue
        m = re.match(r"fdatasync\((\d+)\s*\)\s*= 0", c)
        if m:
            syncs.setdefault(m.group(1), []).append((start, end))
    for v in syncs.values():
        v.sort()
    win, odd = [], 0
    for qid, (written, fd) in d_written.items():
        if qid not in got250:
            continue
        s = syncs.get(fd, [])
        k = bisect.bisect_left(s, (written, 0.0))
        if k == len(s):
            continue
        w = s[k][1] - got250[qid]
        if w < 0:
            odd += 1  # a D record before the 250: t_power_order's business
        else:
            win.append(w * 1000)
    if not win:
        print("no mail with a 250 and a durable D record in the trace")
        return 1
    win.sort()
    n = len(win)
    q = lambda p: win[min(n - 1, int(p * n))]
    print("%d mails (%d 250s, %d D records%s), %d fdatasyncs; window ms: p50 %.2f p90 %.2f "
          "p99 %.2f max %.2f mean %.2f" % (
              n, len(got250), len(d_written), ", %d before their 250" % odd if odd else "",
              sum(len(v) for v in syncs.values()), q(0.5), q(0.9), q(0.99), win[-1],
              statistics.mean(win)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
