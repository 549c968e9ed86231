#!/usr/bin/python3
"""A raw asyncio SMTP peer that misbehaves in ways aiosmtpd cannot: it
stalls, drops the connection in the middle of DATA, answers garbage, sends
a reply before the command it answers, or breaks the TLS handshake. Used by
tests/e2e/t_faults.sh (plain Python stdlib).

usage: fault_peer.py --listen HOST:PORT --spool DIR --mode MODE [options]
  --also-listen HOST (repeatable): the same peer on more addresses, same port
  Prints READY (flushed) once listening; runs until SIGTERM/SIGINT, then
  exits 0. The options --listen and --spool are those of upstream.py, so
  lib_upstream.sh's start_upstream can start it (start_fault_peer).

Each connection is "faulty" (behaves as MODE says) until the peer is
healed: by SIGUSR1, or after --faults N faulty connections. A healed peer
is a plain, correct SMTP server (PIPELINING, 8BITMIME, SIZE; no STARTTLS)
that accepts every message with 250.

MODE:
  ok               never faulty
  stall-greeting   say nothing at all
  stall-mail       greeting, EHLO, then no reply to MAIL FROM (nor later)
  stall-dot        accept DATA and the message, then no reply to the final
                   dot; after --stall S seconds (default 600) hang up
  drop-in-data     354 to DATA, read --drop-after bytes of the message
                   (default 1000), then drop the connection (RST)
  greeting-http    "HTTP/1.1 400 Bad Request" as the greeting
  greeting-421     "421 4.3.2 ..." as the greeting (an SMTP session that
                   ends at once)
  nocode           a reply line without a code ("Sender OK") to MAIL FROM
  badcont          an invalid multi-line reply to MAIL FROM whose
                   continuation changes the code ("250-...", "550 ...")
  hugeline         "220 " and 10 MB (--huge bytes) without CRLF as the
                   greeting, then silence
  data250          "250" to the DATA command itself (no 354)
  early250         "354" and "250 ... queued" in one write, before the
                   message was sent
  starttls-broken  every connection offers STARTTLS; after "220 Ready to
                   start TLS" the peer answers the ClientHello with
                   non-TLS bytes and hangs up (a broken handshake)

Records, one JSON object per line, in DIR:
  messages.jsonl  every message accepted with 250 (the same fields as
                  upstream.py's that lib_upstream.sh uses: peer, helo,
                  mail_from, rcpt_tos, data_b64, size, tls, reply, ts)
  sessions.jsonl  one line per connection when it ends: mode ("ok" once
                  healed), start, end, closed_by ("client", "peer" or
                  "shutdown"), commands, data_bytes (message bytes read),
                  dot_seen, dot_at (when the final dot was read; absent
                  without one), starttls, note.
"""
import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time

MODES = ("ok", "stall-greeting", "stall-mail", "stall-dot", "drop-in-data", "greeting-http",
         "nocode", "badcont", "hugeline", "data250", "early250", "starttls-broken",
         "greeting-421")


def host_port(text):
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT: %r" % text)
    return host.strip("[]"), int(port)


class Peer:
    def __init__(self, a):
        self.a = a
        self.faulty_left = a.faults if a.faults is not None else -1   # -1: until SIGUSR1
        self.healed = a.mode == "ok"
        self.active = set()
        os.makedirs(a.spool, exist_ok=True)
        for n in ("messages", "sessions", "refused", "bounces"):
            open(os.path.join(a.spool, n + ".jsonl"), "a").close()

    def record(self, name, obj):
        with open(os.path.join(self.a.spool, name + ".jsonl"), "a") as f:
            f.write(json.dumps(obj) + "\n")

    def heal(self):
        self.healed = True

    def next_mode(self):
        if self.healed:
            return "ok"
        if self.faulty_left == 0:
            self.healed = True
            return "ok"
        if self.faulty_left > 0:
            self.faulty_left -= 1
        return self.a.mode


class Closed(Exception):
    pass


