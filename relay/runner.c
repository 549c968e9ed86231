/*
 * runner - the queue runner. See runner.h.
 *
 * This file: the schedule (a GSequence of mails by due time), rounds (one
 * delivery attempt of a mail: read it, group its pending recipients into
 * one job per destination, end when every job has ended, DSN owed sent),
 * the in-memory index of queued mails (loaded from the spool at start),
 * and the life cycle (start, reload, stop). The other parts of the runner
 * are listed in relay/runner_int.h: destinations and connections
 * (dest.c), what outcomes do to a mail (runner_outcome.c), the mail's
 * files (mail_state.c), the suppression list (runner_learn.c), reports
 * for bounce_address (runner_bounce.c), DSNs (dsn_queue.c), the control
 * socket (runner_admin.c).
 *
 * A mail due for destinations that are all full is parked beside one of
 * them (dest.c) instead of starting a round, so it takes no share of
 * MAX_ROUNDS_AT_ONCE (SPEC §5: one destination never holds up another).
 *
 * About 1,000 lines: a round's steps (read, group, skip, finish) share the
 * schedule and the index, and reload reschedules through all three.
 */
#include "relay/runner.h"
#include "relay/runner_int.h"

static gint sched_cmp(gconstpointer a, gconstpointer b, gpointer data);
static void job_free(struct job *job);
static bool mail_done(const struct qmail *m);
static void expired_logged(struct qmail *m, void *arg);
static void suppressed_logged(struct qmail *m, void *arg);
static void round_read_done(uv_work_t *w, int status);
static struct dest *mail_held_by(struct qmail *m, uint64_t now, uint64_t *until,
                                 struct dest_down **down);
static void round_skip(struct qmail *m, struct dest *d, const struct dest_down *down, uint64_t now,
                       uint64_t until);
static GPtrArray *mail_dests(struct qmail *m);
static void round_release_dests(struct qmail *m);
static void round_start(struct qmail *m);
static void runner_tick(uv_timer_t *t);
static void runner_arm(struct runner *r);
static void sweep_cb(uv_timer_t *t);
static struct qmail *mail_new(struct runner *r, const struct queue_envelope *env);
static void load_work(uv_work_t *w);
static void load_after(uv_work_t *w, int status);
static void load_locals(struct runner *r);
static int runner_apply(struct runner *r, const struct config *cfg);
static void runner_close_handles(struct runner *r);
static void runner_maybe_stopped(struct runner *r);
/* Whether the mail's round only waits for connections (struct qmail);
 * when it starts to, a global slot is free for the next due mail. */
void mail_waiting_update(struct qmail *m)
{
	struct runner *r = m->r;
	bool w = m->in_round && m->queued_jobs > 0 && m->queued_jobs >= m->outstanding;
	if (w == m->waiting_round)
		return;
	m->waiting_round = w;
	if (w) {
		r->waiting_rounds++;
		r->waiting_bytes += m->env.size;
		runner_arm(r);
	} else {
		r->waiting_rounds--;
		r->waiting_bytes -= m->env.size;
	}
}

/* Room for one more round of a mail of SIZE bytes (MAX_ROUNDS_AT_ONCE,
 * ROUND_BYTES_MAX; rounds that only wait for a connection aside). */
static bool round_room(const struct runner *r, uint64_t size)
{
	unsigned active = r->rounds - r->waiting_rounds;
	if (active >= MAX_ROUNDS_AT_ONCE)
		return false;
	return active == 0 || r->round_bytes - r->waiting_bytes + size <= ROUND_BYTES_MAX;
}

uint64_t runner_backoff_ms(const struct config *cfg, unsigned attempt)
{
	uint64_t d = cfg->queue.retry_min_ms;
	for (unsigned i = 1; i < attempt && d < cfg->queue.retry_max_ms; i++)
		d *= 2;
	return d < cfg->queue.retry_max_ms ? d : cfg->queue.retry_max_ms;
}

/* ---- the schedule ---------------------------------------------------- */

static gint sched_cmp(gconstpointer a, gconstpointer b, gpointer data)
{
	(void)data;
	const struct qmail *x = a, *y = b;
	if (x->next_ms != y->next_ms)
		return x->next_ms < y->next_ms ? -1 : 1;
	return strcmp(x->env.id, y->env.id);
}

void schedule_mail(struct qmail *m, uint64_t when)
{
	struct runner *r = m->r;
	if (m->sched)
		g_sequence_remove(m->sched);
	m->next_ms = when;
	m->sched = g_sequence_insert_sorted(r->schedule, m, sched_cmp, NULL);
	runner_arm(r);
}

void mail_data_free(struct qmail *m)
{
	if (m->hot)
		queue_message_release(m->r->q, m->len);
	free(m->data);
	m->data = NULL;
	m->len = 0;
	m->hot = false;
}

void mail_unref(struct qmail *m)
{
	if (--m->refs > 0)
		return;
	mail_rcpt_domains_free(m);
	queue_envelope_free(&m->env);
	mail_data_free(m);
	free(m->held_by);
	if (m->failures)
		g_array_free(m->failures, TRUE);
	if (m->strings)
		g_ptr_array_free(m->strings, TRUE);
	if (m->starting)
		g_ptr_array_free(m->starting, TRUE);
	if (m->waiting)
		g_array_free(m->waiting, TRUE);
	if (m->inflight)
		g_array_free(m->inflight, TRUE);
	free(m);
}

