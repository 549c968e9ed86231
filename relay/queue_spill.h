/*
 * NAME
 *	queue_spill - the part of a mail being received that is not kept in memory
 * SUMMARY
 *	A session keeps a bounded part of a message in memory (SPEC §5); the
 *	rest goes to an anonymous file in the spool's tmp/ directory
 *	(O_TMPFILE: it has no name, so nothing of it is ever visible to the
 *	runner, and it vanishes with the process). queue_commit_spilled()
 *	then copies it into the queued mail.
 * DESCRIPTION
 *	queue_spill_new() prepares a spill for the queue's spool (no I/O
 *	yet). queue_spill_append() writes n bytes at the end on the libuv
 *	thread pool (the file is created by the first write) and calls cb on
 *	the loop thread with 0 or a negative errno; p must stay valid until
 *	then, and one append runs at a time. queue_spill_fd() gives the file
 *	(for queue_commit_spilled()). queue_spill_free() closes and frees;
 *	during an append the spill is freed when the append ends, and its
 *	callback is then not called.
 * DIAGNOSTICS
 *	queue_spill_append() returns 0, -EBUSY when an append is running,
 *	or the libuv error of uv_queue_work().
 * TOUCHES
 *	DIR/tmp (anonymous files); the libuv thread pool.
 */
#ifndef HK_RELAY_QUEUE_SPILL_H
#define HK_RELAY_QUEUE_SPILL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct queue;
struct queue_spill;

typedef void (*queue_spill_cb)(void *arg, int status);

struct queue_spill *queue_spill_new(uv_loop_t *loop, struct queue *q);
int queue_spill_append(struct queue_spill *sp, const char *p, size_t n, queue_spill_cb cb, void *arg);
int queue_spill_fd(const struct queue_spill *sp);
void queue_spill_free(struct queue_spill *sp);

#endif
