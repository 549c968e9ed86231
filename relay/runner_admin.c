/*
 * runner_admin - the control socket's requests about the queue (SPEC §8):
 * list, show, retry, delete, status, as JSON for server/control.c. Part
 * of the runner (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static json_t *mail_view(const struct qmail *m, bool all);
static gint mail_id_cmp(gconstpointer a, gconstpointer b);
static void dests_release(struct runner *r, struct qmail *m);
static bool mail_retry(struct qmail *m, uint64_t now);
/* ---- administration (the control socket, SPEC §8) -------------------- */

static json_t *mail_view(const struct qmail *m, bool all)
{
	struct queue_state st = { m->attempts, m->in_round ? 0 : m->next_ms, m->last_ms, NULL,
	                          m->warned_ms };
	json_t *v = queue_view(&m->env, &st, all);
	json_object_set_new(v, "active", json_boolean(m->in_round));
	return v;
}

static gint mail_id_cmp(gconstpointer a, gconstpointer b)
{
	const struct qmail *x = *(struct qmail *const *)a, *y = *(struct qmail *const *)b;
	return strcmp(x->env.id, y->env.id);
}

json_t *runner_queue_list(struct runner *r)
{
	GPtrArray *all = g_ptr_array_sized_new(g_hash_table_size(r->mails));
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->mails);
	while (g_hash_table_iter_next(&it, &k, &v))
		g_ptr_array_add(all, v);
	g_ptr_array_sort(all, mail_id_cmp);
	json_t *a = json_array();
	for (guint i = 0; i < all->len; i++)
		json_array_append_new(a, mail_view(g_ptr_array_index(all, i), false));
	g_ptr_array_free(all, TRUE);
	return a;
}

json_t *runner_queue_show(struct runner *r, const char *id)
{
	struct qmail *m = g_hash_table_lookup(r->mails, id);
	return m && !m->removed ? mail_view(m, true) : NULL;
}

/* An administrator's retry: the operator has looked at the cause, so the
 * destinations lift their pauses (the service route's, as a reload does,
 * SPEC §3, and the [destination NAME] policies') and forget that their
 * hosts did not answer (a down state would otherwise put the retried mail
 * off again at once, for up to retry_max): those of the mail's pending
 * recipients, or (m NULL) all of them. */
static void dests_release(struct runner *r, struct qmail *m)
{
	GPtrArray *ds = g_ptr_array_new();
	GHashTableIter it;
	gpointer k, v;
	if (!m) {
		g_hash_table_iter_init(&it, r->dests);
		while (g_hash_table_iter_next(&it, &k, &v))
			g_ptr_array_add(ds, v);
	} else if (m->env.route && strcmp(m->env.route, "service") == 0) {
		struct dest *d = g_hash_table_lookup(r->dests, DEST_KEY_SERVICE);
		if (d)
			g_ptr_array_add(ds, d);
	} else {
		for (size_t i = 0; i < m->env.nrcpts; i++) {
			if (m->env.rcpts[i].state != RCPT_PENDING)
				continue;
			char *key = mail_rcpt_dest_key(m, i);
			struct dest *d = key ? g_hash_table_lookup(r->dests, key) : NULL;
			free(key);
			if (d && !g_ptr_array_find(ds, d, NULL))
				g_ptr_array_add(ds, d);
		}
	}
	/* dest_kick (in dest_unpause) never removes a destination. */
	for (guint i = 0; i < ds->len; i++) {
		struct dest *d = g_ptr_array_index(ds, i);
		dest_forget_down(d);
		dest_unpause(d); /* nothing when it is not paused */
	}
	g_ptr_array_free(ds, TRUE);
}

static bool mail_retry(struct qmail *m, uint64_t now)
{
	if (m->removed || m->delete_requested)
		return false;
	if (m->sched)
		schedule_mail(m, now);
	return true; /* a mail in a round is being tried now */
}

int runner_queue_retry(struct runner *r, const char *id)
{
	uint64_t now = clock_now_ms();
	if (id) {
		struct qmail *m = g_hash_table_lookup(r->mails, id);
		if (!m || !mail_retry(m, now))
			return -ENOENT;
		dests_release(r, m);
		return 1;
	}
	dests_release(r, NULL);
	int n = 0;
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->mails);
	while (g_hash_table_iter_next(&it, &k, &v))
		if (mail_retry(v, now))
			n++;
	return n;
}

int runner_queue_delete(struct runner *r, const char *id)
{
	struct qmail *m = g_hash_table_lookup(r->mails, id);
	if (!m || m->removed || m->delete_requested)
		return -ENOENT;
	if (m->in_round) {
		/* Transactions under way finish; nothing more of the mail is
		 * sent: its jobs waiting for a connection end here, and a job
		 * on a connection sends no further (split) transaction
		 * (dconn_run). The mail goes when the round has ended. */
		m->delete_requested = true;
		m->refs++;
		GPtrArray *waiting = g_ptr_array_new();
		GHashTableIter it;
		gpointer k, v;
		g_hash_table_iter_init(&it, r->dests);
		while (g_hash_table_iter_next(&it, &k, &v)) {
			struct dest *d = v;
			for (GList *l = d->jobs.head; l;) {
				GList *next = l->next;
				struct job *job = l->data;
				if (job->m == m) {
					dest_unlink_job(d, l);
					g_ptr_array_add(waiting, job);
				}
				l = next;
			}
		}
		for (guint i = 0; i < waiting->len; i++)
			round_job_done(g_ptr_array_index(waiting, i));
		g_ptr_array_free(waiting, TRUE);
		bool later = m->in_round;
		mail_unref(m);
		r->stats.queued = g_hash_table_size(r->mails);
		return later ? 1 : 0;
	}
	log_deleted(m);
	mail_delete(m);
	r->stats.queued = g_hash_table_size(r->mails);
	return 0;
}

