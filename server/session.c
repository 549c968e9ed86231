/*
 * NAME
 *	session - one SMTP session of the listener: input, replies, commands
 * SUMMARY
 *	The state machine of session.h: command lines are framed here and
 *	run through the command table; the table says in which states each
 *	verb may run and what it needs (EHLO, TLS, an AUTH database, no
 *	argument), so the sequence checks are in one place and a handler
 *	only does its own work. AUTH is in session_auth.c, the end of DATA
 *	and the queue commit in session_commit.c.
 * DESCRIPTION
 *	Replies are collected in an output buffer and written once per batch
 *	of input, so a pipelined client gets its replies in one packet. Three
 *	steps are asynchronous and stop input processing until they end: the
 *	queue commit after DATA (the 250 goes out only once the mail is on
 *	disk), the password check of AUTH, and the spill of a large message
 *	to the spool. Input that arrives meanwhile waits in a bounded
 *	buffer, and the host stops reading until the step is over
 *	(back-pressure).
 * TOUCHES
 *	Nothing but the session and what its host does for it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "proto/smtp_reply.h"
#include "server/session_int.h"
#include "util/eventlog.h"

/* ---- output ---------------------------------------------------------- */

const struct config *session_cfg(const struct session *s)
{
	return s->set->cfg;
}

void session_reply(struct session *s, const char *line)
{
	if (buf_append(&s->out, line, strlen(line)) < 0 || buf_append(&s->out, "\r\n", 2) < 0)
		s->out.len = 0; /* a client that never reads: drop, it is hung up below */
}

void session_replyf(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	session_reply(s, line);
}

static void session_close(struct session *s, bool flush)
{
	if (s->closing)
		return;
	s->closing = true;
	s->host->close(s->h, flush);
}

static void session_flush(struct session *s)
{
	if (s->out.len == 0 || s->closing)
		return;
	if (s->host->write(s->h, s->out.data, s->out.len) < 0)
		session_close(s, false);
	buf_reset(&s->out);
}

static void session_hangup(struct session *s, const char *line)
{
	if (line)
		session_reply(s, line);
	session_flush(s);
	session_close(s, true);
}

/* ---- log ------------------------------------------------------------- */

static json_t *jstr(const char *p)
{
	return p ? evlog_str(p, strlen(p)) : json_null();
}

/* The enhanced status code of a reply line: "554 5.7.1 ..." -> "5.7.1". */
static json_t *reply_status(const char *line)
{
	if (strlen(line) < 4)
		return json_null();
	const char *p = line + 4;
	size_t n = strcspn(p, " ");
	if (n == 0)
		return json_null();
	return json_stringn(p, n);
}

void session_log_rejected(struct session *s, const char *to, const char *line)
{
	json_t *f = json_object();
	json_object_set_new(f, "session", json_string(s->id));
	json_object_set_new(f, "client", json_string(s->ip));
	json_object_set_new(f, "from", s->state == S_MAIL || s->state == S_DATA
	                                   ? evlog_str(s->mail.addr, s->mail.addr_len)
	                                   : json_null());
	json_object_set_new(f, "to", jstr(to));
	json_object_set_new(f, "status", reply_status(line));
	json_object_set_new(f, "response", json_string(line));
	s->host->rejected(s->h, f);
}

/* Reply, and log the refusal when it ends a transaction step. */
static void refuse(struct session *s, const char *to, const char *line)
{
	session_reply(s, line);
	session_log_rejected(s, to, line);
}

/* ---- transaction ----------------------------------------------------- */

void session_txn_reset(struct session *s)
{
	memset(&s->mail, 0, sizeof(s->mail));
	if (s->rcpts)
		g_ptr_array_set_size(s->rcpts, 0);
	if (s->data_on) {
		smtp_data_free(&s->data);
		s->data_on = false;
	}
	buf_free(&s->msg);
	buf_free(&s->hdr);
	if (s->spill) {
		s->host->spill_free(s->h, s->spill);
		s->spill = NULL;
	}
	s->spilled = 0;
	s->qid[0] = '\0';
	if (s->state == S_MAIL || s->state == S_DATA)
		s->state = S_READY;
}

bool session_count_error(struct session *s)
{
	if (++s->errors >= SESSION_ERROR_LIMIT) {
		session_hangup(s, "421 4.7.0 Error: too many errors");
		return true;
	}
	return false;
}

