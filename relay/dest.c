/*
 * dest - destinations and their connections, for the queue runner.
 *
 * A destination is where a job's recipients go: the delivery service, one
 * recipient domain on the direct route, or a [destination NAME] policy
 * (SPEC §3) covering several domains. rcpt_dest_key() is the one place
 * that maps a recipient to its destination (DEST_KEY_SERVICE, the domain, or
 * "destination NAME": no domain has a space), and dest_policy() the one
 * place that reads its limits: connections, recipients per transaction,
 * rate, pause. A destination owns its job queue, its connections (busy and
 * idle, reused), the rate bucket, the pause, the down state (no host
 * reachable: the mails wait without an attempt), and the mails parked
 * until it has room (SPEC §5: one destination never holds up another).
 *
 * A policy is one destination for all its domains: one connection limit,
 * one bucket, one pause (a 421 from any of its hosts), SPEC §5 "Recipient
 * domains covered by a [destination NAME] policy share its connections,
 * rate and pause". Its jobs stay one per domain (job->domain), since each
 * domain has its own MX hosts: a connection (dconn->domain) carries jobs
 * of its domain only, and the down state is kept per domain (downs). When
 * the oldest waiting job is for another domain and no slot is free, an
 * idle connection gives its slot up, so that no domain of the policy
 * waits behind another's stream of mail. A connection we close counts
 * against the limit until its QUIT is done (closing): the carriers count
 * TCP sessions, not our bookkeeping. And a policy's connection carries at
 * most POLICY_SESSION_RCPTS recipients before a new session begins.
 *
 * A connection (struct dconn) does DNS, then tries the hosts in order:
 * at most MX_ADDRESS_LIMIT addresses and MX_SESSION_LIMIT SMTP sessions
 * per attempt, never an address internal_destinations refuses, never
 * hikyaku itself; then it runs jobs one transaction after another.
 * Part of the runner (relay/runner_int.h).
 *
 * About 1,000 lines: the connection pool, the bucket, the pause and the
 * down state are one object's, and every path of a connection (DNS,
 * hosts, transactions, close) reads and changes all of them.
 */
#include "relay/runner_int.h"

#include <limits.h>

#define POLICY_PREFIX "destination "

/* A job waits for a connection of its destination (head: it goes next). */
void dest_push_job(struct dest *d, struct job *job, bool head)
{
	if (head)
		g_queue_push_head(&d->jobs, job);
	else
		g_queue_push_tail(&d->jobs, job);
	job->m->queued_jobs++;
	mail_waiting_update(job->m);
}

static void job_left_queue(struct job *job)
{
	job->m->queued_jobs--;
	mail_waiting_update(job->m);
}

struct job *dest_pop_job(struct dest *d)
{
	struct job *job = g_queue_pop_head(&d->jobs);
	if (job)
		job_left_queue(job);
	return job;
}

void dest_unlink_job(struct dest *d, GList *l)
{
	struct job *job = l->data;
	g_queue_delete_link(&d->jobs, l);
	job_left_queue(job);
}

/* The oldest waiting job for DOMAIN. A policy's queue is short: jobs are
 * made only while the destination is not full (dest_full). */
static struct job *dest_take_job(struct dest *d, const char *domain)
{
	if (!d->policy)
		return dest_pop_job(d);
	for (GList *l = d->jobs.head; l; l = l->next) {
		struct job *job = l->data;
		if (strcmp(job->domain, domain) == 0) {
			dest_unlink_job(d, l);
			return job;
		}
	}
	return NULL;
}

static void rate_timer_cb(uv_timer_t *t);
static unsigned dest_max_conns(const struct dest *d);
static double bucket_capacity(double rate_per_sec);
static void bucket_refill(struct dest *d, double rate_per_sec);
static void dest_pause(struct dest *d, const struct smtp_reply *rep);
static void dns_result_steal(struct dconn *dc, struct dns_result *res);
static void dns_result_drop(struct dconn *dc);
static void dconn_fail_job(struct dconn *dc, enum outcome_verdict v, const struct smtp_reply *rep);
static void client_opened(struct smtp_client *c, void *arg, const struct smtp_reply *fail);
static void dest_mark_down(struct dest *d, const char *domain, const struct smtp_reply *why);
static void dconn_try_next(struct dconn *dc);
static void dns_done(void *arg, struct dns_result *res);
static void dconn_open(struct dest *d, struct job *job);
static void dconn_run(struct dconn *dc);
static void txn_done(struct smtp_client *c, void *arg, const struct smtp_client_result *res);

/* The destination's one timer: the rate bucket's wait, or a wake-up
 * after a connection has gone (dest_wake). */
static void rate_timer_cb(uv_timer_t *t)
{
	struct dest *d = t->data;
	d->rate_timer_on = false;
	dest_kick(d);
}

static void dest_wake(struct dest *d, uint64_t ms)
{
	if (d->r->stopping)
		return; /* the timer may be closing */
	d->rate_timer_on = true;
	uv_timer_start(&d->rate_timer, rate_timer_cb, ms, 0);
}