static void job_free(struct job *job)
{
	if (job->settling)
		job->d->jobs_settling--;
	job->d->njobs--;
	g_array_free(job->rcpts, TRUE);
	free(job->domain);
	dest_unpark(job->d);
	free(job);
}

void round_job_done(struct job *job)
{
	struct qmail *m = job->m;
	job_free(job);
	if (--m->outstanding == 0)
		round_end(m);
	else
		mail_waiting_update(m);
}

static bool mail_done(const struct qmail *m)
{
	if (m->failures && m->failures->len)
		return false; /* a DSN is still owed */
	for (size_t i = 0; i < m->env.nrcpts; i++)
		if (m->env.rcpts[i].state == RCPT_PENDING)
			return false;
	return true;
}

/* SPEC §7: "deleted", with every recipient still pending. */
void log_deleted(struct qmail *m)
{
	json_t *f = json_object(), *to = json_array();
	json_object_set_new(f, "queue_id", json_string(m->env.id));
	for (size_t i = 0; i < m->env.nrcpts; i++)
		if (m->env.rcpts[i].state == RCPT_PENDING)
			json_array_append_new(to, jstr(m->env.rcpts[i].addr));
	json_object_set_new(f, "to", to);
	evlog_emit(m->r->log, "deleted", f);
	m->r->stats.deleted++;
}

/* The end of a round: the mail leaves the queue or waits for its next. */
void round_finish(struct qmail *m)
{
	struct runner *r = m->r;
	mail_data_free(m);
	m->in_round = false;
	mail_waiting_update(m);
	r->rounds--;
	r->round_bytes -= m->env.size;
	if (m->delete_requested) {
		log_deleted(m);
		mail_delete(m);
	} else if (mail_done(m)) {
		mail_delete(m);
	} else {
		uint64_t now = clock_now_ms(), until;
		uint64_t next = now + runner_backoff_ms(r->cfg, m->attempts);
		struct dest_down *down;
		/* Paused (the service, or a policy holding every pending
		 * recipient): nothing can go before the pause ends. */
		struct dest *held = mail_held_by(m, now, &until, &down);
		if (held && held->paused_until > now && until > next)
			next = until;
		/* The delay warning is sent at the end of a round: give the mail
		 * one at the moment it is due (SPEC §5 delay_warning). */
		uint64_t warn = delay_warning_at(m);
		if (warn > now && warn < next)
			next = warn;
		schedule_mail(m, next);
	}
	runner_arm(r);
	runner_maybe_stopped(r);
}

void round_end(struct qmail *m)
{
	/* A mail an administrator deleted meanwhile owes its sender nothing. */
	if (m->delete_requested && m->failures)
		g_array_set_size(m->failures, 0);
	if (!round_send_dsn(m) && !round_send_delay_warning(m))
		round_finish(m);
}

static void expired_logged(struct qmail *m, void *arg)
{
	struct expiry *x = arg;
	struct smtp_reply rep;
	outcome_set(&rep, OUT_EXPIRED);
	for (guint k = 0; k < x->idx->len; k++) {
		m->r->stats.expired++;
		log_outcome(m->r, "expired", m, g_array_index(x->idx, unsigned, k), NULL, &rep, false, 0);
	}
	g_array_free(x->idx, TRUE);
	free(x);
	round_end(m);
}

static void suppressed_logged(struct qmail *m, void *arg)
{
	struct supp_round *sr = arg;
	for (guint k = 0; k < sr->idx->len; k++) {
		unsigned i = g_array_index(sr->idx, unsigned, k);
		json_t *f = json_object();
		json_object_set_new(f, "queue_id", json_string(m->env.id));
		json_object_set_new(f, "to", jstr(m->env.rcpts[i].addr));
		json_object_set_new(f, "route", jstr(m->env.route ? m->env.route : "direct"));
		json_object_set_new(f, "reason", jstr(g_ptr_array_index(sr->reason, k)));
		evlog_emit(m->r->log, "suppressed", f);
		m->r->stats.suppressed++;
	}
	g_array_free(sr->idx, TRUE);
	g_ptr_array_free(sr->reason, TRUE);
	free(sr);
	if (--m->outstanding == 0)
		round_end(m);
	else
		mail_waiting_update(m);
}

