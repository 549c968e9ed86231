/*
 * test_queue_wal - the spool's segment log (relay/queue_wal.h): what a
 * restart makes of a segment (torn tails, bad CRCs, removal records, a
 * mail already moved out), removals and evictions while running, and the
 * read-only scan hikyakuctl uses. Against fresh directories under /tmp.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "relay/queue.h"
#include "relay/queue_wal.h"

static char root[64];
static char path_mail[128];
static char path_wal[128];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(root, "/tmp/hk-wal-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(path_mail, sizeof(path_mail), "%s/mail", root);
	snprintf(path_wal, sizeof(path_wal), "%s/wal", root);
	ck_assert_int_eq(mkdir(path_mail, 0700), 0);
	ck_assert_int_eq(mkdir(path_wal, 0700), 0);
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s/tmp", root);
	ck_assert_int_eq(mkdir(tmp, 0700), 0);
}

static void teardown(void)
{
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool exists(const char *dir, const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/* A mail file's bytes for id, with body text. */
static char *mail_bytes(const char *id, const char *body)
{
	char *s;
	ck_assert_int_ge(asprintf(&s, "HIKYAKU-QUEUE 1\n{\"id\":\"%s\"}\n%s", id, body), 0);
	return s;
}

/* One record, in the format of queue_wal.h, written independently. */
static void put_rec(FILE *f, char type, const char *id, const char *payload)
{
	size_t len = payload ? strlen(payload) : 0;
	unsigned long crc = payload ? crc32_z(0, (const Bytef *)payload, len) : 0;
	fprintf(f, "HKW1 %c %s %016zX %08lX\n", type, id, len, crc);
	if (payload)
		fwrite(payload, 1, len, f);
}

static FILE *segment(const char *seq)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", path_wal, seq);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	return f;
}

#define ID1 "000000000000000001"
#define ID2 "000000000000000002"
#define ID3 "000000000000000003"
#define ID4 "000000000000000004"
#define ID5 "000000000000000005"

/* A restart keeps exactly the live, whole records, and removes the log. */
START_TEST(test_recover)
{
	char *m1 = mail_bytes(ID1, "one\r\n"), *m2 = mail_bytes(ID2, "two\r\n");
	char *m3 = mail_bytes(ID3, "three\r\n"), *m4 = mail_bytes(ID4, "four\r\n");
	char *m5 = mail_bytes(ID5, "five\r\n");

	FILE *f = segment("0000000000000001");
	put_rec(f, 'M', ID1, m1);
	put_rec(f, 'M', ID2, m2);
	put_rec(f, 'D', ID1, NULL);     /* delivered */
	put_rec(f, 'M', ID3, m3);       /* already moved out: the file wins */
	fclose(f);
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", path_mail, ID3);
	f = fopen(p, "wb");
	fputs("the moved-out copy", f);
	fclose(f);

	/* A second segment: a good record, one with a bad CRC, and one after
	 * it that must not be read (past the first bad record, nothing is). */
	f = segment("0000000000000002");
	put_rec(f, 'M', ID4, m4);
	fprintf(f, "HKW1 M %s %016zX %08X\n%s", ID5, strlen(m5), 0xDEADBEEFu, m5);
	put_rec(f, 'M', "000000000000000006", m1);
	fclose(f);
	/* A third, torn in its first record's payload. */
	f = segment("0000000000000003");
	fprintf(f, "HKW1 M %s %016zX %08lX\nHIKYAKU", "000000000000000007", (size_t)100, 0ul);
	fclose(f);

	uv_loop_t loop;
	struct queue *q;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	ck_assert_int_eq(count_files(path_wal), 0);
	ck_assert_int_eq(count_files(path_mail), 3);
	ck_assert(exists(path_mail, ID2) && exists(path_mail, ID3) && exists(path_mail, ID4));

	struct queue_envelope env;
	memset(&env, 0, sizeof(env));
	snprintf(p, sizeof(p), "%s/%s", path_mail, ID2);
	f = fopen(p, "rb");
	char buf[256] = "";
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	ck_assert_uint_eq(n, strlen(m2));
	ck_assert_str_eq(buf, m2);
	snprintf(p, sizeof(p), "%s/%s", path_mail, ID3);
	f = fopen(p, "rb");
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	ck_assert_str_eq(buf, "the moved-out copy");

	/* New ids go above the recovered ones. */
	char id[QUEUE_ID_LEN + 1];
	queue_new_id(q, id);
	ck_assert_int_gt(strcmp(id, ID4), 0);
	queue_close(q);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	free(m5);
}
END_TEST

static struct wal *open_log(void)
{
	struct wal *w;
	ck_assert_int_eq(wal_recover(root), 0);
	ck_assert_int_eq(wal_open(root, &w), 0);
	return w;
}

static void append(struct wal *w, const char *id, const char *payload)
{
	struct iovec v = { (void *)payload, strlen(payload) };
	struct wal_rec r = { id, &v, 1, 1 };
	ck_assert_int_eq(wal_append(w, &r, 1), 0);
	ck_assert_int_eq(r.status, 0);
}

static int scan_count(void *arg, const char *id, const char *payload, size_t len)
{
	(void)id;
	(void)payload;
	(void)len;
	(*(int *)arg)++;
	return 0;
}

