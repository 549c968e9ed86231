/*
 * NAME
 *	runner_int - the queue runner's parts, shared among its files
 * SUMMARY
 *	Not an interface for others (that is relay/runner.h): the structures
 *	of the runner (mail, round, job, destination, connection) and the
 *	functions its files call in each other.
 * DESCRIPTION
 *	relay/runner.c       the schedule, rounds, the in-memory index, life cycle
 *	relay/dest.c         destinations, connections, rate bucket, pause, parking
 *	relay/mail_state.c   a mail's state file writes, removals, the message read
 *	relay/runner_learn.c what deliveries tell the suppression list
 *	relay/runner_bounce.c reports arriving for bounce_address (read by
 *	                     relay/bounce_in.c, shared with hikyakuctl)
 *	relay/dsn_queue.c    queueing DSNs, delay warnings and notices
 *	relay/runner_admin.c the control socket's queue requests
 *	relay/runner_outcome.c what a transaction's outcomes do to the mail
 *	relay/outcome.c      (pure) what a reply means; the synthetic statuses
 *
 *	The moving parts, in the order a mail meets them:
 *
 *	  mail (struct qmail)      one queued mail: its envelope, each recipient's
 *	                           state, when it is next due. Scheduled in a
 *	                           GSequence ordered by (due time, queue id).
 *	  round                    one delivery attempt of a mail: its message is
 *	                           read (thread pool), its pending recipients are
 *	                           grouped into jobs, one per destination.
 *	  job                      a mail's recipients for one destination and
 *	                           domain (a policy's domains: one job each).
 *	  destination (struct dest) the delivery service, one recipient domain, or
 *	                           a [destination NAME] policy covering several
 *	                           (relay/dest.c).
 *	  connection (struct dconn) DNS, then one smtp_client to the first host
 *	                           that answers; it runs jobs one after another.
 *
 *	Every outcome is written to DIR/state/ID and fsynced before it is logged,
 *	so that the log never claims what a crash could undo.
 * TOUCHES
 *	Nothing by itself.
 */
#ifndef HK_RELAY_RUNNER_INT_H
#define HK_RELAY_RUNNER_INT_H

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
#include <ifaddrs.h>
#include "relay/addr_class.h"
#include "relay/dns.h"
#include "relay/dsn.h"
#include "relay/dsn_parse.h"
#include "relay/outcome.h"
#include "relay/queue_fs.h"
#include "relay/queue_state.h"
#include "relay/queue_tag.h"
#include "relay/route.h"
#include "relay/smtp_client.h"
#include "relay/suppression.h"
#include "util/tls.h"
#include "util/clock.h"
#include "relay/bounce_in.h"
#include "relay/password_file.h"

/* The keys of the delivery service's destination and of the one that
 * bounces invalid recipient domains: with a blank, so that no recipient
 * domain (x@service) can name them. */
#define DEST_KEY_SERVICE " service"
#define DEST_KEY_INVALID " invalid"
#define IDLE_CONN_MS 5000           /* an idle connection is kept this long */
#define SWEEP_MS 1000
#define DNS_TIMEOUT_MS 5000
#define STATE_RETRY_MS 1000         /* a state write that failed is tried again */
#define MAX_ROUNDS_AT_ONCE 500      /* bounds memory under a huge backlog */
/* A round holds its message in memory: the rounds under way together hold
 * at most this much (one larger mail alone may still go), so that many
 * large mails queued at once do not exhaust memory (SPEC §5). Rounds that
 * only wait for a connection do not count, as for MAX_ROUNDS_AT_ONCE. */
#define ROUND_BYTES_MAX ((uint64_t)64 << 20)
/* The queue keeps a copy of each fresh mail's bytes for its first round
 * (queue_keep_messages()) while the copies not yet freed stay within
 * this; beyond it, that round reads them back as later rounds do. */
