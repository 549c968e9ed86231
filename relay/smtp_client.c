/*
 * smtp_client - the outbound SMTP client. See smtp_client.h.
 *
 * One explicit state machine per connection. Every state that waits for
 * a reply has a row in the step table below: what it waits for (for the
 * timeout text) and the function that handles the complete reply. The
 * bytes from util/conn.c are cut into lines here, lines are assembled
 * into replies by the parser (smtp_reply_parser_* of proto/smtp_reply.c),
 * failures without a reply get their status by reason (smtp_reply_none()),
 * and each complete
 * reply goes to the current state's handler, which writes the next
 * command and moves on.
 *
 *	CONNECT -> [TLS_WRAP] -> GREETING -> EHLO [-> HELO]
 *	        -> [STARTTLS -> TLS -> EHLO] -> [AUTH_*] -> IDLE
 *	IDLE -> [RSET] -> MAIL -> RCPT... -> DATA -> DOT | DOT_DISCARD -> IDLE
 *	IDLE -> QUIT -> CLOSED
 *
 * Transport: util/conn.c (TCP, TLS), or a scripted smtp_client_io for
 * tests and fuzz/fuzz_smtp_client.c, behind the io_*() helpers; the
 * state machine is the same either way.
 *
 * Why one file of about 1,400 lines: it is one state machine. Every
 * handler reads and changes the same struct smtp_client and ends in the
 * same few moves (await_reply(), client_abort(), txn_done(),
 * close_conn()); connection setup, the transaction and the conn
 * callbacks are rows and edges of the one step table, and a state's
 * handler reads right only beside its neighbours (OpenSMTPD keeps its
 * mta_session.c whole for the same reason). What is pure lives in
 * proto/: the reply parser (smtp_reply), the dot-stuffing (smtp_stuff)
 * and the EHLO reply's keywords (smtp_ehlo).
 *
 * Memory: the client is freed in conn's on_close once the caller has let
 * go of it (smtp_client_close(), or a failed open). A callback that the
 * caller still waits for when the connection ends runs from on_close, so
 * each callback runs exactly once.
 */
#include "relay/smtp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "proto/smtp_ehlo.h"
#include "proto/smtp_stuff.h"
#include "util/buf.h"
#include "util/conn.h"

#define CMDS_MAX ((size_t)4 << 20)          /* MAIL + RCPTs + DATA of one transaction */
#define DATA_CHUNK 65536                    /* dot-stuffed bytes per conn_write() */
#define QUIT_WAIT_MS 1000                   /* how long a 221 is worth waiting for */
#define CRED_MAX 512                        /* user name, password */
#define PLAIN_MAX (2 * CRED_MAX + 2)        /* NUL user NUL password */
#define B64_MAX ((PLAIN_MAX + 2) / 3 * 4 + 1)

/* Defaults when a timeout is 0 (SPEC §3; RFC 5321 §4.5.3.2). */
#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define DEFAULT_TIMEOUT_MS 300000
#define DEFAULT_DATA_TIMEOUT_MS 600000

enum client_state {
	CS_CONNECT,      /* TCP connect under way */
	CS_TLS_WRAP,     /* SMTPS: TLS handshake before the greeting */
	CS_GREETING,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_TLS,          /* handshake after STARTTLS's 220 */
	CS_AUTH_PLAIN,   /* "AUTH PLAIN <initial response>" sent */
	CS_AUTH_LOGIN,   /* "AUTH LOGIN" sent, waiting for "334 Username:" */
	CS_AUTH_USER,    /* user name sent, waiting for "334 Password:" */
	CS_AUTH_PASS,    /* the last credentials sent, waiting for 235 */
	CS_IDLE,         /* ready for a transaction */
	CS_RSET,
	CS_MAIL,
	CS_RCPT,
	CS_DATA,
	CS_DOT,          /* message sent, waiting for the final reply */
	CS_DOT_DISCARD,  /* a lone "." after an unwanted 354; reply ignored */
	CS_QUIT,
	CS_CLOSED,
};

/* One transaction (smtp_client_send() to done_cb). */
struct txn {
	smtp_client_done_cb cb;
	void *arg;
	const char *data;          /* the caller's message; valid until cb */
	size_t len;
	buf_t cmds;                /* [RSET] MAIL RCPT... DATA, CRLF-terminated */
	size_t *off;               /* ncmds + 1 command boundaries in cmds */
	size_t ncmds;
	size_t cur;                /* the command whose reply comes next */
	size_t nrcpts;
	size_t next;               /* the recipient whose reply comes next */
	size_t accepted;
	bool pipelined;
	bool mail_ok;
	struct smtp_client_result res;
};

struct smtp_client {
	struct conn conn;
	const struct smtp_client_io *io;   /* NULL: TCP through conn; else scripted */
	void *io_arg;
	uv_connect_t connect_req;
	uv_loop_t *loop;
	enum client_state state;
	enum client_state closed_in;   /* the state close_conn() ended */

	/* the parameters, copied */
	struct sockaddr_storage addr;
	char *host;
	char *helo;
	char *username;
	char *password;
	enum smtp_client_tls tls;
	SSL_CTX *tls_ctx;          /* a reference of our own */
	uint64_t connect_timeout_ms;
	uint64_t timeout_ms;
	uint64_t data_timeout_ms;
	char relay[320];

	struct smtp_ehlo ehlo;     /* what the server offers (from the last EHLO) */

	bool conn_open;            /* conn_init() done, on_close not yet run */
	bool tls_on;
	bool plain_fallback;       /* SCT_MAY after a failed handshake: no STARTTLS */
	bool reconnect;            /* start again in on_close */
	bool broken;               /* no further transaction on this connection */
	bool need_rset;            /* the last transaction did not end with 250 */
	bool released;             /* the caller let go; free once closed */
	bool in_close_cb;          /* on_close is running user callbacks */

	buf_t in;                  /* one reply line being read */
	size_t unread;             /* input bytes behind the reply being handled */
	struct smtp_reply_parser parser;

