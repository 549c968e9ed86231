#!/usr/bin/python3
"""hikyaku vs Postfix, side by side on this machine (run by bench/run.sh).

bench/run.sh installs what is missing and runs this file, which compiles
bench/smtp_latency.c and bench/tls_sink.c into the work directory; the
parameters (BENCH_* environment variables) are described at the top of
bench/run.sh and the method in docs/performance.md.

Both relays run at the same time, each with its own spool under the work
directory, and relay to the same upstream: Postfix's smtp-sink on loopback
(bench/tls_sink.c, STARTTLS with OpenSSL, for the TLS figure). Every load
is run on one relay, then on the other, alternately (ABBA...), BENCH_REPS
times.
"""
import collections
import datetime
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import spool  # noqa: E402  (the spool reader of the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

DEST_DOMAIN = "dest.bench.test"           # recipients' domain: MX -> the sink
VERIFIED = "verified.bench.test"          # the [routing] verified domain
FROM_DIRECT = "shop@direct.bench.test"
FROM_VERIFIED = "shop@" + VERIFIED


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
P = {
    "reps": env_int("BENCH_REPS", 1 if QUICK else 3),
    "messages": env_int("BENCH_MESSAGES", 1000 if QUICK else 10000),
    "sessions": env_int("BENCH_SESSIONS", 20),
    "size": env_int("BENCH_SIZE", 1024),
    "large_size": env_int("BENCH_LARGE_SIZE", 65536),
    "rate": env_float("BENCH_RATE", 1000),
    "latency_seconds": env_float("BENCH_LATENCY_SECONDS", 3 if QUICK else 10),
    "deferred": env_int("BENCH_DEFERRED", 2000 if QUICK else 100000),
    "out_conns": env_int("BENCH_OUT_CONNS", 10),
    "warmup": env_int("BENCH_WARMUP", 100 if QUICK else 500),
    "stall": env_float("BENCH_STALL", 90),
}
P["large_messages"] = env_int("BENCH_LARGE_MESSAGES", max(1, P["messages"] // 5))
SERVERS = os.environ.get("BENCH_SERVERS", "hikyaku postfix").split()
FIGURES = os.environ.get("BENCH_FIGURES", "new reuse large latency tls deferred").split()
BUILD = os.environ.get("BENCH_BUILD", "build")
WORK = os.environ.get("BENCH_WORK") or ""
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "results", "latest.txt"))
KEEP = os.environ.get("BENCH_KEEP", "") not in ("", "0")
PF_TLS_REUSE = os.environ.get("BENCH_POSTFIX_TLS_REUSE", "") not in ("", "0")

REPORT = []          # lines of the final report (also written to OUT)
ANOMALIES = []       # what looked wrong
PREFILL_NOTES = []   # how the deferred queues were filled


def say(msg=""):
    print(msg, flush=True)


def log(msg=""):
    say(msg)
    REPORT.append(msg)


def anomaly(msg):
    say("  !! " + msg)
    ANOMALIES.append(msg)


