/*
 * NAME
 *	session - one SMTP session of the listener
 * SUMMARY
 *	An explicit state machine (RFC 5321, RFC 2920 pipelining, RFC 3207
 *	STARTTLS, RFC 4954 AUTH) driven by the bytes util/conn.c delivers.
 *	The commands are a table: verb -> handler; each handler checks its
 *	own sequence and syntax and sends exactly one reply.
 * DESCRIPTION
 *	Replies are collected in an output buffer and written once per batch
 *	of input, so a pipelined client gets its replies in one packet. Two
 *	steps are asynchronous and stop input processing until they end: the
 *	queue commit after DATA (the 250 goes out only once the mail is on
 *	disk) and the password check of AUTH (crypt(3) on the thread pool).
 *	Input that arrives meanwhile waits in a bounded buffer, and the socket
 *	is not read until the step is over (back-pressure).
 *	DKIM (SPEC §5): when the settings hold [dkim] keys, the commit goes
 *	through queue_commit_prepend() and sign_on_worker() signs the mail on
 *	the queue's pool worker; received.dkim names the key, dkim_skipped
 *	says why a mail went unsigned.
 * TOUCHES
 *	Its connection, the queue (queue_commit, queue_commit_prepend), the
 *	event log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/clock.h"
#include "proto/smtp_cmd.h"
#include "proto/smtp_data.h"
#include "proto/smtp_reply.h"
#include "relay/dkim.h"
#include "relay/route.h"
#include "relay/runner.h"
#include "server/auth.h"
#include "server/server.h"
#include "util/conn.h"

#define CMD_LINE_MAX 4096             /* RFC 4954 §4 wants room for AUTH */
#define INPUT_MAX ((size_t)1 << 20)   /* pipelined input waiting for a step */
#define OUTPUT_MAX ((size_t)1 << 20)
#define ERROR_LIMIT 20                /* bad commands before we hang up */
#define HEADER_MAX 4096               /* the headers hikyaku adds */

enum sess_state {
	S_GREET,    /* no HELO/EHLO yet (again after STARTTLS) */
	S_READY,    /* HELO done, no transaction */
	S_MAIL,     /* MAIL accepted, collecting RCPT */
	S_DATA,     /* reading the message */
	S_TLS,      /* TLS handshake under way */
	S_AUTH,     /* waiting for an AUTH continuation line */
};

enum sess_wait { WAIT_NONE, WAIT_COMMIT, WAIT_AUTH };

enum auth_mech { MECH_PLAIN, MECH_LOGIN };

struct session_sign {
	struct dkim_keys *keys;    /* a reference; NULL: no signing asked for */
	enum route_kind route;
	char *field;               /* the DKIM-Signature field added, or NULL */
	size_t len;
	char dkim[320];            /* "DOMAIN SELECTOR" of the signature */
	char why[256];             /* why the mail went unsigned, or "" */
};

struct session {
	struct conn conn;
	struct server *srv;
	struct settings *set;
	struct session *prev, *next;
	char id[32];
	char ip[INET6_ADDRSTRLEN];
	bool allowed;             /* client in allow_networks */
	bool counted;             /* holds a per-client slot */
	bool listed;              /* on srv->sessions */
	enum sess_state state;
	enum sess_wait wait;
	bool gone;                /* connection closed while waiting */
	bool draining;            /* 421 after the current transaction */
	bool skip_line;           /* discarding an over-long command line */
	unsigned lines;           /* complete command lines in this read (timeouts) */
	bool write_blocked;       /* reading stopped until the replies drain */
	bool esmtp;
	bool tls_fresh;           /* TLS just started: EHLO must come again */
	unsigned errors;
	char helo[SMTP_DOMAIN_MAX + 1];
	char *auth_user;
	enum auth_mech auth_mech;
	char auth_login_user[256];
	char auth_pending_user[256];
	buf_t in;
	buf_t out;

	/* the transaction */
	struct smtp_mail_args mail;
	GPtrArray *rcpts;         /* char * */
	buf_t msg;
	buf_t hdr;
	struct smtp_data data;
	char qid[QUEUE_ID_LEN + 1];
	uint64_t arrival_ms;
	struct queue_envelope env;   /* during the commit */
	const char *warning;         /* for the received event */
	struct session_sign sign;    /* DKIM, during the commit */
};

static void session_input(struct session *s, const char *p, size_t n);

/* ---- DKIM signing in the commit (SPEC §5; relay/dkim.h) --------------
 * The queue calls sign_on_worker() on its thread-pool worker just before
 * it writes the mail; the field it returns goes in front of the message.
 * Only the worker writes here until commit_done() reads it on the loop. */
static void sign_on_worker(void *arg, const struct iovec *parts, size_t nparts, struct iovec *pre)
{
	struct session_sign *g = arg;
	const struct dkim_key *key;

	if (dkim_sign_mail(g->keys, parts, nparts, g->route, &g->field, &g->len, &key, g->why,
	                   sizeof(g->why)) == 1) {
		snprintf(g->dkim, sizeof(g->dkim), "%s %s", dkim_key_domain(key), dkim_key_selector(key));
		pre->iov_base = g->field;
		pre->iov_len = g->len;
	}
}

