/*
 * runner - the queue runner. See runner.h.
 *
 * The moving parts, in the order a mail meets them:
 *
 *   mail (struct qmail)      one queued mail: its envelope, each recipient's
 *                            state, when it is next due. Scheduled in a
 *                            GSequence ordered by (due time, queue id).
 *   round                    one delivery attempt of a mail: its message is
 *                            read (thread pool), its pending recipients are
 *                            grouped into jobs, one per destination.
 *   job                      a mail's recipients for one destination.
 *   destination (struct dest) the delivery service, or one recipient domain;
 *                            it owns the job queue, the connection limit,
 *                            idle connections for reuse, and (service) the
 *                            rate bucket and the pause.
 *   connection (struct dconn) DNS, then one smtp_client to the first host
 *                            that answers; it runs jobs one after another.
 *
 * Every outcome is written to DIR/state/ID and fsynced before it is logged,
 * so that the log never claims what a crash could undo.
 */
#include "relay/runner.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "relay/dns.h"
#include "relay/dsn.h"
#include "relay/dsn_parse.h"
#include "relay/queue_state.h"
#include "relay/route.h"
#include "relay/smtp_client.h"
#include "relay/suppression.h"
#include "util/tls.h"
#include "util/clock.h"

#define IDLE_CONN_MS 5000           /* an idle connection is kept this long */
#define SWEEP_MS 1000
#define DATA_TIMEOUT_MS (10 * 60 * 1000)
#define DNS_TIMEOUT_MS 5000
#define MAX_ROUNDS_AT_ONCE 500      /* bounds memory under a huge backlog */

struct runner;
struct dest;
struct qmail;

struct job {
	struct qmail *m;
	struct dest *d;
	GArray *rcpts;              /* unsigned: indexes into m->env.rcpts */
	unsigned next;              /* first recipient not yet sent */
};

struct dconn {
	struct dest *d;
	struct smtp_client *c;      /* NULL while resolving or connecting */
	struct job *job;
	struct dns_result *dns;     /* candidate hosts */
	size_t host_i, addr_i;
	struct smtp_reply last_fail;
	uint64_t idle_since;        /* 0 while busy */
	unsigned sent_rcpts;        /* in the current transaction */
	char relay[300];
	bool tls;
	bool used;                  /* has carried a transaction */
	bool closing;
};

struct dest {
	struct runner *r;
	char *key;                  /* "service" or the recipient domain */
	bool service;
	GQueue jobs;                /* struct job * waiting for a connection */
	GPtrArray *conns;           /* struct dconn *, busy and idle */
	uint64_t paused_until;
	char pause_reason[300];
	/* Down: no host could be reached (connection refused, timeout, TLS,
	 * a 4xx greeting). Until down_until the mails for it are deferred
	 * without a connection, a file read or a disk write; the wait doubles
	 * with each failure in a row, from retry_min up to retry_max. */
	uint64_t down_until;
	unsigned down_count;
	struct smtp_reply down_rep;
	double tokens;              /* rate bucket (service) */
	uint64_t tokens_at;
	uv_timer_t rate_timer;
	bool rate_timer_on;
	unsigned njobs;             /* jobs alive that point here */
};

/* A pending write of a mail's state file and who waits for it. */
struct state_waiter {
	void (*cb)(struct qmail *m, void *arg);
	void *arg;
};

struct qmail {
	struct runner *r;
	struct queue_envelope env;
	uint64_t next_ms;
	uint64_t last_ms;           /* the last attempt, 0: never tried */
	unsigned attempts;
	GSequenceIter *sched;
	bool delete_requested;      /* by an administrator, during a round */
	bool finalized;             /* its files are removed (all recipients final) */
	int outstanding;            /* jobs of the current round */
	bool in_round;
	bool removed;               /* deleted from the index */
	char *data;                 /* the message, during a round */
	size_t len;
	GArray *failures;           /* struct dsn_rcpt of this round */
	GPtrArray *strings;         /* owned strings the failures point to */
	/* state file writes: one at a time, in order */
	bool writing;
	bool dirty;
	GArray *waiting;            /* struct state_waiter: wait for the next write */
	GArray *inflight;           /* struct state_waiter: wait for the current one */
	int refs;
};

struct runner {
	uv_loop_t *loop;
	struct config *cfg;
	struct queue *q;
	struct evlog *log;
	char *state_dir;
	char *mail_dir;
	GSequence *schedule;        /* struct qmail *, by due time */
	GHashTable *mails;          /* id -> struct qmail * */
	GHashTable *dests;          /* key -> struct dest * */
	struct dns_resolver *dns;
	SSL_CTX *tls_verify;        /* service and [direct] tls = verify */
	SSL_CTX *tls_any;           /* opportunistic */
	char *service_password;
	struct supp *supp;          /* the suppression list (SPEC §6), or NULL */
	uv_mutex_t supp_lock;       /* one SQLite connection, used by worker threads */
	uv_timer_t timer;
	uv_timer_t sweep;
	unsigned rounds;            /* mails in a round now */
	uint64_t sweeps;
	bool stopping;
	void (*stopped)(void *arg);
	void *stopped_arg;
	struct runner_stats stats;
	GArray *fin_waiting;        /* struct fin_req: mails done, to be removed */
	uint64_t queued_bytes;      /* sum of env.size over the index */
	bool fin_busy;              /* a removal batch is on the thread pool */
};

/* The reply as the log and DSNs show it: "550 5.1.1 User unknown"; for a
 * failure without a reply (refused, timeout, TLS) just what happened. */
static const char *reply_line(const struct smtp_reply *rep, char *out, size_t cap)
{
	if (rep->code == 0)
		snprintf(out, cap, "%s", rep->text);
	else if (rep->status[0])
		snprintf(out, cap, "%d %s %s", rep->code, rep->status, rep->text);
	else
		snprintf(out, cap, "%d %s", rep->code, rep->text);
	return out;
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

static void runner_arm(struct runner *r);

static void schedule_mail(struct qmail *m, uint64_t when)
{
	struct runner *r = m->r;
	if (m->sched)
		g_sequence_remove(m->sched);
	m->next_ms = when;
	m->sched = g_sequence_insert_sorted(r->schedule, m, sched_cmp, NULL);
	runner_arm(r);
}

static void mail_unref(struct qmail *m)
{
	if (--m->refs > 0)
		return;
	queue_envelope_free(&m->env);
	free(m->data);
	if (m->failures)
		g_array_free(m->failures, TRUE);
	if (m->strings)
		g_ptr_array_free(m->strings, TRUE);
	g_array_free(m->waiting, TRUE);
	g_array_free(m->inflight, TRUE);
	free(m);
}

/* ---- logging --------------------------------------------------------- */

static json_t *jstr(const char *s)
{
	return s ? evlog_str(s, strlen(s)) : json_null();
}

static void log_outcome(struct runner *r, const char *event, struct qmail *m, unsigned i,
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
	json_object_set_new(f, "response", jstr(reply_line(rep, line, sizeof(line))));
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

/* ---- disk work on the thread pool ------------------------------------ */

struct disk_job {
	uv_work_t work;
	bool retry;                 /* the last write failed: wait, then again */
	struct runner *r;
	struct qmail *m;
	char path[PATH_MAX];
	char path2[PATH_MAX];
	char *text;                 /* state to write */
	char *data;                 /* message read */
	size_t len;
	uint64_t offset;
	int status;
	bool check_supp;            /* look the pending recipients up (read_work) */
	GArray *supp_idx;           /* unsigned: recipients found on the list */
	GPtrArray *supp_reason;     /* char *: their reasons */
};

static int write_file_durably(const char *dir, const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			unlink(tmp);
			return e;
		}
		off += (size_t)w;
	}
	if (fdatasync(fd) < 0) {
		int e = -errno;
		close(fd);
		unlink(tmp);
		return e;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static void state_write_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	if (j->retry)
		sleep(1); /* a full or failing disk: do not spin (thread pool) */
	j->status = write_file_durably(j->r->state_dir, j->path, j->text);
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
	struct queue_state st = { m->attempts, m->next_ms, m->last_ms, nt };
	char *s = queue_state_dump(&m->env, &st);
	json_decref(nt);
	return s;
}

static void state_write_start(struct qmail *m);

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
		free(j->text);
		j->text = state_serialize(m);
		j->status = 0;
		j->retry = true;
		if (uv_queue_work(m->r->loop, &j->work, state_write_work, state_write_after) == 0)
			return;
	}
	free(j->text);
	free(j);
	m->writing = false;
	/* The waiters of this write are served; then, if more changes came,
	 * the next write starts with the newest state. */
	GArray *done = m->inflight;
	m->inflight = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
	for (guint i = 0; i < done->len; i++) {
		struct state_waiter sw = g_array_index(done, struct state_waiter, i);
		sw.cb(m, sw.arg);
	}
	g_array_free(done, TRUE);
	if (m->dirty)
		state_write_start(m);
	mail_unref(m);
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
	snprintf(j->path, sizeof(j->path), "%s/%s", m->r->state_dir, m->env.id);
	j->text = state_serialize(m);
	uv_queue_work(m->r->loop, &j->work, state_write_work, state_write_after);
}

