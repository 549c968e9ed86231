#!/usr/bin/python3
"""Verify the DKIM signatures of one message with python3-dkim, an
implementation independent of the signer (libopendkim).

  dkim_verify.py FILE --dns 127.0.0.1:PORT     the keys from that DNS server
  dkim_verify.py FILE --key NAME=TXT ...        the keys given (NAME is
                                                SELECTOR._domainkey.DOMAIN)

FILE is the message as delivered ("-": stdin). Prints one line per
signature, "pass d=DOMAIN s=SELECTOR a=ALGORITHM h=FIELDS" or "fail ...",
and "nosig" when the message has none. Exit 0 when there is at least one
signature and every one verifies, else 1.
"""
import socket
import struct
import sys

import dkim


def dns_txt(server):
    host, port = server.rsplit(":", 1)
    port = int(port)

    def lookup(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        q = b"".join(bytes([len(l)]) + l.encode("ascii") for l in name.rstrip(".").split(".") if l) + b"\0"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(struct.pack(">HHHHHH", 4242, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 16, 1),
                 (host, port))
        msg = s.recv(65535)
        an = struct.unpack(">H", msg[6:8])[0]
        off = 12 + len(q) + 4
        out = []
        for _ in range(an):
            while msg[off] != 0 and msg[off] & 0xC0 != 0xC0:
                off += msg[off] + 1
            off += 2 if msg[off] & 0xC0 == 0xC0 else 1
            t, _, _, ln = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            rd = msg[off:off + ln]
            off += ln
            if t == 16:
                parts, i = [], 0
                while i < len(rd):
                    parts.append(rd[i + 1:i + 1 + rd[i]])
                    i += 1 + rd[i]
                out.append(b"".join(parts))
        return out[0] if out else None

    return lookup


def main():
    args = sys.argv[1:]
    path = args.pop(0)
    keys, dnsfunc = {}, None
    while args:
        a = args.pop(0)
        if a == "--dns":
            dnsfunc = dns_txt(args.pop(0))
        elif a == "--key":
            name, txt = args.pop(0).split("=", 1)
            keys[name.rstrip(".").lower() + "."] = txt.encode()
    if dnsfunc is None:
        def dnsfunc(name, timeout=5):
            if isinstance(name, bytes):
                name = name.decode("ascii")
            return keys.get(name.rstrip(".").lower() + ".")
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    d = dkim.DKIM(data)
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    if not sigs:
        print("nosig")
        return 1
    ok = True
    for i in range(len(sigs)):
        good = False
        try:
            good = d.verify(idx=i, dnsfunc=dnsfunc)
        except Exception as e:  # a broken signature is a failure, not a crash
            print("error %s" % e)
        tags = dkim.util.parse_tag_value(b"".join(sigs[i].split()))
        print("%s d=%s s=%s a=%s h=%s" % ("pass" if good else "fail",
              tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode(),
              tags.get(b"a", b"").decode(), tags.get(b"h", b"").decode()))
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
