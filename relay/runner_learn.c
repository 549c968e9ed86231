/*
 * runner_learn - what deliveries tell the suppression list (SPEC §6): a
 * permanent failure with a suppressing status is learned, and every
 * delivery through the service is recorded so that its later bounce can
 * be matched. On the thread pool, under the list's lock. Part of the
 * runner (relay/runner_int.h).
 */
#include "relay/runner_int.h"

static void learn_work(uv_work_t *w);
static void learn_after(uv_work_t *w, int status);
static void learn_work(uv_work_t *w)
{
	struct learn_job *l = w->data;
	uv_mutex_lock(&l->r->supp_lock);
	l->rc = supp_add(l->r->supp, l->addr, "bounced", l->status, l->response, "delivery",
	                 (int64_t)clock_now_ms());
	uv_mutex_unlock(&l->r->supp_lock);
}

static void learn_after(uv_work_t *w, int status)
{
	struct learn_job *l = w->data;
	if (status == 0 && l->rc == 1) {
		evlog_learned(l->r->log, l->addr, "delivery", l->status, l->response);
	} else if (l->rc < 0) {
		fprintf(stderr, "hikyaku: cannot add %s to the suppression list\n", l->addr);
	}
	free(l->addr);
	free(l->status);
	free(l->response);
	free(l);
}

void sent_record_work(uv_work_t *w)
{
	struct sent_job *j = w->data;
	uv_mutex_lock(&j->r->supp_lock);
	if (j->prune_before > 0)
		supp_sent_prune(j->r->supp, j->prune_before);
	else
		supp_sent_add(j->r->supp, j->qid, j->rcpt, j->sender, j->service_id,
		              (int64_t)clock_now_ms());
	uv_mutex_unlock(&j->r->supp_lock);
	/* Who was told of a report's recipient (runner_bounce.c) matters only
	 * while a report can still name the mail: as long as its record. */
	if (j->prune_before > 0)
		queue_fs_reported_prune(j->r->qdir, (uint64_t)j->prune_before);
}

void sent_record_after(uv_work_t *w, int status)
{
	(void)status;
	struct sent_job *j = w->data;
	free(j->qid);
	free(j->rcpt);
	free(j->sender);
	free(j->service_id);
	free(j);
}

void record_sent(struct runner *r, const struct qmail *m, unsigned i,
                 const struct smtp_reply *rep, bool alone)
{
	if (!r->supp || !m->env.from || !m->env.from[0])
		return;
	struct sent_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->qid = strdup(m->ref); /* a report names the mail by this (queue_tag.h) */
	j->rcpt = strdup(m->env.rcpts[i].addr);
	j->sender = strdup(m->env.from);
	/* The service gives one id to a whole transaction and shows it in the
	 * Message-ID of what it delivers: with several recipients, one of them
	 * could name another in a forged report. Only a recipient alone in its
	 * transaction is found by it (the VERP tag and ENVID still serve). */
	j->service_id = alone ? outcome_service_id(rep) : NULL;
	if (uv_queue_work(r->loop, &j->work, sent_record_work, sent_record_after) < 0)
		sent_record_after(&j->work, -1);
}

void runner_learn(struct runner *r, const char *addr, const char *status, const char *response)
{
	if (!r->supp)
		return;
	struct learn_job *l = calloc(1, sizeof(*l));
	l->work.data = l;
	l->r = r;
	l->addr = strdup(addr);
	l->status = strdup(status);
	l->response = strdup(response ? response : "");
	if (uv_queue_work(r->loop, &l->work, learn_work, learn_after) < 0)
		learn_after(&l->work, -1);
}