	smtp_client_open_cb open_cb;
	void *open_arg;
	void (*freed_cb)(void *arg);   /* smtp_client_on_freed() */
	void *freed_arg;
	struct txn txn;
};

static void client_abort(struct smtp_client *c, const struct smtp_reply *why);

/*
 * The transport: util/conn.c, or the caller's smtp_client_io (tests and
 * fuzz/fuzz_smtp_client.c drive the real state machine without sockets).
 */
static int io_write(struct smtp_client *c, const void *p, size_t n)
{
	return c->io ? c->io->write(c->io_arg, p, n) : conn_write(&c->conn, p, n);
}

static void io_timeout(struct smtp_client *c, uint64_t ms)
{
	if (c->io)
		c->io->timeout(c->io_arg, ms);
	else
		conn_timeout(&c->conn, ms);
}

static void io_timer_stop(struct smtp_client *c)
{
	if (c->io)
		c->io->timeout(c->io_arg, 0);
	else
		uv_timer_stop(&c->conn.timer);
}

static int io_starttls(struct smtp_client *c)
{
	return c->io ? c->io->starttls(c->io_arg) : conn_starttls(&c->conn, c->tls_ctx, false, c->host);
}

static void io_close(struct smtp_client *c)
{
	if (c->io)
		c->io->close(c->io_arg);
	else
		conn_close(&c->conn, false);
}

/* Bytes handed to the transport that have not left yet. */
static size_t io_queued(const struct smtp_client *c)
{
	if (c->io)
		return c->io->queued ? c->io->queued(c->io_arg) : 0;
	return c->conn.write_queued;
}

/* ---- small helpers ---------------------------------------------------- */

static bool is_2xx(int code)
{
	return code >= 200 && code < 300;
}

/* A string that goes into a command line: no CR, LF or other control. */
static bool cmd_safe(const char *s, bool allow_space)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f || (!allow_space && ch == ' '))
			return false;
	}
	return true;
}

/*
 * An address inside <...>: no control character anywhere; a space or an
 * angle bracket only inside a quoted local part ("john doe"@example.com,
 * RFC 5321 §4.1.2 Quoted-string), which the listener accepts too.
 */
static bool addr_safe(const char *s)
{
	if (!cmd_safe(s, true))
		return false;
	const char *p = s;
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		if (*p != '"')
			return false;
		p++;
	}
	return !strpbrk(p, " <>");
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* RFC 3461 §4: xtext, every byte outside "!".."~" and '+', '=' as +XX. */
static int append_xtext(buf_t *b, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		int rc = ch >= 0x21 && ch <= 0x7e && ch != '+' && ch != '='
		         ? buf_append(b, s, 1)
		         : buf_appendf(b, "+%02X", ch);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static const char *step_name(enum client_state st);

/* ---- writing ---------------------------------------------------------- */

/* Waits for the reply that the state expects, under its timeout. */
static void await_reply(struct smtp_client *c, enum client_state st)
{
	c->state = st;
	io_timeout(c, st == CS_DOT ? c->data_timeout_ms : c->timeout_ms);
}

/* Writes; on failure the client is aborted and -1 returned. */
static int client_write(struct smtp_client *c, const void *p, size_t n)
{
	int rc = io_write(c, p, n);
	if (rc < 0) {
		struct smtp_reply r;
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "cannot write to the server: %s",
		           rc == CONN_ETLS && c->conn.tls ? tls_engine_error(c->conn.tls) : uv_strerror(rc));
		client_abort(c, &r);
		return -1;
	}
	return 0;
}

static int send_line(struct smtp_client *c, enum client_state st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int send_line(struct smtp_client *c, enum client_state st, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		struct smtp_reply r;
		smtp_reply_none(&r, SMTP_NOREPLY_LOCAL, "command too long");
		client_abort(c, &r);
		return -1;
	}
	memcpy(line + n, "\r\n", 2);
	int rc = client_write(c, line, (size_t)n + 2);
	OPENSSL_cleanse(line, sizeof(line)); /* AUTH lines carry credentials */
	if (rc < 0)
		return -1;
	await_reply(c, st);
	return 0;
}

/*
 * The message, dot-stuffed with CRLF line ends, then the final dot
 * (proto/smtp_stuff.h). At most DATA_CHUNK bytes are staged at a time;
 * conn_write() copies them into the write queue.
 */
static int write_data(struct smtp_client *c)
{
	const char *d = c->txn.data;
	size_t len = c->txn.len, i = 0;
	/* Room for the message as it mostly is (a few dots or line ends
	 * more); one that grows more goes in further writes. */
	size_t cap = len < DATA_CHUNK - 256 ? len + 256 : DATA_CHUNK;
	char *out = malloc(cap + SMTP_STUFF_FINISH);
	struct smtp_stuff st;

	if (!out) {
		struct smtp_reply r;
		smtp_reply_none(&r, SMTP_NOREPLY_LOCAL, "out of memory");
		client_abort(c, &r);
		return -1;
	}
	smtp_stuff_init(&st);
	/* A message that needs no change goes as it is (conn_write() copies
	 * it), only its last piece staged, for the end to follow it. */
	bool plain = smtp_stuff_plain(&st, d, len);
	for (;;) {
		size_t o;
		const char *p = out;
		if (plain) {
			o = len - i < cap ? len - i : cap;
			p = d + i;
			i += o;
		} else {
			i += smtp_stuff_encode(&st, d + i, len - i, out, cap, &o);
		}
		bool last = i == len;
		if (last) {
			if (p != out)
				memcpy(out, p, o);
			p = out;
			o += smtp_stuff_finish(&st, out + o);
		}
		if (client_write(c, p, o) < 0)
			goto fail;
		if (last)
			break;
	}
	free(out);
	await_reply(c, CS_DOT);
	return 0;
fail:
	free(out);
	return -1;
}

/* Writes command k of the transaction (lockstep). */
static int txn_write_cmd(struct smtp_client *c, size_t k, enum client_state st)
{
	struct txn *t = &c->txn;
	if (client_write(c, t->cmds.data + t->off[k], t->off[k + 1] - t->off[k]) < 0)
		return -1;
	await_reply(c, st);
	return 0;
}