/* Records the mail's current state durably, then calls cb. */
static void state_save(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg)
{
	struct state_waiter sw = { cb, arg };
	g_array_append_val(m->waiting, sw);
	m->dirty = true;
	if (!m->writing)
		state_write_start(m);
}

static void delete_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	/* The message first: a state file without its mail is an orphan that
	 * the next start removes; the reverse would resend. */
	if (unlink(j->path) < 0 && errno != ENOENT)
		j->status = -errno;
	unlink(j->path2);
}

static void delete_after(uv_work_t *w, int status)
{
	(void)status;
	struct disk_job *j = w->data;
	if (j->status < 0)
		fprintf(stderr, "hikyaku: cannot remove %s: %s\n", j->path, strerror(-j->status));
	mail_unref(j->m);
	free(j);
}

static void mail_delete(struct qmail *m)
{
	struct runner *r = m->r;
	m->removed = true;
	if (m->sched) {
		g_sequence_remove(m->sched);
		m->sched = NULL;
	}
	g_hash_table_remove(r->mails, m->env.id);
	r->queued_bytes -= m->env.size;
	if (m->finalized) {
		mail_unref(m); /* its files are gone already (mail_finalize) */
		return;
	}
	struct disk_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->m = m; /* the index's reference moves here */
	snprintf(j->path, sizeof(j->path), "%s/%s", r->mail_dir, m->env.id);
	snprintf(j->path2, sizeof(j->path2), "%s/%s", r->state_dir, m->env.id);
	uv_queue_work(r->loop, &j->work, delete_work, delete_after);
}

/*
 * A mail whose every recipient is final, with no DSN owed, needs no state
 * file: removing it from the spool is the durable record that it is done
 * (a restart cannot resend what is not there). Removals are grouped like
 * queue commits: every mail finished while a batch is on the thread pool
 * joins the next one, and a batch costs one directory fsync.
 */
struct fin_req {
	struct qmail *m;
	void (*cb)(struct qmail *m, void *arg);
	void *arg;
	int status;
};

struct fin_batch {
	uv_work_t work;
	struct runner *r;
	GArray *reqs;               /* struct fin_req */
};

static void fin_work(uv_work_t *w)
{
	struct fin_batch *b = w->data;
	char p[PATH_MAX + QUEUE_ID_LEN + 2];
	for (guint i = 0; i < b->reqs->len; i++) {
		struct fin_req *q = &g_array_index(b->reqs, struct fin_req, i);
		snprintf(p, sizeof(p), "%s/%s", b->r->mail_dir, q->m->env.id);
		if (unlink(p) < 0 && errno != ENOENT)
			q->status = -errno;
		/* The state file may stay behind if this fails: without its mail
		 * it is an orphan, removed at the next start. */
		snprintf(p, sizeof(p), "%s/%s", b->r->state_dir, q->m->env.id);
		unlink(p);
	}
	int dfd = open(b->r->mail_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = dfd < 0 || fsync(dfd) < 0 ? -errno : 0;
	if (dfd >= 0)
		close(dfd);
	for (guint i = 0; rc < 0 && i < b->reqs->len; i++)
		g_array_index(b->reqs, struct fin_req, i).status = rc;
}

static void fin_start(struct runner *r);

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

static void mail_finalize(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg)
{
	struct runner *r = m->r;
	struct fin_req q = { m, cb, arg, 0 };
	m->refs++;
	g_array_append_val(r->fin_waiting, q);
	if (!r->fin_busy)
		fin_start(r);
}

static bool all_final(const struct qmail *m)
{
	if (m->failures && m->failures->len)
		return false;
	for (size_t i = 0; i < m->env.nrcpts; i++)
		if (m->env.rcpts[i].state == RCPT_PENDING)
			return false;
	return true;
}

static void read_work(uv_work_t *w)
{
	struct disk_job *j = w->data;
	int fd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		j->status = -errno;
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < j->offset) {
		j->status = -EINVAL;
		close(fd);
		return;
	}
	size_t len = (size_t)((uint64_t)st.st_size - j->offset);
	j->data = malloc(len + 1);
	size_t off = 0;
	while (j->data && off < len) {
		ssize_t n = pread(fd, j->data + off, len - off, (off_t)(j->offset + off));
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			j->status = n < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)n;
	}
	close(fd);
	if (!j->data)
		j->status = -ENOMEM;
	j->len = off;
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

/* ---- the suppression list -------------------------------------------- */

struct learn_job {
	uv_work_t work;
	struct runner *r;
	char *addr, *status, *response;
	int rc;
};

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
		json_t *f = json_object();
		json_object_set_new(f, "to", jstr(l->addr));
		json_object_set_new(f, "source", json_string("delivery"));
		json_object_set_new(f, "status", jstr(l->status));
		json_object_set_new(f, "response", jstr(l->response));
		evlog_emit(l->r->log, "learned", f);
	} else if (l->rc < 0) {
		fprintf(stderr, "hikyaku: cannot add %s to the suppression list\n", l->addr);
	}
	free(l->addr);
	free(l->status);
	free(l->response);
	free(l);
}

struct sent_job {
	uv_work_t work;
	struct runner *r;
	char *qid, *rcpt, *sender, *service_id;
	int64_t prune_before;      /* > 0: forget older records instead */
};

static void sent_work(uv_work_t *w)
{
	struct sent_job *j = w->data;
	uv_mutex_lock(&j->r->supp_lock);
	if (j->prune_before > 0)
		supp_sent_prune(j->r->supp, j->prune_before);
	else
		supp_sent_add(j->r->supp, j->qid, j->rcpt, j->sender, j->service_id,
		              (int64_t)clock_now_ms());
	uv_mutex_unlock(&j->r->supp_lock);
}

static void sent_after(uv_work_t *w, int status)
{
	(void)status;
	struct sent_job *j = w->data;
	free(j->qid);
	free(j->rcpt);
	free(j->sender);
	free(j->service_id);
	free(j);
}

/*
 * The service's own id for the message, from its 250: SES answers
 * "250 Ok 0101018c1d2e3f4a-...-000000" and puts "<that id@...>" in the
 * Message-ID of the bounce it sends later.
 */