static void round_read_done(uv_work_t *w, int status)
{
	struct disk_job *j = w->data;
	struct qmail *m = j->m;
	struct runner *r = m->r;
	(void)status;
	if (j->status < 0 || !j->data) {
		fprintf(stderr, "hikyaku: cannot read queued mail %s: %s; it stays in the queue\n",
		        m->env.id, strerror(j->status < 0 ? -j->status : EIO));
		free(j->data);
		if (j->supp_idx)
			g_array_free(j->supp_idx, TRUE);
		if (j->supp_reason)
			g_ptr_array_free(j->supp_reason, TRUE);
		free(j);
		m->in_round = false;
		mail_waiting_update(m);
		r->rounds--;
		r->round_bytes -= m->env.size;
		round_release_dests(m);
		schedule_mail(m, clock_now_ms() + runner_backoff_ms(r->cfg, m->attempts));
		mail_unref(m);
		return;
	}
	m->len = j->len;
	m->data = j->data;
	GArray *supp_idx = j->supp_idx;
	GPtrArray *supp_reason = j->supp_reason;
	free(j);

	/* Suppressed recipients (SPEC §6 item 3): not sent, logged, reported. */
	struct supp_round *sr = NULL;
	if (supp_idx && supp_idx->len) {
		sr = calloc(1, sizeof(*sr));
		sr->idx = supp_idx;
		sr->reason = supp_reason;
		for (guint k = 0; k < supp_idx->len; k++) {
			unsigned i = g_array_index(supp_idx, unsigned, k);
			rcpt_set_state(m, i, RCPT_SUPPRESSED);
			free(m->env.rcpts[i].last);
			m->env.rcpts[i].last = strdup("not sent: on the suppression list");
			add_failure(m, i, OUTCOME_STATUS_SUPPRESSED, NULL, NULL, OUTCOME_REASON_SUPPRESSED);
		}
	} else {
		if (supp_idx)
			g_array_free(supp_idx, TRUE);
		if (supp_reason)
			g_ptr_array_free(supp_reason, TRUE);
	}

	GHashTable *groups = g_hash_table_new_full(g_str_hash, g_str_equal, free, NULL);
	GPtrArray *jobs = g_ptr_array_new();
	bool service = m->env.route && strcmp(m->env.route, "service") == 0;
	struct smtp_reply rep;
	GArray *bad = g_array_new(FALSE, FALSE, sizeof(unsigned));
	struct bounce_job *bj = NULL;
	for (unsigned i = 0; i < m->env.nrcpts; i++) {
		if (m->env.rcpts[i].state != RCPT_PENDING)
			continue;
		const char *tag;
		size_t tag_len;
		if (config_is_bounce_address(r->cfg, m->env.rcpts[i].addr, &tag, &tag_len)) {
			if (!bj) {
				bj = calloc(1, sizeof(*bj));
				bj->work.data = bj;
				bj->m = m;
				bj->idx = g_array_new(FALSE, FALSE, sizeof(unsigned));
				bj->tags = g_ptr_array_new_with_free_func(g_free);
				bj->found = g_array_new(FALSE, TRUE, sizeof(struct bounce_found));
			}
			g_array_append_val(bj->idx, i);
			g_ptr_array_add(bj->tags, g_strndup(tag ? tag : "", tag_len));
			continue;
		}
		/* One job per recipient domain; a policy's domains share
		 * its destination (relay/dest.c). */
		const char *d0 = service ? NULL : mail_rcpt_domain(m, i);
		char *dom = service ? strdup("service") : d0 ? strdup(d0) : NULL;
		char *key = !dom ? NULL : service ? strdup(DEST_KEY_SERVICE) : dest_key_for_domain(r->cfg, dom);
		if (!key) {
			free(dom);
			g_array_append_val(bad, i);
			continue;
		}
		struct job *job = g_hash_table_lookup(groups, dom);
		if (!job) {
			job = calloc(1, sizeof(*job));
			job->m = m;
			job->d = dest_get(r, key, service);
			job->d->njobs++;
			job->domain = strdup(dom);
			job->rcpts = g_array_new(FALSE, FALSE, sizeof(unsigned));
			g_hash_table_insert(groups, dom, job);
			g_ptr_array_add(jobs, job);
		} else {
			free(dom);
		}
		free(key);
		g_array_append_val(job->rcpts, i);
	}
	g_hash_table_destroy(groups);
	round_release_dests(m);
	m->outstanding = (int)jobs->len + (bad->len ? 1 : 0) + (sr ? 1 : 0) + (bj ? 1 : 0);
	if (sr)
		state_save(m, suppressed_logged, sr);
	if (bj && uv_queue_work(r->loop, &bj->work, bounce_work, bounce_after) < 0)
		bounce_after(&bj->work, -1);
	if (m->outstanding == 0) {
		g_array_free(bad, TRUE);
		g_ptr_array_free(jobs, TRUE);
		round_end(m);
		mail_unref(m);
		return;
	}
	if (bad->len) {
		struct job *job = calloc(1, sizeof(*job));
		job->m = m;
		job->d = dest_get(r, DEST_KEY_INVALID, false);
		job->d->njobs++;
		job->domain = strdup("invalid");
		job->rcpts = bad;
		outcome_set(&rep, OUT_BAD_DOMAIN);
		job_fail(job, NULL, OUTCOME_BOUNCED, &rep);
	} else {
		g_array_free(bad, TRUE);
	}
	for (guint k = 0; k < jobs->len; k++) {
		struct job *job = g_ptr_array_index(jobs, k);
		dest_push_job(job->d, job, false);
		dest_kick(job->d);
	}
	g_ptr_array_free(jobs, TRUE);
	mail_unref(m);
}

