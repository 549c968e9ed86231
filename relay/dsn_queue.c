/*
 * dsn_queue - queueing the DSNs the runner sends (SPEC §5: one per mail
 * and round, never to the null sender; the one delay warning of a mail;
 * and the notices of service bounces): built by relay/dsn.c, committed
 * like any mail, then added to the index. Part of the runner
 * (relay/runner_int.h).
 *
 * The delay warning ([queue] delay_warning): at the end of a round, a
 * mail still pending that long after its arrival sends its envelope
 * sender one report with Action: delayed for the recipients still
 * pending (their last response, Will-Retry-Until: the end of the
 * lifetime). The DSN is committed first, then the time it went is
 * written into the mail's state file (warned_ms), then "delayed" is
 * logged: a restart never sends it twice, except after a crash between
 * the commit and that write (at least once, like a delivery).
 */
#include "relay/runner_int.h"

static void dsn_reported(struct qmail *m, void *arg);
static void dsn_committed(void *arg, int status);
static void dsn_reported(struct qmail *m, void *arg)
{
	(void)arg;
	/* The failures are reported; the same round may owe a delay warning
	 * for the recipients still pending. */
	if (!round_send_delay_warning(m))
		round_finish(m);
}

static void dsn_committed(void *arg, int status)
{
	struct dsn_commit *dc = arg;
	struct qmail *m = dc->m;
	if (status == 0) {
		json_t *f = evlog_received(&(struct evlog_received){
			.queue_id = dc->env.id,
			.from = "",
			.header_from = dc->env.header_from,
			.rcpts = 1,
			.size = dc->env.size,
			.route = "direct",
		});
		evlog_emit(dc->r->log, "received", f);
		dc->env.from = (char *)"";
		dc->env.helo = NULL;
		dc->env.route = (char *)"direct";
		size_t len = 0;
		char *copy = queue_commit_message(dc->r->q, &len);
		runner_add(dc->r, &dc->env, copy, len);
	} else {
		fprintf(stderr, "hikyaku: cannot queue a bounce for %s: %s; trying again later\n",
		        dc->env.rcpts[0].addr, strerror(-status));
	}
	buf_free(&dc->msg);
	free(dc->env.rcpts[0].addr);
	free(dc->env.rcpts);
	free(dc->env.header_from);
	void (*done)(void *, int) = dc->done;
	void *done_arg = dc->done_arg;
	free(dc);
	if (!m || done) {
		/* a notice for a mail already gone (a service bounce), or a
		 * report whose owner takes the result itself (a delay warning) */
		if (done)
			done(done_arg, status);
		if (m)
			mail_unref(m);
		return;
	}
	if (status == 0) {
		/* The DSN is queued: the failures are reported; record that. */
		g_array_set_size(m->failures, 0);
		g_ptr_array_set_size(m->strings, 0);
		state_save(m, dsn_reported, NULL);
	} else {
		round_finish(m); /* the failures stay recorded; the next round tries again */
	}
	mail_unref(m);
}

/*
 * Builds a DSN and queues it to sender with the null envelope sender. The
 * owner (a mail whose round waits for it) gets dsn_committed's verdict,
 * through done when it is given; without an owner the notice stands alone. Returns 0 when the commit is
 * under way (the callback will run), <0 when nothing was started.
 */
int dsn_queue(struct runner *r, struct qmail *owner, const struct dsn_info *info,
                     const struct dsn_rcpt *rcpts, size_t n, bool smtputf8,
                     void (*done)(void *arg, int status), void *done_arg)
{
	struct dsn_commit *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -ENOMEM;
	dc->r = r;
	buf_init(&dc->msg, (size_t)64 << 20);
	if (dsn_build(info, rcpts, n, &dc->msg) < 0) {
		fprintf(stderr, "hikyaku: cannot build a bounce for %s\n", info->queue_id);
		buf_free(&dc->msg);
		free(dc);
		return -EINVAL;
	}
	dc->m = owner;
	dc->done = done;
	dc->done_arg = done_arg;
	if (owner)
		owner->refs++;
	struct queue_envelope *e = &dc->env;
	queue_new_id(r->q, e->id);
	e->arrival_ms = clock_now_ms();
	e->from = (char *)"";
	e->nrcpts = 1;
	e->rcpts = calloc(1, sizeof(*e->rcpts));
	e->rcpts[0].addr = strdup(info->sender);
	e->helo = r->cfg->server.hostname;
	e->smtputf8 = smtputf8;
	e->body_8bit = true;
	e->size = dc->msg.len;
	char hf[300];
	snprintf(hf, sizeof(hf), "MAILER-DAEMON@%s", r->cfg->server.hostname);
	e->header_from = strdup(hf);
	e->route = (char *)"direct";
	uv_buf_t part = uv_buf_init(dc->msg.data, (unsigned)dc->msg.len);
	int rc = queue_commit(r->q, e, &part, 1, dsn_committed, dc);
	if (rc < 0)
		dsn_committed(dc, rc); /* reports and frees; the owner goes on from there */
	return 0;
}