static char *service_id_of(const struct smtp_reply *rep)
{
	const char *t = rep->text;
	if (strncasecmp(t, "Ok ", 3) == 0)
		t += 3;
	else if (strrchr(t, ' '))
		t = strrchr(t, ' ') + 1;
	size_t n = strcspn(t, " <>@");
	return n >= 8 ? strndup(t, n) : NULL;
}

static void record_sent(struct runner *r, const struct qmail *m, unsigned i,
                        const struct smtp_reply *rep)
{
	if (!r->supp || !m->env.from || !m->env.from[0])
		return;
	struct sent_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->qid = strdup(m->env.id);
	j->rcpt = strdup(m->env.rcpts[i].addr);
	j->sender = strdup(m->env.from);
	j->service_id = service_id_of(rep);
	if (uv_queue_work(r->loop, &j->work, sent_work, sent_after) < 0)
		sent_after(&j->work, -1);
}

/* SPEC §6 item 1: 5.1.x (bad mailbox or destination) and 5.2.1 (disabled). */
static bool status_suppresses(const char *st)
{
	return st && (strncmp(st, "5.1.", 4) == 0 || strcmp(st, "5.2.1") == 0);
}

static void learn(struct runner *r, const char *addr, const char *status, const char *response)
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

/* ---- destinations ---------------------------------------------------- */

static void dest_kick(struct dest *d);
static void round_job_done(struct job *job);

static void rate_timer_cb(uv_timer_t *t)
{
	struct dest *d = t->data;
	d->rate_timer_on = false;
	dest_kick(d);
}

static struct dest *dest_get(struct runner *r, const char *key, bool service)
{
	struct dest *d = g_hash_table_lookup(r->dests, key);
	if (d)
		return d;
	d = calloc(1, sizeof(*d));
	d->r = r;
	d->key = strdup(key);
	d->service = service;
	g_queue_init(&d->jobs);
	d->conns = g_ptr_array_new();
	d->tokens = -1;
	uv_timer_init(r->loop, &d->rate_timer);
	d->rate_timer.data = d;
	g_hash_table_insert(r->dests, d->key, d);
	return d;
}

static unsigned dest_max_conns(const struct dest *d)
{
	const struct config *cfg = d->r->cfg;
	return d->service ? cfg->service.max_connections : cfg->direct.max_connections_per_domain;
}

/* Rate bucket of the service route (SPEC §3): one second's worth, >= 1. */
static double bucket_capacity(const struct config *cfg)
{
	return cfg->service.rate_per_sec < 1 ? 1 : cfg->service.rate_per_sec;
}

static void bucket_refill(struct dest *d)
{
	const struct config *cfg = d->r->cfg;
	uint64_t now = clock_now_ms();
	double cap = bucket_capacity(cfg);
	if (d->tokens < 0) {
		d->tokens = cap;
	} else {
		d->tokens += (double)(now - d->tokens_at) / 1000.0 * cfg->service.rate_per_sec;
		if (d->tokens > cap)
			d->tokens = cap;
	}
	d->tokens_at = now;
}

/* How many recipients the next service transaction may carry. */
static unsigned service_chunk(const struct config *cfg)
{
	unsigned cap = (unsigned)bucket_capacity(cfg);
	unsigned n = cfg->service.max_recipients_per_message;
	return n < cap ? n : cap;
}

/* ---- outcomes -------------------------------------------------------- */

static void add_failure(struct qmail *m, unsigned i, const char *status, const char *remote,
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

/* What one recipient's reply means (SPEC §5). */
enum verdict { V_DELIVERED, V_DEFERRED, V_BOUNCED };

struct outcome {
	unsigned idx;
	enum verdict v;
	struct smtp_reply rep;
};

struct txn {
	struct dconn *dc;
	struct job *job;
	GArray *outcomes;           /* struct outcome */
	bool pause;
	char pause_reason[300];
};

static bool is_throttle_or_auth(int code)
{
	return code == 421 || code == 454 || code == 530 || code == 535;
}

static enum verdict classify(const struct dest *d, const struct smtp_reply *rep)
{
	if (rep->code >= 200 && rep->code < 300)
		return V_DELIVERED;
	if (rep->code == 0 || (rep->code >= 400 && rep->code < 500))
		return V_DEFERRED;
	/* On the service route an authentication failure never bounces the
	 * queue: the credentials are wrong, not the recipients. */
	if (d->service && is_throttle_or_auth(rep->code))
		return V_DEFERRED;
	return V_BOUNCED;
}

static void txn_logged(struct qmail *m, void *arg);

static void txn_finish(struct txn *t)
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
		m->env.rcpts[o->idx].last = strdup(reply_line(&o->rep, resp, sizeof(resp)));
		switch (o->v) {
		case V_DELIVERED:
			m->env.rcpts[o->idx].state = RCPT_DELIVERED;
			break;
		case V_BOUNCED: {
			char line[600];
			m->env.rcpts[o->idx].state = RCPT_BOUNCED;
			reply_line(&o->rep, line, sizeof(line));
			add_failure(m, o->idx, o->rep.status[0] ? o->rep.status : "5.0.0",
			            t->dc && t->dc->relay[0] ? t->dc->relay : NULL,
			            o->rep.code ? line : NULL, o->rep.code ? "the receiving server refused it" : o->rep.text);
			break;
		}
		case V_DEFERRED:
			break;
		}
	}
	/* Nothing is logged before the outcome is on disk (SPEC §5). */
	if (all_final(m) && !m->writing && !m->delete_requested)
		mail_finalize(m, txn_logged, t);
	else
		state_save(m, txn_logged, t);
}

static void dconn_after_txn(struct dconn *dc, bool reusable);