#define FIRST_ROUND_COPY_MAX ((size_t)32 << 20)
#define MX_ADDRESS_LIMIT 5          /* addresses one delivery attempt tries at most */
#define MX_SESSION_LIMIT 2          /* SMTP sessions one delivery attempt has at most */
/* A [destination NAME] policy's connection carries at most this many
 * recipients over all its transactions, then a new session begins:
 * docomo accepts 100 recipients per SMTP session ("1SMTPセッションあたり
 * 100宛先まで", docs/delivery.md), and a reused connection is one session. */
#define POLICY_SESSION_RCPTS 100

struct runner;
struct dest;
struct qmail;


struct job {
	struct qmail *m;
	struct dest *d;
	char *domain;               /* its recipients' domain (A-label), what DNS asks for;
	                               "service" on the service route */
	GArray *rcpts;              /* unsigned: indexes into m->env.rcpts */
	unsigned next;              /* first recipient not yet sent */
	bool settling;              /* counted in d->jobs_settling (txn_finish) */
};


struct dconn {
	struct dest *d;
	char *domain;               /* the recipient domain its hosts serve (its first job's):
	                               it carries only jobs of that domain */
	struct smtp_client *c;      /* NULL while resolving or connecting */
	struct job *job;
	struct dns_result *dns;     /* candidate hosts */
	size_t host_i, addr_i;
	struct smtp_reply last_fail;
	uint64_t idle_since;        /* 0 while busy */
	unsigned sent_rcpts;        /* in the current transaction */
	unsigned session_rcpts;     /* in all its transactions (POLICY_SESSION_RCPTS) */
	char relay[300];
	/* This delivery attempt (SPEC §5, as Postfix's smtp_mx_address_limit
	 * and smtp_mx_session_limit): addresses tried, SMTP sessions had,
	 * addresses skipped by [direct] internal_destinations. */
	unsigned tried, sessions, refused;
	char refused_what[120];
	bool tls;
	bool used;                  /* has carried a transaction */
};


/* Down: no host of a recipient domain could be reached (connection
 * refused, timeout, TLS, a 4xx greeting). Until "until" the mails for it
 * are deferred without a connection, a file read or a disk write; the
 * wait doubles with each failure in a row, from retry_min up to
 * retry_max. */
struct dest_down {
	uint64_t until;
	unsigned count;
	struct smtp_reply rep;
};


struct dest {
	struct runner *r;
	char *key;                  /* "service", the recipient domain, or "destination NAME" */
	char *policy;               /* a [destination NAME] policy (SPEC §3): NAME; else NULL */
	bool service;
	GQueue jobs;                /* struct job * waiting for a connection */
	GPtrArray *conns;           /* struct dconn *, busy and idle */
	unsigned closing;           /* connections closed by us whose QUIT is still under way:
	                               they count against the limit until they are gone */
	uint64_t paused_until;
	uint64_t paused_at;         /* when the pause began (a reload may change its length) */
	char pause_reason[300];
	/* The service and a plain domain are one destination: down. A policy
	 * covers several domains, each with its own hosts: downs holds one
	 * struct dest_down per domain that is down (domain -> malloc'd). */
	struct dest_down down;
	GHashTable *downs;
	double tokens;              /* rate bucket (service, policy) */
	uint64_t tokens_at;
	uv_timer_t rate_timer;
	bool rate_timer_on;
	unsigned njobs;             /* jobs alive that point here */
	unsigned jobs_settling;     /* of those, jobs whose transactions are over and
	                               that wait for their outcomes' durable record:
	                               they hold no slot (dest_full) */
	/* One destination never holds up another (SPEC §5): a mail whose
	 * destinations all have enough work (dest_full) waits here, read
	 * from disk only when a slot frees, taking no share of the global
	 * MAX_ROUNDS_AT_ONCE; mail for other destinations goes on time. */
	GQueue parked;              /* struct qmail *, by park_link */
	unsigned starting;          /* rounds begun for it whose jobs are not made yet */
};


