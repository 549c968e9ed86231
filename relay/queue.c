/*
 * queue - the durable mail queue on disk. See queue.h for the file format
 * and the contract. This file is about one promise: when a commit callback
 * gets 0, the mail is on stable storage, so the 250 that follows it is
 * never a lie (SPEC §5), and the loop thread never waits for a disk.
 * The envelope's JSON line, both ways, and its reading back from a
 * queued file are relay/queue_envelope.c.
 */
#include "relay/queue.h"

#include <dirent.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "relay/queue_wal.h"
#include "util/fsutil.h"

/*
 * Batches allowed on the thread pool at once. Of mails for the segment
 * log one batch at a time: the log is one file, and parallel fdatasyncs of
 * it only split what one would do for all, into batches of about one mail
 * (measured: 1.2 mails per fdatasync with 4 at once; one at a time gave
 * 10-15 % more mails/s and p99 latency 5-13 ms instead of 20-60 ms,
 * docs/performance.md). Spilled mails, which have files of their own,
 * go in batches of their own beside it (several let the file system
 * merge their journal commits), so that a large mail's copy and sync
 * never hold up small ones. The libuv pool has 4 threads by default:
 * the daemon should raise UV_THREADPOOL_SIZE above this so other pool
 * work (uv_fs_*) does not queue behind fsyncs.
 */
#define QUEUE_MAX_INFLIGHT 4

/* Room for DIR/mail/ID whatever the compiler assumes of DIR; queue_open()
 * keeps real paths under PATH_MAX. */
#define QUEUE_PATH_SIZE (PATH_MAX + QUEUE_ID_LEN + 2)

/* One queue_commit() call, from the pending list to its callback. */
struct queue_req {
	struct queue_req *next;
	char id[QUEUE_ID_LEN + 1];
	char *head;             /* "MAGIC\nJSON\n", ours */
	/*
	 * iov[0] is head; iov[1..] are the caller's data parts (referenced,
	 * not copied). fs_writev_all() advances the entries as it goes, which
	 * is why head is kept apart for free().
	 */
	struct iovec *iov;
	int iovcnt;
	int spill_at;           /* iov index before which the spilled bytes go */
	int spill_fd;           /* the caller's, or -1 */
	uint64_t spill_len;
	queue_commit_cb cb;
	void *arg;
	int status;             /* 0 or negative errno, set by the worker */
	int fd;
	/* queue_commit_prepend(): the hook, and the envelope kept as JSON
	 * until the worker knows the size (head is made there). */
	queue_prepend_fn prep;
	void *prep_arg;
	json_t *env_json;
	bool wal;               /* goes to the segment log (relay/queue_wal.h) */
	/* queue_keep_messages(): a copy of the message bytes for the
	 * callback to take (queue_commit_message()), made on the worker. */
	bool keep;
	size_t reserved;        /* of q->kept, while the batch is out */
	char *msg;
	size_t msg_len;
	bool created;           /* we created tmp/ID, so we may unlink it */
	bool renamed;           /* tmp/ID is now mail/ID */
};

struct queue_batch {
	uv_work_t work;
	struct queue *q;
	struct queue_req *reqs;
	bool busy;
	bool log;               /* its mails go to the segment log */
};

struct queue {
	uv_loop_t *loop;
	char *dir;
	char mail_dir[PATH_MAX];
	char tmp_dir[PATH_MAX];
	uint64_t last_id;       /* last id handed out, in microseconds */
	struct queue_req *head; /* commits waiting for a batch */
	struct queue_req **tail;
	size_t pending;         /* commits not yet called back */
	unsigned inflight;
	uint64_t batches;       /* batches completed, for tests */
	bool in_callbacks;      /* queue_after() is calling back */
	bool closing;           /* queue_close() was called from a callback */
	int lock_fd;            /* DIR/lock, flock()ed while the queue is open */
	struct wal *wal;        /* the segment log of fresh mails */
	bool log_busy;          /* a batch for the log is on the pool */
	size_t keep_max;        /* queue_keep_messages() */
	size_t kept;            /* bytes of copies reserved, made or handed out */
	struct queue_req *calling; /* the commit whose callback runs now */
	/* Fixed slots: forming a batch never allocates, so it cannot fail. */
	struct queue_batch slot[QUEUE_MAX_INFLIGHT];
};