/* The [destination NAME] policies in force, each with its limits, its
 * connections (those still closing too), the jobs waiting and its pause. */
static json_t *destinations_status(struct runner *r)
{
	const struct config *cfg = r->cfg;
	uint64_t now = clock_now_ms();
	json_t *a = json_array();
	for (size_t i = 0; i < cfg->ndestinations; i++) {
		const struct config_destination *p = &cfg->destinations[i];
		char key[80], ts[40] = "";
		snprintf(key, sizeof(key), "destination %s", p->name);
		const struct dest *d = g_hash_table_lookup(r->dests, key);
		bool paused = d && d->paused_until > now;
		if (paused)
			clock_rfc3339(d->paused_until, ts, sizeof(ts));
		json_t *o = json_object(), *doms = json_array();
		for (size_t j = 0; j < p->ndomains; j++)
			json_array_append_new(doms, jstr(p->domains[j].ascii));
		json_object_set_new(o, "name", jstr(p->name));
		json_object_set_new(o, "domains", doms);
		json_object_set_new(o, "max_connections", json_integer(p->max_connections));
		json_object_set_new(o, "max_recipients_per_message",
		                    json_integer(p->max_recipients_per_message));
		if (p->rate_count) {
			char rate[40];
			snprintf(rate, sizeof(rate), "%u/%s", p->rate_count,
			         p->rate_period_s == 1 ? "s" : p->rate_period_s == 60 ? "m" : "h");
			json_object_set_new(o, "rate", json_string(rate));
		} else {
			json_object_set_new(o, "rate", json_null());
		}
		json_object_set_new(o, "pause_s", json_integer((json_int_t)(p->pause_ms / 1000)));
		json_object_set_new(o, "connections",
		                    json_integer(d ? (json_int_t)(d->conns->len + d->closing) : 0));
		json_object_set_new(o, "waiting",
		                    json_integer(d ? (json_int_t)d->jobs.length : 0));
		json_object_set_new(o, "paused_until", paused ? json_string(ts) : json_null());
		json_object_set_new(o, "pause_reason", paused ? jstr(d->pause_reason) : json_null());
		json_array_append_new(a, o);
	}
	return a;
}

json_t *runner_status(struct runner *r)
{
	uint64_t rcpts = 0, bytes = 0;
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->mails);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		const struct qmail *m = v;
		bytes += m->env.size;
		for (size_t i = 0; i < m->env.nrcpts; i++)
			rcpts += m->env.rcpts[i].state == RCPT_PENDING;
	}
	json_t *o = json_object();
	json_object_set_new(o, "queue", json_pack("{s:I,s:I,s:I,s:I}", "mails",
	                    (json_int_t)g_hash_table_size(r->mails), "recipients", (json_int_t)rcpts,
	                    "bytes", (json_int_t)bytes, "active",
	                    (json_int_t)(r->rounds - r->waiting_rounds)));
	json_object_set_new(o, "counts", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
	                    "delivered", (json_int_t)r->stats.delivered,
	                    "deferred", (json_int_t)r->stats.deferred,
	                    "bounced", (json_int_t)r->stats.bounced,
	                    "expired", (json_int_t)r->stats.expired,
	                    "suppressed", (json_int_t)r->stats.suppressed,
	                    "deleted", (json_int_t)r->stats.deleted));
	json_t *svc = json_null();
	if (r->cfg->service.host) {
		struct dest *d = g_hash_table_lookup(r->dests, DEST_KEY_SERVICE);
		uint64_t now = clock_now_ms();
		bool paused = d && d->paused_until > now;
		char hp[300], ts[40] = "";
		snprintf(hp, sizeof(hp), "%s:%u", r->cfg->service.host, (unsigned)r->cfg->service.port);
		if (paused)
			clock_rfc3339(d->paused_until, ts, sizeof(ts));
		svc = json_object();
		json_object_set_new(svc, "host", json_string(hp));
		json_object_set_new(svc, "connections", json_integer(d ? (json_int_t)d->conns->len : 0));
		json_object_set_new(svc, "waiting", json_integer(d ? (json_int_t)d->jobs.length : 0));
		json_object_set_new(svc, "paused_until", paused ? json_string(ts) : json_null());
		json_object_set_new(svc, "pause_reason", paused ? jstr(d->pause_reason) : json_null());
	}
	json_object_set_new(o, "service", svc);
	json_object_set_new(o, "destinations", destinations_status(r));
	json_object_set_new(o, "suppression", supp_status_json(r->supp, r->cfg->suppression.db));
	return o;
}