/*
 * One DSN per mail per round (SPEC §5), never to the null sender. Returns
 * true when a DSN is being queued (the round ends when that is done).
 */
bool round_send_dsn(struct qmail *m)
{
	struct runner *r = m->r;
	if (!m->failures || m->failures->len == 0)
		return false;
	if (!m->env.from || !m->env.from[0]) {
		g_array_set_size(m->failures, 0);
		g_ptr_array_set_size(m->strings, 0);
		return false;
	}
	const char *hdr_end = m->data ? strstr(m->data, "\r\n\r\n") : NULL;
	struct dsn_info info = {
		.hostname = r->cfg->server.hostname,
		.queue_id = m->env.id,
		.sender = m->env.from,
		.arrival_ms = m->env.arrival_ms,
		.headers = m->data,
		.headers_len = hdr_end ? (size_t)(hdr_end - m->data) + 2 : (m->data ? m->len : 0),
		.now_ms = clock_now_ms(),
	};
	if (dsn_queue(r, m, &info, (struct dsn_rcpt *)(void *)m->failures->data,
	              m->failures->len, m->env.smtputf8, NULL, NULL) < 0) {
		g_array_set_size(m->failures, 0);
		g_ptr_array_set_size(m->strings, 0);
		return false;
	}
	return true;
}

/* ---- the delay warning (SPEC §5, [queue] delay_warning) --------------- */

struct delay_warning {
	GArray *idx;                /* unsigned: the recipients it covered */
	char *response;             /* the last response, for the "delayed" event */
};

static bool warn_covers(const struct qmail *m, size_t i)
{
	return m->env.rcpts[i].state == RCPT_PENDING &&
	       !config_is_bounce_address(m->r->cfg, m->env.rcpts[i].addr, NULL, NULL);
}

/*
 * When the mail's delay warning is due: its arrival plus delay_warning,
 * for a mail not warned yet, from a sender who is not the null sender,
 * that does not expire first. 0: none is owed.
 */
uint64_t delay_warning_at(const struct qmail *m)
{
	const struct config *cfg = m->r->cfg;
	uint64_t dw = cfg->queue.delay_warning_ms;
	if (!dw || m->warned_ms || !m->env.from || !m->env.from[0] || m->delete_requested ||
	    dw >= cfg->queue.lifetime_ms)
		return 0;
	for (size_t i = 0; i < m->env.nrcpts; i++)
		if (warn_covers(m, i))
			return m->env.arrival_ms + dw;
	return 0;
}

static void delay_warning_free(struct delay_warning *w)
{
	g_array_free(w->idx, TRUE);
	free(w->response);
	free(w);
}

/* SPEC §7: "delayed", once the warning is on disk and recorded. */
static void delay_warning_recorded(struct qmail *m, void *arg)
{
	struct delay_warning *w = arg;
	json_t *f = json_object(), *to = json_array();
	json_object_set_new(f, "queue_id", json_string(m->env.id));
	for (guint k = 0; k < w->idx->len; k++)
		json_array_append_new(to, jstr(m->env.rcpts[g_array_index(w->idx, unsigned, k)].addr));
	json_object_set_new(f, "to", to);
	json_object_set_new(f, "response", jstr(w->response));
	evlog_emit(m->r->log, "delayed", f);
	delay_warning_free(w);
	round_finish(m);
}