struct dest *dest_get(struct runner *r, const char *key, bool service)
{
	struct dest *d = g_hash_table_lookup(r->dests, key);
	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	d->r = r;
	d->key = strdup(key);
	d->service = service;
	if (!service && strncmp(key, POLICY_PREFIX, strlen(POLICY_PREFIX)) == 0) {
		d->policy = strdup(key + strlen(POLICY_PREFIX));
		d->downs = g_hash_table_new_full(g_str_hash, g_str_equal, free, free);
	}
	g_queue_init(&d->jobs);
	g_queue_init(&d->parked);
	d->conns = g_ptr_array_new();
	d->tokens = -1;
	uv_timer_init(r->loop, &d->rate_timer);
	d->rate_timer.data = d;
	g_hash_table_insert(r->dests, d->key, d);
	return d;
}

/* The policy's section in the configuration in force; NULL when a reload
 * removed it (its remaining jobs then go with [direct]'s limits). */
static const struct config_destination *dest_config(const struct dest *d)
{
	const struct config *cfg = d->r->cfg;
	if (!d->policy)
		return NULL;
	for (size_t i = 0; i < cfg->ndestinations; i++)
		if (strcmp(cfg->destinations[i].name, d->policy) == 0)
			return &cfg->destinations[i];
	return NULL;
}

/*
 * What limits a destination (SPEC §3): the service's settings, a
 * [destination NAME] policy's, or [direct]'s for a recipient domain. This
 * is the one place that reads them, from the configuration in force, so
 * that a reload applies at the next transaction. rate_per_sec 0: no
 * rate; pause_ms 0: a 421 does not pause the destination.
 */
struct dest_policy {
	unsigned max_conns;
	unsigned max_rcpts;         /* per transaction */
	double rate_per_sec;        /* recipients, a token bucket of one second's worth */
	uint64_t pause_ms;
};

static struct dest_policy dest_policy(const struct dest *d)
{
	const struct config *cfg = d->r->cfg;
	if (d->service)
		return (struct dest_policy){ cfg->service.max_connections,
		                             cfg->service.max_recipients_per_message,
		                             cfg->service.rate_per_sec, cfg->service.pause_ms };
	const struct config_destination *p = dest_config(d);
	if (p)
		return (struct dest_policy){ p->max_connections, p->max_recipients_per_message,
		                             p->rate_count ? p->rate_per_sec : 0, p->pause_ms };
	return (struct dest_policy){ cfg->direct.max_connections_per_domain, UINT_MAX, 0, 0 };
}

static unsigned dest_max_conns(const struct dest *d)
{
	return dest_policy(d).max_conns;
}

/* Every connection slot is taken (those still saying QUIT included). */
static bool dest_at_limit(const struct dest *d)
{
	return d->conns->len + d->closing >= dest_max_conns(d);
}

/* Enough work for the destination's connections: every connection busy
 * and as many jobs again ready to follow. A mail due for it waits parked
 * (struct dest) instead of being read. */
bool dest_full(const struct dest *d)
{
	return d->njobs - d->jobs_settling + d->starting >= 2 * dest_max_conns(d);
}

/* A slot freed: the mails parked longest go back to the schedule, at
 * their own due time (so ahead of mail that became due later). */
void dest_unpark(struct dest *d)
{
	/* As many as there is room for now: a mail let go is counted only
	 * when its round starts, so "until full" would let every parked mail
	 * go at each finished job, and all but a few park again (with
	 * thousands parked, the loop did little else). */
	unsigned max = 2 * dest_max_conns(d), used = d->njobs - d->jobs_settling + d->starting;
	unsigned room = used < max ? max - used : 0;
	while (room > 0 && !g_queue_is_empty(&d->parked)) {
		room--;
		GList *l = g_queue_pop_head_link(&d->parked);
		struct qmail *m = l->data;
		m->parked_on = NULL;
		schedule_mail(m, m->next_ms);
	}
}

/* The rate bucket (SPEC §3): one second's worth, >= 1. */
static double bucket_capacity(double rate_per_sec)
{
	return rate_per_sec < 1 ? 1 : rate_per_sec;
}

static void bucket_refill(struct dest *d, double rate_per_sec)
{
	uint64_t now = clock_now_ms();
	double cap = bucket_capacity(rate_per_sec);
	if (d->tokens < 0) {
		d->tokens = cap;
	} else {
		d->tokens += (double)(now - d->tokens_at) / 1000.0 * rate_per_sec;
		if (d->tokens > cap)
			d->tokens = cap;
	}
	d->tokens_at = now;
}

/* How many recipients the next transaction may carry: never more than
 * the bucket holds. */
static unsigned dest_chunk(const struct dest_policy *p)
{
	if (p->rate_per_sec <= 0)
		return p->max_rcpts;
	unsigned cap = (unsigned)bucket_capacity(p->rate_per_sec);
	return p->max_rcpts < cap ? p->max_rcpts : cap;
}

/* ---- the pause ------------------------------------------------------- */

/* The replies that pause the destination: the service's throttling and
 * authentication failures; a 421 from one of a policy's hosts. */
static bool dest_pauses_on(const struct dest *d, int code)
{
	if (d->service)
		return outcome_throttle_or_auth(code);
	return d->policy && outcome_policy_pause(code) && dest_policy(d).pause_ms > 0;
}

static void dest_pause(struct dest *d, const struct smtp_reply *rep)
{
	uint64_t pause_ms = dest_policy(d).pause_ms;
	d->paused_at = clock_now_ms();
	d->paused_until = d->paused_at + pause_ms;
	char line[600];
	snprintf(d->pause_reason, sizeof(d->pause_reason), "%.290s",
	         outcome_reply_line(rep, line, sizeof(line)));
	if (d->service)
		fprintf(stderr, "hikyaku: delivery service paused for %llu s: %s\n",
		        (unsigned long long)(pause_ms / 1000), d->pause_reason);
	else
		fprintf(stderr, "hikyaku: [destination %s] paused for %llu s, all its domains: %s\n",
		        d->policy, (unsigned long long)(pause_ms / 1000), d->pause_reason);
}

