/*
 * runner_outcome - what the outcomes of a transaction do to a mail, for
 * the queue runner: each recipient's new state and last response, the
 * failures kept for the DSN, the state written durably (or the mail's
 * files removed when all is final), and only then the log events, the
 * suppression list and the service records (SPEC §5: nothing is logged
 * before it is on disk); then the connection takes the next transaction.
 * Part of the runner (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static void txn_logged(struct qmail *m, void *arg);

void log_outcome(struct runner *r, const char *event, struct qmail *m, unsigned i,
                        const char *relay, const struct smtp_reply *rep, bool tls,
                        uint64_t next_retry)
{
	json_t *f = json_object();
	json_object_set_new(f, "queue_id", json_string(m->env.id));
	json_object_set_new(f, "to", jstr(m->env.rcpts[i].addr));
	json_object_set_new(f, "route", jstr(m->env.route ? m->env.route : "direct"));
	if (strcmp(event, "expired") != 0) {
		json_object_set_new(f, "relay", jstr(relay));
		json_object_set_new(f, "status", rep->status[0] ? json_string(rep->status) : json_null());
	}
	char line[600];
	json_object_set_new(f, "response", jstr(outcome_reply_line(rep, line, sizeof(line))));
	if (strcmp(event, "expired") != 0)
		json_object_set_new(f, "tls", json_boolean(tls));
	json_object_set_new(f, "attempt", json_integer(m->attempts));
	if (strcmp(event, "expired") != 0)
		json_object_set_new(f, "delay_ms", json_integer((json_int_t)(clock_now_ms() - m->env.arrival_ms)));
	if (next_retry) {
		char ts[40];
		clock_rfc3339(next_retry, ts, sizeof(ts));
		json_object_set_new(f, "next_retry", json_string(ts));
	}
	evlog_emit(r->log, event, f);
}

/* ---- outcomes -------------------------------------------------------- */

void add_failure(struct qmail *m, unsigned i, const char *status, const char *remote,
                        const char *diag, const char *reason)
{
	if (!m->failures) {
		m->failures = g_array_new(FALSE, TRUE, sizeof(struct dsn_rcpt));
		m->strings = g_ptr_array_new_with_free_func(g_free);
	}
	struct dsn_rcpt dr = { 0 };
	dr.addr = m->env.rcpts[i].addr;
	dr.action = "failed";
	char *s;
	g_ptr_array_add(m->strings, s = g_strdup(status && *status ? status : "5.0.0"));
	dr.status = s;
	if (remote) {
		g_ptr_array_add(m->strings, s = g_strdup(remote));
		dr.remote_mta = s;
	}
	if (diag) {
		g_ptr_array_add(m->strings, s = g_strdup(diag));
		dr.diagnostic = s;
	}
	g_ptr_array_add(m->strings, s = g_strdup(reason));
	dr.reason = s;
	dr.last_attempt_ms = clock_now_ms();
	g_array_append_val(m->failures, dr);
}

