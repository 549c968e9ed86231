#!/usr/bin/python3
"""A TLS client that sends its mail and drops at once, while the relay is
committing it: the message, the final dot, the TLS close_notify and the
TCP FIN leave in one packet, so the relay reads the end of the
connection in the same read as the end of the data (issue 11: the
envelope pointed into the TLS engine, which the drop freed).

usage: tls_drop.py HOST PORT COUNT
Prints "sent N" when every connection got as far as the final dot."""
import socket
import ssl
import sys


def line(sock, buf):
    while b"\n" not in buf[0]:
        d = sock.recv(4096)
        if not d:
            raise SystemExit("closed early")
        buf[0] += d
    l, buf[0] = buf[0].split(b"\n", 1)
    return l


def reply(sock, buf, want):
    while True:
        l = line(sock, buf)
        if len(l) < 4 or l[3:4] != b"-":
            if not l.startswith(want):
                raise SystemExit("expected %r, got %r" % (want, l))
            return


def tls_reply(sock, obj, inc, out, buf, want):
    while True:
        while b"\n" not in buf[0]:
            try:
                buf[0] += obj.read(4096)
            except ssl.SSLWantReadError:
                d = sock.recv(65536)
                if not d:
                    raise SystemExit("closed early (tls)")
                inc.write(d)
        l, buf[0] = buf[0].split(b"\n", 1)
        if len(l) < 4 or l[3:4] != b"-":
            if not l.startswith(want):
                raise SystemExit("expected %r, got %r" % (want, l))
            return


def flush(sock, out):
    d = out.read()
    if d:
        sock.sendall(d)


def one(host, port):
    sock = socket.create_connection((host, port), 10)
    buf = [b""]
    reply(sock, buf, b"220")
    sock.sendall(b"EHLO drop.example\r\n")
    reply(sock, buf, b"250")
    sock.sendall(b"STARTTLS\r\n")
    reply(sock, buf, b"220")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush(sock, out)
            d = sock.recv(65536)
            if not d:
                raise SystemExit("closed in handshake")
            inc.write(d)
    flush(sock, out)
    tbuf = [b""]
    for cmd, want in ((b"EHLO drop.example\r\n", b"250"), (b"MAIL FROM:<a@example.jp>\r\n", b"250"),
                      (b"RCPT TO:<b@example.com>\r\n", b"250"), (b"DATA\r\n", b"354")):
        obj.write(cmd)
        flush(sock, out)
        tls_reply(sock, obj, inc, out, tbuf, want)
    obj.write(b"Subject: dropped\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n")
    try:
        obj.unwrap()
    except (ssl.SSLWantReadError, ssl.SSLError):
        pass
    # The data, the dot and close_notify in one write, then FIN.
    sock.sendall(out.read())
    sock.shutdown(socket.SHUT_WR)
    sock.close()


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for _ in range(count):
        one(host, port)
    print("sent %d" % count)


main()
