#!/usr/bin/python3
"""A small SMTP load generator: N concurrent clients, each sending mails of
SIZE bytes over a new connection per mail (or reusing one with --reuse),
for a number of messages. Prints messages/s and latency percentiles.

usage: smtp_load.py HOST PORT [--clients 20] [--messages 5000] [--size 1024] [--reuse]
"""
import argparse
import asyncio
import time


async def expect(reader, code):
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            if not line.startswith(code):
                raise RuntimeError("unexpected reply %r" % line)
            return line


async def transaction(reader, writer, body, frm, to):
    writer.write(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (frm, to))
    await expect(reader, b"250")
    await expect(reader, b"250")
    await expect(reader, b"354")
    writer.write(body + b".\r\n")
    await expect(reader, b"250")


async def worker(args, counter, lat, body):
    reader = writer = None
    while True:
        n = counter[0]
        if n >= args.messages:
            break
        counter[0] += 1
        t0 = time.perf_counter()
        if writer is None:
            reader, writer = await asyncio.open_connection(args.host, args.port)
            await expect(reader, b"220")
            writer.write(b"EHLO bench.example\r\n")
            await expect(reader, b"250")
        await transaction(reader, writer, body, args.frm.encode(),
                          b"user%d@%s" % (n, args.to_domain.encode()))
        if not args.reuse:
            writer.write(b"QUIT\r\n")
            await expect(reader, b"221")
            writer.close()
            writer = None
        lat.append(time.perf_counter() - t0)
    if writer is not None:
        writer.write(b"QUIT\r\n")
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--from", dest="frm", default="bench@example.jp")
    ap.add_argument("--to-domain", default="example.com")
    args = ap.parse_args()
    head = b"From: %s\r\nTo: user@example.com\r\nSubject: bench\r\n\r\n" % args.frm.encode()
    line = b"x" * 74 + b"\r\n"
    body = head + line * max(1, (args.size - len(head)) // len(line))
    counter = [0]
    lat = []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(args, counter, lat, body) for _ in range(args.clients)))
    dt = time.perf_counter() - t0
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1000
    print("messages %d clients %d size %d %s: %.0f msg/s, latency p50 %.1f ms p99 %.1f ms"
          % (len(lat), args.clients, len(body), "reuse" if args.reuse else "new-conn",
             len(lat) / dt, pct(0.50), pct(0.99)))


asyncio.run(main())
