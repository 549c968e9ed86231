/*
 * dsn_queue - queueing the DSNs the runner sends (SPEC §5: one per mail
 * and round, never to the null sender; and the notices of service
 * bounces): built by relay/dsn.c, committed like any mail, then added to
 * the index. Part of the runner (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static void dsn_reported(struct qmail *m, void *arg);
static void dsn_committed(void *arg, int status);
static void dsn_reported(struct qmail *m, void *arg)
{
	(void)arg;
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
		runner_add(dc->r, &dc->env);
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
	if (!m) {
		/* a notice for a mail already gone (a service bounce) */
		if (done)
			done(done_arg, status);
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
 * owner (a mail whose round waits for it) gets dsn_committed's verdict;
 * without an owner the notice stands alone. Returns 0 when the commit is
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