/* A pending write of a mail's state file and who waits for it. */
struct state_waiter {
	void (*cb)(struct qmail *m, void *arg);
	void *arg;
};


struct qmail {
	struct runner *r;
	struct queue_envelope env;
	char ref[QUEUE_REF_MAX + 1];  /* QUEUEID-TAG: its VERP tag and ENVID */
	uint64_t warned_ms;         /* its delay warning was queued then (state file); 0: not */
	uint64_t next_ms;
	uint64_t last_ms;           /* the last attempt, 0: never tried */
	unsigned attempts;
	GSequenceIter *sched;
	bool delete_requested;      /* by an administrator, during a round */
	bool finalized;             /* its files are removed (all recipients final) */
	int outstanding;            /* jobs of the current round */
	bool in_round;
	bool removed;               /* deleted from the index */
	/* Jobs of this round in a destination's queue: when every job left
	 * waits there (waiting_round), the mail takes no share of
	 * MAX_ROUNDS_AT_ONCE (SPEC §5). */
	int queued_jobs;
	bool waiting_round;
	struct dest *parked_on;     /* waiting for a slot of this destination */
	char *held_by;              /* the key of the destination whose pause or down
	                             * state put the mail off last (round_skip) */
	GList park_link;
	GPtrArray *starting;        /* struct dest *: their "starting" counts this round */
	char *data;                 /* the message, during a round; from its
	                             * commit to its first round, the queue's
	                             * copy (hot) */
	size_t len;
	bool hot;                   /* data is the queue's copy: its bytes count
	                             * in the queue's keep_max until freed */
	GArray *failures;           /* struct dsn_rcpt of this round */
	GPtrArray *strings;         /* owned strings the failures point to */
	/* state file writes: one at a time, in order */
	bool writing;
	bool dirty;
	GArray *waiting;            /* struct state_waiter: wait for the next write */
	GArray *inflight;           /* struct state_waiter: wait for the current one
	                             * (both made when needed, NULL at rest) */
	int refs;
	GSequenceIter *by_arrival;  /* in r->arrivals while in the index (metrics) */
	char **rcpt_dom;            /* per recipient: its domain key, made once
	                             * (mail_rcpt_domain()); NULL: not made yet */
	bool moved_out;             /* out of the spool's segment log
	                             * (relay/queue_wal.h), or in it with a state
	                             * file (no room to move it): loaded at start,
	                             * or a state written (mail_move_out) */
};


struct runner {
	uv_loop_t *loop;
	struct config *cfg;
	struct queue *q;
	struct evlog *log;
	char *qdir;                 /* the spool (relay/queue_fs.h) */
	GSequence *schedule;        /* struct qmail *, by due time */
	GHashTable *mails;          /* id -> struct qmail * */
	GHashTable *dests;          /* key -> struct dest * */
	struct dns_resolver *dns;
	SSL_CTX *tls_verify;        /* service and [direct] tls = verify */
	SSL_CTX *tls_any;           /* opportunistic */
	struct sockaddr_storage *locals; /* this host's addresses (a wildcard listener's) */
	size_t nlocals;
	char *service_password;
	unsigned char tag_key[QUEUE_TAG_KEY_LEN]; /* relay/queue_tag.h */
	GHashTable *notifying;      /* "QUEUEID\nrcpt": a report's notice under way */
	struct supp *supp;          /* the suppression list (SPEC §6), or NULL */
	uv_mutex_t supp_lock;       /* one SQLite connection, used by worker threads */
	uv_timer_t timer;
	uv_timer_t sweep;
	uv_timer_t retry_timer;     /* state writes that failed, tried again */
	GPtrArray *state_retry;     /* struct disk_job * waiting for it */
	unsigned rounds;            /* mails in a round now */
	unsigned waiting_rounds;    /* of them, those only waiting for a connection */
	uint64_t round_bytes;       /* env.size of the mails in a round */
	uint64_t waiting_bytes;     /* of them, those only waiting for a connection */
	uint64_t sweeps;
	bool stopping;
	void (*stopped)(void *arg);
	void *stopped_arg;
	struct runner_stats stats;
	GArray *fin_waiting;        /* struct fin_req: mails done, to be removed */
	uint64_t queued_bytes;      /* sum of env.size over the index */
	bool fin_busy;              /* a removal batch is on the thread pool */
	/* Metrics (SPEC §9): kept as mails enter and leave the index and as
	 * recipients leave "pending", so that a scrape costs no walk over a
	 * queue of 100,000 mails (relay/runner_gauges.c). */
	uint64_t route_mails[2];    /* 0 direct, 1 service */
	uint64_t route_pending[2];
	GSequence *arrivals;        /* struct qmail *, by arrival: the oldest first */
};