void txn_finish(struct txn *t)
{
	struct qmail *m = t->job->m;
	struct runner *r = m->r;
	uint64_t now = clock_now_ms();
	uint64_t next = now + runner_backoff_ms(r->cfg, m->attempts);
	if (t->job->d->paused_until > next)
		next = t->job->d->paused_until;
	/* What the state file says for the queue view (queue_state.h); the
	 * schedule itself is set when the round ends. */
	m->last_ms = now;
	m->next_ms = next;
	for (guint k = 0; k < t->outcomes->len; k++) {
		struct outcome *o = &g_array_index(t->outcomes, struct outcome, k);
		char resp[600];
		free(m->env.rcpts[o->idx].last);
		m->env.rcpts[o->idx].last = strdup(outcome_reply_line(&o->rep, resp, sizeof(resp)));
		switch (o->v) {
		case OUTCOME_DELIVERED:
			rcpt_set_state(m, o->idx, RCPT_DELIVERED);
			break;
		case OUTCOME_BOUNCED: {
			char line[600];
			rcpt_set_state(m, o->idx, RCPT_BOUNCED);
			outcome_reply_line(&o->rep, line, sizeof(line));
			add_failure(m, o->idx, o->rep.status[0] ? o->rep.status : "5.0.0",
			            t->dc && t->dc->relay[0] ? t->dc->relay : NULL,
			            o->rep.code ? line : NULL, o->rep.code ? OUTCOME_REASON_REFUSED : o->rep.text);
			break;
		}
		case OUTCOME_DEFERRED:
			break;
		}
	}
	if (t->dc) {
		snprintf(t->relay, sizeof(t->relay), "%s", t->dc->relay);
		t->tls = t->dc->tls;
	}
	/* The connection goes on at once with its next job, and the job
	 * frees its destination's slot for the next mail (dest_full): what
	 * waits for the outcomes' durable record (the log, the job's end) is
	 * the mail's, not the destination's; a connection kept idle through
	 * each removal's fdatasync would carry a mail per sync. The rest of a
	 * split job keeps its connection until then (txn_logged). */
	if (t->dc && t->job->next >= t->job->rcpts->len) {
		struct dconn *dc = t->dc;
		struct dest *d = t->job->d;
		t->dc = NULL;
		dc->job = NULL;
		t->job->settling = true;
		d->jobs_settling++;
		dconn_after_txn(dc, dc->c != NULL);
		dest_unpark(d);
	}
	/* Nothing is logged before the outcome is on disk (SPEC §5). */
	if (mail_all_final(m) && !m->writing && !m->delete_requested)
		mail_finalize(m, txn_logged, t);
	else
		state_save(m, txn_logged, t);
}

static void txn_logged(struct qmail *m, void *arg)
{
	struct txn *t = arg;
	struct runner *r = m->r;
	uint64_t next = clock_now_ms() + runner_backoff_ms(r->cfg, m->attempts);
	struct dest *d = t->job->d;
	if (d->paused_until > next)
		next = d->paused_until;
	const char *relay = t->relay[0] ? t->relay : NULL;
	bool tls = t->tls;
	for (guint k = 0; k < t->outcomes->len; k++) {
		struct outcome *o = &g_array_index(t->outcomes, struct outcome, k);
		switch (o->v) {
		case OUTCOME_DELIVERED:
			r->stats.delivered++;
			log_outcome(r, "delivered", m, o->idx, relay, &o->rep, tls, 0);
			if (d->service)
				record_sent(r, m, o->idx, &o->rep, t->outcomes->len == 1);
			break;
		case OUTCOME_BOUNCED: {
			r->stats.bounced++;
			log_outcome(r, "bounced", m, o->idx, relay, &o->rep, tls, 0);
			char line[600];
			if (outcome_suppresses(o->rep.status))
				runner_learn(r, m->env.rcpts[o->idx].addr, o->rep.status,
				      outcome_reply_line(&o->rep, line, sizeof(line)));
			break;
		}
		case OUTCOME_DEFERRED:
			r->stats.deferred++;
			log_outcome(r, "deferred", m, o->idx, relay, &o->rep, tls, next);
			break;
		}
	}
	struct job *job = t->job;
	struct dconn *dc = t->dc;
	g_array_free(t->outcomes, TRUE);
	free(t);
	if (dc) {
		dc->job = NULL;
		if (job->next < job->rcpts->len) {
			/* More recipients of this job (split transactions): go on. */
			dc->job = job;
			dconn_after_txn(dc, true);
			return;
		}
		round_job_done(job);
		dconn_after_txn(dc, dc->c != NULL);
	} else {
		round_job_done(job);
	}
}

/* Ends every remaining recipient of a job with one verdict and reply. */
void job_fail(struct job *job, struct dconn *dc, enum outcome_verdict v, const struct smtp_reply *rep)
{
	struct txn *t = calloc(1, sizeof(*t));
	t->dc = dc;
	t->job = job;
	t->outcomes = g_array_new(FALSE, FALSE, sizeof(struct outcome));
	for (unsigned k = job->next; k < job->rcpts->len; k++) {
		struct outcome o = { g_array_index(job->rcpts, unsigned, k), v, *rep };
		g_array_append_val(t->outcomes, o);
	}
	job->next = job->rcpts->len;
	if (dc)
		dc->job = NULL;
	t->dc = NULL; /* the connection (if any) is dealt with by the caller */
	txn_finish(t);
}
