/*
 * NAME
 *	test_smtp_reply - unit tests of proto/smtp_reply (replies, both ways)
 * SUMMARY
 *	The reply parser on the shapes real servers send (single and
 *	multi-line replies, enhanced codes repeated per line, EHLO lists),
 *	malformed lines and the bounds; the enhanced status of every reason
 *	for a failure without a reply, which the wording of the text never
 *	changes; the listener's reply lines are well-formed.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Memory only.
 */
#include "proto/smtp_reply.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

/* ---- the reply parser ------------------------------------------------- */

static int feed(struct smtp_reply_parser *p, const char *line)
{
	return smtp_reply_parser_line(p, line, strlen(line));
}

START_TEST(test_parser_single)
{
	struct smtp_reply_parser p;

	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "250 2.1.5 Ok"), 1);
	ck_assert_int_eq(p.r.code, 250);
	ck_assert_str_eq(p.r.status, "2.1.5");
	ck_assert_str_eq(p.r.text, "Ok");

	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "354 End data with <CR><LF>.<CR><LF>"), 1);
	ck_assert_int_eq(p.r.code, 354);
	ck_assert_str_eq(p.r.status, "");
	ck_assert_str_eq(p.r.text, "End data with <CR><LF>.<CR><LF>");

	smtp_reply_parser_init(&p);     /* RFC 5321 §4.2: the text is optional */
	ck_assert_int_eq(feed(&p, "250"), 1);
	ck_assert_int_eq(p.r.code, 250);
	ck_assert_str_eq(p.r.text, "");

	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "421 4.3.2"), 1);
	ck_assert_str_eq(p.r.status, "4.3.2");
	ck_assert_str_eq(p.r.text, "");
}
END_TEST

START_TEST(test_parser_multiline)
{
	struct smtp_reply_parser p;

	/* Gmail's shape: the enhanced code on every line (RFC 2034 §3). */
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "550-5.1.1 The email account that you tried to reach"), 0);
	ck_assert_int_eq(feed(&p, "550-5.1.1 does not exist."), 0);
	ck_assert_int_eq(feed(&p, "550-5.1.1"), 0);
	ck_assert_int_eq(feed(&p, "550 5.1.1  https://support.example/?p=NoSuchUser  "), 1);
	ck_assert_int_eq(p.r.code, 550);
	ck_assert_int_eq(p.nlines, 4);
	ck_assert_str_eq(p.r.status, "5.1.1");
	ck_assert_str_eq(p.r.text, "The email account that you tried to reach does not exist. "
	                           "https://support.example/?p=NoSuchUser");

	/* An EHLO reply: no codes, "250-" continuation lines. */
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "250-mx.example Hello"), 0);
	ck_assert_int_eq(feed(&p, "250-"), 0);
	ck_assert_int_eq(feed(&p, "250-PIPELINING"), 0);
	ck_assert_int_eq(feed(&p, "250 SIZE 1000"), 1);
	ck_assert_str_eq(p.r.status, "");
	ck_assert_str_eq(p.r.text, "mx.example Hello PIPELINING SIZE 1000");

	/* The code changes between lines: malformed. */
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(feed(&p, "250-first"), 0);
	ck_assert_int_eq(feed(&p, "251 second"), -1);
}
END_TEST

