/*
 * test_clock - RFC 3339 time text (util/clock.h): the format of the log's
 * "ts" (checked against libc's gmtime_r() and strftime() over a range of
 * times), the form without milliseconds, and what the parser reads and
 * refuses.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

/* What the format was before it was built on GLib, for years 1000 on. */
static void libc_rfc3339(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000 - (ms % 1000 < 0));
	int frac = (int)(((ms % 1000) + 1000) % 1000);
	struct tm tm;
	char b[32];

	ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
	ck_assert_uint_gt(strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm), 0);
	snprintf(out, cap, "%s.%03dZ", b, frac);
}

START_TEST(test_format)
{
	char out[CLOCK_RFC3339_SIZE];

	ck_assert_int_eq(clock_rfc3339(1795673644123LL, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "2026-11-26T06:14:04.123Z");
	ck_assert_int_eq(clock_rfc3339(0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
	ck_assert_int_eq(clock_rfc3339(-1, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "1969-12-31T23:59:59.999Z");
	ck_assert_int_eq(clock_rfc3339(-61000000000000LL, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "0036-12-26T11:33:20.000Z");
	ck_assert_int_eq(clock_rfc3339(253402300799999LL, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "9999-12-31T23:59:59.999Z");
	ck_assert_int_eq(clock_rfc3339(253402300800000LL, out, sizeof(out)), -1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(clock_rfc3339(-62135596800001LL, out, sizeof(out)), -1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(clock_rfc3339(INT64_MIN, out, sizeof(out)), -1);
	ck_assert_int_eq(clock_rfc3339(INT64_MAX, out, sizeof(out)), -1);
	ck_assert_int_eq(clock_rfc3339(0, out, 24), -1);   /* no room for the Z: cut */
	ck_assert_str_eq(out, "1970-01-01T00:00:00.000");
	ck_assert_int_eq(clock_rfc3339(0, NULL, 0), -1);

	ck_assert_int_eq(clock_rfc3339_seconds(1795673644999LL, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "2026-11-26T06:14:04Z");
	ck_assert_int_eq(clock_rfc3339_seconds(0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "1970-01-01T00:00:00Z");
}
END_TEST

/* Every time the daemon writes reads back as itself, and is what libc's
 * calendar makes of it. */
START_TEST(test_format_sweep)
{
	char a[CLOCK_RFC3339_SIZE], b[64];
	int64_t ms = -2208988800000LL; /* 1900-01-01 */
	unsigned seed = 12345;

	while (ms < 7258118400000LL) { /* 2200-01-01 */
		int64_t back = 0;
		ck_assert_int_eq(clock_rfc3339(ms, a, sizeof(a)), 0);
		libc_rfc3339(ms, b, sizeof(b));
		ck_assert_str_eq(a, b);
		ck_assert_int_eq(clock_rfc3339_parse(a, &back), 0);
		ck_assert_int_eq(back, ms);
		seed = seed * 1103515245u + 12345u;
		ms += (int64_t)(seed % 86400000u) * 31 + (seed >> 16) % 1000;
	}
}
END_TEST

START_TEST(test_parse)
{
	static const struct {
		const char *in;
		bool ok;
		long long ms;
	} cases[] = {
		{ "2026-11-26T06:14:04Z", true, 1795673644000LL },
		{ "2026-11-26T06:14:04.123Z", true, 1795673644123LL },
		{ "2026-11-26T06:14:04.1Z", true, 1795673644100LL },
		{ "2026-11-26T06:14:04.123999Z", true, 1795673644123LL },
		{ "2026-11-26t06:14:04z", true, 1795673644000LL },
		{ "2026-11-26 06:14:04Z", true, 1795673644000LL },
		{ "2026-11-26T06:14:04 Z", true, 1795673644000LL },
		{ "2026-11-26T15:14:04+09:00", true, 1795673644000LL },
		{ "2026-11-26T15:14:04+0900", true, 1795673644000LL },
		{ "2026-11-25T21:14:04-09:00", true, 1795673644000LL },
		{ "2026-11-27T06:13:04+23:59", true, 1795673644000LL },
		{ "2024-02-29T00:00:00Z", true, 1709164800000LL },
		{ "2026-11-26T12:00:60Z", true, 1795694460000LL },
		{ "1969-12-31T23:59:59.999Z", true, -1LL },
		{ "0001-01-01T00:00:00Z", true, -62135596800000LL },
		{ "9999-12-31T23:59:59.999Z", true, 253402300799999LL },
		{ "0000-01-01T00:00:00Z", false, 0 },
		{ "2026-02-29T00:00:00Z", false, 0 },
		{ "2026-02-31T00:00:00Z", false, 0 },
		{ "2026-04-31T00:00:00Z", false, 0 },
		{ "2026-13-01T00:00:00Z", false, 0 },
		{ "2026-00-01T00:00:00Z", false, 0 },
		{ "2026-11-00T00:00:00Z", false, 0 },
		{ "2026-11-32T00:00:00Z", false, 0 },
		{ "2026-11-26T24:00:00Z", false, 0 },
		{ "2026-11-26T23:60:00Z", false, 0 },
		{ "2026-11-26T23:59:61Z", false, 0 },
		{ "2026-11-26T23:59:60Z", false, 0 },
		{ "2026-11-26T06:14:04", false, 0 },
		{ "2026-11-26T06:14:04.Z", false, 0 },
		{ "2026-11-26T06:14Z", false, 0 },
		{ "20261126T061404Z", false, 0 },
		{ "2026-11-26T06:14:04+09", false, 0 },
		{ "2026-11-26T06:14:04+24:00", false, 0 },
		{ "2026-11-26T06:14:04+09:60", false, 0 },
		{ "2026-11-26T06:14:04+99:99", false, 0 },
		{ "2026-11-26T06:14:04Z ", false, 0 },
		{ " 2026-11-26T06:14:04Z", false, 0 },
		{ "2026-11-26T06:14:04,5Z", false, 0 },
		{ "2026-1-26T06:14:04Z", false, 0 },
		{ "2026- 1-26T06:14:04Z", false, 0 },
		{ "+026-11-26T06:14:04Z", false, 0 },
		{ "2026-11-26T06:14:04  Z", false, 0 },
		{ "2026-W48-4T06:14:04Z", false, 0 },
		{ "2026-11-26X06:14:04Z", false, 0 },
		{ "", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = 42;
		int rc = clock_rfc3339_parse(cases[i].in, &ms);
		if (cases[i].ok) {
			ck_assert_msg(rc == 0, "\"%s\" refused", cases[i].in);
			ck_assert_msg(ms == cases[i].ms, "%s: %lld", cases[i].in, (long long)ms);
		} else {
			ck_assert_msg(rc == -1, "\"%s\" accepted", cases[i].in);
			ck_assert_int_eq(ms, 42);
		}
	}
	int64_t ms;
	ck_assert_int_eq(clock_rfc3339_parse(NULL, &ms), -1);
	ck_assert_int_eq(clock_rfc3339_parse("2026-11-26T06:14:04Z", NULL), -1);
}
END_TEST

static Suite *clock_suite(void)
{
	Suite *s = suite_create("clock");
	TCase *tc = tcase_create("rfc3339");

	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_format_sweep);
	tcase_add_test(tc, test_parse);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(clock_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
