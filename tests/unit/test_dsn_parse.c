/*
 * NAME
 *	test_dsn_parse - unit tests of relay/dsn_parse (RFC 3464, RFC 6533)
 * SUMMARY
 *	Parses the sample reports of tests/dsn/ and compares every field
 *	with a table; parses hikyaku's own relay/dsn.c output back; feeds
 *	truncated and corrupted reports and checks that the result keeps
 *	dsn_parse.h's promises.
 * DESCRIPTION
 *	Covered: bounces shaped like those of Amazon SES, Postfix, Exim,
 *	Gmail (nested multiparts) and Exchange (base64 headers); delayed,
 *	delivered and relayed reports; 5.2.1 and 5.7.1 failures; several
 *	recipients in one report; missing optional fields; odd case and
 *	angle brackets; utf-8 addresses (message/global-delivery-status);
 *	non-reports and garbage. Then the limits: recipients, field lengths,
 *	nesting depth, a report attached to the returned original, edge
 *	cases of the field syntax, and dsn_rcpt_suppresses().
 *
 *	The samples are found under $HIKYAKU_SRCDIR/tests/dsn (CTest sets
 *	it), else tests/dsn or ../tests/dsn from the current directory, else
 *	next to this source file.
 * DIAGNOSTICS
 *	Exit status 0 when every test passed, 1 otherwise.
 * TOUCHES
 *	Reads the files of tests/dsn.
 */
#include "relay/dsn_parse.h"
#include "relay/dsn.h"
#include "relay/route.h"

#include <check.h>
#include <errno.h>
#include <gmime/gmime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char sample_dir[4096];

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char *read_sample(const char *name, size_t *len)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", sample_dir, name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* A string given out: valid UTF-8, no control characters, bounded. */
static void check_str(const char *s, bool may_be_null, const char *what)
{
	if (!s) {
		ck_assert_msg(may_be_null, "%s is NULL", what);
		return;
	}
	size_t n = strlen(s);
	ck_assert_msg(n > 0, "%s is empty", what);
	ck_assert_msg(n <= DSN_PARSE_FIELD_MAX, "%s is %zu octets", what, n);
	ck_assert_msg(g_utf8_validate(s, (gssize)n, NULL), "%s is not UTF-8", what);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg((unsigned char)s[i] >= 0x20 && s[i] != 0x7f,
		              "%s has control character 0x%02x", what, (unsigned char)s[i]);
	ck_assert_msg(s[0] != ' ' && s[n - 1] != ' ', "%s not trimmed: \"%s\"", what, s);
}

/* What dsn_parse.h promises about any result. */
static void check_invariants(int ret, const struct dsn_report *r)
{
	static const char *const actions[] = { "failed", "delayed", "delivered", "relayed",
	                                       "expanded" };

	ck_assert_msg(ret == 0 || ret == 1, "dsn_parse returned %d", ret);
	if (ret == 0) {
		ck_assert_ptr_null(r->rcpts);
		ck_assert_uint_eq(r->nrcpts, 0);
		ck_assert_ptr_null(r->original_envelope_id);
		ck_assert_ptr_null(r->reporting_mta);
		ck_assert_ptr_null(r->original_message_id);
		ck_assert_ptr_null(r->original_from);
		return;
	}
	ck_assert_uint_le(r->nrcpts, DSN_PARSE_RCPTS_MAX);
	check_str(r->original_envelope_id, true, "original_envelope_id");
	check_str(r->reporting_mta, true, "reporting_mta");
	check_str(r->original_message_id, true, "original_message_id");
	check_str(r->original_from, true, "original_from");
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_report_rcpt *p = &r->rcpts[i];
		check_str(p->final_recipient, false, "final_recipient");
		check_str(p->original_recipient, true, "original_recipient");
		check_str(p->action, false, "action");
		check_str(p->status, false, "status");
		check_str(p->diagnostic, true, "diagnostic");
		check_str(p->remote_mta, true, "remote_mta");
		ck_assert(!strpbrk(p->final_recipient, "<>"));
		bool known = false;
		for (size_t k = 0; k < sizeof(actions) / sizeof(actions[0]); k++)
			known |= strcmp(p->action, actions[k]) == 0;
		ck_assert_msg(known, "action %s", p->action);
		ck_assert_msg(strchr("245", p->status[0]) && p->status[1] == '.', "status %s",
		              p->status);
	}
}

static int parse_str(const char *msg, struct dsn_report *r)
{
	int ret = dsn_parse(msg, strlen(msg), r);
	check_invariants(ret, r);
	return ret;
}