bool session_count_auth_failure(struct session *s)
{
	if (++s->auth_failures >= SESSION_AUTH_FAIL_LIMIT) {
		session_hangup(s, R_AUTH_TOO_MANY);
		return true;
	}
	return session_count_error(s);
}

/* After a transaction, a draining session says goodbye. */
void session_maybe_drain(struct session *s)
{
	if (s->draining && s->wait == WAIT_NONE && s->state != S_MAIL && s->state != S_DATA) {
		char line[300];
		snprintf(line, sizeof(line), R_SHUTDOWN_FMT, session_cfg(s)->server.hostname);
		session_hangup(s, line);
	}
}

/*
 * SPEC §4: after a reload, the next mail of an open session follows the
 * new rules. Called where no transaction is open (EHLO/HELO, MAIL), so a
 * transaction never changes its rules half-way.
 */
static void settings_refresh(struct session *s)
{
	struct settings *cur = s->host->settings(s->h);
	if (!cur || cur == s->set)
		return;
	settings_ref(cur);
	settings_unref(s->set);
	s->set = cur;
}

/* ---- commands -------------------------------------------------------- */

static void helo_common(struct session *s, const struct smtp_cmd *c, bool esmtp)
{
	/* smtp_domain_valid() holds a name to SMTP_DOMAIN_MAX; the copy
	 * below checks it again rather than trust a distant promise. */
	if (c->arg_len == 0 || c->arg_len >= sizeof(s->helo) ||
	    !smtp_domain_valid(c->arg, c->arg_len, true)) {
		session_reply(s, R_SYNTAX_HELO);
		session_count_error(s);
		return;
	}
	session_txn_reset(s);
	settings_refresh(s);
	memcpy(s->helo, c->arg, c->arg_len);
	s->helo[c->arg_len] = '\0';
	s->esmtp = esmtp;
	s->tls_fresh = false;
	s->state = S_READY;
	const struct config *cfg = session_cfg(s);
	if (!esmtp) {
		session_replyf(s, R_HELO_FMT, cfg->server.hostname);
		return;
	}
	session_replyf(s, "250-%s", cfg->server.hostname);
	session_reply(s, "250-PIPELINING");
	session_replyf(s, "250-SIZE %llu", (unsigned long long)cfg->server.max_message_size);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->set->tls && !s->tls)
		session_reply(s, "250-STARTTLS");
	/* RFC 4954 §4: never offer a plain-text password over plain text. */
	if (s->set->auth && s->tls && !s->auth_user)
		session_reply(s, "250-AUTH PLAIN LOGIN");
	session_reply(s, "250 SMTPUTF8");
}

static void cmd_ehlo(struct session *s, const struct smtp_cmd *c)
{
	helo_common(s, c, true);
}

static void cmd_helo(struct session *s, const struct smtp_cmd *c)
{
	helo_common(s, c, false);
}

static const char *parse_status_reply(enum smtp_parse_status st)
{
	switch (st) {
	case SMTP_PARSE_OK: return NULL;
	case SMTP_PARSE_SYNTAX: return R_SYNTAX;
	case SMTP_PARSE_BAD_ADDRESS: return R_BAD_ADDRESS;
	case SMTP_PARSE_TOO_LONG: return R_ADDR_TOO_LONG;
	case SMTP_PARSE_UNKNOWN_PARAM: return R_UNKNOWN_PARAM;
	case SMTP_PARSE_BAD_PARAM: return R_BAD_PARAM;
	case SMTP_PARSE_NEED_SMTPUTF8: return R_NEED_SMTPUTF8;
	}
	return R_SYNTAX;
}

