/*
 * NAME
 *	session_commit - the end of DATA: checks, headers, envelope, queue commit
 * SUMMARY
 *	From the final dot to the reply: the refusals the message itself
 *	earns (smtp_data's latched error, the hop limit, the room in the
 *	spool), the header fields hikyaku adds (proto/smtp_header.c), the
 *	route decision (SPEC §4, with the settings of this transaction), the
 *	envelope, and the host's commit; "250 queued as" only when the host
 *	says the mail is durable (SPEC §5). Also the spill of a large message
 *	to the spool while it is being received, so that a session holds a
 *	bounded part of any message in memory (SPEC §5).
 * DESCRIPTION
 *	session_data_spill() runs after every feed of DATA bytes: when the
 *	memory part has reached settings.data_mem_max, what smtp_data no
 *	longer needs goes to the host's spill (off the loop thread), and the
 *	session reads nothing until that write is done. A failed write
 *	latches 452 4.3.1 for the end of DATA; reading goes on to the dot.
 *	session_data_end() answers the final dot. session_commit_release()
 *	frees what the envelope of a commit holds.
 *
 *	The envelope holds copies only (the TLS description is the
 *	session's own, never a pointer into the TLS engine, which goes when
 *	the connection goes: issue 11 "use after free"). The From: field the
 *	route is decided on is smtp_data's bounded copy (SMTP_DATA_FIELD_MAX):
 *	a longer one is unparseable (SPEC §4: the envelope sender decides)
 *	and is never parsed on the loop thread.
 *
 *	DKIM (SPEC §5): when the settings hold [dkim] keys, the commit
 *	carries sign_on_worker(), which the queue runs on its pool worker just
 *	before it writes the mail (never on the loop); received.dkim names
 *	the key, dkim_skipped says why a mail went unsigned.
 * TOUCHES
 *	The session; the host's spill, commit and received operations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_header.h"
#include "proto/smtp_reply.h"
#include "relay/dkim.h"
#include "relay/route.h"
#include "server/session_int.h"
#include "util/clock.h"
#include "util/eventlog.h"

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

/* ---- DKIM signing on the queue's worker (relay/dkim.h) ---------------- */

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

/* ---- the spill ------------------------------------------------------- */

static void spill_done(void *arg, int status)
{
	struct session *s = arg;
	size_t n = s->spilling;
	s->spilling = 0;
	if (session_step_over(s))
		return;
	if (status < 0) {
		/* Nothing more is kept; the dot gets 452 4.3.1. */
		if (s->data.error == SMTP_DATA_OK)
			s->data.error = SMTP_DATA_NOMEM;
		fprintf(stderr, "hikyaku: session %s: spooling the message: %s\n", s->id,
		        strerror(-status));
	} else {
		s->spilled += n;
	}
	buf_consume(&s->msg, n);
	smtp_data_drained(&s->data, n);
	session_resume(s);
}

void session_data_spill(struct session *s)
{
	if (s->msg.len < s->set->data_mem_max)
		return;
	if (s->data.error != SMTP_DATA_OK) {
		/* Refused anyway: nothing more is worth keeping. */
		size_t k = smtp_data_drainable(&s->data);
		buf_consume(&s->msg, k);
		smtp_data_drained(&s->data, k);
		return;
	}
	size_t k = smtp_data_drainable(&s->data);
	if (k == 0)
		return;
	s->spilling = k;
	s->wait = WAIT_SPILL;
	s->host->read(s->h, false);
	int rc = s->host->spill(s->h, &s->spill, s->msg.data, k, spill_done, s);
	if (rc < 0) {
		s->wait = WAIT_NONE;
		s->spilling = 0;
		if (s->data.error == SMTP_DATA_OK)
			s->data.error = SMTP_DATA_NOMEM;
		buf_consume(&s->msg, k);
		smtp_data_drained(&s->data, k);
		s->host->read(s->h, true);
	}
}

/* ---- the end of DATA ------------------------------------------------- */

/* A field value from smtp_data's copy: unfolded and trimmed, valid UTF-8.
 * The copy's lines end in CRLF, and it holds no other CR or LF (a message
 * with a bare CR or LF is refused or normalised before this). */
static char *field_value(const buf_t *field, bool too_long)
{
	if (too_long || field->len == 0)
		return NULL;
	char *v = smtp_header_unfold(field->data, field->len);
	if (!v)
		return NULL;
	g_strstrip(v);
	/* Raw 8-bit headers (Shift_JIS from an old shop system) are not
	 * UTF-8; this copy only informs the log and the envelope, so it is
	 * made valid rather than refused. The message itself is untouched. */
	char *valid = g_utf8_make_valid(v, -1);
	char *out = strdup(valid);
	g_free(valid);
	g_free(v);
	return out;
}

/* A refused message: one reply, one rejected event per recipient. */
static void refuse_message(struct session *s, const char *line)
{
	session_reply(s, line);
	for (unsigned i = 0; i < s->rcpts->len; i++)
		session_log_rejected(s, g_ptr_array_index(s->rcpts, i), line);
}

/* The queue could not take the message (SPEC §5: 452 4.3.1 when full). */
static void commit_refused(struct session *s, int status)
{
	fprintf(stderr, "hikyaku: queue commit failed: %s\n", strerror(-status));
	refuse_message(s, status == -ENOSPC || status == -EDQUOT ? R_STORAGE : R_LOCAL_ERROR);
}

