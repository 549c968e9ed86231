/*
 * fuzz_queue_wal - the spool's segment reader (relay/queue_wal.c), which
 * a start (wal_recover) and hikyakuctl (wal_scan) run on whatever a crash
 * or a damaged disk left in DIR/wal.
 *
 * The input is the whole content of one segment DIR/wal/0000000000000001
 * of a private temporary spool; wal_scan() reads it. Checked against an
 * independent model of the format in queue_wal.h (a reader written here,
 * record by record, stopping at the first bad one):
 *
 *  - the live records reported are exactly the model's, in order, with
 *    their ids valid and their payloads the bytes inside the input that
 *    the model found (never a byte past the end, never a torn record);
 *  - nothing leaks (LeakSanitizer) and nothing is written to the spool.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "relay/queue.h"
#include "relay/queue_wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#include "fuzz/fuzz_check.h"

static char dir[256], wal_dir[300], mail_dir[300], seg[340];

static void cleanup(void)
{
	unlink(seg);
	rmdir(wal_dir);
	rmdir(mail_dir);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/hikyaku-fuzz-wal-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(wal_dir, sizeof(wal_dir), "%s/wal", dir);
	snprintf(mail_dir, sizeof(mail_dir), "%s/mail", dir);
	snprintf(seg, sizeof(seg), "%s/0000000000000001", wal_dir);
	if (mkdir(wal_dir, 0700) < 0 || mkdir(mail_dir, 0700) < 0) {
		perror("mkdir");
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

/* ---- the model */

#define MAXREC 4096

struct rec {
	char id[QUEUE_ID_LEN + 1];
	size_t off, len;
	bool dead;
};

static bool hex_exact(const uint8_t *p, size_t n, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		int d = p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10 : -1;
		if (d < 0)
			return false;
		*v = *v << 4 | (uint64_t)d;
	}
	return true;
}

static size_t model(const uint8_t *d, size_t size, struct rec *out)
{
	size_t n = 0, at = 0;
	while (size - at >= WAL_HDR_LEN && n < MAXREC) {
		const uint8_t *h = d + at;
		uint64_t len, crc, idv;
		if (memcmp(h, "HKW1 ", 5) || (h[5] != 'M' && h[5] != 'D') || h[6] != ' ' || h[25] != ' ' ||
		    h[42] != ' ' || h[51] != '\n' || !hex_exact(h + 7, 18, &idv) ||
		    !hex_exact(h + 26, 16, &len) || !hex_exact(h + 43, 8, &crc))
			break;
		if (h[5] == 'D' && (len || crc))
			break;
		if (len > size - at - WAL_HDR_LEN)
			break;
		if (crc32_z(0, h + WAL_HDR_LEN, (size_t)len) != crc)
			break;
		char id[QUEUE_ID_LEN + 1];
		memcpy(id, h + 7, QUEUE_ID_LEN);
		id[QUEUE_ID_LEN] = '\0';
		if (h[5] == 'M') {
			memcpy(out[n].id, id, sizeof(id));
			out[n].off = at + WAL_HDR_LEN;
			out[n].len = (size_t)len;
			out[n].dead = false;
			n++;
		} else {
			/* The latest M of that id dies. */
			for (size_t i = n; i-- > 0;)
				if (!strcmp(out[i].id, id)) {
					out[i].dead = true;
					break;
				}
		}
		at += WAL_HDR_LEN + (size_t)len;
	}
	return n;
}

/* ---- the comparison */

struct seen {
	const uint8_t *input;
	size_t size;
	struct rec *want;
	size_t nwant, next;
};

static int on_live(void *arg, const char *id, const char *payload, size_t len)
{
	struct seen *s = arg;
	while (s->next < s->nwant && s->want[s->next].dead)
		s->next++;
	CHECK(s->next < s->nwant);
	const struct rec *r = &s->want[s->next++];
	CHECK(queue_id_valid(id));
	CHECK(!strcmp(id, r->id));
	CHECK(len == r->len);
	CHECK(memcmp(payload, s->input + r->off, len) == 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The model stops at MAXREC records; so does the input. */
	if (size > MAXREC * WAL_HDR_LEN)
		return 0;
	FILE *f = fopen(seg, "wb");
	CHECK(f);
	CHECK(fwrite(data, 1, size, f) == size);
	CHECK(fclose(f) == 0);

	static struct rec want[MAXREC];
	struct seen s = { data, size, want, model(data, size, want), 0 };
	CHECK(wal_scan(dir, on_live, &s) == 0);
	while (s.next < s.nwant && want[s.next].dead)
		s.next++;
	CHECK(s.next == s.nwant);
	return 0;
}
