/*
 * runner_bounce - reports that arrive for bounce_address (SPEC §6.1), for
 * the queue runner: parsed and read (relay/bounce_in.c) on the thread
 * pool; a failed recipient is learned only when the report names a mail
 * hikyaku sent it by an unguessable reference (VERP QUEUEID-TAG,
 * Original-Envelope-Id QUEUEID-TAG, or the service's message id); each
 * recipient of a mail is reported to its sender at most once
 * (DIR/reported), the work per report is bounded, and the report is
 * consumed only after its notices are durable. Part of the runner
 * (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static void bounce_consumed(struct qmail *m, void *arg);
static void bounce_notices_done(struct bounce_job *j);
static void notice_rec_work(uv_work_t *w);
static void notice_rec_after(uv_work_t *w, int status);
static void bounce_notice_committed(void *arg, int status);

/* On the thread pool: parse the report and read it (bounce_in_read),
 * under the suppression list's lock. */
void bounce_work(uv_work_t *w)
{
	struct bounce_job *j = w->data;
	struct qmail *m = j->m;
	struct runner *r = m->r;
	struct dsn_report rep;
	int rc = dsn_parse(m->data, m->len, &rep);
	if (rc != 1) {
		if (rc == 0)
			dsn_report_free(&rep);
		return;
	}
	j->is_report = true;
	const char **tags = calloc(j->tags->len ? j->tags->len : 1, sizeof(*tags));
	for (guint t = 0; tags && t < j->tags->len; t++)
		tags[t] = g_ptr_array_index(j->tags, t);
	struct bounce_in_ctx ctx = { tags, tags ? j->tags->len : 0, r->qdir, &j->unavailable };
	uv_mutex_lock(&r->supp_lock);
	bounce_in_read(r->supp, &rep, &ctx, r->cfg->server.max_recipients, (int64_t)clock_now_ms(),
	               j->found, &j->unmatched, &j->ignored);
	uv_mutex_unlock(&r->supp_lock);
	free(tags);
	dsn_report_free(&rep);
}

static void bounce_consumed(struct qmail *m, void *arg)
{
	struct bounce_job *j = arg;
	g_array_free(j->idx, TRUE);
	g_ptr_array_free(j->tags, TRUE);
	g_array_free(j->found, TRUE);
	free(j);
	if (--m->outstanding == 0)
		round_end(m);
	else
		mail_waiting_update(m);
}

/* Every notice of the report is durable (or failed): only now is the
 * report consumed, so that a crash or a full disk loses no notice. */
static void bounce_notices_done(struct bounce_job *j)
{
	struct qmail *m = j->m;
	if (j->notice_failed) {
		fprintf(stderr, "hikyaku: a notice for report %s could not be queued; the report is "
		        "read again later\n", m->env.id);
		bounce_consumed(m, j);
		return;
	}
	if (j->unavailable) {
		/* SPEC §6.6: a bounce for another relay's mail while the shared
		 * store is away is kept, not dropped: its bounce_address recipients
		 * stay pending, so the report is read again at the next attempt
		 * (notices already sent are recorded in DIR/reported: none twice). */
		fprintf(stderr, "hikyaku: report %s: the records of %u failed recipient(s) could not "
		        "be read (the suppression database is unreachable); read again later\n",
		        m->env.id, j->unavailable);
		bounce_consumed(m, j);
		return;
	}
	/* Read, not relayed: the bounce address recipients are done. */
	for (guint k = 0; k < j->idx->len; k++)
		rcpt_set_state(m, g_array_index(j->idx, unsigned, k), RCPT_DELIVERED);
	state_save(m, bounce_consumed, j);
}

static void notice_rec_work(uv_work_t *w)
{
	struct notice_rec *n = w->data;
	n->rc = queue_fs_reported_add(n->r->qdir, n->qid, n->addr);
}