void session_commit_release(struct session *s)
{
	free(s->env.rcpts);
	free(s->env.header_from);
	free(s->env.message_id);
	memset(&s->env, 0, sizeof(s->env));
	free(s->sign.field);
	dkim_keys_unref(s->sign.keys);
	memset(&s->sign, 0, sizeof(s->sign));
}

static json_t *received_fields(struct session *s)
{
	const struct queue_envelope *env = &s->env;
	return evlog_received(&(struct evlog_received){
		.queue_id = s->qid,
		.session = s->id,
		.client = s->ip,
		.helo = s->helo,
		.from = s->mail.addr,
		.from_len = s->mail.addr_len,
		.header_from = env->header_from,
		.message_id = env->message_id,
		.rcpts = s->rcpts->len,
		.size = env->size,
		.tls = s->tls,
		.route = env->route,
		.matched = env->matched,
		.dkim = s->sign.field ? s->sign.dkim : NULL,
		.dkim_skipped = s->sign.field ? NULL : s->sign.why,
		.warning = s->warning,
	});
}

static void commit_done(void *arg, int status)
{
	struct session *s = arg;
	/* The mail is the runner's even when the client has gone meanwhile. */
	s->env.size += s->sign.len;     /* the DKIM-Signature field, if any */
	if (status == 0)
		s->host->received(s->h, &s->env, received_fields(s));
	session_commit_release(s);
	if (session_step_over(s))
		return;
	if (status == 0)
		session_replyf(s, R_QUEUED_FMT, s->qid);
	else
		commit_refused(s, status);
	session_txn_reset(s);
	if (s->draining) {
		session_maybe_drain(s); /* the 250, then 421: no further transaction */
		return;
	}
	session_resume(s);
}

static void refuse_and_reset(struct session *s, const char *line)
{
	refuse_message(s, line);
	session_txn_reset(s);
	session_maybe_drain(s);
}

void session_data_end(struct session *s)
{
	const char *err = data_error_reply(s->data.error);
	if (err) {
		refuse_and_reset(s, err);
		return;
	}
	/* SPEC §5: a mail that has passed 50 relays is looping. */
	if (s->data.n_received > SESSION_HOP_LIMIT) {
		refuse_and_reset(s, R_TOO_MANY_HOPS);
		return;
	}
	uint64_t body = s->spilled + s->msg.len;
	if (!s->host->storage_ok(s->h, body)) {
		refuse_and_reset(s, R_STORAGE);
		return;
	}
	const struct config *cfg = session_cfg(s);
	s->arrival_ms = clock_now_ms();
	s->host->new_id(s->h, s->qid);
	buf_init(&s->hdr, SMTP_HEADER_MAX);
	struct smtp_header_info hi = {
		.helo = s->helo,
		.client_ip = s->ip,
		.tls = s->tls ? s->tls_desc : NULL,
		.hostname = cfg->server.hostname,
		.protocol = smtp_received_protocol(s->esmtp, s->tls, s->auth_user != NULL,
		                                   s->mail.smtputf8),
		.queue_id = s->qid,
		.single_rcpt = s->rcpts->len == 1 ? g_ptr_array_index(s->rcpts, 0) : NULL,
		.arrival = (time_t)(s->arrival_ms / 1000),
		.has_date = s->data.has_date,
		.has_message_id = s->data.has_message_id,
	};
	smtp_header_build(&s->hdr, &hi);

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
	env->tls = s->tls ? s->tls_desc : NULL;
	env->auth_user = s->auth_user;
	env->smtputf8 = s->mail.smtputf8;
	env->body_8bit = s->data.has_8bit;
	env->size = s->hdr.len + body;
	env->header_from = field_value(&s->data.from_field, s->data.from_too_long);
	env->message_id = field_value(&s->data.msgid_field, s->data.msgid_too_long);

	/* SPEC §4: the route is decided once, now, and kept with the mail. */
	struct route_decision rd;
	route_decide(cfg, s->mail.addr, env->header_from,
	             env->header_from ? strlen(env->header_from) : 0, s->data.n_from, &rd);
	env->route = (char *)route_name(rd.route);
	env->matched = rd.matched ? rd.matched->entry : NULL;
	memset(&s->sign, 0, sizeof(s->sign));
	if (dkim_keys_count(s->set->dkim)) {
		s->sign.keys = dkim_keys_ref(s->set->dkim);
		s->sign.route = rd.route;
	}
	/* The service verifies the envelope sender too (SPEC §3 envelope_from). */
	s->warning = NULL;
	if (rd.route == ROUTE_SERVICE && !cfg->service.envelope_from &&
	    !route_match(cfg, s->mail.addr))
		s->warning = "the envelope sender matches no verified entry; the delivery "
		             "service may refuse it (set [service] envelope_from)";
	route_decision_free(&rd);

	struct session_message m = {
		.hdr = s->hdr.data ? s->hdr.data : "",
		.hdr_len = s->hdr.len,
		.spill = s->spilled ? s->spill : NULL,
		.spill_len = s->spilled,
		.tail = s->msg.data ? s->msg.data : "",
		.tail_len = s->msg.len,
		.sign = s->sign.keys ? sign_on_worker : NULL,
		.sign_arg = &s->sign,
	};
	s->wait = WAIT_COMMIT;
	s->host->read(s->h, false);
	int rc = env->rcpts ? s->host->commit(s->h, env, &m, commit_done, s) : -ENOMEM;
	if (rc < 0) {
		/* Answered here, inside the input loop: no resume, which would
		 * re-enter it (the loop goes on by itself). */
		s->wait = WAIT_NONE;
		commit_refused(s, rc);
		session_commit_release(s);
		session_txn_reset(s);
		s->host->read(s->h, true);
	}
}