/* ---- the end of the open and of a transaction ------------------------- */

static void close_conn(struct smtp_client *c)
{
	if (c->state != CS_CLOSED)
		c->closed_in = c->state;
	c->state = CS_CLOSED;
	io_close(c);
}

static void open_done(struct smtp_client *c, const struct smtp_reply *fail)
{
	smtp_client_open_cb cb = c->open_cb;

	c->open_cb = NULL;
	if (fail) {
		/* The header promises: a failed client frees itself. */
		c->released = true;
		c->broken = true;
		if (c->conn_open)
			close_conn(c);
	} else {
		c->state = CS_IDLE;
		io_timer_stop(c); /* no timeout while idle */
	}
	if (cb)
		cb(c, c->open_arg, fail);
}

static void txn_release(struct txn *t)
{
	buf_free(&t->cmds);
	free(t->off);
	free(t->res.rcpt);
	memset(t, 0, sizeof(*t));
}

/* Every reply the transaction did not get (yet) becomes why. */
static void txn_fill(struct txn *t, enum client_state st, const struct smtp_reply *why)
{
	switch (st) {
	case CS_RSET:
	case CS_MAIL:
		t->res.mail = *why;
		t->next = 0;
		/* fall through */
	case CS_RCPT:
		for (size_t i = t->next; i < t->nrcpts; i++)
			t->res.rcpt[i] = *why;
		t->next = t->nrcpts;
		/* fall through */
	case CS_DATA:
	case CS_DOT:
		t->res.data = *why;
		break;
	default:
		break;
	}
}

static void txn_done(struct smtp_client *c)
{
	struct txn t = c->txn;   /* the callback may start the next one */

	memset(&c->txn, 0, sizeof(c->txn));
	t.res.reusable = !c->broken;
	/* RFC 5321 §4.1.1.5: start clean unless the last one ended with 250. */
	c->need_rset = !is_2xx(t.res.data.code);
	if (c->state != CS_CLOSED) {
		c->state = CS_IDLE;
		io_timer_stop(c);
	}
	t.cb(c, t.arg, &t.res);
	txn_release(&t);
}

/*
 * The end of everything on this connection: the pending open or
 * transaction gets why, the connection closes without QUIT.
 */
static void client_abort(struct smtp_client *c, const struct smtp_reply *why)
{
	if (c->state == CS_CLOSED)
		return;
	enum client_state st = c->state;
	c->broken = true;
	if (c->open_cb) {
		open_done(c, why);
		return;
	}
	close_conn(c);
	if (c->txn.cb) {
		txn_fill(&c->txn, st, why);
		txn_done(c);
	}
}

/* ---- connection setup: greeting, EHLO, STARTTLS, AUTH ----------------- */

static void send_ehlo(struct smtp_client *c)
{
	smtp_ehlo_init(&c->ehlo);
	send_line(c, CS_EHLO, "EHLO %s", c->helo);
}

static void client_connected(uv_connect_t *req, int status);
static const struct conn_ops client_ops;

/*
 * Starts the TCP connection. Returns 0, or a libuv error; conn_open
 * tells whether the connection must still be closed.
 */
static int client_connect(struct smtp_client *c)
{
	/*
	 * conn_init() fails only when uv_tcp_init() does (uv_timer_init()
	 * cannot fail), and then no handle is open.
	 */
	int rc = c->io ? 0 : conn_init(c->loop, &c->conn, &client_ops, c);
	if (rc < 0)
		return rc;
	if (c->io)
		c->conn.data = c;
	c->conn_open = true;
	c->state = CS_CONNECT;
	c->tls_on = false;
	smtp_ehlo_init(&c->ehlo);
	buf_reset(&c->in);
	smtp_reply_parser_init(&c->parser);
	io_timeout(c, c->connect_timeout_ms);
	if (c->io) {
		c->io->connect(c->io_arg);   /* answered by smtp_client_io_connected() */
		return 0;
	}
	c->connect_req.data = c;
	rc = uv_tcp_connect(&c->connect_req, &c->conn.tcp, (const struct sockaddr *)&c->addr,
	                    client_connected);
	if (rc < 0)
		close_conn(c);
	return rc;
}

static void tls_failed(struct smtp_client *c, const char *why)
{
	/* SCT_MAY: opportunistic only; one more try in plain text. */
	if (c->tls == SCT_MAY && c->state == CS_TLS && !c->plain_fallback && c->open_cb &&
	    !c->released) {
		c->plain_fallback = true;
		c->reconnect = true;
		close_conn(c);
		return;
	}
	struct smtp_reply r;
	smtp_reply_none(&r, SMTP_NOREPLY_TLS_FAILED, "%s", why);
	client_abort(c, &r);
}

/* RFC 4616 §2: [authzid] NUL authcid NUL passwd, with an empty authzid. */
static size_t auth_plain_blob(const struct smtp_client *c, unsigned char raw[PLAIN_MAX])
{
	size_t ul = strlen(c->username), pl = strlen(c->password);
	raw[0] = '\0';
	memcpy(raw + 1, c->username, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, c->password, pl);
	return 2 + ul + pl;
}

static void auth_start(struct smtp_client *c)
{
	struct smtp_reply r;

	if (!c->username) {
		open_done(c, NULL);
		return;
	}
	/* RFC 4954 §4: no password in plain text (SCT_NONE is for tests). */
	if (!c->tls_on && c->tls != SCT_NONE) {
		smtp_reply_none(&r, SMTP_NOREPLY_TLS_REQUIRED, "not sending credentials without TLS");
		client_abort(c, &r);
		return;
	}
	if (!(c->ehlo.ext & SMTP_EXT_AUTH)) {
		smtp_reply_none(&r, SMTP_NOREPLY_AUTH, "the server does not offer AUTH");
		client_abort(c, &r);
		return;
	}
	if (c->ehlo.mechs & SMTP_MECH_PLAIN) {
		/* RFC 4954 §4: the credentials as the initial response. */
		unsigned char raw[PLAIN_MAX];
		unsigned char b64[B64_MAX];
		EVP_EncodeBlock(b64, raw, (int)auth_plain_blob(c, raw));
		send_line(c, CS_AUTH_PLAIN, "AUTH PLAIN %s", (const char *)b64);
		OPENSSL_cleanse(raw, sizeof(raw));
		OPENSSL_cleanse(b64, sizeof(b64));
		return;
	}
	if (c->ehlo.mechs & SMTP_MECH_LOGIN) {
		send_line(c, CS_AUTH_LOGIN, "AUTH LOGIN");
		return;
	}
	smtp_reply_none(&r, SMTP_NOREPLY_AUTH, "the server offers no AUTH mechanism hikyaku has (PLAIN, LOGIN)");
	client_abort(c, &r);
}