/* ---- output ---------------------------------------------------------- */

static void reply(struct session *s, const char *line)
{
	if (buf_append(&s->out, line, strlen(line)) < 0 || buf_append(&s->out, "\r\n", 2) < 0)
		s->out.len = 0; /* a client that never reads: drop, it is hung up below */
}

static void replyf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void replyf(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(s, line);
}

static void session_flush(struct session *s)
{
	if (s->out.len == 0 || s->conn.closing)
		return;
	if (conn_write(&s->conn, s->out.data, s->out.len) < 0)
		conn_close(&s->conn, false);
	buf_reset(&s->out);
}

static void session_hangup(struct session *s, const char *line)
{
	if (line)
		reply(s, line);
	session_flush(s);
	conn_close(&s->conn, true);
}

static const struct config *cfg_of(const struct session *s)
{
	return s->set->cfg;
}

/* ---- log ------------------------------------------------------------- */

static json_t *jstr(const char *p)
{
	return p ? evlog_str(p, strlen(p)) : json_null();
}

/* The enhanced status code of a reply line: "554 5.7.1 ..." -> "5.7.1". */
static json_t *reply_status(const char *line)
{
	const char *p = line + 4;
	size_t n = strcspn(p, " ");
	if (strlen(line) < 4 || n == 0)
		return json_null();
	return json_stringn(p, n);
}

static void log_rejected(struct session *s, const char *to, const char *line)
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
	evlog_emit(s->srv->log, "rejected", f);
	s->srv->stats.rejected++;
}

/* Reply, and log the refusal when it ends a transaction step. */
static void refuse(struct session *s, const char *to, const char *line)
{
	reply(s, line);
	log_rejected(s, to, line);
}

/* ---- transaction ----------------------------------------------------- */

static void txn_reset(struct session *s)
{
	memset(&s->mail, 0, sizeof(s->mail));
	if (s->rcpts)
		g_ptr_array_set_size(s->rcpts, 0);
	buf_free(&s->msg);
	buf_free(&s->hdr);
	s->qid[0] = '\0';
	if (s->state == S_MAIL || s->state == S_DATA)
		s->state = S_READY;
}

static bool count_error(struct session *s)
{
	if (++s->errors >= ERROR_LIMIT) {
		session_hangup(s, "421 4.7.0 Error: too many errors");
		return true;
	}
	return false;
}

/* After a transaction, a draining session says goodbye. */
static void maybe_drain(struct session *s)
{
	if (s->draining && s->wait == WAIT_NONE && s->state != S_MAIL && s->state != S_DATA) {
		char line[300];
		snprintf(line, sizeof(line), R_SHUTDOWN_FMT, cfg_of(s)->server.hostname);
		session_hangup(s, line);
	}
}

/* ---- commands -------------------------------------------------------- */

static void cmd_helo_common(struct session *s, const struct smtp_cmd *c, bool esmtp)
{
	if (c->arg_len == 0 || !smtp_domain_valid(c->arg, c->arg_len, true)) {
		reply(s, R_SYNTAX_HELO);
		count_error(s);
		return;
	}
	txn_reset(s);
	memcpy(s->helo, c->arg, c->arg_len);
	s->helo[c->arg_len] = '\0';
	s->esmtp = esmtp;
	s->tls_fresh = false;
	s->state = S_READY;
	const struct config *cfg = cfg_of(s);
	if (!esmtp) {
		replyf(s, R_HELO_FMT, cfg->server.hostname);
		return;
	}
	replyf(s, "250-%s", cfg->server.hostname);
	reply(s, "250-PIPELINING");
	replyf(s, "250-SIZE %llu", (unsigned long long)cfg->server.max_message_size);
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->set->tls && !conn_is_tls(&s->conn))
		reply(s, "250-STARTTLS");
	/* RFC 4954 §4: never offer a plain-text password over plain text. */
	if (s->set->auth && conn_is_tls(&s->conn) && !s->auth_user)
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 SMTPUTF8");
}

static void cmd_ehlo(struct session *s, const struct smtp_cmd *c)
{
	cmd_helo_common(s, c, true);
}

static void cmd_helo(struct session *s, const struct smtp_cmd *c)
{
	cmd_helo_common(s, c, false);
}

