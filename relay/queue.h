/*
 * NAME
 *	queue - the durable mail queue on disk
 * SUMMARY
 *	A queued mail's bytes are a first line "HIKYAKU-QUEUE 1", the envelope
 *	as one line of JSON, then the message bytes exactly as they will be
 *	sent (Received: etc. already added). A mail held in memory by its
 *	session is appended as such a record to the segment log DIR/wal
 *	(relay/queue_wal.h: one write and one fdatasync per batch); a mail
 *	partly spilled to disk is one file "QUEUEID" in DIR/mail/, written
 *	under a temporary name, fsynced, renamed into place, and the
 *	directory fsynced. Either way only then is the commit reported. A
 *	mail that waits, and every mail after a restart, is such a file.
 *	Delivery state that changes later lives in DIR/state/QUEUEID
 *	(relay/queue_state.h); the runner's reads, writes and removals of
 *	spool files are relay/queue_fs.h, the unguessable reference of a
 *	mail relay/queue_tag.h (its key is DIR/tag.key). Queue ids are 18 upper-case hex digits: the arrival
 *	time in microseconds, strictly increasing within a process, so ids
 *	are unique and sort by arrival.
 * DESCRIPTION
 *	queue_open() creates DIR, DIR/mail, DIR/tmp and DIR/wal when missing,
 *	removes temporaries a crash left behind (nothing in tmp/ was ever
 *	answered 250), turns the log's live records into DIR/mail files
 *	(wal_recover()), and binds the queue to a libuv loop.
 *
 *	queue_new_id() makes the next id.
 *
 *	queue_commit() writes one mail: the envelope is serialised at once
 *	(the caller may free it on return); the data parts must stay valid
 *	until the callback. Commits are grouped: every commit that arrives
 *	while a batch is being written joins the next batch, and one batch
 *	costs one fdatasync of the log (plus, for spilled mails, their file
 *	fsyncs and one directory fsync), all of it on the libuv thread pool. The callback runs on the loop thread with 0
 *	(durable) or a negative errno (-ENOSPC, -EDQUOT: disk full); on
 *	failure nothing of the mail is left on disk.
 *
 *	queue_close() waits for nothing: call it only when no commit is
 *	outstanding (queue_pending() == 0). It moves what is live in the log
 *	out to DIR/mail files (wal_recover(), blocking: a clean stop leaves
 *	the spool in the form of earlier releases).
 *
 *	queue_envelope_to_json() / queue_envelope_from_json() convert the
 *	envelope; queue_read_envelope() reads the envelope of a queued mail
 *	and the offset at which its message bytes start (these three:
 *	relay/queue_envelope.c).
 * DIAGNOSTICS
 *	Functions return 0 or a negative errno.
 * TOUCHES
 *	DIR/wal, DIR/mail and DIR/tmp; the libuv thread pool for every write
 *	and sync (queue_open(): the log's recovery, before the loop runs).
 */
#ifndef HK_RELAY_QUEUE_H
#define HK_RELAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>
#include <uv.h>

#define QUEUE_ID_LEN 18
#define QUEUE_MAGIC "HIKYAKU-QUEUE 1"
#define QUEUE_MAGIC_LEN (sizeof(QUEUE_MAGIC) - 1)
/* The envelope line of a queue file may not be longer than this. */
#define QUEUE_ENVELOPE_MAX (1024 * 1024)

enum queue_rcpt_state {
	RCPT_PENDING = 0,
	RCPT_DELIVERED,
	RCPT_BOUNCED,
	RCPT_EXPIRED,
	RCPT_SUPPRESSED,
};

struct queue_rcpt {
	char *addr;
	enum queue_rcpt_state state;
	char *last;                /* the last attempt's response, or NULL (relay/queue_state.h) */
};

struct queue_envelope {
	char id[QUEUE_ID_LEN + 1];
	uint64_t arrival_ms;       /* Unix time in milliseconds */
	char *session;             /* listener session id */
	char *from;                /* envelope sender; "" for the null sender */
	struct queue_rcpt *rcpts;
	size_t nrcpts;
	char *client_ip;
	char *helo;
	char *tls;                 /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or NULL */
	char *auth_user;           /* NULL when not authenticated */
	bool smtputf8;
	bool body_8bit;
	uint64_t size;             /* message bytes as stored */
	char *header_from;         /* the From: field's value, or NULL */
	char *message_id;          /* the Message-ID: value, or NULL */
	char *route;               /* "service" / "direct"; NULL until decided */
	char *matched;             /* the verified entry that matched, or NULL */
};

struct queue;

typedef void (*queue_commit_cb)(void *arg, int status);

