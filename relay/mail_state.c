/*
 * mail_state - a queued mail's files, for the queue runner: its state
 * file written after every change (one write at a time, in order, the
 * waiters told when it is durable; a failed write is tried again from a
 * loop timer, never by sleeping on the thread pool), finished mails
 * removed in batches (one directory sync each), the message read for a
 * round, with the suppression lookups of that round. The file work itself
 * is relay/queue_fs.c. Part of the runner (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static void state_write_work(uv_work_t *w);
static char *state_serialize(struct qmail *m);
static void state_write_after(uv_work_t *w, int status);
static void state_retry_cb(uv_timer_t *t);
static void state_write_start(struct qmail *m);
static void delete_work(uv_work_t *w);
static void delete_after(uv_work_t *w, int status);
static void fin_work(uv_work_t *w);
static void fin_after(uv_work_t *w, int status);
static void fin_start(struct runner *r);
static void state_write_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	j->status = queue_fs_write_state(queue_wal(j->r->q), j->r->qdir, j->id, j->text);
}

static char *state_serialize(struct qmail *m)
{
	/* Failures not yet reported to the sender: a restart still sends the DSN. */
	json_t *nt = json_array();
	for (guint k = 0; m->failures && k < m->failures->len; k++) {
		const struct dsn_rcpt *f = &g_array_index(m->failures, struct dsn_rcpt, k);
		size_t i = 0;
		while (i < m->env.nrcpts && m->env.rcpts[i].addr != f->addr)
			i++;
		json_t *e = json_object();
		json_object_set_new(e, "i", json_integer((json_int_t)i));
		json_object_set_new(e, "status", json_string(f->status));
		json_object_set_new(e, "remote", jstr(f->remote_mta));
		json_object_set_new(e, "diagnostic", jstr(f->diagnostic));
		json_object_set_new(e, "reason", jstr(f->reason));
		json_object_set_new(e, "at", json_integer((json_int_t)f->last_attempt_ms));
		json_array_append_new(nt, e);
	}
	struct queue_state st = { m->attempts, m->next_ms, m->last_ms, nt, m->warned_ms };
	char *s = queue_state_dump(&m->env, &st);
	json_decref(nt);
	return s;
}

static void state_write_after(uv_work_t *w, int status)
{
	struct disk_job *j = w->data;
	struct qmail *m = j->m;
	if (j->status < 0 || status < 0) {
		/* Nothing is logged or acted on before it is on disk (SPEC §5):
		 * the waiters wait, and the newest state is written again. */
		if (!j->retry)
			fprintf(stderr, "hikyaku: cannot record the state of %s: %s; retrying\n",
			        m->env.id, strerror(j->status < 0 ? -j->status : EIO));
		/* Again in a while, from a loop timer: a pool thread that slept
		 * here would hold up the queue commits, which must answer
		 * 452 4.3.1 on a full disk, not stall. */
		j->retry = true;
		g_ptr_array_add(m->r->state_retry, j);
		if (!uv_is_active((uv_handle_t *)&m->r->retry_timer))
			uv_timer_start(&m->r->retry_timer, state_retry_cb, STATE_RETRY_MS, 0);
		return;
	}
	free(j->text);
	free(j);
	m->writing = false;
	m->moved_out = true; /* the write moved it out of the log first */
	/* The waiters of this write are served; then, if more changes came,
	 * the next write starts with the newest state. */
	GArray *done = m->inflight;
	m->inflight = NULL;
	for (guint i = 0; done && i < done->len; i++) {
		struct state_waiter sw = g_array_index(done, struct state_waiter, i);
		sw.cb(m, sw.arg);
	}
	if (done)
		g_array_free(done, TRUE);
	if (m->dirty)
		state_write_start(m);
	mail_unref(m);
}

/* The state writes that failed, once more with the newest state. */
static void state_retry_cb(uv_timer_t *t)
{
	struct runner *r = t->data;
	GPtrArray *a = r->state_retry;
	r->state_retry = g_ptr_array_new();
	for (guint i = 0; i < a->len; i++) {
		struct disk_job *j = g_ptr_array_index(a, i);
		free(j->text);
		j->text = state_serialize(j->m);
		j->status = 0;
		if (uv_queue_work(r->loop, &j->work, state_write_work, state_write_after) < 0)
			state_write_after(&j->work, -1);
	}
	g_ptr_array_free(a, TRUE);
}

static void state_write_start(struct qmail *m)
{
	struct disk_job *j = calloc(1, sizeof(*j));
	m->dirty = false;
	m->writing = true;
	GArray *t = m->inflight;
	m->inflight = m->waiting;
	m->waiting = t;
	j->work.data = j;
	j->r = m->r;
	j->m = m;
	m->refs++;
	memcpy(j->id, m->env.id, sizeof(j->id));
	j->text = state_serialize(m);
	uv_queue_work(m->r->loop, &j->work, state_write_work, state_write_after);
}

/* Records the mail's current state durably, then calls cb. */
void state_save(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg)
{
	struct state_waiter sw = { cb, arg };
	if (!m->waiting)
		m->waiting = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
	g_array_append_val(m->waiting, sw);
	m->dirty = true;
	if (!m->writing)
		state_write_start(m);
}

static void moved_out(struct qmail *m, void *arg)
{
	(void)m;
	(void)arg;
}