/* Sends one credential base64-encoded, as an AUTH LOGIN/PLAIN continuation. */
static void auth_send_b64(struct smtp_client *c, enum client_state st, const void *p, size_t n)
{
	unsigned char b64[B64_MAX];
	EVP_EncodeBlock(b64, p, (int)n);
	send_line(c, st, "%s", (const char *)b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}

static void after_ehlo(struct smtp_client *c)
{
	bool want_tls = (c->tls == SCT_MAY && !c->plain_fallback) || c->tls == SCT_ENCRYPT ||
	                c->tls == SCT_VERIFY;
	if (!c->tls_on && want_tls) {
		if (c->ehlo.ext & SMTP_EXT_STARTTLS) {
			send_line(c, CS_STARTTLS, "STARTTLS");
			return;
		}
		if (c->tls != SCT_MAY) {
			struct smtp_reply r;
			smtp_reply_none(&r, SMTP_NOREPLY_TLS_REQUIRED, "the server does not offer STARTTLS, which TLS mode %s requires",
			           c->tls == SCT_VERIFY ? "verify" : "encrypt");
			client_abort(c, &r);
			return;
		}
	}
	auth_start(c);
}

static void on_greeting(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 220) {
		client_abort(c, r);
		return;
	}
	send_ehlo(c);
}

static void on_ehlo(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 250) {
		after_ehlo(c);
		return;
	}
	/* RFC 5321 §3.2: a server that does not know EHLO answers 5xx; try HELO. */
	if (r->code >= 500) {
		smtp_ehlo_init(&c->ehlo);
		send_line(c, CS_HELO, "HELO %s", c->helo);
		return;
	}
	client_abort(c, r);
}

static void on_helo(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 250) {
		client_abort(c, r);
		return;
	}
	after_ehlo(c);
}

static void on_starttls(struct smtp_client *c, const struct smtp_reply *r)
{
	struct smtp_reply why;

	if (r->code != 220) {
		/* RFC 3207 §4: the client may go on without TLS, if its policy allows. */
		if (c->tls == SCT_MAY && r->code != 421)
			auth_start(c);
		else
			client_abort(c, r);
		return;
	}
	/*
	 * Anything behind the 220 was sent before the handshake, in plain
	 * text, by the server or by someone in the path: it must never be
	 * read as a reply after TLS (the STARTTLS command injection class,
	 * CVE-2011-0411 and relatives).
	 */
	if (c->unread > 0) {
		smtp_reply_none(&why, SMTP_NOREPLY_PROTOCOL, "server sent data after its STARTTLS reply");
		client_abort(c, &why);
		return;
	}
	c->state = CS_TLS;
	io_timeout(c, c->timeout_ms);
	if (io_starttls(c) < 0)
		tls_failed(c, c->conn.tls ? tls_engine_error(c->conn.tls) : "cannot start TLS");
}

static void on_auth_plain(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 235) {
		open_done(c, NULL);
		return;
	}
	/* An empty challenge despite the initial response (RFC 4954 §4): answer it once. */
	if (r->code == 334) {
		unsigned char raw[PLAIN_MAX];
		auth_send_b64(c, CS_AUTH_PASS, raw, auth_plain_blob(c, raw));
		OPENSSL_cleanse(raw, sizeof(raw));
		return;
	}
	client_abort(c, r); /* 535, 530, 454...: the runner pauses the route */
}

static void on_auth_login(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 334) {
		client_abort(c, r);
		return;
	}
	auth_send_b64(c, CS_AUTH_USER, c->username, strlen(c->username));
}

static void on_auth_user(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 334) {
		client_abort(c, r);
		return;
	}
	auth_send_b64(c, CS_AUTH_PASS, c->password, strlen(c->password));
}

static void on_auth_pass(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code != 235) {
		client_abort(c, r);
		return;
	}
	open_done(c, NULL);
}

/* ---- the transaction (RFC 5321 §3.3, RFC 2920) ------------------------- */

static void txn_not_sent(struct txn *t, const char *why)
{
	for (size_t i = t->next; i < t->nrcpts; i++)
		smtp_reply_none(&t->res.rcpt[i], SMTP_NOREPLY_LOCAL, "not sent: %s", why);
	t->next = t->nrcpts;
	smtp_reply_none(&t->res.data, SMTP_NOREPLY_LOCAL, "not sent: %s", why);
}

static void on_rset(struct smtp_client *c, const struct smtp_reply *r)
{
	struct txn *t = &c->txn;

	if (r->code == 421) {
		client_abort(c, r);
		return;
	}
	/* Any other reply: MAIL's reply will tell whether the server is usable. */
	t->cur++;
	if (t->pipelined)
		await_reply(c, CS_MAIL);
	else
		txn_write_cmd(c, t->cur, CS_MAIL);
}

static void on_mail(struct smtp_client *c, const struct smtp_reply *r)
{
	struct txn *t = &c->txn;

	if (r->code == 421) {
		client_abort(c, r);
		return;
	}
	t->res.mail = *r;
	t->mail_ok = is_2xx(r->code);
	t->cur++;
	t->next = 0;
	if (t->pipelined) {
		/* The RCPTs and DATA are on their way: read their replies anyway. */
		await_reply(c, CS_RCPT);
		return;
	}
	if (!t->mail_ok) {
		txn_not_sent(t, "MAIL FROM was refused");
		txn_done(c);
		return;
	}
	txn_write_cmd(c, t->cur, CS_RCPT);
}

