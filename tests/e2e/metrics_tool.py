#!/usr/bin/python3
"""HTTP probes and checks for the metrics tests (tests/e2e/t_metrics.sh).

usage: metrics_tool.py COMMAND ...
  get HOST PORT PATH [--method M] [--source IP]
        one request; prints the status code on the first line, then the body
  parse FILE
        the samples of a Prometheus text file as JSON {"name{labels}": value}
  agree METRICS LOG STATUS QUEUE [--gauges-only]
        every counter of METRICS (a /metrics text) equals the count of its
        events in LOG (the relay log), and every gauge what STATUS
        (hikyakuctl status --json) and QUEUE (hikyakuctl queue list --json)
        say (with --gauges-only, after a restart: the gauges only); prints
        each comparison, exit 1 on a difference
  flood HOST PORT N SECONDS
        opens N connections and holds them (a third silent, a third
        dripping a header a byte a second, a third sending garbage) for
        SECONDS; prints how many the server accepted and closed
  slow HOST PORT
        drips a request header one byte a second; prints the seconds until
        the server closed the connection (gives up after 60 s)
  huge HOST PORT BYTES
        sends a header line of BYTES bytes; prints the status line answered
        (or "closed")
  dashboard FILE METRICS
        FILE is a Grafana dashboard JSON model: panels with targets whose
        expressions use only metric names present in METRICS (a /metrics
        text); exit 1 otherwise
"""
import json
import re
import socket
import sys
import time

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("not a sample line: %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def http(host, port, path, method="GET", source=None, timeout=10):
    s = socket.create_connection((host, port), timeout, (source, 0) if source else None)
    s.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (method, path, host)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    return code, body.decode("utf-8", "replace")


def cmd_get(a):
    method, source = "GET", None
    rest = a[3:]
    while rest:
        if rest[0] == "--method":
            method = rest[1]
        elif rest[0] == "--source":
            source = rest[1]
        rest = rest[2:]
    code, body = http(a[0], int(a[1]), a[2], method, source)
    try:
        print(code)
        sys.stdout.write(body)
        sys.stdout.flush()
    except BrokenPipeError:     # | head -1
        sys.stdout = None


def cmd_agree(a):
    m = parse(open(a[0]).read())
    events = [json.loads(l) for l in open(a[1]) if l.strip()]
    status = json.load(open(a[2]))
    queue = json.load(open(a[3]))
    if isinstance(queue, dict):
        queue = queue.get("mails", queue.get("queue", []))
    gauges_only = "--gauges-only" in a[4:]
    bad = 0

    def same(what, got, want):
        nonlocal bad
        ok = got == want
        bad += not ok
        print("%s %s: metrics %s, expected %s" % ("ok" if ok else "DIFFERENT", what, got, want))

    def count(ev, **kw):
        return sum(1 for e in events if e["event"] == ev and all(e.get(k) == v for k, v in kw.items()))

    if gauges_only:
        return gauges(m, status, queue, same, lambda: bad)
    same("messages received = received lines", m["hikyaku_messages_received_total"], count("received"))
    same("received from clients = status counts.received",
         m["hikyaku_messages_received_total"] - sum(1 for e in events if e["event"] == "received" and e.get("session") is None),
         status["counts"]["received"])
    for route in ("direct", "service"):
        for oc in ("delivered", "deferred", "bounced", "expired", "suppressed"):
            same("recipients %s %s = log" % (route, oc),
                 m['hikyaku_recipients_total{route="%s",outcome="%s"}' % (route, oc)], count(oc, route=route))
    for oc in ("delivered", "deferred", "bounced", "expired", "suppressed"):
        same("recipients %s = status counts" % oc,
             sum(m['hikyaku_recipients_total{route="%s",outcome="%s"}' % (r, oc)] for r in ("direct", "service")),
             status["counts"][oc])
    rej = {}
    for e in events:
        if e["event"] == "rejected":
            rej[e.get("status") or "unknown"] = rej.get(e.get("status") or "unknown", 0) + 1
    got = {k[len('hikyaku_rejected_total{status="'):-2]: v for k, v in m.items() if k.startswith("hikyaku_rejected_total{")}
    same("rejected by status = log", got, {k: float(v) for k, v in rej.items()})
    same("rejected = status counts.rejected", sum(got.values()), status["counts"]["rejected"])
    for route in ("direct", "service"):
        d = [e for e in events if e["event"] == "delivered" and e.get("route") == route]
        same("delivery_seconds_count %s = delivered lines" % route,
             m['hikyaku_delivery_seconds_count{route="%s"}' % route], len(d))
        same("delivery_seconds_sum %s = sum of delay_ms" % route,
             round(m['hikyaku_delivery_seconds_sum{route="%s"}' % route], 3),
             round(sum(e["delay_ms"] for e in d) / 1000.0, 3))
    gauges(m, status, queue, same, lambda: bad)


def gauges(m, status, queue, same, nbad):
    same("queue messages = status queue.mails",
         m['hikyaku_queue_messages{route="direct"}'] + m['hikyaku_queue_messages{route="service"}'], status["queue"]["mails"])
    same("queue recipients = status queue.recipients",
         m['hikyaku_queue_recipients{route="direct"}'] + m['hikyaku_queue_recipients{route="service"}'],
         status["queue"]["recipients"])
    same("queue bytes = status queue.bytes", m["hikyaku_queue_bytes"], status["queue"]["bytes"])
    for route in ("direct", "service"):
        mails = [q for q in queue if (q.get("route") or "direct") == route]
        same("queue messages %s = queue list" % route, m['hikyaku_queue_messages{route="%s"}' % route], len(mails))
        same("queue recipients %s = queue list" % route, m['hikyaku_queue_recipients{route="%s"}' % route],
             sum(q.get("pending", 0) for q in mails))
    same("connections in = status connections.open", m['hikyaku_connections{side="in"}'], status["connections"]["open"])
    svc = status.get("service") or {}
    same("service paused = status service.paused_until",
         m["hikyaku_service_paused"], 1.0 if svc.get("paused_until") else 0.0)
    same("build_info version = status version", m.get('hikyaku_build_info{version="%s"}' % status["version"]), 1.0)
    sys.exit(1 if nbad() else 0)


def cmd_flood(a):
    host, port, n, secs = a[0], int(a[1]), int(a[2]), float(a[3])
    socks, refused = [], 0
    for i in range(n):
        try:
            s = socket.create_connection((host, port), 5)
            s.setblocking(False)
            socks.append((i % 3, s))
        except OSError:
            refused += 1
    closed = set()
    t_end = time.time() + secs
    k = 0
    while time.time() < t_end:
        for idx, (kind, s) in enumerate(socks):
            if idx in closed:
                continue
            try:
                if kind == 1:
                    s.send(b"GET /metrics HTTP/1.1\r\nX-Drip: "[k % 30:k % 30 + 1] if k < 30 else b"a")
                elif kind == 2:
                    s.send(b"\x16\x03\x01\x02\x00garbage \xff\xfe\r\n" * 4)
                r = s.recv(4096)
                if r == b"":
                    closed.add(idx)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(idx)
        k += 1
        time.sleep(1)
    print("connections %d refused %d closed-by-server %d" % (len(socks), refused, len(closed)))
    for _, s in socks:
        s.close()


def cmd_slow(a):
    s = socket.create_connection((a[0], int(a[1])), 5)
    s.settimeout(1)
    start = time.time()
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    i = 0
    while time.time() - start < 60:
        try:
            s.send(req[i:i + 1])
            i += 1
            r = s.recv(4096)
            if r == b"":
                break
            if r:   # an answer (408 or such) then the close
                continue
        except socket.timeout:
            continue
        except OSError:
            break
    print("%.1f" % (time.time() - start))


def cmd_huge(a):
    s = socket.create_connection((a[0], int(a[1])), 10)
    n = int(a[2])
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * n + b"\r\n\r\n")
    except OSError:
        pass
    data = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    except OSError:
        pass
    print(data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed")


def cmd_dashboard(a):
    d = json.load(open(a[0]))
    text = open(a[1]).read()
    names = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", k).group(0) for k in parse(text)}
    # Families declared without a sample yet (hikyaku_destination_paused
    # before any [destination NAME] exists), with a histogram's series.
    for fam, typ in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(fam)
        if typ == "histogram":
            names.update(fam + s for s in ("_bucket", "_sum", "_count"))
    bad = 0
    assert isinstance(d.get("panels"), list) and d["panels"], "no panels"
    assert isinstance(d.get("title"), str) and d["title"], "no title"
    assert isinstance(d.get("schemaVersion"), int), "no schemaVersion"
    ids = set()
    nexpr = 0
    for p in d["panels"]:
        assert isinstance(p.get("id"), int) and p["id"] not in ids, "panel id missing or twice: %r" % p.get("title")
        ids.add(p["id"])
        assert isinstance(p.get("type"), str) and isinstance(p.get("title"), str), p
        gp = p.get("gridPos")
        assert isinstance(gp, dict) and all(isinstance(gp.get(k), int) for k in "hwxy"), "gridPos: %r" % p["title"]
        if p["type"] == "row":
            continue
        targets = p.get("targets")
        assert isinstance(targets, list) and targets, "no targets: %r" % p["title"]
        for t in targets:
            expr = t.get("expr")
            assert isinstance(expr, str) and expr, "no expr: %r" % p["title"]
            nexpr += 1
            for name in re.findall(r"\bhikyaku_[a-z_]+", expr):
                if name not in names:
                    print("panel %r: %s is not a metric hikyaku exports" % (p["title"], name))
                    bad += 1
    print("%d panels, %d expressions" % (len(d["panels"]), nexpr))
    sys.exit(1 if bad else 0)


def main():
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "get":
        cmd_get(a)
    elif cmd == "parse":
        print(json.dumps(parse(open(a[0]).read()), indent=1, sort_keys=True))
    elif cmd == "agree":
        cmd_agree(a)
    elif cmd == "flood":
        cmd_flood(a)
    elif cmd == "slow":
        cmd_slow(a)
    elif cmd == "huge":
        cmd_huge(a)
    elif cmd == "dashboard":
        cmd_dashboard(a)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