START_TEST(test_parser_enhanced)
{
	static const struct {
		const char *line;
		const char *status;
		const char *text;
	} cases[] = {
		{ "250 2.0.0 Ok: queued as X", "2.0.0", "Ok: queued as X" },
		{ "451 4.7.1 Greylisted", "4.7.1", "Greylisted" },
		{ "553 5.1.10 null MX", "5.1.10", "null MX" },
		{ "554 5.123.456 x", "5.123.456", "x" },
		/* the class must be the reply's (RFC 2034 §3) */
		{ "250 5.1.1 not a status here", "", "5.1.1 not a status here" },
		{ "550 2.0.0 nor here", "", "2.0.0 nor here" },
		/* not of the form class.subject.detail */
		{ "550 5.1234.1 x", "", "5.1234.1 x" },
		{ "550 5.1.1x y", "", "5.1.1x y" },
		{ "550 5..1 y", "", "5..1 y" },
		{ "550 5.1 y", "", "5.1 y" },
		{ "550 5.1.", "", "5.1." },
		{ "550 3.1.1 y", "", "3.1.1 y" },
		/* the server's bytes are not trusted into logs */
		{ "550 a\tb\x01" "c\xff" "d", "", "a?b?c?d" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_reply_parser p;
		smtp_reply_parser_init(&p);
		ck_assert_int_eq(feed(&p, cases[i].line), 1);
		ck_assert_msg(strcmp(p.r.status, cases[i].status) == 0, "%s: status \"%s\"",
		              cases[i].line, p.r.status);
		ck_assert_msg(strcmp(p.r.text, cases[i].text) == 0, "%s: text \"%s\"",
		              cases[i].line, p.r.text);
	}
}
END_TEST

START_TEST(test_parser_malformed)
{
	static const char *const bad[] = {
		"", "2", "25", "2x0 ok", "250x", "250_ok", "600 no", "190 no", "260 no",
		"2500 no", " 250 no", "abc",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct smtp_reply_parser p;
		smtp_reply_parser_init(&p);
		ck_assert_msg(feed(&p, bad[i]) == -1, "accepted \"%s\"", bad[i]);
	}
}
END_TEST

START_TEST(test_parser_bounds)
{
	struct smtp_reply_parser p;
	char line[4200];

	/* A line of 4096 octets is taken, 4097 is not. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(smtp_reply_parser_line(&p, line, 4096), 1);
	ck_assert_uint_eq(strlen(p.r.text), sizeof(p.r.text) - 1);   /* truncated, terminated */
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(smtp_reply_parser_line(&p, line, 4097), -1);

	/* 100 lines are a reply, the 101st line is one too many. */
	smtp_reply_parser_init(&p);
	for (int i = 0; i < 99; i++)
		ck_assert_int_eq(feed(&p, "250-X"), 0);
	ck_assert_int_eq(feed(&p, "250 X"), 1);
	smtp_reply_parser_init(&p);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(feed(&p, "250-X"), 0);
	ck_assert_int_eq(feed(&p, "250 X"), -1);

	/* The length travels with the bytes: no NUL needed, none trusted. */
	smtp_reply_parser_init(&p);
	ck_assert_int_eq(smtp_reply_parser_line(&p, "250 ok\0junk", 11), 1);
	ck_assert_str_eq(p.r.text, "ok?junk");
}
END_TEST

/* ---- failures without a reply ------------------------------------------ */

START_TEST(test_noreply_status)
{
	static const struct {
		enum smtp_noreply why;
		const char *status;
	} cases[] = {
		{ SMTP_NOREPLY_LOCAL, "" },
		{ SMTP_NOREPLY_NO_ANSWER, "4.4.1" },
		{ SMTP_NOREPLY_CONNECTION, "4.4.2" },
		{ SMTP_NOREPLY_PROTOCOL, "4.5.0" },
		{ SMTP_NOREPLY_TLS_FAILED, "4.7.5" },
		{ SMTP_NOREPLY_TLS_REQUIRED, "4.7.10" },
		{ SMTP_NOREPLY_AUTH, "4.7.8" },
	};
	/* Texts that once chose the status by their first words: now any
	 * wording gives the reason's status (issue 12). */
	static const char *const texts[] = {
		"protocol error: x", "timeout connecting to a", "cannot connect to b",
		"connection closed by the caller", "TLS error", "the server does not offer AUTH",
		"not sent: no recipient was accepted", "reworded entirely", "",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_str_eq(smtp_noreply_status(cases[i].why), cases[i].status);
		for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
			struct smtp_reply r;
			memset(&r, 0x55, sizeof(r));
			smtp_reply_none(&r, cases[i].why, "%s", texts[k]);
			ck_assert_int_eq(r.code, 0);
			ck_assert_str_eq(r.status, cases[i].status);
			ck_assert_str_eq(r.text, texts[k]);
		}
	}
	/* A long text is cut and terminated. */
	struct smtp_reply r;
	char big[1000];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	smtp_reply_none(&r, SMTP_NOREPLY_PROTOCOL, "protocol error: %s", big);
	ck_assert_uint_eq(strlen(r.text), sizeof(r.text) - 1);
	ck_assert_str_eq(r.status, "4.5.0");
}
END_TEST

/* ---- the listener's replies --------------------------------------------- */

START_TEST(test_listener_lines)
{
	static const char *const lines[] = {
		R_TOO_MANY_CONN, R_TOO_MANY_CLIENT, R_LINE_TOO_LONG, R_NOOP_OK, R_SENDER_OK,
		R_RCPT_OK, R_RESET_OK, R_VRFY, R_EXPN, R_HELP, R_DATA_GO, R_STARTTLS_GO,
		R_UNKNOWN_CMD, R_NEED_HELO, R_NEED_MAIL, R_NESTED_MAIL, R_NO_VALID_RCPT,
		R_NEED_EHLO_AFTER_TLS, R_SYNTAX, R_SYNTAX_HELO, R_BAD_ADDRESS, R_ADDR_TOO_LONG,
		R_UNKNOWN_PARAM, R_BAD_PARAM, R_NEED_SMTPUTF8, R_BDAT, R_STARTTLS_UNAVAIL,
		R_STARTTLS_AGAIN, R_RELAY_DENIED, R_TOO_MANY_RCPT, R_SIZE_EXCEEDED, R_STORAGE,
		R_LOCAL_ERROR, R_NO_POSTMASTER, R_BARE_CR, R_BARE_LF, R_BARE_LF_CMD, R_NUL,
		R_LONG_LINE, R_AUTH_OK, R_AUTH_FAILED, R_AUTH_NEED_TLS, R_AUTH_UNAVAIL,
		R_AUTH_ALREADY, R_AUTH_IN_MAIL, R_AUTH_MECH, R_AUTH_CANCELLED, R_AUTH_BAD_B64,
	};
	/* Every line is one reply the parser reads back with its own code and,
	 * but for 354 and 334, an enhanced status of the code's class. */
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct smtp_reply_parser p;
		smtp_reply_parser_init(&p);
		ck_assert_msg(smtp_reply_parser_line(&p, lines[i], strlen(lines[i])) == 1, "%s",
		              lines[i]);
		ck_assert_int_eq(p.r.code, (lines[i][0] - '0') * 100 + (lines[i][1] - '0') * 10 +
		                           (lines[i][2] - '0'));
		if (p.r.code != 354)
			ck_assert_msg(p.r.status[0] == lines[i][0], "%s: no status", lines[i]);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("smtp_reply");
	TCase *tp = tcase_create("parser");

	tcase_add_test(tp, test_parser_single);
	tcase_add_test(tp, test_parser_multiline);
	tcase_add_test(tp, test_parser_enhanced);
	tcase_add_test(tp, test_parser_malformed);
	tcase_add_test(tp, test_parser_bounds);
	tcase_add_test(tp, test_noreply_status);
	tcase_add_test(tp, test_listener_lines);
	suite_add_tcase(s, tp);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