static void notice_rec_after(uv_work_t *w, int status)
{
	struct notice_rec *n = w->data;
	if (status < 0 || n->rc < 0)
		fprintf(stderr, "hikyaku: cannot record that the sender of %s was told about %s: %s\n",
		        n->qid, n->addr, strerror(n->rc < 0 ? -n->rc : EIO));
	g_hash_table_remove(n->r->notifying, n->key);
	struct bounce_job *j = n->j;
	free(n->addr);
	free(n->key);
	free(n);
	if (--j->notices == 0)
		bounce_notices_done(j);
}

/* A notice of a report is queued (status 0) or not: record it, then
 * count it done. */
static void bounce_notice_committed(void *arg, int status)
{
	struct notice_rec *n = arg;
	if (status == 0 &&
	    uv_queue_work(n->r->loop, &n->work, notice_rec_work, notice_rec_after) == 0)
		return;
	if (status != 0)
		n->j->notice_failed = true;
	g_hash_table_remove(n->r->notifying, n->key);
	struct bounce_job *j = n->j;
	free(n->addr);
	free(n->key);
	free(n);
	if (--j->notices == 0)
		bounce_notices_done(j);
}

void bounce_after(uv_work_t *w, int status)
{
	(void)status;
	struct bounce_job *j = w->data;
	struct qmail *m = j->m;
	struct runner *r = m->r;
	j->notices = 1; /* held until every notice below is under way */
	for (guint k = 0; k < j->found->len; k++) {
		struct bounce_found *f = &g_array_index(j->found, struct bounce_found, k);
		if (f->is_new) {
			evlog_learned(r->log, f->addr, "dsn", f->status, f->diagnostic);
		}
		char *key = g_strdup_printf("%s\n%s", f->qid, f->addr);
		char *low = g_ascii_strdown(key, -1);
		g_free(key);
		if (!f->notify || g_hash_table_contains(r->notifying, low)) {
			/* SPEC §6.1: each recipient of a mail is reported once. */
			g_free(low);
		} else {
			g_hash_table_add(r->notifying, low);
			/* The original sender's MAILER-DAEMON notice for that recipient. */
			struct dsn_info info = {
				.hostname = r->cfg->server.hostname,
				.queue_id = f->qid,
				.sender = f->sender,
				.arrival_ms = clock_now_ms(),
				.now_ms = clock_now_ms(),
			};
			struct dsn_rcpt dr = {
				.addr = f->addr,
				.action = "failed",
				.status = f->status,
				.remote_mta = f->remote,
				.diagnostic = f->diagnostic,
				.reason = OUTCOME_REASON_SERVICE_BOUNCE,
				.last_attempt_ms = clock_now_ms(),
			};
			struct notice_rec *n = calloc(1, sizeof(*n));
			n->work.data = n;
			n->r = r;
			n->j = j;
			memcpy(n->qid, f->qid, sizeof(n->qid));
			n->addr = strdup(f->addr);
			n->key = strdup(low);
			j->notices++;
			if (dsn_queue(r, NULL, &info, &dr, 1, false, bounce_notice_committed, n) < 0) {
				/* It cannot be built (and never will be): nothing to wait for. */
				g_hash_table_remove(r->notifying, n->key);
				free(n->addr);
				free(n->key);
				free(n);
				j->notices--;
			}
		}
		bounce_in_found_clear(f);
	}
	if (!j->is_report)
		fprintf(stderr, "hikyaku: mail %s to the bounce address is not a delivery status "
		        "report; ignored\n", m->env.id);
	else if (j->unmatched)
		fprintf(stderr, "hikyaku: report %s names %u failed recipient(s) of no mail hikyaku "
		        "sent; not learned\n", m->env.id, j->unmatched);
	if (j->ignored)
		fprintf(stderr, "hikyaku: report %s names more recipients than a mail has; %u "
		        "ignored\n", m->env.id, j->ignored);
	if (--j->notices == 0)
		bounce_notices_done(j);
}
