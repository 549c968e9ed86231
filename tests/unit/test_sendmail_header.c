/*
 * test_sendmail_header - unit tests for sendmail/sm_header.c (see
 * sm_header.h): where the header ends, recipients from To:/Cc:/Bcc: (-t)
 * read by GMime, Bcc: removed, the From: address, the From: added when
 * there is none (with an RFC 2047 display name), CRLF line ends.
 */
#include "sendmail/sm_header.h"

#include <check.h>
#include <gmime/gmime.h>
#include <string.h>

static enum sm_hdr_end scan(const char *p, bool eof, size_t *hl)
{
	return sm_header_scan(p, strlen(p), eof, 1024, hl);
}

START_TEST(scan_finds_the_end)
{
	size_t hl;

	ck_assert_int_eq(scan("Subject: x\nTo: a@b\n\nbody\n", false, &hl), SM_HDR_BLANK);
	ck_assert_uint_eq(hl, 19);
	ck_assert_int_eq(scan("Subject: x\r\n\r\nbody", false, &hl), SM_HDR_BLANK);
	ck_assert_uint_eq(hl, 12);
	/* Folded lines belong to their field. */
	ck_assert_int_eq(scan("To: a@b,\n c@d\n\n", false, &hl), SM_HDR_BLANK);
	ck_assert_uint_eq(hl, 14);
	/* Not yet known. */
	ck_assert_int_eq(scan("Subject: x\nTo: a@", false, &hl), SM_HDR_MORE);
	ck_assert_int_eq(scan("Subject: x\n", false, &hl), SM_HDR_MORE);
	/* The input is only header. */
	ck_assert_int_eq(scan("Subject: x\nTo: a@b", true, &hl), SM_HDR_EOF);
	ck_assert_uint_eq(hl, 18);
	ck_assert_int_eq(scan("", true, &hl), SM_HDR_EOF);
	ck_assert_uint_eq(hl, 0);
}
END_TEST

START_TEST(scan_body_without_blank_line)
{
	size_t hl;

	/* A line that is no field starts the body. */
	ck_assert_int_eq(scan("hello world\n", false, &hl), SM_HDR_BODY);
	ck_assert_uint_eq(hl, 0);
	ck_assert_int_eq(scan("Subject: x\nthis is text\n", false, &hl), SM_HDR_BODY);
	ck_assert_uint_eq(hl, 11);
	ck_assert_int_eq(scan("Subject: x\n.\n", false, &hl), SM_HDR_BODY);
	ck_assert_uint_eq(hl, 11);
	ck_assert_int_eq(scan(" indented first\n", false, &hl), SM_HDR_BODY);
	ck_assert_int_eq(scan("From sender Mon Jan 1\n", false, &hl), SM_HDR_BODY);
	ck_assert_int_eq(scan(":no name\n", false, &hl), SM_HDR_BODY);
	/* Blanks before the colon are obsolete syntax, still a field. */
	ck_assert_int_eq(scan("Subject : x\n\n", false, &hl), SM_HDR_BLANK);
	ck_assert_uint_eq(hl, 12);
}
END_TEST

START_TEST(scan_bounded)
{
	char big[3000];
	size_t hl;

	memset(big, 'x', sizeof(big));
	memcpy(big, "X-Long: ", 8);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(sm_header_scan(big, 1024, false, 1024, &hl), SM_HDR_TOO_BIG);
	ck_assert_int_eq(sm_header_scan(big, 1000, false, 1024, &hl), SM_HDR_MORE);
	big[1500] = '\n';
	ck_assert_int_eq(sm_header_scan(big, 2000, false, 1024, &hl), SM_HDR_TOO_BIG);
}
END_TEST

static struct sm_header_result proc(const char *h, bool extract, const char *name, const char *from)
{
	struct sm_header_opts o = { .extract = extract, .full_name = name, .from_addr = from };
	struct sm_header_result r;

	ck_assert_int_eq(sm_header_process(h, strlen(h), &o, &r), 0);
	return r;
}

static bool has(GPtrArray *v, const char *a)
{
	for (guint i = 0; i < v->len; i++)
		if (strcmp(g_ptr_array_index(v, i), a) == 0)
			return true;
	return false;
}