/* The destination that holds the mail back: every destination of its
 * pending recipients is down or paused now (a policy: paused, or down for
 * that recipient's domain; *down: that domain's state, or NULL when the
 * holder is paused). NULL: try it. */
static struct dest *mail_held_by(struct qmail *m, uint64_t now, uint64_t *until,
                                 struct dest_down **down)
{
	struct runner *r = m->r;
	struct dest *held = NULL;
	*until = UINT64_MAX;
	*down = NULL;
	if (m->env.route && strcmp(m->env.route, "service") == 0) {
		struct dest *d = g_hash_table_lookup(r->dests, DEST_KEY_SERVICE);
		uint64_t u = d ? (d->down.until > d->paused_until ? d->down.until : d->paused_until) : 0;
		if (u <= now)
			return NULL;
		*until = u;
		*down = d->paused_until > now ? NULL : &d->down;
		return d;
	}
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (m->env.rcpts[i].state != RCPT_PENDING)
			continue;
		const char *dom = mail_rcpt_domain(m, i);
		char *key = dom ? dest_key_for_domain(r->cfg, dom) : NULL;
		struct dest *d = key ? g_hash_table_lookup(r->dests, key) : NULL;
		struct dest_down *x = d ? dest_down_of(d, dom, false) : NULL;
		free(key);
		if (!d)
			return NULL;
		uint64_t u = d->paused_until;
		if (x && x->until > u)
			u = x->until;
		if (u <= now)
			return NULL;
		if (u < *until)
			*until = u;
		held = d;
		*down = d->paused_until > now ? NULL : x;
	}
	return held;
}

/*
 * A mail held back by its destination is deferred as it stands: no file
 * read, no connection, no state write (a restart simply tries it). It
 * comes back when the destination may be tried again, spread over a
 * tenth of the wait so that a large queue does not return all at once.
 */
static void round_skip(struct qmail *m, struct dest *d, const struct dest_down *down, uint64_t now,
                       uint64_t until)
{
	struct runner *r = m->r;
	struct smtp_reply rep;
	if (!down && d->service)
		outcome_set(&rep, OUT_SUSPENDED_PAUSED, d->pause_reason);
	else if (!down)
		dest_paused_reply(d, &rep);
	else {
		outcome_set(&rep, OUT_SUSPENDED_DOWN, down->rep.text);
		if (down->rep.status[0])
			snprintf(rep.status, sizeof(rep.status), "%s", down->rep.status);
	}
	uint64_t spread = (until - now) / 10;
	if (spread > INT32_MAX)
		spread = INT32_MAX;
	uint64_t next = until + (spread ? (uint64_t)g_random_int_range(0, (gint32)spread) : 0);
	char line[600];
	outcome_reply_line(&rep, line, sizeof(line));
	mail_data_free(m); /* held for a while: its round reads it back */
	free(m->held_by);
	m->held_by = strdup(d->key);
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (m->env.rcpts[i].state != RCPT_PENDING)
			continue;
		r->stats.deferred++;
		/* Shown by "queue list" while the daemon runs; not on disk. */
		free(m->env.rcpts[i].last);
		m->env.rcpts[i].last = strdup(line);
		log_outcome(r, "deferred", m, (unsigned)i, NULL, &rep, false, next);
	}
	schedule_mail(m, next);
	mail_move_out(m); /* after: its state names the next try */
}

/* The destinations of a mail's pending recipients (made when new). */
static GPtrArray *mail_dests(struct qmail *m)
{
	struct runner *r = m->r;
	GPtrArray *out = g_ptr_array_new();
	if (m->env.route && strcmp(m->env.route, "service") == 0) {
		g_ptr_array_add(out, dest_get(r, DEST_KEY_SERVICE, true));
		return out;
	}
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (m->env.rcpts[i].state != RCPT_PENDING ||
		    config_is_bounce_address(r->cfg, m->env.rcpts[i].addr, NULL, NULL))
			continue;
		char *key = mail_rcpt_dest_key(m, i);
		if (!key)
			continue;
		struct dest *d = dest_get(r, key, false);
		free(key);
		if (!g_ptr_array_find(out, d, NULL))
			g_ptr_array_add(out, d);
	}
	return out;
}

/* The round's jobs are made (or it ended before): the destinations it
 * counted on may take the next parked mails. */
static void round_release_dests(struct qmail *m)
{
	GPtrArray *ds = m->starting;
	if (!ds)
		return;
	m->starting = NULL;
	for (guint k = 0; k < ds->len; k++) {
		struct dest *d = g_ptr_array_index(ds, k);
		d->starting--;
		dest_unpark(d);
	}
	g_ptr_array_free(ds, TRUE);
}

