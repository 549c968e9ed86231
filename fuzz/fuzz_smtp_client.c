/*
 * fuzz_smtp_client - the outbound client's state machine
 * (relay/smtp_client.c) against arbitrary server bytes, without sockets.
 *
 * The real client code runs on a scripted transport (smtp_client_open_io(),
 * relay/smtp_client.h): no loop, no socket, no TLS engine. The harness
 * plays the network: it answers connect, delivers the server's bytes in
 * chunks a PRNG draws (so that CR, LF and reply ends fall anywhere),
 * answers STARTTLS handshakes, fires timeouts, reports the end of the
 * stream, and closes when asked.
 *
 * Input layout:
 *   byte 0   bits 0-2 the TLS mode (NONE, MAY, ENCRYPT, VERIFY, SMTPS,
 *            modulo 5), bit 3 AUTH credentials, bit 4 SMTPUTF8 mail,
 *            bit 5 8-bit body, bit 6 ENVID, bit 7 a second transaction
 *   byte 1   recipients (1-4, low bits), bit 4: MAIL from the null sender
 *   bytes 2-5 the PRNG seed of the chunk splits
 *   then     what the server sends. 0xFF is an escape: 0xFF 'E' end of
 *            stream, 0xFF 'R' a connection error, 0xFF 'T' the step timer
 *            fires, 0xFF 'F' the next TLS handshake fails, 0xFF 'Q'
 *            written bytes stay queued (a reply before the message left),
 *            0xFF 0xFF one 0xFF byte.
 *
 * Checked, besides ASan/UBSan/LSan:
 *  - open_cb runs exactly once; done_cb once per accepted
 *    smtp_client_send(); no callback after the client is freed, and it
 *    is always freed in the end (LeakSanitizer);
 *  - every reply given out has code 0 or 200-599, a status "" or of the
 *    code's class (a failure without a reply: 4.x.x), a NUL-terminated
 *    printable text;
 *  - what the client writes: whole CRLF-terminated lines outside the
 *    message; nothing after close; the message body (it carries a marker)
 *    only after the server sent a 354 somewhere before; credentials (AUTH)
 *    never before a TLS handshake succeeded, unless the mode is NONE;
 *    nothing but a new EHLO right after a STARTTLS handshake;
 *  - the known answers of init(): bytes behind the STARTTLS 220 make the
 *    open fail with 4.5.0 and no handshake starts (CVE-2011-0411);
 *    PIPELINING sends MAIL, RCPT and DATA in one write.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "relay/smtp_client.h"
#include "util/conn.h"
#include "util/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

#define MARKER "X-Fuzz-Body-Marker"
#define STEPS_MAX 4000

static SSL_CTX *plain_ctx, *verify_ctx;

struct harness {
	struct smtp_client *c;
	bool freed;
	bool connecting;         /* io->connect() called, not answered */
	bool tls_pending;        /* io->starttls() called, not answered */
	bool tls_fail_next;
	bool tls_ok;             /* a handshake succeeded on this connection */
	bool after_tls;          /* nothing written since the handshake */
	bool closing;            /* io->close() called, not answered */
	bool closed_conn;        /* no writes allowed until a new connect */
	bool queued;
	bool opened, open_failed;
	int open_calls;
	int done_calls, sends;
	bool idle;               /* may start a transaction */
	bool saw_354;            /* the server sent "354" somewhere */
	bool in_data;            /* the client is writing the message */
	enum smtp_client_tls mode;
	bool auth;
	size_t nrcpts;           /* of the message sent */
	uint64_t timer;          /* armed (ms), 0 off */
	/* what was written, for the line checks */
	char line[4096];
	size_t line_len;
	size_t writes, starttls_calls;
	bool last_write_was_pipelined;
	size_t last_write_lines;
};

static void check_reply(const struct smtp_reply *r)
{
	CHECK(r->code == 0 || (r->code >= 200 && r->code <= 599));
	size_t sl = strnlen(r->status, sizeof(r->status));
	CHECK(sl < sizeof(r->status));
	if (sl) {
		if (r->code)
			CHECK(r->status[0] == '0' + r->code / 100);
		else
			CHECK(r->status[0] == '4');
	}
	size_t tl = strnlen(r->text, sizeof(r->text));
	CHECK(tl < sizeof(r->text));
	for (size_t i = 0; i < tl; i++)
		CHECK((unsigned char)r->text[i] >= 0x20);
}

/* ---- the scripted transport ---- */

