/*
 * NAME
 *	queue_fs - the runner's reads, writes and removals of spool files
 * SUMMARY
 *	Everything the queue runner does to DIR besides queue_commit()
 *	(relay/queue.c): read a queued message, record a mail's state
 *	durably, remove finished mails, list the spool at start, and keep
 *	the small records that outlive a mail (which recipients' failures a
 *	sender was already told of, for reports that come later).
 DESCRIPTION
 *	W is the queue's segment log (queue_wal(), relay/queue_wal.h), or
 *	NULL for a spool of mail files only: a mail is in the one or the
 *	other.
 *
 *	queue_fs_read_message() reads the mail from the log or DIR/mail/ID
 *	and returns the message bytes after the magic and envelope lines
 *	(malloc'd, NUL-terminated).
 *
 *	queue_fs_write_state() first moves a mail still in the log out to
 *	DIR/mail/ID (wal_evict: a mail that has a state waits, and the log
 *	is for mails that do not), then replaces DIR/state/ID with text: a
 *	temporary file, fdatasync, rename, then a directory fsync. It fails
 *	when any step fails, the directory fsync included (a state that a
 *	power loss can undo is not recorded).
 *
 *	queue_fs_remove() removes mails: those in the log get a removal
 *	record (wal_remove: one fdatasync per segment); for each other id the message first, then
 *	its state file (a state file without its mail is an orphan that the
 *	next start removes; the reverse would resend), then one fsync of
 *	DIR/mail for all of them (a removal a power loss can undo would
 *	bring a finished mail back; a state file it brings back is such an
 *	orphan, so DIR/state is not synced). status[i] gets 0 or a negative
 *	errno for ids[i]; a failed directory fsync fails every id.
 *
 *	queue_fs_list() returns (in a GPtrArray of g_malloc'd strings) the
 *	ids of the mails in DIR/mail, and removes the state files whose mail
 *	is gone (they were being deleted when the process stopped).
 *
 *	queue_fs_reported_has() / queue_fs_reported_add() keep, in
 *	DIR/reported/ID, the recipients (one a line, lower case) whose
 *	failure the sender of mail ID was told of by a notice that came
 *	from a later report (SPEC §6.1: at most once per recipient);
 *	add is durable. queue_fs_reported_prune() removes the records older
 *	than a time (the queue lifetime after delivery: no report is
 *	matched later).
 * DIAGNOSTICS
 *	Functions return 0 (has: 1 or 0) or a negative errno.
 * TOUCHES
 *	DIR/mail, DIR/state, DIR/reported, DIR/wal through W. Blocking: the
 *	thread pool only.
 */
#ifndef HK_RELAY_QUEUE_FS_H
#define HK_RELAY_QUEUE_FS_H

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

struct wal;
int queue_fs_read_message(struct wal *w, const char *dir, const char *id, char **data,
                          size_t *len);
int queue_fs_write_state(struct wal *w, const char *dir, const char *id, const char *text);
void queue_fs_remove(struct wal *w, const char *dir, const char *const *ids, size_t n,
                     int *status);
int queue_fs_list(const char *dir, GPtrArray **ids);

int queue_fs_reported_has(const char *dir, const char *id, const char *rcpt);
int queue_fs_reported_add(const char *dir, const char *id, const char *rcpt);
void queue_fs_reported_prune(const char *dir, uint64_t before_ms);

#endif
