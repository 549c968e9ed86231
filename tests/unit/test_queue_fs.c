/*
 * test_queue_fs - the runner's spool files (relay/queue_fs.c) and the
 * unguessable references of mails (relay/queue_tag.c).
 */
#include <check.h>
#include <glib.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <ctype.h>
#include <unistd.h>

#include "relay/queue_fs.h"
#include "relay/queue_tag.h"

static char dir[64];

static void mkspool(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_queue_fs.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char p[128];
	snprintf(p, sizeof(p), "%s/mail", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/state", dir);
	mkdir(p, 0700);
}

static void put(const char *sub, const char *name, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s/%s", dir, sub, name);
	FILE *fp = fopen(p, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

static bool exists(const char *sub, const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s/%s", dir, sub, name);
	return access(p, F_OK) == 0;
}

#define ID1 "00000661A0000000AA"
#define ID2 "00000661A0000000BB"

START_TEST(read_message_skips_magic_and_envelope)
{
	mkspool();
	put("mail", ID1, QUEUE_MAGIC "\n{\"id\":\"" ID1 "\"}\nSubject: x\r\n\r\nbody\r\n");
	char *d;
	size_t n;
	ck_assert_int_eq(queue_fs_read_message(NULL, dir, ID1, &d, &n), 0);
	ck_assert_str_eq(d, "Subject: x\r\n\r\nbody\r\n");
	ck_assert_uint_eq(n, strlen(d));
	free(d);
	put("mail", ID2, "NOT A QUEUE FILE\n{}\nx");
	ck_assert_int_eq(queue_fs_read_message(NULL, dir, ID2, &d, &n), -EINVAL);
	ck_assert_int_eq(queue_fs_read_message(NULL, dir, "../etc/passwd", &d, &n), -EINVAL);
	ck_assert_int_eq(queue_fs_read_message(NULL, dir, "00000661A0000000CC", &d, &n), -ENOENT);
}
END_TEST

START_TEST(state_write_remove_and_list)
{
	mkspool();
	ck_assert_int_eq(queue_fs_write_state(NULL, dir, ID1, "{\"attempts\":1}"), 0);
	ck_assert(exists("state", ID1));
	ck_assert(!exists("state", ID1 ".tmp"));
	ck_assert_int_eq(queue_fs_write_state(NULL, dir, "bad", "{}"), -EINVAL);
	put("mail", ID1, QUEUE_MAGIC "\n{}\n");
	put("mail", ID2, QUEUE_MAGIC "\n{}\n");
	put("state", "00000661A0000000CC", "{}");  /* an orphan: its mail is gone */
	GPtrArray *ids;
	ck_assert_int_eq(queue_fs_list(dir, &ids), 0);
	ck_assert_uint_eq(ids->len, 2);
	g_ptr_array_free(ids, TRUE);
	ck_assert(!exists("state", "00000661A0000000CC"));
	const char *rm[] = { ID1, ID2 };
	int st[2] = { 1, 1 };
	queue_fs_remove(NULL, dir, rm, 2, st);
	ck_assert_int_eq(st[0], 0);
	ck_assert_int_eq(st[1], 0);
	ck_assert(!exists("mail", ID1) && !exists("state", ID1) && !exists("mail", ID2));
}
END_TEST

START_TEST(reported_once)
{
	mkspool();
	ck_assert_int_eq(queue_fs_reported_has(dir, ID1, "Gone@Dest.test"), 0);
	ck_assert_int_eq(queue_fs_reported_add(dir, ID1, "Gone@Dest.test"), 0);
	ck_assert_int_eq(queue_fs_reported_has(dir, ID1, "gone@dest.test"), 1);
	ck_assert_int_eq(queue_fs_reported_has(dir, ID1, "other@dest.test"), 0);
	ck_assert_int_eq(queue_fs_reported_has(dir, ID2, "gone@dest.test"), 0);
	ck_assert_int_eq(queue_fs_reported_add(dir, ID1, "gone@dest.test"), 0); /* no duplicate line */
	ck_assert_int_eq(queue_fs_reported_add(dir, ID1, "b@x.test"), 0);
	ck_assert_int_eq(queue_fs_reported_has(dir, ID1, "b@x.test"), 1);
	ck_assert_int_eq(queue_fs_reported_add(dir, ID1, "a\nb@x.test"), -EINVAL);
	ck_assert_int_eq(queue_fs_reported_add(dir, "../x", "b@x.test"), -EINVAL);
	queue_fs_reported_prune(dir, (uint64_t)(time(NULL) + 10) * 1000);
	ck_assert_int_eq(queue_fs_reported_has(dir, ID1, "b@x.test"), 0);
}
END_TEST

/* The notices of one report are recorded from several pool threads at
 * once: no line is lost (the review's probe lost 576 of 800). */
static gpointer add_many(gpointer arg)
{
	int t = GPOINTER_TO_INT(arg);
	for (int i = 0; i < 50; i++) {
		char rcpt[64];
		snprintf(rcpt, sizeof(rcpt), "r%d-%d@dest.test", t, i);
		ck_assert_int_eq(queue_fs_reported_add(dir, ID1, rcpt), 0);
	}
	return NULL;
}

START_TEST(reported_concurrent)
{
	mkspool();
	GThread *th[4];
	for (int t = 0; t < 4; t++)
		th[t] = g_thread_new("add", add_many, GINT_TO_POINTER(t));
	for (int t = 0; t < 4; t++)
		g_thread_join(th[t]);
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < 50; i++) {
			char rcpt[64];
			snprintf(rcpt, sizeof(rcpt), "r%d-%d@dest.test", t, i);
			ck_assert_int_eq(queue_fs_reported_has(dir, ID1, rcpt), 1);
		}
}
END_TEST

START_TEST(tag_key_and_refs)
{
	mkspool();
	unsigned char k1[QUEUE_TAG_KEY_LEN], k2[QUEUE_TAG_KEY_LEN], k3[QUEUE_TAG_KEY_LEN];
	ck_assert_int_eq(queue_tag_key_load(dir, k1), 0);
	ck_assert_int_eq(queue_tag_key_load(dir, k2), 0);  /* the same key, read back */
	ck_assert_mem_eq(k1, k2, sizeof(k1));
	char r1[QUEUE_REF_MAX + 1], r2[QUEUE_REF_MAX + 1], id[QUEUE_ID_LEN + 1];
	queue_tag_ref(k1, ID1, r1);
	ck_assert_uint_eq(strlen(r1), QUEUE_ID_LEN + 1 + QUEUE_TAG_HEX);
	ck_assert(strncmp(r1, ID1 "-", QUEUE_ID_LEN + 1) == 0);
	for (const char *p = r1 + QUEUE_ID_LEN + 1; *p; p++)
		ck_assert(strchr("0123456789abcdef", *p));
	queue_tag_ref(k1, ID2, r2);
	ck_assert_str_ne(r1 + QUEUE_ID_LEN, r2 + QUEUE_ID_LEN);  /* not derivable from the id */
	/* another spool, another key: another tag for the same id */
	char dir1[64];
	memcpy(dir1, dir, sizeof(dir));
	mkspool();
	ck_assert_int_eq(queue_tag_key_load(dir, k3), 0);
	ck_assert(memcmp(k1, k3, sizeof(k1)) != 0);
	queue_tag_ref(k3, ID1, r2);
	ck_assert_str_ne(r1, r2);
	(void)dir1;
	/* parsing: canonical case, strict form */
	char up[QUEUE_REF_MAX + 1], out[QUEUE_REF_MAX + 1];
	snprintf(up, sizeof(up), "%s", r1);
	for (char *p = up + QUEUE_ID_LEN; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	ck_assert(queue_tag_ref_parse(up, strlen(up), out, id));
	ck_assert_str_eq(out, r1);
	ck_assert_str_eq(id, ID1);
	ck_assert(!queue_tag_ref_parse(ID1, strlen(ID1), out, id));           /* bare id */
	ck_assert(!queue_tag_ref_parse(ID1 "-0123", 23, out, id));            /* short tag */
	ck_assert(!queue_tag_ref_parse(ID1 "-0123456789abcdeg", 35, out, id)); /* not hex */
	ck_assert(!queue_tag_ref_parse(ID1 "+0123456789abcdef", 35, out, id));
	ck_assert(queue_tag_ref_parse(ID1 "-0123456789abcdef", 35, out, id));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue_fs");
	TCase *tc = tcase_create("queue_fs");
	tcase_add_test(tc, read_message_skips_magic_and_envelope);
	tcase_add_test(tc, state_write_remove_and_list);
	tcase_add_test(tc, reported_once);
	tcase_add_test(tc, reported_concurrent);
	tcase_add_test(tc, tag_key_and_refs);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