#define expect_str(got, want) do {					\
	const char *g_ = (got), *w_ = (want);					\
	if (!w_)								\
		ck_assert_msg(g_ == NULL, "%s: got \"%s\", want NULL", #got, g_);	\
	else									\
		ck_assert_msg(g_ && strcmp(g_, w_) == 0, "%s: got \"%s\", want \"%s\"", \
		              #got, g_ ? g_ : "(null)", w_);			\
} while (0)

/*
 * A multipart/report around one delivery-status content ("\n" line
 * ends, turned into CRLF), with text/rfc822-headers when hdrs is set.
 */
static char *report_with(const char *status, const char *hdrs)
{
	GString *s = g_string_new(
		"From: MAILER-DAEMON@mx.example.net\n"
		"To: bounce@shop.example.jp\n"
		"Subject: Undelivered Mail Returned to Sender\n"
		"MIME-Version: 1.0\n"
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b-1\"\n"
		"\n"
		"--b-1\n"
		"Content-Type: text/plain\n"
		"\n"
		"Failed.\n"
		"\n"
		"--b-1\n"
		"Content-Type: message/delivery-status\n"
		"\n");
	g_string_append(s, status);
	if (hdrs) {
		g_string_append(s, "\n--b-1\nContent-Type: text/rfc822-headers\n\n");
		g_string_append(s, hdrs);
	}
	g_string_append(s, "\n--b-1--\n");
	GString *crlf = g_string_sized_new(s->len * 2);
	for (gsize i = 0; i < s->len; i++) {
		if (s->str[i] == '\n')
			g_string_append_c(crlf, '\r');
		g_string_append_c(crlf, s->str[i]);
	}
	g_string_free(s, TRUE);
	return g_string_free(crlf, FALSE);
}

/* ------------------------------------------------------------------ */
/* The samples                                                        */
/* ------------------------------------------------------------------ */

struct want_rcpt {
	const char *addr, *orig, *action, *status, *diag, *remote;
	bool suppresses;
};

struct want {
	const char *file;
	int is_report;
	const char *envid, *reporting_mta, *msgid, *from;
	size_t nrcpts;
	struct want_rcpt r[6];
};

#define FROM_SHOP "Example Shop <shop@shop.example.jp>"

static const struct want samples[] = {
	{ "ses_bounce.eml", 1, "hk-5F3A2B1C0D9E8F7A6B", "a8-30.smtp-out.us-west-2.amazonses.test",
	  "<0101018bd0e5d7c4-2f9b1e3a-5d4c-4b2a-8e1f-0a9b8c7d6e5f-000000@us-west-2.amazonses.test>",
	  "=?UTF-8?B?44K344On44OD44OX?= <shop@shop.example.jp>", 1,
	  { { "nobody@example.com", NULL, "failed", "5.1.1",
	      "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local "
	      "recipient table", "mx.example.com.", true } } },
	{ "postfix_bounce.eml", 1, NULL, "mail.example.net",
	  "<order-1234.1699970470@shop.example.jp>", "\"Example Shop\" <shop@shop.example.jp>", 1,
	  { { "unknown@example.net", "Unknown@example.net", "failed", "5.1.1",
	      "550 5.1.1 <unknown@example.net>: Recipient address rejected: User unknown in "
	      "virtual mailbox table", "mx.example.net", true } } },
	/* Exim gives 5.0.0 and the remote's code only in the text: no suppression. */
	{ "exim_bounce.eml", 1, NULL, "mx.example.org", "<welcome.42@shop.example.jp>", FROM_SHOP, 1,
	  { { "someone@example.org", NULL, "failed", "5.0.0",
	      "550-5.1.1 The email account that you tried to reach does not exist. Please try "
	      "550-5.1.1 double-checking the recipient's email address for typos or 550 5.1.1 "
	      "unnecessary spaces.", "mx2.example.org", false } } },
	{ "gmail_nested.eml", 1, NULL, "googlemail.example", "<cart-reminder-77@shop.example.jp>",
	  FROM_SHOP, 1,
	  { { "no-such-user@example.com", NULL, "failed", "5.1.1",
	      "550-5.1.1 The email account that you tried to reach does not exist. Please try "
	      "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 "
	      "unnecessary spaces. 550 5.1.1 https://support.example/mail/?p=NoSuchUser "
	      "a1-20020a170902b123b00b001cc0000000si.123 - gsmtp", "mx1.example.com.", true } } },
	{ "delayed.eml", 1, NULL, "mail.example.net", "<ship-991@shop.example.jp>", FROM_SHOP, 1,
	  { { "slow@example.net", "slow@example.net", "delayed", "4.4.1",
	      "connect to mx.example.net[192.0.2.25]:25: Connection timed out", NULL, false } } },
	{ "delivered.eml", 1, "0A1B2C3D4E5F", "mail.example.net", "<news-2023-11@shop.example.jp>",
	  FROM_SHOP, 2,
	  { { "happy@example.net", "happy@example.net", "delivered", "2.0.0",
	      "delivered to mailbox", NULL, false },
	    { "forwarded@example.net", NULL, "relayed", "2.0.0",
	      "250 2.0.0 Ok: queued as 1r2xZa-000AbD-2r", "mx.example.org", false } } },
	{ "mailbox_disabled.eml", 1, NULL, "mta1.mail.example.com", "<points-3@shop.example.jp>",
	  FROM_SHOP, 1,
	  { { "closed@example.com", NULL, "failed", "5.2.1",
	      "554 5.2.1 The email account that you tried to reach is disabled.",
	      "mx-closed.example.com", true } } },
	{ "policy_571.eml", 1, NULL, "EX1PR01MB0001.jpnprd01.prod.outlook.example",
	  "<invoice-5521@shop.example.jp>", FROM_SHOP, 1,
	  { { "buyer@example.co.test", "buyer@example.co.test", "failed", "5.7.1",
	      "550 5.7.1 Service unavailable, Client host [198.51.100.8] blocked using Spamhaus",
	      "mx.example.co.test", false } } },
	{ "multi_rcpt.eml", 1, NULL, "mx.example.net", "<campaign-8@shop.example.jp>", FROM_SHOP, 5,
	  { { "gone@example.net", NULL, "failed", "5.1.1", "550 5.1.1 gone: no such user", NULL,
	      true },
	    { "full@example.net", NULL, "failed", "5.2.2", "552 5.2.2 mailbox full", NULL, false },
	    { "nodomain@nx.example.net", NULL, "failed", "5.1.10",
	      "556 5.1.10 Recipient address has null MX", NULL, true },
	    { "later@example.net", NULL, "delayed", "4.2.0", "450 4.2.0 try again later", NULL,
	      false },
	    { "overquota@example.net", NULL, "failed", "5.2.1", "550 5.2.1 account disabled",
	      "mx2.example.net", true } } },
	{ "missing_optional.eml", 1, NULL, NULL, NULL, NULL, 1,
	  { { "lost@tiny.example.test", NULL, "failed", "5.1.2", NULL, NULL, true } } },
	{ "angle_case.eml", 1, "ENV-77", "Relay.Example.COM", "<ORDER-77@SHOP.EXAMPLE.JP>", FROM_SHOP,
	  1,
	  { { "User.Name@Example.COM", "user.name@example.com", "failed", "5.1.1",
	      "550 5.1.1 <User.Name@Example.COM>... User unknown", "MX.Example.COM", true } } },
	{ "global_utf8.eml", 1, NULL, "relay.example.jp", "<注文-5@shop.example.jp>",
	  "ショップ <shop@shop.example.jp>", 2,
	  { { "ユーザー@例え.test", NULL, "failed", "5.1.1", "550 5.1.1 ユーザー@例え.test: 宛先不明",
	      "mx.例え.test", true },
	    { "jörg😀@example.com", "JÖRG😀@EXAMPLE.COM", "failed", "5.1.1", NULL, NULL, true } } },
	{ "plain_text.eml", 0, NULL, NULL, NULL, NULL, 0, { { 0 } } },
	{ "garbage.eml", 0, NULL, NULL, NULL, NULL, 0, { { 0 } } },
};

#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

START_TEST(test_sample)
{
	const struct want *w = &samples[_i];
	struct dsn_report r;
	size_t len;
	char *msg = read_sample(w->file, &len);

	int ret = dsn_parse(msg, len, &r);
	check_invariants(ret, &r);
	ck_assert_msg(ret == w->is_report, "%s: dsn_parse returned %d", w->file, ret);
	expect_str(r.original_envelope_id, w->envid);
	expect_str(r.reporting_mta, w->reporting_mta);
	expect_str(r.original_message_id, w->msgid);
	expect_str(r.original_from, w->from);
	ck_assert_msg(r.nrcpts == w->nrcpts, "%s: %zu recipients, want %zu", w->file, r.nrcpts,
	              w->nrcpts);
	for (size_t i = 0; i < r.nrcpts; i++) {
		const struct dsn_report_rcpt *p = &r.rcpts[i];
		const struct want_rcpt *q = &w->r[i];
		expect_str(p->final_recipient, q->addr);
		expect_str(p->original_recipient, q->orig);
		expect_str(p->action, q->action);
		expect_str(p->status, q->status);
		expect_str(p->diagnostic, q->diag);
		expect_str(p->remote_mta, q->remote);
		ck_assert_msg(dsn_rcpt_suppresses(p) == q->suppresses, "%s: %s suppresses: %d",
		              w->file, q->addr, !q->suppresses);
	}
	dsn_report_free(&r);
	ck_assert_ptr_null(r.rcpts);
	dsn_report_free(&r);    /* twice is harmless */
	free(msg);
}
END_TEST

/* A tiny deterministic generator (xorshift64*), so that failures repeat. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

/* Every sample cut at many lengths, and corrupted at random: no crash, promises kept. */
START_TEST(test_sample_mangled)
{
	static const char interesting[] = "\r\n:;<>() \t\\\"-\0\xc3\xff=";
	const struct want *w = &samples[_i];
	struct dsn_report r;
	size_t len;
	char *msg = read_sample(w->file, &len);
	uint64_t seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(_i + 1);
	size_t step = len / 150 ? len / 150 : 1;

	for (size_t n = 0; n <= len; n += step) {
		/* A copy of exactly n octets, so that ASan sees any overread. */
		char *cut = malloc(n ? n : 1);
		ck_assert_ptr_nonnull(cut);
		memcpy(cut, msg, n);
		check_invariants(dsn_parse(cut, n, &r), &r);
		dsn_report_free(&r);
		free(cut);
	}
	char *buf = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(buf);
	for (int it = 0; it < 200 && len; it++) {
		memcpy(buf, msg, len);
		int flips = 1 + (int)(rnd(&seed) % 8);
		for (int k = 0; k < flips; k++) {
			size_t at = rnd(&seed) % len;
			uint64_t how = rnd(&seed);
			buf[at] = how & 1 ? (char)(how >> 8)
			                  : interesting[(how >> 8) % (sizeof(interesting) - 1)];
		}
		check_invariants(dsn_parse(buf, len, &r), &r);
		dsn_report_free(&r);
	}
	free(buf);
	free(msg);
}
END_TEST

/* ------------------------------------------------------------------ */
/* hikyaku's own reports                                              */
/* ------------------------------------------------------------------ */

#define HOST "relay.example.jp"
#define QID "0123456789ABCDEF01"
#define NOW 1700000001000ULL

static const char orig_headers[] =
	"Received: from shop.example.jp ([127.0.0.1])\r\n"
	"\tby relay.example.jp (hikyaku) with ESMTP id 0123456789ABCDEF01\r\n"
	"From: Shop <shop@interfactory1.co.jp>\r\n"
	"To: a@x.example, b@y.example\r\n"
	"Subject: =?UTF-8?B?5rOo5paH56K66KqN?= #1234\r\n"
	"Message-ID: <order-1234@shop.example.jp>\r\n"
	"\r\n"
	"This body must not appear in the DSN.\r\n";

static int build(const char *headers, const struct dsn_rcpt *rcpts, size_t n, buf_t *b)
{
	struct dsn_info in = {
		.hostname = HOST,
		.queue_id = QID,
		.sender = "shop@interfactory1.co.jp",
		.arrival_ms = NOW - 3600000,
		.headers = headers,
		.headers_len = headers ? strlen(headers) : 0,
		.now_ms = NOW,
	};

	buf_init(b, 1 << 20);
	return dsn_build(&in, rcpts, n, b);
}

START_TEST(test_own_dsn)
{
	char longdiag[600];
	size_t k = 0;
	k += (size_t)snprintf(longdiag, sizeof(longdiag), "452 4.4.1");
	while (k < 500)
		k += (size_t)snprintf(longdiag + k, sizeof(longdiag) - k, " word%zu", k);
	struct dsn_rcpt rc[3] = {
		{ .addr = "a@x.example", .action = "failed", .status = "5.1.1",
		  .remote_mta = "mx.x.example[192.0.2.1]:25",
		  .diagnostic = "550 5.1.1 <a@x.example>: Recipient address rejected: User unknown",
		  .reason = "The recipient's mail server does not know this address.",
		  .last_attempt_ms = NOW - 1000 },
		{ .addr = "b@y.example", .action = "failed", .status = "5.1.1",
		  .reason = "The address is on the suppression list." },
		{ .addr = "c@z.example", .action = "delayed", .status = "4.4.1",
		  .remote_mta = "mx.z.example", .diagnostic = longdiag, .reason = "slow" },
	};
	struct dsn_report r;
	buf_t b;

	ck_assert_int_eq(build(orig_headers, rc, 3, &b), 0);
	ck_assert_int_eq(dsn_parse(b.data, b.len, &r), 1);
	check_invariants(1, &r);
	expect_str(r.reporting_mta, HOST);
	/* X-Hikyaku-Queue-ID is not an Original-Envelope-Id (dsn.c). */
	expect_str(r.original_envelope_id, NULL);
	expect_str(r.original_message_id, "<order-1234@shop.example.jp>");
	expect_str(r.original_from, "Shop <shop@interfactory1.co.jp>");
	ck_assert_uint_eq(r.nrcpts, 3);
	expect_str(r.rcpts[0].final_recipient, "a@x.example");
	expect_str(r.rcpts[0].action, "failed");
	expect_str(r.rcpts[0].status, "5.1.1");
	expect_str(r.rcpts[0].remote_mta, "mx.x.example");
	expect_str(r.rcpts[0].diagnostic, rc[0].diagnostic);
	ck_assert(dsn_rcpt_suppresses(&r.rcpts[0]));
	expect_str(r.rcpts[1].final_recipient, "b@y.example");
	expect_str(r.rcpts[1].remote_mta, NULL);
	expect_str(r.rcpts[1].diagnostic, NULL);
	ck_assert(dsn_rcpt_suppresses(&r.rcpts[1]));
	expect_str(r.rcpts[2].final_recipient, "c@z.example");
	expect_str(r.rcpts[2].action, "delayed");
	expect_str(r.rcpts[2].status, "4.4.1");
	/* dsn.c folds it at spaces; unfolding gives it back. */
	expect_str(r.rcpts[2].diagnostic, longdiag);
	ck_assert(!dsn_rcpt_suppresses(&r.rcpts[2]));
	dsn_report_free(&r);
	buf_free(&b);

	/* Without the original's headers. */
	ck_assert_int_eq(build(NULL, rc, 1, &b), 0);
	ck_assert_int_eq(dsn_parse(b.data, b.len, &r), 1);
	expect_str(r.original_message_id, NULL);
	expect_str(r.original_from, NULL);
	ck_assert_uint_eq(r.nrcpts, 1);
	dsn_report_free(&r);
	buf_free(&b);
}
END_TEST

START_TEST(test_own_dsn_global)
{
	static const char hdrs[] =
		"From: ショップ <shop@interfactory1.co.jp>\r\n"
		"Message-ID: <order-1235@shop.example.jp>\r\n"
		"\r\n";
	struct dsn_rcpt rc[1] = {
		{ .addr = "üser@例え.test", .action = "failed", .status = "5.1.1",
		  .remote_mta = "mx.例え.test[192.0.2.3]:25",
		  .diagnostic = "550 5.1.1 üser@例え.test: 宛先不明", .reason = "unknown" },
	};
	struct dsn_report r;
	buf_t b;

	ck_assert_int_eq(build(hdrs, rc, 1, &b), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "message/global-delivery-status"));
	ck_assert_int_eq(dsn_parse(b.data, b.len, &r), 1);
	check_invariants(1, &r);
	ck_assert_uint_eq(r.nrcpts, 1);
	expect_str(r.rcpts[0].final_recipient, "üser@例え.test");
	expect_str(r.rcpts[0].remote_mta, "mx.例え.test");
	expect_str(r.rcpts[0].diagnostic, rc[0].diagnostic);
	expect_str(r.original_message_id, "<order-1235@shop.example.jp>");
	expect_str(r.original_from, "ショップ <shop@interfactory1.co.jp>");
	dsn_report_free(&r);
	buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits and edge cases                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_rcpt_limit)
{
	GString *st = g_string_new("Reporting-MTA: dns; mx.example.net\n");
	struct dsn_report r;

	for (int i = 0; i < DSN_PARSE_RCPTS_MAX + 100; i++)
		g_string_append_printf(st, "\nFinal-Recipient: rfc822; u%d@example.net\n"
		                           "Action: failed\nStatus: 5.1.1\n", i);
	char *msg = report_with(st->str, NULL);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	ck_assert_uint_eq(r.nrcpts, DSN_PARSE_RCPTS_MAX);
	expect_str(r.rcpts[0].final_recipient, "u0@example.net");
	expect_str(r.rcpts[DSN_PARSE_RCPTS_MAX - 1].final_recipient, "u999@example.net");
	dsn_report_free(&r);
	g_free(msg);
	g_string_free(st, TRUE);
}
END_TEST

