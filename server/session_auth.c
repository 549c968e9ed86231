/*
 * NAME
 *	session_auth - SMTP AUTH in a session (RFC 4954; PLAIN RFC 4616, LOGIN)
 * SUMMARY
 *	The AUTH verb and its continuation lines. The command table
 *	(session.c) has already checked that AUTH is offered, that TLS is up
 *	(SPEC §5: 530 5.7.0 before), that EHLO was given, that no transaction
 *	is open and that the client is not authenticated yet. The password
 *	is checked by the host (server/auth.c: crypt(3) on the thread pool,
 *	with a cap on how many run at once); the session waits meanwhile.
 * DESCRIPTION
 *	session_cmd_auth() handles "AUTH MECH [initial-response]";
 *	session_auth_continue() a line read in state S_AUTH ("*" cancels).
 *	The user name and password never outlive the check: the buffers are
 *	cleared as soon as the host has its own copy. Wrong credentials
 *	count as errors (session_count_auth_failure), and after
 *	SESSION_AUTH_FAIL_LIMIT of them the session answers 421 and hangs
 *	up: a password guesser gets a few tries per connection, not 20.
 * TOUCHES
 *	The session; the host's auth operation.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/smtp_cmd.h"
#include "proto/smtp_reply.h"
#include "server/session_int.h"

static void auth_done(void *arg, bool ok)
{
	struct session *s = arg;
	if (session_step_over(s))
		return;
	if (ok) {
		s->auth_user = strdup(s->auth_pending_user);
		session_reply(s, R_AUTH_OK);
	} else {
		session_reply(s, R_AUTH_FAILED);
		session_count_auth_failure(s);
	}
	explicit_bzero(s->auth_pending_user, sizeof(s->auth_pending_user));
	session_resume(s);
}

static void auth_check(struct session *s, const char *user, const char *pass)
{
	snprintf(s->auth_pending_user, sizeof(s->auth_pending_user), "%s", user);
	s->state = S_READY;
	s->wait = WAIT_AUTH;
	s->host->read(s->h, false);
	if (s->host->auth(s->h, s->set->auth, user, pass, auth_done, s) < 0) {
		s->wait = WAIT_NONE;
		session_reply(s, R_AUTH_FAILED);
		s->host->read(s->h, true);
	}
}

static void auth_plain(struct session *s, const char *b64, size_t len)
{
	char authz[SESSION_AUTH_FIELD], user[SESSION_AUTH_FIELD], pass[SESSION_AUTH_FIELD];
	if (smtp_auth_plain_decode(b64, len, authz, user, pass, sizeof(user)) < 0) {
		s->state = S_READY;
		session_reply(s, R_AUTH_BAD_B64);
		return;
	}
	/* SPEC §5: the authorization id may be empty or the user's own. */
	if (authz[0] && strcmp(authz, user) != 0) {
		s->state = S_READY;
		session_reply(s, R_AUTH_FAILED);
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
		session_reply(s, R_AUTH_BAD_B64);
		return false;
	}
	out[n] = '\0';
	return true;
}

void session_cmd_auth(struct session *s, const struct smtp_cmd *c)
{
	const char *sp = memchr(c->arg, ' ', c->arg_len);
	size_t mlen = sp ? (size_t)(sp - c->arg) : c->arg_len;
	const char *ir = sp ? sp + 1 : NULL;
	size_t irlen = sp ? c->arg_len - mlen - 1 : 0;
	if (mlen == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0) {
		s->auth_mech = MECH_PLAIN;
		if (!ir) {
			s->state = S_AUTH;
			session_reply(s, R_AUTH_CONTINUE);
		} else {
			auth_plain(s, ir, irlen);
		}
	} else if (mlen == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0) {
		s->auth_mech = MECH_LOGIN;
		s->auth_login_user[0] = '\0';
		s->state = S_AUTH;
		if (!ir)
			session_reply(s, R_AUTH_USERNAME);
		else if (auth_decode(s, ir, irlen, s->auth_login_user, sizeof(s->auth_login_user)))
			session_reply(s, R_AUTH_PASSWORD);
	} else {
		session_reply(s, R_AUTH_MECH);
	}
}

void session_auth_continue(struct session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		s->state = S_READY;
		session_reply(s, R_AUTH_CANCELLED);
		return;
	}
	if (s->auth_mech == MECH_PLAIN) {
		auth_plain(s, line, len);
		return;
	}
	if (!s->auth_login_user[0]) {
		if (auth_decode(s, line, len, s->auth_login_user, sizeof(s->auth_login_user)))
			session_reply(s, R_AUTH_PASSWORD);
		return;
	}
	char pass[SESSION_AUTH_FIELD];
	if (auth_decode(s, line, len, pass, sizeof(pass)))
		auth_check(s, s->auth_login_user, pass);
	explicit_bzero(pass, sizeof(pass));
}
