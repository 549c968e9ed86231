#!/usr/bin/python3
"""A scripted, byte-exact SMTP server for tests/unit/test_smtp_client.c.

Usage: raw_peer.py SCENARIO --log FILE
Listens on 127.0.0.1 (an ephemeral port), prints "READY <port>", then plays
SCENARIO on each connection: servers that misbehave in the exact ways a
real SMTP library would smooth over. Every line received is appended to
FILE as "C: <line>"; "N: <n>" marks connection n.
"""
import argparse
import asyncio
import os
import signal

ap = argparse.ArgumentParser()
ap.add_argument("scenario")
ap.add_argument("--log", required=True)
args = ap.parse_args()

nconn = 0


def log(text):
    with open(args.log, "a") as f:
        f.write(text + "\n")


class Peer:
    def __init__(self, reader, writer, n):
        self.r, self.w, self.n = reader, writer, n

    async def send(self, data):
        self.w.write(data.encode("latin-1") if isinstance(data, str) else data)
        await self.w.drain()

    async def line(self, expect=None):
        raw = await self.r.readline()
        if not raw:
            log("EOF")
            raise EOFError
        text = raw.rstrip(b"\r\n").decode("latin-1")
        log("C: " + text)
        if expect and not text.upper().startswith(expect):
            log("UNEXPECTED (wanted %s)" % expect)
            raise EOFError
        return text

    async def data(self):
        """The message up to the final dot, as sent (still dot-stuffed)."""
        lines = []
        while True:
            raw = await self.r.readline()
            if not raw:
                raise EOFError
            if raw == b".\r\n":
                break
            lines.append(raw)
        log("DATA: %d lines, %d stuffed" % (len(lines), sum(1 for x in lines if x.startswith(b".."))))
        return lines

    async def lockstep(self, ehlo_reply):
        """EHLO with ehlo_reply, then one transaction, command by command."""
        await self.line("EHLO")
        await self.send(ehlo_reply)
        await self.line("MAIL")
        await self.send("250 2.1.0 ok\r\n")
        await self.line("RCPT")
        await self.send("250 2.1.5 ok\r\n")
        await self.line("DATA")
        await self.send("354 go ahead\r\n")

    async def hold(self):
        try:
            await asyncio.wait_for(self.r.read(), 60)
        except asyncio.TimeoutError:
            pass


async def sc_stall(p):
    await p.hold()


async def sc_greet421(p):
    await p.send("421 4.3.2 Service busy, try later\r\n")


async def sc_garbage(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("hello there\r\n")
    await p.hold()


async def sc_longline(p):
    await p.send("220 " + "x" * 5000 + "\r\n")
    await p.hold()


async def sc_manylines(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250-X\r\n" * 150 + "250 END\r\n")
    await p.hold()


async def sc_codechange(p):
    await p.send("220-first\r\n230 second\r\n")
    await p.hold()


async def sc_inject(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250-raw\r\n250 STARTTLS\r\n")
    await p.line("STARTTLS")
    # One write: the "injected" reply rides behind the 220.
    await p.send("220 2.0.0 go ahead\r\n250-PIPELINING\r\n")
    await p.hold()


async def sc_helo(p):
    await p.send("220-raw first line\r\n220 second line\r\n")
    await p.line("EHLO")
    await p.send("502 5.5.2 EHLO not known\r\n")
    await p.line("HELO")
    await p.send("250 raw\r\n")
    await p.line("MAIL")
    await p.send("250 2.1.0 ok\r\n")
    await p.line("RCPT")
    await p.send("250 2.1.5 ok\r\n")
    await p.line("DATA")
    await p.send("354 go ahead\r\n")
    await p.data()
    await p.send("250-2.0.0 queued\r\n250-2.0.0 as\r\n250 2.0.0 RAW1\r\n")
    await p.line("QUIT")
    await p.send("221 2.0.0 bye\r\n")


async def sc_pipeline(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250-raw\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
    # No reply before the whole group is in: a client in lockstep would hang here.
    for want in ("MAIL", "RCPT", "RCPT", "DATA"):
        await p.line(want)
    await p.send("250 2.1.0 ok\r\n550 5.1.1 no such user a\r\n"
                 "550 5.1.1 no such user b\r\n354 go ahead anyway\r\n")
    await p.line(".")
    await p.send("554 5.5.1 no valid recipients\r\n")
    for want in ("RSET", "MAIL", "RCPT", "DATA"):
        await p.line(want)
    await p.send("250 2.0.0 reset\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
    await p.data()
    await p.send("250 2.0.0 queued\r\n")
    await p.line("QUIT")
    await p.send("221 2.0.0 bye\r\n")


async def sc_stalldot(p):
    await p.send("220 raw\r\n")
    await p.lockstep("250 raw\r\n")
    await p.data()
    await p.hold()


async def sc_data250(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250 raw\r\n")
    await p.line("MAIL")
    await p.send("250 2.1.0 ok\r\n")
    await p.line("RCPT")
    await p.send("250 2.1.5 ok\r\n")
    await p.line("DATA")
    await p.send("250 2.0.0 Ok: queued as NOTHING\r\n")   # no 354: nothing was sent
    await p.hold()


async def sc_early250(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250 raw\r\n")
    await p.line("MAIL")
    await p.send("250 2.1.0 ok\r\n")
    await p.line("RCPT")
    await p.send("250 2.1.5 ok\r\n")
    await p.line("DATA")
    # One write: a "final" reply behind the 354, before the message came.
    await p.send("354 go ahead\r\n250 2.0.0 Ok: queued as EARLY\r\n")
    await p.hold()


async def sc_badtls(p):
    await p.send("220 raw\r\n")
    if p.n == 1:
        await p.line("EHLO")
        await p.send("250-raw\r\n250 STARTTLS\r\n")
        await p.line("STARTTLS")
        await p.send("220 2.0.0 go ahead\r\n")
        await p.r.read(5)        # the start of the ClientHello
        await p.send("this is not TLS\r\n" * 4)
        return
    await p.lockstep("250-raw\r\n250 STARTTLS\r\n")
    await p.data()
    await p.send("250 2.0.0 queued in plain text\r\n")
    await p.line("QUIT")
    await p.send("221 2.0.0 bye\r\n")


async def sc_mail421(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250-raw\r\n250 PIPELINING\r\n")
    for want in ("MAIL", "RCPT", "RCPT", "DATA"):
        await p.line(want)
    await p.send("250 2.1.0 ok\r\n421 4.3.2 shutting down\r\n")


async def sc_idleclose(p):
    await p.send("220 raw\r\n")
    await p.line("EHLO")
    await p.send("250 raw\r\n")


async def serve(reader, writer):
    global nconn
    nconn += 1
    log("N: %d" % nconn)
    try:
        await SCENARIOS[args.scenario](Peer(reader, writer, nconn))
    except (EOFError, ConnectionError):
        pass
    try:
        writer.close()
        await writer.wait_closed()
    except ConnectionError:
        pass


SCENARIOS = {name[3:]: fn for name, fn in globals().items() if name.startswith("sc_")}


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("READY %d" % server.sockets[0].getsockname()[1], flush=True)
    os.close(1)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.call_later(120, lambda: stop.done() or stop.set_result(None))
    await stop


asyncio.run(main())