START_TEST(test_field_limit)
{
	GString *st = g_string_new("Reporting-MTA: dns; mx.example.net\n\n"
	                           "Final-Recipient: rfc822; long@example.net\n"
	                           "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550");
	struct dsn_report r;

	/* 3-octet characters, folded: the cut must fall between characters. */
	for (int i = 0; i < 2000; i++)
		g_string_append(st, i % 20 ? " 宛先" : "\n 宛先");
	/* An address over the limit would be cut into another address: dropped. */
	g_string_append(st, "\n\nFinal-Recipient: rfc822; ");
	for (int i = 0; i < DSN_PARSE_FIELD_MAX; i++)
		g_string_append_c(st, 'a');
	g_string_append(st, "@example.net\nAction: failed\nStatus: 5.1.1\n");
	char *msg = report_with(st->str, NULL);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	ck_assert_uint_eq(r.nrcpts, 1);
	const char *d = r.rcpts[0].diagnostic;
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_le(strlen(d), DSN_PARSE_FIELD_MAX);
	ck_assert_uint_gt(strlen(d), DSN_PARSE_FIELD_MAX - 16);
	ck_assert(g_str_has_prefix(d, "550 宛先 宛先"));
	ck_assert(g_str_has_suffix(d, "宛先") || g_str_has_suffix(d, "宛"));
	ck_assert_ptr_null(strstr(d, "\xef\xbf\xbd"));   /* no U+FFFD from a half character */
	dsn_report_free(&r);
	g_free(msg);
	g_string_free(st, TRUE);
}
END_TEST

