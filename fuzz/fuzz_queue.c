/*
 * fuzz_queue - the queue's envelope reader (relay/queue_envelope.c):
 * queue_envelope_from_json() and queue_read_envelope().
 *
 * The input is used twice: as JSON text (parsed with jansson as
 * queue_read_envelope() does, then given to queue_envelope_from_json()),
 * and as the whole content of a queue file DIR/mail/ID in a private
 * temporary spool, read with queue_read_envelope(). ID is the id of the
 * seed files; the fuzzer keeps it where it matters. Checked:
 *
 *  - a refused envelope leaves the output untouched;
 *  - an accepted one has a valid id, every recipient an address and a
 *    known state, and serialises again (queue_envelope_to_json()), and
 *    reading that back gives the same envelope (what was read can be
 *    written, so a queue file never becomes unreadable by a rewrite);
 *  - queue_read_envelope(): on success the envelope names ID, it is the
 *    envelope of the JSON line after the magic line, and *data_offset is
 *    just after that line, inside the file;
 *  - queue_envelope_free() frees everything (LeakSanitizer).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "relay/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

#define ID "0006612824C4D754AB"

static char dir[256];
static char mail_dir[300];
static char file[340];

static void cleanup(void)
{
	unlink(file);
	rmdir(mail_dir);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/hikyaku-fuzz-queue-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(mail_dir, sizeof(mail_dir), "%s/mail", dir);
	snprintf(file, sizeof(file), "%s/%s", mail_dir, ID);
	if (mkdir(mail_dir, 0700) < 0) {
		perror("mkdir");
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same(const struct queue_envelope *a, const struct queue_envelope *b)
{
	CHECK(strcmp(a->id, b->id) == 0);
	CHECK(a->arrival_ms == b->arrival_ms);
	CHECK(str_eq(a->session, b->session));
	CHECK(str_eq(a->from, b->from));
	CHECK(a->nrcpts == b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++) {
		CHECK(str_eq(a->rcpts[i].addr, b->rcpts[i].addr));
		CHECK(a->rcpts[i].state == b->rcpts[i].state);
	}
	CHECK(str_eq(a->client_ip, b->client_ip));
	CHECK(str_eq(a->helo, b->helo));
	CHECK(str_eq(a->tls, b->tls));
	CHECK(str_eq(a->auth_user, b->auth_user));
	CHECK(a->smtputf8 == b->smtputf8);
	CHECK(a->body_8bit == b->body_8bit);
	CHECK(a->size == b->size);
	CHECK(str_eq(a->header_from, b->header_from));
	CHECK(str_eq(a->message_id, b->message_id));
	CHECK(str_eq(a->route, b->route));
	CHECK(str_eq(a->matched, b->matched));
}

static void check_envelope(const struct queue_envelope *e)
{
	CHECK(queue_id_valid(e->id));
	CHECK(e->nrcpts == 0 || e->rcpts);
	for (size_t i = 0; i < e->nrcpts; i++) {
		CHECK(e->rcpts[i].addr);
		CHECK(e->rcpts[i].state >= RCPT_PENDING && e->rcpts[i].state <= RCPT_SUPPRESSED);
	}

	/* Written again and read back: the same envelope. */
	json_t *j = queue_envelope_to_json(e);
	CHECK(j);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	CHECK(s);
	CHECK(!strchr(s, '\n'));     /* one line in the queue file */
	json_error_t err;
	json_t *j2 = json_loads(s, JSON_REJECT_DUPLICATES, &err);
	CHECK(j2);
	struct queue_envelope e2;
	CHECK(queue_envelope_from_json(j2, &e2) == 0);
	json_decref(j2);
	free(s);
	check_same(e, &e2);
	queue_envelope_free(&e2);
}

/* The JSON text given to queue_envelope_from_json(); 0 if accepted. */
static int from_text(const char *p, size_t n, struct queue_envelope *out)
{
	json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
	if (!j)
		return -EINVAL;
	struct queue_envelope e;
	memset(&e, 0x5a, sizeof(e));
	int rc = queue_envelope_from_json(j, &e);
	json_decref(j);
	if (rc) {
		/* Refused: untouched. */
		struct queue_envelope z;
		memset(&z, 0x5a, sizeof(z));
		CHECK(memcmp(&e, &z, sizeof(e)) == 0);
		return rc;
	}
	check_envelope(&e);
	*out = e;
	return 0;
}

static void write_file(const char *p, const void *b, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	const char *c = b;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		CHECK(w > 0);
		c += w;
		n -= (size_t)w;
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_envelope e;

	if (size > 2 * 1024 * 1024)
		return 0;

	/* 1. The input as an envelope. */
	if (from_text((const char *)data, size, &e) == 0)
		queue_envelope_free(&e);

	/* 2. The input as a queue file. */
	write_file(file, data, size);
	uint64_t off = 0;
	memset(&e, 0, sizeof(e));
	int rc = queue_read_envelope(dir, ID, &e, &off);
	CHECK(rc <= 0);
	if (rc == 0) {
		const size_t mlen = strlen(QUEUE_MAGIC) + 1;
		CHECK(strcmp(e.id, ID) == 0);
		CHECK(size >= mlen && memcmp(data, QUEUE_MAGIC "\n", mlen) == 0);
		CHECK(off > mlen && off <= size && data[off - 1] == '\n');
		CHECK(!memchr(data + mlen, '\n', (size_t)off - 1 - mlen));
		struct queue_envelope line;
		CHECK(from_text((const char *)data + mlen, (size_t)off - 1 - mlen, &line) == 0);
		check_same(&e, &line);
		queue_envelope_free(&line);
		check_envelope(&e);
		queue_envelope_free(&e);
	}
	return 0;
}