START_TEST(recipients_from_to_cc_bcc)
{
	struct sm_header_result r = proc(
		"From: Shop <shop@example.jp>\n"
		"To: \"Yamada, Taro\" <taro@dest.test>, hanako@dest.test\n"
		"Cc: Team: a@dest.test, b@dest.test;,\n"
		"\tc@dest.test\n"
		"Bcc: hidden@dest.test\n"
		"Subject: hi\n", true, NULL, "x@y");

	ck_assert_uint_eq(r.rcpts->len, 6);
	ck_assert(has(r.rcpts, "taro@dest.test"));
	ck_assert(has(r.rcpts, "hanako@dest.test"));
	ck_assert(has(r.rcpts, "a@dest.test"));
	ck_assert(has(r.rcpts, "b@dest.test"));
	ck_assert(has(r.rcpts, "c@dest.test"));
	ck_assert(has(r.rcpts, "hidden@dest.test"));
	ck_assert_str_eq(r.from_addr, "shop@example.jp");
	ck_assert(r.had_from);
	/* Bcc: gone, the rest kept as it was, CRLF. */
	ck_assert_str_eq(r.out->str,
		"From: Shop <shop@example.jp>\r\n"
		"To: \"Yamada, Taro\" <taro@dest.test>, hanako@dest.test\r\n"
		"Cc: Team: a@dest.test, b@dest.test;,\r\n"
		"\tc@dest.test\r\n"
		"Subject: hi\r\n");
	sm_header_result_free(&r);
}
END_TEST

START_TEST(no_extraction_without_t)
{
	struct sm_header_result r = proc("To: a@dest.test\nBcc: b@dest.test\nResent-Bcc: c@d.test\n"
	                                 "From: s@x.test\n", false, NULL, "x@y");

	ck_assert_uint_eq(r.rcpts->len, 0);
	ck_assert_str_eq(r.out->str, "To: a@dest.test\r\nFrom: s@x.test\r\n");
	sm_header_result_free(&r);
}
END_TEST

START_TEST(duplicates_once)
{
	struct sm_header_result r = proc("To: a@dest.test, A@Dest.Test\nCc: a@dest.test\n", true, NULL, "x@y");

	ck_assert_uint_eq(r.rcpts->len, 1);
	sm_header_result_free(&r);
}
END_TEST

START_TEST(undisclosed_and_empty)
{
	struct sm_header_result r = proc("To: undisclosed-recipients:;\nCc:\nBcc: b@dest.test\n", true, NULL, "x@y");

	ck_assert_uint_eq(r.rcpts->len, 1);
	ck_assert(has(r.rcpts, "b@dest.test"));
	sm_header_result_free(&r);
}
END_TEST

START_TEST(unreadable_address_field)
{
	struct sm_header_opts o = { .extract = true, .from_addr = "x@y" };
	struct sm_header_result r;
	const char *h = "To: <<<\n";

	ck_assert_int_eq(sm_header_process(h, strlen(h), &o, &r), -1);
	ck_assert(strstr(r.error, "To:") != NULL);
	sm_header_result_free(&r);
}
END_TEST

/* A bare CR inside quotes is kept by GMime's parser: such an address is
 * refused, never handed on towards an RCPT TO line (fuzz_sendmail). */
START_TEST(control_character_in_address)
{
	struct sm_header_opts o = { .extract = true, .from_addr = "x@y" };
	struct sm_header_result r;
	const char *h = "To: a@dest.test, \"BXest.\r C\" >b@dest.test\n";

	ck_assert_int_eq(sm_header_process(h, strlen(h), &o, &r), -1);
	ck_assert(strstr(r.error, "To:") != NULL);
	ck_assert(strstr(r.error, "control character") != NULL);
	sm_header_result_free(&r);

	h = "Cc: \"a\r b\"@dest.test\n";
	ck_assert_int_eq(sm_header_process(h, strlen(h), &o, &r), -1);
	sm_header_result_free(&r);

	/* Without -t the field is only copied; a From: mailbox with one is
	 * passed over for the next. */
	o.extract = false;
	h = "To: \"a\r b\"@dest.test\nFrom: \"s\r t\"@shop.test, owner@shop.test\n";
	ck_assert_int_eq(sm_header_process(h, strlen(h), &o, &r), 0);
	ck_assert_uint_eq(r.rcpts->len, 0);
	ck_assert_str_eq(r.from_addr, "owner@shop.test");
	sm_header_result_free(&r);

	GPtrArray *v = g_ptr_array_new_with_free_func(g_free);
	ck_assert_int_eq(sm_addrs_add("ok@dest.test, \"x\x01y\"@dest.test", v), -2);
	ck_assert_uint_eq(v->len, 0);
	ck_assert_int_eq(sm_addrs_add("\"x\x7fy\"@dest.test", v), -2);
	ck_assert_int_eq(sm_addrs_add("Group: \"g\rh\"@dest.test;", v), -2);
	ck_assert_uint_eq(v->len, 0);
	g_ptr_array_unref(v);
}
END_TEST

START_TEST(from_added_when_missing)
{
	struct sm_header_result r = proc("To: a@dest.test\nSubject: x\n", false, NULL, "www-data@relay.test");

	ck_assert(!r.had_from);
	ck_assert_ptr_null(r.from_addr);
	ck_assert_str_eq(r.out->str, "To: a@dest.test\r\nSubject: x\r\nFrom: www-data@relay.test\r\n");
	sm_header_result_free(&r);

	r = proc("To: a@dest.test\n", false, "Shop Owner", "owner@shop.test");
	ck_assert_str_eq(r.out->str, "To: a@dest.test\r\nFrom: Shop Owner <owner@shop.test>\r\n");
	sm_header_result_free(&r);

	/* With no header at all. */
	r = proc("", false, NULL, "u@h.test");
	ck_assert_str_eq(r.out->str, "From: u@h.test\r\n");
	sm_header_result_free(&r);
}
END_TEST