/* The report inside levels multipart/mixed wrappers. */
static char *nested(int levels)
{
	GString *s = g_string_new("From: a@example.net\r\nMIME-Version: 1.0\r\n");

	for (int i = 0; i < levels; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n"
		                          "--n%d\r\n", i, i);
	g_string_append(s, "Content-Type: message/delivery-status\r\n\r\n"
	                   "Reporting-MTA: dns; mx.example.net\r\n\r\n"
	                   "Final-Recipient: rfc822; deep@example.net\r\n"
	                   "Action: failed\r\nStatus: 5.1.1\r\n");
	for (int i = levels - 1; i >= 0; i--)
		g_string_append_printf(s, "\r\n--n%d--\r\n", i);
	return g_string_free(s, FALSE);
}

START_TEST(test_depth)
{
	struct dsn_report r;
	char *msg;

	/* The top part alone is a report. */
	msg = nested(0);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	ck_assert_uint_eq(r.nrcpts, 1);
	dsn_report_free(&r);
	g_free(msg);

	msg = nested(DSN_PARSE_DEPTH_MAX);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	expect_str(r.rcpts[0].final_recipient, "deep@example.net");
	dsn_report_free(&r);
	g_free(msg);

	msg = nested(DSN_PARSE_DEPTH_MAX + 1);
	ck_assert_int_eq(parse_str(msg, &r), 0);
	g_free(msg);

	/* Far deeper than GMime's own limit: no crash, no report. */
	msg = nested(5000);
	ck_assert_int_eq(parse_str(msg, &r), 0);
	g_free(msg);

	/* Many parts side by side: the walk stops at DSN_PARSE_PARTS_MAX. */
	GString *s = g_string_new("From: a@example.net\r\nMIME-Version: 1.0\r\n"
	                          "Content-Type: multipart/mixed; boundary=w\r\n\r\n");
	for (int i = 0; i < DSN_PARSE_PARTS_MAX + 10; i++)
		g_string_append(s, "--w\r\nContent-Type: text/plain\r\n\r\nx\r\n");
	g_string_append(s, "--w\r\nContent-Type: message/delivery-status\r\n\r\n"
	                   "Final-Recipient: rfc822; far@example.net\r\n"
	                   "Action: failed\r\nStatus: 5.1.1\r\n--w--\r\n");
	ck_assert_int_eq(parse_str(s->str, &r), 0);
	g_string_free(s, TRUE);
}
END_TEST

