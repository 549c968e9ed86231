#!/usr/bin/python3
"""A configurable upstream SMTP server for the end-to-end tests: it plays the
delivery service (SES-like: STARTTLS or implicit TLS, AUTH, throttling,
"250 Ok ID" replies, bounces mailed back later) and the MX hosts of the
direct route. Built on Debian's aiosmtpd 1.4 (run it with /usr/bin/python3).

usage: upstream.py --listen HOST:PORT --spool DIR [options]
  HOST:PORT is 127.0.0.1:2525 or [::1]:2525. Prints READY (flushed) once
  listening; runs until SIGTERM/SIGINT, then exits 0.

What it records, one JSON object per line, in DIR:
  messages.jsonl  every accepted message: peer, helo, mail_from ("" for the
                  null sender), mail_options (the MAIL parameters as sent),
                  rcpt_tos, rcpt_options (one list per recipient), envid, ret,
                  notify and orcpt (one entry per recipient, null when absent;
                  only with --dsn), tls, auth_user, data_b64 (the message
                  bytes as received, after dot-unstuffing), size, reply,
                  service_id (with --reply-message-id), ts.
  refused.jsonl   the same for a message refused at the end of DATA
                  (--data-reply with a non-2xx reply).
  sessions.jsonl  one line per connection, written when it closes (or at
                  shutdown, with "open": true): peer, local, start, end, tls,
                  tls_version, sni, auth (user or null), auth_failures, mails
                  (MAIL commands past the syntax checks), transactions (messages accepted),
                  quit (when the client's QUIT was read, just before the 221
                  was written; absent without a QUIT), commands
                  (each command line; AUTH arguments masked) and ahead (for
                  each command, how many bytes the client had already sent
                  beyond it when it ran: > 0 means it did not wait for the
                  reply, i.e. it pipelined).
  bounces.jsonl   one line per bounce sent back with --bounce-to.
All files exist (empty) from READY on.
"""
import argparse
import asyncio
import base64
import email.utils
import functools
import json
import logging
import os
import signal
import smtplib
import ssl
import sys
import time
import uuid
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

SERVICE_DOMAIN = "service.example"


def reply_arg(text):
    """A full SMTP reply line such as '550 5.1.1 User unknown'."""
    if len(text) < 3 or not text[:3].isdigit() or text[0] not in "2345":
        raise argparse.ArgumentTypeError("not an SMTP reply: %r" % text)
    return text


def count_reply(default):
    """N or N=REPLY (used by --fail-first and --throttle)."""
    def parse(text):
        n, eq, reply = text.partition("=")
        if not n.isdigit():
            raise argparse.ArgumentTypeError("expected N or N=REPLY: %r" % text)
        return int(n), reply_arg(reply) if eq else default
    return parse


def cert_key(text):
    cert, comma, key = text.partition(",")
    if not comma:
        raise argparse.ArgumentTypeError("expected CERT,KEY: %r" % text)
    return cert, key


