/*
 * test_queue_state - a queued mail's delivery state (relay/queue_state.h):
 * the state line round trip, malformed lines, the delay warning's record
 * (and state files written before it), and the view hikyakuctl prints,
 * read from a real spool written by queue_commit().
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "relay/queue.h"
#include "relay/queue_state.h"

static struct queue_envelope make_env(const char *id, size_t n)
{
	struct queue_envelope e;
	memset(&e, 0, sizeof(e));
	snprintf(e.id, sizeof(e.id), "%s", id);
	e.arrival_ms = 1764000000000ULL;
	e.from = strdup("shop@example.jp");
	e.rcpts = calloc(n, sizeof(*e.rcpts));
	e.nrcpts = n;
	for (size_t i = 0; i < n; i++) {
		char a[48];
		snprintf(a, sizeof(a), "user%zu@example.com", i);
		e.rcpts[i].addr = strdup(a);
	}
	e.client_ip = strdup("127.0.0.1");
	e.route = strdup("direct");
	e.size = 1234;
	return e;
}

START_TEST(test_dump_parse_roundtrip)
{
	struct queue_envelope e = make_env("0006612A164A2B81AA", 3);
	e.rcpts[0].state = RCPT_DELIVERED;
	e.rcpts[0].last = strdup("250 2.0.0 Ok");
	e.rcpts[1].state = RCPT_PENDING;
	e.rcpts[1].last = strdup("451 4.3.0 Greylisted");
	e.rcpts[2].state = RCPT_SUPPRESSED;
	json_t *nt = json_pack("[{s:i,s:s}]", "i", 2, "status", "5.1.1");
	struct queue_state st = { 3, 1764000600000ULL, 1764000300000ULL, nt, 0 };
	char *line = queue_state_dump(&e, &st);
	ck_assert_ptr_nonnull(line);
	ck_assert_ptr_null(strchr(line, '\n'));

	struct queue_envelope f = make_env("0006612A164A2B81AA", 3);
	struct queue_state got;
	ck_assert_int_eq(queue_state_parse(line, strlen(line), &f, &got), 0);
	ck_assert_uint_eq(got.attempts, 3);
	ck_assert_uint_eq(got.next_ms, 1764000600000ULL);
	ck_assert_uint_eq(got.last_ms, 1764000300000ULL);
	ck_assert_int_eq(f.rcpts[0].state, RCPT_DELIVERED);
	ck_assert_int_eq(f.rcpts[1].state, RCPT_PENDING);
	ck_assert_int_eq(f.rcpts[2].state, RCPT_SUPPRESSED);
	ck_assert_str_eq(f.rcpts[1].last, "451 4.3.0 Greylisted");
	ck_assert_ptr_null(f.rcpts[2].last);
	ck_assert(json_equal(got.notify, nt));
	ck_assert_uint_eq(got.warned_ms, 0);
	ck_assert_ptr_null(strstr(line, "warned_ms"));  /* not warned: not written */
	json_decref(got.notify);
	json_decref(nt);
	free(line);
	queue_envelope_free(&e);
	queue_envelope_free(&f);
}
END_TEST

/* The delay warning (SPEC §5 delay_warning) is recorded, so that a restart
 * does not send it again; a file written before the field existed reads
 * as "not warned", everything else in it as before. */