/* What a job that meets the pause is deferred with. */
void dest_paused_reply(const struct dest *d, struct smtp_reply *rep)
{
	if (d->service)
		outcome_set(rep, OUT_PAUSED, d->pause_reason);
	else
		outcome_set(rep, OUT_DEST_PAUSED, d->policy ? d->policy : d->key, d->pause_reason);
}

/* An administrator's retry (SPEC §8): the pause ends now. */
void dest_unpause(struct dest *d)
{
	if (d->paused_until == 0)
		return;
	d->paused_until = 0;
	d->paused_at = 0;
	d->pause_reason[0] = '\0';
	dest_kick(d);
}

/* An administrator's retry (SPEC §8): what was learned of hosts that did
 * not answer is forgotten, so the next attempt connects again (and the
 * backoff of a destination still down starts over). */
void dest_forget_down(struct dest *d)
{
	if (d->downs)
		g_hash_table_remove_all(d->downs);
	d->down.count = 0;
	d->down.until = 0;
}

/* A new configuration: idle connections were made with the old settings
 * (credentials, TLS policy, ports), new ones use the new. A policy's pause
 * takes the new length from when it began; a policy that is gone has none.
 * (The service's pause is lifted by runner_reload, SPEC §3.) */
void dest_reload(struct dest *d)
{
	dest_close_idle(d);
	if (d->policy && d->paused_until > clock_now_ms()) {
		const struct config_destination *p = dest_config(d);
		d->paused_until = p ? d->paused_at + p->pause_ms : 0;
	}
}

/* ---- down ------------------------------------------------------------ */

/* The down state of DOMAIN at d (make: create it); NULL: not down. */
struct dest_down *dest_down_of(struct dest *d, const char *domain, bool make)
{
	if (!d->downs)
		return &d->down;
	struct dest_down *x = g_hash_table_lookup(d->downs, domain);
	if (!x && make) {
		x = calloc(1, sizeof(*x));
		g_hash_table_insert(d->downs, strdup(domain), x);
	}
	return x;
}

static bool domain_down(struct dest *d, const char *domain, uint64_t now)
{
	struct dest_down *x = dest_down_of(d, domain, false);
	return x && x->until > now;
}

/* A host of DOMAIN answered: it is not down. */
static void dest_up(struct dest *d, const char *domain)
{
	if (d->downs) {
		g_hash_table_remove(d->downs, domain);
		return;
	}
	d->down.count = 0;
	d->down.until = 0;
}

/* Fails the waiting jobs for domains that are down now. */
static void dest_fail_down(struct dest *d, uint64_t now)
{
	GPtrArray *fail = NULL;
	for (GList *l = d->jobs.head; l;) {
		GList *next = l->next;
		struct job *job = l->data;
		if (domain_down(d, job->domain, now)) {
			dest_unlink_job(d, l);
			if (!fail)
				fail = g_ptr_array_new();
			g_ptr_array_add(fail, job);
		}
		l = next;
	}
	for (guint i = 0; fail && i < fail->len; i++) {
		struct job *job = g_ptr_array_index(fail, i);
		struct smtp_reply rep = dest_down_of(d, job->domain, false)->rep;
		job_fail(job, NULL, OUTCOME_DEFERRED, &rep);
	}
	if (fail)
		g_ptr_array_free(fail, TRUE);
}

/*
 * No host of DOMAIN could be reached: the jobs waiting for it fail now
 * with the same reply instead of each opening a connection that fails the
 * same way (a destination that is down costs one attempt, not one per
 * mail). The other domains of a policy are not affected.
 */
static void dest_mark_down(struct dest *d, const char *domain, const struct smtp_reply *why)
{
	uint64_t now = clock_now_ms();
	struct dest_down *x = dest_down_of(d, domain, true);
	x->count++;
	x->until = now + runner_backoff_ms(d->r->cfg, x->count);
	x->rep = *why;
	dest_fail_down(d, now);
}

/* ---- connections ----------------------------------------------------- */

static void dest_client_freed(void *arg)
{
	struct dest *d = arg;
	d->closing--;
	if (!g_queue_is_empty(&d->jobs))
		dest_wake(d, 0); /* never from inside the caller's close */
}

/* Lets go of a connection's client: QUIT and close. Its slot stays taken
 * until the connection is gone (dest_at_limit). */
static void dest_release_client(struct dest *d, struct smtp_client *c)
{
	if (!c)
		return;
	d->closing++;
	smtp_client_on_freed(c, dest_client_freed, d);
	smtp_client_close(c);
}

void dconn_close(struct dconn *dc)
{
	struct dest *d = dc->d;
	g_ptr_array_remove(d->conns, dc);
	dest_release_client(d, dc->c);
	dc->c = NULL;
	dns_result_drop(dc);
	free(dc->domain);
	free(dc);
}

/* Closes the destination's connections that carry no job. */
void dest_close_idle(struct dest *d)
{
	for (guint i = 0; i < d->conns->len;) {
		struct dconn *dc = g_ptr_array_index(d->conns, i);
		if (dc->c && !dc->job) {
			dconn_close(dc);
			continue;
		}
		i++;
	}
}