START_TEST(from_name_rfc2047)
{
	struct sm_header_result r = proc("To: a@dest.test\n", false, "山田 太郎", "taro@shop.test");

	/* GMime encodes the name; decoded again it is the same. */
	ck_assert(strstr(r.out->str, "=?UTF-8?b?") || strstr(r.out->str, "=?UTF-8?B?"));
	ck_assert(strstr(r.out->str, "<taro@shop.test>\r\n"));
	for (const char *p = r.out->str; *p; p++)
		ck_assert_int_lt((unsigned char)*p, 0x80);
	const char *v = strstr(r.out->str, "From: ") + 6;
	InternetAddressList *l = internet_address_list_parse(NULL, v);
	ck_assert_ptr_nonnull(l);
	ck_assert_str_eq(internet_address_get_name(internet_address_list_get_address(l, 0)), "山田 太郎");
	g_object_unref(l);
	sm_header_result_free(&r);
}
END_TEST

START_TEST(from_name_no_injection)
{
	struct sm_header_result r = proc("To: a@dest.test\n", false, "Evil\r\nBcc: victim@x.test", "e@shop.test");
	const char *f = strstr(r.out->str, "From: ");

	/* One field: no line of its own starts with Bcc. */
	ck_assert_ptr_null(strstr(f, "\r\nBcc"));
	ck_assert_ptr_null(strstr(f, "\nBcc"));
	sm_header_result_free(&r);
}
END_TEST

START_TEST(from_address_of_header)
{
	struct sm_header_result r = proc("From: =?UTF-8?B?5bGx55Sw?= <yamada@shop.test>\n", false, NULL, "x@y");
	ck_assert_str_eq(r.from_addr, "yamada@shop.test");
	ck_assert(r.had_from);
	sm_header_result_free(&r);

	r = proc("FROM: a@one.test, b@two.test\n", false, NULL, "x@y");
	ck_assert_str_eq(r.from_addr, "a@one.test");
	sm_header_result_free(&r);

	/* A From: with no mailbox: still no second From: added. */
	r = proc("From: nobody\n", false, NULL, "x@y");
	ck_assert(r.had_from);
	ck_assert_ptr_null(strstr(r.out->str, "x@y"));
	sm_header_result_free(&r);
}
END_TEST

START_TEST(eight_bit_header)
{
	struct sm_header_result r = proc("Subject: 日本語\n", false, NULL, "x@y");
	ck_assert(r.eight_bit);
	sm_header_result_free(&r);
	r = proc("Subject: =?UTF-8?B?5pel5pys6Kqe?=\n", false, NULL, "x@y");
	ck_assert(!r.eight_bit);
	sm_header_result_free(&r);
}
END_TEST

START_TEST(addrs_arguments)
{
	GPtrArray *v = g_ptr_array_new_with_free_func(g_free);

	ck_assert_int_eq(sm_addrs_add("a@dest.test", v), 1);
	ck_assert_int_eq(sm_addrs_add("b@dest.test, Name <c@dest.test>", v), 2);
	ck_assert_int_eq(sm_addrs_add("a@dest.test", v), 1); /* read, but already there */
	ck_assert_uint_eq(v->len, 3);
	ck_assert_int_eq(sm_addrs_add("<<<", v), -1);
	ck_assert_int_eq(sm_addrs_add("", v), 0);
	ck_assert_int_eq(sm_addrs_add("\"john doe\"@dest.test", v), 1);
	ck_assert(has(v, "\"john doe\"@dest.test"));
	g_ptr_array_unref(v);
}
END_TEST

int main(void)
{
	g_mime_init();
	Suite *s = suite_create("sendmail_header");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, scan_finds_the_end);
	tcase_add_test(tc, scan_body_without_blank_line);
	tcase_add_test(tc, scan_bounded);
	tcase_add_test(tc, recipients_from_to_cc_bcc);
	tcase_add_test(tc, no_extraction_without_t);
	tcase_add_test(tc, duplicates_once);
	tcase_add_test(tc, undisclosed_and_empty);
	tcase_add_test(tc, unreadable_address_field);
	tcase_add_test(tc, control_character_in_address);
	tcase_add_test(tc, from_added_when_missing);
	tcase_add_test(tc, from_name_rfc2047);
	tcase_add_test(tc, from_name_no_injection);
	tcase_add_test(tc, from_address_of_header);
	tcase_add_test(tc, eight_bit_header);
	tcase_add_test(tc, addrs_arguments);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_mime_shutdown();
	return failed ? 1 : 0;
}
