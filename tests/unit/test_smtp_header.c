/*
 * test_smtp_header - the header fields hikyaku adds (proto/smtp_header.h):
 * Received: with and without TLS and a single recipient, Date: and
 * Message-ID: only when the mail lacks them, the "with" keywords; a
 * field's value unfolded (smtp_header_unfold).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

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
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