/*
 * A mail held back without an attempt (its destination paused or down)
 * waits like a deferred one, so it leaves the segment log as a deferred
 * one does: by a state write (queue_fs_write_state() moves it out first),
 * which also keeps it in order with every other write and removal of the
 * mail. Once per mail: a mail loaded at start, or written once, is out.
 */
void mail_move_out(struct qmail *m)
{
	if (!m->moved_out)
		state_save(m, moved_out, NULL);
}

static void delete_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	const char *id = j->id;
	queue_fs_remove(queue_wal(j->r->q), j->r->qdir, &id, 1, &j->status);
}

static void delete_after(uv_work_t *w, int status)
{
	(void)status;
	struct disk_job *j = w->data;
	if (j->status < 0)
		fprintf(stderr, "hikyaku: cannot remove queued mail %s: %s\n", j->id,
		        strerror(-j->status));
	mail_unref(j->m);
	free(j);
}

void mail_delete(struct qmail *m)
{
	struct runner *r = m->r;
	m->removed = true;
	if (m->sched) {
		g_sequence_remove(m->sched);
		m->sched = NULL;
	}
	if (m->parked_on) {
		g_queue_unlink(&m->parked_on->parked, &m->park_link);
		m->parked_on = NULL;
	}
	g_hash_table_remove(r->mails, m->env.id);
	r->queued_bytes -= m->env.size;
	gauges_remove(r, m);
	if (m->finalized) {
		mail_unref(m); /* its files are gone already (mail_finalize) */
		return;
	}
	struct disk_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->m = m; /* the index's reference moves here */
	memcpy(j->id, m->env.id, sizeof(j->id));
	if (uv_queue_work(r->loop, &j->work, delete_work, delete_after) < 0)
		delete_after(&j->work, -1);
}

static void fin_work(uv_work_t *w)
{
	struct fin_batch *b = w->data;
	guint n = b->reqs->len;
	const char **ids = calloc(n ? n : 1, sizeof(*ids));
	int *st = calloc(n ? n : 1, sizeof(*st));
	if (!ids || !st) {
		for (guint i = 0; i < n; i++)
			g_array_index(b->reqs, struct fin_req, i).status = -ENOMEM;
	} else {
		for (guint i = 0; i < n; i++)
			ids[i] = g_array_index(b->reqs, struct fin_req, i).m->env.id;
		queue_fs_remove(queue_wal(b->r->q), b->r->qdir, ids, n, st);
		for (guint i = 0; i < n; i++)
			g_array_index(b->reqs, struct fin_req, i).status = st[i];
	}
	free(ids);
	free(st);
}

static void fin_after(uv_work_t *w, int status)
{
	struct fin_batch *b = w->data;
	struct runner *r = b->r;
	for (guint i = 0; i < b->reqs->len; i++) {
		struct fin_req *q = &g_array_index(b->reqs, struct fin_req, i);
		if (q->status == 0 && status == 0) {
			q->m->finalized = true;
			q->cb(q->m, q->arg);
		} else {
			/* Not surely gone: record the outcome in the state file
			 * instead, so that a restart does not send it again. */
			state_save(q->m, q->cb, q->arg);
		}
		mail_unref(q->m);
	}
	g_array_free(b->reqs, TRUE);
	free(b);
	r->fin_busy = false;
	if (r->fin_waiting->len)
		fin_start(r);
}

static void fin_start(struct runner *r)
{
	struct fin_batch *b = calloc(1, sizeof(*b));
	b->work.data = b;
	b->r = r;
	b->reqs = r->fin_waiting;
	r->fin_waiting = g_array_new(FALSE, FALSE, sizeof(struct fin_req));
	r->fin_busy = true;
	if (uv_queue_work(r->loop, &b->work, fin_work, fin_after) < 0)
		fin_after(&b->work, -1);
}

void mail_finalize(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg)
{
	struct runner *r = m->r;
	struct fin_req q = { m, cb, arg, 0 };
	m->refs++;
	g_array_append_val(r->fin_waiting, q);
	if (!r->fin_busy)
		fin_start(r);
}

bool mail_all_final(const struct qmail *m)
{
	if (m->failures && m->failures->len)
		return false;
	for (size_t i = 0; i < m->env.nrcpts; i++)
		if (m->env.rcpts[i].state == RCPT_PENDING)
			return false;
	return true;
}

void mail_read_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	if (!j->data) /* else the queue's copy (round_start()) */
		j->status = queue_fs_read_message(queue_wal(j->r->q), j->r->qdir, j->id, &j->data,
		                                  &j->len);
	/* SPEC §6: the list is consulted at every delivery attempt. Here, on
	 * the thread pool, since SQLite may touch the disk. */
	struct qmail *m = j->m;
	struct runner *r = j->r;
	if (j->status == 0 && j->check_supp && r->supp) {
		j->supp_idx = g_array_new(FALSE, FALSE, sizeof(unsigned));
		j->supp_reason = g_ptr_array_new_with_free_func(free);
		uv_mutex_lock(&r->supp_lock);
		for (unsigned i = 0; i < m->env.nrcpts; i++) {
			if (m->env.rcpts[i].state != RCPT_PENDING)
				continue;
			struct supp_entry e = { 0 };
			if (supp_lookup(r->supp, m->env.rcpts[i].addr, &e) == 1) {
				g_array_append_val(j->supp_idx, i);
				g_ptr_array_add(j->supp_reason, strdup(e.reason && *e.reason ? e.reason :
				                                        "on the suppression list"));
				supp_entry_free(&e);
			}
		}
		uv_mutex_unlock(&r->supp_lock);
	}
}