static void dns_result_steal(struct dconn *dc, struct dns_result *res)
{
	/* The dns module frees res after the callback: keep a deep copy. */
	struct dns_result *cp = calloc(1, sizeof(*cp));
	*cp = *res;
	cp->hosts = calloc(res->nhosts ? res->nhosts : 1, sizeof(*cp->hosts));
	for (size_t i = 0; i < res->nhosts; i++) {
		cp->hosts[i].name = NULL;
		cp->hosts[i].pref = res->hosts[i].pref;
		cp->hosts[i].naddrs = res->hosts[i].naddrs;
		cp->hosts[i].addrs = NULL;
	}
	dc->dns = cp;
	/* names and addresses are copied into one block per host */
	for (size_t i = 0; i < res->nhosts; i++) {
		size_t nl = strlen(res->hosts[i].name) + 1;
		size_t al = res->hosts[i].naddrs * sizeof(struct sockaddr_storage);
		char *blk = malloc(al + nl);
		memcpy(blk, res->hosts[i].addrs, al);
		memcpy(blk + al, res->hosts[i].name, nl);
		cp->hosts[i].addrs = (struct sockaddr_storage *)blk;
		cp->hosts[i].name = blk + al;
	}
}

static void dns_result_drop(struct dconn *dc)
{
	if (!dc->dns)
		return;
	for (size_t i = 0; i < dc->dns->nhosts; i++)
		free(dc->dns->hosts[i].addrs);
	free(dc->dns->hosts);
	free(dc->dns);
	dc->dns = NULL;
}

static void dconn_fail_job(struct dconn *dc, enum outcome_verdict v, const struct smtp_reply *why)
{
	struct smtp_reply rep = *why; /* why may live in dc */
	struct job *job = dc->job;
	struct dest *d = dc->d;
	dc->job = NULL;
	dconn_close(dc);
	if (job)
		job_fail(job, NULL, v, &rep);
	dest_kick(d);
}

static void client_opened(struct smtp_client *c, void *arg, const struct smtp_reply *fail)
{
	struct dconn *dc = arg;
	if (!fail) {
		dest_up(dc->d, dc->domain);
		dc->c = c;
		dc->tls = smtp_client_tls_active(c);
		snprintf(dc->relay, sizeof(dc->relay), "%s", smtp_client_relay(c));
		dns_result_drop(dc);
		dconn_run(dc);
		return;
	}
	dc->c = NULL; /* the client frees itself after a failed open */
	dc->last_fail = *fail;
	if (fail->code != 0)
		dc->sessions++; /* the server answered: that was an SMTP session */
	struct dest *d = dc->d;
	/* A refusal before any recipient was named (greeting, EHLO, AUTH)
	 * says nothing about the recipients: on the service route it defers
	 * and pauses, it never bounces the queue (SPEC §5). A policy's host
	 * that answers 421 pauses the whole policy: its other hosts are the
	 * same operator's, and trying them is what it asked us not to do. */
	if (dest_pauses_on(d, fail->code) || (d->service && fail->code >= 500)) {
		dest_pause(d, fail);
		dconn_fail_job(dc, OUTCOME_DEFERRED, fail);
		return;
	}
	dconn_try_next(dc);
}

