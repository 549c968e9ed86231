/*
 * test_smtp_header - the header fields hikyaku adds (proto/smtp_header.h):
 * Received: with and without TLS and a single recipient, Date: and
 * Message-ID: only when the mail lacks them, the "with" keywords; a
 * field's value unfolded (smtp_header_unfold); the RFC 5322 date
 * (smtp_date_format), byte for byte in several zones and against
 * GMime's g_mime_utils_header_format_date() over a range of times.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gmime/gmime.h>
#include <time.h>

#include "proto/smtp_header.h"

START_TEST(protocols)
{
	ck_assert_str_eq(smtp_received_protocol(false, false, false, false), "SMTP");
	ck_assert_str_eq(smtp_received_protocol(true, false, false, false), "ESMTP");
	ck_assert_str_eq(smtp_received_protocol(true, true, false, false), "ESMTPS");
	ck_assert_str_eq(smtp_received_protocol(true, true, true, false), "ESMTPSA");
	ck_assert_str_eq(smtp_received_protocol(true, false, true, false), "ESMTPA");
	ck_assert_str_eq(smtp_received_protocol(true, true, true, true), "UTF8SMTPSA");
	ck_assert_str_eq(smtp_received_protocol(true, false, false, true), "UTF8SMTP");
}
END_TEST

START_TEST(build)
{
	setenv("TZ", "UTC", 1);
	buf_t b;
	buf_init(&b, SMTP_HEADER_MAX);
	struct smtp_header_info h = {
		.helo = "shop.example", .client_ip = "192.0.2.1", .tls = "TLSv1.3 TLS_AES_128_GCM_SHA256",
		.hostname = "relay.example.jp", .protocol = "ESMTPS", .queue_id = "0006612824C4D754AB",
		.single_rcpt = "b@example.com", .arrival = 1796083200, /* 2026-12-01 00:00:00 UTC */
		.has_date = false, .has_message_id = true,
	};
	ck_assert_int_eq(smtp_header_build(&b, &h), 0);
	ck_assert_str_eq(b.data,
		"Received: from shop.example ([192.0.2.1])\r\n"
		"\t(using TLSv1.3 TLS_AES_128_GCM_SHA256)\r\n"
		"\tby relay.example.jp (hikyaku) with ESMTPS id 0006612824C4D754AB\r\n"
		"\tfor <b@example.com>; Tue, 01 Dec 2026 00:00:00 +0000\r\n"
		"Date: Tue, 01 Dec 2026 00:00:00 +0000\r\n");
	buf_free(&b);

	/* Several recipients: none named. No TLS. Message-ID added. */
	h.tls = NULL;
	h.single_rcpt = NULL;
	h.has_date = true;
	h.has_message_id = false;
	h.protocol = "ESMTP";
	buf_init(&b, SMTP_HEADER_MAX);
	ck_assert_int_eq(smtp_header_build(&b, &h), 0);
	ck_assert_str_eq(b.data,
		"Received: from shop.example ([192.0.2.1])\r\n"
		"\tby relay.example.jp (hikyaku) with ESMTP id 0006612824C4D754AB; "
		"Tue, 01 Dec 2026 00:00:00 +0000\r\n"
		"Message-ID: <0006612824C4D754AB@relay.example.jp>\r\n");
	buf_free(&b);

	/* The buffer's cap is an error, never an overflow. */
	buf_init(&b, 40);
	ck_assert_int_ne(smtp_header_build(&b, &h), 0);
	ck_assert_uint_le(b.len, 40);
	buf_free(&b);
}
END_TEST

/* smtp_date_format() of t in the zone tz (a POSIX TZ string). */
static void expect_date(const char *tz, time_t t, const char *want)
{
	char out[64];

	setenv("TZ", tz, 1);
	tzset();
	smtp_date_format(out, sizeof(out), t);
	ck_assert_str_eq(out, want);
}