static void txn_logged(struct qmail *m, void *arg)
{
	struct txn *t = arg;
	struct runner *r = m->r;
	uint64_t next = clock_now_ms() + runner_backoff_ms(r->cfg, m->attempts);
	struct dest *d = t->job->d;
	if (d->paused_until > next)
		next = d->paused_until;
	const char *relay = t->dc && t->dc->relay[0] ? t->dc->relay : NULL;
	bool tls = t->dc && t->dc->tls;
	for (guint k = 0; k < t->outcomes->len; k++) {
		struct outcome *o = &g_array_index(t->outcomes, struct outcome, k);
		switch (o->v) {
		case V_DELIVERED:
			r->stats.delivered++;
			log_outcome(r, "delivered", m, o->idx, relay, &o->rep, tls, 0);
			if (d->service)
				record_sent(r, m, o->idx, &o->rep);
			break;
		case V_BOUNCED: {
			r->stats.bounced++;
			log_outcome(r, "bounced", m, o->idx, relay, &o->rep, tls, 0);
			char line[600];
			if (status_suppresses(o->rep.status))
				learn(r, m->env.rcpts[o->idx].addr, o->rep.status,
				      reply_line(&o->rep, line, sizeof(line)));
			break;
		}
		case V_DEFERRED:
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
static void job_fail(struct job *job, struct dconn *dc, enum verdict v, const struct smtp_reply *rep)
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

static void reply_set(struct smtp_reply *rep, int code, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_set(struct smtp_reply *rep, int code, const char *status, const char *fmt, ...)
{
	va_list ap;
	memset(rep, 0, sizeof(*rep));
	rep->code = code;
	snprintf(rep->status, sizeof(rep->status), "%s", status);
	va_start(ap, fmt);
	vsnprintf(rep->text, sizeof(rep->text), fmt, ap);
	va_end(ap);
}

static void dest_pause(struct dest *d, const struct smtp_reply *rep)
{
	const struct config *cfg = d->r->cfg;
	d->paused_until = clock_now_ms() + cfg->service.pause_ms;
	char line[600];
	snprintf(d->pause_reason, sizeof(d->pause_reason), "%.290s",
	         reply_line(rep, line, sizeof(line)));
	fprintf(stderr, "hikyaku: delivery service paused for %llu s: %s\n",
	        (unsigned long long)(cfg->service.pause_ms / 1000), d->pause_reason);
}

/* ---- connections ----------------------------------------------------- */

static void dconn_close(struct dconn *dc)
{
	struct dest *d = dc->d;
	g_ptr_array_remove(d->conns, dc);
	if (dc->c)
		smtp_client_close(dc->c);
	free(dc->dns ? dc->dns->hosts : NULL);
	free(dc->dns);
	free(dc);
}

/* Closes the destination's connections that carry no job. */
static void dest_close_idle(struct dest *d)
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

static void dconn_try_next(struct dconn *dc);
static void dconn_run(struct dconn *dc);
static void dconn_open(struct dest *d, struct job *job);

static void dconn_fail_job(struct dconn *dc, enum verdict v, const struct smtp_reply *rep)
{
	struct job *job = dc->job;
	dc->job = NULL;
	dns_result_drop(dc);
	struct dest *d = dc->d;
	g_ptr_array_remove(d->conns, dc);
	if (dc->c)
		smtp_client_close(dc->c);
	free(dc);
	if (job)
		job_fail(job, NULL, v, rep);
	dest_kick(d);
}

static void client_opened(struct smtp_client *c, void *arg, const struct smtp_reply *fail)
{
	struct dconn *dc = arg;
	if (!fail) {
		dc->d->down_count = 0;
		dc->d->down_until = 0;
		dc->c = c;
		dc->tls = smtp_client_tls_active(c);
		snprintf(dc->relay, sizeof(dc->relay), "%s", smtp_client_relay(c));
		dns_result_drop(dc);
		dconn_run(dc);
		return;
	}
	dc->c = NULL; /* the client frees itself after a failed open */
	dc->last_fail = *fail;
	struct dest *d = dc->d;
	/* A refusal before any recipient was named (greeting, EHLO, AUTH)
	 * says nothing about the recipients: on the service route it defers
	 * and pauses, it never bounces the queue (SPEC §5). */
	if (d->service && (is_throttle_or_auth(fail->code) || fail->code >= 500)) {
		dest_pause(d, fail);
		dconn_fail_job(dc, V_DEFERRED, fail);
		return;
	}
	dconn_try_next(dc);
}

/*
 * No host of d could be reached: the jobs waiting for it fail now with the
 * same reply instead of each opening a connection that fails the same way
 * (a destination that is down costs one attempt, not one per mail).
 */
static void dest_mark_down(struct dest *d, const struct smtp_reply *why)
{
	uint64_t now = clock_now_ms();
	d->down_count++;
	d->down_until = now + runner_backoff_ms(d->r->cfg, d->down_count);
	d->down_rep = *why;
	struct job *job;
	while ((job = g_queue_pop_head(&d->jobs)))
		job_fail(job, NULL, V_DEFERRED, &d->down_rep);
}

static void dconn_try_next(struct dconn *dc)
{
	struct runner *r = dc->d->r;
	const struct config *cfg = r->cfg;
	while (dc->dns && dc->host_i < dc->dns->nhosts) {
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
		struct smtp_client_params p = { 0 };
		p.addr = (const struct sockaddr *)&ss;
		p.helo = cfg->server.hostname;
		p.data_timeout_ms = DATA_TIMEOUT_MS;
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
		struct smtp_client *c;
		if (smtp_client_open(r->loop, &p, client_opened, dc, &c) == 0)
			return;
	}
	/* Every host failed. */
	struct smtp_reply rep = dc->last_fail;
	if (!rep.text[0])
		reply_set(&rep, 0, "4.4.1", "no host of %s could be reached", dc->d->key);
	enum verdict v = dc->d->service ? V_DEFERRED : classify(dc->d, &rep);
	if (rep.code == 0 && !rep.status[0])
		snprintf(rep.status, sizeof(rep.status), "4.4.1");
	struct dest *d = dc->d;
	dconn_fail_job(dc, v, &rep);
	if (v == V_DEFERRED)
		dest_mark_down(d, &rep);
}

static void dns_done(void *arg, struct dns_result *res)
{
	struct dconn *dc = arg;
	struct smtp_reply rep;
	if (dc->closing) {
		free(dc);
		return;
	}
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
		g_ptr_array_remove(d->conns, dc);
		free(dc);
		dconn_open(d, job);
		return;
	}
	if (dc->d->service || res->status == DNS_TEMPFAIL) {
		reply_set(&rep, 0, "4.4.3", "%s", res->error);
		dconn_fail_job(dc, V_DEFERRED, &rep);
	} else if (res->status == DNS_NULL_MX) {
		reply_set(&rep, 0, "5.1.10", "%s", res->error[0] ? res->error :
		          "the domain accepts no mail (null MX)");
		dconn_fail_job(dc, V_BOUNCED, &rep);
	} else {
		reply_set(&rep, 0, "5.1.2", "%s", res->error[0] ? res->error : "the domain does not exist");
		dconn_fail_job(dc, V_BOUNCED, &rep);
	}
}

static void dconn_open(struct dest *d, struct job *job)
{
	struct runner *r = d->r;
	struct dconn *dc = calloc(1, sizeof(*dc));
	dc->d = d;
	dc->job = job;
	g_ptr_array_add(d->conns, dc);
	int rc;
	if (d->service) {
		rc = dns_lookup_host(r->dns, r->cfg->service.host, dns_done, dc);
	} else if (d->key[0] == '[') {
		/* An address literal: no DNS (RFC 5321 §5.1). */
		char lit[64];
		snprintf(lit, sizeof(lit), "%s", d->key + 1);
		char *end = strchr(lit, ']');
		if (end)
			*end = '\0';
		const char *ip = strncasecmp(lit, "IPv6:", 5) == 0 ? lit + 5 : lit;
		rc = dns_lookup_host(r->dns, ip, dns_done, dc);
	} else {
		rc = dns_lookup_mx(r->dns, d->key, dns_done, dc);
	}
	if (rc < 0) {
		struct smtp_reply rep;
		reply_set(&rep, 0, "4.4.3", "DNS lookup could not start");
		dconn_fail_job(dc, V_DEFERRED, &rep);
	}
}

static void txn_done(struct smtp_client *c, void *arg, const struct smtp_client_result *res);

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

	if (m->env.smtputf8 && !smtp_client_has(dc->c, "SMTPUTF8")) {
		reply_set(&rep, 0, "5.6.7", "the server %s does not support SMTPUTF8, which this mail needs",
		          dc->relay);
		job_fail(job, dc, V_BOUNCED, &rep);
		dconn_after_txn(dc, true);
		return;
	}
	uint64_t limit = smtp_client_size_limit(dc->c);
	if (limit && m->len > limit) {
		reply_set(&rep, 0, "5.3.4", "the message is larger than %s accepts (%llu bytes)",
		          dc->relay, (unsigned long long)limit);
		job_fail(job, dc, V_BOUNCED, &rep);
		dconn_after_txn(dc, true);
		return;
	}
	unsigned n = job->rcpts->len - job->next;
	if (d->service) {
		unsigned chunk = service_chunk(cfg);
		if (n > chunk)
			n = chunk;
		bucket_refill(d);
		if (d->tokens < n) {
			/* Wait until the bucket holds enough for this transaction. */
			double need = (double)n - d->tokens;
			uint64_t wait = (uint64_t)(need / cfg->service.rate_per_sec * 1000.0) + 1;
			g_queue_push_head(&d->jobs, job);
			dc->job = NULL;
			dc->idle_since = clock_now_ms();
			if (!d->rate_timer_on) {
				d->rate_timer_on = true;
				uv_timer_start(&d->rate_timer, rate_timer_cb, wait, 0);
			}
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
			snprintf(from_buf, sizeof(from_buf), "%.*s+%s%s", (int)(at - from), from, m->env.id, at);
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
		.envid = m->env.id,
	};
	int rc = smtp_client_send(dc->c, &msg, txn_done, dc);
	free(rcpts);
	if (rc < 0 && dc->used) {
		/* An idle connection the server has closed meanwhile: this is not
		 * the mail's failure; give the job to a new connection. */
		if (d->service)
			d->tokens += n;
		dc->sent_rcpts = 0;
		dc->job = NULL;
		g_queue_push_head(&d->jobs, job);
		g_ptr_array_remove(d->conns, dc);
		smtp_client_close(dc->c);
		free(dc);
		dest_kick(d);
		return;
	}
	dc->used = true;
	if (rc < 0) {
		reply_set(&rep, 0, "4.4.2", "could not send on the connection to %s", dc->relay);
		dconn_fail_job(dc, V_DEFERRED, &rep);
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
		o.v = classify(d, &o.rep);
		if (d->service && is_throttle_or_auth(o.rep.code))
			t->pause = true;
		if (d->service && o.v == V_BOUNCED && o.rep.code == 554 &&
		    (strcasestr(o.rep.text, "not verified") || strcasestr(o.rep.text, "unverified")))
			fprintf(stderr, "hikyaku: ALERT: the delivery service refuses an unverified "
			                "identity for %s: %s\n", job->m->env.id, o.rep.text);
		g_array_append_val(t->outcomes, o);
	}
	job->next += dc->sent_rcpts;
	dc->sent_rcpts = 0;
	for (guint k = 0; t->pause && k < t->outcomes->len; k++) {
		struct outcome *o = &g_array_index(t->outcomes, struct outcome, k);
		if (is_throttle_or_auth(o->rep.code)) {
			dest_pause(d, &o->rep);
			break;
		}
	}
	if (!res->reusable) {
		smtp_client_close(dc->c);
		dc->c = NULL;
	}
	txn_finish(t);
}

static void dconn_after_txn(struct dconn *dc, bool reusable)
{
	struct dest *d = dc->d;
	if (!dc->c || !reusable || d->r->stopping) {
		struct job *job = dc->job;
		dc->job = NULL;
		g_ptr_array_remove(d->conns, dc);
		if (dc->c)
			smtp_client_close(dc->c);
		free(dc);
		if (job)
			g_queue_push_head(&d->jobs, job);
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
			reply_set(&prep, 0, "4.7.0", "the delivery service is paused: %s", d->pause_reason);
			job_fail(job, NULL, V_DEFERRED, &prep);
		}
		dest_kick(d);
		return;
	}
	if (dc->job) {
		dconn_run(dc);
		return;
	}
	struct job *next = g_queue_pop_head(&d->jobs);
	if (next) {
		dc->job = next;
		dconn_run(dc);
		return;
	}
	dc->idle_since = clock_now_ms();
}

static void dest_kick(struct dest *d)
{
	struct runner *r = d->r;
	const struct config *cfg = r->cfg;
	struct smtp_reply rep;
	if (d->service && !cfg->service.host) {
		/* A reload removed the service: its mail waits (SPEC §4). */
		reply_set(&rep, 0, "4.3.5", "no delivery service is configured");
		struct job *job;
		while ((job = g_queue_pop_head(&d->jobs)))
			job_fail(job, NULL, V_DEFERRED, &rep);
		return;
	}
	if (d->paused_until > clock_now_ms()) {
		reply_set(&rep, 0, "4.7.0", "the delivery service is paused: %s", d->pause_reason);
		struct job *job;
		while ((job = g_queue_pop_head(&d->jobs)))
			job_fail(job, NULL, V_DEFERRED, &rep);
		return;
	}
	if (d->down_until > clock_now_ms()) {
		struct job *job;
		while ((job = g_queue_pop_head(&d->jobs)))
			job_fail(job, NULL, V_DEFERRED, &d->down_rep);
		return;
	}
	for (guint i = 0; i < d->conns->len && !g_queue_is_empty(&d->jobs);) {
		struct dconn *dc = g_ptr_array_index(d->conns, i);
		if (dc->c && !dc->job && dc->idle_since && !smtp_client_alive(dc->c)) {
			dconn_close(dc); /* the server hung up while it was idle */
			continue;
		}
		i++;
		if (dc->c && !dc->job && dc->idle_since) {
			dc->job = g_queue_pop_head(&d->jobs);
			dconn_run(dc);
			return; /* dconn_run may have changed d->conns; kick again later */
		}
	}
	while (!g_queue_is_empty(&d->jobs) && d->conns->len < dest_max_conns(d))
		dconn_open(d, g_queue_pop_head(&d->jobs));
}

/* ---- rounds ---------------------------------------------------------- */

static void round_end(struct qmail *m);

static void job_free(struct job *job)
{
	job->d->njobs--;
	g_array_free(job->rcpts, TRUE);
	free(job);
}

static void round_job_done(struct job *job)
{
	struct qmail *m = job->m;
	job_free(job);
	if (--m->outstanding == 0)
		round_end(m);
}

struct dsn_commit {
	struct runner *r;
	struct qmail *m;            /* the mail whose failures it reports */
	buf_t msg;
	struct queue_envelope env;
};

static void round_finish(struct qmail *m);

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
		json_t *f = json_object();
		json_object_set_new(f, "queue_id", json_string(dc->env.id));
		json_object_set_new(f, "session", json_null());
		json_object_set_new(f, "client", json_null());
		json_object_set_new(f, "helo", json_null());
		json_object_set_new(f, "from", json_string(""));
		json_object_set_new(f, "header_from", jstr(dc->env.header_from));
		json_object_set_new(f, "message_id", json_null());
		json_object_set_new(f, "rcpts", json_integer(1));
		json_object_set_new(f, "size", json_integer((json_int_t)dc->env.size));
		json_object_set_new(f, "tls", json_false());
		json_object_set_new(f, "route", json_string("direct"));
		json_object_set_new(f, "matched", json_null());
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
	free(dc);
	if (!m)
		return; /* a notice for a mail already gone (a service bounce) */
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
static int dsn_queue(struct runner *r, struct qmail *owner, const struct dsn_info *info,
                     const struct dsn_rcpt *rcpts, size_t n, bool smtputf8)
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
static bool round_send_dsn(struct qmail *m)
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
	              m->failures->len, m->env.smtputf8) < 0) {
		g_array_set_size(m->failures, 0);
		g_ptr_array_set_size(m->strings, 0);
		return false;
	}
	return true;
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