static bool is_upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/*
 * Ids become file names: only exactly 18 upper-case hex digits ever reach
 * a path, so "../x" or "a/b" cannot.
 */
bool queue_id_valid(const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < QUEUE_ID_LEN; i++)
		if (!is_upper_hex(s[i]))
			return false;
	return s[QUEUE_ID_LEN] == '\0';
}

/*
 * Nothing in tmp/ was ever answered 250: a crash between open and rename
 * leaves it there, and it is garbage.
 */
static int queue_clean_tmp(const char *tmp_dir)
{
	DIR *d = opendir(tmp_dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* Not ours to remove: a directory someone put there. */
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT &&
		    errno != EISDIR) {
			rc = -errno;
			goto out;
		}
	}
	if (errno)
		rc = -errno;
out:
	closedir(d);
	return rc;
}

/*
 * Start the id counter above every id already queued. Ids are the clock,
 * and the clock may have stepped back since the previous run; a new mail
 * must never take the name of a queued one.
 */
static int queue_seed_ids(struct queue *q)
{
	DIR *d = opendir(q->mail_dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -errno;
	while ((errno = 0, de = readdir(d)) != NULL) {
		uint64_t v = 0;
		size_t i;

		for (i = 0; i < QUEUE_ID_LEN && is_upper_hex(de->d_name[i]); i++) {
			unsigned digit = de->d_name[i] <= '9' ? (unsigned)(de->d_name[i] - '0')
			                                      : (unsigned)(de->d_name[i] - 'A' + 10);
			if (v > (UINT64_MAX >> 4))
				break;
			v = (v << 4) | digit;
		}
		if (i == QUEUE_ID_LEN && v > q->last_id)
			q->last_id = v;
	}
	if (errno)
		rc = -errno;
	closedir(d);
	return rc;
}

/* An id of a segment a full disk kept (wal_recover()) counts too. */
static int seed_from_log(void *arg, const char *id, const char *payload, size_t len)
{
	struct queue *q = arg;
	(void)payload;
	(void)len;
	uint64_t v = strtoull(id, NULL, 16);
	if (v > q->last_id)
		q->last_id = v;
	return 0;
}

int queue_open(uv_loop_t *loop, const char *dir, struct queue **out)
{
	struct queue *q;
	int rc;

	if (!loop || !dir || !out)
		return -EINVAL;
	/* DIR/mail/ID must fit in PATH_MAX. */
	if (strlen(dir) + sizeof("/mail/") + QUEUE_ID_LEN > PATH_MAX)
		return -ENAMETOOLONG;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->loop = loop;
	q->tail = &q->head;
	q->dir = strdup(dir);
	if (!q->dir) {
		rc = -ENOMEM;
		goto fail_q;
	}
	snprintf(q->mail_dir, sizeof(q->mail_dir), "%s/mail", dir);
	snprintf(q->tmp_dir, sizeof(q->tmp_dir), "%s/tmp", dir);

	q->lock_fd = -1;
	if ((rc = fs_mkdir_p(dir, 0700)) || (rc = fs_mkdir_p(q->mail_dir, 0700)) ||
	    (rc = fs_mkdir_p(q->tmp_dir, 0700)))
		goto fail_dir;
	/* One process per spool: a second daemon would empty tmp/ under the
	 * first one's commits and deliver its mail twice. The lock goes with
	 * the process, so a crash leaves nothing to clean up. */
	char lock[PATH_MAX + 8];
	snprintf(lock, sizeof(lock), "%s/lock", dir);
	q->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (q->lock_fd < 0) {
		rc = -errno;
		goto fail_dir;
	}
	if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto fail_lock;
	}
	if ((rc = queue_clean_tmp(q->tmp_dir)))
		goto fail_lock;
	/* Live records of the last run become DIR/mail files, so that ids are
	 * seeded, and the runner lists the spool, from DIR/mail alone. */
	if ((rc = wal_recover(dir)) || (rc = queue_seed_ids(q)) ||
	    (rc = wal_scan(dir, seed_from_log, q)) || (rc = wal_open(dir, &q->wal)))
		goto fail_lock;

	*out = q;
	return 0;

fail_lock:
	close(q->lock_fd);
fail_dir:
	free(q->dir);
fail_q:
	free(q);
	return rc;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	/* From a commit callback: queue_after() frees q when it is done. */
	if (q->in_callbacks) {
		q->closing = true;
		return;
	}
	/* A clean stop leaves the spool in the one-file-per-mail form: what is
	 * still live in the log (mails not yet delivered) becomes DIR/mail
	 * files now, as the next start would do, so that an older release can
	 * also take the spool over. Only here, after the last commit. */
	if (q->wal) {
		wal_close(q->wal);
		int rc = wal_recover(q->dir);
		if (rc < 0)
			fprintf(stderr, "hikyaku: %s/wal: %s; the next start moves its mails out\n",
			        q->dir, strerror(-rc));
	}
	if (q->lock_fd >= 0)
		close(q->lock_fd);
	free(q->dir);
	free(q);
}

