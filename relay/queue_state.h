/*
 * NAME
 *	queue_state - a queued mail's delivery state, on disk and as shown
 * SUMMARY
 *	The runner keeps what happened to each queued mail in
 *	DIR/state/QUEUEID, one line of JSON written after every attempt:
 *
 *	  {"attempts":2,"next_ms":...,"last_ms":...,
 *	   "rcpts":["pending","delivered"],
 *	   "last":["451 4.3.0 Try later",null],
 *	   "notify":[...],"warned_ms":...}
 *
 *	rcpts and last run parallel to the envelope's recipients; notify is
 *	the runner's own record of failures still to be reported to the
 *	sender (kept opaque here); warned_ms when the one delay warning
 *	(SPEC §5) was queued, so that a restart does not send it again (absent
 *	in files written before it existed: read as 0). A mail without a state
 *	file has never been tried.
 *
 *	This module reads and writes that form, and builds the view of a
 *	mail that the control socket sends and hikyakuctl prints, so that a
 *	mail looks the same whether the daemon answers or the spool is read
 *	directly while the daemon is down.
 * DESCRIPTION
 *	queue_state_dump() returns the state line (malloc'd, no newline).
 *
 *	queue_state_parse() applies a state line to env (recipient states
 *	and last responses) and fills *st; st->notify is a new reference or
 *	NULL. A line for another number of recipients leaves env as it was.
 *
 *	queue_state_load() reads DIR/state/ID (at most 1 MiB); a missing
 *	file is not an error (the mail has not been tried).
 *
 *	queue_view() is the JSON view of a mail: its envelope, attempts,
 *	next and last try, when the delay warning went (delay_warning), and
 *	its recipients (only the pending ones when
 *	!all). Times are RFC 3339 UTC strings, null when not set.
 *
 *	queue_spool_read() reads every mail in DIR (without a daemon):
 *	an array of views (pending recipients only), oldest first.
 *	queue_spool_show() reads one: -ENOENT when there is no such mail.
 * DIAGNOSTICS
 *	Functions return 0 or a negative errno; -EINVAL for a malformed
 *	state line.
 * TOUCHES
 *	queue_state_load() and queue_spool_*() read DIR/mail and DIR/state;
 *	nothing else touches the disk. Blocking: call them off the event loop.
 */
#ifndef HK_RELAY_QUEUE_STATE_H
#define HK_RELAY_QUEUE_STATE_H
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "relay/queue.h"

struct queue_state {
	unsigned attempts;
	uint64_t next_ms;           /* the next attempt planned; 0: as soon as possible */
	uint64_t last_ms;           /* the last attempt; 0: never tried */
	json_t *notify;             /* the runner's pending failure reports, or NULL */
	uint64_t warned_ms;         /* when the delay warning was sent (SPEC §5 delay_warning);
	                               0: not yet. Last: older files without it read as 0 */
};

const char *queue_rcpt_state_name(enum queue_rcpt_state s);
int queue_rcpt_state_parse(const char *s, enum queue_rcpt_state *out);

char *queue_state_dump(const struct queue_envelope *env, const struct queue_state *st);
int queue_state_parse(const char *text, size_t len, struct queue_envelope *env,
                      struct queue_state *st);
int queue_state_load(const char *dir, const char *id, struct queue_envelope *env,
                     struct queue_state *st);

json_t *queue_view(const struct queue_envelope *env, const struct queue_state *st, bool all);

int queue_spool_read(const char *dir, json_t **out);
int queue_spool_show(const char *dir, const char *id, json_t **out);

#endif