static void cmd_mail(struct session *s, const struct smtp_cmd *c)
{
	settings_refresh(s);
	struct smtp_mail_args m;
	enum smtp_parse_status st = smtp_mail_parse(c->arg, c->arg_len, &m);
	/* ESMTP parameters need EHLO (RFC 5321 §4.1.1.11 via RFC 1869). */
	if (st == SMTP_PARSE_OK && !s->esmtp && (m.size_given || m.body || m.smtputf8))
		st = SMTP_PARSE_UNKNOWN_PARAM;
	if (st != SMTP_PARSE_OK) {
		refuse(s, NULL, parse_status_reply(st));
		session_count_error(s);
		return;
	}
	if (m.size_given && m.size > session_cfg(s)->server.max_message_size) {
		refuse(s, NULL, R_SIZE_EXCEEDED);
		return;
	}
	/* A full spool is said at once, before the client sends the data. */
	if (!s->host->storage_ok(s->h, m.size_given ? m.size : 0)) {
		refuse(s, NULL, R_STORAGE);
		return;
	}
	s->mail = m;
	s->state = S_MAIL;
	session_reply(s, R_SENDER_OK);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c)
{
	struct smtp_rcpt_args r;
	enum smtp_parse_status st = smtp_rcpt_parse(c->arg, c->arg_len, s->mail.smtputf8, &r);
	if (st != SMTP_PARSE_OK) {
		refuse(s, NULL, parse_status_reply(st));
		session_count_error(s);
		return;
	}
	if (r.postmaster) {
		refuse(s, r.addr, R_NO_POSTMASTER);
		return;
	}
	const struct config *cfg = session_cfg(s);
	if (!s->allowed && !s->auth_user && !config_is_bounce_address(cfg, r.addr, NULL, NULL)) {
		refuse(s, r.addr, R_RELAY_DENIED);
		session_count_error(s);
		return;
	}
	for (unsigned i = 0; i < s->rcpts->len; i++) {
		if (strcasecmp(g_ptr_array_index(s->rcpts, i), r.addr) == 0) {
			session_reply(s, R_RCPT_OK); /* the same recipient twice gets one copy */
			return;
		}
	}
	if (s->rcpts->len >= cfg->server.max_recipients) {
		refuse(s, r.addr, R_TOO_MANY_RCPT);
		return;
	}
	g_ptr_array_add(s->rcpts, g_strndup(r.addr, r.addr_len));
	session_reply(s, R_RCPT_OK);
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
	if (s->rcpts->len == 0) {
		session_reply(s, R_NO_VALID_RCPT);
		return;
	}
	if (c->arg_len) {
		session_replyf(s, R_SYNTAX_NOARG_FMT, "DATA");
		return;
	}
	/* SPEC §5: a bounded part of the message in memory; the rest goes to
	 * the spool (session_data_spill()). One feed adds at most twice its
	 * input (a CR before every bare LF), one header line stays whole. */
	size_t keep = s->set->data_mem_max;
	if (keep < 2 * (SMTP_DATA_LINE_MAX + 2))
		keep = 2 * (SMTP_DATA_LINE_MAX + 2);
	buf_init(&s->msg, keep + 2 * SESSION_FEED_MAX + 64);
	smtp_data_init(&s->data, &s->msg, session_cfg(s)->server.max_message_size,
	               session_cfg(s)->server.bare_lf == BARE_LF_REJECT);
	s->data_on = true;
	s->state = S_DATA;
	session_reply(s, R_DATA_GO);
}

static void cmd_rset(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_txn_reset(s);
	session_reply(s, R_RESET_OK);
}

static void cmd_noop(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, R_NOOP_OK);
}

static void cmd_quit(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_replyf(s, R_BYE_FMT, session_cfg(s)->server.hostname);
	session_hangup(s, NULL);
}

static void cmd_vrfy(struct session *s, const struct smtp_cmd *c)
{
	session_reply(s, c->arg_len == 0 ? R_SYNTAX : R_VRFY);
}

static void cmd_expn(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, R_EXPN);
}

static void cmd_help(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, R_HELP);
}

static void cmd_bdat(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, R_BDAT);
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	session_reply(s, R_STARTTLS_GO);
	session_flush(s);
	/* RFC 3207 §4.2: forget everything learned before TLS. */
	session_txn_reset(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	s->state = S_TLS;
	if (!s->closing && s->host->starttls(s->h, s->set->tls) < 0)
		session_close(s, false);
}

/* ---- the command table ----------------------------------------------- */

/* States a verb may run in. */
#define IN_GREET (1u << S_GREET)
#define IN_READY (1u << S_READY)
#define IN_MAIL  (1u << S_MAIL)
#define IN_ANY   (IN_GREET | IN_READY | IN_MAIL)

