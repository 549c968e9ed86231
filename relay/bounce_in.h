/*
 * NAME
 *	bounce_in - delivery status reports that come back (SPEC §6.1)
 * SUMMARY
 *	bounce_in_read() reads a parsed report (relay/dsn_parse.h) against
 *	the suppression list: every recipient it reports as failed with
 *	5.1.x or 5.2.1 (dsn_rcpt_suppresses) is looked at once, however many
 *	blocks name it, and at most cap recipients per report; each one
 *	taken is added to the list (source "dsn") and returned in found.
 *	With ctx (a report that arrived from outside, for bounce_address) a
 *	recipient is taken only when the report names a mail hikyaku sent it:
 *	by a VERP tag (ctx->tags, the +tags of the bounce_address recipients)
 *	or Original-Envelope-Id of the form QUEUEID-TAG (relay/queue_tag.h;
 *	a bare queue id names nothing), or by the service's message id in
 *	the returned Message-ID; the others count in *unmatched. found then
 *	carries the original sender and queue id, and notify tells whether
 *	that sender was not yet told of the recipient (DIR/reported,
 *	relay/queue_fs.h, under ctx->qdir). Without ctx (hikyakuctl
 *	suppression ingest: the operator's report, trusted) every suppressing
 *	recipient is taken. Recipients over cap count in *ignored.
 *
 *	Callers: the queue runner (relay/runner_bounce.c: the report is
 *	consumed only after the MAILER-DAEMON notices it causes are durable,
 *	and who was told is recorded then) and hikyakuctl suppression ingest
 *	(ctl/hikyakuctl.c).
 * DIAGNOSTICS
 *	found[i].add_failed: the list could not be written for it.
 * TOUCHES
 *	The suppression list (the caller holds its lock), DIR/reported (read).
 *	Blocking: call it on the thread pool or in hikyakuctl.
 */
#ifndef HK_RELAY_BOUNCE_IN_H
#define HK_RELAY_BOUNCE_IN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "relay/dsn_parse.h"
#include "relay/queue.h"
#include "relay/suppression.h"

struct bounce_found {
	char *addr, *status, *diagnostic, *remote, *sender;
	char qid[QUEUE_ID_LEN + 1]; /* the mail it names ("" when trusted) */
	bool is_new;                /* added to the list by this report */
	bool add_failed;
	bool notify;                /* its sender was not told yet */
};

struct bounce_in_ctx {
	const char *const *tags;    /* +tags of the bounce_address recipients, "" without */
	size_t ntags;
	const char *qdir;           /* the spool, for DIR/reported; NULL: no notices */
	/* When set: failures that could not be matched because the records
	 * could not be read (a shared store that is unreachable, SPEC §6.6)
	 * count here, not in *unmatched: the report is to be read again. */
	unsigned *unavailable;
};

void bounce_in_read(struct supp *s, const struct dsn_report *rep,
                    const struct bounce_in_ctx *ctx, unsigned cap, int64_t now_ms,
                    GArray *found, unsigned *unmatched, unsigned *ignored);
void bounce_in_found_clear(struct bounce_found *f);

#endif