static void io_connect(void *arg)
{
	struct harness *h = arg;
	CHECK(!h->connecting && !h->freed);
	h->connecting = true;
	h->closed_conn = false;
	h->tls_ok = false;
	h->line_len = 0;
	h->in_data = false;
}

/* A written command line (outside the message). */
static void check_line(struct harness *h, const char *l, size_t n)
{
	CHECK(n >= 2 && l[n - 2] == '\r' && l[n - 1] == '\n');
	for (size_t i = 0; i + 2 < n; i++)
		CHECK(l[i] != '\r' && l[i] != '\n');
	if (h->after_tls) {
		CHECK(n > 5 && memcmp(l, "EHLO ", 5) == 0);
		h->after_tls = false;
	}
	if (n >= 5 && memcmp(l, "AUTH ", 5) == 0)
		CHECK(h->mode == SCT_NONE || h->tls_ok);
}

static int io_write(void *arg, const void *p, size_t n)
{
	struct harness *h = arg;
	const char *s = p;

	CHECK(!h->freed && !h->closing && !h->closed_conn && !h->connecting);
	h->writes++;
	if (memmem(s, n, MARKER, strlen(MARKER))) {
		CHECK(h->saw_354);
		h->in_data = true;
	}
	if (h->in_data) {
		/* The message ends with CRLF "." CRLF. */
		if (n >= 5 && memcmp(s + n - 5, "\r\n.\r\n", 5) == 0)
			h->in_data = false;
		return 0;
	}
	size_t lines = 0;
	for (size_t i = 0; i < n; i++) {
		CHECK(h->line_len < sizeof(h->line));
		h->line[h->line_len++] = s[i];
		if (s[i] == '\n') {
			check_line(h, h->line, h->line_len);
			h->line_len = 0;
			lines++;
		}
	}
	/* Commands go out whole, never half a line. */
	CHECK(h->line_len == 0);
	h->last_write_lines = lines;
	return 0;
}

static void io_timeout(void *arg, uint64_t ms)
{
	struct harness *h = arg;
	CHECK(!h->freed);
	h->timer = ms;
}

static int io_starttls(void *arg)
{
	struct harness *h = arg;
	CHECK(!h->freed && !h->tls_pending && !h->closing);
	h->tls_pending = true;
	h->starttls_calls++;
	return 0;
}

static void io_close(void *arg)
{
	struct harness *h = arg;
	CHECK(!h->freed);
	h->closing = true;
	h->closed_conn = true;
}

static size_t io_queued(void *arg)
{
	struct harness *h = arg;
	return h->queued ? 100 : 0;
}

static void io_freed(void *arg)
{
	struct harness *h = arg;
	CHECK(!h->freed);
	h->freed = true;
}

static const struct smtp_client_io io = {
	.connect = io_connect,
	.write = io_write,
	.timeout = io_timeout,
	.starttls = io_starttls,
	.close = io_close,
	.queued = io_queued,
	.freed = io_freed,
};

/* ---- callbacks ---- */

static void on_open(struct smtp_client *c, void *arg, const struct smtp_reply *fail)
{
	struct harness *h = arg;
	(void)c;
	CHECK(!h->freed);
	h->open_calls++;
	CHECK(h->open_calls == 1);
	if (fail) {
		check_reply(fail);
		h->open_failed = true;
	} else {
		h->opened = true;
		h->idle = true;
	}
}

static void on_done(struct smtp_client *c, void *arg, const struct smtp_client_result *r)
{
	struct harness *h = arg;
	(void)c;
	CHECK(!h->freed);
	h->done_calls++;
	CHECK(h->done_calls <= h->sends);
	check_reply(&r->mail);
	check_reply(&r->data);
	for (size_t i = 0; i < h->nrcpts && r->rcpt; i++)
		check_reply(&r->rcpt[i]);
	h->idle = true;
}

/* ---- driving ---- */