/* What a verb needs, checked in this order before the state. */
enum {
	NEED_AUTH_DB = 1 << 0,  /* an auth_file:            503 5.5.1 not enabled */
	NEED_TLS_UP  = 1 << 1,  /* TLS is active:           530 5.7.0 */
	NEED_STARTTLS = 1 << 2, /* tls_cert/tls_key set:    502 5.5.1 */
	NEED_NO_TLS  = 1 << 3,  /* TLS not yet active:      503 5.5.1 */
	NO_ARG       = 1 << 4,  /* no argument:             501 5.5.4 */
	NEED_NOT_AUTHED = 1 << 5, /* not authenticated yet: 503 5.5.1 (after EHLO) */
};

static const struct command_def {
	enum smtp_verb verb;
	const char *name;            /* for "takes no argument" */
	unsigned states;             /* IN_*: where it may run */
	unsigned needs;
	const char *wrong_state;     /* the reply outside states (S_GREET: send HELO first) */
	void (*fn)(struct session *s, const struct smtp_cmd *c);
} commands[] = {
	{ SMTP_EHLO, "EHLO", IN_ANY, 0, NULL, cmd_ehlo },
	{ SMTP_HELO, "HELO", IN_ANY, 0, NULL, cmd_helo },
	{ SMTP_MAIL, "MAIL", IN_READY, 0, R_NESTED_MAIL, cmd_mail },
	{ SMTP_RCPT, "RCPT", IN_MAIL, 0, R_NEED_MAIL, cmd_rcpt },
	{ SMTP_DATA, "DATA", IN_MAIL, 0, R_NEED_MAIL, cmd_data },
	{ SMTP_RSET, "RSET", IN_ANY, NO_ARG, NULL, cmd_rset },
	{ SMTP_NOOP, "NOOP", IN_ANY, 0, NULL, cmd_noop },
	{ SMTP_QUIT, "QUIT", IN_ANY, 0, NULL, cmd_quit },
	{ SMTP_VRFY, "VRFY", IN_ANY, 0, NULL, cmd_vrfy },
	{ SMTP_EXPN, "EXPN", IN_ANY, 0, NULL, cmd_expn },
	{ SMTP_HELP, "HELP", IN_ANY, 0, NULL, cmd_help },
	{ SMTP_STARTTLS, "STARTTLS", IN_ANY, NEED_STARTTLS | NEED_NO_TLS | NO_ARG, NULL, cmd_starttls },
	{ SMTP_AUTH, "AUTH", IN_READY, NEED_AUTH_DB | NEED_TLS_UP | NEED_NOT_AUTHED, R_AUTH_IN_MAIL,
	  session_cmd_auth },
	{ SMTP_BDAT, "BDAT", IN_ANY, 0, NULL, cmd_bdat },
};

/* The sequence and precondition checks of every verb, in one place.
 * Returns the refusal to send, or NULL when the verb may run. */
static const char *command_refusal(struct session *s, const struct command_def *d,
                                   const struct smtp_cmd *c, char *buf, size_t cap)
{
	if ((d->needs & NEED_AUTH_DB) && !s->set->auth)
		return R_AUTH_UNAVAIL;
	if ((d->needs & NEED_TLS_UP) && !s->tls)
		return R_AUTH_NEED_TLS;
	if ((d->needs & NEED_STARTTLS) && !s->set->tls)
		return R_STARTTLS_UNAVAIL;
	if ((d->needs & NEED_NO_TLS) && s->tls)
		return R_STARTTLS_AGAIN;
	if ((d->needs & NO_ARG) && c->arg_len) {
		snprintf(buf, cap, R_SYNTAX_NOARG_FMT, d->name);
		return buf;
	}
	if (!(d->states & (1u << s->state))) {
		if (s->state == S_GREET)
			return s->tls_fresh ? R_NEED_EHLO_AFTER_TLS : R_NEED_HELO;
		if ((d->needs & NEED_NOT_AUTHED) && s->auth_user)
			return R_AUTH_ALREADY;
		return d->wrong_state;
	}
	if ((d->needs & NEED_NOT_AUTHED) && s->auth_user)
		return R_AUTH_ALREADY;
	return NULL;
}