struct delay_commit {
	struct qmail *m;
	struct delay_warning *w;
};

static void delay_warning_committed(void *arg, int status)
{
	struct delay_commit *c = arg;
	struct qmail *m = c->m;
	struct delay_warning *w = c->w;
	free(c);
	if (status < 0) {
		/* Not queued: the next round tries again. */
		delay_warning_free(w);
		round_finish(m);
		return;
	}
	m->warned_ms = clock_now_ms();
	state_save(m, delay_warning_recorded, w);
}

/* The enhanced status of a response line ("451 4.3.0 Try later"): a
 * 4.x.x of the reply, else 4.0.0 (other or undetermined). */
static void last_status(const char *line, char out[16])
{
	snprintf(out, 16, "4.0.0");
	if (!line || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[3] != ' ' || line[4] != '4' || line[5] != '.')
		return;
	size_t n = strspn(line + 4, "0123456789.");
	if (n >= 5 && n < 16) {
		memcpy(out, line + 4, n);
		out[n] = '\0';
	}
}

/*
 * The round's delay warning, when one is due now. Returns true when it is
 * being queued (the round ends when that is done and recorded).
 */
bool round_send_delay_warning(struct qmail *m)
{
	struct runner *r = m->r;
	uint64_t at = delay_warning_at(m), now = clock_now_ms();
	if (!at || at > now || now >= m->env.arrival_ms + r->cfg->queue.lifetime_ms)
		return false;
	struct delay_warning *w = calloc(1, sizeof(*w));
	w->idx = g_array_new(FALSE, FALSE, sizeof(unsigned));
	GArray *rc = g_array_new(FALSE, TRUE, sizeof(struct dsn_rcpt));
	GPtrArray *strs = g_ptr_array_new_with_free_func(g_free);
	for (unsigned i = 0; i < m->env.nrcpts; i++) {
		if (!warn_covers(m, i))
			continue;
		const char *last = m->env.rcpts[i].last;
		bool reply = last && isdigit((unsigned char)last[0]) && isdigit((unsigned char)last[1]) &&
		             isdigit((unsigned char)last[2]) && (last[3] == ' ' || last[3] == '\0');
		char st[16];
		last_status(last, st);
		struct dsn_rcpt dr = { 0 };
		dr.addr = m->env.rcpts[i].addr;
		dr.action = "delayed";
		char *status = g_strdup(st);
		g_ptr_array_add(strs, status);
		dr.status = status;
		/* A server's reply is "smtp;"; a text of hikyaku's own (no host
		 * answered, the destination is paused) says so by its type. */
		dr.diagnostic = last;
		dr.diagnostic_type = reply ? NULL : "X-Hikyaku";
		dr.reason = last ? "the mail system could not deliver it yet and keeps trying."
		                 : "the mail system has not delivered it yet and keeps trying.";
		dr.last_attempt_ms = m->last_ms;
		dr.will_retry_until_ms = m->env.arrival_ms + r->cfg->queue.lifetime_ms;
		g_array_append_val(rc, dr);
		g_array_append_val(w->idx, i);
		if (!w->response && last)
			w->response = strdup(last);
	}
	const char *hdr_end = m->data ? strstr(m->data, "\r\n\r\n") : NULL;
	struct dsn_info info = {
		.hostname = r->cfg->server.hostname,
		.queue_id = m->env.id,
		.sender = m->env.from,
		.arrival_ms = m->env.arrival_ms,
		.headers = m->data,
		.headers_len = hdr_end ? (size_t)(hdr_end - m->data) + 2 : (m->data ? m->len : 0),
		.now_ms = now,
	};
	struct delay_commit *c = calloc(1, sizeof(*c));
	c->m = m;
	c->w = w;
	int rc_ = dsn_queue(r, m, &info, (struct dsn_rcpt *)(void *)rc->data, rc->len,
	                    m->env.smtputf8, delay_warning_committed, c);
	g_array_free(rc, TRUE);
	g_ptr_array_free(strs, TRUE);
	if (rc_ < 0) {
		/* Cannot be built (a sender address a DSN cannot carry): never
		 * try again for this mail. */
		free(c);
		delay_warning_free(w);
		m->warned_ms = now;
		return false;
	}
	return true;
}
