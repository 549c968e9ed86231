#!/usr/bin/python3
"""An SMTP server for tests/unit/test_smtp_client.c, on Debian's aiosmtpd.

Listens on 127.0.0.1 (an ephemeral port), prints "READY <port>" and serves
until killed. Every event goes to --record as one JSON line:
  {"ev": "conn"} {"ev": "ehlo"} {"ev": "rset"} {"ev": "mail", "arg": raw}
  {"ev": "data", "from", "rcpts", "file", "tls", "login"}
and the message (as the server received it, dot-stuffing undone) to
<record>.<n>.

Options:
  --cert F --key F     offer STARTTLS with this certificate
  --smtps              TLS from the first byte instead (needs --cert/--key)
  --require-starttls   refuse commands before STARTTLS
  --auth USER:PASS     offer AUTH (after TLS unless --cert is absent)
  --no-plain           offer AUTH LOGIN only
  --no-pipelining      do not advertise PIPELINING (nor DSN)
  --reject ADDR        answer RCPT TO:<ADDR> with 550 5.1.1 (repeatable)
  --data-reply TEXT    answer the final dot with TEXT
  --starttls-extra B   send B (Python escapes) right behind the 220 to STARTTLS
  --starttls-garbage   answer STARTTLS with 220, then non-TLS bytes, then close
"""
import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult

# Refused handshakes and the like are the tests' point, not news on stderr.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

ap = argparse.ArgumentParser()
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--smtps", action="store_true")
ap.add_argument("--require-starttls", action="store_true")
ap.add_argument("--auth")
ap.add_argument("--no-plain", action="store_true")
ap.add_argument("--no-pipelining", action="store_true")
ap.add_argument("--reject", action="append", default=[])
ap.add_argument("--data-reply")
ap.add_argument("--starttls-extra")
ap.add_argument("--starttls-garbage", action="store_true")
ap.add_argument("--record", required=True)
args = ap.parse_args()

ndata = 0


def record(ev, **kw):
    kw["ev"] = ev
    with open(args.record, "a") as f:
        f.write(json.dumps(kw) + "\n")


def is_tls(server):
    return server.transport.get_extra_info("ssl_object") is not None


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        record("ehlo", tls=is_tls(server))
        session.host_name = hostname
        if not args.no_pipelining:
            # aiosmtpd handles pipelined input in order but does not say so.
            responses.insert(-1, "250-PIPELINING")
            responses.insert(-1, "250-DSN")
        responses.insert(-1, "250-ENHANCEDSTATUSCODES")
        return responses

    async def handle_RSET(self, server, session, envelope):
        record("rset")
        return "250 2.0.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in args.reject:
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        global ndata
        path = "%s.%d" % (args.record, ndata)
        ndata += 1
        with open(path, "wb") as f:
            f.write(envelope.original_content)
        login = session.auth_data.login.decode() if session.auth_data else None
        record("data", file=path, rcpts=envelope.rcpt_tos, tls=is_tls(server),
               login=login, **{"from": envelope.mail_from})
        if args.data_reply:
            return args.data_reply
        return "250 2.0.0 OK queued"


class PeerSMTP(SMTP):
    def connection_made(self, transport):
        if self.transport is None:   # not again after STARTTLS
            record("conn")
        super().connection_made(transport)

    async def smtp_MAIL(self, arg):
        record("mail", arg=arg)
        # aiosmtpd refuses parameters it does not know; ENVID (RFC 3461) is one.
        if arg:
            arg = re.sub(r"\s+ENVID=\S+", "", arg, flags=re.I)
        await super().smtp_MAIL(arg)

    async def smtp_STARTTLS(self, arg):
        if args.starttls_extra is not None:
            extra = args.starttls_extra.encode().decode("unicode_escape").encode("latin-1")
            # One write, so that both arrive in one segment.
            self._writer.write(b"220 2.0.0 Ready to start TLS\r\n" + extra)
            await self._writer.drain()
            await asyncio.sleep(30)
            return
        if args.starttls_garbage:
            await self.push("220 2.0.0 Ready to start TLS")
            self._writer.write(b"this is not a TLS record\r\n" * 4)
            await self._writer.drain()
            self.transport.close()
            return
        await super().smtp_STARTTLS(arg)


def authenticator(server, session, envelope, mechanism, auth_data):
    user, _, password = args.auth.partition(":")
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    # handled=False: aiosmtpd then sends the 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


async def main():
    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    kw = dict(enable_SMTPUTF8=True, hostname="peer.test")
    if tls and not args.smtps:
        kw.update(tls_context=tls, require_starttls=args.require_starttls)
    if args.auth:
        kw.update(authenticator=authenticator, auth_require_tls=tls is not None)
        if args.no_plain:
            kw.update(auth_exclude_mechanism=["PLAIN"])
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: PeerSMTP(handler, **kw), "127.0.0.1", 0,
                                      ssl=tls if args.smtps else None)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    os.close(1)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # Never outlive a test that forgot to stop us.
    loop.call_later(120, lambda: stop.done() or stop.set_result(None))
    await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