static void command(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd c;
	if (smtp_cmd_parse(line, len, &c) < 0) {
		session_reply(s, R_SYNTAX);
		session_count_error(s);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command_def *d = &commands[i];
		if (d->verb != c.verb)
			continue;
		char buf[128];
		const char *no = command_refusal(s, d, &c, buf, sizeof(buf));
		if (no)
			session_reply(s, no);
		else
			d->fn(s, &c);
		return;
	}
	session_reply(s, R_UNKNOWN_CMD);
	session_count_error(s);
}

/* ---- input ----------------------------------------------------------- */

/* Consumes what it can of p[0..n) and returns how much (0: need more). */
static size_t session_step(struct session *s, const char *p, size_t n)
{
	if (s->state == S_DATA) {
		size_t used = 0;
		/* Bounded feeds: between two, the memory part may spill. */
		if (smtp_data_feed(&s->data, p, n > SESSION_FEED_MAX ? SESSION_FEED_MAX : n, &used))
			session_data_end(s);
		else
			session_data_spill(s);
		return used;
	}
	const char *lf = memchr(p, '\n', n);
	bool bare = false;
	if (session_cfg(s)->server.bare_lf == BARE_LF_REJECT) {
		/* RFC 5321 §2.3.8: only CRLF ends a line. A bare LF does not end
		 * the command, so "RCPT TO:<a@b>\nRCPT TO:<c@d>\r\n" is one
		 * line, refused whole, never two commands. */
		while (lf && (lf == p || lf[-1] != '\r')) {
			bare = true;
			lf = memchr(lf + 1, '\n', n - (size_t)(lf + 1 - p));
		}
	}
	if (!lf) {
		if (n > SESSION_CMD_LINE_MAX) {
			if (!s->skip_line) {
				session_reply(s, R_LINE_TOO_LONG);
				s->skip_line = true;
				session_count_error(s);
			}
			return n;
		}
		return 0;
	}
	size_t used = (size_t)(lf - p) + 1;
	size_t len = used - 1;
	if (s->skip_line) {
		s->skip_line = false;
		return used;
	}
	if (len > SESSION_CMD_LINE_MAX) {
		session_reply(s, R_LINE_TOO_LONG);
		session_count_error(s);
		return used;
	}
	if (bare) {
		s->lines++;
		session_reply(s, R_BARE_LF_CMD);
		session_count_error(s);
		return used;
	}
	if (len && p[len - 1] == '\r')
		len--;
	s->lines++;
	if (s->state == S_AUTH)
		session_auth_continue(s, p, len);
	else
		command(s, p, len);
	return used;
}

static void input(struct session *s, const char *p, size_t n)
{
	bool from_in = false;
	if (s->in.len) {
		if (buf_append(&s->in, p, n) < 0) {
			session_hangup(s, "421 4.7.0 Error: too much pipelined input");
			return;
		}
		p = s->in.data;
		n = s->in.len;
		from_in = true;
	}
	size_t off = 0;
	while (off < n && s->wait == WAIT_NONE && !s->closing) {
		/* Nothing is a command while the handshake runs (the host
		 * hands over plaintext only after it; fuzz_session found that
		 * a second STARTTLS would otherwise start another one). */
		if (s->state == S_TLS) {
			off = n;
			break;
		}
		size_t used = session_step(s, p + off, n - off);
		if (s->state == S_TLS) {
			/* RFC 3207 §4.2 and CVE-2011-0411: whatever the client
			 * sent after STARTTLS in the clear is thrown away. */
			off = n;
			break;
		}
		if (used == 0)
			break;
		off += used;
	}
	if (from_in) {
		buf_consume(&s->in, off);
	} else if (off < n && !s->closing) {
		if (buf_append(&s->in, p + off, n - off) < 0) {
			session_hangup(s, "421 4.7.0 Error: too much pipelined input");
			return;
		}
	}
	session_flush(s);
	if (!s->closing && s->out.len == 0 && s->host->write_queued(s->h) > SESSION_OUTPUT_MAX) {
		/* A client that does not read its replies: read no more from it
		 * until they have left (session_drained), so its replies
		 * cannot pile up. */
		s->write_blocked = true;
		s->host->read(s->h, false);
	}
	session_maybe_drain(s);
}

