#!/usr/bin/python3
"""Load for the end-to-end tests: many SMTP connections at once (asyncio,
standard library only).

usage:
  load_gen.py idle HOST PORT N
      open N connections, read each greeting, print "READY n" (how many
      got one), then hold them until stdin is closed; print "CLOSED".
  load_gen.py send HOST PORT N CONCURRENCY TAG RESULTS [--retry] [--rcpt ADDR]
      submit N mails (1 KiB, header "X-Load-Tag: TAG-i"), CONCURRENCY
      sessions at a time, a new connection per mail. RESULTS gets one line
      per mail: "TAG-i OK QUEUEID" for a 250 after DATA, else
      "TAG-i FAIL reason". With --retry, a mail that failed for any reason
      (connection refused or reset: the relay was killed) is submitted
      again until it gets its 250, as a shop application would; RESULTS
      then lists each mail once, with the attempts it took. --rcpt: the
      recipient (default customer@dest.test); "{i}" in it is the mail's
      number; several recipients are separated by commas.
"""
import asyncio
import sys
import time


async def read_reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if line[3:4] != b"-":
            return lines


async def one_mail(host, port, tag, rcpt="customer@dest.test", timeout=30):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        async def step(cmd, want):
            if cmd is not None:
                writer.write(cmd)
                await writer.drain()
            rep = await asyncio.wait_for(read_reply(reader), timeout)
            if not rep[-1].startswith(want):
                raise RuntimeError(rep[-1].decode(errors="replace").strip())
            return rep[-1].decode(errors="replace").strip()

        await step(None, b"220")
        await step(b"EHLO load.test\r\n", b"250")
        await step(b"MAIL FROM:<shop@example.jp>\r\n", b"250")
        for r in rcpt.split(","):
            await step(b"RCPT TO:<%s>\r\n" % r.encode(), b"250")
        await step(b"DATA\r\n", b"354")
        body = ("Subject: load %s\r\nX-Load-Tag: %s\r\nFrom: shop@example.jp\r\n"
                "To: %s\r\n\r\n" % (tag, tag, rcpt)).encode()
        body += (b"x" * 76 + b"\r\n") * 12 + b".\r\n"
        last = await step(body, b"250")
        qid = last.rsplit(" ", 1)[-1]
        try:
            writer.write(b"QUIT\r\n")
            await writer.drain()
            await asyncio.wait_for(read_reply(reader), 5)
        except Exception:
            pass
        return qid
    finally:
        writer.close()


async def send(host, port, n, conc, tag, results, retry, rcpt):
    todo = asyncio.Queue()
    for i in range(n):
        todo.put_nowait(("%s-%d" % (tag, i), 1))
    out = {}

    async def worker():
        while True:
            try:
                t, attempt = todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                qid = await one_mail(host, port, t, rcpt.replace("{i}", t.rsplit("-", 1)[1]))
                out[t] = "%s OK %s %d" % (t, qid, attempt)
            except Exception as e:  # noqa: BLE001 - every failure is a result
                if retry and attempt < 200:
                    await asyncio.sleep(0.05)
                    todo.put_nowait((t, attempt + 1))
                else:
                    out[t] = "%s FAIL %s" % (t, str(e).replace("\n", " ") or type(e).__name__)

    t0 = time.time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    with open(results, "w") as f:
        for i in range(n):
            f.write(out.get("%s-%d" % (tag, i), "%s-%d FAIL lost" % (tag, i)) + "\n")
    print("SENT %d in %.2f s" % (n, time.time() - t0), flush=True)


async def idle(host, port, n):
    conns = []
    got = 0

    async def open_one():
        nonlocal got
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 60)
            line = await asyncio.wait_for(r.readline(), 60)
            if line.startswith(b"220"):
                got += 1
            conns.append(w)
        except Exception:
            pass

    sem = asyncio.Semaphore(500)

    async def limited():
        async with sem:
            await open_one()

    await asyncio.gather(*(limited() for _ in range(n)))
    print("READY %d" % got, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for w in conns:
        w.close()
    print("CLOSED", flush=True)


def main(argv):
    if len(argv) >= 5 and argv[1] == "idle":
        asyncio.run(idle(argv[2], int(argv[3]), int(argv[4])))
        return 0
    if len(argv) >= 8 and argv[1] == "send":
        rest = argv[8:]
        rcpt = rest[rest.index("--rcpt") + 1] if "--rcpt" in rest else "customer@dest.test"
        asyncio.run(send(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6], argv[7],
                         "--retry" in rest, rcpt))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
