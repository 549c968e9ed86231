/*
 * test_runner - the queue runner's pure parts: the retry schedule.
 * (Delivery itself is tested end to end against real servers: tests/e2e.)
 */
#include <check.h>
#include <stdlib.h>

#include "config/config.h"
#include "relay/runner.h"

static struct config cfg_with(uint64_t min_ms, uint64_t max_ms)
{
	struct config c = { 0 };
	c.queue.retry_min_ms = min_ms;
	c.queue.retry_max_ms = max_ms;
	return c;
}

START_TEST(backoff_doubles_from_retry_min)
{
	struct config c = cfg_with(60000, 3600000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 1), 60000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 2), 120000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 3), 240000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 4), 480000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 5), 960000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 6), 1920000);
}
END_TEST

START_TEST(backoff_stops_at_retry_max)
{
	struct config c = cfg_with(60000, 3600000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 7), 3600000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 8), 3600000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 1000), 3600000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 4000000000u), 3600000);
}
END_TEST

START_TEST(backoff_first_attempt_and_equal_bounds)
{
	struct config c = cfg_with(5000, 5000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 0), 5000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 1), 5000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 50), 5000);
	c = cfg_with(1000, 2500);
	ck_assert_uint_eq(runner_backoff_ms(&c, 2), 2000);
	ck_assert_uint_eq(runner_backoff_ms(&c, 3), 2500);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("runner");
	TCase *tc = tcase_create("backoff");
	tcase_add_test(tc, backoff_doubles_from_retry_min);
	tcase_add_test(tc, backoff_stops_at_retry_max);
	tcase_add_test(tc, backoff_first_attempt_and_equal_bounds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