/* runner_gauges.c: the index's figures, kept up to date. gauges_add()
 * beside every queued_bytes +=, gauges_remove() beside queued_bytes -=;
 * every change of a recipient's state goes through rcpt_set_state(). */
void gauges_add(struct runner *r, struct qmail *m);
void gauges_remove(struct runner *r, struct qmail *m);
void rcpt_set_state(struct qmail *m, size_t i, enum queue_rcpt_state st);


/* ---- disk work on the thread pool ------------------------------------ */

struct disk_job {
	uv_work_t work;
	bool retry;                 /* the last write failed: wait, then again */
	struct runner *r;
	struct qmail *m;
	char id[QUEUE_ID_LEN + 1];
	char *text;                 /* state to write */
	char *data;                 /* message read */
	size_t len;
	int status;
	bool check_supp;            /* look the pending recipients up (mail_read_work) */
	GArray *supp_idx;           /* unsigned: recipients found on the list */
	GPtrArray *supp_reason;     /* char *: their reasons */
};


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


/* ---- the suppression list -------------------------------------------- */

struct learn_job {
	uv_work_t work;
	struct runner *r;
	char *addr, *status, *response;
	int rc;
};


struct sent_job {
	uv_work_t work;
	struct runner *r;
	char *qid, *rcpt, *sender, *service_id;
	int64_t prune_before;      /* > 0: forget older records instead */
};



struct outcome {
	unsigned idx;
	enum outcome_verdict v;
	struct smtp_reply rep;
};


struct txn {
	struct dconn *dc;           /* NULL once the connection went on (txn_finish) */
	struct job *job;
	GArray *outcomes;           /* struct outcome */
	bool pause;
	char pause_reason[300];
	char relay[300];            /* the connection's, for the log: "" none */
	bool tls;
};


struct dsn_commit {
	struct runner *r;
	struct qmail *m;            /* the mail whose failures it reports */
	buf_t msg;
	struct queue_envelope env;
	void (*done)(void *arg, int status); /* without an owner: told the result */
	void *done_arg;
};


struct expiry {
	GArray *idx;
};


struct supp_round {
	GArray *idx;
	GPtrArray *reason;
};


/* ---- reports that arrive for bounce_address (SPEC §6 item 1) ---------- */



struct bounce_job {
	uv_work_t work;
	struct qmail *m;
	GArray *idx;                /* unsigned: this mail's bounce_address recipients */
	GPtrArray *tags;            /* char *: their +tags (VERP), "" without */
	GArray *found;              /* struct bounce_found */
	bool is_report;
	unsigned unmatched;         /* failures naming no mail hikyaku sent */
	unsigned ignored;           /* recipients over the cap of one report */
	unsigned unavailable;       /* failures whose records could not be read now */
	unsigned notices;           /* notices being queued */
	bool notice_failed;         /* one could not be queued: read the report again later */
};