static void runner_maybe_stopped(struct runner *r);

/* SPEC §7: "deleted", with every recipient still pending. */
static void log_deleted(struct qmail *m)
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
static void round_finish(struct qmail *m)
{
	struct runner *r = m->r;
	free(m->data);
	m->data = NULL;
	m->len = 0;
	m->in_round = false;
	r->rounds--;
	if (m->delete_requested) {
		log_deleted(m);
		mail_delete(m);
	} else if (mail_done(m)) {
		mail_delete(m);
	} else {
		uint64_t next = clock_now_ms() + runner_backoff_ms(r->cfg, m->attempts);
		struct dest *sd = g_hash_table_lookup(r->dests, "service");
		if (m->env.route && strcmp(m->env.route, "service") == 0 && sd && sd->paused_until > next)
			next = sd->paused_until;
		schedule_mail(m, next);
	}
	runner_arm(r);
	runner_maybe_stopped(r);
}

static void round_end(struct qmail *m)
{
	/* A mail an administrator deleted meanwhile owes its sender nothing. */
	if (m->delete_requested && m->failures)
		g_array_set_size(m->failures, 0);
	if (!round_send_dsn(m))
		round_finish(m);
}

struct expiry {
	GArray *idx;
};

static void expired_logged(struct qmail *m, void *arg)
{
	struct expiry *x = arg;
	struct smtp_reply rep;
	reply_set(&rep, 0, "4.4.7", "delivery time expired: the mail stayed in the queue for its "
	          "whole lifetime");
	for (guint k = 0; k < x->idx->len; k++) {
		m->r->stats.expired++;
		log_outcome(m->r, "expired", m, g_array_index(x->idx, unsigned, k), NULL, &rep, false, 0);
	}
	g_array_free(x->idx, TRUE);
	free(x);
	round_end(m);
}