def free_port():
    """A loopback TCP port nobody listens on (smtp-sink and Postfix set
    SO_REUSEPORT, so a second listener on a busy port would not fail)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            return port


def wait_port(port, proc=None, seconds=20):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


# --- processes: CPU and memory of a process tree --------------------------

def proc_table():
    """pid -> (ppid, cpu ticks incl. reaped children, rss pages)."""
    t = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                s = f.read().decode("ascii", "replace")
        except OSError:
            continue
        r = s[s.rfind(")") + 2:].split()
        # fields 4.. of proc(5): state ppid ... utime(14) stime cutime cstime ... rss(24)
        t[int(d)] = (int(r[1]), int(r[11]) + int(r[12]) + int(r[13]) + int(r[14]), int(r[21]))
    return t


def pss_bytes(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_usage(root):
    """(CPU seconds, RSS bytes, pids) summed over root and its live
    descendants. A dead child's CPU is in its reaper's cutime/cstime; the
    reaper (Postfix's master, hikyaku) stays alive during a measurement."""
    t = proc_table()
    if root not in t:
        return None
    kids = collections.defaultdict(list)
    for pid, (ppid, _, _) in t.items():
        kids[ppid].append(pid)
    cpu = rss = 0
    pids = []
    todo = [root]
    while todo:
        p = todo.pop()
        _, c, r = t[p]
        cpu += c
        rss += r
        pids.append(p)
        todo.extend(kids.get(p, ()))
    return cpu / CLK, rss * PAGE, pids


def machine_cpu():
    """(busy, total) jiffies of all CPUs from /proc/stat (busy: all but
    idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])          # user nice system idle iowait irq softirq steal
    return total - v[3] - v[4], total


def load_cpu(sink):
    """CPU seconds of the load so far: the reaped children of this script
    (smtp-source, smtp_latency) and the sink's process."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    u = tree_usage(sink.proc.pid)
    return ru.ru_utime + ru.ru_stime + (u[0] if u else 0.0)


class Monitor:
    """CPU used by a process tree between start() and stop(), and the peaks
    of the sums of the RSS and of the PSS of its processes. RSS is sampled
    every 0.1 s; PSS costs a read of smaps_rollup per process (a few
    hundred microseconds each, too much for a tree of 100+ Postfix
    processes ten times a second), so it is sampled when the RSS sum
    reaches a new peak, at most once a second, and at the end."""

    def __init__(self, root):
        self.root = root
        self.peak = self.peak_pss = 0
        self.procs = 0
        self.last_pss = 0.0
        self.stop_ev = threading.Event()
        first = tree_usage(root)
        self.cpu0 = first[0] if first else 0.0
        self._sample(first, force_pss=True)
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _sample(self, u, force_pss=False):
        if not u:
            return u
        now = time.monotonic()
        new_peak = u[1] > self.peak
        self.peak = max(self.peak, u[1])
        self.procs = max(self.procs, len(u[2]))
        if force_pss or (new_peak and now - self.last_pss >= 1.0):
            self.last_pss = now
            self.peak_pss = max(self.peak_pss, sum(pss_bytes(p) for p in u[2]))
        return u

    def _run(self):
        while not self.stop_ev.wait(0.1):
            self._sample(tree_usage(self.root))

    def stop(self):
        self.stop_ev.set()
        self.th.join()
        last = self._sample(tree_usage(self.root), force_pss=True)
        return (last[0] - self.cpu0) if last else float("nan")


# --- the upstream: smtp-sink (or tls_sink), dnsmasq ---------------------------

class Sink:
    """An SMTP sink on loopback that prints "mesg=N" counters: Postfix's
    smtp-sink, or bench/tls_sink.c (STARTTLS) for the TLS figure."""

    def __init__(self, work, name, cmd):
        self.port = free_port()
        self.name = name
        self.out = os.path.join(work, name + ".out")
        cmd = [a.replace("PORT", str(self.port)) for a in cmd]
        self.proc = subprocess.Popen(cmd, stdout=open(self.out, "wb"),
                                     stderr=open(os.path.join(work, name + ".err"), "wb"))
        if not wait_port(self.port, self.proc):
            sys.exit("bench: %s did not start (see %s/%s.err)" % (cmd[0], work, name))
        time.sleep(0.1)

    def count(self):
        """Messages received so far (the last "mesg=N" counter)."""
        try:
            with open(self.out, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200))
                tail = f.read().decode("ascii", "replace")
        except OSError:
            return 0
        m = re.findall(r"mesg=(\d+)", tail)
        return int(m[-1]) if m else 0

    def plain(self):
        """Messages received without TLS (tls_sink only)."""
        try:
            with open(self.out, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 200))
                m = re.findall(r"plain=(\d+)", f.read().decode("ascii", "replace"))
        except OSError:
            return 0
        return int(m[-1]) if m else 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def smtp_sink(work):
    return Sink(work, "sink", ["smtp-sink", "-u", "nobody", "-c", "127.0.0.1:PORT", "1024"])


class Limit:
    """The machine's limit: smtp-source straight into the sink, no relay
    between them, measured in the same run and the same way as the relays
    (issue: "a share of the limit measured in the same run"). Its CPU
    figure is the sink's own."""
    name = "limit"

    def __init__(self, sink):
        self.sink = sink
        self.port = sink.port
        self.log = LogCounter(os.devnull, {})

    def root_pid(self):
        return self.sink.proc.pid

    def reset_peak(self):
        pass

    def peak_rss(self, sampled):
        return sampled

    def alive(self):
        return self.sink.proc.poll() is None

    def queued(self):
        return 0

    def stderr_lines(self):
        return []

    def stop(self):
        pass


# The figures that also run straight into the sink (the machine's limit).
LIMIT_FIGURES = ("new", "reuse", "large")


def tls_sink(work, binary):
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.%s" % DEST_DOMAIN, "-keyout", d + "/key.pem", "-out", d + "/cert.pem"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Sink(work, "tls-sink", [binary, "-p", "PORT", "-c", d + "/cert.pem", "-k", d + "/key.pem"])


class Dns:
    """dnsmasq answering for *.test: MX of DEST_DOMAIN -> 127.0.0.1."""

    def __init__(self, work):
        while True:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            self.port = u.getsockname()[1]
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", self.port))
                break
            except OSError:
                pass
            finally:
                u.close()
                t.close()
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
        self.proc = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             "--pid-file", "--user=" + user, "--group=" + group, "--listen-address=127.0.0.1",
             "--bind-interfaces", "--port=%d" % self.port, "--local=/test/",
             "--mx-host=%s,mx.%s,10" % (DEST_DOMAIN, DEST_DOMAIN),
             "--host-record=mx.%s,127.0.0.1" % DEST_DOMAIN],
            stdout=open(os.path.join(work, "dnsmasq.out"), "wb"), stderr=subprocess.STDOUT)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            sys.exit("bench: dnsmasq did not start (see %s/dnsmasq.out)" % work)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


# --- the relays -----------------------------------------------------------