int queue_open(uv_loop_t *loop, const char *dir, struct queue **out);
void queue_close(struct queue *q);
const char *queue_dir(const struct queue *q);
void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1]);
int queue_commit(struct queue *q, const struct queue_envelope *env,
                 const uv_buf_t *parts, size_t nparts, queue_commit_cb cb, void *arg);
size_t queue_pending(const struct queue *q);

json_t *queue_envelope_to_json(const struct queue_envelope *env);
int queue_envelope_from_json(const json_t *j, struct queue_envelope *env);
void queue_envelope_free(struct queue_envelope *env);
/* A deep copy; a recipient's last response is not copied (NULL). */
int queue_envelope_copy(struct queue_envelope *dst, const struct queue_envelope *src);
int queue_read_envelope(const char *dir, const char *id, struct queue_envelope *env,
                        uint64_t *data_offset);
/* The same from the first len bytes of a mail's bytes (a segment record's
 * payload, relay/queue_wal.h). */
int queue_envelope_parse(const char *p, size_t len, const char *id, struct queue_envelope *env,
                         uint64_t *data_offset);

/*
 * Additions (queue module):
 *	queue_id_valid() tells whether s is exactly QUEUE_ID_LEN upper-case
 *	hex digits, the only form an id may take before it names a file.
 *
 *	queue_commit() returning non-zero means the callback will not be
 *	called: -EINVAL for a bad id or an envelope string that is not
 *	valid UTF-8 (it could not be read back), -E2BIG for an envelope
 *	over 1 MiB of JSON, -ENOMEM. queue_envelope_from_json() overwrites
 *	*env without freeing it and leaves it untouched on error;
 *	queue_read_envelope() fails with -EINVAL when the file's envelope
 *	names another id. Every char * field maps to JSON null when NULL,
 *	except a recipient's addr, which must be set.
 *
 *	queue_close() may be called from a commit callback once
 *	queue_pending() is 0; the queue is freed when the callbacks return.
 *	The queue is meant for one process: queue_open() empties tmp/, so a
 *	second process (hikyakuctl) reads with queue_read_envelope() only.
 *	queue_open() holds an exclusive flock() on DIR/lock until
 *	queue_close(); a spool already open elsewhere gives -EBUSY.
 */
bool queue_id_valid(const char *s);

/*
 * queue_commit_spilled() is queue_commit() for a mail received partly
 * into a spill file (relay/queue_spill.h): the message bytes are
 * parts[0..nhead), then spill_len bytes of spill_fd from its start, then
 * parts[nhead..nparts). The fd stays the caller's and must stay open
 * until the callback; it is only read, on the thread pool.
 *
 * With fn (DKIM signing), fn(fn_arg, data, ndata, &pre) runs on the
 * thread-pool worker just before the file is written: it sees the whole
 * message (the spilled bytes mapped read-only in their place) and may
 * set pre to bytes (owned by fn_arg, valid until the callback) that are
 * written in front of it; the envelope's size then counts them too. fn
 * must not touch the loop. fn NULL: no hook.
 */
typedef void (*queue_prepend_fn)(void *fn_arg, const struct iovec *parts, size_t nparts,
                                 struct iovec *pre);
int queue_commit_spilled(struct queue *q, const struct queue_envelope *env,
                         const uv_buf_t *parts, size_t nparts, size_t nhead, int spill_fd,
                         uint64_t spill_len, queue_prepend_fn fn, void *fn_arg,
                         queue_commit_cb cb, void *arg);

/*
 * queue_keep_messages() has the queue keep, for each mail committed to
 * the log, a copy of its message bytes (the bytes queue_fs_read_message()
 * would return, NUL-terminated), so that the first delivery attempt needs
 * no read: while the copies handed out and not yet released stay within
 * max_bytes (0, the default: none). queue_commit_message(), called from a
 * commit callback (on success only), hands that commit's copy over
 * (NULL: none was kept); the taker frees it and then calls
 * queue_message_release() with its length, before queue_close(). A copy
 * not taken is freed when the callback returns. A DKIM field made on the
 * worker may take the copies out a little beyond max_bytes.
 */
void queue_keep_messages(struct queue *q, size_t max_bytes);
char *queue_commit_message(struct queue *q, size_t *len);
void queue_message_release(struct queue *q, size_t len);
/* The bytes of copies reserved, made or handed out and not yet released. */
size_t queue_messages_kept(const struct queue *q);

/* For tests: the number of batches completed. */
uint64_t queue_batches(const struct queue *q);

/*
 * queue_wal() is the queue's segment log (relay/queue_wal.h), for the
 * runner's reads and removals (relay/queue_fs.h); it is safe to use from
 * thread-pool workers while the queue is open.
 */
struct wal;
struct wal *queue_wal(struct queue *q);

#endif