/* The message's domain for grouping, in A-label form; NULL if invalid. */
static char *rcpt_dest_key(const char *addr)
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

struct supp_round {
	GArray *idx;
	GPtrArray *reason;
};

/* ---- reports that arrive for bounce_address (SPEC §6 item 1) ---------- */

struct bounce_found {
	char *addr, *status, *diagnostic, *remote, *sender, *qid;
	bool is_new;
};

struct bounce_job {
	uv_work_t work;
	struct qmail *m;
	GArray *idx;                /* unsigned: this mail's bounce_address recipients */
	GPtrArray *tags;            /* char *: their +tags (VERP), "" without */
	GArray *found;              /* struct bounce_found */
	bool is_report;
	unsigned unmatched;         /* failures naming no mail hikyaku sent */
};

static char *service_id_of_message_id(const char *mid)
{
	if (!mid)
		return NULL;
	if (*mid == '<')
		mid++;
	size_t n = strcspn(mid, "@>");
	return n >= 8 ? strndup(mid, n) : NULL;
}

/*
 * On the thread pool: parse the report, and learn only the recipients it
 * reports as failed that hikyaku really sent this mail to (by the VERP
 * tag, the envelope id, or the service's message id): a forged report
 * must not put an arbitrary customer on the list.
 */
static void bounce_work(uv_work_t *w)
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
	char *sid = service_id_of_message_id(rep.original_message_id);
	const char *envid = rep.original_envelope_id && queue_id_valid(rep.original_envelope_id) ?
	                    rep.original_envelope_id : NULL;
	uv_mutex_lock(&r->supp_lock);
	for (size_t k = 0; r->supp && k < rep.nrcpts; k++) {
		const struct dsn_report_rcpt *x = &rep.rcpts[k];
		if (!dsn_rcpt_suppresses(x))
			continue;
		char *sender = NULL, *qid = NULL;
		int found = 0;
		for (guint t = 0; found != 1 && t < j->tags->len; t++) {
			char *tag = g_ascii_strup(g_ptr_array_index(j->tags, t), -1);
			if (queue_id_valid(tag))
				found = supp_sent_find(r->supp, tag, NULL, x->final_recipient, &sender, &qid);
			g_free(tag);
		}
		if (found != 1 && envid)
			found = supp_sent_find(r->supp, envid, NULL, x->final_recipient, &sender, &qid);
		if (found != 1 && sid)
			found = supp_sent_find(r->supp, NULL, sid, x->final_recipient, &sender, &qid);
		if (found != 1) {
			j->unmatched++;
			continue;
		}
		struct bounce_found f = { 0 };
		f.addr = strdup(x->final_recipient);
		f.status = strdup(x->status);
		f.diagnostic = x->diagnostic ? strdup(x->diagnostic) : NULL;
		f.remote = x->remote_mta ? strdup(x->remote_mta) : NULL;
		f.sender = sender;
		f.qid = qid;
		f.is_new = supp_add(r->supp, x->final_recipient, "bounced", x->status, x->diagnostic,
		                    "dsn", (int64_t)clock_now_ms()) == 1;
		g_array_append_val(j->found, f);
	}
	uv_mutex_unlock(&r->supp_lock);
	free(sid);
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
}

static void bounce_after(uv_work_t *w, int status)
{
	(void)status;
	struct bounce_job *j = w->data;
	struct qmail *m = j->m;
	struct runner *r = m->r;
	for (guint k = 0; k < j->found->len; k++) {
		struct bounce_found *f = &g_array_index(j->found, struct bounce_found, k);
		if (f->is_new) {
			json_t *fl = json_object();
			json_object_set_new(fl, "to", jstr(f->addr));
			json_object_set_new(fl, "source", json_string("dsn"));
			json_object_set_new(fl, "status", jstr(f->status));
			json_object_set_new(fl, "response", jstr(f->diagnostic));
			evlog_emit(r->log, "learned", fl);
		}
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
			.reason = "the delivery service accepted the mail, then reported that it "
			          "could not be delivered",
			.last_attempt_ms = clock_now_ms(),
		};
		dsn_queue(r, NULL, &info, &dr, 1, false);
		free(f->addr);
		free(f->status);
		free(f->diagnostic);
		free(f->remote);
		free(f->sender);
		free(f->qid);
	}
	if (!j->is_report)
		fprintf(stderr, "hikyaku: mail %s to the bounce address is not a delivery status "
		        "report; ignored\n", m->env.id);
	else if (j->unmatched)
		fprintf(stderr, "hikyaku: report %s names %u failed recipient(s) of no mail hikyaku "
		        "sent; not learned\n", m->env.id, j->unmatched);
	/* Read, not relayed: the bounce address recipients are done. */
	for (guint k = 0; k < j->idx->len; k++)
		m->env.rcpts[g_array_index(j->idx, unsigned, k)].state = RCPT_DELIVERED;
	state_save(m, bounce_consumed, j);
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
		r->rounds--;
		schedule_mail(m, clock_now_ms() + runner_backoff_ms(r->cfg, m->attempts));
		mail_unref(m);
		return;
	}
	/* The message starts after the magic line and the envelope line. */
	char *nl = memchr(j->data, '\n', j->len);
	nl = nl ? memchr(nl + 1, '\n', j->len - (size_t)(nl + 1 - j->data)) : NULL;
	size_t off = nl ? (size_t)(nl + 1 - j->data) : j->len;
	m->len = j->len - off;
	memmove(j->data, j->data + off, m->len);
	j->data[m->len] = '\0';
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
			m->env.rcpts[i].state = RCPT_SUPPRESSED;
			free(m->env.rcpts[i].last);
			m->env.rcpts[i].last = strdup("not sent: on the suppression list");
			add_failure(m, i, "5.1.1", NULL, NULL,
			            "the recipient is on the suppression list: an earlier mail to this "
			            "address bounced, so it was not sent again");
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
		char *key = service ? strdup("service") : rcpt_dest_key(m->env.rcpts[i].addr);
		if (!key) {
			g_array_append_val(bad, i);
			continue;
		}
		struct job *job = g_hash_table_lookup(groups, key);
		if (!job) {
			job = calloc(1, sizeof(*job));
			job->m = m;
			job->d = dest_get(r, key, service);
			job->d->njobs++;
			job->rcpts = g_array_new(FALSE, FALSE, sizeof(unsigned));
			g_hash_table_insert(groups, key, job);
			g_ptr_array_add(jobs, job);
		} else {
			free(key);
		}
		g_array_append_val(job->rcpts, i);
	}
	g_hash_table_destroy(groups);
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
		job->d = dest_get(r, "invalid", false);
		job->d->njobs++;
		job->rcpts = bad;
		reply_set(&rep, 0, "5.1.2", "the recipient's domain is not a valid domain name");
		job_fail(job, NULL, V_BOUNCED, &rep);
	} else {
		g_array_free(bad, TRUE);
	}
	for (guint k = 0; k < jobs->len; k++) {
		struct job *job = g_ptr_array_index(jobs, k);
		g_queue_push_tail(&job->d->jobs, job);
		dest_kick(job->d);
	}
	g_ptr_array_free(jobs, TRUE);
	mail_unref(m);
}

