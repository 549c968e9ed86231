#!/usr/bin/python3
"""A tiny UDP DNS front for the fault tests (plain Python stdlib): for the
names its rules name it answers SERVFAIL, NXDOMAIN, or nothing at all (the
client times out); every other query is forwarded to a real server (the
tests' dnsmasq) and its answer relayed unchanged.

usage: dns_fault.py --listen 127.0.0.1:PORT --forward 127.0.0.1:PORT --rules FILE
  Prints READY (flushed) once listening; runs until SIGTERM/SIGINT.

FILE is read again whenever it changes, so a test turns a fault on or off
by rewriting it. One rule a line, "#" starts a comment:
  servfail NAME [TYPE]    answer SERVFAIL (RCODE 2)
  drop NAME [TYPE]        never answer
  nxdomain NAME [TYPE]    answer NXDOMAIN (RCODE 3)
NAME matches the query name exactly (case-insensitive, no final dot);
TYPE is A, AAAA, MX, TXT or a number; without it every type matches.
Each query is logged to stderr as "QNAME TYPE -> ACTION".
"""
import argparse
import asyncio
import os
import signal
import struct
import sys

TYPES = {"A": 1, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = {"servfail": 2, "nxdomain": 3}


def host_port(text):
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT: %r" % text)
    return host.strip("[]"), int(port)


class Rules:
    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.rules = []

    def get(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            self.rules, self.stamp = [], None
            return self.rules
        if stamp != self.stamp:
            rules = []
            with open(self.path) as f:
                for line in f:
                    w = line.split("#", 1)[0].split()
                    if len(w) < 2 or w[0] not in ("servfail", "drop", "nxdomain"):
                        continue
                    t = None
                    if len(w) > 2:
                        t = TYPES.get(w[2].upper()) or int(w[2])
                    rules.append((w[0], w[1].lower().rstrip("."), t))
            self.rules, self.stamp = rules, stamp
        return self.rules


def parse_question(msg):
    """(qname, qtype, end offset of the question) of a query, or None."""
    if len(msg) < 12 or struct.unpack(">H", msg[4:6])[0] < 1:
        return None
    off, labels = 12, []
    while off < len(msg):
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            return None
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    if off + 4 > len(msg):
        return None
    qtype = struct.unpack(">H", msg[off:off + 2])[0]
    return ".".join(labels).lower(), qtype, off + 4


def error_answer(query, qend, rcode):
    tid, flags = struct.unpack(">HH", query[:4])
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode   # QR, opcode+RD kept, RA
    return struct.pack(">HHHHHH", tid, flags, 1, 0, 0, 0) + query[12:qend]


class Front(asyncio.DatagramProtocol):
    def __init__(self, a):
        self.a = a
        self.rules = Rules(a.rules)

    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, addr):
        q = parse_question(data)
        if not q:
            return
        name, qtype, qend = q
        action = "forward"
        for act, n, t in self.rules.get():
            if n == name and (t is None or t == qtype):
                action = act
                break
        print("%s %d -> %s" % (name, qtype, action), file=sys.stderr, flush=True)
        if action == "drop":
            return
        if action in RCODES:
            self.t.sendto(error_answer(data, qend, RCODES[action]), addr)
            return
        asyncio.ensure_future(self.forward(data, addr))

    async def forward(self, data, addr):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        class Up(asyncio.DatagramProtocol):
            def datagram_received(self, d, a):
                if not fut.done():
                    fut.set_result(d)

        t, _ = await loop.create_datagram_endpoint(Up, remote_addr=self.a.forward)
        try:
            t.sendto(data)
            answer = await asyncio.wait_for(fut, 3)
            self.t.sendto(answer, addr)
        except asyncio.TimeoutError:
            pass
        finally:
            t.close()


async def serve(a):
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(lambda: Front(a), local_addr=a.listen)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    t.close()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=host_port, required=True)
    p.add_argument("--forward", type=host_port, required=True)
    p.add_argument("--rules", required=True)
    a = p.parse_args(argv)
    asyncio.run(serve(a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