START_TEST(date_format)
{
	/* 2026-12-01 00:00:00 UTC: a day of one digit, written with two. */
	expect_date("UTC", 1796083200, "Tue, 01 Dec 2026 00:00:00 +0000");
	expect_date("JST-9", 1796083200, "Tue, 01 Dec 2026 09:00:00 +0900");
	expect_date("EST5", 1796083200, "Mon, 30 Nov 2026 19:00:00 -0500");
	expect_date("IST-5:30", 1796083200, "Tue, 01 Dec 2026 05:30:00 +0530");
	expect_date("NST3:30", 1796083200, "Mon, 30 Nov 2026 20:30:00 -0330");
	expect_date("JST-9", 1796083200 + 9 * 86400 - 1, "Thu, 10 Dec 2026 08:59:59 +0900");
	expect_date("UTC", 951782400, "Tue, 29 Feb 2000 00:00:00 +0000");
	expect_date("UTC", 0, "Thu, 01 Jan 1970 00:00:00 +0000");
	expect_date("UTC", 4102444799, "Thu, 31 Dec 2099 23:59:59 +0000");
	/* Summer time: the offset of that moment. */
	expect_date("CET-1CEST,M3.5.0,M10.5.0/3", 1782864000, "Wed, 01 Jul 2026 02:00:00 +0200");
	expect_date("CET-1CEST,M3.5.0,M10.5.0/3", 1796083200, "Tue, 01 Dec 2026 01:00:00 +0100");

	/* Cut to the room, never past it. */
	char small[8];
	setenv("TZ", "UTC", 1);
	tzset();
	smtp_date_format(small, sizeof(small), 1796083200);
	ck_assert_uint_lt(strlen(small), sizeof(small));
	ck_assert(strncmp(small, "Tue, 01", strlen(small)) == 0);
}
END_TEST

/* The same text as GMime writes (g_mime_utils_header_format_date). */
START_TEST(date_format_gmime)
{
	static const char *const zones[] = { "UTC", "JST-9", "EST5EDT,M3.2.0,M11.1.0",
	                                     "IST-5:30", "NZST-12NZDT,M9.5.0,M4.1.0/3" };

	g_mime_init();
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		setenv("TZ", zones[z], 1);
		tzset();
		/* 2024-01-01 .. 2026-12-31, every 7 h 13 min 7 s. */
		for (time_t t = 1704067200; t < 1798675200; t += 7 * 3600 + 13 * 60 + 7) {
			char out[64];
			GDateTime *d = g_date_time_new_from_unix_local((gint64)t);
			char *want = g_mime_utils_header_format_date(d);

			smtp_date_format(out, sizeof(out), t);
			ck_assert_msg(strcmp(out, want) == 0, "%s %lld: \"%s\", GMime \"%s\"",
			              zones[z], (long long)t, out, want);
			g_free(want);
			g_date_time_unref(d);
		}
	}
	g_mime_shutdown();
}
END_TEST

START_TEST(unfold)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "From: a@example.jp\r\n", " a@example.jp" },
		{ "From: Shop\r\n <a@example.jp>\r\n", " Shop <a@example.jp>" },
		{ "From: Shop\n\t<a@example.jp>\n", " Shop\t<a@example.jp>" },
		{ "Subject:x\r\n y\r\n  z", "x y  z" },
		{ "Subject: tail\r", " tail" },                /* the last CR of the field too */
		{ "Subject: a\rb\r\n c", " a\rb c" },         /* a CR inside a line stays */
		{ "To : a, b", " a, b" },
		{ "X:", "" },
		{ "X: a: b", " a: b" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = smtp_header_unfold(cases[i].in, strlen(cases[i].in));
		ck_assert_ptr_nonnull(v);
		ck_assert_str_eq(v, cases[i].out);
		g_free(v);
	}
	ck_assert_ptr_null(smtp_header_unfold("no colon\r\n", 10));
	ck_assert_ptr_null(smtp_header_unfold("X: a", 1));      /* the colon is beyond len */
	ck_assert_ptr_null(smtp_header_unfold(NULL, 0));
	/* len bounds the field: no NUL needed. */
	char *v = smtp_header_unfold("X: ab\r\nGARBAGE", 5);
	ck_assert_str_eq(v, " ab");
	g_free(v);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("smtp_header");
	TCase *tc = tcase_create("header");
	tcase_add_test(tc, protocols);
	tcase_add_test(tc, build);
	tcase_add_test(tc, unfold);
	tcase_add_test(tc, date_format);
	tcase_add_test(tc, date_format_gmime);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