static void dconn_try_next(struct dconn *dc)
{
	struct runner *r = dc->d->r;
	const struct config *cfg = r->cfg;
	struct smtp_reply rep;
	while (dc->dns && dc->host_i < dc->dns->nhosts && dc->tried < MX_ADDRESS_LIMIT &&
	       dc->sessions < MX_SESSION_LIMIT) {
		struct dns_host *h = &dc->dns->hosts[dc->host_i];
		if (dc->addr_i >= h->naddrs) {
			dc->host_i++;
			dc->addr_i = 0;
			continue;
		}
		struct sockaddr_storage ss = h->addrs[dc->addr_i++];
		uint16_t port = dc->d->service ? cfg->service.port : cfg->direct.port;
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons(port);
		if (!dc->d->service) {
			char ip[INET6_ADDRSTRLEN] = "?";
			if (ss.ss_family == AF_INET6)
				inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
			else
				inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
			enum addr_class ac = addr_classify((struct sockaddr *)&ss);
			if (!addr_allowed(cfg->direct.internal_destinations, ac)) {
				/* SPEC §3: a refused address is skipped. */
				if (!dc->refused++)
					snprintf(dc->refused_what, sizeof(dc->refused_what), "%s (%s) of %s",
					         ip, addr_class_name(ac), h->name);
				continue;
			}
			/* SPEC §5: never to itself, whatever the MX records say. */
			if (addr_is_self((struct sockaddr *)&ss, cfg->server.listen, cfg->server.nlisten,
			                 r->locals, r->nlocals)) {
				outcome_set(&rep, OUT_LOOP, dc->domain, ip, (unsigned)port);
				dconn_fail_job(dc, OUTCOME_BOUNCED, &rep);
				return;
			}
		}
		dc->tried++;
		struct smtp_client_params p = { 0 };
		p.addr = (const struct sockaddr *)&ss;
		p.helo = cfg->server.hostname;
		if (dc->d->service) {
			p.host = cfg->service.host;
			p.tls = cfg->service.tls == SERVICE_TLS_SMTPS ? SCT_SMTPS :
			        cfg->service.tls == SERVICE_TLS_NONE ? SCT_NONE : SCT_VERIFY;
			p.tls_ctx = r->tls_verify;
			p.username = cfg->service.username;
			p.password = r->service_password;
			p.connect_timeout_ms = cfg->service.connect_timeout_ms;
			p.timeout_ms = cfg->service.timeout_ms;
		} else {
			p.host = h->name;
			switch (cfg->direct.tls) {
			case DIRECT_TLS_MAY: p.tls = SCT_MAY; p.tls_ctx = r->tls_any; break;
			case DIRECT_TLS_ENCRYPT: p.tls = SCT_ENCRYPT; p.tls_ctx = r->tls_any; break;
			case DIRECT_TLS_VERIFY: p.tls = SCT_VERIFY; p.tls_ctx = r->tls_verify; break;
			case DIRECT_TLS_NONE: p.tls = SCT_NONE; break;
			}
			p.connect_timeout_ms = cfg->direct.connect_timeout_ms;
			p.timeout_ms = cfg->direct.timeout_ms;
		}
		/* The wait after the final dot: twice the route's timeout, which
		 * gives RFC 5321's 10 minutes (§4.5.3.2.6) at the default 5m. */
		p.data_timeout_ms = 2 * p.timeout_ms;
		struct smtp_client *c;
		if (smtp_client_open(r->loop, &p, client_opened, dc, &c) == 0)
			return;
	}
	if (dc->tried == 0 && dc->refused > 0) {
		/* Nothing left to try: SPEC §3 bounces it (5.4.4). */
		static const char *const pol[] = { "private", "public", "any" };
		outcome_set(&rep, OUT_ADDR_REFUSED, dc->domain,
		          pol[cfg->direct.internal_destinations], dc->refused_what,
		          dc->refused > 1 ? " and others" : "");
		dconn_fail_job(dc, OUTCOME_BOUNCED, &rep);
		return;
	}
	/* Every host failed, or the attempt used its addresses or sessions. */
	rep = dc->last_fail;
	if (!rep.text[0])
		outcome_set(&rep, OUT_UNREACHABLE, dc->domain);
	enum outcome_verdict v = dc->d->service ? OUTCOME_DEFERRED : outcome_classify(dc->d->service, &rep);
	if (rep.code == 0 && !rep.status[0])
		snprintf(rep.status, sizeof(rep.status), "4.4.1");
	struct dest *d = dc->d;
	/* Down first, so that the jobs waiting for the domain fail at once
	 * instead of each trying the same hosts when this one's slot frees. */
	if (v == OUTCOME_DEFERRED)
		dest_mark_down(d, dc->domain, &rep);
	dconn_fail_job(dc, v, &rep);
}

static void dns_done(void *arg, struct dns_result *res)
{
	struct dconn *dc = arg;
	struct smtp_reply rep;
	if (res->status == DNS_OK) {
		dns_result_steal(dc, res);
		dconn_try_next(dc);
		return;
	}
	if (res->status == DNS_TEMPFAIL && strstr(res->error, "cancelled") && !dc->d->r->stopping &&
	    dc->job) {
		/* The resolver was replaced by a reload: ask the new one. */
		struct dest *d = dc->d;
		struct job *job = dc->job;
		dc->job = NULL;
		dconn_close(dc);
		dconn_open(d, job);
		return;
	}
	if (dc->d->service || res->status == DNS_TEMPFAIL) {
		outcome_set(&rep, OUT_DNS_TEMP, res->error);
		dconn_fail_job(dc, OUTCOME_DEFERRED, &rep);
	} else if (res->status == DNS_NULL_MX) {
		outcome_set(&rep, OUT_NULL_MX, res->error[0] ? res->error :
		          "the domain accepts no mail (null MX)");
		dconn_fail_job(dc, OUTCOME_BOUNCED, &rep);
	} else {
		outcome_set(&rep, OUT_NO_DOMAIN, res->error[0] ? res->error : "the domain does not exist");
		dconn_fail_job(dc, OUTCOME_BOUNCED, &rep);
	}
}

/* A new connection for job, to the hosts of its domain. */
static void dconn_open(struct dest *d, struct job *job)
{
	struct runner *r = d->r;
	struct dconn *dc = calloc(1, sizeof(*dc));
	dc->d = d;
	dc->job = job;
	dc->domain = strdup(job->domain);
	g_ptr_array_add(d->conns, dc);
	int rc;
	if (d->service) {
		rc = dns_lookup_host(r->dns, r->cfg->service.host, dns_done, dc);
	} else if (dc->domain[0] == '[') {
		/* An address literal: no DNS (RFC 5321 §5.1). */
		char lit[64];
		snprintf(lit, sizeof(lit), "%s", dc->domain + 1);
		char *end = strchr(lit, ']');
		if (end)
			*end = '\0';
		const char *ip = strncasecmp(lit, "IPv6:", 5) == 0 ? lit + 5 : lit;
		rc = dns_lookup_host(r->dns, ip, dns_done, dc);
	} else {
		rc = dns_lookup_mx(r->dns, dc->domain, dns_done, dc);
	}
	if (rc < 0) {
		struct smtp_reply rep;
		outcome_set(&rep, OUT_DNS_START);
		dconn_fail_job(dc, OUTCOME_DEFERRED, &rep);
	}
}