/* The destination that holds the mail back: every destination of its
 * pending recipients is down or paused now. NULL: try it. */
static struct dest *mail_held_by(struct qmail *m, uint64_t now, uint64_t *until)
{
	struct runner *r = m->r;
	struct dest *held = NULL;
	*until = UINT64_MAX;
	if (m->env.route && strcmp(m->env.route, "service") == 0) {
		struct dest *d = g_hash_table_lookup(r->dests, "service");
		uint64_t u = d ? (d->down_until > d->paused_until ? d->down_until : d->paused_until) : 0;
		if (u <= now)
			return NULL;
		*until = u;
		return d;
	}
	for (size_t i = 0; i < m->env.nrcpts; i++) {
		if (m->env.rcpts[i].state != RCPT_PENDING)
			continue;
		char *key = rcpt_dest_key(m->env.rcpts[i].addr);
		struct dest *d = key ? g_hash_table_lookup(r->dests, key) : NULL;
		free(key);
		if (!d || d->down_until <= now)
			return NULL;
		if (d->down_until < *until)
			*until = d->down_until;
		held = d;
	}
	return held;
}

/*
 * A mail held back by its destination is deferred as it stands: no file
 * read, no connection, no state write (a restart simply tries it). It
 * comes back when the destination may be tried again, spread over a
 * tenth of the wait so that a large queue does not return all at once.
 */
static void round_skip(struct qmail *m, struct dest *d, uint64_t now, uint64_t until)
{
	struct runner *r = m->r;
	struct smtp_reply rep;
	if (d->paused_until > now)
		reply_set(&rep, 0, "4.7.0", "delivery temporarily suspended: the delivery service is "
		          "paused: %s", d->pause_reason);
	else
		reply_set(&rep, 0, d->down_rep.status[0] ? d->down_rep.status : "4.4.1",
		          "delivery temporarily suspended: %.400s", d->down_rep.text);
	uint64_t spread = (until - now) / 10;
	if (spread > INT32_MAX)
		spread = INT32_MAX;
	uint64_t next = until + (spread ? (uint64_t)g_random_int_range(0, (gint32)spread) : 0);
	char line[600];
	reply_line(&rep, line, sizeof(line));
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
}

static void round_start(struct qmail *m)
{
	struct runner *r = m->r;
	uint64_t now = clock_now_ms(), until;
	struct dest *held;
	if (now < m->env.arrival_ms + r->cfg->queue.lifetime_ms && !m->delete_requested &&
	    !(m->failures && m->failures->len) && (held = mail_held_by(m, now, &until))) {
		round_skip(m, held, now, until);
		return;
	}
	m->in_round = true;
	r->rounds++;
	m->attempts++;
	if (clock_now_ms() >= m->env.arrival_ms + r->cfg->queue.lifetime_ms) {
		struct expiry *x = calloc(1, sizeof(*x));
		x->idx = g_array_new(FALSE, FALSE, sizeof(unsigned));
		for (unsigned i = 0; i < m->env.nrcpts; i++) {
			if (m->env.rcpts[i].state != RCPT_PENDING)
				continue;
			m->env.rcpts[i].state = RCPT_EXPIRED;
			add_failure(m, i, "4.4.7", NULL, NULL,
			            "the mail could not be delivered within the queue lifetime");
			g_array_append_val(x->idx, i);
		}
		state_save(m, expired_logged, x);
		return;
	}
	struct disk_job *j = calloc(1, sizeof(*j));
	j->work.data = j;
	j->r = r;
	j->m = m;
	m->refs++;
	snprintf(j->path, sizeof(j->path), "%s/%s", r->mail_dir, m->env.id);
	j->check_supp = (m->env.route && strcmp(m->env.route, "service") == 0) ||
	                r->cfg->suppression.apply_to == APPLY_ALL;
	uv_queue_work(r->loop, &j->work, read_work, round_read_done);
}

static void runner_tick(uv_timer_t *t)
{
	struct runner *r = t->data;
	uint64_t now = clock_now_ms();
	while (!r->stopping && r->rounds < MAX_ROUNDS_AT_ONCE) {
		GSequenceIter *it = g_sequence_get_begin_iter(r->schedule);
		if (g_sequence_iter_is_end(it))
			break;
		struct qmail *m = g_sequence_get(it);
		if (m->next_ms > now)
			break;
		g_sequence_remove(it);
		m->sched = NULL;
		round_start(m);
	}
	runner_arm(r);
}

static void runner_arm(struct runner *r)
{
	if (r->stopping || r->rounds >= MAX_ROUNDS_AT_ONCE)
		return;
	GSequenceIter *it = g_sequence_get_begin_iter(r->schedule);
	if (g_sequence_iter_is_end(it)) {
		uv_timer_stop(&r->timer);
		return;
	}
	struct qmail *m = g_sequence_get(it);
	uint64_t now = clock_now_ms();
	uv_timer_start(&r->timer, runner_tick, m->next_ms > now ? m->next_ms - now : 0, 0);
}

static void dest_closed(uv_handle_t *h)
{
	struct dest *d = h->data;
	g_ptr_array_free(d->conns, TRUE);
	free(d->key);
	free(d);
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
		if (uv_queue_work(r->loop, &j->work, sent_work, sent_after) < 0)
			sent_after(&j->work, -1);
	}
	GHashTableIter it;
	gpointer k, v;
	g_hash_table_iter_init(&it, r->dests);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		struct dest *d = v;
		for (guint i = 0; i < d->conns->len;) {
			struct dconn *dc = g_ptr_array_index(d->conns, i);
			if (dc->c && !dc->job && dc->idle_since &&
			    (now - dc->idle_since >= IDLE_CONN_MS || !smtp_client_alive(dc->c))) {
				dconn_close(dc);
				continue;
			}
			i++;
		}
		if (!g_queue_is_empty(&d->jobs))
			dest_kick(d);
		/* A destination with nothing left to do is forgotten, so that a
		 * long uptime over many recipient domains does not accumulate. */
		if (d->njobs == 0 && d->conns->len == 0 && d->paused_until <= now &&
		    d->down_until <= now && !d->rate_timer_on) {
			g_hash_table_iter_remove(&it);
			uv_close((uv_handle_t *)&d->rate_timer, dest_closed);
		}
	}
}

/* ---- the index ------------------------------------------------------- */

static struct qmail *mail_new(struct runner *r, const struct queue_envelope *env)
{
	json_t *j = queue_envelope_to_json(env);
	struct qmail *m = calloc(1, sizeof(*m));
	m->r = r;
	m->refs = 1;
	m->waiting = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
	m->inflight = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
	/* A deep copy through the envelope's own JSON form. */
	int rc = j ? queue_envelope_from_json(j, &m->env) : -ENOMEM;
	json_decref(j);
	if (rc < 0) {
		g_array_free(m->waiting, TRUE);
		g_array_free(m->inflight, TRUE);
		free(m);
		return NULL;
	}
	return m;
}

void runner_add(struct runner *r, const struct queue_envelope *env)
{
	struct qmail *m = mail_new(r, env);
	if (!m)
		return;
	if (g_hash_table_contains(r->mails, m->env.id)) {
		mail_unref(m);
		return;
	}
	g_hash_table_insert(r->mails, m->env.id, m);
	r->queued_bytes += m->env.size;
	r->stats.queued = g_hash_table_size(r->mails);
	schedule_mail(m, clock_now_ms());
}

struct load_item {
	struct queue_envelope env;
	struct queue_state st;
};

struct load_job {
	uv_work_t work;
	struct runner *r;
	GArray *items;              /* struct load_item */
	char *queue_dir;
	int errors;
};