static void on_rcpt(struct smtp_client *c, const struct smtp_reply *r)
{
	struct txn *t = &c->txn;

	if (r->code == 421) {
		client_abort(c, r);
		return;
	}
	t->res.rcpt[t->next++] = *r;
	if (t->mail_ok && is_2xx(r->code))
		t->accepted++;
	t->cur++;
	if (t->next < t->nrcpts) {
		if (t->pipelined)
			await_reply(c, CS_RCPT);
		else
			txn_write_cmd(c, t->cur, CS_RCPT);
		return;
	}
	if (t->pipelined) {
		await_reply(c, CS_DATA);
		return;
	}
	if (t->accepted == 0) {
		smtp_reply_none(&t->res.data, SMTP_NOREPLY_LOCAL, "not sent: no recipient was accepted");
		txn_done(c);
		return;
	}
	txn_write_cmd(c, t->cur, CS_DATA);
}

static void on_data(struct smtp_client *c, const struct smtp_reply *r)
{
	struct txn *t = &c->txn;
	bool wanted = t->mail_ok && t->accepted > 0;

	if (r->code == 421) {
		client_abort(c, r);
		return;
	}
	if (r->code == 354 && wanted) {
		/* Bytes behind the 354 are a reply to a message not yet sent:
		 * taken as its result, they would count a mail never sent as
		 * delivered. */
		if (c->unread > 0) {
			struct smtp_reply why;
			smtp_reply_none(&why, SMTP_NOREPLY_PROTOCOL, "protocol error: the server replied before receiving the "
			           "message (data after its 354)");
			client_abort(c, &why);
			return;
		}
		write_data(c);
		return;
	}
	if (wanted && r->code < 400) {
		/* Only 354 lets the message go (RFC 5321 §4.1.1.4); any other
		 * positive answer, 250 above all, is not a delivery. */
		struct smtp_reply why;
		smtp_reply_none(&why, SMTP_NOREPLY_PROTOCOL, "protocol error: %d reply to DATA, expected 354", r->code);
		client_abort(c, &why);
		return;
	}
	if (wanted) {
		t->res.data = *r;
	} else {
		smtp_reply_none(&t->res.data, SMTP_NOREPLY_LOCAL, "not sent: %s",
		           t->mail_ok ? "no recipient was accepted" : "MAIL FROM was refused");
		/*
		 * RFC 2920 §3.1: a pipelined DATA that gets 354 although no
		 * recipient was accepted: end the (empty) message at once and
		 * ignore its reply.
		 */
		if (r->code == 354) {
			if (client_write(c, ".\r\n", 3) == 0)
				await_reply(c, CS_DOT_DISCARD);
			return;
		}
	}
	txn_done(c);
}

static void on_dot(struct smtp_client *c, const struct smtp_reply *r)
{
	if (io_queued(c) > 0 && r->code != 421) {
		/* The final reply came before the whole message left: it is not
		 * an answer to the message (a 5xx may still stop it early). */
		if (r->code < 400) {
			struct smtp_reply why;
			smtp_reply_none(&why, SMTP_NOREPLY_PROTOCOL, "protocol error: %d reply before the end of the message "
			           "was sent", r->code);
			client_abort(c, &why);
			return;
		}
	}
	c->txn.res.data = *r;
	if (r->code == 421) {
		/* RFC 5321 §3.8: the server closes after 421. */
		c->broken = true;
		close_conn(c);
	}
	txn_done(c);
}

static void on_dot_discard(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 421) {
		c->broken = true;
		close_conn(c);
	}
	txn_done(c);
}

static void on_quit(struct smtp_client *c, const struct smtp_reply *r)
{
	(void)r;
	close_conn(c);
}

/* ---- the step table --------------------------------------------------- */

static const struct client_step {
	const char *what;       /* "timeout waiting for the reply to <what>" */
	void (*on_reply)(struct smtp_client *c, const struct smtp_reply *r);
} steps[] = {
	[CS_CONNECT] = { "connect", NULL },
	[CS_TLS_WRAP] = { "TLS handshake", NULL },
	[CS_GREETING] = { "greeting", on_greeting },
	[CS_EHLO] = { "EHLO", on_ehlo },
	[CS_HELO] = { "HELO", on_helo },
	[CS_STARTTLS] = { "STARTTLS", on_starttls },
	[CS_TLS] = { "TLS handshake", NULL },
	[CS_AUTH_PLAIN] = { "AUTH", on_auth_plain },
	[CS_AUTH_LOGIN] = { "AUTH", on_auth_login },
	[CS_AUTH_USER] = { "AUTH", on_auth_user },
	[CS_AUTH_PASS] = { "AUTH", on_auth_pass },
	[CS_IDLE] = { "nothing", NULL },
	[CS_RSET] = { "RSET", on_rset },
	[CS_MAIL] = { "MAIL FROM", on_mail },
	[CS_RCPT] = { "RCPT TO", on_rcpt },
	[CS_DATA] = { "DATA", on_data },
	[CS_DOT] = { "the end of data", on_dot },
	[CS_DOT_DISCARD] = { "the end of data", on_dot_discard },
	[CS_QUIT] = { "QUIT", on_quit },
	[CS_CLOSED] = { "nothing", NULL },
};

static const char *step_name(enum client_state st)
{
	return steps[st].what;
}

/* ---- conn callbacks --------------------------------------------------- */

/* A sanitised excerpt of a bad line, for the error text. */
static void line_excerpt(char *dst, size_t cap, const char *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < cap && i < 60; i++) {
		unsigned char ch = (unsigned char)p[i];
		dst[o++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
	}
	dst[o] = '\0';
}