/* Sends the next transaction of dc->job. */
static void dconn_run(struct dconn *dc)
{
	struct job *job = dc->job;
	struct qmail *m = job->m;
	struct dest *d = dc->d;
	struct runner *r = d->r;
	const struct config *cfg = r->cfg;
	dc->idle_since = 0;
	struct smtp_reply rep;

	if (m->delete_requested) {
		/* Deleted by an administrator: the rest of it is not sent. */
		dc->job = NULL;
		round_job_done(job);
		dconn_after_txn(dc, true);
		return;
	}
	if (m->env.smtputf8 && !smtp_client_has(dc->c, "SMTPUTF8")) {
		outcome_set(&rep, OUT_NO_SMTPUTF8, dc->relay);
		job_fail(job, dc, OUTCOME_BOUNCED, &rep);
		dconn_after_txn(dc, true);
		return;
	}
	uint64_t limit = smtp_client_size_limit(dc->c);
	if (limit && m->len > limit) {
		outcome_set(&rep, OUT_TOO_BIG, dc->relay, (unsigned long long)limit);
		job_fail(job, dc, OUTCOME_BOUNCED, &rep);
		dconn_after_txn(dc, true);
		return;
	}
	if (d->paused_until > clock_now_ms()) {
		/* Paused (a 421 from another of its hosts) while this
		 * connection was opening: the job waits out the pause. */
		dest_paused_reply(d, &rep);
		dc->job = NULL;
		job_fail(job, NULL, OUTCOME_DEFERRED, &rep);
		dc->idle_since = clock_now_ms();
		return;
	}
	unsigned n = job->rcpts->len - job->next;
	struct dest_policy pol = dest_policy(d);
	unsigned chunk = dest_chunk(&pol);
	if (n > chunk)
		n = chunk;
	if (d->policy) {
		/* At most POLICY_SESSION_RCPTS recipients on one session, in
		 * one transaction or several. */
		if (dc->session_rcpts >= POLICY_SESSION_RCPTS) {
			/* This session has carried its share: a new one goes on. */
			dc->job = NULL;
			dest_push_job(d, job, true);
			dconn_close(dc);
			dest_kick(d);
			return;
		}
		if (n > POLICY_SESSION_RCPTS - dc->session_rcpts)
			n = POLICY_SESSION_RCPTS - dc->session_rcpts;
	}
	if (pol.rate_per_sec > 0) {
		bucket_refill(d, pol.rate_per_sec);
		if (d->tokens < n) {
			/* Wait until the bucket holds enough for this transaction. */
			double need = (double)n - d->tokens;
			uint64_t wait = (uint64_t)(need / pol.rate_per_sec * 1000.0) + 1;
			dest_push_job(d, job, true);
			dc->job = NULL;
			dc->idle_since = clock_now_ms();
			if (!d->rate_timer_on)
				dest_wake(d, wait);
			return;
		}
		d->tokens -= n;
	}
	const char **rcpts = calloc(n, sizeof(*rcpts));
	for (unsigned k = 0; k < n; k++)
		rcpts[k] = m->env.rcpts[g_array_index(job->rcpts, unsigned, job->next + k)].addr;
	dc->sent_rcpts = n;

	char from_buf[600];
	const char *from = m->env.from;
	if (d->service && cfg->service.envelope_from && m->env.from[0]) {
		from = cfg->service.envelope_from;
		if (cfg->service.verp) {
			const char *at = strrchr(from, '@');
			snprintf(from_buf, sizeof(from_buf), "%.*s+%s%s", (int)(at - from), from, m->ref, at);
			from = from_buf;
		}
	}
	struct smtp_client_msg msg = {
		.from = from,
		.rcpts = rcpts,
		.nrcpts = n,
		.data = m->data,
		.len = m->len,
		.smtputf8 = m->env.smtputf8,
		.body_8bit = m->env.body_8bit,
		.envid = m->ref,
	};
	int rc = smtp_client_send(dc->c, &msg, txn_done, dc);
	free(rcpts);
	if (rc < 0 && dc->used) {
		/* An idle connection the server has closed meanwhile: this is not
		 * the mail's failure; give the job to a new connection. */
		if (pol.rate_per_sec > 0)
			d->tokens += n;
		dc->sent_rcpts = 0;
		dc->job = NULL;
		dest_push_job(d, job, true);
		dconn_close(dc);
		dest_kick(d);
		return;
	}
	dc->used = true;
	if (rc == 0)
		dc->session_rcpts += n;
	if (rc < 0) {
		outcome_set(&rep, OUT_SEND_FAILED, dc->relay);
		dconn_fail_job(dc, OUTCOME_DEFERRED, &rep);
	}
}

static void txn_done(struct smtp_client *c, void *arg, const struct smtp_client_result *res)
{
	(void)c;
	struct dconn *dc = arg;
	struct job *job = dc->job;
	struct dest *d = dc->d;
	struct txn *t = calloc(1, sizeof(*t));
	t->dc = dc;
	t->job = job;
	t->outcomes = g_array_new(FALSE, FALSE, sizeof(struct outcome));
	for (unsigned k = 0; k < dc->sent_rcpts; k++) {
		struct outcome o;
		o.idx = g_array_index(job->rcpts, unsigned, job->next + k);
		if (res->mail.code < 200 || res->mail.code >= 300)
			o.rep = res->mail;
		else if (res->rcpt[k].code < 200 || res->rcpt[k].code >= 300)
			o.rep = res->rcpt[k];
		else
			o.rep = res->data;
		o.v = outcome_classify(d->service, &o.rep);
		if (dest_pauses_on(d, o.rep.code))
			t->pause = true;
		if (d->service && o.v == OUTCOME_BOUNCED && outcome_unverified_identity(&o.rep))
			fprintf(stderr, "hikyaku: ALERT: the delivery service refuses an unverified "
			                "identity for %s: %s\n", job->m->env.id, o.rep.text);
		g_array_append_val(t->outcomes, o);
	}
	job->next += dc->sent_rcpts;
	dc->sent_rcpts = 0;
	for (guint k = 0; t->pause && k < t->outcomes->len; k++) {
		struct outcome *o = &g_array_index(t->outcomes, struct outcome, k);
		if (dest_pauses_on(d, o->rep.code)) {
			dest_pause(d, &o->rep);
			break;
		}
	}
	if (!res->reusable) {
		dest_release_client(d, dc->c);
		dc->c = NULL;
	}
	txn_finish(t);
}