struct wal *queue_wal(struct queue *q)
{
	return q->wal;
}

const char *queue_dir(const struct queue *q)
{
	return q->dir;
}

size_t queue_pending(const struct queue *q)
{
	return q->pending;
}

uint64_t queue_batches(const struct queue *q)
{
	return q->batches;
}

void queue_keep_messages(struct queue *q, size_t max_bytes)
{
	q->keep_max = max_bytes;
}

char *queue_commit_message(struct queue *q, size_t *len)
{
	struct queue_req *r = q->calling;
	if (!r || !r->msg)
		return NULL;
	char *p = r->msg;
	*len = r->msg_len;
	r->msg = NULL;
	return p;
}

size_t queue_messages_kept(const struct queue *q)
{
	return q->kept;
}

void queue_message_release(struct queue *q, size_t len)
{
	assert(q->kept >= len);
	q->kept -= len;
}

void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1])
{
	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	/* Two mails in one microsecond, or a clock step back: stay unique. */
	if (now <= q->last_id)
		now = q->last_id + 1;
	q->last_id = now;
	snprintf(id, QUEUE_ID_LEN + 1, "%018" PRIX64, now);
}

/* ---- from here to queue_after(), the code runs on a thread-pool worker */

/*
 * Appends len bytes of the spill file (from its start) to fd: in the
 * kernel with copy_file_range() where the file system can, else through
 * a bounded buffer. A short spill file is an error, never a short mail.
 */
static int copy_spill(int fd, int spill_fd, uint64_t len)
{
	loff_t in = 0;
	bool plain = false;
	char *tmp = NULL;
	int rc = 0;

	while ((uint64_t)in < len) {
		size_t want = len - (uint64_t)in > ((size_t)1 << 30) ? (size_t)1 << 30
		                                                     : (size_t)(len - (uint64_t)in);
		ssize_t n;

		if (!plain) {
			n = copy_file_range(spill_fd, &in, fd, NULL, want, 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			              errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
		} else {
			if (!tmp && !(tmp = malloc(1 << 16))) {
				rc = -ENOMEM;
				break;
			}
			n = pread(spill_fd, tmp, want < (1 << 16) ? want : (1 << 16), in);
			if (n < 0 && errno == EINTR)
				continue;
			if (n > 0) {
				struct iovec v = { tmp, (size_t)n };
				if ((rc = fs_writev_all(fd, &v, 1, -1)))
					break;
				in += n;
			}
		}
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = -EIO;
			break;
		}
	}
	free(tmp);
	return rc;
}

static void req_path(char *out, const char *dir, const char *id)
{
	snprintf(out, QUEUE_PATH_SIZE, "%s/%s", dir, id);
}

/* Drop a failed mail's temporary file; the error is already recorded. */
static void req_discard_tmp(struct queue *q, struct queue_req *r)
{
	char tmp[QUEUE_PATH_SIZE];

	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	if (r->created && !r->renamed) {
		req_path(tmp, q->tmp_dir, r->id);
		unlink(tmp);
		r->created = false;
	}
}

