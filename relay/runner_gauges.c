/*
 * NAME
 *	runner_gauges - the queue's figures for the metrics, kept up to date
 * SUMMARY
 *	Mails and pending recipients per route and the oldest arrival
 *	(SPEC §9 hikyaku_queue_*), counted as mails enter and leave the
 *	runner's index and as recipients leave "pending", so that a scrape
 *	costs the same with 100,000 mails queued as with none: no walk over
 *	the index on the loop.
 * DESCRIPTION
 *	gauges_add() goes beside every "queued_bytes +=" (a mail enters the
 *	index), gauges_remove() beside "queued_bytes -=". rcpt_set_state() is
 *	the one way a recipient's state changes once its mail is indexed.
 *	runner_gauges() copies the figures out (relay/runner.h),
 *	runner_destination_paused() a policy's pause;
 *	runner_suppression() hands out the list and its lock for read-only
 *	work on the thread pool (the entry count).
 * TOUCHES
 *	The runner's counters and its arrival-ordered sequence; nothing else.
 */
#include <string.h>

#include "relay/runner_int.h"
#include "util/clock.h"

static int mail_route_index(const struct qmail *m)
{
	return m->env.route && strcmp(m->env.route, "service") == 0;
}

static gint arrival_cmp(gconstpointer a, gconstpointer b, gpointer data)
{
	(void)data;
	const struct qmail *x = a, *y = b;
	if (x->env.arrival_ms != y->env.arrival_ms)
		return x->env.arrival_ms < y->env.arrival_ms ? -1 : 1;
	return strcmp(x->env.id, y->env.id);
}

void gauges_add(struct runner *r, struct qmail *m)
{
	int k = mail_route_index(m);
	if (m->by_arrival)
		return;     /* counted in already */
	r->route_mails[k]++;
	for (size_t i = 0; i < m->env.nrcpts; i++)
		r->route_pending[k] += m->env.rcpts[i].state == RCPT_PENDING;
	m->by_arrival = g_sequence_insert_sorted(r->arrivals, m, arrival_cmp, NULL);
}

void gauges_remove(struct runner *r, struct qmail *m)
{
	int k = mail_route_index(m);
	if (!m->by_arrival)
		return;     /* not counted in */
	r->route_mails[k]--;
	for (size_t i = 0; i < m->env.nrcpts; i++)
		r->route_pending[k] -= m->env.rcpts[i].state == RCPT_PENDING;
	g_sequence_remove(m->by_arrival);
	m->by_arrival = NULL;
}

void rcpt_set_state(struct qmail *m, size_t i, enum queue_rcpt_state st)
{
	bool was = m->env.rcpts[i].state == RCPT_PENDING, is = st == RCPT_PENDING;
	if (m->by_arrival && was != is) {
		if (was)
			m->r->route_pending[mail_route_index(m)]--;
		else
			m->r->route_pending[mail_route_index(m)]++;
	}
	m->env.rcpts[i].state = st;
}

void runner_gauges(const struct runner *r, struct runner_gauges *g)
{
	GHashTableIter it;
	gpointer k, v;
	memset(g, 0, sizeof(*g));
	for (int i = 0; i < 2; i++) {
		g->mails[i] = r->route_mails[i];
		g->rcpts[i] = r->route_pending[i];
	}
	g->bytes = r->queued_bytes;
	if (g_sequence_get_length(r->arrivals) > 0) {
		const struct qmail *m = g_sequence_get(g_sequence_get_begin_iter(r->arrivals));
		g->oldest_arrival_ms = m->env.arrival_ms ? m->env.arrival_ms : 1;
	}
	/* Destinations: one per recipient domain with mail under way, a few
	 * hundred at most; not the queue. */
	uint64_t now = clock_now_ms();
	g_hash_table_iter_init(&it, r->dests);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		const struct dest *d = v;
		g->conns_out += d->conns->len;
		if (d->service && d->paused_until > now)
			g->service_paused = true;
	}
}

bool runner_destination_paused(const struct runner *r, const char *name)
{
	char key[80];
	snprintf(key, sizeof(key), "destination %s", name);
	const struct dest *d = g_hash_table_lookup(r->dests, key);
	return d && d->paused_until > clock_now_ms();
}

struct supp *runner_suppression(struct runner *r, uv_mutex_t **lock)
{
	*lock = &r->supp_lock;
	return r->supp;
}