static void round_start(struct qmail *m)
{
	struct runner *r = m->r;
	uint64_t now = clock_now_ms(), until;
	struct dest *held;
	struct dest_down *down;
	bool live = now < m->env.arrival_ms + r->cfg->queue.lifetime_ms && !m->delete_requested &&
	            !(m->failures && m->failures->len);
	/* A mail whose delay warning is due has a round even when it is held
	 * back: the warning goes at its end (its jobs fail at once). */
	uint64_t warn = delay_warning_at(m);
	if (live && !(warn && warn <= now) && (held = mail_held_by(m, now, &until, &down))) {
		round_skip(m, held, down, now, until);
		return;
	}
	free(m->held_by); /* not held now: a reload has nothing to bring forward */
	m->held_by = NULL;
	GPtrArray *ds = mail_dests(m);
	bool full = live && ds->len > 0;
	for (guint k = 0; full && k < ds->len; k++)
		full = dest_full(g_ptr_array_index(ds, k));
	if (full) {
		struct dest *d = g_ptr_array_index(ds, 0);
		/* It may wait long behind a slow destination: past half of
		 * FIRST_ROUND_COPY_MAX its copy goes, so that parked mails
		 * never keep the fresh mails of other destinations from
		 * theirs (its round reads it back). */
		if (queue_messages_kept(r->q) > FIRST_ROUND_COPY_MAX / 2)
			mail_data_free(m);
		m->parked_on = d;
		m->park_link.data = m;
		g_queue_push_tail_link(&d->parked, &m->park_link);
		g_ptr_array_free(ds, TRUE);
		return;
	}
	m->in_round = true;
	r->rounds++;
	r->round_bytes += m->env.size;
	m->attempts++;
	if (clock_now_ms() >= m->env.arrival_ms + r->cfg->queue.lifetime_ms) {
		struct expiry *x = calloc(1, sizeof(*x));
		x->idx = g_array_new(FALSE, FALSE, sizeof(unsigned));
		for (unsigned i = 0; i < m->env.nrcpts; i++) {
			if (m->env.rcpts[i].state != RCPT_PENDING)
				continue;
			rcpt_set_state(m, i, RCPT_EXPIRED);
			add_failure(m, i, outcome_synthetic(OUT_EXPIRED)->status, NULL, NULL,
			            OUTCOME_REASON_EXPIRED);
			g_array_append_val(x->idx, i);
		}
		g_ptr_array_free(ds, TRUE);
		state_save(m, expired_logged, x);
		return;
	}
	for (guint k = 0; k < ds->len; k++)
		((struct dest *)g_ptr_array_index(ds, k))->starting++;
	m->starting = ds;
	struct disk_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->m = m;
	m->refs++;
	memcpy(j->id, m->env.id, sizeof(j->id));
	j->check_supp = (m->env.route && strcmp(m->env.route, "service") == 0) ||
	                r->cfg->suppression.apply_to == APPLY_ALL;
	if (m->data) {
		/* The queue's copy from its commit: nothing to read. */
		j->data = m->data;
		j->len = m->len;
		if (!j->check_supp || !r->supp) {
			round_read_done(&j->work, 0);
			return;
		}
	}
	uv_queue_work(r->loop, &j->work, mail_read_work, round_read_done);
}

static void runner_tick(uv_timer_t *t)
{
	struct runner *r = t->data;
	uint64_t now = clock_now_ms();
	while (!r->stopping) {
		GSequenceIter *it = g_sequence_get_begin_iter(r->schedule);
		if (g_sequence_iter_is_end(it))
			break;
		struct qmail *m = g_sequence_get(it);
		if (m->next_ms > now || !round_room(r, m->env.size))
			break;
		g_sequence_remove(it);
		m->sched = NULL;
		round_start(m);
	}
	runner_arm(r);
}

static void runner_arm(struct runner *r)
{
	if (r->stopping)
		return;
	GSequenceIter *it = g_sequence_get_begin_iter(r->schedule);
	if (g_sequence_iter_is_end(it)) {
		uv_timer_stop(&r->timer);
		return;
	}
	struct qmail *m = g_sequence_get(it);
	if (!round_room(r, m->env.size))
		return;     /* the end of a round arms the timer again */
	uint64_t now = clock_now_ms();
	uv_timer_start(&r->timer, runner_tick, m->next_ms > now ? m->next_ms - now : 0, 0);
}

static void sweep_cb(uv_timer_t *t)
{
	struct runner *r = t->data;
	uint64_t now = clock_now_ms();
	/* Records of what the service got are needed for a bounce for the
	 * queue lifetime after delivery (SPEC §6); forget older ones hourly. */
	if (r->supp && ++r->sweeps % 3600 == 1 && now > r->cfg->queue.lifetime_ms) {
		struct sent_job *j = calloc(1, sizeof(*j));
		j->work.data = j;
		j->r = r;
		j->prune_before = (int64_t)(now - r->cfg->queue.lifetime_ms);
		if (uv_queue_work(r->loop, &j->work, sent_record_work, sent_record_after) < 0)
			sent_record_after(&j->work, -1);
	}
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->dests);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		struct dest *d = v;
		dest_sweep(d, now);
		if (dest_idle(d, now)) {
			g_hash_table_iter_remove(&it);
			uv_close((uv_handle_t *)&d->rate_timer, dest_closed);
		}
	}
}

/* ---- the index ------------------------------------------------------- */

static struct qmail *mail_new(struct runner *r, const struct queue_envelope *env)
{
	struct qmail *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->r = r;
	m->refs = 1;
	if (queue_envelope_copy(&m->env, env) < 0) {
		free(m);
		return NULL;
	}
	queue_tag_ref(r->tag_key, m->env.id, m->ref);
	return m;
}

