/*
 * bounce_in - a delivery status report read against the suppression list
 * and the records of what was sent (SPEC §6.1). See bounce_in.h. Shared by
 * the queue runner (relay/runner_bounce.c, for reports arriving for
 * bounce_address) and hikyakuctl suppression ingest (the operator's
 * report, trusted).
 */
#include "relay/bounce_in.h"

#include <stdlib.h>
#include <string.h>

#include "relay/outcome.h"
#include "relay/queue_fs.h"
#include "relay/queue_tag.h"

void bounce_in_found_clear(struct bounce_found *f)
{
	free(f->addr);
	free(f->status);
	free(f->diagnostic);
	free(f->remote);
	free(f->sender);
	memset(f, 0, sizeof(*f));
}

/*
 * A report, read against the records of what was sent (see bounce_in.h).
 * Untrusted (ctx != NULL): a failed recipient counts only when the report
 * names a mail hikyaku really sent it (by the VERP reference QUEUEID-TAG,
 * the envelope id, or the service's message id): a forged report must not
 * put an arbitrary customer on the list, and a bare queue id names nothing
 * (relay/queue_tag.h). Either way each recipient is looked at once, and at
 * most cap of them (a mail has no more): one report costs bounded work.
 */
/* A real report names one mail: its ENVID and one or two VERP tags. More
 * distinct tags, or more failures that name no mail, are a forgery or a
 * mistake: reading on would only cost lookups under the list's lock
 * (each recipient times each reference). */
#define BOUNCE_REFS_MAX 2
#define BOUNCE_UNMATCHED_MAX 5

void bounce_in_read(struct supp *s, const struct dsn_report *rep,
                    const struct bounce_in_ctx *ctx, unsigned cap, int64_t now_ms,
                    GArray *found, unsigned *unmatched, unsigned *ignored)
{
	char *sid = ctx ? outcome_message_id_local(rep->original_message_id) : NULL;
	char envid[QUEUE_REF_MAX + 1], qid[QUEUE_ID_LEN + 1];
	bool has_envid = ctx && rep->original_envelope_id &&
	                 queue_tag_ref_parse(rep->original_envelope_id,
	                                     strlen(rep->original_envelope_id), envid, qid);
	GPtrArray *refs = g_ptr_array_new_with_free_func(g_free);
	for (size_t t = 0; ctx && t < ctx->ntags; t++) {
		const char *tag = ctx->tags[t];
		char ref[QUEUE_REF_MAX + 1];
		if (!queue_tag_ref_parse(tag, strlen(tag), ref, qid))
			continue;
		bool dup = false;
		for (guint k = 0; k < refs->len && !dup; k++)
			dup = strcmp(g_ptr_array_index(refs, k), ref) == 0;
		if (!dup && refs->len < BOUNCE_REFS_MAX)
			g_ptr_array_add(refs, g_strdup(ref));
	}
	unsigned misses = 0;        /* failures of this report that named no mail */
	GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (size_t k = 0; s && k < rep->nrcpts; k++) {
		const struct dsn_report_rcpt *x = &rep->rcpts[k];
		if (!dsn_rcpt_suppresses(x))
			continue;
		char *key = g_ascii_strdown(x->final_recipient, -1);
		if (g_hash_table_contains(seen, key)) {
			g_free(key);
			continue; /* the same recipient again in this report */
		}
		if (g_hash_table_size(seen) >= cap || misses >= BOUNCE_UNMATCHED_MAX) {
			g_free(key);
			(*ignored)++;
			continue;
		}
		g_hash_table_add(seen, key);
		struct bounce_found f = { 0 };
		if (ctx) {
			char *sender = NULL, *ref = NULL;
			int ok = 0;
			bool failed = false;    /* a lookup that could not be answered */
			for (guint t = 0; ok != 1 && t < refs->len; t++) {
				ok = supp_sent_find(s, g_ptr_array_index(refs, t), NULL, x->final_recipient,
				                    &sender, &ref);
				failed |= ok < 0;
			}
			if (ok != 1 && has_envid) {
				ok = supp_sent_find(s, envid, NULL, x->final_recipient, &sender, &ref);
				failed |= ok < 0;
			}
			if (ok != 1 && sid) {
				ok = supp_sent_find(s, NULL, sid, x->final_recipient, &sender, &ref);
				failed |= ok < 0;
			}
			if (ok != 1 || !ref || strlen(ref) < QUEUE_ID_LEN) {
				free(sender);
				free(ref);
				if (ok != 1 && failed && ctx->unavailable) {
					(*ctx->unavailable)++;  /* read again later, not forgotten */
				} else {
					(*unmatched)++;
					misses++;
				}
				continue;
			}
			memcpy(f.qid, ref, QUEUE_ID_LEN); /* "QUEUEID-TAG" (a bare id: sent before tags) */
			f.qid[QUEUE_ID_LEN] = '\0';
			free(ref);
			f.sender = sender;
		}
		f.addr = strdup(x->final_recipient);
		f.status = strdup(x->status);
		f.diagnostic = x->diagnostic ? strdup(x->diagnostic) : NULL;
		f.remote = x->remote_mta ? strdup(x->remote_mta) : NULL;
		int a = supp_add(s, x->final_recipient, "bounced", x->status, x->diagnostic, "dsn", now_ms);
		f.is_new = a == 1;
		f.add_failed = a < 0;
		f.notify = ctx && ctx->qdir && queue_fs_reported_has(ctx->qdir, f.qid, f.addr) == 0;
		g_array_append_val(found, f);
	}
	g_hash_table_destroy(seen);
	g_ptr_array_free(refs, TRUE);
	free(sid);
}