static uint32_t prng(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static const char body[] = "From: shop@example.jp\r\nSubject: t\r\n" MARKER ": 1\r\n\r\n"
                           ".leading dot\r\nline\r\n.\r\nend\r\n";

/* Runs the pending answers of the transport, in the order a loop would. */
static void settle(struct harness *h)
{
	for (int guard = 0; guard < 8 && !h->freed; guard++) {
		if (h->closing) {
			h->closing = false;
			h->tls_pending = false;
			h->connecting = false;
			smtp_client_io_closed(h->c);
			continue;
		}
		if (h->connecting) {
			h->connecting = false;
			smtp_client_io_connected(h->c, 0);
			continue;
		}
		if (h->tls_pending) {
			h->tls_pending = false;
			bool fail = h->tls_fail_next;
			h->tls_fail_next = false;
			if (!fail) {
				h->tls_ok = true;
				h->after_tls = true;
			}
			smtp_client_io_tls(h->c, fail ? CONN_ETLS : 0);
			continue;
		}
		break;
	}
}

/* Whether the server's bytes so far hold "354" (a loose oracle): the
 * bytes as the client got them, so a "354" split by an escape of the
 * input (e.g. "35", 0xFF 'F', "4") counts, as the client's reader joins
 * the pieces. tail holds the last two bytes fed before this chunk. */
static bool has_354(bool seen, char tail[2], const char *chunk, size_t n)
{
	char w[2 + 1024];
	memcpy(w, tail, 2);
	memcpy(w + 2, chunk, n);
	for (size_t i = 0; !seen && i + 2 < n + 2; i++)
		seen = w[i] == '3' && w[i + 1] == '5' && w[i + 2] == '4';
	if (n) {
		memcpy(tail, w + n, 2);
	}
	return seen;
}

static void run(const uint8_t *data, size_t size)
{
	static const enum smtp_client_tls modes[] = { SCT_NONE, SCT_MAY, SCT_ENCRYPT, SCT_VERIFY,
	                                              SCT_SMTPS };
	struct harness h = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };
	sin.sin_addr.s_addr = htonl(0x7f000001);

	if (size < 6)
		return;
	uint8_t flags = data[0], rc_byte = data[1];
	uint32_t seed = (uint32_t)data[2] | (uint32_t)data[3] << 8 | (uint32_t)data[4] << 16 |
	                (uint32_t)data[5] << 24;
	if (!seed)
		seed = 0x9e3779b9u;
	data += 6;
	size -= 6;

	h.mode = modes[(flags & 7) % 5];
	h.auth = flags & 8;
	struct smtp_client_params p = {
		.host = "mx.example.test",
		.addr = (const struct sockaddr *)&sin,
		.helo = "relay.example.jp",
		.tls = h.mode,
		.tls_ctx = h.mode == SCT_VERIFY || h.mode == SCT_SMTPS ? verify_ctx : plain_ctx,
		.username = h.auth ? "shop" : NULL,
		.password = h.auth ? "secret" : NULL,
	};
	const char *rcpts[4] = { "a@example.com", "b@example.org", "\"q u\"@example.net",
	                         "ユーザー@例え.jp" };
	struct smtp_client_msg m = {
		.from = rc_byte & 0x10 ? "" : "shop@example.jp",
		.rcpts = rcpts,
		.nrcpts = (size_t)(rc_byte & 3) + 1,
		.data = body,
		.len = sizeof(body) - 1,
		.smtputf8 = flags & 0x10,
		.body_8bit = flags & 0x20,
		.envid = flags & 0x40 ? "0000066000000000AB-tag+=x" : NULL,
	};
	int txns = flags & 0x80 ? 2 : 1;
	h.nrcpts = m.nrcpts;

	int rc = smtp_client_open_io(&p, &io, &h, on_open, &h, &h.c);
	CHECK(rc == 0);
	settle(&h);

	size_t i = 0;
	int steps = 0, tries = 0;
	bool released = false;
	char tail[2] = { 0, 0 };
	while (!h.freed && steps++ < STEPS_MAX) {
		if (h.opened && h.idle && tries < txns && !released) {
			h.idle = false;
			tries++;
			int s = smtp_client_send(h.c, &m, on_done, &h);
			if (s == 0)
				h.sends++;
			else
				CHECK(s == UV_ENOTCONN || s == UV_EINVAL);   /* no callback then */
			h.idle = s != 0;
			settle(&h);
			continue;
		}
		if (i >= size) {
			/* The server is done: release the client, let it close. */
			if (!released) {
				released = true;
				smtp_client_close(h.c);
			} else if (h.timer) {
				smtp_client_io_timeout(h.c);
			} else {
				smtp_client_io_eof(h.c, UV_EOF);
			}
			settle(&h);
			continue;
		}
		if (data[i] == 0xff && i + 1 < size && data[i + 1] != 0xff) {
			uint8_t op = data[i + 1];
			i += 2;
			switch (op) {
			case 'E':
				smtp_client_io_eof(h.c, UV_EOF);
				break;
			case 'R':
				smtp_client_io_eof(h.c, UV_ECONNRESET);
				break;
			case 'T':
				smtp_client_io_timeout(h.c);
				break;
			case 'F':
				h.tls_fail_next = true;
				break;
			case 'Q':
				h.queued = !h.queued;
				break;
			default:
				break;
			}
			settle(&h);
			continue;
		}
		/* A chunk up to the next escape: mostly short. */
		size_t want = prng(&seed) % 4 == 0 ? prng(&seed) % 512 + 1 : prng(&seed) % 8 + 1;
		size_t end = i;
		char chunk[1024];
		size_t n = 0;
		while (end < size && n < want && n < sizeof(chunk)) {
			if (data[end] == 0xff && end + 1 < size) {
				if (data[end + 1] == 0xff) {
					chunk[n++] = (char)0xff;
					end += 2;
					continue;
				}
				break;
			}
			/* A last lone 0xFF is a byte. */
			chunk[n++] = (char)data[end++];
		}
		i = end;
		/* Loose: "354" anywhere in what the server sent so far. */
		h.saw_354 = has_354(h.saw_354, tail, chunk, n);
		smtp_client_io_input(h.c, chunk, n);
		settle(&h);
	}
	if (!h.freed && getenv("FUZZ_DEBUG"))
		fprintf(stderr, "stuck: opened %d failed %d released %d timer %llu closing %d "
		        "connecting %d tls %d sends %d done %d\n", h.opened, h.open_failed, released,
		        (unsigned long long)h.timer, h.closing, h.connecting, h.tls_pending, h.sends,
		        h.done_calls);
	CHECK(h.freed);
	CHECK(h.open_calls == 1);
	CHECK(h.done_calls == h.sends);
}