class LogCounter:
    """Counts patterns in the bytes appended to a log file since the last call."""

    def __init__(self, path, patterns):
        self.path = path
        self.patterns = patterns
        self.off = 0
        self.rest = b""
        self.total = collections.Counter()
        self.lines = []          # the lines matching a pattern named "!..."

    def update(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self.total
        self.off += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        data = data[:cut]
        for name, pat in self.patterns.items():
            if name.startswith("!"):
                for line in re.findall(pat + rb".*", data):
                    if not line.strip():
                        continue
                    if len(self.lines) < 200:
                        self.lines.append(line.decode("utf-8", "replace"))
                    self.total[name] += 1
            else:
                self.total[name] += data.count(pat)
        return self.total


class Hikyaku:
    name = "hikyaku"

    def __init__(self, work, binary):
        self.work = work
        self.binary = binary
        self.proc = None
        self.n = 0

    def start(self, scenario, upstream_port, dns_port, tls, closed_port):
        self.n += 1
        d = os.path.join(self.work, "hikyaku-%s" % scenario)
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.port = free_port()
        service = ""
        routing = ""
        if scenario == "deferred":
            routing = "verified_domains = %s\n" % VERIFIED
            service = ("host = 127.0.0.1\nport = %d\ntls = none\nrate = 100000/s\n"
                       "max_connections = %d\n" % (closed_port, P["out_conns"]))
        conf = """; written by bench/bench.py
[server]
listen = 127.0.0.1:{port}
hostname = hikyaku.bench.test
; every client of the benchmark is 127.0.0.1: the default 100 per client
; would refuse the latency load once 100 sessions are open at once
max_connections_per_client = 1000

[routing]
{routing}
[service]
{service}
[direct]
tls = {tls}
port = {up}
dns_servers = 127.0.0.1:{dns}
max_connections_per_domain = {conns}
internal_destinations = any

[queue]
dir = {d}/queue

[suppression]
db = {d}/suppression.db

[log]
file = {d}/hikyaku.jsonl

[control]
socket = {d}/control.sock
""".format(port=self.port, routing=routing, service=service, tls="encrypt" if tls else "none",
           up=upstream_port, dns=dns_port, conns=P["out_conns"], d=d)
        self.conf = os.path.join(d, "hikyaku.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        chk = subprocess.run([self.binary, "-c", self.conf, "--check"], capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit("bench: hikyaku --check refused %s:\n%s%s" % (self.conf, chk.stdout, chk.stderr))
        self.err_path = os.path.join(d, "hikyaku.err")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdout=open(self.err_path, "ab"),
                                     stderr=subprocess.STDOUT)
        if not wait_port(self.port, self.proc):
            sys.exit("bench: hikyaku did not start:\n" + open(self.err_path).read())
        time.sleep(0.2)
        self.log = LogCounter(os.path.join(d, "hikyaku.jsonl"), {
            "received": b'"event":"received"', "delivered": b'"event":"delivered"',
            "deferred": b'"event":"deferred"', "bounced": b'"event":"bounced"',
            "expired": b'"event":"expired"'})
        # What it prints from now on (its start-up lines are not news).
        self.errlog = LogCounter(self.err_path, {"!line": rb"(?m)^(?!hikyaku: (?:\S+ received, stopping|stopped)$)"})
        self.errlog.update()
        self.errlog.lines.clear()
        self.errlog.total.clear()

    def root_pid(self):
        return self.proc.pid

    def reset_peak(self):
        try:
            with open("/proc/%d/clear_refs" % self.proc.pid, "w") as f:
                f.write("5")       # resets VmHWM to the current RSS
        except OSError:
            pass

    def peak_rss(self, sampled):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return sampled

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def queued(self):
        # DIR/mail and the live records of the segment log (relay/queue_wal.h),
        # read by the tests' independent spool reader.
        try:
            return len(spool.ids(os.path.join(self.dir, "queue")))
        except OSError:
            return -1

    def stderr_lines(self):
        self.errlog.update()
        return self.errlog.lines

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                anomaly("hikyaku did not exit within 60 s of SIGTERM; killed")
                self.proc.kill()
                rc = self.proc.wait()
            if rc != 0:
                anomaly("hikyaku exited %d on SIGTERM" % rc)
        else:
            tail = open(self.err_path, errors="replace").read().splitlines()[-5:]
            anomaly("hikyaku had died (exit status %s) before the end of the scenario; its last words: %s"
                    % (self.proc.returncode, " | ".join(tail)))
        self.proc = None


POSTFIX_MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsproxy  unix  -       -       n       -       0       tlsproxy
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    name = "postfix"

    def __init__(self, work):
        self.work = work
        self.dir = None

    def postfix(self, *args, check=True):
        # Postfix prints its errors on stderr only when that is a terminal:
        # they also go to maillog_file.
        r = subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True, text=True)
        if check and r.returncode != 0:
            ml = ""
            try:
                ml = "".join(open(self.maillog).readlines()[-20:])
            except OSError:
                pass
            sys.exit("bench: postfix %s failed:\n%s%s%s" % (" ".join(args), r.stdout, r.stderr, ml))
        return r

    def start(self, scenario, upstream_port, dns_port, tls, closed_port):
        d = os.path.join(self.work, "postfix-%s" % scenario)
        self.dir = d
        self.etc = os.path.join(d, "etc")
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix")
        self.port = free_port()
        self.maillog = os.path.join(d, "maillog")
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(listen="127.0.0.1:%d" % self.port))
        open(os.path.join(self.etc, "main.cf"), "w").close()
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": d + "/queue",
            "data_directory": d + "/data",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postfix.bench.test",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % upstream_port,
            "default_destination_concurrency_limit": str(P["out_conns"]),
            "message_size_limit": str(25 * 1024 * 1024),
            "smtp_tls_security_level": "encrypt" if tls else "none",
            "smtp_tls_session_cache_database": "btree:${data_directory}/smtp_scache",
            "smtp_tls_connection_reuse": "yes" if PF_TLS_REUSE else "no",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": d,
        }
        if scenario == "deferred":
            settings["sender_dependent_relayhost_maps"] = \
                "inline:{ @%s=[127.0.0.1]:%d }" % (VERIFIED, closed_port)
        subprocess.run(["postconf", "-c", self.etc, "-e"] + ["%s=%s" % kv for kv in settings.items()],
                       check=True)
        self.postfix("check")
        self.postfix("start")
        if not wait_port(self.port):
            sys.exit("bench: Postfix does not listen on %d (see %s)" % (self.port, self.maillog))
        time.sleep(0.2)
        self.log = LogCounter(self.maillog, {
            "delivered": b"status=sent", "deferred": b"status=deferred", "bounced": b"status=bounced",
            "!problem": rb"(?m)^.*(?:warning|error|fatal|panic): "})

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def root_pid(self):
        return self.master_pid()

    def reset_peak(self):
        pass

    def peak_rss(self, sampled):
        return sampled

    def alive(self):
        pid = self.master_pid()
        return pid is not None and os.path.exists("/proc/%d" % pid)

    def queued(self):
        n = 0
        for q in ("incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.dir, "queue", q)):
                n += len(files)
        return n

    def stderr_lines(self):
        self.log.update()
        return self.log.lines

    def stop(self):
        if not self.dir:
            return
        pid = self.master_pid()
        self.postfix("stop", check=False)
        end = time.monotonic() + 30
        while pid and os.path.exists("/proc/%d" % pid) and time.monotonic() < end:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().split(") ")[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.1)
        else:
            if pid and os.path.exists("/proc/%d" % pid):
                anomaly("Postfix's master (%d) did not stop within 30 s: killed" % pid)
                os.kill(pid, signal.SIGKILL)
        self.dir = None


# --- one measurement ------------------------------------------------------

def wait_sink(sink, target, stall):
    """Waits until the sink has `target` messages; returns how many it has
    (fewer: no progress for `stall` seconds)."""
    last, last_t = sink.count(), time.monotonic()
    while True:
        c = sink.count()
        if c >= target:
            return c
        now = time.monotonic()
        if c != last:
            last, last_t = c, now
        elif now - last_t > stall:
            return c
        time.sleep(0.01)


def smtp_source(port, n, size, reuse, sender):
    cmd = ["smtp-source", "-s", str(P["sessions"]), "-m", str(n), "-l", str(size), "-N",
           "-M", "source.bench.test", "-f", sender, "-t", "user@" + DEST_DOMAIN]
    if reuse:
        cmd.append("-d")
    cmd.append("127.0.0.1:%d" % port)
    return cmd


def run_load(srv, sink, figure, n, size, reuse=False, sender=FROM_DIRECT, latency=False, quiet_deferred=False):
    """Runs one load against srv; returns a dict of measurements."""
    base = sink.count()
    base_plain = sink.plain()
    srv.log.update()
    before = dict(srv.log.total)
    srv.reset_peak()
    root = srv.root_pid()
    mon = Monitor(root)
    load0, mach0 = load_cpu(sink), machine_cpu()
    t0 = time.monotonic()
    res = {}
    if latency:
        cmd = [os.path.join(os.path.dirname(sink.out), "smtp_latency"), "-T", "30", "-r", str(P["rate"]), "-d", str(P["latency_seconds"]), "-l", str(size),
               "-f", sender, "-t", DEST_DOMAIN, "127.0.0.1", str(srv.port)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        kv = dict(x.split("=", 1) for x in r.stdout.split() if "=" in x)
        if "ok" not in kv:
            anomaly("%s %s: smtp_latency failed: %s" % (srv.name, figure, (r.stdout + r.stderr).strip()[:300]))
            kv = {"ok": "0", "offered": "0", "errors": "?"}
        n = int(kv["ok"])
        res.update({k: float(kv[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
                                               "achieved_rate", "max_start_lag_ms") if k in kv})
        res["offered"] = int(kv.get("offered", 0))
        res["errors"] = int(kv["errors"]) if kv["errors"].isdigit() else -1
        if res["errors"]:
            anomaly("%s %s: %s of %s messages failed (first error: %s)"
                    % (srv.name, figure, kv["errors"], kv.get("offered"), kv.get("first_error")))
    else:
        r = subprocess.run(smtp_source(srv.port, n, size, reuse, sender), capture_output=True, text=True)
        if r.returncode != 0:
            anomaly("%s %s: smtp-source failed (exit %d): %s"
                    % (srv.name, figure, r.returncode, (r.stdout + r.stderr).strip()[-300:]))
            res["errors"] = 1
    t1 = time.monotonic()
    got = wait_sink(sink, base + n, P["stall"]) - base
    t2 = time.monotonic()
    load1, mach1 = load_cpu(sink), machine_cpu()
    time.sleep(0.3)   # let the relay write its last states and clean up
    cpu = mon.stop()
    srv.log.update()
    delta = {k: srv.log.total[k] - before.get(k, 0) for k in srv.log.total}
    res.update({
        "n": n,
        "accepted_rate": n / (t1 - t0) if t1 > t0 else 0,
        "e2e_rate": got / (t2 - t0) if t2 > t0 else 0,
        "cpu_s": cpu,
        "cpu_ms_per_msg": cpu / n * 1000 if n else float("nan"),
        # The load generator's own share of the machine (the limit run's
        # relay is the sink itself, so there it is source + sink again).
        "load_ms_per_msg": (load1 - load0) / n * 1000 if n else float("nan"),
        "busy_pct": ((mach1[0] - mach0[0]) * 100.0 / (mach1[1] - mach0[1])
                     if mach1[1] > mach0[1] else float("nan")),
        "rss_mib": srv.peak_rss(mon.peak) / 1048576,
        "pss_mib": mon.peak_pss / 1048576,
        "procs": mon.procs,
        "lost": n - got,
        "deferred": delta.get("deferred", 0),
        "bounced": delta.get("bounced", 0),
    })
    if got < n:
        anomaly("%s %s: the sink got %d of %d messages (no progress for %.0f s)"
                % (srv.name, figure, got, n, P["stall"]))
    elif got > n and not res.get("errors"):
        anomaly("%s %s: the sink got %d messages for %d sent (duplicates, or late mail)"
                % (srv.name, figure, got, n))
    if res["deferred"] and not quiet_deferred:
        anomaly("%s %s: %d deferrals logged during a run where the upstream was up"
                % (srv.name, figure, res["deferred"]))
    if sink.name == "tls-sink" and sink.plain() != base_plain:
        anomaly("%s %s: %d messages reached the TLS sink without STARTTLS"
                % (srv.name, figure, sink.plain() - base_plain))
    if res["bounced"]:
        anomaly("%s %s: %d bounces logged" % (srv.name, figure, res["bounced"]))
    if not srv.alive():
        anomaly("%s died during %s" % (srv.name, figure))
    return res


def fmt_run(srv, figure, rep, res):
    if "p50_ms" in res:
        return ("  %-9s rep %d %-8s ok %5d/%-5d  p50 %7.2f ms  p99 %8.2f ms  max %8.2f ms  started %.0f/s"
                "  cpu %6.2f s  rss %6.1f MiB  pss %6.1f MiB" % (
                    figure, rep, srv, res["n"], res["offered"], res["p50_ms"], res["p99_ms"],
                    res["max_ms"], res.get("achieved_rate", 0), res["cpu_s"], res["rss_mib"], res["pss_mib"]))
    return ("  %-9s rep %d %-8s %6d msgs  accepted %7.1f/s  relayed %7.1f/s  cpu %6.2f s (%.2f ms/msg)"
            "  load %.2f ms/msg  busy %3.0f%%  rss %6.1f MiB  pss %6.1f MiB  procs %3d  lost %d%s" % (
                figure, rep, srv, res["n"], res["accepted_rate"], res["e2e_rate"], res["cpu_s"],
                res["cpu_ms_per_msg"], res["load_ms_per_msg"], res["busy_pct"], res["rss_mib"], res["pss_mib"], res["procs"], res["lost"],
                "  deferrals %d" % res["deferred"] if res["deferred"] else ""))


# --- the whole benchmark --------------------------------------------------

# figure -> the scenario (relay configuration) it runs in
FIGURE_DEFS = {
    "new": "plain",         # 1 KiB, a new connection per message
    "reuse": "plain",       # 1 KiB, smtp-source -d: each session sends all its messages
    "large": "plain",       # 64 KiB, a new connection per message
    "latency": "plain",     # open loop, BENCH_RATE msg/s, a new connection per message
    "tls": "tls",           # as "new", relayed over STARTTLS to bench/tls_sink.c
    "deferred": "deferred",  # as "new", with BENCH_DEFERRED mails deferred in the queue
}


def figure_params(fig):
    if fig == "large":
        return P["large_messages"], P["large_size"]
    if fig == "latency":
        return 0, P["size"]
    return P["messages"], P["size"]


def kib(n):
    return "%d KiB" % (n // 1024) if n % 1024 == 0 else "%d B" % n


def title(fig):
    n, size = figure_params(fig)
    return {
        "new": "%s, new conn/msg" % kib(size),
        "reuse": "%s, reused conns" % kib(size),
        "large": "%s, new conn/msg" % kib(size),
        "latency": "latency @%g/s, new conn" % P["rate"],
        "tls": "%s, new conn, STARTTLS out" % kib(size),
        "deferred": "%s, new conn, %d deferred" % (kib(size), P["deferred"]),
    }[fig]


def prefill(srv, sink):
    """Submits P["deferred"] mails for the (down) service route and waits
    until each has had its first, failed, delivery attempt."""
    n = P["deferred"]
    srv.log.update()
    base_def = srv.log.total["deferred"]
    say("  prefill %s: %d mails for the service route (down)" % (srv.name, n))
    t0 = time.monotonic()
    r = subprocess.run(smtp_source(srv.port, n, P["size"], True, FROM_VERIFIED), capture_output=True, text=True)
    t1 = time.monotonic()
    if r.returncode != 0:
        anomaly("%s prefill: smtp-source failed: %s" % (srv.name, (r.stdout + r.stderr).strip()[-300:]))
    rate = n / (t1 - t0)
    # Wait for the first delivery attempt of each (at most 15 min).
    last, last_t = -1, time.monotonic()
    while True:
        srv.log.update()
        d = srv.log.total["deferred"] - base_def
        if d >= n:
            break
        if d != last:
            last, last_t = d, time.monotonic()
        elif time.monotonic() - last_t > 120:
            anomaly("%s prefill: only %d of %d mails had a first delivery attempt after 120 s without progress"
                    % (srv.name, d, n))
            break
        time.sleep(0.5)
    t2 = time.monotonic()
    q = srv.queued()
    msg = ("  prefill %s: accepted %.0f msg/s (%.1f s), first attempts done after %.1f s, %d mails queued"
           % (srv.name, rate, t1 - t0, t2 - t0, q))
    say(msg)
    PREFILL_NOTES.append(msg)
    if q < n:
        anomaly("%s prefill: %d mails in the queue, %d expected" % (srv.name, q, n))
    return rate


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (Postfix's master must start as root)")
    bad = [n for n in SERVERS if n not in ("hikyaku", "postfix")] + \
        [f for f in FIGURES if f not in FIGURE_DEFS]
    if bad or not SERVERS:
        sys.exit("bench: unknown relay or figure: %s (BENCH_SERVERS: hikyaku postfix; BENCH_FIGURES: %s)"
                 % (" ".join(bad), " ".join(FIGURE_DEFS)))
    work = WORK
    own_work = False
    if not work:
        work = subprocess.run(["mktemp", "-d", "/var/tmp/hikyaku-bench.XXXXXX"], capture_output=True,
                              text=True, check=True).stdout.strip()
        own_work = True
    os.chmod(work, 0o755)     # Postfix's daemons (user postfix) work below it
    binary = os.path.join(ROOT, BUILD, "hikyaku")
    if "hikyaku" in SERVERS and not os.access(binary, os.X_OK):
        sys.exit("bench: %s is missing: build first (make build)" % binary)
    latency_bin = os.path.join(work, "smtp_latency")
    tls_bin = os.path.join(work, "tls_sink")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", latency_bin, os.path.join(ROOT, "bench", "smtp_latency.c")],
                   check=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", tls_bin, os.path.join(ROOT, "bench", "tls_sink.c"),
                    "-lssl", "-lcrypto"], check=True)
    figs = [f for f in FIGURE_DEFS if f in FIGURES]
    if P["deferred"] <= 0 and "deferred" in figs:
        figs.remove("deferred")

    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", work], capture_output=True,
                            text=True).stdout.strip()
    pf_version = subprocess.run(["postconf", "-dh", "mail_version"], capture_output=True, text=True).stdout.strip()
    cpu_model = ""
    try:
        cpu_model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    log("hikyaku vs Postfix relay benchmark — %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    log("machine: %s, %d CPUs (%s), kernel %s, load average %s" % (
        platform.node(), os.cpu_count(), cpu_model, platform.release(),
        " ".join("%.2f" % x for x in os.getloadavg())))
    log("spools: %s (%s)%s; hikyaku: %s; Postfix %s" % (
        work, fstype, "  -- WARNING: tmpfs, fsync costs nothing" if fstype == "tmpfs" else "",
        binary, pf_version))
    log("parameters: reps %d, messages %d (large: %d), sessions %d, size %d B (large %d B), "
        "latency %g msg/s for %g s, deferred %d, outbound connections %d, warm-up %d%s" % (
            P["reps"], P["messages"], P["large_messages"], P["sessions"], P["size"], P["large_size"],
            P["rate"], P["latency_seconds"], P["deferred"], P["out_conns"], P["warmup"],
            ", QUICK" if QUICK else ""))
    log()

    results = collections.defaultdict(lambda: collections.defaultdict(list))   # fig -> srv -> [res]
    extra = {}
    up = []
    servers = []
    t_start = time.monotonic()

    def cleanup():
        for s in servers:
            try:
                s.stop()
            except Exception as e:   # noqa: BLE001 - keep stopping the rest
                say("bench: stopping %s: %s" % (s.name, e))
        servers.clear()
        for u in reversed(up):
            try:
                u.stop()
            except Exception:        # noqa: BLE001
                pass
        up.clear()

    def on_signal(sig, _frame):
        raise KeyboardInterrupt("signal %d" % sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        dns = Dns(work)
        up.append(dns)
        sink = smtp_sink(work)
        up.append(sink)
        tsink = None
        if "tls" in figs:
            tsink = tls_sink(work, tls_bin)
            up.append(tsink)
        closed_port = free_port()

        for scenario in ("plain", "tls", "deferred"):
            sfigs = [f for f in figs if FIGURE_DEFS[f] == scenario]
            if not sfigs:
                continue
            say("== scenario %s: %s" % (scenario, ", ".join(title(f) for f in sfigs)))
            ssink = tsink if scenario == "tls" else sink
            # Both relays run side by side and take turns, except with a
            # deferred queue: then the idle one would be retrying its
            # deferred mail during the other's runs, so each has its turn
            # alone (prefill, then every repetition).
            groups = [SERVERS] if scenario != "deferred" else [[n] for n in SERVERS]
            for group in groups:
                for name in group:
                    s = Hikyaku(work, binary) if name == "hikyaku" else Postfix(work)
                    s.start(scenario, ssink.port, dns.port, scenario == "tls", closed_port)
                    servers.append(s)
                if scenario == "deferred":
                    for s in servers:
                        extra[s.name] = prefill(s, sink)
                for s in servers:
                    if P["warmup"] > 0:
                        run_load(s, ssink, "warm-up", P["warmup"], P["size"],
                                 quiet_deferred=(scenario == "deferred"))
                for rep in range(1, P["reps"] + 1):
                    for fig in sfigs:
                        n, size = figure_params(fig)
                        order = servers if rep % 2 == 1 else list(reversed(servers))
                        if fig in LIMIT_FIGURES and scenario == "plain" and group is groups[0]:
                            order = [Limit(ssink)] + order
                        for s in order:
                            res = run_load(s, ssink, fig, n, size, reuse=(fig == "reuse"),
                                           latency=(fig == "latency"), quiet_deferred=(scenario == "deferred"))
                            results[fig][s.name].append(res)
                            say(fmt_run(s.name, fig, rep, res))
                            time.sleep(0.5)
                for s in servers:
                    lines = s.stderr_lines()
                    if lines:
                        what = "standard error" if s.name == "hikyaku" else "maillog problems"
                        anomaly("%s, scenario %s: %d lines on its %s, the first: %s" % (
                            s.name, scenario, len(lines), what, " | ".join(lines[:5])))
                    s.stop()
                servers.clear()
    except KeyboardInterrupt as e:
        say("bench: interrupted (%s)" % e)
        cleanup()
        if own_work and not KEEP:
            shutil.rmtree(work, ignore_errors=True)
        return 130
    finally:
        cleanup()

    elapsed = time.monotonic() - t_start
    log(report_table(figs, results, extra))
    for note in PREFILL_NOTES:
        log(note)
    log("wall time: %.0f s" % elapsed)
    log()
    if ANOMALIES:
        log("anomalies:")
        for a in ANOMALIES:
            log("  - " + a)
    else:
        log("anomalies: none seen (no lost mail, no errors, nothing on hikyaku's stderr)")
    log()
    log("runs (each line one relay, one repetition):")
    for fig in figs:
        for name in ["limit"] + SERVERS:
            for i, res in enumerate(results[fig].get(name, []), 1):
                log(fmt_run(name, fig, i, res))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(REPORT) + "\n")
    say("written: %s" % OUT)
    if own_work:
        if KEEP:
            say("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


# --- the table ------------------------------------------------------------

ROWS = [
    # (figure kinds, key, label, format, better)
    (("new", "reuse", "large", "tls", "deferred"), "accepted_rate", "accepted msg/s", "%.0f", "higher"),
    (("new", "reuse", "large", "tls", "deferred"), "e2e_rate", "relayed msg/s (end to end)", "%.0f", "higher"),
    (("new", "reuse", "large", "tls", "deferred", "latency"), "cpu_ms_per_msg", "CPU ms/msg (user+sys)", "%.3f",
     "lower"),
    (("new", "reuse", "large", "tls", "deferred", "latency"), "cpu_s", "CPU s (run total)", "%.2f", "lower"),
    (("new", "reuse", "large", "tls", "deferred"), "load_ms_per_msg", "load's CPU ms/msg (source + sink)", "%.3f",
     "-"),
    (("new", "reuse", "large", "tls", "deferred"), "busy_pct", "machine busy % (all CPUs)", "%.0f", "-"),
    (("new", "reuse", "large", "tls", "deferred", "latency"), "rss_mib", "peak RSS MiB", "%.1f", "lower"),
    (("new", "reuse", "large", "tls", "deferred", "latency"), "pss_mib", "peak PSS MiB", "%.1f", "lower"),
    (("deferred",), "deferred", "deferrals logged during the run (retries)", "%.0f", "-"),
    (("latency",), "p50_ms", "p50 ms (connect to 250 after DATA)", "%.2f", "lower"),
    (("latency",), "p99_ms", "p99 ms", "%.2f", "lower"),
    (("latency",), "max_ms", "max ms", "%.1f", "lower"),
    (("latency",), "achieved_rate", "connections started/s", "%.0f", "higher"),
]


def cell(vals, fmt):
    vals = [v for v in vals if v == v]      # drop NaN
    if not vals:
        return "-", None
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt % m, m
    return "%s (%s-%s)" % (fmt % m, fmt % min(vals), fmt % max(vals)), m


def report_table(figs, results, extra):
    out = []
    w = 44
    names = SERVERS
    head = "%-*s" % (w, "figure") + "".join("%-26s" % n for n in names)
    if len(names) == 2:
        head += "%s/%s" % (names[0], names[1])
    out.append("results: median (min-max) over %d repetition(s); ratio of medians" % P["reps"])
    out.append("")
    out.append(head)
    out.append("-" * len(head))
    for fig in figs:
        out.append(title(fig))
        for kinds, key, label, fmt, better in ROWS:
            if fig not in kinds:
                continue
            meds = []
            line = "  %-*s" % (w - 2, label + (" [" + better + " is better]" if key in (
                "accepted_rate", "p99_ms") else ""))
            for n in names:
                txt, m = cell([r.get(key, float("nan")) for r in results[fig][n]], fmt)
                meds.append(m)
                line += "%-26s" % txt
            if len(meds) == 2 and meds[0] is not None and meds[1] and not any(map(math.isinf, meds)):
                line += "%.2f" % (meds[0] / meds[1])
            out.append(line)
        lost = {n: sum(r["lost"] for r in results[fig][n]) for n in names}
        errs = {n: sum(r.get("errors", 0) for r in results[fig][n]) for n in names}
        if any(lost.values()) or any(errs.values()):
            out.append("  %-*s" % (w - 2, "lost / failed submissions") +
                       "".join("%-26s" % ("%d / %d" % (lost[n], errs[n])) for n in names))
    lim = [f for f in figs if f in LIMIT_FIGURES and results[f].get("limit")]
    if lim:
        out.append("the machine's limit: smtp-source straight into the sink, in the same run")
        for fig in lim:
            lm = statistics.median(r["e2e_rate"] for r in results[fig]["limit"])
            txt, _ = cell([r["e2e_rate"] for r in results[fig]["limit"]], "%.0f")
            out.append("  %-*s%s msg/s" % (w - 2, title(fig), txt))
            line = "  %-*s" % (w - 2, "  share of the limit, end to end")
            for n in names:
                vals = [r["e2e_rate"] / lm * 100 for r in results[fig][n]] if lm else []
                line += "%-26s" % (cell(vals, "%.0f%%")[0] if vals else "-")
            out.append(line)
            # What the CPU allows: at 70 % of the limit the machine has
            # NCPU / (0.7 * limit) CPU seconds per mail for the load and
            # the relay together; the load takes its share (measured in
            # the relay's own runs), the relay may use the rest.
            ncpu = os.cpu_count() or 1
            line = "  %-*s" % (w - 2, "  relay CPU ms/msg that 70% would leave")
            line2 = "  %-*s" % (w - 2, "  CPU-bound ceiling, NCPU/(relay+load)")
            for n in names:
                ld = [r["load_ms_per_msg"] for r in results[fig][n] if r.get("load_ms_per_msg") == r.get("load_ms_per_msg")]
                rc = [r["cpu_ms_per_msg"] for r in results[fig][n]]
                if lm and ld and rc:
                    budget = ncpu * 1000.0 / (0.7 * lm) - statistics.median(ld)
                    ceil = ncpu * 1000.0 / (statistics.median(ld) + statistics.median(rc))
                    line += "%-26s" % ("%.3f" % budget)
                    line2 += "%-26s" % ("%.0f msg/s = %.0f%%" % (ceil, ceil / lm * 100))
                else:
                    line += "%-26s" % "-"
                    line2 += "%-26s" % "-"
            out.append(line)
            out.append(line2)
            lr = results[fig]["limit"]
            out.append("  %-*s%s ms/msg, machine %s%% busy" % (
                w - 2, "  the limit run's load (source + sink)",
                cell([r["load_ms_per_msg"] for r in lr], "%.3f")[0],
                cell([r["busy_pct"] for r in lr], "%.0f")[0]))
    if "tls" in figs and "new" in figs:
        out.append("TLS cost (STARTTLS run minus plain 1 KiB new-conn run, medians)")
        line = "  %-*s" % (w - 2, "extra CPU ms/msg")
        line2 = "  %-*s" % (w - 2, "relayed msg/s, TLS / plain")
        for n in names:
            a = [r["cpu_ms_per_msg"] for r in results["tls"][n]]
            b = [r["cpu_ms_per_msg"] for r in results["new"][n]]
            c = [r["e2e_rate"] for r in results["tls"][n]]
            d = [r["e2e_rate"] for r in results["new"][n]]
            line += "%-26s" % ("%.3f" % (statistics.median(a) - statistics.median(b)) if a and b else "-")
            line2 += "%-26s" % ("%.2f" % (statistics.median(c) / statistics.median(d)) if c and d and
                                statistics.median(d) else "-")
        out.append(line)
        out.append(line2)
    if extra:
        out.append("prefill of the deferred queue (service route down, connections reused)")
        out.append("  %-*s" % (w - 2, "accepted msg/s") + "".join(
            "%-26s" % ("%.0f" % extra[n] if n in extra else "-") for n in names))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