/* A kB figure of /proc/self/status ("VmRSS", "VmHWM"), 0 when unknown. */
static long proc_kb(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = 0;
	size_t n = strlen(name);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return kb;
}

#define STATUS_PART                                                        \
	"--b\r\nContent-Type: message/delivery-status\r\n\r\n"             \
	"Reporting-MTA: dns; mx.example.net\r\n\r\n"                       \
	"Final-Recipient: rfc822; bomb@example.net\r\n"                    \
	"Action: failed\r\nStatus: 5.1.1\r\n"

/*
 * The report bomb of issue 20: 25 MB of empty parts ("--b" CRLF CRLF,
 * ~3.7 million of them), with the status part first or last. Built in
 * one allocation of its exact size, so that the peak RSS before the
 * parse is the RSS of the test and the bomb.
 */
static char *bomb(bool status_first, size_t *len)
{
	static const char head[] =
		"From: MAILER-DAEMON@mx.example.net\r\nTo: bounce@shop.example.jp\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n";
	static const char empty[] = "--b\r\n\r\n";
	static const char status[] = STATUS_PART;
	static const char tail[] = "--b--\r\n";
	size_t nempty = (25u * 1000 * 1000) / (sizeof(empty) - 1);
	size_t n = sizeof(head) - 1 + nempty * (sizeof(empty) - 1) + sizeof(status) - 1 +
	           sizeof(tail) - 1;
	char *m = malloc(n), *p = m;

	ck_assert_ptr_nonnull(m);
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	if (status_first) {
		memcpy(p, status, sizeof(status) - 1);
		p += sizeof(status) - 1;
	}
	for (size_t i = 0; i < nempty; i++, p += sizeof(empty) - 1)
		memcpy(p, empty, sizeof(empty) - 1);
	if (!status_first) {
		memcpy(p, status, sizeof(status) - 1);
		p += sizeof(status) - 1;
	}
	memcpy(p, tail, sizeof(tail) - 1);
	p += sizeof(tail) - 1;
	ck_assert_uint_eq((size_t)(p - m), n);
	*len = n;
	return m;
}

#if defined(__SANITIZE_ADDRESS__)
#define BOMB_RSS_MAX_KB (96 * 1024)    /* ASan: shadow memory, redzones, quarantine */
#else
#define BOMB_RSS_MAX_KB (8 * 1024)     /* SPEC §6.1: "a few MB" */
#endif

/*
 * Issue 20 finding 2: the bomb took GMime to 4.9 GB and 23 s of CPU.
 * Bounded now: a few MB above what the test and the bomb hold, whatever
 * the part count; the status part before the bomb is still read, the
 * one after it lies beyond what is read.
 */
