/*
 * NAME
 *	test_smtp_ehlo - unit tests of proto/smtp_ehlo (the EHLO reply's keywords)
 * SUMMARY
 *	Keyword lines as servers send them: the extensions hikyaku uses in
 *	any case, unknown ones ignored, SIZE with and without a number (and
 *	a malformed one, which sets no limit), AUTH in both forms (RFC 4954
 *	"AUTH PLAIN LOGIN", the old "AUTH=LOGIN PLAIN"), blanks at the end;
 *	smtp_ehlo_ext() for known and unknown names; smtp_ehlo_init()
 *	forgetting what an earlier EHLO said.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only.
 */
#include "proto/smtp_ehlo.h"

#include <check.h>
#include <string.h>

static void line(struct smtp_ehlo *e, const char *s)
{
	smtp_ehlo_line(e, s, strlen(s));
}

START_TEST(test_keywords)
{
	struct smtp_ehlo e;

	smtp_ehlo_init(&e);
	line(&e, "PIPELINING");
	line(&e, "8bitmime");
	line(&e, "SmtpUtf8");
	line(&e, "STARTTLS  ");
	line(&e, "DSN");
	line(&e, "ENHANCEDSTATUSCODES");
	line(&e, "CHUNKING");
	line(&e, "X-PIPELINING");
	line(&e, "PIPELININGX");
	line(&e, "");
	ck_assert_uint_eq(e.ext, SMTP_EXT_PIPELINING | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
	                         SMTP_EXT_STARTTLS | SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES);
	ck_assert_uint_eq(e.mechs, 0);
	ck_assert_uint_eq(e.size_limit, 0);
}
END_TEST

START_TEST(test_size)
{
	struct smtp_ehlo e;

	smtp_ehlo_init(&e);
	line(&e, "SIZE 35882577");
	ck_assert_uint_eq(e.ext, SMTP_EXT_SIZE);
	ck_assert_uint_eq(e.size_limit, 35882577);
	line(&e, "SIZE");           /* none: no fixed limit */
	ck_assert_uint_eq(e.size_limit, 0);
	line(&e, "size 1000 ");
	ck_assert_uint_eq(e.size_limit, 1000);
	line(&e, "SIZE 12x");       /* not a number: the limit stays */
	ck_assert_uint_eq(e.size_limit, 1000);
	line(&e, "SIZE 12345678901234567890");    /* 20 digits: not taken */
	ck_assert_uint_eq(e.size_limit, 1000);
	line(&e, "SIZE 1234567890123456789");     /* 19 */
	ck_assert_uint_eq(e.size_limit, 1234567890123456789u);
	ck_assert_uint_eq(e.ext, SMTP_EXT_SIZE);
}
END_TEST

START_TEST(test_auth)
{
	struct smtp_ehlo e;

	smtp_ehlo_init(&e);
	line(&e, "AUTH CRAM-MD5 LOGIN");
	ck_assert_uint_eq(e.ext, SMTP_EXT_AUTH);
	ck_assert_uint_eq(e.mechs, SMTP_MECH_LOGIN);
	line(&e, "AUTH=plain");
	ck_assert_uint_eq(e.mechs, SMTP_MECH_LOGIN | SMTP_MECH_PLAIN);

	smtp_ehlo_init(&e);
	ck_assert_uint_eq(e.ext, 0);
	ck_assert_uint_eq(e.mechs, 0);
	line(&e, "AUTH  PLAIN   XOAUTH2 ");
	ck_assert_uint_eq(e.mechs, SMTP_MECH_PLAIN);
	line(&e, "AUTH PLAINX LOGINS");
	ck_assert_uint_eq(e.mechs, SMTP_MECH_PLAIN);
	line(&e, "AUTH");
	ck_assert_uint_eq(e.ext, SMTP_EXT_AUTH);
}
END_TEST

START_TEST(test_init_forgets)
{
	struct smtp_ehlo e;

	smtp_ehlo_init(&e);
	line(&e, "SIZE 10");
	line(&e, "AUTH PLAIN");
	line(&e, "STARTTLS");
	smtp_ehlo_init(&e);
	ck_assert_uint_eq(e.ext, 0);
	ck_assert_uint_eq(e.mechs, 0);
	ck_assert_uint_eq(e.size_limit, 0);
}
END_TEST

START_TEST(test_ext_names)
{
	ck_assert_uint_eq(smtp_ehlo_ext("pipelining"), SMTP_EXT_PIPELINING);
	ck_assert_uint_eq(smtp_ehlo_ext("SIZE"), SMTP_EXT_SIZE);
	ck_assert_uint_eq(smtp_ehlo_ext("8BITMIME"), SMTP_EXT_8BITMIME);
	ck_assert_uint_eq(smtp_ehlo_ext("SMTPUTF8"), SMTP_EXT_SMTPUTF8);
	ck_assert_uint_eq(smtp_ehlo_ext("StartTLS"), SMTP_EXT_STARTTLS);
	ck_assert_uint_eq(smtp_ehlo_ext("AUTH"), SMTP_EXT_AUTH);
	ck_assert_uint_eq(smtp_ehlo_ext("DSN"), SMTP_EXT_DSN);
	ck_assert_uint_eq(smtp_ehlo_ext("ENHANCEDSTATUSCODES"), SMTP_EXT_ENHANCEDSTATUSCODES);
	ck_assert_uint_eq(smtp_ehlo_ext("CHUNKING"), 0);
	ck_assert_uint_eq(smtp_ehlo_ext(""), 0);
	ck_assert_uint_eq(smtp_ehlo_ext("SIZE "), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("smtp_ehlo");
	TCase *tc = tcase_create("ehlo");

	tcase_add_test(tc, test_keywords);
	tcase_add_test(tc, test_size);
	tcase_add_test(tc, test_auth);
	tcase_add_test(tc, test_init_forgets);
	tcase_add_test(tc, test_ext_names);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