class Session:
    def __init__(self, peer, reader, writer):
        self.p = peer
        self.a = peer.a
        self.r = reader
        self.w = writer
        self.mode = peer.next_mode()
        pn = writer.get_extra_info("peername")
        self.rec = {"mode": self.mode, "peer": pn[0] if pn else None, "start": time.time(),
                    "closed_by": None, "commands": [], "data_bytes": 0, "dot_seen": False,
                    "starttls": False, "note": None}
        self.helo = None

    async def send(self, text):
        self.w.write(text.encode("latin-1") if isinstance(text, str) else text)
        await self.w.drain()

    async def line(self):
        b = await self.r.readline()
        if not b:
            raise Closed()
        return b

    async def wait_close(self, seconds=None):
        """Read and discard until the client hangs up (or seconds pass)."""
        try:
            while True:
                b = await asyncio.wait_for(self.r.read(65536), seconds) if seconds else await self.r.read(65536)
                if not b:
                    self.rec["closed_by"] = "client"
                    return True
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            self.rec["closed_by"] = "client"
            return True

    async def read_data(self, limit=None):
        """The message up to the final dot, dot-unstuffed; with limit, stop
        (returning None) once limit bytes were read without the dot."""
        out = bytearray()
        got = 0
        while True:
            if limit is not None and got >= limit:
                return None
            b = await self.r.readline()
            if not b:
                raise Closed()
            got += len(b)
            self.rec["data_bytes"] = got
            if b == b".\r\n":
                self.rec["dot_seen"] = True
                self.rec["dot_at"] = time.time()
                return bytes(out)
            out += b[1:] if b.startswith(b".") else b

    async def run(self):
        m = self.mode
        try:
            if m == "stall-greeting":
                self.rec["note"] = "no greeting"
                await self.wait_close()
                return
            if m == "greeting-421":
                await self.send("421 4.3.2 Service not available, closing channel\r\n")
                await self.wait_close()
                return
            if m == "greeting-http":
                await self.send("HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"
                                "Connection: close\r\n\r\n")
                await self.wait_close()
                return
            if m == "hugeline":
                await self.send("220 ")
                chunk = b"x" * 65536
                sent = 4
                try:
                    while sent < self.a.huge:
                        self.w.write(chunk[:min(len(chunk), self.a.huge - sent)])
                        sent += min(len(chunk), self.a.huge - sent)
                        await self.w.drain()
                except ConnectionError:
                    self.rec["closed_by"] = "client"
                self.rec["note"] = "sent %d bytes without CRLF" % sent
                if not self.rec["closed_by"]:
                    await self.wait_close()
                return
            await self.send("220 fault.test ESMTP fault_peer\r\n")
            await self.commands()
        except (Closed, ConnectionError):
            if not self.rec["closed_by"]:
                self.rec["closed_by"] = "client"

    async def commands(self):
        m = self.mode
        while True:
            raw = await self.line()
            cmd = raw.rstrip(b"\r\n").decode("latin-1")
            self.rec["commands"].append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.helo = cmd[5:].strip()
                self.env = None
                exts = ["PIPELINING", "8BITMIME", "SIZE 33554432"]
                if m == "starttls-broken":
                    exts.append("STARTTLS")
                if verb == "HELO":
                    await self.send("250 fault.test\r\n")
                else:
                    await self.send("250-fault.test\r\n" + "".join("250-%s\r\n" % e for e in exts[:-1]) +
                                    "250 %s\r\n" % exts[-1])
            elif verb == "STARTTLS" and m == "starttls-broken":
                self.rec["starttls"] = True
                await self.send("220 2.0.0 Ready to start TLS\r\n")
                try:
                    hello = await asyncio.wait_for(self.r.read(4096), 5)
                except asyncio.TimeoutError:
                    hello = b""
                self.rec["note"] = "ClientHello of %d bytes answered with garbage" % len(hello)
                await self.send("this is not TLS at all\r\n")
                self.rec["closed_by"] = "peer"
                self.w.close()
                return
            elif verb == "MAIL":
                if m == "stall-mail":
                    self.rec["note"] = "no reply to MAIL"
                    await self.wait_close()
                    return
                if m == "nocode":
                    await self.send("Sender OK\r\n")
                    continue
                if m == "badcont":
                    await self.send("250-2.1.0 Sender ok\r\n550 5.7.1 Rejected: this is not a real answer\r\n")
                    continue
                self.env = {"mail_from": self.addr(cmd), "rcpt_tos": []}
                await self.send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if self.env is None:
                    await self.send("503 5.5.1 MAIL first\r\n")
                    continue
                self.env["rcpt_tos"].append(self.addr(cmd))
                await self.send("250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if not self.env or not self.env["rcpt_tos"]:
                    await self.send("503 5.5.1 RCPT first\r\n")
                    continue
                if m == "data250":
                    self.rec["note"] = "250 to DATA, no 354"
                    await self.send("250 2.0.0 Ok: queued as NOTHING\r\n")
                    self.env = None
                    continue
                if m == "early250":
                    self.rec["note"] = "354 and 250 in one write before the message"
                    await self.send("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as EARLY\r\n")
                    await self.read_data()
                    self.env = None
                    await self.wait_close(30)
                    return
                await self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                if m == "drop-in-data":
                    await self.read_data(self.a.drop_after)
                    self.rec["note"] = "dropped after %d bytes of the message" % self.rec["data_bytes"]
                    self.rec["closed_by"] = "peer"
                    self.w.transport.abort()
                    return
                data = await self.read_data()
                if m == "stall-dot":
                    self.rec["note"] = "no reply to the final dot"
                    if await self.wait_close(self.a.stall):
                        return
                    self.rec["closed_by"] = "peer"
                    self.w.close()
                    return
                reply = "250 2.0.0 Ok: queued"
                self.p.record("messages", {
                    "peer": self.rec["peer"], "helo": self.helo, "mail_from": self.env["mail_from"],
                    "rcpt_tos": self.env["rcpt_tos"], "tls": False, "size": len(data),
                    "data_b64": base64.b64encode(data).decode("ascii"), "reply": reply, "ts": time.time()})
                self.env = None
                await self.send(reply + "\r\n")
            elif verb == "RSET":
                self.env = None
                await self.send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                await self.send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                await self.send("221 2.0.0 Bye\r\n")
                self.rec["closed_by"] = "client"   # the client asked
                self.w.close()
                return
            else:
                await self.send("500 5.5.2 Unknown command\r\n")

    @staticmethod
    def addr(cmd):
        a = cmd.split(":", 1)[1].strip() if ":" in cmd else ""
        if a.startswith("<"):
            a = a[1:a.find(">")] if ">" in a else a[1:]
        return a.split(" ")[0]


async def serve(a):
    peer = Peer(a)
    loop = asyncio.get_running_loop()

    async def handle(reader, writer):
        s = Session(peer, reader, writer)
        peer.active.add(s)
        try:
            await s.run()
        finally:
            peer.active.discard(s)
            s.rec["end"] = time.time()
            peer.record("sessions", s.rec)
            try:
                writer.close()
            except Exception:
                pass

    host, port = a.listen
    server = await asyncio.start_server(handle, host, port, reuse_address=True, limit=1 << 20)
    extra = [await asyncio.start_server(handle, h, port, reuse_address=True, limit=1 << 20)
             for h in a.also_listen]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, peer.heal)
    print("READY", flush=True)
    await stop.wait()
    server.close()
    for x in extra:
        x.close()
    for s in list(peer.active):
        s.rec["closed_by"] = s.rec["closed_by"] or "shutdown"
        s.rec["end"] = time.time()
        s.rec["open"] = True
        peer.record("sessions", s.rec)
        peer.active.discard(s)
        s.w.transport.abort()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=host_port, required=True)
    p.add_argument("--spool", required=True)
    p.add_argument("--mode", choices=MODES, default="ok")
    p.add_argument("--also-listen", action="append", default=[], metavar="HOST",
                   help="listen on HOST too, on the same port (repeatable)")
    p.add_argument("--faults", type=int, metavar="N", help="heal after N faulty connections")
    p.add_argument("--stall", type=float, default=600, metavar="S", help="stall-dot: hang up after S seconds")
    p.add_argument("--drop-after", type=int, default=1000, metavar="BYTES")
    p.add_argument("--huge", type=int, default=10 * 1024 * 1024, metavar="BYTES")
    a = p.parse_args(argv)
    asyncio.run(serve(a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