def host_port(text):
    """127.0.0.1:25, [::1]:25 or localhost:25 -> (host, port)."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT: %r" % text)
    return host.strip("[]"), int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=host_port, required=True, help="HOST:PORT to listen on")
    p.add_argument("--spool", required=True, help="directory of the JSON records")
    p.add_argument("--hostname", default="upstream.test", help="name in the greeting and EHLO reply")
    # TLS: STARTTLS (--tls) and/or implicit TLS from the first byte (--smtps).
    p.add_argument("--tls", type=cert_key, metavar="CERT,KEY", help="offer STARTTLS with this certificate")
    p.add_argument("--require-tls", action="store_true", help="530 to everything but EHLO/NOOP/QUIT before STARTTLS")
    p.add_argument("--smtps", type=cert_key, metavar="CERT,KEY", help="implicit TLS listener (port 465 style)")
    p.add_argument("--starttls-junk", metavar="TEXT",
                   help="send TEXT+CRLF in the same write right behind '220 Ready to start TLS' "
                        "(a man-in-the-middle injection the client must not read as a post-TLS reply)")
    # AUTH PLAIN/LOGIN, required for MAIL when any user is configured; only
    # offered after STARTTLS when --tls is given.
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS", help="accepted credentials (repeatable)")
    # Replies that make the server refuse.
    p.add_argument("--reject-rcpt", action="append", default=[], metavar="ADDR=REPLY",
                   help="reply to RCPT for this address (repeatable), e.g. 'bad@x.test=550 5.1.1 User unknown'")
    p.add_argument("--reject-mail", type=reply_arg, metavar="REPLY", help="reply to every MAIL FROM")
    p.add_argument("--data-reply", type=reply_arg, metavar="REPLY", help="reply at the end of DATA instead of 250")
    p.add_argument("--fail-first", type=count_reply("451 4.3.0 Try again later"), metavar="N[=REPLY]",
                   help="the first N transactions (MAIL commands, over all connections) get REPLY at MAIL")
    p.add_argument("--throttle", type=count_reply("454 4.7.0 Throttling failure: Maximum sending rate exceeded."),
                   metavar="N[=REPLY]", help="like --fail-first, with SES's throttling reply as default")
    p.add_argument("--max-rcpts", type=int, default=0, metavar="N",
                   help="452 4.5.3 Too many recipients beyond N RCPTs in one transaction")
    p.add_argument("--delay", type=float, default=0, metavar="SECONDS", help="wait before answering the end of DATA")
    # Extensions advertised.
    p.add_argument("--size", type=int, default=32 * 1024 * 1024, help="SIZE limit advertised and enforced (0: none)")
    p.add_argument("--no-smtputf8", action="store_true", help="do not advertise (nor accept) SMTPUTF8")
    p.add_argument("--no-8bitmime", action="store_true", help="do not advertise 8BITMIME; BODY=8BITMIME gets 555")
    p.add_argument("--no-pipelining", action="store_true", help="do not advertise PIPELINING")
    p.add_argument("--dsn", action="store_true", help="advertise DSN; accept and record ENVID/RET and NOTIFY/ORCPT")
    # SES imitation.
    p.add_argument("--reply-message-id", action="store_true",
                   help="end of DATA answered '250 Ok ID' as SES does; ID recorded as service_id")
    p.add_argument("--bounce-to", type=host_port, metavar="HOST:PORT",
                   help="after accepting a message, mail a bounce for each --bounce-rcpt recipient to HOST:PORT")
    p.add_argument("--bounce-rcpt", action="append", default=[], metavar="ADDR[=STATUS]",
                   help="recipient to bounce (repeatable); STATUS defaults to 5.1.1")
    p.add_argument("--bounce-delay", type=float, default=0.5, metavar="SECONDS",
                   help="wait this long after the 250 before mailing the bounce")
    a = p.parse_args(argv)
    if a.require_tls and not a.tls:
        p.error("--require-tls needs --tls")
    if a.bounce_rcpt and not a.bounce_to:
        p.error("--bounce-rcpt needs --bounce-to")
    return a


class State:
    """Everything shared by the connections of one server."""

    def __init__(self, args):
        self.args = args
        self.spool = args.spool
        os.makedirs(self.spool, exist_ok=True)
        for name in ("messages", "refused", "sessions", "bounces"):
            open(self.path(name), "a").close()
        self.users = dict(u.split(":", 1) for u in args.auth)
        self.reject_rcpt = {}
        for spec in args.reject_rcpt:
            addr, eq, reply = spec.partition("=")
            if not eq:
                sys.exit("--reject-rcpt: expected ADDR=REPLY: %r" % spec)
            self.reject_rcpt[addr.lower()] = reply_arg(reply)
        self.bounce_rcpt = {}
        for spec in args.bounce_rcpt:
            addr, eq, status = spec.partition("=")
            self.bounce_rcpt[addr.lower()] = status if eq else "5.1.1"
        self.mails = 0           # MAIL commands over all connections (--fail-first, --throttle)
        self.active = set()      # open connections, to record at shutdown

    def path(self, name):
        return os.path.join(self.spool, name + ".jsonl")

    def record(self, name, obj):
        with open(self.path(name), "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()


def host_port_of(sockaddr):
    host = sockaddr[0]
    return ("[%s]" % host if ":" in host else host), sockaddr[1]


def close_after_421(server, reply):
    """A 421 reply means the server closes the connection: do so once the
    reply is written."""
    if reply.startswith("421"):
        server.loop.call_soon(server.transport.close)
    return reply


class Handler:
    """The aiosmtpd hooks: decide the replies and record the messages."""

    def __init__(self, state):
        self.st = state
        self.a = state.args

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        words = [r[4:] for r in responses]   # "hostname", "SIZE n", ..., "HELP"
        if not self.st.users:
            words = [w for w in words if not w.startswith("AUTH")]
        if self.a.no_8bitmime:
            words.remove("8BITMIME")
        extra = []
        if not self.a.no_pipelining:
            extra.append("PIPELINING")
        if self.a.dsn:
            extra.append("DSN")
        words = words[:1] + extra + words[1:]
        return ["250-" + w for w in words[:-1]] + ["250 " + words[-1]]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        st, a = self.st, self.a
        raw = server.pending_params
        if a.no_8bitmime and any(p.upper() == "BODY=8BITMIME" for p in raw):
            return "555 5.5.4 BODY=8BITMIME not supported"
        st.mails += 1
        server.conn["mails"] += 1
        for limit in (a.fail_first, a.throttle):
            if limit and st.mails <= limit[0]:
                return close_after_421(server, limit[1])
        if a.reject_mail:
            return close_after_421(server, a.reject_mail)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.x = {"mail_options": raw, "envid": server.pending_dsn.get("ENVID"),
                      "ret": server.pending_dsn.get("RET"), "rcpt_options": [], "notify": [], "orcpt": []}
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.a.max_rcpts and len(envelope.rcpt_tos) >= self.a.max_rcpts:
            return "452 4.5.3 Too many recipients"
        reply = self.st.reject_rcpt.get(address.lower())
        if reply:
            return close_after_421(server, reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.x["rcpt_options"].append(server.pending_params)
        envelope.x["notify"].append(server.pending_dsn.get("NOTIFY"))
        envelope.x["orcpt"].append(server.pending_dsn.get("ORCPT"))
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        a = self.a
        if a.delay:
            await asyncio.sleep(a.delay)  # cancelled (nothing recorded) if the client leaves
        data = envelope.original_content
        auth = session.auth_data  # LoginPassword once AUTH succeeded
        rec = {
            "peer": session.peer[0],
            "helo": session.host_name,
            "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            **envelope.x,
            "tls": server.conn["tls"],
            "auth_user": auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None,
            "size": len(data),
            "data_b64": base64.b64encode(data).decode("ascii"),
            "ts": time.time(),
        }
        if a.data_reply and not a.data_reply.startswith("2"):
            rec["reply"] = a.data_reply
            self.st.record("refused", rec)
            return close_after_421(server, a.data_reply)
        reply = a.data_reply or "250 2.0.0 Ok: queued"
        if a.reply_message_id:
            # SES: "250 Ok 0101018c1f2e3d4c-5b6a7988-1234-4abc-9def-0123456789ab-000000"
            sid = "0101%012x-%s-000000" % (int(time.time() * 1000), uuid.uuid4())
            rec["service_id"] = sid
            reply = "250 Ok " + sid
        rec["reply"] = reply
        self.st.record("messages", rec)
        server.conn["transactions"] += 1
        if a.bounce_to:
            for rcpt in envelope.rcpt_tos:
                status = self.st.bounce_rcpt.get(rcpt.lower())
                if status:
                    server.loop.call_later(a.bounce_delay, start_bounce, self.st, rec, rcpt, status)
        return reply


class UpstreamSMTP(SMTP):
    """aiosmtpd's SMTP with per-connection records, DSN parameters and a
    conventional AUTH LOGIN prompt."""

    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, state, handler, **kw):
        super().__init__(handler, **kw)
        self.st = state
        self.conn = None
        self.pending_params = []
        self.pending_dsn = {}
        # Every command is recorded (self.conn) before it runs.
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._recorder(name, method)

    def _recorder(self, name, method):
        @functools.wraps(method)  # keeps the HELP syntax attributes
        async def run(arg):
            shown = name if arg is None else name + " " + arg
            if name == "AUTH" and arg:
                shown = "AUTH " + arg.split()[0] + (" ***" if len(arg.split()) > 1 else "")
            self.conn["commands"].append(shown)
            self.conn["ahead"].append(len(self._reader._buffer))
            await method(arg)
        return run

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.conn = {
                "peer": transport.get_extra_info("peername")[0],
                "local": "%s:%d" % host_port_of(transport.get_extra_info("sockname")),
                "start": time.time(), "tls": False, "tls_version": None, "sni": None,
                "auth": None, "auth_failures": 0, "mails": 0, "transactions": 0,
                "commands": [], "ahead": [],
            }
            self.st.active.add(self)
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:  # after STARTTLS, or at once with --smtps
            self.conn["tls"] = True
            self.conn["tls_version"] = sslobj.version()
            self.conn["sni"] = getattr(sslobj, "sni", None)

    def connection_lost(self, error):
        self.finish_record()
        super().connection_lost(error)

    def finish_record(self, still_open=False):
        if self in self.st.active:
            self.st.active.discard(self)
            self.conn["end"] = time.time()
            if still_open:
                self.conn["open"] = True
            self.st.record("sessions", self.conn)

    def _take_params(self, arg, keyword, names):
        """Split the parameters off a MAIL/RCPT argument: remember them as
        sent, and take out the DSN ones (aiosmtpd refuses parameters it does
        not know) when --dsn is on."""
        self.pending_params, self.pending_dsn = [], {}
        rest = self._strip_command_keyword(keyword, arg or "")
        if rest is None:
            return arg
        address, params = self._getaddr(rest)
        if address is None:
            return arg
        tokens = params.split()
        self.pending_params = tokens
        if not self.st.args.dsn:
            return arg
        kept = []
        for t in tokens:
            k, eq, v = t.partition("=")
            if eq and k.upper() in names:
                self.pending_dsn[k.upper()] = v
            else:
                kept.append(t)
        return " ".join([keyword + "<" + ("" if address == "<>" else address) + ">"] + kept)

    async def smtp_MAIL(self, arg):
        await super().smtp_MAIL(self._take_params(arg, "FROM:", ("ENVID", "RET")))

    async def smtp_RCPT(self, arg):
        await super().smtp_RCPT(self._take_params(arg, "TO:", ("NOTIFY", "ORCPT")))

    async def smtp_QUIT(self, arg):
        # Taken before the 221 is written, so before a client that waits
        # for the 221 can close and open its next connection. "end"
        # (connection_lost) runs later, on a loaded machine after the
        # client's next connection has begun (tests/e2e/t_destination.sh).
        if not arg and "quit" not in self.conn:
            self.conn["quit"] = time.time()
        await super().smtp_QUIT(arg)

    async def smtp_AUTH(self, arg):
        await super().smtp_AUTH(arg)
        if self.session.authenticated and self.conn["auth"] is None:
            self.conn["auth"] = self.session.auth_data.login.decode("utf-8", "replace")

    async def push(self, status):
        junk = self.st.args.starttls_junk
        if junk and isinstance(status, str) and status.startswith("220 Ready to start TLS"):
            status += "\r\n" + junk
        await super().push(status)


def authenticator(state):
    def check(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            if user in state.users and state.users[user] == auth_data.password.decode("utf-8", "replace"):
                return AuthResult(success=True, auth_data=auth_data)
        server.conn["auth_failures"] += 1
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
    return check


def bounce_message(rec, rcpt, status):
    """An SES-style RFC 3464 bounce of one recipient of the message rec."""
    data = base64.b64decode(rec["data_b64"])
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    if rec.get("service_id"):
        # SES replaces the Message-ID of what it sends by its own id.
        lines, skip = [], False
        for line in head.split("\r\n"):
            if line[:1] in (" ", "\t"):
                if not skip:
                    lines.append(line)
                continue
            skip = line.lower().startswith("message-id:")
            if not skip:
                lines.append(line)
        lines.append("Message-ID: <%s@%s>" % (rec["service_id"], SERVICE_DOMAIN))
        head = "\r\n".join(lines)
    code = "550" if status.startswith("5") else "450"
    boundary = "bounce-" + uuid.uuid4().hex
    dsn = ["Reporting-MTA: dns; a1-23.smtp-out.%s" % SERVICE_DOMAIN]
    if rec.get("envid"):
        dsn.append("Original-Envelope-Id: " + rec["envid"])
    dsn.append("Arrival-Date: " + email.utils.formatdate(rec["ts"]))
    per = ["Final-Recipient: rfc822; " + rcpt, "Action: failed", "Status: " + status,
           "Remote-MTA: dns; mx.recipient.example",
           "Diagnostic-Code: smtp; %s %s user unknown" % (code, status),
           "Last-Attempt-Date: " + email.utils.formatdate()]
    msg = [
        "From: MAILER-DAEMON@" + SERVICE_DOMAIN,
        "To: " + rec["mail_from"],
        "Subject: Delivery Status Notification (Failure)",
        "Date: " + email.utils.formatdate(),
        "Message-ID: <%s@%s>" % (uuid.uuid4(), SERVICE_DOMAIN),
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="%s"' % boundary,
        "",
        "--" + boundary,
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "An error occurred while trying to deliver the mail to the following recipients:",
        rcpt,
        "",
        "--" + boundary,
        "Content-Type: message/delivery-status",
        "",
    ] + dsn + [""] + per + [
        "",
        "--" + boundary,
        "Content-Type: text/rfc822-headers",
        "",
        head,
        "",
        "--" + boundary + "--",
        "",
    ]
    return "\r\n".join(msg).encode("utf-8")


def send_bounce(state, rec, rcpt, status):
    """Mail the bounce with the null sender; up to 5 attempts a second apart
    while the receiver answers 4xx or cannot be reached."""
    host, port = state.args.bounce_to
    out = {"ts": time.time(), "to": rec["mail_from"], "rcpt": rcpt, "status": status,
           "envid": rec.get("envid"), "service_id": rec.get("service_id"), "attempts": 0}
    msg = bounce_message(rec, rcpt, status)
    for attempt in range(1, 6):
        out["attempts"] = attempt
        try:
            with smtplib.SMTP(host, port, local_hostname="a1-23.smtp-out." + SERVICE_DOMAIN, timeout=20) as s:
                s.ehlo()
                code, text = s.mail("")
                if code == 250:
                    code, text = s.rcpt(rec["mail_from"])
                if code in (250, 251):
                    code, text = s.data(msg)
                out["reply"] = "%d %s" % (code, text.decode("utf-8", "replace"))
                out["sent"] = code == 250
        except (OSError, smtplib.SMTPException) as e:
            out["reply"], out["sent"], code = "error: %s" % e, False, 400
        if out["sent"] or code >= 500:
            break
        time.sleep(1)
    out["ts"] = time.time()
    state.record("bounces", out)


def start_bounce(state, rec, rcpt, status):
    if not rec["mail_from"]:
        state.record("bounces", {"ts": time.time(), "rcpt": rcpt, "sent": False, "reply": "null sender: not bounced"})
        return
    asyncio.get_running_loop().run_in_executor(None, send_bounce, state, rec, rcpt, status)


def server_context(pair):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pair)

    def note_sni(sslobj, name, _ctx):  # remembered for sessions.jsonl
        try:
            sslobj.sni = name
        except AttributeError:
            pass
    ctx.sni_callback = note_sni
    return ctx


async def serve(args):
    state = State(args)
    handler = Handler(state)
    starttls_ctx = server_context(args.tls) if args.tls else None
    smtps_ctx = server_context(args.smtps) if args.smtps else None
    loop = asyncio.get_running_loop()
    kw = dict(
        hostname=args.hostname,
        ident="ESMTP upstream",
        enable_SMTPUTF8=not args.no_smtputf8,
        data_size_limit=args.size or None,
        tls_context=starttls_ctx,
        require_starttls=args.require_tls,
        auth_required=bool(state.users),
        # AUTH only inside STARTTLS when it is offered; with --smtps (or
        # neither) the session is what it is from the start.
        auth_require_tls=bool(starttls_ctx),
        authenticator=authenticator(state),
        loop=loop,
    )

    def factory():
        return UpstreamSMTP(state, handler, **kw)

    host, port = args.listen
    server = await loop.create_server(factory, host, port, ssl=smtps_ctx, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    server.close()
    for proto in list(state.active):
        proto.finish_record(still_open=True)
        if proto.transport is not None:
            proto.transport.close()


def main(argv):
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
