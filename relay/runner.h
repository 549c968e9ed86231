/*
 * NAME
 *	runner - the queue runner: schedule, route, deliver, retry, bounce
 * SUMMARY
 *	Keeps an index of the queued mails in memory (loaded once at start,
 *	then fed by the listener: the spool is never rescanned), and delivers
 *	each mail when it is due: its pending recipients grouped by route and
 *	destination (the delivery service, or one recipient domain via MX),
 *	one transaction per group, over connections that are reused and
 *	limited per destination.
 * DESCRIPTION
 *	runner_new() binds the runner to the loop, the queue and the log;
 *	runner_load() reads the spool on the thread pool and schedules every
 *	mail found (after a restart: nothing delivered is sent again).
 *	runner_add() schedules a mail the listener has just committed; msg,
 *	when not NULL, is the queue's copy of its message bytes
 *	(queue_commit_message(), now the runner's): its first round sends
 *	them instead of reading them back from the spool.
 *	runner_reload() takes a new configuration (a pause of the service
 *	route is lifted; a [destination NAME] policy's pause keeps its start
 *	and takes the new length, and ends with the section). runner_stop() closes idle connections and stops
 *	scheduling; deliveries under way finish.
 *
 *	Each recipient's state (pending, delivered, bounced, expired) is kept
 *	in DIR/state/QUEUEID, written and fsynced on the thread pool after
 *	every delivery attempt, before anything is logged: a restart never
 *	resends to a recipient whose delivery was recorded. A mail whose
 *	recipients are all final is removed from the spool.
 *
 *	Retries: retry_min after the first attempt, doubling up to retry_max;
 *	after lifetime the remaining recipients expire. Each delivery round
 *	that brings recipients of a mail to a final failure queues one DSN
 *	(relay/dsn.h) to the envelope sender, unless that is the null sender.
 *
 *	One destination never holds up another (SPEC §5): a mail due only
 *	for destinations whose connections all have work waits beside them
 *	without counting against the global cap; one attempt tries at most
 *	5 addresses and 2 SMTP sessions; [direct] internal_destinations
 *	decides which addresses may be connected to; a recipient whose MX is
 *	hikyaku itself bounces 5.4.6. The runner's files are listed in
 *	relay/runner_int.h.
 * TOUCHES
 *	DIR/mail (read, delete), DIR/state, DIR/reported, DIR/tag.key; DNS
 *	and SMTP connections; the event log; the libuv thread pool for all
 *	disk work.
 */
#ifndef HK_RELAY_RUNNER_H
#define HK_RELAY_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "relay/queue.h"
#include "util/eventlog.h"

struct runner;

struct runner_stats {
	uint64_t delivered;
	uint64_t deferred;
	uint64_t bounced;
	uint64_t expired;
	uint64_t suppressed;
	uint64_t deleted;
	size_t queued;       /* mails in the index */
};

/* The runner keeps its own reference to cfg through config_ref. */
int runner_new(uv_loop_t *loop, const struct config *cfg, struct queue *q, struct evlog *log,
               struct runner **out);
int runner_load(struct runner *r);
void runner_add(struct runner *r, const struct queue_envelope *env, char *msg, size_t msg_len);
int runner_reload(struct runner *r, const struct config *cfg);
void runner_set_log(struct runner *r, struct evlog *log);
void runner_stop(struct runner *r, void (*done)(void *arg), void *arg);
void runner_free(struct runner *r);

/*
 * Administration (the control socket, SPEC §8):
 *	runner_queue_list() is the view (relay/queue_state.h) of every mail,
 *	oldest first, with its pending recipients and "active" when a
 *	delivery round is under way; runner_queue_show() one mail with all
 *	its recipients, NULL when there is none.
 *	runner_queue_retry() schedules the mail (id NULL: every mail) now
 *	and lifts a pause of the service route or of the [destination NAME]
 *	policies of its recipients (id NULL: every pause); it returns the
 *	number of mails, or -ENOENT.
 *	runner_queue_delete() removes a mail without a DSN and logs
 *	"deleted": 0 done, 1 done once the delivery under way ends,
 *	-ENOENT no such mail.
 *	runner_status() is the queue's size, the counts since start, the
 *	service route's state and each [destination NAME] policy's
 *	("destinations": limits, connections, jobs waiting, pause).
 */
json_t *runner_queue_list(struct runner *r);
json_t *runner_queue_show(struct runner *r, const char *id);
int runner_queue_retry(struct runner *r, const char *id);
int runner_queue_delete(struct runner *r, const char *id);
json_t *runner_status(struct runner *r);
/* The bytes of mail in the index (what the spool holds). */
uint64_t runner_queued_bytes(const struct runner *r);
/*
 * Metrics (SPEC §9), on the loop thread:
 *	runner_gauges() fills g with what runner_status() counts, by route
 *	(index 0 direct, 1 service): mails in the index, pending recipients,
 *	their bytes, the oldest arrival (0: the queue is empty), the open
 *	outbound connections and whether the service route is paused. The
 *	queue's figures are kept up to date as mails come and go (no walk
 *	over the index: a scrape costs the same with 100,000 mails queued).
 *	runner_suppression() is the suppression list's handle (NULL when it
 *	could not be opened) and the lock every user of it holds: for
 *	read-only work on the thread pool.
 */
struct runner_gauges {
	uint64_t mails[2];
	uint64_t rcpts[2];
	uint64_t bytes;
	uint64_t oldest_arrival_ms;
	unsigned conns_out;
	bool service_paused;
};
void runner_gauges(const struct runner *r, struct runner_gauges *g);
/* Whether the [destination NAME] policy is paused now (SPEC §9
 * hikyaku_destination_paused). */
bool runner_destination_paused(const struct runner *r, const char *name);
struct supp;
struct supp *runner_suppression(struct runner *r, uv_mutex_t **lock);

/* Pure helpers, exposed for tests. */
uint64_t runner_backoff_ms(const struct config *cfg, unsigned attempt);

#endif