static void client_line(struct smtp_client *c, const char *line, size_t len)
{
	struct smtp_reply r;
	char ex[64];

	if (!steps[c->state].on_reply) {
		/* Nothing was asked (idle, or mid-handshake): the server misbehaves. */
		line_excerpt(ex, sizeof(ex), line, len);
		smtp_reply_none(&r, SMTP_NOREPLY_PROTOCOL, "protocol error: unexpected data from the server: \"%s\"", ex);
		client_abort(c, &r);
		return;
	}
	int rc = smtp_reply_parser_line(&c->parser, line, len);
	if (rc < 0) {
		line_excerpt(ex, sizeof(ex), line, len);
		if (c->parser.nlines >= SMTP_REPLY_LINES_MAX)
			smtp_reply_none(&r, SMTP_NOREPLY_PROTOCOL, "protocol error: reply to %s has more than %d lines",
			           step_name(c->state), SMTP_REPLY_LINES_MAX);
		else
			smtp_reply_none(&r, SMTP_NOREPLY_PROTOCOL, "protocol error: malformed reply to %s: \"%s\"",
			           step_name(c->state), ex);
		client_abort(c, &r);
		return;
	}
	if (c->state == CS_EHLO && c->parser.nlines > 1 && c->parser.r.code == 250 && len > 4)
		smtp_ehlo_line(&c->ehlo, line + 4, len - 4);
	if (rc == 0)
		return;
	r = c->parser.r;
	smtp_reply_parser_init(&c->parser);
	steps[c->state].on_reply(c, &r);
}

static void client_on_read(struct conn *cn, const char *p, size_t n)
{
	struct smtp_client *c = cn->data;

	while (n > 0 && c->state != CS_CLOSED) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;
		if (buf_append(&c->in, p, take) < 0) {
			struct smtp_reply r;
			smtp_reply_none(&r, SMTP_NOREPLY_PROTOCOL, "protocol error: reply line longer than %d octets",
			           SMTP_REPLY_LINE_MAX);
			client_abort(c, &r);
			return;
		}
		p += take;
		n -= take;
		if (!nl)
			return;
		/* RFC 5321 §2.3.8 wants CRLF; a bare LF is taken too (as Postfix does). */
		size_t len = c->in.len - 1;
		if (len > 0 && c->in.data[len - 1] == '\r')
			len--;
		c->unread = n;
		client_line(c, c->in.data, len);
		buf_reset(&c->in);
	}
}

static void client_on_eof(struct conn *cn, int status)
{
	struct smtp_client *c = cn->data;
	struct smtp_reply r;

	if (c->state == CS_CLOSED)
		return;
	if (c->state == CS_QUIT || c->state == CS_IDLE) {
		/* Nobody waits: the connection is just no longer usable. */
		c->broken = true;
		close_conn(c);
		return;
	}
	if (c->state == CS_TLS || c->state == CS_TLS_WRAP) {
		tls_failed(c, status == CONN_ETLS && c->conn.tls ? tls_engine_error(c->conn.tls)
		                                                 : "connection lost during the TLS handshake");
		return;
	}
	if (status == UV_EOF)
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "connection closed by the server while waiting for the reply to %s",
		           step_name(c->state));
	else if (status == CONN_ETLS)
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "TLS error while waiting for the reply to %s: %s", step_name(c->state),
		           c->conn.tls ? tls_engine_error(c->conn.tls) : "?");
	else
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "connection error while waiting for the reply to %s: %s",
		           step_name(c->state), uv_strerror(status));
	client_abort(c, &r);
}

static void client_on_tls(struct conn *cn, int status)
{
	struct smtp_client *c = cn->data;

	if (c->state != CS_TLS && c->state != CS_TLS_WRAP)
		return;
	if (status < 0) {
		tls_failed(c, cn->tls ? tls_engine_error(cn->tls) : "TLS handshake failed");
		return;
	}
	c->tls_on = true;
	if (c->state == CS_TLS_WRAP) {
		await_reply(c, CS_GREETING);
		return;
	}
	/* RFC 3207 §4.2: forget everything learnt before TLS; EHLO again. */
	send_ehlo(c);
}

static void client_on_timeout(struct conn *cn)
{
	struct smtp_client *c = cn->data;
	struct smtp_reply r;

	switch (c->state) {
	case CS_QUIT:
		close_conn(c);
		return;
	case CS_IDLE:
	case CS_CLOSED:
		return;
	case CS_CONNECT:
		smtp_reply_none(&r, SMTP_NOREPLY_NO_ANSWER, "timeout connecting to %s", c->relay);
		break;
	case CS_TLS:
	case CS_TLS_WRAP:
		tls_failed(c, "timeout in the TLS handshake");
		return;
	case CS_GREETING:
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "timeout waiting for the greeting");
		break;
	default:
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "timeout waiting for the reply to %s", step_name(c->state));
		break;
	}
	client_abort(c, &r);
}

static void client_free(struct smtp_client *c)
{
	free(c->host);
	free(c->helo);
	free(c->username);
	if (c->password) {
		OPENSSL_cleanse(c->password, strlen(c->password));
		free(c->password);
	}
	buf_free(&c->in);
	txn_release(&c->txn);
	SSL_CTX_free(c->tls_ctx);
	if (c->io && c->io->freed)
		c->io->freed(c->io_arg);
	void (*cb)(void *) = c->freed_cb;
	void *arg = c->freed_arg;
	free(c);
	if (cb)
		cb(arg);
}

static void client_on_close(struct conn *cn)
{
	struct smtp_client *c = cn->data;
	struct smtp_reply r;

	c->conn_open = false;
	c->state = CS_CLOSED;
	smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "connection closed by the caller");
	if (c->reconnect && !c->released) {
		c->reconnect = false;
		int rc = client_connect(c);
		if (rc == 0)
			return;
		smtp_reply_none(&r, SMTP_NOREPLY_NO_ANSWER, "cannot connect to %s: %s", c->relay, uv_strerror(rc));
		if (c->conn_open) {
			open_done(c, &r);   /* frees in the next on_close */
			return;
		}
	}
	c->in_close_cb = true;
	if (c->open_cb) {
		smtp_client_open_cb cb = c->open_cb;
		c->open_cb = NULL;
		c->released = true;
		cb(c, c->open_arg, &r);
	}
	if (c->txn.cb) {
		c->broken = true;
		txn_fill(&c->txn, c->closed_in, &r);
		txn_done(c);
	}
	c->in_close_cb = false;
	if (c->released)
		client_free(c);
}