/* Whether an idle connection (other than but) serves DOMAIN: the job at
 * the head goes to it, no slot needs to be freed for it. */
static bool dest_idle_for(const struct dest *d, const char *domain, const struct dconn *but)
{
	for (guint i = 0; i < d->conns->len; i++) {
		const struct dconn *dc = g_ptr_array_index(d->conns, i);
		if (dc != but && dc->c && !dc->job && dc->idle_since && strcmp(dc->domain, domain) == 0)
			return true;
	}
	return false;
}

/* A policy at its limit whose oldest waiting job has no connection of its
 * domain: an idle connection of another domain should make room. */
static bool dest_needs_room(const struct dest *d, const struct dconn *idle)
{
	const struct job *head = d->jobs.head ? d->jobs.head->data : NULL;
	return head && d->policy && dest_at_limit(d) && strcmp(head->domain, idle->domain) != 0 &&
	       !dest_idle_for(d, head->domain, idle);
}

/*
 * The next job for an idle connection: the oldest waiting one of its
 * domain. For a policy, only while the oldest of all is of its domain, or
 * a slot or an idle connection is left for that one; NULL otherwise (the
 * caller then closes the connection, dest_needs_room).
 */
static struct job *dconn_next_job(struct dconn *dc)
{
	struct dest *d = dc->d;
	struct job *head = g_queue_peek_head(&d->jobs);
	if (!head)
		return NULL;
	if (!d->policy || strcmp(head->domain, dc->domain) == 0)
		return dest_pop_job(d);
	if (dest_at_limit(d) && !dest_idle_for(d, head->domain, dc))
		return NULL;
	return dest_take_job(d, dc->domain);
}

void dconn_after_txn(struct dconn *dc, bool reusable)
{
	struct dest *d = dc->d;
	if (!dc->c || !reusable || d->r->stopping) {
		struct job *job = dc->job;
		dc->job = NULL;
		dconn_close(dc);
		if (job)
			dest_push_job(d, job, true);
		dest_kick(d);
		return;
	}
	if (d->paused_until > clock_now_ms()) {
		struct job *job = dc->job;
		dc->job = NULL;
		dc->idle_since = clock_now_ms();
		if (job) {
			/* The rest of a split job waits out the pause like the others. */
			struct smtp_reply prep;
			dest_paused_reply(d, &prep);
			job_fail(job, NULL, OUTCOME_DEFERRED, &prep);
		}
		dest_kick(d);
		return;
	}
	if (dc->job) {
		if (dest_needs_room(d, dc)) {
			/* The rest of a split job goes behind the policy's other
			 * domains that wait for a slot: one stream of mail does not
			 * hold them up. */
			struct job *job = dc->job;
			dc->job = NULL;
			dest_push_job(d, job, false);
			dconn_close(dc);
			dest_kick(d);
			return;
		}
		dconn_run(dc);
		return;
	}
	struct job *next = dconn_next_job(dc);
	if (next) {
		dc->job = next;
		dconn_run(dc);
		return;
	}
	if (dest_needs_room(d, dc)) {
		dconn_close(dc); /* room for another domain of the policy */
		return;
	}
	dc->idle_since = clock_now_ms();
	if (!g_queue_is_empty(&d->jobs))
		dest_kick(d);
}

void dest_kick(struct dest *d)
{
	struct runner *r = d->r;
	const struct config *cfg = r->cfg;
	struct smtp_reply rep;
	uint64_t now = clock_now_ms();
	if (r->stopping) {
		/* Shutting down: what still waits (the rest of a split job, a
		 * job whose connection went) is deferred, never started. */
		outcome_set(&rep, OUT_SHUTDOWN);
		struct job *job;
		while ((job = dest_pop_job(d)))
			job_fail(job, NULL, OUTCOME_DEFERRED, &rep);
		return;
	}
	if (d->service && !cfg->service.host) {
		/* A reload removed the service: its mail waits (SPEC §4). */
		outcome_set(&rep, OUT_NO_SERVICE);
		struct job *job;
		while ((job = dest_pop_job(d)))
			job_fail(job, NULL, OUTCOME_DEFERRED, &rep);
		return;
	}
	if (d->paused_until > now) {
		dest_paused_reply(d, &rep);
		struct job *job;
		while ((job = dest_pop_job(d)))
			job_fail(job, NULL, OUTCOME_DEFERRED, &rep);
		return;
	}
	dest_fail_down(d, now);
	for (guint i = 0; i < d->conns->len && !g_queue_is_empty(&d->jobs);) {
		struct dconn *dc = g_ptr_array_index(d->conns, i);
		bool idle = dc->c && !dc->job && dc->idle_since;
		if (idle && !smtp_client_alive(dc->c)) {
			dconn_close(dc); /* the server hung up while it was idle */
			continue;
		}
		if (!idle) {
			i++;
			continue;
		}
		struct job *job = dconn_next_job(dc);
		if (job) {
			dc->job = job;
			dconn_run(dc);
			return; /* dconn_run may have changed d->conns; kick again later */
		}
		if (dest_needs_room(d, dc)) {
			/* Every slot is taken and none serves the oldest job's
			 * domain: room for it (the freed connection wakes us). */
			dconn_close(dc);
			continue;
		}
		i++;
	}
	while (!g_queue_is_empty(&d->jobs) && !dest_at_limit(d))
		dconn_open(d, dest_pop_job(d));
}