void runner_add(struct runner *r, const struct queue_envelope *env, char *msg, size_t msg_len)
{
	struct qmail *m = mail_new(r, env);
	if (!m) {
		if (msg) {
			free(msg);
			queue_message_release(r->q, msg_len);
		}
		return;
	}
	if (msg) {
		m->data = msg;
		m->len = msg_len;
		m->hot = true;
	}
	if (g_hash_table_contains(r->mails, m->env.id)) {
		mail_unref(m);
		return;
	}
	g_hash_table_insert(r->mails, m->env.id, m);
	r->queued_bytes += m->env.size;
	gauges_add(r, m);
	r->stats.queued = g_hash_table_size(r->mails);
	schedule_mail(m, clock_now_ms());
}

static void load_work(uv_work_t *w)
{
	struct load_job *lj = w->data;
	GPtrArray *ids;
	if (queue_fs_list(lj->queue_dir, &ids) < 0)
		return;
	for (guint i = 0; i < ids->len; i++) {
		const char *id = g_ptr_array_index(ids, i);
		struct load_item it = { 0 };
		if (queue_read_envelope(lj->queue_dir, id, &it.env, NULL) < 0) {
			fprintf(stderr, "hikyaku: queued mail %s is unreadable; left in place\n", id);
			lj->errors++;
			continue;
		}
		/* An unreadable state file: the mail is tried again from the start. */
		queue_state_load(lj->queue_dir, id, &it.env, &it.st);
		g_array_append_val(lj->items, it);
	}
	g_ptr_array_free(ids, TRUE);
}

static void load_after(uv_work_t *w, int status)
{
	(void)status;
	struct load_job *lj = w->data;
	struct runner *r = lj->r;
	uint64_t now = clock_now_ms();
	for (guint i = 0; i < lj->items->len; i++) {
		struct load_item *it = &g_array_index(lj->items, struct load_item, i);
		struct qmail *m = calloc(1, sizeof(*m));
		m->r = r;
		m->refs = 1;
		m->env = it->env;
		m->moved_out = true; /* a start leaves nothing in the log */
		queue_tag_ref(r->tag_key, m->env.id, m->ref);
		m->attempts = it->st.attempts;
		m->last_ms = it->st.last_ms;
		m->warned_ms = it->st.warned_ms;
		size_t k;
		json_t *e;
		json_array_foreach(it->st.notify, k, e) {
			json_int_t ri = json_integer_value(json_object_get(e, "i"));
			const char *st = json_string_value(json_object_get(e, "status"));
			if (ri < 0 || (size_t)ri >= m->env.nrcpts || !st)
				continue;
			add_failure(m, (unsigned)ri, st, json_string_value(json_object_get(e, "remote")),
			            json_string_value(json_object_get(e, "diagnostic")),
			            json_string_value(json_object_get(e, "reason")) ?
			            json_string_value(json_object_get(e, "reason")) : "delivery failed");
		}
		json_decref(it->st.notify);
		if (g_hash_table_contains(r->mails, m->env.id)) {
			mail_unref(m);
			continue;
		}
		g_hash_table_insert(r->mails, m->env.id, m);
		r->queued_bytes += m->env.size;
		gauges_add(r, m);
		if (mail_done(m))
			mail_delete(m);
		else
			schedule_mail(m, it->st.next_ms > now ? it->st.next_ms : now);
	}
	r->stats.queued = g_hash_table_size(r->mails);
	fprintf(stderr, "hikyaku: %u queued mails loaded\n", lj->items->len);
	g_array_free(lj->items, TRUE);
	free(lj->queue_dir);
	free(lj);
}

int runner_load(struct runner *r)
{
	struct load_job *lj = calloc(1, sizeof(*lj));
	if (!lj)
		return -ENOMEM;
	lj->work.data = lj;
	lj->r = r;
	lj->items = g_array_new(FALSE, TRUE, sizeof(struct load_item));
	lj->queue_dir = strdup(queue_dir(r->q));
	return uv_queue_work(r->loop, &lj->work, load_work, load_after);
}

/* The host's own addresses, for the loop check (SPEC §5): a wildcard
 * listener answers on each of them. */
