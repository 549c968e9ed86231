/*
 * NAME
 *	queue_wal - the spool's append-only segment files, for fresh mails
 * SUMMARY
 *	A mail answered 250 is, in the common case, delivered within
 *	milliseconds. Giving it a file of its own (create, rename, directory
 *	sync, then unlink) costs the file system an inode and two directory
 *	changes per mail; that, not the disk, was most of the relay's CPU
 *	(docs/performance.md). So a mail kept in memory by its session is
 *	appended as one record to the current segment DIR/wal/SEQ, a whole
 *	commit batch with one write and one fdatasync (group commit); a
 *	finished mail gets a removal record in the same segment, a removal
 *	batch one fdatasync per segment touched. A segment whose mails are
 *	all finished is unlinked. A mail that must wait (its first state
 *	change: a deferral, a partial delivery) is moved out to DIR/mail/ID,
 *	the one-file-per-mail form of queue.h, which is also what a restart
 *	makes of every live record: segments are only ever read at start,
 *	and DIR/mail stays the one long-term form (the spool of an older
 *	release is read as it is).
 * FORMAT
 *	DIR/wal/SEQ, SEQ 16 upper-case hex digits, increasing. A segment is
 *	a sequence of records, nothing else. A record is a header line of
 *	exactly WAL_HDR_LEN (52) bytes,
 *		"HKW1 T IIIIIIIIIIIIIIIIII LLLLLLLLLLLLLLLL CCCCCCCC\n"
 *	T the type: M (a mail) or D (that mail is gone), I the queue id, L
 *	the payload's length and C its CRC-32 (zlib's, ISO-HDLC), both upper
 *	hex; then the payload. An M record's payload is byte for byte what
 *	DIR/mail/ID would hold; a D record has none (L and C zero). Reading
 *	stops at the first record that is short, malformed or fails its CRC:
 *	a torn tail is a batch that was never acknowledged. A mail is live
 *	when its segment has its M record and no D record after it, and
 *	DIR/mail/ID does not exist (a mail moved out is the file's, even
 *	before its D record).
 * DESCRIPTION
 *	wal_recover() runs once, before anything else reads the spool: each
 *	live record becomes DIR/mail/ID (file, fdatasync, rename, then one
 *	sync of DIR/mail), then its segment is removed. A segment whose
 *	mails find no room (ENOSPC, EDQUOT) stays, with a message, for the
 *	next start, with all of them (the files this pass made of it are
 *	removed again). wal_open() then starts an empty log (the next SEQ above
 *	any seen).
 *
 *	wal_append() writes the records of one commit batch at the end of the
 *	current segment and makes them durable; from then wal_read() finds
 *	them. It starts a new segment (created, DIR/wal synced) when the
 *	current one is over WAL_SEGMENT_MAX. Commits may run on several
 *	threads at once; their writes never interleave or leave a gap.
 *
 *	wal_read() gives the payload of a live record (malloc'd) or 1 when
 *	the id is not in the log (then it is a file in DIR/mail).
 *	wal_remove() appends D records for those of ids that are in the log
 *	and syncs each segment touched; in_wal[i] says whether ids[i] was
 *	(WAL_IN), whether it has a state file (WAL_STATE) and whether a
 *	DIR/mail/ID file of it exists (WAL_FILE: a move out whose removal
 *	record failed), status[i] its result; the caller removes those
 *	files. wal_evict() moves one mail out to DIR/mail/ID (durably, then
 *	its D record, durably); 1 when it was not in the log. A mail that
 *	could not be moved out (a full disk) stays in the log with its state
 *	file: wal_note_state() records that, for its removal.
 *
 *	wal_scan() reads a spool's segments without changing anything (for
 *	hikyakuctl and wal_recover()): fn gets each live record's id and
 *	payload.
 * DIAGNOSTICS
 *	Functions return 0 or a negative errno (wal_read, wal_evict: or 1).
 * TOUCHES
 *	DIR/wal, DIR/mail and DIR/tmp (wal_recover, wal_evict). Blocking: the
 *	thread pool, or the start before the loop runs.
 */
#ifndef HK_RELAY_QUEUE_WAL_H
#define HK_RELAY_QUEUE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define WAL_HDR_LEN 52
#define WAL_SEGMENT_MAX ((uint64_t)32 << 20)

struct wal;

/* One record of a batch: its id, and its payload as iov[0..iovcnt). */
struct wal_rec {
	const char *id;
	const struct iovec *iov;
	int iovcnt;
	int status;             /* set by wal_append(): 0 or a negative errno */
};

int wal_recover(const char *dir);
int wal_open(const char *dir, struct wal **out);
void wal_close(struct wal *w);
int wal_append(struct wal *w, struct wal_rec *recs, size_t n);
int wal_read(struct wal *w, const char *id, char **data, size_t *len);
#define WAL_IN 1     /* wal_remove(): the mail was in the log */
#define WAL_STATE 2  /* ... and has a state file (wal_note_state) */
#define WAL_FILE 4   /* ... and a DIR/mail file (a move out half done) */
void wal_remove(struct wal *w, const char *const *ids, size_t n, unsigned char *in_wal,
                int *status);
int wal_evict(struct wal *w, const char *id);
void wal_note_state(struct wal *w, const char *id);
size_t wal_live(struct wal *w);

typedef int (*wal_scan_fn)(void *arg, const char *id, const char *payload, size_t len);
int wal_scan(const char *dir, wal_scan_fn fn, void *arg);

#endif
