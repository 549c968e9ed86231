/*
 * test_auth - AUTH credentials (server/auth.h) on a real libuv loop:
 * right and wrong passwords, the cap on password checks running on the
 * thread pool at once (so that clients guessing passwords cannot hold the
 * threads the queue's commits need), and an unknown user costing what a
 * known one costs (same algorithm, same cost parameter).
 */
#include <check.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "server/auth.h"

static char path[64];
static int done, ok_count;
static unsigned max_running;

static void result(void *arg, bool ok)
{
	(void)arg;
	done++;
	ok_count += ok;
	if (auth_running() > max_running)
		max_running = auth_running();
}

static void write_auth(const char *setting_prefix)
{
	char *setting = crypt_gensalt_ra(setting_prefix, 0, NULL, 0);
	ck_assert_ptr_nonnull(setting);
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	const char *h = crypt_r("right horse", setting, &cd);
	ck_assert(h && h[0] == '$');
	strcpy(path, "/tmp/hk-auth-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	FILE *fp = fdopen(fd, "w");
	fprintf(fp, "shop:%s\n", h);
	fclose(fp);
	free(setting);
}

static struct auth_db *load(void)
{
	struct auth_db *db = auth_db_load(path, NULL, NULL);
	ck_assert_ptr_nonnull(db);
	return db;
}

START_TEST(right_and_wrong)
{
	write_auth("$6$");
	struct auth_db *db = load();
	uv_loop_t loop;
	uv_loop_init(&loop);
	done = ok_count = 0;
	ck_assert_int_eq(auth_verify(&loop, db, "shop", "right horse", result, NULL), 0);
	ck_assert_int_eq(auth_verify(&loop, db, "shop", "wrong horse", result, NULL), 0);
	ck_assert_int_eq(auth_verify(&loop, db, "nobody", "right horse", result, NULL), 0);
	auth_db_unref(db); /* the requests keep their own reference */
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(done, 3);
	ck_assert_int_eq(ok_count, 1);
	uv_loop_close(&loop);
	unlink(path);
}
END_TEST

/* Issue 11: crypt() had no concurrency cap on the shared pool. */
START_TEST(running_cap)
{
	write_auth("$6$");
	struct auth_db *db = load();
	uv_loop_t loop;
	uv_loop_init(&loop);
	done = ok_count = 0;
	max_running = 0;
	for (int i = 0; i < 12; i++)
		ck_assert_int_eq(auth_verify(&loop, db, "shop", i == 11 ? "right horse" : "guess",
		                             result, NULL), 0);
	ck_assert_uint_le(auth_running(), AUTH_MAX_RUNNING);
	ck_assert_uint_eq(auth_running() + auth_waiting(), 12);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(done, 12);
	ck_assert_int_eq(ok_count, 1); /* the last one, in order */
	ck_assert_uint_le(max_running, AUTH_MAX_RUNNING);
	ck_assert_uint_eq(auth_running(), 0);
	ck_assert_uint_eq(auth_waiting(), 0);
	auth_db_unref(db);
	uv_loop_close(&loop);
	unlink(path);
}
END_TEST

static double time_checks(struct auth_db *db, const char *user, int n)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct timespec a, b;
	done = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(auth_verify(&loop, db, user, "wrong horse", result, NULL), 0);
		uv_run(&loop, UV_RUN_DEFAULT); /* one at a time */
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	uv_loop_close(&loop);
	ck_assert_int_eq(done, n);
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Issue 11: an unknown user must cost what a known one costs, with the
 * file's own algorithm and cost (here SHA-512 crypt with 400,000 rounds,
 * 80 times the default), so the reply time tells nothing. */
START_TEST(unknown_user_same_cost)
{
	char *setting = crypt_gensalt_ra("$6$", 400000, NULL, 0);
	ck_assert_ptr_nonnull(setting);
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	const char *h = crypt_r("right horse", setting, &cd);
	strcpy(path, "/tmp/hk-auth-XXXXXX");
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");
	fprintf(fp, "shop:%s\n", h);
	fclose(fp);
	free(setting);
	struct auth_db *db = load();
	double known = time_checks(db, "shop", 3);
	double unknown = time_checks(db, "nobody", 3);
	ck_assert_msg(unknown > known / 3 && unknown < known * 3,
	              "known user %.3f s, unknown user %.3f s", known, unknown);
	auth_db_unref(db);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("auth");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, right_and_wrong);
	tcase_add_test(tc, running_cap);
	tcase_add_test(tc, unknown_user_same_cost);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