static void load_work(uv_work_t *w)
{
	struct load_job *lj = w->data;
	char mail_dir[PATH_MAX], state_dir[PATH_MAX];
	snprintf(mail_dir, sizeof(mail_dir), "%s/mail", lj->queue_dir);
	snprintf(state_dir, sizeof(state_dir), "%s/state", lj->queue_dir);
	DIR *dir = opendir(mail_dir);
	if (dir) {
		struct dirent *de;
		while ((de = readdir(dir))) {
			if (!queue_id_valid(de->d_name))
				continue;
			struct load_item it = { 0 };
			uint64_t off;
			if (queue_read_envelope(lj->queue_dir, de->d_name, &it.env, &off) < 0) {
				fprintf(stderr, "hikyaku: queued mail %s is unreadable; left in place\n",
				        de->d_name);
				lj->errors++;
				continue;
			}
			/* An unreadable state file: the mail is tried again from the start. */
			queue_state_load(lj->queue_dir, de->d_name, &it.env, &it.st);
			g_array_append_val(lj->items, it);
		}
		closedir(dir);
	}
	/* State files whose mail is gone were being deleted: finish that. */
	dir = opendir(state_dir);
	if (dir) {
		struct dirent *de;
		while ((de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			char mp[PATH_MAX * 2], sp[PATH_MAX * 2];
			snprintf(mp, sizeof(mp), "%s/%.64s", mail_dir, de->d_name);
			snprintf(sp, sizeof(sp), "%s/%.64s", state_dir, de->d_name);
			if (!queue_id_valid(de->d_name) || access(mp, F_OK) < 0)
				unlink(sp);
		}
		closedir(dir);
	}
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
		m->waiting = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
		m->inflight = g_array_new(FALSE, FALSE, sizeof(struct state_waiter));
		m->env = it->env;
		m->attempts = it->st.attempts;
		m->last_ms = it->st.last_ms;
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

/* ---- life cycle ------------------------------------------------------ */

static char *read_password(const char *path)
{
	if (!path)
		return NULL;
	FILE *fp = fopen(path, "re");
	if (!fp) {
		fprintf(stderr, "hikyaku: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	char line[1024];
	char *pw = NULL;
	if (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\r\n")] = '\0';
		pw = strdup(line);
	}
	explicit_bzero(line, sizeof(line));
	fclose(fp);
	return pw;
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
	r->service_password = read_password(cfg->service.password_file);
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
	r->log = log;
	route_init();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/state", queue_dir(q));
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		int e = -errno;
		free(r);
		return e;
	}
	r->state_dir = strdup(path);
	snprintf(path, sizeof(path), "%s/mail", queue_dir(q));
	r->mail_dir = strdup(path);
	r->schedule = g_sequence_new(NULL);
	r->fin_waiting = g_array_new(FALSE, FALSE, sizeof(struct fin_req));
	r->mails = g_hash_table_new(g_str_hash, g_str_equal);
	r->dests = g_hash_table_new(g_str_hash, g_str_equal);
	uv_mutex_init(&r->supp_lock);
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
	g_hash_table_iter_init(&hit, r->dests);
	while (g_hash_table_iter_next(&hit, &hk, &hv)) {
		struct dest *d = hv;
		dest_close_idle(d);
	}
	/* SPEC §3: a reload lifts the pause; the service's mail goes now. */
	struct dest *sd = g_hash_table_lookup(r->dests, "service");
	if (sd)
		sd->paused_until = 0;
	GPtrArray *due = g_ptr_array_new();
	for (GSequenceIter *it = g_sequence_get_begin_iter(r->schedule); !g_sequence_iter_is_end(it);
	     it = g_sequence_iter_next(it)) {
		struct qmail *m = g_sequence_get(it);
		if (m->env.route && strcmp(m->env.route, "service") == 0)
			g_ptr_array_add(due, m);
	}
	uint64_t now = clock_now_ms();
	for (guint i = 0; i < due->len; i++)
		schedule_mail(g_ptr_array_index(due, i), now);
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
		reply_set(&srep, 0, "4.3.2", "hikyaku is shutting down; the mail stays queued");
		struct job *job;
		while ((job = g_queue_pop_head(&d->jobs)))
			job_fail(job, NULL, V_DEFERRED, &srep);
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
		while (g_hash_table_iter_next(&it, &k, &v)) {
			struct dest *d = v;
			g_queue_clear(&d->jobs);
			g_ptr_array_free(d->conns, TRUE);
			free(d->key);
			free(d);
		}
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
	if (r->fin_waiting)
		g_array_free(r->fin_waiting, TRUE);
	if (r->dns)
		dns_resolver_free(r->dns);
	if (r->supp)
		supp_close(r->supp);
	uv_mutex_destroy(&r->supp_lock);
	free(r->state_dir);
	free(r->mail_dir);
	free(r->service_password);
	SSL_CTX_free(r->tls_verify);
	SSL_CTX_free(r->tls_any);
	config_unref(r->cfg);
	free(r);
}

void runner_get_stats(const struct runner *r, struct runner_stats *st)
{
	*st = r->stats;
	st->queued = g_hash_table_size(r->mails);
}

/* ---- administration (the control socket, SPEC §8) -------------------- */

static json_t *mail_view(const struct qmail *m, bool all)
{
	struct queue_state st = { m->attempts, m->in_round ? 0 : m->next_ms, m->last_ms, NULL };
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

/* An administrator's retry also lifts a pause of the service route: the
 * operator has looked at the cause (SPEC §3 lifts it on reload too). */
static void service_unpause(struct runner *r)
{
	struct dest *d = g_hash_table_lookup(r->dests, "service");
	if (!d || d->paused_until == 0)
		return;
	d->paused_until = 0;
	d->pause_reason[0] = '\0';
	dest_kick(d);
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
		if (m->env.route && strcmp(m->env.route, "service") == 0)
			service_unpause(r);
		return 1;
	}
	service_unpause(r);
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
		/* Deliveries under way finish; the mail goes when they have. */
		m->delete_requested = true;
		return 1;
	}
	log_deleted(m);
	mail_delete(m);
	r->stats.queued = g_hash_table_size(r->mails);
	return 0;
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
	                    "bytes", (json_int_t)bytes, "active", (json_int_t)r->rounds));
	json_object_set_new(o, "counts", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
	                    "delivered", (json_int_t)r->stats.delivered,
	                    "deferred", (json_int_t)r->stats.deferred,
	                    "bounced", (json_int_t)r->stats.bounced,
	                    "expired", (json_int_t)r->stats.expired,
	                    "suppressed", (json_int_t)r->stats.suppressed,
	                    "deleted", (json_int_t)r->stats.deleted));
	json_t *svc = json_null();
	if (r->cfg->service.host) {
		struct dest *d = g_hash_table_lookup(r->dests, "service");
		uint64_t now = clock_now_ms();
		bool paused = d && d->paused_until > now;
		char hp[300], ts[40] = "";
		snprintf(hp, sizeof(hp), "%s:%u", r->cfg->service.host, (unsigned)r->cfg->service.port);
		if (paused)
			clock_rfc3339(d->paused_until, ts, sizeof(ts));
		svc = json_object();
		json_object_set_new(svc, "host", json_string(hp));
		json_object_set_new(svc, "connections", json_integer(d ? (json_int_t)d->conns->len : 0));
		json_object_set_new(svc, "waiting", json_integer(d ? (json_int_t)g_queue_get_length(&d->jobs) : 0));
		json_object_set_new(svc, "paused_until", paused ? json_string(ts) : json_null());
		json_object_set_new(svc, "pause_reason", paused ? jstr(d->pause_reason) : json_null());
	}
	json_object_set_new(o, "service", svc);
	json_object_set_new(o, "suppression", supp_status_json(r->supp, r->cfg->suppression.db));
	return o;
}

uint64_t runner_queued_bytes(const struct runner *r)
{
	return r->queued_bytes;
}