static const struct conn_ops client_ops = {
	.on_read = client_on_read,
	.on_eof = client_on_eof,
	.on_tls = client_on_tls,
	.on_close = client_on_close,
	.on_timeout = client_on_timeout,
};

static void client_connected(uv_connect_t *req, int status)
{
	struct smtp_client *c = req->data;
	struct smtp_reply r;

	if (status == UV_ECANCELED || c->state != CS_CONNECT)
		return;      /* closed meanwhile (timeout, caller) */
	if (status < 0) {
		smtp_reply_none(&r, SMTP_NOREPLY_NO_ANSWER, "cannot connect to %s: %s", c->relay, uv_strerror(status));
		client_abort(c, &r);
		return;
	}
	int rc = c->io ? 0 : conn_read_start(&c->conn);
	if (rc < 0) {
		smtp_reply_none(&r, SMTP_NOREPLY_CONNECTION, "cannot read from %s: %s", c->relay, uv_strerror(rc));
		client_abort(c, &r);
		return;
	}
	if (c->tls == SCT_SMTPS) {
		/* RFC 8314 §3.3: TLS from the first byte. */
		c->state = CS_TLS_WRAP;
		io_timeout(c, c->timeout_ms);
		if (io_starttls(c) < 0)
			tls_failed(c, c->conn.tls ? tls_engine_error(c->conn.tls) : "cannot start TLS");
		return;
	}
	await_reply(c, CS_GREETING);
}


/* ---- the public interface --------------------------------------------- */