/* Known answers, checked once: the promises of smtp_client.h. */
static void known_answers(void)
{
	/* Bytes behind the STARTTLS 220: no handshake, open fails with 4.5.0. */
	struct harness h = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };
	struct smtp_client_params p = { .host = "mx.example.test",
		                        .addr = (const struct sockaddr *)&sin,
		                        .helo = "relay.example.jp", .tls = SCT_ENCRYPT,
		                        .tls_ctx = plain_ctx };
	h.mode = SCT_ENCRYPT;
	CHECK(smtp_client_open_io(&p, &io, &h, on_open, &h, &h.c) == 0);
	settle(&h);
	const char *greet = "220 mx ESMTP\r\n";
	smtp_client_io_input(h.c, greet, strlen(greet));
	const char *ehlo = "250-mx\r\n250 STARTTLS\r\n";
	smtp_client_io_input(h.c, ehlo, strlen(ehlo));
	const char *go = "220 go ahead\r\n250 injected\r\n";
	smtp_client_io_input(h.c, go, strlen(go));
	CHECK(h.starttls_calls == 0);
	CHECK(h.open_failed);
	settle(&h);
	CHECK(h.freed);

	/* PIPELINING: MAIL, RCPT, DATA in one write of three lines. */
	struct harness g = { 0 };
	p.tls = SCT_NONE;
	p.tls_ctx = NULL;
	CHECK(smtp_client_open_io(&p, &io, &g, on_open, &g, &g.c) == 0);
	settle(&g);
	smtp_client_io_input(g.c, greet, strlen(greet));
	const char *ehlo2 = "250-mx\r\n250 PIPELINING\r\n";
	smtp_client_io_input(g.c, ehlo2, strlen(ehlo2));
	CHECK(g.opened);
	const char *rc1[] = { "a@example.com" };
	struct smtp_client_msg m = { .from = "s@example.jp", .rcpts = rc1, .nrcpts = 1,
		                     .data = body, .len = sizeof(body) - 1 };
	g.nrcpts = 1;
	CHECK(smtp_client_send(g.c, &m, on_done, &g) == 0);
	g.sends++;
	CHECK(g.last_write_lines == 3);
	const char *rest = "250 ok\r\n250 ok\r\n354 go\r\n";
	g.saw_354 = true;
	smtp_client_io_input(g.c, rest, strlen(rest));
	const char *fin = "250 queued\r\n";
	smtp_client_io_input(g.c, fin, strlen(fin));
	CHECK(g.done_calls == 1);
	smtp_client_close(g.c);
	const char *bye = "221 bye\r\n";
	smtp_client_io_input(g.c, bye, strlen(bye));
	settle(&g);
	if (!g.freed) {
		smtp_client_io_eof(g.c, UV_EOF);
		settle(&g);
	}
	CHECK(g.freed);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[256];
	plain_ctx = tls_client_ctx_new(false, NULL, err, sizeof(err));
	verify_ctx = tls_client_ctx_new(true, NULL, err, sizeof(err));
	CHECK(plain_ctx && verify_ctx);
	known_answers();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	return 0;
}