START_TEST(test_report_bomb)
{
	struct dsn_report r;
	size_t len;
	char *m = bomb(_i == 0, &len);

	route_init();
	/* Reset the peak (Linux >= 4.0); without it the peak is still ~RSS. */
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	long before = proc_kb("VmRSS");
	gint64 t0 = g_get_monotonic_time();
	int ret = dsn_parse(m, len, &r);
	gint64 us = g_get_monotonic_time() - t0;
	long peak = proc_kb("VmHWM");
	check_invariants(ret, &r);
	fprintf(stderr, "report bomb (%zu octets, status %s): %ld kB over %ld kB, %lld ms\n",
	        len, _i == 0 ? "first" : "last", peak - before, before, (long long)(us / 1000));
	if (before > 0 && peak > 0)
		ck_assert_msg(peak - before < BOMB_RSS_MAX_KB, "the bomb cost %ld kB",
		              peak - before);
	ck_assert_msg(us < 20 * G_USEC_PER_SEC, "the bomb took %lld ms", (long long)(us / 1000));
	if (_i == 0) {
		ck_assert_int_eq(ret, 1);
		ck_assert_uint_eq(r.nrcpts, 1);
		expect_str(r.rcpts[0].final_recipient, "bomb@example.net");
	} else {
		ck_assert_int_eq(ret, 0);
	}
	dsn_report_free(&r);
	free(m);
}
END_TEST