struct notice_rec {
	uv_work_t work;
	struct runner *r;
	struct bounce_job *j;
	char qid[QUEUE_ID_LEN + 1];
	char *addr;
	char *key;                  /* in r->notifying */
	int rc;
};


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

static inline json_t *jstr(const char *s)
{
	return s ? evlog_str(s, strlen(s)) : json_null();
}

void schedule_mail(struct qmail *m, uint64_t when);
void mail_unref(struct qmail *m);
void state_save(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg);
void mail_delete(struct qmail *m);
void mail_move_out(struct qmail *m);
void mail_finalize(struct qmail *m, void (*cb)(struct qmail *m, void *arg), void *arg);
bool mail_all_final(const struct qmail *m);
void mail_read_work(uv_work_t *w);
void sent_record_work(uv_work_t *w);
void sent_record_after(uv_work_t *w, int status);
void record_sent(struct runner *r, const struct qmail *m, unsigned i, const struct smtp_reply *rep,
                 bool alone);
void runner_learn(struct runner *r, const char *addr, const char *status, const char *response);
struct dest *dest_get(struct runner *r, const char *key, bool service);
bool dest_full(const struct dest *d);
void dest_unpark(struct dest *d);
void txn_finish(struct txn *t);
void log_outcome(struct runner *r, const char *event, struct qmail *m, unsigned i,
                 const char *relay, const struct smtp_reply *rep, bool tls, uint64_t next_retry);
void add_failure(struct qmail *m, unsigned i, const char *status, const char *remote,
                 const char *diag, const char *reason);
void job_fail(struct job *job, struct dconn *dc, enum outcome_verdict v,
              const struct smtp_reply *rep);
void dconn_close(struct dconn *dc);
void dest_close_idle(struct dest *d);
void dconn_after_txn(struct dconn *dc, bool reusable);
void dest_kick(struct dest *d);
void dest_push_job(struct dest *d, struct job *job, bool head);
struct job *dest_pop_job(struct dest *d);
void dest_unlink_job(struct dest *d, GList *l);
void mail_waiting_update(struct qmail *m);
void round_job_done(struct job *job);
int dsn_queue(struct runner *r, struct qmail *owner, const struct dsn_info *info,
              const struct dsn_rcpt *rcpts, size_t n, bool smtputf8,
              void (*done)(void *arg, int status), void *done_arg);
bool round_send_dsn(struct qmail *m);
void log_deleted(struct qmail *m);
void round_finish(struct qmail *m);
/* Frees the message bytes the mail holds (mail_data_free()). */
void mail_data_free(struct qmail *m);
void round_end(struct qmail *m);
char *rcpt_dest_key(const struct config *cfg, const char *addr);
char *rcpt_domain_key(const char *addr);
char *dest_key_for_domain(const struct config *cfg, const char *domain);
/* rcpt_domain_key() of recipient i, made once per mail and kept: the
 * A-label conversion (libidn2) is otherwise the costliest step of every
 * round. NULL: the address has no usable domain. */
const char *mail_rcpt_domain(struct qmail *m, size_t i);
/* rcpt_dest_key() of recipient i, through mail_rcpt_domain(). */
char *mail_rcpt_dest_key(struct qmail *m, size_t i);
void mail_rcpt_domains_free(struct qmail *m);
struct dest_down *dest_down_of(struct dest *d, const char *domain, bool make);
void dest_paused_reply(const struct dest *d, struct smtp_reply *rep);
void dest_unpause(struct dest *d);
void dest_forget_down(struct dest *d);
void dest_reload(struct dest *d);
void dest_free(struct dest *d);
void dest_sweep(struct dest *d, uint64_t now);
bool dest_idle(const struct dest *d, uint64_t now);
uint64_t delay_warning_at(const struct qmail *m);
bool round_send_delay_warning(struct qmail *m);
void bounce_work(uv_work_t *w);
void bounce_after(uv_work_t *w, int status);
void dest_closed(uv_handle_t *h);

#endif