START_TEST(test_warned)
{
	struct queue_envelope e = make_env("0006612A164A2B81AA", 2);
	e.rcpts[0].state = RCPT_DELIVERED;
	e.rcpts[1].last = strdup("451 4.3.0 Try later");
	struct queue_state st = { 4, 1764000900000ULL, 1764000800000ULL, NULL, 1764000700000ULL };
	char *line = queue_state_dump(&e, &st);
	ck_assert_ptr_nonnull(line);
	/* the new field is the last one */
	ck_assert_ptr_nonnull(strstr(line, ",\"warned_ms\":1764000700000}"));
	struct queue_envelope f = make_env("0006612A164A2B81AA", 2);
	struct queue_state got;
	ck_assert_int_eq(queue_state_parse(line, strlen(line), &f, &got), 0);
	ck_assert_uint_eq(got.warned_ms, 1764000700000ULL);
	ck_assert_uint_eq(got.attempts, 4);
	ck_assert_int_eq(f.rcpts[0].state, RCPT_DELIVERED);
	json_t *v = queue_view(&f, &got, true);
	ck_assert_str_eq(json_string_value(json_object_get(v, "delay_warning")),
	                 "2025-11-24T16:11:40.000Z");
	json_decref(v);
	free(line);
	queue_envelope_free(&f);

	/* A state line of an older hikyaku, byte for byte as it wrote them. */
	static const char old[] = "{\"attempts\":2,\"next_ms\":1764000600000,\"last_ms\":"
	                          "1764000300000,\"rcpts\":[\"delivered\",\"pending\"],\"last\":"
	                          "[\"250 2.0.0 Ok\",\"451 4.3.0 Later\"],\"notify\":[]}";
	f = make_env("0006612A164A2B81AA", 2);
	ck_assert_int_eq(queue_state_parse(old, strlen(old), &f, &got), 0);
	ck_assert_uint_eq(got.warned_ms, 0);
	ck_assert_uint_eq(got.attempts, 2);
	ck_assert_uint_eq(got.next_ms, 1764000600000ULL);
	ck_assert_int_eq(f.rcpts[0].state, RCPT_DELIVERED);
	ck_assert_str_eq(f.rcpts[1].last, "451 4.3.0 Later");
	v = queue_view(&f, &got, true);
	ck_assert(json_is_null(json_object_get(v, "delay_warning")));
	json_decref(v);
	queue_envelope_free(&f);
	/* malformed values read as 0 */
	static const char odd[] = "{\"rcpts\":[\"pending\",\"pending\"],\"warned_ms\":\"soon\"}";
	f = make_env("0006612A164A2B81AA", 2);
	ck_assert_int_eq(queue_state_parse(odd, strlen(odd), &f, &got), 0);
	ck_assert_uint_eq(got.warned_ms, 0);
	queue_envelope_free(&f);
	queue_envelope_free(&e);
}
END_TEST

START_TEST(test_parse_malformed)
{
	static const char *const bad[] = { "", "not json", "[1,2]", "\"x\"", "{\"attempts\":" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct queue_envelope e = make_env("0006612A164A2B81AA", 1);
		struct queue_state st;
		ck_assert_int_eq(queue_state_parse(bad[i], strlen(bad[i]), &e, &st), -EINVAL);
		ck_assert_int_eq(e.rcpts[0].state, RCPT_PENDING);
		queue_envelope_free(&e);
	}
	/* A state for another number of recipients changes none of them;
	 * negative or wrongly typed numbers read as 0; unknown states are
	 * left pending. */
	struct queue_envelope e = make_env("0006612A164A2B81AA", 2);
	struct queue_state st;
	const char *other = "{\"attempts\":-4,\"next_ms\":\"x\",\"rcpts\":[\"delivered\"]}";
	ck_assert_int_eq(queue_state_parse(other, strlen(other), &e, &st), 0);
	ck_assert_uint_eq(st.attempts, 0);
	ck_assert_uint_eq(st.next_ms, 0);
	ck_assert_int_eq(e.rcpts[0].state, RCPT_PENDING);
	const char *odd = "{\"rcpts\":[\"gone\",\"bounced\"],\"last\":[1,\"550 5.1.1 no\"]}";
	ck_assert_int_eq(queue_state_parse(odd, strlen(odd), &e, &st), 0);
	ck_assert_int_eq(e.rcpts[0].state, RCPT_PENDING);
	ck_assert_int_eq(e.rcpts[1].state, RCPT_BOUNCED);
	ck_assert_ptr_null(e.rcpts[0].last);
	ck_assert_str_eq(e.rcpts[1].last, "550 5.1.1 no");
	queue_envelope_free(&e);
}
END_TEST