/* The sweep (runner.c, every second): idle connections past their time
 * or hung up are closed, down states that are over forgotten, waiting
 * jobs kicked. */
void dest_sweep(struct dest *d, uint64_t now)
{
	for (guint i = 0; i < d->conns->len;) {
		struct dconn *dc = g_ptr_array_index(d->conns, i);
		if (dc->c && !dc->job && dc->idle_since &&
		    (now - dc->idle_since >= IDLE_CONN_MS || !smtp_client_alive(dc->c))) {
			dconn_close(dc);
			continue;
		}
		i++;
	}
	if (d->downs) {
		GHashTableIter it;
		gpointer k, v;
		g_hash_table_iter_init(&it, d->downs);
		while (g_hash_table_iter_next(&it, &k, &v))
			if (((struct dest_down *)v)->until <= now)
				g_hash_table_iter_remove(&it);
	}
	if (!g_queue_is_empty(&d->jobs))
		dest_kick(d);
}

/* Nothing left to do: the destination may be forgotten, so that a long
 * uptime over many recipient domains does not accumulate. */
bool dest_idle(const struct dest *d, uint64_t now)
{
	/* A bucket that is not full again would start full in a new
	 * destination: keep it until it is (a slow rate holds otherwise). */
	struct dest_policy pol = dest_policy(d);
	if (pol.rate_per_sec > 0 && d->tokens >= 0 &&
	    d->tokens + (double)(now - d->tokens_at) / 1000.0 * pol.rate_per_sec <
	            bucket_capacity(pol.rate_per_sec))
		return false;
	return d->njobs == 0 && d->conns->len == 0 && d->closing == 0 && d->paused_until <= now &&
	       d->down.until <= now && (!d->downs || g_hash_table_size(d->downs) == 0) &&
	       !d->rate_timer_on && d->starting == 0 && d->parked.length == 0;
}

/* ---- keys ------------------------------------------------------------ */

/* The recipient's domain in A-label form (an address literal lowercased);
 * NULL if invalid. */
char *rcpt_domain_key(const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (!at || !at[1])
		return NULL;
	if (at[1] == '[')
		return g_ascii_strdown(at + 1, -1);
	char *a = route_ascii(addr);
	if (!a)
		return NULL;
	char *d = strdup(strrchr(a, '@') + 1);
	free(a);
	return d;
}

/* The destination of a recipient domain: its [destination NAME] policy
 * ("destination NAME"), else the domain itself. */
char *dest_key_for_domain(const struct config *cfg, const char *domain)
{
	const struct config_destination *p =
		domain[0] == '[' ? NULL : config_destination_for(cfg, domain);
	if (!p)
		return strdup(domain);
	char *k;
	return asprintf(&k, POLICY_PREFIX "%s", p->name) < 0 ? NULL : k;
}

char *rcpt_dest_key(const struct config *cfg, const char *addr)
{
	char *dom = rcpt_domain_key(addr);
	if (!dom)
		return NULL;
	char *k = dest_key_for_domain(cfg, dom);
	free(dom);
	return k;
}

/* Marks "made, and none" in m->rcpt_dom. */
static char rcpt_dom_none[] = "";

const char *mail_rcpt_domain(struct qmail *m, size_t i)
{
	if (i >= m->env.nrcpts)
		return NULL;
	if (!m->rcpt_dom) {
		m->rcpt_dom = calloc(m->env.nrcpts, sizeof(*m->rcpt_dom));
		if (!m->rcpt_dom)
			return NULL;
	}
	if (!m->rcpt_dom[i]) {
		char *d = rcpt_domain_key(m->env.rcpts[i].addr);
		m->rcpt_dom[i] = d ? d : rcpt_dom_none;
	}
	return m->rcpt_dom[i] == rcpt_dom_none ? NULL : m->rcpt_dom[i];
}

char *mail_rcpt_dest_key(struct qmail *m, size_t i)
{
	const char *dom = mail_rcpt_domain(m, i);
	return dom ? dest_key_for_domain(m->r->cfg, dom) : NULL;
}

void mail_rcpt_domains_free(struct qmail *m)
{
	for (size_t i = 0; m->rcpt_dom && i < m->env.nrcpts; i++)
		if (m->rcpt_dom[i] != rcpt_dom_none)
			free(m->rcpt_dom[i]);
	free(m->rcpt_dom);
	m->rcpt_dom = NULL;
}

void dest_free(struct dest *d)
{
	g_queue_clear(&d->jobs);
	g_ptr_array_free(d->conns, TRUE);
	if (d->downs)
		g_hash_table_destroy(d->downs);
	free(d->policy);
	free(d->key);
	free(d);
}

void dest_closed(uv_handle_t *h)
{
	dest_free(h->data);
}