/* The head "MAGIC\nJSON\n" of a mail. */
static int make_head(json_t *j, char **out, size_t *out_len)
{
	char *js = json_dumps(j, JSON_COMPACT);
	if (!js)
		return -ENOMEM;
	size_t jlen = strlen(js);
	/* queue_read_envelope() would refuse it: refuse it now, not later. */
	if (jlen > QUEUE_ENVELOPE_MAX) {
		free(js);
		return -E2BIG;
	}
	size_t hlen = QUEUE_MAGIC_LEN + 1 + jlen + 1;
	char *head = malloc(hlen);
	if (!head) {
		free(js);
		return -ENOMEM;
	}
	memcpy(head, QUEUE_MAGIC "\n", QUEUE_MAGIC_LEN + 1);
	memcpy(head + QUEUE_MAGIC_LEN + 1, js, jlen);
	head[hlen - 1] = '\n';
	free(js);
	*out = head;
	*out_len = hlen;
	return 0;
}

/*
 * A commit with a hook (DKIM signing): the hook's bytes go in iov[1] (kept
 * free for them), and the head is made now, with the size they add. The
 * hook sees the whole message; spilled bytes are mapped from the spill
 * file for it (file pages, not the heap: a large mail costs no memory of
 * its own).
 */
static int req_prepare(struct queue_req *r)
{
	struct iovec pre = { NULL, 0 };
	size_t ndata = (size_t)r->iovcnt - 2;
	void *map = NULL;

	if (r->spill_fd < 0) {
		r->prep(r->prep_arg, r->iov + 2, ndata, &pre);
	} else {
		size_t nhead = (size_t)r->spill_at - 2;
		struct iovec *v = calloc(ndata + 1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		if (r->spill_len > SIZE_MAX ||
		    (map = mmap(NULL, (size_t)r->spill_len, PROT_READ, MAP_PRIVATE, r->spill_fd, 0)) ==
		            MAP_FAILED) {
			int err = errno ? -errno : -ENOMEM;
			free(v);
			return err;
		}
		memcpy(v, r->iov + 2, nhead * sizeof(*v));
		v[nhead] = (struct iovec){ map, (size_t)r->spill_len };
		memcpy(v + nhead + 1, r->iov + 2 + nhead, (ndata - nhead) * sizeof(*v));
		r->prep(r->prep_arg, v, ndata + 1, &pre);
		munmap(map, (size_t)r->spill_len);
		free(v);
	}
	r->iov[1] = pre;
	json_t *size = json_object_get(r->env_json, "size");
	if (pre.iov_len && json_is_integer(size))
		json_integer_set(size, json_integer_value(size) + (json_int_t)pre.iov_len);
	int rc = make_head(r->env_json, &r->head, &r->iov[0].iov_len);
	r->iov[0].iov_base = r->head;
	return rc;
}

/* The head, made on the worker when the commit left it for later. */
static int req_head(struct queue_req *r)
{
	if (r->prep)
		return req_prepare(r);
	if (r->head)
		return 0;
	int rc = make_head(r->env_json, &r->head, &r->iov[0].iov_len);
	r->iov[0].iov_base = r->head;
	return rc;
}

static void req_write(struct queue *q, struct queue_req *r)
{
	char tmp[QUEUE_PATH_SIZE];
	int rc;

	if ((rc = req_head(r)) < 0) {
		r->status = rc;
		return;
	}

	req_path(tmp, q->tmp_dir, r->id);
	/* O_EXCL: never truncate a file we did not create. */
	r->fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (r->fd < 0) {
		r->status = -errno;
		return;
	}
	r->created = true;
	rc = fs_writev_all(r->fd, r->iov, r->spill_at, -1);
	if (!rc && r->spill_fd >= 0)
		rc = copy_spill(r->fd, r->spill_fd, r->spill_len);
	if (!rc)
		rc = fs_writev_all(r->fd, r->iov + r->spill_at, r->iovcnt - r->spill_at, -1);
	if (rc) {
		r->status = rc;
		req_discard_tmp(q, r);
		return;
	}
	/*
	 * Start write-back now, without waiting: by the time this batch's
	 * fdatasync() calls come, the blocks of all its files are allocated
	 * and in flight, so one journal commit tends to cover them all.
	 * Only a hint; its failure changes nothing.
	 */
	(void)sync_file_range(r->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static void req_sync(struct queue *q, struct queue_req *r)
{
	int fd = r->fd;

	/*
	 * fdatasync() suffices: for a new file it must flush the size and
	 * block map to make the data readable; only times are left out.
	 */
	r->fd = -1;
	if (fdatasync(fd) < 0) {
		r->status = -errno;
		close(fd);
		req_discard_tmp(q, r);
		return;
	}
	if (close(fd) < 0) {
		r->status = -errno;
		req_discard_tmp(q, r);
	}
}

static void req_rename(struct queue *q, struct queue_req *r)
{
	char tmp[QUEUE_PATH_SIZE], dst[QUEUE_PATH_SIZE];

	req_path(tmp, q->tmp_dir, r->id);
	req_path(dst, q->mail_dir, r->id);
	/*
	 * RENAME_NOREPLACE: a duplicate id must fail, not silently replace a
	 * mail that was already answered 250. File systems without it get
	 * plain rename(); ids are unique within a run anyway.
	 */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL || rename(tmp, dst) < 0) {
			r->status = -errno;
			req_discard_tmp(q, r);
			return;
		}
	}
	r->renamed = true;
}

/* The message's bytes in memory: all but the head. */
static size_t req_message_len(const struct queue_req *r)
{
	size_t len = 0;
	for (int i = 1; i < r->iovcnt; i++)
		len += r->iov[i].iov_len;
	return len;
}

/* The bytes after the head, as queue_fs_read_message() would return them
 * (NUL-terminated); none when out of memory (the runner reads them). */
static void req_copy_message(struct queue_req *r)
{
	size_t len = req_message_len(r);
	char *p = malloc(len + 1);
	if (!p)
		return;
	size_t off = 0;
	for (int i = 1; i < r->iovcnt; i++) {
		if (r->iov[i].iov_len)
			memcpy(p + off, r->iov[i].iov_base, r->iov[i].iov_len);
		off += r->iov[i].iov_len;
	}
	p[len] = '\0';
	r->msg = p;
	r->msg_len = len;
}

/*
 * The batch's mails held in memory go to the segment log, all in one
 * write and one fdatasync. A mail received partly into a spill file is
 * large: it keeps a file of its own, its bytes copied in the kernel.
 */
static void queue_work_wal(struct queue *q, struct queue_req *reqs)
{
	size_t n = 0, k = 0;
	struct queue_req *r;

	for (r = reqs; r; r = r->next)
		if ((r->wal = r->spill_fd < 0))
			n++;
	if (!n)
		return;
	struct wal_rec *recs = calloc(n, sizeof(*recs));
	for (r = reqs; r; r = r->next) {
		int rc;
		if (!r->wal)
			continue;
		if (!recs)
			r->status = -ENOMEM;
		else if ((rc = req_head(r)) < 0)
			r->status = rc;
		else {
			if (r->keep)
				req_copy_message(r);
			recs[k++] = (struct wal_rec){ r->id, r->iov, r->iovcnt, 0 };
		}
	}
	if (!recs)
		return;
	wal_append(q->wal, recs, k);
	k = 0;
	for (r = reqs; r; r = r->next)
		if (r->wal && !r->status)
			r->status = recs[k++].status;
	free(recs);
}

static void queue_work(uv_work_t *w)
{
	struct queue_batch *b = w->data;
	struct queue *q = b->q;
	struct queue_req *r;
	bool any_renamed = false;
	int rc;

	queue_work_wal(q, b->reqs);
	/*
	 * Write every file first, then sync them: write-back of the whole
	 * batch is under way before the first fdatasync(), which commits the
	 * journal for all of them, so the later ones find little left to do
	 * (measured on ext4: 100 files sync in about a third of the time).
	 */
	for (r = b->reqs; r; r = r->next)
		if (!r->wal)
			req_write(q, r);
	for (r = b->reqs; r; r = r->next)
		if (!r->wal && !r->status)
			req_sync(q, r);
	for (r = b->reqs; r; r = r->next) {
		if (!r->wal && !r->status) {
			req_rename(q, r);
			any_renamed |= r->renamed;
		}
	}
	if (!any_renamed)
		return;

	/*
	 * A rename is a change to the directory, not to the file: until the
	 * directory itself is synced, a power loss may bring back a mail/
	 * without the new names, and the fsynced files would sit unnamed
	 * (lost) in the file system. One sync covers the whole batch.
	 */
	rc = fs_sync_dir(q->mail_dir);
	if (!rc)
		return;

	/* Not durable, so not queued: take the names back, so that nothing
	 * we are about to report as failed is delivered after a restart. */
	for (r = b->reqs; r; r = r->next) {
		char dst[QUEUE_PATH_SIZE];

		if (!r->renamed)
			continue;
		req_path(dst, q->mail_dir, r->id);
		unlink(dst);
		r->renamed = false;
		r->status = rc;
	}
	(void)fs_sync_dir(q->mail_dir);
}

static void queue_submit(struct queue *q);

static void req_free(struct queue *q, struct queue_req *r)
{
	if (r->msg) {
		q->kept -= r->msg_len;
		free(r->msg);
	}
	json_decref(r->env_json);
	free(r->head);
	free(r->iov);
	free(r);
}

/* Back on the loop thread. */
static void queue_after(uv_work_t *w, int status)
{
	struct queue_batch *b = w->data;
	struct queue *q = b->q;
	struct queue_req *r = b->reqs, *next;

	b->reqs = NULL;
	b->busy = false;
	if (b->log)
		q->log_busy = false;
	q->inflight--;
	q->batches++;

	q->in_callbacks = true;
	for (; r; r = next) {
		next = r->next;
		q->pending--;
		if (status < 0 && !r->status)
			r->status = status;     /* cancelled: never done here */
		if (r->keep) {
			q->kept -= r->reserved;
			if (r->msg && r->status) {
				free(r->msg);
				r->msg = NULL;
			}
			if (r->msg)
				q->kept += r->msg_len;
		}
		q->calling = r;
		if (r->cb)
			r->cb(r->arg, r->status);
		q->calling = NULL;
		req_free(q, r);
	}
	q->in_callbacks = false;
	if (q->closing) {
		queue_close(q);
		return;
	}
	/*
	 * Submit only now, not before the callbacks: a callback often leads
	 * straight to the next commit, and those should join the waiting
	 * ones in one batch rather than each grab the slot just freed.
	 */
	queue_submit(q);
}

/* A free slot, or NULL. */
static struct queue_batch *free_slot(struct queue *q)
{
	if (q->inflight >= QUEUE_MAX_INFLIGHT)
		return NULL;
	for (size_t i = 0; i < QUEUE_MAX_INFLIGHT; i++)
		if (!q->slot[i].busy)
			return &q->slot[i];
	return NULL;
}

static void batch_start(struct queue *q, struct queue_batch *b, struct queue_req *reqs, bool log)
{
	/* Copies for the runner while their bytes stay within keep_max: the
	 * message's own parts are reserved now, a DKIM field made on the
	 * worker is counted when the batch is back. */
	for (struct queue_req *r = reqs; log && q->keep_max && r; r = r->next) {
		size_t len = req_message_len(r);
		if (q->kept + len <= q->keep_max) {
			r->keep = true;
			r->reserved = len;
			q->kept += len;
		}
	}
	b->busy = true;
	b->log = log;
	b->q = q;
	b->reqs = reqs;
	b->work.data = b;
	q->inflight++;
	if (log)
		q->log_busy = true;
	/* Fails only for a NULL work callback. */
	int rc = uv_queue_work(q->loop, &b->work, queue_work, queue_after);
	(void)rc;
}

/*
 * Every waiting commit for the log as one batch, if none is on the pool;
 * every waiting spilled one as another, if a slot is free. What cannot go
 * yet waits, in order.
 */
static void queue_submit(struct queue *q)
{
	struct queue_req *log = NULL, **log_tail = &log, *files = NULL, **files_tail = &files;
	struct queue_req *r, *next;

	if (!q->head)
		return;
	for (r = q->head; r; r = next) {
		next = r->next;
		r->next = NULL;
		if (r->spill_fd < 0) {
			*log_tail = r;
			log_tail = &r->next;
		} else {
			*files_tail = r;
			files_tail = &r->next;
		}
	}
	q->head = NULL;
	q->tail = &q->head;
	struct queue_batch *b;
	if (log && !q->log_busy && (b = free_slot(q))) {
		batch_start(q, b, log, true);
		log = NULL;
	}
	/* A slot stays free for the log: small mails never wait behind the
	 * copies and syncs of large ones. */
	if (files && (q->log_busy || q->inflight + 1 < QUEUE_MAX_INFLIGHT) && (b = free_slot(q))) {
		batch_start(q, b, files, false);
		files = NULL;
	}
	/* The rest waits: the log's first, as they came. */
	if (log) {
		*log_tail = files;
		q->head = log;
		q->tail = files ? files_tail : log_tail;
	} else if (files) {
		q->head = files;
		q->tail = files_tail;
	}
}

static size_t str_bound(const char *s)
{
	/* A byte is at most 6 in JSON (\u0000); the name and quotes 32. */
	return (s ? strlen(s) * 6 : 4) + 32;
}

/* An upper bound of the envelope's JSON line (queue_envelope_to_json()). */
static size_t envelope_json_bound(const struct queue_envelope *env)
{
	size_t n = 1024 + str_bound(env->session) + str_bound(env->from) +
	           str_bound(env->client_ip) + str_bound(env->helo) + str_bound(env->tls) +
	           str_bound(env->auth_user) + str_bound(env->header_from) +
	           str_bound(env->message_id) + str_bound(env->route) + str_bound(env->matched);
	for (size_t i = 0; i < env->nrcpts && n <= QUEUE_ENVELOPE_MAX; i++)
		n += str_bound(env->rcpts[i].addr) + str_bound(env->rcpts[i].last) + 64;
	return n;
}

int queue_commit(struct queue *q, const struct queue_envelope *env,
                 const uv_buf_t *parts, size_t nparts, queue_commit_cb cb, void *arg)
{
	return queue_commit_spilled(q, env, parts, nparts, nparts, -1, 0, NULL, NULL, cb, arg);
}

int queue_commit_spilled(struct queue *q, const struct queue_envelope *env,
                         const uv_buf_t *parts, size_t nparts, size_t nhead, int spill_fd,
                         uint64_t spill_len, queue_prepend_fn fn, void *fn_arg,
                         queue_commit_cb cb, void *arg)
{
	struct queue_req *r;
	json_t *j;
	char *head = NULL;
	size_t hlen = 0, first;
	int rc;

	if (!q || !env || !queue_id_valid(env->id) || (nparts && !parts) || nhead > nparts)
		return -EINVAL;
	if (nparts >= (size_t)INT_MAX - 2)
		return -E2BIG;

	/* Serialise now: the caller may free the envelope on return. */
	j = queue_envelope_to_json(env);
	if (!j)
		return -EINVAL;
	/* The head is text made from j on the worker, off the loop thread
	 * (json_dumps() was a twentieth of its time), when the envelope is
	 * surely within QUEUE_ENVELOPE_MAX; a larger one is made now, so that
	 * one too large is refused at once. */
	bool later = fn || envelope_json_bound(env) <= QUEUE_ENVELOPE_MAX;
	if (!later && (rc = make_head(j, &head, &hlen)) < 0)
		goto fail_j;

	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = -ENOMEM;
		goto fail_head;
	}
	first = fn ? 2 : 1;
	r->iov = calloc(nparts + first, sizeof(*r->iov));
	if (!r->iov) {
		rc = -ENOMEM;
		goto fail_r;
	}
	r->head = head;
	r->iov[0].iov_base = head;
	r->iov[0].iov_len = hlen;
	for (size_t i = 0; i < nparts; i++) {
		r->iov[i + first].iov_base = parts[i].base;
		r->iov[i + first].iov_len = parts[i].len;
	}
	r->iovcnt = (int)(nparts + first);
	r->spill_at = (int)(nhead + first);
	r->spill_fd = spill_len ? spill_fd : -1;
	r->spill_len = spill_len;
	memcpy(r->id, env->id, sizeof(r->id));
	r->cb = cb;
	r->arg = arg;
	r->fd = -1;
	r->prep = fn;
	r->prep_arg = fn_arg;
	if (later)
		r->env_json = j;
	else
		json_decref(j);

	*q->tail = r;
	q->tail = &r->next;
	q->pending++;
	/* From a commit callback, queue_after() submits once they are all
	 * done; otherwise a free slot takes the commit at once, so that a
	 * quiet server answers as fast as the disk allows. */
	if (!q->in_callbacks)
		queue_submit(q);
	return 0;

fail_r:
	free(r);
fail_head:
	free(head);
fail_j:
	json_decref(j);
	return rc;
}