/* "host[ip]:port" (IPv6 without brackets of its own inside []). */
static void relay_name(struct smtp_client *c)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (c->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&c->addr;
		uv_ip6_name(s6, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&c->addr;
		uv_ip4_name(s4, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
	}
	snprintf(c->relay, sizeof(c->relay), "%.255s[%s]:%u", c->host ? c->host : ip, ip, port);
}

static int client_open(uv_loop_t *loop, const struct smtp_client_params *p,
                       const struct smtp_client_io *io, void *io_arg,
                       smtp_client_open_cb cb, void *arg, struct smtp_client **out)
{
	if ((!loop && !io) || !p || !cb || !out || !p->addr || !p->helo || !*p->helo ||
	    !cmd_safe(p->helo, false) || (p->host && !*p->host))
		return UV_EINVAL;
	if (p->addr->sa_family != AF_INET && p->addr->sa_family != AF_INET6)
		return UV_EAFNOSUPPORT;
	if (p->tls < SCT_NONE || p->tls > SCT_SMTPS)
		return UV_EINVAL;
	if (p->username && (strlen(p->username) > CRED_MAX ||
	                    (p->password && strlen(p->password) > CRED_MAX)))
		return UV_EINVAL;
	/* The modes that check the certificate need a name and a context that checks. */
	if ((p->tls == SCT_VERIFY || p->tls == SCT_SMTPS) &&
	    (!p->host || !p->tls_ctx || !(SSL_CTX_get_verify_mode(p->tls_ctx) & SSL_VERIFY_PEER)))
		return UV_EINVAL;

	struct smtp_client *c = calloc(1, sizeof(*c));
	if (!c)
		return UV_ENOMEM;
	c->loop = loop;
	c->io = io;
	c->io_arg = io_arg;
	memcpy(&c->addr, p->addr, p->addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                                         : sizeof(struct sockaddr_in));
	c->host = dup_or_null(p->host);
	c->helo = strdup(p->helo);
	c->username = dup_or_null(p->username);
	c->password = p->username ? strdup(p->password ? p->password : "") : NULL;
	c->tls = p->tls;
	c->connect_timeout_ms = p->connect_timeout_ms ? p->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	c->timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->data_timeout_ms = p->data_timeout_ms ? p->data_timeout_ms : DEFAULT_DATA_TIMEOUT_MS;
	buf_init(&c->in, SMTP_REPLY_LINE_MAX + 2);
	c->open_cb = cb;
	c->open_arg = arg;
	relay_name(c);
	if ((p->host && !c->host) || !c->helo || (p->username && (!c->username || !c->password)))
		goto nomem;
	if (p->tls != SCT_NONE) {
		if (p->tls_ctx) {
			SSL_CTX_up_ref(p->tls_ctx);
			c->tls_ctx = p->tls_ctx;
		} else {
			/* SCT_MAY, SCT_ENCRYPT: encryption without a certificate check. */
			char err[256];
			c->tls_ctx = tls_client_ctx_new(false, NULL, err, sizeof(err));
			if (!c->tls_ctx)
				goto nomem;
		}
	}

	int rc = client_connect(c);
	if (rc < 0) {
		c->open_cb = NULL;
		if (c->conn_open)
			c->released = true;   /* freed in on_close */
		else
			client_free(c);
		return rc;
	}
	*out = c;
	return 0;
nomem:
	c->io = NULL;      /* no freed() for a client the caller never had */
	client_free(c);
	return UV_ENOMEM;
}

int smtp_client_open(uv_loop_t *loop, const struct smtp_client_params *p,
                     smtp_client_open_cb cb, void *arg, struct smtp_client **out)
{
	if (!loop)
		return UV_EINVAL;
	return client_open(loop, p, NULL, NULL, cb, arg, out);
}

/* ---- a scripted transport (smtp_client.h) ------------------------------ */

int smtp_client_open_io(const struct smtp_client_params *p, const struct smtp_client_io *io,
                        void *io_arg, smtp_client_open_cb cb, void *arg,
                        struct smtp_client **out)
{
	if (!io || !io->connect || !io->write || !io->timeout || !io->starttls || !io->close)
		return UV_EINVAL;
	return client_open(NULL, p, io, io_arg, cb, arg, out);
}

void smtp_client_io_connected(struct smtp_client *c, int status)
{
	c->connect_req.data = c;
	client_connected(&c->connect_req, status);
}

void smtp_client_io_input(struct smtp_client *c, const char *p, size_t n)
{
	if (c->conn_open)
		client_on_read(&c->conn, p, n);
}

void smtp_client_io_eof(struct smtp_client *c, int status)
{
	if (c->conn_open)
		client_on_eof(&c->conn, status);
}

void smtp_client_io_tls(struct smtp_client *c, int status)
{
	if (c->conn_open)
		client_on_tls(&c->conn, status);
}

void smtp_client_io_timeout(struct smtp_client *c)
{
	if (c->conn_open)
		client_on_timeout(&c->conn);
}

void smtp_client_io_closed(struct smtp_client *c)
{
	if (c->conn_open)
		client_on_close(&c->conn);
}

/* Builds [RSET] MAIL RCPT... DATA into t->cmds with the boundaries in t->off. */
static int txn_build(struct smtp_client *c, struct txn *t, const struct smtp_client_msg *m)
{
	size_t k = 0;
	int rc = 0;

	t->ncmds = (c->need_rset ? 1 : 0) + 2 + m->nrcpts;
	t->off = calloc(t->ncmds + 1, sizeof(*t->off));
	t->res.rcpt = calloc(m->nrcpts, sizeof(*t->res.rcpt));
	if (!t->off || !t->res.rcpt)
		return UV_ENOMEM;
	buf_init(&t->cmds, CMDS_MAX);
	if (c->need_rset) {
		rc |= buf_appends(&t->cmds, "RSET\r\n");
		t->off[++k] = t->cmds.len;
	}
	rc |= buf_appendf(&t->cmds, "MAIL FROM:<%s>", m->from);
	/* RFC 1870 §6, RFC 6152 §2, RFC 6531 §3.4, RFC 3461 §4.4. */
	if (c->ehlo.ext & SMTP_EXT_SIZE)
		rc |= buf_appendf(&t->cmds, " SIZE=%zu", m->len);
	if (m->body_8bit && (c->ehlo.ext & SMTP_EXT_8BITMIME))
		rc |= buf_appends(&t->cmds, " BODY=8BITMIME");
	if (m->smtputf8)
		rc |= buf_appends(&t->cmds, " SMTPUTF8");
	if (m->envid && (c->ehlo.ext & SMTP_EXT_DSN)) {
		rc |= buf_appends(&t->cmds, " ENVID=");
		rc |= append_xtext(&t->cmds, m->envid);
	}
	rc |= buf_appends(&t->cmds, "\r\n");
	t->off[++k] = t->cmds.len;
	for (size_t i = 0; i < m->nrcpts; i++) {
		rc |= buf_appendf(&t->cmds, "RCPT TO:<%s>\r\n", m->rcpts[i]);
		t->off[++k] = t->cmds.len;
	}
	rc |= buf_appends(&t->cmds, "DATA\r\n");
	t->off[++k] = t->cmds.len;
	return rc ? UV_ENOMEM : 0;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m,
                     smtp_client_done_cb cb, void *arg)
{
	if (!c || !m || !cb || !m->from || m->nrcpts == 0 || !m->rcpts || (m->len && !m->data))
		return UV_EINVAL;
	if (c->released || c->broken || c->state == CS_CLOSED || c->state == CS_QUIT)
		return UV_ENOTCONN;
	if (c->state != CS_IDLE || c->txn.cb)
		return UV_EBUSY;
	/* Nothing the caller passes may smuggle a CRLF into the command stream. */
	if (!addr_safe(m->from))
		return UV_EINVAL;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i] || !*m->rcpts[i] || !addr_safe(m->rcpts[i]))
			return UV_EINVAL;

	struct txn t = { 0 };
	int rc = txn_build(c, &t, m);
	if (rc < 0) {
		txn_release(&t);
		return rc;
	}
	t.data = m->data;
	t.len = m->len;
	t.nrcpts = m->nrcpts;
	/* RFC 2920 §3.1: MAIL, RCPT and DATA in one group; DATA ends it. */
	t.pipelined = (c->ehlo.ext & SMTP_EXT_PIPELINING) != 0;
	size_t n = t.pipelined ? t.cmds.len : t.off[1];
	rc = io_write(c, t.cmds.data, n);
	if (rc < 0) {
		/* No callback for a call that fails: the connection is dead. */
		txn_release(&t);
		c->broken = true;
		close_conn(c);
		return rc;
	}
	t.cb = cb;
	t.arg = arg;
	c->txn = t;
	await_reply(c, c->need_rset ? CS_RSET : CS_MAIL);
	return 0;
}

void smtp_client_close(struct smtp_client *c)
{
	if (!c || c->released)
		return;
	c->released = true;
	if (!c->conn_open) {
		if (!c->in_close_cb)
			client_free(c);
		return;
	}
	/* RFC 5321 §4.1.1.10: say goodbye when idle; don't wait long for the 221. */
	if (c->state == CS_IDLE && !c->broken && io_write(c, "QUIT\r\n", 6) == 0) {
		c->state = CS_QUIT;
		io_timeout(c, c->timeout_ms < QUIT_WAIT_MS ? c->timeout_ms : QUIT_WAIT_MS);
		return;
	}
	close_conn(c);
}

void smtp_client_on_freed(struct smtp_client *c, void (*cb)(void *arg), void *arg)
{
	c->freed_cb = cb;
	c->freed_arg = arg;
}

bool smtp_client_tls_active(const struct smtp_client *c)
{
	return c->tls_on;
}

bool smtp_client_has(const struct smtp_client *c, const char *ext)
{
	return (c->ehlo.ext & smtp_ehlo_ext(ext)) != 0;
}

uint64_t smtp_client_size_limit(const struct smtp_client *c)
{
	return c->ehlo.size_limit;
}

const char *smtp_client_relay(const struct smtp_client *c)
{
	return c->relay;
}

bool smtp_client_alive(const struct smtp_client *c)
{
	return !c->broken && !c->released && c->state != CS_CLOSED && c->state != CS_QUIT;
}