/* Other shapes GMime would turn into many objects: all cost a few MB. */
START_TEST(test_bounded_shapes)
{
	struct dsn_report r;
	GString *s = g_string_new(NULL);

	switch (_i) {
	case 0: /* a million header fields */
		for (int i = 0; i < 1000000; i++)
			g_string_append_printf(s, "X-H%d: v\r\n", i);
		g_string_append(s, "Content-Type: message/delivery-status\r\n\r\n");
		break;
	case 1: /* deeply nested message/rfc822 */
		g_string_append(s, "Content-Type: multipart/report; boundary=b\r\n\r\n" STATUS_PART);
		g_string_append(s, "--b\r\n");
		for (int i = 0; i < 200000; i++)
			g_string_append(s, "Content-Type: message/rfc822\r\n\r\n");
		break;
	case 2: /* parts full of header fields */
		g_string_append(s, "Content-Type: multipart/report; boundary=b\r\n\r\n" STATUS_PART);
		for (int i = 0; i < 100000; i++)
			g_string_append(s, "--b\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
		break;
	default: /* one line of 30 MB */
		g_string_append(s, "Content-Type: multipart/report; boundary=b\r\n\r\n" STATUS_PART);
		for (int i = 0; i < 30 * 1000 * 1000; i++)
			g_string_append_c(s, 'x');
		break;
	}
	route_init();
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	long before = proc_kb("VmRSS");
	int ret = dsn_parse(s->str, s->len, &r);
	long peak = proc_kb("VmHWM");
	check_invariants(ret, &r);
	fprintf(stderr, "shape %d (%zu octets): %ld kB over %ld kB\n", _i, s->len, peak - before,
	        before);
	if (before > 0 && peak > 0)
		ck_assert_msg(peak - before < BOMB_RSS_MAX_KB, "shape %d cost %ld kB", _i,
		              peak - before);
	if (_i == 1 || _i == 2) {
		ck_assert_int_eq(ret, 1);
		expect_str(r.rcpts[0].final_recipient, "bomb@example.net");
	}
	dsn_report_free(&r);
	g_string_free(s, TRUE);
}
END_TEST

/*
 * Issue 20 finding 3: 1,000 identical failed blocks for one recipient
 * yield one; a later failure for an address first reported as delayed
 * wins over it; the address is compared case-insensitively.
 */
START_TEST(test_rcpt_dedupe)
{
	GString *st = g_string_new("Reporting-MTA: dns; mx.example.net\n");
	struct dsn_report r;

	for (int i = 0; i < 1000; i++)
		g_string_append(st, "\nFinal-Recipient: rfc822; victim@example.net\n"
		                    "Action: failed\nStatus: 5.1.1\n");
	g_string_append(st, "\nFinal-Recipient: rfc822; Slow@Example.NET\n"
	                    "Action: delayed\nStatus: 4.4.1\n"
	                    "\nFinal-Recipient: rfc822; slow@example.net\n"
	                    "Action: failed\nStatus: 5.7.1\n"
	                    "\nFinal-Recipient: rfc822; SLOW@example.net\n"
	                    "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 gone\n"
	                    "\nFinal-Recipient: rfc822; slow@example.net\n"
	                    "Action: failed\nStatus: 5.1.2\n"
	                    "\nFinal-Recipient: rfc822; VICTIM@example.net\n"
	                    "Action: delayed\nStatus: 4.0.0\n"
	                    "\nFinal-Recipient: rfc822; other@example.net\n"
	                    "Action: failed\nStatus: 5.1.1\n");
	char *msg = report_with(st->str, NULL);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	ck_assert_uint_eq(r.nrcpts, 3);
	expect_str(r.rcpts[0].final_recipient, "victim@example.net");
	expect_str(r.rcpts[0].status, "5.1.1");
	expect_str(r.rcpts[1].final_recipient, "SLOW@example.net");
	expect_str(r.rcpts[1].status, "5.1.1");
	expect_str(r.rcpts[1].diagnostic, "550 gone");
	expect_str(r.rcpts[2].final_recipient, "other@example.net");
	dsn_report_free(&r);
	g_free(msg);
	g_string_free(st, TRUE);
}
END_TEST

/*
 * A customer's mail that carries a bounce as an attachment is no report,
 * and neither is its original returned inside a real one.
 */
START_TEST(test_report_inside_message)
{
	struct dsn_report r;
	size_t len;
	char *inner = read_sample("postfix_bounce.eml", &len);
	GString *s = g_string_new("From: customer@example.com\r\nTo: bounce@shop.example.jp\r\n"
	                          "MIME-Version: 1.0\r\n"
	                          "Content-Type: multipart/mixed; boundary=fw\r\n\r\n"
	                          "--fw\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
	                          "--fw\r\nContent-Type: message/rfc822\r\n\r\n");
	g_string_append_len(s, inner, (gssize)len);
	g_string_append(s, "\r\n--fw--\r\n");
	ck_assert_int_eq(dsn_parse(s->str, s->len, &r), 0);
	check_invariants(0, &r);
	g_string_free(s, TRUE);

	/* A report whose returned original is itself a report: only the outer counts. */
	s = g_string_new("");
	char *outer = report_with("Reporting-MTA: dns; outer.example.net\n\n"
	                          "Final-Recipient: rfc822; outer@example.net\n"
	                          "Action: failed\nStatus: 5.7.1\n", NULL);
	char *end = strstr(outer, "\r\n--b-1--");
	ck_assert_ptr_nonnull(end);
	g_string_append_len(s, outer, end - outer);
	g_string_append(s, "\r\n--b-1\r\nContent-Type: message/rfc822\r\n\r\n");
	g_string_append_len(s, inner, (gssize)len);
	g_string_append(s, "\r\n--b-1--\r\n");
	ck_assert_int_eq(dsn_parse(s->str, s->len, &r), 1);
	check_invariants(1, &r);
	ck_assert_uint_eq(r.nrcpts, 1);
	expect_str(r.rcpts[0].final_recipient, "outer@example.net");
	expect_str(r.reporting_mta, "outer.example.net");
	/* The attached report's own Message-ID. */
	expect_str(r.original_message_id, "<20231114140112.4SVQ2m1gT9z9vB3@mail.example.net>");
	dsn_report_free(&r);
	g_string_free(s, TRUE);
	g_free(outer);
	free(inner);
}
END_TEST

struct field_case {
	const char *block;    /* a recipient block */
	const char *addr;     /* NULL: no recipient */
	const char *status, *diag;
};

static const struct field_case field_cases[] = {
	{ "Final-Recipient: rfc822; a@example.net (via alias)\nAction: failed\nStatus: 5.1.1\n",
	  "a@example.net", "5.1.1", NULL },
	{ "Final-Recipient: rfc822;\"john doe\"@example.net\nAction: failed\nStatus: 5.1.1\n",
	  "\"john doe\"@example.net", "5.1.1", NULL },
	{ "Final-Recipient: a@example.net\nAction: failed\nStatus: 5.1.1\n", "a@example.net",
	  "5.1.1", NULL },
	{ "Final-Recipient : rfc822 ; < a@example.net >\nAction:failed\nStatus:5.1.1(x)\n",
	  "a@example.net", "5.1.1", NULL },
	{ "Final-Recipient:\n rfc822;\n a@example.net\nAction: failed\nStatus:\n\t5.1.1\n",
	  "a@example.net", "5.1.1", NULL },
	{ "Final-Recipient: x400; /C=JP/ADMD=x/\nAction: failed\nStatus: 5.1.1\n", NULL, NULL,
	  NULL },
	{ "Final-Recipient: rfc822; <a@example.net\nAction: failed\nStatus: 5.1.1\n", NULL, NULL,
	  NULL },
	{ "Final-Recipient: rfc822; <>\nAction: failed\nStatus: 5.1.1\n", NULL, NULL, NULL },
	{ "Final-Recipient: rfc822; a\xff@example.net\nAction: failed\nStatus: 5.1.1\n", NULL,
	  NULL, NULL },
	{ "Final-Recipient: rfc822; a@example.net\nAction: bounced\nStatus: 5.1.1\n", NULL, NULL,
	  NULL },
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 550\n", NULL, NULL,
	  NULL },
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1234\n", NULL, NULL,
	  NULL },
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 3.1.1\n", NULL, NULL,
	  NULL },
	/* The first occurrence counts. */
	{ "Final-Recipient: rfc822; a@example.net\nFinal-Recipient: rfc822; b@example.net\n"
	  "Action: failed\nStatus: 5.1.1\nStatus: 2.0.0\n", "a@example.net", "5.1.1", NULL },
	/* Lines that are no field are skipped with their continuations. */
	{ "Final-Recipient: rfc822; a@example.net\nno colon here\n Status: 2.0.0\n"
	  "Action: failed\nStatus: 5.1.1\n", "a@example.net", "5.1.1", NULL },
	/* Controls and NUL become blanks; a type-less diagnostic stays whole. */
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\n"
	  "Diagnostic-Code: 550\t\x01 user\x7f unknown; sorry \n", "a@example.net", "5.1.1",
	  "550 user unknown; sorry" },
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\n"
	  "Diagnostic-Code: smtp;\n", "a@example.net", "5.1.1", NULL },
	{ "Final-Recipient: utf-8; a\\x{0}b\\x{110000}@example.net\nAction: failed\n"
	  "Status: 5.1.1\n", "a\\x{0}b\\x{110000}@example.net", "5.1.1", NULL },
	/* C1 controls in UTF-8 (CSI U+009B, OSC U+009D) are controls too. */
	{ "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\n"
	  "Diagnostic-Code: smtp; 550 \xc2\x9b" "2J\xc2\x9d" "0;x\xc2\x9c gone\n", "a@example.net",
	  "5.1.1", "550 2J 0;x gone" },
	{ "Final-Recipient: utf-8; a\\x{9B}b@example.net\nAction: failed\n"
	  "Status: 5.1.1\n", "a\\x{9B}b@example.net", "5.1.1", NULL },
};