void session_input(struct session *s, const char *p, size_t n)
{
	if (s->closing)
		return;
	if (s->wait != WAIT_NONE) {
		if (buf_append(&s->in, p, n) < 0)
			session_hangup(s, "421 4.7.0 Error: too much pipelined input");
		s->host->read(s->h, false);
		return;
	}
	s->lines = 0;
	input(s, p, n);
	/* The timeout runs per command (RFC 5321 §4.5.3.2), not per byte: a
	 * client that drips a line one byte at a time has idle_timeout for
	 * the whole line. In DATA every chunk of the message counts. */
	if (!s->closing && (s->lines || s->state == S_DATA))
		s->host->timeout(s->h, session_cfg(s)->server.idle_timeout_ms);
}

void session_resume(struct session *s)
{
	if (s->closing)
		return;
	input(s, "", 0);
	if (s->wait == WAIT_NONE && !s->closing && !s->write_blocked) {
		s->host->read(s->h, true);
		s->host->timeout(s->h, session_cfg(s)->server.idle_timeout_ms);
	}
}

void session_drained(struct session *s)
{
	if (!s->write_blocked)
		return;
	s->write_blocked = false;
	if (s->wait == WAIT_NONE && !s->closing) {
		s->host->read(s->h, true);
		input(s, "", 0); /* what was read before the stop */
	}
}

void session_tls_done(struct session *s, int status)
{
	if (s->closing)
		return;
	if (status < 0) {
		session_close(s, false);
		return;
	}
	const char *d = s->host->tls_info(s->h);
	snprintf(s->tls_desc, sizeof(s->tls_desc), "%s", d ? d : "TLS");
	s->tls = true;
	s->state = S_GREET;
	s->tls_fresh = true;
}

void session_timeout(struct session *s)
{
	if (s->closing)
		return;
	if (s->wait != WAIT_NONE) {
		s->host->timeout(s->h, session_cfg(s)->server.idle_timeout_ms);
		return;
	}
	char line[300];
	snprintf(line, sizeof(line), R_TIMEOUT_FMT, session_cfg(s)->server.hostname);
	session_hangup(s, line);
}

void session_eof(struct session *s)
{
	session_close(s, false);
}

/* ---- life cycle ------------------------------------------------------ */

struct session *session_new(const struct session_host *host, void *hctx, const char *id,
                            const char *ip, bool allowed)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->host = host;
	s->h = hctx;
	s->set = host->settings(hctx);
	settings_ref(s->set);
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->ip, sizeof(s->ip), "%s", ip);
	s->allowed = allowed;
	s->rcpts = g_ptr_array_new_with_free_func(g_free);
	buf_init(&s->in, SESSION_CMD_LINE_MAX + SESSION_INPUT_MAX);
	buf_init(&s->out, SESSION_OUTPUT_MAX);
	s->state = S_GREET;
	return s;
}

void session_start(struct session *s)
{
	const struct config *cfg = session_cfg(s);
	session_replyf(s, R_GREETING_FMT, cfg->server.hostname);
	session_flush(s);
	if (s->closing)
		return;
	s->host->timeout(s->h, cfg->server.idle_timeout_ms);
	s->host->read(s->h, true);
}

static void session_free(struct session *s)
{
	const struct session_host *host = s->host;
	void *h = s->h;
	session_txn_reset(s);
	session_commit_release(s);
	if (s->rcpts)
		g_ptr_array_free(s->rcpts, TRUE);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->auth_user);
	explicit_bzero(s->auth_pending_user, sizeof(s->auth_pending_user));
	explicit_bzero(s->auth_login_user, sizeof(s->auth_login_user));
	settings_unref(s->set);
	free(s);
	host->gone(h);
}

void session_closed(struct session *s)
{
	s->closing = true;
	s->gone = true;
	if (s->wait == WAIT_NONE)
		session_free(s); /* else when the step returns (session_step_over) */
}

bool session_step_over(struct session *s)
{
	s->wait = WAIT_NONE;
	if (s->gone) {
		session_free(s);
		return true;
	}
	return false;
}

void session_drain(struct session *s)
{
	s->draining = true;
	if (s->state != S_DATA && s->state != S_MAIL && s->wait == WAIT_NONE)
		session_maybe_drain(s);
}

bool session_busy(const struct session *s)
{
	/* A spill may be cut short (nothing of that mail was answered); a
	 * commit may not: its 250 would be lost. */
	return s->wait == WAIT_COMMIT;
}

const char *session_id(const struct session *s)
{
	return s->id;
}