static bool need_helo(struct session *s)
{
	if (s->state != S_GREET)
		return false;
	reply(s, s->tls_fresh ? R_NEED_EHLO_AFTER_TLS : R_NEED_HELO);
	return true;
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
	if (need_helo(s))
		return;
	if (s->state == S_MAIL) {
		reply(s, R_NESTED_MAIL);
		return;
	}
	struct smtp_mail_args m;
	enum smtp_parse_status st = smtp_mail_parse(c->arg, c->arg_len, &m);
	/* ESMTP parameters need EHLO (RFC 5321 §4.1.1.11 via RFC 1869). */
	if (st == SMTP_PARSE_OK && !s->esmtp && (m.size_given || m.body || m.smtputf8))
		st = SMTP_PARSE_UNKNOWN_PARAM;
	if (st != SMTP_PARSE_OK) {
		refuse(s, NULL, parse_status_reply(st));
		count_error(s);
		return;
	}
	if (m.size_given && m.size > cfg_of(s)->server.max_message_size) {
		refuse(s, NULL, R_SIZE_EXCEEDED);
		return;
	}
	/* A full spool is said at once, before the client sends the data. */
	if (!server_storage_ok(s->srv, m.size_given ? m.size : 0)) {
		refuse(s, NULL, R_STORAGE);
		return;
	}
	s->mail = m;
	s->state = S_MAIL;
	reply(s, R_SENDER_OK);
}

static void cmd_rcpt(struct session *s, const struct smtp_cmd *c)
{
	if (need_helo(s))
		return;
	if (s->state != S_MAIL) {
		reply(s, R_NEED_MAIL);
		return;
	}
	struct smtp_rcpt_args r;
	enum smtp_parse_status st = smtp_rcpt_parse(c->arg, c->arg_len, s->mail.smtputf8, &r);
	if (st != SMTP_PARSE_OK) {
		refuse(s, NULL, parse_status_reply(st));
		count_error(s);
		return;
	}
	if (r.postmaster) {
		refuse(s, r.addr, R_NO_POSTMASTER);
		return;
	}
	const struct config *cfg = cfg_of(s);
	if (!s->allowed && !s->auth_user && !config_is_bounce_address(cfg, r.addr, NULL, NULL)) {
		refuse(s, r.addr, R_RELAY_DENIED);
		count_error(s);
		return;
	}
	for (unsigned i = 0; i < s->rcpts->len; i++) {
		if (strcasecmp(g_ptr_array_index(s->rcpts, i), r.addr) == 0) {
			reply(s, R_RCPT_OK); /* the same recipient twice gets one copy */
			return;
		}
	}
	if (s->rcpts->len >= cfg->server.max_recipients) {
		refuse(s, r.addr, R_TOO_MANY_RCPT);
		return;
	}
	g_ptr_array_add(s->rcpts, g_strndup(r.addr, r.addr_len));
	reply(s, R_RCPT_OK);
}

static void cmd_data(struct session *s, const struct smtp_cmd *c)
{
	if (need_helo(s))
		return;
	if (s->state != S_MAIL) {
		reply(s, R_NEED_MAIL);
		return;
	}
	if (s->rcpts->len == 0) {
		reply(s, R_NO_VALID_RCPT);
		return;
	}
	if (c->arg_len) {
		replyf(s, R_SYNTAX_NOARG_FMT, "DATA");
		return;
	}
	uint64_t max = cfg_of(s)->server.max_message_size;
	buf_init(&s->msg, (size_t)max + SMTP_DATA_LINE_MAX + 2);
	smtp_data_init(&s->data, &s->msg, max, cfg_of(s)->server.bare_lf == BARE_LF_REJECT);
	s->state = S_DATA;
	reply(s, R_DATA_GO);
}

static void cmd_rset(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len) {
		replyf(s, R_SYNTAX_NOARG_FMT, "RSET");
		return;
	}
	txn_reset(s);
	reply(s, R_RESET_OK);
}

static void cmd_noop(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, R_NOOP_OK);
}

static void cmd_quit(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	replyf(s, R_BYE_FMT, cfg_of(s)->server.hostname);
	session_hangup(s, NULL);
}

static void cmd_vrfy(struct session *s, const struct smtp_cmd *c)
{
	if (c->arg_len == 0) {
		reply(s, R_SYNTAX);
		return;
	}
	reply(s, R_VRFY);
}

static void cmd_expn(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, R_EXPN);
}

static void cmd_help(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, R_HELP);
}

