/*
 * NAME
 *	metrics - the counters, gauges and histogram of SPEC §9, and their
 *	Prometheus text rendering
 * SUMMARY
 *	A registry of what the relay log says (counters fed by the log's own
 *	events, so that they agree with the log by construction) and a pure
 *	function that renders it, together with a snapshot of the gauges,
 *	in the Prometheus text exposition format 0.0.4.
 * DESCRIPTION
 *	metrics_new() makes an empty registry: every counter of the two
 *	routes and five outcomes exists at 0 from the start (rate() needs a
 *	first sample). metrics_free() releases it.
 *
 *	metrics_observe() counts one event of the relay log (SPEC §7), the
 *	event name and its fields as util/eventlog.h writes them: it is the
 *	log's observer (evlog_set_observer()). received -> messages
 *	received; delivered, deferred, bounced, expired, suppressed ->
 *	recipients by route and outcome (delivered also feeds the delivery
 *	time histogram with its delay_ms); rejected -> rejections by status
 *	(the enhanced status, else the reply code, else "unknown"). Other
 *	events are not counted. It may be called from any thread.
 *
 *	metrics_render() writes the whole exposition: the registry's
 *	counters and histogram, then the gauges of g (a snapshot the caller
 *	took on the loop thread). It returns a malloc()ed NUL-terminated
 *	text and its length in *len, or NULL when out of memory.
 *
 *	metrics_label_escape() is the label value escaping of the format
 *	(backslash, double quote and newline), exposed for tests.
 * DIAGNOSTICS
 *	None: a label value the registry cannot hold (more than
 *	METRICS_MAX_STATUSES distinct statuses, or not a status) is counted
 *	under "other", so a hostile peer cannot grow the registry.
 * TOUCHES
 *	Memory only.
 */
#ifndef HK_UTIL_METRICS_H
#define HK_UTIL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum metrics_route { METRICS_DIRECT, METRICS_SERVICE, METRICS_NROUTES };

#define METRICS_MAX_STATUSES 64

/* A [destination NAME] policy and whether it is paused now (SPEC §3). */
struct metrics_destination {
	const char *name;
	bool paused;
};

/* The gauges, read on the loop thread at the moment of the scrape. */
struct metrics_gauges {
	uint64_t queue_messages[METRICS_NROUTES];
	uint64_t queue_recipients[METRICS_NROUTES];   /* pending ones */
	uint64_t queue_bytes;
	double queue_oldest_seconds;                  /* 0 when the queue is empty */
	uint64_t connections_in;
	uint64_t connections_out;
	bool service_paused;
	const struct metrics_destination *destinations;
	size_t ndestinations;
	int64_t suppression_entries;                  /* < 0: not known (not rendered) */
	double start_time_seconds;                    /* Unix time the daemon started */
	const char *version;
};

struct metrics;

int metrics_new(struct metrics **out);
void metrics_free(struct metrics *m);
void metrics_observe(void *m, const char *event, const json_t *fields);
char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len);
/* Writes the escaped form of s into out (cap bytes, NUL included; cut
 * short when it does not fit) and returns out. */
char *metrics_label_escape(const char *s, char *out, size_t cap);

/* The upper bounds (seconds) of hikyaku_delivery_seconds's buckets. */
extern const double metrics_delivery_buckets[];
extern const size_t metrics_ndelivery_buckets;

#endif