static void load_locals(struct runner *r)
{
	struct ifaddrs *ifa;
	free(r->locals);
	r->locals = NULL;
	r->nlocals = 0;
	if (getifaddrs(&ifa) < 0)
		return;
	size_t n = 0;
	for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
		n += p->ifa_addr && (p->ifa_addr->sa_family == AF_INET ||
		                     p->ifa_addr->sa_family == AF_INET6);
	r->locals = calloc(n ? n : 1, sizeof(*r->locals));
	for (struct ifaddrs *p = ifa; r->locals && p; p = p->ifa_next) {
		if (!p->ifa_addr || (p->ifa_addr->sa_family != AF_INET &&
		                     p->ifa_addr->sa_family != AF_INET6))
			continue;
		memcpy(&r->locals[r->nlocals++], p->ifa_addr, p->ifa_addr->sa_family == AF_INET ?
		       sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	}
	freeifaddrs(ifa);
}

static int runner_apply(struct runner *r, const struct config *cfg)
{
	char err[300];
	SSL_CTX *verify = tls_client_ctx_new(true, cfg->service.ca_file, err, sizeof(err));
	SSL_CTX *any = tls_client_ctx_new(false, NULL, err, sizeof(err));
	if (!verify || !any) {
		fprintf(stderr, "hikyaku: %s\n", err);
		SSL_CTX_free(verify);
		SSL_CTX_free(any);
		return -1;
	}
	struct dns_resolver *dns;
	int rc = dns_resolver_new(r->loop, cfg->direct.dns_servers, cfg->direct.ndns_servers,
	                          DNS_TIMEOUT_MS, &dns);
	if (rc < 0) {
		fprintf(stderr, "hikyaku: cannot start the DNS resolver: %s\n", uv_strerror(rc));
		SSL_CTX_free(verify);
		SSL_CTX_free(any);
		return -1;
	}
	SSL_CTX_free(r->tls_verify);
	SSL_CTX_free(r->tls_any);
	r->tls_verify = verify;
	r->tls_any = any;
	struct dns_resolver *old_dns = r->dns;
	r->dns = dns;
	if (old_dns)
		dns_resolver_free(old_dns); /* its lookups come back "cancelled": retried */
	if (r->service_password)
		explicit_bzero(r->service_password, strlen(r->service_password));
	free(r->service_password);
	r->service_password = password_file_read(cfg->service.password_file);
	load_locals(r);
	struct config *old = r->cfg;
	r->cfg = config_ref((struct config *)cfg);
	config_unref(old);
	return 0;
}

int runner_new(uv_loop_t *loop, const struct config *cfg, struct queue *q, struct evlog *log,
               struct runner **out)
{
	struct runner *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->loop = loop;
	r->q = q;
	queue_keep_messages(q, FIRST_ROUND_COPY_MAX);
	r->log = log;
	route_init();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/state", queue_dir(q));
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		int e = -errno;
		free(r);
		return e;
	}
	r->qdir = strdup(queue_dir(q));
	r->state_retry = g_ptr_array_new();
	r->schedule = g_sequence_new(NULL);
	r->arrivals = g_sequence_new(NULL);
	r->fin_waiting = g_array_new(FALSE, FALSE, sizeof(struct fin_req));
	r->mails = g_hash_table_new(g_str_hash, g_str_equal);
	r->dests = g_hash_table_new(g_str_hash, g_str_equal);
	r->notifying = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	uv_mutex_init(&r->supp_lock);
	int trc = queue_tag_key_load(r->qdir, r->tag_key);
	if (trc < 0) {
		fprintf(stderr, "hikyaku: cannot read or make %s/tag.key: %s\n", r->qdir,
		        strerror(-trc));
		uv_mutex_destroy(&r->supp_lock);
		g_hash_table_destroy(r->notifying);
		g_hash_table_destroy(r->dests);
		g_hash_table_destroy(r->mails);
		g_sequence_free(r->schedule);
		g_sequence_free(r->arrivals);
		g_array_free(r->fin_waiting, TRUE);
		g_ptr_array_free(r->state_retry, TRUE);
		free(r->qdir);
		free(r);
		return trc;
	}
	/* PostgreSQL: a local copy and journal beside the spool (SPEC §6.6). */
	int src = supp_open_spool(cfg->suppression.db, queue_dir(q), &r->supp);
	if (src < 0) {
		char shown[256];
		supp_db_display(cfg->suppression.db, shown, sizeof(shown));
		fprintf(stderr, "hikyaku: cannot open the suppression list %s (%s); "
		        "mail is delivered without it\n", shown, supp_strerror(src));
		r->supp = NULL;
	}
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uv_timer_init(loop, &r->sweep);
	r->sweep.data = r;
	uv_timer_init(loop, &r->retry_timer);
	r->retry_timer.data = r;
	if (runner_apply(r, cfg) < 0) {
		runner_free(r);
		return -EINVAL;
	}
	uv_timer_start(&r->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
	*out = r;
	return 0;
}

int runner_reload(struct runner *r, const struct config *cfg)
{
	if (runner_apply(r, cfg) < 0)
		return -1;
	/* Idle connections were made with the old settings (credentials,
	 * TLS policy, ports): new ones use the new. */
	GHashTableIter hit;
	gpointer hk, hv;
	uint64_t now = clock_now_ms();
	GPtrArray *cut = g_ptr_array_new(); /* policies whose pause ends sooner now */
	g_hash_table_iter_init(&hit, r->dests);
	while (g_hash_table_iter_next(&hit, &hk, &hv)) {
		struct dest *d = hv;
		uint64_t was = d->paused_until;
		dest_reload(d); /* a policy's new pause length; none once its section is gone */
		if (d->policy && was > now && d->paused_until < was)
			g_ptr_array_add(cut, d);
	}
	/* SPEC §3: a reload lifts the pause; the service's mail goes now. */
	struct dest *sd = g_hash_table_lookup(r->dests, DEST_KEY_SERVICE);
	if (sd)
		sd->paused_until = 0;
	/* The mails that wait out a pause go when it ends now: the service's
	 * at once, a policy's when its shorter pause is over. */
	GPtrArray *due = g_ptr_array_new();
	GArray *when = g_array_new(FALSE, FALSE, sizeof(uint64_t));
	for (GSequenceIter *it = g_sequence_get_begin_iter(r->schedule); !g_sequence_iter_is_end(it);
	     it = g_sequence_iter_next(it)) {
		struct qmail *m = g_sequence_get(it);
		uint64_t w = now;
		if (!(m->env.route && strcmp(m->env.route, "service") == 0)) {
			/* Held by a cut policy: by its key when the mail was put
			 * off (a policy whose section is gone maps none of its
			 * domains now), or by what its recipients map to now. */
			bool mine = false;
			for (guint k = 0; m->held_by && m->next_ms > now && !mine && k < cut->len; k++)
				mine = strcmp(((struct dest *)g_ptr_array_index(cut, k))->key, m->held_by) == 0;
			for (size_t i = 0; cut->len && m->next_ms > now && !mine && i < m->env.nrcpts; i++) {
				if (m->env.rcpts[i].state != RCPT_PENDING)
					continue;
				char *key = mail_rcpt_dest_key(m, i);
				struct dest *d = key ? g_hash_table_lookup(r->dests, key) : NULL;
				free(key);
				mine = d && g_ptr_array_find(cut, d, NULL);
			}
			if (!mine)
				continue;
			uint64_t until;
			struct dest_down *down;
			if (mail_held_by(m, now, &until, &down))
				w = until;
			if (w >= m->next_ms)
				continue;
		}
		g_ptr_array_add(due, m);
		g_array_append_val(when, w);
	}
	for (guint i = 0; i < due->len; i++)
		schedule_mail(g_ptr_array_index(due, i), g_array_index(when, uint64_t, i));
	g_array_free(when, TRUE);
	g_ptr_array_free(cut, TRUE);
	g_ptr_array_free(due, TRUE);
	runner_arm(r);
	return 0;
}

void runner_set_log(struct runner *r, struct evlog *log)
{
	r->log = log;
}

/* Every handle closed: the loop may end. */
static void runner_close_handles(struct runner *r)
{
	uv_close((uv_handle_t *)&r->timer, NULL);
	uv_close((uv_handle_t *)&r->sweep, NULL);
	uv_close((uv_handle_t *)&r->retry_timer, NULL);
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->dests);
	while (g_hash_table_iter_next(&it, &k, &v))
		uv_close((uv_handle_t *)&((struct dest *)v)->rate_timer, NULL);
	if (r->dns)
		dns_resolver_free(r->dns);
	r->dns = NULL;
}