static void cmd_bdat(struct session *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, R_BDAT);
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *c)
{
	if (!s->set->tls) {
		reply(s, R_STARTTLS_UNAVAIL);
		return;
	}
	if (s->conn.tls) {
		reply(s, R_STARTTLS_AGAIN);
		return;
	}
	if (c->arg_len) {
		replyf(s, R_SYNTAX_NOARG_FMT, "STARTTLS");
		return;
	}
	reply(s, R_STARTTLS_GO);
	session_flush(s);
	/* RFC 3207 §4.2: forget everything learned before TLS. */
	txn_reset(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	s->state = S_TLS;
	if (conn_starttls(&s->conn, s->set->tls, true, NULL) < 0)
		conn_close(&s->conn, false);
}

/* ---- AUTH ------------------------------------------------------------ */

static void auth_done(void *arg, bool ok);

static void auth_check(struct session *s, const char *user, const char *pass)
{
	snprintf(s->auth_pending_user, sizeof(s->auth_pending_user), "%s", user);
	s->state = S_READY;
	s->wait = WAIT_AUTH;
	conn_read_stop(&s->conn);
	if (auth_verify(s->srv->loop, s->set->auth, user, pass, auth_done, s) < 0) {
		s->wait = WAIT_NONE;
		reply(s, R_AUTH_FAILED);
		conn_read_start(&s->conn);
	}
}

static void auth_plain(struct session *s, const char *b64, size_t len)
{
	char authz[256], user[256], pass[256];
	if (smtp_auth_plain_decode(b64, len, authz, user, pass, sizeof(user)) < 0) {
		s->state = S_READY;
		reply(s, R_AUTH_BAD_B64);
		return;
	}
	/* SPEC §5: the authorization id may be empty or the user's own. */
	if (authz[0] && strcmp(authz, user) != 0) {
		s->state = S_READY;
		reply(s, R_AUTH_FAILED);
		explicit_bzero(pass, sizeof(pass));
		return;
	}
	auth_check(s, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

static bool auth_decode(struct session *s, const char *b64, size_t len, char *out, size_t cap)
{
	long n = smtp_base64_decode(b64, len, (unsigned char *)out, cap - 1);
	if (n < 0 || memchr(out, '\0', (size_t)n)) {
		s->state = S_READY;
		reply(s, R_AUTH_BAD_B64);
		return false;
	}
	out[n] = '\0';
	return true;
}

static void cmd_auth(struct session *s, const struct smtp_cmd *c)
{
	if (!s->set->auth) {
		reply(s, R_AUTH_UNAVAIL);
		return;
	}
	if (!conn_is_tls(&s->conn)) {
		reply(s, R_AUTH_NEED_TLS);
		return;
	}
	if (need_helo(s))
		return;
	if (s->auth_user) {
		reply(s, R_AUTH_ALREADY);
		return;
	}
	if (s->state == S_MAIL) {
		reply(s, R_AUTH_IN_MAIL);
		return;
	}
	const char *sp = memchr(c->arg, ' ', c->arg_len);
	size_t mlen = sp ? (size_t)(sp - c->arg) : c->arg_len;
	const char *ir = sp ? sp + 1 : NULL;
	size_t irlen = sp ? c->arg_len - mlen - 1 : 0;
	if (mlen == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0) {
		s->auth_mech = MECH_PLAIN;
		if (!ir) {
			s->state = S_AUTH;
			reply(s, R_AUTH_CONTINUE);
		} else {
			auth_plain(s, ir, irlen);
		}
	} else if (mlen == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0) {
		s->auth_mech = MECH_LOGIN;
		s->auth_login_user[0] = '\0';
		s->state = S_AUTH;
		if (!ir) {
			reply(s, R_AUTH_USERNAME);
		} else if (auth_decode(s, ir, irlen, s->auth_login_user,
		                       sizeof(s->auth_login_user))) {
			s->state = S_AUTH;
			reply(s, R_AUTH_PASSWORD);
		}
	} else {
		reply(s, R_AUTH_MECH);
	}
}

static void auth_continue(struct session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		s->state = S_READY;
		reply(s, R_AUTH_CANCELLED);
		return;
	}
	if (s->auth_mech == MECH_PLAIN) {
		auth_plain(s, line, len);
		return;
	}
	if (!s->auth_login_user[0]) {
		if (auth_decode(s, line, len, s->auth_login_user, sizeof(s->auth_login_user))) {
			if (!s->auth_login_user[0])
				s->auth_login_user[0] = '\0';
			reply(s, R_AUTH_PASSWORD);
		}
		return;
	}
	char pass[256];
	if (auth_decode(s, line, len, pass, sizeof(pass)))
		auth_check(s, s->auth_login_user, pass);
	explicit_bzero(pass, sizeof(pass));
}

static void session_free(struct session *s);
static void session_resume(struct session *s);

static void auth_done(void *arg, bool ok)
{
	struct session *s = arg;
	s->wait = WAIT_NONE;
	if (s->gone) {
		session_free(s);
		return;
	}
	if (ok) {
		s->auth_user = strdup(s->auth_pending_user);
		reply(s, R_AUTH_OK);
	} else {
		reply(s, R_AUTH_FAILED);
		count_error(s);
	}
	explicit_bzero(s->auth_pending_user, sizeof(s->auth_pending_user));
	session_resume(s);
}

/* ---- the command table ----------------------------------------------- */

static const struct command_def {
	enum smtp_verb verb;
	void (*fn)(struct session *s, const struct smtp_cmd *c);
} commands[] = {
	{ SMTP_EHLO, cmd_ehlo },
	{ SMTP_HELO, cmd_helo },
	{ SMTP_MAIL, cmd_mail },
	{ SMTP_RCPT, cmd_rcpt },
	{ SMTP_DATA, cmd_data },
	{ SMTP_RSET, cmd_rset },
	{ SMTP_NOOP, cmd_noop },
	{ SMTP_QUIT, cmd_quit },
	{ SMTP_VRFY, cmd_vrfy },
	{ SMTP_EXPN, cmd_expn },
	{ SMTP_HELP, cmd_help },
	{ SMTP_STARTTLS, cmd_starttls },
	{ SMTP_AUTH, cmd_auth },
	{ SMTP_BDAT, cmd_bdat },
};

static void command(struct session *s, const char *line, size_t len)
{
	struct smtp_cmd c;
	if (smtp_cmd_parse(line, len, &c) < 0) {
		reply(s, R_SYNTAX);
		count_error(s);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (commands[i].verb == c.verb) {
			commands[i].fn(s, &c);
			return;
		}
	}
	reply(s, R_UNKNOWN_CMD);
	count_error(s);
}

/* ---- end of DATA: the queue commit ----------------------------------- */

static const char *data_error_reply(enum smtp_data_error e)
{
	switch (e) {
	case SMTP_DATA_OK: return NULL;
	case SMTP_DATA_BARE_CR: return R_BARE_CR;
	case SMTP_DATA_NUL: return R_NUL;
	case SMTP_DATA_LONG_LINE: return R_LONG_LINE;
	case SMTP_DATA_BARE_LF: return R_BARE_LF;
	case SMTP_DATA_TOO_BIG: return R_SIZE_EXCEEDED;
	case SMTP_DATA_NOMEM: return R_STORAGE;
	}
	return R_LOCAL_ERROR;
}

/* The value of a header field found by smtp_data, unfolded and trimmed. */
static char *field_value(const buf_t *msg, size_t off, size_t len)
{
	if (len == 0)
		return NULL;
	const char *p = msg->data + off;
	const char *colon = memchr(p, ':', len);
	if (!colon)
		return NULL;
	GString *v = g_string_sized_new(len);
	for (const char *q = colon + 1; q < p + len; q++)
		if (*q != '\r' && *q != '\n')
			g_string_append_c(v, *q);
	g_strstrip(v->str);
	/* Raw 8-bit headers (Shift_JIS from an old shop system) are not
	 * UTF-8; this copy only informs the log and the envelope, so it is
	 * made valid rather than refused. The message itself is untouched. */
	char *valid = g_utf8_make_valid(v->str, -1);
	char *out = strdup(valid);
	g_free(valid);
	g_string_free(v, TRUE);
	return out;
}

static const char *received_protocol(const struct session *s)
{
	/* RFC 3848 and RFC 6531 §3.7.3 "with" keywords. */
	bool tls = conn_is_tls(&s->conn), auth = s->auth_user != NULL;
	if (s->mail.smtputf8)
		return tls ? (auth ? "UTF8SMTPSA" : "UTF8SMTPS") : (auth ? "UTF8SMTPA" : "UTF8SMTP");
	if (!s->esmtp)
		return "SMTP";
	return tls ? (auth ? "ESMTPSA" : "ESMTPS") : (auth ? "ESMTPA" : "ESMTP");
}

static void rfc5322_date(char *out, size_t cap, time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, cap, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static void build_headers(struct session *s)
{
	const struct config *cfg = cfg_of(s);
	char date[64];
	rfc5322_date(date, sizeof(date), (time_t)(s->arrival_ms / 1000));
	buf_init(&s->hdr, HEADER_MAX);
	buf_appendf(&s->hdr, "Received: from %s ([%s])\r\n", s->helo, s->ip);
	if (conn_is_tls(&s->conn))
		buf_appendf(&s->hdr, "\t(using %s)\r\n", tls_engine_describe(s->conn.tls));
	buf_appendf(&s->hdr, "\tby %s (hikyaku) with %s id %s", cfg->server.hostname,
	            received_protocol(s), s->qid);
	/* Naming the recipient of a multi-recipient mail would disclose the
	 * others' presence to each of them. */
	if (s->rcpts->len == 1)
		buf_appendf(&s->hdr, "\r\n\tfor <%s>", (char *)g_ptr_array_index(s->rcpts, 0));
	buf_appendf(&s->hdr, "; %s\r\n", date);
	if (!s->data.has_date)
		buf_appendf(&s->hdr, "Date: %s\r\n", date);
	if (!s->data.has_message_id)
		buf_appendf(&s->hdr, "Message-ID: <%s@%s>\r\n", s->qid, cfg->server.hostname);
}

static void commit_done(void *arg, int status);
static void env_release(struct session *s);

/* A refused message: one reply, one rejected event per recipient. */
static void refuse_message(struct session *s, const char *line)
{
	reply(s, line);
	for (unsigned i = 0; i < s->rcpts->len; i++)
		log_rejected(s, g_ptr_array_index(s->rcpts, i), line);
}

/* The queue could not take the message (SPEC §5: 452 4.3.1 when full). */
static void commit_refused(struct session *s, int status)
{
	fprintf(stderr, "hikyaku: queue commit failed: %s\n", strerror(-status));
	refuse_message(s, status == -ENOSPC || status == -EDQUOT ? R_STORAGE : R_LOCAL_ERROR);
}

static void data_end(struct session *s)
{
	const char *err = data_error_reply(s->data.error);
	if (err) {
		refuse_message(s, err);
		txn_reset(s);
		maybe_drain(s);
		return;
	}
	if (!server_storage_ok(s->srv, s->msg.len)) {
		refuse_message(s, R_STORAGE);
		txn_reset(s);
		maybe_drain(s);
		return;
	}
	s->arrival_ms = clock_now_ms();
	queue_new_id(s->srv->queue, s->qid);
	build_headers(s);

	struct queue_envelope *env = &s->env;
	memset(env, 0, sizeof(*env));
	memcpy(env->id, s->qid, sizeof(env->id));
	env->arrival_ms = s->arrival_ms;
	env->session = s->id;
	env->from = s->mail.addr;
	env->nrcpts = s->rcpts->len;
	env->rcpts = calloc(env->nrcpts, sizeof(*env->rcpts));
	for (size_t i = 0; i < env->nrcpts && env->rcpts; i++)
		env->rcpts[i].addr = g_ptr_array_index(s->rcpts, i);
	env->client_ip = s->ip;
	env->helo = s->helo;
	env->tls = conn_is_tls(&s->conn) ? (char *)tls_engine_describe(s->conn.tls) : NULL;
	env->auth_user = s->auth_user;
	env->smtputf8 = s->mail.smtputf8;
	env->body_8bit = s->data.has_8bit;
	env->size = s->hdr.len + s->msg.len;
	env->header_from = field_value(&s->msg, s->data.from_off, s->data.from_len);
	env->message_id = field_value(&s->msg, s->data.msgid_off, s->data.msgid_len);

	/* SPEC §4: the route is decided once, now, and kept with the mail. */
	const struct config *cfg = cfg_of(s);
	struct route_decision rd;
	route_decide(cfg, s->mail.addr, env->header_from,
	             env->header_from ? strlen(env->header_from) : 0, s->data.n_from, &rd);
	env->route = (char *)route_name(rd.route);
	memset(&s->sign, 0, sizeof(s->sign));
	if (dkim_keys_count(s->set->dkim)) {
		s->sign.keys = dkim_keys_ref(s->set->dkim);
		s->sign.route = rd.route;
	}
	env->matched = rd.matched ? rd.matched->entry : NULL;
	/* The service verifies the envelope sender too (SPEC §3 envelope_from). */
	s->warning = NULL;
	if (rd.route == ROUTE_SERVICE && !cfg->service.envelope_from &&
	    !route_match(cfg, s->mail.addr))
		s->warning = "the envelope sender matches no verified entry; the delivery "
		             "service may refuse it (set [service] envelope_from)";
	route_decision_free(&rd);

	uv_buf_t parts[2] = {
		uv_buf_init(s->hdr.data, (unsigned)s->hdr.len),
		uv_buf_init(s->msg.data ? s->msg.data : (char *)"", (unsigned)s->msg.len),
	};
	s->wait = WAIT_COMMIT;
	conn_read_stop(&s->conn);
	int rc = env->rcpts ? queue_commit_prepend(s->srv->queue, env, parts, 2,
	                                           s->sign.keys ? sign_on_worker : NULL, &s->sign,
	                                           commit_done, s) : -ENOMEM;
	if (rc == 0)
		s->srv->committing_bytes += env->size;
	if (rc < 0) {
		/* Answered here, inside the input loop: no resume, which would
		 * re-enter it (the loop goes on by itself). */
		s->wait = WAIT_NONE;
		commit_refused(s, rc);
		env_release(s);
		txn_reset(s);
		conn_read_start(&s->conn);
	}
}

static void log_received(struct session *s)
{
	const struct queue_envelope *env = &s->env;
	json_t *f = json_object();
	json_object_set_new(f, "queue_id", json_string(s->qid));
	json_object_set_new(f, "session", json_string(s->id));
	json_object_set_new(f, "client", json_string(s->ip));
	json_object_set_new(f, "helo", jstr(s->helo));
	json_object_set_new(f, "from", evlog_str(s->mail.addr, s->mail.addr_len));
	json_object_set_new(f, "header_from", jstr(env->header_from));
	json_object_set_new(f, "message_id", jstr(env->message_id));
	json_object_set_new(f, "rcpts", json_integer(s->rcpts->len));
	json_object_set_new(f, "size", json_integer((json_int_t)env->size));
	json_object_set_new(f, "tls", json_boolean(conn_is_tls(&s->conn)));
	json_object_set_new(f, "route", jstr(env->route));
	json_object_set_new(f, "matched", jstr(env->matched));
	json_object_set_new(f, "dkim", s->sign.field ? json_string(s->sign.dkim) : json_null());
	if (!s->sign.field && s->sign.why[0])
		json_object_set_new(f, "dkim_skipped", evlog_str(s->sign.why, strlen(s->sign.why)));
	if (s->warning)
		json_object_set_new(f, "warning", json_string(s->warning));
	evlog_emit(s->srv->log, "received", f);
}

static void env_release(struct session *s)
{
	free(s->env.rcpts);
	free(s->env.header_from);
	free(s->env.message_id);
	memset(&s->env, 0, sizeof(s->env));
	free(s->sign.field);
	dkim_keys_unref(s->sign.keys);
	memset(&s->sign, 0, sizeof(s->sign));
}

static void commit_done(void *arg, int status)
{
	struct session *s = arg;
	s->wait = WAIT_NONE;
	s->srv->committing_bytes -= s->env.size;
	s->env.size += s->sign.len;     /* the DKIM-Signature field, if any */
	if (status == 0) {
		s->srv->stats.received++;
		log_received(s);
		if (s->srv->runner)
			runner_add(s->srv->runner, &s->env);
	}
	env_release(s);
	if (s->gone) {
		session_free(s);
		return;
	}
	if (status == 0) {
		replyf(s, R_QUEUED_FMT, s->qid);
	} else {
		commit_refused(s, status);
	}
	txn_reset(s);
	if (s->draining) {
		maybe_drain(s); /* the 250, then 421: no further transaction */
		return;
	}
	session_resume(s);
}

/* ---- input ----------------------------------------------------------- */

/* Consumes what it can of p[0..n) and returns how much (0: need more). */
static size_t session_step(struct session *s, const char *p, size_t n)
{
	if (s->state == S_DATA) {
		size_t used = 0;
		if (smtp_data_feed(&s->data, p, n, &used))
			data_end(s);
		return used;
	}
	const char *lf = memchr(p, '\n', n);
	bool bare = false;
	if (cfg_of(s)->server.bare_lf == BARE_LF_REJECT) {
		/* RFC 5321 §2.3.8: only CRLF ends a line. A bare LF does not end
		 * the command, so "RCPT TO:<a@b>\nRCPT TO:<c@d>\r\n" is one
		 * line, refused whole, never two commands. */
		while (lf && (lf == p || lf[-1] != '\r')) {
			bare = true;
			lf = memchr(lf + 1, '\n', n - (size_t)(lf + 1 - p));
		}
	}
	if (!lf) {
		if (n > CMD_LINE_MAX) {
			if (!s->skip_line) {
				reply(s, R_LINE_TOO_LONG);
				s->skip_line = true;
				count_error(s);
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
	if (len > CMD_LINE_MAX) {
		reply(s, R_LINE_TOO_LONG);
		count_error(s);
		return used;
	}
	if (bare) {
		s->lines++;
		reply(s, R_BARE_LF_CMD);
		count_error(s);
		return used;
	}
	if (len && p[len - 1] == '\r')
		len--;
	s->lines++;
	if (s->state == S_AUTH)
		auth_continue(s, p, len);
	else
		command(s, p, len);
	return used;
}

static void session_input(struct session *s, const char *p, size_t n)
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
	while (off < n && s->wait == WAIT_NONE && !s->conn.closing) {
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
	} else if (off < n && !s->conn.closing) {
		if (buf_append(&s->in, p + off, n - off) < 0) {
			session_hangup(s, "421 4.7.0 Error: too much pipelined input");
			return;
		}
	}
	session_flush(s);
	if (s->out.len == 0 && s->conn.write_queued > OUTPUT_MAX) {
		/* A client that does not read its replies: read no more from it
		 * until they have left (on_drain), so its replies cannot pile up. */
		s->write_blocked = true;
		conn_read_stop(&s->conn);
	}
	maybe_drain(s);
}

static void on_drain(struct conn *c)
{
	struct session *s = c->data;
	if (!s->write_blocked)
		return;
	s->write_blocked = false;
	if (s->wait == WAIT_NONE && !c->closing) {
		conn_read_start(c);
		session_input(s, "", 0); /* what was read before the stop */
	}
}

static void session_resume(struct session *s)
{
	if (s->conn.closing)
		return;
	session_input(s, "", 0);
	if (s->wait == WAIT_NONE && !s->conn.closing && !s->write_blocked) {
		conn_read_start(&s->conn);
		conn_timeout(&s->conn, cfg_of(s)->server.idle_timeout_ms);
	}
}

/* ---- connection callbacks -------------------------------------------- */

static void on_read(struct conn *c, const char *p, size_t n)
{
	struct session *s = c->data;
	if (s->wait != WAIT_NONE) {
		if (buf_append(&s->in, p, n) < 0)
			session_hangup(s, "421 4.7.0 Error: too much pipelined input");
		conn_read_stop(c);
		return;
	}
	s->lines = 0;
	session_input(s, p, n);
	/* The timeout runs per command (RFC 5321 §4.5.3.2), not per byte: a
	 * client that drips a line one byte at a time has idle_timeout for
	 * the whole line. In DATA every chunk of the message counts. */
	if (!c->closing && (s->lines || s->state == S_DATA))
		conn_timeout(c, cfg_of(s)->server.idle_timeout_ms);
}

static void on_eof(struct conn *c, int status)
{
	(void)status;
	conn_close(c, false);
}

static void on_tls(struct conn *c, int status)
{
	struct session *s = c->data;
	if (status < 0) {
		fprintf(stderr, "hikyaku: session %s client %s: %s\n", s->id, s->ip,
		        tls_engine_error(c->tls));
		conn_close(c, false);
		return;
	}
	s->state = S_GREET;
	s->tls_fresh = true;
}

static void on_timeout(struct conn *c)
{
	struct session *s = c->data;
	if (s->wait != WAIT_NONE) {
		conn_timeout(c, cfg_of(s)->server.idle_timeout_ms);
		return;
	}
	char line[300];
	snprintf(line, sizeof(line), R_TIMEOUT_FMT, cfg_of(s)->server.hostname);
	session_hangup(s, line);
}

static void session_free(struct session *s)
{
	txn_reset(s);
	if (s->rcpts)
		g_ptr_array_free(s->rcpts, TRUE);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->auth_user);
	settings_unref(s->set);
	free(s);
}

static void on_close(struct conn *c)
{
	struct session *s = c->data;
	struct server *srv = s->srv;
	if (s->counted) {
		gpointer n = g_hash_table_lookup(srv->per_client, s->ip);
		if (GPOINTER_TO_UINT(n) <= 1)
			g_hash_table_remove(srv->per_client, s->ip);
		else
			g_hash_table_insert(srv->per_client, g_strdup(s->ip),
			                    GUINT_TO_POINTER(GPOINTER_TO_UINT(n) - 1));
	}
	if (s->listed) {
		if (s->prev)
			s->prev->next = s->next;
		else
			srv->sessions = s->next;
		if (s->next)
			s->next->prev = s->prev;
	}
	if (s->wait != WAIT_NONE)
		s->gone = true; /* freed when the commit or the check returns */
	else
		session_free(s);
	server_session_gone(srv);
}

static const struct conn_ops session_ops = {
	.on_read = on_read,
	.on_eof = on_eof,
	.on_tls = on_tls,
	.on_close = on_close,
	.on_timeout = on_timeout,
	.on_drain = on_drain,
};

static bool client_allowed(const struct config *cfg, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cfg->server.nallow; i++)
		if (config_cidr_contains(&cfg->server.allow[i], sa))
			return true;
	return false;
}

void session_start(struct server *srv, uv_stream_t *listener)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	s->srv = srv;
	s->set = srv->set;
	settings_ref(s->set);
	s->rcpts = g_ptr_array_new_with_free_func(g_free);
	buf_init(&s->in, CMD_LINE_MAX + INPUT_MAX);
	buf_init(&s->out, OUTPUT_MAX);
	if (conn_init(srv->loop, &s->conn, &session_ops, s) < 0) {
		session_free(s);
		return;
	}
	srv->nsessions++;
	if (uv_accept(listener, (uv_stream_t *)&s->conn.tcp) < 0) {
		conn_close(&s->conn, false);
		return;
	}
	s->listed = true;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->stats.connections++;
	snprintf(s->id, sizeof(s->id), "%08llX%06llX", (unsigned long long)srv->start_time,
	         (unsigned long long)++srv->next_session);

	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	if (uv_tcp_getpeername(&s->conn.tcp, (struct sockaddr *)&ss, &sslen) < 0) {
		conn_close(&s->conn, false);
		return;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
			inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], s->ip, sizeof(s->ip));
		else
			inet_ntop(AF_INET6, &a6->sin6_addr, s->ip, sizeof(s->ip));
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&ss)->sin_addr, s->ip, sizeof(s->ip));
	}
	const struct config *cfg = cfg_of(s);
	s->allowed = client_allowed(cfg, (const struct sockaddr *)&ss);
	uv_tcp_nodelay(&s->conn.tcp, 1);

	if (srv->nsessions > cfg->server.max_connections || srv->stopping) {
		session_hangup(s, R_TOO_MANY_CONN);
		return;
	}
	unsigned have = GPOINTER_TO_UINT(g_hash_table_lookup(srv->per_client, s->ip));
	if (have >= cfg->server.max_connections_per_client) {
		session_hangup(s, R_TOO_MANY_CLIENT);
		return;
	}
	g_hash_table_insert(srv->per_client, g_strdup(s->ip), GUINT_TO_POINTER(have + 1));
	s->counted = true;
	s->state = S_GREET;
	replyf(s, R_GREETING_FMT, cfg->server.hostname);
	session_flush(s);
	conn_timeout(&s->conn, cfg->server.idle_timeout_ms);
	conn_read_start(&s->conn);
}

void sessions_drain(struct server *srv)
{
	for (struct session *s = srv->sessions, *next; s; s = next) {
		next = s->next;
		s->draining = true;
		if (s->state != S_DATA && s->state != S_MAIL && s->wait == WAIT_NONE)
			maybe_drain(s);
	}
}

void sessions_close_all(struct server *srv)
{
	for (struct session *s = srv->sessions, *next; s; s = next) {
		next = s->next;
		if (s->wait == WAIT_NONE)
			conn_close(&s->conn, false);
	}
}
