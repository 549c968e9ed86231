/*
 * queue_spill - the part of a mail being received that is not kept in
 * memory. See queue_spill.h.
 */
#include "relay/queue_spill.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay/queue.h"

struct queue_spill {
	uv_work_t work;
	uv_loop_t *loop;
	char tmp_dir[PATH_MAX];
	int fd;
	uint64_t len;
	/* the append in progress */
	const char *p;
	size_t n;
	int status;
	bool busy;
	bool doomed;            /* freed when the append ends */
	queue_spill_cb cb;
	void *arg;
};

struct queue_spill *queue_spill_new(uv_loop_t *loop, struct queue *q)
{
	struct queue_spill *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return NULL;
	sp->loop = loop;
	sp->fd = -1;
	snprintf(sp->tmp_dir, sizeof(sp->tmp_dir), "%s/tmp", queue_dir(q));
	return sp;
}

/* An unnamed file: O_TMPFILE, or on file systems without it a named one
 * unlinked at once (a crash in between leaves it in tmp/, which
 * queue_open() empties: nothing there was ever answered 250). */
static int spill_create(struct queue_spill *sp)
{
	int fd = open(sp->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/spill.XXXXXX", sp->tmp_dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* On a thread-pool worker. */
static void spill_work(uv_work_t *w)
{
	struct queue_spill *sp = w->data;
	size_t off = 0;

	sp->status = 0;
	if (sp->fd < 0) {
		int fd = spill_create(sp);
		if (fd < 0) {
			sp->status = fd;
			return;
		}
		sp->fd = fd;
	}
	while (off < sp->n) {
		ssize_t k = pwrite(sp->fd, sp->p + off, sp->n - off, (off_t)(sp->len + off));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			sp->status = k < 0 ? -errno : -EIO;
			return;
		}
		off += (size_t)k;
	}
}

static void spill_after(uv_work_t *w, int status)
{
	struct queue_spill *sp = w->data;
	sp->busy = false;
	if (sp->doomed) {
		queue_spill_free(sp);
		return;
	}
	if (status < 0 && !sp->status)
		sp->status = status;
	if (!sp->status)
		sp->len += sp->n;
	sp->cb(sp->arg, sp->status);
}

int queue_spill_append(struct queue_spill *sp, const char *p, size_t n, queue_spill_cb cb, void *arg)
{
	if (sp->busy)
		return -EBUSY;
	sp->p = p;
	sp->n = n;
	sp->cb = cb;
	sp->arg = arg;
	sp->work.data = sp;
	int rc = uv_queue_work(sp->loop, &sp->work, spill_work, spill_after);
	if (rc == 0)
		sp->busy = true;
	return rc;
}

int queue_spill_fd(const struct queue_spill *sp)
{
	return sp->fd;
}

void queue_spill_free(struct queue_spill *sp)
{
	if (!sp)
		return;
	if (sp->busy) {
		sp->doomed = true;
		return;
	}
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp);
}