static void runner_maybe_stopped(struct runner *r)
{
	if (r->stopping && r->rounds == 0 && r->stopped) {
		void (*cb)(void *) = r->stopped;
		r->stopped = NULL;
		runner_close_handles(r);
		cb(r->stopped_arg);
	}
}

void runner_stop(struct runner *r, void (*done)(void *arg), void *arg)
{
	r->stopping = true;
	r->stopped = done;
	r->stopped_arg = arg;
	uv_timer_stop(&r->timer);
	uv_timer_stop(&r->sweep);
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->dests);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		struct dest *d = v;
		dest_close_idle(d);
		uv_timer_stop(&d->rate_timer);
		d->rate_timer_on = false;
		struct smtp_reply srep;
		outcome_set(&srep, OUT_SHUTDOWN);
		struct job *job;
		while ((job = dest_pop_job(d)))
			job_fail(job, NULL, OUTCOME_DEFERRED, &srep);
	}
	runner_maybe_stopped(r);
}

/* After the loop has ended: the handles are closed, free the memory. */
void runner_free(struct runner *r)
{
	if (!r)
		return;
	GHashTableIter it;
	gpointer k, v;
	if (r->dests) {
		g_hash_table_iter_init(&it, r->dests);
		while (g_hash_table_iter_next(&it, &k, &v))
			dest_free(v);
		g_hash_table_destroy(r->dests);
	}
	if (r->mails) {
		g_hash_table_iter_init(&it, r->mails);
		while (g_hash_table_iter_next(&it, &k, &v))
			mail_unref(v);
		g_hash_table_destroy(r->mails);
	}
	if (r->schedule)
		g_sequence_free(r->schedule);
	if (r->arrivals)
		g_sequence_free(r->arrivals);
	if (r->fin_waiting)
		g_array_free(r->fin_waiting, TRUE);
	if (r->dns)
		dns_resolver_free(r->dns);
	if (r->supp)
		supp_close(r->supp);
	uv_mutex_destroy(&r->supp_lock);
	free(r->qdir);
	free(r->locals);
	if (r->notifying)
		g_hash_table_destroy(r->notifying);
	OPENSSL_cleanse(r->tag_key, sizeof(r->tag_key));
	if (r->state_retry)
		g_ptr_array_free(r->state_retry, TRUE);
	free(r->service_password);
	SSL_CTX_free(r->tls_verify);
	SSL_CTX_free(r->tls_any);
	config_unref(r->cfg);
	free(r);
}

uint64_t runner_queued_bytes(const struct runner *r)
{
	return r->queued_bytes;
}
