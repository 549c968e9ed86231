#!/usr/bin/python3
"""A scripted SMTP client for the cases swaks cannot express: exact bytes
on the wire (bare CR/LF, smuggling sequences, commands pipelined behind
STARTTLS in one packet), several connections held open at once.

usage: smtp_raw.py [--source IP] HOST PORT STEP...
  '>TEXT'    send TEXT (Python string escapes: \\r \\n \\x00 ...) in one write
  '>>N:TEXT' send TEXT repeated N times in one write
  '<CODE'    read one complete reply; fail unless it starts with CODE
  '<'        read one reply, whatever it is
  'tls'      start TLS on the socket (no certificate check)
  'eof'      expect the server to close the connection
  'closed'   expect the server to close the connection, whatever it sends
             first (e.g. a TLS alert); the bytes are printed as a repr
  'drip:S:TEXT'  send TEXT (escapes as for '>') one byte per write, S
             seconds apart
  'sleep:S'  wait S seconds
Every reply is printed as it is read. Exit 0 when every step held, 1 if not.
"""
import socket
import ssl
import sys
import time


def die(msg):
    print("smtp_raw: " + msg, flush=True)
    sys.exit(1)


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read_line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def read_reply(self):
        lines = []
        while True:
            line = self.read_line()
            if line is None:
                return lines or None
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines


def main(argv):
    source = None
    if len(argv) > 2 and argv[1] == "--source":
        source = argv[2]
        argv = [argv[0]] + argv[3:]
    host, port = argv[1], int(argv[2])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    if source:
        sock.bind((source, 0))
    sock.settimeout(20)
    sock.connect((host, port))
    c = Client(sock)
    for step in argv[3:]:
        if step.startswith(">>"):
            n, text = step[2:].split(":", 1)
            data = text.encode("latin-1").decode("unicode_escape").encode("latin-1")
            c.sock.sendall(data * int(n))
        elif step.startswith(">"):
            data = step[1:].encode("utf-8").decode("unicode_escape").encode("latin-1")
            c.sock.sendall(data)
        elif step.startswith("<"):
            want = step[1:]
            rep = c.read_reply()
            if rep is None:
                die("connection closed, expected %r" % want)
            for line in rep:
                print(line, flush=True)
            if want and not rep[-1].startswith(want):
                die("expected %r, got %r" % (want, rep[-1]))
        elif step == "tls":
            if c.buf:
                die("bytes after the STARTTLS reply: %r" % c.buf)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c.sock = ctx.wrap_socket(c.sock)
            print("TLS " + c.sock.version(), flush=True)
        elif step == "eof":
            try:
                rest = c.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                rest = b""
            if c.buf or rest:
                die("expected the connection to close, got %r" % (c.buf + rest))
            print("EOF", flush=True)
        elif step == "closed":
            rest = c.buf
            try:
                while True:
                    data = c.sock.recv(65536)
                    if not data:
                        break
                    rest += data
            except (ConnectionResetError, ssl.SSLError):
                pass
            except socket.timeout:
                die("expected the connection to close, still open; got %r" % rest)
            print("CLOSED after %d bytes: %r" % (len(rest), rest), flush=True)
        elif step.startswith("drip:"):
            delay, text = step[5:].split(":", 1)
            data = text.encode("utf-8").decode("unicode_escape").encode("latin-1")
            for i in range(len(data)):
                if i:
                    time.sleep(float(delay))
                c.sock.sendall(data[i:i + 1])
        elif step.startswith("sleep:"):
            time.sleep(float(step[6:]))
        else:
            die("bad step %r" % step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