/* Removal and eviction while running; what a restart then finds. */
START_TEST(test_remove_evict)
{
	struct wal *w = open_log();
	char *m1 = mail_bytes(ID1, "one\r\n"), *m2 = mail_bytes(ID2, "two\r\n");
	char *m3 = mail_bytes(ID3, "three\r\n");
	append(w, ID1, m1);
	append(w, ID2, m2);
	append(w, ID3, m3);
	ck_assert_uint_eq(wal_live(w), 3);

	/* Read back as written. */
	char *d;
	size_t len;
	ck_assert_int_eq(wal_read(w, ID2, &d, &len), 0);
	ck_assert_uint_eq(len, strlen(m2));
	ck_assert_str_eq(d, m2);
	free(d);
	ck_assert_int_eq(wal_read(w, ID5, &d, &len), 1);

	/* The offline scan sees the three. */
	int n = 0;
	ck_assert_int_eq(wal_scan(root, scan_count, &n), 0);
	ck_assert_int_eq(n, 3);

	/* Removed: gone from the log; an id not in it is left to the caller. */
	const char *ids[] = { ID1, ID5 };
	unsigned char in_wal[2];
	int st[2];
	wal_remove(w, ids, 2, in_wal, st);
	ck_assert(in_wal[0] && !in_wal[1]);
	ck_assert_int_eq(st[0], 0);
	ck_assert_uint_eq(wal_live(w), 2);
	ck_assert_int_eq(wal_read(w, ID1, &d, &len), 1);

	/* A state file written while the mail stayed in the log (no room to
	 * move it out) is reported with its removal. */
	wal_note_state(w, ID3);
	const char *id3[] = { ID3 };
	wal_remove(w, id3, 0, in_wal, st);
	ck_assert_uint_eq(wal_live(w), 2);

	/* Moved out: a file, byte for byte, and out of the log. */
	ck_assert_int_eq(wal_evict(w, ID2), 0);
	ck_assert_int_eq(wal_evict(w, ID2), 1);
	ck_assert(exists(path_mail, ID2));
	ck_assert_uint_eq(wal_live(w), 1);
	n = 0;
	ck_assert_int_eq(wal_scan(root, scan_count, &n), 0);
	ck_assert_int_eq(n, 1);

	/* A restart (as after kill -9: the log is not closed first) finds
	 * ID3 only, besides the moved-out file; ID1 does not come back. */
	ck_assert_int_eq(wal_recover(root), 0);
	ck_assert_int_eq(count_files(path_mail), 2);
	ck_assert(exists(path_mail, ID2) && exists(path_mail, ID3) && !exists(path_mail, ID1));
	ck_assert_int_eq(count_files(path_wal), 0);

	/* The removal of ID3 says it had a state file. */
	wal_remove(w, id3, 1, in_wal, st);
	ck_assert_int_eq(in_wal[0], WAL_IN | WAL_STATE);
	ck_assert_int_eq(st[0], 0);
	ck_assert_uint_eq(wal_live(w), 0);
	wal_close(w);
	free(m1);
	free(m2);
	free(m3);
}
END_TEST

/* Several removals of one segment in one call (one write), an id that is
 * not in the log between them: all gone, and a restart brings none back. */
START_TEST(test_remove_batch)
{
	struct wal *w = open_log();
	const char *all[] = { ID1, ID2, ID5, ID3 };
	char *m[3];
	for (int i = 0; i < 3; i++) {
		m[i] = mail_bytes(i == 2 ? ID3 : all[i], "x\r\n");
		append(w, i == 2 ? ID3 : all[i], m[i]);
	}
	unsigned char in_wal[4];
	int st[4];
	wal_remove(w, all, 4, in_wal, st);
	ck_assert_int_eq(in_wal[0], WAL_IN);
	ck_assert_int_eq(in_wal[1], WAL_IN);
	ck_assert_int_eq(in_wal[2], 0);
	ck_assert_int_eq(in_wal[3], WAL_IN);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(st[i], 0);
	ck_assert_uint_eq(wal_live(w), 0);
	int n = 0;
	ck_assert_int_eq(wal_scan(root, scan_count, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(wal_recover(root), 0);
	ck_assert_int_eq(count_files(path_mail), 0);
	wal_close(w);
	for (int i = 0; i < 3; i++)
		free(m[i]);
}
END_TEST

/* A segment whose mails are all gone is removed once it is full. */
START_TEST(test_segment_dropped)
{
	struct wal *w = open_log();
	size_t big = (size_t)(WAL_SEGMENT_MAX / 4) + 1;
	char *body = malloc(big + 1);
	memset(body, 'z', big);
	body[big] = '\0';
	char id[QUEUE_ID_LEN + 1];
	for (int i = 1; i <= 5; i++) {
		snprintf(id, sizeof(id), "%018d", i);
		char *m = mail_bytes(id, body);
		append(w, id, m);
		free(m);
	}
	/* Four records fill the first segment; the fifth starts the next. */
	ck_assert_int_eq(count_files(path_wal), 2);
	for (int i = 1; i <= 4; i++) {
		snprintf(id, sizeof(id), "%018d", i);
		const char *ids[] = { id };
		unsigned char in_wal;
		int st;
		wal_remove(w, ids, 1, &in_wal, &st);
		ck_assert(in_wal);
		ck_assert_int_eq(st, 0);
		ck_assert_int_eq(count_files(path_wal), i < 4 ? 2 : 1);
	}
	ck_assert_uint_eq(wal_live(w), 1);
	wal_close(w);
	free(body);
}
END_TEST

static Suite *wal_suite(void)
{
	Suite *s = suite_create("queue_wal");
	TCase *tc = tcase_create("wal");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_recover);
	tcase_add_test(tc, test_remove_evict);
	tcase_add_test(tc, test_remove_batch);
	tcase_add_test(tc, test_segment_dropped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wal_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