START_TEST(test_field_syntax)
{
	const struct field_case *c = &field_cases[_i];
	struct dsn_report r;
	GString *st = g_string_new("Reporting-MTA: dns; mx.example.net\n\n");

	g_string_append(st, c->block);
	char *msg = report_with(st->str, "From: x@example.jp\nMessage-ID: no-brackets@x (c)\n");
	ck_assert_int_eq(parse_str(msg, &r), 1);
	expect_str(r.original_message_id, "no-brackets@x");
	if (!c->addr) {
		ck_assert_msg(r.nrcpts == 0, "case %d: got %s", _i, r.rcpts[0].final_recipient);
	} else {
		ck_assert_uint_eq(r.nrcpts, 1);
		expect_str(r.rcpts[0].final_recipient, c->addr);
		expect_str(r.rcpts[0].status, c->status);
		expect_str(r.rcpts[0].diagnostic, c->diag);
	}
	dsn_report_free(&r);
	g_free(msg);
	g_string_free(st, TRUE);
}
END_TEST

START_TEST(test_not_reports)
{
	static const char *const msgs[] = {
		"",
		"\r\n\r\n",
		"Subject: hello\r\n\r\nbody\r\n",
		/* A report-type without the part is no report. */
		"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
		"--x\r\nContent-Type: text/plain\r\n\r\nFinal-Recipient: rfc822; a@b\r\n--x--\r\n",
		/* MDNs are not DSNs. */
		"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n"
		"\r\n--x\r\nContent-Type: message/disposition-notification\r\n\r\n"
		"Final-Recipient: rfc822; a@b.example\r\nDisposition: manual-action/MDN-sent-"
		"manually; displayed\r\n--x--\r\n",
	};
	struct dsn_report r;

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		ck_assert_msg(parse_str(msgs[i], &r) == 0, "message %zu", i);
	/* A report with nothing usable in it is still a report. */
	char *msg = report_with("", NULL);
	ck_assert_int_eq(parse_str(msg, &r), 1);
	ck_assert_uint_eq(r.nrcpts, 0);
	dsn_report_free(&r);
	g_free(msg);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct dsn_report r;

	memset(&r, 0xa5, sizeof(r));
	ck_assert_int_eq(dsn_parse(NULL, 5, &r), -EINVAL);
	ck_assert_ptr_null(r.rcpts);
	ck_assert_int_eq(dsn_parse("x", 1, NULL), -EINVAL);
	ck_assert_int_eq(dsn_parse(NULL, 0, &r), 0);
	dsn_report_free(NULL);
}
END_TEST

START_TEST(test_suppresses)
{
	static const struct {
		const char *action, *status;
		bool want;
	} cases[] = {
		{ "failed", "5.1.1", true },   { "failed", "5.1.0", true },
		{ "failed", "5.1.10", true },  { "failed", "5.2.1", true },
		{ "failed", "5.2.2", false },  { "failed", "5.2.10", false },
		{ "failed", "5.7.1", false },  { "failed", "5.0.0", false },
		{ "failed", "4.1.1", false },  { "delayed", "5.1.1", false },
		{ "delivered", "2.1.5", false }, { "failed", NULL, false },
		{ NULL, "5.1.1", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_report_rcpt r = { .final_recipient = (char *)"a@b.example",
		                             .action = (char *)cases[i].action,
		                             .status = (char *)cases[i].status };
		ck_assert_msg(dsn_rcpt_suppresses(&r) == cases[i].want, "%s %s", cases[i].action,
		              cases[i].status);
	}
	ck_assert(!dsn_rcpt_suppresses(NULL));
}
END_TEST

static Suite *dsn_parse_suite(void)
{
	Suite *s = suite_create("dsn_parse");
	TCase *tc = tcase_create("samples");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_sample, 0, (int)NSAMPLES);
	tcase_add_loop_test(tc, test_sample_mangled, 0, (int)NSAMPLES);
	suite_add_tcase(s, tc);

	tc = tcase_create("own");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_own_dsn);
	tcase_add_test(tc, test_own_dsn_global);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rcpt_limit);
	tcase_add_test(tc, test_field_limit);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_report_inside_message);
	tcase_add_loop_test(tc, test_field_syntax, 0,
	                    (int)(sizeof(field_cases) / sizeof(field_cases[0])));
	tcase_add_test(tc, test_not_reports);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_suppresses);
	tcase_add_test(tc, test_rcpt_dedupe);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_report_bomb, 0, 2);
	tcase_add_loop_test(tc, test_bounded_shapes, 0, 4);
	suite_add_tcase(s, tc);
	return s;
}

static bool is_dir(const char *p)
{
	return access(p, R_OK | X_OK) == 0;
}

static void find_samples(void)
{
	const char *src = getenv("HIKYAKU_SRCDIR");

	if (src && *src) {
		snprintf(sample_dir, sizeof(sample_dir), "%s/tests/dsn", src);
		return;
	}
	if (is_dir("tests/dsn")) {
		snprintf(sample_dir, sizeof(sample_dir), "tests/dsn");
		return;
	}
	if (is_dir("../tests/dsn")) {
		snprintf(sample_dir, sizeof(sample_dir), "../tests/dsn");
		return;
	}
	/* __FILE__ is tests/unit/test_dsn_parse.c as the compiler was given it. */
	snprintf(sample_dir, sizeof(sample_dir), "%s", __FILE__);
	char *slash = strrchr(sample_dir, '/');
	if (slash)
		snprintf(slash + 1, sizeof(sample_dir) - (size_t)(slash + 1 - sample_dir), "../dsn");
	else
		snprintf(sample_dir, sizeof(sample_dir), "../dsn");
}

int main(void)
{
	find_samples();
	SRunner *sr = srunner_create(dsn_parse_suite());

	/* Once here, so that forked tests inherit it and one shutdown at
	 * the end releases GMime's one-time allocations for LeakSanitizer. */
	route_init();
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	g_mime_shutdown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