START_TEST(test_view)
{
	struct queue_envelope e = make_env("0006612A164A2B81AA", 2);
	e.rcpts[0].state = RCPT_DELIVERED;
	e.rcpts[1].last = strdup("451 4.3.0 Later");
	struct queue_state st = { 1, 0, 1764000300000ULL, NULL, 0 };
	json_t *v = queue_view(&e, &st, false);
	ck_assert_str_eq(json_string_value(json_object_get(v, "queue_id")), "0006612A164A2B81AA");
	ck_assert_str_eq(json_string_value(json_object_get(v, "arrival")), "2025-11-24T16:00:00.000Z");
	ck_assert(json_is_null(json_object_get(v, "next_try")));
	ck_assert_int_eq(json_integer_value(json_object_get(v, "pending")), 1);
	json_t *r = json_object_get(v, "rcpts");
	ck_assert_uint_eq(json_array_size(r), 1); /* only the pending one */
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "to")),
	                 "user1@example.com");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "response")),
	                 "451 4.3.0 Later");
	json_decref(v);
	v = queue_view(&e, &st, true);
	ck_assert_uint_eq(json_array_size(json_object_get(v, "rcpts")), 2);
	json_decref(v);
	queue_envelope_free(&e);
}
END_TEST

/* ---- the spool, written by the queue itself ------------------------- */

static char root[64];
static int committed;

static void on_commit(void *arg, int status)
{
	(void)arg;
	ck_assert_int_eq(status, 0);
	committed++;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

START_TEST(test_spool_read)
{
	strcpy(root, "/tmp/hk-qstate-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct queue *q;
	ck_assert_int_eq(queue_open(&loop, root, &q), 0);
	char ids[3][QUEUE_ID_LEN + 1];
	for (int i = 0; i < 3; i++) {
		queue_new_id(q, ids[i]);
		struct queue_envelope e = make_env(ids[i], 1);
		uv_buf_t part = uv_buf_init("Subject: x\r\n\r\nbody\r\n", 20);
		ck_assert_int_eq(queue_commit(q, &e, &part, 1, on_commit, NULL), 0);
		queue_envelope_free(&e);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(committed, 3);
	queue_close(q);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);

	/* The second mail was tried twice; its state is on disk. */
	char path[256];
	snprintf(path, sizeof(path), "%s/state", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/state/%s", root, ids[1]);
	FILE *fp = fopen(path, "w");
	fputs("{\"attempts\":2,\"next_ms\":1764000600000,\"rcpts\":[\"pending\"],"
	      "\"last\":[\"421 4.7.0 Busy\"]}", fp);
	fclose(fp);

	json_t *all;
	ck_assert_int_eq(queue_spool_read(root, &all), 0);
	ck_assert_uint_eq(json_array_size(all), 3);
	for (int i = 0; i < 3; i++) /* oldest first */
		ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, i), "queue_id")),
		                 ids[i]);
	json_t *m1 = json_array_get(all, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(m1, "attempts")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(
		json_array_get(json_object_get(m1, "rcpts"), 0), "response")), "421 4.7.0 Busy");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(all, 0), "attempts")), 0);
	json_decref(all);

	json_t *one;
	ck_assert_int_eq(queue_spool_show(root, ids[2], &one), 0);
	ck_assert_str_eq(json_string_value(json_object_get(one, "from")), "shop@example.jp");
	json_decref(one);
	ck_assert_int_eq(queue_spool_show(root, "0000000000000000AA", &one), -ENOENT);
	ck_assert_int_eq(queue_spool_show(root, "../../etc/passwd", &one), -ENOENT);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	ck_assert_int_eq(queue_spool_read(root, &all), -ENOENT);
}
END_TEST

static Suite *queue_state_suite(void)
{
	Suite *s = suite_create("queue_state");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_dump_parse_roundtrip);
	tcase_add_test(tc, test_parse_malformed);
	tcase_add_test(tc, test_view);
	tcase_add_test(tc, test_warned);
	tcase_add_test(tc, test_spool_read);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(queue_state_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
